"""The one move decision (:func:`mlops_assets.ml.promotion.decide_move`), rule by rule, for every kind of move.

``deployment_decision`` (automatic) and ``<model>__promote_job`` / ``<model>__rollback_job`` (by hand) both
decide through it; these tests pin each branch's outcome, reasons (the exact messages) and stage moves, and
when the artifact is (and is not) verified.
"""

from collections.abc import Callable

import pytest

from mlops_assets.ml.promotion import (
    MOVED,
    PROMOTED,
    REFUSED,
    REJECTED,
    ROLLOUT_STARTED,
    UNCHANGED,
    GateStatus,
    Move,
    MoveDecision,
    comparison_refusal,
    decide_move,
    gate_refusals,
)

pytestmark = pytest.mark.core

PASSED = [GateStatus("raw_data:schema_valid", "passed"), GateStatus("model_evaluation:metric_above_floor", "passed")]
FAILED_FLOOR = GateStatus("model_evaluation:metric_above_floor", "failed", "v3, run r1, data version d1")


class Artifact:
    """An ``artifact_refusal`` that counts its calls and refuses with ``message`` (None: verifies)."""

    def __init__(self, message: str | None = None) -> None:
        self.message = message
        self.calls = 0

    def __call__(self) -> str | None:
        self.calls += 1
        return self.message


def _decide(
    move: Move,
    *,
    version: int = 3,
    stage: str = "None",
    gates: list[GateStatus] | None = None,
    evaluated: int | None = 3,
    production: int | None = None,
    compared: int | None = None,
    known: bool = True,
    artifact: Callable[[], str | None] | None = None,
) -> MoveDecision:
    return decide_move(
        move,
        version=version,
        stage=stage,
        gates=PASSED if gates is None else gates,
        evaluated_version=evaluated,
        production_now=production,
        compared_with_production=compared,
        comparison_known=known,
        artifact_refusal=artifact or Artifact(),
    )


# --- automatic (deployment_decision) ------------------------------------------------------------------------------


@pytest.mark.parametrize(("stage", "stages"), [("None", ("Staging", "Production")), ("Staging", ("Production",))])
def test_automatic_promotes_at_once_when_nothing_serves(stage: str, stages: tuple[str, ...]) -> None:
    artifact = Artifact()
    d = _decide(Move.AUTOMATIC, stage=stage, artifact=artifact)
    assert (d.allowed, d.promote, d.outcome, d.stages) == (True, True, PROMOTED, stages)
    assert d.reasons == ("all 2 gates passed",)
    assert artifact.calls == 1 and not d.artifact_refused


@pytest.mark.parametrize(("stage", "stages"), [("None", ("Staging",)), ("Staging", ())])
def test_automatic_starts_a_rollout_against_the_champion(stage: str, stages: tuple[str, ...]) -> None:
    d = _decide(Move.AUTOMATIC, stage=stage, production=2, compared=2)
    assert (d.allowed, d.outcome, d.stages) == (True, ROLLOUT_STARTED, stages)
    assert d.reasons == ("all 2 gates passed",)


@pytest.mark.parametrize("stage", ["Production", "Archived"])
def test_automatic_leaves_a_version_already_served_or_archived_unchanged_without_reading_its_artifact(
    stage: str,
) -> None:
    artifact = Artifact("would refuse")
    d = _decide(Move.AUTOMATIC, stage=stage, production=2, compared=2, artifact=artifact)
    assert (d.allowed, d.outcome, d.stages, d.reasons) == (True, UNCHANGED, (), ("all 2 gates passed",))
    assert artifact.calls == 0


@pytest.mark.parametrize(("stage", "stages"), [("None", ("Archived",)), ("Staging", ()), ("Production", ())])
def test_automatic_rejects_a_failed_gate_and_archives_only_a_version_never_staged(
    stage: str, stages: tuple[str, ...]
) -> None:
    artifact = Artifact()
    d = _decide(Move.AUTOMATIC, stage=stage, gates=[PASSED[0], FAILED_FLOOR], artifact=artifact)
    assert (d.allowed, d.promote, d.outcome, d.stages) == (False, False, REJECTED, stages)
    assert d.reasons == ("gate model_evaluation:metric_above_floor is failed (v3, run r1, data version d1)",)
    assert artifact.calls == 0


def test_automatic_refuses_an_evaluation_of_another_version_even_with_every_gate_passed() -> None:
    d = _decide(Move.AUTOMATIC, evaluated=2)
    assert (d.allowed, d.outcome, d.reasons) == (False, REJECTED, ("evaluation is of v2, not v3",))


def test_automatic_refuses_no_gates_and_a_production_that_changed_in_that_order() -> None:
    d = _decide(Move.AUTOMATIC, gates=[], evaluated=2, production=4, compared=2, stage="Staging")
    assert d.reasons == (
        "evaluation is of v2, not v3",
        "no gate results to verify: refusing to promote unverified",
        "production changed since evaluation (compared with v2, now v4): re-evaluate before promoting",
    )
    assert (d.outcome, d.stages) == (REJECTED, ())


