"""The model lifecycle's stages and the edges between them (None → Staging → Production → Archived).

Pure vocabulary shared by the decisions in :mod:`mlops_assets.ml.promotion` and the registry
(:mod:`mlops_assets.storage.registry`), which stores the members' string values.
"""

from enum import StrEnum


class Stage(StrEnum):
    """A version's stage. Members equal the strings stored in the database (``Stage.PRODUCTION == "Production"``)."""

    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"

    def can_move_to(self, target: "Stage | str") -> bool:
        """Whether ``self -> target`` is an edge of the stage machine (:data:`ALLOWED_TRANSITIONS`)."""
        return (self, target) in ALLOWED_TRANSITIONS


STAGES: tuple[Stage, ...] = tuple(Stage)

# Edges of the stage machine, declared once. None -> Archived is how a candidate is rejected;
# Archived -> Production is a rollback; Archived -> Staging re-stages an old version for another evaluation.
ALLOWED_TRANSITIONS: frozenset[tuple[Stage, Stage]] = frozenset(
    {
        (Stage.NONE, Stage.STAGING),
        (Stage.NONE, Stage.ARCHIVED),
        (Stage.STAGING, Stage.PRODUCTION),
        (Stage.STAGING, Stage.ARCHIVED),
        (Stage.PRODUCTION, Stage.ARCHIVED),
        (Stage.ARCHIVED, Stage.STAGING),
        (Stage.ARCHIVED, Stage.PRODUCTION),
    }
)
