"""Stages as an enum, and ``champion`` derived from the Production stage (one source of truth, issue 11).

* :class:`Stage` members are the strings stored in the database, so stored rows and string callers keep working;
* the champion is the Production version after every promotion, rollback and archive, on SQLite and PostgreSQL,
  and no ``champion`` row is stored (the alias log keeps the audit of its moves);
* a ``champion`` row left in ``model_aliases`` by an older registry is ignored by every read.
"""

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlops_assets.storage.artifacts.store import ArtifactRef
from mlops_assets.storage.registry import (
    ALLOWED_TRANSITIONS,
    APPROVABLE_STAGES,
    CHAMPION,
    STAGES,
    InvalidAlias,
    Lineage,
    ModelRegistry,
    ModelVersion,
    Stage,
)

pytestmark = pytest.mark.core

MODEL = "flights_delay"


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModelRegistry]:
    # The PostgreSQL URL is resolved lazily, so an unreachable server skips only that half.
    url = (
        f"sqlite:///{tmp_path / 'registry.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_registry_url")
    )
    with ModelRegistry(url) as reg:
        yield reg


def _register(reg: ModelRegistry, key: int) -> ModelVersion:
    sha = hashlib.sha256(str(key).encode()).hexdigest()
    ref = ArtifactRef(uri=f"file:///artifacts/{sha}.skops", sha256=sha, size=100, hmac=None)
    lineage = Lineage(
        data_versions=("2024-01",), run_id="run-1", package_version="v1", git_sha="abc", spec_fingerprint="f"
    )
    return reg.register_version(MODEL, ref, lineage, {}, {"roc_auc": 0.8})


def _move(reg: ModelRegistry, version: int, stage: Stage) -> ModelVersion:
    return reg.transition(MODEL, version, stage, actor="tester", reason=f"to {stage}", evidence={})


def _stored_champion_rows(reg: ModelRegistry) -> list[tuple[str, int]]:
    with reg.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT model_name, version FROM model_aliases WHERE alias = :a"), {"a": CHAMPION}
        ).all()
    return [(r.model_name, int(r.version)) for r in rows]


def _assert_champion_is_production(reg: ModelRegistry) -> None:
    production = reg.production_version(MODEL)
    champion = reg.get_alias(MODEL, CHAMPION)
    assert champion == production
    assert reg.aliases(MODEL).get(CHAMPION) == (production.version if production else None)
    # The alias log still tells the story: its last champion move names the Production version.
    moves = reg.alias_history(MODEL, CHAMPION)
    assert (moves[-1].to_version if moves else None) == (production.version if production else None)
    assert _stored_champion_rows(reg) == []


# -- the enum ---------------------------------------------------------------------------------------------------------


def test_stage_values_are_the_stored_strings() -> None:
    assert [s.value for s in Stage] == ["None", "Staging", "Production", "Archived"]
    assert tuple(Stage) == STAGES
    assert Stage.PRODUCTION == "Production" and Stage("Archived") is Stage.ARCHIVED
    assert f"{Stage.STAGING}" == str(Stage.STAGING) == "Staging"
    assert {"None": 1}[Stage.NONE] == 1  # hashes like the string
    assert APPROVABLE_STAGES == ("Staging", "Production")
    # The edges are declared once, over the enum, and compare equal to the string pairs.
    assert all(isinstance(a, Stage) and isinstance(b, Stage) for a, b in ALLOWED_TRANSITIONS)
    assert ("Archived", "Production") in ALLOWED_TRANSITIONS
    assert Stage.ARCHIVED.can_move_to(Stage.PRODUCTION) and Stage.STAGING.can_move_to("Production")
    assert not Stage.NONE.can_move_to(Stage.PRODUCTION) and not Stage.PRODUCTION.can_move_to("Staging")


def test_records_carry_stages_and_the_database_holds_the_strings(registry: ModelRegistry) -> None:
    _register(registry, 1)
    moved = registry.transition(MODEL, 1, "Staging", actor="t", reason="string callers still work", evidence={})
    assert moved.stage is Stage.STAGING
    promoted = _move(registry, 1, Stage.PRODUCTION)
    assert promoted.stage is Stage.PRODUCTION and promoted.stage == "Production"
    assert [(t.from_stage, t.to_stage) for t in registry.transitions(MODEL)] == [
        (None, Stage.NONE),
        (Stage.NONE, Stage.STAGING),
        (Stage.STAGING, Stage.PRODUCTION),
    ]
    assert all(isinstance(t.to_stage, Stage) for t in registry.transitions(MODEL))
    approval = registry.approve(MODEL, 1, approver="carol", comment="ok", stage="Staging")
    assert approval.stage is Stage.STAGING
    with registry.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT stage FROM model_versions WHERE version = 1")).scalar_one()
        logged = conn.execute(sa.text("SELECT to_stage FROM stage_transitions ORDER BY id")).scalars().all()
    assert type(stored) is str and stored == "Production"
    assert logged == ["None", "Staging", "Production"]


