"""One model in the code location: its name, asset keys, partitions, jobs, locations, owners and tags.

Wiring layer (imports dagster, no stage module). Every stage module builds its assets, checks, jobs and
sensors for one :class:`MLModel` (``build(model)``), so several models live side by side in one code
location: ``flights/raw_data`` and ``synthetic/raw_data``, partitions ``flights__data_versions`` and
``synthetic__data_versions``, jobs ``flights__lifecycle_job`` and so on. The registry, the artifact store,
the IO manager and the Dagster instance are shared; the registry is keyed by the model's name.

A model is declared by one :class:`mlops_assets.components.MLModelComponent` instance
(``defs/models/<name>/defs.yaml``), or, for a single-model deployment, by ``MLOPS_SPEC``.
"""

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from mlops_assets.gates import DATA_ASSETS, MODEL_ASSETS, gate_keys
from mlops_assets.ml.spec import DatasetSpec, SpecError, load_spec, spec_from_dict
from mlops_assets.tags import MODEL_TAG, STAGE_TAG

if TYPE_CHECKING:
    from mlops_assets.resources import LandingZone

#: A model's name is an asset-key part, the prefix of its jobs, sensors and partitions, and its registry key.
MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class ModelConfigError(ValueError):
    """A model declaration is unusable; the message names where it was declared and the rule."""


@lru_cache(maxsize=32)
def _load_spec_file(source: str, mtime_ns: int) -> DatasetSpec:
    # mtime in the key: an edited spec file is picked up by the next run or tick without a code-server restart.
    del mtime_ns
    return load_spec(source)


