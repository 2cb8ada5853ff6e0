"""Benchmark of what loading the code location costs, and of one run under each step executor.

Part 1 — import and load, in one run, as interleaved repetitions, each a fresh process:

(a) the floor: bare imports of the third-party modules the package itself imports at module level — found by
    reading the module-level ``import`` statements of every ``mlops_assets`` module that
    ``import mlops_assets.definitions`` loads — plus ``dagster.components`` (the component tree that builds the
    packaged models' definitions when the code location loads);
(b) ``import mlops_assets.definitions``;
(c) the local code location's load: (b), then ``code_location_defs()`` (``MLOPS_ENV`` unset, ``DAGSTER_HOME`` and
    ``MLOPS_DATA_DIR`` in a temp dir) resolved into a repository (both packaged models), as a code server does;
(d) ``dg check defs`` in the project;
(e) ``dg --version``: the dg CLI's own start-up, the part of (d) that is not the code location;
(f) what a code server does when it loads the location: (c), then the repository snapshot it serves to the
    webserver and the daemon (Dagster's ``RepositorySnap.from_def``; with a component tree attached to the
    definitions, this is where Dagster imports every installed component library, dagster-aws's among them).

(b)-(d) run for the package as it is ("after") and, with ``--before DIR``, for a copy of the package imported
with ``PYTHONPATH=DIR`` ("before"), interleaved in the same run.

Part 2 — one data version of the packaged ``synthetic`` model through its ingest job (land → validate → features →
drift → scoring by the production model → labels → performance → A/B → rollout step → pointers), starting each
time from a copy of the same world in which the first version went to Production, with (1) the in-process
executor, (2) the multiprocess executor with ``spawn`` (Dagster's default) and (3) the multiprocess executor as
prod configures it (:func:`mlops_assets.environments.multiprocess_executor_config`: ``forkserver`` preloading the
code location). Interleaved, each run in a fresh process; the record of every run (materialized asset keys and
every check's outcome) must be the same.

Writes ``docs/benchmarks/imports.md``. Only ratios measured side by side mean anything on a shared machine: the
doc records the load average at start and end.

Usage::

    python benchmarks/import_benchmark.py --repeats 7 --job-repeats 3 --before /tmp/before_pkg
"""

# Only the standard library at module level: a step process of part 2 loads this file to rebuild its job.
import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_common import cpu_model

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks" / "imports.md"
BIN = Path(sys.executable).parent
#: Rows per synthetic data version (as the end-to-end tests' worlds: every gate can measure).
ROWS = 2500
SEED = 1
MODEL = "synthetic"
EXECUTORS = ("in_process", "multiprocess_spawn", "multiprocess_forkserver_preload")
#: Where the stderr of a failed run of part 2 is kept.
FAILURES = Path(tempfile.gettempdir()) / "import-bench-failures"
#: Set in the process that runs a job of part 2, and inherited by its step processes.
EXECUTOR_VAR = "MLOPS_BENCH_EXECUTOR"
JOB_VAR = "MLOPS_BENCH_JOB"

# A child process that prints, as JSON, the module-level third-party import statements of every mlops_assets
# module loaded by `import mlops_assets.definitions` (the package's own dependencies at import).
FIND_IMPORTS = r"""
import ast, json, sys
import mlops_assets.definitions
found = set()
for name, module in sorted(sys.modules.items()):
    path = getattr(module, "__file__", None)
    if not (name == "mlops_assets" or name.startswith("mlops_assets.")) or not path:
        continue
    tree = ast.parse(open(path).read())
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        top = {n.split(".")[0] for n in names}
        if top & {"mlops_assets", "__future__"} or top <= set(sys.stdlib_module_names):
            continue
        node.names = [ast.alias(a.name) for a in node.names]  # no "as": the statement alone
        found.add(ast.unparse(node))
print(json.dumps(sorted(found)))
"""


