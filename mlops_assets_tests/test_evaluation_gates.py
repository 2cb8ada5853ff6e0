"""Tests of the evaluation measurements (calibration, fairness, bootstrap, slices, score validity, latency,
plots) and of the model gates' decisions on them."""

import json
import math
import re
from dataclasses import replace
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from mlops_assets.ml.evaluation import (
    UNDEFINED_REASON,
    BootstrapInterval,
    Evaluation,
    FairnessReport,
    GroupRates,
    LiftInterval,
    ScoreValidity,
    bootstrap_difference,
    classification_metrics,
    delong_difference,
    evaluate,
    expected_calibration_error,
    fairness_report,
    lift_interval,
    ranking_metric,
    reliability_table,
    resampled_ranking_metric,
)
from mlops_assets.ml.features import LABEL_COLUMN, SPLIT_COLUMN
from mlops_assets.ml.latency import WARMUP_BATCH, WARMUP_SINGLE, LatencyReport, measure_latency
from mlops_assets.ml.model_gates import (
    GATE_DESCRIPTIONS,
    GATES,
    evaluation_gates,
    gate_beats_baseline,
    gate_fairness_within_bounds,
    gate_latency_within_budget,
    gate_metric_thresholds_met,
    gate_non_inferior_to_production,
    gate_slices_meet_floor,
)
from mlops_assets.ml.policy import MetricThreshold, Policy, SliceThreshold, policy_from_dict
from mlops_assets.ml.spec import spec_from_dict

pytestmark = pytest.mark.core

# --------------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------------


def test_ece_hand_computed() -> None:
    y = np.array([0, 1, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.6, 0.7, 0.9])
    # Bins (0, 0.5] and (0.5, 1]: mean score 0.15 vs rate 1/2 on 2 rows; 2.2/3 vs 2/3 on 3 rows.
    assert expected_calibration_error(y, s, 2) == pytest.approx(2 / 5 * 0.35 + 3 / 5 * (2.2 / 3 - 2 / 3))
    assert expected_calibration_error(y, s, 2) == pytest.approx(0.18)
    low, high = reliability_table(y, s, 2)
    assert (low.lower, low.upper, low.n, low.n_positive) == (0.0, 0.5, 2, 1)
    assert (high.lower, high.upper, high.n, high.n_positive) == (0.5, 1.0, 3, 2)
    assert low.mean_score == pytest.approx(0.15) and high.observed_rate == pytest.approx(2 / 3)


def test_ece_is_zero_when_every_bin_is_calibrated() -> None:
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    s = np.array([0.25] * 4 + [0.75] * 4)
    assert expected_calibration_error(y, s, 2) == pytest.approx(0.0, abs=1e-15)
    # The same scores put in one bin are off by |0.5 - 0.5| = 0 as well; in 4 bins still calibrated.
    assert expected_calibration_error(y, s, 4) == pytest.approx(0.0, abs=1e-15)


def test_reliability_bins_are_right_closed_and_keep_empty_bins() -> None:
    table = reliability_table(np.array([0, 1, 1]), np.array([0.0, 0.5, 1.0]), 4)
    # 0 is in the first bin, 0.5 closes (0.25, 0.5], 1 closes the last; (0.5, 0.75] is empty.
    assert [b.n for b in table] == [1, 1, 0, 1]
    assert math.isnan(table[2].mean_score) and math.isnan(table[2].observed_rate)


@pytest.mark.parametrize(("seed", "n_bins"), [(0, 10), (1, 7), (2, 3)])
def test_reliability_table_matches_sklearn_calibration_curve(seed: int, n_bins: int) -> None:
    rng = np.random.default_rng(seed)
    s = np.round(rng.random(700), 2)  # rounded, so scores fall on bin edges too
    y = (rng.random(700) < s).astype(int)
    prob_true, prob_pred = calibration_curve(y, s, n_bins=n_bins, strategy="uniform")
    filled = [b for b in reliability_table(y, s, n_bins) if b.n]
    assert [b.observed_rate for b in filled] == pytest.approx(prob_true)
    assert [b.mean_score for b in filled] == pytest.approx(prob_pred)
    assert sum(b.n for b in filled) == len(y)
    metrics = classification_metrics(y, s, calibration_bins=n_bins)
    expected = sum(b.n / len(y) * abs(b.mean_score - b.observed_rate) for b in filled)
    assert metrics["ece"] == pytest.approx(expected)


# --------------------------------------------------------------------------------------------------
# Fairness
# --------------------------------------------------------------------------------------------------

GROUPS = pd.Series(["a"] * 5 + ["b"] * 5 + ["c"])
GROUP_Y = np.array([1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0])
GROUP_PRED = np.array([1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1])


def test_fairness_gaps_hand_computed() -> None:
    report = fairness_report("grp", GROUPS, GROUP_Y, GROUP_PRED, min_group_size=2)
    rates = {g.group: g for g in report.groups}
    # a: selects 1 of 5, finds 1 of 2 positives, 0 of 3 negatives; b: 3 of 5, 2 of 2, 1 of 3.
    assert (rates["a"].predicted_positive_rate, rates["a"].tpr, rates["a"].fpr) == pytest.approx((0.2, 0.5, 0.0))
    assert (rates["b"].predicted_positive_rate, rates["b"].tpr, rates["b"].fpr) == pytest.approx((0.6, 1.0, 1 / 3))
    assert rates["c"].n == 1 and math.isnan(rates["c"].tpr) and rates["c"].fpr == 1.0
    assert report.counted == ("a", "b") and report.small_groups == ("c",)
    assert report.demographic_parity_difference == pytest.approx(0.4)
    assert report.demographic_parity_ratio == pytest.approx(0.2 / 0.6)
    assert report.tpr_difference == pytest.approx(0.5)
    assert report.fpr_difference == pytest.approx(1 / 3)
    assert report.equalized_odds_difference == pytest.approx(0.5)
    assert report.undefined_reason is None


