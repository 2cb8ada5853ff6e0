"""``docs/architecture-graph.md`` is what the definitions give, and everything it draws exists.

* The committed page equals the page generated now (``python -m mlops_assets_tests.architecture_graph``).
* Independently of the generator, the page is parsed and compared with the definitions read through Dagster's API:
  every asset (in its ``mlops/stage`` box), check (blocking or warning), sensor, schedule and job of the drawn
  model appears; every dependency arrow, sensor → job and schedule → job arrow and job selection on the page
  exists in the definitions and none is missing; every model named as having the same graph has it; no arrow
  leaves the pure core for the wiring. A page edited by hand with a wrong edge fails even when it is committed.
"""

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets_tests import architecture_graph

pytestmark = pytest.mark.wiring

MODEL = architecture_graph.MODEL


@dataclass(frozen=True)
class Facts:
    """What the definitions hold for one model, short asset names (read here, not by the generator)."""

    stages: Mapping[str, str]  # asset → mlops/stage
    edges: frozenset[tuple[str, str]]  # (upstream, downstream)
    checks: frozenset[tuple[str, str, bool]]  # (asset, check, blocking)
    sensors: Mapping[str, frozenset[str]]  # sensor → jobs it targets
    schedules: Mapping[str, str]  # schedule → job
    jobs: Mapping[str, frozenset[str]]  # job → assets it selects


def _short(key: dg.AssetKey) -> str:
    return "/".join(key.path[1:])


def facts_of(defs: dg.Definitions, model: str) -> Facts:
    graph = defs.resolve_asset_graph()
    repository = defs.get_repository_def()
    keys = [key for key in graph.get_all_asset_keys() if key.path[0] == model]
    prefix = f"{model}__"
    schedules = {s.name: s.job_name for s in repository.schedule_defs if s.name.startswith(prefix)}
    return Facts(
        stages={_short(key): graph.get(key).tags.get("mlops/stage", "(no stage tag)") for key in keys},
        edges=frozenset((_short(parent), _short(key)) for key in keys for parent in graph.get(key).parent_keys),
        checks=frozenset(
            (_short(c.asset_key), c.name, graph.get_check_spec(c).blocking)
            for c in graph.asset_check_keys
            if c.asset_key.path[0] == model
        ),
        sensors={
            s.name: frozenset(t.job_name for t in s.targets)
            for s in repository.sensor_defs
            if s.name.startswith(prefix)
        },
        schedules=schedules,
        jobs={
            job.name: frozenset(_short(k) for k in job.asset_layer.selected_asset_keys)
            for job in repository.get_all_jobs()
            if job.name.startswith(prefix) or job.name in schedules.values()
        },
    )


def _normalized(facts: Facts, model: str) -> str:
    return repr(
        (
            sorted(facts.stages.items()),
            sorted(facts.edges),
            sorted(facts.checks),
            sorted((n, sorted(t)) for n, t in facts.sensors.items()),
            sorted(facts.schedules.items()),
            sorted((n, sorted(a)) for n, a in facts.jobs.items()),
        )
    ).replace(model, "<model>")


