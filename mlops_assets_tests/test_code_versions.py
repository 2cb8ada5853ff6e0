"""Dagster code versions of the assets whose logic defines a model: the package version and the spec.

``features``, ``candidate_model`` and ``model_evaluation`` carry ``code_version=<package version>+spec.<spec
fingerprint>``, so the UI marks their materializations stale after a release or a spec edit.
"""

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mlops_assets.assets import evaluations, features, models
from mlops_assets.ml.spec import packaged_spec_path
from mlops_assets.model import MLModel
from mlops_assets.provenance import asset_code_version, package_version

pytestmark = pytest.mark.wiring

VERSIONED = ("features", "candidate_model", "model_evaluation")


def _code_versions(model: MLModel) -> dict[str, str | None]:
    """The code version of each versioned asset of ``model``, as its stage builders define it."""
    versions: dict[dg.AssetKey, str | None] = {}
    for stage in (features, models, evaluations):
        for asset in stage.build(model).assets or ():
            assert isinstance(asset, dg.AssetsDefinition)
            versions.update(asset.code_versions_by_key)
    return {name: versions[model.key(name)] for name in VERSIONED}


@pytest.mark.parametrize("name", ["synthetic", "flights"])
def test_the_assets_defining_a_model_carry_the_package_version_and_the_spec(name: str) -> None:
    model = MLModel.from_spec(name)
    expected = f"{package_version()}+spec.{model.spec().fingerprint()[:12]}"
    assert asset_code_version(model) == expected
    assert _code_versions(model) == dict.fromkeys(VERSIONED, expected)


def test_each_model_has_its_own_code_version() -> None:
    synthetic, flights = MLModel.from_spec("synthetic"), MLModel.from_spec("flights")
    assert asset_code_version(synthetic) != asset_code_version(flights)


def _rewrite(path: Path, edit: dict[str, object]) -> None:
    data = yaml.safe_load(path.read_text())
    data["policy"] = {**data.get("policy", {}), **edit}
    stat = path.stat()
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    # A new mtime even on a coarse clock: the spec cache is keyed by it.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_the_code_version_changes_when_the_spec_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.yaml"
    shutil.copy(packaged_spec_path("synthetic"), path)
    model = MLModel.from_spec(str(path))
    before = _code_versions(model)
    assert _code_versions(model) == before  # stable while the spec is unchanged

    _rewrite(path, {"metric_floor": 0.65})
    after = _code_versions(model)
    assert set(after.values()) == {asset_code_version(model)}
    assert all(after[name] != before[name] for name in VERSIONED)
    assert all(str(v).startswith(f"{package_version()}+spec.") for v in after.values())


def test_the_code_version_changes_with_an_inline_spec() -> None:
    data = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    base = MLModel(name="acme", spec_source=data)
    edited = MLModel(name="acme", spec_source={**data, "policy": {**data["policy"], "metric_floor": 0.65}})
    assert _code_versions(base) != _code_versions(edited)
    assert _code_versions(base) == _code_versions(MLModel(name="acme", spec_source=dict(data)))
