"""CBPE (label-free performance estimation), its calibration map and the estimated-performance backlog. Pure core.

A hand-computed batch pins the expected confusion matrix and the expected ROC curve; simulated calibrated scores
(labels drawn from the probabilities) check that the realised metric falls in the sampling band as often as its
level says; seeded simulations show where the method holds (covariate shift) and where it fails (concept drift).
"""

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from mlops_assets.ml import backlog, estimation
from mlops_assets.ml.candidate import calibration_of
from mlops_assets.ml.features import LABEL_COLUMN
from mlops_assets.ml.summaries import EstimateSummary
from mlops_assets.ml.triggers import RetrainDecision, RetrainPolicy

pytestmark = pytest.mark.core


def estimate(scores, calibrated, **kw) -> estimation.PerformanceEstimate:
    args = {"threshold": 0.5, "confidence_level": 0.95, "samples": 400, "seed": 0, **kw}
    return estimation.estimate_performance(np.asarray(scores), np.asarray(calibrated), **args)


# -- a hand-computed case ---------------------------------------------------------------------------------------------


def test_hand_computed_expected_confusion_matrix_metrics_and_roc_auc() -> None:
    s = [0.9, 0.8, 0.6, 0.3, 0.2]  # calibrated: p = s
    est = estimate(s, s)
    # Predicted positive: 0.9, 0.8, 0.6. E[TP] = 2.3, E[FP] = 0.7, E[FN] = 0.3 + 0.2, E[TN] = 0.7 + 0.8.
    assert (est.expected_tp, est.expected_fp, est.expected_fn, est.expected_tn) == pytest.approx((2.3, 0.7, 0.5, 1.5))
    assert est.metric("accuracy").estimate == pytest.approx(3.8 / 5)
    assert est.metric("precision").estimate == pytest.approx(2.3 / 3)
    assert est.metric("recall").estimate == pytest.approx(2.3 / 2.8)
    assert est.metric("f1").estimate == pytest.approx(4.6 / 5.8)
    # Expected ROC curve points (cumulative Σp, Σ(1-p)): (0.9, 0.1) (1.7, 0.3) (2.3, 0.7) (2.6, 1.4) (2.8, 2.2).
    tp = [Fraction(0), Fraction(9, 10), Fraction(17, 10), Fraction(23, 10), Fraction(26, 10), Fraction(28, 10)]
    fp = [Fraction(0), Fraction(1, 10), Fraction(3, 10), Fraction(7, 10), Fraction(14, 10), Fraction(22, 10)]
    area = sum((fp[i] - fp[i - 1]) * (tp[i] + tp[i - 1]) / 2 for i in range(1, 6)) / (tp[-1] * fp[-1])
    assert area == Fraction(498, 616)
    assert est.metric("roc_auc").estimate == pytest.approx(float(area), abs=1e-12)
    assert est.rows == 5 and est.predicted_positive_rate == pytest.approx(0.6)


def test_the_decision_uses_the_raw_score_and_the_expected_labels_the_calibrated_probability() -> None:
    # Raw 0.55 is predicted positive though its calibrated probability is 0.2; the ranking is the raw one.
    est = estimate([0.55, 0.45], [0.2, 0.9])
    assert (est.expected_tp, est.expected_fp, est.expected_fn, est.expected_tn) == pytest.approx((0.2, 0.8, 0.9, 0.1))
    assert est.metric("accuracy").estimate == pytest.approx((0.2 + 0.1) / 2)
    # Curve (0,0) → (0.2/1.1, 0.8/0.9) → (1, 1): area (0.8·0.2/2 + 0.1·1.3/2) / (1.1·0.9).
    assert est.metric("roc_auc").estimate == pytest.approx((0.08 + 0.065) / 0.99)


def test_undefined_metrics_are_none_not_nan() -> None:
    est = estimate([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])  # nothing predicted positive
    assert est.metric("precision").estimate is None
    assert est.metric("precision").lower is None and est.metric("precision").defined_draws == 0
    assert est.metric("recall").estimate == pytest.approx(0.0)
    record = est.to_record()
    assert record["metrics"]["precision"] == {"estimate": None, "lower": None, "upper": None, "defined_draws": 0}


