"""Registry invariants under random operation sequences (Hypothesis stateful testing, SQLite).

A plain-Python model of the registry predicts every operation's outcome (including which error a
refused one raises); after every step the database must agree with the model, and the invariants of
:func:`check_registry_invariants` must hold: at most one Production version, ``champion`` on it,
every stage and alias change in the logs, logs only ever appended to.
"""

import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

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
    NothingToRollBack,
    VersionMarkedBad,
    VersionNotFound,
)
from mlops_assets_tests.test_registry import check_registry_invariants

pytestmark = pytest.mark.core

MODEL = "m"
PEOPLE = ("alice", "bob", "carol")
MAX_VERSION = 6
ALIASES = st.sampled_from([CHAMPION, CHALLENGER, "shadow-b"])

people = st.sampled_from(PEOPLE)


@dataclass
class _Model:
    """What the registry should contain."""

    stages: dict[int, str] = field(default_factory=dict)
    registrant: dict[int, str] = field(default_factory=dict)
    production_approvers: dict[int, set[str]] = field(default_factory=dict)
    bad: set[int] = field(default_factory=set)
    aliases: dict[str, int] = field(default_factory=dict)
    promotions: list[int] = field(default_factory=list)
    policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    log_rows: int = 0

    @property
    def production(self) -> int | None:
        return next((v for v, s in self.stages.items() if s == "Production"), None)

    def promotion_refusal(self, version: int) -> type[Exception] | None:
        if version in self.bad:
            return VersionMarkedBad
        if self.policy.require_approval_for_production:
            approvers = self.production_approvers.get(version, set())
            if self.policy.four_eyes:
                approvers = approvers - {self.registrant[version]}
            if not approvers:
                return ApprovalRequired
        return None

    def promote(self, version: int) -> None:
        incumbent = self.production
        if incumbent is not None:
            self.stages[incumbent] = "Archived"
            self.log_rows += 1
        self.stages[version] = "Production"
        self.log_rows += 1
        self.promotions.append(version)
        self.aliases[CHAMPION] = version
        if self.aliases.get(CHALLENGER) == version:
            del self.aliases[CHALLENGER]


def _ref(key: int) -> ArtifactRef:
    sha = hashlib.sha256(f"artifact-{key}".encode()).hexdigest()
    return ArtifactRef(uri=f"file:///a/{sha}.skops", sha256=sha, size=10)


