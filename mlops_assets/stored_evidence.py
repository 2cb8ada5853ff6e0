"""Evidence read back from stored assets across data versions, for more than one stage (no stage imports).

Wiring layer: reads the Dagster instance's materialization metadata and the stored assets. The rollout
step (``assets/deployments.py``) and the A/B test (``assets/monitoring.py``) both judge a rollout on the
same evidence, so it lives here rather than in either stage.
"""

from datetime import datetime

import dagster as dg
import pandas as pd

from mlops_assets.gate_records import latest_materialization_metadata
from mlops_assets.ml import performance, scoring
from mlops_assets.ml.rollout import RolloutState
from mlops_assets.model import MLModel
from mlops_assets.resources import FrameIOManager


def rollout_evidence(
    model: MLModel, instance: dg.DagsterInstance, stored: FrameIOManager, state: RolloutState, since: datetime
) -> tuple[pd.DataFrame, list[str]]:
    """The joined prediction logs of every labelled version scored with ``state``'s challenger since ``since``.

    Walks the data versions newest first and stops at the first one scored before ``since``: reads
    metadata for that walk and data files only for the versions that are evidence.
    """
    predictions, labels = model.key("predictions"), model.key("labels")
    frames: list[pd.DataFrame] = []
    used: list[str] = []
    for key in reversed(instance.get_dynamic_partitions(model.partitions_name)):
        meta = latest_materialization_metadata(instance, predictions, key)
        if not meta or "scored_at" not in meta:
            continue
        if datetime.fromisoformat(str(meta["scored_at"])) < since:
            break
        if int(meta.get("challenger_version", 0)) != state.challenger_version:
            continue
        if int(meta.get("champion_version", 0)) != state.champion_version or not stored.has_value(labels, key):
            continue
        frames.append(performance.join_labels(stored.load_value(predictions, key), stored.load_value(labels, key)))
        used.append(key)
    return (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*scoring.LOG_COLUMNS, "label"])
    ), used
