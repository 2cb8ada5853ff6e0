"""Features: the model-ready frame derived from a validated data version, its split and its profile.

The features frame holds, per row, the id, the allowlisted features, the columns needed only for
evaluation (order, slices, protected attributes), the 0/1 target ``_label`` and the split ``_split``.
Only :func:`feature_columns` are ever given to a model; the other columns ride along so that the
holdout can be sliced and audited. Everything here is deterministic for a given spec and seed and
independent of the row order of the landed file.
"""

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.ml import json_codec
from mlops_assets.ml.gate_result import GateResult
from mlops_assets.ml.spec import DatasetSpec

SPLIT_COLUMN = "_split"
LABEL_COLUMN = "_label"
TRAIN = "train"
HOLDOUT = "holdout"

OTHER_CATEGORY = "__other__"
# The profile keeps this many categories per column; the long tail is pooled so that the stored
# reference stays small and comparable across versions.
PROFILE_TOP_CATEGORIES = 50
_DECILES = np.linspace(0.0, 1.0, 11)

#: With fewer distinct order values than this, :func:`describe_split` warns: the holdout then spans one or
#: two (coarse) time values, so it is drawn mostly by the id hash and is out of time in name only.
MIN_DISTINCT_ORDER_VALUES = 10
#: :func:`describe_split` also warns when more than this share of the holdout is drawn by the id hash from
#: rows tied with the boundary value (most of the holdout is then not later than training).
MAX_HOLDOUT_SHARE_FROM_TIE = 0.5
SPLIT_BY_ORDER = "order column, ties by id hash"
SPLIT_BY_HASH = "id hash"


# --------------------------------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------------------------------


def feature_columns(spec: DatasetSpec) -> list[str]:
    """The model inputs: numeric features, then categorical features, each in ``spec.features`` order.

    Args:
        spec: The dataset spec.

    Returns:
        Column names in the order the pipeline's column transformer expects them.
    """
    return list(spec.numeric_features) + list(spec.categorical_features)


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name, None)
    return list(seen)


def bookkeeping_columns(spec: DatasetSpec) -> list[str]:
    """Columns of the features frame that are never model inputs (unless also allowlisted features).

    Args:
        spec: The dataset spec.

    Returns:
        The id, order, slice and protected columns plus ``_label`` and ``_split``, without duplicates.
    """
    order = [spec.order_column] if spec.order_column else []
    return _unique([spec.id_column, *order, *spec.slices, *spec.protected, LABEL_COLUMN, SPLIT_COLUMN])


def leakage_columns(columns: Iterable[str], spec: DatasetSpec) -> list[str]:
    """Model input columns that must not be model inputs.

    Args:
        columns: The columns given (or about to be given) to the model.
        spec: The dataset spec.

    Returns:
        The columns that are in ``spec.forbidden_features`` or not in the allowlist ``spec.features``,
        in the order given.
    """
    forbidden = set(spec.forbidden_features)
    allowed = set(spec.features)
    return [c for c in _unique(columns) if c in forbidden or c not in allowed]


# --------------------------------------------------------------------------------------------------
# Label and split
# --------------------------------------------------------------------------------------------------


def encode_label(values: pd.Series, spec: DatasetSpec, *, allow_missing: bool = False) -> np.ndarray:
    """Encode the raw label as 0/1 (1 = ``spec.label.positive``).

    Args:
        values: The raw label column.
        spec: The dataset spec.
        allow_missing: Whether missing cells are allowed (``label.required: false``); they encode as NaN.

    Returns:
        An ``int64`` array of 0/1; with ``allow_missing`` and a missing cell, a ``float64`` array of 0/1 and NaN.

    Raises:
        ValueError: the label has missing values (unless allowed) or values outside ``spec.label.values``.
    """
    column = spec.label.column
    missing = values.isna().to_numpy()
    if missing.any() and allow_missing:
        out = np.full(len(values), np.nan)
        if (~missing).any():
            out[~missing] = encode_label(values[~missing], spec)
        return out
    if missing.any():
        raise ValueError(f"label column {column!r} has {int(missing.sum())} missing values; a label is required")
    known = values.isin(list(spec.label.values)).to_numpy()
    positive = (values == spec.label.positive).to_numpy(dtype=bool)
    if not known.all():
        # YAML may spell the label values differently from the landed dtype (1 vs "1"); compare as text
        # before giving up, so that only genuinely unknown values fail.
        text = values.astype(str)
        known = text.isin([str(v) for v in spec.label.values]).to_numpy()
        positive = (text == str(spec.label.positive)).to_numpy(dtype=bool)
    if not known.all():
        bad = sorted({str(v) for v in values[~known].unique()})[:10]
        raise ValueError(
            f"label column {column!r} has values {bad} outside label.values {list(spec.label.values)} "
            f"({int((~known).sum())} rows)"
        )
    return positive.astype(np.int64)


