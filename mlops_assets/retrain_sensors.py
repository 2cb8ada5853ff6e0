"""Retraining sensors and schedules: monitoring evidence becomes retrain runs, under the spec's hygiene rules.

* ``drift_sensor`` — a data version's ``drift_report`` says the data set drifted (against the model now in
  production): retrain on that version once it is labelled (reason ``drift``).
* ``performance_sensor`` — a ``performance_report`` says the production model's realised metric fell below its
  SLA floor: retrain on the newest labelled version (reason ``performance``).
* ``freshness_sensor`` — the production model is too old or too many labelled versions behind (reason ``stale``).
* ``retrain_schedule`` (weekly, STOPPED by default) — retrain on the newest labelled version (reason ``schedule``).
* ``monitoring_schedule`` (daily, STOPPED by default) — re-measure drift of the newest version and realised
  performance of the newest labelled version against the model now in production.

The sensors read only NEW materialization events (their cursors hold event-log storage ids) and only metadata,
never asset values, through :class:`~mlops_assets.ml.summaries.DriftSummary` and
:class:`~mlops_assets.ml.summaries.PerformanceSummary`: a report counts only when its typed identity
``(model name, version)`` is the model now in production (an old report without it is dropped: fail closed),
never by its display string ``compared_with``. Every request passes :func:`mlops_assets.ml.triggers.decide`
against the instance's ``retrain_job`` runs (trigger enabled, duplicate, in progress, cooldown, daily cap) and
is skipped while a shadow/canary rollout is active; a skip says why. A run queued or running for longer than the spec's
``retraining.max_in_flight_hours`` (default 1.5 h, above the instance's ``max_runtime_seconds``) is presumed dead
(e.g. its worker was SIGKILLed and it stays STARTED) and blocks nothing: the tick logs a warning naming it, and an
allowed request names it in its evidence (``ignored_in_flight``). Requests carry the run key
``retrain:<reason>:<data version>:<code version>`` and the tags ``mlops/reason``, ``mlops/data_version``,
``mlops/evidence`` (short JSON: what fired), ``mlops/model`` and ``mlops/code_version``.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from mlops_assets.jobs import retrain_job
from mlops_assets.ml import triggers
from mlops_assets.ml.provenance import code_version
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.summaries import DriftSummary, PerformanceSummary, display_model
from mlops_assets.partitions import DATA_VERSIONS
from mlops_assets.resources import DatasetSpecResource, ModelRegistryResource
from mlops_assets.storage.registry import ModelRegistry, ModelVersion
from mlops_assets.tags import CODE_VERSION_TAG, DATA_VERSION_TAG, EVIDENCE_TAG, MODEL_TAG, REASON_TAG

PARTITION_TAG = "dagster/partition"

RETRAIN_JOB = retrain_job.name
DRIFT_REPORT = dg.AssetKey("drift_report")
LABELS = dg.AssetKey("labels")
PERFORMANCE_REPORT = dg.AssetKey("performance_report")

#: Event-log records read per query while catching up.
_PAGE = 1000
#: Drifted versions remembered while they wait for labels (or for the cooldown); older ones are superseded.
_MAX_PENDING = 200

_IN_FLIGHT_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.MANAGED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _now() -> datetime:
    """The current time (a function so that tests can move the clock)."""
    return datetime.now(UTC)


# -- reading the instance ---------------------------------------------------------------------------------------------


def _new_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, after: int | None
) -> tuple[list[dg.EventLogRecord], int | None]:
    """Materializations of ``key`` stored after storage id ``after``, oldest first, and the new high-water mark."""
    records: list[dg.EventLogRecord] = []
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=_PAGE, ascending=True
        ).records
        records.extend(page)
        if page:
            after = page[-1].storage_id
        if len(page) < _PAGE:
            return records, after


def _metadata(record: dg.EventLogRecord) -> dict[str, Any]:
    materialization = record.asset_materialization
    return {k: v.value for k, v in materialization.metadata.items()} if materialization else {}


def _is_materialized(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> bool:
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    )
    return bool(result.records)


def _labelled(instance: dg.DagsterInstance) -> set[str]:
    """Data versions whose ``labels`` asset has been materialized (one grouped query)."""
    return set(instance.get_materialized_partitions(LABELS))


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _record(run_record: Any) -> triggers.RetrainRecord:
    run = run_record.dagster_run
    tags = run.tags
    started = run_record.start_time  # epoch seconds, None until the run worker started it
    return triggers.RetrainRecord(
        at=_aware(run_record.create_timestamp),
        reason=tags.get(REASON_TAG) or "manual",
        data_version=tags.get(DATA_VERSION_TAG) or tags.get(PARTITION_TAG) or "",
        code_version=tags.get(CODE_VERSION_TAG, ""),
        status=run.status.value,
        model=tags.get(MODEL_TAG, ""),
        started_at=datetime.fromtimestamp(started, UTC) if started else None,
    )


def retrain_history(
    instance: dg.DagsterInstance, policy: triggers.RetrainPolicy, request: triggers.RetrainRequest
) -> list[triggers.RetrainRecord]:
    """The ``retrain_job`` runs :func:`triggers.decide` needs for ``request``, from the instance's run storage.

    Three indexed queries instead of the whole run history: runs created within the policy's horizon, runs
    still in flight, and earlier runs with the same reason and data version (duplicates).
    """
    filters = [
        dg.RunsFilter(job_name=RETRAIN_JOB, created_after=request.at - policy.history_horizon),
        dg.RunsFilter(job_name=RETRAIN_JOB, statuses=_IN_FLIGHT_RUN_STATUSES),
        dg.RunsFilter(job_name=RETRAIN_JOB, tags={REASON_TAG: request.reason, DATA_VERSION_TAG: request.data_version}),
    ]
    seen: dict[str, triggers.RetrainRecord] = {}
    for runs_filter in filters:
        for run_record in instance.get_run_records(runs_filter):
            seen.setdefault(run_record.dagster_run.run_id, _record(run_record))
    return list(seen.values())


def _active_rollout(registry: ModelRegistry, model: str) -> str | None:
    """A sentence naming the model's active (shadow/canary) rollout, or ``None``."""
    state = registry.active_rollout(model)
    if state is None:
        return None
    return (
        f"a rollout of {model} v{state.challenger_version} is in {state.phase.value}: retraining waits until it "
        "is promoted or rolled back"
    )


