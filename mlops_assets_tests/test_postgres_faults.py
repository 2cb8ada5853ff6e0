"""PostgreSQL faults under the real production deployment (issue 15, item 3).

Each test starts its own PostgreSQL 15 cluster (:mod:`mlops_assets_tests.pg_cluster`: ``initdb``/``pg_ctl`` on a free
loopback port in a temporary folder), so the shared server is never restarted, and the real deployment on it
(:mod:`mlops_assets_tests.deployment`: code server, ``dagster-daemon``, webserver, ``deploy/dagster.yaml``, the
registry in a schema of the same database, a moto S3 bucket on loopback). The database fault happens at an exact
moment without depending on timing: a fault point (``mlops_assets/faults.py``) armed ``pause`` in the code server's
environment — sensor evaluations and run workers run in and under it — creates ``<dir>/<point>.reached`` and waits;
the test stops, starts or restarts the cluster, then creates ``<dir>/<point>.release``.

* (a) Restart during a landing tick that requests several runs: exactly one run per run key, the sensor's cursor
  advanced once, every data version registered once as a partition.
* (b) A short outage inside a run: the step is released while the database is down, which is brought back as soon
  as the run worker's first event write is being retried (dagster-postgres' connection retry, seen in the worker's
  output): the run succeeds and each asset of the version has exactly one materialization.
* (c) An outage longer than the retry window inside a run: the database comes back only after an event write gave
  up: the step fails, the run ends FAILURE (never left STARTED), the automatic retry (``run_retries`` in
  ``deploy/dagster.yaml``) succeeds, one materialization per asset, and the registry has no orphan row.
* (c') An outage that outlasts the run worker itself (it exits while the database is down) and the code server's
  report of the dead worker: Dagster 1.13 with ``DefaultRunLauncher`` alone leaves the run STARTED; the model's
  ``dead_run_sensor`` marks it FAILURE and the retry succeeds.

The data versions land before the deployment starts, so the landing sensor's first tick sees all of them at once
and nothing is in production yet: every run is the whole lifecycle job (the ``evaluation`` point is in it).
"""

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_assets import faults
from mlops_assets.demo_data import synthetic
from mlops_assets.ml.versions import version_key
from mlops_assets.storage.artifacts.s3 import S3ArtifactStore
from mlops_assets.storage.artifacts.store import ArtifactIntegrityError
from mlops_assets.storage.registry import ModelRegistry
from mlops_assets_tests import reliability
from mlops_assets_tests.deployment import (
    LANDING_SENSOR,
    LOCATION,
    MATERIALIZATIONS,
    MODEL,
    ROOT,
    RUN,
    RUN_TIMEOUT_S,
    STARTUP_TIMEOUT_S,
    TERMINAL,
    Deployment,
    code_env,
    free_port,
    graphql,
    instance_env,
    prepare_home,
    registry_in_schema,
    runs_of,
    start_processes,
    wait,
    wait_loaded,
)
from mlops_assets_tests.pg_cluster import PostgresCluster, throwaway_cluster

# Slow (a deployment each, a lifecycle run or three: minutes): one xdist worker runs them one after the
# other. Everything they touch (cluster, port, bucket, DAGSTER_HOME) is their own.
pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.xdist_group("postgres_faults")]

ROWS = 2500
#: ``run_retries.max_retries`` of deploy/dagster.yaml: a failed run is followed by at most this many retries.
MAX_RETRIES = int(yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())["run_retries"]["max_retries"])

TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      sensorState {
        typeSpecificData { ... on SensorData { lastCursor } }
        ticks(limit: 500) { tickId status timestamp runIds runKeys cursor skipReason error { message } }
      }
    }
  }
}"""

PARTITIONS = """
query Partitions($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode { partitionKeys } }
}"""

CANDIDATES = """
query Candidates($path: [String!]!, $partition: String!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(partitions: [$partition]) {
        runId
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on TextMetadataEntry { text }
        }
      }
    }
  }
}"""


@dataclass
class Stack:
    """One deployment on its own cluster, and what the test needs to drive and inspect it."""

    cluster: PostgresCluster
    deployment: Deployment
    web_port: int
    fault_dir: Path
    registry_url: str
    bucket: str
    s3: Any
    hmac_key: str
    keys: list[str]

    def reached(self, point: str) -> int:
        """Wait until ``point`` is reached; the pid of the process paused there."""
        marker = self.fault_dir / f"{point}.reached"
        wait(f"fault point {point}", self.deployment, RUN_TIMEOUT_S, marker.exists)
        return int(marker.read_text().split()[0])

    def release(self, point: str) -> None:
        """Let the process paused at ``point`` go on."""
        (self.fault_dir / f"{point}.release").write_text("go\n")


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    with throwaway_cluster() as c:
        yield c


@pytest.fixture
def deployment(tmp_path: Path, cluster: PostgresCluster) -> Iterator[Deployment]:
    """The deployment's processes; stopped before the cluster (this fixture depends on it, so it ends first)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    d = Deployment(logs)
    try:
        yield d
    finally:
        d.stop()


def _start(
    tmp_path: Path,
    cluster: PostgresCluster,
    deployment: Deployment,
    s3_bucket: tuple[str, Any],
    s3_endpoint: str,
    spec: str,
    *,
    points: str,
    versions: int,
) -> Stack:
    """Land ``versions`` synthetic data versions, then start the deployment with ``points`` armed in the code server."""
    bucket, s3 = s3_bucket
    keys = []
    for i in range(1, versions + 1):
        body = synthetic.generate(ROWS, seed=i).to_csv(index=False).encode()
        keys.append(version_key(f"v{i}.csv", hashlib.sha256(body).hexdigest()))
        s3.put_object(Bucket=bucket, Key=f"landing/{MODEL}/v{i}.csv", Body=body)
    postgres_url = cluster.create_database(f"mlops_faults_{uuid.uuid4().hex[:12]}")
    registry_url = registry_in_schema(postgres_url)
    home = prepare_home(tmp_path / "dagster_home")
    fault_dir = tmp_path / "faults"
    code_port, web_port = free_port(), free_port()
    instance = instance_env(home, postgres_url, code_port)
    # A paused sensor evaluation must not be what times out: the daemon waits up to this long for a tick's result
    # (default 60 s) — the pause ends when the test releases it, not at a deadline.
    instance["DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS"] = str(STARTUP_TIMEOUT_S)
    hmac_key = f"hmac-{uuid.uuid4().hex}"
    code = code_env(
        instance,
        spec=spec,
        registry_url=registry_url,
        bucket=bucket,
        s3_endpoint=s3_endpoint,
        hmac_key=hmac_key,
        tmp=tmp_path / "tmp",
        # The dead-run sensor looks every 5 s (the daemon's loop) instead of 30 s: test (c') waits for two looks.
        extra={faults.FAULTS_ENV: points, faults.FAULT_DIR_ENV: str(fault_dir), "MLOPS_DEAD_RUN_INTERVAL_S": "5"},
    )
    start_processes(deployment, home, instance, code, code_port=code_port, web_port=web_port)
    wait_loaded(deployment, web_port)
    return Stack(cluster, deployment, web_port, fault_dir, registry_url, bucket, s3, hmac_key, keys)


def _ticks(stack: Stack) -> tuple[list[dict[str, Any]], str | None]:
    """The landing sensor's ticks, oldest first, and its stored cursor."""
    selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "sensorName": LANDING_SENSOR}
    sensor = graphql(stack.web_port, TICKS, {"selector": selector})["sensorOrError"]
    assert sensor["__typename"] == "Sensor", sensor
    state = sensor["sensorState"]
    ticks = sorted(state["ticks"], key=lambda t: t["timestamp"])
    return ticks, (state["typeSpecificData"] or {}).get("lastCursor")


