"""Benchmark of the drift engine against the sort floor and Evidently 0.7.23's DataDriftPreset.

Generates a seeded reference and current data set (20 numeric and 8 categorical columns, drift in some
of them), writes both as Parquet to a temporary directory, reads them back and measures in one run:

(a) the sort floor: one ``np.sort`` of every column (numeric values; integer codes of categorical columns),
(b) ``build_reference`` on the reference frame (once),
(c) ``drift_report`` on the current frame against the stored reference,
(d) Evidently 0.7.23 ``DataDriftPreset`` on the same Parquet files, in its own virtualenv (Evidently does
    not import under pandas 3), timed inside that process.

It then compares the per-column verdicts when both use the same tests (our choice of tests follows
Evidently's rule, so Evidently's defaults are the same tests; BH off on our side): once with the full
reference (distances) and once with a 1000-row reference (p-value tests), and writes ``docs/performance.md``.

Usage::

    python benchmarks/drift_benchmark.py --rows 1000000 --evidently-python /tmp/evidently-venv/bin/python
    python benchmarks/drift_benchmark.py --rows 200000 --create-evidently-venv /tmp/evidently-venv
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow
import scipy
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

RUNNER = r'''
"""Runs Evidently's DataDriftPreset on two Parquet files; prints timings and per-column results as JSON."""
import json
import sys
import time

import evidently
import numpy
import pandas
import scipy
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

cfg = json.load(open(sys.argv[1]))
reference = pandas.read_parquet(cfg["reference"])
current = pandas.read_parquet(cfg["current"])
definition = DataDefinition(numerical_columns=cfg["numeric"], categorical_columns=cfg["categorical"])
times, snapshot = [], None
for _ in range(cfg["repeats"]):
    start = time.perf_counter()
    ref = Dataset.from_pandas(reference, data_definition=definition)
    cur = Dataset.from_pandas(current, data_definition=definition)
    snapshot = Report([DataDriftPreset(per_column_method=cfg.get("methods"))]).run(cur, ref)
    times.append(time.perf_counter() - start)
columns, drifted_count = {}, None
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if config["type"].endswith("ValueDrift"):
        columns[config["column"]] = {
            "method": config["method"], "threshold": config["threshold"], "value": metric["value"]
        }
    elif config["type"].endswith("DriftedColumnsCount"):
        drifted_count = metric["value"]["count"]
print(json.dumps({
    "times": times,
    "columns": columns,
    "drifted_count": drifted_count,
    "versions": {"evidently": evidently.__version__, "pandas": pandas.__version__, "numpy": numpy.__version__,
                 "scipy": scipy.__version__, "python": sys.version.split()[0]},
}))
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


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def sort_floor(frame: pd.DataFrame) -> None:
    """One np.sort of every column: the values of numeric columns, the integer codes of categorical ones."""
    for name in frame.columns:
        col = frame[name]
        np.sort(col.cat.codes.to_numpy() if isinstance(col.dtype, pd.CategoricalDtype) else col.to_numpy())


@dataclass(frozen=True)
class Timing:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, times: list[float]) -> "Timing":
        return cls(statistics.median(times), min(times), max(times))


