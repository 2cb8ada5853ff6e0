"""The serving snapshot and its registry watcher (mlops_assets.serving.deployment), on an in-memory registry.

The watcher must serve only versions whose artifact loads verified and whose gate evidence passed (fail closed),
keep the previous snapshot when a new champion fails, drop a failed challenger, route with the batch path's
``routing_for``, swap only when the routing configuration changed, and survive registry errors.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from mlops_assets.ml.gate_evidence import GateOutcome
from mlops_assets.ml.rollout import Phase, RolloutState
from mlops_assets.ml.scoring import routing_for
from mlops_assets.ml.spec import load_spec
from mlops_assets.serving.deployment import Deployment, ModelWatcher, readiness_by_version
from mlops_assets.storage.artifacts.store import ArtifactIntegrityError, ArtifactRef

pytestmark = pytest.mark.core

GATES = ("candidate_model:model_reproduces_holdout_scores", "model_evaluation:metric_above_floor")
NAME = "synthetic"


def _sha(version: int) -> str:
    return f"{version:x}".rjust(64, "a")


def _version(version: int) -> Any:
    sha = _sha(version)
    return SimpleNamespace(
        version=version, artifact_sha256=sha, artifact=ArtifactRef(uri=f"file:///v{version}", sha256=sha, size=1)
    )


def _outcome(version: int, gate: str, passed: bool = True, sha: str | None = None) -> GateOutcome:
    return GateOutcome(
        model_name=NAME,
        version=version,
        artifact_sha256=sha or _sha(version),
        gate=gate,
        passed=passed,
        data_version="d1",
        run_id=f"run-{version}",
        summary="",
        at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@dataclass
class FakeRegistry:
    """Aliases, an active rollout and gate outcomes held in memory; ``down`` makes every read raise."""

    aliases: dict[str, Any] = field(default_factory=dict)
    rollout: RolloutState | None = None
    outcomes: dict[int, dict[str, GateOutcome]] = field(default_factory=dict)
    down: bool = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("database is down")

    def get_alias(self, model_name: str, alias: str) -> Any:
        self._check()
        return self.aliases.get(alias)

    def active_rollout(self, model_name: str) -> RolloutState | None:
        self._check()
        return self.rollout

    def gate_outcomes(self, model_name: str, version: int) -> dict[str, GateOutcome]:
        self._check()
        return dict(self.outcomes.get(version, {}))

    def passed(self, version: int) -> None:
        self.outcomes[version] = {g: _outcome(version, g) for g in GATES}


class FakeLoader:
    """Loads ``"pipeline v<N>"``; versions in ``broken`` raise as a tampered artifact does."""

    def __init__(self) -> None:
        self.broken: set[int] = set()
        self.calls: list[int] = []

    def __call__(self, store: Any, ref: ArtifactRef) -> Any:
        version = int(ref.uri.rsplit("v", 1)[1])
        self.calls.append(version)
        if version in self.broken:
            raise ArtifactIntegrityError(f"{ref.uri}: sha256 mismatch", uri=ref.uri)
        return f"pipeline v{version}"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _watcher(registry: FakeRegistry, loader: FakeLoader, **kwargs: Any) -> tuple[ModelWatcher, list[Deployment]]:
    swaps: list[Deployment] = []
    watcher = ModelWatcher(
        NAME,
        load_spec("synthetic"),
        registry,
        artifacts=None,  # type: ignore[arg-type]
        required_gates=GATES,
        refresh_seconds=0.01,
        on_swap=swaps.append,
        loader=loader,
        **kwargs,
    )
    return watcher, swaps


def _canary(champion: int, challenger: int, step: int) -> RolloutState:
    return RolloutState(
        model_name=NAME,
        champion_version=champion,
        challenger_version=challenger,
        phase=Phase.CANARY,
        step=step,
        canary_steps=(0.1, 0.5, 1.0),
    )


def test_a_verified_champion_is_served_with_the_batch_routing_and_the_spec_threshold() -> None:
    registry, loader = FakeRegistry(), FakeLoader()
    registry.aliases["champion"] = _version(1)
    registry.passed(1)
    watcher, swaps = _watcher(registry, loader)
    assert watcher.current is None
    assert watcher.refresh() is True
    current = watcher.current
    assert current is not None and swaps == [current]
    assert (current.champion.version, current.champion.pipeline, current.challenger) == (1, "pipeline v1", None)
    assert current.routing == routing_for(NAME, None, None, None)
    assert current.decision_threshold == load_spec("synthetic").policy.evaluation.decision_threshold
    # Nothing changed: no new snapshot, no reload.
    assert watcher.refresh() is False and loader.calls == [1] and len(swaps) == 1
    meta = current.segment_metadata("0123abcd")
    assert meta["champion_version"] == "1" and meta["challenger_version"] == "" and meta["worker_tag"] == "0123abcd"


def test_a_champion_without_passed_evidence_is_never_served_and_says_why() -> None:
    registry, loader = FakeRegistry(), FakeLoader()
    registry.aliases["champion"] = _version(1)
    registry.outcomes[1] = {GATES[0]: _outcome(1, GATES[0]), GATES[1]: _outcome(1, GATES[1], passed=False)}
    watcher, swaps = _watcher(registry, loader)
    assert watcher.refresh() is False
    assert watcher.current is None and swaps == [] and loader.calls == []  # refused before the artifact is read
    readiness = watcher.status().versions[1]
    assert not readiness.ready and GATES[1] in readiness.reason and "failed" in readiness.reason


def test_evidence_for_another_artifact_does_not_count() -> None:
    registry, loader = FakeRegistry(), FakeLoader()
    registry.aliases["champion"] = _version(1)
    registry.outcomes[1] = {g: _outcome(1, g, sha="b" * 64) for g in GATES}
    watcher, _ = _watcher(registry, loader)
    watcher.refresh()
    assert watcher.current is None
    assert "wrong_artifact" in watcher.status().versions[1].reason


def test_a_new_champion_whose_artifact_fails_leaves_the_previous_one_serving() -> None:
    registry, loader = FakeRegistry(), FakeLoader()
    registry.aliases["champion"] = _version(1)
    registry.passed(1)
    watcher, swaps = _watcher(registry, loader)
    watcher.refresh()
    before = watcher.current
    registry.aliases["champion"] = _version(2)
    registry.passed(2)
    loader.broken.add(2)
    assert watcher.refresh() is False
    assert watcher.current is before and len(swaps) == 1
    readiness = readiness_by_version(watcher.status())
    assert readiness[1].ready
    assert not readiness[2].ready and "ArtifactIntegrityError" in readiness[2].reason


def test_a_failed_version_is_retried_after_retry_seconds_and_then_served() -> None:
    registry, loader, clock = FakeRegistry(), FakeLoader(), Clock()
    registry.aliases["champion"] = _version(1)
    registry.passed(1)
    loader.broken.add(1)
    watcher, _ = _watcher(registry, loader, retry_seconds=10.0, clock=clock)
    watcher.refresh()
    watcher.refresh()  # within retry_seconds: not read again
    assert watcher.current is None and loader.calls == [1]
    loader.broken.clear()
    clock.now = 11.0
    assert watcher.refresh() is True
    assert watcher.current is not None and watcher.status().versions[1].ready


def test_a_failed_challenger_is_not_routed_to() -> None:
    registry, loader = FakeRegistry(), FakeLoader()
    registry.aliases.update(champion=_version(1), challenger=_version(2))
    registry.passed(1)
    registry.passed(2)
    registry.rollout = _canary(1, 2, step=1)
    loader.broken.add(2)
    watcher, _ = _watcher(registry, loader)
    watcher.refresh()
    current = watcher.current
    assert current is not None and current.challenger is None
    assert current.routing.challenger_share == 0.0 and current.routing.phase == "none"
    assert not watcher.status().versions[2].ready


def test_rollout_moves_swap_the_snapshot_with_routing_for_of_the_rollout() -> None:
    registry, loader = FakeRegistry(), FakeLoader()
    registry.aliases.update(champion=_version(1), challenger=_version(2))
    registry.passed(1)
    registry.passed(2)
    watcher, swaps = _watcher(registry, loader)
    watcher.refresh()
    assert swaps[-1].routing == routing_for(NAME, 2, None, None)  # challenger without rollout: shadow, share 0
    for step in (0, 1):
        registry.rollout = _canary(1, 2, step)
        assert watcher.refresh() is True
        assert swaps[-1].routing == routing_for(NAME, 2, registry.rollout, None)
        assert swaps[-1].routing.challenger_share == (0.1, 0.5)[step]
    assert loader.calls == [1, 2]  # pipelines are reused across routing changes
    # Promotion: the challenger becomes the champion, no challenger any more.
    registry.aliases = {"champion": _version(2)}
    registry.rollout = None
    assert watcher.refresh() is True
    assert (swaps[-1].champion.version, swaps[-1].challenger) == (2, None)


def test_registry_errors_keep_the_snapshot_serving_and_are_counted() -> None:
    registry, loader = FakeRegistry(), FakeLoader()
    registry.aliases["champion"] = _version(1)
    registry.passed(1)
    errors: list[int] = []
    watcher, _ = _watcher(registry, loader, on_registry_error=lambda: errors.append(1))
    watcher.refresh()
    before = watcher.current
    registry.down = True
    assert watcher.refresh() is False and watcher.refresh() is False
    status = watcher.status()
    assert watcher.current is before and status.registry_errors == 2 == len(errors)
    assert "database is down" in status.last_error
    registry.down = False
    registry.rollout = None
    assert watcher.refresh() is False and watcher.current is before


def test_the_background_thread_picks_up_a_promotion() -> None:
    registry, loader = FakeRegistry(), FakeLoader()
    registry.aliases["champion"] = _version(1)
    registry.passed(1)
    watcher, swaps = _watcher(registry, loader)
    watcher.start()
    try:
        registry.passed(2)
        registry.aliases["champion"] = _version(2)
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            current = watcher.current
            if current is not None and current.champion.version == 2:
                break
            time.sleep(0.01)
        assert watcher.current is not None and watcher.current.champion.version == 2
    finally:
        watcher.stop()
    assert [d.champion.version for d in swaps][-1] == 2
