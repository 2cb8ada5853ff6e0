"""Tests of the synthetic data generator."""

import itertools
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_assets.demo_data.synthetic import (
    COLUMNS,
    NEW_REGION,
    OUT_OF_DOMAIN_LABEL,
    WRONG_TYPE_VALUES,
    generate,
    write_versions,
)
from mlops_assets.ml.spec import DatasetSpec, load_spec
from mlops_assets.ml.validation import read_data_file, validate_raw

pytestmark = pytest.mark.core


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    return load_spec("synthetic")


def _positive_rate(df: pd.DataFrame) -> float:
    return float((df["churned"] == "yes").mean())


def test_columns_match_the_spec(spec: DatasetSpec) -> None:
    df = generate(50, seed=0)
    assert tuple(df.columns) == COLUMNS == spec.column_names


def test_same_seed_same_frame_different_seed_different_frame() -> None:
    pd.testing.assert_frame_equal(generate(300, seed=42), generate(300, seed=42))
    pd.testing.assert_frame_equal(
        generate(300, seed=42, shift=0.5, null_share=0.1, new_category=True, duplicate_ids=3),
        generate(300, seed=42, shift=0.5, null_share=0.1, new_category=True, duplicate_ids=3),
    )
    assert not generate(300, seed=42)["income"].equals(generate(300, seed=43)["income"])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shift", [0.0, 1.5])
def test_clean_data_passes_the_raw_gates(spec: DatasetSpec, seed: int, shift: float) -> None:
    result = validate_raw(generate(400, seed=seed, shift=shift, gender_gap=1.0, label_noise=0.1), spec, "gen")
    assert result.passed, [g.message for g in result.gates if not g.passed]


def test_ids_and_event_times() -> None:
    df = generate(100, seed=1, start_id=1000)
    assert df["customer_id"].tolist() == list(range(1000, 1100))
    assert df["event_time"].is_monotonic_increasing
    assert str(df["event_time"].dt.tz) == "UTC"


