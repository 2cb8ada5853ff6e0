"""Evaluation: candidate, baseline and production scored on the same holdout rows.

Besides the holdout metrics (from :mod:`sklearn.metrics`) an evaluation holds everything the model gates
decide on: a reliability table and the expected calibration error, per-slice metrics, group fairness
rates per protected attribute, confidence intervals of the paired differences (candidate − baseline) and
(candidate − production) of the headline metric (DeLong for ROC AUC, a paired bootstrap for PR AUC), counts of
invalid scores, the scoring latency and the effective policy.

Where a metric is undefined (a holdout or slice with a single class has no ROC/PR curve; a model that
returned NaN scores has no metrics at all) it is NaN with an ``undefined_reason`` rather than an
exception, so that the model gates can fail closed with that reason instead of crashing the run.
"""

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

from mlops_assets.ml.features import HOLDOUT, LABEL_COLUMN, OTHER_CATEGORY, SPLIT_COLUMN, model_inputs
from mlops_assets.ml.latency import LatencyReport, measure_latency
from mlops_assets.ml.policy import METRIC_DIRECTIONS, ModelGatePolicy, Policy, policy_from_dict
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.training import predict_scores

HEADLINE_METRICS: tuple[str, ...] = ("roc_auc", "pr_auc")
UNDEFINED_REASON = "undefined_reason"
# A slice column with many distinct values (a numeric one, say) would swamp the table; the tail is pooled.
MAX_SLICE_VALUES = 50
#: Metric keys of :func:`classification_metrics` that are floats (NaN when undefined).
METRIC_KEYS: tuple[str, ...] = ("roc_auc", "pr_auc", "accuracy", "f1", "log_loss", "brier", "ece")
#: What the bootstrap does with a resample that lacks a class (its ranking metric is undefined).
MISSING_CLASS_RESAMPLES = "skipped"
# Resamples are drawn and scored in chunks of about this many cells (resamples × rows), which bounds
# memory (a few 10 MB per array) whatever the holdout size; the chunk size depends only on the row count,
# so the random stream, and the interval, depend only on the data and the seed.
_BOOTSTRAP_CHUNK_CELLS = 1_500_000
MODELS: tuple[str, ...] = ("candidate", "baseline", "production")


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------