def _production_label(spec: DatasetSpec, production: ModelVersion | None) -> str:
    """``"flights v3"`` for log lines only: identities are compared as ``(model, version)``, never as text."""
    return display_model(spec.name, None if production is None else production.version)


def _measured_against(evidence: Mapping[str, Any], model: str, version: int | None) -> bool:
    """Whether pending drift ``evidence`` was measured against ``(model, version)``.

    Evidence kept from before the typed keys (only the display string) has no identity: ``False`` (fail closed).
    """
    summary = DriftSummary.from_metadata(evidence)
    return version is not None and summary.measured_against(model, version)


def _breach_concerns(evidence: Mapping[str, Any], model: str, version: int) -> bool:
    """Whether a pending SLA breach (its evidence) measured ``(model, version)``.

    Evidence without a model name (reports written before ``production_model``) is unknown: ``False`` (fail closed).
    """
    summary = PerformanceSummary(model=evidence.get("model"), production_version=evidence.get("production_version"))
    return summary.measured(model, version)


# -- requests ---------------------------------------------------------------------------------------------------------


def retrain_request(
    request: triggers.RetrainRequest,
    evidence: Mapping[str, Any],
    decision: triggers.RetrainDecision | None = None,
) -> dg.RunRequest:
    """The run request for an allowed retrain: run key, partition and tags.

    When ``decision`` ignored in-flight runs presumed dead, the evidence names them first (``ignored_in_flight``).
    """
    if decision is not None and decision.ignored:
        evidence = {"ignored_in_flight": "; ".join(decision.ignored), **evidence}
    return dg.RunRequest(
        run_key=request.run_key,
        partition_key=request.data_version,
        tags={
            REASON_TAG: request.reason,
            DATA_VERSION_TAG: request.data_version,
            EVIDENCE_TAG: triggers.evidence_json(evidence),
            MODEL_TAG: request.model,
            CODE_VERSION_TAG: request.code_version,
        },
    )


def _consider(
    instance: dg.DagsterInstance,
    registry: ModelRegistry,
    spec: DatasetSpec,
    reason: str,
    data_version: str,
    now: datetime,
    log: Any = None,
) -> tuple[triggers.RetrainRequest, triggers.RetrainDecision | None, str | None]:
    """Build the request and decide it: ``(request, decision, rollout)``; ``rollout`` set means wait for it.

    ``log`` (the tick's logger) gets a warning when the decision ignored in-flight runs presumed dead.
    """
    request = triggers.RetrainRequest(
        reason=reason, data_version=data_version, model=spec.name, code_version=code_version(), at=now
    )
    policy = spec.retraining
    if not policy.enabled(reason):
        return request, triggers.decide(policy, request, ()), None
    rollout = _active_rollout(registry, spec.name)
    if rollout is not None:
        return request, None, rollout
    decision = triggers.decide(policy, request, retrain_history(instance, policy, request))
    if decision.ignored and log is not None:
        log.warning(decision.message)
    return request, decision, None


