"""Served traffic closes the loop: a closed ``mlops-serve`` segment lands as a data version, is run like any other,
its predictions are what was served, its labels arrive by row id, and the skew check compares it with the batch path.

Segments are made here the way the server makes them (:mod:`mlops_assets.serving.signature` and
:mod:`mlops_assets.serving.segments`): synthetic rows as request records, validated and typed, the production model's
scores, one request per row, appended to a :class:`~mlops_assets.serving.segments.SegmentWriter` whose sink is the
world's serving log. The world is a copy of the promoted world (synthetic model v1 in Production) opened with a copy
of the synthetic spec saying ``label.required: false`` (same model name).
"""

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_assets.definitions import build_defs
from mlops_assets.demo_data import synthetic
from mlops_assets.ml import features as features_core
from mlops_assets.ml import served
from mlops_assets.ml import serving_contract as contract
from mlops_assets.ml.routing import feature_hash_array
from mlops_assets.ml.spec import DatasetSpec, packaged_spec_path
from mlops_assets.ml.training import positive_scores
from mlops_assets.resources import LandingZone
from mlops_assets.serving import segments, signature
from mlops_assets.storage.artifacts.skops_codec import load_model
from mlops_assets.storage.registry import CHAMPION
from mlops_assets_tests.support import ModelGraph, model_graph
from mlops_assets_tests.worlds import World, open_world

pytestmark = pytest.mark.e2e

#: Rows per served segment, and the skew sample (small: a single-row predict per request and model).
ROWS = 300
SKEW_ROWS = 120


def _spec_copy(folder: Path, *, label_required: bool) -> Path:
    data = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    data["label"]["required"] = label_required
    # A 300-row segment is 0.12x the 2,500-row batch version: the volume gate (default bounds [0.5, 2]) compares a
    # served version only with earlier served versions, so the first one has nothing to compare with and passes.
    data["policy"].update(skew_sample_rows=SKEW_ROWS)
    path = folder / "synthetic_served.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def served_world(promoted_world_template: tuple[Path, str], tmp_path: Path) -> Iterator[World]:
    """A private copy of the promoted world, opened with the ``label.required: false`` copy of the synthetic spec."""
    template, _ = promoted_world_template
    root = tmp_path / "world"
    shutil.copytree(template, root)
    graph = model_graph(str(_spec_copy(tmp_path, label_required=False)), name="synthetic")
    with open_world(root, graph) as world:
        yield world


def _serving(world: World) -> LandingZone:
    return LandingZone(directory=str(world.data / "serving")).at(world.graph.model.name)


def _json_value(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _records(frame: pd.DataFrame, spec: DatasetSpec) -> list[dict]:
    """Request records (JSON values) of synthetic rows: the fields but the id and the label."""
    rows = frame[served.record_fields(spec)].astype(object).to_dict("records")
    return [{k: _json_value(v) for k, v in row.items()} for row in rows]


def serve(
    world: World,
    tmp_path: Path,
    frame: pd.DataFrame,
    *,
    transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    worker_tag: str = "0a1b2c3d",
) -> str:
    """Serve ``frame``'s rows as ``mlops-serve`` would, one request per row (request id = the row's id), with the
    production model; ``transform`` changes the model inputs the server builds (a skewed server). Returns the id of
    the closed segment in the world's serving log."""
    spec = world.graph.model.spec()
    registry = world.registry()
    try:
        champion = registry.get_alias(spec.name, CHAMPION)
        assert champion is not None
        pipeline = load_model(world.env.resources["artifacts"].open(), champion.artifact)
    finally:
        registry.close()
    sig = signature.signature_of(spec)
    schema = segments.segment_schema(sig)
    writer = segments.SegmentWriter(
        wal_dir=tmp_path / f"wal-{worker_tag}", sink=_serving(world), schema=schema, worker_tag=worker_tag
    )
    segment_id = writer.open(
        {
            "model": spec.name,
            "champion_version": str(champion.version),
            "challenger_version": "",
            "challenger_share": "0.0",
            "salt": spec.name,
            "phase": "none",
        }
    )
    threshold = spec.policy.evaluation.decision_threshold
    ids = frame[spec.id_column].astype(str).tolist()
    for request_id, record in zip(ids, _records(frame, spec), strict=True):
        records = signature.parse_records(sig, [record])
        inputs = signature.model_inputs_of(sig, signature.typed_frame(sig, records), spec)
        if transform is not None:
            inputs = transform(inputs)
        scores = positive_scores(pipeline, inputs)
        arm = segments.ScoredArm(
            model_version=champion.version,
            arm="champion",
            served=np.ones(1, dtype=bool),
            scores=scores,
            decisions=(scores >= threshold).astype(np.int64),
        )
        writer.append(
            segments.log_batch(
                sig,
                schema,
                segment_id=segment_id,
                request_id=request_id,
                row_ids=contract.row_ids_for(request_id, 1, sig.id_kind),
                records=records,
                inputs=inputs,
                feature_hashes=feature_hash_array(inputs).to_pylist(),
                scored=[arm],
                scored_at=datetime.now(UTC),
                latency_ms=1.0,
            )
        )
    writer.close()
    assert (world.data / "serving" / spec.name / f"{segment_id}.parquet").is_file()
    return segment_id


def tick(world: World, base: str, cursor: str | None = None) -> dg.SensorResult:
    """One tick of the model's sensor ``base``, applying its partition requests as the daemon would."""
    with dg.build_sensor_context(instance=world.instance, cursor=cursor, resources=world.env.resources) as context:
        result = world.graph.sensor(base)(context)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        world.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def why(result: dg.SensorResult) -> str:
    """The tick's skip message ("" when it did not skip)."""
    return (result.skip_reason.skip_message or "") if result.skip_reason else ""


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _metadata(world: World, asset: str, key: str) -> dict:
    record = world.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=world.graph.key(asset), asset_partitions=[key]), limit=1
    ).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def _stored(world: World, asset: str, key: str):
    return world.env.resources["io_manager"].load_value(world.graph.key(asset), key)


