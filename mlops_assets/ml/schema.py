"""The pandera schema of a landed data version, derived from its :class:`~mlops_assets.ml.spec.DatasetSpec`.

Dtype decisions (``coerce=True`` everywhere, so a CSV that pandas read as text is parsed here):

* ``int``: ``int64`` when the column is not nullable, pandas ``Int64`` (masked, holds ``<NA>``) when it
  is. Coercion is strict: a fractional value such as ``2.5`` fails coercion instead of being truncated
  to ``2`` the way ``Series.astype("int64")`` silently does. Text is read as the number it spells, by
  the same rule: ``"77"`` and ``"77.0"`` are 77, ``"2.5"`` fails, and Python's ``int`` keeps every digit
  (CSV int columns are read as text for that reason, and a text copy of a frame coerces like the frame).
* ``float``: ``float64`` (missing values are ``NaN``). Text is read as the number it spells, written as data files
  write numbers: ``"1_000"`` and non-ASCII digits fail (Python's ``float`` would accept them), as in int columns.
* ``bool``: ``bool`` when not nullable, pandas ``boolean`` when nullable. Coercion accepts booleans,
  0/1 and the strings true/false, t/f, yes/no, y/n, 1/0 (any case); anything else fails instead of
  becoming ``True`` the way ``astype(bool)`` turns every non-empty string into ``True``.
* ``string`` and ``category``: pandas ``str`` (in pandas 3 the default string dtype; missing values are
  ``NaN``). Category columns are *not* converted to ``pd.Categorical``: coercing to a categorical dtype
  silently turns unknown values into missing ones, so they stay strings and ``Check.isin`` reports
  unknown values instead.
* ``datetime``: timezone-aware ``datetime64[ns, UTC]``. Values must be ISO 8601; values with an offset
  are converted to UTC and naive values are taken to be UTC already. One canonical, aware dtype makes
  ordering and comparisons across files (CSV text vs Parquet timestamps) unambiguous.

What the schema checks: every spec column is present (``required``), its type (via coercion), its
nullability, ``min``/``max`` (``Check.in_range`` / ``ge`` / ``le``), ``categories`` (``Check.isin``) and
``unique``. ``strict=False``: extra columns are allowed and kept; the validation gate reports them in
its evidence without failing. The label column is checked for presence, type and nullability only:
whether its values are in ``spec.label.values`` is the separate ``label_in_domain`` gate.
:func:`canonical_value` reads one value by the same rules as a column's cells; the spec reads its label
values through it and the ``label_in_domain`` gate every label cell, so they agree on what a value is.
"""

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera import dtypes
from pandera.engines import numpy_engine, pandas_engine

from mlops_assets.ml.spec import ColumnSpec, DatasetSpec

#: The canonical dtype of ``datetime`` columns.
DATETIME_DTYPE = pd.DatetimeTZDtype(unit="ns", tz="UTC")

#: Category lists longer than this are summarised in the check name, which appears in every failure case.
_MAX_LISTED_CATEGORIES = 8

_TRUE_STRINGS = frozenset({"true", "t", "yes", "y", "1"})
_FALSE_STRINGS = frozenset({"false", "f", "no", "n", "0"})


def _number_text(value: str) -> str:
    """``value`` stripped, refused unless it is written as a data file writes a number: ASCII, no ``_``.

    Python's ``int()`` and ``float()`` (and so numpy's and pandas' text-to-float casts) also accept ``"1_000"`` and
    non-ASCII digits such as ``"١٢٣"``; a data file's number does not, in an int column as in a float column.

    Raises:
        ValueError: the text holds ``_`` or a non-ASCII character.
    """
    text = value.strip()
    if "_" in text or not text.isascii():
        raise ValueError(f"{value!r} is not a number")
    return text


def float_cell_text(value: Any) -> Any:
    """A float column's cell as the schema's float64 cast may take it: text stripped and checked, else unchanged.

    Shared by the data schema, :func:`canonical_value` and the request path (:mod:`mlops_assets.serving.signature`).

    Raises:
        ValueError: a text holding ``_`` or a non-ASCII character (``"1_000"``, ``"١٢٣"``): not a number a data
            file writes, though Python's ``float`` reads it.
    """
    return _number_text(value) if isinstance(value, str) else value


