"""Tests for the transactional model registry, on SQLite and PostgreSQL."""

import hashlib
import multiprocessing
import pickle
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mlops_assets.ml.rollout import GuardCheck, GuardResult, GuardStatus, Phase, advance, new_rollout, start
from mlops_assets.storage.artifacts.store import ArtifactRef
from mlops_assets.storage.registry import (
    ALLOWED_TRANSITIONS,
    CHALLENGER,
    CHAMPION,
    STAGES,
    AliasNotFound,
    ApprovalPolicy,
    ApprovalRequired,
    FourEyesViolation,
    InvalidAlias,
    InvalidTransition,
    Lineage,
    ModelRegistry,
    ModelVersion,
    NothingToRollBack,
    RegistryConflict,
    RegistryError,
    VersionMarkedBad,
    VersionNotFound,
)

pytestmark = pytest.mark.core

MODEL = "flights_delay"


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    # Resolved lazily so that an unreachable server skips only the PostgreSQL half.
    url: str = request.getfixturevalue("postgres_registry_url")
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
        package_version="v1",
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


def test_registration_with_a_known_training_fingerprint_returns_that_version(registry: ModelRegistry) -> None:
    # skops archives are not byte-reproducible: a rerun of the same training stores a different artifact.
    first = registry.register_version(MODEL, _ref("a"), _lineage(), {"k": 1}, {}, fingerprint="fp-a")
    other = registry.register_version(MODEL, _ref("b"), _lineage(), {}, {}, fingerprint="fp-b")
    again = registry.register_version(MODEL, _ref("a2"), _lineage(run_id="rerun"), {}, {}, fingerprint="fp-a")

    assert again == first and again.artifact_sha256 == _ref("a").sha256
    assert first.params["training_fingerprint"] == "fp-a" and other.version == 2
    assert [v.version for v in registry.list_versions(MODEL)] == [1, 2]
    with pytest.raises(ValueError, match="fingerprint differs"):
        registry.register_version(MODEL, _ref("c"), _lineage(), {"training_fingerprint": "x"}, {}, fingerprint="y")


def _register_same_training(url: str, i: int, barrier: Any, results: Any) -> None:
    """One of N processes registering the same training (fingerprint ``fp``) with its own artifact at once."""
    try:
        with ModelRegistry(url) as reg:
            reg.list_versions(MODEL)
            barrier.wait(timeout=120)
            version = reg.register_version(
                MODEL, _ref(f"run-{i}"), _lineage(run_id=f"run-{i}"), {}, {}, fingerprint="fp"
            )
        results.put((i, version.version))
    except BaseException as exc:
        results.put((i, f"unexpected {exc!r}"))


@pytest.mark.e2e
def test_concurrent_registrations_of_one_training_give_exactly_one_version(registry_url: str) -> None:
    """Two runs of one data version (or a retrain beside a landing run) registering the same training at the same
    moment, from separate interpreters: the fingerprint lookup and the insert share the model's write lock."""
    from mlops_assets_tests import reliability

    n = 4
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    workers = [ctx.Process(target=_register_same_training, args=(registry_url, i, barrier, results)) for i in range(n)]
    for process in workers:
        process.start()
    try:
        got = dict(results.get(timeout=180) for _ in range(n))
    finally:
        for process in workers:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert set(got.values()) == {1}, got
    with ModelRegistry(registry_url) as reg:
        rows = reg.list_versions(MODEL)
        registrations = [t for t in reg.transitions(MODEL) if t.reason == "registered"]
    assert len(rows) == 1 and len(registrations) == 1
    backend = sa.make_url(registry_url).get_backend_name()
    reliability.record(
        2,
        f"register.same_training.{backend}",
        f"{n} processes register the same training with different artifacts at once ({backend})",
        processes=n,
        registry_rows=len(rows),
        registration_log_rows=len(registrations),
        versions_returned=sorted(set(got.values())),
    )


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


def test_truncate_of_history_is_refused_on_postgresql(postgres_registry_url: str) -> None:
    # Row triggers do not fire on TRUNCATE (and SQLite has no TRUNCATE).
    with ModelRegistry(postgres_registry_url) as registry:
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
    lineage = Lineage(data_versions=["a", "b"], run_id="r", package_version="c", git_sha="g", spec_fingerprint="f")  # type: ignore[arg-type]
    assert lineage.data_versions == ("a", "b")
    with pytest.raises(TypeError):
        Lineage(data_versions="ab", run_id="r", package_version="c", git_sha="g", spec_fingerprint="f")  # type: ignore[arg-type]


# -- invariants shared with the state-machine test ------------------------------------------------


