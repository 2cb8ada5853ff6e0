"""The pending backlogs of the drift and performance retrain sensors, as pure state machines. No Dagster, no I/O.

A retrain sensor of a model reads only NEW ``drift_report`` / ``performance_report`` (and ``labels``)
materializations; what fired but could not be acted on yet waits in its cursor:

* :class:`DriftBacklog` — data versions whose latest ``drift_report`` says the data set drifted, each with the
  storage id of that report, whether the version is labelled, and the evidence to put on the retrain. A later
  report of the version that does not say "drifted" removes it; at most :data:`MAX_PENDING` versions are kept
  (the newest reports). Once the backlog is judged against the model now in production, a version whose drift
  was measured against another model (or an unknown one: a report without identity) is dropped, and the
  newest labelled version (in the order the data versions were registered) becomes the retrain candidate.
* :class:`PerformanceBacklog` — the latest SLA breach of a production model, until a later report within the SLA
  clears it; judged against the model now in production, its candidate is the newest labelled data version.
* :class:`EstimateBacklog` — the latest *estimated* SLA breach (``performance_estimate``: CBPE below the floor,
  before labels exist), until a later estimate within the SLA clears it; its candidate is the newest labelled data
  version, and only when that version is newer than the production model's training data (otherwise it waits for
  labels). Evidence acted on is remembered (``acted``): a re-materialized estimate of the same version and model
  does not fire again.

Each ``step_*`` function takes the backlog, the new events (typed summaries), what is labelled, and the
model now in production with its retraining policy, and returns the next backlog, at most one
:class:`Candidate` and, when nothing is to be requested, the skip reason. The sensor decides the candidate
(:func:`mlops_assets.ml.triggers.decide`, active rollouts) and hands the decision back to
:meth:`DriftStep.settle` / :meth:`PerformanceStep.settle`, which returns the backlog to store.

Anything that costs a query (whether a version is labelled, the registered order of data versions, the model
now in production, the newest labelled version) may be passed as a callable: it is called only when the
step needs it, exactly when the sensors asked the instance before this module existed.

``to_cursor()`` / ``from_cursor()`` read and write the sensors' cursor JSON unchanged
(``{"drift": id, "labels": id, "pending": {version: {"sid", "labelled", "evidence"}}}`` and
``{"performance": id, "pending": evidence | null}``), so existing cursors keep working.
"""

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self, TypeAlias, TypeVar

from mlops_assets.ml import json_codec
from mlops_assets.ml.summaries import DriftSummary, EstimateSummary, PerformanceSummary, display_model
from mlops_assets.ml.triggers import RetrainDecision, RetrainPolicy, newest_labelled

#: Drifted versions remembered while they wait for labels (or for the cooldown); older ones are superseded.
MAX_PENDING = 200

_T = TypeVar("_T")

#: A value, or a callable returning it when (and only if) a step needs it.
Lazy: TypeAlias = _T | Callable[[], _T]


def _get(value: Lazy[_T]) -> _T:
    return value() if callable(value) else value  # type: ignore[return-value]


def _is_labelled(labelled: Callable[[str], bool] | Collection[str], version: str) -> bool:
    return labelled(version) if callable(labelled) else version in labelled


def load_cursor(raw: str | None) -> dict[str, Any]:
    """A sensor cursor as a dict; empty when absent, unreadable or not an object (the tick starts over)."""
    if not raw:
        return {}
    try:
        loaded = json_codec.loads(raw)
    except json_codec.JSONDecodeError:
        return {}  # an unreadable cursor starts over: the hygiene rules still prevent duplicate retrains
    return loaded if isinstance(loaded, dict) else {}


def dump_cursor(state: Mapping[str, Any]) -> str:
    """A sensor cursor as compact, sorted, standard JSON."""
    return json_codec.dumps(state, sort_keys=True, separators=(",", ":"))