def _cursor_advances(ticks: list[dict[str, Any]]) -> int:
    """How many ticks stored a cursor different from the one before them (the first cursor counts as one)."""
    advances, previous = 0, None
    for tick in ticks:
        if tick["status"] in ("SUCCESS", "SKIPPED") and tick["cursor"] is not None and tick["cursor"] != previous:
            advances += 1
            previous = tick["cursor"]
    return advances


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def _settled(stack: Stack, key: str) -> list[dict[str, Any]] | None:
    """The runs of ``key`` (oldest first) once one succeeded or the retries are used up, all finished; else None.

    A failed run is followed by its automatic retry a few daemon iterations later: while no run succeeded and fewer
    than 1 + :data:`MAX_RETRIES` exist, a failed one is not the end.
    """
    runs = sorted(runs_of(stack.web_port, key), key=lambda r: r["startTime"] or float("inf"))
    if not runs or any(r["status"] not in TERMINAL for r in runs):
        return None
    if any(r["status"] == "SUCCESS" for r in runs) or len(runs) > MAX_RETRIES:
        return runs
    return None


def _materializations(stack: Stack, key: str, runs: list[dict[str, Any]]) -> dict[str, int]:
    """Materializations of ``key`` per asset, for every asset any of ``runs`` materialized for it."""
    assets: set[str] = set()
    for run in runs:
        detail = graphql(stack.web_port, RUN, {"runId": run["runId"]})["runOrError"]
        assets |= {"/".join(m["assetKey"]["path"]) for m in detail["assetMaterializations"] if m["partition"] == key}
    counts = {}
    for asset in sorted(assets):
        events = graphql(stack.web_port, MATERIALIZATIONS, {"path": asset.split("/"), "partition": key})
        counts[asset] = len(events["assetOrError"]["assetMaterializations"])
    return counts


def _orphans(stack: Stack, key: str) -> tuple[int, int]:
    """The registry rows of the model and how many of them are orphans.

    A ``model_versions`` row is an **orphan** when (1) its artifact is missing from the bucket or fails
    verification (size, sha256 and HMAC, :meth:`S3ArtifactStore.get_bytes`), or (2) it names data version ``key``
    among its data versions but no materialization of ``candidate_model`` for ``key`` records it (metadata
    ``model_version`` and ``artifact_sha256`` equal to the row's): a version registered by a run whose result was
    never recorded — a registry entry the asset graph does not know about.
    """
    registry = ModelRegistry(stack.registry_url)
    rows = registry.list_versions(MODEL)
    store = S3ArtifactStore(stack.s3, stack.bucket, "artifacts/", hmac_key=stack.hmac_key.encode())
    events = graphql(stack.web_port, CANDIDATES, {"path": [MODEL, "candidate_model"], "partition": key})
    named = set()
    for event in events["assetOrError"]["assetMaterializations"]:
        entries = {e["label"]: e.get("intValue", e.get("text")) for e in event["metadataEntries"]}
        named.add((entries.get("model_version"), entries.get("artifact_sha256")))
    orphans = 0
    for row in rows:
        try:
            store.get_bytes(row.artifact)
        except ArtifactIntegrityError:
            orphans += 1
            continue
        if key in row.data_versions and (row.version, row.artifact_sha256) not in named:
            orphans += 1
    return len(rows), orphans


