"""Stage 3, models: tune and train the candidate (and the baseline beside it), store both verified, register.

Every candidate's materialization carries its reproducibility manifest: code and environment, seed, wall
time and peak memory, the exact data versions and their content hashes, the training-data profile,
the artifact digest, the model signature, and the search space with every cross-validated result.
"""

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from mlops_assets import faults
from mlops_assets.assets.gating import model_check_result
from mlops_assets.gate_records import data_gate_verdicts, latest_materialization_metadata
from mlops_assets.ml import candidate as candidate_core
from mlops_assets.ml import labels as labels_core
from mlops_assets.ml import training
from mlops_assets.ml.candidate import holdout_rows, scores_digest
from mlops_assets.ml.gate_result import GateResult
from mlops_assets.ml.spec import DatasetSpec
from mlops_assets.ml.validation import SOURCE_FILE_ATTR
from mlops_assets.model import MLModel
from mlops_assets.profiling import measured_step
from mlops_assets.provenance import (
    asset_code_version,
    git_state,
    package_version,
    peak_memory_mb,
    runtime_manifest,
    source_digest,
)
from mlops_assets.resources import FrameIOManager
from mlops_assets.storage.artifacts.skops_codec import load_model, store_model
from mlops_assets.storage.artifacts.store import ArtifactRef, ArtifactStore
from mlops_assets.storage.registry import Lineage, ModelRegistry


def _window(
    model: MLModel, context: dg.AssetExecutionContext, spec: DatasetSpec, stored: FrameIOManager
) -> tuple[list[str], list[pd.DataFrame], list[dict[str, str]]]:
    """Earlier data versions for the training window: the latest ``window - 1`` that passed every data gate and are
    labelled, each with ``_label`` from its stored labels stream (:func:`labels_core.labelled_features`).

    Versions of ``model`` are taken in the order they landed (its dynamic partition order). A version whose gates
    are not all passed, whose features or labels are not stored, or whose labelled share is below
    ``policy.data.min_labelled_share`` is skipped — and the skip is recorded (``data_version``, ``reason``, and for
    an unlabelled version its ``labelled_share`` as text, 4 decimals).
    """
    wanted = spec.training.window - 1
    if wanted <= 0:
        return [], [], []
    keys = context.instance.get_dynamic_partitions(model.partitions_name)
    current = context.partition_key
    earlier = keys[: keys.index(current)] if current in keys else []
    min_share = spec.policy.data.min_labelled_share
    chosen: list[str] = []
    frames: list[pd.DataFrame] = []
    skipped: list[dict[str, str]] = []
    for key, failing in data_gate_verdicts(context.instance, earlier, model.data_gates):
        if failing:
            skipped.append({"data_version": key, "reason": ", ".join(f"{g.check} {g.status}" for g in failing)})
            continue
        if not stored.has_value(model.key("features"), key):
            skipped.append({"data_version": key, "reason": "features not materialized"})
            continue
        if not stored.has_value(model.key("labels"), key):
            skipped.append(
                {"data_version": key, "reason": "not labelled: labels not materialized", "labelled_share": "0"}
            )
            continue
        labels = stored.load_value(model.key("labels"), key)
        share = labels_core.labelled_share(labels)
        if not labels_core.is_labelled(labels, min_share):
            skipped.append(
                {
                    "data_version": key,
                    "reason": f"not labelled: labelled share {share:.3f} < min_labelled_share {min_share}",
                    "labelled_share": f"{share:.4f}",
                }
            )
            continue
        chosen.append(key)
        frames.append(labels_core.labelled_features(stored.load_value(model.key("features"), key), labels, spec))
        if len(chosen) == wanted:
            break  # before the next version's gate histories are read
    return chosen[::-1], frames[::-1], skipped


#: The candidate record's key for the ids of its holdout rows (the labelled holdout rows when it was trained).
HOLDOUT_IDS = "holdout_row_ids"


def _recorded_holdout(
    record: dict[str, Any], features: pd.DataFrame, labels: pd.DataFrame, spec: DatasetSpec
) -> pd.DataFrame:
    """The holdout rows a candidate was scored on at training, in the features' order.

    Selected by the ids the record names, so labels that landed after training (a larger labelled share) do not
    change them; a record written before it named them falls back to today's labelled holdout rows.
    """
    if HOLDOUT_IDS in record:
        holdout = holdout_rows(features)
        return holdout[holdout[spec.id_column].astype(str).isin(set(record[HOLDOUT_IDS]))]
    return holdout_rows(labels_core.labelled_features(features, labels, spec))


