"""Sensors: new files in the landing zone become data versions and lifecycle runs."""

import json

import dagster as dg

from mlops_assets.jobs import lifecycle_job
from mlops_assets.ml.provenance import code_version
from mlops_assets.ml.versions import digest_of_key, version_key
from mlops_assets.partitions import DATA_VERSIONS, data_versions
from mlops_assets.resources import LandingZone

REASON_TAG = "mlops/reason"
SOURCE_FILE_TAG = "mlops/source_file"
DATA_VERSION_TAG = "mlops/data_version"


def _known_digests(instance: dg.DagsterInstance) -> set[str]:
    digests = set()
    for key in instance.get_dynamic_partitions(DATA_VERSIONS):
        try:
            digests.add(digest_of_key(key))
        except ValueError:  # a partition added by hand with another naming scheme: not ours to dedupe
            continue
    return digests


@dg.sensor(
    job=lifecycle_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Registers every new CSV/Parquet file in the landing folder as a data version (content-derived key) "
        "and requests one lifecycle run for it. Landing the same bytes again, under any name, does nothing."
    ),
)
def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingZone) -> dg.SensorResult:
    # The cursor remembers (size, mtime) → digest per file name, so a tick hashes only new or changed files.
    seen: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
    known = _known_digests(context.instance)
    new_keys: list[str] = []
    requests: list[dg.RunRequest] = []
    current: dict[str, list] = {}
    for landed in landing.scan():
        cached = seen.get(landed.name)
        if cached and cached[0] == landed.size and cached[1] == landed.mtime_ns:
            digest = cached[2]
        else:
            digest = landing.digest(landed.name)
        current[landed.name] = [landed.size, landed.mtime_ns, digest]
        short = digest[:12]
        if short in known:
            continue
        known.add(short)
        key = version_key(landed.name, digest)
        new_keys.append(key)
        requests.append(
            dg.RunRequest(
                # Code version in the key: a failed run does not block a fixed release from retrying.
                run_key=f"new_data:{key}:{code_version()}",
                partition_key=key,
                tags={REASON_TAG: "new_data", SOURCE_FILE_TAG: landed.name, DATA_VERSION_TAG: key},
            )
        )
    if new_keys:
        context.log.info(f"new data versions: {', '.join(new_keys)}")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[data_versions.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps(current, sort_keys=True),
        skip_reason=None if requests else "no new data in the landing folder",
    )
