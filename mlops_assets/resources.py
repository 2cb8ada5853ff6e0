"""Dagster resources: thin adapters from configuration to the pure core's objects.

Each storage resource has a local form (a folder, here) and an S3 form (``S3…`` subclass in
:mod:`mlops_assets.s3_resources`, same interface, its location an ``s3://bucket/prefix`` URL, its client from
dagster-aws's ``S3Resource``), so assets and sensors that annotate the base class work unchanged in either
environment. This module does not import dagster-aws: only the prod environment pays for it.

The registry and artifact resources are factories (``create_resource``): assets, checks, sensors, schedules and
ops receive the object itself by annotating ``registry: dg.ResourceParam[ModelRegistry]`` /
``artifacts: dg.ResourceParam[ArtifactStore]``. A registry is opened per run (per step process with the
multiprocess executor) or sensor tick and closed by the resource's teardown. The IO manager owns the asset
layout and is the one reader of stored values: ``load_input`` and code that reads other partitions
(``io_manager: dg.ResourceParam[FrameIOManager]``, :meth:`FrameIOManager.load_value`) go the same way.
"""

import io
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from pydantic import PrivateAttr

from mlops_assets import faults
from mlops_assets.ml import json_codec
from mlops_assets.ml.versions import digest_of_key, file_digest, is_landable, safe_stem, stem_of_key
from mlops_assets.storage.artifacts.store import ArtifactStore, LocalArtifactStore
from mlops_assets.storage.files import remove_stale_temps, temp_file_for
from mlops_assets.storage.registry import ModelRegistry


@dataclass(frozen=True)
class LandedFile:
    """A data file in the landing zone, as listed (no content read).

    Attributes:
        name: File name (object key relative to the landing prefix on S3).
        size: Size in bytes.
        mtime_ns: Modification time in ns (S3: ``LastModified``, which has one-second resolution).
        etag: S3 only: the object's ETag, which changes whenever its bytes do (even within the same
            second and size); ``""`` for local files.
    """

    name: str
    size: int
    mtime_ns: int
    etag: str = ""


