"""No secret reaches run config, tags, metadata, the event log, compute logs, any stored file or a resource's repr.

Canaries: the artifact HMAC key, the registry's PostgreSQL password (with ``@ : / % # ?`` in it) and the S3 secret
access key; and a registry URL with an un-encoded ``@`` in its password leaks no fragment into failure events.
"""

import hashlib
import tempfile
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from mlops_assets.definitions import build_defs
from mlops_assets.demo_data import synthetic
from mlops_assets.environments import environment
from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets.model import MLModel
from mlops_assets.storage.files import write_frame_atomic
from mlops_assets.storage.registry import ModelRegistry
from mlops_assets_tests.support import model_graph

#: Every character with a meaning in a URL (authority, path, query, fragment, escapes).
RESERVED = "@:/%#?"


def _resolved_reprs(resources: dict) -> str:
    """repr and str of every resource as a run's code receives it (EnvVars resolved; the registry and artifact
    resources hand out a ``ModelRegistry`` and an ``ArtifactStore``)."""
    with dg.build_resources(resources) as built:
        return " ".join(f"{getattr(built, n)!r} {getattr(built, n)!s}" for n in resources if n != "io_manager")


pytestmark = pytest.mark.e2e

#: The synthetic model's graph (keys ``synthetic/<asset>``, job ``synthetic__lifecycle_job``).
G = model_graph("synthetic")


def test_hmac_key_never_leaks(tmp_path: Path, monkeypatch):
    canary = f"canary-secret-{uuid.uuid4().hex}"
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MLOPS_ARTIFACT_HMAC_KEY", canary)
    monkeypatch.setenv("MLOPS_DATA_DIR", str(data_dir))
    env = environment()
    landing = data_dir / "landing" / "synthetic"  # the model's folder under the landing root
    landing.mkdir(parents=True)
    path = write_frame_atomic(synthetic.generate(2500, seed=1), landing / "v1.csv", fmt="csv")
    key = version_key(path.name, file_digest(path))
    (tmp_path / "instance").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "instance")) as instance:
        instance.add_dynamic_partitions(G.partitions_name, [key])
        result = (
            build_defs(env, [MLModel.from_spec("synthetic")])
            .resolve_job_def(G.name("lifecycle_job"))
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


def test_hmac_key_registry_password_and_s3_secret_never_leak_in_prod(
    tmp_path: Path, monkeypatch, postgres_url: str, s3_bucket, s3_endpoint: str, synthetic_spec: str
):
    """The same guarantee with MLOPS_ENV=prod: registry on PostgreSQL, storage on (moto) S3.

    Three canaries: the HMAC key, the registry password (reserved URL characters included, given as
    MLOPS_REGISTRY_PASSWORD and set on the URL as a part) and the S3 secret access key.
    """
    bucket, s3 = s3_bucket
    hmac_canary = f"canary-secret-{uuid.uuid4().hex}"
    password = f"pw{RESERVED}{uuid.uuid4().hex}"  # trust authentication: accepted, and must survive the URL
    s3_secret = f"s3secret{uuid.uuid4().hex}"  # moto accepts any credentials
    for name, value in {
        "MLOPS_ENV": "prod",
        "MLOPS_REGISTRY_URL": sa.make_url(postgres_url).set(password=None).render_as_string(hide_password=False),
        "MLOPS_REGISTRY_PASSWORD": password,
        "MLOPS_S3_BUCKET": bucket,
        "MLOPS_S3_ENDPOINT_URL": s3_endpoint,
        "MLOPS_ARTIFACT_HMAC_KEY": hmac_canary,
        "AWS_SECRET_ACCESS_KEY": s3_secret,
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # landed files are cached here: scanned below
    env = environment()
    shown = _resolved_reprs(env.resources)
    assert "***" in shown  # the secrets are there, hidden
    for canary in (hmac_canary, password, s3_secret):
        assert canary not in shown and canary not in repr(env.resources)
    body = synthetic.generate(2500, seed=1).to_csv(index=False).encode()
    s3.put_object(Bucket=bucket, Key="landing/synthetic/v1.csv", Body=body)  # the model's prefix under the root
    key = version_key("v1.csv", hashlib.sha256(body).hexdigest())
    (tmp_path / "instance").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "instance")) as instance:
        instance.add_dynamic_partitions(G.partitions_name, [key])
        result = (
            build_defs(env, [MLModel.from_spec(synthetic_spec)])
            .resolve_job_def(G.name("lifecycle_job"))
            .execute_in_process(instance=instance, partition_key=key, raise_on_error=False)
        )
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        logs = [repr(entry) for entry in instance.all_logs(result.run_id)]
        for canary in (hmac_canary, password, s3_secret):
            assert canary not in repr(run.run_config) and canary not in repr(run.tags)
            assert [log for log in logs if canary in log] == []
    version = ModelRegistry(postgres_url).production_version("synthetic")
    assert version is not None and version.artifact_hmac and version.artifact_uri.startswith(f"s3://{bucket}/")
    objects = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.startswith("artifacts/") for k in objects) and f"assets/synthetic/raw_data/{key}.parquet" in objects
    bodies = {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in objects}
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        tables = sa.inspect(conn).get_table_names()
        dumps = {t: repr(conn.exec_driver_sql(f'SELECT * FROM "{t}"').fetchall()) for t in tables}
    engine.dispose()
    assert tables
    for canary in (hmac_canary, password, s3_secret):
        needle = canary.encode()
        assert [k for k, body in bodies.items() if needle in body] == []
        assert [p for p, body in files.items() if needle in body] == []
        assert [t for t, dump in dumps.items() if canary in dump] == []


