"""Operations safety (issue 10): stuck runs and pool slots end, no secret fragment leaks, honest exit codes.

* Fault 14: every instance config (repository ``dagster.yaml``, ``deploy/dagster.yaml``, the one the demo writes,
  the Helm values) bounds run time and frees the pool slots of ended runs, loaded through Dagster's own instance
  validation; the retrain triggers ignore in-flight runs older than a bound above that run time.
* Fault 15: a registry password with reserved characters never leaks; an un-encoded ``@`` is refused without
  echoing any part of the password (the run-level canaries are in test_secrets.py).
* Fault 21: ``mlops-demo`` exits non-zero with a one-line reason when no run succeeded or nothing is in production.
"""

import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from mlops_assets import retrain_sensors as rs
from mlops_assets.instance import INSTANCE_CONFIG, ensure_instance
from mlops_assets.ml.triggers import RetrainPolicy, RetrainPolicyError, RetrainRecord, RetrainRequest, decide
from mlops_assets.resources import ArtifactStoreResource, ModelRegistryResource
from mlops_assets.tags import EVIDENCE_TAG
from mlops_assets_tests.test_retrain_sensors import V1, V2, V3, World, no_request, only_request

pytestmark = pytest.mark.wiring

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
#: Every character that has a meaning in a URL's authority, path, query or fragment.
RESERVED = "@:/%#?"


# -- fault 14: run monitoring and pool slots in every instance config ----------------------------------------------


def _assert_bounded(instance: dg.DagsterInstance, where: str) -> None:
    settings = instance.get_settings("run_monitoring")
    assert instance.run_monitoring_enabled, where
    for key in ("max_runtime_seconds", "start_timeout_seconds", "cancel_timeout_seconds"):
        assert isinstance(settings.get(key), int) and settings[key] > 0, (where, key, settings)
    assert instance.run_monitoring_max_runtime_seconds == settings["max_runtime_seconds"]
    # A SIGKILLed step never gives its pool slot back: the monitoring daemon frees it this long after the run ends.
    assert isinstance(settings.get("free_slots_after_run_end_seconds"), int), (where, settings)
    assert settings["free_slots_after_run_end_seconds"] > 0, where
    assert instance.get_settings("concurrency")["pools"]["default_limit"] == 1, where  # the training pool
    # The triggers' bound on in-flight runs is above the longest a run can live before the daemon cancels it.
    bound = RetrainPolicy().max_in_flight_hours * 3600
    assert bound > settings["max_runtime_seconds"] + settings["cancel_timeout_seconds"], where


def test_local_instance_config_bounds_run_time_and_frees_pool_slots(tmp_path: Path) -> None:
    shutil.copyfile(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        _assert_bounded(instance, "dagster.yaml")


def test_demo_instance_config_bounds_run_time_and_frees_pool_slots(tmp_path: Path) -> None:
    home = ensure_instance(tmp_path / "home")
    assert yaml.safe_load((home / "dagster.yaml").read_text()) == INSTANCE_CONFIG
    with dg.DagsterInstance.from_config(str(home)) as instance:
        _assert_bounded(instance, "mlops_assets.instance.INSTANCE_CONFIG")


def test_prod_instance_config_bounds_run_time_and_frees_pool_slots_and_quotes_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    """deploy/dagster.yaml, loaded by Dagster against a real PostgreSQL, with a password full of reserved characters.

    dagster-postgres builds its URL from the parts (quoting the password): the instance opens, and the password
    is in no file of the instance directory.
    """
    url = sa.make_url(postgres_url)
    canary = f"pg{RESERVED}{uuid.uuid4().hex}"
    for name, value in {
        "DAGSTER_PG_USERNAME": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": canary,  # trust authentication: accepted, and it must survive the URL
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_DB": url.database or "",
    }.items():
        monkeypatch.setenv(name, value)
    shutil.copyfile(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        _assert_bounded(instance, "deploy/dagster.yaml")
        assert instance.get_runs(limit=1) == []
        assert canary not in repr(instance.get_settings("run_monitoring"))
    needle = canary.encode()
    assert [p for p in tmp_path.rglob("*") if p.is_file() and needle in p.read_bytes()] == []


def test_helm_values_mirror_run_monitoring_and_slot_release() -> None:
    values = yaml.safe_load((ROOT / "deploy" / "helm-values.yaml").read_text())
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    prod = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())["run_monitoring"]
    assert monitoring["enabled"] is True
    for helm_key, key in {
        "startTimeoutSeconds": "start_timeout_seconds",
        "cancelTimeoutSeconds": "cancel_timeout_seconds",
        "maxRuntimeSeconds": "max_runtime_seconds",
        "freeSlotsAfterRunEndSeconds": "free_slots_after_run_end_seconds",
        "pollIntervalSeconds": "poll_interval_seconds",
    }.items():
        assert monitoring[helm_key] == prod[key], helm_key
    pools = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())["concurrency"]["pools"]
    assert values["concurrency"]["pools"] == {
        "defaultLimit": pools["default_limit"],
        "granularity": pools["granularity"],
    }


