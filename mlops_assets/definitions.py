"""The code location: one graph per model, the shared resources and the executor.

Models are declared as :class:`~mlops_assets.components.MLModelComponent` instances under
``mlops_assets/defs/models/<name>/defs.yaml`` (the packaged ``flights`` and ``synthetic``), loaded with
``dg.load_from_defs_folder``. ``MLOPS_SPEC`` (a spec path or packaged name) instead serves that one spec as the
only model, named after the spec (single-model deployments from before components; see docs/migration.md).
Resources and the executor come from :func:`mlops_assets.environments.environment`, evaluated when the
definitions load (``@dg.definitions``), never at import.
"""

import os
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from mlops_assets import defs as defs_folder
from mlops_assets.environments import Environment, environment
from mlops_assets.model import MLModel
from mlops_assets.model_graph import build_model_defs

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The folder of the component instances (one ``defs.yaml`` per model under ``models/``).
DEFS_FOLDER = Path(defs_folder.__file__).resolve().parent


def build_defs(env: Environment, models: Sequence[MLModel] | None = None) -> dg.Definitions:
    """The code location's definitions with the resources and executor of ``env``.

    Args:
        env: The environment (resources, executor).
        models: The models to serve; ``None``: the component instances under ``mlops_assets/defs/``.
    """
    if models is None:
        # The tree of mlops_assets.defs, as dg.load_from_defs_folder builds it, without needing pyproject.toml
        # next to the package (a wheel installed in an image has none). Built at the defs folder, not at the tree's
        # root: the root also attaches the JSON schema of every installed component library's types (for the UI's
        # editor of app-managed components, which this code location does not offer: its models are files), which
        # imports dagster-aws's components (boto3) and cost 0.95 s of every load — each run worker pays the load.
        tree = dg.ComponentTree(defs_module=defs_folder, project_root=PROJECT_ROOT, code_location_name="mlops_assets")
        graphs = tree.build_defs(DEFS_FOLDER)
    else:
        graphs = dg.Definitions.merge(*(build_model_defs(m) for m in models))
    return dg.Definitions.merge(graphs, dg.Definitions(resources=env.resources, executor=env.executor))


def code_location_defs() -> dg.Definitions:
    """What the code location serves in this process's environment (``MLOPS_ENV``, ``MLOPS_SPEC``, ...)."""
    spec = os.environ.get("MLOPS_SPEC")
    return build_defs(environment(), [MLModel.from_spec(spec)] if spec else None)


@dg.definitions
def defs() -> dg.Definitions:
    return code_location_defs()
