"""``docs/ml-test-score.md`` stays true: 28 rows with the paper's titles, cited tests that exist, honest totals.

The page maps each test of Breck et al., *The ML Test Score* (IEEE Big Data 2017) to how the product covers it
and the tests that prove it. Checked here without running pytest: every cited node id
(``mlops_assets_tests/test_x.py::test_name``) names a test function found by parsing the test files with ``ast``;
there are exactly 7 rows per section, titled as in the paper; a score is 0, 0.5 or 1; a row scored 1 cites a
test and a row below 1 says what is missing; each section's stated score is the sum of its rows and the final
score their minimum.
"""

import ast
import re
from decimal import Decimal
from pathlib import Path

import pytest

pytestmark = pytest.mark.core

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "ml-test-score.md"

#: The paper's 28 tests by section, in its order and words.
TITLES: dict[str, tuple[str, ...]] = {
    "Data": (
        "Feature expectations are captured in a schema",
        "All features are beneficial",
        "No feature's cost is too much",
        "Features adhere to meta-level requirements",
        "The data pipeline has appropriate privacy controls",
        "New features can be added quickly",
        "All input feature code is tested",
    ),
    "Model": (
        "Every model specification undergoes a code review and is checked in to a repository",
        "Offline proxy metrics correlate with actual online impact metrics",
        "All hyperparameters have been tuned",
        "The impact of model staleness is known",
        "A simpler model is not better",
        "Model quality is sufficient on all important data slices",
        "The model has been tested for considerations of inclusion",
    ),
    "Infra": (
        "Training is reproducible",
        "Model specification code is unit tested",
        "The full ML pipeline is integration tested",
        "Model quality is validated before attempting to serve it",
        "The model allows debugging by observing the step-by-step computation of training or inference on a "
        "single example",
        "Models are tested via a canary process before they enter production serving environments",
        "Models can be quickly and safely rolled back to a previous serving version",
    ),
    "Monitor": (
        "Dependency changes result in notification",
        "Data invariants hold in training and serving inputs",
        "Training and serving features compute the same values",
        "Models are not too stale",
        "The model is numerically stable",
        "The model has not experienced a dramatic or slow-leak regressions in training speed, serving latency, "
        "throughput, or RAM usage",
        "The model has not experienced a regression in prediction quality on served data",
    ),
}
#: The section names of the summary table, by row prefix.
SECTION_NAMES = {"Data": "Data", "Model": "Model", "Infra": "Infrastructure", "Monitor": "Monitoring"}
SCORES = {Decimal("0"), Decimal("0.5"), Decimal("1")}
ROW = re.compile(r"^\| (Data|Model|Infra|Monitor) (\d+) \| (.+?) \| (.+?) \| (.+?) \| ([0-9.]+) \|\s*$", re.M)
NODE_ID = re.compile(r"`(mlops_assets_tests/[^`:]+\.py::[^`]+)`")


def collect_node_ids(root: Path = ROOT) -> set[str]:
    """Every test function's node id (``path::name`` and ``path::Class::name``) in the suite, parsed with ``ast``."""
    found: set[str] = set()
    for path in sorted((root / "mlops_assets_tests").glob("test_*.py")):
        rel = path.relative_to(root).as_posix()
        for node in ast.parse(path.read_text(), filename=str(path)).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
                found.add(f"{rel}::{node.name}")
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                found.update(
                    f"{rel}::{node.name}::{item.name}"
                    for item in node.body
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test")
                )
    return found


def rows(page: str) -> list[tuple[str, int, str, str, list[str], Decimal]]:
    """The rubric rows: (section, number, title, coverage, cited node ids, score)."""
    return [(m[1], int(m[2]), m[3], m[4], NODE_ID.findall(m[5]), Decimal(m[6])) for m in ROW.finditer(page)]


def stated_scores(page: str) -> dict[str, Decimal]:
    """The summary table: section name → stated score, and ``final`` → the stated ML Test Score."""
    stated = {
        m[1]: Decimal(m[2])
        for m in re.finditer(r"^\| (Data|Model|Infrastructure|Monitoring) \| ([0-9.]+) \|\s*$", page, flags=re.M)
    }
    final = re.search(r"^\| \*\*ML Test Score \(minimum\)\*\* \| \*\*([0-9.]+)\*\* \|\s*$", page, flags=re.M)
    if final:
        stated["final"] = Decimal(final[1])
    return stated


