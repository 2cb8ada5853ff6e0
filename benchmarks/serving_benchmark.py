"""Benchmark of online serving: ``mlops-serve`` against a floor and MLflow's ``mlflow models serve``.

One-row requests of a real flights record, on loopback, to servers that all serve the SAME fitted scikit-learn
pipeline (the flights champion, trained once here on January 2013 from the packaged data, no download):

* **floor**: a bare Starlette app (written by this script, run by uvicorn) that parses the same JSON body
  (``{"records": [{...}]}``), builds a one-row frame of the model inputs and calls ``predict_proba``; nothing else
  (no validation, routing, logging or metrics). 1 and 4 uvicorn workers.
* **mlops-serve**: the product (``/v2/models/flights/records``, the same body), on a throwaway local registry and
  artifact store where the champion was registered with passing gate evidence for every model gate; 1 and 4
  workers, each without and with a **shadow challenger** (a second version, trained on February, holding the
  challenger alias in a rollout in its shadow phase: every row is scored by both models, the challenger's score is
  logged, not returned). Every answered request is logged to the prediction-log segments.
* **MLflow** (when its virtualenv is given): the same pipeline saved with ``mlflow.sklearn.save_model``
  (``pyfunc_predict_fn="predict_proba"``), served by ``mlflow models serve --env-manager local`` (1 and 4 workers),
  request ``{"dataframe_records": [the same record]}`` on ``/invocations``.

Before measuring, one request to each server is checked: every server returns the score of the pipeline's own
``predict_proba`` on that record (to 1e-9).

Load: ``wrk`` (Debian's package; one generator thread, a Lua script posts the body and stops after a fixed number
of responses), closed loop: a fixed number of connections each sending its next request when the previous one is
answered. Per server and repetition: a warm-up run (discarded), a **latency** run (1 connection: sequential
requests; the per-request latency wrk measures client-side, from writing the request to reading the response) and
a **load** run (``--connections`` connections: throughput, and the latency under that load). Servers stay up for
the whole run (idle while another is measured); repetitions are interleaved (the server order rotates each
repetition). The generator's CPU time (``getrusage`` of the wrk child) and the servers' (``/proc``, the server
process and its workers) are recorded per run. Ratios are the medians of the per-repetition ratios (range).

After the measurements every server is stopped with SIGTERM; the rows of the prediction-log segments
``mlops-serve`` wrote are counted against the requests wrk saw answered.

Usage (from the repository root; wrk: ``apt-get install -y wrk``; MLflow in its own virtualenv, never the
project's: ``python -m venv /tmp/mlflow-venv && /tmp/mlflow-venv/bin/pip install mlflow==3.17.2
scikit-learn==<the project's> uvloop httptools``)::

    python benchmarks/serving_benchmark.py --repeats 5 --mlflow-venv /tmp/mlflow-venv
    python benchmarks/serving_benchmark.py --repeats 5 --output /tmp/serving.md     # without MLflow
    python benchmarks/serving_benchmark.py --render /tmp/serving-run/results.json   # page from saved results

Writes ``docs/benchmarks/serving.md`` by default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_common import cpu_model, load_average, write_page

REPO = Path(__file__).resolve().parents[1]
MODEL = "flights"
#: Columns a caller does not know before departure (post-outcome; nullable in the spec, so a request omits them).
POST_OUTCOME = ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time")
TARGET_P99_MS = 10.0
TARGET_RPS_PER_WORKER = 1000.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

FLOOR_APP = '''\
"""The floor: parse the JSON body, one frame of the model inputs, predict_proba. Nothing else."""
import json
import os
import pickle

import pandas as pd
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

with open(os.environ["FLOOR_MODEL"], "rb") as f:
    PIPELINE = pickle.load(f)
COLUMNS = json.loads(os.environ["FLOOR_COLUMNS"])
THRESHOLD = float(os.environ["FLOOR_THRESHOLD"])


async def records(request):
    body = await request.json()
    frame = pd.DataFrame.from_records(body["records"], columns=COLUMNS)
    scores = PIPELINE.predict_proba(frame)[:, 1]
    return JSONResponse({"predictions": [{"score": float(s), "decision": int(s >= THRESHOLD)} for s in scores]})


async def health(request):
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/records", records, methods=["POST"]), Route("/health", health)])
'''

# wrk runs for its -d duration even when every thread stopped: the thread that reaches the count stops and sends
# wrk itself SIGINT (LuaJIT's FFI), on which wrk ends the run and reports the time actually elapsed.
WRK_SCRIPT = """\
local ffi = require("ffi")
ffi.cdef[[ int kill(int pid, int sig); int getpid(void); ]]
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
local limit = {limit}
local count = 0
function response(status, headers, body)
  count = count + 1
  if count == limit then
    wrk.thread:stop()
    ffi.C.kill(ffi.C.getpid(), 2)
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


