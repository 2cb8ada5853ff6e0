"""The landing sensor of one model, invoked directly with dg.build_sensor_context against a real (ephemeral) instance.

The environment's ``landing`` resource is the landing ROOT; the synthetic model lands from ``<root>/synthetic/``.
"""

import os

import dagster as dg
import pytest

from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets.resources import LandingZone, ModelRegistryResource
from mlops_assets.tags import DATA_VERSION_TAG, MODEL_TAG, REASON_TAG
from mlops_assets_tests.support import model_graph

pytestmark = pytest.mark.wiring

#: The synthetic model's graph: sensor ``synthetic__landing_sensor``, partitions ``synthetic__data_versions``.
G = model_graph("synthetic")
landing_sensor = next(s for s in G.defs.sensors or [] if s.name == G.name("landing_sensor"))


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def model_landing(tmp_path):
    """The synthetic model's landing folder under the landing root ``tmp_path / "landing"``, created."""
    folder = tmp_path / "landing" / G.model.name
    folder.mkdir(parents=True)
    return folder


def tick(instance, landing_root, cursor=None) -> dg.SensorResult:
    """One tick with ``landing_root`` as the landing root, applying the partition requests as the daemon would."""
    # Entered: the registry resource is opened for the tick and closed by its teardown when the context exits.
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "landing": LandingZone(directory=str(landing_root)),
            "registry": ModelRegistryResource(url=f"sqlite:///{landing_root.parent / 'registry.db'}"),
        },
    ) as context:
        result = landing_sensor(context)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def test_new_file_becomes_a_partition_and_one_run_request(tmp_path, instance):
    landing = model_landing(tmp_path)
    f = landing / "v1.csv"
    f.write_bytes(b"id,y\n1,0\n")
    result = tick(instance, landing.parent)
    key = version_key("v1.csv", file_digest(f))
    requests = result.run_requests or []
    assert [r.partition_key for r in requests] == [key]
    request = requests[0]
    assert request.run_key and key in request.run_key
    assert request.tags[REASON_TAG] == "new_data"
    assert request.tags[DATA_VERSION_TAG] == key
    assert request.tags[MODEL_TAG] == "synthetic"
    assert request.job_name == G.name("lifecycle_job")  # nothing in production: the first version trains
    assert instance.get_dynamic_partitions(G.partitions_name) == [key]


def test_with_a_production_model_new_data_is_ingested_without_training(tmp_path, instance):
    from mlops_assets.storage.artifacts.store import ArtifactRef
    from mlops_assets.storage.registry import Lineage, ModelRegistry

    landing = model_landing(tmp_path)
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'registry.db'}")
    ref = ArtifactRef(uri="file:///m", sha256="a" * 64, size=1)
    registry.register_version("synthetic", ref, Lineage(("v0",), "run", "code", "sha", "spec"), {}, {})
    registry.transition("synthetic", 1, "Staging", actor="t", reason="t", evidence={})
    registry.transition("synthetic", 1, "Production", actor="t", reason="t", evidence={})
    (landing / "v2.csv").write_bytes(b"id,y\n1,0\n")
    (request,) = tick(instance, landing.parent).run_requests or []
    assert request.job_name == G.name("ingest_job")
    assert request.tags[REASON_TAG] == "new_data"


def test_same_file_again_does_nothing_even_without_cursor(tmp_path, instance):
    landing = model_landing(tmp_path)
    (landing / "v1.csv").write_bytes(b"id,y\n1,0\n")
    first = tick(instance, landing.parent)
    again = tick(instance, landing.parent, cursor=first.cursor)
    assert again.run_requests == [] and not again.dynamic_partitions_requests
    # A lost cursor must not re-register: the instance's partitions are the source of truth. (Without a cursor and
    # without any run of the version, the version's run is requested again under the first tick's run key, which
    # the daemon skips when that run exists: see test_a_version_registered_by_a_lost_tick_gets_its_run.)
    _record_landing_run(instance, first.run_requests[0].partition_key)  # type: ignore[index]
    fresh = tick(instance, landing.parent, cursor=None)
    assert fresh.run_requests == [] and not fresh.dynamic_partitions_requests


