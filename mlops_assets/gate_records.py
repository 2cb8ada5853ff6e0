"""Reading gate results back (from the instance and the registry) and verifying artifacts before a move.

Blocking checks only block inside one run: a failed gate leaves its asset stored and a later run
would proceed. So every promotion path (``deployment_decision``, ``promote_job``, ``rollback_job`` and
the rollout's final switch) re-verifies the evidence of the very model version it moves, through
:func:`promotion_evidence`:

* model gates (checks on ``candidate_model`` and ``model_evaluation``) from the registry's outcomes of
  that version and artifact digest (each check records its outcome there), never by data version;
* data gates (checks on ``raw_data`` and ``features``) from the instance, for each of the model's own
  data versions, failing closed when one is failed, missing, or stale (it evaluated an older
  materialization than the one now stored);

and reads the stored artifact back and verifies it (:func:`verify_artifact`) before the registry moves it.
"""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from mlops_assets.gates import gate_name
from mlops_assets.ml.gate_evidence import judge_evidence
from mlops_assets.ml.labels import says_labelled
from mlops_assets.ml.promotion import GateStatus, comparison_refusal, gate_refusals
from mlops_assets.storage.artifacts.skops_codec import load_model
from mlops_assets.storage.artifacts.store import ArtifactIntegrityError, ArtifactRef, ArtifactStore
from mlops_assets.storage.registry import ModelRegistry, ModelVersion

_PAGE = 200


@dataclass(frozen=True)
class RecordedGate:
    """The latest recorded result of one gate for one data version.

    ``status`` is ``passed``, ``failed``, ``missing`` (never evaluated for this version) or
    ``stale`` (evaluated, but not against the latest materialization of its asset).
    """

    check: str
    status: str
    run_id: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "status": self.status, "run_id": self.run_id}


