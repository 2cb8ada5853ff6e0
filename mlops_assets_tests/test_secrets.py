"""No secret reaches run config, tags, metadata, the event log, compute logs or any stored file."""

import hashlib
import tempfile
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from mlops_assets.definitions import build_defs
from mlops_assets.environments import environment
from mlops_assets.ml import synthetic
from mlops_assets.ml.registry import ModelRegistry
from mlops_assets.ml.validation import write_frame_atomic
from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets.partitions import DATA_VERSIONS

pytestmark = pytest.mark.slow


def test_hmac_key_never_leaks(tmp_path: Path, monkeypatch):
    canary = f"canary-secret-{uuid.uuid4().hex}"
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MLOPS_ARTIFACT_HMAC_KEY", canary)
    monkeypatch.setenv("MLOPS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MLOPS_SPEC", "synthetic")
    env = environment()
    landing = data_dir / "landing"
    landing.mkdir(parents=True)
    path = write_frame_atomic(synthetic.generate(2500, seed=1), landing / "v1.csv", fmt="csv")
    key = version_key(path.name, file_digest(path))
    (tmp_path / "instance").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "instance")) as instance:
        instance.add_dynamic_partitions(DATA_VERSIONS, [key])
        result = (
            build_defs(env)
            .resolve_job_def("lifecycle_job")
            .execute_in_process(instance=instance, partition_key=key, raise_on_error=False)
        )
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        assert canary not in repr(run.run_config) and canary not in repr(run.tags)
        for entry in instance.all_logs(result.run_id):
            assert canary not in repr(entry), entry.dagster_event_type
    # The key was used: the registered artifact carries an HMAC, and loading needs the same key.
    version = ModelRegistry(f"sqlite:///{data_dir / 'registry.db'}").production_version("synthetic")
    assert version is not None and version.artifact_hmac
    # Nothing written anywhere (instance storage, compute logs, assets, artifacts, registry) holds the key.
    needle = canary.encode()
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and needle in p.read_bytes()]
    assert leaks == []


def test_hmac_key_never_leaks_in_prod(
    tmp_path: Path, monkeypatch, postgres_url: str, s3_bucket, s3_endpoint: str, load_tolerant_synthetic_spec: str
):
    """The same guarantee with MLOPS_ENV=prod: registry on PostgreSQL, storage on (moto) S3."""
    bucket, s3 = s3_bucket
    canary = f"canary-secret-{uuid.uuid4().hex}"
    for name, value in {
        "MLOPS_ENV": "prod",
        "MLOPS_SPEC": load_tolerant_synthetic_spec,
        "MLOPS_REGISTRY_URL": postgres_url,
        "MLOPS_S3_BUCKET": bucket,
        "MLOPS_S3_ENDPOINT_URL": s3_endpoint,
        "MLOPS_ARTIFACT_HMAC_KEY": canary,
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # landed files are cached here: scanned below
    env = environment()
    body = synthetic.generate(2500, seed=1).to_csv(index=False).encode()
    s3.put_object(Bucket=bucket, Key="landing/v1.csv", Body=body)
    key = version_key("v1.csv", hashlib.sha256(body).hexdigest())
    (tmp_path / "instance").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "instance")) as instance:
        instance.add_dynamic_partitions(DATA_VERSIONS, [key])
        result = (
            build_defs(env)
            .resolve_job_def("lifecycle_job")
            .execute_in_process(instance=instance, partition_key=key, raise_on_error=False)
        )
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        assert canary not in repr(run.run_config) and canary not in repr(run.tags)
        for entry in instance.all_logs(result.run_id):
            assert canary not in repr(entry), entry.dagster_event_type
    version = ModelRegistry(postgres_url).production_version("synthetic")
    assert version is not None and version.artifact_hmac and version.artifact_uri.startswith(f"s3://{bucket}/")
    needle = canary.encode()
    objects = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.startswith("artifacts/") for k in objects) and f"assets/raw_data/{key}.parquet" in objects
    assert [k for k in objects if needle in s3.get_object(Bucket=bucket, Key=k)["Body"].read()] == []
    assert [p for p in tmp_path.rglob("*") if p.is_file() and needle in p.read_bytes()] == []
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        tables = sa.inspect(conn).get_table_names()
        for table in tables:
            dump = repr(conn.exec_driver_sql(f'SELECT * FROM "{table}"').fetchall())
            assert canary not in dump, table
    engine.dispose()
    assert tables
