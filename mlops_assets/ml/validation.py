"""Reading a landed data file and the four raw-data gates.

:func:`read_data_file` turns a landed ``.csv``/``.parquet`` file into a DataFrame or raises
:class:`DataFileError` naming the file and the rule it broke; it never lets a raw pandas/pyarrow
traceback escape for bad bytes. :func:`validate_raw` runs, in this order, the gates
``schema_valid``, ``row_count_above_floor``, ``label_in_domain`` and ``ids_unique``. Every gate runs
even when an earlier one failed (a missing column fails the gates that need it with a clear message
rather than crashing), so one run reports everything that is wrong with a file.

Each gate is also a public function (``gate_schema_valid``, ``gate_row_count``,
``gate_label_in_domain``, ``gate_ids_unique``, all ``(df, spec, source_name) -> GateResult``) for
callers that run them as separate checks, together with :func:`coerce_to_schema`. They accept the frame
as read, the typed frame, its Parquet round trip, or the frame cast to text (``df.astype("string")``):
every comparison goes through the schema's coercion (text is read by the same rules as the values it
spells: ``"77.0"`` is the int 77 as the float 77.0 is) or through the label column's type, so the
verdicts and the schema failure cases are the same whichever copy is checked.
"""

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from mlops_assets.ml.gate_result import GateResult
from mlops_assets.ml.policy import DataGatePolicy
from mlops_assets.ml.schema import build_schema, canonical_value, typed_column
from mlops_assets.ml.spec import CATEGORICAL_TYPES, ColumnSpec, DatasetSpec

#: The ``DataFrame.attrs`` key under which a landed version's frames (raw data, features) carry its file name, so
#: that every gate on them names the file (pandas keeps ``attrs`` through a Parquet round trip).
SOURCE_FILE_ATTR = "source_file"

#: Gate names of :func:`validate_raw`, in the order they are reported.
RAW_GATES: tuple[str, ...] = ("schema_valid", "row_count_above_floor", "label_in_domain", "ids_unique")

#: The cells pandas' ``read_csv`` reads as missing by default (its documented ``na_values`` list). CSV reading
#: keeps them for the columns that are not text; a text/category column treats only an empty cell as missing,
#: because ``NA`` (a region code) or ``None`` may be a declared value.
PANDAS_DEFAULT_NA_VALUES: frozenset[str] = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)

CSV_SUFFIXES: frozenset[str] = frozenset({".csv"})
PARQUET_SUFFIXES: frozenset[str] = frozenset({".parquet", ".pq"})

#: At most this many schema failure cases are kept as evidence (the total is always reported).
MAX_FAILURE_CASES = 200
#: At most this many duplicated ids are listed as evidence.
MAX_DUPLICATE_IDS = 50
#: At most this many distinct out-of-domain label values are listed as evidence.
MAX_LABEL_VALUES = 20
#: At most this many (column, check) groups are spelled out in a failure message.
_MAX_MESSAGE_GROUPS = 8
#: How much of a CSV is sniffed for NUL bytes, the mark of a binary file.
_SNIFF_BYTES = 8192
#: Byte-order marks of the wide encodings a spreadsheet may export text in (UTF-32 first: its LE mark starts
#: with UTF-16's).
_WIDE_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
#: Delimiters a CSV is recognised to be written with by mistake (spreadsheet locales, TSV exports).
_OTHER_DELIMITERS: tuple[str, ...] = (";", "\t", "|")


class DataFileError(ValueError):
    """A landed file cannot be read as a data version.

    Attributes:
        path: The offending file.
        rule: The rule it broke: ``supported_format``, ``file_exists``, ``non_empty``,
            ``parseable_csv``, ``parseable_parquet`` or ``unique_column_names``.
        column: The column concerned, if the problem is about one column.
        detail: What is wrong, without the file name and rule.
    """

    def __init__(self, path: Path | str, rule: str, detail: str, column: str | None = None) -> None:
        self.path = Path(path)
        self.rule = rule
        self.column = column
        self.detail = detail
        super().__init__(f"{path}: {detail} (rule: {rule})")


@dataclass(frozen=True, eq=False)
class RawValidation:
    """Outcome of :func:`validate_raw`.

    ``eq=False`` because a DataFrame field has no meaningful ``==``; instances compare by identity.

    Attributes:
        typed: The coerced frame when ``schema_valid`` passed, else ``None``.
        gates: One result per gate, in the order of :data:`RAW_GATES`.
    """

    typed: pd.DataFrame | None
    gates: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        """Whether every gate passed."""
        return all(g.passed for g in self.gates)

    def gate(self, name: str) -> GateResult:
        """The result of the gate called ``name`` (KeyError if there is none)."""
        for g in self.gates:
            if g.name == name:
                return g
        raise KeyError(f"no gate {name!r}; gates: {[g.name for g in self.gates]}")