# --------------------------------------------------------------------------------------------------
# Model, registry, record
# --------------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    record: dict[str, Any]
    expected_score: float
    champion_pickle: Path
    feature_columns: list[str]
    threshold: float
    data_dirs: dict[str, Path]  # "plain" (champion only), "shadow" (champion + challenger in shadow)
    train_rows: dict[str, int]
    in_process: dict[str, list[float]]  # per block: median ms of predict_proba calls on the one-row frame


def _features(path: Path, spec: Any) -> Any:
    from mlops_assets.ml.features import build_features
    from mlops_assets.ml.validation import read_data_file, validate_raw

    result = validate_raw(read_data_file(path, spec), spec, str(path))
    assert result.typed is not None, path
    return build_features(result.typed, spec)


def _register(data_dir: Path, models: Sequence[tuple[Any, str]], shadow: bool) -> None:
    """Register ``models`` (pipeline, data version) as v1, v2, … with passing evidence for every model gate.

    v1 goes to Production (champion); with ``shadow``, v2 goes to Staging and a rollout in its shadow phase names
    it challenger (``ModelRegistry.start_rollout``), as ``deployment_decision`` starts one.
    """
    from mlops_assets.gates import MODEL_GATE_NAMES
    from mlops_assets.ml import rollout
    from mlops_assets.storage.artifacts.skops_codec import store_model
    from mlops_assets.storage.artifacts.store import LocalArtifactStore
    from mlops_assets.storage.registry import Lineage, ModelRegistry

    data_dir.mkdir(parents=True, exist_ok=True)
    store = LocalArtifactStore(data_dir / "artifacts")  # the local environment's artifact root
    registry = ModelRegistry(f"sqlite:///{data_dir / 'registry.db'}")
    try:
        for i, (pipeline, data_version) in enumerate(models, start=1):
            ref = store_model(store, pipeline)
            lineage = Lineage(
                data_versions=(data_version,),
                run_id=f"serving-benchmark-train-{i}",
                package_version="benchmark",
                git_sha="benchmark",
                spec_fingerprint="benchmark",
            )
            mv = registry.register_version(MODEL, ref, lineage, {}, {}, "serving benchmark")
            for gate in MODEL_GATE_NAMES:
                registry.record_gate_result(
                    MODEL,
                    mv.version,
                    artifact_sha256=mv.artifact_sha256,
                    gate=gate,
                    passed=True,
                    data_version=data_version,
                    run_id=f"serving-benchmark-eval-{i}",
                    summary="recorded by benchmarks/serving_benchmark.py",
                )

        def move(version: int, stage: str) -> None:
            registry.transition(
                MODEL,
                version,
                stage,
                actor="serving-benchmark",
                reason="benchmark set-up",
                evidence={},
                required_gates=MODEL_GATE_NAMES,
            )

        move(1, "Staging")
        move(1, "Production")
        if shadow:
            move(2, "Staging")
            state = rollout.start(
                rollout.new_rollout(MODEL, 1, 2, salt="serving-benchmark"), datetime.now(UTC), shadow=True
            )
            registry.start_rollout(
                state, actor="serving-benchmark", reason="benchmark set-up", required_gates=MODEL_GATE_NAMES
            )
    finally:
        registry.close()


