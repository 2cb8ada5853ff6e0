"""The main job as a user runs it (a real daemon, sensor and runs), and the project's own promises."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from mlops_assets.demo_data import synthetic
from mlops_assets.instance import INSTANCE_CONFIG
from mlops_assets.ml.spec import packaged_spec_path
from mlops_assets.storage.registry import ModelRegistry

pytestmark = pytest.mark.wiring

ROOT = Path(__file__).resolve().parents[1]


def _synthetic_demo(source: Path, home: Path, timeout: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment of ``mlops-demo`` on the synthetic spec's files in ``source`` (no inherited
    DAGSTER_/MLOPS_ settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MLOPS_"))}
    cmd = [sys.executable, "-m", "mlops_assets.demo", "--spec", str(packaged_spec_path("synthetic"))]
    return [*cmd, "--source", str(source), "--dagster-home", str(home), "--timeout", str(timeout)], env


@pytest.mark.e2e
def test_demo_runs_the_lifecycle_through_the_daemon_and_sensor(tmp_path):
    source = tmp_path / "source"
    synthetic.write_versions(source, n_versions=2, rows_per_version=2000, seed=11)
    home = tmp_path / "home"
    cmd, env = _synthetic_demo(source, home, timeout=300)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "[1/2] landing synthetic_v001.csv" in out and "[2/2] landing synthetic_v002.csv" in out
    # Progress: from the second version on, the elapsed time and an estimate of what is left.
    assert re.search(
        r"\[2/2\] landing synthetic_v002.csv → data version \S+ \(\d+ s elapsed, about \d+ s left\)", out
    ), out
    assert "→ promoted" in out
    assert f"DAGSTER_HOME={home}" in out

    # Everything is in the instance: partitions from the sensor, runs launched by the sensor.
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            keys = instance.get_dynamic_partitions("synthetic__data_versions")
            assert [k.split("__")[0] for k in keys] == ["synthetic_v001", "synthetic_v002"]
            runs = instance.get_runs()
            landed = [r for r in runs if r.tags.get("dagster/sensor_name") == "synthetic__landing_sensor"]
            assert len(landed) == 2 and {r.tags.get("mlops/reason") for r in landed} == {"new_data"}
            # The first version trains (nothing in production); the second is only ingested and monitored
            # when the first made it to production (a failed gate leaves production empty: it trains too).
            first, second = sorted(landed, key=lambda r: r.tags["mlops/data_version"])
            assert first.job_name == "synthetic__lifecycle_job"
            assert {r.tags.get("mlops/model") for r in runs} == {"synthetic"}  # --spec: the one model served
            registry = ModelRegistry(f"sqlite:///{home / 'mlops' / 'registry.db'}")
            trained_on_first = [
                m.version
                for m in registry.list_versions("synthetic")
                if m.data_versions == (first.tags["mlops/data_version"],)
            ]
            first_promoted = any(
                t.to_stage == "Production" for v in trained_on_first for t in registry.transitions("synthetic", v)
            )
            assert second.job_name == ("synthetic__ingest_job" if first_promoted else "synthetic__lifecycle_job")
            # The demo waited for the sensors that react to runs, the run-profile sensors among them: every run it
            # reported has its profile recorded when it ends (the UI shows where each run's time went).
            unprofiled = [r.run_id for r in runs if "mlops/profile.wall_seconds" not in r.tags]
            assert not unprofiled, unprofiled
            # Anything else was launched by a retraining sensor, with its reason and evidence.
            for other in (r for r in runs if r not in landed):
                assert other.job_name == "synthetic__retrain_job" and other.tags["mlops/reason"] in (
                    "drift",
                    "performance",
                    "stale",
                )
                assert other.tags.get("mlops/evidence")
    finally:
        del os.environ["DAGSTER_HOME"]
    registry = ModelRegistry(f"sqlite:///{home / 'mlops' / 'registry.db'}")
    assert registry.production_version("synthetic") is not None

    # A second run lands nothing new and says so.
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already landed") == 2


@pytest.mark.e2e
def test_demo_lands_labels_a_version_late_and_tells_the_story_from_the_instance(tmp_path):
    # The synthetic spec, but a data file may come without its label column (as the flights spec says).
    spec = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    spec["label"]["required"] = False
    spec_path = tmp_path / "synthetic.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    source = tmp_path / "source"
    synthetic.write_versions(source, n_versions=2, rows_per_version=2000, seed=11)
    home, story_json = tmp_path / "home", tmp_path / "story.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MLOPS_"))}
    cmd = [sys.executable, "-m", "mlops_assets.demo", "--spec", str(spec_path), "--source", str(source)]
    cmd += ["--dagster-home", str(home), "--timeout", "300", "--story-json", str(story_json)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    landings = re.findall(r"^\[(\d)/4\] landing (labels )?(synthetic_v00\d\.csv)", out, flags=re.M)
    assert [(n, bool(lab), f) for n, lab, f in landings] == [
        ("1", False, "synthetic_v001.csv"),
        ("2", True, "synthetic_v001.csv"),
        ("3", False, "synthetic_v002.csv"),
        ("4", True, "synthetic_v002.csv"),
    ]
    # What landed: data files without the label column, labels files with the id and label only.
    landed = pd.read_csv(home / "mlops" / "landing" / "synthetic" / "synthetic_v001.csv")
    labels = pd.read_csv(home / "mlops" / "labels" / "synthetic" / "synthetic_v001.csv")
    assert "churned" not in landed.columns and list(labels.columns) == ["customer_id", "churned"]

    story = json.loads(story_json.read_text())
    first, second = story["versions"]
    assert [v["data_version"].split("__")[0] for v in story["versions"]] == ["synthetic_v001", "synthetic_v002"]
    # Version 1: nothing in production to score it; its labels made it labelled and it trained (reason new_data).
    assert first["production_version"] is None and first["labelled"] is True
    assert [(r["job"], r["reason"]) for r in first["training_runs"]] == [("retrain_job", "new_data")]
    assert [r["reason"] for r in first["other_runs"]] == ["new_data", "new_labels"]
    # Version 2: scored by that model, estimated before its labels, measured after, the error as recorded.
    assert second["production_version"] == first["trained_versions"][0][0]
    assert second["estimated_lower"] <= second["estimated"] <= second["estimated_upper"]
    assert 0.5 < second["realised"] <= 1.0
    assert second["estimate_error"] == pytest.approx(second["realised"] - second["estimated"], abs=1e-3)
    # The same story is printed, read back from the instance.
    assert "Story per data version" in out
    assert f"{second['estimated']:.3f} [{second['estimated_lower']:.3f}, {second['estimated_upper']:.3f}]" in out


def test_the_demo_waits_for_the_sensors_that_react_to_runs_and_each_ticks_on_every_daemon_loop():
    from mlops_assets.definitions import code_location_defs
    from mlops_assets.demo import check_served
    from mlops_assets.model import MLModel

    waited = check_served(MLModel(name="flights", spec_source="flights"))
    reacting = ("landing", "labels", "labelled", "drift", "performance", "estimated_performance", "freshness")
    assert waited == {f"flights__{name}_sensor" for name in (*reacting, "run_profile_success", "run_profile_failure")}
    # Not waited for: the dead-run sensor (every 30 s: waiting for it cost up to 30 s per landing) and the
    # served-traffic sensor (no served traffic in the demo); neither requests a run.
    repository = code_location_defs().get_repository_def()
    for name in waited:
        # Dagster's sensor daemon starts a loop every 5 s and skips a sensor whose last tick started less than its
        # minimum interval ago; at exactly 5 s a tick that started a moment into its loop is skipped on the next
        # loop, so the sensor ticked every other loop (10 s). Below the loop's 5 s, it ticks on every loop.
        assert repository.get_sensor_def(name).minimum_interval_seconds < 5, name


def test_demo_rejects_spec_without_source(capsys):
    from mlops_assets.demo import main

    with pytest.raises(SystemExit):
        main(["--spec", "x.yaml"])
    assert "--spec and --source go together" in capsys.readouterr().err


def test_labels_land_a_version_late_unless_asked_or_the_spec_requires_them(tmp_path, capsys):
    from mlops_assets.demo import _parser, _plan, labels_later
    from mlops_assets.ml.spec import load_spec

    flights, synthetic_spec = load_spec("flights"), load_spec("synthetic")
    assert flights.label.required is False  # the demo's spec lets a month arrive before its labels
    assert labels_later(_parser().parse_args([]), flights) is True
    assert labels_later(_parser().parse_args(["--labels-with-data"]), flights) is False
    # A spec whose data files must carry labels keeps them there: its gates would reject a file without them.
    assert labels_later(_parser().parse_args([]), synthetic_spec) is False

    source = tmp_path / "source"
    source.mkdir()
    for month in (1, 2):
        (source / f"flights_2013-0{month}.csv").write_text(f"flight_id,carrier,delayed\n{month},AA,1\n")
    args = _parser().parse_args(["--spec", "flights", "--source", str(source)])
    plan = _plan(args, flights, tmp_path / "data")
    assert [(p.kind, p.source.name) for p in plan] == [
        ("data", "flights_2013-01.csv"),
        ("labels", "flights_2013-01.csv"),
        ("data", "flights_2013-02.csv"),
        ("labels", "flights_2013-02.csv"),
    ]
    landed = pd.read_csv(plan[0].source)
    assert list(landed.columns) == ["flight_id", "carrier"]
    assert list(pd.read_csv(plan[1].source).columns) == ["flight_id", "delayed"]
    assert "labels: one version late" in capsys.readouterr().out
    with_data = _plan(_parser().parse_args(["--labels-with-data", "--source", str(source)]), flights, tmp_path)
    assert [(p.kind, p.source) for p in with_data] == [("data", source / f"flights_2013-0{m}.csv") for m in (1, 2)]
    assert "labels: in the data files (--labels-with-data)" in capsys.readouterr().out


def test_repository_dagster_yaml_is_the_instance_config_the_demo_writes():
    assert yaml.safe_load((ROOT / "dagster.yaml").read_text()) == INSTANCE_CONFIG


def test_workspace_and_dg_load_the_same_location_name():
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    name = re.search(r'code_location_name = "([^"]+)"', pyproject).group(1)
    assert entry["python_module"]["location_name"] == name
    assert entry["python_module"]["module_name"] == re.search(
        r'code_location_target_module = "([^"]+)"', pyproject
    ).group(1)


def test_ci_runs_the_readme_commands_verbatim():
    readme = (ROOT / "README.md").read_text()
    quickstart = re.findall(r"```bash\n(python3 -m venv[^\n]+)\n```", readme)
    assert len(quickstart) == 2, quickstart
    ci = (ROOT / ".ci" / "run").read_text()
    for command in quickstart:
        assert command in ci


def test_mlops_spec_serves_that_one_spec_as_the_only_model(tmp_path, monkeypatch):
    from mlops_assets.definitions import code_location_defs

    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLOPS_SPEC", str(packaged_spec_path("synthetic")))
    keys = {k.path[0] for k in code_location_defs().resolve_all_asset_keys()}
    assert keys == {"synthetic"}
    monkeypatch.delenv("MLOPS_SPEC")
    keys = {k.path[0] for k in code_location_defs().resolve_all_asset_keys()}
    assert keys == {"flights", "synthetic"}


def test_definitions_load_and_unknown_environment_is_refused(tmp_path, monkeypatch):
    from mlops_assets.definitions import build_defs
    from mlops_assets.environments import environment, local_environment

    defs = build_defs(local_environment(tmp_path))
    for model in ("flights", "synthetic"):
        assert defs.resolve_job_def(f"{model}__lifecycle_job") is not None
        assert defs.resolve_sensor_def(f"{model}__landing_sensor") is not None
    monkeypatch.setenv("MLOPS_ENV", "staging")
    with pytest.raises(ValueError, match="MLOPS_ENV='staging'"):
        environment()


def _processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminated_demo_stops_its_daemon_and_code_server(tmp_path, sig):
    source = tmp_path / "source"
    synthetic.write_versions(source, n_versions=1, rows_per_version=2000, seed=11)
    home = tmp_path / "home"
    cmd, env = _synthetic_demo(source, home, timeout=600)
    demo = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # The daemon is up once its process (command line naming the instance's workspace.yaml) exists.
        marker = str(home / "workspace.yaml")
        deadline = time.monotonic() + 300
        while not _processes_mentioning(marker):
            assert demo.poll() is None and time.monotonic() < deadline, "the demo never started its daemon"
            time.sleep(0.2)
        demo.send_signal(sig)
        out, _ = demo.communicate(timeout=120)
    finally:
        demo.kill()
    assert demo.returncode == 128 + sig, out
    assert f"stopped by {signal.Signals(sig).name}" in out
    # The daemon's process group (daemon, code server, run workers) goes with it; allow the group time to exit.
    deadline = time.monotonic() + 60
    while (left := _processes_mentioning(str(home))) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], [(Path(f"/proc/{pid}/cmdline").read_bytes()[:200]) for pid in left]
