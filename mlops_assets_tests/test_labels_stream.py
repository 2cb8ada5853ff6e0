"""The labels stream (issue 12, parts 1 and 2): unlabelled data versions, partial labels files merged, labels joined
by id for training, and "labelled" as the policy's share — the pure core and the labels asset's wiring."""

import dataclasses
import os
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_assets.demo_data import synthetic
from mlops_assets.ml import labels, landing
from mlops_assets.ml.features import LABEL_COLUMN, build_features
from mlops_assets.ml.labels import LABEL, ROW_ID, LabelsError
from mlops_assets.ml.spec import load_spec
from mlops_assets.ml.validation import validate_raw
from mlops_assets_tests.support import model_graph

pytestmark = pytest.mark.core

KEYS = ["jan__aaaaaaaaaaaa", "a__bbbbbbbbbbbb", "a.b__cccccccccccc", "jan__dddddddddddd", "by-hand"]


@pytest.fixture(scope="module")
def spec():
    return load_spec("synthetic")


@pytest.fixture(scope="module")
def optional(spec):
    """The synthetic spec whose versions may come without labels."""
    return dataclasses.replace(spec, label=dataclasses.replace(spec.label, required=False))


# --- naming ----------------------------------------------------------------------------------------------------------


def test_a_part_file_labels_the_version_of_its_base_and_the_longest_base_wins():
    assert labels.labels_target(KEYS, "jan.csv") == "jan__dddddddddddd"  # the stem: its newest version
    assert labels.labels_target(KEYS, "jan.week1.csv") == "jan__dddddddddddd"
    assert labels.labels_target(KEYS, "jan__aaaaaaaaaaaa.late.parquet") == "jan__aaaaaaaaaaaa"
    assert labels.labels_target(KEYS, "a.b.csv") == "a.b__cccccccccccc"  # exact name beats a part of "a"
    assert labels.labels_target(KEYS, "a.c.csv") == "a__bbbbbbbbbbbb"
    assert labels.labels_target(KEYS, "a.b.extra.csv") == "a.b__cccccccccccc"
    assert labels.labels_target(KEYS, "by-hand.2.csv") == "by-hand"
    assert labels.labels_target(KEYS, "janx.csv") is None  # a prefix without the dot is another name
    assert labels.labels_target(KEYS, "mar.csv") is None
    # The landing module keeps its entry point (the sensors use it).
    assert landing.labels_target(KEYS, "jan.week1.csv") == "jan__dddddddddddd"


@dataclasses.dataclass(frozen=True)
class Listed:
    name: str
    mtime_ns: int
    size: int = 1


def test_the_files_of_a_version_come_in_landing_order_mtime_then_name():
    listed = [Listed("jan.b.csv", 5), Listed("jan.csv", 9), Listed("jan.a.csv", 5), Listed("a.csv", 1)]
    assert labels.labels_files(listed, KEYS, "jan__dddddddddddd") == ["jan.a.csv", "jan.b.csv", "jan.csv"]


def test_every_new_part_file_of_a_landed_version_requests_a_labels_run():
    digests = {"jan.week1.csv": "1" * 64, "jan.week2.csv": "2" * 64}
    plan = landing.plan_labels(
        [Listed("jan.week1.csv", 1), Listed("jan.week2.csv", 2)], None, KEYS, digests.__getitem__, "r"
    )
    assert [(r.file_name, r.target) for r in plan.runs] == [
        ("jan.week1.csv", "jan__dddddddddddd"),
        ("jan.week2.csv", "jan__dddddddddddd"),
    ]
    assert len({r.run_key for r in plan.runs}) == 2


# --- merging ---------------------------------------------------------------------------------------------------------


def _labels(ids, values):
    return pd.DataFrame({ROW_ID: [str(i) for i in ids], LABEL: np.asarray(values, dtype=float)})


