"""The gate policy: thresholds are data, not code.

Every threshold a gate compares with lives here, with a documented default, grouped in typed sections by
the stage that uses it:

* :class:`DataGatePolicy` (``data``): the data gates of a landed version.
* :class:`EvaluationPolicy` (``evaluation``): how the holdout is split and measured.
* :class:`ModelGatePolicy` (``gates``): the model gates' thresholds.
* :class:`RolloutPolicy` (``rollout``): the shadow and canary guards and the A/B test's horizon.
* :class:`MonitoringPolicy` (``monitoring``): the performance SLA and the drift report's null-share rule.

:class:`Policy` holds one of each. Every setting's name is unique across sections, so a dataset spec
sets any of them under ``policy:`` either flat (``policy: {metric_floor: 0.6}``, the original form) or
by section (``policy: {gates: {metric_floor: 0.6}}``); a run overrides the evaluation's and the model
gates' settings again from the launchpad (run config of ``model_evaluation``). The effective policy is
recorded with every evaluation (:meth:`Policy.to_dict`, by section), so a gate result can always be
traced to the numbers it used; :func:`policy_from_dict` and :func:`flatten_policy` read both the
sectioned records and the flat ones stored before the sections existed.

Validation is driven by the dataclass fields: a field's type (``int``, ``float``, ``bool``, ``str``)
decides how its value is read, and its ``metadata`` holds its rule (bounds, choices, or a parser for the
list-valued settings).
"""

import inspect
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import Field, asdict, dataclass, field, fields, replace
from typing import Any, TypeVar

HEADLINE_METRICS: tuple[str, ...] = ("roc_auc", "pr_auc")
#: Choices of ``ModelGatePolicy.insufficient_data``: what a gate does when too few rows leave its rule unmeasurable.
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


# --------------------------------------------------------------------------------------------------
# Field rules (dataclass field metadata) and the parsers of the list-valued settings
# --------------------------------------------------------------------------------------------------

_Parser = Callable[[Any, str], Any]


def _rule(
    *,
    open_interval: tuple[float, float] | None = None,
    ge: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] | None = None,
    parse: _Parser | None = None,
    set_before_evaluation: str | None = None,
) -> dict[str, Any]:
    """Field metadata: bounds of a number (``open_interval`` (lo, hi) exclusive, ``ge``, ``le``), ``choices`` of
    a string, ``parse`` of a list setting, and ``set_before_evaluation`` (why the launchpad of
    ``model_evaluation`` may not override it)."""
    meta = {
        "open_interval": open_interval,
        "ge": ge,
        "le": le,
        "choices": choices,
        "parse": parse,
        "set_before_evaluation": set_before_evaluation,
    }
    return {key: value for key, value in meta.items() if value is not None}


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


def _metric_thresholds(value: Any, where: str) -> tuple[MetricThreshold, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple | None):
        raise PolicyError(f"{where}: policy.thresholds must be a list of thresholds, got {value!r}")
    return tuple(_metric_threshold(t, where, i) for i, t in enumerate(value or ()))


def _slice_floors(value: Any, where: str) -> tuple[SliceThreshold, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple | None):
        raise PolicyError(f"{where}: policy.slice_floors must be a list of slice floors, got {value!r}")
    return tuple(_slice_threshold(t, where, i) for i, t in enumerate(value or ()))


def _volume_ratio_bounds(value: Any, where: str) -> tuple[float, float]:
    key = "volume_ratio_bounds"
    if isinstance(value, str) or not isinstance(value, list | tuple) or len(value) != 2:
        raise PolicyError(f"{where}: policy.{key} must be a list [lo, hi], got {value!r}")
    lo, hi = (_number(v, where, key) for v in value)
    if not 0.0 < lo <= 1.0 <= hi:
        raise PolicyError(f"{where}: policy.{key} must satisfy 0 < lo <= 1 <= hi, got [{lo}, {hi}]")
    return lo, hi


def _canary_steps(value: Any, where: str) -> tuple[float, ...]:
    key = "canary_steps"
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise PolicyError(f"{where}: policy.{key} must be a non-empty list of shares, got {value!r}")
    steps = tuple(_number(v, where, key) for v in value)
    if any(not 0.0 < s <= 1.0 for s in steps) or any(b <= a for a, b in itertools.pairwise(steps)):
        raise PolicyError(f"{where}: policy.{key} must be strictly increasing shares in (0, 1], got {list(steps)}")
    if steps[-1] != 1.0:
        raise PolicyError(f"{where}: policy.{key} must end at 1.0 (the challenger then serves all), got {list(steps)}")
    return steps


