"""Cell texts and values the data schema refuses, in CSV and Parquet, and the request path with it.

* A date-time column refuses "now" and "today": pandas reads them as the time of reading, so the same file would give
  a different value on every run (and a data version would no longer be reproducible from its bytes); and numbers
  (epoch offsets, or the float 2**63 that pandas wrapped to NaT).
* A number column (int or float) refuses text Python's ``int``/``float`` read but no data file writes: ``"1_000"``
  and non-ASCII digits (``"١٢٣"``); float columns accepted them (issue 14 follow-up), int columns did not.
"""

from pathlib import Path

import pandas as pd
import pytest

from mlops_assets.ml.spec import spec_from_dict
from mlops_assets.ml.validation import coerce_to_schema, gate_schema_valid, read_data_file
from mlops_assets.serving.signature import RequestError, parse_records, signature_of
from mlops_assets.storage.files import write_frame_atomic

pytestmark = pytest.mark.core

SPEC = spec_from_dict(
    {
        "name": "times",
        "id_column": "rid",
        "label": {"column": "y", "positive": 1, "values": [0, 1]},
        "features": ["x"],
        "columns": {
            "rid": {"type": "int"},
            "x": {"type": "float"},
            "n": {"type": "int", "nullable": True},
            "at": {"type": "datetime", "nullable": True},
            "y": {"type": "int"},
        },
    }
)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("text", ["now", "today", " Now ", "TODAY"])
def test_a_relative_time_in_a_datetime_column_fails_the_schema_naming_the_column(
    tmp_path: Path, fmt: str, text: str
) -> None:
    frame = pd.DataFrame(
        {"rid": [1, 2], "x": [0.5, 1.5], "n": [1, None], "at": ["2013-01-01T05:00:00Z", text], "y": [0, 1]}
    )
    path = write_frame_atomic(frame, tmp_path / f"times.{fmt}", fmt=fmt)  # type: ignore[arg-type]
    result = gate_schema_valid(read_data_file(path, SPEC), SPEC, path.name)
    assert not result.passed
    assert "column(s) at" in result.message and path.name in result.message


def test_iso_texts_still_pass_and_the_request_path_refuses_the_same_texts(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "rid": [1, 2],
            "x": [0.5, 1.5],
            "n": [1, None],
            "at": ["2013-01-01T05:00:00Z", "2013-01-02 06:30:00+01:00"],
            "y": [0, 1],
        }
    )
    path = write_frame_atomic(frame, tmp_path / "times.csv", fmt="csv")
    assert gate_schema_valid(read_data_file(path, SPEC), SPEC, path.name).passed
    signature = signature_of(SPEC)
    for text in ("now", "today"):
        with pytest.raises(RequestError) as caught:
            parse_records(signature, [{"x": 0.5, "at": text}])
        assert (caught.value.field, caught.value.rule) == ("at", "type")


@pytest.mark.parametrize("number", [9.223372036854776e18, 1356998400.0, 5])
def test_a_number_in_a_datetime_column_fails_the_schema_instead_of_becoming_a_time_or_missing(
    tmp_path: Path, number: float
) -> None:
    # The float 2**63 used to wrap to NaT in pandas (a value silently read as missing, which a nullable column
    # accepted); other numbers would be epoch offsets. A date-time is ISO 8601 text.
    spec = SPEC
    frame = pd.DataFrame(
        {"rid": [1, 2], "x": [0.5, 1.5], "n": [1, None], "at": pd.Series([number, None], dtype=object), "y": [0, 1]}
    )
    path = write_frame_atomic(frame, tmp_path / "times.parquet", fmt="parquet")
    result = gate_schema_valid(read_data_file(path, spec), spec, path.name)
    assert not result.passed
    assert "column(s) at" in result.message


NOT_WRITTEN_NUMBERS = ["1_000", "1_0.5", "١٢٣", "１２"]  # underscores; Arabic-Indic and full-width digits


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("column", ["x", "n"])
@pytest.mark.parametrize("text", NOT_WRITTEN_NUMBERS)
def test_a_number_text_no_data_file_writes_fails_the_schema_in_int_and_float_columns(
    tmp_path: Path, fmt: str, column: str, text: str
) -> None:
    values: dict[str, list[object]] = {"x": ["0.5", "1.5"], "n": ["3", "4"]}
    values[column] = [values[column][0], text]
    frame = pd.DataFrame({"rid": [1, 2], **values, "at": [None, None], "y": [0, 1]})
    path = write_frame_atomic(frame, tmp_path / f"cells.{fmt}", fmt=fmt)  # type: ignore[arg-type]
    result = gate_schema_valid(read_data_file(path, SPEC), SPEC, path.name)
    assert not result.passed
    assert f"column(s) {column}" in result.message and path.name in result.message


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_number_texts_data_files_write_still_pass(tmp_path: Path, fmt: str) -> None:
    frame = pd.DataFrame(
        {"rid": [1, 2, 3], "x": [" 7 ", "1e3", "-2.5"], "n": ["77", " 8 ", "9.0"], "at": [None] * 3, "y": [0, 1, 0]}
    )
    path = write_frame_atomic(frame, tmp_path / f"cells.{fmt}", fmt=fmt)  # type: ignore[arg-type]
    typed = coerce_to_schema(read_data_file(path, SPEC), SPEC)
    assert typed is not None
    assert typed["x"].tolist() == [7.0, 1000.0, -2.5] and typed["n"].tolist() == [77, 8, 9]


@pytest.mark.parametrize("field", ["x", "n"])
@pytest.mark.parametrize("text", NOT_WRITTEN_NUMBERS)
def test_the_request_path_refuses_the_same_number_texts(field: str, text: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_records(signature_of(SPEC), [{"x": 0.5, field: text}])
    assert (caught.value.field, caught.value.rule) == (field, "type")
