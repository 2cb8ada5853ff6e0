"""Drift engine: compare a current batch with a reference built once from the training rows.

The reference (:class:`DriftReference`) is computed once by :func:`build_reference` and stored as JSON;
:func:`drift_report` never needs the raw reference rows again. Per column it keeps what the tests need:

* numeric: counts, mean/std, min/max, the PSI decile edges with the reference bin counts and the
  distribution itself as weighted points ``(values, counts)``. With at most ``max_exact`` present values,
  or at most ``quantiles`` distinct values, the points are the exact sorted sample (value counts), so every
  statistic is exact. Otherwise the sorted sample is cut into ``quantiles`` blocks (equal-mass blocks,
  blocks of 1, 2, 4, … values at both ends, and the widest blocks halved, see :func:`_block_edges`), each
  stored as its mean and size. The Wasserstein and KS distances between the raw reference and what the
  tests compare with are computed at build time and stored: by the triangle inequality they bound the
  error of any statistic computed against the stored grid instead of the raw reference
  (``|W(cur, points) − W(cur, raw)| ≤ W(raw, points)``, likewise for KS). Measured with the default 2000
  blocks on 1M rows (docs/benchmarks/drift.md): stored bounds ≤ 8e-4 for the normed Wasserstein distance (< 1 %
  of its 0.1 threshold), actual errors ≤ 1.5e-4 on undrifted columns and ≤ 1e-6 on drifted ones (block
  means preserve the mean, so where the current quantile function does not cross the reference inside a
  block, the distance is exact); for the KS statistic, against the interpolated CDF, bounds ≈ 5e-5 on
  smooth columns (≈ 4e-4 with the step CDF, used where a point mass makes it the better one).
* categorical: counts per category (the ``max_categories`` most frequent; the rest pooled), missing count.

Tests (Evidently 0.7-compatible choice, see :class:`DriftOptions`): with a reference of at most 1000
present values, numeric columns use the two-sample KS test (asymptotic p-value), categorical columns a
chi-square test and binary columns (two distinct values) the two-proportion z-test, all at p < 0.05;
with a larger reference, numeric columns use the Wasserstein distance normed by the reference std and
categorical columns the Jensen–Shannon distance (natural log, as Evidently), both drifting at ≥ 0.1.
A numeric column with at most five distinct values (reference and current together) is tested like a
categorical one, as Evidently does. Each choice and threshold can be overridden per column.

Multiple testing: Evidently applies no correction, so a report over 28 undrifted columns tested by
p-value tests raises about 28 × 0.05 ≈ 1.4 false column alarms on average. Here Benjamini–Hochberg is on
by default: the p-values of the columns tested by a p-value test are adjusted together (distances are
not p-values and are left alone) and the adjusted p-value is compared with the threshold. Adjusted
p-values are never smaller than the raw ones, so BH can only remove column alarms, never add one.
Because p-value tests are the defaults only for references of at most 1000 rows, BH changes nothing with
a larger reference unless tests are overridden. ``DriftOptions.evidently()`` (BH off, Evidently's
one-sample chi-square, fixed distance thresholds, asymptotic p-values) reproduces Evidently's verdicts.

False alarms at every size (calibration). A fixed distance threshold ignores sample size: the
Jensen–Shannon distance between two samples of one 105-category Zipf distribution (20,000 reference
rows, batches of 1,000) is above 0.1 by sampling noise alone, so Evidently's rule said "drifted" in
100 % of undrifted batches, while at 1M rows a far smaller shift is already certain. Here a distance
drifts only when it reaches its threshold (the effect size that matters) AND exceeds the
``1 − distance_alpha`` quantile of its null distribution at the current sample size, so its
false-alarm rate is at most ``distance_alpha`` (5 %) at every size. The null distribution is Monte
Carlo (``null_draws`` draws, seeded per column, see :func:`critical_value`):

* Jensen–Shannon, and every statistic on counts (PSI, the histogram form of JS): the permutation
  distribution, i.e. the pooled counts of reference and batch split at random into ``N`` and ``M``
  rows (:func:`_split_draws`; Efron & Tibshirani, *An Introduction to the Bootstrap*, ch. 15). Under no
  drift the observed split is one of these equally likely splits, so the test is exact at any size and
  cardinality, with rare or unseen categories (the parametric bootstrap from the pooled shares is not:
  it cannot produce a category seen once, and alarmed on 100 % of undrifted 1,000-category columns).
* Wasserstein: ``N`` and ``M`` values drawn from the stored reference points (a parametric bootstrap
  from the reference distribution, :func:`_wasserstein_null`); the raw reference rows are not stored.

Draws are made lazily (Besag & Clifford's sequential idea, :func:`_null_exceeds`): a statistic below
its threshold needs none, and an undrifted one usually settles after 50–100 draws. Chi-square and z
keep their asymptotic p-values where every expected count is at least ``min_expected_count`` (5,
Cochran's rule) and use the permutation p-value below it (R's ``chisq.test(simulate.p.value = TRUE)``,
drawn sequentially, :func:`sequential_p_value`); KS keeps its asymptotic p-value (conservative with ties).
Measured with ``mlops_assets_tests/test_drift_false_alarms.py`` (200 undrifted batches per column, a
fresh reference per batch, reference 1,000–50,000 rows, batches from ``min_rows`` = 500, 2–1,000
categories, continuous and heavily tied numeric columns): at most 18 alarms in 200 (9 %, the 5 % level
plus the binomial allowance) for every method and for the PSI flag.

Deviation from Evidently: Evidently's ``chisquare`` treats the reference proportions as the known truth
(a goodness-of-fit test of the current counts against them). The reference is itself a sample, so the
statistic is inflated by about ``1 + M/N`` (current rows / reference rows) under no drift: measured with
20 categories, 74 % of undrifted columns alarm at N = M = 1000 and all of them at N = 1000, M = 100k
(the two-sample test: 3–4 %). The default here is therefore the two-sample test of homogeneity (``chi2``, the
same statistic as ``scipy.stats.chi2_contingency(correction=False)``); ``chisquare`` remains available.

PSI is reported next to the test with its own verdict: the shares of the current rows in the reference
buckets (numeric: the 10 reference decile bins, the outer ones open-ended; categorical: one bucket per
reference category, ``__other__`` and ``__missing__``), floored at ``psi_epsilon``. Besides the usual
0.1 / 0.25 bands, PSI is compared with its critical value at the current size: the ``1 − psi_alpha``
quantile of its permutation distribution (above). The fixed bands ignore sample size (at N = M = 100 the
0.1 band flagged 85 % of undrifted numeric columns), and so does the asymptotic critical value
``(1/N + 1/M)·χ²_{1−α}(B−1)`` (:func:`psi_critical`, kept for reference) with sparse buckets: 39 % false
alarms on a 105-category Zipf column at N = 20,000, M = 1,000, and up to 100 % with 1,000 categories.

Missing values. The share of missing values of every column is compared with the reference's: a column
whose share rose by more than ``max_null_share_increase`` (the policy's, default 5 points) with a
one-sided Fisher exact p-value below ``null_share_alpha`` is drifted and listed in
``DataQuality.null_share_increases`` (:func:`null_share_test`). The tests above see present values only.

Fail-closed: a column whose current values are all missing (or absent, or an empty frame) while the
reference had values is reported drifted with a reason instead of a NaN statistic; an empty frame is a
dataset drift. A column missing in the reference and in the batch (0 % present before and now) is
unchanged: not drifted, with the reason ``no values on either side``.
"""

import hashlib
import heapq
import itertools
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
from scipy import special, stats

from mlops_assets.ml import json_codec
from mlops_assets.ml.policy import MonitoringPolicy
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.summaries import DriftSummary

ColumnKind = Literal["numeric", "categorical"]
NUMERIC: ColumnKind = "numeric"
CATEGORICAL: ColumnKind = "categorical"

KS = "ks"
WASSERSTEIN = "wasserstein"
JENSEN_SHANNON = "jensenshannon"
CHISQUARE = "chisquare"
CHI2 = "chi2"
Z = "z"
P_VALUE_TESTS: frozenset[str] = frozenset({KS, CHISQUARE, CHI2, Z})
DISTANCE_TESTS: frozenset[str] = frozenset({WASSERSTEIN, JENSEN_SHANNON})
TESTS: frozenset[str] = P_VALUE_TESTS | DISTANCE_TESTS
# Tests that compare value counts; on a numeric column they need the exact reference values.
DISCRETE_TESTS: frozenset[str] = frozenset({CHISQUARE, CHI2, Z})
DEFAULT_THRESHOLDS: Mapping[str, float] = {
    KS: 0.05,
    CHISQUARE: 0.05,
    CHI2: 0.05,
    Z: 0.05,
    WASSERSTEIN: 0.1,
    JENSEN_SHANNON: 0.1,
}

NO_VALUES = "no values"
MISSING_COLUMN = "missing column"
NO_REFERENCE_VALUES = "no reference values"
NO_VALUES_EITHER_SIDE = "no values on either side"
EMPTY_FRAME = "current frame has no rows"
OTHER_BUCKET = "__other__"
MISSING_BUCKET = "__missing__"
PSI_STABLE = "stable"
PSI_MODERATE = "moderate"
PSI_SIGNIFICANT = "significant"

REFERENCE_FORMAT = 1
_DECILES = np.linspace(0.1, 0.9, 9)
# Evidently picks the value-count form of its numeric Jensen–Shannon distance at most this many distinct
# reference values, and a Sturges histogram above.
_JS_VALUE_COUNT_MAX = 20
# How many unseen categories a report lists by name (all are counted).
_UNSEEN_LISTED = 20


# --------------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------------


def _enc(value: float | None) -> float | str | None:
    """A JSON-safe float: finite floats as numbers, ±inf and NaN as strings (so the round trip is lossless)."""
    if value is None:
        return None
    out = float(value)
    return out if math.isfinite(out) else str(out)


def _dec(value: Any) -> float | None:
    """Inverse of :func:`_enc`."""
    return None if value is None else float(value)


def _canonical_json(data: Any) -> str:
    return json_codec.dumps(data, sort_keys=True, separators=(",", ":"))


# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftOptions:
    """How columns are tested and when a column or the data set counts as drifted.

    Attributes:
        small_reference_rows: A column whose reference has at most this many present values is tested with
            p-value tests, otherwise with distances (Evidently: 1000).
        numeric_test_small: Numeric test for a small reference (``ks``).
        categorical_test_small: Categorical test for a small reference: ``chi2`` (two-sample, default) or
            ``chisquare`` (Evidently's one-sample goodness of fit, see the module docstring).
        binary_test_small: Test for a small reference when reference and current together hold at most two
            distinct values (``z``).
        numeric_test_large: Numeric test for a large reference (``wasserstein``, normed by the reference std).
        categorical_test_large: Categorical test for a large reference (``jensenshannon``).
        discrete_max_values: A numeric column with at most this many distinct values (reference and current
            together) is tested as categorical (Evidently: 5).
        column_tests: Column name → test name, overriding the choice above.
        thresholds: Column name → threshold, overriding ``test_thresholds``.
        test_thresholds: Test name → threshold: drift when p < threshold (p-value tests) or when the distance
            ≥ threshold (distances).
        benjamini_hochberg: Adjust the p-values of the feature columns together (Benjamini–Hochberg) before
            comparing them with the thresholds. Evidently does not; turn off to match it.
        drift_share: The data set drifts when the share of drifted feature columns is ≥ this.
        psi_alpha: Significance level of the PSI critical value.
        psi_bands: PSI band limits: below the first ``stable``, below the second ``moderate``, else
            ``significant``.
        psi_epsilon: Floor of the bucket shares in PSI (so that an empty bucket gives a finite value).
        js_base: Logarithm base of the Jensen–Shannon distance; None is the natural log, as Evidently.
        wasserstein_min_std: Floor of the reference std that norms the Wasserstein distance (Evidently: 0.001).
        score_column: The model score column: reported as ``prediction_drift`` (tested as numeric), not
            counted among the feature columns, the drift share or the BH family.
        distance_alpha: A distance (Wasserstein, Jensen–Shannon) drifts only when it reaches its threshold
            AND exceeds the ``1 − distance_alpha`` quantile of its null distribution at the current sample
            size (Monte Carlo, see the module docstring), so that its false-alarm rate is at most this at
            every size. None: the fixed threshold alone (Evidently's rule, size-dependent false alarms).
        null_draws: Monte Carlo draws of each null distribution (PSI critical value, distance critical
            value, p-values of sparse count tests). At least 99.
        null_seed: Seed of those draws (each column, statistic and batch gets its own stream derived from it,
            the column name and the batch's values, so a report is reproducible and does not depend on
            column order).
        min_expected_count: Chi-square and z-tests use their asymptotic p-value only when every expected
            cell count is at least this (Cochran's rule); otherwise a Monte Carlo p-value. 0: always asymptotic.
        max_null_share_increase: A column also drifts, and is a data-quality finding, when its share of
            missing values rose by more than this (absolute, e.g. 0.05 = 5 points) over the reference AND
            the rise is significant (one-sided Fisher exact test at ``null_share_alpha``). 1.0 turns it off.
        null_share_alpha: Significance level of that test.
    """

    small_reference_rows: int = 1000
    numeric_test_small: str = KS
    categorical_test_small: str = CHI2
    binary_test_small: str = Z
    numeric_test_large: str = WASSERSTEIN
    categorical_test_large: str = JENSEN_SHANNON
    discrete_max_values: int = 5
    column_tests: Mapping[str, str] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    test_thresholds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    benjamini_hochberg: bool = True
    drift_share: float = 0.5
    psi_alpha: float = 0.05
    psi_bands: tuple[float, float] = (0.1, 0.25)
    psi_epsilon: float = 1e-4
    js_base: float | None = None
    wasserstein_min_std: float = 0.001
    score_column: str | None = None
    distance_alpha: float | None = 0.05
    null_draws: int = 500
    null_seed: int = 0
    min_expected_count: float = 5.0
    max_null_share_increase: float = 0.05
    null_share_alpha: float = 0.05

    def __post_init__(self) -> None:
        chosen = [
            self.numeric_test_small,
            self.categorical_test_small,
            self.binary_test_small,
            self.numeric_test_large,
            self.categorical_test_large,
            *self.column_tests.values(),
        ]
        unknown = sorted({t for t in chosen if t not in TESTS} | {t for t in self.test_thresholds if t not in TESTS})
        if unknown:
            raise ValueError(f"unknown drift tests {unknown}; known: {sorted(TESTS)}")
        missing = sorted(set(chosen) - set(self.test_thresholds))
        if missing:
            raise ValueError(f"test_thresholds lacks thresholds for tests {missing}")
        if not 0.0 < self.drift_share <= 1.0:
            raise ValueError(f"drift_share must be in (0, 1], got {self.drift_share}")
        if not 0.0 < self.psi_alpha < 1.0:
            raise ValueError(f"psi_alpha must be in (0, 1), got {self.psi_alpha}")
        if not 0.0 < self.psi_epsilon < 1.0:
            raise ValueError(f"psi_epsilon must be in (0, 1), got {self.psi_epsilon}")
        if len(self.psi_bands) != 2 or not 0.0 <= self.psi_bands[0] <= self.psi_bands[1]:
            raise ValueError(f"psi_bands must be two increasing non-negative limits, got {self.psi_bands}")
        if self.small_reference_rows < 0 or self.discrete_max_values < 0:
            raise ValueError("small_reference_rows and discrete_max_values must be non-negative")
        if self.distance_alpha is not None and not 0.0 < self.distance_alpha < 1.0:
            raise ValueError(f"distance_alpha must be in (0, 1) or None, got {self.distance_alpha}")
        if self.null_draws < 99:
            raise ValueError(f"null_draws must be >= 99, got {self.null_draws}")
        if self.min_expected_count < 0:
            raise ValueError(f"min_expected_count must be >= 0, got {self.min_expected_count}")
        if not 0.0 <= self.max_null_share_increase <= 1.0:
            raise ValueError(f"max_null_share_increase must be in [0, 1], got {self.max_null_share_increase}")
        if not 0.0 < self.null_share_alpha < 1.0:
            raise ValueError(f"null_share_alpha must be in (0, 1), got {self.null_share_alpha}")

    @classmethod
    def evidently(cls, **overrides: Any) -> "DriftOptions":
        """Options that reproduce Evidently 0.7's DataDriftPreset verdicts.

        Its one-sample chi-square, no BH, fixed distance thresholds (no null calibration), asymptotic
        p-values at any expected count, and no missing-share rule. Not calibrated: its false-alarm rate
        depends on the sample size (see the module docstring); use it to compare with Evidently only.
        """
        base: dict[str, Any] = {
            "categorical_test_small": CHISQUARE,
            "benjamini_hochberg": False,
            "distance_alpha": None,
            "min_expected_count": 0.0,
            "max_null_share_increase": 1.0,
        }
        return cls(**{**base, **overrides})

    def threshold_for(self, column: str, test: str) -> float:
        """The threshold of ``column`` under ``test`` (the per-column override, else the test's)."""
        return float(self.thresholds.get(column, self.test_thresholds[test]))

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON-safe plain data (the inverse of :meth:`from_dict`)."""
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("column_tests", "thresholds", "test_thresholds"):
            data[name] = dict(data[name])
        data["psi_bands"] = list(self.psi_bands)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DriftOptions":
        """Rebuild options from :meth:`to_dict` output."""
        values = dict(data)
        if "psi_bands" in values:
            low, high = values["psi_bands"]
            values["psi_bands"] = (float(low), float(high))
        return cls(**values)


# --------------------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NumericReference:
    """The stored reference of one numeric column.

    Attributes:
        name: Column name.
        n: Present (finite) values.
        n_missing: Missing values (NaN/None).
        n_infinite: ±inf values (excluded from the statistics, as Evidently does).
        mean: Mean of the present values (None when there are none).
        std: Population std (ddof=0) of the present values.
        min: Smallest present value.
        max: Largest present value.
        values: Strictly increasing support points of the stored distribution.
        counts: Reference values represented by each point (sums to ``n``).
        exact: True when ``values``/``counts`` are the exact value counts of the sample.
        grid_wasserstein: Wasserstein distance (column units) between the raw sample and the points; 0 if exact.
        grid_ks: KS distance between the raw sample and what the KS test compares with (the points, or their
            interpolated CDF when ``ks_linear``); 0 if exact.
        ks_linear: The KS test compares with the CDF interpolated linearly through the points (at each point
            the middle of its mass) rather than with the points' step CDF; chosen at build time when its
            bound is smaller (it is ~10× smaller for smooth columns, far larger at a point mass).
        psi_edges: Reference deciles (deduplicated): the inner edges of the PSI bins, right-closed.
        psi_counts: Reference values per PSI bin (``len(psi_edges) + 1`` bins).
        dtype: The pandas dtype the column had.
        range_min: Lower bound from the dataset spec, for the out-of-range check.
        range_max: Upper bound from the dataset spec.
    """

    name: str
    n: int
    n_missing: int
    n_infinite: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    values: tuple[float, ...]
    counts: tuple[int, ...]
    exact: bool
    grid_wasserstein: float
    grid_ks: float
    psi_edges: tuple[float, ...]
    psi_counts: tuple[int, ...]
    dtype: str
    range_min: float | None = None
    range_max: float | None = None
    ks_linear: bool = False

    kind: ColumnKind = field(default=NUMERIC, init=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": NUMERIC,
            "n": self.n,
            "n_missing": self.n_missing,
            "n_infinite": self.n_infinite,
            "mean": _enc(self.mean),
            "std": _enc(self.std),
            "min": _enc(self.min),
            "max": _enc(self.max),
            "values": list(self.values),
            "counts": list(self.counts),
            "exact": self.exact,
            "grid_wasserstein": self.grid_wasserstein,
            "grid_ks": self.grid_ks,
            "psi_edges": list(self.psi_edges),
            "psi_counts": list(self.psi_counts),
            "dtype": self.dtype,
            "range_min": _enc(self.range_min),
            "range_max": _enc(self.range_max),
            "ks_linear": self.ks_linear,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NumericReference":
        return cls(
            name=str(data["name"]),
            n=int(data["n"]),
            n_missing=int(data["n_missing"]),
            n_infinite=int(data["n_infinite"]),
            mean=_dec(data["mean"]),
            std=_dec(data["std"]),
            min=_dec(data["min"]),
            max=_dec(data["max"]),
            values=tuple(float(v) for v in data["values"]),
            counts=tuple(int(c) for c in data["counts"]),
            exact=bool(data["exact"]),
            grid_wasserstein=float(data["grid_wasserstein"]),
            grid_ks=float(data["grid_ks"]),
            psi_edges=tuple(float(e) for e in data["psi_edges"]),
            psi_counts=tuple(int(c) for c in data["psi_counts"]),
            dtype=str(data["dtype"]),
            range_min=_dec(data.get("range_min")),
            range_max=_dec(data.get("range_max")),
            ks_linear=bool(data.get("ks_linear", False)),
        )


@dataclass(frozen=True)
class CategoricalReference:
    """The stored reference of one categorical column.

    Attributes:
        name: Column name.
        n: Present (non-missing) values.
        n_missing: Missing values.
        categories: Categories (as strings) by count, descending, then by name.
        counts: Count per category.
        other_count: Present values of the categories beyond ``max_categories``, pooled.
        dtype: The pandas dtype the column had.
    """

    name: str
    n: int
    n_missing: int
    categories: tuple[str, ...]
    counts: tuple[int, ...]
    other_count: int
    dtype: str

    kind: ColumnKind = field(default=CATEGORICAL, init=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": CATEGORICAL,
            "n": self.n,
            "n_missing": self.n_missing,
            "categories": list(self.categories),
            "counts": list(self.counts),
            "other_count": self.other_count,
            "dtype": self.dtype,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CategoricalReference":
        return cls(
            name=str(data["name"]),
            n=int(data["n"]),
            n_missing=int(data["n_missing"]),
            categories=tuple(str(c) for c in data["categories"]),
            counts=tuple(int(c) for c in data["counts"]),
            other_count=int(data["other_count"]),
            dtype=str(data["dtype"]),
        )


ColumnReference = NumericReference | CategoricalReference


@dataclass(frozen=True)
class DriftReference:
    """The reference distribution of every monitored column, built once by :func:`build_reference`.

    Attributes:
        n_rows: Rows of the reference frame.
        columns: One reference per column, in the order given to :func:`build_reference`.
        max_exact: Numeric columns with at most this many present values store the exact sample.
        quantiles: Equal-mass blocks of the stored grid of larger numeric columns.
    """

    n_rows: int
    columns: tuple[ColumnReference, ...]
    max_exact: int
    quantiles: int

    def column(self, name: str) -> ColumnReference:
        """The reference of column ``name`` (KeyError if it is not monitored)."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"column {name!r} is not in the drift reference (columns: {list(self.column_names)})")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def to_dict(self) -> dict[str, Any]:
        """The reference as JSON-safe plain data (the inverse of :meth:`from_dict`)."""
        return {
            "format": REFERENCE_FORMAT,
            "n_rows": self.n_rows,
            "max_exact": self.max_exact,
            "quantiles": self.quantiles,
            "columns": [c.to_dict() for c in self.columns],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DriftReference":
        """Rebuild a reference from :meth:`to_dict` output (e.g. after a JSON round trip)."""
        if data.get("format") != REFERENCE_FORMAT:
            raise ValueError(f"unsupported drift reference format {data.get('format')!r}; expected {REFERENCE_FORMAT}")
        columns: list[ColumnReference] = []
        for col in data["columns"]:
            if col["kind"] == NUMERIC:
                columns.append(NumericReference.from_dict(col))
            elif col["kind"] == CATEGORICAL:
                columns.append(CategoricalReference.from_dict(col))
            else:
                raise ValueError(f"drift reference column {col.get('name')!r} has unknown kind {col['kind']!r}")
        return cls(
            n_rows=int(data["n_rows"]),
            columns=tuple(columns),
            max_exact=int(data["max_exact"]),
            quantiles=int(data["quantiles"]),
        )

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace, no NaN): the input of :attr:`profile_id`."""
        return _canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "DriftReference":
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json_codec.loads(text))

    @cached_property
    def profile_id(self) -> str:
        """First 16 hex digits of the sha256 of the canonical JSON: equal content, equal id.

        Cached: the reference is immutable and its JSON is large (tens of kB per numeric column).
        """
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def _dtype_family(dtype: Any) -> str:
    """Coarse dtype family for the dtype-change check: ``bool``, ``numeric``, ``datetime`` or ``text``."""
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    # str, object and category columns: category and text are interchangeable (a Parquet round trip may
    # turn one into the other), so they share a family.
    return "text"


def _numeric_family(family: str) -> bool:
    return family in ("bool", "numeric")


def _as_float(series: pd.Series) -> tuple[np.ndarray, int]:
    """Float64 values (NaN for missing) and the number of present values that are not numbers.

    A numeric column that arrives as text is parsed; what does not parse counts as missing for the
    statistics and is reported by the caller.
    """
    if _numeric_family(_dtype_family(series.dtype)):
        if series.dtype == np.float64:
            # Zero-copy: the caller sorts into a new array anyway.
            return series.to_numpy(), 0
        return series.to_numpy(dtype=np.float64, na_value=np.nan), 0
    parsed = pd.to_numeric(series.astype(object), errors="coerce")
    values = np.asarray(parsed.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    unparseable = int(np.count_nonzero(np.isnan(values))) - int(series.isna().sum())
    return values, max(unparseable, 0)


@dataclass(frozen=True)
class _Sorted:
    """One numeric column sorted once: everything else is searches into it."""

    non_nan: np.ndarray  # sorted, ±inf at the ends
    finite: np.ndarray  # view of the finite part
    n_missing: int
    n_infinite: int


def _sort_numeric(values: np.ndarray) -> _Sorted:
    xs = np.sort(values)
    # -0.0 == 0.0 but serialises and hashes differently: fold it into +0.0 (in place, on the sorted copy) so
    # the stored reference, its profile id and the Monte Carlo streams do not depend on row order.
    xs += 0.0
    # NaN sorts last and searchsorted uses the same order, so the split is a binary search, not a pass.
    n_non_nan = int(np.searchsorted(xs, np.nan, side="left"))
    non_nan = xs[:n_non_nan]
    lo = int(np.searchsorted(non_nan, -np.inf, side="right"))
    hi = int(np.searchsorted(non_nan, np.inf, side="left"))
    return _Sorted(non_nan, non_nan[lo:hi], len(xs) - n_non_nan, lo + (n_non_nan - hi))


def _value_counts_sorted(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and their counts of a sorted array (one pass, no re-sort)."""
    if xs.size == 0:
        return xs[:0], np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], xs[1:] != xs[:-1])))
    return xs[starts], np.diff(np.append(starts, xs.size)).astype(np.int64)