_IN_01 = _rule(open_interval=(0, 1))
_NON_NEGATIVE = _rule(ge=0)
_SPLIT = "it decides the split of the features, before the evaluation"


# --------------------------------------------------------------------------------------------------
# The sections
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataGatePolicy:
    """The data gates of a landed data version (spec section ``policy.data``).

    Attributes:
        min_rows: Row floor for a data version (``row_count_above_floor``).
        volume_ratio_bounds: ``volume_within_bounds``: a data version's row count divided by that of the
            previous accepted version (the latest earlier data version whose data gates passed) must lie in
            ``[lo, hi]``, inclusive, with ``0 < lo <= 1 <= hi``. The first version has nothing to compare with
            and passes, recorded.
        allow_protected_as_features: A column listed both under ``features`` and ``protected`` is refused when
            the spec loads, unless this is ``true`` (then ``features_allowlisted`` records the protected inputs).
        min_labelled_share: A data version is *labelled* when at least this share of its rows has a label (from
            its own label column or the labels stream). Only labelled versions are trained or evaluated on, and
            only they count for the retraining sensors; in [0.001, 1].
    """

    min_rows: int = field(default=500, metadata=_NON_NEGATIVE)
    volume_ratio_bounds: tuple[float, float] = field(default=(0.5, 2.0), metadata=_rule(parse=_volume_ratio_bounds))
    allow_protected_as_features: bool = False
    min_labelled_share: float = field(default=0.8, metadata=_rule(ge=0.001, le=1))


@dataclass(frozen=True)
class EvaluationPolicy:
    """How the holdout is split off and measured (spec section ``policy.evaluation``).

    Attributes:
        holdout_fraction: Share of each version held out for evaluation (latest rows by the order column).
        headline_metric: ``roc_auc`` or ``pr_auc`` (higher is better); what the model gates compare and the
            training search optimises.
        decision_threshold: Score at or above which a row is predicted positive.
        confidence_level: Confidence level of the two-sided intervals of the paired differences (candidate −
            baseline, candidate − production, a new candidate − the challenger in flight) that ``beats_baseline``,
            ``non_inferior_to_production`` and ``on_new_candidate: compare`` decide on: DeLong's for ROC AUC, a
            paired bootstrap for PR AUC.
        bootstrap_samples: Resamples of those intervals when the headline metric is PR AUC (paired: the same rows
            for both models in each resample; ROC AUC intervals are DeLong's, without resampling); at least 100.
        calibration_bins: Equal-width probability bins for the ECE and the reliability table; at least 2.
        latency_batch_size: Rows per batch in the latency measurement; at least 1.
        random_seed: Seed for every random choice (training, split, bootstrap, calibration resampling).
    """

    holdout_fraction: float = field(default=0.2, metadata={**_IN_01, "set_before_evaluation": _SPLIT})
    headline_metric: str = field(
        default="roc_auc",
        metadata=_rule(choices=HEADLINE_METRICS, set_before_evaluation="the training search optimises it"),
    )
    decision_threshold: float = field(default=0.5, metadata=_IN_01)
    confidence_level: float = field(default=0.95, metadata=_IN_01)
    bootstrap_samples: int = field(default=1000, metadata=_rule(ge=100))
    calibration_bins: int = field(default=10, metadata=_rule(ge=2))
    latency_batch_size: int = field(default=1000, metadata=_rule(ge=1))
    random_seed: int = field(default=0, metadata=_rule(set_before_evaluation=f"it seeds the training, and {_SPLIT}"))


