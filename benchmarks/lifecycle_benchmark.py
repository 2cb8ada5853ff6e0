"""How long a data version takes from landing to decision, and how much of it is the orchestrator's.

Runs data versions the way a user or CI does — ``dg launch --job <model>__lifecycle_job --partition <key>`` from the
project root, one fresh process per run, on a fresh Dagster instance configured like ``dagster.yaml`` — and reads
each run's profile from its event log (``mlops_assets.profiling.read_run_profile``: the step bodies measure their own
wall and CPU time inside the run). For each run it reports:

* the whole process's wall time (``dg`` start, imports, code-location load, the run, exit);
* the compute: the sum of the step bodies — the same calls to the pure core, the registry and the artifact store
  that a script would make without Dagster;
* the orchestrator's share ``1 − compute / process wall`` and its parts (before the run: process start, imports,
  code-location load; inside steps: input/output IO, framework; between steps);
* the same share net of what a script calling the pure core would also pay before its first call: the wall time of
  a fresh process that imports the whole pure core (every module of ``mlops_assets.ml`` and ``mlops_assets.storage``,
  which never import dagster) and exits, measured right after each run (interleaved);
* the run process's peak RSS (GNU ``time``'s ``%M``) against the in-memory size of the data
  version's frame as the product reads it.

Scenarios:

* ``flights``: the packaged flights model, months 1 and 2 of 2013 (26–27k rows each): month 1 trains the first
  model and promotes it; month 2 is the representative version (a model in production: scoring, drift, monitoring,
  training a challenger, evaluating it against production, rollout decision). Repeated ``--repeats`` times, each
  on a fresh instance.
* ``synthetic_1m``: the packaged synthetic model on one 1,000,000-row version (``--big-rows``), landing to decision.

Writes ``docs/benchmarks/lifecycle.md``. Usage (from the project root, with the dev extra installed):

    python benchmarks/lifecycle_benchmark.py --repeats 5

``--big-only`` runs only the big synthetic version and prints its section without writing the page.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench_common import load_average, write_page

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks" / "lifecycle.md"
RUN_SCRIPT = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import dagster as dg
from mlops_assets.profiling import read_run_profile
instance = dg.DagsterInstance.get()
run = instance.get_runs(limit=1)[0]
profile = read_run_profile(instance, run.run_id)
failed = sorted(s.step_key for s in profile.steps if s.status == "STEP_FAILURE")
print(json.dumps({"run_id": run.run_id, "status": run.status.value, "summary": profile.summary(),
                  "steps": profile.step_rows(), "failed": failed}))
"""


@dataclass
class RunResult:
    """One ``dg launch`` of one data version."""

    scenario: str
    version: str
    process_wall: float
    peak_rss_bytes: int
    frame_bytes: int
    status: str
    summary: dict
    steps: list
    failed: list
    core_import: float = float("nan")


def _env(home: Path, data: Path) -> dict[str, str]:
    env = {**os.environ, "DAGSTER_HOME": str(home), "MLOPS_DATA_DIR": str(data)}
    env.pop("MLOPS_THREADS_PER_STEP", None)
    return env


def _new_instance(base: Path) -> tuple[Path, Path]:
    from mlops_assets.instance import ensure_instance

    home, data = base / "home", base / "data"
    home.mkdir(parents=True)
    data.mkdir(parents=True)
    ensure_instance(home)
    return home, data


def _land(model: str, source: Path, home: Path, data: Path) -> str:
    """Copy ``source`` into the model's landing zone and register its data version (as the landing sensor would)."""
    import shutil

    import dagster as dg

    from mlops_assets.ml.versions import file_digest, version_key

    landing = data / "landing" / model
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / source.name
    shutil.copyfile(source, target)
    key = version_key(target.name, file_digest(target))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(f"{model}__data_versions", [key])
    return key


def _frame_bytes(path: Path, model: str) -> int:
    """In-memory size of the version's frame as the product reads it (``read_data_file`` with the model's spec)."""
    from mlops_assets.ml.spec import load_spec
    from mlops_assets.ml.validation import read_data_file

    frame = read_data_file(path, load_spec(model))
    return int(frame.memory_usage(deep=True).sum())


