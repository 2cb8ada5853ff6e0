"""Model gates: pure decisions on an :class:`~mlops_assets.ml.evaluation.Evaluation` under a :class:`Policy`.

Every gate fails closed: an undefined (NaN) metric never passes. Comparisons allow a tolerance of
``1e-12`` so that float noise in a difference (``0.75 - 0.70 = 0.04999...``) does not flip a decision
that is exact on paper.
"""

import math
from typing import Any

from mlops_assets.ml.evaluation import UNDEFINED_REASON, Evaluation
from mlops_assets.ml.gate_result import GateResult
from mlops_assets.ml.policy import Policy

_TOL = 1e-12


def _safe(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _undefined(metrics: dict[str, Any], name: str) -> str:
    return str(metrics.get(UNDEFINED_REASON) or f"{name} is NaN")


def _fmt(value: float | None) -> str:
    return "undefined" if value is None or math.isnan(value) else f"{value:.4f}"


def gate_metric_above_floor(ev: Evaluation, policy: Policy) -> GateResult:
    """Gate ``metric_above_floor``: candidate headline metric >= ``policy.metric_floor``.

    Args:
        ev: The evaluation.
        policy: The gate policy.

    Returns:
        The gate result; ``observed`` is the candidate metric, ``threshold`` the floor.
    """
    metric = ev.headline_metric
    value = ev.candidate_headline
    floor = policy.metric_floor
    condition = f"candidate {metric} >= {floor}"
    evidence = {"metric": metric, "candidate": _safe(value), "floor": floor, "n_holdout": ev.n_holdout}
    if math.isnan(value):
        reason = _undefined(ev.candidate, metric)
        return GateResult(
            name="metric_above_floor",
            passed=False,
            condition=condition,
            message=f"candidate {metric} is undefined on the {ev.n_holdout}-row holdout ({reason}); failing closed",
            observed=None,
            threshold=floor,
            evidence={**evidence, "undefined_reason": reason},
        )
    passed = value >= floor - _TOL
    relation = ">=" if passed else "<"
    return GateResult(
        name="metric_above_floor",
        passed=passed,
        condition=condition,
        message=f"candidate {metric} {_fmt(value)} {relation} floor {floor} on {ev.n_holdout} holdout rows",
        observed=value,
        threshold=floor,
        evidence=evidence,
    )


def gate_beats_baseline(ev: Evaluation, policy: Policy) -> GateResult:
    """Gate ``beats_baseline``: the candidate is better than the baseline by the required lift.

    With ``policy.min_lift_over_baseline == 0`` the lift must be strictly positive, so a candidate that
    merely ties the baseline fails (it adds complexity for nothing). With a non-zero ``min_lift`` the lift
    must be ``>= min_lift``.

    Args:
        ev: The evaluation.
        policy: The gate policy.

    Returns:
        The gate result; ``observed`` is the lift (candidate - baseline), ``threshold`` the required lift.
    """
    metric = ev.headline_metric
    cand = ev.candidate_headline
    base = ev.baseline_headline
    min_lift = policy.min_lift_over_baseline
    strict = min_lift == 0
    op = ">" if strict else ">="
    condition = f"candidate {metric} - baseline {metric} {op} {min_lift}"
    evidence: dict[str, Any] = {
        "metric": metric,
        "candidate": _safe(cand),
        "baseline": _safe(base),
        "min_lift": min_lift,
        "n_holdout": ev.n_holdout,
    }
    if math.isnan(cand) or math.isnan(base):
        which = "candidate" if math.isnan(cand) else "baseline"
        reason = _undefined(ev.candidate if math.isnan(cand) else ev.baseline, metric)
        return GateResult(
            name="beats_baseline",
            passed=False,
            condition=condition,
            message=f"{which} {metric} is undefined on the holdout ({reason}); failing closed",
            observed=None,
            threshold=min_lift,
            evidence={**evidence, "lift": None, "undefined_reason": reason},
        )
    lift = cand - base
    passed = lift > _TOL if strict else lift >= min_lift - _TOL
    verdict = "beats" if passed else "does not beat"
    return GateResult(
        name="beats_baseline",
        passed=passed,
        condition=condition,
        message=(
            f"candidate {metric} {_fmt(cand)} {verdict} baseline {_fmt(base)}: "
            f"lift {lift:+.4f}, required {op} {min_lift}"
        ),
        observed=lift,
        threshold=min_lift,
        evidence={**evidence, "lift": lift},
    )


def gate_non_inferior_to_production(ev: Evaluation, policy: Policy) -> GateResult:
    """Gate ``non_inferior_to_production``: candidate >= production - ``policy.non_inferiority_margin``.

    With no model in production the gate passes (first run) and says so. The comparison is on point
    estimates; a confidence interval can be added later as a keyword-only argument without breaking
    callers.

    Args:
        ev: The evaluation.
        policy: The gate policy.

    Returns:
        The gate result; ``observed`` is candidate - production, ``threshold`` is ``-margin``.
    """
    metric = ev.headline_metric
    margin = policy.non_inferiority_margin
    condition = f"candidate {metric} >= production {metric} - {margin}"
    if ev.production is None:
        return GateResult(
            name="non_inferior_to_production",
            passed=True,
            condition=condition,
            message="no model in production: first-run, change threshold skipped",
            observed=None,
            threshold=-margin,
            evidence={"first_run": True, "metric": metric, "candidate": _safe(ev.candidate_headline), "margin": margin},
        )
    cand = ev.candidate_headline
    prod = ev.production_headline
    assert prod is not None  # narrowed by the production check above
    evidence: dict[str, Any] = {
        "first_run": False,
        "metric": metric,
        "candidate": _safe(cand),
        "production": _safe(prod),
        "margin": margin,
        "n_holdout": ev.n_holdout,
    }
    if math.isnan(cand) or math.isnan(prod):
        which = "candidate" if math.isnan(cand) else "production"
        reason = _undefined(ev.candidate if math.isnan(cand) else ev.production, metric)
        return GateResult(
            name="non_inferior_to_production",
            passed=False,
            condition=condition,
            message=f"{which} {metric} is undefined on the holdout ({reason}); failing closed",
            observed=None,
            threshold=-margin,
            evidence={**evidence, "delta": None, "undefined_reason": reason},
        )
    delta = cand - prod
    passed = delta >= -margin - _TOL
    if delta >= 0:
        message = f"candidate {metric} {_fmt(cand)} is at least as good as production {_fmt(prod)} ({delta:+.4f})"
    elif passed:
        message = (
            f"candidate {metric} {_fmt(cand)} is worse than production {_fmt(prod)} by {-delta:.4f}, "
            f"within the margin {margin}"
        )
    else:
        message = (
            f"candidate {metric} {_fmt(cand)} is worse than production {_fmt(prod)} by {-delta:.4f}, "
            f"more than the margin {margin}"
        )
    return GateResult(
        name="non_inferior_to_production",
        passed=passed,
        condition=condition,
        message=message,
        observed=delta,
        threshold=-margin,
        evidence={**evidence, "delta": delta},
    )


def evaluation_gates(ev: Evaluation, policy: Policy) -> tuple[GateResult, ...]:
    """All model gates, in order: metric floor, baseline, production.

    Args:
        ev: The evaluation.
        policy: The gate policy.

    Returns:
        ``(metric_above_floor, beats_baseline, non_inferior_to_production)``.
    """
    return (
        gate_metric_above_floor(ev, policy),
        gate_beats_baseline(ev, policy),
        gate_non_inferior_to_production(ev, policy),
    )
