"""Killed and hung runs under the real daemon, on the local deployment (SQLite instance, local files).

Each test starts ``dagster-daemon run`` on a copy of the promoted world (synthetic version 1 in Production), the
way a user runs the product locally: the daemon's landing sensor, run queue, run launcher (the code server it
starts spawns one run worker per run, steps in-process) and run monitoring. Fault points
(``mlops_assets/faults.py``) are armed through a plan file (``MLOPS_FAULTS=@plan``) that the test writes.

* **Crash points** (issue 15 item 1): a landed version is ingested, then a manual retrain of it (``dagster job
  launch``) is SIGKILLed in candidate_model at ``trained``, then — in the daemon's automatic retries — at
  ``artifact_written``, ``registered`` and ``io_write`` (storing the step's record, between its temporary file and
  the rename); each point fires once. Every killed run ends FAILURE (the code server sees its run worker die),
  records no materialization of candidate_model, and no evaluation or deployment step ran in it; the next retry
  succeeds with exactly one model version for the data version — the one the run killed after its insert
  registered — whose artifact verifies; Production was not touched by a killed run; no temporary file is left.
* **Hung run** (item 4): a manual retrain run hangs at ``trained`` holding the ``training`` pool slot. While it is
  in flight a retrain trigger for the model is held; once its run exceeds ``dagster/max_runtime_seconds`` (added to
  the running run) run monitoring ends it, no run in flight holds the trigger any more, and the next retrain's
  candidate_model gets the slot and runs through.

The instance is the repository's local ``dagster.yaml`` with three test settings: run monitoring polls every
second and frees the slots of ended runs after 1 s (not 60 s / 300 s), and crashed runs are retried up to 4 times
(not once), so that one landed version walks through every crash point.
"""

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from mlops_assets import faults
from mlops_assets.demo_data import synthetic
from mlops_assets.instance import INSTANCE_CONFIG
from mlops_assets.ml import triggers
from mlops_assets.ml.spec import load_spec, packaged_spec_path
from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets.provenance import package_version
from mlops_assets.retrain_sensors import retrain_history
from mlops_assets.storage.artifacts.store import LocalArtifactStore
from mlops_assets.storage.files import write_frame_atomic
from mlops_assets_tests import reliability
from mlops_assets_tests.worlds import ROWS, SYNTHETIC, World

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.xdist_group("crash_points")]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = SYNTHETIC.model.name
INGEST_JOB = f"{MODEL}__ingest_job"
RETRAIN_JOB = f"{MODEL}__retrain_job"
#: Generous: a lifecycle run takes a minute or two here, several on a loaded machine; nothing is timed.
DEADLINE_S = 1200
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
#: In the order a retrain run reaches them, all inside candidate_model (``io_write``: storing its record, after the
#: registry insert).
CRASH_POINTS = ("trained", "artifact_written", "registered", "io_write")


def _instance_config() -> dict[str, Any]:
    config = copy.deepcopy(INSTANCE_CONFIG)
    config["run_monitoring"].update(poll_interval_seconds=1, free_slots_after_run_end_seconds=1)
    config["run_retries"].update(max_retries=len(CRASH_POINTS))
    return config


