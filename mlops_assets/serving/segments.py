"""The prediction log of ``mlops-serve``: rolling Parquet segments written through an Arrow IPC write-ahead file.

Layout and columns: :mod:`mlops_assets.ml.serving_contract`. A :class:`SegmentWriter` keeps one **open** segment, a
write-ahead file ``<wal dir>/<segment id>.arrows`` (an Arrow IPC stream whose schema metadata holds the segment's
metadata). Request threads :meth:`~SegmentWriter.append` record batches (:func:`log_batch`) to an in-memory queue;
a background thread writes the queue to the write-ahead file every ``flush_interval_seconds`` (one record batch per
segment per tick, written straight to the OS: a row whose tick has passed survives a SIGKILL of the server) and
rotates the segment when it is big enough, or old enough and holding ``min_served_rows`` served rows. **Closing** a
segment reads its complete record batches, writes one Parquet file (the metadata under the key-value metadata key
:data:`SEGMENT_METADATA_KEY`), hands it to the sink (the ``serving_log`` zone: ``put`` places it atomically) and
deletes the write-ahead file; when the sink fails, the write-ahead file stays and is closed by a later attempt or by
:func:`recover`. Only closed segments ever reach the sink.

A live writer holds an exclusive ``flock`` on each write-ahead file it writes, so :func:`recover` (run by a
starting server, possibly next to live ones sharing the folder) closes only the files of dead writers.

A batch carries its segment id (``data_version`` column and prediction ids). After a rotation the old segment
stays open for ``drain_seconds`` so that requests stamped with its id before the rotation still land in it; a
batch arriving for a segment already closed is re-stamped into the open one (its ``data_version`` and
``prediction_id`` recomputed; counted in :meth:`SegmentWriter.stats` as ``rows_restamped``).
"""

import fcntl
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlops_assets.ml.scoring import prediction_ids
from mlops_assets.ml.serving_contract import (
    LOG_FIELDS,
    SEGMENT_SUFFIX,
    WAL_SUFFIX,
    feature_column,
    is_segment_id,
    new_segment_id,
    record_column,
    segment_columns,
)
from mlops_assets.ml.spec import CATEGORICAL_TYPES
from mlops_assets.serving.signature import RequestField, Signature

logger = logging.getLogger(__name__)

#: The Parquet (and write-ahead stream) schema metadata key holding a segment's metadata as JSON (an object of
#: text values, with the segment id under ``"segment_id"``).
SEGMENT_METADATA_KEY = b"mlops.segment"
#: Seconds between retries of segment closes that failed (the sink was down).
RETRY_SECONDS = 5.0
#: The metadata key of the segment id (reserved: :meth:`SegmentWriter.open` refuses metadata that sets it).
SEGMENT_ID_KEY = "segment_id"

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_LOG_TYPES: dict[str, pa.DataType] = {
    "request_id": pa.string(),
    "data_version": pa.string(),
    "prediction_id": pa.string(),
    "model_version": pa.int64(),
    "arm": pa.string(),
    "served": pa.bool_(),
    "score": pa.float64(),
    "decision": pa.int64(),
    "feature_hash": pa.string(),
    "scored_at": _TIMESTAMP,
    "latency_ms": pa.float64(),
}
_RECORD_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "category": pa.string(),
    "datetime": _TIMESTAMP,
}


class SegmentSink(Protocol):
    """Where closed segments go: ``LandingZone.put`` / ``S3LandingZone.put`` of the ``serving_log`` zone."""

    def put(self, name: str, source: Path) -> str:
        """Place the local file ``source`` as ``name``, atomically; return its URI."""
        ...


class SegmentLockedError(RuntimeError):
    """The write-ahead file is held by a live writer (another process, or another segment of this one)."""


@dataclass(frozen=True)
class ScoredArm:
    """One model's scores of a request's ``n`` rows.

    Attributes:
        model_version: The registered model version.
        arm: ``"champion"`` or ``"challenger"``.
        served: Shape ``(n,)`` bool: this arm's score is the one returned for the row.
        scores: Shape ``(n,)`` float64: probability of the positive class.
        decisions: Shape ``(n,)`` int64: 1 when the score is at or above the decision threshold, else 0.
    """

    model_version: int
    arm: str
    served: np.ndarray
    scores: np.ndarray
    decisions: np.ndarray


def _record_type(f: RequestField) -> pa.DataType:
    return _RECORD_TYPES[f.type]


