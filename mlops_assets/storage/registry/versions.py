"""Registering model versions and reading them, their stage log and production at a past instant."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select

from mlops_assets.storage.artifacts.store import ArtifactRef
from mlops_assets.storage.registry.engine import RegistryCore
from mlops_assets.storage.registry.records import dumps, loads, row_to_transition, row_to_version, utcnow
from mlops_assets.storage.registry.schema import model_versions, stage_transitions
from mlops_assets.storage.registry.statements import log_transition, select_version
from mlops_assets.storage.registry.types import Lineage, ModelVersion, Stage, Transition


class VersionsMixin(RegistryCore):
    """Versions (table ``model_versions``) and their stage log (``stage_transitions``)."""

    def register_version(
        self,
        model_name: str,
        artifact: ArtifactRef,
        lineage: Lineage,
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
        description: str = "",
        *,
        actor: str = "registry",
        fingerprint: str | None = None,
    ) -> ModelVersion:
        """Register a model artifact as the model's next version, in stage :attr:`Stage.NONE`.

        Idempotent: if this model already has a version with the same artifact digest — or, when ``fingerprint``
        is given, a version registered with the same ``params["training_fingerprint"]`` — that version is
        returned unchanged (params, metrics and lineage of the new call are ignored; compare the returned
        ``artifact_sha256`` with ``artifact.sha256`` to tell). The lookup and the insert happen under the model's
        write lock, so concurrent registrations of the same training (two runs of one data version, a rerun of a
        run killed after its insert) end with exactly one version.

        Args:
            model_name: Registered model name.
            artifact: The stored artifact.
            lineage: Data versions, run and code that produced it.
            params: Training parameters (JSON-serialisable).
            metrics: Evaluation metrics (JSON-serialisable).
            description: Free text.
            actor: Recorded on the registration log row.
            fingerprint: What identifies the training (data, spec, code, estimator, parameters, predictions);
                stored as ``params["training_fingerprint"]`` (it must equal that value when both are given).

        Returns:
            The new (or existing) version.

        Raises:
            RegistryConflict: The database refused the write.
        """
        if not model_name:
            raise ValueError("model_name must be non-empty")
        if fingerprint is not None and params.get("training_fingerprint", fingerprint) != fingerprint:
            raise ValueError("fingerprint differs from params['training_fingerprint']")
        params = {**params, "training_fingerprint": fingerprint} if fingerprint is not None else params
        # Serialise before opening the transaction so a bad value fails fast without holding the lock.
        params_json = dumps(dict(params))
        metrics_json = dumps(dict(metrics))
        with self._write(model_name, None, "registering") as conn:
            existing = conn.execute(
                select(model_versions).where(
                    model_versions.c.model_name == model_name,
                    model_versions.c.artifact_sha256 == artifact.sha256,
                )
            ).first()
            if existing is not None:
                return row_to_version(existing)
            if fingerprint is not None:
                # The model's versions are few; its params are JSON text, matched exactly in Python.
                for row in conn.execute(
                    select(model_versions)
                    .where(model_versions.c.model_name == model_name)
                    .order_by(model_versions.c.version.desc())
                ).all():
                    if loads(row.params).get("training_fingerprint") == fingerprint:
                        return row_to_version(row)
            # Allocated under the model's lock, so concurrent registrations get 1, 2, 3, ... without gaps.
            version = int(
                conn.execute(
                    select(func.coalesce(func.max(model_versions.c.version), 0) + 1).where(
                        model_versions.c.model_name == model_name
                    )
                ).scalar_one()
            )
            now = utcnow()
            conn.execute(
                insert(model_versions).values(
                    model_name=model_name,
                    version=version,
                    stage=Stage.NONE,
                    artifact_uri=artifact.uri,
                    artifact_sha256=artifact.sha256,
                    artifact_size=artifact.size,
                    artifact_hmac=artifact.hmac,
                    data_versions=dumps(list(lineage.data_versions)),
                    run_id=lineage.run_id,
                    code_version=lineage.package_version,
                    git_sha=lineage.git_sha,
                    spec_fingerprint=lineage.spec_fingerprint,
                    params=params_json,
                    metrics=metrics_json,
                    created_at=now,
                    description=description,
                )
            )
            log_transition(
                conn,
                model_name=model_name,
                version=version,
                from_stage=None,
                to_stage=Stage.NONE,
                actor=actor,
                reason="registered",
                evidence={"artifact_sha256": artifact.sha256, "run_id": lineage.run_id},
                at=now,
            )
            return select_version(conn, model_name, version)

    def get_version(self, model_name: str, version: int) -> ModelVersion:
        """Return one version.

        Raises:
            VersionNotFound: No such version.
        """
        with self._read() as conn:
            return select_version(conn, model_name, version)

    def list_versions(self, model_name: str) -> list[ModelVersion]:
        """Return all versions of a model, oldest first (empty for an unknown model)."""
        with self._read() as conn:
            rows = conn.execute(
                select(model_versions)
                .where(model_versions.c.model_name == model_name)
                .order_by(model_versions.c.version)
            ).all()
        return [row_to_version(r) for r in rows]

    def production_version(self, model_name: str) -> ModelVersion | None:
        """Return the model's Production version, or ``None``."""
        with self._read() as conn:
            row = conn.execute(
                select(model_versions).where(
                    model_versions.c.model_name == model_name, model_versions.c.stage == Stage.PRODUCTION
                )
            ).first()
        return None if row is None else row_to_version(row)

    def versions_for_data_version(self, model_name: str, data_version: str) -> list[ModelVersion]:
        """Return the versions trained on ``data_version``, oldest first."""
        # data_versions is JSON text; filtering in Python is exact and a model has few versions.
        return [v for v in self.list_versions(model_name) if data_version in v.data_versions]

    def transitions(self, model_name: str, version: int | None = None) -> list[Transition]:
        """Return the stage log of a model (or of one version), in the order it was written."""
        query = select(stage_transitions).where(stage_transitions.c.model_name == model_name)
        if version is not None:
            query = query.where(stage_transitions.c.version == version)
        with self._read() as conn:
            rows = conn.execute(query.order_by(stage_transitions.c.id)).all()
        return [row_to_transition(r) for r in rows]

    def history(self, model_name: str) -> list[Transition]:
        """Return the model's whole stage log, oldest first (same as ``transitions(model_name)``)."""
        return self.transitions(model_name)

    def production_at(self, model_name: str, when: datetime) -> int | None:
        """Return the version that was in Production at ``when`` (inclusive), from the log.

        Args:
            model_name: Registered model name.
            when: Timezone-aware instant.

        Returns:
            The version number, or ``None`` if nothing was in Production then.
        """
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"production_at({model_name!r}): pass a timezone-aware datetime, got {when!r}")
        # The last log row touching Production at or before `when` decides: a move into Production
        # names the version, a move out of it means nothing was in Production (a replacement writes
        # the archive row before the promotion row, so the promotion is last).
        with self._read() as conn:
            row = conn.execute(
                select(stage_transitions.c.version, stage_transitions.c.to_stage)
                .where(
                    stage_transitions.c.model_name == model_name,
                    stage_transitions.c.at <= when,
                    or_(
                        stage_transitions.c.to_stage == Stage.PRODUCTION,
                        stage_transitions.c.from_stage == Stage.PRODUCTION,
                    ),
                )
                .order_by(stage_transitions.c.id.desc())
                .limit(1)
            ).first()
        if row is None or row.to_stage != Stage.PRODUCTION:
            return None
        return int(row.version)
