"""Retraining triggers and their hygiene: when a retrain may be requested, and if not, why not. Pure, no Dagster.

A *trigger* is a reason to retrain (``drift``, ``performance``, ``stale``, ``schedule``, ...). Whatever fired,
:func:`decide` applies the same hygiene rules to the request, in this order, against the history of past
retrain requests of the model:

1. ``disabled`` — the reason is not among the spec's enabled triggers.
2. ``duplicate`` — the same reason, data version and code version was requested before (any outcome: a
   failed run fails again with the same code; a fixed release has another code version).
3. ``in_progress`` — a retrain of the model is queued or running, and has been for less than
   ``max_in_flight_hours`` (from its start, or its request while it has not started).
4. ``cooldown`` — the last retrain that did not fail started less than ``cooldown_hours`` ago.
5. ``daily_cap`` — ``max_retrains_per_day`` retrains (failed ones included) in the rolling last 24 h.

Canceled runs count for ``duplicate`` only. A run still "in flight" after ``max_in_flight_hours`` is presumed
dead (its worker was killed; the instance's run monitoring cancels any run after ``max_runtime_seconds``, which
the default bound exceeds): it blocks nothing and counts as failed (``daily_cap`` only), and every decision
names it in its message and in :attr:`RetrainDecision.ignored`.

:func:`assess_staleness` is the staleness rule (the production model is older than ``max_model_age_days``, or
its newest training data version is more than ``max_versions_behind`` labelled versions behind the newest
labelled version). Every function here is deterministic: ``now`` is passed in.
"""

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from mlops_assets.ml import json_codec

#: Every reason a retrain can have (the ``mlops/reason`` run tag).
REASONS: tuple[str, ...] = (
    "new_data",
    "new_labels",
    "drift",
    "performance",
    "estimated_performance",
    "stale",
    "schedule",
    "manual",
)
#: Enabled by default: retrain on evidence, on a schedule or by hand — not on every new version.
#: ``estimated_performance`` (the CBPE estimate of the production model fell below its SLA floor before the labels
#: landed) is evidence too: it retrains only on labelled data newer than the production model's training data, under
#: the same cooldown, cap and de-duplication, so a wrong estimate costs at most one retrain per cooldown and no loop
#: (docs/monitoring.md, "Performance before labels"). Remove it from ``retraining.triggers`` to wait for the labels.
DEFAULT_TRIGGERS: tuple[str, ...] = ("drift", "performance", "estimated_performance", "stale", "schedule", "manual")

#: Run statuses (lower case) of a retrain that is still going to train something.
IN_FLIGHT_STATUSES: frozenset[str] = frozenset(
    {"requested", "queued", "not_started", "managed", "starting", "started", "canceling"}
)
FAILED_STATUSES: frozenset[str] = frozenset({"failure"})
CANCELED_STATUSES: frozenset[str] = frozenset({"canceled"})

DAY = timedelta(hours=24)
_EVIDENCE_MAX_CHARS = 500
_EVIDENCE_MAX_STR = 160