def test_fairness_counting_a_single_class_group_leaves_equalized_odds_undefined() -> None:
    report = fairness_report("grp", GROUPS, GROUP_Y, GROUP_PRED, min_group_size=1)
    assert report.counted == ("a", "b", "c")
    assert report.demographic_parity_difference == pytest.approx(0.8)
    assert report.demographic_parity_ratio == pytest.approx(0.2)
    assert math.isnan(report.tpr_difference) and math.isnan(report.equalized_odds_difference)
    assert report.fpr_difference == pytest.approx(1.0)
    assert "['c']" in str(report.undefined_reason) and "TPR" in str(report.undefined_reason)


def test_fairness_needs_two_counted_groups() -> None:
    report = fairness_report("grp", GROUPS, GROUP_Y, GROUP_PRED, min_group_size=6)
    assert report.counted == () and report.small_groups == ("a", "b", "c")
    assert math.isnan(report.demographic_parity_difference) and math.isnan(report.equalized_odds_difference)
    assert "at least two" in str(report.undefined_reason)


def test_fairness_ratio_is_one_when_no_group_is_selected() -> None:
    report = fairness_report("grp", GROUPS, GROUP_Y, np.zeros(len(GROUP_Y), dtype=int), min_group_size=2)
    assert report.demographic_parity_difference == 0.0
    assert report.demographic_parity_ratio == 1.0


# --------------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------------


def paired_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two informative scores, the first a little better."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    sign = 2 * y - 1
    cand = 1 / (1 + np.exp(-(1.2 * sign + rng.normal(size=n))))
    prod = 1 / (1 + np.exp(-(1.0 * sign + rng.normal(size=n))))
    return y, cand, prod


@pytest.mark.parametrize(
    ("name", "reference"), [("roc_auc", skm.roc_auc_score), ("pr_auc", skm.average_precision_score)]
)
def test_resampled_metric_equals_sklearn_on_each_resample(name: str, reference: Any) -> None:
    y, cand, _ = paired_scores(300, seed=4)
    scores = np.round(cand, 1)  # many ties
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(y), size=(25, len(y)))
    counts = np.stack([np.bincount(i, minlength=len(y)) for i in idx])
    got = resampled_ranking_metric(name, y, scores, counts)
    np.testing.assert_allclose(got, [reference(y[i], scores[i]) for i in idx], rtol=0, atol=1e-12)


def test_resampled_metric_is_nan_without_both_classes() -> None:
    y = np.array([0, 0, 1, 1])
    counts = np.array([[2, 2, 0, 0], [1, 1, 1, 1]])
    got = resampled_ranking_metric("roc_auc", y, np.array([0.1, 0.2, 0.3, 0.4]), counts)
    assert math.isnan(got[0]) and got[1] == 1.0


def test_bootstrap_equals_a_loop_of_sklearn_on_the_same_resamples() -> None:
    y, cand, prod = paired_scores(150, seed=5)
    result = bootstrap_difference("roc_auc", y, cand, prod, samples=200, confidence_level=0.9, seed=11)
    # The same draws (one chunk at this size), each scored by sklearn on the same rows for both models.
    idx = np.random.default_rng(11).integers(0, len(y), size=(200, len(y)))
    deltas = np.array(
        [skm.roc_auc_score(y[i], cand[i]) - skm.roc_auc_score(y[i], prod[i]) for i in idx if 0 < y[i].sum() < len(i)]
    )
    assert result.n_valid == len(deltas) and result.n_skipped == 200 - len(deltas)
    assert result.lower == pytest.approx(np.quantile(deltas, 0.05), abs=1e-12)
    assert result.upper == pytest.approx(np.quantile(deltas, 0.95), abs=1e-12)
    assert result.estimate == pytest.approx(skm.roc_auc_score(y, cand) - skm.roc_auc_score(y, prod))


@pytest.mark.parametrize("name", ["roc_auc", "pr_auc"])
def test_bootstrap_interval_contains_estimate_and_is_reproducible(name: str) -> None:
    y, cand, prod = paired_scores(2000, seed=1)
    first = bootstrap_difference(name, y, cand, prod, samples=500, confidence_level=0.95, seed=7)
    again = bootstrap_difference(name, y, cand, prod, samples=500, confidence_level=0.95, seed=7)
    other = bootstrap_difference(name, y, cand, prod, samples=500, confidence_level=0.95, seed=8)
    assert first.defined and first.lower < first.estimate < first.upper
    assert first == again
    assert (other.lower, other.upper) != (first.lower, first.upper)
    assert (first.n_resamples, first.n_valid, first.n_skipped, first.seed) == (500, 500, 0, 7)
    narrower = bootstrap_difference(name, y, cand, prod, samples=500, confidence_level=0.5, seed=7)
    assert first.lower < narrower.lower < narrower.upper < first.upper


def test_bootstrap_interval_narrows_with_more_rows() -> None:
    def width(n: int) -> float:
        y, cand, prod = paired_scores(n, seed=2)
        b = bootstrap_difference("roc_auc", y, cand, prod, samples=400, confidence_level=0.95, seed=0)
        return b.upper - b.lower

    # The width shrinks like 1/sqrt(n): 20 times the rows, about a 4.5 times narrower interval.
    assert width(6000) < 0.5 * width(300)


def test_identical_models_give_a_zero_interval() -> None:
    y, cand, _ = paired_scores(500, seed=3)
    b = bootstrap_difference("roc_auc", y, cand, cand.copy(), samples=300, confidence_level=0.95, seed=0)
    assert b.estimate == 0.0 and b.lower == 0.0 and b.upper == 0.0


def test_bootstrap_skips_and_counts_resamples_without_both_classes() -> None:
    y = np.zeros(20, dtype=np.int64)
    y[0] = 1
    cand, prod = np.linspace(0.9, 0.0, 20), np.linspace(0.0, 0.9, 20)
    b = bootstrap_difference("roc_auc", y, cand, prod, samples=1000, confidence_level=0.95, seed=0)
    # A resample misses the single positive with probability (19/20)^20 ≈ 0.36.
    assert b.n_valid + b.n_skipped == 1000
    assert 0.3 < b.n_skipped / 1000 < 0.42
    assert b.defined and b.to_dict()["missing_class_resamples"] == "skipped"


