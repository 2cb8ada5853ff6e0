"""What ``mlops-serve`` serves for one model, read from the registry: an immutable deployment snapshot and its watcher.

A :class:`Deployment` is everything a request needs, frozen: the spec and request :class:`Signature`, the champion
(version, verified pipeline, artifact digest), the challenger (or ``None``), the :class:`~mlops_assets.ml.scoring.
Routing` made by :func:`mlops_assets.ml.scoring.routing_for` — the one routing function of the batch path — and the
decision threshold. A request takes the current snapshot reference once, at its start, and uses only it.

A :class:`ModelWatcher` polls the registry every ``refresh_seconds`` (the ``champion`` and ``challenger`` aliases and
the active rollout). When the routing configuration changed, it builds the next snapshot, loading each new version's
artifact with :func:`~mlops_assets.storage.artifacts.skops_codec.load_model` (digest, size, HMAC and the skops type
allowlist verified) and judging its gate evidence in the registry
(:func:`~mlops_assets.ml.gate_evidence.judge_evidence` of the required gates, bound to the version and digest). It
fails closed:

* a champion whose artifact or evidence fails is not served: the previous snapshot keeps serving (none at start:
  the model is not ready), and the version is reported not ready with the reason;
* a challenger that fails is not routed to: the snapshot has no challenger (every row to the champion), reported
  likewise.

Failed versions are retried when the registry state changes and otherwise every ``retry_seconds``. A registry read
error (database down) keeps the last snapshot serving and counts the error (:attr:`WatcherStatus.registry_errors`).

The swap is one reference assignment made by :meth:`ModelWatcher.install`, through the ``swap_runner`` the caller
gives (the server runs it on its event loop, between requests, together with the prediction log's segment
rotation; see :mod:`mlops_assets.serving.app`). Pure core: no Dagster.
"""

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlops_assets.ml.gate_evidence import GateOutcome, judge_evidence, refusals
from mlops_assets.ml.rollout import RolloutState
from mlops_assets.ml.scoring import Routing, routing_for
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.serving.signature import Signature, signature_of
from mlops_assets.storage.artifacts.skops_codec import load_model
from mlops_assets.storage.artifacts.store import ArtifactRef, ArtifactStore

LOG = logging.getLogger(__name__)

#: The registry aliases the watcher reads (the registry's ``CHAMPION`` / ``CHALLENGER``; spelled here so that the
#: pure core does not import the SQLAlchemy registry package).
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"


class VersionRecord(Protocol):
    """What the watcher reads of a registered version (:class:`mlops_assets.storage.registry.ModelVersion`)."""

    @property
    def version(self) -> int: ...

    @property
    def artifact_sha256(self) -> str: ...

    @property
    def artifact(self) -> ArtifactRef: ...


class RegistryReader(Protocol):
    """The registry reads the watcher makes (:class:`mlops_assets.storage.registry.ModelRegistry` has them)."""

    def get_alias(self, model_name: str, alias: str) -> Any: ...

    def active_rollout(self, model_name: str) -> RolloutState | None: ...

    def gate_outcomes(self, model_name: str, version: int) -> dict[str, GateOutcome]: ...


@dataclass(frozen=True)
class ServedVersion:
    """One model version loaded for serving.

    Attributes:
        version: The registry version number.
        pipeline: The fitted scikit-learn pipeline, loaded from the verified artifact.
        artifact_sha256: The artifact digest it was loaded and verified against (64 hex digits).
    """

    version: int
    pipeline: Any = field(compare=False, repr=False)
    artifact_sha256: str


