"""Training: sklearn pipelines that hold all preprocessing, so the artifact alone can score raw features.

Only standard sklearn classes are used inside the pipeline (no lambdas, no custom transformers), because
the artifacts are serialised with skops under an allowlist of sklearn/numpy types. Training is seeded by
``spec.policy.evaluation.random_seed`` and reproducible: the same features frame and seed give the same scores.
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from mlops_assets.ml.features import LABEL_COLUMN, SPLIT_COLUMN, TRAIN, feature_columns, model_inputs
from mlops_assets.ml.spec import ESTIMATORS, DatasetSpec, TrainingSpec

DEFAULT_ESTIMATOR = "hist_gradient_boosting"
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
        "max_iter": 100,
        "max_leaf_nodes": 15,
        "min_samples_leaf": 40,
        "l2_regularization": 1.0,
        "early_stopping": False,
    },
    # lbfgs on standardised numerics and one-hot categoricals converges well within this budget.
    "logistic_regression": {"C": 1.0, "max_iter": 5000, "tol": 1e-4},
    "dummy": {"strategy": "prior"},
}
_LINEAR = frozenset({"logistic_regression"})
_NATIVE_CATEGORICAL = frozenset({"hist_gradient_boosting"})


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
    impute_category = ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY))
    if estimator in _NATIVE_CATEGORICAL:
        # Trees split categories natively on ordinal codes: an order of magnitude faster than one-hot on
        # high-cardinality columns (flights: 105 destinations), which makes a CV search affordable.
        # Unseen categories become NaN, which the trees route like missing values.
        encode: tuple[str, Any] = (
            "ordinal",
            OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=np.nan,
                encoded_missing_value=np.nan,
                min_frequency=MIN_CATEGORY_FREQUENCY,
                max_categories=MAX_CATEGORIES,
            ),
        )
        n_num, n_cat = len(spec.numeric_features), len(spec.categorical_features)
        effective = {**effective, "categorical_features": list(range(n_num, n_num + n_cat)) or None}
    else:
        encode = (
            "onehot",
            OneHotEncoder(
                handle_unknown="infrequent_if_exist",
                min_frequency=MIN_CATEGORY_FREQUENCY,
                max_categories=MAX_CATEGORIES,
                sparse_output=False,
            ),
        )
    transformers: list[tuple[str, Any, list[str]]] = []
    if spec.numeric_features:
        transformers.append(("numeric", Pipeline(numeric_steps), list(spec.numeric_features)))
    if spec.categorical_features:
        transformers.append(("categorical", Pipeline([impute_category, encode]), list(spec.categorical_features)))
    # Column order matters for the native-categorical indices above: numeric first, then categorical.
    preprocess = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", preprocess), ("model", _make_estimator(estimator, effective))])


def _train_rows(features_df: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, np.ndarray]:
    for column in (SPLIT_COLUMN, LABEL_COLUMN):
        if column not in features_df.columns:
            raise ValueError(f"features frame lacks {column!r}; build it with build_features()")
    is_train = features_df[SPLIT_COLUMN] == TRAIN
    y = features_df.loc[is_train, LABEL_COLUMN].to_numpy(dtype=np.int64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        negative = next((v for v in spec.label.values if v != spec.label.positive), None)
        raise ValueError(
            f"cannot train on spec {spec.name!r}: the {len(y)} train rows of label column {spec.label.column!r} "
            f"hold a single class (positive {spec.label.positive!r}: {n_pos}, negative {negative!r}: {n_neg}); "
            "both classes are needed"
        )
    # Only the feature columns of the train rows are copied (not the id, order, slice and protected columns);
    # model_inputs names any feature column the frame lacks.
    present = [c for c in feature_columns(spec) if c in features_df.columns]
    return model_inputs(features_df.loc[is_train, present], spec), y


def train_candidate(
    features_df: pd.DataFrame,
    spec: DatasetSpec,
    estimator: str = DEFAULT_ESTIMATOR,
    params: Mapping[str, Any] | None = None,
) -> TrainedModel:
    """Fit a candidate model on the train rows, seeded by ``spec.policy.evaluation.random_seed``.

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
    seed = spec.policy.evaluation.random_seed
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
    """Fit the baseline named by ``spec.training.baseline`` (default parameters) on the train rows.

    Args:
        features_df: A features frame.
        spec: The dataset spec.

    Returns:
        The trained baseline.

    Raises:
        ValueError: the train rows hold a single class.
    """
    return train_candidate(features_df, spec, estimator=spec.training.baseline)


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
    return positive_scores(pipeline, model_inputs(features_df, spec))


def positive_scores(pipeline: Pipeline, inputs: pd.DataFrame) -> np.ndarray:
    """:func:`predict_scores` on inputs already built by :func:`~mlops_assets.ml.features.model_inputs`.

    Args:
        pipeline: A fitted pipeline from this module.
        inputs: The model input frame.

    Returns:
        A ``float64`` array, one score per row.

    Raises:
        ValueError: the pipeline's classes lack the positive class 1.
    """
    if len(inputs) == 0:
        return np.empty(0, dtype=np.float64)
    proba = pipeline.predict_proba(inputs)
    classes = list(pipeline.classes_)
    if 1 not in classes:
        raise ValueError(f"pipeline classes {classes} do not include the positive class 1")
    return np.asarray(proba[:, classes.index(1)], dtype=np.float64)