class RetrainPolicyError(ValueError):
    """A retraining policy is malformed; the message names the key (and the file, when parsed from a spec)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)) and math.isfinite(value)


@dataclass(frozen=True)
class RetrainPolicy:
    """When retraining may be requested (the spec's ``retraining`` section).

    Attributes:
        triggers: Enabled reasons, a subset of :data:`REASONS`. A sensor or schedule whose reason is not listed
            requests nothing. ``manual`` launches are a human's decision and are never blocked by a sensor;
            they count in the history all the same.
        cooldown_hours: Minimum time between the start of a (non-failed) retrain and the next request. 0: none.
        max_retrains_per_day: Cap on retrains of the model in any rolling 24 h (failed ones included).
        max_model_age_days: The production model is stale when it was trained longer ago than this.
        max_versions_behind: ... or when more than this many labelled data versions arrived after the newest
            version it was trained on.
        max_in_flight_hours: A retrain queued or running for longer than this (hours since it started, or since
            it was requested if it never started) is presumed dead and no longer blocks triggers. Default 1.5 h:
            above the instance's ``run_monitoring.max_runtime_seconds`` (3600 s) plus ``cancel_timeout_seconds``
            (180 s) in ``dagster.yaml`` and ``deploy/dagster.yaml``, after which the daemon has ended any run.
    """

    triggers: tuple[str, ...] = DEFAULT_TRIGGERS
    cooldown_hours: float = 6.0
    max_retrains_per_day: int = 4
    max_model_age_days: float = 30.0
    max_versions_behind: int = 3
    max_in_flight_hours: float = 1.5

    def __post_init__(self) -> None:
        triggers = self.triggers
        if isinstance(triggers, str) or not isinstance(triggers, Iterable):
            raise RetrainPolicyError(f"retraining.triggers must be a list of reasons, got {triggers!r}")
        triggers = tuple(triggers)
        unknown = [t for t in triggers if t not in REASONS]
        if unknown:
            raise RetrainPolicyError(f"retraining.triggers: unknown reasons {unknown}; known: {list(REASONS)}")
        if len(set(triggers)) != len(triggers):
            raise RetrainPolicyError(f"retraining.triggers lists a reason twice: {list(triggers)}")
        object.__setattr__(self, "triggers", triggers)
        if not _is_number(self.cooldown_hours) or self.cooldown_hours < 0:
            raise RetrainPolicyError(f"retraining.cooldown_hours must be a number >= 0, got {self.cooldown_hours!r}")
        if not _is_int(self.max_retrains_per_day) or self.max_retrains_per_day < 1:
            raise RetrainPolicyError(
                f"retraining.max_retrains_per_day must be an integer >= 1 (disable triggers instead), "
                f"got {self.max_retrains_per_day!r}"
            )
        if not _is_number(self.max_model_age_days) or self.max_model_age_days <= 0:
            raise RetrainPolicyError(
                f"retraining.max_model_age_days must be a number > 0, got {self.max_model_age_days!r}"
            )
        if not _is_int(self.max_versions_behind) or self.max_versions_behind < 0:
            raise RetrainPolicyError(
                f"retraining.max_versions_behind must be an integer >= 0, got {self.max_versions_behind!r}"
            )
        if not _is_number(self.max_in_flight_hours) or self.max_in_flight_hours <= 0:
            raise RetrainPolicyError(
                f"retraining.max_in_flight_hours must be a number > 0, got {self.max_in_flight_hours!r}"
            )
        object.__setattr__(self, "cooldown_hours", float(self.cooldown_hours))
        object.__setattr__(self, "max_in_flight_hours", float(self.max_in_flight_hours))
        object.__setattr__(self, "max_model_age_days", float(self.max_model_age_days))

    def enabled(self, reason: str) -> bool:
        """Whether retrains for ``reason`` may be requested at all."""
        return reason in self.triggers

    @property
    def cooldown(self) -> timedelta:
        return timedelta(hours=self.cooldown_hours)

    @property
    def max_model_age(self) -> timedelta:
        return timedelta(days=self.max_model_age_days)

    @property
    def max_in_flight(self) -> timedelta:
        return timedelta(hours=self.max_in_flight_hours)

    @property
    def history_horizon(self) -> timedelta:
        """How far back :func:`decide` looks (apart from duplicates and runs still in flight)."""
        return max(DAY, self.cooldown)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def retrain_policy_from_dict(raw: Any, where: str = "<dict>") -> RetrainPolicy:
    """Parse the ``retraining`` section of a spec (``None``: all defaults).

    Raises:
        RetrainPolicyError: naming ``where`` and the key.
    """
    if raw is None:
        return RetrainPolicy()
    if not isinstance(raw, Mapping):
        raise RetrainPolicyError(f"{where}: 'retraining' must be a mapping")
    known = {f.name for f in fields(RetrainPolicy)}
    if set(raw) - known:
        raise RetrainPolicyError(f"{where}: unknown retraining keys {sorted(set(raw) - known)}; known: {sorted(known)}")
    values = dict(raw)
    if "triggers" in values:
        triggers = values["triggers"]
        if triggers is None:
            triggers = []
        if isinstance(triggers, str) or not isinstance(triggers, list | tuple):
            raise RetrainPolicyError(f"{where}: retraining.triggers must be a list of reasons, got {triggers!r}")
        values["triggers"] = tuple(triggers)
    try:
        return RetrainPolicy(**values)
    except RetrainPolicyError as exc:
        raise RetrainPolicyError(f"{where}: {exc}") from exc


# -- history and decisions --------------------------------------------------------------------------------------------


def _aware(when: datetime, what: str) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {when!r}")
    return when


@dataclass(frozen=True)
class RetrainRecord:
    """One past retrain request (a run of the retrain job, or a request not yet launched).

    Attributes:
        at: When it was requested (run creation time), timezone-aware.
        reason: Its ``mlops/reason`` (runs launched by hand without one count as ``manual``).
        data_version: The data version it trains on.
        package_version: The mlops_assets package version that requested it ("" when unknown, e.g. a manual launch).
        status: Lower-case run status (``queued``, ``started``, ``success``, ``failure``, ``canceled``...), or
            ``requested``.
        model: The model it retrains ("" when unknown: it then counts for every model).
        started_at: When its run started (``None`` while it has not), timezone-aware.
    """

    at: datetime
    reason: str
    data_version: str
    package_version: str = ""
    status: str = "requested"
    model: str = ""
    started_at: datetime | None = None

    def __post_init__(self) -> None:
        _aware(self.at, "RetrainRecord.at")
        if self.started_at is not None:
            _aware(self.started_at, "RetrainRecord.started_at")
        object.__setattr__(self, "status", self.status.lower())

    @property
    def in_flight(self) -> bool:
        return self.status in IN_FLIGHT_STATUSES

    def presumed_dead(self, now: datetime, bound: timedelta) -> bool:
        """In flight for longer than ``bound`` (since it started, else since it was requested) at ``now``."""
        return self.in_flight and (self.started_at or self.at) <= now - bound

    def describe(self) -> str:
        """``<reason> on <data version> (<status>, requested <time>)``."""
        return f"{self.reason} on {self.data_version} ({self.status}, requested {_fmt(self.at)})"

    @property
    def canceled(self) -> bool:
        return self.status in CANCELED_STATUSES

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    def concerns(self, model: str) -> bool:
        return not self.model or self.model == model


@dataclass(frozen=True)
class RetrainRequest:
    """A retrain a trigger wants: retrain ``model`` on ``data_version`` because of ``reason``, at ``at``."""

    reason: str
    data_version: str
    model: str
    package_version: str
    at: datetime

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown retrain reason {self.reason!r}; known: {list(REASONS)}")
        _aware(self.at, "RetrainRequest.at")

    @property
    def run_key(self) -> str:
        return run_key(self.reason, self.data_version, self.package_version)

    def as_record(self) -> RetrainRecord:
        """The history entry this request becomes once it is made."""
        return RetrainRecord(
            at=self.at,
            reason=self.reason,
            data_version=self.data_version,
            package_version=self.package_version,
            model=self.model,
        )


def run_key(reason: str, data_version: str, package_version: str) -> str:
    """``retrain:<reason>:<data version>:<code version>`` — one run per trigger, version and release."""
    return f"retrain:{reason}:{data_version}:{package_version}"


@dataclass(frozen=True)
class RetrainDecision:
    """Allowed or not, by which rule, and a sentence saying why.

    ``rule`` is ``allowed``, ``disabled``, ``duplicate``, ``in_progress``, ``cooldown`` or ``daily_cap``.
    ``ignored`` describes the in-flight runs presumed dead (older than ``max_in_flight_hours``), which the
    decision did not count as in progress; the message says so too.
    """

    allowed: bool
    rule: str
    message: str
    ignored: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"allowed": self.allowed, "rule": self.rule, "message": self.message}
        if self.ignored:
            out["ignored_in_flight"] = list(self.ignored)
        return out


def _fmt(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


def decide(policy: RetrainPolicy, request: RetrainRequest, history: Iterable[RetrainRecord]) -> RetrainDecision:
    """Whether ``request`` may be made now, given the model's past retrain requests (any order).

    The rules and their order are in the module docstring. Records of other models are ignored; records
    without a model count for every model.
    """
    what = f"retrain of {request.model} on {request.data_version} ({request.reason})"
    if not policy.enabled(request.reason):
        return RetrainDecision(
            False,
            "disabled",
            f"{what}: trigger {request.reason!r} is not enabled (retraining.triggers: "
            f"{', '.join(policy.triggers) or 'none'})",
        )
    now = request.at
    mine = [r for r in history if r.concerns(request.model)]
    dead = sorted(  # by value, so that the message does not depend on the history's order
        (r for r in mine if r.presumed_dead(now, policy.max_in_flight)),
        key=lambda x: (x.at, x.reason, x.data_version, x.package_version, x.status, x.model),
    )
    ignored = tuple(r.describe() for r in dead)
    note = (
        f"; ignored {len(dead)} in-flight run(s) older than {policy.max_in_flight_hours:g} h, presumed dead: "
        + "; ".join(ignored)
        if dead
        else ""
    )

    def decision(allowed: bool, rule: str, message: str) -> RetrainDecision:
        return RetrainDecision(allowed, rule, message + note, ignored)

    for r in mine:
        if (r.reason, r.data_version, r.package_version) == (
            request.reason,
            request.data_version,
            request.package_version,
        ):
            return decision(
                False,
                "duplicate",
                f"{what}: already requested at {_fmt(r.at)} with package version {request.package_version} "
                f"(status {r.status})",
            )
    if request.reason != "manual" and request.package_version:
        # Another trigger on a version this code already retrained would train the same model again.
        same = [
            r
            for r in mine
            if (r.data_version, r.package_version) == (request.data_version, request.package_version) and not r.canceled
        ]
        if same:
            r = max(same, key=lambda x: (x.at, x.reason))
            return decision(
                False,
                "duplicate",
                f"{what}: {request.data_version} was already retrained with package version {request.package_version} "
                f"({r.reason}, requested {_fmt(r.at)}, status {r.status}); the same data and code give the same model",
            )
    in_flight = [r for r in mine if r.in_flight and r not in dead]
    if in_flight:
        r = max(in_flight, key=lambda x: (x.at, x.data_version, x.reason))  # ties broken by value, not order
        return decision(
            False,
            "in_progress",
            f"{what}: a retrain is already {r.status} ({r.reason} on {r.data_version}, requested {_fmt(r.at)})",
        )
    cooling = [r for r in mine if not r.failed and not r.canceled and r not in dead and r.at > now - policy.cooldown]
    if cooling:
        last = max(cooling, key=lambda x: (x.at, x.data_version, x.reason))
        return decision(
            False,
            "cooldown",
            f"{what}: cooldown — the last retrain ({last.reason} on {last.data_version}) was "
            f"{_hours(now - last.at)} ago, cooldown is {policy.cooldown_hours:g} h; next allowed after "
            f"{_fmt(last.at + policy.cooldown)}",
        )
    in_day = sorted((r.at for r in mine if not r.canceled and r.at > now - DAY), reverse=True)
    if len(in_day) >= policy.max_retrains_per_day:
        # The request becomes allowed once the cap-th most recent retrain leaves the window.
        free_at = in_day[policy.max_retrains_per_day - 1] + DAY
        return decision(
            False,
            "daily_cap",
            f"{what}: {len(in_day)} retrains in the last 24 h, cap is "
            f"{policy.max_retrains_per_day}; next allowed after {_fmt(free_at)}",
        )
    return decision(True, "allowed", f"{what}: allowed")


# -- staleness --------------------------------------------------------------------------------------------------------


def labelled_in_order(versions: Sequence[str], labelled: Collection[str]) -> list[str]:
    """The labelled data versions in the order of ``versions`` (the order they were registered)."""
    return [v for v in versions if v in labelled]


def newest_labelled(versions: Sequence[str], labelled: Collection[str]) -> str | None:
    """The most recently registered data version that has labels, or ``None``."""
    return next((v for v in reversed(versions) if v in labelled), None)


@dataclass(frozen=True)
class Staleness:
    """The staleness rule applied to the production model.

    Attributes:
        stale: The model is older than the maximum age, or too many labelled versions behind.
        actionable: Stale, and there is a labelled version newer than what it was trained on (retraining on
            the same data would reproduce the same model).
        message: Why (or why not).
        age_days: Days since the model was trained.
        versions_behind: Labelled versions registered after its newest training version (``None`` when none of
            its training versions is registered here).
        newest_trained: Its newest training data version that is registered here.
        newest_labelled: The newest labelled data version (the retrain target).
    """

    stale: bool
    actionable: bool
    message: str
    age_days: float
    versions_behind: int | None
    newest_trained: str | None
    newest_labelled: str | None

    def evidence(self) -> dict[str, Any]:
        return {
            "age_days": round(self.age_days, 2),
            "versions_behind": self.versions_behind,
            "trained_on": self.newest_trained,
            "newest_labelled": self.newest_labelled,
        }


def assess_staleness(
    policy: RetrainPolicy,
    *,
    now: datetime,
    trained_at: datetime,
    trained_on: Sequence[str],
    versions: Sequence[str],
    labelled: Collection[str],
) -> Staleness:
    """Apply the staleness rule.

    Args:
        policy: ``max_model_age_days`` and ``max_versions_behind``.
        now: The current time (timezone-aware).
        trained_at: When the production model was trained (registered).
        trained_on: The data versions it was trained on.
        versions: Every registered data version, oldest first.
        labelled: The data versions that have labels.
    """
    age = _aware(now, "now") - _aware(trained_at, "trained_at")
    age_days = age.total_seconds() / 86400
    order = {v: i for i, v in enumerate(versions)}
    known = [v for v in trained_on if v in order]
    newest_trained = max(known, key=order.__getitem__) if known else None
    target = newest_labelled(versions, labelled)
    behind: int | None = None
    if newest_trained is not None:
        behind = sum(1 for v in labelled_in_order(versions, labelled) if order[v] > order[newest_trained])
    too_old = age > policy.max_model_age
    too_far = behind is not None and behind > policy.max_versions_behind
    reasons = []
    if too_old:
        reasons.append(f"trained {age_days:.1f} days ago (max {policy.max_model_age_days:g})")
    if too_far:
        reasons.append(f"{behind} labelled versions behind (max {policy.max_versions_behind})")
    stale = too_old or too_far
    newer = target is not None and (newest_trained is None or order[target] > order[newest_trained])
    if not stale:
        behind_text = "unknown" if behind is None else str(behind)
        message = (
            f"fresh: trained {age_days:.1f} days ago (max {policy.max_model_age_days:g}), {behind_text} labelled "
            f"versions behind (max {policy.max_versions_behind})"
        )
    elif not newer:
        message = f"stale ({'; '.join(reasons)}) but no labelled data version newer than its training data"
    else:
        message = f"stale: {'; '.join(reasons)}"
    return Staleness(
        stale=stale,
        actionable=stale and newer,
        message=message,
        age_days=age_days,
        versions_behind=behind,
        newest_trained=newest_trained,
        newest_labelled=target,
    )


# -- evidence ---------------------------------------------------------------------------------------------------------

# What fired is read from materialization metadata by the typed summaries in ``mlops_assets.ml.summaries``
# (``DriftSummary``, ``PerformanceSummary``), which own those keys in both directions.


def evidence_json(evidence: Mapping[str, Any], max_chars: int = _EVIDENCE_MAX_CHARS) -> str:
    """Compact standard JSON for the ``mlops/evidence`` tag: floats rounded to 4 places, long strings shortened.

    NaN and infinities (at any depth) are ``null`` (:mod:`mlops_assets.ml.json_codec`).

    Never longer than ``max_chars`` (keys are dropped from the end, and ``"truncated": true`` is added).
    """

    def short(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 4) if math.isfinite(value) else None
        if isinstance(value, str) and len(value) > _EVIDENCE_MAX_STR:
            return value[: _EVIDENCE_MAX_STR - 1] + "…"
        return value

    items = [(str(k), short(v)) for k, v in evidence.items()]
    text = json_codec.dumps(dict(items), separators=(",", ":"), ensure_ascii=False, default=str)
    while len(text) > max_chars and items:
        items.pop()
        text = json_codec.dumps(
            {**dict(items), "truncated": True}, separators=(",", ":"), ensure_ascii=False, default=str
        )
    return text


@dataclass(frozen=True)
class Replay:
    """The outcome of :func:`replay`: the requests made and every decision, in order."""

    allowed: tuple[RetrainRequest, ...]
    decisions: tuple[RetrainDecision, ...] = field(default=())


def replay(policy: RetrainPolicy, requests: Iterable[RetrainRequest], history: Iterable[RetrainRecord] = ()) -> Replay:
    """Decide a stream of requests in time order, each allowed one joining the history (as a finished run).

    What the sensors do over many ticks, in one call: used by tests and to explain a policy's effect.
    """
    past = list(history)
    allowed: list[RetrainRequest] = []
    decisions: list[RetrainDecision] = []
    for request in sorted(requests, key=lambda r: r.at):
        decision = decide(policy, request, past)
        decisions.append(decision)
        if decision.allowed:
            allowed.append(request)
            record = request.as_record()
            past.append(
                RetrainRecord(
                    record.at, record.reason, record.data_version, record.package_version, "success", record.model
                )
            )
    return Replay(tuple(allowed), tuple(decisions))
