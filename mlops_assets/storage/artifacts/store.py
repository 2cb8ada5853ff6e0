"""Write-once, content-addressed, verified artifacts: the reference, its checks and the local store.

An artifact is addressed by the SHA-256 of its bytes: ``<root>/<sha[:2]>/<sha><suffix>`` (the S3
store in :mod:`mlops_assets.storage.artifacts.s3` uses the same layout under a bucket prefix and the
same checks, :func:`verify_bytes`). The reference that the registry keeps (:class:`ArtifactRef`)
carries the digest and the size, and every read verifies both *before* returning a single byte, so a
flipped bit, a truncated copy or a file swapped for another artifact is caught at the door. With an
HMAC key the store also proves that the bytes were written by someone holding the key, which a bare
digest cannot: whoever can write the registry row can also write a matching digest.

This module knows nothing of model formats and does not import skops (the registry imports
:class:`ArtifactRef` from here); models are (de)serialised by
:mod:`mlops_assets.storage.artifacts.skops_codec`.
"""

import contextlib
import hashlib
import hmac as hmac_lib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from mlops_assets.storage.files import remove_stale_temps, temp_file_for

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Suffixes become part of a file name: allow dotted extensions only, so a suffix can never climb out
# of the shard directory or smuggle a path separator.
_SUFFIX_RE = re.compile(r"^(\.[A-Za-z0-9_-]+)*$")
_READ_ONLY = 0o444


class ArtifactIntegrityError(RuntimeError):
    """Artifact bytes cannot be trusted: wrong digest or size, missing, HMAC mismatch, not skops, untrusted type.

    Attributes:
        uri: The artifact's URI (``"<bytes>"`` when checking bytes that have no URI).
        expected: The expected digest, if the failure is a digest comparison.
        actual: The actual digest, if the failure is a digest comparison.
    """

    # Keyword arguments have defaults so that the exception survives pickling across processes
    # (BaseException.__reduce__ replays only the positional message).
    def __init__(self, message: str, *, uri: str = "", expected: str | None = None, actual: str | None = None) -> None:
        super().__init__(message)
        self.uri = uri
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact lives and what its bytes must hash to.

    Attributes:
        uri: Locator, ``file:///...`` for the local store, ``s3://bucket/key`` for the S3 store.
        sha256: Lowercase hex SHA-256 of the bytes.
        size: Length of the bytes.
        hmac: Lowercase hex HMAC-SHA256 of the bytes under the store's key, if the store has one.
    """

    uri: str
    sha256: str
    size: int
    hmac: str | None = None

    def __post_init__(self) -> None:
        # Refs come back from the registry database and from JSON; reject malformed ones here rather
        # than letting a bad digest surface later as a confusing "mismatch".
        if not _SHA256_RE.fullmatch(self.sha256):
            raise ValueError(f"ArtifactRef {self.uri!r}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"ArtifactRef {self.uri!r}: size must be a non-negative int, got {self.size!r}")
        if self.hmac is not None and not _SHA256_RE.fullmatch(self.hmac):
            raise ValueError(f"ArtifactRef {self.uri!r}: hmac must be 64 lowercase hex digits, got {self.hmac!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (``hmac`` is included, possibly ``None``)."""
        return {"uri": self.uri, "sha256": self.sha256, "size": self.size, "hmac": self.hmac}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ArtifactRef":
        """Build a ref from :meth:`to_dict` output; ``hmac`` may be absent.

        Raises:
            ValueError: A field is malformed.
            KeyError: ``uri``, ``sha256`` or ``size`` is missing.
        """
        return cls(uri=str(data["uri"]), sha256=str(data["sha256"]), size=int(data["size"]), hmac=data.get("hmac"))


