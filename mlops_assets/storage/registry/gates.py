"""Gate evidence: model gate outcomes recorded per (model, version, artifact digest), and the check every move runs.

A failed outcome also writes the version's rejection record (``version_rejections``), once per failed evaluation:
the first failed gate of an evaluation — one artifact judged on one data version in one run — inserts it in the
same transaction as the outcome; later failed gates of that evaluation (the same step, or gates evaluated in
other steps of the run) find it and add nothing. Its list of failed gates is read from ``gate_results`` (the
evaluation's failed rows), so the record and the evidence cannot disagree.
"""

from collections.abc import Sequence

from sqlalchemy import ColumnElement, Connection, Table, and_, insert, select

from mlops_assets.ml.gate_evidence import GateOutcome, judge_evidence, refusals
from mlops_assets.storage.registry.engine import RegistryCore
from mlops_assets.storage.registry.records import label, row_to_gate_outcome, utcnow
from mlops_assets.storage.registry.schema import gate_results, version_rejections
from mlops_assets.storage.registry.statements import latest_gate_outcomes, select_version
from mlops_assets.storage.registry.types import GateEvidenceMissing, ModelVersion, Rejection


def check_evidence(conn: Connection, target: ModelVersion, required_gates: Sequence[str] | None, to: str) -> None:
    """Refuse unless every required gate's latest outcome is of this version and artifact, and passed.

    ``required_gates=None`` checks nothing (a registry used without gates); an empty list refuses.
    """
    if required_gates is None:
        return
    name, version = target.model_name, target.version
    if not required_gates:
        raise GateEvidenceMissing(
            f"{label(name, version)}: no required gates given for the move to {to}: refusing to move unverified",
            model_name=name,
            version=version,
        )
    statuses = judge_evidence(
        list(required_gates),
        latest_gate_outcomes(conn, name, version),
        version=version,
        artifact_sha256=target.artifact_sha256,
    )
    problems = refusals(statuses)
    if problems:
        raise GateEvidenceMissing(
            f"{label(name, version)} cannot move to {to}: its gate evidence (for artifact sha256 "
            f"{target.artifact_sha256}) is not all passed: {'; '.join(problems)}",
            model_name=name,
            version=version,
        )


def _evaluation(table: Table, outcome: GateOutcome) -> ColumnElement[bool]:
    """The rows of ``table`` of the same evaluation as ``outcome``: model, version, artifact, data version, run."""
    return and_(
        table.c.model_name == outcome.model_name,
        table.c.version == outcome.version,
        table.c.artifact_sha256 == outcome.artifact_sha256,
        table.c.data_version == outcome.data_version,
        table.c.run_id == outcome.run_id,
    )


def _record_rejection(conn: Connection, failed: GateOutcome) -> None:
    """Insert the rejection of ``failed``'s evaluation unless it exists (the caller holds the model's write lock)."""
    if conn.execute(select(version_rejections.c.id).where(_evaluation(version_rejections, failed))).first():
        return
    conn.execute(
        insert(version_rejections).values(
            model_name=failed.model_name,
            version=failed.version,
            artifact_sha256=failed.artifact_sha256,
            data_version=failed.data_version,
            run_id=failed.run_id,
            gate=failed.gate,
            summary=failed.summary,
            at=failed.at,
        )
    )


class GateEvidenceMixin(RegistryCore):
    """Recording and reading gate outcomes (table ``gate_results``, append-only)."""

    def record_gate_result(
        self,
        model_name: str,
        version: int,
        *,
        artifact_sha256: str,
        gate: str,
        passed: bool,
        data_version: str,
        run_id: str,
        summary: str = "",
    ) -> GateOutcome:
        """Append one gate outcome for one model version (append-only; the latest row per gate counts).

        Args:
            model_name: Registered model name.
            version: The version the gate judged.
            artifact_sha256: Digest of the artifact the gate judged; evidence counts for a move only
                when it equals the version's registered digest.
            gate: ``"<asset>:<check>"``.
            passed: The outcome.
            data_version: The data version (partition) it was evaluated on.
            run_id: The run that evaluated it.
            summary: The gate's message.

        A failed outcome also records the version's rejection for this evaluation (``artifact_sha256``,
        ``data_version``, ``run_id``) in the same transaction, unless one is already recorded
        (:meth:`rejections`). The stage does not move.

        Raises:
            VersionNotFound: No such version.
        """
        if not gate or not run_id:
            raise ValueError(f"recording a gate result of {label(model_name, version)}: gate and run_id are required")
        with self._write(model_name, version, f"recording gate {gate} of") as conn:
            select_version(conn, model_name, version)
            row = conn.execute(
                insert(gate_results)
                .values(
                    model_name=model_name,
                    version=version,
                    artifact_sha256=artifact_sha256,
                    gate=gate,
                    passed=bool(passed),
                    data_version=data_version,
                    run_id=run_id,
                    summary=summary,
                    at=utcnow(),
                )
                .returning(*gate_results.c)
            ).one()
            outcome = row_to_gate_outcome(row)
            if not outcome.passed:
                _record_rejection(conn, outcome)
            return outcome

    def gate_outcomes(self, model_name: str, version: int) -> dict[str, GateOutcome]:
        """The latest recorded outcome of each gate for one version, by gate name."""
        with self._read() as conn:
            return latest_gate_outcomes(conn, model_name, version)

    def gate_history(self, model_name: str, version: int | None = None) -> list[GateOutcome]:
        """Every recorded gate outcome of a model (or one version), oldest first."""
        query = select(gate_results).where(gate_results.c.model_name == model_name)
        if version is not None:
            query = query.where(gate_results.c.version == version)
        with self._read() as conn:
            rows = conn.execute(query.order_by(gate_results.c.id)).all()
        return [row_to_gate_outcome(r) for r in rows]

    def rejections(self, model_name: str, version: int | None = None) -> list[Rejection]:
        """Every rejection record of a model (or one version), oldest first (append-only).

        Each is one failed evaluation with its failed gates and their messages (see :class:`Rejection`).
        """
        query = select(version_rejections).where(version_rejections.c.model_name == model_name)
        failed = select(gate_results).where(gate_results.c.model_name == model_name, gate_results.c.passed.is_(False))
        if version is not None:
            query = query.where(version_rejections.c.version == version)
            failed = failed.where(gate_results.c.version == version)
        with self._read() as conn:
            rows = conn.execute(query.order_by(version_rejections.c.id)).all()
            outcomes = [row_to_gate_outcome(r) for r in conn.execute(failed.order_by(gate_results.c.id)).all()]
        gates: dict[tuple[int, str, str, str], dict[str, str]] = {}
        for o in outcomes:
            gates.setdefault((o.version, o.artifact_sha256, o.data_version, o.run_id), {})[o.gate] = o.summary
        out: list[Rejection] = []
        for r in rows:
            found = gates.get((int(r.version), r.artifact_sha256, r.data_version, r.run_id)) or {r.gate: r.summary}
            out.append(
                Rejection(
                    id=int(r.id),
                    model_name=r.model_name,
                    version=int(r.version),
                    artifact_sha256=r.artifact_sha256,
                    data_version=r.data_version,
                    run_id=r.run_id,
                    failed_gates=tuple(found.items()),
                    at=r.at,
                )
            )
        return out
