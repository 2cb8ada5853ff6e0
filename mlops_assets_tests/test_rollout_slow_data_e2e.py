"""Rollouts on slow data through the real assets (issue 12, part 5): a new candidate queued during a rollout, its
start when the rollout ends, and a breach of the production model's SLA decided at once.

Synthetic data versions of 2,500 rows stand for yearly exports (one version a "year"); the spec lowers
``rollout_min_rows`` so that a 10 % canary step (250 rows) is enough evidence. The jobs run as the sensors launch
them: lifecycle for the first version, ingest for the others, retrain for retrains.
"""

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from mlops_assets.definitions import build_defs
from mlops_assets.demo_data import synthetic
from mlops_assets.environments import local_environment
from mlops_assets.ml.promotion import QUEUED, QUEUED_ALIAS
from mlops_assets.ml.rollout import BREACH_REASON, Phase
from mlops_assets.ml.spec import packaged_spec_path
from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets.storage.files import write_frame_atomic
from mlops_assets.storage.registry import CHALLENGER, CHAMPION, ModelRegistry
from mlops_assets_tests.support import model_graph

pytestmark = pytest.mark.e2e
ROWS = 2500
NAME = "synthetic"


def _spec(tmp_path: Path, **policy: object) -> str:
    raw = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    raw["policy"] = {**raw.get("policy", {}), "rollout_min_rows": 100, **policy}
    path = tmp_path / "synthetic_slow.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    stack = ExitStack()

    def make(**policy: object) -> tuple[Callable[..., str], Callable[..., Any], ModelRegistry, Any, Any]:
        graph = model_graph(_spec(tmp_path, **policy))
        env = local_environment(tmp_path / "data")
        defs = build_defs(env, [graph.model])
        landing = tmp_path / "data" / "landing" / NAME
        landing.mkdir(parents=True, exist_ok=True)
        instance = stack.enter_context(dg.DagsterInstance.ephemeral())

        def run(job: str, key: str) -> dg.ExecuteInProcessResult:
            return defs.resolve_job_def(graph.name(job)).execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False
            )

        def land(i: int, job: str, seed: int, **kwargs: object) -> str:
            frame = synthetic.generate(ROWS, seed=seed, start_id=(i - 1) * ROWS, **kwargs)  # type: ignore[arg-type]
            path = write_frame_atomic(frame, landing / f"synthetic_v{i:03d}.csv", fmt="csv")
            key = version_key(path.name, file_digest(path))
            instance.add_dynamic_partitions(graph.partitions_name, [key])
            assert run(job, key).success
            return key

        return land, run, ModelRegistry(env.resources["registry"].url), env.resources["io_manager"], graph

    with stack:
        yield make


def _failed_checks(result: dg.ExecuteInProcessResult) -> list[tuple[str, str | None]]:
    """The failed asset checks of a run (name, description), for an assertion message."""
    return [
        (e.asset_check_evaluation_data.check_name, e.asset_check_evaluation_data.description)
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    ]


def _in_first_canary_step(
    land: Callable[..., str],
    run: Callable[..., Any],
    registry: ModelRegistry,
    after_start: Callable[[], None] | None = None,
) -> str:
    """Production v1, v2 rolled out and one version scored in shadow: v2 serves 10 %. Returns version 3's key.

    ``after_start`` runs once the rollout started (e.g. to edit the spec).
    """
    land(1, "lifecycle_job", seed=1)
    second = land(2, "ingest_job", seed=4)
    assert run("retrain_job", second).success
    if after_start is not None:
        after_start()
    third = land(3, "ingest_job", seed=13)
    state = registry.active_rollout(NAME)
    assert state is not None and (state.phase, state.challenger_share) == (Phase.CANARY, 0.1)
    return third


