"""Typed summaries of the monitoring reports: the one owner of their metadata keys, in both directions. Pure.

``drift_report``, ``performance_report`` and ``performance_estimate`` (:class:`EstimateSummary`) write their
materialization metadata with ``to_metadata()``; the
retraining sensors read it back with ``from_metadata()`` and compare the typed identity of the model a report
was measured against — ``(model name, registry version)`` — with the model now in production. The display
string ``compared_with`` (``"flights v3"``) is still written for people reading the UI, but nothing compares it:
rewording it cannot switch a trigger off.

Reading is tolerant of records written before these keys existed: a missing or malformed value is read as
``None`` (unknown), never an exception. An unknown identity fails closed in the sensors: the evidence cannot be
tied to the model now in production, so it is dropped with a log line saying so (see ``docs/monitoring.md``).
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

#: A JSON value as written into materialization metadata.
JSONValue = str | int | float | bool | None | list[Any] | dict[str, Any]

#: Written for an empty list of column names (what the UI showed before these summaries).
_NONE = "none"
_SEPARATOR = ", "


def _float(value: Any) -> float | None:
    """A finite float, or ``None`` for anything else (missing, text, NaN, a boolean)."""
    if isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> int | None:
    """An integer (``3``, ``"3"`` or ``"v3"``), or ``None`` for anything else (booleans included)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.removeprefix("v").isdigit():
        return int(value.removeprefix("v"))
    return None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _names(value: Any) -> tuple[str, ...]:
    """Column names from ``"a, b"`` (``"none"``: no column) or a JSON list; anything else: none."""
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    if isinstance(value, str) and value and value != _NONE:
        return tuple(value.split(_SEPARATOR))
    return ()


def _joined(names: tuple[str, ...]) -> str:
    return _SEPARATOR.join(names) or _NONE


def _without_none(metadata: dict[str, JSONValue]) -> dict[str, JSONValue]:
    return {k: v for k, v in metadata.items() if v is not None}


def display_model(model: str | None, version: int | None) -> str:
    """``"flights v3"`` for people; ``"none"`` when no version. Never compared: identities are ``(model, version)``."""
    if version is None:
        return _NONE
    return f"{model} v{version}" if model else f"v{version}"


@dataclass(frozen=True)
class DriftSummary:
    """The ``drift_report`` metadata of one data version, as the retraining sensors read it.

    Attributes:
        compared_with_model: Registered model name of the production model whose training reference the data was
            compared with (metadata key ``compared_with_model``); ``None`` when nothing was compared or unknown.
        compared_with_version: Its registry version (key ``compared_with_version``); ``None`` likewise.
        dataset_drift: Whether the data set drifted as a whole (drifted share of columns >= 0.5); ``None`` when
            not measured.
        drifted_share: Share of feature columns that drifted, in [0, 1].
        n_drifted: Number of drifted feature columns.
        drifted_columns: Names of the drifted columns (written ``", "``-joined, ``"none"`` when empty).
        null_share_increases: Columns whose share of missing values rose beyond the policy's limit (same format).
        reason: Why nothing was measured (e.g. ``"no model in production"``), or the report's own reason.
    """

    compared_with_model: str | None = None
    compared_with_version: int | None = None
    dataset_drift: bool | None = None
    drifted_share: float | None = None
    n_drifted: int | None = None
    drifted_columns: tuple[str, ...] = ()
    null_share_increases: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def compared_with(self) -> str:
        """The display string (``"flights v3"`` / ``"none"``): for people, never for identity."""
        return display_model(self.compared_with_model, self.compared_with_version)

    @property
    def identity_known(self) -> bool:
        """Both the model name and the version it was measured against are known."""
        return self.compared_with_model is not None and self.compared_with_version is not None

    def measured_against(self, model: str, version: int | None) -> bool:
        """Whether this report was measured against ``(model, version)``; ``False`` when its identity is unknown."""
        return self.identity_known and (self.compared_with_model, self.compared_with_version) == (model, version)

    def to_metadata(self) -> dict[str, JSONValue]:
        """Metadata keys and JSON values (``None`` fields are left out; ``compared_with`` is for display)."""
        return _without_none(
            {
                "compared_with": self.compared_with,
                "compared_with_model": self.compared_with_model,
                "compared_with_version": self.compared_with_version,
                "dataset_drift": self.dataset_drift,
                "drifted_share": self.drifted_share,
                "n_drifted": self.n_drifted,
                "drifted_columns": _joined(self.drifted_columns),
                "null_share_increases": _joined(self.null_share_increases),
                "reason": self.reason,
            }
        )

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Self:
        """Read metadata written by :meth:`to_metadata` (or before it: missing or malformed values → ``None``).

        ``compared_with`` (the display string) is not parsed: a record without the typed keys has an unknown
        identity (:attr:`identity_known` is ``False``).
        """
        return cls(
            compared_with_model=_str(metadata.get("compared_with_model")),
            compared_with_version=_int(metadata.get("compared_with_version")),
            dataset_drift=_bool(metadata.get("dataset_drift")),
            drifted_share=_float(metadata.get("drifted_share")),
            n_drifted=_int(metadata.get("n_drifted")),
            drifted_columns=_names(metadata.get("drifted_columns")),
            null_share_increases=_names(metadata.get("null_share_increases")),
            reason=_str(metadata.get("reason")),
        )

    def evidence(self, data_version: str) -> dict[str, Any]:
        """The ``mlops/evidence`` of a drift retrain (identity first: it is what the sensor compares)."""
        return {
            "trigger": "drift_report",
            "data_version": data_version,
            "compared_with_model": self.compared_with_model,
            "compared_with_version": self.compared_with_version,
            "drifted_share": self.drifted_share,
            "drifted_columns": _joined(self.drifted_columns),
            "compared_with": self.compared_with,
        }


