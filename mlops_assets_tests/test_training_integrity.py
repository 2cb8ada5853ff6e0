"""Training integrity (issue 10, faults 4, 11, 16): the window never trains on a holdout id, a search never
ranks NaN, and ties in the order column are split by an id hash, never by file row order."""

import hashlib
import math
from dataclasses import replace
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_assets.demo_data import synthetic
from mlops_assets.ml import features as fcore
from mlops_assets.ml import training
from mlops_assets.ml.features import HOLDOUT, LABEL_COLUMN, SPLIT_COLUMN, TRAIN, build_features
from mlops_assets.ml.spec import load_spec, packaged_spec_path
from mlops_assets.ml.validation import coerce_to_schema

pytestmark = pytest.mark.wiring


@pytest.fixture(scope="module")
def spec():
    return load_spec("synthetic")


def synthetic_features(spec, n: int = 1000, seed: int = 1, **kwargs) -> pd.DataFrame:
    return build_features(coerce_to_schema(synthetic.generate(n, seed=seed, **kwargs), spec), spec)


def id_hash(value, seed: int) -> int:
    """The documented tie-break key, computed independently: sha256 of "<seed>:<id as text>", first 8 bytes."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{value}".encode()).digest()[:8], "big")


def ids(frame: pd.DataFrame, split: str, spec) -> set:
    return set(frame.loc[frame[SPLIT_COLUMN] == split, spec.id_column])


# --------------------------------------------------------------------------------------------------
# Fault 4: the training window must not leak the holdout
# --------------------------------------------------------------------------------------------------


def corrected_copy(spec, n: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A landed file and a corrected copy of it (one cell changed): two data versions with the same ids."""
    raw = coerce_to_schema(synthetic.generate(n, seed=1), spec)
    fixed = raw.copy()
    fixed.loc[fixed.index[5], "income"] = float(fixed.loc[fixed.index[5], "income"]) + 1000.0
    return build_features(raw, spec), build_features(fixed, spec)


def test_window_never_trains_on_a_holdout_id_of_the_current_version(spec) -> None:
    earlier, current = corrected_copy(spec)
    frame = fcore.training_frame(current, [earlier], spec)
    holdout_ids = ids(current, HOLDOUT, spec)
    assert holdout_ids
    assert not holdout_ids & ids(frame, TRAIN, spec)
    # Newest wins: every id appears once, and the current version's rows are the ones kept.
    assert frame[spec.id_column].is_unique
    assert len(frame) == len(current)
    pd.testing.assert_frame_equal(frame, current)


def test_window_keeps_the_newest_row_of_each_id_and_records_the_overlap_removed(spec) -> None:
    v1 = synthetic_features(spec, 600, seed=1, start_id=0)  # ids 0..599
    v2 = synthetic_features(spec, 600, seed=2, start_id=300)  # ids 300..899: 300 overlap v1
    current = synthetic_features(spec, 600, seed=3, start_id=800)  # ids 800..1399: 100 overlap v2
    window = fcore.training_window(current, [v1, v2], spec, versions=["v1", "v2"])
    frame = window.frame
    assert frame[spec.id_column].is_unique
    assert set(frame[spec.id_column]) == set(range(0, 1400))
    assert not ids(current, HOLDOUT, spec) & ids(frame, TRAIN, spec)
    # Ids 300..599 come from v2 (newer than v1), ids 800..899 from the current version.
    by_id = frame.set_index(spec.id_column)
    pd.testing.assert_series_equal(
        by_id.loc[300:599, "income"], v2.set_index(spec.id_column).loc[300:599, "income"], check_names=False
    )
    pd.testing.assert_series_equal(
        by_id.loc[800:899, "income"], current.set_index(spec.id_column).loc[800:899, "income"], check_names=False
    )
    overlap = window.overlap
    assert overlap["rows_dropped"] == 400
    assert overlap["versions"] == [
        {"data_version": "v1", "rows": 600, "dropped": 300, "kept": 300},
        {"data_version": "v2", "rows": 600, "dropped": 100, "kept": 500},
    ]
    assert overlap["holdout_ids_dropped"] == len(set(range(800, 900)) & ids(current, HOLDOUT, spec))
    assert "newest wins" in overlap["rule"]


# --------------------------------------------------------------------------------------------------
# Fault 11: a search without a valid fold is said so, never ranked on NaN
# --------------------------------------------------------------------------------------------------


