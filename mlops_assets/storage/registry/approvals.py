"""Approvals, the per-model promotion policy and version verdicts (bad marks)."""

from sqlalchemy import Connection, insert, select

from mlops_assets.storage.registry.engine import RegistryCore
from mlops_assets.storage.registry.moves import withdraw_from_rollout
from mlops_assets.storage.registry.records import label, require_actor_reason, row_to_approval, utcnow
from mlops_assets.storage.registry.schema import approvals, model_policies, version_verdicts
from mlops_assets.storage.registry.statements import marked_bad, policy_in_force, registrant_of, select_version
from mlops_assets.storage.registry.types import (
    APPROVABLE_STAGES,
    Approval,
    ApprovalPolicy,
    ApprovalRequired,
    FourEyesViolation,
    ModelVersion,
    Stage,
    VersionMarkedBad,
)


def check_promotable(conn: Connection, target: ModelVersion) -> None:
    """Refuse promoting a version marked bad, or one the model's policy has not seen approved."""
    name, version = target.model_name, target.version
    bad = marked_bad(conn, name)
    if version in bad:
        raise VersionMarkedBad(
            f"{label(name, version)} is marked bad ({bad[version]}): clear_bad() it before promoting",
            model_name=name,
            version=version,
        )
    policy = policy_in_force(conn, name)
    if not policy.require_approval_for_production:
        return
    query = select(approvals.c.approver).where(
        approvals.c.model_name == name, approvals.c.version == version, approvals.c.stage == Stage.PRODUCTION
    )
    registrant = registrant_of(conn, name, version)
    if policy.four_eyes:
        query = query.where(approvals.c.approver != registrant)
    if conn.execute(query.limit(1)).first() is None:
        who = f" by someone other than its registrant {registrant!r}" if policy.four_eyes else ""
        raise ApprovalRequired(
            f"{label(name, version)}: the model's policy requires an approval for Production{who} "
            f"before promotion; record one with approve()",
            model_name=name,
            version=version,
        )


class ApprovalsMixin(RegistryCore):
    """Approvals, policy and verdicts (tables ``approvals``, ``model_policies``, ``version_verdicts``)."""

    def approve(
        self, model_name: str, version: int, *, approver: str, stage: Stage | str = Stage.PRODUCTION, comment: str
    ) -> Approval:
        """Record that ``approver`` approves ``version`` for ``stage`` (append-only; approvals do not expire).

        Args:
            model_name: Registered model name.
            version: Version approved.
            approver: Who approves (non-empty).
            stage: :attr:`Stage.PRODUCTION` (what the policy checks) or :attr:`Stage.STAGING`.
            comment: The approver's note.

        Returns:
            The recorded approval.

        Raises:
            VersionNotFound: No such version.
            FourEyesViolation: The policy says ``four_eyes`` and ``approver`` registered the version.
        """
        if not approver:
            raise ValueError(f"approving {label(model_name, version)}: approver is required")
        if stage not in APPROVABLE_STAGES:
            raise ValueError(
                f"approving {label(model_name, version)}: stage must be one of {[str(s) for s in APPROVABLE_STAGES]}"
            )
        stage = Stage(stage)
        with self._write(model_name, version, "approving") as conn:
            select_version(conn, model_name, version)
            if policy_in_force(conn, model_name).four_eyes and approver == registrant_of(conn, model_name, version):
                raise FourEyesViolation(
                    f"{label(model_name, version)}: {approver!r} registered this version and may not approve it "
                    "(four-eyes policy)",
                    model_name=model_name,
                    version=version,
                )
            result = conn.execute(
                insert(approvals)
                .values(
                    model_name=model_name,
                    version=version,
                    stage=stage,
                    approver=approver,
                    comment=comment,
                    at=utcnow(),
                )
                .returning(*approvals.c)
            ).one()
            return row_to_approval(result)

    def set_policy(
        self,
        model_name: str,
        *,
        require_approval_for_production: bool,
        four_eyes: bool = False,
        actor: str,
        reason: str,
    ) -> ApprovalPolicy:
        """Set the model's promotion policy (appended; the latest row is the policy in force).

        Returns:
            The policy now in force.
        """
        require_actor_reason(f"setting the policy of {label(model_name, None)}", actor, reason)
        with self._write(model_name, None, "setting the policy of") as conn:
            conn.execute(
                insert(model_policies).values(
                    model_name=model_name,
                    require_approval_for_production=require_approval_for_production,
                    four_eyes=four_eyes,
                    actor=actor,
                    reason=reason,
                    at=utcnow(),
                )
            )
            return policy_in_force(conn, model_name)

    def mark_bad(self, model_name: str, version: int, *, actor: str, reason: str) -> None:
        """Mark a version bad: it is skipped by :meth:`rollback` and refused by promotions until cleared.

        If it is the challenger of the active rollout, that rollout ends in the same transaction:
        rolled back, ``challenger`` cleared, the challenger archived.

        Raises:
            VersionNotFound: No such version.
        """
        self._verdict(model_name, version, "bad", actor=actor, reason=reason)

    def clear_bad(self, model_name: str, version: int, *, actor: str, reason: str) -> None:
        """Clear a version's bad mark (appends a ``cleared`` verdict; the history is kept).

        Raises:
            VersionNotFound: No such version.
        """
        self._verdict(model_name, version, "cleared", actor=actor, reason=reason)

    def _verdict(self, model_name: str, version: int, verdict: str, *, actor: str, reason: str) -> None:
        require_actor_reason(f"{verdict} verdict on {label(model_name, version)}", actor, reason)
        with self._write(model_name, version, f"recording verdict {verdict} on") as conn:
            select_version(conn, model_name, version)
            conn.execute(
                insert(version_verdicts).values(
                    model_name=model_name, version=version, verdict=verdict, actor=actor, reason=reason, at=utcnow()
                )
            )
            if verdict == "bad":
                withdraw_from_rollout(
                    conn, model_name, version, actor=actor, reason=f"marked bad: {reason}", champion_too=False
                )

    def approvals(self, model_name: str, version: int | None = None) -> list[Approval]:
        """Return the approvals of a model (or of one version), oldest first."""
        query = select(approvals).where(approvals.c.model_name == model_name)
        if version is not None:
            query = query.where(approvals.c.version == version)
        with self._read() as conn:
            rows = conn.execute(query.order_by(approvals.c.id)).all()
        return [row_to_approval(r) for r in rows]

    def policy(self, model_name: str) -> ApprovalPolicy:
        """Return the model's promotion policy in force (the default policy requires nothing)."""
        with self._read() as conn:
            return policy_in_force(conn, model_name)

    def bad_versions(self, model_name: str) -> dict[int, str]:
        """Return the versions currently marked bad, with the reason of the mark."""
        with self._read() as conn:
            return marked_bad(conn, model_name)
