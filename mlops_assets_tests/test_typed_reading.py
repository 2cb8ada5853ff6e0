"""Reading and typing landed data: CSV/Parquet parity, label values through the label's type, honest failure cases.

Issue 10, faults 9 (a category spelled like a missing-value marker), 10 (labels written as text) and 17 (false
failure cases when the schema gate re-runs on the stored copy of a failed version).
"""

import io
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_assets.environments import local_environment
from mlops_assets.ml.features import encode_label
from mlops_assets.ml.performance import LABEL, LabelsError, labels_from_file
from mlops_assets.ml.spec import SpecError, spec_from_dict
from mlops_assets.ml.validation import (
    PANDAS_DEFAULT_NA_VALUES,
    coerce_to_schema,
    gate_label_in_domain,
    gate_schema_valid,
    read_data_file,
    validate_raw,
)
from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets.storage.files import write_frame_atomic
from mlops_assets_tests.support import model_graph

pytestmark = pytest.mark.wiring


def _spec(columns: dict[str, Any], label: dict[str, Any] | None = None, **extra: Any) -> Any:
    return spec_from_dict(
        {
            "name": "typed",
            "id_column": "id",
            "label": label or {"column": "y", "positive": 1, "values": [0, 1]},
            "features": [c for c in columns if c not in ("id", "y")][:1] or ["x"],
            "policy": {"min_rows": 1},
            "columns": {"id": {"type": "int", "unique": True}, "y": {"type": "int"}, **columns},
            **extra,
        }
    )


# --------------------------------------------------------------------------------------------------
# Fault 9: a declared category equal to a missing-value marker survives CSV, as it does Parquet
# --------------------------------------------------------------------------------------------------

#: Every marker pandas reads as missing by default, as pandas itself reports them (see the test below).
MARKERS = sorted(m for m in PANDAS_DEFAULT_NA_VALUES if m)


def test_pandas_default_na_values_are_exactly_the_markers_pandas_applies() -> None:
    # The list the reader keeps for non-text columns is the one pandas applies by default: each marker,
    # alone in a column read with pandas' defaults, is missing; a near miss is not.
    for marker in [*PANDAS_DEFAULT_NA_VALUES, "NA "]:
        read = pd.read_csv(io.StringIO(f"a,b\n{marker},1\n"), dtype={"a": str})
        assert bool(read["a"].isna().iloc[0]) == (marker in PANDAS_DEFAULT_NA_VALUES), marker
    assert {"", "NA", "N/A", "null", "NaN", "nan", "None", "#N/A", "-NaN", "n/a", "<NA>"} <= PANDAS_DEFAULT_NA_VALUES
    # Complete: pandas keeps its list in a private module; compared here only, so an upgrade that changes it fails.
    from pandas._libs.parsers import STR_NA_VALUES

    assert set(STR_NA_VALUES) == PANDAS_DEFAULT_NA_VALUES


