"""Retraining sensors and schedules of one model: monitoring evidence becomes retrain runs under hygiene rules.

:func:`build` creates, for a model ``<name>`` (its assets ``<name>/drift_report`` etc., its partitions
``<name>__data_versions``, its job ``<name>__retrain_job``):

* ``<name>__drift_sensor`` — a data version's ``drift_report`` says the data set drifted (against the model now in
  production): retrain on that version once it is labelled (reason ``drift``).
* ``<name>__performance_sensor`` — a ``performance_report`` says the production model's realised metric fell below
  its SLA floor: retrain on the newest labelled version (reason ``performance``).
* ``<name>__estimated_performance_sensor`` — a ``performance_estimate`` says the production model's CBPE estimate
  (before the version's labels exist) is below its SLA floor: retrain on the newest labelled version, when it is newer
  than the production model's training data (reason ``estimated_performance``); once per estimate and model version.
* ``<name>__freshness_sensor`` — the production model is too old or too many labelled versions behind (reason
  ``stale``).
* ``<name>__retrain_schedule`` (weekly, STOPPED by default) — retrain on the newest labelled version (reason
  ``schedule``).
* ``<name>__monitoring_schedule`` (daily, STOPPED by default) — re-measure drift of the newest version and realised
  performance of the newest labelled version against the model now in production.

The sensors read only NEW materialization events (their cursors hold event-log storage ids) and only metadata, never
asset values, through :class:`~mlops_assets.ml.summaries.DriftSummary` and
:class:`~mlops_assets.ml.summaries.PerformanceSummary`: a report counts only when its typed identity
``(model name, version)`` is the model now in production (an old report without it is dropped: fail closed), never
by its display string ``compared_with``. What fired but cannot be acted on yet waits in the sensor's cursor (drifted
versions waiting for labels or the cooldown, the latest SLA breach); the rules of those backlogs (what is added,
cleared, dropped as measured against another model, and which version is the retrain candidate) are the pure state
machines of :mod:`mlops_assets.ml.backlog`, which the drift and performance sensors only feed and store. Every
request passes :func:`mlops_assets.ml.triggers.decide` against the model's ``<name>__retrain_job`` runs (trigger
enabled, duplicate, in progress, cooldown, daily cap) and is skipped while a shadow/canary rollout is active; a skip
says why. A run queued or running for longer than the spec's ``retraining.max_in_flight_hours`` (default 1.5 h,
above the instance's ``max_runtime_seconds``) is presumed dead (e.g. its worker was SIGKILLed and it stays STARTED)
and blocks nothing: the tick logs a warning naming it, and an allowed request names it in its evidence
(``ignored_in_flight``). Requests carry the run key ``retrain:<reason>:<data version>:<package version>`` and the tags
``mlops/reason``, ``mlops/data_version``, ``mlops/evidence`` (short JSON: what fired), ``mlops/model`` and
``mlops/package_version`` (the mlops_assets release, :func:`mlops_assets.provenance.package_version`; runs
requested before the rename carry ``mlops/code_version``, which is still read).
"""

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import dagster as dg

from mlops_assets.gate_records import became_labelled, new_materializations, record_metadata
from mlops_assets.instance import EVERY_DAEMON_LOOP_S
from mlops_assets.jobs import ModelJobs
from mlops_assets.ml import backlog, triggers
from mlops_assets.ml.labels import says_labelled
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.summaries import DriftSummary, EstimateSummary, PerformanceSummary
from mlops_assets.model import MLModel
from mlops_assets.provenance import package_version
from mlops_assets.storage.registry import ModelRegistry
from mlops_assets.tags import (
    DATA_VERSION_TAG,
    EVIDENCE_TAG,
    FORMER_PACKAGE_VERSION_TAG,
    MODEL_TAG,
    PACKAGE_VERSION_TAG,
    REASON_TAG,
)

PARTITION_TAG = "dagster/partition"

#: What the monitoring schedule re-materializes (short asset names): read-only measurements, never a rollout step
#: or a promotion.
MONITORING_ASSETS = ("drift_report", "performance_report")

#: Event-log records read per query while catching up.
_PAGE = 1000

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


def _min_share(model: MLModel) -> float:
    return model.spec().policy.data.min_labelled_share


