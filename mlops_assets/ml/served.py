"""Served traffic as data versions: a closed prediction-log segment of ``mlops-serve`` → a data file, its log, skew.

Pure core (no Dagster, no file writes). The segment layout is :mod:`mlops_assets.ml.serving_contract`'s: the log fields,
then ``record.<column>`` (the request's fields, typed by the spec), then ``feature.<column>`` (exactly the values
handed to ``predict_proba``), one row per (scored row, model).

* :func:`data_file_of_segment` — the served rows as the data file the landing path accepts (the spec's id column
  from ``row_id``, every other column but the label from ``record.<column>``); :func:`data_file_bytes` its Parquet
  bytes, the same bytes for the same segment, so landing a segment twice lands one data version.
* :func:`served_log` / :func:`served_metadata` — the prediction log of the landed version and its ``predictions``
  metadata: what was served, as it was served (never a re-scoring).
* :func:`sample_requests` / :func:`skew` — training–serving skew: the logged model inputs of a seeded sample of
  whole requests against the batch path's model inputs of the same rows, and the logged scores against the scores
  the logged model versions give the batch path's inputs, request by request.
"""

import io
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.pipeline import Pipeline

from mlops_assets.ml import features as features_core
from mlops_assets.ml.routing import CHALLENGER_ARM, CHAMPION_ARM
from mlops_assets.ml.schema import typed_column
from mlops_assets.ml.scoring import LOG_COLUMNS
from mlops_assets.ml.serving_contract import (
    FEATURE_PREFIX,
    RECORD_PREFIX,
    SEGMENT_SUFFIX,
    is_segment_id,
)
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.training import positive_scores
from mlops_assets.ml.versions import SEPARATOR, SUPPORTED_SUFFIXES

#: ``source`` metadata of a ``predictions`` materialization made from served traffic.
SERVED_SOURCE = "served traffic"
#: The rule the skew check names when it fails.
SKEW_RULE = "served model inputs and scores equal the batch path's (exact; NaN equals NaN)"


def record_fields(spec: DatasetSpec) -> list[str]:
    """The request fields of ``spec`` in spec order: every column but the id and the label."""
    return [c.name for c in spec.columns if c.name not in (spec.id_column, spec.label.column)]


def segment_id_of_version(version_key: str) -> str | None:
    """The segment id a data version was landed from (its file stem), or None for a batch version.

    ``served-20261201T031500123456Z-0a1b2c3d__1a2b3c4d5e6f`` → ``served-20261201T031500123456Z-0a1b2c3d``.
    """
    stem, sep, _ = version_key.rpartition(SEPARATOR)
    return stem if sep and is_segment_id(stem) else None


def segment_id_of_name(file_name: str) -> str | None:
    """The segment id of a closed segment's file name (``<segment id>.parquet``), None for any other name."""
    if not file_name.endswith(SEGMENT_SUFFIX):
        return None
    stem = file_name[: -len(SEGMENT_SUFFIX)]
    return stem if is_segment_id(stem) else None


def landed_segment_ids(landing_names: Iterable[str], registered_keys: Iterable[str]) -> set[str]:
    """Segment ids already landed: a data file named after one in the landing zone, or a registered data version
    whose key's stem is one (the file may have been removed from the landing zone since)."""
    landed: set[str] = set()
    for name in landing_names:
        stem, dot, suffix = name.rpartition(".")
        if dot and f".{suffix.lower()}" in SUPPORTED_SUFFIXES and is_segment_id(stem):
            landed.add(stem)
    landed.update(s for s in map(segment_id_of_version, registered_keys) if s is not None)
    return landed


def segments_to_land(serving_names: Iterable[str], landed: Collection[str]) -> list[str]:
    """The closed segments (ids, oldest first) of a model's serving folder listing not landed yet.

    Args:
        serving_names: File names in the model's serving folder (``<segment id>.parquet``; others are ignored).
        landed: Segment ids already landed (:func:`landed_segment_ids`, plus the sensor's pending ones).
    """
    ids = {s for s in map(segment_id_of_name, serving_names) if s is not None}
    return sorted(ids - set(landed))


