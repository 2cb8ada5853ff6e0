"""Dataset spec: the declarative description of a tabular binary-classification data set.

A user brings a new data set by writing a YAML spec, never by changing code. The spec names the
columns (type, range, categories, nullability, uniqueness), the id column, the label and its positive
class, the order/time column, slice columns, protected attributes, the feature allowlist, columns
that are known only after the outcome (leakage) and the gate policy. Everything downstream (the
pandera schema, the features, the gates) is derived from it.
"""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from mlops_assets.ml.policy import Policy, PolicyError, policy_from_dict
from mlops_assets.ml.triggers import RetrainPolicy, RetrainPolicyError, retrain_policy_from_dict

ColumnType = Literal["int", "float", "bool", "string", "category", "datetime"]
COLUMN_TYPES: tuple[str, ...] = ("int", "float", "bool", "string", "category", "datetime")
NUMERIC_TYPES: frozenset[str] = frozenset({"int", "float", "bool"})
CATEGORICAL_TYPES: frozenset[str] = frozenset({"string", "category"})

PACKAGED_SPECS: tuple[str, ...] = ("flights", "synthetic")


class SpecError(ValueError):
    """A dataset spec is malformed; the message names the file and the offending key."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the landed data.

    Attributes:
        name: Column name as it appears in the landed file.
        type: One of ``int``, ``float``, ``bool``, ``string``, ``category``, ``datetime``.
        nullable: Whether missing values are allowed.
        min: Inclusive lower bound for numeric columns.
        max: Inclusive upper bound for numeric columns.
        categories: Allowed values for ``category`` columns (``None`` allows any string).
        unique: Whether values must be unique within a data version.
        description: Free text shown in docs and the UI.
        na_values: Further cell texts that mean "missing" in this column, in CSV and Parquet alike (e.g.
            ``["?", "-999"]``). Without them a string/category column treats only an empty cell as
            missing (``NA`` may be a region code); other columns also treat pandas' default markers
            (``NA``, ``null``, ``NaN`` ...) as missing.
    """

    name: str
    type: ColumnType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    unique: bool = False
    description: str = ""
    na_values: tuple[str, ...] = ()

    @property
    def is_numeric(self) -> bool:
        return self.type in NUMERIC_TYPES

    @property
    def is_categorical(self) -> bool:
        return self.type in CATEGORICAL_TYPES


@dataclass(frozen=True)
class LabelSpec:
    """The binary label: its column, its allowed values and which value is the positive class.

    Attributes:
        column: The label column (in data files and in labels files).
        positive: The positive class, as the label column's type stores it.
        values: The two label values.
        required: Whether every data file must carry the label column, fully filled (spec key ``label.required``,
            default ``true``). ``false``: a data version may arrive without labels (the column absent, or empty
            cells); its labels then come later from the labels stream (the model's labels zone), joined by id.
    """

    column: str
    positive: Any
    values: tuple[Any, ...]
    required: bool = True


ESTIMATORS: tuple[str, ...] = ("hist_gradient_boosting", "logistic_regression", "dummy")


@dataclass(frozen=True)
class TrainingSpec:
    """How candidates are trained. Defaults: gradient boosting, a small out-of-time CV search, one version.

    Attributes:
        estimator: ``hist_gradient_boosting`` (default), ``logistic_regression`` or ``dummy``.
        params: Fixed estimator parameters (applied before the search).
        search: Parameter name → list of values; the grid is searched with time-ordered CV folds.
            Empty: no search, the fixed parameters are used.
        cv_folds: Folds of the time-series cross validation (each fold validates on later rows).
        window: Train on the last ``window`` data versions up to and including the current one.
        baseline: The simple model trained beside the candidate for ``beats_baseline``:
            ``logistic_regression`` (default: the candidate must beat a linear model) or ``dummy`` (it must
            beat the prior rate — use it when a linear model is already the right model for the data).
    """

    estimator: str = "hist_gradient_boosting"
    params: Mapping[str, Any] = field(default_factory=dict)
    search: Mapping[str, tuple[Any, ...]] = field(
        default_factory=lambda: {"max_leaf_nodes": (7, 15), "min_samples_leaf": (40, 200)}
    )
    cv_folds: int = 3
    window: int = 1
    baseline: str = "logistic_regression"


