"""How a step runs and where a run's time goes: native thread budgets, measured step bodies, run profiles.

Every asset and check body of a model's graph is decorated with :func:`measured_step` (under its ``@dg.asset`` /
``@dg.asset_check``; a test checks none is missing). The decorator

* sizes the native thread pools (OpenMP, BLAS: scikit-learn's histogram gradient boosting, numpy) of the body
  with :mod:`threadpoolctl` to its share of the cores: ``cores // steps that can run at once`` (see
  :func:`thread_budget`), because OpenMP threads of concurrent steps fighting for the same cores make training
  several times slower (measured in docs/performance.md) — results do not depend on the thread count;
* measures the body's wall and CPU time and writes them, with the thread budget, on its materialization or
  check evaluation (``mlops/step_wall_seconds``, ``mlops/step_cpu_seconds``, ``mlops/step_threads``).

After each run of a model's data version, ``<model>__run_profile_sensor`` reads the run's event log, splits its
wall time (:func:`mlops_assets.ml.profile.profile_run`: launch, per-step compute, IO and framework, between steps)
and records it as a materialization of ``<model>/run_profile`` for that data version, so the UI shows where the
time of every version went, and as run tags on the run itself.
"""

import functools
import inspect
import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import dagster as dg
from joblib import cpu_count
from threadpoolctl import threadpool_limits

from mlops_assets.instance import EVERY_DAEMON_LOOP_S
from mlops_assets.ml.profile import (
    MEASURED,
    STEP_CPU_KEY,
    STEP_PEAK_RSS_KEY,
    STEP_THREADS_KEY,
    STEP_WALL_KEY,
    RunEvent,
    RunProfile,
    profile_run,
)
from mlops_assets.model import MLModel
from mlops_assets.tags import MODEL_TAG, STAGE_TAG

#: Set to a positive integer to fix every step's native thread count (overrides the computed budget).
THREADS_ENV = "MLOPS_THREADS_PER_STEP"
#: Marks a body wrapped by :func:`measured_step` (checked by the architecture test).
MEASURED_ATTR = "__mlops_measured_step__"
#: Run tags the profile sensor writes on a profiled run.
PROFILE_TAG_PREFIX = "mlops/profile."

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ThreadBudget:
    """How many native threads one step may use.

    Attributes:
        threads: The budget (>= 1).
        cores: Cores available to this process (CPU affinity and cgroup quota, via ``joblib.cpu_count``).
        concurrent_steps: Steps that can run at once on this machine: concurrent runs × steps per run.
        source: ``MLOPS_THREADS_PER_STEP`` when set, else ``cores // concurrent_steps``.
    """

    threads: int
    cores: int
    concurrent_steps: int
    source: str


def _concurrent_steps(context: dg.OpExecutionContext | None) -> int:
    """Steps that can run at once on this step's cores: concurrent runs × steps one run executes at once.

    Runs share this machine's cores only when the instance launches them as local processes (Dagster's default
    run launcher); then the run queue's ``max_concurrent_runs`` of them can run at once. A launcher that gives each
    run its own machine or pod (K8s, ECS, Docker) does not divide the cores: there the run's own executor does.
    """
    if context is None:
        return 1
    runs = 1
    if isinstance(context.instance.run_launcher, dg.DefaultRunLauncher):
        queue = context.instance.get_concurrency_config().run_queue_config
        runs = queue.max_concurrent_runs if queue is not None and queue.max_concurrent_runs > 0 else 1
    steps = 1
    if context.job_def.executor_def.name == dg.multiprocess_executor.name:
        # The multiprocess executor runs up to max_concurrent steps at once, by default one per core
        # (mlops_assets.environments sets MLOPS_MAX_CONCURRENT_STEPS as its max_concurrent). The code location's
        # jobs name their executor (environments.py); Dagster's default one is taken as in-process, which is
        # how `materialize` and `execute_in_process` run it.
        configured = os.environ.get("MLOPS_MAX_CONCURRENT_STEPS", "")
        steps = int(configured) if configured.isdigit() and int(configured) > 0 else cpu_count()
    return runs * steps


