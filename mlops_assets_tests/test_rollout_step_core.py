"""Tests for one rollout step as a pure function (``rollout.next_rollout_step``) and the pooled A/B test.

The step's rules: no evidence -> hold; guards lacking data -> hold; a failed guard -> rollback; a significant
champion win in the A/B test vetoes a canary (even while the other guards lack data); all passed -> one step
forward; the final switch is re-verified and a refusal rolls back. A characterisation test replays the
``rollout_step`` asset's former inline logic on the same inputs and requires the same next state.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlops_assets.ml import abtest
from mlops_assets.ml.rollout import (
    NO_EVIDENCE_REASON,
    ABVerdict,
    GuardCheck,
    GuardResult,
    GuardStatus,
    Phase,
    RolloutState,
    advance,
    new_rollout,
    next_rollout_step,
    roll_back,
    start,
    with_ab_verdict,
)
from mlops_assets.ml.routing import CHALLENGER_ARM, CHAMPION_ARM

pytestmark = pytest.mark.core

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
PASS, FAIL, LACK = GuardStatus.PASS, GuardStatus.FAIL, GuardStatus.INSUFFICIENT_DATA


def _guards(kind: str, *statuses: GuardStatus, n_rows: int = 5000) -> GuardResult:
    checks = tuple(
        GuardCheck(f"check_{i}", status, None if status is LACK else 0.5, 0.1, f"detail {i}")
        for i, status in enumerate(statuses)
    )
    return GuardResult(kind, n_rows, 1000, checks)  # type: ignore[arg-type]


def _shadow() -> RolloutState:
    # Four canary steps (the default before slow-data rollouts): every branch of a step is tested on them.
    return start(new_rollout("flights", 3, 4, canary_steps=(0.05, 0.25, 0.50, 1.00)), T0)


def _canary(step: int) -> RolloutState:
    state = advance(_shadow(), _guards("shadow", PASS), T0 + timedelta(minutes=1))
    for i in range(step):
        state = advance(state, _guards("canary", PASS), T0 + timedelta(minutes=2 + i))
    assert (state.phase, state.step) == (Phase.CANARY, step)
    return state


def _ab_record(decision: str, winner: str | None, challenger_version: int = 4) -> dict[str, Any]:
    """A stored ``ab_test`` value as the asset writes it: ``ABResult.to_dict()`` plus the rollout's identity."""
    plan = abtest.plan_ab_test(0.8, 0.02)
    test = abtest.two_proportion_ztest(800, 1000, 780 if winner == "champion" else 820, 1000)
    result = abtest.ABResult(decision, winner, 1.0, plan, test)  # type: ignore[arg-type]
    return {
        "model_name": "flights",
        "champion_version": 3,
        "challenger_version": challenger_version,
        **result.to_dict(),
    }


def _no_refusals() -> list[str]:
    return []


def _never() -> list[str]:
    raise AssertionError("the switch is re-verified only when the rollout would be promoted")


# -- the branches ----------------------------------------------------------------------------------


def test_no_evidence_holds_with_the_reason_and_the_waiting_record() -> None:
    state = _canary(0)
    ab = ABVerdict.from_record(_ab_record("winner", "champion"))
    decision = next_rollout_step(state, None, ab, NOW, switch_refusals=_never)
    assert (decision.move, decision.action, decision.after) == ("hold", "wait", state)
    assert decision.reason == NO_EVIDENCE_REASON
    assert decision.guards is None and decision.guard_rows == []
    assert decision.to_record(["v1"]) == {"action": "wait", "reason": NO_EVIDENCE_REASON, "rollout": state.to_dict()}
    waiting = {"action": "wait", "reason": NO_EVIDENCE_REASON, "phase": "canary", "share": 0.05}
    assert decision.to_metadata(["v1"]) == waiting


def test_too_little_evidence_holds_without_touching_the_history() -> None:
    state = _canary(1)
    decision = next_rollout_step(state, _guards("canary", PASS, LACK, n_rows=10), None, NOW, switch_refusals=_never)
    assert decision.move == "hold" and decision.action == "wait"
    assert decision.after is state and len(decision.after.history) == len(state.history)
    assert decision.reason == "guards lack data: check_1: detail 1"
    assert decision.to_metadata(["v2", "v1"])["to"] == "canary 0.25"


