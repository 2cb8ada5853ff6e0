"""Sensors of one model: its new data files become data versions and runs; its landed labels files become labels runs.

:func:`build` creates ``<name>__landing_sensor`` and ``<name>__labels_sensor`` for a model: they watch the
model's landing and labels zones (:meth:`MLModel.landing_zone`, :meth:`MLModel.labels_zone`), add partitions
to ``<name>__data_versions`` and request runs of the model's jobs, tagged ``mlops/model``.
"""

import json
from collections.abc import Sequence

import dagster as dg

from mlops_assets.jobs import ModelJobs
from mlops_assets.ml.provenance import code_version
from mlops_assets.ml.versions import digest_of_key, safe_stem, stem_of_key, version_key
from mlops_assets.model import MLModel
from mlops_assets.resources import LandingZone, ModelRegistryResource
from mlops_assets.tags import (
    DATA_VERSION_TAG,
    LANDING_GENERATION_TAG,
    MODEL_TAG,
    REASON_TAG,
    SOURCE_FILE_TAG,
    TRAINING_TAG,
)


def _known_digests(model: MLModel, instance: dg.DagsterInstance) -> set[str]:
    """Short digests of the model's registered data versions."""
    digests = set()
    for key in instance.get_dynamic_partitions(model.partitions_name):
        try:
            digests.add(digest_of_key(key))
        except ValueError:  # a partition added by hand with another naming scheme: not ours to dedupe
            continue
    return digests


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


def _trains_on_new_data(model: MLModel, registry: ModelRegistryResource) -> tuple[bool, str]:
    """Whether a new data version of ``model`` should also train: nothing in production yet, or the spec asks for it."""
    spec = model.spec()
    if registry.registry().production_version(spec.name) is None:
        return True, "bootstrap: no model in production yet"
    retraining = getattr(spec, "retraining", None)
    if retraining is not None and "new_data" in retraining.triggers:
        return True, "retraining.triggers includes new_data"
    return False, "production model serves; retraining is left to the drift, performance and freshness sensors"


def _nothing_new(landing: LandingZone, n_files: int) -> str:
    """Why a landing tick requests nothing (``landing``: the model's landing zone)."""
    if not n_files:
        return f"no data files in the landing zone {landing.uri('')}"
    return (
        f"no new data: the {n_files} landed file(s) in {landing.uri('')} are all already registered as data "
        "versions (same bytes as an existing partition); delete a version's partition to land its bytes again"
    )


def labels_target(version_keys: Sequence[str], file_name: str) -> str | None:
    """The data version a labels file is for: the version key itself, else the newest version of that file stem."""
    stem = safe_stem(file_name)
    if stem in version_keys:
        return stem
    matching = []
    for key in version_keys:
        try:
            if stem_of_key(key) == stem:
                matching.append(key)
        except ValueError:
            continue
    return matching[-1] if matching else None


