"""Issue 15, item 5: the hostile input matrix, through the real assets of the synthetic model.

Each case lands one hostile file as a further data version of a promoted world (the synthetic model's first data
version, ``synthetic_v001.csv``, is in Production: ``conftest.promoted_world``) and runs the model's graph for it:
the whole graph, or, for the inputs the product accepts by design, the data stage (``raw_data`` and ``features``
with their gates), where "read as the clean file is" is decided. Byte-level cases (quotes, delimiter, encodings,
byte-order marks, line endings, empty and header-only files) are written as raw bytes; the others start from
``demo_data.synthetic.generate`` and its ``defects``.

Per case it asserts:

* the outcome the product promises (``docs/gates.md``, ``docs/dataset-spec.md``): the ``raw_data`` step fails with
  a ``DataFileError`` (file, rule and, where one is involved, the column in its message and ``Failure`` metadata),
  or blocking gates fail and the failed check's message names the file, the column and ``(rule: <gate>)``, or
  training refuses, or the input is accepted and reads exactly as the clean file does;
* 0 promotions: no model version registered for the hostile data version, the registry's versions, stage log and
  aliases unchanged, Production still version 1;
* version 1 unaffected: its stored values and latest materializations unchanged.

:func:`test_a_good_version_runs_after_hostile_ones` then lands hostile versions and a good one into one world:
the good one goes through every gate as usual. Every case is recorded for ``docs/reliability.md`` (section 5).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_assets.demo_data import synthetic
from mlops_assets.ml import features as features_core
from mlops_assets.ml import validation
from mlops_assets.ml.spec import load_spec, packaged_spec_path
from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets_tests import reliability
from mlops_assets_tests.support import model_graph
from mlops_assets_tests.worlds import ROWS, SYNTHETIC, World

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

SPEC = load_spec(packaged_spec_path("synthetic"))
#: Seed and first id of the hostile versions: a second version after v1 (ids 0..2499), clean but for its defect.
SEED, START = 2, ROWS
#: The data stage: what decides whether a file is read and accepted.
DATA_STAGE = ("raw_data", "features")

# Outcomes.
READ_FAILED = "raw_data step failed (DataFileError)"
GATE_FAILED = "blocking gate failed"
TRAINING_REFUSED = "candidate_model refused to train"
ACCEPTED = "accepted"


# --- Building hostile files ------------------------------------------------------------------------------------


def _frame(rows: int = ROWS, start_id: int = START, **defects: Any) -> pd.DataFrame:
    return synthetic.generate(rows, seed=SEED, start_id=start_id, **defects)


def _csv(frame: pd.DataFrame, newline: str = "\n") -> str:
    """The frame as CSV text, as ``write_frame_atomic`` writes it but with ``newline`` ending the rows."""
    return frame.to_csv(index=False, lineterminator=newline)


def _with_cells(frame: pd.DataFrame, column: str, cells: dict[int, object]) -> pd.DataFrame:
    """``frame`` with the cells ``{row: value}`` of ``column`` overwritten (the column becomes text as needed)."""
    out = frame.astype({column: object})
    for row, value in cells.items():
        out.loc[row, column] = value
    return out


def _with_line_edit(text: str, line: int, column: str, edit: Callable[[str], str]) -> str:
    """``text`` with the field ``column`` of physical line ``line`` (1-based, header = 1) rewritten by ``edit``."""
    lines = text.split("\n")
    fields = lines[line - 1].split(",")
    index = list(synthetic.COLUMNS).index(column)
    fields[index] = edit(fields[index])
    lines[line - 1] = ",".join(fields)
    return "\n".join(lines)


def clean_bytes() -> bytes:
    return _csv(_frame()).encode()


def _identical_rows() -> bytes:
    return _csv(pd.concat([_frame().iloc[[0]]] * ROWS, ignore_index=True)).encode()


def _identical_features() -> bytes:
    frame = _frame()
    same = pd.concat([frame.iloc[[0]]] * ROWS, ignore_index=True)
    same["customer_id"], same["event_time"] = frame["customer_id"], frame["event_time"]
    return _csv(same).encode()


def _single_class() -> bytes:
    return _csv(_frame().assign(churned="no")).encode()


@dataclass(frozen=True)
class Case:
    """One hostile input and what the product must do with it.

    Attributes:
        id: Scenario id (``reliability.record``) and pytest id.
        title: "input → expected outcome".
        content: The file's bytes.
        outcome: :data:`READ_FAILED`, :data:`GATE_FAILED`, :data:`TRAINING_REFUSED` or :data:`ACCEPTED`.
        rule: The rule that stops it (a ``DataFileError`` rule or a gate), or what accepts it.
        column: The column concerned (``None``: none is).
        failed: Every blocking check expected to fail (``GATE_FAILED``); the first is the one named by ``rule``.
        says: Further substrings the error message must hold.
        spec: Top-level keys to add to the packaged spec (a spec variant of the same model), or ``None``.
        accepted: For :data:`ACCEPTED`: what to compare the stored values with (``same_as_clean``,
            ``same_features_as_clean``, or a custom check's name).
    """

    id: str
    title: str
    content: Callable[[], bytes]
    outcome: str
    rule: str
    column: str | None = None
    failed: tuple[str, ...] = ()
    says: tuple[str, ...] = ()
    spec: dict[str, Any] | None = None
    accepted: str | None = None

    @property
    def file_name(self) -> str:
        return "hostile_" + self.id.replace(".", "_").replace("-", "_") + ".csv"


CASES: list[Case] = [
    # --- Bytes the CSV reader must refuse, naming the file, the rule and (found from the bytes) line and column.
    Case(
        "csv.quotes.unbalanced",
        "a region cell opens a quote that never closes → raw_data fails: parseable_csv, line 102, column region",
        lambda: _with_line_edit(_csv(_frame()), 102, "region", lambda v: '"' + v).encode(),
        READ_FAILED,
        "parseable_csv",
        "region",
        says=("line 102", "EOF inside string"),
    ),
    Case(
        "csv.quotes.spanning",
        "a quote opened at line 102 closes at line 112, gluing 11 rows into one region cell → schema_valid fails",
        lambda: _with_line_edit(
            _with_line_edit(_csv(_frame()), 102, "region", lambda v: '"' + v), 112, "region", lambda v: v + '"'
        ).encode(),
        GATE_FAILED,
        "schema_valid",
        "region",
        failed=("schema_valid",),
        says=("isin(",),
    ),
    Case(
        "csv.delimiter.semicolon",
        "';'-delimited file → raw_data fails: parseable_csv names the delimiter",
        lambda: _csv(_frame()).replace(",", ";").encode(),
        READ_FAILED,
        "parseable_csv",
        says=("';'-delimited", "comma-separated"),
    ),
    Case(
        "csv.encoding.latin1",
        "one region cell in Latin-1 ('nörth') → raw_data fails: parseable_csv, line 102, column region",
        lambda: _csv(_with_cells(_frame(), "region", {100: "nörth"})).encode("latin-1"),
        READ_FAILED,
        "parseable_csv",
        "region",
        says=("line 102", "UnicodeDecodeError", "0xf6"),
    ),
    Case(
        "csv.encoding.utf16",
        "the file in UTF-16 (with its byte-order mark) → raw_data fails: parseable_csv says UTF-16",
        lambda: _csv(_frame()).encode("utf-16"),
        READ_FAILED,
        "parseable_csv",
        says=("UTF-16", "must be UTF-8"),
    ),
    Case(
        "csv.bom.utf8",
        "UTF-8 byte-order mark → accepted by design: read exactly as the clean file",
        lambda: b"\xef\xbb\xbf" + clean_bytes(),
        ACCEPTED,
        "read as utf-8-sig",
        accepted="same_as_clean",
    ),
    Case(
        "csv.newline.crlf",
        "CRLF rows → accepted by design (RFC 4180, what write_frame_atomic writes): read exactly as the clean file",
        lambda: _csv(_frame(), "\r\n").encode(),
        ACCEPTED,
        "CRLF rows",
        accepted="same_as_clean",
    ),
    Case(
        "csv.newline.cr",
        "bare CR rows (classic Mac) → accepted by design: read exactly as the clean file",
        lambda: _csv(_frame(), "\r").encode(),
        ACCEPTED,
        "CR rows",
        accepted="same_as_clean",
    ),
    Case(
        "csv.empty",
        "0-byte file → raw_data fails: non_empty",
        lambda: b"",
        READ_FAILED,
        "non_empty",
        says=("file is empty",),
    ),
    Case(
        "csv.blank_lines",
        "only blank lines → raw_data fails: non_empty",
        lambda: b"\n\n\n",
        READ_FAILED,
        "non_empty",
        says=("no header row",),
    ),
    Case(
        "csv.header_only",
        "header and no rows → row_count_above_floor and volume_within_bounds fail",
        lambda: (",".join(synthetic.COLUMNS) + "\n").encode(),
        GATE_FAILED,
        "row_count_above_floor",
        failed=("row_count_above_floor", "volume_within_bounds"),
        says=("only 0 rows", "policy.min_rows"),
    ),
    # --- Columns.
    Case(
        "columns.missing",
        "column income dropped → schema_valid fails: missing column 'income'",
        lambda: _csv(_frame().drop(columns=["income"])).encode(),
        GATE_FAILED,
        "schema_valid",
        "income",
        failed=("schema_valid",),
        says=("missing column 'income'",),
    ),
    Case(
        "columns.missing_id",
        "id column customer_id dropped → schema_valid and ids_unique fail",
        lambda: _csv(_frame().drop(columns=["customer_id"])).encode(),
        GATE_FAILED,
        "ids_unique",
        "customer_id",
        failed=("ids_unique", "schema_valid"),
        says=("id column 'customer_id' is missing",),
    ),
    Case(
        "columns.extra",
        "an extra column 'notes' → accepted by design (listed as extra, never a model input): same features",
        lambda: _csv(_frame().assign(notes="call back")).encode(),
        ACCEPTED,
        "schema_valid strict=False",
        "notes",
        accepted="same_features_as_clean",
    ),
    Case(
        "columns.renamed",
        "income renamed salary → schema_valid fails naming 'income' missing and 'salary' not in the spec",
        lambda: _csv(_frame().rename(columns={"income": "salary"})).encode(),
        GATE_FAILED,
        "schema_valid",
        "income",
        failed=("schema_valid",),
        says=("missing column 'income'", "columns not in the spec: 'salary'"),
    ),
    Case(
        "columns.space_padded",
        "header ' income ' → schema_valid fails naming the near miss",
        lambda: _csv(_frame().rename(columns={"income": " income "})).encode(),
        GATE_FAILED,
        "schema_valid",
        "income",
        failed=("schema_valid",),
        says=("the file has ' income '", "surrounding whitespace"),
    ),
    Case(
        "columns.case_changed",
        "header 'Income' → schema_valid fails naming the near miss",
        lambda: _csv(_frame().rename(columns={"income": "Income"})).encode(),
        GATE_FAILED,
        "schema_valid",
        "income",
        failed=("schema_valid",),
        says=("the file has 'Income'", "differs only in case"),
    ),
    # --- Types.
    Case(
        "dtype.text_in_int",
        "words in int column age → schema_valid fails: coerce_dtype('int64')",
        lambda: _csv(_frame(wrong_type_column="age")).encode(),
        GATE_FAILED,
        "schema_valid",
        "age",
        failed=("schema_valid",),
        says=("coerce_dtype('int64')",),
    ),
    Case(
        "dtype.fraction_in_int",
        "44.5 in int column age → schema_valid fails: coerce_dtype('int64'), never truncated",
        lambda: _csv(_with_cells(_frame(), "age", {3: "44.5"})).encode(),
        GATE_FAILED,
        "schema_valid",
        "age",
        failed=("schema_valid",),
        says=("coerce_dtype('int64') x1",),
    ),
    Case(
        "dtype.text_in_datetime",
        "words in datetime column event_time → schema_valid fails: coerce_dtype('datetime64[ns, UTC]')",
        lambda: _csv(_frame(wrong_type_column="event_time")).encode(),
        GATE_FAILED,
        "schema_valid",
        "event_time",
        failed=("schema_valid",),
        says=("coerce_dtype('datetime64[ns, UTC]')",),
    ),
    # --- Missing values.
    Case(
        "nan.100",
        "income (not nullable) 100 % missing → schema_valid fails: not_nullable x2500",
        lambda: _csv(_frame(null_share=1.0)).encode(),
        GATE_FAILED,
        "schema_valid",
        "income",
        failed=("schema_valid",),
        says=("not_nullable x2500",),
    ),
    Case(
        "nan.30",
        "income (not nullable) 30 % missing → schema_valid fails: not_nullable x750",
        lambda: _csv(_frame(null_share=0.3)).encode(),
        GATE_FAILED,
        "schema_valid",
        "income",
        failed=("schema_valid",),
        says=("not_nullable x750",),
    ),
    Case(
        "nan.100_nullable",
        "balance (nullable) 100 % missing → accepted by design; the drift report's data-quality rule flags it",
        lambda: _csv(_frame().assign(balance=np.nan)).encode(),
        ACCEPTED,
        "nullable; no_drift: missing values rose",
        "balance",
        accepted="null_rise_flagged",
    ),
    # --- Volume.
    Case(
        "volume.10x",
        "25,000 rows after 2,500 → volume_within_bounds fails (ratio 10)",
        lambda: _csv(_frame(rows=10 * ROWS)).encode(),
        GATE_FAILED,
        "volume_within_bounds",
        failed=("volume_within_bounds",),
        says=("25000 rows", "10x the 2500 rows", "policy.volume_ratio_bounds"),
    ),
    Case(
        "volume.0.1x",
        "250 rows after 2,500 → volume_within_bounds fails (ratio 0.1)",
        lambda: _csv(_frame(rows=ROWS // 10)).encode(),
        GATE_FAILED,
        "volume_within_bounds",
        failed=("volume_within_bounds",),
        says=("250 rows", "0.1x the 2500 rows", "policy.volume_ratio_bounds"),
    ),
    # --- Labels.
    Case(
        "label.out_of_domain",
        "label 'maybe' in 75 rows → label_in_domain fails",
        lambda: _csv(_frame(label_out_of_domain=True)).encode(),
        GATE_FAILED,
        "label_in_domain",
        "churned",
        failed=("label_in_domain",),
        says=("'maybe' x75",),
    ),
    Case(
        "label.missing",
        "3 empty label cells → label_in_domain and schema_valid (not_nullable) fail",
        lambda: _csv(_with_cells(_frame(), "churned", {5: "", 6: "", 7: ""})).encode(),
        GATE_FAILED,
        "label_in_domain",
        "churned",
        failed=("label_in_domain", "schema_valid"),
        says=("3 missing value(s)",),
    ),
    Case(
        "label.wrong_encoding",
        "labels written 1/0 instead of yes/no → label_in_domain fails naming both values",
        lambda: _csv(_frame().assign(churned=lambda f: (f["churned"] == "yes").astype(int))).encode(),
        GATE_FAILED,
        "label_in_domain",
        "churned",
        failed=("label_in_domain",),
        says=("2500 value(s) outside ['no', 'yes']", "'0' x", "'1' x"),
    ),
    Case(
        "label.single_class",
        "every label 'no' → data gates pass (a one-class batch is valid to score); training refuses: single class",
        _single_class,
        TRAINING_REFUSED,
        "both classes are needed",
        "churned",
        says=("hold a single class",),
    ),
    # --- Ids.
    Case(
        "ids.duplicate",
        "5 ids repeated → ids_unique and schema_valid (field_uniqueness) fail",
        lambda: _csv(_frame(duplicate_ids=5)).encode(),
        GATE_FAILED,
        "ids_unique",
        "customer_id",
        failed=("ids_unique", "schema_valid"),
        says=("5 id(s) repeated",),
    ),
    Case(
        "ids.reused.unique_across_versions",
        "v1's ids again, spec with id_unique_across_versions → ids_unique_across_versions fails",
        lambda: _csv(_frame(start_id=0)).encode(),
        GATE_FAILED,
        "ids_unique_across_versions",
        "customer_id",
        failed=("ids_unique_across_versions",),
        says=("2500 id(s) already used",),
        spec={"id_unique_across_versions": True},
    ),
    Case(
        "ids.reused.default_spec",
        "v1's ids again, packaged spec (ids may repeat across versions) → accepted by design, recorded",
        lambda: _csv(_frame(start_id=0)).encode(),
        ACCEPTED,
        "ids_unique_across_versions not checked",
        "customer_id",
        accepted="ids_not_checked",
    ),
    # --- Categories.
    Case(
        "category.unseen",
        "region 'central' (not in the spec's categories) in 75 rows → schema_valid fails: isin",
        lambda: _csv(_frame(new_category=True)).encode(),
        GATE_FAILED,
        "schema_valid",
        "region",
        failed=("schema_valid",),
        says=("isin(['north', 'south', 'east', 'west']) x75",),
    ),
    # --- Non-finite and extreme numbers.
    Case(
        "number.inf.unbounded_float",
        "balance +inf and -inf (no bounds) → schema_valid fails: finite",
        lambda: _csv(_with_cells(_frame(), "balance", {5: "inf", 6: "-inf"})).encode(),
        GATE_FAILED,
        "schema_valid",
        "balance",
        failed=("schema_valid",),
        says=("finite: ±inf is not a value x2",),
    ),
    Case(
        "number.inf.bounded_float",
        "income +inf (min 0, no max) → schema_valid fails: finite",
        lambda: _csv(_with_cells(_frame(), "income", {5: "inf"})).encode(),
        GATE_FAILED,
        "schema_valid",
        "income",
        failed=("schema_valid",),
        says=("finite: ±inf is not a value x1",),
    ),
    Case(
        "number.inf.int",
        "age inf → schema_valid fails: coerce_dtype('int64')",
        lambda: _csv(_with_cells(_frame(), "age", {5: "inf", 6: "-inf"})).encode(),
        GATE_FAILED,
        "schema_valid",
        "age",
        failed=("schema_valid",),
        says=("coerce_dtype('int64') x2",),
    ),
    Case(
        "number.1e12.bounded",
        "age 1e12 and income -1e12 → schema_valid fails on both ranges",
        lambda: _csv(_with_cells(_with_cells(_frame(), "age", {5: "1e12"}), "income", {6: "-1e12"})).encode(),
        GATE_FAILED,
        "schema_valid",
        "age",
        failed=("schema_valid",),
        says=("in_range(18, 100) x1", "income: greater_than_or_equal_to(0.0) x1"),
    ),
    Case(
        "number.1e12.unbounded",
        "balance +1e12 and -1e12 (spec declares no bounds) → accepted by design, kept exactly",
        lambda: _csv(_with_cells(_frame(), "balance", {5: "1e12", 6: "-1e12"})).encode(),
        ACCEPTED,
        "no bounds declared",
        "balance",
        accepted="extremes_kept",
    ),
    # --- Degenerate rows.
    Case(
        "rows.identical",
        "one row repeated 2,500 times → ids_unique and schema_valid (field_uniqueness) fail",
        _identical_rows,
        GATE_FAILED,
        "ids_unique",
        "customer_id",
        failed=("ids_unique", "schema_valid"),
        says=("2499 extra row(s)",),
    ),
    Case(
        "rows.identical_but_ids",
        "identical rows but for id and time → data gates pass; training refuses: single class",
        _identical_features,
        TRAINING_REFUSED,
        "both classes are needed",
        "churned",
        says=("hold a single class",),
    ),
]


# --- Observing a world ---------------------------------------------------------------------------------------


def _spec_variant(tmp_path: Path, keys: dict[str, Any]) -> str:
    """The packaged synthetic spec with extra top-level keys (the same model, named synthetic)."""
    data = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    data.update(keys)
    path = tmp_path / "synthetic_variant.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def land_bytes(world: World, name: str, content: bytes) -> str:
    """Write ``content`` as file ``name`` into the landing folder, add its data version and return its key."""
    path = world.landing / name
    path.write_bytes(content)
    key = version_key(path.name, file_digest(path))
    world.instance.add_dynamic_partitions(world.graph.partitions_name, [key])
    return key


def version_state(world: World, key: str, shared: bool = True) -> dict[str, Any]:
    """What must not change for data version ``key``: its stored values and its latest materializations, and with
    ``shared`` the stored values of the model's unpartitioned assets (deployments, the rollout state)."""
    assets = world.data / "assets"
    stems = (key, "__unpartitioned__") if shared else (key,)
    files = {
        str(p.relative_to(assets)): file_digest(p) for p in sorted(assets.rglob("*")) if p.is_file() and p.stem in stems
    }
    latest = {}
    for asset in world.graph.assets:
        for asset_key in asset.keys:
            records = world.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[key]), limit=1
            ).records
            latest[asset_key.to_user_string()] = records[0].storage_id if records else None
    return {"files": files, "materializations": latest}