def check_registry_invariants(reg: ModelRegistry, model: str) -> None:
    """Assert what must hold after any sequence of registry operations on ``model``.

    * at most one Production version, and ``champion`` names it (absent when there is none);
    * the stage log replays to the current stages: per version, the rows chain (each ``from_stage``
      is the previous ``to_stage``), start with the registration, end at the current stage, and the
      replay never has two versions in Production at once;
    * the alias log replays to the current aliases the same way.
    """
    versions = {v.version: v.stage for v in reg.list_versions(model)}
    production = [v for v, stage in versions.items() if stage == "Production"]
    assert len(production) <= 1, versions
    aliases = reg.aliases(model)
    assert aliases.get(CHAMPION) == (production[0] if production else None), (aliases, versions)
    champion = reg.get_alias(model, CHAMPION)
    assert (champion.version if champion else None) == (production[0] if production else None)

    replayed: dict[int, str] = {}
    for row in reg.transitions(model):
        assert row.from_stage == replayed.get(row.version), row
        replayed[row.version] = row.to_stage
        assert sum(1 for stage in replayed.values() if stage == "Production") <= 1, row
    assert replayed == versions

    replayed_aliases: dict[str, int] = {}
    for change in reg.alias_history(model):
        assert change.from_version == replayed_aliases.get(change.alias), change
        if change.to_version is None:
            del replayed_aliases[change.alias]
        else:
            replayed_aliases[change.alias] = change.to_version
    assert replayed_aliases == aliases


def _staged(reg: ModelRegistry, n: int, model: str = MODEL) -> None:
    for i in range(n):
        _register(reg, f"{model}-{i}", model)
        _move(reg, i + 1, "Staging", model=model)


def _promote(reg: ModelRegistry, version: int, model: str = MODEL) -> ModelVersion:
    return reg.transition(model, version, "Production", actor="deployer", reason=f"ship v{version}", evidence={})


# -- aliases ---------------------------------------------------------------------------------------


def test_promotion_points_champion_at_production(registry: ModelRegistry) -> None:
    _staged(registry, 2)
    assert registry.aliases(MODEL) == {}

    _promote(registry, 1)
    assert registry.aliases(MODEL) == {CHAMPION: 1}
    _promote(registry, 2)
    champion = registry.get_alias(MODEL, CHAMPION)
    assert champion is not None and (champion.version, champion.stage) == (2, "Production")

    log = registry.alias_history(MODEL)
    assert [(c.alias, c.from_version, c.to_version, c.actor, c.reason) for c in log] == [
        (CHAMPION, None, 1, "deployer", "ship v1"),
        (CHAMPION, 1, 2, "deployer", "ship v2"),
    ]
    # Same transaction as the stage change: same timestamp as the promotion's log row.
    assert log[-1].at == registry.transitions(MODEL, 2)[-1].at
    check_registry_invariants(registry, MODEL)


def test_retiring_production_removes_champion(registry: ModelRegistry) -> None:
    _staged(registry, 1)
    _promote(registry, 1)

    registry.transition(MODEL, 1, "Archived", actor="oncall", reason="model retired", evidence={})

    assert registry.aliases(MODEL) == {}
    assert registry.get_alias(MODEL, CHAMPION) is None
    last = registry.alias_history(MODEL)[-1]
    assert (last.alias, last.from_version, last.to_version, last.reason) == (CHAMPION, 1, None, "model retired")
    check_registry_invariants(registry, MODEL)


def test_set_get_delete_aliases_are_logged(registry: ModelRegistry) -> None:
    _staged(registry, 3)
    _promote(registry, 1)

    registry.set_alias(MODEL, CHALLENGER, 2, actor="alice", reason="canary candidate")
    registry.set_alias(MODEL, "baseline-2024_q1", 1, actor="alice", reason="reference")
    registry.set_alias(MODEL, CHALLENGER, 3, actor="bob", reason="better candidate")
    registry.set_alias(MODEL, CHALLENGER, 3, actor="bob", reason="again")  # no-op, not logged
    assert registry.aliases(MODEL) == {CHAMPION: 1, CHALLENGER: 3, "baseline-2024_q1": 1}
    challenger = registry.get_alias(MODEL, CHALLENGER)
    assert challenger is not None and challenger.version == 3
    assert registry.get_alias(MODEL, "nope") is None
    assert registry.get_alias("other_model", CHAMPION) is None

    assert registry.delete_alias(MODEL, "baseline-2024_q1", actor="alice", reason="obsolete") == 1
    assert registry.delete_alias(MODEL, "baseline-2024_q1", actor="alice", reason="twice") is None

    assert [(c.alias, c.from_version, c.to_version, c.actor) for c in registry.alias_history(MODEL)[1:]] == [
        (CHALLENGER, None, 2, "alice"),
        ("baseline-2024_q1", None, 1, "alice"),
        (CHALLENGER, 2, 3, "bob"),
        ("baseline-2024_q1", 1, None, "alice"),
    ]
    assert [c.to_version for c in registry.alias_history(MODEL, CHALLENGER)] == [2, 3]
    check_registry_invariants(registry, MODEL)