def _mermaid_blocks(page: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)```", page, flags=re.S)


def _compare(what: str, on_page: set, defined: set) -> list[str]:  # type: ignore[type-arg]
    problems = []
    if extra := sorted(on_page - defined, key=repr):
        problems.append(f"{what} on the page but not in the definitions: {extra}")
    if missing := sorted(defined - on_page, key=repr):
        problems.append(f"{what} in the definitions but not on the page: {missing}")
    return problems


def page_problems(page: str, facts: Facts, same_graph: Mapping[str, bool]) -> list[str]:
    """Every way ``page`` disagrees with ``facts`` (the drawn model's definitions) and with ``same_graph`` (model →
    whether its graph equals the drawn model's); empty when it agrees."""
    blocks = _mermaid_blocks(page)
    if len(blocks) != 3:
        return [f"expected 3 mermaid diagrams (assets, automation, layers), found {len(blocks)}"]
    assets_block, automation_block, layers_block = blocks

    # Assets in their stage boxes, checks, dependency arrows.
    stages: dict[str, str] = {}
    asset_ids: dict[str, str] = {}
    checks: set[tuple[str, str, bool]] = set()
    check_ids: dict[str, str] = {}
    stage = None
    for line in assets_block.splitlines():
        if m := re.match(r'\s*subgraph \w+\["([^"]+)"\]', line):
            stage = m.group(1)
        elif m := re.match(r'\s*(a_\w+)\["([^"<]+)', line):
            asset_ids[m.group(1)] = m.group(2)
            stages[m.group(2)] = stage or "(outside any box)"
        elif m := re.match(r'\s*(k_\w+)\{\{"([^"]*)"\}\}', line):
            check_ids[m.group(1)] = m.group(2)
    for line in assets_block.splitlines():
        if m := re.match(r"\s*(a_\w+) -\.- (k_\w+)\s*$", line):
            asset = asset_ids.get(m.group(1), m.group(1))
            for entry in check_ids.get(m.group(2), "").split("<br/>"):
                if c := re.fullmatch(r"(\w+) \((blocking|warning)\)", entry):
                    checks.add((asset, c.group(1), c.group(2) == "blocking"))
    edges = {
        (asset_ids.get(m.group(1), m.group(1)), asset_ids.get(m.group(2), m.group(2)))
        for m in re.finditer(r"^\s*(a_\w+) --> (a_\w+)\s*$", assets_block, flags=re.M)
    }
    problems = _compare("assets", set(stages), set(facts.stages))
    problems += [
        f"asset {a} is drawn in box {stages[a]!r}, its mlops/stage is {facts.stages[a]!r}"
        for a in sorted(set(stages) & set(facts.stages))
        if stages[a] != facts.stages[a]
    ]
    problems += _compare("dependency edges", edges, set(facts.edges))
    problems += _compare("checks (asset, check, blocking)", checks, set(facts.checks))

    # Sensors, schedules, jobs and their arrows; the jobs' selections from the job table.
    names = {
        m.group(1): m.group(2) for m in re.finditer(r'^\s*([stj]_\w+)\(?\[\(?"([^"<]+)', automation_block, flags=re.M)
    }
    arrows = {
        (names.get(m.group(1), m.group(1)), names.get(m.group(2), m.group(2)))
        for m in re.finditer(r"^\s*([st]_\w+) --> (j_\w+)\s*$", automation_block, flags=re.M)
    }
    drawn = {kind: {n for i, n in names.items() if i.startswith(kind)} for kind in "stj"}
    problems += _compare("sensors", drawn["s"], set(facts.sensors))
    problems += _compare("schedules", drawn["t"], set(facts.schedules))
    problems += _compare("jobs", drawn["j"], set(facts.jobs))
    defined_arrows = {(s, j) for s, jobs in facts.sensors.items() for j in jobs} | set(facts.schedules.items())
    problems += _compare("sensor/schedule → job arrows", arrows, defined_arrows)
    table = {
        m.group(1): frozenset(re.findall(r"`([^`]+)`", m.group(2))) if not m.group(2).startswith("op ") else frozenset()
        for m in re.finditer(r"^\| `([^`]+_job[^`]*)` \| ([^|]+) \|", page, flags=re.M)
    }
    problems += _compare("job selections (job, assets)", set(table.items()), set(facts.jobs.items()))

    # The models said to share the graph.
    said = re.search(r"Models with this same graph[^:]*:\s*(.+?)\.\n", page, flags=re.S)
    listed = set(re.findall(r"`(\w+)`", said.group(1))) if said else set()
    problems += _compare("models with the drawn graph", listed, {m for m, same in same_graph.items() if same})

    # Layers: no import arrow from the pure core to the wiring.
    layer_of_box: dict[str, str] = {}
    layer = None
    for line in layers_block.splitlines():
        if m := re.match(r'\s*subgraph \w+\["([^"]+)"\]', line):
            layer = m.group(1)
        elif m := re.match(r'\s*(u_\w+)\["', line):
            layer_of_box[m.group(1)] = layer or ""
    problems += [
        f"an import arrow leaves the pure core: {m.group(1)} --> {m.group(2)}"
        for m in re.finditer(r"^\s*(u_\w+) -->\|\"\d+\"\| (u_\w+)", layers_block, flags=re.M)
        if layer_of_box.get(m.group(1)) == "pure core" and layer_of_box.get(m.group(2)) != "pure core"
    ]
    return problems


@pytest.fixture(scope="module")
def defs(tmp_path_factory: pytest.TempPathFactory) -> dg.Definitions:
    return architecture_graph.load_defs(tmp_path_factory.mktemp("architecture-graph"))


@pytest.fixture(scope="module")
def facts(defs: dg.Definitions) -> Facts:
    return facts_of(defs, MODEL)


@pytest.fixture(scope="module")
def same_graph(defs: dg.Definitions, facts: Facts) -> dict[str, bool]:
    models = sorted({key.path[0] for key in defs.resolve_asset_graph().get_all_asset_keys()})
    drawn = _normalized(facts, MODEL)
    return {m: _normalized(facts_of(defs, m), m) == drawn for m in models}


def test_committed_page_is_what_the_definitions_give(defs: dg.Definitions) -> None:
    graphs = {m: architecture_graph.model_graph(defs, m) for m in architecture_graph.models_of(defs)}
    expected = architecture_graph.render(graphs, architecture_graph.package_layers())
    committed = architecture_graph.PAGE.read_text() if architecture_graph.PAGE.exists() else ""
    if committed != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    "docs/architecture-graph.md (committed)",
                    "generated now",
                )
            )[:60]
        )
        pytest.fail(
            f"docs/architecture-graph.md differs from the definitions; regenerate it with "
            f"`{architecture_graph.COMMAND}`\n{diff}"
        )


