"""What a request to ``mlops-serve`` may contain, validated by the same rules as a landed data file (pure; no I/O).

A model's :class:`Signature` is derived from its dataset spec: one :class:`RequestField` per spec column but the id
column (row ids come from the request id, :func:`mlops_assets.ml.serving_contract.row_ids_for`) and the label column
(labels arrive later through the labels stream). A request carries records (JSON objects, :func:`parse_records`) or
Open Inference Protocol v2 input tensors (:func:`parse_oip_inputs`); each value is read by the rules the data schema
(:func:`mlops_assets.ml.validation.data_schema`) applies to the same cell of a one-row data file read by
:func:`mlops_assets.ml.validation.read_data_file` — typed values as a Parquet file stores them:

* ``int``: ints, whole floats (``5.0``), booleans (``true`` is 1) and text spelling a whole number (``"77"``,
  ``" 77 "``, ``"77.0"``, ``"7.7e1"``; :func:`mlops_assets.ml.schema.canonical_value`); int64 range; a fraction,
  ``inf`` or other text is refused (rule ``type``).
* ``float``: numbers, booleans and text Python's ``float`` reads (``"1e3"``) unless it holds ``_`` or non-ASCII
  digits (``"1_000"``, ``"١٢٣"``: :func:`mlops_assets.ml.schema.float_cell_text`); ``NaN`` is missing; ``±inf``
  (``"inf"``, JSON's ``Infinity``) is refused (rule ``finite``, as the data schema's check).
* ``bool``: booleans, 0/1 and the texts true/false, t/f, yes/no, y/n, 1/0 (any case).
* ``string``/``category``: text as given (a number or boolean becomes its ``str``); an empty text is missing.
* ``datetime``: ISO 8601 text (offsets converted to UTC, naive taken as UTC); numbers are refused, and so are
  ``"now"`` and ``"today"`` (as in the data schema: :data:`mlops_assets.ml.schema.RELATIVE_TIMES`).
* ``null``, ``NaN``, a text the column lists under ``na_values`` and, outside text columns, a text pandas reads as
  missing (``""``, ``"NA"``, ``"null"``, …: :func:`mlops_assets.ml.validation.missing_markers`) are missing:
  refused in a non-nullable field (rule ``nullable``), kept as ``None`` otherwise.

Then ``min``/``max`` (rules ``min``, ``max``), ``categories`` (rule ``categories``) and, across the records of one
request, ``unique`` (rule ``unique``). Structural problems are HTTP 400 (``records``, ``unknown_field``,
``required``, ``tensor``); a value that breaks a spec rule is HTTP 422. Every rule is precomputed per field when the
signature is built, so a request costs a few Python calls per value (no pandera schema per request).
"""

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.ml.features import feature_columns, model_inputs
from mlops_assets.ml.schema import DATETIME_DTYPE, FINITE, RELATIVE_TIMES, canonical_value, float_cell_text
from mlops_assets.ml.serving_contract import ID_KINDS
from mlops_assets.ml.spec import CATEGORICAL_TYPES, ColumnSpec, DatasetSpec
from mlops_assets.ml.validation import missing_markers

#: Open Inference Protocol v2 tensor datatype of each spec column type.
OIP_DATATYPES: dict[str, str] = {
    "int": "INT64",
    "float": "FP64",
    "bool": "BOOL",
    "string": "BYTES",
    "category": "BYTES",
    "datetime": "BYTES",
}

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
#: Texts pandas' ISO 8601 parser reads as the current time; a request value must not depend on when it is read.
#: The ISO 8601 forms pandas.Timestamp parses exactly as pandas.to_datetime(format="ISO8601") does (fast path).
_PLAIN_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}:\d{2})?",
)
#: HTTP status of a malformed request (its shape, an unknown or absent field) and of a value breaking a spec rule.
STATUS_MALFORMED = 400
STATUS_RULE = 422


