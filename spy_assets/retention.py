"""Retention: remove landing files and raw partitions past their maximum age, never data that
has not been consolidated.

The ages come from ``SPY_ASSETS_RETENTION`` (:func:`spy_assets.config.load`); nothing is old
enough to remove when it is unset. A session is past its age when its date is more than that
many days before today. Even then it is kept while it is *unconsolidated*:

- landing batches of a dataset and session whose raw partition is missing, unreadable, or older
  than one of the batches (the batch has not been stored yet);
- the raw partitions of a session in which any raw partition has a landing batch newer than
  itself, or downstream partitions (every dataset built from it, directly or not) that are
  missing, unreadable or older than it (they were not built from it yet). This is decided per
  session, because rebuilding any derived partition needs every raw partition of its session.

:func:`plan_purge` only looks; :func:`apply_purge` deletes what a plan lists, logs each removal
and appends it to ``<data dir>/purge.log`` (one JSON line per removal).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from spy_assets import calendar
from spy_assets.datasets import RAW, DatasetSpec
from spy_assets.errors import MissingPartitionError, UnknownDatasetError
from spy_assets.landing import LandingZone
from spy_assets.storage import Dataset, Storage

log = logging.getLogger(__name__)

LANDING, RAW_PARTITION = "landing", "raw"
Kind = Literal["landing", "raw"]


@dataclass(frozen=True)
class RetentionPolicy:
    """Maximum age in days per target: ``landing``/``raw`` for every dataset, and
    ``landing/<dataset>``/``<dataset>`` for one (the more specific rule wins)."""

    rules: Mapping[str, int] = field(default_factory=dict)

    def max_age(self, kind: Kind, dataset: str) -> int | None:
        specific = f"landing/{dataset}" if kind == LANDING else dataset
        return self.rules.get(specific, self.rules.get(kind))

    @property
    def keeps_everything(self) -> bool:
        return not self.rules


@dataclass(frozen=True)
class Removal:
    """Files of one dataset and session that the purge removes."""

    kind: Kind
    dataset: str
    session: dt.date
    paths: tuple[Path, ...]
    bytes: int


@dataclass(frozen=True)
class Kept:
    """A session past its age that is kept, and why."""

    kind: Kind
    dataset: str
    session: dt.date
    reason: str


@dataclass
class PurgePlan:
    removals: list[Removal] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    policy: RetentionPolicy = field(default_factory=RetentionPolicy)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.removals)

    @property
    def files(self) -> int:
        return sum(len(r.paths) for r in self.removals)

    def to_text(self, dry_run: bool) -> str:
        if self.policy.keeps_everything:
            return "no retention is configured (SPY_ASSETS_RETENTION): nothing is purged"
        verb = "would remove" if dry_run else "removed"
        lines = [
            f"{r.kind:<8} {r.dataset:<26} {r.session}  {len(r.paths):>4} file(s) "
            f"{_size(r.bytes):>10}  {verb}"
            for r in self.removals
        ]
        lines += [f"{k.kind:<8} {k.dataset:<26} {k.session}  kept: {k.reason}" for k in self.kept]
        total = (
            f"{len(self.removals)} dataset-session(s), {self.files} file(s), {_size(self.bytes)}"
        )
        summary = f"dry run: {verb} {total}" if dry_run else f"{verb} {total}"
        if dry_run and self.removals:
            summary += " (run with --apply, or the job with dry_run: false, to delete)"
        if self.kept:
            summary += f"; {len(self.kept)} old dataset-session(s) kept, not consolidated"
        return "\n".join([*lines, summary])


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def policy_from(rules: Sequence[tuple[str, int]], specs: Sequence[DatasetSpec]) -> RetentionPolicy:
    """A policy from validated configuration, checking that each dataset it names is raw."""
    for target, _ in rules:
        name = target.removeprefix("landing/")
        if name not in (LANDING, RAW_PARTITION):
            _check_raw(name, specs, "SPY_ASSETS_RETENTION")
    return RetentionPolicy(dict(rules))


def _check_raw(name: str, specs: Sequence[DatasetSpec], where: str) -> DatasetSpec:
    spec = next((s for s in specs if s.name == name), None)
    raw = [s.name for s in specs if s.group == RAW]
    if spec is None:
        raise UnknownDatasetError(
            f"{where}: unknown dataset {name!r}; the raw datasets are {', '.join(raw)}"
        )
    if spec.group != RAW:
        raise UnknownDatasetError(
            f"{where}: {name} is derived; the purge removes landing files and raw partitions "
            f"only ({', '.join(raw)})"
        )
    return spec


def _downstream(spec: DatasetSpec, specs: Sequence[DatasetSpec]) -> list[Dataset]:
    """Every dataset built from ``spec``, directly or not."""
    found: dict[str, Dataset] = {}
    frontier = {spec.name}
    while frontier:
        children = [s for s in specs if frontier & set(s.deps) and s.name not in found]
        for child in children:
            found[child.name] = child.dataset
        frontier = {c.name for c in children}
    return list(found.values())


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def plan_today(
    storage: Storage,
    underlyings: Sequence[str],
    rules: Sequence[tuple[str, int]],
    datasets: Sequence[str] | None = None,
    session: str | None = None,
) -> PurgePlan:
    """:func:`plan_purge` for today, for a configuration's underlyings and retention rules
    (``SPY_ASSETS_RETENTION``), ``session`` given as YYYY-MM-DD: the command's and the job's."""
    from spy_assets.datasets import all_datasets

    specs = all_datasets(list(underlyings))
    return plan_purge(
        storage,
        LandingZone.under(storage.state_dir),
        specs,
        policy_from(rules, specs),
        dt.date.today(),
        datasets=datasets or None,
        session=calendar.parse_session(session) if session else None,
    )


def plan_purge(
    storage: Storage,
    landing: LandingZone,
    specs: Sequence[DatasetSpec],
    policy: RetentionPolicy,
    today: dt.date,
    datasets: Sequence[str] | None = None,
    session: dt.date | None = None,
) -> PurgePlan:
    """What a purge removes today, and the old sessions it keeps because they were not
    consolidated. ``datasets`` (raw dataset names) and ``session`` narrow it; an unknown or
    derived dataset, or a session nothing is stored for, raises a one-line error."""
    chosen = [_check_raw(n, specs, "purge") for n in datasets] if datasets else None
    raw_specs = chosen or [s for s in specs if s.group == RAW]
    if session is not None:
        session = calendar.parse_session(session)
        stored = any(
            storage.partition_path(s.dataset, session).is_file()
            or landing.batches([s.name], session=session)
            for s in raw_specs
        )
        if not stored:
            names = ", ".join(s.name for s in raw_specs)
            raise MissingPartitionError(
                f"session {session} was never built: nothing of {names} is stored or landed "
                f"under {storage.root}"
            )
    plan = PurgePlan(policy=policy)
    if policy.keeps_everything:
        return plan

    def past_age(kind: Kind, name: str, day: dt.date) -> bool:
        days = policy.max_age(kind, name)
        return days is not None and day < today - dt.timedelta(days=days)

    reasons: dict[dt.date, str | None] = {}
    for spec in raw_specs:
        ds = spec.dataset
        batches_by_session: dict[dt.date, list[Path]] = {}
        for batch in landing.batches([ds.name], session=session):
            batches_by_session.setdefault(batch.session, []).append(batch.path)

        for day, paths in sorted(batches_by_session.items()):
            if not past_age(LANDING, ds.name, day):
                continue
            raw_time = _mtime_ns(storage.partition_path(ds, day))
            if raw_time is None or storage.status(ds, day) != "ok":
                plan.kept.append(Kept(LANDING, ds.name, day, "its raw partition is not stored"))
            elif any((_mtime_ns(p) or 0) > raw_time for p in paths):
                plan.kept.append(
                    Kept(LANDING, ds.name, day, "a batch is newer than its raw partition")
                )
            else:
                sizes = sum(p.stat().st_size for p in paths if p.exists())
                plan.removals.append(Removal(LANDING, ds.name, day, tuple(sorted(paths)), sizes))

        sessions = [session] if session is not None else storage.sessions(ds)
        for day in sessions:
            path = storage.partition_path(ds, day)
            if not path.is_file() or not past_age(RAW_PARTITION, ds.name, day):
                continue
            if day not in reasons:
                reasons[day] = _unconsolidated(storage, landing, specs, day)
            if reasons[day]:
                plan.kept.append(Kept(RAW_PARTITION, ds.name, day, reasons[day]))
            else:
                plan.removals.append(
                    Removal(RAW_PARTITION, ds.name, day, (path,), path.stat().st_size)
                )
    return plan


def _unconsolidated(
    storage: Storage, landing: LandingZone, specs: Sequence[DatasetSpec], day: dt.date
) -> str | None:
    """Why the raw partitions of a session must stay, or None. Decided for the session as a
    whole: rebuilding any derived partition of it needs every raw partition of it."""
    for spec in specs:
        if spec.group != RAW:
            continue
        raw_time = _mtime_ns(storage.partition_path(spec.dataset, day))
        if raw_time is None:
            continue
        batches = landing.batches([spec.name], session=day)
        if any((_mtime_ns(b.path) or 0) > raw_time for b in batches):
            return f"a landing batch of {spec.name} is newer than its raw partition"
        for child in _downstream(spec, specs):
            child_time = _mtime_ns(storage.partition_path(child, day))
            if child_time is None or storage.status(child, day) != "ok":
                return f"{child.name} of that session is not stored"
            if child_time < raw_time:
                return f"{child.name} of that session is older than {spec.name} (not rebuilt)"
    return None


def apply_purge(plan: PurgePlan, data_dir: str | os.PathLike[str]) -> list[Removal]:
    """Delete what the plan lists; log each removal and append it to ``purge.log``."""
    audit = Path(data_dir) / "purge.log"
    done = []
    for removal in plan.removals:
        for path in removal.paths:
            path.unlink(missing_ok=True)
            folder = path.parent
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        log.info(
            "purged %s %s %s: %d file(s), %d bytes",
            removal.kind,
            removal.dataset,
            removal.session,
            len(removal.paths),
            removal.bytes,
        )
        audit.parent.mkdir(parents=True, exist_ok=True)
        with audit.open("a") as handle:
            record = {
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "kind": removal.kind,
                "dataset": removal.dataset,
                "session": str(removal.session),
                "bytes": removal.bytes,
                "files": [str(p) for p in removal.paths],
            }
            handle.write(json.dumps(record) + "\n")
        done.append(removal)
    return done