@pytest.mark.parametrize("alias", ["", "Champion", "1st", "has space", "a" * 65, "ünïcode", "-x"])
def test_malformed_alias_names_are_refused(registry: ModelRegistry, alias: str) -> None:
    _staged(registry, 1)
    with pytest.raises(InvalidAlias, match="must match"):
        registry.set_alias(MODEL, alias, 1, actor="a", reason="r")
    assert registry.aliases(MODEL) == {}


def test_champion_is_managed_and_challenger_is_not_the_champion(registry: ModelRegistry) -> None:
    _staged(registry, 2)
    _promote(registry, 1)

    with pytest.raises(InvalidAlias, match="always names the Production version"):
        registry.set_alias(MODEL, CHAMPION, 2, actor="a", reason="r")
    registry.set_alias(MODEL, CHAMPION, 1, actor="a", reason="r")  # already true: accepted, nothing logged
    with pytest.raises(InvalidAlias, match="goes away only when Production is archived"):
        registry.delete_alias(MODEL, CHAMPION, actor="a", reason="r")
    with pytest.raises(InvalidAlias, match="cannot be the 'challenger'"):
        registry.set_alias(MODEL, CHALLENGER, 1, actor="a", reason="r")
    with pytest.raises(VersionNotFound):
        registry.set_alias(MODEL, "x", 9, actor="a", reason="r")
    with pytest.raises(ValueError, match="actor and reason"):
        registry.set_alias(MODEL, "x", 2, actor="a", reason="")

    assert registry.aliases(MODEL) == {CHAMPION: 1}
    assert len(registry.alias_history(MODEL)) == 1


def test_promoting_the_challenger_is_one_switch(registry: ModelRegistry) -> None:
    _staged(registry, 2)
    _promote(registry, 1)
    registry.set_alias(MODEL, CHALLENGER, 2, actor="rollout", reason="canary")

    with pytest.raises(RegistryConflict, match="now names v2, not v7"):
        registry.promote_challenger(MODEL, actor="rollout", reason="won", evidence={}, expected_version=7)
    promoted = registry.promote_challenger(
        MODEL, actor="rollout", reason="canary passed", evidence={"share": 1.0}, expected_version=2
    )

    assert (promoted.version, promoted.stage) == (2, "Production")
    assert registry.get_version(MODEL, 1).stage == "Archived"
    assert registry.aliases(MODEL) == {CHAMPION: 2}  # the challenger became the champion
    changes = registry.alias_history(MODEL)[-2:]
    assert [(c.alias, c.from_version, c.to_version) for c in changes] == [(CHAMPION, 1, 2), (CHALLENGER, 2, None)]
    stage_rows = registry.transitions(MODEL)[-2:]
    assert {c.at for c in changes} == {r.at for r in stage_rows}  # all in one transaction
    assert stage_rows[-1].evidence == {"share": 1.0}
    with pytest.raises(AliasNotFound, match="no 'challenger'"):
        registry.promote_challenger(MODEL, actor="rollout", reason="again", evidence={})
    check_registry_invariants(registry, MODEL)


def test_rollout_state_machine_drives_the_registry(registry: ModelRegistry) -> None:
    # The rollout decides (pure); the caller applies the final switch as one registry transaction.
    _staged(registry, 2)
    _promote(registry, 1)
    registry.set_alias(MODEL, CHALLENGER, 2, actor="rollout", reason="rollout started")
    passing = (GuardCheck("agreement", GuardStatus.PASS, 0.99, 0.95, "ok"),)
    t0 = datetime(2024, 6, 1, tzinfo=UTC)
    state = start(new_rollout(MODEL, 1, 2), t0)
    state = advance(state, GuardResult("shadow", 5000, 1000, passing), t0 + timedelta(hours=1))
    for hour in range(2, 6):
        state = advance(state, GuardResult("canary", 5000, 1000, passing), t0 + timedelta(hours=hour))
        assert registry.production_version(MODEL) == registry.get_version(MODEL, 1)  # nothing moves until the end
    assert state.phase is Phase.PROMOTED

    action = state.history[-1].evidence["registry_action"]
    registry.promote_challenger(
        MODEL,
        actor="rollout",
        reason=state.history[-1].reason,
        evidence=state.history[-1].evidence,
        expected_version=action["promote_challenger"],
    )

    assert registry.aliases(MODEL) == {CHAMPION: 2}
    assert registry.transitions(MODEL)[-1].evidence["guards"]["status"] == "pass"
    check_registry_invariants(registry, MODEL)


def _failing_canary() -> GuardResult:
    return GuardResult("canary", 5000, 1000, (GuardCheck("auc_drop", GuardStatus.FAIL, 0.03, 0.01, "AUC drop"),))


