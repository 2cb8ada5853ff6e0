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
        """One time-ordered trail of the model: rejections (kind ``gate``: one per failed evaluation, naming its
        failed gates), stage transitions, alias moves, rollout moves and approvals. Each entry has ``at``, ``kind``,
        ``version``, ``change``, ``actor``, ``reason`` and ``evidence``; oldest first."""
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
        # A rejection (one failed evaluation: its failed gates and messages) is part of the trail: no stage moves
        # for it, its decision never ran. Kind "gate" for readers of the trail written before rejection records;
        # failed gates recorded before them (no rejection row for their evaluation) still appear one by one.
        covered: set[tuple[int, str, str, str]] = set()
        for r in self.rejections(model_name):
            covered.add((r.version, r.artifact_sha256, r.data_version, r.run_id))
            entries.append(
                {
                    "at": r.at,
                    "kind": "gate",
                    "version": r.version,
                    "change": "rejected by " + ", ".join(g.rsplit(":", 1)[-1] for g, _m in r.failed_gates),
                    "actor": f"run {r.run_id}",
                    "reason": "; ".join(message for _g, message in r.failed_gates),
                    "evidence": r.to_dict(),
                }
            )
        for g in self.gate_history(model_name):
            if not g.passed and (g.version, g.artifact_sha256, g.data_version, g.run_id) not in covered:
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
