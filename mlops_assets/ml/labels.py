"""The labels stream: labels that arrive after their data version, merged per version and joined by row id.

In production the rows to score arrive long before their outcomes. A data version may therefore come without
labels (spec ``label.required: false``: its label column absent or with empty cells); its labels arrive later as
files of their own in the model's labels zone (CSV or Parquet: the spec's id column and label column, typed by the
data files' own schema). Pure functions, no Dagster, no I/O beyond reading one given file.

Naming rule (which files label which data version, :func:`labels_target`): a labels file's stem (its name without
the last suffix, made safe like a data version key) is

* the data version key itself (``jan__a1b2c3d4e5f6.csv``), or
* the stem of the landed data file (``jan.csv`` labels the newest version landed as ``jan.*``), or
* either of those followed by ``.`` and anything: a **part** (``jan.week1.csv``, ``jan.late.parquet``,
  ``jan__a1b2c3d4e5f6.batch-2.csv``).

When several bases match (data files ``a.csv`` and ``a.b.csv`` landed, labels file ``a.b.csv``), the longest one
wins, so a part can never be mistaken for another file's exact name.

Merging (:func:`merge_labels`): the data file's own label column (if it had labels) is the oldest source; the
labels files follow in landing order (modification time, then name). A later source wins for an id it gives again;
every id whose label changed is counted and the files involved are recorded. Labels for ids that are not rows of
the data version are counted and ignored. The result is one frame ``row_id`` (text) → ``label`` (0/1 float, NaN
where no label arrived) with one row per row of the version, and a :class:`LabelsRecord`: the version is
*labelled* when its labelled share reaches ``policy.data.min_labelled_share``.

Training and evaluation read labels only through :func:`labelled_features`: the features frame with ``_label``
taken from the merged stream by id, unlabelled rows dropped.
"""

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from mlops_assets.ml.features import LABEL_COLUMN, encode_label
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.validation import DataFileError, coerce_columns, gate_label_in_domain, read_data_file
from mlops_assets.ml.versions import safe_stem, stem_of_key

#: The label column of a labels frame (0/1 float, NaN: no label).
LABEL = "label"
#: The id column of a labels frame (the row id as text, as in the prediction log).
ROW_ID = "row_id"
#: How the data file's own label column is named among the sources.
DATA_FILE_SOURCE = "data file label column"
#: At most this many example ids are recorded (unknown ids, changed ids).
MAX_EXAMPLES = 5


class LabelsError(ValueError):
    """A labels file cannot be used; the message names the file, the column and the rule."""


class Listed(Protocol):
    """A file as a zone lists it (:class:`mlops_assets.resources.LandedFile`)."""

    @property
    def name(self) -> str: ...

    @property
    def mtime_ns(self) -> int: ...


# -- naming ---------------------------------------------------------------------------------------------------------


def _matches(stem: str, base: str) -> bool:
    return stem == base or stem.startswith(base + ".")


def labels_target(version_keys: Sequence[str], file_name: str) -> str | None:
    """The data version a labels file labels, by the naming rule of this module, or ``None`` when none has landed.

    Args:
        version_keys: The model's registered data version keys, in landing order.
        file_name: The labels file's name.

    Returns:
        The version key (for a data file stem: the newest version of that stem); ``None`` when no base matches.
    """
    stem = safe_stem(file_name)
    best: tuple[int, int, str] | None = None  # (base length, landing position, key)
    for position, key in enumerate(version_keys):
        bases = [key]
        with contextlib.suppress(ValueError):  # a partition added by hand with another naming scheme: its key only
            bases.append(stem_of_key(key))
        for base in bases:
            if _matches(stem, base):
                candidate = (len(base), position, key)
                if best is None or candidate > best:
                    best = candidate
    return None if best is None else best[2]


