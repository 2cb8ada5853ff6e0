"""The pandera schema of a landed data version, derived from its :class:`~mlops_assets.ml.spec.DatasetSpec`.

Dtype decisions (``coerce=True`` everywhere, so a CSV that pandas read as text is parsed here):

* ``int``: ``int64`` when the column is not nullable, pandas ``Int64`` (masked, holds ``<NA>``) when it
  is. Coercion is strict: a fractional value such as ``2.5`` fails coercion instead of being truncated
  to ``2`` the way ``Series.astype("int64")`` silently does.
* ``float``: ``float64`` (missing values are ``NaN``).
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
"""

from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera import dtypes
from pandera.engines import pandas_engine

from mlops_assets.ml.spec import ColumnSpec, DatasetSpec

#: The canonical dtype of ``datetime`` columns.
DATETIME_DTYPE = pd.DatetimeTZDtype(unit="ns", tz="UTC")

#: Category lists longer than this are summarised in the check name, which appears in every failure case.
_MAX_LISTED_CATEGORIES = 8

_TRUE_STRINGS = frozenset({"true", "t", "yes", "y", "1"})
_FALSE_STRINGS = frozenset({"false", "f", "no", "n", "0"})


def _whole_number(value: Any) -> Any:
    """Return ``value`` unchanged unless it is a fractional float, which must not become an int."""
    if isinstance(value, float | np.floating) and np.isfinite(value) and not float(value).is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return value


def _reject_fractions(data: Any) -> Any:
    # Only float data can hold fractions; strings such as "2.5" already fail the numpy cast.
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
        return super().coerce(_reject_fractions(data_container))

    def coerce_value(self, value: Any) -> Any:
        return super().coerce_value(_whole_number(value))


@dtypes.immutable
class StrictNullableInt64(pandas_engine.INT64):
    """Pandas ``Int64`` whose coercion rejects fractional values instead of raising without failure cases."""

    def __init__(self) -> None:
        # Parameterless like pandera's own types; declared so type checkers know the signature.
        pass

    def coerce(self, data_container: Any) -> Any:
        return super().coerce(_reject_fractions(data_container))

    def coerce_value(self, value: Any) -> Any:
        return super().coerce_value(_whole_number(value))


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
        return "float64"
    if col.type == "bool":
        return StrictNullableBool() if col.nullable else StrictBool()
    if col.type in ("string", "category"):
        return str
    if col.type == "datetime":
        # utc=True localises naive values as UTC and converts offsets; format="ISO8601" refuses guesses
        # such as day-first dates, which would otherwise be parsed differently row by row.
        # pandera builds DateTime's __init__ with a dataclass decorator that type checkers cannot see through.
        datetime_type: Any = pandas_engine.DateTime
        return datetime_type(unit="ns", tz="UTC", to_datetime_kwargs={"utc": True, "format": "ISO8601"})
    raise ValueError(f"unsupported column type {col.type!r} for column {col.name!r}")  # pragma: no cover


def _bound(value: float, col: ColumnSpec) -> int | float:
    # Integral bounds on int columns stay ints so the check name reads in_range(0, 23), not (0.0, 23.0).
    return int(value) if col.type == "int" and float(value).is_integer() else value


def column_checks(col: ColumnSpec, *, include_categories: bool = True) -> list[pa.Check]:
    """The value checks of one spec column: range and allowed categories.

    Args:
        col: The column spec.
        include_categories: Whether to check ``col.categories`` (off for the label column).

    Returns:
        The pandera checks (empty when the column has no range or categories).
    """
    checks: list[pa.Check] = []
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
