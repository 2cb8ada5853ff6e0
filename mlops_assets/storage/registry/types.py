"""Registry vocabulary: aliases, errors and the frozen records the registry returns.

Stages and their edges are the pure core's (:mod:`mlops_assets.ml.stages`).
"""

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlops_assets.ml.stages import Stage
from mlops_assets.storage.artifacts.store import ArtifactRef

DEFAULT_LOCK_TIMEOUT_S = 30.0

#: The alias of the Production version. Derived from the stage (never stored): reading it returns the
#: Production version, and only promotions and rollbacks move it.
CHAMPION = "champion"

#: The alias of the version being tried against the champion (shadow, canary, A/B test).
CHALLENGER = "challenger"

ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9_-]*")

MAX_ALIAS_LENGTH = 64

#: Stages an approval can be given for (only Production approvals are enforced, by the policy).
APPROVABLE_STAGES: tuple[Stage, ...] = (Stage.STAGING, Stage.PRODUCTION)


class RegistryError(Exception):
    """Base class of registry errors.

    Attributes:
        model_name: The model concerned.
        version: The version concerned, if any.
    """

    # Keyword arguments default to None so the exception survives pickling between processes.
    def __init__(self, message: str, *, model_name: str | None = None, version: int | None = None) -> None:
        super().__init__(message)
        self.model_name = model_name
        self.version = version


class InvalidTransition(RegistryError):
    """The requested stage change is not an edge of the stage machine from the version's current stage."""


class RegistryConflict(RegistryError):
    """The database refused a write because of a concurrent change (unique index, lock timeout, serialisation)."""


class VersionNotFound(RegistryError, LookupError):
    """The model has no such version."""


class ApprovalRequired(RegistryError):
    """The model's policy requires an approval of this version for Production, and there is none."""


class FourEyesViolation(RegistryError):
    """Under the four-eyes policy, the actor who registered a version may not approve it."""


class VersionMarkedBad(InvalidTransition):
    """The version is marked bad (by :meth:`ModelRegistry.mark_bad` or a rollback) and cannot be promoted."""


class GateEvidenceMissing(InvalidTransition):
    """A move needs passing gate evidence of this very version and artifact, and some is failed or missing."""


class NothingToRollBack(RegistryError):
    """There is no Production version, or no earlier known-good version to roll back to."""


class InvalidAlias(RegistryError, ValueError):
    """An alias name is malformed, or the alias may not point where it was asked to."""


class AliasNotFound(RegistryError, LookupError):
    """The model has no such alias."""


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from.

    Attributes:
        data_versions: Data versions the model was trained on (in order).
        run_id: The orchestrator run that trained it.
        package_version: The mlops_assets package version that trained it (registry column ``code_version``).
        git_sha: Commit of the code.
        spec_fingerprint: Fingerprint of the dataset spec.
    """

    data_versions: tuple[str, ...]
    run_id: str
    package_version: str
    git_sha: str
    spec_fingerprint: str

    def __post_init__(self) -> None:
        # Accept any sequence at runtime but store a tuple, so the record stays immutable and hashable.
        if isinstance(self.data_versions, str):
            raise TypeError("Lineage.data_versions must be a sequence of str, not a single str")
        object.__setattr__(self, "data_versions", tuple(self.data_versions))
        if not all(isinstance(v, str) for v in self.data_versions):
            raise TypeError(f"Lineage.data_versions must contain str only, got {self.data_versions!r}")


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version (a row of ``model_versions``).

    Attributes:
        model_name: Registered model name.
        version: Version number, 1, 2, 3, ... per model.
        stage: The version's :class:`Stage`.
        artifact_uri: Artifact locator.
        artifact_sha256: Artifact digest.
        artifact_size: Artifact size in bytes.
        artifact_hmac: Artifact HMAC, if the store that wrote it had a key.
        data_versions: Training data versions.
        run_id: Training run.
        package_version: The mlops_assets package version that trained it (registry column ``code_version``).
        git_sha: Commit of the code.
        spec_fingerprint: Dataset spec fingerprint.
        params: Training parameters.
        metrics: Evaluation metrics at registration.
        created_at: Registration time (UTC).
        description: Free text.
    """

    model_name: str
    version: int
    stage: Stage
    artifact_uri: str
    artifact_sha256: str
    artifact_size: int
    artifact_hmac: str | None
    data_versions: tuple[str, ...]
    run_id: str
    package_version: str
    git_sha: str
    spec_fingerprint: str
    # Dicts are unhashable; leave them out of the hash so the record can still be a set member.
    params: dict[str, Any] = field(hash=False)
    metrics: dict[str, Any] = field(hash=False)
    created_at: datetime
    description: str

    @property
    def artifact(self) -> ArtifactRef:
        """The artifact reference, ready for ``load_model``."""
        return ArtifactRef(
            uri=self.artifact_uri, sha256=self.artifact_sha256, size=self.artifact_size, hmac=self.artifact_hmac
        )

    @property
    def lineage(self) -> Lineage:
        """The lineage recorded at registration."""
        return Lineage(
            data_versions=self.data_versions,
            run_id=self.run_id,
            package_version=self.package_version,
            git_sha=self.git_sha,
            spec_fingerprint=self.spec_fingerprint,
        )


