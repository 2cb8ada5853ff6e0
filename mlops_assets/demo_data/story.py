"""The demo's closing story, one record per data version: estimated vs realised performance, retrains, A/B, rollout.

The demo reads the facts from the Dagster instance (materializations' metadata, runs' tags; see
``mlops_assets/demo.py``) and hands them here as plain dictionaries; this module only assembles and formats them,
so it is tested without an instance. Nothing here is computed from the demo's own stdout.

Metadata keys read (written by the monitoring and deployment assets):

* ``predictions``: ``champion_version`` (the production version that scored the version's rows).
* ``performance_estimate``: ``model_version``, ``metric``, ``estimated_<m>``, ``estimated_<m>_lower`` /
  ``_upper``, ``sla_floor``, ``estimated_below_floor`` (CBPE, before labels).
* ``labels``: ``labelled``, ``labelled_rows``, ``coverage``.
* ``performance_report``: ``production_version``, ``metric``, ``realised_metric``, ``sla_floor``, ``sla_breached``,
  ``estimate_error``, ``realised_in_band`` (once labels landed).
* ``ab_test``: ``method``, ``metric``, ``decision``, ``winner``, ``p_value``, ``n``, ``difference``.
* ``rollout_step``: ``action``, ``challenger``, ``from``, ``to``, ``guard_status``, ``guard_rows``.
"""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")

#: Jobs whose runs train a candidate (the suffix of ``<model>__<job>``).
TRAINING_JOBS: tuple[str, ...] = ("lifecycle_job", "retrain_job")


@dataclass(frozen=True)
class RunFact:
    """One run of the model tagged with a data version, as the instance records it.

    Attributes:
        job: The job's name without the model prefix (e.g. ``retrain_job``).
        reason: The run's ``mlops/reason`` tag (``new_data``, ``new_labels``, ``drift``, ``performance``,
            ``estimated_performance``, ``stale``, …); ``"?"`` when untagged.
        status: The Dagster run status (``SUCCESS``, ``FAILURE``, …).
        run_id: The run id (first 8 characters are enough to find it in the UI).
    """

    job: str
    reason: str
    status: str
    run_id: str


@dataclass(frozen=True)
class ABReading:
    """One reading of the A/B test on a data version (an ``ab_test`` materialization with a decision).

    Attributes:
        method: ``msprt`` (always valid) or ``fixed_horizon``; ``None`` when the record does not say.
        metric: What the arms are compared on (e.g. ``log_loss``, ``brier``, ``accuracy``).
        decision: The test's decision (e.g. ``continue``, ``challenger_better``).
        winner: ``champion``, ``challenger`` or ``none``.
        p_value: The (always-valid, for mSPRT) p-value at this reading; ``None`` before both arms have rows.
        n: Rows (pairs) the reading used.
        difference: Challenger − champion on ``metric``.
    """

    method: str | None
    metric: str | None
    decision: str
    winner: str | None
    p_value: float | None
    n: int | None
    difference: float | None


@dataclass(frozen=True)
class RolloutMove:
    """One ``rollout_step`` with guards on a data version: where the challenger's rollout went and why."""

    challenger: str
    before: str
    after: str
    action: str
    guard_status: str | None
    guard_rows: int | None


@dataclass(frozen=True)
class MonthStory:
    """What happened to one data version, from scoring to labels.

    Attributes:
        data_version: The data version key (e.g. ``flights_2013-03__a1b2c3d4e5f6``).
        production_version: The registry version that scored the version's rows (``None``: nothing in production).
        metric: The estimated/realised metric (the headline metric, e.g. ``roc_auc``).
        estimated: The label-free estimate of ``metric`` (CBPE) for the production model, before labels.
        estimated_lower: Lower end of the estimate's confidence band.
        estimated_upper: Upper end.
        estimated_below_floor: Whether the estimate fell below the SLA floor (what the estimated-performance
            sensor reads).
        labelled: Whether the version counts as labelled (labels asset ``labelled``); ``None`` when unknown.
        labelled_rows: Rows with a label.
        realised: The realised ``metric`` of the production model once labels landed.
        estimate_error: The estimate's error against the realised value as ``performance_report`` records it.
        realised_in_band: Whether the realised value fell inside the estimate's band.
        sla_floor: The production model's SLA floor on ``metric``.
        sla_breached: Whether the realised value breached it.
        training_runs: The runs tagged with this version that train a candidate, with their reasons.
        other_runs: The version's other runs (ingest, labels) with their reasons.
        trained_versions: Registry versions trained on data up to this version (by lineage), ``(version, stage)``.
        ab_readings: The A/B test's readings on this version, oldest first.
        rollout_moves: The rollout steps taken on this version, oldest first.
    """

    data_version: str
    production_version: int | None
    metric: str
    estimated: float | None
    estimated_lower: float | None
    estimated_upper: float | None
    estimated_below_floor: bool | None
    labelled: bool | None
    labelled_rows: int | None
    realised: float | None
    estimate_error: float | None
    realised_in_band: bool | None
    sla_floor: float | None
    sla_breached: bool | None
    training_runs: tuple[RunFact, ...]
    other_runs: tuple[RunFact, ...]
    trained_versions: tuple[tuple[int, str], ...]
    ab_readings: tuple[ABReading, ...]
    rollout_moves: tuple[RolloutMove, ...]


