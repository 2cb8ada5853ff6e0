"""Transactional model registry on SQLAlchemy Core: SQLite locally, PostgreSQL in production.

A model version is an immutable record (artifact reference, lineage, params, metrics); only its
stage moves, along the edges in :data:`ALLOWED_TRANSITIONS`. Every move is appended to
``stage_transitions`` in the same transaction as the stage change, so the log is the registry's
history and answers "what was in production at time T".

The database itself enforces what matters most, so that no code path (including a human with a SQL
prompt) can break it:

* at most one Production version per model (partial unique index);
* ``stage_transitions`` is append-only, and ``model_versions`` rows are never deleted and change only
  in ``stage`` (triggers);
* stages are one of :data:`STAGES` (check constraints).

Concurrency semantics: writes for one model are serialised (SQLite: ``BEGIN IMMEDIATE`` takes the
database write lock up front; PostgreSQL: a transaction-scoped advisory lock on the model name). Each
write therefore sees the latest committed state. Two promotions of different versions that race are
both legal and take effect one after the other: the second archives the first ("replaced by vN"). A
request that became invalid while it waited (promoting a version someone else just archived or
promoted) fails with :class:`InvalidTransition`. :class:`RegistryConflict` is raised when the database
refuses the write (unique index, lock timeout, serialisation failure): the invariant "never two
Production versions" never depends on the locking being right.

Deployment extensions (aliases, approvals, rollback) live in their own tables, created on first use
next to the original two, so an existing registry database gains them without a migration:

* ``model_aliases`` maps ``(model, alias)`` to a version; every change is appended to ``alias_log``
  in the same transaction. ``champion`` is managed by the registry and always names the Production
  version (set by every promotion and rollback, removed when Production is retired without a
  replacement); ``set_alias`` refuses to point it anywhere else. ``challenger`` may not name the
  Production version and is cleared when its version is promoted. Other names are free pointers.
* ``approvals`` records who approved which version for which stage. ``model_policies`` holds each
  model's :class:`ApprovalPolicy` (latest row wins, older rows are the policy's history). Under
  ``require_approval_for_production`` a promotion without an approval of that version for
  Production is refused with :class:`ApprovalRequired`; under ``four_eyes`` the approver must not be
  the actor who registered the version. The policy lives in the database, not in the constructor,
  so every client of the registry (every process, every code version) enforces the same rule.
* ``version_verdicts`` marks versions bad (``mark_bad``, and automatically the version a
  :meth:`ModelRegistry.rollback` leaves) or clears the mark. A version marked bad is never a rollback
  target and cannot be promoted until cleared. Marking bad (or archiving) the challenger of the active
  rollout ends that rollout (rolled back, ``challenger`` cleared) in the same transaction.
* ``gate_results`` holds the outcome of every model gate per (model, version, artifact digest)
  (:meth:`ModelRegistry.record_gate_result`). Moves to Staging or Production, the rollout's final
  switch and a rollback take ``required_gates`` and refuse with :class:`GateEvidenceMissing`, inside
  their transaction, unless the latest outcome of each of those gates is of this very version and
  artifact and passed (:func:`mlops_assets.ml.gate_evidence.judge_evidence`). A version whose latest
  outcome of a gate failed stays refused until a new evaluation of it passes.

``alias_log``, ``approvals``, ``model_policies``, ``version_verdicts`` and ``gate_results`` are
append-only in the database (triggers), like ``stage_transitions``.
"""

import contextlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Row, make_url
from sqlalchemy.types import TypeDecorator

from mlops_assets.ml.artifacts import ArtifactRef
from mlops_assets.ml.gate_evidence import GateOutcome, judge_evidence, refusals
from mlops_assets.ml.rollout import Phase, RolloutEvent, RolloutState
from mlops_assets.ml.rollout import conclude as rollout_conclude
from mlops_assets.ml.rollout import roll_back as rollout_roll_back

STAGES: tuple[str, ...] = ("None", "Staging", "Production", "Archived")

# Edges of the stage machine. None -> Archived is how a candidate is rejected; Archived -> Production
# is a rollback; Archived -> Staging re-stages an old version for another evaluation.
ALLOWED_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("None", "Staging"),
        ("None", "Archived"),
        ("Staging", "Production"),
        ("Staging", "Archived"),
        ("Production", "Archived"),
        ("Archived", "Staging"),
        ("Archived", "Production"),
    }
)

DEFAULT_LOCK_TIMEOUT_S = 30.0

#: The alias the registry keeps on the Production version.
CHAMPION = "champion"
#: The alias of the version being tried against the champion (shadow, canary, A/B test).
CHALLENGER = "challenger"
ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9_-]*")
MAX_ALIAS_LENGTH = 64
#: Stages an approval can be given for (only Production approvals are enforced, by the policy).
APPROVABLE_STAGES: tuple[str, ...] = ("Staging", "Production")

# PostgreSQL advisory locks in the two-int4 key space, namespaced so they cannot collide with
# single-bigint advisory locks taken by other software sharing the database (e.g. Dagster storage).
_PG_LOCK_NAMESPACE = 0x6D6C6F70  # "mlop"
_PG_SCHEMA_LOCK_KEY = 0x72656769  # "regi"
_WRITE_OPTION = "mlops_registry_write"


class RegistryError(Exception):
    """Base class of registry errors.

    Attributes:
        model_name: The model concerned.
        version: The version concerned, if any.
    """

    # Keyword arguments default to None so the exception survives pickling between processes.
    def __init__(self, message: str, *, model_name: str | None = None, version: int | None = None) -> None:
        super().__init__(message)
        self.model_name = model_name
        self.version = version


class InvalidTransition(RegistryError):
    """The requested stage change is not an edge of the stage machine from the version's current stage."""


class RegistryConflict(RegistryError):
    """The database refused a write because of a concurrent change (unique index, lock timeout, serialisation)."""


class VersionNotFound(RegistryError, LookupError):
    """The model has no such version."""


class ApprovalRequired(RegistryError):
    """The model's policy requires an approval of this version for Production, and there is none."""


class FourEyesViolation(RegistryError):
    """Under the four-eyes policy, the actor who registered a version may not approve it."""


class VersionMarkedBad(InvalidTransition):
    """The version is marked bad (by :meth:`ModelRegistry.mark_bad` or a rollback) and cannot be promoted."""


class GateEvidenceMissing(InvalidTransition):
    """A move needs passing gate evidence of this very version and artifact, and some is failed or missing."""


class NothingToRollBack(RegistryError):
    """There is no Production version, or no earlier known-good version to roll back to."""


class InvalidAlias(RegistryError, ValueError):
    """An alias name is malformed, or the alias may not point where it was asked to."""


class AliasNotFound(RegistryError, LookupError):
    """The model has no such alias."""


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from.

    Attributes:
        data_versions: Data versions the model was trained on (in order).
        run_id: The orchestrator run that trained it.
        code_version: Code version of the training asset.
        git_sha: Commit of the code.
        spec_fingerprint: Fingerprint of the dataset spec.
    """

    data_versions: tuple[str, ...]
    run_id: str
    code_version: str
    git_sha: str
    spec_fingerprint: str

    def __post_init__(self) -> None:
        # Accept any sequence at runtime but store a tuple, so the record stays immutable and hashable.
        if isinstance(self.data_versions, str):
            raise TypeError("Lineage.data_versions must be a sequence of str, not a single str")
        object.__setattr__(self, "data_versions", tuple(self.data_versions))
        if not all(isinstance(v, str) for v in self.data_versions):
            raise TypeError(f"Lineage.data_versions must contain str only, got {self.data_versions!r}")


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version (a row of ``model_versions``).

    Attributes:
        model_name: Registered model name.
        version: Version number, 1, 2, 3, ... per model.
        stage: One of :data:`STAGES`.
        artifact_uri: Artifact locator.
        artifact_sha256: Artifact digest.
        artifact_size: Artifact size in bytes.
        artifact_hmac: Artifact HMAC, if the store that wrote it had a key.
        data_versions: Training data versions.
        run_id: Training run.
        code_version: Code version of the training asset.
        git_sha: Commit of the code.
        spec_fingerprint: Dataset spec fingerprint.
        params: Training parameters.
        metrics: Evaluation metrics at registration.
        created_at: Registration time (UTC).
        description: Free text.
    """

    model_name: str
    version: int
    stage: str
    artifact_uri: str
    artifact_sha256: str
    artifact_size: int
    artifact_hmac: str | None
    data_versions: tuple[str, ...]
    run_id: str
    code_version: str
    git_sha: str
    spec_fingerprint: str
    # Dicts are unhashable; leave them out of the hash so the record can still be a set member.
    params: dict[str, Any] = field(hash=False)
    metrics: dict[str, Any] = field(hash=False)
    created_at: datetime
    description: str

    @property
    def artifact(self) -> ArtifactRef:
        """The artifact reference, ready for ``load_model``."""
        return ArtifactRef(
            uri=self.artifact_uri, sha256=self.artifact_sha256, size=self.artifact_size, hmac=self.artifact_hmac
        )

    @property
    def lineage(self) -> Lineage:
        """The lineage recorded at registration."""
        return Lineage(
            data_versions=self.data_versions,
            run_id=self.run_id,
            code_version=self.code_version,
            git_sha=self.git_sha,
            spec_fingerprint=self.spec_fingerprint,
        )


