"""Where a result came from, read from the running process: the package version and the git state.

Wiring layer (the pure core in ``mlops_assets/ml/`` does no I/O): these read the installed package metadata and
run ``git``. The package version is what retrain run keys and the ``mlops/package_version`` tag record, and what
the registry stores as a model version's lineage (column ``code_version``). It is not Dagster's asset
``code_version``: that one is :func:`asset_code_version`, set on the assets whose logic defines the model.
"""

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

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
