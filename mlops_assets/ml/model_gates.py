"""Model gates: pure decisions on an :class:`~mlops_assets.ml.evaluation.Evaluation` under a :class:`ModelGatePolicy`.

Every gate fails closed: an undefined (NaN) metric, a missing measurement or a measurement taken under
different settings than the gate's policy (another confidence level, bin count, decision threshold or
latency batch size) never passes, and the message says why. The one exception is a rule that too few
rows leave unmeasurable (fewer than two protected groups of ``min_group_size`` rows, a slice floor on a
slice under ``min_slice_size``, a holdout too small for the ECE or an ECE excess indistinguishable
from sampling noise): that is its own outcome, ``insufficient_data``, recorded in the evidence,
and ``policy.insufficient_data`` says whether it passes with a warning (default) or fails.

Comparisons allow a tolerance of ``1e-12`` so that float noise in a difference (``0.75 - 0.70 =
0.04999...``) does not flip a decision that is exact on paper. Evidence is JSON data (NaN as None).
"""

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mlops_assets.ml.evaluation import (
    UNDEFINED_REASON,
    BootstrapInterval,
    Evaluation,
    FairnessReport,
    LiftInterval,
    consistency_resampled_ece,
    interval_method,
    json_safe,
    slice_floor,
    slice_not_gated_reason,
)
from mlops_assets.ml.gate_result import GateResult
from mlops_assets.ml.latency import CPU_CLOCK
from mlops_assets.ml.policy import EvaluationPolicy, ModelGatePolicy, flatten_policy

_TOL = 1e-12
# How many failing items a message names before "and k more" (the evidence lists them all).
_MESSAGE_ITEMS = 5
# Which policy settings shape which recorded measurement: a gate whose policy differs from the one the
# evaluation was measured under cannot re-measure (the scores are not stored), so it fails closed.
_MEASURED_WITH: dict[str, tuple[str, ...]] = {
    "accuracy": ("decision_threshold",),
    "f1": ("decision_threshold",),
    "ece": ("calibration_bins",),
}
#: Draws of the consistency resampling behind ``calibration_within_bound`` (Monte-Carlo error of the null
#: mean about 0.001 at 140 rows; 1000 binomial draws per bin cost well under a millisecond).
CALIBRATION_RESAMPLES = 1000
#: ``calibration_within_bound`` fails only when a calibrated model reaches the observed ECE in at most this
#: share of the draws (a one-sided Monte-Carlo test); a larger share is insufficient data.
CALIBRATION_ALPHA = 0.05


