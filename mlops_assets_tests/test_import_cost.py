"""Loading the code location imports only what it needs; the costly optional modules load on first use.

skops (its trusted-type scan imports hundreds of scikit-learn modules) and dagster-aws (only the prod
environment's S3 resources) are not imported by ``import mlops_assets.definitions``, nor by building the local code
location's definitions (the definitions are built at the defs folder, so Dagster's root of the component tree does
not import every installed component library, dagster-aws's among them, to describe their types); a model load
still works, importing skops then. The
evaluation's plots are small SVG text and need no plotting library (matplotlib is not a dependency). Each check runs
in a fresh interpreter (``sys.modules`` of the test process is whatever earlier tests imported). No timing: the cost
itself is measured by ``benchmarks/import_benchmark.py`` (docs/benchmarks/imports.md).

Prod's multiprocess executor starts step processes from a forkserver that preloads the code location where the
platform has one: its config is checked here.
"""

import json
import multiprocessing
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.wiring

#: Imported on use only, never by importing the code location (nor by loading it: see the tests).
ON_USE_ONLY = ("skops", "matplotlib", "dagster_aws")


def _run(code: str, tmp_path: Path) -> Any:
    """Run ``code`` in a fresh interpreter with the local environment in ``tmp_path``; the JSON it prints last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env.update(DAGSTER_HOME=str(tmp_path / "home"), MLOPS_DATA_DIR=str(tmp_path / "data"))
    (tmp_path / "home").mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


LOADED = f"[m for m in {ON_USE_ONLY!r} if m in sys.modules]"


def test_loading_the_local_code_location_imports_no_skops_or_matplotlib(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "import mlops_assets.definitions as d\n"
        f"after_import = {LOADED}\n"
        "repo = d.code_location_defs().get_repository_def()\n"
        "jobs = sorted(j.name for j in repo.get_all_jobs())\n"
        f"print(json.dumps({{'import': after_import, 'load': {LOADED}, 'jobs': jobs,\n"
        "                  's3_resources': 'mlops_assets.s3_resources' in sys.modules}))\n"
    )
    found = _run(code, tmp_path)
    assert found["import"] == []
    assert found["load"] == [] and not found["s3_resources"]
    # The definitions really were built: both packaged models' jobs.
    assert {"flights__lifecycle_job", "synthetic__ingest_job"} <= set(found["jobs"])


def test_the_code_location_serves_the_same_definitions_as_dagsters_whole_tree(tmp_path: Path) -> None:
    # Built at the defs folder, the definitions hold everything the folder declares: the same assets, checks, jobs,
    # sensors and schedules as Dagster's build of the whole component tree (which adds only the component-type
    # schemas of installed libraries, as metadata).
    code = (
        "import json\n"
        "import dagster as dg\n"
        "import mlops_assets.definitions as d\n"
        "from mlops_assets import defs as folder\n"
        "def names(repo):\n"
        "    return {'assets': sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()),\n"
        "            'checks': sorted(k.to_user_string() for k in repo.asset_graph.asset_check_keys),\n"
        "            'jobs': sorted(j.name for j in repo.get_all_jobs()),\n"
        "            'sensors': sorted(s.name for s in repo.sensor_defs),\n"
        "            'schedules': sorted(s.name for s in repo.schedule_defs)}\n"
        "ours = names(d.code_location_defs().get_repository_def())\n"
        "tree = dg.ComponentTree(defs_module=folder, project_root=d.PROJECT_ROOT, code_location_name='x')\n"
        "whole = dg.Definitions.merge(tree.build_defs(), dg.Definitions(resources=d.environment().resources))\n"
        "print(json.dumps({'ours': ours, 'whole': names(whole.get_repository_def())}))\n"
    )
    found = _run(code, tmp_path)
    assert found["ours"]["jobs"] and found["ours"]["checks"]
    assert found["ours"] == found["whole"]


def test_a_model_is_stored_and_loaded_with_skops_imported_on_use(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from mlops_assets.storage.artifacts.skops_codec import load_model, store_model\n"
        "from mlops_assets.storage.artifacts.store import LocalArtifactStore\n"
        "before = 'skops' in sys.modules\n"
        "X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])\n"
        "model = LogisticRegression().fit(X, y)\n"
        "store = LocalArtifactStore(Path('artifacts'))\n"
        "loaded = load_model(store, store_model(store, model))\n"
        "same = loaded.predict_proba(X).tolist() == model.predict_proba(X).tolist()\n"
        "print(json.dumps({'before': before, 'after': 'skops' in sys.modules, 'same': same}))\n"
    )
    assert _run(code, tmp_path) == {"before": False, "after": True, "same": True}


def test_the_evaluation_plots_need_no_plotting_library(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from mlops_assets.ml import plots\n"
        "md = plots.roc_curve_svg(np.array([0, 1, 0, 1]), {'candidate': np.array([0.1, 0.8, 0.3, 0.6])})\n"
        "print(json.dumps({'svg': 'svg' in md, 'matplotlib': 'matplotlib' in sys.modules}))\n"
    )
    assert _run(code, tmp_path) == {"svg": True, "matplotlib": False}


# --- Prod's multiprocess executor ------------------------------------------------------------------------------------


def test_prod_multiprocess_executor_preloads_the_code_location_in_a_forkserver() -> None:
    from mlops_assets.environments import STEP_PRELOAD_MODULES, multiprocess_executor_config

    config = multiprocess_executor_config(3, start_methods=["fork", "spawn", "forkserver"])
    assert config == {"max_concurrent": 3, "start_method": {"forkserver": {"preload_modules": [*STEP_PRELOAD_MODULES]}}}
    assert "mlops_assets.definitions" in STEP_PRELOAD_MODULES
    # A forkserver ignores a preload module that does not import: each one must exist.
    assert [m for m in STEP_PRELOAD_MODULES if find_spec(m) is None] == []
    # Without a forkserver (Windows): Dagster's default start method (spawn), nothing preloaded.
    assert multiprocess_executor_config(None, start_methods=["spawn"]) == {}


def test_prod_definitions_configure_the_multiprocess_executor() -> None:
    from mlops_assets.environments import STEP_PRELOAD_MODULES, prod_environment

    env = prod_environment("acme-mlops", "sqlite:///registry.db", executor="multiprocess", max_concurrent_steps=2)
    executor_def = env.executor
    assert executor_def.name == "multiprocess"
    # The config Dagster resolves for the executor (the configured values, with defaults filled in).
    resolved = executor_def.config_schema.resolve_config({})
    assert resolved.success, resolved.errors
    config = resolved.value["config"]
    assert config["max_concurrent"] == 2
    if "forkserver" in multiprocessing.get_all_start_methods():
        assert config["start_method"] == {"forkserver": {"preload_modules": [*STEP_PRELOAD_MODULES]}}
    else:
        assert "start_method" not in config  # Dagster's default: spawn
