"""The S3 forms of the landing zone and the IO manager (writer and reader of stored values), against moto S3."""

import hashlib
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster_aws.s3 import S3Resource

from mlops_assets.ml.versions import version_key
from mlops_assets.resources import LandingZone, ModelRegistryResource
from mlops_assets.s3_resources import S3FrameIOManager, S3LandingZone
from mlops_assets.tags import DATA_VERSION_TAG
from mlops_assets_tests.support import model_graph

pytestmark = pytest.mark.wiring

#: The synthetic model's graph: it lands from ``<landing root>/synthetic/``.
G = model_graph("synthetic")
landing_sensor = next(s for s in G.defs.sensors or [] if s.name == G.name("landing_sensor"))


@pytest.fixture
def zone(s3_bucket, s3_endpoint) -> S3LandingZone:
    bucket, _ = s3_bucket
    return S3LandingZone(directory=f"s3://{bucket}/landing/", s3=S3Resource(endpoint_url=s3_endpoint))


def _put(s3_bucket, key: str, body: bytes) -> None:
    bucket, client = s3_bucket
    client.put_object(Bucket=bucket, Key=key, Body=body)


def test_scan_lists_only_landable_objects_directly_under_the_prefix(zone: S3LandingZone, s3_bucket) -> None:
    assert isinstance(zone, LandingZone)
    assert zone.scan() == []
    _put(s3_bucket, "landing/v2.csv", b"id,y\n2,1\n")
    _put(s3_bucket, "landing/v1.parquet", b"PAR1")
    for ignored in ("landing/.v3.csv", "landing/v3.csv.part", "landing/_tmp.csv", "landing/sub/v4.csv", "other/v5.csv"):
        _put(s3_bucket, ignored, b"x")
    files = zone.scan()
    assert [f.name for f in files] == ["v1.parquet", "v2.csv"]
    v2 = files[1]
    assert v2.size == len(b"id,y\n2,1\n")
    assert v2.mtime_ns > 0 and v2.mtime_ns % 1000 == 0
    assert v2.etag == hashlib.md5(b"id,y\n2,1\n").hexdigest()  # single-part upload


