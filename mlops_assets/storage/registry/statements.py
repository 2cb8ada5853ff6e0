"""Single-purpose statements run inside a registry transaction (the caller holds the connection and the lock).

Each takes the open :class:`~sqlalchemy.Connection` first; none commits. They are the building blocks
of the registry's writes (:mod:`.moves`, the mixins) and of its reads.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.engine import Row

from mlops_assets.ml.gate_evidence import GateOutcome
from mlops_assets.storage.registry.records import dumps, label, row_to_gate_outcome, row_to_version
from mlops_assets.storage.registry.schema import (
    alias_log,
    gate_results,
    model_aliases,
    model_policies,
    model_versions,
    rollouts,
    stage_transitions,
    version_verdicts,
)
from mlops_assets.storage.registry.types import (
    CHAMPION,
    ApprovalPolicy,
    ModelVersion,
    RegistryConflict,
    Stage,
    VersionNotFound,
)


def select_version(conn: Connection, model_name: str, version: int) -> ModelVersion:
    """The version row as a :class:`ModelVersion`; :class:`VersionNotFound` if there is none."""
    row = conn.execute(
        select(model_versions).where(model_versions.c.model_name == model_name, model_versions.c.version == version)
    ).first()
    if row is None:
        raise VersionNotFound(f"{label(model_name, version)} not found", model_name=model_name, version=version)
    return row_to_version(row)


def production_of(conn: Connection, model_name: str) -> int | None:
    """The model's Production version number (the champion), or ``None``."""
    version = conn.execute(
        select(model_versions.c.version).where(
            model_versions.c.model_name == model_name, model_versions.c.stage == Stage.PRODUCTION
        )
    ).scalar_one_or_none()
    return None if version is None else int(version)


def log_transition(
    conn: Connection,
    *,
    model_name: str,
    version: int,
    from_stage: Stage | None,
    to_stage: Stage,
    actor: str,
    reason: str,
    evidence: Mapping[str, Any],
    at: datetime,
) -> None:
    """Append one row to ``stage_transitions`` (``from_stage=None`` is the registration row)."""
    conn.execute(
        insert(stage_transitions).values(
            model_name=model_name,
            version=version,
            from_stage=from_stage,
            to_stage=to_stage,
            actor=actor,
            reason=reason,
            evidence=dumps(dict(evidence)),
            at=at,
        )
    )


def set_stage(conn: Connection, model_name: str, version: int, from_stage: Stage, to_stage: Stage) -> None:
    """Move a version ``from_stage`` -> ``to_stage``; :class:`RegistryConflict` if it left ``from_stage`` meanwhile."""
    # Conditional on the stage we validated against: if it changed under us, nothing is updated
    # and we refuse rather than apply a move validated against stale state.
    result = conn.execute(
        update(model_versions)
        .where(
            model_versions.c.model_name == model_name,
            model_versions.c.version == version,
            model_versions.c.stage == from_stage,
        )
        .values(stage=to_stage)
    )
    if result.rowcount != 1:
        raise RegistryConflict(
            f"{label(model_name, version)} changed stage concurrently (expected {from_stage})",
            model_name=model_name,
            version=version,
        )


def alias_version(conn: Connection, model_name: str, alias: str) -> int | None:
    """The version ``alias`` names, or ``None`` (``champion``: the Production version; stored rows are ignored)."""
    if alias == CHAMPION:
        return production_of(conn, model_name)
    version = conn.execute(
        select(model_aliases.c.version).where(model_aliases.c.model_name == model_name, model_aliases.c.alias == alias)
    ).scalar_one_or_none()
    return None if version is None else int(version)


