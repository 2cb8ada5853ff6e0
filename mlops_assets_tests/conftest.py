"""Shared pytest fixtures."""

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from mlops_assets_tests.worlds import World

# No test may depend on machine speed: Hypothesis' default 200 ms deadline per example (and its too_slow health
# check) fail property tests on a busy shared CI machine (seen: 251 ms at load average 22). Example counts stay as
# each test sets them.
settings.register_profile("mlops", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mlops")


#: What the modules whose tests cost the most took, in seconds (their tests' setup, call and teardown summed, from
#: ``--durations`` of a full ``MLOPS_REQUIRE_SERVICES=1 pytest -n 2`` run on the 2-core CI machine). Only the order of
#: the tests under xdist depends on it (:func:`pytest_collection_modifyitems`); a module missing here counts as cheap.
MODULE_SECONDS = {
    "test_postgres_faults.py": 400,
    "test_demo_and_project.py": 200,
    "test_crash_points.py": 185,
    "test_hostile_input.py": 170,
    "test_serving_server.py": 123,
    "test_own_data.py": 113,
    "test_lifecycle.py": 109,
    "test_registry_jobs.py": 102,
    "test_prod_integration.py": 97,
    "test_ui_browser.py": 87,
    "test_rollout_slow_data_e2e.py": 83,
    "test_unlabelled_versions.py": 48,
    "test_rollout_lifecycle.py": 46,
    "test_registry.py": 43,
    "test_gate_evidence_binding.py": 37,
    "test_drift_false_alarms.py": 35,
    "test_registry_state_machine.py": 35,
}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, order the tests so that each worker's share of ``--dist worksteal`` (``addopts``) costs the same
    and starts with its costly modules; only the order changes, never what runs.

    ``worksteal`` gives each of the N workers a contiguous 1/N of the list and, when one runs dry, moves the not yet
    started half of the longest queue's tail to it. In collection (alphabetical) order the minute-long modules fall
    where they happen to (measured: one worker's half held far more of them). Here the costly modules
    (:data:`MODULE_SECONDS`) are dealt to the N shares largest first, each to the cheapest share so far, a module
    kept whole (its module-scoped fixtures are built once); every other module fills the shares up to their sizes in
    collection order. Each share starts with its costly modules, so what is stolen at the end is sub-second tests.
    Every worker computes the same order (xdist requires identical collections).
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if workers < 2 or not items:
        return
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)

    def cost(name: str) -> int:
        return MODULE_SECONDS.get(name.rsplit("/", 1)[-1], 0)

    # The share sizes worksteal hands out first: len(pending) // workers_remaining, worker by worker.
    sizes, left = [], len(items)
    for remaining in range(workers, 0, -1):
        sizes.append(left // remaining)
        left -= sizes[-1]
    costly: list[list[pytest.Item]] = [[] for _ in range(workers)]
    spent = [0] * workers
    for name in sorted((m for m in modules if cost(m)), key=cost, reverse=True):
        share = min(range(workers), key=lambda i: (spent[i], len(costly[i])))
        costly[share].extend(modules[name])
        spent[share] += cost(name)
    cheap = [item for name, module_items in modules.items() if not cost(name) for item in module_items]
    ordered: list[pytest.Item] = []
    for share in range(workers):
        ordered.extend(costly[share])
        room = max(0, sizes[share] - len(costly[share]))
        ordered.extend(cheap[:room])
        del cheap[:room]
    ordered.extend(cheap)
    assert sorted(map(id, ordered)) == sorted(map(id, items))
    items[:] = ordered


# The local server used in development; CI may point elsewhere.
POSTGRES_ADMIN_URL = os.environ.get(
    "MLOPS_TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session", autouse=True)
def _one_native_thread_per_xdist_worker() -> Iterator[None]:
    """Under pytest-xdist (``-n N`` on N cores) each worker is one of N processes sharing the cores: its native
    thread pools (OpenMP, BLAS) get one thread, in step bodies (``MLOPS_THREADS_PER_STEP``) and in direct calls
    (``threadpool_limits``), as the product's thread budget does for concurrent runs (docs/performance.md: two
    concurrent trainings with the libraries' default threads took 29x longer). Results do not depend on it."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    from threadpoolctl import threadpool_limits

    previous = os.environ.get("MLOPS_THREADS_PER_STEP")
    os.environ["MLOPS_THREADS_PER_STEP"] = "1"
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        if previous is None:
            os.environ.pop("MLOPS_THREADS_PER_STEP", None)
        else:
            os.environ["MLOPS_THREADS_PER_STEP"] = previous


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


def _create_database(admin: sa.Engine, name: str) -> None:
    """CREATE DATABASE ``name``; skips when the server is unreachable, unless ``MLOPS_REQUIRE_SERVICES=1`` (fails)."""
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL not reachable at {sa.make_url(POSTGRES_ADMIN_URL).render_as_string()}: {exc.orig}"
        if _services_required():
            pytest.fail(message)
        pytest.skip(message)


def _drop_database(admin: sa.Engine, name: str) -> None:
    with admin.connect() as conn:
        # FORCE (PostgreSQL 13+) terminates sessions a test forgot to close.
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _fresh_database(prefix: str) -> Iterator[str]:
    """Create a uniquely named database (``<prefix>_<uuid hex>``), yield its URL, drop it afterwards."""
    admin = _postgres_admin_engine()
    name = f"{prefix}_{uuid.uuid4().hex}"
    _create_database(admin, name)
    try:
        yield sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_database(admin, name)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh, uniquely named PostgreSQL database, dropped after the test: for tests that give a whole
    database to Dagster's own storage or to processes (a deployment, the daemon, password handling).

    Skips when the server is unreachable, unless ``MLOPS_REQUIRE_SERVICES=1`` (then the test fails).
    """
    yield from _fresh_database("mlops_test")


@pytest.fixture(scope="session")
def postgres_session_database() -> Iterator[str]:
    """URL of one PostgreSQL database for the test session (one per xdist worker), dropped at its end."""
    yield from _fresh_database("mlops_session")


@pytest.fixture
def postgres_registry_url(postgres_session_database: str) -> Iterator[str]:
    """URL of a fresh schema in the session's database (``search_path`` set by the URL), dropped after the test.

    For registry tests: the registry keeps all its tables, functions and triggers in the schema the connection
    uses, so each test gets an empty registry without paying for a database (CREATE DATABASE copies a template
    and syncs it to disk: ~0.3 s against ~0.05 s for a schema, measured on this machine).
    """
    schema = f"t_{uuid.uuid4().hex}"
    engine = sa.create_engine(postgres_session_database, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield str(
            sa.make_url(postgres_session_database)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


# --- S3 (moto) ------------------------------------------------------------------------------------------------------

#: Fake credentials for the moto server: boto3 needs some, moto accepts any. Never real ones.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on loopback (one per test process), e.g. ``http://127.0.0.1:41234``."""
    server_module = pytest.importorskip("moto.server", reason="moto[server] is a dev dependency")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, object]]:
    """A fresh, uniquely named bucket on the moto server and a boto3 client for it; emptied and deleted afterwards."""
    import boto3

    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = f"mlops-test-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=bucket)
    try:
        yield bucket, client
    finally:
        # A process of the test (a daemon or run worker still shutting down) may write one last object while the bucket
        # is emptied: empty it again until the delete succeeds (BucketNotEmpty), a few times.
        for attempt in range(5):
            for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
                for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    client.delete_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"])
            try:
                client.delete_bucket(Bucket=bucket)
                break
            except client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "BucketNotEmpty" or attempt == 4:
                    raise
                time.sleep(1.0)


@pytest.fixture
def synthetic_spec() -> str:
    """Path of the packaged ``synthetic`` spec, with its default gate policy.

    The latency gate measures the stored artifact's own CPU time, so it needs no allowance for a busy machine
    (two xdist workers, a daemon, webservers and a moto server sharing two cores): every gate keeps its threshold.
    """
    from mlops_assets.ml.spec import packaged_spec_path

    return str(packaged_spec_path("synthetic"))


# --- A trained world (session) --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def promoted_world_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The folder of a world (``mlops_assets_tests/worlds.py``) where the synthetic model's first data version
    (``synthetic_v001.csv``, seed 1, 2,500 rows) went through every gate into Production, and that version's key.

    Built once per test session (per xdist worker) from a clean checkout's point of view (git state patched clean,
    so a rerun of the version reuses its model version as on a release). Never opened by a test: each one gets a
    copy from :func:`promoted_world`.
    """
    from mlops_assets_tests.worlds import build_promoted_world

    root = tmp_path_factory.mktemp("promoted_world")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("mlops_assets.assets.models.git_state", lambda: ("0" * 40, False))
        key = build_promoted_world(root)
    return root, key


@pytest.fixture
def promoted_world(promoted_world_template: tuple[Path, str], tmp_path: Path) -> Iterator[tuple["World", str]]:
    """A private copy of the promoted world in ``tmp_path`` (``tmp_path/data``, ``tmp_path/instance``), opened, and
    the key of its first data version (in Production)."""
    from mlops_assets_tests.worlds import open_world

    template, key = promoted_world_template
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    with open_world(tmp_path) as world:
        yield world, key
