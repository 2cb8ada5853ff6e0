"""The prediction-log segments of mlops-serve: record batches, the write-ahead file, rotation, closing, recovery."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlops_assets.ml.routing import feature_hash_array
from mlops_assets.ml.scoring import prediction_ids
from mlops_assets.ml.serving_contract import (
    LOG_FIELDS,
    WAL_SUFFIX,
    is_segment_id,
    new_worker_tag,
    row_ids_for,
    segment_columns,
)
from mlops_assets.ml.spec import load_spec, spec_from_dict
from mlops_assets.resources import LandingZone
from mlops_assets.serving.segments import (
    SEGMENT_METADATA_KEY,
    ScoredArm,
    SegmentWriter,
    close_segment,
    log_batch,
    read_segment,
    recover,
    segment_schema,
)
from mlops_assets.serving.signature import Signature, model_inputs_of_records, parse_records, signature_of

pytestmark = pytest.mark.core

SPEC = load_spec("flights")
SIG = signature_of(SPEC)
SCHEMA = segment_schema(SIG)
FLIGHT: dict[str, Any] = {
    "year": 2013,
    "month": 1,
    "day": 1,
    "day_of_week": 1,
    "dep_time": 517.0,
    "sched_dep_time": 515,
    "dep_delay": 2.0,
    "arr_time": 830.0,
    "sched_arr_time": 819,
    "arr_delay": 11.0,
    "carrier": "UA",
    "flight": 1545,
    "tailnum": "N14228",
    "origin": "EWR",
    "dest": "IAH",
    "air_time": 227.0,
    "distance": 1400.0,
    "hour": 5,
    "minute": 15,
    "time_hour": "2013-01-01T10:00:00.1234567Z",
}
SCORED_AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


class DirSink:
    """A sink placing files in a folder (copy + rename), counting puts; ``fail`` makes every put raise."""

    def __init__(self, root: Path, fail: bool = False) -> None:
        self.root = root
        self.fail = fail
        self.puts: list[str] = []
        root.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, source: Path) -> str:
        if self.fail:
            raise OSError("sink unavailable")
        tmp = self.root / f".{name}.tmp"
        shutil.copyfile(source, tmp)
        os.replace(tmp, self.root / name)
        self.puts.append(name)
        return str(self.root / name)


def _batch(
    segment_id: str,
    request_id: str,
    n: int = 1,
    *,
    sig: Signature = SIG,
    schema: pa.Schema = SCHEMA,
    records: list[dict[str, Any]] | None = None,
    arms: int = 1,
) -> pa.RecordBatch:
    rows = parse_records(sig, records or [{**FLIGHT, "minute": i % 60} for i in range(n)])
    n = len(rows)
    inputs = model_inputs_of_records(sig, rows)
    scored = [
        ScoredArm(3, "champion", np.ones(n, dtype=bool), np.linspace(0.1, 0.2, n), np.zeros(n, dtype=np.int64)),
        ScoredArm(4, "challenger", np.zeros(n, dtype=bool), np.linspace(0.6, 0.7, n), np.ones(n, dtype=np.int64)),
    ][:arms]
    return log_batch(
        sig,
        schema,
        segment_id=segment_id,
        request_id=request_id,
        row_ids=row_ids_for(request_id, n, sig.id_kind),
        records=rows,
        inputs=inputs,
        feature_hashes=feature_hash_array(inputs),
        scored=scored,
        scored_at=SCORED_AT,
        latency_ms=2.5,
    )


def _segments(sink: DirSink) -> list[tuple[pd.DataFrame, dict[str, str]]]:
    return [read_segment(p) for p in sorted(sink.root.glob("*.parquet"))]


def _all_request_ids(sink: DirSink) -> list[str]:
    """The request id of every row of every segment in the sink, sorted (a request of n rows appears n times)."""
    return sorted(r for frame, _ in _segments(sink) for r in frame["request_id"])


# --------------------------------------------------------------------------------------------------
# Schema and record batches
# --------------------------------------------------------------------------------------------------


def test_segment_schema_follows_the_contract() -> None:
    assert SCHEMA.names == segment_columns(SIG.field_names, SIG.feature_names)
    types = {f.name: f.type for f in SCHEMA}
    assert types["row_id"] == pa.int64() and types["model_version"] == pa.int64()
    assert types["served"] == pa.bool_() and types["score"] == pa.float64() and types["decision"] == pa.int64()
    assert types["scored_at"] == pa.timestamp("us", tz="UTC") and types["latency_ms"] == pa.float64()
    assert types["record.hour"] == pa.int64() and types["record.distance"] == pa.float64()
    assert types["record.carrier"] == pa.string() and types["record.time_hour"] == pa.timestamp("us", tz="UTC")
    assert types["feature.hour"] == pa.float64() and types["feature.carrier"] == pa.string()
    assert SCHEMA.field("record.tailnum").nullable and not SCHEMA.field("row_id").nullable
    text_id = spec_from_dict(
        {
            "name": "t",
            "id_column": "i",
            "label": {"column": "y", "positive": 1, "values": [0, 1]},
            "features": ["b"],
            "columns": {"i": {"type": "string"}, "b": {"type": "bool", "nullable": True}, "y": {"type": "int"}},
        }
    )
    text_schema = segment_schema(signature_of(text_id))
    assert text_schema.field("row_id").type == pa.string()
    assert text_schema.field("record.b").type == pa.bool_() and text_schema.field("feature.b").type == pa.float64()


def test_log_batch_has_a_row_per_row_and_arm_with_the_contract_values() -> None:
    segment = "served-20260102T030405000000Z-0123abcd"
    records = [FLIGHT, {**FLIGHT, "tailnum": None, "dest": "ATL", "hour": 7}]
    batch = _batch(segment, "req-1", records=records, arms=2)
    assert batch.schema.equals(SCHEMA) and batch.num_rows == 4
    frame = batch.to_pandas()
    row_ids = row_ids_for("req-1", 2, "int")
    assert frame["row_id"].tolist() == row_ids * 2
    assert frame["arm"].tolist() == ["champion", "champion", "challenger", "challenger"]
    assert frame["model_version"].tolist() == [3, 3, 4, 4]
    assert frame["served"].tolist() == [True, True, False, False]
    assert frame["decision"].tolist() == [0, 0, 1, 1]
    assert (frame["data_version"] == segment).all() and (frame["request_id"] == "req-1").all()
    texts = pd.Series([str(r) for r in row_ids])
    expected_ids = prediction_ids(segment, texts, 3).to_pylist() + prediction_ids(segment, texts, 4).to_pylist()
    assert frame["prediction_id"].tolist() == expected_ids
    assert frame["latency_ms"].iloc[:2].tolist() == [2.5, 2.5] and frame["latency_ms"].iloc[2:].isna().all()
    assert (frame["scored_at"] == pd.Timestamp(SCORED_AT)).all()
    inputs = model_inputs_of_records(SIG, parse_records(SIG, records))
    hashes = feature_hash_array(inputs).to_pylist()
    assert frame["feature_hash"].tolist() == hashes * 2
    assert frame["feature.dest"].tolist() == ["IAH", "ATL", "IAH", "ATL"]
    assert frame["feature.hour"].tolist() == [5.0, 7.0, 5.0, 7.0]
    assert frame["record.tailnum"].isna().tolist() == [False, True, False, True]
    # Timestamps keep microseconds (floored): .1234567 -> .123456.
    assert frame["record.time_hour"].iloc[0] == pd.Timestamp("2013-01-01T10:00:00.123456Z")


@pytest.mark.parametrize("n", [1, 70])
def test_prediction_ids_are_the_batch_paths_for_small_and_large_requests(n: int) -> None:
    segment = "served-20260102T030405000000Z-0123abcd"
    frame = _batch(segment, "big", n=n, arms=2).to_pandas()
    texts = pd.Series([str(r) for r in row_ids_for("big", n, "int")])
    expected = prediction_ids(segment, texts, 3).to_pylist() + prediction_ids(segment, texts, 4).to_pylist()
    assert frame["prediction_id"].tolist() == expected
    assert frame["record.minute"].tolist() == [i % 60 for i in range(n)] * 2
    assert frame["feature.minute"].tolist() == [float(i % 60) for i in range(n)] * 2


def test_log_batch_refuses_inconsistent_lengths() -> None:
    rows = parse_records(SIG, [FLIGHT])
    inputs = model_inputs_of_records(SIG, rows)
    arm = ScoredArm(3, "champion", np.ones(2, dtype=bool), np.zeros(2), np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="does not have 1 rows"):
        log_batch(
            SIG, SCHEMA, segment_id="s", request_id="r", row_ids=[1], records=rows, inputs=inputs,
            feature_hashes=feature_hash_array(inputs), scored=[arm], scored_at=SCORED_AT, latency_ms=1.0,
        )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------------------


def _writer(tmp_path: Path, sink: Any, **kwargs: Any) -> SegmentWriter:
    kwargs.setdefault("drain_seconds", 0.0)
    return SegmentWriter(wal_dir=tmp_path / "wal", sink=sink, schema=SCHEMA, worker_tag=new_worker_tag(), **kwargs)


def test_appended_rows_are_all_in_segments_after_close(tmp_path: Path) -> None:
    sink = DirSink(tmp_path / "log")
    writer = _writer(tmp_path, sink, drain_seconds=2.0)
    segment = writer.open({"champion": "3"})
    assert is_segment_id(segment)
    for i in range(20):
        writer.append(_batch(writer.segment_id, f"r{i}", n=1 + i % 3))
    assert writer.stats()["rows_appended"] == sum(1 + i % 3 for i in range(20))
    writer.close()
    assert _all_request_ids(sink) == sorted(f"r{i}" for i in range(20) for _ in range(1 + i % 3))
    ((frame, metadata),) = _segments(sink)
    assert metadata == {"champion": "3", "segment_id": segment}
    assert len(frame) == writer.stats()["rows_appended"] == writer.stats()["rows_written"]
    assert list(frame.columns) == SCHEMA.names
    assert not list((tmp_path / "wal").iterdir())  # the write-ahead file is gone, no temp file left
    assert sink.puts == [f"{segment}.parquet"]
    with pytest.raises(RuntimeError):
        writer.append(_batch(segment, "late"))


def test_a_real_landing_zone_is_a_sink(tmp_path: Path) -> None:
    zone = LandingZone(directory=str(tmp_path / "serving_log" / "flights"))
    writer = _writer(tmp_path, zone)
    segment = writer.open({})
    writer.append(_batch(segment, "r0", n=3))
    writer.close()
    frame, metadata = read_segment(zone.root / f"{segment}.parquet")
    assert len(frame) == 3 and metadata["segment_id"] == segment


def test_rotate_splits_exactly(tmp_path: Path) -> None:
    sink = DirSink(tmp_path / "log")
    writer = _writer(tmp_path, sink)
    first = writer.open({"share": "0.1"})
    for i in range(5):
        writer.append(_batch(first, f"a{i}"))
    second = writer.rotate({"share": "0.5"})
    assert second != first and writer.segment_id == second
    for i in range(3):
        writer.append(_batch(second, f"b{i}"))
    writer.close()
    segments = {m["segment_id"]: (f, m) for f, m in _segments(sink)}
    assert set(segments) == {first, second}
    assert sorted(segments[first][0]["request_id"]) == [f"a{i}" for i in range(5)]
    assert sorted(segments[second][0]["request_id"]) == [f"b{i}" for i in range(3)]
    assert segments[first][1]["share"] == "0.1" and segments[second][1]["share"] == "0.5"
    assert (segments[first][0]["data_version"] == first).all()


def test_a_batch_stamped_before_a_rotation_lands_in_its_segment_while_it_drains(tmp_path: Path) -> None:
    sink = DirSink(tmp_path / "log")
    writer = _writer(tmp_path, sink, drain_seconds=600.0)
    first = writer.open({})
    writer.append(_batch(first, "a0"))
    late = _batch(first, "a1")  # scored before the rotation, appended after it
    second = writer.rotate({})
    assert sink.puts == []  # with drain_seconds > 0 a rotation never waits for the sink
    writer.append(late)
    writer.append(_batch(second, "b0"))
    assert writer.stats()["draining"] == [first]
    writer.close()
    segments = {m["segment_id"]: f for f, m in _segments(sink)}
    assert sorted(segments[first]["request_id"]) == ["a0", "a1"]
    assert segments[second]["request_id"].tolist() == ["b0"]


def test_the_background_thread_closes_a_drained_segment(tmp_path: Path) -> None:
    sink = DirSink(tmp_path / "log")
    writer = _writer(tmp_path, sink, drain_seconds=0.01, flush_interval_seconds=0.01)
    first = writer.open({})
    try:
        writer.append(_batch(first, "a0"))
        writer.rotate({})
        _wait(lambda: writer.stats()["segments_closed"] == 1)
        assert sink.puts == [f"{first}.parquet"] and writer.stats()["draining"] == []
    finally:
        writer.close()


def test_a_batch_for_a_closed_segment_is_restamped_into_the_open_one(tmp_path: Path) -> None:
    sink = DirSink(tmp_path / "log")
    writer = _writer(tmp_path, sink)  # drain_seconds=0: the rotated segment closes at once
    first = writer.open({})
    writer.append(_batch(first, "a0"))
    late = _batch(first, "a1", arms=2)
    second = writer.rotate({})
    writer.append(late)
    with pytest.raises(ValueError, match="not this writer's"):
        writer.append(_batch("served-20200101T000000000000Z-00000000", "x"))
    writer.close()
    segments = {m["segment_id"]: f for f, m in _segments(sink)}
    assert segments[first]["request_id"].tolist() == ["a0"]
    moved = segments[second]
    assert moved["request_id"].tolist() == ["a1", "a1"] and (moved["data_version"] == second).all()
    texts = pd.Series([str(r) for r in moved["row_id"]])
    assert moved["prediction_id"].tolist() == [
        prediction_ids(second, texts.iloc[[i]].reset_index(drop=True), v).to_pylist()[0]
        for i, v in enumerate(moved["model_version"])
    ]
    assert writer.stats()["rows_restamped"] == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_size_rotation(tmp_path: Path) -> None:
    sink = DirSink(tmp_path / "log")
    clock = FakeClock()
    writer = _writer(tmp_path, sink, max_rows=3, flush_interval_seconds=3600, clock=clock)
    writer.open({"k": "v"})
    for i in range(10):
        writer.append(_batch(writer.segment_id, f"r{i}"))
        writer.flush()  # a tick: writes the queue, then rotates what is due
    writer.close()
    segments = _segments(sink)
    assert [len(f) for f, _ in segments] == [3, 3, 3, 1]  # the same clock time: ids made unique, in order
    assert len({m["segment_id"] for _, m in segments}) == 4 and all(m["k"] == "v" for _, m in segments)
    assert _all_request_ids(sink) == sorted(f"r{i}" for i in range(10))


def test_byte_rotation(tmp_path: Path) -> None:
    sink = DirSink(tmp_path / "log")
    writer = _writer(tmp_path, sink, max_bytes=1, flush_interval_seconds=3600, clock=FakeClock())
    writer.open({})
    for i in range(3):
        writer.append(_batch(writer.segment_id, f"r{i}"))
        writer.flush()
    writer.close()
    assert [len(f) for f, _ in _segments(sink)] == [1, 1, 1]


def test_age_rotation(tmp_path: Path) -> None:
    sink = DirSink(tmp_path / "log")
    clock = FakeClock()
    writer = _writer(tmp_path, sink, max_age_seconds=300, flush_interval_seconds=3600, clock=clock)
    first = writer.open({})
    writer.append(_batch(first, "r0"))
    writer.flush()
    clock.now += timedelta(seconds=299)
    writer.flush()
    assert writer.segment_id == first
    clock.now += timedelta(seconds=2)
    writer.flush()  # open for 301 s with a row: rotated and closed
    second = writer.segment_id
    assert second != first and sink.puts == [f"{first}.parquet"]
    clock.now += timedelta(seconds=1000)
    writer.flush()
    assert writer.segment_id == second  # an empty segment is not rotated however old
    writer.close()
    assert sink.puts == [f"{first}.parquet"]


def test_age_closes_a_segment_only_once_it_holds_the_served_row_floor(tmp_path: Path) -> None:
    # A quiet server: 1 request per 5 minutes. Closing by age alone would give 1-row segments, each landing as a data
    # version that fails row_count_above_floor; with the floor (mlops-serve passes policy.data.min_rows) age waits for
    # 3 served rows. The challenger's shadow rows (served = False) are log rows, not rows of the data version.
    sink = DirSink(tmp_path / "log")
    clock = FakeClock()
    writer = _writer(tmp_path, sink, max_age_seconds=300, min_served_rows=3, flush_interval_seconds=3600, clock=clock)
    first = writer.open({})
    for i in range(2):
        writer.append(_batch(writer.segment_id, f"r{i}", arms=2))  # 1 served row + 1 shadow row each
        clock.now += timedelta(seconds=301)
        writer.flush()
    assert writer.segment_id == first and sink.puts == []  # old, 4 log rows, but 2 served rows: kept open
    writer.append(_batch(writer.segment_id, "r2", arms=2))
    writer.flush()
    assert writer.segment_id != first and sink.puts == [f"{first}.parquet"]  # 3 served rows and old: closed
    second = writer.segment_id
    writer.append(_batch(second, "r3", n=5))
    writer.flush()
    assert writer.segment_id == second  # enough served rows, but young
    writer.close()  # closing (shutdown) still closes a segment of any size
    frames = {m["segment_id"]: f for f, m in _segments(sink)}
    assert int(frames[first]["served"].sum()) == 3 and len(frames[first]) == 6
    assert int(frames[second]["served"].sum()) == 5


def test_a_served_row_floor_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        _writer(tmp_path, DirSink(tmp_path / "log"), min_served_rows=0)


def test_background_thread_flushes_and_rotates_by_age(tmp_path: Path) -> None:
    sink = DirSink(tmp_path / "log")
    clock = FakeClock()
    writer = _writer(tmp_path, sink, max_age_seconds=60, flush_interval_seconds=0.01, clock=clock)
    first = writer.open({})
    try:
        writer.append(_batch(first, "r0"))
        _wait(lambda: writer.stats()["rows_written"] == 1)
        assert writer.stats()["last_flush_at"] == clock.now.isoformat()
        clock.now += timedelta(seconds=61)
        _wait(lambda: writer.stats()["segments_closed"] == 1)
        assert writer.segment_id != first
    finally:
        writer.close()


def _wait(condition: Any, timeout: float = 60.0) -> None:
    """Poll until ``condition()`` holds (a generous cap, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within the cap")
        time.sleep(0.01)


def test_concurrent_appends_lose_nothing(tmp_path: Path) -> None:
    sink = DirSink(tmp_path / "log")
    writer = _writer(tmp_path, sink, max_rows=25, flush_interval_seconds=0.005, drain_seconds=0.05)
    writer.open({})

    def client(k: int) -> None:
        for i in range(30):
            writer.append(_batch(writer.segment_id, f"c{k}-{i}"))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert _all_request_ids(sink) == sorted(f"c{k}-{i}" for k in range(4) for i in range(30))
    frames = [f for f, _ in _segments(sink)]
    assert len(frames) > 1
    for frame, (_, metadata) in zip(frames, _segments(sink), strict=True):
        assert (frame["data_version"] == metadata["segment_id"]).all()
    ids = pd.concat(frames)["prediction_id"]
    assert ids.is_unique


# --------------------------------------------------------------------------------------------------
# Closing, recovery and failures
# --------------------------------------------------------------------------------------------------


def test_recover_after_a_torn_wal_keeps_every_complete_batch(tmp_path: Path) -> None:
    sink = DirSink(tmp_path / "log")
    writer = _writer(tmp_path, sink, flush_interval_seconds=3600)
    segment = writer.open({"m": "1"})
    wal = tmp_path / "wal" / f"{segment}{WAL_SUFFIX}"
    sizes = []
    for i in range(3):
        writer.append(_batch(segment, f"r{i}", n=2))
        writer.flush()
        sizes.append(wal.stat().st_size)
    # What a kill in the middle of the third write leaves: a copy cut inside the third batch.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    torn = crashed / wal.name
    torn.write_bytes(wal.read_bytes()[: sizes[1] + (sizes[2] - sizes[1]) // 2])
    writer.close()
    other = DirSink(tmp_path / "recovered")
    assert recover(crashed, other) == [segment]
    ((frame, metadata),) = _segments(other)
    assert sorted(frame["request_id"].unique()) == ["r0", "r1"] and len(frame) == 4
    assert metadata == {"m": "1", "segment_id": segment}
    assert not torn.exists()


def test_recover_deletes_empty_and_schema_torn_wals_and_skips_live_ones(tmp_path: Path) -> None:
    sink = DirSink(tmp_path / "log")
    wal_dir = tmp_path / "wal"
    wal_dir.mkdir()
    empty = wal_dir / f"served-20260101T000000000000Z-aaaaaaaa{WAL_SUFFIX}"
    with pa.OSFile(str(empty), "wb") as out, pa.ipc.new_stream(out, SCHEMA):
        pass
    torn = wal_dir / f"served-20260101T000000000001Z-aaaaaaaa{WAL_SUFFIX}"
    torn.write_bytes(empty.read_bytes()[:10])
    writer = _writer(tmp_path, sink)
    live = writer.open({})  # open() recovers first: both leftovers are deleted, nothing reaches the sink
    assert not empty.exists() and not torn.exists() and sink.puts == []
    writer.append(_batch(live, "r0"))
    writer.flush()
    # A live writer's write-ahead file is locked: another recover (another process starting) leaves it alone.
    assert recover(wal_dir, sink) == []
    assert (wal_dir / f"{live}{WAL_SUFFIX}").exists()
    writer.close()
    assert _all_request_ids(sink) == ["r0"]


def test_sink_failure_keeps_the_wal_and_a_later_recover_closes_it(tmp_path: Path) -> None:
    failing = DirSink(tmp_path / "log", fail=True)
    writer = _writer(tmp_path, failing)
    first = writer.open({})
    writer.append(_batch(first, "a0", n=2))
    second = writer.rotate({})  # closing the first segment fails: its write-ahead file stays
    assert writer.stats()["pending_wals"] == [f"{first}{WAL_SUFFIX}"]
    writer.append(_batch(second, "b0"))
    with pytest.raises(RuntimeError, match="not closed into the sink"):
        writer.close()
    wal_dir = tmp_path / "wal"
    assert sorted(p.name for p in wal_dir.iterdir()) == [f"{first}{WAL_SUFFIX}", f"{second}{WAL_SUFFIX}"]
    assert not list(failing.root.glob("*.parquet"))
    good = DirSink(tmp_path / "log")
    assert recover(wal_dir, good) == [first, second]
    assert _all_request_ids(good) == ["a0", "a0", "b0"]
    assert not list(wal_dir.iterdir())


def test_a_failed_close_is_retried_by_the_writer(tmp_path: Path) -> None:
    sink = DirSink(tmp_path / "log", fail=True)
    writer = _writer(tmp_path, sink)
    first = writer.open({})
    writer.append(_batch(first, "a0"))
    writer.rotate({})
    assert writer.stats()["pending_wals"]
    sink.fail = False
    writer.close()  # retries the pending close
    assert _all_request_ids(sink) == ["a0"] and writer.stats()["pending_wals"] == []


def test_close_segment_writes_the_metadata_and_refuses_other_files(tmp_path: Path) -> None:
    sink = DirSink(tmp_path / "log")
    wal = tmp_path / f"served-20260101T000000000000Z-bbbbbbbb{WAL_SUFFIX}"
    schema = SCHEMA.with_metadata({SEGMENT_METADATA_KEY: json.dumps({"champion": "7"}).encode()})
    batch = _batch("served-20260101T000000000000Z-bbbbbbbb", "r0", n=2)
    with pa.OSFile(str(wal), "wb") as out, pa.ipc.new_stream(out, schema) as stream:
        stream.write_batch(batch)
    assert close_segment(wal, sink) == "served-20260101T000000000000Z-bbbbbbbb"
    frame, metadata = read_segment(sink.root / "served-20260101T000000000000Z-bbbbbbbb.parquet")
    assert metadata == {"champion": "7", "segment_id": "served-20260101T000000000000Z-bbbbbbbb"}
    assert frame["row_id"].dtype == np.int64 and list(frame.columns[: len(LOG_FIELDS)]) == list(LOG_FIELDS)
    with pytest.raises(ValueError, match="write-ahead"):
        close_segment(tmp_path / "notes.arrows", sink)


def test_a_text_id_model_with_missing_values_round_trips_through_a_segment(tmp_path: Path) -> None:
    spec = spec_from_dict(
        {
            "name": "t",
            "id_column": "i",
            "label": {"column": "y", "positive": 1, "values": [0, 1]},
            "features": ["n", "b", "c"],
            "columns": {
                "i": {"type": "string"},
                "n": {"type": "int", "nullable": True},
                "b": {"type": "bool", "nullable": True},
                "c": {"type": "category", "nullable": True, "categories": ["p", "q"]},
                "t": {"type": "datetime", "nullable": True},
                "y": {"type": "int"},
            },
        }
    )
    sig = signature_of(spec)
    schema = segment_schema(sig)
    sink = DirSink(tmp_path / "log")
    writer = SegmentWriter(wal_dir=tmp_path / "wal", sink=sink, schema=schema, worker_tag=new_worker_tag())
    segment = writer.open({})
    records = [{"n": 2**62, "b": "yes", "c": "p", "t": "2020-01-01T00:00:00Z"}, {}]
    writer.append(_batch(segment, "req", sig=sig, schema=schema, records=records))
    writer.close()
    ((frame, _),) = _segments(sink)
    assert frame["row_id"].tolist() == ["req:0", "req:1"]
    assert str(frame["record.n"].dtype) == "Int64" and frame["record.n"].iloc[0] == 2**62
    assert frame["record.n"].isna().tolist() == [False, True]
    assert str(frame["record.b"].dtype) == "boolean" and frame["record.b"].isna().tolist() == [False, True]
    assert frame["record.c"].isna().tolist() == [False, True] and frame["feature.c"].isna().tolist() == [False, True]
    assert frame["record.t"].isna().tolist() == [False, True]
    assert frame["feature.n"].iloc[0] == float(2**62) and np.isnan(frame["feature.n"].iloc[1])


def test_recover_with_a_schema_leaves_another_models_wal_alone(tmp_path: Path) -> None:
    wal_dir = tmp_path / "wal"
    wal_dir.mkdir()
    other_schema = segment_schema(signature_of(load_spec("synthetic")))
    wal = wal_dir / f"served-20260101T000000000000Z-cccccccc{WAL_SUFFIX}"
    with pa.OSFile(str(wal), "wb") as out, pa.ipc.new_stream(out, SCHEMA) as stream:
        stream.write_batch(_batch("served-20260101T000000000000Z-cccccccc", "r0"))
    sink = DirSink(tmp_path / "log")
    assert recover(wal_dir, sink, other_schema) == [] and wal.exists()
    assert recover(wal_dir, sink, SCHEMA) == ["served-20260101T000000000000Z-cccccccc"] and not wal.exists()


_KILLED_WRITER = textwrap.dedent(
    """
    import json, shutil, sys, time
    from pathlib import Path
    from mlops_assets.serving.segments import SegmentWriter
    from mlops_assets_tests.test_serving_segments import SCHEMA, DirSink, _batch

    wal_dir, sink_dir = Path(sys.argv[1]), Path(sys.argv[2])
    writer = SegmentWriter(wal_dir=wal_dir, sink=DirSink(sink_dir), schema=SCHEMA, worker_tag="abcdef01",
                           flush_interval_seconds=0.02)
    segment = writer.open({"pid": "child"})
    ids = [f"r{i}" for i in range(25)]
    for request_id in ids:
        writer.append(_batch(segment, request_id, n=2))
    deadline = time.monotonic() + 60
    while writer.stats()["rows_written"] < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    print("FLUSHED " + json.dumps(ids), flush=True)
    while True:  # keeps appending, unflushed rows may be lost; then SIGKILL
        writer.append(_batch(segment, "extra"))
        time.sleep(0.001)
    """
)


@pytest.mark.e2e  # a writer process, SIGKILLed
def test_a_sigkilled_writer_loses_nothing_flushed(tmp_path: Path) -> None:
    wal_dir, sink_dir = tmp_path / "wal", tmp_path / "log"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(wal_dir), str(sink_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the child has flushed (its own 60 s cap)
        assert line.startswith("FLUSHED "), line
        flushed = json.loads(line.removeprefix("FLUSHED "))
        time.sleep(0.05)  # let it append more (not required for the assertion)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not list(sink_dir.glob("*.parquet"))  # nothing was closed: the open segment is in its write-ahead file
    sink = DirSink(sink_dir)
    (segment,) = recover(wal_dir, sink)
    ((frame, metadata),) = _segments(sink)
    assert metadata == {"pid": "child", "segment_id": segment}
    found = set(frame["request_id"])
    assert set(flushed) <= found
    assert (frame["request_id"].value_counts()[flushed] == 2).all()
