"""The model registry in the UI: what ``<model>/model_registry`` shows, and why a version holds its stage.

Wiring helpers (not a stage): the asset itself is :mod:`mlops_assets.assets.registry`; the jobs
(:mod:`mlops_assets.jobs`, :mod:`mlops_assets.registry_jobs`) and the deployment pointers use these too. The
metadata is read from the registry, the one source of truth:

* ``audit_trail`` — the newest :data:`AUDIT_ROWS` events of the registry's audit log
  (:meth:`~mlops_assets.storage.registry.ModelRegistry.audit_log`: stage changes, alias moves, rollout moves,
  approvals and rejections), newest first, with ``audit_events`` (the total) beside it;
* ``versions`` — one row per model version, newest first: stage, aliases, artifact digest (short), the data
  versions it was trained on, its model gate evidence for that very artifact, its rejections and its rollout.

Every job that can change the registry materializes it: the lifecycle, ingest, labels and retrain jobs after
their deployment pointers (:data:`mlops_assets.jobs.POINTERS`), the promote, approve and rollback jobs with their
pointer events (:mod:`mlops_assets.registry_jobs`). A failed step abandons everything downstream of it in its run
(a failed blocking gate fails its step: Dagster 1.13 abandons the dependent steps, ``deployment_decision``
included), so the jobs also carry :func:`refresh_on_failure`: when a step fails, the hook reports a
materialization of the asset (runless, linked to the failed run in its metadata) with the registry as the failure
left it — a rejected candidate's record included.

:func:`placement` says why a version holds its stage (for ``production_deployment`` and ``staging_deployment``).
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from mlops_assets.assets.gating import table
from mlops_assets.gates import MODEL_GATE_NAMES
from mlops_assets.ml.gate_evidence import GateOutcome, judge_evidence
from mlops_assets.ml.rollout import TERMINAL_PHASES
from mlops_assets.model import MLModel
from mlops_assets.storage.registry import ModelRegistry, Stage

#: Audit events shown in ``audit_trail`` (newest first); ``audit_events`` gives the total.
AUDIT_ROWS = 50

#: Characters of a reason kept in a table cell (the full text is in the registry and its audit log).
REASON_CHARS = 240

#: The audit log's ``kind`` as the audit table's ``event``.
EVENTS = {"stage": "stage", "alias": "alias", "rollout": "rollout", "approval": "approval", "gate": "rejected"}

AUDIT_COLUMNS = {
    "time": "When the registry recorded it (UTC).",
    "actor": "Who: a person, an asset (mlops_assets/<asset>) or the run of a gate.",
    "event": "stage change, alias move, rollout move, approval, or rejected (an evaluation failed its gates).",
    "version": "The model version concerned.",
    "from → to": "What changed (a rejection names its failed gates; the stage does not move).",
    "reason": "Why, as recorded.",
    "run": "The run that made the change, when recorded.",
    "data_version": "The data version it was decided on, when recorded.",
}

VERSION_COLUMNS = {
    "version": "The model version.",
    "stage": "Its stage (None → Staging → Production → Archived).",
    "aliases": "Aliases naming it (champion = the Production version, challenger = the one in rollout).",
    "gates": "Its model gates' latest outcomes for this very artifact: passed, or what failed or is missing.",
    "rejected": "Its rejections: failed evaluations (data version: failed gates), newest first.",
    "rollout": "Its latest rollout as challenger: phase and traffic share.",
    "artifact": "The artifact's sha256 (first 12 hex digits).",
    "trained_on": "The data versions it was trained on.",
    "created": "When it was registered (UTC).",
    "marked_bad": "Why it is marked bad (never a rollback target), if it is.",
}


def _time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else str(value)


def _short(text: str, limit: int = REASON_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def audit_rows(registry: ModelRegistry, model_name: str, limit: int = AUDIT_ROWS) -> tuple[list[dict[str, Any]], int]:
    """The newest ``limit`` audit events of the model as table rows (newest first), and the number of events.

    Columns: :data:`AUDIT_COLUMNS`. Source: :meth:`ModelRegistry.audit_log`.
    """
    log = registry.audit_log(model_name)
    rows = []
    for entry in reversed(log[-limit:] if limit > 0 else []):
        evidence = entry.get("evidence") or {}
        rows.append(
            {
                "time": _time(entry["at"]),
                "actor": entry["actor"],
                "event": EVENTS.get(entry["kind"], entry["kind"]),
                "version": entry["version"],
                "from → to": entry["change"],
                "reason": _short(str(entry["reason"] or "")),
                "run": evidence.get("run_id") if isinstance(evidence, dict) else None,
                "data_version": evidence.get("data_version") if isinstance(evidence, dict) else None,
            }
        )
    return rows, len(log)


def _gate_summary(outcomes: dict[str, GateOutcome], version: int, sha: str) -> str:
    statuses = judge_evidence(list(MODEL_GATE_NAMES), outcomes, version=version, artifact_sha256=sha)
    bad = [s for s in statuses if s.status != "passed"]
    if not bad:
        return f"all {len(statuses)} passed"
    groups: dict[str, list[str]] = {}
    for s in bad:
        groups.setdefault(s.status, []).append(s.check.rsplit(":", 1)[-1])
    return "; ".join(f"{status}: {', '.join(names)}" for status, names in groups.items())


def version_rows(registry: ModelRegistry, model_name: str) -> list[dict[str, Any]]:
    """One table row per version of the model, newest first (columns: :data:`VERSION_COLUMNS`).

    Source: the registry's versions, aliases, gate results, rejections, rollout log and verdicts.
    """
    versions = registry.list_versions(model_name)
    named: dict[int, list[str]] = {}
    for alias, version in registry.aliases(model_name).items():
        named.setdefault(version, []).append(alias)
    latest: dict[int, dict[str, GateOutcome]] = {}
    for outcome in registry.gate_history(model_name):
        latest.setdefault(outcome.version, {})[outcome.gate] = outcome
    rejected: dict[int, list[str]] = {}
    for r in reversed(registry.rejections(model_name)):
        gates = ", ".join(g.rsplit(":", 1)[-1] for g, _m in r.failed_gates)
        rejected.setdefault(r.version, []).append(f"{r.data_version}: {gates}")
    rollout: dict[int, str] = {}
    for move in registry.rollout_log(model_name):
        rollout[move["challenger_version"]] = f"{move['to_phase']} {move['to_share']:g}"
    bad = registry.bad_versions(model_name)
    return [
        {
            "version": v.version,
            "stage": str(v.stage),
            "aliases": ", ".join(named.get(v.version, [])),
            "gates": _gate_summary(latest.get(v.version, {}), v.version, v.artifact_sha256),
            "rejected": "; ".join(rejected.get(v.version, [])),
            "rollout": rollout.get(v.version, ""),
            "artifact": v.artifact_sha256[:12],
            "trained_on": ", ".join(v.data_versions),
            "created": _time(v.created_at),
            "marked_bad": bad.get(v.version, ""),
        }
        for v in sorted(versions, key=lambda v: v.version, reverse=True)
    ]


def registry_metadata(registry: ModelRegistry, model_name: str, *, limit: int = AUDIT_ROWS) -> dict[str, Any]:
    """The ``model_registry`` asset's metadata (see the module docstring).

    Keys: ``production``, ``staging``, ``rollout``, ``versions_registered``, ``rejections``, ``audit_events``,
    ``audit_shown``, ``audit_trail`` (table) and ``versions`` (table).
    """
    trail, total = audit_rows(registry, model_name, limit)
    versions = version_rows(registry, model_name)
    production = registry.production_version(model_name)
    active = registry.get_rollout(model_name)
    rollout = (
        "none"
        if active is None
        else f"v{active.challenger_version} vs v{active.champion_version}: {active.phase.value} "
        f"{active.challenger_share:g}" + (" (ended)" if active.phase in TERMINAL_PHASES else "")
    )
    return {
        "production": f"v{production.version}" if production else "none",
        "staging": ", ".join(f"v{r['version']}" for r in versions if r["stage"] == Stage.STAGING) or "none",
        "rollout": rollout,
        "versions_registered": len(versions),
        "rejections": len(registry.rejections(model_name)),
        "audit_events": total,
        "audit_shown": len(trail),
        "audit_trail": table(trail, columns=list(AUDIT_COLUMNS), descriptions=AUDIT_COLUMNS),
        "versions": table(versions, columns=list(VERSION_COLUMNS), descriptions=VERSION_COLUMNS),
    }


def registry_materialization(
    model: MLModel, registry: ModelRegistry, *, run_id: str | None = None
) -> dg.AssetMaterialization:
    """A materialization of ``<model>/model_registry`` with :func:`registry_metadata` (for op jobs and the hook).

    ``run_id``: the run that changed the registry, linked in the metadata (``changed_by_run``).
    """
    metadata = registry_metadata(registry, model.name)
    if run_id:
        metadata["changed_by_run"] = dg.MetadataValue.dagster_run(run_id)
    return dg.AssetMaterialization(asset_key=model.key("model_registry"), metadata=metadata)


def refresh_on_failure(model: MLModel) -> dg.HookDefinition:
    """A failure hook refreshing ``<model>/model_registry`` when a step of a job fails (see the module docstring).

    The failure abandons the asset's own step, so the hook reports its materialization (runless: a hook has no
    step to attach it to; ``changed_by_run`` links the failed run). A registry the hook cannot read is logged,
    not raised: the run has failed already.
    """

    @dg.failure_hook(name=model.job_name("refresh_model_registry"), required_resource_keys={"registry"})
    def refresh(context: dg.HookContext) -> None:
        try:
            event = registry_materialization(model, context.resources.registry, run_id=context.run_id)
        except Exception as exc:  # the run failed already: never hide its error behind this one
            context.log.warning(f"{model.name}/model_registry not refreshed after the failure: {exc}")
            return
        context.instance.report_runless_asset_event(event)

    return refresh


def _classify(actor: str, reason: str, evidence: dict[str, Any]) -> str:
    if reason.startswith("rollout complete"):
        return "rollout finished (blue/green switch)"
    if reason.startswith("rollback from"):
        return "rollback (rollback job)" if evidence.get("by_hand") else "rollback"
    if evidence.get("by_hand"):
        return "promotion job (by hand)"
    if actor.endswith("/deployment_decision"):
        return "deployment decision"
    return f"by {actor}"


def placement(registry: ModelRegistry, model_name: str, version: int, stage: Stage | str) -> dict[str, Any]:
    """Why ``version`` holds ``stage``: the audit event that put it there, as metadata for a deployment pointer.

    Keys (``placed_*`` from the latest stage transition of ``version`` into ``stage``): ``placed_by`` (how:
    deployment decision, promotion job, rollout finished, rollback), ``placed_actor``, ``placed_at``,
    ``placed_reason``, and when recorded ``placed_run`` (run link), ``placed_data_version``, ``placed_gates``
    (the gate statuses its evidence cites), ``placed_rollout`` (the rollout that switched it in) and
    ``approval`` (the latest approval of the version for Production before the move). Empty when the registry
    logs no such move.
    """
    moves = [t for t in registry.transitions(model_name, version) if t.to_stage == stage]
    if not moves:
        return {}
    move = moves[-1]
    evidence = move.evidence if isinstance(move.evidence, dict) else {}
    out: dict[str, Any] = {
        "placed_by": _classify(move.actor, move.reason, evidence),
        "placed_actor": move.actor,
        "placed_at": _time(move.at),
        "placed_reason": _short(move.reason),
    }
    if evidence.get("run_id"):
        out["placed_run"] = dg.MetadataValue.dagster_run(str(evidence["run_id"]))
    if evidence.get("data_version"):
        out["placed_data_version"] = str(evidence["data_version"])
    gates: Sequence[Any] = evidence.get("gates") or ()
    if gates:
        statuses = [g.get("status") for g in gates if isinstance(g, dict)]
        out["placed_gates"] = f"{statuses.count('passed')}/{len(statuses)} passed"
    if "rollout_id" in evidence:
        out["placed_rollout"] = f"rollout {evidence['rollout_id']}"
        guards = (evidence.get("guards") or {}).get("status")
        if guards:
            out["placed_rollout"] += f" (last guards: {guards})"
    approvals = [a for a in registry.approvals(model_name, version) if a.stage == Stage.PRODUCTION and a.at <= move.at]
    if stage == Stage.PRODUCTION and approvals:
        a = approvals[-1]
        out["approval"] = f"{a.approver} at {_time(a.at)}: {_short(a.comment, 120)}"
    return out