def registry_state(world: World) -> dict[str, Any]:
    """The synthetic model's registry rows that a promotion or any stage change would touch."""
    registry = world.registry()
    try:
        production = registry.production_version("synthetic")
        return {
            "production": (production.version, production.data_versions) if production else None,
            "versions": [(v.version, str(v.stage), v.data_versions) for v in registry.list_versions("synthetic")],
            "transitions": [(t.id, t.version, t.from_stage, t.to_stage) for t in registry.transitions("synthetic")],
            "aliases": registry.aliases("synthetic"),
        }
    finally:
        registry.engine.dispose()


def _step_failures(result: dg.ExecuteInProcessResult) -> dict[str, dg.DagsterEvent]:
    return {e.step_key: e for e in result.all_events if e.is_step_failure and e.step_key}


def _error_text(event: dg.DagsterEvent) -> str:
    """The failure's message with every cause's (a step's own exception sits under Dagster's wrapper)."""
    error, parts = event.step_failure_data.error, []
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return "\n".join(parts)


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.path[-1] for e in result.get_asset_materialization_events() if e.asset_key}


def _clean_typed(tmp_path: Path) -> pd.DataFrame:
    """The clean twin of the hostile files, read and typed by the product's reader (outside the landing zone)."""
    path = tmp_path / "clean_twin.csv"
    path.write_bytes(clean_bytes())
    typed = validation.coerce_to_schema(validation.read_data_file(path, SPEC), SPEC)
    assert typed is not None
    return typed