def late_positives(spec, positive_share_from: float, n: int = 900) -> pd.DataFrame:
    """A features frame whose positives all lie in the last ``1 - positive_share_from`` of time."""
    frame = synthetic_features(spec, n, seed=4).copy()
    frame[SPLIT_COLUMN] = TRAIN
    rng = np.random.default_rng(0)
    late = np.arange(n) >= int(n * positive_share_from)
    frame[LABEL_COLUMN] = np.where(late & (rng.random(n) < 0.5), 1, 0).astype(np.int64)
    return frame


def test_search_without_a_fold_holding_both_classes_is_skipped_with_fixed_params(spec) -> None:
    frame = late_positives(spec, 0.7)
    setup = replace(spec.training, cv_folds=2, params={"max_leaf_nodes": 9})
    model, search = training.tune_and_train(frame, spec, setup)
    assert search is not None
    assert search.skipped == "search skipped: no fold with both classes in training and validation"
    assert search.best_score is None and search.best_params == {} and search.results == ()
    # The per-fold class counts say why: the training part of every fold has no positive.
    assert [f["train_positives"] for f in search.folds] == [0, 0]
    assert [f["validation_positives"] > 0 for f in search.folds] == [False, True]
    assert not any(f["used"] for f in search.folds)
    # The fixed parameters are used, not the first grid point.
    assert model.params == training.estimator_params(spec.training.estimator, {"max_leaf_nodes": 9}, 0)
    record = search.to_dict()
    assert record["skipped"] and record["best_score"] is None
    assert all(math.isfinite(v) for f in record["folds"] for v in f.values() if isinstance(v, float))


def test_search_ranks_only_folds_with_both_classes_and_never_nan(spec) -> None:
    frame = late_positives(spec, 0.4)  # fold 1 trains on the first quarter: no positive there
    setup = replace(spec.training, cv_folds=3)
    _model, search = training.tune_and_train(frame, spec, setup)
    assert search is not None and search.skipped is None
    assert [f["used"] for f in search.folds] == [False, True, True]
    assert search.folds[0]["train_positives"] == 0
    assert all(math.isfinite(r["mean_score"]) for r in search.results)
    assert math.isfinite(search.best_score)
    best = max(search.results, key=lambda r: r["mean_score"])
    assert best["params"] == search.best_params and best["mean_score"] == search.best_score


# --------------------------------------------------------------------------------------------------
# Fault 16: ties in the order column are split by an id hash, never by file row order
# --------------------------------------------------------------------------------------------------


def households(spec, n: int = 1000) -> pd.DataFrame:
    """One year per file: a constant order column, and the last fifth of the ids all of one kind."""
    raw = coerce_to_schema(synthetic.generate(n, seed=5), spec)
    raw["event_time"] = pd.Timestamp("2024-01-01", tz="UTC")
    raw["plan"] = np.where(raw["customer_id"] >= int(n * 0.8), "premium", "basic")
    return raw


def test_constant_order_column_holdout_is_drawn_by_id_hash_not_file_order(spec) -> None:
    raw = households(spec)
    out = build_features(raw, spec)
    holdout = out[out[SPLIT_COLUMN] == HOLDOUT]
    seed = spec.policy.evaluation.random_seed
    n_holdout = round(len(raw) * spec.policy.evaluation.holdout_fraction)
    expected = sorted(raw["customer_id"], key=lambda i: (id_hash(i, seed), i))[-n_holdout:]
    assert sorted(holdout["customer_id"]) == sorted(expected)
    # The biased tail (all "premium") is no longer the holdout: its share there is about its share overall.
    share = (holdout["plan"] == "premium").mean()
    assert 0.12 < share < 0.28, share
    shuffled = build_features(raw.sample(frac=1.0, random_state=3).reset_index(drop=True), spec)
    pd.testing.assert_frame_equal(out, shuffled)


def test_holdout_boundary_inside_a_tie_block_is_split_by_id_hash(spec) -> None:
    raw = coerce_to_schema(synthetic.generate(100, seed=6), spec)
    # Three distinct times: 60, 25, 15 rows in id order. A 20-row holdout takes all 15 of the last time
    # and 5 of the 25 tied at the middle time: those 5 must be chosen by the id hash.
    times = pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"], utc=True)
    raw["event_time"] = np.repeat(times, [60, 25, 15])
    out = build_features(raw, spec)
    holdout = set(out.loc[out[SPLIT_COLUMN] == HOLDOUT, "customer_id"])
    assert set(range(85, 100)) <= holdout
    assert not holdout & set(range(0, 60))
    seed = spec.policy.evaluation.random_seed
    tied = sorted(range(60, 85), key=lambda i: (id_hash(i, seed), i))
    assert holdout & set(range(60, 85)) == set(tied[-5:])
    assert holdout & set(range(60, 85)) != set(range(80, 85))  # not the highest ids of the tie block
    split = fcore.describe_split(out, spec)
    assert split["boundary_value"] == "2024-02-01T00:00:00+00:00"
    assert split["rows_tied_at_boundary"] == 25 and split["holdout_rows_from_tie"] == 5
    assert split["n_distinct_order_values"] == 3


