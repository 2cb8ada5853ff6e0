"""The gate contract, declared once: which blocking checks a model version must have passed.

Wiring layer (no stage module; dagster is imported only by :func:`gate_keys`, so ``mlops-serve`` reads the
contract without importing the orchestrator). The contract is data: for each gated asset, the names of its
blocking asset checks, upstream to downstream. Everything that reads gate outcomes takes its keys from here
(the training window, the accepted-versions walk, the deployment decision, the registry jobs), so stage
modules never import each other for them. ``mlops_assets_tests/test_architecture.py`` pins that this
contract equals the blocking checks :mod:`mlops_assets.definitions` actually defines for these assets: a
new blocking check must be declared here, or the test names it.
"""

from typing import TYPE_CHECKING

from mlops_assets.ml import model_gates

if TYPE_CHECKING:
    import dagster as dg

#: Gated asset → names of its blocking checks, in the order the stage defines them.
GATE_CONTRACT: dict[str, tuple[str, ...]] = {
    "raw_data": (
        "schema_valid",
        "row_count_above_floor",
        "label_in_domain",
        "ids_unique",
        "volume_within_bounds",
        "ids_unique_across_versions",
    ),
    "features": ("features_allowlisted", "features_finite"),
    "candidate_model": ("model_reproduces_holdout_scores",),
    "model_evaluation": tuple(model_gates.GATES),
}
#: Assets whose gates judge one data version (re-read from the instance per version).
DATA_ASSETS: tuple[str, ...] = ("raw_data", "features")
#: Assets whose gates judge one model version (their outcomes are recorded in the registry for it).
MODEL_ASSETS: tuple[str, ...] = ("candidate_model", "model_evaluation")


def gate_keys(model: str, *assets: str) -> "list[dg.AssetCheckKey]":
    """The check keys of the declared gates of ``assets`` of the model ``model``, in contract order.

    Raises:
        KeyError: an asset the contract does not declare.
    """
    import dagster as dg

    return [dg.AssetCheckKey(dg.AssetKey([model, asset]), name) for asset in assets for name in GATE_CONTRACT[asset]]


def gate_name(asset: str, check: str) -> str:
    """A gate's name as the registry records it, the same for every model: ``"<asset>:<check>"``."""
    return f"{asset}:{check}"


#: Gates judging one model version, as the registry records them (``"<asset>:<check>"``): each records its outcome
#: in the registry for that version and artifact digest, and every registry move to Staging or Production (and the
#: rollout's final switch, and a rollback) requires these outcomes passed (``required_gates``).
MODEL_GATE_NAMES: tuple[str, ...] = tuple(gate_name(a, c) for a in MODEL_ASSETS for c in GATE_CONTRACT[a])
