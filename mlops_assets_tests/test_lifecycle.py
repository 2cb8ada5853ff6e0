"""End to end with dg.materialize on synthetic data: a failing gate stops promotion for that version only."""

from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.definitions import build_defs
from mlops_assets.demo_data import synthetic
from mlops_assets.environments import local_environment
from mlops_assets.ml.spec import packaged_spec_path
from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets.storage.files import write_frame_atomic
from mlops_assets.storage.registry import ModelRegistry
from mlops_assets_tests.support import model_graph
from mlops_assets_tests.worlds import World

pytestmark = pytest.mark.e2e

ROWS = 2500
#: The synthetic model's graph: keys ``synthetic/<asset>``, partitions ``synthetic__data_versions``.
G = model_graph("synthetic")


@pytest.fixture
def lifecycle(tmp_path: Path):
    env = local_environment(tmp_path / "data")
    landing = tmp_path / "data" / "landing" / "synthetic"
    landing.mkdir(parents=True)
    with dg.DagsterInstance.ephemeral() as instance:

        def land(name: str, **kwargs) -> str:
            frame = synthetic.generate(ROWS, seed=kwargs.pop("seed", 1), **kwargs)
            path = write_frame_atomic(frame, landing / name, fmt="csv")
            key = version_key(path.name, file_digest(path))
            instance.add_dynamic_partitions(G.partitions_name, [key])
            return key

        def run(key: str, selection=None) -> dg.ExecuteInProcessResult:
            return dg.materialize(
                G.assets_and_checks,
                partition_key=key,
                instance=instance,
                resources=env.resources,
                selection=selection,
                raise_on_error=False,
            )

        registry = ModelRegistry(env.resources["registry"].url)
        yield land, run, registry, instance


@pytest.fixture
def promoted(promoted_world: tuple[World, str]):
    """Like ``lifecycle``, from a copy of the session's promoted world: v1 (``synthetic_v001.csv``, seed 1) already
    went through every gate into Production; yields ``land, run, registry, instance, v1``."""
    world, v1 = promoted_world
    registry = world.registry()
    yield world.land, world.run, registry, world.instance, v1
    registry.engine.dispose()


