"""Stage 3, models: tune and train the candidate (and the baseline beside it), store both verified, register.

Every candidate's materialization carries its reproducibility manifest: code and environment, seed, wall
time and peak memory, the exact data versions and their content hashes, the training-data profile,
the artifact digest, the model signature, and the search space with every cross-validated result.
"""

import hashlib
import time
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from mlops_assets.assets.gating import model_check_result
from mlops_assets.gate_records import data_gate_verdicts, latest_materialization_metadata
from mlops_assets.ml import drift, training
from mlops_assets.ml import features as feature_core
from mlops_assets.ml.gate_result import GateResult
from mlops_assets.ml.manifest import peak_memory_mb, runtime_manifest
from mlops_assets.ml.provenance import code_version, fingerprint, git_state
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.model import MLModel
from mlops_assets.resources import ArtifactStoreResource, ModelRegistryResource, StoredAssets
from mlops_assets.storage.artifacts.skops_codec import load_model, store_model
from mlops_assets.storage.artifacts.store import ArtifactRef
from mlops_assets.storage.registry import Lineage


def _holdout(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame[feature_core.SPLIT_COLUMN] == feature_core.HOLDOUT]


def scores_digest(scores: np.ndarray) -> str:
    """sha256 of the exact float64 scores: a reloaded model must reproduce them bit for bit."""
    return hashlib.sha256(np.ascontiguousarray(scores, dtype=np.float64).tobytes()).hexdigest()


def _window(
    model: MLModel, context: dg.AssetExecutionContext, spec: DatasetSpec, stored: StoredAssets
) -> tuple[list[str], list[pd.DataFrame], list[dict[str, str]]]:
    """Earlier data versions for the training window: the latest ``window - 1`` that passed every data gate.

    Versions of ``model`` are taken in the order they landed (its dynamic partition order). A version whose gates
    are not all passed, or whose features are not stored, is skipped — and the skip is recorded.
    """
    wanted = spec.training.window - 1
    if wanted <= 0:
        return [], [], []
    keys = context.instance.get_dynamic_partitions(model.partitions_name)
    current = context.partition_key
    earlier = keys[: keys.index(current)] if current in keys else []
    chosen: list[str] = []
    frames: list[pd.DataFrame] = []
    skipped: list[dict[str, str]] = []
    for key, failing in data_gate_verdicts(context.instance, earlier, model.data_gates):
        if failing:
            skipped.append({"data_version": key, "reason": ", ".join(f"{g.check} {g.status}" for g in failing)})
            continue
        if not stored.exists(model.key("features"), key):
            skipped.append({"data_version": key, "reason": "features not materialized"})
            continue
        chosen.append(key)
        frames.append(stored.load(model.key("features"), key))
        if len(chosen) == wanted:
            break  # before the next version's gate histories are read
    return chosen[::-1], frames[::-1], skipped


def _content_hashes(model: MLModel, instance: dg.DagsterInstance, versions: list[str]) -> dict[str, str]:
    """Full sha256 of each version's landed file, from the raw_data materialization of ``model`` that read it."""
    return {
        version: str(latest_materialization_metadata(instance, model.key("raw_data"), version).get("sha256", "unknown"))
        for version in versions
    }


def _search_table(search: training.SearchResult) -> str:
    names = list(search.space)
    header = "| rank | " + " | ".join(names) + f" | mean {search.scoring} | std |\n"
    header += "|---" * (len(names) + 3) + "|\n"
    rows = sorted(search.results, key=lambda r: r["rank"])
    body = "".join(
        f"| {r['rank']} | "
        + " | ".join(str(r["params"].get(n)) for n in names)
        + f" | {r['mean_score']:.4f} | {r['std_score']:.4f} |\n"
        for r in rows
    )
    folds = "".join(
        f"| {f['fold']} | {f['train_positives']} / {f['train_negatives']} | "
        f"{f['validation_positives']} / {f['validation_negatives']} | {'yes' if f['used'] else 'no'} |\n"
        for f in search.folds
    )
    fold_table = "| fold | train + / − | validation + / − | used |\n|---|---|---|---|\n" + folds if folds else ""
    if search.skipped:
        return f"{search.cv_folds}-fold time-ordered CV: {search.skipped}\n\n{fold_table}"
    return f"{search.cv_folds}-fold time-ordered CV\n\n{header}{body}\n{fold_table}"