@pytest.mark.parametrize("marker", MARKERS)
@pytest.mark.parametrize("col_type", ["category", "string"])
def test_a_text_value_spelled_like_a_missing_marker_is_a_value_in_csv_as_in_parquet(
    tmp_path: Path, marker: str, col_type: str
) -> None:
    column: dict[str, Any] = {"type": col_type}
    if col_type == "category":
        column["categories"] = [marker, "EU"]
    spec = _spec({"x": {"type": "float"}, "region": column})
    frame = pd.DataFrame({"id": [1, 2, 3], "y": [0, 1, 0], "x": [0.5, 1.5, 2.5], "region": [marker, "EU", marker]})
    csv = read_data_file(write_frame_atomic(frame, tmp_path / "v.csv", "csv"), spec)
    parquet = read_data_file(write_frame_atomic(frame, tmp_path / "v.parquet", "parquet"), spec)
    assert csv["region"].tolist() == [marker, "EU", marker]
    result = validate_raw(csv, spec, "v.csv")
    assert result.passed, [g.message for g in result.gates if not g.passed]
    typed_pq = coerce_to_schema(parquet, spec)
    assert result.typed is not None and typed_pq is not None
    pd.testing.assert_frame_equal(result.typed, typed_pq)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_numeric_columns_still_read_empty_cells_and_default_markers_as_missing(tmp_path: Path, fmt: str) -> None:
    # Parquet: the same cells stored as text columns (a text export); the markers are missing as in the CSV (they
    # failed coercion there: float("NA"), a boolean "null").
    spec = _spec(
        {
            "x": {"type": "float", "nullable": True},
            "n": {"type": "int", "nullable": True},
            "b": {"type": "bool", "nullable": True},
            "t": {"type": "datetime", "nullable": True},
            "s": {"type": "string", "nullable": True},
        }
    )
    path = tmp_path / "v.csv"
    path.write_text("id,y,x,n,b,t,s\n1,0,,NA,null,N/A,\n2,1,1.5,3,true,2024-01-01,NA\n3,0,NaN,,,,x\n")
    if fmt == "parquet":
        text = pd.read_csv(path, dtype=str, keep_default_na=False)
        path = write_frame_atomic(text, tmp_path / "v.parquet", "parquet")
    result = validate_raw(read_data_file(path, spec), spec, str(path))
    assert result.passed, [g.message for g in result.gates if not g.passed]
    typed = result.typed
    assert typed is not None
    assert typed["x"].isna().tolist() == [True, False, True]
    assert typed["n"].isna().tolist() == [True, False, True]
    assert typed["b"].isna().tolist() == [True, False, True]
    assert typed["t"].isna().tolist() == [True, False, True]
    # A text column: only the empty cell is missing; "NA" is the text NA.
    assert typed["s"].isna().tolist() == [True, False, False]
    assert typed["s"].iloc[1] == "NA"


@pytest.mark.parametrize("dictionary_encoded", [False, True])
def test_an_empty_text_cell_is_missing_in_csv_and_parquet_alike(tmp_path: Path, dictionary_encoded: bool) -> None:
    # CSV cannot tell an empty string from a missing value, so an empty string is missing in both formats.
    spec = _spec({"x": {"type": "float"}, "s": {"type": "string", "nullable": True}})
    frame = pd.DataFrame({"id": [1, 2], "y": [0, 1], "x": [0.5, 1.5], "s": ["", "a"]})
    if dictionary_encoded:  # Parquet stores a pandas categorical as a dictionary column; it reads back categorical
        frame["s"] = frame["s"].astype("category")
    csv = coerce_to_schema(read_data_file(write_frame_atomic(frame, tmp_path / "v.csv", "csv"), spec), spec)
    pq = coerce_to_schema(read_data_file(write_frame_atomic(frame, tmp_path / "v.parquet", "parquet"), spec), spec)
    assert csv is not None and pq is not None
    assert pq["s"].isna().tolist() == [True, False]
    pd.testing.assert_frame_equal(csv, pq)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_markers_the_spec_lists_are_missing_in_csv_and_parquet_alike(tmp_path: Path, fmt: str) -> None:
    spec = _spec(
        {
            "x": {"type": "float", "nullable": True, "na_values": ["-999"]},
            "n": {"type": "int", "nullable": True, "na_values": ["-999"]},
            "region": {"type": "category", "categories": ["NA", "EU"], "nullable": True, "na_values": ["?"]},
        }
    )
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "y": [0, 1, 0],
            "x": [-999.0, 1.5, 2.5],
            "n": [4, -999, 5],
            "region": ["NA", "?", "EU"],
        }
    )
    path = write_frame_atomic(frame, tmp_path / f"v.{fmt}", "csv" if fmt == "csv" else "parquet")
    result = validate_raw(read_data_file(path, spec), spec, "v")
    assert result.passed, [g.message for g in result.gates if not g.passed]
    typed = result.typed
    assert typed is not None
    assert typed["x"].isna().tolist() == [True, False, False]
    assert typed["n"].isna().tolist() == [False, True, False]
    assert typed["region"].tolist()[0] == "NA" and typed["region"].isna().tolist() == [False, True, False]


