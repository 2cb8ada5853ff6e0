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

import binascii
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from typing import Any, NamedTuple, TypeAlias

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
# kernel (numpy, pandas' factorize, Arrow's cast/take/join), the per-row texts are assembled by one Arrow
# element-wise string join and handed to hashlib as bytes a chunk at a time; the only per-row Python is
# one ``hashlib.sha256`` call in a comprehension. Arrow's 64-bit-offset string types hold any total size.
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


def _joined(prefix: str, texts: pa.Array, suffix: str) -> pa.Array:
    """``prefix + text + suffix`` per element (Arrow's element-wise string join)."""
    return pc.binary_join_element_wise(pa.scalar(prefix, _TEXT), texts, pa.scalar(suffix, _TEXT), pa.scalar("", _TEXT))


def _as_bytes(texts: pa.Array) -> list[bytes]:
    # The UTF-8 bytes of each text (Arrow makes the bytes objects; tolist only collects them).
    bytes_objects: list[bytes] = texts.cast(_BYTES).to_numpy(zero_copy_only=False).tolist()
    return bytes_objects


#: Byte strings to hash: Arrow text or binary (built column-wise), or Python bytes (built per row).
Texts: TypeAlias = pa.Array | Sequence[bytes]

# Texts are turned into bytes objects and hashed this many at a time: the bytes objects of one chunk are
# freed and their memory reused by the next, and the chunk's keys and digests stay in the CPU caches
# (a 1M-row list of bytes objects and its digests do not).
_CHUNK_ROWS = 8192


def _digests(texts: pa.Array | Iterable[bytes]) -> bytes:
    """The SHA-256 digests of the texts, concatenated: 32 bytes per text, in order.

    One :func:`hashlib.sha256` call per text (the only per-row Python): hashlib needs a bytes-like object per
    text, which Arrow makes for each chunk of :data:`_CHUNK_ROWS` texts.
    """
    sha256 = _SHA256
    if not isinstance(texts, pa.Array):
        return b"".join([sha256(text).digest() for text in texts])
    binary = texts.cast(_BYTES)
    parts = []
    for start in range(0, len(binary), _CHUNK_ROWS):
        chunk = binary.slice(start, _CHUNK_ROWS).to_numpy(zero_copy_only=False).tolist()
        parts.append(b"".join([sha256(text).digest() for text in chunk]))
    return b"".join(parts)


def _is_exact_str(values: np.ndarray) -> bool:
    return set(map(type, values)) <= {str}


def _key_texts(prefix: str, values: pd.Series, suffix: str) -> Texts:
    # key_bytes' keys: Arrow text where they are built column-wise, else the per-row bytes.
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
    keys = _key_texts(prefix, values, suffix)
    return _as_bytes(keys) if isinstance(keys, pa.Array) else keys


def key_digests(prefix: str, values: pd.Series, suffix: str = "") -> bytes:
    """The SHA-256 digests of :func:`key_bytes` ``(prefix, values, suffix)``, concatenated (32 bytes per value).

    The keys are built column-wise as :func:`key_bytes` builds them and hashed chunk by chunk, without a
    list of all their bytes objects.

    Args:
        prefix: Text before each value.
        values: The values, shape ``(n,)``.
        suffix: Text after each value.

    Returns:
        ``32 * n`` bytes: ``hashlib.sha256(key).digest()`` of each key, in order.

    Raises:
        As :func:`key_bytes`.
    """
    return _digests(_key_texts(prefix, values, suffix))