@dataclass(frozen=True)
class ModelGatePolicy:
    """The model gates' thresholds (spec section ``policy.gates``).

    Attributes:
        metric_floor: Absolute floor for the candidate's headline metric (``metric_above_floor``).
        min_lift_over_baseline: The candidate must beat the baseline by more than this (``beats_baseline``).
        non_inferiority_margin: ε. The lower confidence bound of (candidate − production) on the same
            rows must be at least −ε (``non_inferior_to_production``).
        min_slice_size: Slices with fewer holdout rows are reported but not gated.
        slice_metric_floor: Floor of the headline metric on every gated slice.
        max_slice_regression: A gated slice may be at most this much worse than production on it.
        slice_floors: Per-slice floors overriding ``slice_metric_floor``.
        max_ece: Bound on the expected calibration error (``calibration_within_bound``).
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
        thresholds: Further value/change thresholds on any metric (``metric_thresholds_met``).
    """

    metric_floor: float = 0.55
    min_lift_over_baseline: float = 0.0
    non_inferiority_margin: float = field(default=0.01, metadata=_NON_NEGATIVE)
    min_slice_size: int = field(default=200, metadata=_NON_NEGATIVE)
    slice_metric_floor: float = 0.5
    max_slice_regression: float = field(default=0.05, metadata=_NON_NEGATIVE)
    slice_floors: tuple[SliceThreshold, ...] = field(default=(), metadata=_rule(parse=_slice_floors))
    max_ece: float = field(default=0.05, metadata=_NON_NEGATIVE)
    min_rows_per_calibration_bin: int = field(default=10, metadata=_NON_NEGATIVE)
    max_demographic_parity_difference: float = field(default=0.2, metadata=_NON_NEGATIVE)
    min_demographic_parity_ratio: float = field(default=0.5, metadata=_IN_01)
    max_equalized_odds_difference: float = field(default=0.2, metadata=_NON_NEGATIVE)
    min_group_size: int = field(default=100, metadata=_NON_NEGATIVE)
    insufficient_data: str = field(default="pass_with_warning", metadata=_rule(choices=INSUFFICIENT_DATA_POLICIES))
    max_latency_p99_ms_single: float = field(default=100.0, metadata=_NON_NEGATIVE)
    max_latency_p99_ms_batch: float = field(default=2000.0, metadata=_NON_NEGATIVE)
    thresholds: tuple[MetricThreshold, ...] = field(default=(), metadata=_rule(parse=_metric_thresholds))


@dataclass(frozen=True)
class RolloutPolicy:
    """The guards of a rollout and the A/B test's horizon (spec section ``policy.rollout``).

    Attributes:
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
        ab_min_detectable_effect: The fixed-horizon A/B test's horizon is sized to detect this absolute
            difference in the served decision accuracy of the two arms (level ``ab_alpha``, power 0.8).
        ab_method: ``msprt`` (default): an always-valid mixture sequential probability ratio test, which may be
            read after every data version at level ``ab_alpha``; ``fixed_horizon``: the two-proportion z-test,
            valid only when read once, at its horizon.
        ab_metric: What the sequential test compares per row, challenger − champion on every labelled row both
            models scored: ``log_loss`` (default; scores clipped to [1e-6, 1 − 1e-6]) or ``brier`` (proper scoring
            rules of each model's score), or ``accuracy`` (the decision at ``decision_threshold``; at the flights
            model's 0.5 threshold the models decide alike on almost every row, so it barely compares them).
        ab_alpha: The A/B test's level: ``msprt``, the chance under no difference of ever declaring a winner over
            every reading; ``fixed_horizon``, at its horizon (it also sizes the horizon).
        ab_mixture_sd: mSPRT: standard deviation of the normal mixing distribution over the true per-row mean
            difference of ``ab_metric`` (the effect sizes the test is most sensitive to). 0.01: in simulation
            (docs/decisions/0005-always-valid-ab-test.md) it detected small log-loss differences more often than
            0.02 or 0.05, at 500 and at 20,000 rows per version, with the type-I error still far below alpha.
        canary_steps: The challenger's traffic shares of the canary steps, strictly increasing, ending at 1.0.
            Each step needs at least one labelled data version scored at its share, so the default (10 %, then
            100 %) with the shadow phase finishes a rollout in three data versions (three years of a yearly
            export; docs/deployment.md). Recorded in the rollout at its start: an edit changes the next rollout.
        shadow_phase: Whether a rollout starts with a shadow phase (the challenger scores, never serves).
        on_new_candidate: What happens to a new candidate that passed its gates while a rollout is in progress:
            ``queue`` (it waits; its rollout starts when the current one ends), ``supersede`` (the rollout in
            progress is stopped and the new candidate's starts) or ``compare`` (the two are compared on the
            same holdout; the better one continues, the other is archived). Recorded in the rollout at its start;
            details in docs/deployment.md ("A new candidate during a rollout").
    """

    rollout_min_rows: int = field(default=1000, metadata=_NON_NEGATIVE)
    shadow_min_agreement: float = field(default=0.8, metadata=_IN_01)
    shadow_min_correlation: float = field(default=0.3, metadata=_IN_01)
    canary_max_auc_drop: float = field(default=0.01, metadata=_NON_NEGATIVE)
    canary_max_error_rate_increase: float = field(default=0.01, metadata=_NON_NEGATIVE)
    ab_min_detectable_effect: float = field(default=0.02, metadata=_NON_NEGATIVE)
    ab_method: str = field(default="msprt", metadata=_rule(choices=("msprt", "fixed_horizon")))
    ab_metric: str = field(default="log_loss", metadata=_rule(choices=("log_loss", "brier", "accuracy")))
    ab_alpha: float = field(default=0.05, metadata=_IN_01)
    ab_mixture_sd: float = field(default=0.01, metadata=_rule(ge=1e-9))
    canary_steps: tuple[float, ...] = field(default=(0.10, 1.00), metadata=_rule(parse=_canary_steps))
    shadow_phase: bool = True
    on_new_candidate: str = field(default="queue", metadata=_rule(choices=("queue", "supersede", "compare")))