def spec_digest(spec: DatasetSpec) -> str:
    """The first 16 hex digits of the spec's fingerprint's SHA-256 (segment metadata: which spec validated rows)."""
    return hashlib.sha256(spec.fingerprint().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Deployment:
    """The immutable serving snapshot of one model (see the module docstring).

    Attributes:
        model_name: Registered model name.
        spec: The dataset spec (named after the model).
        signature: The request signature (:func:`mlops_assets.serving.signature.signature_of` of ``spec``).
        champion: The served production version.
        challenger: The challenger routed to (or shadowed), ``None`` without one or when it failed to load.
        routing: ``routing_for(model, challenger version, active rollout, None)``: share, salt, phase.
        decision_threshold: ``spec.policy.evaluation.decision_threshold``: decision 1 when score >= it.
    """

    model_name: str
    spec: DatasetSpec = field(repr=False)
    signature: Signature = field(repr=False)
    champion: ServedVersion
    challenger: ServedVersion | None
    routing: Routing
    decision_threshold: float

    @property
    def config_key(self) -> tuple[Any, ...]:
        """What identifies the routing configuration: versions, digests, share, salt and phase."""
        challenger = (self.challenger.version, self.challenger.artifact_sha256) if self.challenger else None
        return (
            self.champion.version,
            self.champion.artifact_sha256,
            challenger,
            self.routing.challenger_share,
            self.routing.salt,
            self.routing.phase,
        )

    def segment_metadata(self, worker_tag: str) -> dict[str, str]:
        """The prediction-log segment metadata of this configuration (one segment = one routing configuration)."""
        return {
            "model": self.model_name,
            "champion_version": str(self.champion.version),
            "champion_sha256": self.champion.artifact_sha256,
            "challenger_version": "" if self.challenger is None else str(self.challenger.version),
            "challenger_sha256": "" if self.challenger is None else self.challenger.artifact_sha256,
            "challenger_share": repr(float(self.routing.challenger_share)),
            "salt": self.routing.salt,
            "phase": self.routing.phase,
            "decision_threshold": repr(float(self.decision_threshold)),
            "spec_digest": spec_digest(self.spec),
            "worker_tag": worker_tag,
        }


@dataclass(frozen=True)
class VersionReadiness:
    """Whether one version the registry names could be served, and why not.

    Attributes:
        version: The version.
        role: ``"champion"`` or ``"challenger"`` (the alias that named it when last judged).
        ready: Its artifact verified and loaded and its gate evidence all passed.
        reason: Why not (empty when ready).
    """

    version: int
    role: str
    ready: bool
    reason: str = ""


@dataclass(frozen=True)
class WatcherStatus:
    """A copy of a watcher's state for health endpoints and metrics.

    Attributes:
        model_name: The model.
        serving: The served snapshot's ``(champion, challenger)`` versions, ``None`` when nothing serves.
        versions: Readiness of every version judged, by version number.
        registry_errors: Registry reads that raised, since start.
        last_error: The latest registry or load error message (empty when none).
        swaps: Snapshots installed since start.
        polls: Registry polls made since start.
    """

    model_name: str
    serving: tuple[int, int | None] | None
    versions: dict[int, VersionReadiness]
    registry_errors: int
    last_error: str
    swaps: int
    polls: int


@dataclass(frozen=True)
class _Observed:
    # What the registry said in one poll.
    champion: Any
    challenger: Any
    rollout: RolloutState | None

    @property
    def key(self) -> tuple[Any, ...]:
        rollout = self.rollout
        return (
            None if self.champion is None else (self.champion.version, self.champion.artifact_sha256),
            None if self.challenger is None else (self.challenger.version, self.challenger.artifact_sha256),
            None
            if rollout is None
            else (rollout.challenger_version, rollout.challenger_share, rollout.salt, rollout.phase.value),
        )


def _run_now(action: Callable[[], None]) -> None:
    action()


Loader = Callable[[ArtifactStore, ArtifactRef], Any]


class ModelWatcher:
    """Keeps one model's :class:`Deployment` in step with the registry (see the module docstring).

    Args:
        model_name: Registered model name.
        spec: Its dataset spec.
        registry: The registry (reads only: aliases, active rollout, gate outcomes).
        artifacts: The artifact store (reads verify digest, size and HMAC).
        required_gates: The gate names a served version's evidence must have passed (the code location's
            ``mlops_assets.gates.MODEL_GATE_NAMES``, the ones every registry move requires).
        refresh_seconds: Seconds between registry polls (> 0).
        retry_seconds: Seconds before a version that failed is tried again while the registry is unchanged.
        on_swap: Called with each installed snapshot, inside the swap (the server rotates the log segment there).
        swap_runner: Runs the swap (assignment + ``on_swap``) and returns when it ran; default: in the caller's
            thread. The server passes one that runs it on its event loop.
        loader: Loads a verified model (default :func:`~mlops_assets.storage.artifacts.skops_codec.load_model`).
        on_registry_error: Called once per registry read that raised (the server counts them in a metric).
        clock: Monotonic seconds (tests inject one).

    Raises:
        ValueError: ``refresh_seconds`` is not positive, or the spec's id type cannot be served.
    """

    def __init__(
        self,
        model_name: str,
        spec: DatasetSpec,
        registry: RegistryReader,
        artifacts: ArtifactStore,
        *,
        required_gates: Sequence[str],
        refresh_seconds: float = 1.0,
        retry_seconds: float = 30.0,
        on_swap: Callable[[Deployment], None] | None = None,
        swap_runner: Callable[[Callable[[], None]], None] | None = None,
        loader: Loader = load_model,
        on_registry_error: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not refresh_seconds > 0:
            raise ValueError(f"refresh_seconds must be > 0, got {refresh_seconds}")
        self.model_name = model_name
        self.spec = spec
        self.signature = signature_of(spec)
        self.registry = registry
        self.artifacts = artifacts
        self.required_gates = tuple(required_gates)
        self.refresh_seconds = float(refresh_seconds)
        self.retry_seconds = float(retry_seconds)
        self.on_swap = on_swap
        self.swap_runner = swap_runner or _run_now
        self.loader = loader
        self.on_registry_error = on_registry_error
        self.clock = clock
        self._current: Deployment | None = None
        self._lock = threading.Lock()
        self._versions: dict[int, VersionReadiness] = {}
        self._failed: dict[tuple[int, str], tuple[str, float]] = {}
        self._loaded: dict[tuple[int, str], ServedVersion] = {}
        self._last_key: tuple[Any, ...] | None = None
        self._pending_retry = False
        self._registry_errors = 0
        self._last_error = ""
        self._swaps = 0
        self._polls = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reading -------------------------------------------------------------------------------------------------

    @property
    def current(self) -> Deployment | None:
        """The snapshot being served (``None`` until a champion verified); take it once per request."""
        return self._current

    def status(self) -> WatcherStatus:
        """The watcher's state now (a copy)."""
        with self._lock:
            current = self._current
            return WatcherStatus(
                model_name=self.model_name,
                serving=None
                if current is None
                else (current.champion.version, current.challenger.version if current.challenger else None),
                versions=dict(self._versions),
                registry_errors=self._registry_errors,
                last_error=self._last_error,
                swaps=self._swaps,
                polls=self._polls,
            )

    # -- the poll ------------------------------------------------------------------------------------------------

    def _observe(self) -> _Observed:
        return _Observed(
            champion=self.registry.get_alias(self.model_name, CHAMPION_ALIAS),
            challenger=self.registry.get_alias(self.model_name, CHALLENGER_ALIAS),
            rollout=self.registry.active_rollout(self.model_name),
        )

    def _judge(self, record: Any, role: str) -> ServedVersion | None:
        """Load and verify ``record`` (artifact, then gate evidence); ``None`` and a reason recorded when it fails."""
        key = (int(record.version), str(record.artifact_sha256))
        if key in self._loaded:
            self._set_readiness(VersionReadiness(key[0], role, True))
            return self._loaded[key]
        failed = self._failed.get(key)
        if failed is not None and self.clock() - failed[1] < self.retry_seconds:
            self._pending_retry = True
            self._set_readiness(VersionReadiness(key[0], role, False, failed[0]))
            return None
        reason = ""
        served: ServedVersion | None = None
        # A registry error here propagates (counted as one by refresh, retried at the next poll).
        outcomes = self.registry.gate_outcomes(self.model_name, key[0])
        problems = refusals(judge_evidence(self.required_gates, outcomes, version=key[0], artifact_sha256=key[1]))
        if not self.required_gates:
            problems = ["no required gates configured: refusing to serve unverified"]
        if problems:
            reason = "gate evidence not all passed: " + "; ".join(problems)
        else:
            try:
                pipeline = self.loader(self.artifacts, record.artifact)
                served = ServedVersion(version=key[0], pipeline=pipeline, artifact_sha256=key[1])
            except Exception as exc:  # any failure to read, verify or decode the artifact: fail closed, say why
                reason = f"artifact refused: {type(exc).__name__}: {exc}"
        if served is None:
            LOG.warning("%s v%s (%s) is not served: %s", self.model_name, key[0], role, reason)
            self._failed[key] = (reason, self.clock())
            self._pending_retry = True
            self._last_error = f"v{key[0]}: {reason}"
            self._set_readiness(VersionReadiness(key[0], role, False, reason))
            return None
        self._failed.pop(key, None)
        self._loaded[key] = served
        self._set_readiness(VersionReadiness(key[0], role, True))
        return served

    def _set_readiness(self, readiness: VersionReadiness) -> None:
        with self._lock:
            self._versions[readiness.version] = readiness

    def refresh(self) -> bool:
        """Poll the registry once and install a new snapshot if the routing configuration changed.

        Returns:
            Whether a new snapshot was installed. Registry errors are counted, never raised.
        """
        with self._lock:
            self._polls += 1
        try:
            observed = self._observe()
        except Exception as exc:  # the database is down or refused: keep serving what serves
            self._registry_error(exc)
            return False
        if observed.key == self._last_key and not self._pending_retry:
            return False
        self._last_key = observed.key
        self._pending_retry = False
        try:
            return self._build_and_install(observed)
        except Exception as exc:  # a registry read inside the judgement failed
            self._registry_error(exc)
            self._pending_retry = True
            return False

    def _registry_error(self, exc: Exception) -> None:
        with self._lock:
            self._registry_errors += 1
            self._last_error = f"registry read failed: {type(exc).__name__}: {exc}"
        LOG.warning("%s: %s", self.model_name, self._last_error)
        if self.on_registry_error is not None:
            self.on_registry_error()

    def _build_and_install(self, observed: _Observed) -> bool:
        if observed.champion is None:
            # Nothing in production: nothing new to serve. A snapshot already serving keeps serving (fail closed is
            # about never serving unverified models; retiring production without replacement is rare and the
            # last verified champion is the safest answer).
            with self._lock:
                self._last_error = "no version holds the champion alias"
            return False
        champion = self._judge(observed.champion, CHAMPION_ALIAS)
        if champion is None:
            return False
        challenger = None
        if observed.challenger is not None:
            challenger = self._judge(observed.challenger, CHALLENGER_ALIAS)
        routing = routing_for(
            self.model_name, challenger.version if challenger is not None else None, observed.rollout, None
        )
        deployment = Deployment(
            model_name=self.model_name,
            spec=self.spec,
            signature=self.signature,
            champion=champion,
            challenger=challenger,
            routing=routing,
            decision_threshold=float(self.spec.policy.evaluation.decision_threshold),
        )
        current = self._current
        if current is not None and current.config_key == deployment.config_key:
            return False
        self.swap_runner(lambda: self.install(deployment))
        # Keep only the loaded versions the snapshot serves (older pipelines are released).
        keep = {(v.version, v.artifact_sha256) for v in (champion, challenger) if v is not None}
        self._loaded = {k: v for k, v in self._loaded.items() if k in keep}
        return True

    def install(self, deployment: Deployment) -> None:
        """Make ``deployment`` the served snapshot (one reference assignment), then call ``on_swap`` with it."""
        with self._lock:
            self._current = deployment
            self._swaps += 1
        if self.on_swap is not None:
            self.on_swap(deployment)

    # -- the thread ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background polling thread (a daemon; :meth:`stop` ends it). Polls once first, in the thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"mlops-serve-watch-{self.model_name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # never let the watcher die: log and poll again
                LOG.exception("%s: watcher poll failed", self.model_name)
            self._stop.wait(self.refresh_seconds)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling and wait (up to ``timeout`` seconds) for the thread to end."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


def readiness_by_version(status: WatcherStatus) -> Mapping[int, VersionReadiness]:
    """The per-version readiness of a status, with the served versions marked ready (for the version endpoints)."""
    versions = dict(status.versions)
    if status.serving is not None:
        champion, challenger = status.serving
        versions.setdefault(champion, VersionReadiness(champion, CHAMPION_ALIAS, True))
        if challenger is not None:
            versions.setdefault(challenger, VersionReadiness(challenger, CHALLENGER_ALIAS, True))
    return versions