def to_jsonable(value: Any) -> Any:
    """Convert a value to plain JSON data, recursively.

    Numpy and pandas scalars become Python numbers, timestamps become ISO-8601 strings, missing values
    (``NaN``, ``NaT``, ``pd.NA``) become ``None``, infinities become the strings ``"inf"``/``"-inf"``
    (JSON has no infinity), containers become lists/dicts with string keys and anything else its ``str``.

    Args:
        value: Any value.

    Returns:
        A value ``json.dumps`` accepts without a ``default``.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isinf(number):
            return "inf" if number > 0 else "-inf"
        return number
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray | pd.Series | pd.Index):
        return [to_jsonable(v) for v in value]
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, datetime | date | time):  # pd.Timestamp is a datetime
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, timedelta | np.timedelta64):
        return str(pd.Timedelta(value))
    return str(value)


# --------------------------------------------------------------------------------------------------
# Reading landed files
# --------------------------------------------------------------------------------------------------


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else text


def _check_csv_header(path: Path) -> list[str]:
    # pandas silently renames a repeated header to "x.1", which would hide the problem; read the header
    # ourselves to reject it by name.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle), [])
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DataFileError(path, "unique_column_names", f"column {name!r} appears twice in the header", name)
        seen.add(name)
    return header


def _check_csv_delimiter(path: Path, header: list[str], spec: DatasetSpec) -> None:
    """Refuse a header that is one column which another delimiter splits into spec columns.

    Read with the wrong delimiter, every spec column would be reported missing and the single column as
    extra; naming the delimiter says what is actually wrong with the file.
    """
    if len(header) != 1 or header[0] in spec.column_names:
        return
    for delimiter in _OTHER_DELIMITERS:
        parts = [p.strip() for p in header[0].split(delimiter)]
        known = [p for p in parts if p in spec.column_names]
        if len(parts) > 1 and len(known) >= 2:
            shown = header[0] if len(header[0]) <= 80 else header[0][:77] + "..."
            raise DataFileError(
                path,
                "parseable_csv",
                f"the header is a single column {shown!r}, which splits on {delimiter!r} into {len(known)} spec "
                f"column(s): the file is {delimiter!r}-delimited, data files must be comma-separated",
            )


def _csv_location(path: Path, line: int, offset: int | None = None, quote: bool = False) -> tuple[str, str | None]:
    """Where a problem sits in a CSV: ``(" at line L, column 'c'", column name)`` for physical line ``line``.

    The column is the header field at the character ``offset`` of the line (a byte offset read as far as it
    decodes), or, with ``quote``, the field whose opening quote the line leaves unclosed. Best effort: an
    unreadable header or line gives the line alone.
    """
    try:
        with path.open("rb") as handle:
            raw_header = handle.readline()
            raw_line = raw_header
            for _ in range(line - 1):
                raw_line = handle.readline()
        header = next(csv.reader([raw_header.decode("utf-8-sig", errors="replace").rstrip("\r\n")]), [])
        text = raw_line.decode("utf-8-sig", errors="replace")
        if quote:
            field = _unclosed_quote_field(text)
        else:
            prefix = raw_line[:offset].decode("utf-8-sig", errors="replace") if offset is not None else ""
            field = len(next(csv.reader([prefix + "x"]), [""])) - 1
    except (OSError, csv.Error):
        return f" at line {line}", None
    if field is None or field >= len(header) or line == 1:
        return f" at line {line}" + (" (the header)" if line == 1 else ""), None
    return f" at line {line}, column {header[field]!r}", header[field]


def _unclosed_quote_field(line: str) -> int | None:
    """The index of the field of ``line`` whose opening quote is not closed on the line, else ``None``."""
    field, quoted, at_start = 0, False, True
    for char in line.rstrip("\r\n"):
        if quoted:
            quoted = char != '"'  # a doubled quote closes and reopens: the state is right either way
        elif char == '"' and at_start:
            quoted = True
        elif char == ",":
            field += 1
            at_start = True
            continue
        at_start = False
    return field if quoted else None


def _unclosed_quote_line(path: Path) -> int | None:
    """The physical line (1-based) where the record whose quote runs to the end of the file starts.

    Python's csv reader (not strict) reads such a record as the last one, so the start of the last record is
    the line; its physical line count stays right when earlier quoted fields span lines, where the C tokenizer's
    row number does not. A field over the csv module's size limit stops the scan in that record, which is then
    the one.
    """
    start = last = 1
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            for _ in reader:
                last, start = start, reader.line_num + 1
    except csv.Error:
        return start
    except (OSError, UnicodeDecodeError):
        return None
    return last


def _undecodable(path: Path) -> tuple[int, int] | None:
    """``(line, byte offset in the line)`` of the first byte sequence that is not UTF-8, else ``None``."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return number, exc.start
    return None


def _parse_failure(path: Path, exc: Exception) -> DataFileError:
    """A :class:`DataFileError` for what pandas raised on a CSV, with the line and column when they can be found."""
    where, column = "", None
    if isinstance(exc, UnicodeDecodeError):
        found = _undecodable(path)
        if found is not None:
            where, column = _csv_location(path, found[0], offset=found[1])
    elif isinstance(exc, pd.errors.ParserError) and "EOF inside string" in str(exc):
        line = _unclosed_quote_line(path)
        if line is not None:
            where, column = _csv_location(path, line, quote=True)
    return DataFileError(
        path,
        "parseable_csv",
        f"cannot be parsed as a UTF-8 CSV{where}: {type(exc).__name__}: {_first_line(str(exc))}",
        column,
    )