def test_all_guards_passed_advance_one_step() -> None:
    shadow = _shadow()
    decision = next_rollout_step(shadow, _guards("shadow", PASS, PASS), None, NOW, switch_refusals=_never)
    assert (decision.move, decision.action) == ("advance", "canary")
    assert (decision.after.phase, decision.after.step, decision.after.challenger_share) == (Phase.CANARY, 0, 0.05)
    assert decision.reason == "shadow guards passed on 5000 rows" == decision.after.history[-1].reason
    assert decision.after.history[-1].at == NOW

    decision = next_rollout_step(_canary(0), _guards("canary", PASS), None, NOW, switch_refusals=_never)
    assert (decision.move, decision.after.step, decision.after.challenger_share) == ("advance", 1, 0.25)


def test_a_failed_guard_rolls_back_with_its_name() -> None:
    decision = next_rollout_step(_canary(2), _guards("canary", PASS, FAIL, LACK), None, NOW, switch_refusals=_never)
    assert (decision.move, decision.action, decision.after.phase) == ("rollback", "rolled_back", Phase.ROLLED_BACK)
    assert decision.reason == "guard failed in canary step 2 (0.5): check_1"
    assert decision.after.history[-1].evidence["guards"]["status"] == "fail"


def test_a_significant_champion_win_vetoes_the_canary() -> None:
    ab = ABVerdict.from_record(_ab_record("winner", "champion"))
    decision = next_rollout_step(_canary(1), _guards("canary", PASS, PASS), ab, NOW, switch_refusals=_never)
    assert decision.move == "rollback"
    assert decision.reason == "guard failed in canary step 1 (0.25): ab_test"
    (row,) = [r for r in decision.guard_rows if r["name"] == "ab_test"]
    assert row["status"] == "fail" and row["limit"] == 0.05 and row["value"] == pytest.approx(ab.p_value)  # type: ignore[union-attr]
    assert row["detail"].startswith("A/B at its horizon: winner, winner champion (difference -0.0200, p=")


def test_the_veto_outranks_missing_data() -> None:
    ab = ABVerdict.from_record(_ab_record("winner", "champion"))
    decision = next_rollout_step(_canary(0), _guards("canary", LACK, LACK, n_rows=3), ab, NOW, switch_refusals=_never)
    assert decision.move == "rollback" and decision.reason.endswith(": ab_test")


@pytest.mark.parametrize(("outcome", "winner"), [("winner", "challenger"), ("no_difference", None)])
def test_a_decided_test_the_champion_did_not_win_is_one_more_passed_check(outcome: str, winner: str | None) -> None:
    ab = ABVerdict.from_record(_ab_record(outcome, winner))
    decision = next_rollout_step(_canary(0), _guards("canary", PASS), ab, NOW, switch_refusals=_never)
    assert decision.move == "advance"
    assert [(r["name"], r["status"]) for r in decision.guard_rows] == [("check_0", "pass"), ("ab_test", "pass")]
    lacking = next_rollout_step(_canary(0), _guards("canary", LACK), ab, NOW, switch_refusals=_never)
    assert lacking.move == "hold"  # a passed A/B check does not replace guards that lack data


@pytest.mark.parametrize(
    ("record", "state"),
    [
        (_ab_record("continue", None), _canary(0)),  # before the horizon: a peek decides nothing
        (_ab_record("winner", "champion", challenger_version=9), _canary(0)),  # another rollout's test
        ({"reason": "no rollout in progress"}, _canary(0)),  # the record of a version without a rollout
        (_ab_record("winner", "champion"), _shadow()),  # nothing served by the challenger in shadow
    ],
)
def test_a_verdict_that_says_nothing_about_this_canary_is_ignored(record: dict[str, Any], state: RolloutState) -> None:
    kind = "shadow" if state.phase is Phase.SHADOW else "canary"
    decision = next_rollout_step(state, _guards(kind, PASS), ABVerdict.from_record(record), NOW, switch_refusals=_never)
    assert decision.move == "advance"
    assert [r["name"] for r in decision.guard_rows] == ["check_0"]


