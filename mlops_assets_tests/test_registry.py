"""Tests for the transactional model registry, on SQLite and PostgreSQL."""

import hashlib
import pickle
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlops_assets.ml.artifacts import ArtifactRef
from mlops_assets.ml.registry import (
    ALLOWED_TRANSITIONS,
    STAGES,
    InvalidTransition,
    Lineage,
    ModelRegistry,
    ModelVersion,
    RegistryConflict,
    RegistryError,
    VersionNotFound,
)

MODEL = "flights_delay"


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    # Resolved lazily so that an unreachable server skips only the PostgreSQL half.
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def registry(registry_url: str) -> Iterator[ModelRegistry]:
    with ModelRegistry(registry_url) as reg:
        yield reg


def _ref(key: str | int, hmac: str | None = None) -> ArtifactRef:
    sha = hashlib.sha256(str(key).encode()).hexdigest()
    return ArtifactRef(uri=f"file:///artifacts/{sha[:2]}/{sha}.skops", sha256=sha, size=100 + len(str(key)), hmac=hmac)


def _lineage(*data_versions: str, run_id: str = "run-1") -> Lineage:
    return Lineage(
        data_versions=data_versions or ("2024-01",),
        run_id=run_id,
        code_version="v1",
        git_sha="abc123",
        spec_fingerprint="fp-1",
    )


def _register(reg: ModelRegistry, key: str | int, model: str = MODEL, *data_versions: str) -> ModelVersion:
    return reg.register_version(model, _ref(key), _lineage(*data_versions), {"max_iter": 100}, {"roc_auc": 0.8})


def _move(reg: ModelRegistry, version: int, *stages: str, model: str = MODEL) -> ModelVersion:
    result = reg.get_version(model, version)
    for stage in stages:
        result = reg.transition(model, version, stage, actor="tester", reason=f"to {stage}", evidence={"k": stage})
    return result


def _now_between_transactions() -> datetime:
    # Timestamps have microsecond resolution; keep clear of the neighbouring log rows.
    time.sleep(0.01)
    now = datetime.now(UTC)
    time.sleep(0.01)
    return now


# -- registration ----------------------------------------------------------------------------------


def test_versions_are_numbered_from_one(registry: ModelRegistry) -> None:
    versions = [_register(registry, key).version for key in ("a", "b", "c")]

    assert versions == [1, 2, 3]
    assert [v.version for v in registry.list_versions(MODEL)] == [1, 2, 3]
    assert _register(registry, "x", "other_model").version == 1  # numbering is per model
    assert registry.list_versions("unknown") == []


def test_registered_record_round_trips(registry: ModelRegistry) -> None:
    ref = _ref("a", hmac="f" * 64)
    lineage = _lineage("2024-01", "2024-02", run_id="run-42")
    before = datetime.now(UTC)

    created = registry.register_version(
        MODEL, ref, lineage, {"lr": 0.1, "depth": None}, {"roc_auc": 0.91, "n": 3}, description="first"
    )
    fetched = registry.get_version(MODEL, 1)

    assert fetched == created
    assert fetched.stage == "None"
    assert fetched.artifact == ref
    assert fetched.lineage == lineage
    assert fetched.params == {"lr": 0.1, "depth": None}
    assert fetched.metrics == {"roc_auc": 0.91, "n": 3}
    assert fetched.description == "first"
    assert fetched.created_at.tzinfo is UTC
    assert before <= fetched.created_at <= datetime.now(UTC)
    hash(fetched)  # usable as a set member despite dict fields


def test_registration_is_idempotent_on_artifact_digest(registry: ModelRegistry) -> None:
    first = _register(registry, "a")
    _register(registry, "b")
    again = registry.register_version(MODEL, _ref("a"), _lineage(run_id="rerun"), {}, {}, description="again")

    assert again == first
    assert [v.version for v in registry.list_versions(MODEL)] == [1, 2]
    log = registry.transitions(MODEL)
    assert [(t.version, t.from_stage, t.to_stage, t.reason) for t in log] == [
        (1, None, "None", "registered"),
        (2, None, "None", "registered"),
    ]


def test_versions_for_data_version(registry: ModelRegistry) -> None:
    _register(registry, "a", MODEL, "2024-01")
    _register(registry, "b", MODEL, "2024-01", "2024-02")
    _register(registry, "c", MODEL, "2024-02")

    assert [v.version for v in registry.versions_for_data_version(MODEL, "2024-01")] == [1, 2]
    assert [v.version for v in registry.versions_for_data_version(MODEL, "2024-02")] == [2, 3]
    assert registry.versions_for_data_version(MODEL, "2024") == []  # exact match, not substring


# -- transitions -----------------------------------------------------------------------------------