def _served_rows(segment: pd.DataFrame) -> pd.DataFrame:
    return segment[segment["served"].astype(bool).to_numpy()]


def data_file_of_segment(segment: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The data file of a served segment: one row per served row (``served == True``), in logged order.

    The spec's id column is the segment's ``row_id``; every other spec column but the label is its
    ``record.<column>`` (typed as the data schema types it: ``int`` columns stay integers when the segment was read
    with missing values as floats). No label column: a data version landed from served traffic is unlabelled, and its
    labels arrive later by row id (:mod:`mlops_assets.ml.labels`).

    Args:
        segment: A closed segment's rows (columns of :func:`mlops_assets.ml.serving_contract.segment_columns`).
        spec: The model's dataset spec.

    Returns:
        A frame with the spec's columns but the label, in spec order, and a fresh RangeIndex.

    Raises:
        ValueError: the segment lacks ``row_id``/``served`` or a ``record.<column>`` of the spec (it was served
            under a spec with other columns); the message names them.
    """
    fields = record_fields(spec)
    missing = [c for c in ("row_id", "served", *map(lambda f: f"{RECORD_PREFIX}{f}", fields)) if c not in segment]
    if missing:
        raise ValueError(
            f"the segment lacks column(s) {', '.join(missing)} of spec {spec.name!r} (served under another spec?)"
        )
    served = _served_rows(segment).reset_index(drop=True)
    data: dict[str, pd.Series] = {}
    for column in spec.columns:
        if column.name == spec.label.column:
            continue
        values = served["row_id"] if column.name == spec.id_column else served[f"{RECORD_PREFIX}{column.name}"]
        data[column.name] = typed_column(values.rename(column.name), column)
    return pd.DataFrame(data)


def data_file_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as Parquet bytes (pyarrow, no index, Snappy): the same frame gives the same bytes, so re-landing a
    segment lands the same data version key (the key is the content's sha256)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def served_log(segment: pd.DataFrame, version_key: str) -> pd.DataFrame:
    """The prediction log of a data version landed from ``segment``: what was served, as it was served.

    Columns :data:`mlops_assets.ml.scoring.LOG_COLUMNS`, dtypes as the batch log's: ``data_version`` is the
    version key, ``row_id`` the row id as text (as the batch log and the labels stream have it), ``prediction_id``
    as logged (made from the segment id), ``model_version``/``arm``/``served``/``score``/``feature_hash``/``scored_at``
    as logged. Champion rows first, then challenger rows, each in logged order (the batch log's layout).

    Args:
        segment: A closed segment's rows.
        version_key: The landed data version's key.
    """
    if segment.empty:
        return pd.DataFrame(columns=list(LOG_COLUMNS))
    n = len(segment)
    log = pd.DataFrame(
        {
            "prediction_id": segment["prediction_id"].astype(str).to_numpy(),
            "data_version": pd.Series([version_key] * n, dtype=str).to_numpy(),
            "row_id": segment["row_id"].astype(str).to_numpy(),
            "model_version": segment["model_version"].to_numpy(dtype=np.int64),
            "arm": segment["arm"].astype(str).to_numpy(),
            "served": segment["served"].to_numpy(dtype=bool),
            "score": segment["score"].to_numpy(dtype=np.float64),
            "feature_hash": segment["feature_hash"].astype(str).to_numpy(),
            "scored_at": pd.to_datetime(segment["scored_at"], utc=True).reset_index(drop=True),
        }
    )
    order = {CHAMPION_ARM: 0, CHALLENGER_ARM: 1}
    rank = log["arm"].map(order).fillna(2)
    return log.iloc[np.argsort(rank.to_numpy(), kind="stable")].reset_index(drop=True)[list(LOG_COLUMNS)]


def _version(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip().lstrip("v")
    return int(text) if text.isdigit() and int(text) > 0 else None


def _arm_version(segment: pd.DataFrame, arm: str) -> int | None:
    versions = segment.loc[segment["arm"].astype(str) == arm, "model_version"]
    return int(versions.iloc[0]) if len(versions) else None


def served_metadata(segment: pd.DataFrame, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The ``predictions`` metadata of a served version, with the keys :func:`~mlops_assets.ml.scoring.
    score_data_version` writes (so the rollout evidence, the A/B test and the UI read both alike).

    Champion and challenger versions come from the segment's metadata (``champion_version``,
    ``challenger_version``; missing: the versions of the logged arms), ``rollout_phase`` and ``challenger_share``
    from its ``phase`` and ``challenger_share``, ``scored_at`` is the first logged ``scored_at`` (ISO 8601, UTC),
    ``scored_rows`` the served rows (one per request row), ``served_by_arm`` (a dict) and ``mean_served_score`` from
    the served rows.

    Args:
        segment: A closed segment's rows (at least one).
        metadata: The segment's metadata (:func:`mlops_assets.serving.segments.read_segment`).
    """
    champion = _version(metadata.get("champion_version")) or _arm_version(segment, CHAMPION_ARM)
    challenger = _version(metadata.get("challenger_version")) or _arm_version(segment, CHALLENGER_ARM)
    served = _served_rows(segment)
    by_arm = served.groupby(served["arm"].astype(str))["score"].agg(["size", "mean"])
    share = metadata.get("challenger_share")
    first = pd.to_datetime(segment["scored_at"], utc=True).min()
    return {
        "champion": f"v{champion}" if champion else "none",
        "champion_version": champion or 0,
        "challenger": f"v{challenger}" if challenger else "none",
        "challenger_version": challenger or 0,
        "rollout_phase": str(metadata.get("phase") or "none"),
        "challenger_share": float(share) if share not in (None, "") else 0.0,
        "scored_at": first.isoformat() if not pd.isna(first) else "",
        "scored_rows": len(served),
        "dagster/row_count": len(segment),
        "served_by_arm": {str(a): int(r["size"]) for a, r in by_arm.iterrows()},
        "mean_served_score": float(served["score"].mean()) if len(served) else 0.0,
    }


def sample_requests(segment: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
    """A seeded sample of whole requests of ``segment``: requests drawn in a random order (numpy's PCG64 seeded with
    ``seed``) until their rows reach ``n_rows``; all their log rows (every arm), in logged order.

    A request is never split, so the sample can exceed ``n_rows`` by less than one request's rows; a segment with
    fewer rows is taken whole.

    Raises:
        ValueError: ``n_rows`` < 1.
    """
    if n_rows < 1:
        raise ValueError(f"a skew sample has at least one row, not {n_rows}")
    served = _served_rows(segment)
    sizes = served.groupby(served["request_id"].astype(str), sort=False).size()
    order = np.random.default_rng(seed).permutation(len(sizes))
    counts = sizes.to_numpy()[order]
    take = int(np.searchsorted(np.cumsum(counts), n_rows) + 1)
    chosen = set(sizes.index[order[:take]])
    return segment[segment["request_id"].astype(str).isin(chosen).to_numpy()]


@dataclass(frozen=True)
class ColumnSkew:
    """One model input whose served values differ from the batch path's.

    Attributes:
        column: The model input.
        differing_rows: Sampled rows where they differ.
        row_id: One such row's id (text).
        served: Its logged (served) value; None when missing.
        batch: Its batch-path value; None when missing.
    """

    column: str
    differing_rows: int
    row_id: str
    served: Any
    batch: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "differing_rows": self.differing_rows,
            "example_row_id": self.row_id,
            "served": self.served,
            "batch": self.batch,
        }


@dataclass(frozen=True)
class SkewResult:
    """Training–serving skew of one served data version's sample (:func:`skew`).

    Attributes:
        rows: Sampled rows (served rows: one per request row).
        requests: Sampled requests.
        columns: The model inputs compared, in order.
        differing: The inputs that differ (empty: none).
        missing_rows: Sampled row ids not found in the batch path's features (their inputs cannot be compared).
        scores_compared: Logged scores compared (every arm's row).
        max_abs_score_diff: max |logged score − re-scored| (0.0 exactly when every score matches; ``inf`` when a
            row could not be re-scored).
        worst: The row with the largest score difference: ``row_id``, ``model_version``, ``served`` (logged) and
            ``batch`` (re-scored) score; None when nothing was compared.
    """

    rows: int
    requests: int
    columns: tuple[str, ...]
    differing: tuple[ColumnSkew, ...]
    missing_rows: int
    scores_compared: int
    max_abs_score_diff: float
    worst: dict[str, Any] | None = field(default=None)
    missing_example: str | None = None

    @property
    def passed(self) -> bool:
        """No input differs, every sampled row was found, and every logged score equals its re-score exactly."""
        return not self.differing and not self.missing_rows and self.max_abs_score_diff == 0.0

    def reading(self) -> str:
        """The verdict in one line, naming every differing column with an example row and both values."""
        where = f"{self.rows} row(s) of {self.requests} request(s)"
        if self.passed:
            return (
                f"no skew on {where}: {len(self.columns)} model inputs equal the batch path's and "
                f"{self.scores_compared} logged scores equal their re-scores"
            )
        parts = [
            f"{c.column} differs on {c.differing_rows} row(s), e.g. row {c.row_id}: served {c.served!r}, "
            f"batch {c.batch!r}"
            for c in self.differing
        ]
        if self.missing_rows:
            parts.append(f"{self.missing_rows} row(s) not in the batch features, e.g. row {self.missing_example}")
        if self.max_abs_score_diff != 0.0 and self.worst is not None:
            parts.append(
                f"scores differ: max |diff| {self.max_abs_score_diff:.3g} (row {self.worst['row_id']}, "
                f"v{self.worst['model_version']}: served {self.worst['served']!r}, batch {self.worst['batch']!r})"
            )
        return f"skew on {where}: " + "; ".join(parts) + f" (rule: {SKEW_RULE})"


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float | np.floating) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _differs(served: pd.Series, batch: pd.Series, numeric: bool) -> np.ndarray:
    """Per row: whether the served and the batch value differ (exact; missing equals missing)."""
    if numeric:
        try:
            a = served.to_numpy(dtype=np.float64, na_value=np.nan)
            b = batch.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):  # text on one side: every row differs in type
            return np.ones(len(served), dtype=bool)
        return ~((a == b) | (np.isnan(a) & np.isnan(b)))
    a_missing, b_missing = served.isna().to_numpy(), batch.isna().to_numpy()
    same = np.asarray(
        [
            x == y and type(x) is type(y)
            for x, y in zip(served.astype(object).to_numpy(), batch.astype(object).to_numpy(), strict=True)
        ],
        dtype=bool,
    )
    return ~((a_missing & b_missing) | (~a_missing & ~b_missing & same))