def _read_csv(path: Path, spec: DatasetSpec) -> pd.DataFrame:
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    for bom, encoding in _WIDE_BOMS:
        if head.startswith(bom):
            raise DataFileError(
                path,
                "parseable_csv",
                f"file is {encoding} encoded (byte-order mark {bom.hex(' ')}); data files must be UTF-8",
            )
    if b"\x00" in head:
        raise DataFileError(
            path, "parseable_csv", "file contains NUL bytes; it is binary (or UTF-16/32 text), not a UTF-8 text CSV"
        )
    # Text columns are read as str so that "01" stays "01" and a code such as "1" is not read as a number.
    # Int columns are read as str too and parsed exactly by the schema: a nullable int column inferred by pandas
    # goes through float64 and loses every digit beyond 2**53. Everything else is left to pandas' inference
    # and then coerced by the schema.
    text_columns = {c.name for c in spec.columns if c.type in CATEGORICAL_TYPES}
    read_as_str: dict[Any, Any] = {c.name: str for c in spec.columns if c.type in CATEGORICAL_TYPES | {"int"}}
    try:
        header = _check_csv_header(path)
        _check_csv_delimiter(path, header, spec)
        # Missing-value markers per column: a text column's only missing cell is the empty one ("NA" may be a
        # region code, "None" a category); every other column keeps pandas' default markers.
        # The spec's own markers (na_values) are added to either.
        listed = {c.name: list(c.na_values) for c in spec.columns}
        na_values = {
            name: ([""] if name in text_columns else sorted(PANDAS_DEFAULT_NA_VALUES)) + listed.get(name, [])
            for name in header
        }
        # utf-8-sig tolerates the byte-order mark spreadsheet programs put in front of CSVs;
        # low_memory=False makes the type inference see the whole column at once, not chunk by chunk.
        return pd.read_csv(
            path,
            dtype=read_as_str,
            encoding="utf-8-sig",
            low_memory=False,
            keep_default_na=False,
            na_values=na_values,
        )
    except DataFileError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise DataFileError(path, "non_empty", "file has no header row (only blank lines)") from exc
    except Exception as exc:
        # A landed file is untrusted input: whatever pandas raises (UnicodeDecodeError, ParserError, ...)
        # becomes a DataFileError that names the file, the rule and, when found, the line and column.
        raise _parse_failure(path, exc) from exc


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except Exception as exc:
        # Untrusted input, as for CSV: pyarrow's many error types all mean "not a readable Parquet file".
        raise DataFileError(
            path, "parseable_parquet", f"cannot be read as Parquet: {type(exc).__name__}: {_first_line(str(exc))}"
        ) from exc
    duplicated = df.columns[df.columns.duplicated()]
    if len(duplicated):
        name = str(duplicated[0])
        raise DataFileError(path, "unique_column_names", f"column {name!r} appears more than once", name)
    return df


def _as_number(text: Any) -> float | None:
    """The number a text spells, else ``None``."""
    if not isinstance(text, str):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def missing_markers(col: ColumnSpec) -> frozenset[str]:
    """The cell texts that are a missing value in ``col``, in CSV and Parquet files and in requests alike.

    In a ``string``/``category`` column only the empty text (a CSV cannot tell it from a missing value) and the
    column's ``na_values``; in any other column pandas' default markers (:data:`PANDAS_DEFAULT_NA_VALUES`: ``""``,
    ``"NA"``, ``"null"``, ``"NaN"``, …, what ``pandas.read_csv`` applies) and the column's ``na_values``.
    """
    defaults = frozenset({""}) if col.type in CATEGORICAL_TYPES else PANDAS_DEFAULT_NA_VALUES
    return frozenset(col.na_values) | defaults


def _mark_missing(df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Apply the missing-value rules that must not depend on the file format, to a frame just read.

    An empty text cell of a string/category column is missing (a CSV cannot tell "" from a missing value, so
    Parquet follows it); a text cell of any other column spelling one of pandas' default markers (``""``, ``"NA"``,
    ``"null"``, …: :data:`PANDAS_DEFAULT_NA_VALUES`) is missing, as the CSV reader reads it; and so is a cell the spec
    lists under the column's ``na_values``: as text, or, in an int/float column, as the number it spells ("-999" also
    matches -999.0), whichever way the file stored it.
    """
    for col in spec.columns:
        if col.name not in df.columns:
            continue
        values = df[col.name]
        markers = missing_markers(col)
        numeric_column = col.type in ("int", "float")
        numbers = {n for n in map(_as_number, col.na_values) if n is not None} if numeric_column else set()
        dtype = values.dtype
        textual = isinstance(dtype, pd.CategoricalDtype)  # a dictionary-encoded Parquet text column
        if textual or pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            hit = values.isin(sorted(markers))
            if numbers:
                hit |= values.map(_as_number, na_action="ignore").isin(sorted(numbers))
        elif numbers and pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            hit = values.isin(sorted(numbers))
        else:
            continue
        hit = hit.fillna(False).astype(bool)
        if hit.any():
            df[col.name] = values.mask(hit)
    return df


def read_data_file(path: Path, spec: DatasetSpec) -> pd.DataFrame:
    """Read a landed data file (``.csv``, ``.parquet`` or ``.pq``) into a DataFrame.

    CSV files are read as UTF-8 (a byte-order mark is tolerated). String/category columns of the spec
    are read as ``str`` so values such as ``"01"`` keep their leading zero, and only their empty cells
    are missing: ``NA``, ``None``, ``null``, ``n/a`` ... are values there (a region code ``NA``). Int
    columns are read as ``str`` too, and parsed exactly by the schema (``"77.0"`` is 77, ``"2.5"`` fails;
    no digit is lost through a float). All other columns are left to pandas' type inference (the schema
    coerces them) with pandas' default missing-value markers (:data:`PANDAS_DEFAULT_NA_VALUES`: empty,
    ``NA``, ``null``, ``NaN`` ...); int columns keep those markers too. A header-only CSV returns an
    empty frame with its columns, so the row-floor gate reports it. Parquet files are read with their
    stored types, except that an empty string in a string/category column is missing, as an empty CSV
    cell is: the same data reads to the same typed frame from either format.

    Args:
        path: The file.
        spec: The dataset spec the file should follow (used to choose column read types).

    Returns:
        The file's rows, with a default RangeIndex.

    Raises:
        DataFileError: unsupported extension, missing or empty (0-byte) file, unparseable CSV/Parquet
            content, or a column name repeated in the header. The message names the file and the rule.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES | PARQUET_SUFFIXES:
        supported = ", ".join(sorted(CSV_SUFFIXES | PARQUET_SUFFIXES))
        raise DataFileError(
            path, "supported_format", f"unsupported file extension {path.suffix!r}; expected {supported}"
        )
    if not path.is_file():
        raise DataFileError(path, "file_exists", "file does not exist")
    if path.stat().st_size == 0:
        raise DataFileError(path, "non_empty", "file is empty")
    frame = _read_csv(path, spec) if suffix in CSV_SUFFIXES else _read_parquet(path)
    return _mark_missing(frame, spec)


# --------------------------------------------------------------------------------------------------
# Gate: schema_valid
# --------------------------------------------------------------------------------------------------


