"""Fixed-horizon A/B test of champion against challenger on a success proportion.

The sample size per arm is computed once, before the test starts (:func:`plan_ab_test`), from the
baseline rate and the smallest effect worth detecting; the decision (:func:`ab_decision`) is taken
only when both arms reached it. Looking at the p-value earlier and stopping when it dips below alpha
("peeking") inflates the false-positive rate far above alpha, which is why an early look answers
``"continue"`` whatever the p-value says.

Statistics (textbook, e.g. Fleiss, Levin & Paik, *Statistical Methods for Rates and Proportions*):

* two-proportion z-test with the pooled variance under H0: ``z = (p_b - p_a) / sqrt(p (1 - p) (1/n_a + 1/n_b))``
  with ``p = (x_a + x_b) / (n_a + n_b)``, two-sided ``p-value = 2 (1 - Phi(|z|))``; z² equals the
  Pearson chi-square statistic of the 2x2 table without continuity correction;
* confidence interval of the difference with the unpooled (Wald) standard error;
* sample size per arm for a two-sided test: ``n = (z_{1-a/2} sqrt(2 pbar qbar) + z_{1-b} sqrt(p1 q1 + p2 q2))² / d²``
  with ``pbar`` the mean of ``p1`` and ``p2 = p1 + d`` (what R's ``power.prop.test`` solves), rounded up.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from scipy.stats import norm

from mlops_assets.ml.routing import CHALLENGER_ARM, CHAMPION_ARM

Arm = Literal["champion", "challenger"]
Decision = Literal["continue", "winner", "no_difference"]


@dataclass(frozen=True)
class ZTestResult:
    """Pooled two-proportion z-test of arm B against arm A.

    Attributes:
        successes_a: Successes in arm A.
        n_a: Trials in arm A.
        successes_b: Successes in arm B.
        n_b: Trials in arm B.
        rate_a: ``successes_a / n_a``.
        rate_b: ``successes_b / n_b``.
        difference: ``rate_b - rate_a``.
        ci_low: Lower bound of the ``1 - alpha`` confidence interval of the difference (Wald).
        ci_high: Upper bound.
        z: The z statistic (0 when the pooled rate is 0 or 1: no variation, no evidence).
        p_value: Two-sided p-value.
        alpha: Level used for the interval.
    """

    successes_a: int
    n_a: int
    successes_b: int
    n_b: int
    rate_a: float
    rate_b: float
    difference: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float
    alpha: float


def _check_counts(successes: int, n: int, arm: str) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"{arm}: need 0 <= successes <= n, got successes={successes}, n={n}")


def two_proportion_ztest(successes_a: int, n_a: int, successes_b: int, n_b: int, *, alpha: float = 0.05) -> ZTestResult:
    """Pooled two-proportion z-test, two-sided, of ``rate_b - rate_a``.

    Args:
        successes_a: Successes in arm A (e.g. the champion).
        n_a: Trials in arm A (> 0).
        successes_b: Successes in arm B (e.g. the challenger).
        n_b: Trials in arm B (> 0).
        alpha: Level of the confidence interval of the difference.

    Returns:
        The test's statistics.
    """
    _check_counts(successes_a, n_a, "arm A")
    _check_counts(successes_b, n_b, "arm B")
    if n_a == 0 or n_b == 0:
        raise ValueError(f"both arms need trials, got n_a={n_a}, n_b={n_b}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rate_a, rate_b = successes_a / n_a, successes_b / n_b
    difference = rate_b - rate_a
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    z = 0.0 if se_pooled == 0.0 else difference / se_pooled
    # sf instead of 1 - cdf keeps precision for large |z|.
    p_value = float(min(1.0, 2.0 * norm.sf(abs(z))))
    se_unpooled = math.sqrt(rate_a * (1.0 - rate_a) / n_a + rate_b * (1.0 - rate_b) / n_b)
    half_width = float(norm.ppf(1.0 - alpha / 2.0)) * se_unpooled
    return ZTestResult(
        successes_a=successes_a,
        n_a=n_a,
        successes_b=successes_b,
        n_b=n_b,
        rate_a=rate_a,
        rate_b=rate_b,
        difference=difference,
        ci_low=difference - half_width,
        ci_high=difference + half_width,
        z=z,
        p_value=p_value,
        alpha=alpha,
    )


def minimum_sample_size(
    p_baseline: float, min_detectable_effect: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Trials per arm for a two-sided pooled z-test to detect ``min_detectable_effect`` with ``power``.

    Args:
        p_baseline: Success rate of the champion (0 < p < 1).
        min_detectable_effect: Smallest absolute lift worth detecting (> 0, ``p_baseline + mde < 1``).
        alpha: Two-sided significance level.
        power: Probability of detecting a true lift of exactly ``min_detectable_effect``.

    Returns:
        The sample size per arm, rounded up.
    """
    p1 = p_baseline
    p2 = p_baseline + min_detectable_effect
    if not 0.0 < p1 < 1.0:
        raise ValueError(f"p_baseline must be in (0, 1), got {p_baseline}")
    if not min_detectable_effect > 0.0 or not p2 < 1.0:
        raise ValueError(f"need min_detectable_effect > 0 and p_baseline + effect < 1, got {min_detectable_effect}")
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got alpha={alpha}, power={power}")
    p_bar = (p1 + p2) / 2.0
    z_alpha = float(norm.ppf(1.0 - alpha / 2.0))
    z_beta = float(norm.ppf(power))
    root_n = z_alpha * math.sqrt(2.0 * p_bar * (1.0 - p_bar)) + z_beta * math.sqrt(p1 * (1.0 - p1) + p2 * (1.0 - p2))
    n = (root_n / min_detectable_effect) ** 2
    # Guard the ceiling against float noise (an exact integer computed as k + 1e-12 would add a trial).
    return math.ceil(n - 1e-9)