def routing_uniforms(row_ids: pd.Series, salt: str) -> np.ndarray:
    """The per-row number in [0, 1) that routing compares with the challenger's share.

    ``u = (int.from_bytes(sha256(key).digest()[:8], "big") >> 11) / 2**53`` with the key
    ``f"{len(salt)}:{salt}:{row_id}".encode()`` (see the module docstring for the contract). The keys are
    built column-wise (:func:`key_digests`) and the digests read back as one ``>u8`` buffer; the result is
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
    digests = key_digests(routing_key_prefix(salt), row_ids)
    first = np.frombuffer(digests, dtype=">u8").reshape(-1, 4)[:, 0] >> np.uint64(64 - _UNIFORM_BITS)
    return first.astype(np.float64) / float(2**_UNIFORM_BITS)


def challenger_rows(row_ids: pd.Series, challenger_share: float, salt: str) -> np.ndarray:
    """Whether each row goes to the challenger: ``routing_uniforms(row_ids, salt) < challenger_share``.

    Args:
        row_ids: Request or entity ids, shape ``(n,)`` (no missing values).
        challenger_share: Fraction of traffic for the challenger, in [0, 1].
        salt: The rollout's salt (keep it for the whole rollout).

    Returns:
        bool array, shape ``(n,)``, aligned with ``row_ids``.

    Raises:
        ValueError: the share is outside [0, 1] or NaN, or an id is missing.
    """
    if not 0.0 <= challenger_share <= 1.0 or math.isnan(challenger_share):
        raise ValueError(f"challenger_share must be in [0, 1], got {challenger_share}")
    challenger: np.ndarray = routing_uniforms(row_ids, salt) < challenger_share
    return challenger


def assign_arms(row_ids: pd.Series, challenger_share: float, salt: str) -> np.ndarray:
    """Route each row to ``"champion"`` or ``"challenger"``, deterministically and monotonically in the share.

    Args:
        row_ids: Request or entity ids (no missing values).
        challenger_share: Fraction of traffic for the challenger, in [0, 1].
        salt: The rollout's salt (keep it for the whole rollout).

    Returns:
        Array of ``"champion"`` / ``"challenger"`` aligned with ``row_ids`` (:func:`challenger_rows`).
    """
    return np.where(challenger_rows(row_ids, challenger_share, salt), CHALLENGER_ARM, CHAMPION_ARM)


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


class _Coded(NamedTuple):
    """Cells given as ``texts[positions[r]]`` for each row ``r``: a few texts spread to the rows by Arrow's take.

    Text joined before or after every cell of such a column is joined to its few ``texts`` only (see
    :func:`_feature_texts`), not row by row.
    """

    texts: pa.Array
    positions: np.ndarray


class _Pieces(NamedTuple):
    """Cells given as pieces joined row by row (a null piece is left out of its row's text)."""

    pieces: list["pa.Array | _Coded"]


Cells: TypeAlias = pa.Array | _Coded | _Pieces


def _texts(texts: Sequence[str]) -> pa.Array:
    return pa.array(texts, type=_TEXT)


def _take(texts: Sequence[str], index: np.ndarray) -> _Coded:
    """``texts[index[r]]`` for each row ``r``."""
    return _Coded(_texts(texts), np.asarray(index, dtype=np.int64))


def _array(cells: Cells) -> pa.Array:
    """The cells as one Arrow text per row."""
    if isinstance(cells, _Coded):
        return cells.texts.take(pa.array(cells.positions))
    if isinstance(cells, _Pieces):
        return _join([_array(piece) for piece in cells.pieces])
    return cells


def _join(pieces: list[Any]) -> pa.Array:
    # Element-wise concatenation of text arrays and scalars; a null piece is left out of its row's text.
    return pc.binary_join_element_wise(*pieces, pa.scalar("", _TEXT), null_handling="skip")


def _where(cells: pa.Array | _Coded, mask: np.ndarray, text: str | None) -> pa.Array | _Coded:
    """``text`` (None: a null) instead of the cells where ``mask``."""
    if not mask.any():
        return cells
    if isinstance(cells, _Coded):
        index = np.where(mask, len(cells.texts), cells.positions)
        return _Coded(pa.concat_arrays([cells.texts, pa.array([text], type=_TEXT)]), index)
    return pc.if_else(pa.array(mask), pa.scalar(text, _TEXT), cells)


def _null_where(cells: Cells, missing: np.ndarray) -> Cells:
    return _where(_array(cells) if isinstance(cells, _Pieces) else cells, missing, "null")


# An integer column spanning at most this many values (and at most a quarter of its rows) is printed once per
# value of its range and spread to the rows (ages, counts, months); wider ones are cast row by row.
_CODED_INTEGER_SPAN = 1 << 16


def _integer_cells(values: np.ndarray) -> Cells:
    # str(int(v)) of every integer: Arrow's integer-to-string cast prints the same decimal text.
    if len(values) >= 4:
        low, high = int(values.min()), int(values.max())
        span = high - low + 1
        if span <= min(_CODED_INTEGER_SPAN, len(values) // 4):
            # Offsets from the lowest value, in [0, span): exact in uint64 for unsigned columns, int64 otherwise.
            if values.dtype.kind == "u":
                index = (values.astype(np.uint64) - np.uint64(low)).astype(np.int64)
            else:
                index = values.astype(np.int64) - low
            return _Coded(pa.array(np.arange(low, high + 1, dtype=values.dtype)).cast(_TEXT), index)
    return pa.array(values).cast(_TEXT)


def _bool_cells(values: np.ndarray) -> Cells:
    return _take(["false", "true"], values.astype(np.int64))


# Non-integral finite floats whose repr() is plain decimal text that Arrow's float-to-string cast prints too:
# both print the shortest digits that round-trip, repr() in decimal notation for 1e-4 <= |v| < 1e16 and
# Arrow's cast (double-conversion) for 1e-6 <= |v| < 1e10 (scientific notation, differently spelt, outside).
# Non-integral values are below 2**52 < 1e16 in magnitude anyway, so only the bounds below matter.
_PLAIN_FLOAT_LOW = 1e-4
_PLAIN_FLOAT_HIGH = 1e10


# Floats with at most this many decimals are printed as integer part and fraction (see _decimal_cells).
_DECIMALS = 3
# ... when their digits are at most 15 (DBL_DIG): a decimal of <= 15 significant digits is the only one of
# that many digits that rounds to its double, so it is the shortest text that round-trips, i.e. repr()'s.
_DECIMAL_DIGITS_BOUND = 10.0**15


def _decimal_cells(v: np.ndarray, finite: np.ndarray) -> _Pieces | None:
    """:func:`_canonical_number` of floats that are all decimals of <= :data:`_DECIMALS` places, else None.

    A finite ``v`` is such a decimal when ``v == S / 10**k`` for the integer ``S = rint(v * 10**k)`` with
    ``|S| < 10**15`` (the division is correctly rounded: ``v`` is the double nearest ``S / 10**k``). Its
    ``repr()`` is then the decimal itself (at most 15 significant digits: see :data:`_DECIMAL_DIGITS_BOUND`),
    without trailing zeros, in decimal notation (``|v| >= 10**-k > 1e-4``, ``|v| < 1e16``): the integer part
    (Arrow's integer cast; ``-0`` for ``-1 < v < 0``) and the fraction (``.5``, ``.05``; none for an integral
    value) looked up among ``10**k`` texts. NaN and infinities (``null``, ``inf``, ``-inf``) take the place of
    the fraction, with no integer part.
    """
    scale = 10.0**_DECIMALS
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.rint(np.where(finite, v, 0.0) * scale)
        if not ((np.abs(scaled) < _DECIMAL_DIGITS_BOUND).all() and (scaled / scale == np.where(finite, v, 0.0)).all()):
            return None
    units = np.abs(scaled).astype(np.int64)
    whole, fraction = np.divmod(units, int(scale))
    texts = ["", *(f".{f:0{_DECIMALS}d}".rstrip("0") for f in range(1, int(scale)))]
    special = ~finite
    index = np.where(special, len(texts), fraction)  # NaN: "null"
    index[v == np.inf] = len(texts) + 1
    index[v == -np.inf] = len(texts) + 2
    fractions = _take([*texts, "null", "inf", "-inf"], index)
    negative = v < 0
    integer_part = _integer_cells(np.where(negative, -whole, whole))
    integer_part = _where(integer_part, negative & (whole == 0), "-0")
    return _Pieces([_where(integer_part, special, None), fractions])


def _float_cells(values: np.ndarray) -> Cells:
    """:func:`_canonical_number` of every value of a float array, column-wise."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    magnitude = np.abs(v)
    with np.errstate(invalid="ignore"):
        integral = finite & (np.trunc(v) == v) & (magnitude < 2.0**53)
    if integral.all():
        # Integral values (-0.0 included) print as integers, through int64 (exact below 2**53).
        return _integer_cells(v.astype(np.int64))
    decimals = _decimal_cells(v, finite)
    if decimals is not None:
        return decimals
    # Non-integral values in the plain window: Arrow's cast prints repr()'s text (the others get a stand-in).
    with np.errstate(invalid="ignore"):
        plain = ~integral & (magnitude >= _PLAIN_FLOAT_LOW) & (magnitude < _PLAIN_FLOAT_HIGH)
    cells = pa.array(v if plain.all() else np.where(plain, v, 0.5)).cast(_TEXT)
    rest = ~(integral | plain)
    if rest.any():
        # NaN, +-inf, tiny or huge non-integral values: repr() once per distinct value; equal finite floats that
        # are not integral have equal bits, hence equal repr.
        index = np.zeros(len(v), dtype=np.int64)  # 0: "null" (NaN)
        index[v == np.inf] = 1
        index[v == -np.inf] = 2
        decimal = rest & finite
        codes, uniques = pd.factorize(v[decimal])
        index[decimal] = codes + 3
        others = _take(["null", "inf", "-inf", *map(float.__repr__, uniques.tolist())], index)
        cells = pc.if_else(pa.array(rest), _array(others), cells)
    if not integral.any():
        return cells
    integers = _array(_integer_cells(np.where(integral, v, 0.0).astype(np.int64)))
    return pc.if_else(pa.array(integral), integers, cells)


def _string_cells(values: Any) -> Cells:
    """Quoted (JSON) strings, ``null`` for missing: ``json.dumps`` once per distinct string."""
    codes, uniques = pd.factorize(values)
    return _quoted(codes, list(uniques))


def _quoted(codes: np.ndarray, uniques: list[str]) -> _Coded:
    # Strings by factorize code (-1: missing, "null"), each distinct string quoted once.
    texts = [json.dumps(u, ensure_ascii=False) for u in uniques]
    return _take([*texts, "null"], np.where(codes < 0, len(texts), codes))


def _datetime_cells(column: pd.Series) -> Cells:
    """``t:<isoformat>`` once per distinct instant (one time zone per column), ``null`` for NaT."""
    codes, uniques = pd.factorize(column)
    texts = ["t:" + ts.isoformat() for ts in uniques]
    return _take([*texts, "null"], np.where(codes < 0, len(texts), codes))


def _per_cell(values: Sequence[Any]) -> pa.Array:
    """:func:`_canonical_value` of every value, in row order (so the first unsupported value raises)."""
    return _texts([_canonical_value(v) for v in values])


def _object_cells(values: np.ndarray) -> Cells:
    # Strings with missing values (None or float NaN) as model_inputs makes them: factorized once, the types
    # checked on the distinct values and the missing ones only.
    try:
        codes, uniques = pd.factorize(values)
    except TypeError:  # an unhashable value: cell by cell, where _canonical_value raises its own error
        return _per_cell(values.tolist())
    if set(map(type, uniques)) <= {str} and set(map(type, values[codes < 0])) <= {float, _NONE_TYPE}:
        return _quoted(codes, uniques.tolist())
    types = set(map(type, values))
    if types == {float}:
        return _float_cells(values.astype(np.float64))
    if types == {bool}:
        return _bool_cells(values.astype(bool))
    return _per_cell(values.tolist())


def _categorical_cells(column: pd.Series) -> _Coded:
    """The cells of a categorical column: its categories that occur, canonicalised once, spread by code."""
    codes = np.asarray(column.cat.codes.to_numpy(), dtype=np.int64)
    # Categories in order of first occurrence, so an unsupported one raises for the first row holding one.
    used = pd.unique(codes[codes >= 0])
    cells = _array(_column_cells(pd.Series(column.cat.categories.take(used))))
    position = np.full(len(column.cat.categories), len(used), dtype=np.int64)
    position[used] = np.arange(len(used))
    index = np.full(len(codes), len(used), dtype=np.int64)  # the last text, "null", for a missing value
    index[codes >= 0] = position[codes[codes >= 0]]
    return _Coded(pa.concat_arrays([cells, _texts(["null"])]), index)


def _column_cells(column: pd.Series) -> Cells:
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


def _feature_texts(rows: pd.DataFrame, names: list[str], order: list[int]) -> pa.Array:
    """The canonical text of each row, ``{"<name>":<cell>,...}`` in ``order``, as Arrow text.

    One element-wise Arrow join of the columns' cells and the texts between them; a text between two columns
    is joined to the few texts of a coded neighbour (the piece before it, else the one after it) rather
    than passed to the row-wise join, which costs about as much per text as per column.
    """
    items: list[Any] = []  # glue texts (str) and pieces of cells, in row-text order
    for j, i in enumerate(order):
        items.append(("{" if j == 0 else ",") + json.dumps(names[i], ensure_ascii=False) + ":")
        cells = _column_cells(rows.iloc[:, i])
        items += cells.pieces if isinstance(cells, _Pieces) else [cells]
    items.append("}")
    for k, item in enumerate(items):
        if not isinstance(item, str):
            continue
        # Pieces and glue alternate with at least one piece between two glue texts.
        left, right = items[k - 1] if k else None, items[k + 1] if k + 1 < len(items) else None
        if isinstance(left, _Coded):
            items[k - 1] = _Coded(_join([left.texts, pa.scalar(item, _TEXT)]), left.positions)
            items[k] = None
        elif isinstance(right, _Coded):
            items[k + 1] = _Coded(_join([pa.scalar(item, _TEXT), right.texts]), right.positions)
            items[k] = None
    pieces = [pa.scalar(item, _TEXT) if isinstance(item, str) else _array(item) for item in items if item is not None]
    return _join(pieces)


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
    texts: Texts
    if not order:
        # An input-less model still has one hash per row.
        texts = [b"{}"] * len(rows)
    else:
        try:
            texts = _feature_texts(rows, names, order)
        except (pa.ArrowException, UnicodeError):
            texts = _feature_texts_per_row(rows, names, order)
    return sha256_hex(texts)


def sha256_hex(texts: pa.Array | Iterable[bytes], hex_digits: int = 64) -> pa.Array:
    """The SHA-256 hex digest of each text (its first ``hex_digits`` digits), as Arrow text.

    One :func:`hashlib.sha256` call per text (the only per-row Python); the digests are joined into one
    buffer and hex-encoded at once (:func:`digests_hex`), so no Python string is made per row.

    Args:
        texts: ``n`` byte strings, or an Arrow text or binary array of ``n`` texts (hashed as their UTF-8 bytes,
            without a list of all their bytes objects).
        hex_digits: Leading hex digits kept, even, in [2, 64] (the prediction id keeps 32).

    Returns:
        Arrow ``large_string`` array of ``n`` texts of ``hex_digits`` characters:
        ``hashlib.sha256(text).hexdigest()[:hex_digits]`` each.

    Raises:
        ValueError: ``hex_digits`` is odd or out of range.
    """
    _check_hex_digits(hex_digits)
    return digests_hex(_digests(texts), hex_digits)


def _check_hex_digits(hex_digits: int) -> None:
    if hex_digits % 2 or not 2 <= hex_digits <= 64:
        raise ValueError(f"hex_digits must be even and in [2, 64], got {hex_digits}")


def digests_hex(digests: bytes, hex_digits: int = 64) -> pa.Array:
    """Concatenated SHA-256 digests as hex texts: the first ``hex_digits`` lowercase hex digits of each.

    Args:
        digests: ``32 * n`` bytes, e.g. from :func:`key_digests`.
        hex_digits: Leading hex digits kept, even, in [2, 64].

    Returns:
        Arrow ``large_string`` array of ``n`` texts of ``hex_digits`` characters (``hexdigest()[:hex_digits]``).

    Raises:
        ValueError: ``hex_digits`` is odd or out of range, or ``len(digests)`` is not a multiple of 32.
    """
    _check_hex_digits(hex_digits)
    n, extra = divmod(len(digests), 32)
    if extra:
        raise ValueError(f"digests must be 32 bytes each, got {len(digests)} bytes")
    if hex_digits < 64:
        digests = np.frombuffer(digests, dtype=np.uint8).reshape(n, 32)[:, : hex_digits // 2].tobytes()
    hexed = binascii.hexlify(digests)
    offsets = np.arange(0, hex_digits * n + 1, hex_digits, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(hexed))
