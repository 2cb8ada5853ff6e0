"""No secret reaches run config, tags, metadata, the event log, compute logs or any stored file."""

import uuid
from pathlib import Path

import dagster as dg
import pytest

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
