"""The real production deployment on one machine, for the end-to-end tests that drive it.

Four kinds of processes, as on Kubernetes (docs/deployment.md): a code location server
(``dagster code-server start``, the only one holding the MLOPS_* settings, the S3 credentials and the
HMAC key), ``dagster-daemon run`` and ``dagster-webserver`` (instance settings only), and the run
workers the code server spawns for each run. The instance is ``deploy/dagster.yaml`` on a PostgreSQL database,
the registry lives in its own schema of that database (:func:`registry_in_schema`), and landing zone, asset values
and artifacts live in a bucket of a moto S3 server on loopback.

:func:`instance_env` and :func:`code_env` build the processes' environments, :func:`prepare_home` the instance
folder, :func:`start_processes` starts them in a :class:`Deployment` (each in its own process group, logs in
files) and :func:`wait` polls a condition (GraphQL through :func:`graphql`) until a generous deadline, failing
with every log when a process died or the deadline passed. Used by test_prod_integration.py and
test_postgres_faults.py.
"""

import contextlib
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mlops_assets_tests.conftest import FAKE_AWS_ENV

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: Generous bounds (a busy shared machine), never synchronisation: every wait polls a condition.
STARTUP_TIMEOUT_S = 180
RUN_TIMEOUT_S = 900
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
#: The model MLOPS_SPEC serves (named after the packaged synthetic spec).
MODEL = "synthetic"
LIFECYCLE_JOB = f"{MODEL}__lifecycle_job"
LANDING_SENSOR = f"{MODEL}__landing_sensor"
#: The code location's name in deploy/workspace.yaml.
LOCATION = "mlops_assets"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``query`` against the webserver on ``port``; its ``data`` (asserts there are no errors)."""
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
        """Start process ``name`` (its output to ``<logs>/<name>.log``)."""
        log = (self.logs / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def assert_alive(self) -> None:
        """Fail with every log when a process exited."""
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}\n{self.dump()}"

    def log(self, name: str) -> str:
        """The whole log of process ``name``."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def dump(self) -> str:
        """The tail of every log, for a failure message."""
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace")
            parts.append(f"===== {log.name} (last 8000 chars) =====\n{text[-8000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM to each process group (the code server's run workers are in its group), then SIGKILL."""
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


def wait(what: str, deployment: Deployment, timeout: float, probe: Callable[[], Any], *, interval: float = 2.0) -> Any:
    """Poll ``probe`` every ``interval`` s until it returns something truthy (returned); fail after ``timeout`` s or
    when a process died.

    Connection errors (a webserver not up yet, a database restarting) count as "not yet".
    """
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
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})\n{deployment.dump()}")


def registry_in_schema(postgres_url: str, schema: str = "registry") -> str:
    """Create ``schema`` in the database of ``postgres_url``; the registry URL that keeps its tables there."""
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine.dispose()
    return str(sa.make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"}))


def prepare_home(home: Path) -> Path:
    """The instance folder ``home`` with the production ``dagster.yaml`` and ``workspace.yaml`` of ``deploy/``."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    shutil.copy(ROOT / "deploy" / "workspace.yaml", home / "workspace.yaml")
    return home


def instance_env(home: Path, postgres_url: str, code_port: int) -> dict[str, str]:
    """What every process needs to open the instance and find the code server — and nothing else.

    The test process's own MLOPS_*, AWS_* and DAGSTER_* variables are left out.
    """
    url = sa.make_url(postgres_url)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "AWS_", "DAGSTER_"))}
    return {
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


def code_env(
    instance: Mapping[str, str],
    *,
    spec: str,
    registry_url: str,
    bucket: str,
    s3_endpoint: str,
    hmac_key: str,
    tmp: Path,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The code server's environment: the instance's plus the prod settings, the S3 credentials and the HMAC key.

    Args:
        instance: :func:`instance_env`.
        spec: The dataset spec the code location serves (``MLOPS_SPEC``).
        registry_url: The registry database (:func:`registry_in_schema`).
        bucket: The S3 bucket of landing zone, asset values and artifacts.
        s3_endpoint: The moto server.
        hmac_key: ``MLOPS_ARTIFACT_HMAC_KEY``.
        tmp: ``TMPDIR`` of the code server and its run workers (their landing cache).
        extra: More variables (fault points: ``MLOPS_FAULTS``, ``MLOPS_FAULT_DIR``).
    """
    tmp.mkdir(parents=True, exist_ok=True)
    return {
        **instance,
        **FAKE_AWS_ENV,
        "MLOPS_ENV": "prod",
        "MLOPS_SPEC": spec,
        "MLOPS_REGISTRY_URL": registry_url,
        "MLOPS_S3_BUCKET": bucket,
        "MLOPS_S3_ENDPOINT_URL": s3_endpoint,
        "MLOPS_S3_REGION": "us-east-1",
        "MLOPS_ARTIFACT_HMAC_KEY": hmac_key,
        "TMPDIR": str(tmp),
        # Default in_process (see environments.py); MLOPS_EXECUTOR=multiprocess measures one process per step.
        "MLOPS_EXECUTOR": os.environ.get("MLOPS_EXECUTOR", "in_process"),
        **(extra or {}),
    }


def start_processes(
    deployment: Deployment,
    home: Path,
    instance: dict[str, str],
    code: dict[str, str],
    *,
    code_port: int,
    web_port: int,
    viewer_port: int | None = None,
) -> None:
    """Start the code server, the daemon, the webserver and (with ``viewer_port``) a read-only webserver."""
    deployment.start(
        "code_server",
        [
            *(str(BIN / "dagster"), "code-server", "start", "-m", "mlops_assets.definitions"),
            *("--location-name", LOCATION, "-h", "127.0.0.1", "-p", str(code_port)),
        ],
        code,
        ROOT,
    )
    workspace = str(home / "workspace.yaml")
    deployment.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace], instance, home)
    deployment.start(
        "webserver",
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), "-w", workspace],
        instance,
        home,
    )
    if viewer_port is not None:
        # What viewers get (docs/security.md): the same UI and API with every mutation refused.
        deployment.start(
            "viewer",
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(viewer_port), "-w", workspace, "--read-only"],
            instance,
            home,
        )


def location_loaded(port: int) -> bool:
    """Whether the webserver on ``port`` has loaded the code location."""
    data = graphql(
        port,
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename ... on PythonError { message } } } } } }",
    )
    entries = data["workspaceOrError"]["locationEntries"]
    return bool(entries) and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation"


def wait_loaded(deployment: Deployment, port: int) -> None:
    """Wait until the webserver on ``port`` has loaded the code location."""
    wait("the webserver to load the code location", deployment, STARTUP_TIMEOUT_S, lambda: location_loaded(port))


def runs_of(port: int, data_version: str) -> list[dict[str, Any]]:
    """Every run tagged with ``data_version`` (newest first), from :data:`RUNS`."""
    return graphql(port, RUNS, {"key": data_version})["runsOrError"]["results"]


def settled_run(port: int, data_version: str) -> dict[str, Any] | None:
    """The latest run of ``data_version`` once every run of it is finished (a failed run may be followed by its
    retry: wait while any is still going); ``None`` before."""
    runs = runs_of(port, data_version)
    done = [r for r in runs if r["status"] in TERMINAL]
    if done and len(done) == len(runs):
        return max(done, key=lambda r: r["startTime"] or 0)
    return None


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