def build(model: MLModel, jobs: ModelJobs) -> dg.Definitions:
    """The landing and labels sensors of ``model`` (``<name>__landing_sensor``, ``<name>__labels_sensor``).

    ``jobs`` are the model's jobs (:func:`mlops_assets.jobs.build_jobs`): the sensors request runs of them.
    """
    partitions = model.partitions_name

    @dg.sensor(
        name=model.job_name("landing_sensor"),
        jobs=[jobs.ingest, jobs.lifecycle],
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Registers every new CSV/Parquet file in model {model.name}'s landing zone as a data version "
            f"(content-derived key, a partition of {partitions}) and requests one run for it: {jobs.ingest.name} "
            f"(validate, features, monitoring, rollout step), or the whole {jobs.lifecycle.name} when nothing is in "
            "production yet. Landing the same bytes again, under any name, does nothing while their partition "
            "exists; after the partition was deleted it lands again with a new run key (landing generation)."
        ),
    )
    def landing_sensor(
        context: dg.SensorEvaluationContext,
        landing: LandingZone,
        registry: ModelRegistryResource,
    ) -> dg.SensorResult:
        zone = model.landing_zone(landing)
        # The cursor remembers (size, mtime) → digest per file name, so a tick hashes only new or changed files.
        seen: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
        known = _known_digests(model, context.instance)
        new_keys: list[str] = []
        requests: list[dg.RunRequest] = []
        current: dict[str, list] = {}
        train: tuple[bool, str] | None = None
        landed_files = zone.scan()
        for landed in landed_files:
            cached = seen.get(landed.name)
            if cached and cached[0] == landed.size and cached[1] == landed.mtime_ns:
                digest = cached[2]
            else:
                digest = zone.digest(landed.name)
            current[landed.name] = [landed.size, landed.mtime_ns, digest]
            short = digest[:12]
            if short in known:
                continue
            known.add(short)
            key = version_key(landed.name, digest)
            new_keys.append(key)
            if train is None:
                train = _trains_on_new_data(model, registry)
            generation = landing_generation(model, context.instance, key)
            requests.append(
                dg.RunRequest(
                    # Code version in the key: a failed run does not block a fixed release from retrying. Landing
                    # generation: a version re-created after its partition was deleted runs again.
                    run_key=f"new_data:{key}:{code_version()}:landing-{generation}",
                    job_name=(jobs.lifecycle if train[0] else jobs.ingest).name,
                    partition_key=key,
                    tags={
                        REASON_TAG: "new_data",
                        SOURCE_FILE_TAG: landed.name,
                        DATA_VERSION_TAG: key,
                        TRAINING_TAG: train[1],
                        LANDING_GENERATION_TAG: str(generation),
                        MODEL_TAG: model.name,
                    },
                )
            )
        if new_keys:
            context.log.info(f"new data versions of {model.name}: {', '.join(new_keys)}")
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[model.partitions.build_add_request(new_keys)] if new_keys else [],
            cursor=json.dumps(current, sort_keys=True),
            skip_reason=None if requests else _nothing_new(zone, len(landed_files)),
        )

    @dg.sensor(
        name=model.job_name("labels_sensor"),
        job=jobs.labels,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Labels that arrive later: a CSV/Parquet file in model {model.name}'s labels zone named like a landed "
            f"data file (or after its version key), with the id and label columns, requests one {jobs.labels.name} "
            "run for that data version (join to the prediction log, realised performance, A/B test, rollout step). "
            "A file whose data version has not landed yet waits; the same bytes again do nothing."
        ),
    )
    def labels_sensor(context: dg.SensorEvaluationContext, labels_landing: LandingZone) -> dg.SensorResult:
        zone = model.labels_zone(labels_landing)
        seen: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
        keys = context.instance.get_dynamic_partitions(partitions)
        requests: list[dg.RunRequest] = []
        waiting: list[str] = []
        current: dict[str, list] = {}
        for landed in zone.scan():
            cached = seen.get(landed.name)
            if cached and cached[0] == landed.size and cached[1] == landed.mtime_ns:
                current[landed.name] = cached
                continue
            target = labels_target(keys, landed.name)
            if target is None:
                waiting.append(landed.name)  # not in the cursor: looked at again next tick
                continue
            digest = zone.digest(landed.name)
            current[landed.name] = [landed.size, landed.mtime_ns, digest]
            requests.append(
                dg.RunRequest(
                    run_key=f"new_labels:{target}:{digest[:12]}:{code_version()}",
                    partition_key=target,
                    tags={
                        REASON_TAG: "new_labels",
                        SOURCE_FILE_TAG: landed.name,
                        DATA_VERSION_TAG: target,
                        MODEL_TAG: model.name,
                    },
                )
            )
        if waiting:
            context.log.info(f"labels waiting for their data version to land: {', '.join(waiting)}")
        return dg.SensorResult(
            run_requests=requests,
            cursor=json.dumps(current, sort_keys=True),
            skip_reason=None
            if requests
            else "no new labels" + (f" ({len(waiting)} waiting for data)" if waiting else ""),
        )

    return dg.Definitions(sensors=[landing_sensor, labels_sensor])