def test_the_last_step_requests_the_switch_and_re_verifies_it_once() -> None:
    calls: list[int] = []

    def refusals() -> list[str]:
        calls.append(1)
        return []

    state = _canary(3)
    decision = next_rollout_step(state, _guards("canary", PASS), None, NOW, switch_refusals=refusals)
    assert calls == [1]
    assert (decision.move, decision.action, decision.after.phase) == ("promote", "promoted", Phase.PROMOTED)
    assert decision.after.challenger_share == 1.0
    assert decision.after.history[-1].evidence["registry_action"] == {"promote_challenger": 4}
    assert decision.reason == "guards passed in canary step 3 (1): switch to the challenger"


def test_a_refused_switch_rolls_back_from_full_canary() -> None:
    state = _canary(3)
    refused = ("gate model_evaluation:metric_above_floor missing", "artifact digest differs")
    decision = next_rollout_step(state, _guards("canary", PASS), None, NOW, switch_refusals=lambda: refused)
    assert (decision.move, decision.after.phase) == ("rollback", Phase.ROLLED_BACK)
    assert decision.reason == "final switch refused: " + "; ".join(refused)
    assert decision.after.history[-1].from_share == 1.0 and decision.after.history[-1].evidence == {}


def test_an_approval_wait_keeps_the_state_and_reports_the_note() -> None:
    state = _canary(3)
    decision = next_rollout_step(state, _guards("canary", PASS), None, NOW, switch_refusals=_no_refusals)
    held = decision.held_for_approval("approval required")
    assert (held.move, held.action, held.after, held.note) == ("hold", "awaiting_approval", state, "approval required")
    record = held.to_record(["v9"])
    assert record["after"] == record["before"] == {"phase": "canary", "share": 1.0}
    assert record["note"] == "approval required" and record["rollout"] == state.to_dict()


def test_a_terminal_rollout_only_holds() -> None:
    done = roll_back(_canary(0), NOW, reason="by hand")
    decision = next_rollout_step(done, _guards("canary", PASS), None, NOW, switch_refusals=_never)
    assert decision.move == "hold" and decision.after is done


def test_wrong_guards_and_naive_time_are_refused() -> None:
    with pytest.raises(ValueError, match="expected canary guards"):
        next_rollout_step(_canary(0), _guards("shadow", PASS), None, NOW, switch_refusals=_never)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_rollout_step(_canary(0), _guards("canary", PASS), None, datetime(2024, 7, 1), switch_refusals=_never)


def test_record_and_metadata_of_a_move() -> None:
    state = _canary(0)
    decision = next_rollout_step(state, _guards("canary", PASS), None, NOW, switch_refusals=_never)
    assert decision.to_record(["b", "a"]) == {
        "action": "canary",
        "before": {"phase": "canary", "share": 0.05},
        "after": {"phase": "canary", "share": 0.25},
        "guards": decision.guards.to_dict(),  # type: ignore[union-attr]
        "evidence_versions": ["b", "a"],
        "note": "",
        "rollout": decision.after.to_dict(),
    }
    assert decision.to_metadata(["b", "a"]) == {
        "action": "canary",
        "challenger": "v4",
        "champion": "v3",
        "from": "canary 0.05",
        "to": "canary 0.25",
        "guard_status": "pass",
        "guard_rows": 5000,
        "evidence_versions": "b, a",
    }
    assert (
        decision.log_line(["b", "a"])
        == "flights v4 rollout: canary 0.05 -> canary 0.25 (pass on 5000 rows from 2 versions)"
    )


def test_with_ab_verdict_leaves_the_guards_alone_without_a_decided_verdict() -> None:
    guards = _guards("canary", PASS)
    assert with_ab_verdict(guards, None) is guards
    assert with_ab_verdict(guards, ABVerdict(4, "continue")) is guards
    assert with_ab_verdict(guards, ABVerdict(4, None)) is guards
    assert ABVerdict.from_record(None) is None and ABVerdict.from_record({}) is None


