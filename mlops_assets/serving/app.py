"""The ``mlops-serve`` ASGI application: Open Inference Protocol v2 REST over registry-driven deployments.

Endpoints (`Open Inference Protocol v2 <https://kserve.github.io/website/docs/concepts/architecture/data-plane/
v2-protocol/>`_, plus a plain-JSON records endpoint and Prometheus metrics):

* ``GET /v2/health/live`` — 200 while the process runs; ``GET /v2/health/ready`` — 200 when every configured
  model has a serving snapshot, else 503 (naming the models that have none and why).
* ``GET /v2`` — server metadata; ``GET /v2/models/{name}`` — model metadata (inputs/outputs of the request
  signature, the served versions, and ``parameters``: champion, challenger, phase, share).
* ``GET /v2/models/{name}/ready``; ``GET /v2/models/{name}/versions/{v}/ready`` (a version whose artifact or gate
  evidence failed: 503 with the reason; 404 for an unknown model).
* ``POST /v2/models/{name}/infer`` (and ``/versions/{v}/infer``: 400 unless ``v`` is a version number, 409 unless it
  is the served champion): OIP request ``{"id"?, "inputs": [tensors], "parameters"?}`` → ``{"model_name",
  "model_version" (the champion), "id" (the request id), "outputs": [score FP64, decision INT64, model_version INT64
  (per row: the version that served it), row_id]}``.
* ``POST /v2/models/{name}/records`` — ``{"records": [{...}], "id"?}`` → ``{"request_id", "model_name",
  "predictions": [{"row_id", "score", "decision", "model_version", "arm"}]}``.
* ``GET /metrics`` — Prometheus text: ``mlops_requests_total{model,version,arm,endpoint,code}``,
  ``mlops_request_errors_total{model,endpoint,code}``, ``mlops_request_latency_seconds{model,version,arm}``
  (buckets 0.5 ms … 1 s), ``mlops_swaps_total{model}``, ``mlops_segment_rows_total{model}``,
  ``mlops_registry_errors_total{model}``, ``mlops_log_errors_total{model}``; aggregated over worker processes when
  ``PROMETHEUS_MULTIPROC_DIR`` is set (prometheus_client's multiprocess mode; the CLI sets it for ``--workers`` > 1).

Per request: the deployment snapshot is taken once; the request id is the client's ``id`` or
:func:`~mlops_assets.ml.serving_contract.new_request_id`; row ids are
:func:`~mlops_assets.ml.serving_contract.row_ids_for`
(a row id already logged in the open segment → 409, nothing logged); records are validated by the request signature
(→ 400/422 naming row, field and rule, nothing logged), typed as a data file's rows, turned into model inputs and
feature hashes (:func:`mlops_assets.ml.routing.feature_hash_array`) and routed by
:func:`mlops_assets.ml.routing.assign_arms` with the snapshot's share and salt — the batch path's function and
inputs. The served arms score their rows and the response is sent; then (a Starlette background task) the other
model scores them too (shadow challenger, or the champion's score of a challenger-served row: the batch log has
both), the feature hashes are computed and one log row per (row, model) is appended to the segment writer.

A request's CPU work runs in the async handler itself (no thread hop; model inference dominates it). The snapshot
swap and the segment rotation run on the event loop too (:class:`~mlops_assets.serving.deployment.ModelWatcher`'s
``swap_runner``), between requests; a log batch is stamped with the segment open when its request was scored, and
the writer keeps a rotated segment open for ``drain_seconds`` (2 s) for such batches, so a segment holds the rows of
one routing configuration (one segment = one routing configuration; a batch later than that is re-stamped into the
open segment and counted by the writer as ``rows_restamped``).

Shutdown (uvicorn lifespan: SIGTERM / SIGINT): the watchers stop, every writer is closed (queued rows flushed, the
open segment closed into the sink), then ``on_shutdown``. Pure serving core: no Dagster import (the CLI opens the
stores).
"""

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mlops_assets.ml import serving_contract as contract
from mlops_assets.ml.routing import CHALLENGER_ARM, CHAMPION_ARM, assign_arms, feature_hash_array
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.training import positive_scores
from mlops_assets.serving.deployment import (
    Deployment,
    ModelWatcher,
    RegistryReader,
    readiness_by_version,
)
from mlops_assets.serving.segments import ScoredArm, SegmentSink, SegmentWriter, log_batch, recover, segment_schema
from mlops_assets.serving.signature import (
    RequestError,
    model_inputs_of_records,
    parse_oip_inputs,
    parse_records,
)
from mlops_assets.storage.artifacts.store import ArtifactStore

