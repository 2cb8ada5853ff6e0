"""Tests of the pure ML core: features and split, profile, training, metrics, evaluation and model gates."""

import hashlib
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from mlops_assets.ml.evaluation import (
    UNDEFINED_REASON,
    BootstrapInterval,
    Evaluation,
    LiftInterval,
    classification_metrics,
    evaluate,
)
from mlops_assets.ml.features import (
    HOLDOUT,
    LABEL_COLUMN,
    OTHER_CATEGORY,
    PROFILE_TOP_CATEGORIES,
    SPLIT_COLUMN,
    TRAIN,
    FeatureProfile,
    build_features,
    feature_columns,
    gate_features_allowlisted,
    gate_features_finite,
    leakage_columns,
    profile_features,
)
from mlops_assets.ml.model_gates import (
    evaluation_gates,
    gate_beats_baseline,
    gate_metric_above_floor,
    gate_non_inferior_to_production,
)
from mlops_assets.ml.policy import policy_from_dict
from mlops_assets.ml.spec import DatasetSpec, spec_from_dict
from mlops_assets.ml.training import (
    build_pipeline,
    predict_scores,
    train_baseline,
    train_candidate,
)

pytestmark = pytest.mark.core

# --------------------------------------------------------------------------------------------------
# Fixtures: a small spec with a string label, an order column, a slice, a nullable numeric, a categorical
# --------------------------------------------------------------------------------------------------

SPEC_DATA: dict[str, Any] = {
    "name": "toy",
    "id_column": "id",
    "order_column": "ts",
    "label": {"column": "outcome", "positive": "yes", "values": ["no", "yes"]},
    "features": ["x_num", "cat", "x_null", "x_int", "flag"],
    "forbidden_features": ["leak"],
    "slices": ["region"],
    "protected": ["group"],
    "policy": {"holdout_fraction": 0.2, "random_seed": 7},
    "columns": {
        "id": {"type": "int", "unique": True},
        "ts": {"type": "datetime"},
        "x_num": {"type": "float"},
        "x_null": {"type": "float", "nullable": True},
        "x_int": {"type": "int"},
        "flag": {"type": "bool"},
        "cat": {"type": "category", "categories": ["a", "b", "c", "d"], "nullable": True},
        "region": {"type": "string"},
        "group": {"type": "string"},
        "leak": {"type": "float"},
        "notes": {"type": "string"},
        "outcome": {"type": "string"},
    },
}


def make_spec(**overrides: Any) -> DatasetSpec:
    return spec_from_dict({**SPEC_DATA, **overrides}, source="test_ml_core.py")