def _without_attrs(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out.attrs = {}
    return out


# --- The matrix ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, promoted_world: tuple[World, str], tmp_path: Path) -> None:
    world, v1 = promoted_world
    if case.spec is not None:
        world = World(root=world.root, instance=world.instance, graph=model_graph(_spec_variant(tmp_path, case.spec)))
        assert world.graph.model.name == SYNTHETIC.model.name
    v1_before, registry_before = version_state(world, v1), registry_state(world)
    assert registry_before["production"] == (1, (v1,))

    key = land_bytes(world, case.file_name, case.content())
    # Accepted inputs run the data stage, which decides acceptance (nothing trains from it here); every other case
    # runs the model's whole graph, so whatever could promote from it had the chance to.
    selection = world.graph.keys(*DATA_STAGE) if case.outcome == ACCEPTED else None
    if case.accepted == "null_rise_flagged":
        selection = world.graph.keys(*DATA_STAGE, "drift_report")
    result = world.run(key, selection=selection)
    failures, evaluations = _step_failures(result), _evaluations(result)
    failed_checks = sorted(name for name, e in evaluations.items() if not e.passed)
    figures: dict[str, Any] = {"outcome": case.outcome, "rule": case.rule, "column": case.column or "-"}

    if case.outcome == READ_FAILED:
        assert not result.success
        step = world.graph.name("raw_data")
        assert set(failures) == {step}, set(failures)
        message = _error_text(failures[step])
        metadata = {k: v.value for k, v in failures[step].step_failure_data.user_failure_data.metadata.items()}
        assert metadata["file"].endswith("/" + case.file_name)
        assert (metadata["rule"], metadata["column"]) == (case.rule, case.column or "-")
        assert case.file_name in message and f"(rule: {case.rule})" in message
        if case.column:
            assert f"column '{case.column}'" in message
        assert not result.get_asset_materialization_events()  # nothing stored, nothing downstream ran
        figures["error"] = _deterministic(message, world)
    elif case.outcome == GATE_FAILED:
        assert not result.success
        assert failed_checks == sorted(case.failed)
        gate = evaluations[case.failed[0]]
        message = gate.description or ""
        assert gate.metadata["message"].value == message
        assert case.file_name in message and f"rule: {case.rule}" in message, message
        if case.column:
            assert f"'{case.column}'" in message or f"{case.column}:" in message, message
        assert not {"candidate_model", "model_evaluation", "deployment_decision"} & _materialized(result)
        figures["failed_checks"] = failed_checks
        figures["error"] = message
    elif case.outcome == TRAINING_REFUSED:
        assert not result.success
        assert all(evaluations[name].passed for name in ("schema_valid", "label_in_domain", "features_finite"))
        step = world.graph.name("candidate_model")
        assert step in failures, set(failures)
        message = _error_text(failures[step])
        assert f"label column '{case.column}'" in message and case.rule in message, message
        assert not {"candidate_model", "model_evaluation", "deployment_decision"} & _materialized(result)
        # candidate_model turns the training core's refusal into a failure naming the file(s) and the rule.
        assert case.file_name in message and "rule: trainable" in message, message
        figures["error"] = _first_line_with(message, "cannot train")
    else:
        assert result.success, failed_checks
        data_gates = {k.name for k in world.graph.model.data_gates}
        assert data_gates <= set(evaluations) and not data_gates & set(failed_checks)
        figures["checks_passed"] = sorted(data_gates)
        _assert_accepted(case, world, result, tmp_path, figures)
    for text in case.says:
        assert text in figures.get("error", ""), (text, figures.get("error"))

    # 0 promotions: nothing registered from the hostile version; versions, stage log and aliases as before.
    registry_after = registry_state(world)
    registry = world.registry()
    try:
        assert registry.versions_for_data_version("synthetic", key) == []
    finally:
        registry.engine.dispose()
    assert registry_after == registry_before
    assert registry_after["production"] == (1, (v1,))
    # Version 1 is unaffected: its stored values and latest materializations are the ones it had.
    assert version_state(world, v1) == v1_before
    reliability.record(5, case.id, case.title, promotions=0, production="v1", v1_unchanged=True, **figures)


def _assert_accepted(
    case: Case, world: World, result: dg.ExecuteInProcessResult, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """The accepted-by-design case reads as the product promises."""
    raw = _without_attrs(result.asset_value(world.graph.key("raw_data")))
    clean = _clean_typed(tmp_path)
    if case.accepted == "same_as_clean":
        pd.testing.assert_frame_equal(raw, clean)
        figures["rows"] = len(raw)
        figures["same_values_as_clean"] = True
    elif case.accepted == "same_features_as_clean":
        assert list(raw.columns) == [*clean.columns, "notes"]
        pd.testing.assert_frame_equal(raw.drop(columns=["notes"]), clean)
        schema = _evaluations(result)["schema_valid"]
        assert schema.metadata["evidence"].value["extra_columns"] == ["notes"]
        assert "extra columns kept but not in the spec: notes" in (schema.description or "")
        stored = _without_attrs(result.asset_value(world.graph.key("features")))
        assert "notes" not in stored.columns
        pd.testing.assert_frame_equal(stored, features_core.build_features(clean, SPEC))
        figures["same_features_as_clean"] = True
    elif case.accepted == "null_rise_flagged":
        assert raw["balance"].isna().all()
        no_drift = _evaluations(result)["no_drift"]
        assert not no_drift.passed and no_drift.severity == dg.AssetCheckSeverity.WARN
        assert "missing values rose: balance" in (no_drift.description or "") and "-> 100.0%" in no_drift.description
        figures["flagged_by"] = "no_drift (warning): " + _first_line_with(no_drift.description or "", "missing")
    elif case.accepted == "extremes_kept":
        assert (raw.loc[5, "balance"], raw.loc[6, "balance"]) == (1e12, -1e12)
        pd.testing.assert_frame_equal(raw.drop(index=[5, 6]), clean.drop(index=[5, 6]))
        figures["kept"] = "balance +1e12, -1e12 exactly"
    elif case.accepted == "ids_not_checked":
        gate = _evaluations(result)["ids_unique_across_versions"]
        assert gate.passed and "does not set id_unique_across_versions" in (gate.description or "")
        figures["recorded"] = "ids_unique_across_versions: not checked (spec allows repeats)"
    else:  # pragma: no cover - a case without its check
        raise AssertionError(f"no acceptance check {case.accepted!r}")


def _deterministic(message: str, world: World) -> str:
    """The message's first line without Dagster's exception class and the world's temporary folder (the page must
    not depend on either)."""
    first = message.replace(str(world.landing) + "/", "").split("\n")[0].strip()
    return first.split(": ", 1)[1] if first.startswith("dagster.") else first


def _first_line_with(text: str, needle: str) -> str:
    return next((line.strip() for line in text.splitlines() if needle in line), text.strip().splitlines()[0])


# --- Afterwards ----------------------------------------------------------------------------------------------


def test_a_good_version_runs_after_hostile_ones(promoted_world: tuple[World, str]) -> None:
    """Hostile versions of each kind (unreadable, failing a file gate, failing the volume gate, refused by training)
    leave the world as it was: the next good version is validated against v1, trains, passes every gate and starts
    its rollout like any new version; Production stays v1 throughout."""
    world, v1 = promoted_world
    # The good version's rollout legitimately rewrites the unpartitioned deployment assets: v1's own values only.
    v1_before = version_state(world, v1, shared=False)
    by_id = {c.id: c for c in CASES}
    # Landing order matters: the volume gate walks back from the newest earlier version to the first accepted one.
    order = ("label.single_class", "csv.encoding.latin1", "label.out_of_domain", "volume.10x")
    hostile = [by_id[i] for i in order]
    keys = []
    for case in hostile:
        key = land_bytes(world, case.file_name, case.content())
        assert not world.run(key).success, case.id
        keys.append(key)
    assert registry_state(world)["production"] == (1, (v1,))

    good = world.land("synthetic_v005.csv", seed=4, start_id=3 * ROWS)
    result = world.run(good)
    evaluations = _evaluations(result)
    assert result.success, sorted(n for n, e in evaluations.items() if not e.passed)
    assert all(e.passed for e in evaluations.values())
    volume = evaluations["volume_within_bounds"].metadata["evidence"].value
    # The single-class version passed its data gates (only training refused it), so it is the previous accepted
    # version; the three after it were passed over, each with its reason (the unreadable one has no gate results).
    assert volume["previous_version"] == keys[0]
    skipped = {s["data_version"]: s["reason"] for s in volume["skipped"]}
    assert set(skipped) == set(keys[1:])
    assert "missing" in skipped[keys[1]] and "label_in_domain failed" in skipped[keys[2]]
    assert "volume_within_bounds failed" in skipped[keys[3]]
    decision = result.asset_value(world.graph.key("deployment_decision"))
    assert decision["outcome"] == "rollout_started"
    registry = world.registry()
    try:
        (candidate,) = registry.versions_for_data_version("synthetic", good)
        assert candidate.stage == "Staging"
        production = registry.production_version("synthetic")
        assert production is not None and (production.version, production.data_versions) == (1, (v1,))
        assert all(registry.versions_for_data_version("synthetic", k) == [] for k in keys)
    finally:
        registry.engine.dispose()
    assert version_state(world, v1, shared=False) == v1_before
    reliability.record(
        5,
        "then.good_version",
        "4 hostile versions, then a clean one → the clean one passes every gate and starts its rollout",
        hostile_versions=len(keys),
        good_version_outcome=decision["outcome"],
        volume_compared_with="the single-class version (its data gates passed)",
        skipped_versions=len(skipped),
        promotions=0,
        production="v1",
        v1_unchanged=True,
    )


def test_every_case_has_a_unique_id_and_file() -> None:
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.file_name for c in CASES}) == len(CASES)
    assert all(re.fullmatch(r"[a-z0-9_.-]+", c.id) for c in CASES)


