"""The S3 forms of the storage resources (production), wired only by the prod environment.

Each is a subclass of its local form in :mod:`mlops_assets.resources` with the same interface, its location an
``s3://bucket/prefix`` URL and its client from dagster-aws's :class:`~dagster_aws.s3.S3Resource`, so assets and
sensors that annotate the base class work unchanged in either environment.

They live apart from the local forms because importing dagster-aws (and boto3 with it) costs about half a second:
:func:`mlops_assets.environments.prod_environment` is the one module that imports this one, when it builds the prod
environment, so the local code location and its runs never pay for it (docs/benchmarks/imports.md).
"""

import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from mlops_assets.ml import json_codec
from mlops_assets.ml.versions import digest_of_key, is_landable, safe_stem, stem_of_key
from mlops_assets.resources import (
    UNPARTITIONED,
    ArtifactStoreResource,
    FrameIOManager,
    LandedFile,
    LandingZone,
    _frame_bytes,
    _frame_or_record,
    _no_value,
    _partition_of,
    _relative,
)
from mlops_assets.storage.artifacts.s3 import S3ArtifactStore, is_missing, parse_s3_url
from mlops_assets.storage.artifacts.store import ArtifactStore
from mlops_assets.storage.files import remove_stale_temp_dirs, temp_dir_for, temp_file_for

#: Prefix of the private folders :meth:`S3LandingZone.fetch` downloads into (``<prefix><pid>-<random>``).
FETCH_PREFIX = "mlops-fetch-"
#: Prefix of the private folders :meth:`S3LandingZone.locate` downloads into before the digest is known.
STAGING_PREFIX = ".download-"


class _S3Location(dg.ConfigurableResource):
    """Mixin logic for resources whose location is an ``s3://bucket/prefix`` URL reached through ``s3``."""

    s3: S3Resource
    _client: Any = PrivateAttr(default=None)

    def _s3_client(self) -> Any:
        # One boto3 client per resource instance (creating one costs tens of ms; clients are thread-safe).
        if self._client is None:
            self._client = self.s3.get_client()
        return self._client

    @staticmethod
    def _split(url: str) -> tuple[str, str]:
        return parse_s3_url(url)


def _s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def landing_cache_dir() -> Path:
    """Where S3 landed files are downloaded for reading: ``$TMPDIR/mlops-landing`` (one per run worker)."""
    return Path(tempfile.gettempdir()) / "mlops-landing"


class S3LandingZone(LandingZone, _S3Location):
    """The landing zone as an S3 prefix (``directory = "s3://bucket/landing/"``), same interface as the folder.

    Only objects directly under the prefix are data files (no recursion), filtered like local files
    (hidden, ``_``-prefixed and partial uploads are ignored). Upload under a hidden or ``.part`` key and
    copy to the final key when complete, or upload in one ``PutObject`` (S3 never shows a partial object).
    """

    @property
    def root(self) -> Path:
        raise TypeError(f"{self.directory}: an S3 landing zone has no local folder; use fetch() or locate()")

    def at(self, location: str) -> "LandingZone":
        """The zone at ``location``: a relative key path below this prefix, or an ``s3://`` URL as is.

        Raises:
            ValueError: an absolute local path (prod reads landing zones from S3 only), or a relative one
                that leaves this prefix.
        """
        if location.startswith("s3://"):
            parse_s3_url(location)
            return S3LandingZone(directory=location.rstrip("/") + "/", s3=self.s3)
        if location.startswith("/"):
            raise ValueError(f"{location}: the prod environment lands from S3; give an s3:// URL or a relative path")
        return S3LandingZone(directory=f"{self.directory.rstrip('/')}/{_relative(location)}/", s3=self.s3)

    @property
    def bucket(self) -> str:
        return self._split(self.directory)[0]

    @property
    def prefix(self) -> str:
        return self._split(self.directory)[1]

    def uri(self, name: str) -> str:
        """``s3://bucket/prefix/name``."""
        return _s3_uri(self.bucket, self.prefix + name)

    def scan(self) -> list[LandedFile]:
        """Landable objects directly under the prefix, in name order (a missing prefix is empty)."""
        files = []
        paginator = self._s3_client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(self.prefix) :]
                if name and is_landable(name):
                    mtime_ns = int(obj["LastModified"].timestamp() * 1_000_000) * 1000
                    files.append(LandedFile(name, int(obj["Size"]), mtime_ns, str(obj.get("ETag", "")).strip('"')))
        return sorted(files, key=lambda f: f.name)

    def _get(self, name: str) -> Any:
        try:
            return self._s3_client().get_object(Bucket=self.bucket, Key=self.prefix + name)
        except Exception as exc:
            if is_missing(exc):
                raise FileNotFoundError(f"{self.uri(name)}: not in the landing zone") from None
            raise

    def _download(self, name: str, target: Path) -> str:
        """Stream object ``name`` to ``target`` (temp file + rename) and return the sha256 of what was written."""
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp = temp_file_for(target)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in self._get(name)["Body"].iter_chunks(1 << 20):
                    digest.update(chunk)
                    handle.write(chunk)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return digest.hexdigest()

    def put(self, name: str, source: Path) -> str:
        """Upload the local file ``source`` as object ``name`` under the prefix (S3 never shows a partial object)."""
        self._s3_client().upload_file(str(source), self.bucket, self.prefix + name)
        return self.uri(name)

    def digest(self, name: str) -> str:
        """Full sha256 of the object's bytes, streamed (nothing is kept)."""
        digest = hashlib.sha256()
        for chunk in self._get(name)["Body"].iter_chunks(1 << 20):
            digest.update(chunk)
        return digest.hexdigest()

    @contextmanager
    def fetch(self, name: str) -> Iterator[Path]:
        """A local copy of the object ``name`` (same file name), deleted when the block ends."""
        scratch = Path(tempfile.gettempdir())
        remove_stale_temp_dirs(scratch, FETCH_PREFIX)  # copies of killed processes
        folder = temp_dir_for(scratch, FETCH_PREFIX)
        try:
            path = folder / name
            self._download(name, path)
            yield path
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def locate(self, version: str) -> Path:
        """A local copy of the landed object holding exactly the bytes of data version ``version``.

        The object is downloaded to :func:`landing_cache_dir` under ``<digest>/<name>`` and its digest is
        computed from the downloaded bytes, so what is returned is what matched the key — even if the
        object is replaced in the bucket afterwards. The copy lives as long as the run worker's temp dir.

        Raises:
            FileNotFoundError: no object under the prefix has that name and content.
        """
        stem, digest = stem_of_key(version), digest_of_key(version)
        candidates = [f for f in self.scan() if safe_stem(f.name) == stem]
        cache = landing_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_dirs(cache, STAGING_PREFIX)  # downloads of killed processes
        for f in candidates:
            staging = temp_dir_for(cache, STAGING_PREFIX) / f.name
            try:
                actual = self._download(f.name, staging)
                if actual.startswith(digest):
                    final = cache / actual / f.name
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staging, final)
                    return final
            finally:
                shutil.rmtree(staging.parent, ignore_errors=True)
        seen = ", ".join(f.name for f in candidates) or "no object with that name"
        raise FileNotFoundError(
            f"{self.directory}: no landed object holds data version {version!r} (looked at: {seen}); "
            "the object was removed or its bytes changed after landing — a changed object lands as a new version"
        )


