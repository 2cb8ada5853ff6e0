"""The one place where environments differ.

``environment()`` is called when the definitions load (never at import) and returns the resources
and the executor for ``MLOPS_ENV``:

* ``local`` (default): the embedded default. SQLite registry, local landing folder, local
  artifacts and asset files, all under one data directory; steps run in the run's own process
  (a laptop has few cores and process start-up would dominate the small steps).
* ``prod``: PostgreSQL registry and S3 storage — not built yet (tracked as its own issue); asking for it
  fails loudly rather than silently falling back to local storage.

Variables (local):
    MLOPS_SPEC: dataset spec, a YAML path or a packaged name (default ``flights``).
    MLOPS_DATA_DIR: data directory (default ``$DAGSTER_HOME/mlops``, else ``./.dagster_home/mlops``).
    MLOPS_ARTIFACT_HMAC_KEY: optional key; artifacts are then HMAC-signed as well as hashed.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_assets.resources import (
    ArtifactStoreResource,
    DatasetSpecResource,
    FrameIOManager,
    LandingZone,
    ModelRegistryResource,
    StoredAssets,
)

ENVIRONMENTS = ("local",)


@dataclass(frozen=True)
class Environment:
    """Everything that differs between environments."""

    name: str
    resources: dict[str, Any]
    executor: dg.ExecutorDefinition


def default_data_dir() -> Path:
    """``$MLOPS_DATA_DIR``, else ``$DAGSTER_HOME/mlops``, else ``./.dagster_home/mlops``."""
    if os.environ.get("MLOPS_DATA_DIR"):
        return Path(os.environ["MLOPS_DATA_DIR"]).resolve()
    home = os.environ.get("DAGSTER_HOME") or ".dagster_home"
    return (Path(home) / "mlops").resolve()


def local_environment(data_dir: Path, spec: str = "flights", hmac_key: str | dg.EnvVar | None = None) -> Environment:
    """The embedded default: everything under ``data_dir``."""
    data_dir = Path(data_dir)
    return Environment(
        name="local",
        resources={
            "dataset": DatasetSpecResource(spec=spec),
            "landing": LandingZone(directory=str(data_dir / "landing")),
            "artifacts": ArtifactStoreResource(root=str(data_dir / "artifacts"), hmac_key=hmac_key),
            "registry": ModelRegistryResource(url=f"sqlite:///{data_dir / 'registry.db'}"),
            "io_manager": FrameIOManager(base_dir=str(data_dir / "assets")),
            "stored_assets": StoredAssets(base_dir=str(data_dir / "assets")),
        },
        executor=dg.in_process_executor,
    )


def environment() -> Environment:
    """The environment named by ``MLOPS_ENV`` (default ``local``), configured from the process environment."""
    name = os.environ.get("MLOPS_ENV", "local")
    if name == "local":
        return local_environment(
            default_data_dir(),
            spec=os.environ.get("MLOPS_SPEC", "flights"),
            # A secret: passed as an EnvVar so its value never appears in run config or the UI.
            hmac_key=dg.EnvVar("MLOPS_ARTIFACT_HMAC_KEY") if os.environ.get("MLOPS_ARTIFACT_HMAC_KEY") else None,
        )
    raise ValueError(f"MLOPS_ENV={name!r} is not a known environment; known: {', '.join(ENVIRONMENTS)}")