class Daemon:
    """``dagster-daemon run`` for the world, in its own process group, its log in a file."""

    def __init__(self, world: World, tmp: Path) -> None:
        self.home = world.root / "instance"
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(_instance_config(), sort_keys=False))
        self.plan = tmp / "fault_plan"
        self.fault_dir = tmp / "faults"
        self.log = tmp / "daemon.log"
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "MLOPS_ENV": "local",
            "MLOPS_DATA_DIR": str(world.data),
            "MLOPS_SPEC": str(packaged_spec_path(MODEL)),
            faults.FAULTS_ENV: f"@{self.plan}",
            faults.FAULT_DIR_ENV: str(self.fault_dir),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait)
                break

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    def launch(self, job: str, tags: dict[str, str]) -> None:
        """Submit a run of ``job`` to the instance's queue with ``dagster job launch`` (the daemon launches it)."""
        result = subprocess.run(
            [
                str(BIN / "dagster"),
                "job",
                "launch",
                "-w",
                str(ROOT / "workspace.yaml"),
                "-j",
                job,
                "--tags",
                json.dumps(tags),
            ],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"dagster job launch failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture
def daemon(promoted_world: tuple[World, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    world, _ = promoted_world
    d = Daemon(world, tmp_path_factory.mktemp("daemon"))
    try:
        yield d
    finally:
        d.stop()


def _wait(what: str, daemon: Daemon, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert daemon.proc is not None and daemon.proc.poll() is None, f"daemon exited\n{daemon.tail()}"
        found = probe()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}\n{daemon.tail()}")


def _runs(instance: dg.DagsterInstance, job: str, data_version: str) -> list[dg.RunRecord]:
    records = instance.get_run_records(dg.RunsFilter(job_name=job, tags={"dagster/partition": data_version}))
    return sorted(records, key=lambda r: r.create_timestamp)


def _finished_runs(instance: dg.DagsterInstance, job: str, data_version: str) -> list[dg.RunRecord] | None:
    """The runs of ``job`` for ``data_version`` once there is at least one and all have ended, else None."""
    runs = _runs(instance, job, data_version)
    return runs if runs and all(r.dagster_run.status in TERMINAL for r in runs) else None


def _terminal(instance: dg.DagsterInstance, run_id: str) -> dg.RunRecord | None:
    """The run's record once it has ended, else None."""
    record = instance.get_run_record_by_id(run_id)
    return record if record is not None and record.dagster_run.status in TERMINAL else None


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Names of the asset checks that did not pass in run ``run_id``."""
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return sorted(
        e.dagster_event.event_specific_data.check_name  # type: ignore[union-attr]
        for e in events
        if e.dagster_event is not None and not e.dagster_event.event_specific_data.passed  # type: ignore[union-attr]
    )


def _materialized_in(instance: dg.DagsterInstance, asset: str, partition: str) -> list[str]:
    """Run ids of the materializations of ``asset``'s ``partition``, oldest first."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SYNTHETIC.key(asset), asset_partitions=[partition]), limit=100
    ).records
    return [r.run_id for r in sorted(records, key=lambda r: r.storage_id)]


def _started_steps(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    return {e.step_key or "" for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)}


def _land(world: World, name: str, seed: int) -> str:
    """Write a synthetic version into the landing folder (the sensor registers it) and return its key."""
    path = write_frame_atomic(synthetic.generate(ROWS, seed=seed, start_id=seed * ROWS), world.landing / name)
    return version_key(path.name, file_digest(path))


def test_runs_killed_at_every_crash_point_recover_with_exactly_one_model_version(
    promoted_world: tuple[World, str], daemon: Daemon
) -> None:
    world, _ = promoted_world
    instance = world.instance
    registry = world.registry()
    production_before = registry.production_version(MODEL)
    assert production_before is not None
    daemon.start()
    key = _land(world, "synthetic_v002.csv", seed=2)
    # With a model in Production a landed version is ingested (validated, scored, monitored), not trained.
    (ingest,) = _wait(f"the ingest run of {key}", daemon, lambda: _finished_runs(instance, INGEST_JOB, key))
    assert ingest.dagster_run.status == dg.DagsterRunStatus.SUCCESS, daemon.tail()
    daemon.plan.write_text(";".join(f"{point}=kill" for point in CRASH_POINTS))
    daemon.launch(RETRAIN_JOB, {"dagster/partition": key})

    def finished() -> list[dg.RunRecord] | None:
        runs = _runs(instance, RETRAIN_JOB, key)
        done = [r for r in runs if r.dagster_run.status in TERMINAL]
        return runs if len(done) == len(runs) > len(CRASH_POINTS) else None

    # Four runs killed at the four points, then a retry that runs through: it ends as its gates decide.
    runs = _wait(f"the retries of the retrain of {key} to run through", daemon, finished)
    statuses = [r.dagster_run.status for r in runs]
    assert statuses[:-1] == [dg.DagsterRunStatus.FAILURE] * len(CRASH_POINTS), (statuses, daemon.tail())
    assert all((daemon.fault_dir / f"{point}.fired").exists() for point in CRASH_POINTS)
    killed, rerun = runs[:-1], runs[-1]

    # The step each run was killed in started and recorded no materialization in that run.
    for point, record in zip(CRASH_POINTS, killed, strict=True):
        step = "candidate_model"
        run_id = record.dagster_run.run_id
        started = _started_steps(instance, run_id)
        assert any(s.endswith(step) for s in started), (point, started)
        assert run_id not in _materialized_in(instance, step, key), point
        for downstream in ("model_evaluation", "deployment_decision"):
            assert run_id not in _materialized_in(instance, downstream, key), (point, downstream)

    # Exactly one model version for the data version: the one the run killed after its insert registered.
    versions = registry.versions_for_data_version(MODEL, key)
    assert len(versions) == 1, versions
    (version,) = versions
    assert version.run_id == killed[CRASH_POINTS.index("registered")].dagster_run.run_id
    candidate_runs = _materialized_in(instance, "candidate_model", key)
    assert candidate_runs == [rerun.dagster_run.run_id]
    assert rerun.dagster_run.run_id in _materialized_in(instance, "model_evaluation", key)
    gates_failed = _failed_checks(instance, rerun.dagster_run.run_id)
    # The run that ran through failed only by a gate (the candidate judged), never by a crash.
    assert rerun.dagster_run.status == dg.DagsterRunStatus.SUCCESS or gates_failed, daemon.tail()
    stored = world.env.resources["io_manager"].load_value(SYNTHETIC.key("candidate_model"), key)
    assert int(stored["version"]) == version.version and stored["artifact"]["sha256"] == version.artifact_sha256

    # No registry row without a verified artifact.
    store = LocalArtifactStore(root=world.data / "artifacts")
    all_versions = registry.list_versions(MODEL)
    for v in all_versions:
        store.get_bytes(v.artifact)  # verifies the digest (raises on a missing or altered artifact)

    # Production changed only after the successful run started: the killed runs moved nothing.
    rerun_start = datetime.fromtimestamp(rerun.start_time or 0, UTC)
    moved = [t for t in registry.transitions(MODEL) if t.at >= _aware(killed[0].create_timestamp)]
    assert all(t.at >= rerun_start for t in moved if t.reason != "registered"), moved
    production_after = registry.production_version(MODEL)
    assert production_after is not None
    if gates_failed:  # a candidate that failed a gate is never promoted
        assert production_after.version == production_before.version

    # The killed record write left a temporary file; the retry's write into the folder removed it.
    leftovers = sorted(str(p.relative_to(world.data)) for p in (world.data / "assets").rglob(".*.tmp"))
    assert leftovers == []
    registry.close()

    for point, record in zip(CRASH_POINTS, killed, strict=True):
        reliability.record(
            1,
            f"kill.{point}",
            f"run worker SIGKILLed at {point}: {faults.POINTS[point]}",
            run_status=record.dagster_run.status.value,
            killed_step_materializations=0,
            deployment_steps_run=0,
        )
    reliability.record(
        1,
        "kill.recovery",
        "the daemon's retries after the four kills (one landed data version)",
        runs=len(runs),
        failed_runs=len(killed),
        last_run=rerun.dagster_run.status.value,
        last_run_failed_gates=gates_failed,
        production_changed_by_killed_runs=False,
        model_versions_for_data_version=len(versions),
        registry_rows_without_verified_artifact=0,
        candidate_model_materializations=len(candidate_runs),
        temp_files_left=len(leftovers),
        runs_left_started=0,
    )
    reliability.record(
        4,
        "dead.run_worker",
        "run workers SIGKILLed inside candidate_model while holding the training pool slot",
        killed_runs_marked=sorted({r.dagster_run.status.value for r in killed}),
        runs_left_started=0,
        next_run_got_training_slot=True,
    )


def test_a_hung_retrain_run_is_ended_by_run_monitoring_and_frees_its_slot_and_the_trigger(
    promoted_world: tuple[World, str], daemon: Daemon
) -> None:
    world, v1 = promoted_world
    instance = world.instance
    spec = load_spec(packaged_spec_path(MODEL))
    daemon.plan.write_text("trained=hang")
    daemon.start()
    tags = {
        "dagster/partition": v1,
        "mlops/reason": "manual",
        "mlops/data_version": v1,
        "mlops/model": MODEL,
        "mlops/package_version": package_version(),
    }
    daemon.launch(RETRAIN_JOB, {**tags, "dagster/max_retries": "0"})
    _wait("the retrain run to hang at trained", daemon, lambda: (daemon.fault_dir / "trained.reached").exists())
    (hung,) = _runs(instance, RETRAIN_JOB, v1)
    assert hung.dagster_run.status == dg.DagsterRunStatus.STARTED

    def decision() -> triggers.RetrainDecision:
        # A drift retrain of a later data version: only a run in flight (or a successful one in cooldown) holds it.
        request = triggers.RetrainRequest(
            reason="drift", data_version="v_later", model=MODEL, package_version=package_version(), at=datetime.now(UTC)
        )
        history = retrain_history(instance, spec.retraining, request, job_name=RETRAIN_JOB)
        return triggers.decide(spec.retraining, request, history)

    held = decision()
    assert not held.allowed and held.rule == "in_progress", held

    # The run has been running longer than this: run monitoring ends it at its next poll.
    instance.add_run_tags(hung.dagster_run.run_id, {"dagster/max_runtime_seconds": "1"})
    ended = _wait(
        "run monitoring to end the hung run",
        daemon,
        lambda: (
            (r := instance.get_run_record_by_id(hung.dagster_run.run_id)) and r.dagster_run.status in TERMINAL and r
        ),
    )
    assert ended.dagster_run.status in {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    messages = [e.message or "" for e in instance.all_logs(hung.dagster_run.run_id)]
    assert any("maximum runtime" in m for m in messages), messages[-10:]

    # The ended run holds the trigger no more (a failed or canceled retrain starts no cooldown).
    freed = decision()
    assert freed.allowed, freed

    # The next retrain's candidate_model step needs the training slot the hung step held: its finishing proves the
    # slot was freed. (The hung run was launched with dagster/max_retries 0: a retry would inherit its 1 s limit.)
    daemon.launch(RETRAIN_JOB, tags)

    def next_run_finished() -> list[dg.RunRecord] | None:
        runs = _finished_runs(instance, RETRAIN_JOB, v1)
        return runs if runs and len(runs) == 2 else None

    runs = _wait("the next retrain run after the hung one to finish", daemon, next_run_finished)
    retry = runs[1]
    assert retry.dagster_run.run_id in _materialized_in(instance, "candidate_model", v1), daemon.tail()
    assert retry.dagster_run.status == dg.DagsterRunStatus.SUCCESS or _failed_checks(instance, retry.dagster_run.run_id)

    reliability.record(
        4,
        "hung.retrain",
        "a retrain run hangs in candidate_model (holding the training slot) past its maximum runtime",
        hung_run_status=ended.dagster_run.status.value,
        trigger_rule_while_in_flight=held.rule,
        trigger_rule_after_end=freed.rule,
        next_retrain_got_training_slot=True,
    )


def test_two_retrains_of_one_data_version_at_once_register_one_model_version(
    promoted_world: tuple[World, str], daemon: Daemon
) -> None:
    """Two runs of the same training queued together (two hands on the launchpad, or a retrain sensor firing while
    another retrain of the version runs): both run, and the registry gets exactly one new model version."""
    world, v1 = promoted_world
    instance = world.instance
    registry = world.registry()
    before = {v.version for v in registry.list_versions(MODEL)}
    daemon.start()
    for _ in range(2):
        daemon.launch(RETRAIN_JOB, {"dagster/partition": v1})

    def both_finished() -> list[dg.RunRecord] | None:
        runs = _finished_runs(instance, RETRAIN_JOB, v1)
        return runs if runs and len(runs) == 2 else None

    runs = _wait("both retrain runs to finish", daemon, both_finished)
    new = [v for v in registry.list_versions(MODEL) if v.version not in before]
    registry.close()
    assert len(new) == 1, new
    materialized = _materialized_in(instance, "candidate_model", v1)
    assert all(r.dagster_run.run_id in materialized for r in runs), daemon.tail()
    stored = world.env.resources["io_manager"].load_value(SYNTHETIC.key("candidate_model"), v1)
    assert int(stored["version"]) == new[0].version
    reliability.record(
        2,
        "retrain.twice_at_once",
        "two retrain runs of one data version queued together under the daemon",
        runs=len(runs),
        candidate_model_materializations=sum(r.dagster_run.run_id in materialized for r in runs),
        new_model_versions=len(new),
    )
