"""Rollouts that finish on slow data (issue 12, part 5), through the pure rollout core.

A yearly export is simulated: one large data version per year, scored with the rollout's traffic split of that
moment, its labels landing later. The rules under test: the plan (steps, shadow, new-candidate policy) is recorded
in the state at start; evidence is rows pooled since the phase began (one large version completes a phase, small
ones pool); the shadow phase needs no labels; a canary step needs labelled rows served at its own share; the
defaults finish a rollout in three yearly versions (the former four steps needed five); a breach of the production
model's SLA is decided at once by the same guards, and the fast path re-verifies the switch; a new candidate is
compared with the challenger in flight on one holdout.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import numpy as np
import pandas as pd
import pytest

from mlops_assets.ml import performance
from mlops_assets.ml.policy import RolloutPolicy
from mlops_assets.ml.promotion import compare_on_holdout
from mlops_assets.ml.rollout import (
    BREACH_REASON,
    DEFAULT_CANARY_STEPS,
    GuardStatus,
    Phase,
    RolloutDecision,
    RolloutState,
    decide_on_breach,
    new_rollout,
    next_rollout_step,
    start,
)
from mlops_assets.ml.routing import CHALLENGER_ARM, CHAMPION_ARM, assign_arms

pytestmark = pytest.mark.core

T0 = datetime(2020, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=365)
LABEL_LAG = timedelta(days=60)
CHAMPION, CHALLENGER = 1, 2
FOUR_STEPS = (0.05, 0.25, 0.50, 1.00)


def _outcomes(n: int, seed: int, *, challenger_quality: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two models' scores for ``n`` rows: the champion is a fixed noisy model; the challenger's signal
    is scaled by ``challenger_quality`` (1: as good as the champion, about; 0: noise)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0, 1, n)
    y = (rng.uniform(0, 1, n) < truth).astype(float)
    champion = np.clip(truth + rng.normal(0, 0.08, n), 0, 1)
    signal = challenger_quality * truth + (1 - challenger_quality) * rng.uniform(0, 1, n)
    challenger = np.clip(signal + rng.normal(0, 0.08, n), 0, 1)
    return y, champion, challenger


@dataclass
class Version:
    """One scored data version: its prediction log, the labels that land later, and when each happened."""

    key: str
    log: pd.DataFrame
    labels: pd.DataFrame
    scored_at: datetime
    labelled_at: datetime
    labelled: bool = field(default=False)

    def joined(self) -> pd.DataFrame:
        """The log joined with the labels that arrived (NaN before they did)."""
        if self.labelled:
            return performance.join_labels(self.log, self.labels)
        return self.log.assign(label=np.nan)


def _score(key: str, state: RolloutState, n: int, seed: int, at: datetime, **quality: float) -> Version:
    """Score one data version as ``predictions`` does: both models score every row, routed by the rollout's share."""
    y, champion, challenger = _outcomes(n, seed, **quality)
    ids = pd.Series([f"{key}-{i}" for i in range(n)])
    arms = assign_arms(ids, state.challenger_share, state.salt)
    frames = []
    for version, arm, scores in ((CHAMPION, CHAMPION_ARM, champion), (CHALLENGER, CHALLENGER_ARM, challenger)):
        frames.append(
            pd.DataFrame(
                {
                    "data_version": key,
                    "row_id": ids,
                    "model_version": version,
                    "arm": arm,
                    "served": arms == arm,
                    "score": scores,
                    "scored_at": pd.Timestamp(at),
                }
            )
        )
    labels = pd.DataFrame({"row_id": ids, "label": y})
    return Version(key, pd.concat(frames, ignore_index=True), labels, at, at + LABEL_LAG)


def _evidence(versions: Sequence[Version], since: datetime | None, *, labels_needed: bool) -> pd.DataFrame | None:
    """What the ``rollout_step`` pools: the versions scored since ``since`` (labelled ones only for a canary step)."""
    usable = [
        v.joined() for v in versions if (since is None or v.scored_at >= since) and (v.labelled or not labels_needed)
    ]
    return pd.concat(usable, ignore_index=True) if usable else None