# -- fault 14: triggers ignore in-flight runs older than the bound (pure core, fake clock) -------------------------


def _request(at: datetime, version: str = "v9") -> RetrainRequest:
    return RetrainRequest(reason="drift", data_version=version, model="flights", package_version="1.0", at=at)


def test_an_in_flight_retrain_older_than_the_bound_no_longer_blocks_a_trigger() -> None:
    policy = RetrainPolicy(cooldown_hours=6, max_in_flight_hours=1.5)
    killed = RetrainRecord(at=T0, reason="manual", data_version="v3", status="started", model="flights")
    # Within the bound it is a retrain in progress ...
    young = decide(policy, _request(T0 + timedelta(hours=1)), [killed])
    assert (young.allowed, young.rule) == (False, "in_progress")
    # ... past it, a run the daemon would have cancelled long ago: presumed dead, it neither blocks nor cools down.
    old = decide(policy, _request(T0 + timedelta(hours=2)), [killed])
    assert old.allowed, old.message
    assert "older than 1.5 h" in old.message and "manual on v3" in old.message
    assert old.ignored == ("manual on v3 (started, requested 2026-03-01T12:00:00+00:00)",)


def test_the_in_flight_bound_counts_from_the_start_of_a_run_that_started() -> None:
    policy = RetrainPolicy(max_in_flight_hours=1.5, cooldown_hours=0)
    queued_long = RetrainRecord(
        at=T0, reason="drift", data_version="v3", status="started", model="flights", started_at=T0 + timedelta(hours=1)
    )
    assert decide(policy, _request(T0 + timedelta(hours=2)), [queued_long]).rule == "in_progress"
    assert decide(policy, _request(T0 + timedelta(hours=2, minutes=31)), [queued_long]).allowed


def test_a_presumed_dead_run_still_counts_for_the_daily_cap() -> None:
    policy = RetrainPolicy(max_in_flight_hours=1.5, cooldown_hours=0, max_retrains_per_day=1)
    killed = RetrainRecord(at=T0, reason="manual", data_version="v3", status="started", model="flights")
    decision = decide(policy, _request(T0 + timedelta(hours=3)), [killed])
    assert decision.rule == "daily_cap" and "older than 1.5 h" in decision.message


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "2", True])
def test_the_in_flight_bound_must_be_a_positive_number(bad: Any) -> None:
    with pytest.raises(RetrainPolicyError, match="max_in_flight_hours"):
        RetrainPolicy(max_in_flight_hours=bad)


def test_drift_sensor_ignores_a_killed_manual_retrain_older_than_the_bound_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        world = World(instance, tmp_path)
        world.production(V1)
        world.set_retraining(cooldown_hours=6, max_in_flight_hours=1.5)
        world.labels(V2, V3)
        # A manual retrain whose worker was SIGKILLed: STARTED forever.
        world.launch(
            dg.RunRequest(tags={"mlops/reason": "manual", "mlops/data_version": V2, "mlops/model": "synthetic"}),
            status=dg.DagsterRunStatus.STARTED,
        )
        world.drift(V3)
        assert "already started" in no_request(world.tick("drift_sensor"))
        monkeypatch.setattr(rs, "_now", lambda: datetime.now(UTC) + timedelta(hours=2))
        request = only_request(world.tick("drift_sensor"))
        assert request.partition_key == V3
        assert "ignored_in_flight" in request.tags[EVIDENCE_TAG] and f"manual on {V2}" in request.tags[EVIDENCE_TAG]
        world.registry.close()


def _killed_manual_retrain(world: World, version: str) -> None:
    world.launch(
        dg.RunRequest(tags={"mlops/reason": "manual", "mlops/data_version": version, "mlops/model": "synthetic"}),
        status=dg.DagsterRunStatus.STARTED,
    )