@dataclass(frozen=True)
class ABPlan:
    """A fixed-horizon test, fixed before any data is seen.

    Attributes:
        p_baseline: Expected success rate of the champion.
        min_detectable_effect: Absolute lift the test is powered to detect.
        alpha: Two-sided significance level.
        power: Power at ``min_detectable_effect``.
        n_per_arm: The horizon: trials needed in each arm before deciding.
    """

    p_baseline: float
    min_detectable_effect: float
    alpha: float
    power: float
    n_per_arm: int


def plan_ab_test(p_baseline: float, min_detectable_effect: float, alpha: float = 0.05, power: float = 0.8) -> ABPlan:
    """Fix the test's horizon up front (see :func:`minimum_sample_size`)."""
    n = minimum_sample_size(p_baseline, min_detectable_effect, alpha=alpha, power=power)
    return ABPlan(p_baseline, min_detectable_effect, alpha, power, n)


def plan_for_champion(champion_accuracy: float | None, min_detectable_effect: float) -> ABPlan:
    """The horizon from what was known before the test: the champion's holdout accuracy as the baseline rate.

    Falls back to 0.5 (the largest variance, hence the longest horizon) when the accuracy is unknown or
    leaves no room for the effect (not in ``(0, 1 - min_detectable_effect)``). Alpha 0.05, power 0.8.
    """
    baseline = champion_accuracy
    if baseline is None or not 0.0 < baseline < 1.0 - min_detectable_effect:
        baseline = 0.5
    return plan_ab_test(baseline, min_detectable_effect)


