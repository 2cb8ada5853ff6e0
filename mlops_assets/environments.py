"""The one place where environments differ.

``environment()`` is called when the definitions load (never at import) and returns the resources
and the executor for ``MLOPS_ENV``:

* ``local`` (default): the embedded default. SQLite registry, local landing folder, local
  artifacts and asset files, all under one data directory; steps run in the run's own process
  (a laptop has few cores and process start-up would dominate the small steps).
* ``prod``: the registry on PostgreSQL; landing zones, asset values and model artifacts in one S3
  bucket (any S3-compatible endpoint) through dagster-aws's ``S3Resource`` (the S3 resources of
  :mod:`mlops_assets.s3_resources`, imported only by :func:`prod_environment`). Every run is its own
  process (its own pod with the Helm chart's ``K8sRunLauncher``); inside it steps run in-process by
  default, because a step process costs 5–8 s of imports here against steps of a few seconds
  (measured: docs/deployment.md); ``MLOPS_EXECUTOR=multiprocess`` isolates each step in its own
  process, forked from a forkserver that preloaded the code location where the platform has one
  (:func:`multiprocess_executor_config`). A missing required variable fails loudly when the definitions
  load, never falls back to local storage.

Variables (both):
    MLOPS_ENV: ``local`` (default) or ``prod``.
    MLOPS_SPEC: optional; serve this one spec (a YAML path or a packaged name) as the only model, instead of
        the models declared under ``mlops_assets/defs/models/`` (see docs/migration.md).
    MLOPS_ARTIFACT_HMAC_KEY: optional secret; artifacts are then HMAC-signed as well as hashed.
    MLOPS_DEAD_RUN_INTERVAL_S: optional; seconds between two looks of each model's dead-run sensor (default 30):
        a run whose worker process died unseen is marked failed on the second look (:func:`dead_run_interval_s`).

Variables (local):
    MLOPS_DATA_DIR: data directory (default ``$DAGSTER_HOME/mlops``, else ``./.dagster_home/mlops``).

Variables (prod; see .env.example):
    MLOPS_REGISTRY_URL: SQLAlchemy URL of the registry database (``postgresql+psycopg2://user@host:5432/db``),
        a secret when it holds the password (which must then be percent-encoded; an un-encoded ``@`` is refused
        when the definitions load, without echoing the URL).
    MLOPS_REGISTRY_PASSWORD: optional; the registry password as is (any characters), set on the URL as a part.
    MLOPS_S3_BUCKET: bucket; MLOPS_S3_PREFIX: optional key prefix inside it.
    MLOPS_S3_ENDPOINT_URL: optional endpoint of an S3-compatible store (MinIO, moto); unset for AWS.
    MLOPS_S3_REGION: optional region (else boto3's usual AWS_REGION / AWS_DEFAULT_REGION / config).
    MLOPS_EXECUTOR: ``in_process`` (default) or ``multiprocess`` (one process per step).
    MLOPS_MAX_CONCURRENT_STEPS: with ``multiprocess``, the cap on step processes per run (default: CPU count).
    Credentials are never configuration: boto3 reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
    AWS_SESSION_TOKEN, a profile, or the pod's / instance's role from the environment itself.
"""

import multiprocessing
import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_assets.resources import (
    ArtifactStoreResource,
    FrameIOManager,
    LandingZone,
    ModelRegistryResource,
    RegistryURLError,
)
from mlops_assets.resources import registry_url as build_registry_url

ENVIRONMENTS = ("local", "prod")

#: Variables the prod environment cannot do without.
PROD_REQUIRED = ("MLOPS_REGISTRY_URL", "MLOPS_S3_BUCKET")

#: What the forkserver of prod's multiprocess executor imports once per run, before it forks the step processes:
#: the code location (dagster, pandas, scikit-learn, scipy, pandera, SQLAlchemy and this package), the S3 resources
#: (dagster-aws, boto3) and the model codec, which the steps that store, verify or load a model import on use. A
#: module that fails to import is skipped silently by the forkserver (a test checks each one exists).
STEP_PRELOAD_MODULES = ("mlops_assets.definitions", "mlops_assets.s3_resources", "skops.io")


#: Seconds between two looks of a model's dead-run sensor unless ``MLOPS_DEAD_RUN_INTERVAL_S`` sets it.
DEFAULT_DEAD_RUN_INTERVAL_S = 30


def dead_run_interval_s() -> int:
    """How often each model's dead-run sensor looks for runs whose worker process is gone, in seconds.

    ``MLOPS_DEAD_RUN_INTERVAL_S`` (a whole number of seconds, at least 1), else
    :data:`DEFAULT_DEAD_RUN_INTERVAL_S`. A run is marked failed on the second look that finds its worker gone, so
    it is failed (and retried) within about two intervals of its worker's death; the sensor daemon looks at most
    every 5 s whatever the value.

    Raises:
        ValueError: the variable is set to anything else (naming the variable and the value).
    """
    text = os.environ.get("MLOPS_DEAD_RUN_INTERVAL_S", "").strip()
    if not text:
        return DEFAULT_DEAD_RUN_INTERVAL_S
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValueError(f"MLOPS_DEAD_RUN_INTERVAL_S={text!r}: expected a whole number of seconds, at least 1")
    return int(text)


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


