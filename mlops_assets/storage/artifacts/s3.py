"""The write-once, content-addressed, verified artifact store on S3 (or any S3-compatible store).

Same contract as :class:`mlops_assets.storage.artifacts.store.LocalArtifactStore`: objects live at
``s3://<bucket>/<prefix><sha[:2]>/<sha><suffix>``; every read checks size, SHA-256 and (with a key)
the HMAC *before* returning a byte, so nothing unverified reaches a decoder; a ref is located by the
digest and suffix in its URI under this store's bucket and prefix, so copying the objects to another
bucket keeps registered refs readable.

Write-once is enforced by the server, not by a check-then-write race: every put is conditional
(``If-None-Match: *``). When the key already exists S3 answers 412 Precondition Failed and the store
verifies the existing object instead — same bytes: the put is idempotent and returns the same ref;
other bytes: :class:`ArtifactIntegrityError`, and the object is left in place for investigation.
AWS S3 honours conditional writes since August 2024; so do recent MinIO releases and moto >= 5.0.
A store that silently ignores the header would let a second writer overwrite an object — reads
would still refuse the changed bytes (the digest is recorded in the registry), but enable bucket
versioning (or Object Lock) there so the original stays recoverable.

This module is pure core: it takes a boto3 S3 client and never imports dagster.
"""

import time
from typing import Any
from urllib.parse import urlparse

from mlops_assets.storage.artifacts.store import (
    ArtifactIntegrityError,
    ArtifactRef,
    artifact_name,
    check_suffix,
    hmac_hex,
    sha256_hex,
    verify_bytes,
)

#: How often a put is retried when S3 reports a concurrent conditional write to the same key (409).
_CONFLICT_RETRIES = 5


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix/")``; the prefix is ``""`` or ends in ``/``.

    Raises:
        ValueError: ``url`` is not an ``s3://`` URL with a bucket.
    """
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
    prefix = parsed.path.strip("/")
    return parsed.netloc, f"{prefix}/" if prefix else ""


def error_code(exc: Exception) -> str:
    """The S3 error code of a botocore ``ClientError`` (``"NoSuchKey"``, ``"PreconditionFailed"``, …), else ``""``."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    # HEAD responses carry no body, so only the status tells what happened.
    if not code or code.isdigit():
        return {404: "NoSuchKey", 412: "PreconditionFailed", 409: "ConditionalRequestConflict"}.get(status, code)
    return code


def is_missing(exc: Exception) -> bool:
    """Whether a botocore error means the object (or key) does not exist."""
    return error_code(exc) in {"NoSuchKey", "404", "NotFound"}


class S3ArtifactStore:
    """Content-addressed artifact store in an S3 bucket, written with conditional puts.

    Args:
        client: A boto3 S3 client (e.g. from ``dagster_aws.s3.S3Resource.get_client()``).
        bucket: Bucket name.
        prefix: Key prefix, ``""`` or ending in ``/`` (see :func:`parse_s3_url`).
        hmac_key: Secret key. When given, :meth:`put_bytes` records an HMAC-SHA256 of the bytes in the
            ref and :meth:`get_bytes` refuses refs whose HMAC is missing or does not match.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "", hmac_key: bytes | None = None) -> None:
        if hmac_key is not None and len(hmac_key) == 0:
            raise ValueError("hmac_key must be non-empty (or None for no HMAC)")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.lstrip("/")
        self._hmac_key = hmac_key

    def __repr__(self) -> str:
        # Never show the key.
        hmac = "on" if self._hmac_key else "off"
        return f"S3ArtifactStore(bucket={self.bucket!r}, prefix={self.prefix!r}, hmac={hmac})"

    def key(self, sha256: str, suffix: str) -> str:
        """The object key of an artifact."""
        return f"{self.prefix}{sha256[:2]}/{sha256}{suffix}"

    def _uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _ref(self, key: str, data: bytes, sha256: str) -> ArtifactRef:
        return ArtifactRef(uri=self._uri(key), sha256=sha256, size=len(data), hmac=hmac_hex(self._hmac_key, data))

    def _key_for_ref(self, ref: ArtifactRef) -> str:
        if urlparse(ref.uri).scheme != "s3":
            raise ArtifactIntegrityError(
                f"artifact {ref.uri}: not an s3:// URI, cannot be read by {self!r}", uri=ref.uri
            )
        sha256, suffix = artifact_name(ref)
        return self.key(sha256, suffix)

    def put_bytes(self, data: bytes, suffix: str) -> ArtifactRef:
        """Store ``data`` under its digest with a conditional put; idempotent for the same bytes.

        Raises:
            ValueError: ``suffix`` is not a dotted extension.
            ArtifactIntegrityError: An object already exists under this key with different content
                (tampered); it is not overwritten.
        """
        check_suffix(suffix)
        sha256 = sha256_hex(data)
        key = self.key(sha256, suffix)
        for attempt in range(_CONFLICT_RETRIES):
            try:
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=data,
                    IfNoneMatch="*",
                    ContentType="application/octet-stream",
                    # Informational only: reads verify against the digest recorded in the registry.
                    Metadata={"sha256": sha256},
                )
                return self._ref(key, data, sha256)
            except Exception as exc:
                code = error_code(exc)
                if code == "PreconditionFailed":
                    return self._verify_existing(key, data, sha256)
                if code == "ConditionalRequestConflict" and attempt + 1 < _CONFLICT_RETRIES:
                    # Another writer's conditional put to the same key is in flight: wait for it to land.
                    time.sleep(0.1 * (attempt + 1))
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _verify_existing(self, key: str, data: bytes, sha256: str) -> ArtifactRef:
        existing = self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        actual = sha256_hex(existing)
        if actual != sha256:
            raise ArtifactIntegrityError(
                f"artifact {self._uri(key)}: existing object does not match its key (tampered?): "
                f"expected sha256 {sha256}, actual {actual}; refusing to overwrite",
                uri=self._uri(key),
                expected=sha256,
                actual=actual,
            )
        return self._ref(key, data, sha256)

    def get_bytes(self, ref: ArtifactRef) -> bytes:
        """Read the bytes of ``ref``, verified (size, SHA-256, HMAC with a keyed store) before returning.

        Raises:
            ArtifactIntegrityError: The object is missing, or its size, digest or HMAC do not match.
        """
        key = self._key_for_ref(ref)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if is_missing(exc):
                raise ArtifactIntegrityError(
                    f"artifact {ref.uri}: missing object s3://{self.bucket}/{key} (expected sha256 {ref.sha256})",
                    uri=ref.uri,
                    expected=ref.sha256,
                ) from None
            raise
        length = int(response.get("ContentLength", -1))
        if length >= 0 and length != ref.size:
            # Refuse before downloading: a swapped object may be arbitrarily large.
            response["Body"].close()
            raise ArtifactIntegrityError(
                f"artifact {ref.uri}: content does not match the reference: expected {ref.size} bytes, "
                f"object has {length}",
                uri=ref.uri,
                expected=ref.sha256,
            )
        data = response["Body"].read()
        verify_bytes(data, ref, self._hmac_key)
        return data

    def exists(self, ref: ArtifactRef) -> bool:
        """Whether an object is stored under ``ref``'s key. Does not verify content; use :meth:`get_bytes`."""
        try:
            key = self._key_for_ref(ref)
        except ArtifactIntegrityError:
            return False
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if is_missing(exc):
                return False
            raise
        return True
