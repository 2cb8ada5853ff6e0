"""Materialization metadata people read in the Dagster UI: tables and column schemas, rounded and described.

Wiring helpers shared by the stage modules (not a stage). Floats in tables are rounded for reading
(:data:`TABLE_DIGITS` significant digits); the stored values keep full precision.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from mlops_assets.ml.spec import ColumnSpec, DatasetSpec

#: Significant digits of a float in a table cell: 0.30000000000000004 reads 0.3, 0.76231 reads 0.7623.
TABLE_DIGITS = 4


def readable(value: float) -> float:
    """``value`` rounded for people: :data:`TABLE_DIGITS` significant digits (whole numbers from 10,000 on)."""
    if not math.isfinite(value):
        return value
    if abs(value) >= 10**TABLE_DIGITS:
        return float(round(value))
    return float(f"{value:.{TABLE_DIGITS}g}")


def _cell(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return readable(value) if math.isfinite(value) else None
    return str(value)


def table(
    rows: list[dict[str, Any]],
    *,
    columns: Sequence[str] = (),
    descriptions: Mapping[str, str] | None = None,
) -> dg.TableMetadataValue:
    """A list of row dicts as a Dagster table (the UI renders it as a sortable table).

    Floats are rounded to :data:`TABLE_DIGITS` significant digits (the stored value keeps full precision).

    Args:
        rows: One dict per row; a column is every key seen, in first-seen order.
        columns: Columns to show first, in this order (the important ones); the rest follow.
        descriptions: Column → its description in the table's schema (e.g. the direction that passes).
    """
    names: list[str] = [c for c in columns if any(c in row for row in rows)]
    for row in rows:
        names.extend(c for c in row if c not in names)
    types = {
        c: "number" if all(isinstance(r.get(c), int | float) for r in rows if r.get(c) is not None) else "string"
        for c in names
    }
    about = descriptions or {}
    schema = dg.TableSchema(columns=[dg.TableColumn(name=c, type=types[c], description=about.get(c)) for c in names])
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: _cell(row.get(c)) for c in names}) for row in rows], schema=schema
    )


def _column_rules(column: ColumnSpec) -> list[str]:
    """The spec's rules of one column in words, shown as the column's constraints in the UI."""
    rules: list[str] = []
    if column.min is not None or column.max is not None:
        low = "-inf" if column.min is None else f"{column.min:g}"
        high = "inf" if column.max is None else f"{column.max:g}"
        rules.append(f"range [{low}, {high}]")
    if column.categories is not None:
        shown = ", ".join(column.categories[:8]) + (", …" if len(column.categories) > 8 else "")
        rules.append(f"{len(column.categories)} categories: {shown}")
    return rules


def column_schema(
    spec: DatasetSpec, df: pd.DataFrame | None = None, extra: Mapping[str, str] | None = None
) -> dg.TableSchema:
    """The UI's column schema (``dagster/column_schema``): each column's type, the spec's description and rules.

    Args:
        spec: The dataset spec; its columns' descriptions, nullability, uniqueness, range and categories are shown.
        df: The stored frame: its columns and dtypes, in its order (``None``: the spec's columns and types, for the
            asset definition before anything is materialized).
        extra: Descriptions of columns the spec does not declare (derived columns such as the 0/1 label).
    """
    by_name = {c.name: c for c in spec.columns}
    about = dict(extra or {})
    names = [str(c) for c in df.columns] if df is not None else list(by_name)
    out: list[dg.TableColumn] = []
    for name in names:
        declared = by_name.get(name)
        kind = str(df[name].dtype) if df is not None else (declared.type if declared else "unknown")
        if declared is None:
            out.append(dg.TableColumn(name=name, type=kind, description=about.get(name)))
            continue
        out.append(
            dg.TableColumn(
                name=name,
                type=kind,
                description=declared.description or about.get(name),
                constraints=dg.TableColumnConstraints(
                    nullable=declared.nullable, unique=declared.unique, other=_column_rules(declared)
                ),
            )
        )
    return dg.TableSchema(columns=out)
