"""A finished lifecycle on a local Dagster instance, and the webserver showing it, for the real-browser UI test.

:func:`finished_lifecycle` builds it the way a user gets there (README "Quickstart" and "Open the UI"): an instance
folder written by :func:`mlops_assets.instance.ensure_instance` (SQLite, local files), ``dagster-daemon run`` and
``dagster-webserver`` on it, serving the packaged ``synthetic`` model alone (``MLOPS_SPEC``, as ``mlops-demo --spec``
does). One small data version (:data:`ROWS` rows) is written into the model's landing folder; the daemon's landing
sensor registers it and launches ``synthetic__lifecycle_job``, which puts its model into Production. Then a retrain
of that version is launched through the webserver's GraphQL API (what the UI's launchpad sends) with the launchpad
policy override ``metric_floor: 0.99`` (docs/gates.md, "Policy"): its ``model_evaluation:metric_above_floor`` gate
fails, a real failed check execution stored in the instance, with the observed metric and the threshold in its
metadata. The daemon is then stopped (its sensors' ticks stay in the instance); the webserver keeps serving.

Processes run in their own process groups with their logs in files (:class:`mlops_assets_tests.deployment.Deployment`);
every wait polls a condition under a generous deadline and fails with the logs.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_assets.demo_data import synthetic
from mlops_assets.instance import LOCATION_NAME, ensure_instance
from mlops_assets.ml.spec import packaged_spec_path
from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets.storage.files import write_frame_atomic
from mlops_assets.storage.registry import ModelRegistry
from mlops_assets_tests.deployment import (
    RUN_TIMEOUT_S,
    TERMINAL,
    Deployment,
    free_port,
    graphql,
    settled_run,
    wait,
    wait_loaded,
)

BIN = Path(sys.executable).parent
#: The model served (the packaged spec's name): asset keys ``synthetic/<asset>``, one asset group ``synthetic``.
MODEL = "synthetic"
#: Rows of the landed version: enough for every gate to measure (as in the lifecycle tests), small enough to be quick.
ROWS = 2000
#: The landed file (its version key is ``synthetic_v001__<content hash>``).
FILE = "synthetic_v001.csv"
#: The gate the override makes fail, on ``model_evaluation``, and the threshold the launchpad sets for it.
FAILED_CHECK = "metric_above_floor"
FAILED_THRESHOLD = 0.99

LAUNCH_WITH_CONFIG = """
mutation Launch($location: String!, $job: String!, $partition: String!, $config: RunConfigData!) {
  launchRun(executionParams: {
    selector: {repositoryLocationName: $location, repositoryName: "__repository__", jobName: $job},
    runConfigData: $config,
    executionMetadata: {tags: [{key: "dagster/partition", value: $partition}]}
  }) { __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } }
}"""

RUN_STATUS = """
query Run($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }"""


@dataclass(frozen=True)
class FinishedLifecycle:
    """What the UI test looks at.

    Attributes:
        home: The instance folder (``DAGSTER_HOME``): ``dagster.yaml``, ``workspace.yaml``, ``mlops/`` (data).
        web_url: The webserver, ``http://127.0.0.1:<port>``.
        version: The landed data version's key (a partition of ``synthetic__data_versions``), in Production.
        landing_run_id: The lifecycle run the landing sensor launched for it (SUCCESS).
        failed_run_id: The retrain run whose ``metric_above_floor`` gate failed (FAILURE).
        failed_observed: The metric that gate observed (its ``observed`` metadata, as stored in the instance).
        deployment: The webserver's process (and the stopped daemon's), for logs in failure messages.
    """

    home: Path
    web_url: str
    version: str
    landing_run_id: str
    failed_run_id: str
    failed_observed: float
    deployment: Deployment


def _environment(home: Path) -> dict[str, str]:
    """The daemon's and webserver's environment: the local environment on ``home``, the synthetic model alone; none
    of the caller's DAGSTER_/MLOPS_ settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MLOPS_"))}
    return {
        **base,
        "DAGSTER_HOME": str(home),
        "MLOPS_ENV": "local",
        "MLOPS_DATA_DIR": str(home / "mlops"),
        "MLOPS_SPEC": str(packaged_spec_path(MODEL)),
    }


