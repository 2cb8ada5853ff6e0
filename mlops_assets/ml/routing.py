"""Deterministic traffic routing between champion and challenger, and stable hashes of model inputs.

Routing hashes ``(salt, row id)`` with SHA-256 to a number ``u`` uniform in [0, 1) and sends the row
to the challenger when ``u < challenger_share``. Therefore:

* the same id always gets the same arm, in any process, on any machine, with any Python, numpy or
  pandas version (SHA-256 is a fixed function of the bytes; nothing depends on ``PYTHONHASHSEED``
  or on pandas' internal hashing, whose output is not promised stable across releases);
* raising the share only moves rows from champion to challenger (monotone): a row in the 5 % canary
  is still with the challenger at 25 %, so a user does not flip between models as the canary grows;
* a new ``salt`` (one per rollout) re-draws the split, so the same users are not always the guinea pigs.

An id is hashed by its ``str()``: ``42`` and ``"42"`` route alike, ``42.0`` (a float) does not. Keep
the id column's type stable (e.g. read ids as strings or integers, never as floats).
"""

import hashlib
import json
import math
from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Any

import numpy as np
import pandas as pd

CHAMPION_ARM = "champion"
CHALLENGER_ARM = "challenger"

# 53 bits: every u = k / 2**53 is an exact double, so u < share is decided without rounding surprises.
_UNIFORM_BITS = 53


def _routing_key(salt: str, row_id: Any) -> bytes:
    # Length-prefixing the salt keeps ("ab", "c") and ("a", "bc") apart.
    return f"{len(salt)}:{salt}:{row_id}".encode()


def _check_ids(row_ids: pd.Series) -> list[Any]:
    if row_ids.isna().any():
        raise ValueError(f"row_ids has {int(row_ids.isna().sum())} missing ids: every row needs an id to be routed")
    return row_ids.tolist()


def routing_uniforms(row_ids: pd.Series, salt: str) -> np.ndarray:
    """The per-row number in [0, 1) that routing compares with the challenger's share.

    Args:
        row_ids: Request or entity ids (no missing values).
        salt: The rollout's salt.

    Returns:
        float64 array aligned with ``row_ids``.
    """
    ids = _check_ids(row_ids)
    shift = 64 - _UNIFORM_BITS
    ints = [int.from_bytes(hashlib.sha256(_routing_key(salt, row_id)).digest()[:8], "big") >> shift for row_id in ids]
    return np.asarray(ints, dtype=np.float64) / float(2**_UNIFORM_BITS)


def assign_arms(row_ids: pd.Series, challenger_share: float, salt: str) -> np.ndarray:
    """Route each row to ``"champion"`` or ``"challenger"``, deterministically and monotonically in the share.

    Args:
        row_ids: Request or entity ids (no missing values).
        challenger_share: Fraction of traffic for the challenger, in [0, 1].
        salt: The rollout's salt (keep it for the whole rollout).

    Returns:
        Array of ``"champion"`` / ``"challenger"`` aligned with ``row_ids``.
    """
    if not 0.0 <= challenger_share <= 1.0 or math.isnan(challenger_share):
        raise ValueError(f"challenger_share must be in [0, 1], got {challenger_share}")
    return np.where(routing_uniforms(row_ids, salt) < challenger_share, CHALLENGER_ARM, CHAMPION_ARM)


def _canonical_number(value: float) -> str:
    if math.isnan(value):
        return "null"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    # An integral value prints as an integer whatever its dtype: 1, 1.0 and np.int8(1) are the same
    # model input, and an int column that became float because of a missing value must not change
    # every other row's hash. -0.0 == 0.0 so it prints "0" too.
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _canonical_value(value: Any) -> str:
    """One cell as text that is the same for equal model inputs, across dtypes, processes and versions."""
    if value is None or value is pd.NA or value is pd.NaT:
        return "null"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return _canonical_number(float(value))
    if isinstance(value, str):
        # Quoted, so the string "1" differs from the number 1 and "null" from a missing value.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, pd.Timestamp | datetime | date | time):
        return "t:" + value.isoformat()
    if isinstance(value, np.datetime64):
        return "null" if np.isnat(value) else "t:" + pd.Timestamp(value).isoformat()
    raise TypeError(f"feature_hash: unsupported value {value!r} of type {type(value).__name__}")


def feature_hash(rows: pd.DataFrame) -> pd.Series:
    """A stable SHA-256 hex digest of each row's model inputs, for the prediction log.

    The digest covers (column name, value) pairs sorted by column name, so column order does not
    matter; numbers are compared by value (``1`` == ``1.0``), strings are quoted, missing values of
    any kind (None, NaN, NA, NaT) are one value.

    Args:
        rows: The model inputs, one row per prediction (column names must be unique).

    Returns:
        Hex digests (64 characters), indexed like ``rows``, named ``"feature_hash"``.
    """
    names = [str(c) for c in rows.columns]
    if len(set(names)) != len(names):
        raise ValueError(f"feature_hash: duplicate column names in {names}")
    order = sorted(range(len(names)), key=names.__getitem__)
    columns: list[Iterable[str]] = []
    for i in order:
        prefix = json.dumps(names[i], ensure_ascii=False) + ":"
        columns.append([prefix + _canonical_value(v) for v in rows.iloc[:, i].tolist()])
    if not columns:
        # zip() of no columns would yield no rows at all; an input-less model still has one hash per row.
        digests = [hashlib.sha256(b"{}").hexdigest()] * len(rows)
    else:
        texts = ("{" + ",".join(cells) + "}" for cells in zip(*columns, strict=True))
        digests = [hashlib.sha256(text.encode()).hexdigest() for text in texts]
    return pd.Series(digests, index=rows.index, name="feature_hash", dtype=object)
