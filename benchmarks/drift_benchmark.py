"""Benchmark of the drift engine against a work floor and Evidently 0.7.23's DataDriftPreset.

Generates a seeded reference and current data set (20 numeric and 8 categorical columns, drift in some
of them) at each requested size and writes each twice as Parquet, as the IO manager does
(``to_parquet(index=False)``): with the categorical columns as pandas ``str`` (what the product's
``features`` frames hold: the schema coerces ``string``/``category`` spec columns to ``str``, and
``pd.read_parquet`` returns ``str`` again under pandas 3) and, as a secondary case, as ``category``.
The frames read back from those files are measured in one run:

* in-process, interleaved round by round (one long-lived Evidently worker process in its own virtualenv,
  because Evidently does not import under pandas 3; it waits while ours runs and ours waits while it runs):

  - the work floor: sort every numeric column, count every categorical one (``np.bincount`` of the codes
    of a ``category`` column, ``value_counts`` of a ``str`` one), on the current frame and on both frames;
  - ours per batch: the stored reference parsed from its JSON (``DriftReference.from_json``) and
    ``drift_report`` on the current frame, as the ``drift_report`` asset does;
  - ours end to end: ``build_reference`` on the reference frame + ``drift_report`` on the current frame;
  - Evidently end to end: ``Dataset.from_pandas`` of both frames + ``Report([DataDriftPreset()]).run``,
    timed inside the worker (each part recorded). Its per-batch work cannot be separated from its
    reference processing: every run tests the raw reference columns (there is no stored profile), so no
    per-batch ratio against Evidently is given;

* whole process, alternating launches: each side as a fresh interpreter that imports its library, reads
  both Parquet files, computes its report and serialises it to JSON, timed from outside (wall clock).

It then compares the per-column verdicts with Evidently's when both use the same tests (our choice of
tests follows Evidently's rule; BH off on our side), with the full reference (distances) and with a
1000-row reference (p-value tests), records the stored reference's size and the error of its grid, and
writes ``docs/benchmarks/drift.md``.

Usage::

    python benchmarks/drift_benchmark.py --rows 100000 1000000 --create-evidently-venv /tmp/evidently-venv
    python benchmarks/drift_benchmark.py --rows 20000 --evidently-python /tmp/evidently-venv/bin/python \
        --output /tmp/drift.md
"""

import argparse
import contextlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow
import scipy
from bench_common import cpu_model, load_average
from scipy import stats

from mlops_assets.ml.drift import (
    CHISQUARE,
    JENSEN_SHANNON,
    KS,
    P_VALUE_TESTS,
    WASSERSTEIN,
    ColumnKind,
    DriftOptions,
    DriftReference,
    DriftReport,
    NumericReference,
    Z,
    build_reference,
    drift_report,
)

REPO = Path(__file__).resolve().parents[1]
EVIDENTLY_VERSION = "0.7.23"
N_NUMERIC = 20
CATEGORY_SIZES = (10, 15, 20, 25, 30, 35, 40, 50)
SMALL_REFERENCE_ROWS = 1000
# The categorical dtypes measured: the product's (first, the primary figures) and pandas' categorical.
STR, CATEGORY = "str", "category"
COLUMN_TYPES = (STR, CATEGORY)

# Evidently's names of its tests (display names when it chose them, registry names when forced) → ours.
EVIDENTLY_TESTS = {
    "K-S p_value": KS,
    "ks": KS,
    "chi-square p_value": CHISQUARE,
    "chisquare": CHISQUARE,
    "Z-test p_value": Z,
    "z": Z,
    "Wasserstein distance (normed)": WASSERSTEIN,
    "wasserstein": WASSERSTEIN,
    "Jensen-Shannon distance": JENSEN_SHANNON,
    "jensenshannon": JENSEN_SHANNON,
}

EVIDENTLY_WORKER = r'''
"""Evidently worker: one JSON command per line on stdin, one JSON answer per line on stdout.

{"cmd": "run", "reference": path, "current": path, "numeric": [...], "categorical": [...], "methods": {...} | null,
 "columns": bool}: reads the two Parquet files (once per pair, cached, outside the timed region), then times
Dataset.from_pandas of each frame and Report([DataDriftPreset()]).run; with "columns" also returns the
per-column results (extracted after the timing). {"cmd": "clear"} drops the cached frames, {"cmd": "versions"}
returns the versions, {"cmd": "exit"} ends the worker.
"""
import json
import sys
import time

import evidently
import numpy
import pandas
import scipy
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def column_results(snapshot):
    columns, drifted_count = {}, None
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            columns[config["column"]] = {
                "method": config["method"], "threshold": config["threshold"], "value": metric["value"]
            }
        elif config["type"].endswith("DriftedColumnsCount"):
            drifted_count = metric["value"]["count"]
    return columns, drifted_count


protocol = sys.stdout
sys.stdout = sys.stderr  # whatever a library prints must not enter the protocol
frames = {}
for line in sys.stdin:
    command = json.loads(line)
    answer = {}
    if command["cmd"] == "exit":
        break
    if command["cmd"] == "clear":
        frames.clear()
    elif command["cmd"] == "versions":
        answer = {"evidently": evidently.__version__, "pandas": pandas.__version__, "numpy": numpy.__version__,
                  "scipy": scipy.__version__, "python": sys.version.split()[0]}
    elif command["cmd"] == "run":
        key = (command["reference"], command["current"])
        if key not in frames:
            frames[key] = (pandas.read_parquet(key[0]), pandas.read_parquet(key[1]))
        reference, current = frames[key]
        definition = DataDefinition(
            numerical_columns=command["numeric"], categorical_columns=command["categorical"]
        )
        start = time.perf_counter()
        ref = Dataset.from_pandas(reference, data_definition=definition)
        after_ref = time.perf_counter()
        cur = Dataset.from_pandas(current, data_definition=definition)
        after_cur = time.perf_counter()
        snapshot = Report([DataDriftPreset(per_column_method=command.get("methods"))]).run(cur, ref)
        end = time.perf_counter()
        answer = {
            "from_pandas_reference": after_ref - start,
            "from_pandas_current": after_cur - after_ref,
            "run": end - after_cur,
            "total": end - start,
        }
        if command.get("columns"):
            answer["columns"], answer["drifted_count"] = column_results(snapshot)
    protocol.write(json.dumps(answer) + "\n")
    protocol.flush()
'''