def failure_frame(failure_cases: pd.DataFrame) -> pd.DataFrame:
    """Normalise pandera's failure cases to columns ``column, check, failure_case, index``."""
    fc = failure_cases.loc[:, ["column", "check", "failure_case", "index"]].copy()
    fc["column"] = fc["column"].astype(object)
    fc["failure_case"] = fc["failure_case"].astype(object)
    fc["check"] = fc["check"].astype(str)
    # A missing column is reported at DataFrame level with the column name as the failure case.
    missing = fc["check"] == "column_in_dataframe"
    fc.loc[missing, "column"] = fc.loc[missing, "failure_case"]
    fc.loc[missing, "failure_case"] = None
    # When a column cannot be coerced, pandera also reports the same values under dtype('...') and runs
    # the value checks on the raw text, which can only fail with a TypeError; both repeat the coercion
    # failure, so they are dropped.
    coerce_failed = set(fc.loc[fc["check"].str.startswith("coerce_dtype("), "column"])
    in_failed = fc["column"].isin(coerce_failed)
    follow_on = in_failed & (
        fc["check"].str.startswith("dtype(") | (fc["index"].isna() & ~fc["check"].str.startswith("coerce_dtype("))
    )
    return fc.loc[~follow_on].reset_index(drop=True)


def _sample_failures(fc: pd.DataFrame, order: dict[str, int]) -> list[dict[str, Any]]:
    """Up to MAX_FAILURE_CASES failure cases, spread over (column, check) groups so none is crowded out."""
    # Round robin: the k-th case of every group comes before the (k+1)-th case of any group.
    rank = fc.groupby(["column", "check"], sort=False, dropna=False).cumcount()
    sample = fc.assign(_rank=rank).sort_values("_rank", kind="stable").head(MAX_FAILURE_CASES)
    sample = sample.assign(_order=sample["column"].map(lambda c: order.get(str(c), len(order))))
    sample = sample.sort_values(["_order", "check", "_rank"], kind="stable")
    # zip over columns rather than itertuples: a field called "index" would clash with tuple.index.
    return [
        {"column": to_jsonable(c), "check": str(k), "failure_case": to_jsonable(f), "index": to_jsonable(i)}
        for c, k, f, i in zip(sample["column"], sample["check"], sample["failure_case"], sample["index"], strict=True)
    ]


def _near_misses(missing: Sequence[str], extra: Sequence[str]) -> dict[str, str]:
    """Missing spec column → the extra file column equal to it but for case and surrounding whitespace."""

    def folded(name: str) -> str:
        return name.strip().casefold()

    found = {folded(e): e for e in extra}
    return {c: found[folded(c)] for c in missing if folded(c) in found}


def _missing_part(column: str, near: Mapping[str, str]) -> str:
    if column in near:
        return (
            f"missing column '{column}' (the file has {near[column]!r}, which differs only in case or surrounding "
            "whitespace)"
        )
    return f"missing column '{column}'"


def data_schema(spec: DatasetSpec) -> pa.DataFrameSchema:
    """The pandera schema of a landed data file (:func:`~mlops_assets.ml.schema.build_schema`).

    With ``spec.label.required`` false the label column may be absent and its cells empty (an unlabelled or
    partly labelled version; its labels come from the labels stream); its type is still checked where present.
    """
    schema = build_schema(spec)
    if spec.label.required:
        return schema
    return schema.update_column(spec.label.column, required=False, nullable=True)


def _schema_gate(df: pd.DataFrame, spec: DatasetSpec, source_name: str) -> tuple[GateResult, pd.DataFrame | None]:
    expected = list(spec.column_names)
    optional = set() if spec.label.required else {spec.label.column}
    missing = [c for c in expected if c not in df.columns and c not in optional]
    extra = [str(c) for c in df.columns if c not in expected]
    condition = (
        f"all {len(expected)} columns of spec '{spec.name}' present, coercible to their types and within "
        "their nullability, range, category and uniqueness rules (0 failure cases)"
    )
    try:
        typed = data_schema(spec).validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc = failure_frame(exc.failure_cases)
        order = {name: i for i, name in enumerate(expected)}
        counts = fc.groupby(["column", "check"], sort=False, dropna=False).size().reset_index(name="count")
        counts["_order"] = counts["column"].map(lambda c: order.get(str(c), len(order)))
        counts = counts.sort_values(["_order", "check"], kind="stable")
        summary = [
            {"column": to_jsonable(c), "check": str(k), "count": int(n)}
            for c, k, n in zip(counts["column"], counts["check"], counts["count"], strict=True)
        ]
        columns = list(dict.fromkeys(str(s["column"]) for s in summary))
        near = _near_misses(missing, extra)
        parts = [
            _missing_part(str(s["column"]), near)
            if s["check"] == "column_in_dataframe"
            else f"{s['column']}: {s['check']} x{s['count']}"
            for s in summary[:_MAX_MESSAGE_GROUPS]
        ]
        if len(summary) > _MAX_MESSAGE_GROUPS:
            parts.append(f"... and {len(summary) - _MAX_MESSAGE_GROUPS} more (column, rule) groups")
        # A column renamed in the file shows as a missing spec column and an extra one: name both.
        unexplained = [e for e in extra if e not in near.values()]
        if missing and unexplained:
            shown = ", ".join(repr(e) for e in unexplained[:_MAX_MESSAGE_GROUPS])
            parts.append(f"columns not in the spec: {shown}{', ...' if len(unexplained) > _MAX_MESSAGE_GROUPS else ''}")
        message = (
            f"{source_name}: schema validation failed with {len(fc)} failure case(s) in column(s) "
            f"{', '.join(columns)}: {'; '.join(parts)} (rule: schema_valid)"
        )
        evidence = {
            "n_failure_cases": len(fc),
            "failure_summary": summary,
            "failure_cases": _sample_failures(fc, order),
            "failure_cases_truncated": len(fc) > MAX_FAILURE_CASES,
            "missing_columns": missing,
            "extra_columns": extra,
            "near_misses": [{"column": c, "found": f} for c, f in near.items()],
            "n_rows": len(df),
        }
        return (
            GateResult(
                name="schema_valid",
                passed=False,
                condition=condition,
                message=message,
                observed=len(fc),
                threshold=0,
                evidence=evidence,
            ),
            None,
        )
    extra_note = f"; extra columns kept but not in the spec: {', '.join(extra)}" if extra else ""
    return (
        GateResult(
            name="schema_valid",
            passed=True,
            condition=condition,
            message=f"{source_name}: all {len(expected)} spec columns valid over {len(df)} rows{extra_note}",
            observed=0,
            threshold=0,
            evidence={
                "n_rows": len(typed),
                "dtypes": {str(c): str(t) for c, t in typed.dtypes.items()},
                "extra_columns": extra,
            },
        ),
        typed,
    )


