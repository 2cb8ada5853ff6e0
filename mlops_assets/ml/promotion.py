"""The promotion decision: promote only when every required gate passed for this very version.

Fails closed: a gate that failed, was never evaluated for this version, judged another artifact, or
evaluated an older materialization blocks promotion; so does an evaluation of another model version,
and a production model that changed after the candidate was compared with it.

:func:`decide_move` is the one decision every move of a version goes through — the automatic one of
``deployment_decision`` and the moves by hand of ``<model>__promote_job`` (and ``<model>__rollback_job``):
the re-read evidence in, a typed :class:`MoveDecision` (allowed or refused, outcome, reasons, stage moves)
out. Pure: the wiring reads the evidence, verifies the artifact when asked, and applies the decision.
"""

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike

from mlops_assets.ml.stages import Stage


@dataclass(frozen=True)
class GateStatus:
    """The recorded status of one gate.

    ``status`` is ``passed``, ``failed``, ``missing``, ``stale`` (a data gate that evaluated an older
    materialization) or ``wrong_artifact`` (a model gate that judged another artifact digest); ``detail``
    says which run, version and data version the status comes from.
    """

    check: str
    status: str
    detail: str = ""


@dataclass(frozen=True)
class PromotionDecision:
    """Whether to promote, and why (every reason a reviewer needs, in order)."""

    promote: bool
    reasons: tuple[str, ...]


def decide(
    gates: Sequence[GateStatus],
    *,
    compared_with_production: int | None,
    production_now: int | None,
    candidate_version: int,
    evaluated_version: int | None = None,
) -> PromotionDecision:
    """Decide on promotion from the re-read gate statuses and the production pointer.

    Args:
        gates: Every required gate's status for the candidate: model gates from the registry's outcomes
            of this very version and artifact, data gates of its data versions.
        compared_with_production: The production version the evaluation compared against (None: none).
        production_now: The production version now.
        candidate_version: The candidate's registered version.
        evaluated_version: The model version the evaluation at hand judged (None: not known); another
            version than the candidate refuses with ``"evaluation is of vN, not vM"``.
    """
    reasons: list[str] = []
    if evaluated_version is not None and evaluated_version != candidate_version:
        reasons.append(f"evaluation is of v{evaluated_version}, not v{candidate_version}")
    if not gates:
        reasons.append("no gate results to verify: refusing to promote unverified")
    reasons.extend(
        f"gate {g.check} is {g.status}" + (f" ({g.detail})" if g.detail else "") for g in gates if g.status != "passed"
    )
    changed = production_changed(compared_with_production, production_now, candidate_version)
    if changed:
        reasons.append(changed)
    if reasons:
        return PromotionDecision(False, tuple(reasons))
    return PromotionDecision(True, (f"all {len(gates)} gates passed",))


def production_changed(compared_with_production: int | None, production_now: int | None, candidate: int) -> str | None:
    """Why a comparison with production no longer holds, or None when it does.

    The non-inferiority gate compared the candidate with the version in production at evaluation time; once
    another version serves, that evidence says nothing about the candidate against it.

    Args:
        compared_with_production: The production version the evaluation compared against (None: none served).
        production_now: The production version now (None: none).
        candidate: The candidate's version (already serving counts as unchanged).
    """
    if production_now in (compared_with_production, candidate):
        return None
    return (
        f"production changed since evaluation (compared with {_label(compared_with_production)}, "
        f"now {_label(production_now)}): re-evaluate before promoting"
    )