def _training(raw: Any, where: str) -> TrainingSpec:
    if raw is None:
        return TrainingSpec()
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: 'training' must be a mapping")
    known = {f.name for f in fields(TrainingSpec)}
    if set(raw) - known:
        raise SpecError(f"{where}: unknown training keys {sorted(set(raw) - known)}; known: {sorted(known)}")
    defaults = TrainingSpec()
    estimator = raw.get("estimator", defaults.estimator)
    if estimator not in ESTIMATORS:
        raise SpecError(f"{where}: training.estimator must be one of {list(ESTIMATORS)}, got {estimator!r}")
    params = raw.get("params") or {}
    if not isinstance(params, Mapping):
        raise SpecError(f"{where}: training.params must be a mapping")
    search_raw = raw.get("search", None)
    if search_raw is None:
        search = defaults.search if estimator == defaults.estimator else {}
    elif not isinstance(search_raw, Mapping):
        raise SpecError(f"{where}: training.search must map parameter names to lists of values")
    else:
        search = {str(k): _tuple(v, where, f"training.search.{k}") for k, v in search_raw.items()}
        for k, v in search.items():
            if not v:
                raise SpecError(f"{where}: training.search.{k} must list at least one value")
    cv_folds, window = raw.get("cv_folds", defaults.cv_folds), raw.get("window", defaults.window)
    if not isinstance(cv_folds, int) or cv_folds < 2:
        raise SpecError(f"{where}: training.cv_folds must be an integer >= 2, got {cv_folds!r}")
    if not isinstance(window, int) or window < 1:
        raise SpecError(f"{where}: training.window must be an integer >= 1, got {window!r}")
    baseline = raw.get("baseline", defaults.baseline)
    if baseline not in ("logistic_regression", "dummy"):
        raise SpecError(f"{where}: training.baseline must be 'logistic_regression' or 'dummy', got {baseline!r}")
    return TrainingSpec(
        estimator=estimator, params=dict(params), search=search, cv_folds=cv_folds, window=window, baseline=baseline
    )


@dataclass(frozen=True)
class DatasetSpec:
    """A validated dataset spec. Build with :func:`load_spec` or :func:`spec_from_dict`."""

    name: str
    columns: tuple[ColumnSpec, ...]
    id_column: str
    label: LabelSpec
    features: tuple[str, ...]
    order_column: str | None = None
    slices: tuple[str, ...] = ()
    protected: tuple[str, ...] = ()
    forbidden_features: tuple[str, ...] = ()
    policy: Policy = field(default_factory=Policy)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    #: When retraining may be requested (triggers, cooldown, daily cap, staleness); see ``ml/triggers.py``.
    retraining: RetrainPolicy = field(default_factory=RetrainPolicy)
    #: The id column is unique across data versions too: gate ``ids_unique_across_versions`` refuses a version
    #: that reuses an id of an earlier accepted version. Default ``False`` (ids may repeat across versions).
    id_unique_across_versions: bool = False
    description: str = ""
    source: str = "<dict>"

    def column(self, name: str) -> ColumnSpec:
        """Return the column spec called ``name`` (KeyError naming the spec if absent)."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.source}: no column {name!r} in dataset spec {self.name!r}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def numeric_features(self) -> tuple[str, ...]:
        return tuple(f for f in self.features if self.column(f).is_numeric)

    @property
    def categorical_features(self) -> tuple[str, ...]:
        return tuple(f for f in self.features if self.column(f).is_categorical)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (the inverse of :func:`spec_from_dict`, without ``source``)."""
        data = asdict(self)
        data.pop("source")
        data["columns"] = {c.pop("name"): c for c in data["columns"]}
        return data

    def fingerprint(self) -> str:
        """A short stable hash of the spec's content, recorded as lineage.

        The ``retraining`` section is left out: it decides when a model is retrained, not what a model is, so
        changing it does not change the lineage of models trained under the spec.
        """
        data = self.to_dict()
        data.pop("retraining")
        # The policy's settings flat, as before the policy had sections: the same spec keeps its fingerprint
        # (and the asset code versions and training fingerprints built on it) across that change.
        data["policy"] = self.policy.to_flat_dict()
        if data["label"].get("required", True):
            data["label"].pop("required", None)  # the default: specs written before the key keep their fingerprint
        canonical = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _tuple(value: Any, where: str, key: str) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise SpecError(f"{where}: '{key}' must be a list, got {type(value).__name__}")
    return tuple(value)


