"""A dataset spec inferred from sample files, and files checked against a spec: the core of ``mlops-spec``.

:func:`infer_spec` reads sample CSV/Parquet files and drafts the YAML spec :func:`~mlops_assets.ml.spec.load_spec`
loads, in the spirit of TFDV's schema inference and pandera's ``infer_schema``: pandera infers each column's
dtype, nullability and range (:func:`pandera.schema_statistics.pandas.infer_dataframe_statistics`); this module
maps them to the spec's types, refines what pandas cannot tell from a CSV (an int column read as float because
cells are missing, ISO 8601 timestamps and ``true``/``false`` read as text), decides category or string, widens
ranges by a stated margin, picks the label, its positive class, the id and order columns, the features and a
policy, and explains every choice in a YAML comment. The types are then confirmed by reading every file exactly as
the product reads a landed file (:func:`~mlops_assets.ml.validation.read_data_file` and the spec's pandera schema),
so the statistics are those of the values the gates will see.

:func:`check_files` runs the product's own data gates on files, in the order given, as successive data versions:
the four file gates of ``raw_data`` (:func:`~mlops_assets.ml.validation.validate_raw`), ``volume_within_bounds``
and ``ids_unique_across_versions`` against the earlier accepted files, and the two ``features`` gates; every
failure case is kept (file, gate, column, rule, count and failing values).

Nothing here writes a file; ``mlops_assets/spec_cli.py`` does.
"""

import itertools
import math
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import yaml
from pandera import dtypes as pa_dtypes
from pandera.schema_statistics.pandas import infer_dataframe_statistics

from mlops_assets.ml import features as feature_core
from mlops_assets.ml import validation
from mlops_assets.ml.gate_result import GateResult
from mlops_assets.ml.policy import DataGatePolicy, ModelGatePolicy, RolloutPolicy
from mlops_assets.ml.rollout import DEFAULT_CANARY_STEPS
from mlops_assets.ml.schema import build_schema, canonical_value
from mlops_assets.ml.spec import ColumnSpec, DatasetSpec, LabelSpec, SpecError, TrainingSpec, spec_from_dict

#: A text column with at most this many distinct values ...
CATEGORY_MAX_DISTINCT = 50
#: ... that are at most this share of its present cells (each value seen 10 times on average) is a ``category``
#: with its values listed; any other text column is a ``string`` (any value accepted).
CATEGORY_MAX_SHARE = 0.1
#: A ``string`` column whose distinct values exceed this share of its present cells is identifier-like or free text:
#: not a feature.
IDENTIFIER_SHARE = 0.5
#: Numeric ranges are widened on each side by this fraction of the observed span (``--margin``).
DEFAULT_MARGIN = 0.1
#: Column names taken for the label when ``label`` is not given (case-insensitive), if the column is binary.
LABEL_NAMES: tuple[str, ...] = ("label", "target", "y", "class", "outcome")
#: Text label values that name the positive class (case-insensitive).
POSITIVE_WORDS = frozenset({"1", "true", "t", "yes", "y", "positive", "pos"})
#: Categorical features with at most this many values are suggested as slices.
SLICE_MAX_VALUES = 10
#: The defaults the inferred policy and training sections start from.
_DEFAULT_DATA = DataGatePolicy()
_DEFAULT_GATES = ModelGatePolicy()
_DEFAULT_ROLLOUT = RolloutPolicy()
_DEFAULT_TRAINING = TrainingSpec()
#: The first canary step's share of rows: the rollout's data needs are stated against it.
_FIRST_CANARY_SHARE = DEFAULT_CANARY_STEPS[0]

#: YAML comments are wrapped to this width.
_COMMENT_WIDTH = 118

