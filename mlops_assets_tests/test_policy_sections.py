"""The gate policy in typed sections: flat and sectioned spec forms, their errors, and the launchpad overrides.

Every list of settings here is derived from the section dataclasses, so a new policy field is covered without
editing these tests.
"""

import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from mlops_assets.assets import evaluations
from mlops_assets.assets.evaluations import PolicyOverrides
from mlops_assets.ml.policy import (
    SECTION_OF,
    SECTIONS,
    DataGatePolicy,
    EvaluationPolicy,
    ModelGatePolicy,
    MonitoringPolicy,
    Policy,
    PolicyError,
    RolloutPolicy,
    evaluation_override_fields,
    field_descriptions,
    flatten_policy,
    policy_from_dict,
    scalar_fields,
)
from mlops_assets.ml.spec import SpecError, load_spec, packaged_spec_path
from mlops_assets.model import MLModel

pytestmark = pytest.mark.wiring

LAUNCHPAD = "launchpad config of model_evaluation"

#: One non-default value per section, each valid.
SETTINGS: dict[str, dict[str, Any]] = {
    "data": {"min_rows": 150, "volume_ratio_bounds": [0.25, 4.0]},
    "evaluation": {"decision_threshold": 0.4, "bootstrap_samples": 200},
    "gates": {"metric_floor": 0.62, "insufficient_data": "fail", "slice_floors": []},
    "rollout": {"rollout_min_rows": 300, "canary_max_auc_drop": 0.02},
    "monitoring": {"max_null_share_increase": 0.1},
}
FLAT = {key: value for section in SETTINGS.values() for key, value in section.items()}


def _spec_file(tmp_path: Path, policy: dict[str, Any], name: str = "spec.yaml") -> Path:
    data = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    data["policy"] = policy
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------------------------------
# The sections
# --------------------------------------------------------------------------------------------------


def test_every_setting_is_in_exactly_one_section_and_documented_there() -> None:
    names = [f.name for cls in SECTIONS.values() for f in fields(cls)]
    assert len(names) == len(set(names)) == len(SECTION_OF)
    assert not set(names) & set(SECTIONS)
    for cls in SECTIONS.values():
        docs = field_descriptions(cls)
        assert set(docs) == {f.name for f in fields(cls)}, cls.__name__
        assert all(text.strip() for text in docs.values()), cls.__name__


def test_policy_holds_one_of_each_section_and_writes_them_nested() -> None:
    policy = Policy()
    assert (policy.data, policy.evaluation, policy.gates, policy.rollout, policy.monitoring) == (
        DataGatePolicy(),
        EvaluationPolicy(),
        ModelGatePolicy(),
        RolloutPolicy(),
        MonitoringPolicy(),
    )
    nested = policy.to_dict()
    assert list(nested) == list(SECTIONS)
    assert all(set(nested[name]) == {f.name for f in fields(cls)} for name, cls in SECTIONS.items())
    assert policy.to_flat_dict() == {key: value for section in nested.values() for key, value in section.items()}


# --------------------------------------------------------------------------------------------------
# Flat and sectioned forms
# --------------------------------------------------------------------------------------------------


def test_flat_and_sectioned_spec_forms_give_equal_policies(tmp_path: Path) -> None:
    flat = load_spec(_spec_file(tmp_path, FLAT, "flat.yaml"))
    sectioned = load_spec(_spec_file(tmp_path, SETTINGS, "sectioned.yaml"))
    mixed = load_spec(_spec_file(tmp_path, {**SETTINGS["gates"], "rollout": SETTINGS["rollout"]}, "mixed.yaml"))
    assert flat.policy == sectioned.policy
    assert flat.policy.gates.metric_floor == 0.62 and flat.policy.data.volume_ratio_bounds == (0.25, 4.0)
    assert flat.policy.rollout.rollout_min_rows == 300 and flat.policy.monitoring.max_null_share_increase == 0.1
    assert mixed.policy.gates == flat.policy.gates and mixed.policy.rollout == flat.policy.rollout
    assert mixed.policy.data == DataGatePolicy()
    # The form is notation, not content: the lineage fingerprint is the same.
    assert flat.fingerprint() == sectioned.fingerprint()


def test_the_packaged_specs_read_the_same_in_sectioned_form(tmp_path: Path) -> None:
    for name in ("flights", "synthetic"):
        spec = load_spec(name)
        data = yaml.safe_load(packaged_spec_path(name).read_text())
        data["policy"] = spec.policy.to_dict()
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        again = load_spec(path)
        assert again.policy == spec.policy and again.fingerprint() == spec.fingerprint()


