"""Scoring latency of a fitted pipeline: one row at a time and in batches, as its own CPU cost.

The caller passes the exact pipeline loaded from the stored artifact, so what is timed is what would be
served. The gated figures are **thread CPU time** (:func:`time.thread_time_ns`, ``CLOCK_THREAD_CPUTIME_ID``
on Linux) of each ``predict_proba`` call, with every native thread pool (OpenMP, BLAS) limited to one thread
by :mod:`threadpoolctl`, so that the calling thread does all the work and its CPU time is the artifact's
cost. Wall-clock time (:func:`time.perf_counter_ns`) also counts the time the thread waits for a core, which
on a loaded machine is most of it (measured on 2 cores with 8 CPU-bound processes: one-row p99 6 ms of CPU,
50-370 ms of wall); it is recorded for information, never gated.

The measurement is robust in the way of :mod:`timeit` and pyperf: untimed warm-up calls, then several
repetitions, each giving its own p50 and p99; a figure is the **median over the repetitions**, so a burst
that hits one repetition (a page-fault storm, a neighbour flushing the caches) does not decide the verdict.
"""

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

# Untimed calls before measuring: the first predict_proba pays for lazy imports, allocator growth and
# cold caches, which a served model pays once at start-up, not per request.
WARMUP_SINGLE = 5
WARMUP_BATCH = 2
#: What the gated figures of a :class:`LatencyReport` measure.
CPU_CLOCK = "thread_cpu"
#: The clock of a record made before the CPU-time measurement (wall-clock figures only).
WALL_CLOCK = "wall"


