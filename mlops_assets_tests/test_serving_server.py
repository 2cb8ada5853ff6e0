"""``mlops-serve`` as a real server process on a copy of the promoted world (the synthetic model v1 in Production).

Each test starts ``python -m mlops_assets.serving.cli --model synthetic`` on a free loopback port with
``MLOPS_DATA_DIR`` on the world's data folder, waits for ``/v2/health/ready``, drives it over HTTP (httpx) and the
registry API, and stops it (SIGTERM, or SIGKILL where that is the point) in ``finally``. What the server logged is
read back from the closed segments in ``<data>/serving/synthetic/``.
"""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlops_assets.demo_data import synthetic
from mlops_assets.gates import MODEL_GATE_NAMES
from mlops_assets.ml import rollout
from mlops_assets.ml import serving_contract as contract
from mlops_assets.ml.features import build_features, model_inputs
from mlops_assets.ml.routing import assign_arms
from mlops_assets.ml.spec import load_spec
from mlops_assets.ml.stages import Stage
from mlops_assets.ml.training import positive_scores
from mlops_assets.ml.validation import data_schema, read_data_file
from mlops_assets.serving.signature import signature_of
from mlops_assets.storage.artifacts.skops_codec import load_model, store_model
from mlops_assets.storage.registry import Lineage, ModelRegistry, ModelVersion
from mlops_assets_tests.deployment import free_port
from mlops_assets_tests.worlds import World

pytestmark = pytest.mark.e2e

NAME = "synthetic"
SPEC = load_spec(NAME)
SIG = signature_of(SPEC)
#: A generous cap for waiting on a condition (never a speed assertion).
WAIT_S = 120.0


# -- the server process ------------------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def _wait_until(condition: Callable[[], Any], what: str, server: Server | None = None) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if server is not None and server.proc.poll() is not None:
            raise AssertionError(
                f"mlops-serve exited ({server.proc.returncode}) waiting for {what}:\n{server.output()}"
            )
        time.sleep(0.05)
    raise AssertionError(f"timed out after {WAIT_S} s waiting for {what}" + (f":\n{server.output()}" if server else ""))


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=10)
    except httpx.TransportError:
        return None


@contextmanager
def serving(world: World, tmp: Path, *extra: str, kill: bool = False) -> Iterator[Server]:
    """``mlops-serve`` on ``world``'s data folder, ready; stopped by SIGTERM (waited for) on exit."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MLOPS_SPEC", "MLOPS_ENV", "PROMETHEUS_MULTIPROC_DIR")}
    env["MLOPS_DATA_DIR"] = str(world.data)
    log = tmp / f"serve-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "mlops_assets.serving.cli",
        "--model",
        NAME,
        "--port",
        str(port),
        "--refresh-seconds",
        "0.1",
        "--flush-interval-seconds",
        "0.02",
        "--wal-dir",
        str(tmp / "wal"),
        *extra,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:

        def ready() -> bool:
            response = _get(server.base + "/v2/health/ready")
            return response is not None and response.status_code == 200

        _wait_until(ready, "/v2/health/ready", server)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if not kill:
        assert proc.returncode == 0, server.output()


# -- requests and records ----------------------------------------------------------------------------------------


def _rows(n: int, seed: int = 7) -> pd.DataFrame:
    return synthetic.generate(n, seed=seed, start_id=10_000)


def _jsonable(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{f: _jsonable(row[f]) for f in SIG.field_names} for row in frame.to_dict("records")]


def _oip(frame: pd.DataFrame, request_id: str | None = None) -> dict[str, Any]:
    records = _records(frame)
    body: dict[str, Any] = {
        "inputs": [
            {"name": f.name, "shape": [len(records)], "datatype": f.oip_datatype, "data": [r[f.name] for r in records]}
            for f in SIG.fields
        ]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def _segments(world: World) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Every closed segment's rows (concatenated) and metadata, in segment id order."""
    import pyarrow.parquet as pq

    folder = world.data / "serving" / NAME
    paths = sorted(folder.glob(f"*{contract.SEGMENT_SUFFIX}")) if folder.is_dir() else []
    frames, metas = [], []
    for path in paths:
        table = pq.read_table(path)
        frames.append(table.to_pandas())
        raw = (table.schema.metadata or {}).get(b"mlops.segment", b"{}")
        metas.append({**json.loads(raw), "segment_id": path.stem})
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(contract.LOG_FIELDS))
    return rows, metas


