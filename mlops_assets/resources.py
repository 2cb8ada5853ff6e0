"""Dagster resources: thin adapters from configuration to the pure core's objects."""

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from mlops_assets.ml.artifacts import LocalArtifactStore
from mlops_assets.ml.registry import ModelRegistry
from mlops_assets.ml.spec import DatasetSpec, load_spec
from mlops_assets.ml.versions import digest_of_key, file_digest, is_landable, safe_stem, stem_of_key


@lru_cache(maxsize=8)
def _load_spec_cached(spec: str, mtime_ns: int) -> DatasetSpec:
    # mtime in the cache key: an edited spec file is picked up without restarting the code server.
    del mtime_ns
    return load_spec(spec)


class DatasetSpecResource(dg.ConfigurableResource):
    """The dataset spec in use: a YAML path, or the name of a packaged spec (``flights``, ``synthetic``)."""

    spec: str = "flights"

    def load(self) -> DatasetSpec:
        path = Path(self.spec)
        mtime = path.stat().st_mtime_ns if path.is_file() else 0
        return _load_spec_cached(self.spec, mtime)


@dataclass(frozen=True)
class LandedFile:
    """A data file in the landing zone, as listed (no content read)."""

    name: str
    size: int
    mtime_ns: int


class LandingZone(dg.ConfigurableResource):
    """The landing folder where new data versions arrive as CSV or Parquet files."""

    directory: str

    @property
    def root(self) -> Path:
        return Path(self.directory)

    def scan(self) -> list[LandedFile]:
        """Landable files in name order; a missing folder is an empty landing zone."""
        if not self.root.is_dir():
            return []
        files = []
        for entry in os.scandir(self.root):
            if entry.is_file() and is_landable(entry.name):
                stat = entry.stat()
                files.append(LandedFile(entry.name, stat.st_size, stat.st_mtime_ns))
        return sorted(files, key=lambda f: f.name)

    def digest(self, name: str) -> str:
        return file_digest(self.root / name)

    def locate(self, version: str) -> Path:
        """The landed file holding exactly the bytes of data version ``version``.

        Raises:
            FileNotFoundError: no file in the landing folder has that name and content (it was
                removed, or changed after it was registered — a changed file is a new version).
        """
        stem, digest = stem_of_key(version), digest_of_key(version)
        candidates = [f for f in self.scan() if safe_stem(f.name) == stem]
        for f in candidates:
            if self.digest(f.name).startswith(digest):
                return self.root / f.name
        seen = ", ".join(f.name for f in candidates) or "no file with that name"
        raise FileNotFoundError(
            f"{self.root}: no landed file holds data version {version!r} (looked at: {seen}); "
            "the file was removed or its bytes changed after landing — a changed file lands as a new version"
        )


class ArtifactStoreResource(dg.ConfigurableResource):
    """Write-once, content-addressed model artifacts (local folder)."""

    root: str
    hmac_key: str | None = None

    def store(self) -> LocalArtifactStore:
        key = self.hmac_key.encode() if self.hmac_key else None
        return LocalArtifactStore(Path(self.root), hmac_key=key)


@lru_cache(maxsize=8)
def _registry(url: str) -> ModelRegistry:
    return ModelRegistry(url)


class ModelRegistryResource(dg.ConfigurableResource):
    """The transactional model registry (SQLite file locally, PostgreSQL in production)."""

    url: str

    def registry(self) -> ModelRegistry:
        return _registry(self.url)


UNPARTITIONED = "__unpartitioned__"


def stored_asset_path(base_dir: str, asset_path: Sequence[str], partition: str | None) -> Path:
    """Where a stored asset value lives, without its suffix (``.parquet`` for frames, ``.json`` otherwise)."""
    return Path(base_dir).joinpath(*asset_path, partition or UNPARTITIONED)


def read_stored_asset(target: Path) -> Any:
    """Read a value written by :class:`FrameIOManager` (``target`` without suffix)."""
    if target.with_suffix(".parquet").exists():
        return pd.read_parquet(target.with_suffix(".parquet"))
    if target.with_suffix(".json").exists():
        return json.loads(target.with_suffix(".json").read_text())
    raise FileNotFoundError(f"{target}: no stored value")


class StoredAssets(dg.ConfigurableResource):
    """Read access to other partitions of stored assets (e.g. earlier data versions for a training window).

    Reads exactly what :class:`FrameIOManager` with the same ``base_dir`` wrote.
    """

    base_dir: str

    def load(self, asset: str, partition: str | None) -> Any:
        return read_stored_asset(stored_asset_path(self.base_dir, [asset], partition))

    def exists(self, asset: str, partition: str | None) -> bool:
        target = stored_asset_path(self.base_dir, [asset], partition)
        return target.with_suffix(".parquet").exists() or target.with_suffix(".json").exists()


class FrameIOManager(dg.ConfigurableIOManager):
    """Stores data frames as Parquet and records (dicts) as JSON, one file per asset partition.

    Every write goes to a temporary file in the target folder and is renamed into place, so a run
    killed mid-write never corrupts the previous value (unlike the default pickle IO manager).
    """

    base_dir: str

    def _path(self, context: dg.InputContext | dg.OutputContext) -> Path:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        return stored_asset_path(self.base_dir, context.asset_key.path, partition)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        target = self._path(context)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(obj, pd.DataFrame):
            final, write = target.with_suffix(".parquet"), lambda p: obj.to_parquet(p, index=False)
        else:
            final = target.with_suffix(".json")

            def write(p: Path) -> None:
                p.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))

        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
        os.close(fd)
        try:
            write(Path(tmp))
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        # A value changes type rarely (e.g. a frame that became a record); never leave both behind.
        for stale in (target.with_suffix(".parquet"), target.with_suffix(".json")):
            if stale != final and stale.exists():
                stale.unlink()

    def load_input(self, context: dg.InputContext) -> Any:
        target = self._path(context)
        try:
            return read_stored_asset(target)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{exc} for asset {context.asset_key.to_user_string()}") from exc
