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
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

CHAMPION_ARM = "champion"
CHALLENGER_ARM = "challenger"

# 53 bits: every u = k / 2**53 is an exact double, so u < share is decided without rounding surprises.
_UNIFORM_BITS = 53

# How the hashes are computed fast (the texts hashed are exactly the ones of the per-row definitions
# below, byte for byte): the texts of a column are built once per distinct value or by a vectorised
# kernel (numpy, pandas' factorize, Arrow's cast/take/join), the per-row texts are assembled by Arrow's
# element-wise string join and handed to hashlib as bytes; the only per-row Python is one
# ``hashlib.sha256`` call in a comprehension. Arrow's 64-bit-offset string types hold any total size.
_SHA256 = hashlib.sha256
_TEXT = pa.large_string()
_BYTES = pa.large_binary()
_NONE_TYPE = type(None)


def routing_key_prefix(salt: str) -> str:
    """The text before the id in every routing key of ``salt``: ``"<len(salt)>:<salt>:"``.

    A row's routing key is ``f"{len(salt)}:{salt}:{row_id}".encode()``; length-prefixing the salt keeps
    ``("ab", "c")`` and ``("a", "bc")`` apart.
    """
    return f"{len(salt)}:{salt}:"


def _check_ids(row_ids: pd.Series) -> None:
    missing = row_ids.isna()
    if missing.any():
        raise ValueError(f"row_ids has {int(missing.sum())} missing ids: every row needs an id to be routed")


def _joined(prefix: str, texts: pa.Array, suffix: str) -> list[bytes]:
    """``(prefix + text + suffix).encode()`` per element (Arrow's element-wise string join)."""
    joined = pc.binary_join_element_wise(
        pa.scalar(prefix, _TEXT), texts, pa.scalar(suffix, _TEXT), pa.scalar("", _TEXT)
    )
    return _as_bytes(joined)


def _as_bytes(texts: pa.Array) -> list[bytes]:
    # The UTF-8 bytes of each text (Arrow makes the bytes objects; tolist only collects them).
    bytes_objects: list[bytes] = texts.cast(_BYTES).to_numpy(zero_copy_only=False).tolist()
    return bytes_objects


def _is_exact_str(values: np.ndarray) -> bool:
    return set(map(type, values)) <= {str}


def key_bytes(prefix: str, values: pd.Series, suffix: str = "") -> Sequence[bytes]:
    """``f"{prefix}{v}{suffix}".encode()`` for each ``v`` of ``values.tolist()``, built column by column.

    The bytes are those of the per-row f-string (the routing key :func:`routing_key_prefix` + id, the
    prediction id key of :mod:`mlops_assets.ml.scoring`): integer columns are formatted by Arrow's
    integer-to-string cast (the same decimal text as ``str(int)``), columns of ``str`` (no missing values)
    are taken as they are, anything else goes through the f-string per row. Missing values are formatted,
    not refused (``nan``, ``None``, ``<NA>``): callers that need ids check for them first.

    Args:
        prefix: Text before each value.
        values: The values, shape ``(n,)``.
        suffix: Text after each value.

    Returns:
        ``n`` byte strings (a sequence aligned with ``values``).

    Raises:
        UnicodeEncodeError: a text is not encodable as UTF-8 (a lone surrogate), as ``str.encode`` raises it.
    """
    dtype = values.dtype
    try:
        if isinstance(dtype, np.dtype) and dtype.kind in "iu":
            return _joined(prefix, pa.array(values.to_numpy()).cast(_TEXT), suffix)
        if isinstance(dtype, pd.StringDtype) and not values.isna().any():
            return _joined(prefix, pa.array(values).cast(_TEXT), suffix)
        if isinstance(dtype, np.dtype) and dtype.kind == "O" and not values.isna().any():
            array = values.to_numpy()
            if _is_exact_str(array):
                return _joined(prefix, pa.array(array, type=_TEXT), suffix)
    except (pa.ArrowException, UnicodeError):
        pass  # the per-row f-string below raises the error str.encode raises
    return [f"{prefix}{v}{suffix}".encode() for v in values.tolist()]


