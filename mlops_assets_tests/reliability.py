"""The reliability record: what each fault-injection test observed, and ``docs/reliability.md`` built from it.

A fault-injection test calls :func:`record` once it has checked its scenario, with the figures it observed
(runs and their statuses, materializations, registry rows, promotions, ...). Each call writes one JSON file under
``build/reliability/`` (xdist workers write side by side; the folder is emptied when a test session starts).
After the test run, ``python -m mlops_assets_tests.reliability`` renders every record into
``docs/reliability.md``; CI then fails when the page differs from the committed one (``git diff --exit-code``),
so the page stays what the tests observed. Figures must therefore be counts and outcomes, never timings.
"""

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: Where the records of one test session go.
RECORDS = ROOT / "build" / "reliability"
#: The generated page.
PAGE = ROOT / "docs" / "reliability.md"

#: The sections of the page (issue 15's items), by number.
SECTIONS: dict[int, str] = {
    1: "Crash points: a run process killed at a named point",
    2: "Concurrency: two runs of one data version, promotions at once",
    3: "PostgreSQL faults: restarts and outages of the database under the daemon",
    4: "Hung and dead runs",
    5: "Hostile input",
}


#: What the fault-injection suite found beyond Dagster's own guarantees, and how the product handles it.
KNOWN_GAPS: list[str] = [
    "## Found by these tests: gaps in Dagster's guarantees and how the product closes them",
    "",
    "- **Dagster leaves a run STARTED when nobody sees its worker die** (the code server's check of dead run",
    "  workers stops for good after it fails to reach the database; a killed `dg launch` process has no code server",
    "  at all), and `DefaultRunLauncher` has no health check for run monitoring. The product closes this on one",
    "  host: `<model>__dead_run_sensor` marks such a run FAILURE after two ticks that find its process gone (section",
    "  3, the outage outlasting the run worker; section 4, the unwatched process), so run retries re-run it. The",
    "  sensor reads `/proc` (Linux) and acts only with the local run launcher.",
    "- **A landing tick lost between adding its partitions and creating its runs** (Dagster's sensor daemon adds",
    "  partitions first and stores the cursor only when the tick completes). The landing sensor requests the run of",
    "  a registered version whose file is missing from its stored cursor, whose raw data was never materialized and",
    "  that no landing run names, under the lost tick's run key (`test_landing_sensor.py::",
    "  test_a_version_registered_by_a_lost_tick_gets_its_run`); the moment itself, inside the daemon, is not",
    "  reproduced.",
    "",
]


def _current_test() -> str:
    """The running test's node id (``file::name[param]``), from pytest's ``PYTEST_CURRENT_TEST``."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    return current.rsplit(" ", 1)[0] if current else "unknown"


def record(section: int, scenario: str, title: str, **figures: Any) -> None:
    """Record that scenario ``scenario`` of ``section`` was exercised and what was observed.

    Args:
        section: A key of :data:`SECTIONS`.
        scenario: A short stable id, unique within the section (``kill.registered``, ``csv.bom``); it orders
            the rows.
        title: One line: the fault and the expected outcome.
        **figures: Observed counts and outcomes (``runs=2``, ``registry_rows=1``, ``error="... column 'x' ..."``);
            JSON-serialisable and deterministic — never a timing.

    Raises:
        ValueError: unknown section, or a scenario id that is not ``[a-z0-9_.-]+``.
    """
    if section not in SECTIONS:
        raise ValueError(f"unknown reliability section {section}; known: {sorted(SECTIONS)}")
    if not re.fullmatch(r"[a-z0-9_.-]+", scenario):
        raise ValueError(f"scenario id {scenario!r} must match [a-z0-9_.-]+")
    RECORDS.mkdir(parents=True, exist_ok=True)
    payload = {"section": section, "scenario": scenario, "title": title, "test": _current_test(), "figures": figures}
    path = RECORDS / f"{section:02d}-{scenario}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, sort_keys=True, default=str))
    os.replace(tmp, path)


def clear() -> None:
    """Remove the records of an earlier session."""
    if RECORDS.exists():
        for path in RECORDS.glob("*.json"):
            path.unlink()


def load() -> list[dict[str, Any]]:
    """Every record of the session, ordered by section and scenario id."""
    records = [json.loads(p.read_text()) for p in sorted(RECORDS.glob("*.json"))] if RECORDS.exists() else []
    return sorted(records, key=lambda r: (r["section"], r["scenario"]))


def _cell(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render(records: list[dict[str, Any]]) -> str:
    """``docs/reliability.md`` for ``records``: one numbered table per section, scenario by scenario."""
    lines = [
        "# Reliability: fault injection",
        "",
        "Generated from the test run by `python -m mlops_assets_tests.reliability` after `pytest` (CI runs both and",
        "fails when this page differs from what the tests observed). Each row is one scenario: the fault injected,",
        "the test that injects it, and the figures the test observed and asserted. Run them alone with",
        "`pytest -m faults`.",
        "",
    ]
    number = 0
    for section, heading in SECTIONS.items():
        rows = [r for r in records if r["section"] == section]
        lines += [f"## {section}. {heading}", ""]
        if not rows:
            lines += ["No scenario recorded.", ""]
            continue
        lines += ["| # | scenario | test | observed |", "|---|---|---|---|"]
        for r in rows:
            number += 1
            observed = "; ".join(f"{k}: {_cell(v)}" for k, v in sorted(r["figures"].items()))
            lines.append(f"| {number} | {_cell(r['title'])} | `{_cell(r['test'])}` | {observed} |")
        lines.append("")
    return "\n".join(lines + KNOWN_GAPS)


def main() -> int:
    """Write :data:`PAGE` from the records; exit status 1 (and nothing written) when there are none."""
    records = load()
    if not records:
        print(f"no reliability records under {RECORDS}: run the tests first", file=sys.stderr)
        return 1
    PAGE.write_text(render(records))
    print(f"wrote {PAGE} ({len(records)} scenarios)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