def _safe(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _undefined(metrics: Mapping[str, Any], name: str) -> str:
    return str(metrics.get(UNDEFINED_REASON) or f"{name} is NaN")


def _fmt(value: float | None) -> str:
    return "undefined" if value is None or math.isnan(value) else f"{value:.4f}"


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _summary(items: Sequence[str]) -> str:
    more = len(items) - _MESSAGE_ITEMS
    return "; ".join(items[:_MESSAGE_ITEMS]) + (f"; and {more} more" if more > 0 else "")


def _pct(level: float) -> str:
    return f"{level * 100:g}%"


def _mismatch(ev: Evaluation, evaluation: EvaluationPolicy, keys: Sequence[str]) -> str | None:
    """Settings among ``keys`` (of ``evaluation``) that differ between the evaluation's recorded policy and
    ``evaluation``. The record may be sectioned or flat (stored before the policy had sections)."""
    if not ev.policy:  # a record without a policy (hand-made, or stored before policies were recorded)
        return None
    recorded = flatten_policy(ev.policy, "evaluation record")
    diffs = [
        f"{key} {recorded[key]!r} (gate policy: {getattr(evaluation, key)!r})"
        for key in keys
        if key in recorded and recorded[key] != getattr(evaluation, key)
    ]
    if not diffs:
        return None
    return f"the evaluation was measured with {', '.join(diffs)}; re-run the evaluation under the gate's policy"


#: What to change when a model gate fails: the policy settings it reads and the usual remedy, appended to a failed
#: gate's message so the check in the UI says what to do (settings live under ``policy:`` in the spec, or per run in
#: the launchpad config of ``model_evaluation``; see docs/gates.md and docs/own-data.md).
REMEDIES: dict[str, str] = {
    "metric_above_floor": "policy.metric_floor; lower it in the spec if the floor is wrong for this data",
    "beats_baseline": (
        "policy.min_lift_over_baseline; when a linear model is as good for this data, set training.baseline: dummy "
        "or training.estimator: logistic_regression in the spec; a lift too small for the holdout to confirm needs "
        "more holdout rows (larger versions, policy.holdout_fraction)"
    ),
    "non_inferior_to_production": (
        "policy.non_inferiority_margin; an interval too wide to confirm non-inferiority needs more holdout rows "
        "(policy.holdout_fraction); policy.bootstrap_samples (PR AUC headline only)"
    ),
    "metric_thresholds_met": "policy.thresholds (one entry per metric rule)",
    "slices_meet_floor": (
        "policy.slice_floors, policy.slice_metric_floor, policy.max_slice_regression, policy.min_slice_size"
    ),
    "calibration_within_bound": "policy.max_ece, policy.calibration_bins, policy.min_rows_per_calibration_bin",
    "fairness_within_bounds": (
        "policy.max_demographic_parity_difference, policy.min_demographic_parity_ratio, "
        "policy.max_equalized_odds_difference, policy.min_group_size"
    ),
    "predictions_valid": (
        "no setting: the model produced NaN, infinite or out-of-range scores; fix the training data or model"
    ),
    "latency_within_budget": (
        "policy.max_latency_p99_ms_single, policy.max_latency_p99_ms_batch (thread CPU ms on one thread); "
        "a smaller model (training.params) scores faster"
    ),
}


def _result(
    name: str,
    passed: bool,
    condition: str,
    message: str,
    observed: float | int | None,
    threshold: float | int | None,
    evidence: Mapping[str, Any],
) -> GateResult:
    if not passed and name in REMEDIES:
        message = f"{message} (rule: {name}; to change: {REMEDIES[name]})"
    return GateResult(
        name=name,
        passed=passed,
        condition=condition,
        message=message,
        observed=observed,
        threshold=threshold,
        evidence=json_safe(evidence),
    )


# --------------------------------------------------------------------------------------------------
# Headline metric
# --------------------------------------------------------------------------------------------------


def gate_metric_above_floor(ev: Evaluation, gates: ModelGatePolicy, evaluation: EvaluationPolicy) -> GateResult:
    """Gate ``metric_above_floor``: candidate headline metric >= ``policy.metric_floor``.

    Args:
        ev: The evaluation.
        gates: The model gate thresholds.
        evaluation: The measurement settings (unused by this gate; every gate takes them).

    Returns:
        The gate result; ``observed`` is the candidate metric, ``threshold`` the floor.
    """
    metric = ev.headline_metric
    value = ev.candidate_headline
    floor = gates.metric_floor
    condition = f"candidate {metric} >= {floor}"
    evidence = {"metric": metric, "candidate": _safe(value), "floor": floor, "n_holdout": ev.n_holdout}
    if math.isnan(value):
        reason = _undefined(ev.candidate, metric)
        return _result(
            "metric_above_floor",
            False,
            condition,
            f"candidate {metric} is undefined on the {ev.n_holdout}-row holdout ({reason}); failing closed",
            None,
            floor,
            {**evidence, "undefined_reason": reason},
        )
    passed = value >= floor - _TOL
    relation = ">=" if passed else "<"
    return _result(
        "metric_above_floor",
        passed,
        condition,
        f"candidate {metric} {_fmt(value)} {relation} floor {floor} on {ev.n_holdout} holdout rows",
        value,
        floor,
        evidence,
    )


def _interval_unusable(
    ev: Evaluation,
    evaluation: EvaluationPolicy,
    other: tuple[str, Mapping[str, Any]],
    interval: BootstrapInterval | LiftInterval | None,
    evidence: dict[str, Any],
    *,
    missing: str,
    undefined: str,
) -> str | None:
    """Why a gate judging an interval of candidate − ``other`` cannot judge it, or None when it can.

    In order: either headline metric undefined, the evaluation measured under another headline metric or confidence
    level, no interval recorded (``missing``), or an undefined interval (``undefined`` and its reason). An undefined
    reason is also written to ``evidence``.
    """
    metric = ev.headline_metric
    name, metrics = other
    cand, theirs = ev.candidate_headline, float(metrics.get(metric, math.nan))
    if math.isnan(cand) or math.isnan(theirs):
        which = "candidate" if math.isnan(cand) else name
        reason = _undefined(ev.candidate if math.isnan(cand) else metrics, metric)
        evidence["undefined_reason"] = reason
        return f"{which} {metric} is undefined on the holdout ({reason})"
    mismatch = _mismatch(ev, evaluation, ("headline_metric", "confidence_level"))
    if mismatch:
        return mismatch
    if interval is None:
        return missing
    if not interval.defined:
        evidence["undefined_reason"] = interval.undefined_reason
        return f"{undefined} ({interval.undefined_reason or 'NaN bound'})"
    return None


def gate_beats_baseline(ev: Evaluation, gates: ModelGatePolicy, evaluation: EvaluationPolicy) -> GateResult:
    """Gate ``beats_baseline``: the candidate is better than the baseline by the required lift, with confidence.

    The lower bound of the two-sided ``policy.confidence_level`` interval of candidate − baseline on the holdout
    (:func:`~mlops_assets.ml.evaluation.lift_interval`: DeLong for ROC AUC, a paired bootstrap for PR AUC) must
    exceed ``policy.min_lift_over_baseline`` — strictly when it is 0, so a candidate that merely ties the baseline
    fails (it adds complexity for nothing) — or reach it when it is non-zero. A lift the holdout cannot tell from
    noise fails: a model trained on random labels (holdout ROC AUC 0.56 against the prior's 0.50 on ~300 rows)
    passed the point-estimate rule and reached Production.

    Args:
        ev: The evaluation.
        gates: The model gate thresholds.
        evaluation: The measurement settings (headline metric and confidence level the interval must have used).

    Returns:
        The gate result; ``observed`` is the interval's lower bound, ``threshold`` the required lift.
    """
    name = "beats_baseline"
    metric = ev.headline_metric
    cand = ev.candidate_headline
    base = ev.baseline_headline
    min_lift = gates.min_lift_over_baseline
    strict = min_lift == 0
    op = ">" if strict else ">="
    level = f"{evaluation.confidence_level * 100:g}%"
    condition = f"lower bound of the {level} interval of candidate {metric} - baseline {metric} {op} {min_lift}"
    evidence: dict[str, Any] = {
        "metric": metric,
        "candidate": _safe(cand),
        "baseline": _safe(base),
        "lift": _safe(cand - base),
        "min_lift": min_lift,
        "n_holdout": ev.n_holdout,
        "interval": None if ev.lift is None else ev.lift.to_dict(),
    }

    def closed(message: str) -> GateResult:
        return _result(name, False, condition, f"{message}; failing closed", None, min_lift, evidence)

    interval = ev.lift
    unusable = _interval_unusable(
        ev,
        evaluation,
        ("baseline", ev.baseline),
        interval,
        evidence,
        missing="no confidence interval of candidate - baseline is recorded",
        undefined="the interval of candidate - baseline is undefined",
    )
    if unusable is not None:
        return closed(unusable)
    assert interval is not None  # _interval_unusable refuses a missing interval
    lower = interval.lower
    passed = lower > min_lift + _TOL if strict else lower >= min_lift - _TOL
    shown = (
        f"lift {interval.estimate:+.4f}, {level} interval [{lower:+.4f}, {interval.upper:+.4f}] ({interval.method}) "
        f"on {ev.n_holdout} holdout rows"
    )
    if passed:
        message = f"candidate {metric} {_fmt(cand)} beats baseline {_fmt(base)}: {shown}; lower bound {op} {min_lift}"
    else:
        message = (
            f"candidate {metric} {_fmt(cand)} does not beat baseline {_fmt(base)} with confidence: {shown}; "
            f"lower bound {lower:+.4f} is not {op} {min_lift}"
        )
    return _result(name, passed, condition, message, lower, min_lift, evidence)


def gate_non_inferior_to_production(ev: Evaluation, gates: ModelGatePolicy, evaluation: EvaluationPolicy) -> GateResult:
    """Gate ``non_inferior_to_production``: the lower confidence bound of candidate − production >= −ε.

    The interval is the one recorded in ``ev.production_interval``
    (:func:`~mlops_assets.ml.evaluation.lift_interval`, the same function as ``beats_baseline``'s: DeLong's
    variance of two correlated ROC AUCs for ROC AUC, the paired percentile bootstrap for PR AUC), two-sided at
    ``policy.confidence_level``, of the difference on the same holdout rows; ε is ``policy.non_inferiority_margin``.
    A record stored before that field holds a paired bootstrap interval (``ev.bootstrap``) and is judged on it, as it
    was. With no model in production the gate passes and records ``first_run`` (the change threshold is skipped).

    Args:
        ev: The evaluation.
        gates: The model gate thresholds.
        evaluation: The measurement settings the gate expects the evaluation to have been made with.

    Returns:
        The gate result; ``observed`` is the lower bound, ``threshold`` is ``-margin``.
    """
    name = "non_inferior_to_production"
    metric = ev.headline_metric
    margin = gates.non_inferiority_margin
    level = _pct(evaluation.confidence_level)
    b = ev.vs_production
    # The method lift_interval uses for the metric; a record stored before production_interval holds a bootstrap.
    kind = "DeLong" if metric == "roc_auc" and not isinstance(b, BootstrapInterval) else "paired bootstrap"
    condition = f"lower bound of the {level} {kind} interval of candidate {metric} - production {metric} >= -{margin}"
    cand = ev.candidate_headline
    if ev.production is None:
        return _result(
            name,
            True,
            condition,
            "no model in production: first-run, change threshold skipped",
            None,
            -margin,
            {"first_run": True, "metric": metric, "candidate": cand, "margin": margin},
        )
    prod = float(ev.production[metric])
    evidence: dict[str, Any] = {
        "first_run": False,
        "metric": metric,
        "candidate": cand,
        "production": prod,
        "delta": cand - prod,
        "margin": margin,
        "n_holdout": ev.n_holdout,
        "interval": None if b is None else b.to_dict(),
    }

    def closed(message: str) -> GateResult:
        return _result(name, False, condition, f"{message}; failing closed", None, -margin, evidence)

    unusable = _interval_unusable(
        ev,
        evaluation,
        ("production", ev.production),
        b,
        evidence,
        missing="no interval of candidate - production is recorded",
        undefined=f"the {kind} interval of candidate - production is undefined",
    )
    if unusable is not None:
        return closed(unusable)
    assert b is not None  # _interval_unusable refuses a missing interval
    passed = b.lower >= -margin - _TOL
    if isinstance(b, BootstrapInterval):  # a record stored before production_interval
        how = f"{b.n_valid} of {b.n_resamples} resamples; {b.n_skipped} lacking a class skipped"
    else:
        how = interval_method(b)
    interval = f"{level} interval [{b.lower:+.4f}, {b.upper:+.4f}] around {b.estimate:+.4f} ({how})"
    if passed:
        message = f"candidate {metric} is non-inferior to production: lower bound {b.lower:+.4f} >= -{margin}"
    else:
        message = (
            f"candidate {metric} may be worse than production by more than {margin}: "
            f"lower bound {b.lower:+.4f} < -{margin}"
        )
    return _result(
        name,
        passed,
        condition,
        f"{message}; {interval}; candidate {_fmt(cand)}, production {_fmt(prod)}",
        b.lower,
        -margin,
        evidence,
    )


# --------------------------------------------------------------------------------------------------
# Generic metric thresholds
# --------------------------------------------------------------------------------------------------


def gate_metric_thresholds_met(ev: Evaluation, gates: ModelGatePolicy, evaluation: EvaluationPolicy) -> GateResult:
    """Gate ``metric_thresholds_met``: every ``policy.thresholds`` entry holds.

    Value thresholds (``min_value`` for higher-is-better metrics, ``max_value`` for lower-is-better ones)
    apply to the candidate. Change thresholds compare with production: how much worse the candidate is
    (``production - candidate`` when higher is better, ``candidate - production`` when lower is) must be at
    most ``max_regression_absolute``, and at most ``max_regression_relative`` times ``|production|``. They
    are skipped, and recorded, when nothing is in production. No thresholds configured: passes, recorded.

    Args:
        ev: The evaluation.
        gates: The model gate thresholds.
        evaluation: The measurement settings the gate expects the evaluation to have been made with.

    Returns:
        The gate result; ``observed`` is the number of failed checks, ``threshold`` 0. The evidence lists
        every check with its status (``passed``, ``failed``, ``skipped``).
    """
    name = "metric_thresholds_met"
    condition = "every configured value threshold holds for the candidate and every change threshold vs production"
    if not gates.thresholds:
        return _result(
            name, True, condition, "no metric thresholds configured", 0, 0, {"checks": [], "configured": False}
        )
    checks: list[dict[str, Any]] = []
    for t in gates.thresholds:
        cand = float(ev.candidate.get(t.metric, math.nan))
        prod = None if ev.production is None else float(ev.production.get(t.metric, math.nan))
        direction = "higher" if t.higher_is_better else "lower"
        mismatch = _mismatch(ev, evaluation, _MEASURED_WITH.get(t.metric, ()))
        regression = math.nan if prod is None else (prod - cand if t.higher_is_better else cand - prod)
        specs: list[tuple[str, float | None, float, str]] = [
            ("min_value", t.min_value, cand, f"candidate {t.metric} >= {t.min_value}"),
            ("max_value", t.max_value, cand, f"candidate {t.metric} <= {t.max_value}"),
            (
                "max_regression_absolute",
                t.max_regression_absolute,
                regression,
                f"candidate {t.metric} worse than production by <= {t.max_regression_absolute}",
            ),
            (
                "max_regression_relative",
                t.max_regression_relative,
                regression,
                f"candidate {t.metric} worse than production by <= {t.max_regression_relative} x |production|",
            ),
        ]
        for kind, bound, observed, rule in specs:
            if bound is None:
                continue
            change = kind.startswith("max_regression")
            limit = bound * abs(prod) if kind == "max_regression_relative" and prod is not None else bound
            row: dict[str, Any] = {
                "metric": t.metric,
                "direction": f"{direction} is better",
                "kind": kind,
                "rule": rule,
                "threshold": bound,
                "candidate": cand,
                "production": prod,
                "observed": observed,
                "limit": limit,
            }
            if change and prod is None:
                row.update(status="skipped", reason="no model in production: change threshold skipped")
            elif mismatch:
                row.update(status="failed", reason=mismatch)
            elif math.isnan(observed):
                which = ev.candidate if math.isnan(cand) else ev.production or {}
                row.update(status="failed", reason=f"undefined: {_undefined(which, t.metric)}")
            else:
                ok = observed >= bound - _TOL if kind == "min_value" else observed <= limit + _TOL
                row.update(status="passed" if ok else "failed", reason=None)
            checks.append(row)
    failed = [c for c in checks if c["status"] == "failed"]
    skipped = [c for c in checks if c["status"] == "skipped"]
    if failed:
        message = f"{len(failed)} of {len(checks)} metric threshold checks failed: " + _summary(
            [f"{c['rule']} (observed {_fmt(c['observed'])}{'; ' + c['reason'] if c['reason'] else ''})" for c in failed]
        )
    else:
        message = f"{len(checks) - len(skipped)} metric threshold checks passed"
        if skipped:
            message += f", {len(skipped)} change thresholds skipped (no model in production)"
    evidence = {"checks": checks, "configured": True, "first_run": ev.production is None}
    return _result(name, not failed, condition, message, len(failed), 0, evidence)


# --------------------------------------------------------------------------------------------------
# Slices
# --------------------------------------------------------------------------------------------------


def gate_slices_meet_floor(ev: Evaluation, gates: ModelGatePolicy, evaluation: EvaluationPolicy) -> GateResult:
    """Gate ``slices_meet_floor``: every gated slice meets its floor and does not regress vs production.

    A slice is gated when it has at least ``policy.min_slice_size`` holdout rows and both classes; its
    floor is its ``policy.slice_floors`` entry, else ``policy.slice_metric_floor``. With production, the
    candidate may be worse than production on the slice by at most ``policy.max_slice_regression``. Slices
    that are not gated are listed with the reason and do not fail the gate, except that a rule which too few
    rows leave unchecked is insufficient data: a ``policy.slice_floors`` slice that is not gated or not in the
    holdout, or a slice column none of whose values is gated. Then (and with no failing slice) the evidence's
    ``outcome`` is ``insufficient_data`` and the gate passes with a warning or fails as
    ``policy.insufficient_data`` says; otherwise ``outcome`` is ``passed`` or ``failed``.

    Args:
        ev: The evaluation.
        gates: The model gate thresholds.
        evaluation: The measurement settings (unused by this gate; every gate takes them).

    Returns:
        The gate result; ``observed`` is the number of failing slices, ``threshold`` 0.
    """
    name = "slices_meet_floor"
    metric = ev.headline_metric
    regression = gates.max_slice_regression
    condition = (
        f"every slice with >= {gates.min_slice_size} rows and both classes has candidate {metric} >= its floor "
        f"(default {gates.slice_metric_floor}) and candidate - production >= -{regression} on it"
    )
    gated: list[dict[str, Any]] = []
    not_gated: list[dict[str, Any]] = []
    for row in ev.slices:
        column, value = row["slice_column"], row["value"]
        floor = slice_floor(column, value, gates)
        base = {"slice_column": column, "value": value, "n": row["n"], "n_positive": row["n_positive"]}
        reason = slice_not_gated_reason(int(row["n"]), int(row["n_positive"]), gates)
        if reason is not None:
            not_gated.append({**base, "reason": reason})
            continue
        cand, prod = float(row["candidate"]), float(row.get("production", math.nan))
        problems: list[str] = []
        if math.isnan(cand):
            problems.append(f"candidate {metric} undefined (failing closed)")
        elif cand < floor - _TOL:
            problems.append(f"{metric} {cand:.4f} < floor {floor}")
        delta = math.nan
        if ev.production is not None:
            if math.isnan(prod):
                problems.append(f"production {metric} undefined (failing closed)")
            elif not math.isnan(cand):
                delta = cand - prod
                if delta < -regression - _TOL:
                    problems.append(f"{delta:+.4f} vs production < -{regression}")
        gated.append(
            {**base, "candidate": cand, "production": prod, "delta": delta, "floor": floor, "problems": problems}
        )
    failing = [g for g in gated if g["problems"]]
    present = {(row["slice_column"], row["value"]) for row in ev.slices}
    unmatched = [
        {"column": f.column, "value": f.value, "min_metric": f.min_metric}
        for f in gates.slice_floors
        if (f.column, f.value) not in present
    ]
    # Too few rows to check a rule someone asked for: an explicit slice floor on a slice that is not gated or
    # not in the holdout at all, or a slice column none of whose values is gated.
    short: list[dict[str, Any]] = [
        {"column": s["slice_column"], "value": s["value"], "reason": f"slice floor {f.min_metric}: {s['reason']}"}
        for f in gates.slice_floors
        for s in not_gated
        if (s["slice_column"], s["value"]) == (f.column, f.value)
    ]
    short += [
        {"column": u["column"], "value": u["value"], "reason": f"slice floor {u['min_metric']}: no holdout rows"}
        for u in unmatched
    ]
    columns = list(dict.fromkeys(row["slice_column"] for row in ev.slices))
    gated_columns = {g["slice_column"] for g in gated}
    short += [
        {
            "column": c,
            "value": None,
            "reason": f"no value of {c!r} has >= min_slice_size {gates.min_slice_size} rows and both classes",
        }
        for c in columns
        if c not in gated_columns
    ]
    evidence = {
        "metric": metric,
        "failing": failing,
        "gated": gated,
        "not_gated": not_gated,
        "first_run": ev.production is None,
        "unmatched_slice_floors": unmatched,
        "insufficient_data": short,
        "insufficient_data_policy": gates.insufficient_data,
    }
    passed = not failing
    if not ev.slices and not short:
        outcome, message = "passed", "no slices declared in the spec: nothing to gate"
    elif failing:
        outcome = "failed"
        message = f"{len(failing)} of {len(gated)} gated slices fail: " + _summary(
            [f"{g['slice_column']}={g['value']}: {', '.join(g['problems'])}" for g in failing]
        )
    elif short:
        outcome = "insufficient_data"
        passed, message = _insufficient(
            gates,
            [f"{x['column']}{'' if x['value'] is None else '=' + str(x['value'])}: {x['reason']}" for x in short],
        )
        message += f"; {len(gated)} gated slices meet their floors"
    else:
        outcome = "passed"
        vs = " and within the regression bound of production" if ev.production is not None else ""
        message = f"all {len(gated)} gated slices meet their floors{vs}; {len(not_gated)} not gated"
    evidence["outcome"] = outcome
    return _result(name, passed, condition, message, len(failing), 0, evidence)


# --------------------------------------------------------------------------------------------------
# Calibration, fairness, predictions, latency
# --------------------------------------------------------------------------------------------------


def gate_calibration_within_bound(ev: Evaluation, gates: ModelGatePolicy, evaluation: EvaluationPolicy) -> GateResult:
    """Gate ``calibration_within_bound``: the candidate's calibration error, corrected for sample size, <= ``max_ece``.

    The expected calibration error (ECE, ``policy.calibration_bins`` equal-width bins weighted by bin count;
    Guo et al. 2017) is biased upward at small ``n``: a perfectly calibrated model scores about 0.08 on 140
    rows in 10 bins by sampling noise alone. So the gate compares the observed ECE with its distribution under
    perfect calibration at this size, by consistency resampling (Bröcker & Smith 2007, "Increasing the
    reliability of reliability diagrams"; :func:`~mlops_assets.ml.evaluation.consistency_resampled_ece`:
    :data:`CALIBRATION_RESAMPLES` draws of labels from the model's own scores, seeded with
    ``policy.random_seed``), and decides on the debiased ECE, observed minus the mean of that distribution:

    * fewer than ``min_rows_per_calibration_bin * calibration_bins`` holdout rows: ``outcome``
      ``insufficient_data`` (too few rows for a meaningful ECE);
    * debiased ECE <= ``max_ece``: ``passed`` (so is an observed ECE <= ``max_ece``: the correction only
      lowers it);
    * debiased ECE > ``max_ece`` and the observed ECE is significant evidence of miscalibration (Monte-Carlo
      p-value, the share of calibrated draws at least as large, <= :data:`CALIBRATION_ALPHA`): ``failed``;
    * debiased ECE > ``max_ece`` but a calibrated model reaches the observed ECE in more than 5 % of draws:
      ``insufficient_data``, as the excess is indistinguishable from sampling noise at this size (this
      keeps the false rejection of a calibrated model at most 5 % however small the bound).

    ``insufficient_data`` passes with a warning or fails as ``policy.insufficient_data`` says. Fails closed
    when the ECE is undefined, was measured with other bins, or is over the bound with no reliability table
    recorded to correct it.

    Args:
        ev: The evaluation (reads the candidate's ``ece``, its reliability table and ``n_holdout``).
        gates: The model gate thresholds.
        evaluation: The measurement settings the gate expects the evaluation to have been made with.

    Returns:
        The gate result; ``observed`` is the debiased ECE (may be negative; the raw ECE below the minimum
        rows or when no table is recorded, None when undefined), ``threshold`` is ``max_ece``. The
        evidence holds ``outcome``, the observed ``ece``, ``null_mean_ece``, ``null_p95_ece``,
        ``debiased_ece``, ``p_value``, ``resamples``, ``resampling_seed``, ``min_rows`` and the candidate's
        reliability table.
    """
    name = "calibration_within_bound"
    bound, bins = gates.max_ece, evaluation.calibration_bins
    min_rows = gates.min_rows_per_calibration_bin * bins
    condition = (
        f"candidate expected calibration error ({bins} equal-width bins) minus its mean under perfect "
        f"calibration at the holdout's size (consistency resampling) <= {bound}; with fewer than {min_rows} "
        f"holdout rows, or an excess a calibrated model reaches in more than {_pct(CALIBRATION_ALPHA)} of "
        f"resamples: {gates.insufficient_data}"
    )
    ece = float(ev.candidate.get("ece", math.nan))
    table = tuple(ev.reliability.get("candidate", ()))
    evidence: dict[str, Any] = {
        "outcome": "failed",
        "ece": ece,
        "max_ece": bound,
        "bins": bins,
        "n_holdout": ev.n_holdout,
        "min_rows": min_rows,
        "null_mean_ece": None,
        "null_p95_ece": None,
        "debiased_ece": None,
        "p_value": None,
        "resamples": CALIBRATION_RESAMPLES,
        "resampling_seed": evaluation.random_seed,
        "insufficient_data_policy": gates.insufficient_data,
        "production_ece": None if ev.production is None else ev.production.get("ece"),
        "reliability": [b.to_dict() for b in table],
    }
    mismatch = _mismatch(ev, evaluation, ("calibration_bins",))
    if mismatch is None and table and len(table) != bins:
        mismatch = f"the reliability table has {len(table)} bins (gate policy: calibration_bins {bins})"
    if mismatch or math.isnan(ece):
        reason = mismatch or _undefined(ev.candidate, "ece")
        return _result(name, False, condition, f"{reason}; failing closed", None, bound, evidence)
    if ev.n_holdout < min_rows:
        evidence["outcome"] = "insufficient_data"
        passed, message = _insufficient(
            gates,
            [
                f"{ev.n_holdout} holdout rows < {min_rows} (min_rows_per_calibration_bin "
                f"{gates.min_rows_per_calibration_bin} x {bins} bins): the ECE of so few rows is mostly sampling "
                f"noise (observed {ece:.4f})"
            ],
        )
        return _result(name, passed, condition, message, ece, bound, evidence)
    if sum(b.n for b in table) == 0:
        if ece <= bound + _TOL:
            evidence["outcome"] = "passed"
            message = (
                f"candidate ECE {ece:.4f} <= {bound} over {ev.n_holdout} holdout rows (no reliability table "
                "recorded to correct the small-sample bias; the raw ECE over-states the error, so the pass stands)"
            )
            return _result(name, True, condition, message, ece, bound, evidence)
        message = (
            f"candidate ECE {ece:.4f} > {bound} and no reliability table is recorded to correct its small-sample "
            "bias; failing closed"
        )
        return _result(name, False, condition, message, ece, bound, evidence)
    null = consistency_resampled_ece(table, CALIBRATION_RESAMPLES, evaluation.random_seed)
    null_mean, null_p95 = float(null.mean()), float(np.quantile(null, 0.95))
    debiased = ece - null_mean
    p_value = float((1 + np.count_nonzero(null >= ece - _TOL)) / (1 + null.size))
    evidence.update(null_mean_ece=null_mean, null_p95_ece=null_p95, debiased_ece=debiased, p_value=p_value)
    measured = (
        f"candidate ECE {ece:.4f} over {ev.n_holdout} holdout rows; a perfectly calibrated model with these "
        f"scores averages {null_mean:.4f} (95th percentile {null_p95:.4f}, p = {p_value:.3f})"
    )
    if debiased <= bound + _TOL:
        evidence["outcome"], passed = "passed", True
        message = f"{measured}: debiased ECE {debiased:.4f} <= {bound}"
    elif p_value <= CALIBRATION_ALPHA:
        evidence["outcome"], passed = "failed", False
        message = f"{measured}: debiased ECE {debiased:.4f} > {bound}"
    else:
        evidence["outcome"] = "insufficient_data"
        passed, message = _insufficient(
            gates,
            [
                f"{measured}: debiased ECE {debiased:.4f} > {bound}, but a calibrated model reaches the observed "
                f"ECE in more than {_pct(CALIBRATION_ALPHA)} of resamples, so the excess is indistinguishable "
                f"from sampling noise at {ev.n_holdout} rows"
            ],
        )
    return _result(name, passed, condition, message, debiased, bound, evidence)


def _fairness_problems(report: FairnessReport, gates: ModelGatePolicy) -> list[str]:
    # A gap left undefined by too few rows is insufficient data (see insufficient_data_reason), not a problem;
    # any other undefined gap (the candidate's scores are not probabilities) fails closed.
    short = report.insufficient_data_reason is not None
    checks = (
        (
            "demographic parity difference",
            report.demographic_parity_difference,
            "<=",
            gates.max_demographic_parity_difference,
        ),
        ("demographic parity ratio", report.demographic_parity_ratio, ">=", gates.min_demographic_parity_ratio),
        ("equalized odds difference", report.equalized_odds_difference, "<=", gates.max_equalized_odds_difference),
    )
    problems: list[str] = []
    for label, value, op, bound in checks:
        if math.isnan(value):
            if not short:
                problems.append(f"{label} undefined ({report.undefined_reason or 'NaN'})")
        elif (op == "<=" and value > bound + _TOL) or (op == ">=" and value < bound - _TOL):
            problems.append(f"{label} {value:.4f} {'>' if op == '<=' else '<'} {bound}")
    return problems


def _insufficient(gates: ModelGatePolicy, reasons: Sequence[str]) -> tuple[bool, str]:
    """The verdict and message of a gate whose only finding is too few rows, under ``policy.insufficient_data``."""
    passes = gates.insufficient_data == "pass_with_warning"
    verdict = "passing with a warning" if passes else "failing"
    return passes, (
        f"insufficient data, {verdict} (policy.insufficient_data is {gates.insufficient_data!r}): "
        + _summary(list(reasons))
    )


def gate_fairness_within_bounds(ev: Evaluation, gates: ModelGatePolicy, evaluation: EvaluationPolicy) -> GateResult:
    """Gate ``fairness_within_bounds``: group gaps of the candidate within bounds on every protected attribute.

    Over the groups with at least ``policy.min_group_size`` holdout rows (smaller ones are listed, not
    counted), at ``policy.decision_threshold``: demographic parity difference <=
    ``max_demographic_parity_difference``, ratio >= ``min_demographic_parity_ratio`` and equalized odds
    difference (max of the TPR and FPR gaps) <= ``max_equalized_odds_difference``.

    Each attribute's ``outcome`` is ``failed`` (a gap out of bounds, or undefined for any reason other
    than too few rows), ``insufficient_data`` (fewer than two counted groups, or a counted group with a
    single class leaves a gap unmeasurable; the gaps that are measurable are still gated) or ``passed``.
    The gate fails when any attribute failed; otherwise, with an attribute short of data, its outcome is
    ``insufficient_data`` and it passes with a warning or fails as ``policy.insufficient_data`` says.
    No protected attributes declared: passes, recorded.

    Args:
        ev: The evaluation.
        gates: The model gate thresholds.
        evaluation: The measurement settings the gate expects the evaluation to have been made with.

    Returns:
        The gate result; ``observed`` is the number of failing attributes, ``threshold`` 0; the evidence's
        ``outcome`` is ``passed``, ``failed`` or ``insufficient_data``.
    """
    name = "fairness_within_bounds"
    condition = (
        f"on every protected attribute, over groups with >= {gates.min_group_size} rows: demographic parity "
        f"difference <= {gates.max_demographic_parity_difference}, ratio >= {gates.min_demographic_parity_ratio}"
        f", equalized odds difference <= {gates.max_equalized_odds_difference}; too few rows: "
        f"{gates.insufficient_data}"
    )
    if not ev.fairness:
        return _result(
            name,
            True,
            condition,
            "no protected attributes declared: nothing to gate",
            0,
            0,
            {"attributes": [], "outcome": "passed"},
        )
    mismatch = _mismatch(ev, evaluation, ("decision_threshold",))
    attributes: list[dict[str, Any]] = []
    for stored in ev.fairness:
        # The group rates do not depend on min_group_size, so the gaps can be recomputed under the gate's.
        report = (
            FairnessReport.from_groups(stored.attribute, stored.groups, gates.min_group_size)
            if stored.groups and stored.min_group_size != gates.min_group_size
            else stored
        )
        problems = [mismatch] if mismatch else _fairness_problems(report, gates)
        short = None if mismatch else report.insufficient_data_reason
        outcome = "failed" if problems else "insufficient_data" if short else "passed"
        attributes.append(
            {
                **report.to_dict(),
                "problems": problems,
                "insufficient_data_reason": short,
                "outcome": outcome,
                "passed": {"failed": False, "passed": True}.get(outcome),
            }
        )
    failing = [a for a in attributes if a["outcome"] == "failed"]
    short_of_data = [a for a in attributes if a["outcome"] == "insufficient_data"]
    within = [a for a in attributes if a["outcome"] == "passed"]
    gaps = _summary(
        [
            f"{a['attribute']} DP diff {_fmt(a['demographic_parity_difference'])}, "
            f"ratio {_fmt(a['demographic_parity_ratio'])}, EO diff {_fmt(a['equalized_odds_difference'])}"
            for a in within
        ]
    )
    if failing:
        outcome, passed = "failed", False
        message = f"{len(failing)} of {len(attributes)} protected attributes out of bounds: " + _summary(
            [f"{a['attribute']}: {', '.join(a['problems'])}" for a in failing]
        )
    elif short_of_data:
        outcome = "insufficient_data"
        passed, message = _insufficient(gates, [a["insufficient_data_reason"] for a in short_of_data])
        if within:
            message += f"; within bounds: {gaps}"
    else:
        outcome, passed = "passed", True
        message = f"all {len(attributes)} protected attributes within bounds: {gaps}"
    evidence = {
        "outcome": outcome,
        "insufficient_data_policy": gates.insufficient_data,
        "attributes": attributes,
        "decision_threshold": ev.threshold,
    }
    return _result(name, passed, condition, message, len(failing), 0, evidence)


def gate_predictions_valid(ev: Evaluation, gates: ModelGatePolicy, evaluation: EvaluationPolicy) -> GateResult:
    """Gate ``predictions_valid``: every holdout score of every model is finite and within [0, 1].

    Args:
        ev: The evaluation.
        gates: The model gate thresholds (unused; every gate takes them).
        evaluation: The measurement settings (unused; every gate takes them).

    Returns:
        The gate result; ``observed`` is the number of invalid scores over all models, ``threshold`` 0.
    """
    name = "predictions_valid"
    condition = "every candidate, baseline and production holdout score is finite and within [0, 1]"
    expected = ["candidate", "baseline"] + ([] if ev.production is None else ["production"])
    evidence: dict[str, Any] = {"models": {k: v.to_dict() for k, v in ev.predictions.items()}}
    missing = [m for m in expected if m not in ev.predictions]
    if missing:
        return _result(
            name, False, condition, f"no score counts recorded for {missing}; failing closed", None, 0, evidence
        )
    bad = {m: ev.predictions[m] for m in expected if not ev.predictions[m].valid}
    total = sum(v.n_invalid for v in bad.values())
    if bad:
        message = "invalid scores: " + "; ".join(
            f"{m} {v.n_non_finite} non-finite and {v.n_out_of_range} outside [0, 1] of {v.n}" for m, v in bad.items()
        )
    else:
        message = f"all scores of {', '.join(expected)} are finite probabilities ({ev.n_holdout} rows each)"
    return _result(name, not bad, condition, message, total, 0, evidence)


def gate_latency_within_budget(ev: Evaluation, gates: ModelGatePolicy, evaluation: EvaluationPolicy) -> GateResult:
    """Gate ``latency_within_budget``: p99 scoring cost of the stored candidate artifact within budget.

    Decides on thread CPU time on one thread (see :mod:`mlops_assets.ml.latency`), the median over
    repetitions of the per-repetition p99, so the verdict is the same on an idle and on a loaded machine:
    one-row p99 <= ``policy.max_latency_p99_ms_single`` and p99 of a ``policy.latency_batch_size``-row batch
    <= ``policy.max_latency_p99_ms_batch``. The wall-clock figures are in the message and evidence for
    information. Fails closed when nothing was measured, the batch size differs from the policy's, a p99
    is undefined, or the record holds wall-clock figures only (a record made before the CPU measurement).

    Args:
        ev: The evaluation.
        gates: The model gate thresholds.
        evaluation: The measurement settings the gate expects the evaluation to have been made with.

    Returns:
        The gate result; ``observed``/``threshold`` are the single-row CPU p99 and its budget, or the batch
        CPU p99 and its budget when only the batch is over.
    """
    name = "latency_within_budget"
    single_budget, batch_budget = gates.max_latency_p99_ms_single, gates.max_latency_p99_ms_batch
    condition = (
        f"p99 one-row thread CPU time (one thread, median over repetitions) <= {single_budget} ms and p99 thread "
        f"CPU time of a {evaluation.latency_batch_size}-row batch <= {batch_budget} ms"
    )
    lat = ev.latency
    if lat is None:
        return _result(
            name,
            False,
            condition,
            "no latency measurement recorded for the candidate artifact (evaluate() was given no LatencyReport); "
            "failing closed",
            None,
            single_budget,
            {"latency": None},
        )
    evidence = {
        "latency": lat.to_dict(),
        "clock": lat.clock,
        "budget_single_ms": single_budget,
        "budget_batch_ms": batch_budget,
    }
    if lat.clock != CPU_CLOCK:
        message = (
            f"the latency was recorded as {lat.clock!r} time, which includes waiting for a core on a busy "
            f"machine; the gate decides on {CPU_CLOCK!r} time: re-run the evaluation; failing closed"
        )
        return _result(name, False, condition, message, None, single_budget, evidence)
    if lat.batch_size != evaluation.latency_batch_size:
        message = (
            f"batches of {lat.batch_size} rows were timed but the budget is for {evaluation.latency_batch_size}; "
            "failing closed"
        )
        return _result(name, False, condition, message, None, batch_budget, evidence)
    if _nan(lat.single_p99_ms) or _nan(lat.batch_p99_ms):
        return _result(name, False, condition, "latency p99 undefined; failing closed", None, single_budget, evidence)
    single_ok = lat.single_p99_ms <= single_budget + _TOL
    batch_ok = lat.batch_p99_ms <= batch_budget + _TOL
    message = (
        f"one-row p99 CPU {lat.single_p99_ms:.2f} ms {'<=' if single_ok else '>'} {single_budget} ms, "
        f"{lat.batch_size}-row batch p99 CPU {lat.batch_p99_ms:.2f} ms {'<=' if batch_ok else '>'} {batch_budget} ms "
        f"({lat.throughput_rows_per_s:,.0f} rows per CPU second; median of {lat.repetitions} repetitions); "
        f"wall, for information: one-row p99 {lat.wall_single_p99_ms:.2f} ms, batch p99 {lat.wall_batch_p99_ms:.2f} ms"
    )
    if single_ok and not batch_ok:
        return _result(name, False, condition, message, lat.batch_p99_ms, batch_budget, evidence)
    return _result(name, single_ok and batch_ok, condition, message, lat.single_p99_ms, single_budget, evidence)


# --------------------------------------------------------------------------------------------------
# All gates
# --------------------------------------------------------------------------------------------------

#: A model gate: the evaluation, the gate thresholds, and the measurement settings the evaluation must have used.
ModelGate = Callable[[Evaluation, ModelGatePolicy, EvaluationPolicy], GateResult]

#: Every model gate by name, in the order :func:`evaluation_gates` runs them.
GATES: dict[str, ModelGate] = {
    "metric_above_floor": gate_metric_above_floor,
    "beats_baseline": gate_beats_baseline,
    "non_inferior_to_production": gate_non_inferior_to_production,
    "metric_thresholds_met": gate_metric_thresholds_met,
    "slices_meet_floor": gate_slices_meet_floor,
    "calibration_within_bound": gate_calibration_within_bound,
    "fairness_within_bounds": gate_fairness_within_bounds,
    "predictions_valid": gate_predictions_valid,
    "latency_within_budget": gate_latency_within_budget,
}

#: Gate name → its passing condition in words (phrased to follow "Passes when ...").
GATE_DESCRIPTIONS: dict[str, str] = {
    "metric_above_floor": "the candidate's headline metric on the holdout is at least policy.metric_floor",
    "beats_baseline": (
        "the lower bound of the policy.confidence_level interval (95% by default) of the candidate's lift over the "
        "baseline (headline metric, same holdout rows; DeLong for ROC AUC) exceeds policy.min_lift_over_baseline "
        "(reaches it when that is non-zero)"
    ),
    "non_inferior_to_production": (
        "the lower bound of the policy.confidence_level interval (95% by default) of candidate minus production "
        "headline metric on the same holdout rows (DeLong for ROC AUC; for PR AUC a paired bootstrap of "
        "policy.bootstrap_samples resamples) is at least -policy.non_inferiority_margin (skipped, and recorded as "
        "first_run, when nothing is in production)"
    ),
    "metric_thresholds_met": (
        "every policy.thresholds entry holds: value thresholds on the candidate's holdout metric, change "
        "thresholds (absolute and relative regression, in the metric's direction) against production, "
        "skipped and recorded when nothing is in production"
    ),
    "slices_meet_floor": (
        "on every slice with at least policy.min_slice_size holdout rows and both classes, the candidate's "
        "headline metric is at least the slice's floor (policy.slice_floors, else policy.slice_metric_floor) "
        "and at most policy.max_slice_regression below production's; smaller slices are listed, not gated; "
        "a slice floor or slice column that too few rows leave unchecked is recorded as outcome "
        "insufficient_data and passes with a warning or fails per policy.insufficient_data"
    ),
    "calibration_within_bound": (
        "the candidate's expected calibration error (policy.calibration_bins equal-width bins, weighted by "
        "bin count), less its mean under perfect calibration at the holdout's size (consistency resampling "
        "of the model's own scores, seeded with policy.random_seed), is at most policy.max_ece; a holdout "
        "under policy.min_rows_per_calibration_bin rows per bin, or an excess a calibrated model reaches in "
        "more than 5% of resamples, is recorded as outcome insufficient_data and passes with a warning or "
        "fails per policy.insufficient_data"
    ),
    "fairness_within_bounds": (
        "for every protected attribute, over groups with at least policy.min_group_size holdout rows, the "
        "demographic parity difference is at most policy.max_demographic_parity_difference, its ratio at "
        "least policy.min_demographic_parity_ratio and the equalized odds difference at most "
        "policy.max_equalized_odds_difference (passes, recorded, when none is declared); an attribute with "
        "fewer than two such groups (or a counted group with one class) is recorded as outcome "
        "insufficient_data and passes with a warning or fails per policy.insufficient_data"
    ),
    "predictions_valid": "every holdout score of the candidate, baseline and production model is finite and in [0, 1]",
    "latency_within_budget": (
        "the stored candidate artifact's p99 one-row scoring cost (thread CPU time on one thread, median of "
        "the p99s of several repetitions, so the same on a busy machine) is at most "
        "policy.max_latency_p99_ms_single and its p99 on a policy.latency_batch_size-row batch at most "
        "policy.max_latency_p99_ms_batch; wall-clock figures are recorded for information"
    ),
}


def evaluation_gates(ev: Evaluation, gates: ModelGatePolicy, evaluation: EvaluationPolicy) -> tuple[GateResult, ...]:
    """All model gates, in the order of :data:`GATES`.

    Args:
        ev: The evaluation.
        gates: The model gate thresholds.
        evaluation: The measurement settings the gates expect the evaluation to have been made with.

    Returns:
        One result per gate: metric floor, baseline, production, metric thresholds, slices, calibration,
        fairness, predictions, latency.
    """
    return tuple(gate(ev, gates, evaluation) for gate in GATES.values())