@dataclass(frozen=True)
class Transition:
    """One row of the append-only stage log.

    Attributes:
        id: Log sequence number; increases in commit order for a given model.
        model_name: Registered model name.
        version: Version concerned.
        from_stage: Stage before (``None`` for the registration row).
        to_stage: Stage after.
        actor: Who made the change.
        reason: Why (``"registered"``, ``"replaced by v3"``, a gate summary, ...).
        evidence: JSON details supporting the decision.
        at: When (UTC).
    """

    id: int
    model_name: str
    version: int
    from_stage: str | None
    to_stage: str
    actor: str
    reason: str
    evidence: dict[str, Any] = field(hash=False)
    at: datetime


@dataclass(frozen=True)
class AliasChange:
    """One row of the append-only alias log.

    Attributes:
        id: Log sequence number; increases in commit order for a given model.
        model_name: Registered model name.
        alias: Alias name.
        from_version: Version the alias named before (``None``: the alias was created).
        to_version: Version it names after (``None``: the alias was deleted).
        actor: Who made the change.
        reason: Why.
        evidence: JSON details.
        at: When (UTC).
    """

    id: int
    model_name: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    evidence: dict[str, Any] = field(hash=False)
    at: datetime


@dataclass(frozen=True)
class Approval:
    """One recorded approval of a version for a stage.

    Attributes:
        id: Sequence number.
        model_name: Registered model name.
        version: Approved version.
        stage: Stage it is approved for (one of :data:`APPROVABLE_STAGES`).
        approver: Who approved.
        comment: What the approver wrote.
        at: When (UTC).
    """

    id: int
    model_name: str
    version: int
    stage: str
    approver: str
    comment: str
    at: datetime


@dataclass(frozen=True)
class ApprovalPolicy:
    """A model's promotion policy.

    Attributes:
        require_approval_for_production: Promotions to Production (``transition``,
            ``promote_challenger``) need a recorded approval of that version for Production.
            Rollbacks do not: their target already served in Production.
        four_eyes: The approver must differ from the actor who registered the version (enforced when
            approving, and approvals given before the policy said so do not count).
    """

    require_approval_for_production: bool = False
    four_eyes: bool = False


class _UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends.

    SQLite has no timestamp type: SQLAlchemy stores naive ISO text and silently drops tzinfo. We
    store UTC, re-attach UTC on read, and refuse naive input, so comparisons in SQL are correct on
    both backends.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_metadata = MetaData()
_stage_check = "({col} IN ('None', 'Staging', 'Production', 'Archived'))"

