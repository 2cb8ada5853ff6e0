"""The real production deployment, end to end, on this machine.

Four kinds of processes, as on Kubernetes (docs/deployment.md): a code location server
(``dagster code-server start``, the only one holding the MLOPS_* settings, the S3 credentials and the
HMAC key), ``dagster-daemon run`` and ``dagster-webserver`` (instance settings only), and the run
workers the code server spawns for each run. The instance is ``deploy/dagster.yaml`` on a fresh
PostgreSQL database, the registry lives in its own schema of that database, and landing zone, asset
values and artifacts live in a fresh bucket of a moto S3 server on loopback.

The code server serves one model, ``synthetic``, from ``MLOPS_SPEC`` (assets ``synthetic/<asset>``, jobs and
sensors ``synthetic__<name>``). A synthetic data version is uploaded under the model's landing prefix
(``landing/synthetic/``); the daemon's ``synthetic__landing_sensor`` (RUNNING by default) registers it and
launches the run; the test then asks the webserver's GraphQL API what happened and looks into the bucket.
"""

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_assets.demo_data import synthetic
from mlops_assets.ml.versions import version_key
from mlops_assets.storage.registry import ModelRegistry
from mlops_assets_tests.deployment import (
    CHECK_EXECUTIONS,
    LAUNCH,
    LIFECYCLE_JOB,
    MATERIALIZATIONS,
    MODEL,
    RUN,
    RUN_TIMEOUT_S,
    Deployment,
    code_env,
    free_port,
    graphql,
    instance_env,
    prepare_home,
    registry_in_schema,
    settled_run,
    start_processes,
    wait,
    wait_loaded,
)

# One heavy test: keep it on one xdist worker when run with --dist loadgroup. Everything it touches
# (database, bucket, ports, DAGSTER_HOME) is unique per run, so two copies in parallel do not collide.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("prod_integration")]

ROWS = 2500


@pytest.fixture
def registry_url(postgres_url: str) -> str:
    """The registry in its own schema of the test database (Dagster's tables stay in ``public``)."""
    return registry_in_schema(postgres_url)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    logs = tmp_path / "logs"
    logs.mkdir()
    d = Deployment(logs)
    try:
        yield d
    finally:
        d.stop()


