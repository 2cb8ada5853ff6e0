"""Evaluation: candidate, baseline and production scored on the same holdout rows.

Metrics come from :mod:`sklearn.metrics`. Where a metric is undefined (a holdout or slice with a single
class has no ROC/PR curve) it is NaN with an ``undefined_reason`` rather than an exception, so that the
model gates can fail closed with that reason instead of crashing the run.
"""

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

from mlops_assets.ml.features import HOLDOUT, LABEL_COLUMN, OTHER_CATEGORY, SPLIT_COLUMN
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.training import predict_scores

HEADLINE_METRICS: tuple[str, ...] = ("roc_auc", "pr_auc")
UNDEFINED_REASON = "undefined_reason"
# A slice column with many distinct values (a numeric one, say) would swamp the table; the tail is pooled.
MAX_SLICE_VALUES = 50


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


def classification_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Binary classification metrics of scores against 0/1 labels.

    Args:
        y_true: 0/1 labels (1 = positive class).
        scores: Probability of the positive class, in [0, 1].
        threshold: Scores ``>= threshold`` are predicted positive (for accuracy, f1 and
            ``predicted_positive_rate``).

    Returns:
        ``roc_auc``, ``pr_auc`` (average precision), ``accuracy``, ``f1``, ``log_loss``, ``brier``,
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


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _metrics_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    # JSON has no NaN: a None metric value was an undefined (NaN) one.
    return {k: (math.nan if v is None else v) for k, v in data.items()}


@dataclass(frozen=True)
class HoldoutScores:
    """The paired holdout labels and scores behind an :class:`Evaluation` (kept for resampling, e.g. a
    bootstrap confidence interval; not part of :meth:`Evaluation.to_dict`)."""

    y_true: np.ndarray
    candidate: np.ndarray
    baseline: np.ndarray
    production: np.ndarray | None


@dataclass(frozen=True)
class Evaluation:
    """Candidate, baseline and (if any) production metrics on one holdout.

    Attributes:
        n_holdout: Number of holdout rows scored.
        headline_metric: The metric the model gates compare (``policy.headline_metric``).
        candidate: Candidate metrics (see :func:`classification_metrics`).
        baseline: Baseline metrics.
        production: Production model metrics, or None when nothing is in production.
        slices: Per slice column and value: ``slice_column``, ``value`` (str, None for missing,
            ``"__other__"`` for a pooled tail), ``n``, ``n_positive``, ``positive_rate``, ``metric``
            (the headline metric's name) and ``candidate`` (its value for the candidate, NaN if undefined).
        threshold: Decision threshold used for accuracy and f1.
        scores: The holdout labels and scores (None when rebuilt from a dict).
    """

    n_holdout: int
    headline_metric: str
    candidate: dict[str, Any]
    baseline: dict[str, Any]
    production: dict[str, Any] | None
    slices: tuple[dict[str, Any], ...] = ()
    threshold: float = 0.5
    scores: HoldoutScores | None = field(default=None, compare=False, repr=False)

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe plain data (NaN becomes None); the scores are not included."""
        return _json_safe(
            {
                "n_holdout": self.n_holdout,
                "headline_metric": self.headline_metric,
                "threshold": self.threshold,
                "candidate": self.candidate,
                "baseline": self.baseline,
                "production": self.production,
                "slices": list(self.slices),
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Evaluation":
        """Rebuild an evaluation from :meth:`to_dict` output (None metric values become NaN)."""
        production = data.get("production")
        return cls(
            n_holdout=int(data["n_holdout"]),
            headline_metric=str(data["headline_metric"]),
            candidate=_metrics_from_json(data["candidate"]),
            baseline=_metrics_from_json(data["baseline"]),
            production=None if production is None else _metrics_from_json(production),
            slices=tuple(
                {**row, "candidate": math.nan if row.get("candidate") is None else row["candidate"]}
                for row in data.get("slices", [])
            ),
            threshold=float(data.get("threshold", 0.5)),
        )


def _slice_table(
    holdout: pd.DataFrame, spec: DatasetSpec, y: np.ndarray, scores: np.ndarray
) -> tuple[dict[str, Any], ...]:
    metric = spec.policy.headline_metric
    rows: list[dict[str, Any]] = []
    for column in spec.slices:
        col = holdout[column]
        missing = col.isna().to_numpy()
        text = np.where(missing, "", col.astype(object).astype(str).to_numpy())
        counts = Counter(None if m else str(t) for t, m in zip(text, missing, strict=True))
        # Most frequent first, ties by value (missing last), so the table and its tail cut are deterministic.
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
        groups: list[tuple[str | None, np.ndarray]] = [
            (key, missing if key is None else (text == key) & ~missing) for key, _ in ranked[:MAX_SLICE_VALUES]
        ]
        if len(ranked) > MAX_SLICE_VALUES:
            tail = ~np.logical_or.reduce([mask for _, mask in groups])
            groups.append((OTHER_CATEGORY, tail))
        for value, mask in groups:
            n = int(mask.sum())
            n_pos = int(y[mask].sum())
            rows.append(
                {
                    "slice_column": column,
                    "value": value,
                    "n": n,
                    "n_positive": n_pos,
                    "positive_rate": n_pos / n if n else math.nan,
                    "metric": metric,
                    "candidate": ranking_metric(metric, y[mask], scores[mask]) if n else math.nan,
                }
            )
    return tuple(rows)


def evaluate(
    features_df: pd.DataFrame,
    spec: DatasetSpec,
    candidate_pipeline: Pipeline,
    baseline_pipeline: Pipeline,
    production_pipeline: Pipeline | None = None,
    threshold: float = 0.5,
) -> Evaluation:
    """Score candidate, baseline and production on the same holdout rows.

    Args:
        features_df: A features frame from :func:`~mlops_assets.ml.features.build_features`.
        spec: The dataset spec (headline metric, slices).
        candidate_pipeline: The fitted candidate.
        baseline_pipeline: The fitted baseline.
        production_pipeline: The model in production, or None on a first run.
        threshold: Decision threshold for accuracy and f1.

    Returns:
        The evaluation.

    Raises:
        ValueError: the frame has no holdout rows.
    """
    for column in (SPLIT_COLUMN, LABEL_COLUMN):
        if column not in features_df.columns:
            raise ValueError(f"features frame lacks {column!r}; build it with build_features()")
    holdout = features_df[features_df[SPLIT_COLUMN] == HOLDOUT].reset_index(drop=True)
    if len(holdout) == 0:
        raise ValueError(f"no holdout rows to evaluate on for spec {spec.name!r}")
    y = holdout[LABEL_COLUMN].to_numpy(dtype=np.int64)
    cand = predict_scores(candidate_pipeline, holdout, spec)
    base = predict_scores(baseline_pipeline, holdout, spec)
    prod = None if production_pipeline is None else predict_scores(production_pipeline, holdout, spec)
    return Evaluation(
        n_holdout=len(holdout),
        headline_metric=spec.policy.headline_metric,
        candidate=classification_metrics(y, cand, threshold),
        baseline=classification_metrics(y, base, threshold),
        production=None if prod is None else classification_metrics(y, prod, threshold),
        slices=_slice_table(holdout, spec, y, cand),
        threshold=threshold,
        scores=HoldoutScores(y_true=y, candidate=cand, baseline=base, production=prod),
    )
