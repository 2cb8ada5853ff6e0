"""The candidate core (mlops_assets.ml.candidate): what is trained, when a version is reused, what is recorded.

Each rule of the ``candidate_model`` asset is tested here without Dagster: the warnings and their moment, the
training fingerprint, the reuse of a registered version, the registry params/metrics, and the exact record,
manifest and metadata (keys, order, rounding, the search branches).
"""

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_assets.demo_data import synthetic
from mlops_assets.ml import candidate as core
from mlops_assets.ml import training
from mlops_assets.ml.features import HOLDOUT, SPLIT_COLUMN, TRAIN, TrainingWindow, build_features
from mlops_assets.ml.provenance import fingerprint
from mlops_assets.ml.spec import DatasetSpec, load_spec
from mlops_assets.ml.validation import coerce_to_schema

pytestmark = pytest.mark.core

SEARCH_SKIPPED = training.SEARCH_SKIPPED_NO_VALID_FOLD


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    return load_spec("synthetic")


@pytest.fixture(scope="module")
def fast_spec(spec: DatasetSpec) -> DatasetSpec:
    """Logistic regression without a search, a dummy baseline: real training in a few milliseconds."""
    return replace(spec, training=replace(spec.training, estimator="logistic_regression", search={}, baseline="dummy"))


def raw_frame(spec: DatasetSpec, n: int = 400, seed: int = 1, start_id: int = 0) -> pd.DataFrame:
    frame = coerce_to_schema(synthetic.generate(n, seed=seed, start_id=start_id), spec)
    assert frame is not None
    return frame


def features_of(spec: DatasetSpec, raw: pd.DataFrame) -> pd.DataFrame:
    return build_features(raw, spec)


# --------------------------------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------------------------------


def test_holdout_rows_are_the_holdout_split_only() -> None:
    frame = pd.DataFrame({SPLIT_COLUMN: [TRAIN, HOLDOUT, TRAIN, HOLDOUT], "x": [1, 2, 3, 4]})
    assert core.holdout_rows(frame)["x"].tolist() == [2, 4]


def test_scores_digest_is_bit_exact_and_float64() -> None:
    scores = np.array([0.1, 0.2, 0.3])
    assert core.scores_digest(scores) == core.scores_digest(scores.copy())
    assert core.scores_digest(scores) == core.scores_digest([0.1, 0.2, 0.3])  # type: ignore[arg-type]
    nudged = scores.copy()
    nudged[1] = np.nextafter(nudged[1], 1.0)
    assert core.scores_digest(nudged) != core.scores_digest(scores)
    assert len(core.scores_digest(np.empty(0))) == 64


def search(**overrides: Any) -> training.SearchResult:
    base: dict[str, Any] = {
        "space": {"max_leaf_nodes": [7, 15]},
        "cv_folds": 2,
        "scoring": "roc_auc",
        "results": (
            {"params": {"max_leaf_nodes": 15}, "mean_score": 0.7, "std_score": 0.02, "rank": 2},
            {"params": {"max_leaf_nodes": 7}, "mean_score": 0.8, "std_score": 0.01, "rank": 1},
        ),
        "best_params": {"max_leaf_nodes": 7},
        "best_score": 0.812345678,
        "folds": (
            {"fold": 1, "train_positives": 3, "train_negatives": 7, "validation_positives": 1,
             "validation_negatives": 4, "used": True},
            {"fold": 2, "train_positives": 0, "train_negatives": 15, "validation_positives": 2,
             "validation_negatives": 3, "used": False},
        ),
        "skipped": None,
    }  # fmt: skip
    return training.SearchResult(**{**base, **overrides})


def test_search_table_ranks_every_combination_and_lists_the_folds() -> None:
    table = core.search_table(search())
    assert table.startswith("2-fold time-ordered CV\n\n| rank | max_leaf_nodes | mean roc_auc | std |\n")
    assert table.index("| 1 | 7 | 0.8000 | 0.0100 |") < table.index("| 2 | 15 | 0.7000 | 0.0200 |")
    assert "| 1 | 3 / 7 | 1 / 4 | yes |\n" in table and "| 2 | 0 / 15 | 2 / 3 | no |\n" in table


def test_search_table_of_a_skipped_search_shows_why_and_the_folds_only() -> None:
    table = core.search_table(search(results=(), best_params={}, best_score=None, skipped=SEARCH_SKIPPED))
    assert table.startswith(f"2-fold time-ordered CV: {SEARCH_SKIPPED}\n\n| fold |")
    assert "| rank |" not in table


def test_search_table_without_fold_records_has_no_fold_table() -> None:
    assert "| fold |" not in core.search_table(search(folds=()))
    assert core.search_table(search(folds=(), skipped=SEARCH_SKIPPED, results=())) == (
        f"2-fold time-ordered CV: {SEARCH_SKIPPED}\n\n"
    )


