"""Stage 4, evaluations: candidate, baseline and the production model scored on the same holdout rows.

The evaluation records everything the gates decide on — metrics, the interval of the difference against
production (DeLong for ROC AUC, a paired bootstrap for PR AUC), slices, fairness, calibration, the latency of the
stored artifact — and the effective policy (the spec's, with any launchpad overrides), so every gate result traces to
its numbers.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd
import pydantic

from mlops_assets import faults
from mlops_assets.assets.gating import gate_specs, gate_step, model_check_result, selected
from mlops_assets.assets.metadata import readable, table
from mlops_assets.ml import model_gates, plots
from mlops_assets.ml.evaluation import Evaluation, EvaluationOutcome, evaluate_candidate
from mlops_assets.ml.labels import labelled_features
from mlops_assets.ml.policy import Policy, evaluation_override_fields
from mlops_assets.model import MLModel
from mlops_assets.profiling import measured_step
from mlops_assets.provenance import asset_code_version
from mlops_assets.storage.artifacts.skops_codec import load_model
from mlops_assets.storage.artifacts.store import ArtifactRef, ArtifactStore
from mlops_assets.storage.registry import ModelRegistry

LAUNCHPAD_WHERE = "launchpad config of model_evaluation"


class PolicyOverridesBase(dg.Config):
    """Launchpad overrides of the spec's gate policy for this evaluation (leave empty to use the spec's).

    Every field is optional; a set field replaces the spec's value for this run only, and the effective
    policy is recorded with the evaluation. Lists (metric thresholds, per-slice floors) are set in the spec;
    the holdout split, the seed and the headline metric too (the candidate was trained and split with them).
    The fields are generated from the policy's dataclasses (see :data:`PolicyOverrides`).
    """

    def apply(self, policy: Policy) -> Policy:
        """``policy`` with the set fields applied, validated by the spec's rules.

        Raises:
            PolicyError: naming "launchpad config of model_evaluation" and the key.
        """
        overrides = {k: v for k, v in self.model_dump().items() if v is not None}
        return policy.with_overrides(overrides, LAUNCHPAD_WHERE) if overrides else policy


if TYPE_CHECKING:
    PolicyOverrides = PolicyOverridesBase
else:
    #: The launchpad config of ``<model>/model_evaluation``: one optional field per scalar setting of
    #: ``EvaluationPolicy`` and ``ModelGatePolicy`` that the evaluation uses (``evaluation_override_fields``),
    #: named as the setting, typed as it and described by its docstring; a new policy field appears here by itself.
    PolicyOverrides = pydantic.create_model(
        "PolicyOverrides",
        __base__=PolicyOverridesBase,
        __doc__=PolicyOverridesBase.__doc__,
        __module__=__name__,
        **{
            f.name: (f.type | None, pydantic.Field(default=None, description=description))
            for f, description in evaluation_override_fields()
        },
    )


#: Budget of ``model_evaluation``'s metadata per materialization, in bytes as Dagster stores it (its serdes JSON of
#: the metadata dict): the UI's asset views read back every materialization's metadata (the Plots view of 100
#: evaluations fetched 9.6 MB when each carried two PNGs). Measured as materialized: 13.7-14.4 KB for flights months
#: (19 slices), 15.7-16.5 KB for synthetic versions (6 slices, a protected attribute), against 85.6-98.4 KB with the
#: PNGs; 18.2 KB for the tests' flights-shaped evaluation with a protected attribute of 3 groups. The budget leaves
#: room for about 30 more slice rows.
METADATA_BUDGET_BYTES = 24 * 1024


def _plots(result: Evaluation) -> dict[str, Any]:
    """ROC curves and reliability diagram as small SVG charts (markdown metadata Dagster's UI shows inline)."""
    out: dict[str, Any] = {}
    if result.scores is None:
        return out
    scores = {
        name: values
        for name, values in (
            ("candidate", result.scores.candidate),
            ("production", result.scores.production),
            ("baseline", result.scores.baseline),
        )
        if values is not None and result.predictions.get(name) is not None and result.predictions[name].valid
    }
    y = result.scores.y_true
    if len(set(y.tolist())) == 2 and scores:
        out["roc_curve"] = dg.MetadataValue.md(plots.roc_curve_svg(y, scores))
    if result.reliability:
        out["reliability_diagram"] = dg.MetadataValue.md(plots.reliability_svg(result.reliability))
    return out


def _evaluation_metadata(outcome: EvaluationOutcome) -> dict[str, Any]:
    """The core's plain metadata as Dagster metadata: a typed null, the headline figures as rounded floats, the
    policy as JSON, then the tables (important columns first, floats rounded for reading) and the plots."""
    # The headline figures rounded for reading (4 significant digits, still floats: the UI plots them).
    metadata: dict[str, Any] = {k: readable(v) if isinstance(v, float) else v for k, v in outcome.metadata.items()}
    if metadata["production_version"] is None:
        # Typed: a promotion by hand refuses when production moved since this comparison.
        metadata["production_version"] = dg.MetadataValue.null()
    metadata["policy"] = dg.MetadataValue.json(metadata["policy"])
    metadata.update(
        {name: table(t.rows, columns=t.columns, descriptions=t.descriptions) for name, t in outcome.tables.items()}
    )
    metadata.update(_plots(outcome.result))
    return metadata


def build(model: MLModel) -> dg.Definitions:
    """The evaluations stage of ``model``: ``<model>/model_evaluation`` and its model gates."""
    code_version = asset_code_version(model)

    @dg.asset(
        **model.asset_defaults("model_evaluation", stage="evaluations"),
        code_version=code_version,
        ins={
            "features": dg.AssetIn(key=model.key("features")),
            "labels": dg.AssetIn(key=model.key("labels")),
            "candidate_model": dg.AssetIn(key=model.key("candidate_model")),
        },
        kinds={"scikitlearn"},
        description=(
            "Holdout evaluation of the candidate against the baseline and the model in production, on the same rows: "
            "metrics, the interval of (candidate − production) (DeLong for ROC AUC, paired bootstrap for PR AUC), "
            "per-slice metrics, fairness gaps, "
            "calibration (ECE, reliability), latency of the stored artifact. Shown: the headline figures (plotted "
            "across data versions), a comparison table (one row per metric: candidate, baseline, production, "
            "candidate − production with its interval, the direction that is better and the policy's thresholds), "
            "slice and fairness tables, ROC curves (true against false positive rate) and a reliability diagram "
            "(observed positive rate against mean score; its bins are listed by the calibration gate). "
            "The effective policy (spec + launchpad overrides) is recorded; the gates below decide on it. The "
            "holdout's labels come from the labels stream joined by row id; unlabelled holdout rows are left out."
        ),
    )
    @measured_step
    def model_evaluation(
        config: PolicyOverrides,
        features: pd.DataFrame,
        labels: pd.DataFrame,
        candidate_model: dict[str, Any],
        artifacts: dg.ResourceParam[ArtifactStore],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> dg.MaterializeResult:
        spec = model.spec()
        # The holdout's labels from the labels stream, joined by id (the rows the candidate was checked on).
        features = labelled_features(features, labels, spec)
        policy = config.apply(spec.policy)
        candidate = load_model(artifacts, ArtifactRef.from_dict(candidate_model["artifact"]))
        baseline = load_model(artifacts, ArtifactRef.from_dict(candidate_model["baseline_artifact"]))
        production = registry.production_version(spec.name)
        production_pipeline = (
            None
            if production is None
            else candidate
            if production.version == candidate_model["version"]
            else load_model(artifacts, production.artifact)
        )
        outcome = evaluate_candidate(
            features,
            spec,
            candidate,
            baseline,
            production_pipeline,
            policy=policy,
            model_version=candidate_model["version"],
            # The identity the gates judge: their outcomes are recorded in the registry for this version and digest.
            artifact_sha256=candidate_model["artifact"]["sha256"],
            # The promotion checks that production is still this version; if it changed, the comparison is void.
            production_version=production.version if production is not None else None,
        )
        faults.point("evaluation")
        return dg.MaterializeResult(value=outcome.record, metadata=_evaluation_metadata(outcome))

    # The nine gates judge one stored record: one step evaluates them all (gating.gate_step).
    specs = gate_specs(
        model, "model_evaluation", {name: model_gates.GATE_DESCRIPTIONS[name] for name in model_gates.GATES}
    )

    @gate_step(model, "model_evaluation", "model_gates", specs, "The model gates of the evaluation (see each check).")
    @measured_step
    def model_gate_checks(
        context: dg.AssetCheckExecutionContext,
        model_evaluation: dict[str, Any],
        registry: dg.ResourceParam[ModelRegistry],
    ) -> Iterator[dg.AssetCheckResult]:
        evaluation = Evaluation.from_dict(model_evaluation)
        # Decide with the policy the evaluation used (spec + launchpad overrides), never a different one.
        policy = evaluation.effective_policy() or model.spec().policy
        for spec in selected(context, specs):
            yield model_check_result(
                context,
                registry,
                model_gates.GATES[spec.name](evaluation, policy.gates, policy.evaluation),
                model_name=model_evaluation["model_name"],
                version=int(model_evaluation["model_version"]),
                artifact_sha256=model_evaluation.get("artifact_sha256"),
                check=spec.key,
            )

    checks = [model_gate_checks]
    return dg.Definitions(assets=[model_evaluation], asset_checks=checks)