def _floats_from_text(data: Any) -> Any:
    # Only a column read as text needs the check; the distinct values are checked once (fast on big files).
    if isinstance(data, pd.Series) and (
        pd.api.types.is_object_dtype(data.dtype) or pd.api.types.is_string_dtype(data.dtype)
    ):
        for value in pd.unique(data.dropna()):
            float_cell_text(value)
    return data


def _whole_number(value: Any) -> Any:
    """Return ``value`` unchanged unless it is a fractional float, which must not become an int."""
    if isinstance(value, float | np.floating) and np.isfinite(value) and not float(value).is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return value


def _int_from_text(value: Any) -> Any:
    """Read a text cell as the integer it spells ("77", " 77 ", "77.0", "7.7e1"); other values pass unchanged.

    A text copy of a frame (or a CSV column holding one stray word) carries its numbers as text; they must
    coerce exactly like the numbers they spell, so "77.0" is 77 as the float 77.0 is, and "2.5" fails as 2.5 does.
    Python's ``int`` keeps every digit, so text beyond 2**53 is not rounded through a float.
    """
    if not isinstance(value, str):
        return value
    text = _number_text(value)
    try:
        return int(text)
    except ValueError:
        pass
    number = float(text)  # ValueError for text that is no number at all
    if not math.isfinite(number) or not number.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def _ints_from_text(data: Any) -> Any:
    # Only text data needs reading; the distinct values are mapped once, so this stays fast on big files.
    if isinstance(data, pd.Series) and (
        pd.api.types.is_object_dtype(data.dtype) or pd.api.types.is_string_dtype(data.dtype)
    ):
        codes, uniques = pd.factorize(data)  # missing values get code -1, the None appended last
        parsed = np.array([*(_int_from_text(v) for v in uniques), None], dtype=object)
        # An object Series of Python ints: Series.map would infer float64 and round digits beyond 2**53.
        return pd.Series(parsed[codes], index=data.index, name=data.name, dtype=object)
    return data


def _reject_fractions(data: Any) -> Any:
    # Only float data can hold fractions; text such as "2.5" has already failed in _ints_from_text.
    if isinstance(data, pd.Series | pd.Index) and pd.api.types.is_float_dtype(data.dtype):
        values = data.to_numpy(dtype="float64", na_value=np.nan)
        finite = values[np.isfinite(values)]
        if (finite != np.floor(finite)).any():
            raise ValueError("fractional values cannot be coerced to an integer type")
    return data


