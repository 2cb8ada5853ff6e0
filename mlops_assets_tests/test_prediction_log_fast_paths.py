"""The prediction log's column-wise fast paths against the per-row reference, at sizes and on values they switch on.

``test_prediction_log_equivalence.py`` compares the column-wise code with the per-row reference on frames of up
to 8 rows; the paths below only start at larger sizes or on particular values: integer columns printed once per
value of a narrow range (64 rows and more), floats printed by Arrow's cast inside the window where its text is
``repr()``'s, texts between columns joined to a coded neighbour, the hashing in chunks of
``routing._CHUNK_ROWS`` texts, the log's columns built once for both models. Each is compared with the reference
(the per-row definitions of the contract) on awkward inputs.
"""

import hashlib
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_assets.ml import routing
from mlops_assets.ml.routing import (
    assign_arms,
    challenger_rows,
    digests_hex,
    feature_hash,
    key_bytes,
    key_digests,
    sha256_hex,
)
from mlops_assets.ml.scoring import ScoringModel, prediction_ids, prediction_log
from mlops_assets.ml.spec import load_spec
from mlops_assets_tests.test_prediction_log_equivalence import _canonical_value as ref_canonical_value
from mlops_assets_tests.test_prediction_log_equivalence import (
    ref_assign_arms,
    ref_feature_hash,
    ref_prediction_ids,
    ref_prediction_log,
    ref_routing_uniforms,
)

pytestmark = pytest.mark.core

SCORED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _assert_same_hashes(rows: pd.DataFrame) -> None:
    got, expected = feature_hash(rows), ref_feature_hash(rows)
    assert got.tolist() == expected.tolist()
    assert got.index.equals(expected.index)


# --------------------------------------------------------------------------------------------------
# Cells printed once per value (coded) and joined texts
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column",
    [
        pd.Series(np.arange(-128, 128, dtype=np.int8).repeat(4)),  # the full int8 range, coded: offsets exceed int8
        pd.Series(np.array([2**64 - 1, 2**64 - 5, 2**64 - 3] * 40, dtype=np.uint64)),  # above int64
        pd.Series(np.array([-(2**63), -(2**63) + 7] * 50, dtype=np.int64)),  # the lowest int64
        pd.Series(np.array([0, 1, 0], dtype=np.int64)),  # 3 rows: cast, not coded
        pd.Series(np.arange(64, dtype=np.int64) % 16),  # 64 rows, span 16 = a quarter: coded
        pd.Series(np.arange(64, dtype=np.int64) % 17),  # span 17 > a quarter of the rows: cast
        pd.Series(np.arange(300_000, dtype=np.int64) % (2**16 + 1)),  # span just above the cap: cast
        pd.Series(np.arange(300_000, dtype=np.int64) % 2**16 - 2**15),  # span at the cap: coded
        pd.Series([1, None, -3, 7] * 30, dtype="Int64"),  # coded with missing values
        pd.Series([2**64 - 1, None] * 40, dtype="UInt64"),
        pd.Series(np.array([18.0, 90.0, -0.0, 41.0] * 30)),  # integral floats: coded
        pd.Series(np.array([18.0, 90.0, np.nan, 41.0, 2.5, np.inf] * 20)),  # integral, decimal and others
        pd.Series([18.0, None, 41.0] * 40, dtype="Float64"),
        pd.Series([True, False, None] * 30, dtype="boolean"),
        pd.Series(["a", None, "b", "ü"] * 30, dtype="category"),
    ],
    ids=lambda column: f"{column.dtype}-{len(column)}",
)
def test_column_cells_of_larger_columns_equal_the_reference(column: pd.Series) -> None:
    _assert_same_hashes(pd.DataFrame({"x": column}))
    # The column-wise texts themselves (the hash would also be right if they failed and the per-row texts
    # were used instead).
    cells = routing._array(routing._column_cells(column)).to_pylist()
    assert cells == [ref_canonical_value(v) for v in column.tolist()]


