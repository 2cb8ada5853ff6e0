"""Label-free performance estimation (CBPE) and the calibration map it rests on. Pure: numpy, scipy, sklearn.

Confidence-based performance estimation (CBPE) is NannyML's method (NannyML docs, "How it works: performance
estimation"): when a classifier's scores are *calibrated probabilities* ``p_i = P(y_i = 1 | x_i)``, each row's
label is a Bernoulli(``p_i``) draw, so the expected confusion matrix of a batch at the decision threshold is a
sum of probabilities, and every metric of it (accuracy, precision, recall, F1, ROC AUC, PR AUC) can be estimated
before a single label exists. This module is our own implementation of that method:

* :class:`CalibrationMap` / :func:`fit_calibration`: the map from the model's raw score to a calibrated
  probability, fitted on the model's holdout at training time (isotonic regression when the holdout is large
  enough, Platt scaling otherwise; see :func:`fit_calibration`), serialised as JSON and stored with the model.
* :func:`estimate_performance`: the CBPE point estimates, and a sampling-based confidence band — the labels
  are drawn ``samples`` times from Bernoulli(``p_i``) and each metric is computed on each draw; the band is
  the central ``confidence_level`` percentile interval of those metrics, i.e. where the *realised* metric of
  this batch falls if the assumptions hold.

The assumptions (see ``docs/monitoring.md``, "Performance before labels"): no concept drift (``P(y | x)`` is the
same as on the holdout the map was fitted on), so the calibration still holds on the new data; the distribution
of ``x`` (and of the scores) may shift. Under concept drift the estimate is wrong, and only the labels show it.
"""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
from scipy.stats import rankdata
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

#: The metrics estimated, in the order they are reported (``pr_auc`` too, for a spec whose headline it is).
ESTIMATED_METRICS: tuple[str, ...] = ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1")

#: Holdouts with fewer labelled rows (or fewer than :data:`ISOTONIC_MIN_CLASS_ROWS` of either class) are
#: calibrated by Platt scaling: isotonic regression is non-parametric and over-fits small calibration sets
#: (scikit-learn user guide, "Probability calibration": isotonic "is more prone to overfitting, especially on
#: small datasets"; Niculescu-Mizil & Caruana 2005 found it worse than Platt below ~1000 calibration rows).
ISOTONIC_MIN_ROWS = 1000
ISOTONIC_MIN_CLASS_ROWS = 50
#: Scores are clipped to [eps, 1 - eps] before the logit of Platt scaling (a score of exactly 0 or 1 stays finite).
_EPS = 1e-6
#: Label draws of the band are made in chunks of at most this many cells (draws × rows), bounding memory
#: (~4 M cells: 32 MB as float64) whatever the batch size; each chunk is one vectorised matrix.
_MAX_CELLS = 4_000_000


class EstimationError(ValueError):
    """Input CBPE cannot use (NaN or out-of-range scores, mismatched lengths, a malformed map); names the rule."""


