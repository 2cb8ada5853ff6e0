"""The candidate model of one data version: what is trained, when a version is reused, what is recorded. Pure.

The ``candidate_model`` asset (:mod:`mlops_assets.assets.models`) reads the training window, stores the
artifacts and registers the model version; every decision between those reads and writes is here:

* :func:`train_candidate_model`: the training window (newest wins), the tuned candidate, the baseline beside
  it, the digest of the candidate's holdout scores, the training-data profile and the drift reference, in a
  :class:`CandidateTraining`. The warnings a run should log go to a callback, at the moment they arise.
* :meth:`CandidateTraining.training_fingerprint`: skops archives are not byte-reproducible, so "the same
  model" is decided by what went in and what comes out — data versions, spec, code (its source digest),
  estimator, parameters and holdout predictions. The registry registers at most one version per fingerprint
  (:meth:`~mlops_assets.storage.registry.ModelRegistry.register_version`, under the model's write lock): a
  re-run, or a second run of the same data version at the same time, gets the version already registered.
* :func:`calibration_of`: the calibration map of the candidate's holdout scores (isotonic, or Platt on a small
  holdout; :func:`mlops_assets.ml.estimation.fit_calibration`), stored beside the model so that
  ``performance_estimate`` turns its scores into probabilities before any label exists (CBPE).
* :meth:`CandidateTraining.registry_params`, :meth:`~CandidateTraining.registry_metrics` and
  :meth:`~CandidateTraining.registry_description`: what a new version is registered with.
* :func:`candidate_report`: the stored record, its reproducibility manifest and the materialization metadata.

Nothing here reads or writes files, the registry or the instance: the caller passes the values it read
(git state, package version, runtime, timings, content hashes, artifact references) and persists the results.
"""

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd

from mlops_assets.ml import drift, estimation, training
from mlops_assets.ml import features as feature_core
from mlops_assets.ml.provenance import fingerprint
from mlops_assets.ml.spec import DatasetSpec


def holdout_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The holdout rows of a features frame (those the candidate is evaluated on, never trained on)."""
    return frame[frame[feature_core.SPLIT_COLUMN] == feature_core.HOLDOUT]


def calibration_of(scores: np.ndarray, holdout: pd.DataFrame) -> tuple[estimation.CalibrationMap | None, str]:
    """The calibration map of a candidate's holdout scores vs the holdout labels, and a sentence saying what it is.

    Fitted by :func:`mlops_assets.ml.estimation.fit_calibration` (isotonic regression with at least
    :data:`~mlops_assets.ml.estimation.ISOTONIC_MIN_ROWS` labelled rows and enough of each class, Platt scaling
    otherwise). Rows without a label (NaN / NA in ``_label``) are left out. ``(None, why)`` when no map can be
    fitted (a holdout of one class, no labelled row): ``performance_estimate`` then says the version has no map
    instead of estimating from uncalibrated scores.

    Args:
        scores: The candidate's scores on ``holdout``'s rows, shape (n,).
        holdout: The holdout rows of the current version's features (with ``_label``).
    """
    labels = pd.to_numeric(holdout[feature_core.LABEL_COLUMN], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    try:
        fitted = estimation.fit_calibration(scores, labels)
    except estimation.EstimationError as exc:
        return None, f"no calibration map: {exc}"
    return fitted, f"calibration map: {fitted.describe()}"


def scores_digest(scores: np.ndarray) -> str:
    """sha256 of the exact float64 scores: a reloaded model must reproduce them bit for bit."""
    return hashlib.sha256(np.ascontiguousarray(scores, dtype=np.float64).tobytes()).hexdigest()


def search_table(search: training.SearchResult) -> str:
    """The ``cv_results`` markdown of a search: every combination by rank, then the folds and their class counts.

    A skipped search shows why and its folds only; a search without fold records shows no fold table.
    """
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


def skipped_search_warning(search: training.SearchResult) -> str:
    """The warning of a skipped search: why, and each fold's class counts on both sides."""
    counts = "; ".join(
        f"fold {f['fold']}: train {f['train_positives']}+/{f['train_negatives']}-, "
        f"validation {f['validation_positives']}+/{f['validation_negatives']}-"
        for f in search.folds
    )
    return f"{search.skipped} ({counts}); trained with the fixed parameters"