def id_hash_keys(values: pd.Series, seed: int) -> np.ndarray:
    """The id hash: first 8 bytes (big-endian) of ``sha256(f"{seed}:{str(id)}")`` as ``uint64``.

    Deterministic across processes and platforms (unlike the salted built-in ``hash()``); it depends on
    the id alone, so a row keeps its key whatever else is in the file.

    Args:
        values: The id column.
        seed: ``spec.policy.evaluation.random_seed``.

    Returns:
        One ``uint64`` per value, in the order given.
    """
    out = np.empty(len(values), dtype=np.uint64)
    for i, value in enumerate(values.astype(str).tolist()):
        out[i] = int.from_bytes(hashlib.sha256(f"{seed}:{value}".encode()).digest()[:8], "big")
    return out


def _stable_unit_hash(values: pd.Series, seed: int) -> np.ndarray:
    """Map each value to [0, 1) with the id hash (:func:`id_hash_keys`)."""
    return id_hash_keys(values, seed).astype(np.float64) / 2.0**64


def _sort_rows(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Sort by (order column, id hash, id), then a content hash so that duplicate keys cannot depend on file order.

    Ties in the order column (every row, without one) are ordered by the seeded id hash, not by the id
    or the file: ids are often assigned in an order that correlates with the rows' kind, so "the latest
    rows" of a tie block, and the time-ordered CV folds cutting through it, would otherwise be a biased
    sample.
    """
    order = [spec.order_column] if spec.order_column else []
    extra = {
        "__id_hash__": id_hash_keys(frame[spec.id_column], spec.policy.evaluation.random_seed),
        "__row_hash__": pd.util.hash_pandas_object(frame, index=False).to_numpy(),
    }
    sortable = frame.assign(**extra)
    keys = [*order, "__id_hash__", spec.id_column, "__row_hash__"]
    # Missing timestamps sort first: an unknown time is never treated as "latest", so it stays in train.
    ordered = sortable.sort_values(keys, kind="mergesort", na_position="first")
    return ordered.drop(columns=list(extra)).reset_index(drop=True)


def holdout_size(n_rows: int, fraction: float) -> int:
    """Number of holdout rows for an out-of-time split: ``round(n * fraction)``, leaving both sides non-empty.

    Args:
        n_rows: Rows in the data version.
        fraction: ``policy.holdout_fraction``.

    Returns:
        The holdout row count (0 when there are fewer than two rows).
    """
    if n_rows < 2:
        return 0
    return min(n_rows - 1, max(1, round(n_rows * fraction)))


def _label_of(raw: pd.DataFrame, spec: DatasetSpec) -> pd.Series:
    """``_label`` of :func:`build_features` (index of ``raw``): int64 0/1, or nullable Int64 with ``<NA>`` for
    unlabelled rows."""
    column = spec.label.column
    if spec.label.required:
        return pd.Series(encode_label(raw[column], spec), index=raw.index)
    if column not in raw.columns:
        return pd.Series(pd.NA, index=raw.index, dtype="Int64")
    encoded = encode_label(raw[column], spec, allow_missing=True)
    if encoded.dtype == np.int64:
        return pd.Series(encoded, index=raw.index)
    return pd.Series(encoded, index=raw.index).astype("Int64")


def build_features(raw: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Derive the features frame from a validated data version.

    The split is out-of-time when the spec has an order column: the latest ``policy.holdout_fraction``
    of rows by the order column are the holdout. Rows tied with the boundary value (all rows when the
    order column is constant) are split by the seeded id hash (:func:`id_hash_keys`, highest hashes to
    the holdout), never by the id or the file's row order. Without an order column a row is in the
    holdout when its id hash falls below the fraction, so a row keeps its split across versions.
    :func:`describe_split` records how the holdout was drawn.

    Args:
        raw: The validated landed data.
        spec: The dataset spec.

    Returns:
        The id, order, allowlisted feature, slice and protected columns, ``_label`` and ``_split``
        (``"train"``/``"holdout"``), sorted by (order column, id hash, id) with a fresh RangeIndex.
        ``_label`` is ``int64`` 0/1 when every row is labelled; with ``label.required: false`` and unlabelled
        rows (the label column absent or cells empty) it is pandas' nullable ``Int64`` with ``<NA>`` for them,
        so a reader converting it to ``int64`` fails instead of reading a missing label as a class. Training and
        evaluation never read it directly: they take labels from the labels stream
        (:func:`mlops_assets.ml.labels.labelled_features`).

    Raises:
        ValueError: a required column is missing or the label cannot be encoded.
    """
    order = [spec.order_column] if spec.order_column else []
    keep = _unique([spec.id_column, *order, *spec.features, *spec.slices, *spec.protected])
    required = _unique([*keep, spec.label.column]) if spec.label.required else keep
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise ValueError(f"data for spec {spec.name!r} lacks columns {missing} (needed for features)")
    for reserved in (LABEL_COLUMN, SPLIT_COLUMN):
        if reserved in spec.column_names:
            raise ValueError(f"spec {spec.name!r} declares a column {reserved!r}, which is reserved for features")

    frame = raw[keep].copy()
    frame[LABEL_COLUMN] = _label_of(raw, spec)
    frame = _sort_rows(frame, spec)

    fraction = spec.policy.evaluation.holdout_fraction
    if spec.order_column:
        n_holdout = holdout_size(len(frame), fraction)
        is_holdout = np.arange(len(frame)) >= len(frame) - n_holdout
    else:
        is_holdout = _stable_unit_hash(frame[spec.id_column], spec.policy.evaluation.random_seed) < fraction
    frame[SPLIT_COLUMN] = np.where(is_holdout, HOLDOUT, TRAIN)
    frame[SPLIT_COLUMN] = frame[SPLIT_COLUMN].astype("str")
    return frame


def _json_value(value: Any) -> Any:
    """An order value as JSON-safe plain data: timestamps as ISO 8601, numpy scalars as Python scalars."""
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def describe_split(features_df: pd.DataFrame, spec: DatasetSpec) -> dict[str, Any]:
    """How the holdout of one data version was drawn: the record kept in the candidate's manifest.

    Args:
        features_df: Features of one data version, from :func:`build_features`.
        spec: The dataset spec.

    Returns:
        JSON-safe plain data: ``method`` (``"order column, ties by id hash"`` or ``"id hash"``), ``seed``,
        ``holdout_fraction``, ``rows``, ``holdout_rows``; with an order column also ``order_column``,
        ``n_distinct_order_values`` (missing values not counted), ``boundary_value`` (the earliest order
        value in the holdout, ISO 8601 for times), ``rows_tied_at_boundary`` (rows with that value),
        ``holdout_rows_from_tie`` (those of them drawn into the holdout by the id hash) and
        ``boundary_inside_tie`` (some of them stayed in train). ``warning`` is None or says why the
        holdout is barely out of time: fewer than :data:`MIN_DISTINCT_ORDER_VALUES` distinct order
        values, or more than :data:`MAX_HOLDOUT_SHARE_FROM_TIE` of the holdout drawn from the tie.

    Raises:
        ValueError: the frame lacks ``_split`` or the order column.
    """
    for column in (SPLIT_COLUMN, *([spec.order_column] if spec.order_column else [])):
        if column not in features_df.columns:
            raise ValueError(f"cannot describe the split of spec {spec.name!r}: the frame has no {column!r} column")
    is_holdout = (features_df[SPLIT_COLUMN] == HOLDOUT).to_numpy()
    record: dict[str, Any] = {
        "method": SPLIT_BY_ORDER if spec.order_column else SPLIT_BY_HASH,
        "seed": spec.policy.evaluation.random_seed,
        "holdout_fraction": spec.policy.evaluation.holdout_fraction,
        "rows": len(features_df),
        "holdout_rows": int(is_holdout.sum()),
    }
    if not spec.order_column:
        record["warning"] = None
        return record
    order = features_df[spec.order_column]
    n_distinct = int(order.nunique(dropna=True))
    holdout_order = order[is_holdout]
    boundary = holdout_order.min() if len(holdout_order) else None
    tied = (order == boundary).to_numpy() if boundary is not None else np.zeros(len(order), dtype=bool)
    from_tie = int((tied & is_holdout).sum())
    record.update(
        {
            "order_column": spec.order_column,
            "n_distinct_order_values": n_distinct,
            "boundary_value": _json_value(boundary),
            "rows_tied_at_boundary": int(tied.sum()),
            "holdout_rows_from_tie": from_tie,
            "boundary_inside_tie": bool((tied & ~is_holdout).any()),
        }
    )
    reasons = []
    if n_distinct < MIN_DISTINCT_ORDER_VALUES:
        plural = "value" if n_distinct == 1 else "values"
        reasons.append(
            f"order column {spec.order_column!r} has {n_distinct} distinct {plural} (fewer than "
            f"{MIN_DISTINCT_ORDER_VALUES})"
        )
    n_holdout = record["holdout_rows"]
    if n_holdout and from_tie / n_holdout > MAX_HOLDOUT_SHARE_FROM_TIE and record["boundary_inside_tie"]:
        reasons.append(
            f"{from_tie} of {n_holdout} holdout rows (more than {MAX_HOLDOUT_SHARE_FROM_TIE:.0%}) share the "
            f"boundary value {record['boundary_value']!r} with train rows and were drawn by the id hash"
        )
    record["warning"] = (
        "; ".join(reasons) + ": the holdout is mostly not later than training (an id-hash split, not out of "
        "time); consider a finer order column"
        if reasons
        else None
    )
    return record


@dataclass(frozen=True)
class TrainingWindow:
    """The rows a candidate trains on, and what was removed to keep one row per id.

    Attributes:
        frame: The training frame: the current version with its split, plus the kept rows of earlier
            versions as train rows, sorted like :func:`build_features` output.
        overlap: JSON-safe record of the rows removed: ``rule``, ``rows_dropped``, ``holdout_ids_dropped``
            (earlier rows whose id is a holdout id of the current version) and ``versions``, one entry per
            earlier version (oldest first) with ``data_version``, ``rows``, ``dropped``, ``kept``.
    """

    frame: pd.DataFrame
    overlap: dict[str, Any]


WINDOW_RULE = "an earlier version's row is dropped when its id is in a newer version of the window (newest wins)"


def training_window(
    current: pd.DataFrame,
    previous: Sequence[pd.DataFrame],
    spec: DatasetSpec,
    versions: Sequence[str] | None = None,
) -> TrainingWindow:
    """The rows a candidate trains on, for a training window of several data versions.

    Rows of the earlier versions become train rows, except where the same id appears in a newer version
    of the window (the current one included): newest wins, so a corrected re-delivery replaces the old
    row and no holdout id of the current version is ever a training row. The current version keeps its
    split, so its holdout still only evaluates. Rows are re-sorted like :func:`build_features`, so the
    time-ordered CV folds stay out-of-time across versions. Ids are matched on their text form.

    Args:
        current: Features of the current data version.
        previous: Features of earlier versions in the window, **oldest first** (landing order).
        spec: The dataset spec.
        versions: Names of the earlier versions (same order), for the record; default ``"-1"``, ``"-2"``…
            counted back from the current version.

    Returns:
        The training frame and the overlap record.

    Raises:
        ValueError: ``versions`` does not match ``previous``, or a holdout id of the current version is
            still a train row (duplicate ids inside the current version).
    """
    names = list(versions) if versions is not None else [f"-{len(previous) - i}" for i in range(len(previous))]
    if len(names) != len(previous):
        raise ValueError(f"{len(names)} version names given for {len(previous)} earlier versions")
    id_column = spec.id_column
    # Ids as text columns matched by _isin_text, not as Python sets (a set of 1M ids holds 1M str objects, ~100 MiB).
    current_keys = current[id_column].astype(str)
    holdout_keys = current_keys[(current[SPLIT_COLUMN] == HOLDOUT).to_numpy()]
    seen = [current_keys]  # the ids of the current version and those kept from newer earlier versions
    kept_parts: list[pd.DataFrame] = []
    per_version: list[dict[str, Any]] = []
    holdout_dropped = 0
    # Newest first, so that each id is kept from the newest version holding it.
    for name, frame in reversed(list(zip(names, previous, strict=True))):
        keys = frame[id_column].astype(str)
        drop = _isin_text(keys, pd.concat(seen, ignore_index=True))
        holdout_dropped += int(_isin_text(keys[drop], holdout_keys).sum())
        seen.append(keys[~drop])
        kept_parts.append(frame[~drop].assign(**{SPLIT_COLUMN: TRAIN}))
        per_version.append(
            {"data_version": name, "rows": len(frame), "dropped": int(drop.sum()), "kept": int((~drop).sum())}
        )
    per_version.reverse()
    overlap = {
        "rule": WINDOW_RULE,
        "rows_dropped": sum(v["dropped"] for v in per_version),
        "holdout_ids_dropped": holdout_dropped,
        "versions": per_version,
    }
    parts = [part for part in reversed(kept_parts) if len(part)]
    combined = _sort_rows(pd.concat([*parts, current], ignore_index=True), spec) if parts else current
    del seen
    train_keys = combined.loc[combined[SPLIT_COLUMN] == TRAIN, id_column].astype(str)
    leaked = sorted(set(holdout_keys[_isin_text(holdout_keys, train_keys)]))
    if leaked:
        raise ValueError(
            f"training window of spec {spec.name!r}: {len(leaked)} holdout ids of the current version are also "
            f"train rows (e.g. {id_column} {leaked[:5]}); the current version has duplicate ids"
        )
    return TrainingWindow(frame=combined, overlap=overlap)


def _isin_text(keys: pd.Series, values: pd.Series) -> np.ndarray:
    """``keys.isin(values)`` of two text columns as a bool array, through ``pd.factorize`` codes of both.

    pandas' ``isin`` on a text column turns ``values`` into Python objects first (seconds and ~100 MiB for 1M ids);
    factorizing both at once gives equal codes to equal texts (and -1 to missing on both sides).
    """
    codes, _ = pd.factorize(pd.concat([keys, values], ignore_index=True))
    return np.isin(codes[: len(keys)], codes[len(keys) :])


def training_frame(current: pd.DataFrame, previous: Sequence[pd.DataFrame], spec: DatasetSpec) -> pd.DataFrame:
    """The training frame of :func:`training_window` (earlier versions oldest first), without the record."""
    return training_window(current, previous, spec).frame


def model_inputs(features_df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The model input frame: feature columns with dtypes every sklearn transformer accepts.

    Numeric (int/float/bool, nullable or not) become ``float64`` with NaN for missing; categorical columns
    become ``object`` holding ``str`` with ``np.nan`` for missing, so that the imputers behave the same
    whatever the pandas dtype of a given batch (e.g. an all-missing column read as float). The rows of a
    ``str`` column share one ``str`` object per distinct value (:func:`_shared_strings`): 8 bytes a row.

    Args:
        features_df: A features frame (or any frame holding the feature columns).
        spec: The dataset spec.

    Returns:
        A new frame with exactly :func:`feature_columns`, same index as the input.

    Raises:
        ValueError: a feature column is missing.
    """
    columns = _require_feature_columns(features_df, spec)
    data: dict[str, Any] = {}
    for name in spec.numeric_features:
        data[name] = _as_float(features_df[name])
    for name in spec.categorical_features:
        col = features_df[name]
        if isinstance(col.dtype, pd.StringDtype):
            # Already str or missing (how the schema types every categorical column): no per-row conversion.
            # dtype=object explicitly: pandas 3 would infer its "str" dtype from an array of strings.
            data[name] = pd.Series(_shared_strings(col), index=features_df.index, dtype=object, copy=False)
            continue
        values = col.astype(object).where(col.notna(), np.nan)
        data[name] = values.map(lambda v: v if isinstance(v, float) else str(v)).astype(object)
    return pd.DataFrame(data, index=features_df.index, columns=columns)


def _require_feature_columns(features_df: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    """:func:`feature_columns`, after checking that the frame holds them all (``ValueError`` naming those missing)."""
    columns = feature_columns(spec)
    missing = [c for c in columns if c not in features_df.columns]
    if missing:
        raise ValueError(f"frame lacks feature columns {missing} required by spec {spec.name!r}")
    return columns


def _shared_strings(col: pd.Series) -> np.ndarray:
    """A ``str`` column as an ``object`` array of ``str`` with ``np.nan`` for missing, one ``str`` per distinct value.

    Equal element for element to ``col.to_numpy(dtype=object, na_value=np.nan)``, which makes a new ``str`` for
    every row (~60 bytes each); here every row holding a value points at that value's one ``str`` (``pd.factorize``),
    so the array costs 8 bytes a row (1M rows, two categorical columns: ~15 MiB instead of ~130 MiB).
    """
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    lookup = np.empty(len(uniques) + 1, dtype=object)
    lookup[: len(uniques)] = np.asarray(uniques, dtype=object)
    lookup[len(uniques)] = np.nan  # the code of a missing value is -1: the last entry
    return lookup[codes]


def _as_float(col: pd.Series) -> np.ndarray:
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


# --------------------------------------------------------------------------------------------------
# Gates
# --------------------------------------------------------------------------------------------------


def input_columns_of(features_df: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    """What the model would see: the spec's feature columns plus any column that is not bookkeeping.

    A column in the frame that is neither an allowlisted feature nor bookkeeping (id, order, slices,
    protected, ``_label``, ``_split``) is counted as an input, so a raw column leaking into the features
    frame is caught even though training would ignore it.
    """
    bookkeeping = set(bookkeeping_columns(spec)) - set(spec.features)
    extra = [c for c in features_df.columns if c not in bookkeeping]
    return _unique([*feature_columns(spec), *(str(c) for c in extra)])


def gate_features_allowlisted(features_df: pd.DataFrame, spec: DatasetSpec) -> GateResult:
    """Gate ``features_allowlisted``: no model input is forbidden or outside the allowlist.

    Args:
        features_df: The features frame.
        spec: The dataset spec.

    Returns:
        The gate result; ``evidence`` lists the model inputs and the offending columns by reason.
    """
    inputs = input_columns_of(features_df, spec)
    leaking = leakage_columns(inputs, spec)
    forbidden = [c for c in leaking if c in set(spec.forbidden_features)]
    not_allowlisted = [c for c in leaking if c not in set(spec.features)]
    condition = "every model input is in the feature allowlist and none is a forbidden (post-outcome) column"
    if leaking:
        parts = []
        if forbidden:
            parts.append(f"forbidden columns {forbidden}")
        if not_allowlisted:
            parts.append(f"columns outside the allowlist {not_allowlisted}")
        message = f"spec {spec.name!r} ({spec.source}): model inputs include " + " and ".join(parts)
    else:
        message = f"all {len(inputs)} model inputs are allowlisted; no forbidden column among them"
    return GateResult(
        name="features_allowlisted",
        passed=not leaking,
        condition=condition,
        message=message,
        observed=len(leaking),
        threshold=0,
        evidence={
            "model_inputs": inputs,
            "leaking_columns": leaking,
            "forbidden": forbidden,
            "not_allowlisted": not_allowlisted,
        },
    )


def gate_features_finite(features_df: pd.DataFrame, spec: DatasetSpec, source_name: str | None = None) -> GateResult:
    """Gate ``features_finite``: numeric features have no ±inf, and NaN only in nullable columns.

    NaN in a nullable column is fine: the pipeline's imputer handles it.

    Args:
        features_df: The features frame (all rows are checked).
        spec: The dataset spec.
        source_name: How to name the data in the message (the landed file); ``None``: the spec is named.

    Returns:
        The gate result; ``evidence`` has per-column counts of infinite and disallowed missing values.
    """
    per_column: list[dict[str, Any]] = []
    total = 0
    for name in spec.numeric_features:
        if name not in features_df.columns:
            raise ValueError(f"features frame lacks numeric feature {name!r} of spec {spec.name!r}")
        values = _as_float(features_df[name])
        n_inf = int(np.isinf(values).sum())
        n_nan = int(np.isnan(values).sum())
        nullable = spec.column(name).nullable
        bad_nan = 0 if nullable else n_nan
        if n_inf or bad_nan:
            per_column.append({"column": name, "n_inf": n_inf, "n_nan": n_nan, "nullable": nullable})
            total += n_inf + bad_nan
    condition = "numeric features have no ±inf and no NaN outside nullable columns"
    source = source_name if source_name is not None else f"spec {spec.name!r}"
    if per_column:
        described = ", ".join(
            f"{c['column']!r} ({c['n_inf']} inf"
            + (f", {c['n_nan']} NaN in a non-nullable column" if not c["nullable"] and c["n_nan"] else "")
            + ")"
            for c in per_column
        )
        message = f"{source}: non-finite numeric features: {described} (rule: features_finite)"
    else:
        message = f"{source}: all {len(spec.numeric_features)} numeric features are finite over {len(features_df)} rows"
    return GateResult(
        name="features_finite",
        passed=not per_column,
        condition=condition,
        message=message,
        observed=total,
        threshold=0,
        evidence={"columns": per_column, "n_rows": len(features_df)},
    )


# --------------------------------------------------------------------------------------------------
# Profile
# --------------------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    """A JSON-safe float: NaN and ±inf become None."""
    if value is None or value is pd.NA:
        return None
    out = float(value)
    return out if math.isfinite(out) else None


@dataclass(frozen=True)
class NumericProfile:
    """Distribution of one numeric feature.

    Attributes:
        name: Column name.
        null_share: Share of rows that are missing.
        mean: Mean of the present values (None if none).
        std: Population standard deviation (ddof=0) of the present values.
        min: Smallest present value.
        max: Largest present value.
        edges: Decile edges (quantiles 0, 0.1, ..., 1), deduplicated; a constant column has ``(v, v)``
            so that there is always one bin; empty when every value is missing.
        counts: Histogram counts on ``edges`` (``len(edges) - 1`` bins, the last one closed).
    """

    name: str
    null_share: float
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class CategoricalProfile:
    """Distribution of one categorical feature.

    Attributes:
        name: Column name.
        null_share: Share of rows that are missing.
        shares: ``(category, share of all rows)`` for the top categories by count (ties by name), then
            ``("__other__", share)`` pooling the rest. Shares plus ``null_share`` sum to 1.
    """

    name: str
    null_share: float
    shares: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class FeatureProfile:
    """Reference distribution of the features (computed on the train rows), stored for drift checks.

    Attributes:
        n_rows: Rows profiled.
        label_positive_rate: Share of positive labels (None when the frame has no ``_label``).
        numeric: One profile per numeric feature, in spec order.
        categorical: One profile per categorical feature, in spec order.
    """

    n_rows: int
    label_positive_rate: float | None
    numeric: tuple[NumericProfile, ...]
    categorical: tuple[CategoricalProfile, ...]

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-safe plain data (the inverse of :meth:`from_dict`)."""
        return {
            "n_rows": self.n_rows,
            "label_positive_rate": self.label_positive_rate,
            "numeric": {
                p.name: {
                    "null_share": p.null_share,
                    "mean": p.mean,
                    "std": p.std,
                    "min": p.min,
                    "max": p.max,
                    "edges": list(p.edges),
                    "counts": list(p.counts),
                }
                for p in self.numeric
            },
            "categorical": {
                p.name: {"null_share": p.null_share, "shares": [[c, s] for c, s in p.shares]} for p in self.categorical
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureProfile":
        """Rebuild a profile from :meth:`to_dict` output (e.g. after a JSON round trip)."""
        numeric = tuple(
            NumericProfile(
                name=str(name),
                null_share=float(p["null_share"]),
                mean=_num(p["mean"]),
                std=_num(p["std"]),
                min=_num(p["min"]),
                max=_num(p["max"]),
                edges=tuple(float(e) for e in p["edges"]),
                counts=tuple(int(c) for c in p["counts"]),
            )
            for name, p in data["numeric"].items()
        )
        categorical = tuple(
            CategoricalProfile(
                name=str(name),
                null_share=float(p["null_share"]),
                shares=tuple((str(c), float(s)) for c, s in p["shares"]),
            )
            for name, p in data["categorical"].items()
        )
        return cls(
            n_rows=int(data["n_rows"]),
            label_positive_rate=_num(data["label_positive_rate"]),
            numeric=numeric,
            categorical=categorical,
        )

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace, no NaN): the input of :attr:`profile_id`."""
        return json_codec.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def profile_id(self) -> str:
        """First 16 hex digits of the sha256 of the canonical JSON."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def _numeric_profile(name: str, values: np.ndarray) -> NumericProfile:
    n = len(values)
    present = values[~np.isnan(values)]
    null_share = float((n - len(present)) / n) if n else 0.0
    if len(present) == 0:
        return NumericProfile(name, null_share, None, None, None, None, (), ())
    edges = np.unique(np.quantile(present, _DECILES))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    counts, _ = np.histogram(present, bins=edges)
    return NumericProfile(
        name=name,
        null_share=null_share,
        mean=_num(present.mean()),
        std=_num(present.std(ddof=0)),
        min=_num(present.min()),
        max=_num(present.max()),
        edges=tuple(float(e) for e in edges),
        counts=tuple(int(c) for c in counts),
    )


def _categorical_profile(name: str, col: pd.Series) -> CategoricalProfile:
    n = len(col)
    present = col[col.notna()].astype(str)
    null_share = float((n - len(present)) / n) if n else 0.0
    counts = present.value_counts()
    # Order by count desc, then name, so the top-k cut is deterministic when counts tie.
    ranked = sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))
    top = ranked[:PROFILE_TOP_CATEGORIES]
    other = sum(v for _, v in ranked[PROFILE_TOP_CATEGORIES:])
    shares = [(k, v / n) for k, v in top if k != OTHER_CATEGORY]
    # A real category spelled "__other__" is pooled with the tail rather than producing a duplicate key.
    other += sum(v for k, v in top if k == OTHER_CATEGORY)
    if other:
        shares.append((OTHER_CATEGORY, other / n))
    return CategoricalProfile(name=name, null_share=null_share, shares=tuple(shares))


def profile_features(features_df: pd.DataFrame, spec: DatasetSpec, split: str | None = TRAIN) -> FeatureProfile:
    """Profile the features of one split (by default the train rows: the drift reference).

    Args:
        features_df: A features frame from :func:`build_features`.
        spec: The dataset spec.
        split: Which ``_split`` rows to profile; None profiles every row (e.g. an unsplit scoring batch).

    Returns:
        The feature profile.

    Raises:
        ValueError: there are no rows to profile, or a feature column is missing.
    """
    rows = features_df
    if split is not None:
        if SPLIT_COLUMN not in features_df.columns:
            raise ValueError(f"cannot profile split {split!r}: the frame has no {SPLIT_COLUMN!r} column")
        # Only the profiled columns of the split's rows are copied.
        profiled = [c for c in _unique([*feature_columns(spec), LABEL_COLUMN]) if c in features_df.columns]
        rows = features_df.loc[features_df[SPLIT_COLUMN] == split, profiled]
    if len(rows) == 0:
        raise ValueError(f"no rows to profile (split={split!r}) for spec {spec.name!r}")
    _require_feature_columns(rows, spec)
    # Numeric values as model_inputs converts them; categorical ones are profiled from the column as it is.
    numeric = tuple(_numeric_profile(name, _as_float(rows[name])) for name in spec.numeric_features)
    categorical = tuple(_categorical_profile(name, rows[name]) for name in spec.categorical_features)
    positive_rate = _num(rows[LABEL_COLUMN].mean()) if LABEL_COLUMN in rows.columns else None
    return FeatureProfile(
        n_rows=len(rows),
        label_positive_rate=positive_rate,
        numeric=numeric,
        categorical=categorical,
    )
