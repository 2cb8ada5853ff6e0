"""Where a run's time goes: its steps' own compute against the orchestrator's share, from timestamped events.

A run of a data version is a sequence of events (queued, starting, started, step start, input loaded, output,
output handled, step success, run end), each with a wall-clock timestamp, and every step body measures its own
wall and CPU time (the ``mlops/step_*`` metadata the wiring writes). From these alone this module splits the
run's wall time into:

* **queued**: waiting in the run queue for a slot (not the orchestrator's cost: it is concurrency policy);
* **launch**: from the launcher starting the run to the run's process having started it — process start,
  imports and loading the code location;
* per step **compute** (the body: our own work, measured inside the step), **input IO** (from the step's start
  to its last input loaded), **output IO** (from the output to the output handled), and the rest of the step
  (**framework**: resource set-up, type checks, event writes, asset check bookkeeping);
* **between steps**: the run's executing span not covered by any step (planning, step scheduling, run end).

The orchestrator's share is everything but compute: ``1 − compute / wall``. Input and output IO are listed
apart because a user can change them (an IO manager, fewer large intermediates); they would not exist if the
same work ran in one Python function.

The model is the event log of Dagster (``DagsterEventType``), reduced by the wiring to :class:`RunEvent` so
this module stays free of it.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Metadata keys a measured step writes on its materialization or check evaluation.
STEP_WALL_KEY = "mlops/step_wall_seconds"
STEP_CPU_KEY = "mlops/step_cpu_seconds"
STEP_THREADS_KEY = "mlops/step_threads"
STEP_PEAK_RSS_KEY = "mlops/step_peak_rss_mib"

# Event kinds (the values of Dagster's DagsterEventType the profile reads).
ENQUEUED = "PIPELINE_ENQUEUED"
DEQUEUED = "PIPELINE_DEQUEUED"
STARTING = "PIPELINE_STARTING"
STARTED = "PIPELINE_START"
RUN_ENDS = frozenset({"PIPELINE_SUCCESS", "PIPELINE_FAILURE", "PIPELINE_CANCELED"})
STEP_START = "STEP_START"
STEP_ENDS = frozenset({"STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"})
WORKER_STARTING = "STEP_WORKER_STARTING"
LOADED_INPUT = "LOADED_INPUT"
STEP_OUTPUT = "STEP_OUTPUT"
HANDLED_OUTPUT = "HANDLED_OUTPUT"
MEASURED = frozenset({"ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION"})
#: Status of a step that has events but never started (skipped after an upstream failure).
NOT_EXECUTED = "not_executed"


@dataclass(frozen=True)
class RunEvent:
    """One event of a run's log, reduced to what the profile needs.

    Attributes:
        kind: The event type's value (e.g. ``"STEP_START"``).
        timestamp: Wall-clock time, seconds since the epoch.
        step_key: The step it belongs to, None for run-level events.
        metadata: The measured-step keys of a materialization or check evaluation (``STEP_*_KEY`` → float).
    """

    kind: str
    timestamp: float
    step_key: str | None = None
    metadata: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StepProfile:
    """One step's wall time, split (seconds).

    Attributes:
        step_key: The step (an asset or check op).
        status: ``STEP_SUCCESS``, ``STEP_FAILURE`` or ``STEP_SKIPPED``; ``unfinished`` without an end event;
            ``not_executed`` when it never started (an upstream failure stopped it).
        wall: From the step's start (or its worker's start, multiprocess) to its end.
        worker_start: A multiprocess step's interpreter start and imports (0 in-process).
        input_io: Loading its inputs.
        compute: Its body (measured inside the step; 0 for a step that recorded no measurement).
        cpu: CPU time of the process during the body (all its threads), seconds.
        output_io: Storing its output.
        framework: The rest: resources, type checks, event writes.
        threads: Native thread budget the body ran with (0 when not recorded).
        measured: Whether the body recorded its measurement.
        peak_rss_mib: The process's peak resident set size after the body, MiB (monotonic over a process: the
            first step whose value jumps is the one that set the peak; 0 when not recorded).
    """

    step_key: str
    status: str
    wall: float
    worker_start: float
    input_io: float
    compute: float
    cpu: float
    output_io: float
    framework: float
    threads: int
    measured: bool
    peak_rss_mib: float = 0.0


@dataclass(frozen=True)
class RunProfile:
    """A run's wall time, split (seconds); see the module docstring for each part.

    Attributes:
        wall: From the run starting (launcher) to its end; excludes the time queued.
        queued: Waiting in the run queue.
        launch: Process start, imports and code-location load before the run started.
        between_steps: Executing span not covered by any step.
        steps: One profile per step, in start order.
    """

    wall: float
    queued: float
    launch: float
    between_steps: float
    steps: tuple[StepProfile, ...]

    @property
    def compute(self) -> float:
        """Total step body time."""
        return sum(s.compute for s in self.steps)

    @property
    def cpu(self) -> float:
        """Total CPU time of the step bodies."""
        return sum(s.cpu for s in self.steps)

    @property
    def io(self) -> float:
        """Total input and output IO time."""
        return sum(s.input_io + s.output_io for s in self.steps)

    @property
    def framework(self) -> float:
        """Total framework time inside steps (includes multiprocess worker starts)."""
        return sum(s.framework + s.worker_start for s in self.steps)

    @property
    def orchestration(self) -> float:
        """Everything but the step bodies: ``wall − compute``."""
        return max(0.0, self.wall - self.compute)

    @property
    def orchestration_share(self) -> float:
        """``orchestration / wall`` in [0, 1] (0 for an empty run)."""
        return self.orchestration / self.wall if self.wall > 0 else 0.0

    def summary(self) -> dict[str, float | int]:
        """Totals in display order, seconds rounded to the millisecond; the share to 3 decimals."""
        parts = {
            "wall_seconds": self.wall,
            "compute_seconds": self.compute,
            "compute_cpu_seconds": self.cpu,
            "orchestration_seconds": self.orchestration,
            "launch_seconds": self.launch,
            "io_seconds": self.io,
            "step_framework_seconds": self.framework,
            "between_steps_seconds": self.between_steps,
            "queued_seconds": self.queued,
        }
        return {
            **{k: round(v, 3) for k, v in parts.items()},
            "orchestration_share": round(self.orchestration_share, 3),
            "steps": len(self.steps),
        }

    def step_rows(self) -> list[dict[str, Any]]:
        """One row per step (seconds rounded to the millisecond), slowest first."""
        rows = [
            {
                "step": s.step_key,
                "status": s.status,
                "wall_s": round(s.wall, 3),
                "compute_s": round(s.compute, 3),
                "cpu_s": round(s.cpu, 3),
                "threads": s.threads,
                "input_io_s": round(s.input_io, 3),
                "output_io_s": round(s.output_io, 3),
                "framework_s": round(s.framework + s.worker_start, 3),
                "peak_rss_mib": round(s.peak_rss_mib, 1),
            }
            for s in self.steps
        ]
        return sorted(rows, key=lambda r: -r["wall_s"])


def _union_length(intervals: Iterable[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def _first(events: Sequence[RunEvent], kinds: frozenset[str] | str) -> float | None:
    wanted = {kinds} if isinstance(kinds, str) else kinds
    return next((e.timestamp for e in events if e.kind in wanted), None)


def _step_profile(step_key: str, events: Sequence[RunEvent], run_end: float) -> tuple[StepProfile, float, float]:
    start = _first(events, STEP_START)
    worker = _first(events, WORKER_STARTING)
    if start is None and worker is None:
        # Never executed (an upstream failure or a failed blocking check stopped it): it took no time.
        at = events[0].timestamp
        return StepProfile(step_key, NOT_EXECUTED, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, False), at, at
    # Events logged before the step began (e.g. its planned materializations at run start) are not its time.
    begin = min(t for t in (start, worker) if t is not None)
    end_event = next((e for e in reversed(events) if e.kind in STEP_ENDS), None)
    end = end_event.timestamp if end_event else run_end
    step_start = start if start is not None else begin
    loads = [e.timestamp for e in events if e.kind == LOADED_INPUT]
    input_io = max(0.0, max(loads) - step_start) if loads else 0.0
    output_io = 0.0
    for output in (e for e in events if e.kind == STEP_OUTPUT):
        handled = next(
            (e.timestamp for e in events if e.kind == HANDLED_OUTPUT and e.timestamp >= output.timestamp), None
        )
        output_io += max(0.0, handled - output.timestamp) if handled is not None else 0.0
    measured = next((e.metadata for e in events if e.kind in MEASURED and STEP_WALL_KEY in e.metadata), None)
    compute = float(measured[STEP_WALL_KEY]) if measured else 0.0
    wall = max(0.0, end - begin)
    worker_start = max(0.0, step_start - begin)
    return (
        StepProfile(
            step_key=step_key,
            status=end_event.kind if end_event else "unfinished",
            wall=wall,
            worker_start=worker_start,
            input_io=input_io,
            compute=compute,
            cpu=float(measured.get(STEP_CPU_KEY, 0.0)) if measured else 0.0,
            output_io=output_io,
            framework=max(0.0, wall - worker_start - input_io - compute - output_io),
            threads=int(measured.get(STEP_THREADS_KEY, 0)) if measured else 0,
            measured=measured is not None,
            peak_rss_mib=float(measured.get(STEP_PEAK_RSS_KEY, 0.0)) if measured else 0.0,
        ),
        begin,
        end,
    )


def profile_run(events: Iterable[RunEvent]) -> RunProfile:
    """Split a run's wall time into queueing, launch, step compute, IO, framework and orchestration between steps.

    Args:
        events: The run's events, any order (sorted by timestamp here).

    Returns:
        The profile. A run without a start or end event is measured up to its last event.

    Raises:
        ValueError: ``events`` is empty.
    """
    ordered = sorted(events, key=lambda e: e.timestamp)
    if not ordered:
        raise ValueError("profile_run: a run without events has no profile")
    first, last = ordered[0].timestamp, ordered[-1].timestamp
    enqueued, dequeued = _first(ordered, ENQUEUED), _first(ordered, DEQUEUED)
    queued = max(0.0, dequeued - enqueued) if enqueued is not None and dequeued is not None else 0.0
    starting = _first(ordered, STARTING) or dequeued or first
    started = _first(ordered, STARTED) or starting
    run_end = _first(ordered, RUN_ENDS) or last
    by_step: dict[str, list[RunEvent]] = {}
    for event in ordered:
        if event.step_key is not None:
            by_step.setdefault(event.step_key, []).append(event)
    spans = [_step_profile(key, step_events, run_end) for key, step_events in by_step.items()]
    spans.sort(key=lambda item: item[1])
    covered = _union_length((begin, end) for _, begin, end in spans)
    return RunProfile(
        wall=max(0.0, run_end - starting),
        queued=queued,
        launch=max(0.0, started - starting),
        between_steps=max(0.0, (run_end - started) - covered),
        steps=tuple(profile for profile, _, _ in spans),
    )
