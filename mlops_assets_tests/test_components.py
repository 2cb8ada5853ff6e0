"""MLModelComponent: one model per YAML declaration, side by side in one code location."""

import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox

from mlops_assets.components import MLModelComponent
from mlops_assets.definitions import build_defs
from mlops_assets.environments import local_environment
from mlops_assets.ml.spec import packaged_spec_path
from mlops_assets.model import MLModel, ModelConfigError
from mlops_assets.resources import LandingZone

pytestmark = pytest.mark.wiring

REPO = Path(__file__).resolve().parent.parent


def _spec_file(tmp_path: Path, name: str = "acme") -> Path:
    """The synthetic spec under another name, as a user's own spec file."""
    data = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    data["name"] = name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_scaffolded_model_builds_its_own_prefixed_graph(tmp_path: Path):
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.scaffold_component(
            component_cls=MLModelComponent,
            defs_path="models/acme",
            scaffold_params={"spec": str(_spec_file(tmp_path))},
        )
        declared = yaml.safe_load((folder / "defs.yaml").read_text())
        assert declared["type"] == "mlops_assets.components.MLModelComponent"
        assert declared["attributes"]["name"] == "acme" and declared["attributes"]["spec"] == "spec.yaml"
        assert (folder / "spec.yaml").is_file()
        with sandbox.build_component_tree() as tree:
            component = tree.load_component(folder)
            assert isinstance(component, MLModelComponent)
            # The instance's graph with the code location's shared resources, resolved as `dg check defs` would.
            env = local_environment(tmp_path / "data")
            defs = dg.Definitions.merge(tree.build_defs(folder), dg.Definitions(resources=env.resources))
            defs.get_repository_def().validate_loadable()
            keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
            assert {"acme/raw_data", "acme/candidate_model", "acme/production_deployment"} <= keys
            assert all(k.startswith("acme/") for k in keys)
            raw = defs.get_assets_def(dg.AssetKey(["acme", "raw_data"]))
            assert raw.partitions_def == dg.DynamicPartitionsDefinition(name="acme__data_versions")
            assert defs.resolve_job_def("acme__lifecycle_job") is not None
            assert defs.resolve_sensor_def("acme__landing_sensor") is not None
            assert defs.resolve_job_def("acme__promote_job") is not None


def test_missing_spec_file_names_the_declaration_and_the_rule(tmp_path: Path):
    component = MLModelComponent(spec="spec.yaml")
    with pytest.raises(ModelConfigError, match=r"acme/defs.yaml: spec file 'spec.yaml' not found"):
        component.declared_model(tmp_path / "acme")


def test_malformed_spec_fails_the_load_naming_file_and_key(tmp_path: Path):
    folder = tmp_path / "acme"
    folder.mkdir()
    data = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    data["columns"]["age"]["type"] = "integer"
    (folder / "spec.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ModelConfigError, match=r"defs.yaml: .*spec.yaml.*columns.age.type"):
        MLModelComponent(spec="spec.yaml").declared_model(folder)


@pytest.mark.parametrize("name", ["Acme", "a__b", "1acme", "acme-2", ""])
def test_invalid_model_names_are_refused(tmp_path: Path, name: str):
    with pytest.raises(ModelConfigError, match="model name"):
        MLModelComponent(name=name or "-", spec="synthetic").declared_model(tmp_path / "x")


def test_inline_spec_and_the_models_own_name(tmp_path: Path):
    data = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    model = MLModelComponent(name="churn_eu", spec=data).declared_model(tmp_path / "churn_eu")
    assert model.spec().name == "churn_eu"  # the registry key is the model's, not the spec's
    with pytest.raises(ModelConfigError, match=r"bad/defs.yaml \(spec\): 'columns' must be a non-empty mapping"):
        MLModelComponent(spec={**data, "columns": {}}).declared_model(tmp_path / "bad")


def test_environment_overrides_the_landing_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    component = MLModelComponent(
        spec="synthetic",
        landing="shared/acme",
        environments={"prod": {"landing": "s3://acme-bucket/landing/"}},  # type: ignore[dict-item]
    )
    monkeypatch.setenv("MLOPS_ENV", "local")
    assert component.declared_model(tmp_path / "acme").landing == "shared/acme"
    monkeypatch.setenv("MLOPS_ENV", "prod")
    assert component.declared_model(tmp_path / "acme").landing == "s3://acme-bucket/landing/"


def test_landing_zone_of_a_model(tmp_path: Path):
    root = LandingZone(directory=str(tmp_path / "landing"))
    assert MLModel(name="acme", spec_source="synthetic").landing_zone(root).root == tmp_path / "landing" / "acme"
    assert MLModel(name="acme", spec_source="synthetic", landing="x/y").landing_zone(root).root == (
        tmp_path / "landing" / "x" / "y"
    )
    elsewhere = tmp_path / "elsewhere"
    assert MLModel(name="acme", spec_source="synthetic", landing=str(elsewhere)).landing_zone(root).root == elsewhere
    with pytest.raises(ValueError, match="inside the landing root"):
        MLModel(name="acme", spec_source="synthetic", landing="../other").landing_zone(root)


def test_packaged_models_load_side_by_side_grouped_and_owned(tmp_path: Path):
    defs = build_defs(local_environment(tmp_path / "data"))
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    for model in ("flights", "synthetic"):
        assert f"{model}/raw_data" in keys and f"{model}/performance_report" in keys
        assert defs.resolve_job_def(f"{model}__lifecycle_job") is not None
        assert defs.resolve_sensor_def(f"{model}__drift_sensor") is not None
    for assets_def in defs.resolve_asset_graph().assets_defs:
        for key in assets_def.keys:
            model = key.path[0]
            assert assets_def.group_names_by_key[key] == model
            assert assets_def.specs_by_key[key].owners == ["team:ml-platform"]
            assert assets_def.specs_by_key[key].tags["mlops/model"] == model
            # Every asset says what it is built with (the UI's kind badges) and which lifecycle stage it belongs to.
            assert assets_def.specs_by_key[key].kinds, f"{key.to_user_string()} has no kinds"
            assert assets_def.specs_by_key[key].tags.get("mlops/stage"), key
    partitions = {
        a.partitions_def.name  # type: ignore[union-attr]
        for a in defs.resolve_asset_graph().assets_defs
        if isinstance(a.partitions_def, dg.DynamicPartitionsDefinition)
    }
    assert partitions == {"flights__data_versions", "synthetic__data_versions"}


@pytest.mark.e2e
def test_dg_lists_the_component():
    dg_cli = shutil.which("dg")
    assert dg_cli, "dg (dagster-dg-cli) is a dev dependency"
    out = subprocess.run([dg_cli, "list", "components"], cwd=REPO, capture_output=True, text=True, check=True)
    assert "mlops_assets.components.MLModelComponent" in out.stdout
