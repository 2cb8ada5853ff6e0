"""Transactional model registry on SQLAlchemy Core: SQLite locally, PostgreSQL in production.

A model version is an immutable record (artifact reference, lineage, params, metrics); only its
:class:`Stage` moves, along the edges in :data:`ALLOWED_TRANSITIONS` (declared once, over the enum; its
members equal the strings stored in the database). Every move is appended to
``stage_transitions`` in the same transaction as the stage change, so the log is the registry's
history and answers "what was in production at time T".

The database itself enforces what matters most, so that no code path (including a human with a SQL
prompt) can break it:

* at most one Production version per model (partial unique index);
* ``stage_transitions`` is append-only, and ``model_versions`` rows are never deleted and change only
  in ``stage`` (triggers);
* stages are one of :data:`STAGES` (check constraints).

Concurrency semantics: writes for one model are serialised (SQLite: ``BEGIN IMMEDIATE`` takes the
database write lock up front; PostgreSQL: a transaction-scoped advisory lock on the model name). Each
write therefore sees the latest committed state. Two promotions of different versions that race are
both legal and take effect one after the other: the second archives the first ("replaced by vN"). A
request that became invalid while it waited (promoting a version someone else just archived or
promoted) fails with :class:`InvalidTransition`. :class:`RegistryConflict` is raised when the database
refuses the write (unique index, lock timeout, serialisation failure): the invariant "never two
Production versions" never depends on the locking being right.

Deployment extensions (aliases, approvals, rollback) live in their own tables, created on first use
next to the original two, so an existing registry database gains them without a migration:

* ``model_aliases`` maps ``(model, alias)`` to a version; every change is appended to ``alias_log``
  in the same transaction. ``champion`` is not stored: it is derived from the Production stage, the one
  record of what is in production (reading it returns the Production version, none when nothing is in
  Production). Every promotion, rollback and retirement of Production still appends its ``champion``
  move to ``alias_log`` (the audit); a ``champion`` row an older registry left in ``model_aliases`` is
  ignored. ``set_alias`` refuses to point it anywhere else. ``challenger`` may not name the
  Production version and is cleared when its version is promoted. Other names are free pointers.
* ``approvals`` records who approved which version for which stage. ``model_policies`` holds each
  model's :class:`ApprovalPolicy` (latest row wins, older rows are the policy's history). Under
  ``require_approval_for_production`` a promotion without an approval of that version for
  Production is refused with :class:`ApprovalRequired`; under ``four_eyes`` the approver must not be
  the actor who registered the version. The policy lives in the database, not in the constructor,
  so every client of the registry (every process, every code version) enforces the same rule.
* ``version_verdicts`` marks versions bad (``mark_bad``, and automatically the version a
  :meth:`ModelRegistry.rollback` leaves) or clears the mark. A version marked bad is never a rollback
  target and cannot be promoted until cleared. Marking bad (or archiving) the challenger of the active
  rollout ends that rollout (rolled back, ``challenger`` cleared) in the same transaction.
* ``gate_results`` holds the outcome of every model gate per (model, version, artifact digest)
  (:meth:`ModelRegistry.record_gate_result`). Moves to Staging or Production, the rollout's final
  switch and a rollback take ``required_gates`` and refuse with :class:`GateEvidenceMissing`, inside
  their transaction, unless the latest outcome of each of those gates is of this very version and
  artifact and passed (:func:`mlops_assets.ml.gate_evidence.judge_evidence`). A version whose latest
  outcome of a gate failed stays refused until a new evaluation of it passes. A failed outcome also writes,
  in its transaction, the version's rejection record (``version_rejections``, once per failed evaluation: one
  artifact judged on one data version in one run), read back by :meth:`ModelRegistry.rejections` with the
  evaluation's failed gates and messages; the stage does not move.

``alias_log``, ``approvals``, ``model_policies``, ``version_verdicts``, ``gate_results`` and
``version_rejections`` are append-only in the database (triggers), like ``stage_transitions``.

Layout (one concern per module): :mod:`.types` (stages, errors, records), :mod:`.schema` (tables,
triggers), :mod:`.engine` (engines, transactions, locking), :mod:`.records` and :mod:`.statements`
(row encoding and single statements), :mod:`.moves` (promotion and the rollout effects of a change),
:mod:`.versions`, :mod:`.stages`, :mod:`.aliases`, :mod:`.approvals`, :mod:`.rollouts`, :mod:`.gates`
(the public methods of each concern, as mixins) and :mod:`.model_registry` (the :class:`ModelRegistry`
facade and the audit trail). Importing the registry does not import skops.
"""

from mlops_assets.ml.stages import ALLOWED_TRANSITIONS, STAGES, Stage
from mlops_assets.storage.registry.model_registry import ModelRegistry
from mlops_assets.storage.registry.types import (
    ALIAS_PATTERN,
    APPROVABLE_STAGES,
    CHALLENGER,
    CHAMPION,
    DEFAULT_LOCK_TIMEOUT_S,
    MAX_ALIAS_LENGTH,
    AliasChange,
    AliasNotFound,
    Approval,
    ApprovalPolicy,
    ApprovalRequired,
    FourEyesViolation,
    GateEvidenceMissing,
    InvalidAlias,
    InvalidTransition,
    Lineage,
    ModelVersion,
    NothingToRollBack,
    RegistryConflict,
    RegistryError,
    Rejection,
    Transition,
    VersionMarkedBad,
    VersionNotFound,
)

__all__ = [
    "ALIAS_PATTERN",
    "ALLOWED_TRANSITIONS",
    "APPROVABLE_STAGES",
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_LOCK_TIMEOUT_S",
    "MAX_ALIAS_LENGTH",
    "STAGES",
    "AliasChange",
    "AliasNotFound",
    "Approval",
    "ApprovalPolicy",
    "ApprovalRequired",
    "FourEyesViolation",
    "GateEvidenceMissing",
    "InvalidAlias",
    "InvalidTransition",
    "Lineage",
    "ModelRegistry",
    "ModelVersion",
    "NothingToRollBack",
    "RegistryConflict",
    "RegistryError",
    "Rejection",
    "Stage",
    "Transition",
    "VersionMarkedBad",
    "VersionNotFound",
]