@pytest.mark.parametrize("trigger", ["performance", "freshness", "schedule"])
def test_every_retrain_trigger_ignores_a_killed_retrain_older_than_the_bound(
    trigger: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dg.instance_for_test() as instance:
        world = World(instance, tmp_path)
        world.production(V1)
        world.set_retraining(cooldown_hours=6, max_in_flight_hours=1.5, max_versions_behind=0)
        world.labels(V2, V3)
        if trigger == "performance":
            world.performance(V3)
        _killed_manual_retrain(world, V2)

        def fire() -> dg.RunRequest | str:
            if trigger == "schedule":
                # As a context manager: it leaves no instance behind as Dagster's current defs-state storage.
                with dg.build_schedule_context(
                    instance=instance, resources=world.resources, scheduled_execution_time=datetime.now(UTC)
                ) as context:
                    out = world.schedule("retrain_schedule")(context)
                assert isinstance(out, dg.RunRequest | dg.SkipReason)
                return out if isinstance(out, dg.RunRequest) else str(out.skip_message)
            result = world.tick("performance_sensor" if trigger == "performance" else "freshness_sensor")
            return only_request(result) if result.run_requests else no_request(result)

        blocked = fire()
        assert isinstance(blocked, str) and "already started" in blocked
        monkeypatch.setattr(rs, "_now", lambda: datetime.now(UTC) + timedelta(hours=2))
        request = fire()
        assert isinstance(request, dg.RunRequest), request
        assert request.partition_key == V3 and f"manual on {V2}" in request.tags[EVIDENCE_TAG]
        world.registry.close()


# -- fault 15: secrets in URLs ---------------------------------------------------------------------------------------


def test_registry_url_with_an_unencoded_at_in_the_password_is_refused_without_echoing_it() -> None:
    fragment = f"frag{uuid.uuid4().hex[:8]}"
    resource = ModelRegistryResource(url=f"postgresql+psycopg2://mlops:p@ss{fragment}@127.0.0.1:5432/registry")
    with pytest.raises(ValueError) as raised:
        resource.open()
    message = str(raised.value)
    assert "un-encoded" in message and "MLOPS_REGISTRY_PASSWORD" in message
    assert fragment not in message and "p@ss" not in message
    assert fragment not in repr(resource) and fragment not in str(resource)


def test_prod_environment_refuses_an_unencoded_at_in_the_registry_password_when_it_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlops_assets.environments import environment

    fragment = f"frag{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLOPS_ENV", "prod")
    monkeypatch.setenv("MLOPS_S3_BUCKET", "acme-mlops-test")
    monkeypatch.setenv("MLOPS_REGISTRY_URL", f"postgresql+psycopg2://mlops:x@{fragment}@db.internal:5432/registry")
    with pytest.raises(ValueError, match="MLOPS_REGISTRY_URL") as raised:
        environment()
    assert fragment not in str(raised.value) and "refusing to start" in str(raised.value)
    # Percent-encoded, the same password is accepted (and stays behind the EnvVar).
    monkeypatch.setenv("MLOPS_REGISTRY_URL", f"postgresql+psycopg2://mlops:x%40{fragment}@db.internal:5432/registry")
    assert environment().resources["registry"].url == dg.EnvVar("MLOPS_REGISTRY_URL")


def test_registry_password_with_reserved_characters_is_set_from_its_own_variable(postgres_url: str) -> None:
    canary = f"reg{RESERVED}{uuid.uuid4().hex}"
    without = sa.make_url(postgres_url).set(password=None).render_as_string(hide_password=False)
    resource = ModelRegistryResource(url=without, password=canary)
    registry = resource.open()
    assert registry.production_version("anything") is None  # connected (trust authentication accepts it)
    assert canary not in repr(resource) and canary not in str(resource) and canary not in repr(registry)
    registry.close()


def test_resolved_secret_resources_do_not_show_their_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    canary = f"c{uuid.uuid4().hex}"
    monkeypatch.setenv("T_URL", f"postgresql+psycopg2://u:{canary}@h/db")
    monkeypatch.setenv("T_PASSWORD", canary)
    monkeypatch.setenv("T_HMAC", canary)
    resources = {
        "registry": ModelRegistryResource(url=dg.EnvVar("T_URL"), password=dg.EnvVar("T_PASSWORD")),
        "artifacts": ArtifactStoreResource(root=str(tmp_path), hmac_key=dg.EnvVar("T_HMAC")),
    }
    with dg.build_resources(resources) as built:
        for name in resources:
            assert canary not in repr(getattr(built, name)) and canary not in str(getattr(built, name)), name


