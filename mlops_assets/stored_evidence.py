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
    model: MLModel,
    instance: dg.DagsterInstance,
    stored: FrameIOManager,
    state: RolloutState,
    since: datetime,
    *,
    labels_needed: bool = True,
) -> tuple[pd.DataFrame, list[str]]:
    """The prediction logs of every version scored with ``state``'s champion and challenger since ``since``.

    ``labels_needed`` (default): only versions with stored labels, joined to them (the A/B test, canary steps, a
    breach); without it every such version counts, joined to its labels when they are there, else with a NaN
    ``label`` (the shadow phase: both models score every row, no label is needed). Walks the data versions newest
    first and stops at the first one scored before ``since``: reads metadata for that walk and data files only for
    the versions that are evidence.

    Returns:
        The joined logs (``scoring.LOG_COLUMNS`` + ``label``) and the data version keys used, newest first.
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
        if int(meta.get("champion_version", 0)) != state.champion_version:
            continue
        labelled = stored.has_value(labels, key)
        if labels_needed and not labelled:
            continue
        log = stored.load_value(predictions, key)
        if labelled:
            frames.append(performance.join_labels(log, stored.load_value(labels, key)))
        else:
            frames.append(log.assign(**{performance.LABEL: float("nan")}))
        used.append(key)
    empty = pd.DataFrame(columns=[*scoring.LOG_COLUMNS, performance.LABEL])
    return (pd.concat(frames, ignore_index=True) if frames else empty), used
