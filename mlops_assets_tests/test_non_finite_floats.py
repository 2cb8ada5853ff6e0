"""A float column refuses ±inf with a rule that names it: scikit-learn refuses infinity at training or scoring
("Input X contains infinity or a value too large for dtype('float64')"), which named neither the file nor the
column and came after every data gate had passed."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_assets.ml.spec import spec_from_dict
from mlops_assets.ml.validation import gate_schema_valid, read_data_file
from mlops_assets.serving.signature import RequestError, parse_records, signature_of
from mlops_assets.storage.files import write_frame_atomic

pytestmark = pytest.mark.core

SPEC = spec_from_dict(
    {
        "name": "balances",
        "id_column": "rid",
        "label": {"column": "y", "positive": 1, "values": [0, 1]},
        "features": ["balance", "income"],
        "columns": {
            "rid": {"type": "int"},
            "balance": {"type": "float", "nullable": True},
            "income": {"type": "float", "min": 0},
            "y": {"type": "int"},
        },
    }
)


def _frame(balance: object) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rid": [1, 2, 3],
            "balance": pd.Series([1.5, balance, None], dtype=object),
            "income": [1.0, 2.0, 3.0],
            "y": [0, 1, 0],
        }
    )


@pytest.mark.parametrize("text", ["inf", "-inf", "Infinity", "-Infinity", "1e999"])
def test_an_infinity_in_a_csv_float_column_fails_the_schema_naming_column_and_rule(tmp_path: Path, text: str) -> None:
    path = write_frame_atomic(_frame(text), tmp_path / "balances.csv", fmt="csv")
    result = gate_schema_valid(read_data_file(path, SPEC), SPEC, path.name)
    assert not result.passed
    assert "balance" in result.message and "finite" in result.message and path.name in result.message


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_an_infinity_in_a_parquet_float_column_fails_the_schema(tmp_path: Path, value: float) -> None:
    frame = _frame(value).astype({"balance": "float64"})
    path = write_frame_atomic(frame, tmp_path / "balances.parquet", fmt="parquet")
    result = gate_schema_valid(read_data_file(path, SPEC), SPEC, path.name)
    assert not result.passed
    assert "balance" in result.message and "finite" in result.message


def test_finite_values_and_missing_ones_still_pass(tmp_path: Path) -> None:
    for fmt in ("csv", "parquet"):
        path = write_frame_atomic(_frame(-2.5e300).astype({"balance": "float64"}), tmp_path / f"ok.{fmt}", fmt=fmt)
        assert gate_schema_valid(read_data_file(path, SPEC), SPEC, path.name).passed, fmt


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), "inf", "-Infinity", "1e999"])
def test_the_request_path_refuses_the_same_values_with_the_same_rule(value: object) -> None:
    with pytest.raises(RequestError) as caught:
        parse_records(signature_of(SPEC), [{"balance": value, "income": 1.0}])
    assert (caught.value.field, caught.value.rule, caught.value.status) == ("balance", "finite", 422)
    assert parse_records(signature_of(SPEC), [{"balance": float("nan"), "income": 1.0}])  # missing, nullable