def test_persisted_rollout_promotes_in_the_same_transaction_as_its_last_move(registry: ModelRegistry) -> None:
    _staged(registry, 2)
    _promote(registry, 1)
    passing = (GuardCheck("agreement", GuardStatus.PASS, 0.99, 0.95, "ok"),)
    t0 = datetime.now(UTC)
    four_steps = new_rollout(MODEL, 1, 2, canary_steps=(0.05, 0.25, 0.50, 1.00))
    state = registry.start_rollout(start(four_steps, t0), actor="rollout", reason="gates passed")
    assert registry.aliases(MODEL) == {CHAMPION: 1, CHALLENGER: 2}
    assert registry.active_rollout(MODEL) == state
    shadowed = advance(state, GuardResult("shadow", 5000, 1000, passing), t0 + timedelta(seconds=1))
    stored = registry.update_rollout(state, shadowed, actor="rollout")
    with pytest.raises(RegistryConflict, match="moved since it was read"):
        registry.update_rollout(state, shadowed, actor="rollout")  # a stale writer loses
    for i in range(4):
        moved = advance(stored, GuardResult("canary", 5000, 1000, passing), t0 + timedelta(seconds=2 + i))
        assert registry.production_version(MODEL).version == 1
        stored = registry.update_rollout(stored, moved, actor="rollout")
    assert stored.phase is Phase.PROMOTED
    assert registry.production_version(MODEL).version == 2
    assert registry.active_rollout(MODEL) is None
    assert registry.get_rollout(MODEL) == stored
    moves = registry.rollout_log(MODEL)
    assert [(m["to_phase"], m["to_share"]) for m in moves] == [
        ("shadow", 0.0),
        ("canary", 0.05),
        ("canary", 0.25),
        ("canary", 0.5),
        ("canary", 1.0),
        ("promoted", 1.0),
    ]
    promotion = registry.transitions(MODEL, 2)[-1]
    assert promotion.to_stage == "Production" and promotion.reason.startswith("rollout complete")
    kinds = [e["kind"] for e in registry.audit_log(MODEL)]
    assert kinds.count("rollout") == 6 and "stage" in kinds and "alias" in kinds
    with pytest.raises(sa.exc.IntegrityError), registry.engine.begin() as conn:  # the rollout log is append-only
        conn.exec_driver_sql("DELETE FROM rollout_log")
    check_registry_invariants(registry, MODEL)


def test_failed_canary_guard_archives_the_challenger_and_keeps_production(registry: ModelRegistry) -> None:
    _staged(registry, 2)
    _promote(registry, 1)
    t0 = datetime.now(UTC)
    state = registry.start_rollout(start(new_rollout(MODEL, 1, 2), t0, shadow=False), actor="rollout", reason="go")
    failed = advance(state, _failing_canary(), t0 + timedelta(seconds=1))
    registry.update_rollout(state, failed, actor="rollout")
    assert failed.phase is Phase.ROLLED_BACK
    assert registry.production_version(MODEL).version == 1
    assert registry.get_version(MODEL, 2).stage == "Archived"
    assert registry.aliases(MODEL) == {CHAMPION: 1}
    assert registry.active_rollout(MODEL) is None
    check_registry_invariants(registry, MODEL)


def test_one_active_rollout_per_model_unless_superseded(registry: ModelRegistry) -> None:
    _staged(registry, 3)
    _promote(registry, 1)
    t0 = datetime.now(UTC)
    registry.start_rollout(start(new_rollout(MODEL, 1, 2), t0), actor="rollout", reason="v2")
    with pytest.raises(RegistryConflict, match="already being rolled out"):
        registry.start_rollout(start(new_rollout(MODEL, 1, 3), t0), actor="rollout", reason="v3")
    third = registry.start_rollout(start(new_rollout(MODEL, 1, 3), t0), actor="rollout", reason="v3", supersede=True)
    assert registry.active_rollout(MODEL) == third
    assert registry.get_version(MODEL, 2).stage == "Archived"
    assert registry.aliases(MODEL) == {CHAMPION: 1, CHALLENGER: 3}
    with pytest.raises(RegistryConflict, match="planned against production v2"):
        registry.start_rollout(start(new_rollout(MODEL, 2, 3), t0), actor="rollout", reason="wrong", supersede=True)
    check_registry_invariants(registry, MODEL)


