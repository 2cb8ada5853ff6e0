"""Whether the process executing a run is still alive: the run's own pid event and the host's process table.

Dagster marks a run FAILURE when its run worker dies in most cases: the code server that spawned the worker sees it
exit (``DefaultRunLauncher``), or the launcher's health check does (Kubernetes, ECS). Two cases escape both, and
the run then stays STARTED until ``run_monitoring.max_runtime_seconds`` cancels it — and a canceled run is never
retried:

* the worker died while the database was down longer than the code server's check could retry (the check's thread
  stops for good: see docs/reliability.md, last section), and every later dead worker of that code server;
* the run was executed in a process no code server watches (``dg launch``, ``dagster job execute``,
  ``materialize`` in a script) and that process was killed.

The executor writes the pid of the process executing the run's steps as its first engine event
(``Executing steps in process (pid: N)``, or ``... multiprocess executor: parent process (pid: N)``).
:func:`worker_state` reads ``/proc/<pid>/stat`` (Linux): a pid that is gone, a zombie (killed, never reaped), or a
process that started after the run did (the pid was reused) means the worker is dead. Only meaningful on the host
that ran the worker: the sensor using it acts only under ``DefaultRunLauncher``, where run workers are child
processes of the code server that evaluates the sensor.
"""

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

#: The executors' engine event naming the pid of the process that executes the run's steps.
PID_EVENT = re.compile(r"^Executing steps (?:in process|using multiprocess executor: parent process) \(pid: (\d+)\)")

WorkerState = Literal["alive", "dead", "unknown"]


def worker_pid(messages: Iterable[str]) -> int | None:
    """The pid of the run's executing process, from its engine event messages (``None``: not written yet)."""
    for message in messages:
        match = PID_EVENT.match(message or "")
        if match:
            return int(match.group(1))
    return None


def _boot_time(proc: Path) -> float | None:
    """Seconds since the epoch at which the host booted (``btime`` of ``/proc/stat``)."""
    try:
        for line in (proc / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def worker_state(pid: int, run_started_at: float, *, proc: Path = Path("/proc")) -> WorkerState:
    """Whether process ``pid``, which executed a run that started at ``run_started_at`` (epoch seconds), still runs.

    Args:
        pid: The pid from :func:`worker_pid`.
        run_started_at: The run's start time (``RunRecord.start_time``).
        proc: The proc file system (a folder with the same layout in tests).

    Returns:
        ``dead`` when no such process exists, it is a zombie (``Z``) or dead (``X``), or it started after the run
        (the pid was reused); ``alive`` when it exists and started before the run; ``unknown`` without
        ``/proc`` (not Linux), when nothing should be concluded.
    """
    if not (proc / "stat").exists():
        return "unknown"
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return "dead"
    except OSError:
        return "unknown"
    # Field 2 (comm) is in parentheses and may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    state, start_ticks = fields[0], int(fields[19])  # fields 3 and 22 of proc(5)
    if state in ("Z", "X", "x"):
        return "dead"
    boot = _boot_time(proc)
    if boot is None:
        return "unknown"
    started = boot + start_ticks / os.sysconf("SC_CLK_TCK")
    # Clock ticks (10 ms) and the run's own start-up: a worker starts shortly before the run is marked started.
    return "dead" if started > run_started_at + 1.0 else "alive"
