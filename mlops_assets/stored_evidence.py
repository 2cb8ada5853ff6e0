"""Evidence read back from stored assets across data versions, for more than one stage (no stage imports).

Wiring layer: reads the Dagster instance's materialization metadata and the stored assets. The rollout
step (``assets/deployments.py``) and the A/B test (``assets/monitoring.py``) both judge a rollout on the
same evidence, so it lives here rather than in either stage.
"""

from datetime import datetime

import dagster as dg
import pandas as pd

from mlops_assets.gate_records import record_metadata
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
    ``label`` (the shadow phase: both models score every row, no label is needed). Reads the ``predictions``
    materializations stored since ``since`` (one query per page; a version scored since then was stored since then),
    takes each version's latest, and orders the versions by their ``scored_at``, newest first: the order in which
    they were scored, whatever the order in which they were registered (segments of several serving workers, or a
    version scored again, arrive out of registration order). Data files are read only for the versions that are
    evidence.

    Returns:
        The joined logs (``scoring.LOG_COLUMNS`` + ``label``) and the data version keys used, newest scored first.
    """
    predictions, labels = model.key("predictions"), model.key("labels")
    frames: list[pd.DataFrame] = []
    used: list[str] = []
    for key, meta in _scored_since(model, instance, since):
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


_PAGE = 500


def _scored_since(model: MLModel, instance: dg.DagsterInstance, since: datetime) -> list[tuple[str, dict]]:
    """``(data version, metadata)`` of the latest ``predictions`` materialization of every registered data version of
    ``model`` scored at or after ``since`` (its ``scored_at``), newest scored first (ties: newest stored first)."""
    registered = set(instance.get_dynamic_partitions(model.partitions_name))
    latest: dict[str, dg.EventLogRecord] = {}
    cursor = None
    while True:
        # A second of slack below ``since``: the filter is on the stored time, the decision on ``scored_at`` below.
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=model.key("predictions"), after_timestamp=since.timestamp() - 1.0),
            limit=_PAGE,
            cursor=cursor,
            ascending=False,
        )
        for record in result.records:  # newest stored first: the first record of a version is its latest
            if record.partition_key in registered and record.partition_key not in latest:
                latest[record.partition_key] = record
        if not result.has_more:
            break
        cursor = result.cursor
    scored: list[tuple[datetime, int, str, dict]] = []
    for key, record in latest.items():
        meta = record_metadata(record)
        if "scored_at" in meta and (at := datetime.fromisoformat(str(meta["scored_at"]))) >= since:
            scored.append((at, record.storage_id, key, meta))
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [(key, meta) for _, _, key, meta in scored]