def gate_schema_valid(df: pd.DataFrame, spec: DatasetSpec, source_name: str) -> GateResult:
    """Gate ``schema_valid``: the frame passes the spec's pandera schema (validated lazily).

    On failure the evidence holds up to :data:`MAX_FAILURE_CASES` failure cases (``column``, ``check``,
    ``failure_case``, ``index``; spread over columns and rules), their total count, a per-(column, check)
    count summary and the missing and extra columns. The message names the source, the columns and the
    rules. Extra columns never fail the gate; they are listed in the evidence.
    """
    return _schema_gate(df, spec, source_name)[0]


def coerce_to_schema(df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame | None:
    """The frame coerced to the spec's schema, or ``None`` when it does not pass the schema."""
    try:
        return data_schema(spec).validate(df, lazy=True)
    except pa.errors.SchemaErrors:
        return None


def coerce_columns(df: pd.DataFrame, spec: DatasetSpec, columns: Sequence[str], source_name: str) -> pd.DataFrame:
    """Some columns of a frame, typed by the same schema rules as a whole data file (e.g. a labels file).

    Args:
        df: A frame as read by :func:`read_data_file`; it must hold ``columns``.
        spec: The dataset spec whose schema types the columns (type, nullability, range, categories).
        columns: Spec columns to keep and type, in this order.
        source_name: How to name the data in messages (usually the file's path).

    Returns:
        A frame of exactly ``columns``, coerced.

    Raises:
        ValueError: a column is missing or fails its schema rules; the message names the source, the
            column(s), the rule(s) and up to five failing values, and ends with ``(rule: schema_valid)``.
    """
    names = list(columns)
    try:
        # Only the columns present are passed: a missing one is reported as such (column_in_dataframe).
        present = [c for c in names if c in df.columns]
        return build_schema(spec).select_columns(names).validate(df.loc[:, present], lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc = failure_frame(exc.failure_cases)
        shown = "; ".join(
            f"missing column {c!r}"
            if k == "column_in_dataframe"
            else f"{c}: {k} ({', '.join(repr(to_jsonable(v)) for v in part['failure_case'].head(5))})"
            for (c, k), part in fc.groupby(["column", "check"], sort=False, dropna=False)
        )
        raise ValueError(f"{source_name}: {len(fc)} failure case(s): {shown} (rule: schema_valid)") from exc


# --------------------------------------------------------------------------------------------------
# Gate: row_count_above_floor
# --------------------------------------------------------------------------------------------------


def gate_row_count(df: pd.DataFrame, data: DataGatePolicy, source_name: str) -> GateResult:
    """Gate ``row_count_above_floor``: the frame has at least ``data.min_rows`` rows (``policy.min_rows``)."""
    floor = data.min_rows
    n_rows = len(df)
    passed = n_rows >= floor
    if passed:
        message = f"{source_name}: {n_rows} rows, at or above the floor of {floor}"
    else:
        message = (
            f"{source_name}: only {n_rows} rows, below the floor of {floor} "
            "(rule: row_count_above_floor, policy.min_rows)"
        )
    return GateResult(
        name="row_count_above_floor",
        passed=passed,
        condition=f"row count >= {floor}",
        message=message,
        observed=n_rows,
        threshold=floor,
        evidence={"n_rows": n_rows, "min_rows": floor},
    )


# --------------------------------------------------------------------------------------------------
# Gate: label_in_domain
# --------------------------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float | np.floating) and math.isnan(value))
    )


def gate_label_in_domain(
    df: pd.DataFrame, spec: DatasetSpec, source_name: str, *, allow_missing: bool | None = None
) -> GateResult:
    """Gate ``label_in_domain``: the label column is present, complete and within ``spec.label.values``.

    With ``spec.label.required`` false (or ``allow_missing=True``) a data version may come without labels: an
    absent label column or empty label cells pass (its labels come later from the labels stream); a value that is
    present must still be in the domain. The evidence then records ``n_labelled`` (rows with a label) and the
    labelled share. ``allow_missing=False`` refuses empty cells whatever the spec says (a labels file).

    Every label cell is read through the label column's type (:func:`~mlops_assets.ml.schema.canonical_value`,
    the rules of the schema's coercion) and compared with ``spec.label.values``, which the spec read through
    the same type at load. So a ``bool`` label written ``yes``/``no`` and declared ``["no", "yes"]`` or
    ``[false, true]`` passes on the file as read, on the typed frame and on its text copy alike; for an
    ``int`` label 1, 1.0, "1" and "1.0" are the same value. A cell that cannot be read as the type is out of
    the domain and quoted as written. Evidence: the out-of-domain values (as written) with counts, the
    missing count and the per-value counts of the values in the domain (keyed by the canonical value's text).
    """
    column = spec.label.column
    allowed = list(spec.label.values)
    optional = (not spec.label.required) if allow_missing is None else allow_missing
    if optional:
        condition = f"label column '{column}' absent or every present value in {allowed} (label.required: false)"
    else:
        condition = f"label column '{column}' present, no missing values, every value in {allowed}"
    if column not in df.columns and optional:
        return GateResult(
            name="label_in_domain",
            passed=True,
            condition=condition,
            message=(
                f"{source_name}: no label column '{column}': the version is unlabelled; its labels come from the "
                "labels stream (label.required: false)"
            ),
            observed=0,
            threshold=0,
            evidence={
                "allowed_values": to_jsonable(allowed),
                "label_column_present": False,
                "n_labelled": 0,
                "labelled_share": 0.0,
                "n_rows": len(df),
            },
        )
    if column not in df.columns:
        return GateResult(
            name="label_in_domain",
            passed=False,
            condition=condition,
            message=f"{source_name}: label column '{column}' is missing (rule: label_in_domain)",
            observed=None,
            threshold=0,
            evidence={"missing_column": column, "allowed_values": to_jsonable(allowed)},
        )
    label_col = spec.column(column)
    # Count distinct values once and canonicalise only those: fast on large files.
    counts = df[column].value_counts(dropna=False)
    n_null = 0
    bad: list[tuple[Any, int]] = []
    in_domain: dict[str, int] = {}
    for value, count in counts.items():
        if count == 0:
            continue  # an unused category of a categorical column (e.g. from Parquet), not a value
        if _is_missing(value):
            n_null += int(count)
            continue
        try:
            canon = canonical_value(label_col, value)
        except (ValueError, TypeError):
            bad.append((value, int(count)))
            continue
        if canon in allowed:
            in_domain[str(canon)] = in_domain.get(str(canon), 0) + int(count)
        else:
            bad.append((value, int(count)))
    n_bad = sum(c for _, c in bad)
    passed = (optional or n_null == 0) and n_bad == 0
    n_labelled = len(df) - n_null
    if passed and n_null:
        message = (
            f"{source_name}: {n_labelled} of {len(df)} rows labelled, every label in {allowed}; {n_null} unlabelled "
            "row(s) wait for the labels stream (label.required: false)"
        )
    elif passed:
        message = f"{source_name}: all {len(df)} values of label '{column}' are in {allowed}"
    else:
        shown = ", ".join(f"{v!r} x{c}" for v, c in bad[:5])
        problems = []
        if n_bad:
            problems.append(f"{n_bad} value(s) outside {allowed} ({shown}{', ...' if len(bad) > 5 else ''})")
        if n_null:
            problems.append(f"{n_null} missing value(s)")
        message = f"{source_name}: label column '{column}' has {' and '.join(problems)} (rule: label_in_domain)"
    return GateResult(
        name="label_in_domain",
        passed=passed,
        condition=condition,
        message=message,
        observed=n_bad + n_null,
        threshold=0,
        evidence={
            "allowed_values": to_jsonable(allowed),
            "n_out_of_domain": n_bad,
            "n_null": n_null,
            "out_of_domain_values": [{"value": to_jsonable(v), "count": c} for v, c in bad[:MAX_LABEL_VALUES]],
            "value_counts": in_domain,
            "label_column_present": True,
            "n_labelled": n_labelled,
            "labelled_share": n_labelled / len(df) if len(df) else 0.0,
            "n_rows": len(df),
        },
    )


# --------------------------------------------------------------------------------------------------
# Gate: ids_unique
# --------------------------------------------------------------------------------------------------


def gate_ids_unique(df: pd.DataFrame, spec: DatasetSpec, source_name: str) -> GateResult:
    """Gate ``ids_unique``: the id column is present, with no missing and no repeated values.

    The ids are compared as the id column's type (:func:`~mlops_assets.ml.schema.typed_column`) whenever they
    all read as it, so "01" and "1" are one int id on the frame as read, its text copy or the typed frame,
    from CSV or Parquet alike.
    """
    column = spec.id_column
    condition = f"id column '{column}' present, with no missing and no repeated values"
    if column not in df.columns:
        return GateResult(
            name="ids_unique",
            passed=False,
            condition=condition,
            message=f"{source_name}: id column '{column}' is missing (rule: ids_unique)",
            observed=None,
            threshold=0,
            evidence={"missing_column": column},
        )
    ids = typed_column(df[column], spec.column(column))
    n_null = int(ids.isna().sum())
    present = ids.dropna()
    n_dup_rows = int(present.duplicated().sum())
    dup_counts = present[present.duplicated(keep=False)].value_counts(sort=False)
    dup_counts = dup_counts[dup_counts > 1]  # a categorical id column also counts its unused categories
    dup_ids = [{"id": to_jsonable(v), "count": int(c)} for v, c in dup_counts.head(MAX_DUPLICATE_IDS).items()]
    passed = n_null == 0 and n_dup_rows == 0
    if passed:
        message = f"{source_name}: all {len(ids)} values of id column '{column}' are present and unique"
    else:
        problems = []
        if n_dup_rows:
            shown = ", ".join(str(d["id"]) for d in dup_ids[:5])
            problems.append(
                f"{len(dup_counts)} id(s) repeated ({n_dup_rows} extra row(s); e.g. {shown}"
                f"{', ...' if len(dup_counts) > 5 else ''})"
            )
        if n_null:
            problems.append(f"{n_null} missing id(s)")
        message = f"{source_name}: id column '{column}' has {' and '.join(problems)} (rule: ids_unique)"
    return GateResult(
        name="ids_unique",
        passed=passed,
        condition=condition,
        message=message,
        observed=n_dup_rows + n_null,
        threshold=0,
        evidence={
            "n_null": n_null,
            "n_duplicate_rows": n_dup_rows,
            "n_duplicated_ids": len(dup_counts),
            "duplicate_ids": dup_ids,
        },
    )


def validate_raw(df: pd.DataFrame, spec: DatasetSpec, source_name: str) -> RawValidation:
    """Run the raw-data gates on a landed data version.

    Gates, in order (all of them always run):

    * ``schema_valid``: the pandera schema of :func:`~mlops_assets.ml.schema.build_schema`, validated
      lazily so every failure of every column is collected; evidence holds up to
      :data:`MAX_FAILURE_CASES` failure cases (spread over columns and rules), the total count and a
      per-(column, check) count summary.
    * ``row_count_above_floor``: at least ``spec.policy.data.min_rows`` rows.
    * ``label_in_domain``: the label column is present, has no missing values and every value is one
      of ``spec.label.values``, each cell read through the label column's type as the spec's values were
      (an int label: 1, 1.0, "1" are one value; a bool label: yes/no, true/false, 1/0; text matches exactly).
      With ``label.required: false`` the column may be absent and cells empty (the evidence counts the
      labelled rows); the labels then come from the labels stream (:mod:`mlops_assets.ml.labels`).
    * ``ids_unique``: the id column is present, has no missing values and no repeats; evidence lists up
      to :data:`MAX_DUPLICATE_IDS` repeated ids with their counts.

    Args:
        df: The frame as read by :func:`read_data_file`.
        spec: The dataset spec.
        source_name: How to name the data in messages (usually the landed file's path).

    Returns:
        The gate results and, when ``schema_valid`` passed, the coerced frame.
    """
    schema_result, typed = _schema_gate(df, spec, source_name)
    gates = (
        schema_result,
        gate_row_count(df, spec.policy.data, source_name),
        gate_label_in_domain(df, spec, source_name),
        # The typed ids are preferred when there are any: "01" and "1" are one id once coerced to int.
        gate_ids_unique(typed if typed is not None else df, spec, source_name),
    )
    return RawValidation(typed=typed, gates=gates)


# --------------------------------------------------------------------------------------------------
# Gates across data versions: volume_within_bounds, ids_unique_across_versions
# --------------------------------------------------------------------------------------------------


def gate_volume_within_bounds(
    n_rows: int,
    previous: tuple[str, int] | None,
    data: DataGatePolicy,
    source_name: str,
    skipped: Sequence[Mapping[str, str]] = (),
) -> GateResult:
    """Gate ``volume_within_bounds``: the row count is within ``policy.volume_ratio_bounds`` of the previous one.

    The ratio ``n_rows / previous_rows`` must lie in ``[lo, hi]`` (inclusive; default ``[0.5, 2.0]``). A version
    with 10x the rows of the last accepted one (a file appended to itself, a query without its date filter)
    is refused, and so is a version with a tenth of them. With nothing to compare (the first version, or no
    earlier version passed its data gates) the gate passes and says so.

    Args:
        n_rows: Rows of this data version.
        previous: ``(data version key, row count)`` of the previous accepted version (the latest earlier data
            version whose data gates passed), or ``None`` when there is none.
        data: The data gates' policy (its ``volume_ratio_bounds``).
        source_name: How to name this version in messages (usually the landed file).
        skipped: Earlier versions passed over because their data gates did not pass, newest first, as
            ``{"data_version": ..., "reason": ...}``; recorded as evidence.

    Returns:
        The gate result; ``observed`` is the ratio (``None`` with nothing to compare), ``threshold`` the bounds.
    """
    lo, hi = data.volume_ratio_bounds
    condition = f"row count / previous accepted version's row count in [{lo:g}, {hi:g}]"
    evidence: dict[str, Any] = {"n_rows": int(n_rows), "bounds": [lo, hi], "skipped": [dict(s) for s in skipped]}
    threshold = f"[{lo:g}, {hi:g}]"
    if previous is None:
        why = (
            f"no earlier data version passed its data gates ({len(skipped)} skipped)"
            if skipped
            else "the first data version"
        )
        return GateResult(
            name="volume_within_bounds",
            passed=True,
            condition=condition,
            message=f"{source_name}: {n_rows} rows; {why}, nothing to compare with (rule: volume_within_bounds)",
            observed=None,
            threshold=threshold,
            evidence={**evidence, "previous_version": None, "previous_rows": None, "ratio": None},
        )
    previous_version, previous_rows = previous
    ratio = n_rows / previous_rows if previous_rows else (math.inf if n_rows else 1.0)
    passed = lo <= ratio <= hi
    shown = f"{ratio:.3g}x" if math.isfinite(ratio) else "infinitely many times"
    message = (
        f"{source_name}: {n_rows} rows, {shown} the {previous_rows} rows of the previous accepted version "
        f"{previous_version}; "
        + (
            f"within the allowed ratio [{lo:g}, {hi:g}]"
            if passed
            else f"outside the allowed ratio [{lo:g}, {hi:g}] (rule: volume_within_bounds, policy.volume_ratio_bounds)"
        )
    )
    return GateResult(
        name="volume_within_bounds",
        passed=passed,
        condition=condition,
        message=message,
        observed=ratio,
        threshold=threshold,
        evidence={
            **evidence,
            "previous_version": previous_version,
            "previous_rows": int(previous_rows),
            "ratio": to_jsonable(ratio),
        },
    )


#: The metadata key of a raw_data materialization that holds its row count.
ROW_COUNT_KEY = "dagster/row_count"


def gate_volume_within_bounds_recorded(
    version: str,
    recorded: Mapping[str, Any],
    earlier: Callable[[], tuple[Sequence[str], Sequence[Mapping[str, str]]]],
    recorded_of: Callable[[str], Mapping[str, Any]],
    data: DataGatePolicy,
) -> GateResult:
    """Gate ``volume_within_bounds`` from the recorded metadata of raw_data materializations; fails closed.

    Without this version's row count (:data:`ROW_COUNT_KEY`) there is nothing to judge: the gate fails, and the
    earlier versions are not looked up. When the previous accepted version has no row count the gate fails too
    (a version whose gates passed has one; it never compares with a guess). Otherwise
    :func:`gate_volume_within_bounds` decides. Messages name the version by its file (the ``file`` metadata's
    last path part, else the version key), as the other raw gates do.

    Args:
        version: The data version checked.
        recorded: The metadata of its latest raw_data materialization (empty when there is none).
        earlier: ``(accepted, skipped)``: the earlier versions whose data gates passed, newest first (only the
            first is used), and the ones passed over; called only when this version has a row count.
        recorded_of: The metadata of a version's latest raw_data materialization; called for the previous
            accepted version only.
        data: The data gates' policy (its ``volume_ratio_bounds``).
    """
    source = str(recorded.get("file", version)).rsplit("/", 1)[-1]
    condition = "row count / previous accepted version's row count within policy.volume_ratio_bounds"
    if recorded.get(ROW_COUNT_KEY) is None:
        return GateResult(
            name="volume_within_bounds",
            passed=False,
            condition=condition,
            message=f"{source}: no row_count recorded for raw_data {version} (rule: volume_within_bounds)",
        )
    accepted, skipped = earlier()
    previous: tuple[str, int] | None = None
    if accepted:
        rows = recorded_of(accepted[0]).get(ROW_COUNT_KEY)
        if rows is None:
            return GateResult(
                name="volume_within_bounds",
                passed=False,
                condition=condition,
                message=(
                    f"{source}: the previous accepted version {accepted[0]} has no row_count recorded "
                    "(rule: volume_within_bounds)"
                ),
            )
        previous = (accepted[0], int(rows))
    return gate_volume_within_bounds(int(recorded[ROW_COUNT_KEY]), previous, data, source, skipped)


def _comparable(current: pd.Series, earlier: pd.Series, spec: DatasetSpec) -> tuple[pd.Series, pd.Series]:
    """Both id series in one comparable form: typed through the id column's spec type ("01" from a CSV whose schema
    failed and 1 from a typed Parquet are one int id), then as they are when both are numeric, else as text."""
    id_spec = spec.column(spec.id_column)
    current, earlier = typed_column(current, id_spec), typed_column(earlier, id_spec)
    if pd.api.types.is_numeric_dtype(current) and pd.api.types.is_numeric_dtype(earlier):
        return current, earlier
    return current.astype("string"), earlier.astype("string")


def gate_ids_unique_across_versions(
    df: pd.DataFrame,
    spec: DatasetSpec,
    source_name: str,
    earlier_ids: Mapping[str, pd.Series],
    unreadable: Sequence[str] = (),
) -> GateResult:
    """Gate ``ids_unique_across_versions``: no id of this version was used by an earlier accepted version.

    Only checked when the spec sets ``id_unique_across_versions: true``; otherwise it passes and says that ids
    may repeat across versions. The caller loads only the id column of each earlier accepted version.

    Args:
        df: This version's frame (typed when there is one), with the id column ``spec.id_column``.
        spec: The dataset spec.
        source_name: How to name this version in messages.
        earlier_ids: Data version key → its ids, for every earlier accepted version, in landing order. An id
            found in several of them is reported with the first.
        unreadable: Earlier accepted versions whose ids could not be read; the gate fails closed on them.

    Returns:
        The gate result; ``evidence`` holds the number of reused ids, up to :data:`MAX_DUPLICATE_IDS` of them with
        the version each came from, the count per version and the versions compared.
    """
    column = spec.id_column
    condition = f"no value of id column '{column}' was used by an earlier accepted data version"
    if not spec.id_unique_across_versions:
        return GateResult(
            name="ids_unique_across_versions",
            passed=True,
            condition=condition,
            message=(
                f"{source_name}: not checked; the spec does not set id_unique_across_versions, so ids may repeat "
                "across data versions"
            ),
            observed=None,
            threshold=0,
            evidence={"id_unique_across_versions": False},
        )
    if column not in df.columns:
        return GateResult(
            name="ids_unique_across_versions",
            passed=False,
            condition=condition,
            message=f"{source_name}: id column '{column}' is missing (rule: ids_unique_across_versions)",
            observed=None,
            threshold=0,
            evidence={"missing_column": column},
        )
    current = df[column].dropna().reset_index(drop=True)
    seen = pd.Series(False, index=current.index)
    reused: list[dict[str, Any]] = []
    per_version: list[dict[str, Any]] = []
    for version, ids in earlier_ids.items():
        mine, theirs = _comparable(current, ids.dropna(), spec)
        hit = mine.isin(theirs).to_numpy(dtype=bool) & ~seen.to_numpy(dtype=bool)
        if hit.any():
            per_version.append({"data_version": version, "n_reused": int(hit.sum())})
            room = MAX_DUPLICATE_IDS - len(reused)
            reused.extend({"id": to_jsonable(v), "data_version": version} for v in current[hit].head(max(room, 0)))
            seen |= hit
    n_reused = int(seen.sum())
    passed = n_reused == 0 and not unreadable
    problems = []
    if n_reused:
        shown = ", ".join(f"{r['id']} (from {r['data_version']})" for r in reused[:5])
        problems.append(
            f"{n_reused} id(s) already used by earlier accepted data versions, e.g. {shown}"
            + (", ..." if n_reused > 5 else "")
        )
    if unreadable:
        problems.append(f"the ids of earlier accepted version(s) {list(unreadable)} could not be read")
    if passed:
        message = (
            f"{source_name}: none of the {len(current)} ids in '{column}' appear in the {len(earlier_ids)} earlier "
            "accepted data version(s)"
        )
    else:
        message = (
            f"{source_name}: id column '{column}': {' and '.join(problems)} "
            "(rule: ids_unique_across_versions, spec id_unique_across_versions)"
        )
    return GateResult(
        name="ids_unique_across_versions",
        passed=passed,
        condition=condition,
        message=message,
        observed=n_reused,
        threshold=0,
        evidence={
            "id_unique_across_versions": True,
            "n_reused": n_reused,
            "reused_ids": reused,
            "per_version": per_version,
            "compared_versions": list(earlier_ids),
            "unreadable_versions": list(unreadable),
        },
    )