def test_unencoded_at_in_the_registry_password_leaks_no_fragment_into_failure_events(
    tmp_path: Path, monkeypatch, postgres_url: str
):
    """A registry URL whose password has an un-encoded ``@`` (the definitions' load check bypassed, as a resource
    built by hand would be): the run fails closed (its registry resource does not initialise), and no part of the
    password is in any event, the run's config or tags, or a stored file. SQLAlchemy would read the part after the
    ``@`` as the host name, which psycopg2 then quotes in its connection error ("could not translate host name ...").
    """
    from mlops_assets.environments import prod_environment

    staging_deployment = next(a for a in G.assets if G.key("staging_deployment") in a.keys)

    head, fragment = f"pw{uuid.uuid4().hex[:6]}", f"frag{uuid.uuid4().hex}"
    url = sa.make_url(postgres_url)
    whole = f"postgresql+psycopg2://{url.username}:{head}@{fragment}@{url.host}:{url.port}/{url.database}"
    monkeypatch.setenv("MLOPS_REGISTRY_URL", whole)
    env = prod_environment("acme-mlops-test", dg.EnvVar("MLOPS_REGISTRY_URL"))
    # The registry is opened when the run's resources are initialised: that fails, naming the variables only.
    with pytest.raises(dg.DagsterResourceFunctionError) as raised:
        _resolved_reprs({"registry": env.resources["registry"]})
    assert "un-encoded '@'" in str(raised.value.__cause__)
    assert fragment not in str(raised.value.__cause__) and head not in str(raised.value.__cause__)
    (tmp_path / "instance").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "instance")) as instance:
        result = dg.materialize(
            [staging_deployment],
            resources={"registry": env.resources["registry"]},
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        failures = [e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE"]
        assert failures and "un-encoded '@'" in str(failures[0].event_specific_data.error)  # type: ignore[union-attr]
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        for secret in (fragment, head):
            assert secret not in repr(run.run_config) and secret not in repr(run.tags)
            assert [e.dagster_event_type for e in instance.all_logs(result.run_id) if secret in repr(e)] == []
    for secret in (fragment, head):
        assert [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()] == []