def _is_labelled(model: MLModel, instance: dg.DagsterInstance, partition: str) -> bool:
    """Whether the latest ``<model>/labels`` materialization of ``partition`` says it is labelled (one query)."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=model.key("labels"), asset_partitions=[partition]), limit=1
    )
    return bool(result.records) and says_labelled(record_metadata(result.records[0]), _min_share(model))


def _labelled(model: MLModel, instance: dg.DagsterInstance) -> set[str]:
    """Data versions whose latest ``<model>/labels`` materialization says ``labelled: true``.

    One paged query over the labels asset's materializations, newest first (the first seen per partition is its
    latest), not one query per partition.
    """
    min_share = _min_share(model)
    latest: dict[str, bool] = {}
    cursor: str | None = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=model.key("labels")), limit=_PAGE, cursor=cursor, ascending=False
        )
        for record in result.records:
            if record.partition_key and record.partition_key not in latest:
                latest[record.partition_key] = says_labelled(record_metadata(record), min_share)
        if not result.has_more:
            return {key for key, labelled in latest.items() if labelled}
        cursor = result.cursor


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
        package_version=tags.get(PACKAGE_VERSION_TAG) or tags.get(FORMER_PACKAGE_VERSION_TAG, ""),
        status=run.status.value,
        model=tags.get(MODEL_TAG, ""),
        started_at=datetime.fromtimestamp(started, UTC) if started else None,
    )


def retrain_history(
    instance: dg.DagsterInstance,
    policy: triggers.RetrainPolicy,
    request: triggers.RetrainRequest,
    *,
    job_name: str,
) -> list[triggers.RetrainRecord]:
    """The runs of retrain job ``job_name`` (``<model>__retrain_job``) :func:`triggers.decide` needs for ``request``.

    Three indexed queries of the instance's run storage instead of the whole run history: runs created within the
    policy's horizon, runs still in flight, and earlier runs with the same reason and data version (duplicates).
    """
    filters = [
        dg.RunsFilter(job_name=job_name, created_after=request.at - policy.history_horizon),
        dg.RunsFilter(job_name=job_name, statuses=_IN_FLIGHT_RUN_STATUSES),
        dg.RunsFilter(job_name=job_name, tags={REASON_TAG: request.reason, DATA_VERSION_TAG: request.data_version}),
    ]
    seen: dict[str, triggers.RetrainRecord] = {}
    for runs_filter in filters:
        for run_record in instance.get_run_records(runs_filter):
            seen.setdefault(run_record.dagster_run.run_id, _record(run_record))
    return list(seen.values())


def _v(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def _active_rollout(registry: ModelRegistry, model: str) -> str | None:
    """Why a sensor-triggered retrain waits for the model's active (shadow/canary) rollout, or ``None`` (it may run).

    Decided by the ``on_new_candidate`` policy recorded in the rollout at its start (a spec edit does not change a
    rollout in flight):

    * ``supersede`` — waits: its candidate would roll the rollout in progress back.
    * ``queue`` — waits too: its candidate would be judged against today's production, which the rollout may replace
      (a queued candidate is then archived: its comparison is void). Held, the trigger stays in the sensor's backlog
      and fires once the rollout ended, against the production model of then. Candidates of new data (the landing
      sensor's lifecycle runs) and manual retrains are not held: they queue.
    * ``compare`` — runs: its candidate is compared with the challenger in flight on its own holdout and replaces
      it only when significantly better (``deployment_decision``).
    """
    state = registry.active_rollout(model)
    if state is None or state.on_new_candidate == "compare":
        return None
    return (
        f"a rollout of {model} v{state.challenger_version} is in {state.phase.value} "
        f"(on_new_candidate: {state.on_new_candidate}): retraining waits until it is promoted or rolled back"
    )


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
            PACKAGE_VERSION_TAG: request.package_version,
        },
    )


def _consider(
    instance: dg.DagsterInstance,
    retrain_job: str,
    registry: ModelRegistry,
    spec: DatasetSpec,
    reason: str,
    data_version: str,
    now: datetime,
    log: Any = None,
    judged_against: int | Literal["unread"] | None = "unread",
) -> tuple[triggers.RetrainRequest, triggers.RetrainDecision | None, str | None]:
    """Build the request and decide it: ``(request, decision, wait)``; ``wait`` set means wait (and why).

    ``retrain_job`` is the model's retrain job name: its runs are the history the hygiene rules read.

    ``log`` (the tick's logger) gets a warning when the decision ignored in-flight runs presumed dead.

    ``judged_against``: the production version the trigger's evidence was read against (``None``: none in
    production). The rollout is read after the evidence, then production again: a rollout that ended (or any promotion)
    between the two reads changed the model the evidence is about, and the request waits for the next tick, which
    judges the new production model. (Read in this order, the race is closed: a promotion before the rollout read shows
    in the production re-read; one after it finds the rollout still active.)
    """
    request = triggers.RetrainRequest(
        reason=reason, data_version=data_version, model=spec.name, package_version=package_version(), at=now
    )
    policy = spec.retraining
    if not policy.enabled(reason):
        return request, triggers.decide(policy, request, ()), None
    rollout = _active_rollout(registry, spec.name)
    if rollout is not None:
        return request, None, rollout
    if judged_against != "unread":
        current = registry.production_version(spec.name)
        now_in_production = None if current is None else current.version
        if now_in_production != judged_against:
            return (
                request,
                None,
                f"{spec.name}: production changed from {_v(judged_against)} to {_v(now_in_production)} since this "
                "tick read its evidence (a rollout ended or a promotion landed): the trigger is judged again against "
                "it next tick",
            )
    decision = triggers.decide(policy, request, retrain_history(instance, policy, request, job_name=retrain_job))
    if decision.ignored and log is not None:
        log.warning(decision.message)
    return request, decision, None


# -- the drift and performance backlogs --------------------------------------------------------------------------------


def _production_loader(
    model: MLModel, registry: ModelRegistry
) -> tuple[Callable[[], backlog.Production], dict[str, Any]]:
    """What a backlog is judged against, loaded only when the step asks (spec and registry read once per tick)."""
    loaded: dict[str, Any] = {}

    def production() -> backlog.Production:
        loaded["spec"], loaded["reg"] = spec, reg = model.spec(), registry
        current = reg.production_version(spec.name)
        loaded["production_version"] = None if current is None else current.version
        if current is None:
            return backlog.Production(spec.name, None, spec.retraining)
        return backlog.Production(spec.name, current.version, spec.retraining, tuple(current.data_versions))

    return production, loaded


def _request_candidate(
    instance: dg.DagsterInstance,
    retrain_job: str,
    loaded: Mapping[str, Any],
    candidate: backlog.Candidate | None,
    log: Any,
) -> tuple[list[dg.RunRequest], str | None, triggers.RetrainDecision | None]:
    """``(requests, skip, decision)`` for a backlog's candidate: hygiene rules and active rollouts decide."""
    if candidate is None:
        return [], None, None
    request, decision, rollout = _consider(
        instance,
        retrain_job,
        loaded["reg"],
        loaded["spec"],
        candidate.reason,
        candidate.data_version,
        _now(),
        log,
        judged_against=loaded.get("production_version", "unread"),
    )
    if rollout is not None or decision is None:
        return [], rollout, None
    if not decision.allowed:
        return [], decision.message, decision
    return [retrain_request(request, candidate.evidence, decision)], None, decision


def _backlog_result(
    context: dg.SensorEvaluationContext,
    retrain_job: str,
    loaded: Mapping[str, Any],
    step: backlog.DriftStep | backlog.PerformanceStep | backlog.EstimateStep,
) -> dg.SensorResult:
    """The tick's result for a backlog ``step`` (drift, performance, estimate): its candidate's run request when the
    hygiene rules and rollouts allow it, else the reason it waits; the cursor settles the candidate's outcome."""
    requests, skip, decision = _request_candidate(context.instance, retrain_job, loaded, step.candidate, context.log)
    skip = skip or step.skip
    if skip:
        context.log.info(skip)
    return dg.SensorResult(
        run_requests=requests, cursor=step.settle(decision).to_cursor(), skip_reason=None if requests else skip
    )


# -- staleness --------------------------------------------------------------------------------------------------------


def _stale_request(
    model: MLModel, instance: dg.DagsterInstance, spec: DatasetSpec, reg: ModelRegistry, now: datetime
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
        versions=instance.get_dynamic_partitions(model.partitions_name),
        labelled=_labelled(model, instance),
    )
    message = f"{spec.name} v{production.version}: {staleness.message}"
    if not staleness.actionable or staleness.newest_labelled is None:
        return None, {}, message
    evidence = {"trigger": "staleness", "production_version": production.version, **staleness.evidence()}
    request = triggers.RetrainRequest(
        reason="stale",
        data_version=staleness.newest_labelled,
        model=spec.name,
        package_version=package_version(),
        at=now,
    )
    return request, evidence, message


# -- the sensors and schedules of one model ---------------------------------------------------------------------------


def build(model: MLModel, jobs: ModelJobs) -> dg.Definitions:
    """The retrain sensors and schedules of ``model``, named ``<name>__drift_sensor`` etc.

    ``jobs`` are the model's jobs (:func:`mlops_assets.jobs.build_jobs`): requests target ``jobs.retrain``, and
    its runs are the history the hygiene rules read. Each tick loads the spec (``model.spec()``), so an edited
    spec applies without a reload.
    """
    retrain_job = jobs.retrain.name
    drift_report = model.key("drift_report")
    labels = model.key("labels")
    performance_report = model.key("performance_report")
    performance_estimate = model.key("performance_estimate")
    partitions = model.partitions_name

    # -- drift

    @dg.sensor(
        name=model.job_name("drift_sensor"),
        job=jobs.retrain,
        minimum_interval_seconds=EVERY_DAEMON_LOOP_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Retrains on a data version whose drift_report says the data set drifted against the production model, "
            "once that version is labelled (reason drift). Reads only new drift_report/labels materializations; "
            "cooldown, daily cap, de-duplication and active rollouts apply (spec: retraining)."
        ),
    )
    def drift_sensor(context: dg.SensorEvaluationContext, registry: dg.ResourceParam[ModelRegistry]) -> dg.SensorResult:
        instance = context.instance
        stored = backlog.DriftBacklog.from_cursor(context.cursor)
        # Labels first: a labels event stored after this read is seen by the direct check below or the next tick.
        label_records, labels_mark = new_materializations(instance, labels, stored.labels_mark)
        drift_records, drift_mark = new_materializations(instance, drift_report, stored.drift_mark)
        production, loaded = _production_loader(model, registry)
        step = backlog.step_drift_backlog(
            stored,
            [
                backlog.DriftEvent(r.partition_key, r.storage_id, DriftSummary.from_metadata(record_metadata(r)))
                for r in drift_records
            ],
            newly_labelled=set(became_labelled(label_records, _min_share(model))),
            is_labelled=lambda version: _is_labelled(model, instance, version),
            production=production,
            registered=lambda: instance.get_dynamic_partitions(partitions),
            drift_mark=drift_mark,
            labels_mark=labels_mark,
        )
        for note in step.notes:
            context.log.info(note)
        return _backlog_result(context, retrain_job, loaded, step)

    # -- performance

    @dg.sensor(
        name=model.job_name("performance_sensor"),
        job=jobs.retrain,
        minimum_interval_seconds=EVERY_DAEMON_LOOP_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Retrains on the newest labelled data version when a performance_report says the production model's "
            "realised metric is below its SLA floor (reason performance). The latest report decides; a report about "
            "a model no longer in production is ignored. Cooldown, daily cap, de-duplication and rollouts apply."
        ),
    )
    def performance_sensor(
        context: dg.SensorEvaluationContext, registry: dg.ResourceParam[ModelRegistry]
    ) -> dg.SensorResult:
        instance = context.instance
        stored = backlog.PerformanceBacklog.from_cursor(context.cursor)
        records, mark = new_materializations(instance, performance_report, stored.mark)
        production, loaded = _production_loader(model, registry)
        step = backlog.step_performance_backlog(
            stored,
            [
                backlog.PerformanceEvent(r.partition_key, PerformanceSummary.from_metadata(record_metadata(r)))
                for r in records
            ],
            production=production,
            newest_labelled_version=backlog.newest_labelled_of(
                lambda: instance.get_dynamic_partitions(partitions), lambda: _labelled(model, instance)
            ),
            mark=mark,
        )
        return _backlog_result(context, retrain_job, loaded, step)

    # -- estimated performance (CBPE, before labels)

    @dg.sensor(
        name=model.job_name("estimated_performance_sensor"),
        job=jobs.retrain,
        minimum_interval_seconds=EVERY_DAEMON_LOOP_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Retrains on the newest labelled data version when a performance_estimate says the production model's "
            "estimated headline metric (CBPE, before the version's labels exist) is below its SLA floor (reason "
            "estimated_performance) — only on labelled data newer than the production model's training data (else it "
            "waits for labels). Fires once per estimate and production version; the latest estimate decides; "
            "cooldown, daily cap, de-duplication and rollouts apply."
        ),
    )
    def estimated_performance_sensor(
        context: dg.SensorEvaluationContext, registry: dg.ResourceParam[ModelRegistry]
    ) -> dg.SensorResult:
        instance = context.instance
        stored = backlog.EstimateBacklog.from_cursor(context.cursor)
        records, mark = new_materializations(instance, performance_estimate, stored.mark)
        production, loaded = _production_loader(model, registry)
        step = backlog.step_estimate_backlog(
            stored,
            [
                backlog.EstimateEvent(r.partition_key, EstimateSummary.from_metadata(record_metadata(r)))
                for r in records
            ],
            production=production,
            newest_labelled_version=backlog.newest_labelled_of(
                lambda: instance.get_dynamic_partitions(partitions), lambda: _labelled(model, instance)
            ),
            mark=mark,
        )
        return _backlog_result(context, retrain_job, loaded, step)

    # -- staleness

    @dg.sensor(
        name=model.job_name("freshness_sensor"),
        job=jobs.retrain,
        minimum_interval_seconds=EVERY_DAEMON_LOOP_S,  # a tick costs ~0.05 s (docs/monitoring.md)
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Retrains on the newest labelled data version when the production model is stale: trained longer ago "
            "than retraining.max_model_age_days, or more than retraining.max_versions_behind labelled versions "
            "behind (reason stale). Cooldown, daily cap, de-duplication and rollouts apply."
        ),
    )
    def freshness_sensor(
        context: dg.SensorEvaluationContext, registry: dg.ResourceParam[ModelRegistry]
    ) -> dg.SensorResult:
        state = backlog.load_cursor(context.cursor)
        spec = model.spec()
        requests: list[dg.RunRequest] = []
        if not spec.retraining.enabled("stale"):
            skip = f"trigger 'stale' is not enabled in the spec (retraining.triggers: {list(spec.retraining.triggers)})"
        else:
            reg = registry
            now = _now()
            stale, evidence, skip = _stale_request(model, context.instance, spec, reg, now)
            if stale is not None and stale.run_key == state.get("requested"):
                skip = f"{skip}; retrain on {stale.data_version} already requested by this sensor"
            elif stale is not None:
                request, decision, rollout = _consider(
                    context.instance,
                    retrain_job,
                    reg,
                    spec,
                    "stale",
                    stale.data_version,
                    now,
                    context.log,
                    judged_against=evidence["production_version"],
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
        return dg.SensorResult(
            run_requests=requests, cursor=backlog.dump_cursor(state), skip_reason=None if requests else skip
        )

    # -- schedules

    @dg.schedule(
        name=model.job_name("retrain_schedule"),
        cron_schedule="0 3 * * 1",
        execution_timezone="UTC",
        job=jobs.retrain,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            "Weekly (Monday 03:00 UTC) retrain on the newest labelled data version (reason schedule), under the same "
            "hygiene rules as the sensors. Stopped by default: start it in Automation."
        ),
    )
    def retrain_schedule(
        context: dg.ScheduleEvaluationContext, registry: dg.ResourceParam[ModelRegistry]
    ) -> dg.RunRequest | dg.SkipReason:
        spec = model.spec()
        instance = context.instance
        target = triggers.newest_labelled(instance.get_dynamic_partitions(partitions), _labelled(model, instance))
        if target is None:
            return dg.SkipReason("no data version is labelled yet: nothing to retrain on")
        reg = registry
        # The hygiene rules compare with run creation times: the real clock, not the (possibly missed) tick time.
        request, decision, rollout = _consider(
            instance, retrain_job, reg, spec, "schedule", target, _now(), context.log
        )
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

    @dg.schedule(
        name=model.job_name("monitoring_schedule"),
        cron_schedule="0 2 * * *",
        execution_timezone="UTC",
        target=dg.AssetSelection.assets(*(model.key(asset) for asset in MONITORING_ASSETS)),
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            "Daily (02:00 UTC) re-measurement against the model now in production: drift_report of the newest data "
            "version and performance_report of the newest labelled one (their checks run too). No rollout step, no "
            "promotion. Stopped by default."
        ),
    )
    def monitoring_schedule(context: dg.ScheduleEvaluationContext) -> Sequence[dg.RunRequest] | dg.SkipReason:
        instance = context.instance
        versions = instance.get_dynamic_partitions(partitions)
        if not versions:
            return dg.SkipReason("no data versions registered yet")
        day = context.scheduled_execution_time.astimezone(UTC).strftime("%Y-%m-%d")
        tags = {REASON_TAG: "monitoring", MODEL_TAG: model.name}
        requests = [
            dg.RunRequest(
                run_key=f"monitoring:drift:{versions[-1]}:{day}",
                partition_key=versions[-1],
                asset_selection=[drift_report],
                tags={**tags, DATA_VERSION_TAG: versions[-1]},
            )
        ]
        labelled = triggers.newest_labelled(versions, _labelled(model, instance))
        if labelled is not None:
            requests.append(
                dg.RunRequest(
                    run_key=f"monitoring:performance:{labelled}:{day}",
                    partition_key=labelled,
                    asset_selection=[performance_report],
                    tags={**tags, DATA_VERSION_TAG: labelled},
                )
            )
        return requests

    return dg.Definitions(
        sensors=[drift_sensor, performance_sensor, estimated_performance_sensor, freshness_sensor],
        schedules=[retrain_schedule, monitoring_schedule],
    )
