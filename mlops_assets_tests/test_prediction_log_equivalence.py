"""The column-wise prediction log, routing and feature hash against the per-row implementation they replaced.

In-progress rollouts and stored prediction logs depend on the exact routing, feature hashes and prediction
ids, so the fast implementations must give byte-identical results. The reference below is a verbatim copy
of the per-row functions of ``mlops_assets/ml/routing.py`` and ``mlops_assets/ml/scoring.py`` as they were
before the rewrite (our own code, kept here as the oracle); the tests compare both on hypothesis-generated
frames and ids of mixed dtypes, errors included, and on the packaged synthetic data.
``benchmarks/core_paths_benchmark.py`` times the same reference against the new code.
"""

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.pipeline import Pipeline

from mlops_assets.demo_data import synthetic
from mlops_assets.ml import routing, scoring
from mlops_assets.ml.features import build_features, model_inputs
from mlops_assets.ml.routing import CHALLENGER_ARM, CHAMPION_ARM, assign_arms, feature_hash, key_bytes
from mlops_assets.ml.scoring import LOG_COLUMNS, ScoringModel, prediction_log
from mlops_assets.ml.spec import DatasetSpec, load_spec
from mlops_assets.ml.training import predict_scores, train_baseline, train_candidate
from mlops_assets.ml.validation import coerce_to_schema

pytestmark = pytest.mark.core

# --------------------------------------------------------------------------------------------------
# The reference: the per-row implementation (verbatim copy of the code before the column-wise rewrite)
# --------------------------------------------------------------------------------------------------

_UNIFORM_BITS = 53


def _routing_key(salt: str, row_id: Any) -> bytes:
    # Length-prefixing the salt keeps ("ab", "c") and ("a", "bc") apart.
    return f"{len(salt)}:{salt}:{row_id}".encode()


def _check_ids(row_ids: pd.Series) -> list[Any]:
    if row_ids.isna().any():
        raise ValueError(f"row_ids has {int(row_ids.isna().sum())} missing ids: every row needs an id to be routed")
    return row_ids.tolist()


def ref_routing_uniforms(row_ids: pd.Series, salt: str) -> np.ndarray:
    ids = _check_ids(row_ids)
    shift = 64 - _UNIFORM_BITS
    ints = [int.from_bytes(hashlib.sha256(_routing_key(salt, row_id)).digest()[:8], "big") >> shift for row_id in ids]
    return np.asarray(ints, dtype=np.float64) / float(2**_UNIFORM_BITS)


def ref_assign_arms(row_ids: pd.Series, challenger_share: float, salt: str) -> np.ndarray:
    if not 0.0 <= challenger_share <= 1.0 or math.isnan(challenger_share):
        raise ValueError(f"challenger_share must be in [0, 1], got {challenger_share}")
    return np.where(ref_routing_uniforms(row_ids, salt) < challenger_share, CHALLENGER_ARM, CHAMPION_ARM)


