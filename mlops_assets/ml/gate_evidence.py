"""Promotion evidence bound to one model version and its artifact digest (pure core, no dagster).

Every model gate (the checks on ``candidate_model`` and ``model_evaluation``) records its outcome in the
registry as a :class:`GateOutcome` naming the model version and the artifact digest it judged. A
promotion then asks the registry for the latest outcome of each required gate *for that version* and
decides here: evidence counts only when it judged this version's very artifact and passed. A data
version's results are never borrowed by another model version trained on the same data.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlops_assets.ml.promotion import GateStatus


@dataclass(frozen=True)
class GateOutcome:
    """One recorded outcome of one gate for one model version (a row of the registry's ``gate_results``).

    Attributes:
        model_name: Registered model name.
        version: The model version the gate judged.
        artifact_sha256: SHA-256 of the artifact the gate judged (64 lowercase hex digits).
        gate: The gate's name, ``"<asset>:<check>"`` (a Dagster asset check key).
        passed: Whether the gate passed.
        data_version: The data version (partition) the gate was evaluated on.
        run_id: The run that evaluated it.
        summary: The gate's message (what was observed against which threshold).
        at: When it was recorded (UTC).
    """

    model_name: str
    version: int
    artifact_sha256: str
    gate: str
    passed: bool
    data_version: str
    run_id: str
    summary: str
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for transition evidence and asset metadata)."""
        return {
            "gate": self.gate,
            "version": self.version,
            "artifact_sha256": self.artifact_sha256,
            "passed": self.passed,
            "data_version": self.data_version,
            "run_id": self.run_id,
            "summary": self.summary,
            "at": self.at.isoformat(),
        }


def judge_evidence(
    required: Sequence[str], outcomes: Mapping[str, GateOutcome], *, version: int, artifact_sha256: str
) -> list[GateStatus]:
    """The status of each required gate for one model version, in the order of ``required``.

    ``passed`` only when the latest outcome of the gate is of ``version``, judged ``artifact_sha256`` and
    passed; otherwise ``failed`` (the latest outcome failed: the version is rejected until a new evaluation
    passes), ``missing`` (never evaluated for this version) or ``wrong_artifact`` (evaluated another digest).

    Args:
        required: Gate names, ``"<asset>:<check>"``.
        outcomes: The latest outcome per gate name for this version (from the registry).
        version: The model version to be moved.
        artifact_sha256: Its registered artifact digest.

    Returns:
        One :class:`GateStatus` per required gate; ``detail`` names the run (and digests) behind it.
    """
    statuses: list[GateStatus] = []
    for gate in required:
        outcome = outcomes.get(gate)
        if outcome is None or outcome.version != version:
            statuses.append(GateStatus(gate, "missing", f"no result for v{version}"))
        elif outcome.artifact_sha256 != artifact_sha256:
            statuses.append(
                GateStatus(
                    gate,
                    "wrong_artifact",
                    f"run {outcome.run_id} judged artifact sha256 {outcome.artifact_sha256[:12]}, "
                    f"v{version}'s is {artifact_sha256[:12]}",
                )
            )
        else:
            status = "passed" if outcome.passed else "failed"
            statuses.append(
                GateStatus(gate, status, f"v{version}, run {outcome.run_id}, data version {outcome.data_version}")
            )
    return statuses


def refusals(statuses: Sequence[GateStatus]) -> list[str]:
    """One sentence per gate that is not passed, e.g. ``"model_evaluation:metric_above_floor is failed (...)"``."""
    return [
        f"{s.check} is {s.status}" + (f" ({s.detail})" if s.detail else "") for s in statuses if s.status != "passed"
    ]