def _mark(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Production:
    """What a backlog is judged against: the model now in production and the retraining policy of its spec.

    Attributes:
        model: The registered model name (``model.spec().name``, the model's name).
        version: Its registry version now in production; ``None`` when nothing is in production.
        policy: The spec's ``retraining`` section.
        trained_on: The data versions the production model was trained on (read by the estimated-performance
            step only: a retrain on one of them would train the same model again).
    """

    model: str
    version: int | None
    policy: RetrainPolicy
    trained_on: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``"flights v3"`` (``"none"``) for messages only: identities are compared as ``(model, version)``."""
        return display_model(self.model, self.version)


@dataclass(frozen=True)
class Candidate:
    """A retrain a backlog asks for: on ``data_version``, because of ``reason``, with ``evidence`` (the tag).

    ``supersedes``: the pending versions a retrain on ``data_version`` settles (itself and older drifted ones).
    """

    reason: str
    data_version: str
    evidence: Mapping[str, Any]
    supersedes: tuple[str, ...] = ()


# -- drift ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftEvent:
    """One new ``drift_report`` materialization: its partition (``None``: unpartitioned), storage id and summary."""

    data_version: str | None
    storage_id: int
    summary: DriftSummary


@dataclass(frozen=True)
class PendingDrift:
    """A drifted data version waiting for labels or the cooldown.

    Attributes:
        data_version: The data version.
        storage_id: Storage id of its latest drift report (the cap keeps the largest).
        labelled: Whether its labels were seen.
        evidence: :meth:`DriftSummary.evidence` of that report (the retrain's ``mlops/evidence``); evidence kept
            from before the typed keys has no identity and is dropped when judged (fail closed).
    """

    data_version: str
    storage_id: int
    labelled: bool
    evidence: Mapping[str, Any]

    def measured_against(self, model: str, version: int | None) -> bool:
        return version is not None and DriftSummary.from_metadata(self.evidence).measured_against(model, version)

    def to_cursor(self) -> dict[str, Any]:
        return {"sid": self.storage_id, "labelled": self.labelled, "evidence": dict(self.evidence)}


@dataclass(frozen=True)
class DriftBacklog:
    """The drift sensor's cursor: event-log high-water marks and the pending drifted versions (cursor order).

    Attributes:
        drift_mark: Storage id of the last ``drift_report`` event read (``None``: none yet).
        labels_mark: Storage id of the last ``labels`` event read.
        pending: The pending versions, in the order the sensor's dict kept them.
    """

    drift_mark: int | None = None
    labels_mark: int | None = None
    pending: tuple[PendingDrift, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.pending)

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(p.data_version for p in self.pending)

    def get(self, data_version: str) -> PendingDrift | None:
        return next((p for p in self.pending if p.data_version == data_version), None)

    def to_cursor(self) -> str:
        return dump_cursor(
            {
                "drift": self.drift_mark,
                "labels": self.labels_mark,
                "pending": {p.data_version: p.to_cursor() for p in self.pending},
            }
        )

    @classmethod
    def from_cursor(cls, raw: str | None) -> Self:
        """Read a cursor written by the drift sensor (any release); unreadable parts start over (empty)."""
        state = load_cursor(raw)
        pending: list[PendingDrift] = []
        raw_pending = state.get("pending")
        for version, entry in (raw_pending if isinstance(raw_pending, dict) else {}).items():
            if not isinstance(entry, dict) or _mark(entry.get("sid")) is None:
                continue  # malformed entry: forgotten (a later drift report brings it back)
            evidence = entry.get("evidence")
            pending.append(
                PendingDrift(
                    data_version=str(version),
                    storage_id=entry["sid"],
                    labelled=entry.get("labelled") is True,
                    evidence=evidence if isinstance(evidence, dict) else {},
                )
            )
        return cls(_mark(state.get("drift")), _mark(state.get("labels")), tuple(pending))

    def ingest(
        self,
        events: Iterable[DriftEvent],
        *,
        newly_labelled: Collection[str] = (),
        is_labelled: Callable[[str], bool] | Collection[str] = (),
        drift_mark: int | None = None,
        labels_mark: int | None = None,
        max_pending: int = MAX_PENDING,
    ) -> "DriftBacklog":
        """The backlog after new drift reports (oldest first) and new labels.

        A report with ``dataset_drift`` true (re)adds its version as not labelled; any other report removes it
        (the latest report of a version decides). A pending version is labelled once it is in ``newly_labelled``
        (labels events read this tick) or, for a version whose drift report arrived this tick, when
        ``is_labelled(version)`` (its labels may have been read by an earlier tick). Beyond ``max_pending``
        versions, those with the newest reports are kept. ``drift_mark`` / ``labels_mark``: the new high-water
        marks (``None``: unchanged).
        """
        pending = {p.data_version: p for p in self.pending}
        arrived: set[str] = set()
        for event in events:
            version = event.data_version
            if not version:
                continue
            if event.summary.dataset_drift is True:
                pending[version] = PendingDrift(version, event.storage_id, False, event.summary.evidence(version))
                arrived.add(version)
            else:
                pending.pop(version, None)
        for version, entry in pending.items():
            if not entry.labelled and (
                version in newly_labelled or (version in arrived and _is_labelled(is_labelled, version))
            ):
                pending[version] = replace(entry, labelled=True)
        if len(pending) > max_pending:
            keep = sorted(pending, key=lambda v: pending[v].storage_id)[-max_pending:]
            pending = {v: pending[v] for v in keep}
        return DriftBacklog(
            self.drift_mark if drift_mark is None else drift_mark,
            self.labels_mark if labels_mark is None else labels_mark,
            tuple(pending.values()),
        )

    def without(self, versions: Collection[str]) -> "DriftBacklog":
        return replace(self, pending=tuple(p for p in self.pending if p.data_version not in versions))


def _registered_order(registered: Sequence[str], versions: Iterable[str]) -> list[str]:
    """``versions`` in the order they were registered (unregistered ones first, by name)."""
    wanted = set(versions)
    in_order = [v for v in registered if v in wanted]
    return sorted(wanted - set(in_order)) + in_order


@dataclass(frozen=True)
class DriftStep:
    """The outcome of :func:`step_drift_backlog`.

    Attributes:
        backlog: The backlog to store when no candidate is decided (``settle`` otherwise).
        candidate: The retrain to decide, or ``None``; then ``skip`` says why.
        skip: Why nothing is requested (``None`` with a candidate).
        notes: Log lines: pending drift dropped because it was measured against another model.
    """

    backlog: DriftBacklog
    candidate: Candidate | None = None
    skip: str | None = None
    notes: tuple[str, ...] = field(default=())

    def settle(self, decision: RetrainDecision | None) -> DriftBacklog:
        """The backlog to store once the candidate was decided (``None``: held by an active rollout).

        An allowed retrain, or one already requested (``duplicate``), on the newest drifted version settles the
        older drift signals too; any other refusal (cooldown, cap, in progress) keeps them waiting.
        """
        if self.candidate is None or decision is None:
            return self.backlog
        if decision.allowed or decision.rule == "duplicate":
            return self.backlog.without(self.candidate.supersedes)
        return self.backlog


def step_drift_backlog(
    backlog: DriftBacklog,
    events: Iterable[DriftEvent],
    *,
    newly_labelled: Collection[str],
    is_labelled: Callable[[str], bool] | Collection[str],
    production: Lazy[Production],
    registered: Lazy[Sequence[str]],
    drift_mark: int | None = None,
    labels_mark: int | None = None,
    max_pending: int = MAX_PENDING,
) -> DriftStep:
    """One drift sensor tick on the backlog: ingest the new events, judge against production, pick the candidate.

    Args:
        backlog: The stored backlog (:meth:`DriftBacklog.from_cursor`).
        events: New drift reports, oldest first.
        newly_labelled: Data versions whose labels events were read this tick (read BEFORE the drift events).
        is_labelled: Whether a version is labelled (a set, or a per-version query): asked only for versions
            whose drift report arrived this tick and whose labels were not read this tick.
        production: The model now in production and the policy; needed (called) only when something is pending.
        registered: The model's data versions in registration order; needed only to choose among
            several pending versions.
        drift_mark, labels_mark: The new event-log high-water marks (``None``: unchanged).
        max_pending: Cap on pending versions.
    """
    after = backlog.ingest(
        events,
        newly_labelled=newly_labelled,
        is_labelled=is_labelled,
        drift_mark=drift_mark,
        labels_mark=labels_mark,
        max_pending=max_pending,
    )
    if not after:
        return DriftStep(after, skip="no drifted data version waiting for a retrain")
    now = _get(production)
    notes = []
    for dropped in after.pending:
        if not dropped.measured_against(now.model, now.version):
            measured = DriftSummary.from_metadata(dropped.evidence)
            against = (
                measured.compared_with if measured.identity_known else "an unknown model (report without identity)"
            )
            notes.append(
                f"drift on {dropped.data_version} was measured against {against}, production is {now.label}: dropped"
            )
    kept = replace(after, pending=tuple(p for p in after.pending if p.measured_against(now.model, now.version)))
    ready = [p.data_version for p in kept.pending if p.labelled]
    if not now.policy.enabled("drift"):
        skip = f"trigger 'drift' is not enabled in the spec (retraining.triggers: {list(now.policy.triggers)})"
        return DriftStep(replace(kept, pending=()), skip=skip, notes=tuple(notes))
    if not kept:
        skip = f"no drift against the production model ({now.label}) waiting for a retrain"
        return DriftStep(kept, skip=skip, notes=tuple(notes))
    if not ready:
        skip = f"drifted data versions wait for labels: {', '.join(sorted(kept.versions))}"
        return DriftStep(kept, skip=skip, notes=tuple(notes))
    versions = kept.versions
    order = sorted(versions) if len(versions) <= 1 else _registered_order(_get(registered), versions)
    target = max(ready, key=order.index)
    entry = kept.get(target)
    assert entry is not None
    candidate = Candidate("drift", target, entry.evidence, tuple(order[: order.index(target) + 1]))
    return DriftStep(kept, candidate=candidate, notes=tuple(notes))


# -- performance ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerformanceEvent:
    """One new ``performance_report`` materialization: its partition (``None``: unpartitioned) and summary."""

    data_version: str | None
    summary: PerformanceSummary


@dataclass(frozen=True)
class PerformanceBacklog:
    """The performance sensor's cursor: the high-water mark and the pending SLA breach (its evidence), if any."""

    mark: int | None = None
    pending: Mapping[str, Any] | None = None

    def __bool__(self) -> bool:
        return self.pending is not None

    def to_cursor(self) -> str:
        return dump_cursor({"performance": self.mark, "pending": None if self.pending is None else dict(self.pending)})

    @classmethod
    def from_cursor(cls, raw: str | None) -> Self:
        """Read a cursor written by the performance sensor (any release); unreadable parts start over."""
        state = load_cursor(raw)
        pending = state.get("pending")
        return cls(_mark(state.get("performance")), pending if isinstance(pending, dict) else None)

    def ingest(self, events: Iterable[PerformanceEvent], *, mark: int | None = None) -> "PerformanceBacklog":
        """The backlog after new reports (oldest first): the latest report measured by a production model decides.

        A breach becomes pending; a report within the SLA (or unknown) clears it; a report that nothing in
        production scored says nothing and is skipped. ``mark``: the new high-water mark (``None``: unchanged).
        """
        pending = self.pending
        for event in events:
            if not event.data_version or event.summary.production_version is None:
                continue
            pending = event.summary.evidence(event.data_version) if event.summary.sla_breached is True else None
        return PerformanceBacklog(self.mark if mark is None else mark, pending)


def _breach_concerns(evidence: Mapping[str, Any], model: str, version: int) -> bool:
    """Whether a pending breach measured ``(model, version)``; without a model name: unknown, ``False``."""
    summary = PerformanceSummary(model=evidence.get("model"), production_version=evidence.get("production_version"))
    return summary.measured(model, version)


@dataclass(frozen=True)
class PerformanceStep:
    """The outcome of :func:`step_performance_backlog` (attributes as :class:`DriftStep`)."""

    backlog: PerformanceBacklog
    candidate: Candidate | None = None
    skip: str | None = None

    def settle(self, decision: RetrainDecision | None) -> PerformanceBacklog:
        """The backlog to store once the candidate was decided (``None``: held by an active rollout).

        Allowed, ``duplicate`` or ``disabled``: the breach is settled; cooldown, cap, in progress: it waits.
        """
        if self.candidate is None or decision is None:
            return self.backlog
        if decision.allowed or decision.rule in ("duplicate", "disabled"):
            return replace(self.backlog, pending=None)
        return self.backlog


def step_performance_backlog(
    backlog: PerformanceBacklog,
    events: Iterable[PerformanceEvent],
    *,
    production: Lazy[Production],
    newest_labelled_version: Lazy[str | None],
    mark: int | None = None,
) -> PerformanceStep:
    """One performance sensor tick on the backlog: ingest the new reports, judge the breach, pick the candidate.

    Args:
        backlog: The stored backlog (:meth:`PerformanceBacklog.from_cursor`).
        events: New performance reports, oldest first.
        production: The model now in production and the policy; needed only while a breach is pending.
        newest_labelled_version: The retrain target (:func:`newest_labelled_of`); needed only for a breach of the
            model now in production with the trigger enabled.
        mark: The new event-log high-water mark (``None``: unchanged).
    """
    after = backlog.ingest(events, mark=mark)
    if after.pending is None:
        return PerformanceStep(after, skip="no SLA breach of the production model waiting for a retrain")
    pending = after.pending
    now = _get(production)
    cleared = replace(after, pending=None)
    if not now.policy.enabled("performance"):
        skip = f"trigger 'performance' is not enabled in the spec (retraining.triggers: {list(now.policy.triggers)})"
        return PerformanceStep(cleared, skip=skip)
    if now.version is None or not _breach_concerns(pending, now.model, now.version):
        measured = display_model(pending.get("model"), pending.get("production_version"))
        if pending.get("model") is None:
            measured = f"{measured} of an unknown model (report without production_model)"
        skip = (
            f"the SLA breach on {pending.get('data_version')} concerned {measured}, production is {now.label}: dropped"
        )
        return PerformanceStep(cleared, skip=skip)
    target = _get(newest_labelled_version)
    if target is None:
        return PerformanceStep(after, skip="SLA breached, but no data version is labelled yet")
    return PerformanceStep(after, candidate=Candidate("performance", target, pending))


def newest_labelled_of(versions: Lazy[Sequence[str]], labelled: Lazy[Collection[str]]) -> Callable[[], str | None]:
    """A lazy :func:`mlops_assets.ml.triggers.newest_labelled` for ``newest_labelled_version``."""
    return lambda: newest_labelled(_get(versions), _get(labelled))


# -- estimated performance (CBPE) -------------------------------------------------------------------------------------

#: Estimates acted on that are remembered (older ones are forgotten; the run key still de-duplicates their retrain).
MAX_ACTED = 200


@dataclass(frozen=True)
class EstimateEvent:
    """One new ``performance_estimate`` materialization: its partition (``None``: unpartitioned) and summary."""

    data_version: str | None
    summary: EstimateSummary


def _acted_key(evidence: Mapping[str, Any]) -> tuple[str, str, int] | None:
    """``(estimated data version, model, production version)`` of an estimate's evidence; ``None`` when unknown."""
    version, model, production = evidence.get("data_version"), evidence.get("model"), evidence.get("production_version")
    number = _mark(production)
    if not isinstance(version, str) or not isinstance(model, str) or number is None:
        return None
    return version, model, number


@dataclass(frozen=True)
class EstimateBacklog:
    """The estimated-performance sensor's cursor.

    Attributes:
        mark: Storage id of the last ``performance_estimate`` event read (``None``: none yet).
        pending: The evidence of the latest estimated SLA breach not yet acted on (``None``: none).
        acted: ``(estimated data version, model, production version)`` of the breaches a retrain was requested
            (or found already requested) for, oldest first, at most :data:`MAX_ACTED`: the same evidence seen again
            (a re-materialized estimate) does not fire again.
    """

    mark: int | None = None
    pending: Mapping[str, Any] | None = None
    acted: tuple[tuple[str, str, int], ...] = ()

    def __bool__(self) -> bool:
        return self.pending is not None

    def to_cursor(self) -> str:
        return dump_cursor(
            {
                "estimate": self.mark,
                "pending": None if self.pending is None else dict(self.pending),
                "acted": [list(key) for key in self.acted],
            }
        )

    @classmethod
    def from_cursor(cls, raw: str | None) -> Self:
        """Read a cursor written by the estimated-performance sensor; unreadable parts start over (empty)."""
        state = load_cursor(raw)
        pending = state.get("pending")
        acted: list[tuple[str, str, int]] = []
        raw_acted = state.get("acted")
        for entry in raw_acted if isinstance(raw_acted, list) else []:
            if (
                isinstance(entry, list)
                and len(entry) == 3
                and isinstance(entry[0], str)
                and isinstance(entry[1], str)
                and _mark(entry[2]) is not None
            ):
                acted.append((entry[0], entry[1], entry[2]))
        return cls(_mark(state.get("estimate")), pending if isinstance(pending, dict) else None, tuple(acted))

    def ingest(self, events: Iterable[EstimateEvent], *, mark: int | None = None) -> "EstimateBacklog":
        """The backlog after new estimates (oldest first): the latest estimate of a production model decides.

        An estimate below the floor becomes pending unless the same evidence (version, model, production version)
        was acted on; an estimate within the SLA clears the pending one; an estimate that could not be made (no
        model scored, no calibration map: ``estimated_below_floor`` unknown) says nothing and is skipped.
        """
        pending = self.pending
        acted = set(self.acted)
        for event in events:
            summary = event.summary
            if not event.data_version or summary.model_version is None or summary.estimated_below_floor is None:
                continue
            if summary.estimated_below_floor:
                evidence = summary.evidence(event.data_version)
                if _acted_key(evidence) not in acted:
                    pending = evidence
            else:
                pending = None
        return replace(self, mark=self.mark if mark is None else mark, pending=pending)

    def settled(self) -> "EstimateBacklog":
        """The pending breach acted on: cleared, and remembered in ``acted``."""
        key = _acted_key(self.pending or {})
        acted = self.acted if key is None or key in self.acted else (*self.acted, key)[-MAX_ACTED:]
        return replace(self, pending=None, acted=acted)


@dataclass(frozen=True)
class EstimateStep:
    """The outcome of :func:`step_estimate_backlog` (attributes as :class:`DriftStep`)."""

    backlog: EstimateBacklog
    candidate: Candidate | None = None
    skip: str | None = None

    def settle(self, decision: RetrainDecision | None) -> EstimateBacklog:
        """The backlog to store once the candidate was decided (``None``: held by an active rollout).

        Allowed, ``duplicate`` or ``disabled``: the breach is acted on (cleared and remembered, so the same evidence
        never fires again); cooldown, cap, in progress: it waits.
        """
        if self.candidate is None or decision is None:
            return self.backlog
        if decision.allowed or decision.rule in ("duplicate", "disabled"):
            return self.backlog.settled()
        return self.backlog


def step_estimate_backlog(
    backlog: EstimateBacklog,
    events: Iterable[EstimateEvent],
    *,
    production: Lazy[Production],
    newest_labelled_version: Lazy[str | None],
    mark: int | None = None,
) -> EstimateStep:
    """One estimated-performance sensor tick: ingest the new estimates, judge the breach, pick the candidate.

    The candidate is the newest labelled data version — labelled data the current version's estimate does not
    need — and only when the production model was not trained on it (``production.trained_on``): retraining on
    the same data would give the same model, so the breach waits for newer labels instead.

    Args:
        backlog: The stored backlog (:meth:`EstimateBacklog.from_cursor`).
        events: New ``performance_estimate`` summaries, oldest first.
        production: The model now in production, its training data versions and the policy; needed only while a
            breach is pending.
        newest_labelled_version: The retrain target (:func:`newest_labelled_of`); needed only for a breach of the
            model now in production with the trigger enabled.
        mark: The new event-log high-water mark (``None``: unchanged).
    """
    after = backlog.ingest(events, mark=mark)
    if after.pending is None:
        return EstimateStep(after, skip="no estimated SLA breach of the production model waiting for a retrain")
    pending = after.pending
    now = _get(production)
    cleared = replace(after, pending=None)
    if not now.policy.enabled("estimated_performance"):
        skip = (
            "trigger 'estimated_performance' is not enabled in the spec "
            f"(retraining.triggers: {list(now.policy.triggers)})"
        )
        return EstimateStep(cleared, skip=skip)
    estimated = EstimateSummary(model=pending.get("model"), model_version=pending.get("production_version"))
    if now.version is None or not estimated.measured(now.model, now.version):
        measured = display_model(pending.get("model"), pending.get("production_version"))
        skip = (
            f"the estimated SLA breach on {pending.get('data_version')} concerned {measured}, production is "
            f"{now.label}: dropped"
        )
        return EstimateStep(cleared, skip=skip)
    target = _get(newest_labelled_version)
    what = (
        f"estimated {pending.get('metric')} {pending.get('estimated')!r} < floor {pending.get('floor')!r} of "
        f"{now.label} on {pending.get('data_version')}"
    )
    if target is None:
        return EstimateStep(after, skip=f"{what}, but no data version is labelled yet: waiting for labels")
    if target in now.trained_on:
        skip = (
            f"{what}, but the newest labelled data version {target} is already in {now.label}'s training data: "
            "waiting for newer labels"
        )
        return EstimateStep(after, skip=skip)
    return EstimateStep(after, candidate=Candidate("estimated_performance", target, pending))