# -- champion derived from Production ---------------------------------------------------------------------------------


def test_champion_follows_production_through_promote_rollback_and_archive(registry: ModelRegistry) -> None:
    for key in (1, 2, 3):
        _register(registry, key)
        _move(registry, key, Stage.STAGING)
    _assert_champion_is_production(registry)  # nothing in Production: no champion

    _move(registry, 1, Stage.PRODUCTION)
    _assert_champion_is_production(registry)
    _move(registry, 2, Stage.PRODUCTION)
    _assert_champion_is_production(registry)

    registry.set_alias(MODEL, "challenger", 3, actor="rollout", reason="canary")
    registry.promote_challenger(MODEL, actor="rollout", reason="won", evidence={}, expected_version=3)
    assert registry.production_version(MODEL) == registry.get_alias(MODEL, CHAMPION) == registry.get_version(MODEL, 3)
    _assert_champion_is_production(registry)

    rolled_back_to = registry.rollback(MODEL, actor="oncall", reason="regression")
    assert rolled_back_to.version == 2
    _assert_champion_is_production(registry)

    _move(registry, 2, Stage.ARCHIVED)  # retired without a replacement
    assert registry.get_alias(MODEL, CHAMPION) is None
    _assert_champion_is_production(registry)

    _move(registry, 1, Stage.PRODUCTION)  # Archived -> Production
    _assert_champion_is_production(registry)
    assert [(c.from_version, c.to_version) for c in registry.alias_history(MODEL, CHAMPION)] == [
        (None, 1),
        (1, 2),
        (2, 3),
        (3, 2),
        (2, None),
        (None, 1),
    ]


def test_champion_keeps_its_public_rules(registry: ModelRegistry) -> None:
    for key in (1, 2):
        _register(registry, key)
        _move(registry, key, Stage.STAGING)
    with pytest.raises(InvalidAlias, match="always names the Production version"):
        registry.set_alias(MODEL, CHAMPION, 1, actor="a", reason="r")
    assert registry.delete_alias(MODEL, CHAMPION, actor="a", reason="r") is None  # no champion: nothing to delete
    _move(registry, 1, Stage.PRODUCTION)
    assert registry.set_alias(MODEL, CHAMPION, 1, actor="a", reason="r").version == 1  # already true: a no-op
    with pytest.raises(InvalidAlias, match="always names the Production version"):
        registry.set_alias(MODEL, CHAMPION, 2, actor="a", reason="r")
    with pytest.raises(InvalidAlias, match="goes away only when Production is archived"):
        registry.delete_alias(MODEL, CHAMPION, actor="a", reason="r")
    assert len(registry.alias_history(MODEL)) == 1
    _assert_champion_is_production(registry)


def test_a_legacy_champion_row_pointing_elsewhere_is_ignored(registry: ModelRegistry) -> None:
    for key in (1, 2):
        _register(registry, key)
        _move(registry, key, Stage.STAGING)
    _move(registry, 2, Stage.PRODUCTION)
    # An older registry stored the alias; this row disagrees with the stage (as a stale copy could).
    with registry.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO model_aliases (model_name, alias, version, updated_at) VALUES (:m, :a, 1, :at)"),
            {"m": MODEL, "a": CHAMPION, "at": datetime.now(UTC).replace(tzinfo=None)},
        )
    assert _stored_champion_rows(registry) == [(MODEL, 1)]

    champion = registry.get_alias(MODEL, CHAMPION)
    assert champion is not None and (champion.version, champion.stage) == (2, Stage.PRODUCTION)
    assert registry.aliases(MODEL) == {CHAMPION: 2}
    with pytest.raises(InvalidAlias, match="always names the Production version"):
        registry.set_alias(MODEL, CHAMPION, 1, actor="a", reason="r")

    # Moves go on from the Production version, not from the stale row.
    _move(registry, 2, Stage.ARCHIVED)
    assert registry.get_alias(MODEL, CHAMPION) is None and registry.aliases(MODEL) == {}
    assert registry.alias_history(MODEL, CHAMPION)[-1].from_version == 2
    _move(registry, 1, Stage.PRODUCTION)
    assert registry.aliases(MODEL) == {CHAMPION: 1}
    assert registry.get_alias(MODEL, CHAMPION) == registry.get_version(MODEL, 1)