def _load_cursor(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        loaded = json.loads(raw)
    except json.JSONDecodeError:
        return {}  # an unreadable cursor starts over: the hygiene rules still prevent duplicate retrains
    return loaded if isinstance(loaded, dict) else {}


def _dump_cursor(state: Mapping[str, Any]) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"))


# -- drift ------------------------------------------------------------------------------------------------------------


def _order(instance: dg.DagsterInstance, versions: Iterable[str]) -> list[str]:
    """``versions`` in the order their partitions were registered (unregistered ones first, by name)."""
    wanted = set(versions)
    if len(wanted) <= 1:
        return sorted(wanted)
    registered = [v for v in instance.get_dynamic_partitions(DATA_VERSIONS) if v in wanted]
    return sorted(wanted - set(registered)) + registered


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Retrains on a data version whose drift_report says the data set drifted against the production model, "
        "once that version is labelled (reason drift). Reads only new drift_report/labels materializations; "
        "cooldown, daily cap, de-duplication and active rollouts apply (spec: retraining)."
    ),
)
def drift_sensor(
    context: dg.SensorEvaluationContext, dataset: DatasetSpecResource, registry: ModelRegistryResource
) -> dg.SensorResult:
    state = _load_cursor(context.cursor)
    instance = context.instance
    # Labels first: a labels event stored after this read is seen by the direct check below or the next tick.
    label_records, labels_mark = _new_materializations(instance, LABELS, state.get("labels"))
    newly_labelled = {r.partition_key for r in label_records if r.partition_key}
    drift_records, drift_mark = _new_materializations(instance, DRIFT_REPORT, state.get("drift"))
    pending: dict[str, dict[str, Any]] = dict(state.get("pending") or {})
    arrived: set[str] = set()
    for record in drift_records:  # oldest first: the latest report of a version decides
        version = record.partition_key
        if not version:
            continue
        summary = DriftSummary.from_metadata(_metadata(record))
        if summary.dataset_drift is True:
            pending[version] = {"sid": record.storage_id, "labelled": False, "evidence": summary.evidence(version)}
            arrived.add(version)
        else:
            pending.pop(version, None)
    for version, entry in pending.items():
        if not entry["labelled"] and (
            version in newly_labelled or (version in arrived and _is_materialized(instance, LABELS, version))
        ):
            entry["labelled"] = True
    if len(pending) > _MAX_PENDING:
        keep = sorted(pending, key=lambda v: pending[v]["sid"])[-_MAX_PENDING:]
        pending = {v: pending[v] for v in keep}

    requests: list[dg.RunRequest] = []
    skip: str | None = None
    if not pending:
        skip = "no drifted data version waiting for a retrain"
    else:
        spec = dataset.load()
        reg = registry.registry()
        production = reg.production_version(spec.name)
        production_version = None if production is None else production.version
        current = _production_label(spec, production)
        for version in [
            v for v, e in pending.items() if not _measured_against(e["evidence"], spec.name, production_version)
        ]:
            measured = DriftSummary.from_metadata(pending.pop(version)["evidence"])
            against = (
                measured.compared_with if measured.identity_known else "an unknown model (report without identity)"
            )
            context.log.info(f"drift on {version} was measured against {against}, production is {current}: dropped")
        ready = [v for v, e in pending.items() if e["labelled"]]
        if not spec.retraining.enabled("drift"):
            pending.clear()
            skip = f"trigger 'drift' is not enabled in the spec (retraining.triggers: {list(spec.retraining.triggers)})"
        elif not pending:
            skip = f"no drift against the production model ({current}) waiting for a retrain"
        elif not ready:
            skip = f"drifted data versions wait for labels: {', '.join(sorted(pending))}"
        else:
            order = _order(instance, pending)
            target = max(ready, key=order.index)
            request, decision, rollout = _consider(instance, reg, spec, "drift", target, _now(), context.log)
            if rollout is not None:
                skip = rollout
            elif decision is not None:
                if decision.allowed:
                    requests.append(retrain_request(request, pending[target]["evidence"], decision))
                else:
                    skip = decision.message
                if decision.allowed or decision.rule == "duplicate":
                    # A retrain on the newest drifted version supersedes the older drift signals.
                    for version in order[: order.index(target) + 1]:
                        pending.pop(version, None)
    if skip:
        context.log.info(skip)
    return dg.SensorResult(
        run_requests=requests,
        cursor=_dump_cursor({"drift": drift_mark, "labels": labels_mark, "pending": pending}),
        skip_reason=None if requests else skip,
    )