# A path from a fresh registration to each stage.
_PATH_TO: dict[str, tuple[str, ...]] = {
    "None": (),
    "Staging": ("Staging",),
    "Production": ("Staging", "Production"),
    "Archived": ("Archived",),
}


def test_allowed_and_refused_transitions(registry: ModelRegistry) -> None:
    expected_allowed = {
        ("None", "Staging"),
        ("None", "Archived"),
        ("Staging", "Production"),
        ("Staging", "Archived"),
        ("Production", "Archived"),
        ("Archived", "Staging"),
        ("Archived", "Production"),
    }
    assert expected_allowed == ALLOWED_TRANSITIONS

    for source in STAGES:
        for target in STAGES:
            model = f"m_{source}_{target}"
            _register(registry, f"{source}->{target}", model)
            _move(registry, 1, *_PATH_TO[source], model=model)
            if (source, target) in expected_allowed:
                moved = registry.transition(model, 1, target, actor="t", reason="r", evidence={})
                assert moved.stage == target
            else:
                with pytest.raises(InvalidTransition, match=f"'{model}' v1: transition {source} -> {target}"):
                    registry.transition(model, 1, target, actor="t", reason="r", evidence={})
                assert registry.get_version(model, 1).stage == source  # nothing half-applied
                assert len(registry.transitions(model)) == 1 + len(_PATH_TO[source])


def test_errors_name_model_and_version(registry: ModelRegistry) -> None:
    _register(registry, "a")

    with pytest.raises(VersionNotFound, match=f"'{MODEL}' v7") as not_found:
        registry.transition(MODEL, 7, "Staging", actor="t", reason="r", evidence={})
    assert (not_found.value.model_name, not_found.value.version) == (MODEL, 7)
    with pytest.raises(VersionNotFound, match=f"'{MODEL}' v9"):
        registry.get_version(MODEL, 9)
    with pytest.raises(InvalidTransition, match="unknown stage 'Prod'"):
        registry.transition(MODEL, 1, "Prod", actor="t", reason="r", evidence={})
    with pytest.raises(ValueError, match="actor and reason"):
        registry.transition(MODEL, 1, "Staging", actor="", reason="r", evidence={})


def test_promoting_v2_archives_v1_and_logs_both(registry: ModelRegistry) -> None:
    for key in ("a", "b"):
        _register(registry, key)
    _move(registry, 1, "Staging", "Production")
    _move(registry, 2, "Staging")

    promoted = registry.transition(
        MODEL, 2, "Production", actor="gatekeeper", reason="beats v1", evidence={"roc_auc": [0.8, 0.85]}
    )

    assert promoted.stage == "Production"
    assert registry.get_version(MODEL, 1).stage == "Archived"
    prod = registry.production_version(MODEL)
    assert prod is not None and prod.version == 2
    last_two = registry.transitions(MODEL)[-2:]
    assert [(t.version, t.from_stage, t.to_stage, t.actor, t.reason) for t in last_two] == [
        (1, "Production", "Archived", "gatekeeper", "replaced by v2"),
        (2, "Staging", "Production", "gatekeeper", "beats v1"),
    ]
    assert last_two[0].evidence == {"replaced_by": 2}
    assert last_two[1].evidence == {"roc_auc": [0.8, 0.85]}
    assert last_two[0].at == last_two[1].at  # one transaction
    assert [t.to_stage for t in registry.transitions(MODEL, 1)] == ["None", "Staging", "Production", "Archived"]


def test_rollback_from_archived_replaces_current_production(registry: ModelRegistry) -> None:
    for key in ("a", "b"):
        _register(registry, key)
    _move(registry, 1, "Staging", "Production")
    _move(registry, 2, "Staging", "Production")

    registry.transition(MODEL, 1, "Production", actor="oncall", reason="rollback", evidence={})

    assert [(v.version, v.stage) for v in registry.list_versions(MODEL)] == [(1, "Production"), (2, "Archived")]
    assert registry.transitions(MODEL, 2)[-1].reason == "replaced by v1"


def test_repeated_promotion_of_production_version_is_invalid(registry: ModelRegistry) -> None:
    _register(registry, "a")
    _move(registry, 1, "Staging", "Production")

    with pytest.raises(InvalidTransition, match="Production -> Production"):
        registry.transition(MODEL, 1, "Production", actor="t", reason="r", evidence={})


