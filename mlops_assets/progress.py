"""Where a long piece of work is, in words, for Dagster logs and the console (wiring; reads the instance).

Training reports its own progress (:func:`mlops_assets.ml.training.tune_and_train`'s ``progress``), the landing
sensor counts a bulk landing, and ``mlops-demo`` prints elapsed and remaining time. This module adds the backfill:
a run launched by a Dagster backfill logs which data version of the backfill it is and how many of the backfill's
runs have finished, so a 100-version backfill can be followed from any one run's log, not only from the UI's
backfill page.
"""

import dagster as dg

#: The tag Dagster puts on every run a backfill launches (its backfill id).
BACKFILL_TAG = "dagster/backfill"

_FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def backfill_progress(instance: dg.DagsterInstance, run: dg.DagsterRun, partition: str | None) -> str | None:
    """One line on the backfill ``run`` belongs to, or ``None`` when it belongs to none.

    Example: ``"backfill qwerty: data version v003 is 3 of 12; 2 of its runs finished (0 failed)"``.
    The position is known for job backfills (``dagster job backfill``, the launchpad); for asset backfills only the
    counts of runs are given.

    Args:
        instance: The Dagster instance.
        run: The run now executing.
        partition: The data version it serves.
    """
    backfill_id = run.tags.get(BACKFILL_TAG)
    if not backfill_id:
        return None
    backfill = instance.get_backfill(backfill_id)
    names = list(backfill.partition_names or []) if backfill is not None else []
    position = f" is {names.index(partition) + 1} of {len(names)}" if partition in names else ""
    finished = instance.get_runs_count(dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}, statuses=list(_FINISHED)))
    failed = instance.get_runs_count(
        dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}, statuses=[dg.DagsterRunStatus.FAILURE])
    )
    return (
        f"backfill {backfill_id}: data version {partition}{position}; {finished} of its runs finished ({failed} failed)"
    )
