"""Rollouts: the persisted shadow / canary state machine of a challenger against the champion."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select

from mlops_assets.ml import json_codec
from mlops_assets.ml.rollout import Phase, RolloutState
from mlops_assets.ml.rollout import roll_back as rollout_roll_back
from mlops_assets.storage.registry.engine import RegistryCore
from mlops_assets.storage.registry.gates import check_evidence
from mlops_assets.storage.registry.moves import end_rollout, log_rollout_moves, save_rollout
from mlops_assets.storage.registry.records import label, require_actor_reason, utcnow
from mlops_assets.storage.registry.schema import rollout_log, rollouts
from mlops_assets.storage.registry.stages import promote_the_challenger
from mlops_assets.storage.registry.statements import (
    active_rollout_row,
    marked_bad,
    move_alias,
    production_of,
    select_version,
)
from mlops_assets.storage.registry.types import CHALLENGER, InvalidTransition, RegistryConflict, Stage, VersionMarkedBad


class RolloutsMixin(RegistryCore):
    """Rollouts (table ``rollouts``) and their moves (``rollout_log``)."""

    def start_rollout(
        self,
        state: RolloutState,
        *,
        actor: str,
        reason: str,
        supersede: bool = False,
        required_gates: Sequence[str] | None = None,
    ) -> RolloutState:
        """Record a started rollout and point ``challenger`` at its version, in one transaction.

        Args:
            state: A rollout already started (``rollout.start``: shadow or first canary step) of a
                Staging version against the current Production version (``None``: none in production).
            actor: Who starts it.
            reason: Why (e.g. the deployment decision and its data version).
            supersede: Roll back an active rollout of the model first (its challenger is archived);
                without it, an active rollout is a :class:`RegistryConflict`.
            required_gates: Gates whose latest outcome must be of the challenger's version and
                artifact, and passed; ``None`` checks nothing.

        Raises:
            RegistryConflict: Another rollout is active (and ``supersede`` is false), or production
                moved away from ``state.champion_version``.
            InvalidTransition: The challenger is not in Staging.
            VersionMarkedBad: The challenger is marked bad.
            GateEvidenceMissing: The challenger's gate evidence is not all passed.
        """
        require_actor_reason(
            f"starting a rollout of {label(state.model_name, state.challenger_version)}", actor, reason
        )
        if state.phase in (Phase.IDLE, Phase.PROMOTED, Phase.ROLLED_BACK):
            raise ValueError(f"start_rollout() needs a started rollout (shadow or canary), got {state.phase.value}")
        name, version = state.model_name, state.challenger_version
        with self._write(name, version, "starting a rollout of") as conn:
            active = active_rollout_row(conn, name)
            if active is not None:
                running = RolloutState.from_json(active.state)
                if not supersede:
                    raise RegistryConflict(
                        f"{label(name, running.challenger_version)} is already being rolled out "
                        f"({running.phase.value}); finish or abort it first",
                        model_name=name,
                        version=version,
                    )
                why = f"superseded by a rollout of v{version}: {reason}"
                ended = rollout_roll_back(running, max(utcnow(), running.history[-1].at), reason=why)
                save_rollout(conn, int(active.id), running, ended, actor=actor)
                end_rollout(conn, ended, actor=actor, reason=why)
            production = production_of(conn, name)
            if production != state.champion_version:
                raise RegistryConflict(
                    f"{label(name, version)}: the rollout was planned against production "
                    f"v{state.champion_version} but production is v{production}",
                    model_name=name,
                    version=version,
                )
            target = select_version(conn, name, version)
            if target.stage != Stage.STAGING:
                raise InvalidTransition(
                    f"{label(name, version)} is in {target.stage}: only a Staging version can be rolled out",
                    model_name=name,
                    version=version,
                )
            bad = marked_bad(conn, name)
            if version in bad:
                raise VersionMarkedBad(
                    f"{label(name, version)} is marked bad ({bad[version]}): it cannot be rolled out",
                    model_name=name,
                    version=version,
                )
            check_evidence(conn, target, required_gates, "a rollout")
            move_alias(
                conn,
                name,
                CHALLENGER,
                version,
                actor=actor,
                reason=reason,
                evidence={"rollout": "started"},
                at=utcnow(),
            )
            now = utcnow()
            rollout_id = conn.execute(
                insert(rollouts)
                .values(
                    model_name=name,
                    champion_version=state.champion_version,
                    challenger_version=version,
                    phase=state.phase.value,
                    moves=len(state.history),
                    state=state.to_json(),
                    started_at=state.history[0].at if state.history else now,
                    updated_at=now,
                )
                .returning(rollouts.c.id)
            ).scalar_one()
            log_rollout_moves(conn, int(rollout_id), state, state.history, actor)
            return state

    def update_rollout(
        self,
        before: RolloutState,
        after: RolloutState,
        *,
        actor: str,
        required_gates: Sequence[str] | None = None,
    ) -> RolloutState:
        """Persist the next state of the active rollout, applying its registry effect in the same transaction.

        ``after`` must be ``before`` plus new moves (``rollout.advance`` / ``rollout.roll_back``). The
        update is a compare-and-set on the number of moves: a concurrent writer gets
        :class:`RegistryConflict`. Reaching ``promoted`` performs the blue/green switch
        (:meth:`promote_challenger` with ``expected_version``); reaching ``rolled_back`` archives the
        challenger and removes its alias — production never changed, so nothing else to undo.

        A challenger that is Archived or marked bad accepts no move but a roll-back
        (:class:`InvalidTransition`); ``required_gates`` are checked for the final switch
        (:class:`GateEvidenceMissing`, nothing saved).
        """
        name, version = before.model_name, before.challenger_version
        if after.history == before.history:
            return before
        with self._write(name, version, "updating the rollout of") as conn:
            active = active_rollout_row(conn, name)
            if active is None or int(active.challenger_version) != version:
                raise RegistryConflict(
                    f"{label(name, version)}: no active rollout of this version to update",
                    model_name=name,
                    version=version,
                )
            if after.phase is not Phase.ROLLED_BACK:
                challenger = select_version(conn, name, version)
                bad = marked_bad(conn, name)
                if challenger.stage == Stage.ARCHIVED or version in bad:
                    why = f"marked bad ({bad[version]})" if version in bad else "Archived"
                    raise InvalidTransition(
                        f"{label(name, version)} is {why}: its rollout can only be rolled back",
                        model_name=name,
                        version=version,
                    )
            save_rollout(conn, int(active.id), before, after, actor=actor)
            last = after.history[-1]
            if after.phase is Phase.PROMOTED:
                promote_the_challenger(
                    conn,
                    name,
                    actor=actor,
                    reason=f"rollout complete: {last.reason}",
                    evidence={"rollout_id": int(active.id), **dict(last.evidence)},
                    expected_version=version,
                    required_gates=required_gates,
                )
            elif after.phase is Phase.ROLLED_BACK:
                end_rollout(conn, after, actor=actor, reason=f"rollout rolled back: {last.reason}")
            return after

    def get_rollout(self, model_name: str) -> RolloutState | None:
        """The model's most recent rollout (active or finished), or ``None``."""
        with self._read() as conn:
            row = conn.execute(
                select(rollouts.c.state)
                .where(rollouts.c.model_name == model_name)
                .order_by(rollouts.c.id.desc())
                .limit(1)
            ).first()
        return None if row is None else RolloutState.from_json(row.state)

    def active_rollout(self, model_name: str) -> RolloutState | None:
        """The model's rollout in progress (shadow or canary), or ``None``."""
        with self._read() as conn:
            row = active_rollout_row(conn, model_name)
        return None if row is None else RolloutState.from_json(row.state)

    def rollout_log(self, model_name: str) -> list[dict[str, Any]]:
        """Every recorded rollout move of the model, oldest first (append-only)."""
        with self._read() as conn:
            rows = conn.execute(
                select(rollout_log).where(rollout_log.c.model_name == model_name).order_by(rollout_log.c.id)
            ).all()
        return [
            {
                "rollout_id": r.rollout_id,
                "challenger_version": r.challenger_version,
                "from_phase": r.from_phase,
                "from_share": r.from_share,
                "to_phase": r.to_phase,
                "to_share": r.to_share,
                "actor": r.actor,
                "reason": r.reason,
                "evidence": json_codec.loads(r.evidence),
                "at": r.at,
            }
            for r in rows
        ]