def test_a_new_candidate_is_queued_and_judged_again_when_the_rollout_ends(world, tmp_path):
    # 500-row holdouts: a wider non-inferiority margin, so that both retrains pass their gates (they are not the
    # subject here; the queue is).
    land, run, registry, stored, graph = world(non_inferiority_margin=0.05)

    def edit_spec() -> None:
        # The plan was recorded when the rollout started: this edit is for the next rollout, not this one.
        path = tmp_path / "synthetic_slow.yaml"
        raw = yaml.safe_load(path.read_text())
        raw["policy"].update(canary_steps=[0.5, 1.0], on_new_candidate="supersede")
        path.write_text(yaml.safe_dump(raw))

    third = _in_first_canary_step(land, run, registry, edit_spec)
    assert graph.model.spec().policy.rollout.on_new_candidate == "supersede"  # the edit is read...
    assert registry.active_rollout(NAME).on_new_candidate == "queue"  # ...but the rollout in flight keeps its plan
    assert run("retrain_job", third).success  # a new candidate, v3, while v2 serves 10 %
    decision = stored.load_value(graph.key("deployment_decision"), third)
    assert decision["version"] == 3 and decision["outcome"] == QUEUED
    assert registry.get_version(NAME, 3).stage == "None"
    assert registry.aliases(NAME) == {CHAMPION: 1, CHALLENGER: 2, QUEUED_ALIAS: 3}
    state = registry.active_rollout(NAME)
    assert state is not None and state.challenger_version == 2 and state.challenger_share == 0.1  # not superseded
    queued = [e for e in registry.audit_log(NAME) if e["kind"] == "alias" and e["change"].startswith(QUEUED_ALIAS)]
    assert "queued behind the rollout of v2" in queued[-1]["reason"]

    fourth = land(4, "ingest_job", seed=14)  # 10 % step decided on its labelled rows: 100 %
    assert registry.active_rollout(NAME).challenger_share == 1.0
    # A newer candidate takes the queue; the older queued one is archived with the reason.
    retrained = run("retrain_job", fourth)
    assert retrained.success, _failed_checks(retrained)
    assert stored.load_value(graph.key("deployment_decision"), fourth)["outcome"] == QUEUED
    assert registry.aliases(NAME)[QUEUED_ALIAS] == 4 and registry.get_version(NAME, 3).stage == "Archived"
    replaced = [e for e in registry.audit_log(NAME) if e["kind"] == "stage" and e["version"] == 3][-1]
    assert replaced["reason"].startswith("replaced in the queue by v4")

    land(5, "ingest_job", seed=15)  # 100 % step decided: the switch
    assert registry.get_rollout(NAME).challenger_version == 2 and registry.get_rollout(NAME).phase is Phase.PROMOTED
    assert registry.production_version(NAME).version == 2
    # v4 was compared with v1, production is v2 now: its evidence is void, so it is archived with the reason.
    assert registry.get_version(NAME, 4).stage == "Archived"
    assert QUEUED_ALIAS not in registry.aliases(NAME)
    archived = [e for e in registry.audit_log(NAME) if e["kind"] == "stage" and e["version"] == 4][-1]
    assert "production changed since evaluation" in archived["reason"]
    assert "the rollout it was queued behind ended" in archived["reason"]