# -- characterisation: the same decisions as the asset's former inline logic -----------------------


def _former_with_ab_verdict(guards: GuardResult, ab: dict[str, Any] | None) -> GuardResult:
    """``assets/deployments.py:_with_ab_verdict`` as it was before the step moved into the core."""
    if guards.kind != "canary" or not ab or ab.get("decision") in (None, "continue"):
        return guards
    test = ab.get("test") or {}
    lost = ab.get("winner") == "champion"
    check = GuardCheck(
        "ab_test",
        GuardStatus.FAIL if lost else GuardStatus.PASS,
        test.get("p_value"),
        (ab.get("plan") or {}).get("alpha", 0.05),
        f"A/B at its horizon: {ab['decision']}"
        + (f", winner {ab['winner']}" if ab.get("winner") else "")
        + (f" (difference {test['difference']:+.4f}, p={test['p_value']:.3g})" if test else ""),
    )
    return GuardResult(guards.kind, guards.n_rows, guards.min_rows, (*guards.checks, check))


def _former_step(
    state: RolloutState, guards: GuardResult | None, ab: dict[str, Any] | None, refused: Sequence[str]
) -> tuple[str, RolloutState, GuardResult | None]:
    """The decision part of the former ``rollout_step`` asset body (registry and I/O left out)."""
    if guards is None:
        return "wait", state, None
    if ab and ab.get("challenger_version") != state.challenger_version:
        ab = None
    guards = _former_with_ab_verdict(guards, ab)
    moved = advance(state, guards, NOW)
    if moved.phase is Phase.PROMOTED and refused:
        moved = roll_back(state, NOW, reason="final switch refused: " + "; ".join(refused))
    return ("wait" if moved == state else moved.phase.value), moved, guards


STATES = {"shadow": _shadow, "canary0": lambda: _canary(0), "canary2": lambda: _canary(2), "full": lambda: _canary(3)}
GUARD_SETS = {
    "none": None,
    "pass": (PASS, PASS),
    "lack": (PASS, LACK),
    "fail": (FAIL, LACK),
}
AB_RECORDS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "continue": _ab_record("continue", None),
    "champion": _ab_record("winner", "champion"),
    "challenger": _ab_record("winner", "challenger"),
    "no_difference": _ab_record("no_difference", None),
    "other": _ab_record("winner", "champion", challenger_version=7),
}


@pytest.mark.parametrize("refused", [(), ("artifact digest differs",)])
@pytest.mark.parametrize("ab_name", list(AB_RECORDS))
@pytest.mark.parametrize("guard_name", list(GUARD_SETS))
@pytest.mark.parametrize("state_name", list(STATES))
def test_same_decision_as_the_former_asset_body(
    state_name: str, guard_name: str, ab_name: str, refused: tuple[str, ...]
) -> None:
    state = STATES[state_name]()
    statuses = GUARD_SETS[guard_name]
    kind = "shadow" if state.phase is Phase.SHADOW else "canary"
    guards = None if statuses is None else _guards(kind, *statuses)
    ab = AB_RECORDS[ab_name]
    action, moved, used_guards = _former_step(state, guards, ab, refused)
    decision = next_rollout_step(state, guards, ABVerdict.from_record(ab), NOW, switch_refusals=lambda: refused)
    assert decision.action == action
    assert decision.after == moved
    assert decision.guards == used_guards


# -- the A/B test pooled over data versions --------------------------------------------------------