def _step(state: RolloutState, versions: Sequence[Version], policy: RolloutPolicy, now: datetime) -> RolloutState:
    """One ``rollout_step`` on the evidence at ``now``; the switch is allowed (its re-verification is tested below)."""
    joined = _evidence(versions, state.phase_started_at, labels_needed=state.phase is not Phase.SHADOW)
    guards = None if joined is None else performance.rollout_guards(state, joined, policy, decision_threshold=0.5)
    return next_rollout_step(state, guards, None, now, switch_refusals=list).after


def _yearly(policy: RolloutPolicy, rows: int, years: int = 8) -> tuple[RolloutState, list[str]]:
    """A rollout started at T0, one data version a year (each scored on landing, labelled 60 days later)."""
    state = start(
        new_rollout(
            "yearly",
            CHAMPION,
            CHALLENGER,
            canary_steps=policy.canary_steps,
            shadow_phase=policy.shadow_phase,
            on_new_candidate=policy.on_new_candidate,
        ),
        T0,
    )
    versions: list[Version] = []
    used: list[str] = []
    for year in range(1, years + 1):
        if state.is_terminal:
            break
        landed = T0 + year * YEAR
        version = _score(f"y{year}", state, rows, seed=year, at=landed)
        versions.append(version)
        used.append(version.key)
        state = _step(state, versions, policy, landed)  # the ingest run's step: shadow decides here
        version.labelled = True
        state = _step(state, versions, policy, version.labelled_at)  # the labels run's step: a canary step decides
    return state, used


def test_the_defaults_finish_a_rollout_in_three_yearly_versions_where_four_steps_took_five() -> None:
    policy = RolloutPolicy()
    assert (policy.canary_steps, policy.shadow_phase) == (DEFAULT_CANARY_STEPS, True)
    state, used = _yearly(policy, rows=30_000)
    assert state.phase is Phase.PROMOTED, state.history[-1].reason
    assert used == ["y1", "y2", "y3"]
    moves = [(e.to_phase.value, e.to_share, e.at) for e in state.history]
    assert moves == [
        ("shadow", 0.0, T0),
        # Decided in the run that scored y1, before its labels: the shadow guards need none.
        ("canary", 0.1, T0 + YEAR),
        # y1's labels landed too, but its rows were scored in shadow: they are no canary evidence.
        ("canary", 1.0, T0 + 2 * YEAR + LABEL_LAG),
        ("promoted", 1.0, T0 + 3 * YEAR + LABEL_LAG),
    ]
    assert state.history[2].evidence["guards"]["n_rows"] == pytest.approx(3000, rel=0.1)  # 10 % of y2's rows

    four, used_four = _yearly(RolloutPolicy(canary_steps=FOUR_STEPS), rows=30_000)
    assert four.phase is Phase.PROMOTED and used_four == ["y1", "y2", "y3", "y4", "y5"]


def test_evidence_is_rows_one_large_version_completes_a_step_and_small_ones_pool() -> None:
    policy = RolloutPolicy(rollout_min_rows=1000, canary_steps=(0.1, 1.0))
    state = start(new_rollout("m", CHAMPION, CHALLENGER, canary_steps=policy.canary_steps), T0, shadow=False)
    # 6,000 rows at 10 %: about 600 labelled challenger rows — a hold, whatever the number of versions.
    small = _score("s1", state, 6000, seed=1, at=T0 + timedelta(days=1))
    small.labelled = True
    held = _step(state, [small], policy, T0 + timedelta(days=2))
    assert held == state
    # A second small version pools with the first: about 1,200 rows, the step completes.
    second = _score("s2", state, 6000, seed=2, at=T0 + timedelta(days=3))
    second.labelled = True
    pooled = _step(state, [small, second], policy, T0 + timedelta(days=4))
    assert (pooled.phase, pooled.challenger_share) == (Phase.CANARY, 1.0)
    assert pooled.history[-1].evidence["guards"]["n_rows"] >= 1000
    # One version of 20,000 rows completes the step on its own.
    large = _score("l1", state, 20_000, seed=3, at=T0 + timedelta(days=1))
    large.labelled = True
    alone = _step(state, [large], policy, T0 + timedelta(days=2))
    assert (alone.phase, alone.challenger_share) == (Phase.CANARY, 1.0)