@dataclass(frozen=True)
class Timing:
    """Seconds of the repetitions of one task, in repetition order."""

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def text(self) -> str:
        if not self.times:
            return "no successful run"
        return f"{self.median:.2f} s ({min(self.times):.2f}–{max(self.times):.2f}, n={len(self.times)})"


def clean_env(data: Path, pythonpath: str | None = None) -> dict[str, str]:
    """This process's environment without ``MLOPS_*``/``PYTHONPATH``, with ``DAGSTER_HOME``/``MLOPS_DATA_DIR`` at
    ``data`` (and ``PYTHONPATH`` when given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_") and k != "PYTHONPATH"}
    env.update(DAGSTER_HOME=str(data / "home"), MLOPS_DATA_DIR=str(data / "mlops"))
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def timed(cmd: Sequence[str], env: dict[str, str], cwd: Path) -> float:
    """Wall seconds of ``cmd`` run in ``cwd`` to completion (output discarded); a failure raises with its stderr."""
    start = time.perf_counter()
    done = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def interleaved(tasks: dict[str, Callable[[], float]], repeats: int) -> dict[str, Timing]:
    """Each task once per repetition, in an order rotated by one each repetition; one warm-up round first."""
    names = list(tasks)
    for name in names:  # warm-up: bytecode caches, the page cache
        tasks[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeats):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            times[name].append(tasks[name]())
        print(f"  repetition {rep + 1}/{repeats}: " + ", ".join(f"{n} {times[n][-1]:.2f}" for n in names), flush=True)
    return {name: Timing(tuple(t)) for name, t in times.items()}


def paired_ratio(num: Timing, den: Timing) -> Timing:
    """Per-repetition ratios ``num_i / den_i`` (the two were measured in the same repetition)."""
    return Timing(tuple(n / d for n, d in zip(num.times, den.times, strict=True)))


def ratio_text(r: Timing) -> str:
    if not r.times:
        return "—"
    return f"{r.median:.2f}× ({min(r.times):.2f}–{max(r.times):.2f}, n={len(r.times)})"


# --- Part 1 --------------------------------------------------------------------------------------------------------


def floor_statements(data: Path) -> list[str]:
    """The module-level third-party import statements of the package's modules loaded by its definitions."""
    out = subprocess.run(
        [sys.executable, "-c", FIND_IMPORTS], env=clean_env(data), cwd=data, capture_output=True, text=True, check=True
    )
    return [*json.loads(out.stdout), "import dagster.components"]


LOAD = "import mlops_assets.definitions as d\nd.code_location_defs().get_repository_def()"
#: (f): LOAD, then the snapshot a code server serves (Dagster's internal API: what `dagster api grpc` builds).
LOAD_AND_SNAPSHOT = (
    "from dagster._core.remote_representation.external_data import RepositorySnap\n"
    "import mlops_assets.definitions as d\n"
    "RepositorySnap.from_def(d.code_location_defs().get_repository_def())"
)


def import_tasks(data: Path, floor: list[str], before: Path | None) -> dict[str, Callable[[], float]]:
    py, dg_cli = sys.executable, str(BIN / "dg")
    variants = [("after", None)] + ([("before", str(before))] if before else [])
    tasks: dict[str, Callable[[], float]] = {
        "a": lambda: timed([py, "-c", "\n".join(floor)], clean_env(data), data),
        "e": lambda: timed([dg_cli, "--version"], clean_env(data), REPO),
    }
    for label, path in variants:
        env = clean_env(data, path)
        # python -c runs in the temp dir: from the project folder, its mlops_assets would precede PYTHONPATH.
        tasks[f"b_{label}"] = lambda env=env: timed([py, "-c", "import mlops_assets.definitions"], env, data)
        tasks[f"c_{label}"] = lambda env=env: timed([py, "-c", LOAD], env, data)
        tasks[f"d_{label}"] = lambda env=env: timed([dg_cli, "check", "defs"], env, REPO)
        tasks[f"f_{label}"] = lambda env=env: timed([py, "-c", LOAD_AND_SNAPSHOT], env, data)
    return tasks


