"""Training: sklearn pipelines that hold all preprocessing, so the artifact alone can score raw features.

Only standard sklearn classes are used inside the pipeline (no lambdas, no custom transformers), because
the artifacts are serialised with skops under an allowlist of sklearn/numpy types. Training is seeded by
``spec.policy.random_seed`` and reproducible: the same features frame and seed give the same scores.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops_assets.ml.features import LABEL_COLUMN, SPLIT_COLUMN, TRAIN, feature_columns, model_inputs
from mlops_assets.ml.spec import DatasetSpec

ESTIMATORS: tuple[str, ...] = ("hist_gradient_boosting", "logistic_regression", "dummy")
DEFAULT_ESTIMATOR = "hist_gradient_boosting"
BASELINE_ESTIMATOR = "logistic_regression"
MISSING_CATEGORY = "__missing__"
# Categories seen fewer times than this in train are pooled into one "infrequent" column; at scoring
# time unseen categories map to that column too (or to all zeros when nothing was infrequent).
MIN_CATEGORY_FREQUENCY = 10
# Caps the one-hot width of high-cardinality columns so training stays fast and dense memory bounded.
MAX_CATEGORIES = 50

# Early stopping is off: "auto" would switch it on above 10k rows and carve out a validation set, so the
# model would depend on the data size in a non-obvious way. A fixed number of small steps, leaf-size
# floor and L2 regularisation keep it from overfitting instead.
_DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "hist_gradient_boosting": {
        "learning_rate": 0.05,
        "max_iter": 200,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 40,
        "l2_regularization": 1.0,
        "early_stopping": False,
    },
    # lbfgs on standardised numerics and one-hot categoricals converges well within this budget.
    "logistic_regression": {"C": 1.0, "max_iter": 5000, "tol": 1e-4},
    "dummy": {"strategy": "prior"},
}
_LINEAR = frozenset({"logistic_regression"})


@dataclass(frozen=True)
class TrainedModel:
    """A fitted pipeline and how it was made.

    Attributes:
        pipeline: Preprocessing + estimator, fitted on the train rows.
        estimator: Estimator key (``hist_gradient_boosting``, ``logistic_regression``, ``dummy``).
        params: The estimator's effective constructor parameters (defaults merged with overrides).
        n_train: Number of train rows.
        feature_columns: The model inputs, in the order the pipeline expects.
        train_seconds: Wall-clock fit time (informational; the only non-deterministic field).
    """

    pipeline: Pipeline
    estimator: str
    params: dict[str, Any]
    n_train: int
    feature_columns: tuple[str, ...]
    train_seconds: float


def estimator_params(estimator: str, params: Mapping[str, Any] | None, seed: int) -> dict[str, Any]:
    """Effective constructor parameters: defaults, then ``random_state=seed``, then the overrides.

    Args:
        estimator: Estimator key.
        params: Overrides (an explicit ``random_state`` here wins over ``seed``).
        seed: The random seed.

    Returns:
        The parameters passed to the estimator's constructor.

    Raises:
        ValueError: the estimator key is unknown.
    """
    if estimator not in _DEFAULT_PARAMS:
        raise ValueError(f"unknown estimator {estimator!r}; known: {list(ESTIMATORS)}")
    return {**_DEFAULT_PARAMS[estimator], "random_state": seed, **dict(params or {})}


def _make_estimator(estimator: str, params: dict[str, Any]) -> Any:
    cls = {
        "hist_gradient_boosting": HistGradientBoostingClassifier,
        "logistic_regression": LogisticRegression,
        "dummy": DummyClassifier,
    }[estimator]
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"invalid parameters for estimator {estimator!r}: {exc}") from exc


def build_pipeline(
    spec: DatasetSpec,
    estimator: str = DEFAULT_ESTIMATOR,
    params: Mapping[str, Any] | None = None,
    *,
    seed: int,
) -> Pipeline:
    """Build an unfitted pipeline: column preprocessing, then the estimator.

    Numeric features are median-imputed (and standardised for linear models); categorical features are
    imputed with ``"__missing__"`` and one-hot encoded with infrequent pooling, so unseen categories and
    missing values at scoring time never raise.

    Args:
        spec: The dataset spec (its feature columns select the model inputs).
        estimator: ``hist_gradient_boosting`` (default), ``logistic_regression`` or ``dummy``.
        params: Estimator parameter overrides.
        seed: Random seed for the estimator.

    Returns:
        The pipeline with steps ``preprocess`` and ``model``.

    Raises:
        ValueError: unknown estimator or invalid parameters.
    """
    effective = estimator_params(estimator, params, seed)
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
    if estimator in _LINEAR:
        numeric_steps.append(("scale", StandardScaler()))
    categorical_steps: list[tuple[str, Any]] = [
        ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
        (
            "onehot",
            OneHotEncoder(
                handle_unknown="infrequent_if_exist",
                min_frequency=MIN_CATEGORY_FREQUENCY,
                max_categories=MAX_CATEGORIES,
                sparse_output=False,
            ),
        ),
    ]
    transformers: list[tuple[str, Any, list[str]]] = []
    if spec.numeric_features:
        transformers.append(("numeric", Pipeline(numeric_steps), list(spec.numeric_features)))
    if spec.categorical_features:
        transformers.append(("categorical", Pipeline(categorical_steps), list(spec.categorical_features)))
    preprocess = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", preprocess), ("model", _make_estimator(estimator, effective))])


def _train_rows(features_df: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, np.ndarray]:
    for column in (SPLIT_COLUMN, LABEL_COLUMN):
        if column not in features_df.columns:
            raise ValueError(f"features frame lacks {column!r}; build it with build_features()")
    train = features_df[features_df[SPLIT_COLUMN] == TRAIN]
    y = train[LABEL_COLUMN].to_numpy(dtype=np.int64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        negative = next((v for v in spec.label.values if v != spec.label.positive), None)
        raise ValueError(
            f"cannot train on spec {spec.name!r}: the {len(y)} train rows of label column {spec.label.column!r} "
            f"hold a single class (positive {spec.label.positive!r}: {n_pos}, negative {negative!r}: {n_neg}); "
            "both classes are needed"
        )
    return model_inputs(train, spec), y


def train_candidate(
    features_df: pd.DataFrame,
    spec: DatasetSpec,
    estimator: str = DEFAULT_ESTIMATOR,
    params: Mapping[str, Any] | None = None,
) -> TrainedModel:
    """Fit a candidate model on the train rows, seeded by ``spec.policy.random_seed``.

    Args:
        features_df: A features frame from :func:`~mlops_assets.ml.features.build_features`.
        spec: The dataset spec.
        estimator: Estimator key.
        params: Estimator parameter overrides.

    Returns:
        The trained model.

    Raises:
        ValueError: the train rows hold a single class (the message names the label column and the
            count of each class), or the estimator/parameters are invalid.
    """
    seed = spec.policy.random_seed
    pipeline = build_pipeline(spec, estimator, params, seed=seed)
    X, y = _train_rows(features_df, spec)
    start = time.perf_counter()
    pipeline.fit(X, y)
    elapsed = time.perf_counter() - start
    return TrainedModel(
        pipeline=pipeline,
        estimator=estimator,
        params=estimator_params(estimator, params, seed),
        n_train=len(y),
        feature_columns=tuple(feature_columns(spec)),
        train_seconds=elapsed,
    )


def train_baseline(features_df: pd.DataFrame, spec: DatasetSpec) -> TrainedModel:
    """Fit the baseline (logistic regression with default parameters) on the train rows.

    Args:
        features_df: A features frame.
        spec: The dataset spec.

    Returns:
        The trained baseline.

    Raises:
        ValueError: the train rows hold a single class.
    """
    return train_candidate(features_df, spec, estimator=BASELINE_ESTIMATOR)


def predict_scores(pipeline: Pipeline, features_df: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
    """Probability of the positive class for each row.

    Args:
        pipeline: A fitted pipeline from this module (trained on 0/1 ``_label``).
        features_df: Rows to score; only :func:`~mlops_assets.ml.features.feature_columns` are used.
        spec: The dataset spec.

    Returns:
        A ``float64`` array, one score per row, in the frame's row order.
    """
    if len(features_df) == 0:
        return np.empty(0, dtype=np.float64)
    X = model_inputs(features_df, spec)
    proba = pipeline.predict_proba(X)
    classes = list(pipeline.classes_)
    if 1 not in classes:
        raise ValueError(f"pipeline classes {classes} do not include the positive class 1")
    return np.asarray(proba[:, classes.index(1)], dtype=np.float64)