def test_bootstrap_on_a_single_class_holdout_is_undefined() -> None:
    y = np.ones(30, dtype=np.int64)
    b = bootstrap_difference(
        "roc_auc", y, np.full(30, 0.6), np.full(30, 0.4), samples=100, confidence_level=0.95, seed=0
    )
    assert not b.defined and math.isnan(b.lower) and "single class" in str(b.undefined_reason)


# --------------------------------------------------------------------------------------------------
# evaluate(): stand-in pipelines return the scores stored in a column, so every number is known
# --------------------------------------------------------------------------------------------------


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


EVAL_SPEC = spec_from_dict(
    {
        "name": "eval_toy",
        "id_column": "id",
        "label": {"column": "outcome", "positive": 1, "values": [0, 1]},
        "features": ["s_cand", "s_base", "s_prod"],
        "slices": ["region"],
        "protected": ["group"],
        "policy": {"min_slice_size": 100, "min_group_size": 50, "bootstrap_samples": 200, "random_seed": 3},
        "columns": {
            "id": {"type": "int"},
            "s_cand": {"type": "float", "nullable": True},
            "s_base": {"type": "float"},
            "s_prod": {"type": "float"},
            "region": {"type": "string"},
            "group": {"type": "string"},
            "outcome": {"type": "int"},
        },
    },
    source="test_evaluation_gates.py",
)
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