def _mixed_frame(n: int, seed: int) -> pd.DataFrame:
    """Columns of every kind of cells: coded (ints of a narrow range, strings, bools, categories, times) and not
    (decimal floats, ids of a wide range, per-cell objects)."""
    rng = np.random.default_rng(seed)
    strings = np.array(["a", "b", '"q"', "ü", "日本", "", None, float("nan")], dtype=object)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "amount": np.round(rng.normal(0, 1e4, n), 2),
            "ratio": rng.random(n),
            "id": rng.integers(-(2**62), 2**62, n),
            "city": strings[rng.integers(0, len(strings), n)],
            "flag": rng.random(n) < 0.5,
            "when": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 5, n), unit="D"),
            "mixed": pd.Series([1, "1", 1.5, None, True] * (n // 5) + [2] * (n % 5), dtype=object),
            "kind": pd.Series(rng.choice(["x", "y"], n), dtype="category"),
        }
    )


@settings(max_examples=60, deadline=None)
@given(names=st.lists(st.sampled_from(list(_mixed_frame(5, 0).columns)), min_size=1, max_size=9, unique=True))
def test_texts_between_any_kinds_of_columns_equal_the_reference(names: list[str]) -> None:
    # The texts between columns are joined to a coded neighbour where there is one: every order of coded and
    # not coded columns (first, last, adjacent, alone) must give the per-row text.
    _assert_same_hashes(_mixed_frame(200, seed=len(names))[names])


# --------------------------------------------------------------------------------------------------
# Floats printed by Arrow's cast
# --------------------------------------------------------------------------------------------------


def _decades(low: int, high: int, per_decade: int, seed: int) -> np.ndarray:
    """Non-integral floats in every decade [10**e, 10**(e+1)) for low <= e < high, both signs, with their bit
    patterns spread over the whole mantissa, and rounded to a few decimals (money-like)."""
    rng = np.random.default_rng(seed)
    mantissas = (rng.integers(0, 2**52, per_decade, dtype=np.int64) | np.int64(0x3FF0000000000000)).view(np.float64)
    values = np.concatenate([mantissas * 10.0**e for e in range(low, high)])
    values = np.concatenate([values, np.round(values, 2), np.round(values, 5)])
    values = values[np.trunc(values) != values]
    return np.concatenate([values, -values])


def test_arrow_float_text_is_repr_inside_its_window() -> None:
    # The window in which _float_cells trusts Arrow's float-to-string cast: a pyarrow whose cast prints other
    # text there fails here (then narrow or drop the window).
    values = _decades(-4, 10, 5000, seed=1)
    values = values[(np.abs(values) >= routing._PLAIN_FLOAT_LOW) & (np.abs(values) < routing._PLAIN_FLOAT_HIGH)]
    edges = np.array([1e-4, np.nextafter(1e-4, 1.0), np.nextafter(1e10, 0.0), 0.1, 0.5, 1.5, 123456.789])
    values = np.concatenate([values, edges, -edges])
    assert pa.array(values).cast(pa.large_string()).to_pylist() == [repr(v) for v in values.tolist()]


def test_float_cells_across_all_magnitudes_equal_the_reference() -> None:
    values = np.concatenate(
        [
            _decades(-8, 17, 40, seed=2),
            [1e-4, np.nextafter(1e-4, 0.0), 1e10, np.nextafter(1e10, 0.0), np.nextafter(1e10, 2e10), 5e-324],
            [2.0**53, 2.0**53 + 2, 1e300, np.nan, np.inf, -np.inf, -0.0, 3.0],
        ]
    )
    frame = pd.DataFrame({"x": values})
    _assert_same_hashes(frame)
    _assert_same_hashes(frame.astype({"x": "Float64"}))
    _assert_same_hashes(pd.DataFrame({"x": values.astype(object)}))
    _assert_same_hashes(pd.DataFrame({"x": values[(np.abs(values) >= 1e-4) & (np.abs(values) < 1e10)]}))