@runtime_checkable
class ArtifactStore(Protocol):
    """A write-once, content-addressed store whose reads are verified."""

    def put_bytes(self, data: bytes, suffix: str) -> ArtifactRef:
        """Store ``data`` (idempotently) and return its reference."""
        ...

    def get_bytes(self, ref: ArtifactRef) -> bytes:
        """Return the bytes of ``ref`` after verifying size and digest; raise ArtifactIntegrityError otherwise."""
        ...

    def exists(self, ref: ArtifactRef) -> bool:
        """Whether an object is stored under ``ref``'s key (its content is not verified)."""
        ...


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hmac_hex(key: bytes | None, data: bytes) -> str | None:
    """HMAC-SHA256 of ``data`` under ``key`` as lowercase hex, or ``None`` without a key."""
    if key is None:
        return None
    return hmac_lib.new(key, data, hashlib.sha256).hexdigest()


def verify_bytes(data: bytes, ref: ArtifactRef, hmac_key: bytes | None) -> None:
    """Check ``data`` against ``ref``: size and SHA-256, and the HMAC when ``hmac_key`` is given.

    Shared by every store so that local and S3 reads refuse exactly the same things, before any byte
    reaches a decoder.

    Raises:
        ArtifactIntegrityError: Size, digest or HMAC do not match, or a keyed store got a ref without HMAC.
    """
    actual = _sha256(data)
    if len(data) != ref.size or not hmac_lib.compare_digest(actual, ref.sha256):
        raise ArtifactIntegrityError(
            f"artifact {ref.uri}: content does not match the reference: expected sha256 {ref.sha256} "
            f"({ref.size} bytes), actual sha256 {actual} ({len(data)} bytes)",
            uri=ref.uri,
            expected=ref.sha256,
            actual=actual,
        )
    if hmac_key is not None:
        expected_mac = hmac_hex(hmac_key, data)
        assert expected_mac is not None
        # A keyed store refuses refs without an HMAC: otherwise stripping the field from the
        # registry row would silently downgrade the check to a bare digest.
        if ref.hmac is None or not hmac_lib.compare_digest(expected_mac, ref.hmac):
            raise ArtifactIntegrityError(
                f"artifact {ref.uri}: HMAC mismatch (written without this store's key, or tampered): "
                f"expected {ref.hmac}, actual {expected_mac}",
                uri=ref.uri,
                expected=ref.hmac,
                actual=expected_mac,
            )


def artifact_name(ref: ArtifactRef) -> tuple[str, str]:
    """``(sha256, suffix)`` of the object a ref names, from the last segment of its URI.

    The key is derived from the digest, so a URI naming another digest (it would read one object and
    verify it against a different ref) or a suffix that is not a dotted extension is refused.

    Raises:
        ArtifactIntegrityError: The URI's last segment is not ``<ref.sha256><dotted suffix>``.
    """
    name = PurePosixPath(unquote(urlparse(ref.uri).path)).name
    suffix = name[len(ref.sha256) :]
    if not name.startswith(ref.sha256) or not _SUFFIX_RE.fullmatch(suffix):
        raise ArtifactIntegrityError(
            f"artifact {ref.uri}: file name does not match the expected digest {ref.sha256}",
            uri=ref.uri,
            expected=ref.sha256,
        )
    return ref.sha256, suffix


def check_suffix(suffix: str) -> None:
    """Raise ValueError unless ``suffix`` is a dotted extension (``".skops"``) or empty."""
    if not _SUFFIX_RE.fullmatch(suffix):
        raise ValueError(f"suffix must be a dotted extension such as '.skops', got {suffix!r}")