#: The sklearn scorer of each headline metric.
SCORING = {"roc_auc": "roc_auc", "pr_auc": "average_precision"}


SEARCH_SKIPPED_NO_VALID_FOLD = "search skipped: no fold with both classes in training and validation"


@dataclass(frozen=True)
class SearchResult:
    """A hyperparameter search: the space, the folds, every candidate's cross-validated score, and the choice.

    Attributes:
        space: Parameter name → values searched.
        cv_folds: Number of time-ordered folds asked for (each validates on rows later than it trains on).
        scoring: sklearn scorer of the headline metric.
        results: One row per parameter combination: params, mean/std validation score over the used folds,
            rank, fit seconds. Empty when the search was skipped.
        best_params: The chosen combination (highest mean score; ties go to the first in grid order);
            empty when skipped.
        best_score: Its mean validation score over the used folds; None when skipped (never NaN).
        folds: One record per fold: ``fold`` (1-based), ``train_rows``, ``train_positives``,
            ``train_negatives``, ``validation_rows``, ``validation_positives``, ``validation_negatives``,
            ``used`` (both classes on both sides; only used folds are scored).
        skipped: None, or why no search was run (:data:`SEARCH_SKIPPED_NO_VALID_FOLD`); the model then
            uses the fixed parameters.
    """

    space: dict[str, list[Any]]
    cv_folds: int
    scoring: str
    results: tuple[dict[str, Any], ...]
    best_params: dict[str, Any]
    best_score: float | None
    folds: tuple[dict[str, Any], ...] = ()
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "cv_folds": self.cv_folds,
            "scoring": self.scoring,
            "results": list(self.results),
            "best_params": self.best_params,
            "best_score": self.best_score,
            "folds": list(self.folds),
            "skipped": self.skipped,
        }


