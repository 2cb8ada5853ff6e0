"""Realised performance, labels files and rollout guards on the prediction log (pure core), and the labels sensor."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlops_assets.ml import performance
from mlops_assets.ml.policy import RolloutPolicy
from mlops_assets.ml.rollout import Phase, new_rollout, start
from mlops_assets.ml.spec import load_spec
from mlops_assets.resources import LandingZone
from mlops_assets.sensors import labels_target
from mlops_assets.tags import DATA_VERSION_TAG, REASON_TAG
from mlops_assets_tests.support import model_graph

pytestmark = pytest.mark.wiring

SPEC = load_spec("synthetic")
#: The synthetic model's graph: its labels sensor watches ``<labels root>/synthetic/``.
G = model_graph("synthetic")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _log(n: int, share: float, seed: int = 0, at: datetime = T0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(float)
    champion = np.clip(0.5 * y + rng.normal(0.25, 0.2, n), 0, 1)
    challenger = np.clip(0.6 * y + rng.normal(0.2, 0.2, n), 0, 1)
    ids = pd.Series(np.arange(n)).astype(str)
    served = rng.random(n) < share
    rows = []
    for version, arm, scores, mask in ((1, "champion", champion, ~served), (2, "challenger", challenger, served)):
        rows.append(
            pd.DataFrame(
                {
                    "prediction_id": [f"p{version}-{i}" for i in range(n)],
                    "data_version": "v",
                    "row_id": ids,
                    "model_version": version,
                    "arm": arm,
                    "served": mask,
                    "score": scores,
                    "feature_hash": "h",
                    "scored_at": pd.Timestamp(at),
                }
            )
        )
    labels = pd.DataFrame({"row_id": ids, "label": y})
    return pd.concat(rows, ignore_index=True), labels


def test_realised_performance_per_model_and_arm_matches_sklearn():
    log, labels = _log(2000, 0.25)
    joined = performance.join_labels(log, labels)
    rows = performance.realised_performance(joined)
    champion = next(r for r in rows if r["model_version"] == 1 and r["rows"] == "scored")
    y = labels["label"].to_numpy()
    assert champion["n"] == 2000
    assert champion["roc_auc"] == pytest.approx(roc_auc_score(y, log[log.model_version == 1]["score"]))
    served = next(r for r in rows if r["model_version"] == 2 and r["rows"] == "served")
    assert 400 < served["n"] < 600
    mix = next(r for r in rows if r["arm"] == "served mix")
    assert mix["n"] == 2000  # every row was served by exactly one arm


def test_rows_without_labels_are_left_out_not_counted_as_negatives():
    log, labels = _log(1000, 0.0)
    joined = performance.join_labels(log, labels.iloc[:300])
    champion = next(r for r in performance.realised_performance(joined) if r["model_version"] == 1)
    assert champion["n"] == 300


def test_ab_counts_are_correct_decisions_of_the_served_model():
    log, labels = _log(1000, 0.5)
    joined = performance.join_labels(log, labels)
    counts = performance.ab_counts(joined)
    served = joined[joined["served"]]
    for arm in ("champion", "challenger"):
        part = served[served["arm"] == arm]
        assert counts[arm] == (int(((part["score"] >= 0.5) == (part["label"] == 1)).sum()), len(part))


def test_rollout_guards_use_the_current_phase_and_ignore_evidence_from_before_it():
    log, labels = _log(3000, 0.05, at=T0 + timedelta(hours=1))
    joined = performance.join_labels(log, labels)
    state = start(new_rollout("m", 1, 2), T0)
    shadow = performance.rollout_guards(state, joined, RolloutPolicy(rollout_min_rows=100), decision_threshold=0.5)
    assert shadow is not None and shadow.kind == "shadow" and shadow.n_rows == 3000
    later = start(new_rollout("m", 1, 2), T0 + timedelta(hours=2))  # the phase began after these were scored
    assert (
        performance.rollout_guards(later, joined, RolloutPolicy(rollout_min_rows=100), decision_threshold=0.5) is None
    )
    other = start(new_rollout("m", 1, 7), T0)  # another challenger: not this rollout's evidence
    assert performance.rollout_guards(other, joined, RolloutPolicy(), decision_threshold=0.5) is None
    canary = start(new_rollout("m", 1, 2), T0, shadow=False)
    guards = performance.rollout_guards(canary, joined, RolloutPolicy(rollout_min_rows=100), decision_threshold=0.5)
    assert guards is not None and guards.kind == "canary" and 100 < guards.n_rows < 200  # the challenger's rows
    assert canary.phase is Phase.CANARY


def test_labels_file_errors_name_file_column_and_rule(tmp_path):
    ids = pd.Series(range(10))
    path = tmp_path / "v1.csv"
    pd.DataFrame({"customer_id": ids}).to_csv(path, index=False)
    with pytest.raises(performance.LabelsError, match=r"v1.csv.*'churned' missing.*labels_columns_present"):
        performance.labels_from_file(path, SPEC, ids)
    pd.DataFrame({"customer_id": [1, 1], "churned": ["yes", "no"]}).to_csv(path, index=False)
    with pytest.raises(performance.LabelsError, match=r"v1.csv.*'customer_id'.*duplicate.*ids_unique"):
        performance.labels_from_file(path, SPEC, ids)
    pd.DataFrame({"customer_id": [1, 99], "churned": ["yes", "no"]}).to_csv(path, index=False)
    with pytest.raises(performance.LabelsError, match=r"not rows of this data version.*'99'.*ids_known"):
        performance.labels_from_file(path, SPEC, ids)
    pd.DataFrame({"customer_id": [1, 2], "churned": ["yes", "no"]}).to_csv(path, index=False)
    frame = performance.labels_from_file(path, SPEC, ids)
    assert frame.to_dict("list") == {"row_id": ["1", "2"], "label": [1.0, 0.0]}


def test_labels_target_matches_the_file_stem_or_the_version_key():
    keys = ["jan__aaaaaaaaaaaa", "feb__bbbbbbbbbbbb", "jan__cccccccccccc"]
    assert labels_target(keys, "jan.csv") == "jan__cccccccccccc"  # the newest version of that file
    assert labels_target(keys, "jan__aaaaaaaaaaaa.parquet") == "jan__aaaaaaaaaaaa"
    assert labels_target(keys, "mar.csv") is None


def test_labels_sensor_requests_one_labels_run_and_waits_for_unknown_versions(tmp_path):
    labels_root = tmp_path / "labels"
    labels_dir = labels_root / "synthetic"
    labels_dir.mkdir(parents=True)
    (labels_dir / "jan.csv").write_text("customer_id,churned\n1,yes\n")
    (labels_dir / "mar.csv").write_text("customer_id,churned\n1,yes\n")
    # Taken from the graph's own list: G.sensor() resolves the whole repository, which needs every job's resources.
    labels_sensor = next(s for s in G.defs.sensors or [] if s.name == G.name("labels_sensor"))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(G.partitions_name, ["jan__aaaaaaaaaaaa"])
        resources = {"labels_landing": LandingZone(directory=str(labels_root))}
        first = labels_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert [r.partition_key for r in first.run_requests] == ["jan__aaaaaaaaaaaa"]
        assert first.run_requests[0].tags[REASON_TAG] == "new_labels"
        assert first.run_requests[0].tags[DATA_VERSION_TAG] == "jan__aaaaaaaaaaaa"
        again = labels_sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources))
        assert again.run_requests == []  # mar waits for its data version; jan is done
        instance.add_dynamic_partitions(G.partitions_name, ["mar__dddddddddddd"])
        third = labels_sensor(dg.build_sensor_context(instance=instance, cursor=again.cursor, resources=resources))
        assert [r.partition_key for r in third.run_requests] == ["mar__dddddddddddd"]
