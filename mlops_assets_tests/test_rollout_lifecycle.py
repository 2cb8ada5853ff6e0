"""Rollouts through the real assets: a retrained model goes shadow → canary steps → production, or rolls back.

Synthetic data versions of 2,500 rows; the spec lowers ``rollout_min_rows`` so that a 10 % canary step
(250 rows) is enough evidence, and the jobs run as the sensors would launch them (lifecycle for the
first version and for retrains, ingest for the others, labels_job for labels landing later).
"""

from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from mlops_assets.definitions import build_defs
from mlops_assets.demo_data import synthetic
from mlops_assets.environments import local_environment
from mlops_assets.ml.rollout import Phase
from mlops_assets.ml.spec import packaged_spec_path
from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets.storage.files import write_frame_atomic
from mlops_assets.storage.registry import CHALLENGER, CHAMPION, ModelRegistry
from mlops_assets_tests.support import model_graph

pytestmark = pytest.mark.e2e
ROWS = 2500


def _spec(tmp_path: Path, **policy: object) -> str:
    raw = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    raw["policy"] = {**raw.get("policy", {}), "rollout_min_rows": 100, **policy}
    path = tmp_path / "synthetic_rollout.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.fixture
def world(tmp_path: Path):
    # Entered as a context manager: dagster 1.13 resolves job definitions against the current instance's
    # state storage (a context variable that a disposed instance of an earlier test may still hold).
    stack = ExitStack()

    def make(**policy: object):
        graph = model_graph(_spec(tmp_path, **policy))  # named after the spec: synthetic
        env = local_environment(tmp_path / "data")
        defs = build_defs(env, [graph.model])
        landing = tmp_path / "data" / "landing" / "synthetic"
        landing.mkdir(parents=True, exist_ok=True)
        instance = stack.enter_context(dg.DagsterInstance.ephemeral())

        def land(i: int, job: str, seed: int, **kwargs: object) -> str:
            frame = synthetic.generate(ROWS, seed=seed, start_id=(i - 1) * ROWS, **kwargs)
            path = write_frame_atomic(frame, landing / f"synthetic_v{i:03d}.csv", fmt="csv")
            key = version_key(path.name, file_digest(path))
            instance.add_dynamic_partitions(graph.partitions_name, [key])
            run(job, key)
            return key

        def run(job: str, key: str) -> dg.ExecuteInProcessResult:
            # The model's job: lifecycle_job → synthetic__lifecycle_job.
            result = defs.resolve_job_def(graph.name(job)).execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False
            )
            return result

        return land, run, ModelRegistry(env.resources["registry"].url), env.resources["io_manager"], graph

    with stack:
        yield make


def test_retrained_model_goes_through_shadow_and_canary_steps_to_production(world):
    land, run, registry, stored, graph = world()
    land(1, "lifecycle_job", seed=1)  # bootstrap: nothing in production, promoted at once
    assert registry.production_version("synthetic").version == 1
    second = land(2, "ingest_job", seed=4)
    run("retrain_job", second)  # a retrain (as a sensor would launch it) on the new version
    state = registry.active_rollout("synthetic")
    assert state is not None and state.phase is Phase.SHADOW and state.challenger_version == 2
    assert registry.aliases("synthetic") == {CHAMPION: 1, CHALLENGER: 2}
    assert registry.get_version("synthetic", 2).stage == "Staging"

    seen = []
    for i in range(3, 9):
        key = land(i, "ingest_job", seed=10 + i)
        log = stored.load_value(graph.key("predictions"), key)
        served_by_challenger = log[(log["arm"] == "challenger") & log["served"]]
        seen.append((registry.get_rollout("synthetic").phase.value, len(served_by_challenger)))
        if registry.active_rollout("synthetic") is None:
            break
    final = registry.get_rollout("synthetic")
    assert final.phase is Phase.PROMOTED, final.history[-1].reason
    assert registry.production_version("synthetic").version == 2
    assert registry.aliases("synthetic") == {CHAMPION: 2}
    moves = [(m["to_phase"], m["to_share"]) for m in registry.rollout_log("synthetic")]
    # The default plan: shadow, 10 %, 100 %, then the switch — three data versions (3, 4, 5).
    assert moves == [("shadow", 0.0), ("canary", 0.1), ("canary", 1.0), ("promoted", 1.0)]
    # The version scored in each phase routed about that share of rows to the challenger; the shadow phase was
    # decided in the run that scored version 3 (its scores are all it needs).
    shares = [n / ROWS for _phase, n in seen]
    assert len(shares) == 3 and seen[0][0] == "canary"
    assert shares[0] == 0.0  # shadow: the challenger scores but serves nothing
    assert 0.06 < shares[1] < 0.14 and shares[2] == 1.0
    audit = registry.audit_log("synthetic")
    rollout_rows = [e for e in audit if e["kind"] == "rollout"]
    assert all(e["evidence"].get("guards", {}).get("status") == "pass" for e in rollout_rows[1:])
    assert any(e["kind"] == "stage" and e["change"] == "Staging -> Production" and e["version"] == 2 for e in audit)