def check_outcomes(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {m.asset_key.to_user_string() for m in result.asset_materializations_for_node}  # type: ignore[attr-defined]


def test_failing_gates_stop_promotion_for_that_version_only(lifecycle):
    land, run, registry, _instance = lifecycle

    # v1: clean data → every gate passes → first model promoted to Production.
    v1 = land("synthetic_v001.csv", seed=1, start_id=0)
    r1 = run(v1)
    assert r1.success
    outcomes = check_outcomes(r1)
    assert all(outcomes.values())
    warnings = {"no_drift", "data_quality", "estimated_performance_within_sla", "performance_within_sla"}
    warnings |= {"training_serving_skew"}  # not blocking: an error on served traffic only; a batch version passes
    assert {k.name for k in G.model.required_gates} | warnings == set(outcomes)
    prod = registry.production_version("synthetic")
    assert prod is not None and prod.data_versions == (v1,)
    first = prod.version

    # v2: labels outside the domain → data gate fails, nothing downstream, production unchanged.
    v2 = land("synthetic_v002.csv", seed=2, start_id=ROWS, label_out_of_domain=True)
    r2 = run(v2)
    assert not r2.success
    outcomes = check_outcomes(r2)
    assert outcomes["label_in_domain"] is False
    assert G.key("candidate_model") not in {e.asset_key for e in r2.get_asset_materialization_events()}
    assert registry.versions_for_data_version("synthetic", v2) == []
    assert registry.production_version("synthetic").version == first

    # v3: half the labels flipped at random → no model can rank this holdout → metric floor fails.
    v3 = land("synthetic_v003.csv", seed=3, start_id=2 * ROWS, label_noise=0.5)
    r3 = run(v3)
    assert not r3.success
    assert check_outcomes(r3)["metric_above_floor"] is False
    (cand3,) = registry.versions_for_data_version("synthetic", v3)
    assert cand3.stage == "None"
    assert registry.production_version("synthetic").version == first

    # Fail closed: running the promotion alone for v3 (its gates failed earlier) rejects it.
    r3b = run(v3, selection=G.keys("deployment_decision"))
    assert r3b.success
    decision = r3b.asset_value(G.key("deployment_decision"))
    assert decision["outcome"] == "rejected"
    assert any("metric_above_floor is failed" in reason for reason in decision["reasons"])
    assert registry.get_version("synthetic", cand3.version).stage == "Archived"
    assert registry.production_version("synthetic").version == first

    # v4: clean data again → every gate passes → staged and rolled out against v1 (shadow), not yet promoted.
    v4 = land("synthetic_v004.csv", seed=4, start_id=3 * ROWS)
    r4 = run(v4)
    assert r4.success, check_outcomes(r4)
    assert r4.asset_value(G.key("deployment_decision"))["outcome"] == "rollout_started"
    (cand4,) = registry.versions_for_data_version("synthetic", v4)
    assert cand4.stage == "Staging"
    rollout = registry.active_rollout("synthetic")
    assert rollout is not None and (rollout.champion_version, rollout.challenger_version) == (first, cand4.version)
    assert rollout.phase.value == "shadow"
    assert registry.production_version("synthetic").version == first
    log = [(t.version, t.from_stage, t.to_stage) for t in registry.transitions("synthetic")]
    assert (cand4.version, "None", "Staging") in log


def test_promotion_refuses_a_version_whose_gates_never_ran(lifecycle):
    land, _run, registry, instance = lifecycle
    v1 = land("synthetic_v001.csv", seed=1)
    # Materialize up to the evaluation without running any check, then ask for the decision.
    r = dg.materialize(
        G.assets,
        partition_key=v1,
        instance=instance,
        resources=build_defs(local_environment(Path(registry.engine.url.database).parent), [G.model]).resources,
        selection=G.keys(
            "raw_data", "features", "labels", "candidate_model", "model_evaluation", "deployment_decision"
        ),
    )
    decision = r.asset_value(G.key("deployment_decision"))
    assert decision["outcome"] == "rejected"
    assert all("missing" in reason for reason in decision["reasons"])
    assert registry.production_version("synthetic") is None


def test_rerunning_a_version_reuses_its_model_version(promoted, monkeypatch):
    # A clean checkout (the dirty flag makes every run a new version, since the code may differ).
    monkeypatch.setattr("mlops_assets.assets.models.git_state", lambda: ("0" * 40, False))
    _land, run, registry, _instance, v1 = promoted  # v1 ran once already (from a clean checkout too)
    again = run(v1)
    assert again.success
    versions = registry.list_versions("synthetic")
    assert [v.version for v in versions] == [1]
    assert again.asset_value(G.key("deployment_decision"))["outcome"] == "unchanged"


@pytest.mark.parametrize(
    ("content", "failure"),
    [
        (b"", "non_empty"),
        (b"\x00\x01garbage\xff\xfe\n\x00", "parseable_csv"),
    ],
)
def test_unreadable_file_fails_the_run_naming_file_and_rule(promoted, tmp_path, content, failure):
    _land, run, registry, instance, good = promoted  # good: v1, in Production
    landing = tmp_path / "data" / "landing" / "synthetic"
    bad_path = landing / "broken.csv"
    bad_path.write_bytes(content)
    bad = version_key(bad_path.name, file_digest(bad_path))
    instance.add_dynamic_partitions(G.partitions_name, [bad])
    result = run(bad)
    assert not result.success
    (step_failure,) = [e for e in result.all_events if e.is_step_failure]
    message = step_failure.step_failure_data.error.message
    assert "broken.csv" in message and failure in message
    assert not result.get_asset_materialization_events()
    # The other version is unaffected and still in production.
    prod = registry.production_version("synthetic")
    assert prod is not None and prod.data_versions == (good,)


def test_header_only_and_wrong_dtype_fail_their_gates(lifecycle, tmp_path):
    land, run, registry, instance = lifecycle
    landing = tmp_path / "data" / "landing" / "synthetic"
    header = landing / "header_only.csv"
    header.write_text("customer_id,event_time,age,income,tenure_months,balance,region,plan,gender,churned\n")
    key = version_key(header.name, file_digest(header))
    instance.add_dynamic_partitions(G.partitions_name, [key])
    outcomes = check_outcomes(run(key))
    assert outcomes["row_count_above_floor"] is False

    wrong = land("wrong_type.csv", seed=5, wrong_type_column="income")
    result = run(wrong)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    schema = evaluations["schema_valid"]
    assert schema.passed is False
    assert "wrong_type.csv" in schema.description and "income" in schema.description
    assert G.key("candidate_model") not in {e.asset_key for e in result.get_asset_materialization_events()}
    assert registry.list_versions("synthetic") == []


@pytest.fixture
def windowed_spec(tmp_path: Path) -> str:
    path = tmp_path / "synthetic_window.yaml"
    path.write_text(packaged_spec_path("synthetic").read_text() + "training:\n  window: 3\n")
    return str(path)


def test_training_window_skips_versions_that_failed_their_gates(tmp_path, windowed_spec, monkeypatch):
    windowed = model_graph(windowed_spec)  # named after the spec: synthetic
    env = local_environment(tmp_path / "w")
    landing = tmp_path / "w" / "landing" / "synthetic"
    landing.mkdir(parents=True)
    with dg.DagsterInstance.ephemeral() as instance:
        keys = []
        for i, defect in enumerate([{}, {"label_out_of_domain": True}, {}], start=1):
            frame = synthetic.generate(ROWS, seed=i, start_id=(i - 1) * ROWS, **defect)
            path = write_frame_atomic(frame, landing / f"synthetic_v00{i}.csv", fmt="csv")
            key = version_key(path.name, file_digest(path))
            instance.add_dynamic_partitions(windowed.partitions_name, [key])
            keys.append(key)
            dg.materialize(
                windowed.assets_and_checks,
                partition_key=key,
                instance=instance,
                resources=env.resources,
                raise_on_error=False,
            )
        registry = ModelRegistry(env.resources["registry"].url)
        (third,) = registry.versions_for_data_version("synthetic", keys[2])
        assert third.data_versions == (keys[0], keys[2])
        stored = env.resources["io_manager"].load_value(windowed.key("candidate_model"), keys[2])
        manifest = stored["manifest"]
        assert [s["data_version"] for s in manifest["window_skipped"]] == [keys[1]]
        assert "label_in_domain failed" in manifest["window_skipped"][0]["reason"]
        assert set(manifest["data_versions"]) == {keys[0], keys[2]}
        assert all(len(h) == 64 for h in manifest["data_versions"].values())
        assert manifest["search"]["results"] and manifest["search"]["best_params"]
        assert manifest["n_train"] > ROWS  # all of v1 plus v3's train rows


def test_launchpad_policy_override_is_recorded_and_decides(lifecycle):
    land, _run, registry, instance = lifecycle
    v1 = land("synthetic_v001.csv", seed=1)
    env_resources = local_environment(Path(registry.engine.url.database).parent).resources
    result = dg.materialize(
        G.assets_and_checks,
        partition_key=v1,
        instance=instance,
        resources=env_resources,
        run_config={"ops": {"synthetic__model_evaluation": {"config": {"metric_floor": 0.99}}}},
        raise_on_error=False,
    )
    assert not result.success
    assert check_outcomes(result)["metric_above_floor"] is False
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "metric_above_floor"]
    assert evaluation.metadata["threshold"].value == 0.99
    assert registry.production_version("synthetic") is None


