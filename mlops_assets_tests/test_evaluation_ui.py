"""How an evaluation and its gates read in the Dagster UI: inline plots, one comparison table, a few headline
figures, a metadata size budget, and check results that say which direction passes.

Dagster's UI shows a markdown metadata value inline only under :data:`~mlops_assets.ml.plots.MARKDOWN_INLINE_CHARS`
characters, and reads back every materialization's metadata in its asset views; these tests hold the evaluation's
plots under the first and its serialized metadata (Dagster's own serdes, as the event log stores it) under
:data:`~mlops_assets.assets.evaluations.METADATA_BUDGET_BYTES`, on a realistic evaluation.
"""

import math
import operator
import xml.etree.ElementTree as ET
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from mlops_assets.assets.evaluations import METADATA_BUDGET_BYTES, _evaluation_metadata
from mlops_assets.assets.gating import check_result, passes_when
from mlops_assets.ml import plots
from mlops_assets.ml.evaluation import (
    COMPARED_METRICS,
    EVALUATION_TABLES,
    Evaluation,
    evaluate,
    evaluation_outcome,
    reliability_table,
)
from mlops_assets.ml.features import LABEL_COLUMN, SPLIT_COLUMN
from mlops_assets.ml.gate_result import GateResult
from mlops_assets.ml.model_gates import evaluation_gates
from mlops_assets.ml.policy import METRIC_DIRECTIONS, Policy
from mlops_assets.ml.spec import spec_from_dict
from mlops_assets.ml.validation import gate_volume_within_bounds
from mlops_assets_tests.test_evaluation_gates import EVAL_SPEC, LATENCY, holdout_frame, scored_by

pytestmark = pytest.mark.wiring

SHA = "cd" * 32
SVG = "{http://www.w3.org/2000/svg}"

#: A holdout shaped like the flights demo's (two slice columns: 3 airports and 16 carriers, most of them gated),
#: plus a protected attribute of three groups, so every table of an evaluation is as full as a real one.
CARRIERS = [f"C{i:02d}" for i in range(16)]
REALISTIC_SPEC = spec_from_dict(
    {
        "name": "flights_like",
        "id_column": "id",
        "label": {"column": "outcome", "positive": 1, "values": [0, 1]},
        "features": ["s_cand", "s_base", "s_prod"],
        "slices": ["origin", "carrier"],
        "protected": ["group"],
        "policy": {"min_slice_size": 200, "min_group_size": 100, "bootstrap_samples": 300, "random_seed": 5},
        "columns": {
            "id": {"type": "int"},
            "s_cand": {"type": "float"},
            "s_base": {"type": "float"},
            "s_prod": {"type": "float"},
            "origin": {"type": "string"},
            "carrier": {"type": "string"},
            "group": {"type": "string"},
            "outcome": {"type": "int"},
        },
    },
    source="test_evaluation_ui.py",
)


def realistic_frame(n: int = 9000, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    logit = rng.normal(-1.2, 1.2, size=n)
    s_cand = 1 / (1 + np.exp(-logit))
    noise = rng.normal(size=(2, n))
    weights = np.linspace(3, 0.2, len(CARRIERS))
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "s_cand": s_cand,
            "s_base": 1 / (1 + np.exp(-(0.4 * logit + noise[0] - 0.7))),
            "s_prod": 1 / (1 + np.exp(-(logit + 0.6 * noise[1]))),
            "origin": rng.choice(["EWR", "JFK", "LGA"], size=n),
            "carrier": rng.choice(CARRIERS, size=n, p=weights / weights.sum()),
            "group": rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.35, 0.15]),
            LABEL_COLUMN: (rng.random(n) < s_cand).astype(np.int64),
            SPLIT_COLUMN: "holdout",
        }
    )


@pytest.fixture(scope="module")
def realistic() -> Evaluation:
    frame = realistic_frame()
    return evaluate(
        frame, REALISTIC_SPEC, scored_by("s_cand"), scored_by("s_base"), scored_by("s_prod"), latency=LATENCY
    )


