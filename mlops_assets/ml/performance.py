"""Realised performance: the prediction log joined with the labels that arrived, per model and arm.

Labels come with the data file (its label column) or later, in a labels file of their own (the id
column and the label column). Either way they are reduced to one frame ``row_id`` (text, as in the
prediction log) → ``label`` (0/1) and joined to the log by row id. From the joined log:

* :func:`realised_performance` — per model version: on every row it scored (both models score every
  row) and on the rows it served; plus the served mix as a whole (what users got);
* :func:`performance_sla` — the production model's realised headline metric held against its SLA floor;
* :func:`ab_counts` — per arm, the served rows and how many the served model decided correctly;
* :func:`rollout_guards` — the guard metrics of the rollout's current phase (shadow: agreement
  with the champion on every row; canary: both models on the rows the challenger served, paired).
"""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from mlops_assets.ml.features import encode_label
from mlops_assets.ml.policy import MonitoringPolicy, RolloutPolicy
from mlops_assets.ml.rollout import GuardResult, Phase, RolloutState, canary_guards, shadow_guards
from mlops_assets.ml.routing import CHALLENGER_ARM, CHAMPION_ARM
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.validation import DataFileError, coerce_columns, gate_label_in_domain, read_data_file

LABEL = "label"


class LabelsError(ValueError):
    """A labels file cannot be used; the message names the file, the column and the rule."""


def labels_from_file(path: Path, spec: DatasetSpec, known_ids: pd.Series | None = None) -> pd.DataFrame:
    """Read a landed labels file: ``spec.id_column`` and ``spec.label.column``, one row per id.

    Args:
        path: CSV or Parquet file.
        spec: The dataset spec (id and label columns, label domain).
        known_ids: The data version's row ids; ids not among them are refused (a labels file for
            another version, or a typo in the name), so that nothing is silently joined to nothing.

    Returns:
        Columns ``row_id`` (text) and ``label`` (0/1 float).

    Raises:
        LabelsError: unreadable file, missing column, missing or duplicate ids, label outside its
            domain or missing (read through the label column's type, as in a data file: rule
            ``label_in_domain``), id or label failing the data files' schema (rule ``schema_valid``), ids
            unknown to the data version.
    """
    try:
        raw = read_data_file(path, spec)
    except DataFileError as exc:
        raise LabelsError(str(exc)) from exc
    for column in (spec.id_column, spec.label.column):
        if column not in raw.columns:
            raise LabelsError(f"{path}: column {column!r} missing (rule: labels_columns_present)")
    ids = raw[spec.id_column]
    if ids.isna().any():
        raise LabelsError(
            f"{path}: column {spec.id_column!r} has {int(ids.isna().sum())} missing ids (rule: ids_present)"
        )
    duplicated = ids.astype(str).duplicated()
    if duplicated.any():
        raise LabelsError(
            f"{path}: column {spec.id_column!r} has {int(duplicated.sum())} duplicate ids, e.g. "
            f"{ids[duplicated].astype(str).iloc[0]!r} (rule: ids_unique)"
        )
    # The label cells are read through the label column's type, as in a data file (yes/no of a bool label).
    in_domain = gate_label_in_domain(raw, spec, str(path))
    if not in_domain.passed:
        raise LabelsError(in_domain.message)
    # Then both columns are typed by the data files' own schema, so ids and labels compare like with like
    # ("01" is the int id 1; "yes" is the bool True).
    try:
        typed = coerce_columns(raw, spec, [spec.id_column, spec.label.column], str(path))
    except ValueError as exc:
        raise LabelsError(str(exc)) from exc
    encoded = encode_label(typed[spec.label.column], spec)
    frame = pd.DataFrame({"row_id": typed[spec.id_column].astype(str).to_numpy(), LABEL: encoded.astype(float)})
    if known_ids is not None:
        unknown = ~frame["row_id"].isin(set(known_ids.astype(str)))
        if unknown.any():
            raise LabelsError(
                f"{path}: column {spec.id_column!r} has {int(unknown.sum())} ids that are not rows of this data "
                f"version, e.g. {frame['row_id'][unknown].iloc[0]!r} (rule: ids_known)"
            )
    return frame


def labels_from_features(features: pd.DataFrame, spec: DatasetSpec, label_column: str) -> pd.DataFrame:
    """The labels a data file carried (its encoded label column), as ``row_id`` → ``label``."""
    return pd.DataFrame(
        {
            "row_id": features[spec.id_column].astype(str).to_numpy(),
            LABEL: features[label_column].astype(float).to_numpy(),
        }
    )


def join_labels(log: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The prediction log with a ``label`` column (NaN where no label arrived), joined on ``row_id``."""
    mapping = labels.set_index("row_id")[LABEL]
    joined = log.copy()
    joined[LABEL] = joined["row_id"].astype(str).map(mapping).astype(float)
    return joined


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
    that needs both classes is ``None`` when only one is present.
    """
    rows: list[dict[str, Any]] = []
    labelled = joined[np.isfinite(joined[LABEL].to_numpy(dtype=float))]
    for (version, arm), part in labelled.groupby(["model_version", "arm"], sort=True):
        y, s = part[LABEL].to_numpy(dtype=float), part["score"].to_numpy(dtype=float)
        served = part["served"].to_numpy(dtype=bool)
        rows.append({"model_version": int(version), "arm": arm, "rows": "scored", **_metrics(y, s, threshold)})
        rows.append(
            {"model_version": int(version), "arm": arm, "rows": "served", **_metrics(y[served], s[served], threshold)}
        )
    mix = labelled[labelled["served"].astype(bool)]
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
    """One row per row id: champion score, challenger score, label, who served it."""
    champ = joined[joined["model_version"] == champion].set_index("row_id")
    chall = joined[joined["model_version"] == challenger].set_index("row_id")
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


def rollout_guards(
    state: RolloutState, joined: pd.DataFrame, rollout: RolloutPolicy, *, decision_threshold: float
) -> GuardResult | None:
    """The guards of ``state``'s current phase on one data version's joined prediction log.

    The thresholds are ``rollout``'s; ``decision_threshold`` (``policy.evaluation.decision_threshold``) is
    the score at or above which a row is predicted positive, for the agreement and the error rates.

    Returns ``None`` when the log holds no evidence for this phase: the version was scored without
    this rollout's challenger, or before the current phase began (its traffic split was another).
    """
    if state.is_terminal or state.phase is Phase.IDLE or state.champion_version is None:
        return None
    started = state.phase_started_at
    versions = set(joined["model_version"].astype(int))
    if state.challenger_version not in versions or state.champion_version not in versions:
        return None
    scored_at = pd.to_datetime(joined["scored_at"], utc=True)
    if started is not None and scored_at.min() < pd.Timestamp(started):
        return None
    paired = _paired(joined, state.champion_version, state.challenger_version)
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
