"""Files on the local file system: writing so that no reader ever sees a partial file, and cleaning up after a
writer that was killed.

Plain Python over pandas and the file system; never imports dagster. The demo data writers
(:mod:`mlops_assets.demo_data`) and the tests land files with :func:`write_frame_atomic`; the IO manager and the
local artifact store write through :func:`temp_file_for` and :func:`remove_stale_temps`.

A temporary file is named ``.<target name>.<writer pid>.<random>.tmp`` beside its target: a landing-zone sensor
ignores it (leading dot, ``.tmp``), and the next write into the folder can tell a temporary file whose writer died
(SIGKILL, OOM, a lost node) from one still being written, and removes it.
"""

import contextlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

import pandas as pd

#: ``.<name>.<pid>.<random>.tmp``: the writer's pid is the second-to-last dotted field before ``tmp``.
_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.[^.]+\.tmp$")
#: A temporary file without a writer pid in its name (written before pids were recorded) is stale after this long.
UNNAMED_TEMP_MAX_AGE_S = 3600.0


def temp_file_for(path: Path) -> tuple[int, Path]:
    """Create a temporary file beside ``path`` for writing it atomically; return its open descriptor and path.

    The name carries this process's pid (see the module docstring), so :func:`remove_stale_temps` can remove it if
    this process dies before renaming it into place.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    return fd, Path(name)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files in ``folder`` left by writers that died before renaming them; return them.

    A temporary file (``.*.tmp``) is stale when the pid in its name is not a live process, or — for a name
    without a pid — when it is older than :data:`UNNAMED_TEMP_MAX_AGE_S`. Files of live writers (another run
    writing beside this one) are left alone. Missing folders and files that vanish meanwhile are fine.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    now = time.time()
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")) or not entry.is_file():
            continue
        match = _TEMP_NAME.match(entry.name)
        stale = False
        if match is not None:
            pid = int(match["pid"])
            stale = pid != os.getpid() and not _alive(pid)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale = now - entry.stat().st_mtime > UNNAMED_TEMP_MAX_AGE_S
        if stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def temp_dir_for(parent: Path, prefix: str) -> Path:
    """Create a private temporary folder ``<parent>/<prefix><pid>-<random>`` for this process and return it."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def remove_stale_temp_dirs(parent: Path, prefix: str) -> list[Path]:
    """Remove the folders ``<prefix><pid>-*`` in ``parent`` (made by :func:`temp_dir_for`) whose process is dead;
    return them. A process killed while it held such a folder (a downloaded data file, say) never removed it."""
    removed: list[Path] = []
    pattern = re.compile(rf"^{re.escape(prefix)}(?P<pid>\d+)-")
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def write_frame_atomic(df: pd.DataFrame, path: Path, fmt: Literal["csv", "parquet"] = "csv") -> Path:
    """Write a frame to ``path`` so that no reader ever sees a partial file.

    The frame is written to a temporary file in the same directory and renamed over ``path``
    (``os.replace`` is atomic within a file system), so a sensor watching the directory sees either no
    file or the complete one.

    Args:
        df: The frame; its index is not written.
        path: The target file (its directory must exist).
        fmt: ``csv`` or ``parquet``.

    Returns:
        ``path``.
    """
    path = Path(path)
    # The temporary name starts with a dot and ends in .tmp so a landing-zone sensor ignores it.
    remove_stale_temps(path.parent)
    fd, tmp = temp_file_for(path)
    tmp_name = str(tmp)
    try:
        with os.fdopen(fd, "wb") as handle:
            if fmt == "csv":
                # CRLF (RFC 4180) rows: the csv writer then quotes every field holding a CR or LF, so a text
                # value "\r" reads back as itself instead of ending the row (it is left bare with LF rows).
                df.to_csv(handle, index=False, encoding="utf-8", lineterminator="\r\n")
            else:
                df.to_parquet(handle, index=False)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
