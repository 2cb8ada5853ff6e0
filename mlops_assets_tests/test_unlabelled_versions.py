"""A lifecycle whose data versions land without labels (issue 12, parts 1 and 2), materialized for real.

A spec with ``label.required: false``: a version without its label column is validated, scored and monitored but
not trained on (its candidate is skipped, a manual retrain fails closed); the landing sensor runs the ingest job for
it, not training. Its labels land later in two partial files: merged (the later file wins, changes recorded), the
version is labelled, the labelled sensor requests training once (reason ``new_data``), and training uses the
stream's labels. A later version trained with a window of 3 skips the earlier version that never got labels, and
records why.
"""

import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from mlops_assets.definitions import build_defs
from mlops_assets.demo_data import synthetic
from mlops_assets.ml.labels import LABEL, ROW_ID
from mlops_assets.ml.spec import packaged_spec_path
from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets.storage.files import write_frame_atomic
from mlops_assets.tags import REASON_TAG
from mlops_assets_tests.support import model_graph
from mlops_assets_tests.worlds import ROWS, open_world

pytestmark = pytest.mark.e2e


def _events(result: dg.ExecuteInProcessResult, kind: str) -> set[str]:
    return {e.step_key for e in result.all_events if e.event_type_value == kind and e.step_key}