def _former_pooling(plan: abtest.ABPlan, per_version: dict[str, dict[str, tuple[int, int]]]) -> dict[str, Any]:
    """The pooling the ``ab_test`` asset body did inline before it moved into the core."""
    strata = [(*c[CHAMPION_ARM], *c[CHALLENGER_ARM]) for c in per_version.values()]
    compared = [c for c in per_version.values() if c[CHAMPION_ARM][1] > 0 and c[CHALLENGER_ARM][1] > 0]
    counts = {
        arm: (sum(c[arm][0] for c in compared), sum(c[arm][1] for c in compared))
        for arm in (CHAMPION_ARM, CHALLENGER_ARM)
    }
    result = abtest.ab_decision_stratified(plan, strata)
    return {
        "counts": {arm: {"correct": c, "n": n} for arm, (c, n) in counts.items()},
        "strata": {
            key: {arm: {"correct": c, "n": n} for arm, (c, n) in arms.items()} for key, arms in per_version.items()
        },
        "test_kind": "two-proportion z-test within data versions, Mantel-Haenszel weights",
        **result.to_dict(),
    }


PER_VERSION = {
    "2024-08": {CHAMPION_ARM: (1500, 2000), CHALLENGER_ARM: (1700, 2000)},  # 50 %
    "2024-07": {CHAMPION_ARM: (2400, 3000), CHALLENGER_ARM: (820, 1000)},  # 25 %
    "2024-06": {CHAMPION_ARM: (900, 1000), CHALLENGER_ARM: (0, 0)},  # shadow: the challenger served nothing
}


def test_pooled_ab_test_keeps_the_former_record_and_counts_only_compared_versions() -> None:
    plan = abtest.plan_ab_test(0.8, 0.02)
    pooled = abtest.ab_test_by_stratum(plan, PER_VERSION)
    assert pooled.to_record() == _former_pooling(plan, PER_VERSION)
    assert pooled.counts == {CHAMPION_ARM: (3900, 5000), CHALLENGER_ARM: (2520, 3000)}
    assert list(pooled.strata) == ["2024-08", "2024-07", "2024-06"]
    # The stratified difference is not the pooled one: the split and the rates differ between versions.
    assert pooled.result.test is not None
    assert pooled.result.test.difference != pytest.approx(2520 / 3000 - 3900 / 5000)
    metadata = pooled.to_metadata()
    assert metadata["champion_n"] == 5000 and metadata["challenger_n"] == 3000 and metadata["versions_pooled"] == 3
    assert metadata["horizon_per_arm"] == plan.n_per_arm and metadata["decision"] == pooled.result.decision
    assert metadata["p_value"] == pytest.approx(pooled.result.test.p_value)


def test_pooled_ab_test_without_a_compared_version_continues_without_a_test() -> None:
    plan = abtest.plan_ab_test(0.8, 0.02)
    pooled = abtest.ab_test_by_stratum(plan, {"2024-06": PER_VERSION["2024-06"]})
    assert pooled.result.decision == "continue" and pooled.result.test is None
    assert pooled.counts == {CHAMPION_ARM: (0, 0), CHALLENGER_ARM: (0, 0)}
    assert "p_value" not in pooled.to_metadata() and pooled.to_metadata()["winner"] == "none"
    assert abtest.ab_test_by_stratum(plan, {}).to_record()["strata"] == {}


def test_the_stored_pooled_record_reads_back_as_the_verdict_the_step_uses() -> None:
    plan = abtest.plan_ab_test(0.8, 0.02)
    per_version = {"v": {CHAMPION_ARM: (8000, 10000), CHALLENGER_ARM: (7000, 10000)}}
    record = {"challenger_version": 4, **abtest.ab_test_by_stratum(plan, per_version).to_record()}
    verdict = ABVerdict.from_record(record)
    assert verdict == ABVerdict(4, "winner", "champion", record["test"]["p_value"], record["test"]["difference"], 0.05)
    decision = next_rollout_step(_canary(1), _guards("canary", PASS), verdict, NOW, switch_refusals=_never)
    assert decision.move == "rollback"


@pytest.mark.parametrize(
    ("accuracy", "baseline"), [(0.8, 0.8), (None, 0.5), (0.0, 0.5), (0.985, 0.5), (0.979, 0.979), (1.2, 0.5)]
)
def test_the_plan_uses_the_champion_accuracy_only_when_the_effect_fits(accuracy: float | None, baseline: float) -> None:
    plan = abtest.plan_for_champion(accuracy, 0.02)
    assert plan == abtest.plan_ab_test(baseline, 0.02)
