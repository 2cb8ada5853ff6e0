"""Measure one landing-sensor tick against N registered data versions (SQLite vs PostgreSQL instance).

The sensor is the ``synthetic`` model's ``synthetic__landing_sensor`` (built by
:func:`mlops_assets.sensors.build`). For each instance kind and N, the model's landing zone
(``<landing root>/synthetic/``) holds N small data files that are already registered as partitions of
``synthetic__data_versions`` plus one new file, and the sensor is evaluated directly
(``dg.build_sensor_context``, the daemon's gRPC round trip not included):

* ``warm``: the cursor already knows the N files (the steady state: only the new file is hashed);
* ``cold``: no cursor (a lost or reset cursor: every file is hashed again, partitions dedupe).

The landing zone is a local folder, or with ``--s3`` a prefix in a moto S3 server on loopback (each
file then costs a GET when it must be hashed). Usage (PostgreSQL on 127.0.0.1:5432, user postgres):

    python deploy/bench_landing_sensor.py --versions 1000 5000 [--s3] [--repeat 3]

Prints one JSON line per measurement; docs/deployment.md quotes the figures.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from mlops_assets import sensors
from mlops_assets.jobs import build_jobs
from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets.model import MLModel
from mlops_assets.resources import LandingZone, ModelRegistryResource
from mlops_assets.s3_resources import S3LandingZone

#: The model whose landing sensor is measured.
MODEL = MLModel.from_spec("synthetic")

PG_ADMIN = os.environ.get("MLOPS_TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _pg_instance_yaml(db: str) -> str:
    url = sa.make_url(PG_ADMIN)
    return (
        "storage:\n  postgres:\n    postgres_db:\n"
        f"      username: {url.username}\n      hostname: {url.host}\n      port: {url.port or 5432}\n"
        f"      db_name: {db}\n      scheme: postgresql+psycopg2\n"
        "telemetry:\n  enabled: false\n"
    )


def _files(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n + 1):
        path = folder / f"v{i:05d}.csv"
        path.write_text(f"id,y\n{i},0\n")
        paths.append(path)
    return paths


def _landing_sensor(model: MLModel) -> dg.SensorDefinition:
    """The model's landing sensor, as the code location builds it."""
    name = model.job_name("landing_sensor")
    built = sensors.build(model, build_jobs(model))
    found = [s for s in built.sensors or [] if s.name == name]
    if len(found) != 1 or not isinstance(found[0], dg.SensorDefinition):
        raise LookupError(f"mlops_assets.sensors.build({model.name}) defines no sensor {name}")
    return found[0]


def _tick(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance, resources: dict[str, Any], cursor: str | None
) -> tuple[float, Any]:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        start = time.perf_counter()
        result = sensor(context)
        return time.perf_counter() - start, result


def measure(kind: str, n: int, s3_endpoint: str | None, repeat: int, work: Path) -> list[dict[str, Any]]:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    db = f"mlops_bench_{uuid.uuid4().hex[:12]}"
    home = work / f"{kind}-{n}"
    home.mkdir(parents=True)
    if kind == "postgres":
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{db}"')
        (home / "dagster.yaml").write_text(_pg_instance_yaml(db))
    else:
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    try:
        sensor = _landing_sensor(MODEL)
        local_root = LandingZone(directory=str(home / "landing"))
        paths = _files(MODEL.landing_zone(local_root).root, n)
        registered = paths[:n]
        keys = [version_key(p.name, file_digest(p)) for p in registered]
        resources: dict[str, Any] = {"registry": ModelRegistryResource(url=f"sqlite:///{home / 'registry.db'}")}
        if s3_endpoint:
            import boto3

            client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
            bucket = f"bench-{uuid.uuid4().hex[:16]}"
            client.create_bucket(Bucket=bucket)
            from dagster_aws.s3 import S3Resource

            root = S3LandingZone(directory=f"s3://{bucket}/landing/", s3=S3Resource(endpoint_url=s3_endpoint))
            zone = MODEL.landing_zone(root)
            for p in paths:
                key = zone.uri(p.name).removeprefix(f"s3://{bucket}/")
                client.put_object(Bucket=bucket, Key=key, Body=p.read_bytes())
            resources["landing"] = root
        else:
            resources["landing"] = local_root
        rows = []
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions(MODEL.partitions_name, keys)
            # A cursor that knows the N registered files (what the previous ticks left).
            _, warm_result = _tick(sensor, instance, resources, None)
            known = {k: v for k, v in json.loads(warm_result.cursor).items() if k != paths[-1].name}
            warm_cursor = json.dumps(known, sort_keys=True)
            for mode, cursor in (("warm", warm_cursor), ("cold", None)):
                times = []
                for _ in range(repeat):
                    seconds, result = _tick(sensor, instance, resources, cursor)
                    # The one new file is requested every time: its partition is never added here.
                    assert len(result.run_requests) == 1, result
                    times.append(seconds)
                rows.append(
                    {
                        "instance": kind,
                        "landing": "s3-moto" if s3_endpoint else "local",
                        "versions": n,
                        "cursor": mode,
                        "median_s": round(statistics.median(times), 3),
                        "max_s": round(max(times), 3),
                        "repeat": repeat,
                    }
                )
        return rows
    finally:
        if kind == "postgres":
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--instances", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--s3", action="store_true", help="landing zone in a moto S3 server instead of a folder")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    server = None
    endpoint = None
    if args.s3:
        from moto.server import ThreadedMotoServer

        for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
            os.environ.setdefault(name, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
    try:
        with tempfile.TemporaryDirectory() as work:
            for n in args.versions:
                for kind in args.instances:
                    for row in measure(kind, n, endpoint, args.repeat, Path(work)):
                        print(json.dumps(row), flush=True)
    finally:
        if server is not None:
            server.stop()
    print(f"python {sys.version.split()[0]}, dagster {dg.__version__}, cpus {os.cpu_count()}", file=sys.stderr)


if __name__ == "__main__":
    main()
