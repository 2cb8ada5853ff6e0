"""Labels a month late: split landed files into unlabelled data files and labels files, and plan their landing order.

In production the rows to score arrive long before their outcomes. The demo reproduces that from files that carry
their label column: each file is split into a data file without the label column (landed in the model's landing
zone) and a labels file with the id and label columns only (landed in its labels zone, under the same file name, so
the labels sensor joins it to that data version). :func:`landing_plan` lands the labels of version *k* just before
the data of version *k + 1* and the last version's labels after the last data file, so the story ends labelled.

No Dagster here: the demo (``mlops_assets/demo.py``) lands the files the plan lists and waits for the runs.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from mlops_assets.storage.files import write_frame_atomic

#: What one landing puts where: a data file in the landing zone, or a labels file in the labels zone.
LandingKind = Literal["data", "labels"]


@dataclass(frozen=True)
class Landing:
    """One file the demo lands, in plan order.

    Attributes:
        kind: ``data`` (the model's landing zone) or ``labels`` (the model's labels zone).
        source: The file to copy; its name is the name it lands under.
        stem: The data file it belongs to (the file name without suffix, e.g. ``flights_2013-03``): a labels file
            is named like its data file, so the labels sensor finds the data version.
    """

    kind: LandingKind
    source: Path
    stem: str


@dataclass(frozen=True)
class SplitFile:
    """One source file split in two: the data without the label column, and the labels.

    Attributes:
        data: The data file (every column of the source but the label column, same rows, same order).
        labels: The labels file (the id and label columns, same rows); same file name as ``data``.
    """

    data: Path
    labels: Path


@dataclass(frozen=True)
class SplitFrames:
    """The two parts of one data file (see :func:`split_labels_frame`)."""

    data: pd.DataFrame
    labels: pd.DataFrame


def landing_plan(files: Sequence[Path] | Sequence[SplitFile], *, labels_later: bool) -> list[Landing]:
    """The order in which the demo lands its files.

    Args:
        files: With ``labels_later``, the split files (:func:`split_labels_file`) in version order; without it, the
            source files themselves (each carrying its labels), in version order.
        labels_later: Land each version's labels one version late (``True``), or each file with its labels
            (``False``: the behaviour before labels had their own stream; option ``--labels-with-data``).

    Returns:
        Without ``labels_later``: one ``data`` landing per file. With it: ``data 1, labels 1, data 2, labels 2, …,
        data n, labels n`` — the labels of version *k* land when version *k + 1* arrives (just before its data
        file), and the last version's labels land after the last data file, so every version ends labelled.

    Raises:
        ValueError: ``files`` holds the wrong kind of entries for ``labels_later``, or two entries share a file
            name (a labels file is joined to its data version by name).
    """
    names = [f.data.name if isinstance(f, SplitFile) else f.name for f in files]
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"landing plan: file names must be unique (labels join by name), repeated: {duplicates}")
    if not labels_later:
        if any(isinstance(f, SplitFile) for f in files):
            raise ValueError("landing plan: files carrying their labels are plain paths, not split files")
        return [Landing("data", Path(f), Path(f).stem) for f in files if isinstance(f, Path)]
    plan: list[Landing] = []
    for split in files:
        if not isinstance(split, SplitFile):
            raise ValueError(f"landing plan: labels one version late needs split files, got the path {split}")
        if split.data.name != split.labels.name:
            raise ValueError(
                f"landing plan: a labels file is named like its data file: {split.labels.name} is not {split.data.name}"
            )
        stem = split.data.stem
        plan.append(Landing("data", split.data, stem))
        plan.append(Landing("labels", split.labels, stem))
    return plan


def _read(path: Path) -> pd.DataFrame:
    """The file's cells as written: CSV as text (so nothing is re-typed on the way back out), Parquet as typed."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    raise ValueError(f"{path}: not a .csv or .parquet file")


def split_labels_frame(frame: pd.DataFrame, id_column: str, label_column: str, where: str) -> SplitFrames:
    """Split one data file's frame into the data without its label column and the labels (id, label).

    Args:
        frame: The file's rows.
        id_column: The spec's id column (kept in both parts: the labels join to the data by it).
        label_column: The spec's label column (only in the labels part).
        where: The file's name, for the error messages.

    Returns:
        ``(data, labels)``: ``data`` has every column but ``label_column`` in the original order; ``labels`` has
        ``[id_column, label_column]``; both keep the rows and their order.

    Raises:
        ValueError: the id or the label column is missing (the message names the file and the column).
    """
    missing = [c for c in (id_column, label_column) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{where}: column(s) {missing} missing; splitting the labels off needs the id column {id_column!r} "
            f"and the label column {label_column!r}"
        )
    if id_column == label_column:
        raise ValueError(f"{where}: the id column and the label column are the same column {id_column!r}")
    data = frame.drop(columns=[label_column])
    labels = frame.loc[:, [id_column, label_column]]
    return SplitFrames(data=data.reset_index(drop=True), labels=labels.reset_index(drop=True))


def split_labels_file(source: Path, out_dir: Path, id_column: str, label_column: str) -> SplitFile:
    """Write ``out_dir/data/<name>`` (without the label column) and ``out_dir/labels/<name>`` (id and label).

    Both parts keep the source's format (CSV stays CSV with its cells as written, Parquet stays Parquet with its
    types). Each is written to a temporary name and renamed.

    Args:
        source: A data file carrying its label column.
        out_dir: Where the two folders go (created if missing).
        id_column: The spec's id column.
        label_column: The spec's label column.

    Returns:
        The two paths.

    Raises:
        ValueError: the file is neither CSV nor Parquet, or misses the id or label column.
    """
    source = Path(source)
    parts = split_labels_frame(_read(source), id_column, label_column, str(source))
    fmt: Literal["csv", "parquet"] = "parquet" if source.suffix.lower() == ".parquet" else "csv"
    data_dir, labels_dir = Path(out_dir) / "data", Path(out_dir) / "labels"
    data_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    return SplitFile(
        data=write_frame_atomic(parts.data, data_dir / source.name, fmt),
        labels=write_frame_atomic(parts.labels, labels_dir / source.name, fmt),
    )
