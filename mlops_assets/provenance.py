"""Where a result came from, read from the running process: the package version, the git state and the runtime
(Python, platform, CPU, package versions, peak memory) recorded in every candidate's reproducibility manifest.

Wiring layer (the pure core in ``mlops_assets/ml/`` does no I/O): these read the installed package metadata and
run ``git``. The package version is what retrain run keys and the ``mlops/package_version`` tag record, and what
the registry stores as a model version's lineage (column ``code_version``). It is not Dagster's asset
``code_version``: that one is :func:`asset_code_version`, set on the assets whose logic defines the model.
"""

import hashlib
import os
import platform
import resource
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from mlops_assets.model import MLModel


def package_version() -> str:
    """The installed package version of mlops_assets (``0+unknown`` from a source tree that is not installed)."""
    try:
        return metadata.version("mlops_assets")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def asset_code_version(model: MLModel) -> str:
    """Dagster ``code_version`` of ``model``'s features, candidate_model and model_evaluation assets.

    ``<package version>+spec.<first 12 hex digits of the spec fingerprint>``: a new release or an edited spec
    changes it, so the UI marks the model's materializations as stale. Computed when the code location loads
    (an edited spec is used by the next run at once, and shows here after the code location is reloaded).

    Raises:
        SpecError: the spec is malformed (the message names the file and key).
    """
    return f"{package_version()}+spec.{model.spec().fingerprint()[:12]}"


@lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 over the package's own source: every ``*.py`` and ``*.yaml`` file under ``mlops_assets/`` (relative
    path and bytes, in path order). Identifies the code that runs whether or not it is committed, so a rerun from
    an unchanged (even uncommitted) tree is recognised as the same training and a changed one never is.
    Computed once per process (~100 small files)."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for pattern in ("*.py", "*.yaml") for p in package.rglob(pattern)):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@lru_cache(maxsize=1)
def git_state() -> tuple[str, bool]:
    """``(sha, dirty)`` of the checkout the package runs from, or ``("unknown", False)`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return sha, bool(status.strip())


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