@dataclass(frozen=True)
class ABResult:
    """The decision, with its evidence.

    Attributes:
        decision: ``"continue"`` (an arm has not reached the horizon), ``"winner"`` (horizon reached
            and p < alpha) or ``"no_difference"`` (horizon reached, p >= alpha: keep the champion;
            continuing past the planned horizon would be peeking by another name).
        winner: The arm with the better rate when ``decision == "winner"``, else ``None``.
        progress: ``min(n_champion, n_challenger) / n_per_arm``, capped at 1.
        plan: The plan the decision was taken against.
        test: The z-test on the data so far (arm A = champion, B = challenger), ``None`` while an
            arm has no trials. Reported before the horizon for monitoring only.
    """

    decision: Decision
    winner: Arm | None
    progress: float
    plan: ABPlan
    test: ZTestResult | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready evidence."""
        return asdict(self)


def ab_decision(
    plan: ABPlan, champion_successes: int, champion_n: int, challenger_successes: int, challenger_n: int
) -> ABResult:
    """Decide the test: a winner only at the horizon and with p < alpha.

    Args:
        plan: The plan fixed before the test started.
        champion_successes: Successes in the champion arm.
        champion_n: Trials in the champion arm.
        challenger_successes: Successes in the challenger arm.
        challenger_n: Trials in the challenger arm.

    Returns:
        The decision and its evidence.
    """
    _check_counts(champion_successes, champion_n, "champion")
    _check_counts(challenger_successes, challenger_n, "challenger")
    test = None
    if champion_n > 0 and challenger_n > 0:
        test = two_proportion_ztest(
            champion_successes, champion_n, challenger_successes, challenger_n, alpha=plan.alpha
        )
    return _decide(plan, champion_n, challenger_n, test)


def _decide(plan: ABPlan, champion_n: int, challenger_n: int, test: ZTestResult | None) -> ABResult:
    progress = min(1.0, min(champion_n, challenger_n) / plan.n_per_arm)
    if min(champion_n, challenger_n) < plan.n_per_arm or test is None:
        return ABResult("continue", None, progress, plan, test)
    if test.p_value < plan.alpha and test.difference != 0.0:
        winner: Arm = "challenger" if test.difference > 0 else "champion"
        return ABResult("winner", winner, progress, plan, test)
    return ABResult("no_difference", None, progress, plan, test)


Stratum = tuple[int, int, int, int]
"""(champion successes, champion trials, challenger successes, challenger trials) of one stratum."""


def stratified_ztest(strata: Sequence[Stratum], *, alpha: float = 0.05) -> ZTestResult:
    """Two-proportion z-test of (challenger − champion) within strata, combined with Mantel–Haenszel weights.

    When the traffic split changes between strata (canary steps: 5 %, then 25 % ...) and the success rate
    differs between strata (each data version is another month), pooling all rows would compare the arms
    on different mixes of strata; comparing within each stratum and combining does not. Each stratum's
    difference is weighted by ``n_a·n_b/(n_a+n_b)``; the z statistic uses the pooled variance under the
    null in each stratum, the interval the unpooled one. Strata lacking an arm carry no comparison and are
    left out. With one stratum this is exactly :func:`two_proportion_ztest`.

    Returns:
        A :class:`ZTestResult` whose counts and rates are the totals over the used strata and whose
        ``difference``, interval, z and p-value are the stratified ones.

    Raises:
        ValueError: no stratum has trials in both arms, or bad counts.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    used = []
    for i, (sa, na, sb, nb) in enumerate(strata):
        _check_counts(sa, na, f"stratum {i} champion")
        _check_counts(sb, nb, f"stratum {i} challenger")
        if na > 0 and nb > 0:
            used.append((sa, na, sb, nb))
    if not used:
        raise ValueError("no stratum has trials in both arms")
    weights, diffs, var_null, var_alt = [], [], [], []
    for sa, na, sb, nb in used:
        pa, pb = sa / na, sb / nb
        pooled = (sa + sb) / (na + nb)
        weights.append(na * nb / (na + nb))
        diffs.append(pb - pa)
        var_null.append(pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb))
        var_alt.append(pa * (1.0 - pa) / na + pb * (1.0 - pb) / nb)
    total = sum(weights)
    difference = sum(w * d for w, d in zip(weights, diffs, strict=True)) / total
    se_null = math.sqrt(sum(w * w * v for w, v in zip(weights, var_null, strict=True))) / total
    se_alt = math.sqrt(sum(w * w * v for w, v in zip(weights, var_alt, strict=True))) / total
    z = 0.0 if se_null == 0.0 else difference / se_null
    p_value = float(min(1.0, 2.0 * norm.sf(abs(z))))
    half_width = float(norm.ppf(1.0 - alpha / 2.0)) * se_alt
    sa_total, na_total = sum(u[0] for u in used), sum(u[1] for u in used)
    sb_total, nb_total = sum(u[2] for u in used), sum(u[3] for u in used)
    return ZTestResult(
        successes_a=sa_total,
        n_a=na_total,
        successes_b=sb_total,
        n_b=nb_total,
        rate_a=sa_total / na_total,
        rate_b=sb_total / nb_total,
        difference=difference,
        ci_low=difference - half_width,
        ci_high=difference + half_width,
        z=z,
        p_value=p_value,
        alpha=alpha,
    )