def test_a_queued_candidate_starts_its_rollout_when_the_rollout_ahead_rolls_back(world):
    # A challenger trained on labels that are mostly noise: lax gates and shadow guards let it into the canary.
    land, run, registry, stored, graph = world(
        metric_floor=0.5,
        min_lift_over_baseline=-1.0,
        non_inferiority_margin=1.0,
        max_ece=1.0,
        shadow_min_agreement=0.01,
        shadow_min_correlation=0.01,
    )
    land(1, "lifecycle_job", seed=1)
    bad = land(2, "ingest_job", seed=4, label_noise=0.45)
    assert run("retrain_job", bad).success
    third = land(3, "ingest_job", seed=13)
    assert registry.active_rollout(NAME).challenger_share == 0.1
    assert run("retrain_job", third).success
    assert stored.load_value(graph.key("deployment_decision"), third)["outcome"] == QUEUED
    fourth = land(4, "ingest_job", seed=14)  # the canary guards fail: v2 rolled back, then v3 starts
    step = stored.load_value(graph.key("rollout_step"), fourth)
    assert step["action"] == "rolled_back" and step["queued_candidate"]["version"] == 3
    assert step["queued_candidate"]["outcome"] == "rollout_started"
    state = registry.active_rollout(NAME)
    assert state is not None and state.challenger_version == 3 and state.champion_version == 1
    assert (state.phase, state.canary_steps) == (Phase.SHADOW, (0.1, 1.0))
    assert registry.get_version(NAME, 2).stage == "Archived" and registry.get_version(NAME, 3).stage == "Staging"
    assert registry.aliases(NAME) == {CHAMPION: 1, CHALLENGER: 3}


def test_a_breach_during_the_rollout_is_decided_at_once_by_the_same_guards(world):
    land, run, registry, stored, graph = world()
    _in_first_canary_step(land, run, registry)
    before = registry.active_rollout(NAME)
    # Version 4's labels are coin flips: production's realised ROC AUC falls to about 0.5, below its floor.
    fourth = land(4, "ingest_job", seed=14, label_noise=0.5)
    report = stored.load_value(graph.key("performance_report"), fourth)
    assert report["sla"]["breached"] and report["sla"]["model_version"] == 1
    step = stored.load_value(graph.key("rollout_step"), fourth)
    assert step["breach"].startswith("v1 realised roc_auc")
    # Decided at once on every labelled row both models scored since the rollout began (versions 3 and 4), not
    # one canary step: the rollout is over, promoted when the guards passed, rolled back when one failed.
    assert step["guards"]["n_rows"] == 2 * ROWS and len(step["evidence_versions"]) == 2
    final = registry.get_rollout(NAME)
    assert final.history[:-1] == before.history and final.is_terminal
    assert final.history[-1].reason.startswith(BREACH_REASON)
    if step["guards"]["status"] == "pass":
        assert final.phase is Phase.PROMOTED and registry.production_version(NAME).version == 2
    else:
        assert final.phase is Phase.ROLLED_BACK and registry.production_version(NAME).version == 1


def test_compare_scores_both_on_the_newer_holdout_and_keeps_the_better(world):
    land, run, registry, stored, graph = world(on_new_candidate="compare")
    third = _in_first_canary_step(land, run, registry)
    assert registry.active_rollout(NAME).on_new_candidate == "compare"
    assert run("retrain_job", third).success  # v3, trained on version 3, against v2 in flight
    decision = stored.load_value(graph.key("deployment_decision"), third)
    compared = decision["during_rollout"]
    assert compared["policy"] == "compare" and compared["data_version"] == third
    assert (compared["candidate_version"], compared["challenger_version"]) == (3, 2)
    assert compared["n_rows"] > 0 and compared["candidate"] is not None and compared["challenger"] is not None
    audit = registry.audit_log(NAME)
    if compared["candidate_wins"]:
        assert decision["outcome"] == "rollout_started"
        state = registry.active_rollout(NAME)
        assert state is not None and state.challenger_version == 3
        assert registry.get_version(NAME, 2).stage == "Archived"
        superseded = [e for e in audit if e["kind"] == "rollout" and e["version"] == 2][-1]
        assert "superseded by a rollout of v3" in superseded["reason"] and "compare on the" in superseded["reason"]
    else:
        assert decision["outcome"] == "kept_challenger"
        assert registry.get_version(NAME, 3).stage == "Archived"
        state = registry.active_rollout(NAME)
        assert state is not None and state.challenger_version == 2 and state.challenger_share == 0.1
        archived = [e for e in audit if e["kind"] == "stage" and e["version"] == 3][-1]
        assert archived["reason"] == compared["reason"] and "v2 continues" in archived["reason"]