def _metadata(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> dict:
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def test_unlabelled_versions_are_scored_not_trained_until_their_labels_land(tmp_path: Path) -> None:
    data = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    data["name"] = "late"
    data["label"]["required"] = False
    data["training"]["window"] = 3
    # Against the prior: v4 trains on a 250-row labelled holdout, too few to confirm gradient boosting's small lift
    # over a logistic baseline (beats_baseline judges the lift's 95% interval); this test is about labels, not that.
    data["training"]["baseline"] = "dummy"
    spec_path = tmp_path / "late.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    graph = model_graph(str(spec_path))
    with open_world(tmp_path / "world", graph) as world:
        instance, resources = world.instance, world.env.resources
        defs = build_defs(world.env, [graph.model])
        labels_dir = world.data / "labels" / graph.model.name
        labels_dir.mkdir(parents=True)

        def land(name: str, seed: int, start_id: int, labelled: bool) -> tuple[str, pd.DataFrame]:
            frame = synthetic.generate(ROWS, seed=seed, start_id=start_id)
            landed = frame if labelled else frame.drop(columns=["churned"])
            path = write_frame_atomic(landed, world.landing / name, fmt="csv")
            return version_key(path.name, file_digest(path)), frame

        def tick(sensor: str, cursor: str | None = None) -> dg.SensorResult:
            with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
                return graph.sensor(sensor)(context)

        # 1. v1 lands without its label column: the landing sensor registers it and asks for the ingest job only.
        v1, truth1 = land("v1.csv", seed=1, start_id=0, labelled=False)
        landed = tick("landing_sensor")
        assert [(r.partition_key, r.job_name) for r in landed.run_requests] == [(v1, graph.name("ingest_job"))]
        assert "label.required is false" in landed.run_requests[0].tags["mlops/training"]
        instance.add_dynamic_partitions(graph.partitions_name, [v1])

        # 2. The whole lifecycle on it: gates, features, labels (none), drift and scoring run; training is skipped.
        first = world.run(v1)
        assert first.success
        assert not _events(first, "STEP_FAILURE")
        skipped = _events(first, "STEP_SKIPPED")
        assert {graph.name("model_evaluation"), graph.name("deployment_decision")} <= skipped
        assert graph.name("drift_report") not in skipped and graph.name("predictions") not in skipped
        assert not instance.get_materialized_partitions(graph.key("candidate_model"))
        assert {graph.key(a) for a in ("raw_data", "features", "labels", "predictions", "drift_report")} <= {
            e.asset_key for e in first.get_asset_materialization_events()
        }
        observed = instance.fetch_observations(graph.key("candidate_model"), limit=1).records[0]
        why = observed.asset_observation.metadata["reason"].value
        assert observed.asset_observation.metadata["trained"].value is False and "rule: labelled" in why
        assert _metadata(instance, graph.key("labels"), v1)["labelled"] is False
        failed_gates = [e.check_name for e in first.get_asset_check_evaluations() if not e.passed]
        assert not failed_gates

        # A manual retrain on the unlabelled version fails closed, naming the rule.
        manual = defs.resolve_job_def(graph.name("retrain_job")).execute_in_process(
            instance=instance, partition_key=v1, raise_on_error=False
        )
        assert not manual.success
        failure = next(e for e in manual.all_events if e.event_type_value == "STEP_FAILURE")
        assert "is not labelled" in failure.step_failure_data.user_failure_data.description
        assert "(rule: labelled)" in failure.step_failure_data.user_failure_data.description
        assert not instance.get_materialized_partitions(graph.key("candidate_model"))
        assert not tick("labelled_sensor").run_requests  # labels not landed: nothing to train

        # 3. Its labels land a month later in two partial files: the latest 1,500 rows, then the first 1,000 with 25
        # of the latest rows relabelled (they are in the holdout: the latest 20 % by event time, rising with the id).
        labels1 = truth1[["customer_id", "churned"]]
        labels1.iloc[1000:].to_csv(labels_dir / "v1.part1.csv", index=False)
        changed = labels1.iloc[-25:].assign(churned=labels1["churned"].iloc[-25:].map({"yes": "no", "no": "yes"}))
        pd.concat([labels1.iloc[:1000], changed]).to_csv(labels_dir / "v1.part2.csv", index=False)
        os.utime(labels_dir / "v1.part1.csv", ns=(1_000_000_000, 1_000_000_000))
        os.utime(labels_dir / "v1.part2.csv", ns=(2_000_000_000, 2_000_000_000))
        labels_tick = tick("labels_sensor")
        assert [r.partition_key for r in labels_tick.run_requests] == [v1, v1]
        labelled_run = world.run(v1, dg.AssetSelection.assets(*graph.keys("labels")))
        assert labelled_run.success
        meta = _metadata(instance, graph.key("labels"), v1)
        assert meta["labelled"] is True and meta["labelled_rows"] == ROWS and meta["changed_labels"] == 25
        assert meta["sources"] == "v1.part1.csv, v1.part2.csv"

        # 4. Now labelled: the labelled sensor requests training once, with reason new_data.
        requested = tick("labelled_sensor")
        assert len(requested.run_requests) == 1
        request = requested.run_requests[0]
        assert request.partition_key == v1 and request.tags[REASON_TAG] == "new_data"
        assert not tick("labelled_sensor", requested.cursor).run_requests  # the same evidence: not again
        training = defs.resolve_job_def(graph.name("retrain_job")).execute_in_process(
            instance=instance, partition_key=v1, tags=request.tags, raise_on_error=False
        )
        assert training.success
        assert not tick("labelled_sensor").run_requests  # re-read from scratch: already requested
        record = resources["io_manager"].load_value(graph.key("candidate_model"), v1)
        assert record["data_versions"] == [v1]
        # Evaluated on the stream's labels joined by id: the holdout positives are the merged labels', changes included.
        stream = resources["io_manager"].load_value(graph.key("labels"), v1).set_index(ROW_ID)[LABEL]
        features = resources["io_manager"].load_value(graph.key("features"), v1)
        holdout_ids = features.loc[features["_split"] == "holdout", "customer_id"].astype(str)
        evaluation = resources["io_manager"].load_value(graph.key("model_evaluation"), v1)
        assert evaluation["n_holdout"] == len(holdout_ids) == ROWS // 5
        assert int(evaluation["candidate"]["n_positive"]) == int(stream.loc[holdout_ids].sum())
        truth = truth1.set_index(truth1["customer_id"].astype(str))["churned"].eq("yes")
        assert int(stream.loc[holdout_ids].sum()) != int(truth.loc[holdout_ids].sum())

        # 5. v2 lands unlabelled and never gets labels; v3 lands with its labels: v3's window skips v2, recorded.
        v2, _ = land("v2.csv", seed=2, start_id=ROWS, labelled=False)
        v3, _ = land("v3.csv", seed=3, start_id=2 * ROWS, labelled=True)
        instance.add_dynamic_partitions(graph.partitions_name, [v2, v3])
        assert world.run(v2).success
        third = world.run(
            v3, dg.AssetSelection.assets(*graph.keys("raw_data", "features", "labels", "candidate_model"))
        )
        assert third.success
        record = resources["io_manager"].load_value(graph.key("candidate_model"), v3)
        assert record["data_versions"] == [v1, v3]
        manifest = record.get("manifest", record)
        skipped_versions = manifest["window_skipped"]
        assert [s["data_version"] for s in skipped_versions] == [v2]
        assert skipped_versions[0]["reason"].startswith("not labelled: labelled share 0.000 < min_labelled_share")

        # 6. v4 is trained when 90 % of it is labelled (the latest 10 %, all holdout rows, still unlabelled). When
        # those labels land too, the reproducibility check re-run alone still re-scores the rows it was trained
        # with: the candidate record names its holdout rows, so later labels never fail it.
        v4, truth4 = land("v4.csv", seed=4, start_id=3 * ROWS, labelled=False)
        instance.add_dynamic_partitions(graph.partitions_name, [v4])
        assert world.run(v4).success
        labels4 = truth4[["customer_id", "churned"]]
        late = ROWS // 10
        labels4.iloc[:-late].to_csv(labels_dir / "v4.first.csv", index=False)
        assert world.run(v4, dg.AssetSelection.assets(*graph.keys("labels"))).success
        assert _metadata(instance, graph.key("labels"), v4)["labelled_share"] == pytest.approx(0.9)
        assert (
            defs.resolve_job_def(graph.name("retrain_job"))
            .execute_in_process(instance=instance, partition_key=v4, raise_on_error=False)
            .success
        )
        trained4 = resources["io_manager"].load_value(graph.key("candidate_model"), v4)
        assert len(trained4["holdout_row_ids"]) == ROWS // 5 - late
        labels4.iloc[-late:].to_csv(labels_dir / "v4.rest.csv", index=False)
        assert world.run(v4, dg.AssetSelection.assets(*graph.keys("labels"))).success
        assert _metadata(instance, graph.key("labels"), v4)["labelled_share"] == 1.0
        check = dg.AssetCheckKey(graph.key("candidate_model"), "model_reproduces_holdout_scores")
        # (Dagster resolves a run's partitions from its assets: the cheap labels asset comes along.)
        rerun = world.run(v4, dg.AssetSelection.assets(graph.key("labels")) | dg.AssetSelection.checks(check))
        assert rerun.success
        evaluations = rerun.get_asset_check_evaluations()
        assert [(e.check_name, e.passed) for e in evaluations] == [("model_reproduces_holdout_scores", True)]
