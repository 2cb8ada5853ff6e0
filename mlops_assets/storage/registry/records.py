"""Encoding and decoding helpers shared by the registry modules: JSON columns, labels, rows to records."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Row

from mlops_assets.ml import json_codec
from mlops_assets.ml.gate_evidence import GateOutcome
from mlops_assets.storage.registry.types import (
    ALIAS_PATTERN,
    MAX_ALIAS_LENGTH,
    AliasChange,
    Approval,
    InvalidAlias,
    ModelVersion,
    Stage,
    Transition,
)


def label(model_name: str, version: int | None) -> str:
    return f"model {model_name!r}" if version is None else f"model {model_name!r} v{version}"


def vlabel(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def dumps(value: Any) -> str:
    # Standard JSON (mlops_assets.ml.json_codec): an undefined metric (roc_auc on a one-class slice) or an
    # infinite value is stored as null, so the columns stay valid for PostgreSQL jsonb and any JSON reader.
    return json_codec.dumps(value, sort_keys=True)


def loads(text: str) -> Any:
    # Rows written before the codec may hold NaN/Infinity tokens; they read as None, like new rows.
    return json_codec.loads(text)


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
        stage=Stage(m["stage"]),
        artifact_uri=m["artifact_uri"],
        artifact_sha256=m["artifact_sha256"],
        artifact_size=int(m["artifact_size"]),
        artifact_hmac=m["artifact_hmac"],
        data_versions=tuple(loads(m["data_versions"])),
        run_id=m["run_id"],
        package_version=m["code_version"],
        git_sha=m["git_sha"],
        spec_fingerprint=m["spec_fingerprint"],
        params=loads(m["params"]),
        metrics=loads(m["metrics"]),
        created_at=m["created_at"],
        description=m["description"],
    )


def row_to_transition(row: Row[Any]) -> Transition:
    m = row._mapping
    return Transition(
        id=int(m["id"]),
        model_name=m["model_name"],
        version=int(m["version"]),
        from_stage=None if m["from_stage"] is None else Stage(m["from_stage"]),
        to_stage=Stage(m["to_stage"]),
        actor=m["actor"],
        reason=m["reason"],
        evidence=loads(m["evidence"]),
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
        evidence=loads(m["evidence"]),
        at=m["at"],
    )


def row_to_approval(row: Row[Any]) -> Approval:
    m = row._mapping
    return Approval(
        id=int(m["id"]),
        model_name=m["model_name"],
        version=int(m["version"]),
        stage=Stage(m["stage"]),
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