def test_a_missing_marker_that_is_also_a_declared_category_is_refused_at_load() -> None:
    with pytest.raises(SpecError, match=r"columns\.region\.na_values lists \['NA'\]"):
        _spec({"x": {"type": "float"}, "region": {"type": "category", "categories": ["NA"], "na_values": ["NA"]}})


_PARITY_SPEC = _spec(
    {
        "x": {"type": "float", "nullable": True},
        "xf": {"type": "float"},
        "n": {"type": "int", "nullable": True},
        "nf": {"type": "int"},
        "b": {"type": "bool", "nullable": True},
        "bf": {"type": "bool"},
        "t": {"type": "datetime", "nullable": True},
        "s": {"type": "string", "nullable": True},
        "c": {"type": "category", "categories": [*MARKERS, "EU", "01", "1", "true", " x "]},
    }
)

_TEXT = st.one_of(
    st.sampled_from(
        [
            *MARKERS,
            "01",
            "1",
            "1.0",
            "true",
            "yes",
            " x ",
            "1e5",
            "a,b",
            'say "hi"',
            "inf",
            "\r",
            "a\rb",
            "line\nbreak",
            "\t",
        ]
    ),
    # Any text but NUL (a NUL byte marks a binary file, refused as such): quotes, commas, CR, LF, tabs included.
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8),
)
_INT = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_TIME = st.datetimes(
    min_value=pd.Timestamp("1900-01-01").to_pydatetime(), max_value=pd.Timestamp("2200-01-01").to_pydatetime()
)


@st.composite
def _typed_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(min_value=1, max_value=12))

    def column(values: st.SearchStrategy[Any], nullable: bool) -> list[Any]:
        return draw(st.lists(st.one_of(st.none(), values) if nullable else values, min_size=n, max_size=n))

    raw = pd.DataFrame(
        {
            "id": list(range(n)),
            "y": column(st.sampled_from([0, 1]), False),
            "x": column(st.floats(allow_nan=False, allow_infinity=False, width=64), True),  # ±inf fails "finite"
            "xf": column(st.floats(allow_nan=False, allow_infinity=False), False),
            "n": pd.array(column(_INT, True), dtype="Int64"),
            "nf": column(_INT, False),
            "b": pd.array(column(st.booleans(), True), dtype="boolean"),
            "bf": column(st.booleans(), False),
            "t": column(_TIME, True),
            "s": column(_TEXT, True),
            "c": column(st.sampled_from(_PARITY_SPEC.column("c").categories or ()), False),
        }
    )
    raw["t"] = pd.to_datetime(raw["t"], utc=True)
    typed = coerce_to_schema(raw, _PARITY_SPEC)
    assert typed is not None, "the generated frame must be valid"
    return typed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=_typed_frames())
