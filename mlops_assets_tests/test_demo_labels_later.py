"""The demo's labels-a-version-late file plan and its closing story, as pure functions (no Dagster, no daemon)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from mlops_assets.demo_data import synthetic
from mlops_assets.demo_data.labels_later import (
    Landing,
    SplitFile,
    landing_plan,
    split_labels_file,
    split_labels_frame,
)
from mlops_assets.demo_data.story import RunFact, month_story, story_lines, story_record, write_story

pytestmark = pytest.mark.core

ID, LABEL = "customer_id", "churned"  # the synthetic spec's id and label columns


def _splits(names: list[str]) -> list[SplitFile]:
    return [SplitFile(Path("out/data") / n, Path("out/labels") / n) for n in names]


def test_labels_land_one_version_late_and_the_last_after_the_last_data_file():
    plan = landing_plan(_splits(["m_01.csv", "m_02.csv", "m_03.csv"]), labels_later=True)
    assert [(p.kind, p.stem) for p in plan] == [
        ("data", "m_01"),
        ("labels", "m_01"),
        ("data", "m_02"),
        ("labels", "m_02"),
        ("data", "m_03"),
        ("labels", "m_03"),
    ]
    # Version k's labels land just before version k + 1's data: between them nothing else lands.
    for k in range(2):
        labels_k = plan.index(Landing("labels", Path("out/labels") / f"m_0{k + 1}.csv", f"m_0{k + 1}"))
        assert plan[labels_k + 1] == Landing("data", Path("out/data") / f"m_0{k + 2}.csv", f"m_0{k + 2}")
    # Data files come from the data folder, labels files from the labels folder, under the same name.
    assert all(p.source.parent.name == ("data" if p.kind == "data" else "labels") for p in plan)
    assert plan[-1].kind == "labels"  # the story ends labelled


def test_labels_with_data_lands_the_files_as_they_are():
    files = [Path("src/a.csv"), Path("src/b.parquet")]
    assert landing_plan(files, labels_later=False) == [
        Landing("data", Path("src/a.csv"), "a"),
        Landing("data", Path("src/b.parquet"), "b"),
    ]


def test_landing_plan_refuses_what_the_labels_sensor_could_not_join():
    with pytest.raises(ValueError, match=r"repeated: \['a\.csv'\]"):
        landing_plan(_splits(["a.csv", "a.csv"]), labels_later=True)
    with pytest.raises(ValueError, match="named like its data file"):
        landing_plan([SplitFile(Path("d/a.csv"), Path("l/b.csv"))], labels_later=True)
    with pytest.raises(ValueError, match="needs split files"):
        landing_plan([Path("a.csv")], labels_later=True)
    with pytest.raises(ValueError, match="not split files"):
        landing_plan(_splits(["a.csv"]), labels_later=False)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_split_file_drops_only_the_label_and_keeps_id_and_label_apart(tmp_path, fmt):
    (source,) = synthetic.write_versions(tmp_path / "src", n_versions=1, rows_per_version=300, seed=3, fmt=fmt)
    split = split_labels_file(source, tmp_path / "out", ID, LABEL)
    assert split.data == tmp_path / "out" / "data" / source.name
    assert split.labels == tmp_path / "out" / "labels" / source.name
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    original, data, labels = read(source), read(split.data), read(split.labels)
    assert list(data.columns) == [c for c in original.columns if c != LABEL]
    assert list(labels.columns) == [ID, LABEL]
    pd.testing.assert_frame_equal(data, original.drop(columns=[LABEL]))
    # Joined back by id, the two parts are the original file.
    pd.testing.assert_frame_equal(data.merge(labels, on=ID)[list(original.columns)], original)
    assert set(labels[LABEL]) == {"no", "yes"}


def test_split_csv_keeps_cells_as_written(tmp_path):
    source = tmp_path / "v.csv"
    # Leading zeros, an empty cell and a quoted comma would not survive a typed round trip.
    source.write_text('id,code,note,y\n1,007,,yes\n2,010,"a, b",no\n', encoding="utf-8")
    split = split_labels_file(source, tmp_path / "out", "id", "y")
    assert split.data.read_text(encoding="utf-8").splitlines() == ["id,code,note", "1,007,", '2,010,"a, b"']
    assert split.labels.read_text(encoding="utf-8").splitlines() == ["id,y", "1,yes", "2,no"]


def test_split_names_the_file_and_the_missing_column(tmp_path):
    source = tmp_path / "v.csv"
    source.write_text("id,x\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"v\.csv: column\(s\) \['y'\] missing.*label column 'y'"):
        split_labels_file(source, tmp_path / "out", "id", "y")
    with pytest.raises(ValueError, match=r"not a \.csv or \.parquet"):
        split_labels_file(tmp_path / "v.txt", tmp_path / "out", "id", "y")
    with pytest.raises(ValueError, match="same column"):
        split_labels_frame(pd.DataFrame({"id": [1]}), "id", "id", "f.csv")


# --- The closing story ------------------------------------------------------------------------------------------

ESTIMATE = {
    "model_version": 2,
    "metric": "roc_auc",
    "estimated_roc_auc": 0.71,
    "estimated_roc_auc_lower": 0.69,
    "estimated_roc_auc_upper": 0.73,
    "estimated_accuracy": 0.8,
    "sla_floor": 0.65,
    "estimated_below_floor": False,
}
REPORT = {
    "production_version": 2,
    "metric": "roc_auc",
    "realised_metric": 0.68,
    "sla_floor": 0.65,
    "sla_breached": False,
    "estimated_roc_auc": 0.71,
    "estimate_error": -0.03,
    "realised_in_band": False,
}
AB_MSPRT = {
    "method": "msprt",
    "metric": "log_loss",
    "decision": "continue",
    "winner": "none",
    "p_value": 0.41,
    "n": 5000,
    "difference": -0.002,
}
MOVE = {
    "action": "advance",
    "challenger": "v3",
    "champion": "v2",
    "from": "canary 0.05",
    "to": "canary 0.25",
    "guard_status": "passed",
    "guard_rows": 1200,
}
RUNS = [
    RunFact("ingest_job", "new_data", "SUCCESS", "aaaaaaaa1"),
    RunFact("labels_job", "new_labels", "SUCCESS", "bbbbbbbb2"),
    RunFact("retrain_job", "estimated_performance", "SUCCESS", "cccccccc3"),
]


def _story(**overrides):
    facts = {
        "predictions": {"champion_version": 2},
        "estimate": ESTIMATE,
        "labels": {"labelled": True, "labelled_rows": 9000},
        "report": REPORT,
        "ab_tests": [{"decision": "none"}, AB_MSPRT, AB_MSPRT],
        "rollout_steps": [
            {"action": "none"},
            {"action": "waiting", "reason": "needs labels"},
            {**MOVE, "action": "wait", "to": MOVE["from"], "guard_status": "insufficient_data", "guard_rows": 0},
            MOVE,
        ],
        "runs": RUNS,
        "trained_versions": [(3, "Staging")],
    }
    facts.update(overrides)
    return month_story("m_02__0123456789ab", "roc_auc", **facts)


def test_month_story_reads_estimate_realised_retrains_ab_and_rollout():
    story = _story()
    assert story.production_version == 2
    assert (story.estimated, story.estimated_lower, story.estimated_upper) == (0.71, 0.69, 0.73)
    assert (story.realised, story.estimate_error, story.realised_in_band) == (0.68, -0.03, False)
    assert story.labelled is True and story.labelled_rows == 9000
    assert [(r.job, r.reason) for r in story.training_runs] == [("retrain_job", "estimated_performance")]
    assert [r.reason for r in story.other_runs] == ["new_data", "new_labels"]
    # A reading without a decision is no reading; the labels run re-reading the same result is not a second one.
    assert len(story.ab_readings) == 1
    (reading,) = story.ab_readings
    assert (reading.method, reading.decision, reading.p_value, reading.n) == ("msprt", "continue", 0.41, 5000)
    # Only steps taken under guards moved the rollout.
    assert [(m.challenger, m.before, m.after, m.action) for m in story.rollout_moves] == [
        ("v3", "canary 0.05", "canary 0.25", "advance")
    ]
    assert story.trained_versions == ((3, "Staging"),)


def test_month_story_before_labels_and_without_production():
    before = _story(labels={"labelled": False}, report={"reason": "no labels yet", "metric": "roc_auc"})
    assert before.estimated == 0.71 and before.realised is None and before.estimate_error is None
    assert before.labelled is False
    nothing = _story(predictions={}, estimate={}, labels={}, report={}, ab_tests=[], rollout_steps=[], runs=[])
    assert nothing.production_version is None and nothing.estimated is None and nothing.ab_readings == ()
    # Another metric's realised value is not this metric's; a NaN estimate is no estimate.
    other = _story(report={**REPORT, "metric": "pr_auc"}, estimate={**ESTIMATE, "estimated_roc_auc": float("nan")})
    assert other.realised is None and other.estimated is None
    # The production version falls back to the estimate's model when nothing says who scored.
    assert _story(predictions={}).production_version == 2
    # A fixed-horizon record counts its arms apart.
    fixed = {"decision": "challenger_better", "winner": "challenger", "champion_n": 10, "challenger_n": 5}
    assert _story(ab_tests=[fixed]).ab_readings[0].n == 15
    # An always-valid p-value that underflowed to 0 is shown as below the smallest float, not as "p=0".
    underflow = _story(ab_tests=[{**AB_MSPRT, "decision": "winner", "winner": "challenger", "p_value": 0.0}])
    assert "msprt winner p<1e-300 n=5000" in story_lines([underflow])[1]


def test_story_table_and_json_carry_every_figure(tmp_path):
    labelled = _story()
    waiting = month_story(
        "m_03__ba9876543210",
        "roc_auc",
        predictions={"champion_version": 2},
        estimate={**ESTIMATE, "estimated_roc_auc": 0.6, "estimated_below_floor": True},
        labels={"labelled": False},
        report={},
        ab_tests=[],
        rollout_steps=[],
        runs=[],
    )
    lines = story_lines([labelled, waiting])
    assert lines[0].split()[:2] == ["version", "prod"]
    first, second = lines[1], lines[2]
    assert first.startswith("m_02 ") and "0.710 [0.690, 0.730]" in first and "0.680 (err -0.030) OUT of band" in first
    assert "estimated_performance (retrain_job, success) → v3 Staging" in first
    assert "msprt continue p=0.41 n=5000" in first and "v3 canary 0.05→canary 0.25 (advance)" in first
    assert second.startswith("m_03 ") and "0.600 [0.690, 0.730] <floor" in second and "no labels" in second
    assert lines[3] == "estimate vs realised on 1 labelled versions: mean |error| 0.030, max 0.030; " + (
        "realised inside the band 0 of 1"
    )
    path = write_story([labelled, waiting], tmp_path / "s" / "story.json")
    record = json.loads(path.read_text())
    assert record == json.loads(json.dumps(story_record([labelled, waiting])))
    assert record["metric"] == "roc_auc"
    assert [v["data_version"] for v in record["versions"]] == ["m_02__0123456789ab", "m_03__ba9876543210"]
    assert record["versions"][0]["ab_readings"][0]["p_value"] == 0.41
    assert record["versions"][1]["realised"] is None
    assert story_lines([]) == ["(no data version landed)"]