def test_digest_fetch_and_locate(zone: S3LandingZone, s3_bucket, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the landing cache lives under the temp dir
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    body = b"id,y\n1,0\n2,1\n"
    _put(s3_bucket, "landing/v1.csv", body)
    digest = hashlib.sha256(body).hexdigest()
    assert zone.digest("v1.csv") == digest
    with zone.fetch("v1.csv") as path:
        assert path.name == "v1.csv" and path.read_bytes() == body
    assert not path.exists()
    with pytest.raises(FileNotFoundError, match="not in the landing zone"), zone.fetch("nope.csv"):
        pass

    key = version_key("v1.csv", digest)
    located = zone.locate(key)
    assert located.read_bytes() == body and located.name == "v1.csv"
    assert str(tmp_path) in str(located)
    # Bytes changed after landing: the old version can no longer be located (it lands as a new version).
    _put(s3_bucket, "landing/v1.csv", b"id,y\n9,9\n")
    with pytest.raises(FileNotFoundError, match="no landed object holds data version"):
        zone.locate(key)
    assert zone.uri("v1.csv") == f"s3://{zone.bucket}/landing/v1.csv"


def test_landing_sensor_registers_an_s3_object(zone: S3LandingZone, s3_bucket, tmp_path: Path) -> None:
    resources = {
        "landing": zone,  # the landing root: the model's objects are under landing/synthetic/
        "registry": ModelRegistryResource(url=f"sqlite:///{tmp_path / 'registry.db'}"),
    }
    body = b"id,y\n1,0\n"
    _put(s3_bucket, "landing/synthetic/v1.csv", body)
    key = version_key("v1.csv", hashlib.sha256(body).hexdigest())
    with dg.DagsterInstance.ephemeral() as instance:
        # S3 resources are context-managed (dagster-aws opens the client in a setup step): use the context as one.
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = landing_sensor(context)
        assert isinstance(result, dg.SensorResult)
        requests = result.run_requests or []
        assert [r.partition_key for r in requests] == [key]
        assert requests[0].tags[DATA_VERSION_TAG] == key
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        assert instance.get_dynamic_partitions(G.partitions_name) == [key]
        with dg.build_sensor_context(instance=instance, cursor=result.cursor, resources=resources) as context:
            again = landing_sensor(context)
        assert isinstance(again, dg.SensorResult) and again.run_requests == []


def test_io_manager_round_trip(s3_bucket, s3_endpoint) -> None:
    bucket, client = s3_bucket
    s3 = S3Resource(endpoint_url=s3_endpoint)
    parts = dg.StaticPartitionsDefinition(["p1"])

    # Keys as a model's assets have them (``<model>/<asset>``): stored under ``<base>/<model>/<asset>/<partition>``.
    @dg.asset(key=["synthetic", "frame"], partitions_def=parts)
    def frame() -> pd.DataFrame:
        return pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})

    @dg.asset(key=["synthetic", "record"], partitions_def=parts, ins={"frame": dg.AssetIn(key=["synthetic", "frame"])})
    def record(frame: pd.DataFrame) -> dict:
        return {"rows": len(frame)}

    @dg.asset
    def pointer() -> dict:
        return {"ok": True}

    # A live instance, entered: dagster 1.13 leaves a disposed instance's state storage in a context variable.
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [frame, record, pointer],
            partition_key="p1",
            resources={"io_manager": S3FrameIOManager(base_dir=f"s3://{bucket}/mlops/assets", s3=s3)},
            selection=[frame, record],
            instance=instance,
        )
    assert result.success
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["mlops/assets/synthetic/frame/p1.parquet", "mlops/assets/synthetic/record/p1.json"]
    stored = S3FrameIOManager(base_dir=f"s3://{bucket}/mlops/assets", s3=s3)
    frame_key, record_key = dg.AssetKey(["synthetic", "frame"]), dg.AssetKey(["synthetic", "record"])
    pd.testing.assert_frame_equal(stored.load_value(frame_key, "p1"), pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    pd.testing.assert_frame_equal(stored.load_value(frame_key, "p1", columns=["b"]), pd.DataFrame({"b": ["x", "y"]}))
    assert stored.load_value(record_key, "p1") == {"rows": 2}
    assert stored.has_value(frame_key, "p1") and not stored.has_value(frame_key, "p2")
    assert not stored.has_value(dg.AssetKey("frame"), "p1")  # another model's (or an unprefixed) key is another value
    with pytest.raises(FileNotFoundError, match="no stored value"):
        stored.load_value(record_key, "p2")


def test_copies_left_by_a_killed_download_are_removed_by_the_next_one(
    zone: S3LandingZone, s3_bucket, tmp_path: Path, monkeypatch
) -> None:
    import subprocess
    import sys
    import tempfile

    from mlops_assets.s3_resources import FETCH_PREFIX, STAGING_PREFIX, landing_cache_dir

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)
    stale_fetch = tmp_path / f"{FETCH_PREFIX}{dead}-abc"
    stale_fetch.mkdir()
    (stale_fetch / "v1.csv").write_bytes(b"a partial copy")
    body = b"id,y\n1,0\n2,1\n"
    _put(s3_bucket, "landing/v1.csv", body)
    digest = hashlib.sha256(body).hexdigest()
    stale_staging = landing_cache_dir() / f"{STAGING_PREFIX}{dead}-x1"
    stale_staging.mkdir(parents=True)
    (stale_staging / "v1.csv").write_bytes(b"partial")

    with zone.fetch("v1.csv") as path:
        assert path.read_bytes() == body
    assert not stale_fetch.exists()
    assert zone.locate(version_key("v1.csv", digest)).read_bytes() == body
    assert not stale_staging.exists()
