"""Stage 3, models: train the candidate (and the baseline beside it), store both verified, register the candidate."""

import hashlib
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from mlops_assets.assets.gating import check_result
from mlops_assets.ml import features as feature_core
from mlops_assets.ml import training
from mlops_assets.ml.artifacts import ArtifactRef, load_model, store_model
from mlops_assets.ml.gate_result import GateResult
from mlops_assets.ml.provenance import code_version, fingerprint, git_state
from mlops_assets.ml.registry import Lineage
from mlops_assets.partitions import data_versions
from mlops_assets.resources import ArtifactStoreResource, DatasetSpecResource, ModelRegistryResource


def _holdout(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame[feature_core.SPLIT_COLUMN] == "holdout"]


def scores_digest(scores: np.ndarray) -> str:
    """sha256 of the exact float64 scores: a reloaded model must reproduce them bit for bit."""
    return hashlib.sha256(np.ascontiguousarray(scores, dtype=np.float64).tobytes()).hexdigest()


@dg.asset(
    partitions_def=data_versions,
    group_name="models",
    kinds={"scikitlearn"},
    description=(
        "The candidate model of this data version: an sklearn Pipeline with all preprocessing inside, trained on "
        "the train rows, stored write-once as a verified skops artifact and registered as a new model version "
        "(stage None). A logistic-regression baseline is trained and stored beside it."
    ),
)
def candidate_model(
    context: dg.AssetExecutionContext,
    features: pd.DataFrame,
    dataset: DatasetSpecResource,
    artifacts: ArtifactStoreResource,
    registry: ModelRegistryResource,
) -> dg.MaterializeResult:
    spec = dataset.load()
    store = artifacts.store()
    candidate = training.train_candidate(features, spec)
    baseline = training.train_baseline(features, spec)
    holdout_scores = training.predict_scores(candidate.pipeline, _holdout(features), spec)
    sha, dirty = git_state()
    # skops archives are not byte-reproducible (zip times, object ids), so "the same model" is decided by
    # what went in and what comes out: re-running a version with the same code and data reuses its model
    # version instead of registering a duplicate.
    training_fp = fingerprint(
        {
            "data_versions": [context.partition_key],
            "spec": spec.fingerprint(),
            "code_version": code_version(),
            "git_sha": sha,
            "estimator": candidate.estimator,
            "params": candidate.params,
            "holdout_scores_sha256": scores_digest(holdout_scores),
        }
    )
    reg = registry.registry()
    previous = [
        v
        for v in reg.versions_for_data_version(spec.name, context.partition_key)
        if v.params.get("training_fingerprint") == training_fp and not dirty
    ]
    baseline_ref = store_model(store, baseline.pipeline)
    if previous:
        version = previous[-1]
        candidate_ref = version.artifact
        context.log.info(f"same code, data and predictions as {spec.name} v{version.version}: reusing it")
    else:
        candidate_ref = store_model(store, candidate.pipeline)
        version = reg.register_version(
            spec.name,
            candidate_ref,
            Lineage(
                data_versions=(context.partition_key,),
                run_id=context.run.run_id,
                code_version=code_version(),
                git_sha=sha,
                spec_fingerprint=spec.fingerprint(),
            ),
            params={"estimator": candidate.estimator, **candidate.params, "training_fingerprint": training_fp},
            metrics={},
            description=f"candidate trained on data version {context.partition_key}",
        )
    record: dict[str, Any] = {
        "model_name": spec.name,
        "version": version.version,
        "artifact": candidate_ref.to_dict(),
        "baseline_artifact": baseline_ref.to_dict(),
        "estimator": candidate.estimator,
        "params": candidate.params,
        "n_train": candidate.n_train,
        "train_seconds": candidate.train_seconds,
        "feature_columns": list(candidate.feature_columns),
        "data_versions": [context.partition_key],
        "holdout_scores_sha256": scores_digest(holdout_scores),
        "spec_fingerprint": spec.fingerprint(),
        "code_version": code_version(),
        "git_sha": sha,
        "git_dirty": dirty,
    }
    return dg.MaterializeResult(
        value=record,
        metadata={
            "model": f"{spec.name} v{version.version}",
            "model_version": version.version,
            "estimator": candidate.estimator,
            "artifact_sha256": candidate_ref.sha256,
            "artifact_bytes": candidate_ref.size,
            "n_train": candidate.n_train,
            "train_seconds": round(candidate.train_seconds, 3),
            "git_sha": sha,
            "git_dirty": dirty,
        },
    )


@dg.asset_check(
    asset=candidate_model,
    blocking=True,
    partitions_def=data_versions,
    additional_ins={"features": dg.AssetIn("features")},
    description=(
        "Passes when the stored artifact's digest verifies, it loads without untrusted types, and it reproduces "
        "the holdout scores recorded at training bit for bit."
    ),
)
def model_reproduces_holdout_scores(
    candidate_model: dict[str, Any],
    features: pd.DataFrame,
    dataset: DatasetSpecResource,
    artifacts: ArtifactStoreResource,
) -> dg.AssetCheckResult:
    spec = dataset.load()
    ref = ArtifactRef.from_dict(candidate_model["artifact"])
    condition = "artifact verifies, loads, and reproduces the recorded holdout scores exactly"
    try:
        pipeline = load_model(artifacts.store(), ref)
    except Exception as exc:  # any load failure is a failed gate, with the reason as evidence
        gate = GateResult("model_reproduces_holdout_scores", False, condition, f"{ref.uri}: {exc}")
        return check_result(gate)
    digest = scores_digest(training.predict_scores(pipeline, _holdout(features), spec))
    expected = candidate_model["holdout_scores_sha256"]
    gate = GateResult(
        name="model_reproduces_holdout_scores",
        passed=digest == expected,
        condition=condition,
        message=(
            "reloaded model reproduces the holdout scores"
            if digest == expected
            else f"{ref.uri}: reloaded model's holdout scores differ (sha256 {digest[:12]} != {expected[:12]})"
        ),
        evidence={"artifact": ref.uri, "expected_sha256": expected, "observed_sha256": digest},
    )
    return check_result(gate)


models_checks = [model_reproduces_holdout_scores]
