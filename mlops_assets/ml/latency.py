"""Scoring latency of a fitted pipeline: one row at a time and in batches.

The caller passes the exact pipeline loaded from the stored artifact, so what is timed is what would be
served. Timings are wall-clock (:func:`time.perf_counter`) and therefore the one non-deterministic output
of the evaluation; the gate compares their p99 with the budget in the policy.
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


@dataclass(frozen=True)
class LatencyReport:
    """Scoring latency of one pipeline.

    Attributes:
        single_p50_ms: Median time to score one row, in milliseconds.
        single_p99_ms: 99th percentile of the same.
        batch_p50_ms: Median time to score ``batch_size`` rows, in milliseconds.
        batch_p99_ms: 99th percentile of the same.
        batch_size: Rows per batch.
        throughput_rows_per_s: ``batch_size`` divided by the median batch time.
        single_repeats: Timed one-row calls.
        batch_repeats: Timed batch calls.
    """

    single_p50_ms: float
    single_p99_ms: float
    batch_p50_ms: float
    batch_p99_ms: float
    batch_size: int
    throughput_rows_per_s: float
    single_repeats: int
    batch_repeats: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data (all values finite numbers)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LatencyReport":
        """Rebuild from :meth:`to_dict` output (a None timing, i.e. undefined, becomes NaN)."""

        def number(key: str) -> float:
            value = data[key]
            return math.nan if value is None else float(value)

        return cls(
            single_p50_ms=number("single_p50_ms"),
            single_p99_ms=number("single_p99_ms"),
            batch_p50_ms=number("batch_p50_ms"),
            batch_p99_ms=number("batch_p99_ms"),
            batch_size=int(data["batch_size"]),
            throughput_rows_per_s=number("throughput_rows_per_s"),
            single_repeats=int(data["single_repeats"]),
            batch_repeats=int(data["batch_repeats"]),
        )


def _batch(rows: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    # Too few rows for a batch: cycle through them, so the batch has the real rows' value mix.
    positions = np.arange(batch_size) % len(rows)
    return rows.iloc[positions].reset_index(drop=True)


def _timed_ms(pipeline: Pipeline, frames: list[pd.DataFrame]) -> np.ndarray:
    out = np.empty(len(frames), dtype=np.float64)
    for i, frame in enumerate(frames):
        start = time.perf_counter()
        pipeline.predict_proba(frame)
        out[i] = (time.perf_counter() - start) * 1000.0
    return out


def measure_latency(
    pipeline: Pipeline,
    rows: pd.DataFrame,
    *,
    batch_size: int,
    single_repeats: int = 200,
    batch_repeats: int = 20,
) -> LatencyReport:
    """Time ``pipeline.predict_proba`` on single rows and on batches, after a warm-up.

    Single-row calls cycle through ``rows`` (one row per call); every batch holds the first ``batch_size``
    rows (cycled when there are fewer). Frames are sliced before the clock starts, so only scoring is timed.

    Args:
        pipeline: The fitted pipeline exactly as loaded from the stored artifact.
        rows: Model inputs as the pipeline expects them, e.g.
            :func:`~mlops_assets.ml.features.model_inputs` of the holdout.
        batch_size: Rows per batch (``policy.latency_batch_size``).
        single_repeats: Timed one-row calls.
        batch_repeats: Timed batch calls.

    Returns:
        The latency report (p50/p99 in milliseconds, throughput in rows per second).

    Raises:
        ValueError: ``rows`` is empty, or a size or repeat count is below 1.
    """
    if len(rows) == 0:
        raise ValueError("cannot measure latency on zero rows")
    if batch_size < 1 or single_repeats < 1 or batch_repeats < 1:
        raise ValueError(
            f"batch_size, single_repeats and batch_repeats must be >= 1, got {batch_size}, {single_repeats}, "
            f"{batch_repeats}"
        )
    singles = [rows.iloc[[i % len(rows)]] for i in range(single_repeats)]
    batch = _batch(rows, batch_size)
    _timed_ms(pipeline, singles[:WARMUP_SINGLE] + [batch] * WARMUP_BATCH)
    # One request is served by one thread: scoring a single row on an OpenMP team only adds fork/join and,
    # on a busy machine, spin-waits for cores other processes hold (measured: p99 6 ms -> 200 ms).
    with threadpool_limits(limits=1):
        single = _timed_ms(pipeline, singles)
    batches = _timed_ms(pipeline, [batch] * batch_repeats)
    batch_p50 = float(np.percentile(batches, 50))
    return LatencyReport(
        single_p50_ms=float(np.percentile(single, 50)),
        single_p99_ms=float(np.percentile(single, 99)),
        batch_p50_ms=batch_p50,
        batch_p99_ms=float(np.percentile(batches, 99)),
        batch_size=batch_size,
        throughput_rows_per_s=batch_size / (batch_p50 / 1000.0) if batch_p50 > 0 else math.inf,
        single_repeats=single_repeats,
        batch_repeats=batch_repeats,
    )