def _label(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


class Move(StrEnum):
    """A requested move of one model version: automatic, or by hand (the value names the target in messages)."""

    #: ``deployment_decision`` on the version's own evaluation: stage it, then roll it out or promote it.
    AUTOMATIC = "automatic"
    #: ``<model>__promote_job`` to Staging.
    STAGING = Stage.STAGING.value
    #: ``<model>__promote_job`` to Production (via Staging from ``None``); its comparison with production must hold.
    PRODUCTION = Stage.PRODUCTION.value
    #: ``<model>__rollback_job``'s known-good version: its own gate evidence only (it served before).
    ROLLBACK = "Production (rollback)"


#: Outcomes of an automatic move (``deployment_decision``'s ``outcome``).
REJECTED = "rejected"
UNCHANGED = "unchanged"
PROMOTED = "promoted"
ROLLOUT_STARTED = "rollout_started"
#: Outcomes of a move by hand.
MOVED = "moved"
REFUSED = "refused"
#: Registry stages a version may be staged or rolled out from automatically.
_MOVABLE = (Stage.NONE, Stage.STAGING)


@dataclass(frozen=True)
class MoveDecision:
    """What :func:`decide_move` decided, before the registry applies it.

    Attributes:
        move: The requested move.
        allowed: Whether the evidence allows it (an automatic decision on a version already in Production
            or Archived is allowed and ``unchanged``).
        outcome: Automatic: ``rejected``, ``unchanged``, ``promoted`` (nothing serves: straight to
            Production) or ``rollout_started`` (shadow against production). By hand: ``moved`` or ``refused``.
        reasons: Why, in order: every refusal, or ``"all N gates passed"``.
        stages: The registry stage moves to make, in order (``("Staging", "Production")`` from ``None``;
            ``("Archived",)`` for a rejected version never staged; empty: none).
        artifact_refused: The refusal is the stored artifact's (then ``reasons`` is its message alone).
    """

    move: Move
    allowed: bool
    outcome: str
    reasons: tuple[str, ...]
    stages: tuple[Stage, ...] = ()
    artifact_refused: bool = False

    @property
    def promote(self) -> bool:
        """``allowed``, under the name ``deployment_decision`` records it."""
        return self.allowed


def decide_move(
    move: Move,
    *,
    version: int,
    stage: Stage | str,
    gates: Sequence[GateStatus],
    evaluated_version: int | None,
    production_now: int | None,
    compared_with_production: int | None,
    artifact_refusal: Callable[[], str | None],
    comparison_known: bool = True,
) -> MoveDecision:
    """Decide one move of a model version from its re-read evidence. Pure (``artifact_refusal`` aside).

    The rules, by move:

    * ``AUTOMATIC`` (:func:`decide`): an evaluation of another version, no gates, any gate not passed, or a
      production that changed since the evaluation refuses. Allowed and in ``None``/``Staging``: the artifact
      is verified, then with nothing in production ``promoted`` (staged first from ``None``), else
      ``rollout_started`` (staged first from ``None``); allowed in Production/Archived: ``unchanged``.
      Refused: ``rejected``, and archived when never staged.
    * By hand (``STAGING``, ``PRODUCTION``, ``ROLLBACK``; :func:`gate_refusals`): any gate not passed, or
      no gates, refuses, preceded by "evaluation is of vN, not vM" when the latest evaluation judged another
      version. ``PRODUCTION`` also refuses when what the evaluation compared against is unknown or production
      changed since (:func:`comparison_refusal`). Then the artifact is verified.

    Args:
        move: The requested move.
        version: The version to move.
        stage: Its registry stage now (``"None"``, ``"Staging"``, ``"Production"`` or ``"Archived"``).
        gates: Its gate statuses: data gates of its data versions, model gates of this version and artifact.
        evaluated_version: The version the evaluation at hand (automatic) or the latest evaluation of its
            data version (by hand) judged; ``None``: not known.
        production_now: The production version now (``None``: none).
        compared_with_production: The production version the evaluation compared against (``None``: none).
        artifact_refusal: Verifies the stored artifact; returns why it does not verify, or ``None``. Called
            only when the evidence allows a move that needs it.
        comparison_known: Whether ``compared_with_production`` is known (by hand: the version's own
            evaluation is the latest of its data version).
    """
    if move is Move.AUTOMATIC:
        return _automatic(
            version, stage, gates, evaluated_version, production_now, compared_with_production, artifact_refusal
        )
    reasons = gate_refusals(gates, evaluated_version, version)
    if move is Move.PRODUCTION:
        stale = comparison_refusal(
            version, evaluated_version, comparison_known, compared_with_production, production_now
        )
        if stale:
            reasons.append(stale)
    if reasons:
        return MoveDecision(move, False, REFUSED, tuple(reasons))
    refusal = artifact_refusal()
    if refusal:
        return MoveDecision(move, False, REFUSED, (refusal,), artifact_refused=True)
    stages: tuple[Stage, ...] = {
        Move.STAGING: (Stage.STAGING,),
        Move.PRODUCTION: (Stage.PRODUCTION,),
        Move.ROLLBACK: (),
    }[move]
    if move is Move.PRODUCTION and stage == Stage.NONE:
        stages = (Stage.STAGING, *stages)
    return MoveDecision(move, True, MOVED, (f"all {len(gates)} gates passed",), stages)


def _automatic(
    version: int,
    stage: Stage | str,
    gates: Sequence[GateStatus],
    evaluated_version: int | None,
    production_now: int | None,
    compared_with_production: int | None,
    artifact_refusal: Callable[[], str | None],
) -> MoveDecision:
    decision = decide(
        gates,
        compared_with_production=compared_with_production,
        production_now=production_now,
        candidate_version=version,
        evaluated_version=evaluated_version,
    )
    never_staged = stage == Stage.NONE
    if decision.promote and stage not in _MOVABLE:
        return MoveDecision(Move.AUTOMATIC, True, UNCHANGED, decision.reasons)
    refusal = artifact_refusal() if decision.promote else None
    if refusal:
        decision = PromotionDecision(False, (refusal,))
    if not decision.promote:
        # Rejected: archived with the reasons when never staged (only a new passing evaluation stages it again).
        archived = (Stage.ARCHIVED,) if never_staged else ()
        return MoveDecision(Move.AUTOMATIC, False, REJECTED, decision.reasons, archived, artifact_refused=bool(refusal))
    staged = (Stage.STAGING,) if never_staged else ()
    if production_now is None:  # nothing serves: no champion to shadow or canary against
        return MoveDecision(Move.AUTOMATIC, True, PROMOTED, decision.reasons, (*staged, Stage.PRODUCTION))
    return MoveDecision(Move.AUTOMATIC, True, ROLLOUT_STARTED, decision.reasons, staged)


def gate_refusals(gates: Sequence[GateStatus], evaluated_version: int | None, version: int) -> list[str]:
    """Why a move by hand may not rely on these gates (empty: it may): the evaluation mismatch first, then each gate.

    ``"evaluation is of vN, not vM"`` explains a refusal only: a later evaluation of the same data version may
    have judged a newer version, and this version's own model gates are read by version and artifact.
    """
    problems = [
        f"{g.check} is {g.status}" + (f" ({g.detail})" if g.detail else "") for g in gates if g.status != "passed"
    ]
    if not gates:
        problems.append("no gate results to verify")
    if problems and evaluated_version is not None and evaluated_version != version:
        problems.insert(0, f"evaluation is of v{evaluated_version}, not v{version}")
    return problems


def comparison_refusal(
    version: int,
    evaluated_version: int | None,
    comparison_known: bool,
    compared_with_production: int | None,
    production_now: int | None,
) -> str | None:
    """Why a move to Production by hand may not rely on the evaluation's comparison with production, or None.

    Refuses when the version's own evaluation is not the latest of its data version (what it compared against
    is then unknown), and when production moved since that evaluation (:func:`production_changed`).
    """
    if not comparison_known:
        found = "none found" if evaluated_version is None else f"v{evaluated_version}"
        return (
            f"the production version v{version}'s evaluation compared against is unknown (the latest "
            f"evaluation of its data version is of {found}): re-evaluate before promoting"
        )
    return production_changed(compared_with_production, production_now, version)


# -- a new candidate while a rollout is in progress (policy.rollout.on_new_candidate) ------------------------------

#: ``deployment_decision`` outcome: the candidate passed its gates and waits (stage None, alias :data:`QUEUED_ALIAS`)
#: for the rollout in progress to end (``on_new_candidate: queue``).
QUEUED = "queued"
#: ``deployment_decision`` outcome: compared with the challenger in flight on the same holdout, the candidate was not
#: better; it is archived and the rollout in progress continues (``on_new_candidate: compare``).
KEPT_CHALLENGER = "kept_challenger"
#: The registry alias naming the queued candidate (at most one: a newer queued candidate replaces it).
QUEUED_ALIAS = "queued"


@dataclass(frozen=True)
class HoldoutComparison:
    """A new candidate against the challenger in flight, both scored on the same holdout rows (``compare``).

    Attributes:
        metric: The headline metric (``roc_auc`` or ``pr_auc``, higher is better).
        data_version: The data version whose holdout both were scored on (the newer candidate's).
        candidate_version: The new candidate.
        challenger_version: The challenger of the rollout in progress.
        n_rows: Holdout rows.
        candidate: The candidate's metric (``None``: undefined, e.g. one class only).
        challenger: The challenger's metric (``None``: undefined).
        difference: candidate − challenger (``None``: undefined).
        lower: Lower bound of the interval of the difference (``None``: undefined).
        upper: Upper bound (``None``: undefined).
        confidence_level: Of the interval.
        candidate_wins: Whether the candidate replaces the challenger in flight.
        reason: The rule and the figures, in words (recorded in the registry's audit log).
        method: How the interval was made (:attr:`mlops_assets.ml.evaluation.LiftInterval.method`: ``"delong"`` for
            ROC AUC, ``"paired bootstrap (...)"`` for PR AUC; ``"none"`` without a labelled row).
    """

    metric: str
    data_version: str
    candidate_version: int
    challenger_version: int
    n_rows: int
    candidate: float | None
    challenger: float | None
    difference: float | None
    lower: float | None
    upper: float | None
    confidence_level: float
    candidate_wins: bool
    reason: str
    method: str = "none"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)