def test_recorded_policies_of_both_forms_read_back() -> None:
    policy = policy_from_dict(FLAT)
    assert policy_from_dict(policy.to_dict(), "record") == policy
    assert policy_from_dict(policy.to_flat_dict(), "record") == policy
    assert flatten_policy(policy.to_dict()) == flatten_policy(policy.to_flat_dict()) == policy.to_flat_dict()


def test_overrides_may_be_flat_or_sectioned() -> None:
    base = policy_from_dict(FLAT)
    flat = base.with_overrides({"metric_floor": 0.7, "rollout_min_rows": 10})
    nested = base.with_overrides({"gates": {"metric_floor": 0.7}, "rollout": {"rollout_min_rows": 10}})
    assert flat == nested
    assert flat.gates.metric_floor == 0.7 and flat.rollout.rollout_min_rows == 10
    assert flat.data == base.data and flat.evaluation == base.evaluation


# --------------------------------------------------------------------------------------------------
# Errors name the file, the key and the section
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(SECTION_OF))
def test_a_setting_in_the_wrong_section_names_the_file_key_and_right_section(tmp_path: Path, key: str) -> None:
    home = SECTION_OF[key]
    wrong = next(name for name in SECTIONS if name != home)
    path = _spec_file(tmp_path, {wrong: {key: Policy().to_dict()[home][key]}})
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: policy.{wrong}.{key}: ")
    assert f"belongs in section '{home}' (policy.{home}.{key})" in message


def test_a_setting_given_flat_and_in_its_section_is_an_error(tmp_path: Path) -> None:
    path = _spec_file(tmp_path, {"metric_floor": 0.6, "gates": {"metric_floor": 0.7}})
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    assert str(exc.value) == (
        f"{path}: policy.metric_floor is set twice, flat and under policy.gates.metric_floor; set it once"
    )


def test_unknown_keys_list_the_known_ones(tmp_path: Path) -> None:
    path = _spec_file(tmp_path, {"metric_flor": 0.6})
    with pytest.raises(SpecError, match=r"unknown policy keys \['metric_flor'\]; known: ") as exc:
        load_spec(path)
    assert str(exc.value).startswith(f"{path}: ")
    assert all(repr(key) in str(exc.value) for key in SECTION_OF)
    assert all(repr(name) in str(exc.value) for name in SECTIONS)
    path = _spec_file(tmp_path, {"gates": {"metric_flor": 0.6}})
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    known = [f.name for f in fields(ModelGatePolicy)]
    assert str(exc.value) == f"{path}: unknown policy.gates key 'metric_flor'; known: {known}"


def test_a_section_must_be_a_mapping(tmp_path: Path) -> None:
    path = _spec_file(tmp_path, {"gates": [0.6]})
    with pytest.raises(SpecError, match=r"policy\.gates must be a mapping of gates settings, got list"):
        load_spec(path)


@pytest.mark.parametrize(
    ("policy", "error"),
    [
        ({"max_ece": -0.1}, "policy.max_ece must be >= 0, got -0.1"),
        ({"decision_threshold": 1.0}, "policy.decision_threshold must be in (0, 1), got 1.0"),
        ({"bootstrap_samples": 50}, "policy.bootstrap_samples must be >= 100, got 50"),
        ({"min_rows": 2.5}, "policy.min_rows must be a whole number, got 2.5"),
        ({"max_null_share_increase": 1.5}, "policy.max_null_share_increase must be <= 1, got 1.5"),
        ({"allow_protected_as_features": "yes"}, "policy.allow_protected_as_features must be true or false"),
        ({"headline_metric": "accuracy"}, "policy.headline_metric must be one of ['roc_auc', 'pr_auc']"),
        ({"volume_ratio_bounds": [2, 3]}, "policy.volume_ratio_bounds must satisfy 0 < lo <= 1 <= hi"),
    ],
)
def test_the_rules_are_the_same_in_either_form(policy: dict[str, Any], error: str) -> None:
    (key,) = policy
    for form in (policy, {SECTION_OF[key]: policy}):
        with pytest.raises(PolicyError) as exc:
            policy_from_dict(form, "spec.yaml")
        assert str(exc.value).startswith(f"spec.yaml: {error}"), (form, str(exc.value))