def test_candidate_metadata_carries_the_reproducibility_manifest(lifecycle):
    land, run, _registry, _instance = lifecycle
    v1 = land("synthetic_v001.csv", seed=1)
    result = run(v1)
    (materialization,) = [
        e.materialization for e in result.get_asset_materialization_events() if e.asset_key == G.key("candidate_model")
    ]
    manifest = materialization.metadata["manifest"].value
    for key in (
        "git_sha",
        "git_dirty",
        "packages",
        "python",
        "platform",
        "cpu",
        "seed",
        "wall_seconds",
        "peak_memory_mb",
        "data_versions",
        "feature_profile_id",
        "artifact",
        "signature",
        "search",
    ):
        assert key in manifest, key
    assert manifest["packages"]["scikit-learn"] != "not installed"
    assert manifest["artifact"]["sha256"] == materialization.metadata["artifact_sha256"].value
    assert set(manifest["signature"]) == {"age", "income", "tenure_months", "balance", "region", "plan"}
    assert len(manifest["search"]["results"]) == 2
    evaluation = next(
        e.materialization for e in result.get_asset_materialization_events() if e.asset_key == G.key("model_evaluation")
    )
    for key in ("candidate_roc_auc", "candidate_ece", "slices", "fairness_groups", "roc_curve", "reliability_diagram"):
        assert key in evaluation.metadata, key
    assert evaluation.metadata["roc_curve"].value.startswith("![ROC curves](data:image/svg+xml,")