@dataclass(frozen=True)
class LatencyReport:
    """Scoring latency of one pipeline, as thread CPU time on one thread, with the wall-clock figures.

    Every ``*_p50_ms``/``*_p99_ms`` figure is the median, over ``repetitions``, of that percentile within
    one repetition, in milliseconds.

    Attributes:
        single_p50_ms: Median thread CPU time to score one row.
        single_p99_ms: 99th percentile of the same (gated against ``policy.max_latency_p99_ms_single``).
        batch_p50_ms: Median thread CPU time to score ``batch_size`` rows.
        batch_p99_ms: 99th percentile of the same (gated against ``policy.max_latency_p99_ms_batch``).
        batch_size: Rows per batch.
        throughput_rows_per_s: ``batch_size`` divided by ``batch_p50_ms``: rows per CPU second on one thread.
        single_repeats: Timed one-row calls per repetition.
        batch_repeats: Timed batch calls per repetition.
        repetitions: Repetitions (each with its own percentiles).
        wall_single_p50_ms: As ``single_p50_ms``, in wall-clock time (information only).
        wall_single_p99_ms: As ``single_p99_ms``, in wall-clock time (information only).
        wall_batch_p50_ms: As ``batch_p50_ms``, in wall-clock time (information only).
        wall_batch_p99_ms: As ``batch_p99_ms``, in wall-clock time (information only).
        wall_throughput_rows_per_s: ``batch_size`` divided by ``wall_batch_p50_ms``.
        threads: Threads each native thread pool was limited to while scoring.
        clock: What the gated figures measure: :data:`CPU_CLOCK`, or :data:`WALL_CLOCK` for a record made
            before the CPU-time measurement (the gate refuses those).
    """

    single_p50_ms: float
    single_p99_ms: float
    batch_p50_ms: float
    batch_p99_ms: float
    batch_size: int
    throughput_rows_per_s: float
    single_repeats: int
    batch_repeats: int
    repetitions: int
    wall_single_p50_ms: float
    wall_single_p99_ms: float
    wall_batch_p50_ms: float
    wall_batch_p99_ms: float
    wall_throughput_rows_per_s: float
    threads: int = 1
    clock: str = CPU_CLOCK

    def to_dict(self) -> dict[str, Any]:
        """Plain data (timings are finite numbers)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LatencyReport":
        """Rebuild from :meth:`to_dict` output (a None timing, i.e. undefined, becomes NaN).

        A record without ``clock`` was made before the CPU-time measurement: its figures are wall-clock, so
        it is rebuilt with ``clock`` :data:`WALL_CLOCK` and its figures as the wall ones too.
        """

        def number(key: str, fallback: str | None = None) -> float:
            value = data.get(key, data.get(fallback) if fallback else None)
            return math.nan if value is None else float(value)

        old = "clock" not in data
        return cls(
            single_p50_ms=number("single_p50_ms"),
            single_p99_ms=number("single_p99_ms"),
            batch_p50_ms=number("batch_p50_ms"),
            batch_p99_ms=number("batch_p99_ms"),
            batch_size=int(data["batch_size"]),
            throughput_rows_per_s=number("throughput_rows_per_s"),
            single_repeats=int(data["single_repeats"]),
            batch_repeats=int(data["batch_repeats"]),
            repetitions=int(data.get("repetitions", 1)),
            wall_single_p50_ms=number("wall_single_p50_ms", "single_p50_ms"),
            wall_single_p99_ms=number("wall_single_p99_ms", "single_p99_ms"),
            wall_batch_p50_ms=number("wall_batch_p50_ms", "batch_p50_ms"),
            wall_batch_p99_ms=number("wall_batch_p99_ms", "batch_p99_ms"),
            wall_throughput_rows_per_s=number("wall_throughput_rows_per_s", "throughput_rows_per_s"),
            threads=int(data.get("threads", 1)),
            clock=WALL_CLOCK if old else str(data["clock"]),
        )


def _batch(rows: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    # Too few rows for a batch: cycle through them, so the batch has the real rows' value mix.
    positions = np.arange(batch_size) % len(rows)
    return rows.iloc[positions].reset_index(drop=True)


def _timed_ms(pipeline: Pipeline, frames: list[pd.DataFrame]) -> tuple[np.ndarray, np.ndarray]:
    """Thread CPU time and wall time of ``predict_proba`` on each frame, in milliseconds."""
    cpu = np.empty(len(frames), dtype=np.float64)
    wall = np.empty(len(frames), dtype=np.float64)
    for i, frame in enumerate(frames):
        wall_start, cpu_start = time.perf_counter_ns(), time.thread_time_ns()
        pipeline.predict_proba(frame)
        cpu[i] = (time.thread_time_ns() - cpu_start) / 1e6
        wall[i] = (time.perf_counter_ns() - wall_start) / 1e6
    return cpu, wall


def _median_percentile(samples: list[np.ndarray], q: float) -> float:
    return float(np.median([np.percentile(s, q) for s in samples]))


def _rate(rows: int, ms: float) -> float:
    return rows / (ms / 1000.0) if ms > 0 else math.inf


def measure_latency(
    pipeline: Pipeline,
    rows: pd.DataFrame,
    *,
    batch_size: int,
    single_repeats: int = 60,
    batch_repeats: int = 4,
    repetitions: int = 5,
) -> LatencyReport:
    """Thread CPU time (and wall time) of ``pipeline.predict_proba`` on single rows and batches, on one thread.

    Every call, warm-up included, runs under ``threadpool_limits(1)``: one request is served by one thread,
    and only then is the calling thread's CPU time the whole cost (an OpenMP team would work, and on a busy
    machine spin-wait, on threads the clock does not see). After ``WARMUP_SINGLE`` one-row and
    ``WARMUP_BATCH`` batch calls, each of ``repetitions`` repetitions times ``single_repeats`` one-row calls
    (cycling through ``rows``) and ``batch_repeats`` calls on the first ``batch_size`` rows (cycled when
    there are fewer); each figure is the median over the repetitions of its per-repetition percentile.
    Frames are sliced before the clocks start, so only scoring is timed.

    Args:
        pipeline: The fitted pipeline exactly as loaded from the stored artifact.
        rows: Model inputs as the pipeline expects them, e.g.
            :func:`~mlops_assets.ml.features.model_inputs` of the holdout.
        batch_size: Rows per batch (``policy.latency_batch_size``).
        single_repeats: Timed one-row calls per repetition.
        batch_repeats: Timed batch calls per repetition.
        repetitions: Repetitions; an odd number makes the median one repetition's value.

    Returns:
        The latency report (milliseconds; throughput in rows per second).

    Raises:
        ValueError: ``rows`` is empty, or a size or count is below 1.
    """
    if len(rows) == 0:
        raise ValueError("cannot measure latency on zero rows")
    if min(batch_size, single_repeats, batch_repeats, repetitions) < 1:
        raise ValueError(
            "batch_size, single_repeats, batch_repeats and repetitions must be >= 1, got "
            f"{batch_size}, {single_repeats}, {batch_repeats}, {repetitions}"
        )
    singles = [rows.iloc[[i % len(rows)]] for i in range(single_repeats)]
    batches = [_batch(rows, batch_size)] * batch_repeats
    cpu_single: list[np.ndarray] = []
    wall_single: list[np.ndarray] = []
    cpu_batch: list[np.ndarray] = []
    wall_batch: list[np.ndarray] = []
    with threadpool_limits(limits=1):
        _timed_ms(pipeline, singles[:WARMUP_SINGLE] + [batches[0]] * WARMUP_BATCH)
        for _ in range(repetitions):
            cpu, wall = _timed_ms(pipeline, singles)
            cpu_single.append(cpu)
            wall_single.append(wall)
            cpu, wall = _timed_ms(pipeline, batches)
            cpu_batch.append(cpu)
            wall_batch.append(wall)
    batch_p50 = _median_percentile(cpu_batch, 50)
    wall_batch_p50 = _median_percentile(wall_batch, 50)
    return LatencyReport(
        single_p50_ms=_median_percentile(cpu_single, 50),
        single_p99_ms=_median_percentile(cpu_single, 99),
        batch_p50_ms=batch_p50,
        batch_p99_ms=_median_percentile(cpu_batch, 99),
        batch_size=batch_size,
        throughput_rows_per_s=_rate(batch_size, batch_p50),
        single_repeats=single_repeats,
        batch_repeats=batch_repeats,
        repetitions=repetitions,
        wall_single_p50_ms=_median_percentile(wall_single, 50),
        wall_single_p99_ms=_median_percentile(wall_single, 99),
        wall_batch_p50_ms=wall_batch_p50,
        wall_batch_p99_ms=_median_percentile(wall_batch, 99),
        wall_throughput_rows_per_s=_rate(batch_size, wall_batch_p50),
        threads=1,
        clock=CPU_CLOCK,
    )