def _check_inputs(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or len(y) != len(s):
        raise ValueError(f"y_true and scores must be 1-d of equal length, got shapes {y.shape} and {s.shape}")
    if len(y) == 0:
        raise ValueError("cannot compute metrics on zero rows")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must be 0/1, got values {sorted(set(np.unique(y).tolist()))[:10]}")
    if not np.isfinite(s).all() or (s < 0).any() or (s > 1).any():
        raise ValueError("scores must be finite probabilities in [0, 1]")
    return y.astype(np.int64), s


def ranking_metric(name: str, y_true: np.ndarray, scores: np.ndarray) -> float:
    """A threshold-free ranking metric (``roc_auc`` or ``pr_auc``); NaN when y_true has a single class.

    Args:
        name: ``roc_auc`` or ``pr_auc`` (average precision).
        y_true: 0/1 labels.
        scores: Scores of the positive class.

    Returns:
        The metric value, or NaN when it is undefined.
    """
    y, s = _check_inputs(y_true, scores)
    if name not in HEADLINE_METRICS:
        raise ValueError(f"unknown ranking metric {name!r}; known: {list(HEADLINE_METRICS)}")
    if len(np.unique(y)) < 2:
        return math.nan
    if name == "roc_auc":
        return float(skm.roc_auc_score(y, s))
    return float(skm.average_precision_score(y, s))


@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-width score bin of a reliability diagram.

    Bins are right-closed, ``(lower, upper]``, the first also holding 0, like
    :func:`sklearn.calibration.calibration_curve` and the ECE of Guo et al. (2017).

    Attributes:
        lower: Lower bin edge.
        upper: Upper bin edge.
        n: Rows whose score falls in the bin.
        n_positive: Positive rows among them.
        mean_score: Mean score in the bin (NaN when empty).
        observed_rate: Share of positive rows in the bin (NaN when empty).
    """

    lower: float
    upper: float
    n: int
    n_positive: int
    mean_score: float
    observed_rate: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ReliabilityBin":
        return cls(
            lower=float(data["lower"]),
            upper=float(data["upper"]),
            n=int(data["n"]),
            n_positive=int(data["n_positive"]),
            mean_score=_float(data["mean_score"]),
            observed_rate=_float(data["observed_rate"]),
        )


def reliability_table(y_true: np.ndarray, scores: np.ndarray, n_bins: int) -> tuple[ReliabilityBin, ...]:
    """Counts, mean score and observed positive rate in ``n_bins`` equal-width score bins (empty ones too).

    Args:
        y_true: 0/1 labels.
        scores: Scores in [0, 1].
        n_bins: Number of bins (``policy.calibration_bins``).

    Returns:
        One :class:`ReliabilityBin` per bin, lowest first.

    Raises:
        ValueError: bad inputs (see :func:`classification_metrics`) or ``n_bins < 1``.
    """
    y, s = _check_inputs(y_true, scores)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # The same binning as sklearn.calibration.calibration_curve(strategy="uniform").
    ids = np.searchsorted(edges[1:-1], s)
    count = np.bincount(ids, minlength=n_bins)
    score_sum = np.bincount(ids, weights=s, minlength=n_bins)
    positive = np.bincount(ids, weights=y, minlength=n_bins)
    return tuple(
        ReliabilityBin(
            lower=float(edges[i]),
            upper=float(edges[i + 1]),
            n=int(count[i]),
            n_positive=int(positive[i]),
            mean_score=float(score_sum[i] / count[i]) if count[i] else math.nan,
            observed_rate=float(positive[i] / count[i]) if count[i] else math.nan,
        )
        for i in range(n_bins)
    )


def ece_from_table(table: Sequence[ReliabilityBin]) -> float:
    """Expected calibration error of a reliability table: ``Σ n_b / n · |mean score_b − observed rate_b|``.

    Args:
        table: From :func:`reliability_table`.

    Returns:
        The ECE in [0, 1]; NaN for a table without rows.
    """
    n = sum(b.n for b in table)
    if n == 0:
        return math.nan
    return math.fsum(b.n / n * abs(b.mean_score - b.observed_rate) for b in table if b.n)


def consistency_resampled_ece(table: Sequence[ReliabilityBin], resamples: int, seed: int) -> np.ndarray:
    """ECE of a perfectly calibrated model with the same scores: its null distribution at this sample size.

    Consistency resampling (Bröcker & Smith 2007, "Increasing the reliability of reliability diagrams",
    Weather and Forecasting 22(3)): draw labels ``y* ~ Bernoulli(score)`` for the model's own scores, so
    the model is calibrated by construction, and recompute the ECE. Only the reliability table is recorded,
    so the draw is per bin: ``k* ~ Binomial(n_b, mean score_b)`` positives, ECE* ``= Σ |k* − n_b · mean
    score_b| / n``. That is exact when the scores in a bin are equal; otherwise the sum of Bernoulli draws
    has a slightly smaller variance than the binomial (by ``n_b`` times the variance of the scores inside
    the bin, at most ``(width / 2)² = 0.0025`` for 10 bins), so the null ECE is over-stated by a few per
    cent of itself, not more. The ECE is biased upward at small ``n`` (the mean of this distribution is
    about 0.08 for 140 rows in 10 bins, 0.007 for 20,000, for logit-normal scores), which is what the
    calibration gate corrects for.

    Args:
        table: From :func:`reliability_table` (empty bins are skipped).
        resamples: Number of draws (>= 1).
        seed: Seed of :func:`numpy.random.default_rng`; equal inputs give equal draws.

    Returns:
        Shape ``(resamples,)``: the ECE of each draw, in [0, 1]; all NaN for a table without rows.

    Raises:
        ValueError: ``resamples < 1``, or a non-empty bin whose mean score is not in [0, 1].
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    counts = np.array([b.n for b in table if b.n], dtype=np.int64)
    means = np.array([b.mean_score for b in table if b.n], dtype=np.float64)
    if counts.size == 0:
        return np.full(resamples, math.nan)
    if not np.all((means >= 0.0) & (means <= 1.0)):
        raise ValueError(f"reliability table has a mean score outside [0, 1]: {means.tolist()}")
    positives = np.random.default_rng(seed).binomial(counts, means, size=(resamples, counts.size))
    return np.abs(positives - counts * means).sum(axis=1) / counts.sum()


def expected_calibration_error(y_true: np.ndarray, scores: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins, weighted by bin count.

    Args:
        y_true: 0/1 labels.
        scores: Scores in [0, 1].
        n_bins: Number of bins.

    Returns:
        The ECE (0 for perfectly calibrated bins).
    """
    return ece_from_table(reliability_table(y_true, scores, n_bins))


def classification_metrics(
    y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5, *, calibration_bins: int = 10
) -> dict[str, Any]:
    """Binary classification metrics of scores against 0/1 labels.

    Args:
        y_true: 0/1 labels (1 = positive class).
        scores: Probability of the positive class, in [0, 1].
        threshold: Scores ``>= threshold`` are predicted positive (for accuracy, f1 and
            ``predicted_positive_rate``).
        calibration_bins: Equal-width bins of the expected calibration error ``ece``.

    Returns:
        ``roc_auc``, ``pr_auc`` (average precision), ``accuracy``, ``f1``, ``log_loss``, ``brier``, ``ece``,
        ``positive_rate`` (share of positive labels), ``predicted_positive_rate``, ``n`` and
        ``n_positive`` (ints). When y_true has a single class, ``roc_auc`` and ``pr_auc`` are NaN and
        ``undefined_reason`` (a string) says why.

    Raises:
        ValueError: empty or mismatched inputs, labels not 0/1, or scores outside [0, 1].
    """
    y, s = _check_inputs(y_true, scores)
    predicted = (s >= threshold).astype(np.int64)
    n_positive = int(y.sum())
    out: dict[str, Any] = {
        "roc_auc": ranking_metric("roc_auc", y, s),
        "pr_auc": ranking_metric("pr_auc", y, s),
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "f1": float(skm.f1_score(y, predicted, zero_division=0.0)),
        # labels= keeps log loss defined on a single-class holdout.
        "log_loss": float(skm.log_loss(y, s, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, s, pos_label=1)),
        "ece": expected_calibration_error(y, s, calibration_bins),
        "positive_rate": n_positive / len(y),
        "predicted_positive_rate": float(predicted.mean()),
        "n": len(y),
        "n_positive": n_positive,
    }
    if n_positive in (0, len(y)):
        only = "positive" if n_positive else "negative"
        out[UNDEFINED_REASON] = (
            f"all {len(y)} rows are {only}: roc_auc and pr_auc need both classes and are undefined (NaN)"
        )
    return out


@dataclass(frozen=True)
class ScoreValidity:
    """How many of a model's holdout scores are unusable as probabilities.

    Attributes:
        n: Scores.
        n_non_finite: NaN or ±inf scores.
        n_out_of_range: Finite scores outside [0, 1].
    """

    n: int
    n_non_finite: int
    n_out_of_range: int

    @property
    def n_invalid(self) -> int:
        return self.n_non_finite + self.n_out_of_range

    @property
    def valid(self) -> bool:
        return self.n_invalid == 0

    @classmethod
    def of(cls, scores: np.ndarray) -> "ScoreValidity":
        """Count the invalid entries of ``scores``."""
        s = np.asarray(scores, dtype=np.float64)
        finite = np.isfinite(s)
        return cls(
            n=len(s),
            n_non_finite=int((~finite).sum()),
            n_out_of_range=int((finite & ((s < 0) | (s > 1))).sum()),
        )

    def reason(self, model: str) -> str:
        """Why this model's metrics are undefined (for ``undefined_reason``)."""
        return (
            f"{self.n_invalid} of {self.n} {model} scores are not probabilities ({self.n_non_finite} non-finite, "
            f"{self.n_out_of_range} outside [0, 1]): its metrics are undefined (NaN)"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ScoreValidity":
        return cls(n=int(data["n"]), n_non_finite=int(data["n_non_finite"]), n_out_of_range=int(data["n_out_of_range"]))


def _undefined_metrics(y: np.ndarray, reason: str) -> dict[str, Any]:
    n_positive = int(y.sum())
    return {
        **dict.fromkeys(METRIC_KEYS, math.nan),
        "positive_rate": n_positive / len(y),
        "predicted_positive_rate": math.nan,
        "n": len(y),
        "n_positive": n_positive,
        UNDEFINED_REASON: reason,
    }


# --------------------------------------------------------------------------------------------------
# Paired bootstrap
# --------------------------------------------------------------------------------------------------


def resampled_ranking_metric(name: str, y_true: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """A ranking metric on many resamples at once, each given as row multiplicities.

    Row ``r`` of ``counts`` says how often each holdout row occurs in resample ``r``; the metric equals
    sklearn's on the rows repeated that often (ties in score handled the same way), but costs a sort once
    and a few passes over ``counts`` instead of one sklearn call per resample.

    Args:
        name: ``roc_auc`` or ``pr_auc``.
        y_true: 0/1 labels, shape ``(n,)``.
        scores: Scores, shape ``(n,)``.
        counts: Non-negative multiplicities, shape ``(resamples, n)``.

    Returns:
        The metric per resample, NaN where the resample lacks a class.
    """
    if name not in HEADLINE_METRICS:
        raise ValueError(f"unknown ranking metric {name!r}; known: {list(HEADLINE_METRICS)}")
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    # Rows with equal scores form one group: a threshold cannot separate them.
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    weights = np.asarray(counts, dtype=np.float64)[:, order]
    positive = weights * y[order]
    pos = np.add.reduceat(positive, starts, axis=1)
    neg = np.add.reduceat(weights - positive, starts, axis=1)
    n_pos = pos.sum(axis=1)
    n_neg = neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if name == "roc_auc":
            # Mann-Whitney: each positive beats the negatives in lower groups and ties half of its own group.
            below = np.cumsum(neg, axis=1) - neg
            value = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
        else:
            # Average precision: precision at each distinct threshold (scores >= group score), weighted by
            # the recall it adds (the group's positives).
            tp = np.cumsum(pos[:, ::-1], axis=1)[:, ::-1]
            fp = np.cumsum(neg[:, ::-1], axis=1)[:, ::-1]
            total = tp + fp
            precision = np.divide(tp, total, out=np.zeros_like(tp), where=total > 0)
            value = (pos * precision).sum(axis=1) / n_pos
    return np.where((n_pos > 0) & (n_neg > 0), value, np.nan)


@dataclass(frozen=True)
class BootstrapInterval:
    """Paired bootstrap percentile interval of (candidate − another model) on the same holdout rows.

    What :func:`bootstrap_difference` returns (:func:`lift_interval` wraps it for PR AUC), and the form of
    (candidate − production) in evaluation records stored before :attr:`Evaluation.production_interval`
    (:attr:`Evaluation.bootstrap`).

    Attributes:
        metric: The headline metric.
        estimate: candidate − the other model on the full holdout (NaN if undefined).
        lower: Lower bound of the two-sided ``confidence_level`` percentile interval.
        upper: Upper bound.
        confidence_level: Of the interval.
        n_resamples: Resamples drawn (``policy.bootstrap_samples``).
        n_valid: Resamples in which both classes occur; the interval is over these.
        n_skipped: Resamples lacking a class; they are skipped, not redrawn (``MISSING_CLASS_RESAMPLES``).
        seed: Seed of the resampling (``policy.random_seed``).
        undefined_reason: Why the interval is undefined, or None.
    """

    metric: str
    estimate: float
    lower: float
    upper: float
    confidence_level: float
    n_resamples: int
    n_valid: int
    n_skipped: int
    seed: int
    undefined_reason: str | None = None

    @property
    def defined(self) -> bool:
        return self.undefined_reason is None and not any(map(math.isnan, (self.estimate, self.lower, self.upper)))

    @classmethod
    def undefined(
        cls, metric: str, confidence_level: float, n_resamples: int, seed: int, reason: str
    ) -> "BootstrapInterval":
        """An interval with NaN estimate and bounds, no valid resample, and the reason."""
        nan = math.nan
        return cls(metric, nan, nan, nan, confidence_level, n_resamples, 0, 0, seed, reason)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "missing_class_resamples": MISSING_CLASS_RESAMPLES}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BootstrapInterval":
        return cls(
            metric=str(data["metric"]),
            estimate=_float(data["estimate"]),
            lower=_float(data["lower"]),
            upper=_float(data["upper"]),
            confidence_level=float(data["confidence_level"]),
            n_resamples=int(data["n_resamples"]),
            n_valid=int(data["n_valid"]),
            n_skipped=int(data["n_skipped"]),
            seed=int(data["seed"]),
            undefined_reason=data.get("undefined_reason"),
        )


def bootstrap_difference(
    name: str,
    y_true: np.ndarray,
    candidate: np.ndarray,
    production: np.ndarray,
    *,
    samples: int,
    confidence_level: float,
    seed: int,
) -> BootstrapInterval:
    """Paired percentile bootstrap of ``metric(candidate) − metric(production)``.

    Each resample draws ``n`` rows with replacement and scores both models on the same rows, so the
    interval reflects the uncertainty of the difference, not of each metric alone.

    Args:
        name: ``roc_auc`` or ``pr_auc``.
        y_true: 0/1 labels.
        candidate: Candidate scores in [0, 1].
        production: Production scores in [0, 1].
        samples: Resamples to draw.
        confidence_level: Of the two-sided interval, in (0, 1).
        seed: Seed of :func:`numpy.random.default_rng`.

    Returns:
        The interval; undefined (NaN bounds, with the reason) when the full holdout has a single class
        or no resample has both classes.
    """
    y, cand = _check_inputs(y_true, candidate)
    _, prod = _check_inputs(y, production)
    estimate = ranking_metric(name, y, cand) - ranking_metric(name, y, prod)
    n = len(y)
    undefined = BootstrapInterval.undefined(name, confidence_level, samples, seed, "")
    if math.isnan(estimate):
        return replace(undefined, undefined_reason=f"the {n}-row holdout has a single class: {name} is undefined")
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // n)
    deltas: list[np.ndarray] = []
    for start in range(0, samples, chunk):
        size = min(chunk, samples - start)
        idx = rng.integers(0, n, size=(size, n))
        # Multiplicities of each row per resample, via one flat bincount (row r's indices offset by r * n).
        counts = np.bincount((idx + (np.arange(size) * n)[:, None]).ravel(), minlength=size * n).reshape(size, n)
        deltas.append(resampled_ranking_metric(name, y, cand, counts) - resampled_ranking_metric(name, y, prod, counts))
    delta = np.concatenate(deltas)
    valid = delta[~np.isnan(delta)]
    n_skipped = samples - len(valid)
    if len(valid) == 0:
        reason = f"none of the {samples} resamples holds both classes"
        return replace(undefined, estimate=estimate, n_skipped=n_skipped, undefined_reason=reason)
    alpha = 1.0 - confidence_level
    lower, upper = np.quantile(valid, [alpha / 2, 1 - alpha / 2])
    return replace(
        undefined,
        estimate=estimate,
        lower=float(lower),
        upper=float(upper),
        n_valid=len(valid),
        n_skipped=n_skipped,
        undefined_reason=None,
    )


@dataclass(frozen=True)
class LiftInterval:
    """Confidence interval of a paired difference of a ranking metric: the candidate's lift over another model.

    Both models are scored on the same holdout rows, so the interval is of a paired difference. Made by
    :func:`lift_interval`; the evaluation records two (:attr:`Evaluation.lift`, candidate − baseline, judged by
    ``beats_baseline``; :attr:`Evaluation.production_interval`, candidate − production, judged by
    ``non_inferior_to_production``).

    Attributes:
        metric: The headline metric.
        estimate: candidate − the other model on the full holdout (NaN if undefined).
        lower: Lower bound of the two-sided ``confidence_level`` interval.
        upper: Upper bound.
        confidence_level: Of the interval.
        method: ``"delong"`` (ROC AUC: DeLong's variance of two correlated AUCs, normal interval),
            ``"paired bootstrap (<valid> of <drawn> resamples, seed <seed>)"`` (PR AUC: :func:`bootstrap_difference`,
            ``policy.bootstrap_samples`` resamples) or ``"none"`` (a model's scores are not probabilities).
        undefined_reason: Why the interval is undefined, or None.
    """

    metric: str
    estimate: float
    lower: float
    upper: float
    confidence_level: float
    method: str
    undefined_reason: str | None = None

    @property
    def defined(self) -> bool:
        return self.undefined_reason is None and not any(map(math.isnan, (self.estimate, self.lower, self.upper)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LiftInterval":
        return cls(
            metric=str(data["metric"]),
            estimate=_float(data["estimate"]),
            lower=_float(data["lower"]),
            upper=_float(data["upper"]),
            confidence_level=float(data["confidence_level"]),
            method=str(data["method"]),
            undefined_reason=data.get("undefined_reason"),
        )


def _delong_components(y: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    # The AUC and its structural components (DeLong et al. 1988) from midranks (Sun & Xu 2014): V10 per positive
    # (the share of negatives it outranks, ties half) and V01 per negative (the share of positives outranking it).
    positive, negative = scores[y == 1], scores[y == 0]
    m, n = len(positive), len(negative)
    overall = stats.rankdata(np.concatenate([positive, negative]))
    v10 = (overall[:m] - stats.rankdata(positive)) / n
    v01 = 1.0 - (overall[m:] - stats.rankdata(negative)) / m
    return float(v10.mean()), v10, v01


def delong_difference(
    y_true: np.ndarray, first: np.ndarray, second: np.ndarray, *, confidence_level: float
) -> tuple[float, float, float]:
    """ROC AUC of ``first`` minus that of ``second`` on the same rows, with DeLong's confidence interval.

    The variance of the difference of two correlated AUCs is DeLong's nonparametric estimate (E. R. DeLong,
    D. M. DeLong, D. L. Clarke-Pearson, "Comparing the areas under two or more correlated receiver operating
    characteristic curves: a nonparametric approach", Biometrics 44(3), 1988), computed from midranks as in X. Sun
    and W. Xu, "Fast implementation of DeLong's algorithm", IEEE Signal Processing Letters 21(11), 2014
    (O(n log n): :func:`scipy.stats.rankdata`); the interval is normal, two-sided.

    Args:
        y_true: 0/1 labels, shape ``(n,)``, both classes present.
        first: Scores of the first model, shape ``(n,)``.
        second: Scores of the second model, shape ``(n,)``.
        confidence_level: Of the two-sided interval, in (0, 1).

    Returns:
        ``(estimate, lower, upper)``; the bounds equal the estimate when the difference has no variance (e.g. two
        identical rankings).

    Raises:
        ValueError: a single class (the AUC is undefined), or shapes that differ.
    """
    y, a = _check_inputs(y_true, first)
    _, b = _check_inputs(y, second)
    if len(np.unique(y)) < 2:
        raise ValueError("delong_difference: the labels hold a single class; the ROC AUC is undefined")
    auc_a, v10_a, v01_a = _delong_components(y, a)
    auc_b, v10_b, v01_b = _delong_components(y, b)
    m, n = len(v10_a), len(v01_a)
    # var(A - B) = var(V10_A - V10_B) / m + var(V01_A - V01_B) / n, with the sample (n - 1) variances.
    spread10 = np.var(v10_a - v10_b, ddof=1) if m > 1 else 0.0
    spread01 = np.var(v01_a - v01_b, ddof=1) if n > 1 else 0.0
    se = math.sqrt(max(spread10 / m + spread01 / n, 0.0))
    z = float(stats.norm.ppf(0.5 + confidence_level / 2))
    estimate = auc_a - auc_b
    return estimate, estimate - z * se, estimate + z * se


def lift_interval(
    name: str,
    y_true: np.ndarray,
    candidate: np.ndarray,
    other: np.ndarray,
    *,
    confidence_level: float,
    samples: int,
    seed: int,
) -> LiftInterval:
    """The confidence interval of the paired difference ``metric(candidate) − metric(other)`` on the same rows.

    The one interval of every paired model comparison: candidate − baseline (``beats_baseline``), candidate −
    production (``non_inferior_to_production``) and a new candidate − the challenger in flight
    (:func:`mlops_assets.ml.promotion.compare_on_holdout`). ROC AUC: :func:`delong_difference` (DeLong et al. 1988,
    O(n log n), no resampling). PR AUC (no DeLong analogue): the paired percentile bootstrap
    :func:`bootstrap_difference` with ``samples`` resamples and ``seed``.

    Args:
        name: ``roc_auc`` or ``pr_auc``.
        y_true: 0/1 labels, shape ``(n,)``.
        candidate: Candidate scores in [0, 1], shape ``(n,)``.
        other: The other model's scores in [0, 1] on the same rows, shape ``(n,)``.
        confidence_level: Of the two-sided interval, in (0, 1).
        samples: Bootstrap resamples (PR AUC only).
        seed: Bootstrap seed (PR AUC only).

    Returns:
        The interval, its ``method`` naming how it was made; undefined (NaN bounds, with the reason) when the
        holdout has a single class.

    Raises:
        ValueError: an unknown metric, labels not 0/1, scores outside [0, 1] or of another length.
    """
    if name not in HEADLINE_METRICS:
        raise ValueError(f"unknown ranking metric {name!r}; known: {list(HEADLINE_METRICS)}")
    y, cand = _check_inputs(y_true, candidate)
    _, base = _check_inputs(y, other)
    nan = math.nan
    if name == "roc_auc":
        if len(np.unique(y)) < 2:
            reason = f"the {len(y)}-row holdout has a single class: {name} is undefined"
            return LiftInterval(name, nan, nan, nan, confidence_level, "delong", reason)
        estimate, lower, upper = delong_difference(y, cand, base, confidence_level=confidence_level)
        return LiftInterval(name, estimate, lower, upper, confidence_level, "delong")
    boot = bootstrap_difference(name, y, cand, base, samples=samples, confidence_level=confidence_level, seed=seed)
    return LiftInterval(
        name, boot.estimate, boot.lower, boot.upper, confidence_level, _bootstrap_method(boot), boot.undefined_reason
    )


def _bootstrap_method(boot: BootstrapInterval) -> str:
    return f"paired bootstrap ({boot.n_valid} of {boot.n_resamples} resamples, seed {boot.seed})"


def interval_method(interval: LiftInterval | BootstrapInterval | None) -> str:
    """How a recorded interval of a paired difference was made, in words.

    Returns:
        ``"DeLong"``, ``"paired bootstrap (<valid> of <drawn> resamples, seed <seed>)"`` (a PR AUC
        :class:`LiftInterval`, or a legacy :class:`BootstrapInterval`), ``"none"`` (no usable scores) or
        ``"no interval"`` (None).
    """
    if interval is None:
        return "no interval"
    if isinstance(interval, BootstrapInterval):
        return _bootstrap_method(interval)
    return "DeLong" if interval.method == "delong" else interval.method


# --------------------------------------------------------------------------------------------------
# Groups: slices and fairness
# --------------------------------------------------------------------------------------------------


def value_groups(column: pd.Series) -> list[tuple[str | None, np.ndarray]]:
    """The rows of each value of ``column`` as boolean masks.

    Values are compared as text; missing values form the group ``None``. Most frequent first, ties by
    value (missing last), so tables are deterministic; beyond :data:`MAX_SLICE_VALUES` values the tail is
    pooled into ``"__other__"``.

    Args:
        column: A column of the holdout.

    Returns:
        ``(value, mask)`` pairs.
    """
    missing = column.isna().to_numpy()
    text = np.where(missing, "", column.astype(object).astype(str).to_numpy())
    counts = Counter(None if m else str(t) for t, m in zip(text, missing, strict=True))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
    groups: list[tuple[str | None, np.ndarray]] = [
        (key, missing if key is None else (text == key) & ~missing) for key, _ in ranked[:MAX_SLICE_VALUES]
    ]
    if len(ranked) > MAX_SLICE_VALUES:
        tail = ~np.logical_or.reduce([mask for _, mask in groups])
        groups.append((OTHER_CATEGORY, tail))
    return groups


def slice_floor(column: str, value: str | None, gates: ModelGatePolicy) -> float:
    """The headline-metric floor of slice ``column == value``: its ``slice_floors`` entry, else the general one."""
    return next(
        (f.min_metric for f in gates.slice_floors if f.column == column and f.value == value),
        gates.slice_metric_floor,
    )


def slice_not_gated_reason(n: int, n_positive: int, gates: ModelGatePolicy) -> str | None:
    """Why a slice of ``n`` rows (``n_positive`` positive) is not gated under ``gates``; None when it is."""
    if n < gates.min_slice_size:
        return f"{n} rows < min_slice_size {gates.min_slice_size}"
    if n_positive in (0, n):
        return f"all {n} rows are {'positive' if n_positive else 'negative'}: the metric needs both classes"
    return None


def _slice_table(
    holdout: pd.DataFrame,
    columns: Sequence[str],
    metric: str,
    gates: ModelGatePolicy,
    y: np.ndarray,
    candidate: np.ndarray | None,
    production: np.ndarray | None,
) -> tuple[dict[str, Any], ...]:
    # candidate/production are None when there is no such model or its scores are invalid (metric NaN).
    rows: list[dict[str, Any]] = []
    for column in columns:
        for value, mask in value_groups(holdout[column]):
            n = int(mask.sum())
            n_pos = int(y[mask].sum())
            cand = ranking_metric(metric, y[mask], candidate[mask]) if candidate is not None and n else math.nan
            prod = ranking_metric(metric, y[mask], production[mask]) if production is not None and n else math.nan
            reason = slice_not_gated_reason(n, n_pos, gates)
            rows.append(
                {
                    "slice_column": column,
                    "value": value,
                    "n": n,
                    "n_positive": n_pos,
                    "positive_rate": n_pos / n if n else math.nan,
                    "metric": metric,
                    "candidate": cand,
                    "production": prod,
                    "delta": cand - prod,
                    "gated": reason is None,
                    "not_gated_reason": reason,
                    "floor": slice_floor(column, value, gates),
                }
            )
    return tuple(rows)


_SLICE_FLOATS = ("positive_rate", "candidate", "production", "delta")


@dataclass(frozen=True)
class GroupRates:
    """The candidate's rates on one group of a protected attribute, at the decision threshold.

    Attributes:
        group: The attribute's value (None: missing).
        n: Rows.
        n_positive: Positive rows.
        positive_rate: Share of positive rows.
        predicted_positive_rate: Share of rows predicted positive (selection rate).
        tpr: True positive rate (NaN without positive rows).
        fpr: False positive rate (NaN without negative rows).
    """

    group: str | None
    n: int
    n_positive: int
    positive_rate: float
    predicted_positive_rate: float
    tpr: float
    fpr: float

    @classmethod
    def of(cls, group: str | None, y_true: np.ndarray, predicted: np.ndarray) -> "GroupRates":
        """Rates of one group from its labels and 0/1 predictions."""
        tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y_true, predicted, labels=[0, 1]).ravel())
        n = tn + fp + fn + tp
        return cls(
            group=group,
            n=n,
            n_positive=tp + fn,
            positive_rate=(tp + fn) / n if n else math.nan,
            predicted_positive_rate=(tp + fp) / n if n else math.nan,
            tpr=tp / (tp + fn) if tp + fn else math.nan,
            fpr=fp / (fp + tn) if fp + tn else math.nan,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GroupRates":
        return cls(
            group=data["group"],
            n=int(data["n"]),
            n_positive=int(data["n_positive"]),
            positive_rate=_float(data["positive_rate"]),
            predicted_positive_rate=_float(data["predicted_positive_rate"]),
            tpr=_float(data["tpr"]),
            fpr=_float(data["fpr"]),
        )


def _gap(values: Sequence[float]) -> float:
    return max(values) - min(values)


@dataclass(frozen=True)
class FairnessReport:
    """Group fairness of the candidate on one protected attribute.

    Attributes:
        attribute: The protected column.
        min_group_size: Groups with fewer rows are listed but not counted in the gaps.
        groups: Rates of every group.
        counted: The groups counted.
        small_groups: The groups listed but not counted.
        demographic_parity_difference: Largest minus smallest predicted positive rate over counted groups.
        demographic_parity_ratio: Smallest over largest such rate (1 when all are 0: the rates are equal).
        tpr_difference: Largest minus smallest TPR over counted groups.
        fpr_difference: Largest minus smallest FPR over counted groups.
        equalized_odds_difference: ``max(tpr_difference, fpr_difference)``.
        undefined_reason: Why some value is undefined (NaN), or None.
    """

    attribute: str
    min_group_size: int
    groups: tuple[GroupRates, ...]
    counted: tuple[str | None, ...]
    small_groups: tuple[str | None, ...]
    demographic_parity_difference: float
    demographic_parity_ratio: float
    tpr_difference: float
    fpr_difference: float
    equalized_odds_difference: float
    undefined_reason: str | None = None

    @classmethod
    def from_groups(cls, attribute: str, groups: Sequence[GroupRates], min_group_size: int) -> "FairnessReport":
        """Summarise group rates: the gaps over the groups with at least ``min_group_size`` rows.

        Args:
            attribute: The protected column.
            groups: Rates per group.
            min_group_size: Smallest group counted.

        Returns:
            The report; with fewer than two counted groups there is nothing to compare, so every gap is
            NaN with the reason. A counted group without positive (negative) rows makes the TPR (FPR) gap,
            and so the equalized-odds difference, undefined. Both are too little data
            (:attr:`insufficient_data_reason`), which the gate records as such, not as a violation.
        """
        counted = [g for g in groups if g.n >= min_group_size]
        small = tuple(g.group for g in groups if g.n < min_group_size)
        nan = math.nan
        dp_diff = dp_ratio = tpr_gap = fpr_gap = nan
        reasons: list[str] = []
        if len(counted) < 2:
            reasons.append(
                f"{len(counted)} group(s) of {attribute!r} have >= min_group_size {min_group_size} rows: "
                "at least two are needed to compare"
            )
        else:
            rates = [g.predicted_positive_rate for g in counted]
            dp_diff = _gap(rates)
            dp_ratio = min(rates) / max(rates) if max(rates) > 0 else 1.0
            no_pos = [g.group for g in counted if math.isnan(g.tpr)]
            no_neg = [g.group for g in counted if math.isnan(g.fpr)]
            if no_pos:
                reasons.append(f"groups {no_pos} of {attribute!r} have no positive rows: TPR undefined")
            else:
                tpr_gap = _gap([g.tpr for g in counted])
            if no_neg:
                reasons.append(f"groups {no_neg} of {attribute!r} have no negative rows: FPR undefined")
            else:
                fpr_gap = _gap([g.fpr for g in counted])
        return cls(
            attribute=attribute,
            min_group_size=min_group_size,
            groups=tuple(groups),
            counted=tuple(g.group for g in counted),
            small_groups=small,
            demographic_parity_difference=dp_diff,
            demographic_parity_ratio=dp_ratio,
            tpr_difference=tpr_gap,
            fpr_difference=fpr_gap,
            # NaN propagates through max(), so either undefined gap makes the difference undefined.
            equalized_odds_difference=nan if math.isnan(tpr_gap) or math.isnan(fpr_gap) else max(tpr_gap, fpr_gap),
            undefined_reason="; ".join(reasons) or None,
        )

    @property
    def insufficient_data_reason(self) -> str | None:
        """Why too few rows leave a gap unmeasurable, or None when there are enough.

        Fewer than two groups with at least ``min_group_size`` rows leave every gap undefined; a counted
        group without positive (negative) rows leaves the TPR (FPR) gap, and so the equalized odds
        difference, undefined. A report without group rates (the candidate's scores were not
        probabilities, :meth:`undefined`) is not short of data: None, and the gate fails closed on it.
        """
        if not self.groups:
            return None
        counted = [g for g in self.groups if g.n >= self.min_group_size]
        if len(counted) < 2:
            sizes = ", ".join(f"{g.group}: {g.n}" for g in self.groups)
            return (
                f"{len(counted)} group(s) of {self.attribute!r} have >= min_group_size {self.min_group_size} "
                f"holdout rows ({sizes}); at least two are needed to compare"
            )
        reasons = []
        no_pos = [g.group for g in counted if g.n_positive == 0]
        no_neg = [g.group for g in counted if g.n_positive == g.n]
        if no_pos:
            reasons.append(f"groups {no_pos} of {self.attribute!r} have no positive rows: TPR gap unmeasurable")
        if no_neg:
            reasons.append(f"groups {no_neg} of {self.attribute!r} have no negative rows: FPR gap unmeasurable")
        return "; ".join(reasons) or None

    @classmethod
    def undefined(cls, attribute: str, min_group_size: int, reason: str) -> "FairnessReport":
        """A report with no groups (e.g. the candidate's scores are not probabilities)."""
        nan = math.nan
        return cls(attribute, min_group_size, (), (), (), nan, nan, nan, nan, nan, reason)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "groups": [g.to_dict() for g in self.groups]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FairnessReport":
        return cls(
            attribute=str(data["attribute"]),
            min_group_size=int(data["min_group_size"]),
            groups=tuple(GroupRates.from_dict(g) for g in data["groups"]),
            counted=tuple(data["counted"]),
            small_groups=tuple(data["small_groups"]),
            demographic_parity_difference=_float(data["demographic_parity_difference"]),
            demographic_parity_ratio=_float(data["demographic_parity_ratio"]),
            tpr_difference=_float(data["tpr_difference"]),
            fpr_difference=_float(data["fpr_difference"]),
            equalized_odds_difference=_float(data["equalized_odds_difference"]),
            undefined_reason=data.get("undefined_reason"),
        )


def fairness_report(
    attribute: str, column: pd.Series, y_true: np.ndarray, predicted: np.ndarray, min_group_size: int
) -> FairnessReport:
    """Group rates and gaps of 0/1 predictions on one protected attribute.

    Args:
        attribute: The protected column's name.
        column: Its values on the holdout rows.
        y_true: 0/1 labels.
        predicted: 0/1 predictions at the decision threshold.
        min_group_size: Smallest group counted in the gaps.

    Returns:
        The report.
    """
    groups = [GroupRates.of(value, y_true[mask], predicted[mask]) for value, mask in value_groups(column)]
    return FairnessReport.from_groups(attribute, groups, min_group_size)


# --------------------------------------------------------------------------------------------------
# The evaluation record
# --------------------------------------------------------------------------------------------------


def _float(value: Any) -> float:
    # JSON has no NaN: None stood for an undefined (NaN) value.
    return math.nan if value is None else float(value)


def json_safe(value: Any) -> Any:
    """``value`` as JSON data: mappings and sequences as dicts and lists, numpy scalars as Python ones,
    NaN and ±inf as None (JSON has neither)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _metrics_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (math.nan if v is None else v) for k, v in data.items()}


@dataclass(frozen=True)
class HoldoutScores:
    """The paired holdout labels and scores behind an :class:`Evaluation` (kept for resampling; not part
    of :meth:`Evaluation.to_dict`)."""

    y_true: np.ndarray
    candidate: np.ndarray
    baseline: np.ndarray
    production: np.ndarray | None


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Candidate, baseline and (if any) production measured on one holdout, plus what the gates need.

    Two evaluations are equal when their :meth:`to_dict` forms are equal: NaN equals NaN there, and the
    raw ``scores`` are ignored, so ``Evaluation.from_dict(ev.to_dict()) == ev``.

    Attributes:
        n_holdout: Number of holdout rows scored.
        headline_metric: The metric the model gates compare (``policy.headline_metric``).
        candidate: Candidate metrics (see :func:`classification_metrics`; all NaN with an
            ``undefined_reason`` when its scores are not probabilities).
        baseline: Baseline metrics.
        production: Production model metrics, or None when nothing is in production.
        slices: Per slice column and value: ``slice_column``, ``value`` (str, None for missing,
            ``"__other__"`` for a pooled tail), ``n``, ``n_positive``, ``positive_rate``, ``metric`` (the
            headline metric's name), ``candidate`` and ``production`` (its value, NaN if undefined or no
            production), ``delta`` (candidate − production), ``gated``, ``not_gated_reason`` and ``floor``.
        threshold: Decision threshold (``policy.decision_threshold``) of accuracy, f1, predicted positive
            rates and the fairness rates.
        reliability: Model (``candidate``, ``production``) → reliability table; a model is absent when
            it does not exist or its scores are not probabilities.
        fairness: One report per protected attribute, in spec order.
        bootstrap: Legacy: the paired bootstrap interval of (candidate − production) of records stored before
            :attr:`production_interval` (read back so that ``non_inferior_to_production`` judges them as it did);
            :func:`evaluate` leaves it None.
        lift: Confidence interval of (candidate − baseline) (:func:`lift_interval`; ``beats_baseline`` judges its
            lower bound); None in records stored before it (the gate then fails closed).
        production_interval: Confidence interval of (candidate − production) (:func:`lift_interval`: DeLong for ROC
            AUC, the paired bootstrap for PR AUC; ``non_inferior_to_production`` judges its lower bound); None
            without production and in records stored before it (see :attr:`bootstrap`).
        predictions: Model → counts of invalid scores.
        latency: Scoring latency of the stored candidate artifact, None when not measured.
        policy: The effective policy (:meth:`Policy.to_dict`, by section) the evaluation was measured under;
            records stored before the policy had sections hold it flat, and both read back (:meth:`effective_policy`).
        scores: The holdout labels and scores (None when rebuilt from a dict).
    """

    n_holdout: int
    headline_metric: str
    candidate: dict[str, Any]
    baseline: dict[str, Any]
    production: dict[str, Any] | None
    slices: tuple[dict[str, Any], ...] = ()
    threshold: float = 0.5
    reliability: Mapping[str, tuple[ReliabilityBin, ...]] = field(default_factory=dict)
    fairness: tuple[FairnessReport, ...] = ()
    bootstrap: BootstrapInterval | None = None
    predictions: Mapping[str, ScoreValidity] = field(default_factory=dict)
    latency: LatencyReport | None = None
    policy: Mapping[str, Any] = field(default_factory=dict)
    scores: HoldoutScores | None = field(default=None, repr=False)
    lift: LiftInterval | None = None
    production_interval: LiftInterval | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Evaluation):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # holds dicts; equality is by value

    @property
    def candidate_headline(self) -> float:
        """Candidate headline metric (NaN if undefined)."""
        return float(self.candidate[self.headline_metric])

    @property
    def baseline_headline(self) -> float:
        """Baseline headline metric (NaN if undefined)."""
        return float(self.baseline[self.headline_metric])

    @property
    def production_headline(self) -> float | None:
        """Production headline metric, None when there is no production model."""
        return None if self.production is None else float(self.production[self.headline_metric])

    @property
    def vs_production(self) -> LiftInterval | BootstrapInterval | None:
        """The recorded interval of (candidate − production): :attr:`production_interval`, else the legacy
        :attr:`bootstrap` of a record stored before it; None when neither is recorded."""
        return self.production_interval if self.production_interval is not None else self.bootstrap

    def effective_policy(self) -> Policy | None:
        """The policy recorded with the evaluation, None when none was recorded."""
        return policy_from_dict(self.policy, "evaluation record") if self.policy else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe plain data (NaN becomes None); the scores are not included."""
        return json_safe(
            {
                "n_holdout": self.n_holdout,
                "headline_metric": self.headline_metric,
                "threshold": self.threshold,
                "candidate": self.candidate,
                "baseline": self.baseline,
                "production": self.production,
                "reliability": {k: [b.to_dict() for b in table] for k, table in self.reliability.items()},
                "slices": list(self.slices),
                "fairness": [f.to_dict() for f in self.fairness],
                "lift": None if self.lift is None else self.lift.to_dict(),
                "production_interval": None if self.production_interval is None else self.production_interval.to_dict(),
                # Legacy records only: kept so that a stored record reads back and is judged as it was.
                **({} if self.bootstrap is None else {"bootstrap": self.bootstrap.to_dict()}),
                "predictions": {k: v.to_dict() for k, v in self.predictions.items()},
                "latency": None if self.latency is None else self.latency.to_dict(),
                "policy": dict(self.policy),
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Evaluation":
        """Rebuild an evaluation from :meth:`to_dict` output (None metric values become NaN).

        Keys added after the first version (reliability, fairness, bootstrap, predictions, latency,
        policy, lift, production_interval) may be absent, as in records stored before them; ``bootstrap`` is absent
        from records stored after ``production_interval`` replaced it.
        """
        production = data.get("production")
        bootstrap = data.get("bootstrap")
        lift = data.get("lift")
        vs_production = data.get("production_interval")
        latency = data.get("latency")
        return cls(
            n_holdout=int(data["n_holdout"]),
            headline_metric=str(data["headline_metric"]),
            candidate=_metrics_from_json(data["candidate"]),
            baseline=_metrics_from_json(data["baseline"]),
            production=None if production is None else _metrics_from_json(production),
            slices=tuple({**row, **{k: _float(row.get(k)) for k in _SLICE_FLOATS}} for row in data.get("slices", [])),
            threshold=float(data.get("threshold", 0.5)),
            reliability={
                k: tuple(ReliabilityBin.from_dict(b) for b in table)
                for k, table in (data.get("reliability") or {}).items()
            },
            fairness=tuple(FairnessReport.from_dict(f) for f in data.get("fairness") or ()),
            bootstrap=None if bootstrap is None else BootstrapInterval.from_dict(bootstrap),
            predictions={k: ScoreValidity.from_dict(v) for k, v in (data.get("predictions") or {}).items()},
            latency=None if latency is None else LatencyReport.from_dict(latency),
            policy=dict(data.get("policy") or {}),
            lift=None if lift is None else LiftInterval.from_dict(lift),
            production_interval=None if vs_production is None else LiftInterval.from_dict(vs_production),
        )


def evaluate(
    features_df: pd.DataFrame,
    spec: DatasetSpec,
    candidate_pipeline: Pipeline,
    baseline_pipeline: Pipeline,
    production_pipeline: Pipeline | None = None,
    *,
    policy: Policy | None = None,
    latency: LatencyReport | None = None,
) -> Evaluation:
    """Score candidate, baseline and production on the same holdout rows and measure what the gates need.

    Args:
        features_df: A features frame from :func:`~mlops_assets.ml.features.build_features`.
        spec: The dataset spec (slices, protected attributes).
        candidate_pipeline: The fitted candidate.
        baseline_pipeline: The fitted baseline.
        production_pipeline: The model in production, or None on a first run.
        policy: The effective policy; defaults to ``spec.policy``. Its headline metric, decision
            threshold, calibration bins, slice and group sizes, confidence level, bootstrap settings (PR AUC
            intervals) and seed are used here.
        latency: The candidate artifact's latency (:func:`~mlops_assets.ml.latency.measure_latency`),
            recorded as is; None when not measured (the latency gate then fails).

    Returns:
        The evaluation (deterministic for given inputs and seed, apart from ``latency``).

    Raises:
        ValueError: the frame has no holdout rows or lacks the label/split columns.
    """
    policy = spec.policy if policy is None else policy
    settings, gates = policy.evaluation, policy.gates
    for column in (SPLIT_COLUMN, LABEL_COLUMN):
        if column not in features_df.columns:
            raise ValueError(f"features frame lacks {column!r}; build it with build_features()")
    holdout = features_df[features_df[SPLIT_COLUMN] == HOLDOUT].reset_index(drop=True)
    if len(holdout) == 0:
        raise ValueError(f"no holdout rows to evaluate on for spec {spec.name!r}")
    y = holdout[LABEL_COLUMN].to_numpy(dtype=np.int64)
    scores: dict[str, np.ndarray] = {
        "candidate": predict_scores(candidate_pipeline, holdout, spec),
        "baseline": predict_scores(baseline_pipeline, holdout, spec),
    }
    if production_pipeline is not None:
        scores["production"] = predict_scores(production_pipeline, holdout, spec)
    validity = {model: ScoreValidity.of(s) for model, s in scores.items()}
    # Only scores that are probabilities are measured; a model with any other score gets NaN metrics with
    # the reason, so every gate that reads them fails closed (and predictions_valid names the count).
    usable = {model: s for model, s in scores.items() if validity[model].valid}
    metrics = {
        model: (
            classification_metrics(
                y, usable[model], settings.decision_threshold, calibration_bins=settings.calibration_bins
            )
            if model in usable
            else _undefined_metrics(y, validity[model].reason(model))
        )
        for model in scores
    }
    cand, prod = usable.get("candidate"), usable.get("production")
    if cand is None:
        fairness = tuple(
            FairnessReport.undefined(a, gates.min_group_size, validity["candidate"].reason("candidate"))
            for a in spec.protected
        )
    else:
        predicted = (cand >= settings.decision_threshold).astype(np.int64)
        fairness = tuple(fairness_report(a, holdout[a], y, predicted, gates.min_group_size) for a in spec.protected)

    def interval_vs(other: str) -> LiftInterval:
        # candidate − other on the holdout; undefined with the reason when either's scores are not probabilities.
        first, second = usable.get("candidate"), usable.get(other)
        if first is None or second is None:
            reason = "; ".join(validity[m].reason(m) for m in ("candidate", other) if not validity[m].valid)
            nan = math.nan
            return LiftInterval(settings.headline_metric, nan, nan, nan, settings.confidence_level, "none", reason)
        return lift_interval(
            settings.headline_metric,
            y,
            first,
            second,
            confidence_level=settings.confidence_level,
            samples=settings.bootstrap_samples,
            seed=settings.random_seed,
        )

    return Evaluation(
        n_holdout=len(holdout),
        headline_metric=settings.headline_metric,
        candidate=metrics["candidate"],
        baseline=metrics["baseline"],
        production=metrics.get("production"),
        slices=_slice_table(holdout, spec.slices, settings.headline_metric, gates, y, cand, prod),
        threshold=settings.decision_threshold,
        reliability={
            model: reliability_table(y, usable[model], settings.calibration_bins)
            for model in ("candidate", "production")
            if model in usable
        },
        fairness=fairness,
        predictions=validity,
        latency=latency,
        policy=policy.to_dict(),
        lift=interval_vs("baseline"),
        production_interval=interval_vs("production") if production_pipeline is not None else None,
        scores=HoldoutScores(
            y_true=y, candidate=scores["candidate"], baseline=scores["baseline"], production=scores.get("production")
        ),
    )


# --------------------------------------------------------------------------------------------------
# The model_evaluation outcome: record and metadata of one candidate version
# --------------------------------------------------------------------------------------------------

#: Keys of :attr:`EvaluationOutcome.tables`, in the order they follow the plain metadata.
EVALUATION_TABLES: tuple[str, ...] = (
    "comparison",
    "slices",
    "fairness_gaps",
    "fairness_groups",
)
#: Rows of the comparison table: the metrics of :func:`classification_metrics` that differ between models.
COMPARED_METRICS: tuple[str, ...] = (*METRIC_KEYS, "predicted_positive_rate")


def numeric_metrics(prefix: str, metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """The finite numbers of a metrics record as ``{<prefix>_<metric>: float}`` (booleans, text, None, NaN left out)."""
    if not metrics:
        return {}
    return {
        f"{prefix}_{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


@dataclass(frozen=True)
class OutcomeTable:
    """One table of an evaluation's metadata.

    Attributes:
        rows: One dict per row (JSON data: NaN as None).
        columns: The columns in display order, the important ones first (every key of the rows).
        descriptions: Column → what it holds, with the direction that passes where a gate decides on it.
    """

    rows: list[dict[str, Any]]
    columns: tuple[str, ...]
    descriptions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationOutcome:
    """What ``model_evaluation`` stores and shows for one candidate version.

    Attributes:
        result: The evaluation (its scores and reliability tables feed the plots).
        record: The stored value: :meth:`Evaluation.to_dict` plus ``model_name``, ``model_version``,
            ``artifact_sha256`` (the identity the gates judge) and ``production_version`` (None without one).
        metadata: Plain metadata values, in display order: the identity (``model``, ``model_version``,
            ``artifact_sha256``, ``production_model``, ``production_version`` — None without production, the caller
            writes a typed null —, ``headline_metric``, ``holdout_rows``), the few headline figures as floats
            (:func:`headline_figures`) and ``policy``, the effective policy (the caller writes it as JSON).
        tables: The tables that follow, keyed by :data:`EVALUATION_TABLES` (only the non-empty ones).
    """

    result: Evaluation
    record: dict[str, Any]
    metadata: dict[str, Any]
    tables: dict[str, OutcomeTable]


def headline_figures(record: Mapping[str, Any]) -> dict[str, float]:
    """The handful of figures of an evaluation record worth plotting across data versions, as finite floats.

    Returns:
        ``<model>_<headline metric>`` for candidate, baseline and production, ``diff_vs_production`` (candidate −
        production on the holdout) and ``diff_vs_production_lower`` (the lower bound of its interval — DeLong for ROC
        AUC, the paired bootstrap for PR AUC and in records stored before ``production_interval`` —, which
        ``non_inferior_to_production`` gates) when the interval is defined,
        ``lift_vs_baseline_lower`` (the lower bound of the interval of candidate − baseline that ``beats_baseline``
        gates), ``candidate_ece`` and ``latency_single_p99_ms`` (thread CPU time, ms, 3 decimals). An undefined (NaN)
        figure is left out.
    """
    metric = str(record["headline_metric"])
    figures: dict[str, float] = {}
    for model in MODELS:
        figures.update(numeric_metrics(model, {metric: (record.get(model) or {}).get(metric)}))
    vs_production = record.get("production_interval") or record.get("bootstrap") or {}
    if vs_production.get("lower") is not None and vs_production.get("estimate") is not None:
        figures["diff_vs_production"] = float(vs_production["estimate"])
        figures["diff_vs_production_lower"] = float(vs_production["lower"])
    lift = record.get("lift") or {}
    if lift.get("lower") is not None:  # the lift itself is candidate − baseline, two figures above
        figures["lift_vs_baseline_lower"] = float(lift["lower"])
    figures.update(numeric_metrics("candidate", {"ece": (record.get("candidate") or {}).get("ece")}))
    latency = record.get("latency") or {}
    if latency.get("single_p99_ms") is not None:
        figures["latency_single_p99_ms"] = round(float(latency["single_p99_ms"]), 3)
    return figures


def _g(value: float) -> str:
    return f"{value:g}"


def _metric_rules(metric: str, headline: str, policy: Policy | None) -> str | None:
    """The policy's thresholds on ``metric``, short (``"≥ 0.6 (metric_floor); ..."``), None without any."""
    if policy is None:
        return None
    gates = policy.gates
    rules: list[str] = []
    if metric == headline:
        lift = ">" if gates.min_lift_over_baseline == 0 else "≥"
        rules += [
            f"≥ {_g(gates.metric_floor)} (metric_floor)",
            f"candidate − baseline {lift} {_g(gates.min_lift_over_baseline)}",
            f"ci_low ≥ −{_g(gates.non_inferiority_margin)}",
        ]
    if metric == "ece":
        rules.append(f"debiased ≤ {_g(gates.max_ece)} (max_ece)")
    for t in gates.thresholds:
        if t.metric != metric:
            continue
        if t.min_value is not None:
            rules.append(f"≥ {_g(t.min_value)}")
        if t.max_value is not None:
            rules.append(f"≤ {_g(t.max_value)}")
        if t.max_regression_absolute is not None:
            rules.append(f"regression ≤ {_g(t.max_regression_absolute)}")
        if t.max_regression_relative is not None:
            rules.append(f"regression ≤ {_g(t.max_regression_relative)} × |production|")
    return "; ".join(rules) or None


def _latency_rows(latency: LatencyReport, policy: Policy | None) -> list[dict[str, Any]]:
    """The candidate artifact's gated latency and its throughput as comparison rows (candidate only)."""
    gates = policy.gates if policy is not None else None
    single = None if gates is None else f"≤ {_g(gates.max_latency_p99_ms_single)} (max_latency_p99_ms_single)"
    batch = None if gates is None else f"≤ {_g(gates.max_latency_p99_ms_batch)} (max_latency_p99_ms_batch)"
    return [
        {"metric": "latency_p99_1row_ms", "better": "lower", "candidate": latency.single_p99_ms, "policy": single},
        {"metric": "latency_p99_batch_ms", "better": "lower", "candidate": latency.batch_p99_ms, "policy": batch},
        {"metric": "throughput_rows_per_s", "better": "higher", "candidate": latency.throughput_rows_per_s},
    ]


def _comparison_table(result: Evaluation, latency: LatencyReport, policy: Policy | None) -> OutcomeTable:
    """One row per metric of :data:`COMPARED_METRICS`: the direction that is better, candidate, production, their
    difference, baseline, the interval of the difference (headline metric: :attr:`Evaluation.vs_production`) and the
    policy's thresholds; then the candidate artifact's latency and throughput. The UI shows a table's first columns:
    those lead."""
    production = result.production
    recorded = result.vs_production
    interval = recorded if recorded is not None and recorded.defined else None
    rows: list[dict[str, Any]] = []
    for metric in COMPARED_METRICS:
        higher = METRIC_DIRECTIONS.get(metric)
        cand = _float(result.candidate.get(metric))
        prod = None if production is None else _float(production.get(metric))
        headline = interval is not None and metric == result.headline_metric
        rows.append(
            {
                "metric": metric,
                "better": None if higher is None else "higher" if higher else "lower",
                "candidate": cand,
                "production": prod,
                "delta": None if prod is None else cand - prod,
                "baseline": _float(result.baseline.get(metric)),
                "ci_low": interval.lower if headline and interval else None,
                "ci_high": interval.upper if headline and interval else None,
                "policy": _metric_rules(metric, result.headline_metric, policy),
            }
        )
    rows += _latency_rows(latency, policy)
    level = f"{recorded.confidence_level * 100:g}% " if recorded is not None else ""
    return OutcomeTable(
        rows=json_safe(rows),
        columns=tuple(rows[0]),
        descriptions={
            "better": "higher is better, or lower is better",
            "candidate": f"on the {result.n_holdout} holdout rows; latency: thread CPU time of the stored artifact, "
            f"batches of {latency.batch_size} rows",
            "production": "the model in production on the same rows (empty without one)",
            "delta": "candidate − production",
            "ci_low": f"{level}interval of candidate − production (headline metric; {interval_method(recorded)})",
            "policy": "the gates' thresholds (each must hold; ci_low: non_inferiority_margin)",
        },
    )


def _slice_rows(record: Mapping[str, Any], gates: ModelGatePolicy | None) -> OutcomeTable:
    metric = record["headline_metric"]
    rows = [
        {
            "slice": f"{s['slice_column']}={'(missing)' if s['value'] is None else s['value']}",
            "rows": s["n"],
            "candidate": s["candidate"],
            "production": s["production"],
            "delta": s["delta"],
            "floor": s["floor"],
            "gated": "yes" if s["gated"] else f"no: {s['not_gated_reason']}",
        }
        for s in record["slices"]
    ]
    regression = "policy.max_slice_regression" if gates is None else f"{_g(gates.max_slice_regression)}"
    return OutcomeTable(
        rows=rows,
        columns=tuple(rows[0]),
        descriptions={
            "candidate": f"{metric}; a gated slice passes when ≥ floor",
            "delta": f"candidate − production; a gated slice passes when ≥ −{regression}",
            "gated": "judged by slices_meet_floor (enough rows, both classes), else why not",
        },
    )


def _fairness_tables(record: Mapping[str, Any], gates: ModelGatePolicy | None) -> dict[str, OutcomeTable]:
    reports = record["fairness"]
    groups = [
        {
            "attribute": f["attribute"],
            "group": "(missing)" if g["group"] is None else g["group"],
            "rows": g["n"],
            "selection_rate": g["predicted_positive_rate"],
            "tpr": g["tpr"],
            "fpr": g["fpr"],
            "counted": g["group"] in f["counted"],
        }
        for f in reports
        for g in f["groups"]
    ]
    if not groups:
        return {}
    gaps = [
        {
            "attribute": f["attribute"],
            "dp_difference": f["demographic_parity_difference"],
            "dp_ratio": f["demographic_parity_ratio"],
            "eo_difference": f["equalized_odds_difference"],
            "groups_counted": len(f["counted"]),
            "undefined_reason": f.get("undefined_reason"),
        }
        for f in reports
    ]

    def bound(op: str, name: str) -> str:
        return f"passes when {op} {_g(getattr(gates, name))} ({name})" if gates is not None else f"see policy.{name}"

    return {
        "fairness_gaps": OutcomeTable(
            rows=gaps,
            columns=tuple(gaps[0]),
            descriptions={
                "dp_difference": "demographic parity difference (largest − smallest selection rate); "
                + bound("≤", "max_demographic_parity_difference"),
                "dp_ratio": "demographic parity ratio (smallest / largest selection rate); "
                + bound("≥", "min_demographic_parity_ratio"),
                "eo_difference": "equalized odds difference (max of the TPR and FPR gaps); "
                + bound("≤", "max_equalized_odds_difference"),
                "groups_counted": "groups of at least min_group_size rows (the gaps are over these)",
            },
        ),
        "fairness_groups": OutcomeTable(
            rows=groups,
            columns=tuple(groups[0]),
            descriptions={
                "selection_rate": "share predicted positive at the decision threshold",
                "counted": "at least min_group_size rows: counts in the gaps",
            },
        ),
    }


def evaluation_outcome(
    result: Evaluation,
    *,
    model_name: str,
    model_version: int,
    artifact_sha256: str,
    production_version: int | None,
) -> EvaluationOutcome:
    """The record and metadata of an evaluation of ``model_name`` version ``model_version``.

    Args:
        result: From :func:`evaluate`, with its ``latency`` measured.
        model_name: Registered model name.
        model_version: The candidate's registry version (recorded as given, shown as an int).
        artifact_sha256: Digest of the candidate artifact the gates judge.
        production_version: The version in production the candidate was compared with, None without one
            (promotion refuses when production moved since this comparison).

    Returns:
        The outcome: its metadata holds the identity, :func:`headline_figures` and the policy; its tables
        (:class:`OutcomeTable`) every other figure: ``comparison`` (one row per metric of
        :data:`COMPARED_METRICS`, then the candidate's latency and throughput), ``slices``, ``fairness_gaps`` and
        ``fairness_groups``, each present when it has rows. Wall-clock latency figures are in the record only (and in
        the latency gate's evidence); the reliability bins are drawn by the wiring's reliability diagram and listed
        with the calibration gate's verdict (its ``reliability`` evidence).

    Raises:
        ValueError: ``result.latency`` is None.
    """
    latency = result.latency
    if latency is None:
        raise ValueError("the evaluation has no latency: measure it (measure_latency) before recording")
    record = result.to_dict()
    record["model_name"] = model_name
    record["model_version"] = model_version
    record["artifact_sha256"] = artifact_sha256
    record["production_version"] = production_version
    policy = result.effective_policy()
    gates = policy.gates if policy is not None else None
    metadata: dict[str, Any] = {
        "model": f"{model_name} v{model_version}",
        "model_version": int(model_version),
        "artifact_sha256": artifact_sha256,
        "production_model": f"{model_name} v{production_version}" if production_version is not None else "none",
        "production_version": production_version,
        "headline_metric": result.headline_metric,
        "holdout_rows": result.n_holdout,
        **headline_figures(record),
        "policy": record["policy"],
    }
    tables: dict[str, OutcomeTable] = {"comparison": _comparison_table(result, latency, policy)}
    if record["slices"]:
        tables["slices"] = _slice_rows(record, gates)
    tables.update(_fairness_tables(record, gates))
    return EvaluationOutcome(result=result, record=record, metadata=metadata, tables=tables)


def evaluate_candidate(
    features_df: pd.DataFrame,
    spec: DatasetSpec,
    candidate_pipeline: Pipeline,
    baseline_pipeline: Pipeline,
    production_pipeline: Pipeline | None,
    *,
    policy: Policy,
    model_version: int,
    artifact_sha256: str,
    production_version: int | None,
) -> EvaluationOutcome:
    """Measure the candidate's latency on the holdout inputs, :func:`evaluate` it, and build its outcome.

    The latency is that of ``candidate_pipeline`` itself: pass the exact object loaded from the verified
    artifact, not the in-memory training result. See :func:`evaluate` and :func:`evaluation_outcome`.
    """
    holdout = features_df[features_df[SPLIT_COLUMN] == HOLDOUT]
    batch_size = policy.evaluation.latency_batch_size
    latency = measure_latency(candidate_pipeline, model_inputs(holdout, spec), batch_size=batch_size)
    result = evaluate(
        features_df, spec, candidate_pipeline, baseline_pipeline, production_pipeline, policy=policy, latency=latency
    )
    return evaluation_outcome(
        result,
        model_name=spec.name,
        model_version=model_version,
        artifact_sha256=artifact_sha256,
        production_version=production_version,
    )