def test_page_draws_every_definition_and_only_real_edges(facts: Facts, same_graph: dict[str, bool]) -> None:
    page = architecture_graph.PAGE.read_text()
    assert page_problems(page, facts, same_graph) == []
    # Not vacuous: the drawn model has the shapes this page is about.
    assert {"raw_data", "model_evaluation", "deployment_decision"} <= set(facts.stages)
    assert ("raw_data", "features") in facts.edges
    assert any(blocking for _, _, blocking in facts.checks) and not all(b for _, _, b in facts.checks)
    assert f"{MODEL}__landing_sensor" in facts.sensors and f"{MODEL}__promote_job" in facts.jobs


def test_every_model_has_the_drawn_graph(same_graph: dict[str, bool]) -> None:
    """The page draws one model and says which share its graph: today every model does (architecture.md)."""
    assert len(same_graph) >= 2 and all(same_graph.values()), same_graph


def test_a_hand_edited_page_is_caught(facts: Facts, same_graph: dict[str, bool]) -> None:
    page = architecture_graph.PAGE.read_text()
    edge = "  a_raw_data --> a_features\n"
    wrong_edge = page.replace(edge, edge + "  a_raw_data --> a_ab_test\n")
    assert wrong_edge != page
    assert page_problems(wrong_edge, facts, same_graph) == [
        "dependency edges on the page but not in the definitions: [('raw_data', 'ab_test')]"
    ]
    lost_edge = page.replace(edge, "")
    assert page_problems(lost_edge, facts, same_graph) == [
        "dependency edges in the definitions but not on the page: [('raw_data', 'features')]"
    ]
    unblocked = page.replace("schema_valid (blocking)", "schema_valid (warning)")
    assert any("checks" in p and "schema_valid" in p for p in page_problems(unblocked, facts, same_graph))
    no_sensor = re.sub(r"^\s*s_\w+__landing_sensor\(.*\n", "", page, flags=re.M)
    assert any(f"{MODEL}__landing_sensor" in p for p in page_problems(no_sensor, facts, same_graph))
    core_to_wiring = page.replace("```mermaid\nflowchart TB\n", '```mermaid\nflowchart TB\n  u_ml -->|"1"| u_assets\n')
    assert any("leaves the pure core" in p for p in page_problems(core_to_wiring, facts, same_graph))


def test_the_page_is_linked_from_architecture_md() -> None:
    text = (Path(architecture_graph.ROOT) / "docs" / "architecture.md").read_text()
    assert "(architecture-graph.md)" in text