@dataclass(frozen=True)
class PerformanceSummary:
    """The ``performance_report`` metadata of one data version: the production model's realised metric vs its SLA.

    Attributes:
        model: Registered model name of the production model that scored the rows (key ``production_model``);
            ``None`` when nothing was scored or unknown (records written before this key).
        production_version: Its registry version (key ``production_version``).
        metric: The headline metric's name (e.g. ``"roc_auc"``).
        realised_metric: Its realised value on this version's labelled rows; ``None`` when undefined.
        sla_floor: The SLA floor: ``max(metric_floor, holdout - max_realised_metric_drop)``.
        sla_breached: Whether ``realised_metric < sla_floor``; ``None`` when unknown.
        labelled_rows: Scored rows with a label (the sample size of ``realised_metric``).
        holdout_metric: The model's metric on its holdout split at training time.
        reason: Why nothing was measured (e.g. nothing was scored).
    """

    model: str | None = None
    production_version: int | None = None
    metric: str | None = None
    realised_metric: float | None = None
    sla_floor: float | None = None
    sla_breached: bool | None = None
    labelled_rows: int | None = None
    holdout_metric: float | None = None
    reason: str | None = None

    @property
    def identity_known(self) -> bool:
        """Both the model name and the version that was measured are known."""
        return self.model is not None and self.production_version is not None

    def measured(self, model: str, version: int | None) -> bool:
        """Whether this report measured ``(model, version)``; ``False`` when its identity is unknown."""
        return self.identity_known and (self.model, self.production_version) == (model, version)

    def to_metadata(self) -> dict[str, JSONValue]:
        """Metadata keys and JSON values (``None`` fields are left out)."""
        # Display only (not read back): 12 significant digits drop the float noise of the subtraction
        # (0.6834 - 0.6656 = 0.017800000000000038).
        drop = (
            None
            if self.holdout_metric is None or self.realised_metric is None
            else float(f"{self.holdout_metric - self.realised_metric:.12g}")
        )
        return _without_none(
            {
                "production_model": self.model,
                "production_version": self.production_version,
                "metric": self.metric,
                "realised_metric": self.realised_metric,
                "sla_floor": self.sla_floor,
                "sla_breached": self.sla_breached,
                "labelled_rows": self.labelled_rows,
                "holdout_metric": self.holdout_metric,
                "drop_from_holdout": drop,
                "reason": self.reason,
            }
        )

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Self:
        """Read metadata written by :meth:`to_metadata` (or before it: missing or malformed values → ``None``)."""
        return cls(
            model=_str(metadata.get("production_model")),
            production_version=_int(metadata.get("production_version")),
            metric=_str(metadata.get("metric")),
            realised_metric=_float(metadata.get("realised_metric")),
            sla_floor=_float(metadata.get("sla_floor")),
            sla_breached=_bool(metadata.get("sla_breached")),
            labelled_rows=_int(metadata.get("labelled_rows")),
            holdout_metric=_float(metadata.get("holdout_metric")),
            reason=_str(metadata.get("reason")),
        )

    def evidence(self, data_version: str) -> dict[str, Any]:
        """The ``mlops/evidence`` of a performance retrain."""
        return {
            "trigger": "performance_report",
            "data_version": data_version,
            "model": self.model,
            "production_version": self.production_version,
            "metric": self.metric,
            "realised": self.realised_metric,
            "floor": self.sla_floor,
            "labelled_rows": self.labelled_rows,
        }