@dataclass(frozen=True)
class Transition:
    """One row of the append-only stage log.

    Attributes:
        id: Log sequence number; increases in commit order for a given model.
        model_name: Registered model name.
        version: Version concerned.
        from_stage: Stage before (``None`` for the registration row).
        to_stage: Stage after.
        actor: Who made the change.
        reason: Why (``"registered"``, ``"replaced by v3"``, a gate summary, ...).
        evidence: JSON details supporting the decision.
        at: When (UTC).
    """

    id: int
    model_name: str
    version: int
    from_stage: Stage | None
    to_stage: Stage
    actor: str
    reason: str
    evidence: dict[str, Any] = field(hash=False)
    at: datetime


@dataclass(frozen=True)
class AliasChange:
    """One row of the append-only alias log.

    Attributes:
        id: Log sequence number; increases in commit order for a given model.
        model_name: Registered model name.
        alias: Alias name.
        from_version: Version the alias named before (``None``: the alias was created).
        to_version: Version it names after (``None``: the alias was deleted).
        actor: Who made the change.
        reason: Why.
        evidence: JSON details.
        at: When (UTC).
    """

    id: int
    model_name: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    evidence: dict[str, Any] = field(hash=False)
    at: datetime


@dataclass(frozen=True)
class Approval:
    """One recorded approval of a version for a stage.

    Attributes:
        id: Sequence number.
        model_name: Registered model name.
        version: Approved version.
        stage: Stage it is approved for (one of :data:`APPROVABLE_STAGES`).
        approver: Who approved.
        comment: What the approver wrote.
        at: When (UTC).
    """

    id: int
    model_name: str
    version: int
    stage: Stage
    approver: str
    comment: str
    at: datetime


@dataclass(frozen=True)
class ApprovalPolicy:
    """A model's promotion policy.

    Attributes:
        require_approval_for_production: Promotions to Production (``transition``,
            ``promote_challenger``) need a recorded approval of that version for Production.
            Rollbacks do not: their target already served in Production.
        four_eyes: The approver must differ from the actor who registered the version (enforced when
            approving, and approvals given before the policy said so do not count).
    """

    require_approval_for_production: bool = False
    four_eyes: bool = False


@dataclass(frozen=True)
class Rejection:
    """The record that one evaluation of a model version failed its gates (table ``version_rejections``).

    Written once per failed evaluation — one artifact judged on one data version in one run — in the
    transaction that records its first failed gate (:meth:`ModelRegistry.record_gate_result`). It is a record,
    not a stage: the version's stage does not move (the gate evidence already refuses its promotion).

    Attributes:
        id: Sequence number.
        model_name: Registered model name.
        version: The rejected version.
        artifact_sha256: The artifact the gates judged.
        data_version: The data version (partition) it was evaluated on.
        run_id: The run that evaluated it.
        failed_gates: The evaluation's failed gates, ``(gate, message)`` in the order first recorded (a gate
            recorded failed twice in that run, e.g. a retried step, appears once with its latest message).
        at: When the first failed gate was recorded (UTC).
    """

    id: int
    model_name: str
    version: int
    artifact_sha256: str
    data_version: str
    run_id: str
    failed_gates: tuple[tuple[str, str], ...]
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``evidence`` of its audit-log entry)."""
        return {
            "rejection_id": self.id,
            "gate": self.failed_gates[0][0] if self.failed_gates else "",
            "failed_gates": [{"gate": gate, "message": message} for gate, message in self.failed_gates],
            "version": self.version,
            "artifact_sha256": self.artifact_sha256,
            "data_version": self.data_version,
            "run_id": self.run_id,
            "at": self.at.isoformat(),
        }