def move_alias(
    conn: Connection,
    model_name: str,
    alias: str,
    to_version: int | None,
    *,
    actor: str,
    reason: str,
    evidence: Mapping[str, Any],
    at: datetime,
) -> bool:
    """Point ``alias`` at ``to_version`` (``None``: delete it) and log the change; False if nothing changed.

    Not for ``champion``, which is derived from the Production stage (see :func:`log_champion`).
    """
    if alias == CHAMPION:
        raise ValueError(f"{label(model_name, to_version)}: {CHAMPION!r} is derived from the Production stage")
    from_version = alias_version(conn, model_name, alias)
    if from_version == to_version:
        # No-ops are not logged, so every log row is a real change (the table's check enforces it).
        return False
    where = (model_aliases.c.model_name == model_name, model_aliases.c.alias == alias)
    if to_version is None:
        conn.execute(delete(model_aliases).where(*where))
    elif from_version is None:
        conn.execute(
            insert(model_aliases).values(model_name=model_name, alias=alias, version=to_version, updated_at=at)
        )
    else:
        conn.execute(update(model_aliases).where(*where).values(version=to_version, updated_at=at))
    conn.execute(
        insert(alias_log).values(
            model_name=model_name,
            alias=alias,
            from_version=from_version,
            to_version=to_version,
            actor=actor,
            reason=reason,
            evidence=dumps(dict(evidence)),
            at=at,
        )
    )
    return True


def log_champion(
    conn: Connection,
    model_name: str,
    from_version: int | None,
    to_version: int | None,
    *,
    actor: str,
    reason: str,
    evidence: Mapping[str, Any],
    at: datetime,
) -> None:
    """Append the change of production to ``alias_log`` as a ``champion`` move (audit only, nothing stored).

    ``champion`` is derived from the Production stage; the log keeps its history, as for any alias.
    """
    if from_version == to_version:
        return
    conn.execute(
        insert(alias_log).values(
            model_name=model_name,
            alias=CHAMPION,
            from_version=from_version,
            to_version=to_version,
            actor=actor,
            reason=reason,
            evidence=dumps(dict(evidence)),
            at=at,
        )
    )


def policy_in_force(conn: Connection, model_name: str) -> ApprovalPolicy:
    """The model's latest :class:`ApprovalPolicy` (the default policy if none was set)."""
    row = conn.execute(
        select(model_policies.c.require_approval_for_production, model_policies.c.four_eyes)
        .where(model_policies.c.model_name == model_name)
        .order_by(model_policies.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return ApprovalPolicy()
    return ApprovalPolicy(bool(row.require_approval_for_production), bool(row.four_eyes))


def registrant_of(conn: Connection, model_name: str, version: int) -> str:
    """The actor who registered the version (from its registration log row)."""
    actor = conn.execute(
        select(stage_transitions.c.actor)
        .where(
            stage_transitions.c.model_name == model_name,
            stage_transitions.c.version == version,
            stage_transitions.c.from_stage.is_(None),
        )
        .order_by(stage_transitions.c.id)
        .limit(1)
    ).scalar_one_or_none()
    return "" if actor is None else str(actor)


def marked_bad(conn: Connection, model_name: str) -> dict[int, str]:
    """Versions whose latest verdict is ``bad``, with that verdict's reason."""
    rows = conn.execute(
        select(version_verdicts.c.version, version_verdicts.c.verdict, version_verdicts.c.reason)
        .where(version_verdicts.c.model_name == model_name)
        .order_by(version_verdicts.c.id)
    ).all()
    latest: dict[int, tuple[str, str]] = {int(r.version): (r.verdict, r.reason) for r in rows}
    return {v: reason for v, (verdict, reason) in latest.items() if verdict == "bad"}


def latest_gate_outcomes(conn: Connection, model_name: str, version: int) -> dict[str, GateOutcome]:
    """The latest recorded outcome of each gate for one version (later rows replace earlier ones)."""
    rows = conn.execute(
        select(gate_results)
        .where(gate_results.c.model_name == model_name, gate_results.c.version == version)
        .order_by(gate_results.c.id)
    ).all()
    return {r.gate: row_to_gate_outcome(r) for r in rows}


def active_rollout_row(conn: Connection, model_name: str) -> Row[Any] | None:
    """The row of the model's rollout in progress (idle, shadow or canary), or ``None``."""
    return conn.execute(
        select(rollouts).where(rollouts.c.model_name == model_name, rollouts.c.phase.in_(("idle", "shadow", "canary")))
    ).first()
