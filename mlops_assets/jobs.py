"""Jobs: the lifecycle of one data version, from the landed file to the deployment pointers."""

import dagster as dg

LIFECYCLE_GROUPS = ("data", "features", "models", "evaluations", "deployments", "monitoring")

lifecycle_job = dg.define_asset_job(
    name="lifecycle_job",
    selection=dg.AssetSelection.groups(*LIFECYCLE_GROUPS),
    description=(
        "Validate → features → train → evaluate → gate → register → promote, for one data version "
        "(a partition of data_versions). Blocking gates stop everything downstream of a failure."
    ),
)