LOG = logging.getLogger(__name__)

#: Latency histogram buckets, seconds: 0.5 ms … 1 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
#: The environment variable of prometheus_client's multiprocess mode (a directory shared by the workers).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class ServedModelConfig:
    """One model to serve.

    Attributes:
        name: Registered model name.
        spec: Its dataset spec (named after the model).
        sink: Where its closed prediction-log segments go (``serving_log.at(name)``: ``LandingZone.put``).
    """

    name: str
    spec: DatasetSpec
    sink: SegmentSink


@dataclass(frozen=True)
class AppConfig:
    """What :func:`create_app` serves and where it logs.

    Attributes:
        models: The models (at least one, distinct names).
        registry: The model registry (reads only).
        artifacts: The artifact store (reads verify digest, size and HMAC).
        required_gates: Gate names a served version's evidence must have passed (``mlops_assets.gates.
            MODEL_GATE_NAMES``).
        wal_root: Write-ahead folder root; a model's open segment is under ``<wal_root>/<model>/<worker tag>/``
            (local disk: in production the pod's own volume).
        refresh_seconds: Seconds between registry polls.
        segment_max_rows: A segment is closed after this many log rows.
        segment_max_age_seconds: … or this many seconds after it opened, once it holds the model spec's
            ``policy.data.min_rows`` served rows (so a quiet server's segments can pass their versions' row floor).
        flush_interval_seconds: Seconds between write-ahead flushes (an answered request survives a SIGKILL once
            one passed).
        retry_seconds: Seconds before a version that failed to load is tried again while the registry is unchanged.
        worker_tag: This process's tag in segment ids (``None``: a fresh :func:`~contract.new_worker_tag`).
        on_shutdown: Called last at shutdown (the CLI closes the stores).
    """

    models: Sequence[ServedModelConfig]
    registry: RegistryReader
    artifacts: ArtifactStore
    required_gates: Sequence[str]
    wal_root: Path
    refresh_seconds: float = 1.0
    segment_max_rows: int = 100_000
    segment_max_age_seconds: float = 300.0
    flush_interval_seconds: float = 0.05
    retry_seconds: float = 30.0
    worker_tag: str | None = None
    on_shutdown: Callable[[], None] | None = None


def recover_wal_tree(wal_root: Path, model: str, sink: SegmentSink) -> list[str]:
    """Close every write-ahead file a killed server left for ``model`` (every worker's folder) into ``sink``.

    Run before any worker starts (``mlops-serve`` does): a worker only recovers its own, fresh, folder.

    Returns:
        The segment ids closed, in folder order.
    """
    root = Path(wal_root) / model
    closed: list[str] = []
    if not root.is_dir():
        return closed
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        closed += recover(folder, sink)
        if folder != root:
            with contextlib.suppress(OSError):
                folder.rmdir()  # empty now; a folder still holding a WAL (sink failed) stays for the next start
    return closed


class _Metrics:
    """The server's Prometheus metrics (one registry per app; multiprocess files when the env var is set)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mlops_requests",
            "Inference requests answered, by model, version and arm that served, endpoint and HTTP status.",
            ["model", "version", "arm", "endpoint", "code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "mlops_request_errors",
            "Inference requests refused or failed (4xx/5xx), by model, endpoint and HTTP status.",
            ["model", "endpoint", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlops_request_latency_seconds",
            "Request received to response ready, seconds, of answered inference requests.",
            ["model", "version", "arm"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.swaps = Counter(
            "mlops_swaps", "Deployment snapshots installed (model swaps).", ["model"], registry=self.registry
        )
        self.segment_rows = Counter(
            "mlops_segment_rows", "Prediction-log rows appended to segments.", ["model"], registry=self.registry
        )
        self.log_errors = Counter(
            "mlops_log_errors",
            "Answered requests whose prediction-log rows could not be appended.",
            ["model"],
            registry=self.registry,
        )
        self.registry_errors = Counter(
            "mlops_registry_errors", "Registry reads that failed (serving went on).", ["model"], registry=self.registry
        )

    def exposition(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            merged = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)


class _BadBody(Exception):
    """A request body that is not a JSON object of the endpoint's shape (HTTP 400)."""


