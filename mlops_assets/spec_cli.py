"""``mlops-spec``: draft a dataset spec from sample files, and check data files against a spec.

::

    mlops-spec infer FILE... [--label COL] [--positive VALUE] [--id COL] [--order COL] [--name NAME]
                             [--margin FRACTION] [-o OUT] [--force]
    mlops-spec check SPEC FILE... [--max-values N]

``infer`` writes the spec (YAML with a comment on every inferred choice) to ``OUT`` or standard output, then checks
the sample files against it. ``check`` runs the product's data gates (those of ``raw_data`` and ``features``) on the
files, in the order given, as successive data versions, and prints every failure case: file, gate, column, rule,
how many cells fail and the failing values with their rows. The logic is in :mod:`mlops_assets.ml.spec_infer`.

Exit codes: 0 every file passes; 1 a file fails a gate (``infer``: its spec does not pass its own samples, which
would be a bug); 2 a usage error, a spec that does not load, or sample files ``infer`` cannot use.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from mlops_assets.ml.spec import SpecError, load_spec
from mlops_assets.ml.spec_infer import (
    DEFAULT_MARGIN,
    CheckReport,
    FailureCase,
    InferError,
    InferOptions,
    check_files,
    infer_spec,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Distinct failing values listed per failure case unless ``--max-values`` says otherwise (0: all).
DEFAULT_MAX_VALUES = 10


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops-spec",
        description="Draft a dataset spec from sample data files, and check data files against a spec.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{infer,check}")
    infer = commands.add_parser(
        "infer",
        help="write a dataset spec inferred from sample CSV/Parquet files",
        description=(
            "Write a dataset spec (YAML) inferred from sample CSV/Parquet files, with a comment on every inferred "
            "choice, then check the samples against it. Give the files in data-version order."
        ),
    )
    infer.add_argument("files", nargs="+", metavar="FILE", help="sample data files (.csv, .parquet, .pq)")
    infer.add_argument(
        "--label", help="the label column (default: the binary column named label/target/y/class/outcome)"
    )
    infer.add_argument(
        "--positive",
        help="the positive class as written in the files (default: the greater number, true, a value reading as "
        "positive such as yes, else the rarer class)",
    )
    infer.add_argument(
        "--id",
        dest="id_column",
        help="the id column (default: the column named like an id that is unique in every file)",
    )
    infer.add_argument("--order", dest="order_column", help="the order/time column (default: the only datetime column)")
    infer.add_argument("--name", help="the data set's and model's name (default: from the file names)")
    infer.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN,
        help=f"fraction of each numeric range's span added on each side (default {DEFAULT_MARGIN}; 0: as observed)",
    )
    infer.add_argument("-o", "--output", help="write the spec here (default: standard output)")
    infer.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    check = commands.add_parser(
        "check",
        help="check data files against a spec with the product's data gates",
        description=(
            "Run the data gates of raw_data and features on the files, in the order given, as successive data "
            "versions of the spec, and print every failure case."
        ),
    )
    check.add_argument("spec", metavar="SPEC", help="the dataset spec: a YAML file or a packaged spec name")
    check.add_argument("files", nargs="+", metavar="FILE", help="data files (.csv, .parquet, .pq), oldest first")
    check.add_argument(
        "--max-values",
        type=int,
        default=DEFAULT_MAX_VALUES,
        help=f"distinct failing values listed per failure case (default {DEFAULT_MAX_VALUES}; 0: all)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mlops-spec``; returns the exit code (0 ok, 1 failures, 2 usage or unreadable spec)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "infer":
        return _infer(args, sys.stdout, sys.stderr)
    return _check(args, sys.stdout, sys.stderr)


def _say(stream: TextIO, text: str = "") -> None:
    print(text, file=stream, flush=True)


def _infer(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    target = Path(args.output) if args.output else None
    if target is not None and target.exists() and not args.force:
        _say(err, f"mlops-spec infer: {target} exists; pass --force to overwrite it")
        return EXIT_USAGE
    options = InferOptions(
        label=args.label,
        positive=args.positive,
        id_column=args.id_column,
        order_column=args.order_column,
        name=args.name,
        margin=args.margin,
    )
    try:
        inferred = infer_spec(args.files, options)
    except InferError as exc:
        _say(err, f"mlops-spec infer: {exc}")
        return EXIT_USAGE
    text = inferred.to_yaml()
    if target is None:
        out.write(text)
        out.flush()
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    spec = inferred.spec(str(target or "<stdout>"))
    data = inferred.data
    order = f"order {data['order_column']}" if "order_column" in data else "no order column"
    _say(
        err,
        f"mlops-spec infer: wrote {target or 'the spec to standard output'}: {spec.name}, {len(spec.columns)} columns, "
        f"label {spec.label.column} (positive {spec.label.positive!r}), id {spec.id_column}, {order}, "
        f"{len(spec.features)} features",
    )
    report = check_files(spec, args.files)
    if report.passed:
        _say(err, f"  it passes every data gate on its {len(report.files)} sample file(s); review its comments, then")
        _say(err, f"  check new files with: mlops-spec check {target or 'SPEC'} FILE...")
        return EXIT_OK
    _say(err, "  but the samples fail it (please report this):")
    _print_report(report, DEFAULT_MAX_VALUES, err)
    return EXIT_FAILED


def _check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.max_values < 0:
        _say(err, "mlops-spec check: --max-values must be >= 0")
        return EXIT_USAGE
    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        _say(err, f"mlops-spec check: the spec does not load: {exc}")
        return EXIT_USAGE
    report = check_files(spec, args.files)
    _print_report(report, args.max_values, out)
    return EXIT_OK if report.passed else EXIT_FAILED


def _value(value: Any) -> str:
    return "<missing>" if value is None else repr(value)


def _values(case: FailureCase, max_values: int) -> str:
    shown = case.values if max_values == 0 else case.values[:max_values]
    parts = []
    for value, count, rows in shown:
        text = _value(value) + (f" x{count}" if count > 1 else "")
        if rows:
            more = ", ..." if count > len(rows) else ""
            text += f" (row{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows))}{more})"
        parts.append(text)
    hidden = len(case.values) - len(shown)
    if hidden:
        parts.append(f"... {hidden} more distinct value(s) (--max-values 0 lists all)")
    elif not case.listed_all:
        parts.append("... (the gate's evidence lists no more)")
    return ": " + "; ".join(parts) if parts else ""


def _failure_line(case: FailureCase, max_values: int) -> str:
    if case.gate == "raw_data":  # the file cannot be read at all
        return f"  raw_data | file | {case.rule} | {case.message}"
    where = f"column {case.column!r}" if case.column is not None else "file"
    line = f"  {case.gate} | {where} | {case.rule} | {case.count} failing{_values(case, max_values)}"
    if not case.values and case.column is None and case.message:
        line += f"\n      {case.message}"
    return line


def _print_report(report: CheckReport, max_values: int, out: TextIO) -> None:
    spec = report.spec
    _say(out, f"mlops-spec check: spec {spec.source} (model {spec.name}), {len(report.files)} file(s), oldest first")
    for checked in report.files:
        if checked.error is not None:
            _say(out, f"FAIL {checked.file}: cannot be read")
        else:
            failed = [g.name for g in checked.gates if not g.passed]
            verdict = (
                f"all {len(checked.gates)} data gates passed"
                if not failed
                else f"{len(failed)} of {len(checked.gates)} data gates failed ({', '.join(failed)})"
            )
            if failed and not any(g.name.startswith("features") for g in checked.gates):
                verdict += "; the features gates run once the file gates pass"
            _say(out, f"{'FAIL' if failed else 'PASS'} {checked.file}: {checked.rows} rows, {verdict}")
        for case in checked.failures:
            _say(out, _failure_line(case, max_values))
        if checked.extra_columns:
            _say(out, f"  note: columns not in the spec (kept, not checked): {', '.join(checked.extra_columns)}")
    bad = [f for f in report.files if not f.passed]
    if bad:
        _say(
            out,
            f"Result: {len(bad)} of {len(report.files)} file(s) failed, {len(report.failures)} failure case(s); "
            "the rules: docs/gates.md",
        )
    else:
        _say(out, f"Result: all {len(report.files)} file(s) passed every data gate")


if __name__ == "__main__":
    sys.exit(main())
