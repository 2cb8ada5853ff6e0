"""Compound effects of a stage or rollout change, applied inside the caller's write transaction.

Promotion (archive the incumbent, promote, log the ``champion`` move, clear ``challenger``), and how a change of
production or a withdrawn version ends the active rollout (rolled back or concluded, logged, the
challenger archived). Shared by stage transitions, rollbacks, verdicts and rollouts.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from mlops_assets.ml.rollout import RolloutEvent, RolloutState
from mlops_assets.ml.rollout import conclude as rollout_conclude
from mlops_assets.ml.rollout import roll_back as rollout_roll_back
from mlops_assets.storage.registry.records import dumps, label, utcnow
from mlops_assets.storage.registry.schema import rollout_log, rollouts, stage_transitions
from mlops_assets.storage.registry.statements import (
    active_rollout_row,
    alias_version,
    log_champion,
    log_transition,
    marked_bad,
    move_alias,
    production_of,
    select_version,
    set_stage,
)
from mlops_assets.storage.registry.types import (
    CHALLENGER,
    InvalidTransition,
    ModelVersion,
    RegistryConflict,
    Stage,
)


def promote(
    conn: Connection,
    target: ModelVersion,
    *,
    actor: str,
    reason: str,
    evidence: Mapping[str, Any],
    at: datetime,
    incumbent_reason: str,
    incumbent_evidence: Mapping[str, Any],
) -> None:
    """Archive the current Production version, promote ``target``, log the ``champion`` move: one transaction.

    ``champion`` is the Production version by definition; the alias log records the change for the audit.
    """
    name, version = target.model_name, target.version
    if not target.stage.can_move_to(Stage.PRODUCTION):
        raise InvalidTransition(
            f"{label(name, version)}: transition {target.stage} -> {Stage.PRODUCTION} is not allowed",
            model_name=name,
            version=version,
        )
    incumbent = production_of(conn, name)
    if incumbent is not None:
        # Archive first so the unique index never sees two Production rows, and so the log (read
        # by production_at) has the promotion as the last row of the transaction.
        set_stage(conn, name, incumbent, Stage.PRODUCTION, Stage.ARCHIVED)
        log_transition(
            conn,
            model_name=name,
            version=incumbent,
            from_stage=Stage.PRODUCTION,
            to_stage=Stage.ARCHIVED,
            actor=actor,
            reason=incumbent_reason,
            evidence=incumbent_evidence,
            at=at,
        )
    set_stage(conn, name, version, target.stage, Stage.PRODUCTION)
    log_transition(
        conn,
        model_name=name,
        version=version,
        from_stage=target.stage,
        to_stage=Stage.PRODUCTION,
        actor=actor,
        reason=reason,
        evidence=evidence,
        at=at,
    )
    alias_evidence = {"stage_change": f"v{version} {target.stage} -> {Stage.PRODUCTION}", "replaced": incumbent}
    log_champion(conn, name, incumbent, version, actor=actor, reason=reason, evidence=alias_evidence, at=at)
    if alias_version(conn, name, CHALLENGER) == version:
        # The challenger won: it is the champion now, and a version cannot challenge itself.
        move_alias(conn, name, CHALLENGER, None, actor=actor, reason=reason, evidence=alias_evidence, at=at)
    conclude_rollout(conn, name, version, actor=actor, reason=reason, at=at)


def withdraw_from_rollout(
    conn: Connection,
    model_name: str,
    version: int,
    *,
    actor: str,
    reason: str,
    champion_too: bool = True,
) -> None:
    """``version`` was archived or marked bad: end the active rollout it takes part in (same transaction).

    The rollout is rolled back (logged), ``challenger`` cleared and a Staging challenger archived.
    ``champion_too=False`` ends it only when ``version`` is the challenger (a bad mark leaves the
    champion serving, so its rollout may go on; an archived champion leaves nothing to compare with).
    """
    active = active_rollout_row(conn, model_name)
    if active is None:
        return
    running = RolloutState.from_json(active.state)
    if version == running.challenger_version:
        role = "challenger"
    elif champion_too and version == running.champion_version:
        role = "champion"
    else:
        return
    why = f"{role} v{version} withdrawn: {reason}"
    now = utcnow()
    ended = rollout_roll_back(running, max(now, running.history[-1].at) if running.history else now, reason=why)
    save_rollout(conn, int(active.id), running, ended, actor=actor)
    end_rollout(conn, ended, actor=actor, reason=why)


def conclude_rollout(
    conn: Connection, model_name: str, promoted: int, *, actor: str, reason: str, at: datetime
) -> None:
    """Production changed outside the rollout (a promotion or rollback by hand): end the rollout in progress.

    Promoting its challenger completes it; any other change of production voids its comparison, so it
    is rolled back (its challenger archived). Either way, the move is in the rollout log.
    """
    active = active_rollout_row(conn, model_name)
    if active is None:
        return
    running = RolloutState.from_json(active.state)
    when = max(at, running.history[-1].at) if running.history else at
    if running.challenger_version == promoted:
        ended = rollout_conclude(running, when, reason=f"promoted outside the rollout: {reason}")
        save_rollout(conn, int(active.id), running, ended, actor=actor)
    else:
        why = f"production changed to v{promoted} outside the rollout: {reason}"
        ended = rollout_roll_back(running, when, reason=why)
        save_rollout(conn, int(active.id), running, ended, actor=actor)
        end_rollout(conn, ended, actor=actor, reason=why)


def end_rollout(conn: Connection, state: RolloutState, *, actor: str, reason: str) -> None:
    """A rolled-back rollout: the challenger leaves Staging for Archived and loses its alias."""
    name, version = state.model_name, state.challenger_version
    evidence = {"rollout": {"phase": state.phase.value, "moves": len(state.history)}}
    if alias_version(conn, name, CHALLENGER) == version:
        move_alias(conn, name, CHALLENGER, None, actor=actor, reason=reason, evidence=evidence, at=utcnow())
    current = select_version(conn, name, version)
    if current.stage == Stage.STAGING:
        set_stage(conn, name, version, Stage.STAGING, Stage.ARCHIVED)
        log_transition(
            conn,
            model_name=name,
            version=version,
            from_stage=Stage.STAGING,
            to_stage=Stage.ARCHIVED,
            actor=actor,
            reason=reason,
            evidence=evidence,
            at=utcnow(),
        )


def save_rollout(conn: Connection, rollout_id: int, before: RolloutState, after: RolloutState, *, actor: str) -> None:
    """Compare-and-set the rollout from ``before`` to ``after`` (which extends its history); log the new moves."""
    new_moves = after.history[len(before.history) :]
    if after.history[: len(before.history)] != before.history:
        raise ValueError("the new rollout state must extend the old one's history")
    result = conn.execute(
        update(rollouts)
        .where(rollouts.c.id == rollout_id, rollouts.c.moves == len(before.history))
        .values(phase=after.phase.value, moves=len(after.history), state=after.to_json(), updated_at=utcnow())
    )
    if result.rowcount != 1:
        raise RegistryConflict(
            f"{label(before.model_name, before.challenger_version)}: the rollout moved since it was read",
            model_name=before.model_name,
            version=before.challenger_version,
        )
    log_rollout_moves(conn, rollout_id, after, new_moves, actor)


def log_rollout_moves(
    conn: Connection, rollout_id: int, state: RolloutState, moves: tuple[RolloutEvent, ...], actor: str
) -> None:
    """Append ``moves`` of a rollout to ``rollout_log``."""
    for move in moves:
        conn.execute(
            insert(rollout_log).values(
                rollout_id=rollout_id,
                model_name=state.model_name,
                challenger_version=state.challenger_version,
                from_phase=move.from_phase.value,
                from_share=move.from_share,
                to_phase=move.to_phase.value,
                to_share=move.to_share,
                actor=actor,
                reason=move.reason,
                evidence=dumps(dict(move.evidence)),
                at=move.at,
            )
        )


def find_rollback_target(conn: Connection, model_name: str, current: int) -> int | None:
    """The newest version promoted before that is not ``current`` and not marked bad, or ``None``."""
    promotions = conn.execute(
        select(stage_transitions.c.version)
        .where(stage_transitions.c.model_name == model_name, stage_transitions.c.to_stage == Stage.PRODUCTION)
        .order_by(stage_transitions.c.id.desc())
    ).scalars()
    bad = marked_bad(conn, model_name)
    for version in promotions:
        if version != current and version not in bad:
            return int(version)
    return None