@pytest.fixture(scope="module")
def toy() -> Evaluation:
    return evaluate(
        holdout_frame(n=800, seed=2),
        EVAL_SPEC,
        scored_by("s_cand"),
        scored_by("s_base"),
        scored_by("s_prod"),
        latency=LATENCY,
    )


def stored_size(metadata: dict[str, Any]) -> int:
    """Bytes of ``metadata`` as Dagster stores it: normalized to metadata values (by a materialization), then its
    serdes JSON."""
    normalized = dg.AssetMaterialization(asset_key="sized", metadata=metadata).metadata
    return len(dg.serialize_value(dict(normalized)))


def svg_of(markdown: str) -> ET.Element:
    """The SVG document of a ``![alt](data:image/svg+xml,...)`` markdown image, parsed."""
    prefix = "data:image/svg+xml,"
    start = markdown.index(prefix) + len(prefix)
    assert markdown.endswith(")")
    return ET.fromstring(unquote(markdown[start:-1]))


def polyline_points(svg: ET.Element) -> list[list[tuple[int, int]]]:
    lines = []
    for line in svg.iter(f"{SVG}polyline"):
        numbers = [int(v) for v in line.attrib["points"].split(",")]
        lines.append(list(zip(numbers[::2], numbers[1::2], strict=True)))
    return lines


# --------------------------------------------------------------------------------------------------
# Plots: small SVG charts under the UI's inline limit
# --------------------------------------------------------------------------------------------------


def test_markdown_chars_counts_what_the_ui_counts() -> None:
    # JavaScript's length: UTF-16 code units (≥ is one, an emoji outside the BMP two).
    assert plots.markdown_chars("ab≥") == 3
    assert plots.markdown_chars("\N{LARGE BLUE SQUARE}") == 2


def test_roc_svg_is_inline_well_formed_and_draws_each_models_best_tpr(toy: Evaluation) -> None:
    assert toy.scores is not None and toy.scores.production is not None
    y = toy.scores.y_true
    scores = {"candidate": toy.scores.candidate, "production": toy.scores.production, "baseline": toy.scores.baseline}
    markdown = plots.roc_curve_svg(y, scores)
    assert markdown.startswith("![ROC curves](data:image/svg+xml,")
    assert plots.markdown_chars(markdown) < plots.MARKDOWN_INLINE_CHARS
    assert markdown == plots.roc_curve_svg(y, scores)  # deterministic
    svg = svg_of(markdown)
    assert svg.tag == f"{SVG}svg"
    lines = polyline_points(svg)
    assert len(lines) == 3
    # Drawn in reverse, so that the candidate's line is on top; the legend in the given order.
    for (name, s), points in zip(reversed(list(scores.items())), lines, strict=True):
        fpr, tpr, _ = skm.roc_curve(y, s)
        best = {round(100 * g): max(tpr[fpr <= g + 1e-12]) for g in plots.ROC_FPR_GRID}
        assert points[0] == (0, 100)
        for x, y_svg in points[1:]:
            assert y_svg == round(100 * (1 - best[x])), (name, x)
    legend = [t.text for t in svg.iter(f"{SVG}text")]
    assert legend == [f"{name} {skm.roc_auc_score(y, s):.3f}" for name, s in scores.items()]
    colours = [line.attrib["stroke"] for line in svg.iter(f"{SVG}polyline")]
    assert colours == [plots.MODEL_COLOURS[name] for name in reversed(list(scores))]


def test_roc_svg_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        plots.roc_curve_svg(np.zeros(5), {"candidate": np.linspace(0, 1, 5)})