def test_changing_production_by_hand_ends_the_rollout_in_progress(registry: ModelRegistry) -> None:
    _staged(registry, 3)
    _promote(registry, 1)
    t0 = datetime.now(UTC)
    registry.start_rollout(start(new_rollout(MODEL, 1, 2), t0), actor="rollout", reason="v2")
    _promote(registry, 2)  # the operator ships the challenger: the rollout is complete
    assert registry.active_rollout(MODEL) is None
    assert registry.get_rollout(MODEL).phase is Phase.PROMOTED
    registry.start_rollout(start(new_rollout(MODEL, 2, 3), t0), actor="rollout", reason="v3")
    registry.rollback(MODEL, actor="oncall", reason="incident")  # production moves to v1: v3's comparison is void
    ended = registry.get_rollout(MODEL)
    assert ended.phase is Phase.ROLLED_BACK and "outside the rollout" in ended.history[-1].reason
    assert registry.get_version(MODEL, 3).stage == "Archived"
    assert registry.aliases(MODEL) == {CHAMPION: 1}
    check_registry_invariants(registry, MODEL)


# -- approvals -------------------------------------------------------------------------------------


def test_promotion_without_required_approval_is_refused_then_allowed(registry: ModelRegistry) -> None:
    _staged(registry, 2)
    assert registry.policy(MODEL) == ApprovalPolicy()
    policy = registry.set_policy(MODEL, require_approval_for_production=True, actor="admin", reason="SOX")
    assert policy == ApprovalPolicy(require_approval_for_production=True, four_eyes=False)
    assert registry.policy("other_model") == ApprovalPolicy()  # per model

    with pytest.raises(ApprovalRequired, match=f"'{MODEL}' v1: the model's policy requires an approval") as info:
        _promote(registry, 1)
    assert isinstance(info.value, RegistryError) and info.value.version == 1
    assert registry.get_version(MODEL, 1).stage == "Staging"
    assert len(registry.transitions(MODEL)) == 4 and registry.aliases(MODEL) == {}

    # Approvals of another version, or for another stage, do not count.
    registry.approve(MODEL, 2, approver="carol", comment="v2 looks fine")
    registry.approve(MODEL, 1, approver="carol", stage="Staging", comment="staging only")
    with pytest.raises(ApprovalRequired):
        _promote(registry, 1)

    approval = registry.approve(MODEL, 1, approver="carol", comment="reviewed the eval report")
    assert (approval.model_name, approval.version, approval.stage, approval.approver) == (
        MODEL,
        1,
        "Production",
        "carol",
    )
    assert _promote(registry, 1).stage == "Production"
    assert registry.aliases(MODEL) == {CHAMPION: 1}
    assert [a.approver for a in registry.approvals(MODEL, 1)] == ["carol", "carol"]
    assert [a.version for a in registry.approvals(MODEL)] == [2, 1, 1]

    registry.set_policy(MODEL, require_approval_for_production=False, actor="admin", reason="relaxed")
    assert registry.policy(MODEL) == ApprovalPolicy()


def test_four_eyes_forbids_approving_your_own_version(registry: ModelRegistry) -> None:
    registry.register_version(MODEL, _ref("a"), _lineage(), {}, {}, actor="alice")
    _move(registry, 1, "Staging")
    # An approval by the registrant given before four-eyes was switched on does not count afterwards.
    registry.approve(MODEL, 1, approver="alice", comment="self-approved")
    registry.set_policy(MODEL, require_approval_for_production=True, four_eyes=True, actor="admin", reason="audit")

    with pytest.raises(FourEyesViolation, match="'alice' registered this version"):
        registry.approve(MODEL, 1, approver="alice", comment="again")
    with pytest.raises(ApprovalRequired, match="other than its registrant 'alice'"):
        _promote(registry, 1)

    registry.approve(MODEL, 1, approver="bob", comment="second pair of eyes")
    assert _promote(registry, 1).stage == "Production"


def test_approval_input_errors(registry: ModelRegistry) -> None:
    _staged(registry, 1)
    with pytest.raises(VersionNotFound):
        registry.approve(MODEL, 5, approver="a", comment="")
    with pytest.raises(ValueError, match="stage must be one of"):
        registry.approve(MODEL, 1, approver="a", stage="Archived", comment="")
    with pytest.raises(ValueError, match="approver is required"):
        registry.approve(MODEL, 1, approver="", comment="")
    assert registry.approvals(MODEL) == []


# -- rollback --------------------------------------------------------------------------------------