_INT_TEXT = re.compile(r"^[+-]?\d+$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_BOOL_TEXT = frozenset({"true", "false"})
_NAME_PART = re.compile(r"[^a-z0-9_]+")


class InferError(ValueError):
    """A spec cannot be inferred from the files; the message names the file or column and what to do."""


# --------------------------------------------------------------------------------------------------
# Reading the samples
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Sample:
    """One sample file: pandas' own reading (its type inference) and, for a CSV, every cell as written."""

    path: Path
    guessed: pd.DataFrame
    text: pd.DataFrame | None


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else str(text)


def _read_sample(path: Path) -> _Sample:
    suffix = path.suffix.lower()
    if suffix not in validation.CSV_SUFFIXES | validation.PARQUET_SUFFIXES:
        raise InferError(f"{path}: unsupported file extension {path.suffix!r}; expected .csv, .parquet or .pq")
    if not path.is_file():
        raise InferError(f"{path}: file does not exist")
    try:
        if suffix in validation.CSV_SUFFIXES:
            guessed = pd.read_csv(path, encoding="utf-8-sig", low_memory=False)
            text = pd.read_csv(path, encoding="utf-8-sig", low_memory=False, dtype=str, keep_default_na=False)
            return _Sample(path, guessed, text)
        return _Sample(path, pd.read_parquet(path), None)
    except Exception as exc:
        raise InferError(f"{path}: cannot be read: {type(exc).__name__}: {_first_line(str(exc))}") from exc


def _present_text(sample: _Sample, column: str) -> pd.Series:
    """The column's cells that are not missing, as text: a CSV's cells as written, else the values' ``str``."""
    if sample.text is not None:
        cells = sample.text[column]
        return cells[~cells.isin(sorted(validation.PANDAS_DEFAULT_NA_VALUES))]
    return sample.guessed[column].dropna().astype(str)


# --------------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------------


def _text_type(cells: pd.Series) -> tuple[str | None, str]:
    """``datetime``/``bool`` when every present text cell reads as one, else ``None`` (text); with the reason."""
    if cells.empty:
        return None, ""
    if cells.str.match(_ISO_DATE).all():
        try:
            pd.to_datetime(cells, format="ISO8601", utc=True)
        except (ValueError, TypeError):
            pass
        else:
            return "datetime", "every value is an ISO 8601 date or timestamp (read as UTC)"
    if cells.str.strip().str.lower().isin(_BOOL_TEXT).all():
        return "bool", "every value is true or false"
    return None, ""


def _draft_type(name: str, dtype: Any, samples: Sequence[_Sample]) -> tuple[str, str]:
    """The spec type of one column from pandera's dtype of pandas' reading, refined on the cells; with the reason."""
    cells = pd.concat([_present_text(s, name) for s in samples], ignore_index=True)
    if pa_dtypes.is_bool(dtype):
        return "bool", "pandas read booleans"
    if pa_dtypes.is_int(dtype) or pa_dtypes.is_uint(dtype):
        return "int", f"pandas read integers ({dtype})"
    if pa_dtypes.is_float(dtype):
        texts = all(s.text is not None for s in samples)
        if texts and len(cells) and cells.str.strip().str.match(_INT_TEXT).all():
            return (
                "int",
                (
                    "every present cell is a whole number written without a decimal point (pandas read float64 only "
                    "because cells are missing)"
                ),
            )
        return "float", f"pandas read numbers with a fractional part or a decimal point ({dtype})"
    if pa_dtypes.is_datetime(dtype):
        return "datetime", f"pandas read timestamps ({dtype})"
    if pa_dtypes.is_category(dtype):
        return "category", "stored as a categorical column"
    found, why = _text_type(cells.astype(str))
    if found is not None:
        return found, why
    return "text", ""


_DEMOTE = {"int": "float", "float": "string", "bool": "string", "datetime": "string"}


def _draft_spec(types: Mapping[str, str]) -> DatasetSpec:
    """A throw-away spec of the columns and types only (every column nullable, no rules), to read files with."""
    columns = tuple(ColumnSpec(name=n, type=t, nullable=True) for n, t in types.items())  # type: ignore[arg-type]
    first = columns[0].name
    return DatasetSpec(
        name="draft", columns=columns, id_column=first, label=LabelSpec(first, None, (None, None)), features=()
    )


def _typed_frames(paths: Sequence[Path], types: dict[str, str], reasons: dict[str, str]) -> list[pd.DataFrame]:
    """Every file read and coerced as the product reads it under ``types``; a column that does not coerce is demoted
    (int → float → string, bool/datetime → string) and the files read again."""
    for _ in range(len(_DEMOTE) + 2):
        draft = _draft_spec(types)
        schema = build_schema(draft)
        frames: list[pd.DataFrame] = []
        failed: dict[str, str] = {}
        for path in paths:
            try:
                frame = validation.read_data_file(path, draft)
            except validation.DataFileError as exc:
                raise InferError(str(exc)) from exc
            try:
                frames.append(schema.validate(frame.loc[:, list(types)], lazy=True))
            except pa.errors.SchemaErrors as exc:
                cases = exc.failure_cases
                for column, value in zip(cases["column"], cases["failure_case"], strict=True):
                    if column in types and str(column) not in failed:
                        failed[str(column)] = f"{value!r} in {path.name}"
        if not failed:
            return frames
        for column, example in failed.items():
            was = types[column]
            types[column] = _DEMOTE.get(was, "string")
            reasons[column] = f"read as {was} at first, but {example} is not one, so {types[column]}"
    raise InferError("the column types did not settle; name the files' types by writing the spec by hand")


# --------------------------------------------------------------------------------------------------
# Ranges and numbers as YAML shows them
# --------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A numpy/pandas scalar as a plain Python value."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _rounded(value: float, step: float, up: bool) -> float:
    out = (math.ceil if up else math.floor)(value / step) * step
    return float(f"{out:.12g}")


def widened_range(low: float, high: float, margin: float, whole: bool) -> tuple[float | int, float | int, str]:
    """The range a column is declared with: ``[low, high]`` widened by ``margin`` × span on each side.

    Rounded outward (to whole numbers for an int column, else to three significant digits of the span), and never
    below 0 when every observed value was at least 0 (a count, an amount or a duration stays non-negative).

    Args:
        low: Smallest observed value.
        high: Largest observed value.
        margin: Fraction of ``high - low`` added on each side (0: the observed range exactly).
        whole: Round to whole numbers (int columns).

    Returns:
        ``(min, max, why)``, ``why`` saying how the bounds were reached.
    """
    span = high - low
    lo, hi = low - margin * span, high + margin * span
    clamped = low >= 0 > lo
    if clamped:
        lo = 0.0
    if whole:
        out_lo: float | int = math.floor(lo)
        out_hi: float | int = math.ceil(hi)
    else:
        step = 10.0 ** (math.floor(math.log10(span)) - 2) if span > 0 else 0.0
        out_lo = _rounded(lo, step, up=False) if step else float(f"{lo:.12g}")
        out_hi = _rounded(hi, step, up=True) if step else float(f"{hi:.12g}")
    observed = f"observed [{_fmt(low)}, {_fmt(high)}]"
    if margin <= 0 or span == 0:
        return out_lo, out_hi, f"{observed}, declared as observed (no margin)"
    why = f"{observed}, widened by {margin:.0%} of the span on each side"
    if clamped:
        why += " (not below 0: every observed value is >= 0)"
    return out_lo, out_hi, why


def _fmt(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# --------------------------------------------------------------------------------------------------
# The inferred spec
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InferOptions:
    """What the caller states instead of letting :func:`infer_spec` choose.

    Attributes:
        label: The label column (else a binary column named one of :data:`LABEL_NAMES`).
        positive: The positive class, as written in the files (else the rule in :func:`infer_spec`).
        id_column: The id column (else the one column named like an id that is unique in every file).
        order_column: The order/time column (else the one datetime column, if there is exactly one).
        name: The data set's (and model's) name (else derived from the file names).
        margin: Fraction of each numeric range's span added on each side (:func:`widened_range`).
    """

    label: str | None = None
    positive: str | None = None
    id_column: str | None = None
    order_column: str | None = None
    name: str | None = None
    margin: float = DEFAULT_MARGIN


@dataclass(frozen=True)
class InferredSpec:
    """A spec inferred from sample files.

    Attributes:
        data: The spec as plain data, in the order it is written (:func:`~mlops_assets.ml.spec.spec_from_dict`
            accepts it).
        notes: Why each choice was made, by key path (``"label"``, ``"columns.age"``, ``"policy.data.min_rows"``):
            written as YAML comments above the key.
        header: Comment lines at the top of the file.
        files: The sample files, in the order given.
    """

    data: dict[str, Any]
    notes: dict[str, list[str]]
    header: list[str]
    files: tuple[Path, ...]

    def spec(self, source: str = "<inferred>") -> DatasetSpec:
        """The spec, validated by :func:`~mlops_assets.ml.spec.spec_from_dict` (SpecError if it is not valid)."""
        return spec_from_dict(self.data, source=source)

    def to_yaml(self) -> str:
        """The spec as YAML text with a comment on every inferred choice; ``yaml.safe_load`` of it is ``data``."""
        lines = [f"# {line}" if line else "#" for line in self.header]
        _emit(self.data, self.notes, "", 0, lines)
        return "\n".join(lines) + "\n"


def _scalar(value: Any, pad: str = "") -> str:
    """One value (scalar or list) as a YAML flow node, quoted where YAML needs it; a long list is wrapped onto lines
    indented by ``pad`` and two spaces."""
    plain = _plain_tree(value)
    if isinstance(plain, list) and plain:
        dumped = yaml.safe_dump(plain, default_flow_style=True, width=100 - len(pad), allow_unicode=True)
        lines = [line.strip() for line in dumped.strip().splitlines()]
        return f"\n{pad}  ".join(lines)
    dumped = yaml.safe_dump([plain], default_flow_style=True, width=10**9, allow_unicode=True)
    return dumped.strip()[1:-1]


def _plain_tree(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_tree(v) for v in value]
    return _plain(value)


def _emit(data: Mapping[str, Any], notes: Mapping[str, list[str]], prefix: str, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    for key, value in data.items():
        path = f"{prefix}{key}"
        for note in notes.get(path, []):
            indent = " " * (len(note) - len(note.lstrip(" ")))
            width = max(40, _COMMENT_WIDTH - len(pad) - 2)
            wrapped = textwrap.wrap(note, width=width, subsequent_indent=indent + "  ", break_on_hyphens=False)
            out.extend(f"{pad}# {line}" for line in wrapped or [""])
        if isinstance(value, Mapping) and value:
            out.append(f"{pad}{_scalar(key)}:")
            _emit(value, notes, f"{path}.", depth + 1, out)
        else:
            out.append(f"{pad}{_scalar(key)}: {_scalar(value, pad)}")


def model_name(raw: str) -> str:
    """A valid model name made from ``raw``: lower-cased, every run of other characters one ``_``, leading
    non-letters and trailing ``_`` dropped, at most 48 characters (the rule of ``mlops_assets.model.MODEL_NAME``:
    lower-case letters, digits and ``_``, starting with a letter, no ``__``); ``dataset`` when nothing is left.
    A name that this leaves unchanged is valid."""
    text = _NAME_PART.sub("_", raw.lower())
    text = re.sub(r"_+", "_", text)
    text = re.sub(r"^[^a-z]+", "", text)[:48].rstrip("_")
    return text or "dataset"


def _name_from_files(paths: Sequence[Path]) -> str:
    """The files' common name prefix without its trailing version part (``flights_2013-01``, ``-02`` → ``flights``)."""
    stems = [p.stem for p in paths]
    common = stems[0]
    for stem in stems[1:]:
        while not stem.startswith(common):
            common = common[:-1]
    return model_name(re.sub(r"[^A-Za-z]+$", "", common) or common or stems[0])


@dataclass
class _Column:
    """What is known about one column while the spec is drafted."""

    name: str
    type: str
    type_reason: str
    n_rows: int
    n_missing: int
    n_distinct: int
    values: list[Any] = field(default_factory=list)  # distinct present values, sorted (text columns and labels)
    stats: Mapping[str, Any] = field(default_factory=dict)  # pandera's check statistics (min/max)


def _sorted_values(values: Iterable[Any]) -> list[Any]:
    items = [_plain(v) for v in values]
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=str)


def _describe_columns(frame: pd.DataFrame, types: Mapping[str, str], reasons: Mapping[str, str]) -> dict[str, _Column]:
    statistics = infer_dataframe_statistics(frame)["columns"] or {}
    out: dict[str, _Column] = {}
    for name, kind in types.items():
        values = frame[name]
        present = values.dropna()
        distinct = present.unique()
        out[name] = _Column(
            name=name,
            type=kind,
            type_reason=reasons.get(name, ""),
            n_rows=len(values),
            n_missing=int(values.isna().sum()),
            n_distinct=len(distinct),
            values=_sorted_values(distinct) if len(distinct) <= CATEGORY_MAX_DISTINCT else [],
            stats=statistics.get(name, {}).get("checks") or {},
        )
    return out


def _category_or_string(col: _Column) -> None:
    """Settle a text column as ``category`` (few values, each seen often: listed) or ``string`` (any value)."""
    if col.type not in ("string", "category") or col.type_reason.startswith("read as"):
        return
    present = col.n_rows - col.n_missing
    if col.n_distinct <= CATEGORY_MAX_DISTINCT and col.n_distinct <= max(1, CATEGORY_MAX_SHARE * present):
        col.type = "category"
        col.type_reason = (
            f"text with {col.n_distinct} distinct value(s) in {present} cells (at most {CATEGORY_MAX_DISTINCT}, "
            f"each seen {present / max(col.n_distinct, 1):.0f} times on average): a category, its values listed; "
            "a value outside the list fails schema_valid (add it here, or make the type string)"
        )
    else:
        col.type = "string"
        col.type_reason = (
            f"text with {col.n_distinct} distinct values in {present} cells (more than {CATEGORY_MAX_DISTINCT}, "
            f"or fewer than {1 / CATEGORY_MAX_SHARE:.0f} rows per value): a string, any value accepted"
        )


def _choose_label(columns: Mapping[str, _Column], given: str | None) -> tuple[str, str]:
    if given is not None:
        if given not in columns:
            raise InferError(f"--label {given!r}: no such column in every file; columns: {sorted(columns)}")
        return given, "named with --label"
    binary = [c.name for c in columns.values() if c.n_distinct == 2 and c.type != "datetime"]
    named = [n for n in binary if n.lower() in LABEL_NAMES]
    if len(named) == 1:
        return named[
            0
        ], f"chosen because it is binary and named like a label ({', '.join(LABEL_NAMES)}); --label overrides"
    raise InferError(
        "name the label column with --label: "
        + (f"binary columns: {binary}" if binary else "no column has exactly two values in the files")
    )


def _positive(label: _Column, given: str | None, counts: Mapping[Any, int]) -> tuple[Any, str]:
    col = ColumnSpec(name=label.name, type=label.type)  # type: ignore[arg-type]
    values = label.values
    if given is not None:
        try:
            chosen = canonical_value(col, given)
        except (ValueError, TypeError) as exc:
            raise InferError(
                f"--positive {given!r}: not a value of the {label.type} label {label.name!r}: {exc}"
            ) from exc
        if chosen not in values:
            raise InferError(f"--positive {given!r}: the label {label.name!r} has the values {values}")
        return chosen, "named with --positive"
    if label.type in ("int", "float", "bool"):
        return max(values), "the greater of the two values (1 of 0/1, true of false); --positive overrides"
    words = [v for v in values if str(v).strip().lower() in POSITIVE_WORDS]
    if len(words) == 1:
        return words[0], f"the value that reads as positive ({', '.join(sorted(POSITIVE_WORDS))}); --positive overrides"
    rare = min(values, key=lambda v: (counts.get(v, 0), str(v)))
    shown = ", ".join(f"{v!r} x{counts.get(v, 0)}" for v in values)
    return rare, f"the rarer class in the samples ({shown}), usually the one to detect; --positive overrides"


def _id_like(name: str) -> bool:
    low = name.lower()
    return low == "id" or low.endswith(("_id", " id", "-id")) or (low.endswith("id") and len(low) <= 4)


def _choose_id(columns: Mapping[str, _Column], typed: Sequence[pd.DataFrame], given: str | None) -> tuple[str, str]:
    def unique_in_every_file(name: str) -> bool:
        return all(frame[name].notna().all() and frame[name].is_unique for frame in typed)

    if given is not None:
        if given not in columns:
            raise InferError(f"--id {given!r}: no such column in every file; columns: {sorted(columns)}")
        for path_frame in typed:
            values = path_frame[given]
            if values.isna().any() or not values.is_unique:
                source = path_frame.attrs.get(validation.SOURCE_FILE_ATTR, "a file")
                raise InferError(
                    f"--id {given!r}: in {source} it has {int(values.isna().sum())} missing and "
                    f"{int(values.duplicated().sum())} repeated values; an id is unique within a data version "
                    "(gate ids_unique)"
                )
        return given, "named with --id"
    candidates = [
        c.name for c in columns.values() if c.type in ("int", "string", "category") and unique_in_every_file(c.name)
    ]
    named = [n for n in candidates if _id_like(n)]
    if len(named) == 1:
        return named[0], "chosen because it is named like an id and unique in every file; --id overrides"
    if len(candidates) == 1:
        return candidates[0], "chosen because it is the only int/text column unique in every file; --id overrides"
    raise InferError(
        "name the id column with --id"
        + (f" (candidates unique in every file: {candidates})" if candidates else "")
        + ": every row needs an id unique within its file (gate ids_unique); the prediction log joins labels "
        "that arrive later by it. Without one, add a column to the files (e.g. the row number)"
    )


def _choose_order(columns: Mapping[str, _Column], given: str | None) -> tuple[str | None, str]:
    if given is not None:
        if given not in columns:
            raise InferError(f"--order {given!r}: no such column in every file; columns: {sorted(columns)}")
        return given, "named with --order"
    times = [c.name for c in columns.values() if c.type == "datetime"]
    if len(times) == 1:
        return times[0], "chosen because it is the only datetime column; --order overrides"
    return None, ""


def infer_spec(paths: Sequence[Path | str], options: InferOptions = InferOptions()) -> InferredSpec:
    """Infer a dataset spec from sample files (CSV or Parquet), every choice explained.

    Rules (each also written as a comment in the YAML):

    * Columns: those present in every file. Type: pandera's inference on pandas' reading (int, float, bool,
      datetime, categorical); a CSV float column whose cells are all whole numbers without a decimal point is
      ``int`` (pandas read float only because of missing cells); text whose every cell is ISO 8601 is
      ``datetime``, ``true``/``false`` is ``bool``; other text is ``category`` (its values listed) when it has at
      most :data:`CATEGORY_MAX_DISTINCT` distinct values that are at most :data:`CATEGORY_MAX_SHARE` of its
      cells, else ``string``. Each file is then read and coerced as the product reads a landed file; a column that
      does not coerce is demoted (int → float → string).
    * ``nullable``: some value is missing in the samples. Ranges (int/float, not the id, label or order column):
      the observed range widened by ``margin`` of the span (:func:`widened_range`).
    * Label: ``options.label``, else the binary column named like a label. Positive class: ``options.positive``,
      else the greater value for a number or boolean, else the value that reads as positive (``yes``, ``true``
      ...), else the rarer class.
    * Id: ``options.id_column``, else the int/text column unique in every file (named like an id when several
      are). Order: ``options.order_column``, else the only datetime column.
    * Features: every other column but datetimes, constant columns and identifier-like text (distinct values
      over :data:`IDENTIFIER_SHARE` of the cells).
    * Policy: the defaults, written out, except ``min_rows`` (half the smallest file when that is under the
      default) and ``volume_ratio_bounds`` (widened when the files' own row-count ratios fall outside).

    Args:
        paths: Sample files, in data-version order (row-count ratios are taken in this order).
        options: What the caller states instead.

    Returns:
        The inferred spec; :meth:`InferredSpec.to_yaml` writes it.

    Raises:
        InferError: no file, an unreadable file, no column common to all files, no label or id column found
            (the message lists the candidates), a label that is not binary or has missing values.
    """
    files = tuple(Path(p) for p in paths)
    if not files:
        raise InferError("no sample files given")
    if options.margin < 0:
        raise InferError(f"margin must be >= 0, got {options.margin}")
    if options.name is not None and model_name(options.name) != options.name:
        raise InferError(
            f"name {options.name!r} is not a valid model name (lower-case letters, digits and '_', starting with a "
            f"letter, no '__', at most 48 characters), e.g. {model_name(options.name)!r}"
        )
    samples = [_read_sample(p) for p in files]
    common = [c for c in samples[0].guessed.columns if all(c in s.guessed.columns for s in samples[1:])]
    if not common:
        raise InferError("the files have no column in common")
    left_out = sorted({str(c) for s in samples for c in s.guessed.columns} - {str(c) for c in common})

    guessed = pd.concat([s.guessed.loc[:, common] for s in samples], ignore_index=True)
    statistics = infer_dataframe_statistics(guessed)["columns"] or {}
    types: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for name in common:
        kind, why = _draft_type(str(name), statistics[name]["dtype"], samples)
        types[str(name)], reasons[str(name)] = ("string" if kind == "text" else kind), why
    typed = _typed_frames(files, types, reasons)
    for path, frame in zip(files, typed, strict=True):
        frame.attrs[validation.SOURCE_FILE_ATTR] = path.name
    everything = pd.concat(typed, ignore_index=True)
    columns = _describe_columns(everything, types, reasons)

    for col in columns.values():
        _category_or_string(col)

    label_name, label_why = _choose_label(columns, options.label)
    label = columns[label_name]
    if label.type == "datetime":
        raise InferError(f"label column {label_name!r} is a datetime; a binary label is a number, boolean or text")
    if label.n_missing:
        raise InferError(
            f"label column {label_name!r} has {label.n_missing} missing value(s); every row of a data file needs its "
            "label (gate label_in_domain)"
        )
    if label.n_distinct != 2:
        shown = label.values[:10] if label.values else "more than 50"
        raise InferError(
            f"label column {label_name!r} has {label.n_distinct} distinct values ({shown}); a binary label has two"
        )
    if label.type == "category":
        label.type = "string"
    counts = {_plain(k): int(v) for k, v in everything[label_name].value_counts().items()}
    positive, positive_why = _positive(label, options.positive, counts)

    id_name, id_why = _choose_id(columns, typed, options.id_column)
    if id_name == label_name:
        raise InferError(f"the id column and the label column are both {id_name!r}")
    order_name, order_why = _choose_order(columns, options.order_column)
    if order_name in (label_name, id_name):
        raise InferError(f"the order column {order_name!r} is also the label or the id column")

    notes: dict[str, list[str]] = {}
    data: dict[str, Any] = {
        "name": options.name or _name_from_files(files),
        "description": (
            f"Inferred by mlops-spec infer from {len(files)} file(s) ({', '.join(p.name for p in files)}; "
            f"{len(everything)} rows). Describe the data set here."
        ),
        "id_column": id_name,
    }
    notes["name"] = [
        "The data set's name; the model is named after it (mlops-demo --spec) or after its folder (dg scaffold)."
    ]
    notes["id_column"] = [f"Id: {id_why}.", *_id_repeat_note(typed, id_name)]
    if order_name is not None:
        data["order_column"] = order_name
        notes["order_column"] = [f"Order: {order_why}.", *_order_notes(typed, order_name)]
    else:
        notes["id_column"].append(
            "No order column: the holdout is the rows whose seeded id hash falls under holdout_fraction. Set "
            "order_column: <a time column> to hold out the latest rows instead."
        )
    data["label"] = {"column": label_name, "positive": positive, "values": label.values}
    notes["label"] = [
        f"Label: {label_why}. Values as found in the files: {label.values}.",
        f"positive: {positive!r}: {positive_why}.",
        f"Class counts in the samples: {', '.join(f'{k!r} x{v}' for k, v in counts.items())}.",
    ]

    features, excluded = _choose_features(columns, {id_name, label_name, order_name})
    data["features"] = features
    notes["features"] = [
        "The feature allowlist: the only columns a model sees. Every column but the id, the label and the order "
        "column, except:",
        *([f"  {name}: {why}" for name, why in excluded] or ["  (nothing else left out)"]),
        "Move a column known only after the outcome (leakage) from here to forbidden_features.",
    ]
    if not features:
        raise InferError("no column is left as a feature; name the label, id and order columns explicitly")
    slice_candidates = [
        f
        for f in features
        if columns[f].type in ("category", "bool") and 2 <= columns[f].n_distinct <= SLICE_MAX_VALUES
    ]
    data["slices"] = []
    notes["slices"] = [
        "Columns whose values each get their own metrics rows in the evaluation, gated by slices_meet_floor on "
        f"slices of at least min_slice_size ({_DEFAULT_GATES.min_slice_size}) holdout rows. None set; candidates "
        f"(categorical features with 2-{SLICE_MAX_VALUES} values): {slice_candidates or 'none'}."
    ]
    data["protected"] = []
    notes["protected"] = [
        "Protected attributes (e.g. gender, age band): kept for the fairness gate, never model inputs. None set."
    ]
    data["forbidden_features"] = []
    notes["forbidden_features"] = ["Columns known only after the outcome; gate features_allowlisted refuses them."]
    data["policy"] = _policy(typed, notes)
    data["training"] = _training(notes)
    roles = {id_name: "id", label_name: "label", **({order_name: "order"} if order_name else {})}
    data["columns"] = {
        name: _column_entry(
            col,
            roles.get(name),
            col.type in ("int", "float") and _growing(typed, name),
            options.margin,
            notes,
        )
        for name, col in columns.items()
    }
    notes["columns"] = [
        "Every column the files share, with its type, nullability, range or categories; gate schema_valid checks "
        "them all. A later version with a missing value in a column that is not nullable, a value outside a range "
        "or a category not listed fails it: ranges are the observed ones widened by a margin (--margin) so that the "
        "usual variation passes; set nullable: true where missing values are legitimate."
    ]
    if left_out:
        notes["columns"].append(f"Not in every file, so not declared (extra columns are allowed): {left_out}.")
    header = [
        f"Dataset spec inferred by `mlops-spec infer` from {len(files)} file(s): {', '.join(p.name for p in files)}.",
        "Every inferred choice is explained in the comment above it: review them, then check files against the spec",
        "with `mlops-spec check SPEC FILE...`. The keys: docs/dataset-spec.md.",
    ]
    inferred = InferredSpec(data=data, notes=notes, header=header, files=files)
    try:
        spec = inferred.spec()
    except SpecError as exc:  # pragma: no cover - an inference rule out of step with the spec's rules
        raise InferError(f"the inferred spec does not load: {exc}") from exc
    _choose_estimator(spec, typed, data["training"], notes)
    return inferred


def _id_repeat_note(typed: Sequence[pd.DataFrame], id_name: str) -> list[str]:
    if len(typed) < 2:
        return ["id_unique_across_versions stays false: ids may repeat across data versions."]
    seen: set[Any] = set()
    repeated = 0
    for frame in typed:
        ids = {_plain(v) for v in frame[id_name]}
        repeated += len(ids & seen)
        seen |= ids
    if repeated:
        return [f"{repeated} id(s) repeat across the files: id_unique_across_versions stays false."]
    return ["No id repeats across the files: set id_unique_across_versions: true to refuse a version that reuses one."]


def _order_notes(typed: Sequence[pd.DataFrame], order_name: str) -> list[str]:
    fewest = min(int(frame[order_name].nunique()) for frame in typed)
    notes = [
        "The latest holdout_fraction of each version's rows by this column are the holdout; rows tied with the "
        "boundary value are split by a seeded sha256 of the id (highest hashes to the holdout), never by file order."
    ]
    if fewest < feature_core.MIN_DISTINCT_ORDER_VALUES:
        notes.append(
            f"Warning: a file has only {fewest} distinct value(s) here (fewer than "
            f"{feature_core.MIN_DISTINCT_ORDER_VALUES}): its holdout is then mostly drawn by the id hash, not out "
            "of time."
        )
    return notes


def _choose_features(columns: Mapping[str, _Column], roles: set[str | None]) -> tuple[list[str], list[tuple[str, str]]]:
    features: list[str] = []
    excluded: list[tuple[str, str]] = []
    for name, col in columns.items():
        if name in roles:
            continue
        present = col.n_rows - col.n_missing
        if col.n_distinct == 0:
            excluded.append((name, "no value in any sample row"))
        elif col.type == "datetime":
            excluded.append(
                (name, "a datetime is never a model input (put numeric parts such as hour or weekday in the files)")
            )
        elif col.n_distinct <= 1:
            excluded.append((name, "a single value in every sample row: nothing to learn from"))
        elif col.type == "string" and col.n_distinct > IDENTIFIER_SHARE * present:
            excluded.append(
                (name, f"identifier-like or free text ({col.n_distinct} distinct values in {present} cells)")
            )
        else:
            features.append(name)
    return features, excluded


def _growing(typed: Sequence[pd.DataFrame], name: str) -> bool:
    """Whether each file's values of a numeric column lie above every value of the file before (a running index)."""
    spans = [(frame[name].min(), frame[name].max()) for frame in typed if frame[name].notna().any()]
    return len(spans) >= 2 and all(later[0] > earlier[1] for earlier, later in itertools.pairwise(spans))


def _column_entry(
    col: _Column, role: str | None, growing: bool, margin: float, notes: dict[str, list[str]]
) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": col.type}
    why = [f"{col.type}: {col.type_reason}." if col.type_reason else f"{col.type}."]
    if col.n_missing:
        entry["nullable"] = True
        why.append(f"nullable: {col.n_missing} of {col.n_rows} values missing ({col.n_missing / col.n_rows:.1%}).")
    else:
        why.append(f"Not nullable: no value missing in {col.n_rows} rows.")
    if role == "id":
        entry["unique"] = True
        why.append("unique: the id column (gate ids_unique); no range, later ids may be larger.")
    elif col.type in ("int", "float") and role is None and col.n_distinct <= 1:
        why.append("No range: one value in every sample row, so a later version may well hold another.")
    elif col.type in ("int", "float") and role is None:
        low, high = col.stats.get("greater_than_or_equal_to"), col.stats.get("less_than_or_equal_to")
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
            why.append("No range: no finite value to bound.")
        else:
            lo, hi, range_why = widened_range(float(low), float(high), margin, whole=col.type == "int")
            entry["min"] = lo
            if growing:
                why.append(
                    f"Range: {range_why}; no max, as every file's values lie above the previous file's (a running "
                    "index or period: later versions go higher)."
                )
            else:
                entry["max"] = hi
                why.append(f"Range: {range_why}.")
    elif col.type in ("int", "float"):
        why.append(f"No range: the {role} column.")
    if col.type == "category":
        entry["categories"] = [str(v) for v in col.values]
    notes[f"columns.{col.name}"] = why
    return entry


def _policy(typed: Sequence[pd.DataFrame], notes: dict[str, list[str]]) -> dict[str, Any]:
    rows = [len(frame) for frame in typed]
    smallest = min(rows)
    data: dict[str, Any] = {}
    default_rows = _DEFAULT_DATA.min_rows
    if smallest < 2 * default_rows:
        min_rows = max(1, smallest // 2)
        why = (
            f"half the smallest sample file ({smallest} rows), as the default {default_rows} would refuse versions "
            "of this size"
        )
    else:
        min_rows, why = default_rows, f"the default (the smallest sample file has {smallest} rows)"
    data["min_rows"] = min_rows
    notes["policy.data.min_rows"] = [f"Gate row_count_above_floor: a version needs at least this many rows: {why}."]
    ratios = [b / a for a, b in itertools.pairwise(rows) if a]
    lo, hi = _DEFAULT_DATA.volume_ratio_bounds
    shown = ", ".join(f"{r:.2f}" for r in ratios) or "none (one file)"
    if ratios and (min(ratios) < lo or max(ratios) > hi):
        lo = min(lo, math.floor(min(ratios) * 0.8 * 100) / 100) or 0.01
        hi = max(hi, math.ceil(max(ratios) * 1.25 * 100) / 100)
        why = f"widened to hold the sample files' own ratios ({shown}) with a 25 % margin"
    else:
        why = f"the default; the sample files' ratios: {shown}"
    data["volume_ratio_bounds"] = [lo, hi]
    notes["policy.data.volume_ratio_bounds"] = [
        f"Gate volume_within_bounds: rows / rows of the previous accepted version must be within these: {why}."
    ]
    gates = _DEFAULT_GATES
    gate_data = {
        "metric_floor": gates.metric_floor,
        "max_ece": gates.max_ece,
        "max_latency_p99_ms_single": gates.max_latency_p99_ms_single,
        "max_latency_p99_ms_batch": gates.max_latency_p99_ms_batch,
    }
    notes["policy.gates.metric_floor"] = [
        "Gate metric_above_floor: the candidate's holdout ROC AUC must reach this (the default; 0.5 is chance)."
    ]
    notes["policy.gates.max_ece"] = [
        "Gate calibration_within_bound: expected calibration error less its small-sample bias (the default). Data "
        "whose positive rate moves between versions miscalibrates the latest rows: flights needs 0.15.",
    ]
    notes["policy.gates.max_latency_p99_ms_single"] = [
        "Gate latency_within_budget, in milliseconds of CPU time on one thread (not wall time), so a busy machine "
        "does not fail it (the defaults).",
        "Measured on 2 cores: gradient boosting on 57,000 rows x 12 columns 10.5 ms for one row and 15 ms for 1000 "
        "rows; a 1000-tree, 255-leaf model 12.5 ms and 99 ms. Raise these only for a much larger model.",
    ]
    rollout_rows = _DEFAULT_ROLLOUT.rollout_min_rows
    mean_rows = sum(rows) / len(rows)
    canary_versions = math.ceil(rollout_rows / _FIRST_CANARY_SHARE / mean_rows)
    notes["policy.rollout.rollout_min_rows"] = [
        "Rows a rollout phase needs before its guards decide (the default). The first model goes to production at "
        "once; later ones roll out through shadow and canary steps. At the first canary step "
        f"({_FIRST_CANARY_SHARE:.0%} of rows) "
        f"{rollout_rows} challenger rows take {rollout_rows / _FIRST_CANARY_SHARE:,.0f} labelled rows: about "
        f"{canary_versions} version(s) of {mean_rows:,.0f} rows. Lower it for small versions, at the cost of noisier "
        "guards.",
    ]
    notes["policy"] = [
        "Gate thresholds (docs/gates.md). Every setting not written here keeps its default "
        "(docs/dataset-spec.md#policy-defaults); a run may override the model gates' from the launchpad."
    ]
    return {
        "data": data,
        "gates": gate_data,
        "rollout": {"rollout_min_rows": rollout_rows},
    }


#: At most this many of the samples' latest rows go into the estimator comparison (:func:`compare_estimators`).
COMPARISON_MAX_ROWS = 50_000


#: The estimators :func:`compare_estimators` scores: the default candidate and the default baseline.
ESTIMATORS_COMPARED = ("hist_gradient_boosting", "logistic_regression")


def compare_estimators(spec: DatasetSpec, frames: Sequence[pd.DataFrame]) -> dict[str, list[float]] | None:
    """Time-ordered CV score of the two trainable estimators on sample data versions, as the gates will compare them.

    ``beats_baseline`` requires the candidate (gradient boosting by default) to beat a logistic regression trained
    on the same rows. On data where a linear model is already right, no gradient-boosting candidate ever passes, so
    :func:`infer_spec` measures both first: the spec's default pipelines
    (:func:`~mlops_assets.ml.training.build_pipeline`, default parameters, no search) scored by the spec's headline
    metric with ``TimeSeriesSplit`` folds holding both classes
    (:func:`~mlops_assets.ml.training.cv_folds_with_class_counts`, sklearn's ``cross_val_score``) on the samples'
    rows in file order (the latest :data:`COMPARISON_MAX_ROWS`).

    Args:
        spec: The inferred spec.
        frames: The sample files, typed, oldest first.

    Returns:
        Estimator name → its CV score on each fold (the same folds for both), or ``None`` when the samples cannot be
        compared (a file fails the schema, too few rows, or no fold holds both classes).
    """
    from sklearn.model_selection import cross_val_score

    from mlops_assets.ml import training

    typed = [validation.coerce_to_schema(frame, spec) for frame in frames]
    if any(frame is None for frame in typed):
        return None
    rows = pd.concat([feature_core.build_features(frame, spec) for frame in typed if frame is not None])
    rows = rows.iloc[-COMPARISON_MAX_ROWS:]
    X = feature_core.model_inputs(rows, spec)
    y = rows[feature_core.LABEL_COLUMN].to_numpy()
    try:
        folds = training.cv_folds_with_class_counts(y, spec.training.cv_folds)
    except ValueError:
        return None
    used = [(train_idx, val_idx) for train_idx, val_idx, record in folds if record["used"]]
    if not used:
        return None
    scoring = training.SCORING[spec.policy.evaluation.headline_metric]
    seed = spec.policy.evaluation.random_seed
    pipelines = {name: training.build_pipeline(spec, name, seed=seed) for name in ESTIMATORS_COMPARED}
    return {
        name: [float(v) for v in cross_val_score(pipeline, X, y, cv=used, scoring=scoring)]
        for name, pipeline in pipelines.items()
    }


def _choose_estimator(
    spec: DatasetSpec, frames: Sequence[pd.DataFrame], section: dict[str, Any], notes: dict[str, list[str]]
) -> None:
    """Set ``training.estimator`` and ``training.baseline`` in ``section`` from :func:`compare_estimators`.

    Gradient boosting stays the candidate (against the linear baseline) only when its mean CV score beats the linear
    model's by more than one standard error of their paired fold differences — the one-standard-error rule of model
    selection (Breiman et al., *Classification and Regression Trees*, 1984; Hastie, Tibshirani & Friedman, *The
    Elements of Statistical Learning*, 2nd ed., §7.10): ``beats_baseline`` asks for a lift the holdout can tell from
    noise, which a lift within the fold-to-fold noise rarely is. Otherwise the linear model is the candidate against
    the prior (``dummy``).
    """
    scores = compare_estimators(spec, frames)
    metric = spec.policy.evaluation.headline_metric
    if scores is None:
        notes["training.estimator"].append("(The samples could not be compared by cross validation: the default kept.)")
        return
    folds = len(scores["hist_gradient_boosting"])
    differences = np.subtract(scores["hist_gradient_boosting"], scores["logistic_regression"])
    boosting, linear = float(np.mean(scores["hist_gradient_boosting"])), float(np.mean(scores["logistic_regression"]))
    se = float(np.std(differences, ddof=1) / np.sqrt(folds)) if folds > 1 else 0.0
    measured = (
        f"Measured on the samples (time-ordered CV, {metric}, {folds} fold(s)): gradient boosting {boosting:.4f}, "
        f"logistic regression {linear:.4f}; lift {boosting - linear:+.4f}, standard error {se:.4f}."
    )
    if boosting - linear <= se:
        section["estimator"] = "logistic_regression"
        section["baseline"] = "dummy"
        notes["training.estimator"] = [
            f"{measured} Gradient boosting is not better by more than one standard error (the simpler model is kept: "
            "the one-standard-error rule), so the linear model is the candidate; set hist_gradient_boosting to tune "
            "gradient boosting instead."
        ]
        notes["training.baseline"] = [
            "Gate beats_baseline: the candidate must beat this model trained on the same rows, by a lift the holdout "
            "can tell from noise (95% interval). dummy (the prior rate), "
            "because the candidate is already the linear model."
        ]
    else:
        notes["training.estimator"].insert(0, measured)


def _training(notes: dict[str, list[str]]) -> dict[str, Any]:
    t = _DEFAULT_TRAINING
    notes["training"] = ["How candidates are trained (the defaults, written out)."]
    notes["training.estimator"] = [
        "hist_gradient_boosting, tuned by a small time-ordered CV search (training.search); or logistic_regression."
    ]
    notes["training.baseline"] = [
        "Gate beats_baseline: the candidate must beat this model trained on the same rows, by a lift the holdout can "
        "tell from noise (95% interval). logistic_regression by "
        "default; if a linear model is already right for your data, set baseline: dummy (the prior rate) or "
        "estimator: logistic_regression, or no gradient-boosting candidate is ever promoted."
    ]
    notes["training.window"] = ["Train on the last `window` accepted data versions."]
    notes["training.cv_folds"] = ["Folds of the time-ordered cross validation of the search."]
    return {"estimator": t.estimator, "baseline": t.baseline, "window": t.window, "cv_folds": t.cv_folds}


# --------------------------------------------------------------------------------------------------
# Checking files against a spec
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailureCase:
    """One failure of one gate on one file: a (column, rule) group with every failing value.

    Attributes:
        file: The file's name.
        gate: The gate (``schema_valid``, ``label_in_domain`` ...).
        column: The column concerned, ``None`` for a rule on the whole file.
        rule: The rule broken (pandera's check name such as ``in_range(0, 10)``, ``coerce_dtype('int64')``,
            ``not_nullable``, ``column_in_dataframe``; else the gate's name).
        count: How many cells (or rows, ids) fail.
        values: The distinct failing values, most frequent first: ``(value, count, rows)`` with the 1-based data
            rows (the header is not a row) where the file has them, at most 5 per value.
        message: The gate's message (what the gate says in the UI).
        listed_all: Whether ``values`` lists every distinct failing value (the gate's evidence caps some lists).
    """

    file: str
    gate: str
    column: str | None
    rule: str
    count: int
    values: tuple[tuple[Any, int, tuple[int, ...]], ...] = ()
    message: str = ""
    listed_all: bool = True


@dataclass(frozen=True)
class FileCheck:
    """The data gates of one file.

    Attributes:
        file: The file's path as given.
        rows: Its row count (``None`` when it could not be read).
        gates: Every gate's result, in the order the product runs them.
        failures: Every failure case.
        error: Why the file could not be read (``DataFileError``: file, rule), else ``None``.
        extra_columns: Columns of the file the spec does not declare (allowed, reported).
    """

    file: str
    rows: int | None
    gates: tuple[GateResult, ...] = ()
    failures: tuple[FailureCase, ...] = ()
    error: str | None = None
    extra_columns: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.error is None and all(g.passed for g in self.gates)


@dataclass(frozen=True)
class CheckReport:
    """The outcome of :func:`check_files`: one :class:`FileCheck` per file, in the order given."""

    spec: DatasetSpec
    files: tuple[FileCheck, ...]

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.files)

    @property
    def failures(self) -> tuple[FailureCase, ...]:
        return tuple(c for f in self.files for c in f.failures)


def _value_groups(values: pd.Series, rows: pd.Series) -> tuple[tuple[Any, int, tuple[int, ...]], ...]:
    """Distinct failing values with their counts and first rows, most frequent first (missing values as None)."""
    keys = [validation.to_jsonable(v) for v in values]
    frame = pd.DataFrame({"key": [repr(k) for k in keys], "value": pd.Series(keys, dtype=object), "row": list(rows)})
    out = []
    for _, part in frame.groupby("key", sort=False, dropna=False):
        found = [int(r) + 1 for r in part["row"] if r is not None and not pd.isna(r)]
        out.append((part["value"].iloc[0], len(part), tuple(sorted(found)[:5])))
    return tuple(sorted(out, key=lambda item: (-item[1], repr(item[0]))))


def _schema_failures(frame: pd.DataFrame, spec: DatasetSpec, source: str, message: str) -> list[FailureCase]:
    try:
        build_schema(spec).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        # The gate's own normalisation of pandera's failure cases (missing columns, coercion follow-ons).
        cases = validation.failure_frame(exc.failure_cases)
    else:  # pragma: no cover - the gate failed, so the schema does
        return []
    order = {name: i for i, name in enumerate(spec.column_names)}
    out = []
    for (column, check), part in cases.groupby(["column", "check"], sort=False, dropna=False):
        missing = check == "column_in_dataframe"
        out.append(
            FailureCase(
                file=source,
                gate="schema_valid",
                column=None if column is None or (isinstance(column, float) and math.isnan(column)) else str(column),
                rule="missing column" if missing else str(check),
                count=len(part),
                values=() if missing else _value_groups(part["failure_case"], part["index"]),
                message=message,
            )
        )
    return sorted(out, key=lambda c: (order.get(c.column or "", len(order)), c.rule))


def _gate_failures(gate: GateResult, spec: DatasetSpec, source: str) -> list[FailureCase]:
    """The failure cases of a failed gate other than schema_valid, from its evidence."""
    ev = gate.evidence

    def case(
        column: str | None,
        rule: str,
        count: int,
        values: Sequence[tuple[Any, int, tuple[int, ...]]] = (),
        listed_all: bool = True,
    ) -> FailureCase:
        return FailureCase(source, gate.name, column, rule, count, tuple(values), gate.message, listed_all)

    if gate.name == "label_in_domain":
        out = []
        bad = [(v["value"], int(v["count"]), ()) for v in ev.get("out_of_domain_values", [])]
        if ev.get("n_out_of_domain"):
            out.append(
                case(
                    column=spec.label.column,
                    rule=f"value in {list(spec.label.values)}",
                    count=int(ev["n_out_of_domain"]),
                    values=tuple(bad),
                    listed_all=len(bad) < validation.MAX_LABEL_VALUES,
                )
            )
        if ev.get("n_null"):
            out.append(case(column=spec.label.column, rule="not_nullable", count=int(ev["n_null"])))
        if "missing_column" in ev:
            out.append(case(column=spec.label.column, rule="missing column", count=1))
        return out
    if gate.name == "ids_unique":
        out = []
        dups = [(d["id"], int(d["count"]), ()) for d in ev.get("duplicate_ids", [])]
        if ev.get("n_duplicate_rows"):
            out.append(
                case(
                    column=spec.id_column,
                    rule="unique",
                    count=int(ev["n_duplicated_ids"]),
                    values=tuple(dups),
                    listed_all=len(dups) >= int(ev["n_duplicated_ids"]),
                )
            )
        if ev.get("n_null"):
            out.append(case(column=spec.id_column, rule="not_nullable", count=int(ev["n_null"])))
        if "missing_column" in ev:
            out.append(case(column=spec.id_column, rule="missing column", count=1))
        return out
    if gate.name == "ids_unique_across_versions" and ev.get("n_reused"):
        reused = [(f"{r['id']} (from {r['data_version']})", 1, ()) for r in ev.get("reused_ids", [])]
        return [
            case(
                column=spec.id_column,
                rule="unique across versions",
                count=int(ev["n_reused"]),
                values=tuple(reused),
                listed_all=len(reused) >= int(ev["n_reused"]),
            )
        ]
    if gate.name == "features_finite":
        return [
            case(
                column=c["column"],
                rule="finite" + ("" if c["nullable"] else " and not missing"),
                count=int(c["n_inf"]) + (0 if c["nullable"] else int(c["n_nan"])),
            )
            for c in ev.get("columns", [])
        ]
    if gate.name == "features_allowlisted":
        return [case(column=str(c), rule="allowlisted, not forbidden", count=1) for c in ev.get("leaking_columns", [])]
    observed = gate.observed if isinstance(gate.observed, int | float) and not isinstance(gate.observed, bool) else 1
    return [case(column=None, rule=f"{gate.name}: {gate.condition}", count=int(observed) if observed else 1)]


def check_files(spec: DatasetSpec, paths: Sequence[Path | str]) -> CheckReport:
    """Run the product's data gates on files, in the order given, as successive data versions of ``spec``.

    Per file: reading (:func:`~mlops_assets.ml.validation.read_data_file`; an unreadable file is one failure,
    naming the rule), the four file gates of :func:`~mlops_assets.ml.validation.validate_raw`,
    ``volume_within_bounds`` against the previous accepted file, ``ids_unique_across_versions`` against the ids
    of every earlier accepted file, and, when the file gates passed, the ``features`` gates ``features_allowlisted``
    and ``features_finite`` on :func:`~mlops_assets.ml.features.build_features`. A file is accepted when all pass,
    as a data version is. Every schema failure case is kept (not only the 200 the gate's evidence lists).

    Args:
        spec: The dataset spec.
        paths: The files, oldest first.

    Returns:
        The report; :attr:`CheckReport.passed` is true when every file passed every gate.
    """
    results: list[FileCheck] = []
    accepted: list[tuple[str, int, pd.Series]] = []
    skipped: list[dict[str, str]] = []
    for given in paths:
        path = Path(given)
        source = path.name
        try:
            frame = validation.read_data_file(path, spec)
        except validation.DataFileError as exc:
            case = FailureCase(source, "raw_data", exc.column, exc.rule, 1, message=str(exc))
            results.append(FileCheck(str(given), None, failures=(case,), error=str(exc)))
            skipped.append({"data_version": source, "reason": f"unreadable ({exc.rule})"})
            continue
        raw = validation.validate_raw(frame, spec, source)
        typed = raw.typed if raw.typed is not None else frame
        previous = (accepted[-1][0], accepted[-1][1]) if accepted else None
        gates = list(raw.gates)
        gates.append(
            validation.gate_volume_within_bounds(
                len(frame), previous, spec.policy.data, source, list(reversed(skipped))
            )
        )
        gates.append(
            validation.gate_ids_unique_across_versions(typed, spec, source, {name: ids for name, _, ids in accepted})
        )
        if raw.typed is not None and raw.passed:
            try:
                built = feature_core.build_features(raw.typed, spec)
            except ValueError as exc:
                gates.append(GateResult("features", False, "the features can be built", f"{source}: {exc}"))
            else:
                gates.append(feature_core.gate_features_allowlisted(built, spec))
                gates.append(feature_core.gate_features_finite(built, spec, source))
        failures: list[FailureCase] = []
        for gate in gates:
            if gate.passed:
                continue
            if gate.name == "schema_valid":
                failures.extend(_schema_failures(frame, spec, source, gate.message))
            else:
                failures.extend(_gate_failures(gate, spec, source))
        extra = tuple(str(c) for c in frame.columns if c not in spec.column_names)
        check = FileCheck(str(given), len(frame), tuple(gates), tuple(failures), None, extra)
        results.append(check)
        if check.passed:
            accepted.append((source, len(frame), typed[spec.id_column]))
            skipped = []
        else:
            failed = ", ".join(g.name for g in gates if not g.passed)
            skipped.append({"data_version": source, "reason": f"{failed} failed"})
    return CheckReport(spec=spec, files=tuple(results))
