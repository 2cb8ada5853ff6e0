"""The resources as Dagster hands them out: the registry closed by its teardown, one reader of stored values.

* ``registry: dg.ResourceParam[ModelRegistry]`` receives a registry opened for the run or sensor tick; the
  resource's teardown disposes its engine (its pooled connections are closed), also when the step fails.
* The IO manager is the one reader of stored values: ``load_input`` and :meth:`FrameIOManager.load_value` (what
  assets use for other partitions) return the same value for the same asset key and partition, locally and on
  S3; a missing partition is a FileNotFoundError naming the asset key and the partition.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from dagster_aws.s3 import S3Resource

from mlops_assets.resources import FrameIOManager, ModelRegistryResource
from mlops_assets.s3_resources import S3FrameIOManager
from mlops_assets.storage.registry import ModelRegistry

pytestmark = pytest.mark.wiring

PARTS = dg.StaticPartitionsDefinition(["p1", "p2"])
FRAME_KEY, RECORD_KEY = dg.AssetKey(["m", "frame"]), dg.AssetKey(["m", "record"])


# -- the registry resource: opened per execution, closed by its teardown ----------------------------------------------


def _registry_asset(seen: list[tuple[ModelRegistry, int]], fail: bool = False) -> dg.AssetsDefinition:
    @dg.asset
    def uses_registry(registry: dg.ResourceParam[ModelRegistry]) -> None:
        assert registry.production_version("m") is None  # connects; the connection goes back to the pool
        seen.append((registry, registry.engine.pool.checkedin()))
        if fail:
            raise RuntimeError("the step fails after using the registry")

    return uses_registry


@pytest.mark.parametrize("fail", [False, True], ids=["success", "failure"])
def test_registry_resource_teardown_disposes_the_engine_after_a_materialization(tmp_path: Path, fail: bool) -> None:
    seen: list[tuple[ModelRegistry, int]] = []
    resource = ModelRegistryResource(url=f"sqlite:///{tmp_path / 'registry.db'}")
    result = dg.materialize([_registry_asset(seen, fail)], resources={"registry": resource}, raise_on_error=False)
    assert result.success is not fail
    [(registry, pooled_during_step)] = seen
    assert isinstance(registry, ModelRegistry)
    assert pooled_during_step == 1  # open while the step ran
    assert registry.engine.pool.checkedin() == 0  # disposed by the teardown: no pooled connection left
    # The next run opens its own registry (never a process-wide one).
    dg.materialize([_registry_asset(seen)], resources={"registry": resource})
    assert seen[1][0] is not registry and seen[1][0].engine.pool.checkedin() == 0


def test_registry_resource_teardown_closes_the_registry_after_a_sensor_tick(tmp_path: Path) -> None:
    seen: list[ModelRegistry] = []

    @dg.sensor(asset_selection=[FRAME_KEY])
    def watches_registry(context: dg.SensorEvaluationContext, registry: dg.ResourceParam[ModelRegistry]) -> None:
        registry.production_version("m")
        seen.append(registry)

    resource = ModelRegistryResource(url=f"sqlite:///{tmp_path / 'registry.db'}")
    with dg.build_sensor_context(resources={"registry": resource}) as context:
        watches_registry(context)
        assert seen[0].engine.pool.checkedin() == 1
    assert seen[0].engine.pool.checkedin() == 0


def test_registry_resource_open_is_the_one_way_outside_dagster(tmp_path: Path) -> None:
    resource = ModelRegistryResource(url=f"sqlite:///{tmp_path / 'registry.db'}")
    with resource.open() as registry:
        assert registry.production_version("m") is None
        assert registry.engine.pool.checkedin() == 1
    assert registry.engine.pool.checkedin() == 0
    assert resource.open() is not resource.open()  # no process-wide cache


# -- one reader of stored values ------------------------------------------------------------------------------------


def _io_manager(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> FrameIOManager:
    if kind == "local":
        return FrameIOManager(base_dir=str(tmp_path / "assets"))
    bucket, _ = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("s3_endpoint")
    return S3FrameIOManager(base_dir=f"s3://{bucket}/mlops/assets", s3=S3Resource(endpoint_url=endpoint))


def _graph(read: Callable[[str, pd.DataFrame, dict, FrameIOManager], None]) -> list[dg.AssetsDefinition]:
    """A frame and a record per partition (different per partition) and a reader of both, by input and by key."""

    @dg.asset(key=FRAME_KEY, partitions_def=PARTS)
    def frame(context: dg.AssetExecutionContext) -> pd.DataFrame:
        n = 2 if context.partition_key == "p1" else 3
        return pd.DataFrame({"id": range(n), "x": [0.5 * i for i in range(n)], "tag": [context.partition_key] * n})

    @dg.asset(key=RECORD_KEY, partitions_def=PARTS, ins={"frame": dg.AssetIn(key=FRAME_KEY)})
    def record(context: dg.AssetExecutionContext, frame: pd.DataFrame) -> dict:
        return {"rows": len(frame), "partition": context.partition_key, "mean": float(frame["x"].mean())}

    @dg.asset(
        key=["m", "reader"],
        partitions_def=PARTS,
        ins={"frame": dg.AssetIn(key=FRAME_KEY), "record": dg.AssetIn(key=RECORD_KEY)},
    )
    def reader(
        context: dg.AssetExecutionContext,
        frame: pd.DataFrame,
        record: dict,
        io_manager: dg.ResourceParam[FrameIOManager],
    ) -> None:
        read(context.partition_key, frame, record, io_manager)

    return [frame, record, reader]


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_load_input_and_load_value_return_the_same_value(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    by_input: dict[str, tuple[pd.DataFrame, dict]] = {}
    by_key: dict[str, tuple[pd.DataFrame, dict]] = {}

    def read(partition: str, frame: pd.DataFrame, record: dict, io_manager: FrameIOManager) -> None:
        by_input[partition] = (frame, record)
        for p in PARTS.get_partition_keys():  # this partition and the other one, by asset key
            if io_manager.has_value(FRAME_KEY, p):
                by_key[f"{partition}->{p}"] = (
                    io_manager.load_value(FRAME_KEY, p),
                    io_manager.load_value(RECORD_KEY, p),
                )

    manager = _io_manager(kind, tmp_path, request)
    with dg.DagsterInstance.ephemeral() as instance:
        for partition in ("p1", "p2"):
            result = dg.materialize(
                _graph(read), partition_key=partition, resources={"io_manager": manager}, instance=instance
            )
            assert result.success
    assert set(by_key) == {"p1->p1", "p2->p1", "p2->p2"}  # p2 was not stored yet when p1's reader ran
    for reading, (frame, record) in by_key.items():
        p = reading.split("->")[1]
        pd.testing.assert_frame_equal(frame, by_input[p][0])
        assert record == by_input[p][1]
    assert by_input["p1"][1] == {"rows": 2, "partition": "p1", "mean": 0.25}
    assert by_input["p2"][0]["tag"].tolist() == ["p2"] * 3
    projected = manager.load_value(FRAME_KEY, "p2", columns=["x"])
    pd.testing.assert_frame_equal(projected, by_input["p2"][0][["x"]])
    with pytest.raises(TypeError, match=r"m/record.*JSON record"):
        manager.load_value(RECORD_KEY, "p2", columns=["x"])


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_missing_partition_names_the_asset_key_and_the_partition(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    manager = _io_manager(kind, tmp_path, request)
    assert not manager.has_value(FRAME_KEY, "p9")
    with pytest.raises(FileNotFoundError) as raised:
        manager.load_value(FRAME_KEY, "p9")
    message = str(raised.value)
    assert "m/frame" in message and "'p9'" in message and manager.location(FRAME_KEY, "p9") in message
    # Through load_input: the reader of a partition whose upstream value is not stored fails with the same message.
    frame, record, reader = _graph(lambda *_: None)
    with dg.DagsterInstance.ephemeral() as instance:
        result: Any = dg.materialize(
            [frame, record, reader],
            selection=[reader],
            partition_key="p2",
            resources={"io_manager": manager},
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    text = f"{error.message} {error.cause.message if error.cause else ''}"
    assert "FileNotFoundError" in text and "m/frame" in text and "'p2'" in text