EVIDENTLY_ONCE = r'''
"""One whole Evidently run: import, read both Parquet files, DataDriftPreset, the snapshot as JSON."""
import time

start = time.perf_counter()
import json
import sys

import pandas
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

imported = time.perf_counter()
cfg = json.load(open(sys.argv[1]))
reference = pandas.read_parquet(cfg["reference"])
current = pandas.read_parquet(cfg["current"])
read = time.perf_counter()
definition = DataDefinition(numerical_columns=cfg["numeric"], categorical_columns=cfg["categorical"])
snapshot = Report([DataDriftPreset()]).run(
    Dataset.from_pandas(current, data_definition=definition),
    Dataset.from_pandas(reference, data_definition=definition),
)
computed = time.perf_counter()
text = snapshot.json()
end = time.perf_counter()
print(json.dumps({"import": imported - start, "read": read - imported, "compute": computed - read,
                  "serialise": end - computed, "json_bytes": len(text)}))
'''

OURS_ONCE = r'''
"""One whole run of ours: import, read both Parquet files, build_reference + drift_report, the report as JSON."""
import time

start = time.perf_counter()
import json
import sys

import pandas

from mlops_assets.ml.drift import build_reference, drift_report

imported = time.perf_counter()
cfg = json.load(open(sys.argv[1]))
reference = pandas.read_parquet(cfg["reference"])
current = pandas.read_parquet(cfg["current"])
read = time.perf_counter()
report = drift_report(build_reference(reference, cfg["kinds"]), current)
computed = time.perf_counter()
text = report.to_json()
end = time.perf_counter()
print(json.dumps({"import": imported - start, "read": read - imported, "compute": computed - read,
                  "serialise": end - computed, "json_bytes": len(text)}))
'''


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def _zipf(k: int) -> np.ndarray:
    p = 1.0 / np.arange(1, k + 1) ** 1.1
    return p / p.sum()


def generate(rows: int, seed: int, drift: bool) -> pd.DataFrame:
    """One frame of the benchmark data set; ``drift`` applies the current batch's changes.

    Drifted in the current batch: num_00 (mean +0.25 sd), num_03 (scale ×1.3), num_06 (mean +0.05 sd, below
    the Wasserstein threshold), num_09 (mean +0.12 sd), num_12 (lognormal σ 1 → 1.1), num_16 (Poisson
    λ 50 → 51), num_18 (flag share 0.30 → 0.36), cat_0 (shares reversed), cat_3 (a new category, 5 %),
    cat_5 (10 % of the rows spread uniformly).
    """
    rng = np.random.default_rng(seed)
    d: dict[str, Any] = {}
    for i in range(12):
        loc, scale = 10.0 * i, 1.0 + i
        if drift and i == 0:
            loc += 0.25 * scale
        if drift and i == 3:
            scale *= 1.3
        if drift and i == 6:
            loc += 0.05 * scale
        if drift and i == 9:
            loc += 0.12 * scale
        d[f"num_{i:02d}"] = rng.normal(loc, scale, rows)
    d["num_12"] = rng.lognormal(0.0, 1.1 if drift else 1.0, rows)
    d["num_13"] = rng.exponential(2.0, rows)
    d["num_14"] = rng.uniform(-5.0, 5.0, rows)
    d["num_15"] = rng.standard_t(3, rows)
    d["num_16"] = rng.poisson(51 if drift else 50, rows).astype(np.int64)
    d["num_17"] = rng.integers(0, 10_001, rows).astype(np.float64)
    d["num_18"] = (rng.random(rows) < (0.36 if drift else 0.30)).astype(np.int64)
    d["num_19"] = rng.integers(0, 5, rows).astype(np.int64)
    for name in ("num_01", "num_12", "num_17"):  # 5 % missing
        d[name][rng.random(rows) < 0.05] = np.nan
    for j, k in enumerate(CATEGORY_SIZES):
        probs = _zipf(k)
        labels = [f"c{j}_{i:02d}" for i in range(k)]
        if drift and j == 0:
            probs = probs[::-1]
        if drift and j == 3:
            labels, probs = [*labels, "c3_new"], np.append(probs * 0.95, 0.05)
        if drift and j == 5:
            probs = 0.9 * probs + 0.1 / k
        codes = rng.choice(len(labels), rows, p=probs)
        if j == 7:  # 2 % missing
            codes = np.where(rng.random(rows) < 0.02, -1, codes)
        d[f"cat_{j}"] = pd.Categorical.from_codes(codes, categories=pd.Index(labels))
    return pd.DataFrame(d)


def column_kinds(frame: pd.DataFrame) -> dict[str, ColumnKind]:
    return {c: ("categorical" if c.startswith("cat_") else "numeric") for c in frame.columns}


def as_stored(frame: pd.DataFrame, column_type: str, path: Path) -> pd.DataFrame:
    """``frame`` with its categorical columns as ``column_type``, through Parquet as the IO manager stores it.

    ``str``: the product's case (the schema coerces text columns to ``str``; the IO manager writes the
    frame with ``to_parquet(index=False)`` and ``load_value`` reads it with ``pd.read_parquet``, which under
    pandas 3 returns ``str`` columns). ``category``: a dictionary column with pandas metadata, read back as
    ``category``.
    """
    if column_type == STR:
        frame = frame.astype({c: "str" for c, kind in column_kinds(frame).items() if kind == "categorical"})
    frame.to_parquet(path, index=False)
    return pd.read_parquet(path)


