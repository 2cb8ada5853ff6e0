"""Fingerprints of what went into a result (pure: the package version and git state are read by the wiring
layer, :mod:`mlops_assets.provenance`)."""

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def fingerprint(payload: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``payload``: equal inputs give equal fingerprints in any process."""
    canonical = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