def problems(page: str, known_tests: set[str]) -> list[str]:
    """Every way ``page`` breaks the rules of the module docstring; empty when it keeps them."""
    found = rows(page)
    out: list[str] = []
    by_section: dict[str, dict[int, tuple[str, str, list[str], Decimal]]] = {s: {} for s in TITLES}
    for section, number, title, coverage, cited, score in found:
        label = f"{section} {number}"
        if number in by_section[section]:
            out.append(f"{label}: appears twice")
        by_section[section][number] = (title, coverage, cited, score)
        if score not in SCORES:
            out.append(f"{label}: score {score} is not 0, 0.5 or 1")
        if score == 1 and not cited:
            out.append(f"{label}: scored 1 without a cited test")
        if score < 1 and "Missing:" not in coverage:
            out.append(f"{label}: scored {score} without saying what is missing ('Missing: ...')")
        out.extend(
            f"{label}: cites {node}, which is not a test of the suite" for node in cited if node not in known_tests
        )
    for section, titles in TITLES.items():
        for number, title in enumerate(titles, start=1):
            row = by_section[section].get(number)
            if row is None:
                out.append(f"{section} {number} ({title}): row missing")
            elif row[0] != title:
                out.append(f"{section} {number}: titled {row[0]!r}, the paper says {title!r}")
        out.extend(
            f"{section} {n}: no such test in the paper"
            for n in sorted(set(by_section[section]) - {1, 2, 3, 4, 5, 6, 7})
        )
    stated = stated_scores(page)
    sums = {SECTION_NAMES[s]: sum((r[3] for r in by_section[s].values()), Decimal(0)) for s in TITLES}
    for name, total in sums.items():
        if stated.get(name) != total:
            out.append(f"section {name}: stated {stated.get(name)}, its rows sum to {total}")
    if stated.get("final") != min(sums.values()):
        out.append(f"ML Test Score: stated {stated.get('final')}, the minimum of the sections is {min(sums.values())}")
    return out


@pytest.fixture(scope="module")
def known_tests() -> set[str]:
    return collect_node_ids()


def test_the_page_keeps_its_rules(known_tests: set[str]) -> None:
    page = PAGE.read_text()
    assert len(rows(page)) == 28
    assert problems(page, known_tests) == []


def test_node_ids_are_found_by_parsing_the_test_files(known_tests: set[str]) -> None:
    assert "mlops_assets_tests/test_ml_test_score.py::test_the_page_keeps_its_rules" in known_tests
    assert "mlops_assets_tests/test_registry.py::test_rollback_drill" in known_tests
    assert not any("::_" in node for node in known_tests)


def test_a_broken_page_is_caught(known_tests: set[str]) -> None:
    """Guards the checks above against passing vacuously: each kind of damage is named."""
    page = PAGE.read_text()
    cited = rows(page)[0][4][0]
    nowhere = "mlops_assets_tests/test_validation.py::test_that_does_not_exist"
    damaged = page.replace(f"`{cited}`", f"`{nowhere}`", 1)
    assert problems(damaged, known_tests) == [f"Data 1: cites {nowhere}, which is not a test of the suite"]
    dropped = "\n".join(line for line in page.splitlines() if not line.startswith("| Monitor 7 |"))
    assert (
        "Monitor 7 (The model has not experienced a regression in prediction quality on served data): row missing"
        in (problems(dropped, known_tests))
    )
    inflated = re.sub(r"^(\| Data 2 \|.*\| )0 \|$", r"\g<1>1 |", page, flags=re.M)
    assert inflated != page
    found = problems(inflated, known_tests)
    assert "Data 2: scored 1 without a cited test" in found
    assert any(p.startswith("section Data: stated") for p in found)
    final_wrong = re.sub(
        r"\*\*ML Test Score \(minimum\)\*\* \| \*\*[0-9.]+\*\*", "**ML Test Score (minimum)** | **9.0**", page
    )
    assert any(p.startswith("ML Test Score: stated 9.0") for p in problems(final_wrong, known_tests))
    retitled = page.replace("| Infra 1 | Training is reproducible |", "| Infra 1 | Training is repeatable |")
    assert any("Infra 1: titled" in p for p in problems(retitled, known_tests))
