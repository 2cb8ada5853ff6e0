"""What every benchmark script records the same way: the machine, its load, and its generated page.

Imported by the scripts in this folder (run as ``python benchmarks/<script>.py``, which puts the folder first on
``sys.path``); standard library only, so an interpreter of another virtualenv (Evidently's) can import it too.
"""

import os
import platform
from pathlib import Path


def load_average() -> str:
    """The 1/5/15-minute load average, e.g. ``"0.48, 2.03, 3.56"``."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what :func:`platform.processor` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_page(path: Path, text: str) -> None:
    """Write a generated page (creating its folder) and print it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
