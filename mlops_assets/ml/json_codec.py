"""The one JSON codec for everything stored or emitted as JSON: standard JSON only (RFC 8259). Pure: no Dagster, no I/O.

Python's :mod:`json` writes non-finite floats as the tokens ``NaN``, ``Infinity`` and ``-Infinity`` by default.
They are not JSON: PostgreSQL ``jsonb``, JavaScript's ``JSON.parse`` and most other readers refuse them. Every
writer of stored or emitted JSON (the IO managers' record values, registry columns, sensor cursors, rollout states,
profiles, evidence tags) goes through :func:`dumps`, with one convention:

* ``NaN``, ``+inf`` and ``-inf`` (Python, numpy) become ``null``, as do ``pd.NA`` and ``pd.NaT``. An undefined or
  unbounded number is "no value" in stored JSON; code that needs to tell them apart (the drift reference's bin
  edges) encodes them itself before calling the codec.
* numpy scalars become Python numbers/booleans, numpy arrays lists; ``datetime``, ``date``, ``time``,
  ``pd.Timestamp`` and ``np.datetime64`` ISO 8601 strings; an :class:`~enum.Enum` its value; tuples lists; sets
  sorted lists; a :class:`~pathlib.Path` its string; any other mapping a dict.
* Dict keys stay as :mod:`json` writes them (str, int, float, bool, None; ``sort_keys`` orders them as before);
  other keys are converted like values and then written as strings.
* Anything else goes to ``default`` (as with :func:`json.dumps`) and its result is converted again; without
  ``default`` it is a :class:`TypeError`.

:func:`loads` reads standard JSON and, for values written before this codec existed, maps the legacy
``NaN``/``Infinity``/``-Infinity`` tokens to ``None`` as well, so a value reads the same whether it was written
before or after.
"""

import enum
import json
import math
import sys
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = ["JSONDecodeError", "dumps", "loads", "to_jsonable"]

#: What :func:`loads` raises on text that is not JSON.
JSONDecodeError = json.JSONDecodeError

#: The tokens Python's json writes for non-finite floats (``allow_nan=True``); not standard JSON.
LEGACY_CONSTANTS = frozenset({"NaN", "Infinity", "-Infinity"})


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _is_pandas_missing(value: Any) -> bool:
    # pandas is not imported here (the registry imports this module and stays free of it); a pd.NA or pd.NaT
    # can only exist once pandas has been imported by someone else.
    pd = sys.modules.get("pandas")
    return pd is not None and (value is pd.NA or value is pd.NaT)


def _datetime64(value: np.datetime64) -> str | None:
    if np.isnat(value):
        return None
    import pandas as pd  # a datetime64 (nanoseconds) is converted exactly by pandas only

    return pd.Timestamp(value).isoformat()


def _key(key: Any, default: Callable[[Any], Any] | None) -> Any:
    # json itself accepts str, int, float, bool and None keys (and sorts them before stringifying); keep them.
    if key is None or isinstance(key, str | bool):
        return key
    if isinstance(key, int) and not isinstance(key, enum.Enum):
        return int(key)
    if isinstance(key, float):
        return float(key) if math.isfinite(key) else json.dumps(float(key))  # "NaN" / "Infinity" as a key string
    converted = to_jsonable(key, default=default)
    if converted is None or isinstance(converted, str | bool | int | float):
        return converted
    return json.dumps(converted, sort_keys=True, allow_nan=False)


def to_jsonable(value: Any, *, default: Callable[[Any], Any] | None = None) -> Any:
    """``value`` as plain JSON data (dict, list, str, int, float, bool, None), recursively; see the module docstring.

    Args:
        value: Any value.
        default: Called with a value of any other type; its result is converted in turn. ``None``: such a value
            is a :class:`TypeError`.

    Returns:
        Data that ``json.dumps(..., allow_nan=False)`` accepts: no non-finite float anywhere.

    Raises:
        TypeError: a value of an unsupported type and no ``default``.
    """
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, default=default)
    if isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _number(float(value))
    if isinstance(value, Mapping):
        return {_key(k, default): to_jsonable(v, default=default) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, default=default) for v in value]
    if _is_pandas_missing(value):
        return None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return _number(float(value))
    if isinstance(value, np.datetime64):
        return _datetime64(value)
    if isinstance(value, np.ndarray):
        # Element by element (not .tolist(), which turns datetime64[ns] into integers); a 0-d array is its scalar.
        if value.ndim == 0:
            return to_jsonable(value[()], default=default)
        return [to_jsonable(v, default=default) for v in value]
    if isinstance(value, np.generic):  # other numpy scalars (np.str_ is a str, handled above)
        return to_jsonable(value.item(), default=default)
    if isinstance(value, datetime | date | time):  # pd.Timestamp is a datetime
        return value.isoformat()
    if isinstance(value, set | frozenset):
        items = [to_jsonable(v, default=default) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, PurePath):
        return str(value)
    if default is not None:
        return to_jsonable(default(value), default=default)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None, **kwargs: Any) -> str:
    """Standard JSON text of ``value``: ``json.dumps(to_jsonable(value), allow_nan=False, **kwargs)``.

    Args:
        value: Any value :func:`to_jsonable` converts.
        default: As in :func:`to_jsonable` (e.g. ``str`` for a lenient writer).
        **kwargs: Formatting options of :func:`json.dumps` (``sort_keys``, ``indent``, ``separators``,
            ``ensure_ascii``); ``allow_nan`` is always ``False``.
    """
    kwargs.pop("allow_nan", None)
    return json.dumps(to_jsonable(value, default=default), allow_nan=False, **kwargs)


def _legacy_constant(token: str) -> None:
    del token
    return None


def loads(text: str | bytes | bytearray, **kwargs: Any) -> Any:
    """Parse JSON text; the legacy ``NaN``/``Infinity``/``-Infinity`` tokens (not JSON) read as ``None``."""
    kwargs.setdefault("parse_constant", _legacy_constant)
    return json.loads(text, **kwargs)