def routing_uniforms(row_ids: pd.Series, salt: str) -> np.ndarray:
    """The per-row number in [0, 1) that routing compares with the challenger's share.

    ``u = (int.from_bytes(sha256(key).digest()[:8], "big") >> 11) / 2**53`` with the key
    ``f"{len(salt)}:{salt}:{row_id}".encode()`` (see the module docstring for the contract). The keys are
    built column-wise (:func:`key_bytes`) and the digests read back as one ``>u8`` buffer; the result is
    identical to that per-row definition.

    Args:
        row_ids: Request or entity ids, shape ``(n,)`` (no missing values).
        salt: The rollout's salt.

    Returns:
        float64 array, shape ``(n,)``, aligned with ``row_ids``.

    Raises:
        ValueError: an id is missing.
    """
    _check_ids(row_ids)
    keys = key_bytes(routing_key_prefix(salt), row_ids)
    digests = b"".join([_SHA256(key).digest() for key in keys])
    first = np.frombuffer(digests, dtype=">u8").reshape(-1, 4)[:, 0] >> np.uint64(64 - _UNIFORM_BITS)
    return first.astype(np.float64) / float(2**_UNIFORM_BITS)


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


def _texts(texts: Sequence[str]) -> pa.Array:
    return pa.array(texts, type=_TEXT)


def _take(texts: Sequence[str], index: np.ndarray) -> pa.Array:
    """``texts[index[r]]`` for each row ``r``: per-value texts spread to the rows by Arrow's take."""
    return _texts(texts).take(pa.array(np.asarray(index, dtype=np.int64)))


def _null_where(cells: pa.Array, missing: np.ndarray) -> pa.Array:
    if not missing.any():
        return cells
    return pc.if_else(pa.array(missing), pa.scalar("null", _TEXT), cells)


def _integer_cells(values: np.ndarray) -> pa.Array:
    # str(int(v)) of every integer: Arrow's integer-to-string cast prints the same decimal text.
    return pa.array(values).cast(_TEXT)


def _bool_cells(values: np.ndarray) -> pa.Array:
    return _take(["false", "true"], values.astype(np.int64))


