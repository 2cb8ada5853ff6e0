"""The interval of (candidate − production) that ``non_inferior_to_production`` judges: DeLong for ROC AUC, the
paired bootstrap for PR AUC (``lift_interval``, the same function as ``beats_baseline``'s and as the comparison with
a challenger in flight); records stored before it (a paired bootstrap in ``bootstrap``) read back and are judged as
they were."""

import json
import math
from dataclasses import replace
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from mlops_assets.ml.evaluation import (
    BootstrapInterval,
    Evaluation,
    LiftInterval,
    bootstrap_difference,
    delong_difference,
    evaluate,
    evaluation_outcome,
    headline_figures,
    json_safe,
)
from mlops_assets.ml.features import LABEL_COLUMN, SPLIT_COLUMN
from mlops_assets.ml.latency import LatencyReport
from mlops_assets.ml.model_gates import GATE_DESCRIPTIONS, gate_non_inferior_to_production
from mlops_assets.ml.policy import Policy
from mlops_assets.ml.promotion import compare_on_holdout
from mlops_assets.ml.spec import spec_from_dict

pytestmark = pytest.mark.core

SPEC = spec_from_dict(
    {
        "name": "noninferiority_toy",
        "id_column": "id",
        "label": {"column": "outcome", "positive": 1, "values": [0, 1]},
        "features": ["s_cand", "s_base", "s_prod"],
        "policy": {"bootstrap_samples": 300, "random_seed": 5},
        "columns": {
            "id": {"type": "int"},
            "s_cand": {"type": "float"},
            "s_base": {"type": "float"},
            "s_prod": {"type": "float"},
            "outcome": {"type": "int"},
        },
    },
    source="test_noninferiority_interval.py",
)
POLICY = SPEC.policy
MARGIN = POLICY.gates.non_inferiority_margin
LATENCY = LatencyReport(
    single_p50_ms=3.0,
    single_p99_ms=8.0,
    batch_p50_ms=40.0,
    batch_p99_ms=60.0,
    batch_size=1000,
    throughput_rows_per_s=25000.0,
    single_repeats=60,
    batch_repeats=4,
    repetitions=5,
    wall_single_p50_ms=3.5,
    wall_single_p99_ms=12.0,
    wall_batch_p50_ms=45.0,
    wall_batch_p99_ms=70.0,
    wall_throughput_rows_per_s=22000.0,
)


class ColumnScores:
    """A stand-in for a fitted pipeline: a row's score is its value in one input column."""

    classes_ = np.array([0, 1])

    def __init__(self, column: str) -> None:
        self.column = column

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        s = X[self.column].to_numpy(dtype=np.float64)
        return np.column_stack([1 - s, s])


