"""Where a result came from: code version and git state, recorded as lineage on every model."""

import hashlib
import json
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any


def code_version() -> str:
    """The installed package version of mlops_assets."""
    try:
        return metadata.version("mlops_assets")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


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


def fingerprint(payload: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``payload``: equal inputs give equal fingerprints in any process."""
    canonical = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
