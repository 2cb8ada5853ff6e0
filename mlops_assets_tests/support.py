"""Test helpers shared across tiers: one model's graph built the way the code location builds it."""

from dataclasses import dataclass
from functools import cached_property

import dagster as dg

from mlops_assets.ml.spec import packaged_spec_path
from mlops_assets.model import MLModel
from mlops_assets.model_graph import build_model_defs


@dataclass(frozen=True)
class ModelGraph:
    """One model (``model``) and every definition built for it (``defs``), without resources."""

    model: MLModel

    @cached_property
    def defs(self) -> dg.Definitions:
        return build_model_defs(self.model)

    @property
    def assets(self) -> list:
        """The assets it computes (not ``run_profile``, an ``AssetSpec`` the profile sensors record)."""
        return [a for a in self.defs.assets or [] if isinstance(a, dg.AssetsDefinition)]

    @property
    def checks(self) -> list:
        return list(self.defs.asset_checks or [])

    @property
    def assets_and_checks(self) -> list:
        return [*self.assets, *self.checks]

    def key(self, asset: str) -> dg.AssetKey:
        """``<model>/<asset>``."""
        return self.model.key(asset)

    def keys(self, *assets: str) -> list[dg.AssetKey]:
        return [self.model.key(a) for a in assets]

    @property
    def partitions_name(self) -> str:
        return self.model.partitions_name

    def name(self, base: str) -> str:
        """A job, sensor or schedule name of the model (``<model>__<base>``)."""
        return self.model.job_name(base)

    def job(self, base: str):
        """A job of the model by name, as built (unresolved: resolve it in Definitions with resources)."""
        return _named(self.defs.jobs, self.model.job_name(base))

    def sensor(self, base: str) -> dg.SensorDefinition:
        return _named(self.defs.sensors, self.model.job_name(base))

    def schedule(self, base: str) -> dg.ScheduleDefinition:
        return _named(self.defs.schedules, self.model.job_name(base))


def _named(definitions, name: str):
    found = [d for d in definitions or [] if d.name == name]
    assert found, f"no definition named {name}"
    return found[0]


def model_graph(spec: str = "synthetic", **kwargs) -> ModelGraph:
    """The graph of a model declared by a packaged spec name or a spec path (named after the spec by default)."""
    source = str(packaged_spec_path(spec)) if "/" not in spec and not spec.endswith(".yaml") else spec
    return ModelGraph(MLModel.from_spec(source, **kwargs))
