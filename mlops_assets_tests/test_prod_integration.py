"""The real production deployment, end to end, on this machine.

Four kinds of processes, as on Kubernetes (docs/deployment.md): a code location server
(``dagster code-server start``, the only one holding the MLOPS_* settings, the S3 credentials and the
HMAC key), ``dagster-daemon run`` and ``dagster-webserver`` (instance settings only), and the run
workers the code server spawns for each run. The instance is ``deploy/dagster.yaml`` on a fresh
PostgreSQL database, the registry lives in its own schema of that database, and landing zone, asset
values and artifacts live in a fresh bucket of a moto S3 server on loopback.

The code server serves one model, ``synthetic``, from ``MLOPS_SPEC`` (assets ``synthetic/<asset>``, jobs and
sensors ``synthetic__<name>``). A synthetic data version is uploaded under the model's landing prefix
(``landing/synthetic/``); the daemon's ``synthetic__landing_sensor`` (RUNNING by default) registers it and
launches the run; the test then asks the webserver's GraphQL API what happened and looks into the bucket.
"""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mlops_assets.demo_data import synthetic
from mlops_assets.ml.versions import version_key
from mlops_assets.storage.registry import ModelRegistry
from mlops_assets_tests.conftest import FAKE_AWS_ENV

# One heavy test: keep it on one xdist worker when run with --dist loadgroup. Everything it touches
# (database, bucket, ports, DAGSTER_HOME) is unique per run, so two copies in parallel do not collide.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("prod_integration")]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROWS = 2500
STARTUP_TIMEOUT_S = 180
RUN_TIMEOUT_S = 900
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
#: The model MLOPS_SPEC serves (named after the packaged synthetic spec).
MODEL = "synthetic"
LIFECYCLE_JOB = f"{MODEL}__lifecycle_job"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


