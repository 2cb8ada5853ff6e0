"""Named fault points for fault-injection tests: inert unless ``MLOPS_FAULTS`` arms them.

Code that must survive a crash at a given moment calls :func:`point` there (``faults.point("registered")``).
With ``MLOPS_FAULTS`` unset — always, outside tests — the call reads one environment variable and returns. A test
arms points for the processes it starts (the daemon, the code server and the run workers inherit the
environment):

``MLOPS_FAULTS="registered=kill"``
    SIGKILL the process that reaches the point (the run worker with the in-process executor, the step process
    with the multiprocess executor): no ``finally`` block, ``atexit`` hook or event write runs.
``MLOPS_FAULTS="trained=hang"``
    Create ``<MLOPS_FAULT_DIR>/<point>.reached`` and sleep there until the process is killed or interrupted (a
    hung step: run monitoring must end the run).
``MLOPS_FAULTS="materialize=pause"``
    Create ``<MLOPS_FAULT_DIR>/<point>.reached`` and wait there until the test creates
    ``<MLOPS_FAULT_DIR>/<point>.release`` (to act — restart a database, kill a process — at an exact moment
    without depending on timing).

Several points are separated by ``;`` (``"registered=kill;io_write=pause"``). ``MLOPS_FAULTS="@<file>"`` reads
the plan from that file at every point instead (a missing file arms nothing), so a test can change the plan of
processes that are already running (a daemon, its code server). Each point fires **once** per
``MLOPS_FAULT_DIR`` (required when any point is armed): the first process to reach it creates
``<point>.fired`` atomically and acts; later arrivals — the rerun of the killed run — pass through, so the test
can check recovery under the same environment. The points of this package are listed in :data:`POINTS`.

Pure Python (no dagster import); stdlib only.
"""

import os
import signal
import time
from pathlib import Path

#: Environment variable arming fault points: ``point=action[;point=action...]``.
FAULTS_ENV = "MLOPS_FAULTS"
#: Folder of the once-markers and the pause handshake files.
FAULT_DIR_ENV = "MLOPS_FAULT_DIR"
#: What an armed point can do.
ACTIONS = ("kill", "hang", "pause")
#: Every fault point in the package, and where it is.
POINTS: dict[str, str] = {
    "trained": "candidate_model: candidate and baseline are fitted in memory, nothing stored or registered yet",
    "artifact_written": "candidate_model: the candidate's artifact is stored, the registry insert not yet made",
    "registered": "candidate_model: the version is registered, the materialization not yet recorded",
    "io_write": "FrameIOManager.handle_output: the temporary file is written, not yet renamed into place",
    "evaluation": "model_evaluation: the candidate is evaluated, the materialization not yet recorded",
    "landing_tick": "landing_sensor: the tick has planned its run requests, not yet returned them to the daemon",
}
#: How often a paused point looks for its release file, in seconds.
PAUSE_POLL_S = 0.05


class FaultConfigError(ValueError):
    """``MLOPS_FAULTS`` names an unknown point or action, or ``MLOPS_FAULT_DIR`` is missing."""


def armed() -> dict[str, str]:
    """The armed points and their actions, from ``MLOPS_FAULTS`` (empty when unset).

    Raises:
        FaultConfigError: an entry is not ``point=action``, or names an unknown point or action.
    """
    raw = os.environ.get(FAULTS_ENV, "").strip()
    if raw.startswith("@"):
        try:
            raw = Path(raw[1:]).read_text().strip()
        except FileNotFoundError:
            return {}
    if not raw:
        return {}
    plan: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in raw.split(";"))):
        name, sep, action = entry.partition("=")
        name, action = name.strip(), action.strip()
        if not sep or name not in POINTS or action not in ACTIONS:
            raise FaultConfigError(
                f"{FAULTS_ENV}: {entry!r} is not point=action with a point in {sorted(POINTS)} "
                f"and an action in {list(ACTIONS)}"
            )
        plan[name] = action
    return plan


def fault_dir() -> Path:
    """``MLOPS_FAULT_DIR`` as a path.

    Raises:
        FaultConfigError: it is unset while points are armed.
    """
    value = os.environ.get(FAULT_DIR_ENV, "")
    if not value:
        raise FaultConfigError(f"{FAULTS_ENV} is set but {FAULT_DIR_ENV} is not: the points need a folder")
    return Path(value)


def _claim(folder: Path, name: str) -> bool:
    """Whether this process is the first to reach point ``name`` (creates ``<name>.fired`` atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(folder / f"{name}.fired", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{os.getpid()}\n")
    return True


def point(name: str) -> None:
    """Fault point ``name``: nothing unless ``MLOPS_FAULTS`` arms it; else kill, hang or pause here once.

    Args:
        name: A key of :data:`POINTS`.

    Raises:
        KeyError: ``name`` is not a known point (a typo in the code, found by the first test that passes it).
        FaultConfigError: ``MLOPS_FAULTS`` is malformed or ``MLOPS_FAULT_DIR`` is unset while armed.
    """
    if name not in POINTS:
        raise KeyError(f"unknown fault point {name!r}; known: {sorted(POINTS)}")
    if FAULTS_ENV not in os.environ:
        return
    action = armed().get(name)
    if action is None:
        return
    folder = fault_dir()
    if not _claim(folder, name):
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # SIGKILL is delivered asynchronously; never run on past the point
    elif action == "hang":
        (folder / f"{name}.reached").write_text(f"{os.getpid()}\n")
        while True:
            time.sleep(1)
    else:
        (folder / f"{name}.reached").write_text(f"{os.getpid()}\n")
        release = folder / f"{name}.release"
        while not release.exists():
            time.sleep(PAUSE_POLL_S)
