"""The reproducibility manifest: everything needed to say how a model was made, and to make it again."""

import os
import platform
import resource
import sys
from importlib import metadata
from typing import Any

#: Distributions whose versions change what a model is or how it is judged.
RELEVANT_PACKAGES: tuple[str, ...] = (
    "mlops_assets",
    "dagster",
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "pandera",
    "pyarrow",
    "skops",
    "SQLAlchemy",
)


def package_versions(names: tuple[str, ...] = RELEVANT_PACKAGES) -> dict[str, str]:
    """Installed version of each distribution (``"not installed"`` where absent)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def runtime_manifest() -> dict[str, Any]:
    """Python, platform, CPU and package versions of the running process."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
    }