def test_shadow_decides_without_labels_and_a_canary_step_never_does() -> None:
    policy = RolloutPolicy(rollout_min_rows=1000)
    shadow = start(new_rollout("m", CHAMPION, CHALLENGER), T0)
    version = _score("v1", shadow, 5000, seed=4, at=T0 + timedelta(days=1))  # no labels yet
    guards = performance.rollout_guards(shadow, version.joined(), policy, decision_threshold=0.5)
    assert guards is not None and guards.kind == "shadow" and guards.status is GuardStatus.PASS
    canary = start(new_rollout("m", CHAMPION, CHALLENGER), T0, shadow=False)
    unlabelled = _score("v2", canary, 5000, seed=5, at=T0 + timedelta(days=1))
    waiting = performance.rollout_guards(canary, unlabelled.joined(), policy, decision_threshold=0.5)
    assert waiting is not None and waiting.status is GuardStatus.INSUFFICIENT_DATA and waiting.n_rows == 0


def test_the_plan_is_recorded_in_the_state_and_a_stored_state_without_it_keeps_its_old_behaviour() -> None:
    state = start(new_rollout("m", 1, 2, canary_steps=(0.2, 1.0), shadow_phase=False, on_new_candidate="compare"), T0)
    assert (state.phase, state.challenger_share) == (Phase.CANARY, 0.2)  # no shadow: the plan said so
    again = RolloutState.from_json(state.to_json())
    assert (again.canary_steps, again.shadow_phase, again.on_new_candidate) == ((0.2, 1.0), False, "compare")
    legacy = state.to_dict()
    del legacy["shadow_phase"], legacy["on_new_candidate"]
    old = RolloutState.from_dict(legacy)
    # Started before the plan was recorded: superseded by a new candidate, as it was then.
    assert (old.shadow_phase, old.on_new_candidate) == (True, "supersede")
    with pytest.raises(ValueError, match="on_new_candidate"):
        new_rollout("m", 1, 2, on_new_candidate="merge")


# -- a breach during the rollout -----------------------------------------------------------------------------------


def _breach_decision(
    quality: float, labelled: int, *, refusals: Sequence[str] = ()
) -> tuple[RolloutState, RolloutDecision, list[int]]:
    """A rollout one year in (shadow passed on y1's 20,000 rows, 10 % served since); y1's labels land for
    ``labelled`` of its rows and production's SLA is breached: the step decided on the breach."""
    policy = RolloutPolicy(rollout_min_rows=1000)
    state = start(new_rollout("m", CHAMPION, CHALLENGER, canary_steps=policy.canary_steps), T0)
    shadowed = _score("y1", state, 20_000, seed=7, at=T0 + YEAR, challenger_quality=quality)
    state = _step(state, [shadowed], policy, T0 + YEAR)
    assert (state.phase, state.challenger_share) == (Phase.CANARY, 0.1)  # one year in: shadow passed, 10 % served
    shadowed.labels = shadowed.labels.iloc[:labelled]
    shadowed.labelled = True
    joined = _evidence([shadowed], state.history[0].at, labels_needed=True)
    assert joined is not None
    guards = performance.rollout_guards(state, joined, policy, decision_threshold=0.5, breach=True)
    calls: list[int] = []

    def switch() -> Sequence[str]:
        calls.append(1)
        return refusals

    decision = decide_on_breach(
        state,
        guards,
        None,
        T0 + YEAR + LABEL_LAG,
        breach="v1 realised roc_auc 0.61 < floor 0.70",
        switch_refusals=switch,
    )
    return state, decision, calls


def test_a_breach_with_passing_guards_promotes_at_once_from_the_first_canary_step() -> None:
    _state, decision, calls = _breach_decision(quality=1.0, labelled=20_000)
    assert decision.move == "promote" and decision.after.phase is Phase.PROMOTED
    assert calls == [1]  # the fast path re-verifies the switch, once
    event = decision.after.history[-1]
    assert event.from_share == 0.1 and event.reason.startswith(BREACH_REASON)
    # Every labelled row both models scored since the rollout began: the shadow year's 20,000 rows.
    assert decision.guards is not None
    assert decision.guards.kind == "canary" and decision.guards.n_rows == 20_000
    assert event.evidence["breach"] == "v1 realised roc_auc 0.61 < floor 0.70"
    assert event.evidence["registry_action"] == {"promote_challenger": CHALLENGER}