class _Conflict(Exception):
    """A request whose row ids are already in the open segment (HTTP 409)."""


class _ModelRuntime:
    """One served model inside the app: its watcher, its segment writer and the row ids of its open segment."""

    def __init__(self, model: ServedModelConfig, config: AppConfig, worker_tag: str, metrics: _Metrics) -> None:
        self.name = model.name
        self.model = model
        self.metrics = metrics
        self.worker_tag = worker_tag
        self.watcher = ModelWatcher(
            model.name,
            model.spec,
            config.registry,
            config.artifacts,
            required_gates=config.required_gates,
            refresh_seconds=config.refresh_seconds,
            retry_seconds=config.retry_seconds,
            on_swap=self._on_swap,
            on_registry_error=metrics.registry_errors.labels(model.name).inc,
        )
        self.signature = self.watcher.signature
        self.schema = segment_schema(self.signature)
        self.wal_dir = Path(config.wal_root) / model.name / worker_tag
        self.writer = SegmentWriter(
            wal_dir=self.wal_dir,
            sink=model.sink,
            schema=self.schema,
            worker_tag=worker_tag,
            max_rows=config.segment_max_rows,
            max_age_seconds=config.segment_max_age_seconds,
            # Age alone closes a segment once it can pass its data version's row floor (row_count_above_floor).
            min_served_rows=max(1, model.spec.policy.data.min_rows),
            flush_interval_seconds=config.flush_interval_seconds,
        )
        self.opened = False
        self.open_ids: set[Any] = set()
        self.ids_segment = ""

    def _on_swap(self, deployment: Deployment) -> None:
        # Runs inside the swap, on the event loop: no request is between taking its snapshot and appending.
        metadata = deployment.segment_metadata(self.worker_tag)
        if self.opened:
            self.writer.rotate(metadata)
        else:
            self.writer.open(metadata)
            self.opened = True
        self.open_ids = set()
        self.ids_segment = self.writer.segment_id
        self.metrics.swaps.labels(self.name).inc()

    def score(
        self, deployment: Deployment, request_id: str, records: list[dict[str, Any]], started: float
    ) -> tuple[dict[str, Any], Callable[[], None]]:
        """Score ``records`` under ``deployment`` with the arms that serve them; return the results and the log step.

        The log step (run after the response: a Starlette background task) scores the rows with the model that did
        not serve them (shadow challenger, or the champion's score of a challenger-served row, as the batch log
        has both), computes the feature hashes and appends the :func:`log_batch` batch. The batch is stamped with
        the segment open when the request was scored, so it lands there even after a swap (the writer keeps a
        rotated segment open ``drain_seconds`` for such batches).

        Returns:
            ``({"row_ids", "scores", "decisions", "versions", "arms", "latency_s"}, log step)`` (lists in row
            order; ``latency_s``: request received to served scores ready).

        Raises:
            _Conflict: a row id is already in the open segment (nothing is logged).
            RequestError: values the signature refuses (nothing is logged).
        """
        sig = deployment.signature
        row_ids = contract.row_ids_for(request_id, len(records), sig.id_kind)
        segment_id = self.writer.segment_id
        if segment_id != self.ids_segment:  # the writer closed a full or old segment: a fresh id set
            self.open_ids, self.ids_segment = set(), segment_id
        clash = [r for r in row_ids if r in self.open_ids]
        if clash or len(set(row_ids)) != len(row_ids):
            raise _Conflict(
                f"row id {clash[0] if clash else row_ids[0]!r} of request {request_id!r} is already in the open "
                "prediction-log segment: a request id is logged once (send a new id)"
            )
        # The model inputs straight from the parsed records: equal to features.model_inputs of the typed frame (the
        # batch path; test_serving_signature), at a quarter of its cost.
        inputs = model_inputs_of_records(sig, records)
        n = len(records)
        challenger = deployment.challenger
        if challenger is not None:
            routing = deployment.routing
            arms = assign_arms(pd.Series(row_ids), routing.challenger_share, routing.salt)
        else:
            arms = np.full(n, CHAMPION_ARM, dtype=object)
        to_challenger = np.asarray(arms == CHALLENGER_ARM, dtype=bool)
        threshold = deployment.decision_threshold
        models = [(CHAMPION_ARM, deployment.champion, ~to_challenger)]
        if challenger is not None:
            models.append((CHALLENGER_ARM, challenger, to_challenger))
        scores = {arm: positive_scores(v.pipeline, inputs) for arm, v, served in models if served.any()}
        served_scores = np.where(to_challenger, scores.get(CHALLENGER_ARM, 0.0), scores.get(CHAMPION_ARM, 0.0))
        versions = np.where(to_challenger, challenger.version if challenger else 0, deployment.champion.version)
        latency_s = time.perf_counter() - started
        self.open_ids.update(row_ids)
        scored_at = datetime.now(UTC)

        def log() -> None:
            scored = []
            for arm, version, served in models:
                arm_scores = scores[arm] if arm in scores else positive_scores(version.pipeline, inputs)
                arm_scores = np.asarray(arm_scores, dtype=np.float64)
                scored.append(
                    ScoredArm(
                        model_version=version.version,
                        arm=arm,
                        served=served,
                        scores=arm_scores,
                        decisions=(arm_scores >= threshold).astype(np.int64),
                    )
                )
            batch = log_batch(
                sig,
                self.schema,
                segment_id=segment_id,
                request_id=request_id,
                row_ids=row_ids,
                records=records,
                inputs=inputs,
                feature_hashes=feature_hash_array(inputs),
                scored=scored,
                scored_at=scored_at,
                latency_ms=latency_s * 1000.0,
            )
            self.writer.append(batch)
            self.metrics.segment_rows.labels(self.name).inc(batch.num_rows)

        result = {
            "row_ids": list(row_ids),
            "scores": np.asarray(served_scores, dtype=np.float64).tolist(),
            "decisions": (served_scores >= threshold).astype(np.int64).tolist(),
            "versions": versions.astype(np.int64).tolist(),
            "arms": [str(a) for a in arms],
            "latency_s": latency_s,
        }
        return result, log


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _package_version() -> str:
    try:
        return importlib_metadata.version("mlops_assets")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _on_loop(loop: asyncio.AbstractEventLoop, stopping: threading.Event) -> Callable[[Callable[[], None]], None]:
    """A swap runner: run the action on ``loop`` and wait until it ran (the watcher thread calls it)."""

    def run(action: Callable[[], None]) -> None:
        done = threading.Event()
        failure: list[BaseException] = []

        def call() -> None:
            try:
                action()
            except BaseException as exc:
                failure.append(exc)
            finally:
                done.set()

        loop.call_soon_threadsafe(call)
        while not done.wait(0.1):
            if stopping.is_set() or loop.is_closed():
                raise RuntimeError("the server is shutting down: swap not installed")
        if failure:
            raise failure[0]

    return run


