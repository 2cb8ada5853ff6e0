"""The rollout of a challenger model: shadow, canary steps, then promotion or rollback. Pure, no database.

States (:class:`Phase`)::

    idle --start--> shadow --pass--> canary[0] --pass--> canary[1] ... canary[last] --pass--> promoted
                      |                 |                    |               |
                      +-----fail--------+-------fail---------+-----fail------+--> rolled_back

* ``shadow``: the challenger scores a copy of the traffic but serves nothing (share 0);
  :func:`shadow_guards` compares its predictions with the champion's.
* ``canary[i]``: the challenger serves ``canary_steps[i]`` of the traffic (default 10 %, then 100 %);
  :func:`canary_guards` compares both models on the challenger's rows, joined with labels.
* ``promoted`` / ``rolled_back``: terminal.

The plan of a rollout (its canary steps, whether it starts in shadow, and what a new candidate does while it
runs: :data:`NEW_CANDIDATE_POLICIES`) comes from the spec's ``policy.rollout`` and is recorded in the state when
the rollout starts: editing the spec changes the next rollout, never one in flight.

Evidence is counted in rows, not data versions: a phase decides as soon as the rows pooled since it began reach
``rollout_min_rows`` (one large version is enough; small ones pool). The shadow phase needs no labels (both
models score every row), so it is decided on the version it scores, in the run that scores it; a canary step
needs labelled rows the challenger served at that step's share, so each canary step takes at least one labelled
version scored at its share. A breach of the production model's SLA during a rollout is decided at once by the
same guards (:func:`decide_on_breach`).

:func:`advance` moves one step at a time: forward only when every guard passes, to ``rolled_back``
as soon as any guard fails, and nowhere while the guards lack data (``insufficient_data``): a rollout
never moves on silence. Every move is appended to the state's history with the guard evidence.

One scheduled step of a rollout is :func:`next_rollout_step`: the current state, the guards of the
current phase (computed by :func:`mlops_assets.ml.performance.rollout_guards` on the joined prediction
logs), the stored A/B verdict (:class:`ABVerdict`: a significant champion win vetoes the canary) and the
re-verification of the final switch go in; a :class:`RolloutDecision` (the next state, the move, the
reason, the guard rows) comes out. The caller only persists it.

The switch at the end is blue/green: reaching ``promoted`` means "apply the promotion now", which the
caller does as one registry transaction (``ModelRegistry.promote_challenger(..., expected_version=
state.challenger_version)`` archives the champion, promotes the challenger and moves the ``champion``
alias atomically) and persists the new state only after it committed. This module never touches the
registry, so every decision here is a pure function of its inputs.
"""

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

import numpy as np

from mlops_assets.ml import json_codec

#: Default canary steps: one partial step, then all traffic. With the shadow phase a rollout takes three data
#: versions (shadow, 10 %, 100 %): three years of a yearly export (docs/deployment.md, "Rollouts").
DEFAULT_CANARY_STEPS: tuple[float, ...] = (0.10, 1.00)

#: What a new candidate that passed its gates does while a rollout is in progress (``policy.rollout.on_new_candidate``):
#: ``queue`` waits (stage None, alias ``queued``) and starts when the rollout ends; ``supersede`` rolls the rollout
#: in progress back and starts its own; ``compare`` scores both on the newer version's holdout and keeps the better.
NEW_CANDIDATE_POLICIES: tuple[str, ...] = ("queue", "supersede", "compare")


# The guards' statistics import scipy and scikit-learn on first use: the registry imports this module for the
# rollout state machine alone, and every run step imports the registry (~1 s of scipy/sklearn import otherwise).
def _spearmanr(a: np.ndarray, b: np.ndarray) -> Any:
    from scipy.stats import spearmanr

    return spearmanr(a, b)


def _roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores))


GuardKind = Literal["shadow", "canary"]


class Phase(StrEnum):
    """Where a rollout is."""

    IDLE = "idle"
    SHADOW = "shadow"
    CANARY = "canary"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"


TERMINAL_PHASES: frozenset[Phase] = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK})


class GuardStatus(StrEnum):
    """Outcome of one guard check."""

    PASS = "pass"
    FAIL = "fail"
    INSUFFICIENT_DATA = "insufficient_data"


#: The passing direction of each guard, in words (the guard tables' ``passes_when`` column).
GUARD_PASSES_WHEN: dict[str, str] = {
    "challenger_failure_rate": "value ≤ limit (at most this share of failed challenger predictions)",
    "agreement": "value ≥ limit (challenger and champion decide alike on at least this share of rows)",
    "score_correlation": "value ≥ limit (Spearman correlation of the two models' scores)",
    "error_rate_increase": "value ≤ limit (challenger error rate minus champion's, on the challenger's rows)",
    "auc_drop": "value ≤ limit (champion AUC minus challenger AUC, on the challenger's rows)",
    "ab_test": "the champion does not win the A/B test (value: p-value; limit: alpha)",
}

#: Column descriptions of a guard table (:func:`guard_table_rows`).
GUARD_COLUMNS: dict[str, str] = {
    "name": "The guard.",
    "status": "pass, fail or insufficient_data (too few rows to decide).",
    "value": "What was measured (empty: not measurable).",
    "passes_when": "The passing direction: how value compares with limit for the guard to pass.",
    "limit": "The threshold from the model's rollout policy.",
    "detail": "The measurement in words.",
}


