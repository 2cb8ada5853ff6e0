"""Turning the core's GateResult into a Dagster asset check result, with its evidence as metadata.

A model gate (a check judging one model version) also records its outcome in the registry, bound to the
model version and artifact digest it judged (:func:`model_check_result`): promotion reads that back.

Gates that judge one loaded value share a step (:func:`gate_specs`, :func:`gate_step`, :func:`selected`): one load
of the value and one step's overhead instead of one per gate; each is still its own blocking check with its own
history, and can be run alone.
"""

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg

from mlops_assets.assets.metadata import table
from mlops_assets.gates import gate_name
from mlops_assets.ml.gate_result import GateResult
from mlops_assets.model import MLModel
from mlops_assets.storage.registry import ModelRegistry

__all__ = ["check_result", "gate_specs", "gate_step", "model_check_result", "selected", "table"]


def gate_specs(model: MLModel, asset: str, conditions: Mapping[str, str]) -> list[dg.AssetCheckSpec]:
    """One blocking check per gate on ``<model>/<asset>``, partitioned by the model's data versions.

    Args:
        model: The model.
        asset: The asset's short name (``raw_data``, ``features``, ``model_evaluation``).
        conditions: Check name → its passing condition (described as "Passes when <condition>.").
    """
    return [
        dg.AssetCheckSpec(
            name,
            asset=model.key(asset),
            blocking=True,
            partitions_def=model.partitions,
            description=f"Passes when {condition}.",
        )
        for name, condition in conditions.items()
    ]


def gate_step(
    model: MLModel, asset: str, step: str, specs: Sequence[dg.AssetCheckSpec], description: str
) -> Callable[[Callable[..., Any]], dg.AssetChecksDefinition]:
    """``@dg.multi_asset_check`` evaluating ``specs`` in one step ``<model>__<step>`` on the loaded ``asset``
    (its body's parameter named after the asset); subsettable, so a check can run alone."""
    return dg.multi_asset_check(
        name=model.job_name(step),
        specs=specs,
        can_subset=True,
        ins={asset: dg.AssetIn(key=model.key(asset))},
        description=description,
    )


def selected(context: dg.AssetCheckExecutionContext, specs: Sequence[dg.AssetCheckSpec]) -> list[dg.AssetCheckSpec]:
    """The checks of ``specs`` this run evaluates (all of them unless a subset was selected)."""
    return [spec for spec in specs if spec.key in context.selected_asset_check_keys]