def _create_storages(home: Path) -> None:
    """Create the instance's SQLite storages before two processes open it at once (they race on the schema
    migrations; see mlops_assets/demo.py)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
        instance.get_dynamic_partitions(f"{MODEL}__data_versions")
        instance.all_instigator_state()


def _land(home: Path) -> str:
    """Write the data version into the model's landing folder (atomically: the sensor never sees half a file)."""
    landing = home / "mlops" / "landing" / MODEL
    landing.mkdir(parents=True, exist_ok=True)
    path = write_frame_atomic(synthetic.generate(ROWS, seed=1), landing / FILE)
    return version_key(path.name, file_digest(path))


def _launch_failing_retrain(port: int, version: str) -> str:
    """Launch ``synthetic__retrain_job`` for ``version`` with the launchpad override that fails the gate; its run id."""
    config: dict[str, Any] = {
        "ops": {f"{MODEL}__model_evaluation": {"config": {"metric_floor": FAILED_THRESHOLD}}},
    }
    data = graphql(
        port,
        LAUNCH_WITH_CONFIG,
        {"location": LOCATION_NAME, "job": f"{MODEL}__retrain_job", "partition": version, "config": config},
    )["launchRun"]
    assert data["__typename"] == "LaunchRunSuccess", data
    return str(data["run"]["runId"])


def _check_evaluations(home: Path, run_id: str) -> dict[str, dg.AssetCheckEvaluation]:
    """The asset check evaluations stored for run ``run_id``, by check name."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    events = [r.event_log_entry.dagster_event for r in records]
    evaluations = [e.event_specific_data for e in events if e is not None]
    return {e.check_name: e for e in evaluations if isinstance(e, dg.AssetCheckEvaluation)}


def _run_status(port: int, run_id: str) -> str | None:
    """The run's status once it has ended, else ``None``."""
    status = graphql(port, RUN_STATUS, {"runId": run_id})["runOrError"].get("status")
    return status if status in TERMINAL else None


@contextmanager
def finished_lifecycle(root: Path) -> Iterator[FinishedLifecycle]:
    """Build the finished lifecycle in ``root`` (``root/home``: the instance; ``root/logs``: the processes' logs) and
    serve it; stop every process on exit.

    Raises:
        AssertionError: a process died, a run did not end as expected, or a deadline passed (with every log).
    """
    home = ensure_instance(root / "home")
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = _environment(home)
    _create_storages(home)
    port = free_port()
    web = Deployment(logs)
    daemon = Deployment(logs)
    workspace = str(home / "workspace.yaml")
    try:
        daemon.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace], env, home)
        webserver = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", workspace]
        web.start("webserver", webserver, env, home)
        version = _land(home)
        wait_loaded(web, port)

        def landing_run() -> dict[str, Any] | None:
            daemon.assert_alive()
            return settled_run(port, version)

        landed = wait(f"the landing sensor's run of {version}", web, RUN_TIMEOUT_S, landing_run)
        assert landed["jobName"] == f"{MODEL}__lifecycle_job" and landed["status"] == "SUCCESS", (landed, web.dump())
        registry = ModelRegistry(f"sqlite:///{home / 'mlops' / 'registry.db'}")
        try:
            production = registry.production_version(MODEL)
        finally:
            registry.close()
        assert production is not None and production.data_versions == (version,), production
        failed_run_id = _launch_failing_retrain(port, version)

        def failing_run() -> str | None:
            daemon.assert_alive()
            return _run_status(port, failed_run_id)

        status = wait(f"the retrain run {failed_run_id} with metric_floor 0.99", web, RUN_TIMEOUT_S, failing_run)
        assert status == "FAILURE", (status, web.dump())
        # Real check executions in the instance: every gate of the lifecycle run passed; the override failed one.
        passed = _check_evaluations(home, landed["runId"])
        assert passed and all(e.passed for e in passed.values()), {n: e.passed for n, e in passed.items()}
        failed = _check_evaluations(home, failed_run_id)[FAILED_CHECK]
        assert not failed.passed and failed.metadata["threshold"].value == FAILED_THRESHOLD, failed
        # The sensors' ticks are stored; nothing more runs while the browser looks.
        daemon.stop()
        yield FinishedLifecycle(
            home=home,
            web_url=f"http://127.0.0.1:{port}",
            version=version,
            landing_run_id=landed["runId"],
            failed_run_id=failed_run_id,
            failed_observed=float(failed.metadata["observed"].value),  # type: ignore[arg-type]
            deployment=web,
        )
    finally:
        daemon.stop()
        web.stop()