@dataclass(frozen=True)
class MonitoringPolicy:
    """What monitoring of the model in production flags (spec section ``policy.monitoring``).

    Attributes:
        max_realised_metric_drop: Performance SLA: the production model's realised headline metric on a
            labelled data version may be at most this much below its holdout value at evaluation (and never
            below ``metric_floor``); a breach is what the performance sensor retrains on.
        max_null_share_increase: Drift report (``drift_report`` / ``no_drift``): a column whose share of
            missing values rose by more than this (absolute, 0.05 = 5 percentage points) over the
            reference, significantly (one-sided Fisher exact test at 0.05), is drifted and a data-quality
            failure. In [0, 1]; 1 turns the rule off.
        performance_estimate_samples: ``performance_estimate``: label draws from the calibrated scores behind
            the estimate's confidence band (CBPE's sampling error).
        max_new_category_share: Drift report's ``data_quality`` check (a warning, not blocking): it warns when more
            than this share of a data version's rows carry a category the production model's training data never
            had, in some column (0, the default: any new category; 1 turns it off). It also warns on the
            missing-share rule above and on values outside the spec's range.
        skew_sample_rows: ``training_serving_skew`` check of a data version landed from served traffic: how many
            logged rows (whole requests, seeded sample) are re-built and re-scored through the batch path.
    """

    max_realised_metric_drop: float = field(default=0.05, metadata=_NON_NEGATIVE)
    max_null_share_increase: float = field(default=0.05, metadata=_rule(ge=0, le=1))
    max_new_category_share: float = field(default=0.0, metadata=_rule(ge=0, le=1))
    performance_estimate_samples: int = field(default=500, metadata=_rule(ge=50))
    skew_sample_rows: int = field(default=1000, metadata=_rule(ge=1))


Section = DataGatePolicy | EvaluationPolicy | ModelGatePolicy | RolloutPolicy | MonitoringPolicy
_S = TypeVar("_S", DataGatePolicy, EvaluationPolicy, ModelGatePolicy, RolloutPolicy, MonitoringPolicy)

#: Section name under ``policy:`` → its dataclass, in the order :meth:`Policy.to_dict` writes them.
SECTIONS: dict[str, type[Section]] = {
    "data": DataGatePolicy,
    "evaluation": EvaluationPolicy,
    "gates": ModelGatePolicy,
    "rollout": RolloutPolicy,
    "monitoring": MonitoringPolicy,
}
#: Setting name → the name of the section it belongs to (every setting name is unique across sections).
SECTION_OF: dict[str, str] = {f.name: name for name, cls in SECTIONS.items() for f in fields(cls)}
if len(SECTION_OF) != sum(len(fields(c)) for c in SECTIONS.values()) or set(SECTION_OF) & set(SECTIONS):
    raise TypeError("every policy setting needs a name unique across the sections and unlike a section's")