def _scalar(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    # A float, so that a check's observed and threshold keep one type across data versions (the UI plots them).
    return float(value) if math.isfinite(value) else str(value)


# A comparison in a gate's condition: its operator and the number it compares with.
_COMPARISON = re.compile(r"(>=|<=|==|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")
_SYMBOLS = {">=": "≥", "<=": "≤", "==": "=", ">": ">", "<": "<"}


def passes_when(gate: GateResult) -> str | None:
    """When ``gate``'s observed value passes against its threshold, e.g. ``"observed ≥ 0.7"``.

    Read from the gate's own condition, as the core wrote it: an int threshold 0 is a count of failures (failure
    cases, failing slices or attributes, invalid scores), which passes at ``"observed = 0"``; a text threshold that
    is an interval (``"[0.5, 2]"``) passes ``"observed within [0.5, 2]"``; any other number passes by the one
    comparison of the condition whose operand is that number (``"candidate roc_auc >= 0.7"``: ``"observed ≥ 0.7"``).

    Returns:
        The direction with the threshold, or None when the condition states none unambiguously (no threshold,
        no comparison with it, or comparisons in both directions).
    """
    threshold = gate.threshold
    if isinstance(threshold, str):
        return f"observed within {threshold}" if threshold.startswith("[") and threshold.endswith("]") else None
    if threshold is None or isinstance(threshold, bool):
        return None
    if isinstance(threshold, int) and threshold == 0:
        return "observed = 0"
    operators = {
        operator
        for operator, number in _COMPARISON.findall(gate.condition)
        if math.isclose(float(number), threshold, rel_tol=1e-9, abs_tol=1e-12)
    }
    if len(operators) != 1:
        return None
    return f"observed {_SYMBOLS[operators.pop()]} {threshold:g}"


#: Columns of an evidence table shown first, in this order: what the row is, its verdict, then its figures.
EVIDENCE_COLUMNS: tuple[str, ...] = (
    "slice_column",
    "column",
    "attribute",
    "value",
    "check",
    "metric",
    "kind",
    "status",
    "outcome",
    "problems",
    "reason",
    "candidate",
    "production",
    "delta",
    "floor",
    "observed",
    "limit",
    "threshold",
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "lower",
    "upper",
    "mean_score",
    "observed_rate",
    "n",
    "n_positive",
)

#: What an evidence column means where a gate decides on it (the policy setting named holds the bound).
EVIDENCE_DESCRIPTIONS: dict[str, str] = {
    "floor": "the slice passes when candidate ≥ floor",
    "delta": "candidate − production; the slice passes when ≥ −policy.max_slice_regression",
    "limit": "the bound the observed value is compared with: ≥ for min_value, ≤ for the others",
    "demographic_parity_difference": "passes when ≤ policy.max_demographic_parity_difference",
    "demographic_parity_ratio": "passes when ≥ policy.min_demographic_parity_ratio",
    "equalized_odds_difference": "passes when ≤ policy.max_equalized_odds_difference",
    "problems": "why the row fails the gate (empty: it passes)",
}


def _evidence_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Evidence records as table rows: a list of plain values joined by "; ", nested records left to the JSON."""

    def nested(value: Any) -> bool:
        return isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, dict | list) for v in value))

    return [
        {
            key: "; ".join(map(str, value)) if isinstance(value, list) else value
            for key, value in row.items()
            if not nested(value)
        }
        for row in rows
    ]


def check_result(gate: GateResult, check: dg.AssetCheckKey | None = None) -> dg.AssetCheckResult:
    """An AssetCheckResult carrying the gate's condition, passing direction, observation, threshold and evidence.

    Metadata: ``condition`` (in words), ``passes_when`` (:func:`passes_when`, e.g. ``"observed ≥ 0.7"``, when the
    condition
    states it), ``message``, ``observed`` and ``threshold`` (floats when numbers), ``outcome`` (when the evidence
    has one), ``evidence`` (all of it, as JSON) and every list of records in the evidence also as a table
    ``<key>_table`` (important columns first, :data:`EVIDENCE_COLUMNS`; floats rounded; nested records only in the
    JSON).

    Args:
        gate: The core's verdict.
        check: The check it is the result of; required when one step evaluates several checks
            (``@dg.multi_asset_check``), None for a single ``@dg.asset_check``.
    """
    metadata: dict[str, Any] = {"condition": gate.condition}
    direction = passes_when(gate)
    if direction is not None:
        metadata["passes_when"] = direction
    metadata["message"] = gate.message
    if gate.observed is not None:
        metadata["observed"] = _scalar(gate.observed)
    if gate.threshold is not None:
        metadata["threshold"] = _scalar(gate.threshold)
    if gate.evidence:
        if gate.evidence.get("outcome") is not None:
            # passed / failed / insufficient_data: a pass on too little data shows next to the verdict.
            metadata["outcome"] = str(gate.evidence["outcome"])
        metadata["evidence"] = dg.MetadataValue.json(dict(gate.evidence))
        # Lists of records (failure cases, slices, groups) also as tables, which the UI can sort and read.
        for key, value in gate.evidence.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                metadata[f"{key}_table"] = table(
                    _evidence_rows(value), columns=EVIDENCE_COLUMNS, descriptions=EVIDENCE_DESCRIPTIONS
                )
    return dg.AssetCheckResult(
        passed=gate.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=gate.message,
        metadata=metadata,
        asset_key=check.asset_key if check else None,
        check_name=check.name if check else None,
    )


def model_check_result(
    context: dg.AssetCheckExecutionContext,
    registry: ModelRegistry,
    gate: GateResult,
    *,
    model_name: str,
    version: int,
    artifact_sha256: str | None,
    check: dg.AssetCheckKey | None = None,
) -> dg.AssetCheckResult:
    """The check result of a model gate, after recording its outcome for this model version in the registry.

    The registry records the gate as ``"<asset>:<check>"`` (:func:`mlops_assets.gates.gate_name`, without the
    model prefix of the check key), the name promotion looks for whatever the model.
    The metadata names the model identity judged (``model_version``, ``artifact_sha256``). An unknown
    digest (an evaluation recorded before digests were) is recorded as ``"unknown"``: it matches no
    artifact, so it can never count as evidence.

    ``check`` is the check judged when one step evaluates several (``@dg.multi_asset_check``); None: the step's
    only check.

    Raises:
        VersionNotFound: The model version is not registered.
    """
    sha = artifact_sha256 or "unknown"
    if check is None:
        (spec,) = context.check_specs
        check = spec.key
    outcome = registry.record_gate_result(
        model_name,
        version,
        artifact_sha256=sha,
        gate=gate_name(check.asset_key.path[-1], check.name),
        passed=gate.passed,
        data_version=context.partition_key,
        run_id=context.run.run_id,
        summary=gate.message,
    )
    result = check_result(gate, check)
    metadata: dict[str, Any] = {
        **result.metadata,
        "model_version": version,
        "artifact_sha256": sha,
        "recorded_at": outcome.at.isoformat(),
    }
    return result._replace(metadata=metadata)
