"""A throwaway PostgreSQL 15 cluster for tests that stop, start and restart the database under a deployment.

The shared server (127.0.0.1:5432) is never restarted: a test that injects a database fault gets its own cluster —
``initdb`` in a fresh temporary folder, ``pg_ctl`` on a free loopback port, trust authentication, its socket in
that folder — and removes it afterwards, whatever the test did (:func:`throwaway_cluster` stops it and deletes the
folder in a ``finally``; an ``atexit`` hook covers an interpreter that ends without running the teardown).

``initdb`` refuses to run as root: when the tests run as root (containers, CI), every server command runs as the
``postgres`` OS user (``runuser -u postgres --``) on a folder that user owns.
"""

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

#: Where Debian/Ubuntu put the PostgreSQL 15 server binaries; ``MLOPS_TEST_PG_BIN`` overrides it.
PG_BIN = Path(os.environ.get("MLOPS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: The OS user that owns and runs the cluster when the tests run as root.
PG_OS_USER = "postgres"
#: Generous bound for one ``pg_ctl`` start or stop (a busy machine replays WAL slowly); never a synchronisation.
PG_CTL_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """One PostgreSQL cluster in its own folder, on ``127.0.0.1:<port>``, superuser ``postgres`` with trust auth.

    Args:
        root: An empty folder for the cluster (data directory, socket, server log); owned by :data:`PG_OS_USER`
            when running as root.
        port: The loopback port to listen on.
    """

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.data = root / "data"
        self.log = root / "server.log"
        self._as_other_user = os.geteuid() == 0

    # -- commands -----------------------------------------------------------------------------------------------------

    def _run(self, *args: str) -> None:
        """Run a server binary (as :data:`PG_OS_USER` when root); raise with its output when it fails."""
        prefix = ["runuser", "-u", PG_OS_USER, "--"] if self._as_other_user else []
        result = subprocess.run(
            [*prefix, str(PG_BIN / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=PG_CTL_TIMEOUT_S + 30,
            check=False,
        )
        if result.returncode != 0:
            output = f"{result.stdout}\n{result.stderr}\n{self.server_log()}"
            raise RuntimeError(f"{' '.join(args)} exited with {result.returncode}\n{output}")

    def init(self) -> None:
        """``initdb``: a new cluster with trust authentication (loopback only, see :meth:`start`)."""
        # --no-sync: a throwaway cluster need not survive a power cut; it makes initdb fast.
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                # A deployment holds a few dozen connections (daemon threads, code server, webserver, run workers).
                "-c max_connections=200",
                "-c fsync=off",  # throwaway data; a restart is still a real shutdown and crash-free start
            ]
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(PG_CTL_TIMEOUT_S),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions and close every connection) and wait until it is down.

        Args:
            mode: ``pg_ctl`` shutdown mode: ``smart``, ``fast`` or ``immediate``.
        """
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(PG_CTL_TIMEOUT_S), "stop")

    def restart(self) -> None:
        """Stop (fast) and start again: every client connection is cut, the data stays."""
        self.stop()
        self.start()

    def running(self) -> bool:
        """Whether the server's postmaster is up (``postmaster.pid`` exists)."""
        return (self.data / "postmaster.pid").exists()

    def server_log(self) -> str:
        """The last 4,000 characters of the server log."""
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    # -- databases ----------------------------------------------------------------------------------------------------

    @property
    def admin_url(self) -> str:
        """URL of the maintenance database ``postgres``."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return sa.make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def destroy(self) -> None:
        """Stop the server if it runs (immediate: nothing to keep) and delete the folder; safe to call twice."""
        if self.data.exists() and self.running():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _skip_or_fail(message: str) -> None:
    # As conftest.py's service fixtures: CI (MLOPS_REQUIRE_SERVICES=1) fails instead of skipping.
    if os.environ.get("MLOPS_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[PostgresCluster]:
    """A started :class:`PostgresCluster` in a fresh temporary folder; stopped and deleted on exit, always.

    Skips when the PostgreSQL 15 server binaries are missing (or ``runuser``/the ``postgres`` user when running
    as root), unless ``MLOPS_REQUIRE_SERVICES=1`` (then the test fails).
    """
    if not (PG_BIN / "initdb").exists():
        _skip_or_fail(f"PostgreSQL server binaries not found in {PG_BIN} (set MLOPS_TEST_PG_BIN)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        _skip_or_fail("running as root needs runuser to start PostgreSQL as the postgres user")
    root = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    cluster = PostgresCluster(root, _free_port())
    atexit.register(cluster.destroy)
    try:
        if os.geteuid() == 0:
            try:
                shutil.chown(root, PG_OS_USER, PG_OS_USER)
            except LookupError:
                _skip_or_fail(f"running as root needs an OS user {PG_OS_USER!r} to run PostgreSQL")
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
        atexit.unregister(cluster.destroy)
