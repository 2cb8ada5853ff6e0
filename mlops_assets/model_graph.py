"""One model's whole graph: every stage's assets and checks, its jobs, sensors and schedules (no resources).

Wiring layer: composes the stage modules' builders for one :class:`~mlops_assets.model.MLModel`. The
component (:mod:`mlops_assets.components`) and the single-spec mode (``MLOPS_SPEC``) both call it.
"""

import dagster as dg

from mlops_assets import jobs, profiling, registry_jobs, retrain_sensors, sensors
from mlops_assets.assets import data, deployments, evaluations, features, models, monitoring, registry
from mlops_assets.model import MLModel

#: The lifecycle stages in dependency order, each a module with ``build(model) -> dg.Definitions`` (the last,
#: ``registry``, is the registry itself as an asset: ``<model>/model_registry``).
STAGES = (data, features, models, evaluations, deployments, monitoring, registry)


def build_model_defs(model: MLModel) -> dg.Definitions:
    """Every definition of ``model``: assets and checks of each stage, its jobs, sensors, schedules, registry jobs."""
    model_jobs = jobs.build_jobs(model)
    return dg.Definitions.merge(
        *(stage.build(model) for stage in STAGES),
        dg.Definitions(jobs=model_jobs.all),
        sensors.build(model, model_jobs),
        retrain_sensors.build(model, model_jobs),
        registry_jobs.build(model),
        profiling.build(model),
    )
