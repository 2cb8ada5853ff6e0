"""The promotion decision: promote only when every required gate passed for this very version.

Fails closed: a gate that failed, was never evaluated for this version, judged another artifact, or
evaluated an older materialization blocks promotion; so does an evaluation of another model version,
and a production model that changed after the candidate was compared with it.
"""

from collections.abc import Sequence
from dataclasses import dataclass


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
