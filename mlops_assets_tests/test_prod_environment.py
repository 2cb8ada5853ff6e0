"""The prod environment: chosen by MLOPS_ENV=prod, every setting from the environment, secrets as EnvVars."""

import os
import re
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mlops_assets.environments import environment, local_environment
from mlops_assets.resources import LandingZone
from mlops_assets.s3_resources import S3ArtifactStoreResource, S3FrameIOManager, S3LandingZone

pytestmark = pytest.mark.wiring

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def prod_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MLOPS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLOPS_ENV", "prod")
    monkeypatch.setenv("MLOPS_SPEC", "synthetic")
    monkeypatch.setenv("MLOPS_REGISTRY_URL", "postgresql+psycopg2://mlops:s3cret@db:5432/registry")
    monkeypatch.setenv("MLOPS_S3_BUCKET", "acme-mlops")
    monkeypatch.setenv("MLOPS_S3_PREFIX", "team-a/")
    monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("MLOPS_ARTIFACT_HMAC_KEY", "hmac-secret")


def test_prod_without_its_variables_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_ENV", "prod")
    monkeypatch.delenv("MLOPS_REGISTRY_URL", raising=False)
    monkeypatch.delenv("MLOPS_S3_BUCKET", raising=False)
    with pytest.raises(ValueError, match="MLOPS_REGISTRY_URL, MLOPS_S3_BUCKET"):
        environment()


def test_prod_resources_and_locations(prod_vars: None) -> None:
    env = environment()
    r = env.resources
    assert env.name == "prod"
    assert isinstance(r["landing"], S3LandingZone) and isinstance(r["landing"], LandingZone)
    assert r["landing"].directory == "s3://acme-mlops/team-a/landing/"
    assert r["labels_landing"].directory == "s3://acme-mlops/team-a/labels/"
    assert (
        isinstance(r["artifacts"], S3ArtifactStoreResource)
        and r["artifacts"].root == "s3://acme-mlops/team-a/artifacts"
    )
    assert isinstance(r["io_manager"], S3FrameIOManager) and r["io_manager"].base_dir == "s3://acme-mlops/team-a/assets"
    assert "stored_assets" not in r  # the IO manager is the one reader of stored values
    assert env.executor is dg.in_process_executor


def test_prod_secrets_are_env_vars_not_values(prod_vars: None) -> None:
    r = environment().resources
    # The registry URL (it may carry a password) and the HMAC key are resolved only at run time.
    assert r["registry"].url == dg.EnvVar("MLOPS_REGISTRY_URL")
    assert r["artifacts"].hmac_key == dg.EnvVar("MLOPS_ARTIFACT_HMAC_KEY")
    assert r["landing"].s3.endpoint_url == dg.EnvVar("MLOPS_S3_ENDPOINT_URL")
    # No credential is configuration: boto3 reads them from the process environment or the role.
    s3 = r["landing"].s3
    assert s3.aws_access_key_id is None and s3.aws_secret_access_key is None and s3.aws_session_token is None
    shown = repr(r)
    assert "s3cret" not in shown and "hmac-secret" not in shown


def test_prod_definitions_load_with_multiprocess_executor(prod_vars: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_assets.definitions import build_defs
    from mlops_assets.model import MLModel

    monkeypatch.setenv("MLOPS_EXECUTOR", "multiprocess")
    monkeypatch.setenv("MLOPS_MAX_CONCURRENT_STEPS", "2")
    env = environment()
    # Every packaged model (the components), and the one model MLOPS_SPEC serves (single-model deployments).
    for defs, models in (
        (build_defs(env), ("flights", "synthetic")),
        (build_defs(env, [MLModel.from_spec(os.environ["MLOPS_SPEC"])]), ("synthetic",)),
    ):
        for name in models:
            assert defs.resolve_job_def(f"{name}__lifecycle_job").executor_def.name == "multiprocess"
            assert defs.resolve_sensor_def(f"{name}__landing_sensor") is not None
    monkeypatch.setenv("MLOPS_EXECUTOR", "threads")
    with pytest.raises(ValueError, match="MLOPS_EXECUTOR='threads'"):
        environment()


def test_invalid_bucket_name_is_refused(prod_vars: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_S3_BUCKET", "Not_A_Bucket")
    with pytest.raises(ValueError, match="not a valid bucket name"):
        environment()


def test_local_has_a_labels_landing_folder(tmp_path: Path) -> None:
    r = local_environment(tmp_path).resources
    assert type(r["labels_landing"]) is LandingZone
    assert Path(r["labels_landing"].directory) == tmp_path / "labels"
    assert Path(r["landing"].directory) == tmp_path / "landing"


def test_deploy_instance_yaml_is_valid_and_uses_psycopg2() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    db = config["storage"]["postgres"]["postgres_db"]
    assert db["scheme"] == "postgresql+psycopg2"
    # Nothing deployment-specific is written in the file: every connection setting comes from the environment.
    assert all(
        isinstance(db[k], dict) and "env" in db[k] for k in ("username", "password", "hostname", "port", "db_name")
    )
    assert config["telemetry"] == {"enabled": False}
    assert config["run_retries"]["retry_on_asset_or_op_failure"] is True
    assert config["concurrency"]["pools"]["default_limit"] == 1
    # The file is loaded for real (schema and all) by test_prod_integration.py.


def test_env_example_lists_every_variable_the_code_reads() -> None:
    example = (ROOT / ".env.example").read_text()
    listed = {line.split("=", 1)[0].lstrip("# ").strip() for line in example.splitlines() if "=" in line}
    sources = [
        (ROOT / "mlops_assets" / "environments.py").read_text(),
        (ROOT / "deploy" / "dagster.yaml").read_text(),
        (ROOT / "deploy" / "workspace.yaml").read_text(),
    ]
    used = set()
    for text in sources:
        used |= set(re.findall(r"\b((?:MLOPS|DAGSTER_PG|AWS)_[A-Z0-9_]+)\b", text))
    used |= {"DAGSTER_HOME"}
    assert used - listed == set(), f"missing from .env.example: {sorted(used - listed)}"
