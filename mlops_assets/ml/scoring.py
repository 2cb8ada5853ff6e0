"""Batch scoring with per-row provenance: the prediction log.

Traffic is the rows of each new data version. Each row is routed by a stable hash of its id to the
champion or the challenger (by the challenger's share; 0 means the challenger is in shadow: it scores
every row but serves none). The champion scores every row too, so canary guards can compare both models
on the same rows. One log row per (row, model): prediction id, data version, row id, model version,
arm, whether it was served, score, feature hash and time.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from mlops_assets.ml.features import model_inputs
from mlops_assets.ml.routing import CHALLENGER_ARM, CHAMPION_ARM, assign_arms, feature_hash
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.training import predict_scores

LOG_COLUMNS: tuple[str, ...] = (
    "prediction_id",
    "data_version",
    "row_id",
    "model_version",
    "arm",
    "served",
    "score",
    "feature_hash",
    "scored_at",
)


@dataclass(frozen=True)
class ScoringModel:
    """A model version and its pipeline, loaded from its verified artifact."""

    version: int
    pipeline: Pipeline


def _prediction_ids(data_version: str, row_ids: pd.Series, model_version: int) -> list[str]:
    # Stable across re-runs: the same row scored by the same model version has the same prediction id.
    return [
        hashlib.sha256(f"{data_version}:{row_id}:{model_version}".encode()).hexdigest()[:32]
        for row_id in row_ids.astype(str)
    ]


def prediction_log(
    features_df: pd.DataFrame,
    spec: DatasetSpec,
    data_version: str,
    champion: ScoringModel,
    challenger: ScoringModel | None,
    *,
    challenger_share: float,
    salt: str,
    scored_at: datetime,
) -> pd.DataFrame:
    """Score every row with the champion (and the challenger, if any) and log who served what.

    Args:
        features_df: The data version's features (all rows: the whole version is traffic).
        spec: The dataset spec (id column, model inputs).
        data_version: The data version key.
        champion: The production model.
        challenger: The challenger, or None.
        challenger_share: Share of rows the challenger serves (0: shadow only).
        salt: Routing salt (one per rollout).
        scored_at: Timestamp written on every row (UTC).

    Returns:
        The log, columns :data:`LOG_COLUMNS`, champion rows first.
    """
    row_ids = features_df[spec.id_column].reset_index(drop=True)
    hashes = feature_hash(model_inputs(features_df, spec)).to_numpy()
    arms = (
        assign_arms(row_ids, challenger_share, salt)
        if challenger is not None
        else np.full(len(row_ids), CHAMPION_ARM, dtype=object)
    )
    parts = []
    for arm, model in ((CHAMPION_ARM, champion), (CHALLENGER_ARM, challenger)):
        if model is None:
            continue
        parts.append(
            pd.DataFrame(
                {
                    "prediction_id": _prediction_ids(data_version, row_ids, model.version),
                    "data_version": data_version,
                    "row_id": row_ids.astype(str).to_numpy(),
                    "model_version": model.version,
                    "arm": arm,
                    "served": arms == arm,
                    "score": predict_scores(model.pipeline, features_df, spec),
                    "feature_hash": hashes,
                    "scored_at": pd.Timestamp(scored_at),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=list(LOG_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(LOG_COLUMNS)]