class RequestError(ValueError):
    """A request the server rejects (HTTP 4xx).

    Attributes:
        field: The request field concerned (``None`` when the problem is the request's shape).
        rule: The rule broken: ``records`` / ``tensor`` (malformed request), ``unknown_field``, ``required``
            (status 400) or ``type``, ``nullable``, ``finite``, ``min``, ``max``, ``categories``, ``unique``
            (status 422).
        row: The 0-based record (row) index, or ``None``.
        status: 400 (malformed request, unknown or missing field) or 422 (a value breaks a spec rule).
        detail: What is wrong, without the row, field and rule.

    ``str()`` names them: ``"row 0, field 'distance': -5.0 is below min 0 (rule: min)"``.
    """

    def __init__(
        self, detail: str, *, rule: str, field: str | None = None, row: int | None = None, status: int = STATUS_RULE
    ) -> None:
        self.detail = detail
        self.rule = rule
        self.field = field
        self.row = row
        self.status = status
        where = ", ".join(
            part for part in (f"row {row}" if row is not None else "", f"field {field!r}" if field else "") if part
        )
        super().__init__(f"{where + ': ' if where else ''}{detail} (rule: {rule})")

    def to_dict(self) -> dict[str, Any]:
        """The error as JSON data: ``{"error": str(self), "field", "rule", "row", "status"}``."""
        return {"error": str(self), "field": self.field, "rule": self.rule, "row": self.row, "status": self.status}