def segment_schema(sig: Signature) -> pa.Schema:
    """The Arrow schema of a model's segments, in :func:`~mlops_assets.ml.serving_contract.segment_columns` order.

    Args:
        sig: The model's signature.

    Returns:
        The log fields (types as commented in :data:`mlops_assets.ml.serving_contract.LOG_FIELDS`; ``row_id`` int64 for
        an ``int`` id column, else string; not nullable), then ``record.<field>`` (int64, float64, bool, string or
        timestamp[us, UTC], nullable) and ``feature.<input>`` (float64 for numeric inputs, string for categorical
        ones, nullable).
    """
    kinds = {f.name: f for f in sig.fields}
    fields: list[pa.Field] = []
    for name in LOG_FIELDS:
        if name == "row_id":
            fields.append(pa.field(name, pa.int64() if sig.id_kind == "int" else pa.string(), nullable=False))
        else:
            fields.append(pa.field(name, _LOG_TYPES[name], nullable=False))
    fields.extend(pa.field(record_column(f.name), _record_type(f)) for f in sig.fields)
    for name in sig.feature_names:
        categorical = kinds[name].type in CATEGORICAL_TYPES
        fields.append(pa.field(feature_column(name), pa.string() if categorical else pa.float64()))
    schema = pa.schema(fields)
    assert schema.names == segment_columns(sig.field_names, sig.feature_names)
    return schema


#: Up to this many rows, prediction ids are hashed row by row here (the same text and digest as
#: :func:`mlops_assets.ml.scoring.prediction_ids`, without building a pandas Series per request).
_SMALL_REQUEST = 64


def _prediction_ids(segment_id: str, id_texts: list[str], model_version: int) -> pa.Array:
    if len(id_texts) <= _SMALL_REQUEST:
        return pa.array(
            [hashlib.sha256(f"{segment_id}:{t}:{model_version}".encode()).hexdigest()[:32] for t in id_texts],
            type=pa.string(),
        )
    return prediction_ids(segment_id, pd.Series(id_texts, dtype=object), model_version).cast(pa.string())


