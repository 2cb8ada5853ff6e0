"""The inputs training builds from a features frame (issue 14, point 6: memory of a 1M-row version).

Training on 1M rows held a new ``str`` object per row of each categorical column, copies of every column of the
train rows and Python sets of every id; these tests pin what replaced them: the same values, built compactly.
"""

import numpy as np
import pandas as pd
import pytest

from mlops_assets.demo_data import synthetic
from mlops_assets.ml import features as fcore
from mlops_assets.ml import training
from mlops_assets.ml.features import HOLDOUT, LABEL_COLUMN, SPLIT_COLUMN, TRAIN, build_features, model_inputs
from mlops_assets.ml.spec import load_spec
from mlops_assets.ml.validation import coerce_to_schema

pytestmark = pytest.mark.core


@pytest.fixture(scope="module")
def spec():
    return load_spec("synthetic")


@pytest.fixture(scope="module")
def frame(spec) -> pd.DataFrame:
    out = build_features(coerce_to_schema(synthetic.generate(600, seed=3), spec), spec)
    out.loc[out.index[::7], "region"] = None  # missing categories too
    return out


def test_categorical_inputs_share_one_str_per_distinct_value(frame: pd.DataFrame, spec) -> None:
    """Values exactly as ``to_numpy(dtype=object, na_value=np.nan)`` gives them, but one ``str`` object per value."""
    inputs = model_inputs(frame, spec)
    for name in spec.categorical_features:
        assert isinstance(frame[name].dtype, pd.StringDtype)
        expected = pd.Series(frame[name].to_numpy(dtype=object, na_value=np.nan), index=frame.index, dtype=object)
        pd.testing.assert_series_equal(inputs[name], expected, check_names=False, check_exact=True)
        present = inputs[name].dropna()
        assert {type(v) for v in present} == {str}
        assert inputs[name].isna().sum() == frame[name].isna().sum()
        assert len({id(v) for v in present}) == present.nunique()


def test_train_inputs_are_the_feature_columns_of_the_train_rows(frame: pd.DataFrame, spec) -> None:
    X, y = training._train_rows(frame, spec)
    train = frame[frame[SPLIT_COLUMN] == TRAIN]
    pd.testing.assert_frame_equal(X, model_inputs(train, spec), check_exact=True)
    assert list(X.columns) == fcore.feature_columns(spec)
    assert [str(t) for t in X.dtypes] == ["float64"] * len(spec.numeric_features) + ["object"] * len(
        spec.categorical_features
    )
    assert np.array_equal(y, train[LABEL_COLUMN].to_numpy(dtype=np.int64))


def test_train_inputs_name_a_missing_feature_column(frame: pd.DataFrame, spec) -> None:
    with pytest.raises(ValueError, match=r"frame lacks feature columns \['plan'\]"):
        training._train_rows(frame.drop(columns=["plan"]), spec)


def test_profile_of_a_split_is_the_profile_of_its_rows(frame: pd.DataFrame, spec) -> None:
    for split in (TRAIN, HOLDOUT):
        rows = frame[frame[SPLIT_COLUMN] == split]
        assert fcore.profile_features(frame, spec, split) == fcore.profile_features(rows, spec, None)


def test_window_refuses_a_current_version_whose_holdout_id_is_a_train_id(frame: pd.DataFrame, spec) -> None:
    current = frame.copy()
    holdout = current.index[current[SPLIT_COLUMN] == HOLDOUT]
    train_ids = current.loc[current[SPLIT_COLUMN] == TRAIN, spec.id_column]
    current.loc[holdout[:2], spec.id_column] = train_ids.iloc[[5, 3]].to_numpy()
    leaked = sorted(str(i) for i in train_ids.iloc[[5, 3]])
    with pytest.raises(ValueError, match=rf"2 holdout ids .* \(e\.g\. customer_id \['{leaked[0]}', '{leaked[1]}'\]\)"):
        fcore.training_window(current, [], spec)


def test_text_membership_is_pandas_isin() -> None:
    rng = np.random.default_rng(0)
    pool = np.array(["a", "b", "ab", "10", "1", "0", ""], dtype=object)
    for _ in range(20):
        keys = pd.Series(rng.choice(pool, 50), dtype="str")
        values = pd.Series(rng.choice(pool, int(rng.integers(0, 10))), dtype="str")
        if rng.random() < 0.5:
            keys[rng.integers(0, 50, 5)] = None
            values[len(values)] = None
        assert np.array_equal(fcore._isin_text(keys, values), keys.isin(values).to_numpy())