def _canonical_number(value: float) -> str:
    if math.isnan(value):
        return "null"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _canonical_value(value: Any) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return "null"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return _canonical_number(float(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, pd.Timestamp | datetime | date | time):
        return "t:" + value.isoformat()
    if isinstance(value, np.datetime64):
        return "null" if np.isnat(value) else "t:" + pd.Timestamp(value).isoformat()
    raise TypeError(f"feature_hash: unsupported value {value!r} of type {type(value).__name__}")


def ref_feature_hash(rows: pd.DataFrame) -> pd.Series:
    names = [str(c) for c in rows.columns]
    if len(set(names)) != len(names):
        raise ValueError(f"feature_hash: duplicate column names in {names}")
    order = sorted(range(len(names)), key=names.__getitem__)
    columns: list[Iterable[str]] = []
    for i in order:
        prefix = json.dumps(names[i], ensure_ascii=False) + ":"
        columns.append([prefix + _canonical_value(v) for v in rows.iloc[:, i].tolist()])
    if not columns:
        digests = [hashlib.sha256(b"{}").hexdigest()] * len(rows)
    else:
        texts = ("{" + ",".join(cells) + "}" for cells in zip(*columns, strict=True))
        digests = [hashlib.sha256(text.encode()).hexdigest() for text in texts]
    return pd.Series(digests, index=rows.index, name="feature_hash", dtype=object)


def ref_prediction_ids(data_version: str, row_ids: pd.Series, model_version: int) -> list[str]:
    return [
        hashlib.sha256(f"{data_version}:{row_id}:{model_version}".encode()).hexdigest()[:32]
        for row_id in row_ids.astype(str)
    ]


def ref_prediction_log(
    features_df: pd.DataFrame,
    spec: DatasetSpec,
    data_version: str,
    champion: ScoringModel,
    challenger: ScoringModel | None,
    *,
    challenger_share: float,
    salt: str,
    scored_at: datetime,
) -> pd.DataFrame:
    row_ids = features_df[spec.id_column].reset_index(drop=True)
    hashes = ref_feature_hash(model_inputs(features_df, spec)).to_numpy()
    arms = (
        ref_assign_arms(row_ids, challenger_share, salt)
        if challenger is not None
        else np.full(len(row_ids), CHAMPION_ARM, dtype=object)
    )
    parts = []
    for arm, model in ((CHAMPION_ARM, champion), (CHALLENGER_ARM, challenger)):
        if model is None:
            continue
        parts.append(
            pd.DataFrame(
                {
                    "prediction_id": ref_prediction_ids(data_version, row_ids, model.version),
                    "data_version": data_version,
                    "row_id": row_ids.astype(str).to_numpy(),
                    "model_version": model.version,
                    "arm": arm,
                    "served": arms == arm,
                    "score": predict_scores(model.pipeline, features_df, spec),
                    "feature_hash": hashes,
                    "scored_at": pd.Timestamp(scored_at),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=list(LOG_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(LOG_COLUMNS)]


# --------------------------------------------------------------------------------------------------
# Comparison helpers
# --------------------------------------------------------------------------------------------------


def _outcome(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """The result of ``fn(*args)``, or the type and message of what it raised."""
    try:
        return "ok", fn(*args)
    except Exception as error:  # the errors themselves are compared
        return "raised", (type(error), str(error))


def _assert_same_hashes(rows: pd.DataFrame) -> None:
    new, ref = _outcome(feature_hash, rows), _outcome(ref_feature_hash, rows)
    assert new[0] == ref[0], (new, ref)
    if ref[0] == "raised":
        assert new[1] == ref[1]
        return
    got, expected = new[1], ref[1]
    assert got.tolist() == expected.tolist()
    assert got.index.equals(expected.index) and got.name == expected.name and got.dtype == expected.dtype


def _assert_same_routing(ids: pd.Series, salt: str, share: float) -> None:
    new, ref = _outcome(routing.routing_uniforms, ids, salt), _outcome(ref_routing_uniforms, ids, salt)
    assert new[0] == ref[0], (new, ref)
    if ref[0] == "raised":
        assert new[1] == ref[1]
        return
    assert new[1].dtype == ref[1].dtype and new[1].tolist() == ref[1].tolist()
    assert assign_arms(ids, share, salt).tolist() == ref_assign_arms(ids, share, salt).tolist()


# --------------------------------------------------------------------------------------------------
# Strategies: columns of many dtypes, with the awkward values
# --------------------------------------------------------------------------------------------------

AWKWARD_FLOATS = [0.0, -0.0, 1.0, -3.0, 0.1, 1e-5, 1e-4, 1e15, 1e16, 1e300, 5e-324, 2.0**53, -(2.0**53), 2.0**53 + 2]
AWKWARD_FLOATS += [2.0**63, 123456789012345.6, float("nan"), float("inf"), float("-inf")]
AWKWARD_TEXTS = ['"', "\\", "null", "1", "ü", "日本", "\n", "\x00", "\u2028", 'a"b', "", " x ", "NaN", "\U0001f600"]

floats = st.floats() | st.sampled_from(AWKWARD_FLOATS)
int64s = st.integers(-(2**63), 2**63 - 1)
texts = st.text(max_size=5) | st.sampled_from(AWKWARD_TEXTS)
naive_times = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1))
scalars = st.one_of(
    st.none(),
    st.just(pd.NA),
    st.just(pd.NaT),
    st.just(float("nan")),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    floats,
    texts,
    st.sampled_from([np.int8(-3), np.uint64(2**64 - 1), np.float32(0.1), np.float64(2.5), np.bool_(True)]),
    st.sampled_from([np.datetime64("2024-01-02T03:04:05"), np.datetime64("NaT")]),
    st.sampled_from([pd.Timestamp("2024-05-01 10:00", tz="UTC"), date(2020, 2, 29), time(1, 2, 3, 4)]),
    naive_times,
)
unsupported = st.sampled_from([Decimal("1.5"), Decimal("NaN"), complex(1, 2), pd.Timedelta("1D"), (1, 2), b"x"])


def _series(values: list[Any], dtype: Any) -> pd.Series:
    return pd.Series(values, dtype=dtype)


def column(n: int) -> st.SearchStrategy[pd.Series]:
    """One column of ``n`` rows, of one of many dtypes."""

    def values(element: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
        return st.lists(element, min_size=n, max_size=n)

    optional = st.none
    return st.one_of(
        values(int64s).map(lambda v: _series(v, "int64")),
        values(st.integers(0, 255)).map(lambda v: _series(v, "uint8")),
        values(st.integers(0, 2**64 - 1)).map(lambda v: _series(v, "uint64")),
        values(floats).map(lambda v: _series(v, "float64")),
        values(st.floats(width=32)).map(lambda v: _series(v, "float32")),
        values(st.booleans()).map(lambda v: _series(v, "bool")),
        values(int64s | optional()).map(lambda v: _series(v, "Int64")),
        values(st.booleans() | optional()).map(lambda v: _series(v, "boolean")),
        values(st.floats(allow_nan=False) | optional()).map(lambda v: _series(v, "Float64")),
        values(texts | optional()).map(lambda v: _series(v, "str")),
        values(texts | optional() | st.just(float("nan"))).map(lambda v: _series(v, object)),
        values(floats | optional()).map(lambda v: _series(v, object)),
        values(st.booleans()).map(lambda v: _series(v, object)),
        values(st.sampled_from(["a", "b", '"c"', "ü"]) | optional()).map(lambda v: _series(v, "category")),
        values(st.integers(-5, 5) | optional()).map(lambda v: _series(v, "category")),
        values(st.sampled_from([0.5, 1.0, -0.0]) | optional()).map(lambda v: _series(v, "category")),
        values(naive_times | optional()).map(lambda v: _series(v, "datetime64[ns]")),
        values(naive_times | optional()).map(lambda v: _series(v, "datetime64[us]")),
        values(naive_times | optional()).map(
            lambda v: _series(v, "datetime64[ns]").dt.tz_localize("Europe/Paris", ambiguous="NaT", nonexistent="NaT")
        ),
        values(naive_times | optional()).map(lambda v: _series(v, "datetime64[ns]").dt.tz_localize(UTC)),
        values(scalars).map(lambda v: _series(v, object)),
        values(scalars | unsupported).map(lambda v: _series(v, object)),
        values(st.sampled_from([timedelta(days=1), None])).map(lambda v: _series(v, "timedelta64[ns]")),
        values(st.sampled_from([pd.Period("2024-01", "M"), None])).map(lambda v: _series(v, "period[M]")),
    )


names = st.text(max_size=3) | st.sampled_from(['"q"', "ü", "a", "b", "B"]) | st.integers(0, 2)


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 8))
    cols = draw(st.lists(st.tuples(names, column(n)), max_size=5))
    frame = pd.DataFrame({i: s.reset_index(drop=True) for i, (_, s) in enumerate(cols)}, index=pd.RangeIndex(n))
    frame.columns = [name for name, _ in cols]
    if draw(st.booleans()):
        frame.index = pd.Index(draw(st.permutations(list(range(10, 10 + n)))), dtype="int64")
    return frame


# --------------------------------------------------------------------------------------------------
# Feature hash
# --------------------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=frames())
def test_feature_hash_equals_the_per_row_reference(rows: pd.DataFrame) -> None:
    _assert_same_hashes(rows)


@pytest.mark.parametrize(
    "rows",
    [
        pd.DataFrame(index=range(3)),
        pd.DataFrame({"a": pd.Series([], dtype="float64")}),
        pd.DataFrame([[1, 2]], columns=["a", "a"]),
        pd.DataFrame([[1, 2]], columns=[1, "1"]),
        pd.DataFrame({"b": [Decimal("1")], "a": [pd.Timedelta("1h")]}),  # the first column (by name) raises
        pd.DataFrame({"t": pd.Series([pd.Timedelta("1h"), pd.NaT])}),
        pd.DataFrame({"t": pd.Series([pd.NaT, pd.NaT], dtype="timedelta64[ns]")}),
        pd.DataFrame({"x": pd.Series([1.5, 2**53, -(2**53) - 2, 1e16, -0.0, np.nan, np.inf])}),
        pd.DataFrame({"x": pd.Series(["b", None, "a", "b"], dtype="category").cat.set_categories(["a", "b", "z"])}),
        pd.DataFrame({"x": pd.Series([pd.Timedelta("1D"), "a"], dtype="category")}),
        pd.DataFrame({"x": pd.Series([2**63 + 1, None], dtype="UInt64")}),
        pd.DataFrame({"x": pd.Series(["a", None], dtype=pd.StringDtype("python"))}),
        pd.DataFrame({"x": pd.Series(["a", None], dtype=pd.ArrowDtype(__import__("pyarrow").string()))}),
        pd.DataFrame({"x": pd.Series([1, None], dtype=pd.ArrowDtype(__import__("pyarrow").int64()))}),
        pd.DataFrame({"x": pd.Series([1 + 2j, 3j])}),
        pd.DataFrame({"x": pd.Series([pd.Interval(0, 1), pd.Interval(1, 2)])}),
        # A column name UTF-8 cannot encode (a lone surrogate: pandas' str Index refuses it, object holds it).
        pd.DataFrame([["a", "b"]], columns=pd.Index(["ok", "bad \ud800"], dtype=object), dtype=object),
        pd.DataFrame({"x": pd.Series(["fine", "lone \udc80 surrogate"], dtype=object)}),
        pd.DataFrame({"x": pd.Series([np.float64("nan"), np.datetime64("NaT"), pd.NA, None], dtype=object)}),
        pd.DataFrame({"x": pd.Series([True, 1, 1.0, "1", np.int64(1), np.True_], dtype=object)}),
    ],
    ids=lambda rows: "-".join(f"{c}:{t}" for c, t in rows.dtypes.items()) or "no-columns",
)
def test_feature_hash_edge_cases_equal_the_reference(rows: pd.DataFrame) -> None:
    _assert_same_hashes(rows)


# --------------------------------------------------------------------------------------------------
# Routing and key texts
# --------------------------------------------------------------------------------------------------

id_columns = st.one_of(
    st.lists(int64s, max_size=30).map(lambda v: _series(v, "int64")),
    st.lists(st.integers(0, 2**64 - 1), max_size=10).map(lambda v: _series(v, "uint64")),
    st.lists(st.integers(-100, 100) | st.none(), max_size=10).map(lambda v: _series(v, "Int64")),
    st.lists(texts, max_size=30).map(lambda v: _series(v, "str")),
    st.lists(texts | st.none(), max_size=10).map(lambda v: _series(v, "str")),
    st.lists(texts, max_size=30).map(lambda v: _series(v, object)),
    st.lists(floats, max_size=10).map(lambda v: _series(v, "float64")),
    st.lists(scalars, max_size=10).map(lambda v: _series(v, object)),
    st.lists(naive_times, max_size=5).map(lambda v: _series(v, "datetime64[ns]")),
)


@settings(max_examples=300, deadline=None)
@given(ids=id_columns, salt=st.text(max_size=8), share=st.floats(0, 1))
def test_routing_equals_the_per_row_reference(ids: pd.Series, salt: str, share: float) -> None:
    _assert_same_routing(ids, salt, share)


@settings(max_examples=300, deadline=None)
@given(ids=id_columns, prefix=st.text(max_size=5), suffix=st.text(max_size=5))
def test_key_bytes_equal_the_per_row_f_string(ids: pd.Series, prefix: str, suffix: str) -> None:
    assert list(key_bytes(prefix, ids, suffix)) == [f"{prefix}{v}{suffix}".encode() for v in ids.tolist()]


@settings(max_examples=200, deadline=None)
@given(ids=id_columns, version=st.integers(0, 10**6), data_version=st.text(max_size=12))
def test_prediction_ids_equal_the_per_row_reference(ids: pd.Series, version: int, data_version: str) -> None:
    expected = ref_prediction_ids(data_version, ids, version)
    assert scoring.prediction_ids(data_version, ids.astype(str), version).to_pylist() == expected


def test_routing_errors_equal_the_reference() -> None:
    for ids in (pd.Series([1.0, None]), pd.Series(["a", None], dtype="str"), pd.Series(["a", "b\ud800"], dtype=object)):
        _assert_same_routing(ids, "salt", 0.5)
    with pytest.raises(UnicodeEncodeError):
        routing.routing_uniforms(pd.Series(["b\ud800"], dtype=object), "salt")


def test_routing_of_100k_ids_equals_the_reference() -> None:
    ids = pd.Series(np.arange(100_000, dtype=np.int64) * 7919 - 10**9)
    _assert_same_routing(ids, "flights:v3->v4", 0.25)
    _assert_same_routing(ids.astype(str), "flights:v3->v4", 0.25)


# --------------------------------------------------------------------------------------------------
# The whole prediction log on the packaged synthetic data
# --------------------------------------------------------------------------------------------------

SCORED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def synthetic_spec() -> DatasetSpec:
    return load_spec("synthetic")


def _synthetic_features(spec: DatasetSpec, n: int, seed: int, *, missing: float = 0.0, **kwargs: Any) -> pd.DataFrame:
    """Features of a valid synthetic version; ``missing``: that share of income and region cells set to
    missing and of region cells to an unseen value (what scoring may meet after the gates, e.g. new data)."""
    raw = coerce_to_schema(synthetic.generate(n, seed=seed, **kwargs), spec)
    assert raw is not None
    features = build_features(raw, spec)
    if missing:
        rng = np.random.default_rng(seed)
        features.loc[rng.random(n) < missing, "income"] = np.nan
        features.loc[rng.random(n) < missing, "region"] = None
        features.loc[rng.random(n) < missing, "region"] = synthetic.NEW_REGION
    return features


@pytest.fixture(scope="module")
def synthetic_models(synthetic_spec: DatasetSpec) -> tuple[Pipeline, Pipeline]:
    train = _synthetic_features(synthetic_spec, 2000, seed=11)
    return train_candidate(train, synthetic_spec).pipeline, train_baseline(train, synthetic_spec).pipeline


def _assert_same_log(features: pd.DataFrame, spec: DatasetSpec, *models: Any, **kwargs: Any) -> None:
    new = prediction_log(features, spec, "synthetic__0123456789ab", *models, scored_at=SCORED_AT, **kwargs)
    ref = ref_prediction_log(features, spec, "synthetic__0123456789ab", *models, scored_at=SCORED_AT, **kwargs)
    pd.testing.assert_frame_equal(new, ref, check_exact=True)
    assert new.dtypes.tolist() == ref.dtypes.tolist()


@pytest.mark.parametrize(
    ("n", "seed", "defects"),
    [
        (3000, 1, {}),
        (1500, 2, {"shift": 1.0, "missing": 0.2}),
        (0, 3, {}),
    ],
)
@pytest.mark.parametrize("share", [None, 0.0, 0.3, 1.0])
def test_prediction_log_equals_the_per_row_reference_on_synthetic_data(
    synthetic_spec: DatasetSpec,
    synthetic_models: tuple[Pipeline, Pipeline],
    n: int,
    seed: int,
    defects: dict[str, Any],
    share: float | None,
) -> None:
    candidate, baseline = synthetic_models
    features = _synthetic_features(synthetic_spec, n, seed=seed, start_id=10_000 * seed, **defects)
    challenger = None if share is None else ScoringModel(4, candidate)
    for salt in ("synthetic:v4", "rollout-ü-7"):
        _assert_same_log(
            features, synthetic_spec, ScoringModel(3, baseline), challenger, challenger_share=share or 0.0, salt=salt
        )


def test_prediction_log_with_string_ids_equals_the_reference(
    synthetic_spec: DatasetSpec, synthetic_models: tuple[Pipeline, Pipeline]
) -> None:
    candidate, baseline = synthetic_models
    features = _synthetic_features(synthetic_spec, 500, seed=5)
    features[synthetic_spec.id_column] = "user-" + features[synthetic_spec.id_column].astype(str) + "-ü"
    models = (ScoringModel(1, baseline), ScoringModel(2, candidate))
    _assert_same_log(features, synthetic_spec, *models, challenger_share=0.5, salt="s")


def test_feature_hash_of_synthetic_model_inputs_and_raw_frame_equal_the_reference(synthetic_spec: DatasetSpec) -> None:
    raw = synthetic.generate(5000, seed=9, null_share=0.1, new_category=True)
    _assert_same_hashes(raw)  # raw dtypes: int64, datetime64[ns, UTC], float64 with NaN, str
    _assert_same_hashes(raw.astype({"region": "category", "plan": "category", "age": "Int64"}))
    features = _synthetic_features(synthetic_spec, 5000, seed=9, missing=0.1)
    _assert_same_hashes(model_inputs(features, synthetic_spec))