@dataclass(frozen=True)
class Provenance:
    """The code a model is trained by, as the caller read it.

    Attributes:
        git_sha: The checkout's commit (``"unknown"`` outside git).
        git_dirty: Whether the checkout had uncommitted changes (recorded; the source digest identifies the code).
        package_version: The installed version of mlops_assets.
        source_sha256: sha256 of the package's own source files (:func:`mlops_assets.provenance.source_digest`):
            the code that ran, committed or not.
    """

    git_sha: str
    git_dirty: bool
    package_version: str
    source_sha256: str = "unknown"


@dataclass(frozen=True)
class CandidateTraining:
    """What was trained for one data version, before anything is stored or registered.

    Attributes:
        data_versions: The versions trained on: the earlier versions of the window (oldest first), then the
            current one.
        window: The training frame and its overlap record (:func:`~mlops_assets.ml.features.training_window`).
        holdout_split: How the current version's holdout was drawn
            (:func:`~mlops_assets.ml.features.describe_split`).
        candidate: The tuned candidate (:func:`~mlops_assets.ml.training.tune_and_train`).
        search: Its search record; None when the spec's search space is empty.
        baseline: The baseline trained beside it on the same rows (``spec.training.baseline``).
        holdout_scores_sha256: :func:`scores_digest` of the candidate's scores on the current holdout.
        profile: The profile of the training frame's train rows.
        reference: The drift reference of the train rows (the spec's columns and ranges).
        signature: The model's input schema (:func:`~mlops_assets.ml.training.model_signature`).
        calibration: The calibration map of the candidate's holdout scores (:func:`calibration_of`); ``None``
            when none could be fitted.
        calibration_note: What the map is, or why there is none.
    """

    data_versions: list[str]
    window: feature_core.TrainingWindow
    holdout_split: dict[str, Any]
    candidate: training.TrainedModel
    search: training.SearchResult | None
    baseline: training.TrainedModel
    holdout_scores_sha256: str
    profile: feature_core.FeatureProfile
    reference: drift.DriftReference
    signature: dict[str, str]
    calibration: estimation.CalibrationMap | None = None
    calibration_note: str = "no calibration map"

    def training_fingerprint(self, spec: DatasetSpec, provenance: Provenance) -> str:
        """What identifies this model: data versions, spec, code, estimator, parameters and holdout predictions.

        The ``training_fingerprint`` registered with the version; the registry reuses the version registered
        with the same fingerprint instead of adding a duplicate.
        """
        return fingerprint(
            {
                "data_versions": self.data_versions,
                "spec": spec.fingerprint(),
                "code_version": provenance.package_version,  # key kept: stored fingerprints stay comparable
                "git_sha": provenance.git_sha,
                "source_sha256": provenance.source_sha256,
                "estimator": self.candidate.estimator,
                "params": self.candidate.params,
                "holdout_scores_sha256": self.holdout_scores_sha256,
            }
        )

    def registry_params(
        self,
        training_fingerprint: str,
        drift_reference: Mapping[str, Any],
        calibration_map: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The params of a new registry version: estimator, its parameters, the fingerprint, the drift reference
        and, when one was stored, the calibration map's artifact reference (key ``calibration_map``)."""
        params = {
            "estimator": self.candidate.estimator,
            **self.candidate.params,
            "training_fingerprint": training_fingerprint,
            "drift_reference": dict(drift_reference),
        }
        if calibration_map is not None:
            params["calibration_map"] = dict(calibration_map)
        return params

    def registry_metrics(self) -> dict[str, float]:
        """``cv_best_score`` of the search; nothing when there was no search or it was skipped (never a NaN)."""
        search = self.search
        return {"cv_best_score": search.best_score} if search and search.best_score is not None else {}

    def registry_description(self) -> str:
        """The description of a new registry version."""
        return f"candidate trained on data versions {', '.join(self.data_versions)}"


def _ignore(message: str) -> None:
    return None


def train_candidate_model(
    features: pd.DataFrame,
    earlier_frames: Sequence[pd.DataFrame],
    spec: DatasetSpec,
    *,
    earlier_versions: Sequence[str],
    data_version: str,
    warn: Callable[[str], None] = _ignore,
    progress: Callable[[str], None] = _ignore,
) -> CandidateTraining:
    """Train the candidate of ``data_version`` (and its baseline) on its training window.

    Earlier rows whose id is in a newer version are dropped (newest wins), so no holdout id is trained on.
    The candidate is tuned by time-ordered CV over the spec's search space and fitted on every train row of
    the window; the baseline is fitted on the same rows. The drift reference and the profile are computed
    once here, on the train rows, so monitoring never reloads the training rows.

    Args:
        features: Features of the current data version (with its split).
        earlier_frames: Features of the earlier versions of the window, oldest first.
        spec: The dataset spec.
        earlier_versions: Their names, same order.
        data_version: The current data version.
        warn: Called with ``"holdout of <version>: <warning>"`` when the holdout split warns (before
            training), and with :func:`skipped_search_warning` when the search is skipped.
        progress: Called with one line at each stage of the training (window, search fits, baseline, reference),
            so long trainings report where they are (a Dagster step passes ``context.log.info``).

    Returns:
        The trained candidate, baseline and everything recorded about them.

    Raises:
        ValueError: from :func:`~mlops_assets.ml.features.training_window` or
            :func:`~mlops_assets.ml.training.tune_and_train` (single-class train rows, too few rows for the
            folds, a non-finite search score, duplicate ids).
    """
    window = feature_core.training_window(features, earlier_frames, spec, versions=earlier_versions)
    train_frame = window.frame
    progress(f"training window: {', '.join([*earlier_versions, data_version])} ({len(train_frame):,} rows)")
    holdout_split = feature_core.describe_split(features, spec)
    if holdout_split["warning"]:
        warn(f"holdout of {data_version}: {holdout_split['warning']}")
    candidate, search = training.tune_and_train(train_frame, spec, progress=progress)
    if search is not None and search.skipped:
        warn(skipped_search_warning(search))
    progress(f"candidate fitted; training the {spec.training.baseline} baseline on the same rows")
    baseline = training.train_baseline(train_frame, spec)
    holdout = holdout_rows(features)
    holdout_scores = training.predict_scores(candidate.pipeline, holdout, spec)
    calibration, calibration_note = calibration_of(holdout_scores, holdout)
    if calibration is None:
        warn(f"holdout of {data_version}: {calibration_note}")
    profile = feature_core.profile_features(train_frame, spec)
    monitored = drift.spec_columns(spec)
    # Only the monitored columns of the train rows are copied (build_reference names any the frame lacks).
    train_rows = train_frame.loc[
        train_frame[feature_core.SPLIT_COLUMN] == feature_core.TRAIN,
        [c for c in monitored if c in train_frame.columns],
    ]
    reference = drift.build_reference(train_rows, monitored, ranges=drift.spec_ranges(spec))
    progress("baseline, holdout scores, feature profile and drift reference done")
    return CandidateTraining(
        data_versions=[*earlier_versions, data_version],
        window=window,
        holdout_split=holdout_split,
        candidate=candidate,
        search=search,
        baseline=baseline,
        holdout_scores_sha256=scores_digest(holdout_scores),
        profile=profile,
        reference=reference,
        signature=training.model_signature(features, spec),
        calibration=calibration,
        calibration_note=calibration_note,
    )


class _Version(Protocol):
    @property
    def params(self) -> Mapping[str, Any]: ...


V = TypeVar("V", bound=_Version)


@dataclass(frozen=True)
class Registered:
    """The registry version of a candidate (new or reused) and the artifacts stored for it.

    Attributes:
        version: The registry version.
        artifact: The candidate's artifact reference (``ArtifactRef.to_dict()``: ``uri``, ``sha256``, ``size``,
            ``hmac``); a reused version's own artifact.
        baseline_artifact: The baseline's.
        training_fingerprint: :meth:`CandidateTraining.training_fingerprint`.
    """

    version: int
    artifact: dict[str, Any]
    baseline_artifact: dict[str, Any]
    training_fingerprint: str


#: Keys of :attr:`CandidateReport.metadata` shown as JSON, and as markdown.
JSON_METADATA: tuple[str, ...] = ("params", "manifest")
MARKDOWN_METADATA: tuple[str, ...] = ("cv_results",)


@dataclass(frozen=True)
class CandidateReport:
    """The outputs of ``candidate_model``.

    Attributes:
        record: The stored value: model name and version, both artifacts, estimator and parameters, training
            size and time, feature columns, data versions, the holdout scores' digest and the manifest.
        manifest: The reproducibility manifest (also ``record["manifest"]``).
        metadata: The materialization metadata as plain values; the keys in :data:`JSON_METADATA` are shown
            as JSON and those in :data:`MARKDOWN_METADATA` as markdown.
    """

    record: dict[str, Any]
    manifest: dict[str, Any]
    metadata: dict[str, Any]


def candidate_report(
    trained: CandidateTraining,
    spec: DatasetSpec,
    registered: Registered,
    provenance: Provenance,
    *,
    runtime: Mapping[str, Any],
    wall_seconds: float,
    peak_memory_mb: float,
    content_hashes: Mapping[str, str],
    window_skipped: Sequence[Mapping[str, str]],
) -> CandidateReport:
    """The record, manifest and metadata of the candidate ``registered.version`` of ``spec.name``.

    Args:
        trained: What was trained.
        spec: The dataset spec.
        registered: Its registry version and artifacts.
        provenance: The code it was trained by.
        runtime: The runtime manifest (packages, python, platform, cpu…), merged in after ``package_version``.
        wall_seconds: Seconds since the run step started (rounded to ms here).
        peak_memory_mb: Peak memory of the process (rounded to 0.1 MB here).
        content_hashes: Data version → sha256 of its landed file.
        window_skipped: Earlier versions left out of the window, with the reason.
    """
    candidate, search = trained.candidate, trained.search
    version, artifact = registered.version, registered.artifact
    git_sha, git_dirty = provenance.git_sha, provenance.git_dirty
    manifest: dict[str, Any] = {
        "git_sha": git_sha,
        "git_dirty": git_dirty,
        "package_version": provenance.package_version,
        **runtime,
        "seed": spec.policy.evaluation.random_seed,
        "wall_seconds": round(wall_seconds, 3),
        "peak_memory_mb": round(peak_memory_mb, 1),
        "data_versions": dict(content_hashes),
        "window_skipped": list(window_skipped),
        "window_overlap": trained.window.overlap,
        "holdout_split": trained.holdout_split,
        "n_train": candidate.n_train,
        "feature_profile_id": trained.profile.profile_id,
        "drift_reference_id": trained.reference.profile_id,
        "spec": spec.name,
        "spec_fingerprint": spec.fingerprint(),
        "artifact": dict(artifact),
        "signature": trained.signature,
        "estimator": candidate.estimator,
        "params": candidate.params,
        "search": search.to_dict() if search else None,
        "training_fingerprint": registered.training_fingerprint,
        "calibration": trained.calibration_note,
    }
    record: dict[str, Any] = {
        "model_name": spec.name,
        "version": version,
        "artifact": dict(artifact),
        "baseline_artifact": dict(registered.baseline_artifact),
        "estimator": candidate.estimator,
        "params": candidate.params,
        "n_train": candidate.n_train,
        "train_seconds": candidate.train_seconds,
        "feature_columns": list(candidate.feature_columns),
        "data_versions": trained.data_versions,
        "holdout_scores_sha256": trained.holdout_scores_sha256,
        "manifest": manifest,
    }
    metadata: dict[str, Any] = {
        "model": f"{spec.name} v{version}",
        "model_version": version,
        "estimator": candidate.estimator,
        "artifact_sha256": artifact["sha256"],
        "artifact_bytes": artifact["size"],
        "n_train": candidate.n_train,
        "train_seconds": round(candidate.train_seconds, 3),
        "wall_seconds": manifest["wall_seconds"],
        "peak_memory_mb": manifest["peak_memory_mb"],
        "trained_on": ", ".join(trained.data_versions),
        "calibration": trained.calibration_note,
        "git_sha": git_sha,
        "git_dirty": git_dirty,
        "params": candidate.params,
        "manifest": manifest,
    }
    if search is not None:
        if search.best_score is not None:
            metadata["cv_best_score"] = round(search.best_score, 5)
        else:
            metadata["search_skipped"] = str(search.skipped)
        metadata["cv_results"] = search_table(search)
    return CandidateReport(record=record, manifest=manifest, metadata=metadata)