class RegistryMachine(RuleBasedStateMachine):
    # Rules draw versions that exist, so that most operations are legal and sequences get deep
    # (promotion chains, rollbacks, challenger switches); `missing_version` covers the others.
    registered = Bundle("registered")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="registry-sm-"))
        self.registry = ModelRegistry(f"sqlite:///{self.tmp / 'registry.db'}", lock_timeout_s=10)
        self.model = _Model()
        self.seen_log: list[Any] = []
        self.seen_alias_log: list[Any] = []

    def teardown(self) -> None:
        self.registry.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------------

    def _snapshot(self) -> tuple[Any, ...]:
        r = self.registry
        return (
            r.list_versions(MODEL),
            r.transitions(MODEL),
            r.aliases(MODEL),
            r.alias_history(MODEL),
            r.approvals(MODEL),
            r.bad_versions(MODEL),
            r.policy(MODEL),
        )

    def _refused(self, expected: type[Exception], action: Any) -> None:
        """Run an operation the model says must fail; check the error type and that nothing changed."""
        before = self._snapshot()
        with pytest.raises(expected) as info:
            action()
        assert type(info.value) is expected, f"expected {expected.__name__}, got {info.value!r}"
        event(f"refused: {expected.__name__}")
        assert self._snapshot() == before

    def _transition(self, version: int, to_stage: str, actor: str) -> None:
        def action() -> Any:
            return self.registry.transition(MODEL, version, to_stage, actor=actor, reason="rule", evidence={})

        m = self.model
        if version not in m.stages:  # pragma: no cover - rules draw registered versions
            return self._refused(VersionNotFound, action)
        if (m.stages[version], to_stage) not in ALLOWED_TRANSITIONS:
            return self._refused(InvalidTransition, action)
        if to_stage == "Production":
            refusal = m.promotion_refusal(version)
            if refusal is not None:
                return self._refused(refusal, action)
            action()
            m.promote(version)
            return None
        was_production = m.stages[version] == "Production"
        action()
        m.stages[version] = to_stage
        m.log_rows += 1
        if was_production:
            del m.aliases[CHAMPION]
        return None

    # -- rules ---------------------------------------------------------------------------------------

    @initialize(
        target=registered,
        require=st.booleans(),
        four_eyes=st.booleans(),
        registrants=st.lists(people, min_size=3, max_size=3),
        promotions=st.lists(st.integers(1, 3), max_size=3),
    )
    def start_with_a_policy_and_a_history(
        self, require: bool, four_eyes: bool, registrants: list[str], promotions: list[int]
    ) -> MultipleResults[int]:
        # Starting with versions and some promotions makes deep states (rollback chains, challenger
        # switches over an incumbent) reachable within a few random steps.
        policy = self.registry.set_policy(
            MODEL, require_approval_for_production=require, four_eyes=four_eyes, actor="admin", reason="init"
        )
        self.model.policy = ApprovalPolicy(require, four_eyes)
        assert policy == self.model.policy
        versions = [self._register(actor) for actor in registrants]
        for version in promotions:
            self.promote(version, actor="deployer", approver="carol", get_approval=True)
        return multiple(*versions)

    @precondition(lambda self: len(self.model.stages) < MAX_VERSION)
    @rule(target=registered, actor=people)
    def register(self, actor: str) -> int:
        return self._register(actor)

    def _register(self, actor: str) -> int:
        version = len(self.model.stages) + 1
        lineage = Lineage(("d",), "run", "c", "g", "f")
        created = self.registry.register_version(MODEL, _ref(version), lineage, {}, {}, actor=actor)
        assert (created.version, created.stage) == (version, "None")
        self.model.stages[version] = "None"
        self.model.registrant[version] = actor
        self.model.log_rows += 1
        return version

    @rule(version=registered)
    def register_again_is_idempotent(self, version: int) -> None:
        again = self.registry.register_version(MODEL, _ref(version), Lineage(("x",), "r", "c", "g", "f"), {}, {})
        assert again.version == version

    @rule(
        operation=st.sampled_from(["transition", "approve", "set_alias", "mark_bad"]),
        offset=st.integers(1, 3),
    )
    def missing_version(self, operation: str, offset: int) -> None:
        version = len(self.model.stages) + offset
        r = self.registry
        actions = {
            "transition": lambda: r.transition(MODEL, version, "Staging", actor="a", reason="r", evidence={}),
            "approve": lambda: r.approve(MODEL, version, approver="a", comment=""),
            "set_alias": lambda: r.set_alias(MODEL, "shadow-b", version, actor="a", reason="r"),
            "mark_bad": lambda: r.mark_bad(MODEL, version, actor="a", reason="r"),
        }
        self._refused(VersionNotFound, actions[operation])

    @rule(version=registered, to_stage=st.sampled_from(STAGES), actor=people)
    def transition(self, version: int, to_stage: str, actor: str) -> None:
        self._transition(version, to_stage, actor)

    def _get_approval(self, version: int, approver: str) -> None:
        if self.model.policy.four_eyes and approver == self.model.registrant[version]:
            approver = PEOPLE[(PEOPLE.index(approver) + 1) % len(PEOPLE)]
        self.approve(version, approver)

    @rule(version=registered, actor=people, approver=people, get_approval=st.booleans())
    def promote(self, version: int, actor: str, approver: str, get_approval: bool) -> None:
        """The usual path: through Staging, with an approval first (usually) if the policy wants one."""
        if get_approval and self.model.policy.require_approval_for_production:
            self._get_approval(version, approver)
        if self.model.stages[version] == "None":
            self._transition(version, "Staging", actor)
        self._transition(version, "Production", actor)

    @rule(version=registered, approver=people, get_approval=st.booleans())
    def nominate_challenger(self, version: int, approver: str, get_approval: bool) -> None:
        """The start of a rollout: stage a non-Production version and make it the challenger."""
        if self.model.stages[version] == "Production":
            return
        if self.model.stages[version] == "None":
            self._transition(version, "Staging", "rollout")
        if get_approval and self.model.policy.require_approval_for_production:
            self._get_approval(version, approver)
        self.set_alias(version, CHALLENGER)

    @rule(actor=people)
    def rollback(self, actor: str) -> None:
        m = self.model

        def action() -> Any:
            return self.registry.rollback(MODEL, actor=actor, reason="drill")

        current = m.production
        target = next(
            (v for v in reversed(m.promotions) if v != current and v not in m.bad),
            None,
        )
        if current is None or target is None:
            return self._refused(NothingToRollBack, action)
        restored = action()
        assert restored.version == target
        event("rolled back")
        m.bad.add(current)
        m.promote(target)
        return None

    @rule(version=registered, approver=people)
    def approve(self, version: int, approver: str) -> None:
        m = self.model

        def action() -> Any:
            return self.registry.approve(MODEL, version, approver=approver, comment="lgtm")

        if version not in m.stages:
            return self._refused(VersionNotFound, action)
        if m.policy.four_eyes and approver == m.registrant[version]:
            return self._refused(FourEyesViolation, action)
        action()
        m.production_approvers.setdefault(version, set()).add(approver)
        return None

    @rule(require=st.booleans(), four_eyes=st.booleans())
    def set_policy(self, require: bool, four_eyes: bool) -> None:
        self.registry.set_policy(
            MODEL, require_approval_for_production=require, four_eyes=four_eyes, actor="admin", reason="change"
        )
        self.model.policy = ApprovalPolicy(require, four_eyes)

    @rule(version=registered, alias=ALIASES)
    def set_alias(self, version: int, alias: str) -> None:
        m = self.model

        def action() -> Any:
            return self.registry.set_alias(MODEL, alias, version, actor="alice", reason="rule")

        if version not in m.stages:
            return self._refused(VersionNotFound, action)
        if alias == CHAMPION and m.stages[version] != "Production":
            return self._refused(InvalidAlias, action)
        if alias == CHALLENGER and m.stages[version] == "Production":
            return self._refused(InvalidAlias, action)
        action()
        m.aliases[alias] = version
        return None

    @rule(alias=ALIASES)
    def delete_alias(self, alias: str) -> None:
        m = self.model

        def action() -> Any:
            return self.registry.delete_alias(MODEL, alias, actor="alice", reason="rule")

        if alias == CHAMPION and alias in m.aliases:
            return self._refused(InvalidAlias, action)
        assert action() == m.aliases.pop(alias, None)
        return None

    @rule(actor=people)
    def promote_challenger(self, actor: str) -> None:
        m = self.model

        def action() -> Any:
            return self.registry.promote_challenger(MODEL, actor=actor, reason="canary passed", evidence={})

        version = m.aliases.get(CHALLENGER)
        if version is None:
            return self._refused(AliasNotFound, action)
        if (m.stages[version], "Production") not in ALLOWED_TRANSITIONS:
            return self._refused(InvalidTransition, action)
        refusal = m.promotion_refusal(version)
        if refusal is not None:
            return self._refused(refusal, action)
        action()
        m.promote(version)
        event("promoted the challenger")
        return None

    @rule(version=registered, bad=st.booleans())
    def verdict(self, version: int, bad: bool) -> None:
        m = self.model
        mark = self.registry.mark_bad if bad else self.registry.clear_bad

        def action() -> Any:
            return mark(MODEL, version, actor="analyst", reason="rule")

        if version not in m.stages:
            return self._refused(VersionNotFound, action)
        action()
        if bad:
            m.bad.add(version)
        else:
            m.bad.discard(version)
        return None

    @rule(
        statement=st.sampled_from(
            [
                "UPDATE stage_transitions SET reason = 'rewritten'",
                "DELETE FROM stage_transitions WHERE to_stage = 'Production'",
                "UPDATE alias_log SET to_version = from_version",
                "DELETE FROM alias_log",
                "DELETE FROM approvals",
                "UPDATE version_verdicts SET verdict = 'cleared'",
            ]
        )
    )
    def tamper_with_history(self, statement: str) -> None:
        # Someone with a SQL prompt: the triggers refuse any row the statement touches (a statement
        # matching no row has nothing to refuse), and either way history is unchanged.
        before = self._snapshot()
        try:
            with self.registry.engine.begin() as conn:
                conn.exec_driver_sql(statement)
        except sa.exc.IntegrityError as exc:
            assert "refused" in str(exc)
        assert self._snapshot() == before

    # -- invariants ----------------------------------------------------------------------------------

    @invariant()
    def database_is_consistent(self) -> None:
        check_registry_invariants(self.registry, MODEL)

    @invariant()
    def database_agrees_with_the_model(self) -> None:
        m, r = self.model, self.registry
        assert {v.version: v.stage for v in r.list_versions(MODEL)} == m.stages
        assert r.aliases(MODEL) == m.aliases
        assert set(r.bad_versions(MODEL)) == m.bad
        assert r.policy(MODEL) == m.policy
        production = r.production_version(MODEL)
        assert (production.version if production else None) == m.production

    @invariant()
    def every_stage_change_is_logged_and_logs_only_grow(self) -> None:
        log = self.registry.transitions(MODEL)
        assert len(log) == self.model.log_rows
        assert log[: len(self.seen_log)] == self.seen_log
        self.seen_log = log
        alias_log = self.registry.alias_history(MODEL)
        assert alias_log[: len(self.seen_alias_log)] == self.seen_alias_log
        self.seen_alias_log = alias_log


RegistryMachine.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRegistryStateMachine = RegistryMachine.TestCase
