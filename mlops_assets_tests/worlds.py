"""Lifecycle worlds for end-to-end tests: a data folder, a persistent Dagster instance and the synthetic model.

A :class:`World` lands synthetic data versions into its model's landing folder and materializes the model's whole
graph for them with ``dg.materialize``, as the lifecycle job would. ``conftest.py`` builds one world per test
session in which the first data version went through every gate into Production (:func:`build_promoted_world`:
training with the tuned search is the suite's most expensive step), and gives each test that starts from there its
own copy of it: the registry file, the stored asset values, the artifacts and the Dagster instance's storage are all
under the world's folder, the resources are configured from the copy's folder, and the local artifact store
resolves a registered reference by its digest under its own root — so a copy never touches the original.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from mlops_assets.demo_data import synthetic
from mlops_assets.environments import Environment, local_environment
from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets.storage.files import write_frame_atomic
from mlops_assets.storage.registry import ModelRegistry
from mlops_assets_tests.support import ModelGraph, model_graph

#: Rows per synthetic data version in lifecycle tests: enough for every gate to measure (holdout 500 rows).
ROWS = 2500
#: The packaged synthetic model's graph: keys ``synthetic/<asset>``, partitions ``synthetic__data_versions``.
SYNTHETIC = model_graph("synthetic")
#: Name of the first data version's file in a promoted world.
FIRST_FILE = "synthetic_v001.csv"


@dataclass
class World:
    """One model's data folder and Dagster instance.

    Attributes:
        root: The world's folder: ``data/`` (landing, assets, artifacts, registry.db) and ``instance/``.
        instance: A Dagster instance whose storage lives in ``root/instance``.
        graph: The model's graph (the packaged synthetic model unless told otherwise).
    """

    root: Path
    instance: dg.DagsterInstance
    graph: ModelGraph = SYNTHETIC

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def env(self) -> Environment:
        return local_environment(self.data)

    @property
    def landing(self) -> Path:
        path = self.data / "landing" / self.graph.model.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def registry(self) -> ModelRegistry:
        """The registry the world's environment configures (close it when done: ``registry.close()``)."""
        return self.env.resources["registry"].open()

    def land(self, name: str, seed: int = 1, start_id: int = 0, rows: int = ROWS, **defects: object) -> str:
        """Write ``rows`` synthetic rows (``synthetic.generate`` with ``defects``) as CSV file ``name`` into the
        landing folder, add its data version to the model's partitions and return the version's key."""
        frame = synthetic.generate(rows, seed=seed, start_id=start_id, **defects)
        path = write_frame_atomic(frame, self.landing / name, fmt="csv")
        key = version_key(path.name, file_digest(path))
        self.instance.add_dynamic_partitions(self.graph.partitions_name, [key])
        return key

    def run(self, key: str, selection: object = None) -> dg.ExecuteInProcessResult:
        """Materialize the model's assets and checks (or ``selection``) for data version ``key``; never raises."""
        return dg.materialize(
            self.graph.assets_and_checks,
            partition_key=key,
            instance=self.instance,
            resources=self.env.resources,
            selection=selection,  # type: ignore[arg-type]
            raise_on_error=False,
        )


@contextmanager
def open_world(root: Path, graph: ModelGraph = SYNTHETIC) -> Iterator[World]:
    """A world in ``root`` (created, or the one already there), its instance disposed on exit."""
    (root / "instance").mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.local_temp(tempdir=str(root / "instance"))
    try:
        yield World(root=root, instance=instance, graph=graph)
    finally:
        instance.dispose()


def build_promoted_world(root: Path) -> str:
    """Build in ``root`` the world where the first synthetic version (:data:`FIRST_FILE`, seed 1) passed every gate
    and went to Production; return its data version key.

    Raises:
        AssertionError: the run failed or nothing was promoted (every test built on the world would be wrong).
    """
    with open_world(root) as world:
        key = world.land(FIRST_FILE, seed=1)
        result = world.run(key)
        failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
        assert result.success and not failed, f"the promoted world's first run failed: {failed}"
        registry = world.registry()
        try:
            production = registry.production_version(SYNTHETIC.model.name)
            assert production is not None and production.data_versions == (key,), production
        finally:
            registry.engine.dispose()
    return key