@pytest.mark.parametrize(
    ("scores", "calibrated", "fragment"),
    [
        ([0.1, float("nan")], [0.1, 0.2], "score: 1 of 2 values are NaN or infinite"),
        ([0.1, 0.2], [0.1, float("inf")], "calibrated probability: 1 of 2 values are NaN"),
        ([0.1, 1.5], [0.1, 0.2], "outside [0, 1]"),
        ([0.1, 0.2], [0.1], "2 scores but 1 calibrated"),
        ([], [], "no rows"),
    ],
)
def test_bad_input_fails_with_the_column_and_rule(scores, calibrated, fragment) -> None:
    with pytest.raises(estimation.EstimationError) as info:
        estimate(scores, calibrated)
    assert fragment in str(info.value)


def test_realised_metrics_are_sklearns_with_ties() -> None:
    rng = np.random.default_rng(3)
    s = np.round(rng.random(2000), 2)  # many ties
    y = (rng.random(2000) < s).astype(float)
    got = estimation.realised_metrics(y, s, 0.5)
    pred = s >= 0.5
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(precision_score(y, pred))
    assert got["recall"] == pytest.approx(recall_score(y, pred))
    assert got["f1"] == pytest.approx(f1_score(y, pred))


# -- the band ---------------------------------------------------------------------------------------------------------


def test_realised_metric_falls_in_the_band_as_often_as_its_level_says() -> None:
    rng = np.random.default_rng(12)
    n, draws = 2000, 200
    p = rng.beta(1.2, 3.0, n)  # calibrated scores of a ~25 % positive class
    est = estimate(p, p, samples=500, seed=7)
    labels = rng.random((draws, n)) < p  # 200 batches of labels drawn from the same probabilities
    rates = {}
    for name in ("roc_auc", "accuracy", "f1", "pr_auc"):
        band = est.metric(name)
        inside = [band.contains(estimation.realised_metrics(y.astype(float), p, 0.5)[name]) for y in labels]
        rates[name] = float(np.mean(inside))
    print(f"realised metric inside the 95 % band in {rates} of {draws} label draws")
    assert all(rate >= 0.93 for rate in rates.values()), rates
    # The point estimate is the centre of the draws: it lies inside its own band.
    assert all(est.metric(m).contains(est.metric(m).estimate) for m in ("roc_auc", "accuracy", "f1"))


def test_the_band_is_seeded_and_narrows_with_more_rows() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(4000)
    a, b = estimate(p, p, seed=5), estimate(p, p, seed=5)
    assert a == b
    small = estimate(p[:400], p[:400], seed=5).metric("roc_auc")
    large = a.metric("roc_auc")
    assert large.upper - large.lower < (small.upper - small.lower) / 2


# -- calibration map --------------------------------------------------------------------------------------------------


def test_isotonic_map_round_trips_json_bit_for_bit_and_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    s = rng.random(3000)
    y = (rng.random(3000) < s**2).astype(float)  # the model over-states: true probability is s²
    fitted = estimation.fit_calibration(s, y)
    assert fitted.method == "isotonic" and fitted.n == 3000
    back = estimation.CalibrationMap.from_json(fitted.to_json())
    assert back == fitted
    grid = np.linspace(0, 1, 1001)
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(s, y).predict(grid)
    np.testing.assert_array_equal(back.apply(grid), fitted.apply(grid))
    np.testing.assert_allclose(back.apply(grid), reference, atol=1e-12)
    assert (np.diff(back.apply(grid)) >= 0).all()  # monotone
    # It corrects the over-statement: mean calibrated probability ≈ observed rate, unlike the raw scores.
    assert abs(back.apply(s).mean() - y.mean()) < 0.005 < abs(s.mean() - y.mean())


def test_a_small_holdout_gets_platt_scaling_monotone_and_round_tripping() -> None:
    rng = np.random.default_rng(1)
    s = rng.random(300)
    y = (rng.random(300) < s).astype(float)
    fitted = estimation.fit_calibration(s, y)
    assert fitted.method == "platt" and fitted.a is not None and fitted.a > 0
    back = estimation.CalibrationMap.from_json(fitted.to_json())
    grid = np.linspace(0, 1, 501)
    np.testing.assert_array_equal(back.apply(grid), fitted.apply(grid))
    assert (np.diff(back.apply(grid)) >= 0).all()