def _float_cells(values: np.ndarray) -> pa.Array:
    """:func:`_canonical_number` of every value of a float array, column-wise."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    with np.errstate(invalid="ignore"):
        integral = finite & (np.trunc(v) == v) & (np.abs(v) < 2.0**53)
    # Integral values (-0.0 included) print as integers, through int64 (exact below 2**53).
    integers = _integer_cells(np.where(integral, v, 0.0).astype(np.int64))
    if integral.all():
        return integers
    # The rest (NaN, +-inf, non-integral or huge): repr() once per distinct value; equal finite floats that
    # are not integral have equal bits, hence equal repr.
    index = np.zeros(len(v), dtype=np.int64)  # 0: "null" (NaN)
    index[v == np.inf] = 1
    index[v == -np.inf] = 2
    decimal = finite & ~integral
    codes, uniques = pd.factorize(v[decimal])
    index[decimal] = codes + 3
    others = _take(["null", "inf", "-inf", *map(float.__repr__, uniques.tolist())], index)
    return pc.if_else(pa.array(integral), integers, others)


def _string_cells(values: Any) -> pa.Array:
    """Quoted (JSON) strings, ``null`` for missing: ``json.dumps`` once per distinct string."""
    codes, uniques = pd.factorize(values)
    texts = [json.dumps(u, ensure_ascii=False) for u in uniques]
    return _take([*texts, "null"], np.where(codes < 0, len(texts), codes))


def _datetime_cells(column: pd.Series) -> pa.Array:
    """``t:<isoformat>`` once per distinct instant (one time zone per column), ``null`` for NaT."""
    codes, uniques = pd.factorize(column)
    texts = ["t:" + ts.isoformat() for ts in uniques]
    return _take([*texts, "null"], np.where(codes < 0, len(texts), codes))


def _per_cell(values: Sequence[Any]) -> pa.Array:
    """:func:`_canonical_value` of every value, in row order (so the first unsupported value raises)."""
    return _texts([_canonical_value(v) for v in values])


def _object_cells(values: np.ndarray) -> pa.Array:
    types = set(map(type, values))
    if types <= {str, float, _NONE_TYPE}:
        missing = pd.isna(values)
        # Strings with missing values (None, NaN) as model_inputs makes them; a float that is a number is not.
        if float not in types or _is_exact_str(values[~missing]):
            return _string_cells(values)
    if types == {float}:
        return _float_cells(values.astype(np.float64))
    if types == {bool}:
        return _bool_cells(values.astype(bool))
    return _per_cell(values.tolist())


def _categorical_cells(column: pd.Series) -> pa.Array:
    """The cells of a categorical column: its categories that occur, canonicalised once, spread by code."""
    codes = np.asarray(column.cat.codes.to_numpy(), dtype=np.int64)
    # Categories in order of first occurrence, so an unsupported one raises for the first row holding one.
    used = pd.unique(codes[codes >= 0])
    cells = _column_cells(pd.Series(column.cat.categories.take(used)))
    position = np.full(len(column.cat.categories), len(used), dtype=np.int64)
    position[used] = np.arange(len(used))
    index = np.full(len(codes), len(used), dtype=np.int64)  # the last text, "null", for a missing value
    index[codes >= 0] = position[codes[codes >= 0]]
    return pa.concat_arrays([cells, _texts(["null"])]).take(pa.array(index))


def _column_cells(column: pd.Series) -> pa.Array:
    """:func:`_canonical_value` of every value of ``column.tolist()``, computed by dtype, as Arrow text.

    Numeric, boolean, string, datetime and categorical dtypes (numpy or pandas' nullable ones) are
    canonicalised column-wise; object columns of strings (with None/NaN for missing), floats or bools
    too; anything else cell by cell with :func:`_canonical_value` itself (same texts, same errors).
    """
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _categorical_cells(column)
    if isinstance(dtype, np.dtype):
        kind = dtype.kind
        if kind == "b":
            return _bool_cells(column.to_numpy())
        if kind in "iu":
            return _integer_cells(column.to_numpy())
        if kind == "f":
            return _float_cells(column.to_numpy(dtype=np.float64))
        if kind == "O":
            return _object_cells(column.to_numpy())
        if kind == "M":
            return _datetime_cells(column)
        return _per_cell(column.tolist())
    if isinstance(dtype, pd.DatetimeTZDtype):
        return _datetime_cells(column)
    if isinstance(dtype, pd.StringDtype):
        return _string_cells(column)
    array = column.array
    if isinstance(array, pd.arrays.BooleanArray | pd.arrays.IntegerArray | pd.arrays.FloatingArray):
        missing = np.asarray(array.isna(), dtype=bool)
        if isinstance(array, pd.arrays.BooleanArray):
            return _null_where(_bool_cells(array.to_numpy(dtype=bool, na_value=False)), missing)
        if isinstance(array, pd.arrays.IntegerArray):
            numpy_dtype = np.uint64 if dtype.kind == "u" else np.int64
            return _null_where(_integer_cells(array.to_numpy(dtype=numpy_dtype, na_value=0)), missing)
        return _null_where(_float_cells(array.to_numpy(dtype=np.float64, na_value=np.nan)), missing)
    return _per_cell(column.tolist())


def _feature_texts(rows: pd.DataFrame, names: list[str], order: list[int]) -> list[bytes]:
    """The canonical text of each row, ``{"<name>":<cell>,...}`` in ``order``, as UTF-8 bytes."""
    pieces: list[Any] = []
    for j, i in enumerate(order):
        prefix = ("{" if j == 0 else ",") + json.dumps(names[i], ensure_ascii=False) + ":"
        pieces += [pa.scalar(prefix, _TEXT), _column_cells(rows.iloc[:, i])]
    pieces.append(pa.scalar("}", _TEXT))
    return _as_bytes(pc.binary_join_element_wise(*pieces, pa.scalar("", _TEXT)))


def _feature_texts_per_row(rows: pd.DataFrame, names: list[str], order: list[int]) -> list[bytes]:
    # The per-row definition: what _feature_texts computes column-wise. Used when a text cannot be encoded
    # (a lone surrogate), so that str.encode raises its own error.
    columns = [
        [json.dumps(names[i], ensure_ascii=False) + ":" + _canonical_value(v) for v in rows.iloc[:, i].tolist()]
        for i in order
    ]
    return [("{" + ",".join(cells) + "}").encode() for cells in zip(*columns, strict=True)]


def feature_hash(rows: pd.DataFrame) -> pd.Series:
    """A stable SHA-256 hex digest of each row's model inputs, for the prediction log.

    The digest covers (column name, value) pairs sorted by column name, so column order does not
    matter; numbers are compared by value (``1`` == ``1.0``), strings are quoted, missing values of
    any kind (None, NaN, NA, NaT) are one value. The hashed text of a row is
    ``{"<name>":<cell>,...}`` with each cell :func:`_canonical_value` of the value; it is built column
    by column (by dtype, once per distinct value where that helps) and is byte-identical to the per-row
    definition.

    Args:
        rows: The model inputs, shape ``(n, k)``, one row per prediction (column names must be unique).

    Returns:
        Hex digests (64 characters), shape ``(n,)``, indexed like ``rows``, named ``"feature_hash"``.

    Raises:
        ValueError: duplicate column names.
        TypeError: a value of an unsupported type (the first in column-name, then row order), e.g. a
            ``Timedelta`` or ``Period``.
        UnicodeEncodeError: a string or column name that UTF-8 cannot encode (a lone surrogate).
    """
    digests = np.asarray(feature_hash_array(rows).to_numpy(zero_copy_only=False), dtype=object)
    return pd.Series(digests, index=rows.index, name="feature_hash", dtype=object)


def feature_hash_array(rows: pd.DataFrame) -> pa.Array:
    """:func:`feature_hash` as an Arrow ``large_string`` array (for frames that store the digests as text columns).

    Args:
        rows: The model inputs, shape ``(n, k)`` (column names must be unique).

    Returns:
        ``n`` hex digests (64 characters each), in row order.

    Raises:
        As :func:`feature_hash`.
    """
    names = [str(c) for c in rows.columns]
    if len(set(names)) != len(names):
        raise ValueError(f"feature_hash: duplicate column names in {names}")
    order = sorted(range(len(names)), key=names.__getitem__)
    texts: Sequence[bytes]
    if not order:
        # An input-less model still has one hash per row.
        texts = [b"{}"] * len(rows)
    else:
        try:
            texts = _feature_texts(rows, names, order)
        except (pa.ArrowException, UnicodeError):
            texts = _feature_texts_per_row(rows, names, order)
    return sha256_hex(texts)


def sha256_hex(texts: Iterable[bytes], hex_digits: int = 64) -> pa.Array:
    """The SHA-256 hex digest of each byte string (its first ``hex_digits`` digits), as Arrow text.

    One :func:`hashlib.sha256` call per text (the only per-row Python); the digests are joined into one
    buffer and hex-encoded at once (lowercase, as ``hexdigest()``), so no Python string is made per row.

    Args:
        texts: The byte strings, ``n`` of them.
        hex_digits: Leading hex digits kept, even, in [2, 64] (the prediction id keeps 32).

    Returns:
        Arrow ``large_string`` array of ``n`` texts of ``hex_digits`` characters:
        ``hashlib.sha256(text).hexdigest()[:hex_digits]`` each.

    Raises:
        ValueError: ``hex_digits`` is odd or out of range.
    """
    if hex_digits % 2 or not 2 <= hex_digits <= 64:
        raise ValueError(f"hex_digits must be even and in [2, 64], got {hex_digits}")
    sha256 = _SHA256
    digests = b"".join([sha256(text).digest() for text in texts])
    n = len(digests) // 32
    kept = np.frombuffer(digests, dtype=np.uint8).reshape(n, 32)[:, : hex_digits // 2]
    hexed = kept.tobytes().hex().encode("ascii")
    offsets = np.arange(0, hex_digits * n + 1, hex_digits, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(hexed))