model_versions = Table(
    "model_versions",
    _metadata,
    Column("model_name", String(255), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("stage", String(16), nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("artifact_sha256", String(64), nullable=False),
    Column("artifact_size", BigInteger, nullable=False),
    Column("artifact_hmac", String(64), nullable=True),
    Column("data_versions", Text, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("code_version", Text, nullable=False),
    Column("git_sha", Text, nullable=False),
    Column("spec_fingerprint", Text, nullable=False),
    Column("params", Text, nullable=False),
    Column("metrics", Text, nullable=False),
    Column("created_at", _UTCDateTime(), nullable=False),
    Column("description", Text, nullable=False),
    CheckConstraint(_stage_check.format(col="stage"), name="ck_model_versions_stage"),
    CheckConstraint("version >= 1", name="ck_model_versions_version"),
    # Backstop for idempotent registration: one version per artifact per model.
    UniqueConstraint("model_name", "artifact_sha256", name="uq_model_versions_artifact"),
)

# At most one Production version per model, enforced by the database whatever the caller does.
Index(
    "uq_model_versions_one_production",
    model_versions.c.model_name,
    unique=True,
    sqlite_where=model_versions.c.stage == "Production",
    postgresql_where=model_versions.c.stage == "Production",
)

stage_transitions = Table(
    "stage_transitions",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("from_stage", String(16), nullable=True),
    Column("to_stage", String(16), nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("at", _UTCDateTime(), nullable=False),
    ForeignKeyConstraint(
        ["model_name", "version"],
        ["model_versions.model_name", "model_versions.version"],
        name="fk_stage_transitions_version",
    ),
    CheckConstraint(
        f"(from_stage IS NULL OR {_stage_check.format(col='from_stage')})", name="ck_stage_transitions_from"
    ),
    CheckConstraint(_stage_check.format(col="to_stage"), name="ck_stage_transitions_to"),
    Index("ix_stage_transitions_model_version", "model_name", "version"),
    # AUTOINCREMENT makes SQLite ids strictly increasing (never reused), matching a PG sequence.
    sqlite_autoincrement=True,
)

_IMMUTABLE_COLUMNS = ", ".join(c.name for c in model_versions.columns if c.name != "stage")

# Triggers are attached to stage_transitions' creation (it is created after model_versions, so both
# tables exist) and run in the same transaction as the CREATE TABLEs.
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS stage_transitions_no_update BEFORE UPDATE ON stage_transitions "
    "BEGIN SELECT RAISE(ABORT, 'stage_transitions is append-only: UPDATE refused'); END",
    "CREATE TRIGGER IF NOT EXISTS stage_transitions_no_delete BEFORE DELETE ON stage_transitions "
    "BEGIN SELECT RAISE(ABORT, 'stage_transitions is append-only: DELETE refused'); END",
    "CREATE TRIGGER IF NOT EXISTS model_versions_no_delete BEFORE DELETE ON model_versions "
    "BEGIN SELECT RAISE(ABORT, 'model_versions rows are immutable: DELETE refused'); END",
    f"CREATE TRIGGER IF NOT EXISTS model_versions_immutable BEFORE UPDATE OF {_IMMUTABLE_COLUMNS} "
    "ON model_versions "
    "BEGIN SELECT RAISE(ABORT, 'model_versions rows are immutable apart from stage: UPDATE refused'); END",
)
# ERRCODE restrict_violation (class 23) makes psycopg2 raise IntegrityError, as SQLite's RAISE(ABORT)
# does, so callers see the same exception type on both backends. No '%' in these strings: DDL()
# applies %-formatting.
_PG_TRIGGERS = (
    "CREATE OR REPLACE FUNCTION mlops_registry_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION USING ERRCODE = 'restrict_violation', "
    "MESSAGE = TG_TABLE_NAME || ' is append-only / immutable: ' || TG_OP || ' refused'; END $$",
    "CREATE TRIGGER stage_transitions_append_only BEFORE UPDATE OR DELETE ON stage_transitions "
    "FOR EACH ROW EXECUTE FUNCTION mlops_registry_refuse_change()",
    # Row triggers do not fire on TRUNCATE.
    "CREATE TRIGGER stage_transitions_no_truncate BEFORE TRUNCATE ON stage_transitions "
    "FOR EACH STATEMENT EXECUTE FUNCTION mlops_registry_refuse_change()",
    "CREATE TRIGGER model_versions_no_delete BEFORE DELETE ON model_versions "
    "FOR EACH ROW EXECUTE FUNCTION mlops_registry_refuse_change()",
    "CREATE TRIGGER model_versions_no_truncate BEFORE TRUNCATE ON model_versions "
    "FOR EACH STATEMENT EXECUTE FUNCTION mlops_registry_refuse_change()",
    f"CREATE TRIGGER model_versions_immutable BEFORE UPDATE OF {_IMMUTABLE_COLUMNS} ON model_versions "
    "FOR EACH ROW EXECUTE FUNCTION mlops_registry_refuse_change()",
)
for _statement in _SQLITE_TRIGGERS:
    event.listen(stage_transitions, "after_create", DDL(_statement).execute_if(dialect="sqlite"))
for _statement in _PG_TRIGGERS:
    event.listen(stage_transitions, "after_create", DDL(_statement).execute_if(dialect="postgresql"))


def _version_fk(version_column: str, name: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["model_name", version_column], ["model_versions.model_name", "model_versions.version"], name=name
    )


model_aliases = Table(
    "model_aliases",
    _metadata,
    Column("model_name", String(255), primary_key=True),
    Column("alias", String(MAX_ALIAS_LENGTH), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", _UTCDateTime(), nullable=False),
    _version_fk("version", "fk_model_aliases_version"),
    # The full pattern is checked in Python (SQLite has no regex operator); these catch the gross cases.
    CheckConstraint(f"length(alias) BETWEEN 1 AND {MAX_ALIAS_LENGTH} AND alias = lower(alias)", name="ck_alias"),
)

alias_log = Table(
    "alias_log",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(255), nullable=False),
    Column("alias", String(MAX_ALIAS_LENGTH), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("at", _UTCDateTime(), nullable=False),
    _version_fk("from_version", "fk_alias_log_from"),
    _version_fk("to_version", "fk_alias_log_to"),
    # Only real changes are logged: a create, a delete or a move to another version.
    CheckConstraint(
        "(from_version IS NOT NULL OR to_version IS NOT NULL) "
        "AND (from_version IS NULL OR to_version IS NULL OR from_version <> to_version)",
        name="ck_alias_log_change",
    ),
    Index("ix_alias_log_model", "model_name", "alias"),
    sqlite_autoincrement=True,
)

approvals = Table(
    "approvals",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("stage", String(16), nullable=False),
    Column("approver", Text, nullable=False),
    Column("comment", Text, nullable=False),
    Column("at", _UTCDateTime(), nullable=False),
    _version_fk("version", "fk_approvals_version"),
    CheckConstraint("stage IN ('Staging', 'Production')", name="ck_approvals_stage"),
    CheckConstraint("length(approver) > 0", name="ck_approvals_approver"),
    Index("ix_approvals_model_version", "model_name", "version"),
    sqlite_autoincrement=True,
)

model_policies = Table(
    "model_policies",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(255), nullable=False),
    Column("require_approval_for_production", Boolean, nullable=False),
    Column("four_eyes", Boolean, nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", _UTCDateTime(), nullable=False),
    Index("ix_model_policies_model", "model_name"),
    sqlite_autoincrement=True,
)

version_verdicts = Table(
    "version_verdicts",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", _UTCDateTime(), nullable=False),
    _version_fk("version", "fk_version_verdicts_version"),
    CheckConstraint("verdict IN ('bad', 'cleared')", name="ck_version_verdicts_verdict"),
    Index("ix_version_verdicts_model_version", "model_name", "version"),
    sqlite_autoincrement=True,
)


rollouts = Table(
    "rollouts",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(255), nullable=False),
    Column("champion_version", Integer, nullable=True),
    Column("challenger_version", Integer, nullable=False),
    Column("phase", String(16), nullable=False),
    # Number of moves in the state's history: the compare-and-set token of every update.
    Column("moves", Integer, nullable=False),
    Column("state", Text, nullable=False),
    Column("started_at", _UTCDateTime(), nullable=False),
    Column("updated_at", _UTCDateTime(), nullable=False),
    _version_fk("challenger_version", "fk_rollouts_challenger"),
    CheckConstraint("phase IN ('idle', 'shadow', 'canary', 'promoted', 'rolled_back')", name="ck_rollouts_phase"),
    Index("ix_rollouts_model", "model_name"),
    sqlite_autoincrement=True,
)

# At most one rollout in progress per model, enforced by the database.
Index(
    "uq_rollouts_one_active",
    rollouts.c.model_name,
    unique=True,
    sqlite_where=rollouts.c.phase.in_(("idle", "shadow", "canary")),
    postgresql_where=rollouts.c.phase.in_(("idle", "shadow", "canary")),
)

rollout_log = Table(
    "rollout_log",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", Integer, nullable=False),
    Column("model_name", String(255), nullable=False),
    Column("challenger_version", Integer, nullable=False),
    Column("from_phase", String(16), nullable=False),
    Column("from_share", Float, nullable=False),
    Column("to_phase", String(16), nullable=False),
    Column("to_share", Float, nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("at", _UTCDateTime(), nullable=False),
    ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], name="fk_rollout_log_rollout"),
    Index("ix_rollout_log_model", "model_name"),
    sqlite_autoincrement=True,
)


gate_results = Table(
    "gate_results",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("artifact_sha256", String(64), nullable=False),
    Column("gate", String(255), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("data_version", Text, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("at", _UTCDateTime(), nullable=False),
    _version_fk("version", "fk_gate_results_version"),
    CheckConstraint("length(gate) > 0", name="ck_gate_results_gate"),
    Index("ix_gate_results_model_version", "model_name", "version"),
    sqlite_autoincrement=True,
)


def _make_append_only(table: Table) -> None:
    """Attach triggers refusing UPDATE, DELETE (and TRUNCATE on PostgreSQL) to ``table`` at its creation.

    Attached to each new table's own creation (not to stage_transitions') so that a database created
    before the table existed gets the triggers when the table is added.
    """
    name = table.name
    for op in ("UPDATE", "DELETE"):
        event.listen(
            table,
            "after_create",
            DDL(
                f"CREATE TRIGGER IF NOT EXISTS {name}_no_{op.lower()} BEFORE {op} ON {name} "
                f"BEGIN SELECT RAISE(ABORT, '{name} is append-only: {op} refused'); END"
            ).execute_if(dialect="sqlite"),
        )
    for statement in (
        _PG_TRIGGERS[0],  # CREATE OR REPLACE of the shared refusing function
        f"CREATE TRIGGER {name}_append_only BEFORE UPDATE OR DELETE ON {name} "
        "FOR EACH ROW EXECUTE FUNCTION mlops_registry_refuse_change()",
        f"CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name} "
        "FOR EACH STATEMENT EXECUTE FUNCTION mlops_registry_refuse_change()",
    ):
        event.listen(table, "after_create", DDL(statement).execute_if(dialect="postgresql"))


for _table in (alias_log, approvals, model_policies, version_verdicts, rollout_log, gate_results):
    _make_append_only(_table)


def _label(model_name: str, version: int | None) -> str:
    return f"model {model_name!r}" if version is None else f"model {model_name!r} v{version}"


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


def _dumps(value: Any) -> str:
    # Non-finite floats are written as NaN/Infinity (Python's json extension) rather than refused: a
    # metric can legitimately be undefined (roc_auc on a one-class slice).
    return json.dumps(value, sort_keys=True, default=_json_default)


def _vlabel(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _is_contention(exc: sa_exc.DBAPIError) -> bool:
    """Whether a DBAPI error means "lost a race / timed out on a lock" rather than a bug or an outage."""
    pgcode = getattr(exc.orig, "pgcode", None)
    if pgcode is not None:
        # serialization_failure, deadlock_detected, lock_not_available
        return pgcode in {"40001", "40P01", "55P03"}
    message = str(exc.orig).lower()
    return "database is locked" in message or "database table is locked" in message or "busy" in message


def _row_to_version(row: Row[Any]) -> ModelVersion:
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


def _row_to_gate_outcome(row: Row[Any]) -> GateOutcome:
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


def _row_to_alias_change(row: Row[Any]) -> AliasChange:
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


def _row_to_approval(row: Row[Any]) -> Approval:
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


def _check_alias_name(model_name: str, alias: str) -> None:
    if len(alias) > MAX_ALIAS_LENGTH or not ALIAS_PATTERN.fullmatch(alias):
        raise InvalidAlias(
            f"{_label(model_name, None)}: alias {alias!r} must match {ALIAS_PATTERN.pattern} "
            f"and be at most {MAX_ALIAS_LENGTH} characters",
            model_name=model_name,
        )


def _require_actor_reason(what: str, actor: str, reason: str) -> None:
    if not actor or not reason:
        raise ValueError(f"{what}: actor and reason are required")


def _row_to_transition(row: Row[Any]) -> Transition:
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


def _enable_wal(cursor: sqlite3.Cursor, timeout_s: float) -> None:
    """Switch the database file to WAL (a persistent setting), retrying while another connection holds a lock.

    Changing the journal mode needs an exclusive lock, and SQLite reports SQLITE_BUSY for it at once
    instead of calling the busy handler, so processes opening a new database together would fail
    with "database is locked" despite busy_timeout. Once the file is in WAL mode this is a read.
    """
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _make_engine(url: str, lock_timeout_s: float) -> Engine:
    sa_url = make_url(url)
    backend = sa_url.get_backend_name()
    if backend == "sqlite":
        database = sa_url.database or ""
        if database in ("", ":memory:") or "memory" in str(sa_url.query.get("mode", "")):
            # Each pooled connection would get its own empty in-memory database.
            raise ValueError(f"ModelRegistry needs a file database, got {url!r}: use sqlite:///path/registry.db")
        engine = create_engine(sa_url, connect_args={"timeout": lock_timeout_s})

        @event.listens_for(engine, "connect")
        def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take transaction control away from the sqlite3 module (which would BEGIN DEFERRED lazily
            # before the first DML) so the "begin" hook below decides how each transaction starts.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                # busy_timeout first, so that every later statement waits for locks instead of failing.
                cursor.execute(f"PRAGMA busy_timeout = {int(lock_timeout_s * 1000)}")
                # WAL lets readers proceed while a writer holds the lock.
                _enable_wal(cursor, lock_timeout_s)
                cursor.execute("PRAGMA foreign_keys = ON")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_on_begin(conn: Connection) -> None:
            # Writers take the write lock up front (IMMEDIATE), waiting up to busy_timeout. A deferred
            # transaction that reads and then writes must upgrade its lock, and SQLite fails such an
            # upgrade at once with "database is locked" (the busy handler cannot help) if another
            # writer got in between. Readers stay DEFERRED so they never block writers under WAL.
            mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE_OPTION) else "DEFERRED"
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    if backend == "postgresql":
        return create_engine(sa_url, pool_pre_ping=True)
    raise ValueError(f"unsupported registry database {sa_url.render_as_string(hide_password=True)!r}")


class ModelRegistry:
    """Model registry backed by SQLite (file URL) or PostgreSQL.

    Tables, indexes and triggers are created on first use, idempotently and safely when several
    processes start at once. Instances are thread-safe; call :meth:`close` (or use ``with``) to
    release pooled connections.

    Args:
        url: SQLAlchemy URL, ``sqlite:///path/registry.db`` or ``postgresql+psycopg2://...``.
        lock_timeout_s: How long a writer waits for the model's lock (SQLite: the database write lock,
            via busy_timeout; PostgreSQL: ``lock_timeout``) before giving up with :class:`RegistryConflict`.
    """

    def __init__(self, url: str, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        if lock_timeout_s <= 0:
            raise ValueError(f"lock_timeout_s must be positive, got {lock_timeout_s}")
        self._engine = _make_engine(url, lock_timeout_s)
        self._lock_timeout_ms = max(1, int(lock_timeout_s * 1000))
        self._dialect = self._engine.dialect.name
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ModelRegistry({self._engine.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> "ModelRegistry":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The underlying engine (for inspection and tests; write through the registry's methods)."""
        return self._engine

    def close(self) -> None:
        """Close pooled connections. The registry reconnects if used again."""
        self._engine.dispose()

    # -- transactions -------------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            with self._engine.connect() as conn:
                conn.execution_options(**{_WRITE_OPTION: True})
                with conn.begin():
                    # Serialise schema creation across processes: without this, two processes both
                    # see "no table" and the second CREATE TABLE fails. On SQLite the IMMEDIATE
                    # transaction is the lock (SQLite DDL is transactional).
                    if self._dialect == "postgresql":
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {self._lock_timeout_ms}")
                        conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_NAMESPACE, _PG_SCHEMA_LOCK_KEY)))
                    _metadata.create_all(conn, checkfirst=True)
                    self._backfill_champions(conn)
            self._schema_ready = True

    def _backfill_champions(self, conn: Connection) -> None:
        """Give a Production version that has no ``champion`` alias one (databases created before aliases).

        Idempotent and cheap once done (one indexed query). On PostgreSQL the model's write lock is
        taken before re-checking, so a writer in another process cannot insert the alias in between.
        """
        champion = model_aliases.alias("champion")
        orphan_query = select(model_versions.c.model_name, model_versions.c.version).where(
            model_versions.c.stage == "Production",
            ~select(champion.c.version)
            .where(champion.c.model_name == model_versions.c.model_name, champion.c.alias == CHAMPION)
            .exists(),
        )
        for model_name, _version in conn.execute(orphan_query).all():
            if self._dialect == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_NAMESPACE, func.hashtext(model_name))))
            production = conn.execute(
                select(model_versions.c.version).where(
                    model_versions.c.model_name == model_name, model_versions.c.stage == "Production"
                )
            ).scalar_one_or_none()
            if production is not None and self._alias_version(conn, model_name, CHAMPION) is None:
                self._move_alias(
                    conn,
                    model_name,
                    CHAMPION,
                    int(production),
                    actor="registry",
                    reason="backfilled: the Production version predates aliases",
                    evidence={},
                    at=_utcnow(),
                )

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        self._ensure_schema()
        with self._engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def _write(self, model_name: str, version: int | None, action: str) -> Iterator[Connection]:
        """A write transaction holding the model's lock; database refusals become RegistryConflict."""
        self._ensure_schema()
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{_WRITE_OPTION: True})
                with conn.begin():
                    if self._dialect == "postgresql":
                        # Bound every lock wait in this transaction (advisory lock included): a stuck
                        # writer elsewhere turns into RegistryConflict instead of a hang.
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {self._lock_timeout_ms}")
                        # Serialise writers of this model (hash collisions only add serialisation).
                        conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_NAMESPACE, func.hashtext(model_name))))
                    yield conn
        except RegistryError:
            raise
        except sa_exc.IntegrityError as exc:
            raise RegistryConflict(
                f"{action} {_label(model_name, version)} refused by the database (concurrent change?): {exc.orig}",
                model_name=model_name,
                version=version,
            ) from exc
        except sa_exc.DBAPIError as exc:
            if _is_contention(exc):
                raise RegistryConflict(
                    f"{action} {_label(model_name, version)} lost a race with a concurrent change: {exc.orig}",
                    model_name=model_name,
                    version=version,
                ) from exc
            raise

    @staticmethod
    def _select_version(conn: Connection, model_name: str, version: int) -> ModelVersion:
        row = conn.execute(
            select(model_versions).where(model_versions.c.model_name == model_name, model_versions.c.version == version)
        ).first()
        if row is None:
            raise VersionNotFound(f"{_label(model_name, version)} not found", model_name=model_name, version=version)
        return _row_to_version(row)

    @staticmethod
    def _log(
        conn: Connection,
        *,
        model_name: str,
        version: int,
        from_stage: str | None,
        to_stage: str,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any],
        at: datetime,
    ) -> None:
        conn.execute(
            insert(stage_transitions).values(
                model_name=model_name,
                version=version,
                from_stage=from_stage,
                to_stage=to_stage,
                actor=actor,
                reason=reason,
                evidence=_dumps(dict(evidence)),
                at=at,
            )
        )

    @staticmethod
    def _set_stage(conn: Connection, model_name: str, version: int, from_stage: str, to_stage: str) -> None:
        # Conditional on the stage we validated against: if it changed under us, nothing is updated
        # and we refuse rather than apply a move validated against stale state.
        result = conn.execute(
            update(model_versions)
            .where(
                model_versions.c.model_name == model_name,
                model_versions.c.version == version,
                model_versions.c.stage == from_stage,
            )
            .values(stage=to_stage)
        )
        if result.rowcount != 1:
            raise RegistryConflict(
                f"{_label(model_name, version)} changed stage concurrently (expected {from_stage})",
                model_name=model_name,
                version=version,
            )

    @staticmethod
    def _alias_version(conn: Connection, model_name: str, alias: str) -> int | None:
        version = conn.execute(
            select(model_aliases.c.version).where(
                model_aliases.c.model_name == model_name, model_aliases.c.alias == alias
            )
        ).scalar_one_or_none()
        return None if version is None else int(version)

    @classmethod
    def _move_alias(
        cls,
        conn: Connection,
        model_name: str,
        alias: str,
        to_version: int | None,
        *,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any],
        at: datetime,
    ) -> bool:
        """Point ``alias`` at ``to_version`` (``None``: delete it) and log the change; False if nothing changed."""
        from_version = cls._alias_version(conn, model_name, alias)
        if from_version == to_version:
            # No-ops are not logged, so every log row is a real change (the table's check enforces it).
            return False
        where = (model_aliases.c.model_name == model_name, model_aliases.c.alias == alias)
        if to_version is None:
            conn.execute(delete(model_aliases).where(*where))
        elif from_version is None:
            conn.execute(
                insert(model_aliases).values(model_name=model_name, alias=alias, version=to_version, updated_at=at)
            )
        else:
            conn.execute(update(model_aliases).where(*where).values(version=to_version, updated_at=at))
        conn.execute(
            insert(alias_log).values(
                model_name=model_name,
                alias=alias,
                from_version=from_version,
                to_version=to_version,
                actor=actor,
                reason=reason,
                evidence=_dumps(dict(evidence)),
                at=at,
            )
        )
        return True

    @staticmethod
    def _policy(conn: Connection, model_name: str) -> ApprovalPolicy:
        row = conn.execute(
            select(model_policies.c.require_approval_for_production, model_policies.c.four_eyes)
            .where(model_policies.c.model_name == model_name)
            .order_by(model_policies.c.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return ApprovalPolicy()
        return ApprovalPolicy(bool(row.require_approval_for_production), bool(row.four_eyes))

    @staticmethod
    def _registrant(conn: Connection, model_name: str, version: int) -> str:
        """The actor who registered the version (from its registration log row)."""
        actor = conn.execute(
            select(stage_transitions.c.actor)
            .where(
                stage_transitions.c.model_name == model_name,
                stage_transitions.c.version == version,
                stage_transitions.c.from_stage.is_(None),
            )
            .order_by(stage_transitions.c.id)
            .limit(1)
        ).scalar_one_or_none()
        return "" if actor is None else str(actor)

    @staticmethod
    def _bad_versions(conn: Connection, model_name: str) -> dict[int, str]:
        """Versions whose latest verdict is ``bad``, with that verdict's reason."""
        rows = conn.execute(
            select(version_verdicts.c.version, version_verdicts.c.verdict, version_verdicts.c.reason)
            .where(version_verdicts.c.model_name == model_name)
            .order_by(version_verdicts.c.id)
        ).all()
        latest: dict[int, tuple[str, str]] = {int(r.version): (r.verdict, r.reason) for r in rows}
        return {v: reason for v, (verdict, reason) in latest.items() if verdict == "bad"}

    @staticmethod
    def _gate_outcomes(conn: Connection, model_name: str, version: int) -> dict[str, GateOutcome]:
        """The latest recorded outcome of each gate for one version (later rows replace earlier ones)."""
        rows = conn.execute(
            select(gate_results)
            .where(gate_results.c.model_name == model_name, gate_results.c.version == version)
            .order_by(gate_results.c.id)
        ).all()
        return {r.gate: _row_to_gate_outcome(r) for r in rows}

    def _check_evidence(
        self, conn: Connection, target: ModelVersion, required_gates: Sequence[str] | None, to: str
    ) -> None:
        """Refuse unless every required gate's latest outcome is of this version and artifact, and passed.

        ``required_gates=None`` checks nothing (a registry used without gates); an empty list refuses.
        """
        if required_gates is None:
            return
        name, version = target.model_name, target.version
        if not required_gates:
            raise GateEvidenceMissing(
                f"{_label(name, version)}: no required gates given for the move to {to}: refusing to move unverified",
                model_name=name,
                version=version,
            )
        statuses = judge_evidence(
            list(required_gates),
            self._gate_outcomes(conn, name, version),
            version=version,
            artifact_sha256=target.artifact_sha256,
        )
        problems = refusals(statuses)
        if problems:
            raise GateEvidenceMissing(
                f"{_label(name, version)} cannot move to {to}: its gate evidence (for artifact sha256 "
                f"{target.artifact_sha256}) is not all passed: {'; '.join(problems)}",
                model_name=name,
                version=version,
            )

    def _withdraw_from_rollout(
        self,
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
        active = self._active_rollout_row(conn, model_name)
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
        now = _utcnow()
        ended = rollout_roll_back(running, max(now, running.history[-1].at) if running.history else now, reason=why)
        self._save_rollout(conn, int(active.id), running, ended, actor=actor)
        self._end_rollout(conn, ended, actor=actor, reason=why)

    def _check_promotable(self, conn: Connection, target: ModelVersion) -> None:
        """Refuse promoting a version marked bad, or one the model's policy has not seen approved."""
        name, version = target.model_name, target.version
        bad = self._bad_versions(conn, name)
        if version in bad:
            raise VersionMarkedBad(
                f"{_label(name, version)} is marked bad ({bad[version]}): clear_bad() it before promoting",
                model_name=name,
                version=version,
            )
        policy = self._policy(conn, name)
        if not policy.require_approval_for_production:
            return
        query = select(approvals.c.approver).where(
            approvals.c.model_name == name, approvals.c.version == version, approvals.c.stage == "Production"
        )
        registrant = self._registrant(conn, name, version)
        if policy.four_eyes:
            query = query.where(approvals.c.approver != registrant)
        if conn.execute(query.limit(1)).first() is None:
            who = f" by someone other than its registrant {registrant!r}" if policy.four_eyes else ""
            raise ApprovalRequired(
                f"{_label(name, version)}: the model's policy requires an approval for Production{who} "
                f"before promotion; record one with approve()",
                model_name=name,
                version=version,
            )

    def _promote(
        self,
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
        """Archive the current Production version, promote ``target``, move ``champion``: one transaction."""
        name, version = target.model_name, target.version
        if (target.stage, "Production") not in ALLOWED_TRANSITIONS:
            raise InvalidTransition(
                f"{_label(name, version)}: transition {target.stage} -> Production is not allowed",
                model_name=name,
                version=version,
            )
        incumbent = conn.execute(
            select(model_versions.c.version).where(
                model_versions.c.model_name == name, model_versions.c.stage == "Production"
            )
        ).scalar_one_or_none()
        if incumbent is not None:
            # Archive first so the unique index never sees two Production rows, and so the log (read
            # by production_at) has the promotion as the last row of the transaction.
            self._set_stage(conn, name, incumbent, "Production", "Archived")
            self._log(
                conn,
                model_name=name,
                version=incumbent,
                from_stage="Production",
                to_stage="Archived",
                actor=actor,
                reason=incumbent_reason,
                evidence=incumbent_evidence,
                at=at,
            )
        self._set_stage(conn, name, version, target.stage, "Production")
        self._log(
            conn,
            model_name=name,
            version=version,
            from_stage=target.stage,
            to_stage="Production",
            actor=actor,
            reason=reason,
            evidence=evidence,
            at=at,
        )
        alias_evidence = {"stage_change": f"v{version} {target.stage} -> Production", "replaced": incumbent}
        self._move_alias(conn, name, CHAMPION, version, actor=actor, reason=reason, evidence=alias_evidence, at=at)
        if self._alias_version(conn, name, CHALLENGER) == version:
            # The challenger won: it is the champion now, and a version cannot challenge itself.
            self._move_alias(conn, name, CHALLENGER, None, actor=actor, reason=reason, evidence=alias_evidence, at=at)
        self._conclude_rollout(conn, name, version, actor=actor, reason=reason, at=at)

    def _conclude_rollout(
        self, conn: Connection, model_name: str, promoted: int, *, actor: str, reason: str, at: datetime
    ) -> None:
        """Production changed outside the rollout (a promotion or rollback by hand): end the rollout in progress.

        Promoting its challenger completes it; any other change of production voids its comparison, so it
        is rolled back (its challenger archived). Either way, the move is in the rollout log.
        """
        active = self._active_rollout_row(conn, model_name)
        if active is None:
            return
        running = RolloutState.from_json(active.state)
        when = max(at, running.history[-1].at) if running.history else at
        if running.challenger_version == promoted:
            ended = rollout_conclude(running, when, reason=f"promoted outside the rollout: {reason}")
            self._save_rollout(conn, int(active.id), running, ended, actor=actor)
        else:
            why = f"production changed to v{promoted} outside the rollout: {reason}"
            ended = rollout_roll_back(running, when, reason=why)
            self._save_rollout(conn, int(active.id), running, ended, actor=actor)
            self._end_rollout(conn, ended, actor=actor, reason=why)

    # -- writes -------------------------------------------------------------------------------------

    def register_version(
        self,
        model_name: str,
        artifact: ArtifactRef,
        lineage: Lineage,
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
        description: str = "",
        *,
        actor: str = "registry",
    ) -> ModelVersion:
        """Register a model artifact as the model's next version, in stage ``"None"``.

        Idempotent: if this model already has a version with the same artifact digest, that version is
        returned unchanged (params, metrics and lineage of the new call are ignored).

        Args:
            model_name: Registered model name.
            artifact: The stored artifact.
            lineage: Data versions, run and code that produced it.
            params: Training parameters (JSON-serialisable).
            metrics: Evaluation metrics (JSON-serialisable).
            description: Free text.
            actor: Recorded on the registration log row.

        Returns:
            The new (or existing) version.

        Raises:
            RegistryConflict: The database refused the write.
        """
        if not model_name:
            raise ValueError("model_name must be non-empty")
        # Serialise before opening the transaction so a bad value fails fast without holding the lock.
        params_json = _dumps(dict(params))
        metrics_json = _dumps(dict(metrics))
        with self._write(model_name, None, "registering") as conn:
            existing = conn.execute(
                select(model_versions).where(
                    model_versions.c.model_name == model_name,
                    model_versions.c.artifact_sha256 == artifact.sha256,
                )
            ).first()
            if existing is not None:
                return _row_to_version(existing)
            # Allocated under the model's lock, so concurrent registrations get 1, 2, 3, ... without gaps.
            version = int(
                conn.execute(
                    select(func.coalesce(func.max(model_versions.c.version), 0) + 1).where(
                        model_versions.c.model_name == model_name
                    )
                ).scalar_one()
            )
            now = _utcnow()
            conn.execute(
                insert(model_versions).values(
                    model_name=model_name,
                    version=version,
                    stage="None",
                    artifact_uri=artifact.uri,
                    artifact_sha256=artifact.sha256,
                    artifact_size=artifact.size,
                    artifact_hmac=artifact.hmac,
                    data_versions=_dumps(list(lineage.data_versions)),
                    run_id=lineage.run_id,
                    code_version=lineage.code_version,
                    git_sha=lineage.git_sha,
                    spec_fingerprint=lineage.spec_fingerprint,
                    params=params_json,
                    metrics=metrics_json,
                    created_at=now,
                    description=description,
                )
            )
            self._log(
                conn,
                model_name=model_name,
                version=version,
                from_stage=None,
                to_stage="None",
                actor=actor,
                reason="registered",
                evidence={"artifact_sha256": artifact.sha256, "run_id": lineage.run_id},
                at=now,
            )
            return self._select_version(conn, model_name, version)

    def transition(
        self,
        model_name: str,
        version: int,
        to_stage: str,
        *,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any],
        required_gates: Sequence[str] | None = None,
    ) -> ModelVersion:
        """Move a version to ``to_stage`` in one transaction, logging the move.

        Promoting to Production archives the current Production version first (logged with reason
        ``"replaced by v<version>"``) and points ``champion`` at the new version (clearing
        ``challenger`` if it named it); moving the Production version anywhere else removes
        ``champion``. Archiving the challenger (or the champion) of the active rollout ends that
        rollout: rolled back, ``challenger`` cleared. Concurrent promotions of one model are
        serialised: each sees the previous one's result.

        Args:
            model_name: Registered model name.
            version: Version to move.
            to_stage: Target stage, one of :data:`STAGES`.
            actor: Who makes the change (non-empty).
            reason: Why (non-empty).
            evidence: JSON-serialisable details (gate results, metrics compared, ...).
            required_gates: For a move to Staging or Production: gate names (``"<asset>:<check>"``)
                whose latest outcome must be of this version and artifact, and passed. ``None`` checks
                nothing (every Dagster path passes them).

        Returns:
            The version after the move.

        Raises:
            VersionNotFound: No such version.
            InvalidTransition: ``to_stage`` is not reachable from the current stage.
            GateEvidenceMissing: A required gate's evidence of this version is failed, missing or of
                another artifact (an InvalidTransition).
            VersionMarkedBad: Promotion of a version marked bad (an InvalidTransition).
            ApprovalRequired: Promotion that the model's :class:`ApprovalPolicy` has not seen approved.
            RegistryConflict: The database refused the write (e.g. lost a race, lock timeout).
        """
        if not actor or not reason:
            raise ValueError(f"{_label(model_name, version)}: actor and reason are required for a transition")
        evidence_json = dict(evidence)
        _dumps(evidence_json)  # fail fast on non-serialisable evidence, before taking the lock
        if to_stage not in STAGES:
            raise InvalidTransition(
                f"{_label(model_name, version)}: unknown stage {to_stage!r}, expected one of {STAGES}",
                model_name=model_name,
                version=version,
            )
        with self._write(model_name, version, f"moving to {to_stage}") as conn:
            current = self._select_version(conn, model_name, version)
            if (current.stage, to_stage) not in ALLOWED_TRANSITIONS:
                raise InvalidTransition(
                    f"{_label(model_name, version)}: transition {current.stage} -> {to_stage} is not allowed",
                    model_name=model_name,
                    version=version,
                )
            if to_stage in ("Staging", "Production"):
                self._check_evidence(conn, current, required_gates, to_stage)
            now = _utcnow()
            if to_stage == "Production":
                self._check_promotable(conn, current)
                self._promote(
                    conn,
                    current,
                    actor=actor,
                    reason=reason,
                    evidence=evidence_json,
                    at=now,
                    incumbent_reason=f"replaced by v{version}",
                    incumbent_evidence={"replaced_by": version},
                )
                return self._select_version(conn, model_name, version)
            self._set_stage(conn, model_name, version, current.stage, to_stage)
            self._log(
                conn,
                model_name=model_name,
                version=version,
                from_stage=current.stage,
                to_stage=to_stage,
                actor=actor,
                reason=reason,
                evidence=evidence_json,
                at=now,
            )
            if current.stage == "Production":
                # Production retired without a replacement: there is no champion any more.
                self._move_alias(
                    conn,
                    model_name,
                    CHAMPION,
                    None,
                    actor=actor,
                    reason=reason,
                    evidence={"stage_change": f"v{version} Production -> {to_stage}"},
                    at=now,
                )
            if to_stage == "Archived":
                self._withdraw_from_rollout(conn, model_name, version, actor=actor, reason=reason)
            return self._select_version(conn, model_name, version)

    def promote_challenger(
        self,
        model_name: str,
        *,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any],
        expected_version: int | None = None,
        required_gates: Sequence[str] | None = None,
    ) -> ModelVersion:
        """The blue/green switch: promote the version named by ``challenger``, in one transaction.

        Same rules and effects as ``transition(model, challenger, "Production")`` (approval policy,
        bad mark, archive of the incumbent, ``champion`` moved, ``challenger`` cleared), with the
        version read from the alias under the model's lock.

        Args:
            model_name: Registered model name.
            actor: Who makes the change.
            reason: Why.
            evidence: JSON-serialisable details (e.g. the rollout's final guard results).
            expected_version: If given, the version the caller evaluated; refused with
                :class:`RegistryConflict` if ``challenger`` names another version by now.
            required_gates: Gates whose latest outcome must be of the challenger's version and
                artifact, and passed (:class:`GateEvidenceMissing` otherwise); ``None`` checks nothing.

        Returns:
            The promoted version.

        Raises:
            AliasNotFound: The model has no ``challenger``.
            RegistryConflict: ``challenger`` moved since the caller read it, or the database refused.
        """
        _require_actor_reason(f"promoting the challenger of {_label(model_name, None)}", actor, reason)
        evidence_json = dict(evidence)
        _dumps(evidence_json)
        with self._write(model_name, expected_version, "promoting the challenger of") as conn:
            return self._promote_challenger(
                conn,
                model_name,
                actor=actor,
                reason=reason,
                evidence=evidence_json,
                expected_version=expected_version,
                required_gates=required_gates,
            )

    def _promote_challenger(
        self,
        conn: Connection,
        model_name: str,
        *,
        actor: str,
        reason: str,
        evidence: dict[str, Any],
        expected_version: int | None,
        required_gates: Sequence[str] | None = None,
    ) -> ModelVersion:
        version = self._alias_version(conn, model_name, CHALLENGER)
        if version is None:
            raise AliasNotFound(f"{_label(model_name, None)} has no {CHALLENGER!r} alias", model_name=model_name)
        if expected_version is not None and version != expected_version:
            raise RegistryConflict(
                f"{_label(model_name, expected_version)}: {CHALLENGER!r} now names v{version}, not "
                f"v{expected_version}: re-evaluate before promoting",
                model_name=model_name,
                version=expected_version,
            )
        target = self._select_version(conn, model_name, version)
        # Same order of checks as transition(): the stage machine first, then bad mark and approval.
        if (target.stage, "Production") not in ALLOWED_TRANSITIONS:
            raise InvalidTransition(
                f"{_label(model_name, version)}: transition {target.stage} -> Production is not allowed "
                f"(the challenger must be in Staging or Archived)",
                model_name=model_name,
                version=version,
            )
        self._check_promotable(conn, target)
        self._check_evidence(conn, target, required_gates, "Production")
        self._promote(
            conn,
            target,
            actor=actor,
            reason=reason,
            evidence=evidence,
            at=_utcnow(),
            incumbent_reason=f"replaced by v{version}",
            incumbent_evidence={"replaced_by": version},
        )
        return self._select_version(conn, model_name, version)

    def rollback(
        self,
        model_name: str,
        *,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
        required_gates: Sequence[str] | None = None,
    ) -> ModelVersion:
        """Roll Production back one step, to the last known-good version, in one transaction.

        Target rule: walk the model's promotions (log rows into Production) from the newest back and
        take the first version that is not the current Production version and is not marked bad.
        That is the version that served before the current one, unless it was itself rolled back
        or marked bad, in which case the walk continues further back. In the same transaction the
        current version is marked bad (so a second rollback does not bounce back to it), archived
        (reason ``"rolled back to v<N>: <reason>"``), the target promoted (reason
        ``"rollback from v<M>: <reason>"``) and ``champion`` moved. The approval policy does not
        apply: the target already served in Production, and a rollback must not wait for a reviewer.

        Args:
            model_name: Registered model name.
            actor: Who rolls back.
            reason: Why (e.g. the incident).
            evidence: JSON-serialisable details, recorded on both log rows.
            required_gates: Gates whose latest outcome must be of the target's version and artifact,
                and passed; ``None`` checks nothing.

        Returns:
            The version now in Production.

        Raises:
            NothingToRollBack: No Production version, or no earlier known-good one.
            GateEvidenceMissing: The target's gate evidence is not all passed (nothing changes).
            RegistryConflict: The database refused the write.
        """
        _require_actor_reason(f"rolling back {_label(model_name, None)}", actor, reason)
        details = dict(evidence or {})
        _dumps(details)
        with self._write(model_name, None, "rolling back") as conn:
            current = conn.execute(
                select(model_versions.c.version).where(
                    model_versions.c.model_name == model_name, model_versions.c.stage == "Production"
                )
            ).scalar_one_or_none()
            if current is None:
                raise NothingToRollBack(
                    f"{_label(model_name, None)} has no Production version to roll back from", model_name=model_name
                )
            current = int(current)
            target_version = self._rollback_target(conn, model_name, current)
            if target_version is None:
                raise NothingToRollBack(
                    f"{_label(model_name, current)}: no earlier known-good Production version to roll back to "
                    "(none served before it, or all that did are marked bad)",
                    model_name=model_name,
                    version=current,
                )
            target = self._select_version(conn, model_name, target_version)
            self._check_evidence(conn, target, required_gates, "Production (rollback target)")
            now = _utcnow()
            trail = {**details, "rollback": {"from": current, "to": target_version}}
            conn.execute(
                insert(version_verdicts).values(
                    model_name=model_name,
                    version=current,
                    verdict="bad",
                    actor=actor,
                    reason=f"rolled back: {reason}",
                    at=now,
                )
            )
            self._promote(
                conn,
                target,
                actor=actor,
                reason=f"rollback from v{current}: {reason}",
                evidence=trail,
                at=now,
                incumbent_reason=f"rolled back to v{target_version}: {reason}",
                incumbent_evidence=trail,
            )
            return self._select_version(conn, model_name, target_version)

    def _rollback_target(self, conn: Connection, model_name: str, current: int) -> int | None:
        promotions = conn.execute(
            select(stage_transitions.c.version)
            .where(stage_transitions.c.model_name == model_name, stage_transitions.c.to_stage == "Production")
            .order_by(stage_transitions.c.id.desc())
        ).scalars()
        bad = self._bad_versions(conn, model_name)
        for version in promotions:
            if version != current and version not in bad:
                return int(version)
        return None

    def mark_bad(self, model_name: str, version: int, *, actor: str, reason: str) -> None:
        """Mark a version bad: it is skipped by :meth:`rollback` and refused by promotions until cleared.

        If it is the challenger of the active rollout, that rollout ends in the same transaction:
        rolled back, ``challenger`` cleared, the challenger archived.

        Raises:
            VersionNotFound: No such version.
        """
        self._verdict(model_name, version, "bad", actor=actor, reason=reason)

    def clear_bad(self, model_name: str, version: int, *, actor: str, reason: str) -> None:
        """Clear a version's bad mark (appends a ``cleared`` verdict; the history is kept).

        Raises:
            VersionNotFound: No such version.
        """
        self._verdict(model_name, version, "cleared", actor=actor, reason=reason)

    def _verdict(self, model_name: str, version: int, verdict: str, *, actor: str, reason: str) -> None:
        _require_actor_reason(f"{verdict} verdict on {_label(model_name, version)}", actor, reason)
        with self._write(model_name, version, f"recording verdict {verdict} on") as conn:
            self._select_version(conn, model_name, version)
            conn.execute(
                insert(version_verdicts).values(
                    model_name=model_name, version=version, verdict=verdict, actor=actor, reason=reason, at=_utcnow()
                )
            )
            if verdict == "bad":
                self._withdraw_from_rollout(
                    conn, model_name, version, actor=actor, reason=f"marked bad: {reason}", champion_too=False
                )

    def approve(
        self, model_name: str, version: int, *, approver: str, stage: str = "Production", comment: str
    ) -> Approval:
        """Record that ``approver`` approves ``version`` for ``stage`` (append-only; approvals do not expire).

        Args:
            model_name: Registered model name.
            version: Version approved.
            approver: Who approves (non-empty).
            stage: ``"Production"`` (what the policy checks) or ``"Staging"``.
            comment: The approver's note.

        Returns:
            The recorded approval.

        Raises:
            VersionNotFound: No such version.
            FourEyesViolation: The policy says ``four_eyes`` and ``approver`` registered the version.
        """
        if not approver:
            raise ValueError(f"approving {_label(model_name, version)}: approver is required")
        if stage not in APPROVABLE_STAGES:
            raise ValueError(f"approving {_label(model_name, version)}: stage must be one of {APPROVABLE_STAGES}")
        with self._write(model_name, version, "approving") as conn:
            self._select_version(conn, model_name, version)
            if self._policy(conn, model_name).four_eyes and approver == self._registrant(conn, model_name, version):
                raise FourEyesViolation(
                    f"{_label(model_name, version)}: {approver!r} registered this version and may not approve it "
                    "(four-eyes policy)",
                    model_name=model_name,
                    version=version,
                )
            result = conn.execute(
                insert(approvals)
                .values(
                    model_name=model_name,
                    version=version,
                    stage=stage,
                    approver=approver,
                    comment=comment,
                    at=_utcnow(),
                )
                .returning(*approvals.c)
            ).one()
            return _row_to_approval(result)

    def set_policy(
        self,
        model_name: str,
        *,
        require_approval_for_production: bool,
        four_eyes: bool = False,
        actor: str,
        reason: str,
    ) -> ApprovalPolicy:
        """Set the model's promotion policy (appended; the latest row is the policy in force).

        Returns:
            The policy now in force.
        """
        _require_actor_reason(f"setting the policy of {_label(model_name, None)}", actor, reason)
        with self._write(model_name, None, "setting the policy of") as conn:
            conn.execute(
                insert(model_policies).values(
                    model_name=model_name,
                    require_approval_for_production=require_approval_for_production,
                    four_eyes=four_eyes,
                    actor=actor,
                    reason=reason,
                    at=_utcnow(),
                )
            )
            return self._policy(conn, model_name)

    def set_alias(self, model_name: str, alias: str, version: int, *, actor: str, reason: str) -> ModelVersion:
        """Point ``alias`` at ``version`` (creating or moving it) and log the change.

        ``champion`` is managed by promotions and rollbacks: setting it to the Production version is a
        no-op, anything else is refused. ``challenger`` may not name the Production version. Setting
        an alias to the version it already names changes and logs nothing.

        Returns:
            The version the alias now names.

        Raises:
            InvalidAlias: Malformed name, or a target the alias may not have.
            VersionNotFound: No such version.
        """
        _check_alias_name(model_name, alias)
        _require_actor_reason(f"setting alias {alias!r} of {_label(model_name, version)}", actor, reason)
        with self._write(model_name, version, f"setting alias {alias!r} to") as conn:
            target = self._select_version(conn, model_name, version)
            if alias == CHAMPION and target.stage != "Production":
                raise InvalidAlias(
                    f"{_label(model_name, version)}: {CHAMPION!r} always names the Production version; "
                    "promote with transition() or promote_challenger(), or use rollback()",
                    model_name=model_name,
                    version=version,
                )
            if alias == CHALLENGER and target.stage == "Production":
                raise InvalidAlias(
                    f"{_label(model_name, version)} is the Production version (the champion); it cannot be "
                    f"the {CHALLENGER!r}",
                    model_name=model_name,
                    version=version,
                )
            self._move_alias(conn, model_name, alias, version, actor=actor, reason=reason, evidence={}, at=_utcnow())
            return target

    def delete_alias(self, model_name: str, alias: str, *, actor: str, reason: str) -> int | None:
        """Remove ``alias`` and log it.

        Returns:
            The version the alias named, or ``None`` if the model had no such alias (nothing logged).

        Raises:
            InvalidAlias: Malformed name, or ``champion`` while there is a Production version.
        """
        _check_alias_name(model_name, alias)
        _require_actor_reason(f"deleting alias {alias!r} of {_label(model_name, None)}", actor, reason)
        with self._write(model_name, None, f"deleting alias {alias!r} of") as conn:
            version = self._alias_version(conn, model_name, alias)
            if version is None:
                return None
            if alias == CHAMPION:
                # Only reachable while a Production version exists (the alias follows it).
                raise InvalidAlias(
                    f"{_label(model_name, version)}: {CHAMPION!r} names the Production version and goes away "
                    "only when Production is archived",
                    model_name=model_name,
                    version=version,
                )
            self._move_alias(conn, model_name, alias, None, actor=actor, reason=reason, evidence={}, at=_utcnow())
            return version

    # -- rollouts -------------------------------------------------------------------------------------

    @staticmethod
    def _active_rollout_row(conn: Connection, model_name: str) -> Row[Any] | None:
        return conn.execute(
            select(rollouts).where(
                rollouts.c.model_name == model_name, rollouts.c.phase.in_(("idle", "shadow", "canary"))
            )
        ).first()

    def _log_moves(
        self, conn: Connection, rollout_id: int, state: RolloutState, moves: tuple[RolloutEvent, ...], actor: str
    ) -> None:
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
                    evidence=_dumps(dict(move.evidence)),
                    at=move.at,
                )
            )

    def _end_rollout(self, conn: Connection, state: RolloutState, *, actor: str, reason: str) -> None:
        """A rolled-back rollout: the challenger leaves Staging for Archived and loses its alias."""
        name, version = state.model_name, state.challenger_version
        evidence = {"rollout": {"phase": state.phase.value, "moves": len(state.history)}}
        if self._alias_version(conn, name, CHALLENGER) == version:
            self._move_alias(conn, name, CHALLENGER, None, actor=actor, reason=reason, evidence=evidence, at=_utcnow())
        current = self._select_version(conn, name, version)
        if current.stage == "Staging":
            self._set_stage(conn, name, version, "Staging", "Archived")
            self._log(
                conn,
                model_name=name,
                version=version,
                from_stage="Staging",
                to_stage="Archived",
                actor=actor,
                reason=reason,
                evidence=evidence,
                at=_utcnow(),
            )

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
        _require_actor_reason(
            f"starting a rollout of {_label(state.model_name, state.challenger_version)}", actor, reason
        )
        if state.phase in (Phase.IDLE, Phase.PROMOTED, Phase.ROLLED_BACK):
            raise ValueError(f"start_rollout() needs a started rollout (shadow or canary), got {state.phase.value}")
        name, version = state.model_name, state.challenger_version
        with self._write(name, version, "starting a rollout of") as conn:
            active = self._active_rollout_row(conn, name)
            if active is not None:
                running = RolloutState.from_json(active.state)
                if not supersede:
                    raise RegistryConflict(
                        f"{_label(name, running.challenger_version)} is already being rolled out "
                        f"({running.phase.value}); finish or abort it first",
                        model_name=name,
                        version=version,
                    )
                why = f"superseded by a rollout of v{version}: {reason}"
                ended = rollout_roll_back(running, max(_utcnow(), running.history[-1].at), reason=why)
                self._save_rollout(conn, int(active.id), running, ended, actor=actor)
                self._end_rollout(conn, ended, actor=actor, reason=why)
            production = conn.execute(
                select(model_versions.c.version).where(
                    model_versions.c.model_name == name, model_versions.c.stage == "Production"
                )
            ).scalar_one_or_none()
            if production != state.champion_version:
                raise RegistryConflict(
                    f"{_label(name, version)}: the rollout was planned against production "
                    f"v{state.champion_version} but production is v{production}",
                    model_name=name,
                    version=version,
                )
            target = self._select_version(conn, name, version)
            if target.stage != "Staging":
                raise InvalidTransition(
                    f"{_label(name, version)} is in {target.stage}: only a Staging version can be rolled out",
                    model_name=name,
                    version=version,
                )
            bad = self._bad_versions(conn, name)
            if version in bad:
                raise VersionMarkedBad(
                    f"{_label(name, version)} is marked bad ({bad[version]}): it cannot be rolled out",
                    model_name=name,
                    version=version,
                )
            self._check_evidence(conn, target, required_gates, "a rollout")
            self._move_alias(
                conn,
                name,
                CHALLENGER,
                version,
                actor=actor,
                reason=reason,
                evidence={"rollout": "started"},
                at=_utcnow(),
            )
            now = _utcnow()
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
            self._log_moves(conn, int(rollout_id), state, state.history, actor)
            return state

    def _save_rollout(
        self, conn: Connection, rollout_id: int, before: RolloutState, after: RolloutState, *, actor: str
    ) -> None:
        new_moves = after.history[len(before.history) :]
        if after.history[: len(before.history)] != before.history:
            raise ValueError("the new rollout state must extend the old one's history")
        result = conn.execute(
            update(rollouts)
            .where(rollouts.c.id == rollout_id, rollouts.c.moves == len(before.history))
            .values(phase=after.phase.value, moves=len(after.history), state=after.to_json(), updated_at=_utcnow())
        )
        if result.rowcount != 1:
            raise RegistryConflict(
                f"{_label(before.model_name, before.challenger_version)}: the rollout moved since it was read",
                model_name=before.model_name,
                version=before.challenger_version,
            )
        self._log_moves(conn, rollout_id, after, new_moves, actor)

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
            active = self._active_rollout_row(conn, name)
            if active is None or int(active.challenger_version) != version:
                raise RegistryConflict(
                    f"{_label(name, version)}: no active rollout of this version to update",
                    model_name=name,
                    version=version,
                )
            if after.phase is not Phase.ROLLED_BACK:
                challenger = self._select_version(conn, name, version)
                bad = self._bad_versions(conn, name)
                if challenger.stage == "Archived" or version in bad:
                    why = f"marked bad ({bad[version]})" if version in bad else "Archived"
                    raise InvalidTransition(
                        f"{_label(name, version)} is {why}: its rollout can only be rolled back",
                        model_name=name,
                        version=version,
                    )
            self._save_rollout(conn, int(active.id), before, after, actor=actor)
            last = after.history[-1]
            if after.phase is Phase.PROMOTED:
                self._promote_challenger(
                    conn,
                    name,
                    actor=actor,
                    reason=f"rollout complete: {last.reason}",
                    evidence={"rollout_id": int(active.id), **dict(last.evidence)},
                    expected_version=version,
                    required_gates=required_gates,
                )
            elif after.phase is Phase.ROLLED_BACK:
                self._end_rollout(conn, after, actor=actor, reason=f"rollout rolled back: {last.reason}")
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
            row = self._active_rollout_row(conn, model_name)
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
                "evidence": json.loads(r.evidence),
                "at": r.at,
            }
            for r in rows
        ]

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
                    "change": f"{a.alias}: {_vlabel(a.from_version)} -> {_vlabel(a.to_version)}",
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

    # -- gate evidence ----------------------------------------------------------------------------

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
            raise ValueError(f"recording a gate result of {_label(model_name, version)}: gate and run_id are required")
        with self._write(model_name, version, f"recording gate {gate} of") as conn:
            self._select_version(conn, model_name, version)
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
                    at=_utcnow(),
                )
                .returning(*gate_results.c)
            ).one()
            return _row_to_gate_outcome(row)

    def gate_outcomes(self, model_name: str, version: int) -> dict[str, GateOutcome]:
        """The latest recorded outcome of each gate for one version, by gate name."""
        with self._read() as conn:
            return self._gate_outcomes(conn, model_name, version)

    def gate_history(self, model_name: str, version: int | None = None) -> list[GateOutcome]:
        """Every recorded gate outcome of a model (or one version), oldest first."""
        query = select(gate_results).where(gate_results.c.model_name == model_name)
        if version is not None:
            query = query.where(gate_results.c.version == version)
        with self._read() as conn:
            rows = conn.execute(query.order_by(gate_results.c.id)).all()
        return [_row_to_gate_outcome(r) for r in rows]

    def rollback_target(self, model_name: str) -> ModelVersion | None:
        """The version :meth:`rollback` would restore now (``None``: nothing in Production or no target)."""
        with self._read() as conn:
            current = conn.execute(
                select(model_versions.c.version).where(
                    model_versions.c.model_name == model_name, model_versions.c.stage == "Production"
                )
            ).scalar_one_or_none()
            if current is None:
                return None
            target = self._rollback_target(conn, model_name, int(current))
            return None if target is None else self._select_version(conn, model_name, target)

    # -- reads --------------------------------------------------------------------------------------

    def get_version(self, model_name: str, version: int) -> ModelVersion:
        """Return one version.

        Raises:
            VersionNotFound: No such version.
        """
        with self._read() as conn:
            return self._select_version(conn, model_name, version)

    def list_versions(self, model_name: str) -> list[ModelVersion]:
        """Return all versions of a model, oldest first (empty for an unknown model)."""
        with self._read() as conn:
            rows = conn.execute(
                select(model_versions)
                .where(model_versions.c.model_name == model_name)
                .order_by(model_versions.c.version)
            ).all()
        return [_row_to_version(r) for r in rows]

    def production_version(self, model_name: str) -> ModelVersion | None:
        """Return the model's Production version, or ``None``."""
        with self._read() as conn:
            row = conn.execute(
                select(model_versions).where(
                    model_versions.c.model_name == model_name, model_versions.c.stage == "Production"
                )
            ).first()
        return None if row is None else _row_to_version(row)

    def versions_for_data_version(self, model_name: str, data_version: str) -> list[ModelVersion]:
        """Return the versions trained on ``data_version``, oldest first."""
        # data_versions is JSON text; filtering in Python is exact and a model has few versions.
        return [v for v in self.list_versions(model_name) if data_version in v.data_versions]

    def transitions(self, model_name: str, version: int | None = None) -> list[Transition]:
        """Return the stage log of a model (or of one version), in the order it was written."""
        query = select(stage_transitions).where(stage_transitions.c.model_name == model_name)
        if version is not None:
            query = query.where(stage_transitions.c.version == version)
        with self._read() as conn:
            rows = conn.execute(query.order_by(stage_transitions.c.id)).all()
        return [_row_to_transition(r) for r in rows]

    def production_at(self, model_name: str, when: datetime) -> int | None:
        """Return the version that was in Production at ``when`` (inclusive), from the log.

        Args:
            model_name: Registered model name.
            when: Timezone-aware instant.

        Returns:
            The version number, or ``None`` if nothing was in Production then.
        """
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"production_at({model_name!r}): pass a timezone-aware datetime, got {when!r}")
        # The last log row touching Production at or before `when` decides: a move into Production
        # names the version, a move out of it means nothing was in Production (a replacement writes
        # the archive row before the promotion row, so the promotion is last).
        with self._read() as conn:
            row = conn.execute(
                select(stage_transitions.c.version, stage_transitions.c.to_stage)
                .where(
                    stage_transitions.c.model_name == model_name,
                    stage_transitions.c.at <= when,
                    or_(stage_transitions.c.to_stage == "Production", stage_transitions.c.from_stage == "Production"),
                )
                .order_by(stage_transitions.c.id.desc())
                .limit(1)
            ).first()
        if row is None or row.to_stage != "Production":
            return None
        return int(row.version)

    def get_alias(self, model_name: str, alias: str) -> ModelVersion | None:
        """Return the version ``alias`` names, or ``None`` if the model has no such alias."""
        _check_alias_name(model_name, alias)
        with self._read() as conn:
            row = conn.execute(
                select(model_versions)
                .join(
                    model_aliases,
                    (model_aliases.c.model_name == model_versions.c.model_name)
                    & (model_aliases.c.version == model_versions.c.version),
                )
                .where(model_aliases.c.model_name == model_name, model_aliases.c.alias == alias)
            ).first()
        return None if row is None else _row_to_version(row)

    def aliases(self, model_name: str) -> dict[str, int]:
        """Return the model's aliases and the versions they name."""
        with self._read() as conn:
            rows = conn.execute(
                select(model_aliases.c.alias, model_aliases.c.version)
                .where(model_aliases.c.model_name == model_name)
                .order_by(model_aliases.c.alias)
            ).all()
        return {r.alias: int(r.version) for r in rows}

    def alias_history(self, model_name: str, alias: str | None = None) -> list[AliasChange]:
        """Return the alias log of a model (or of one alias), in the order it was written."""
        query = select(alias_log).where(alias_log.c.model_name == model_name)
        if alias is not None:
            query = query.where(alias_log.c.alias == alias)
        with self._read() as conn:
            rows = conn.execute(query.order_by(alias_log.c.id)).all()
        return [_row_to_alias_change(r) for r in rows]

    def approvals(self, model_name: str, version: int | None = None) -> list[Approval]:
        """Return the approvals of a model (or of one version), oldest first."""
        query = select(approvals).where(approvals.c.model_name == model_name)
        if version is not None:
            query = query.where(approvals.c.version == version)
        with self._read() as conn:
            rows = conn.execute(query.order_by(approvals.c.id)).all()
        return [_row_to_approval(r) for r in rows]

    def policy(self, model_name: str) -> ApprovalPolicy:
        """Return the model's promotion policy in force (the default policy requires nothing)."""
        with self._read() as conn:
            return self._policy(conn, model_name)

    def bad_versions(self, model_name: str) -> dict[int, str]:
        """Return the versions currently marked bad, with the reason of the mark."""
        with self._read() as conn:
            return self._bad_versions(conn, model_name)

    def history(self, model_name: str) -> list[Transition]:
        """Return the model's whole stage log, oldest first (same as ``transitions(model_name)``)."""
        return self.transitions(model_name)