def test_skipped_search_warning_names_each_folds_class_counts() -> None:
    assert core.skipped_search_warning(search(skipped=SEARCH_SKIPPED)) == (
        f"{SEARCH_SKIPPED} (fold 1: train 3+/7-, validation 1+/4-; fold 2: train 0+/15-, validation 2+/3-); "
        "trained with the fixed parameters"
    )


# --------------------------------------------------------------------------------------------------
# Training fingerprint
# --------------------------------------------------------------------------------------------------


def trained_model(estimator: str = "hist_gradient_boosting", **params: Any) -> training.TrainedModel:
    return training.TrainedModel(
        pipeline=None,  # type: ignore[arg-type]
        estimator=estimator,
        params=params or {"max_leaf_nodes": 7, "random_state": 0},
        n_train=120,
        feature_columns=("age", "region"),
        train_seconds=1.23456789,
    )


def made(result: training.SearchResult | None = None, **overrides: Any) -> core.CandidateTraining:
    base: dict[str, Any] = {
        "data_versions": ["v1", "v3"],
        "window": TrainingWindow(frame=pd.DataFrame(), overlap={"rule": "newest wins", "rows_dropped": 2}),
        "holdout_split": {"method": "id hash", "warning": None},
        "candidate": trained_model(),
        "search": result,
        "baseline": trained_model("logistic_regression", C=1.0),
        "holdout_scores_sha256": "d" * 64,
        "profile": SimpleNamespace(profile_id="profile-1"),
        "reference": SimpleNamespace(profile_id="reference-1"),
        "signature": {"age": "float64", "region": "object"},
    }
    return core.CandidateTraining(**{**base, **overrides})


PROVENANCE = core.Provenance(git_sha="abc123", git_dirty=False, package_version="1.2.3")


def test_training_fingerprint_is_the_documented_payload(spec: DatasetSpec) -> None:
    expected = fingerprint(
        {
            "data_versions": ["v1", "v3"],
            "spec": spec.fingerprint(),
            "code_version": "1.2.3",  # the stored key: fingerprints of earlier versions stay comparable
            "git_sha": "abc123",
            "source_sha256": "unknown",
            "estimator": "hist_gradient_boosting",
            "params": {"max_leaf_nodes": 7, "random_state": 0},
            "holdout_scores_sha256": "d" * 64,
        }
    )
    assert made().training_fingerprint(spec, PROVENANCE) == expected


@pytest.mark.parametrize(
    "change",
    [
        {"data_versions": ["v3"]},
        {"holdout_scores_sha256": "e" * 64},
        {"candidate": trained_model(max_leaf_nodes=15, random_state=0)},
        {"candidate": trained_model("dummy", max_leaf_nodes=7, random_state=0)},
    ],
)
def test_training_fingerprint_changes_with_what_went_in_and_came_out(spec: DatasetSpec, change: dict) -> None:
    assert made(**change).training_fingerprint(spec, PROVENANCE) != made().training_fingerprint(spec, PROVENANCE)


def test_training_fingerprint_changes_with_code_and_spec_but_not_the_dirty_flag(spec: DatasetSpec) -> None:
    fp = made().training_fingerprint(spec, PROVENANCE)
    assert made().training_fingerprint(spec, replace(PROVENANCE, git_sha="def456")) != fp
    # Uncommitted edits change the source digest: a dirty tree is the same code only when its files are.
    assert made().training_fingerprint(spec, replace(PROVENANCE, source_sha256="edited")) != fp
    assert made().training_fingerprint(spec, replace(PROVENANCE, package_version="1.2.4")) != fp
    other_spec = replace(spec, training=replace(spec.training, cv_folds=spec.training.cv_folds + 1))
    assert made().training_fingerprint(other_spec, PROVENANCE) != fp
    assert made().training_fingerprint(spec, replace(PROVENANCE, git_dirty=True)) == fp


def test_registry_params_metrics_and_description() -> None:
    trained = made(search())
    params = trained.registry_params("fp", {"uri": "file:///ref.json", "sha256": "r"})
    assert params == {
        "estimator": "hist_gradient_boosting",
        "max_leaf_nodes": 7,
        "random_state": 0,
        "training_fingerprint": "fp",
        "drift_reference": {"uri": "file:///ref.json", "sha256": "r"},
    }
    assert list(params)[-2:] == ["training_fingerprint", "drift_reference"]
    assert trained.registry_metrics() == {"cv_best_score": 0.812345678}
    assert trained.registry_description() == "candidate trained on data versions v1, v3"


def test_the_calibration_maps_reference_is_registered_last_when_one_was_stored() -> None:
    ref = {"uri": "file:///cal.json", "sha256": "c"}
    params = made(search()).registry_params("fp", {"uri": "file:///ref.json", "sha256": "r"}, ref)
    assert list(params)[-3:] == ["training_fingerprint", "drift_reference", "calibration_map"]
    assert params["calibration_map"] == ref


