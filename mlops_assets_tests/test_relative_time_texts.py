"""A date-time column refuses "now" and "today": pandas reads them as the time of reading, so the same file would
give a different value on every run (and a data version would no longer be reproducible from its bytes)."""

from pathlib import Path

import pandas as pd
import pytest

from mlops_assets.ml.spec import spec_from_dict
from mlops_assets.ml.validation import gate_schema_valid, read_data_file
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
    frame = pd.DataFrame({"rid": [1, 2], "x": [0.5, 1.5], "at": ["2013-01-01T05:00:00Z", text], "y": [0, 1]})
    path = write_frame_atomic(frame, tmp_path / f"times.{fmt}", fmt=fmt)  # type: ignore[arg-type]
    result = gate_schema_valid(read_data_file(path, SPEC), SPEC, path.name)
    assert not result.passed
    assert "at" in result.message and path.name in result.message


def test_iso_texts_still_pass_and_the_request_path_refuses_the_same_texts(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"rid": [1, 2], "x": [0.5, 1.5], "at": ["2013-01-01T05:00:00Z", "2013-01-02 06:30:00+01:00"], "y": [0, 1]}
    )
    path = write_frame_atomic(frame, tmp_path / "times.csv", fmt="csv")
    assert gate_schema_valid(read_data_file(path, SPEC), SPEC, path.name).passed
    signature = signature_of(SPEC)
    for text in ("now", "today"):
        with pytest.raises(RequestError) as caught:
            parse_records(signature, [{"x": 0.5, "at": text}])
        assert (caught.value.field, caught.value.rule) == ("at", "type")
