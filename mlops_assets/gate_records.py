"""Reading gate results (and materialization records) back from the Dagster instance.

Blocking checks only block inside one run: a failed gate leaves its asset stored and a later run
would proceed. So every promotion re-reads the latest result of every required gate for its data
version from the instance and fails closed when one is failed, missing, or stale (it evaluated an
older materialization than the one now stored).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dagster as dg

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


def latest_materialization_metadata(instance: dg.DagsterInstance, asset: str, partition: str) -> dict[str, Any]:
    """Metadata values of the newest materialization of one partition (empty when there is none)."""
    record = latest_materialization(instance, dg.AssetKey(asset), partition)
    materialization = record.asset_materialization if record else None
    return {k: v.value for k, v in materialization.metadata.items()} if materialization else {}


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