def _clone_version(
    world: World, registry: ModelRegistry, key: str, n: int, *, stage: Stage = Stage.STAGING
) -> ModelVersion:
    """A new registered version: v1's pipeline with a marker attribute (other bytes, same scores), gates passed."""
    store = world.env.resources["artifacts"].open()
    v1 = registry.get_version(NAME, 1)
    pipeline = load_model(store, v1.artifact)
    pipeline.serving_test_clone = n
    ref = store_model(store, pipeline)
    assert ref.sha256 != v1.artifact_sha256
    version = registry.register_version(
        NAME,
        ref,
        Lineage(
            data_versions=(key,),
            run_id=f"clone-{n}",
            package_version="test",
            git_sha="0" * 40,
            spec_fingerprint=v1.spec_fingerprint,
        ),
        params={},
        metrics={},
    )
    for gate in MODEL_GATE_NAMES:
        registry.record_gate_result(
            NAME,
            version.version,
            artifact_sha256=ref.sha256,
            gate=gate,
            passed=True,
            data_version=key,
            run_id=f"clone-{n}",
        )
    registry.transition(
        NAME,
        version.version,
        Stage.STAGING,
        actor="test",
        reason="clone",
        evidence={},
        required_gates=MODEL_GATE_NAMES,
    )
    if stage is Stage.PRODUCTION:
        registry.transition(
            NAME,
            version.version,
            Stage.PRODUCTION,
            actor="test",
            reason="clone",
            evidence={},
            required_gates=MODEL_GATE_NAMES,
        )
    return registry.get_version(NAME, version.version)


