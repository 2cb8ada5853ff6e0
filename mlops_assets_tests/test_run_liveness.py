"""A run whose executing process died unseen is marked failed (``run_liveness.py``, ``<model>__dead_run_sensor``).

* Core: the pid event is parsed; a live process, a gone pid, a zombie and a reused pid are told apart from /proc.
* End to end: a run executed in a process no code server watches (``materialize`` in a script, as ``dg launch``
  does) is SIGKILLed mid-step and stays STARTED; the model's dead-run sensor suspects it on one tick and marks it
  FAILURE on the next (so run retries can re-run it), naming the pid; a run whose process lives is left alone.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mlops_assets import run_liveness
from mlops_assets.instance import INSTANCE_CONFIG
from mlops_assets_tests import reliability
from mlops_assets_tests.support import model_graph

pytestmark = [pytest.mark.core, pytest.mark.faults]

G = model_graph("synthetic")
DEAD_RUN_SENSOR = next(s for s in G.defs.sensors or [] if s.name == G.name("dead_run_sensor"))


def test_the_pid_comes_from_the_executors_engine_event() -> None:
    assert run_liveness.worker_pid(["Started process for run", "Executing steps in process (pid: 4242)"]) == 4242
    parent = "Executing steps using multiprocess executor: parent process (pid: 77)"
    assert run_liveness.worker_pid([parent]) == 77
    assert run_liveness.worker_pid(["Finished steps in process (pid: 1) in 2s"]) is None
    assert run_liveness.worker_pid([]) is None


def test_live_gone_zombie_and_reused_processes_are_told_apart(tmp_path: Path) -> None:
    me = os.getpid()
    assert run_liveness.worker_state(me, run_started_at=time.time()) == "alive"
    # This process started long after a run that started at the epoch: its pid would have been reused.
    assert run_liveness.worker_state(me, run_started_at=0.0) == "dead"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert run_liveness.worker_state(int(gone.stdout), run_started_at=time.time()) == "dead"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        started = time.time()
        child.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (Path("/proc") / str(child.pid) / "stat").read_text().split(") ")[1][0] != "Z":
            assert time.monotonic() < deadline, "the killed child never became a zombie"
            time.sleep(0.05)
        assert run_liveness.worker_state(child.pid, run_started_at=started) == "dead"  # killed, never reaped
    finally:
        child.wait()
    assert run_liveness.worker_state(me, run_started_at=time.time(), proc=tmp_path) == "unknown"  # no /proc


RUN_SCRIPT = """
import sys
from pathlib import Path
import dagster as dg

release = Path(sys.argv[1])

@dg.asset(key=["synthetic", "slow_step"])
def slow_step():
    Path(str(release) + ".started").touch()
    while not release.exists():
        import time; time.sleep(0.05)
    return 1

with dg.DagsterInstance.get() as instance:
    dg.materialize([slow_step], instance=instance, tags={"mlops/model": "synthetic"})
"""


@pytest.mark.e2e
def test_a_run_whose_process_was_killed_unseen_is_marked_failed_on_the_second_tick(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(INSTANCE_CONFIG))  # the local run launcher
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)  # create the storages once: two processes creating them at once race
    release = tmp_path / "release"
    killed = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, str(release)], env=env)
    alive = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, str(tmp_path / "release_alive")], env=env)
    try:
        deadline = time.monotonic() + 300
        while not (Path(f"{release}.started").exists() and Path(f"{tmp_path / 'release_alive'}.started").exists()):
            assert killed.poll() is None and alive.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=60)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = {r.dagster_run.run_id: r for r in instance.get_run_records()}
            pids = {
                run_id: run_liveness.worker_pid(
                    e.message for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
                )
                for run_id in runs
            }
            (dead_run,) = [run_id for run_id, pid in pids.items() if pid == killed.pid]
            (live_run,) = [run_id for run_id, pid in pids.items() if pid == alive.pid]

            def status(run_id: str) -> dg.DagsterRunStatus:
                return instance.get_run_by_id(run_id).status  # type: ignore[union-attr]

            assert status(dead_run) == status(live_run) == dg.DagsterRunStatus.STARTED
            with dg.build_sensor_context(instance=instance) as context:
                first = DEAD_RUN_SENSOR(context)
            assert status(dead_run) == dg.DagsterRunStatus.STARTED  # suspected, not yet marked
            assert dead_run in str(first.skip_message)  # type: ignore[union-attr]
            with dg.build_sensor_context(instance=instance, cursor=context.cursor) as context:
                second = DEAD_RUN_SENSOR(context)
            assert status(dead_run) == dg.DagsterRunStatus.FAILURE
            assert status(live_run) == dg.DagsterRunStatus.STARTED
            failure = instance.all_logs(dead_run, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert len(failure) == 1 and f"pid {killed.pid}" in (failure[0].message or "")
            assert "marked 1 run(s)" in str(second.skip_message)  # type: ignore[union-attr]
        Path(f"{tmp_path / 'release_alive'}").touch()
        assert alive.wait(timeout=120) == 0
    finally:
        for proc in (killed, alive):
            if proc.poll() is None:
                proc.kill()
    reliability.record(
        4,
        "dead.unwatched_process",
        "a run executed outside any code server (materialize in a script, as dg launch does) SIGKILLed mid-step",
        after_first_tick="STARTED (suspected)",
        after_second_tick="FAILURE",
        run_failure_events=1,
        live_run_left="STARTED",
    )


def _dead_run_sensor_interval() -> int | None:
    graph = model_graph("synthetic")
    return next(s for s in graph.defs.sensors or [] if s.name == graph.name("dead_run_sensor")).minimum_interval_seconds


def test_the_dead_run_interval_is_30_s_unless_the_environment_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_DEAD_RUN_INTERVAL_S", raising=False)
    assert _dead_run_sensor_interval() == 30
    monkeypatch.setenv("MLOPS_DEAD_RUN_INTERVAL_S", " 7 ")
    assert _dead_run_sensor_interval() == 7


@pytest.mark.parametrize("bad", ["0", "-5", "2.5", "five", "１０"])
def test_a_dead_run_interval_that_is_not_a_whole_number_of_seconds_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("MLOPS_DEAD_RUN_INTERVAL_S", bad)
    with pytest.raises(ValueError, match="MLOPS_DEAD_RUN_INTERVAL_S") as caught:
        _dead_run_sensor_interval()
    assert repr(bad) in str(caught.value)
