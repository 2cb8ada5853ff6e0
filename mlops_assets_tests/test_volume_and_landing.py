"""Issue 10, faults 8, 19 and 12: the volume gate and ids across versions, protected attributes as inputs,
and re-landing a version whose partition was deleted."""

import dataclasses
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mlops_assets.demo_data import synthetic
from mlops_assets.environments import local_environment
from mlops_assets.ml.features import build_features
from mlops_assets.ml.policy import Policy, PolicyError, policy_from_dict
from mlops_assets.ml.spec import PACKAGED_SPECS, SpecError, load_spec, packaged_spec_path, spec_from_dict
from mlops_assets.ml.validation import coerce_to_schema
from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets.model import MLModel
from mlops_assets.resources import LandingZone, ModelRegistryResource
from mlops_assets.storage.files import write_frame_atomic
from mlops_assets.tags import DATA_VERSION_TAG, REASON_TAG
from mlops_assets_tests.support import ModelGraph, model_graph

pytestmark = pytest.mark.wiring

#: The packaged synthetic model (``synthetic/raw_data``, ``synthetic__data_versions``, ...).
SYNTHETIC = model_graph("synthetic")


def _checks_on(g: ModelGraph, asset: str) -> list[dg.AssetChecksDefinition]:
    """The checks definitions of the model's ``asset`` (e.g. every raw_data check)."""
    return [c for c in g.checks if any(k.asset_key == g.key(asset) for k in c.check_keys)]


def _check(g: ModelGraph, asset: str, name: str) -> dg.AssetChecksDefinition:
    """The check ``name`` on the model's ``asset``, as built in the model's graph."""
    return next(c for c in g.checks if dg.AssetCheckKey(g.key(asset), name) in c.check_keys)


def _gate_result(g: ModelGraph, asset: str, name: str, **inputs: object) -> dg.AssetCheckResult:
    """The result of check ``name`` on ``asset`` invoked directly (its step may evaluate several checks)."""
    with dg.build_op_context() as context:
        results = list(_check(g, asset, name)(context, **inputs))
    return next(r for r in results if r.check_name == name)


# --------------------------------------------------------------------------------------------------
# Fault 8: volume_within_bounds and ids_unique_across_versions, on a real instance
# --------------------------------------------------------------------------------------------------


def _spec_file(tmp_path: Path, **top_level) -> Path:
    """The packaged synthetic spec with extra top-level keys, as a YAML file."""
    data = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    data.update(top_level)
    path = tmp_path / "synthetic_custom.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def data_run(tmp_path: Path):
    """land(name, n_rows, start_id) → version key; run(key) materializes raw_data and features with their checks.

    Files land in the synthetic model's landing zone (``<data>/landing/synthetic/``); ``spec`` (a packaged name or a
    spec path, named ``synthetic``) declares the model whose graph runs.
    """
    landing = tmp_path / "data" / "landing" / SYNTHETIC.model.name
    landing.mkdir(parents=True)
    graphs: dict[str, ModelGraph] = {}
    with dg.DagsterInstance.ephemeral() as instance:

        def land(name: str, n_rows: int, start_id: int, seed: int = 1) -> str:
            frame = synthetic.generate(n_rows, seed=seed, start_id=start_id)
            path = write_frame_atomic(frame, landing / name, fmt="csv")
            key = version_key(path.name, file_digest(path))
            instance.add_dynamic_partitions(SYNTHETIC.partitions_name, [key])
            return key

        def run(key: str, spec: str = "synthetic") -> dg.ExecuteInProcessResult:
            g = graphs.setdefault(spec, model_graph(spec))
            assert g.model.name == SYNTHETIC.model.name  # the same model, declared by another spec
            env = local_environment(tmp_path / "data")
            return dg.materialize(
                g.assets_and_checks,
                partition_key=key,
                instance=instance,
                resources=env.resources,
                selection=g.keys("raw_data", "features"),
                raise_on_error=False,
            )

        yield land, run