def check_before_copy_is_used(data: Path, before: Path) -> None:
    """The before variants really import the copy (``PYTHONPATH`` precedes the installed package)."""
    code = "import mlops_assets; print(mlops_assets.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=clean_env(data, str(before)),
        cwd=data,
        capture_output=True,
        text=True,
        check=True,
    )
    if not out.stdout.strip().startswith(str(before)):
        raise RuntimeError(f"PYTHONPATH={before} does not take precedence: {out.stdout.strip()}")


# --- Part 2 --------------------------------------------------------------------------------------------------------


def bench_job() -> Any:
    """The job named by ``$MLOPS_BENCH_JOB`` in the local code location's definitions, with the executor named by
    ``$MLOPS_BENCH_EXECUTOR`` (a module-level function: step processes rebuild the job from it)."""
    import dataclasses

    import dagster as dg

    from mlops_assets.definitions import build_defs
    from mlops_assets.environments import default_data_dir, local_environment, multiprocess_executor_config

    executors = {
        "in_process": dg.in_process_executor,
        "multiprocess_spawn": dg.multiprocess_executor.configured({"start_method": {"spawn": {}}}),
        # What prod runs with MLOPS_EXECUTOR=multiprocess.
        "multiprocess_forkserver_preload": dg.multiprocess_executor.configured(multiprocess_executor_config(None)),
    }
    env = dataclasses.replace(local_environment(default_data_dir()), executor=executors[os.environ[EXECUTOR_VAR]])
    return build_defs(env).resolve_job_def(f"{MODEL}__{os.environ[JOB_VAR]}")


def run_job_here(partition: str) -> None:
    """Run ``bench_job()`` for ``partition`` in this process's ``DAGSTER_HOME``; print seconds and the record."""
    import dagster as dg

    instance = dg.DagsterInstance.get()
    start = time.perf_counter()
    with dg.execute_job(dg.reconstructable(bench_job), instance, tags={"dagster/partition": partition}) as result:
        seconds = time.perf_counter() - start
        materialized = sorted({e.asset_key.to_user_string() for e in result.get_asset_materialization_events()})
        checks = sorted(
            f"{c.asset_key.to_user_string()}:{c.check_name}={'passed' if c.passed else 'failed'}"
            for c in result.get_asset_check_evaluations()
        )
        print(json.dumps({"seconds": seconds, "success": result.success, "assets": materialized, "checks": checks}))


class JobFailed(RuntimeError):
    """A benchmarked run failed (its stderr is kept under :data:`FAILURES`)."""


