"""Fault points (``mlops_assets/faults.py``) and what a killed writer leaves behind.

* A point is inert without ``MLOPS_FAULTS``, refuses a malformed plan, fires once per fault folder, and its
  ``kill`` / ``pause`` actions do what they say in a real child process.
* A write of the IO manager killed between its temporary file and the rename (point ``io_write``) leaves the
  previous value intact and a temporary file behind; the next write into the folder removes it, while a live
  writer's temporary file is left alone. The same holds for the local artifact store and the landing writer.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mlops_assets import faults
from mlops_assets.storage.files import remove_stale_temps, temp_file_for, write_frame_atomic
from mlops_assets_tests import reliability

pytestmark = [pytest.mark.core, pytest.mark.faults]


def _child(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
    )


def test_a_point_is_inert_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.FAULTS_ENV, raising=False)
    faults.point("registered")  # returns
    with pytest.raises(KeyError, match="unknown fault point"):
        faults.point("no_such_point")


@pytest.mark.parametrize("plan", ["registered", "registered=explode", "nowhere=kill", "registered=kill;x"])
def test_a_malformed_plan_is_refused_naming_the_entry(monkeypatch: pytest.MonkeyPatch, plan: str) -> None:
    monkeypatch.setenv(faults.FAULTS_ENV, plan)
    with pytest.raises(faults.FaultConfigError, match="point=action"):
        faults.armed()


def test_an_armed_point_needs_a_fault_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.FAULTS_ENV, "registered=kill")
    monkeypatch.delenv(faults.FAULT_DIR_ENV, raising=False)
    with pytest.raises(faults.FaultConfigError, match=faults.FAULT_DIR_ENV):
        faults.point("registered")


def test_kill_fires_once_per_fault_folder(tmp_path: Path) -> None:
    env = {faults.FAULTS_ENV: "registered=kill", faults.FAULT_DIR_ENV: str(tmp_path)}
    code = "from mlops_assets import faults; faults.point('evaluation'); faults.point('registered'); print('after')"
    first = _child(code, env)
    assert first.returncode == -signal.SIGKILL and "after" not in first.stdout
    second = _child(code, env)  # the rerun passes the point
    assert second.returncode == 0 and "after" in second.stdout
    assert (tmp_path / "registered.fired").exists() and not (tmp_path / "evaluation.fired").exists()


def test_a_plan_file_is_read_at_each_point(tmp_path: Path) -> None:
    plan = tmp_path / "plan"
    env = {faults.FAULTS_ENV: f"@{plan}", faults.FAULT_DIR_ENV: str(tmp_path / "f")}
    code = "from mlops_assets import faults; faults.point('registered'); print('after')"
    assert _child(code, env).returncode == 0  # no file: nothing armed
    plan.write_text("registered=kill")
    assert _child(code, env).returncode == -signal.SIGKILL


def test_pause_waits_at_the_point_until_released(tmp_path: Path) -> None:
    env = {faults.FAULTS_ENV: "evaluation=pause", faults.FAULT_DIR_ENV: str(tmp_path)}
    code = "from mlops_assets import faults; faults.point('evaluation'); print('released')"
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "evaluation.reached").exists():
            assert child.poll() is None and time.monotonic() < deadline, "the child never reached the point"
            time.sleep(0.05)
        assert child.poll() is None  # waiting at the point
        (tmp_path / "evaluation.release").touch()
        out, _ = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0 and "released" in out


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "value.parquet"
    dead = tmp_path / f".value.parquet.{_dead_pid()}.abc123.tmp"
    dead.write_bytes(b"partial")
    fd, live = temp_file_for(target)  # this process: alive
    os.close(fd)
    old_unnamed = tmp_path / ".value.parquet.zz9.tmp"
    old_unnamed.write_bytes(b"x")
    os.utime(old_unnamed, (time.time() - 7200, time.time() - 7200))
    fresh_unnamed = tmp_path / ".other.parquet.qq1.tmp"
    fresh_unnamed.write_bytes(b"x")
    not_temp = tmp_path / "value.tmp"  # no leading dot: not ours
    not_temp.write_bytes(b"x")

    removed = remove_stale_temps(tmp_path)

    assert sorted(removed) == sorted([dead, old_unnamed])
    assert live.exists() and fresh_unnamed.exists() and not_temp.exists()
    assert remove_stale_temps(tmp_path / "missing") == []


IO_WRITE = """
import sys
import dagster as dg
import pandas as pd
from mlops_assets.resources import FrameIOManager

manager = FrameIOManager(base_dir=sys.argv[1])
context = dg.build_output_context(asset_key=dg.AssetKey(["m", "features"]), partition_key="v1")
manager.handle_output(context, pd.DataFrame({"x": range(int(sys.argv[2]))}))
print("written")
"""


def test_an_io_manager_write_killed_before_its_rename_keeps_the_previous_value(tmp_path: Path) -> None:
    base = tmp_path / "assets"
    faults_dir = tmp_path / "faults"
    write = [sys.executable, "-c", IO_WRITE, str(base)]
    first = subprocess.run([*write, "10"], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    folder = base / "m" / "features"
    (value,) = folder.glob("*.parquet")

    env = {**os.environ, faults.FAULTS_ENV: "io_write=kill", faults.FAULT_DIR_ENV: str(faults_dir)}
    killed = subprocess.run([*write, "200000"], capture_output=True, text=True, timeout=120, env=env)

    assert killed.returncode == -signal.SIGKILL
    assert len(pd.read_parquet(value)) == 10  # the previous value, whole
    leftovers = list(folder.glob(".*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # the killed write's partial file

    again = subprocess.run([*write, "200000"], capture_output=True, text=True, timeout=120, env=env)

    assert again.returncode == 0, again.stderr
    assert len(pd.read_parquet(value)) == 200000
    assert list(folder.glob(".*.tmp")) == []  # removed by the next write
    reliability.record(
        1,
        "io_write.killed_process",
        "IO-manager write SIGKILLed after its temporary file, before the rename",
        previous_value_rows_after_kill=10,
        temp_files_after_kill=len(leftovers),
        temp_files_after_next_write=0,
    )


def test_landing_writer_and_artifact_store_clean_up_a_dead_writers_temporary(tmp_path: Path) -> None:
    from mlops_assets.storage.artifacts.store import LocalArtifactStore

    dead_pid = _dead_pid()
    landing_temp = tmp_path / f".a.csv.{dead_pid}.x1.tmp"
    landing_temp.write_bytes(b"partial")
    write_frame_atomic(pd.DataFrame({"x": [1]}), tmp_path / "b.csv")
    assert not landing_temp.exists()

    import hashlib

    data = b"an artifact"
    sha = hashlib.sha256(data).hexdigest()
    store = LocalArtifactStore(root=tmp_path / "artifacts")
    folder = store.root / sha[:2]
    folder.mkdir(parents=True)
    artifact_temp = folder / f".{sha}.json.{dead_pid}.x2.tmp"
    artifact_temp.write_bytes(b"partial")
    ref = store.put_bytes(data, ".json")
    assert not artifact_temp.exists()
    assert Path(ref.uri.removeprefix("file://")).read_bytes() == data
