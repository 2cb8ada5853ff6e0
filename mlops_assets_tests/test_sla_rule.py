"""The performance SLA rule (``performance.performance_sla``): floor, breach and the record it stores.

Rule: ``floor = max(metric_floor, holdout - max_realised_metric_drop)`` (``metric_floor`` alone without a holdout
value), breached when ``realised < floor``. Values are binary fractions, so floors compare exactly.
"""

from typing import Any

import pytest

from mlops_assets.ml import performance
from mlops_assets.ml.policy import MonitoringPolicy

pytestmark = pytest.mark.core

MONITORING = MonitoringPolicy(max_realised_metric_drop=0.125)
CHAMPION = 3


def sla_of(rows: list[dict[str, Any]], version: int, holdout: float | None) -> dict[str, Any]:
    """The SLA under the rule's policy: roc_auc, metric_floor 0.5, max_realised_metric_drop 0.125."""
    return performance.performance_sla(rows, version, holdout, MONITORING, headline_metric="roc_auc", metric_floor=0.5)


def _rows(realised: float | None, *, n: int = 400, served: float = 0.99, other: float = 0.99) -> list[dict[str, Any]]:
    """``realised_performance`` rows: a challenger (an older version, listed first), the champion (served and
    scored rows) and the served mix. Only the champion's ``scored`` row carries ``realised``: picking any other
    row gives another value.
    """
    return [
        {"model_version": CHAMPION - 1, "arm": "challenger", "rows": "scored", "n": n, "roc_auc": other},
        {"model_version": CHAMPION, "arm": "champion", "rows": "served", "n": n // 2, "roc_auc": served},
        {"model_version": CHAMPION, "arm": "champion", "rows": "scored", "n": n, "roc_auc": realised, "pr_auc": 0.01},
        {"model_version": None, "arm": "served mix", "rows": "served", "n": n, "roc_auc": other},
    ]


def test_without_a_holdout_value_the_floor_is_the_metric_floor() -> None:
    sla = sla_of(_rows(0.5625), CHAMPION, None)
    assert sla["holdout"] is None
    assert sla["floor"] == 0.5
    assert sla["breached"] is False
    below = sla_of(_rows(0.4375), CHAMPION, None)
    assert below["floor"] == 0.5
    assert below["breached"] is True


def test_the_metric_floor_wins_when_the_holdout_drop_would_go_below_it() -> None:
    # holdout - drop = 0.5625 - 0.125 = 0.4375 < metric_floor 0.5: the floor stays 0.5.
    sla = sla_of(_rows(0.46875), CHAMPION, 0.5625)
    assert sla["floor"] == 0.5
    assert sla["breached"] is True  # above holdout - drop, below the absolute floor


def test_the_holdout_drop_wins_when_it_is_above_the_metric_floor() -> None:
    # holdout - drop = 0.875 - 0.125 = 0.75 > metric_floor 0.5.
    sla = sla_of(_rows(0.6875), CHAMPION, 0.875)
    assert sla["floor"] == 0.75
    assert sla["breached"] is True  # above the absolute floor, more than the allowed drop below the holdout
    within = sla_of(_rows(0.8125), CHAMPION, 0.875)
    assert within["floor"] == 0.75
    assert within["breached"] is False


def test_breached_only_strictly_below_the_floor() -> None:
    assert sla_of(_rows(0.75), CHAMPION, 0.875)["breached"] is False
    assert sla_of(_rows(0.74609375), CHAMPION, 0.875)["breached"] is True
    assert sla_of(_rows(0.5), CHAMPION, None)["breached"] is False


def test_an_undefined_realised_metric_is_not_a_breach() -> None:
    sla = sla_of(_rows(None), CHAMPION, 0.875)
    assert sla["realised"] is None
    assert sla["floor"] == 0.75
    assert sla["breached"] is False


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc"])
def test_the_champions_scored_row_of_the_headline_metric_is_held_against_the_floor(metric: str) -> None:
    sla = performance.performance_sla(
        _rows(0.25, n=640), CHAMPION, None, MONITORING, headline_metric=metric, metric_floor=0.5
    )
    expected = 0.25 if metric == "roc_auc" else 0.01
    assert (sla["metric"], sla["realised"], sla["labelled_rows"]) == (metric, expected, 640)
    assert sla["breached"] is True  # the served row, the challenger and the mix (0.99) would all pass


def test_the_record_is_what_performance_report_stores() -> None:
    sla = sla_of(_rows(0.6875, n=123), CHAMPION, 0.875)
    assert sla == {
        "metric": "roc_auc",
        "model_version": CHAMPION,
        "realised": 0.6875,
        "holdout": 0.875,
        "floor": 0.75,
        "breached": True,
        "labelled_rows": 123,
        "rule": "realised roc_auc >= max(metric_floor 0.5, holdout - 0.125)",
    }
    assert list(sla) == ["metric", "model_version", "realised", "holdout", "floor", "breached", "labelled_rows", "rule"]


def test_a_champion_without_a_scored_row_is_an_error() -> None:
    with pytest.raises(StopIteration):
        sla_of(_rows(0.75), CHAMPION + 7, None)
