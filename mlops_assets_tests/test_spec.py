"""Tests of the packaged dataset specs and of spec validation errors."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_assets.ml.spec import DatasetSpec, SpecError, load_spec, packaged_spec_path, spec_from_dict

pytestmark = pytest.mark.core


def _plain(spec: DatasetSpec) -> dict[str, Any]:
    # JSON round trip turns the tuples of to_dict() into lists, which yaml.safe_dump can write.
    return json.loads(json.dumps(spec.to_dict()))


def _write(tmp_path: Path, data: dict[str, Any], name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def synthetic_dict() -> dict[str, Any]:
    return _plain(load_spec("synthetic"))


def test_flights_spec_loads_with_expected_contract() -> None:
    spec = load_spec("flights")
    assert spec.name == "flights"
    assert spec.id_column == "flight_id"
    assert spec.order_column == "time_hour"
    assert spec.label.column == "delayed"
    assert spec.label.positive == 1
    assert spec.label.values == (0, 1)
    assert spec.slices == ("origin", "carrier")
    assert spec.protected == ()
    assert spec.features == (
        "day_of_week",
        "hour",
        "minute",
        "sched_dep_time",
        "sched_arr_time",
        "carrier",
        "origin",
        "dest",
        "distance",
    )
    assert set(spec.forbidden_features) == {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"}
    assert not set(spec.features) & set(spec.forbidden_features)
    assert spec.policy.data.min_rows == 1000
    assert spec.policy.gates.metric_floor == 0.6
    assert spec.policy.evaluation.holdout_fraction == 0.2  # default kept
    assert spec.column("origin").categories == ("EWR", "JFK", "LGA")
    assert len(spec.column("carrier").categories or ()) == 16
    assert len(spec.column("dest").categories or ()) == 105
    assert spec.column("flight_id").unique
    assert spec.column("time_hour").type == "datetime"
    assert spec.column("sched_dep_time").min == 0 and spec.column("sched_dep_time").max == 2359
    for name in ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time", "tailnum"):
        assert spec.column(name).nullable, name
    assert spec.source == str(packaged_spec_path("flights"))


def test_synthetic_spec_loads_with_string_label() -> None:
    spec = load_spec("synthetic")
    # The label values are strings; unquoted yes/no would have been read by YAML as booleans.
    assert spec.label.values == ("no", "yes")
    assert spec.label.positive == "yes"
    assert all(isinstance(v, str) for v in spec.label.values)
    assert spec.column("churned").type == "string"
    assert spec.protected == ("gender",)
    assert "gender" not in spec.features
    assert spec.slices == ("region", "plan")
    assert spec.column("region").categories == ("north", "south", "east", "west")
    assert spec.column("balance").nullable and not spec.column("income").nullable
    assert spec.policy.data.min_rows == 200 and spec.policy.gates.metric_floor == 0.6
    assert spec.numeric_features == ("age", "income", "tenure_months", "balance")
    assert spec.categorical_features == ("region", "plan")


@pytest.mark.parametrize("name", ["flights", "synthetic"])
def test_every_packaged_column_has_a_description(name: str) -> None:
    spec = load_spec(name)
    assert spec.description
    missing = [c.name for c in spec.columns if not c.description.strip()]
    assert missing == []


def test_load_by_path_equals_load_by_name(tmp_path: Path) -> None:
    by_name = load_spec("synthetic")
    by_path = load_spec(packaged_spec_path("synthetic"))
    assert by_name == by_path


def test_missing_label_raises_naming_file_and_key(tmp_path: Path, synthetic_dict: dict[str, Any]) -> None:
    del synthetic_dict["label"]
    path = _write(tmp_path, synthetic_dict)
    with pytest.raises(SpecError, match="missing required key 'label'") as exc:
        load_spec(path)
    assert str(path) in str(exc.value)


def test_unknown_feature_column_raises(tmp_path: Path, synthetic_dict: dict[str, Any]) -> None:
    synthetic_dict["features"] = [*synthetic_dict["features"], "shoe_size"]
    path = _write(tmp_path, synthetic_dict)
    with pytest.raises(SpecError, match=r"features names column 'shoe_size'") as exc:
        load_spec(path)
    assert str(exc.value).startswith(str(path))


def test_bad_column_type_raises(tmp_path: Path, synthetic_dict: dict[str, Any]) -> None:
    synthetic_dict["columns"]["age"]["type"] = "integer"
    path = _write(tmp_path, synthetic_dict)
    with pytest.raises(SpecError, match=r"columns\.age\.type must be one of .* got 'integer'") as exc:
        load_spec(path)
    assert str(path) in str(exc.value)


def test_min_greater_than_max_raises(tmp_path: Path, synthetic_dict: dict[str, Any]) -> None:
    synthetic_dict["columns"]["age"]["min"] = 120
    path = _write(tmp_path, synthetic_dict)
    with pytest.raises(SpecError, match=r"columns\.age: min 120 is greater than max 100") as exc:
        load_spec(path)
    assert str(path) in str(exc.value)


def test_unknown_top_level_key_raises(tmp_path: Path, synthetic_dict: dict[str, Any]) -> None:
    synthetic_dict["colour"] = "blue"
    path = _write(tmp_path, synthetic_dict)
    with pytest.raises(SpecError, match=r"unknown top-level keys \['colour'\]") as exc:
        load_spec(path)
    assert str(path) in str(exc.value)


def test_unknown_column_key_raises(tmp_path: Path, synthetic_dict: dict[str, Any]) -> None:
    synthetic_dict["columns"]["income"]["maximum"] = 10
    path = _write(tmp_path, synthetic_dict)
    with pytest.raises(SpecError, match=r"columns\.income has unknown keys \['maximum'\]") as exc:
        load_spec(path)
    assert str(path) in str(exc.value)


def test_unknown_policy_key_raises(tmp_path: Path, synthetic_dict: dict[str, Any]) -> None:
    synthetic_dict["policy"]["min_row"] = 5
    path = _write(tmp_path, synthetic_dict)
    with pytest.raises(SpecError, match=r"unknown policy keys \['min_row'\]"):
        load_spec(path)


def test_unquoted_yes_no_label_is_caught(tmp_path: Path) -> None:
    # The YAML 1.1 trap the packaged spec avoids by quoting: bare yes/no become True/False, and a
    # positive class "yes" is then not among the values.
    text = packaged_spec_path("synthetic").read_text().replace('values: ["no", "yes"]', "values: [no, yes]")
    path = tmp_path / "unquoted.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=r"label\.positive 'yes' is not one of label\.values"):
        load_spec(path)


def test_missing_file_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML") as exc:
        load_spec(bad)
    assert str(bad) in str(exc.value)


def test_fingerprint_is_stable() -> None:
    first = load_spec("flights").fingerprint()
    assert first == load_spec("flights").fingerprint()
    assert len(first) == 16
    # The source path is lineage, not content: the same spec from a dict has the same fingerprint.
    assert spec_from_dict(load_spec("flights").to_dict()).fingerprint() == first
    assert load_spec("synthetic").fingerprint() != first


def test_fingerprint_changes_with_a_threshold(tmp_path: Path, synthetic_dict: dict[str, Any]) -> None:
    base = spec_from_dict(synthetic_dict).fingerprint()
    synthetic_dict["policy"]["gates"]["metric_floor"] = 0.61
    assert spec_from_dict(synthetic_dict).fingerprint() != base
    synthetic_dict["policy"]["gates"]["metric_floor"] = 0.6
    assert spec_from_dict(synthetic_dict).fingerprint() == base
    synthetic_dict["columns"]["age"]["max"] = 99
    assert spec_from_dict(synthetic_dict).fingerprint() != base


def test_training_section_is_validated_and_defaults_apply() -> None:
    from mlops_assets.ml.spec import load_spec, spec_from_dict

    base = load_spec("flights").to_dict()
    assert load_spec("flights").training.baseline == "logistic_regression"
    for bad, key in (
        ({"baseline": "forest"}, "training.baseline"),
        ({"window": 0}, "training.window"),
        ({"cv_folds": 1}, "training.cv_folds"),
        ({"estimator": "svm"}, "training.estimator"),
        ({"speed": 1}, "unknown training keys"),
    ):
        with pytest.raises(SpecError, match=key):
            spec_from_dict({**base, "training": bad}, source="my.yaml")
    custom = spec_from_dict({**base, "training": {"baseline": "dummy", "window": 3}}, source="my.yaml")
    assert (custom.training.baseline, custom.training.window) == ("dummy", 3)
    assert custom.fingerprint() != load_spec("flights").fingerprint()
