"""Engines, transactions and locking: SQLite (``BEGIN IMMEDIATE``) or PostgreSQL (advisory locks).

:class:`RegistryCore` owns the engine and the schema bootstrap and gives every registry concern the
two ways in: ``_read()`` (a plain transaction) and ``_write(model, version, action)`` (a transaction
holding the model's write lock, with database refusals turned into
:class:`~mlops_assets.storage.registry.types.RegistryConflict`).
"""

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any, Self

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from mlops_assets.storage.registry.records import label, utcnow
from mlops_assets.storage.registry.schema import alias_log, metadata, model_versions
from mlops_assets.storage.registry.statements import log_champion, production_of
from mlops_assets.storage.registry.types import (
    CHAMPION,
    DEFAULT_LOCK_TIMEOUT_S,
    RegistryConflict,
    RegistryError,
    Stage,
)

# PostgreSQL advisory locks in the two-int4 key space, namespaced so they cannot collide with
# single-bigint advisory locks taken by other software sharing the database (e.g. Dagster storage).
_PG_LOCK_NAMESPACE = 0x6D6C6F70  # "mlop"

_PG_SCHEMA_LOCK_KEY = 0x72656769  # "regi"

_WRITE_OPTION = "mlops_registry_write"


def _is_contention(exc: sa_exc.DBAPIError) -> bool:
    """Whether a DBAPI error means "lost a race / timed out on a lock" rather than a bug or an outage."""
    pgcode = getattr(exc.orig, "pgcode", None)
    if pgcode is not None:
        # serialization_failure, deadlock_detected, lock_not_available
        return pgcode in {"40001", "40P01", "55P03"}
    message = str(exc.orig).lower()
    return "database is locked" in message or "database table is locked" in message or "busy" in message


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


class RegistryCore:
    """The engine, schema bootstrap and transactions shared by every registry concern.

    Not used on its own: :class:`~mlops_assets.storage.registry.model_registry.ModelRegistry` combines it
    with one mixin per concern. See ``ModelRegistry`` for the arguments.
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

    def __enter__(self) -> Self:
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
                    metadata.create_all(conn, checkfirst=True)
                    self._backfill_champions(conn)
            self._schema_ready = True

    def _backfill_champions(self, conn: Connection) -> None:
        """Log the ``champion`` of a Production version the alias log does not name (databases created before aliases).

        ``champion`` is derived from the Production stage, so nothing is stored: this only completes the
        audit trail (one ``alias_log`` row per such model). Idempotent and cheap once done (one indexed
        query). On PostgreSQL the model's write lock is taken before re-checking, so a writer in another
        process cannot log a move in between.
        """
        latest_logged = (
            select(alias_log.c.to_version)
            .where(alias_log.c.model_name == model_versions.c.model_name, alias_log.c.alias == CHAMPION)
            .order_by(alias_log.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        orphan_query = select(model_versions.c.model_name).where(
            model_versions.c.stage == Stage.PRODUCTION,
            func.coalesce(latest_logged, 0) != model_versions.c.version,
        )
        for (model_name,) in conn.execute(orphan_query).all():
            if self._dialect == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_NAMESPACE, func.hashtext(model_name))))
            production = production_of(conn, model_name)
            logged = conn.execute(
                select(alias_log.c.to_version)
                .where(alias_log.c.model_name == model_name, alias_log.c.alias == CHAMPION)
                .order_by(alias_log.c.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            if production is not None and logged != production:
                log_champion(
                    conn,
                    model_name,
                    None if logged is None else int(logged),
                    production,
                    actor="registry",
                    reason="backfilled: the Production version predates aliases",
                    evidence={},
                    at=utcnow(),
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
                f"{action} {label(model_name, version)} refused by the database (concurrent change?): {exc.orig}",
                model_name=model_name,
                version=version,
            ) from exc
        except sa_exc.DBAPIError as exc:
            if _is_contention(exc):
                raise RegistryConflict(
                    f"{action} {label(model_name, version)} lost a race with a concurrent change: {exc.orig}",
                    model_name=model_name,
                    version=version,
                ) from exc
            raise