def _content_hashes(model: MLModel, instance: dg.DagsterInstance, versions: list[str]) -> dict[str, str]:
    """Full sha256 of each version's landed file, from the raw_data materialization of ``model`` that read it."""
    return {
        version: str(latest_materialization_metadata(instance, model.key("raw_data"), version).get("sha256", "unknown"))
        for version in versions
    }


def _store_and_register(
    context: dg.AssetExecutionContext,
    reg: ModelRegistry,
    store: ArtifactStore,
    spec: DatasetSpec,
    trained: candidate_core.CandidateTraining,
    provenance: candidate_core.Provenance,
) -> candidate_core.Registered:
    """Store the drift reference, the baseline and the candidate, then register the candidate as a new version
    (stage None) — or get the version already registered for the same training fingerprint (a rerun, or a run of
    the same data version beside this one), whose artifact is then the candidate's.

    The drift reference of the training data is stored content-addressed beside the model: monitoring compares new
    data with it without ever reloading the training rows. The calibration map of the candidate's holdout scores
    (when one could be fitted) is stored the same way and named in the params (``calibration_map``):
    ``performance_estimate`` reads it to estimate performance before labels exist. Each artifact is stored (and
    verified) before the registry row that names it is written, so a crash between the two leaves an unreferenced
    blob, never a row without its artifact.
    """
    reference_ref = store.put_bytes(trained.reference.to_json().encode(), ".json")
    calibration_ref = (
        store.put_bytes(trained.calibration.to_json().encode(), ".json") if trained.calibration is not None else None
    )
    training_fp = trained.training_fingerprint(spec, provenance)
    baseline_ref = store_model(store, trained.baseline.pipeline)
    candidate_ref = store_model(store, trained.candidate.pipeline)
    faults.point("artifact_written")
    version = reg.register_version(
        spec.name,
        candidate_ref,
        Lineage(
            data_versions=tuple(trained.data_versions),
            run_id=context.run.run_id,
            package_version=provenance.package_version,
            git_sha=provenance.git_sha,
            spec_fingerprint=spec.fingerprint(),
        ),
        params=trained.registry_params(
            training_fp,
            reference_ref.to_dict(),
            calibration_ref.to_dict() if calibration_ref is not None else None,
        ),
        metrics=trained.registry_metrics(),
        description=trained.registry_description(),
        fingerprint=training_fp,
    )
    faults.point("registered")
    if version.artifact_sha256 != candidate_ref.sha256:
        context.log.info(f"same code, data and predictions as {spec.name} v{version.version}: reusing it")
    return candidate_core.Registered(version.version, version.artifact.to_dict(), baseline_ref.to_dict(), training_fp)


def _metadata(plain: dict[str, Any]) -> dict[str, Any]:
    """The candidate's metadata for Dagster: the JSON and markdown entries of the core's plain values wrapped."""
    return {
        key: dg.MetadataValue.json(value)
        if key in candidate_core.JSON_METADATA
        else dg.MetadataValue.md(value)
        if key in candidate_core.MARKDOWN_METADATA
        else value
        for key, value in plain.items()
    }