def _finite(value: float) -> float | None:
    return None if value != value or value in (float("inf"), float("-inf")) else float(value)


def compare_on_holdout(
    y_true: ArrayLike,
    candidate_scores: ArrayLike,
    challenger_scores: ArrayLike,
    *,
    metric: str,
    data_version: str,
    candidate_version: int,
    challenger_version: int,
    samples: int,
    confidence_level: float,
    seed: int,
) -> HoldoutComparison:
    """Compare a new candidate with the challenger in flight on the same holdout rows (paired). Pure.

    Rule: the candidate replaces the challenger only when it is **significantly better**: the lower bound of the
    two-sided interval of the paired difference (candidate − challenger) of the headline metric is above 0. The
    interval is the model gates' (:func:`mlops_assets.ml.evaluation.lift_interval`): DeLong's variance of two
    correlated ROC AUCs (DeLong et al. 1988) for ROC AUC, the paired percentile bootstrap (Efron & Tibshirani 1993)
    for PR AUC. Otherwise (no better, a tie, or an undefined comparison) the challenger in flight continues: it keeps
    the evidence its rollout has gathered, which a replacement would throw away.

    Args:
        y_true: 0/1 labels of the holdout rows.
        candidate_scores: The new candidate's scores in [0, 1], one per row.
        challenger_scores: The challenger's scores on the same rows.
        metric: ``roc_auc`` or ``pr_auc`` (``policy.evaluation.headline_metric``).
        data_version: Whose holdout this is.
        candidate_version: The new candidate's registered version.
        challenger_version: The challenger's registered version.
        samples: Bootstrap resamples, PR AUC only (``policy.evaluation.bootstrap_samples``).
        confidence_level: Of the two-sided interval (``policy.evaluation.confidence_level``).
        seed: Resampling seed, PR AUC only (``policy.evaluation.random_seed``).

    Raises:
        ValueError: Inputs of different lengths, scores outside [0, 1], labels not 0/1, or an unknown metric.
    """
    # scikit-learn is imported by the comparison only (promotion.py stays light for its other importers).
    from mlops_assets.ml.evaluation import lift_interval, ranking_metric

    y = np.asarray(y_true, dtype=np.float64)
    cand = np.asarray(candidate_scores, dtype=np.float64)
    chall = np.asarray(challenger_scores, dtype=np.float64)
    if not len(y) == len(cand) == len(chall):
        raise ValueError(
            f"holdout comparison: lengths differ (labels {len(y)}, candidate {len(cand)}, challenger {len(chall)})"
        )
    who = f"v{candidate_version} vs the challenger in flight v{challenger_version}"
    if y.size == 0:
        # No labelled holdout row (its labels have not landed): nothing says the candidate is better.
        reason = f"compare on the holdout of {data_version}: {who}: no labelled holdout row; the challenger continues"
        return HoldoutComparison(
            metric=metric,
            data_version=data_version,
            candidate_version=candidate_version,
            challenger_version=challenger_version,
            n_rows=0,
            candidate=None,
            challenger=None,
            difference=None,
            lower=None,
            upper=None,
            confidence_level=confidence_level,
            candidate_wins=False,
            reason=reason,
        )
    interval = lift_interval(metric, y, cand, chall, confidence_level=confidence_level, samples=samples, seed=seed)
    cand_value = _finite(ranking_metric(metric, y, cand))
    chall_value = _finite(ranking_metric(metric, y, chall))
    wins = interval.defined and interval.lower > 0.0
    if not interval.defined:
        reason = (
            f"compare on the holdout of {data_version}: {who}: {metric} difference undefined "
            f"({interval.undefined_reason}); the challenger in flight continues"
        )
    else:
        reason = (
            f"compare on the {len(y)}-row holdout of {data_version}: {who}: {metric} {cand_value:.4f} vs "
            f"{chall_value:.4f}, difference {interval.estimate:+.4f} ({confidence_level:.0%} interval "
            f"[{interval.lower:+.4f}, {interval.upper:+.4f}], {interval.method}): "
            + (
                f"v{candidate_version} is significantly better and replaces v{challenger_version}"
                if wins
                else f"v{candidate_version} is not significantly better; v{challenger_version} continues"
            )
        )
    return HoldoutComparison(
        metric=metric,
        data_version=data_version,
        candidate_version=candidate_version,
        challenger_version=challenger_version,
        n_rows=len(y),
        candidate=cand_value,
        challenger=chall_value,
        difference=_finite(interval.estimate),
        lower=_finite(interval.lower),
        upper=_finite(interval.upper),
        confidence_level=confidence_level,
        candidate_wins=bool(wins),
        reason=reason,
        method=interval.method,
    )