def _probabilities(values: Any, what: str) -> np.ndarray:
    """``values`` as a 1-d float64 array in [0, 1]; :class:`EstimationError` naming ``what`` and the rule otherwise."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise EstimationError(f"{what}: expected one value per row (1-d), got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        raise EstimationError(
            f"{what}: {int(bad.sum())} of {array.size} values are NaN or infinite (first at row "
            f"{int(np.flatnonzero(bad)[0])}); rule: every score is a finite probability"
        )
    outside = (array < 0.0) | (array > 1.0)
    if outside.any():
        raise EstimationError(
            f"{what}: {int(outside.sum())} of {array.size} values are outside [0, 1] (e.g. "
            f"{float(array[outside][0])!r}); rule: every score is a probability in [0, 1]"
        )
    return array


def _logit(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(scores, _EPS, 1.0 - _EPS)
    return np.log(clipped) - np.log1p(-clipped)


# -- calibration ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationMap:
    """A monotone map from a model's score to a calibrated probability of the positive class.

    Attributes:
        method: ``"isotonic"`` (piecewise linear through the knots ``x`` → ``y``, constant beyond the ends — what
            ``sklearn.isotonic.IsotonicRegression(out_of_bounds="clip").predict`` computes) or ``"platt"``
            (``1 / (1 + exp(-(a · logit(score) + b)))``; Platt 1999, fitted on the logit of the score so that an
            already calibrated model keeps ``a ≈ 1, b ≈ 0``).
        x: Isotonic knots: scores, strictly increasing (empty for Platt).
        y: Isotonic knots: calibrated probabilities, non-decreasing, in [0, 1] (empty for Platt).
        a: Platt slope (> 0 keeps the model's ranking); ``None`` for isotonic.
        b: Platt intercept; ``None`` for isotonic.
        n: Labelled holdout rows it was fitted on.
        positives: Positive labels among them.
    """

    method: str
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float | None = None
    b: float | None = None
    n: int = 0
    positives: int = 0

    def __post_init__(self) -> None:
        if self.method == "isotonic":
            x, y = np.asarray(self.x, dtype=float), np.asarray(self.y, dtype=float)
            if x.size == 0 or x.size != y.size:
                raise EstimationError(
                    f"calibration map: isotonic knots need equal, non-zero lengths ({x.size}, {y.size})"
                )
            if not (np.isfinite(x).all() and np.isfinite(y).all()):
                raise EstimationError("calibration map: isotonic knots must be finite")
            if (np.diff(x) <= 0).any() or (np.diff(y) < 0).any() or y.min() < 0 or y.max() > 1:
                raise EstimationError(
                    "calibration map: isotonic knots must have strictly increasing scores and non-decreasing "
                    "probabilities in [0, 1]"
                )
        elif self.method == "platt":
            if self.a is None or self.b is None or not (math.isfinite(self.a) and math.isfinite(self.b)):
                raise EstimationError(f"calibration map: Platt needs finite a and b, got a={self.a!r}, b={self.b!r}")
            if self.a < 0:
                raise EstimationError(f"calibration map: Platt slope a={self.a!r} < 0 would reverse the ranking")
        else:
            raise EstimationError(f"calibration map: unknown method {self.method!r}; known: isotonic, platt")

    def apply(self, scores: Any) -> np.ndarray:
        """Calibrated probabilities of ``scores`` (1-d, in [0, 1]); same length, in [0, 1], monotone in the score.

        Raises:
            EstimationError: NaN, infinite or out-of-range scores.
        """
        s = _probabilities(scores, "score")
        if self.method == "isotonic":
            return np.interp(s, np.asarray(self.x), np.asarray(self.y))  # constant beyond the ends: "clip"
        assert self.a is not None and self.b is not None
        return 1.0 / (1.0 + np.exp(-(self.a * _logit(s) + self.b)))

    def describe(self) -> str:
        """``"isotonic, 37 knots, fitted on 5,120 holdout rows (1,004 positive)"``."""
        shape = f"{len(self.x)} knots" if self.method == "isotonic" else f"a={self.a:.4g}, b={self.b:.4g}"
        return f"{self.method}, {shape}, fitted on {self.n:,} holdout rows ({self.positives:,} positive)"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "n": self.n, "positives": self.positives}
        if self.method == "isotonic":
            out.update(x=list(self.x), y=list(self.y))
        else:
            out.update(a=self.a, b=self.b)
        return out

    def to_json(self) -> str:
        """Standard JSON (floats written exactly: :meth:`from_json` restores the same map bit for bit)."""
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Self:
        """Read :meth:`to_dict`; :class:`EstimationError` naming the key when malformed."""
        if not isinstance(raw, Mapping) or "method" not in raw:
            raise EstimationError("calibration map: expected an object with a 'method'")
        try:
            return cls(
                method=str(raw["method"]),
                x=tuple(float(v) for v in raw.get("x", ())),
                y=tuple(float(v) for v in raw.get("y", ())),
                a=None if raw.get("a") is None else float(raw["a"]),
                b=None if raw.get("b") is None else float(raw["b"]),
                n=int(raw.get("n", 0)),
                positives=int(raw.get("positives", 0)),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, EstimationError):
                raise
            raise EstimationError(f"calibration map: malformed value ({exc})") from exc

    @classmethod
    def from_json(cls, text: str) -> Self:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EstimationError(f"calibration map: not JSON ({exc})") from exc
        return cls.from_dict(raw)


def fit_calibration(
    scores: Any,
    labels: Any,
    *,
    min_isotonic_rows: int = ISOTONIC_MIN_ROWS,
    min_isotonic_class_rows: int = ISOTONIC_MIN_CLASS_ROWS,
) -> CalibrationMap:
    """Fit the calibration map of a model from its holdout scores and labels.

    Isotonic regression (``sklearn.isotonic.IsotonicRegression(out_of_bounds="clip")``, Zadrozny & Elkan 2002)
    when the holdout has at least ``min_isotonic_rows`` labelled rows and ``min_isotonic_class_rows`` of each
    class; Platt scaling (Platt 1999: a logistic regression on the logit of the score, unregularised) otherwise,
    because isotonic regression over-fits small calibration sets. Rows whose label is missing (NaN) are left out.

    Args:
        scores: The model's scores of the positive class on its holdout, shape (n,), in [0, 1].
        labels: The holdout labels, shape (n,): 0/1, NaN for unlabelled rows.

    Returns:
        The fitted map (its ``n`` / ``positives`` say what it rests on).

    Raises:
        EstimationError: NaN or out-of-range scores, mismatched lengths, or fewer than one labelled row of each
            class (no map can be fitted: the estimate then says so instead of guessing).
    """
    s = _probabilities(scores, "holdout score")
    y = np.asarray(labels, dtype=np.float64)
    if y.shape != s.shape:
        raise EstimationError(f"holdout labels: {y.shape} values for {s.shape} scores; rule: one label per score")
    known = np.isfinite(y)
    if not np.isin(y[known], (0.0, 1.0)).all():
        raise EstimationError("holdout labels: values other than 0/1; rule: labels are 0 or 1")
    s, y = s[known], y[known]
    positives = int(y.sum())
    negatives = int(y.size - positives)
    if positives == 0 or negatives == 0:
        raise EstimationError(
            f"holdout labels: {positives} positive and {negatives} negative labelled rows; rule: a calibration map "
            "needs both classes"
        )
    if y.size >= min_isotonic_rows and min(positives, negatives) >= min_isotonic_class_rows:
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True).fit(s, y)
        return CalibrationMap(
            "isotonic",
            x=tuple(float(v) for v in iso.X_thresholds_),
            y=tuple(float(v) for v in iso.y_thresholds_),
            n=int(y.size),
            positives=positives,
        )
    # C=inf: no penalty (Platt's fit is a plain maximum-likelihood sigmoid).
    lr = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=1000).fit(_logit(s).reshape(-1, 1), y)
    slope = max(float(lr.coef_[0, 0]), 0.0)  # a negative slope would reverse the model's ranking: flatten instead
    return CalibrationMap("platt", a=slope, b=float(lr.intercept_[0]), n=int(y.size), positives=positives)


# -- estimation -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricEstimate:
    """One metric's CBPE estimate and its band.

    Attributes:
        metric: Its name (:data:`ESTIMATED_METRICS`).
        estimate: The CBPE point estimate (from the expected confusion matrix / expected curve); ``None`` when
            undefined (e.g. precision with no predicted positive).
        lower: Lower end of the band: the ``(1 − confidence_level) / 2`` quantile of the metric over the label
            draws; ``None`` when undefined in every draw.
        upper: Upper end (the ``(1 + confidence_level) / 2`` quantile).
        defined_draws: Label draws in which the metric was defined (the band rests on these).
    """

    metric: str
    estimate: float | None
    lower: float | None
    upper: float | None
    defined_draws: int

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the band (ends included); ``False`` when the band is undefined."""
        return self.lower is not None and self.upper is not None and self.lower <= value <= self.upper


@dataclass(frozen=True)
class PerformanceEstimate:
    """The CBPE estimate of one batch (:func:`estimate_performance`).

    Attributes:
        rows: Rows estimated on.
        threshold: Decision threshold on the *raw* score (a row is predicted positive when score ≥ threshold).
        confidence_level: Coverage of the band.
        samples: Label draws behind the band.
        seed: Seed of the draws.
        expected_tp, expected_fp, expected_fn, expected_tn: The expected confusion matrix (sums of calibrated
            probabilities; they add up to ``rows``).
        expected_positive_rate: Mean calibrated probability (the expected share of positive labels).
        predicted_positive_rate: Share of rows predicted positive.
        metrics: One :class:`MetricEstimate` per metric of :data:`ESTIMATED_METRICS`, in that order.
    """

    rows: int
    threshold: float
    confidence_level: float
    samples: int
    seed: int
    expected_tp: float
    expected_fp: float
    expected_fn: float
    expected_tn: float
    expected_positive_rate: float
    predicted_positive_rate: float
    metrics: tuple[MetricEstimate, ...] = field(default=())

    def metric(self, name: str) -> MetricEstimate:
        """The estimate of ``name``; ``KeyError`` naming the known metrics otherwise."""
        for m in self.metrics:
            if m.metric == name:
                return m
        raise KeyError(f"no estimate of {name!r}; estimated: {list(ESTIMATED_METRICS)}")

    def to_record(self) -> dict[str, Any]:
        """JSON-ready: every field, and ``metrics`` as ``{name: {estimate, lower, upper, defined_draws}}``."""
        return {
            "rows": self.rows,
            "threshold": self.threshold,
            "confidence_level": self.confidence_level,
            "samples": self.samples,
            "seed": self.seed,
            "expected_confusion": {
                "tp": self.expected_tp,
                "fp": self.expected_fp,
                "fn": self.expected_fn,
                "tn": self.expected_tn,
            },
            "expected_positive_rate": self.expected_positive_rate,
            "predicted_positive_rate": self.predicted_positive_rate,
            "metrics": {
                m.metric: {
                    "estimate": m.estimate,
                    "lower": m.lower,
                    "upper": m.upper,
                    "defined_draws": m.defined_draws,
                }
                for m in self.metrics
            },
        }


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _tie_group_ends(sorted_desc: np.ndarray) -> np.ndarray:
    """Indices of the last row of each group of equal scores in a descending score array (one curve point each)."""
    return np.r_[np.flatnonzero(np.diff(sorted_desc) != 0), sorted_desc.size - 1]


def expected_roc_auc(scores: np.ndarray, calibrated: np.ndarray) -> float | None:
    """CBPE's ROC AUC: the area (trapezoid) under the expected ROC curve.

    Over thresholds ``t`` at every distinct raw score: ``TPR(t) = Σ_{s_i ≥ t} p_i / Σ p_i`` and
    ``FPR(t) = Σ_{s_i ≥ t} (1 − p_i) / Σ (1 − p_i)`` — the model's own ranking (raw scores, ties as one point,
    like ``sklearn.metrics.roc_curve``) with the expected labels. ``None`` when ``Σ p`` or ``Σ (1 − p)`` is 0.
    """
    order = np.argsort(-scores, kind="mergesort")
    p = calibrated[order]
    ends = _tie_group_ends(scores[order])
    tp = np.cumsum(p)[ends]
    fp = np.cumsum(1.0 - p)[ends]
    if tp[-1] <= 0 or fp[-1] <= 0:
        return None
    tpr = np.r_[0.0, tp / tp[-1]]
    fpr = np.r_[0.0, fp / fp[-1]]
    return float(np.trapezoid(tpr, fpr))


def expected_average_precision(scores: np.ndarray, calibrated: np.ndarray) -> float | None:
    """CBPE's PR AUC (average precision) on the expected PR curve: ``Σ_t (R(t) − R(t⁺)) · P(t)`` with
    ``R(t) = Σ_{s_i ≥ t} p_i / Σ p_i`` and ``P(t) = Σ_{s_i ≥ t} p_i / #{s_i ≥ t}`` (as
    ``sklearn.metrics.average_precision_score`` on labels). ``None`` when ``Σ p`` is 0."""
    order = np.argsort(-scores, kind="mergesort")
    ends = _tie_group_ends(scores[order])
    tp = np.cumsum(calibrated[order])[ends]
    if tp[-1] <= 0:
        return None
    recall = tp / tp[-1]
    precision = tp / (ends + 1)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _band(values: np.ndarray, confidence_level: float) -> tuple[float | None, float | None, int]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None, 0
    tail = (1.0 - confidence_level) / 2.0
    lower, upper = np.quantile(finite, [tail, 1.0 - tail])
    return float(lower), float(upper), int(finite.size)


def _sampled_metrics(
    scores: np.ndarray, calibrated: np.ndarray, threshold: float, samples: int, seed: int
) -> dict[str, np.ndarray]:
    """Each metric on each of ``samples`` label draws ``y ~ Bernoulli(p)``; NaN where undefined. Shape (samples,).

    Vectorised: a chunk of draws is one (draws × rows) matrix; ROC AUC from the Mann–Whitney rank sum of the
    positives (average ranks: ties count half, as ``sklearn.metrics.roc_auc_score``), average precision from the
    cumulative true positives at every distinct score.
    """
    n = scores.size
    rng = np.random.default_rng(seed)
    predicted = scores >= threshold
    n_predicted = int(predicted.sum())
    ranks = rankdata(scores)  # average ranks, ascending
    order = np.argsort(-scores, kind="mergesort")
    ends = _tie_group_ends(scores[order])
    out = {m: np.empty(samples) for m in ESTIMATED_METRICS}
    chunk = max(1, _MAX_CELLS // max(n, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, samples, chunk):
            size = min(chunk, samples - start)
            draws = rng.random((size, n)) < calibrated  # one matrix of labels per chunk
            part = slice(start, start + size)
            positives = draws.sum(axis=1).astype(float)
            negatives = n - positives
            tp = draws[:, predicted].sum(axis=1).astype(float)
            fp = n_predicted - tp
            fn = positives - tp
            tn = negatives - fp
            out["accuracy"][part] = (tp + tn) / n
            out["precision"][part] = tp / n_predicted if n_predicted else np.nan
            out["recall"][part] = np.where(positives > 0, tp / positives, np.nan)
            out["f1"][part] = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
            rank_sum = draws @ ranks
            defined = (positives > 0) & (negatives > 0)
            auc = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
            out["roc_auc"][part] = np.where(defined, auc, np.nan)
            cum_tp = np.cumsum(draws[:, order], axis=1)[:, ends].astype(float)
            gained = np.diff(np.c_[np.zeros(size), cum_tp], axis=1)
            ap = (gained * (cum_tp / (ends + 1))).sum(axis=1) / positives
            out["pr_auc"][part] = np.where(positives > 0, ap, np.nan)
    return out


def estimate_performance(
    scores: Sequence[float] | np.ndarray,
    calibrated: Sequence[float] | np.ndarray,
    *,
    threshold: float,
    confidence_level: float,
    samples: int,
    seed: int,
) -> PerformanceEstimate:
    """CBPE (NannyML's confidence-based performance estimation) of one unlabelled batch, with a sampling band.

    Expected confusion matrix at ``threshold`` (rows predicted positive: ``score ≥ threshold``):
    ``E[TP] = Σ_{pred} p_i``, ``E[FP] = Σ_{pred} (1 − p_i)``, ``E[FN] = Σ_{not pred} p_i``,
    ``E[TN] = Σ_{not pred} (1 − p_i)``; accuracy, precision, recall and F1 are those of the expected matrix
    (NannyML's estimator), ROC AUC and PR AUC the areas under the expected curves (:func:`expected_roc_auc`,
    :func:`expected_average_precision`). The band: ``samples`` label draws ``y ~ Bernoulli(p)`` (seeded), each
    metric per draw, the central ``confidence_level`` percentile interval — where the realised metric of this
    batch should fall when the calibration holds (its sampling error; it says nothing about concept drift).

    Args:
        scores: The model's raw scores of the positive class, shape (n,), in [0, 1]: they rank the rows and make
            the decision.
        calibrated: The calibrated probabilities ``p_i`` of the same rows (:meth:`CalibrationMap.apply`).
        threshold: The decision threshold (``policy.evaluation.decision_threshold``).
        confidence_level: Band coverage in (0, 1) (``policy.evaluation.confidence_level``).
        samples: Label draws (``policy.monitoring.performance_estimate_samples``), ≥ 1.
        seed: Seed of the draws (``policy.evaluation.random_seed``).

    Raises:
        EstimationError: an empty batch, NaN/infinite/out-of-range scores or probabilities, mismatched lengths,
            or a threshold, level or sample count out of range.
    """
    s = _probabilities(scores, "score")
    p = _probabilities(calibrated, "calibrated probability")
    if s.size != p.size:
        raise EstimationError(f"{s.size} scores but {p.size} calibrated probabilities; rule: one per row")
    if s.size == 0:
        raise EstimationError("score: no rows to estimate on; rule: at least one scored row")
    if not 0.0 < confidence_level < 1.0:
        raise EstimationError(f"confidence_level {confidence_level!r} not in (0, 1)")
    if not (isinstance(samples, int) and samples >= 1):
        raise EstimationError(f"samples {samples!r}: rule: an integer >= 1")
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise EstimationError(f"threshold {threshold!r} not in [0, 1]")
    predicted = s >= threshold
    tp = float(p[predicted].sum())
    fp = float((1.0 - p[predicted]).sum())
    fn = float(p[~predicted].sum())
    tn = float((1.0 - p[~predicted]).sum())
    point = {
        "roc_auc": expected_roc_auc(s, p),
        "pr_auc": expected_average_precision(s, p),
        "accuracy": (tp + tn) / s.size,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }
    drawn = _sampled_metrics(s, p, threshold, samples, seed)
    metrics = []
    for name in ESTIMATED_METRICS:
        lower, upper, defined = _band(drawn[name], confidence_level)
        metrics.append(MetricEstimate(name, point[name], lower, upper, defined))
    return PerformanceEstimate(
        rows=int(s.size),
        threshold=float(threshold),
        confidence_level=float(confidence_level),
        samples=samples,
        seed=seed,
        expected_tp=tp,
        expected_fp=fp,
        expected_fn=fn,
        expected_tn=tn,
        expected_positive_rate=float(p.mean()),
        predicted_positive_rate=float(predicted.mean()),
        metrics=tuple(metrics),
    )


def realised_metrics(labels: Any, scores: Any, threshold: float) -> dict[str, float | None]:
    """The metrics of :data:`ESTIMATED_METRICS` realised on labelled rows (``None`` where undefined): what an
    estimate is checked against once labels land. Same definitions as the estimate (sklearn's on labels)."""
    y = np.asarray(labels, dtype=np.float64)
    s = _probabilities(scores, "score")
    if y.shape != s.shape:
        raise EstimationError(f"{y.size} labels for {s.size} scores; rule: one label per score")
    known = np.isfinite(y)
    y, s = y[known], s[known]
    if y.size == 0:
        return dict.fromkeys(ESTIMATED_METRICS)
    drawn = _sampled_metrics(s, y, threshold, 1, 0)  # p ∈ {0, 1}: the one "draw" is the labels themselves
    return {m: (float(v[0]) if np.isfinite(v[0]) else None) for m, v in drawn.items()}


def compare_with_realised(estimate: Mapping[str, Any], realised: Mapping[str, float | None]) -> list[dict[str, Any]]:
    """Estimated vs realised, per metric: what ``performance_report`` records once the labels of a version land.

    Args:
        estimate: ``PerformanceEstimate.to_record()["metrics"]`` as stored (``{metric: {estimate, lower, upper}}``).
        realised: :func:`realised_metrics` on the same rows' labels.

    Returns:
        One row per metric estimated (order of :data:`ESTIMATED_METRICS`): ``metric``, ``estimated``, ``lower``,
        ``upper``, ``realised``, ``error`` (realised − estimated; ``None`` when either is undefined) and
        ``in_band`` (whether realised lies in [lower, upper]; ``None`` when either is undefined).
    """
    rows: list[dict[str, Any]] = []
    for name in ESTIMATED_METRICS:
        entry = estimate.get(name)
        if not isinstance(entry, Mapping):
            continue
        value = realised.get(name)
        guess, lower, upper = entry.get("estimate"), entry.get("lower"), entry.get("upper")
        rows.append(
            {
                "metric": name,
                "estimated": guess,
                "lower": lower,
                "upper": upper,
                "realised": value,
                "error": None if value is None or guess is None else float(value) - float(guess),
                "in_band": None
                if value is None or lower is None or upper is None
                else bool(float(lower) <= float(value) <= float(upper)),
            }
        )
    return rows