def _label_value(col: ColumnSpec, value: Any, where: str, key: str) -> Any:
    """A declared label value as the label column's type stores it (SpecError naming ``key`` when it cannot be)."""
    # Imported here: the schema module builds on this one (it imports ColumnSpec), so a top-level import would cycle.
    from mlops_assets.ml.schema import canonical_value

    if col.type == "datetime":
        raise SpecError(
            f"{where}: label.column {col.name!r} is a datetime column; a binary label is int, float, bool, "
            "string or category"
        )
    try:
        return canonical_value(col, value)
    except (ValueError, TypeError) as exc:
        raise SpecError(
            f"{where}: {key} value {value!r} cannot be read as the {col.type} label column {col.name!r}: {exc}"
        ) from exc


def _column(name: str, raw: Any, where: str) -> ColumnSpec:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: columns.{name} must be a mapping with at least 'type'")
    known = {f.name for f in fields(ColumnSpec)} - {"name"}
    unknown = set(raw) - known
    if unknown:
        raise SpecError(f"{where}: columns.{name} has unknown keys {sorted(unknown)}; known: {sorted(known)}")
    col_type = raw.get("type")
    if col_type not in COLUMN_TYPES:
        raise SpecError(f"{where}: columns.{name}.type must be one of {list(COLUMN_TYPES)}, got {col_type!r}")
    categories = raw.get("categories")
    if categories is not None:
        if col_type not in CATEGORICAL_TYPES:
            raise SpecError(f"{where}: columns.{name}.categories is only valid for string/category columns")
        categories = tuple(str(c) for c in _tuple(categories, where, f"columns.{name}.categories"))
    for bound in ("min", "max"):
        if raw.get(bound) is not None and col_type not in ("int", "float"):
            raise SpecError(f"{where}: columns.{name}.{bound} is only valid for int/float columns")
    if raw.get("min") is not None and raw.get("max") is not None and raw["min"] > raw["max"]:
        raise SpecError(f"{where}: columns.{name}: min {raw['min']} is greater than max {raw['max']}")
    na_values = tuple(str(v) for v in _tuple(raw.get("na_values"), where, f"columns.{name}.na_values"))
    clash = sorted(set(na_values) & set(categories or ()))
    if clash:
        raise SpecError(
            f"{where}: columns.{name}.na_values lists {clash}, which columns.{name}.categories declares as values; "
            "a cell cannot be both a category and missing"
        )
    return ColumnSpec(
        name=str(name),
        type=cast(ColumnType, col_type),
        nullable=bool(raw.get("nullable", False)),
        min=None if raw.get("min") is None else float(raw["min"]),
        max=None if raw.get("max") is None else float(raw["max"]),
        categories=categories,
        unique=bool(raw.get("unique", False)),
        description=str(raw.get("description", "")),
        na_values=na_values,
    )


