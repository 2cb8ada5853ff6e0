"""Realised performance: the prediction log joined with the labels that arrived, per model and arm.

Labels come with the data file (its label column) or later, in labels files of their own (the labels
stream, :mod:`mlops_assets.ml.labels`). Either way they are merged into one frame ``row_id`` (text, as in the
prediction log) → ``label`` (0/1, NaN: none yet) and joined to the log by row id. From the joined log:

* :func:`realised_performance` — per model version: on every row it scored (both models score every
  row) and on the rows it served; plus the served mix as a whole (what users got);
* :func:`performance_sla` — the production model's realised headline metric held against its SLA floor;
* :func:`ab_counts` — per arm, the served rows and how many the served model decided correctly;
* :func:`paired_metric_values` — per data version, both models' per-row metric on the same labelled rows
  (the sequential A/B test's evidence);
* :func:`rollout_guards` — the guard metrics of the rollout's current phase (shadow: agreement
  with the champion on every row; canary: both models on the rows the challenger served, paired).
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from mlops_assets.ml import abtest

# The labels functions live in the labels stream's module (mlops_assets.ml.labels); re-exported for their importers.
from mlops_assets.ml.labels import LABEL as LABEL
from mlops_assets.ml.labels import LabelsError as LabelsError
from mlops_assets.ml.labels import join_labels as join_labels
from mlops_assets.ml.labels import labels_from_features as labels_from_features
from mlops_assets.ml.labels import labels_from_file as labels_from_file
from mlops_assets.ml.policy import MonitoringPolicy, RolloutPolicy
from mlops_assets.ml.rollout import GuardResult, Phase, RolloutState, canary_guards, shadow_guards
from mlops_assets.ml.routing import CHALLENGER_ARM, CHAMPION_ARM


def _metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    known = np.isfinite(y) & np.isfinite(scores)
    y, scores = y[known], scores[known]
    n = int(y.size)
    positives = int(y.sum())
    both = 0 < positives < n
    return {
        "n": n,
        "positives": positives,
        "roc_auc": float(roc_auc_score(y, scores)) if both else None,
        "pr_auc": float(average_precision_score(y, scores)) if both else None,
        "brier": float(brier_score_loss(y, scores)) if n else None,
        "error_rate": float(np.mean((scores >= threshold) != (y == 1.0))) if n else None,
        "mean_score": float(scores.mean()) if n else None,
        "positive_rate": float(positives / n) if n else None,
    }


def realised_performance(joined: pd.DataFrame, *, threshold: float = 0.5) -> list[dict[str, Any]]:
    """Realised metrics on the labelled rows: per model version (all scored rows, served rows) and the mix.

    Rows without a label are left out; ``n`` says how many rows each figure rests on, and a metric
    that needs both classes is ``None`` when only one is present. Every model version that scored rows has its
    rows, with ``n`` 0 and metrics ``None`` while none of them is labelled (a version scored before its labels).
    """
    rows: list[dict[str, Any]] = []
    grouped: Any = joined.groupby(["model_version", "arm"], sort=True)
    for (version, arm), part in grouped:
        y, s = part[LABEL].to_numpy(dtype=float), part["score"].to_numpy(dtype=float)
        served = part["served"].to_numpy(dtype=bool)
        rows.append({"model_version": int(version), "arm": arm, "rows": "scored", **_metrics(y, s, threshold)})
        rows.append(
            {"model_version": int(version), "arm": arm, "rows": "served", **_metrics(y[served], s[served], threshold)}
        )
    mix = joined[joined["served"].astype(bool)]
    rows.append(
        {
            "model_version": None,
            "arm": "served mix",
            "rows": "served",
            **_metrics(mix[LABEL].to_numpy(dtype=float), mix["score"].to_numpy(dtype=float), threshold),
        }
    )
    return rows


def performance_sla(
    rows: Sequence[Mapping[str, Any]],
    model_version: int,
    holdout: float | None,
    monitoring: MonitoringPolicy,
    *,
    headline_metric: str,
    metric_floor: float,
) -> dict[str, Any]:
    """The performance SLA of the production model on one data version: its realised headline metric vs its floor.

    Rule: ``floor = max(metric_floor, holdout - monitoring.max_realised_metric_drop)``, or
    ``metric_floor`` alone when the holdout value is unknown; the SLA is breached when
    ``realised < floor``. A realised metric that is undefined (``None``: one class only among the labelled
    rows) does not breach it.

    Args:
        rows: :func:`realised_performance` of the data version; the row of ``model_version`` on every row
            it scored (``"rows": "scored"``) is the one held against the SLA (it must be there).
        model_version: The registry version of the production model (the champion arm) that scored the rows.
        holdout: Its headline metric on its own holdout split at evaluation (same units: a score in [0, 1]
            for ``roc_auc`` / ``pr_auc``), or ``None`` when unknown.
        monitoring: Its ``max_realised_metric_drop`` (largest allowed drop below the holdout value, absolute).
        headline_metric: Which metric (``policy.evaluation.headline_metric``).
        metric_floor: The absolute floor (``policy.gates.metric_floor``).

    Returns:
        The ``sla`` of the ``performance_report`` record (JSON-ready): ``metric`` (name), ``model_version``,
        ``realised`` (float or ``None``), ``holdout`` (float or ``None``), ``floor`` (float), ``breached``
        (bool), ``labelled_rows`` (labelled rows the realised value rests on) and ``rule`` (in words, with the
        policy's values).

    Raises:
        StopIteration: ``rows`` has no ``"scored"`` row of ``model_version``.
        KeyError: The rows lack the headline metric.
    """
    metric = headline_metric
    row = next(r for r in rows if r["model_version"] == model_version and r["rows"] == "scored")
    realised = row[metric]
    drop = monitoring.max_realised_metric_drop
    floor = metric_floor if holdout is None else max(metric_floor, holdout - drop)
    return {
        "metric": metric,
        "model_version": model_version,
        "realised": realised,
        "holdout": holdout,
        "floor": floor,
        "breached": realised is not None and realised < floor,
        "labelled_rows": row["n"],
        "rule": f"realised {metric} >= max(metric_floor {metric_floor}, holdout - {drop})",
    }


def ab_counts(joined: pd.DataFrame, *, threshold: float = 0.5) -> dict[str, tuple[int, int]]:
    """Per arm: (correct decisions, labelled served rows) of the served model — the A/B test's trials."""
    out: dict[str, tuple[int, int]] = {}
    for arm in (CHAMPION_ARM, CHALLENGER_ARM):
        part = joined[(joined["arm"] == arm) & joined["served"].astype(bool)]
        y, s = part[LABEL].to_numpy(dtype=float), part["score"].to_numpy(dtype=float)
        known = np.isfinite(y) & np.isfinite(s)
        correct = (s[known] >= threshold) == (y[known] == 1.0)
        out[arm] = (int(correct.sum()), int(known.sum()))
    return out


def _paired(joined: pd.DataFrame, champion: int, challenger: int) -> pd.DataFrame:
    """One row per (data version, row id) both models scored: champion score, challenger score, label, who served it.

    Paired on the data version and the row id together: a joined log pooled over several versions may hold the
    same row id in two versions (ids unique within a file only), and those are different rows.
    """
    keys = ["data_version", "row_id"]
    champ = joined[joined["model_version"] == champion].set_index(keys)
    chall = joined[joined["model_version"] == challenger].set_index(keys)
    paired = pd.DataFrame(
        {
            "champion_score": champ["score"].astype(float),
            LABEL: champ[LABEL].astype(float),
        }
    ).join(
        chall[["score", "served"]].rename(columns={"score": "challenger_score", "served": "challenger_served"}),
        how="inner",
    )
    return paired


def paired_metric_values(
    joined: pd.DataFrame,
    champion: int,
    challenger: int,
    data_versions: Sequence[str],
    *,
    metric: str,
    threshold: float = 0.5,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The sequential A/B test's evidence: per data version, both models' per-row metric on the same rows.

    Rows: every labelled row of the version that both models scored (during a rollout both score every row,
    whichever arm served it), paired by (data version, row id). A row whose label has not arrived or whose
    challenger score failed (NaN) is left out: the failure-rate guard counts failures.

    Args:
        joined: Prediction logs joined with labels (``label`` NaN where none arrived), one or more versions.
        champion: The champion's model version.
        challenger: The challenger's model version.
        data_versions: The versions to return, in the order the test reads them (arrival order); a version
            without such rows maps to two empty arrays.
        metric: ``log_loss``, ``brier`` or ``accuracy`` (:func:`mlops_assets.ml.abtest.row_metric`).
        threshold: Decision threshold for ``accuracy``.

    Returns:
        ``{data version: (champion values, challenger values)}``, aligned row by row, shape (n_k,) each.
    """
    paired = _paired(joined, champion, challenger)
    known = (
        np.isfinite(paired[LABEL].to_numpy(dtype=float))
        & np.isfinite(paired["champion_score"].to_numpy(dtype=float))
        & np.isfinite(paired["challenger_score"].to_numpy(dtype=float))
    )
    paired = paired[known]
    by_version = paired.index.get_level_values("data_version").astype(str)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for version in data_versions:
        part = paired[by_version == version]
        y = part[LABEL].to_numpy(dtype=float)
        out[version] = (
            abtest.row_metric(y, part["champion_score"].to_numpy(dtype=float), metric, threshold=threshold),
            abtest.row_metric(y, part["challenger_score"].to_numpy(dtype=float), metric, threshold=threshold),
        )
    return out


def rollout_guards(
    state: RolloutState,
    joined: pd.DataFrame,
    rollout: RolloutPolicy,
    *,
    decision_threshold: float,
    breach: bool = False,
) -> GuardResult | None:
    """The guards of ``state``'s current phase on the joined prediction logs pooled since the phase began.

    The thresholds are ``rollout``'s; ``decision_threshold`` (``policy.evaluation.decision_threshold``) is
    the score at or above which a row is predicted positive, for the agreement and the error rates. Evidence
    is counted in rows: every row of every version in ``joined`` counts, whatever the number of versions.

    * shadow: :func:`~mlops_assets.ml.rollout.shadow_guards` on every row both models scored — no labels
      needed (a ``label`` column of NaN is fine), so the phase is decided on the version it scored;
    * canary: :func:`~mlops_assets.ml.rollout.canary_guards` on the labelled rows the challenger served;
    * ``breach=True`` (the production model breaches its SLA during the rollout,
      :func:`~mlops_assets.ml.rollout.decide_on_breach`): the canary guards on every labelled row both models
      scored since the rollout began (``joined`` must hold exactly those), whatever the phase — a paired
      comparison on the same rows; the served share does not matter for it.

    Returns ``None`` when the log holds no evidence for this phase: the version was scored without
    this rollout's challenger, or before the current phase began (its traffic split was another; with
    ``breach``: before the rollout began).
    """
    if state.is_terminal or state.phase is Phase.IDLE or state.champion_version is None:
        return None
    started = state.history[0].at if breach and state.history else state.phase_started_at
    versions = set(joined["model_version"].astype(int))
    if state.challenger_version not in versions or state.champion_version not in versions:
        return None
    scored_at = pd.to_datetime(joined["scored_at"], utc=True)
    if started is not None and scored_at.min() < pd.Timestamp(started):
        return None
    paired = _paired(joined, state.champion_version, state.challenger_version)
    if breach:
        return canary_guards(
            paired[LABEL],
            paired["challenger_score"],
            paired["champion_score"],
            min_rows=rollout.rollout_min_rows,
            max_auc_drop=rollout.canary_max_auc_drop,
            max_error_rate_increase=rollout.canary_max_error_rate_increase,
            threshold=decision_threshold,
        )
    if state.phase is Phase.SHADOW:
        return shadow_guards(
            paired["champion_score"],
            paired["challenger_score"],
            min_rows=rollout.rollout_min_rows,
            min_agreement=rollout.shadow_min_agreement,
            min_correlation=rollout.shadow_min_correlation,
            threshold=decision_threshold,
        )
    served = paired[paired["challenger_served"].astype(bool)]
    return canary_guards(
        served[LABEL],
        served["challenger_score"],
        served["champion_score"],
        min_rows=rollout.rollout_min_rows,
        max_auc_drop=rollout.canary_max_auc_drop,
        max_error_rate_increase=rollout.canary_max_error_rate_increase,
        threshold=decision_threshold,
    )


def finite_or_none(value: float | None) -> float | None:
    """JSON-safe number."""
    return None if value is None or not math.isfinite(value) else float(value)
