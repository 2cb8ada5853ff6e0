"""The Dagster UI in a real browser shows a finished lifecycle (docs/ui.md).

``dagster-webserver`` serves the instance of :func:`mlops_assets_tests.ui_instance.finished_lifecycle` (one synthetic
data version landed, run by the daemon's landing sensor into Production, then a launchpad retrain whose
``metric_above_floor`` gate failed); Debian's chromium, driven by Playwright, opens the pages a user looks at and the
test asserts what they render, waiting with Playwright's auto-waiting assertions (never a sleep):

1. the ``synthetic`` asset group's lineage: every asset of the model's graph;
2. the ``model_evaluation`` page of the data version (its partition, materialized, with its metadata: the comparison
   table, the headline figures, both charts rendered inline);
3. the asset's checks: every gate by name with its status (eight succeeded, ``metric_above_floor`` failed);
4. the failed gate's evidence: the blocking check's condition, message (with the settings to change), observed value,
   threshold and passing direction;
5. the gate's execution history on that partition: passed at the spec's floor, failed at the launchpad's;
6. the Automation page: every sensor and schedule of the model;
7. the landing sensor's ticks, the one that requested the lifecycle run among them;
8. the model's registry asset: the audit trail with the way to Production and the retrain's rejected record.

Each page is saved as ``build/ui-screenshots/<NN-name>.png`` (CI keeps the folder as an artifact); a page whose
assertion fails is saved as ``<NN-name>-FAILED.png``. The browser is ``/usr/bin/chromium`` (apt package
``chromium``); Playwright never downloads one. Without it the test skips, unless ``MLOPS_REQUIRE_SERVICES=1`` (CI):
then it fails.
"""

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