def guard_table_rows(checks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Guard checks (:meth:`GuardCheck.to_dict` form) as table rows, each with its ``passes_when`` direction.

    Columns in :data:`GUARD_COLUMNS` order; a guard not in :data:`GUARD_PASSES_WHEN` gets an empty direction.
    """
    return [
        {
            "name": c.get("name"),
            "status": c.get("status"),
            "value": c.get("value"),
            "passes_when": GUARD_PASSES_WHEN.get(str(c.get("name")), ""),
            "limit": c.get("limit"),
            "detail": c.get("detail"),
        }
        for c in checks
    ]


@dataclass(frozen=True)
class GuardCheck:
    """One guard: a measured value against its limit.

    Attributes:
        name: What is checked (``"agreement"``, ``"auc_drop"``, ...).
        status: Pass, fail, or insufficient data.
        value: The measured value (``None`` when not measurable).
        limit: The threshold it is compared with.
        detail: Human-readable explanation.
    """

    name: str
    status: GuardStatus
    value: float | None
    limit: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "status": self.status.value,
            "value": self.value,
            "limit": self.limit,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class GuardResult:
    """The guards evaluated for one phase of a rollout.

    Attributes:
        kind: ``"shadow"`` or ``"canary"`` (which phase the checks are valid for).
        n_rows: Rows the checks were computed on.
        min_rows: Rows needed before any check is decided.
        checks: The individual checks.
    """

    kind: GuardKind
    n_rows: int
    min_rows: int
    checks: tuple[GuardCheck, ...]

    @property
    def status(self) -> GuardStatus:
        """``fail`` if any check failed; else ``insufficient_data`` if any lacks data (or none ran); else ``pass``."""
        statuses = {c.status for c in self.checks}
        if GuardStatus.FAIL in statuses:
            return GuardStatus.FAIL
        if not statuses or GuardStatus.INSUFFICIENT_DATA in statuses:
            return GuardStatus.INSUFFICIENT_DATA
        return GuardStatus.PASS

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the failed checks."""
        return tuple(c.name for c in self.checks if c.status is GuardStatus.FAIL)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready evidence."""
        return {
            "kind": self.kind,
            "status": self.status.value,
            "n_rows": self.n_rows,
            "min_rows": self.min_rows,
            "checks": [c.to_dict() for c in self.checks],
        }


@dataclass(frozen=True)
class RolloutEvent:
    """One move of a rollout.

    Attributes:
        at: When (timezone-aware).
        from_phase: Phase before.
        from_share: Challenger's traffic share before.
        to_phase: Phase after.
        to_share: Challenger's traffic share after.
        reason: Why.
        evidence: JSON details (the guard results that decided the move).
    """

    at: datetime
    from_phase: Phase
    from_share: float
    to_phase: Phase
    to_share: float
    reason: str
    evidence: dict[str, Any] = field(hash=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "at": self.at.isoformat(),
            "from_phase": self.from_phase.value,
            "from_share": self.from_share,
            "to_phase": self.to_phase.value,
            "to_share": self.to_share,
            "reason": self.reason,
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RolloutEvent":
        """Inverse of :meth:`to_dict`."""
        return cls(
            at=_aware(datetime.fromisoformat(data["at"]), "event time"),
            from_phase=Phase(data["from_phase"]),
            from_share=float(data["from_share"]),
            to_phase=Phase(data["to_phase"]),
            to_share=float(data["to_share"]),
            reason=str(data["reason"]),
            evidence=dict(data["evidence"]),
        )


def _aware(when: datetime, what: str) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{what}: pass a timezone-aware datetime, got {when!r}")
    return when


def _check_steps(steps: Sequence[float]) -> tuple[float, ...]:
    result = tuple(float(s) for s in steps)
    if not result:
        raise ValueError("canary_steps must not be empty")
    if any(not 0.0 < s <= 1.0 for s in result) or any(a >= b for a, b in itertools.pairwise(result)):
        raise ValueError(f"canary_steps must be strictly increasing shares in (0, 1], got {result}")
    if result[-1] != 1.0:
        # The last canary step is "all traffic on the challenger", the state just before the switch.
        raise ValueError(f"the last canary step must be 1.0, got {result}")
    return result


@dataclass(frozen=True)
class RolloutState:
    """A rollout of ``challenger_version`` against ``champion_version``.

    Attributes:
        model_name: Registered model name.
        champion_version: The version serving when the rollout started (``None``: no champion yet).
        challenger_version: The version being rolled out.
        phase: Where the rollout is.
        step: Index into ``canary_steps`` in the canary phase, else ``None``.
        canary_steps: Challenger shares of the canary steps, increasing, ending at 1.0.
        salt: Routing salt for :func:`mlops_assets.ml.routing.assign_arms`, fixed for the rollout.
        history: Every move so far, oldest first.
        shadow_phase: Whether the rollout starts in shadow (:func:`start`), from the spec at start.
        on_new_candidate: What a new candidate does while this rollout runs (:data:`NEW_CANDIDATE_POLICIES`),
            from the spec at start. A state stored before the field existed reads as ``supersede`` (the
            behaviour it was started under).
    """

    model_name: str
    champion_version: int | None
    challenger_version: int
    phase: Phase = Phase.IDLE
    step: int | None = None
    canary_steps: tuple[float, ...] = DEFAULT_CANARY_STEPS
    salt: str = ""
    history: tuple[RolloutEvent, ...] = ()
    shadow_phase: bool = True
    on_new_candidate: str = "queue"

    def __post_init__(self) -> None:
        object.__setattr__(self, "phase", Phase(self.phase))
        if self.on_new_candidate not in NEW_CANDIDATE_POLICIES:
            raise ValueError(f"on_new_candidate must be one of {NEW_CANDIDATE_POLICIES}, got {self.on_new_candidate!r}")
        object.__setattr__(self, "canary_steps", _check_steps(self.canary_steps))
        object.__setattr__(self, "history", tuple(self.history))
        if self.phase is Phase.CANARY:
            if self.step is None or not 0 <= self.step < len(self.canary_steps):
                raise ValueError(f"canary phase needs a step in [0, {len(self.canary_steps)}), got {self.step}")
        elif self.step is not None:
            raise ValueError(f"phase {self.phase.value} has no step, got {self.step}")
        if self.champion_version == self.challenger_version:
            raise ValueError(f"champion and challenger are the same version v{self.challenger_version}")
        if not self.salt:
            object.__setattr__(self, "salt", f"{self.model_name}:v{self.champion_version}->v{self.challenger_version}")

    @property
    def challenger_share(self) -> float:
        """Fraction of live traffic the challenger serves now (0 in shadow: it only scores a copy)."""
        if self.phase is Phase.CANARY:
            assert self.step is not None
            return self.canary_steps[self.step]
        return 1.0 if self.phase is Phase.PROMOTED else 0.0

    @property
    def is_terminal(self) -> bool:
        """Whether the rollout is over (promoted or rolled back)."""
        return self.phase in TERMINAL_PHASES

    @property
    def phase_started_at(self) -> datetime | None:
        """When the current phase (or canary step) began: collect guard data from this instant on."""
        return self.history[-1].at if self.history else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``challenger_share`` is included for readers; it is derived on load)."""
        return {
            "model_name": self.model_name,
            "champion_version": self.champion_version,
            "challenger_version": self.challenger_version,
            "phase": self.phase.value,
            "step": self.step,
            "challenger_share": self.challenger_share,
            "canary_steps": list(self.canary_steps),
            "salt": self.salt,
            "history": [e.to_dict() for e in self.history],
            "shadow_phase": self.shadow_phase,
            "on_new_candidate": self.on_new_candidate,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RolloutState":
        """Inverse of :meth:`to_dict`."""
        return cls(
            model_name=str(data["model_name"]),
            champion_version=None if data["champion_version"] is None else int(data["champion_version"]),
            challenger_version=int(data["challenger_version"]),
            phase=Phase(data["phase"]),
            step=None if data["step"] is None else int(data["step"]),
            canary_steps=tuple(float(s) for s in data["canary_steps"]),
            salt=str(data["salt"]),
            history=tuple(RolloutEvent.from_dict(e) for e in data["history"]),
            # States stored before the plan was recorded: shadow first, and superseded by a new candidate.
            shadow_phase=bool(data.get("shadow_phase", True)),
            on_new_candidate=str(data.get("on_new_candidate", "supersede")),
        )

    def to_json(self) -> str:
        """Serialise as standard JSON (:mod:`mlops_assets.ml.json_codec`: NaN or infinities in evidence become null)."""
        return json_codec.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RolloutState":
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json_codec.loads(text))


def new_rollout(
    model_name: str,
    champion_version: int | None,
    challenger_version: int,
    *,
    canary_steps: Sequence[float] = DEFAULT_CANARY_STEPS,
    salt: str = "",
    shadow_phase: bool = True,
    on_new_candidate: str = "queue",
) -> RolloutState:
    """An idle rollout (nothing routed to the challenger yet) with its plan: steps, shadow, new-candidate policy.

    Pass the spec's ``policy.rollout.canary_steps``, ``shadow_phase`` and ``on_new_candidate``: they are recorded
    in the state, so a later spec edit does not change this rollout.
    """
    return RolloutState(
        model_name=model_name,
        champion_version=champion_version,
        challenger_version=challenger_version,
        canary_steps=tuple(canary_steps),
        salt=salt,
        shadow_phase=shadow_phase,
        on_new_candidate=on_new_candidate,
    )


def _move(
    state: RolloutState, now: datetime, phase: Phase, step: int | None, reason: str, evidence: dict[str, Any]
) -> RolloutState:
    _aware(now, "now")
    if state.history and now < state.history[-1].at:
        raise ValueError(f"now={now.isoformat()} is before the last move at {state.history[-1].at.isoformat()}")
    moved = replace(state, phase=phase, step=step, history=())
    event = RolloutEvent(
        at=now,
        from_phase=state.phase,
        from_share=state.challenger_share,
        to_phase=phase,
        to_share=moved.challenger_share,
        reason=reason,
        evidence=evidence,
    )
    return replace(moved, history=(*state.history, event))


def start(
    state: RolloutState, now: datetime, *, shadow: bool | None = None, reason: str = "rollout started"
) -> RolloutState:
    """Leave ``idle``: into ``shadow`` or straight to the first canary step.

    Args:
        state: An idle rollout.
        now: When (timezone-aware).
        shadow: Start in shadow; ``None`` (default): as the rollout's plan says (:attr:`RolloutState.shadow_phase`).
        reason: Why, for the history.

    Raises:
        ValueError: The rollout is not idle.
    """
    if state.phase is not Phase.IDLE:
        raise ValueError(f"start() needs an idle rollout, this one is {state.phase.value}")
    if state.shadow_phase if shadow is None else shadow:
        return _move(state, now, Phase.SHADOW, None, reason, {})
    return _move(state, now, Phase.CANARY, 0, reason, {})


def advance(state: RolloutState, guards: GuardResult, now: datetime) -> RolloutState:
    """Take one decision from the guards of the current phase.

    * any guard failed: ``rolled_back`` (automatic rollback, the guard evidence in the history);
    * not enough data: the state unchanged (nothing appended to the history);
    * every guard passed: one step forward (shadow -> canary[0] -> ... -> canary[last] -> promoted).

    A terminal rollout is returned unchanged, so a scheduler re-running the decision is harmless.

    Args:
        state: The rollout.
        guards: :func:`shadow_guards` in the shadow phase, :func:`canary_guards` in a canary step,
            computed on data collected since :attr:`RolloutState.phase_started_at`.
        now: Decision time (timezone-aware, not before the last move).

    Returns:
        The new state.

    Raises:
        ValueError: The rollout is idle, or the guards are of the wrong kind for the phase.
    """
    if state.is_terminal:
        return state
    if state.phase is Phase.IDLE:
        raise ValueError("advance() on an idle rollout: start() it first")
    expected: GuardKind = "shadow" if state.phase is Phase.SHADOW else "canary"
    if guards.kind != expected:
        raise ValueError(f"the rollout is in {state.phase.value}: expected {expected} guards, got {guards.kind}")
    status = guards.status
    where = state.phase.value if state.step is None else f"canary step {state.step} ({state.challenger_share:g})"
    evidence = {"guards": guards.to_dict()}
    if status is GuardStatus.INSUFFICIENT_DATA:
        return state
    if status is GuardStatus.FAIL:
        return _move(
            state, now, Phase.ROLLED_BACK, None, f"guard failed in {where}: {', '.join(guards.failed)}", evidence
        )
    if state.phase is Phase.SHADOW:
        return _move(state, now, Phase.CANARY, 0, f"shadow guards passed on {guards.n_rows} rows", evidence)
    assert state.step is not None
    if state.step + 1 < len(state.canary_steps):
        return _move(state, now, Phase.CANARY, state.step + 1, f"guards passed in {where}", evidence)
    evidence["registry_action"] = {"promote_challenger": state.challenger_version}
    return _move(state, now, Phase.PROMOTED, None, f"guards passed in {where}: switch to the challenger", evidence)


def conclude(state: RolloutState, now: datetime, *, reason: str) -> RolloutState:
    """Record that the challenger was promoted outside the rollout (by hand); a terminal rollout is unchanged."""
    if state.is_terminal:
        return state
    return _move(state, now, Phase.PROMOTED, None, reason, {})


def roll_back(
    state: RolloutState, now: datetime, *, reason: str, evidence: dict[str, Any] | None = None
) -> RolloutState:
    """Abort a rollout by hand (operator decision); a terminal rollout is returned unchanged."""
    if state.is_terminal:
        return state
    return _move(state, now, Phase.ROLLED_BACK, None, reason, dict(evidence or {}))


# -- guards ----------------------------------------------------------------------------------------


def _vector(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must be aligned row by row, got lengths {lengths}")


def _insufficient(names_limits: Sequence[tuple[str, float]], n: int, min_rows: int) -> tuple[GuardCheck, ...]:
    detail = f"{n} of {min_rows} rows needed"
    return tuple(GuardCheck(name, GuardStatus.INSUFFICIENT_DATA, None, limit, detail) for name, limit in names_limits)


def _at_most(name: str, value: float, limit: float, what: str) -> GuardCheck:
    status = GuardStatus.PASS if value <= limit else GuardStatus.FAIL
    return GuardCheck(name, status, float(value), float(limit), f"{what} {value:.4g} (max {limit:g})")


def _at_least(name: str, value: float, limit: float, what: str) -> GuardCheck:
    if math.isnan(value):
        return GuardCheck(name, GuardStatus.FAIL, None, float(limit), f"{what} undefined (constant scores?)")
    status = GuardStatus.PASS if value >= limit else GuardStatus.FAIL
    return GuardCheck(name, status, float(value), float(limit), f"{what} {value:.4g} (min {limit:g})")


def shadow_guards(
    champion_scores: Any,
    challenger_scores: Any,
    *,
    min_rows: int = 1000,
    min_agreement: float = 0.95,
    min_correlation: float = 0.8,
    threshold: float = 0.5,
    max_failure_rate: float = 0.001,
) -> GuardResult:
    """Guards of the shadow phase: does the challenger, on live traffic, behave like a sane model?

    Rows where the champion has no score are dropped (its failure is not the challenger's). A missing
    (NaN) challenger score is a failed prediction: it counts against ``challenger_failure_rate`` and
    as a disagreement.

    Checks: ``challenger_failure_rate`` <= ``max_failure_rate``; ``agreement`` (share of rows where
    both models take the same decision at ``threshold``) >= ``min_agreement``; ``score_correlation``
    (Spearman, on rows both scored; rank correlation so that a recalibrated challenger is not
    penalised) >= ``min_correlation``.

    Args:
        champion_scores: Champion's scores, one per request.
        challenger_scores: Challenger's scores for the same requests.
        min_rows: Rows needed before deciding anything.
        min_agreement: Minimum decision agreement.
        min_correlation: Minimum Spearman correlation of the scores.
        threshold: Decision threshold.
        max_failure_rate: Maximum share of failed challenger predictions.
    """
    champion = _vector("champion_scores", champion_scores)
    challenger = _vector("challenger_scores", challenger_scores)
    _same_length(champion_scores=champion, challenger_scores=challenger)
    keep = np.isfinite(champion)
    champion, challenger = champion[keep], challenger[keep]
    n = int(champion.size)
    limits = [
        ("challenger_failure_rate", max_failure_rate),
        ("agreement", min_agreement),
        ("score_correlation", min_correlation),
    ]
    if n < min_rows or n == 0:
        return GuardResult("shadow", n, min_rows, _insufficient(limits, n, min_rows))
    scored = np.isfinite(challenger)
    failure_rate = float(1.0 - scored.mean())
    agree = scored & ((champion >= threshold) == (challenger >= threshold))
    # Fewer than 3 pairs make a rank correlation meaningless (and spearmanr warns); NaN fails the check.
    enough_pairs = scored.sum() >= 3
    correlation = float(_spearmanr(champion[scored], challenger[scored]).statistic) if enough_pairs else math.nan
    checks = (
        _at_most("challenger_failure_rate", failure_rate, max_failure_rate, "failed challenger predictions"),
        _at_least("agreement", float(agree.mean()), min_agreement, f"decision agreement at {threshold:g}"),
        _at_least("score_correlation", correlation, min_correlation, "Spearman correlation of scores"),
    )
    return GuardResult("shadow", n, min_rows, checks)


def canary_guards(
    labels: Any,
    challenger_scores: Any,
    champion_scores: Any,
    *,
    min_rows: int = 1000,
    max_auc_drop: float = 0.01,
    max_error_rate_increase: float = 0.01,
    threshold: float = 0.5,
    max_failure_rate: float = 0.001,
    min_per_class: int = 10,
) -> GuardResult:
    """Guards of a canary step, from the prediction log joined with the labels that arrived.

    Paired design: each row is a request the challenger served, with the champion's score for the
    same request (the champion keeps scoring in the background), so both models are compared on
    exactly the same population and the difference is not confounded by the traffic split. Rows
    without a label (NaN) or without a champion score are dropped; a NaN challenger score is a
    failed prediction (counted in ``challenger_failure_rate``, left out of the other two checks).

    Checks: ``challenger_failure_rate`` <= ``max_failure_rate``; ``error_rate_increase`` (challenger
    misclassification rate at ``threshold`` minus the champion's) <= ``max_error_rate_increase``;
    ``auc_drop`` (champion ROC AUC minus the challenger's) <= ``max_auc_drop``, which lacks data until
    each class has ``min_per_class`` rows.

    Args:
        labels: Observed binary outcomes (0/1; NaN when not known yet).
        challenger_scores: Challenger's scores.
        champion_scores: Champion's scores for the same requests.
        min_rows: Labelled rows needed before deciding anything.
        max_auc_drop: Largest tolerated ROC AUC loss.
        max_error_rate_increase: Largest tolerated increase of the misclassification rate.
        threshold: Decision threshold.
        max_failure_rate: Maximum share of failed challenger predictions.
        min_per_class: Rows of each class needed for the AUC check.
    """
    y = _vector("labels", labels)
    challenger = _vector("challenger_scores", challenger_scores)
    champion = _vector("champion_scores", champion_scores)
    _same_length(labels=y, challenger_scores=challenger, champion_scores=champion)
    keep = np.isfinite(y) & np.isfinite(champion)
    y, challenger, champion = y[keep], challenger[keep], champion[keep]
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"labels must be 0/1 (or NaN when unknown), got {sorted(set(y.tolist()))[:5]}")
    n = int(y.size)
    limits = [
        ("challenger_failure_rate", max_failure_rate),
        ("error_rate_increase", max_error_rate_increase),
        ("auc_drop", max_auc_drop),
    ]
    if n < min_rows or n == 0:
        return GuardResult("canary", n, min_rows, _insufficient(limits, n, min_rows))
    scored = np.isfinite(challenger)
    failure_rate = float(1.0 - scored.mean())
    y_ok, challenger_ok, champion_ok = y[scored], challenger[scored], champion[scored]
    checks = [_at_most("challenger_failure_rate", failure_rate, max_failure_rate, "failed challenger predictions")]
    if y_ok.size == 0:
        checks.append(
            GuardCheck(
                "error_rate_increase", GuardStatus.FAIL, None, max_error_rate_increase, "no challenger predictions"
            )
        )
    else:
        error_challenger = float(np.mean((challenger_ok >= threshold) != (y_ok == 1.0)))
        error_champion = float(np.mean((champion_ok >= threshold) != (y_ok == 1.0)))
        checks.append(
            _at_most(
                "error_rate_increase",
                error_challenger - error_champion,
                max_error_rate_increase,
                f"error rate {error_challenger:.4g} vs champion {error_champion:.4g}: increase",
            )
        )
    positives = int(y_ok.sum())
    negatives = int(y_ok.size - positives)
    if min(positives, negatives) < max(1, min_per_class):
        checks.append(
            GuardCheck(
                "auc_drop",
                GuardStatus.INSUFFICIENT_DATA,
                None,
                max_auc_drop,
                f"{positives} positive / {negatives} negative rows, {min_per_class} of each needed",
            )
        )
    else:
        auc_challenger = float(_roc_auc(y_ok, challenger_ok))
        auc_champion = float(_roc_auc(y_ok, champion_ok))
        checks.append(
            _at_most(
                "auc_drop",
                auc_champion - auc_challenger,
                max_auc_drop,
                f"ROC AUC {auc_challenger:.4g} vs champion {auc_champion:.4g}: drop",
            )
        )
    return GuardResult("canary", n, min_rows, tuple(checks))


# -- one scheduled step ----------------------------------------------------------------------------

#: Why a step holds when no data version carries evidence for the current phase yet.
NO_EVIDENCE_REASON = (
    "no version scored with this rollout's challenger since the phase began carries its evidence yet "
    "(shadow: both models' scores; canary: labels of the rows the challenger served)"
)

RolloutMove = Literal["hold", "advance", "rollback", "promote"]


@dataclass(frozen=True)
class ABVerdict:
    """The A/B test's outcome as a rollout step reads it (from the stored ``ab_test`` record).

    Two methods (``policy.rollout.ab_method``): ``msprt`` is always valid, so its verdict is read at every step
    (``continue`` included: the champion has not won at level alpha); ``fixed_horizon`` is read only once it
    reached its horizon (``winner`` / ``no_difference``): an earlier look would inflate its false-positive rate.

    Attributes:
        challenger_version: The challenger the test was run for (``None`` when the record names none:
            e.g. the record of a version with no rollout in progress).
        decision: ``"continue"``, ``"winner"`` or ``"no_difference"`` (see :class:`mlops_assets.ml.abtest.ABResult`
            and :class:`mlops_assets.ml.abtest.SequentialAB`); ``None`` when the record holds no decision.
        winner: ``"champion"`` or ``"challenger"`` when ``decision == "winner"``, else ``None``.
        p_value: ``msprt``: the always-valid p-value; ``fixed_horizon``: the two-sided p-value of the stratified
            z-test, ``None`` while an arm has no trials.
        difference: Challenger minus champion of ``metric`` (``msprt``: per-row mean, strata combined;
            ``fixed_horizon``: served decision accuracy, a fraction in [-1, 1]), or ``None``.
        alpha: The test's level (0.05 when the record has none).
        method: ``"msprt"`` or ``"fixed_horizon"`` (a record without ``method`` is a fixed-horizon one).
        metric: ``"log_loss"``, ``"brier"`` or ``"accuracy"``.
    """

    challenger_version: int | None
    decision: str | None
    winner: str | None = None
    p_value: float | None = None
    difference: float | None = None
    alpha: float = 0.05
    method: str = "fixed_horizon"
    metric: str = "accuracy"

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> "ABVerdict | None":
        """Read the ``ab_test`` asset's stored value.

        Returns ``None`` for a missing or empty record. An ``msprt`` record (``method: msprt``,
        ``SequentialAB.to_record()``) is read from its top-level ``decision``, ``winner``, ``p_value``,
        ``difference``, ``alpha``, ``metric``; a fixed-horizon one (``ABResult.to_dict()``, ``method`` absent or
        ``fixed_horizon``) from ``decision``, ``winner``, ``test.p_value``, ``test.difference``, ``plan.alpha``.
        Both: ``challenger_version``. Everything else is ignored.
        """
        if not record:
            return None
        challenger = record.get("challenger_version")
        version = None if challenger is None else int(challenger)
        if record.get("method") == "msprt":
            return cls(
                challenger_version=version,
                decision=record.get("decision"),
                winner=record.get("winner"),
                p_value=record.get("p_value"),
                difference=record.get("difference"),
                alpha=float(record.get("alpha", 0.05)),
                method="msprt",
                metric=str(record.get("metric", "log_loss")),
            )
        test = record.get("test") or {}
        return cls(
            challenger_version=version,
            decision=record.get("decision"),
            winner=record.get("winner"),
            p_value=test.get("p_value"),
            difference=test.get("difference"),
            alpha=(record.get("plan") or {}).get("alpha", 0.05),
        )

    @property
    def decided(self) -> bool:
        """Whether the test reached a conclusion (``winner`` or ``no_difference``)."""
        return self.decision not in (None, "continue")

    @property
    def readable(self) -> bool:
        """Whether a rollout step may act on the verdict now: an ``msprt`` verdict always (it is valid at every
        reading), a ``fixed_horizon`` one only once decided at its horizon."""
        return self.decision is not None and (self.method == "msprt" or self.decided)

    def guard_check(self) -> GuardCheck:
        """The ``ab_test`` guard: fails on a significant champion win, passes on any other readable outcome.

        ``value`` is the p-value and ``limit`` alpha (the test was already decided against it by
        :func:`mlops_assets.ml.abtest.msprt_test` or :func:`mlops_assets.ml.abtest.ab_decision_stratified`; the
        check only carries the verdict). A challenger win passes like ``continue``: it skips no canary step —
        the steps bound the harm of what the A/B metric does not see (failed predictions, a worse AUC or error
        rate on the served rows, a change after the win).
        """
        lost = self.winner == "champion"
        if self.method == "msprt":
            detail = f"mSPRT on {self.metric}: {self.decision}" + (f", winner {self.winner}" if self.winner else "")
            if self.p_value is not None:
                difference = "" if self.difference is None else f"difference {self.difference:+.4g}, "
                detail += f" ({difference}always-valid p={self.p_value:.3g}, alpha {self.alpha:g})"
        else:
            detail = f"A/B at its horizon: {self.decision}" + (f", winner {self.winner}" if self.winner else "")
            if self.p_value is not None and self.difference is not None:
                detail += f" (difference {self.difference:+.4f}, p={self.p_value:.3g})"
        return GuardCheck("ab_test", GuardStatus.FAIL if lost else GuardStatus.PASS, self.p_value, self.alpha, detail)


def with_ab_verdict(guards: GuardResult, ab: ABVerdict | None) -> GuardResult:
    """The canary guards plus the A/B verdict as one more check (``ab_test``): a significant champion win fails.

    Unchanged for shadow guards (the challenger serves nothing there), without a verdict, and for a
    fixed-horizon verdict before its horizon (``continue``: a peek would inflate its false-positive rate). An
    ``msprt`` verdict is added at every step, ``continue`` as a pass (:attr:`ABVerdict.readable`). The caller
    checks that the verdict is of this rollout's challenger (:func:`next_rollout_step` does). Because a failed
    check outranks missing data (:attr:`GuardResult.status`), a champion win rolls the canary back even while
    the other guards still lack rows; a pass never outranks them.
    """
    if guards.kind != "canary" or ab is None or not ab.readable:
        return guards
    return GuardResult(guards.kind, guards.n_rows, guards.min_rows, (*guards.checks, ab.guard_check()))


@dataclass(frozen=True)
class RolloutDecision:
    """What one rollout step decided, before the registry applies it.

    Attributes:
        before: The state the step started from.
        after: The state to persist (``before`` itself on a hold): pass it to
            ``ModelRegistry.update_rollout(before, after, ...)``, which is a no-op when nothing moved.
        move: ``"hold"`` (no move), ``"advance"`` (shadow -> canary[0], or one canary step up),
            ``"rollback"`` (a guard or the A/B test failed, or the final switch was refused) or
            ``"promote"`` (the blue/green switch to the challenger).
        action: What the ``rollout_step`` record reports: ``"wait"`` on a hold, else the new phase
            (``"canary"``, ``"promoted"``, ``"rolled_back"``); ``"awaiting_approval"`` after
            :meth:`held_for_approval`.
        reason: Why, in words (the reason of the new history event when the rollout moved).
        guards: The guards that decided, the A/B check included; ``None`` when there was no evidence.
        note: The registry's refusal message after :meth:`held_for_approval`, else empty.
    """

    before: RolloutState
    after: RolloutState
    move: RolloutMove
    action: str
    reason: str
    guards: GuardResult | None
    note: str = ""

    @property
    def guard_rows(self) -> list[dict[str, Any]]:
        """One JSON-ready row per guard check (name, status, value, passes_when, limit, detail), for a metadata
        table (:func:`guard_table_rows`)."""
        return [] if self.guards is None else guard_table_rows([c.to_dict() for c in self.guards.checks])

    def held_for_approval(self, note: str) -> "RolloutDecision":
        """The step as it ends when the registry wants a person's approval for the switch: nothing moved."""
        return replace(self, after=self.before, move="hold", action="awaiting_approval", note=note)

    def _ends(self) -> tuple[dict[str, Any], dict[str, Any]]:
        before = {"phase": self.before.phase.value, "share": self.before.challenger_share}
        return before, {"phase": self.after.phase.value, "share": self.after.challenger_share}

    def to_record(self, evidence_versions: Sequence[str]) -> dict[str, Any]:
        """The ``rollout_step`` asset's value (JSON-ready); ``evidence_versions``: the data versions read."""
        if self.guards is None:
            return {"action": self.action, "reason": self.reason, "rollout": self.before.to_dict()}
        before, after = self._ends()
        return {
            "action": self.action,
            "before": before,
            "after": after,
            "guards": self.guards.to_dict(),
            "evidence_versions": list(evidence_versions),
            "note": self.note,
            "rollout": self.after.to_dict(),
        }

    def to_metadata(self, evidence_versions: Sequence[str]) -> dict[str, Any]:
        """The ``rollout_step`` metadata as plain values; the caller adds ``guards`` (a table of :attr:`guard_rows`).

        Without guards: ``action``, ``reason``, ``phase``, ``share``. With guards: ``action``,
        ``challenger``, ``champion``, ``from``, ``to``, ``guard_status``, ``guard_rows``, ``evidence_versions``.
        """
        if self.guards is None:
            return {
                "action": self.action,
                "reason": self.reason,
                "phase": self.before.phase.value,
                "share": self.before.challenger_share,
            }
        before, after = self._ends()
        return {
            "action": self.action,
            "challenger": f"v{self.before.challenger_version}",
            "champion": f"v{self.before.champion_version}",
            "from": f"{before['phase']} {before['share']:g}",
            "to": f"{after['phase']} {after['share']:g}",
            "guard_status": self.guards.status.value,
            "guard_rows": self.guards.n_rows,
            "evidence_versions": ", ".join(evidence_versions),
        }

    def log_line(self, evidence_versions: Sequence[str]) -> str:
        """One line for the run log."""
        (before, after), state = self._ends(), self.before
        head = f"{state.model_name} v{state.challenger_version} rollout: {before['phase']} {before['share']:g}"
        if self.guards is None:
            return f"{head}: {self.action} ({self.reason})"
        return (
            f"{head} -> {after['phase']} {after['share']:g} "
            f"({self.guards.status.value} on {self.guards.n_rows} rows from {len(evidence_versions)} versions)"
        )


def next_rollout_step(
    state: RolloutState,
    guards: GuardResult | None,
    ab: ABVerdict | None,
    now: datetime,
    *,
    switch_refusals: Callable[[], Sequence[str]],
) -> RolloutDecision:
    """One scheduled step of a rollout: the evidence of the current phase in, the next state out. Pure.

    The rules, in order:

    1. No guards (no data version scored with this challenger and champion since the phase began has
       labels, see :func:`mlops_assets.ml.performance.rollout_guards`): hold, reason
       :data:`NO_EVIDENCE_REASON`. A rollout never moves on silence.
    2. In a canary step, an A/B verdict of this very challenger that reached its horizon becomes the
       ``ab_test`` check (:func:`with_ab_verdict`); a verdict of another challenger is ignored.
    3. :func:`advance` on those guards: any failed check -> ``rolled_back``; a check lacking data ->
       hold; all passed -> one step forward, the step after the last canary being ``promoted``.
    4. ``promoted`` is the blue/green switch: ``switch_refusals()`` is called (only then) and any
       refusal it returns (missing gate evidence, an artifact that no longer verifies) turns the move
       into a roll-back from ``state`` with reason ``"final switch refused: <refusals joined by '; '>"``.

    Args:
        state: The active rollout (shadow or canary; a terminal state only ever holds).
        guards: The guards of the current phase on the evidence pooled since
            :attr:`RolloutState.phase_started_at`, or ``None`` when there is none.
        ab: The stored A/B verdict of the data version at hand (``None``: no test stored).
        now: Decision time, timezone-aware, not before the rollout's last move.
        switch_refusals: Re-verification of the final switch; returns human-readable refusals (empty:
            the switch may happen). May read the registry and the artifact store; never called otherwise.

    Returns:
        The decision; its ``after`` is ``state`` itself on a hold.

    Raises:
        ValueError: ``now`` is naive or before the last move, the rollout is idle, or the guards are of
            the wrong kind for the phase (see :func:`advance`).
    """
    if guards is None:
        return RolloutDecision(state, state, "hold", "wait", NO_EVIDENCE_REASON, None)
    if ab is not None and ab.challenger_version != state.challenger_version:
        ab = None
    guards = with_ab_verdict(guards, ab)
    moved = advance(state, guards, now)
    if moved.phase is Phase.PROMOTED and not state.is_terminal:
        refused = list(switch_refusals())
        if refused:
            moved = roll_back(state, now, reason="final switch refused: " + "; ".join(refused))
    if moved == state:
        lacking = [f"{c.name}: {c.detail}" for c in guards.checks if c.status is GuardStatus.INSUFFICIENT_DATA]
        why = "guards lack data: " + "; ".join(lacking) if lacking else f"{state.phase.value} is final: no move"
        return RolloutDecision(state, state, "hold", "wait", why, guards)
    moves: dict[Phase, RolloutMove] = {Phase.PROMOTED: "promote", Phase.ROLLED_BACK: "rollback"}
    move = moves.get(moved.phase, "advance")
    return RolloutDecision(state, moved, move, moved.phase.value, moved.history[-1].reason, guards)


#: The start of the reason of every decision taken because production breached its SLA during the rollout.
BREACH_REASON = "production breaches its SLA"


def decide_on_breach(
    state: RolloutState,
    guards: GuardResult | None,
    ab: ABVerdict | None,
    now: datetime,
    *,
    breach: str,
    switch_refusals: Callable[[], Sequence[str]],
) -> RolloutDecision:
    """The rollout step when the production model breaches its SLA: decide at once, by the same guards. Pure.

    Waiting for the remaining steps would leave a failing champion serving until more data versions land (a
    year each on a yearly export). So the canary guards (:func:`canary_guards`: failure rate, error-rate
    increase, AUC drop, plus the A/B veto of :func:`with_ab_verdict`) decide now, on every labelled row both
    models scored since the rollout began (shadow rows included: a paired comparison on the same rows, the
    champion's breach measured on them too; :func:`mlops_assets.ml.performance.rollout_guards` with
    ``breach=True``), whatever the phase:

    1. no such rows, or a guard lacking data (fewer than ``rollout_min_rows``): hold, with the breach and what
       is missing as the reason — nothing is promoted on too little evidence;
    2. a guard failed (or the A/B test's champion win): roll back — the challenger is not the way out;
    3. every guard passed: promote now (the blue/green switch), after ``switch_refusals()`` re-verified the
       challenger's gate evidence and artifact exactly as for a regular final step; a refusal rolls back.

    Args:
        state: The active rollout (shadow or canary); a terminal or idle one only holds.
        guards: Canary-kind guards on the rows above, or ``None`` when there are none.
        ab: The stored A/B verdict (ignored unless of this challenger and decided).
        now: Decision time, timezone-aware, not before the rollout's last move.
        breach: The breach in words (metric, realised value, floor, data version); it starts every reason.
        switch_refusals: Re-verification of the switch; called only when the guards pass.

    Returns:
        The decision (``move`` ``"hold"``, ``"rollback"`` or ``"promote"``).

    Raises:
        ValueError: ``now`` is naive or before the last move, or the guards are not canary guards.
    """
    why = f"{BREACH_REASON} ({breach}): decided at once"
    if state.is_terminal or state.phase is Phase.IDLE:
        return RolloutDecision(state, state, "hold", "wait", f"{why}: {state.phase.value} rollout, no move", guards)
    if guards is None:
        return RolloutDecision(
            state,
            state,
            "hold",
            "wait",
            f"{why}: hold, no labelled row scored by both models since the rollout began",
            None,
        )
    if guards.kind != "canary":
        raise ValueError(f"a breach is decided by the canary guards, got {guards.kind} guards")
    if ab is not None and ab.challenger_version != state.challenger_version:
        ab = None
    guards = with_ab_verdict(guards, ab)
    evidence: dict[str, Any] = {"guards": guards.to_dict(), "breach": breach}
    status = guards.status
    if status is GuardStatus.INSUFFICIENT_DATA:
        lacking = [f"{c.name}: {c.detail}" for c in guards.checks if c.status is GuardStatus.INSUFFICIENT_DATA]
        return RolloutDecision(
            state, state, "hold", "wait", f"{why}: hold, guards lack data: " + "; ".join(lacking), guards
        )
    if status is GuardStatus.FAIL:
        moved = _move(state, now, Phase.ROLLED_BACK, None, f"{why}: guard failed: {', '.join(guards.failed)}", evidence)
        return RolloutDecision(state, moved, "rollback", moved.phase.value, moved.history[-1].reason, guards)
    refused = list(switch_refusals())
    if refused:
        moved = roll_back(state, now, reason=f"{why}: final switch refused: " + "; ".join(refused), evidence=evidence)
        return RolloutDecision(state, moved, "rollback", moved.phase.value, moved.history[-1].reason, guards)
    evidence["registry_action"] = {"promote_challenger": state.challenger_version}
    reason = f"{why}: guards passed on {guards.n_rows} rows: switch to the challenger"
    moved = _move(state, now, Phase.PROMOTED, None, reason, evidence)
    return RolloutDecision(state, moved, "promote", moved.phase.value, reason, guards)