class _Invalid(Exception):
    """A value that breaks a rule of its field (internal: turned into a RequestError with the row and field)."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


_MISSING = object()


def _is_nan(value: Any) -> bool:
    return isinstance(value, float | np.floating) and math.isnan(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _make_reader(col: ColumnSpec) -> Callable[[Any], Any]:
    """The function reading one value of ``col``: a typed Python value, ``_MISSING``, or raise ``_Invalid``.

    Mirrors what the data schema does with one cell of a Parquet data file (read_data_file's missing-value rules,
    then the schema's coercion; see the module docstring).
    """
    markers = missing_markers(col)
    numeric_markers = (
        frozenset(n for n in map(_number, col.na_values) if n is not None)
        if col.type in ("int", "float")
        else frozenset()
    )

    def marked(value: Any) -> bool:
        # A marker text (missing_markers: pandas' defaults outside text columns, na_values) is missing; in an
        # int/float column also a text or number spelling a listed number ("-999" matches -999.0).
        if isinstance(value, str):
            if value in markers:
                return True
            return bool(numeric_markers) and _number(value) in numeric_markers
        if numeric_markers and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value) in numeric_markers
        return False

    kind = col.type
    if kind == "int":

        def read_int(value: Any) -> Any:
            if type(value) is int and not numeric_markers:  # the common case, read as the schema would
                if not _INT64_MIN <= value <= _INT64_MAX:
                    raise _Invalid("type", f"{_shown(value)} is outside the int64 range")
                return value
            if value is None or _is_nan(value) or marked(value):
                return _MISSING
            if isinstance(value, list | dict):
                raise _Invalid("type", f"{_shown(value)} is not an int")
            try:
                number = canonical_value(col, value)
            except (ValueError, TypeError, OverflowError):
                raise _Invalid("type", f"{_shown(value)} is not an int (a whole number)") from None
            if not _INT64_MIN <= number <= _INT64_MAX:
                raise _Invalid("type", f"{_shown(value)} is outside the int64 range")
            return number

        return read_int
    if kind == "float":

        def read_float(value: Any) -> Any:
            if type(value) is float and not numeric_markers and math.isfinite(value):  # the common case
                return value
            if value is None or marked(value):
                return _MISSING
            if isinstance(value, list | dict):
                raise _Invalid("type", f"{_shown(value)} is not a float")
            try:
                number = float(float_cell_text(value))  # as the schema's float64 coercion reads it
            except (ValueError, TypeError, OverflowError):
                raise _Invalid("type", f"{_shown(value)} is not a float") from None
            if math.isinf(number):
                raise _Invalid(FINITE, f"{_shown(value)} is not a finite number")
            return _MISSING if math.isnan(number) else number

        return read_float
    if kind == "bool":

        def read_bool(value: Any) -> Any:
            if value is None or _is_nan(value) or marked(value):
                return _MISSING
            if isinstance(value, list | dict):
                raise _Invalid("type", f"{_shown(value)} is not a boolean")
            try:
                return canonical_value(col, value)
            except (ValueError, TypeError):
                raise _Invalid(
                    "type", f"{_shown(value)} is not a boolean (true/false, t/f, yes/no, y/n, 1/0)"
                ) from None

        return read_bool
    if kind in CATEGORICAL_TYPES:

        def read_text(value: Any) -> Any:
            if type(value) is str and value not in markers:  # the common case
                return value
            if value is None or _is_nan(value) or marked(value):
                return _MISSING
            if isinstance(value, str):
                return value
            if isinstance(value, bool | int | float):
                return str(value)
            raise _Invalid("type", f"{_shown(value)} is not a text")

        return read_text

    def read_datetime(value: Any) -> Any:
        if value is None or _is_nan(value) or marked(value):
            return _MISSING
        if not isinstance(value, str):
            raise _Invalid("type", f"{_shown(value)} is not an ISO 8601 date-time text")
        if value.strip().lower() in RELATIVE_TIMES:
            raise _Invalid("type", f"{_shown(value)} is a relative time; give an ISO 8601 date-time")
        try:
            if _PLAIN_ISO.fullmatch(value):
                stamp = pd.Timestamp(value)
            else:
                stamp = pd.to_datetime(value, utc=True, format="ISO8601")
            if stamp is pd.NaT:
                return _MISSING
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            return stamp.as_unit("ns")  # OutOfBoundsDatetime (a ValueError) outside 1677-2262, as the schema
        except (ValueError, TypeError, OverflowError):
            raise _Invalid("type", f"{_shown(value)} is not an ISO 8601 date-time (within 1677-2262)") from None

    return read_datetime


def _make_checker(col: ColumnSpec) -> Callable[[Any], None] | None:
    """The range/category check of one present value of ``col`` (``None`` when the column has none)."""
    lo, hi = col.min, col.max
    allowed = frozenset(col.categories) if col.categories is not None else None
    if lo is None and hi is None and allowed is None:
        return None

    def bound(value: float) -> str:
        return f"{int(value)}" if float(value).is_integer() else f"{value}"

    def check(value: Any) -> None:
        if lo is not None and not value >= lo:  # "not >=" also refuses NaN (never present here)
            raise _Invalid("min", f"{_shown(value)} is below min {bound(lo)}")
        if hi is not None and not value <= hi:
            raise _Invalid("max", f"{_shown(value)} is above max {bound(hi)}")
        if allowed is not None and value not in allowed:
            raise _Invalid("categories", f"{_shown(value)} is not one of the {len(allowed)} categories of the column")

    return check


@dataclass(frozen=True)
class RequestField:
    """One field a request record may carry: a spec column (neither the id nor the label).

    Attributes:
        name: The column name.
        type: The spec type (``int``, ``float``, ``bool``, ``string``, ``category``, ``datetime``).
        required: Whether every record must carry it (the column is not nullable).
        nullable: Whether it may be ``null`` or absent.
        min: Inclusive lower bound (int/float columns), else ``None``.
        max: Inclusive upper bound (int/float columns), else ``None``.
        categories: The allowed values (string/category columns), else ``None``.
        oip_datatype: Its Open Inference Protocol v2 datatype: ``INT64``, ``FP64``, ``BOOL`` or ``BYTES``.
    """

    name: str
    type: str
    required: bool
    nullable: bool
    min: float | None
    max: float | None
    categories: tuple[str, ...] | None
    oip_datatype: str


@dataclass(frozen=True)
class Signature:
    """What a model's requests contain and what its responses return (:func:`signature_of`).

    Attributes:
        model_name: The spec's (model's) name.
        fields: The request fields: the spec's columns but the id and the label, in spec order.
        feature_names: The model inputs (:func:`mlops_assets.ml.features.feature_columns`), in order.
        id_kind: The id column's spec type (one of :data:`mlops_assets.ml.serving_contract.ID_KINDS`).
    """

    model_name: str
    fields: tuple[RequestField, ...]
    feature_names: tuple[str, ...]
    id_kind: str
    _readers: tuple[Callable[[Any], Any], ...] = field(repr=False, compare=False, default=())
    _checkers: tuple[Callable[[Any], None] | None, ...] = field(repr=False, compare=False, default=())
    _unique: tuple[bool, ...] = field(repr=False, compare=False, default=())
    _id_column: str = field(repr=False, compare=False, default="")
    _label_column: str = field(repr=False, compare=False, default="")
    _names: frozenset[str] = field(repr=False, compare=False, default=frozenset())

    @property
    def field_names(self) -> tuple[str, ...]:
        """The request field names, in spec order."""
        return tuple(f.name for f in self.fields)

    def metadata(self) -> dict[str, Any]:
        """The Open Inference Protocol v2 model metadata (``GET /v2/models/<name>``) without ``versions``.

        Returns:
            ``{"name", "platform", "inputs", "outputs"}``: one input tensor ``{"name", "datatype", "shape": [-1]}``
            per request field, and the outputs ``score`` (FP64, probability of the positive class), ``decision``
            (INT64, 0/1), ``model_version`` (INT64, the version that served the row) and ``row_id`` (INT64 for an
            ``int`` id column, else BYTES).
        """
        return {
            "name": self.model_name,
            "platform": "mlops_assets",
            "inputs": [{"name": f.name, "datatype": f.oip_datatype, "shape": [-1]} for f in self.fields],
            "outputs": [
                {"name": "score", "datatype": "FP64", "shape": [-1]},
                {"name": "decision", "datatype": "INT64", "shape": [-1]},
                {"name": "model_version", "datatype": "INT64", "shape": [-1]},
                {"name": "row_id", "datatype": "INT64" if self.id_kind == "int" else "BYTES", "shape": [-1]},
            ],
        }

    def describe(self) -> list[dict[str, Any]]:
        """The request fields and their rules as JSON data (for documentation and error pages)."""
        return [
            {
                "name": f.name,
                "type": f.type,
                "datatype": f.oip_datatype,
                "required": f.required,
                "nullable": f.nullable,
                "min": f.min,
                "max": f.max,
                "categories": list(f.categories) if f.categories is not None else None,
            }
            for f in self.fields
        ]


def signature_of(spec: DatasetSpec) -> Signature:
    """The request signature of the model trained on ``spec``.

    Args:
        spec: The dataset spec.

    Returns:
        The signature; its per-field readers and checks are precomputed here.

    Raises:
        ValueError: the id column's type is not one of :data:`mlops_assets.ml.serving_contract.ID_KINDS` (row ids are
            made from request ids), or a model input is the id or the label column.
    """
    id_col = spec.column(spec.id_column)
    if id_col.type not in ID_KINDS:
        raise ValueError(
            f"spec {spec.name!r}: a served model's id column must be one of {', '.join(ID_KINDS)}; "
            f"{spec.id_column!r} is {id_col.type}"
        )
    excluded = {spec.id_column, spec.label.column}
    columns = [c for c in spec.columns if c.name not in excluded]
    features = tuple(feature_columns(spec))
    leaked = [f for f in features if f in excluded]
    if leaked:
        raise ValueError(f"spec {spec.name!r}: model inputs {leaked} are the id or label column, not request fields")
    fields = tuple(
        RequestField(
            name=c.name,
            type=c.type,
            required=not c.nullable,
            nullable=c.nullable,
            min=c.min,
            max=c.max,
            categories=c.categories,
            oip_datatype=OIP_DATATYPES[c.type],
        )
        for c in columns
    )
    return Signature(
        model_name=spec.name,
        fields=fields,
        feature_names=features,
        id_kind=id_col.type,
        _readers=tuple(_make_reader(c) for c in columns),
        _checkers=tuple(_make_checker(c) for c in columns),
        _unique=tuple(c.unique for c in columns),
        _id_column=spec.id_column,
        _label_column=spec.label.column,
        _names=frozenset(f.name for f in fields),
    )


def _unknown_field(sig: Signature, name: Any, row: int | None) -> RequestError:
    text = str(name)
    if text == sig._id_column:
        why = "the id column; row ids come from the request id"
    elif text == sig._label_column:
        why = "the label column; labels arrive through the labels stream"
    else:
        folded = text.strip().casefold()
        near = [f.name for f in sig.fields if f.name.strip().casefold() == folded]
        why = "not a field of the model" + (
            f" (did you mean {near[0]!r}? it differs only in case or surrounding whitespace)" if near else ""
        )
    return RequestError(
        f"unknown field {text!r}: {why}", rule="unknown_field", field=text, row=row, status=STATUS_MALFORMED
    )


def _read_record(sig: Signature, record: Any, row: int) -> dict[str, Any]:
    if not isinstance(record, Mapping):
        raise RequestError(
            f"a record must be a JSON object, not {type(record).__name__}",
            rule="records",
            row=row,
            status=STATUS_MALFORMED,
        )
    if not sig._names.issuperset(record):
        unknown = next(key for key in record if key not in sig._names)
        raise _unknown_field(sig, unknown, row)
    out: dict[str, Any] = {}
    for f, reader, checker in zip(sig.fields, sig._readers, sig._checkers, strict=True):
        raw = record.get(f.name, _MISSING)
        if raw is _MISSING:
            if f.required:
                raise RequestError(
                    f"required field {f.name!r} is absent (the column is not nullable)",
                    rule="required",
                    field=f.name,
                    row=row,
                    status=STATUS_MALFORMED,
                )
            out[f.name] = None
            continue
        try:
            value = reader(raw)
            if value is _MISSING:
                if f.required:
                    raise _Invalid("nullable", f"{_shown(raw)} is a missing value and the column is not nullable")
                value = None
            elif checker is not None:
                checker(value)
        except _Invalid as exc:
            raise RequestError(exc.detail, rule=exc.rule, field=f.name, row=row, status=STATUS_RULE) from None
        out[f.name] = value
    return out


def _check_unique(sig: Signature, rows: list[dict[str, Any]]) -> None:
    if len(rows) < 2:
        return
    for f, unique in zip(sig.fields, sig._unique, strict=True):
        if not unique:
            continue
        seen: dict[Any, int] = {}
        for i, row in enumerate(rows):
            value = row[f.name]
            if value is None:
                continue
            if value in seen:
                raise RequestError(
                    f"{_shown(value)} repeats the value of row {seen[value]} and the column is unique",
                    rule="unique",
                    field=f.name,
                    row=i,
                )
            seen[value] = i


def parse_records(sig: Signature, records: Any) -> list[dict[str, Any]]:
    """Validate request records and read each value as its field's type.

    Args:
        sig: The model's signature.
        records: A list of JSON objects (a single object is one record): field name → value.

    Returns:
        One dict per record, every field of ``sig`` in order: a Python ``int``, ``float``, ``bool``, ``str`` or
        ``pandas.Timestamp`` (UTC, ns) — the value the data schema would store — or ``None`` for a missing value.

    Raises:
        RequestError: status 400 for an empty or non-list request, a record that is no object, an unknown field
            (with the near-miss spelling when one differs only in case or surrounding whitespace) or an absent
            required field; status 422 for a value that breaks its field's type, nullability, range, categories
            or uniqueness (across the request's records). The first problem found, by row then field.
    """
    if isinstance(records, Mapping):
        records = [records]
    if not isinstance(records, list):
        raise RequestError(
            f"records must be a JSON list of objects, not {type(records).__name__}",
            rule="records",
            status=STATUS_MALFORMED,
        )
    if not records:
        raise RequestError("the request has no records", rule="records", status=STATUS_MALFORMED)
    rows = [_read_record(sig, record, i) for i, record in enumerate(records)]
    _check_unique(sig, rows)
    return rows


def _tensor_error(detail: str, name: str | None = None) -> RequestError:
    return RequestError(detail, rule="tensor", field=name, status=STATUS_MALFORMED)


def _tensor_values(tensor: Mapping[str, Any], f: RequestField) -> list[Any]:
    name = f.name
    datatype = tensor.get("datatype")
    if datatype != f.oip_datatype:
        raise _tensor_error(f"datatype {datatype!r} does not match the field's {f.oip_datatype} ({f.type})", name)
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
        or shape[0] < 1
    ):
        raise _tensor_error(f"shape {shape!r} is not [n] or [n, 1] with n >= 1", name)
    data = tensor.get("data")
    if not isinstance(data, list):
        raise _tensor_error(f"data must be a JSON list, not {type(data).__name__}", name)
    if len(shape) == 2 and data and all(isinstance(v, list) for v in data):
        # Row-major nested form of an [n, 1] tensor: [[v0], [v1], ...].
        if not all(len(v) == 1 for v in data):
            raise _tensor_error(f"nested data do not match shape {shape}", name)
        data = [v[0] for v in data]
    if len(data) != shape[0]:
        raise _tensor_error(f"shape {shape} says {shape[0]} values but data holds {len(data)}", name)
    return data


def parse_oip_inputs(sig: Signature, inputs: Any) -> list[dict[str, Any]]:
    """Validate the ``inputs`` of an Open Inference Protocol v2 inference request (columnar tensors).

    Args:
        sig: The model's signature.
        inputs: A list of tensors ``{"name", "shape": [n] or [n, 1], "datatype", "data": [...]}``, one per field
            (a nullable field may be left out: all its values are missing). ``datatype`` must be the field's
            (:attr:`RequestField.oip_datatype`); ``BYTES`` data are strings (datetime fields ISO 8601 text);
            ``null`` is a missing value. Every tensor has the same ``n``.

    Returns:
        ``n`` records as :func:`parse_records` returns them (row ``i`` = element ``i`` of every tensor).

    Raises:
        RequestError: status 400 (rule ``tensor``) for a malformed tensor list, a repeated tensor, a datatype that
            is not the field's, a shape that is not ``[n]``/``[n, 1]`` or disagrees with the data or the other
            tensors; status 400 for an unknown tensor name (rule ``unknown_field``) or an absent required field
            (``required``); then every check of :func:`parse_records`.
    """
    if not isinstance(inputs, list) or not inputs:
        raise _tensor_error("inputs must be a non-empty JSON list of tensors")
    by_name: dict[str, list[Any]] = {}
    n_rows: int | None = None
    fields = {f.name: f for f in sig.fields}
    for tensor in inputs:
        if not isinstance(tensor, Mapping) or not isinstance(tensor.get("name"), str):
            raise _tensor_error("every input tensor must be a JSON object with a string 'name'")
        name = tensor["name"]
        f = fields.get(name)
        if f is None:
            raise _unknown_field(sig, name, None)
        if name in by_name:
            raise _tensor_error(f"tensor {name!r} is given twice", name)
        values = _tensor_values(tensor, f)
        if n_rows is None:
            n_rows = len(values)
        elif len(values) != n_rows:
            raise _tensor_error(f"tensor has {len(values)} values but the other tensors have {n_rows}", name)
        by_name[name] = values
    assert n_rows is not None
    for f in sig.fields:
        if f.required and f.name not in by_name:
            raise RequestError(
                f"required input tensor {f.name!r} is absent (the column is not nullable)",
                rule="required",
                field=f.name,
                status=STATUS_MALFORMED,
            )
    records = [{name: values[i] for name, values in by_name.items()} for i in range(n_rows)]
    return parse_records(sig, records)


def _column_array(f: RequestField, values: list[Any]) -> Any:
    kind = f.type
    if kind == "int":
        return pd.array(values, dtype="Int64") if f.nullable else np.array(values, dtype=np.int64)
    if kind == "float":
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if kind == "bool":
        return pd.array(values, dtype="boolean") if f.nullable else np.array(values, dtype=bool)
    if kind in CATEGORICAL_TYPES:
        return pd.array(values, dtype="str")
    return pd.array(values, dtype=DATETIME_DTYPE)


def typed_frame(sig: Signature, records: list[dict[str, Any]]) -> pd.DataFrame:
    """The records of :func:`parse_records` as the data schema types a data file.

    Args:
        sig: The model's signature.
        records: Parsed records (every field present, ``None`` for missing).

    Returns:
        A frame of ``len(records)`` rows (RangeIndex) and one column per field, in field order, with exactly the
        dtype :func:`mlops_assets.ml.validation.data_schema` gives the column of a coerced data file: ``int64``
        (``Int64`` when nullable), ``float64``, ``bool`` (``boolean`` when nullable), ``str`` (pandas' string
        dtype, NaN for missing) or ``datetime64[ns, UTC]``. So ``model_inputs_of`` on it equals the batch path's
        model inputs for the same values.
    """
    data = {f.name: _column_array(f, [r[f.name] for r in records]) for f in sig.fields}
    return pd.DataFrame(data, index=pd.RangeIndex(len(records)), copy=False)


def model_inputs_of(sig: Signature, frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The model inputs of a :func:`typed_frame`: :func:`mlops_assets.ml.features.model_inputs` (the batch path's).

    Args:
        sig: The model's signature (its ``feature_names`` must be the spec's feature columns).
        frame: A typed frame.
        spec: The dataset spec.

    Returns:
        The ``(n, len(sig.feature_names))`` frame handed to ``predict_proba``: ``float64`` numeric inputs (NaN for
        missing) and ``object`` categorical inputs (``str``, NaN for missing).

    Raises:
        ValueError: the signature is not the spec's, or a feature column is missing.
    """
    if sig.model_name != spec.name:
        raise ValueError(f"signature of {sig.model_name!r} used with spec {spec.name!r}")
    return model_inputs(frame, spec)


def model_inputs_of_records(sig: Signature, records: list[dict[str, Any]]) -> pd.DataFrame:
    """The model inputs of parsed records built directly, equal to ``model_inputs_of(sig, typed_frame(...), spec)``.

    The per-request fast path: no typed frame is built, only the ``len(sig.feature_names)`` input columns.

    Args:
        sig: The model's signature.
        records: Parsed records (:func:`parse_records`).

    Returns:
        The ``(n, k)`` model input frame (RangeIndex): ``float64`` numeric inputs (an int as its float, a bool as
        0.0/1.0, NaN for missing) and ``object`` categorical inputs (``str``, ``np.nan`` for missing), columns in
        :attr:`Signature.feature_names` order — exactly :func:`mlops_assets.ml.features.model_inputs`'s frame.
    """
    kinds = {f.name: f.type for f in sig.fields}
    index = pd.RangeIndex(len(records))
    data: dict[str, Any] = {}
    for name in sig.feature_names:
        values = [r[name] for r in records]
        if kinds[name] in CATEGORICAL_TYPES:
            column = np.empty(len(values), dtype=object)
            column[:] = [np.nan if v is None else v for v in values]
            # dtype=object explicitly: pandas 3 would infer its "str" dtype from an array of strings.
            data[name] = pd.Series(column, index=index, dtype=object, copy=False)
        else:
            data[name] = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return pd.DataFrame(data, index=index, columns=list(sig.feature_names), copy=False)