def thread_budget(context: dg.OpExecutionContext | None = None) -> ThreadBudget:
    """The native thread budget of a step: its fair share of the cores, at least one.

    Args:
        context: The step's op context (its instance's run queue and its job's executor); None outside a run.

    Returns:
        The budget. ``MLOPS_THREADS_PER_STEP`` (a positive integer) overrides the computed value.

    Raises:
        ValueError: ``MLOPS_THREADS_PER_STEP`` is set (non-empty) but not a positive integer.
    """
    cores = cpu_count()
    concurrent = _concurrent_steps(context)
    fixed = os.environ.get(THREADS_ENV, "").strip()  # empty, as in .env.example: not set
    if fixed:
        if not fixed.isdigit() or int(fixed) < 1:
            raise ValueError(f"{THREADS_ENV}={fixed!r}: expected a positive integer")
        return ThreadBudget(int(fixed), cores, concurrent, THREADS_ENV)
    return ThreadBudget(max(1, cores // concurrent), cores, concurrent, "cores // concurrent steps")


def _current_op_context() -> dg.OpExecutionContext | None:
    for kind in (dg.AssetExecutionContext, dg.AssetCheckExecutionContext):
        try:
            return kind.get().op_execution_context
        except dg.DagsterInvariantViolationError:
            continue
    return None


def _with_measurement(result: Any, measurement: dict[str, float | int]) -> Any:
    if isinstance(result, dg.MaterializeResult | dg.AssetCheckResult):
        metadata: dict[str, Any] = {**(result.metadata or {}), **measurement}
        return result._replace(metadata=metadata)
    return result


def measured_step(fn: F) -> F:
    """Run a step body under its thread budget and record its wall and CPU time on its result.

    Apply under ``@dg.asset`` / ``@dg.asset_check``; the signature Dagster inspects is the body's own
    (``functools.wraps``). A ``MaterializeResult`` or ``AssetCheckResult`` gets the keys
    ``mlops/step_wall_seconds`` (``time.perf_counter``), ``mlops/step_cpu_seconds`` (``time.process_time``: every
    thread of the process), ``mlops/step_threads`` and ``mlops/step_peak_rss_mib`` (the process's peak resident set
    size so far, ``resource.getrusage``); other return values pass through unmeasured. A generator body (a
    ``@dg.multi_asset_check`` yielding one result per check) runs to its end first; every result it yielded carries
    the step's measurement.
    """

    def run(args: Any, kwargs: Any) -> tuple[Any, dict[str, float | int]]:
        budget = thread_budget(_current_op_context())
        with threadpool_limits(limits=budget.threads):
            wall, cpu = time.perf_counter(), time.process_time()
            result = fn(*args, **kwargs)
            if inspect.isgenerator(result):
                result = list(result)  # a step evaluating several checks: its time is all of them
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        # ru_maxrss is in KiB on Linux: the process's peak so far, so the step that raises it is the one to look at.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return result, {
            STEP_WALL_KEY: round(wall, 4),
            STEP_CPU_KEY: round(cpu, 4),
            STEP_THREADS_KEY: budget.threads,
            STEP_PEAK_RSS_KEY: round(peak, 1),
        }

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            results, measurement = run(args, kwargs)
            for result in results:
                yield _with_measurement(result, measurement)

        setattr(generator, MEASURED_ATTR, True)
        return generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result, measurement = run(args, kwargs)
        return _with_measurement(result, measurement)

    setattr(wrapper, MEASURED_ATTR, True)
    return wrapper  # type: ignore[return-value]


def run_events(instance: dg.DagsterInstance, run_id: str) -> list[RunEvent]:
    """The run's event log reduced to :class:`~mlops_assets.ml.profile.RunEvent` (measured-step metadata only)."""
    events = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        metadata: dict[str, float] = {}
        if event.event_type_value in MEASURED:
            raw = _event_metadata(event)
            metadata = {k: float(v.value) for k, v in raw.items() if k.startswith("mlops/step_")}
        events.append(RunEvent(event.event_type_value, record.timestamp, event.step_key, metadata))
    return events


def _event_metadata(event: dg.DagsterEvent) -> dict[str, Any]:
    if event.is_step_materialization:
        return dict(event.step_materialization_data.materialization.metadata)
    if event.event_type_value == dg.DagsterEventType.ASSET_CHECK_EVALUATION.value:
        return dict(event.asset_check_evaluation_data.metadata)
    return {}


def read_run_profile(instance: dg.DagsterInstance, run_id: str) -> RunProfile:
    """The profile of a finished run (:func:`mlops_assets.ml.profile.profile_run` over its event log)."""
    return profile_run(run_events(instance, run_id))


def profile_materialization(model: MLModel, run: dg.DagsterRun, profile: RunProfile) -> dg.AssetMaterialization:
    """``<model>/run_profile`` for the run's data version: the totals and a table of its steps, slowest first."""
    summary = profile.summary()
    rows = profile.step_rows()
    columns = [
        dg.TableColumn(name, "string" if name in ("step", "status") else "float", description=text)
        for name, text in (
            ("step", "the step (asset or check op)"),
            ("status", "how it ended"),
            ("wall_s", "wall time of the step, s"),
            ("compute_s", "its body, s (measured inside the step)"),
            ("cpu_s", "CPU time of its body, s (all threads)"),
            ("threads", "native thread budget of its body"),
            ("input_io_s", "loading its inputs, s"),
            ("output_io_s", "storing its output, s"),
            ("framework_s", "the rest of the step (resources, type checks, event writes, worker start), s"),
            ("peak_rss_mib", "the process's peak resident memory after the step, MiB"),
        )
    ]
    return dg.AssetMaterialization(
        asset_key=model.key("run_profile"),
        partition=run.tags.get("dagster/partition"),
        description=f"where the time of run {run.run_id} ({run.job_name}) went",
        metadata={
            **summary,
            "run_id": run.run_id,
            "job": run.job_name,
            "steps_table": dg.MetadataValue.table(
                [dg.TableRecord(r) for r in rows], schema=dg.TableSchema(columns=columns)
            ),
        },
    )


def is_model_run(model: MLModel, run: dg.DagsterRun, instance: dg.DagsterInstance) -> bool:
    """A run of one of the model's jobs (its tag), or of its assets launched another way (the UI's materialize, an
    ad-hoc ``materialize``: no job tags), recognised by its steps ``<model>__<asset>``."""
    if run.tags.get(MODEL_TAG) == model.name:
        return True
    if any(key.path[0] == model.name for key in run.asset_selection or ()):
        return True
    if run.execution_plan_snapshot_id is None:
        return False
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    return any(step.key.startswith(model.job_name("")) for step in plan.steps)


def build(model: MLModel) -> dg.Definitions:
    """``<model>/run_profile`` (recorded, never computed) and the sensors that record it after each run."""
    spec = dg.AssetSpec(
        key=model.key("run_profile"),
        partitions_def=model.partitions,
        group_name=model.name,
        owners=list(model.owners),
        tags={**model.asset_tags(), STAGE_TAG: "operations"},
        kinds={"dagster"},
        description=(
            "Where the time of each run of this data version went: wall time, step bodies (compute, CPU, thread "
            "budget), input/output IO, the orchestrator's own time (launch: process start and imports; per-step "
            "framework; between steps) and its share of the wall time. Recorded by the run profile sensors after "
            "every run of the model's jobs on a data version; see docs/performance.md."
        ),
    )

    def record(context: dg.RunStatusSensorContext) -> dg.SkipReason | None:
        run = context.dagster_run
        if not is_model_run(model, run, context.instance) or "dagster/partition" not in run.tags:
            return dg.SkipReason(f"run {run.run_id} is not a data-version run of model {model.name}")
        profile = read_run_profile(context.instance, run.run_id)
        context.instance.report_runless_asset_event(profile_materialization(model, run, profile))
        summary = profile.summary()
        context.instance.add_run_tags(
            run.run_id,
            {
                f"{PROFILE_TAG_PREFIX}wall_seconds": str(summary["wall_seconds"]),
                f"{PROFILE_TAG_PREFIX}orchestration_share": str(summary["orchestration_share"]),
            },
        )
        return None

    sensors = [
        dg.run_status_sensor(
            run_status=status,
            name=model.job_name(f"run_profile_{status.value.lower()}_sensor"),
            minimum_interval_seconds=EVERY_DAEMON_LOOP_S,
            default_status=dg.DefaultSensorStatus.RUNNING,
            description=(
                f"After a run of model {model.name} on a data version ends ({status.value.lower()}), records where its "
                f"time went as {model.key('run_profile').to_user_string()} for that version, and as run tags."
            ),
        )(record)
        for status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
    ]
    return dg.Definitions(assets=[spec], sensors=sensors)
