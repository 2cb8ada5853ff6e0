"""Gate evidence: model gate outcomes recorded per (model, version, artifact digest), and the check every move runs."""

from collections.abc import Sequence

from sqlalchemy import Connection, insert, select

from mlops_assets.ml.gate_evidence import GateOutcome, judge_evidence, refusals
from mlops_assets.storage.registry.engine import RegistryCore
from mlops_assets.storage.registry.records import label, row_to_gate_outcome, utcnow
from mlops_assets.storage.registry.schema import gate_results
from mlops_assets.storage.registry.statements import latest_gate_outcomes, select_version
from mlops_assets.storage.registry.types import GateEvidenceMissing, ModelVersion


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
            return row_to_gate_outcome(row)

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