def interleaved(tasks: dict[str, Callable[[], object]], repeats: int) -> dict[str, Timing]:
    """Time each task ``repeats`` times, round-robin, so that a change of machine load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, task in tasks.items():
            start = time.perf_counter()
            task()
            times[name].append(time.perf_counter() - start)
    return {name: Timing.of(t) for name, t in times.items()}


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


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


def run_evidently(
    python: Path,
    workdir: Path,
    reference: Path,
    current: Path,
    kinds: dict[str, ColumnKind],
    repeats: int,
    methods: dict[str, str] | None = None,
) -> dict[str, Any]:
    runner = workdir / "evidently_runner.py"
    runner.write_text(RUNNER)
    config = workdir / "evidently_config.json"
    config.write_text(
        json.dumps(
            {
                "reference": str(reference),
                "current": str(current),
                "numeric": [c for c, k in kinds.items() if k == "numeric"],
                "categorical": [c for c, k in kinds.items() if k == "categorical"],
                "repeats": repeats,
                "methods": methods,
            }
        )
    )
    done = subprocess.run([str(python), str(runner), str(config)], check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_markdown(path: Path, results: dict[str, Any]) -> None:
    t = results["timings"]
    floor, ours = t["sort_floor"], t["drift_report"]
    lines = [
        "# Drift engine performance",
        "",
        "Generated by `benchmarks/drift_benchmark.py`; do not edit by hand. Command:",
        "",
        f"    {results['command']}",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {results['cpu']} ({os.cpu_count()} cores), {results['platform']}",
        f"- Load average (1/5/15 min) at start: {results['load_start']}, at end: {results['load_end']}."
        " Other work was running on this machine; every figure is the median of interleaved repetitions.",
        f"- Ours: Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__},"
        f" scipy {scipy.__version__}, pyarrow {pyarrow.__version__}",
    ]
    if results.get("evidently_versions"):
        v = results["evidently_versions"]
        lines.append(
            f"- Evidently venv: Python {v['python']}, evidently {v['evidently']}, pandas {v['pandas']},"
            f" numpy {v['numpy']}, scipy {v['scipy']}"
        )
    lines += [
        "",
        "## Data",
        "",
        f"{results['rows']:,} reference rows and {results['rows']:,} current rows × {results['n_columns']} columns"
        f" (20 numeric, 8 categorical with 10–50 categories stored as Parquet dictionary columns, read back as"
        f" pandas `category`), seed {results['seed']}; drift in num_00, num_03, num_06 (small), num_09, num_12,"
        " num_16, num_18, cat_0, cat_3, cat_5 (see `generate` in the script).",
        "",
        "## Timings (seconds; median of repetitions, min–max in brackets)",
        "",
        "| what | median | range | repetitions |",
        "|---|---|---|---|",
    ]
    labels = {
        "sort_floor": "(a) sort floor: one `np.sort` per column (numeric values, categorical codes)",
        "build_reference": "(b) `build_reference` on the reference frame (once)",
        "drift_report": "(c) `drift_report` on the current frame",
        "drift_report_str": "(c') `drift_report`, categorical columns as `str` instead of `category`",
        "evidently": f"(d) Evidently {EVIDENTLY_VERSION} `DataDriftPreset` (in its own process)",
        "evidently_small": f"(d') Evidently with a {SMALL_REFERENCE_ROWS}-row reference (p-value tests)",
    }
    for key, label in labels.items():
        if key in t:
            lines.append(
                f"| {label} | {t[key]['median']:.3f} | {t[key]['low']:.3f}–{t[key]['high']:.3f} | {t[key]['n']} |"
            )
    lines += [
        "",
        f"- **ours / sort floor = {ours['median'] / floor['median']:.2f}** (target ≤ 2)",
    ]
    if "drift_report_str" in t:
        lines.append(
            f"- ours with `str` categoricals / sort floor = {t['drift_report_str']['median'] / floor['median']:.2f}"
        )
    if "evidently" in t:
        lines.append(f"- **Evidently / ours = {t['evidently']['median'] / ours['median']:.0f}×**")
    lines += [
        "",
        "The sort floor sorts the values of each numeric column and the integer codes of each categorical column"
        " (sorting the categorical labels as Python strings would take ~1 s per column and make the floor"
        " meaningless). Our report sorts each numeric column once (everything else is O(grid) binary searches"
        " and one `np.add.reduceat` read), and counts categorical codes with `np.bincount`.",
        "",
        "## Reference size",
        "",
        f"Stored reference: {results['reference_json_bytes']:,} bytes of JSON for all columns"
        f" (`quantiles` = {results['quantiles']}, `max_exact` = {results['max_exact']}).",
        "",
        _table(results["reference_sizes"], ["column", "kind", "detail", "json_bytes", "array_bytes"]),
        "",
        "`array_bytes`: the numeric arrays (points and counts as float64/int64, PSI bins) or category counts and"
        " labels; `json_bytes`: the column's entry in the stored JSON.",
        "",
        "## Accuracy of the stored grid (numeric columns, current vs reference)",
        "",
        "`w_bound` / `ks_bound`: stored guaranteed bounds (distance between the raw reference and its stored"
        " points); `w_error` / `ks_error`: actual difference from scipy on the raw reference"
        " (`wasserstein_distance` normed by the reference std, `ks_2samp`).",
        "",
        _table(results["grid"], ["column", "exact", "points", "w_raw", "w_error", "w_bound", "ks_error", "ks_bound"]),
        "",
    ]
    for key, title in (
        ("agreement_large", f"full reference ({results['rows']:,} rows): distances"),
        ("agreement_small", f"{SMALL_REFERENCE_ROWS}-row reference: p-value tests"),
    ):
        if key not in results:
            continue
        a = results[key]
        lines += [
            f"## Verdict agreement with Evidently, {title}",
            "",
            f"Same tests on every column: {'yes' if a['same_tests'] else 'NO'}; verdicts agree on"
            f" **{a['agree']} / {a['total']}** columns. Ours with BH off"
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
                " same data: Evidently's one-sample chi-square treats the 1000 reference rows as exact shares and"
                " so flags undrifted categorical columns against 1M current rows.",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the reference and of the current set")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--repeats", type=int, default=7, help="repetitions of (a) and (c)")
    parser.add_argument("--evidently-repeats", type=int, default=3, help="repetitions of (d)")
    parser.add_argument("--evidently-python", type=Path, help="python of a virtualenv with evidently 0.7.23")
    parser.add_argument("--create-evidently-venv", type=Path, metavar="PATH", help="create that virtualenv at PATH")
    parser.add_argument("--quantiles", type=int, default=2000)
    parser.add_argument("--max-exact", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "performance.md")
    parser.add_argument("--workdir", type=Path, help="directory for the Parquet files (default: a temp dir)")
    args = parser.parse_args(argv)

    python = args.evidently_python
    if args.create_evidently_venv is not None:
        python = create_evidently_venv(args.create_evidently_venv)

    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        ref_path, cur_path, small_path = (
            workdir / "reference.parquet",
            workdir / "current.parquet",
            workdir / "small.parquet",
        )
        print(f"generating {args.rows:,} × 2 rows in {workdir}", flush=True)
        generate(args.rows, args.seed, drift=False).to_parquet(ref_path)
        generate(args.rows, args.seed + 1, drift=True).to_parquet(cur_path)
        ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
        ref.iloc[:SMALL_REFERENCE_ROWS].to_parquet(small_path)
        small = pd.read_parquet(small_path)
        kinds = column_kinds(ref)
        cur_str = cur.astype({c: "str" for c, k in kinds.items() if k == "categorical"})

        start = time.perf_counter()
        reference = build_reference(ref, kinds, max_exact=args.max_exact, quantiles=args.quantiles)
        build_time = time.perf_counter() - start
        _ = reference.profile_id  # computed once per stored reference (cached), like loading it from storage
        print(f"build_reference: {build_time:.3f} s", flush=True)

        no_bh = DriftOptions(benjamini_hochberg=False)
        timings = interleaved(
            {
                "sort_floor": lambda: sort_floor(cur),
                "drift_report": lambda: drift_report(reference, cur),
                "drift_report_str": lambda: drift_report(reference, cur_str),
            },
            args.repeats,
        )
        results: dict[str, Any] = {
            "rows": args.rows,
            "seed": args.seed,
            "n_columns": len(kinds),
            "quantiles": args.quantiles,
            "max_exact": args.max_exact,
            "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
            "cpu": cpu_model(),
            "platform": platform.platform(),
            "timings": {
                k: {"median": v.median, "low": v.low, "high": v.high, "n": args.repeats} for k, v in timings.items()
            },
        }
        results["timings"]["build_reference"] = {"median": build_time, "low": build_time, "high": build_time, "n": 1}
        for name, timing in timings.items():
            print(f"{name}: median {timing.median:.3f} s ({timing.low:.3f}–{timing.high:.3f})", flush=True)

        report = drift_report(reference, cur, no_bh)
        # Calibration (distances against their null at the current size) may only remove alarms of the fixed
        # thresholds; list the verdicts it changes (none expected: this drift is far beyond sampling noise).
        fixed = drift_report(reference, cur, DriftOptions.evidently())
        results["calibration"] = [
            {
                "column": c.column,
                "test": c.test,
                "statistic": c.statistic,
                "critical": c.critical,
                "calibrated_drifted": c.drifted,
                "fixed_threshold_drifted": fixed.column(c.column).drifted,
            }
            for c in report.columns
        ]
        changed = [
            r["column"] for r in results["calibration"] if r["calibrated_drifted"] != r["fixed_threshold_drifted"]
        ]
        print(
            f"calibrated vs fixed-threshold verdicts: {len(changed)} of {len(report.columns)} differ"
            + (f" ({', '.join(changed)})" if changed else "")
            + f"; drifted: {', '.join(c.column for c in report.columns if c.drifted)}",
            flush=True,
        )
        results["reference_json_bytes"] = len(reference.to_json())
        results["reference_sizes"] = reference_sizes(reference)
        results["grid"] = grid_accuracy(reference, ref, cur, report)

        if python is not None:
            print("running Evidently (this takes minutes at 1M rows)", flush=True)
            ev = run_evidently(python, workdir, ref_path, cur_path, kinds, args.evidently_repeats)
            results["evidently_versions"] = ev["versions"]
            results["timings"]["evidently"] = {**vars(Timing.of(ev["times"])), "n": len(ev["times"])}
            agreement = compare(report, ev)
            if not agreement.same_tests:
                # Force Evidently onto our tests so that the verdicts are comparable.
                methods = {c.column: c.test for c in report.columns}
                agreement = compare(report, run_evidently(python, workdir, ref_path, cur_path, kinds, 1, methods))
            results["agreement_large"] = vars(agreement)

            small_reference = build_reference(small, kinds, max_exact=args.max_exact, quantiles=args.quantiles)
            ours_small = drift_report(small_reference, cur, DriftOptions.evidently())
            ev_small = run_evidently(python, workdir, small_path, cur_path, kinds, 1)
            results["timings"]["evidently_small"] = {**vars(Timing.of(ev_small["times"])), "n": 1}
            results["agreement_small"] = vars(compare(ours_small, ev_small, drift_report(small_reference, cur)))
            print(
                f"Evidently: median {results['timings']['evidently']['median']:.1f} s; agreement "
                f"{results['agreement_large']['agree']}/{results['agreement_large']['total']} (full reference), "
                f"{results['agreement_small']['agree']}/{results['agreement_small']['total']} (small reference)",
                flush=True,
            )
        results["load_start"] = ", ".join(f"{x:.2f}" for x in load_start)
        results["load_end"] = ", ".join(f"{x:.2f}" for x in load_average())
        write_markdown(args.output, results)
        (workdir / "results.json").write_text(json.dumps(results, indent=2, default=str))
        t = results["timings"]
        print(f"ours / sort floor = {t['drift_report']['median'] / t['sort_floor']['median']:.2f}")
        if "evidently" in t:
            print(f"Evidently / ours = {t['evidently']['median'] / t['drift_report']['median']:.0f}")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