@dataclass(frozen=True)
class MLModel:
    """One model's identity and configuration, shared by every asset, check, job and sensor built for it.

    Attributes:
        name: The model's name: registry key, asset-key prefix (``<name>/raw_data``), prefix of its jobs,
            sensors, schedules (``<name>__lifecycle_job``) and partitions (``<name>__data_versions``).
            Lower-case letters, digits and ``_``, starting with a letter, no ``__``; at most 48 characters.
        spec_source: The dataset spec: a packaged spec name (``flights``), a YAML path, or the spec itself
            as a mapping (an inline spec). Its ``name`` is replaced by the model's name.
        landing: Where this model's data files land. ``None``: ``<name>/`` under the environment's
            landing root; a relative path: under that root; an absolute path or ``s3://`` URL: as is.
        labels: Where this model's labels files land; same rules under the environment's labels root.
        owners: Dagster owners of its assets (``team:…`` or e-mail addresses).
        tags: Extra tags on its assets and jobs (keys and values are strings).
        declared_in: Where the model was declared (named in errors), e.g. ``defs/models/acme/defs.yaml``.

    Raises:
        ModelConfigError: an invalid name or tag.
    """

    name: str
    spec_source: str | Mapping[str, Any]
    landing: str | None = None
    labels: str | None = None
    owners: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    declared_in: str = "<python>"

    def __post_init__(self) -> None:
        if not MODEL_NAME.match(self.name) or "__" in self.name:
            raise ModelConfigError(
                f"{self.declared_in}: model name {self.name!r} is not valid (rule: lower-case letters, digits and '_', "
                "starting with a letter, no '__', at most 48 characters)"
            )
        for key, value in self.tags.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ModelConfigError(f"{self.declared_in}: tag {key!r}: {value!r} must be a string → string")

    @classmethod
    def from_spec(cls, spec: str, *, name: str | None = None, **kwargs: Any) -> "MLModel":
        """A model declared by a spec alone (``MLOPS_SPEC``, tests): named after the spec unless ``name`` is given."""
        if name is None:
            name = load_spec(spec).name
        return cls(name=name, spec_source=spec, **kwargs)

    # --- names and keys ----------------------------------------------------------------------------------------

    def key(self, asset: str) -> dg.AssetKey:
        """The asset key of one of this model's assets, e.g. ``flights/raw_data``."""
        return dg.AssetKey([self.name, asset])

    def check_key(self, asset: str, check: str) -> dg.AssetCheckKey:
        """The key of the check ``check`` on this model's asset ``asset``."""
        return dg.AssetCheckKey(self.key(asset), check)

    def job_name(self, base: str) -> str:
        """A job, sensor or schedule name of this model: ``<name>__<base>``."""
        return f"{self.name}__{base}"

    @property
    def partitions_name(self) -> str:
        """Name of this model's dynamic partitions (its data versions)."""
        return f"{self.name}__data_versions"

    @property
    def partitions(self) -> dg.DynamicPartitionsDefinition:
        """This model's data versions (added by its landing sensor)."""
        return dg.DynamicPartitionsDefinition(name=self.partitions_name)

    @property
    def data_gates(self) -> list[dg.AssetCheckKey]:
        """Gates judging one data version of this model (blocking checks of raw_data and features)."""
        return gate_keys(self.name, *DATA_ASSETS)

    @property
    def model_gates(self) -> list[dg.AssetCheckKey]:
        """Gates judging one model version (blocking checks of candidate_model and model_evaluation)."""
        return gate_keys(self.name, *MODEL_ASSETS)

    @property
    def required_gates(self) -> list[dg.AssetCheckKey]:
        """Every gate a version must have passed to be promoted, upstream to downstream."""
        return [*self.data_gates, *self.model_gates]

    def asset_tags(self) -> dict[str, str]:
        """Tags on every asset and job of the model: ``mlops/model`` and the declared tags."""
        return {**dict(self.tags), MODEL_TAG: self.name}

    def asset_defaults(self, asset: str, stage: str, *, partitioned: bool = True) -> dict[str, Any]:
        """The ``@dg.asset`` arguments every asset of this model shares, declared once.

        Args:
            asset: The asset's name within the model (``raw_data``, ``features``, …): its key is ``<model>/<asset>``.
            stage: The lifecycle stage it belongs to (``data``, ``features``, ``models``, ``evaluations``,
                ``deployments``, ``monitoring``), recorded as the ``mlops/stage`` tag.
            partitioned: Whether the asset is partitioned by the model's data versions (``False`` for the pointer
                assets: ``staging_deployment``, ``production_deployment``, ``rollout_state``, ``model_registry``).

        Returns:
            ``key``, ``partitions_def`` (the model's data versions, when partitioned), ``group_name`` (the
            model's name), ``owners`` and ``tags`` (:meth:`asset_tags` plus ``mlops/stage``), to be unpacked into
            ``@dg.asset(...)`` beside the asset's own ``kinds``, ``ins`` and ``description``.
        """
        return {
            "key": self.key(asset),
            **({"partitions_def": self.partitions} if partitioned else {}),
            "group_name": self.name,
            "owners": list(self.owners),
            "tags": {**self.asset_tags(), STAGE_TAG: stage},
        }

    # --- configuration -------------------------------------------------------------------------------------------

    def spec(self) -> DatasetSpec:
        """The dataset spec, named after the model (a spec file is re-read when it changes).

        Raises:
            SpecError: the spec is malformed (the message names the file and key).
        """
        if isinstance(self.spec_source, Mapping):
            spec = _inline_spec(self.spec_source, self.declared_in)
        else:
            path = Path(self.spec_source)
            mtime = path.stat().st_mtime_ns if path.is_file() else 0
            spec = _load_spec_file(str(self.spec_source), mtime)
        return spec if spec.name == self.name else dataclasses.replace(spec, name=self.name)

    def landing_zone(self, root: "LandingZone") -> "LandingZone":
        """This model's landing zone, from the environment's landing root (see ``landing``)."""
        return root.at(self.landing if self.landing is not None else self.name)

    def labels_zone(self, root: "LandingZone") -> "LandingZone":
        """This model's labels zone, from the environment's labels root (see ``labels``)."""
        return root.at(self.labels if self.labels is not None else self.name)


def _inline_spec(data: Mapping[str, Any], declared_in: str) -> DatasetSpec:
    try:
        return spec_from_dict(dict(data), source=f"{declared_in} (spec)")
    except SpecError:
        raise
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{declared_in} (spec): {exc}") from exc