def ab_decision_stratified(plan: ABPlan, strata: Sequence[Stratum]) -> ABResult:
    """:func:`ab_decision` on strata (e.g. data versions): the horizon counts the trials of strata with both
    arms, and the test is :func:`stratified_ztest`."""
    both = [s for s in strata if s[1] > 0 and s[3] > 0]
    champion_n = sum(s[1] for s in both)
    challenger_n = sum(s[3] for s in both)
    test = stratified_ztest(both, alpha=plan.alpha) if both else None
    return _decide(plan, champion_n, challenger_n, test)


ArmCounts = Mapping[str, tuple[int, int]]
"""Per arm (``"champion"``, ``"challenger"``): (successes, trials), as from ``performance.ab_counts``."""

#: What the stored record names the test.
STRATIFIED_TEST_KIND = "two-proportion z-test within data versions, Mantel-Haenszel weights"


@dataclass(frozen=True)
class StratifiedAB:
    """An A/B test pooled over strata (data versions), with the counts it rests on.

    Attributes:
        result: The decision (:func:`ab_decision_stratified`).
        strata: Per stratum key (data version), per arm: (successes, trials); in the order given.
        counts: Per arm: (successes, trials) summed over the strata where both arms served — the
            others (shadow: nothing served by the challenger; 100 %: nothing by the champion) carry no
            comparison and count neither in the test nor here.
    """

    result: ABResult
    strata: dict[str, dict[str, tuple[int, int]]]
    counts: dict[str, tuple[int, int]]

    def to_record(self) -> dict[str, Any]:
        """JSON-ready: ``counts`` and ``strata`` as ``{arm: {"correct", "n"}}``, ``test_kind``, the result's fields."""
        return {
            "counts": {arm: {"correct": c, "n": n} for arm, (c, n) in self.counts.items()},
            "strata": {
                key: {arm: {"correct": c, "n": n} for arm, (c, n) in arms.items()} for key, arms in self.strata.items()
            },
            "test_kind": STRATIFIED_TEST_KIND,
            **self.result.to_dict(),
        }

    def to_metadata(self) -> dict[str, Any]:
        """Plain-valued summary, each number named after what it is.

        ``decision``, ``winner`` (``"none"``), ``progress``, ``horizon_per_arm``, ``champion_n``, ``challenger_n``
        (labelled served rows of the versions where both arms served), ``versions_pooled``; once both arms have
        trials: ``champion_accuracy_pooled`` / ``challenger_accuracy_pooled`` (correct served decisions over those
        rows, summed over the versions), ``difference`` (challenger − champion, compared within each data version
        and combined with Mantel–Haenszel weights: what the decision uses), its confidence interval
        ``difference_ci_low`` / ``difference_ci_high`` at ``confidence_level``, and the two-sided ``p_value``.
        """
        result = self.result
        metadata: dict[str, Any] = {
            "decision": result.decision,
            "winner": result.winner or "none",
            "progress": float(result.progress),
            "horizon_per_arm": result.plan.n_per_arm,
            "champion_n": self.counts[CHAMPION_ARM][1],
            "challenger_n": self.counts[CHALLENGER_ARM][1],
            "versions_pooled": len(self.strata),
        }
        if result.test is not None:
            test = result.test
            metadata.update(
                {
                    "champion_accuracy_pooled": float(test.rate_a),
                    "challenger_accuracy_pooled": float(test.rate_b),
                    "difference": float(test.difference),
                    "difference_ci_low": float(test.ci_low),
                    "difference_ci_high": float(test.ci_high),
                    "confidence_level": float(1.0 - test.alpha),
                    "p_value": float(test.p_value),
                }
            )
        return metadata

    def reading(self) -> str:
        """The test in words, every number labelled (markdown, a few hundred characters): the pooled accuracies,
        the stratified difference with its interval and p-value, the horizon and what passes."""
        result, plan = self.result, self.result.plan
        compared = sum(1 for arms in self.strata.values() if all(n > 0 for _, n in arms.values()))
        champion, challenger = self.counts[CHAMPION_ARM], self.counts[CHALLENGER_ARM]
        lines = [
            f"**Decision: {result.decision}**"
            + (f" (winner: {result.winner})" if result.winner else "")
            + f", progress {result.progress:.0%} of the horizon ({plan.n_per_arm:,} labelled served rows per arm).",
            "",
            "| arm | served accuracy, pooled | labelled served rows |",
            "|---|---|---|",
        ]
        test = result.test
        for arm, (correct, n) in ((CHAMPION_ARM, champion), (CHALLENGER_ARM, challenger)):
            lines.append(f"| {arm} | {correct / n:.4f} |" if n else f"| {arm} | – |")
            lines[-1] += f" {n:,} |"
        lines.append("")
        if test is None:
            lines.append("No data version where both arms served labelled rows yet: no test.")
        else:
            lines.append(
                f"Pooled = summed over the {compared} of {len(self.strata)} data version(s) where both arms served. "
                f"**Difference (challenger − champion), stratified by data version** (Mantel–Haenszel; what "
                f"decides): {test.difference:+.4f}, {1 - test.alpha:.0%} CI [{test.ci_low:+.4f}, "
                f"{test.ci_high:+.4f}], p = {test.p_value:.3g}."
                + (
                    f" The pooled gap ({test.rate_b - test.rate_a:+.4f}) mixes versions whose split and accuracy "
                    "differ, so it can disagree."
                    if compared > 1
                    else ""
                )
            )
        lines += [
            "",
            f"Passes (the rollout goes on) unless the champion wins: at the horizon, p < {plan.alpha:g} with a "
            "negative difference rolls back. Before the horizon: continue, whatever p says.",
        ]
        return "\n".join(lines)