def job_run(world: Path, job: str, executor: str, partition: str) -> dict[str, Any]:
    """Run ``job`` for ``partition`` in a fresh process on ``world``; its record and the job's wall seconds."""
    env = clean_env(world)
    env.update({EXECUTOR_VAR: executor, JOB_VAR: job})
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--run-job", partition], env=env, cwd=REPO, capture_output=True, text=True
    )
    process_seconds = time.perf_counter() - start
    if done.returncode != 0:
        FAILURES.mkdir(exist_ok=True)
        saved = FAILURES / f"{job}_{executor}_{world.name}_{os.getpid()}.txt"
        saved.write_text(done.stderr)
        raise JobFailed(f"{job} with {executor} failed (stderr kept in {saved}): {done.stderr.strip()[-300:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    if not record["success"]:
        raise JobFailed(f"{job} with {executor} did not succeed: {record}")
    record["process_seconds"] = process_seconds
    return record


def build_world(root: Path) -> tuple[str, str, float]:
    """A world in ``root`` (``home/`` instance, ``mlops/`` data) where version 1 went through the lifecycle job
    into Production, and version 2 is landed and registered as a partition; (v1 key, v2 key, lifecycle seconds)."""
    from mlops_assets.demo_data.synthetic import write_versions
    from mlops_assets.instance import ensure_instance
    from mlops_assets.ml.versions import file_digest, version_key

    ensure_instance(root / "home")
    paths = write_versions(root / "mlops" / "landing" / MODEL, 2, ROWS, SEED)
    keys = [version_key(p.name, file_digest(p)) for p in paths]
    env = clean_env(root)
    code = (
        "import sys, dagster as dg\n"
        f"dg.DagsterInstance.get().add_dynamic_partitions('{MODEL}__data_versions', sys.argv[1:])\n"
    )
    subprocess.run([sys.executable, "-c", code, *keys], env=env, cwd=REPO, check=True)
    lifecycle = job_run(root, "lifecycle_job", "in_process", keys[0])
    if f"{MODEL}/production_deployment" not in lifecycle["assets"] or any("=failed" in c for c in lifecycle["checks"]):
        raise RuntimeError(f"version 1 did not reach Production: {lifecycle}")
    return keys[0], keys[1], lifecycle["seconds"]


def executor_runs(tmp: Path, repeats: int) -> dict[str, Any]:
    """Part 2: the ingest job of version 2 on a fresh copy of the world, per executor, interleaved."""
    template = tmp / "world"
    _, v2, lifecycle_seconds = build_world(template)
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in EXECUTORS}
    failed: dict[str, list[str]] = {e: [] for e in EXECUTORS}
    for rep in range(repeats):
        for executor in EXECUTORS[rep % 3 :] + EXECUTORS[: rep % 3]:
            world = tmp / f"run_{executor}_{rep}"
            shutil.copytree(template, world)
            try:
                runs[executor].append({**job_run(world, "ingest_job", executor, v2), "rep": rep})
                print(f"  job repetition {rep + 1}/{repeats}: {executor} {runs[executor][-1]['seconds']:.1f} s")
            except JobFailed as exc:  # reported in the doc, not retried
                failed[executor].append(str(exc))
                print(f"  job repetition {rep + 1}/{repeats}: {executor} FAILED: {exc}", flush=True)
            shutil.rmtree(world, ignore_errors=True)
    records = {(tuple(r["assets"]), tuple(r["checks"])) for rs in runs.values() for r in rs}
    first = next(r for rs in runs.values() for r in rs)
    return {
        "lifecycle_seconds": lifecycle_seconds,
        "job": {e: Timing(tuple(r["seconds"] for r in rs)) for e, rs in runs.items()},
        # Per repetition: executor / in-process, where both succeeded.
        "vs_in_process": {
            e: Timing(
                tuple(
                    r["seconds"] / base["seconds"] for r in rs for base in runs["in_process"] if base["rep"] == r["rep"]
                )
            )
            for e, rs in runs.items()
        },
        "process": {e: Timing(tuple(r["process_seconds"] for r in rs)) for e, rs in runs.items()},
        "identical": len(records) == 1,
        "assets": first["assets"],
        "checks": first["checks"],
        "records": len(records),
        "failed": failed,
    }


# --- Report --------------------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    from importlib import metadata

    names = (
        "dagster",
        "dagster-dg-cli",
        "dagster-aws",
        "scikit-learn",
        "scipy",
        "pandas",
        "pandera",
        "pyarrow",
        "SQLAlchemy",
        "skops",
    )
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _ratio_row(name: str, parts: list[Timing]) -> str:
    return f"| {name} | " + " | ".join(ratio_text(p) for p in parts) + " |"