# --------------------------------------------------------------------------------------------------
# Launchpad overrides generated from the fields
# --------------------------------------------------------------------------------------------------


def test_every_scalar_evaluation_and_gate_setting_is_overridable_from_the_launchpad() -> None:
    expected = {
        f.name
        for cls in (EvaluationPolicy, ModelGatePolicy)
        for f in scalar_fields(cls)
        if "set_before_evaluation" not in f.metadata
    }
    # What may not be overridden says why; the rest of the scalar settings are launchpad fields.
    fixed = {f.name for cls in (EvaluationPolicy, ModelGatePolicy) for f in scalar_fields(cls)} - expected
    assert fixed == {"holdout_fraction", "random_seed", "headline_metric"}
    assert set(PolicyOverrides.model_fields) == expected == {f.name for f, _ in evaluation_override_fields()}
    docs = {**field_descriptions(EvaluationPolicy), **field_descriptions(ModelGatePolicy)}
    types = {f.name: f.type for cls in (EvaluationPolicy, ModelGatePolicy) for f in fields(cls)}
    for name, info in PolicyOverrides.model_fields.items():
        assert info.default is None and info.description == docs[name], name
        assert info.annotation == (types[name] | None), name
    # The asset's config schema (what the launchpad shows) has the same fields, optional and described.
    defs = evaluations.build(MLModel.from_spec(str(packaged_spec_path("synthetic"))))
    (asset,) = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    schema_fields = asset.op.config_schema.config_type.fields
    assert set(schema_fields) == expected
    assert all(not f.is_required and f.description == docs[name] for name, f in schema_fields.items())


def _bad(field_type: type) -> Any:
    """A value of the field's type that its rule refuses (every int setting has a lower bound)."""
    return {int: -1, float: math.nan, str: "bogus", bool: None}[field_type]


@pytest.mark.parametrize("name", sorted(PolicyOverrides.model_fields))
def test_an_override_is_validated_by_the_spec_rules_naming_the_launchpad_and_key(name: str) -> None:
    field_type = next(f.type for f, _ in evaluation_override_fields() if f.name == name)
    with pytest.raises(PolicyError) as exc:
        PolicyOverrides(**{name: _bad(field_type)}).apply(Policy())
    assert str(exc.value).startswith(f"{LAUNCHPAD}: policy.{name} ")


def test_an_override_replaces_only_its_setting() -> None:
    spec_policy = load_spec("synthetic").policy
    assert PolicyOverrides().apply(spec_policy) is spec_policy
    applied = PolicyOverrides(metric_floor=0.7, insufficient_data="fail", calibration_bins=5).apply(spec_policy)
    assert applied.gates.metric_floor == 0.7 and applied.gates.insufficient_data == "fail"
    assert applied.evaluation.calibration_bins == 5
    assert applied.with_overrides(spec_policy.to_flat_dict()) == spec_policy


def test_the_generated_config_works_as_an_asset_config_in_a_run() -> None:
    @dg.asset
    def effective_policy(config: PolicyOverrides) -> dict[str, Any]:
        return config.apply(Policy()).to_dict()

    run_config = {"ops": {"effective_policy": {"config": {"metric_floor": 0.7, "insufficient_data": "fail"}}}}
    result = dg.materialize([effective_policy], run_config=run_config)
    assert result.success
    recorded = result.output_for_node("effective_policy")
    assert recorded["gates"]["metric_floor"] == 0.7 and recorded["gates"]["insufficient_data"] == "fail"
    assert policy_from_dict(recorded) == Policy().with_overrides({"metric_floor": 0.7, "insufficient_data": "fail"})
    with pytest.raises(dg.DagsterInvalidConfigError, match="metric_flor"):
        dg.materialize([effective_policy], run_config={"ops": {"effective_policy": {"config": {"metric_flor": 0.7}}}})
    bad = {"ops": {"effective_policy": {"config": {"decision_threshold": 1.5}}}}
    failed = dg.materialize([effective_policy], run_config=bad, raise_on_error=False)
    assert not failed.success
    errors = [e.event_specific_data.error for e in failed.all_events if e.is_step_failure]
    assert errors and errors[0].cause is not None and errors[0].cause.cls_name == "PolicyError"
    assert errors[0].cause.message.startswith(
        f"mlops_assets.ml.policy.PolicyError: {LAUNCHPAD}: policy.decision_threshold "
    )
