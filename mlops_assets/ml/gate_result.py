"""The result of one gate, as the pure core reports it (Dagster turns it into an AssetCheckResult)."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GateResult:
    """Outcome of one gate.

    Attributes:
        name: The gate's name, a predicate that reads as its passing condition
            (``ids_unique``, ``beats_baseline``); equal to the Dagster asset check name.
        passed: Whether the passing condition holds.
        condition: The passing condition in words, with the threshold
            (``"row count >= 500"``).
        message: What was observed. On failure it names the file, the column and the rule.
        observed: The observed value (a number where there is one).
        threshold: The threshold it was compared with, if any.
        evidence: JSON-serialisable details: failure cases, per-column counts, tables as lists of
            row dicts. Shown as check metadata in the UI.
    """

    name: str
    passed: bool
    condition: str
    message: str
    observed: float | int | str | None = None
    threshold: float | int | str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