def _block_edges(xs: np.ndarray, quantiles: int) -> np.ndarray:
    """Rank boundaries of the ``quantiles`` stored blocks of the sorted sample ``xs``.

    Three quarters are equal-mass blocks, plus blocks of 1, 2, 4, … values at both ends (the extremes
    dominate the Wasserstein error of heavy tails). The last quarter repeatedly halves the block with the
    largest ``(max − min)·size``, an upper bound of its contribution to the Wasserstein error: measured on
    1M rows this cut the stored bound 2–20× (most for heavy tails) against equal-mass blocks only, at the
    price of a ~30 % larger KS bound.
    """
    n = int(xs.size)
    uniform = max((3 * quantiles) // 4, 1)
    parts = [np.round(np.linspace(0, n, uniform + 1)).astype(np.int64)]
    tail = 1
    while tail < n / uniform:
        parts.append(np.array([tail, n - tail], dtype=np.int64))
        tail *= 2
    edges = np.unique(np.concatenate(parts))
    heap = [(-float(xs[b - 1] - xs[a]) * (b - a), int(a), int(b)) for a, b in itertools.pairwise(edges.tolist())]
    heapq.heapify(heap)
    cuts = edges.tolist()
    for _ in range(quantiles - (len(edges) - 1)):
        cost, a, b = heapq.heappop(heap)
        if cost == 0.0:  # every block left is a single value: nothing to gain
            break
        mid = (a + b) // 2
        cuts.append(mid)
        heapq.heappush(heap, (-float(xs[mid - 1] - xs[a]) * (mid - a), a, mid))
        heapq.heappush(heap, (-float(xs[b - 1] - xs[mid]) * (b - mid), mid, b))
    return np.unique(np.asarray(cuts, dtype=np.int64))


def _compress(xs: np.ndarray, quantiles: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted points (block means, block sizes) summarising the sorted sample ``xs``."""
    edges = _block_edges(xs, quantiles)
    sizes = np.diff(edges)
    means = np.add.reduceat(xs, edges[:-1]) / sizes
    # Guard against rounding pushing a mean outside its block, then merge equal neighbours (heavy ties)
    # so that the points are strictly increasing, which the KS kernel relies on.
    means = np.maximum.accumulate(np.clip(means, xs[edges[:-1]], xs[edges[1:] - 1]))
    new = np.concatenate(([True], means[1:] > means[:-1]))
    group = np.cumsum(new) - 1
    counts = np.bincount(group, weights=sizes).astype(np.int64)
    return means[new], counts


def _numeric_reference(
    name: str, series: pd.Series, max_exact: int, quantiles: int, bounds: tuple[float | None, float | None]
) -> NumericReference:
    values, _ = _as_float(series)
    side = _sort_numeric(values)
    xs = side.finite
    n = int(xs.size)
    if n == 0:
        return NumericReference(
            name=name,
            n=0,
            n_missing=side.n_missing,
            n_infinite=side.n_infinite,
            mean=None,
            std=None,
            min=None,
            max=None,
            values=(),
            counts=(),
            exact=True,
            grid_wasserstein=0.0,
            grid_ks=0.0,
            psi_edges=(),
            psi_counts=(0,),
            dtype=str(series.dtype),
            range_min=bounds[0],
            range_max=bounds[1],
        )
    distinct, distinct_counts = _value_counts_sorted(xs)
    if n <= max_exact or distinct.size <= quantiles:
        points, counts, exact, ks_linear = distinct, distinct_counts, True, False
        grid_w = grid_ks = 0.0
    else:
        points, counts = _compress(xs, quantiles)
        exact = False
        mean = float(np.mean(xs))
        grid_w = _wasserstein_points(xs, points, counts, mean)
        step_ks = _ks_points(xs, points, counts)
        linear_ks = _ks_linear(xs, points, counts, float(xs[0]), float(xs[-1]))
        ks_linear = linear_ks < step_ks
        grid_ks = min(step_ks, linear_ks)
    edges = np.unique(np.quantile(xs, _DECILES))
    psi_counts = np.diff(np.concatenate(([0], np.searchsorted(xs, edges, side="right"), [n])))
    return NumericReference(
        name=name,
        n=n,
        n_missing=side.n_missing,
        n_infinite=side.n_infinite,
        mean=float(np.mean(xs)),
        std=float(np.std(xs)),
        min=float(xs[0]),
        max=float(xs[-1]),
        values=tuple(float(v) for v in points),
        counts=tuple(int(c) for c in counts),
        exact=exact,
        grid_wasserstein=float(grid_w),
        grid_ks=float(grid_ks),
        psi_edges=tuple(float(e) for e in edges),
        psi_counts=tuple(int(c) for c in psi_counts),
        dtype=str(series.dtype),
        range_min=bounds[0],
        range_max=bounds[1],
        ks_linear=ks_linear,
    )


def _category_counts(series: pd.Series) -> tuple[dict[str, int], int]:
    """Counts per category (labels as strings) and the missing count, by counting integer codes."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = np.asarray(series.cat.codes.to_numpy())
        labels: Any = series.cat.categories
    else:
        codes, labels = pd.factorize(series, use_na_sentinel=True)
    counts = np.bincount(codes.astype(np.intp) + 1, minlength=len(labels) + 1)
    out: dict[str, int] = {}
    for label, count in zip(labels, counts[1:].tolist(), strict=True):
        if count:
            key = str(label)
            # Distinct values can print alike (1 and "1"); they are one category once stored as text.
            out[key] = out.get(key, 0) + int(count)
    return out, int(counts[0])


def _categorical_reference(name: str, series: pd.Series, max_categories: int) -> CategoricalReference:
    counts, n_missing = _category_counts(series)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = ranked[:max_categories]
    return CategoricalReference(
        name=name,
        n=sum(counts.values()),
        n_missing=n_missing,
        categories=tuple(k for k, _ in kept),
        counts=tuple(v for _, v in kept),
        other_count=sum(v for _, v in ranked[max_categories:]),
        dtype=str(series.dtype),
    )


def build_reference(
    df: pd.DataFrame,
    columns: Mapping[str, ColumnKind],
    *,
    max_exact: int = 1000,
    quantiles: int = 2000,
    ranges: Mapping[str, tuple[float | None, float | None]] | None = None,
    max_categories: int = 1000,
) -> DriftReference:
    """Build the stored reference once from the reference rows (e.g. the training rows).

    Args:
        df: The reference frame.
        columns: Column name → ``"numeric"`` or ``"categorical"``, in report order. Include the score
            column (numeric) to monitor prediction drift.
        max_exact: Numeric columns with at most this many present values keep the exact sample, so that
            the p-value tests chosen for small references are exact.
        quantiles: Equal-mass blocks of the grid stored for larger numeric columns (more blocks: smaller
            error bound, larger reference). A column with at most this many distinct values is stored exactly.
        ranges: Column name → (min, max) allowed by the dataset spec, checked by the report's data quality.
        max_categories: Categories kept per categorical column; the rarer ones are pooled.

    Returns:
        The reference.

    Raises:
        ValueError: no columns, an unknown kind, a column missing from ``df``, or bad sizes.
    """
    if not columns:
        raise ValueError("build_reference needs at least one column")
    if max_exact < 0 or quantiles < 10 or max_categories < 1:
        raise ValueError("max_exact must be >= 0, quantiles >= 10 and max_categories >= 1")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"reference frame lacks columns {missing}")
    bad = {c: k for c, k in columns.items() if k not in (NUMERIC, CATEGORICAL)}
    if bad:
        raise ValueError(f"column kinds must be 'numeric' or 'categorical', got {bad}")
    ranges = ranges or {}
    refs: list[ColumnReference] = []
    for name, kind in columns.items():
        series = df[name]
        if kind == NUMERIC:
            bounds = ranges.get(name, (None, None))
            refs.append(_numeric_reference(name, series, max_exact, quantiles, bounds))
        else:
            refs.append(_categorical_reference(name, series, max_categories))
    return DriftReference(n_rows=len(df), columns=tuple(refs), max_exact=max_exact, quantiles=quantiles)


def spec_columns(spec: DatasetSpec, score_column: str | None = None) -> dict[str, ColumnKind]:
    """The monitored columns of a dataset spec: its features by kind, then the score column if given."""
    out: dict[str, ColumnKind] = {}
    for name in spec.features:
        out[name] = NUMERIC if spec.column(name).is_numeric else CATEGORICAL
    if score_column is not None:
        out[score_column] = NUMERIC
    return out


def spec_ranges(spec: DatasetSpec) -> dict[str, tuple[float | None, float | None]]:
    """The (min, max) of the spec's numeric features that declare a bound."""
    return {
        c.name: (c.min, c.max)
        for c in spec.columns
        if c.name in spec.features and c.is_numeric and (c.min is not None or c.max is not None)
    }


# --------------------------------------------------------------------------------------------------
# Kernels: the current column sorted once; the reference as weighted points
# --------------------------------------------------------------------------------------------------


def _wasserstein_points(xs: np.ndarray, values: np.ndarray, counts: np.ndarray, center: float) -> float:
    """Exact 1-Wasserstein distance between the sample ``xs`` (sorted) and weighted points.

    Integrates ``|Q_cur(u) − Q_ref(u)|`` over ``u`` in [0, 1]. Within the ``u``-range of one reference
    point ``v`` the sorted current values cross ``v`` once, at rank ``searchsorted(xs, v)``, so the integral
    of the absolute value splits into two signed integrals, each given by prefix sums of ``xs``. Only the
    O(points) prefix sums at the needed ranks are formed (``np.add.reduceat``): no pass over the current
    values beyond one read. Positions are integers in units of ``1/(M·n)`` so the cuts are exact; the sums
    are taken of ``xs − center`` per block so a large common offset costs no precision.

    Args:
        xs: Sorted finite current values (non-empty).
        values: Strictly increasing reference points.
        counts: Positive integer weight of each point.
        center: A value near the data (the reference mean).

    Returns:
        The distance, in the units of the column.
    """
    m = int(xs.size)
    cum = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))
    n = int(cum[-1])
    crossing = np.searchsorted(xs, values, side="left").astype(np.int64)
    start, stop = cum[:-1] * m, cum[1:] * m
    cut = np.clip(crossing * n, start, stop)
    positions = np.concatenate((start, stop, cut))
    ranks = positions // n
    needed, where = np.unique(ranks, return_inverse=True)
    inside = needed[needed < m]
    block_ends = np.append(inside[1:], m)
    block_sums = np.add.reduceat(xs, inside) - center * (block_ends - inside) if inside.size else np.zeros(0)
    head = float(np.sum(xs[: needed[0]]) - center * needed[0]) if needed[0] > 0 else 0.0
    prefix = np.concatenate(([head], head + np.cumsum(block_sums)))[: needed.size][where]
    fraction = (positions - ranks * n) / (m * float(n))
    # H(u) = ∫_0^u (Q_cur − center): prefix of whole cells plus the partial cell.
    integral = prefix / m + fraction * (xs[np.minimum(ranks, m - 1)] - center)
    k = values.size
    h_start, h_stop, h_cut = integral[:k], integral[k : 2 * k], integral[2 * k :]
    level = values - center
    scale = float(m) * n
    below = level * ((cut - start) / scale) - (h_cut - h_start)
    above = (h_stop - h_cut) - level * ((stop - cut) / scale)
    return float(max(np.sum(below + above), 0.0))


def _ks_points(xs: np.ndarray, values: np.ndarray, counts: np.ndarray) -> float:
    """Exact two-sample KS statistic between the sample ``xs`` (sorted) and weighted points.

    Between two reference points the reference CDF is flat and the current CDF only rises, so the
    supremum is reached at the ends: the current CDF just at and just below each reference point,
    found by two binary searches per point.
    """
    m = xs.size
    cdf_ref = np.cumsum(counts) / np.sum(counts)
    before_ref = np.concatenate(([0.0], cdf_ref[:-1]))
    at = np.searchsorted(xs, values, side="right") / m
    below = np.searchsorted(xs, values, side="left") / m
    return float(max(np.max(np.abs(at - cdf_ref)), np.max(np.abs(below - before_ref))))


def _ks_linear(xs: np.ndarray, values: np.ndarray, counts: np.ndarray, low: float, high: float) -> float:
    """Exact KS distance between the sample ``xs`` (sorted) and the CDF interpolated through weighted points.

    The interpolated CDF goes through ``(low, 0)``, ``(v_j, middle of point j's mass)`` and ``(high, 1)``,
    linearly in between. Knots may coincide (a point at the minimum): the CDF then jumps there and both
    sides of the jump are kept. Between two current values the current CDF is flat and the interpolated
    one monotone, so the supremum is at the current values: their CDF just below against the left limit,
    at them against the right limit. One binary search per current value: used only for KS on a grid.
    """
    total = float(np.sum(counts))
    before = np.cumsum(counts) - counts
    knot_x = np.concatenate(([low], values, [high]))
    knot_p = np.concatenate(([0.0], (before + counts / 2.0) / total, [1.0]))
    grid, first = np.unique(knot_x, return_index=True)
    last = np.append(first[1:] - 1, knot_x.size - 1)
    left_p, right_p = knot_p[first], knot_p[last]
    m = xs.size
    seg = np.searchsorted(grid, xs, side="right") - 1
    if grid.size > 1:
        start = np.clip(seg, 0, grid.size - 2)
        width = grid[start + 1] - grid[start]
        frac = np.clip((xs - grid[start]) / width, 0.0, 1.0)
        inside = right_p[start] + frac * (left_p[start + 1] - right_p[start])
    else:
        inside = np.zeros(m)
    hit = seg >= 0
    on_knot = hit & (xs == grid[np.maximum(seg, 0)])
    left = np.where(on_knot, left_p[np.maximum(seg, 0)], inside)
    right = np.where(on_knot, right_p[np.maximum(seg, 0)], inside)
    left = np.where(hit, np.where(xs > grid[-1], 1.0, left), 0.0)
    right = np.where(hit, np.where(xs > grid[-1], 1.0, right), 0.0)
    ranks = np.arange(m) / m
    return float(max(np.max(np.abs(ranks - left)), np.max(np.abs(ranks + 1.0 / m - right))))


def ks_pvalue(statistic: float, n_reference: int, n_current: int) -> float:
    """Asymptotic two-sided KS p-value, as ``scipy.stats.ks_2samp(method="asymp")``.

    At 1M rows the exact p-value gave the same verdicts and is much slower.
    """
    effective = max(round(n_reference * n_current / (n_reference + n_current)), 1)
    return float(np.clip(stats.kstwo.sf(statistic, effective), 0.0, 1.0))


def psi_critical(n_reference: int, n_current: int, n_buckets: int, alpha: float = 0.05) -> float:
    """Asymptotic PSI critical value ``(1/N + 1/M)·χ²_{1−α}(B−1)`` (not used by the report).

    Under no drift PSI (a symmetrised KL divergence) is approximately ``(1/N + 1/M)·χ²(B−1)``
    distributed when every bucket is well filled; with sparse buckets it is far off (see the module
    docstring), so the report uses the permutation critical value instead.

    Args:
        n_reference: Reference values binned (N).
        n_current: Current values binned (M).
        n_buckets: Buckets that hold reference values (B); with one bucket any PSI > 0 is a change.
        alpha: Significance level.
    """
    if n_buckets <= 1:
        return 0.0
    return float((1.0 / n_reference + 1.0 / n_current) * stats.chi2.ppf(1.0 - alpha, n_buckets - 1))


def psi(reference_counts: np.ndarray, current_counts: np.ndarray, epsilon: float = 1e-4) -> float:
    """Population stability index of two bucket-count vectors, with shares floored at ``epsilon``."""
    ref = np.asarray(reference_counts, dtype=np.float64)[None, :]
    cur = np.asarray(current_counts, dtype=np.float64)[None, :]
    return float(_psi_rows(ref, cur, epsilon)[0])


def psi_band(value: float, bands: tuple[float, float] = (0.1, 0.25)) -> str:
    """``stable`` below the first limit, ``moderate`` below the second, else ``significant``."""
    if value < bands[0]:
        return PSI_STABLE
    return PSI_MODERATE if value < bands[1] else PSI_SIGNIFICANT


# --------------------------------------------------------------------------------------------------
# Null distributions at the current sample size (Monte Carlo)
# --------------------------------------------------------------------------------------------------

ASYMPTOTIC = "asymptotic"
MONTE_CARLO = "monte carlo"
# Relative tolerance of "statistic > critical value" and "null draw ≥ statistic": the observed statistic and
# the draws are computed by the same code, so equal counts give equal values; this only guards rounding.
_TIE = 1e-9