def test_csv_and_parquet_of_the_same_typed_frame_read_to_identical_typed_frames(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    csv = read_data_file(write_frame_atomic(frame, tmp_path / "v.csv", "csv"), _PARITY_SPEC)
    parquet = read_data_file(write_frame_atomic(frame, tmp_path / "v.parquet", "parquet"), _PARITY_SPEC)
    from_csv, from_parquet = coerce_to_schema(csv, _PARITY_SPEC), coerce_to_schema(parquet, _PARITY_SPEC)
    assert from_csv is not None and from_parquet is not None
    pd.testing.assert_frame_equal(from_csv, from_parquet)
    pd.testing.assert_frame_equal(from_parquet, frame)


# --------------------------------------------------------------------------------------------------
# Fault 10: label values canonicalised through the label column's type everywhere
# --------------------------------------------------------------------------------------------------


def _bool_label_spec(values: list[Any], positive: Any) -> Any:
    return _spec(
        {"x": {"type": "float"}, "churned": {"type": "bool"}},
        label={"column": "churned", "positive": positive, "values": values},
    )


def _yes_no_file(tmp_path: Path, name: str = "v.csv") -> Path:
    path = tmp_path / name
    rows = [f"{i},0,{i / 10},{'yes' if i % 3 == 0 else 'no'}" for i in range(12)]
    path.write_text("id,y,x,churned\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("values", "positive"),
    [(["no", "yes"], "yes"), ([False, True], True), (["false", "true"], "true"), ([0, 1], 1), (["N", "Y"], "Y")],
)
def test_a_bool_label_passes_label_in_domain_on_the_file_the_typed_frame_and_the_text_copy(
    tmp_path: Path, values: list[Any], positive: Any
) -> None:
    spec = _bool_label_spec(values, positive)
    assert spec.label.values == (False, True)
    assert spec.label.positive is True
    frame = read_data_file(_yes_no_file(tmp_path), spec)
    result = validate_raw(frame, spec, "v.csv")
    assert result.passed, [g.message for g in result.gates if not g.passed]
    assert result.typed is not None
    for copy in (result.typed, frame.astype("string")):
        gate = gate_label_in_domain(copy, spec, "v.csv")
        assert gate.passed, gate.message
        assert gate.evidence["value_counts"] == {"False": 8, "True": 4}
    assert encode_label(result.typed["churned"], spec).tolist() == [1 if i % 3 == 0 else 0 for i in range(12)]


def test_a_bool_label_out_of_domain_quotes_the_values_in_the_file(tmp_path: Path) -> None:
    spec = _bool_label_spec(["no", "yes"], "yes")
    path = tmp_path / "v.csv"
    path.write_text("id,y,x,churned\n1,0,0.1,yes\n2,0,0.2,maybe\n3,0,0.3,no\n")
    gate = validate_raw(read_data_file(path, spec), spec, "v.csv").gate("label_in_domain")
    assert not gate.passed
    assert gate.evidence["out_of_domain_values"] == [{"value": "maybe", "count": 1}]
    assert "'maybe' x1" in gate.message


@pytest.mark.parametrize("values", [["no", "yes"], [False, True]])
def test_a_labels_file_is_typed_through_the_same_schema_as_data_files(tmp_path: Path, values: list[Any]) -> None:
    spec = _bool_label_spec(values, values[1])
    path = tmp_path / "labels.csv"
    path.write_text("id,churned\n" + "\n".join(f"{i},{'yes' if i % 3 == 0 else 'no'}" for i in range(12)) + "\n")
    labels = labels_from_file(path, spec, known_ids=pd.Series(range(12)))
    assert labels[LABEL].tolist() == [1.0 if i % 3 == 0 else 0.0 for i in range(12)]
    assert labels["row_id"].tolist() == [str(i) for i in range(12)]
    # The same ids written as 01, 02 ... are the same ids once typed as int.
    path.write_text("id,churned\n" + "\n".join(f"0{i},TRUE" for i in range(12)) + "\n")
    assert labels_from_file(path, spec, known_ids=pd.Series(range(12)))["row_id"].tolist() == [
        str(i) for i in range(12)
    ]


def test_a_labels_file_with_a_label_outside_the_domain_is_refused_naming_file_column_and_rule(tmp_path: Path) -> None:
    spec = _bool_label_spec(["no", "yes"], "yes")
    path = tmp_path / "labels.csv"
    path.write_text("id,churned\n1,yes\n2,maybe\n")
    with pytest.raises(LabelsError) as exc:
        labels_from_file(path, spec)
    assert str(path) in str(exc.value) and "churned" in str(exc.value) and "maybe" in str(exc.value)
    assert "rule: label_in_domain" in str(exc.value)


@pytest.mark.parametrize(
    ("label_type", "values", "positive", "canonical"),
    [
        ("int", ["0", "1"], "1", (0, 1)),
        ("int", [0.0, 1.0], 1.0, (0, 1)),
        ("float", [0, 1], 1, (0.0, 1.0)),
        ("string", [0, 1], 1, ("0", "1")),
        ("category", ["no", "yes"], "yes", ("no", "yes")),
    ],
)
def test_label_values_are_canonicalised_through_the_label_type_at_load(
    tmp_path: Path, label_type: str, values: list[Any], positive: Any, canonical: tuple[Any, ...]
) -> None:
    spec = _spec(
        {"x": {"type": "float"}, "lab": {"type": label_type}},
        label={"column": "lab", "positive": positive, "values": values},
    )
    assert spec.label.values == canonical
    assert [type(v) for v in spec.label.values] == [type(v) for v in canonical]
    assert spec.label.positive == canonical[1]
    lab = [canonical[0], canonical[1], canonical[1]]
    frame = pd.DataFrame({"id": [1, 2, 3], "y": [0, 1, 0], "x": [0.1, 0.2, 0.3], "lab": lab})
    path = write_frame_atomic(frame, tmp_path / "v.csv", "csv")
    result = validate_raw(read_data_file(path, spec), spec, "v.csv")
    assert result.passed, [g.message for g in result.gates if not g.passed]
    assert result.typed is not None
    assert encode_label(result.typed["lab"], spec).tolist() == [0, 1, 1]


@pytest.mark.parametrize(
    ("label_type", "values", "positive", "bad"),
    [
        ("bool", ["no", "maybe"], "no", "'maybe'"),
        ("int", ["a", "b"], "a", "'a'"),
        ("int", [0, 1.5], 0, "1.5"),
        ("bool", ["yes", "y"], "yes", "the same value"),
        ("float", ["zero", "one"], "one", "'zero'"),
    ],
)
def test_label_values_that_cannot_match_the_label_type_are_refused_at_load_naming_the_key(
    label_type: str, values: list[Any], positive: Any, bad: str
) -> None:
    with pytest.raises(SpecError) as exc:
        _spec(
            {"x": {"type": "float"}, "lab": {"type": label_type}},
            label={"column": "lab", "positive": positive, "values": values},
        )
    assert "label.values" in str(exc.value)
    assert bad in str(exc.value)
    assert label_type in str(exc.value)


def test_a_label_positive_outside_the_canonical_values_is_refused() -> None:
    with pytest.raises(SpecError, match=r"label\.positive"):
        _bool_label_spec(["no", "yes"], "maybe")


# --------------------------------------------------------------------------------------------------
# Fault 17: the failure cases of a failed schema are the real ones, whatever copy is stored
# --------------------------------------------------------------------------------------------------


def _failing_file(tmp_path: Path, fmt: str = "csv", fraction: bool = False) -> tuple[Any, Path]:
    spec = _spec({"x": {"type": "float"}, "n": {"type": "int"}, "z": {"type": "float"}})
    path = tmp_path / "landing" / spec.name / f"bad_v001.{fmt}"  # the model's landing zone under the root
    path.parent.mkdir(parents=True, exist_ok=True)
    # Column z is missing; n is written 77.0, which the docs accept as the int 77 (and, with fraction, one 2.5).
    n = [77.0] * 5 + [2.5 if fraction else 77.0]
    frame = pd.DataFrame({"id": range(6), "y": [i % 2 for i in range(6)], "x": [i / 10 for i in range(6)], "n": n})
    write_frame_atomic(frame, path, "csv" if fmt == "csv" else "parquet")
    return spec, path


def test_schema_failure_cases_are_the_real_ones_on_the_read_the_text_and_the_parquet_copy(tmp_path: Path) -> None:
    spec, path = _failing_file(tmp_path)
    frame = read_data_file(path, spec)
    expected = [{"column": "z", "check": "column_in_dataframe", "failure_case": None, "index": None}]
    on_read = gate_schema_valid(frame, spec, "v.csv")
    assert on_read.evidence["failure_cases"] == expected
    stored = tmp_path / "stored.parquet"
    frame.to_parquet(stored, index=False)
    for copy in (frame.astype("string"), pd.read_parquet(stored)):
        gate = gate_schema_valid(copy, spec, "v.csv")
        assert gate.evidence["failure_cases"] == expected
        assert gate.message == on_read.message


@pytest.mark.parametrize(("fmt", "fraction"), [("csv", False), ("parquet", False), ("csv", True), ("parquet", True)])
def test_raw_data_schema_check_reports_only_the_real_failure_cases(tmp_path: Path, fmt: str, fraction: bool) -> None:
    spec, path = _failing_file(tmp_path, fmt, fraction)
    spec_path = tmp_path / "spec.yaml"
    import yaml

    spec_path.write_text(yaml.safe_dump(spec.to_dict()))
    g = model_graph(str(spec_path))  # the model "typed"
    raw_data = [a for a in g.assets if g.key("raw_data") in a.keys]
    raw_data_checks = [c for c in g.checks if any(k.asset_key == g.key("raw_data") for k in c.check_keys)]
    assert len(raw_data) == 1 and raw_data_checks
    env = local_environment(tmp_path)
    key = version_key(path.name, file_digest(path))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(g.partitions_name, [key])
        result = dg.materialize(
            [*raw_data, *raw_data_checks],
            partition_key=key,
            instance=instance,
            resources=env.resources,
            raise_on_error=False,
        )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    schema = evaluations["schema_valid"]
    assert not schema.passed
    evidence = schema.metadata["evidence"].value
    real = [{"column": "z", "check": "column_in_dataframe", "failure_case": None, "index": None}]
    if fraction:
        # The one real fractional value, as the file holds it (CSV: its text; Parquet: the float).
        value = "2.5" if fmt == "csv" else 2.5
        real.append({"column": "n", "check": "coerce_dtype('int64')", "failure_case": value, "index": 5})
    assert sorted(evidence["failure_cases"], key=str) == sorted(real, key=str)
    assert evidence["n_failure_cases"] == len(real)
    assert evaluations["label_in_domain"].passed and evaluations["ids_unique"].passed
    expected = validate_raw(read_data_file(path, spec), spec, "x").gate("schema_valid").evidence
    assert evidence == expected


def test_a_value_that_really_fails_is_still_reported_on_every_copy(tmp_path: Path) -> None:
    spec = _spec({"x": {"type": "float"}, "n": {"type": "int"}})
    path = tmp_path / "v.csv"
    path.write_text("id,y,x,n\n1,0,0.1,77.0\n2,1,0.2,2.5\n3,0,0.3,abc\n")
    frame = read_data_file(path, spec)
    on_read = gate_schema_valid(frame, spec, "v.csv")
    cases = [(c["column"], c["check"], c["index"]) for c in on_read.evidence["failure_cases"]]
    assert cases == [("n", "coerce_dtype('int64')", 1), ("n", "coerce_dtype('int64')", 2)]
    text = gate_schema_valid(frame.astype("string"), spec, "v.csv")
    assert [(c["column"], c["check"], c["index"]) for c in text.evidence["failure_cases"]] == cases


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_ids_are_compared_as_the_id_type_when_the_schema_fails(tmp_path: Path, fmt: str) -> None:
    # Int ids are read from CSV as text (parsed exactly by the schema); "01" and "1" are still one id, and the
    # ids_unique verdict and evidence are the same for the CSV and the Parquet of the same data.
    spec = _spec({"x": {"type": "float"}, "z": {"type": "float"}})
    frame = pd.DataFrame({"id": ["01", "1", "2"], "y": [0, 1, 0], "x": [0.1, 0.2, 0.3]})
    if fmt == "parquet":
        frame["id"] = frame["id"].astype(int)
    path = write_frame_atomic(frame, tmp_path / f"v.{fmt}", "csv" if fmt == "csv" else "parquet")
    result = validate_raw(read_data_file(path, spec), spec, "v")
    assert result.typed is None  # column z is missing
    gate = result.gate("ids_unique")
    assert not gate.passed
    assert gate.evidence["duplicate_ids"] == [{"id": 1, "count": 2}]


def test_a_labels_file_whose_ids_are_not_of_the_id_type_is_refused_naming_file_column_and_rule(
    tmp_path: Path,
) -> None:
    spec = _bool_label_spec(["no", "yes"], "yes")
    path = tmp_path / "labels.csv"
    path.write_text("id,churned\n1,yes\nabc,no\n1_0,no\n")
    with pytest.raises(LabelsError) as exc:
        labels_from_file(path, spec)
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and message.endswith("(rule: schema_valid)")
    assert "id: coerce_dtype('int64') ('abc', '1_0')" in message
