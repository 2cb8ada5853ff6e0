"""docs/own-data.md works: its commands, read from the page, take a new data set to a model in production.

The page's data-preparation block makes three CSV files from scikit-learn's bundled handwritten digits (a data set
the project uses nowhere else; nothing is downloaded); its command block (infer the spec, check it, declare the
model with ``dg scaffold``, run the lifecycle with ``mlops-demo``) runs line by line in a temporary folder, each
command as a shell would run it. The folder stands in for the repository root: a minimal ``dg`` project (``dg.toml``
and a defs folder), so the scaffold writes there and not into the package. The Dagster daemon runs the lifecycle;
the test asserts a version reaches Production, read from the registry.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops_assets.components import MLModelComponent
from mlops_assets.environments import local_environment
from mlops_assets.ml.spec import load_spec

pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[1] / "docs" / "own-data.md"
#: The dg project standing in for the repository root: its defs folder receives the scaffolded model.
DG_TOML = """directory_type = "project"

[project]
root_module = "ownproj"
registry_modules = ["mlops_assets.components"]
"""


def doc_block(marker: str) -> str:
    """The fenced code block right after ``<!-- own-data:<marker> -->`` in docs/own-data.md."""
    found = re.search(rf"<!-- own-data:{marker} -->\n```bash\n(.*?)```", DOC.read_text(), re.S)
    assert found, f"docs/own-data.md has no bash block marked own-data:{marker}"
    return found.group(1)


def doc_commands() -> list[str]:
    return [line for line in doc_block("commands").splitlines() if line.strip() and not line.startswith("#")]


def _env() -> dict[str, str]:
    """The caller's environment without Dagster/MLOps settings, with this interpreter's scripts first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MLOPS_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(command: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def test_the_page_lists_at_most_five_commands_covering_every_step() -> None:
    commands = doc_commands()
    assert len(commands) <= 5, commands
    for step in (
        "mlops-spec infer ",
        "mlops-spec check ",
        "dg scaffold defs mlops_assets.components.MLModelComponent models/",
        "mlops-demo ",
    ):
        assert any(c.startswith(step) for c in commands), f"no command starting {step!r} in {commands}"


def test_the_documented_commands_take_a_new_data_set_to_production(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "src" / "ownproj" / "defs").mkdir(parents=True)
    (work / "dg.toml").write_text(DG_TOML)
    for init in (work / "src" / "ownproj" / "__init__.py", work / "src" / "ownproj" / "defs" / "__init__.py"):
        init.write_text("")
    _run(doc_block("prepare"), work, timeout=300)
    files = sorted((work / "data").glob("*.csv"))
    assert len(files) >= 3, files

    outputs: dict[str, str] = {}
    for command in doc_commands():
        done = _run(command, work, timeout=1500)
        outputs[command.split()[0] + " " + command.split()[1]] = done.stdout + done.stderr

    # infer wrote a spec that loads and passes its own samples; check agreed.
    spec_path = next(work.glob("*.yaml"))
    spec = load_spec(spec_path)
    assert spec.label.column == "high_digit" and spec.label.positive == "yes"
    assert spec.id_column == "image_id" and spec.order_column == "scanned_at"
    assert "passes every data gate" in outputs["mlops-spec infer"]
    assert f"Result: all {len(files)} file(s) passed every data gate" in outputs["mlops-spec check"]

    # The scaffold declared the model, with a copy of the spec, and the declaration builds that model.
    folder = work / "src" / "ownproj" / "defs" / "models" / spec.name
    declared = yaml.safe_load((folder / "defs.yaml").read_text())
    assert declared["type"] == "mlops_assets.components.MLModelComponent"
    assert (folder / "spec.yaml").read_text() == spec_path.read_text()
    model = MLModelComponent(**declared["attributes"]).declared_model(folder)
    assert model.name == spec.name and model.spec().fingerprint() == spec.fingerprint()

    # The demo ran the lifecycle through the daemon and a version is in Production.
    demo = outputs["mlops-demo --spec"]
    assert f"in production: {spec.name} v" in demo, demo[-3000:]
    home = work / ".dagster_home" / spec.name
    assert (home / "workspace.yaml").is_file()  # what the page's UI command serves
    registry = local_environment(home / "mlops").resources["registry"].open()
    try:
        production = registry.production_version(spec.name)
    finally:
        registry.close()
    assert production is not None and production.stage == "Production"