class LandingZone(dg.ConfigurableResource):
    """The landing folder where new data versions arrive as CSV or Parquet files."""

    directory: str

    @property
    def root(self) -> Path:
        return Path(self.directory)

    def at(self, location: str) -> "LandingZone":
        """The zone at ``location``: a relative path below this one (one model's folder), an absolute path as is.

        Raises:
            ValueError: an ``s3://`` location for a local zone, or a relative one that leaves this zone.
        """
        if location.startswith("s3://"):
            raise ValueError(f"{location}: an S3 location needs the prod environment (MLOPS_ENV=prod)")
        if Path(location).is_absolute():
            return LandingZone(directory=location)
        return LandingZone(directory=str(self.root / _relative(location)))

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

    def uri(self, name: str) -> str:
        """Where the landed file ``name`` lives, for metadata and messages (a path here, ``s3://…`` on S3)."""
        return str(self.root / name)

    @contextmanager
    def fetch(self, name: str) -> Iterator[Path]:
        """A local, readable path to the landed file ``name`` for the duration of the block."""
        path = self.root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not in the landing folder")
        yield path

    def put(self, name: str, source: Path) -> str:
        """Place the local file ``source`` in this zone as ``name``, atomically (readers never see a part of it).

        Local: copied to a temporary name in the folder, fsynced, then renamed (``os.replace``); S3: one upload.
        An existing file of that name is replaced.

        Returns:
            The new file's URI (:meth:`uri`).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / name
        fd, tmp = temp_file_for(target)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return self.uri(name)

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


def _relative(location: str) -> str:
    """``location`` as a clean relative key path (``a/b``); ``..`` and empty parts are refused."""
    parts = [p for p in location.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"{location!r}: a landing location must be a relative path inside the landing root")
    return "/".join(parts)


#: How a secret field is shown in a resource's repr/str (the field's presence, never its value).
HIDDEN = "***"


def _hidden(value: Any) -> Any:
    """A secret field for repr: ``***`` once resolved; an unresolved ``EnvVar`` (a variable's name) as is."""
    return value if not value or isinstance(value, dg.EnvVar) else HIDDEN


class ArtifactStoreResource(dg.ConfigurableResource):
    """Write-once, content-addressed model artifacts (local folder).

    ``repr``/``str`` show ``hmac_key`` as ``***`` (the resolved value of an ``EnvVar`` is a secret).
    """

    root: str
    hmac_key: str | None = None

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (_hidden(value) if name == "hmac_key" else value)

    def open(self) -> ArtifactStore:
        """The artifact store this resource configures (for code outside Dagster; nothing to close)."""
        key = self.hmac_key.encode() if self.hmac_key else None
        return LocalArtifactStore(Path(self.root), hmac_key=key)

    def create_resource(self, context: dg.InitResourceContext) -> ArtifactStore:  # type: ignore[override]
        """What ``artifacts: dg.ResourceParam[ArtifactStore]`` receives: :meth:`open`."""
        return self.open()


class RegistryURLError(ValueError):
    """The registry URL cannot be used safely; the message never contains any part of the password."""


def registry_url(url: str, password: str | None = None) -> sa.URL:
    """The registry's SQLAlchemy URL from ``url`` and, when given, a separate raw ``password``.

    The password is set as a part (``URL.set(password=...)``: SQLAlchemy escapes it when a driver needs a
    string), so it may contain any character — ``@ : / % # ?`` included. A password inside ``url`` must be
    percent-encoded (``urllib.parse.quote(password, safe="")``).

    Raises:
        RegistryURLError: ``url`` does not parse, or its host contains ``@`` — the sign of an un-encoded ``@``
            in the password, which would put the rest of the password into connection errors (step failure
            events, logs) as a "host name". The message names the variables, never the URL.
    """
    try:
        parsed = sa.make_url(url)
    except Exception:  # ArgumentError / ValueError: the message may quote the string; say nothing of it
        raise RegistryURLError(
            "the registry URL (MLOPS_REGISTRY_URL) is not a SQLAlchemy URL "
            "(expected postgresql+psycopg2://user@host:5432/database or sqlite:///path/registry.db)"
        ) from None
    if "@" in (parsed.host or ""):
        raise RegistryURLError(
            f"the registry URL (MLOPS_REGISTRY_URL, {parsed.drivername}) has an un-encoded '@' in its password: "
            "percent-encode the password in the URL (urllib.parse.quote(password, safe='')), or leave it out of "
            "the URL and set MLOPS_REGISTRY_PASSWORD"
        )
    return parsed.set(password=password) if password else parsed


def redacted_url(url: str) -> str:
    """``url`` for messages: password replaced by ``***``; an unparseable or ambiguous URL shows only its scheme."""
    try:
        return registry_url(url).render_as_string(hide_password=True)
    except RegistryURLError:
        return f"{url.split('://', 1)[0][:40]}://{HIDDEN}" if "://" in url else HIDDEN


class ModelRegistryResource(dg.ConfigurableResource):
    """The transactional model registry (SQLite file locally, PostgreSQL in production).

    Attributes:
        url: SQLAlchemy URL (``sqlite:///path/registry.db``, ``postgresql+psycopg2://user@host:5432/db``); a
            password in it must be percent-encoded. Pass an ``EnvVar`` when it holds one.
        password: The database password as is (any characters), set on the URL as a part (``EnvVar``
            ``MLOPS_REGISTRY_PASSWORD`` in prod); overrides a password in ``url``.

    ``repr``/``str`` show the URL with its password hidden and ``password`` as ``***``.

    In Dagster, ``registry: dg.ResourceParam[ModelRegistry]`` receives a registry opened for the run (or the
    sensor tick) and closed (its engine disposed) when the run's resources are torn down. Outside Dagster,
    ``with resource.open() as registry:``.
    """

    url: str
    password: str | None = None
    _opened: ModelRegistry | None = PrivateAttr(default=None)

    def open(self) -> ModelRegistry:
        """A new registry on this URL; the caller closes it (``ModelRegistry`` is a context manager).

        Opening connects nothing: the first query connects and checks the schema (measured ≈3 ms on SQLite,
        ≈15 ms on PostgreSQL, connection included).

        Raises:
            RegistryURLError: see :func:`registry_url`.
        """
        # A URL object, not a string: the password is never rendered into text on the way to the engine.
        return ModelRegistry(registry_url(self.url, self.password))  # type: ignore[arg-type]

    def create_resource(self, context: dg.InitResourceContext) -> ModelRegistry:  # type: ignore[override]
        """What ``registry: dg.ResourceParam[ModelRegistry]`` receives: :meth:`open`, closed by the teardown.

        Dagster calls this on a copy of the resource per initialisation (run, step process, sensor tick), so
        the registry remembered here is this execution's own.
        """
        self._opened = self.open()
        return self._opened

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the execution's registry (dispose its engine's pooled connections)."""
        if self._opened is not None:
            self._opened.close()
            self._opened = None

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "url" and isinstance(value, str) and not isinstance(value, dg.EnvVar):
                yield name, redacted_url(value)  # an unresolved EnvVar shows its variable's name
            else:
                yield name, (_hidden(value) if name == "password" else value)


UNPARTITIONED = "__unpartitioned__"


def stored_asset_path(base_dir: str, asset_path: Sequence[str], partition: str | None) -> Path:
    """Where a stored asset value lives, without its suffix (``.parquet`` for frames, ``.json`` otherwise)."""
    return Path(base_dir).joinpath(*asset_path, partition or UNPARTITIONED)


def _partition_of(context: dg.InputContext | dg.OutputContext) -> str | None:
    return context.asset_partition_key if context.has_asset_partitions else None


def _no_value(asset_key: dg.AssetKey, partition: str | None, where: str) -> FileNotFoundError:
    which = f"partition {partition!r}" if partition is not None else "unpartitioned"
    return FileNotFoundError(
        f"no stored value of asset {asset_key.to_user_string()} ({which}): neither {where}.parquet nor {where}.json"
    )


def _frame_or_record(
    asset_key: dg.AssetKey,
    partition: str | None,
    columns: Sequence[str] | None,
    read: Callable[[str, list[str] | None], Any],
) -> Any:
    """``read(suffix, columns)`` of the Parquet value, else of the JSON one (``None`` from ``read``: not there)."""
    frame = read(".parquet", list(columns) if columns is not None else None)
    if frame is not None:
        return frame
    record = read(".json", None)
    if record is not None and columns is not None:
        raise TypeError(
            f"asset {asset_key.to_user_string()} partition {partition!r} is stored as a JSON record, not a frame; "
            "columns= applies to frames only"
        )
    return record


class FrameIOManager(dg.ConfigurableIOManager):
    """Stores data frames as Parquet and records (dicts) as JSON, one file per asset partition.

    Records are written as standard JSON by :mod:`mlops_assets.ml.json_codec` (NaN and ±inf as ``null``,
    timestamps as ISO 8601, any other unknown value as its ``str``).

    Every write goes to a temporary file in the target folder and is renamed into place, so a run
    killed mid-write never corrupts the previous value (unlike the default pickle IO manager).

    It is also the one reader of stored values: :meth:`load_input` is :meth:`load_value` of the input's
    asset and partition, and code that reads other partitions (a training window, rollout evidence) takes
    ``io_manager: dg.ResourceParam[FrameIOManager]`` and calls :meth:`load_value` / :meth:`has_value`.
    (Annotating the parameter ``io_manager: FrameIOManager`` is refused by Dagster 1.13 for an IO manager.)
    """

    base_dir: str

    def location(self, asset_key: dg.AssetKey, partition: str | None) -> str:
        """Where the value of ``asset_key``'s ``partition`` (``None``: unpartitioned) is stored, without suffix."""
        return str(stored_asset_path(self.base_dir, asset_key.path, partition))

    def load_value(self, asset_key: dg.AssetKey, partition: str | None, *, columns: Sequence[str] | None = None) -> Any:
        """The stored value of ``asset_key``'s ``partition``: a DataFrame (Parquet) or a JSON record.

        Args:
            asset_key: The asset, e.g. ``AssetKey(["synthetic", "features"])``.
            partition: Its partition key (a data version), ``None`` for an unpartitioned asset.
            columns: For a frame, read only these columns (``None``: all).

        Raises:
            FileNotFoundError: nothing is stored there; the message names the asset key, the partition and
                the location.
            TypeError: ``columns`` given for a value stored as a JSON record.
        """
        target = stored_asset_path(self.base_dir, asset_key.path, partition)

        def read(suffix: str, cols: list[str] | None) -> Any:
            path = target.with_suffix(suffix)
            if not path.exists():
                return None
            return pd.read_parquet(path, columns=cols) if suffix == ".parquet" else json_codec.loads(path.read_text())

        value = _frame_or_record(asset_key, partition, columns, read)
        if value is None:
            raise _no_value(asset_key, partition, str(target))
        return value

    def has_value(self, asset_key: dg.AssetKey, partition: str | None) -> bool:
        """Whether a value of ``asset_key``'s ``partition`` is stored (as Parquet or JSON)."""
        target = stored_asset_path(self.base_dir, asset_key.path, partition)
        return target.with_suffix(".parquet").exists() or target.with_suffix(".json").exists()

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        target = stored_asset_path(self.base_dir, context.asset_key.path, _partition_of(context))
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(obj, pd.DataFrame):
            final, write = target.with_suffix(".parquet"), lambda p: obj.to_parquet(p, index=False)
        else:
            final = target.with_suffix(".json")

            def write(p: Path) -> None:
                p.write_text(json_codec.dumps(obj, indent=1, sort_keys=True, default=str))

        # A write killed before its rename left a temporary file here: the next write into the folder removes it.
        remove_stale_temps(final.parent)
        fd, tmp = temp_file_for(final)
        os.close(fd)
        try:
            write(tmp)
            faults.point("io_write")
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        # A value changes type rarely (e.g. a frame that became a record); never leave both behind.
        for stale in (target.with_suffix(".parquet"), target.with_suffix(".json")):
            if stale != final and stale.exists():
                stale.unlink()

    def load_input(self, context: dg.InputContext) -> Any:
        """:meth:`load_value` of the input's asset and partition."""
        return self.load_value(context.asset_key, _partition_of(context))


def _frame_bytes(obj: Any) -> tuple[str, bytes, str]:
    """(suffix, bytes, content type) of a stored asset value: Parquet for frames, JSON otherwise."""
    if isinstance(obj, pd.DataFrame):
        buffer = io.BytesIO()
        obj.to_parquet(buffer, index=False)
        return ".parquet", buffer.getvalue(), "application/vnd.apache.parquet"
    return ".json", json_codec.dumps(obj, indent=1, sort_keys=True, default=str).encode(), "application/json"