def test_landed_s3_object_runs_through_daemon_and_shows_in_graphql(
    tmp_path: Path,
    postgres_url: str,
    registry_url: str,
    s3_bucket,
    s3_endpoint: str,
    deployment: Deployment,
    synthetic_spec: str,
) -> None:
    started = time.monotonic()
    bucket, s3 = s3_bucket
    canary = f"canary-secret-{uuid.uuid4().hex}"
    home = prepare_home(tmp_path / "dagster_home")
    code_port, web_port, viewer_port = free_port(), free_port(), free_port()
    # What every process needs to open the instance and find the code server — and nothing else; the code
    # server alone gets the prod settings, the S3 credentials and the HMAC key.
    instance = instance_env(home, postgres_url, code_port)
    code = code_env(
        instance,
        # The packaged synthetic spec (see the fixture).
        spec=synthetic_spec,
        registry_url=registry_url,
        bucket=bucket,
        s3_endpoint=s3_endpoint,
        hmac_key=canary,
        tmp=tmp_path / "tmp",  # the landing cache of run workers
    )
    start_processes(deployment, home, instance, code, code_port=code_port, web_port=web_port, viewer_port=viewer_port)
    for port in (web_port, viewer_port):
        wait_loaded(deployment, port)
    ready_s = time.monotonic() - started

    frame = synthetic.generate(ROWS, seed=1)
    body = frame.to_csv(index=False).encode()
    key = version_key("v1.csv", hashlib.sha256(body).hexdigest())
    s3.put_object(Bucket=bucket, Key=f"landing/{MODEL}/v1.csv", Body=body)
    landed = time.monotonic()

    run = wait(f"the run for {key}", deployment, RUN_TIMEOUT_S, lambda: settled_run(web_port, key))
    run_s = time.monotonic() - landed
    assert run["status"] == "SUCCESS", f"{run}\n{deployment.dump()}"
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["mlops/reason"] == "new_data" and tags["mlops/source_file"] == "v1.csv"

    detail = graphql(web_port, RUN, {"runId": run["runId"]})["runOrError"]
    materialized = {"/".join(m["assetKey"]["path"]) for m in detail["assetMaterializations"] if m["partition"] == key}
    assert {f"{MODEL}/raw_data", f"{MODEL}/features"} <= materialized, materialized
    trained = f"{MODEL}/candidate_model" in materialized
    if run["jobName"] == LIFECYCLE_JOB:
        # Nothing was in production, so the sensor launched the whole lifecycle: train, gate, promote.
        expected = {f"{MODEL}/{a}" for a in ("candidate_model", "model_evaluation", "deployment_decision")}
        assert expected <= materialized, materialized
    excerpt: dict[str, Any] = {}
    for asset in ["raw_data", "features", *(["candidate_model", "deployment_decision"] if trained else [])]:
        events = graphql(web_port, MATERIALIZATIONS, {"path": [MODEL, asset], "partition": key})["assetOrError"]
        assert [e["runId"] for e in events["assetMaterializations"]] == [run["runId"]], (asset, events)
        excerpt[asset] = [
            {**e, "metadataEntries": [m["label"] for m in e["metadataEntries"]][:6]}
            for e in events["assetMaterializations"]
        ]

    outcomes: dict[str, tuple[str, bool | None, str | None]] = {}
    for check in detail["assetChecks"]:
        executions = graphql(
            web_port, CHECK_EXECUTIONS, {"path": check["assetKey"]["path"], "check": check["name"], "partition": key}
        )["assetCheckExecutions"]
        assert executions, f"no execution of {check['name']} for {key}"
        latest = executions[0]
        evaluation = latest["evaluation"] or {}
        outcomes[check["name"]] = (latest["status"], evaluation.get("success"), evaluation.get("severity"))
        if check["name"] in {"schema_valid", "non_inferior_to_production"}:
            excerpt[f"check:{check['name']}"] = executions[:1]
    assert {"schema_valid", "row_count_above_floor", "label_in_domain", "ids_unique"} <= set(outcomes)
    failed_blocking = {n: o for n, o in outcomes.items() if o[0] != "SUCCEEDED" and o[2] != "WARN"}
    assert failed_blocking == {}, outcomes

    # The bucket holds the landed file, the asset values and (when the run trained) the verified artifacts.
    keys = {
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    }
    assert f"assets/{MODEL}/raw_data/{key}.parquet" in keys, sorted(keys)
    assert f"assets/{MODEL}/features/{key}.parquet" in keys, sorted(keys)
    if trained:
        assert any(k.startswith("artifacts/") and k.endswith(".skops") for k in keys), sorted(keys)
    if run["jobName"] == LIFECYCLE_JOB:
        # The registry (PostgreSQL, its own schema) holds the promoted version, its artifact in the bucket.
        production = ModelRegistry(registry_url).production_version(MODEL)
        assert production is not None and production.artifact_uri.startswith(f"s3://{bucket}/artifacts/")
        assert production.artifact_hmac, "artifacts are HMAC-signed when MLOPS_ARTIFACT_HMAC_KEY is set"
    # The HMAC key (only in the code server's environment) reached no object, no run config, no log.
    for k in keys:
        assert canary.encode() not in s3.get_object(Bucket=bucket, Key=k)["Body"].read(), k
    assert canary not in detail["runConfigYaml"]
    # The read-only webserver reports the same run but refuses to launch one.
    assert graphql(viewer_port, RUN, {"runId": run["runId"]})["runOrError"]["status"] == "SUCCESS"
    refused = graphql(viewer_port, LAUNCH, {"job": LIFECYCLE_JOB, "partition": key})["launchRun"]
    assert refused["__typename"] == "UnauthorizedError", refused
    deployment.assert_alive()
    total_s = time.monotonic() - started
    summary = {
        "data_version": key,
        "job": run["jobName"],
        "executor": code["MLOPS_EXECUTOR"],
        "startup_s": round(ready_s, 1),
        "landing_to_success_s": round(run_s, 1),
        "total_s": round(total_s, 1),
        "materialized": sorted(materialized),
        "checks": {n: o[0] for n, o in sorted(outcomes.items())},
        "objects": len(keys),
        "object_keys_sample": [
            k for k in sorted(keys) if k.startswith(("landing/", f"assets/{MODEL}/raw_data/", "artifacts/"))
        ][:4],
        "graphql_excerpt": excerpt,
    }
    print("prod integration:", json.dumps(summary, indent=1))
    (tmp_path / "summary.json").write_text(json.dumps(summary, indent=1))
    out = os.environ.get("MLOPS_PROD_INTEGRATION_SUMMARY")
    if out:
        Path(out).write_text(json.dumps(summary, indent=1))
    logs_text = deployment.dump()
    assert canary not in logs_text