def test_a_breach_never_promotes_when_the_switch_is_refused() -> None:
    _state, decision, calls = _breach_decision(quality=1.0, labelled=20_000, refusals=["gate model_gates is failed"])
    assert calls == [1]
    assert decision.move == "rollback" and decision.after.phase is Phase.ROLLED_BACK
    assert "final switch refused: gate model_gates is failed" in decision.reason


def test_a_breach_with_a_worse_challenger_rolls_back_at_once() -> None:
    # Sane enough for the shadow guards (agreement, rank correlation), clearly worse on labels.
    _state, decision, calls = _breach_decision(quality=0.7, labelled=20_000)
    assert calls == []  # nothing to switch to
    assert decision.move == "rollback"
    assert "auc_drop" in decision.reason and decision.reason.startswith(BREACH_REASON)


def test_a_breach_on_too_little_evidence_holds_with_the_reason() -> None:
    state, decision, calls = _breach_decision(quality=1.0, labelled=500)
    assert calls == [] and decision.move == "hold" and decision.after == state
    assert "guards lack data" in decision.reason and "500 of 1000 rows" in decision.reason
    nothing = decide_on_breach(state, None, None, T0 + 2 * YEAR, breach="b", switch_refusals=list)
    assert nothing.move == "hold" and "no labelled row" in nothing.reason


# -- a new candidate compared with the challenger in flight ------------------------------------------------------


def test_compare_keeps_the_challenger_unless_the_candidate_is_significantly_better() -> None:
    y, champion_like, _ = _outcomes(4000, seed=11)
    rng = np.random.default_rng(12)
    weak = np.clip(0.4 * champion_like + 0.6 * rng.uniform(0, 1, y.size), 0, 1)
    compare = partial(
        compare_on_holdout,
        metric="roc_auc",
        data_version="y3",
        candidate_version=3,
        challenger_version=2,
        samples=300,
        confidence_level=0.95,
        seed=0,
    )
    better = compare(y, champion_like, weak)
    assert better.candidate_wins and better.lower is not None and better.lower > 0
    assert "v3 is significantly better and replaces v2" in better.reason
    same = compare(y, champion_like, champion_like)
    assert not same.candidate_wins and "v2 continues" in same.reason
    worse = compare(y, weak, champion_like)
    assert not worse.candidate_wins
    one_class = compare(np.zeros(100), champion_like[:100], weak[:100])
    assert not one_class.candidate_wins and "undefined" in one_class.reason
    nothing = compare(np.array([]), np.array([]), np.array([]))  # no labelled holdout row yet
    assert not nothing.candidate_wins and nothing.n_rows == 0 and "no labelled holdout row" in nothing.reason


# -- retraining while a rollout is in progress -------------------------------------------------------------------


class _Registry:
    """The one registry read of ``retrain_sensors._active_rollout``: the model's active rollout."""

    def __init__(self, state: RolloutState | None) -> None:
        self.state = state

    def active_rollout(self, model: str) -> RolloutState | None:
        return self.state


@pytest.mark.parametrize(("policy", "held"), [("queue", True), ("supersede", True), ("compare", False)])
def test_sensor_retrains_wait_for_a_rollout_unless_its_policy_compares(policy: str, held: bool) -> None:
    from mlops_assets.retrain_sensors import _active_rollout

    state = start(new_rollout("m", 1, 2, on_new_candidate=policy), T0)
    why = _active_rollout(_Registry(state), "m")  # type: ignore[arg-type]
    assert (why is not None) == held
    if held:
        assert f"on_new_candidate: {policy}" in why and "v2 is in shadow" in why  # type: ignore[operator]
    assert _active_rollout(_Registry(None), "m") is None  # type: ignore[arg-type]