@pytest.mark.parametrize(
    "values",
    [
        [2189.09, 97267.35, 0.5, 0.05, 0.001, 10.1, 50000.0, -3.0, -0.0, 0.0, 12.345],  # at most 3 decimals
        [-0.5, -0.05, -0.001, -1.5, -999.999, 0.999, -1.0, 1.0],  # negatives, "-0" integer parts
        [1.25, np.nan, np.inf, -np.inf, -0.25, np.nan, 3.0],  # missing and infinite values among decimals
        [999_999_999_999.999, -999_999_999_999.999, 0.001],  # 15 significant digits: still decimals
        [1e12 + 0.5, 0.25],  # 16 digits: the general path
        [2.0**46 + 0.125, -(2.0**46) - 0.125],  # 17 digits: repr() is 70368744177664.12, not .125
        [0.0001, 0.25],  # 4 decimals: the general path
        [0.1 + 0.2, 0.3],  # 0.30000000000000004 is not the decimal 0.3: the general path
        [2.0**52 + 0.5 - 0.5, 1.5],
    ],
)
def test_decimal_floats_equal_the_reference(values: list[float]) -> None:
    values = values * 20
    for dtype in ("float64", "Float64", object):
        _assert_same_hashes(pd.DataFrame({"x": pd.Series(values, dtype=dtype)}))
    rng = np.random.default_rng(len(values))
    scale = 10.0 ** rng.integers(0, 4, 5000)  # 0 to 3 decimals
    money = np.rint(rng.normal(0, 1e3, 5000) * scale) / scale
    money[rng.random(5000) < 0.05] = np.nan
    _assert_same_hashes(pd.DataFrame({"x": money, "y": values * (5000 // len(values)) + values[: 5000 % len(values)]}))


def test_object_string_columns_with_missing_values_equal_the_reference() -> None:
    for values in (
        ["a", None, float("nan"), "b"] * 30,
        [float("nan")] * 70,
        ["a", np.float64("nan"), "b"] * 30,  # a numpy float NaN: not the plain-str path
        ["a", pd.NA, "b"] * 30,
        ["a", pd.NaT, "b"] * 30,
        ["a", 1.5, "b"] * 30,
    ):
        _assert_same_hashes(pd.DataFrame({"x": pd.Series(values, dtype=object)}))


@pytest.mark.parametrize("value", [[1], {"a": 1}, {1}])
def test_unhashable_values_raise_as_the_reference(value: Any) -> None:
    rows = pd.DataFrame({"x": pd.Series(["a", value, "b"], dtype=object)})
    with pytest.raises(TypeError) as expected:
        ref_feature_hash(rows)
    with pytest.raises(TypeError) as got:
        feature_hash(rows)
    assert str(got.value) == str(expected.value)


# --------------------------------------------------------------------------------------------------
# Hashing in chunks, and the log built column by column
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, routing._CHUNK_ROWS - 1, routing._CHUNK_ROWS, 2 * routing._CHUNK_ROWS + 3])
def test_hashes_across_chunks_equal_the_per_row_definition(n: int) -> None:
    ids = pd.Series(np.arange(n, dtype=np.int64) * 7919 - 10**9)
    texts = ids.astype(str)
    salt = "rollout-ü"
    expected_uniforms = ref_routing_uniforms(ids, salt)
    assert routing.routing_uniforms(ids, salt).tolist() == expected_uniforms.tolist()
    assert challenger_rows(ids, 0.3, salt).tolist() == (expected_uniforms < 0.3).tolist()
    assert assign_arms(ids, 0.3, salt).tolist() == ref_assign_arms(ids, 0.3, salt).tolist()
    assert prediction_ids("v__1", texts, 7).to_pylist() == ref_prediction_ids("v__1", ids, 7)
    keys = key_bytes("p:", texts, ":s")
    expected = [hashlib.sha256(k).hexdigest() for k in keys]
    assert sha256_hex(keys).to_pylist() == expected
    assert sha256_hex(pa.array(keys, type=pa.large_binary())).to_pylist() == expected
    assert digests_hex(key_digests("p:", texts, ":s"), 32).to_pylist() == [h[:32] for h in expected]


def test_digests_hex_checks_its_input() -> None:
    with pytest.raises(ValueError, match="32 bytes each"):
        digests_hex(b"\x00" * 33)
    with pytest.raises(ValueError, match="even"):
        digests_hex(b"\x00" * 32, 31)


def test_challenger_rows_refuses_what_assign_arms_refuses() -> None:
    with pytest.raises(ValueError, match="challenger_share"):
        challenger_rows(pd.Series([1, 2]), 1.5, "s")
    with pytest.raises(ValueError, match="missing ids"):
        challenger_rows(pd.Series([1.0, None]), 0.5, "s")


class _Constant:
    """A fitted-pipeline stand-in: the same score for every row."""

    classes_ = np.array([0, 1])

    def __init__(self, score: float) -> None:
        self.score = score

    def predict_proba(self, inputs: pd.DataFrame) -> np.ndarray:
        p = np.full(len(inputs), self.score)
        return np.column_stack([1 - p, p])


def _features(ids: list[Any] | pd.Series) -> pd.DataFrame:
    spec = load_spec("synthetic")
    n = len(ids)
    rng = np.random.default_rng(n)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": np.round(rng.normal(5e4, 2e4, n), 2),
            "tenure_months": rng.integers(0, 120, n),
            "balance": np.where(rng.random(n) < 0.1, np.nan, np.round(rng.normal(1e3, 500, n), 2)),
            "region": pd.Series(rng.choice(["north", "south", "ü"], n), dtype=object),
            "plan": pd.Series(rng.choice(["basic", "plus"], n), dtype=object),
        }
    )
    frame.insert(0, spec.id_column, pd.Series(ids).reset_index(drop=True))
    return frame