def test_partial_files_merge_later_wins_and_every_change_is_recorded():
    ids = pd.Series(range(10))
    own = pd.Series([1, 0, pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, pd.NA], dtype="Int64")
    first = _labels([1, 2, 3, 4], [1, 1, 1, 0])  # changes id 1 (data file said 0)
    second = _labels([3, 4, 5, 6, 99], [1, 1, 0, 0, 1])  # repeats 3 (same), changes 4; 99 is unknown
    frame, record = labels.merge_labels(ids, own, [("p1.csv", first), ("p2.csv", second)], min_labelled_share=0.7)
    assert frame[ROW_ID].tolist() == [str(i) for i in range(10)]
    assert frame[LABEL].tolist()[:7] == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert np.isnan(frame[LABEL].to_numpy()[7:]).all()
    assert record.sources == (labels.DATA_FILE_SOURCE, "p1.csv", "p2.csv")
    assert (record.rows, record.labelled_rows, record.labelled_share, record.labelled) == (10, 7, 0.7, True)
    assert record.changed_labels == 2 and set(record.changed_examples) == {"1", "4"}
    assert record.unknown_ids == 1 and record.unknown_examples == ("99",)
    p1, p2 = record.files
    assert (p1["applied"], p1["relabelled"], p1["changed"], p1["changed_sources"]) == (
        4,
        1,
        1,
        [labels.DATA_FILE_SOURCE],
    )
    assert (p2["rows"], p2["applied"], p2["unknown_ids"], p2["relabelled"], p2["changed"]) == (5, 4, 1, 2, 1)
    assert p2["changed_sources"] == ["p1.csv"]
    assert "2 label(s) changed" in record.reading() and "1 label(s) for unknown ids ignored" in record.reading()


def test_labelled_is_the_share_against_the_policy_threshold():
    ids = pd.Series(range(10))
    _, below = labels.merge_labels(ids, None, [("a.csv", _labels(range(7), [0] * 7))], min_labelled_share=0.8)
    _, at = labels.merge_labels(ids, None, [("a.csv", _labels(range(8), [0] * 8))], min_labelled_share=0.8)
    _, none = labels.merge_labels(ids, None, [], min_labelled_share=0.001)
    assert (below.labelled, below.labelled_share) == (False, 0.7)
    assert (at.labelled, at.labelled_share) == (True, 0.8)
    assert (none.labelled, none.labelled_rows, none.sources) == (False, 0, ())
    assert labels.is_labelled(_labels(range(4), [0, 1, np.nan, np.nan]), 0.5)
    assert not labels.is_labelled(_labels([], []), 0.001)


def test_says_labelled_reads_the_flag_and_falls_back_to_coverage_only_without_it():
    assert labels.says_labelled({"labelled": True, "coverage": 0.0}, 0.8)
    assert not labels.says_labelled({"labelled": False, "coverage": 1.0}, 0.8)
    assert labels.says_labelled({"coverage": 1.0}, 0.8)  # a labels materialization from before the stream
    assert not labels.says_labelled({"coverage": 0.5}, 0.8)
    assert not labels.says_labelled({}, 0.8)


# --- labels files ----------------------------------------------------------------------------------------------------


def test_a_labels_file_is_read_from_csv_or_parquet_and_bad_ones_name_file_column_and_rule(tmp_path: Path, spec):
    good = pd.DataFrame({"customer_id": [3, 1, 2], "churned": ["yes", "no", "yes"]})
    good.to_parquet(tmp_path / "v.parquet")
    frame = labels.read_labels_file(tmp_path / "v.parquet", spec)
    assert frame[ROW_ID].tolist() == ["3", "1", "2"] and frame[LABEL].tolist() == [1.0, 0.0, 1.0]

    pd.DataFrame({"customer_id": [1, 2], "churned": ["yes", None]}).to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(LabelsError, match=r"empty.csv: label column 'churned' has 1 missing.*rule: label_in_domain"):
        labels.read_labels_file(tmp_path / "empty.csv", spec)
    pd.DataFrame({"customer_id": [1, 2]}).to_csv(tmp_path / "nolabel.csv", index=False)
    with pytest.raises(LabelsError, match=r"nolabel.csv: column 'churned' missing.*labels_columns_present"):
        labels.read_labels_file(tmp_path / "nolabel.csv", spec)
    pd.DataFrame({"customer_id": [1, 1], "churned": ["no", "yes"]}).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(LabelsError, match=r"dup.csv: column 'customer_id' has 1 duplicate.*ids_unique"):
        labels.read_labels_file(tmp_path / "dup.csv", spec)
    pd.DataFrame({"customer_id": [1, 2], "churned": ["no", "maybe"]}).to_csv(tmp_path / "dom.csv", index=False)
    with pytest.raises(LabelsError, match=r"dom.csv: label column 'churned'.*'maybe'.*label_in_domain"):
        labels.read_labels_file(tmp_path / "dom.csv", spec)


