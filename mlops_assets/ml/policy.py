"""The gate policy: thresholds are data, not code.

Every threshold a gate compares with lives here, with a documented default. A dataset spec overrides
any of them under ``policy:``; a run overrides them again from the launchpad (run config of
``model_evaluation``). The effective policy is recorded with every evaluation, so a gate result can
always be traced to the numbers it used.
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

HEADLINE_METRICS: tuple[str, ...] = ("roc_auc", "pr_auc")
#: Choices of ``Policy.insufficient_data``: what a gate does when too few rows leave its rule unmeasurable.
INSUFFICIENT_DATA_POLICIES: tuple[str, ...] = ("pass_with_warning", "fail")
#: Metrics a generic threshold may name, with whether higher is better.
METRIC_DIRECTIONS: dict[str, bool] = {
    "roc_auc": True,
    "pr_auc": True,
    "accuracy": True,
    "f1": True,
    "log_loss": False,
    "brier": False,
    "ece": False,
}


class PolicyError(ValueError):
    """A policy value is malformed; the message names where it came from and the key."""


@dataclass(frozen=True)
class MetricThreshold:
    """A value threshold and/or change thresholds on one holdout metric (MLflow-style, but allowing ε ≥ 0).

    Attributes:
        metric: One of :data:`METRIC_DIRECTIONS`.
        min_value: The candidate's value must be at least this (for metrics where higher is better).
        max_value: The candidate's value must be at most this (for metrics where lower is better).
        max_regression_absolute: Compared with production, the candidate may be worse by at most this
            much (0: must not be worse; negative: must improve). Skipped, and recorded, with no production.
        max_regression_relative: The same, as a fraction of production's value.
    """

    metric: str
    min_value: float | None = None
    max_value: float | None = None
    max_regression_absolute: float | None = None
    max_regression_relative: float | None = None

    @property
    def higher_is_better(self) -> bool:
        return METRIC_DIRECTIONS[self.metric]


@dataclass(frozen=True)
class SliceThreshold:
    """A floor for the headline metric on one slice (``column == value``), overriding the general floor."""

    column: str
    value: str
    min_metric: float


@dataclass(frozen=True)
class Policy:
    """Gate thresholds and split settings, with their defaults.

    Attributes:
        min_rows: Row floor for a data version (``row_count_above_floor``).
        holdout_fraction: Share of each version held out for evaluation (latest rows by the order column).
        headline_metric: ``roc_auc`` or ``pr_auc`` (higher is better); what the model gates compare.
        metric_floor: Absolute floor for the candidate's headline metric (``metric_above_floor``).
        min_lift_over_baseline: The candidate must beat the baseline by more than this (``beats_baseline``).
        non_inferiority_margin: ε. The lower confidence bound of (candidate − production) on the same
            rows must be at least −ε (``non_inferior_to_production``).
        confidence_level: Of that two-sided bootstrap interval.
        bootstrap_samples: Resamples for it (paired: the same rows for both models in each resample).
        min_slice_size: Slices with fewer holdout rows are reported but not gated.
        slice_metric_floor: Floor of the headline metric on every gated slice.
        max_slice_regression: A gated slice may be at most this much worse than production on it.
        slice_floors: Per-slice floors overriding ``slice_metric_floor``.
        max_ece: Bound on the expected calibration error (``calibration_within_bound``).
        calibration_bins: Equal-width probability bins for the ECE and the reliability table.
        min_rows_per_calibration_bin: ``calibration_within_bound`` needs at least this many holdout rows per
            bin on average (``min_rows_per_calibration_bin * calibration_bins`` rows, 100 by default); with
            fewer its outcome is ``insufficient_data`` and ``insufficient_data`` decides. 0 turns it off.
        max_demographic_parity_difference: Largest allowed gap in predicted-positive rate between groups.
        min_demographic_parity_ratio: Smallest allowed ratio of the lowest to the highest such rate.
        max_equalized_odds_difference: Largest allowed gap in TPR or FPR between groups.
        min_group_size: Protected groups with fewer holdout rows are reported but not gated.
        insufficient_data: What a gate with a minimum group or slice size does when too few rows leave its
            rule unmeasurable (fewer than two protected groups of ``min_group_size`` rows, a counted group
            without positive or negative rows, a ``slice_floors`` slice under ``min_slice_size`` rows or with
            one class, a slice column with no gated value, a holdout under ``min_rows_per_calibration_bin *
            calibration_bins`` rows or an ECE excess over ``max_ece`` indistinguishable from sampling noise):
            ``"pass_with_warning"`` (default: the gate passes
            with ``outcome: insufficient_data`` and a message starting "insufficient data") or ``"fail"``.
            A measured violation always fails; see docs/gates.md for why this default.
        max_latency_p99_ms_single: p99 of one-row scoring of the stored artifact, in milliseconds of thread
            CPU time on one thread (median over repetitions; see :mod:`mlops_assets.ml.latency`), so the
            verdict does not depend on how busy the machine is.
        max_latency_p99_ms_batch: p99 of scoring a batch of ``latency_batch_size`` rows, in the same units.
        latency_batch_size: Rows per batch in the latency measurement.
        decision_threshold: Score at or above which a row is predicted positive.
        thresholds: Further value/change thresholds on any metric (``metric_thresholds_met``).
        random_seed: Seed for every random choice (training, split, bootstrap).
        max_realised_metric_drop: Performance SLA: the production model's realised headline metric on a
            labelled data version may be at most this much below its holdout value at evaluation (and never
            below ``metric_floor``); a breach is what the performance sensor retrains on.
        rollout_min_rows: Rows a rollout phase needs (shadow: scored pairs; canary: labelled challenger
            rows, pooled over the versions scored in the phase) before its guards decide.
        shadow_min_agreement: Shadow guard: share of rows where challenger and champion take the same
            decision at ``decision_threshold``.
        shadow_min_correlation: Shadow guard: Spearman correlation of the two models' scores. Low by default:
            the shadow phase catches a broken challenger (failed, constant, inverted or unrelated scores); a
            model retrained after drift legitimately ranks differently (seen on flights: 0.53 between the
            January and the August model), and its quality is judged on labels in the canary steps.
        canary_max_auc_drop: Canary guard: largest ROC AUC loss of the challenger against the champion on
            the rows the challenger served (paired).
        canary_max_error_rate_increase: Canary guard: largest increase of the misclassification rate there.
        ab_min_detectable_effect: The A/B test's horizon is sized to detect this absolute difference in
            the served decision accuracy of the two arms (alpha 0.05, power 0.8).
        max_null_share_increase: Drift report (``drift_report`` / ``no_drift``): a column whose share of
            missing values rose by more than this (absolute, 0.05 = 5 percentage points) over the
            reference, significantly (one-sided Fisher exact test at 0.05), is drifted and a data-quality
            failure. In [0, 1]; 1 turns the rule off.
        volume_ratio_bounds: ``volume_within_bounds``: a data version's row count divided by that of the
            previous accepted version (the latest earlier data version whose data gates passed) must lie in
            ``[lo, hi]``, inclusive, with ``0 < lo <= 1 <= hi``. The first version has nothing to compare with
            and passes, recorded.
        allow_protected_as_features: A column listed both under ``features`` and ``protected`` is refused when
            the spec loads, unless this is ``true`` (then ``features_allowlisted`` records the protected inputs).
    """

    min_rows: int = 500
    holdout_fraction: float = 0.2
    headline_metric: str = "roc_auc"
    metric_floor: float = 0.55
    min_lift_over_baseline: float = 0.0
    non_inferiority_margin: float = 0.01
    confidence_level: float = 0.95
    bootstrap_samples: int = 1000
    min_slice_size: int = 200
    slice_metric_floor: float = 0.5
    max_slice_regression: float = 0.05
    slice_floors: tuple[SliceThreshold, ...] = ()
    max_ece: float = 0.05
    calibration_bins: int = 10
    min_rows_per_calibration_bin: int = 10
    max_demographic_parity_difference: float = 0.2
    min_demographic_parity_ratio: float = 0.5
    max_equalized_odds_difference: float = 0.2
    min_group_size: int = 100
    insufficient_data: str = "pass_with_warning"
    max_latency_p99_ms_single: float = 100.0
    max_latency_p99_ms_batch: float = 2000.0
    latency_batch_size: int = 1000
    decision_threshold: float = 0.5
    thresholds: tuple[MetricThreshold, ...] = ()
    random_seed: int = 0
    max_realised_metric_drop: float = 0.05
    rollout_min_rows: int = 1000
    shadow_min_agreement: float = 0.8
    shadow_min_correlation: float = 0.3
    canary_max_auc_drop: float = 0.01
    canary_max_error_rate_increase: float = 0.01
    ab_min_detectable_effect: float = 0.02
    max_null_share_increase: float = 0.05
    volume_ratio_bounds: tuple[float, float] = (0.5, 2.0)
    allow_protected_as_features: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, overrides: Mapping[str, Any], where: str = "overrides") -> "Policy":
        """A copy with ``overrides`` applied (same keys and rules as the spec's ``policy:``)."""
        return policy_from_dict({**self.to_dict(), **overrides}, where)


_FLOAT_IN_01 = (
    "holdout_fraction",
    "confidence_level",
    "min_demographic_parity_ratio",
    "decision_threshold",
    "shadow_min_agreement",
    "shadow_min_correlation",
)
_NON_NEGATIVE = (
    "min_rows",
    "non_inferiority_margin",
    "bootstrap_samples",
    "min_slice_size",
    "max_slice_regression",
    "max_ece",
    "min_rows_per_calibration_bin",
    "max_demographic_parity_difference",
    "max_equalized_odds_difference",
    "min_group_size",
    "max_latency_p99_ms_single",
    "max_latency_p99_ms_batch",
    "max_realised_metric_drop",
    "rollout_min_rows",
    "ab_min_detectable_effect",
    "canary_max_auc_drop",
    "canary_max_error_rate_increase",
    "max_null_share_increase",
)


def _number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PolicyError(f"{where}: policy.{key} must be a finite number, got {value!r}")
    return float(value)


def _metric_threshold(raw: Any, where: str, i: int) -> MetricThreshold:
    key = f"policy.thresholds[{i}]"
    if isinstance(raw, MetricThreshold):
        return raw
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: {key} must be a mapping with 'metric' and at least one threshold")
    known = {f.name for f in fields(MetricThreshold)}
    if set(raw) - known:
        raise PolicyError(f"{where}: {key} has unknown keys {sorted(set(raw) - known)}; known: {sorted(known)}")
    metric = raw.get("metric")
    if metric not in METRIC_DIRECTIONS:
        raise PolicyError(f"{where}: {key}.metric must be one of {sorted(METRIC_DIRECTIONS)}, got {metric!r}")
    values = {k: _number(v, where, f"thresholds[{i}].{k}") for k, v in raw.items() if k != "metric" and v is not None}
    if not values:
        raise PolicyError(f"{where}: {key} sets no threshold")
    higher = METRIC_DIRECTIONS[metric]
    if higher and "max_value" in values:
        raise PolicyError(f"{where}: {key}: {metric} is higher-is-better; use min_value, not max_value")
    if not higher and "min_value" in values:
        raise PolicyError(f"{where}: {key}: {metric} is lower-is-better; use max_value, not min_value")
    return MetricThreshold(metric=metric, **values)


def _slice_threshold(raw: Any, where: str, i: int) -> SliceThreshold:
    if isinstance(raw, SliceThreshold):
        return raw
    if not isinstance(raw, Mapping) or set(raw) != {"column", "value", "min_metric"}:
        raise PolicyError(f"{where}: policy.slice_floors[{i}] must have exactly 'column', 'value', 'min_metric'")
    return SliceThreshold(
        column=str(raw["column"]),
        value=str(raw["value"]),
        min_metric=_number(raw["min_metric"], where, f"slice_floors[{i}].min_metric"),
    )


def _volume_ratio_bounds(value: Any, where: str) -> tuple[float, float]:
    key = "volume_ratio_bounds"
    if isinstance(value, str) or not isinstance(value, list | tuple) or len(value) != 2:
        raise PolicyError(f"{where}: policy.{key} must be a list [lo, hi], got {value!r}")
    lo, hi = (_number(v, where, key) for v in value)
    if not 0.0 < lo <= 1.0 <= hi:
        raise PolicyError(f"{where}: policy.{key} must satisfy 0 < lo <= 1 <= hi, got [{lo}, {hi}]")
    return lo, hi


def policy_from_dict(raw: Mapping[str, Any] | None, where: str = "<dict>") -> Policy:
    """Build and validate a :class:`Policy`; unspecified keys keep their defaults.

    Raises:
        PolicyError: naming ``where`` and the key.
    """
    raw = dict(raw or {})
    known = {f.name for f in fields(Policy)}
    unknown = set(raw) - known
    if unknown:
        raise PolicyError(f"{where}: unknown policy keys {sorted(unknown)}; known: {sorted(known)}")
    values: dict[str, Any] = {}
    defaults = Policy()
    for f in fields(Policy):
        if f.name not in raw:
            continue
        value = raw[f.name]
        if f.name == "thresholds":
            values[f.name] = tuple(_metric_threshold(t, where, i) for i, t in enumerate(value or ()))
        elif f.name == "slice_floors":
            values[f.name] = tuple(_slice_threshold(t, where, i) for i, t in enumerate(value or ()))
        elif f.name == "volume_ratio_bounds":
            values[f.name] = _volume_ratio_bounds(value, where)
        elif isinstance(getattr(defaults, f.name), bool):
            if not isinstance(value, bool):
                raise PolicyError(f"{where}: policy.{f.name} must be true or false, got {value!r}")
            values[f.name] = value
        elif f.name == "insufficient_data":
            if value not in INSUFFICIENT_DATA_POLICIES:
                choices = list(INSUFFICIENT_DATA_POLICIES)
                raise PolicyError(f"{where}: policy.insufficient_data must be one of {choices}, got {value!r}")
            values[f.name] = value
        elif f.name == "headline_metric":
            if value not in HEADLINE_METRICS:
                raise PolicyError(f"{where}: policy.headline_metric must be one of {list(HEADLINE_METRICS)}")
            values[f.name] = value
        elif isinstance(getattr(defaults, f.name), int) and not isinstance(getattr(defaults, f.name), bool):
            number = _number(value, where, f.name)
            if number != int(number):
                raise PolicyError(f"{where}: policy.{f.name} must be a whole number, got {value!r}")
            values[f.name] = int(number)
        else:
            values[f.name] = _number(value, where, f.name)
    policy = replace(defaults, **values)
    for key in _FLOAT_IN_01:
        if not 0.0 < getattr(policy, key) < 1.0:
            raise PolicyError(f"{where}: policy.{key} must be in (0, 1), got {getattr(policy, key)}")
    for key in _NON_NEGATIVE:
        if getattr(policy, key) < 0:
            raise PolicyError(f"{where}: policy.{key} must be >= 0, got {getattr(policy, key)}")
    if policy.max_null_share_increase > 1:
        raise PolicyError(f"{where}: policy.max_null_share_increase must be <= 1, got {policy.max_null_share_increase}")
    if policy.calibration_bins < 2 or policy.latency_batch_size < 1 or policy.bootstrap_samples < 100:
        raise PolicyError(
            f"{where}: policy.calibration_bins must be >= 2, latency_batch_size >= 1 and bootstrap_samples >= 100"
        )
    return policy
