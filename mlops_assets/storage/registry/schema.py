"""The registry's tables, indexes, check constraints and the triggers that make logs append-only.

``model_versions`` rows are never deleted and change only in ``stage``; ``stage_transitions``,
``alias_log``, ``approvals``, ``model_policies``, ``version_verdicts``, ``rollout_log``, ``gate_results`` and
``version_rejections`` refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL) in the database itself. Tables are
created on first use (:meth:`mlops_assets.storage.registry.engine.RegistryCore._ensure_schema`), so an
existing database gains the newer tables without a migration.
"""

from datetime import UTC, datetime

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.types import TypeDecorator

from mlops_assets.ml.stages import STAGES, Stage
from mlops_assets.storage.registry.types import APPROVABLE_STAGES, MAX_ALIAS_LENGTH


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


metadata = MetaData()


def _sql_in(values: tuple[Stage, ...]) -> str:
    return ", ".join(f"'{v.value}'" for v in values)


_stage_check = f"({{col}} IN ({_sql_in(STAGES)}))"

model_versions = Table(
    "model_versions",
    metadata,
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
    sqlite_where=model_versions.c.stage == Stage.PRODUCTION.value,
    postgresql_where=model_versions.c.stage == Stage.PRODUCTION.value,
)

stage_transitions = Table(
    "stage_transitions",
    metadata,
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
    metadata,
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
    metadata,
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
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("stage", String(16), nullable=False),
    Column("approver", Text, nullable=False),
    Column("comment", Text, nullable=False),
    Column("at", _UTCDateTime(), nullable=False),
    _version_fk("version", "fk_approvals_version"),
    CheckConstraint(f"stage IN ({_sql_in(APPROVABLE_STAGES)})", name="ck_approvals_stage"),
    CheckConstraint("length(approver) > 0", name="ck_approvals_approver"),
    Index("ix_approvals_model_version", "model_name", "version"),
    sqlite_autoincrement=True,
)

model_policies = Table(
    "model_policies",
    metadata,
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
    metadata,
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
    metadata,
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
    metadata,
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
    metadata,
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

# One row per failed evaluation of a model version: the version's artifact judged on one data version in one run
# (the unique constraint makes "exactly once" a fact of the database). The failed gates are that evaluation's
# failed gate_results rows; ``gate``/``summary`` are the first failure, the one that opened the record.
version_rejections = Table(
    "version_rejections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("artifact_sha256", String(64), nullable=False),
    Column("data_version", Text, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("gate", String(255), nullable=False),
    Column("summary", Text, nullable=False),
    Column("at", _UTCDateTime(), nullable=False),
    _version_fk("version", "fk_version_rejections_version"),
    UniqueConstraint(
        "model_name", "version", "artifact_sha256", "data_version", "run_id", name="uq_version_rejections_evaluation"
    ),
    Index("ix_version_rejections_model_version", "model_name", "version"),
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


for _table in (alias_log, approvals, model_policies, version_verdicts, rollout_log, gate_results, version_rejections):
    _make_append_only(_table)
