"""Encoding and decoding helpers shared by the registry modules: JSON columns, labels, rows to records."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Row

from mlops_assets.ml.gate_evidence import GateOutcome
from mlops_assets.storage.registry.types import (
    ALIAS_PATTERN,
    MAX_ALIAS_LENGTH,
    AliasChange,
    Approval,
    InvalidAlias,
    ModelVersion,
    Transition,
)


def label(model_name: str, version: int | None) -> str:
    return f"model {model_name!r}" if version is None else f"model {model_name!r} v{version}"


def vlabel(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def _json_default(obj: Any) -> Any:
    # numpy scalars (metrics computed with numpy) are not JSON types; duck-type them so this module
    # needs no numpy import.
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    item = getattr(obj, "item", None)
    if callable(item):
        return item()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(value: Any) -> str:
    # Non-finite floats are written as NaN/Infinity (Python's json extension) rather than refused: a
    # metric can legitimately be undefined (roc_auc on a one-class slice).
    return json.dumps(value, sort_keys=True, default=_json_default)


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_alias_name(model_name: str, alias: str) -> None:
    if len(alias) > MAX_ALIAS_LENGTH or not ALIAS_PATTERN.fullmatch(alias):
        raise InvalidAlias(
            f"{label(model_name, None)}: alias {alias!r} must match {ALIAS_PATTERN.pattern} "
            f"and be at most {MAX_ALIAS_LENGTH} characters",
            model_name=model_name,
        )


def require_actor_reason(what: str, actor: str, reason: str) -> None:
    if not actor or not reason:
        raise ValueError(f"{what}: actor and reason are required")


def row_to_version(row: Row[Any]) -> ModelVersion:
    m = row._mapping
    return ModelVersion(
        model_name=m["model_name"],
        version=int(m["version"]),
        stage=m["stage"],
        artifact_uri=m["artifact_uri"],
        artifact_sha256=m["artifact_sha256"],
        artifact_size=int(m["artifact_size"]),
        artifact_hmac=m["artifact_hmac"],
        data_versions=tuple(json.loads(m["data_versions"])),
        run_id=m["run_id"],
        code_version=m["code_version"],
        git_sha=m["git_sha"],
        spec_fingerprint=m["spec_fingerprint"],
        params=json.loads(m["params"]),
        metrics=json.loads(m["metrics"]),
        created_at=m["created_at"],
        description=m["description"],
    )


def row_to_transition(row: Row[Any]) -> Transition:
    m = row._mapping
    return Transition(
        id=int(m["id"]),
        model_name=m["model_name"],
        version=int(m["version"]),
        from_stage=m["from_stage"],
        to_stage=m["to_stage"],
        actor=m["actor"],
        reason=m["reason"],
        evidence=json.loads(m["evidence"]),
        at=m["at"],
    )


def row_to_alias_change(row: Row[Any]) -> AliasChange:
    m = row._mapping
    return AliasChange(
        id=int(m["id"]),
        model_name=m["model_name"],
        alias=m["alias"],
        from_version=None if m["from_version"] is None else int(m["from_version"]),
        to_version=None if m["to_version"] is None else int(m["to_version"]),
        actor=m["actor"],
        reason=m["reason"],
        evidence=json.loads(m["evidence"]),
        at=m["at"],
    )


def row_to_approval(row: Row[Any]) -> Approval:
    m = row._mapping
    return Approval(
        id=int(m["id"]),
        model_name=m["model_name"],
        version=int(m["version"]),
        stage=m["stage"],
        approver=m["approver"],
        comment=m["comment"],
        at=m["at"],
    )


def row_to_gate_outcome(row: Row[Any]) -> GateOutcome:
    m = row._mapping
    return GateOutcome(
        model_name=m["model_name"],
        version=int(m["version"]),
        artifact_sha256=m["artifact_sha256"],
        gate=m["gate"],
        passed=bool(m["passed"]),
        data_version=m["data_version"],
        run_id=m["run_id"],
        summary=m["summary"],
        at=m["at"],
    )