def write_markdown(path: Path, r: dict[str, Any]) -> None:
    """Write the results ``r`` of :func:`main` as markdown to ``path``."""
    t: dict[str, Timing] = r["timings"]
    labels = ["after", "before"] if "b_before" in t else ["after"]
    ls, le = r["load_start"], r["load_end"]
    lines = [
        "# Import and load cost of the code location",
        "",
        f"Written by `{r['command']}` ({r['date']} UTC). Each figure: median of {r['repeats']} interleaved "
        "repetitions, each a fresh process (min–max and n in brackets; one warm-up round not counted). A ratio is "
        "the median of the per-repetition ratios of two tasks measured in the same repetition.",
        "",
        f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), shared with other work; load average (1/5/15 min) "
        f"{ls[0]:.2f} / {ls[1]:.2f} / {ls[2]:.2f} at start, {le[0]:.2f} / {le[1]:.2f} / {le[2]:.2f} at end. "
        "Only the ratios compare.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()) + ".",
        "",
        "## What was measured",
        "",
        "- (a) floor: bare imports of the dependencies the local code location needs — every module-level "
        "third-party import statement of the `mlops_assets` modules that `import mlops_assets.definitions` loads "
        "(read from their source with `ast`, in the working tree), plus `import dagster.components` (the component "
        "tree that builds the packaged models when the code location loads):",
        "",
        "```text",
        *r["floor"],
        "```",
        "",
        '- (b) `python -c "import mlops_assets.definitions"`;',
        "- (c) the local code location's load: (b), then `code_location_defs().get_repository_def()` with `MLOPS_ENV` "
        "unset and `DAGSTER_HOME`/`MLOPS_DATA_DIR` in a temp dir (both packaged models, `flights` and `synthetic`);",
        "- (d) `dg check defs` in the project (dg starts `dagster definitions validate` in a subprocess, which loads "
        "the code location);",
        "- (e) `dg --version`: dg's own start-up;",
        "- (f) what a code server does when it loads the location: (c), then the repository snapshot it serves to "
        "the webserver and the daemon (Dagster's `RepositorySnap.from_def`; with a component tree attached to the "
        "definitions, this is where Dagster imports every installed component library, dagster-aws's among them).",
        "",
    ]
    if r["before"]:
        note = f": {r['before_note']}" if r["before_note"] else ""
        lines += [
            f'"before" is a copy of the package (`{r["before"]}`{note}), '
            'imported with `PYTHONPATH` (checked to take precedence, for `python -c` and for `dg`); "after" is the '
            "working tree. Both in the same run.",
            "",
        ]
    lines += ["## Times", "", "| task | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    shared = " | ".join(["{}"] + ["(same run)"] * (len(labels) - 1))
    lines.append("| (a) floor: bare dependency imports | " + shared.format(t["a"].text()) + " |")
    for key, name in (
        ("b", "(b) `import mlops_assets.definitions`"),
        ("c", "(c) local code-location load"),
        ("d", "(d) `dg check defs`"),
        ("f", "(f) code-server load: (c) + repository snapshot"),
    ):
        lines.append(f"| {name} | " + " | ".join(t[f"{key}_{label}"].text() for label in labels) + " |")
    lines.append("| (e) `dg --version` | " + shared.format(t["e"].text()) + " |")
    floor_de = Timing(tuple(a + e for a, e in zip(t["a"].times, t["e"].times, strict=True)))
    lines += ["", "## Ratios", "", "| ratio | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    lines.append(_ratio_row("b / a (target ≤ 1.3)", [paired_ratio(t[f"b_{x}"], t["a"]) for x in labels]))
    lines.append(_ratio_row("c / a", [paired_ratio(t[f"c_{x}"], t["a"]) for x in labels]))
    lines.append(_ratio_row("f / a (target ≤ 1.3)", [paired_ratio(t[f"f_{x}"], t["a"]) for x in labels]))
    lines.append(
        _ratio_row(
            "d / (a + e): `dg check defs` against its floor", [paired_ratio(t[f"d_{x}"], floor_de) for x in labels]
        )
    )
    lines.append(
        _ratio_row(
            "d / (c + e)",
            [
                paired_ratio(
                    t[f"d_{x}"], Timing(tuple(c + e for c, e in zip(t[f"c_{x}"].times, t["e"].times, strict=True)))
                )
                for x in labels
            ],
        )
    )
    lines.append("")
    for x in labels:
        rest = t[f"d_{x}"].median - t["e"].median - t[f"c_{x}"].median
        lines.append(
            f"- {x}: d − e − c = {rest:.2f} s (medians): what `dg check defs` adds to dg's start-up and the code "
            "location's load (the `dagster` CLI's start-up in its subprocess and the validation)."
        )
    if "jobs" in r:
        lines += _jobs_markdown(r)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _jobs_markdown(r: dict[str, Any]) -> list[str]:
    j = r["jobs"]
    preload = ", ".join(f"`{m}`" for m in r["preload"])
    lines = [
        "",
        "## One data version through the ingest job, per executor",
        "",
        f"World: the packaged `{MODEL}` model; version 1 ({ROWS} rows, seed {SEED}) went through "
        f"`{MODEL}__lifecycle_job` in-process into Production (that run took {j['lifecycle_seconds']:.1f} s — "
        "training with the tuned search — so the lifecycle job is not repeated per executor). Then, on a fresh copy "
        f"of that world per run, `{MODEL}__ingest_job` for version 2 ({ROWS} rows): raw data and its gates, "
        "features, drift, scoring by the production model, labels, performance, A/B test, rollout step and the "
        "pointers. Each run in a fresh process (`dg.execute_job` of a reconstructable job on a persistent instance); "
        '"job" is `execute_job`\'s wall time, "process" adds the process\'s start and imports. Executors: '
        "in-process; multiprocess with `spawn` (Dagster's default start method: each step a fresh interpreter); "
        "multiprocess as prod configures it (`environments.multiprocess_executor_config`: `forkserver` preloading "
        f"{preload}). `max_concurrent` is Dagster's default (the CPU count).",
        "",
        "| executor | job | process | job / in-process |",
        "|---|---|---|---|",
    ]
    for e in EXECUTORS:
        ratio = ratio_text(j["vs_in_process"][e])
        lines.append(f"| {e} | {j['job'][e].text()} | {j['process'][e].text()} | {ratio} |")
    failures = [f"- {msg}" for msgs in j["failed"].values() for msg in msgs]
    if failures:
        lines += ["", "Failed runs (not retried, not in the figures above):", "", *failures]
    succeeded = sum(len(t.times) for t in j["job"].values())
    lines += [
        "",
        f"Record: {'identical' if j['identical'] else 'DIFFERENT'} across all {succeeded} successful runs "
        f"({j['records']} distinct record(s); compared: the set of materialized asset keys and every check's "
        f"outcome). {len(j['assets'])} assets materialized, {len(j['checks'])} check results:",
        "",
        "```",
        *j["assets"],
        *j["checks"],
        "```",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--job-repeats", type=int, default=3, help="0: skip part 2")
    parser.add_argument("--before", type=Path, help="folder holding a copy of mlops_assets from before a change")
    parser.add_argument("--before-note", default="", help="what the before copy is, for the doc")
    parser.add_argument("--out", type=Path, default=DOC)
    parser.add_argument("--run-job", metavar="PARTITION", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_job:
        run_job_here(args.run_job)
        return 0
    sys.path.insert(0, str(REPO))
    from mlops_assets.environments import STEP_PRELOAD_MODULES

    results: dict[str, Any] = {
        "command": shlex.join(
            ["python", "benchmarks/import_benchmark.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "repeats": args.repeats,
        "job_repeats": args.job_repeats,
        "before": str(args.before) if args.before else None,
        "before_note": args.before_note,
        "versions": versions(),
        "preload": list(STEP_PRELOAD_MODULES),
        "load_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "home").mkdir()
        if args.before:
            check_before_copy_is_used(tmp, args.before)
        results["floor"] = floor_statements(tmp)
        print("part 1: imports", flush=True)
        results["timings"] = interleaved(import_tasks(tmp, results["floor"], args.before), args.repeats)
        if args.job_repeats:
            print("part 2: ingest job per executor", flush=True)
            results["jobs"] = executor_runs(tmp, args.job_repeats)
    results["load_end"] = os.getloadavg()
    write_markdown(args.out, results)
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
