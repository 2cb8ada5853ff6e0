"""Data version keys: stable and derived from content, so landing the same bytes again is a no-op.

A key looks like ``flights_2013-03__1a2b3c4d5e6f``: the landed file's own name (its stem, reduced to
characters every Dagster partition store accepts) and the first 12 hex digits of the sha256 of its
bytes. The content part alone identifies the data; the name part keeps keys readable in the UI.
"""

import hashlib
import re
from pathlib import Path

DIGEST_CHARS = 12
SEPARATOR = "__"
SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_digest(path: Path, chunk_size: int = 1 << 20) -> str:
    """Full sha256 hex digest of a file, read in chunks (files may be larger than memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def safe_stem(file_name: str) -> str:
    """The file's stem with every character outside ``[A-Za-z0-9._-]`` replaced by ``-``."""
    stem = Path(file_name).stem
    cleaned = _UNSAFE.sub("-", stem).strip("-.")
    return cleaned[:80] or "data"


def version_key(file_name: str, digest: str) -> str:
    """The data version key for a file name and its sha256 digest."""
    if len(digest) < DIGEST_CHARS or not re.fullmatch(r"[0-9a-f]+", digest):
        raise ValueError(f"not a hex sha256 digest: {digest!r}")
    return f"{safe_stem(file_name)}{SEPARATOR}{digest[:DIGEST_CHARS]}"


def digest_of_key(key: str) -> str:
    """The content digest prefix embedded in a data version key."""
    stem, sep, digest = key.rpartition(SEPARATOR)
    if not sep or not stem or len(digest) != DIGEST_CHARS:
        raise ValueError(f"{key!r} is not a data version key of the form '<name>{SEPARATOR}<12 hex digits>'")
    return digest


def stem_of_key(key: str) -> str:
    """The file-name part of a data version key."""
    digest_of_key(key)
    return key.rpartition(SEPARATOR)[0]


def is_landable(file_name: str) -> bool:
    """Whether a file in the landing folder is a data file to register.

    Hidden files and partial uploads (``.name``, ``name.tmp``, ``name.part``) are ignored, so a
    writer that uploads under a temporary name and renames when done is never picked up half-written.
    """
    if file_name.startswith((".", "_")):
        return False
    return Path(file_name).suffix.lower() in SUPPORTED_SUFFIXES