def labels_files(listed: Iterable[Listed], version_keys: Sequence[str], version: str) -> list[str]:
    """The labels files of ``version`` among ``listed``, in landing order (modification time, then name)."""
    mine = [f for f in listed if labels_target(version_keys, f.name) == version]
    return [f.name for f in sorted(mine, key=lambda f: (f.mtime_ns, f.name))]


# -- reading --------------------------------------------------------------------------------------------------------


def read_labels_file(path: Path, spec: DatasetSpec, source_name: str | None = None) -> pd.DataFrame:
    """Read one labels file: ``spec.id_column`` and ``spec.label.column``, one labelled row per id.

    Args:
        path: CSV or Parquet file.
        spec: The dataset spec (id and label columns, label domain, the schema typing both).
        source_name: How to name the file in messages (default: its path).

    Returns:
        Columns ``row_id`` (text) and ``label`` (0/1 float), in file order.

    Raises:
        LabelsError: unreadable file (the reader's rule), a missing column (``labels_columns_present``), missing
            ids (``ids_present``), duplicate ids (``ids_unique``), a label missing or outside its domain (read
            through the label column's type as in a data file: ``label_in_domain``), id or label failing the data
            files' schema (``schema_valid``).
    """
    name = source_name or str(path)
    try:
        raw = read_data_file(path, spec)
    except DataFileError as exc:
        raise LabelsError(str(exc)) from exc
    for column in (spec.id_column, spec.label.column):
        if column not in raw.columns:
            raise LabelsError(f"{name}: column {column!r} missing (rule: labels_columns_present)")
    ids = raw[spec.id_column]
    if ids.isna().any():
        raise LabelsError(
            f"{name}: column {spec.id_column!r} has {int(ids.isna().sum())} missing ids (rule: ids_present)"
        )
    duplicated = ids.astype(str).duplicated()
    if duplicated.any():
        raise LabelsError(
            f"{name}: column {spec.id_column!r} has {int(duplicated.sum())} duplicate ids, e.g. "
            f"{ids[duplicated].astype(str).iloc[0]!r} (rule: ids_unique)"
        )
    # A labels file states labels: an empty label cell is refused even when data files may lack labels.
    in_domain = gate_label_in_domain(raw, spec, name, allow_missing=False)
    if not in_domain.passed:
        raise LabelsError(in_domain.message)
    # Both columns typed by the data files' own schema: "01" is the int id 1, "yes" the bool True.
    try:
        typed = coerce_columns(raw, spec, [spec.id_column, spec.label.column], name)
    except ValueError as exc:
        raise LabelsError(str(exc)) from exc
    encoded = encode_label(typed[spec.label.column], spec)
    return pd.DataFrame({ROW_ID: typed[spec.id_column].astype(str).to_numpy(), LABEL: encoded.astype(float)})


def labels_from_file(path: Path, spec: DatasetSpec, known_ids: pd.Series | None = None) -> pd.DataFrame:
    """Read one labels file (:func:`read_labels_file`) and refuse ids that are not ``known_ids``.

    Raises:
        LabelsError: as :func:`read_labels_file`; and ids unknown to the data version (rule ``ids_known``).
    """
    frame = read_labels_file(path, spec)
    if known_ids is not None:
        unknown = ~frame[ROW_ID].isin(set(known_ids.astype(str)))
        if unknown.any():
            raise LabelsError(
                f"{path}: column {spec.id_column!r} has {int(unknown.sum())} ids that are not rows of this data "
                f"version, e.g. {frame[ROW_ID][unknown].iloc[0]!r} (rule: ids_known)"
            )
    return frame


def labels_from_features(features: pd.DataFrame, spec: DatasetSpec, label_column: str = LABEL_COLUMN) -> pd.DataFrame:
    """The labels a data file carried (its encoded label column), as ``row_id`` → ``label`` (NaN: none)."""
    return pd.DataFrame(
        {
            ROW_ID: features[spec.id_column].astype(str).to_numpy(),
            LABEL: features[label_column].astype(float).to_numpy(),
        }
    )