def test_no_map_for_a_one_class_holdout_and_unlabelled_rows_are_left_out() -> None:
    with pytest.raises(estimation.EstimationError, match="needs both classes"):
        estimation.fit_calibration([0.2, 0.4, 0.9], [0.0, 0.0, 0.0])
    holdout = pd.DataFrame({LABEL_COLUMN: pd.array([1, 0, None, 0, 1], dtype="Int64")})
    fitted, note = calibration_of(np.array([0.9, 0.1, 0.5, 0.3, 0.8]), holdout)
    assert fitted is not None and fitted.n == 4 and fitted.positives == 2 and note.startswith("calibration map: ")
    none, why = calibration_of(np.array([0.9, 0.1]), pd.DataFrame({LABEL_COLUMN: [1, 1]}))
    assert none is None and "needs both classes" in why


@pytest.mark.parametrize(
    "raw",
    [
        {"method": "isotonic", "x": [0.1, 0.1], "y": [0.2, 0.3]},
        {"method": "isotonic", "x": [0.1, 0.2], "y": [0.5, 0.3]},
        {"method": "platt", "a": -1.0, "b": 0.0},
        {"method": "spline"},
    ],
)
def test_a_malformed_map_is_refused(raw) -> None:
    with pytest.raises(estimation.EstimationError, match="calibration map"):
        estimation.CalibrationMap.from_dict(raw)


# -- where the assumptions hold and where they fail ------------------------------------------------------------------


def simulate(shift: str, seed: int = 0, n: int = 20_000) -> tuple[float, float, float, float]:
    """(estimated, lower, upper, realised) ROC AUC after ``shift`` (``none``, ``covariate``, ``concept``).

    One feature x; the truth P(y=1 | x) = sigmoid(2x − 1). The model scores sigmoid(x) (miscalibrated); its map is
    fitted on a holdout of x ~ N(0, 1). Covariate shift: x ~ N(1, 1.5), same P(y | x). Concept drift: x ~ N(0, 1),
    P(y=1 | x) = sigmoid(0.3x − 1): the same scores mean something else.
    """
    rng = np.random.default_rng(seed)

    def truth(x: np.ndarray, concept: bool = False) -> np.ndarray:
        return 1 / (1 + np.exp(-(0.3 * x - 1))) if concept else 1 / (1 + np.exp(-(2 * x - 1)))

    def score(x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-x))

    x0 = rng.normal(0, 1, n)
    y0 = (rng.random(n) < truth(x0)).astype(float)
    cal = estimation.fit_calibration(score(x0), y0)
    x1 = rng.normal(1, 1.5, n) if shift == "covariate" else rng.normal(0, 1, n)
    y1 = (rng.random(n) < truth(x1, concept=shift == "concept")).astype(float)
    est = estimate(score(x1), cal.apply(score(x1)), samples=200).metric("roc_auc")
    assert est.estimate is not None and est.lower is not None and est.upper is not None
    return est.estimate, est.lower, est.upper, float(roc_auc_score(y1, score(x1)))


def test_covariate_shift_is_tracked_and_concept_drift_is_not() -> None:
    est, lower, upper, realised = simulate("covariate")
    assert abs(realised - est) < 0.01 and lower <= realised <= upper
    none = simulate("none")
    assert abs(none[3] - none[0]) < 0.01
    est, lower, upper, realised = simulate("concept")
    assert realised < lower and est - realised > 0.15  # the estimate stays high; the labels show the drop


# -- the estimated-performance backlog --------------------------------------------------------------------------------


def event(version: str, below: bool | None, production: int = 1) -> backlog.EstimateEvent:
    return backlog.EstimateEvent(
        version,
        EstimateSummary(
            model="m",
            model_version=production,
            metric="roc_auc",
            estimated_metric=0.5,
            sla_floor=0.6,
            estimated_below_floor=below,
        ),
    )


