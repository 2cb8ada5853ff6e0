"""Stage transitions: moves along :data:`ALLOWED_TRANSITIONS`, the blue/green switch and one-step rollback."""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert

from mlops_assets.ml.stages import STAGES
from mlops_assets.storage.registry.approvals import check_promotable
from mlops_assets.storage.registry.engine import RegistryCore
from mlops_assets.storage.registry.gates import check_evidence
from mlops_assets.storage.registry.moves import find_rollback_target, promote, withdraw_from_rollout
from mlops_assets.storage.registry.records import dumps, label, require_actor_reason, utcnow
from mlops_assets.storage.registry.schema import version_verdicts
from mlops_assets.storage.registry.statements import (
    alias_version,
    log_champion,
    log_transition,
    production_of,
    select_version,
    set_stage,
)
from mlops_assets.storage.registry.types import (
    CHALLENGER,
    AliasNotFound,
    InvalidTransition,
    ModelVersion,
    NothingToRollBack,
    RegistryConflict,
    Stage,
)


def promote_the_challenger(
    conn: Connection,
    model_name: str,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, Any],
    expected_version: int | None,
    required_gates: Sequence[str] | None = None,
) -> ModelVersion:
    """The blue/green switch inside an open write transaction (see :meth:`StagesMixin.promote_challenger`)."""
    version = alias_version(conn, model_name, CHALLENGER)
    if version is None:
        raise AliasNotFound(f"{label(model_name, None)} has no {CHALLENGER!r} alias", model_name=model_name)
    if expected_version is not None and version != expected_version:
        raise RegistryConflict(
            f"{label(model_name, expected_version)}: {CHALLENGER!r} now names v{version}, not "
            f"v{expected_version}: re-evaluate before promoting",
            model_name=model_name,
            version=expected_version,
        )
    target = select_version(conn, model_name, version)
    # Same order of checks as transition(): the stage machine first, then bad mark and approval.
    if not target.stage.can_move_to(Stage.PRODUCTION):
        raise InvalidTransition(
            f"{label(model_name, version)}: transition {target.stage} -> {Stage.PRODUCTION} is not allowed "
            f"(the challenger must be in Staging or Archived)",
            model_name=model_name,
            version=version,
        )
    check_promotable(conn, target)
    check_evidence(conn, target, required_gates, Stage.PRODUCTION)
    promote(
        conn,
        target,
        actor=actor,
        reason=reason,
        evidence=evidence,
        at=utcnow(),
        incumbent_reason=f"replaced by v{version}",
        incumbent_evidence={"replaced_by": version},
    )
    return select_version(conn, model_name, version)


