"""Sensors of one model: its new data files become data versions and runs; its landed labels files become labels runs.

:func:`build` creates ``<name>__landing_sensor`` and ``<name>__labels_sensor`` for a model: they watch the
model's landing and labels zones (:meth:`MLModel.landing_zone`, :meth:`MLModel.labels_zone`), add partitions
to ``<name>__data_versions`` and request runs of the model's jobs, tagged ``mlops/model``. With
``label.required: false`` a landed version does not train; ``<name>__labelled_sensor`` requests its training
(reason ``new_data``, once) when its labels make it labelled — a retrain waits for labels.
``<name>__served_traffic_sensor`` closes the loop of ``mlops-serve``: each closed prediction-log segment of the
model in the serving log is landed in its landing zone as a data file (:mod:`mlops_assets.ml.served`), which the
landing sensor then registers and runs like any other.
"""

import tempfile
from pathlib import Path

import dagster as dg

from mlops_assets import faults, run_liveness
from mlops_assets.environments import dead_run_interval_s
from mlops_assets.gate_records import became_labelled, data_gate_verdicts, new_materializations
from mlops_assets.instance import EVERY_DAEMON_LOOP_S
from mlops_assets.jobs import ModelJobs
from mlops_assets.ml import json_codec, served
from mlops_assets.ml.landing import (
    LabelsRun,
    NewVersion,
    lost_landings,
    plan_labels,
    plan_landing,
    trains_on_new_data,
    trains_when_labelled,
)
from mlops_assets.ml.landing import labels_target as labels_target  # re-exported: callers import it from here
from mlops_assets.model import MLModel
from mlops_assets.profiling import is_model_run
from mlops_assets.provenance import package_version
from mlops_assets.resources import LandingZone
from mlops_assets.serving.segments import read_segment
from mlops_assets.storage.registry import ModelRegistry
from mlops_assets.tags import (
    DATA_VERSION_TAG,
    LANDING_GENERATION_TAG,
    MODEL_TAG,
    PACKAGE_VERSION_TAG,
    REASON_TAG,
    SOURCE_FILE_TAG,
    TRAINING_TAG,
)


def landing_generation(model: MLModel, instance: dg.DagsterInstance, key: str) -> int:
    """How many times data version ``key`` of ``model`` has landed, this landing included.

    1 plus the model's ``new_data`` runs already recorded for the key (one indexed run-tag count, no data read;
    the key is content-derived, so another model landing the same bytes has its own count).
    Deleting a partition and landing the same bytes again re-creates the same key; the generation puts a
    new run key on that run, where the first run's key would make the daemon skip it as already used.
    """
    runs = instance.get_runs_count(
        dg.RunsFilter(tags={REASON_TAG: "new_data", DATA_VERSION_TAG: key, MODEL_TAG: model.name})
    )
    return 1 + runs


def _trains_on_new_data(model: MLModel, registry: ModelRegistry) -> tuple[bool, str]:
    """Whether a new data version of ``model`` should also train: nothing in production yet, or the spec asks for it
    — and never at landing when the spec lets versions come without labels (a retrain waits for labels)."""
    spec = model.spec()
    return trains_on_new_data(
        registry.production_version(spec.name),
        getattr(spec, "retraining", None),
        labels_required=spec.label.required,
    )


#: Labels materializations read per query by the labelled sensor.
def _landing_request(model: MLModel, jobs: ModelJobs, version: NewVersion) -> dg.RunRequest:
    """The run of a new data version: the model's lifecycle job when it trains, else its ingest job."""
    return dg.RunRequest(
        run_key=version.run_key,
        job_name=(jobs.lifecycle if version.trains else jobs.ingest).name,
        partition_key=version.key,
        tags={
            REASON_TAG: "new_data",
            SOURCE_FILE_TAG: version.file_name,
            DATA_VERSION_TAG: version.key,
            TRAINING_TAG: version.training,
            LANDING_GENERATION_TAG: str(version.generation),
            MODEL_TAG: model.name,
        },
    )


def _labels_request(model: MLModel, run: LabelsRun) -> dg.RunRequest:
    """The labels run of a labels file (the sensor's job: the model's labels job)."""
    return dg.RunRequest(
        run_key=run.run_key,
        partition_key=run.target,
        tags={
            REASON_TAG: "new_labels",
            SOURCE_FILE_TAG: run.file_name,
            DATA_VERSION_TAG: run.target,
            MODEL_TAG: model.name,
        },
    )