@dataclass(frozen=True)
class Policy:
    """The whole gate policy: one typed section per stage, each with its defaults.

    Functions take the section they read (``policy.gates``, ``policy.rollout`` ...), not the whole policy.

    Attributes:
        data: :class:`DataGatePolicy`, the data gates.
        evaluation: :class:`EvaluationPolicy`, the holdout split and the measurement settings.
        gates: :class:`ModelGatePolicy`, the model gates' thresholds.
        rollout: :class:`RolloutPolicy`, the rollout guards and the A/B horizon.
        monitoring: :class:`MonitoringPolicy`, the performance SLA and the drift report's null-share rule.
    """

    data: DataGatePolicy = field(default_factory=DataGatePolicy)
    evaluation: EvaluationPolicy = field(default_factory=EvaluationPolicy)
    gates: ModelGatePolicy = field(default_factory=ModelGatePolicy)
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)
    monitoring: MonitoringPolicy = field(default_factory=MonitoringPolicy)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain data by section (``{"data": {...}, "evaluation": {...}, ...}``), as recorded with an evaluation;
        :func:`policy_from_dict` reads it back."""
        return {name: asdict(getattr(self, name)) for name in SECTIONS}

    def to_flat_dict(self) -> dict[str, Any]:
        """Plain data, every setting at the top level (the form recorded before the sections existed)."""
        return {key: value for section in self.to_dict().values() for key, value in section.items()}

    def with_overrides(self, overrides: Mapping[str, Any], where: str = "overrides") -> "Policy":
        """A copy with ``overrides`` (flat or by section, same keys and rules as the spec's ``policy:``) applied.

        Raises:
            PolicyError: naming ``where`` and the key, for a malformed override.
        """
        return policy_from_dict({**self.to_flat_dict(), **flatten_policy(overrides, where)}, where)


# --------------------------------------------------------------------------------------------------
# Reading: flat or sectioned mappings
# --------------------------------------------------------------------------------------------------


def flatten_policy(raw: Mapping[str, Any] | None, where: str = "<dict>") -> dict[str, Any]:
    """The settings of a policy mapping as one flat mapping, setting name → raw value (not validated).

    ``raw`` may be flat (``{"metric_floor": 0.6}``), by section (``{"gates": {"metric_floor": 0.6}}``), or
    a mix of flat settings and sections; recorded policies of both forms read the same.

    Raises:
        PolicyError: naming ``where`` and the key: ``raw`` or a section is not a mapping, a setting is
            under a section it does not belong to (the message names the right one), a setting is given
            both flat and under its section, or a key is unknown (the message lists the known keys).
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: 'policy' must be a mapping, got {type(raw).__name__}")
    flat: dict[str, Any] = {}
    from_section: dict[str, str] = {}
    unknown = sorted(str(k) for k in raw if k not in SECTIONS and k not in SECTION_OF)
    if unknown:
        raise PolicyError(
            f"{where}: unknown policy keys {unknown}; known: {sorted(SECTION_OF)} (flat) or the sections "
            f"{list(SECTIONS)}"
        )
    for key, value in raw.items():
        if key not in SECTIONS:
            continue
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise PolicyError(f"{where}: policy.{key} must be a mapping of {key} settings, got {type(value).__name__}")
        for sub, sub_value in value.items():
            home = SECTION_OF.get(sub)
            if home is None:
                known = [f.name for f in fields(SECTIONS[key])]
                raise PolicyError(f"{where}: unknown policy.{key} key {sub!r}; known: {known}")
            if home != key:
                raise PolicyError(
                    f"{where}: policy.{key}.{sub}: {sub!r} belongs in section '{home}' (policy.{home}.{sub}), "
                    f"not '{key}'"
                )
            flat[sub] = sub_value
            from_section[sub] = key
    for key, value in raw.items():
        if key in SECTIONS:
            continue
        if key in from_section:
            raise PolicyError(
                f"{where}: policy.{key} is set twice, flat and under policy.{from_section[key]}.{key}; set it once"
            )
        flat[key] = value
    return flat


def _value(cls: type[Section], f: Field[Any], value: Any, where: str) -> Any:
    """``value`` read as field ``f`` of section ``cls`` declares it (its type and its metadata's rule)."""
    key, meta = f.name, f.metadata
    if "parse" in meta:
        return meta["parse"](value, where)
    if f.type is bool:
        if not isinstance(value, bool):
            raise PolicyError(f"{where}: policy.{key} must be true or false, got {value!r}")
        return value
    if f.type is str:
        choices = meta.get("choices")
        if choices is not None and value not in choices:
            raise PolicyError(f"{where}: policy.{key} must be one of {list(choices)}, got {value!r}")
        if not isinstance(value, str):
            raise PolicyError(f"{where}: policy.{key} must be a string, got {value!r}")
        return value
    number = _number(value, where, key)
    if f.type is int:
        if number != int(number):
            raise PolicyError(f"{where}: policy.{key} must be a whole number, got {value!r}")
        out: float = int(number)
    elif f.type is float:
        out = number
    else:  # pragma: no cover - a new field type without a parser is a programming error
        raise TypeError(f"{cls.__name__}.{key}: type {f.type!r} needs metadata 'parse'")
    interval, ge, le = meta.get("open_interval"), meta.get("ge"), meta.get("le")
    if interval is not None and not interval[0] < out < interval[1]:
        raise PolicyError(f"{where}: policy.{key} must be in ({interval[0]:g}, {interval[1]:g}), got {out}")
    if ge is not None and out < ge:
        raise PolicyError(f"{where}: policy.{key} must be >= {ge:g}, got {out}")
    if le is not None and out > le:
        raise PolicyError(f"{where}: policy.{key} must be <= {le:g}, got {out}")
    return out


def section_from_dict(cls: type[_S], raw: Mapping[str, Any] | None, where: str = "<dict>") -> _S:
    """One section built from its settings (flat keys of that section only); unspecified ones keep their defaults.

    Raises:
        PolicyError: naming ``where`` and the key, for a key of another section, an unknown key or a bad value.
    """
    raw = dict(raw or {})
    names = {f.name for f in fields(cls)}
    for key in raw:
        if key not in names:
            home = SECTION_OF.get(key)
            if home is not None:
                raise PolicyError(f"{where}: {key!r} belongs in policy section '{home}', not in {cls.__name__}")
            raise PolicyError(f"{where}: unknown {cls.__name__} key {key!r}; known: {sorted(names)}")
    values = {f.name: _value(cls, f, raw[f.name], where) for f in fields(cls) if f.name in raw}
    return replace(cls(), **values)


def policy_from_dict(raw: Mapping[str, Any] | None, where: str = "<dict>") -> Policy:
    """Build and validate a :class:`Policy` from a flat or sectioned mapping; unspecified keys keep their defaults.

    Reads the spec's ``policy:`` in either form, a launchpad override and a recorded policy (sectioned, or
    flat as stored before the sections existed). See :func:`flatten_policy` for the accepted shapes.

    Raises:
        PolicyError: naming ``where`` and the key.
    """
    flat = flatten_policy(raw, where)
    by_section: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in flat.items():
        by_section[SECTION_OF[key]][key] = value
    return Policy(
        data=section_from_dict(DataGatePolicy, by_section["data"], where),
        evaluation=section_from_dict(EvaluationPolicy, by_section["evaluation"], where),
        gates=section_from_dict(ModelGatePolicy, by_section["gates"], where),
        rollout=section_from_dict(RolloutPolicy, by_section["rollout"], where),
        monitoring=section_from_dict(MonitoringPolicy, by_section["monitoring"], where),
    )


def field_descriptions(cls: type) -> dict[str, str]:
    """Setting name → its description, read from the ``Attributes:`` block of ``cls``'s docstring (one line)."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    out: dict[str, str] = {}
    in_attributes, current = False, None
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            in_attributes = True
            continue
        if not in_attributes:
            continue
        if line.startswith("        ") and current is not None:
            out[current] += " " + line.strip()
        elif line.startswith("    ") and ":" in line:
            current, _, text = line.strip().partition(":")
            out[current] = text.strip()
        elif line.strip():
            break
    return out


def scalar_fields(cls: type[Section]) -> tuple[Field[Any], ...]:
    """The settings of a section that hold one number, string or boolean (not the list-valued ones)."""
    return tuple(f for f in fields(cls) if f.type in (int, float, str, bool))


def evaluation_override_fields() -> tuple[tuple[Field[Any], str], ...]:
    """The settings the launchpad of ``model_evaluation`` may override, each with its description.

    Every scalar setting of :class:`EvaluationPolicy` and :class:`ModelGatePolicy`, except those whose
    metadata says they are ``set_before_evaluation`` (the split, the seed and the metric the training
    optimised: the candidate and its holdout were made with them).
    """
    out: list[tuple[Field[Any], str]] = []
    for cls in (EvaluationPolicy, ModelGatePolicy):
        docs = field_descriptions(cls)
        out.extend((f, docs[f.name]) for f in scalar_fields(cls) if "set_before_evaluation" not in f.metadata)
    return tuple(out)