def test_automatic_refuses_an_artifact_that_does_not_verify_and_archives_it_when_never_staged() -> None:
    d = _decide(Move.AUTOMATIC, artifact=Artifact("synthetic v3: stored artifact does not verify"))
    assert (d.allowed, d.outcome, d.stages, d.artifact_refused) == (False, REJECTED, ("Archived",), True)
    assert d.reasons == ("synthetic v3: stored artifact does not verify",)
    staged = _decide(Move.AUTOMATIC, stage="Staging", artifact=Artifact("bad bytes"))
    assert (staged.outcome, staged.stages, staged.reasons) == (REJECTED, (), ("bad bytes",))


# --- by hand (promote_job, rollback_job) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("move", "stage", "stages"),
    [
        (Move.STAGING, "None", ("Staging",)),
        (Move.PRODUCTION, "None", ("Staging", "Production")),
        (Move.PRODUCTION, "Staging", ("Production",)),
        (Move.ROLLBACK, "Archived", ()),
    ],
)
def test_by_hand_moves_a_version_whose_evidence_passed(move: Move, stage: str, stages: tuple[str, ...]) -> None:
    artifact = Artifact()
    d = _decide(move, stage=stage, production=2, compared=2, artifact=artifact)
    assert (d.allowed, d.outcome, d.stages, d.reasons) == (True, MOVED, stages, ("all 2 gates passed",))
    assert artifact.calls == 1


def test_by_hand_names_each_gate_without_the_gate_prefix_and_never_reads_the_artifact() -> None:
    artifact = Artifact()
    d = _decide(Move.STAGING, gates=[PASSED[0], FAILED_FLOOR], artifact=artifact)
    assert (d.allowed, d.outcome, d.stages) == (False, REFUSED, ())
    assert d.reasons == ("model_evaluation:metric_above_floor is failed (v3, run r1, data version d1)",)
    assert artifact.calls == 0


def test_by_hand_staging_may_rely_on_its_own_gates_when_a_later_evaluation_judged_another_version() -> None:
    assert _decide(Move.STAGING, evaluated=4).allowed
    assert _decide(Move.ROLLBACK, evaluated=4).allowed


def test_by_hand_names_the_evaluation_mismatch_first_only_to_explain_a_refusal() -> None:
    d = _decide(Move.STAGING, gates=[FAILED_FLOOR], evaluated=4)
    assert d.reasons == (
        "evaluation is of v4, not v3",
        "model_evaluation:metric_above_floor is failed (v3, run r1, data version d1)",
    )
    assert _decide(Move.STAGING, gates=[]).reasons == ("no gate results to verify",)


def test_by_hand_production_refuses_an_unknown_comparison_with_production() -> None:
    d = _decide(Move.PRODUCTION, evaluated=4, known=False)
    assert d.reasons == (
        "the production version v3's evaluation compared against is unknown (the latest evaluation of its data "
        "version is of v4): re-evaluate before promoting",
    )
    none_found = _decide(Move.PRODUCTION, evaluated=None, known=False)
    assert "is of none found)" in none_found.reasons[0]


def test_by_hand_production_refuses_a_production_that_changed_since_the_evaluation_after_the_gates() -> None:
    d = _decide(Move.PRODUCTION, gates=[FAILED_FLOOR], production=5, compared=2)
    assert d.reasons == (
        "model_evaluation:metric_above_floor is failed (v3, run r1, data version d1)",
        "production changed since evaluation (compared with v2, now v5): re-evaluate before promoting",
    )
    assert _decide(Move.PRODUCTION, production=3, compared=2).allowed  # the version itself serves now


@pytest.mark.parametrize("move", [Move.STAGING, Move.ROLLBACK])
def test_only_production_by_hand_asks_about_the_comparison(move: Move) -> None:
    assert _decide(move, production=5, compared=2, known=False).allowed


@pytest.mark.parametrize("move", [Move.STAGING, Move.PRODUCTION, Move.ROLLBACK])
def test_by_hand_refuses_an_artifact_that_does_not_verify(move: Move) -> None:
    d = _decide(move, artifact=Artifact("digest mismatch"))
    assert (d.allowed, d.outcome, d.reasons, d.stages, d.artifact_refused) == (
        False,
        REFUSED,
        ("digest mismatch",),
        (),
        True,
    )


def test_moves_by_hand_are_named_by_their_target_stage() -> None:
    assert Move("Staging") is Move.STAGING
    assert Move("Production") is Move.PRODUCTION
    assert Move("Production (rollback)") is Move.ROLLBACK


# --- the rules the registry-side evidence delegates to --------------------------------------------------------------


def test_gate_refusals_and_comparison_refusal_directly() -> None:
    assert gate_refusals(PASSED, 4, 3) == []
    assert gate_refusals([GateStatus("g", "missing")], None, 3) == ["g is missing"]
    assert comparison_refusal(3, 3, True, 2, 2) is None
    assert comparison_refusal(3, 3, True, None, None) is None
    assert comparison_refusal(3, 3, True, None, 1) == (
        "production changed since evaluation (compared with none, now v1): re-evaluate before promoting"
    )