# -- performance ------------------------------------------------------------------------------------------------------


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Retrains on the newest labelled data version when a performance_report says the production model's "
        "realised metric is below its SLA floor (reason performance). The latest report decides; a report about "
        "a model no longer in production is ignored. Cooldown, daily cap, de-duplication and rollouts apply."
    ),
)
def performance_sensor(
    context: dg.SensorEvaluationContext, dataset: DatasetSpecResource, registry: ModelRegistryResource
) -> dg.SensorResult:
    state = _load_cursor(context.cursor)
    instance = context.instance
    records, mark = _new_materializations(instance, PERFORMANCE_REPORT, state.get("performance"))
    pending: dict[str, Any] | None = state.get("pending")
    for record in records:  # the latest report decides: a later report within the SLA clears a breach
        if not record.partition_key:
            continue
        summary = PerformanceSummary.from_metadata(_metadata(record))
        if summary.production_version is None:
            continue  # nothing was scored by a production model: says nothing about it
        pending = summary.evidence(record.partition_key) if summary.sla_breached is True else None

    requests: list[dg.RunRequest] = []
    skip = ""
    if pending is None:
        skip = "no SLA breach of the production model waiting for a retrain"
    else:
        spec = dataset.load()
        reg = registry.registry()
        production = reg.production_version(spec.name)
        if not spec.retraining.enabled("performance"):
            pending = None
            skip = (
                "trigger 'performance' is not enabled in the spec "
                f"(retraining.triggers: {list(spec.retraining.triggers)})"
            )
        elif production is None or not _breach_concerns(pending, spec.name, production.version):
            measured = display_model(pending.get("model"), pending.get("production_version"))
            if pending.get("model") is None:
                measured = f"{measured} of an unknown model (report without production_model)"
            skip = (
                f"the SLA breach on {pending.get('data_version')} concerned {measured}, "
                f"production is {_production_label(spec, production)}: dropped"
            )
            pending = None
        else:
            target = triggers.newest_labelled(instance.get_dynamic_partitions(DATA_VERSIONS), _labelled(instance))
            if target is None:
                skip = "SLA breached, but no data version is labelled yet"
            else:
                request, decision, rollout = _consider(instance, reg, spec, "performance", target, _now(), context.log)
                if rollout is not None:
                    skip = rollout
                elif decision is not None and decision.allowed:
                    requests.append(retrain_request(request, pending, decision))
                    pending = None
                elif decision is not None:
                    skip = decision.message
                    if decision.rule in ("duplicate", "disabled"):
                        pending = None
    if skip:
        context.log.info(skip)
    return dg.SensorResult(
        run_requests=requests,
        cursor=_dump_cursor({"performance": mark, "pending": pending}),
        skip_reason=None if requests else skip,
    )


# -- staleness --------------------------------------------------------------------------------------------------------


def _stale_request(
    instance: dg.DagsterInstance, spec: DatasetSpec, reg: ModelRegistry, now: datetime
) -> tuple[triggers.RetrainRequest | None, dict[str, Any], str]:
    """``(request, evidence, message)``: the retrain the staleness rule asks for, or ``None`` and why not."""
    production = reg.production_version(spec.name)
    if production is None:
        return None, {}, f"no {spec.name} model in production: nothing to be stale"
    staleness = triggers.assess_staleness(
        spec.retraining,
        now=now,
        trained_at=production.created_at,
        trained_on=production.data_versions,
        versions=instance.get_dynamic_partitions(DATA_VERSIONS),
        labelled=_labelled(instance),
    )
    message = f"{spec.name} v{production.version}: {staleness.message}"
    if not staleness.actionable or staleness.newest_labelled is None:
        return None, {}, message
    evidence = {"trigger": "staleness", "production_version": production.version, **staleness.evidence()}
    request = triggers.RetrainRequest(
        reason="stale", data_version=staleness.newest_labelled, model=spec.name, code_version=code_version(), at=now
    )
    return request, evidence, message


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=10,  # a tick costs ~0.05 s (docs/monitoring.md)
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Retrains on the newest labelled data version when the production model is stale: trained longer ago "
        "than retraining.max_model_age_days, or more than retraining.max_versions_behind labelled versions "
        "behind (reason stale). Cooldown, daily cap, de-duplication and rollouts apply."
    ),
)
def freshness_sensor(
    context: dg.SensorEvaluationContext, dataset: DatasetSpecResource, registry: ModelRegistryResource
) -> dg.SensorResult:
    state = _load_cursor(context.cursor)
    spec = dataset.load()
    requests: list[dg.RunRequest] = []
    if not spec.retraining.enabled("stale"):
        skip = f"trigger 'stale' is not enabled in the spec (retraining.triggers: {list(spec.retraining.triggers)})"
    else:
        reg = registry.registry()
        now = _now()
        stale, evidence, skip = _stale_request(context.instance, spec, reg, now)
        if stale is not None and stale.run_key == state.get("requested"):
            skip = f"{skip}; retrain on {stale.data_version} already requested by this sensor"
        elif stale is not None:
            request, decision, rollout = _consider(
                context.instance, reg, spec, "stale", stale.data_version, now, context.log
            )
            if rollout is not None:
                skip = rollout
            elif decision is not None and decision.allowed:
                requests.append(retrain_request(request, evidence, decision))
                state["requested"] = request.run_key
            elif decision is not None:
                skip = f"{skip}; {decision.message}"
    if not requests:
        context.log.info(skip)
    return dg.SensorResult(run_requests=requests, cursor=_dump_cursor(state), skip_reason=None if requests else skip)


