"""A/B test of champion against challenger: an always-valid sequential test (default) or a fixed-horizon z-test.

Two methods (``policy.rollout.ab_method``):

* ``msprt`` (default, :func:`msprt_test`): the mixture sequential probability ratio test (Robbins 1970;
  Johari, Pekelis & Walsh, "Always valid inference: bringing sequential analysis to A/B testing", 2015,
  Operations Research 2022) on the per-row difference of a proper scoring rule between challenger and
  champion, paired on every labelled row both models scored, stratified by data version. Its p-value and
  confidence sequence stay valid however often they are read, so the rollout may read the test after every
  data version at level ``ab_alpha``. :func:`simulate_peeking` measures that by simulation.
* ``fixed_horizon`` (:func:`ab_test_by_stratum`): a two-proportion z-test of served decision accuracy whose
  sample size per arm is computed once, before the test starts (:func:`plan_ab_test`), from the baseline rate
  and the smallest effect worth detecting; the decision (:func:`ab_decision`) is taken only when both arms
  reached it. Looking at the p-value earlier and stopping when it dips below alpha ("peeking") inflates the
  false-positive rate far above alpha, which is why an early look answers ``"continue"`` whatever the
  p-value says.

Statistics of the fixed-horizon test (textbook, e.g. Fleiss, Levin & Paik, *Statistical Methods for Rates and
Proportions*):

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

import numpy as np
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


def plan_for_champion(champion_accuracy: float | None, min_detectable_effect: float, alpha: float = 0.05) -> ABPlan:
    """The horizon from what was known before the test: the champion's holdout accuracy as the baseline rate.

    Falls back to 0.5 (the largest variance, hence the longest horizon) when the accuracy is unknown or
    leaves no room for the effect (not in ``(0, 1 - min_detectable_effect)``). Power 0.8, level ``alpha``.
    """
    baseline = champion_accuracy
    if baseline is None or not 0.0 < baseline < 1.0 - min_detectable_effect:
        baseline = 0.5
    return plan_ab_test(baseline, min_detectable_effect, alpha=alpha)


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

        ``method`` (``fixed_horizon``), ``metric`` (``accuracy``), ``decision``, ``winner`` (``"none"``), ``n``
        (trials: ``champion_n + challenger_n``), ``progress``, ``horizon_per_arm``, ``champion_n``, ``challenger_n``
        (labelled served rows of the versions where both arms served), ``versions_pooled``; once both arms have
        trials: ``champion_accuracy_pooled`` / ``challenger_accuracy_pooled`` (correct served decisions over those
        rows, summed over the versions), ``difference`` (challenger − champion, compared within each data version
        and combined with Mantel–Haenszel weights: what the decision uses), its confidence interval
        ``difference_ci_low`` / ``difference_ci_high`` at ``confidence_level``, and the two-sided ``p_value``.
        """
        result = self.result
        metadata: dict[str, Any] = {
            "method": "fixed_horizon",
            "metric": "accuracy",
            "decision": result.decision,
            "winner": result.winner or "none",
            "n": self.counts[CHAMPION_ARM][1] + self.counts[CHALLENGER_ARM][1],
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


# -- always-valid sequential test: mSPRT on a per-row proper scoring rule -------------------------------------------

Metric = Literal["log_loss", "brier", "accuracy"]

#: The metrics the sequential test compares per row, and whether lower is better.
LOWER_IS_BETTER: dict[str, bool] = {"log_loss": True, "brier": True, "accuracy": False}

#: Log loss clips the score to ``[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]`` before taking logs: a row's loss is at most
#: ``-ln(1e-6)`` ≈ 13.8 nats. A score of exactly 0 or 1 on the wrong side would otherwise be an infinite loss, and
#: a few near-infinite rows would make the per-row differences too heavy-tailed for the normal approximation.
LOG_LOSS_EPS = 1e-6

#: Fewest rows a stratum needs before its variance estimate is used (fewer: the stratum is left out and says so).
MIN_STRATUM_ROWS = 30

#: What the stored record names the sequential test.
MSPRT_TEST_KIND = (
    "mSPRT with a normal mixture on the paired per-row difference (challenger − champion), strata = data versions "
    "combined with inverse-variance weights"
)


def row_metric(labels: Any, scores: Any, metric: str, *, threshold: float = 0.5) -> np.ndarray:
    """The per-row value of ``metric`` for one model: what the sequential test averages.

    * ``log_loss``: ``-(y ln q + (1 - y) ln(1 - q))`` with ``q = clip(score, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)``
      (nats; lower is better; a strictly proper scoring rule);
    * ``brier``: ``(score - y)²`` (lower is better; strictly proper, bounded by 1);
    * ``accuracy``: 1 when the decision ``score >= threshold`` matches the label, else 0 (higher is better; not
      a proper scoring rule: it sees only the side of the threshold a score falls on).

    Args:
        labels: 0/1 outcomes, shape (n,).
        scores: Positive-class probabilities in [0, 1], shape (n,).
        metric: ``"log_loss"``, ``"brier"`` or ``"accuracy"``.
        threshold: Decision threshold for ``accuracy``.

    Returns:
        Float array, shape (n,).

    Raises:
        ValueError: Unknown metric, misaligned or non-1-D inputs, labels not 0/1, scores not finite in [0, 1].
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or p.shape != y.shape:
        raise ValueError(f"labels and scores must be aligned 1-D arrays, got shapes {y.shape} and {p.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"labels must be 0/1, got e.g. {sorted(set(y[~np.isin(y, (0.0, 1.0))].tolist()))[:3]}")
    if not (np.isfinite(p).all() and ((p >= 0.0) & (p <= 1.0)).all()):
        raise ValueError("scores must be finite probabilities in [0, 1]")
    if metric == "log_loss":
        q = np.clip(p, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
        return -(y * np.log(q) + (1.0 - y) * np.log1p(-q))
    if metric == "brier":
        return (p - y) ** 2
    if metric == "accuracy":
        return ((p >= threshold) == (y == 1.0)).astype(np.float64)
    raise ValueError(f"metric must be one of {sorted(LOWER_IS_BETTER)}, got {metric!r}")


def msprt_log_likelihood_ratio(
    difference: Any, variance: Any, mixture_sd: float, null_value: float = 0.0
) -> np.ndarray:
    """Log of the mixture likelihood ratio of a normal mean against ``null_value``, normal mixture.

    For an estimate ``d`` ~ N(θ, v) and the mixing distribution θ ~ N(θ0, τ²) (Johari et al. 2015, eq. for the
    normal-mixture mSPRT; Robbins 1970)::

        Λ = sqrt(v / (v + τ²)) · exp(τ² (d − θ0)² / (2 v (v + τ²)))

    Args:
        difference: Estimates ``d`` (any shape).
        variance: Their variances ``v`` > 0 (same shape, broadcastable).
        mixture_sd: ``τ`` > 0, in the units of ``d``.
        null_value: ``θ0``.

    Returns:
        ``ln Λ`` (same shape).
    """
    d = np.asarray(difference, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    t2 = float(mixture_sd) ** 2
    return 0.5 * np.log(v / (v + t2)) + t2 * (d - null_value) ** 2 / (2.0 * v * (v + t2))


def msprt_half_width(variance: Any, mixture_sd: float, alpha: float) -> np.ndarray:
    """Half-width of the confidence sequence at one reading: ``{θ0 : Λ(θ0) < 1/alpha}`` around the estimate.

    Solving ``ln Λ(θ0) < ln(1/alpha)`` for θ0 gives
    ``|d − θ0| < sqrt(v (v + τ²) / τ² · (2 ln(1/alpha) + ln((v + τ²) / v)))`` (Johari et al. 2015).
    """
    v = np.asarray(variance, dtype=np.float64)
    t2 = float(mixture_sd) ** 2
    return np.sqrt(v * (v + t2) / t2 * (2.0 * math.log(1.0 / alpha) + np.log1p(t2 / v)))


@dataclass(frozen=True)
class _Path:
    """The test read after each stratum (last axis), as arrays."""

    difference: np.ndarray
    variance: np.ndarray
    log_lr: np.ndarray
    p_value: np.ndarray
    cs_low: np.ndarray
    cs_high: np.ndarray
    used: np.ndarray


def _msprt_path(counts: np.ndarray, means: np.ndarray, variances: np.ndarray, mixture_sd: float, alpha: float) -> _Path:
    """The mSPRT read after each stratum, from per-stratum counts, mean differences and variances (shape (..., K)).

    Strata combine with inverse-variance weights ``n_k / s²_k``: ``d = Σ w_k d̄_k / Σ w_k``, ``v = 1 / Σ w_k``.
    That is the likelihood of a common shift θ with a known variance per stratum, so ``Λ`` is a product over rows of
    ``exp(θ x_i / s²_k − θ² / (2 s²_k))`` mixed over θ: a nonnegative martingale under the null (Ville's inequality
    bounds ``P(sup Λ ≥ 1/alpha)`` by alpha). The plug-in variances are what Johari et al. use; strata with fewer than
    :data:`MIN_STRATUM_ROWS` rows or no variation are left out. The always-valid p-value is the running minimum of
    ``min(1, 1/Λ)``, the confidence sequence the running intersection of the per-reading intervals.
    """
    used = (counts >= MIN_STRATUM_ROWS) & (variances > 0.0) & np.isfinite(variances)
    weights = np.where(used, counts / np.where(used, variances, 1.0), 0.0)
    total = np.cumsum(weights, axis=-1)
    weighted = np.cumsum(weights * np.where(used, means, 0.0), axis=-1)
    have = total > 0.0
    safe_total = np.where(have, total, 1.0)
    difference = np.where(have, weighted / safe_total, np.nan)
    variance = np.where(have, 1.0 / safe_total, np.inf)
    log_lr = np.where(
        have, msprt_log_likelihood_ratio(np.where(have, difference, 0.0), 1.0 / safe_total, mixture_sd), 0.0
    )
    p_value = np.minimum.accumulate(np.minimum(1.0, np.exp(-log_lr)), axis=-1)
    half = np.where(have, msprt_half_width(1.0 / safe_total, mixture_sd, alpha), np.inf)
    cs_low = np.maximum.accumulate(np.where(have, difference - half, -np.inf), axis=-1)
    cs_high = np.minimum.accumulate(np.where(have, difference + half, np.inf), axis=-1)
    return _Path(difference, variance, log_lr, p_value, cs_low, cs_high, used)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class StratumReading:
    """One stratum (data version) of the sequential test, and the test as read right after it.

    Attributes:
        key: The data version.
        n: Labelled rows both models scored.
        champion_mean: Champion's mean per-row metric on them (``None`` without rows).
        challenger_mean: Challenger's.
        mean_difference: ``challenger_mean − champion_mean``.
        sd_difference: Standard deviation of the per-row differences (ddof 1; ``None`` under 2 rows).
        used: Whether the stratum entered the test (enough rows, some variation).
        note: Why it did not ("" when used).
        difference: The combined estimate after this stratum (``None`` while no stratum is used).
        p_value: The always-valid p-value after this stratum.
        cs_low: Lower end of the confidence sequence after this stratum (``None``: unbounded).
        cs_high: Upper end.
    """

    key: str
    n: int
    champion_mean: float | None
    challenger_mean: float | None
    mean_difference: float | None
    sd_difference: float | None
    used: bool
    note: str
    difference: float | None
    p_value: float
    cs_low: float | None
    cs_high: float | None


#: Column descriptions of the sequential test's per-version table (:meth:`SequentialAB.strata_rows`).
STRATUM_COLUMNS: dict[str, str] = {
    "key": "The data version (a stratum), in the order the test read them.",
    "n": "Labelled rows of this version both models scored (paired).",
    "champion_mean": "Champion's mean per-row metric on them.",
    "challenger_mean": "Challenger's mean per-row metric on them.",
    "mean_difference": "Challenger − champion on this version alone.",
    "sd_difference": "Standard deviation of the per-row differences (the version's weight is n / sd²).",
    "used": "Whether the version entered the test.",
    "note": "Why it did not.",
    "difference": "The test's estimate after this version (versions so far combined).",
    "p_value": "Always-valid p-value after this version: decides when ≤ alpha.",
    "cs_low": "Confidence sequence after this version, lower end (empty: unbounded).",
    "cs_high": "Confidence sequence after this version, upper end.",
}

StratumRows = tuple[Any, Any]
"""One stratum's paired per-row metric values: (champion's, challenger's), aligned row by row."""


@dataclass(frozen=True)
class SequentialAB:
    """The always-valid A/B test (mSPRT) read now, with its evidence per stratum.

    Attributes:
        metric: ``log_loss``, ``brier`` or ``accuracy`` (see :func:`row_metric`).
        alpha: Level: the probability that the test ever declares a winner under no difference, over every reading.
        mixture_sd: ``τ``, the sd of the normal mixing distribution over the per-row mean difference.
        decision: ``"winner"`` once the always-valid p-value is ≤ alpha; ``"no_difference"`` only with an
            ``equivalence_margin`` and a confidence sequence inside ``(−margin, margin)``; else ``"continue"``.
        winner: The arm on the better side of the confidence sequence when ``decision == "winner"``.
        n: Labelled rows both models scored, in the strata used.
        difference: Challenger − champion of the metric, strata combined (``None`` while no stratum is used).
        standard_error: Its standard error.
        log_likelihood_ratio: ``ln Λ`` now (0 without data).
        p_value: Always-valid p-value (running minimum of ``min(1, 1/Λ)`` over the readings after each stratum).
        cs_low: Lower end of the ``1 − alpha`` confidence sequence of the difference (``None``: unbounded).
        cs_high: Upper end.
        champion_mean: Champion's mean per-row metric over the rows used (row-weighted; context only).
        challenger_mean: Challenger's.
        decided_at: The stratum after which the p-value first reached alpha (``None``: not decided).
        equivalence_margin: The margin for ``no_difference`` (``None``: never declared).
        strata: One reading per stratum, in the order read.
    """

    metric: str
    alpha: float
    mixture_sd: float
    decision: Decision
    winner: Arm | None
    n: int
    difference: float | None
    standard_error: float | None
    log_likelihood_ratio: float
    p_value: float
    cs_low: float | None
    cs_high: float | None
    champion_mean: float | None
    challenger_mean: float | None
    decided_at: str | None
    equivalence_margin: float | None
    strata: tuple[StratumReading, ...]

    method = "msprt"

    @property
    def lower_is_better(self) -> bool:
        """Whether a lower metric is better (log loss, Brier) or a higher one (accuracy)."""
        return LOWER_IS_BETTER[self.metric]

    def to_record(self) -> dict[str, Any]:
        """JSON-ready: every field (``strata`` as a list of dicts), ``method``, ``test_kind``, ``lower_is_better``."""
        return {
            "method": self.method,
            "test_kind": MSPRT_TEST_KIND,
            "lower_is_better": self.lower_is_better,
            **asdict(self),
        }

    def strata_rows(self) -> list[dict[str, Any]]:
        """One row per stratum for a metadata table (key first, then the stratum's figures, then the running test)."""
        return [asdict(s) for s in self.strata]

    def to_metadata(self) -> dict[str, Any]:
        """Plain-valued summary: ``method``, ``metric``, ``decision``, ``winner`` (``"none"``), ``n``, ``p_value``,
        ``alpha``, ``mixture_sd``, ``versions_pooled``, ``versions_used``; once a stratum is used: ``difference``
        (challenger − champion), ``standard_error``, ``champion_<metric>``, ``challenger_<metric>``; the confidence
        sequence ``cs_low`` / ``cs_high`` when bounded; ``decided_at`` once decided."""
        metadata: dict[str, Any] = {
            "method": self.method,
            "metric": self.metric,
            "decision": self.decision,
            "winner": self.winner or "none",
            "n": self.n,
            "p_value": float(self.p_value),
            "alpha": float(self.alpha),
            "mixture_sd": float(self.mixture_sd),
            "versions_pooled": len(self.strata),
            "versions_used": sum(1 for s in self.strata if s.used),
        }
        optional = {
            "difference": self.difference,
            "standard_error": self.standard_error,
            f"champion_{self.metric}": self.champion_mean,
            f"challenger_{self.metric}": self.challenger_mean,
            "cs_low": self.cs_low,
            "cs_high": self.cs_high,
        }
        metadata.update({k: float(v) for k, v in optional.items() if v is not None})
        if self.decided_at is not None:
            metadata["decided_at"] = self.decided_at
        return metadata

    def reading(self) -> str:
        """The test in words, every number labelled (markdown, under a thousand characters)."""
        better = "lower" if self.lower_is_better else "higher"
        head = f"**Decision: {self.decision}**" + (f" (winner: {self.winner})" if self.winner else "")
        lines = [
            head + f" — mSPRT on per-row {self.metric} ({better} is better), level α = {self.alpha:g}, read after "
            "every data version (always valid).",
            "",
        ]
        if self.difference is None:
            lines.append(
                f"No data version with {MIN_STRATUM_ROWS}+ labelled rows scored by both models yet: nothing to test."
            )
        else:
            low = "−∞" if self.cs_low is None else f"{self.cs_low:+.4f}"
            high = "+∞" if self.cs_high is None else f"{self.cs_high:+.4f}"
            lines += [
                f"{self.metric}: champion {self.champion_mean:.4f}, challenger {self.challenger_mean:.4f} on "
                f"{self.n:,} labelled rows both scored (paired), {sum(s.used for s in self.strata)} of "
                f"{len(self.strata)} data version(s).",
                "",
                f"**Difference (challenger − champion), stratified by data version**: {self.difference:+.4f} "
                f"(se {self.standard_error:.4f}); {1 - self.alpha:.0%} confidence sequence [{low}, {high}]; "
                f"always-valid p = {self.p_value:.3g}"
                + (f", decided after {self.decided_at}." if self.decided_at else "."),
            ]
        lines += [
            "",
            f"Rollout: a champion win (p ≤ {self.alpha:g}) fails the canary guard; anything else passes, and the "
            "other guards and the canary steps decide.",
        ]
        return "\n".join(lines)


def msprt_test(
    per_stratum: Mapping[str, StratumRows],
    *,
    metric: str,
    alpha: float = 0.05,
    mixture_sd: float = 0.01,
    equivalence_margin: float | None = None,
) -> SequentialAB:
    """The always-valid A/B test of challenger against champion on paired per-row metric values, per stratum.

    Per row ``x = challenger metric − champion metric`` (both models scored the row; see
    :func:`row_metric`). Per stratum (data version, read in the order given — the order the versions arrived):
    rows ``n_k``, mean ``x̄_k``, sample variance ``s²_k``. Strata combine with inverse-variance weights
    (:func:`_msprt_path`): each version's mean is compared within the version, so a month where both models do
    worse does not mix into the comparison, and a noisier version counts less. The test is read after each
    stratum: the normal-mixture mSPRT (Johari, Pekelis & Walsh 2015) against "no difference", its always-valid
    p-value (running minimum of ``1/Λ``), the confidence sequence (running intersection). Under the null (no
    difference in any version) the chance that the p-value *ever* reaches alpha is at most alpha (up to the
    normal approximation and the plug-in variances), however many readings.

    Decision: ``winner`` once ``p ≤ alpha``; the winner is on the better side of the confidence sequence (which
    then excludes 0). ``no_difference`` is declared only with an ``equivalence_margin``: when the confidence sequence
    lies inside ``(−margin, margin)`` — valid because the sequence covers the true difference at every reading
    with probability ``1 − alpha``. Otherwise ``continue``: the rollout's own guards and steps end the test.

    Args:
        per_stratum: Per data version, (champion's, challenger's) per-row metric values, aligned, shape (n_k,).
        metric: Which metric the values are (decides which side is better).
        alpha: Level in (0, 1).
        mixture_sd: ``τ`` > 0, in the metric's units per row.
        equivalence_margin: Optional margin > 0 for ``no_difference``.

    Returns:
        The test as read after the last stratum, with one :class:`StratumReading` per stratum.

    Raises:
        ValueError: Unknown metric, alpha or mixture_sd out of range, misaligned or non-finite values.
    """
    if metric not in LOWER_IS_BETTER:
        raise ValueError(f"metric must be one of {sorted(LOWER_IS_BETTER)}, got {metric!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not mixture_sd > 0.0:
        raise ValueError(f"mixture_sd must be > 0, got {mixture_sd}")
    if equivalence_margin is not None and not equivalence_margin > 0.0:
        raise ValueError(f"equivalence_margin must be > 0, got {equivalence_margin}")
    keys = list(per_stratum)
    counts, means, variances = np.zeros(len(keys)), np.zeros(len(keys)), np.zeros(len(keys))
    champ_means, chall_means = np.full(len(keys), np.nan), np.full(len(keys), np.nan)
    for i, key in enumerate(keys):
        champion, challenger = (np.asarray(a, dtype=np.float64) for a in per_stratum[key])
        if champion.ndim != 1 or champion.shape != challenger.shape:
            raise ValueError(f"stratum {key!r}: champion and challenger values must be aligned 1-D arrays")
        if not (np.isfinite(champion).all() and np.isfinite(challenger).all()):
            raise ValueError(f"stratum {key!r}: metric values must be finite")
        x = challenger - champion
        counts[i] = x.size
        if x.size:
            means[i], champ_means[i], chall_means[i] = x.mean(), champion.mean(), challenger.mean()
        variances[i] = float(x.var(ddof=1)) if x.size >= 2 else 0.0
    path = _msprt_path(counts, means, variances, mixture_sd, alpha)
    strata = []
    for i, key in enumerate(keys):
        n = int(counts[i])
        note = ""
        if n < MIN_STRATUM_ROWS:
            note = f"{n} of {MIN_STRATUM_ROWS} rows needed"
        elif not path.used[i]:
            note = "the two models' values differ by the same amount on every row: no variance to test with"
        strata.append(
            StratumReading(
                key=key,
                n=n,
                champion_mean=_finite(champ_means[i]),
                challenger_mean=_finite(chall_means[i]),
                mean_difference=float(means[i]) if n else None,
                sd_difference=math.sqrt(variances[i]) if n >= 2 else None,
                used=bool(path.used[i]),
                note=note,
                difference=_finite(path.difference[i]),
                p_value=float(path.p_value[i]),
                cs_low=_finite(path.cs_low[i]),
                cs_high=_finite(path.cs_high[i]),
            )
        )
    last = len(keys) - 1
    used = path.used
    n_used = int(counts[used].sum())
    difference = _finite(path.difference[last]) if keys else None
    p_value = float(path.p_value[last]) if keys else 1.0
    cs_low = _finite(path.cs_low[last]) if keys else None
    cs_high = _finite(path.cs_high[last]) if keys else None
    decided = np.flatnonzero(path.p_value <= alpha)
    decision: Decision = "continue"
    winner: Arm | None = None
    if decided.size:
        decision = "winner"
        # p ≤ alpha means 0 was outside the sequence at that reading (and stays outside: it only shrinks); the side
        # it lay on says which arm is better.
        challenger_higher = bool(path.cs_low[int(decided[0])] > 0.0)
        winner = "challenger" if challenger_higher != LOWER_IS_BETTER[metric] else "champion"
    elif (
        equivalence_margin is not None
        and cs_low is not None
        and cs_high is not None
        and -equivalence_margin < cs_low
        and cs_high < equivalence_margin
    ):
        decision = "no_difference"
    weights = counts[used]
    return SequentialAB(
        metric=metric,
        alpha=float(alpha),
        mixture_sd=float(mixture_sd),
        decision=decision,
        winner=winner,
        n=n_used,
        difference=difference,
        standard_error=math.sqrt(float(path.variance[last])) if difference is not None else None,
        log_likelihood_ratio=float(path.log_lr[last]) if keys else 0.0,
        p_value=p_value,
        cs_low=cs_low,
        cs_high=cs_high,
        champion_mean=float(np.average(champ_means[used], weights=weights)) if n_used else None,
        challenger_mean=float(np.average(chall_means[used], weights=weights)) if n_used else None,
        decided_at=keys[int(decided[0])] if decided.size else None,
        equivalence_margin=equivalence_margin,
        strata=tuple(strata),
    )


# -- peeking, by simulation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeekingSimulation:
    """How often each test declares a winner when read after every data version (:func:`simulate_peeking`).

    Attributes:
        experiments: Simulated rollouts.
        versions: Data versions per rollout; every test is read after each one.
        rows_per_version: Labelled rows per version (both models score every row).
        metric: The sequential test's per-row metric.
        alpha: Level of every test.
        mixture_sd: The mSPRT's ``τ``.
        champion_noise_sd: Noise on the champion's logit (see :func:`simulate_peeking`).
        challenger_noise_sd: Noise on the challenger's logit (equal: no difference).
        seed: Random seed.
        mean_difference: The simulated effect: mean per-row metric, challenger − champion, over every row.
        msprt_rate: Share of rollouts where the mSPRT's always-valid p-value reached alpha at some reading.
        ztest_peeking_rate: Share where a fixed-horizon z-test of the same stratified difference
            (``z = d / se``, two-sided) had p < alpha at some reading.
        ztest_final_rate: Share where that z-test had p < alpha when read once, after the last version.
        served_ztest_peeking_rate: Share where the ``fixed_horizon`` method's test (two-proportion z-test of served
            decision accuracy, Mantel–Haenszel over versions, rows split by ``challenger_share``) had p < alpha at
            some reading, had it been read before its horizon.
    """

    experiments: int
    versions: int
    rows_per_version: int
    metric: str
    alpha: float
    mixture_sd: float
    champion_noise_sd: float
    challenger_noise_sd: float
    seed: int
    mean_difference: float
    msprt_rate: float
    ztest_peeking_rate: float
    ztest_final_rate: float
    served_ztest_peeking_rate: float

    def summary(self) -> str:
        """The rates in words, one line each."""
        null = self.champion_noise_sd == self.challenger_noise_sd
        what = "false decision rate (no difference)" if null else "decision rate (power)"
        return "\n".join(
            [
                f"{self.experiments} simulated rollouts x {self.versions} data versions x {self.rows_per_version} "
                f"labelled rows, {self.metric}, alpha {self.alpha:g}, tau {self.mixture_sd:g}, mean per-row difference "
                f"{self.mean_difference:+.5f} (seed {self.seed})",
                f"{what}, read after every version:",
                f"  mSPRT (always-valid p):                              {self.msprt_rate:.3f}",
                f"  z-test of the same difference, peeking:              {self.ztest_peeking_rate:.3f}",
                f"  z-test of served accuracy (fixed_horizon), peeking:  {self.served_ztest_peeking_rate:.3f}",
                f"  z-test of the same difference, read once at the end: {self.ztest_final_rate:.3f}",
            ]
        )


def _two_sided_p(z: np.ndarray) -> np.ndarray:
    return np.asarray(2.0 * norm.sf(np.abs(z)))


def simulate_peeking(
    *,
    experiments: int = 2000,
    versions: int = 20,
    rows_per_version: int = 500,
    metric: str = "log_loss",
    alpha: float = 0.05,
    mixture_sd: float = 0.01,
    champion_noise_sd: float = 0.5,
    challenger_noise_sd: float | None = None,
    challenger_share: float = 0.5,
    threshold: float = 0.5,
    seed: int = 0,
) -> PeekingSimulation:
    """Simulate rollouts and read each test after every data version, as the rollout does.

    Each version of each simulated rollout: a delay base rate ``π ~ U(0.13, 0.33)`` (the range of the flights
    months), a feature ``x ~ N(0, 1)`` per row, the true logit ``logit(π) + x`` and the label ``y ~ Bernoulli``
    of it. Each model scores ``sigmoid(true logit + e)`` with its own noise ``e ~ N(0, sd²)``, independent per
    row and model. With equal noise the two models are exchangeable: no difference in any version (the null),
    and every decision is a false one. A smaller challenger noise is a better challenger (power).

    The mSPRT runs on exactly the code of :func:`msprt_test` (paired per-row :func:`row_metric`, strata = versions);
    the z-tests on the same rows: one of the same stratified difference, one of served accuracy as the
    ``fixed_horizon`` method computes it (rows split between the arms at ``challenger_share``). Vectorised over
    the rollouts, one version at a time: 2000 × 20 × 500 takes a few seconds.

    Args:
        experiments: Simulated rollouts (>= 1).
        versions: Data versions per rollout (>= 1).
        rows_per_version: Labelled rows per version (>= :data:`MIN_STRATUM_ROWS`).
        metric: The mSPRT's per-row metric.
        alpha: Level of every test.
        mixture_sd: The mSPRT's ``τ``.
        champion_noise_sd: Logit noise of the champion (>= 0).
        challenger_noise_sd: Logit noise of the challenger (``None``: the champion's, the null).
        challenger_share: Share of rows the challenger serves, for the served-accuracy z-test.
        threshold: Decision threshold (accuracy).
        seed: Seed of :func:`numpy.random.default_rng`.

    Returns:
        The rates.
    """
    if experiments < 1 or versions < 1 or rows_per_version < MIN_STRATUM_ROWS:
        raise ValueError(
            f"need experiments >= 1, versions >= 1, rows_per_version >= {MIN_STRATUM_ROWS}; got "
            f"{experiments}, {versions}, {rows_per_version}"
        )
    if not 0.0 < challenger_share < 1.0:
        raise ValueError(f"challenger_share must be in (0, 1), got {challenger_share}")
    challenger_sd = champion_noise_sd if challenger_noise_sd is None else challenger_noise_sd
    if champion_noise_sd < 0.0 or challenger_sd < 0.0:
        raise ValueError("noise sds must be >= 0")
    rng = np.random.default_rng(seed)
    shape = (experiments, rows_per_version)
    counts = np.full((experiments, versions), float(rows_per_version))
    means, variances = np.zeros((experiments, versions)), np.zeros((experiments, versions))
    mh_numerator, mh_variance = np.zeros((experiments, versions)), np.zeros((experiments, versions))
    for k in range(versions):
        base = rng.uniform(0.13, 0.33, size=(experiments, 1))
        logit = np.log(base / (1.0 - base)) + rng.standard_normal(shape)
        y = (rng.random(shape) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
        champion = 1.0 / (1.0 + np.exp(-(logit + champion_noise_sd * rng.standard_normal(shape))))
        challenger = 1.0 / (1.0 + np.exp(-(logit + challenger_sd * rng.standard_normal(shape))))
        champion_metric = row_metric(y.ravel(), champion.ravel(), metric, threshold=threshold).reshape(shape)
        challenger_metric = row_metric(y.ravel(), challenger.ravel(), metric, threshold=threshold).reshape(shape)
        x = challenger_metric - champion_metric
        means[:, k], variances[:, k] = x.mean(axis=1), x.var(axis=1, ddof=1)
        # The fixed_horizon method: each row served by one arm; correct decisions of the served model.
        served_b = rng.random(shape) < challenger_share
        correct_a = (champion >= threshold) == (y == 1.0)
        correct_b = (challenger >= threshold) == (y == 1.0)
        n_a, n_b = (~served_b).sum(axis=1), served_b.sum(axis=1)
        s_a, s_b = (correct_a & ~served_b).sum(axis=1), (correct_b & served_b).sum(axis=1)
        ok = (n_a > 0) & (n_b > 0)
        n_a_safe, n_b_safe = np.maximum(n_a, 1), np.maximum(n_b, 1)
        weight = np.where(ok, n_a * n_b / (n_a_safe + n_b_safe), 0.0)
        pooled = (s_a + s_b) / (n_a_safe + n_b_safe)
        mh_numerator[:, k] = weight * (s_b / n_b_safe - s_a / n_a_safe)
        mh_variance[:, k] = weight**2 * pooled * (1.0 - pooled) * (1.0 / n_a_safe + 1.0 / n_b_safe)
    path = _msprt_path(counts, means, variances, mixture_sd, alpha)
    z_same = np.where(np.isfinite(path.variance), path.difference / np.sqrt(path.variance), 0.0)
    p_same = _two_sided_p(np.nan_to_num(z_same))
    mh_num, mh_var = np.cumsum(mh_numerator, axis=1), np.cumsum(mh_variance, axis=1)
    z_served = np.where(mh_var > 0.0, mh_num / np.sqrt(np.where(mh_var > 0.0, mh_var, 1.0)), 0.0)
    p_served = _two_sided_p(z_served)
    return PeekingSimulation(
        experiments=experiments,
        versions=versions,
        rows_per_version=rows_per_version,
        metric=metric,
        alpha=alpha,
        mixture_sd=mixture_sd,
        champion_noise_sd=champion_noise_sd,
        challenger_noise_sd=challenger_sd,
        seed=seed,
        mean_difference=float(means.mean()),
        msprt_rate=float((path.p_value[:, -1] <= alpha).mean()),
        ztest_peeking_rate=float((p_same < alpha).any(axis=1).mean()),
        ztest_final_rate=float((p_same[:, -1] < alpha).mean()),
        served_ztest_peeking_rate=float((p_served < alpha).any(axis=1).mean()),
    )