def test_rollback_drill(registry: ModelRegistry) -> None:
    _staged(registry, 2)
    _promote(registry, 1)
    _promote(registry, 2)
    before = _now_between_transactions()

    restored = registry.rollback(MODEL, actor="oncall", reason="INC-42 error spike", evidence={"ticket": "INC-42"})

    assert (restored.version, restored.stage) == (1, "Production")
    assert registry.get_version(MODEL, 2).stage == "Archived"
    assert registry.aliases(MODEL) == {CHAMPION: 1}
    archived, promoted = registry.transitions(MODEL)[-2:]
    assert (archived.version, archived.from_stage, archived.to_stage) == (2, "Production", "Archived")
    assert archived.reason == "rolled back to v1: INC-42 error spike"
    assert (promoted.version, promoted.from_stage, promoted.to_stage) == (1, "Archived", "Production")
    assert promoted.reason == "rollback from v2: INC-42 error spike"
    assert archived.evidence == promoted.evidence == {"ticket": "INC-42", "rollback": {"from": 2, "to": 1}}
    assert archived.at == promoted.at == registry.alias_history(MODEL)[-1].at  # one transaction
    assert registry.bad_versions(MODEL) == {2: "rolled back: INC-42 error spike"}
    assert registry.production_at(MODEL, before) == 2
    assert registry.production_at(MODEL, datetime.now(UTC)) == 1
    check_registry_invariants(registry, MODEL)

    # v2 is bad and v1 is current: nothing further back to go to.
    with pytest.raises(NothingToRollBack, match="v1: no earlier known-good Production version"):
        registry.rollback(MODEL, actor="oncall", reason="again")
    assert registry.production_version(MODEL) == restored


def test_rollback_with_nothing_before_is_a_clear_error(registry: ModelRegistry) -> None:
    with pytest.raises(NothingToRollBack, match="no Production version to roll back from"):
        registry.rollback(MODEL, actor="oncall", reason="r")
    _staged(registry, 2)
    with pytest.raises(NothingToRollBack, match="no Production version"):
        registry.rollback(MODEL, actor="oncall", reason="r")
    _promote(registry, 1)
    log_before = registry.transitions(MODEL)

    with pytest.raises(NothingToRollBack, match="v1: no earlier known-good") as info:
        registry.rollback(MODEL, actor="oncall", reason="r")

    assert (info.value.model_name, info.value.version) == (MODEL, 1)
    assert registry.transitions(MODEL) == log_before
    assert registry.bad_versions(MODEL) == {}  # a refused rollback marks nothing


def test_rollback_steps_back_one_known_good_version_at_a_time(registry: ModelRegistry) -> None:
    _staged(registry, 4)
    for version in (1, 2, 3, 4):
        _promote(registry, version)
    registry.mark_bad(MODEL, 3, actor="analyst", reason="leaks the label")

    assert registry.rollback(MODEL, actor="oncall", reason="first").version == 2  # skips bad v3
    assert registry.rollback(MODEL, actor="oncall", reason="second").version == 1  # skips v4 (rolled back)
    assert registry.bad_versions(MODEL).keys() == {2, 3, 4}
    check_registry_invariants(registry, MODEL)


def test_rollback_target_is_the_previous_holder_not_the_previous_number(registry: ModelRegistry) -> None:
    _staged(registry, 3)
    _promote(registry, 3)
    _promote(registry, 1)
    registry.transition(MODEL, 3, "Production", actor="oncall", reason="manual swap back", evidence={})

    # Promotion history v3, v1, v3: the version before the current v3 is v1.
    assert registry.rollback(MODEL, actor="oncall", reason="r").version == 1


def test_bad_versions_cannot_be_promoted_until_cleared(registry: ModelRegistry) -> None:
    _staged(registry, 2)
    _promote(registry, 1)
    registry.mark_bad(MODEL, 2, actor="analyst", reason="skewed features")

    with pytest.raises(VersionMarkedBad, match="v2 is marked bad \\(skewed features\\)") as info:
        _promote(registry, 2)
    assert isinstance(info.value, InvalidTransition)
    registry.set_alias(MODEL, CHALLENGER, 2, actor="a", reason="r")
    with pytest.raises(VersionMarkedBad):
        registry.promote_challenger(MODEL, actor="a", reason="r", evidence={})
    assert registry.production_version(MODEL) == registry.get_version(MODEL, 1)

    registry.clear_bad(MODEL, 2, actor="analyst", reason="false alarm")
    assert registry.bad_versions(MODEL) == {}
    assert _promote(registry, 2).stage == "Production"
    with pytest.raises(VersionNotFound):
        registry.mark_bad(MODEL, 9, actor="a", reason="r")


def test_history_is_the_stage_log(registry: ModelRegistry) -> None:
    _staged(registry, 1)
    assert registry.history(MODEL) == registry.transitions(MODEL)
    assert [t.to_stage for t in registry.history(MODEL)] == ["None", "Staging"]


# -- database-enforced invariants of the extension tables -----------------------------------------


