"""``docs/architecture-graph.md``: the architecture drawn from the code location's definitions, never by hand.

``python -m mlops_assets_tests.architecture_graph`` loads the code location (``mlops_assets.definitions.build_defs``
with the local environment in a temporary folder, as the tests load it) and writes the page: for one model
(:data:`MODEL`) mermaid flowcharts of its assets by ``mlops/stage`` with their dependencies and checks (blocking
or warning), of its sensors, schedules and jobs (which job each sensor and schedule targets, which assets each job
selects), tables of the same, and a diagram of the package's layers (pure core: ``ml/`` and ``storage/``; the rest
wiring) from the ``import`` statements of every module. ``mlops_assets_tests/test_architecture_graph.py`` fails
when the committed page differs from :func:`render` and checks the page against the definitions on its own.

Every list is sorted (stages and assets in dependency order, ties by name), so the page is a function of the code.
"""

import ast
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

import mlops_assets

ROOT = Path(__file__).resolve().parents[1]
#: The generated page.
PAGE = ROOT / "docs" / "architecture-graph.md"
#: The model drawn (every model of the code location is checked to have the same graph).
MODEL = "flights"
#: What regenerates the page.
COMMAND = "python -m mlops_assets_tests.architecture_graph"
#: The tag naming an asset's lifecycle stage.
STAGE_TAG = "mlops/stage"
PACKAGE = Path(mlops_assets.__file__).resolve().parent
#: Subpackages of ``mlops_assets`` that form the pure core (no dagster); every other module is wiring.
CORE_PACKAGES = ("ml", "storage")


# -- what the definitions say about one model ---------------------------------------------------------------------


@dataclass(frozen=True)
class AssetInfo:
    """One asset of a model: short name, stage tag, partitioned or not, recorded only (external), parents."""

    name: str
    stage: str
    partitioned: bool
    external: bool
    parents: tuple[str, ...]


@dataclass(frozen=True)
class ModelGraph:
    """The definitions of one model, with asset keys shortened to the name after ``<model>/``.

    ``checks``: asset → ((check name, blocking), ...). ``sensors``: name → (sensor type, default status, target
    jobs, description). ``schedules``: name → (cron, timezone, default status, target job, description). ``jobs``:
    name → (selected assets, op names when it selects none, description).
    """

    model: str
    assets: tuple[AssetInfo, ...]
    checks: Mapping[str, tuple[tuple[str, bool], ...]]
    sensors: Mapping[str, tuple[str, str, tuple[str, ...], str]]
    schedules: Mapping[str, tuple[str, str, str, str, str]]
    jobs: Mapping[str, tuple[tuple[str, ...], tuple[str, ...], str]]

    def normalized(self) -> str:
        """The graph with this model's name replaced by ``<model>``: equal for two models with the same graph."""
        return repr(self).replace(self.model, "<model>")


def load_defs(data_dir: Path) -> dg.Definitions:
    """The code location's definitions with the local environment under ``data_dir`` (nothing is written there)."""
    from mlops_assets.definitions import build_defs
    from mlops_assets.environments import local_environment

    return build_defs(local_environment(data_dir))


def models_of(defs: dg.Definitions) -> list[str]:
    """The names of the models served (the first part of every asset key), sorted."""
    return sorted({key.path[0] for key in defs.resolve_asset_graph().get_all_asset_keys()})


