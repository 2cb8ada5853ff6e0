"""Rollout evidence is every data version scored under the rollout's routing since a moment, in scoring order.

Data versions are registered in the order they land, which is not always the order in which they were scored:
segments of several serving workers land as each closes, and a version can be scored again. The evidence reader
(:func:`mlops_assets.stored_evidence.rollout_evidence`) must not stop at the first version scored before the phase
began when a version registered earlier was scored after it (it did: a ``break`` on the registration walk).
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlops_assets.ml.rollout import Phase, RolloutState
from mlops_assets.model import MLModel
from mlops_assets.resources import FrameIOManager
from mlops_assets.storage.files import write_frame_atomic
from mlops_assets.stored_evidence import rollout_evidence

pytestmark = pytest.mark.wiring

SINCE = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _scored(
    instance: dg.DagsterInstance,
    io: FrameIOManager,
    model: MLModel,
    key: str,
    minutes: int,
    challenger: int = 2,
) -> None:
    """Store a one-row prediction log for ``key`` and its ``predictions`` materialization scored at SINCE+minutes."""
    path = Path(f"{io.location(model.key('predictions'), key)}.parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_frame_atomic(pd.DataFrame({"row": [key]}), path, fmt="parquet")
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=model.key("predictions"),
            partition=key,
            metadata={
                "scored_at": (SINCE + timedelta(minutes=minutes)).isoformat(),
                "champion_version": 1,
                "challenger_version": challenger,
            },
        )
    )


def test_rollout_evidence_keeps_versions_scored_since_the_phase_began_whatever_their_registration_order(tmp_path):
    model = MLModel(name="flights", spec_source="flights")
    io = FrameIOManager(base_dir=str(tmp_path))
    state = RolloutState(model_name="flights", champion_version=1, challenger_version=2, phase=Phase.SHADOW)
    with dg.DagsterInstance.ephemeral() as instance:
        # Registered a, b, c, d, e: a before the phase (old routing), b scored in the phase, c registered after b
        # but scored before the phase began (a late segment of the previous routing), d in the phase, e in the phase
        # under another challenger.
        instance.add_dynamic_partitions(model.partitions_name, ["a", "b", "c", "d", "e"])
        _scored(instance, io, model, "a", minutes=-30)
        _scored(instance, io, model, "b", minutes=10)
        _scored(instance, io, model, "c", minutes=-5)
        _scored(instance, io, model, "d", minutes=5)
        _scored(instance, io, model, "e", minutes=20, challenger=3)
        joined, used = rollout_evidence(model, instance, io, state, SINCE, labels_needed=False)
        # b and d, newest scored first (b at +10 min, d at +5 min), though d was registered after b and c.
        assert used == ["b", "d"]
        assert sorted(joined["row"]) == ["b", "d"]
        assert joined["label"].isna().all()  # no labels stored: the shadow phase counts the versions without them

        # A version scored again in the phase counts once, at its latest scoring (now the newest).
        _scored(instance, io, model, "a", minutes=30)
        assert rollout_evidence(model, instance, io, state, SINCE, labels_needed=False)[1] == ["a", "b", "d"]

        # A version whose data version is no longer registered (deleted partition) is not evidence.
        instance.delete_dynamic_partition(model.partitions_name, "b")
        assert rollout_evidence(model, instance, io, state, SINCE, labels_needed=False)[1] == ["a", "d"]