class StagesMixin(RegistryCore):
    """Moves of a version between stages, each in one transaction with its log rows and alias changes."""

    def transition(
        self,
        model_name: str,
        version: int,
        to_stage: Stage | str,
        *,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any],
        required_gates: Sequence[str] | None = None,
    ) -> ModelVersion:
        """Move a version to ``to_stage`` in one transaction, logging the move.

        Promoting to Production archives the current Production version first (logged with reason
        ``"replaced by v<version>"``); ``champion``, derived from the stage, then names the new version
        (the move is in the alias log, and ``challenger`` is cleared if it named it). Moving the
        Production version anywhere else leaves no ``champion`` (logged too). Archiving the
        challenger (or the champion) of the active rollout ends that rollout: rolled back,
        ``challenger`` cleared. Concurrent promotions of one model are serialised: each sees the
        previous one's result.

        Args:
            model_name: Registered model name.
            version: Version to move.
            to_stage: Target :class:`Stage` (or its string).
            actor: Who makes the change (non-empty).
            reason: Why (non-empty).
            evidence: JSON-serialisable details (gate results, metrics compared, ...).
            required_gates: For a move to Staging or Production: gate names (``"<asset>:<check>"``)
                whose latest outcome must be of this version and artifact, and passed. ``None`` checks
                nothing (every Dagster path passes them).

        Returns:
            The version after the move.

        Raises:
            VersionNotFound: No such version.
            InvalidTransition: ``to_stage`` is not reachable from the current stage.
            GateEvidenceMissing: A required gate's evidence of this version is failed, missing or of
                another artifact (an InvalidTransition).
            VersionMarkedBad: Promotion of a version marked bad (an InvalidTransition).
            ApprovalRequired: Promotion that the model's :class:`ApprovalPolicy` has not seen approved.
            RegistryConflict: The database refused the write (e.g. lost a race, lock timeout).
        """
        if not actor or not reason:
            raise ValueError(f"{label(model_name, version)}: actor and reason are required for a transition")
        evidence_json = dict(evidence)
        dumps(evidence_json)  # fail fast on non-serialisable evidence, before taking the lock
        if to_stage not in STAGES:
            raise InvalidTransition(
                f"{label(model_name, version)}: unknown stage {to_stage!r}, expected one of {[str(s) for s in STAGES]}",
                model_name=model_name,
                version=version,
            )
        to_stage = Stage(to_stage)
        with self._write(model_name, version, f"moving to {to_stage}") as conn:
            current = select_version(conn, model_name, version)
            if not current.stage.can_move_to(to_stage):
                raise InvalidTransition(
                    f"{label(model_name, version)}: transition {current.stage} -> {to_stage} is not allowed",
                    model_name=model_name,
                    version=version,
                )
            if to_stage in (Stage.STAGING, Stage.PRODUCTION):
                check_evidence(conn, current, required_gates, to_stage)
            now = utcnow()
            if to_stage == Stage.PRODUCTION:
                check_promotable(conn, current)
                promote(
                    conn,
                    current,
                    actor=actor,
                    reason=reason,
                    evidence=evidence_json,
                    at=now,
                    incumbent_reason=f"replaced by v{version}",
                    incumbent_evidence={"replaced_by": version},
                )
                return select_version(conn, model_name, version)
            set_stage(conn, model_name, version, current.stage, to_stage)
            log_transition(
                conn,
                model_name=model_name,
                version=version,
                from_stage=current.stage,
                to_stage=to_stage,
                actor=actor,
                reason=reason,
                evidence=evidence_json,
                at=now,
            )
            if current.stage == Stage.PRODUCTION:
                # Production retired without a replacement: there is no champion any more.
                log_champion(
                    conn,
                    model_name,
                    version,
                    None,
                    actor=actor,
                    reason=reason,
                    evidence={"stage_change": f"v{version} {Stage.PRODUCTION} -> {to_stage}"},
                    at=now,
                )
            if to_stage == Stage.ARCHIVED:
                withdraw_from_rollout(conn, model_name, version, actor=actor, reason=reason)
            return select_version(conn, model_name, version)

    def promote_challenger(
        self,
        model_name: str,
        *,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any],
        expected_version: int | None = None,
        required_gates: Sequence[str] | None = None,
    ) -> ModelVersion:
        """The blue/green switch: promote the version named by ``challenger``, in one transaction.

        Same rules and effects as ``transition(model, challenger, Stage.PRODUCTION)`` (approval policy,
        bad mark, archive of the incumbent, ``champion`` moved, ``challenger`` cleared), with the
        version read from the alias under the model's lock.

        Args:
            model_name: Registered model name.
            actor: Who makes the change.
            reason: Why.
            evidence: JSON-serialisable details (e.g. the rollout's final guard results).
            expected_version: If given, the version the caller evaluated; refused with
                :class:`RegistryConflict` if ``challenger`` names another version by now.
            required_gates: Gates whose latest outcome must be of the challenger's version and
                artifact, and passed (:class:`GateEvidenceMissing` otherwise); ``None`` checks nothing.

        Returns:
            The promoted version.

        Raises:
            AliasNotFound: The model has no ``challenger``.
            RegistryConflict: ``challenger`` moved since the caller read it, or the database refused.
        """
        require_actor_reason(f"promoting the challenger of {label(model_name, None)}", actor, reason)
        evidence_json = dict(evidence)
        dumps(evidence_json)
        with self._write(model_name, expected_version, "promoting the challenger of") as conn:
            return promote_the_challenger(
                conn,
                model_name,
                actor=actor,
                reason=reason,
                evidence=evidence_json,
                expected_version=expected_version,
                required_gates=required_gates,
            )

    def rollback(
        self,
        model_name: str,
        *,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
        required_gates: Sequence[str] | None = None,
    ) -> ModelVersion:
        """Roll Production back one step, to the last known-good version, in one transaction.

        Target rule: walk the model's promotions (log rows into Production) from the newest back and
        take the first version that is not the current Production version and is not marked bad.
        That is the version that served before the current one, unless it was itself rolled back
        or marked bad, in which case the walk continues further back. In the same transaction the
        current version is marked bad (so a second rollback does not bounce back to it), archived
        (reason ``"rolled back to v<N>: <reason>"``), the target promoted (reason
        ``"rollback from v<M>: <reason>"``) and ``champion`` moved. The approval policy does not
        apply: the target already served in Production, and a rollback must not wait for a reviewer.

        Args:
            model_name: Registered model name.
            actor: Who rolls back.
            reason: Why (e.g. the incident).
            evidence: JSON-serialisable details, recorded on both log rows.
            required_gates: Gates whose latest outcome must be of the target's version and artifact,
                and passed; ``None`` checks nothing.

        Returns:
            The version now in Production.

        Raises:
            NothingToRollBack: No Production version, or no earlier known-good one.
            GateEvidenceMissing: The target's gate evidence is not all passed (nothing changes).
            RegistryConflict: The database refused the write.
        """
        require_actor_reason(f"rolling back {label(model_name, None)}", actor, reason)
        details = dict(evidence or {})
        dumps(details)
        with self._write(model_name, None, "rolling back") as conn:
            current = production_of(conn, model_name)
            if current is None:
                raise NothingToRollBack(
                    f"{label(model_name, None)} has no Production version to roll back from", model_name=model_name
                )
            target_version = find_rollback_target(conn, model_name, current)
            if target_version is None:
                raise NothingToRollBack(
                    f"{label(model_name, current)}: no earlier known-good Production version to roll back to "
                    "(none served before it, or all that did are marked bad)",
                    model_name=model_name,
                    version=current,
                )
            target = select_version(conn, model_name, target_version)
            check_evidence(conn, target, required_gates, "Production (rollback target)")
            now = utcnow()
            trail = {**details, "rollback": {"from": current, "to": target_version}}
            conn.execute(
                insert(version_verdicts).values(
                    model_name=model_name,
                    version=current,
                    verdict="bad",
                    actor=actor,
                    reason=f"rolled back: {reason}",
                    at=now,
                )
            )
            promote(
                conn,
                target,
                actor=actor,
                reason=f"rollback from v{current}: {reason}",
                evidence=trail,
                at=now,
                incumbent_reason=f"rolled back to v{target_version}: {reason}",
                incumbent_evidence=trail,
            )
            return select_version(conn, model_name, target_version)

    def rollback_target(self, model_name: str) -> ModelVersion | None:
        """The version :meth:`rollback` would restore now (``None``: nothing in Production or no target)."""
        with self._read() as conn:
            current = production_of(conn, model_name)
            if current is None:
                return None
            target = find_rollback_target(conn, model_name, current)
            return None if target is None else select_version(conn, model_name, target)