def _record_struct(sig: Signature, schema: pa.Schema, records: list[dict[str, Any]]) -> pa.StructArray:
    """The records as one struct array (one conversion for every field); datetimes floored to microseconds."""
    struct = pa.struct([pa.field(f.name, schema.field(record_column(f.name)).type) for f in sig.fields])
    stamps = [f.name for f in sig.fields if f.type == "datetime"]
    if stamps:
        records = [
            {**r, **{name: None if r[name] is None else pd.Timestamp(r[name]).value // 1000 for name in stamps}}
            for r in records
        ]
    return pa.array(records, type=struct)


def log_batch(
    sig: Signature,
    schema: pa.Schema,
    *,
    segment_id: str,
    request_id: str,
    row_ids: Sequence[Any],
    records: list[dict[str, Any]],
    inputs: pd.DataFrame,
    feature_hashes: Sequence[str] | pa.Array,
    scored: Sequence[ScoredArm],
    scored_at: datetime,
    latency_ms: float,
) -> pa.RecordBatch:
    """The segment rows of one scored request: one row per (request row, scored arm), arms in the order given.

    Args:
        sig: The model's signature.
        schema: :func:`segment_schema` of ``sig``.
        segment_id: The open segment's id (:attr:`SegmentWriter.segment_id`): the ``data_version`` column.
        request_id: The request's id.
        row_ids: The ``n`` row ids (:func:`mlops_assets.ml.serving_contract.row_ids_for`).
        records: The ``n`` parsed records (:func:`mlops_assets.serving.signature.parse_records`).
        inputs: The ``(n, k)`` model inputs (:func:`mlops_assets.serving.signature.model_inputs_of`).
        feature_hashes: ``n`` feature hashes (:func:`mlops_assets.ml.routing.feature_hash_array` of ``inputs``).
        scored: One :class:`ScoredArm` per model that scored the rows (at least one).
        scored_at: When the request was scored (aware).
        latency_ms: Milliseconds from request received to response ready, on served rows (NaN on the others).

    Returns:
        A record batch of ``n * len(scored)`` rows with exactly ``schema``'s columns and types; ``prediction_id`` is
        :func:`mlops_assets.ml.scoring.prediction_ids` of (segment id, row id as text, model version).

    Raises:
        ValueError: lengths disagree, no arm is given, ``scored_at`` is naive or an input column is missing.
    """
    n = len(row_ids)
    if not scored:
        raise ValueError("log_batch: at least one scored arm is needed")
    if n < 1 or len(records) != n or len(inputs) != n or len(feature_hashes) != n:
        raise ValueError(
            f"log_batch: {n} row ids, {len(records)} records, {len(inputs)} input rows and "
            f"{len(feature_hashes)} feature hashes; all must be the same (>= 1)"
        )
    if scored_at.tzinfo is None:
        raise ValueError("log_batch: scored_at must be an aware datetime")
    for arm in scored:
        if not len(arm.served) == len(arm.scores) == len(arm.decisions) == n:
            raise ValueError(f"log_batch: arm {arm.arm!r} (v{arm.model_version}) does not have {n} rows")
    k = len(scored)
    m = n * k
    ids = list(row_ids)
    id_texts = [str(v) for v in ids]
    served = np.concatenate([np.asarray(a.served, dtype=bool) for a in scored])
    arrays: dict[str, Any] = {
        "request_id": pa.array([request_id] * m, type=pa.string()),
        "row_id": pa.array(ids * k, type=schema.field("row_id").type),
        "data_version": pa.array([segment_id] * m, type=pa.string()),
        "prediction_id": pa.concat_arrays([_prediction_ids(segment_id, id_texts, a.model_version) for a in scored]),
        "model_version": pa.array(np.repeat(np.array([a.model_version for a in scored], dtype=np.int64), n)),
        "arm": pa.array([a.arm for a in scored for _ in range(n)], type=pa.string()),
        "served": pa.array(served, type=pa.bool_()),
        "score": pa.array(np.concatenate([np.asarray(a.scores, dtype=np.float64) for a in scored])),
        "decision": pa.array(np.concatenate([np.asarray(a.decisions, dtype=np.int64) for a in scored])),
        "scored_at": pa.array([scored_at] * m, type=_TIMESTAMP),
        "latency_ms": pa.array(np.where(served, float(latency_ms), math.nan), type=pa.float64()),
    }
    if isinstance(feature_hashes, pa.ChunkedArray):
        feature_hashes = feature_hashes.combine_chunks()
    if isinstance(feature_hashes, pa.Array):
        arrays["feature_hash"] = pa.concat_arrays([feature_hashes.cast(pa.string())] * k)
    else:
        arrays["feature_hash"] = pa.array(list(feature_hashes) * k, type=pa.string())
    struct = _record_struct(sig, schema, records)
    if k > 1:
        struct = struct.take(pa.array(np.tile(np.arange(n), k)))
    for f, child in zip(sig.fields, struct.flatten(), strict=True):
        arrays[record_column(f.name)] = child
    names = list(sig.feature_names)
    missing = [c for c in names if c not in inputs.columns]
    if missing:
        raise ValueError(f"log_batch: the model inputs lack columns {missing}")
    # One conversion of the whole frame (a column lookup per input costs more than the rows, for small requests).
    block = (inputs if list(inputs.columns) == names else inputs[names]).to_numpy(dtype=object)
    for j, name in enumerate(names):
        column = feature_column(name)
        type_ = schema.field(column).type
        if pa.types.is_floating(type_):
            arrays[column] = pa.array(np.tile(block[:, j].astype(np.float64), k), type=type_)
        else:
            arrays[column] = pa.array(np.tile(block[:, j], k), type=type_, from_pandas=True)
    return pa.RecordBatch.from_arrays([arrays[name] for name in schema.names], schema=schema)


# --------------------------------------------------------------------------------------------------
# Closing and recovering write-ahead files
# --------------------------------------------------------------------------------------------------


def _lock(path: Path) -> int:
    """An fd of ``path`` holding an exclusive flock; SegmentLockedError when a live writer holds it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SegmentLockedError(f"{path}: held by a live segment writer") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_wal(path: Path) -> tuple[pa.Schema | None, list[pa.RecordBatch]]:
    """The schema and every complete record batch of a write-ahead file (a torn last batch is dropped)."""
    batches: list[pa.RecordBatch] = []
    with pa.OSFile(str(path), "rb") as source:
        try:
            reader = pa.ipc.open_stream(source)
        except (pa.ArrowException, OSError, ValueError):
            return None, []  # torn inside the schema: nothing was written after it
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
            except (pa.ArrowException, OSError, ValueError):
                break  # a batch cut short by a kill: everything before it is complete
        return reader.schema, batches


def _metadata_of(schema: pa.Schema, segment_id: str) -> dict[str, str]:
    raw = (schema.metadata or {}).get(SEGMENT_METADATA_KEY)
    metadata = {str(k): str(v) for k, v in json.loads(raw).items()} if raw else {}
    metadata[SEGMENT_ID_KEY] = segment_id
    return metadata


class SegmentSchemaError(ValueError):
    """A write-ahead file's columns are not the expected segment schema (another model's, or another spec's)."""


def _close_wal(wal_path: Path, sink: SegmentSink, expected: pa.Schema | None = None) -> str | None:
    # The caller holds the file's lock.
    segment_id = wal_path.name[: -len(WAL_SUFFIX)]
    schema, batches = _read_wal(wal_path)
    if schema is None or not any(b.num_rows for b in batches):
        wal_path.unlink(missing_ok=True)
        return None
    if expected is not None and not schema.remove_metadata().equals(expected.remove_metadata()):
        raise SegmentSchemaError(f"{wal_path}: its columns are not this model's segment schema; left in place")
    metadata = _metadata_of(schema, segment_id)
    table = pa.Table.from_batches(batches, schema=schema).replace_schema_metadata(
        {SEGMENT_METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()}
    )
    tmp = wal_path.with_name(f".{segment_id}{SEGMENT_SUFFIX}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        sink.put(f"{segment_id}{SEGMENT_SUFFIX}", tmp)
    finally:
        tmp.unlink(missing_ok=True)
    wal_path.unlink(missing_ok=True)
    return segment_id


def close_segment(wal_path: Path, sink: SegmentSink, schema: pa.Schema | None = None) -> str | None:
    """Close a write-ahead file into its Parquet segment in ``sink``.

    Reads every complete record batch (a batch torn by a kill is dropped), writes one Parquet file to a temporary
    name next to the write-ahead file (the segment metadata as JSON under :data:`SEGMENT_METADATA_KEY`, with the
    segment id), ``sink.put("<segment id>.parquet", tmp)``, then deletes the temporary file and the write-ahead file.

    Args:
        wal_path: ``<wal dir>/<segment id>.arrows``.
        sink: Where closed segments go.
        schema: When given, the segment schema the file must have (else SegmentSchemaError; the file stays).

    Returns:
        The segment id, or ``None`` when the file held no rows (it is deleted; nothing reaches the sink).

    Raises:
        SegmentLockedError: a live writer holds the file.
        SegmentSchemaError: ``schema`` is given and the file's columns differ.
        Exception: whatever ``sink.put`` or the Parquet writer raised; the write-ahead file is kept (nothing lost).
        ValueError: the file name is not ``<segment id>.arrows``.
    """
    wal_path = Path(wal_path)
    if not wal_path.name.endswith(WAL_SUFFIX) or not is_segment_id(wal_path.name[: -len(WAL_SUFFIX)]):
        raise ValueError(f"{wal_path}: not a segment write-ahead file (<segment id>{WAL_SUFFIX})")
    fd = _lock(wal_path)
    try:
        return _close_wal(wal_path, sink, schema)
    finally:
        os.close(fd)


def recover(wal_dir: Path, sink: SegmentSink, schema: pa.Schema | None = None) -> list[str]:
    """Close the write-ahead files killed or stopped writers left in ``wal_dir`` (oldest first).

    Files a live writer holds are skipped; a file whose close fails (the sink is down) is kept for a later try and
    logged. Empty files are deleted. With ``schema``, files of another segment schema (another model sharing the
    folder) are skipped and logged.

    Args:
        wal_dir: The write-ahead folder (missing: nothing to do).
        sink: Where closed segments go.
        schema: The segment schema of the model ``sink`` belongs to (optional guard; the writer passes its own).

    Returns:
        The ids of the segments closed into the sink.
    """
    closed: list[str] = []
    wal_dir = Path(wal_dir)
    if not wal_dir.is_dir():
        return closed
    for path in sorted(wal_dir.glob(f"*{WAL_SUFFIX}")):
        if not is_segment_id(path.name[: -len(WAL_SUFFIX)]):
            continue
        try:
            segment_id = close_segment(path, sink, schema)
        except (SegmentLockedError, FileNotFoundError):
            continue
        except SegmentSchemaError as exc:
            logger.warning("recover: %s", exc)
            continue
        except Exception:
            logger.exception("recover: could not close %s; the write-ahead file is kept", path)
            continue
        if segment_id is not None:
            closed.append(segment_id)
    return closed


def read_segment(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """A closed segment's rows and metadata.

    Args:
        path: A ``<segment id>.parquet`` file.

    Returns:
        ``(rows, metadata)``: the rows in :func:`segment_schema` column order (text as pandas ``str``, timestamps
        ``datetime64[us, UTC]``, int and bool columns holding missing values as ``Int64``/``boolean``, other ints
        ``int64``), and the metadata given when the segment was opened plus ``"segment_id"``.

    Raises:
        ValueError: the file has no segment metadata.
    """
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(SEGMENT_METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path}: not a prediction-log segment (no {SEGMENT_METADATA_KEY!r} metadata)")
    metadata = {str(k): str(v) for k, v in json.loads(raw).items()}
    frame = table.to_pandas()
    for name, column in zip(table.column_names, table.columns, strict=True):
        if column.null_count and (pa.types.is_integer(column.type) or pa.types.is_boolean(column.type)):
            frame[name] = pd.array(column.to_pylist(), dtype="Int64" if pa.types.is_integer(column.type) else "boolean")
    return frame, metadata


# --------------------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Segment:
    segment_id: str
    path: Path
    lock_fd: int
    file: Any  # pa.OSFile
    writer: Any  # pa.ipc.RecordBatchStreamWriter
    metadata: dict[str, str]
    opened_at: datetime
    rows: int = 0
    served_rows: int = 0
    draining_since: float | None = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Stats:
    rows_appended: int = 0
    rows_written: int = 0
    rows_restamped: int = 0
    segments_closed: int = 0
    last_flush_at: datetime | None = None
    last_error: str | None = None
    recovered: list[str] = field(default_factory=list)


class SegmentWriter:
    """The rolling segments of one server process (see the module docstring).

    Args:
        wal_dir: The local folder of the write-ahead files (created).
        sink: Where closed segments go (the ``serving_log`` zone's model folder).
        schema: :func:`segment_schema` of the model's signature; every appended batch must have it.
        worker_tag: 8 hex digits naming this process in segment ids (:func:`contract.new_worker_tag`).
        max_rows: A segment closes at the tick after it holds this many rows.
        max_bytes: ... or after its write-ahead file reaches this many bytes.
        max_age_seconds: ... or after it has been open this long (by ``clock``) with at least ``min_served_rows``
            served rows.
        min_served_rows: Age alone closes a segment only once it holds this many **served** rows (log rows with
            ``served`` true: the rows of the data version the segment lands as, one per answered request row), so a
            quiet server does not close a segment too small for its data version's row floor every
            ``max_age_seconds`` (``mlops-serve`` passes the spec's ``policy.data.min_rows``). Size limits, rotations
            (a model swap) and closing still close smaller segments.
        flush_interval_seconds: How often the background thread writes the queue (seconds).
        clock: The current aware UTC time (segment ids, age, ``last_flush_at``); tests inject one.
        drain_seconds: How long (monotonic seconds) a rotated segment stays open for batches stamped with its id
            before the rotation; 0 closes it at once.
    """

    def __init__(
        self,
        *,
        wal_dir: Path,
        sink: SegmentSink,
        schema: pa.Schema,
        worker_tag: str,
        max_rows: int = 100_000,
        max_bytes: int = 64 << 20,
        max_age_seconds: float = 300.0,
        min_served_rows: int = 1,
        flush_interval_seconds: float = 0.05,
        clock: Callable[[], datetime] = _utc_now,
        drain_seconds: float = 2.0,
    ) -> None:
        new_segment_id(datetime.now(UTC), worker_tag)  # ValueError for a malformed tag, now rather than at open()
        counts_ok = min(max_rows, max_bytes, min_served_rows) >= 1
        if not counts_ok or max_age_seconds <= 0 or flush_interval_seconds <= 0 or drain_seconds < 0:
            raise ValueError("SegmentWriter: limits and intervals must be positive (drain_seconds >= 0)")
        self._wal_dir = Path(wal_dir)
        self._sink = sink
        self._schema = schema.remove_metadata()
        self._worker_tag = worker_tag
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._max_age = timedelta(seconds=max_age_seconds)
        self._min_served_rows = min_served_rows
        self._interval = flush_interval_seconds
        self._clock = clock
        self._drain_seconds = drain_seconds
        self._queue: list[pa.RecordBatch] = []
        self._queue_lock = threading.Lock()
        self._io_lock = threading.RLock()
        self._current: _Segment | None = None
        self._draining: dict[str, _Segment] = {}
        self._closed_ids: deque[str] = deque(maxlen=256)
        self._pending: list[Path] = []
        self._closing: list[_Segment] = []
        self._close_lock = threading.Lock()
        self._stats = _Stats()
        self._next_retry = 0.0
        self._dv_index = self._schema.get_field_index("data_version")
        self._served_index = self._schema.get_field_index("served")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # ---- public API ---------------------------------------------------------------------------

    def open(self, metadata: Mapping[str, str]) -> str:
        """Close the write-ahead files dead writers left in ``wal_dir`` (:func:`recover`), then open a segment.

        Args:
            metadata: Text key → text value stored with the segment (routing configuration); ``"segment_id"`` is
                reserved.

        Returns:
            The new segment's id.

        Raises:
            RuntimeError: the writer is already open or was closed.
            TypeError / ValueError: the metadata is not text → text, or sets ``"segment_id"``.
        """
        with self._io_lock:
            if self._current is not None or self._closed:
                raise RuntimeError("SegmentWriter.open: the writer is already open or was closed")
            clean = _check_metadata(metadata)
            self._wal_dir.mkdir(parents=True, exist_ok=True)
            self._stats.recovered = recover(self._wal_dir, self._sink, self._schema)
            segment = self._new_segment(clean)
            with self._queue_lock:
                self._current = segment
            self._thread = threading.Thread(target=self._run, name="segment-writer", daemon=True)
            self._thread.start()
            return self._current.segment_id

    @property
    def segment_id(self) -> str:
        """The open segment's id (what :func:`log_batch` stamps on a request's rows now)."""
        current = self._current
        if current is None:
            raise RuntimeError("SegmentWriter: no open segment (call open())")
        return current.segment_id

    def append(self, batch: pa.RecordBatch) -> None:
        """Queue a :func:`log_batch` batch for the write-ahead file (non-blocking, thread-safe).

        The batch lands in the segment whose id it carries (the open one, or one rotated less than
        ``drain_seconds`` ago); a batch for a segment already closed is re-stamped into the open one.

        Raises:
            RuntimeError: the writer is not open.
            ValueError: the batch's schema is not the writer's, or it is stamped with a segment this writer never
                opened.
        """
        if not batch.schema.equals(self._schema):
            raise ValueError("SegmentWriter.append: the batch does not have the segment schema")
        if batch.num_rows == 0:
            return
        stamped = batch.column(self._dv_index)[0].as_py()
        with self._queue_lock:
            if self._closed or self._current is None:
                raise RuntimeError("SegmentWriter.append: the writer is not open")
            if not self._known(stamped):
                raise ValueError(f"SegmentWriter.append: batch stamped with segment {stamped!r}, not this writer's")
            self._queue.append(batch)
            self._stats.rows_appended += batch.num_rows

    def rotate(self, metadata: Mapping[str, str]) -> str:
        """Close the open segment (when it has rows) and open a new one with ``metadata``.

        Everything appended before the call lands in the old segment; it stays open ``drain_seconds`` for batches
        stamped with its id before the rotation, then the background thread closes it (so with ``drain_seconds``
        > 0 this call never waits for the sink; with 0 the old segment is closed into the sink before it returns).

        Returns:
            The new segment's id.
        """
        clean = _check_metadata(metadata)
        with self._io_lock:
            if self._current is None or self._closed:
                raise RuntimeError("SegmentWriter.rotate: the writer is not open")
            self._write_queue()
            self._rotate(clean)
            new_id = self._current.segment_id
        if self._drain_seconds == 0:
            self._close_detached()
        return new_id

    def flush(self) -> None:
        """Write everything queued to the write-ahead files now, then rotate and close what is due (blocking: this
        is one background tick run by the caller, sink uploads included)."""
        with self._io_lock:
            if self._current is None:
                return
            self._write_queue()
            self._maintain()
        self._close_detached()

    def close(self) -> None:
        """Clean shutdown: write the queue, close every open segment into the sink and stop the thread.

        Raises:
            RuntimeError: some segment could not be closed (the sink failed); its write-ahead file is kept for
                :func:`recover`, so nothing appended is lost.
        """
        with self._queue_lock:
            if self._closed:
                return
            self._closed = True  # appends from now on raise: none can slip in after the last write
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._io_lock:
            if self._current is None:
                return
            self._write_queue()
            segments = [*self._draining.values(), self._current]
            with self._queue_lock:
                self._draining.clear()
                self._current = None
            for seg in segments:
                self._detach(seg)
        self._close_detached(retry=True)
        with self._queue_lock:
            if self._pending:
                raise RuntimeError(
                    f"SegmentWriter.close: {len(self._pending)} segment(s) not closed into the sink; their write-ahead "
                    f"files are kept for recover(): {[p.name for p in self._pending]}"
                )

    def stats(self) -> dict[str, Any]:
        """Counters: ``rows_appended``, ``rows_written`` (to write-ahead files), ``rows_queued``, ``rows_restamped``,
        ``segments_closed``, ``open_segment`` (id or None), ``open_segment_served_rows`` (its served rows written),
        ``min_served_rows`` (the floor before age closes a segment), ``draining`` (ids), ``pending_wals`` (closes to
        retry), ``recovered`` (ids closed at open), ``last_flush_at`` (ISO text or None) and ``last_error``."""
        with self._queue_lock:
            queued = sum(b.num_rows for b in self._queue)
            s = self._stats
            current = self._current
            return {
                "rows_appended": s.rows_appended,
                "rows_written": s.rows_written,
                "rows_queued": queued,
                "rows_restamped": s.rows_restamped,
                "segments_closed": s.segments_closed,
                "open_segment": current.segment_id if current is not None else None,
                "open_segment_served_rows": current.served_rows if current is not None else 0,
                "min_served_rows": self._min_served_rows,
                "draining": list(self._draining),
                "pending_wals": [p.name for p in self._pending],
                "recovered": list(s.recovered),
                "last_flush_at": s.last_flush_at.isoformat() if s.last_flush_at is not None else None,
                "last_error": s.last_error,
            }

    # ---- internals ----------------------------------------------------------------------------

    def _known(self, segment_id: Any) -> bool:
        # Called under the queue lock, which every change of the segment bookkeeping also takes.
        current = self._current
        return (
            (current is not None and segment_id == current.segment_id)
            or segment_id in self._draining
            or segment_id in self._closed_ids
        )

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                with self._io_lock:
                    if self._closed or self._current is None:
                        return
                    self._write_queue()
                    self._maintain()
                # Sink uploads outside the I/O lock: appends, rotations and WAL writes do not wait for them.
                self._close_detached()
            except Exception as exc:  # kept running: the queue is kept and retried next tick
                self._stats.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("segment writer tick failed")

    def _new_segment(self, metadata: dict[str, str]) -> _Segment:
        now = self._clock()
        segment_id = new_segment_id(now, self._worker_tag)
        with self._queue_lock:
            taken = set(self._closed_ids) | set(self._draining)
        if self._current is not None:
            taken.add(self._current.segment_id)
        while segment_id in taken or (self._wal_dir / f"{segment_id}{WAL_SUFFIX}").exists():
            now += timedelta(microseconds=1)  # an injected (or coarse) clock that did not move
            segment_id = new_segment_id(now, self._worker_tag)
        path = self._wal_dir / f"{segment_id}{WAL_SUFFIX}"
        file = pa.OSFile(str(path), "wb")
        try:
            lock_fd = _lock(path)
            stored = {**metadata, SEGMENT_ID_KEY: segment_id}
            schema = self._schema.with_metadata({SEGMENT_METADATA_KEY: json.dumps(stored, sort_keys=True).encode()})
            writer = pa.ipc.new_stream(file, schema)
        except BaseException:
            file.close()
            path.unlink(missing_ok=True)
            raise
        return _Segment(segment_id, path, lock_fd, file, writer, dict(metadata), now)

    def _write_queue(self) -> None:
        with self._queue_lock:
            batches, self._queue = self._queue, []
        if not batches:
            return
        groups: dict[str, list[pa.RecordBatch]] = {}
        for batch in batches:
            groups.setdefault(batch.column(self._dv_index)[0].as_py(), []).append(batch)
        assert self._current is not None
        written: set[int] = set()
        try:
            for segment_id, group in groups.items():
                seg = self._draining.get(segment_id)
                if seg is None and segment_id != self._current.segment_id:
                    seg = self._current
                    group = [self._restamp(b, seg.segment_id) for b in group]
                    self._stats.rows_restamped += sum(b.num_rows for b in group)
                elif seg is None:
                    seg = self._current
                combined = group[0] if len(group) == 1 else pa.concat_batches(group)
                seg.writer.write_batch(combined)
                seg.file.flush()
                seg.rows += combined.num_rows
                seg.served_rows += pc.sum(combined.column(self._served_index)).as_py() or 0
                self._stats.rows_written += combined.num_rows
                written.update(id(b) for b in groups[segment_id])
        except BaseException:
            with self._queue_lock:  # never lose rows: what was not written goes back to the head of the queue
                self._queue[0:0] = [b for b in batches if id(b) not in written]
            raise
        self._stats.last_flush_at = self._clock()

    def _restamp(self, batch: pa.RecordBatch, segment_id: str) -> pa.RecordBatch:
        n = batch.num_rows
        texts = pd.Series([str(v) for v in batch.column("row_id").to_pylist()], dtype=object)
        versions = np.asarray(batch.column("model_version").to_numpy())
        ids = np.empty(n, dtype=object)
        for version in np.unique(versions):
            mask = versions == version
            ids[mask] = prediction_ids(segment_id, texts[mask].reset_index(drop=True), int(version)).to_pylist()
        columns = list(batch.columns)
        columns[batch.schema.get_field_index("data_version")] = pa.array([segment_id] * n, type=pa.string())
        columns[batch.schema.get_field_index("prediction_id")] = pa.array(ids, type=pa.string())
        return pa.RecordBatch.from_arrays(columns, schema=batch.schema)

    def _maintain(self) -> None:
        current = self._current
        assert current is not None
        old = self._clock() - current.opened_at >= self._max_age and current.served_rows >= self._min_served_rows
        if current.rows and (current.rows >= self._max_rows or current.file.tell() >= self._max_bytes or old):
            self._rotate(current.metadata)
        now = time.monotonic()
        for segment_id, seg in list(self._draining.items()):
            if seg.draining_since is not None and now - seg.draining_since >= self._drain_seconds:
                with self._queue_lock:
                    del self._draining[segment_id]
                self._detach(seg)

    def _rotate(self, metadata: dict[str, str]) -> None:
        old = self._current
        assert old is not None
        segment = self._new_segment(metadata)
        drain = old.rows > 0 and self._drain_seconds > 0
        with self._queue_lock:
            self._current = segment
            if drain:
                old.draining_since = time.monotonic()
                self._draining[old.segment_id] = old
        if not drain:
            self._detach(old)

    def _detach(self, seg: _Segment) -> None:
        """End a segment's write-ahead stream (under the I/O lock) and queue it for :meth:`_close_detached`.

        Its lock stays held until it is closed, so no other process's :func:`recover` takes it meanwhile.
        """
        try:
            seg.writer.close()
        finally:
            seg.file.close()
            with self._queue_lock:
                self._closed_ids.append(seg.segment_id)
                self._closing.append(seg)

    def _close_detached(self, *, retry: bool = False) -> None:
        """Close the detached segments into the sink, one at a time; failed ones are kept and retried later."""
        with self._close_lock:
            with self._queue_lock:
                closing, self._closing = self._closing, []
            for seg in closing:
                try:
                    segment_id = _close_wal(seg.path, self._sink, self._schema)
                except Exception as exc:
                    logger.exception("could not close segment %s; its write-ahead file is kept", seg.segment_id)
                    with self._queue_lock:
                        self._stats.last_error = f"closing {seg.segment_id}: {type(exc).__name__}: {exc}"
                        if seg.path.exists():
                            self._pending.append(seg.path)
                            self._next_retry = time.monotonic() + RETRY_SECONDS
                    continue
                finally:
                    os.close(seg.lock_fd)
                if segment_id is not None:
                    with self._queue_lock:
                        self._stats.segments_closed += 1
            if self._pending and (retry or time.monotonic() >= self._next_retry):
                self._retry_pending()

    def _retry_pending(self) -> None:
        # Under the close lock.
        with self._queue_lock:
            pending = list(self._pending)
        remaining: list[Path] = []
        closed = 0
        error = None
        for path in pending:
            try:
                if close_segment(path, self._sink, self._schema) is not None:
                    closed += 1
            except FileNotFoundError:
                continue
            except Exception as exc:
                error = f"closing {path.name}: {type(exc).__name__}: {exc}"
                remaining.append(path)
        with self._queue_lock:
            self._pending = remaining + [p for p in self._pending if p not in pending]
            self._stats.segments_closed += closed
            if error is not None:
                self._stats.last_error = error
            self._next_retry = time.monotonic() + RETRY_SECONDS


def _check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"segment metadata must map text to text; {key!r}: {value!r} is not")
        clean[key] = value
    if SEGMENT_ID_KEY in clean:
        raise ValueError(f"segment metadata key {SEGMENT_ID_KEY!r} is reserved for the segment id")
    return clean