def test_production_at_answers_from_the_log(registry: ModelRegistry) -> None:
    for key in ("a", "b"):
        _register(registry, key)
    _move(registry, 1, "Staging")
    _move(registry, 2, "Staging")
    before = _now_between_transactions()
    registry.transition(MODEL, 1, "Production", actor="t", reason="r", evidence={})
    during_v1 = _now_between_transactions()
    registry.transition(MODEL, 2, "Production", actor="t", reason="r", evidence={})
    during_v2 = _now_between_transactions()
    registry.transition(MODEL, 2, "Archived", actor="t", reason="retired", evidence={})
    after = _now_between_transactions()

    assert registry.production_at(MODEL, before) is None
    assert registry.production_at(MODEL, during_v1) == 1
    assert registry.production_at(MODEL, during_v2) == 2
    assert registry.production_at(MODEL, after) is None
    promotion_of_v2 = registry.transitions(MODEL, 2)[-2]
    assert registry.production_at(MODEL, promotion_of_v2.at) == 2  # inclusive at the instant
    assert registry.production_at("unknown", after) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        registry.production_at(MODEL, datetime.now())  # naive on purpose


# -- database-enforced invariants -----------------------------------------------------------------


def test_database_refuses_a_second_production_written_directly(registry: ModelRegistry) -> None:
    for key in ("a", "b"):
        _register(registry, key)
    _move(registry, 1, "Staging", "Production")

    with pytest.raises(sa.exc.IntegrityError), registry.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE model_versions SET stage = 'Production' WHERE model_name = :m AND version = 2"),
            {"m": MODEL},
        )
    # Other models are unaffected by the index.
    _register(registry, "c", "other_model")
    _move(registry, 1, "Staging", "Production", model="other_model")
    assert [v.stage for v in registry.list_versions(MODEL)] == ["Production", "None"]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE stage_transitions SET reason = 'rewritten'",
        "UPDATE stage_transitions SET to_stage = 'Production' WHERE to_stage = 'None'",
        "DELETE FROM stage_transitions",
        "DELETE FROM model_versions",
        "UPDATE model_versions SET metrics = '{}'",
        "UPDATE model_versions SET artifact_sha256 = 'x', stage = 'Archived'",
    ],
)
def test_history_is_immutable_in_the_database(registry: ModelRegistry, statement: str) -> None:
    _register(registry, "a")
    _move(registry, 1, "Staging")
    log_before = registry.transitions(MODEL)
    version_before = registry.get_version(MODEL, 1)

    with pytest.raises(sa.exc.IntegrityError, match="refused"), registry.engine.begin() as conn:
        conn.exec_driver_sql(statement)

    assert registry.transitions(MODEL) == log_before
    assert registry.get_version(MODEL, 1) == version_before


def test_truncate_of_history_is_refused_on_postgresql(postgres_url: str) -> None:
    # Row triggers do not fire on TRUNCATE (and SQLite has no TRUNCATE).
    with ModelRegistry(postgres_url) as registry:
        _register(registry, "a")

        for table in ("stage_transitions", "model_versions CASCADE"):
            with pytest.raises(sa.exc.IntegrityError, match="TRUNCATE refused"), registry.engine.begin() as conn:
                conn.exec_driver_sql(f"TRUNCATE {table}")
        assert len(registry.transitions(MODEL)) == 1


def test_stage_may_still_change_in_sql(registry: ModelRegistry) -> None:
    # The immutability trigger covers every column but stage (which the index and checks guard).
    _register(registry, "a")
    with registry.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE model_versions SET stage = 'Staging'")
    assert registry.get_version(MODEL, 1).stage == "Staging"
    with pytest.raises(sa.exc.IntegrityError), registry.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE model_versions SET stage = 'Live'")


# -- concurrency -----------------------------------------------------------------------------------