def _column_skew(name: str, differ: np.ndarray, served: pd.Series, batch: pd.Series, row_ids: pd.Series) -> ColumnSkew:
    first = int(np.flatnonzero(differ)[0])
    return ColumnSkew(
        column=name,
        differing_rows=int(differ.sum()),
        row_id=str(row_ids.iloc[first]),
        served=_plain(served.iloc[first]),
        batch=_plain(batch.iloc[first]),
    )


def _score_diffs(logged: np.ndarray, rescored: np.ndarray) -> np.ndarray:
    """|logged − rescored| per row; NaN on one side only is ``inf``, on both 0."""
    diff = np.abs(logged - rescored)
    one_sided = np.isnan(diff) & ~(np.isnan(logged) & np.isnan(rescored))
    diff[one_sided] = np.inf
    diff[np.isnan(diff)] = 0.0
    return diff


def skew(
    sample: pd.DataFrame,
    features_df: pd.DataFrame,
    spec: DatasetSpec,
    models: Mapping[int, Pipeline],
) -> SkewResult:
    """Compare what was served with what the batch path makes of the same rows.

    Inputs: the logged ``feature.<column>`` values of the sample's served rows against
    :func:`mlops_assets.ml.features.model_inputs` of the same rows of the version's features (by id), column by
    column, exactly (NaN equals NaN; a text value equals only the same text).

    Scores: every logged row (each arm) against the score its logged model version gives the batch path's inputs.
    Each model first re-scores all its sampled rows in one call (the batch path's own shape); a row whose score then
    differs although its inputs are equal is re-scored again request by request — the request's rows of that model
    in logged order, the batch shape it was served in — and that difference counts (so a score that depends on the
    batch shape is not called skew, and the common case costs one call per model, not one per request). A row whose
    inputs differ keeps the one-call difference (its inputs are the skew already).

    Args:
        sample: Segment rows of whole requests (:func:`sample_requests`).
        features_df: The data version's features (the batch path: ``features`` asset).
        spec: The dataset spec.
        models: Model version → pipeline, for every ``model_version`` in ``sample`` (loaded from the registry's
            verified artifacts).

    Returns:
        The result; :attr:`SkewResult.passed` iff no input differs, every row was found and max |score diff| == 0.

    Raises:
        ValueError: a logged model version has no pipeline in ``models``, or the sample lacks a ``feature.``
            column of the spec.
    """
    columns = features_core.feature_columns(spec)
    lacking = [c for c in columns if f"{FEATURE_PREFIX}{c}" not in sample]
    if lacking:
        raise ValueError(f"the segment lacks logged model input(s) {', '.join(lacking)} of spec {spec.name!r}")
    unknown = sorted(set(sample["model_version"].astype(int)) - set(models))
    if unknown:
        raise ValueError(f"no model to re-score with for logged version(s) {unknown}")

    # Inputs: the served rows (one per request row) against the batch path's rows of the same ids.
    served = _served_rows(sample).reset_index(drop=True)
    by_id = features_df.set_index(features_df[spec.id_column].astype(str), drop=False)
    ids = served["row_id"].astype(str)
    found = ids.isin(by_id.index).to_numpy()
    found_ids = ids[found].reset_index(drop=True)
    batch_inputs = features_core.model_inputs(by_id.reindex(pd.Index(found_ids)), spec)
    batch_inputs.index = pd.Index(found_ids)
    logged = served.loc[found].reset_index(drop=True)
    differing = []
    skewed_ids: set[str] = set()
    numeric = set(spec.numeric_features)
    for name in columns:
        served_values = logged[f"{FEATURE_PREFIX}{name}"]
        batch_values = batch_inputs[name].reset_index(drop=True)
        differ = _differs(served_values, batch_values, name in numeric)
        if differ.any():
            differing.append(_column_skew(name, differ, served_values, batch_values, found_ids))
            skewed_ids.update(found_ids[differ])

    # Scores: one call per model version, then the served shape for rows whose equal inputs scored differently.
    rows = sample.assign(_id=sample["row_id"].astype(str).to_numpy(), _request=sample["request_id"].astype(str))
    rows = rows[rows["_id"].isin(batch_inputs.index).to_numpy()].reset_index(drop=True)
    versions = rows["model_version"].astype(int).to_numpy()
    logged_scores = rows["score"].to_numpy(dtype=np.float64)
    rescored = np.full(len(rows), np.nan)
    for version in np.unique(versions):
        at = np.flatnonzero(versions == version)
        rescored[at] = positive_scores(models[int(version)], batch_inputs.loc[rows["_id"].to_numpy()[at]])
    diffs = _score_diffs(logged_scores, rescored)
    again = (diffs != 0) & ~rows["_id"].isin(skewed_ids).to_numpy()
    for (_, version), group in rows[again].groupby(["_request", versions[again]], sort=False):
        request = np.flatnonzero((rows["_request"] == group["_request"].iloc[0]).to_numpy() & (versions == version))
        shaped = positive_scores(models[int(version)], batch_inputs.loc[rows["_id"].to_numpy()[request]])
        rescored[request] = shaped
        diffs[request] = _score_diffs(logged_scores[request], shaped)
    worst = None
    if len(rows):
        top = int(np.argmax(diffs))
        worst = {
            "row_id": str(rows["_id"].iloc[top]),
            "model_version": int(versions[top]),
            "served": float(logged_scores[top]),
            "batch": float(rescored[top]),
        }
    return SkewResult(
        rows=len(served),
        requests=int(served["request_id"].astype(str).nunique()),
        columns=tuple(columns),
        differing=tuple(differing),
        missing_rows=int((~found).sum()),
        scores_compared=len(rows),
        max_abs_score_diff=float(diffs.max()) if len(rows) else 0.0,
        worst=worst,
        missing_example=str(ids[~found].iloc[0]) if (~found).any() else None,
    )
