"""The gate contract, declared once: which blocking checks a model version must have passed.

Wiring layer (imports dagster, no stage module). The contract is data: for each gated asset, the names of its
blocking asset checks, upstream to downstream. Everything that reads gate outcomes takes its keys from here
(the training window, the accepted-versions walk, the deployment decision, the registry jobs), so stage
modules never import each other for them. ``mlops_assets_tests/test_architecture.py`` pins that this
contract equals the blocking checks :mod:`mlops_assets.definitions` actually defines for these assets: a
new blocking check must be declared here, or the test names it.
"""

import dagster as dg

from mlops_assets.ml import model_gates

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


def gate_keys(*assets: str) -> list[dg.AssetCheckKey]:
    """The check keys of the declared gates of ``assets``, in contract order.

    Raises:
        KeyError: an asset the contract does not declare.
    """
    return [dg.AssetCheckKey(dg.AssetKey(asset), name) for asset in assets for name in GATE_CONTRACT[asset]]


#: Gates judging data: a data version is *accepted* (may be trained on, compared with) when all passed.
DATA_GATES: list[dg.AssetCheckKey] = gate_keys(*DATA_ASSETS)
#: Gates judging one model version: each records its outcome in the registry for that version and artifact
#: digest, and every registry move to Staging or Production (and the rollout's final switch, and a rollback)
#: requires these outcomes passed (``required_gates``).
MODEL_GATES: list[dg.AssetCheckKey] = gate_keys(*MODEL_ASSETS)
#: Their names as the registry records them (``"<asset>:<check>"``).
MODEL_GATE_NAMES: tuple[str, ...] = tuple(key.to_user_string() for key in MODEL_GATES)
#: Every gate a version must pass to be promoted, upstream to downstream.
REQUIRED_GATES: list[dg.AssetCheckKey] = [*DATA_GATES, *MODEL_GATES]
