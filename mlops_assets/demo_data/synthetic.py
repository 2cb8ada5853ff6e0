"""Seeded synthetic churn data matching ``specs/synthetic.yaml``, with optional drift and defects.

The label ``churned`` ("yes"/"no") is drawn from a fixed, partly non-linear logistic function of the
features, so a tree ensemble beats a linear baseline. It is learnable (a gradient-boosting model
reaches a ROC AUC around 0.8 on a few thousand rows) and the relationship stays the same when
``shift`` moves the feature distributions (covariate drift, not concept drift). ``gender`` is not a
feature; ``gender_gap`` adds a known amount to the log-odds of churn for ``gender == "f"``, a
fairness gap the fairness gates should find.

Every random draw of the clean data is made in a fixed order whatever the defect arguments, so a
frame generated with defects differs from the clean frame of the same seed only in the defect cells.
"""

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mlops_assets.storage.files import write_frame_atomic

REGIONS: tuple[str, ...] = ("north", "south", "east", "west")
PLANS: tuple[str, ...] = ("basic", "plus", "premium")
GENDERS: tuple[str, ...] = ("f", "m")
LABEL_VALUES: tuple[str, str] = ("no", "yes")

#: Column order of a generated frame; identical to the column order of ``specs/synthetic.yaml``.
COLUMNS: tuple[str, ...] = (
    "customer_id",
    "event_time",
    "age",
    "income",
    "tenure_months",
    "balance",
    "region",
    "plan",
    "gender",
    "churned",
)

#: Event times start here; customer ``i`` is seen in minute ``i`` after it (plus a few seconds).
EPOCH = pd.Timestamp("2024-01-01T00:00:00Z")

#: A category value that is not in the spec (defect ``new_category``).
NEW_REGION = "central"
#: A label value that is not in the spec (defect ``label_out_of_domain``).
OUT_OF_DOMAIN_LABEL = "maybe"
#: Non-numeric strings written into a column by the defect ``wrong_type_column``. None of them is one
#: of pandas' missing-value markers, so a CSV round trip keeps them as text.
WRONG_TYPE_VALUES: tuple[str, ...] = ("unknown", "twelve", "12a")

#: Share of rows hit by the defects new_category, wrong_type_column and label_out_of_domain.
DEFECT_SHARE = 0.03
#: Share of ``balance`` values that are missing in clean data (the column is nullable).
BALANCE_MISSING_SHARE = 0.05

# Fixed reference values of the unshifted distributions: the logistic function standardises with these
# constants, not with the sample, so the label rule is identical in every version and under drift.
_AGE_MEAN, _AGE_SD = 44.0, 13.0
_LOG_INCOME_MEAN, _LOG_INCOME_SD = float(np.log(45_000.0)), 0.5
_TENURE_SHAPE, _TENURE_SCALE = 2.0, 24.0
_TENURE_MEAN, _TENURE_SD = 48.0, 34.0
_BALANCE_MEAN, _BALANCE_SD = 1_500.0, 1_200.0

_INTERCEPT = -1.3
_PLAN_EFFECT = {"basic": 0.9, "plus": 0.0, "premium": -1.0}
_REGION_EFFECT = {"north": 0.0, "south": 0.5, "east": -0.2, "west": 0.2}


def _defect_rows(rng: np.random.Generator, n_rows: int, share: float) -> np.ndarray:
    """Sorted positions of ``round(share * n_rows)`` distinct rows, at least one when ``share > 0``."""
    if share <= 0 or n_rows == 0:
        return np.array([], dtype=np.int64)
    k = min(n_rows, max(1, round(share * n_rows)))
    return np.sort(rng.choice(n_rows, size=k, replace=False))