def test_drift_report_compares_new_data_with_the_production_models_training_data(promoted):
    land, run, registry, _instance, v1 = promoted
    stored = local_environment(Path(registry.engine.url.database).parent).resources["io_manager"]
    assert stored.load_value(G.key("drift_report"), v1)["compared_with"] is None  # nothing in production at v1
    v2 = land("synthetic_v002.csv", seed=2, start_id=ROWS)
    calm = run(v2)
    assert calm.asset_value(G.key("drift_report"))["compared_with"] == 1
    assert calm.asset_value(G.key("drift_report"))["report"]["dataset_drift"] is False
    assert check_outcomes(calm)["no_drift"] is True
    v3 = land("synthetic_v003.csv", seed=3, start_id=2 * ROWS, shift=2.0)
    shifted = run(v3)
    report = shifted.asset_value(G.key("drift_report"))
    drifted = {c["column"] for c in report["report"]["columns"] if c["drifted"]}
    assert {"age", "income", "tenure_months", "balance"} <= drifted
    assert {"region", "plan"}.isdisjoint(drifted)  # the shift moves numeric columns only
    assert report["report"]["dataset_drift"] is True
    assert check_outcomes(shifted)["no_drift"] is False  # a warning: the rest of the run still proceeds
    assert G.key("model_evaluation") in {e.asset_key for e in shifted.get_asset_materialization_events()}


def test_prediction_log_scores_with_champion_and_routes_a_share_to_the_challenger(lifecycle):
    land, run, registry, instance = lifecycle
    v1 = land("synthetic_v001.csv", seed=1)
    assert run(v1).asset_value(G.key("predictions")).empty  # nothing in production yet
    v2 = land("synthetic_v002.csv", seed=2, start_id=ROWS, label_noise=0.5)  # rejected candidate
    logged = run(v2).asset_value(G.key("predictions"))
    assert set(logged["model_version"]) == {1} and logged["served"].all() and len(logged) == ROWS
    assert logged["prediction_id"].is_unique and logged["feature_hash"].str.len().eq(64).all()
    (rejected,) = registry.versions_for_data_version("synthetic", v2)
    registry.set_alias("synthetic", "challenger", rejected.version, actor="test", reason="canary by hand")
    v3 = land("synthetic_v003.csv", seed=3, start_id=2 * ROWS)
    env_resources = local_environment(Path(registry.engine.url.database).parent).resources
    dg.materialize(
        G.assets, partition_key=v3, instance=instance, resources=env_resources, selection=G.keys("raw_data", "features")
    )
    result = dg.materialize(
        G.assets_and_checks,
        partition_key=v3,
        instance=instance,
        resources=env_resources,
        selection=G.keys("predictions"),
        run_config={"ops": {"synthetic__predictions": {"config": {"challenger_share": 0.25}}}},
    )
    log = result.asset_value(G.key("predictions"))
    champion, challenger = log[log["arm"] == "champion"], log[log["arm"] == "challenger"]
    assert len(champion) == len(challenger) == ROWS  # both score every row
    served_share = challenger["served"].mean()
    assert 0.2 < served_share < 0.3
    assert (champion["served"].to_numpy() != challenger["served"].to_numpy()).all()  # exactly one serves each row
    again = dg.materialize(
        G.assets_and_checks,
        partition_key=v3,
        instance=instance,
        resources=env_resources,
        selection=G.keys("predictions"),
        run_config={"ops": {"synthetic__predictions": {"config": {"challenger_share": 0.25}}}},
    ).asset_value(G.key("predictions"))
    assert again["served"].tolist() == log["served"].tolist()  # routing is stable
    assert again["prediction_id"].tolist() == log["prediction_id"].tolist()