def _launch(model: str, key: str, home: Path, data: Path) -> tuple[float, int, dict]:
    """``dg launch`` of the model's lifecycle job for ``key``: process wall (s), peak RSS (bytes), profile."""
    env = _env(home, data)
    start = time.perf_counter()
    # GNU time's %M: the peak RSS (KiB) of dg launch, which executes the run in its own process.
    done = subprocess.run(
        [
            "/usr/bin/time",
            "-f",
            "MAXRSS_KIB=%M",
            "dg",
            "launch",
            "--job",
            f"{model}__lifecycle_job",
            "--partition",
            key,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    marks = [line for line in done.stderr.splitlines() if line.startswith("MAXRSS_KIB=")]
    peak = int(marks[-1].split("=")[1]) if marks else 0
    read = subprocess.run([sys.executable, "-c", RUN_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True)
    if read.returncode != 0:
        raise RuntimeError(
            f"reading the profile failed:\n{read.stderr[-3000:]}\n(dg launch stderr: {done.stderr[-3000:]})"
        )
    return wall, peak * 1024, json.loads(read.stdout.strip().splitlines()[-1])


def run_flights(workdir: Path, months: Sequence[Path]) -> list[RunResult]:
    base = Path(tempfile.mkdtemp(prefix="flights-", dir=workdir))
    home, data = _new_instance(base)
    results = []
    for path in months:
        key = _land("flights", path, home, data)
        wall, peak, profile = _launch("flights", key, home, data)
        floor = core_import_seconds(home, data)
        results.append(
            RunResult(
                "flights",
                key,
                wall,
                peak,
                _frame_bytes(path, "flights"),
                profile["status"],
                profile["summary"],
                profile["steps"],
                profile["failed"],
                floor,
            )
        )
    return results


def run_big(workdir: Path, rows: int) -> RunResult:
    from mlops_assets.demo_data import synthetic
    from mlops_assets.storage.files import write_frame_atomic

    base = Path(tempfile.mkdtemp(prefix="synthetic-big-", dir=workdir))
    source = write_frame_atomic(synthetic.generate(rows, seed=11), base / f"synthetic_{rows}.parquet", fmt="parquet")
    home, data = _new_instance(base / "instance")
    key = _land("synthetic", source, home, data)
    wall, peak, profile = _launch("synthetic", key, home, data)
    floor = core_import_seconds(home, data)
    return RunResult(
        "synthetic_1m",
        key,
        wall,
        peak,
        _frame_bytes(source, "synthetic"),
        profile["status"],
        profile["summary"],
        profile["steps"],
        profile["failed"],
        floor,
    )


CORE_IMPORT_SCRIPT = r"""
import importlib, pkgutil, sys, warnings
warnings.simplefilter("ignore")
import mlops_assets.ml, mlops_assets.storage
for package in (mlops_assets.ml, mlops_assets.storage):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
assert "dagster" not in sys.modules, "the pure core imported dagster"
"""


def core_import_seconds(home: Path, data: Path) -> float:
    """Wall time of a fresh process that imports the whole pure core and exits: what a script doing the same work
    without Dagster pays before its first call (interpreter start, pandas, scikit-learn, pyarrow, ... and our core)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", CORE_IMPORT_SCRIPT], cwd=ROOT, env=_env(home, data), check=True)
    return time.perf_counter() - start


BASELINE_SCRIPT = r"""
import warnings
warnings.simplefilter("ignore")
from mlops_assets.definitions import code_location_defs
code_location_defs().get_repository_def().get_all_jobs()
"""


def baseline_rss_bytes(home: Path, data: Path) -> int:
    """Peak RSS of a process that only loaded the code location (imports + definitions): the floor of any run.

    Measured through GNU ``time`` as the runs are: a child's own ``ru_maxrss`` also counts what its parent held when
    it forked (Linux keeps the forked copy's high-water mark across ``exec``), so a child of this benchmark, after
    it generated the 1M-row frame, reported ~550 MiB for a ~300 MiB process; ``time``'s child starts clean.
    """
    done = subprocess.run(
        ["/usr/bin/time", "-f", "MAXRSS_KIB=%M", sys.executable, "-c", BASELINE_SCRIPT],
        cwd=ROOT,
        env=_env(home, data),
        capture_output=True,
        text=True,
    )
    marks = [line for line in done.stderr.splitlines() if line.startswith("MAXRSS_KIB=")]
    return int(marks[-1].split("=")[1]) * 1024


def _stats(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def _over_compute(result: RunResult) -> float:
    return result.process_wall / result.summary["compute_seconds"]


def _share(result: RunResult) -> float:
    return 1.0 - result.summary["compute_seconds"] / result.process_wall


def _over_core(result: RunResult) -> float:
    return result.process_wall / (result.summary["compute_seconds"] + result.core_import)


def _net_share(result: RunResult) -> float:
    """The orchestrator's share net of the core's imports: ``1 − (compute + core import) / process wall``."""
    return 1.0 - (result.summary["compute_seconds"] + result.core_import) / result.process_wall


def write_doc(flights: list[list[RunResult]], big: RunResult | None, load_start: str, load_end: str, args) -> str:
    import dagster
    import pandas
    import sklearn

    lines = [
        "# Lifecycle performance: a data version from landing to decision",
        "",
        "Generated by `benchmarks/lifecycle_benchmark.py`; do not edit by hand. Command:",
        "",
        f"    python benchmarks/lifecycle_benchmark.py --repeats {args.repeats}"
        + (f" --big-rows {args.big_rows}" if big else " --big-rows 0"),
        "",
        "## Machine",
        "",
        f"- {platform.platform()}, {os.cpu_count()} cores; Python {platform.python_version()}, dagster "
        f"{dagster.__version__}, pandas {pandas.__version__}, scikit-learn {sklearn.__version__}",
        f"- Load average (1/5/15 min) at start: {load_start}; at end: {load_end}",
        "- Every run is `dg launch --job <model>__lifecycle_job --partition <key>` in a fresh process on a fresh "
        "instance configured like `dagster.yaml` (in-process executor, run queue of 2: each step's native thread "
        "budget is 2 cores // 2 = 1 thread).",
        "",
        "## One flights month (month 2 of 2013, a model in production)",
        "",
        "Each repetition: a fresh instance, month 1 (trains and promotes v1), then month 2 — the run measured. "
        f"{len(flights)} repetitions; median (min–max) in seconds.",
        "",
    ]
    month2 = [reps[1] for reps in flights]
    month1 = [reps[0] for reps in flights]

    def row(name: str, pick) -> str:
        return f"| {name} | {_stats([pick(r) for r in month2])} | {_stats([pick(r) for r in month1])} |"

    lines += [
        "| what | month 2 (production exists) | month 1 (first model) |",
        "|---|---|---|",
        row("process wall (`dg launch`, start to exit)", lambda r: r.process_wall),
        row("run wall (run start to end)", lambda r: r.summary["wall_seconds"]),
        row("compute: step bodies (our work)", lambda r: r.summary["compute_seconds"]),
        row("CPU time of the step bodies", lambda r: r.summary["compute_cpu_seconds"]),
        row(
            "before the run: `dg` start, imports, code-location load",
            lambda r: r.process_wall - r.summary["wall_seconds"],
        ),
        row("input/output IO (Parquet/JSON between steps)", lambda r: r.summary["io_seconds"]),
        row("framework inside steps (resources, type checks, events)", lambda r: r.summary["step_framework_seconds"]),
        row("between steps (planning, scheduling, run end)", lambda r: r.summary["between_steps_seconds"]),
        row("a fresh process importing the pure core (a script without Dagster pays it)", lambda r: r.core_import),
        "",
        f"- **process wall / compute = {statistics.median(_over_compute(r) for r in month2):.2f}×** "
        f"(month 2, median of {len(month2)}; target ≤ 2×)",
        f"- **orchestrator's share of the process wall = {statistics.median(_share(r) for r in month2):.1%}** "
        f"(month 2; range {min(_share(r) for r in month2):.1%}–{max(_share(r) for r in month2):.1%}; target ≤ 50 %)",
        f"- net of the core's imports (a script without Dagster pays them too): process wall / (compute + core "
        f"import) = {statistics.median(_over_core(r) for r in month2):.2f}×, "
        f"orchestrator's share {statistics.median(_net_share(r) for r in month2):.1%} "
        f"({min(_net_share(r) for r in month2):.1%}–{max(_net_share(r) for r in month2):.1%})",
        f"- inside the run only (run wall / compute): "
        f"{statistics.median(r.summary['wall_seconds'] / r.summary['compute_seconds'] for r in month2):.2f}×",
        f"- steps per run: {month2[0].summary['steps']}; month 1 ended {sorted({r.status for r in month1})}, month 2 "
        f"{sorted({r.status for r in month2})}; failed steps of month 2 (a blocking gate rejecting the challenger is "
        f"the decision, not an error): {sorted({f for r in month2 for f in r.failed}) or 'none'}",
        "",
        "Slowest steps of the median month-2 run (seconds):",
        "",
    ]
    median_run = sorted(month2, key=lambda r: r.process_wall)[len(month2) // 2]
    lines += [
        "| step | wall | compute | cpu | threads | input IO | output IO | framework |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for step in median_run.steps[:12]:
        lines.append(
            f"| {step['step']} | {step['wall_s']:.3f} | {step['compute_s']:.3f} | {step['cpu_s']:.3f} | "
            f"{step['threads']} | {step['input_io_s']:.3f} | {step['output_io_s']:.3f} | {step['framework_s']:.3f} |"
        )
    if big is not None:
        lines += big_section(big, args)
    lines += [
        "",
        "Compute is measured inside each step (`mlops_assets.profiling.measured_step`); the rest of a step's wall "
        "time is split by the timestamps of its events (`mlops_assets/ml/profile.py`). Every run also records this "
        "profile as `<model>/run_profile` for its data version (Dagster UI: the asset's partitions).",
        "",
    ]
    return "\n".join(lines)


def big_section(big: RunResult, args) -> list[str]:
    """The page's section on the big synthetic version (``args.big_rows`` rows, ``args.baseline_rss`` bytes)."""
    rss_ratio = big.peak_rss_bytes / big.frame_bytes if big.peak_rss_bytes else float("nan")
    above = (big.peak_rss_bytes - args.baseline_rss) / big.frame_bytes
    lines = [
        "",
        f"## One {args.big_rows:,}-row synthetic version, landing to decision (1 repetition)",
        "",
        "| what | value |",
        "|---|---|",
        f"| process wall | {big.process_wall:.1f} s |",
        f"| compute (step bodies) | {big.summary['compute_seconds']:.1f} s |",
        f"| orchestrator's share of the process wall | {_share(big):.1%} (target < 10 %) |",
        f"| of which IO between steps | {big.summary['io_seconds']:.1f} s |",
        f"| of which before the run (`dg` start, imports, code-location load) | "
        f"{big.process_wall - big.summary['wall_seconds']:.1f} s |",
        f"| a fresh process importing the pure core (what a script without Dagster pays first) | "
        f"{big.core_import:.1f} s |",
        f"| orchestrator's share net of the core's imports | {_net_share(big):.1%} |",
        f"| frame in memory (`read_data_file`, deep) | {big.frame_bytes / 2**20:.0f} MiB |",
        f"| peak RSS of the run process | {big.peak_rss_bytes / 2**20:.0f} MiB |",
        f"| **peak RSS / frame** | **{rss_ratio:.2f}×** (target ≤ 4×) |",
        f"| process that only loaded the code location (imports, definitions) | {args.baseline_rss / 2**20:.0f} MiB |",
        f"| (peak RSS − that floor) / frame | {above:.2f}× |",
        f"| run status | {big.status} |",
        "",
        "Slowest steps (seconds):",
        "",
        "| step | wall | compute | cpu | input IO | output IO | process peak RSS after it (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for step in big.steps[:10]:
        lines.append(
            f"| {step['step']} | {step['wall_s']:.2f} | {step['compute_s']:.2f} | {step['cpu_s']:.2f} | "
            f"{step['input_io_s']:.2f} | {step['output_io_s']:.2f} | {step['peak_rss_mib']:.0f} |"
        )
    return lines


def _big_only(args) -> int:
    """``--big-only``: the big synthetic version's section alone, printed (the page needs the flights runs too)."""
    if not args.big_rows:
        raise SystemExit("--big-only needs --big-rows > 0")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mlops-lifecycle-bench-"))
    big = run_big(workdir, args.big_rows)
    floor_home, floor_data = _new_instance(Path(tempfile.mkdtemp(prefix="floor-", dir=workdir)))
    args.baseline_rss = baseline_rss_bytes(floor_home, floor_data)
    print("\n".join(big_section(big, args)), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="flights repetitions (fresh instance each)")
    parser.add_argument("--big-rows", type=int, default=1_000_000, help="rows of the big synthetic version (0: skip)")
    parser.add_argument("--workdir", type=Path, default=None, help="where instances go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=DOC)
    parser.add_argument(
        "--big-only",
        action="store_true",
        help="run only the big synthetic version and print its section (the page is not written)",
    )
    args = parser.parse_args(argv)
    if args.big_only:
        return _big_only(args)

    from mlops_assets.demo_data.flights import prepare_flights_months

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mlops-lifecycle-bench-"))
    months = prepare_flights_months(workdir / "months", [1, 2])
    load_start = load_average()
    flights = []
    for i in range(args.repeats):
        flights.append(run_flights(workdir, months))
        print(f"flights repetition {i + 1}: " + ", ".join(f"{r.process_wall:.1f}s" for r in flights[-1]), flush=True)
    big = run_big(workdir, args.big_rows) if args.big_rows else None
    floor_home, floor_data = _new_instance(Path(tempfile.mkdtemp(prefix="floor-", dir=workdir)))
    args.baseline_rss = baseline_rss_bytes(floor_home, floor_data)
    if big:
        print(f"big: {big.process_wall:.1f}s, peak {big.peak_rss_bytes / 2**20:.0f} MiB", flush=True)
    doc = write_doc(flights, big, load_start, load_average(), args)
    write_page(args.out, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