def create_app(config: AppConfig) -> Starlette:
    """The ASGI application serving ``config.models`` (see the module docstring for the endpoints).

    Start-up (lifespan) polls the registry once per model, off the event loop, so a model with a verified champion
    is ready when the server starts accepting; then each model's watcher polls every ``refresh_seconds``.

    Raises:
        ValueError: no model, or two models of one name.
    """
    names = [m.name for m in config.models]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"mlops-serve needs at least one model and distinct names, got {names}")
    worker_tag = config.worker_tag or contract.new_worker_tag()
    metrics = _Metrics()
    runtimes = {m.name: _ModelRuntime(m, config, worker_tag, metrics) for m in config.models}
    stopping = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        for runtime in runtimes.values():
            runtime.watcher.swap_runner = _on_loop(loop, stopping)
            await loop.run_in_executor(None, runtime.watcher.refresh)
            runtime.watcher.start()
        try:
            yield
        finally:
            stopping.set()
            for runtime in runtimes.values():
                await asyncio.to_thread(runtime.watcher.stop)
            for runtime in runtimes.values():
                if runtime.opened:
                    try:
                        await asyncio.to_thread(runtime.writer.close)
                        with contextlib.suppress(OSError):  # this worker's folder, empty after a clean close
                            runtime.wal_dir.rmdir()
                    except Exception:
                        LOG.exception(
                            "%s: closing the prediction log failed (its WAL stays for recovery)", runtime.name
                        )
            if config.on_shutdown is not None:
                config.on_shutdown()

    def runtime_of(request: Request) -> _ModelRuntime | None:
        return runtimes.get(request.path_params["name"])

    def unknown(name: str) -> JSONResponse:
        return _error(404, f"unknown model {name!r}: this server serves {', '.join(sorted(runtimes))}")

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        waiting = {
            name: rt.watcher.status().last_error or "no verified champion yet"
            for name, rt in runtimes.items()
            if rt.watcher.current is None
        }
        if waiting:
            return JSONResponse({"ready": False, "models": waiting}, status_code=503)
        return JSONResponse({"ready": True})

    async def server_metadata(request: Request) -> Response:
        return JSONResponse(
            {"name": "mlops-serve", "version": _package_version(), "extensions": [], "models": sorted(runtimes)}
        )

    async def model_metadata(request: Request) -> Response:
        runtime = runtime_of(request)
        if runtime is None:
            return unknown(request.path_params["name"])
        deployment = runtime.watcher.current
        body: dict[str, Any] = {**runtime.signature.metadata(), "name": runtime.name, "platform": "sklearn"}
        if deployment is None:
            body["versions"] = []
            body["parameters"] = {"champion": None, "challenger": None, "phase": "none", "share": 0.0}
        else:
            challenger = deployment.challenger.version if deployment.challenger else None
            body["versions"] = [str(v) for v in (deployment.champion.version, challenger) if v is not None]
            body["parameters"] = {
                "champion": deployment.champion.version,
                "challenger": challenger,
                "phase": deployment.routing.phase,
                "share": deployment.routing.challenger_share,
                "salt": deployment.routing.salt,
                "decision_threshold": deployment.decision_threshold,
            }
        return JSONResponse(body)

    async def model_ready(request: Request) -> Response:
        runtime = runtime_of(request)
        if runtime is None:
            return unknown(request.path_params["name"])
        if runtime.watcher.current is None:
            reason = runtime.watcher.status().last_error or "no verified champion yet"
            return JSONResponse({"name": runtime.name, "ready": False, "reason": reason}, status_code=503)
        return JSONResponse({"name": runtime.name, "ready": True})

    async def version_ready(request: Request) -> Response:
        runtime = runtime_of(request)
        if runtime is None:
            return unknown(request.path_params["name"])
        text = request.path_params["version"]
        if not text.isdigit():
            return _error(400, f"version {text!r} is not a version number")
        version = int(text)
        readiness = readiness_by_version(runtime.watcher.status()).get(version)
        body: dict[str, Any] = {"name": runtime.name, "version": text}
        if readiness is None:
            body.update(ready=False, reason=f"v{version} is not named by the champion or challenger alias")
            return JSONResponse(body, status_code=503)
        deployment = runtime.watcher.current
        served = deployment is not None and version in (
            deployment.champion.version,
            deployment.challenger.version if deployment.challenger else None,
        )
        body.update(ready=readiness.ready and served, role=readiness.role)
        if not readiness.ready:
            body["reason"] = readiness.reason
        elif not served:
            body["reason"] = f"v{version} verified but not served now"
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    async def _read_json(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _BadBody(f"the request body is not JSON: {exc}") from exc

    async def handle(request: Request, endpoint: str, version: str | None = None) -> Response:
        started = time.perf_counter()
        name = request.path_params["name"]
        runtime = runtimes.get(name)
        if runtime is None:
            metrics.errors.labels(name, endpoint, "404").inc()
            return unknown(name)
        # The snapshot, taken once: a swap during this request does not change what serves it.
        deployment = runtime.watcher.current

        def refuse(status: int, message: str, **details: Any) -> Response:
            metrics.errors.labels(name, endpoint, str(status)).inc()
            return JSONResponse({"error": message, **details}, status_code=status)

        if deployment is None:
            reason = runtime.watcher.status().last_error or "no version is in Production yet"
            return refuse(503, f"model {name!r} has no verified champion to serve ({reason})")
        if version is not None:
            if not version.isdigit():
                return refuse(400, f"version {version!r} is not a version number")
            if int(version) != deployment.champion.version:
                return refuse(
                    409,
                    f"v{version} is not the served champion of {name!r} (v{deployment.champion.version}); "
                    f"POST /v2/models/{name}/infer is routed by the rollout",
                )
        try:
            body = await _read_json(request)
            if not isinstance(body, dict):
                raise _BadBody("the request body must be a JSON object")
            request_id = body.get("id")
            if request_id is None or request_id == "":
                request_id = contract.new_request_id(deployment.signature.id_kind)
            elif not isinstance(request_id, str):
                raise _BadBody(f'the request "id" must be a string, got {type(request_id).__name__}')
            if endpoint == "records":
                if "records" not in body:
                    raise _BadBody('the body needs "records": a list of JSON objects, one per row')
                records = parse_records(deployment.signature, body["records"])
            else:
                if "inputs" not in body:
                    raise _BadBody('an OIP request needs "inputs": a list of tensors, one per field')
                records = parse_oip_inputs(deployment.signature, body["inputs"])
            result, log_step = runtime.score(deployment, request_id, records, started)
        except RequestError as exc:
            return refuse(exc.status, str(exc), field=exc.field, rule=exc.rule, row=exc.row)
        except _BadBody as exc:
            return refuse(400, str(exc))
        except _Conflict as exc:
            return refuse(409, str(exc))
        except Exception as exc:  # a model or log failure: the request is not answered, nothing served
            LOG.exception("%s: request failed", name)
            return refuse(500, f"scoring failed: {type(exc).__name__}: {exc}")
        arms = set(result["arms"])
        arm = arms.pop() if len(arms) == 1 else "mixed"
        served_version = str(result["versions"][0]) if arm != "mixed" else str(deployment.champion.version)
        metrics.requests.labels(name, served_version, arm, endpoint, "200").inc()
        metrics.latency.labels(name, served_version, arm).observe(result["latency_s"])

        def log_after_response() -> None:
            try:
                log_step()
            except Exception:  # the answer is out; the rows could not be logged: say so loudly
                metrics.log_errors.labels(name).inc()
                LOG.exception("%s: request %s answered but its prediction-log rows were not appended", name, request_id)

        background = BackgroundTask(log_after_response)
        if endpoint == "records":
            return JSONResponse(
                background=background,
                content={
                    "request_id": request_id,
                    "model_name": name,
                    "predictions": [
                        {"row_id": r, "score": s, "decision": d, "model_version": v, "arm": a}
                        for r, s, d, v, a in zip(
                            result["row_ids"],
                            result["scores"],
                            result["decisions"],
                            result["versions"],
                            result["arms"],
                            strict=True,
                        )
                    ],
                },
            )
        n = len(result["row_ids"])
        row_type = "INT64" if deployment.signature.id_kind == "int" else "BYTES"
        return JSONResponse(
            {
                "model_name": name,
                "model_version": str(deployment.champion.version),
                "id": request_id,
                "outputs": [
                    {"name": "score", "datatype": "FP64", "shape": [n], "data": result["scores"]},
                    {"name": "decision", "datatype": "INT64", "shape": [n], "data": result["decisions"]},
                    {"name": "model_version", "datatype": "INT64", "shape": [n], "data": result["versions"]},
                    {"name": "row_id", "datatype": row_type, "shape": [n], "data": result["row_ids"]},
                ],
            },
            background=background,
        )

    async def infer(request: Request) -> Response:
        return await handle(request, "infer")

    async def infer_version(request: Request) -> Response:
        return await handle(request, "infer", request.path_params["version"])

    async def records(request: Request) -> Response:
        return await handle(request, "records")

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route("/v2/models/{name}", model_metadata),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/versions/{version}/ready", version_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer_version, methods=["POST"]),
        Route("/v2/models/{name}/records", records, methods=["POST"]),
        Route("/metrics", metrics_endpoint),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runtimes = runtimes
    app.state.worker_tag = worker_tag
    return app


def status_of(app: Starlette) -> Mapping[str, Any]:
    """Each served model's watcher status and writer stats (for logs and tests)."""
    return {
        name: {"watcher": rt.watcher.status(), "writer": rt.writer.stats()} for name, rt in app.state.runtimes.items()
    }