def join_labels(log: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The prediction log with a ``label`` column (NaN where no label arrived), joined on ``row_id``."""
    mapping = labels.set_index(ROW_ID)[LABEL]
    joined = log.copy()
    joined[LABEL] = joined[ROW_ID].astype(str).map(mapping).astype(float)
    return joined


# -- merging --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelsRecord:
    """What the merged labels of one data version rest on.

    Attributes:
        rows: Rows of the data version.
        labelled_rows: Rows with a label after the merge.
        labelled_share: ``labelled_rows / rows`` (0 for an empty version).
        min_labelled_share: The policy's threshold (``policy.data.min_labelled_share``).
        labelled: ``labelled_share >= min_labelled_share``.
        sources: The sources merged, oldest first: :data:`DATA_FILE_SOURCE` when the data file had labels,
            then the labels files in landing order.
        files: Per labels file: ``file``, ``rows`` (in the file), ``applied`` (rows of the version it labelled),
            ``unknown_ids`` (ignored), ``relabelled`` (ids an earlier source had labelled), ``changed`` (of those,
            how many with a different label) and ``changed_sources`` (whose labels it changed).
        changed_labels: Distinct ids whose label was changed by a later source.
        changed_examples: Up to :data:`MAX_EXAMPLES` of those ids.
        unknown_ids: Labels given for ids that are not rows of the version (ignored), over all files.
        unknown_examples: Up to :data:`MAX_EXAMPLES` of them.
    """

    rows: int
    labelled_rows: int
    labelled_share: float
    min_labelled_share: float
    labelled: bool
    sources: tuple[str, ...]
    files: tuple[Mapping[str, Any], ...] = ()
    changed_labels: int = 0
    changed_examples: tuple[str, ...] = ()
    unknown_ids: int = 0
    unknown_examples: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "rows": self.rows,
            "labelled_rows": self.labelled_rows,
            "labelled_share": self.labelled_share,
            "min_labelled_share": self.min_labelled_share,
            "labelled": self.labelled,
            "sources": list(self.sources),
            "files": [dict(f) for f in self.files],
            "changed_labels": self.changed_labels,
            "changed_examples": list(self.changed_examples),
            "unknown_ids": self.unknown_ids,
            "unknown_examples": list(self.unknown_examples),
        }

    def reading(self) -> str:
        """The record in one sentence."""
        verdict = "labelled" if self.labelled else "not labelled"
        text = (
            f"{self.labelled_rows} of {self.rows} rows labelled (share {self.labelled_share:.3f}, "
            f"{'>=' if self.labelled else '<'} min_labelled_share {self.min_labelled_share}): {verdict}; "
            f"sources: {', '.join(self.sources) or 'none'}"
        )
        if self.changed_labels:
            text += f"; {self.changed_labels} label(s) changed by a later file"
        if self.unknown_ids:
            text += f"; {self.unknown_ids} label(s) for unknown ids ignored"
        return text


def labelled_share(labels: pd.DataFrame) -> float:
    """Share of the rows of a labels frame (one row per row of the version) that have a label; 0 when empty."""
    if not len(labels):
        return 0.0
    return float(np.isfinite(labels[LABEL].to_numpy(dtype=float)).mean())


def is_labelled(labels: pd.DataFrame, min_share: float) -> bool:
    """Whether a version with this labels frame is labelled: its labelled share reaches ``min_share``."""
    return len(labels) > 0 and labelled_share(labels) >= min_share


def says_labelled(metadata: Mapping[str, Any], min_share: float) -> bool:
    """Whether a ``labels`` materialization's metadata says its data version is labelled.

    Its ``labelled`` flag (labelled share >= ``policy.data.min_labelled_share`` when it was materialized) decides; a
    materialization from before the labels stream (no flag) is labelled when its ``coverage`` reaches ``min_share``.
    Anything else is not labelled (fail closed).
    """
    flag = metadata.get("labelled")
    if flag is not None:
        return flag is True
    coverage = metadata.get("coverage")
    return isinstance(coverage, int | float) and not isinstance(coverage, bool) and float(coverage) >= min_share


def merge_labels(
    row_ids: pd.Series,
    own: pd.Series | None,
    files: Sequence[tuple[str, pd.DataFrame]],
    *,
    min_labelled_share: float,
) -> tuple[pd.DataFrame, LabelsRecord]:
    """Merge the labels of one data version: the data file's own labels, then each labels file, later wins.

    Args:
        row_ids: The version's row ids (any type; compared as text), one per row, unique.
        own: The data file's own labels aligned with ``row_ids`` (0/1, NaN or ``<NA>``: none), or ``None``.
        files: ``(file name, frame of read_labels_file)`` in landing order (oldest first).
        min_labelled_share: ``policy.data.min_labelled_share``.

    Returns:
        The merged frame (``row_id`` text, ``label`` 0/1 float or NaN; one row per row id, in their order) and
        its :class:`LabelsRecord`.
    """
    # Ids stay one text column (Arrow-backed ``str``, no Python object per id) and are matched through factorized
    # codes; origins are positions in ``names`` (-1: none), not an object column of names.
    ids = row_ids.astype(str).reset_index(drop=True)
    if own is None:
        current = np.full(len(ids), np.nan)
    else:
        current = pd.Series(own).astype(float).to_numpy(dtype=float, copy=True)
        if len(current) != len(ids):  # pandas' message, as when the labels were a Series on the ids
            raise ValueError(f"Length of values ({len(current)}) does not match length of index ({len(ids)})")
    sources: list[str] = [DATA_FILE_SOURCE] if bool(np.any(~np.isnan(current))) else []
    names: list[str] = [DATA_FILE_SOURCE]
    origin = np.where(np.isnan(current), -1, 0).astype(np.intp)
    changed_ids: dict[str, None] = {}
    unknown_total = 0
    unknown_examples: list[str] = []
    per_file: list[dict[str, Any]] = []
    duplicated_ids: bool | None = None
    for name, part in files:
        part_ids = part[ROW_ID]
        where = _positions(ids, part_ids)
        known = where >= 0
        unknown = part_ids[~known]
        unknown_total += len(unknown)
        unknown_examples.extend(unknown.head(MAX_EXAMPLES - len(unknown_examples)).tolist())
        at = where[known]
        given = part[LABEL][known].astype(float).to_numpy(dtype=float)
        if duplicated_ids is None:
            duplicated_ids = _has_duplicates(ids)
        if duplicated_ids:  # pandas' message, as when the labels were a Series on the ids
            raise ValueError("cannot reindex on an axis with duplicate labels")
        before = current[at]
        relabelled = ~np.isnan(before)
        changed = relabelled & (before != given)
        changed_sources = sorted({names[i] if i >= 0 else "" for i in np.unique(origin[at[changed]]).tolist()})
        changed_ids.update(dict.fromkeys(part_ids[known][changed].tolist()))
        current[at] = given
        origin[at] = len(names)
        names.append(name)
        sources.append(name)
        per_file.append(
            {
                "file": name,
                "rows": len(part),
                "applied": len(given),
                "unknown_ids": len(unknown),
                "relabelled": int(relabelled.sum()),
                "changed": int(changed.sum()),
                "changed_sources": changed_sources,
            }
        )
    n_rows = len(ids)
    n_labelled = int(np.count_nonzero(~np.isnan(current)))
    share = n_labelled / n_rows if n_rows else 0.0
    record = LabelsRecord(
        rows=n_rows,
        labelled_rows=n_labelled,
        labelled_share=float(share),
        min_labelled_share=float(min_labelled_share),
        labelled=n_rows > 0 and share >= min_labelled_share,
        sources=tuple(sources),
        files=tuple(per_file),
        changed_labels=len(changed_ids),
        changed_examples=tuple(list(changed_ids)[:MAX_EXAMPLES]),
        unknown_ids=unknown_total,
        unknown_examples=tuple(unknown_examples),
    )
    frame = pd.DataFrame({ROW_ID: _text_column(ids), LABEL: current})
    _release_arrow_memory()
    return frame, record


def _release_arrow_memory() -> None:
    """Give the memory Arrow's pool kept from the matching's temporaries back to the OS.

    The pool (mimalloc) keeps freed pages resident, where numpy (the training after :func:`labelled_features`) cannot
    reuse them: at 1M rows ~100 MiB more at the step's peak. Changes no value.
    """
    pa.default_memory_pool().release_unused()


def _positions(ids: pd.Series, keys: pd.Series) -> np.ndarray:
    """For each of ``keys``, the position of the equal value in ``ids`` (first one), -1 when none; int array.

    Matched through ``pd.factorize`` codes of both at once (missing values equal to each other, as in pandas'
    ``isin`` and ``map``): no hash table of Python objects for text columns (~170 MiB for 1M ids).
    """
    codes, uniques = pd.factorize(pd.concat([ids, keys], ignore_index=True), use_na_sentinel=False)
    first = np.full(len(uniques), -1, dtype=np.intp)
    n = len(ids)
    first[codes[:n][::-1]] = np.arange(n, dtype=np.intp)[::-1]  # the last write wins: the first position
    return first[codes[n:]]


def _has_duplicates(values: pd.Series) -> bool:
    """Whether two of ``values`` are equal (missing values equal to each other), through ``pd.factorize``."""
    _, uniques = pd.factorize(values, use_na_sentinel=False)
    return len(uniques) < len(values)


def _text_column(ids: pd.Series) -> Any:
    """``ids`` as the values of a new frame column, typed as the frame constructor types their object array.

    Its own text array when that gives the same column (no Python ``str`` per id); else the object array.
    """
    if len(ids) and ids.dtype == pd.StringDtype(na_value=np.nan) and not ids.hasnans:
        return ids.array
    return ids.to_numpy()


# -- training and evaluation read labels here -----------------------------------------------------------------------


def labelled_features(features: pd.DataFrame, labels: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The features frame with ``_label`` taken from the labels stream by row id; unlabelled rows dropped.

    The data file's own label column is one source of the stream (:func:`merge_labels`), so a fully labelled
    version trains exactly as before; the features' own ``_label`` is never read here.

    Args:
        features: A features frame (:func:`mlops_assets.ml.features.build_features`).
        labels: The merged labels of the same version (``row_id`` text, ``label`` 0/1 or NaN).
        spec: The dataset spec (its id column).

    Returns:
        The labelled rows of ``features`` in their order (index reset), ``_label`` int64 0/1; the frame's
        ``attrs`` are kept.

    Raises:
        ValueError: ``labels`` has duplicate row ids or a label other than 0/1, naming the rule.
    """
    mapping = labels.set_index(ROW_ID)[LABEL]
    label_ids = mapping.index.to_series(index=pd.RangeIndex(len(mapping)))
    if _has_duplicates(label_ids):
        raise ValueError(f"labels of spec {spec.name!r} have duplicate row ids (rule: ids_unique)")
    # Each row's label by id through factorized codes: ``ids.map(mapping)`` without Python objects per id.
    where = _positions(label_ids, features[spec.id_column].astype(str))
    taken = pd.api.extensions.take(mapping.array, where, allow_fill=True)
    values = pd.Series(taken, copy=False).astype(float).to_numpy()
    known = np.isfinite(values)
    bad = known & ~np.isin(values, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"labels of spec {spec.name!r} hold values other than 0/1 (rule: label_in_domain)")
    # Every row labelled: pandas' copy-on-write shares the features' columns with ``out`` until one is written.
    out = features.loc[known].reset_index(drop=True)
    out[LABEL_COLUMN] = values[known].astype(np.int64)
    out.attrs.update(features.attrs)
    _release_arrow_memory()
    return out