class S3ArtifactStoreResource(ArtifactStoreResource, _S3Location):
    """Write-once, content-addressed model artifacts in S3 (``root = "s3://bucket/artifacts"``), conditional puts."""

    def open(self) -> ArtifactStore:
        """The S3 artifact store this resource configures (its boto3 client is this resource's)."""
        bucket, prefix = parse_s3_url(self.root)
        key = self.hmac_key.encode() if self.hmac_key else None
        return S3ArtifactStore(self._s3_client(), bucket, prefix, hmac_key=key)


class S3FrameIOManager(FrameIOManager, _S3Location):
    """Data frames as Parquet and records as JSON in S3 (``base_dir = "s3://bucket/assets"``), one object each.

    A PutObject replaces an object atomically (readers see the old or the new value, never a part), so
    no temporary key is needed; a value that changed type leaves no stale object of the other type.
    Same layout and reading methods as :class:`FrameIOManager` (keys instead of paths).
    """

    def _key(self, asset_key: dg.AssetKey, partition: str | None) -> tuple[str, str]:
        bucket, prefix = parse_s3_url(self.base_dir)
        return bucket, prefix + "/".join([*asset_key.path, partition or UNPARTITIONED])

    def location(self, asset_key: dg.AssetKey, partition: str | None) -> str:
        """``s3://bucket/prefix/<asset path>/<partition>``, without suffix."""
        return _s3_uri(*self._key(asset_key, partition))

    def load_value(self, asset_key: dg.AssetKey, partition: str | None, *, columns: Sequence[str] | None = None) -> Any:
        """As :meth:`FrameIOManager.load_value`, from S3 (the whole object is read; ``columns`` projects it)."""
        bucket, key = self._key(asset_key, partition)
        client = self._s3_client()

        def read(suffix: str, cols: list[str] | None) -> Any:
            try:
                body = client.get_object(Bucket=bucket, Key=key + suffix)["Body"].read()
            except Exception as exc:
                if is_missing(exc):
                    return None
                raise
            return pd.read_parquet(io.BytesIO(body), columns=cols) if suffix == ".parquet" else json_codec.loads(body)

        value = _frame_or_record(asset_key, partition, columns, read)
        if value is None:
            raise _no_value(asset_key, partition, _s3_uri(bucket, key))
        return value

    def has_value(self, asset_key: dg.AssetKey, partition: str | None) -> bool:
        bucket, key = self._key(asset_key, partition)
        for suffix in (".parquet", ".json"):
            try:
                self._s3_client().head_object(Bucket=bucket, Key=key + suffix)
                return True
            except Exception as exc:
                if not is_missing(exc):
                    raise
        return False

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        bucket, key = self._key(context.asset_key, _partition_of(context))
        suffix, body, content_type = _frame_bytes(obj)
        client = self._s3_client()
        client.put_object(Bucket=bucket, Key=key + suffix, Body=body, ContentType=content_type)
        stale = ".json" if suffix == ".parquet" else ".parquet"
        client.delete_object(Bucket=bucket, Key=key + stale)  # no error when absent
        context.add_output_metadata({"uri": _s3_uri(bucket, key + suffix)})