# --- unlabelled data versions ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frame():
    return synthetic.generate(300, seed=3)


def test_with_label_required_false_a_version_without_its_label_column_passes_its_gates(frame, optional):
    validation = validate_raw(frame.drop(columns=["churned"]), optional, "v.csv")
    assert validation.passed, [g.message for g in validation.gates if not g.passed]
    gate = validation.gate("label_in_domain")
    assert gate.evidence["label_column_present"] is False and gate.evidence["n_labelled"] == 0
    assert "unlabelled" in gate.message


def test_with_label_required_false_empty_cells_pass_and_the_evidence_counts_the_labelled_rows(frame, optional):
    partial = frame.assign(churned=frame["churned"].where(frame.index < 100))
    validation = validate_raw(partial, optional, "v.csv")
    assert validation.passed, [g.message for g in validation.gates if not g.passed]
    gate = validation.gate("label_in_domain")
    assert (gate.evidence["n_labelled"], gate.evidence["n_null"]) == (100, 200)
    assert gate.evidence["labelled_share"] == pytest.approx(1 / 3)
    # A label that is present must still be in the domain.
    wrong = partial.assign(churned=partial["churned"].where(partial.index != 0, "maybe"))
    bad = validate_raw(wrong, optional, "v.csv").gate("label_in_domain")
    assert not bad.passed and "'maybe'" in bad.message and "rule: label_in_domain" in bad.message


def test_with_label_required_true_a_missing_label_column_or_cell_still_fails_naming_file_column_and_rule(frame, spec):
    missing = validate_raw(frame.drop(columns=["churned"]), spec, "v.csv")
    assert not missing.gate("label_in_domain").passed and not missing.gate("schema_valid").passed
    assert missing.gate("label_in_domain").message == "v.csv: label column 'churned' is missing (rule: label_in_domain)"
    assert "churned" in missing.gate("schema_valid").message
    empty = validate_raw(frame.assign(churned=frame["churned"].where(frame.index != 5)), spec, "v.csv")
    assert "1 missing value(s) (rule: label_in_domain)" in empty.gate("label_in_domain").message
    with pytest.raises(ValueError, match="missing values; a label is required"):
        build_features(frame.assign(churned=frame["churned"].where(frame.index != 5)), spec)


def test_features_of_an_unlabelled_version_carry_a_nullable_label_that_never_reads_as_a_class(frame, optional, spec):
    none = build_features(validate_raw(frame.drop(columns=["churned"]), optional, "v").typed, optional)
    assert str(none[LABEL_COLUMN].dtype) == "Int64" and none[LABEL_COLUMN].isna().all()
    partial = frame.assign(churned=frame["churned"].where(frame.index < 100))
    some = build_features(validate_raw(partial, optional, "v").typed, optional)
    assert str(some[LABEL_COLUMN].dtype) == "Int64" and int(some[LABEL_COLUMN].notna().sum()) == 100
    with pytest.raises((ValueError, TypeError)):
        some[LABEL_COLUMN].to_numpy(dtype=np.int64)  # a missing label never silently becomes a class
    full = build_features(frame, optional)
    assert full[LABEL_COLUMN].dtype == np.int64
    assert full.equals(build_features(frame, spec))  # fully labelled: exactly as with label.required true


def test_training_reads_labels_from_the_stream_by_id_and_drops_unlabelled_rows(frame, optional):
    features = build_features(frame.drop(columns=["churned"]), optional)
    features.attrs["source"] = "v.csv"
    ids = features["customer_id"].astype(str)
    # The stream's labels (not the features' own, which are all missing); half of the rows labelled.
    stream = pd.DataFrame({ROW_ID: ids, LABEL: np.where(np.arange(len(ids)) % 2 == 0, 1.0, np.nan)})
    stream.loc[stream.index[1::4], LABEL] = np.nan
    stream.loc[stream.index[2::4], LABEL] = 0.0
    out = labels.labelled_features(features, stream.sample(frac=1.0, random_state=0), optional)
    assert out[LABEL_COLUMN].dtype == np.int64 and out.attrs["source"] == "v.csv"
    expected = stream.set_index(ROW_ID)[LABEL].dropna()
    assert len(out) == len(expected)
    assert dict(zip(out["customer_id"].astype(str), out[LABEL_COLUMN], strict=True)) == expected.astype(int).to_dict()
    assert out["customer_id"].tolist() == features.loc[stream[LABEL].notna().to_numpy(), "customer_id"].tolist()
    with pytest.raises(ValueError, match="other than 0/1"):
        labels.labelled_features(features, stream.assign(**{LABEL: 2.0}), optional)