def cv_folds_with_class_counts(y: np.ndarray, n_splits: int) -> list[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
    """The time-ordered folds (``TimeSeriesSplit``) of a label vector, each with its class counts.

    Args:
        y: 0/1 labels of the train rows, in time order.
        n_splits: Number of folds.

    Returns:
        ``(train_index, validation_index, record)`` per fold; ``record`` is described in
        :attr:`SearchResult.folds`. A fold is ``used`` only when its training and its validation part
        each hold both classes (otherwise the fit or the score is undefined).

    Raises:
        ValueError: fewer rows than ``n_splits + 1``.
    """
    out = []
    for i, (train_idx, val_idx) in enumerate(TimeSeriesSplit(n_splits=n_splits).split(y), start=1):
        train_pos, val_pos = int(y[train_idx].sum()), int(y[val_idx].sum())
        train_neg, val_neg = len(train_idx) - train_pos, len(val_idx) - val_pos
        record = {
            "fold": i,
            "train_rows": len(train_idx),
            "train_positives": train_pos,
            "train_negatives": train_neg,
            "validation_rows": len(val_idx),
            "validation_positives": val_pos,
            "validation_negatives": val_neg,
            "used": bool(train_pos and train_neg and val_pos and val_neg),
        }
        out.append((train_idx, val_idx, record))
    return out


class ProgressScorer:
    """An sklearn scorer that reports after every scored fit of a search: ``"search: 5/12 fits scored"``.

    Wraps :func:`sklearn.metrics.get_scorer` of ``scoring`` and returns its value unchanged, so the search's
    results are the same as with the plain scorer name. Reports at most every ``every``-th fit and the last one.

    Args:
        scoring: An sklearn scorer name (``roc_auc``, ``average_precision``, ...).
        total: Fits the search will score (combinations × folds).
        report: Called with one line of progress (e.g. a Dagster step's ``context.log.info``).
    """

    def __init__(self, scoring: str, total: int, report: Callable[[str], None], every: int = 1) -> None:
        self._scorer = get_scorer(scoring)
        self._scoring = scoring
        self._total = total
        self._report = report
        self._every = max(1, every)
        self._done = 0
        self._started = time.perf_counter()

    def __call__(self, estimator: Any, X: pd.DataFrame, y: np.ndarray) -> float:
        value = float(self._scorer(estimator, X, y))
        self._done += 1
        if self._done % self._every == 0 or self._done == self._total:
            elapsed = time.perf_counter() - self._started
            self._report(
                f"search: {self._done}/{self._total} fits scored ({self._scoring} {value:.4f} on the last fold; "
                f"{elapsed:.0f} s elapsed)"
            )
        return value


def _no_progress(_line: str) -> None:
    return None


def tune_and_train(
    features_df: pd.DataFrame,
    spec: DatasetSpec,
    training: TrainingSpec | None = None,
    *,
    progress: Callable[[str], None] = _no_progress,
) -> tuple[TrainedModel, SearchResult | None]:
    """Search the configured space with time-ordered CV on the train rows, then fit the best on all of them.

    The rows of a features frame are sorted in time order, so ``TimeSeriesSplit`` validates every fold on
    rows later than those it trained on — the same out-of-time direction as the holdout. Only folds whose
    training and validation parts each hold both classes are scored; when no fold does, the search is
    skipped (recorded in :attr:`SearchResult.skipped` with the per-fold class counts) and the model is
    fitted with the fixed parameters. A fit error in the search raises instead of scoring NaN, and a
    non-finite mean score is never ranked.

    Args:
        features_df: A features frame (possibly several data versions concatenated, in time order).
        spec: The dataset spec.
        training: Estimator, fixed params, search space and folds (default: ``spec.training``).

    Returns:
        The fitted candidate and the search record (None when the space is empty).

    Raises:
        ValueError: the train rows hold a single class, there are fewer train rows than ``cv_folds + 1``,
            or a searched combination scores a non-finite mean.

    ``progress`` is called with one line when the search starts, after each scored fit
    (:class:`ProgressScorer`) and when the final model is fitted: long searches report where they are.
    """
    training = training or spec.training
    if not training.search:
        return train_candidate(features_df, spec, training.estimator, training.params), None
    seed = spec.policy.evaluation.random_seed
    X, y = _train_rows(features_df, spec)
    scoring = SCORING[spec.policy.evaluation.headline_metric]
    space = {k: [_plain(v) for v in values] for k, values in training.search.items()}
    try:
        folds = cv_folds_with_class_counts(y, training.cv_folds)
    except ValueError as exc:
        raise ValueError(
            f"cannot search spec {spec.name!r} with training.cv_folds={training.cv_folds}: {len(y)} train rows ({exc})"
        ) from exc
    fold_records = tuple(record for _, _, record in folds)
    used = [(train_idx, val_idx) for train_idx, val_idx, record in folds if record["used"]]
    if not used:
        model = train_candidate(features_df, spec, training.estimator, training.params)
        record = SearchResult(
            space=space,
            cv_folds=training.cv_folds,
            scoring=scoring,
            results=(),
            best_params={},
            best_score=None,
            folds=fold_records,
            skipped=SEARCH_SKIPPED_NO_VALID_FOLD,
        )
        return model, record
    pipeline = build_pipeline(spec, training.estimator, training.params, seed=seed)
    grid = {f"model__{name}": list(values) for name, values in training.search.items()}
    combinations = int(np.prod([len(values) for values in grid.values()]))
    progress(
        f"search: {combinations} combinations × {len(used)} time-ordered folds on {len(y):,} train rows "
        f"({training.estimator}, scoring {scoring})"
    )
    scorer = ProgressScorer(scoring, combinations * len(used), progress)
    search = GridSearchCV(pipeline, grid, scoring=scorer, cv=used, n_jobs=1, refit=True, error_score="raise")
    start = time.perf_counter()
    search.fit(X, y)
    elapsed = time.perf_counter() - start
    progress(f"search done in {elapsed:.0f} s; best {search.best_params_} refitted on all {len(y):,} train rows")
    cv = search.cv_results_
    means = np.asarray(cv["mean_test_score"], dtype=np.float64)
    if not np.isfinite(means).all():
        bad = [cv["params"][i] for i in np.flatnonzero(~np.isfinite(means))]
        raise ValueError(
            f"search of spec {spec.name!r}: {scoring} is not finite for {bad} on folds with both classes; "
            "refusing to rank NaN"
        )
    results = tuple(
        {
            "params": {k.removeprefix("model__"): _plain(v) for k, v in cv["params"][i].items()},
            "mean_score": float(cv["mean_test_score"][i]),
            "std_score": float(cv["std_test_score"][i]),
            "rank": int(cv["rank_test_score"][i]),
            "mean_fit_seconds": float(cv["mean_fit_time"][i]),
        }
        for i in range(len(cv["params"]))
    )
    best = {k.removeprefix("model__"): _plain(v) for k, v in search.best_params_.items()}
    chosen = {**training.params, **best}
    model = TrainedModel(
        pipeline=search.best_estimator_,
        estimator=training.estimator,
        params=estimator_params(training.estimator, chosen, seed),
        n_train=len(y),
        feature_columns=tuple(feature_columns(spec)),
        train_seconds=elapsed,
    )
    record = SearchResult(
        space=space,
        cv_folds=training.cv_folds,
        scoring=scoring,
        results=results,
        best_params=best,
        best_score=float(search.best_score_),
        folds=fold_records,
        skipped=None,
    )
    return model, record


def _plain(value: Any) -> Any:
    """numpy scalars → Python scalars, so search records are JSON-safe."""
    return value.item() if isinstance(value, np.generic) else value


def model_signature(features_df: pd.DataFrame, spec: DatasetSpec) -> dict[str, str]:
    """The model's input schema: each input column and the dtype the pipeline receives it as."""
    inputs = model_inputs(features_df.head(1), spec)
    return {str(c): str(t) for c, t in inputs.dtypes.items()}
