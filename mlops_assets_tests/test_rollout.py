"""Tests for the rollout state machine (shadow, canary steps, promotion, automatic rollback) and its guards."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from mlops_assets.ml.policy import RolloutPolicy
from mlops_assets.ml.rollout import (
    DEFAULT_CANARY_STEPS,
    GuardCheck,
    GuardResult,
    GuardStatus,
    Phase,
    RolloutState,
    advance,
    canary_guards,
    new_rollout,
    roll_back,
    shadow_guards,
    start,
)

pytestmark = pytest.mark.core

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
#: Four canary steps (the default before slow-data rollouts): the walk through several steps is tested on them.
FOUR_STEPS = (0.05, 0.25, 0.50, 1.00)


def _scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from a true probability, and a champion that scores close to it."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0, 1, n)
    labels = (rng.uniform(0, 1, n) < truth).astype(float)
    champion = np.clip(truth + rng.normal(0, 0.05, n), 0, 1)
    return labels, champion


def _similar(champion: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(champion + rng.normal(0, 0.01, champion.size), 0, 1)


def _passing(kind: str) -> GuardResult:
    check = GuardCheck("agreement", GuardStatus.PASS, 0.99, 0.95, "ok")
    return GuardResult(kind, 5000, 1000, (check,))  # type: ignore[arg-type]


def _started(**kwargs: object) -> RolloutState:
    kwargs.setdefault("canary_steps", FOUR_STEPS)
    return start(new_rollout("flights_delay", 3, 4, **kwargs), T0)  # type: ignore[arg-type]


# -- state machine ---------------------------------------------------------------------------------


def test_passing_guards_walk_5_25_50_100_then_promote() -> None:
    labels, champion = _scores(5000, seed=1)
    challenger = _similar(champion, seed=2)
    state = _started()
    assert (state.phase, state.challenger_share) == (Phase.SHADOW, 0.0)

    state = advance(state, shadow_guards(champion, challenger), T0 + timedelta(hours=1))
    shares = [state.challenger_share]
    for hour in range(2, 6):
        guards = canary_guards(labels, challenger, champion)
        assert guards.status is GuardStatus.PASS, guards.to_dict()
        state = advance(state, guards, T0 + timedelta(hours=hour))
        shares.append(state.challenger_share)

    assert shares == [0.05, 0.25, 0.50, 1.00, 1.00]
    assert state.phase is Phase.PROMOTED and state.is_terminal
    assert [(e.from_phase, e.to_phase) for e in state.history] == [
        (Phase.IDLE, Phase.SHADOW),
        (Phase.SHADOW, Phase.CANARY),
        (Phase.CANARY, Phase.CANARY),
        (Phase.CANARY, Phase.CANARY),
        (Phase.CANARY, Phase.CANARY),
        (Phase.CANARY, Phase.PROMOTED),
    ]
    assert [e.to_share for e in state.history] == [0.0, 0.05, 0.25, 0.50, 1.00, 1.00]
    final = state.history[-1]
    # The blue/green switch is one action for the caller to apply in one registry transaction.
    assert final.evidence["registry_action"] == {"promote_challenger": 4}
    assert final.evidence["guards"]["status"] == "pass"
    assert state.phase_started_at == T0 + timedelta(hours=5)


def test_failing_canary_guard_rolls_back_automatically() -> None:
    labels, champion = _scores(5000, seed=3)
    good = _similar(champion, seed=4)
    broken = np.random.default_rng(5).uniform(0, 1, champion.size)  # a model that learned nothing
    state = advance(_started(), shadow_guards(champion, good), T0 + timedelta(hours=1))
    state = advance(state, canary_guards(labels, good, champion), T0 + timedelta(hours=2))
    assert (state.phase, state.challenger_share) == (Phase.CANARY, 0.25)

    guards = canary_guards(labels, broken, champion)
    rolled = advance(state, guards, T0 + timedelta(hours=3))

    assert guards.status is GuardStatus.FAIL and "auc_drop" in guards.failed
    assert (rolled.phase, rolled.challenger_share, rolled.step) == (Phase.ROLLED_BACK, 0.0, None)
    event = rolled.history[-1]
    assert (event.from_phase, event.from_share, event.to_phase) == (Phase.CANARY, 0.25, Phase.ROLLED_BACK)
    assert "auc_drop" in event.reason
    assert event.evidence["guards"] == guards.to_dict()
    # Terminal: later decisions (a scheduler re-running) change nothing.
    assert advance(rolled, canary_guards(labels, good, champion), T0 + timedelta(hours=4)) is rolled


def test_insufficient_data_stays_put() -> None:
    labels, champion = _scores(5000, seed=6)
    challenger = _similar(champion, seed=7)
    shadow = _started()

    few = shadow_guards(champion[:100], challenger[:100], min_rows=1000)
    assert few.status is GuardStatus.INSUFFICIENT_DATA
    assert {c.status for c in few.checks} == {GuardStatus.INSUFFICIENT_DATA}
    assert advance(shadow, few, T0 + timedelta(hours=1)) == shadow

    canary = advance(shadow, shadow_guards(champion, challenger), T0 + timedelta(hours=1))
    unlabeled = labels.copy()
    unlabeled[200:] = np.nan  # labels not arrived yet: those rows do not count
    waiting = canary_guards(unlabeled, challenger, champion, min_rows=1000)
    assert (waiting.status, waiting.n_rows) == (GuardStatus.INSUFFICIENT_DATA, 200)
    assert advance(canary, waiting, T0 + timedelta(hours=2)) == canary
    assert len(canary.history) == 2  # waiting is not a move


def test_a_failing_guard_wins_over_missing_data() -> None:
    labels, champion = _scores(3000, seed=8)
    challenger = _similar(champion, seed=9)
    challenger[:100] = np.nan  # 3 % failed predictions
    only_negatives = np.zeros_like(labels)  # AUC cannot be computed: lacks data

    guards = canary_guards(only_negatives, challenger, champion, max_failure_rate=0.01)

    assert [c.status for c in guards.checks if c.name == "auc_drop"] == [GuardStatus.INSUFFICIENT_DATA]
    assert guards.status is GuardStatus.FAIL and guards.failed == ("challenger_failure_rate",)


def test_shadow_agreement_guard() -> None:
    _, champion = _scores(4000, seed=10)
    inverted = 1.0 - champion

    agreeing = shadow_guards(champion, _similar(champion, seed=11))
    disagreeing = shadow_guards(champion, inverted, min_correlation=-1.0)

    by_name = {c.name: c for c in agreeing.checks}
    expected_agreement = float(np.mean((champion >= 0.5) == (_similar(champion, seed=11) >= 0.5)))
    assert by_name["agreement"].value == pytest.approx(expected_agreement)
    expected_rho = spearmanr(champion, _similar(champion, seed=11)).statistic
    assert by_name["score_correlation"].value == pytest.approx(expected_rho)
    assert agreeing.status is GuardStatus.PASS
    assert disagreeing.failed == ("agreement",)
    state = advance(_started(), disagreeing, T0 + timedelta(minutes=30))
    assert state.phase is Phase.ROLLED_BACK and "agreement" in state.history[-1].reason


def test_shadow_correlation_guard_catches_scrambled_ranks() -> None:
    # Same decisions at the threshold, but the ranking inside each side is noise: agreement alone
    # would let this through.
    _, champion = _scores(4000, seed=12)
    rng = np.random.default_rng(13)
    scrambled = np.where(champion >= 0.5, rng.uniform(0.5, 1, champion.size), rng.uniform(0, 0.5, champion.size))

    guards = shadow_guards(champion, scrambled, min_agreement=0.99, min_correlation=0.9)

    assert guards.failed == ("score_correlation",)


def test_shadow_counts_failed_challenger_predictions() -> None:
    _, champion = _scores(2000, seed=14)
    challenger = champion.copy()
    challenger[:10] = np.nan
    champion_missing = champion.copy()
    champion_missing[10:20] = np.nan  # rows the champion could not score are not the challenger's fault

    guards = shadow_guards(champion_missing, challenger, max_failure_rate=0.01)

    by_name = {c.name: c for c in guards.checks}
    assert guards.n_rows == 1990
    assert by_name["challenger_failure_rate"].value == pytest.approx(10 / 1990)
    assert by_name["agreement"].value == pytest.approx(1980 / 1990)
    assert shadow_guards(champion, challenger, max_failure_rate=0.001).failed == ("challenger_failure_rate",)


def test_canary_guard_values_match_sklearn() -> None:
    labels, champion = _scores(3000, seed=15)
    challenger = np.clip(champion + 0.08, 0, 1)  # biased upwards: more false positives

    guards = canary_guards(labels, challenger, champion, max_error_rate_increase=0.01, max_auc_drop=0.01)

    by_name = {c.name: c for c in guards.checks}

    def error(scores: np.ndarray) -> float:
        return float(np.mean((scores >= 0.5) != (labels == 1)))

    assert by_name["error_rate_increase"].value == pytest.approx(error(challenger) - error(champion))
    assert by_name["auc_drop"].value == pytest.approx(
        roc_auc_score(labels, champion) - roc_auc_score(labels, challenger)
    )
    assert by_name["error_rate_increase"].status is GuardStatus.FAIL
    assert guards.failed == ("error_rate_increase",)  # ranking intact (AUC barely moves), decisions worse


def test_guards_must_match_the_phase() -> None:
    shadow = _started()
    with pytest.raises(ValueError, match="expected shadow guards"):
        advance(shadow, _passing("canary"), T0)
    with pytest.raises(ValueError, match="start"):
        advance(new_rollout("m", 1, 2), _passing("shadow"), T0)
    with pytest.raises(ValueError, match="before the last move"):
        advance(shadow, _passing("shadow"), T0 - timedelta(seconds=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        advance(shadow, _passing("shadow"), datetime(2024, 6, 2, 12, 0))
    with pytest.raises(ValueError, match="idle"):
        start(shadow, T0)
    with pytest.raises(ValueError, match="aligned"):
        shadow_guards([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="0/1"):
        canary_guards([0, 2], [0.1, 0.2], [0.1, 0.2], min_rows=1)


def test_custom_steps_skip_shadow_and_manual_rollback() -> None:
    state = start(new_rollout("m", None, 1, canary_steps=(0.1, 1.0)), T0, shadow=False)
    assert (state.phase, state.step, state.challenger_share) == (Phase.CANARY, 0, 0.1)
    state = advance(state, _passing("canary"), T0 + timedelta(hours=1))
    assert state.challenger_share == 1.0
    aborted = roll_back(state, T0 + timedelta(hours=2), reason="pager: latency", evidence={"p99_ms": 900})
    assert (aborted.phase, aborted.history[-1].reason) == (Phase.ROLLED_BACK, "pager: latency")
    assert roll_back(aborted, T0 + timedelta(hours=3), reason="again") is aborted


@pytest.mark.parametrize("steps", [(), (0.5, 0.25, 1.0), (0.0, 1.0), (0.05, 0.5), (0.5, 0.5, 1.0)])
def test_invalid_canary_steps_are_refused(steps: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match=r"canary_steps|last canary step"):
        new_rollout("m", 1, 2, canary_steps=steps)


def test_state_round_trips_through_json() -> None:
    labels, champion = _scores(3000, seed=16)
    challenger = _similar(champion, seed=17)
    state = _started(salt="fixed-salt")
    state = advance(state, shadow_guards(champion, challenger), T0 + timedelta(hours=1))
    state = advance(state, canary_guards(labels, challenger, champion), T0 + timedelta(hours=2))
    broken = canary_guards(labels, np.full(champion.size, np.nan), champion)  # undefined values become null
    rolled = advance(state, broken, T0 + timedelta(hours=3))

    for s in (new_rollout("m", None, 1), state, rolled):
        text = s.to_json()
        assert RolloutState.from_json(text) == s
        assert RolloutState.from_json(text).to_json() == text
    assert state.to_dict()["challenger_share"] == 0.25 and state.salt == "fixed-salt"
    assert new_rollout("m", 1, 2).salt == "m:v1->v2"  # default salt is per rollout


def test_default_steps() -> None:
    # One partial step, then all traffic: with the shadow phase, three data versions (docs/deployment.md).
    assert DEFAULT_CANARY_STEPS == (0.10, 1.00)
    assert RolloutPolicy().canary_steps == DEFAULT_CANARY_STEPS and RolloutPolicy().shadow_phase
    state = new_rollout("m", 1, 2)
    assert (state.canary_steps, state.shadow_phase, state.on_new_candidate) == (DEFAULT_CANARY_STEPS, True, "queue")
    with pytest.raises(ValueError, match="same version"):
        new_rollout("m", 2, 2)
