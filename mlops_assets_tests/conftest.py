"""Shared pytest fixtures."""

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

# The local server used in development; CI may point elsewhere.
POSTGRES_ADMIN_URL = os.environ.get(
    "MLOPS_TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


def _services_required() -> bool:
    # CI sets MLOPS_REQUIRE_SERVICES=1 so that a missing database fails the build instead of
    # silently skipping the PostgreSQL half of the suite.
    return os.environ.get("MLOPS_REQUIRE_SERVICES") == "1"


def _postgres_admin_engine() -> sa.Engine:
    """Engine on the maintenance database; AUTOCOMMIT because CREATE/DROP DATABASE cannot run in a transaction."""
    return sa.create_engine(
        POSTGRES_ADMIN_URL,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
        poolclass=sa.pool.NullPool,
    )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh, uniquely named PostgreSQL database, dropped after the test.

    Skips when the server is unreachable, unless ``MLOPS_REQUIRE_SERVICES=1`` (then the test fails).
    """
    admin = _postgres_admin_engine()
    name = f"mlops_test_{uuid.uuid4().hex}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL not reachable at {sa.make_url(POSTGRES_ADMIN_URL).render_as_string()}: {exc.orig}"
        if _services_required():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            # FORCE (PostgreSQL 13+) terminates sessions a test forgot to close.
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