def spec_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> DatasetSpec:
    """Build and validate a :class:`DatasetSpec` from plain data.

    Raises:
        SpecError: naming ``source`` and the offending key when anything is inconsistent.
    """
    where = source
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: a dataset spec must be a mapping")
    known_top = {f.name for f in fields(DatasetSpec)} - {"source"}
    unknown = set(data) - known_top
    if unknown:
        raise SpecError(f"{where}: unknown top-level keys {sorted(unknown)}; known: {sorted(known_top)}")
    for key in ("name", "columns", "id_column", "label", "features"):
        if key not in data:
            raise SpecError(f"{where}: missing required key '{key}'")
    raw_columns = data["columns"]
    if not isinstance(raw_columns, Mapping) or not raw_columns:
        raise SpecError(f"{where}: 'columns' must be a non-empty mapping of column name to column spec")
    columns = tuple(_column(str(n), c, where) for n, c in raw_columns.items())
    names = {c.name for c in columns}

    def must_exist(col: str, key: str) -> None:
        if col not in names:
            raise SpecError(f"{where}: {key} names column {col!r}, which is not declared under 'columns'")

    id_column = str(data["id_column"])
    must_exist(id_column, "id_column")

    raw_label = data["label"]
    if not isinstance(raw_label, Mapping) or "column" not in raw_label or "positive" not in raw_label:
        raise SpecError(f"{where}: 'label' must be a mapping with 'column' and 'positive' (and 'values')")
    label_values = _tuple(raw_label.get("values"), where, "label.values")
    if len(label_values) != 2:
        raise SpecError(f"{where}: label.values must list exactly the two label values, got {list(label_values)}")
    must_exist(str(raw_label["column"]), "label.column")
    label_col = next(c for c in columns if c.name == str(raw_label["column"]))
    # The label values are read through the label column's type, as its cells are (yes/no of a bool label are
    # False/True), so that data files, labels files, the gates and the encoding compare like with like.
    canonical_values = tuple(_label_value(label_col, v, where, "label.values") for v in label_values)
    if canonical_values[0] == canonical_values[1]:
        raise SpecError(
            f"{where}: label.values {list(label_values)} are the same value ({canonical_values[0]!r}) once read as "
            f"the {label_col.type} label column {label_col.name!r}; list two different values"
        )
    positive = _label_value(label_col, raw_label["positive"], where, "label.positive")
    if positive not in canonical_values:
        raise SpecError(
            f"{where}: label.positive {raw_label['positive']!r} is not one of label.values {list(label_values)}"
        )
    required = raw_label.get("required", True)
    if not isinstance(required, bool):
        raise SpecError(f"{where}: label.required must be true or false, got {required!r}")
    label = LabelSpec(column=label_col.name, positive=positive, values=canonical_values, required=required)

    features = tuple(str(f) for f in _tuple(data["features"], where, "features"))
    if not features:
        raise SpecError(f"{where}: 'features' (the feature allowlist) must not be empty")
    for f in features:
        must_exist(f, "features")
        if f in (label.column, id_column):
            raise SpecError(f"{where}: features must not contain the label or the id column ({f!r})")
    by_name = {c.name: c for c in columns}
    for f in features:
        if by_name[f].type == "datetime":
            raise SpecError(f"{where}: feature {f!r} is a datetime; derive numeric/categorical columns from it instead")

    order_column = data.get("order_column")
    if order_column is not None:
        order_column = str(order_column)
        must_exist(order_column, "order_column")
    slices = tuple(str(s) for s in _tuple(data.get("slices"), where, "slices"))
    protected = tuple(str(p) for p in _tuple(data.get("protected"), where, "protected"))
    forbidden = tuple(str(p) for p in _tuple(data.get("forbidden_features"), where, "forbidden_features"))
    for s in slices:
        must_exist(s, "slices")
    for p in protected:
        must_exist(p, "protected")
    id_unique_across_versions = data.get("id_unique_across_versions", False)
    if not isinstance(id_unique_across_versions, bool):
        raise SpecError(f"{where}: id_unique_across_versions must be true or false, got {id_unique_across_versions!r}")

    try:
        policy = policy_from_dict(data.get("policy"), where)
    except PolicyError as exc:
        raise SpecError(str(exc)) from exc
    # Protected attributes are kept for fairness evaluation and are never model inputs, unless the policy
    # says explicitly that they may be (then features_allowlisted records them as protected inputs).
    protected_inputs = [f for f in features if f in set(protected)]
    if protected_inputs and not policy.data.allow_protected_as_features:
        raise SpecError(
            f"{where}: features lists protected attribute(s) {protected_inputs} (also under 'protected'); "
            "protected attributes are never model inputs: remove them from 'features', or set "
            "policy.allow_protected_as_features: true to allow it explicitly"
        )
    training = _training(data.get("training"), where)
    try:
        retraining = retrain_policy_from_dict(data.get("retraining"), where)
    except RetrainPolicyError as exc:
        raise SpecError(str(exc)) from exc

    return DatasetSpec(
        name=str(data["name"]),
        columns=columns,
        id_column=id_column,
        label=label,
        features=features,
        order_column=order_column,
        slices=slices,
        protected=protected,
        forbidden_features=forbidden,
        policy=policy,
        training=training,
        retraining=retraining,
        id_unique_across_versions=id_unique_across_versions,
        description=str(data.get("description", "")),
        source=source,
    )


def packaged_spec_path(name: str) -> Path:
    """Path of a spec shipped with the package (``flights`` or ``synthetic``)."""
    return Path(str(resources.files("mlops_assets.specs").joinpath(f"{name}.yaml")))


def load_spec(path_or_name: str | Path) -> DatasetSpec:
    """Load a spec from a YAML file, or a packaged spec by name (``flights``, ``synthetic``).

    Raises:
        SpecError: the file is missing, is not YAML, or the spec is inconsistent.
    """
    text = str(path_or_name)
    path = packaged_spec_path(text) if text in PACKAGED_SPECS else Path(text)
    if not path.is_file():
        raise SpecError(f"{path}: dataset spec file not found (packaged specs: {', '.join(PACKAGED_SPECS)})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    return spec_from_dict(data, source=str(path))