def production(*trained_on: str, triggers=None) -> backlog.Production:
    policy = RetrainPolicy() if triggers is None else RetrainPolicy(triggers=triggers)
    return backlog.Production("m", 1, policy, trained_on)


def test_backlog_fires_once_per_evidence_and_the_cursor_round_trips() -> None:
    step = backlog.step_estimate_backlog(
        backlog.EstimateBacklog(), [event("v3", True)], production=production("v1"), newest_labelled_version="v2"
    )
    assert step.candidate is not None and step.candidate.data_version == "v2"
    assert step.candidate.reason == "estimated_performance" and step.candidate.evidence["data_version"] == "v3"
    stored = step.settle(RetrainDecision(True, "allowed", "ok"))
    assert stored.pending is None and stored.acted == (("v3", "m", 1),)
    again = backlog.EstimateBacklog.from_cursor(stored.to_cursor())
    assert again == stored
    repeat = backlog.step_estimate_backlog(
        again, [event("v3", True)], production=production("v1"), newest_labelled_version="v2"
    )
    assert repeat.candidate is None and "no estimated SLA breach" in (repeat.skip or "")
    # New evidence (another version's estimate) fires; a cooldown keeps it waiting instead.
    new = backlog.step_estimate_backlog(
        again, [event("v4", True)], production=production("v1"), newest_labelled_version="v2"
    )
    assert new.candidate is not None
    assert new.settle(RetrainDecision(False, "cooldown", "wait")).pending is not None


def test_backlog_latest_estimate_decides_and_unknowns_say_nothing() -> None:
    step = backlog.step_estimate_backlog(
        backlog.EstimateBacklog(),
        [event("v3", True), event("v4", None), event("v5", False)],
        production=production("v1"),
        newest_labelled_version="v2",
        mark=9,
    )
    assert step.candidate is None and step.backlog.mark == 9 and step.backlog.pending is None
    kept = backlog.step_estimate_backlog(
        backlog.EstimateBacklog(),
        [event("v3", True), event("v4", None)],
        production=production("v1"),
        newest_labelled_version="v2",
    )
    assert kept.candidate is not None and kept.candidate.evidence["data_version"] == "v3"


def test_backlog_waits_for_labelled_data_newer_than_the_training_data() -> None:
    step = backlog.step_estimate_backlog(
        backlog.EstimateBacklog(), [event("v3", True)], production=production("v1", "v2"), newest_labelled_version="v2"
    )
    assert step.candidate is None and step.backlog.pending is not None and "waiting for newer labels" in step.skip
    nothing = backlog.step_estimate_backlog(
        step.backlog, [], production=production("v1", "v2"), newest_labelled_version=None
    )
    assert nothing.candidate is None and "no data version is labelled" in (nothing.skip or "")


def test_malformed_cursor_starts_over() -> None:
    assert backlog.EstimateBacklog.from_cursor("{nope") == backlog.EstimateBacklog()
    odd = backlog.EstimateBacklog.from_cursor('{"estimate": 3, "pending": 5, "acted": [["v", "m"], ["v", "m", 1]]}')
    assert odd == backlog.EstimateBacklog(3, None, (("v", "m", 1),))


def simulation_table(seeds: range = range(20)) -> list[str]:
    """The numbers of ``docs/monitoring.md`` ("Where the estimate fails"): per scenario, over ``seeds``, the mean
    estimated and realised ROC AUC, the mean and largest |error| and how often realised fell in the 95 % band.
    ``python -m mlops_assets_tests.test_performance_estimate``."""
    lines = ["| scenario | estimated ROC AUC | realised ROC AUC | mean abs error | max abs error | realised in band |"]
    lines.append("|---|---|---|---|---|---|")
    for shift in ("none", "covariate", "concept"):
        runs = np.array([simulate(shift, seed) for seed in seeds])
        est, lower, upper, realised = runs.T
        error = np.abs(realised - est)
        inside = np.mean((lower <= realised) & (realised <= upper))
        lines.append(
            f"| {shift} | {est.mean():.4f} | {realised.mean():.4f} | {error.mean():.4f} | {error.max():.4f} | "
            f"{inside:.0%} of {len(seeds)} |"
        )
    return lines


if __name__ == "__main__":
    print("\n".join(simulation_table()))
