"""The prediction-log contract between ``mlops-serve`` and the code location (pure; no Dagster, no I/O).

Layout (one model's folder of the environment's ``serving_log`` zone, :func:`mlops_assets.environments.serving_stores`):

* ``<serving root>/<model>/<segment id>.parquet`` — a **closed** segment, placed atomically (local: temp file,
  fsync, rename; S3: one upload). Only closed segments are ever in this folder; the code location's sensor lands
  each one as an unlabelled data version of the same model.
* The **open** segment is a write-ahead file on the server's local disk (Arrow IPC stream,
  ``<wal dir>/<segment id>.arrows``), appended in record batches; closing converts it to the Parquet segment.
  A server that starts finds the write-ahead files a killed server left and closes them first.

Segment id: ``served-<UTC yyyymmddTHHMMSSffffff>Z-<8 hex worker tag>`` (characters a data version key keeps, so
the data version landed from it is ``<segment id>__<12 hex digits>``).

Columns of a segment, in order: :data:`LOG_FIELDS`, then ``record.<column>`` for each request field (the spec's
columns but the id and the label, typed by the spec: the values the request was validated to), then
``feature.<column>`` for each model input (:func:`mlops_assets.ml.features.feature_columns`: exactly the values
handed to ``predict_proba``, ``float64`` for numeric inputs and text for categorical ones). One row per
(scored row, model): the served arm's row and, during a rollout, the other model's row (``served = False``:
shadow or the champion's score of a row the challenger served), as the batch prediction log.

Row ids (the data version's id column, and what labels are joined on): :func:`row_ids_for`.
"""

import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

#: The log fields of every segment row, in order (then the ``record.`` and ``feature.`` columns).
LOG_FIELDS: tuple[str, ...] = (
    "request_id",  # str: the request's id (the client's OIP "id", else generated)
    "row_id",  # the spec id column's type (int64 or str): the row's id in the landed data version
    "data_version",  # str: the segment id (the landed data version's key starts with it)
    "prediction_id",  # str: mlops_assets.ml.scoring.prediction_ids(segment id, row id, model version)
    "model_version",  # int64
    "arm",  # str: "champion" or "challenger"
    "served",  # bool: this row's score is the one the response returned
    "score",  # float64: probability of the positive class
    "decision",  # int64: 1 when score >= policy.evaluation.decision_threshold, else 0
    "feature_hash",  # str: mlops_assets.ml.routing.feature_hash_array of the model inputs (as the batch log)
    "scored_at",  # timestamp[us, UTC]: when the request was scored
    "latency_ms",  # float64: request received → response ready, on the served row (NaN on the other arm's row)
)
#: Prefix of the request field columns (the spec's columns but id and label, typed by the spec).
RECORD_PREFIX = "record."
#: Prefix of the model input columns (the values given to ``predict_proba``).
FEATURE_PREFIX = "feature."

#: Suffix of closed segments (Parquet) and of the open write-ahead file (Arrow IPC stream).
SEGMENT_SUFFIX = ".parquet"
WAL_SUFFIX = ".arrows"

SEGMENT_PREFIX = "served-"
_SEGMENT_ID = re.compile(r"^served-\d{8}T\d{12}Z-[0-9a-f]{8}$")

#: The id column types a served model can have: row ids are made from request ids (:func:`row_ids_for`).
ID_KINDS = ("int", "string", "category")

_INT63 = (1 << 63) - 1


def new_worker_tag() -> str:
    """8 random hex digits naming one server process in its segment ids."""
    return secrets.token_hex(4)


def new_segment_id(now: datetime, worker_tag: str) -> str:
    """The id of a segment opened at ``now`` (aware) by the worker ``worker_tag`` (:func:`new_worker_tag`)."""
    if now.tzinfo is None:
        raise ValueError("segment ids are made from an aware UTC time")
    if not re.fullmatch(r"[0-9a-f]{8}", worker_tag):
        raise ValueError(f"worker tag {worker_tag!r} is not 8 lowercase hex digits")
    return f"{SEGMENT_PREFIX}{now.astimezone(UTC):%Y%m%dT%H%M%S%f}Z-{worker_tag}"


def is_segment_id(text: str) -> bool:
    """Whether ``text`` is a segment id (:func:`new_segment_id`)."""
    return bool(_SEGMENT_ID.match(text))


def new_request_id(id_kind: str) -> str:
    """A fresh request id: a positive 63-bit integer's decimal text for an ``int`` id column, else 32 hex digits.

    Either way it is also the row id of a one-row request (:func:`row_ids_for`), so labels of one-row requests
    arrive by request id.
    """
    if id_kind == "int":
        return str(secrets.randbits(63) or 1)
    return secrets.token_hex(16)


def _derived_int(request_id: str, index: int) -> int:
    digest = hashlib.sha256(f"{len(request_id)}:{request_id}:{index}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") & _INT63) or 1


def _as_int_id(text: str) -> int | None:
    if not re.fullmatch(r"[1-9][0-9]{0,18}", text):
        return None
    value = int(text)
    return value if value <= _INT63 else None


def row_ids_for(request_id: str, n_rows: int, id_kind: str) -> list[int] | list[str]:
    """The row ids of a request's ``n_rows`` rows, in the spec's id column type.

    * One row whose request id is a value of the id column's type (a positive int63's decimal text for ``int``;
      any text for ``string``/``category``): the request id itself — labels of one-row requests arrive by it.
    * Otherwise, row ``i`` gets ``int(sha256("<len>:<request id>:<i>")[:8]) & (2**63 - 1)`` (``int``; 0 becomes 1)
      or ``"<request id>:<i>"`` (text).

    A server-generated request id (:func:`new_request_id`) always takes the first rule for one row. Two rows with
    the same id in one segment fail the landed version's ``ids_unique`` gate, so the server refuses a request
    whose ids were already logged in its open segment (HTTP 409).

    Raises:
        ValueError: ``id_kind`` is not one of :data:`ID_KINDS`, or ``n_rows`` < 1.
    """
    if id_kind not in ID_KINDS:
        raise ValueError(f"a served model's id column must be one of {', '.join(ID_KINDS)}, not {id_kind!r}")
    if n_rows < 1:
        raise ValueError("a request has at least one row")
    if id_kind == "int":
        single = _as_int_id(request_id) if n_rows == 1 else None
        return [single] if single is not None else [_derived_int(request_id, i) for i in range(n_rows)]
    if n_rows == 1:
        return [request_id]
    return [f"{request_id}:{i}" for i in range(n_rows)]


def record_column(name: str) -> str:
    """The segment column of request field ``name``."""
    return f"{RECORD_PREFIX}{name}"


def feature_column(name: str) -> str:
    """The segment column of model input ``name``."""
    return f"{FEATURE_PREFIX}{name}"


def segment_columns(record_fields: Sequence[str], feature_names: Sequence[str]) -> list[str]:
    """Every column of a segment, in order."""
    return [*LOG_FIELDS, *map(record_column, record_fields), *map(feature_column, feature_names)]