def test_reliability_svg_draws_the_filled_bins_and_stays_inline_with_many_bins(toy: Evaluation) -> None:
    markdown = plots.reliability_svg(toy.reliability)
    assert markdown.startswith("![reliability diagram](data:image/svg+xml,")
    assert plots.markdown_chars(markdown) < plots.MARKDOWN_INLINE_CHARS
    svg = svg_of(markdown)
    for points, table in zip(polyline_points(svg), reversed(list(toy.reliability.values())), strict=True):
        filled = [b for b in table if b.n]
        assert points == [(round(100 * b.mean_score), round(100 * (1 - b.observed_rate))) for b in filled]
    assert "h0" in markdown  # the bins are marked
    # 20 bins of two models: the dots go, the lines stay, the chart stays inline.
    assert toy.scores is not None and toy.scores.production is not None
    y = toy.scores.y_true
    many = {
        "candidate": reliability_table(y, toy.scores.candidate, 20),
        "production": reliability_table(y, toy.scores.production, 20),
    }
    crowded = plots.reliability_svg(many)
    assert plots.markdown_chars(crowded) < plots.MARKDOWN_INLINE_CHARS
    assert "h0" not in crowded and len(polyline_points(svg_of(crowded))) == 2


# --------------------------------------------------------------------------------------------------
# model_evaluation: headline figures, one comparison table, the rest in tables, under a budget
# --------------------------------------------------------------------------------------------------


def test_headline_figures_are_a_handful_of_floats(toy: Evaluation) -> None:
    out = evaluation_outcome(toy, model_name="toy", model_version=4, artifact_sha256=SHA, production_version=3)
    floats = {k: v for k, v in out.metadata.items() if isinstance(v, float)}
    metric = toy.headline_metric
    vs_production = toy.production_interval
    assert vs_production is not None and vs_production.method == "delong" and toy.lift is not None
    assert floats == {
        f"candidate_{metric}": pytest.approx(toy.candidate[metric]),
        f"baseline_{metric}": pytest.approx(toy.baseline[metric]),
        f"production_{metric}": pytest.approx(toy.production[metric] if toy.production else math.nan),
        "diff_vs_production": pytest.approx(vs_production.estimate),
        "diff_vs_production_lower": pytest.approx(vs_production.lower),
        "lift_vs_baseline_lower": pytest.approx(toy.lift.lower),
        "candidate_ece": pytest.approx(toy.candidate["ece"]),
        "latency_single_p99_ms": LATENCY.single_p99_ms,
    }
    assert all(type(v) is float for v in floats.values())
    assert list(out.metadata)[:7] == [
        "model",
        "model_version",
        "artifact_sha256",
        "production_model",
        "production_version",
        "headline_metric",
        "holdout_rows",
    ]
    assert list(out.metadata)[-1] == "policy" and out.metadata["policy"] == out.record["policy"]
    first = evaluate(holdout_frame(n=800, seed=2), EVAL_SPEC, scored_by("s_cand"), scored_by("s_base"), latency=LATENCY)
    alone = evaluation_outcome(first, model_name="toy", model_version=1, artifact_sha256=SHA, production_version=None)
    identity = ("production_model", "production_version")
    assert not [k for k in alone.metadata if k.startswith(("production_", "diff_")) and k not in identity]
    assert alone.metadata["production_model"] == "none" and alone.metadata["production_version"] is None


