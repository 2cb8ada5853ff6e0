"""The :class:`ModelRegistry` facade: one class composed of one mixin per concern, plus the audit trail."""

from typing import Any

from mlops_assets.storage.registry.aliases import AliasesMixin
from mlops_assets.storage.registry.approvals import ApprovalsMixin
from mlops_assets.storage.registry.engine import RegistryCore
from mlops_assets.storage.registry.gates import GateEvidenceMixin
from mlops_assets.storage.registry.records import vlabel
from mlops_assets.storage.registry.rollouts import RolloutsMixin
from mlops_assets.storage.registry.stages import StagesMixin
from mlops_assets.storage.registry.versions import VersionsMixin


class ModelRegistry(
    VersionsMixin, StagesMixin, AliasesMixin, ApprovalsMixin, RolloutsMixin, GateEvidenceMixin, RegistryCore
):
    """Model registry backed by SQLite (file URL) or PostgreSQL.

    Tables, indexes and triggers are created on first use, idempotently and safely when several
    processes start at once. Instances are thread-safe; call :meth:`close` (or use ``with``) to
    release pooled connections.

    Args:
        url: SQLAlchemy URL, ``sqlite:///path/registry.db`` or ``postgresql+psycopg2://...``.
        lock_timeout_s: How long a writer waits for the model's lock (SQLite: the database write lock,
            via busy_timeout; PostgreSQL: ``lock_timeout``) before giving up with :class:`RegistryConflict`.
    """

    def audit_log(self, model_name: str) -> list[dict[str, Any]]:
        """One time-ordered trail of the model: failed gates (rejections), stage transitions, alias moves, rollout
        moves and approvals. Each entry has ``at``, ``kind``, ``version``, ``change``, ``actor``, ``reason`` and
        ``evidence``."""
        entries: list[dict[str, Any]] = []
        for t in self.history(model_name):
            entries.append(
                {
                    "at": t.at,
                    "kind": "stage",
                    "version": t.version,
                    "change": f"{t.from_stage} -> {t.to_stage}" if t.from_stage else f"registered ({t.to_stage})",
                    "actor": t.actor,
                    "reason": t.reason,
                    "evidence": t.evidence,
                }
            )
        for a in self.alias_history(model_name):
            entries.append(
                {
                    "at": a.at,
                    "kind": "alias",
                    "version": a.to_version if a.to_version is not None else a.from_version,
                    "change": f"{a.alias}: {vlabel(a.from_version)} -> {vlabel(a.to_version)}",
                    "actor": a.actor,
                    "reason": a.reason,
                    "evidence": a.evidence,
                }
            )
        for m in self.rollout_log(model_name):
            entries.append(
                {
                    "at": m["at"],
                    "kind": "rollout",
                    "version": m["challenger_version"],
                    "change": f"{m['from_phase']} {m['from_share']:g} -> {m['to_phase']} {m['to_share']:g}",
                    "actor": m["actor"],
                    "reason": m["reason"],
                    "evidence": m["evidence"],
                }
            )
        for ap in self.approvals(model_name):
            entries.append(
                {
                    "at": ap.at,
                    "kind": "approval",
                    "version": ap.version,
                    "change": f"approved for {ap.stage}",
                    "actor": ap.approver,
                    "reason": ap.comment,
                    "evidence": {},
                }
            )
        # A failed gate is the version's rejection (no stage moves for it: its decision never ran), so it is part
        # of the trail; passed gates are the evidence cited by the promotion's own stage row.
        for g in self.gate_history(model_name):
            if not g.passed:
                entries.append(
                    {
                        "at": g.at,
                        "kind": "gate",
                        "version": g.version,
                        "change": f"rejected by {g.gate.rsplit(':', 1)[-1]}",
                        "actor": f"run {g.run_id}",
                        "reason": g.summary,
                        "evidence": g.to_dict(),
                    }
                )
        order = {"gate": 0, "rollout": 1, "alias": 2, "stage": 3, "approval": 4}
        return sorted(entries, key=lambda e: (e["at"], order[e["kind"]]))