def _evaluation(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def _materialized(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey | None]:
    return {e.asset_key for e in result.get_asset_materialization_events()}


def test_new_data_gates_are_required_for_promotion_and_the_training_window():
    names = {"volume_within_bounds", "ids_unique_across_versions"}
    raw_data_checks = _checks_on(SYNTHETIC, "raw_data")
    assert names <= {k.name for c in raw_data_checks for k in c.check_keys}
    assert names <= {k.name for k in SYNTHETIC.model.required_gates}
    assert names <= {k.name for k in SYNTHETIC.model.data_gates}
    assert all(spec.blocking for check in raw_data_checks for spec in check.check_specs)


def test_volume_within_bounds_blocks_ten_times_the_rows_of_the_previous_accepted_version(data_run):
    land, run = data_run
    v1 = land("v1.csv", 300, start_id=0)
    r1 = run(v1)
    assert r1.success
    first = _evaluation(r1, "volume_within_bounds")
    assert first.passed
    assert "first" in first.description and "nothing to compare" in first.description

    # 10x the rows: blocked, both counts in the message, nothing downstream.
    v2 = land("v2.csv", 3000, start_id=300, seed=2)
    r2 = run(v2)
    assert not r2.success
    gate = _evaluation(r2, "volume_within_bounds")
    assert not gate.passed
    assert "3000" in gate.description and "300" in gate.description and v1 in gate.description
    evidence = gate.metadata["evidence"].value
    assert evidence["previous_version"] == v1
    assert (evidence["n_rows"], evidence["previous_rows"], evidence["ratio"]) == (3000, 300, 10.0)
    assert evidence["bounds"] == [0.5, 2.0]
    assert SYNTHETIC.key("features") not in _materialized(r2)

    # The next normal version compares with v1 (the latest *accepted* version), not with the rejected v2.
    v3 = land("v3.csv", 330, start_id=3300, seed=3)
    r3 = run(v3)
    assert r3.success
    gate = _evaluation(r3, "volume_within_bounds")
    assert gate.passed
    evidence = gate.metadata["evidence"].value
    assert evidence["previous_version"] == v1 and evidence["previous_rows"] == 300
    ((skipped),) = evidence["skipped"]
    assert skipped["data_version"] == v2 and skipped["reason"].startswith("volume_within_bounds failed")


def test_volume_bounds_come_from_the_spec_policy(data_run, tmp_path):
    land, run = data_run
    spec = str(_spec_file(tmp_path, policy={"min_rows": 200, "metric_floor": 0.6, "volume_ratio_bounds": [0.1, 20]}))
    v1 = land("v1.csv", 300, start_id=0)
    assert run(v1, spec=spec).success
    v2 = land("v2.csv", 3000, start_id=300, seed=2)
    r2 = run(v2, spec=spec)
    assert r2.success
    assert _evaluation(r2, "volume_within_bounds").metadata["evidence"].value["bounds"] == [0.1, 20.0]


def test_ids_reused_from_an_earlier_version_are_refused_when_ids_are_unique_across_versions(data_run, tmp_path):
    land, run = data_run
    spec = str(_spec_file(tmp_path, id_unique_across_versions=True))
    v1 = land("v1.csv", 300, start_id=0)
    r1 = run(v1, spec=spec)
    assert r1.success and _evaluation(r1, "ids_unique_across_versions").passed
    # ids 250..549: 50 of them were already in v1.
    v2 = land("v2.csv", 300, start_id=250, seed=2)
    r2 = run(v2, spec=spec)
    assert not r2.success
    gate = _evaluation(r2, "ids_unique_across_versions")
    assert not gate.passed
    assert "50" in gate.description and v1 in gate.description and "250" in gate.description
    assert "customer_id" in gate.description
    evidence = gate.metadata["evidence"].value
    assert evidence["n_reused"] == 50
    assert evidence["reused_ids"][0] == {"id": 250, "data_version": v1}
    assert SYNTHETIC.key("features") not in _materialized(r2)
    # Disjoint ids pass, compared only with accepted versions (v1; the rejected v2 is skipped).
    v3 = land("v3.csv", 300, start_id=300, seed=3)
    r3 = run(v3, spec=spec)
    assert r3.success
    evidence = _evaluation(r3, "ids_unique_across_versions").metadata["evidence"].value
    assert evidence["compared_versions"] == [v1]


def test_ids_may_repeat_across_versions_when_the_spec_does_not_say_otherwise(data_run):
    land, run = data_run
    assert run(land("v1.csv", 300, start_id=0)).success
    r2 = run(land("v2.csv", 300, start_id=0, seed=2))
    assert r2.success
    gate = _evaluation(r2, "ids_unique_across_versions")
    assert gate.passed and "id_unique_across_versions" in gate.description


def test_earlier_ids_are_read_from_stored_raw_data_locally_and_on_s3(tmp_path, s3_bucket, s3_endpoint):
    from dagster_aws.s3 import S3Resource

    from mlops_assets.assets.data import _stored_ids
    from mlops_assets.resources import FrameIOManager
    from mlops_assets.s3_resources import S3FrameIOManager

    model = SYNTHETIC.model
    frame = synthetic.generate(50, seed=1, start_id=7)
    local = tmp_path / "assets" / "synthetic" / "raw_data"
    local.mkdir(parents=True)
    frame.to_parquet(local / "v1.parquet", index=False)
    local_io = FrameIOManager(base_dir=str(tmp_path / "assets"))
    assert _stored_ids(model, local_io, "v1", "customer_id").tolist() == list(range(7, 57))
    bucket, client = s3_bucket
    client.put_object(
        Bucket=bucket, Key="mlops/assets/synthetic/raw_data/v1.parquet", Body=frame.to_parquet(index=False)
    )
    stored = S3FrameIOManager(base_dir=f"s3://{bucket}/mlops/assets", s3=S3Resource(endpoint_url=s3_endpoint))
    assert _stored_ids(model, stored, "v1", "customer_id").tolist() == list(range(7, 57))


@pytest.mark.parametrize("bounds", [[0.0, 2.0], [1.5, 2.0], [0.5, 0.9], [2.0, 0.5], [0.5], "0.5-2", [0.5, True]])
def test_volume_ratio_bounds_are_validated(bounds):
    with pytest.raises(PolicyError, match="volume_ratio_bounds"):
        policy_from_dict({"volume_ratio_bounds": bounds}, "spec.yaml")


def test_volume_ratio_bounds_default_and_round_trip():
    assert Policy().data.volume_ratio_bounds == (0.5, 2.0)
    policy = policy_from_dict({"volume_ratio_bounds": [0.25, 4]})
    assert policy.data.volume_ratio_bounds == (0.25, 4.0)
    assert policy.with_overrides({}).data.volume_ratio_bounds == (0.25, 4.0)


def test_id_unique_across_versions_must_be_a_boolean():
    data = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    data["id_unique_across_versions"] = "yes"
    with pytest.raises(SpecError, match="id_unique_across_versions"):
        spec_from_dict(data, "s.yaml")


# --------------------------------------------------------------------------------------------------
# Fault 19: protected attributes are never model inputs (unless the policy says so explicitly)
# --------------------------------------------------------------------------------------------------


def _synthetic_with_gender_feature(**policy) -> dict:
    data = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    data["features"] = [*data["features"], "gender"]
    data["policy"] = {**data.get("policy", {}), **policy}
    return data


def test_protected_attribute_listed_as_a_feature_is_refused_at_load():
    with pytest.raises(SpecError) as info:
        spec_from_dict(_synthetic_with_gender_feature(), "churn.yaml")
    message = str(info.value)
    assert "churn.yaml" in message and "'gender'" in message
    assert "features" in message and "protected" in message and "allow_protected_as_features" in message


def test_protected_attribute_as_a_feature_when_the_policy_allows_it_is_recorded_by_features_allowlisted():
    data = _synthetic_with_gender_feature(allow_protected_as_features=True)
    spec = spec_from_dict(data, "churn.yaml")
    assert spec.policy.data.allow_protected_as_features is True
    # The model declares the spec inline: its checks read it through model.spec(), as in a run.
    g = ModelGraph(MLModel(name="synthetic", spec_source=data, declared_in="churn.yaml"))
    assert g.model.spec().fingerprint() == spec.fingerprint()  # the same spec, read from the model
    frame = build_features(coerce_to_schema(synthetic.generate(300, seed=1), spec), spec)
    result = _gate_result(g, "features", "features_allowlisted", features=frame)
    assert isinstance(result, dg.AssetCheckResult)
    assert result.passed
    evidence = result.metadata["evidence"].value
    assert evidence["protected_inputs"] == ["gender"] and evidence["allow_protected_as_features"] is True
    assert "gender" in result.description and "allow_protected_as_features" in result.description


def test_features_allowlisted_fails_a_protected_input_in_a_spec_built_without_the_loader(monkeypatch):
    spec = load_spec("synthetic")
    spec = dataclasses.replace(spec, features=(*spec.features, "gender"))  # bypasses spec_from_dict
    monkeypatch.setattr(MLModel, "spec", lambda self: spec)
    frame = build_features(coerce_to_schema(synthetic.generate(300, seed=1), spec), spec)
    result = _gate_result(SYNTHETIC, "features", "features_allowlisted", features=frame)
    assert isinstance(result, dg.AssetCheckResult)
    assert not result.passed
    assert result.metadata["evidence"].value["protected_inputs"] == ["gender"]
    assert "protected" in result.description and "gender" in result.description


@pytest.mark.parametrize("name", PACKAGED_SPECS)
def test_packaged_specs_keep_protected_attributes_out_of_the_features(name):
    spec = load_spec(name)
    assert not set(spec.features) & set(spec.protected)
    assert spec.policy.data.allow_protected_as_features is False


# --------------------------------------------------------------------------------------------------
# Fault 12: re-landing after the partition was deleted gets a new run key
# --------------------------------------------------------------------------------------------------


def _tick(instance, tmp_path: Path, cursor=None) -> dg.SensorResult:
    """One tick of the synthetic model's landing sensor, applying the partition requests as the daemon does."""
    # Looked up by name in the graph: resolving it (ModelGraph.sensor) would need every resource of the graph's jobs.
    sensor = next(s for s in SYNTHETIC.defs.sensors or [] if s.name == SYNTHETIC.name("landing_sensor"))
    # Entered: the registry resource is opened for the tick and closed by its teardown when the context exits.
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "landing": LandingZone(directory=str(tmp_path / "landing")),  # the root: the model lands in synthetic/
            "registry": ModelRegistryResource(url=f"sqlite:///{tmp_path / 'registry.db'}"),
        },
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def _launch_as_the_daemon_would(instance, tmp_path: Path, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Run the requested partition with the tags the sensor daemon puts on a run (incl. its run key)."""
    env = local_environment(tmp_path)
    return dg.materialize(
        SYNTHETIC.assets_and_checks,
        partition_key=request.partition_key,
        instance=instance,
        resources={**env.resources, "landing": LandingZone(directory=str(tmp_path / "landing"))},
        selection=SYNTHETIC.keys("raw_data"),
        tags={
            **request.tags,
            "dagster/run_key": request.run_key,
            "dagster/sensor_name": SYNTHETIC.name("landing_sensor"),
        },
        raise_on_error=False,
    )


def _used_run_keys(instance) -> set[str]:
    return {r.tags.get("dagster/run_key") for r in instance.get_runs()}


def test_relanding_a_deleted_partition_gets_a_new_run_key(tmp_path):
    landing = tmp_path / "landing" / "synthetic"
    landing.mkdir(parents=True)
    with dg.DagsterInstance.ephemeral() as instance:
        bad = synthetic.generate(300, seed=1, label_out_of_domain=True)
        path = write_frame_atomic(bad, landing / "v1.csv", fmt="csv")
        key = version_key("v1.csv", file_digest(path))
        first = _tick(instance, tmp_path)
        (request,) = first.run_requests
        assert not _launch_as_the_daemon_would(instance, tmp_path, request).success  # the failed version

        # The operator deletes the failed version and lands the same file again.
        instance.delete_dynamic_partition(SYNTHETIC.partitions_name, key)
        path.unlink()
        write_frame_atomic(bad, landing / "v1.csv", fmt="csv")
        again = _tick(instance, tmp_path, cursor=first.cursor)
        assert instance.get_dynamic_partitions(SYNTHETIC.partitions_name) == [key]
        (request2,) = again.run_requests
        assert request2.partition_key == key
        assert request2.run_key not in _used_run_keys(instance)  # the daemon would launch it
        assert request2.tags["mlops/landing_generation"] == "2"
        assert request2.tags[REASON_TAG] == "new_data" and request2.tags[DATA_VERSION_TAG] == key

        # A third landing after another deletion gets yet another key; a lost cursor changes nothing.
        _launch_as_the_daemon_would(instance, tmp_path, request2)
        instance.delete_dynamic_partition(SYNTHETIC.partitions_name, key)
        (request3,) = _tick(instance, tmp_path, cursor=None).run_requests
        assert request3.run_key not in _used_run_keys(instance)
        assert request3.tags["mlops/landing_generation"] == "3"


def _skip_message(result: dg.SensorResult) -> str:
    assert result.skip_reason is not None
    return result.skip_reason.skip_message or ""


def test_landing_sensor_says_why_nothing_runs(tmp_path):
    landing = tmp_path / "landing" / "synthetic"
    landing.mkdir(parents=True)
    with dg.DagsterInstance.ephemeral() as instance:
        empty = _skip_message(_tick(instance, tmp_path))
        assert "no data files in the landing zone" in empty and str(landing) in empty
        (landing / "v1.csv").write_bytes(b"id,y\n1,0\n")
        first = _tick(instance, tmp_path)
        (landing / "copy.csv").write_bytes(b"id,y\n1,0\n")
        again = _tick(instance, tmp_path, cursor=first.cursor)
        assert again.run_requests == []
        reason = _skip_message(again)
        assert "2 landed file(s)" in reason and "already registered" in reason


def test_ids_reused_across_versions_are_compared_through_the_id_type(tmp_path):
    """An id read as text ("0250", from a CSV whose schema failed) and the int 250 of an earlier version are one id."""
    import pandas as pd

    from mlops_assets.ml.validation import gate_ids_unique_across_versions

    spec = load_spec(_spec_file(tmp_path, id_unique_across_versions=True))
    current = pd.DataFrame({spec.id_column: ["0250", "0251", "9999"]})
    earlier = {"v1": pd.Series([249, 250, 251], dtype="int64")}
    gate = gate_ids_unique_across_versions(current, spec, "v2.csv", earlier)
    assert not gate.passed
    assert gate.evidence["n_reused"] == 2