def test_comparison_table_has_one_row_per_metric_with_direction_interval_and_policy(toy: Evaluation) -> None:
    out = evaluation_outcome(toy, model_name="toy", model_version=4, artifact_sha256=SHA, production_version=3)
    assert tuple(out.tables) == EVALUATION_TABLES
    comparison = out.tables["comparison"]
    assert comparison.columns == (
        "metric",
        "better",
        "candidate",
        "production",
        "delta",
        "baseline",
        "ci_low",
        "ci_high",
        "policy",
    )
    metrics = [r["metric"] for r in comparison.rows]
    assert metrics == [
        *COMPARED_METRICS,
        "latency_p99_1row_ms",
        "latency_p99_batch_ms",
        "throughput_rows_per_s",
    ]
    vs_production = toy.production_interval
    assert toy.production is not None and vs_production is not None
    for row in comparison.rows[: len(COMPARED_METRICS)]:
        metric = row["metric"]
        assert row["better"] == {True: "higher", False: "lower", None: None}[METRIC_DIRECTIONS.get(metric)]
        assert row["candidate"] == pytest.approx(toy.candidate[metric])
        assert row["baseline"] == pytest.approx(toy.baseline[metric])
        assert row["delta"] == pytest.approx(toy.candidate[metric] - toy.production[metric])
        headline = metric == toy.headline_metric
        assert (row["ci_low"], row["ci_high"]) == (
            (pytest.approx(vs_production.lower), pytest.approx(vs_production.upper)) if headline else (None, None)
        )
    rows = {r["metric"]: r for r in comparison.rows}
    gates = EVAL_SPEC.policy.gates
    assert rows[toy.headline_metric]["policy"] == (
        f"≥ {gates.metric_floor:g} (metric_floor); candidate − baseline > 0; ci_low ≥ −{gates.non_inferiority_margin:g}"
    )
    assert rows["ece"]["policy"] == f"debiased ≤ {gates.max_ece:g} (max_ece)"
    assert rows["accuracy"]["policy"] is None
    # The candidate artifact's latency: its gated p99s with their budgets, lower is better; candidate only.
    single = rows["latency_p99_1row_ms"]
    assert (single["candidate"], single["better"], single.get("production")) == (LATENCY.single_p99_ms, "lower", None)
    assert single["policy"] == f"≤ {gates.max_latency_p99_ms_single:g} (max_latency_p99_ms_single)"
    assert rows["latency_p99_batch_ms"]["candidate"] == LATENCY.batch_p99_ms
    assert rows["throughput_rows_per_s"]["better"] == "higher"
    assert "higher is better" in comparison.descriptions["better"]


def test_slice_and_fairness_tables_lead_with_what_is_judged(realistic: Evaluation) -> None:
    out = evaluation_outcome(realistic, model_name="f", model_version=2, artifact_sha256=SHA, production_version=1)
    slices = out.tables["slices"]
    assert slices.columns == ("slice", "rows", "candidate", "production", "delta", "floor", "gated")
    assert len(slices.rows) == 3 + 16
    first = realistic.slices[0]
    assert slices.rows[0]["slice"] == f"{first['slice_column']}={first['value']}"
    assert slices.rows[0]["candidate"] == pytest.approx(first["candidate"])
    ungated = [r for r in slices.rows if r["gated"] != "yes"]
    assert ungated and all(r["gated"].startswith("no: ") for r in ungated)
    assert "≥ floor" in slices.descriptions["candidate"] and "≥ −0.05" in slices.descriptions["delta"]
    gaps = out.tables["fairness_gaps"]
    assert gaps.columns[:4] == ("attribute", "dp_difference", "dp_ratio", "eo_difference")
    assert "≤ 0.2 (max_demographic_parity_difference)" in gaps.descriptions["dp_difference"]
    assert [r["group"] for r in out.tables["fairness_groups"].rows] == ["a", "b", "c"]


def test_metadata_of_a_realistic_evaluation_fits_the_budget_with_inline_plots(realistic: Evaluation) -> None:
    out = evaluation_outcome(realistic, model_name="f", model_version=2, artifact_sha256=SHA, production_version=1)
    metadata = _evaluation_metadata(out)
    size = stored_size(metadata)
    assert size < METADATA_BUDGET_BYTES, size
    markdown = {k: v.value for k, v in metadata.items() if isinstance(v, dg.MarkdownMetadataValue)}
    assert set(markdown) == {"roc_curve", "reliability_diagram"}
    assert all(plots.markdown_chars(text) < plots.MARKDOWN_INLINE_CHARS for text in markdown.values())
    # A handful of top-level numbers to plot across data versions, not one per metric and model, rounded for reading.
    figures = {k: v for k, v in metadata.items() if isinstance(v, float)}
    assert 5 <= len(figures) <= 8
    assert figures[f"candidate_{realistic.headline_metric}"] == float(f"{realistic.candidate_headline:.4g}")
    assert all(v == float(f"{v:.4g}") for v in figures.values())
    # Tables read as rounded figures (4 significant digits), never 17-digit floats.
    for name in EVALUATION_TABLES:
        value = metadata[name]
        assert isinstance(value, dg.TableMetadataValue)
        for record in value.records:
            for cell in record.data.values():
                if isinstance(cell, float):
                    assert cell == float(f"{cell:.4g}") or abs(cell) >= 10_000, (name, cell)
    descriptions = {c.name: c.description for c in metadata["comparison"].schema.columns}
    assert "higher is better" in str(descriptions["better"])