def test_restart_during_a_landing_tick_requesting_several_runs_yields_one_run_per_key(
    tmp_path: Path,
    cluster: PostgresCluster,
    deployment: Deployment,
    s3_bucket: tuple[str, Any],
    s3_endpoint: str,
    synthetic_spec: str,
) -> None:
    """(a) The landing sensor's first tick plans three runs; PostgreSQL restarts before it returns them.

    After the restart the daemon stores the tick's partitions, runs and cursor: exactly one run per run key (no tick
    repeats the requests), the cursor advanced once, each data version one partition.
    """
    stack = _start(
        tmp_path, cluster, deployment, s3_bucket, s3_endpoint, synthetic_spec, points="landing_tick=pause", versions=3
    )
    stack.reached("landing_tick")
    cluster.restart()
    stack.release("landing_tick")

    def settled() -> tuple[list[dict[str, Any]], str | None] | None:
        # Every version has its run, and the sensor ticked twice more after the faulted tick (each of which could
        # have repeated the requests had the faulted tick been lost).
        ticks, cursor = _ticks(stack)
        with_runs = [t for t in ticks if t["runIds"]]
        after = [t for t in ticks if with_runs and t["timestamp"] > with_runs[0]["timestamp"]]
        done_after = [t for t in after if t["status"] in ("SUCCESS", "SKIPPED", "FAILURE")]
        if all(runs_of(stack.web_port, key) for key in stack.keys) and len(done_after) >= 2:
            return ticks, cursor
        return None

    ticks, cursor = wait("the runs and two more ticks", deployment, RUN_TIMEOUT_S, settled)
    runs = {key: runs_of(stack.web_port, key) for key in stack.keys}
    run_keys: dict[str, int] = {}
    for key, key_runs in runs.items():
        # Retries of a failed run carry the run key of their parent; only original runs count for the key.
        originals = [r for r in key_runs if "dagster/parent_run_id" not in _tags(r)]
        assert len(originals) == 1, (key, key_runs)
        for run in originals:
            run_key = _tags(run).get("dagster/run_key", "")
            assert run_key.startswith(f"new_data:{key}:"), run_key
            run_keys[run_key] = run_keys.get(run_key, 0) + 1
    assert sorted(run_keys.values()) == [1, 1, 1], run_keys
    requesting = [t for t in ticks if t["runIds"]]
    assert len(requesting) == 1 and len(requesting[0]["runIds"]) == 3, requesting
    assert sorted(requesting[0]["runKeys"]) == sorted(run_keys), requesting[0]
    failed_ticks = [t for t in ticks if t["status"] == "FAILURE"]
    assert failed_ticks == [], failed_ticks
    advances = _cursor_advances(ticks)
    assert advances == 1, [(t["status"], t["cursor"]) for t in ticks]
    assert cursor == requesting[0]["cursor"]
    assert all(name in (cursor or "") for name in ("v1.csv", "v2.csv", "v3.csv")), cursor
    partitions = graphql(stack.web_port, PARTITIONS, {"path": [MODEL, "raw_data"]})["assetNodeOrError"]
    keys = partitions["partitionKeys"]
    assert sorted(keys) == sorted(stack.keys), keys
    deployment.assert_alive()
    reliability.record(
        3,
        "pg.restart_during_tick",
        "PostgreSQL restarted while the landing sensor's tick (3 new data versions) is being evaluated: "
        "one run per run key, the cursor advanced once",
        data_versions=len(stack.keys),
        runs=sum(run_keys.values()),
        run_keys=len(run_keys),
        runs_per_key=max(run_keys.values()),
        ticks_requesting_runs=len(requesting),
        failed_ticks=len(failed_ticks),
        cursor_advances=advances,
        partitions=len(keys),
    )


#: What dagster-postgres logs before each new connection attempt (5 attempts, exponential backoff from 0.2 s).
CONNECTION_RETRY = "Retrying failed database connection"
#: What a run worker prints when an event write outlasted that retry (Dagster's event log handler).
EVENT_WRITE_FAILED = "Exception while writing logger call to event log"


def _one_version_through_an_outage(
    tmp_path: Path,
    cluster: PostgresCluster,
    deployment: Deployment,
    s3_bucket: tuple[str, Any],
    s3_endpoint: str,
    spec: str,
    *,
    until: str,
) -> tuple[Stack, list[dict[str, Any]]]:
    """Land one version; stop PostgreSQL while its lifecycle run is paused at ``evaluation``; release the step; bring
    PostgreSQL back once the run worker printed ``until`` (event-driven, never timed).

    The worker's output goes to the code server's log; the step stores its value in S3 first, then writes its
    events: the first write meets the stopped database. ``until=CONNECTION_RETRY``: back as soon as the write is
    being retried — a short outage, inside the retry. ``until=EVENT_WRITE_FAILED``: back only once a write gave up
    — an outage longer than the retry window: the step fails; the worker's next writes (the step's and the run's
    failure) find the database back.

    Returns:
        The stack and the version's runs, oldest first, once settled (:func:`_settled`).
    """
    stack = _start(tmp_path, cluster, deployment, s3_bucket, s3_endpoint, spec, points="evaluation=pause", versions=1)
    stack.reached("evaluation")
    cluster.stop()
    before = deployment.log("code_server").count(until)
    stack.release("evaluation")
    wait(
        f"the run worker to print {until!r} after the release",
        deployment,
        RUN_TIMEOUT_S,
        lambda: deployment.log("code_server").count(until) > before,
        # Bring the database back promptly once the worker shows it met the outage (the retry lasts seconds).
        interval=0.05,
    )
    cluster.start()
    key = stack.keys[0]
    runs = wait(f"the runs of {key} to settle", deployment, RUN_TIMEOUT_S, lambda: _settled(stack, key))
    return stack, runs