def scored_by(column: str) -> Pipeline:
    return cast(Pipeline, ColumnScores(column))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def holdout(
    n: int, seed: int, *, prevalence: float = 0.3, cand_noise: float = 0.6, prod_noise: float = 0.6
) -> pd.DataFrame:
    """n holdout rows: labels from a latent signal; each model sees the signal plus its own noise (both share the
    signal, so their errors are correlated, as two models of one data set are)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(np.int64)
    signal = 1.2 * y + rng.normal(size=n)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "s_cand": _sigmoid(signal + cand_noise * rng.normal(size=n)),
            "s_base": _sigmoid(0.3 * signal + rng.normal(size=n)),
            "s_prod": _sigmoid(signal + prod_noise * rng.normal(size=n)),
            LABEL_COLUMN: y,
            SPLIT_COLUMN: "holdout",
        }
    )


def evaluated(frame: pd.DataFrame, policy: Policy = POLICY) -> Evaluation:
    return evaluate(
        frame, SPEC, scored_by("s_cand"), scored_by("s_base"), scored_by("s_prod"), policy=policy, latency=LATENCY
    )


def arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return frame[LABEL_COLUMN].to_numpy(), frame["s_cand"].to_numpy(), frame["s_prod"].to_numpy()


def judged(ev: Evaluation) -> Any:
    return gate_non_inferior_to_production(ev, POLICY.gates, POLICY.evaluation)


# --------------------------------------------------------------------------------------------------
# ROC AUC: DeLong, two estimates of one interval
# --------------------------------------------------------------------------------------------------

CASES = {
    "balanced, equal models": dict(n=3000, seed=1, prevalence=0.5),
    "rare positives": dict(n=6000, seed=2, prevalence=0.08),
    "candidate worse": dict(n=3000, seed=3, cand_noise=1.2, prod_noise=0.4),
    "candidate better, coarse (tied) scores": dict(n=3000, seed=4, cand_noise=0.3, prod_noise=0.9, ties=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_roc_auc_interval_is_delongs_and_agrees_with_a_2000_resample_paired_bootstrap(case: str) -> None:
    options = dict(CASES[case])
    ties = bool(options.pop("ties", False))
    frame = holdout(**options)  # type: ignore[arg-type]
    if ties:  # scores on a 0.02 grid: many tied rows, which midranks count half, as the bootstrap's kernel does
        frame = frame.assign(s_cand=frame["s_cand"].round(2), s_prod=frame["s_prod"].round(2))
    ev = evaluated(frame)
    y, cand, prod = arrays(frame)
    interval = ev.production_interval
    assert interval is not None and interval.defined and interval.method == "delong" and ev.bootstrap is None
    assert (interval.estimate, interval.lower, interval.upper) == pytest.approx(
        delong_difference(y, cand, prod, confidence_level=0.95), abs=1e-12
    )
    boot = bootstrap_difference("roc_auc", y, cand, prod, samples=2000, confidence_level=0.95, seed=11)
    assert interval.estimate == pytest.approx(boot.estimate, abs=1e-12)
    assert abs(interval.lower - boot.lower) < 0.01 and abs(interval.upper - boot.upper) < 0.01
    # The gate judges that lower bound, and says how it was made.
    result = judged(ev)
    assert result.observed == interval.lower and result.passed is (interval.lower >= -MARGIN)
    assert "95% DeLong interval" in result.condition and "(DeLong)" in result.message
    assert result.evidence["interval"] == interval.to_dict()


def test_a_candidate_worse_than_production_by_more_than_the_margin_fails() -> None:
    frame = holdout(4000, seed=7, cand_noise=1.5, prod_noise=0.3)
    ev = evaluated(frame)
    interval = ev.production_interval
    assert interval is not None and interval.upper < -MARGIN  # worse by more than ε, beyond doubt
    result = judged(ev)
    assert not result.passed and result.observed == pytest.approx(interval.lower)
    assert "may be worse than production by more than" in result.message


def test_equal_models_pass() -> None:
    frame = holdout(2000, seed=8)
    # Production ranks the rows exactly as the candidate does (a monotone transform of its scores): equal ROC AUC,
    # the difference has no variance, and the interval is [0, 0].
    same = frame.assign(s_prod=np.sqrt(frame["s_cand"]))
    ev = evaluated(same)
    assert ev.production_interval is not None
    assert (ev.production_interval.lower, ev.production_interval.upper) == (0.0, 0.0)
    assert judged(ev).passed
    # Two models of equal quality with their own noise on a large holdout: within the margin.
    ev = evaluated(holdout(20_000, seed=9, cand_noise=0.5, prod_noise=0.5))
    assert ev.production_interval is not None and abs(ev.production_interval.estimate) < 0.005
    assert judged(ev).passed


# --------------------------------------------------------------------------------------------------
# PR AUC: still the paired bootstrap, with policy.bootstrap_samples
# --------------------------------------------------------------------------------------------------


def test_a_pr_auc_headline_keeps_the_paired_bootstrap_with_the_policy_samples() -> None:
    frame = holdout(1500, seed=12)
    y, cand, prod = arrays(frame)
    for samples in (300, 500):
        policy = POLICY.with_overrides({"headline_metric": "pr_auc", "bootstrap_samples": samples})
        ev = evaluated(frame, policy)
        interval = ev.production_interval
        boot = bootstrap_difference("pr_auc", y, cand, prod, samples=samples, confidence_level=0.95, seed=5)
        assert interval is not None and interval.metric == "pr_auc"
        assert (interval.estimate, interval.lower, interval.upper) == (boot.estimate, boot.lower, boot.upper)
        assert interval.method == f"paired bootstrap ({samples} of {samples} resamples, seed 5)"
        result = gate_non_inferior_to_production(ev, policy.gates, policy.evaluation)
        assert "95% paired bootstrap interval" in result.condition and interval.method in result.message


# --------------------------------------------------------------------------------------------------
# Records: new ones round-trip; old ones (a paired bootstrap in "bootstrap") are judged as before
# --------------------------------------------------------------------------------------------------


def old_record(ev: Evaluation, bootstrap: BootstrapInterval) -> dict[str, Any]:
    """``ev`` as the evaluation stored it before ``production_interval``: its key absent, ``bootstrap`` present."""
    record = ev.to_dict()
    del record["production_interval"]
    record["bootstrap"] = json_safe({**bootstrap.to_dict(), "missing_class_resamples": "skipped"})
    return json.loads(json.dumps(record, allow_nan=False))


def test_a_new_record_round_trips_with_its_interval_and_method() -> None:
    ev = evaluated(holdout(1000, seed=13))
    record = json.loads(json.dumps(ev.to_dict(), allow_nan=False))
    assert "bootstrap" not in record and record["production_interval"]["method"] == "delong"
    back = Evaluation.from_dict(record)
    assert back == ev and back.production_interval == ev.production_interval
    assert judged(back) == judged(ev)
    figures = headline_figures(record)
    assert ev.production_interval is not None
    assert figures["diff_vs_production_lower"] == pytest.approx(ev.production_interval.lower)


@pytest.mark.parametrize(("lower", "passes"), [(-0.004, True), (-0.02, False)])
def test_an_old_bootstrap_record_is_judged_on_its_bootstrap_as_before(lower: float, passes: bool) -> None:
    ev = evaluated(holdout(2000, seed=14, cand_noise=0.3, prod_noise=0.9))
    # DeLong on the same rows says "better": the failing verdict below can only come from the stored bootstrap.
    assert ev.production_interval is not None and ev.production_interval.lower > 0
    stored = BootstrapInterval("roc_auc", lower + 0.01, lower, lower + 0.02, 0.95, 1000, 998, 2, 0)
    record = old_record(ev, stored)
    old = Evaluation.from_dict(record)
    assert old.production_interval is None and old.bootstrap == stored and old.vs_production == stored
    assert old.to_dict()["bootstrap"] == record["bootstrap"]  # the stored evidence reads back unchanged
    result = judged(old)
    assert result.passed is passes and result.observed == lower and result.threshold == -MARGIN
    assert "95% paired bootstrap interval" in result.condition
    assert "(998 of 1000 resamples; 2 lacking a class skipped)" in result.message
    assert result.evidence["interval"] == stored.to_dict()
    figures = headline_figures(record)
    assert (figures["diff_vs_production"], figures["diff_vs_production_lower"]) == (lower + 0.01, lower)
    outcome = evaluation_outcome(old, model_name="toy", model_version=2, artifact_sha256="0" * 64, production_version=1)
    row = {r["metric"]: r for r in outcome.tables["comparison"].rows}["roc_auc"]
    assert (row["ci_low"], row["ci_high"]) == (lower, lower + 0.02)


def test_a_record_without_a_usable_interval_fails_closed() -> None:
    ev = evaluated(holdout(1000, seed=15))
    missing = Evaluation.from_dict({k: v for k, v in ev.to_dict().items() if k != "production_interval"})
    assert missing.vs_production is None
    result = judged(missing)
    assert not result.passed and result.observed is None
    assert "no interval of candidate - production is recorded; failing closed" in result.message
    nan = math.nan
    undefined = LiftInterval("roc_auc", nan, nan, nan, 0.95, "none", "production: 3 non-finite")
    result = judged(replace(ev, production_interval=undefined))
    assert not result.passed and "undefined (production: 3 non-finite)" in result.message
    old_undefined = BootstrapInterval.undefined("roc_auc", 0.95, 1000, 0, "none of the 1000 resamples holds both")
    result = judged(Evaluation.from_dict(old_record(ev, old_undefined)))
    assert not result.passed and "paired bootstrap interval of candidate - production is undefined" in result.message


def test_invalid_production_scores_leave_the_interval_undefined_and_the_gate_closed() -> None:
    frame = holdout(800, seed=16)
    frame.loc[:2, "s_prod"] = 1.5
    ev = evaluated(frame)
    assert ev.production_interval is not None and not ev.production_interval.defined
    assert ev.production_interval.method == "none" and "outside [0, 1]" in str(ev.production_interval.undefined_reason)
    assert not judged(ev).passed


def test_the_gate_description_names_both_methods() -> None:
    text = GATE_DESCRIPTIONS["non_inferior_to_production"]
    assert "DeLong for ROC AUC" in text and "policy.bootstrap_samples" in text


# --------------------------------------------------------------------------------------------------
# The comparison with a challenger in flight is the same kind of interval (one function)
# --------------------------------------------------------------------------------------------------


def test_the_challenger_comparison_uses_the_same_interval() -> None:
    frame = holdout(3000, seed=17, cand_noise=0.3, prod_noise=0.9)
    y, cand, chall = arrays(frame)
    ev = evaluated(frame)
    common = dict(data_version="v", candidate_version=3, challenger_version=2, confidence_level=0.95, seed=5)
    roc = compare_on_holdout(y, cand, chall, metric="roc_auc", samples=300, **common)  # type: ignore[arg-type]
    assert ev.production_interval is not None and roc.method == "delong"
    assert (roc.difference, roc.lower, roc.upper) == (
        pytest.approx(ev.production_interval.estimate, abs=1e-12),
        ev.production_interval.lower,
        ev.production_interval.upper,
    )
    assert roc.candidate_wins and "delong" in roc.reason
    pr = compare_on_holdout(y, cand, chall, metric="pr_auc", samples=300, **common)  # type: ignore[arg-type]
    boot = bootstrap_difference("pr_auc", y, cand, chall, samples=300, confidence_level=0.95, seed=5)
    assert pr.method.startswith("paired bootstrap") and (pr.lower, pr.upper) == (boot.lower, boot.upper)