def prepare(workdir: Path) -> Prepared:
    """Train champion (January 2013) and challenger (February), register them, pick the request record."""
    import pickle

    import numpy as np
    import pandas as pd

    from mlops_assets.demo_data.flights import prepare_flights_months
    from mlops_assets.ml.features import feature_columns
    from mlops_assets.ml.spec import load_spec
    from mlops_assets.ml.training import train_candidate

    spec = load_spec(MODEL)
    paths = prepare_flights_months(workdir / "source", [1, 2])
    january, february = (_features(p, spec) for p in paths)
    print(f"training champion ({len(january):,} rows) and challenger ({len(february):,} rows) ...", flush=True)
    champion = train_candidate(january, spec).pipeline
    challenger = train_candidate(february, spec).pipeline
    data_dirs = {"plain": workdir / "plain" / "mlops", "shadow": workdir / "shadow" / "mlops"}
    _register(data_dirs["plain"], [(champion, "flights_2013-01")], shadow=False)
    _register(data_dirs["shadow"], [(champion, "flights_2013-01"), (challenger, "flights_2013-02")], shadow=True)

    # A real February flight, as a caller knows it before departure: no id (the server makes the request id, which
    # is the row id), no label, none of the post-outcome columns.
    raw = pd.read_csv(paths[1]).iloc[100]
    drop = {spec.id_column, spec.label.column, *POST_OUTCOME}
    record = {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in raw.items() if k not in drop}
    columns = feature_columns(spec)
    expected = float(champion.predict_proba(pd.DataFrame.from_records([record], columns=columns))[0, 1])
    pickle_path = workdir / "champion.pkl"
    pickle_path.write_bytes(pickle.dumps(champion))
    in_process = predict_proba_cost(champion, challenger, pd.DataFrame.from_records([record], columns=columns))
    return Prepared(
        record=record,
        expected_score=expected,
        champion_pickle=pickle_path,
        feature_columns=columns,
        threshold=float(spec.policy.evaluation.decision_threshold),
        data_dirs=data_dirs,
        train_rows={"champion": len(january), "challenger": len(february)},
        in_process=in_process,
    )


def predict_proba_cost(
    champion: Any, challenger: Any, one_row: Any, blocks: int = 5, calls: int = 200
) -> dict[str, list[float]]:
    """In-process cost of ``predict_proba`` on the request's one-row frame: the least any server can do per request.

    ``blocks`` blocks of ``calls`` calls each (after 50 warm-up calls), under the same native thread cap as the
    servers; returns per block the median and the 99th percentile in ms, for the champion alone and for champion +
    challenger (what a shadow rollout scores per request).
    """
    from threadpoolctl import threadpool_limits

    def timed(fn: Callable[[], Any]) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3

    tasks = {
        "champion": lambda: champion.predict_proba(one_row),
        "both": lambda: (champion.predict_proba(one_row), challenger.predict_proba(one_row)),
    }
    out: dict[str, list[float]] = {f"{k}_{q}": [] for k in tasks for q in ("p50", "p99")}
    with threadpool_limits(limits=_THREADS or None):
        for fn in tasks.values():
            for _ in range(50):
                fn()
        for _ in range(blocks):
            for name, fn in tasks.items():
                times = sorted(timed(fn) for _ in range(calls))
                out[f"{name}_p50"].append(statistics.median(times))
                out[f"{name}_p99"].append(times[int(0.99 * (len(times) - 1))])
    return out