def _parse_bool(value: Any, *, allow_missing: bool) -> Any:
    """Map one value to ``True``/``False`` (or keep it missing); raise for anything else."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        if allow_missing:
            return pd.NA
        raise ValueError("missing value in a non-nullable boolean column")
    if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_STRINGS:
            return True
        if text in _FALSE_STRINGS:
            return False
    raise ValueError(f"{value!r} is not a boolean")


def _parse_bools(data: Any, *, allow_missing: bool) -> Any:
    if isinstance(data, pd.Series) and not pd.api.types.is_bool_dtype(data.dtype):
        # Map the distinct values only: a column has few of them, so this stays fast on big files.
        mapping = {v: _parse_bool(v, allow_missing=allow_missing) for v in data.dropna().unique()}
        if data.isna().any() and not allow_missing:
            raise ValueError("missing value in a non-nullable boolean column")
        return data.map(mapping).astype("boolean" if allow_missing else "bool")
    return data


# The classes below replace pandera's stock int/bool types only to make coercion strict (see the
# module docstring). pandera finds the failing elements by calling ``coerce_value`` on each one, so
# both ``coerce`` and ``coerce_value`` apply the same rule; ``str()`` stays the plain dtype name so
# failure cases read ``coerce_dtype('int64')``.
@dtypes.immutable
class StrictInt64(pandas_engine.DataType, dtypes.Int):
    """``int64`` whose coercion rejects fractional values instead of truncating them."""

    type = np.dtype("int64")
    bit_width: int = 64

    def __init__(self) -> None:
        # Parameterless like pandera's own types; declared so type checkers know the signature.
        pass

    def coerce(self, data_container: Any) -> Any:
        return super().coerce(_reject_fractions(_ints_from_text(data_container)))

    def coerce_value(self, value: Any) -> Any:
        return super().coerce_value(_whole_number(_int_from_text(value)))


@dtypes.immutable
class StrictNullableInt64(pandas_engine.INT64):
    """Pandas ``Int64`` whose coercion rejects fractional values instead of raising without failure cases."""

    def __init__(self) -> None:
        # Parameterless like pandera's own types; declared so type checkers know the signature.
        pass

    def coerce(self, data_container: Any) -> Any:
        return super().coerce(_reject_fractions(_ints_from_text(data_container)))

    def coerce_value(self, value: Any) -> Any:
        return super().coerce_value(_whole_number(_int_from_text(value)))


@dtypes.immutable
class StrictFloat64(numpy_engine.Float64):
    """``float64`` whose coercion reads text as a data file writes numbers: ``"1_000"`` and ``"١٢٣"`` fail."""

    def __init__(self) -> None:
        # Parameterless like pandera's own types; declared so type checkers know the signature.
        pass

    def coerce(self, data_container: Any) -> Any:
        return super().coerce(_floats_from_text(data_container))

    def coerce_value(self, value: Any) -> Any:
        return super().coerce_value(float_cell_text(value))


@dtypes.immutable
class StrictBool(pandas_engine.DataType, dtypes.Bool):
    """Numpy ``bool`` parsed from booleans, 0/1 or true/false-like strings; missing values fail."""

    type = np.dtype("bool")

    def __init__(self) -> None:
        # Parameterless like pandera's own types; declared so type checkers know the signature.
        pass

    def coerce(self, data_container: Any) -> Any:
        return super().coerce(_parse_bools(data_container, allow_missing=False))

    def coerce_value(self, value: Any) -> Any:
        return _parse_bool(value, allow_missing=False)


@dtypes.immutable
class StrictNullableBool(pandas_engine.BOOL):
    """Pandas ``boolean`` parsed from booleans, 0/1 or true/false-like strings; missing values stay ``<NA>``."""

    def __init__(self) -> None:
        # Parameterless like pandera's own types; declared so type checkers know the signature.
        pass

    def coerce(self, data_container: Any) -> Any:
        return super().coerce(_parse_bools(data_container, allow_missing=True))

    def coerce_value(self, value: Any) -> Any:
        return _parse_bool(value, allow_missing=True)


#: What ``pd.api.types.infer_dtype(skipna=True)`` says of a column holding a number (bools excluded).
_NUMBER_KINDS = frozenset({"integer", "floating", "mixed-integer", "mixed-integer-float", "decimal", "mixed"})


def _is_number(value: Any) -> bool:
    number = isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)
    return number and not (isinstance(value, float | np.floating) and math.isnan(value))


def _refuse_numbers(data: Any) -> Any:
    # A date-time is ISO 8601 text (or already a date-time): pandas reads a number as an epoch offset, and the float
    # 2**63 wraps to NaT — a value silently turned into a missing one. Text and date-times pass unchanged.
    if not isinstance(data, pd.Series | pd.Index) or isinstance(data.dtype, pd.DatetimeTZDtype):
        return data
    numeric = pd.api.types.is_numeric_dtype(data.dtype) and not pd.api.types.is_bool_dtype(data.dtype)
    if numeric and data.notna().any():
        raise ValueError("numbers are not ISO 8601 date-time texts")
    mixed = pd.api.types.is_object_dtype(data.dtype) and pd.api.types.infer_dtype(data, skipna=True) in _NUMBER_KINDS
    if mixed and any(_is_number(v) for v in data):
        raise ValueError("numbers are not ISO 8601 date-time texts")
    return data


#: Texts ``pandas.to_datetime`` reads as the clock's time at reading, even with ``format="ISO8601"``: a file holding
#: them would read differently on every run.
RELATIVE_TIMES = frozenset({"now", "today"})


def _is_relative_time(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in RELATIVE_TIMES


def _has_relative_time(data: pd.Series | pd.Index) -> bool:
    if isinstance(data.dtype, pd.StringDtype):
        # pandas' string dtype (what CSV text columns read as): Arrow's vectorised kernels, ~15x the loop below.
        return bool(data.str.strip().str.lower().isin(list(RELATIVE_TIMES)).any())
    return any(_is_relative_time(v) for v in data)  # object columns mix types: one look per cell


def _refuse_relative_times(data: Any) -> Any:
    texts = isinstance(data, pd.Series | pd.Index) and not pd.api.types.is_numeric_dtype(data.dtype)
    if texts and not isinstance(data.dtype, pd.DatetimeTZDtype) and _has_relative_time(data):
        raise ValueError("'now' and 'today' are not ISO 8601 date-time texts")
    return data


class StrictDateTime(pandas_engine.DateTime):  # type: ignore[misc]
    """``datetime64[ns, UTC]`` from ISO 8601 text or date-times; a number fails (never an epoch, never NaT), and so
    do ``"now"`` and ``"today"`` (pandas reads them as the time of reading: the same file would read differently)."""

    def coerce(self, data_container: Any) -> Any:
        return super().coerce(_refuse_relative_times(_refuse_numbers(data_container)))

    def coerce_value(self, value: Any) -> Any:
        if _is_number(value):
            raise ValueError(f"{value!r} is a number, not an ISO 8601 date-time text")
        if _is_relative_time(value):
            raise ValueError(f"{value!r} is the time of reading, not an ISO 8601 date-time text")
        return super().coerce_value(value)


def column_dtype(col: ColumnSpec) -> Any:
    """The pandera dtype a spec column is coerced to (see the module docstring for the decisions).

    Args:
        col: The column spec.

    Returns:
        A pandera ``DataType`` instance or a type pandera understands.
    """
    if col.type == "int":
        return StrictNullableInt64() if col.nullable else StrictInt64()
    if col.type == "float":
        return StrictFloat64()
    if col.type == "bool":
        return StrictNullableBool() if col.nullable else StrictBool()
    if col.type in ("string", "category"):
        return str
    if col.type == "datetime":
        # utc=True localises naive values as UTC and converts offsets; format="ISO8601" refuses guesses
        # such as day-first dates, which would otherwise be parsed differently row by row.
        # pandera builds DateTime's __init__ with a dataclass decorator that type checkers cannot see through.
        datetime_type: Any = StrictDateTime
        return datetime_type(unit="ns", tz="UTC", to_datetime_kwargs={"utc": True, "format": "ISO8601"})
    raise ValueError(f"unsupported column type {col.type!r} for column {col.name!r}")  # pragma: no cover


def canonical_value(col: ColumnSpec, value: Any) -> Any:
    """One value as the column's type stores it, read by the same rules as the column's cells.

    Used to bring the label values a spec declares (``"yes"``, ``"1"``, ``1.0``) and the label cells of every
    file to one form, so that a spec, a data file, a labels file and the gates agree on what a value is.

    Args:
        col: The column spec whose type decides (``int``, ``float``, ``bool``, ``string`` or ``category``).
        value: A value as written in YAML or found in a file.

    Returns:
        A plain Python ``int``, ``float``, ``bool`` or ``str``.

    Raises:
        ValueError: the value cannot be read as the column's type (e.g. ``"maybe"`` for ``bool``, ``1.5`` or
            ``"a"`` for ``int``), it is missing, or the column is a ``datetime``.
    """
    if value is None or value is pd.NA or (isinstance(value, float | np.floating) and np.isnan(value)):
        raise ValueError("a missing value is not a value")
    if col.type == "int":
        number = _whole_number(_int_from_text(value))
        if isinstance(number, float | np.floating) and not np.isfinite(number):
            raise ValueError(f"{value!r} is not a whole number")
        return int(number)
    if col.type == "float":
        return float(float_cell_text(value))
    if col.type == "bool":
        return bool(_parse_bool(value, allow_missing=False))
    if col.type in ("string", "category"):
        # As a text column stores it: str() of the value (YAML's 1 is the text "1").
        return str(value.item() if isinstance(value, np.generic) else value)
    raise ValueError(f"a {col.type} column has no canonical scalar value")


def typed_column(values: pd.Series, col: ColumnSpec) -> pd.Series:
    """One column coerced to its spec type when every present value can be, else returned unchanged.

    For gates that compare values of a frame whose schema failed elsewhere (e.g. ``ids_unique`` on the frame as
    read): "01" and "1" are one int id, whether the file was CSV (text) or Parquet (numbers). Missing values
    are kept (the nullable form of the type is used); nothing is checked but the type.

    Args:
        values: The column as read (or already typed; then it is returned as is).
        col: Its column spec.

    Returns:
        The coerced column, or ``values`` when some present value is not of the type.
    """
    dtype = pandas_engine.Engine.dtype(column_dtype(replace(col, nullable=True)))
    try:
        return dtype.coerce(values)
    except (ValueError, TypeError, OverflowError, pa.errors.ParserError):
        return values


def _bound(value: float, col: ColumnSpec) -> int | float:
    # Integral bounds on int columns stay ints so the check name reads in_range(0, 23), not (0.0, 23.0).
    return int(value) if col.type == "int" and float(value).is_integer() else value


#: The name of the check that refuses ±inf in a ``float`` column (pandera check name and request rule).
FINITE = "finite"


def _finite(values: pd.Series) -> pd.Series:
    return ~values.isin([np.inf, -np.inf])


def column_checks(col: ColumnSpec, *, include_categories: bool = True) -> list[pa.Check]:
    """The value checks of one spec column: finite (``float``), range and allowed categories.

    Args:
        col: The column spec.
        include_categories: Whether to check ``col.categories`` (off for the label column).

    Returns:
        The pandera checks (empty when the column has no range or categories).
    """
    checks: list[pa.Check] = []
    if col.type == "float":
        # pandas reads "inf", "-Infinity", 1e999 as ±inf; scikit-learn refuses them at training or scoring with
        # "Input X contains infinity" (no file, no column): refuse them here, where the file and column are known.
        checks.append(pa.Check(_finite, element_wise=False, name=FINITE, error=f"{FINITE}: ±inf is not a value"))
    if col.min is not None and col.max is not None:
        checks.append(pa.Check.in_range(_bound(col.min, col), _bound(col.max, col)))
    elif col.min is not None:
        checks.append(pa.Check.ge(_bound(col.min, col)))
    elif col.max is not None:
        checks.append(pa.Check.le(_bound(col.max, col)))
    if include_categories and col.categories is not None:
        allowed = list(col.categories)
        if len(allowed) > _MAX_LISTED_CATEGORIES:
            # The check name is repeated in every failure case; 105 airport codes each time is noise.
            shown = ", ".join(repr(c) for c in allowed[:_MAX_LISTED_CATEGORIES])
            checks.append(pa.Check.isin(allowed, error=f"isin([{shown}, ... {len(allowed)} categories])"))
        else:
            checks.append(pa.Check.isin(allowed))
    return checks


def build_schema(spec: DatasetSpec) -> pa.DataFrameSchema:
    """Build the pandera schema of a landed data version from its spec.

    A fresh schema is returned on every call because pandera mutates schema components during
    validation; building one is cheap.

    Args:
        spec: The dataset spec.

    Returns:
        A ``DataFrameSchema`` with ``coerce=True`` and ``strict=False``; validate it with
        ``lazy=True`` to collect every failure at once.
    """
    columns: dict[str, pa.Column] = {}
    for col in spec.columns:
        is_label = col.name == spec.label.column
        checks = column_checks(col, include_categories=not is_label)
        if is_label:
            # The label domain is the label_in_domain gate's job; only presence, type and nullability here.
            checks = []
        columns[col.name] = pa.Column(
            column_dtype(col),
            checks=checks,
            nullable=col.nullable,
            unique=col.unique,
            required=True,
            coerce=True,
            description=col.description or None,
        )
    return pa.DataFrameSchema(
        columns,
        coerce=True,
        strict=False,
        name=spec.name,
        description=spec.description or None,
    )
