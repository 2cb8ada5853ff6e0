"""The promotion decision: promote only when every required gate passed for this very version.

Fails closed: a gate that failed, was never evaluated, or evaluated an older materialization blocks
promotion, and so does a production model that changed after the candidate was compared with it.
"""

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GateStatus:
    """The recorded status of one gate: ``passed``, ``failed``, ``missing`` or ``stale``."""

    check: str
    status: str


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
) -> PromotionDecision:
    """Decide on promotion from the re-read gate statuses and the production pointer.

    Args:
        gates: Every required gate's latest status for the candidate's data version.
        compared_with_production: The production version the evaluation compared against (None: none).
        production_now: The production version now.
        candidate_version: The candidate's registered version.
    """
    if not gates:
        return PromotionDecision(False, ("no gate results to verify: refusing to promote unverified",))
    reasons = [f"gate {g.check} is {g.status}" for g in gates if g.status != "passed"]
    if production_now != compared_with_production and production_now != candidate_version:
        reasons.append(
            f"production changed since evaluation (compared with v{compared_with_production}, "
            f"now v{production_now}): re-evaluate before promoting"
        )
    if reasons:
        return PromotionDecision(False, tuple(reasons))
    return PromotionDecision(True, (f"all {len(gates)} gates passed",))
