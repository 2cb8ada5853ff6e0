"""Model aliases (``champion``, ``challenger`` and free pointers) and their log.

``champion`` is not stored: it is derived from the Production stage (the one source of truth of what is
in production). Promotions and rollbacks still log its moves in ``alias_log`` for the audit; a
``champion`` row left in ``model_aliases`` by an older registry is ignored.
"""

from sqlalchemy import select

from mlops_assets.storage.registry.engine import RegistryCore
from mlops_assets.storage.registry.records import (
    check_alias_name,
    label,
    require_actor_reason,
    row_to_alias_change,
    row_to_version,
    utcnow,
)
from mlops_assets.storage.registry.schema import alias_log, model_aliases, model_versions
from mlops_assets.storage.registry.statements import alias_version, move_alias, production_of, select_version
from mlops_assets.storage.registry.types import CHALLENGER, CHAMPION, AliasChange, InvalidAlias, ModelVersion, Stage


class AliasesMixin(RegistryCore):
    """Aliases (table ``model_aliases``) and their history (``alias_log``)."""

    def set_alias(self, model_name: str, alias: str, version: int, *, actor: str, reason: str) -> ModelVersion:
        """Point ``alias`` at ``version`` (creating or moving it) and log the change.

        ``champion`` is the Production version by definition (moved only by promotions and rollbacks):
        setting it to the Production version is a no-op, anything else is refused. ``challenger`` may
        not name the Production version. Setting an alias to the version it already names changes and
        logs nothing.

        Returns:
            The version the alias now names.

        Raises:
            InvalidAlias: Malformed name, or a target the alias may not have.
            VersionNotFound: No such version.
        """
        check_alias_name(model_name, alias)
        require_actor_reason(f"setting alias {alias!r} of {label(model_name, version)}", actor, reason)
        with self._write(model_name, version, f"setting alias {alias!r} to") as conn:
            target = select_version(conn, model_name, version)
            if alias == CHAMPION and target.stage != Stage.PRODUCTION:
                raise InvalidAlias(
                    f"{label(model_name, version)}: {CHAMPION!r} always names the Production version; "
                    "promote with transition() or promote_challenger(), or use rollback()",
                    model_name=model_name,
                    version=version,
                )
            if alias == CHALLENGER and target.stage == Stage.PRODUCTION:
                raise InvalidAlias(
                    f"{label(model_name, version)} is the Production version (the champion); it cannot be "
                    f"the {CHALLENGER!r}",
                    model_name=model_name,
                    version=version,
                )
            if alias == CHAMPION:
                return target  # already true: the champion is the Production version
            move_alias(conn, model_name, alias, version, actor=actor, reason=reason, evidence={}, at=utcnow())
            return target

    def delete_alias(self, model_name: str, alias: str, *, actor: str, reason: str) -> int | None:
        """Remove ``alias`` and log it.

        Returns:
            The version the alias named, or ``None`` if the model had no such alias (nothing logged).

        Raises:
            InvalidAlias: Malformed name, or ``champion`` while there is a Production version.
        """
        check_alias_name(model_name, alias)
        require_actor_reason(f"deleting alias {alias!r} of {label(model_name, None)}", actor, reason)
        with self._write(model_name, None, f"deleting alias {alias!r} of") as conn:
            version = alias_version(conn, model_name, alias)
            if version is None:
                return None
            if alias == CHAMPION:
                # Only reachable while a Production version exists (the alias is derived from it).
                raise InvalidAlias(
                    f"{label(model_name, version)}: {CHAMPION!r} names the Production version and goes away "
                    "only when Production is archived",
                    model_name=model_name,
                    version=version,
                )
            move_alias(conn, model_name, alias, None, actor=actor, reason=reason, evidence={}, at=utcnow())
            return version

    def get_alias(self, model_name: str, alias: str) -> ModelVersion | None:
        """Return the version ``alias`` names, or ``None`` if the model has no such alias.

        ``champion`` returns the Production version (``None`` when nothing is in Production).
        """
        check_alias_name(model_name, alias)
        with self._read() as conn:
            if alias == CHAMPION:
                production = production_of(conn, model_name)
                return None if production is None else select_version(conn, model_name, production)
            row = conn.execute(
                select(model_versions)
                .join(
                    model_aliases,
                    (model_aliases.c.model_name == model_versions.c.model_name)
                    & (model_aliases.c.version == model_versions.c.version),
                )
                .where(model_aliases.c.model_name == model_name, model_aliases.c.alias == alias)
            ).first()
        return None if row is None else row_to_version(row)

    def aliases(self, model_name: str) -> dict[str, int]:
        """Return the model's aliases and the versions they name (``champion``: the Production version, if any)."""
        with self._read() as conn:
            rows = conn.execute(
                select(model_aliases.c.alias, model_aliases.c.version)
                .where(model_aliases.c.model_name == model_name, model_aliases.c.alias != CHAMPION)
                .order_by(model_aliases.c.alias)
            ).all()
            production = production_of(conn, model_name)
        named = {r.alias: int(r.version) for r in rows}
        if production is not None:
            named[CHAMPION] = production
        return dict(sorted(named.items()))

    def alias_history(self, model_name: str, alias: str | None = None) -> list[AliasChange]:
        """Return the alias log of a model (or of one alias), in the order it was written."""
        query = select(alias_log).where(alias_log.c.model_name == model_name)
        if alias is not None:
            query = query.where(alias_log.c.alias == alias)
        with self._read() as conn:
            rows = conn.execute(query.order_by(alias_log.c.id)).all()
        return [row_to_alias_change(r) for r in rows]
