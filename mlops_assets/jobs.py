"""Jobs of one model: what runs for one of its data versions, by what triggered it.

:func:`build_jobs` creates, for a model ``<name>``:

* ``<name>__ingest_job`` — a new data file landed (``<name>__landing_sensor``, reason ``new_data``): validate,
  build features, take labels if the file carries them, monitor (drift, batch scoring with the rollout's
  traffic split, realised performance, A/B test) and let the active rollout take its next step.
* ``<name>__labels_job`` — labels for an already scored version landed (``<name>__labels_sensor``): join them to
  the prediction log, realised performance, A/B test, rollout step.
* ``<name>__retrain_job`` — a retraining trigger fired (drift, stale, performance, schedule, manual, or the
  first labelled version when nothing is in production): train → evaluate → gate → register →
  promote or start a rollout.
* ``<name>__lifecycle_job`` — all of it for one version, in dependency order (CI, backfills, ``dg launch``).

Every job but the lifecycle job is a subset of the same model's asset graph, so the UI shows one lineage.
The tuples below are short asset names; :meth:`MLModel.key` turns them into the model's keys.
"""

from dataclasses import dataclass
from typing import Any, TypeAlias

import dagster as dg

from mlops_assets.model import MLModel
from mlops_assets.registry_view import refresh_on_failure
from mlops_assets.tags import REASON_TAG

#: What ``dg.define_asset_job`` returns (an unresolved asset job; dagster exports no public name for its class).
AssetJob: TypeAlias = Any

#: Pointer assets (unpartitioned): refreshed by every job that can move a model between stages; ``model_registry``
#: is the registry's state and audit trail (a failed step abandons it: the jobs' failure hook then refreshes it).
POINTERS = ("staging_deployment", "production_deployment", "rollout_state", "model_registry")
MONITORING = (
    "labels",
    "drift_report",
    "predictions",
    "performance_estimate",
    "performance_report",
    "ab_test",
    "rollout_step",
)
INGEST = ("raw_data", "features", *MONITORING, *POINTERS)
LABELS = ("labels", "performance_report", "ab_test", "rollout_step", *POINTERS)
RETRAIN = ("candidate_model", "model_evaluation", "deployment_decision", *POINTERS)


@dataclass(frozen=True)
class ModelJobs:
    """The asset jobs of one model (see the module docstring)."""

    lifecycle: AssetJob
    ingest: AssetJob
    labels: AssetJob
    retrain: AssetJob

    @property
    def all(self) -> list[AssetJob]:
        """Every job, for ``dg.Definitions(jobs=...)``."""
        return [self.lifecycle, self.ingest, self.labels, self.retrain]


def _job(model: MLModel, base: str, selection: dg.AssetSelection, description: str, **kwargs: Any) -> AssetJob:
    """The asset job ``<model>__<base>``, tagged ``mlops/model`` (and the model's declared tags) like its runs.

    Every job can change the registry, so each carries the failure hook refreshing ``<model>/model_registry``.
    """
    return dg.define_asset_job(
        name=model.job_name(base),
        selection=selection,
        tags=model.asset_tags(),
        description=description,
        hooks={refresh_on_failure(model)},
        **kwargs,
    )


def build_jobs(model: MLModel) -> ModelJobs:
    """The lifecycle, ingest, labels and retrain jobs of ``model``, named ``<name>__<job>``.

    Each job is tagged ``mlops/model: <name>`` (and the model's declared tags), and so are its runs.
    """
    name = model.name

    def assets(names: tuple[str, ...]) -> dg.AssetSelection:
        return dg.AssetSelection.assets(*(model.key(asset) for asset in names))

    return ModelJobs(
        lifecycle=_job(
            model,
            "lifecycle_job",
            dg.AssetSelection.key_prefixes([name]),
            f"Everything of model {name} for one data version (a partition of {model.partitions_name}): validate "
            "→ features → monitor → train → evaluate → gate → register → promote or roll out. Blocking gates stop "
            "what depends on a failure.",
        ),
        ingest=_job(
            model,
            "ingest_job",
            assets(INGEST),
            f"A new data version of model {name}: validate, features, drift against production's reference, batch "
            "scoring routed by the active rollout, realised performance and the rollout's next step when labels "
            "are in the file.",
        ),
        labels=_job(
            model,
            "labels_job",
            assets(LABELS),
            f"Labels landed for a scored data version of model {name}: join them to the prediction log, realised "
            "performance per model and arm, the A/B test, and the active rollout's next step (advance, or roll "
            "back on a failed guard).",
        ),
        retrain=_job(
            model,
            "retrain_job",
            assets(RETRAIN),
            f"Retrain model {name} on this data version (and the training window before it): train → evaluate → "
            "gates → register → promote (nothing in production) or start a shadow/canary rollout. Tag mlops/reason "
            "says why it ran.",
            # Launched by hand (launchpad, `dg launch`) it is a manual retrain; sensors and schedules set their own
            # reason. run_tags replaces the job's tags on its runs: the model's tags are repeated.
            run_tags={**model.asset_tags(), REASON_TAG: "manual"},
        ),
    )