def _number(value: Any) -> float | None:
    """A finite float, else ``None`` (metadata may hold ``None``, NaN or be absent)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _ab_reading(metadata: Mapping[str, Any]) -> ABReading | None:
    decision = metadata.get("decision")
    if not isinstance(decision, str) or decision in ("", "none"):
        return None
    n = _integer(metadata.get("n"))
    if n is None and "champion_n" in metadata:  # the fixed-horizon record counts each arm apart
        n = (_integer(metadata.get("champion_n")) or 0) + (_integer(metadata.get("challenger_n")) or 0)
    return ABReading(
        method=str(metadata["method"]) if "method" in metadata else None,
        metric=str(metadata["metric"]) if "metric" in metadata else None,
        decision=decision,
        winner=str(metadata["winner"]) if "winner" in metadata else None,
        p_value=_number(metadata.get("p_value")),
        n=n,
        difference=_number(metadata.get("difference")),
    )


def _rollout_move(metadata: Mapping[str, Any]) -> RolloutMove | None:
    action = metadata.get("action")
    if not isinstance(action, str) or action == "none" or "from" not in metadata:
        return None  # no rollout, or waiting without guards: nothing moved
    if action == "wait" and metadata.get("to", metadata["from"]) == metadata["from"]:
        return None  # guards read, too little evidence yet: nothing moved
    return RolloutMove(
        challenger=str(metadata.get("challenger", "?")),
        before=str(metadata["from"]),
        after=str(metadata.get("to", metadata["from"])),
        action=action,
        guard_status=str(metadata["guard_status"]) if "guard_status" in metadata else None,
        guard_rows=_integer(metadata.get("guard_rows")),
    )


def month_story(
    data_version: str,
    metric: str,
    *,
    predictions: Mapping[str, Any],
    estimate: Mapping[str, Any],
    labels: Mapping[str, Any],
    report: Mapping[str, Any],
    ab_tests: Sequence[Mapping[str, Any]],
    rollout_steps: Sequence[Mapping[str, Any]],
    runs: Sequence[RunFact],
    trained_versions: Sequence[tuple[int, str]] = (),
) -> MonthStory:
    """Assemble one data version's story from the metadata of its newest materializations and its runs.

    Args:
        data_version: The data version key.
        metric: The headline metric (e.g. ``roc_auc``); the estimate read is ``estimated_<metric>``.
        predictions: The newest ``predictions`` metadata of the version (empty: not scored).
        estimate: The newest ``performance_estimate`` metadata (empty: not estimated).
        labels: The newest ``labels`` metadata (empty: no labels step ran).
        report: The newest ``performance_report`` metadata (no ``realised_metric``: no labels yet).
        ab_tests: Every ``ab_test`` metadata of the version, oldest first; readings without a decision are left out.
        rollout_steps: Every ``rollout_step`` metadata of the version, oldest first; steps that moved nothing
            under guards (no rollout, waiting) are left out.
        runs: The runs tagged with this data version, oldest first.
        trained_versions: Registry versions whose lineage ends at this version, ``(version, stage)``.

    Returns:
        The version's :class:`MonthStory`. The realised value is only taken when the report measured ``metric``;
        the estimate's error is the report's own ``estimate_error`` (never recomputed here).
    """
    production = _integer(predictions.get("champion_version"))
    if production is None:
        production = _integer(estimate.get("model_version"))
    realised = _number(report.get("realised_metric")) if report.get("metric", metric) == metric else None
    readings = [r for r in (_ab_reading(m) for m in ab_tests) if r is not None]
    moves = [m for m in (_rollout_move(s) for s in rollout_steps) if m is not None]
    training = tuple(r for r in runs if r.job in TRAINING_JOBS)
    return MonthStory(
        data_version=data_version,
        production_version=production,
        metric=metric,
        estimated=_number(estimate.get(f"estimated_{metric}")),
        estimated_lower=_number(estimate.get(f"estimated_{metric}_lower")),
        estimated_upper=_number(estimate.get(f"estimated_{metric}_upper")),
        estimated_below_floor=_flag(estimate.get("estimated_below_floor")),
        labelled=_flag(labels.get("labelled")),
        labelled_rows=_integer(labels.get("labelled_rows")),
        realised=realised,
        estimate_error=_number(report.get("estimate_error")) if realised is not None else None,
        realised_in_band=_flag(report.get("realised_in_band")) if realised is not None else None,
        sla_floor=_number(report.get("sla_floor", estimate.get("sla_floor"))),
        sla_breached=_flag(report.get("sla_breached")) if realised is not None else None,
        training_runs=training,
        other_runs=tuple(r for r in runs if r not in training),
        trained_versions=tuple(trained_versions),
        ab_readings=_deduplicated(readings),
        rollout_moves=_deduplicated(moves),
    )


def _deduplicated(items: Sequence[_T]) -> tuple[_T, ...]:
    """``items`` without immediate repeats (a version re-materialized by a later run with the same result)."""
    kept: list[_T] = []
    for item in items:
        if not kept or kept[-1] != item:
            kept.append(item)
    return tuple(kept)


def _figure(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _estimate_cell(story: MonthStory) -> str:
    if story.estimated is None:
        return "—"
    band = (
        f" [{story.estimated_lower:.3f}, {story.estimated_upper:.3f}]"
        if story.estimated_lower is not None and story.estimated_upper is not None
        else ""
    )
    return f"{story.estimated:.3f}{band}" + (" <floor" if story.estimated_below_floor else "")


def _realised_cell(story: MonthStory) -> str:
    if story.realised is None:
        return "no labels" if story.labelled is False else "—"
    error = "" if story.estimate_error is None else f" (err {story.estimate_error:+.3f})"
    band = "" if story.realised_in_band is None else (" in band" if story.realised_in_band else " OUT of band")
    return f"{story.realised:.3f}{error}{band}" + (" BREACH" if story.sla_breached else "")


def _retrain_cell(story: MonthStory) -> str:
    runs = ", ".join(f"{r.reason} ({r.job}, {r.status.lower()})" for r in story.training_runs)
    trained = ", ".join(f"v{version} {stage}" for version, stage in story.trained_versions)
    return (runs or "—") + (f" → {trained}" if trained else "")


def p_value_text(p: float) -> str:
    """``"p=4.2e-284"``; an always-valid p-value of 0.0 is below the smallest float: ``"p<1e-300"``, not ``"p=0"``."""
    return "p<1e-300" if p == 0 else f"p={p:.3g}"


def _ab_cell(story: MonthStory) -> str:
    if not story.ab_readings:
        return "—"
    last = story.ab_readings[-1]
    p = "" if last.p_value is None else f" {p_value_text(last.p_value)}"
    method = "" if last.method is None else f"{last.method} "
    return f"{method}{last.decision}{p}" + (f" n={last.n}" if last.n is not None else "")


def _rollout_cell(story: MonthStory) -> str:
    return "; ".join(f"{m.challenger} {m.before}→{m.after} ({m.action})" for m in story.rollout_moves) or "—"


def story_lines(stories: Sequence[MonthStory]) -> list[str]:
    """The story as a fixed-width table, one line per data version, and a legend.

    Columns: the version's file stem, the production version that scored it, the estimated metric with its band
    (``<floor`` when below the SLA floor), the realised metric with the estimate's error and whether it fell in the
    band (``BREACH`` when below the SLA floor), the training runs with their reasons and the registry versions
    trained on data ending with this version (with their stage now), the last A/B reading (method, decision,
    always-valid p-value, rows) and the rollout moves.
    """
    if not stories:
        return ["(no data version landed)"]
    metric = stories[0].metric
    header = (
        "version",
        "prod",
        f"estimated {metric} [band]",
        f"realised {metric} (err = realised − estimated)",
        "retrains (reason)",
        "A/B (last reading)",
        "rollout",
    )
    rows = [
        (
            story.data_version.rsplit("__", 1)[0],
            "—" if story.production_version is None else f"v{story.production_version}",
            _estimate_cell(story),
            _realised_cell(story),
            _retrain_cell(story),
            _ab_cell(story),
            _rollout_cell(story),
        )
        for story in stories
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths, strict=True)) + "  " + cells[-1]

    errors = [abs(s.estimate_error) for s in stories if s.estimate_error is not None]
    in_band = [s.realised_in_band for s in stories if s.realised_in_band is not None]
    footer = []
    if errors:
        footer.append(
            f"estimate vs realised on {len(errors)} labelled versions: mean |error| {sum(errors) / len(errors):.3f}, "
            f"max {max(errors):.3f}; realised inside the band {sum(in_band)} of {len(in_band)}"
        )
    return [line(header), *(line(r) for r in rows), *footer]


def story_record(stories: Sequence[MonthStory]) -> dict[str, Any]:
    """The story as JSON-ready data: ``{"metric": …, "versions": [MonthStory as a dict, …]}``."""
    return {"metric": stories[0].metric if stories else None, "versions": [asdict(s) for s in stories]}


def write_story(stories: Sequence[MonthStory], path: Path) -> Path:
    """Write :func:`story_record` as indented JSON to ``path`` (parent folders created), atomically.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(story_record(stories), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