def test_canary_whose_guard_fails_rolls_back_automatically(world):
    # A challenger trained on labels that are mostly noise: lax gates and shadow guards let it through to the
    # canary (to test the canary), where its AUC drop on the rows it serves exceeds the guard.
    land, run, registry, _stored, _graph = world(
        metric_floor=0.5,
        min_lift_over_baseline=-1.0,
        non_inferiority_margin=1.0,
        max_ece=1.0,
        shadow_min_agreement=0.01,
        shadow_min_correlation=0.01,
    )
    land(1, "lifecycle_job", seed=1)
    bad = land(2, "ingest_job", seed=4, label_noise=0.45)
    run("retrain_job", bad)
    state = registry.active_rollout("synthetic")
    assert state is not None and state.challenger_version == 2
    for i in range(3, 8):
        land(i, "ingest_job", seed=10 + i)
        if registry.active_rollout("synthetic") is None:
            break
    final = registry.get_rollout("synthetic")
    assert final.phase is Phase.ROLLED_BACK
    assert final.history[-1].from_phase is Phase.CANARY and "guard failed in canary" in final.history[-1].reason
    assert "auc_drop" in final.history[-1].reason
    assert registry.production_version("synthetic").version == 1  # production never changed
    assert registry.get_version("synthetic", 2).stage == "Archived"
    assert registry.aliases("synthetic") == {CHAMPION: 1}


def test_labels_landing_later_replace_the_files_labels_and_bad_ones_fail_clearly(world, tmp_path):
    land, run, _registry, stored, graph = world()
    key = land(1, "lifecycle_job", seed=1)
    second = land(2, "ingest_job", seed=4)
    frame = pd.read_csv(tmp_path / "data" / "landing" / "synthetic" / "synthetic_v002.csv")
    labels_dir = tmp_path / "data" / "labels" / "synthetic"
    labels_dir.mkdir(parents=True)
    flipped = frame[["customer_id", "churned"]].assign(churned=frame["churned"].map({"yes": "no", "no": "yes"}))
    flipped.to_csv(labels_dir / "synthetic_v002.csv", index=False)
    result = run("labels_job", second)
    assert result.success
    labels = stored.load_value(graph.key("labels"), second)
    assert labels["label"].mean() == pytest.approx(1 - (frame["churned"] == "yes").mean())
    report = stored.load_value(graph.key("performance_report"), second)
    assert report["sla"]["breached"]  # inverted labels: the production model looks terrible, as it should
    bad = frame[["customer_id", "churned"]].assign(churned="maybe")
    bad.to_csv(labels_dir / "synthetic_v002.csv", index=False)
    failed = run("labels_job", second)
    assert not failed.success
    message = next(e for e in failed.all_events if e.is_step_failure).step_failure_data.error.message
    assert "synthetic_v002.csv" in message and "churned" in message and "label_in_domain" in message
    assert key != second