def test_no_cv_score_is_registered_without_a_search_or_when_it_was_skipped() -> None:
    assert made(None).registry_metrics() == {}
    skipped = search(results=(), best_params={}, best_score=None, skipped=SEARCH_SKIPPED)
    assert made(skipped).registry_metrics() == {}


ARTIFACT = {"uri": "file:///a.skops", "sha256": "a" * 64, "size": 2048, "hmac": None}
BASELINE = {"uri": "file:///b.skops", "sha256": "b" * 64, "size": 1024, "hmac": None}
RUNTIME = {"packages": {"numpy": "2"}, "python": "3.11", "platform": "linux", "cpu": "x"}


def report(spec: DatasetSpec, trained: core.CandidateTraining) -> core.CandidateReport:
    return core.candidate_report(
        trained,
        spec,
        core.Registered(version=4, artifact=ARTIFACT, baseline_artifact=BASELINE, training_fingerprint="fp"),
        PROVENANCE,
        runtime=RUNTIME,
        wall_seconds=12.345678,
        peak_memory_mb=321.98,
        content_hashes={"v1": "1" * 64, "v3": "3" * 64},
        window_skipped=[{"data_version": "v2", "reason": "label_in_domain failed"}],
    )


def test_the_manifest_records_how_the_model_was_made(spec: DatasetSpec) -> None:
    trained = made(search())
    manifest = report(spec, trained).manifest
    assert list(manifest) == [
        "git_sha", "git_dirty", "package_version", *RUNTIME, "seed", "wall_seconds", "peak_memory_mb",
        "data_versions", "window_skipped", "window_overlap", "holdout_split", "n_train", "feature_profile_id",
        "drift_reference_id", "spec", "spec_fingerprint", "artifact", "signature", "estimator", "params", "search",
        "training_fingerprint", "calibration",
    ]  # fmt: skip
    assert manifest["git_sha"] == "abc123" and manifest["git_dirty"] is False
    assert manifest["package_version"] == "1.2.3" and manifest["packages"] == {"numpy": "2"}
    assert manifest["seed"] == spec.policy.evaluation.random_seed
    assert manifest["wall_seconds"] == 12.346 and manifest["peak_memory_mb"] == 322.0
    assert manifest["data_versions"] == {"v1": "1" * 64, "v3": "3" * 64}
    assert manifest["window_skipped"] == [{"data_version": "v2", "reason": "label_in_domain failed"}]
    assert manifest["window_overlap"] == {"rule": "newest wins", "rows_dropped": 2}
    assert manifest["holdout_split"] == {"method": "id hash", "warning": None}
    assert (manifest["n_train"], manifest["feature_profile_id"], manifest["drift_reference_id"]) == (
        120,
        "profile-1",
        "reference-1",
    )
    assert manifest["spec"] == spec.name and manifest["spec_fingerprint"] == spec.fingerprint()
    assert manifest["artifact"] == ARTIFACT and manifest["signature"] == {"age": "float64", "region": "object"}
    assert manifest["search"] == search().to_dict() and manifest["training_fingerprint"] == "fp"


def test_the_record_is_what_evaluation_and_deployment_read(spec: DatasetSpec) -> None:
    out = report(spec, made(search()))
    assert out.record == {
        "model_name": spec.name,
        "version": 4,
        "artifact": ARTIFACT,
        "baseline_artifact": BASELINE,
        "estimator": "hist_gradient_boosting",
        "params": {"max_leaf_nodes": 7, "random_state": 0},
        "n_train": 120,
        "train_seconds": 1.23456789,
        "feature_columns": ["age", "region"],
        "data_versions": ["v1", "v3"],
        "holdout_scores_sha256": "d" * 64,
        "manifest": out.manifest,
    }
    assert next(iter(out.record)) == "model_name" and list(out.record)[-1] == "manifest"


def test_metadata_of_a_scored_search(spec: DatasetSpec) -> None:
    out = report(spec, made(search()))
    assert list(out.metadata) == [
        "model", "model_version", "estimator", "artifact_sha256", "artifact_bytes", "n_train", "train_seconds",
        "wall_seconds", "peak_memory_mb", "trained_on", "calibration", "git_sha", "git_dirty", "params", "manifest",
        "cv_best_score", "cv_results",
    ]  # fmt: skip
    md = out.metadata
    assert md["model"] == f"{spec.name} v4" and md["model_version"] == 4
    assert (md["artifact_sha256"], md["artifact_bytes"]) == ("a" * 64, 2048)
    assert md["train_seconds"] == 1.235 and md["wall_seconds"] == 12.346 and md["peak_memory_mb"] == 322.0
    assert md["trained_on"] == "v1, v3" and md["git_sha"] == "abc123" and md["git_dirty"] is False
    assert md["params"] == {"max_leaf_nodes": 7, "random_state": 0} and md["manifest"] is out.manifest
    assert md["cv_best_score"] == 0.81235 and md["cv_results"] == core.search_table(search())
    assert set(core.JSON_METADATA) == {"params", "manifest"} and core.MARKDOWN_METADATA == ("cv_results",)