def test_short_outage_inside_a_run_ends_with_one_successful_run_and_one_materialization_per_asset(
    tmp_path: Path,
    cluster: PostgresCluster,
    deployment: Deployment,
    s3_bucket: tuple[str, Any],
    s3_endpoint: str,
    synthetic_spec: str,
) -> None:
    """(b) PostgreSQL is stopped while the run is inside ``model_evaluation``, and started again as soon as the
    step's first event write after the release is being retried: the run succeeds (or — had starting PostgreSQL
    outlasted the retry on a very busy machine — its automatic retry does), every asset of the version has exactly
    one materialization, and the registry holds the one version, no orphan."""
    stack, runs = _one_version_through_an_outage(
        tmp_path, cluster, deployment, s3_bucket, s3_endpoint, synthetic_spec, until=CONNECTION_RETRY
    )
    key = stack.keys[0]
    statuses = [r["status"] for r in runs]
    assert statuses[-1] == "SUCCESS", f"{runs}\n{deployment.dump()}"
    counts = _materializations(stack, key, runs)
    assert counts and set(counts.values()) == {1}, counts
    rows, orphans = _orphans(stack, key)
    assert orphans == 0 and rows == 1, (rows, orphans)
    deployment.assert_alive()
    # Whether the run itself or its retry succeeded depends on how fast the machine starts PostgreSQL: printed,
    # not recorded (the record holds only what the test asserts).
    print("short outage: run statuses", statuses)
    reliability.record(
        3,
        "pg.short_outage_in_run",
        "PostgreSQL stopped while a lifecycle run is inside model_evaluation, started again while the step's "
        "event write is being retried: the run succeeds, one materialization per asset",
        outage_met_by_run_worker=True,
        final_status=statuses[-1],
        runs_left_started=0,
        assets=len(counts),
        materializations_per_asset=sorted(set(counts.values())),
        registry_rows=rows,
        orphan_rows=orphans,
    )


def test_outage_longer_than_the_retry_window_fails_the_run_and_the_retry_succeeds(
    tmp_path: Path,
    cluster: PostgresCluster,
    deployment: Deployment,
    s3_bucket: tuple[str, Any],
    s3_endpoint: str,
    synthetic_spec: str,
) -> None:
    """(c) PostgreSQL stays down until an event write of the run worker paused in ``model_evaluation`` outlasted
    the connection retry: the step fails, the run ends FAILURE (not left STARTED), its automatic retry (from the
    failure) succeeds, every asset has one materialization and the registry has 0 orphan rows (defined in
    :func:`_orphans`)."""
    stack, runs = _one_version_through_an_outage(
        tmp_path, cluster, deployment, s3_bucket, s3_endpoint, synthetic_spec, until=EVENT_WRITE_FAILED
    )
    key = stack.keys[0]
    statuses = [r["status"] for r in runs]
    assert statuses == ["FAILURE", "SUCCESS"], f"{runs}\n{deployment.dump()}"
    retry = _tags(runs[1])
    assert retry.get("dagster/parent_run_id") == runs[0]["runId"], retry
    counts = _materializations(stack, key, runs)
    assert counts and set(counts.values()) == {1}, counts
    rows, orphans = _orphans(stack, key)
    assert orphans == 0 and rows == 1, (rows, orphans)
    deployment.assert_alive()
    reliability.record(
        3,
        "pg.long_outage_in_run",
        "PostgreSQL down inside model_evaluation until an event write outlasts the connection retry: the run ends "
        "FAILURE, its automatic retry succeeds, one materialization per asset, no orphan registry row",
        statuses=statuses,
        runs_left_started=0,
        retries=len(runs) - 1,
        assets=len(counts),
        materializations_per_asset=sorted(set(counts.values())),
        registry_rows=rows,
        orphan_rows=orphans,
    )