def test_metadata_without_production_or_valid_candidate_scores_still_renders(toy: Evaluation) -> None:
    frame = holdout_frame(n=800, seed=2)
    frame.loc[frame[SPLIT_COLUMN] == "holdout", "s_cand"] = np.nan
    bad = evaluate(frame, EVAL_SPEC, scored_by("s_cand"), scored_by("s_base"), scored_by("s_prod"), latency=LATENCY)
    out = evaluation_outcome(bad, model_name="toy", model_version=2, artifact_sha256=SHA, production_version=1)
    metadata = _evaluation_metadata(out)
    assert "candidate_roc_auc" not in metadata and "diff_vs_production" not in metadata
    rows = {r.data["metric"]: r.data for r in metadata["comparison"].records}
    assert rows["roc_auc"]["candidate"] is None and rows["roc_auc"]["production"] is not None
    roc = svg_of(metadata["roc_curve"].value)
    assert [t.text.split()[0] for t in roc.iter(f"{SVG}text") if t.text] == ["production", "baseline"]
    assert stored_size(metadata) < METADATA_BUDGET_BYTES


# --------------------------------------------------------------------------------------------------
# Gate check results: the passing direction, floats, evidence tables
# --------------------------------------------------------------------------------------------------


def _gate(name: str, results: tuple[GateResult, ...]) -> GateResult:
    (found,) = [g for g in results if g.name == name]
    return found


def test_check_result_states_the_passing_direction_with_float_observed_and_threshold(toy: Evaluation) -> None:
    policy = EVAL_SPEC.policy
    gates = evaluation_gates(toy, policy.gates, policy.evaluation)
    floor = check_result(_gate("metric_above_floor", gates)).metadata
    assert floor["passes_when"].value == f"observed ≥ {policy.gates.metric_floor:g}"
    assert isinstance(floor["observed"], dg.FloatMetadataValue) and isinstance(
        floor["threshold"], dg.FloatMetadataValue
    )
    assert list(floor)[:3] == ["condition", "passes_when", "message"]
    expected = {
        "beats_baseline": "observed > 0",
        "non_inferior_to_production": f"observed ≥ {-policy.gates.non_inferiority_margin:g}",
        "calibration_within_bound": f"observed ≤ {policy.gates.max_ece:g}",
        "latency_within_budget": f"observed ≤ {policy.gates.max_latency_p99_ms_single:g}",
        "slices_meet_floor": "observed = 0",
        "fairness_within_bounds": "observed = 0",
        "predictions_valid": "observed = 0",
        "metric_thresholds_met": "observed = 0",
    }
    for name, direction in expected.items():
        result = check_result(_gate(name, gates))
        assert result.metadata["passes_when"].value == direction, name
        # Counts too are floats, so a check's plot never mixes types across data versions.
        assert isinstance(result.metadata["threshold"], dg.FloatMetadataValue), name
    volume = gate_volume_within_bounds(1000, ("v1", 900), policy.data, "v2.csv")
    assert passes_when(volume) == "observed within [0.5, 2]"
    assert check_result(volume).metadata["threshold"].value == "[0.5, 2]"


