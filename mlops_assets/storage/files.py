"""Files on the local file system: writing a frame so that no reader ever sees a partial file.

Plain Python over pandas and the file system; never imports dagster. The demo data writers
(:mod:`mlops_assets.demo_data`) and the tests land files with :func:`write_frame_atomic`.
"""

import os
import tempfile
from pathlib import Path
from typing import Literal

import pandas as pd


def write_frame_atomic(df: pd.DataFrame, path: Path, fmt: Literal["csv", "parquet"] = "csv") -> Path:
    """Write a frame to ``path`` so that no reader ever sees a partial file.

    The frame is written to a temporary file in the same directory and renamed over ``path``
    (``os.replace`` is atomic within a file system), so a sensor watching the directory sees either no
    file or the complete one.

    Args:
        df: The frame; its index is not written.
        path: The target file (its directory must exist).
        fmt: ``csv`` or ``parquet``.

    Returns:
        ``path``.
    """
    path = Path(path)
    # The temporary name starts with a dot and ends in .tmp so a landing-zone sensor ignores it.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if fmt == "csv":
                # CRLF (RFC 4180) rows: the csv writer then quotes every field holding a CR or LF, so a text
                # value "\r" reads back as itself instead of ending the row (it is left bare with LF rows).
                df.to_csv(handle, index=False, encoding="utf-8", lineterminator="\r\n")
            else:
                df.to_parquet(handle, index=False)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