def build(model: MLModel) -> dg.Definitions:
    """The models stage of ``model``: ``<model>/candidate_model`` and its reproducibility gate."""
    code_version = asset_code_version(model)

    @dg.asset(
        **model.asset_defaults("candidate_model", stage="models"),
        code_version=code_version,
        ins={"features": dg.AssetIn(key=model.key("features")), "labels": dg.AssetIn(key=model.key("labels"))},
        kinds={"scikitlearn"},
        # Not labelled yet (label.required: false): no candidate, and what depends on it is skipped, not failed.
        output_required=False,
        # Training is the heavy step: the instance's `training` pool limit caps how many run at once.
        pool="training",
        description=(
            "The candidate model of this data version: an sklearn Pipeline with all preprocessing inside, tuned by "
            "time-ordered cross validation over the spec's search space on the training window (the last "
            "training.window data versions that passed their data gates), stored write-once as a verified skops "
            "artifact and registered as a new model version (stage None). A logistic-regression baseline is "
            "trained beside it. The metadata is the reproducibility manifest. Only data versions that train have a "
            "candidate (the first labelled version, a retrain trigger, or a spec that trains on every version), so "
            "the partition bar is partly filled by design; the model_registry asset lists every model version. "
            "Labels come from the labels stream joined by row id (unlabelled rows are not trained on); a version that "
            "is not labelled (labelled share below policy.data.min_labelled_share) is not trained on: in a retrain "
            "run that fails naming rule labelled, in any other run (lifecycle) the candidate and everything after "
            "it are skipped, with an observation saying why."
        ),
    )
    @measured_step
    def candidate_model(
        context: dg.AssetExecutionContext,
        features: pd.DataFrame,
        labels: pd.DataFrame,
        artifacts: dg.ResourceParam[ArtifactStore],
        registry: dg.ResourceParam[ModelRegistry],
        io_manager: dg.ResourceParam[FrameIOManager],
    ) -> Iterator[dg.MaterializeResult]:
        started = time.perf_counter()
        spec = model.spec()
        min_share = spec.policy.data.min_labelled_share
        share = labels_core.labelled_share(labels)
        if not labels_core.is_labelled(labels, min_share):
            why = (
                f"{context.partition_key} is not labelled: labelled share {share:.4f} < policy.data.min_labelled_share "
                f"{min_share} (rule: labelled); a retrain waits for its labels (the labels stream)"
            )
            if context.job_def.name == model.job_name("retrain_job"):
                raise dg.Failure(
                    description=why, metadata={"rule": "labelled", "labelled_share": share, "min_share": min_share}
                )
            context.log.warning(f"not trained: {why}")
            context.log_event(
                dg.AssetObservation(
                    asset_key=model.key("candidate_model"),
                    partition=context.partition_key,
                    metadata={"trained": False, "reason": why, "labelled_share": share, "rule": "labelled"},
                )
            )
            return
        features = labels_core.labelled_features(features, labels, spec)
        earlier, earlier_frames, skipped = _window(model, context, spec, io_manager)
        try:
            trained = candidate_core.train_candidate_model(
                features,
                earlier_frames,
                spec,
                earlier_versions=earlier,
                data_version=context.partition_key,
                warn=context.log.warning,
                progress=context.log.info,
            )
        except ValueError as exc:  # data that cannot train a model: a clear failure naming the files and the rule
            files = [features.attrs.get(SOURCE_FILE_ATTR, context.partition_key)]
            files += [
                frame.attrs.get(SOURCE_FILE_ATTR, key) for key, frame in zip(earlier, earlier_frames, strict=True)
            ]
            raise dg.Failure(
                description=f"{', '.join(map(str, files))}: {exc} (rule: trainable)",
                metadata={"files": files, "label_column": spec.label.column, "rule": "trainable"},
            ) from exc
        faults.point("trained")
        provenance = candidate_core.Provenance(*git_state(), package_version(), source_digest())
        registered = _store_and_register(context, registry, artifacts, spec, trained, provenance)
        report = candidate_core.candidate_report(
            trained,
            spec,
            registered,
            provenance,
            runtime=runtime_manifest(),
            wall_seconds=time.perf_counter() - started,
            peak_memory_mb=peak_memory_mb(),
            content_hashes=_content_hashes(model, context.instance, trained.data_versions),
            window_skipped=skipped,
        )
        # The holdout rows are the labelled ones of today: labels landing later must not change what the
        # reproducibility check re-scores, so the record names them.
        record = {**report.record, HOLDOUT_IDS: holdout_rows(features)[spec.id_column].astype(str).tolist()}
        yield dg.MaterializeResult(value=record, metadata=_metadata(report.metadata))

    @dg.asset_check(
        asset=candidate_model,
        blocking=True,
        partitions_def=model.partitions,
        additional_ins={
            "features": dg.AssetIn(key=model.key("features")),
            "labels": dg.AssetIn(key=model.key("labels")),
        },
        description=(
            "Passes when the stored artifact's digest verifies, it loads without untrusted types, and it reproduces "
            "the holdout scores recorded at training bit for bit (on the labelled holdout rows, labels joined by id)."
        ),
    )
    @measured_step
    def model_reproduces_holdout_scores(
        context: dg.AssetCheckExecutionContext,
        candidate_model: dict[str, Any],
        features: pd.DataFrame,
        labels: pd.DataFrame,
        artifacts: dg.ResourceParam[ArtifactStore],
        registry: dg.ResourceParam[ModelRegistry],
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
            pipeline = load_model(artifacts, ref)
        except Exception as exc:  # any load failure is a failed gate, with the reason as evidence
            gate = GateResult("model_reproduces_holdout_scores", False, condition, f"{ref.uri}: {exc}")
            return model_check_result(context, registry, gate, **identity)
        digest = scores_digest(
            training.predict_scores(pipeline, _recorded_holdout(candidate_model, features, labels, spec), spec)
        )
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
        return model_check_result(context, registry, gate, **identity)

    return dg.Definitions(assets=[candidate_model], asset_checks=[model_reproduces_holdout_scores])