def holdout_frame(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    """A features frame: n holdout rows with three models' scores as columns, and 20 train rows whose
    scores are invalid (so any train row that leaked into the evaluation would show)."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(-0.6, 1.5, size=n)
    s_cand = 1 / (1 + np.exp(-logit))
    # Labels drawn from the candidate's scores: it is calibrated and the best ranker by construction.
    y = (rng.random(n) < s_cand).astype(np.int64)
    noise = rng.normal(size=(2, n))

    holdout = pd.DataFrame(
        {
            "id": np.arange(n),
            "s_cand": s_cand,
            "s_base": 1 / (1 + np.exp(-(0.5 * logit + noise[0]))),
            "s_prod": 1 / (1 + np.exp(-(logit + 0.5 * noise[1]))),
            "region": rng.choice(["north", "south", "tiny"], size=n, p=[0.55, 0.4, 0.05]),
            "group": rng.choice(["f", "m"], size=n),
            LABEL_COLUMN: y,
            SPLIT_COLUMN: "holdout",
        }
    )
    train = holdout.head(20).assign(id=np.arange(n, n + 20), s_cand=5.0, s_base=np.nan, s_prod=-1.0)
    train[SPLIT_COLUMN] = "train"
    return pd.concat([train, holdout], ignore_index=True)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return holdout_frame()


def _holdout(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame[SPLIT_COLUMN] == "holdout"].reset_index(drop=True)


def test_evaluate_records_every_section(frame: pd.DataFrame) -> None:
    spec = EVAL_SPEC
    ev = evaluate(frame, spec, scored_by("s_cand"), scored_by("s_base"), scored_by("s_prod"), latency=LATENCY)
    h = _holdout(frame)
    y, cand, prod = h[LABEL_COLUMN].to_numpy(), h["s_cand"].to_numpy(), h["s_prod"].to_numpy()
    assert ev.n_holdout == len(h) == 1000
    assert ev.candidate == classification_metrics(y, cand, 0.5, calibration_bins=10)
    assert ev.reliability["candidate"] == reliability_table(y, cand, 10)
    assert set(ev.reliability) == {"candidate", "production"}
    # Slices: every region with its metric on its rows, production's and the difference.
    by_value = {row["value"]: row for row in ev.slices}
    assert set(by_value) == {"north", "south", "tiny"}
    for value, row in by_value.items():
        mask = (h["region"] == value).to_numpy()
        assert row["n"] == mask.sum() and row["n_positive"] == y[mask].sum()
        assert row["candidate"] == pytest.approx(skm.roc_auc_score(y[mask], cand[mask]))
        assert row["delta"] == pytest.approx(row["candidate"] - skm.roc_auc_score(y[mask], prod[mask]))
        assert row["floor"] == 0.5
    assert by_value["north"]["gated"] and not by_value["tiny"]["gated"]
    assert "< min_slice_size 100" in by_value["tiny"]["not_gated_reason"]
    # Fairness of the candidate at the decision threshold, per group.
    (report,) = ev.fairness
    assert report.attribute == "group" and set(report.counted) == {"f", "m"}
    f = (h["group"] == "f").to_numpy()
    assert {g.group: g for g in report.groups}["f"].predicted_positive_rate == pytest.approx((cand[f] >= 0.5).mean())
    # DeLong interval of candidate - production (ROC AUC) at the policy's level; no legacy bootstrap.
    vs_production = ev.production_interval
    assert vs_production is not None and vs_production.defined and ev.bootstrap is None
    assert vs_production.estimate == pytest.approx(skm.roc_auc_score(y, cand) - skm.roc_auc_score(y, prod))
    assert (vs_production.method, vs_production.confidence_level) == ("delong", 0.95)
    assert (vs_production.lower, vs_production.upper) == pytest.approx(
        delong_difference(y, cand, prod, confidence_level=0.95)[1:], abs=1e-12
    )
    assert ev.predictions == {m: ScoreValidity(1000, 0, 0) for m in ("candidate", "baseline", "production")}
    assert ev.latency == LATENCY
    assert ev.policy == spec.policy.to_dict() and ev.effective_policy() == spec.policy
    # JSON round trip: NaN becomes None and back; equality ignores the raw scores.
    data = ev.to_dict()
    assert list(data) == [
        "n_holdout",
        "headline_metric",
        "threshold",
        "candidate",
        "baseline",
        "production",
        "reliability",
        "slices",
        "fairness",
        "lift",
        "production_interval",
        "predictions",
        "latency",
        "policy",
    ]
    back = Evaluation.from_dict(json.loads(json.dumps(data, allow_nan=False)))
    assert back == ev and back.scores is None
    assert all(r.passed for r in evaluation_gates(back, spec.policy.gates, spec.policy.evaluation)), [
        r.message for r in evaluation_gates(back, spec.policy.gates, spec.policy.evaluation) if not r.passed
    ]


def test_evaluate_uses_the_policy_argument(frame: pd.DataFrame) -> None:
    policy = EVAL_SPEC.policy.with_overrides(
        {
            "headline_metric": "pr_auc",
            "decision_threshold": 0.3,
            "calibration_bins": 5,
            "slice_floors": (SliceThreshold("region", "north", 0.99),),
        }
    )
    ev = evaluate(frame, EVAL_SPEC, scored_by("s_cand"), scored_by("s_base"), scored_by("s_prod"), policy=policy)
    cand = _holdout(frame)["s_cand"].to_numpy()
    assert ev.headline_metric == "pr_auc" and ev.threshold == 0.3
    assert ev.candidate["predicted_positive_rate"] == pytest.approx((cand >= 0.3).mean())
    assert len(ev.reliability["candidate"]) == 5
    assert {row["value"]: row["floor"] for row in ev.slices} == {"north": 0.99, "south": 0.5, "tiny": 0.5}
    assert {row["metric"] for row in ev.slices} == {"pr_auc"}
    assert ev.production_interval is not None and ev.production_interval.metric == "pr_auc"
    assert ev.production_interval.method == "paired bootstrap (200 of 200 resamples, seed 3)"
    assert ev.policy["evaluation"]["decision_threshold"] == 0.3 and ev.latency is None


def test_evaluate_is_deterministic(frame: pd.DataFrame) -> None:
    args = (frame, EVAL_SPEC, scored_by("s_cand"), scored_by("s_base"), scored_by("s_prod"))
    first, again = evaluate(*args), evaluate(*args)
    assert first == again
    assert first.production_interval == again.production_interval


def test_first_run_has_no_production_sections(frame: pd.DataFrame) -> None:
    ev = evaluate(frame, EVAL_SPEC, scored_by("s_cand"), scored_by("s_base"), latency=LATENCY)
    assert ev.production is None and ev.production_interval is None and ev.bootstrap is None
    assert set(ev.reliability) == {"candidate"} and set(ev.predictions) == {"candidate", "baseline"}
    assert all(math.isnan(row["production"]) for row in ev.slices)
    back = Evaluation.from_dict(json.loads(json.dumps(ev.to_dict(), allow_nan=False)))
    assert back == ev
    results = {r.name: r for r in evaluation_gates(back, EVAL_SPEC.policy.gates, EVAL_SPEC.policy.evaluation)}
    assert all(r.passed for r in results.values())
    assert results["non_inferior_to_production"].evidence["first_run"] is True


def test_invalid_candidate_scores_are_counted_and_fail_closed(frame: pd.DataFrame) -> None:
    bad = frame.copy()
    holdout_rows = bad.index[bad[SPLIT_COLUMN] == "holdout"]
    bad.loc[holdout_rows[0], "s_cand"] = np.nan
    bad.loc[holdout_rows[1], "s_cand"] = 1.5
    ev = evaluate(bad, EVAL_SPEC, scored_by("s_cand"), scored_by("s_base"), scored_by("s_prod"), latency=LATENCY)
    assert ev.predictions["candidate"] == ScoreValidity(1000, 1, 1)
    assert math.isnan(ev.candidate_headline) and math.isnan(ev.candidate["ece"])
    assert "1 non-finite, 1 outside [0, 1]" in ev.candidate[UNDEFINED_REASON]
    assert "candidate" not in ev.reliability
    assert ev.production_interval is not None and not ev.production_interval.defined
    assert ev.fairness[0].undefined_reason is not None
    back = Evaluation.from_dict(json.loads(json.dumps(ev.to_dict(), allow_nan=False)))
    assert back == ev
    failed = {
        r.name for r in evaluation_gates(back, EVAL_SPEC.policy.gates, EVAL_SPEC.policy.evaluation) if not r.passed
    }
    assert failed == {
        "metric_above_floor",
        "beats_baseline",
        "non_inferior_to_production",
        "slices_meet_floor",
        "calibration_within_bound",
        "fairness_within_bounds",
        "predictions_valid",
    }


def test_single_class_slice_is_reported_but_not_gated(frame: pd.DataFrame) -> None:
    one_class = frame.copy()
    one_class.loc[one_class["region"] == "south", LABEL_COLUMN] = 0
    ev = evaluate(one_class, EVAL_SPEC, scored_by("s_cand"), scored_by("s_base"), latency=LATENCY)
    south = next(row for row in ev.slices if row["value"] == "south")
    assert not south["gated"] and "all" in south["not_gated_reason"] and math.isnan(south["candidate"])
    assert Evaluation.from_dict(json.loads(json.dumps(ev.to_dict(), allow_nan=False))) == ev
    assert gate_slices_meet_floor(ev, EVAL_SPEC.policy.gates, EVAL_SPEC.policy.evaluation).passed


# --------------------------------------------------------------------------------------------------
# The gate decision table, on hand-made evaluations
# --------------------------------------------------------------------------------------------------

GATE_POLICY = policy_from_dict(
    dict(
        metric_floor=0.6,
        non_inferiority_margin=0.01,
        min_slice_size=200,
        slice_metric_floor=0.6,
        max_slice_regression=0.05,
        max_ece=0.05,
        min_group_size=100,
        max_demographic_parity_difference=0.1,
        min_demographic_parity_ratio=0.8,
        max_equalized_odds_difference=0.1,
        latency_batch_size=1000,
        max_latency_p99_ms_single=50.0,
        max_latency_p99_ms_batch=500.0,
    )
)


def metrics(auc: float, **overrides: float) -> dict[str, Any]:
    return {
        "roc_auc": auc,
        "pr_auc": auc - 0.1,
        "accuracy": 0.8,
        "f1": 0.6,
        "log_loss": 0.45,
        "brier": 0.15,
        "ece": 0.02,
        "positive_rate": 0.3,
        "predicted_positive_rate": 0.28,
        "n": 1000,
        "n_positive": 300,
        **overrides,
    }


def slice_row(value: str, n: int, cand: float, prod: float, n_positive: int | None = None) -> dict[str, Any]:
    positives = n // 3 if n_positive is None else n_positive
    return {
        "slice_column": "region",
        "value": value,
        "n": n,
        "n_positive": positives,
        "positive_rate": positives / n,
        "metric": "roc_auc",
        "candidate": cand,
        "production": prod,
        "delta": cand - prod,
    }


def gender(
    rates: tuple[float, float] = (0.30, 0.28),
    tpr: tuple[float, float] = (0.70, 0.72),
    fpr: tuple[float, float] = (0.10, 0.12),
) -> FairnessReport:
    groups = [
        GroupRates("f", 500, 150, 0.3, rates[0], tpr[0], fpr[0]),
        GroupRates("m", 480, 144, 0.3, rates[1], tpr[1], fpr[1]),
        # A small group with extreme rates: listed, not counted.
        GroupRates("x", 20, 6, 0.3, 0.9, 1.0, 1.0),
    ]
    return FairnessReport.from_groups("gender", groups, 100)


def interval(estimate: float, lower: float, upper: float) -> BootstrapInterval:
    return BootstrapInterval("roc_auc", estimate, lower, upper, 0.95, 1000, 1000, 0, 0)


VALID = ScoreValidity(1000, 0, 0)
SLICES = (slice_row("north", 500, 0.79, 0.77), slice_row("south", 450, 0.81, 0.79), slice_row("tiny", 50, 0.3, 0.9))
BASE = Evaluation(
    n_holdout=1000,
    headline_metric="roc_auc",
    candidate=metrics(0.80),
    baseline=metrics(0.70),
    production=metrics(0.78, brier=0.12),
    slices=SLICES,
    fairness=(gender(),),
    bootstrap=interval(0.02, 0.005, 0.035),
    predictions={"candidate": VALID, "baseline": VALID, "production": VALID},
    latency=LATENCY,
    lift=LiftInterval("roc_auc", 0.10, 0.07, 0.13, 0.95, "delong"),
)
FIRST_RUN = replace(
    BASE,
    production=None,
    bootstrap=None,
    predictions={"candidate": VALID, "baseline": VALID},
    slices=tuple({**row, "production": math.nan, "delta": math.nan} for row in SLICES),
)


def with_slice(row: dict[str, Any]) -> Evaluation:
    return replace(BASE, slices=(*SLICES, row))


def thresholds(*items: MetricThreshold) -> Policy:
    return GATE_POLICY.with_overrides(dict(thresholds=items))


DECISIONS: list[tuple[str, Evaluation, Policy, set[str]]] = [
    ("better than production", BASE, GATE_POLICY, set()),
    ("no production model", FIRST_RUN, GATE_POLICY, set()),
    (
        "worse within epsilon",
        replace(BASE, production=metrics(0.805), bootstrap=interval(-0.005, -0.009, -0.001)),
        GATE_POLICY,
        set(),
    ),
    (
        "worse beyond epsilon: point estimate within, lower bound below",
        replace(BASE, production=metrics(0.804), bootstrap=interval(-0.004, -0.02, 0.012)),
        GATE_POLICY,
        {"non_inferior_to_production"},
    ),
    ("production but no interval", replace(BASE, bootstrap=None), GATE_POLICY, {"non_inferior_to_production"}),
    (
        "undefined interval",
        replace(BASE, bootstrap=BootstrapInterval.undefined("roc_auc", 0.95, 1000, 0, "no resample has both classes")),
        GATE_POLICY,
        {"non_inferior_to_production"},
    ),
    ("slice below the minimum size", with_slice(slice_row("small", 199, 0.2, 0.9)), GATE_POLICY, set()),
    ("slice at the minimum size", with_slice(slice_row("small", 200, 0.2, 0.9)), GATE_POLICY, {"slices_meet_floor"}),
    ("single-class slice", with_slice(slice_row("pure", 300, math.nan, math.nan, n_positive=0)), GATE_POLICY, set()),
    ("regressing slice", with_slice(slice_row("west", 300, 0.72, 0.80)), GATE_POLICY, {"slices_meet_floor"}),
    (
        "slice below the general floor",
        with_slice(slice_row("east", 300, 0.58, 0.55)),
        GATE_POLICY,
        {"slices_meet_floor"},
    ),
    (
        "slice below its own floor",
        BASE,
        GATE_POLICY.with_overrides(dict(slice_floors=(SliceThreshold("region", "south", 0.85),))),
        {"slices_meet_floor"},
    ),
    (
        "slice above a lowered floor",
        with_slice(slice_row("east", 300, 0.58, 0.55)),
        GATE_POLICY.with_overrides(dict(slice_floors=(SliceThreshold("region", "east", 0.55),))),
        set(),
    ),
    (
        "single-row latency over budget",
        replace(BASE, latency=replace(LATENCY, single_p99_ms=60.0)),
        GATE_POLICY,
        {"latency_within_budget"},
    ),
    (
        "batch latency over budget",
        replace(BASE, latency=replace(LATENCY, batch_p99_ms=600.0)),
        GATE_POLICY,
        {"latency_within_budget"},
    ),
    ("latency not measured", replace(BASE, latency=None), GATE_POLICY, {"latency_within_budget"}),
    (
        "latency measured on another batch size",
        replace(BASE, latency=replace(LATENCY, batch_size=100)),
        GATE_POLICY,
        {"latency_within_budget"},
    ),
    (
        "demographic parity gap over the bound",
        replace(BASE, fairness=(gender(rates=(0.35, 0.22)),)),
        GATE_POLICY,
        {"fairness_within_bounds"},
    ),
    (
        "equalized odds gap over the bound",
        replace(BASE, fairness=(gender(tpr=(0.60, 0.75)),)),
        GATE_POLICY,
        {"fairness_within_bounds"},
    ),
    ("no protected attributes", replace(BASE, fairness=()), GATE_POLICY, set()),
    ("ECE over the bound", replace(BASE, candidate=metrics(0.80, ece=0.08)), GATE_POLICY, {"calibration_within_bound"}),
    ("ECE undefined", replace(BASE, candidate=metrics(0.80, ece=math.nan)), GATE_POLICY, {"calibration_within_bound"}),
    (
        "non-finite candidate score",
        replace(BASE, predictions={**BASE.predictions, "candidate": ScoreValidity(1000, 1, 0)}),
        GATE_POLICY,
        {"predictions_valid"},
    ),
    (
        "production score outside [0, 1]",
        replace(BASE, predictions={**BASE.predictions, "production": ScoreValidity(1000, 0, 3)}),
        GATE_POLICY,
        {"predictions_valid"},
    ),
    ("value threshold met", BASE, thresholds(MetricThreshold("accuracy", min_value=0.75)), set()),
    (
        "value threshold missed",
        BASE,
        thresholds(MetricThreshold("accuracy", min_value=0.85)),
        {"metric_thresholds_met"},
    ),
    (
        "lower-is-better value threshold missed",
        BASE,
        thresholds(MetricThreshold("log_loss", max_value=0.4)),
        {"metric_thresholds_met"},
    ),
    # brier: candidate 0.15, production 0.12, so the candidate is 0.03 (25%) worse.
    ("change threshold met", BASE, thresholds(MetricThreshold("brier", max_regression_absolute=0.05)), set()),
    (
        "absolute change threshold missed",
        BASE,
        thresholds(MetricThreshold("brier", max_regression_absolute=0.01)),
        {"metric_thresholds_met"},
    ),
    ("relative change threshold met", BASE, thresholds(MetricThreshold("brier", max_regression_relative=0.3)), set()),
    (
        "relative change threshold missed",
        BASE,
        thresholds(MetricThreshold("brier", max_regression_relative=0.2)),
        {"metric_thresholds_met"},
    ),
    (
        "higher-is-better change threshold: must improve",
        BASE,
        thresholds(MetricThreshold("roc_auc", max_regression_absolute=-0.03)),
        {"metric_thresholds_met"},
    ),
    (
        "change threshold skipped without production",
        FIRST_RUN,
        thresholds(MetricThreshold("brier", max_regression_absolute=0.0)),
        set(),
    ),
]


@pytest.mark.parametrize(("case", "ev", "policy", "failing"), DECISIONS, ids=[d[0] for d in DECISIONS])
def test_gate_decisions(case: str, ev: Evaluation, policy: Policy, failing: set[str]) -> None:
    results = evaluation_gates(ev, policy.gates, policy.evaluation)
    assert [r.name for r in results] == list(GATES)
    assert {r.name for r in results if not r.passed} == failing, [r.message for r in results if not r.passed]
    for r in results:
        assert r.condition and r.message
        json.dumps(dict(r.evidence), allow_nan=False)
    # A stored record decides the same.
    back = Evaluation.from_dict(json.loads(json.dumps(ev.to_dict(), allow_nan=False)))
    assert [r.passed for r in evaluation_gates(back, policy.gates, policy.evaluation)] == [r.passed for r in results]


def test_gate_names_and_descriptions() -> None:
    assert list(GATE_DESCRIPTIONS) == list(GATES)
    assert [r.name for r in evaluation_gates(BASE, GATE_POLICY.gates, GATE_POLICY.evaluation)] == [
        "metric_above_floor",
        "beats_baseline",
        "non_inferior_to_production",
        "metric_thresholds_met",
        "slices_meet_floor",
        "calibration_within_bound",
        "fairness_within_bounds",
        "predictions_valid",
        "latency_within_budget",
    ]
    assert all(text and not text.endswith(".") for text in GATE_DESCRIPTIONS.values())


def test_non_inferiority_decides_on_the_lower_bound() -> None:
    ev = replace(BASE, bootstrap=interval(-0.004, -0.02, 0.012))
    result = gate_non_inferior_to_production(ev, GATE_POLICY.gates, GATE_POLICY.evaluation)
    assert not result.passed
    assert result.observed == -0.02 and result.threshold == -0.01
    assert result.evidence["interval"]["lower"] == -0.02 and result.evidence["first_run"] is False
    assert "95% paired bootstrap interval" in result.condition
    first = gate_non_inferior_to_production(FIRST_RUN, GATE_POLICY.gates, GATE_POLICY.evaluation)
    assert first.passed and first.evidence["first_run"] is True
    assert first.message == "no model in production: first-run, change threshold skipped"


def test_gate_fails_closed_when_measured_under_another_policy() -> None:
    ev = replace(BASE, policy=GATE_POLICY.with_overrides(dict(confidence_level=0.9)).to_dict())
    results = {r.name: r for r in evaluation_gates(ev, GATE_POLICY.gates, GATE_POLICY.evaluation)}
    # Both interval gates: the production bootstrap and the lift over the baseline were measured at another level.
    interval_gates = {"non_inferior_to_production", "beats_baseline"}
    for name in interval_gates:
        assert not results[name].passed and "confidence_level 0.9" in results[name].message
    assert all(r.passed for name, r in results.items() if name not in interval_gates)


@pytest.mark.parametrize("form", ["sectioned", "flat (recorded before the policy had sections)"])
def test_a_recorded_policy_is_read_in_either_form(form: str) -> None:
    measured = GATE_POLICY.with_overrides({"confidence_level": 0.9, "calibration_bins": 5})
    recorded = measured.to_dict() if form == "sectioned" else measured.to_flat_dict()
    assert ("evaluation" in recorded) is (form == "sectioned")
    stored = json.loads(json.dumps(replace(BASE, policy=recorded).to_dict()))
    ev = Evaluation.from_dict(stored)
    assert ev.effective_policy() == measured
    results = {r.name: r for r in evaluation_gates(ev, GATE_POLICY.gates, GATE_POLICY.evaluation)}
    assert "confidence_level 0.9" in results["non_inferior_to_production"].message
    assert "calibration_bins 5" in results["calibration_within_bound"].message
    assert not results["non_inferior_to_production"].passed and not results["calibration_within_bound"].passed


def test_thresholds_evidence_records_each_check() -> None:
    policy = thresholds(
        MetricThreshold("brier", max_value=0.2, max_regression_absolute=0.01),
        MetricThreshold("roc_auc", min_value=0.7, max_regression_relative=0.0),
    )
    result = gate_metric_thresholds_met(BASE, policy.gates, policy.evaluation)
    statuses = [(c["metric"], c["kind"], c["status"]) for c in result.evidence["checks"]]
    assert statuses == [
        ("brier", "max_value", "passed"),
        ("brier", "max_regression_absolute", "failed"),
        ("roc_auc", "min_value", "passed"),
        ("roc_auc", "max_regression_relative", "passed"),
    ]
    assert result.observed == 1 and not result.passed
    skipped = gate_metric_thresholds_met(FIRST_RUN, policy.gates, policy.evaluation)
    assert [c["status"] for c in skipped.evidence["checks"]] == ["passed", "skipped", "passed", "skipped"]
    assert skipped.passed and "2 change thresholds skipped" in skipped.message
    none = gate_metric_thresholds_met(BASE, GATE_POLICY.gates, GATE_POLICY.evaluation)
    assert none.passed and none.evidence["configured"] is False


def test_slice_evidence_lists_failing_and_ungated_slices() -> None:
    result = gate_slices_meet_floor(
        with_slice(slice_row("west", 300, 0.72, 0.80)), GATE_POLICY.gates, GATE_POLICY.evaluation
    )
    assert [(f["value"], f["problems"]) for f in result.evidence["failing"]] == [
        ("west", ["-0.0800 vs production < -0.05"])
    ]
    assert [s["value"] for s in result.evidence["gated"]] == ["north", "south", "west"]
    assert [(s["value"], s["reason"]) for s in result.evidence["not_gated"]] == [
        ("tiny", "50 rows < min_slice_size 200")
    ]
    assert "region=west" in result.message and result.observed == 1


def test_fairness_gate_counts_groups_by_the_gate_policy() -> None:
    # With a smaller min_group_size the extreme group "x" (20 rows) is counted and breaks the bounds.
    assert gate_fairness_within_bounds(BASE, GATE_POLICY.gates, GATE_POLICY.evaluation).passed
    result = gate_fairness_within_bounds(BASE, replace(GATE_POLICY.gates, min_group_size=10), GATE_POLICY.evaluation)
    assert not result.passed
    (attribute,) = result.evidence["attributes"]
    assert attribute["counted"] == ["f", "m", "x"]
    assert attribute["demographic_parity_difference"] == pytest.approx(0.62)


def test_latency_gate_names_the_failing_budget() -> None:
    result = gate_latency_within_budget(
        replace(BASE, latency=replace(LATENCY, batch_p99_ms=600.0)), GATE_POLICY.gates, GATE_POLICY.evaluation
    )
    assert (result.observed, result.threshold) == (600.0, 500.0)
    missing = gate_latency_within_budget(replace(BASE, latency=None), GATE_POLICY.gates, GATE_POLICY.evaluation)
    assert "no latency measurement" in missing.message and missing.evidence["latency"] is None


def test_a_record_from_before_the_new_sections_fails_closed_without_crashing() -> None:
    old = {
        "n_holdout": 100,
        "headline_metric": "roc_auc",
        "threshold": 0.5,
        "candidate": {"roc_auc": 0.8, "pr_auc": 0.6, "n": 100, "n_positive": 30},
        "baseline": {"roc_auc": 0.7, "pr_auc": 0.5, "n": 100, "n_positive": 30},
        "production": None,
        "slices": [],
    }
    results = {
        r.name: r for r in evaluation_gates(Evaluation.from_dict(old), GATE_POLICY.gates, GATE_POLICY.evaluation)
    }
    assert {name for name, r in results.items() if not r.passed} == {
        "beats_baseline",  # no interval of the lift was recorded then
        "calibration_within_bound",
        "predictions_valid",
        "latency_within_budget",
    }
    assert "no confidence interval of candidate - baseline is recorded" in results["beats_baseline"].message


# --------------------------------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------------------------------


class Recording:
    """A stand-in pipeline that records the rows it is asked to score."""

    classes_ = np.array([0, 1])

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self.calls.append(X["a"].tolist())
        return np.full((len(X), 2), 0.5)


def test_measure_latency_times_single_rows_and_full_batches() -> None:
    rows = pd.DataFrame({"a": range(7)})
    pipeline = Recording()
    report = measure_latency(
        cast(Pipeline, pipeline), rows, batch_size=10, single_repeats=30, batch_repeats=4, repetitions=3
    )
    singles = [c for c in pipeline.calls if len(c) == 1]
    batches = [c for c in pipeline.calls if len(c) > 1]
    assert len(singles) == WARMUP_SINGLE + 3 * 30 and len(batches) == WARMUP_BATCH + 3 * 4
    # Each repetition cycles through the rows.
    assert [c[0] for c in singles[WARMUP_SINGLE:]] == [i % 7 for i in range(30)] * 3
    assert all(c == [i % 7 for i in range(10)] for c in batches)  # fewer rows than a batch: cycled
    assert (report.batch_size, report.single_repeats, report.batch_repeats, report.repetitions) == (10, 30, 4, 3)
    assert 0 < report.single_p50_ms <= report.single_p99_ms and 0 < report.batch_p50_ms <= report.batch_p99_ms
    assert report.throughput_rows_per_s == pytest.approx(10 / (report.batch_p50_ms / 1000))
    assert LatencyReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_measure_latency_on_a_fitted_pipeline() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    pipeline = Pipeline([("model", LogisticRegression())]).fit(X, (X["a"] > 0).astype(int))
    report = measure_latency(pipeline, X, batch_size=50, single_repeats=20, batch_repeats=3)
    assert all(math.isfinite(v) and v > 0 for v in (report.single_p99_ms, report.batch_p99_ms))


def test_measure_latency_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="zero rows"):
        measure_latency(cast(Pipeline, Recording()), pd.DataFrame({"a": []}), batch_size=5)
    with pytest.raises(ValueError, match="batch_size"):
        measure_latency(cast(Pipeline, Recording()), pd.DataFrame({"a": [1]}), batch_size=0)


# --------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------


def test_every_failed_model_gate_says_which_settings_to_change() -> None:
    from mlops_assets.ml import model_gates

    assert set(model_gates.REMEDIES) == set(model_gates.GATES)
    failed = model_gates._result("beats_baseline", False, "c", "candidate does not beat baseline", 0.0, 0.0, {})
    assert failed.message.endswith(
        "(rule: beats_baseline; to change: policy.min_lift_over_baseline; when a linear model is as good for this "
        "data, set training.baseline: dummy or training.estimator: logistic_regression in the spec; a lift too small "
        "for the holdout to confirm needs more holdout rows (larger versions, policy.holdout_fraction))"
    )
    passed = model_gates._result("beats_baseline", True, "c", "candidate beats baseline", 0.1, 0.0, {})
    assert passed.message == "candidate beats baseline"
    # Every setting named in a remedy exists in the policy, so the advice can be followed.
    from mlops_assets.ml.policy import EvaluationPolicy, ModelGatePolicy

    known = {f for cls in (EvaluationPolicy, ModelGatePolicy) for f in cls.__dataclass_fields__}
    named = {m.split(".", 1)[1] for text in model_gates.REMEDIES.values() for m in re.findall(r"policy\.\w+", text)}
    assert named <= known, named - known


# --------------------------------------------------------------------------------------------------
# beats_baseline judges a confidence interval of the lift (DeLong for ROC AUC)
# --------------------------------------------------------------------------------------------------


def _delong_by_definition(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The AUC difference and DeLong's variance from the pairwise kernel, O(m n): DeLong et al. (1988), eq. (4)-(5)."""

    def components(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(axis=1), psi.mean(axis=0)

    (v10a, v01a), (v10b, v01b) = components(a), components(b)
    m, n = len(v10a), len(v01a)
    var = np.var(v10a - v10b, ddof=1) / m + np.var(v01a - v01b, ddof=1) / n
    return float(v10a.mean() - v10b.mean()), float(var)


def test_delong_matches_its_definition_and_a_paired_bootstrap(frame: pd.DataFrame) -> None:
    h = _holdout(frame)
    y, cand, base = h[LABEL_COLUMN].to_numpy(), h["s_cand"].to_numpy(), h["s_base"].to_numpy()
    base = np.round(base, 2)  # ties: midranks must count them half, as the kernel does
    estimate, lower, upper = delong_difference(y, cand, base, confidence_level=0.95)
    reference, variance = _delong_by_definition(y, cand, base)
    half = 1.959963984540054 * math.sqrt(variance)
    assert estimate == pytest.approx(reference, abs=1e-12)
    assert (lower, upper) == (pytest.approx(reference - half, abs=1e-12), pytest.approx(reference + half, abs=1e-12))
    boot = bootstrap_difference("roc_auc", y, cand, base, samples=2000, confidence_level=0.95, seed=1)
    assert abs(boot.lower - lower) < 0.01 and abs(boot.upper - upper) < 0.01  # two estimates of one interval


def test_a_lift_the_holdout_cannot_tell_from_noise_does_not_beat_the_baseline() -> None:
    # A model trained on random labels reached Production: ROC AUC 0.56 on a ~300-row holdout against the prior
    # baseline's 0.50 passed "lift > 0". Its 95% interval of the lift includes 0, so the gate now fails it.
    rng = np.random.default_rng(11)
    n = 300
    y = rng.integers(0, 2, n)
    while True:  # noise scores whose point AUC happens to be about 0.56 (as seen on the random-label data set)
        noise = rng.random(n)
        if 0.555 <= ranking_metric("roc_auc", y, noise) <= 0.57:
            break
    holdout = pd.DataFrame(
        {
            "id": np.arange(n),
            "s_cand": noise,
            "s_base": np.full(n, 0.5),  # the dummy baseline: the prior rate for every row
            "s_prod": noise,
            "region": "north",
            "group": "f",
            LABEL_COLUMN: y,
            SPLIT_COLUMN: "holdout",
        }
    )
    ev = evaluate(holdout, EVAL_SPEC, scored_by("s_cand"), scored_by("s_base"), latency=LATENCY)
    assert ev.candidate_headline - ev.baseline_headline > 0.05  # the old rule: lift > 0 passed
    assert ev.lift is not None and ev.lift.method == "delong" and ev.lift.lower < 0 < ev.lift.upper
    result = gate_beats_baseline(ev, EVAL_SPEC.policy.gates, EVAL_SPEC.policy.evaluation)
    assert not result.passed and result.observed == pytest.approx(ev.lift.lower)
    assert "does not beat baseline" in result.message and "with confidence" in result.message
    # A real lift on the same number of rows passes: scores that follow the labels.
    signal = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, n), 0, 1)
    ev = evaluate(holdout.assign(s_cand=signal), EVAL_SPEC, scored_by("s_cand"), scored_by("s_base"), latency=LATENCY)
    assert gate_beats_baseline(ev, EVAL_SPEC.policy.gates, EVAL_SPEC.policy.evaluation).passed


def test_a_pr_auc_lift_uses_the_paired_bootstrap(frame: pd.DataFrame) -> None:
    h = _holdout(frame)
    y, cand, base = h[LABEL_COLUMN].to_numpy(), h["s_cand"].to_numpy(), h["s_base"].to_numpy()
    lift = lift_interval("pr_auc", y, cand, base, confidence_level=0.95, samples=200, seed=3)
    boot = bootstrap_difference("pr_auc", y, cand, base, samples=200, confidence_level=0.95, seed=3)
    assert (lift.estimate, lift.lower, lift.upper) == (boot.estimate, boot.lower, boot.upper)
    assert lift.method.startswith("paired bootstrap")
    single = lift_interval("roc_auc", np.ones(10), cand[:10], base[:10], confidence_level=0.95, samples=200, seed=3)
    assert not single.defined and "single class" in (single.undefined_reason or "")