from mlops_assets.instance import LOCATION_NAME
from mlops_assets_tests.conftest import _services_required
from mlops_assets_tests.ui_instance import (
    FAILED_CHECK,
    FAILED_THRESHOLD,
    MODEL,
    FinishedLifecycle,
    finished_lifecycle,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
#: Where the screenshots go (documented in docs/ui.md; .ci/run prints it).
SCREENSHOTS = ROOT / "build" / "ui-screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Generous bound for each auto-waiting assertion (a busy shared machine); never a measurement.
TIMEOUT_MS = 120_000
#: The code location's repository in UI paths.
REPOSITORY = f"__repository__@{LOCATION_NAME}"

#: Every asset of one model's graph (README, "Asset graph").
ASSETS = (
    "raw_data",
    "features",
    "candidate_model",
    "model_evaluation",
    "drift_report",
    "predictions",
    "labels",
    "performance_report",
    "ab_test",
    "deployment_decision",
    "rollout_step",
    "staging_deployment",
    "production_deployment",
    "rollout_state",
    "model_registry",
    "run_profile",
)
#: The gates on ``model_evaluation`` (docs/gates.md).
EVALUATION_CHECKS = (
    "metric_above_floor",
    "beats_baseline",
    "non_inferior_to_production",
    "metric_thresholds_met",
    "slices_meet_floor",
    "calibration_within_bound",
    "fairness_within_bounds",
    "predictions_valid",
    "latency_within_budget",
)
#: The model's sensors and schedules (README, "Open the UI").
AUTOMATIONS = tuple(
    f"{MODEL}__{name}"
    for name in (
        "landing_sensor",
        "labels_sensor",
        "labelled_sensor",
        "served_traffic_sensor",
        "drift_sensor",
        "performance_sensor",
        "estimated_performance_sensor",
        "freshness_sensor",
        "run_profile_success_sensor",
        "run_profile_failure_sensor",
        "dead_run_sensor",
        "monitoring_schedule",
        "retrain_schedule",
    )
)


def _missing(message: str) -> None:
    if _services_required():
        pytest.fail(f"{message} (MLOPS_REQUIRE_SERVICES=1: the UI test must run)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium; skips without it, fails instead under MLOPS_REQUIRE_SERVICES=1."""
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def lifecycle(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FinishedLifecycle]:
    with finished_lifecycle(tmp_path_factory.mktemp("ui")) as built:
        yield built


@pytest.fixture(scope="module")
def page(chromium: Path, lifecycle: FinishedLifecycle) -> Iterator[Page]:
    """A chromium page (1600 x 1000) on the webserver."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(base_url=lifecycle.web_url, viewport={"width": 1600, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.set_default_navigation_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def _shows(locator) -> None:
    expect(locator).to_be_visible(timeout=TIMEOUT_MS)


def _row(page: Page, label: str) -> Locator:
    """The metadata table row whose first cell is ``label``."""
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=label, exact=True)).first


def asset_graph(page: Page, lifecycle: FinishedLifecycle) -> None:
    # The lineage of the model's asset group (the Lineage page filtered to it): the graph and, in its sidebar, every
    # asset by its full name (the graph's nodes abbreviate long ones: deployme…_decision) with its status.
    page.goto(f"/asset-groups~group%3A%22{MODEL}%22")
    _shows(page.get_by_text(f'group:"{MODEL}"', exact=True))
    for asset in ASSETS:
        _shows(page.get_by_role("button").filter(has=page.get_by_title(asset, exact=True)).get_by_role("img"))
    # Statuses loaded (a grey dot before): the landed version's raw_data succeeded.
    raw_data = page.get_by_role("button").filter(has=page.get_by_title("raw_data", exact=True))
    _shows(raw_data.get_by_role("img", name="run_success"))
    # Names short enough for the graph's nodes: the sidebar's entry and the node.
    for node in ("raw_data", "features", "candidate_model", "model_evaluation", "rollout_step"):
        expect(page.get_by_text(node, exact=True).filter(visible=True)).to_have_count(2, timeout=TIMEOUT_MS)


def evaluation_partition(page: Page, lifecycle: FinishedLifecycle) -> None:
    page.goto(f"/assets/{MODEL}/model_evaluation?view=partitions&partition={lifecycle.version}")
    # The partition is listed and selected: its details repeat its key, with its status and latest materialization
    # (the launchpad's retrain materialized model_evaluation before its blocking gate failed).
    expect(page.get_by_text(lifecycle.version, exact=True).filter(visible=True)).to_have_count(2, timeout=TIMEOUT_MS)
    _shows(page.get_by_text("Materialized", exact=True).first)
    _shows(page.get_by_text("Latest materialization"))
    _shows(page.get_by_text(lifecycle.failed_run_id[:8], exact=True))
    _shows(page.get_by_text("Metadata", exact=True))
    _shows(_row(page, "model_version"))
    # One comparison table, the headline figures, and both charts rendered inline (not behind "[Show Markdown]").
    for label in ("comparison", "candidate_roc_auc", "diff_vs_production", "roc_curve", "reliability_diagram"):
        _shows(_row(page, label))
    charts = page.locator('img[src^="data:image/svg+xml"]')
    expect(charts).to_have_count(2, timeout=TIMEOUT_MS)
    for i in range(2):
        _shows(charts.nth(i))
    expect(page.get_by_text("[Show Markdown]")).to_have_count(0, timeout=TIMEOUT_MS)
    charts.nth(0).scroll_into_view_if_needed()  # the screenshot shows the charts


def evaluation_checks(page: Page, lifecycle: FinishedLifecycle) -> None:
    page.goto(f"/assets/{MODEL}/model_evaluation?view=checks")
    _shows(page.get_by_text(f"Checks ({len(EVALUATION_CHECKS)})"))
    for check in EVALUATION_CHECKS:
        # Each entry: the check's name (full in its title) and the status of its latest execution.
        entry = page.get_by_title(check, exact=True).first.locator("xpath=..")
        _shows(entry.get_by_text("Failed" if check == FAILED_CHECK else "Succeeded", exact=True))


def failed_gate(page: Page, lifecycle: FinishedLifecycle) -> None:
    page.goto(f"/assets/{MODEL}/model_evaluation?view=checks&checkDetail={FAILED_CHECK}")
    _shows(page.get_by_text("Latest execution"))
    _shows(page.get_by_text("blocking", exact=True))
    _shows(page.get_by_text(lifecycle.version, exact=True).first)
    _shows(page.get_by_text("Failed", exact=True).last)
    for label in ("condition", "message", "evidence"):
        _shows(_row(page, label))
    # What the gate observed and its threshold, as the instance stored them.
    expect(_row(page, "observed")).to_contain_text(str(lifecycle.failed_observed), timeout=TIMEOUT_MS)
    expect(_row(page, "threshold")).to_contain_text(str(FAILED_THRESHOLD), timeout=TIMEOUT_MS)
    # The passing direction in words, with the threshold, and what to change.
    expect(_row(page, "passes_when")).to_contain_text(str(FAILED_THRESHOLD), timeout=TIMEOUT_MS)
    expect(_row(page, "message")).to_contain_text("to change: policy.metric_floor", timeout=TIMEOUT_MS)


def gate_history(page: Page, lifecycle: FinishedLifecycle) -> None:
    page.goto(f"/assets/{MODEL}/model_evaluation?view=checks&checkDetail={FAILED_CHECK}")
    page.get_by_role("tab", name="Execution history").click()
    rows = page.get_by_role("row").filter(has_text=lifecycle.version)
    # The landing sensor's lifecycle run passed it at the spec's floor; the launchpad's retrain failed it.
    _shows(rows.filter(has=page.get_by_text("Passed", exact=True)).first)
    _shows(rows.filter(has=page.get_by_text("Failed", exact=True)).filter(has_text=str(FAILED_THRESHOLD)).first)


def automation(page: Page, lifecycle: FinishedLifecycle) -> None:
    page.goto("/automation")
    for name in AUTOMATIONS:
        _shows(page.get_by_text(name, exact=True))
    # Loaded (skeletons before): each one's kind. The landing sensor's row tells when its tick last requested a run.
    kinds = {"Standard sensor": 9, "Run status sensor": 2}
    for kind, count in kinds.items():
        expect(page.get_by_text(kind, exact=True)).to_have_count(count, timeout=TIMEOUT_MS)
    expect(page.get_by_text(re.compile(r"^Scheduled At"))).to_have_count(2, timeout=TIMEOUT_MS)
    # Its row: the innermost element holding its name and its own checkbox (the page's "Select all" is outside).
    landing = (
        page.locator("div")
        .filter(has=page.get_by_text(f"{MODEL}__landing_sensor", exact=True))
        .filter(has=page.get_by_role("checkbox"))
        .last
    )
    expect(landing).to_contain_text(re.compile(r"\bago\b"), timeout=TIMEOUT_MS)


def landing_sensor_ticks(page: Page, lifecycle: FinishedLifecycle) -> None:
    page.goto(f"/locations/{REPOSITORY}/sensors/{MODEL}__landing_sensor")
    _shows(page.get_by_text("Latest tick"))
    # Only the ticks that requested runs: the one that launched the lifecycle run.
    page.get_by_text("All ticks", exact=True).click()
    page.get_by_text("Requested", exact=True).click()
    ticks = page.get_by_role("row").filter(has=page.get_by_role("button", name="View logs"))
    expect(ticks).to_have_count(1, timeout=TIMEOUT_MS)
    expect(ticks).to_contain_text("1 run requested", timeout=TIMEOUT_MS)
    expect(ticks).to_contain_text(lifecycle.landing_run_id[:8], timeout=TIMEOUT_MS)


def model_registry(page: Page, lifecycle: FinishedLifecycle) -> None:
    # The registry's audit trail in the UI: the first version's way to Production, and the rejected record the
    # launchpad's retrain left when its gate stopped it (refreshed by the jobs' failure hook).
    page.goto(f"/assets/{MODEL}/model_registry")
    _shows(_row(page, "audit_trail"))
    trail = _row(page, "audit_trail")
    expect(trail).to_contain_text("rejected", timeout=TIMEOUT_MS)
    expect(trail).to_contain_text(FAILED_CHECK, timeout=TIMEOUT_MS)
    expect(trail).to_contain_text("Production", timeout=TIMEOUT_MS)
    _shows(_row(page, "versions"))
    trail.scroll_into_view_if_needed()  # the screenshot shows the audit trail


#: The pages, in order, with their screenshot names.
PAGES: tuple[tuple[str, Callable[[Page, FinishedLifecycle], None]], ...] = (
    ("01-asset-graph", asset_graph),
    ("02-model-evaluation-partition", evaluation_partition),
    ("03-model-evaluation-checks", evaluation_checks),
    ("04-failed-gate-evidence", failed_gate),
    ("05-failed-gate-history", gate_history),
    ("06-automation", automation),
    ("07-landing-sensor-ticks", landing_sensor_ticks),
    ("08-model-registry", model_registry),
)


@contextmanager
def _screenshot(page: Page, name: str) -> Iterator[None]:
    """Save the page as ``<name>.png`` once its assertions passed, as ``<name>-FAILED.png`` when one did not."""
    try:
        yield
    except Exception as exc:
        page.screenshot(path=str(SCREENSHOTS / f"{name}-FAILED.png"))
        exc.add_note(f"UI page {name}: {page.url} (screenshot {SCREENSHOTS / f'{name}-FAILED.png'})")
        raise
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def test_the_ui_shows_the_finished_lifecycle_its_gates_and_sensor_ticks(page: Page, lifecycle: FinishedLifecycle):
    # One test for every page: the lifecycle is built once per module, and pytest-xdist could give separate tests
    # of the module to different workers (each would build it again).
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for stale in SCREENSHOTS.glob("*.png"):  # an earlier run's pages never pass for this run's
        stale.unlink()
    for name, show in PAGES:
        with _screenshot(page, name):
            show(page, lifecycle)