@pytest.mark.parametrize(
    "ids",
    [
        pd.Series(np.arange(300, dtype=np.int64) * 13 - 1000),
        pd.Series([f"user-{i}-ü" for i in range(150)], dtype="str"),
        pd.Series([f"日本{i}" for i in range(70)], dtype=object),
        pd.Series([42]),
        pd.Series(["only"], dtype="str"),
        pd.Series([1, "1", 2.5, "x"] * 20, dtype=object),  # mixed types: the per-row key texts
        pd.Series(np.arange(0, dtype=np.int64)),
    ],
    ids=lambda ids: f"{ids.dtype}-{len(ids)}",
)
@pytest.mark.parametrize("share", [None, 0.0, 0.4, 1.0])
def test_prediction_log_equals_the_reference(ids: pd.Series, share: float | None) -> None:
    spec = load_spec("synthetic")
    features = _features(ids)
    champion = ScoringModel(3, _Constant(0.25))  # type: ignore[arg-type]
    challenger = None if share is None else ScoringModel(12, _Constant(0.75))  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {"challenger_share": share or 0.0, "salt": "s:v12", "scored_at": SCORED_AT}
    new = prediction_log(features, spec, "synthetic__0123", champion, challenger, **kwargs)
    ref = ref_prediction_log(features, spec, "synthetic__0123", champion, challenger, **kwargs)
    pd.testing.assert_frame_equal(new, ref, check_exact=True)


def test_prediction_log_without_challenger_keeps_missing_ids_as_the_reference() -> None:
    # Without a challenger nothing routes the rows, so missing ids are logged (as the per-row code logged them).
    spec = load_spec("synthetic")
    features = _features(pd.Series([1.0, np.nan, 3.0] * 30))
    champion = ScoringModel(3, _Constant(0.25))  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {"challenger_share": 0.0, "salt": "s", "scored_at": SCORED_AT}
    new = prediction_log(features, spec, "v", champion, None, **kwargs)
    ref = ref_prediction_log(features, spec, "v", champion, None, **kwargs)
    pd.testing.assert_frame_equal(new, ref, check_exact=True)