class Deployment:
    """The processes of one deployment, each in its own process group, logs in files."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def assert_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}\n{self.dump()}"

    def dump(self) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace")
            parts.append(f"===== {log.name} (last 8000 chars) =====\n{text[-8000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        # SIGTERM to each process group (the code server's run workers are in its group), then SIGKILL.
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _wait(what: str, deployment: Deployment, timeout: float, probe) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        deployment.assert_alive()
        try:
            last = probe()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})\n{deployment.dump()}")


@pytest.fixture
def registry_url(postgres_url: str) -> str:
    """The registry in its own schema of the test database (Dagster's tables stay in ``public``)."""
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA registry")
    engine.dispose()
    return str(sa.make_url(postgres_url).update_query_dict({"options": "-csearch_path=registry"}))


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    logs = tmp_path / "logs"
    logs.mkdir()
    d = Deployment(logs)
    try:
        yield d
    finally:
        d.stop()


RUNS = """
query Runs($key: String!) {
  runsOrError(filter: {tags: [{key: "mlops/data_version", value: $key}]}) {
    ... on Runs { results { runId jobName status startTime endTime tags { key value } } }
  }
}"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run {
      status
      runConfigYaml
      assetMaterializations { assetKey { path } partition }
      assetChecks { name assetKey { path } }
    }
  }
}"""

MATERIALIZATIONS = """
query Materializations($path: [String!]!, $partition: String!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(partitions: [$partition]) { partition runId metadataEntries { label } } }
  }
}"""

LAUNCH = """
mutation Launch($job: String!, $partition: String!) {
  launchRun(executionParams: {
    selector: {repositoryLocationName: "mlops_assets", repositoryName: "__repository__", jobName: $job},
    executionMetadata: {tags: [{key: "dagster/partition", value: $partition}]}
  }) { __typename ... on UnauthorizedError { message } }
}"""

CHECK_EXECUTIONS = """
query Checks($path: [String!]!, $check: String!, $partition: String!) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: $check, partition: $partition, limit: 5) {
    runId status partition evaluation { success severity }
  }
}"""


def test_landed_s3_object_runs_through_daemon_and_shows_in_graphql(
    tmp_path: Path,
    postgres_url: str,
    registry_url: str,
    s3_bucket,
    s3_endpoint: str,
    deployment: Deployment,
    synthetic_spec: str,
) -> None:
    started = time.monotonic()
    bucket, s3 = s3_bucket
    canary = f"canary-secret-{uuid.uuid4().hex}"
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    shutil.copy(ROOT / "deploy" / "workspace.yaml", home / "workspace.yaml")
    url = sa.make_url(postgres_url)
    code_port, web_port, viewer_port = _free_port(), _free_port(), _free_port()

    # What every process needs to open the instance and find the code server — and nothing else.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "AWS_", "DAGSTER_"))}
    instance_env = {
        **base,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_USERNAME": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_DB": url.database or "",
        "MLOPS_CODE_SERVER_HOST": "127.0.0.1",
        "MLOPS_CODE_SERVER_PORT": str(code_port),
    }
    (tmp_path / "tmp").mkdir()
    code_env = {
        **instance_env,
        **FAKE_AWS_ENV,
        "MLOPS_ENV": "prod",
        # The packaged synthetic spec; only the machine-dependent latency budget is raised (see the fixture).
        "MLOPS_SPEC": synthetic_spec,
        "MLOPS_REGISTRY_URL": registry_url,
        "MLOPS_S3_BUCKET": bucket,
        "MLOPS_S3_ENDPOINT_URL": s3_endpoint,
        "MLOPS_S3_REGION": "us-east-1",
        "MLOPS_ARTIFACT_HMAC_KEY": canary,
        "TMPDIR": str(tmp_path / "tmp"),  # the landing cache of run workers
        # Default in_process (see environments.py); MLOPS_EXECUTOR=multiprocess measures one process per step.
        "MLOPS_EXECUTOR": os.environ.get("MLOPS_EXECUTOR", "in_process"),
    }

    deployment.start(
        "code_server",
        [
            *(str(BIN / "dagster"), "code-server", "start", "-m", "mlops_assets.definitions"),
            *("--location-name", "mlops_assets", "-h", "127.0.0.1", "-p", str(code_port)),
        ],
        code_env,
        ROOT,
    )
    workspace = str(home / "workspace.yaml")
    deployment.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace], instance_env, home)
    deployment.start(
        "webserver",
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), "-w", workspace],
        instance_env,
        home,
    )
    # What viewers get (docs/security.md): the same UI and API with every mutation refused.
    deployment.start(
        "viewer",
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(viewer_port), "-w", workspace, "--read-only"],
        instance_env,
        home,
    )

    def location_loaded(port: int) -> bool:
        data = _graphql(
            port,
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
            "locationOrLoadError { __typename ... on PythonError { message } } } } } }",
        )
        entries = data["workspaceOrError"]["locationEntries"]
        return bool(entries) and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation"

    for port in (web_port, viewer_port):
        _wait(
            "the webservers to load the code location",
            deployment,
            STARTUP_TIMEOUT_S,
            lambda port=port: location_loaded(port),
        )
    ready_s = time.monotonic() - started

    frame = synthetic.generate(ROWS, seed=1)
    body = frame.to_csv(index=False).encode()
    key = version_key("v1.csv", hashlib.sha256(body).hexdigest())
    s3.put_object(Bucket=bucket, Key=f"landing/{MODEL}/v1.csv", Body=body)
    landed = time.monotonic()

    def finished_run() -> dict[str, Any] | None:
        runs = _graphql(web_port, RUNS, {"key": key})["runsOrError"]["results"]
        done = [r for r in runs if r["status"] in TERMINAL]
        # Run retries: a failed run may be followed by its retry; wait while any is still going.
        if done and len(done) == len(runs):
            return max(done, key=lambda r: r["startTime"] or 0)
        return None

    run = _wait(f"the run for {key}", deployment, RUN_TIMEOUT_S, finished_run)
    run_s = time.monotonic() - landed
    assert run["status"] == "SUCCESS", f"{run}\n{deployment.dump()}"
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["mlops/reason"] == "new_data" and tags["mlops/source_file"] == "v1.csv"

    detail = _graphql(web_port, RUN, {"runId": run["runId"]})["runOrError"]
    materialized = {"/".join(m["assetKey"]["path"]) for m in detail["assetMaterializations"] if m["partition"] == key}
    assert {f"{MODEL}/raw_data", f"{MODEL}/features"} <= materialized, materialized
    trained = f"{MODEL}/candidate_model" in materialized
    if run["jobName"] == LIFECYCLE_JOB:
        # Nothing was in production, so the sensor launched the whole lifecycle: train, gate, promote.
        expected = {f"{MODEL}/{a}" for a in ("candidate_model", "model_evaluation", "deployment_decision")}
        assert expected <= materialized, materialized
    excerpt: dict[str, Any] = {}
    for asset in ["raw_data", "features", *(["candidate_model", "deployment_decision"] if trained else [])]:
        events = _graphql(web_port, MATERIALIZATIONS, {"path": [MODEL, asset], "partition": key})["assetOrError"]
        assert [e["runId"] for e in events["assetMaterializations"]] == [run["runId"]], (asset, events)
        excerpt[asset] = [
            {**e, "metadataEntries": [m["label"] for m in e["metadataEntries"]][:6]}
            for e in events["assetMaterializations"]
        ]

    outcomes: dict[str, tuple[str, bool | None, str | None]] = {}
    for check in detail["assetChecks"]:
        executions = _graphql(
            web_port, CHECK_EXECUTIONS, {"path": check["assetKey"]["path"], "check": check["name"], "partition": key}
        )["assetCheckExecutions"]
        assert executions, f"no execution of {check['name']} for {key}"
        latest = executions[0]
        evaluation = latest["evaluation"] or {}
        outcomes[check["name"]] = (latest["status"], evaluation.get("success"), evaluation.get("severity"))
        if check["name"] in {"schema_valid", "non_inferior_to_production"}:
            excerpt[f"check:{check['name']}"] = executions[:1]
    assert {"schema_valid", "row_count_above_floor", "label_in_domain", "ids_unique"} <= set(outcomes)
    failed_blocking = {n: o for n, o in outcomes.items() if o[0] != "SUCCEEDED" and o[2] != "WARN"}
    assert failed_blocking == {}, outcomes

    # The bucket holds the landed file, the asset values and (when the run trained) the verified artifacts.
    keys = {
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    }
    assert f"assets/{MODEL}/raw_data/{key}.parquet" in keys, sorted(keys)
    assert f"assets/{MODEL}/features/{key}.parquet" in keys, sorted(keys)
    if trained:
        assert any(k.startswith("artifacts/") and k.endswith(".skops") for k in keys), sorted(keys)
    if run["jobName"] == LIFECYCLE_JOB:
        # The registry (PostgreSQL, its own schema) holds the promoted version, its artifact in the bucket.
        production = ModelRegistry(registry_url).production_version(MODEL)
        assert production is not None and production.artifact_uri.startswith(f"s3://{bucket}/artifacts/")
        assert production.artifact_hmac, "artifacts are HMAC-signed when MLOPS_ARTIFACT_HMAC_KEY is set"
    # The HMAC key (only in the code server's environment) reached no object, no run config, no log.
    for k in keys:
        assert canary.encode() not in s3.get_object(Bucket=bucket, Key=k)["Body"].read(), k
    assert canary not in detail["runConfigYaml"]
    # The read-only webserver reports the same run but refuses to launch one.
    assert _graphql(viewer_port, RUN, {"runId": run["runId"]})["runOrError"]["status"] == "SUCCESS"
    refused = _graphql(viewer_port, LAUNCH, {"job": LIFECYCLE_JOB, "partition": key})["launchRun"]
    assert refused["__typename"] == "UnauthorizedError", refused
    deployment.assert_alive()
    total_s = time.monotonic() - started
    summary = {
        "data_version": key,
        "job": run["jobName"],
        "executor": code_env["MLOPS_EXECUTOR"],
        "startup_s": round(ready_s, 1),
        "landing_to_success_s": round(run_s, 1),
        "total_s": round(total_s, 1),
        "materialized": sorted(materialized),
        "checks": {n: o[0] for n, o in sorted(outcomes.items())},
        "objects": len(keys),
        "object_keys_sample": [
            k for k in sorted(keys) if k.startswith(("landing/", f"assets/{MODEL}/raw_data/", "artifacts/"))
        ][:4],
        "graphql_excerpt": excerpt,
    }
    print("prod integration:", json.dumps(summary, indent=1))
    (tmp_path / "summary.json").write_text(json.dumps(summary, indent=1))
    out = os.environ.get("MLOPS_PROD_INTEGRATION_SUMMARY")
    if out:
        Path(out).write_text(json.dumps(summary, indent=1))
    logs_text = deployment.dump()
    assert canary not in logs_text
