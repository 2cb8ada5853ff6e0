"""``mlops-spec infer`` and ``mlops-spec check`` (mlops_assets/spec_cli.py, mlops_assets/ml/spec_infer.py).

An inferred spec loads with ``load_spec`` and passes the very files it was inferred from, on the flights months and
on data sets the project never used (scikit-learn's bundled breast cancer data, as CSV and as Parquet, and a
synthetic frame with every column type); ``check`` prints every failure case with the product's own gates and
exits 0 / 1 / 2.
"""

import itertools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from mlops_assets import spec_cli
from mlops_assets.ml.spec import load_spec
from mlops_assets.ml.spec_infer import InferOptions, check_files, infer_spec, model_name, widened_range

pytestmark = pytest.mark.core


def _cancer_frame() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame.insert(0, "patient_id", np.arange(5000, 5000 + len(frame)))
    frame["diagnosis"] = np.where(frame.pop("target") == 0, "malignant", "benign")
    return frame


def _split(frame: pd.DataFrame, folder: Path, stem: str, suffix: str = ".csv") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), 3), start=1):
        path = folder / f"{stem}_{i}{suffix}"
        part = frame.iloc[rows]
        part.to_csv(path, index=False) if suffix == ".csv" else part.to_parquet(path, index=False)
        paths.append(path)
    return paths