# -- schedules --------------------------------------------------------------------------------------------------------


@dg.schedule(
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    job=retrain_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        "Weekly (Monday 03:00 UTC) retrain on the newest labelled data version (reason schedule), under the same "
        "hygiene rules as the sensors. Stopped by default: start it in Automation."
    ),
)
def retrain_schedule(
    context: dg.ScheduleEvaluationContext, dataset: DatasetSpecResource, registry: ModelRegistryResource
) -> dg.RunRequest | dg.SkipReason:
    spec = dataset.load()
    instance = context.instance
    target = triggers.newest_labelled(instance.get_dynamic_partitions(DATA_VERSIONS), _labelled(instance))
    if target is None:
        return dg.SkipReason("no data version is labelled yet: nothing to retrain on")
    reg = registry.registry()
    # The hygiene rules compare with run creation times: the real clock, not the (possibly missed) tick time.
    request, decision, rollout = _consider(instance, reg, spec, "schedule", target, _now(), context.log)
    if rollout is not None:
        return dg.SkipReason(rollout)
    assert decision is not None
    if not decision.allowed:
        return dg.SkipReason(decision.message)
    production = reg.production_version(spec.name)
    evidence = {
        "trigger": "schedule",
        "cron": "0 3 * * 1",
        "production_version": production.version if production else None,
        "trained_on": production.data_versions[-1] if production and production.data_versions else None,
    }
    return retrain_request(request, evidence, decision)


#: What the monitoring schedule re-materializes: read-only measurements, never a rollout step or a promotion.
MONITORING_ASSETS = (DRIFT_REPORT, PERFORMANCE_REPORT)


@dg.schedule(
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    target=dg.AssetSelection.assets(*MONITORING_ASSETS),
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        "Daily (02:00 UTC) re-measurement against the model now in production: drift_report of the newest data "
        "version and performance_report of the newest labelled one (their checks run too). No rollout step, no "
        "promotion. Stopped by default."
    ),
)
def monitoring_schedule(context: dg.ScheduleEvaluationContext) -> Sequence[dg.RunRequest] | dg.SkipReason:
    instance = context.instance
    versions = instance.get_dynamic_partitions(DATA_VERSIONS)
    if not versions:
        return dg.SkipReason("no data versions registered yet")
    day = context.scheduled_execution_time.astimezone(UTC).strftime("%Y-%m-%d")
    tags = {REASON_TAG: "monitoring"}
    requests = [
        dg.RunRequest(
            run_key=f"monitoring:drift:{versions[-1]}:{day}",
            partition_key=versions[-1],
            asset_selection=[DRIFT_REPORT],
            tags={**tags, DATA_VERSION_TAG: versions[-1]},
        )
    ]
    labelled = triggers.newest_labelled(versions, _labelled(instance))
    if labelled is not None:
        requests.append(
            dg.RunRequest(
                run_key=f"monitoring:performance:{labelled}:{day}",
                partition_key=labelled,
                asset_selection=[PERFORMANCE_REPORT],
                tags={**tags, DATA_VERSION_TAG: labelled},
            )
        )
    return requests


RETRAIN_SENSORS = [drift_sensor, performance_sensor, freshness_sensor]
SCHEDULES = [retrain_schedule, monitoring_schedule]