def _land(world: World, segment_id: str) -> str:
    """The served traffic sensor lands the segment, the landing sensor registers it; returns its version key."""
    landed = tick(world, "served_traffic_sensor")
    assert (world.landing / f"{segment_id}.parquet").is_file(), why(landed)
    registered = tick(world, "landing_sensor")
    [request] = registered.run_requests
    assert served.segment_id_of_version(request.partition_key) == segment_id
    return request.partition_key


def test_a_served_segment_lands_runs_and_its_predictions_are_the_served_log(served_world: World, tmp_path: Path):
    world, graph = served_world, served_world.graph
    spec = graph.model.spec()
    frame = synthetic.generate(ROWS, seed=11, start_id=100_000)
    segment_id = serve(world, tmp_path, frame.drop(columns=[spec.label.column]))

    # 1. The sensor lands it as <segment id>.parquet; a second tick lands nothing (same file, same bytes).
    first = tick(world, "served_traffic_sensor")
    landed = world.landing / f"{segment_id}.parquet"
    assert landed.is_file() and segment_id in why(first)
    stamp = landed.stat().st_mtime_ns
    again = tick(world, "served_traffic_sensor", first.cursor)
    assert "no new closed segment" in why(again) and landed.stat().st_mtime_ns == stamp

    # 2. The landing sensor registers it as a data version and requests its ingest run (no training at landing).
    registered = tick(world, "landing_sensor")
    [request] = registered.run_requests
    key = request.partition_key
    assert key.startswith(f"{segment_id}__") and request.job_name == graph.name("ingest_job")
    assert key in world.instance.get_dynamic_partitions(graph.partitions_name)
    # Registered: the served traffic sensor still lands nothing, even with no cursor.
    assert "no new closed segment" in why(tick(world, "served_traffic_sensor"))

    # 3. The ingest job runs it: gates, features, drift, predictions (the served log), skew check.
    defs = build_defs(world.env, [graph.model])
    run = defs.resolve_job_def(graph.name("ingest_job")).execute_in_process(
        instance=world.instance, partition_key=key, raise_on_error=False
    )
    assert run.success
    materialized = {e.asset_key for e in run.get_asset_materialization_events()}
    assert {graph.key("raw_data"), graph.key("drift_report"), graph.key("predictions")} <= materialized
    checks = _checks(run)
    assert checks["training_serving_skew"].passed, checks["training_serving_skew"].description
    skew_meta = {k: v.value for k, v in checks["training_serving_skew"].metadata.items()}
    assert skew_meta["applies"] is True and skew_meta["max_abs_score_diff"] == 0.0
    assert skew_meta["sampled_rows"] >= SKEW_ROWS and skew_meta["differing_columns"] == "none"
    gates = {c.name for c in graph.model.data_gates}
    assert gates <= set(checks) and all(checks[g].passed for g in gates)  # the data file passed every data gate

    # 4. predictions IS the served log: rows, served flags, scores and versions as logged.
    segment, _ = segments.read_segment(world.data / "serving" / spec.name / f"{segment_id}.parquet")
    log = _stored(world, "predictions", key)
    expected = served.served_log(segment, key)
    assert len(log) == ROWS
    assert list(log["row_id"]) == list(expected["row_id"]) == frame[spec.id_column].astype(str).tolist()
    np.testing.assert_array_equal(log["score"].to_numpy(), segment["score"].to_numpy())
    assert log["served"].all() and set(log["model_version"]) == {1} and set(log["arm"]) == {"champion"}
    assert list(log["prediction_id"]) == list(segment["prediction_id"])
    meta = _metadata(world, "predictions", key)
    assert meta["source"] == "served traffic" and meta["segment"].endswith(f"{segment_id}.parquet")
    assert meta["champion_version"] == 1 and meta["challenger_version"] == 0 and meta["scored_rows"] == ROWS
    assert meta["scored_at"] == pd.Timestamp(segment["scored_at"].min()).isoformat()

    # 5. Labels landing by row id (a labels file named like the data file) make the served version labelled.
    labels_dir = world.data / "labels" / graph.model.name
    labels_dir.mkdir(parents=True, exist_ok=True)
    frame[[spec.id_column, spec.label.column]].to_csv(labels_dir / f"{segment_id}.csv", index=False)
    labelled = world.run(key, dg.AssetSelection.assets(graph.key("labels")))
    assert labelled.success
    labels_meta = _metadata(world, "labels", key)
    assert labels_meta["labelled"] is True and labels_meta["labelled_rows"] == ROWS

    # 6. The batch side changed (a transform of tenure_months in model_inputs): the skew check fails, naming it.
    original = features_core.model_inputs

    def skewed(features_df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
        inputs = original(features_df, spec)
        return inputs.assign(tenure_months=inputs["tenure_months"] + 1.0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(features_core, "model_inputs", skewed)
        rerun = world.run(key, dg.AssetSelection.assets(graph.key("predictions")))  # the served log again, its check
    evaluation = _checks(rerun)["training_serving_skew"]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "tenure_months differs" in str(evaluation.description) and "rule:" in str(evaluation.description)
    assert evaluation.metadata["differing_columns"].value == "tenure_months"


def test_a_server_that_transforms_differently_fails_the_skew_check_and_a_lost_segment_fails_predictions(
    served_world: World, tmp_path: Path
):
    world, graph = served_world, served_world.graph
    spec = graph.model.spec()
    frame = synthetic.generate(ROWS, seed=12, start_id=200_000).drop(columns=[spec.label.column])
    # The server divides income by 1,000 before the model: logged inputs and scores are the skewed server's.
    segment_id = serve(world, tmp_path, frame, transform=lambda x: x.assign(income=x["income"] / 1000))
    key = _land(world, segment_id)
    selection = dg.AssetSelection.assets(*graph.keys("raw_data", "features", "predictions"))
    run = world.run(key, selection)
    assert run.success
    evaluation = _checks(run)["training_serving_skew"]
    assert not evaluation.passed
    description = str(evaluation.description)
    assert "income differs" in description and "scores differ" in description
    assert "age" not in evaluation.metadata["differing_columns"].value
    assert evaluation.metadata["max_abs_score_diff"].value > 0

    # A batch version: the check passes and says it does not apply.
    batch_key = world.land("synthetic_v002.csv", seed=2, start_id=300_000)  # a batch-sized version (volume gate)
    batch = world.run(batch_key, selection)
    assert batch.success
    batch_check = _checks(batch)["training_serving_skew"]
    assert batch_check.passed and batch_check.metadata["applies"].value is False
    assert "source" not in _metadata(world, "predictions", batch_key)

    # The segment is gone: predictions of the served version fail, saying what cannot be done.
    (world.data / "serving" / spec.name / f"{segment_id}.parquet").unlink()
    lost = world.run(key, dg.AssetSelection.assets(graph.key("predictions")))
    assert not lost.success
    failure = next(e for e in lost.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.user_failure_data.description
    assert f"segment {segment_id} is not in the serving log" in message
    assert "cannot be reconstructed" in message


def test_a_model_whose_versions_need_labels_does_not_land_served_traffic(tmp_path: Path):
    graph: ModelGraph = model_graph(str(_spec_copy(tmp_path, label_required=True)), name="synthetic")
    with open_world(tmp_path / "world", graph) as world:
        folder = world.data / "serving" / "synthetic"
        folder.mkdir(parents=True)
        (folder / "served-20261201T031500123456Z-0a1b2c3d.parquet").write_bytes(b"PAR1")
        result = tick(world, "served_traffic_sensor")
        assert not list(world.landing.iterdir())
        reason = why(result)
        assert "label.required is true" in reason and "rule: label.required" in reason
        assert "set label.required: false" in reason and "1 closed segment" in reason


def test_a_segment_that_cannot_be_read_is_reported_and_not_landed(tmp_path: Path):
    graph = model_graph(str(_spec_copy(tmp_path, label_required=False)), name="synthetic")
    with open_world(tmp_path / "world", graph) as world:
        folder = world.data / "serving" / "synthetic"
        folder.mkdir(parents=True)
        broken = "served-20261201T031500123456Z-0a1b2c3d"
        (folder / f"{broken}.parquet").write_bytes(b"not parquet")
        (folder / "notes.parquet").write_bytes(b"not a segment: ignored")
        result = tick(world, "served_traffic_sensor")
        assert not list(world.landing.iterdir())
        assert f"not landed: {broken}" in why(result)
        assert broken not in (result.cursor or "")  # not remembered as landed: tried again on the next tick