def _holds(direction: str, observed: float) -> bool:
    subject, symbol, number = direction.split(" ")
    assert subject == "observed"
    compare = {"≥": operator.ge, "≤": operator.le, ">": operator.gt, "<": operator.lt, "=": operator.eq}[symbol]
    return compare(observed, float(number))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"metric_floor": 0.99, "max_ece": 0.001, "max_latency_p99_ms_single": 1.0, "max_slice_regression": 0.0},
        {"min_lift_over_baseline": 0.05, "non_inferiority_margin": 0.0, "slice_metric_floor": 0.9},
    ],
)
def test_the_stated_direction_agrees_with_every_gate_verdict(seed: int, overrides: dict[str, Any]) -> None:
    """Whenever a gate decides on its observed value alone (no insufficient-data outcome), the direction the check
    states holds exactly when the gate passed: the direction read from the condition is the one the gate applies."""
    policy: Policy = EVAL_SPEC.policy.with_overrides(overrides) if overrides else EVAL_SPEC.policy
    frame = holdout_frame(n=700, seed=seed)
    ev = evaluate(
        frame,
        EVAL_SPEC,
        scored_by("s_cand"),
        scored_by("s_base"),
        scored_by("s_prod"),
        policy=policy,
        latency=replace(LATENCY, single_p99_ms=5.0 + 10 * seed),
    )
    checked = 0
    for gate in evaluation_gates(ev, policy.gates, policy.evaluation):
        direction = passes_when(gate)
        if direction is None or gate.observed is None or gate.evidence.get("outcome") == "insufficient_data":
            continue
        if gate.name == "latency_within_budget" and gate.threshold != policy.gates.max_latency_p99_ms_single:
            continue  # the batch is over: observed is the batch p99, stated against the batch budget
        assert isinstance(gate.observed, int | float)
        assert _holds(direction, float(gate.observed)) == gate.passed, (gate.name, direction, gate.observed)
        checked += 1
    assert checked >= 7


def test_check_result_evidence_tables_lead_with_the_verdict_and_keep_the_json(realistic: Evaluation) -> None:
    policy = REALISTIC_SPEC.policy
    gates = evaluation_gates(realistic, policy.gates, policy.evaluation)
    slices = check_result(_gate("slices_meet_floor", gates)).metadata
    gated = slices["gated_table"]
    names = [c.name for c in gated.schema.columns]
    assert names[:7] == ["slice_column", "value", "problems", "candidate", "production", "delta", "floor"]
    assert all(isinstance(r.data["problems"], str) for r in gated.records)  # a list of reasons, joined
    assert "≥ −policy.max_slice_regression" in str({c.name: c.description for c in gated.schema.columns}["delta"])
    for record in gated.records:
        assert record.data["candidate"] == float(f"{record.data['candidate']:.4g}")
    fairness = check_result(_gate("fairness_within_bounds", gates)).metadata
    attributes = fairness["attributes_table"]
    columns = [c.name for c in attributes.schema.columns]
    assert columns[:3] == ["attribute", "outcome", "problems"]
    assert "groups" not in columns  # nested records stay in the JSON evidence
    assert fairness["evidence"].value == dict(_gate("fairness_within_bounds", gates).evidence)
    assert fairness["evidence"].value["attributes"][0]["groups"]


# --------------------------------------------------------------------------------------------------
# The real thing: evaluations materialized by the lifecycle graph
# --------------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_materialized_evaluations_fit_the_budget_with_inline_plots(promoted_world) -> None:
    """The first evaluation (nothing in production) and a retrain's (compared with production), as materialized:
    their stored metadata is under the budget and each markdown value renders inline."""
    world, first = promoted_world
    second = world.land("synthetic_v002.csv", seed=2, start_id=10_000)
    selection = dg.AssetSelection.assets(world.graph.key("model_evaluation")).upstream()
    world.run(second, selection=selection)
    key = world.graph.key("model_evaluation")
    for version in (first, second):
        records = world.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[version]), limit=1
        ).records
        assert records, version
        materialization = records[0].asset_materialization
        assert materialization is not None
        metadata = dict(materialization.metadata)
        size = len(dg.serialize_value(metadata))
        assert size < METADATA_BUDGET_BYTES, (version, size)
        markdown = [v.value for v in metadata.values() if isinstance(v, dg.MarkdownMetadataValue)]
        assert len(markdown) == 2 and all(plots.markdown_chars(m) < plots.MARKDOWN_INLINE_CHARS for m in markdown)
        assert isinstance(metadata["comparison"], dg.TableMetadataValue)
    assert "diff_vs_production" in metadata and "production_roc_auc" in metadata