def _rng(options: DriftOptions, column: str, purpose: str, batch: np.ndarray) -> np.random.Generator:
    """The random stream of one column, statistic and batch: reproducible, independent of column order.

    ``batch`` is a summary of the current values (counts, or a few order statistics): the stream is a
    function of the data compared, so the same report is reproduced exactly, while different batches get
    unrelated draws. With one stream for every batch, all batches would share the same Monte Carlo error of
    the critical value (its rate given the draws scatters around α with sd ≈ √(α(1−α)/B), 1 % at B = 500;
    measured 7–8.7 % PSI alarms with one stream against 4.4–5.8 % with a stream per batch).
    """
    key = zlib.crc32(
        np.ascontiguousarray(batch, dtype=np.float64).tobytes(), zlib.crc32(f"{column}\0{purpose}".encode())
    )
    return np.random.default_rng([options.null_seed, key])


def critical_value(null: np.ndarray, alpha: float) -> float:
    """The Monte Carlo critical value of a statistic from ``B`` draws of its null distribution.

    The order statistic ``X_(k)`` with ``k = ⌈(B + 1)(1 − α)⌉``: a statistic exchangeable with the draws
    exceeds it with probability ``(B + 1 − k)/(B + 1) ≤ α`` (the rank argument of Monte Carlo tests:
    Barnard 1963; Davison & Hinkley, *Bootstrap Methods and their Application*, 1997, ch. 4). Infinite
    when ``B`` is too small for ``α`` (never exceeded).
    """
    draws = int(null.size)
    k = math.ceil((draws + 1) * (1.0 - alpha))
    if k > draws:
        return math.inf
    return float(np.partition(null, k - 1)[k - 1])


def sequential_p_value(
    statistic: float, draws: int, null: Callable[[int], np.ndarray], hits: int = 20, first: int = 50
) -> float:
    """Besag & Clifford's sequential Monte Carlo p-value (Biometrika 78, 1991, 301–304).

    Draws from the null (in doubling chunks) until ``hits`` of them reach the statistic or ``draws`` are
    made: ``hits / ℓ`` when the ``hits``-th one is draw ``ℓ``, else ``(1 + #{draws ≥ statistic})/(draws + 1)``.
    Valid like the fixed-size Monte Carlo p-value, and an undrifted column stops after about ``2·hits``
    draws instead of ``draws``.
    """
    floor = statistic - _TIE * max(abs(statistic), 1.0)
    made = reach = 0
    size = min(first, draws)
    while made < draws:
        hit = np.flatnonzero(null(size) >= floor)
        if reach + hit.size >= hits:
            return hits / (made + int(hit[hits - reach - 1]) + 1)
        reach += int(hit.size)
        made += size
        size = min(max(made, first), draws - made)
    return (1 + reach) / (draws + 1)


def _exceeds(statistic: float, critical: float) -> bool:
    return statistic > critical + _TIE * max(abs(critical), 1.0)