@dataclass(frozen=True)
class Frames:
    """One column type's reference and current frames as read from their Parquet files, and the stored reference.

    Attributes:
        column_type: ``str`` or ``category`` (the dtype of the categorical columns as written).
        reference_path: The reference frame's Parquet file.
        current_path: The current frame's Parquet file.
        reference: The reference frame read back from it.
        current: The current frame read back from it.
        reference_json: ``build_reference(reference)`` as stored (JSON), for the per-batch timing.
    """

    column_type: str
    reference_path: Path
    current_path: Path
    reference: pd.DataFrame
    current: pd.DataFrame
    reference_json: str


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def work_floor(frame: pd.DataFrame, kinds: Mapping[str, ColumnKind]) -> None:
    """The work a drift report over ``frame`` cannot avoid: sort each numeric column, count each categorical one.

    Numeric columns: one ``np.sort`` of the float64 values (the report sorts each numeric column once;
    everything else it does there is binary searches into the sorted copy). Categorical columns: the
    count per category — ``np.bincount`` of the integer codes of a ``category`` column; of a ``str`` column
    ``Series.value_counts(dropna=False)`` (pyarrow's hash count; measured ~20 % faster than the report's
    ``pd.factorize`` + ``np.bincount``, so the floor is the cheaper of the two). No category labels are
    sorted: the report never sorts them either.

    Args:
        frame: The frame (rows × the columns of ``kinds``).
        kinds: Column name → ``"numeric"`` or ``"categorical"``.
    """
    for name, kind in kinds.items():
        col = frame[name]
        if kind == "numeric":
            np.sort(col.to_numpy() if col.dtype == np.float64 else col.to_numpy(dtype=np.float64, na_value=np.nan))
        elif isinstance(col.dtype, pd.CategoricalDtype):
            np.bincount(col.cat.codes.to_numpy().astype(np.intp) + 1, minlength=len(col.cat.categories) + 1)
        else:
            col.value_counts(dropna=False)


@dataclass(frozen=True)
class Timing:
    """Median, minimum and maximum of repeated measurements (seconds, or ratios) and their number."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Timing":
        return cls(statistics.median(values), min(values), max(values), len(values))


def timed(task: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of ``task``."""
    start = time.perf_counter()
    task()
    return time.perf_counter() - start


def ratio(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, Any]:
    """The ratio of two interleaved series: of their medians, and per round (pairs of the same round).

    Both series are in round order; the shorter one (e.g. Evidently, repeated fewer times) ran in the first
    rounds, so ``zip`` pairs measurements of the same round.
    """
    pairs = [a / b for a, b in zip(numerator, denominator, strict=False)]
    return {"of_medians": statistics.median(numerator) / statistics.median(denominator), "per_round": Timing.of(pairs)}


# --------------------------------------------------------------------------------------------------
# Evidently
# --------------------------------------------------------------------------------------------------


def create_evidently_venv(path: Path) -> Path:
    """Create a virtualenv with Evidently (and pandas < 3, which it needs); return its python."""
    python = path / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"evidently=={EVIDENTLY_VERSION}", "pandas<3", "pyarrow"],
        check=True,
    )
    return python