def test_label_is_learnable() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    def xy(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        x = df[["age", "income", "tenure_months", "balance", "region", "plan"]].astype(
            {"region": "category", "plan": "category"}
        )
        return x, (df["churned"] == "yes").astype(int)

    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(*xy(generate(3000, seed=1)))
    x_test, y_test = xy(generate(2000, seed=2, start_id=3000))
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert auc > 0.75
    assert 0.2 < y_test.mean() < 0.5


def test_shift_moves_numeric_distributions() -> None:
    base = generate(5000, seed=3)
    drifted = generate(5000, seed=3, shift=1.0)
    assert drifted["age"].mean() - base["age"].mean() > 4
    assert drifted["income"].median() > 1.2 * base["income"].median()
    assert drifted["tenure_months"].mean() - base["tenure_months"].mean() > 8
    assert drifted["balance"].mean() - base["balance"].mean() > 300
    # Categorical mix and ids are untouched by numeric drift.
    assert drifted["region"].equals(base["region"])
    assert drifted["customer_id"].equals(base["customer_id"])


def test_gender_gap_shifts_the_positive_rate_of_one_gender() -> None:
    def gap(df: pd.DataFrame) -> float:
        return _positive_rate(df[df["gender"] == "f"]) - _positive_rate(df[df["gender"] == "m"])

    assert abs(gap(generate(20_000, seed=5))) < 0.03
    assert gap(generate(20_000, seed=5, gender_gap=1.0)) > 0.15
    assert gap(generate(20_000, seed=5, gender_gap=-1.0)) < -0.1  # smaller: the base rate is below 0.5


def test_label_noise_flips_labels() -> None:
    clean = generate(1000, seed=6)
    flipped = generate(1000, seed=6, label_noise=1.0)
    assert ((clean["churned"] == "yes") != (flipped["churned"] == "yes")).all()
    some = generate(1000, seed=6, label_noise=0.2)
    share_changed = float((some["churned"] != clean["churned"]).mean())
    assert 0.15 < share_changed < 0.25


def test_nulls_defect_only_touches_income() -> None:
    clean = generate(500, seed=7)
    broken = generate(500, seed=7, null_share=0.1)
    assert broken["income"].isna().sum() == 50
    assert clean["income"].notna().all()
    pd.testing.assert_frame_equal(broken.drop(columns="income"), clean.drop(columns="income"))
    kept = broken["income"].notna()
    assert broken.loc[kept, "income"].equals(clean.loc[kept, "income"])


def test_new_category_defect() -> None:
    clean = generate(500, seed=7)
    broken = generate(500, seed=7, new_category=True)
    hit = broken["region"] == NEW_REGION
    assert hit.sum() == 15
    assert not (clean["region"] == NEW_REGION).any()
    pd.testing.assert_frame_equal(broken.drop(columns="region"), clean.drop(columns="region"))


@pytest.mark.parametrize("column", ["income", "age", "event_time"])
def test_wrong_type_defect(column: str) -> None:
    broken = generate(500, seed=7, wrong_type_column=column)
    strings = broken[column].map(lambda v: isinstance(v, str))
    assert strings.sum() == 15
    assert set(broken.loc[strings, column]) == set(WRONG_TYPE_VALUES)


def test_label_out_of_domain_defect() -> None:
    broken = generate(500, seed=7, label_out_of_domain=True)
    assert (broken["churned"] == OUT_OF_DOMAIN_LABEL).sum() == 15
    assert set(broken["churned"]) == {"yes", "no", OUT_OF_DOMAIN_LABEL}


def test_duplicate_ids_defect() -> None:
    broken = generate(500, seed=7, duplicate_ids=4)
    assert broken["customer_id"].duplicated().sum() == 4
    assert broken["customer_id"].iloc[-4:].tolist() == [0, 1, 2, 3]


def test_small_defect_shares_hit_at_least_one_row() -> None:
    broken = generate(10, seed=7, null_share=0.001, new_category=True, label_out_of_domain=True)
    assert broken["income"].isna().sum() == 1
    assert (broken["region"] == NEW_REGION).sum() == 1
    assert (broken["churned"] == OUT_OF_DOMAIN_LABEL).sum() == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"null_share": 1.5},
        {"label_noise": -0.1},
        {"duplicate_ids": 60},
        {"wrong_type_column": "shoe_size"},
    ],
)
def test_invalid_arguments_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        generate(100, seed=0, **kwargs)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(n_rows=st.integers(0, 300), seed=st.integers(0, 2**32 - 1), shift=st.floats(-3, 3))
def test_generated_values_respect_the_spec(n_rows: int, seed: int, shift: float) -> None:
    spec = load_spec("synthetic")
    df = generate(n_rows, seed=seed, shift=shift)
    assert len(df) == n_rows and df["customer_id"].is_unique
    for col in spec.columns:
        values = df[col.name]
        if not col.nullable:
            assert values.notna().all(), col.name
        if col.min is not None:
            assert (values.dropna() >= col.min).all(), col.name
        if col.max is not None:
            assert (values.dropna() <= col.max).all(), col.name
        if col.categories is not None:
            assert set(values) <= set(col.categories), col.name
    assert set(df["churned"]) <= set(spec.label.values)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_versions(tmp_path: Path, spec: DatasetSpec, fmt: Literal["csv", "parquet"]) -> None:
    paths = write_versions(tmp_path / "landing", n_versions=3, rows_per_version=250, seed=9, fmt=fmt)
    assert [p.name for p in paths] == [f"synthetic_v00{i}.{fmt}" for i in (1, 2, 3)]
    assert sorted(p.name for p in (tmp_path / "landing").iterdir()) == [p.name for p in paths]
    frames = []
    for path in paths:
        result = validate_raw(read_data_file(path, spec), spec, str(path))
        assert result.passed, [g.message for g in result.gates if not g.passed]
        assert result.typed is not None
        frames.append(result.typed)
    all_ids = pd.concat([f["customer_id"] for f in frames])
    assert all_ids.is_unique and len(all_ids) == 750
    for earlier, later in itertools.pairwise(frames):
        assert earlier["event_time"].max() < later["event_time"].min()
    # Versions differ from each other (not the same draws with new ids) ...
    assert not np.allclose(frames[0]["income"].to_numpy(), frames[1]["income"].to_numpy())
    # ... and re-running with the same seed rewrites identical files.
    again = write_versions(tmp_path / "again", n_versions=3, rows_per_version=250, seed=9, fmt=fmt)
    for first, second in zip(paths, again, strict=True):
        pd.testing.assert_frame_equal(read_data_file(first, spec), read_data_file(second, spec))