def _depths(parents: Mapping[str, tuple[str, ...]]) -> dict[str, int]:
    """Longest path from a root to each asset (roots 0): the dependency order used for sorting."""
    depth: dict[str, int] = {}

    def visit(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((visit(p) for p in parents[name]), default=-1)
        return depth[name]

    for name in parents:
        visit(name)
    return depth


def model_graph(defs: dg.Definitions, model: str) -> ModelGraph:
    """What ``defs`` defines for ``model``: its assets, checks, sensors, schedules and jobs (see :class:`ModelGraph`).

    Raises:
        ValueError: ``model`` has no assets in ``defs``.
    """
    graph = defs.resolve_asset_graph()
    repository = defs.get_repository_def()

    def short(key: dg.AssetKey) -> str:
        return "/".join(key.path[1:])

    keys = [k for k in graph.get_all_asset_keys() if k.path[0] == model]
    if not keys:
        raise ValueError(f"no assets of model {model!r} in the definitions (models: {models_of(defs)})")
    nodes = {short(k): graph.get(k) for k in keys}
    parents = {name: tuple(sorted(short(p) for p in node.parent_keys)) for name, node in nodes.items()}
    depth = _depths(parents)
    assets = tuple(
        AssetInfo(
            name=name,
            stage=node.tags.get(STAGE_TAG, "(no stage tag)"),
            partitioned=node.partitions_def is not None,
            external=not node.is_materializable,
            parents=parents[name],
        )
        for name, node in sorted(nodes.items(), key=lambda item: (depth[item[0]], item[0]))
    )
    checks: dict[str, list[tuple[str, bool]]] = {}
    for check in graph.asset_check_keys:
        if check.asset_key.path[0] == model:
            checks.setdefault(short(check.asset_key), []).append((check.name, graph.get_check_spec(check).blocking))
    prefix = f"{model}__"
    sensors = {
        s.name: (
            s.sensor_type.value,
            s.default_status.value,
            tuple(sorted(t.job_name for t in s.targets)),
            s.description or "",
        )
        for s in repository.sensor_defs
        if s.name.startswith(prefix)
    }
    schedules = {
        s.name: (
            str(s.cron_schedule),
            s.execution_timezone or "UTC",
            s.default_status.value,
            s.job_name,
            s.description or "",
        )
        for s in repository.schedule_defs
        if s.name.startswith(prefix)
    }
    scheduled_jobs = {job for (_, _, _, job, _) in schedules.values()}
    jobs = {}
    for job in repository.get_all_jobs():
        if not (job.name.startswith(prefix) or job.name in scheduled_jobs):
            continue
        selected = tuple(sorted((short(k) for k in job.asset_layer.selected_asset_keys), key=lambda n: (depth[n], n)))
        ops = () if selected else tuple(sorted(node.name for node in job.graph.node_defs))
        jobs[job.name] = (selected, ops, job.description or "")
    return ModelGraph(
        model=model,
        assets=assets,
        checks={asset: tuple(sorted(found)) for asset, found in sorted(checks.items())},
        sensors=dict(sorted(sensors.items())),
        schedules=dict(sorted(schedules.items())),
        jobs=dict(sorted(jobs.items())),
    )


# -- the package's layers, from its imports --------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``mlops_assets`` module ``path`` imports (absolute and relative, anywhere in the file)."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "mlops_assets" or name.startswith("mlops_assets.")}


def _imports_dagster(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0].startswith("dagster") for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("dagster"):
            return True
    return False


def unit_of(module: str) -> str:
    """The box a module is drawn in: its subpackage below ``mlops_assets`` (two levels deep for ``storage``), or
    ``top-level modules``."""
    parts = module.split(".")[1:]
    if not parts or (len(parts) == 1 and (PACKAGE / f"{parts[0]}.py").exists()):
        return "top-level modules"
    if parts[0] == "storage" and len(parts) >= 2 and (PACKAGE / "storage" / parts[1]).is_dir():
        return f"storage/{parts[1]}"
    return parts[0]


def layer_of(unit: str) -> str:
    """``pure core`` for the units under :data:`CORE_PACKAGES`, else ``wiring``."""
    return "pure core" if unit.split("/")[0] in CORE_PACKAGES else "wiring"


@dataclass(frozen=True)
class Layers:
    """The package by unit: its modules, which of them import dagster, and the imports between units (counts)."""

    modules: Mapping[str, tuple[str, ...]]
    dagster: Mapping[str, tuple[str, ...]]
    edges: Mapping[tuple[str, str], int]


def package_layers(package: Path = PACKAGE) -> Layers:
    """Modules of ``mlops_assets`` grouped by :func:`unit_of`, and which unit imports which (module pairs)."""
    paths = sorted(package.rglob("*.py"))
    names = {_module_name(p): p for p in paths}
    modules: dict[str, list[str]] = {}
    dagster_users: dict[str, list[str]] = {}
    edges: dict[tuple[str, str], int] = {}
    for name, path in sorted(names.items()):
        unit = unit_of(name)
        modules.setdefault(unit, []).append(name)
        if _imports_dagster(path):
            dagster_users.setdefault(unit, []).append(name)
        targets = {t for t in _imports(path) if t in names and t != name}
        for target in sorted(targets):
            pair = (unit, unit_of(target))
            if pair[0] != pair[1]:
                edges[pair] = edges.get(pair, 0) + 1
    return Layers(
        modules={u: tuple(m) for u, m in sorted(modules.items())},
        dagster={u: tuple(m) for u, m in sorted(dagster_users.items())},
        edges=dict(sorted(edges.items())),
    )


# -- rendering ----------------------------------------------------------------------------------------------------


def node_id(kind: str, name: str) -> str:
    """A mermaid node id: ``kind`` (``a`` asset, ``k`` checks of an asset, ``s`` sensor, ``t`` schedule, ``j`` job,
    ``u`` package unit) and the name with every other character than a letter, digit or ``_`` as ``_``."""
    return f"{kind}_{re.sub(r'[^0-9A-Za-z_]', '_', name)}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _leaves(modules: Iterable[str]) -> str:
    return ", ".join(f"`{module.rpartition('.')[2]}`" for module in modules)


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    match = re.match(r"(.+?\.)(\s|$)", text)
    return match.group(1) if match else text


def _asset_label(asset: AssetInfo) -> str:
    notes = [n for n, on in (("not partitioned", not asset.partitioned), ("external, recorded", asset.external)) if on]
    return asset.name + "".join(f"<br/><i>{n}</i>" for n in notes)


def _stages(g: ModelGraph) -> dict[str, list[AssetInfo]]:
    """The assets by stage; stages in dependency order (the earliest materializable asset; recorded-only stages
    last), ties by name."""
    depth = {asset.name: i for i, asset in enumerate(g.assets)}  # g.assets is in dependency order
    stages: dict[str, list[AssetInfo]] = {}
    for asset in g.assets:
        stages.setdefault(asset.stage, []).append(asset)

    def order(stage: str) -> tuple[int, str]:
        computed = [depth[a.name] for a in stages[stage] if not a.external]
        return (min(computed) if computed else len(depth), stage)

    return {stage: stages[stage] for stage in sorted(stages, key=order)}


def _asset_diagram(g: ModelGraph) -> list[str]:
    lines = ["```mermaid", "flowchart LR"]
    for stage, assets in _stages(g).items():
        lines.append(f'  subgraph {node_id("stage", stage)}["{stage}"]')
        for asset in assets:
            lines.append(f'    {node_id("a", asset.name)}["{_asset_label(asset)}"]')
            if asset.name in g.checks:
                label = "<br/>".join(
                    f"{name} ({'blocking' if blocking else 'warning'})" for name, blocking in g.checks[asset.name]
                )
                lines.append(f'    {node_id("k", asset.name)}{{{{"{label}"}}}}')
        lines.append("  end")
    for asset in g.assets:
        lines.extend(f"  {node_id('a', parent)} --> {node_id('a', asset.name)}" for parent in asset.parents)
    lines.extend(f"  {node_id('a', asset)} -.- {node_id('k', asset)}" for asset in g.checks)
    lines.append("```")
    return lines


def _job_label(g: ModelGraph, job: str) -> str:
    selected, ops, _ = g.jobs[job]
    materializable = [a.name for a in g.assets if not a.external]
    if selected and sorted(selected) == sorted(materializable):
        what = f"every asset of {g.model} ({len(selected)})"
    elif selected:
        what = ", ".join(selected)
    else:
        what = "op " + ", ".join(ops)
    return f"{job}<br/><small>{what}</small>"


def _automation_diagram(g: ModelGraph) -> list[str]:
    lines = ["```mermaid", "flowchart LR"]
    lines.append('  subgraph sensors["sensors"]')
    for name, (kind, status, _, _) in g.sensors.items():
        lines.append(f'    {node_id("s", name)}(["{name}<br/><small>{kind.lower()}, {status.lower()}</small>"])')
    lines.append("  end")
    lines.append('  subgraph schedules["schedules"]')
    for name, (cron, tz, status, _, _) in g.schedules.items():
        lines.append(f'    {node_id("t", name)}(["{name}<br/><small>{cron} {tz}, {status.lower()}</small>"])')
    lines.append("  end")
    lines.append('  subgraph jobs["jobs"]')
    lines.extend(f'    {node_id("j", job)}["{_job_label(g, job)}"]' for job in g.jobs)
    lines.append("  end")
    for name, (_, _, targets, _) in g.sensors.items():
        lines.extend(f"  {node_id('s', name)} --> {node_id('j', job)}" for job in targets)
    for name, (_, _, _, job, _) in g.schedules.items():
        lines.append(f"  {node_id('t', name)} --> {node_id('j', job)}")
    lines.append("```")
    return lines


def _layers_diagram(layers: Layers) -> list[str]:
    lines = ["```mermaid", "flowchart TB"]
    for layer in ("wiring", "pure core"):
        lines.append(f'  subgraph {node_id("layer", layer)}["{layer}"]')
        for unit, modules in layers.modules.items():
            if layer_of(unit) == layer:
                dagster = len(layers.dagster.get(unit, ()))
                lines.append(
                    f'    {node_id("u", unit)}["{unit}<br/><small>{len(modules)} module{"s" * (len(modules) != 1)}, '
                    f'{dagster} import{"s" * (dagster == 1)} dagster</small>"]'
                )
        lines.append("  end")
    lines.extend(
        f'  {node_id("u", source)} -->|"{count}"| {node_id("u", target)}'
        for (source, target), count in layers.edges.items()
    )
    lines.append("```")
    return lines


def render(graphs: Mapping[str, ModelGraph], layers: Layers, model: str = MODEL) -> str:
    """The page for the models' graphs (``graphs[model]`` is drawn) and the package's ``layers``."""
    g = graphs[model]
    same = sorted(m for m, other in graphs.items() if other.normalized() == g.normalized())
    different = sorted(set(graphs) - set(same))
    blocking = sum(b for checks in g.checks.values() for _, b in checks)
    total = sum(len(checks) for checks in g.checks.values())
    lines = [
        "# Architecture graph (generated)",
        "",
        f"<!-- Generated from the code location's definitions by `{COMMAND}`; do not edit by hand. -->",
        "",
        f"Generated from the definitions of the code location (`mlops_assets.definitions`) by `{COMMAND}`;",
        "`mlops_assets_tests/test_architecture_graph.py` fails when this page differs from what the definitions",
        "give, and checks every asset, check, sensor, schedule, job and dependency drawn here against them. The",
        "hand-written explanation is [architecture.md](architecture.md).",
        "",
        f"Drawn for the model `{model}`. Models with this same graph (their own name in place of `{model}` in every",
        f"key and name): {', '.join(f'`{m}`' for m in same)}.",
    ]
    if different:
        lines.append(f"Models whose graph differs: {', '.join(f'`{m}`' for m in different)}.")
    lines += [
        "",
        "## Assets and checks",
        "",
        f"Asset keys are `{model}/<name>`; one box per `{STAGE_TAG}` tag; an arrow is a dependency. Hexagons are the",
        f"asset's checks: {blocking} of {total} are blocking (a failure stops everything downstream in the run),",
        "the others warnings.",
        "",
        *_asset_diagram(g),
        "",
        "## Sensors, schedules and jobs",
        "",
        "An arrow is the job a sensor or schedule launches; a job box lists the assets it selects (its checks run",
        "with them). Sensors without an arrow launch no job (they record or repair runs).",
        "",
        *_automation_diagram(g),
        "",
        "| sensor | type | default | launches | what it does |",
        "|---|---|---|---|---|",
        *(
            f"| `{n}` | {kind.lower()} | {status.lower()} | {', '.join(f'`{t}`' for t in targets) or '—'} | "
            f"{_cell(_first_sentence(desc))} |"
            for n, (kind, status, targets, desc) in g.sensors.items()
        ),
        "",
        "| schedule | cron | default | launches | what it does |",
        "|---|---|---|---|---|",
        *(
            f"| `{n}` | `{cron}` {tz} | {status.lower()} | `{job}` | {_cell(_first_sentence(desc))} |"
            for n, (cron, tz, status, job, desc) in g.schedules.items()
        ),
        "",
        "| job | selects | what it does |",
        "|---|---|---|",
        *(
            f"| `{job}` | {', '.join(f'`{a}`' for a in selected) or 'op ' + ', '.join(f'`{o}`' for o in ops)} | "
            f"{_cell(_first_sentence(desc)) or '—'} |"
            for job, (selected, ops, desc) in g.jobs.items()
        ),
        "",
        "## Core and wiring",
        "",
        f"The modules of `mlops_assets`, one box per subpackage (`storage` by its subpackages); the pure core is "
        f"{' and '.join(f'`{p}/`' for p in CORE_PACKAGES)}, the rest",
        "wiring. An arrow `A --> B` labelled n: n modules of A import a module of B (an `import` anywhere in the",
        "file, read with `ast`). No arrow leaves the pure core for the wiring.",
        "",
        *_layers_diagram(layers),
        "",
        "| box | layer | modules | import dagster |",
        "|---|---|---|---|",
        *(
            f"| `{unit}` | {layer_of(unit)} | {_leaves(modules)} | {_leaves(layers.dagster.get(unit, ())) or '—'} |"
            for unit, modules in layers.modules.items()
        ),
        "",
    ]
    return "\n".join(lines)


def generate(data_dir: Path) -> str:
    """The page as the current definitions and sources give it (definitions loaded with ``data_dir``)."""
    defs = load_defs(data_dir)
    graphs = {m: model_graph(defs, m) for m in models_of(defs)}
    return render(graphs, package_layers())


def main() -> int:
    """Write :data:`PAGE`; prints its path."""
    with tempfile.TemporaryDirectory() as tmp:
        PAGE.write_text(generate(Path(tmp)))
    print(PAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