def _fsync_dir(path: Path) -> None:
    # A rename/link is durable only once the directory entry is flushed. Not every platform lets us
    # open a directory (Windows), and losing durability there is better than failing the write.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalArtifactStore:
    """Content-addressed artifact store on a local or mounted file system.

    Objects live at ``<root>/<sha[:2]>/<sha><suffix>`` and are made read-only once in place. The
    store is relocatable: reads locate an object by the file name in the ref's URI (digest + suffix)
    under this store's root, so moving the root does not break registered refs.

    Args:
        root: Directory holding the objects; created if missing.
        hmac_key: Secret key. When given, :meth:`put_bytes` records an HMAC-SHA256 of the bytes in the
            ref and :meth:`get_bytes` refuses refs whose HMAC is missing or does not match.
    """

    def __init__(self, root: Path, hmac_key: bytes | None = None) -> None:
        if hmac_key is not None and len(hmac_key) == 0:
            raise ValueError("hmac_key must be non-empty (or None for no HMAC)")
        self.root = Path(root).resolve()
        self._hmac_key = hmac_key

    def __repr__(self) -> str:
        # Never show the key.
        return f"LocalArtifactStore(root={str(self.root)!r}, hmac={'on' if self._hmac_key else 'off'})"

    def _path(self, sha256: str, suffix: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def _ref(self, path: Path, sha256: str, size: int, data: bytes) -> ArtifactRef:
        return ArtifactRef(uri=path.as_uri(), sha256=sha256, size=size, hmac=self._mac(data))

    def _mac(self, data: bytes) -> str | None:
        return hmac_hex(self._hmac_key, data)

    def _path_for_ref(self, ref: ArtifactRef) -> Path:
        parsed = urlparse(ref.uri)
        if parsed.scheme != "file":
            raise ArtifactIntegrityError(
                f"artifact {ref.uri}: not a file:// URI, cannot be read by {self!r}", uri=ref.uri
            )
        _, suffix = artifact_name(ref)
        return self._path(ref.sha256, suffix)

    def put_bytes(self, data: bytes, suffix: str) -> ArtifactRef:
        """Store ``data`` under its digest, write-once.

        Args:
            data: The bytes to store.
            suffix: File extension including the dot (``".skops"``), or ``""``.

        Returns:
            The reference, with ``hmac`` set when the store has a key.

        Raises:
            ValueError: ``suffix`` is not a dotted extension.
            ArtifactIntegrityError: An object already exists under this key with different content
                (it has been tampered with); it is left in place for investigation, not overwritten.
        """
        check_suffix(suffix)
        sha256 = _sha256(data)
        path = self._path(sha256, suffix)
        if path.exists():
            return self._verify_existing(path, sha256, data)

        path.parent.mkdir(parents=True, exist_ok=True)
        # Write under a temporary name in the same directory (same file system, so link is atomic),
        # flush to disk, then link into place: a crash leaves at most a stray temp file, never a
        # partial object under the final name.
        remove_stale_temps(path.parent)  # left by a writer killed before its link
        fd, tmp = temp_file_for(path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _READ_ONLY)
            try:
                # link fails if the name exists, so a concurrent writer can never be overwritten.
                os.link(tmp, path)
            except FileExistsError:
                return self._verify_existing(path, sha256, data)
            except OSError:
                # Some file systems (certain FUSE/SMB mounts) lack hard links. Fall back to rename,
                # which is still atomic; write-once then relies on the exists() check above.
                os.replace(tmp, path)
            _fsync_dir(path.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return self._ref(path, sha256, len(data), data)

    def _verify_existing(self, path: Path, sha256: str, data: bytes) -> ArtifactRef:
        actual = _sha256(path.read_bytes())
        if actual != sha256:
            raise ArtifactIntegrityError(
                f"artifact {path.as_uri()}: existing object does not match its key (tampered?): "
                f"expected sha256 {sha256}, actual {actual}; refusing to overwrite",
                uri=path.as_uri(),
                expected=sha256,
                actual=actual,
            )
        return self._ref(path, sha256, len(data), data)

    def get_bytes(self, ref: ArtifactRef) -> bytes:
        """Read the bytes of ``ref``, verified.

        Size and SHA-256 are checked (and the HMAC, when the store has a key) before returning.

        Raises:
            ArtifactIntegrityError: The object is missing, or its size, digest or HMAC do not match.
        """
        path = self._path_for_ref(ref)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactIntegrityError(
                f"artifact {ref.uri}: missing file {path} (expected sha256 {ref.sha256})",
                uri=ref.uri,
                expected=ref.sha256,
            ) from None
        verify_bytes(data, ref, self._hmac_key)
        return data

    def exists(self, ref: ArtifactRef) -> bool:
        """Whether an object is stored under ``ref``'s key. Does not verify content; use :meth:`get_bytes`."""
        try:
            return self._path_for_ref(ref).is_file()
        except ArtifactIntegrityError:
            return False