def build(model: MLModel) -> dg.Definitions:
    """The models stage of ``model``: ``<model>/candidate_model`` and its reproducibility gate."""

    @dg.asset(
        key=model.key("candidate_model"),
        ins={"features": dg.AssetIn(key=model.key("features"))},
        partitions_def=model.partitions,
        group_name=model.name,
        owners=list(model.owners),
        tags={**model.asset_tags(), "mlops/stage": "models"},
        kinds={"scikitlearn"},
        # Training is the heavy step: the instance's `training` pool limit caps how many run at once.
        pool="training",
        description=(
            "The candidate model of this data version: an sklearn Pipeline with all preprocessing inside, tuned by "
            "time-ordered cross validation over the spec's search space on the training window (the last "
            "training.window data versions that passed their data gates), stored write-once as a verified skops "
            "artifact and registered as a new model version (stage None). A logistic-regression baseline is "
            "trained beside it. The metadata is the reproducibility manifest."
        ),
    )
    def candidate_model(
        context: dg.AssetExecutionContext,
        features: pd.DataFrame,
        artifacts: ArtifactStoreResource,
        registry: ModelRegistryResource,
        stored_assets: StoredAssets,
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        spec = model.spec()
        store = artifacts.store()
        earlier, earlier_frames, skipped = _window(model, context, spec, stored_assets)
        data_versions_used = [*earlier, context.partition_key]
        # Newest wins: earlier rows whose id is in a newer version are dropped, so no holdout id is trained on.
        window = feature_core.training_window(features, earlier_frames, spec, versions=earlier)
        train_frame = window.frame
        holdout_split = feature_core.describe_split(features, spec)
        if holdout_split["warning"]:
            context.log.warning(f"holdout of {context.partition_key}: {holdout_split['warning']}")
        candidate, search = training.tune_and_train(train_frame, spec)
        if search is not None and search.skipped:
            counts = "; ".join(
                f"fold {f['fold']}: train {f['train_positives']}+/{f['train_negatives']}-, "
                f"validation {f['validation_positives']}+/{f['validation_negatives']}-"
                for f in search.folds
            )
            context.log.warning(f"{search.skipped} ({counts}); trained with the fixed parameters")
        baseline = training.train_baseline(train_frame, spec)
        holdout_scores = training.predict_scores(candidate.pipeline, _holdout(features), spec)
        profile = feature_core.profile_features(train_frame, spec)
        # The drift reference of this model's training data, computed once here and stored content-addressed
        # beside the model: monitoring compares new data with it without ever reloading the training rows.
        train_rows = train_frame[train_frame[feature_core.SPLIT_COLUMN] == feature_core.TRAIN]
        reference = drift.build_reference(train_rows, drift.spec_columns(spec), ranges=drift.spec_ranges(spec))
        reference_ref = store.put_bytes(reference.to_json().encode(), ".json")
        sha, dirty = git_state()
        # skops archives are not byte-reproducible (zip times, object ids), so "the same model" is decided by
        # what went in and what comes out: re-running a version with the same code and data reuses its model
        # version instead of registering a duplicate.
        training_fp = fingerprint(
            {
                "data_versions": data_versions_used,
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
                    data_versions=tuple(data_versions_used),
                    run_id=context.run.run_id,
                    code_version=code_version(),
                    git_sha=sha,
                    spec_fingerprint=spec.fingerprint(),
                ),
                params={
                    "estimator": candidate.estimator,
                    **candidate.params,
                    "training_fingerprint": training_fp,
                    "drift_reference": reference_ref.to_dict(),
                },
                # A skipped search has no score: nothing is registered rather than a NaN.
                metrics={"cv_best_score": search.best_score} if search and search.best_score is not None else {},
                description=f"candidate trained on data versions {', '.join(data_versions_used)}",
            )
        manifest: dict[str, Any] = {
            "git_sha": sha,
            "git_dirty": dirty,
            "code_version": code_version(),
            **runtime_manifest(),
            "seed": spec.policy.random_seed,
            "wall_seconds": round(time.perf_counter() - started, 3),
            "peak_memory_mb": round(peak_memory_mb(), 1),
            "data_versions": _content_hashes(model, context.instance, data_versions_used),
            "window_skipped": skipped,
            "window_overlap": window.overlap,
            "holdout_split": holdout_split,
            "n_train": candidate.n_train,
            "feature_profile_id": profile.profile_id,
            "drift_reference_id": reference.profile_id,
            "spec": spec.name,
            "spec_fingerprint": spec.fingerprint(),
            "artifact": candidate_ref.to_dict(),
            "signature": training.model_signature(features, spec),
            "estimator": candidate.estimator,
            "params": candidate.params,
            "search": search.to_dict() if search else None,
            "training_fingerprint": training_fp,
        }
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
            "data_versions": data_versions_used,
            "holdout_scores_sha256": scores_digest(holdout_scores),
            "manifest": manifest,
        }
        metadata: dict[str, Any] = {
            "model": f"{spec.name} v{version.version}",
            "model_version": version.version,
            "estimator": candidate.estimator,
            "artifact_sha256": candidate_ref.sha256,
            "artifact_bytes": candidate_ref.size,
            "n_train": candidate.n_train,
            "train_seconds": round(candidate.train_seconds, 3),
            "wall_seconds": manifest["wall_seconds"],
            "peak_memory_mb": manifest["peak_memory_mb"],
            "trained_on": ", ".join(data_versions_used),
            "git_sha": sha,
            "git_dirty": dirty,
            "params": dg.MetadataValue.json(candidate.params),
            "manifest": dg.MetadataValue.json(manifest),
        }
        if search is not None:
            if search.best_score is not None:
                metadata["cv_best_score"] = round(search.best_score, 5)
            else:
                metadata["search_skipped"] = str(search.skipped)
            metadata["cv_results"] = dg.MetadataValue.md(_search_table(search))
        return dg.MaterializeResult(value=record, metadata=metadata)

    @dg.asset_check(
        asset=candidate_model,
        blocking=True,
        partitions_def=model.partitions,
        additional_ins={"features": dg.AssetIn(key=model.key("features"))},
        description=(
            "Passes when the stored artifact's digest verifies, it loads without untrusted types, and it reproduces "
            "the holdout scores recorded at training bit for bit."
        ),
    )
    def model_reproduces_holdout_scores(
        context: dg.AssetCheckExecutionContext,
        candidate_model: dict[str, Any],
        features: pd.DataFrame,
        artifacts: ArtifactStoreResource,
        registry: ModelRegistryResource,
    ) -> dg.AssetCheckResult:
        spec = model.spec()
        ref = ArtifactRef.from_dict(candidate_model["artifact"])
        condition = "artifact verifies, loads, and reproduces the recorded holdout scores exactly"
        # The outcome is recorded in the registry for this very version and artifact: promotion reads it there.
        identity = {
            "model_name": candidate_model["model_name"],
            "version": int(candidate_model["version"]),
            "artifact_sha256": ref.sha256,
        }
        try:
            pipeline = load_model(artifacts.store(), ref)
        except Exception as exc:  # any load failure is a failed gate, with the reason as evidence
            gate = GateResult("model_reproduces_holdout_scores", False, condition, f"{ref.uri}: {exc}")
            return model_check_result(context, registry.registry(), gate, **identity)
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
        return model_check_result(context, registry.registry(), gate, **identity)

    return dg.Definitions(assets=[candidate_model], asset_checks=[model_reproduces_holdout_scores])