# --------------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str  # e.g. "mlops-serve, 1 worker, shadow"
    kind: str  # floor | mlops-serve | mlflow
    workers: int
    shadow: bool
    command: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    infer_path: str
    body: dict[str, Any]
    score_of: Callable[[Any], float]
    data_dir: Path | None = None
    log: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, logs: Path) -> None:
        self.log = logs / f"{self.name.replace(' ', '_').replace(',', '')}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}); log: {self.log}")
            try:
                with urllib.request.urlopen(self.base + self.ready_path, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s; log: {self.log}")

    def post(self) -> Any:
        request = urllib.request.Request(
            self.base + self.infer_path,
            data=json.dumps(self.body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())

    def pids(self) -> list[int]:
        """The server process and its descendants (uvicorn's workers)."""
        assert self.process is not None
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return found

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
        return total / CLOCK_TICKS

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return None


#: Native thread pools of every server (``--threads``): OpenMP (scikit-learn's gradient boosting), BLAS.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_THREADS = 1


def base_env() -> dict[str, str]:
    """The caller's environment without MLOPS_*/DAGSTER_HOME (each server gets exactly its own), with the thread cap."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_") and k != "DAGSTER_HOME"}
    env["PYTHONUNBUFFERED"] = "1"
    for name in THREAD_VARIABLES:
        env.pop(name, None)
        if _THREADS:
            env[name] = str(_THREADS)
    return env


def make_servers(args: argparse.Namespace, prepared: Prepared, workdir: Path) -> tuple[list[Server], str | None]:
    """The servers to measure, and why MLflow is skipped (None when it is measured)."""
    servers: list[Server] = []
    body = {"records": [prepared.record]}
    kinds = set(args.kinds)
    bindir = Path(sys.executable).parent
    (workdir / "floor_app.py").write_text(FLOOR_APP)
    for workers in args.workers if "floor" in kinds else ():
        port = free_port()
        env = base_env() | {
            "FLOOR_MODEL": str(prepared.champion_pickle),
            "FLOOR_COLUMNS": json.dumps(prepared.feature_columns),
            "FLOOR_THRESHOLD": str(prepared.threshold),
        }
        command = [str(bindir / "uvicorn"), "floor_app:app", "--app-dir", str(workdir), "--host", "127.0.0.1"]
        command += ["--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
        servers.append(
            Server(
                name=f"floor, {workers} worker{'s' * (workers > 1)}",
                kind="floor",
                workers=workers,
                shadow=False,
                command=command,
                env=env,
                port=port,
                ready_path="/health",
                infer_path="/records",
                body=body,
                score_of=lambda r: float(r["predictions"][0]["score"]),
            )
        )
    serve = shutil.which("mlops-serve", path=str(bindir)) or "mlops-serve"
    for workers in args.workers if "mlops-serve" in kinds else ():
        for shadow in (False, True):
            port = free_port()
            data_dir = prepared.data_dirs["shadow" if shadow else "plain"]
            wal = workdir / "wal" / f"{workers}w-{'shadow' if shadow else 'plain'}"
            env = base_env() | {"MLOPS_ENV": "local", "MLOPS_DATA_DIR": str(data_dir)}
            command = [serve, "--model", MODEL, "--host", "127.0.0.1", "--port", str(port)]
            command += ["--workers", str(workers), "--wal-dir", str(wal)]
            servers.append(
                Server(
                    name=f"mlops-serve, {workers} worker{'s' * (workers > 1)}{', shadow' if shadow else ''}",
                    kind="mlops-serve",
                    workers=workers,
                    shadow=shadow,
                    command=command,
                    env=env,
                    port=port,
                    ready_path=f"/v2/models/{MODEL}/ready",
                    infer_path=f"/v2/models/{MODEL}/records",
                    body=body,
                    score_of=lambda r: float(r["predictions"][0]["score"]),
                    data_dir=data_dir,
                )
            )
    skipped = None
    if "mlflow" not in kinds:
        skipped = "not asked for (--kinds)"
    elif args.mlflow_venv is None:
        skipped = "no --mlflow-venv given"
    elif not (args.mlflow_venv / "bin" / "mlflow").exists():
        skipped = f"{args.mlflow_venv}/bin/mlflow does not exist (MLflow is not installed there)"
    else:
        model_dir = workdir / "mlflow-model"
        save = (
            "import pickle, sys, mlflow.sklearn\n"
            "pipeline = pickle.load(open(sys.argv[1], 'rb'))\n"
            "mlflow.sklearn.save_model(pipeline, sys.argv[2], serialization_format='pickle',\n"
            "    pyfunc_predict_fn='predict_proba', pip_requirements=['scikit-learn'])\n"
        )
        saved = subprocess.run(
            [str(args.mlflow_venv / "bin" / "python"), "-c", save, str(prepared.champion_pickle), str(model_dir)],
            capture_output=True,
            text=True,
            env=base_env(),
        )
        if saved.returncode != 0:
            skipped = f"saving the pipeline with mlflow.sklearn failed: {saved.stderr.strip().splitlines()[-1:]}"
        else:
            for workers in args.workers:
                port = free_port()
                command = [str(args.mlflow_venv / "bin" / "mlflow"), "models", "serve", "-m", str(model_dir)]
                command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]
                env = base_env() | {"PATH": f"{args.mlflow_venv / 'bin'}:{os.environ.get('PATH', '')}"}
                env.pop("VIRTUAL_ENV", None)
                servers.append(
                    Server(
                        name=f"MLflow, {workers} worker{'s' * (workers > 1)}",
                        kind="mlflow",
                        workers=workers,
                        shadow=False,
                        command=command,
                        env=env,
                        port=port,
                        ready_path="/ping",
                        infer_path="/invocations",
                        body={"dataframe_records": [prepared.record]},
                        score_of=lambda r: float(r["predictions"][0][1]),
                    )
                )
    return servers, skipped


# --------------------------------------------------------------------------------------------------
# Load generator
# --------------------------------------------------------------------------------------------------


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def run_wrk(server: Server, connections: int, requests: int, workdir: Path, timeout_s: float) -> dict[str, Any]:
    """One closed-loop wrk run: ``connections`` connections, stop after ``requests`` responses."""
    script = workdir / f"wrk-{server.port}-{requests}.lua"
    script.write_text(WRK_SCRIPT.format(body=lua_string(json.dumps(server.body)), limit=requests))
    command = ["wrk", "-t1", f"-c{connections}", f"-d{int(timeout_s)}s", "--timeout", "10s", "-s", str(script)]
    command.append(server.base + server.infer_path)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = server.cpu_seconds()
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s + 60)
    wall = time.perf_counter() - start
    server_cpu = server.cpu_seconds() - server_before
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed on {server.name}: {done.stderr or done.stdout}")
    line = [x for x in done.stdout.splitlines() if x.startswith('{"requests"')]
    if not line:
        raise RuntimeError(f"wrk printed no summary for {server.name}: {done.stdout}")
    result: dict[str, Any] = json.loads(line[-1])
    generator_cpu = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime
    )
    result |= {
        "connections": connections,
        "wall_s": wall,
        "rps": result["requests"] / (result["duration_us"] / 1e6),
        "generator_cpu_s": generator_cpu,
        "server_cpu_s": server_cpu,
    }
    return result


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def count_segment_rows(data_dir: Path) -> tuple[int, int]:
    """(segments, rows) of the closed prediction-log segments of the model under ``data_dir``."""
    import pyarrow.parquet as pq

    files = sorted((data_dir / "serving" / MODEL).glob("*.parquet"))
    return len(files), sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "command": "python benchmarks/serving_benchmark.py " + shlex.join(sys.argv[1:]),
        "started": datetime.now(UTC).isoformat(timespec="minutes"),
        "load_start": load_average(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    started = time.time()
    prepared = prepare(workdir)
    servers, mlflow_skipped = make_servers(args, prepared, workdir)
    results["mlflow_skipped"] = mlflow_skipped
    results["record"] = prepared.record
    results["train_rows"] = prepared.train_rows
    results["in_process"] = prepared.in_process
    results["versions"] = versions(args.mlflow_venv if mlflow_skipped is None else None)
    results["code"] = code_state()
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    answered: dict[str, int] = {}
    in_flight: dict[str, int] = {}  # requests that may be answered after wrk stopped counting
    try:
        for server in servers:
            server.start(logs)
        for server in servers:
            server.wait_ready(args.start_timeout)
            score = server.score_of(server.post())
            if abs(score - prepared.expected_score) > 1e-9:
                raise RuntimeError(
                    f"{server.name} returned score {score}, predict_proba gives {prepared.expected_score}"
                )
            answered[server.name] = 1
            in_flight[server.name] = 0
            print(f"  {server.name}: ready on port {server.port}, score {score:.6f} == predict_proba", flush=True)
        results["expected_score"] = prepared.expected_score
        runs: list[dict[str, Any]] = []
        for rep in range(args.repeats):
            order = servers[rep % len(servers) :] + servers[: rep % len(servers)]
            for server in order:
                warm = run_wrk(server, args.connections, args.warmup_requests, workdir, args.wrk_timeout)
                answered[server.name] += warm["requests"]
                in_flight[server.name] += args.connections - 1
                for kind, connections, n in (
                    ("latency", 1, args.latency_requests),
                    ("load", args.connections, args.load_requests),
                ):
                    run = run_wrk(server, connections, n, workdir, args.wrk_timeout)
                    answered[server.name] += run["requests"]
                    in_flight[server.name] += connections - 1
                    run |= {"server": server.name, "repeat": rep, "kind": kind}
                    runs.append(run)
                    print(
                        f"  rep {rep + 1}/{args.repeats} {server.name:32s} {kind:7s} p50 {run['p50_us'] / 1e3:6.2f} ms "
                        f"p99 {run['p99_us'] / 1e3:6.2f} ms {run['rps']:8.0f} req/s errors "
                        f"{run['status_errors'] + run['socket_errors']}",
                        flush=True,
                    )
        results["runs"] = runs
    finally:
        stopped = {s.name: s.stop() for s in servers}
    results["servers"] = [
        {"name": s.name, "kind": s.kind, "workers": s.workers, "shadow": s.shadow, "command": s.command}
        for s in servers
    ]
    results["exit_codes"] = stopped
    logged = {}
    for key, data_dir in prepared.data_dirs.items():
        names = [s.name for s in servers if s.data_dir == data_dir]
        segments, rows = count_segment_rows(data_dir)
        logged[key] = {
            "servers": names,
            "answered": sum(answered.get(n, 0) for n in names),
            "in_flight_bound": sum(in_flight.get(n, 0) for n in names),
            "rows_per_request": 2 if key == "shadow" else 1,
            "segments": segments,
            "rows": rows,
        }
    results["logged"] = logged
    results["load_end"] = load_average()
    results["seconds"] = time.time() - started
    return results


def code_state() -> str:
    """The commit measured and a digest of the serving package's files (the working tree may differ from it)."""
    import hashlib

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=REPO)
    digest = hashlib.sha256()
    for path in sorted((REPO / "mlops_assets" / "serving").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    changed = len(dirty.stdout.splitlines())
    return (
        f"commit {head.stdout.strip() or 'unknown'}"
        + (f" with {changed} changed or new files in the working tree" if changed else "")
        + f"; mlops_assets/serving/*.py sha256 {digest.hexdigest()[:12]}"
    )


def versions(mlflow_venv: Path | None) -> str:
    import numpy as np
    import pandas as pd
    import sklearn
    import starlette
    import uvicorn

    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    wrk_version = (wrk.stdout or wrk.stderr).split("[")[0].strip() or "wrk"
    text = (
        f"Python {platform.python_version()}, scikit-learn {sklearn.__version__}, numpy {np.__version__}, pandas "
        f"{pd.__version__}, Starlette {starlette.__version__}, uvicorn {uvicorn.__version__} (uvloop, httptools), "
        f"{wrk_version}"
    )
    if mlflow_venv is not None:
        probe = (
            "import importlib.metadata as m\n"
            "found = []\n"
            "for p in ('mlflow', 'scikit-learn', 'pandas', 'fastapi', 'uvicorn', 'uvloop', 'httptools'):\n"
            "    try:\n"
            "        found.append(f'{p} {m.version(p)}')\n"
            "    except m.PackageNotFoundError:\n"
            "        found.append(f'no {p}')\n"
            "print(', '.join(found))\n"
        )
        got = subprocess.run([str(mlflow_venv / "bin" / "python"), "-c", probe], capture_output=True, text=True)
        text += f"; MLflow's venv: {got.stdout.strip() or got.stderr.strip()[-200:]}"
    return text + f"; {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"


# --------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------


def _med_range(values: Sequence[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def _ratio(values: Sequence[float]) -> str:
    return f"**{statistics.median(values):.2f}×** ({min(values):.2f}–{max(values):.2f})"


def render(results: dict[str, Any]) -> str:
    runs = results["runs"]
    servers = results["servers"]
    repeats = 1 + max(r["repeat"] for r in runs)
    cpus = results["cpus"]
    args = results["args"]

    def series(server: str, kind: str, key: str) -> list[float]:
        return [r[key] for r in sorted(runs, key=lambda r: r["repeat"]) if r["server"] == server and r["kind"] == kind]

    out = [
        "# Online serving: `mlops-serve` against a floor and MLflow",
        "",
        "Generated by `benchmarks/serving_benchmark.py` (its docstring says what each server does).",
        "",
        f"Command: `{results['command']}` (from the repository root; {results['seconds']:.0f} s).",
        "",
        f"Measured {results['started'][:16].replace('T', ' ')} UTC on {results['cpu']}, {cpus} CPUs. "
        f"{results['versions']}.",
        "",
        f"Code measured: {results.get('code', 'not recorded')}.",
        "",
        f"Load average (1, 5, 15 min) at start {results['load_start']}; at end {results['load_end']}. The machine is "
        "shared (2 cores; other work may have run): absolute figures move with the load, only ratios measured side "
        "by side mean something. All servers and the load generator share these 2 cores.",
        "",
        f"Model: the flights pipeline (`train_candidate` on January 2013, {results['train_rows']['champion']:,} rows); "
        f"shadow challenger trained on February ({results['train_rows']['challenger']:,} rows). Every server serves "
        f"the same fitted pipeline and returned its `predict_proba` score ({results['expected_score']:.6f}) for the "
        "request record before the measurements. Request: one real February flight as known before departure "
        "(no id, no label, no post-outcome column):",
        "",
        "```json",
        json.dumps({"records": [results["record"]]}),
        "```",
        "",
        f"Load: `wrk` with one generator thread, closed loop, on loopback. Per server and repetition: a warm-up of "
        f"{args['warmup_requests']:,} requests (discarded), a **latency** run of {args['latency_requests']:,} "
        f"sequential requests (1 connection) and a **load** run of {args['load_requests']:,} requests on "
        f"{args['connections']} connections. Medians of {repeats} interleaved repetitions (range: min–max). "
        "Latency is per request, client-side (wrk: request written → response read).",
        "",
        (
            f"Native threads: every server process runs with OMP_NUM_THREADS={args['threads']} (and the BLAS "
            "equivalents), the same for all servers."
            if args.get("threads")
            else "Native threads: the libraries' defaults (no cap) in every server."
        ),
        "",
    ]
    if cost := results.get("in_process"):
        one = statistics.median(cost["champion_p50"])
        out += [
            "**The least a request can cost**: `predict_proba` of the pipeline on the one-row frame, in-process "
            f"(no HTTP, no JSON), under the same thread cap: p50 {_med_range(cost['champion_p50'], '.2f')} ms, p99 "
            f"{_med_range(cost['champion_p99'], '.2f')} ms (median of 5 blocks of 200 calls, measured before the "
            f"servers started); champion + challenger (a shadow rollout scores both): p50 "
            f"{_med_range(cost['both_p50'], '.2f')} ms. So one core can answer at most ~{1000 / one:,.0f} one-row "
            "requests per second with this pipeline, whatever the server.",
            "",
        ]
    if results.get("mlflow_skipped"):
        out += [f"MLflow: **skipped** — {results['mlflow_skipped']}.", ""]
    out += [
        "| server | latency p50 ms | latency p99 ms | load req/s | req/s per worker | p50 ms under load | "
        "p99 ms under load | generator CPU (share of the 2 cores) | server CPU (share of the 2 cores) | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in servers:
        name = s["name"]
        lat50 = [v / 1e3 for v in series(name, "latency", "p50_us")]
        lat99 = [v / 1e3 for v in series(name, "latency", "p99_us")]
        rps = series(name, "load", "rps")
        per_worker = [v / s["workers"] for v in rps]
        load50 = [v / 1e3 for v in series(name, "load", "p50_us")]
        load99 = [v / 1e3 for v in series(name, "load", "p99_us")]
        gen_share = [
            r["generator_cpu_s"] / (r["wall_s"] * cpus) for r in runs if r["server"] == name and r["kind"] == "load"
        ]
        srv_share = [
            r["server_cpu_s"] / (r["wall_s"] * cpus) for r in runs if r["server"] == name and r["kind"] == "load"
        ]
        errors = sum(r["status_errors"] + r["socket_errors"] for r in runs if r["server"] == name)
        out.append(
            f"| {name} | {_med_range(lat50, '.2f')} | {_med_range(lat99, '.2f')} | {_med_range(rps, ',.0f')} | "
            f"{statistics.median(per_worker):,.0f} | {_med_range(load50, '.2f')} | {_med_range(load99, '.2f')} | "
            f"{statistics.median(gen_share):.0%} | {statistics.median(srv_share):.0%} | {errors} |"
        )
    out += [
        "",
        "Generator and server CPU: CPU seconds during the load run (wrk: `getrusage` of the child; servers: `/proc`, "
        "the server process and its workers) over the run's wall time × the CPU count.",
        "",
    ]

    def ratio_rows(pairs: list[tuple[str, str]], title: str) -> list[str]:
        rows = [
            f"### {title}",
            "",
            "Medians of the per-repetition ratios (range). Latency ratios > 1: slower than the reference; throughput "
            "ratio < 1: fewer requests per second.",
            "",
            "| server | reference | latency p50 | latency p99 | load req/s |",
            "|---|---|---:|---:|---:|",
        ]
        for a, b in pairs:
            cells = []
            for kind, key in (("latency", "p50_us"), ("latency", "p99_us"), ("load", "rps")):
                xs, ys = series(a, kind, key), series(b, kind, key)
                cells.append(_ratio([x / y for x, y in zip(xs, ys, strict=True)]))
            rows.append(f"| {a} | {b} | " + " | ".join(cells) + " |")
        return [*rows, ""]

    def named(kind: str, workers: int) -> str | None:
        return next((s["name"] for s in servers if s["kind"] == kind and s["workers"] == workers), None)

    floor_pairs, mlflow_pairs, shadow_pairs = [], [], []
    for s in servers:
        if s["kind"] != "mlops-serve":
            continue
        if floor := named("floor", s["workers"]):
            floor_pairs.append((s["name"], floor))
        if mlflow := named("mlflow", s["workers"]):
            mlflow_pairs.append((s["name"], mlflow))
        if s["shadow"]:
            plain = next(
                x["name"]
                for x in servers
                if x["kind"] == "mlops-serve" and x["workers"] == s["workers"] and not x["shadow"]
            )
            shadow_pairs.append((s["name"], plain))
    out += ratio_rows(floor_pairs, "mlops-serve / floor (same number of workers)")
    if mlflow_pairs:
        out += ratio_rows(mlflow_pairs, "mlops-serve / MLflow (same number of workers)")
        out += ratio_rows(
            [
                (m, f)
                for s in servers
                if s["kind"] == "mlflow"
                for m, f in [(s["name"], named("floor", s["workers"]))]
                if f
            ],
            "MLflow / floor (same number of workers)",
        )
    out += ratio_rows(shadow_pairs, "shadow challenger / champion only (mlops-serve)")

    out += ["## Targets", "", "| target | server | measured (median) | met |", "|---|---|---:|---|"]
    for s in servers:
        if s["kind"] != "mlops-serve":
            continue
        p99 = statistics.median(series(s["name"], "latency", "p99_us")) / 1e3
        per_worker = statistics.median(series(s["name"], "load", "rps")) / s["workers"]
        out.append(
            f"| one-row p99 ≤ {TARGET_P99_MS:.0f} ms | {s['name']} | {p99:.2f} ms | "
            f"{'yes' if p99 <= TARGET_P99_MS else 'no'} |"
        )
        out.append(
            f"| ≥ {TARGET_RPS_PER_WORKER:,.0f} req/s per worker | {s['name']} | {per_worker:,.0f} | "
            f"{'yes' if per_worker >= TARGET_RPS_PER_WORKER else 'no'} |"
        )
    out += [
        "",
        f"On {cpus} cores, a 4-worker server shares 2 cores among 4 workers and the load generator: its requests/s "
        "per worker cannot reach a 1-worker figure; the per-worker target is a 1-worker target here.",
        "",
        "## Prediction log",
        "",
        "After SIGTERM (a clean shutdown closes the open segment), the closed segments of each registry's servers "
        "against the requests wrk saw answered (warm-up and check requests included). A request in flight when wrk "
        "stopped can be answered and logged without wrk counting it, so up to the number of connections per run more "
        "rows may be logged than counted. With the shadow challenger every request logs two rows (champion served, "
        "challenger not served).",
        "",
        "| registry | servers | requests answered (wrk) | + at most in flight at a stop | rows per request | "
        "segments | rows logged | within the bounds |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for key, item in results["logged"].items():
        if not item["servers"]:
            continue
        k, low = item.get("rows_per_request", 2 if key == "shadow" else 1), item["answered"]
        high = low + item.get("in_flight_bound", 0)
        ok = k * low <= item["rows"] <= k * high
        out.append(
            f"| {key} | {', '.join(item['servers'])} | {low:,} | {high - low:,} | {k} | "
            f"{item['segments']:,} | {item['rows']:,} | {'yes' if ok else '**no**'} ({k * low:,}–{k * high:,}) |"
        )
    out += ["", f"Server exit codes after SIGTERM: {results['exit_codes']}.", ""]
    out += ["## Servers", "", "| server | command |", "|---|---|"]
    for s in servers:
        command = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(s["command"]))
        out.append(f"| {s['name']} | `{command}` |")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4], help="worker counts (default 1 4)")
    parser.add_argument("--latency-requests", type=int, default=300, help="sequential requests per latency run")
    parser.add_argument("--load-requests", type=int, default=600, help="requests per load run")
    parser.add_argument("--warmup-requests", type=int, default=50, help="discarded requests before each server's runs")
    parser.add_argument("--connections", type=int, default=8, help="connections of the load run")
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=["floor", "mlops-serve", "mlflow"],
        choices=["floor", "mlops-serve", "mlflow"],
        help="which servers to measure (default: all)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="native threads per server process (OMP_NUM_THREADS, OPENBLAS/MKL_NUM_THREADS), the same for every "
        "server; 0: the libraries' default (one per core: gradient boosting's OpenMP threads then spin-wait for a "
        "core held by another worker or the generator)",
    )
    parser.add_argument("--mlflow-venv", type=Path, help="virtualenv with mlflow (and the project's scikit-learn)")
    parser.add_argument("--workdir", type=Path, help="keep models, registries, logs and results.json here")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds to wait for each server")
    parser.add_argument("--wrk-timeout", type=float, default=300.0, help="cap of one wrk run, seconds")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "serving.md")
    parser.add_argument("--render", type=Path, help="write the page from a saved results.json, measure nothing")
    args = parser.parse_args(argv)
    if args.render:
        write_page(args.output, render(json.loads(args.render.read_text())))
        return
    if args.repeats < 5:
        parser.error("--repeats must be >= 5")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install -y wrk)")
    global _THREADS
    _THREADS = args.threads
    # A SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the servers are stopped in measure()'s finally.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="serving-benchmark-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = measure(args, workdir)
    (workdir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"results: {workdir / 'results.json'}")
    write_page(args.output, render(results))


if __name__ == "__main__":
    main()