# -- fault 21: honest exit codes ---------------------------------------------------------------------------------------


def _outcome(status: str, production: int | None = None) -> Any:
    from mlops_assets.demo import Outcome

    return Outcome(
        file="f.csv",
        version="f__abc",
        status=status,
        gates_passed=0,
        gates_total=0,
        failed_gates=(),
        model_version=None,
        production=production,
    )


def test_demo_exit_is_nonzero_when_no_run_succeeded() -> None:
    from mlops_assets.demo import exit_decision

    code, reason = exit_decision([_outcome("FAILURE")] * 4, production=None, model="flights")
    assert code != 0 and reason is not None and "\n" not in reason
    assert "no run succeeded" in reason and "4 landed" in reason


def test_demo_exit_is_nonzero_when_nothing_is_in_production() -> None:
    from mlops_assets.demo import exit_decision

    code, reason = exit_decision([_outcome("SUCCESS"), _outcome("FAILURE")], production=None, model="flights")
    assert code != 0 and reason is not None and "no flights model is in Production" in reason


def test_demo_exit_is_zero_when_a_run_succeeded_and_a_model_is_in_production() -> None:
    from mlops_assets.demo import exit_decision

    assert exit_decision([_outcome("FAILURE"), _outcome("SUCCESS", 1)], production=1, model="flights") == (0, None)
    # Nothing new landed (everything was landed before) and production holds a model: fine.
    assert exit_decision([], production=3, model="flights") == (0, None)


@pytest.mark.e2e
def test_demo_main_exits_nonzero_with_one_line_reason_when_the_only_version_fails_its_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlops_assets.demo import main
    from mlops_assets.demo_data import synthetic
    from mlops_assets.ml.spec import packaged_spec_path

    source = tmp_path / "source"
    source.mkdir()
    frame = synthetic.generate(300, seed=3).drop(columns=["age"])  # a required column is missing: schema fails
    frame.to_csv(source / "broken_v001.csv", index=False)
    for name in [k for k in os.environ if k.startswith(("DAGSTER_", "MLOPS_"))]:
        monkeypatch.delenv(name)
    for name in ("DAGSTER_HOME", "MLOPS_ENV", "MLOPS_SPEC", "MLOPS_DATA_DIR"):
        monkeypatch.setenv(name, "")  # main() sets these for its daemon: restored after the test
    code = main(
        [
            "--spec",
            str(packaged_spec_path("synthetic")),
            "--source",
            str(source),
            "--dagster-home",
            str(tmp_path / "home"),
            "--timeout",
            "300",
            "--quiet",
            "3",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1, captured.out + captured.err
    lines = [line for line in captured.err.splitlines() if line.startswith("mlops-demo:")]
    assert len(lines) == 1 and "no run succeeded" in lines[0], captured.err


def test_steps_that_move_shared_state_take_a_pool_slot_limited_to_one(tmp_path: Path) -> None:
    # Training is the heavy step (one at a time across runs); a model's rollout is moved by its ingest runs and its
    # labels runs alike, which land independently: two rollout_steps at once would read the same state and the
    # registry would refuse the second move, failing that run. Each model's rollout steps share a pool of its own.
    from mlops_assets.definitions import build_defs
    from mlops_assets.environments import local_environment

    defs = build_defs(local_environment(tmp_path))
    pools = {}
    for model in ("flights", "synthetic"):
        for asset in ("rollout_step", "candidate_model"):
            pools[model, asset] = defs.get_assets_def(dg.AssetKey([model, asset])).op.pool
    assert pools == {
        ("flights", "rollout_step"): "flights__rollout",
        ("synthetic", "rollout_step"): "synthetic__rollout",
        ("flights", "candidate_model"): "training",
        ("synthetic", "candidate_model"): "training",
    }
    # No explicit limit for these pools anywhere: the default limit of every instance config we ship applies.
    deploy = yaml.safe_load((Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml").read_text())
    for config in (INSTANCE_CONFIG, deploy):
        assert config["concurrency"]["pools"]["default_limit"] == 1
        assert set(config["concurrency"]["pools"]) <= {"default_limit", "granularity"}
