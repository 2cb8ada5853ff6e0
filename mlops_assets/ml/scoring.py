"""Batch scoring with per-row provenance: the prediction log.

Traffic is the rows of each new data version. Each row is routed by a stable hash of its id to the
champion or the challenger (by the challenger's share; 0 means the challenger is in shadow: it scores
every row but serves none). The champion scores every row too, so canary guards can compare both models
on the same rows. One log row per (row, model): prediction id, data version, row id, model version,
arm, whether it was served, score, feature hash and time.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.pipeline import Pipeline

from mlops_assets.ml.features import model_inputs
from mlops_assets.ml.rollout import RolloutState
from mlops_assets.ml.routing import (
    CHALLENGER_ARM,
    CHAMPION_ARM,
    challenger_rows,
    digests_hex,
    feature_hash_array,
    key_digests,
)
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.training import positive_scores

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


def prediction_ids(data_version: str, id_texts: pd.Series, model_version: int) -> pa.Array:
    """The prediction id of each row: the first 32 hex digits of sha256("<data_version>:<row id>:<model_version>").

    Stable across re-runs: the same row scored by the same model version has the same prediction id (batch
    scoring uses the data version key; ``mlops-serve`` the id of the prediction-log segment the row is logged in).

    Args:
        data_version: The data version key (or serving segment id).
        id_texts: ``row_ids.astype(str)``, shape ``(n,)``.
        model_version: The scoring model version.

    Returns:
        An Arrow string array of ``n`` ids (keys built column-wise and hashed by
        :func:`~mlops_assets.ml.routing.key_digests`, one sha256 call per row).
    """
    return digests_hex(key_digests(f"{data_version}:", id_texts, f":{model_version}"), hex_digits=32)


def _frame_column(values: np.ndarray) -> Any:
    # The array a frame column built from ``values`` holds (the dtype pandas infers), converted once.
    return pd.Series(values).array


# The dtype pandas infers for a column of str (``str`` under pandas 3, object before).
_STR_DTYPE = pd.Series(["x"]).dtype


def _text_column(texts: pa.Array | pa.ChunkedArray) -> Any:
    # Texts as the frame column a list of these str would make (:data:`_STR_DTYPE`), taken from Arrow without
    # making a Python str per row.
    return pd.Series(texts, dtype=_STR_DTYPE).array


def _repeated_text(value: str, n: int) -> Any:
    # A text scalar broadcast to ``n`` rows, as the frame column the scalar would make.
    return _text_column(pa.array([value], type=pa.large_string()).take(pa.array(np.zeros(n, dtype=np.int64))))


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
    n = len(row_ids)
    id_texts = row_ids.astype(str)
    # The model inputs are built once, for the feature hash and both models (predict_scores would rebuild them).
    inputs = model_inputs(features_df, spec)
    hashes = feature_hash_array(inputs)
    # Whether each row goes to the challenger (the share and ids are checked even for an empty version).
    to_challenger = (
        challenger_rows(row_ids, challenger_share, salt) if challenger is not None else np.zeros(n, dtype=bool)
    )
    both = ((CHAMPION_ARM, champion), (CHALLENGER_ARM, challenger))
    models = [(arm, model) for arm, model in both if model is not None]
    if n == 0:
        return _empty_log(data_version, models, scored_at)
    # One part of n rows per model (champion first), each column built once for all parts (no frame concat).
    # Text columns go to the frame as the dtype pandas infers for str (``str`` under pandas 3), made from Arrow.
    parts = len(models)
    digests = b"".join([key_digests(f"{data_version}:", id_texts, f":{model.version}") for _, model in models])
    columns = {
        "prediction_id": _text_column(digests_hex(digests, hex_digits=32)),
        "data_version": _repeated_text(data_version, parts * n),
        "row_id": _repeated_rows(id_texts, parts),
        "model_version": np.repeat(np.array([model.version for _, model in models], dtype=np.int64), n),
        "arm": _text_column(_texts_by_part([arm for arm, _ in models], n)),
        "served": np.concatenate([to_challenger if arm == CHALLENGER_ARM else ~to_challenger for arm, _ in models]),
        "score": np.concatenate([positive_scores(model.pipeline, inputs) for _, model in models]),
        "feature_hash": _text_column(pa.chunked_array([hashes] * parts)),
        "scored_at": pd.Timestamp(scored_at),
    }
    return pd.DataFrame(columns, columns=list(LOG_COLUMNS), copy=False)


def _repeated_rows(id_texts: pd.Series, parts: int) -> Any:
    """The ``row_id`` column: ``id_texts`` once per part, as the frame column the per-row texts would make."""
    if id_texts.dtype == _STR_DTYPE and not id_texts.hasnans:
        return _text_column(pa.chunked_array([pa.array(id_texts.array)] * parts))
    # Missing ids (a log without routing) or another str dtype: through the texts themselves, as before.
    return _frame_column(np.tile(id_texts.to_numpy(), parts))


def _texts_by_part(texts: list[str], n: int) -> pa.Array:
    # ``texts[p]`` on the ``n`` rows of part ``p``.
    index = np.repeat(np.arange(len(texts), dtype=np.int64), n)
    return pa.array(texts, type=pa.large_string()).take(pa.array(index))


def _empty_log(data_version: str, models: list[tuple[str, ScoringModel]], scored_at: datetime) -> pd.DataFrame:
    # A log of zero rows, as the per-row code built it (pandas infers other dtypes for empty lists).
    if not models:
        return pd.DataFrame(columns=list(LOG_COLUMNS))
    parts = [
        pd.DataFrame(
            {
                "prediction_id": [],
                "data_version": data_version,
                "row_id": np.empty(0, dtype=object),
                "model_version": model.version,
                "arm": arm,
                "served": np.empty(0, dtype=bool),
                "score": np.empty(0, dtype=np.float64),
                "feature_hash": np.empty(0, dtype=object),
                "scored_at": pd.Timestamp(scored_at),
            }
        )
        for arm, model in models
    ]
    return pd.concat(parts, ignore_index=True)[list(LOG_COLUMNS)]


#: Why a data version was not scored: nothing holds the champion alias.
NO_CHAMPION_REASON = "no model in production: nothing to score with"


@dataclass(frozen=True)
class Routing:
    """How one data version's rows are split between champion and challenger.

    Attributes:
        challenger_share: Share of rows the challenger serves (0: shadow only, or no rollout of it).
        salt: Routing salt: the rollout's, else ``"<model>:v<challenger>"`` (the model name without a challenger).
        phase: The rollout's phase, ``"none"`` without a rollout of this challenger; a launchpad share says so.
    """

    challenger_share: float
    salt: str
    phase: str


def routing_for(
    model_name: str,
    challenger_version: int | None,
    rollout: RolloutState | None,
    share_override: float | None = None,
) -> Routing:
    """The traffic split of a data version: the active rollout's share when it rolls out this challenger, else 0.

    Args:
        model_name: Registered model name.
        challenger_version: The version holding the challenger alias, None when none does.
        rollout: The model's active rollout, None when none is in progress.
        share_override: A share set on the launchpad; replaces the share whatever the rollout (the phase says so).

    Returns:
        The routing.
    """
    if rollout is not None and challenger_version is not None and rollout.challenger_version == challenger_version:
        share, salt, phase = rollout.challenger_share, rollout.salt, rollout.phase.value
    else:
        salt = f"{model_name}:v{challenger_version}" if challenger_version is not None else model_name
        share, phase = 0.0, "none"
    if share_override is not None:
        share, phase = share_override, f"{phase} (share set on the launchpad)"
    return Routing(challenger_share=share, salt=salt, phase=phase)


@dataclass(frozen=True)
class ScoredVersion:
    """The ``predictions`` of one data version: its prediction log and metadata.

    Attributes:
        log: The prediction log (columns :data:`LOG_COLUMNS`; empty when nothing was scored).
        metadata: Plain metadata values in display order; ``served_by_arm`` (arm → served rows), when present,
            is a dict the caller writes as JSON.
    """

    log: pd.DataFrame
    metadata: dict[str, Any]


def unscored() -> ScoredVersion:
    """The ``predictions`` of a data version that arrived with no model in production: an empty log."""
    return ScoredVersion(
        log=pd.DataFrame(columns=list(LOG_COLUMNS)), metadata={"scored_rows": 0, "reason": NO_CHAMPION_REASON}
    )


def score_data_version(
    features_df: pd.DataFrame,
    spec: DatasetSpec,
    data_version: str,
    champion: ScoringModel,
    challenger: ScoringModel | None,
    *,
    rollout: RolloutState | None,
    share_override: float | None,
    scored_at: datetime,
) -> ScoredVersion:
    """Route (:func:`routing_for`) and score every row of a data version (:func:`prediction_log`), with a summary.

    Args:
        features_df: The data version's features (all rows).
        spec: The dataset spec.
        data_version: The data version key.
        champion: The production model.
        challenger: The version holding the challenger alias, or None.
        rollout: The model's active rollout, or None.
        share_override: A challenger share set on the launchpad, or None.
        scored_at: Timestamp of every log row (UTC).

    Returns:
        The log and its metadata: champion and challenger (``"none"`` / version 0 without one), rollout phase,
        challenger share, time, rows scored, log rows, served rows per arm and the mean served score.
    """
    routing = routing_for(spec.name, challenger.version if challenger else None, rollout, share_override)
    log = prediction_log(
        features_df,
        spec,
        data_version,
        champion,
        challenger,
        challenger_share=routing.challenger_share,
        salt=routing.salt,
        scored_at=scored_at,
    )
    served = log[log["served"]]
    by_arm = served.groupby("arm")["score"].agg(["size", "mean"])
    return ScoredVersion(
        log=log,
        metadata={
            "champion": f"v{champion.version}",
            "champion_version": champion.version,
            "challenger": f"v{challenger.version}" if challenger else "none",
            "challenger_version": challenger.version if challenger else 0,
            "rollout_phase": routing.phase,
            "challenger_share": routing.challenger_share,
            "scored_at": scored_at.isoformat(),
            "scored_rows": len(features_df),
            "dagster/row_count": len(log),
            "served_by_arm": {str(a): int(r["size"]) for a, r in by_arm.iterrows()},
            "mean_served_score": float(served["score"].mean()) if len(served) else 0.0,
        },
    )