@dataclass(frozen=True)
class EstimateSummary:
    """The ``performance_estimate`` metadata of one data version: the production model's CBPE estimate vs its SLA.

    Attributes:
        model: Registered model name of the production model whose scores were estimated (key
            ``production_model``); ``None`` when nothing was estimated or unknown.
        model_version: Its registry version (key ``model_version``).
        metric: The headline metric's name (key ``metric``).
        estimated_metric: Its CBPE estimate (key ``estimated_<metric>``); ``None`` when undefined.
        lower: Lower end of the estimate's band (key ``estimated_<metric>_lower``).
        upper: Upper end (key ``estimated_<metric>_upper``).
        sla_floor: The SLA floor the estimate is held against (as ``performance_report``'s).
        estimated_below_floor: Whether the estimate is below the floor; ``None`` when unknown.
        rows: Rows estimated on (key ``rows``).
        reason: Why nothing was estimated (nothing scored, no calibration map, ...).
    """

    model: str | None = None
    model_version: int | None = None
    metric: str | None = None
    estimated_metric: float | None = None
    lower: float | None = None
    upper: float | None = None
    sla_floor: float | None = None
    estimated_below_floor: bool | None = None
    rows: int | None = None
    reason: str | None = None

    @property
    def identity_known(self) -> bool:
        """Both the model name and the version that was estimated are known."""
        return self.model is not None and self.model_version is not None

    def measured(self, model: str, version: int | None) -> bool:
        """Whether this estimate is of ``(model, version)``; ``False`` when its identity is unknown."""
        return self.identity_known and (self.model, self.model_version) == (model, version)

    def to_metadata(self) -> dict[str, JSONValue]:
        """Metadata keys and JSON values (``None`` fields are left out). The per-metric keys other than the
        headline's (``estimated_accuracy`` ...) are written by the asset beside these."""
        metric = self.metric
        keyed: dict[str, JSONValue] = {}
        if metric is not None:
            keyed = {
                f"estimated_{metric}": self.estimated_metric,
                f"estimated_{metric}_lower": self.lower,
                f"estimated_{metric}_upper": self.upper,
            }
        return _without_none(
            {
                "production_model": self.model,
                "model_version": self.model_version,
                "metric": metric,
                **keyed,
                "sla_floor": self.sla_floor,
                "estimated_below_floor": self.estimated_below_floor,
                "rows": self.rows,
                "reason": self.reason,
            }
        )

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Self:
        """Read metadata written by :meth:`to_metadata` (missing or malformed values → ``None``)."""
        metric = _str(metadata.get("metric"))
        return cls(
            model=_str(metadata.get("production_model")),
            model_version=_int(metadata.get("model_version")),
            metric=metric,
            estimated_metric=None if metric is None else _float(metadata.get(f"estimated_{metric}")),
            lower=None if metric is None else _float(metadata.get(f"estimated_{metric}_lower")),
            upper=None if metric is None else _float(metadata.get(f"estimated_{metric}_upper")),
            sla_floor=_float(metadata.get("sla_floor")),
            estimated_below_floor=_bool(metadata.get("estimated_below_floor")),
            rows=_int(metadata.get("rows")),
            reason=_str(metadata.get("reason")),
        )

    def evidence(self, data_version: str) -> dict[str, Any]:
        """The ``mlops/evidence`` of an estimated-performance retrain (identity first: the sensor compares it)."""
        return {
            "trigger": "performance_estimate",
            "data_version": data_version,
            "model": self.model,
            "production_version": self.model_version,
            "metric": self.metric,
            "estimated": self.estimated_metric,
            "lower": self.lower,
            "upper": self.upper,
            "floor": self.sla_floor,
            "rows": self.rows,
        }