def ab_test_by_stratum(plan: ABPlan, per_stratum: Mapping[str, ArmCounts]) -> StratifiedAB:
    """Decide the A/B test on counts per stratum: one stratum per data version, arms compared within each.

    The traffic split changes between canary steps and the success rate between data versions, so the
    arms are compared within each version and combined with Mantel–Haenszel weights
    (:func:`ab_decision_stratified`); a version where an arm served nothing is kept in ``strata`` but
    carries no comparison.

    Args:
        plan: The test's horizon, fixed before the test (:func:`plan_ab_test`).
        per_stratum: Per data version, per arm (``"champion"``, ``"challenger"``): (correct served
            decisions, labelled served rows).

    Returns:
        The decision with the counts it rests on.

    Raises:
        KeyError: A stratum lacks an arm.
        ValueError: Impossible counts (successes above trials, negative numbers).
    """
    arms = (CHAMPION_ARM, CHALLENGER_ARM)
    strata = {key: {arm: (int(c[arm][0]), int(c[arm][1])) for arm in arms} for key, c in per_stratum.items()}
    result = ab_decision_stratified(plan, [(*c[CHAMPION_ARM], *c[CHALLENGER_ARM]) for c in strata.values()])
    compared = [c for c in strata.values() if c[CHAMPION_ARM][1] > 0 and c[CHALLENGER_ARM][1] > 0]
    counts = {arm: (sum(c[arm][0] for c in compared), sum(c[arm][1] for c in compared)) for arm in arms}
    return StratifiedAB(result, strata, counts)