def test_split_record_names_the_method_and_warns_on_too_few_order_values(spec) -> None:
    constant = fcore.describe_split(build_features(households(spec), spec), spec)
    assert constant["method"] == "order column, ties by id hash"
    assert constant["n_distinct_order_values"] == 1
    assert constant["holdout_rows"] == 200 and constant["holdout_rows_from_tie"] == 200
    assert constant["warning"] and "1 distinct value" in constant["warning"]
    assert f"fewer than {fcore.MIN_DISTINCT_ORDER_VALUES}" in constant["warning"]
    timed = fcore.describe_split(synthetic_features(spec), spec)
    assert timed["n_distinct_order_values"] == 1000 and timed["warning"] is None
    assert timed["holdout_rows_from_tie"] == 1
    no_order = replace(spec, order_column=None)
    hashed = fcore.describe_split(build_features(households(spec), no_order), no_order)
    assert hashed["method"] == "id hash" and hashed["warning"] is None


def test_cv_folds_within_ties_follow_the_id_hash_too(spec) -> None:
    out = build_features(households(spec), spec)
    seed = spec.policy.evaluation.random_seed
    keys = [id_hash(i, seed) for i in out["customer_id"]]
    assert keys == sorted(keys)  # the time-ordered CV folds cut ties by the same hash
    no_order = replace(spec, order_column=None)
    unordered = build_features(households(spec), no_order)
    keys = [id_hash(i, seed) for i in unordered["customer_id"]]
    assert keys == sorted(keys)  # without an order column every row is tied: never cut along the ids


# --------------------------------------------------------------------------------------------------
# The candidate's manifest records both (one materialization of a 2-version window)
# --------------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_candidate_manifest_records_the_window_overlap_and_how_the_holdout_was_drawn(tmp_path: Path) -> None:
    from mlops_assets.environments import local_environment
    from mlops_assets.ml.versions import file_digest, version_key
    from mlops_assets.storage.files import write_frame_atomic
    from mlops_assets.storage.registry import ModelRegistry
    from mlops_assets_tests.support import model_graph

    spec_path = tmp_path / "synthetic_window.yaml"
    spec_path.write_text(packaged_spec_path("synthetic").read_text() + "training:\n  window: 2\n")
    g = model_graph(str(spec_path))  # the model "synthetic", declared by the windowed spec
    env = local_environment(tmp_path / "w")
    landing = tmp_path / "w" / "landing" / g.model.name
    landing.mkdir(parents=True)
    frame = synthetic.generate(800, seed=1)
    corrected = frame.copy()
    corrected.loc[5, "income"] = corrected.loc[5, "income"] + 1000.0
    selection = g.keys("raw_data", "features", "labels", "candidate_model")
    with dg.DagsterInstance.ephemeral() as instance:
        keys = []
        for i, data in enumerate([frame, corrected], start=1):
            path = write_frame_atomic(data, landing / f"synthetic_v00{i}.csv", fmt="csv")
            key = version_key(path.name, file_digest(path))
            instance.add_dynamic_partitions(g.partitions_name, [key])
            keys.append(key)
            result = dg.materialize(
                g.assets_and_checks,
                partition_key=key,
                instance=instance,
                resources=env.resources,
                selection=selection,
                raise_on_error=False,
            )
            assert result.success
        stored = env.resources["io_manager"].load_value(g.key("candidate_model"), keys[1])
        manifest = stored["manifest"]
        assert stored["data_versions"] == keys
        assert manifest["window_overlap"]["rows_dropped"] == 800
        assert manifest["window_overlap"]["holdout_ids_dropped"] == 160
        assert manifest["window_overlap"]["versions"] == [
            {"data_version": keys[0], "rows": 800, "dropped": 800, "kept": 0}
        ]
        assert manifest["n_train"] == 640  # the current version's train rows only: nothing new in v1
        assert manifest["holdout_split"]["method"] == "order column, ties by id hash"
        assert manifest["holdout_split"]["warning"] is None
        registry = ModelRegistry(env.resources["registry"].url)
        (version,) = registry.versions_for_data_version("synthetic", keys[1])
        assert math.isfinite(version.metrics["cv_best_score"])