@pytest.mark.parametrize("table", ["alias_log", "approvals", "model_policies", "version_verdicts"])
@pytest.mark.parametrize("statement", ["UPDATE {table} SET id = id + 100", "DELETE FROM {table}"])
def test_extension_logs_are_append_only(registry: ModelRegistry, table: str, statement: str) -> None:
    _staged(registry, 2)
    registry.set_policy(MODEL, require_approval_for_production=True, actor="admin", reason="r")
    registry.approve(MODEL, 1, approver="carol", comment="ok")
    registry.approve(MODEL, 2, approver="carol", comment="ok")
    _promote(registry, 1)
    _promote(registry, 2)
    registry.rollback(MODEL, actor="oncall", reason="r")
    count = sa.text(f"SELECT count(*) FROM {table}")
    with registry.engine.connect() as conn:
        rows_before = conn.execute(count).scalar_one()
    assert rows_before > 0

    with pytest.raises(sa.exc.IntegrityError, match="refused"), registry.engine.begin() as conn:
        conn.exec_driver_sql(statement.format(table=table))

    with registry.engine.connect() as conn:
        assert conn.execute(count).scalar_one() == rows_before


def test_alias_log_refuses_non_changes_and_truncate_on_postgresql(postgres_registry_url: str) -> None:
    with ModelRegistry(postgres_registry_url) as registry:
        _staged(registry, 1)
        _promote(registry, 1)
        for table in ("alias_log", "approvals", "model_policies", "version_verdicts"):
            with pytest.raises(sa.exc.IntegrityError, match="TRUNCATE refused"), registry.engine.begin() as conn:
                conn.exec_driver_sql(f"TRUNCATE {table}")
        with pytest.raises(sa.exc.IntegrityError), registry.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO alias_log (model_name, alias, from_version, to_version, actor, reason, evidence, at) "
                f"VALUES ('{MODEL}', 'x', 1, 1, 'a', 'r', '{{}}', now())"
            )
        assert len(registry.alias_history(MODEL)) == 1