def _split_draws(
    ref: np.ndarray, cur: np.ndarray, draws: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Permutation draws of two count vectors: the pooled values split at random into ``N`` and ``M``.

    Under no drift every split of the pooled sample is equally likely, so a statistic of the observed
    counts is exchangeable with the same statistic of these draws at any sample size and cardinality
    (the permutation test; sparse cells, rare and unseen categories included; the r×c form of
    ``chisq.test(simulate.p.value = TRUE)`` in R, which also conditions on both margins). Multivariate
    hypergeometric draws of the smaller side (``numpy.random.Generator.multivariate_hypergeometric``).
    Shapes ``(draws, K)``.
    """
    total = np.rint(np.asarray(ref, dtype=np.float64) + np.asarray(cur, dtype=np.float64)).astype(np.int64)
    n_ref, n_cur = round(float(np.sum(ref))), round(float(np.sum(cur)))
    small = min(n_ref, n_cur)
    # "count" needs a temporary array of sum(total) integers; faster when few values are drawn per cell.
    method: Literal["count", "marginals"] = (
        "count" if small <= 20 * total.size and int(np.sum(total)) <= 1_000_000 else "marginals"
    )
    drawn = rng.multivariate_hypergeometric(total, small, size=draws, method=method).astype(np.float64)
    rest = total[None, :] - drawn
    return (drawn, rest) if n_ref <= n_cur else (rest, drawn)


def _null_exceeds(
    statistic: float, alpha: float, draws: int, null: Callable[[int], np.ndarray], first: int = 50
) -> tuple[bool, float]:
    """``statistic > critical_value(null draws, alpha)``, and that critical value, drawing lazily.

    Draws come in doubling chunks (``first``, ``first``, ``2·first``, …). Once more than ``draws − k`` of
    them (``k`` as in :func:`critical_value`) reach the statistic, the ``k``-th order statistic of all
    ``draws`` does too, so the verdict is "not exceeded" whatever the remaining draws would be (the idea of
    Besag & Clifford's sequential Monte Carlo tests, Biometrika 1991): an undrifted column usually stops
    after 50–100 draws. The critical value returned is then the one of the draws made (at least the
    statistic). Otherwise all ``draws`` are made and the verdict is exact.
    """
    k = math.ceil((draws + 1) * (1.0 - alpha))
    floor = statistic - _TIE * max(abs(statistic), 1.0)
    chunks: list[np.ndarray] = []
    made = reach = 0
    size = min(first, draws)
    while made < draws:
        chunk = null(size)
        chunks.append(chunk)
        made += chunk.size
        reach += int(np.count_nonzero(chunk >= floor))
        if reach > draws - k:
            return False, critical_value(np.concatenate(chunks), alpha)
        size = min(max(made, first), draws - made)
    critical = critical_value(np.concatenate(chunks), alpha)
    return _exceeds(statistic, critical), critical


def _js_rows(ref: np.ndarray, cur: np.ndarray, base: float | None) -> np.ndarray:
    """Jensen–Shannon distance of each row pair of count matrices (``scipy.spatial.distance.jensenshannon``)."""
    p = ref / np.sum(ref, axis=1, keepdims=True)
    q = cur / np.sum(cur, axis=1, keepdims=True)
    mid = (p + q) / 2.0
    js = (np.sum(special.rel_entr(p, mid), axis=1) + np.sum(special.rel_entr(q, mid), axis=1)) / 2.0
    if base is not None:
        js = js / math.log(base)
    return np.sqrt(np.maximum(js, 0.0))


def _psi_rows(ref: np.ndarray, cur: np.ndarray, epsilon: float, poolable: np.ndarray | None = None) -> np.ndarray:
    """PSI of each row pair of count matrices, shares floored at ``epsilon``.

    ``poolable`` marks category cells: those with no reference count in a row share one bucket
    (``__other__``: categories the reference has not seen), as the report buckets the observed counts; the
    other cells (missing, the reference's pooled tail, numeric bins) are always buckets of their own.
    """
    n_ref = np.sum(ref, axis=1, keepdims=True)
    n_cur = np.sum(cur, axis=1, keepdims=True)
    r = np.maximum(ref / n_ref, epsilon)
    c = np.maximum(cur / n_cur, epsilon)
    terms = (c - r) * np.log(c / r)
    if poolable is None or not np.any(poolable):
        return np.sum(terms, axis=1)
    unseen = poolable[None, :] & (ref == 0)
    other = np.maximum(np.sum(np.where(unseen, cur, 0.0), axis=1) / n_cur[:, 0], epsilon)
    return np.sum(np.where(unseen, 0.0, terms), axis=1) + (other - epsilon) * np.log(other / epsilon)


def _chi2_rows(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Pearson's chi-square of homogeneity of each row pair (cells empty on both sides are skipped)."""
    n_ref = np.sum(ref, axis=1, keepdims=True)
    n_cur = np.sum(cur, axis=1, keepdims=True)
    total = ref + cur
    share = np.divide(total, n_ref + n_cur)
    e_ref, e_cur = share * n_ref, share * n_cur
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(total > 0, (ref - e_ref) ** 2 / e_ref + (cur - e_cur) ** 2 / e_cur, 0.0)
    return np.sum(terms, axis=1)


def _wasserstein_null(
    values: np.ndarray, counts: np.ndarray, n_ref: int, n_cur: int, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """Null draws of the 1-Wasserstein distance (column units) between samples of ``N`` and ``M`` values.

    Both samples are drawn from the stored reference points (their value counts or grid blocks), so the
    draws reproduce the distance's sampling noise at the current size; ``W = Σ |F₁ − F₂|·Δx`` between
    consecutive points. Shape ``(draws,)``.
    """
    if values.size < 2:
        return np.zeros(draws)
    shares = counts / np.sum(counts)
    ref = np.cumsum(rng.multinomial(n_ref, shares, size=draws), axis=1)[:, :-1] / n_ref
    cur = np.cumsum(rng.multinomial(n_cur, shares, size=draws), axis=1)[:, :-1] / n_cur
    return np.abs(ref - cur) @ np.diff(values)


def _wasserstein_null_bound(values: np.ndarray, counts: np.ndarray, n_ref: int, n_cur: int, alpha: float) -> float:
    """An upper bound of the ``1 − alpha`` quantile of :func:`_wasserstein_null` (column units), without drawing.

    Under that null ``F₁(x) − F₂(x)`` has mean 0 and variance ``F(1 − F)(1/N + 1/M)`` at each point, so
    ``E[W] ≤ Σ √(F(1 − F)(1/N + 1/M))·Δx`` (Jensen) and, by Markov's inequality, ``P(W ≥ E[W]/α) ≤ α``: the
    quantile is at most ``E[W]/α``. A distance above it is significant whatever the draws would say, so
    large drifted batches need no draws.
    """
    if values.size < 2:
        return 0.0
    cdf = np.cumsum(counts)[:-1] / np.sum(counts)
    spread = np.sqrt(cdf * (1.0 - cdf) * (1.0 / n_ref + 1.0 / n_cur))
    return float(spread @ np.diff(values)) / alpha


def null_share_test(
    ref_missing: int, ref_rows: int, cur_missing: int, cur_rows: int, max_increase: float, alpha: float
) -> tuple[float | None, bool]:
    """Did the share of missing values rise? One-sided Fisher exact p-value and the verdict.

    The verdict is True when the current share exceeds the reference share by more than ``max_increase``
    (absolute) and the rise is significant at ``alpha`` (``scipy.stats.fisher_exact``, alternative
    "greater": exact at every size, so the false-alarm rate is at most ``alpha``). The p-value is None when
    a side has no rows.
    """
    if ref_rows <= 0 or cur_rows <= 0:
        return None, False
    table = [[cur_missing, cur_rows - cur_missing], [ref_missing, ref_rows - ref_missing]]
    p_value = float(stats.fisher_exact(table, alternative="greater").pvalue)
    rise = cur_missing / cur_rows - ref_missing / ref_rows
    return p_value, bool(rise > max_increase and p_value < alpha)


@dataclass(frozen=True)
class _CountResult:
    """A test's statistic, p-value (and how it was computed) or a distance's critical value and verdict."""

    statistic: float
    p_value: float | None
    method: str | None
    critical: float | None
    exceeds: bool | None = None


def _discrete_test(
    test: str,
    keys: Sequence[Any],
    ref: np.ndarray,
    cur: np.ndarray,
    threshold: float,
    options: DriftOptions,
    rng: np.random.Generator,
) -> _CountResult:
    """Statistic, p-value and critical value of a test on aligned value counts over ``keys``.

    Every key has a count on at least one side (the keys are the union of the observed values). The
    Jensen–Shannon distance gets its Monte Carlo critical value when it reaches ``threshold``; chi-square
    and z get a Monte Carlo p-value when an expected count is below ``options.min_expected_count``.
    """
    n_ref, n_cur = float(np.sum(ref)), float(np.sum(cur))
    if test == JENSEN_SHANNON:
        statistic = float(_js_rows(ref[None, :], cur[None, :], options.js_base)[0])
        if options.distance_alpha is None or statistic < threshold:
            return _CountResult(statistic, None, None, None)

        def null(draws: int) -> np.ndarray:
            return _js_rows(*_split_draws(ref, cur, draws, rng), options.js_base)

        exceeds, critical = _null_exceeds(statistic, options.distance_alpha, options.null_draws, null)
        return _CountResult(statistic, None, None, critical, exceeds)
    if len(keys) <= 1:
        # One value on both sides: nothing can differ (scipy would return NaN for zero degrees of freedom).
        return _CountResult(0.0, 1.0, ASYMPTOTIC, None)
    if test in (CHI2, Z):
        cells_ref, cells_cur = ref, cur
        if test == Z:
            first = min(range(len(keys)), key=lambda i: keys[i])
            cells_ref = np.array([ref[first], n_ref - ref[first]])
            cells_cur = np.array([cur[first], n_cur - cur[first]])
        total = cells_ref + cells_cur
        expected = np.concatenate((total * n_ref, total * n_cur)) / (n_ref + n_cur)
        if float(np.min(expected[np.concatenate((total, total)) > 0])) < options.min_expected_count:
            observed = float(_chi2_rows(cells_ref[None, :], cells_cur[None, :])[0])

            def null(draws: int) -> np.ndarray:
                return _chi2_rows(*_split_draws(cells_ref, cells_cur, draws, rng))

            p_mc = sequential_p_value(observed, options.null_draws, null)
            if test == CHI2:
                return _CountResult(observed, p_mc, MONTE_CARLO, None)
            z_statistic, _ = _z_test(keys, ref, cur)
            return _CountResult(z_statistic, p_mc, MONTE_CARLO, None)
    if test == CHI2:
        result = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
        return _CountResult(float(result.statistic), float(result.pvalue), ASYMPTOTIC, None)
    if test == Z:
        z_statistic, p_value = _z_test(keys, ref, cur)
        return _CountResult(z_statistic, p_value, ASYMPTOTIC, None)
    if test == CHISQUARE:
        # Evidently: the current counts against the reference shares scaled to the current size. A value
        # unseen in the reference gives an infinite statistic (p = 0) by design.
        with np.errstate(divide="ignore", invalid="ignore"):
            result = stats.chisquare(cur, ref * (n_cur / n_ref))
        return _CountResult(float(result.statistic), float(result.pvalue), ASYMPTOTIC, None)
    raise ValueError(f"{test!r} is not a test on value counts")


def _z_test(keys: Sequence[Any], ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Evidently's two-proportion z-test: the smallest value against all others; z and its asymptotic p-value."""
    n_ref, n_cur = float(np.sum(ref)), float(np.sum(cur))
    first = min(range(len(keys)), key=lambda i: keys[i])
    share_ref, share_cur = 1.0 - ref[first] / n_ref, 1.0 - cur[first] / n_cur
    pooled = (share_ref * n_ref + share_cur * n_cur) / (n_ref + n_cur)
    z = (share_ref - share_cur) / math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_ref + 1.0 / n_cur))
    return float(z), float(2.0 * stats.norm.sf(abs(z)))


def _sturges_counts(
    values: np.ndarray, counts: np.ndarray, xs: np.ndarray, low: float, high: float, n_total: int
) -> tuple[np.ndarray, np.ndarray]:
    """Histograms on Evidently's Sturges bins over the combined range: reference points and current sample."""
    if high > low:
        n_bins = max(math.ceil((high - low) / ((high - low) / (math.log2(n_total) + 1.0))), 1)
        edges = np.linspace(low, high, n_bins + 1)
    else:
        edges = np.array([low - 0.5, low + 0.5])
    ref_hist, _ = np.histogram(values, bins=edges, weights=counts)
    # np.histogram's bins are [a, b) except the last, closed: the same from searches into the sorted sample.
    cut = np.searchsorted(xs, edges, side="left")
    cut[-1] = np.searchsorted(xs, edges[-1], side="right")
    return ref_hist.astype(np.float64), np.diff(cut).astype(np.float64)


# --------------------------------------------------------------------------------------------------
# Report records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnDrift:
    """The drift verdict of one column.

    Attributes:
        column: Column name.
        kind: ``numeric`` or ``categorical``.
        test: The test used.
        statistic: KS D, χ², z, normed Wasserstein or Jensen–Shannon distance (None when failed closed).
        p_value: Raw p-value of a p-value test (None for a distance).
        p_value_adjusted: The p-value after Benjamini–Hochberg (equal to ``p_value`` when BH is off).
        drift_score: The number compared with the threshold: adjusted p-value or distance.
        threshold: Drift when ``drift_score`` < threshold (p-value tests) or ≥ threshold and > ``critical``
            (distances).
        drifted: The verdict: the test drifted, or the share of missing values rose (``null_share_rise``);
            True when failed closed.
        reason: Why the column has no statistic: failed closed and drifted (``no values``, ``missing
            column``, ``no reference values``), or ``no values on either side`` (all missing in the
            reference and in the batch: unchanged, not drifted).
        error_bound: Bound on ``|statistic − statistic against the raw reference|`` from the stored grid
            (0 when the reference is exact; None when not bounded).
        psi: Population stability index (None when there are no values to bin).
        psi_band: ``stable`` / ``moderate`` / ``significant`` by the fixed bands.
        psi_critical: The critical value of PSI at this sample size: the ``1 − psi_alpha`` quantile of its
            Monte Carlo null distribution (see :func:`critical_value`).
        psi_drifted: ``psi > psi_critical`` (True when PSI cannot be computed).
        psi_buckets: Buckets holding reference values (B of the critical value).
        n_reference: Reference values tested (present values).
        n_current: Current values tested (present values).
        critical: A distance's critical value at this sample size: the ``1 − distance_alpha`` quantile of
            its Monte Carlo null distribution. Computed only when the distance reaches ``threshold`` (below
            it the verdict is "no drift" anyway); None otherwise, for p-value tests and when calibration is
            off.
        p_value_method: ``asymptotic`` or ``monte carlo`` for a p-value test; None for a distance.
        null_share_reference: Share of missing values in the reference rows.
        null_share_current: Share of missing values in the current rows (None without rows).
        null_share_p_value: One-sided Fisher exact p-value of a rise of that share (see :func:`null_share_test`).
        null_share_rise: The share rose by more than ``max_null_share_increase`` and significantly.
    """

    column: str
    kind: str
    test: str
    statistic: float | None
    p_value: float | None
    p_value_adjusted: float | None
    drift_score: float | None
    threshold: float
    drifted: bool
    reason: str | None
    error_bound: float | None
    psi: float | None
    psi_band: str | None
    psi_critical: float | None
    psi_drifted: bool
    psi_buckets: int
    n_reference: int
    n_current: int
    critical: float | None = None
    p_value_method: str | None = None
    null_share_reference: float | None = None
    null_share_current: float | None = None
    null_share_p_value: float | None = None
    null_share_rise: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in _COLUMN_FLOATS:
            data[name] = _enc(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ColumnDrift":
        values = dict(data)
        for name in _COLUMN_FLOATS:
            values[name] = _dec(values.get(name))
        values["threshold"] = float(values["threshold"])
        return cls(**values)


_COLUMN_FLOATS = (
    "statistic",
    "p_value",
    "p_value_adjusted",
    "drift_score",
    "error_bound",
    "psi",
    "psi_critical",
    "critical",
    "null_share_reference",
    "null_share_current",
    "null_share_p_value",
)


@dataclass(frozen=True)
class NullShare:
    """Share of missing values of one column, reference vs current (current None when the column is absent).

    ``p_value`` is the one-sided Fisher exact p-value of a rise and ``rose`` the verdict of
    :func:`null_share_test` (a rise beyond ``max_null_share_increase`` that is significant).
    """

    column: str
    reference: float
    current: float | None
    p_value: float | None = None
    rose: bool = False


@dataclass(frozen=True)
class OutOfRange:
    """Current values outside the spec's [min, max] (±inf included), for a column that has any."""

    column: str
    min: float | None
    max: float | None
    below: int
    above: int


@dataclass(frozen=True)
class UnseenCategories:
    """Current categories absent from the reference: how many rows, and the most frequent by name.

    ``pooled`` is True when the reference pooled its rare categories, so an "unseen" one may be one of them.
    """

    column: str
    n_rows: int
    n_categories: int
    top: tuple[tuple[str, int], ...]
    pooled: bool


@dataclass(frozen=True)
class DtypeChange:
    """A column arriving with a different kind of dtype (e.g. a numeric column as text)."""

    column: str
    reference: str
    current: str
    unparseable: int


@dataclass(frozen=True)
class DataQuality:
    """Data-quality findings of the current batch against the reference.

    Attributes:
        null_shares: Every reference column, reference vs current missing share.
        out_of_range: Numeric columns with values outside the spec's bounds.
        unseen_categories: Categorical columns with categories the reference has not seen.
        missing_columns: Reference columns absent from the current frame.
        extra_columns: Current columns the reference does not know.
        dtype_changes: Columns whose dtype family changed (numeric arriving as text, text as numbers).
        null_share_increases: Columns whose share of missing values rose beyond the policy's
            ``max_null_share_increase``, significantly: a data-quality failure (the column also drifts).
    """

    null_shares: tuple[NullShare, ...]
    out_of_range: tuple[OutOfRange, ...]
    unseen_categories: tuple[UnseenCategories, ...]
    missing_columns: tuple[str, ...]
    extra_columns: tuple[str, ...]
    dtype_changes: tuple[DtypeChange, ...]
    null_share_increases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "null_shares": [
                {
                    "column": s.column,
                    "reference": s.reference,
                    "current": s.current,
                    "p_value": s.p_value,
                    "rose": s.rose,
                }
                for s in self.null_shares
            ],
            "null_share_increases": list(self.null_share_increases),
            "out_of_range": [
                {"column": o.column, "min": _enc(o.min), "max": _enc(o.max), "below": o.below, "above": o.above}
                for o in self.out_of_range
            ],
            "unseen_categories": [
                {
                    "column": u.column,
                    "n_rows": u.n_rows,
                    "n_categories": u.n_categories,
                    "top": [[c, n] for c, n in u.top],
                    "pooled": u.pooled,
                }
                for u in self.unseen_categories
            ],
            "missing_columns": list(self.missing_columns),
            "extra_columns": list(self.extra_columns),
            "dtype_changes": [
                {"column": d.column, "reference": d.reference, "current": d.current, "unparseable": d.unparseable}
                for d in self.dtype_changes
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DataQuality":
        return cls(
            null_shares=tuple(
                NullShare(
                    str(s["column"]),
                    float(s["reference"]),
                    _dec(s["current"]),
                    _dec(s.get("p_value")),
                    bool(s.get("rose", False)),
                )
                for s in data["null_shares"]
            ),
            null_share_increases=tuple(str(c) for c in data.get("null_share_increases", ())),
            out_of_range=tuple(
                OutOfRange(str(o["column"]), _dec(o["min"]), _dec(o["max"]), int(o["below"]), int(o["above"]))
                for o in data["out_of_range"]
            ),
            unseen_categories=tuple(
                UnseenCategories(
                    str(u["column"]),
                    int(u["n_rows"]),
                    int(u["n_categories"]),
                    tuple((str(c), int(n)) for c, n in u["top"]),
                    bool(u["pooled"]),
                )
                for u in data["unseen_categories"]
            ),
            missing_columns=tuple(str(c) for c in data["missing_columns"]),
            extra_columns=tuple(str(c) for c in data["extra_columns"]),
            dtype_changes=tuple(
                DtypeChange(str(d["column"]), str(d["reference"]), str(d["current"]), int(d["unparseable"]))
                for d in data["dtype_changes"]
            ),
        )


@dataclass(frozen=True)
class DriftReport:
    """Drift of a current batch against a stored reference.

    Attributes:
        reference_profile_id: :attr:`DriftReference.profile_id` of the reference compared against.
        n_rows: Rows of the current frame.
        columns: One verdict per feature column, in reference order (the score column excluded).
        n_drifted: Drifted feature columns.
        drifted_share: ``n_drifted / len(columns)``.
        dataset_drift: ``drifted_share ≥ options.drift_share``, or True with a ``reason``.
        reason: Why the data set failed closed (an empty frame), else None.
        data_quality: Data-quality findings.
        prediction_drift: Verdict of the score column, when ``options.score_column`` is set.
        options: The options used.
    """

    reference_profile_id: str
    n_rows: int
    columns: tuple[ColumnDrift, ...]
    n_drifted: int
    drifted_share: float
    dataset_drift: bool
    reason: str | None
    data_quality: DataQuality
    prediction_drift: ColumnDrift | None
    options: DriftOptions

    def column(self, name: str) -> ColumnDrift:
        """The verdict of column ``name`` (the score column included)."""
        for col in self.columns:
            if col.column == name:
                return col
        if self.prediction_drift is not None and self.prediction_drift.column == name:
            return self.prediction_drift
        raise KeyError(f"column {name!r} is not in the drift report")

    def table(self) -> pd.DataFrame:
        """The per-column verdicts as a frame (one row per feature column)."""
        return pd.DataFrame([{f.name: getattr(c, f.name) for f in fields(c)} for c in self.columns])

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-safe plain data (the inverse of :meth:`from_dict`)."""
        return {
            "reference_profile_id": self.reference_profile_id,
            "n_rows": self.n_rows,
            "columns": [c.to_dict() for c in self.columns],
            "n_drifted": self.n_drifted,
            "drifted_share": self.drifted_share,
            "dataset_drift": self.dataset_drift,
            "reason": self.reason,
            "data_quality": self.data_quality.to_dict(),
            "prediction_drift": None if self.prediction_drift is None else self.prediction_drift.to_dict(),
            "options": self.options.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DriftReport":
        """Rebuild a report from :meth:`to_dict` output."""
        prediction = data.get("prediction_drift")
        return cls(
            reference_profile_id=str(data["reference_profile_id"]),
            n_rows=int(data["n_rows"]),
            columns=tuple(ColumnDrift.from_dict(c) for c in data["columns"]),
            n_drifted=int(data["n_drifted"]),
            drifted_share=float(data["drifted_share"]),
            dataset_drift=bool(data["dataset_drift"]),
            reason=None if data.get("reason") is None else str(data["reason"]),
            data_quality=DataQuality.from_dict(data["data_quality"]),
            prediction_drift=None if prediction is None else ColumnDrift.from_dict(prediction),
            options=DriftOptions.from_dict(data["options"]),
        )

    def to_json(self) -> str:
        """Canonical JSON of :meth:`to_dict`."""
        return _canonical_json(self.to_dict())


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


def _choose_test(ref: ColumnReference, n_values: int | None, options: DriftOptions) -> str:
    """The test of a column: the per-column override, else Evidently's rule by kind and reference size.

    Args:
        ref: The column reference.
        n_values: Distinct present values of reference and current together when known to be small (a
            numeric column stored exactly with few values), else None.
        options: The options.
    """
    override = options.column_tests.get(ref.name)
    if override is not None:
        return override
    small = ref.n <= options.small_reference_rows
    if ref.kind == NUMERIC and (n_values is None or n_values > options.discrete_max_values):
        return options.numeric_test_small if small else options.numeric_test_large
    if not small:
        return options.categorical_test_large
    return options.binary_test_small if n_values is not None and n_values <= 2 else options.categorical_test_small


def _failed(
    ref: ColumnReference,
    test: str,
    options: DriftOptions,
    reason: str,
    n_current: int,
    psi_fields: dict[str, Any],
    nulls: dict[str, Any],
    drifted: bool = True,
) -> ColumnDrift:
    """A column without a statistic: failed closed (``drifted``), or unchanged when missing on both sides."""
    fields_: dict[str, Any] = {
        "psi": None,
        "psi_band": None,
        "psi_critical": None,
        "psi_drifted": drifted,
        "psi_buckets": 0,
    }
    fields_.update(psi_fields)
    return ColumnDrift(
        column=ref.name,
        kind=ref.kind,
        test=test,
        statistic=None,
        p_value=None,
        p_value_adjusted=None,
        drift_score=None,
        threshold=options.threshold_for(ref.name, test),
        drifted=drifted or bool(nulls.get("null_share_rise")),
        reason=reason,
        error_bound=None,
        n_reference=ref.n,
        n_current=n_current,
        **fields_,
        **nulls,
    )


def _psi_fields(
    ref_counts: np.ndarray,
    cur_counts: np.ndarray,
    options: DriftOptions,
    rng: np.random.Generator,
    poolable: np.ndarray | None = None,
) -> dict[str, Any]:
    """PSI, its band and its Monte Carlo critical value at these sizes (permutation null, :func:`_split_draws`).

    ``poolable`` as in :func:`_psi_rows`: unseen categories are cells of their own in the permutation and
    share the ``__other__`` bucket in every draw where the reference side has none of them, as observed.
    """
    value = float(_psi_rows(ref_counts[None, :], cur_counts[None, :], options.psi_epsilon, poolable)[0])
    buckets = int(np.count_nonzero(ref_counts)) + int(poolable is not None and np.any(poolable & (ref_counts == 0)))

    def null(draws: int) -> np.ndarray:
        return _psi_rows(*_split_draws(ref_counts, cur_counts, draws, rng), options.psi_epsilon, poolable)

    exceeds, critical = _null_exceeds(value, options.psi_alpha, options.null_draws, null)
    return {
        "psi": value,
        "psi_band": psi_band(value, options.psi_bands),
        "psi_critical": critical,
        "psi_drifted": exceeds,
        "psi_buckets": buckets,
    }


def _null_fields(
    ref_missing: int, ref_rows: int, cur_missing: int, cur_rows: int, options: DriftOptions
) -> dict[str, Any]:
    p_value, rose = null_share_test(
        ref_missing, ref_rows, cur_missing, cur_rows, options.max_null_share_increase, options.null_share_alpha
    )
    return {
        "null_share_reference": ref_missing / ref_rows if ref_rows else 0.0,
        "null_share_current": cur_missing / cur_rows if cur_rows else None,
        "null_share_p_value": p_value,
        "null_share_rise": rose,
    }


def _null_share(nulls: dict[str, Any], name: str) -> NullShare:
    return NullShare(
        name,
        float(nulls["null_share_reference"]),
        nulls["null_share_current"],
        nulls["null_share_p_value"],
        bool(nulls["null_share_rise"]),
    )


def _verdict(
    ref: ColumnReference,
    test: str,
    result: _CountResult,
    error_bound: float | None,
    n_current: int,
    psi_fields: dict[str, Any],
    nulls: dict[str, Any],
    options: DriftOptions,
) -> ColumnDrift:
    threshold = options.threshold_for(ref.name, test)
    score = result.p_value if result.p_value is not None else result.statistic
    # A distance drifts when it reaches its threshold and, when calibrated, exceeds its null critical value.
    calibrated = result.exceeds is not False
    test_drifted = score < threshold if test in P_VALUE_TESTS else (score >= threshold and calibrated)
    return ColumnDrift(
        column=ref.name,
        kind=ref.kind,
        test=test,
        statistic=result.statistic,
        p_value=result.p_value,
        p_value_adjusted=result.p_value,
        drift_score=score,
        threshold=threshold,
        drifted=bool(test_drifted) or bool(nulls["null_share_rise"]),
        reason=None,
        error_bound=error_bound,
        n_reference=ref.n,
        n_current=n_current,
        critical=result.critical,
        p_value_method=result.method,
        **psi_fields,
        **nulls,
    )


@dataclass(frozen=True)
class _Findings:
    """Data-quality findings of one column."""

    null_share: NullShare
    out_of_range: OutOfRange | None = None
    unseen: UnseenCategories | None = None
    dtype_change: DtypeChange | None = None


def _numeric_drift(
    ref: NumericReference, series: pd.Series, n_rows: int, options: DriftOptions
) -> tuple[ColumnDrift, _Findings]:
    ref_rows = ref.n + ref.n_missing + ref.n_infinite
    values, unparseable = _as_float(series)
    side = _sort_numeric(values)
    xs = side.finite
    m = int(xs.size)
    nulls = _null_fields(ref.n_missing, ref_rows, side.n_missing, n_rows, options)
    findings = _Findings(_null_share(nulls, ref.name))
    if not _numeric_family(_dtype_family(series.dtype)) and bool(series.notna().any()):
        findings = replace(findings, dtype_change=DtypeChange(ref.name, ref.dtype, str(series.dtype), unparseable))
    if ref.range_min is not None or ref.range_max is not None:
        below = int(np.searchsorted(side.non_nan, ref.range_min, side="left")) if ref.range_min is not None else 0
        above = (
            int(side.non_nan.size - np.searchsorted(side.non_nan, ref.range_max, side="right"))
            if ref.range_max is not None
            else 0
        )
        if below or above:
            findings = replace(findings, out_of_range=OutOfRange(ref.name, ref.range_min, ref.range_max, below, above))

    points = np.asarray(ref.values, dtype=np.float64)
    counts = np.asarray(ref.counts, dtype=np.int64)
    # Evidently's rule needs the distinct values of both sides only when the reference has few of them.
    n_values: int | None = None
    cur_values = cur_counts = None
    if ref.exact and points.size <= max(options.discrete_max_values, 0) and m:
        cur_values, cur_counts = _value_counts_sorted(xs)
        n_values = int(np.union1d(points, cur_values).size)
    test = _choose_test(ref, n_values, options)
    threshold = options.threshold_for(ref.name, test)

    batch = np.concatenate(([m, side.n_missing], xs[:: max(1, m // 64)]))
    psi_fields: dict[str, Any] = {}
    if ref.n and m:
        edges = np.asarray(ref.psi_edges, dtype=np.float64)
        cur_bins = np.diff(np.concatenate(([0], np.searchsorted(xs, edges, side="right"), [m])))
        psi_fields = _psi_fields(
            np.asarray(ref.psi_counts, dtype=np.float64),
            cur_bins.astype(np.float64),
            options,
            _rng(options, ref.name, "psi", batch),
        )
    if ref.n == 0 and m == 0 and n_rows > 0:
        # 0 % present before and now: unchanged, not drift (a missing-share rise is judged on its own).
        return _failed(ref, test, options, NO_VALUES_EITHER_SIDE, m, psi_fields, nulls, drifted=False), findings
    if ref.n == 0:
        return _failed(ref, test, options, NO_REFERENCE_VALUES, m, psi_fields, nulls), findings
    if m == 0:
        return _failed(ref, test, options, NO_VALUES, m, psi_fields, nulls), findings

    rng = _rng(options, ref.name, "test", batch)
    if test == KS:
        statistic = (
            _ks_linear(xs, points, counts, float(ref.min or 0.0), float(ref.max or 0.0))
            if ref.ks_linear
            else _ks_points(xs, points, counts)
        )
        result = _CountResult(statistic, ks_pvalue(statistic, ref.n, m), ASYMPTOTIC, None)
        return _verdict(ref, test, result, ref.grid_ks, m, psi_fields, nulls, options), findings
    if test == WASSERSTEIN:
        norm = max(float(ref.std or 0.0), options.wasserstein_min_std)
        statistic = _wasserstein_points(xs, points, counts, float(ref.mean or 0.0)) / norm
        result = _CountResult(statistic, None, None, None)
        if options.distance_alpha is not None and statistic >= threshold:
            bound = _wasserstein_null_bound(points, counts, ref.n, m, options.distance_alpha) / norm
            if statistic > bound:
                # Beyond Markov's bound of the null quantile: drifted without drawing (large batches).
                result = _CountResult(statistic, None, None, bound, True)
            else:

                def null(draws: int) -> np.ndarray:
                    return _wasserstein_null(points, counts, ref.n, m, draws, rng) / norm

                exceeds, critical = _null_exceeds(statistic, options.distance_alpha, options.null_draws, null)
                result = _CountResult(statistic, None, None, critical, exceeds)
        return _verdict(ref, test, result, ref.grid_wasserstein / norm, m, psi_fields, nulls, options), findings
    if test == JENSEN_SHANNON and not (ref.exact and points.size <= _JS_VALUE_COUNT_MAX):
        # Evidently's histogram form; the reference side is binned from the stored points (bounded by the
        # grid only loosely, so no error bound is claimed unless the reference is exact).
        low, high = min(float(ref.min or 0.0), float(xs[0])), max(float(ref.max or 0.0), float(xs[-1]))
        ref_hist, cur_hist = _sturges_counts(points, counts, xs, low, high, ref.n + m)
        present = (ref_hist > 0) | (cur_hist > 0)
        bins = np.flatnonzero(present).tolist()
        result = _discrete_test(test, bins, ref_hist[present], cur_hist[present], threshold, options, rng)
        return _verdict(ref, test, result, 0.0 if ref.exact else None, m, psi_fields, nulls, options), findings
    if not ref.exact:
        raise ValueError(
            f"test {test!r} on numeric column {ref.name!r} compares value counts and needs the exact reference "
            f"values; this reference stores a grid ({ref.n} values): rebuild it with a larger max_exact"
        )
    if cur_values is None or cur_counts is None:
        cur_values, cur_counts = _value_counts_sorted(xs)
    keys = np.union1d(points, cur_values)
    ref_aligned = np.zeros(keys.size)
    cur_aligned = np.zeros(keys.size)
    ref_aligned[np.searchsorted(keys, points)] = counts
    cur_aligned[np.searchsorted(keys, cur_values)] = cur_counts
    result = _discrete_test(test, keys.tolist(), ref_aligned, cur_aligned, threshold, options, rng)
    return _verdict(ref, test, result, 0.0, m, psi_fields, nulls, options), findings


def _categorical_drift(
    ref: CategoricalReference, series: pd.Series, n_rows: int, options: DriftOptions
) -> tuple[ColumnDrift, _Findings]:
    ref_rows = ref.n + ref.n_missing
    counts, n_missing = _category_counts(series)
    m = sum(counts.values())
    nulls = _null_fields(ref.n_missing, ref_rows, n_missing, n_rows, options)
    findings = _Findings(_null_share(nulls, ref.name))
    # An all-missing column may arrive with any dtype (e.g. float64): only a column with values has changed.
    if m and _numeric_family(_dtype_family(series.dtype)) != _numeric_family(_dtype_family(ref.dtype)):
        findings = replace(findings, dtype_change=DtypeChange(ref.name, ref.dtype, str(series.dtype), 0))
    known = set(ref.categories)
    unseen = sorted(((k, v) for k, v in counts.items() if k not in known), key=lambda kv: (-kv[1], kv[0]))
    pooled = ref.other_count > 0
    if unseen:
        findings = replace(
            findings,
            unseen=UnseenCategories(
                ref.name, sum(v for _, v in unseen), len(unseen), tuple(unseen[:_UNSEEN_LISTED]), pooled
            ),
        )
    # Keys in a canonical order (reference order, then unseen by name) so that the result does not depend
    # on the order in which values first appear.
    unseen_keys = sorted(k for k, _ in unseen)
    if pooled:
        # The reference pooled its tail: a category not kept may be one of it, so all go to one bucket.
        keys = [*ref.categories, OTHER_BUCKET]
        ref_counts = np.array([*ref.counts, ref.other_count], dtype=np.float64)
        cur_counts = np.array([*(counts.get(k, 0) for k in ref.categories), sum(v for _, v in unseen)], np.float64)
    else:
        keys = [*ref.categories, *unseen_keys]
        ref_counts = np.array([*ref.counts, *([0] * len(unseen_keys))], dtype=np.float64)
        cur_counts = np.array([counts.get(k, 0) for k in keys], dtype=np.float64)
    present = (ref_counts > 0) | (cur_counts > 0)
    n_values = int(np.count_nonzero(present))
    test = _choose_test(ref, n_values, options)
    if test not in (CHISQUARE, CHI2, Z, JENSEN_SHANNON):
        raise ValueError(f"test {test!r} does not apply to categorical column {ref.name!r}")

    psi_fields: dict[str, Any] = {}
    if n_rows and ref_rows:
        # Buckets: each reference category, the reference's pooled tail (current categories it does not
        # know go there when it exists), unseen categories (together: ``__other__``), missing values.
        n_cats = len(ref.categories) + (0 if pooled else len(unseen_keys))
        tail = [ref.other_count] if pooled else []
        cur_tail = [sum(v for _, v in unseen)] if pooled else []
        ref_buckets = np.array([*ref.counts, *([0] * (n_cats - len(ref.counts))), *tail, ref.n_missing], np.float64)
        cur_cats = [counts.get(k, 0) for k in ref.categories] + ([] if pooled else [counts[k] for k in unseen_keys])
        cur_buckets = np.array([*cur_cats, *cur_tail, n_missing], dtype=np.float64)
        poolable = np.arange(ref_buckets.size) < n_cats
        psi_fields = _psi_fields(
            ref_buckets, cur_buckets, options, _rng(options, ref.name, "psi", cur_buckets), poolable
        )
    if ref.n == 0 and m == 0 and n_rows > 0:
        # 0 % present before and now: unchanged, not drift (a missing-share rise is judged on its own).
        return _failed(ref, test, options, NO_VALUES_EITHER_SIDE, m, psi_fields, nulls, drifted=False), findings
    if ref.n == 0:
        return _failed(ref, test, options, NO_REFERENCE_VALUES, m, psi_fields, nulls), findings
    if m == 0:
        return _failed(ref, test, options, NO_VALUES, m, psi_fields, nulls), findings
    kept = [k for k, p in zip(keys, present, strict=True) if p]
    result = _discrete_test(
        test,
        kept,
        ref_counts[present],
        cur_counts[present],
        options.threshold_for(ref.name, test),
        options,
        _rng(options, ref.name, "test", cur_counts),
    )
    return _verdict(ref, test, result, 0.0, m, psi_fields, nulls, options), findings


def _missing_column(ref: ColumnReference, options: DriftOptions) -> tuple[ColumnDrift, _Findings]:
    rows = ref.n + ref.n_missing + (ref.n_infinite if isinstance(ref, NumericReference) else 0)
    test = _choose_test(ref, None, options)
    nulls = _null_fields(ref.n_missing, rows, 0, 0, options)
    return _failed(ref, test, options, MISSING_COLUMN, 0, {}, nulls), _Findings(_null_share(nulls, ref.name))


def _column_drift(ref: ColumnReference, current: pd.DataFrame, options: DriftOptions) -> tuple[ColumnDrift, _Findings]:
    if ref.name not in current.columns:
        return _missing_column(ref, options)
    series = current[ref.name]
    if isinstance(series, pd.DataFrame):
        raise ValueError(f"current frame has duplicate columns named {ref.name!r}")
    if isinstance(ref, NumericReference):
        return _numeric_drift(ref, series, len(current), options)
    return _categorical_drift(ref, series, len(current), options)


def bh_adjust(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values, in input order (``scipy.stats.false_discovery_control``)."""
    if len(p_values) == 0:
        return []
    return [float(p) for p in stats.false_discovery_control(np.asarray(p_values, dtype=np.float64), method="bh")]


def _adjust(columns: list[ColumnDrift], options: DriftOptions) -> list[ColumnDrift]:
    """Benjamini–Hochberg over the columns with a p-value; verdicts re-taken on the adjusted p-values."""
    tested = [i for i, c in enumerate(columns) if c.p_value is not None]
    if not options.benjamini_hochberg or len(tested) < 2:
        return columns
    adjusted = bh_adjust([cast(float, columns[i].p_value) for i in tested])
    out = list(columns)
    for i, p in zip(tested, adjusted, strict=True):
        col = out[i]
        out[i] = replace(col, p_value_adjusted=p, drift_score=p, drifted=bool(p < col.threshold) or col.null_share_rise)
    return out


_DEFAULT_OPTIONS = DriftOptions()


def drift_report(
    reference: DriftReference, current: pd.DataFrame, options: DriftOptions = _DEFAULT_OPTIONS
) -> DriftReport:
    """Compare a current batch with the stored reference.

    Every monitored column of the reference is tested (see the module docstring for the choice of
    tests), PSI is reported next to each test, the p-values are adjusted together (BH, by default) and the
    data set drifts when the share of drifted feature columns reaches ``options.drift_share``. A column
    with no current values (absent, empty or all missing) is drifted with a reason; an empty frame is a
    dataset drift. The score column named by ``options.score_column`` is reported as prediction drift.

    Args:
        reference: The reference from :func:`build_reference`.
        current: The current batch.
        options: Tests, thresholds and rules.

    Returns:
        The report.

    Raises:
        ValueError: the score column is not in the reference, a test does not fit its column, or the
            current frame has duplicate column names.
    """
    score = options.score_column
    if score is not None and score not in reference.column_names:
        raise ValueError(f"score column {score!r} is not in the drift reference {list(reference.column_names)}")
    results: list[ColumnDrift] = []
    findings: list[_Findings] = []
    prediction: ColumnDrift | None = None
    for ref in reference.columns:
        verdict, found = _column_drift(ref, current, options)
        findings.append(found)
        if ref.name == score:
            prediction = verdict
        else:
            results.append(verdict)
    results = _adjust(results, options)

    n_drifted = sum(c.drifted for c in results)
    share = n_drifted / len(results) if results else 0.0
    reason = EMPTY_FRAME if len(current) == 0 else None
    known = set(reference.column_names)
    quality = DataQuality(
        null_shares=tuple(f.null_share for f in findings),
        out_of_range=tuple(f.out_of_range for f in findings if f.out_of_range is not None),
        unseen_categories=tuple(f.unseen for f in findings if f.unseen is not None),
        missing_columns=tuple(c for c in reference.column_names if c not in current.columns),
        extra_columns=tuple(str(c) for c in current.columns if c not in known),
        dtype_changes=tuple(f.dtype_change for f in findings if f.dtype_change is not None),
        null_share_increases=tuple(f.null_share.column for f in findings if f.null_share.rose),
    )
    return DriftReport(
        reference_profile_id=reference.profile_id,
        n_rows=len(current),
        columns=tuple(results),
        n_drifted=n_drifted,
        drifted_share=share,
        dataset_drift=reason is not None or (bool(results) and share >= options.drift_share),
        reason=reason,
        data_quality=quality,
        prediction_drift=prediction,
        options=options,
    )


@dataclass(frozen=True)
class DriftComparison:
    """The ``drift_report`` of one data version: the stored record, its summary and the report behind them.

    Attributes:
        record: The stored value: ``compared_with`` (the production version, None when nothing was compared),
            ``reason`` and ``report`` (:meth:`DriftReport.to_dict`, None when nothing was compared), plus
            ``reference_data_versions`` when compared.
        summary: The metadata the retraining sensors read (:class:`~mlops_assets.ml.summaries.DriftSummary`).
        report: The report, None when nothing was compared.
        histograms: Reference vs current shares of the columns worth a look (:func:`histogram_columns`), for
            display; empty when nothing was compared.
    """

    record: dict[str, Any]
    summary: DriftSummary
    report: DriftReport | None
    histograms: tuple["ColumnHistogram", ...] = ()


def compare_with_production(
    current: pd.DataFrame,
    reference: DriftReference | None,
    monitoring: MonitoringPolicy,
    *,
    model_name: str,
    production_version: int | None,
    reference_data_versions: Sequence[str] = (),
) -> DriftComparison:
    """Drift of a data version's model inputs against the training reference of the model in production.

    Nothing is compared, with the reason, when no model is in production or its version stores no reference.
    Otherwise the reference's columns of ``current`` are compared (:func:`drift_report`) with
    ``monitoring.max_null_share_increase``, and the columns worth a look get a histogram (display only).

    Args:
        current: The data version's features (extra columns are ignored).
        reference: The production version's reference, None when it has none (or nothing is in production).
        monitoring: The monitoring section of the policy (its ``max_null_share_increase``).
        model_name: Registered model name.
        production_version: The version in production, None when none is.
        reference_data_versions: The data versions the production model was trained on (recorded).

    Returns:
        The comparison.

    Raises:
        ValueError: A reference without a production version, or (from :func:`drift_report`) a test that does
            not fit its column; KeyError: ``current`` lacks a reference column.
    """
    if reference is None:
        why = (
            "no model in production"
            if production_version is None
            else f"{model_name} v{production_version} has no reference"
        )
        return DriftComparison(
            record={"compared_with": None, "reason": why, "report": None}, summary=DriftSummary(reason=why), report=None
        )
    if production_version is None:
        raise ValueError(f"a drift reference of {model_name!r} without the production version it belongs to")
    options = DriftOptions(max_null_share_increase=monitoring.max_null_share_increase)
    report = drift_report(reference, current[list(reference.column_names)], options)
    summary = DriftSummary(
        compared_with_model=model_name,
        compared_with_version=production_version,
        dataset_drift=bool(report.dataset_drift),
        drifted_share=float(report.drifted_share),
        n_drifted=int(report.n_drifted),
        drifted_columns=tuple(c.column for c in report.columns if c.drifted),
        null_share_increases=tuple(report.data_quality.null_share_increases),
    )
    record: dict[str, Any] = {
        "compared_with": production_version,
        "reference_data_versions": list(reference_data_versions),
        "reason": report.reason,
        "report": report.to_dict(),
    }
    histograms = tuple(column_histogram(reference.column(c), current[c]) for c in histogram_columns(report))
    return DriftComparison(record=record, summary=summary, report=report, histograms=histograms)


# --------------------------------------------------------------------------------------------------
# Display: the report as tables and small histograms (what the UI shows; the verdicts are above)
# --------------------------------------------------------------------------------------------------

#: Dagster's UI renders a markdown metadata value inline only below this many characters (else behind a button).
MARKDOWN_INLINE_LIMIT = 1000
#: Columns of :func:`column_table_rows`, the decision first.
COLUMN_TABLE_ORDER: tuple[str, ...] = (
    "column",
    "drifted",
    "decided_by",
    "psi_band",
    "psi",
    "psi_beyond_noise",
    "psi_critical",
    "test",
    "statistic",
    "threshold",
    "critical",
    "p_value_adjusted",
    "p_value",
    "null_share_reference",
    "null_share_current",
    "null_share_rise",
    "kind",
    "n_reference",
    "n_current",
    "reason",
)
#: Columns of :func:`data_quality_rows`, the check's verdict first.
DATA_QUALITY_TABLE_ORDER: tuple[str, ...] = (
    "column",
    "flagged",
    "finding",
    "null_share_reference",
    "null_share_current",
    "new_category_share",
    "new_categories",
    "new_category_examples",
    "out_of_range_share",
    "allowed_range",
    "null_share_rise",
    "dtype",
)
#: Data-quality findings the ``data_quality`` check warns about.
NEW_CATEGORIES = "new categories"
NULL_SHARE_ROSE = "missing share rose"
OUT_OF_RANGE = "out of range"
#: Histograms: at most this many drifted columns, topped up to the minimum with the largest PSI.
HISTOGRAM_MAX_COLUMNS = 5
HISTOGRAM_MIN_COLUMNS = 3
#: Categories drawn per categorical histogram (the largest on either side); the rest are pooled into "other".
HISTOGRAM_CATEGORIES = 8
_EXAMPLES = 5
_LABEL_WIDTH = 14
_EIGHTHS = " ▏▎▍▌▋▊▉"


def _num(value: float) -> str:
    """A number in at most 4 significant digits (``0.1``, ``0.0863``, ``2359``)."""
    return f"{value:.4g}"


def _distance_exceeds(col: ColumnDrift) -> bool:
    """Whether a distance's statistic is beyond its critical value (always, when calibration was off)."""
    return col.critical is None or (col.statistic is not None and _exceeds(col.statistic, col.critical))


def drifted_by_test(col: ColumnDrift) -> bool:
    """Whether the column's own test drifted (the decision without the missing-share rule and failing closed).

    p-value tests: the (adjusted) p-value is below the threshold; distances: the distance reaches the threshold
    and exceeds its critical value. False for a column without a statistic.
    """
    if col.statistic is None or col.drift_score is None:
        return False
    if col.test in P_VALUE_TESTS:
        return col.drift_score < col.threshold
    return col.statistic >= col.threshold and _distance_exceeds(col)


def decided_by(col: ColumnDrift, max_null_share_increase: float) -> str:
    """The rule that decided ``col.drifted``, in words with its numbers (the table's ``decided_by``).

    ``"wasserstein 0.275 ≥ 0.1 and > noise 0.0863"``, ``"ks p_adj 0.31 ≥ 0.05"``, ``"failed closed: no values"``,
    followed by ``"; missing share 1.0% → 30.0% (rise > 5 points, p 2e-09)"`` when that rule fired.
    """
    if col.reason == NO_VALUES_EITHER_SIDE:
        reading = "unchanged: no values on either side"
    elif col.reason is not None:
        reading = f"failed closed: {col.reason}"
    elif col.statistic is None or col.drift_score is None:
        reading = f"{col.test}: no statistic"
    elif col.test in P_VALUE_TESTS:
        sign = "<" if col.drift_score < col.threshold else "≥"
        reading = f"{col.test} p_adj {col.drift_score:.3g} {sign} {_num(col.threshold)}"
    elif col.statistic < col.threshold:
        reading = f"{col.test} {_num(col.statistic)} < {_num(col.threshold)}"
    elif col.critical is None:
        reading = f"{col.test} {_num(col.statistic)} ≥ {_num(col.threshold)}"
    elif _distance_exceeds(col):
        reading = f"{col.test} {_num(col.statistic)} ≥ {_num(col.threshold)} and > noise {_num(col.critical)}"
    else:
        reading = f"{col.test} {_num(col.statistic)} ≥ {_num(col.threshold)} but ≤ noise {_num(col.critical)}"
    if col.null_share_rise:
        p_value = "" if col.null_share_p_value is None else f", p {col.null_share_p_value:.2g}"
        reading += (
            f"; missing share {col.null_share_reference or 0.0:.1%} → {col.null_share_current or 0.0:.1%} "
            f"(rise > {max_null_share_increase * 100:g} points{p_value})"
        )
    return reading


def psi_band_bounds(band: str | None, bands: tuple[float, float]) -> str | None:
    """A PSI band with its bounds: ``"stable (< 0.1)"``, ``"moderate (0.1–0.25)"``, ``"significant (≥ 0.25)"``."""
    if band is None:
        return None
    low, high = _num(bands[0]), _num(bands[1])
    bounds = {PSI_STABLE: f"< {low}", PSI_MODERATE: f"{low}–{high}", PSI_SIGNIFICANT: f"≥ {high}"}
    return f"{band} ({bounds[band]})" if band in bounds else band


def column_table_rows(report: DriftReport) -> list[dict[str, Any]]:
    """One row per feature column for the ``columns`` table, keys in :data:`COLUMN_TABLE_ORDER`.

    ``psi_drifted`` is shown as ``psi_beyond_noise`` (what it is: PSI above its critical value at this size, not
    the decision) and ``psi_band`` with its bounds; ``decided_by`` says which rule decided ``drifted``.
    """
    options = report.options
    rows = []
    for col in report.columns:
        rows.append(
            {
                "column": col.column,
                "drifted": col.drifted,
                "decided_by": decided_by(col, options.max_null_share_increase),
                "test": col.test,
                "statistic": col.statistic,
                "threshold": col.threshold,
                "critical": col.critical,
                "p_value_adjusted": col.p_value_adjusted,
                "p_value": col.p_value,
                "null_share_reference": col.null_share_reference,
                "null_share_current": col.null_share_current,
                "null_share_rise": col.null_share_rise,
                "psi": col.psi,
                "psi_band": psi_band_bounds(col.psi_band, options.psi_bands),
                "psi_critical": col.psi_critical,
                "psi_beyond_noise": col.psi_drifted,
                "kind": col.kind,
                "n_reference": col.n_reference,
                "n_current": col.n_current,
                "reason": col.reason,
            }
        )
    return rows


def column_table_descriptions(options: DriftOptions) -> dict[str, str]:
    """What each column of :func:`column_table_rows` means and which way passes (the table's schema)."""
    low, high = _num(options.psi_bands[0]), _num(options.psi_bands[1])
    return {
        "column": "The model input (feature column).",
        "drifted": (
            "THE DECISION for this column. true = drifted: its test drifted (decided_by), its share of missing "
            "values rose (null_share_rise) or it failed closed (reason). Passes when false. The data set drifts "
            f"when the share of drifted columns is at least {_num(options.drift_share)}."
        ),
        "decided_by": "The rule that decided `drifted`, with its numbers ('noise' is the critical value).",
        "test": (
            "p-value tests (ks, chi2, z, chisquare) drift when p_value_adjusted < threshold; distances "
            "(wasserstein, jensenshannon) when statistic >= threshold AND statistic > critical."
        ),
        "statistic": (
            "KS D, chi-square, z, Wasserstein distance / reference std, or Jensen-Shannon distance. A distance "
            "passes when below threshold, or at most critical."
        ),
        "threshold": (
            "p-value tests: significance level, passes when p_value_adjusted >= it. Distances: the smallest effect "
            "that counts, passes when statistic < it."
        ),
        "critical": (
            f"Distances: the {1 - (options.distance_alpha or 0.05):.0%} quantile of the distance under no drift at "
            "this batch size (Monte Carlo): at or below it the distance is sampling noise and passes. Computed "
            "only when the distance reaches threshold."
        ),
        "p_value_adjusted": "p-value tests: after Benjamini-Hochberg across the columns; passes when >= threshold.",
        "p_value": "p-value tests: the raw p-value.",
        "null_share_reference": "Share of missing values in the production model's training data.",
        "null_share_current": "Share of missing values in this data version.",
        "null_share_rise": (
            f"true when the missing share rose by more than {_num(options.max_null_share_increase)} (policy "
            "max_null_share_increase) and significantly (one-sided Fisher exact test): drifted, and a data-quality "
            "finding. Passes when false."
        ),
        "psi": (
            "Population stability index over the reference deciles (numeric) or categories. Information only: "
            "not part of the decision."
        ),
        "psi_band": f"Fixed PSI bands: stable < {low} <= moderate < {high} <= significant. Size-blind; information.",
        "psi_critical": (
            f"The {1 - options.psi_alpha:.0%} quantile of PSI under no drift at these sizes (permutation)."
        ),
        "psi_beyond_noise": (
            "psi > psi_critical: the change is detectable at this size, however small (tens of thousands of rows "
            "make a PSI of 0.005 detectable). Information, not the decision: a column drifts only when its test's "
            "effect also reaches the threshold. Stored as psi_drifted."
        ),
        "kind": "numeric or categorical (how the column is tested).",
        "n_reference": "Present values in the reference.",
        "n_current": "Present values in this data version.",
        "reason": (
            "Why there is no statistic: failed closed (no values, missing column, no reference values: drifted) "
            "or no values on either side (unchanged)."
        ),
    }


@dataclass(frozen=True)
class QualityFinding:
    """One data-quality finding the ``data_quality`` check warns about.

    Attributes:
        column: The column.
        finding: :data:`NEW_CATEGORIES`, :data:`NULL_SHARE_ROSE` or :data:`OUT_OF_RANGE`.
        detail: The numbers, in words (``"2 new categories in 0.31% of rows: ANC (50), MTJ (12)"``).
    """

    column: str
    finding: str
    detail: str


def _examples(top: Sequence[tuple[str, int]], total: int) -> str:
    shown = ", ".join(f"{name} ({count})" for name, count in top[:_EXAMPLES])
    return shown + (", …" if total > len(top[:_EXAMPLES]) else "")


def _bounds(out: OutOfRange) -> str:
    return f"[{'-inf' if out.min is None else _num(out.min)}, {'inf' if out.max is None else _num(out.max)}]"


def _observations(report: DriftReport, max_new_category_share: float) -> dict[str, list[tuple[QualityFinding, bool]]]:
    """Per reference column (in order): everything its data quality shows, each with whether the check warns on it."""
    quality = report.data_quality
    unseen = {u.column: u for u in quality.unseen_categories}
    ranges = {o.column: o for o in quality.out_of_range}
    dtypes = {d.column: d for d in quality.dtype_changes}
    rows = report.n_rows
    seen: dict[str, list[tuple[QualityFinding, bool]]] = {}
    for share in quality.null_shares:
        name = share.column
        found = seen.setdefault(name, [])
        if name in quality.missing_columns:
            found.append((QualityFinding(name, "missing column", "missing column (see no_drift)"), False))
        if share.rose:
            detail = f"missing share {share.reference:.1%} → {share.current or 0.0:.1%}"
            found.append((QualityFinding(name, NULL_SHARE_ROSE, detail), True))
        new = unseen.get(name)
        if new is not None and rows:
            detail = (
                f"{new.n_categories} new categor{'y' if new.n_categories == 1 else 'ies'} in {new.n_rows / rows:.2%} "
                f"of rows: {_examples(new.top, new.n_categories)}"
                + (" (the reference pooled its rare categories: maybe one of them)" if new.pooled else "")
            )
            warns = not new.pooled and new.n_rows / rows > max_new_category_share
            found.append((QualityFinding(name, NEW_CATEGORIES, detail), warns))
        out = ranges.get(name)
        if out is not None and rows:
            detail = (
                f"{(out.below + out.above) / rows:.2%} of rows outside {_bounds(out)} "
                f"({out.below} below, {out.above} above)"
            )
            found.append((QualityFinding(name, OUT_OF_RANGE, detail), True))
        dtype = dtypes.get(name)
        if dtype is not None:
            detail = f"dtype {dtype.reference} → {dtype.current}" + (
                f" ({dtype.unparseable} values not numbers)" if dtype.unparseable else ""
            )
            found.append((QualityFinding(name, "dtype changed", detail), False))
    return seen


def data_quality_findings(report: DriftReport, max_new_category_share: float) -> tuple[QualityFinding, ...]:
    """The findings of a report that the ``data_quality`` check warns about, column by column in reference order.

    * new categories: more than ``max_new_category_share`` of the data version's rows carry categories the
      reference never saw (not counted when the reference pooled its rare categories: such a category may be
      one of them);
    * missing share rose: beyond the policy's ``max_null_share_increase`` and significantly (``NullShare.rose``);
    * out of range: any value outside the dataset spec's [min, max].

    Missing columns (failed closed in ``no_drift``) and dtype changes are shown in the table, not warned on.

    Args:
        report: The drift report.
        max_new_category_share: The policy's limit, a share of rows in [0, 1] (0: any new category).
    """
    observed = _observations(report, max_new_category_share)
    return tuple(finding for found in observed.values() for finding, warns in found if warns)


def data_quality_rows(report: DriftReport, max_new_category_share: float) -> list[dict[str, Any]]:
    """One row per reference column for the ``data_quality`` table, keys in :data:`DATA_QUALITY_TABLE_ORDER`.

    ``flagged`` is the ``data_quality`` check's verdict on the column (:func:`data_quality_findings`), ``finding``
    everything seen, in words (``"ok"`` when nothing); shares are of the data version's rows. Extra columns of the
    batch (not monitored) follow with their finding only.
    """
    quality = report.data_quality
    kinds = {c.column: c.kind for c in report.columns}
    if report.prediction_drift is not None:
        kinds[report.prediction_drift.column] = report.prediction_drift.kind
    unseen = {u.column: u for u in quality.unseen_categories}
    ranges = {o.column: o for o in quality.out_of_range}
    dtypes = {d.column: d for d in quality.dtype_changes}
    observed = _observations(report, max_new_category_share)
    total = report.n_rows
    rows: list[dict[str, Any]] = []
    for share in quality.null_shares:
        name = share.column
        categorical = kinds.get(name) == CATEGORICAL
        new, out, dtype = unseen.get(name), ranges.get(name), dtypes.get(name)
        found = observed[name]
        rows.append(
            {
                "column": name,
                "flagged": any(warns for _, warns in found),
                "finding": "; ".join(f.detail for f, _ in found) or "ok",
                "null_share_reference": share.reference,
                "null_share_current": share.current,
                "new_category_share": new.n_rows / total if new and total else (0.0 if categorical else None),
                "new_categories": new.n_categories if new else (0 if categorical else None),
                "new_category_examples": _examples(new.top, new.n_categories) if new else None,
                "out_of_range_share": (out.below + out.above) / total if out and total else None,
                "allowed_range": _bounds(out) if out else None,
                "null_share_rise": share.rose,
                "dtype": f"{dtype.reference} → {dtype.current}" if dtype else None,
            }
        )
    rows.extend(
        {"column": name, "flagged": False, "finding": "extra column (not monitored)"} for name in quality.extra_columns
    )
    return rows


def data_quality_descriptions(options: DriftOptions, max_new_category_share: float) -> dict[str, str]:
    """What each column of :func:`data_quality_rows` means and which way passes (the table's schema)."""
    return {
        "column": "The monitored column.",
        "flagged": (
            "THE data_quality CHECK'S VERDICT on this column: true when it has new categories in more than "
            f"{max_new_category_share:.2%} of rows (policy max_new_category_share), a missing share that rose "
            f"beyond {_num(options.max_null_share_increase)} (max_null_share_increase), or values out of the spec's "
            "range. Passes when false."
        ),
        "finding": "Everything seen in the column, with its numbers ('ok' when nothing).",
        "null_share_reference": "Share of missing values in the production model's training data.",
        "null_share_current": "Share of missing values in this data version.",
        "null_share_rise": "The rise is beyond max_null_share_increase and significant (Fisher). Passes when false.",
        "new_categories": "Categories of this data version the reference never saw (categorical columns).",
        "new_category_share": f"Share of rows with such a category; passes when <= {max_new_category_share:.2%}.",
        "new_category_examples": "The most frequent new categories, with their row counts.",
        "out_of_range_share": "Share of rows outside the dataset spec's [min, max]; passes when empty (none).",
        "allowed_range": "The dataset spec's [min, max] of the column.",
        "dtype": "Reference dtype → current dtype, when its kind changed (a numeric column arriving as text).",
    }


@dataclass(frozen=True)
class ColumnHistogram:
    """Reference vs current shares of rows of one column over buckets, for display.

    Attributes:
        column: Column name.
        unit: What a bucket is (``"reference decile bin"`` or ``"category"``).
        labels: One label per bucket (``"≤ 1200"``, ``"> 2100"``, ``"JFK"``, ``"other"``, ``"new (3)"``,
            ``"missing"``).
        reference: Share of the reference rows per bucket (missing values included in the denominator).
        current: Share of the data version's rows per bucket.
    """

    column: str
    unit: str
    labels: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]


def histogram_columns(
    report: DriftReport, most: int = HISTOGRAM_MAX_COLUMNS, least: int = HISTOGRAM_MIN_COLUMNS
) -> list[str]:
    """The columns worth a histogram: the drifted ones (at most ``most``, largest PSI first), topped up to
    ``least`` with the undrifted columns of largest PSI."""

    def psi_of(col: ColumnDrift) -> float:
        return math.inf if col.psi is None else col.psi

    drifted = sorted((c for c in report.columns if c.drifted), key=lambda c: (-psi_of(c), c.column))[:most]
    rest = sorted(
        (c for c in report.columns if not c.drifted and c.psi is not None), key=lambda c: (-psi_of(c), c.column)
    )
    return [c.column for c in [*drifted, *rest[: max(least - len(drifted), 0)]]]


def _shares(counts: Sequence[float], total: float) -> tuple[float, ...]:
    return tuple(float(c) / total if total else 0.0 for c in counts)


def column_histogram(
    reference: ColumnReference, series: pd.Series, max_categories: int = HISTOGRAM_CATEGORIES
) -> ColumnHistogram:
    """Shares of rows per bucket, reference vs ``series``: a numeric column over the reference's PSI decile bins
    (right-closed, outer bins open), a categorical one over its ``max_categories`` largest categories (on either
    side), ``other``, ``new (<k>)`` (categories the reference never saw) and ``missing`` (rows without a value;
    for numbers ±inf too). Empty buckets on both sides are left out. Display only: no statistic depends on it."""
    if isinstance(reference, NumericReference):
        values, _ = _as_float(series)
        side = _sort_numeric(values)
        edges = np.asarray(reference.psi_edges, dtype=np.float64)
        cur_bins = np.diff(np.concatenate(([0], np.searchsorted(side.finite, edges, side="right"), [side.finite.size])))
        labels = [f"≤ {_num(e)}" for e in edges] + ([f"> {_num(edges[-1])}"] if edges.size else ["all values"])
        ref_counts = [*reference.psi_counts, reference.n_missing + reference.n_infinite]
        cur_counts = [*cur_bins.tolist(), side.n_missing + side.n_infinite]
        labels.append("missing")
        unit = "reference decile bin"
        ref_total = reference.n + reference.n_missing + reference.n_infinite
    else:
        counts, n_missing = _category_counts(series)
        ref_total = reference.n + reference.n_missing
        known = dict(zip(reference.categories, reference.counts, strict=True))
        cur_total = max(len(series), 1)
        ranked = sorted(known, key=lambda c: (-max(known[c] / max(ref_total, 1), counts.get(c, 0) / cur_total), c))
        shown = ranked[:max_categories]
        rest = set(ranked[max_categories:])
        unseen = {c: n for c, n in counts.items() if c not in known}
        labels = [*shown, "other", f"new ({len(unseen)})", "missing"]
        ref_counts = [
            *(known[c] for c in shown),
            sum(known[c] for c in rest) + reference.other_count,
            0,
            reference.n_missing,
        ]
        cur_counts = [
            *(counts.get(c, 0) for c in shown),
            sum(counts.get(c, 0) for c in rest),
            sum(unseen.values()),
            n_missing,
        ]
        unit = "category"
    ref_shares, cur_shares = _shares(ref_counts, ref_total), _shares(cur_counts, len(series))
    keep = [i for i in range(len(labels)) if ref_shares[i] > 0 or cur_shares[i] > 0]
    return ColumnHistogram(
        column=reference.name,
        unit=unit,
        labels=tuple(labels[i] for i in keep),
        reference=tuple(ref_shares[i] for i in keep),
        current=tuple(cur_shares[i] for i in keep),
    )


def _bar(share: float, scale: float, width: int) -> str:
    """A bar of ``share / scale`` of ``width`` characters in eighths; longer than ``width``: clipped, ending in »."""
    eighths = round(share / scale * width * 8) if scale > 0 else 0
    if share > 0 and eighths == 0:
        eighths = 1
    if eighths > width * 8:
        return "█" * (width - 1) + "»"
    return ("█" * (eighths // 8) + _EIGHTHS[eighths % 8].strip()).ljust(width)


def histogram_markdown(histogram: ColumnHistogram, verdict: ColumnDrift | None = None, reading: str = "") -> str:
    """The histogram as a short markdown text bar chart (reference vs current), under :data:`MARKDOWN_INLINE_LIMIT`
    characters so the UI shows it inline.

    Bars share one scale, set by the largest bucket other than ``other`` (a pooled ``other`` bucket would flatten
    the rest; its bar is clipped with »). The title carries the column's verdict, ``reading`` (e.g. the rule that
    decided, :func:`decided_by`) and PSI when given.
    """
    # Short lines: the UI does not wrap a markdown value in its metadata table, it clips it.
    heading = [
        f"**`{histogram.column}`**" + ("" if verdict is None else (": drifted" if verdict.drifted else ": not drifted"))
    ]
    heading.extend(part for part in reading.split("; ") if part)
    psi = "" if verdict is None or verdict.psi is None else f"PSI {_num(verdict.psi)}; "
    heading.append(f"{psi}share of rows per {histogram.unit}:")
    title = "  \n".join(heading)
    width_label = min(max((len(label) for label in histogram.labels), default=0), _LABEL_WIDTH)
    labels = [label if len(label) <= width_label else label[: width_label - 1] + "…" for label in histogram.labels]
    scaled = [
        max(ref, cur)
        for label, ref, cur in zip(histogram.labels, histogram.reference, histogram.current, strict=True)
        if label != "other"
    ]
    scale = max(scaled or [*histogram.reference, *histogram.current, 0.0])
    text = title
    for width in (10, 6, 3, 0):
        lines = [f"{'':<{width_label}} {'reference':<{width + 7}} current"]
        for label, ref, cur in zip(labels, histogram.reference, histogram.current, strict=True):
            bars = f"{ref:6.1%} {_bar(ref, scale, width)} {cur:6.1%} {_bar(cur, scale, width)}"
            lines.append(f"{label:<{width_label}} {bars}".rstrip())
        text = f"{title}\n\n```\n" + "\n".join(lines) + "\n```"
        if len(text) < MARKDOWN_INLINE_LIMIT:
            return text
    return text[: MARKDOWN_INLINE_LIMIT - 5] + "\n```"