# --- Where the reader's errors point --------------------------------------------------------------------------


def _read_error(tmp_path: Path, content: bytes) -> validation.DataFileError:
    path = tmp_path / "located.csv"
    path.write_bytes(content)
    with pytest.raises(validation.DataFileError) as caught:
        validation.read_data_file(path, SPEC)
    return caught.value


def test_an_unclosed_quote_is_located_by_physical_line_after_a_quoted_field_spanning_lines(tmp_path: Path) -> None:
    text = _csv(_frame(rows=20))
    # Line 4 holds a legal quoted region value spanning lines 4-5; then physical line 11's plan opens a quote for
    # good. The C tokenizer counts records ("starting at row 9"), which would point at line 10.
    text = _with_line_edit(text, 4, "region", lambda v: f'"{v}\nstill {v}"')
    text = _with_line_edit(text, 11, "plan", lambda v: '"' + v)
    error = _read_error(tmp_path, text.encode())
    assert (error.rule, error.column) == ("parseable_csv", "plan")
    assert "at line 11, column 'plan'" in str(error) and "located.csv" in str(error)
    assert "starting at row 9" in str(error)


def test_an_undecodable_byte_in_the_header_is_located_in_the_header(tmp_path: Path) -> None:
    error = _read_error(tmp_path, _csv(_frame(rows=5)).replace("income", "revenu\xe9", 1).encode("latin-1"))
    assert error.rule == "parseable_csv" and error.column is None
    assert "at line 1 (the header)" in str(error)


@pytest.mark.parametrize("delimiter", [";", "\t", "|"], ids=["semicolon", "tab", "pipe"])
def test_a_file_written_with_another_delimiter_is_named_as_such(tmp_path: Path, delimiter: str) -> None:
    error = _read_error(tmp_path, _csv(_frame(rows=5)).replace(",", delimiter).encode())
    assert error.rule == "parseable_csv"
    assert f"the file is {delimiter!r}-delimited" in str(error) and "comma-separated" in str(error)
