"""The test suite's tiers, as a pytest plugin (registered by the repository's top-level ``conftest.py``, which pytest
loads early enough for the ``--tier`` option).

``pytest --tier core`` runs tier 1 only, ``pytest --tier core --tier wiring`` tiers 1 and 2; without ``--tier``
every test runs. A test module without a tier marker is a collection error, so no new test goes untiered.
"""

import pytest

#: The suite's tiers, fastest first. Every test module declares its tier (``pytestmark = pytest.mark.core``); a test
#: that needs more than its module (a daemon, a subprocess, a whole lifecycle) carries a slower tier itself
#: (``@pytest.mark.e2e``), never a faster one. A test's tier is the slowest it carries.
TIERS = ("core", "wiring", "e2e")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tier",
        action="append",
        choices=TIERS,
        help="run only the tests of this tier (repeatable): core = pure ML core and storage, no Dagster run; "
        "wiring = Dagster definitions, assets and sensors invoked directly with seeded resources; e2e = "
        "materialized lifecycles, jobs, the daemon and CLI processes",
    )


def tier_of(item: pytest.Item) -> str | None:
    """The slowest tier marker ``item`` carries (its module's or its own); ``None`` when it carries none."""
    marked = {mark.name for mark in item.iter_markers() if mark.name in TIERS}
    return max(marked, key=TIERS.index) if marked else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    untiered = sorted({item.nodeid.split("::")[0] for item in items if tier_of(item) is None})
    if untiered:
        raise pytest.UsageError(f"test modules without a tier marker ({', '.join(TIERS)}): {untiered}")
    wanted = config.getoption("--tier")
    if wanted:
        deselected = [item for item in items if tier_of(item) not in wanted]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if tier_of(item) in wanted]