def _infer(capsys: pytest.CaptureFixture[str], files: list[Path], out: Path, *options: str) -> str:
    code = spec_cli.main(["infer", *map(str, files), *options, "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.err


def _commented_keys(text: str) -> set[str]:
    """Keys of the YAML text that have a comment line right above them."""
    lines = text.splitlines()
    return {
        line.strip().split(":")[0]
        for above, line in itertools.pairwise(lines)
        if above.strip().startswith("#") and not line.strip().startswith("#")
    }


# --- infer: the spec loads and passes its own files ----------------------------------------------------------


def test_breast_cancer_csv_spec_loads_and_validates_its_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    files = _split(_cancer_frame(), tmp_path / "data", "cancer")
    out = tmp_path / "cancer.yaml"
    said = _infer(capsys, files, out, "--label", "diagnosis")
    assert "passes every data gate on its 3 sample file(s)" in said
    spec = load_spec(out)
    assert spec.name == "cancer" and spec.id_column == "patient_id" and spec.order_column is None
    # The positive class is the rarer one (212 malignant against 357 benign), by the stated rule.
    assert spec.label.values == ("benign", "malignant") and spec.label.positive == "malignant"
    assert len(spec.features) == 30 and "patient_id" not in spec.features
    radius = spec.column("mean_radius")
    assert radius.type == "float" and radius.min is not None and radius.max is not None and radius.min >= 0
    assert check_files(spec, files).passed
    text = out.read_text()
    assert yaml.safe_load(text) == yaml.safe_load(yaml.safe_dump(yaml.safe_load(text)))
    # Every column and every top-level choice carries its reason.
    commented = _commented_keys(text)
    assert set(spec.column_names) <= commented
    assert {"name", "id_column", "label", "features", "slices", "policy", "training", "min_rows"} <= commented
    assert "order_column" not in text.split("columns:")[0].split("\n#")[0]
    assert "No order column" in text
    assert spec_cli.main(["check", str(out), *map(str, files)]) == 0


def test_breast_cancer_parquet_spec_loads_and_validates_its_files(tmp_path: Path):
    files = _split(_cancer_frame(), tmp_path / "data", "cancer", ".parquet")
    inferred = infer_spec(files, InferOptions(label="diagnosis", positive="benign", name="tumours"))
    spec = inferred.spec()
    assert spec.name == "tumours" and spec.label.positive == "benign"
    assert yaml.safe_load(inferred.to_yaml()) == inferred.data
    assert check_files(spec, files).passed


def test_flights_months_spec_loads_and_validates_its_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from mlops_assets.demo_data.flights import prepare_flights_months

    files = prepare_flights_months(tmp_path / "flights", [1, 2])
    out = tmp_path / "flights.yaml"
    _infer(capsys, files, out, "--label", "delayed")
    spec = load_spec(out)
    assert spec.name == "flights" and spec.id_column == "flight_id" and spec.order_column == "time_hour"
    assert spec.label.values == (0, 1) and spec.label.positive == 1
    assert spec.column("time_hour").type == "datetime" and "time_hour" not in spec.features
    assert spec.column("carrier").type == "category" and spec.column("tailnum").type == "string"
    assert spec.column("arr_delay").nullable and not spec.column("sched_dep_time").nullable
    # month grows from file to file: no upper bound; year has one value: no range at all; it is not a feature.
    assert spec.column("month").max is None and spec.column("year").min is None and "year" not in spec.features
    assert check_files(spec, files).passed


def test_every_column_type_is_inferred_and_read_back_as_the_product_reads_it(tmp_path: Path):
    rng = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame(
        {
            "customer_id": [f"k{i:05d}" for i in range(n)],
            "when": pd.date_range("2024-03-01", periods=n, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": pd.array(
                np.where(rng.random(n) < 0.1, None, rng.integers(0, 50, n)), dtype="Int64"
            ),  # int, cells missing
            "share": rng.random(n).round(3),
            "flag": rng.choice(["true", "false"], n),
            "region": rng.choice(["NA", "EU", "APAC"], n),  # "NA" is a region, not a missing value
            "note": [f"free text {i}" for i in range(n)],
            "constant": 7,
            "outcome": rng.choice([0, 1], n),
        }
    )
    files = _split(frame, tmp_path / "data", "mixed")
    inferred = infer_spec(files)  # every role found by its rule: label named "outcome", id unique, one datetime
    spec = inferred.spec()
    assert (spec.label.column, spec.id_column, spec.order_column) == ("outcome", "customer_id", "when")
    types = {c.name: c.type for c in spec.columns}
    assert types == {
        "customer_id": "string",
        "when": "datetime",
        "count": "int",
        "share": "float",
        "flag": "bool",
        "region": "category",
        "note": "string",
        "constant": "int",
        "outcome": "int",
    }
    assert spec.column("count").nullable and not spec.column("share").nullable
    assert spec.column("region").categories == ("APAC", "EU", "NA") and not spec.column("region").nullable
    assert spec.column("share").min == 0.0
    assert set(spec.features) == {"count", "share", "flag", "region"}  # not the note, the constant, the time
    text = inferred.to_yaml()
    assert "identifier-like or free text" in text and "a single value in every sample row" in text
    assert check_files(spec, files).passed


def test_policy_fits_small_versions_and_writes_its_reasons(tmp_path: Path):
    frame = _cancer_frame()
    files = _split(frame.iloc[:300], tmp_path / "a", "small")
    files.append(tmp_path / "a" / "small_4.csv")
    frame.iloc[300:569].to_csv(files[-1], index=False)  # 269 rows after 100: a ratio of 2.69
    inferred = infer_spec(files, InferOptions(label="diagnosis"))
    policy = inferred.spec().policy
    assert policy.data.min_rows == 50  # half the smallest file (100 rows), not the default 500
    lo, hi = policy.data.volume_ratio_bounds
    assert lo == 0.5 and hi >= 2.69 * 1.25
    gates = inferred.data["policy"]["gates"]
    assert gates["max_latency_p99_ms_single"] == 100.0 and gates["max_latency_p99_ms_batch"] == 2000.0
    text = inferred.to_yaml()
    assert "CPU time on one thread" in text and "half the smallest sample file" in text
    assert check_files(inferred.spec(), files).passed


# --- infer: errors and options -------------------------------------------------------------------------------


def test_infer_names_the_option_when_it_cannot_choose(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    frame = _cancer_frame()
    files = _split(frame, tmp_path / "data", "cancer")
    assert spec_cli.main(["infer", *map(str, files)]) == 2
    assert "name the label column with --label: binary columns: ['diagnosis']" in capsys.readouterr().err
    no_id = _split(frame.drop(columns=["patient_id"]), tmp_path / "noid", "cancer")
    assert spec_cli.main(["infer", *map(str, no_id), "--label", "diagnosis"]) == 2
    assert "name the id column with --id" in capsys.readouterr().err
    assert spec_cli.main(["infer", *map(str, files), "--label", "mean_radius"]) == 2
    assert "distinct values" in capsys.readouterr().err
    assert spec_cli.main(["infer", *map(str, files), "--label", "diagnosis", "--positive", "maybe"]) == 2
    assert "--positive 'maybe'" in capsys.readouterr().err
    assert spec_cli.main(["infer", *map(str, files), "--label", "diagnosis", "--name", "Bad-Name"]) == 2
    assert "'bad_name'" in capsys.readouterr().err
    assert spec_cli.main(["infer", str(tmp_path / "missing.csv"), "--label", "x"]) == 2
    assert "file does not exist" in capsys.readouterr().err


def test_infer_writes_to_stdout_and_never_overwrites_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    files = _split(_cancer_frame(), tmp_path / "data", "cancer")
    assert spec_cli.main(["infer", *map(str, files), "--label", "diagnosis"]) == 0
    printed = capsys.readouterr().out
    assert load_spec_text(printed, tmp_path).name == "cancer"
    out = tmp_path / "cancer.yaml"
    out.write_text("mine")
    assert spec_cli.main(["infer", *map(str, files), "--label", "diagnosis", "-o", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err and out.read_text() == "mine"
    assert spec_cli.main(["infer", *map(str, files), "--label", "diagnosis", "-o", str(out), "--force"]) == 0


def load_spec_text(text: str, folder: Path):
    path = folder / "printed.yaml"
    path.write_text(text)
    return load_spec(path)


@pytest.mark.parametrize("raw", ["Flights 2013", "2024_sales-EU", "__x__y", "ÄÖ", "a" * 80, "model2"])
def test_model_name_is_valid_under_the_model_name_rule(raw: str):
    from mlops_assets.model import MODEL_NAME

    name = model_name(raw)
    assert MODEL_NAME.match(name) and "__" not in name
    assert model_name(name) == name


def test_widened_range_rounds_outward_and_stays_non_negative():
    assert widened_range(1, 31, 0.1, whole=True)[:2] == (0, 34)
    assert widened_range(-33, 1301, 0.1, whole=False)[:2] == (-170.0, 1440.0)
    assert widened_range(6.981, 28.11, 0.1, whole=False)[:2] == (4.8, 30.3)
    assert widened_range(5, 9, 0.0, whole=True)[:2] == (5, 9)


# --- check: every failure case, exit codes --------------------------------------------------------------------


@pytest.fixture()
def cancer_spec(tmp_path: Path) -> tuple[Path, list[Path]]:
    files = _split(_cancer_frame(), tmp_path / "data", "cancer")
    out = tmp_path / "cancer.yaml"
    out.write_text(infer_spec(files, InferOptions(label="diagnosis")).to_yaml())
    return out, files


def test_check_prints_every_failure_case(cancer_spec: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]):
    spec_path, files = cancer_spec
    bad = pd.read_csv(files[2]).astype({"mean_texture": object, "mean_area": object})
    bad.loc[[3, 4], "mean_radius"] = 99.5  # out of range twice
    bad.loc[5, "mean_texture"] = "thick"  # not a number
    bad.loc[6, "mean_area"] = None  # missing in a column that is not nullable
    bad.loc[7, "diagnosis"] = "unknown"  # outside the label's values
    bad.loc[8, "patient_id"] = bad.loc[9, "patient_id"]  # a repeated id
    bad = bad.drop(columns=["worst_symmetry"]).assign(extra=1)
    broken = files[2].with_name("broken.csv")
    bad.to_csv(broken, index=False)
    assert spec_cli.main(["check", str(spec_path), *map(str, files[:2]), str(broken)]) == 1
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" in out and "broken.csv: 189 rows" in out
    row = {bad.loc[9, "patient_id"]}.pop()
    for line in (
        f"schema_valid | column 'patient_id' | field_uniqueness | 2 failing: {row} x2 (rows 9, 10)",
        "schema_valid | column 'mean_radius' | in_range(",
        "| 2 failing: 99.5 x2 (rows 4, 5)",
        "schema_valid | column 'mean_texture' | coerce_dtype('float64') | 1 failing: 'thick' (row 6)",
        "schema_valid | column 'mean_area' | not_nullable | 1 failing: <missing> (row 7)",
        "schema_valid | column 'worst_symmetry' | missing column | 1 failing",
        "label_in_domain | column 'diagnosis' | value in ['benign', 'malignant'] | 1 failing: 'unknown'",
        "ids_unique | column 'patient_id' | unique | 1 failing: ",
        "note: columns not in the spec (kept, not checked): extra",
        "Result: 1 of 3 file(s) failed, 7 failure case(s)",
    ):
        assert line in out, f"{line!r} not in:\n{out}"


def test_check_lists_all_values_on_request_and_judges_files_in_order(
    cancer_spec: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]
):
    spec_path, files = cancer_spec
    spec = load_spec(spec_path)
    high = spec.column("mean_radius").max
    assert high is not None
    wide = pd.read_csv(files[0])
    wide.loc[:14, "mean_radius"] = [high + 1 + i for i in range(15)]
    wide_path = files[0].with_name("wide.csv")
    wide.to_csv(wide_path, index=False)
    assert spec_cli.main(["check", str(spec_path), str(wide_path)]) == 1
    assert "... 5 more distinct value(s) (--max-values 0 lists all)" in capsys.readouterr().out
    assert spec_cli.main(["check", str(spec_path), str(wide_path), "--max-values", "0"]) == 1
    out = capsys.readouterr().out
    assert "more distinct" not in out and all(f"{high + 1 + i!r} (row {i + 1})" in out for i in range(15))
    # A tiny file after a full one: too few rows, and a tenth of the previous accepted file's volume.
    tiny = files[1].with_name("tiny.csv")
    pd.read_csv(files[1]).head(10).to_csv(tiny, index=False)
    assert spec_cli.main(["check", str(spec_path), str(files[0]), str(tiny)]) == 1
    out = capsys.readouterr().out
    assert "row_count_above_floor | file |" in out and "volume_within_bounds | file |" in out
    assert "outside the allowed ratio [0.5, 2]" in out


def test_check_exit_codes(cancer_spec: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    spec_path, files = cancer_spec
    assert spec_cli.main(["check", str(spec_path), *map(str, files)]) == 0
    assert "Result: all 3 file(s) passed every data gate" in capsys.readouterr().out
    assert spec_cli.main(["check", str(spec_path), str(tmp_path / "gone.csv")]) == 1
    assert "raw_data | file | file_exists |" in capsys.readouterr().out
    assert spec_cli.main(["check", str(tmp_path / "none.yaml"), str(files[0])]) == 2
    assert "the spec does not load" in capsys.readouterr().err
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text(spec_path.read_text().replace("type: float", "type: real", 1))
    assert spec_cli.main(["check", str(malformed), str(files[0])]) == 2
    assert "type must be one of" in capsys.readouterr().err
    assert spec_cli.main(["check", str(spec_path)]) == 2
    assert spec_cli.main(["check", str(spec_path), str(files[0]), "--max-values", "-1"]) == 2
    assert spec_cli.main([]) == 2
    assert spec_cli.main(["--help"]) == 0


@pytest.mark.e2e
def test_the_console_script_runs(tmp_path: Path, cancer_spec: tuple[Path, list[Path]]):
    spec_path, files = cancer_spec
    script = shutil.which("mlops-spec", path=str(Path(sys.executable).parent))
    assert script is not None, "mlops-spec is not installed: pip install -e ."
    done = subprocess.run([script, "check", str(spec_path), *map(str, files)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Result: all 3 file\(s\) passed", done.stdout)


def _logistic_or_interaction(n: int, *, interaction: bool, seed: int) -> pd.DataFrame:
    """Two numeric features; the label follows a linear logit, or the sign of their product (no linear signal)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    logit = 3.0 * x1 * x2 if interaction else 1.5 * x1 - 1.0 * x2
    label = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    return pd.DataFrame({"row_id": np.arange(n), "x1": x1.round(4), "x2": x2.round(4), "outcome": label.astype(int)})


@pytest.mark.parametrize(
    ("interaction", "estimator", "baseline"),
    [(False, "logistic_regression", "dummy"), (True, "hist_gradient_boosting", "logistic_regression")],
)
def test_infer_picks_the_estimator_the_gates_will_accept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], interaction: bool, estimator: str, baseline: str
):
    # On linear data no gradient-boosting candidate beats the logistic baseline (gate beats_baseline), so infer
    # measures both on the samples and makes the linear model the candidate with a dummy baseline; on data with an
    # interaction and no linear signal it keeps gradient boosting against the linear baseline.
    files = _split(_logistic_or_interaction(3000, interaction=interaction, seed=7), tmp_path / "data", "toy")
    out = tmp_path / "toy.yaml"
    _infer(capsys, files, out, "--label", "outcome", "--id", "row_id")
    spec = load_spec(str(out))
    assert (spec.training.estimator, spec.training.baseline) == (estimator, baseline)
    text = out.read_text()
    measured = r"# Measured on the samples \(time-ordered CV, roc_auc, \d+ fold\(s\)\): gradient boosting 0\.\d{4}"
    assert re.search(measured, text)
    assert re.search(r"lift [+-]0\.\d{4}, standard error 0\.\d{4}", text)