def test_a_version_without_labels_does_not_train_at_landing_when_labels_are_optional():
    trains, why = landing.trains_on_new_data(None, None, labels_required=False)
    assert not trains and "waits" in why
    assert landing.trains_on_new_data(None, None) == (True, "bootstrap: no model in production yet")
    assert landing.trains_when_labelled(None, None)[0]
    assert not landing.trains_when_labelled(3, None)[0]


# --- the labels asset ------------------------------------------------------------------------------------------------


@pytest.mark.wiring
def test_the_labels_asset_merges_partial_files_and_a_bad_file_fails_naming_it(tmp_path: Path, frame):
    import yaml

    from mlops_assets.environments import local_environment
    from mlops_assets.ml.spec import packaged_spec_path
    from mlops_assets.ml.versions import file_digest, version_key
    from mlops_assets.storage.files import write_frame_atomic

    data = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    data["name"], data["label"]["required"] = "stream", False
    spec_path = tmp_path / "stream.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    graph = model_graph(str(spec_path))
    env = local_environment(tmp_path / "data")
    landing_dir = tmp_path / "data" / "landing" / "stream"
    labels_dir = tmp_path / "data" / "labels" / "stream"
    labels_dir.mkdir(parents=True)
    landing_dir.mkdir(parents=True)
    path = write_frame_atomic(frame.drop(columns=["churned"]), landing_dir / "v1.csv", fmt="csv")
    key = version_key(path.name, file_digest(path))
    truth = frame[["customer_id", "churned"]]
    truth.iloc[:200].to_csv(labels_dir / "v1.early.csv", index=False)
    late = truth.iloc[150:].copy()
    late.loc[late.index[:5], "churned"] = late["churned"].iloc[:5].map({"yes": "no", "no": "yes"})
    late.to_csv(labels_dir / "v1.late.csv", index=False)
    os.utime(labels_dir / "v1.early.csv", ns=(1_000_000_000, 1_000_000_000))
    os.utime(labels_dir / "v1.late.csv", ns=(2_000_000_000, 2_000_000_000))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(graph.partitions_name, [key])
        selection = graph.keys("raw_data", "features", "labels")
        result = dg.materialize(
            graph.assets_and_checks, partition_key=key, instance=instance, resources=env.resources, selection=selection
        )
        event = result.asset_materializations_for_node(graph.name("labels"))[0]
        meta = {k: v.value for k, v in event.metadata.items()}
        assert meta["labelled"] is True and meta["labelled_rows"] == 300 and meta["rows"] == 300
        assert meta["sources"] == "v1.early.csv, v1.late.csv" and meta["changed_labels"] == 5
        stored = env.resources["io_manager"].load_value(graph.key("labels"), key)
        merged = stored.set_index(ROW_ID)[LABEL]
        expected = (late.set_index("customer_id")["churned"] == "yes").astype(float)
        assert merged.loc[expected.index.astype(str)].tolist() == expected.tolist()  # the later file won

        pd.DataFrame({"customer_id": [1], "churned": ["perhaps"]}).to_csv(labels_dir / "v1.bad.csv", index=False)
        failed = dg.materialize(
            graph.assets_and_checks,
            partition_key=key,
            instance=instance,
            resources=env.resources,
            selection=graph.keys("labels"),
            raise_on_error=False,
        )
        assert not failed.success
        failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
        message = failure.step_failure_data.user_failure_data.description
        assert "v1.bad.csv" in message and "'churned'" in message and "rule: label_in_domain" in message
        # Nothing stored: the stored labels are still the merged ones.
        assert env.resources["io_manager"].load_value(graph.key("labels"), key).equals(stored)
