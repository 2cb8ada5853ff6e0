"""What a model's landing and labels sensors request, decided from what they listed. Pure, no Dagster, no I/O.

:func:`plan_landing` turns one listing of a model's landing zone into its new data versions: each landed file
whose bytes (their sha256, through a ``digest_of`` callable) are not yet a registered data version becomes one
version key (:func:`~mlops_assets.ml.versions.version_key`) and one planned run, of the lifecycle job (it
trains, :func:`trains_on_new_data`) or of the ingest job. :func:`plan_labels` turns one listing of a model's
labels zone into labels runs, one per new or changed labels file whose data version has landed
(:func:`labels_target`).

Both sensors keep a cursor of ``{file name: [size, mtime_ns, sha256]}`` (JSON, sorted keys): a file listed with
the same size and modification time as in the cursor is not hashed again. The sensors do the listing, the
hashing (``digest_of``) and the instance and registry queries (passed as callables, called only when needed:
the training decision once, at the first new version; the landing generation once per new version).
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mlops_assets.ml import json_codec, labels
from mlops_assets.ml.triggers import RetrainPolicy
from mlops_assets.ml.versions import digest_of_key, version_key


class Listed(Protocol):
    """A file as a landing zone lists it (:class:`mlops_assets.resources.LandedFile`): no content read."""

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def mtime_ns(self) -> int: ...


@dataclass(frozen=True)
class NewVersion:
    """A landed file that becomes a new data version, and the run the landing sensor requests for it.

    Attributes:
        file_name: The landed file.
        key: Its data version key (the partition added and run).
        generation: How many times this key has landed, this landing included.
        trains: Whether the run is the lifecycle job (trains), else the ingest job.
        training: The training decision in words (why it trains, or why not).
        run_key: The run key: the key, the release and the generation (a failed run does not block a fixed
            release from retrying; a version re-created after its partition was deleted runs again).
    """

    file_name: str
    key: str
    generation: int
    trains: bool
    training: str
    run_key: str


@dataclass(frozen=True)
class LandingPlan:
    """One tick of a landing sensor.

    Attributes:
        versions: The new data versions, in listing order.
        cursor: The cursor to store: every listed file with its size, mtime and digest.
        skip_reason: Why nothing is requested (``None`` when something is).
    """

    versions: tuple[NewVersion, ...]
    cursor: str
    skip_reason: str | None

    @property
    def new_keys(self) -> list[str]:
        """The keys of the new data versions, the partitions to add."""
        return [v.key for v in self.versions]


@dataclass(frozen=True)
class LabelsRun:
    """A labels file and the labels run requested for it.

    Attributes:
        file_name: The landed labels file.
        target: The data version it labels (the partition run).
        run_key: ``new_labels:<target>:<first 12 digest digits>:<release>``: the same bytes never run twice.
    """

    file_name: str
    target: str
    run_key: str


@dataclass(frozen=True)
class LabelsPlan:
    """One tick of a labels sensor.

    Attributes:
        runs: The labels runs, in listing order.
        waiting: Files whose data version has not landed yet (left out of the cursor: looked at again next tick).
        cursor: The cursor to store.
        skip_reason: Why nothing is requested (``None`` when something is).
    """

    runs: tuple[LabelsRun, ...]
    waiting: tuple[str, ...]
    cursor: str
    skip_reason: str | None


def known_digests(registered: Iterable[str]) -> set[str]:
    """Short digests of the registered data version keys (a key of another naming scheme is not ours to dedupe)."""
    digests = set()
    for key in registered:
        try:
            digests.add(digest_of_key(key))
        except ValueError:  # a partition added by hand with another naming scheme
            continue
    return digests


def lost_landings(
    stored_cursor: str | None, new_cursor: str, registered: Iterable[str], materialized: Iterable[str]
) -> list[tuple[str, str]]:
    """``(file name, key)`` of listed files whose data version is registered but whose landing tick never completed.

    Dagster's sensor daemon adds a tick's partitions before it creates the tick's runs, and stores the cursor only
    when the tick completes: a tick lost in between (the database gone for longer than its retries) leaves a
    registered version no run was requested for, and its file missing from the stored cursor. Such a file is one
    listed now (``new_cursor``, which has every listed file's digest) and absent from ``stored_cursor``, whose key
    is registered and was never materialized. The caller requests its run again only if no run names it (the run
    key is the one the lost tick used, so a run that was created after all is not duplicated).
    """
    seen: dict[str, Any] = json_codec.loads(stored_cursor) if stored_cursor else {}
    listed: dict[str, list[Any]] = json_codec.loads(new_cursor)
    known, done = set(registered), set(materialized)
    lost = []
    for name, (_size, _mtime, digest) in sorted(listed.items()):
        key = version_key(name, digest)
        if name not in seen and key in known and key not in done:
            lost.append((name, key))
    return lost


def trains_on_new_data(
    production_version: object | None, retraining: RetrainPolicy | None, *, labels_required: bool = True
) -> tuple[bool, str]:
    """Whether a new data version should also train, and why: nothing in production yet, or the spec asks for it.

    A retrain waits for labels: with ``labels_required`` false (spec ``label.required: false``) a landed version
    never trains at landing; it trains once its labels make it labelled (the model's labelled sensor,
    :func:`trains_when_labelled`).

    Args:
        production_version: The model's version now in production, ``None`` when there is none.
        retraining: The spec's ``retraining`` section (``None``: the spec has none).
        labels_required: The spec's ``label.required``.
    """
    if not labels_required:
        return False, (
            "label.required is false: the version may come without labels; training waits until the labels stream "
            "makes it labelled (policy.data.min_labelled_share)"
        )
    if production_version is None:
        return True, "bootstrap: no model in production yet"
    if retraining is not None and "new_data" in retraining.triggers:
        return True, "retraining.triggers includes new_data"
    return False, "production model serves; retraining is left to the drift, performance and freshness sensors"


def trains_when_labelled(production_version: object | None, retraining: RetrainPolicy | None) -> tuple[bool, str]:
    """Whether a data version that just became labelled (``label.required: false``) should train, and why.

    The landing rule, applied when the labels arrive instead of when the data lands: nothing in production yet
    (bootstrap), or ``retraining.triggers`` includes ``new_data``.
    """
    return trains_on_new_data(production_version, retraining, labels_required=True)


def nothing_new(zone_uri: str, n_files: int) -> str:
    """Why a landing tick requests nothing, with ``n_files`` listed in the zone at ``zone_uri``."""
    if not n_files:
        return f"no data files in the landing zone {zone_uri}"
    return (
        f"no new data: the {n_files} landed file(s) in {zone_uri} are all already registered as data "
        "versions (same bytes as an existing partition); delete a version's partition to land its bytes again"
    )


def plan_landing(
    listed: Sequence[Listed],
    cursor: str | None,
    registered: Iterable[str],
    digest_of: Callable[[str], str],
    *,
    trains: Callable[[], tuple[bool, str]],
    generation_of: Callable[[str], int],
    release: str,
    zone_uri: str,
) -> LandingPlan:
    """The new data versions of one landing listing, the runs to request and the next cursor.

    A listed file is hashed (``digest_of(name)``) unless the cursor has it with the same size and mtime. Its
    bytes are new when the first 12 digits of its digest are not those of a registered key (nor of a file
    listed before it in this tick: the same bytes under two names land once).

    Args:
        listed: The zone's files, in listing order.
        cursor: The stored cursor (``None`` or empty on the first tick). An unreadable one raises
            ``json_codec.JSONDecodeError``.
        registered: The model's registered data version keys.
        digest_of: The full sha256 hex digest of a listed file, by name.
        trains: The training decision (:func:`trains_on_new_data`); called once, at the first new version.
        generation_of: How many times a key has landed, this landing included; called once per new version.
        release: The code release, put in the run keys.
        zone_uri: Where the zone is, for the skip reason.
    """
    seen: dict[str, Any] = json_codec.loads(cursor) if cursor else {}
    known = known_digests(registered)
    current: dict[str, list[Any]] = {}
    versions: list[NewVersion] = []
    train: tuple[bool, str] | None = None
    for landed in listed:
        cached = seen.get(landed.name)
        if cached and cached[0] == landed.size and cached[1] == landed.mtime_ns:
            digest = cached[2]
        else:
            digest = digest_of(landed.name)
        current[landed.name] = [landed.size, landed.mtime_ns, digest]
        short = digest[:12]
        if short in known:
            continue
        known.add(short)
        key = version_key(landed.name, digest)
        if train is None:
            train = trains()
        generation = generation_of(key)
        run_key = f"new_data:{key}:{release}:landing-{generation}"
        versions.append(NewVersion(landed.name, key, generation, train[0], train[1], run_key))
    return LandingPlan(
        versions=tuple(versions),
        cursor=json_codec.dumps(current, sort_keys=True),
        skip_reason=None if versions else nothing_new(zone_uri, len(listed)),
    )


def labels_target(version_keys: Sequence[str], file_name: str) -> str | None:
    """The data version a labels file is for (:func:`mlops_assets.ml.labels.labels_target`): the version key or the
    data file's stem, optionally followed by ``.<part>`` (several partial files for one version); for a stem, the
    newest version landed under it."""
    return labels.labels_target(version_keys, file_name)


def plan_labels(
    listed: Iterable[Listed],
    cursor: str | None,
    version_keys: Sequence[str],
    digest_of: Callable[[str], str],
    release: str,
) -> LabelsPlan:
    """The labels runs of one labels listing and the next cursor.

    A file with the same size and mtime as in the cursor is done. Any other file whose data version has
    landed (:func:`labels_target`) is hashed and gets one run; one whose version has not landed waits.

    Args:
        listed: The labels zone's files, in listing order.
        cursor: The stored cursor (``None`` or empty on the first tick).
        version_keys: The model's registered data version keys, in landing order.
        digest_of: The full sha256 hex digest of a listed file, by name.
        release: The code release, put in the run keys.
    """
    seen: dict[str, Any] = json_codec.loads(cursor) if cursor else {}
    current: dict[str, Any] = {}
    runs: list[LabelsRun] = []
    waiting: list[str] = []
    for landed in listed:
        cached = seen.get(landed.name)
        if cached and cached[0] == landed.size and cached[1] == landed.mtime_ns:
            current[landed.name] = cached
            continue
        target = labels_target(version_keys, landed.name)
        if target is None:
            waiting.append(landed.name)  # not in the cursor: looked at again next tick
            continue
        digest = digest_of(landed.name)
        current[landed.name] = [landed.size, landed.mtime_ns, digest]
        runs.append(LabelsRun(landed.name, target, f"new_labels:{target}:{digest[:12]}:{release}"))
    return LabelsPlan(
        runs=tuple(runs),
        waiting=tuple(waiting),
        cursor=json_codec.dumps(current, sort_keys=True),
        skip_reason=None if runs else "no new labels" + (f" ({len(waiting)} waiting for data)" if waiting else ""),
    )