def _metadata(server: Server) -> dict[str, Any]:
    response = httpx.get(server.base + f"/v2/models/{NAME}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


# -- tests -------------------------------------------------------------------------------------------------------


def test_infer_and_records_answer_with_the_batch_scores_and_log_every_row(
    promoted_world: tuple[World, str], tmp_path: Path
) -> None:
    world, _ = promoted_world
    frame = _rows(5)
    with serving(world, tmp_path) as server:
        one = httpx.post(server.base + f"/v2/models/{NAME}/infer", json=_oip(frame.iloc[:1], "4242"), timeout=10)
        assert one.status_code == 200, one.text
        body = one.json()
        assert (body["model_name"], body["model_version"], body["id"]) == (NAME, "1", "4242")
        outputs = {o["name"]: o for o in body["outputs"]}
        assert outputs["row_id"]["data"] == [4242] and outputs["row_id"]["datatype"] == "INT64"
        assert outputs["model_version"]["data"] == [1]
        many = httpx.post(
            server.base + f"/v2/models/{NAME}/records", json={"records": _records(frame), "id": "req-a"}, timeout=10
        )
        assert many.status_code == 200, many.text
        predictions = many.json()["predictions"]
        assert [p["row_id"] for p in predictions] == contract.row_ids_for("req-a", 5, "int")
        assert {p["arm"] for p in predictions} == {"champion"} and {p["model_version"] for p in predictions} == {1}
        threshold = SPEC.policy.evaluation.decision_threshold
        assert all(p["decision"] == int(p["score"] >= threshold) for p in predictions)
        generated = httpx.post(server.base + f"/v2/models/{NAME}/records", json={"records": _records(frame)[:1]})
        assert generated.status_code == 200
        generated_id = generated.json()["request_id"]
        assert generated.json()["predictions"][0]["row_id"] == int(generated_id)
        meta = _metadata(server)
        assert meta["platform"] == "sklearn" and meta["versions"] == ["1"]
        assert [i["name"] for i in meta["inputs"]] == list(SIG.field_names)
        assert meta["parameters"]["champion"] == 1 and meta["parameters"]["challenger"] is None
        assert httpx.get(server.base + f"/v2/models/{NAME}/versions/1/ready").status_code == 200
        assert httpx.get(server.base + "/v2/models/nope/ready").status_code == 404
        metrics = httpx.get(server.base + "/metrics").text
        assert (
            'mlops_requests_total{arm="champion",code="200",endpoint="records",model="synthetic",version="1"} 2.0'
            in (metrics)
        )
        assert "mlops_request_latency_seconds_bucket" in metrics
    # The same rows scored by the batch path (a data file read, validated and turned into features) score the same.
    csv = tmp_path / "rows.csv"
    frame.to_csv(csv, index=False)
    raw = data_schema(SPEC).validate(read_data_file(csv, SPEC))
    features = build_features(raw, SPEC)
    store = world.env.resources["artifacts"].open()
    registry = world.registry()
    try:
        pipeline = load_model(store, registry.get_version(NAME, 1).artifact)
    finally:
        registry.close()
    batch = dict(zip(features[SPEC.id_column], positive_scores(pipeline, model_inputs(features, SPEC)), strict=True))
    by_position = dict(zip(frame[SPEC.id_column], [p["score"] for p in predictions], strict=True))
    assert by_position == pytest.approx(batch, rel=0, abs=1e-12)
    # Every answered row is in the closed segments, once, as served by v1.
    rows, metas = _segments(world)
    assert sorted(rows["request_id"].unique()) == sorted(["4242", "req-a", generated_id])
    assert len(rows) == 7 and rows["served"].all() and set(rows["model_version"]) == {1}
    assert set(rows["arm"]) == {"champion"} and rows["data_version"].isin([m["segment_id"] for m in metas]).all()
    assert all(m.get("champion_version") == "1" for m in metas)
    assert sorted(rows.loc[rows["request_id"] == "req-a", "row_id"]) == sorted(contract.row_ids_for("req-a", 5, "int"))
    assert [c for c in rows.columns if c.startswith(contract.FEATURE_PREFIX)] == [
        contract.feature_column(f) for f in SIG.feature_names
    ]


def test_bad_requests_are_refused_naming_field_and_rule_and_nothing_is_logged(
    promoted_world: tuple[World, str], tmp_path: Path
) -> None:
    world, _ = promoted_world
    good = _records(_rows(1))[0]
    with serving(world, tmp_path) as server:
        url = server.base + f"/v2/models/{NAME}/records"

        def post(body: Any, path: str = url) -> httpx.Response:
            return httpx.post(path, content=body if isinstance(body, bytes) else json.dumps(body), timeout=10)

        unknown = post({"records": [{**good, "agee": 30}]})
        assert unknown.status_code == 400 and unknown.json()["field"] == "agee", unknown.text
        assert unknown.json()["rule"] == "unknown_field" and "agee" in unknown.json()["error"]
        below = post({"records": [good, {**good, "age": 5}]})
        assert below.status_code == 422 and below.json()["field"] == "age" and below.json()["rule"] == "min"
        assert below.json()["row"] == 1 and "row 1" in below.json()["error"]
        category = post({"records": [{**good, "region": "mars"}]})
        assert category.status_code == 422 and category.json()["rule"] == "categories"
        assert post(b"{not json").status_code == 400
        assert post({"rows": []}).status_code == 400
        oip_bad = post(
            {"inputs": [{"name": "age", "shape": [2], "datatype": "INT64", "data": [30]}]},
            server.base + f"/v2/models/{NAME}/infer",
        )
        assert oip_bad.status_code == 400, oip_bad.text
        assert post(_oip(_rows(1)), server.base + f"/v2/models/{NAME}/versions/2/infer").status_code == 409
        assert post(_oip(_rows(1)), server.base + f"/v2/models/{NAME}/versions/x/infer").status_code == 400
        assert post(_oip(_rows(1)), server.base + "/v2/models/nope/infer").status_code == 404
        assert post({"records": [good], "id": "77"}).status_code == 200
        duplicate = post({"records": [good], "id": "77"})
        assert duplicate.status_code == 409 and "77" in duplicate.json()["error"]
        assert post(_oip(_rows(1), "78"), server.base + f"/v2/models/{NAME}/versions/1/infer").status_code == 200
        metrics = httpx.get(server.base + "/metrics").text
        assert 'mlops_request_errors_total{code="409",endpoint="records",model="synthetic"} 1.0' in metrics
    rows, _ = _segments(world)
    assert sorted(rows["request_id"]) == ["77", "78"]


class _Traffic:
    """One-row requests in a loop from a thread: every status and served version, in order."""

    def __init__(self, base: str) -> None:
        self.url = base + f"/v2/models/{NAME}/records"
        self.results: list[tuple[int, int | None]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._records = _records(_rows(50))
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            i = 0
            while not self._stop.is_set():
                try:
                    response = client.post(self.url, json={"records": [self._records[i % 50]]})
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                version = response.json()["predictions"][0]["model_version"] if response.status_code == 200 else None
                self.results.append((response.status_code, version))
                i += 1

    def __enter__(self) -> "_Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(WAIT_S)

    def served(self, version: int) -> Callable[[], bool]:
        return lambda: bool(self.results) and self.results[-1][1] == version


def test_promotion_and_rollback_swap_the_served_model_without_failing_a_request(
    promoted_world: tuple[World, str], tmp_path: Path
) -> None:
    world, key = promoted_world
    registry = world.registry()
    try:
        with serving(world, tmp_path) as server, _Traffic(server.base) as traffic:
            _wait_until(traffic.served(1), "traffic served by v1", server)
            v2 = _clone_version(world, registry, key, 2, stage=Stage.PRODUCTION)
            _wait_until(traffic.served(v2.version), "traffic served by v2 after its promotion", server)
            registry.rollback(NAME, actor="test", reason="incident", required_gates=MODEL_GATE_NAMES)
            _wait_until(traffic.served(1), "traffic served by v1 after the rollback", server)
            count = len(traffic.results)
            _wait_until(lambda: len(traffic.results) > count + 5, "traffic after the rollback", server)
        assert not traffic.errors and {status for status, _ in traffic.results} == {200}
        versions = [v for _, v in traffic.results]
        first_v2, last_v2 = versions.index(2), len(versions) - 1 - versions[::-1].index(2)
        assert set(versions[:first_v2]) == {1} and set(versions[first_v2 : last_v2 + 1]) == {2}
        assert set(versions[last_v2 + 1 :]) == {1}
    finally:
        registry.close()
    rows, metas = _segments(world)
    assert len(rows) == len(traffic.results)
    # One segment = one routing configuration: every row of a segment was served by the champion it names.
    by_segment = rows.groupby("data_version")["model_version"].unique()
    named = {m["segment_id"]: m["champion_version"] for m in metas}
    assert {segment: [str(v) for v in versions] for segment, versions in by_segment.items()} == {
        segment: [named[segment]] for segment in by_segment.index
    }
    assert [m["champion_version"] for m in metas if m["segment_id"] in by_segment.index] == ["1", "2", "1"]


def test_a_tampered_champion_is_not_served_and_its_version_is_reported_not_ready(
    promoted_world: tuple[World, str], tmp_path: Path
) -> None:
    world, key = promoted_world
    registry = world.registry()
    try:
        with serving(world, tmp_path) as server:
            v2 = _clone_version(world, registry, key, 2)
            path = Path(unquote(urlparse(v2.artifact_uri).path))
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF
            path.chmod(0o644)
            path.write_bytes(bytes(data))
            registry.transition(
                NAME,
                v2.version,
                Stage.PRODUCTION,
                actor="test",
                reason="tampered",
                evidence={},
                required_gates=MODEL_GATE_NAMES,
            )

            def refused() -> dict[str, Any] | None:
                response = httpx.get(server.base + f"/v2/models/{NAME}/versions/{v2.version}/ready", timeout=10)
                body = response.json()
                # Before the watcher's next poll v2 is merely "not named"; then its artifact is refused.
                return body if response.status_code == 503 and "artifact" in body.get("reason", "") else None

            report = _wait_until(refused, "v2 reported not ready", server)
            assert "ArtifactIntegrityError" in report["reason"] and "sha256" in report["reason"], report
            assert report["role"] == "champion" and report["ready"] is False
            answer = httpx.post(server.base + f"/v2/models/{NAME}/records", json={"records": _records(_rows(1))})
            assert answer.status_code == 200 and answer.json()["predictions"][0]["model_version"] == 1
            assert httpx.get(server.base + "/v2/health/ready").status_code == 200
            assert httpx.get(server.base + f"/v2/models/{NAME}/versions/1/ready").status_code == 200
    finally:
        registry.close()


def test_shadow_and_canary_route_rows_as_the_batch_path(promoted_world: tuple[World, str], tmp_path: Path) -> None:
    world, key = promoted_world
    registry = world.registry()
    frame = _rows(300)
    try:
        with serving(world, tmp_path) as server:
            v2 = _clone_version(world, registry, key, 2)
            shadow = rollout.start(rollout.new_rollout(NAME, 1, v2.version, shadow_phase=True), datetime.now(UTC))
            registry.start_rollout(shadow, actor="test", reason="shadow", required_gates=MODEL_GATE_NAMES)
            _wait_until(lambda: _metadata(server)["parameters"]["phase"] == "shadow", "the shadow phase", server)
            answer = httpx.post(
                server.base + f"/v2/models/{NAME}/records",
                json={"records": _records(frame), "id": "shadow"},
                timeout=30,
            )
            assert answer.status_code == 200
            assert {(p["arm"], p["model_version"]) for p in answer.json()["predictions"]} == {("champion", 1)}

            v3 = _clone_version(world, registry, key, 3)
            # The first canary step at 50 %: routed to v3 by the rollout's salt (the shadow rollout is superseded).
            planned = rollout.new_rollout(NAME, 1, v3.version, canary_steps=(0.5, 1.0), shadow_phase=False)
            canary = rollout.start(planned, datetime.now(UTC))
            registry.start_rollout(
                canary, actor="test", reason="canary", supersede=True, required_gates=MODEL_GATE_NAMES
            )
            _wait_until(lambda: _metadata(server)["parameters"]["share"] == 0.5, "the canary at 50 %", server)
            answer = httpx.post(
                server.base + f"/v2/models/{NAME}/records",
                json={"records": _records(frame), "id": "canary"},
                timeout=30,
            )
            assert answer.status_code == 200
            predictions = answer.json()["predictions"]
    finally:
        registry.close()
    row_ids = [p["row_id"] for p in predictions]
    expected = assign_arms(pd.Series(row_ids), 0.5, canary.salt)
    assert [p["arm"] for p in predictions] == list(expected)
    assert 0 < sum(expected == "challenger") < len(expected)
    assert [p["model_version"] for p in predictions] == [v3.version if a == "challenger" else 1 for a in expected]
    rows, metas = _segments(world)
    shadow_rows = rows[rows["request_id"] == "shadow"]
    assert len(shadow_rows) == 600  # every row by both models
    assert shadow_rows.loc[shadow_rows["arm"] == "champion", "served"].all()
    assert not shadow_rows.loc[shadow_rows["arm"] == "challenger", "served"].any()
    assert set(shadow_rows.loc[shadow_rows["arm"] == "challenger", "model_version"]) == {v2.version}
    canary_rows = rows[rows["request_id"] == "canary"]
    served = canary_rows[canary_rows["served"]].set_index("row_id")["arm"]
    assert served.loc[row_ids].tolist() == list(expected)
    assert len(canary_rows) == 600
    segment_of = {m["segment_id"]: m for m in metas}
    canary_meta = segment_of[canary_rows["data_version"].iloc[0]]
    assert (canary_meta["challenger_version"], float(canary_meta["challenger_share"]), canary_meta["salt"]) == (
        str(v3.version),
        0.5,
        canary.salt,
    )


def _wal_rows(wal: Path) -> set[str]:
    """The request ids of every complete batch in the write-ahead files under ``wal``."""
    ids: set[str] = set()
    for path in wal.rglob(f"*{contract.WAL_SUFFIX}"):
        try:
            with pa.OSFile(str(path)) as source:
                reader = pa.ipc.open_stream(source)
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        break
                    ids.update(batch.column("request_id").to_pylist())
        except (pa.ArrowInvalid, OSError):
            continue  # a torn tail, or the file not started yet
    return ids


def test_a_sigkilled_server_loses_no_answered_request(promoted_world: tuple[World, str], tmp_path: Path) -> None:
    world, _ = promoted_world
    records = _records(_rows(20))
    answered: list[str] = []
    with serving(world, tmp_path, "--segment-max-age-seconds", "3600", kill=True) as server:
        for i, record in enumerate(records):
            response = httpx.post(
                server.base + f"/v2/models/{NAME}/records", json={"records": [record], "id": f"k{i}"}, timeout=10
            )
            assert response.status_code == 200
            answered.append(f"k{i}")
        # Past a flush: every answered request is in the write-ahead file.
        _wait_until(lambda: set(answered) <= _wal_rows(tmp_path / "wal"), "the write-ahead flush", server)
    assert server.proc.returncode == -signal.SIGKILL
    rows, _ = _segments(world)
    assert rows.empty  # nothing closed: the segment was open when the server died
    with serving(world, tmp_path):  # the restart closes what the killed server left
        pass
    rows, _ = _segments(world)
    assert sorted(rows["request_id"]) == sorted(answered)
    assert not list((tmp_path / "wal").rglob(f"*{contract.WAL_SUFFIX}"))


def test_two_workers_serve_log_and_report_metrics_together(promoted_world: tuple[World, str], tmp_path: Path) -> None:
    world, _ = promoted_world
    records = _records(_rows(30))
    with serving(world, tmp_path, "--workers", "2") as server:
        # /v2/health/ready answers from whichever worker accepts it: wait (a condition, never a time) until both
        # installed their first snapshot, so that the requests below can reach both (on a busy machine the second
        # worker's start-up could outlast all 30 requests and the scrape: the 2.0 line was missing once, full run).
        swapped = 'mlops_swaps_total{model="synthetic"} 2.0'
        _wait_until(lambda: swapped in httpx.get(server.base + "/metrics").text, "both workers' first snapshot", server)
        for i, record in enumerate(records):
            # A new connection per request, so that both workers get some.
            response = httpx.post(
                server.base + f"/v2/models/{NAME}/records",
                json={"records": [record], "id": f"w{i}"},
                headers={"Connection": "close"},
                timeout=10,
            )
            assert response.status_code == 200, response.text
        metrics = httpx.get(server.base + "/metrics").text
        # Counters of every worker, summed (prometheus_client's multiprocess mode).
        assert (
            'mlops_requests_total{arm="champion",code="200",endpoint="records",model="synthetic",version="1"} 30.0'
            in (metrics)
        )
        assert 'mlops_swaps_total{model="synthetic"} 2.0' in metrics  # each worker installed its first snapshot
    rows, metas = _segments(world)
    assert sorted(rows["request_id"]) == sorted(f"w{i}" for i in range(30))
    assert len({m["worker_tag"] for m in metas}) >= 1
    assert not list((tmp_path / "wal").rglob(f"*{contract.WAL_SUFFIX}"))


def test_the_served_models_are_the_declared_ones(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlops_assets.components import declared_models
    from mlops_assets.serving import cli

    monkeypatch.delenv("MLOPS_SPEC", raising=False)
    assert [m.name for m in declared_models()] == ["flights", "synthetic"]
    assert [m["name"] for m in cli._options(cli._parser().parse_args([]))["models"]] == ["flights", "synthetic"]
    monkeypatch.setenv("MLOPS_SPEC", "synthetic")
    assert [(m.name, m.spec().name) for m in declared_models()] == [("synthetic", "synthetic")]
    assert cli.main(["--model", "nope"]) == 2
    assert "unknown model(s) nope" in capsys.readouterr().err
    assert cli.main(["--spec", "synthetic"]) == 2  # --spec needs exactly one --model