def _process_gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie its parent has not reaped counts as exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return any(line.startswith("State:") and line.split()[1] == "Z" for line in status.splitlines())


#: How many connection attempts dagster-postgres makes before it gives up (the first and 5 retries).
ATTEMPTS_PER_RETRY_WINDOW = 6


def test_outage_outlasting_the_run_worker_still_fails_the_run_and_retries_it(
    tmp_path: Path,
    cluster: PostgresCluster,
    deployment: Deployment,
    s3_bucket: tuple[str, Any],
    s3_endpoint: str,
    synthetic_spec: str,
) -> None:
    """(c') PostgreSQL stays down until the run worker paused in ``model_evaluation`` gave up and exited, and for
    one whole connection-retry window after (of whoever reports the dead worker): once it is back, the run must end
    FAILURE and its automatic retry succeed — not stay STARTED.

    Dagster 1.13 alone leaves it STARTED: the code server's check for dead run workers
    (``DagsterApiServer._check_for_orphaned_runs``) raises on the database and its thread dies, and
    ``DefaultRunLauncher`` has no worker health check. The model's ``dead_run_sensor`` finds the worker gone on two
    ticks and marks the run failed; run retries then re-run it."""
    stack = _start(
        tmp_path, cluster, deployment, s3_bucket, s3_endpoint, synthetic_spec, points="evaluation=pause", versions=1
    )
    worker = stack.reached("evaluation")
    key = stack.keys[0]
    (run,) = runs_of(stack.web_port, key)
    cluster.stop()
    stack.release("evaluation")
    wait("the run worker to exit", deployment, RUN_TIMEOUT_S, lambda: _process_gone(worker), interval=0.2)
    after_exit = deployment.log("code_server").count(CONNECTION_RETRY)
    # Event-driven: down until the code server's report of the dead worker used a whole retry window (or its
    # reporting thread died, as Dagster 1.13's does).
    wait(
        "the code server to give up reporting the dead run worker",
        deployment,
        RUN_TIMEOUT_S,
        lambda: (
            "Exception in thread grpc-server-cleanup" in deployment.log("code_server")
            or deployment.log("code_server").count(CONNECTION_RETRY) - after_exit >= ATTEMPTS_PER_RETRY_WINDOW
        ),
        interval=0.2,
    )
    cluster.start()

    def ended() -> str | None:
        status = {r["runId"]: r["status"] for r in runs_of(stack.web_port, key)}[run["runId"]]
        return None if status == "STARTED" else status

    status = wait("the run left by its dead worker to end", deployment, RUN_TIMEOUT_S, ended)
    assert status == "FAILURE", f"run {run['runId']} is {status} after the outage"
    runs = wait(f"the runs of {key} to settle", deployment, RUN_TIMEOUT_S, lambda: _settled(stack, key))
    assert [r["status"] for r in runs] == ["FAILURE", "SUCCESS"], runs
    counts = _materializations(stack, key, runs)
    rows, orphans = _orphans(stack, key)
    assert set(counts.values()) == {1} and orphans == 0, (counts, orphans)
    reliability.record(
        3,
        "pg.outage_outlasting_the_run_worker",
        "PostgreSQL down until the run worker paused in model_evaluation gave up and exited, and the code server's "
        "report of it failed: the dead-run sensor marks the run FAILURE, its retry succeeds",
        statuses=[r["status"] for r in runs],
        runs_left_started=0,
        materializations_per_asset=sorted(set(counts.values())),
        registry_rows=rows,
        orphan_rows=orphans,
    )