def local_environment(data_dir: Path, hmac_key: str | dg.EnvVar | None = None) -> Environment:
    """The embedded default: everything under ``data_dir``.

    Each model lands in ``<data_dir>/landing/<model>/`` and ``<data_dir>/labels/<model>/`` unless its
    declaration says otherwise; asset values live under ``<data_dir>/assets/<model>/<asset>/``; ``mlops-serve``
    puts each closed prediction-log segment in ``<data_dir>/serving/<model>/``.
    """
    data_dir = Path(data_dir)
    return Environment(
        name="local",
        resources={
            "landing": LandingZone(directory=str(data_dir / "landing")),
            "labels_landing": LandingZone(directory=str(data_dir / "labels")),
            "serving_log": LandingZone(directory=str(data_dir / "serving")),
            "artifacts": ArtifactStoreResource(root=str(data_dir / "artifacts"), hmac_key=hmac_key),
            "registry": ModelRegistryResource(url=f"sqlite:///{data_dir / 'registry.db'}"),
            "io_manager": FrameIOManager(base_dir=str(data_dir / "assets")),
        },
        executor=dg.in_process_executor,
    )


def _optional_env(name: str) -> dg.EnvVar | None:
    # An EnvVar is resolved when a run or tick starts, so its value never appears in run config, the UI or
    # the event log; it is passed only when set because an unset EnvVar is an error at resolution time.
    return dg.EnvVar(name) if os.environ.get(name) else None


def prod_environment(
    bucket: str,
    registry_url: str | dg.EnvVar,
    *,
    prefix: str = "",
    endpoint_url: str | dg.EnvVar | None = None,
    region_name: str | dg.EnvVar | None = None,
    hmac_key: str | dg.EnvVar | None = None,
    executor: str = "in_process",
    max_concurrent_steps: int | None = None,
    registry_password: str | dg.EnvVar | None = None,
) -> Environment:
    """Production: registry on PostgreSQL, everything else in one S3 bucket under ``prefix``.

    Keys: ``<prefix>landing/<model>/`` (data versions), ``<prefix>labels/<model>/`` (labels),
    ``<prefix>serving/<model>/`` (closed prediction-log segments of ``mlops-serve``), ``<prefix>assets/``
    (asset values, Parquet/JSON), ``<prefix>artifacts/`` (models and drift references, write-once, verified).

    Args:
        bucket: The bucket (where things are, not a secret: a plain value, shown in the UI).
        registry_url: SQLAlchemy URL of the registry; may hold a password, so pass an ``EnvVar``.
        prefix: Key prefix inside the bucket, e.g. ``"mlops/"``.
        endpoint_url: S3-compatible endpoint (MinIO, moto); ``None`` for AWS.
        region_name: Region; ``None`` lets boto3 find it.
        hmac_key: Secret for artifact HMACs (an ``EnvVar``).
        executor: ``in_process`` or ``multiprocess`` (configured by :func:`multiprocess_executor_config`).
        max_concurrent_steps: With ``multiprocess``, step processes per run; ``None`` for the CPU count.
        registry_password: The registry password as is (an ``EnvVar``), set on ``registry_url`` as a part.
    """
    # Only prod needs dagster-aws (boto3): imported here, so the local code location and its runs never pay for it.
    from dagster_aws.s3 import S3Resource

    from mlops_assets.s3_resources import S3ArtifactStoreResource, S3FrameIOManager, S3LandingZone

    parse_bucket_name(bucket)
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    # No credentials here: boto3 takes them from the process environment or the pod's/instance's role.
    s3 = S3Resource(endpoint_url=endpoint_url, region_name=region_name)

    def url(part: str) -> str:
        return f"s3://{bucket}/{prefix}{part}"

    executors = {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor}
    if executor not in executors:
        raise ValueError(f"MLOPS_EXECUTOR={executor!r}: expected one of {', '.join(executors)}")
    chosen = executors[executor]
    if executor == "multiprocess" and (config := multiprocess_executor_config(max_concurrent_steps)):
        chosen = dg.multiprocess_executor.configured(config)
    return Environment(
        name="prod",
        resources={
            "landing": S3LandingZone(directory=url("landing/"), s3=s3),
            "labels_landing": S3LandingZone(directory=url("labels/"), s3=s3),
            "serving_log": S3LandingZone(directory=url("serving/"), s3=s3),
            "artifacts": S3ArtifactStoreResource(root=url("artifacts"), hmac_key=hmac_key, s3=s3),
            "registry": ModelRegistryResource(url=registry_url, password=registry_password),
            "io_manager": S3FrameIOManager(base_dir=url("assets"), s3=s3),
        },
        executor=chosen,
    )