def latest_materialization(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str
) -> dg.EventLogRecord | None:
    """The newest materialization record of one partition of an asset, or None."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    )
    return result.records[0] if result.records else None


def new_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, after: int | None, page: int = 1000
) -> tuple[list[dg.EventLogRecord], int | None]:
    """Materializations of ``key`` stored after storage id ``after`` (all when ``None``), oldest first, read in pages
    of ``page`` records, and the new high-water mark (the last record's storage id; ``after`` when none is new).

    The sensors keep the mark in their cursor, so each materialization is seen by one tick.
    """
    records: list[dg.EventLogRecord] = []
    while True:
        batch = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=page, ascending=True
        ).records
        records.extend(batch)
        if batch:
            after = batch[-1].storage_id
        if len(batch) < page:
            return records, after


def record_metadata(record: dg.EventLogRecord) -> dict[str, Any]:
    """The metadata values of a materialization record (empty for a record without a materialization)."""
    materialization = record.asset_materialization
    return {k: v.value for k, v in materialization.metadata.items()} if materialization else {}


def became_labelled(records: Sequence[dg.EventLogRecord], min_share: float) -> list[str]:
    """Data versions whose latest ``labels`` materialization among ``records`` (oldest first) says labelled
    (:func:`mlops_assets.ml.labels.says_labelled` with ``min_share``), in the order of those latest events."""
    latest: dict[str, bool] = {}
    for record in records:
        if record.partition_key and record.asset_materialization is not None:
            latest.pop(record.partition_key, None)  # re-inserted last: event order of the latest event
            latest[record.partition_key] = says_labelled(record_metadata(record), min_share)
    return [key for key, labelled in latest.items() if labelled]


def latest_materialization_metadata(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str
) -> dict[str, Any]:
    """Metadata values of the newest materialization of one partition (empty when there is none)."""
    record = latest_materialization(instance, asset_key, partition)
    return record_metadata(record) if record else {}


def latest_gate_results(
    instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey], partition: str
) -> list[RecordedGate]:
    """Latest evaluation of each check for ``partition``, in the order of ``check_keys``.

    Execution history is newest first, so recent data versions are found on the first page; older
    ones page back through the history of that check.
    """
    results: list[RecordedGate] = []
    for key in check_keys:
        name = key.to_user_string()
        found = RecordedGate(check=name, status="missing")
        cursor: int | None = None
        while True:
            records = instance.event_log_storage.get_asset_check_execution_history(key, limit=_PAGE, cursor=cursor)
            # Planned-but-skipped executions carry no evaluation: only executed ones count.
            match = next(
                (r for r in records if r.partition == partition and isinstance(r.evaluation, dg.AssetCheckEvaluation)),
                None,
            )
            if match is not None and isinstance(match.evaluation, dg.AssetCheckEvaluation):
                target = match.evaluation.target_materialization_data
                latest = latest_materialization(instance, key.asset_key, partition)
                if target is None or latest is None or target.storage_id != latest.storage_id:
                    status = "stale"
                else:
                    status = "passed" if match.evaluation.passed else "failed"
                found = RecordedGate(check=name, status=status, run_id=match.run_id)
                break
            if len(records) < _PAGE:
                break
            cursor = records[-1].id
        results.append(found)
    return results


def data_gate_verdicts(
    instance: dg.DagsterInstance, earlier: Sequence[str], data_gates: Sequence[dg.AssetCheckKey]
) -> Iterator[tuple[str, list[RecordedGate]]]:
    """Each of ``earlier`` (data versions in landing order), newest first, with its data gates that did not pass.

    Lazy: a caller that needs only the newest accepted versions stops reading gate histories once it has them.
    An empty list means every data gate passed (the version is accepted).
    """
    for key in reversed(earlier):
        yield key, [g for g in latest_gate_results(instance, data_gates, key) if not g.passed]


class ArtifactRefused(Exception):
    """A model version's stored artifact does not verify against its registered digest (or HMAC).

    Attributes:
        expected: The registered digest (or HMAC).
        actual: The digest (or HMAC) of the stored bytes, ``None`` when they could not be read.
    """

    def __init__(self, message: str, *, expected: str | None = None, actual: str | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


def verify_artifact(store: ArtifactStore, ref: ArtifactRef, *, what: str) -> None:
    """Read the stored artifact and verify it (size, sha256, HMAC with a keyed store, trusted skops types).

    Called before every registry move to Staging or Production, so a model whose bytes changed since
    registration never reaches serving.

    Args:
        store: The artifact store.
        ref: The version's registered artifact reference.
        what: Named in the message, e.g. ``"synthetic v2"``.

    Raises:
        ArtifactRefused: With both digests (expected = registered, actual = stored bytes).
    """
    try:
        load_model(store, ref)
    except ArtifactIntegrityError as exc:
        expected = exc.expected or ref.sha256
        actual = exc.actual
        raise ArtifactRefused(
            f"{what}: stored artifact {ref.uri} does not verify: expected sha256 {expected}, "
            f"actual {actual or 'unreadable'} ({exc})",
            expected=expected,
            actual=actual,
        ) from exc


@dataclass
class ArtifactCheck:
    """A lazy :func:`verify_artifact`, for ``artifact_refusal`` of :func:`mlops_assets.ml.promotion.decide_move`.

    Calling it reads and verifies the stored artifact and returns the refusal message (``None``: it verifies);
    ``refused`` keeps the :class:`ArtifactRefused` (with both digests) for the caller's error.

    Attributes:
        store: The artifact store (read only when the check runs).
        ref: The version's registered artifact reference.
        what: Named in the message, e.g. ``"synthetic v2"``.
    """

    store: ArtifactStore
    ref: ArtifactRef
    what: str
    refused: ArtifactRefused | None = None

    def __call__(self) -> str | None:
        try:
            verify_artifact(self.store, self.ref, what=self.what)
        except ArtifactRefused as exc:
            self.refused = exc
            return str(exc)
        return None


@dataclass(frozen=True)
class PromotionEvidence:
    """The evidence a promotion path re-reads for one model version.

    Attributes:
        version: The model version to be moved.
        statuses: Data gates (one per gate and data version of the model) then model gates (from the
            registry, of this version and artifact).
        evaluated_version: The model version the latest evaluation of the model's data version judged
            (``None``: no evaluation found).
    """

    version: ModelVersion
    statuses: list[GateStatus] = field(default_factory=list)
    evaluated_version: int | None = None
    compared_with_production: int | None = None
    comparison_known: bool = False

    def production_refusal(self, production_now: int | None) -> str | None:
        """Why a promotion to Production may not rely on this evaluation's comparison with production, or None.

        Refuses when the version's own evaluation is not the latest of its data version (what it compared
        against is then unknown), and when production moved since that evaluation
        (:func:`mlops_assets.ml.promotion.comparison_refusal`).
        """
        return comparison_refusal(
            self.version.version,
            self.evaluated_version,
            self.comparison_known,
            self.compared_with_production,
            production_now,
        )

    def refusals(self) -> list[str]:
        """Why the version may not move (empty: it may): the evaluation mismatch first, then each gate.

        :func:`mlops_assets.ml.promotion.gate_refusals`, the rule of a move by hand.
        """
        return gate_refusals(self.statuses, self.evaluated_version, self.version.version)

    def to_list(self) -> list[dict[str, Any]]:
        """The statuses as JSON rows (``check``, ``status``, ``detail``) for transition evidence."""
        return [{"check": s.check, "status": s.status, "detail": s.detail} for s in self.statuses]


def promotion_evidence(
    instance: dg.DagsterInstance,
    registry: ModelRegistry,
    version: ModelVersion,
    *,
    data_gates: Sequence[dg.AssetCheckKey],
    model_gates: Sequence[dg.AssetCheckKey],
    evaluated_version: int | None = None,
) -> PromotionEvidence:
    """Re-read the evidence of one model version: its data versions' data gates and its own model gates.

    Args:
        instance: The Dagster instance (data gate results, the latest evaluation's metadata).
        registry: The model registry (model gate outcomes per version and artifact).
        version: The version to be moved.
        data_gates: Checks judging data, looked up for each of ``version.data_versions``.
        model_gates: Checks judging the model, looked up in the registry for this version and digest.
        evaluated_version: The version the evaluation at hand judged; default: read from the latest
            ``model_evaluation`` materialization of the model's last data version.
    """
    statuses: list[GateStatus] = []
    for data_version in version.data_versions:
        for g in latest_gate_results(instance, data_gates, data_version):
            detail = f"data version {data_version}" + (f", run {g.run_id}" if g.run_id else "")
            statuses.append(GateStatus(g.check, g.status, detail))
    statuses.extend(
        judge_evidence(
            [gate_name(k.asset_key.path[-1], k.name) for k in model_gates],
            registry.gate_outcomes(version.model_name, version.version),
            version=version.version,
            artifact_sha256=version.artifact_sha256,
        )
    )
    compared: int | None = None
    known = False
    if evaluated_version is None and version.data_versions:
        evaluation = dg.AssetKey([version.model_name, "model_evaluation"])
        recorded = latest_materialization_metadata(instance, evaluation, version.data_versions[-1])
        value = recorded.get("model_version")
        evaluated_version = int(value) if isinstance(value, int | float) else None
        # What this version's own evaluation compared against (absent in records written before it was typed).
        if evaluated_version == version.version and "production_version" in recorded:
            production = recorded["production_version"]
            known = production is None or isinstance(production, int)
            compared = production if isinstance(production, int) else None
    return PromotionEvidence(
        version=version,
        statuses=statuses,
        evaluated_version=evaluated_version,
        compared_with_production=compared,
        comparison_known=known,
    )