def generate(
    n_rows: int,
    seed: int,
    *,
    start_id: int = 0,
    shift: float = 0.0,
    null_share: float = 0.0,
    new_category: bool = False,
    label_noise: float = 0.0,
    gender_gap: float = 0.0,
    wrong_type_column: str | None = None,
    label_out_of_domain: bool = False,
    duplicate_ids: int = 0,
) -> pd.DataFrame:
    """Generate one synthetic data version.

    Args:
        n_rows: Number of rows.
        seed: Seed of every random draw; the same arguments always give the same frame.
        start_id: First ``customer_id``; ids are ``start_id .. start_id + n_rows - 1`` and event times
            increase with the id, so consecutive versions with disjoint id ranges are time-ordered.
        shift: Drift of the numeric features, in rough units of their spread: older customers, higher
            income and balance, longer tenure. The label rule itself does not change.
        null_share: Share of ``income`` values (a non-nullable column) set to missing.
        new_category: Put the region ``"central"``, which the spec does not list, into some rows.
        label_noise: Share of labels flipped at random (0 keeps the logistic labels).
        gender_gap: Added to the log-odds of churn for ``gender == "f"`` (positive: more churn).
        wrong_type_column: Name of a column into which some non-numeric strings ("unknown", ...) are
            written, making it unparseable for its type (meant for numeric and datetime columns).
        label_out_of_domain: Put the label ``"maybe"`` into some rows.
        duplicate_ids: Number of rows whose ``customer_id`` is overwritten with another row's id.

    Returns:
        A frame with the columns of :data:`COLUMNS`. Clean dtypes: ``int64`` ids/age/tenure, ``float64``
        income/balance, ``datetime64[ns, UTC]`` event_time, ``str`` categories and label.

    Raises:
        ValueError: an argument is out of range or ``wrong_type_column`` is not a column.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    if not 0.0 <= null_share <= 1.0:
        raise ValueError(f"null_share must be in [0, 1], got {null_share}")
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise must be in [0, 1], got {label_noise}")
    if not 0 <= duplicate_ids <= n_rows // 2:
        raise ValueError(f"duplicate_ids must be in [0, n_rows // 2 = {n_rows // 2}], got {duplicate_ids}")
    if wrong_type_column is not None and wrong_type_column not in COLUMNS:
        raise ValueError(f"wrong_type_column {wrong_type_column!r} is not one of {list(COLUMNS)}")

    rng = np.random.default_rng(seed)
    ids = np.arange(start_id, start_id + n_rows, dtype=np.int64)
    # Minute i for customer i keeps event_time increasing in the id; jitter below a minute keeps that order.
    seconds = ids * 60 + rng.integers(0, 60, size=n_rows)
    event_time = EPOCH + pd.to_timedelta(seconds, unit="s")
    age = np.clip(np.rint(rng.normal(_AGE_MEAN + 6.0 * shift, _AGE_SD, n_rows)), 18, 100).astype(np.int64)
    log_income = rng.normal(_LOG_INCOME_MEAN + 0.25 * shift, _LOG_INCOME_SD, n_rows)
    income = np.round(np.exp(log_income), 2)
    tenure_raw = rng.gamma(_TENURE_SHAPE, _TENURE_SCALE, n_rows) + 12.0 * shift
    tenure = np.clip(np.rint(tenure_raw), 0, 600).astype(np.int64)
    balance = np.round(rng.normal(_BALANCE_MEAN + 400.0 * shift, _BALANCE_SD, n_rows), 2)
    balance_missing = rng.random(n_rows) < BALANCE_MISSING_SHARE
    region = rng.choice(np.array(REGIONS), size=n_rows, p=[0.3, 0.25, 0.25, 0.2])
    plan = rng.choice(np.array(PLANS), size=n_rows, p=[0.5, 0.3, 0.2])
    gender = rng.choice(np.array(GENDERS), size=n_rows)
    label_draw = rng.random(n_rows)
    noise_draw = rng.random(n_rows)

    balance_z = np.where(balance_missing, 0.0, (balance - _BALANCE_MEAN) / _BALANCE_SD)
    logit = (
        _INTERCEPT
        - 1.4 * (tenure - _TENURE_MEAN) / _TENURE_SD
        - 0.9 * (log_income - _LOG_INCOME_MEAN) / _LOG_INCOME_SD
        # Non-linear on purpose (a U-shape in age, a threshold interaction of tenure and plan): a linear
        # baseline cannot fit it, so a good candidate beats the baseline as on real data.
        + 0.9 * (((age - _AGE_MEAN) / _AGE_SD) ** 2 - 1.0)
        + 1.6 * ((tenure < 12) & (plan == "basic"))
        - 0.4 * balance_z
        + 0.6 * balance_missing
        + np.vectorize(_PLAN_EFFECT.__getitem__, otypes=[float])(plan)
        + np.vectorize(_REGION_EFFECT.__getitem__, otypes=[float])(region)
        + gender_gap * (gender == "f")
    )
    churned = label_draw < 1.0 / (1.0 + np.exp(-logit))
    churned ^= noise_draw < label_noise

    df = pd.DataFrame(
        {
            "customer_id": ids,
            "event_time": pd.Series(event_time, dtype="datetime64[ns, UTC]"),
            "age": age,
            "income": income,
            "tenure_months": tenure,
            "balance": np.where(balance_missing, np.nan, balance),
            "region": pd.Series(region, dtype="str"),
            "plan": pd.Series(plan, dtype="str"),
            "gender": pd.Series(gender, dtype="str"),
            "churned": pd.Series(np.where(churned, LABEL_VALUES[1], LABEL_VALUES[0]), dtype="str"),
        }
    )
    return _inject_defects(
        df,
        seed,
        null_share=null_share,
        new_category=new_category,
        wrong_type_column=wrong_type_column,
        label_out_of_domain=label_out_of_domain,
        duplicate_ids=duplicate_ids,
    )


def _inject_defects(
    df: pd.DataFrame,
    seed: int,
    *,
    null_share: float,
    new_category: bool,
    wrong_type_column: str | None,
    label_out_of_domain: bool,
    duplicate_ids: int,
) -> pd.DataFrame:
    # A separate generator per defect (keyed by seed and defect) so each defect hits the same rows
    # whichever other defects are requested, and the clean draws above are never disturbed.
    def rng_for(key: int) -> np.random.Generator:
        return np.random.default_rng([seed, key])

    n_rows = len(df)
    if null_share > 0:
        rows = _defect_rows(rng_for(1), n_rows, null_share)
        df.loc[rows, "income"] = np.nan
    if new_category:
        rows = _defect_rows(rng_for(2), n_rows, DEFECT_SHARE)
        df.loc[rows, "region"] = NEW_REGION
    if wrong_type_column is not None:
        rows = _defect_rows(rng_for(3), n_rows, DEFECT_SHARE)
        column = df[wrong_type_column].astype(object)
        column.iloc[rows] = [WRONG_TYPE_VALUES[i % len(WRONG_TYPE_VALUES)] for i in range(len(rows))]
        df[wrong_type_column] = column
    if label_out_of_domain:
        rows = _defect_rows(rng_for(4), n_rows, DEFECT_SHARE)
        df.loc[rows, "churned"] = OUT_OF_DOMAIN_LABEL
    if duplicate_ids > 0:
        # The last rows take the ids of the first rows, so exactly `duplicate_ids` ids appear twice.
        ids = df["customer_id"].to_numpy().copy()
        ids[n_rows - duplicate_ids :] = ids[:duplicate_ids]
        df["customer_id"] = ids
    return df


def version_file_name(version: int, fmt: Literal["csv", "parquet"] = "csv") -> str:
    """File name of one synthetic version, e.g. ``synthetic_v001.csv`` for version 1."""
    return f"synthetic_v{version:03d}.{fmt}"


def version_seed(seed: int, version: int) -> int:
    """Seed of one version, derived from the base seed so versions differ but stay reproducible."""
    return int(np.random.SeedSequence([seed, version]).generate_state(1)[0])


def write_versions(
    directory: Path,
    n_versions: int,
    rows_per_version: int,
    seed: int,
    fmt: Literal["csv", "parquet"] = "csv",
) -> list[Path]:
    """Write clean synthetic versions ``synthetic_v001.<fmt>``, ``synthetic_v002.<fmt>``, ...

    Version ``k`` (1-based) holds ids ``(k-1) * rows_per_version ...`` so ids are disjoint across
    versions and event times increase from one version to the next. Each file is written atomically.

    Args:
        directory: Where to write (created if missing).
        n_versions: Number of versions.
        rows_per_version: Rows per version.
        seed: Base seed; version ``k`` uses :func:`version_seed` ``(seed, k)``.
        fmt: ``csv`` or ``parquet``.

    Returns:
        The written paths, version 1 first.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for version in range(1, n_versions + 1):
        df = generate(rows_per_version, version_seed(seed, version), start_id=(version - 1) * rows_per_version)
        paths.append(write_frame_atomic(df, directory / version_file_name(version, fmt), fmt))
    return paths