def multiprocess_executor_config(
    max_concurrent_steps: int | None, start_methods: Sequence[str] | None = None
) -> dict[str, Any]:
    """The config of Dagster's multiprocess executor in prod (``MLOPS_EXECUTOR=multiprocess``).

    Where the platform has a forkserver (Linux, macOS), step processes are forked from one that imported
    :data:`STEP_PRELOAD_MODULES` once per run, instead of each being a fresh interpreter (``spawn``) that imports
    the whole code location again (Dagster 1.13's ``start_method: {forkserver: {preload_modules: [...]}}``; Python's
    ``multiprocessing`` forkserver, whose children share the preloaded modules). Without one (Windows), Dagster's
    default, ``spawn``. Measured: docs/benchmarks/imports.md.

    Args:
        max_concurrent_steps: Step processes per run; ``None`` or 0 for Dagster's default (the CPU count).
        start_methods: The platform's start methods; ``None`` for ``multiprocessing.get_all_start_methods()``.

    Returns:
        The executor config (``{}``: Dagster's defaults), e.g. ``{"max_concurrent": 4, "start_method":
        {"forkserver": {"preload_modules": [...]}}}``.
    """
    methods = multiprocessing.get_all_start_methods() if start_methods is None else start_methods
    config: dict[str, Any] = {}
    if max_concurrent_steps:
        config["max_concurrent"] = max_concurrent_steps
    if "forkserver" in methods:
        config["start_method"] = {"forkserver": {"preload_modules": list(STEP_PRELOAD_MODULES)}}
    return config


def parse_bucket_name(bucket: str) -> str:
    """``bucket`` if it is a plausible S3 bucket name (3–63 chars of ``a-z0-9.-``), else ValueError."""
    if not (3 <= len(bucket) <= 63) or not all(c.islower() or c.isdigit() or c in ".-" for c in bucket):
        raise ValueError(f"MLOPS_S3_BUCKET={bucket!r} is not a valid bucket name")
    return bucket


def environment() -> Environment:
    """The environment named by ``MLOPS_ENV`` (default ``local``), configured from the process environment."""
    name = os.environ.get("MLOPS_ENV", "local")
    if name == "local":
        return local_environment(
            default_data_dir(),
            # A secret: passed as an EnvVar so its value never appears in run config or the UI.
            hmac_key=_optional_env("MLOPS_ARTIFACT_HMAC_KEY"),
        )
    if name == "prod":
        missing = [v for v in PROD_REQUIRED if not os.environ.get(v)]
        if missing:
            raise ValueError(f"MLOPS_ENV=prod needs {', '.join(missing)} (see .env.example); refusing to start")
        steps = os.environ.get("MLOPS_MAX_CONCURRENT_STEPS")
        try:  # fail here, naming the variable, rather than leak a password fragment from a connection error
            build_registry_url(os.environ["MLOPS_REGISTRY_URL"])
        except RegistryURLError as exc:
            raise ValueError(f"MLOPS_ENV=prod: {exc}; refusing to start") from None
        return prod_environment(
            parse_bucket_name(os.environ["MLOPS_S3_BUCKET"]),
            dg.EnvVar("MLOPS_REGISTRY_URL"),  # may carry a password
            prefix=os.environ.get("MLOPS_S3_PREFIX", ""),
            endpoint_url=_optional_env("MLOPS_S3_ENDPOINT_URL"),
            region_name=_optional_env("MLOPS_S3_REGION"),
            hmac_key=_optional_env("MLOPS_ARTIFACT_HMAC_KEY"),
            executor=os.environ.get("MLOPS_EXECUTOR", "in_process"),
            max_concurrent_steps=int(steps) if steps else None,
            registry_password=_optional_env("MLOPS_REGISTRY_PASSWORD"),
        )
    raise ValueError(f"MLOPS_ENV={name!r} is not a known environment; known: {', '.join(ENVIRONMENTS)}")


@dataclass(frozen=True)
class ServingStores:
    """What ``mlops-serve`` reads and writes, opened outside Dagster from the same environment as the code location.

    Attributes:
        environment: ``local`` or ``prod``.
        registry: The model registry.
        artifacts: The artifact store (verifies digest and HMAC on every read).
        serving_log: The root of the closed prediction-log segments; ``serving_log.at(<model>)`` is one model's.

    :meth:`close` releases them (the registry's pooled connections).
    """

    environment: str
    registry: Any
    artifacts: Any
    serving_log: LandingZone
    _exit: ExitStack

    def close(self) -> None:
        """Tear the resources down as Dagster would after a run."""
        self._exit.close()


def serving_stores(env: Environment | None = None) -> ServingStores:
    """The registry, artifact store and segment zone of :func:`environment` (or ``env``), resolved and opened.

    Resources are resolved as Dagster resolves them for a run (``EnvVar`` values read now, from this process's
    environment), so the server sees exactly what the code location's runs see.

    Raises:
        ValueError: as :func:`environment` (a missing prod variable, an unknown ``MLOPS_ENV``).
    """
    env = env or environment()
    resources = env.resources
    stack = ExitStack()
    try:
        opened = {
            key: stack.enter_context(resources[key].process_config_and_initialize_cm())
            for key in ("registry", "artifacts", "serving_log")
        }
    except BaseException:
        stack.close()
        raise
    return ServingStores(
        environment=env.name,
        registry=opened["registry"],
        artifacts=opened["artifacts"],
        serving_log=opened["serving_log"],
        _exit=stack,
    )