def test_database_created_before_aliases_gets_champion_backfilled(registry_url: str) -> None:
    with ModelRegistry(registry_url) as old:
        _staged(old, 2)
        _promote(old, 2)
    # Simulate a registry database from before this feature: no alias tables at all.
    engine = sa.create_engine(registry_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alias_log")
        conn.exec_driver_sql("DROP TABLE model_aliases")
    engine.dispose()

    with ModelRegistry(registry_url) as upgraded:
        assert upgraded.aliases(MODEL) == {CHAMPION: 2}
        (change,) = upgraded.alias_history(MODEL)
        assert (change.actor, change.from_version, change.to_version) == ("registry", None, 2)
        assert change.reason.startswith("backfilled")
        check_registry_invariants(upgraded, MODEL)
    with ModelRegistry(registry_url) as again:
        assert len(again.alias_history(MODEL)) == 1  # idempotent


# -- concurrency with aliases and rollbacks --------------------------------------------------------

_SNAPSHOT = sa.text(
    # One statement, hence one snapshot on both backends: Production count, Production version and
    # champion are read at the same instant.
    "SELECT (SELECT count(*) FROM model_versions WHERE model_name = :m AND stage = 'Production') AS n, "
    "(SELECT max(version) FROM model_versions WHERE model_name = :m AND stage = 'Production') AS production, "
    "(SELECT to_version FROM alias_log WHERE model_name = :m AND alias = 'champion' ORDER BY id DESC LIMIT 1) "
    "AS champion"
)


class _Observer:
    """Polls the registry with one-statement snapshots, from a thread or a process."""

    def __init__(self, url: str) -> None:
        self.registry = ModelRegistry(url)
        self.registry.aliases(MODEL)  # make sure the schema is there before polling it with raw SQL
        self.observations = 0
        self.max_production = 0
        self.inconsistent: list[tuple[int, int | None, int | None]] = []

    def observe(self) -> None:
        with self.registry.engine.connect() as conn:
            row = conn.execute(_SNAPSHOT, {"m": MODEL}).one()
        self.observations += 1
        self.max_production = max(self.max_production, int(row.n))
        if int(row.n) > 1 or row.production != row.champion:
            self.inconsistent.append((int(row.n), row.production, row.champion))

    def run(self, wait_for_start: Callable[[], object], done: Callable[[], bool]) -> dict[str, Any]:
        """Observe once before the race starts, continuously during it, and once after it."""
        self.observe()
        wait_for_start()
        while not done():
            self.observe()
        self.observe()
        self.registry.close()
        return {
            "observations": self.observations,
            "max_production": self.max_production,
            "inconsistent": self.inconsistent[:10],
        }


def _promote_then_maybe_roll_back(reg: ModelRegistry, version: int) -> list[str]:
    """One worker: promote its own Staging version, then (even versions) try a rollback."""
    outcome: list[str] = []
    try:
        reg.transition(MODEL, version, "Production", actor=f"worker-{version}", reason="race", evidence={})
        outcome.append("promoted")
    except RegistryConflict:
        outcome.append("conflict")
    if version % 2 == 0:
        try:
            reg.rollback(MODEL, actor=f"worker-{version}", reason="drill")
            outcome.append("rolled back")
        except NothingToRollBack:
            outcome.append("nothing to roll back")
        except RegistryConflict:
            outcome.append("conflict")
    return outcome


def _process_worker(url: str, version: int, barrier: Any, results: Any) -> None:
    # Module level so that spawned processes can import it.
    try:
        with ModelRegistry(url) as reg:
            reg.aliases(MODEL)  # connect and check the schema before the start line
            barrier.wait(timeout=120)
            results.put((version, _promote_then_maybe_roll_back(reg, version)))
    except BaseException as exc:
        results.put((version, [f"unexpected {exc!r}"]))


def _process_observer(url: str, barrier: Any, done: Any, results: Any) -> None:
    try:
        results.put(("observer", _Observer(url).run(lambda: barrier.wait(timeout=120), done.is_set)))
    except BaseException as exc:
        results.put(("observer", {"error": repr(exc)}))


_ALLOWED_OUTCOMES = {"promoted", "conflict", "rolled back", "nothing to roll back"}


def _check_race_result(url: str, n: int, outcomes: dict[int, list[str]], observed: dict[str, Any]) -> None:
    assert len(outcomes) == n
    assert all(set(o) <= _ALLOWED_OUTCOMES for o in outcomes.values()), outcomes
    assert "error" not in observed, observed
    assert observed["observations"] >= 2  # at least before and after the race
    assert observed["max_production"] <= 1 and observed["inconsistent"] == [], observed
    with ModelRegistry(url) as reg:
        production = [v.version for v in reg.list_versions(MODEL) if v.stage == "Production"]
        assert len(production) == 1
        assert reg.aliases(MODEL)[CHAMPION] == production[0]
        promoted = sum(o.count("promoted") for o in outcomes.values())
        rolled_back = sum(o.count("rolled back") for o in outcomes.values())
        log = reg.transitions(MODEL)
        assert sum(1 for t in log if t.to_stage == "Production") == promoted + rolled_back
        assert len(reg.bad_versions(MODEL)) == rolled_back
        check_registry_invariants(reg, MODEL)


def test_concurrent_promotions_and_rollbacks_from_threads(registry_url: str) -> None:
    n = 6
    with ModelRegistry(registry_url) as setup:
        _staged(setup, n)
    barrier = threading.Barrier(n + 1)
    done = threading.Event()
    outcomes: dict[int, list[str]] = {}
    observed: dict[str, Any] = {}

    def work(i: int) -> None:
        with ModelRegistry(registry_url) as reg:
            reg.aliases(MODEL)
            barrier.wait(timeout=60)
            try:
                outcomes[i + 1] = _promote_then_maybe_roll_back(reg, i + 1)
            except BaseException as exc:
                outcomes[i + 1] = [f"unexpected {exc!r}"]

    def observe() -> None:
        observed.update(_Observer(registry_url).run(lambda: barrier.wait(timeout=60), done.is_set))

    observer = threading.Thread(target=observe)
    observer.start()
    _run_threads(n, work)
    done.set()
    observer.join(timeout=60)

    _check_race_result(registry_url, n, outcomes, observed)


@pytest.mark.e2e
def test_concurrent_promotions_and_rollbacks_from_processes(registry_url: str) -> None:
    """Like the thread test, with separate interpreters (spawn): no shared pools, GIL or Python locks."""
    n = 4
    with ModelRegistry(registry_url) as setup:
        _staged(setup, n)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n + 1)
    done = ctx.Event()
    results = ctx.Queue()
    workers = [ctx.Process(target=_process_worker, args=(registry_url, i + 1, barrier, results)) for i in range(n)]
    observer = ctx.Process(target=_process_observer, args=(registry_url, barrier, done, results))
    for process in [observer, *workers]:
        process.start()
    outcomes: dict[int, list[str]] = {}
    observed: dict[str, Any] = {}
    try:
        for _ in range(n):
            key, value = results.get(timeout=180)
            outcomes[key] = value
        done.set()
        key, value = results.get(timeout=60)
        assert key == "observer"
        observed = value
    except queue.Empty:
        pytest.fail(f"a process hung; got {outcomes}")
    finally:
        done.set()
        for process in [observer, *workers]:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()

    assert all(p.exitcode == 0 for p in [observer, *workers])
    _check_race_result(registry_url, n, outcomes, observed)
    from mlops_assets_tests import reliability

    backend = sa.make_url(registry_url).get_backend_name()
    with ModelRegistry(registry_url) as reg:
        production = [v.version for v in reg.list_versions(MODEL) if v.stage == "Production"]
    reliability.record(
        2,
        f"promote.processes_at_once.{backend}",
        f"{n} processes promote (some then roll back) at once, an observer reading throughout ({backend})",
        processes=n,
        production_versions_at_the_end=len(production),
        inconsistent_observations=len(observed["inconsistent"]),
    )