def _run_threads(n: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung"


def test_concurrent_first_use_and_registration(registry_url: str) -> None:
    # Eight "processes" (own registry, own pool) hit a brand-new database at once: schema creation
    # must not race, and version numbers must come out 1..8 without gaps or duplicates.
    barrier = threading.Barrier(8)
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        with ModelRegistry(registry_url) as reg:
            barrier.wait()
            try:
                results[i] = _register(reg, f"artifact-{i}").version
            except BaseException as exc:
                errors.append(exc)

    _run_threads(8, work)

    assert errors == []
    assert sorted(results.values()) == list(range(1, 9))


def test_concurrent_promotions_never_leave_two_in_production(registry_url: str) -> None:
    """Eight threads promote eight different Staging versions at once.

    Semantics: promotions of one model are serialised, and a promotion replacing a Production version
    is legal, so every promotion may succeed in some order, each archiving its predecessor. A thread
    may instead get RegistryConflict (database refusal); nothing else is acceptable. Invariants:
    never two Production versions at any observation, exactly one at the end, and the log pairs every
    promotion with the archive of the previous Production version.
    """
    n = 8
    with ModelRegistry(registry_url) as setup:
        for i in range(n):
            _register(setup, f"candidate-{i}")
            _move(setup, i + 1, "Staging", model=MODEL)

    barrier = threading.Barrier(n + 1)
    done = threading.Event()
    outcomes: dict[int, str] = {}
    observations: list[int] = []

    def promote(i: int) -> None:
        with ModelRegistry(registry_url) as reg:
            barrier.wait()
            try:
                reg.transition(MODEL, i + 1, "Production", actor=f"worker-{i}", reason="race", evidence={"i": i})
                outcomes[i] = "ok"
            except RegistryConflict:
                outcomes[i] = "conflict"
            except BaseException as exc:
                outcomes[i] = f"unexpected {exc!r}"

    def observe() -> None:
        with ModelRegistry(registry_url) as reg:
            barrier.wait()
            query = sa.text("SELECT count(*) FROM model_versions WHERE model_name = :m AND stage = 'Production'")
            while not done.is_set():
                with reg.engine.connect() as conn:
                    observations.append(int(conn.execute(query, {"m": MODEL}).scalar_one()))

    observer = threading.Thread(target=observe)
    observer.start()
    _run_threads(n, promote)
    done.set()
    observer.join(timeout=60)

    assert all(o in {"ok", "conflict"} for o in outcomes.values()), outcomes
    assert len(outcomes) == n
    assert observations and max(observations) <= 1

    with ModelRegistry(registry_url) as reg:
        versions = reg.list_versions(MODEL)
        production = [v.version for v in versions if v.stage == "Production"]
        assert len(production) == 1
        winners = {i + 1 for i, o in outcomes.items() if o == "ok"}
        assert production[0] in winners
        losers = {i + 1 for i, o in outcomes.items() if o == "conflict"}
        assert all(v.stage == "Staging" for v in versions if v.version in losers)

        # Replay the log: each promotion is immediately preceded by the archive of the previous holder.
        log = [t for t in reg.transitions(MODEL) if "Production" in (t.from_stage, t.to_stage)]
        holder: int | None = None
        promoted: list[int] = []
        for prev, row in zip([None, *log[:-1]], log, strict=True):
            if row.to_stage == "Production":
                if holder is not None:
                    assert prev is not None
                    assert (prev.version, prev.from_stage, prev.to_stage) == (holder, "Production", "Archived")
                    assert prev.reason == f"replaced by v{row.version}"
                    assert prev.at == row.at
                holder = row.version
                promoted.append(row.version)
            else:
                assert row.version == holder and row.from_stage == "Production"
                holder = None
        assert set(promoted) == winners
        assert holder == production[0]
        assert reg.production_at(MODEL, datetime.now(UTC)) == production[0]


@contextmanager
def _hold_write_lock(url: str) -> Iterator[None]:
    """Hold what a registry writer needs, from another connection, as a stuck writer elsewhere would."""
    db = sa.make_url(url)
    if db.get_backend_name() == "sqlite":
        conn = sqlite3.connect(db.database or "", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
    else:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.begin() as pg:
            pg.exec_driver_sql("LOCK TABLE model_versions IN ACCESS EXCLUSIVE MODE")
            yield
        engine.dispose()


def test_lock_timeout_becomes_registry_conflict(registry_url: str) -> None:
    with ModelRegistry(registry_url, lock_timeout_s=0.3) as reg:
        _register(reg, "a")
        hold: AbstractContextManager[None] = _hold_write_lock(registry_url)
        with hold, pytest.raises(RegistryConflict, match=f"'{MODEL}' v1") as info:
            reg.transition(MODEL, 1, "Staging", actor="t", reason="r", evidence={})
        assert (info.value.model_name, info.value.version) == (MODEL, 1)
        assert reg.get_version(MODEL, 1).stage == "None"
        assert reg.transition(MODEL, 1, "Staging", actor="t", reason="r", evidence={}).stage == "Staging"


# -- misc ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "mysql://u@h/db"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        ModelRegistry(url)


def test_registry_errors_survive_pickling() -> None:
    error = RegistryConflict("lost", model_name=MODEL, version=3)
    clone = pickle.loads(pickle.dumps(error))
    assert isinstance(clone, RegistryError)
    assert (str(clone), clone.model_name, clone.version) == ("lost", MODEL, 3)


def test_lineage_normalises_data_versions_to_tuple() -> None:
    lineage = Lineage(data_versions=["a", "b"], run_id="r", code_version="c", git_sha="g", spec_fingerprint="f")  # type: ignore[arg-type]
    assert lineage.data_versions == ("a", "b")
    with pytest.raises(TypeError):
        Lineage(data_versions="ab", run_id="r", code_version="c", git_sha="g", spec_fingerprint="f")  # type: ignore[arg-type]