def _land_segment(model: MLModel, serving: LandingZone, zone: LandingZone, segment_id: str) -> str:
    """Land closed segment ``segment_id`` of ``serving`` as ``<segment id>.parquet`` in the landing zone ``zone``
    (:func:`mlops_assets.ml.served.data_file_of_segment`, written to a temporary file and placed with
    :meth:`LandingZone.put`); returns the landed file's URI.

    Raises:
        ValueError: the segment cannot be a data file of the model's spec (the message names the columns).
    """
    name = f"{segment_id}.parquet"
    with serving.fetch(name) as path:
        segment, _ = read_segment(Path(path))
    data = served.data_file_bytes(served.data_file_of_segment(segment, model.spec()))
    with tempfile.TemporaryDirectory(prefix="mlops-served-") as folder:
        source = Path(folder) / name
        source.write_bytes(data)
        return zone.put(name, source)


def build(model: MLModel, jobs: ModelJobs) -> dg.Definitions:
    """The landing and labels sensors of ``model`` (``<name>__landing_sensor``, ``<name>__labels_sensor``), and the
    sensor that fails its runs whose process died unseen (``<name>__dead_run_sensor``).

    ``jobs`` are the model's jobs (:func:`mlops_assets.jobs.build_jobs`): the sensors request runs of them.
    """
    partitions = model.partitions_name

    @dg.sensor(
        name=model.job_name("landing_sensor"),
        jobs=[jobs.ingest, jobs.lifecycle],
        minimum_interval_seconds=EVERY_DAEMON_LOOP_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Registers every new CSV/Parquet file in model {model.name}'s landing zone as a data version "
            f"(content-derived key, a partition of {partitions}) and requests one run for it: {jobs.ingest.name} "
            f"(validate, features, monitoring, rollout step), or the whole {jobs.lifecycle.name} when nothing is in "
            "production yet (with label.required false never at landing: training waits for labels, see "
            f"{model.job_name('labelled_sensor')}). Landing the same bytes again, under any name, does nothing while "
            "their partition exists; after the partition was deleted it lands again with a new run key (landing "
            "generation)."
        ),
    )
    def landing_sensor(
        context: dg.SensorEvaluationContext,
        landing: LandingZone,
        registry: dg.ResourceParam[ModelRegistry],
    ) -> dg.SensorResult:
        zone = model.landing_zone(landing)
        registered = context.instance.get_dynamic_partitions(partitions)
        # The cursor remembers (size, mtime) → digest per file name, so a tick hashes only new or changed files.
        # The release in the run key: a failed run does not block a fixed release from retrying.
        listed = zone.scan()
        plan = plan_landing(
            listed,
            context.cursor,
            registered,
            zone.digest,
            trains=lambda: _trains_on_new_data(model, registry),
            generation_of=lambda key: landing_generation(model, context.instance, key),
            release=package_version(),
            zone_uri=zone.uri(""),
        )
        new_keys = plan.new_keys
        if new_keys:
            # A bulk landing's progress: how many files this tick registers, of how many listed, and what is left.
            trains = sum(v.trains for v in plan.versions)
            context.log.info(
                f"{model.name}: {len(new_keys)} new data version(s) of {len(listed)} file(s) in {zone.uri('')} "
                f"({len(registered)} registered before this tick; {trains} of the new runs train): "
                + ", ".join(new_keys)
            )
        versions = list(plan.versions)
        # Normally every registered file is in the stored cursor: the materialized partitions are read only when not.
        if candidates := lost_landings(context.cursor, plan.cursor, registered, ()):
            read = context.instance.get_materialized_partitions(model.key("raw_data"))
            candidates = [(name, key) for name, key in candidates if key not in read]
        for file_name, key in candidates:
            if landing_generation(model, context.instance, key) == 1:  # no landing run was ever created for it
                trains, why = _trains_on_new_data(model, registry)
                run_key = f"new_data:{key}:{package_version()}:landing-1"
                versions.append(NewVersion(file_name, key, 1, trains, why, run_key))
                context.log.warning(f"{key}: registered by a tick that did not complete; requesting its run again")
        faults.point("landing_tick")
        return dg.SensorResult(
            run_requests=[_landing_request(model, jobs, version) for version in versions],
            dynamic_partitions_requests=[model.partitions.build_add_request(new_keys)] if new_keys else [],
            cursor=plan.cursor,
            skip_reason=plan.skip_reason if not versions else None,
        )

    @dg.sensor(
        name=model.job_name("labels_sensor"),
        job=jobs.labels,
        minimum_interval_seconds=EVERY_DAEMON_LOOP_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Labels that arrive later: a CSV/Parquet file in model {model.name}'s labels zone named like a landed "
            f"data file (or after its version key), optionally with a .<part> suffix (several partial files for one "
            f"version are merged, a later file wins), with the id and label columns, requests one {jobs.labels.name} "
            "run for that data version (join to the prediction log, realised performance, A/B test, rollout step). "
            "A file whose data version has not landed yet waits; the same bytes again do nothing."
        ),
    )
    def labels_sensor(context: dg.SensorEvaluationContext, labels_landing: LandingZone) -> dg.SensorResult:
        zone = model.labels_zone(labels_landing)
        keys = context.instance.get_dynamic_partitions(partitions)
        plan = plan_labels(zone.scan(), context.cursor, keys, zone.digest, package_version())
        if plan.waiting:
            context.log.info(f"labels waiting for their data version to land: {', '.join(plan.waiting)}")
        return dg.SensorResult(
            run_requests=[_labels_request(model, run) for run in plan.runs],
            cursor=plan.cursor,
            skip_reason=plan.skip_reason,
        )

    @dg.sensor(
        name=model.job_name("labelled_sensor"),
        job=jobs.retrain,
        minimum_interval_seconds=EVERY_DAEMON_LOOP_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"A retrain waits for labels: with label.required false, model {model.name}'s data versions land without "
            "training (ingest job). When a labels run makes a version labelled (its labels materialization says "
            f"labelled: true) and nothing is in production yet or retraining.triggers includes new_data, this sensor "
            f"requests {jobs.retrain.name} on it once (reason new_data). Reads only new labels materializations."
        ),
    )
    def labelled_sensor(
        context: dg.SensorEvaluationContext, registry: dg.ResourceParam[ModelRegistry]
    ) -> dg.SensorResult:
        instance = context.instance
        after = int(context.cursor) if context.cursor else None
        records, mark = new_materializations(instance, model.key("labels"), after)
        cursor = str(mark) if mark is not None else context.cursor
        spec = model.spec()
        if spec.label.required:
            return dg.SensorResult(
                cursor=cursor,
                skip_reason="label.required is true: every version lands labelled and the landing sensor trains it",
            )
        became = became_labelled(records, spec.policy.data.min_labelled_share)
        if not became:
            return dg.SensorResult(cursor=cursor, skip_reason="no data version became labelled since the last tick")
        trains, why = trains_when_labelled(registry.production_version(spec.name), getattr(spec, "retraining", None))
        if not trains:
            return dg.SensorResult(cursor=cursor, skip_reason=f"labelled: {', '.join(became)}; no training: {why}")
        requests: list[dg.RunRequest] = []
        notes: list[str] = []
        for key in became:
            done = instance.get_runs_count(
                dg.RunsFilter(
                    job_name=jobs.retrain.name,
                    tags={REASON_TAG: "new_data", DATA_VERSION_TAG: key, MODEL_TAG: model.name},
                )
            )
            if done:
                notes.append(f"{key}: training on its labels was already requested")
                continue
            failing = next(iter(data_gate_verdicts(instance, [key], model.data_gates)))[1]
            if failing:
                notes.append(f"{key}: data gates not passed ({', '.join(f'{g.check} {g.status}' for g in failing)})")
                continue
            requests.append(
                dg.RunRequest(
                    run_key=f"new_data:{key}:{package_version()}:labelled",
                    partition_key=key,
                    tags={
                        REASON_TAG: "new_data",
                        DATA_VERSION_TAG: key,
                        TRAINING_TAG: f"labelled: {why}",
                        MODEL_TAG: model.name,
                        PACKAGE_VERSION_TAG: package_version(),
                    },
                )
            )
        for note in notes:
            context.log.info(note)
        return dg.SensorResult(run_requests=requests, cursor=cursor, skip_reason=None if requests else "; ".join(notes))

    # How often the dead-run sensor looks (MLOPS_DEAD_RUN_INTERVAL_S, read when the definitions load); a run is
    # marked failed on the second look that finds its worker gone.
    dead_run_interval = dead_run_interval_s()

    @dg.sensor(
        name=model.job_name("dead_run_sensor"),
        minimum_interval_seconds=dead_run_interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Marks FAILURE a STARTED run of model {model.name} whose executing process is gone (seen dead on two "
            "ticks in a row, so Dagster's own report comes first), so run retries re-run it instead of it "
            "holding its pool slot and the retrain triggers until max_runtime_seconds cancels it (never "
            "retried). Only with the local run launcher (run workers on this host); docs/reliability.md."
        ),
    )
    def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        instance = context.instance
        if not isinstance(instance.run_launcher, dg.DefaultRunLauncher):
            return dg.SkipReason("run workers are not processes of this host (not DefaultRunLauncher): nothing to do")
        suspected = set(json_codec.loads(context.cursor)) if context.cursor else set()
        dead_now: set[str] = set()
        failed: list[str] = []
        for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
            run = record.dagster_run
            if not is_model_run(model, run, instance):
                continue
            messages = [e.message for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]
            pid = run_liveness.worker_pid(messages)
            if pid is None or record.start_time is None:
                continue  # not executing yet: run monitoring's start timeout covers it
            if run_liveness.worker_state(pid, record.start_time) != "dead":
                continue
            current = instance.get_run_by_id(run.run_id)  # the worker is gone: it cannot end the run after this read
            if current is None or current.status != dg.DagsterRunStatus.STARTED:
                continue
            if run.run_id not in suspected:
                dead_now.add(run.run_id)
                continue
            instance.report_run_failed(
                current,
                f"the process executing this run (pid {pid}) is gone and the run was still STARTED on two checks "
                f"{dead_run_interval} s apart: marked failed by {model.job_name('dead_run_sensor')}",
            )
            failed.append(run.run_id)
        context.update_cursor(json_codec.dumps(sorted(dead_now)))
        if failed:
            context.log.warning(f"marked failed, their processes gone: {', '.join(failed)}")
            return dg.SkipReason(f"marked {len(failed)} run(s) with a dead worker failed: {', '.join(failed)}")
        if dead_now:
            return dg.SkipReason(f"worker gone, still STARTED (checked again next tick): {', '.join(sorted(dead_now))}")
        return dg.SkipReason("every STARTED run's worker is alive")

    @dg.sensor(
        name=model.job_name("served_traffic_sensor"),
        minimum_interval_seconds=EVERY_DAEMON_LOOP_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Closes the loop of mlops-serve: every closed prediction-log segment of model {model.name} in the "
            f"serving log (<serving root>/{model.name}/<segment id>.parquet) is landed in the model's landing zone as "
            "the data file <segment id>.parquet — one row per served row, the id column from its row id, every other "
            f"column but the label from the logged request — and {model.job_name('landing_sensor')} then registers "
            "and runs it as any unlabelled data version (its predictions are the served log; labels arrive by row id). "
            "A segment already landed (its file in the landing zone, or its data version registered) is never landed "
            "again. Needs label.required: false."
        ),
    )
    def served_traffic_sensor(
        context: dg.SensorEvaluationContext, landing: LandingZone, serving_log: LandingZone
    ) -> dg.SensorResult:
        serving = serving_log.at(model.name)
        closed = [f.name for f in serving.scan()]
        spec = model.spec()
        if spec.label.required:
            waiting = len(served.segments_to_land(closed, ()))
            return dg.SensorResult(
                skip_reason=(
                    f"{model.name}: label.required is true, so a data version must carry its labels (rule: "
                    "label.required) and served traffic has none; set label.required: false in the spec to land "
                    f"served traffic as unlabelled versions ({waiting} closed segment(s) in {serving.uri('')})"
                )
            )
        zone = model.landing_zone(landing)
        registered = context.instance.get_dynamic_partitions(model.partitions_name)
        landed = served.landed_segment_ids((f.name for f in zone.scan()), registered)
        # The cursor holds the segments this sensor landed whose data version is not registered yet: landed once,
        # even if their file leaves the landing zone before the landing sensor saw it.
        pending = set(json_codec.loads(context.cursor)) if context.cursor else set()
        pending = {p for p in pending if p not in landed}
        todo = served.segments_to_land(closed, landed | pending)
        done: list[str] = []
        refused: list[str] = []
        for segment_id in todo:
            try:
                uri = _land_segment(model, serving, zone, segment_id)
            except (ValueError, OSError) as exc:
                context.log.error(f"{model.name}: segment {segment_id} not landed: {exc}")
                refused.append(f"{segment_id}: {exc}")
                continue
            context.log.info(f"{model.name}: served segment {segment_id} landed as {uri}")
            done.append(segment_id)
        cursor = json_codec.dumps(sorted(pending | set(done)))
        notes = [f"landed {len(done)} segment(s) as data files: {', '.join(done)}"] if done else []
        notes += [f"not landed: {r}" for r in refused]
        if not notes:
            notes.append(f"no new closed segment in {serving.uri('')} ({len(closed)} listed)")
        # No run requests: the landing sensor registers the landed files and requests their runs.
        return dg.SensorResult(cursor=cursor, skip_reason="; ".join(notes))

    return dg.Definitions(
        sensors=[landing_sensor, labels_sensor, labelled_sensor, dead_run_sensor, served_traffic_sensor]
    )
