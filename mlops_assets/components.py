"""``MLModelComponent``: one model's whole lifecycle graph, declared in YAML (``defs/models/<name>/defs.yaml``).

Wiring layer. ``dg list components`` lists it (the project's ``registry_modules``), the UI's Docs tab
shows its schema, and ``dg scaffold defs mlops_assets.components.MLModelComponent models/<name>`` creates a
new model's folder. Each instance builds, for its model only, every asset (keys ``<name>/…``), check, job
(``<name>__lifecycle_job`` …), sensor and schedule on its own partitions (``<name>__data_versions``); the
registry, artifact store, IO manager and instance are shared (the code location's resources).

Example ``defs.yaml``::

    type: mlops_assets.components.MLModelComponent
    attributes:
      spec: spec.yaml              # next to this file; or a packaged spec name (flights, synthetic); or inline
      owners: ["team:ml-platform"]
      tags: {domain: churn}
      # landing: acme/            # default: <name>/ under the environment's landing root
      # environments:
      #   prod: {landing: "s3://other-bucket/acme/landing/"}
"""

import os
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from pydantic import BaseModel, Field

from mlops_assets.ml.spec import SpecError
from mlops_assets.model import MLModel, ModelConfigError


class LocationOverride(dg.Model):
    """Where one environment (``MLOPS_ENV``) finds this model's files, when not the default."""

    landing: str | None = None
    labels: str | None = None


class MLModelScaffoldParams(BaseModel):
    """``dg scaffold defs … --json-params '{"spec": "path/to/spec.yaml"}'``: copy that spec into the new folder."""

    spec: str | None = None


SPEC_FILE = "spec.yaml"


class MLModelScaffolder(dg.Scaffolder[MLModelScaffoldParams]):
    """Writes ``defs.yaml`` (named after the folder) and, when given, the model's dataset spec as ``spec.yaml``."""

    @classmethod
    def get_scaffold_params(cls) -> type[MLModelScaffoldParams]:
        return MLModelScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[MLModelScaffoldParams]) -> None:
        target = Path(request.target_path)
        target.mkdir(parents=True, exist_ok=True)
        source = request.params.spec if request.params else None
        if source:
            text = Path(source).read_text()
            (target / SPEC_FILE).write_text(text)
        spec_note = (
            f"# Its dataset spec: {SPEC_FILE}, copied from {source}.\n"
            if source
            else f"# Write its dataset spec to {SPEC_FILE} next to this file (see docs/dataset-spec.md).\n"
        )
        (target / "defs.yaml").write_text(
            f"# The {target.name!r} model: its whole lifecycle (assets {target.name}/…, jobs {target.name}__…).\n"
            + spec_note
            + f"# Check with `dg check defs`; its data files land in <landing root>/{target.name}/.\n"
            + yaml.safe_dump(
                {
                    "type": request.type_name,
                    "attributes": {"name": target.name, "spec": SPEC_FILE, "owners": [], "tags": {}},
                },
                sort_keys=False,
            )
        )


@dg.scaffold_with(MLModelScaffolder)
class MLModelComponent(dg.Component, dg.Resolvable, dg.Model):
    """One tabular classification model's lifecycle: data versions → features → model → gates → registry →
    rollout → monitoring → retraining, as Dagster assets, checks, jobs, sensors and schedules.

    Attributes:
        name: The model's name (registry key, asset-key prefix, job/sensor prefix). Default: the folder name.
        spec: The dataset spec: a YAML file relative to this folder, a packaged spec name (``flights``,
            ``synthetic``), or the spec itself as a mapping. Its ``name`` is replaced by the model's name.
        landing: Where data files land: relative to the environment's landing root (default ``<name>/``), or an
            absolute path (local) / ``s3://`` URL (prod).
        labels: Where labels files land, same rules under the labels root.
        owners: Owners of every asset (``team:…`` or e-mail addresses), shown in the UI.
        tags: Tags on every asset and job (strings).
        environments: Per ``MLOPS_ENV`` (``local``, ``prod``): ``landing`` / ``labels`` overriding the above.
    """

    name: str | None = None
    spec: str | dict[str, Any]
    landing: str | None = None
    labels: str | None = None
    owners: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    environments: dict[str, LocationOverride] = Field(default_factory=dict)

    def declared_model(self, folder: Path) -> MLModel:
        """The :class:`MLModel` this declaration describes, its spec loaded and validated.

        Raises:
            ModelConfigError, SpecError: naming ``<folder>/defs.yaml`` and the rule.
        """
        declared_in = str(folder / "defs.yaml")
        override = self.environments.get(os.environ.get("MLOPS_ENV", "local"), LocationOverride())
        spec: str | dict[str, Any] = self.spec
        if isinstance(spec, str) and (spec.endswith((".yaml", ".yml")) or "/" in spec):
            path = Path(spec) if Path(spec).is_absolute() else folder / spec
            if not path.is_file():
                raise ModelConfigError(
                    f"{declared_in}: spec file {spec!r} not found (looked at {path}); write the model's dataset spec "
                    "there (docs/dataset-spec.md) or name a packaged spec (flights, synthetic)"
                )
            spec = str(path)
        model = MLModel(
            name=self.name or folder.name,
            spec_source=spec,
            landing=override.landing or self.landing,
            labels=override.labels or self.labels,
            owners=tuple(self.owners),
            tags=dict(self.tags),
            declared_in=declared_in,
        )
        try:
            model.spec()  # fail the code location's load here, naming the file and key, not in a run
        except (SpecError, FileNotFoundError) as exc:
            message = str(exc)
            raise ModelConfigError(message if message.startswith(declared_in) else f"{declared_in}: {message}") from exc
        return model

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from mlops_assets.model_graph import build_model_defs  # the graph imports every stage: only when built

        return build_model_defs(self.declared_model(Path(context.path)))


def declared_models() -> list[MLModel]:
    """The models this code location serves, without building any Dagster definitions (for ``mlops-serve``).

    ``MLOPS_SPEC`` set: that one spec's model (:meth:`MLModel.from_spec`, as :mod:`mlops_assets.definitions`).
    Otherwise every ``mlops_assets/defs/models/<folder>/defs.yaml`` of type :class:`MLModelComponent`, in folder
    name order: its ``attributes`` validated by the component's pydantic model and turned into the model by
    :meth:`MLModelComponent.declared_model` (plain YAML, no templating, no Dagster component tree).

    Returns:
        The declared models, each with its spec loaded and validated.

    Raises:
        ModelConfigError, SpecError: a declaration or its spec is malformed (naming the file).
        pydantic.ValidationError: a ``defs.yaml`` has attributes the component does not accept.
    """
    spec = os.environ.get("MLOPS_SPEC")
    if spec:
        return [MLModel.from_spec(spec)]
    from mlops_assets import defs as defs_folder

    models_root = Path(defs_folder.__file__).resolve().parent / "models"
    component_type = f"{MLModelComponent.__module__}.{MLModelComponent.__name__}"
    models = []
    for declaration in sorted(models_root.glob("*/defs.yaml")):
        document = yaml.safe_load(declaration.read_text()) or {}
        if document.get("type") != component_type:
            continue
        component = MLModelComponent(**(document.get("attributes") or {}))
        models.append(component.declared_model(declaration.parent))
    return models