def test_metadata_of_a_skipped_search_says_why_and_has_no_score(spec: DatasetSpec) -> None:
    skipped = search(results=(), best_params={}, best_score=None, skipped=SEARCH_SKIPPED)
    md = report(spec, made(skipped)).metadata
    assert "cv_best_score" not in md
    assert md["search_skipped"] == SEARCH_SKIPPED and md["cv_results"] == core.search_table(skipped)
    assert list(md)[-2:] == ["search_skipped", "cv_results"]


def test_metadata_without_a_search_has_no_cv_entries(spec: DatasetSpec) -> None:
    out = report(spec, made(None))
    assert list(out.metadata)[-1] == "manifest"
    assert not {"cv_best_score", "search_skipped", "cv_results"} & set(out.metadata)
    assert out.manifest["search"] is None


# --------------------------------------------------------------------------------------------------
# Training (real, small)
# --------------------------------------------------------------------------------------------------


def test_train_candidate_model_trains_the_window_and_records_its_holdout_scores(fast_spec: DatasetSpec) -> None:
    earlier = features_of(fast_spec, raw_frame(fast_spec, seed=1, start_id=0))
    current = features_of(fast_spec, raw_frame(fast_spec, seed=2, start_id=200))  # ids 200..399 overlap
    warnings: list[str] = []
    trained = core.train_candidate_model(
        current, [earlier], fast_spec, earlier_versions=["v1"], data_version="v2", warn=warnings.append
    )
    assert warnings == []
    assert trained.data_versions == ["v1", "v2"]
    assert trained.window.overlap["rows_dropped"] == 200  # newest wins
    assert trained.candidate.estimator == "logistic_regression" and trained.baseline.estimator == "dummy"
    assert trained.search is None
    assert (
        trained.candidate.n_train
        == trained.baseline.n_train
        == int((trained.window.frame[SPLIT_COLUMN] == TRAIN).sum())
    )
    scores = training.predict_scores(trained.candidate.pipeline, core.holdout_rows(current), fast_spec)
    assert trained.holdout_scores_sha256 == core.scores_digest(scores)
    assert trained.signature == training.model_signature(current, fast_spec)
    assert trained.reference.n_rows == trained.candidate.n_train  # built on the train rows of the window
    assert trained.holdout_split == {**trained.holdout_split, "warning": None}


def test_the_holdout_warning_is_given_before_training(fast_spec: DatasetSpec) -> None:
    raw = raw_frame(fast_spec)
    raw[fast_spec.order_column] = raw[fast_spec.order_column].iloc[0]  # one order value: an id-hash split
    raw[fast_spec.label.column] = "no"  # and a single class: training refuses
    warnings: list[str] = []
    with pytest.raises(ValueError, match="single class"):
        core.train_candidate_model(
            features_of(fast_spec, raw), [], fast_spec, earlier_versions=[], data_version="v9", warn=warnings.append
        )
    assert len(warnings) == 1
    assert warnings[0].startswith("holdout of v9: order column 'event_time' has 1 distinct value")


def test_a_skipped_search_is_warned_and_falls_back_to_the_fixed_parameters(spec: DatasetSpec) -> None:
    searched = replace(spec, training=replace(spec.training, estimator="logistic_regression", baseline="dummy",
                                              search={"C": (0.1, 1.0)}, cv_folds=3))  # fmt: skip
    raw = raw_frame(searched, n=500).sort_values("event_time").reset_index(drop=True)
    # Positives only among the latest rows: every fold trains on negatives alone, so no fold is usable.
    raw[searched.label.column] = np.where(np.arange(len(raw)) >= 0.7 * len(raw), "yes", "no")
    warnings: list[str] = []
    trained = core.train_candidate_model(
        features_of(searched, raw), [], searched, earlier_versions=[], data_version="v1", warn=warnings.append
    )
    assert trained.search is not None and trained.search.skipped == SEARCH_SKIPPED
    # The one-class holdout also has no calibration map (performance_estimate then says so): warned too.
    assert warnings == [
        core.skipped_search_warning(trained.search),
        "holdout of v1: no calibration map: holdout labels: 100 positive and 0 negative labelled rows; rule: a "
        "calibration map needs both classes",
    ]
    assert trained.calibration is None
    assert trained.candidate.params == training.estimator_params(
        "logistic_regression", {}, spec.policy.evaluation.random_seed
    )
    assert trained.registry_metrics() == {}
