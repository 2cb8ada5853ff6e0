"""The code location: every asset, check, job and sensor, assembled explicitly.

Resources and the executor come from :func:`mlops_assets.environments.environment`, evaluated when
the definitions load (``@dg.definitions``), never at import.
"""

import dagster as dg

from mlops_assets.assets.data import raw_data, raw_data_checks
from mlops_assets.assets.deployments import (
    deployment_decision,
    production_deployment,
    rollout_state,
    rollout_step,
    staging_deployment,
)
from mlops_assets.assets.evaluations import evaluations_checks, model_evaluation
from mlops_assets.assets.features import feature_profile, features, features_checks
from mlops_assets.assets.models import candidate_model, models_checks
from mlops_assets.assets.monitoring import (
    ab_test,
    drift_report,
    labels,
    monitoring_checks,
    performance_report,
    predictions,
)
from mlops_assets.environments import Environment, environment
from mlops_assets.jobs import JOBS
from mlops_assets.registry_jobs import registry_jobs
from mlops_assets.retrain_sensors import RETRAIN_SENSORS, SCHEDULES
from mlops_assets.sensors import labels_sensor, landing_sensor

ASSETS = [
    raw_data,
    features,
    feature_profile,
    candidate_model,
    model_evaluation,
    deployment_decision,
    staging_deployment,
    production_deployment,
    drift_report,
    predictions,
    labels,
    performance_report,
    ab_test,
    rollout_step,
    rollout_state,
]
CHECKS = [*raw_data_checks, *features_checks, *models_checks, *evaluations_checks, *monitoring_checks]


def build_defs(env: Environment) -> dg.Definitions:
    """All definitions, with the resources and executor of ``env``."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[*JOBS, *registry_jobs],
        sensors=[landing_sensor, labels_sensor, *RETRAIN_SENSORS],
        schedules=SCHEDULES,
        resources=env.resources,
        executor=env.executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_defs(environment())