def _environment() -> dict[str, str]:
    # No telemetry from Evidently's process; ours imports the package from this checkout.
    return {**os.environ, "DO_NOT_TRACK": "1", "EVIDENTLY_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(REPO)}


class EvidentlyWorker:
    """One long-lived Evidently process in its own virtualenv, answering one command at a time.

    It is idle (blocked reading its stdin) while ours runs, so its repetitions can be interleaved with ours.
    """

    def __init__(self, python: Path, workdir: Path) -> None:
        script = workdir / "evidently_worker.py"
        script.write_text(EVIDENTLY_WORKER)
        self.log_path = workdir / "evidently_worker.log"
        self._log = self.log_path.open("w")
        self._proc = subprocess.Popen(
            [str(python), str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=_environment(),
        )

    def call(self, **command: Any) -> dict[str, Any]:
        """Send one command, wait for its answer."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the Evidently worker ended (exit code {self._proc.wait()}); see {self.log_path}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def __enter__(self) -> "EvidentlyWorker":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._proc.poll() is None and self._proc.stdin is not None:
            self._proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


def run_once(python: Path, script: Path, config: Path) -> dict[str, Any]:
    """One whole-process run: wall-clock seconds from launch to exit, and the parts the process timed itself."""
    start = time.perf_counter()
    done = subprocess.run(
        [str(python), str(script), str(config)], check=True, capture_output=True, text=True, env=_environment()
    )
    wall = time.perf_counter() - start
    inner: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall": wall, **inner}


def evidently_verdict(test: str, value: float, threshold: float) -> bool:
    """Evidently's own comparison: KS p ≤ t, chi-square and z p < t, distances ≥ t."""
    if test == KS:
        return value <= threshold
    if test in P_VALUE_TESTS:
        return value < threshold
    return value >= threshold


@dataclass(frozen=True)
class Agreement:
    rows: list[dict[str, Any]]
    same_tests: bool
    agree: int
    total: int
    evidently_count_matches: bool


def compare(ours: DriftReport, evidently: dict[str, Any], extra: DriftReport | None = None) -> Agreement:
    rows = []
    counted = 0
    for col in ours.columns:
        ev = evidently["columns"][col.column]
        ev_test = EVIDENTLY_TESTS.get(ev["method"], ev["method"])
        ev_value = float(ev["value"])
        ev_drift = evidently_verdict(ev_test, ev_value, float(ev["threshold"]))
        counted += ev_drift
        ours_value = col.p_value if col.test in P_VALUE_TESTS else col.statistic
        row = {
            "column": col.column,
            "test": col.test,
            "evidently_test": ev_test,
            "ours": ours_value,
            "evidently": ev_value,
            "ours_drifted": col.drifted,
            "evidently_drifted": ev_drift,
        }
        if extra is not None:
            other = extra.column(col.column)
            row["default_test"] = other.test
            row["default_drifted"] = other.drifted
        rows.append(row)
    agree = sum(r["ours_drifted"] == r["evidently_drifted"] for r in rows)
    return Agreement(
        rows=rows,
        same_tests=all(r["test"] == r["evidently_test"] for r in rows),
        agree=agree,
        total=len(rows),
        evidently_count_matches=evidently.get("drifted_count") is None or counted == evidently["drifted_count"],
    )


# --------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------

EVIDENTLY_PARTS = ("from_pandas_reference", "from_pandas_current", "run", "total")
PROCESS_PARTS = ("wall", "import", "read", "compute", "serialise")


def _floor_both(frames: Frames, kinds: Mapping[str, ColumnKind]) -> None:
    work_floor(frames.reference, kinds)
    work_floor(frames.current, kinds)


def _ours_batch(frames: Frames) -> None:
    drift_report(DriftReference.from_json(frames.reference_json), frames.current)


def _lists(kinds: Mapping[str, ColumnKind]) -> dict[str, list[str]]:
    return {
        "numeric": [c for c, k in kinds.items() if k == "numeric"],
        "categorical": [c for c, k in kinds.items() if k == "categorical"],
    }


def measure_in_process(
    frames: Mapping[str, Frames],
    kinds: Mapping[str, ColumnKind],
    worker: EvidentlyWorker | None,
    repeats: int,
    evidently_repeats: Mapping[str, int],
    columns_of: str | None,
) -> dict[str, Any]:
    """Ours, the work floor and Evidently in one process each, interleaved round by round.

    A round runs, per column type: the floor on the current frame, the floor on both frames, ours per batch,
    ours end to end, then (in the first ``evidently_repeats[type]`` rounds) one Evidently run in the worker.

    Returns:
        ``timings`` (column type → what → :class:`Timing`), ``ratios`` (column type → name → :func:`ratio`),
        ``load_start`` / ``load_end``, and ``evidently_columns`` (the per-column results of the last Evidently
        run on ``columns_of``, None without it).
    """
    load_start = load_average()
    times: dict[str, dict[str, list[float]]] = {t: defaultdict(list) for t in frames}
    columns_answer: dict[str, Any] | None = None
    rounds = max(repeats, *(evidently_repeats[t] for t in frames)) if worker is not None else repeats
    for r in range(rounds):
        for column_type, f in frames.items():
            t = times[column_type]
            if r < repeats:
                t["floor_current"].append(timed(partial(work_floor, f.current, kinds)))
                t["floor_both"].append(timed(partial(_floor_both, f, kinds)))
                t["ours_batch"].append(timed(partial(_ours_batch, f)))
                start = time.perf_counter()
                built = build_reference(f.reference, kinds)
                middle = time.perf_counter()
                drift_report(built, f.current)
                end = time.perf_counter()
                t["ours_build"].append(middle - start)
                t["ours_e2e"].append(end - start)
            if worker is not None and r < evidently_repeats[column_type]:
                last = column_type == columns_of and r == evidently_repeats[column_type] - 1
                answer = worker.call(
                    cmd="run",
                    reference=str(f.reference_path),
                    current=str(f.current_path),
                    columns=last,
                    **_lists(kinds),
                )
                for part in EVIDENTLY_PARTS:
                    t[f"evidently_{part}"].append(answer[part])
                if last:
                    columns_answer = answer
            done = {k: f"{v[-1]:.3f}" for k, v in t.items() if len(v) == r + 1}
            print(f"  round {r + 1}/{rounds} {column_type}: {done}", flush=True)
    ratios: dict[str, dict[str, Any]] = {}
    for column_type, t in times.items():
        ratios[column_type] = {
            "ours_batch_floor": ratio(t["ours_batch"], t["floor_current"]),
            "ours_e2e_floor": ratio(t["ours_e2e"], t["floor_both"]),
        }
        if t.get("evidently_total"):
            ratios[column_type]["e2e"] = ratio(t["evidently_total"], t["ours_e2e"])
    return {
        "timings": {ct: {k: Timing.of(v) for k, v in t.items()} for ct, t in times.items()},
        "ratios": ratios,
        "load_start": load_start,
        "load_end": load_average(),
        "evidently_columns": columns_answer,
    }


def measure_processes(
    frames: Mapping[str, Frames],
    kinds: Mapping[str, ColumnKind],
    python: Path | None,
    workdir: Path,
    repeats: int,
    evidently_repeats: Mapping[str, int],
) -> dict[str, Any]:
    """Each side as a fresh process (import, read both Parquet files, report, JSON), launches alternating.

    Returns:
        ``timings`` (column type → ``ours`` / ``evidently`` → part → :class:`Timing`; the part ``wall`` is
        timed from outside, the others inside the process), ``ratios`` (column type → ``wall`` →
        :func:`ratio`), ``load_start`` / ``load_end``.
    """
    load_start = load_average()
    ours_script, evidently_script = workdir / "ours_once.py", workdir / "evidently_once.py"
    ours_script.write_text(OURS_ONCE)
    evidently_script.write_text(EVIDENTLY_ONCE)
    configs: dict[str, Path] = {}
    for column_type, f in frames.items():
        configs[column_type] = workdir / f"process_{column_type}.json"
        configs[column_type].write_text(
            json.dumps(
                {"reference": str(f.reference_path), "current": str(f.current_path), "kinds": kinds, **_lists(kinds)}
            )
        )
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {t: defaultdict(list) for t in frames}
    rounds = max(repeats, *(evidently_repeats[t] for t in frames)) if python is not None else repeats
    for r in range(rounds):
        for column_type in frames:
            if r < repeats:
                runs[column_type]["ours"].append(run_once(Path(sys.executable), ours_script, configs[column_type]))
            if python is not None and r < evidently_repeats[column_type]:
                runs[column_type]["evidently"].append(run_once(python, evidently_script, configs[column_type]))
            done = {side: f"{v[-1]['wall']:.2f}" for side, v in runs[column_type].items() if len(v) == r + 1}
            print(f"  process round {r + 1}/{rounds} {column_type}: {done}", flush=True)
    timings: dict[str, dict[str, dict[str, Timing]]] = {}
    ratios: dict[str, dict[str, Any]] = {}
    for column_type, sides in runs.items():
        timings[column_type] = {
            side: {part: Timing.of([run[part] for run in side_runs]) for part in PROCESS_PARTS}
            for side, side_runs in sides.items()
        }
        if sides.get("evidently"):
            ratios[column_type] = {
                "wall": ratio([x["wall"] for x in sides["evidently"]], [x["wall"] for x in sides["ours"]])
            }
    return {"timings": timings, "ratios": ratios, "load_start": load_start, "load_end": load_average()}


def details(
    frames: Frames,
    kinds: Mapping[str, ColumnKind],
    worker: EvidentlyWorker | None,
    evidently_columns: dict[str, Any] | None,
    workdir: Path,
) -> dict[str, Any]:
    """Reference size, grid accuracy and (with Evidently) the verdict agreement, on one column type's frames."""
    reference = build_reference(frames.reference, kinds)
    report = drift_report(reference, frames.current, DriftOptions(benjamini_hochberg=False))
    # Calibration (distances against their null at the current size) may only remove alarms of the fixed
    # thresholds; list the verdicts it changes (none expected: this drift is far beyond sampling noise).
    fixed = drift_report(reference, frames.current, DriftOptions.evidently())
    changed = [c.column for c in report.columns if c.drifted != fixed.column(c.column).drifted]
    print(
        f"calibrated vs fixed-threshold verdicts: {len(changed)} of {len(report.columns)} differ"
        + (f" ({', '.join(changed)})" if changed else "")
        + f"; drifted: {', '.join(c.column for c in report.columns if c.drifted)}",
        flush=True,
    )
    out: dict[str, Any] = {
        "quantiles": reference.quantiles,
        "max_exact": reference.max_exact,
        "reference_json_bytes": len(reference.to_json()),
        "reference_sizes": reference_sizes(reference),
        "grid": grid_accuracy(reference, frames.reference, frames.current, report),
        "calibration_changed": changed,
    }
    if worker is None or evidently_columns is None:
        return out
    lists = _lists(kinds)
    agreement = compare(report, evidently_columns)
    if not agreement.same_tests:
        # Force Evidently onto our tests so that the verdicts are comparable.
        methods = {c.column: c.test for c in report.columns}
        forced = worker.call(
            cmd="run",
            reference=str(frames.reference_path),
            current=str(frames.current_path),
            methods=methods,
            columns=True,
            **lists,
        )
        agreement = compare(report, forced)
    out["agreement_large"] = vars(agreement)
    small_path = workdir / f"small-{frames.column_type}.parquet"
    frames.reference.iloc[:SMALL_REFERENCE_ROWS].to_parquet(small_path, index=False)
    small_reference = build_reference(pd.read_parquet(small_path), kinds)
    ours_small = drift_report(small_reference, frames.current, DriftOptions.evidently())
    ev_small = worker.call(
        cmd="run", reference=str(small_path), current=str(frames.current_path), columns=True, **lists
    )
    out["agreement_small"] = vars(compare(ours_small, ev_small, drift_report(small_reference, frames.current)))
    print(
        f"agreement {out['agreement_large']['agree']}/{out['agreement_large']['total']} (full reference), "
        f"{out['agreement_small']['agree']}/{out['agreement_small']['total']} (small reference)",
        flush=True,
    )
    return out


# --------------------------------------------------------------------------------------------------
# Accuracy of the stored grid
# --------------------------------------------------------------------------------------------------


def grid_accuracy(
    reference: DriftReference, ref: pd.DataFrame, cur: pd.DataFrame, report: DriftReport
) -> list[dict[str, Any]]:
    """Per numeric column: stored bounds and the actual error of W and KS against the raw reference."""
    numeric = [c.name for c in reference.columns if isinstance(c, NumericReference)]
    ks = drift_report(reference, cur, DriftOptions(column_tests=dict.fromkeys(numeric, KS)))
    rows = []
    for col in reference.columns:
        if not isinstance(col, NumericReference):
            continue
        a = ref[col.name].to_numpy(dtype=np.float64, na_value=np.nan)
        b = cur[col.name].to_numpy(dtype=np.float64, na_value=np.nan)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        norm = max(float(np.std(a)), 0.001)
        w_raw = stats.wasserstein_distance(a, b) / norm
        ks_raw = stats.ks_2samp(a, b, method="asymp").statistic
        w_col = report.column(col.name)
        w_ours = (
            w_col.statistic
            if w_col.test == WASSERSTEIN
            else drift_report(reference, cur, DriftOptions(column_tests={col.name: WASSERSTEIN}))
            .column(col.name)
            .statistic
        )
        rows.append(
            {
                "column": col.name,
                "exact": col.exact,
                "points": len(col.values),
                "w_bound": col.grid_wasserstein / norm,
                "w_error": abs(float(w_ours or 0.0) - w_raw),
                "w_raw": w_raw,
                "ks_bound": col.grid_ks,
                "ks_error": abs(float(ks.column(col.name).statistic or 0.0) - ks_raw),
            }
        )
    return rows


def reference_sizes(reference: DriftReference) -> list[dict[str, Any]]:
    rows = []
    for col in reference.columns:
        json_bytes = len(json.dumps(col.to_dict(), separators=(",", ":")))
        if isinstance(col, NumericReference):
            array_bytes = 16 * len(col.values) + 16 * len(col.psi_counts)
            detail = f"{len(col.values)} points" + (" (exact)" if col.exact else "")
        else:
            array_bytes = 8 * len(col.counts) + sum(len(c.encode()) for c in col.categories)
            detail = f"{len(col.categories)} categories"
        rows.append(
            {
                "column": col.name,
                "kind": col.kind,
                "json_bytes": json_bytes,
                "array_bytes": array_bytes,
                "detail": detail,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4) else f"{value:.4f}"
    return str(value)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


IN_PROCESS_ROWS = {
    "floor_current": "work floor, current frame: sort each numeric column, count each categorical one",
    "floor_both": "work floor, both frames (reference + current)",
    "ours_batch": "ours per batch: `DriftReference.from_json` (the stored reference) + `drift_report`",
    "ours_build": "ours: `build_reference` (the first part of the next row)",
    "ours_e2e": "**ours end to end: `build_reference` + `drift_report`**",
    "evidently_from_pandas_reference": "Evidently: `Dataset.from_pandas(reference)` (part of its end-to-end row)",
    "evidently_from_pandas_current": "Evidently: `Dataset.from_pandas(current)` (part of its end-to-end row)",
    "evidently_run": "Evidently: `Report([DataDriftPreset()]).run(current, reference)` (part of the next row)",
    "evidently_total": "**Evidently end to end: both `from_pandas` + `Report.run`**",
}
RATIO_ROWS = {
    "e2e": "end to end, in-process: Evidently / ours",
    "wall": "whole process: Evidently / ours",
    "ours_batch_floor": "ours per batch / work floor on the current frame",
    "ours_e2e_floor": "ours end to end / work floor on both frames",
}
TYPE_LABELS = {STR: "`str` (the product's)", CATEGORY: "`category`"}


def _seconds(t: Timing) -> str:
    return f"{t.median:.3f} | {t.low:.3f}–{t.high:.3f} | {t.n}"


def _ratio_text(r: dict[str, Any] | None, bold: bool = False) -> str:
    if r is None:
        return "not measured"
    m, p = r["of_medians"], r["per_round"]
    spec = ".0f" if m >= 10 else ".2f"
    head = f"{m:{spec}}×"
    rounds = f"{p.n} round" + ("" if p.n == 1 else "s")
    return f"{'**' + head + '**' if bold else head} (per round {p.low:{spec}}–{p.high:{spec}}, {rounds})"


def _ratio(size: dict[str, Any], column_type: str, name: str) -> dict[str, Any] | None:
    block = size["whole_process"] if name == "wall" else size["in_process"]
    found: dict[str, Any] | None = block["ratios"].get(column_type, {}).get(name)
    return found


def _size_section(size: dict[str, Any]) -> list[str]:
    rows = size["rows"]
    ip, wp = size["in_process"], size["whole_process"]
    lines = [
        f"## {rows:,} rows",
        "",
        f"Reference and current frames of {rows:,} rows each; ours reads the categorical columns back as "
        + " and ".join(f"`{dt}` (the `{ct}` files)" for ct, dt in size["dtypes"].items())
        + ".",
        "",
        "### Ratios",
        "",
        "| ratio | " + " | ".join(TYPE_LABELS[t] for t in ip["timings"]) + " |",
        "|---|" + "---|" * len(ip["timings"]),
    ]
    for name, label in RATIO_ROWS.items():
        cells = [_ratio_text(_ratio(size, t, name), bold=t == STR) for t in ip["timings"]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "| per batch: Evidently / ours | " + " | ".join("not measurable (see below)" for _ in ip["timings"]) + " |",
        "",
        "Ratio of the medians; in brackets the range of the ratios of the runs of the same round. Ours / floor"
        " is a statement about large batches: a part of ours does not shrink with the rows (the Monte Carlo"
        " critical value of a drifted numeric column whose distance lies between its threshold and Markov's"
        " bound of the null quantile; from about 1M rows the bound settles such columns without drawing),"
        " while the floor does.",
        "",
        "### In-process timings (seconds, interleaved)",
        "",
        f"Load average (1/5/15 min) at start: {ip['load_start']}, at end: {ip['load_end']}.",
        "",
        "| what | categoricals | median | min–max | repetitions |",
        "|---|---|---|---|---|",
    ]
    for column_type, timings in ip["timings"].items():
        for key, label in IN_PROCESS_ROWS.items():
            if key in timings:
                lines.append(f"| {label} | {TYPE_LABELS[column_type]} | {_seconds(timings[key])} |")
    lines += [
        "",
        "### Whole-process timings (seconds, launches alternating)",
        "",
        f"Load average (1/5/15 min) at start: {wp['load_start']}, at end: {wp['load_end']}."
        " `wall`: from launch to exit, timed by the parent; the other parts are timed inside the process"
        " (medians; import of the library, reading both Parquet files, the report, its JSON).",
        "",
        "| process | categoricals | wall median | wall min–max | repetitions | import | read | compute | JSON |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for column_type, sides in wp["timings"].items():
        for side, parts in sides.items():
            name = "ours" if side == "ours" else f"Evidently {EVIDENTLY_VERSION}"
            inner = " | ".join(f"{parts[p].median:.3f}" for p in PROCESS_PARTS[1:])
            lines.append(f"| {name} | {TYPE_LABELS[column_type]} | {_seconds(parts['wall'])} | {inner} |")
    return [*lines, ""]


def write_markdown(path: Path, results: dict[str, Any]) -> None:
    """Write the benchmark's results as Markdown to ``path``."""
    sizes = sorted(results["sizes"], key=lambda s: -s["rows"])  # the recorded (largest) size first
    recorded = results["details"]
    lines = [
        "# Drift engine benchmark",
        "",
        "Generated by `benchmarks/drift_benchmark.py`; do not edit by hand. Command:",
        "",
        f"    {results['command']}",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {results['cpu']} ({os.cpu_count()} cores), {results['platform']}. Shared: other work ran on"
        " it, so only the ratios of measurements taken side by side in this run mean anything.",
        f"- Load average (1/5/15 min) at the start of the run: {results['load_start']}, at its end:"
        f" {results['load_end']}; each block below records its own.",
        f"- Ours: Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__},"
        f" scipy {scipy.__version__}, pyarrow {pyarrow.__version__}",
    ]
    if results.get("evidently_versions"):
        v = results["evidently_versions"]
        lines.append(
            f"- Evidently venv (Evidently does not import under pandas 3): Python {v['python']}, evidently"
            f" {v['evidently']}, pandas {v['pandas']}, numpy {v['numpy']}, scipy {v['scipy']}"
        )
    else:
        lines.append("- Evidently: not run (no `--evidently-python`)")
    lines += [
        "",
        "## Summary",
        "",
        "| ratio | categoricals | " + " | ".join(f"{s['rows']:,} rows" for s in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for column_type in COLUMN_TYPES:
        for name, label in RATIO_ROWS.items():
            cells = [_ratio_text(_ratio(s, column_type, name), bold=column_type == STR) for s in sizes]
            lines.append(f"| {label} | {TYPE_LABELS[column_type]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The `str` rows are the product's path: the `features` frames the `drift_report` asset receives hold"
        " categorical columns as pandas `str` (the schema coerces `string`/`category` spec columns to `str`;"
        " the IO manager stores frames with `to_parquet(index=False)` and reads them with `pd.read_parquet`,"
        " which returns `str` under pandas 3). The `category` rows are secondary: the same data with"
        " dictionary-encoded categorical columns read back as pandas `category`.",
        "",
        "## What is measured",
        "",
        f"Data: a seeded reference and current set of each size × {results['n_columns']} columns (20 numeric,"
        f" 8 categorical with 10–50 categories), seed {results['seed']}; drift in num_00, num_03, num_06"
        " (small), num_09, num_12, num_16, num_18, cat_0, cat_3, cat_5 (`generate` in the script). Each set is"
        " written to Parquet with `to_parquet(index=False)` and read back with `pd.read_parquet` by each side"
        " (Evidently's pandas 2 reads the `str` columns as `object`).",
        "",
        "- **Work floor**: the work a report cannot avoid, done as the report does it: one `np.sort` of each"
        " numeric column (float64), and the count per category of each categorical column (`np.bincount` of"
        " the codes of a `category` column; `value_counts(dropna=False)` of a `str` column, pyarrow's hash"
        " count, a little faster than the report's `pd.factorize` + `np.bincount`). No category labels are"
        " sorted (the report never sorts them).",
        "- **Ours per batch**: what the `drift_report` asset does per data version: parse the stored reference"
        " (`DriftReference.from_json`) and run `drift_report` (default options: BH, calibrated distances, PSI,"
        " data quality) on the current frame.",
        "- **Ours end to end**: `build_reference` on the reference frame + `drift_report` on the current frame.",
        f"- **Evidently end to end**: Evidently {EVIDENTLY_VERSION}'s `Dataset.from_pandas` of both frames"
        " (explicit numerical/categorical columns) + `Report([DataDriftPreset()]).run(current, reference)`,"
        " timed inside one long-lived worker process in Evidently's venv that reads the Parquet files once.",
        "- **In-process, interleaved**: each round runs, per column type, the floors, ours per batch and ours"
        " end to end in this process, then one Evidently run in the worker (which waits, blocked on its"
        " input, while ours runs; ours waits while it runs). Where Evidently has fewer repetitions than ours,"
        " it ran in the first rounds; per-round ratios pair runs of the same round.",
        "- **Whole process**: each side as a fresh interpreter that imports its library, reads both Parquet"
        " files, computes its report and serialises it to JSON (ours `DriftReport.to_json`, Evidently"
        " `Snapshot.json`), timed from launch to exit; ours and Evidently launched alternately.",
        "",
        "Evidently's report does work ours does not (histograms and correlation matrices of both frames for"
        " its widgets), and ours does work Evidently's does not (PSI, Monte Carlo critical values of the"
        " distances, BH, data quality): the ratios compare the two tools' default reports, not equal work.",
        "",
        "### Why there is no per-batch ratio against Evidently",
        "",
        "Ours builds the reference once (`build_reference`, at training) and each batch compares with the"
        " stored summary. Evidently has no stored reference: the only reference step outside `Report.run` is"
        " `Dataset.from_pandas(reference)` (a copy and column statistics, timed separately above), and"
        " `Report.run` then tests the raw reference columns against the current ones in every run (scipy on"
        " both raw samples, plus histograms and correlations of both). Its reference processing cannot be"
        " timed apart from its per-batch work, so the honest pair is the end-to-end one: ours with"
        " `build_reference` inside the timed region. (Timing ours per batch against Evidently's whole run"
        " overstated the ratio several-fold.)",
        "",
    ]
    for size in sizes:
        lines += _size_section(size)
    lines += [
        f"## Reference size ({recorded['rows']:,} rows)",
        "",
        f"Stored reference: {recorded['reference_json_bytes']:,} bytes of JSON for all columns"
        f" (`quantiles` = {recorded['quantiles']}, `max_exact` = {recorded['max_exact']}).",
        "",
        _table(recorded["reference_sizes"], ["column", "kind", "detail", "json_bytes", "array_bytes"]),
        "",
        "`array_bytes`: the numeric arrays (points and counts as float64/int64, PSI bins) or category counts and"
        " labels; `json_bytes`: the column's entry in the stored JSON.",
        "",
        f"## Accuracy of the stored grid ({recorded['rows']:,} rows; numeric columns, current vs reference)",
        "",
        "`w_bound` / `ks_bound`: stored guaranteed bounds (distance between the raw reference and its stored"
        " points); `w_error` / `ks_error`: actual difference from scipy on the raw reference"
        " (`wasserstein_distance` normed by the reference std, `ks_2samp`).",
        "",
        _table(recorded["grid"], ["column", "exact", "points", "w_raw", "w_error", "w_bound", "ks_error", "ks_bound"]),
        "",
    ]
    for key, title in (
        ("agreement_large", f"full reference ({recorded['rows']:,} rows): distances"),
        ("agreement_small", f"{SMALL_REFERENCE_ROWS}-row reference: p-value tests"),
    ):
        if key not in recorded:
            continue
        a = recorded[key]
        lines += [
            f"## Verdict agreement with Evidently, {title}",
            "",
            f"On the `str` frames. Same tests on every column: {'yes' if a['same_tests'] else 'NO'}; verdicts"
            f" agree on **{a['agree']} / {a['total']}** columns. Ours with BH off"
            + (
                " and Evidently's one-sample chi-square (`DriftOptions.evidently()`)"
                if key == "agreement_small"
                else ""
            )
            + "; Evidently's drift verdicts recomputed from its values match its DriftedColumnsCount:"
            f" {'yes' if a['evidently_count_matches'] else 'NO'}.",
            "",
        ]
        columns = ["column", "test", "ours", "evidently", "ours_drifted", "evidently_drifted"]
        if key == "agreement_small":
            columns += ["default_test", "default_drifted"]
            lines += [
                "`ours`/`evidently`: p-value. `default_*`: our default options (two-sample `chi2`, BH on) on the"
                f" same data: Evidently's one-sample chi-square treats the {SMALL_REFERENCE_ROWS} reference rows"
                f" as exact shares and so flags undrifted categorical columns against {recorded['rows']:,}"
                " current rows.",
                "",
            ]
        else:
            lines += ["`ours`/`evidently`: the distance.", ""]
        lines += [_table(a["rows"], columns), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def _per_size(values: list[int] | None, sizes: list[int], name: str, default: int) -> list[int]:
    if not values:
        return [default] * len(sizes)
    if len(values) == 1:
        return values * len(sizes)
    if len(values) != len(sizes):
        raise SystemExit(f"{name}: give one value or one per --rows value ({len(sizes)})")
    return values


def _json_default(value: Any) -> Any:
    return vars(value) if isinstance(value, Timing) else str(value)


def _timing_hook(value: dict[str, Any]) -> Any:
    """Inverse of :func:`_json_default` for :class:`Timing` (reading a saved results.json)."""
    return Timing(**value) if set(value) == {"median", "low", "high", "n"} else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="rows of the reference and current sets"
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of ours and the floors (>= 5)")
    parser.add_argument(
        "--evidently-repeats", type=int, nargs="+", help="Evidently repetitions, `str` files (one, or one per size)"
    )
    parser.add_argument(
        "--evidently-category-repeats",
        type=int,
        nargs="+",
        help="Evidently repetitions, `category` files (default: as --evidently-repeats)",
    )
    parser.add_argument(
        "--process-category", action="store_true", help="also time whole processes on the `category` files"
    )
    parser.add_argument("--evidently-python", type=Path, help="python of a virtualenv with evidently 0.7.23")
    parser.add_argument("--create-evidently-venv", type=Path, metavar="PATH", help="create that virtualenv at PATH")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "drift.md")
    parser.add_argument("--workdir", type=Path, help="directory for the Parquet files (default: a temp dir)")
    parser.add_argument(
        "--render", type=Path, metavar="RESULTS_JSON", help="only rewrite --output from a run's results.json"
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        write_markdown(args.output, json.loads(args.render.read_text(), object_hook=_timing_hook))
        print(f"wrote {args.output}")
        return 0
    sizes: list[int] = args.rows
    ev_str = _per_size(args.evidently_repeats, sizes, "--evidently-repeats", args.repeats)
    ev_category = (
        _per_size(args.evidently_category_repeats, sizes, "--evidently-category-repeats", 0)
        if args.evidently_category_repeats
        else ev_str
    )
    if args.repeats < 5:
        print(f"warning: --repeats {args.repeats} < 5: not a recordable run", flush=True)

    python = args.evidently_python
    if args.create_evidently_venv is not None:
        python = create_evidently_venv(args.create_evidently_venv)

    results: dict[str, Any] = {
        "seed": args.seed,
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "load_start": load_average(),
        "sizes": [],
    }
    detail_rows = max(sizes)
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        worker = stack.enter_context(EvidentlyWorker(python, workdir)) if python is not None else None
        if worker is not None:
            results["evidently_versions"] = worker.call(cmd="versions")
        for rows, n_str, n_category in zip(sizes, ev_str, ev_category, strict=True):
            size_dir = workdir / f"rows-{rows}"
            size_dir.mkdir(exist_ok=True)
            print(f"generating {rows:,} × 2 rows in {size_dir}", flush=True)
            reference_raw, current_raw = (
                generate(rows, args.seed, drift=False),
                generate(rows, args.seed + 1, drift=True),
            )
            kinds = column_kinds(reference_raw)
            results["n_columns"] = len(kinds)
            frames: dict[str, Frames] = {}
            for column_type in COLUMN_TYPES:
                ref_path, cur_path = (
                    size_dir / f"reference-{column_type}.parquet",
                    size_dir / f"current-{column_type}.parquet",
                )
                reference = as_stored(reference_raw, column_type, ref_path)
                frames[column_type] = Frames(
                    column_type,
                    ref_path,
                    cur_path,
                    reference,
                    as_stored(current_raw, column_type, cur_path),
                    build_reference(reference, kinds).to_json(),
                )
            del reference_raw, current_raw
            print(f"{rows:,} rows: in-process, interleaved", flush=True)
            in_process = measure_in_process(
                frames,
                kinds,
                worker,
                args.repeats,
                {STR: n_str, CATEGORY: n_category},
                STR if rows == detail_rows else None,
            )
            print(f"{rows:,} rows: whole processes, alternating", flush=True)
            process_frames = frames if args.process_category else {STR: frames[STR]}
            whole_process = measure_processes(
                process_frames, kinds, python, size_dir, args.repeats, {STR: n_str, CATEGORY: n_category}
            )
            size = {
                "rows": rows,
                "dtypes": {ct: str(f.current["cat_0"].dtype) for ct, f in frames.items()},
                "in_process": in_process,
                "whole_process": whole_process,
            }
            results["sizes"].append(size)
            # Saved after each size, so that a failure later does not lose the measurements.
            (workdir / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
            for column_type in COLUMN_TYPES:
                for name in RATIO_ROWS:
                    found = _ratio(size, column_type, name)
                    if found is not None:
                        print(f"{rows:,} rows, {column_type}, {name}: {_ratio_text(found)}", flush=True)
            if rows == detail_rows:
                results["details"] = {
                    "rows": rows,
                    **details(frames[STR], kinds, worker, in_process["evidently_columns"], size_dir),
                }
            in_process.pop("evidently_columns")
            if worker is not None:
                worker.call(cmd="clear")
            del frames
        results["load_end"] = load_average()
        write_markdown(args.output, results)
        (workdir / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
        print(f"wrote {args.output} and {workdir / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
