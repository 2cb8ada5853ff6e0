"""Jobs: what runs for one data version, by what triggered it.

* ``ingest_job`` — a new data file landed (``landing_sensor``, reason ``new_data``): validate, build
  features, take labels if the file carries them, monitor (drift, batch scoring with the rollout's
  traffic split, realised performance, A/B test) and let the active rollout take its next step.
* ``labels_job`` — labels for an already scored version landed (``labels_sensor``): join them to the
  prediction log, realised performance, A/B test, rollout step.
* ``retrain_job`` — a retraining trigger fired (drift, stale, performance, schedule, manual, or the
  first labelled version when nothing is in production): train → evaluate → gate → register →
  promote or start a rollout.
* ``lifecycle_job`` — all of it for one version, in dependency order (CI, backfills, ``dg launch``).

Every job but ``lifecycle_job`` is a subset of the same asset graph, so the UI shows one lineage.
"""

import dagster as dg

LIFECYCLE_GROUPS = ("data", "features", "models", "evaluations", "deployments", "monitoring")

#: Pointer assets (unpartitioned): refreshed by every job that can move a model between stages.
POINTERS = ("staging_deployment", "production_deployment", "rollout_state")
MONITORING = ("labels", "drift_report", "predictions", "performance_report", "ab_test", "rollout_step")
INGEST = ("raw_data", "features", "feature_profile", *MONITORING, *POINTERS)
LABELS = ("labels", "performance_report", "ab_test", "rollout_step", *POINTERS)
RETRAIN = ("candidate_model", "model_evaluation", "deployment_decision", *POINTERS)

lifecycle_job = dg.define_asset_job(
    name="lifecycle_job",
    selection=dg.AssetSelection.groups(*LIFECYCLE_GROUPS),
    description=(
        "Everything for one data version (a partition of data_versions): validate → features → monitor → "
        "train → evaluate → gate → register → promote or roll out. Blocking gates stop what depends on a failure."
    ),
)

ingest_job = dg.define_asset_job(
    name="ingest_job",
    selection=dg.AssetSelection.assets(*INGEST),
    description=(
        "A new data version: validate, features, drift against production's reference, batch scoring routed by "
        "the active rollout, realised performance and the rollout's next step when labels are in the file."
    ),
)

labels_job = dg.define_asset_job(
    name="labels_job",
    selection=dg.AssetSelection.assets(*LABELS),
    description=(
        "Labels landed for a scored data version: join them to the prediction log, realised performance per model "
        "and arm, the A/B test, and the active rollout's next step (advance, or roll back on a failed guard)."
    ),
)

retrain_job = dg.define_asset_job(
    name="retrain_job",
    selection=dg.AssetSelection.assets(*RETRAIN),
    # Launched by hand (launchpad, `dg launch`) it is a manual retrain; sensors and schedules set their own reason.
    run_tags={"mlops/reason": "manual"},
    description=(
        "Retrain on this data version (and the training window before it): train → evaluate → gates → register → "
        "promote (nothing in production) or start a shadow/canary rollout. Tag mlops/reason says why it ran."
    ),
)

JOBS = [lifecycle_job, ingest_job, labels_job, retrain_job]