def make_raw(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Typed data as it leaves validation; the label depends on x_num and cat so models can learn it."""
    rng = np.random.default_rng(seed)
    x_num = rng.normal(size=n)
    cat = rng.choice(["a", "b", "c", "d"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    logit = 1.5 * x_num + np.select([cat == "a", cat == "b"], [1.0, -1.0], 0.0)
    positive = rng.random(n) < 1 / (1 + np.exp(-logit))
    x_null = rng.normal(size=n)
    x_null[rng.random(n) < 0.15] = np.nan
    cat_obj = cat.astype(object)
    cat_obj[rng.random(n) < 0.05] = None
    # Hourly timestamps with repeats, so ties on the order column must be broken by id.
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, n // 3, size=n), unit="h")
    return pd.DataFrame(
        {
            "id": rng.permutation(np.arange(1, n + 1)).astype("int64"),
            "ts": ts,
            "x_num": x_num,
            "x_null": x_null,
            "x_int": rng.integers(0, 100, size=n).astype("int64"),
            "flag": rng.random(n) < 0.5,
            "cat": pd.Series(cat_obj, dtype="str"),
            "region": pd.Series(rng.choice(["north", "south", "east"], size=n), dtype="str"),
            "group": pd.Series(rng.choice(["g1", "g2"], size=n), dtype="str"),
            "leak": positive.astype(float) + rng.normal(scale=0.01, size=n),
            "notes": pd.Series(["free text"] * n, dtype="str"),
            "outcome": pd.Series(np.where(positive, "yes", "no"), dtype="str"),
        }
    )


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    return make_spec()


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return make_raw()


@pytest.fixture(scope="module")
def features(raw: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    return build_features(raw, spec)


# --------------------------------------------------------------------------------------------------
# Features and split
# --------------------------------------------------------------------------------------------------


def test_features_keep_only_allowlist_and_bookkeeping(features: pd.DataFrame, spec: DatasetSpec) -> None:
    assert list(features.columns) == [
        "id",
        "ts",
        "x_num",
        "cat",
        "x_null",
        "x_int",
        "flag",
        "region",
        "group",
        LABEL_COLUMN,
        SPLIT_COLUMN,
    ]
    assert not {"leak", "notes", "outcome"} & set(features.columns)
    assert feature_columns(spec) == ["x_num", "x_null", "x_int", "flag", "cat"]


def test_label_is_one_for_the_positive_string_class(raw: pd.DataFrame, features: pd.DataFrame) -> None:
    expected = raw.set_index("id")["outcome"].eq("yes").astype(int)
    got = features.set_index("id")[LABEL_COLUMN]
    assert got.dtype == np.int64
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)


def test_label_outside_values_raises(raw: pd.DataFrame, spec: DatasetSpec) -> None:
    bad = raw.copy()
    bad.loc[3, "outcome"] = "maybe"
    with pytest.raises(ValueError, match=r"outcome.*maybe"):
        build_features(bad, spec)


def test_split_is_out_of_time_with_the_right_ratio(features: pd.DataFrame, spec: DatasetSpec) -> None:
    n = len(features)
    holdout = features[features[SPLIT_COLUMN] == HOLDOUT]
    train = features[features[SPLIT_COLUMN] == TRAIN]
    assert len(holdout) == round(n * spec.policy.evaluation.holdout_fraction)
    assert len(train) + len(holdout) == n
    # Out-of-time: every holdout row is at least as late as every train row, ties broken by the id hash.
    assert train["ts"].max() <= holdout["ts"].min()
    # The frame is sorted by (order column, id hash).
    keys = list(zip(features["ts"], [_id_hash(i, 7) for i in features["id"]], strict=True))
    assert keys == sorted(keys)
    last_train = keys[len(train) - 1]
    assert all(key > last_train for key in keys[len(train) :])
    assert list(features.index) == list(range(n))


def _id_hash(value: Any, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{value}".encode()).digest()[:8], "big")


def test_split_breaks_order_ties_by_id_hash(spec: DatasetSpec) -> None:
    raw = make_raw(n=50, seed=3)
    raw["ts"] = pd.Timestamp("2024-01-01", tz="UTC")
    out = build_features(raw, spec)
    holdout_ids = sorted(out.loc[out[SPLIT_COLUMN] == HOLDOUT, "id"])
    assert holdout_ids == sorted(sorted(raw["id"], key=lambda i: _id_hash(i, 7))[-10:])


def test_split_is_deterministic_and_independent_of_row_order(raw: pd.DataFrame, spec: DatasetSpec) -> None:
    first = build_features(raw, spec)
    again = build_features(raw, spec)
    shuffled = build_features(raw.sample(frac=1.0, random_state=11).reset_index(drop=True), spec)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, shuffled)


def test_hash_split_without_order_column(raw: pd.DataFrame) -> None:
    spec = make_spec(order_column=None)
    out = build_features(raw, spec)
    share = (out[SPLIT_COLUMN] == HOLDOUT).mean()
    assert 0.12 < share < 0.28
    # Sorted by the id hash (not the id), so the CV folds are not cut along the id either.
    assert [_id_hash(i, 7) for i in out["id"]] == sorted(_id_hash(i, 7) for i in out["id"])
    shuffled = build_features(raw.sample(frac=1.0, random_state=5), spec)
    pd.testing.assert_frame_equal(out, shuffled)
    # A row keeps its split when other rows come and go (the hash depends on the id alone).
    subset = build_features(raw.iloc[:200], spec)
    merged = subset.merge(out, on="id", suffixes=("_sub", "_all"))
    assert (merged[f"{SPLIT_COLUMN}_sub"] == merged[f"{SPLIT_COLUMN}_all"]).all()


def test_missing_required_column_is_named(raw: pd.DataFrame, spec: DatasetSpec) -> None:
    with pytest.raises(ValueError, match="x_int"):
        build_features(raw.drop(columns=["x_int"]), spec)


# --------------------------------------------------------------------------------------------------
# Feature gates
# --------------------------------------------------------------------------------------------------


def test_allowlist_gate_passes_on_built_features(features: pd.DataFrame, spec: DatasetSpec) -> None:
    result = gate_features_allowlisted(features, spec)
    assert result.passed, result.message
    assert result.name == "features_allowlisted"
    assert result.evidence["leaking_columns"] == []
    assert set(result.evidence["model_inputs"]) == set(spec.features)


def test_leakage_columns() -> None:
    spec = make_spec()
    assert leakage_columns(["x_num", "cat"], spec) == []
    assert leakage_columns(["x_num", "leak", "notes"], spec) == ["leak", "notes"]


def test_allowlist_gate_fails_when_forbidden_column_is_a_model_input(raw: pd.DataFrame) -> None:
    # The spec author put a post-outcome column in the allowlist itself.
    spec = make_spec(features=[*SPEC_DATA["features"], "leak"])
    result = gate_features_allowlisted(build_features(raw, spec), spec)
    assert not result.passed
    assert result.evidence["forbidden"] == ["leak"]
    assert "leak" in result.message


def test_allowlist_gate_fails_on_extra_column_in_features(features: pd.DataFrame, spec: DatasetSpec) -> None:
    leaky = features.assign(leak=1.0, outcome="yes")
    result = gate_features_allowlisted(leaky, spec)
    assert not result.passed
    assert result.evidence["forbidden"] == ["leak"]
    assert result.evidence["not_allowlisted"] == ["leak", "outcome"]


def test_finite_gate(features: pd.DataFrame, spec: DatasetSpec) -> None:
    ok = gate_features_finite(features, spec)
    assert ok.passed, ok.message  # x_null has NaN, but it is nullable
    with_inf = features.copy()
    with_inf.loc[0, "x_num"] = np.inf
    with_inf.loc[1, "x_null"] = -np.inf
    bad = gate_features_finite(with_inf, spec)
    assert not bad.passed
    assert bad.observed == 2
    assert {c["column"] for c in bad.evidence["columns"]} == {"x_num", "x_null"}
    with_nan = features.copy()
    with_nan.loc[0, "x_num"] = np.nan
    nan_result = gate_features_finite(with_nan, spec)
    assert not nan_result.passed
    assert "x_num" in nan_result.message


# --------------------------------------------------------------------------------------------------
# Profile
# --------------------------------------------------------------------------------------------------


def test_profile_json_round_trip_and_stable_id(features: pd.DataFrame, raw: pd.DataFrame, spec: DatasetSpec) -> None:
    profile = profile_features(features, spec)
    text = json.dumps(profile.to_dict(), allow_nan=False)
    back = FeatureProfile.from_dict(json.loads(text))
    assert back == profile
    assert back.profile_id == profile.profile_id
    assert len(profile.profile_id) == 16
    shuffled = build_features(raw.sample(frac=1.0, random_state=2), spec)
    assert profile_features(shuffled, spec).profile_id == profile.profile_id
    changed = features.copy()
    changed["x_num"] = changed["x_num"].where(changed.index != 0, changed["x_num"] + 1.0)  # row 0 is train
    assert profile_features(changed, spec).profile_id != profile.profile_id


def test_profile_is_computed_on_train_rows(features: pd.DataFrame, spec: DatasetSpec) -> None:
    profile = profile_features(features, spec)
    train = features[features[SPLIT_COLUMN] == TRAIN]
    assert profile.n_rows == len(train)
    assert profile.label_positive_rate == pytest.approx(train[LABEL_COLUMN].mean())
    by_name = {p.name: p for p in profile.numeric}
    assert list(by_name) == ["x_num", "x_null", "x_int", "flag"]
    x_null = by_name["x_null"]
    assert x_null.null_share == pytest.approx(train["x_null"].isna().mean())
    assert sum(x_null.counts) == train["x_null"].notna().sum()
    assert len(x_null.counts) == len(x_null.edges) - 1
    assert list(x_null.edges) == sorted(set(x_null.edges))
    assert x_null.mean == pytest.approx(train["x_null"].mean())
    assert by_name["flag"].edges == (0.0, 1.0)
    (cat,) = profile.categorical
    assert cat.null_share + sum(s for _, s in cat.shares) == pytest.approx(1.0)
    assert dict(cat.shares)["a"] == pytest.approx((train["cat"] == "a").mean())


def test_profile_pools_long_tail_and_handles_constants() -> None:
    spec = make_spec(features=["x_num", "region"])
    n = 300
    frame = pd.DataFrame(
        {
            "x_num": np.full(n, 2.5),
            "region": pd.Series([f"r{i % 70:02d}" for i in range(n)], dtype="str"),
            LABEL_COLUMN: np.arange(n) % 2,
        }
    )
    profile = profile_features(frame, spec, split=None)
    (x_num,) = profile.numeric
    assert x_num.edges == (2.5, 2.5)
    assert x_num.counts == (n,)
    assert x_num.std == 0.0
    (region,) = profile.categorical
    assert len(region.shares) == PROFILE_TOP_CATEGORIES + 1
    assert region.shares[-1][0] == OTHER_CATEGORY
    assert sum(s for _, s in region.shares) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "logistic_regression", "dummy"])
def test_pipeline_scores_unseen_categories_and_missing_values(
    features: pd.DataFrame, spec: DatasetSpec, estimator: str
) -> None:
    model = train_candidate(features, spec, estimator=estimator)
    assert model.n_train == int((features[SPLIT_COLUMN] == TRAIN).sum())
    assert model.feature_columns == tuple(feature_columns(spec))
    odd = features.head(4).copy()
    odd["cat"] = pd.Series(["never_seen", None, "a", "zzz"], dtype="str", index=odd.index)
    odd.loc[odd.index[0], "x_num"] = np.nan
    odd.loc[odd.index[1], "x_null"] = np.nan
    odd["x_null"] = odd["x_null"].astype("Float64")  # a nullable extension dtype must work too
    scores = predict_scores(model.pipeline, odd, spec)
    assert scores.shape == (4,)
    assert np.isfinite(scores).all()
    assert ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.filterwarnings("error")
def test_all_missing_nullable_column_in_train_is_kept(features: pd.DataFrame, spec: DatasetSpec) -> None:
    empty = features.assign(x_null=np.nan)
    model = train_candidate(empty, spec, estimator="logistic_regression")
    scores = predict_scores(model.pipeline, features, spec)  # present values at scoring time
    assert np.isfinite(scores).all()


def test_pipeline_ignores_columns_that_are_not_features(features: pd.DataFrame, spec: DatasetSpec) -> None:
    model = train_candidate(features, spec)
    shuffled_columns = features[list(reversed(features.columns))].assign(leak=123.0)
    np.testing.assert_array_equal(
        predict_scores(model.pipeline, features, spec), predict_scores(model.pipeline, shuffled_columns, spec)
    )


@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "logistic_regression"])
def test_training_twice_gives_identical_scores(features: pd.DataFrame, spec: DatasetSpec, estimator: str) -> None:
    first = train_candidate(features, spec, estimator=estimator)
    second = train_candidate(features, spec, estimator=estimator)
    np.testing.assert_array_equal(
        predict_scores(first.pipeline, features, spec), predict_scores(second.pipeline, features, spec)
    )
    assert first.params == second.params
    assert first.params["random_state"] == spec.policy.evaluation.random_seed


def test_models_learn_the_signal(features: pd.DataFrame, spec: DatasetSpec) -> None:
    holdout = features[features[SPLIT_COLUMN] == HOLDOUT]
    for model in (train_candidate(features, spec), train_baseline(features, spec)):
        auc = skm.roc_auc_score(holdout[LABEL_COLUMN], predict_scores(model.pipeline, holdout, spec))
        assert auc > 0.7, model.estimator
    assert train_baseline(features, spec).estimator == "logistic_regression"


def test_single_class_train_raises_a_clear_error(features: pd.DataFrame, spec: DatasetSpec) -> None:
    one_class = features.copy()
    one_class[LABEL_COLUMN] = 0
    n_train = int((one_class[SPLIT_COLUMN] == TRAIN).sum())
    with pytest.raises(ValueError, match=rf"'outcome'.*'yes': 0, negative 'no': {n_train}"):
        train_candidate(one_class, spec)


def test_unknown_estimator_and_params_raise(spec: DatasetSpec) -> None:
    with pytest.raises(ValueError, match="unknown estimator"):
        build_pipeline(spec, "xgboost", seed=0)
    with pytest.raises(ValueError, match="invalid parameters"):
        build_pipeline(spec, "dummy", {"no_such_param": 1}, seed=0)


def test_params_override_defaults(spec: DatasetSpec) -> None:
    pipeline = build_pipeline(spec, "hist_gradient_boosting", {"max_iter": 7}, seed=3)
    model = pipeline.named_steps["model"]
    assert model.max_iter == 7
    assert model.random_state == 3
    assert model.early_stopping is False


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------


def test_metrics_hand_computed_case() -> None:
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    m = classification_metrics(y, s)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["pr_auc"] == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert m["accuracy"] == pytest.approx(0.75)  # predicted [0, 0, 0, 1]
    assert m["f1"] == pytest.approx(2 / 3)  # precision 1, recall 0.5
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.35, 0.8])))
    assert m["n"] == 4 and m["n_positive"] == 2 and m["positive_rate"] == 0.5
    assert UNDEFINED_REASON not in m


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_sklearn_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(500) < 0.3).astype(int)
    s = np.clip(0.3 * y + rng.random(500) * 0.7, 0.0, 1.0)
    m = classification_metrics(y, s, threshold=0.4)
    predicted = (s >= 0.4).astype(int)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, s))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert m["f1"] == pytest.approx(skm.f1_score(y, predicted))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, s))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, s))
    assert m["predicted_positive_rate"] == pytest.approx(predicted.mean())


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_metrics_are_nan_with_a_reason(label: int) -> None:
    m = classification_metrics(np.full(5, label), np.linspace(0.1, 0.9, 5))
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])
    assert "undefined" in m[UNDEFINED_REASON]
    assert math.isfinite(m["log_loss"]) and math.isfinite(m["brier"])


def test_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="zero rows"):
        classification_metrics(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="0/1"):
        classification_metrics(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classification_metrics(np.array([0, 1]), np.array([0.1, 1.2]))


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def test_evaluate_scores_all_models_on_the_same_holdout(features: pd.DataFrame, spec: DatasetSpec) -> None:
    candidate = train_candidate(features, spec).pipeline
    baseline = train_baseline(features, spec).pipeline
    production = train_candidate(features, spec, estimator="dummy").pipeline
    ev = evaluate(features, spec, candidate, baseline, production)
    n_holdout = int((features[SPLIT_COLUMN] == HOLDOUT).sum())
    assert ev.n_holdout == n_holdout
    assert ev.candidate["n"] == ev.baseline["n"] == ev.production["n"] == n_holdout  # type: ignore[index]
    assert ev.production_headline == pytest.approx(0.5)  # a constant score ranks nothing
    assert ev.headline_metric == "roc_auc"
    assert {row["value"] for row in ev.slices} == {"north", "south", "east"}
    assert sum(row["n"] for row in ev.slices) == n_holdout
    assert all(row["slice_column"] == "region" and row["metric"] == "roc_auc" for row in ev.slices)
    data = ev.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert Evaluation.from_dict(json.loads(text)) == ev
    first_run = evaluate(features, spec, candidate, baseline, None)
    assert first_run.production is None and first_run.to_dict()["production"] is None


def test_single_class_holdout_gives_nan_and_gates_fail_closed(features: pd.DataFrame, spec: DatasetSpec) -> None:
    candidate = train_candidate(features, spec).pipeline
    baseline = train_baseline(features, spec).pipeline
    one_class = features.copy()
    one_class.loc[one_class[SPLIT_COLUMN] == HOLDOUT, LABEL_COLUMN] = 1
    ev = evaluate(one_class, spec, candidate, baseline)
    assert math.isnan(ev.candidate_headline)
    assert UNDEFINED_REASON in ev.candidate
    assert ev.to_dict()["candidate"]["roc_auc"] is None
    floor, lift, prod = evaluation_gates(ev, spec.policy.gates, spec.policy.evaluation)[:3]
    assert not floor.passed and "undefined" in floor.message
    assert not lift.passed
    assert prod.passed  # first run: nothing to compare with


# --------------------------------------------------------------------------------------------------
# Model gates
# --------------------------------------------------------------------------------------------------

POLICY = policy_from_dict(dict(metric_floor=0.6, min_lift_over_baseline=0.0, non_inferiority_margin=0.01))


def crafted(candidate: float, baseline: float = 0.6, production: float | None = None) -> Evaluation:
    def metrics(value: float) -> dict[str, Any]:
        out: dict[str, Any] = {"roc_auc": value, "pr_auc": value, "n": 100, "n_positive": 30}
        if math.isnan(value):
            out[UNDEFINED_REASON] = "all 100 rows are negative"
        return out

    # The production and baseline gates decide on interval lower bounds; zero-width intervals at the point
    # differences keep these cases about the point estimates.
    bootstrap = None
    if production is not None:
        delta = candidate - production
        bootstrap = BootstrapInterval("roc_auc", delta, delta, delta, 0.95, 1000, 1000, 0, 0)
    lift = candidate - baseline
    return Evaluation(
        n_holdout=100,
        headline_metric="roc_auc",
        candidate=metrics(candidate),
        baseline=metrics(baseline),
        production=None if production is None else metrics(production),
        bootstrap=bootstrap,
        lift=LiftInterval("roc_auc", lift, lift, lift, 0.95, "delong"),
    )


@pytest.mark.parametrize(
    ("case", "ev", "expected"),
    [
        ("no production", crafted(0.70), (True, True, True)),
        ("better than production", crafted(0.72, production=0.70), (True, True, True)),
        ("worse within epsilon", crafted(0.70, production=0.705), (True, True, True)),
        ("worse by exactly epsilon", crafted(0.70, production=0.71), (True, True, True)),
        ("worse beyond epsilon", crafted(0.70, production=0.72), (True, True, False)),
        ("equal to baseline", crafted(0.65, baseline=0.65), (True, False, True)),
        ("below baseline", crafted(0.64, baseline=0.65), (True, False, True)),
        ("below floor", crafted(0.59, baseline=0.5), (False, True, True)),
        ("at floor", crafted(0.6, baseline=0.5), (True, True, True)),
        ("NaN metric", crafted(math.nan, baseline=math.nan, production=0.7), (False, False, False)),
    ],
)
def test_model_gates(case: str, ev: Evaluation, expected: tuple[bool, bool, bool]) -> None:
    results = evaluation_gates(ev, POLICY.gates, POLICY.evaluation)[:3]
    assert [r.name for r in results] == ["metric_above_floor", "beats_baseline", "non_inferior_to_production"]
    assert tuple(r.passed for r in results) == expected, [r.message for r in results]
    for r in results:
        assert r.condition and r.message
        json.dumps(dict(r.evidence), allow_nan=False)


def test_gate_details() -> None:
    first = gate_non_inferior_to_production(crafted(0.7), POLICY.gates, POLICY.evaluation)
    assert first.message == "no model in production: first-run, change threshold skipped"
    assert first.evidence["first_run"] is True
    worse = gate_non_inferior_to_production(crafted(0.70, production=0.72), POLICY.gates, POLICY.evaluation)
    assert worse.observed == pytest.approx(-0.02) and worse.threshold == -0.01
    assert worse.evidence["first_run"] is False
    assert "candidate roc_auc - production roc_auc >= -0.01" in worse.condition
    nan = gate_metric_above_floor(crafted(math.nan), POLICY.gates, POLICY.evaluation)
    assert nan.observed is None and "all 100 rows are negative" in nan.message
    assert (
        gate_metric_above_floor(crafted(0.61), POLICY.gates, POLICY.evaluation).condition == "candidate roc_auc >= 0.6"
    )


def test_beats_baseline_with_a_required_lift() -> None:
    policy = POLICY.with_overrides(dict(min_lift_over_baseline=0.05))
    assert gate_beats_baseline(
        crafted(0.75, baseline=0.70), policy.gates, policy.evaluation
    ).passed  # 0.0499999... counts as 0.05
    assert not gate_beats_baseline(crafted(0.74, baseline=0.70), policy.gates, policy.evaluation).passed
    assert ">= 0.05" in gate_beats_baseline(crafted(0.74, baseline=0.70), policy.gates, policy.evaluation).condition
    assert "> 0.0" in gate_beats_baseline(crafted(0.74, baseline=0.70), POLICY.gates, POLICY.evaluation).condition


def test_tuned_training_is_reproducible_and_records_the_search():
    from mlops_assets.demo_data import synthetic
    from mlops_assets.ml.features import build_features
    from mlops_assets.ml.spec import load_spec
    from mlops_assets.ml.training import predict_scores, tune_and_train
    from mlops_assets.ml.validation import coerce_to_schema

    spec = load_spec("synthetic")
    frame = build_features(coerce_to_schema(synthetic.generate(1500, seed=3), spec), spec)
    first, search = tune_and_train(frame, spec)
    second, search_again = tune_and_train(frame, spec)
    assert np.array_equal(predict_scores(first.pipeline, frame, spec), predict_scores(second.pipeline, frame, spec))
    assert search is not None and search_again is not None
    assert search.best_params == search_again.best_params
    assert {tuple(r["params"].items()) for r in search.results} == {(("max_leaf_nodes", 7),), (("max_leaf_nodes", 15),)}
    best = max(search.results, key=lambda r: r["mean_score"])
    assert best["params"] == search.best_params and best["rank"] == 1
    assert first.params["max_leaf_nodes"] == search.best_params["max_leaf_nodes"]


def test_search_reports_progress_after_every_fit_and_gives_the_same_model() -> None:
    from mlops_assets.demo_data import synthetic
    from mlops_assets.ml.features import build_features
    from mlops_assets.ml.spec import load_spec
    from mlops_assets.ml.training import predict_scores, tune_and_train
    from mlops_assets.ml.validation import coerce_to_schema

    spec = load_spec("synthetic")
    frame = build_features(coerce_to_schema(synthetic.generate(1500, seed=3), spec), spec)
    lines: list[str] = []
    reported, search = tune_and_train(frame, spec, progress=lines.append)
    silent, search_silent = tune_and_train(frame, spec)
    assert search is not None and search_silent is not None
    fits = len(search.results) * sum(1 for f in search.folds if f["used"])
    # One line to start, one per scored fit (the last says n/n), one when the best is refitted.
    assert lines[0].startswith(f"search: {len(search.results)} combinations")
    assert [line.split(" fits scored")[0] for line in lines[1:-1]] == [
        f"search: {i}/{fits}" for i in range(1, fits + 1)
    ]
    assert lines[-1].startswith("search done in")
    # Reporting changes nothing: same scores ranked, same model.
    assert [r["mean_score"] for r in search.results] == [r["mean_score"] for r in search_silent.results]
    assert np.array_equal(predict_scores(reported.pipeline, frame, spec), predict_scores(silent.pipeline, frame, spec))


def test_model_inputs_are_the_same_from_str_and_from_object_categorical_columns(
    features: pd.DataFrame, spec: DatasetSpec
) -> None:
    """The str-dtype fast path (no per-row conversion) gives exactly what the general path gives."""
    from mlops_assets.ml.features import model_inputs

    as_str = features.copy()
    as_object = features.copy()
    for name in spec.categorical_features:
        values = pd.Series((["a", None, "b", "NA"] * len(features))[: len(features)], index=features.index)
        as_str[name] = values.astype("str")
        as_object[name] = values.astype(object)
    assert all(isinstance(as_str[n].dtype, pd.StringDtype) for n in spec.categorical_features)
    fast, general = model_inputs(as_str, spec), model_inputs(as_object, spec)
    pd.testing.assert_frame_equal(fast, general, check_exact=True)
    for name in spec.categorical_features:
        assert fast[name].dtype == object and fast[name].isna().sum() == (as_object[name].isna()).sum()
        assert {type(v) for v in fast[name].dropna()} == {str}