def _record_landing_run(instance: dg.DagsterInstance, key: str) -> None:
    """A finished landing run of ``key`` in ``instance`` (what the daemon creates for a landing request)."""

    @dg.asset(name="landing_run_stand_in")
    def stand_in() -> None:
        return None

    tags = {REASON_TAG: "new_data", DATA_VERSION_TAG: key, MODEL_TAG: G.model.name}
    assert dg.materialize([stand_in], instance=instance, tags=tags).success


def test_a_version_registered_by_a_lost_tick_gets_its_run(tmp_path, instance):
    """The daemon adds a tick's partitions before it creates its runs and stores the cursor only when the tick
    completes: a tick lost in between leaves the version registered, without a run, and its file out of the cursor.
    The next tick requests its run under the same run key; not once it ran or its raw data was materialized."""
    landing = model_landing(tmp_path)
    f = landing / "v1.csv"
    f.write_bytes(b"id,y\n1,0\n")
    lost = tick(instance, landing.parent)  # partitions applied, runs and cursor lost
    (lost_request,) = lost.run_requests or []
    key = version_key("v1.csv", file_digest(f))

    retried = tick(instance, landing.parent, cursor=None)
    (request,) = retried.run_requests or []
    assert (request.partition_key, request.run_key) == (key, lost_request.run_key)
    assert not retried.dynamic_partitions_requests and request.tags[REASON_TAG] == "new_data"
    # Once stored, the cursor has the file: nothing more.
    assert tick(instance, landing.parent, cursor=retried.cursor).run_requests == []

    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=G.key("raw_data"), partition=key))
    assert tick(instance, landing.parent, cursor=None).run_requests == []  # its raw data is there: it ran


def test_same_bytes_under_another_name_do_nothing(tmp_path, instance):
    landing = model_landing(tmp_path)
    (landing / "v1.csv").write_bytes(b"id,y\n1,0\n")
    first = tick(instance, landing.parent)
    (landing / "copy_of_v1.csv").write_bytes(b"id,y\n1,0\n")
    assert tick(instance, landing.parent, cursor=first.cursor).run_requests == []


def test_changed_bytes_are_a_new_version(tmp_path, instance):
    landing = model_landing(tmp_path)
    f = landing / "v1.csv"
    f.write_bytes(b"id,y\n1,0\n")
    first = tick(instance, landing.parent)
    f.write_bytes(b"id,y\n1,0\n2,1\n")
    os.utime(f, ns=(1, 1))  # a different mtime as well as size: the cursor must not mask the change
    second = tick(instance, landing.parent, cursor=first.cursor)
    assert [r.partition_key for r in second.run_requests or []] == [version_key("v1.csv", file_digest(f))]
    assert len(instance.get_dynamic_partitions(G.partitions_name)) == 2


def test_partial_uploads_and_other_files_are_ignored(tmp_path, instance):
    landing = model_landing(tmp_path)
    (landing / ".v1.csv.part").write_bytes(b"id,y\n1,")
    (landing / "notes.txt").write_text("hello")
    result = tick(instance, landing.parent)
    assert result.run_requests == []
    assert instance.get_dynamic_partitions(G.partitions_name) == []


def test_several_new_files_in_one_tick_in_name_order(tmp_path, instance):
    landing = model_landing(tmp_path)
    for i in (2, 1, 3):
        (landing / f"v{i}.parquet").write_bytes(f"content {i}".encode())
    result = tick(instance, landing.parent)
    requests = result.run_requests or []
    assert [(r.partition_key or "").split("__")[0] for r in requests] == ["v1", "v2", "v3"]
    assert len({r.run_key for r in requests}) == 3


def test_missing_landing_folder_is_empty_not_an_error(tmp_path, instance):
    result = tick(instance, tmp_path / "does-not-exist")
    assert result.run_requests == []
