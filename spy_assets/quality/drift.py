"""Vendor schema drift: the fields and JSON types the vendor sends, per dataset and session,
compared with a stored baseline.

The vendor source feeds every result object it parses into a :class:`SchemaRecorder` (no extra
request); the asset's materialization carries the recorder's summary; the ``schema_drift``
check compares each session's :class:`Schema` with the dataset's baseline in a
:class:`BaselineStore`. Types are JSON's own (``number`` covers integers and floats, since the
vendor writes ``100`` and ``100.5`` in the same column); nested objects are flattened to
``publisher.name`` and arrays of objects to ``insights[].sentiment``. A field present in only
some results of a session is *optional*: its absence later is not drift, and ``null`` matches
any type.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from spy_assets import calendar
from spy_assets.calendar import MARKET_TZ
from spy_assets.errors import SpyAssetsError

#: The metadata key under which a materialization carries what the vendor sent.
METADATA_KEY = "vendor_schema"
NULL = "null"
ABSENT = "absent"
#: Nested objects deeper than this are recorded as ``object`` without their fields.
MAX_DEPTH = 3
_DATASET = re.compile(r"^[a-z0-9_]+/[a-z0-9_]+$")


class DriftError(SpyAssetsError):
    """A drift command that cannot be done: an unknown dataset, nothing observed yet."""


def json_type(value: Any) -> str:
    """The JSON type of a parsed value."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


@dataclass(frozen=True)
class Schema:
    """Field path → JSON type, and the fields only some results carried."""

    fields: Mapping[str, str]
    optional: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {"fields": dict(sorted(self.fields.items())), "optional": sorted(self.optional)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Schema:
        return cls(dict(obj.get("fields") or {}), frozenset(obj.get("optional") or ()))


@dataclass(frozen=True)
class Drift:
    """One difference between the baseline and what the vendor sent."""

    kind: str  # new, missing, retyped
    field: str
    baseline: str
    observed: str

    def __str__(self) -> str:
        if self.kind == "new":
            return f"new field {self.field} ({self.observed}; baseline: {ABSENT})"
        if self.kind == "missing":
            return f"missing field {self.field} (baseline: {self.baseline}; now {ABSENT})"
        return f"retyped field {self.field}: {self.baseline} → {self.observed}"


def _parent(path: str) -> str:
    """The container prefix of a field path: ``a.b`` → ``a.``, ``a[].b`` → ``a[].``."""
    cut = max(path.rfind("."), -1)
    return path[: cut + 1] if cut >= 0 else ""


def diff(baseline: Schema, observed: Schema) -> list[Drift]:
    """New, missing and retyped fields, sorted by field."""
    out = []
    for name, kind in observed.fields.items():
        before = baseline.fields.get(name)
        if before is None:
            out.append(Drift("new", name, ABSENT, kind))
        elif NULL not in (before, kind) and before != kind:
            out.append(Drift("retyped", name, before, kind))
    for name, kind in baseline.fields.items():
        if name in observed.fields or name in baseline.optional:
            continue
        parent = _parent(name)
        # A nested field counts as missing only when its container came with other fields:
        # an absent or empty container (no insights today) is not this field's drift.
        if parent and not any(f.startswith(parent) for f in observed.fields):
            continue
        out.append(Drift("missing", name, kind, ABSENT))
    return sorted(out, key=lambda d: (d.field, d.kind))


class _Fields:
    """Types and presence counts of one session's results."""

    def __init__(self) -> None:
        self.types: dict[str, set[str]] = {}
        self.present: dict[str, int] = {}
        self.containers: dict[str, int] = {}

    def add(self, obj: Mapping[str, Any], prefix: str = "", depth: int = 0) -> None:
        self.containers[prefix] = self.containers.get(prefix, 0) + 1
        for key, value in obj.items():
            path = prefix + str(key)
            kind = json_type(value)
            self.types.setdefault(path, set()).add(kind)
            self.present[path] = self.present.get(path, 0) + 1
            if depth >= MAX_DEPTH:
                continue
            if kind == "object":
                self.add(value, path + ".", depth + 1)
            elif kind == "array":
                element = path + "[]"
                for item in value:
                    if isinstance(item, dict):
                        self.add(item, element + ".", depth + 1)
                    else:
                        self.types.setdefault(element, set()).add(json_type(item))
                        self.present[element] = self.present.get(element, 0) + 1

    def schema(self) -> Schema:
        fields, optional = {}, set()
        for path, kinds in self.types.items():
            real = sorted(kinds - {NULL})
            fields[path] = "|".join(real) if real else NULL
            parent = _parent(path)
            if not path.endswith("[]") and self.present[path] < self.containers.get(parent, 0):
                optional.add(path)
        return Schema(fields, frozenset(optional))


_MS_PER_HOUR = 3_600_000


@functools.lru_cache(maxsize=65_536)
def _session_of_hour(hour: int) -> dt.date:
    return pd.Timestamp(hour * _MS_PER_HOUR, unit="ms", tz="UTC").tz_convert(MARKET_TZ).date()


def bar_session(item: Mapping[str, Any]) -> dt.date | None:
    """A minute agg's session: the New York date of its ``t`` (epoch ms); ``None`` without a
    usable ``t`` (that bar is dropped as malformed anyway)."""
    t = item.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t < 4_102_444_800_000:
        return None
    return _session_of_hour(int(t) // _MS_PER_HOUR)


@functools.lru_cache(maxsize=65_536)
def _news_session_of_hour(hour: int) -> dt.date:
    stamp = pd.Timestamp(hour * _MS_PER_HOUR, unit="ms", tz="UTC")
    session = calendar.session_on_or_before(stamp.tz_convert(MARKET_TZ).date())
    # Hours are whole, and closes fall on the hour (16:00, 13:00): an hour starting at or
    # after the close belongs to the next session's news window.
    return calendar.next_session(session) if stamp >= calendar.session_close(session) else session


def news_session(item: Mapping[str, Any]) -> dt.date | None:
    """An article's session: the one whose news window (previous close → its close) holds its
    ``published_utc``; ``None`` when that is not a time."""
    try:
        stamp = pd.Timestamp(item.get("published_utc"))
    except (TypeError, ValueError):
        return None
    if stamp is pd.NaT or not isinstance(stamp, pd.Timestamp):
        return None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return _news_session_of_hour(int(stamp.value // 1_000_000) // _MS_PER_HOUR)


class SchemaRecorder:
    """What the vendor sent, per session: fed with each parsed page's result objects."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[dt.date, _Fields] = {}

    def observe(
        self, results: Iterable[Any], session_of: Callable[[Mapping[str, Any]], dt.date | None]
    ) -> None:
        """Record each result object under the session ``session_of`` gives it (``None``:
        outside every session, not recorded)."""
        with self._lock:
            for item in results:
                if not isinstance(item, dict):
                    continue
                session = session_of(item)
                if session is not None:
                    self._sessions.setdefault(session, _Fields()).add(item)

    def schemas(self) -> dict[dt.date, Schema]:
        with self._lock:
            return {s: f.schema() for s, f in sorted(self._sessions.items())}

    def as_metadata(self) -> dict[str, object]:
        """``{vendor_schema: [{sessions, fields, optional}, ...]}``: sessions that saw the same
        schema share one entry, so a year of sessions costs one entry, not 250."""
        groups: dict[str, dict[str, Any]] = {}
        for session, schema in self.schemas().items():
            body = schema.to_json()
            key = json.dumps(body, sort_keys=True)
            groups.setdefault(key, {"sessions": [], **body})["sessions"].append(str(session))
        return {METADATA_KEY: list(groups.values())} if groups else {}


def schemas_from_metadata(value: Any) -> dict[str, Schema]:
    """``{session: Schema}`` from a materialization's :data:`METADATA_KEY` value."""
    out = {}
    for group in value or []:
        schema = Schema.from_json(group)
        for session in group.get("sessions", []):
            out[str(session)] = schema
    return out


def majority(schemas: Mapping[str, Schema]) -> tuple[str, Schema]:
    """The schema most sessions share (ties: the earliest session's), with its first session."""
    counts: dict[str, list[str]] = {}
    by_key: dict[str, Schema] = {}
    for session, schema in sorted(schemas.items()):
        key = json.dumps(schema.to_json(), sort_keys=True)
        counts.setdefault(key, []).append(session)
        by_key[key] = schema
    key = min(counts, key=lambda k: (-len(counts[k]), counts[k][0]))
    return counts[key][0], by_key[key]


class BaselineStore:
    """Baselines and the last observed schema of each vendor dataset, as sorted, indented JSON
    under ``<data dir>/quality/``: ``schema_baselines/<dataset>.json`` and
    ``schema_observed/<dataset>.json`` (``spy/minute_bars`` → ``spy/minute_bars.json``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "quality"

    def baseline_path(self, dataset: str) -> Path:
        return self.root / "schema_baselines" / f"{_checked(dataset)}.json"

    def observed_path(self, dataset: str) -> Path:
        return self.root / "schema_observed" / f"{_checked(dataset)}.json"

    def baseline(self, dataset: str) -> Schema | None:
        obj = _read(self.baseline_path(dataset))
        return Schema.from_json(obj) if obj is not None else None

    def observed(self, dataset: str) -> dict[str, Any] | None:
        """The last observed schema with its session, or ``None``."""
        return _read(self.observed_path(dataset))

    def record(
        self, dataset: str, schemas: Mapping[str, Schema], now: dt.datetime | None = None
    ) -> tuple[Schema, bool]:
        """Remember the latest session's schema as the last observed one (unless a later
        session was observed before); the first observation of a dataset becomes its baseline
        (the schema most of its sessions share). Returns (the baseline, whether it was created
        now)."""
        stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
        latest = max(schemas)
        before = self.observed(dataset)
        # A backfill of older sessions does not make an old schema the "current" one.
        if before is None or str(before.get("session", "")) <= latest:
            _write(
                self.observed_path(dataset),
                {"dataset": dataset, "session": latest, "observed_at": stamp}
                | schemas[latest].to_json(),
            )
        baseline = self.baseline(dataset)
        if baseline is not None:
            return baseline, False
        session, baseline = majority(schemas)
        self._write_baseline(dataset, session, baseline, stamp, "first observation")
        return baseline, True

    def accept(self, dataset: str, now: dt.datetime | None = None) -> tuple[Schema, Schema | None]:
        """Make the last observed schema the baseline: (new baseline, the one it replaced)."""
        observed = self.observed(dataset)
        if observed is None:
            raise DriftError(
                f"{dataset}: no vendor schema observed yet (materialize it from the vendor "
                "first); nothing to accept"
            )
        previous = self.baseline(dataset)
        schema = Schema.from_json(observed)
        stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
        self._write_baseline(dataset, observed["session"], schema, stamp, "accepted")
        return schema, previous

    def _write_baseline(
        self, dataset: str, session: str, schema: Schema, stamp: str, how: str
    ) -> None:
        body = {"dataset": dataset, "session": session, "recorded_at": stamp, "how": how}
        _write(self.baseline_path(dataset), body | schema.to_json())


def _checked(dataset: str) -> str:
    if not _DATASET.match(dataset):
        raise DriftError(f"{dataset!r} is not a dataset name (e.g. spy/minute_bars)")
    return dataset


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        raise DriftError(f"{path} is not valid JSON: fix or delete it") from None


def _write(path: Path, obj: Mapping[str, Any]) -> None:
    """Atomic: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    tmp.replace(path)


def describe(drifts: Iterable[Drift]) -> str:
    return "; ".join(str(d) for d in drifts)


__all__ = [
    "ABSENT",
    "METADATA_KEY",
    "BaselineStore",
    "Drift",
    "DriftError",
    "Schema",
    "SchemaRecorder",
    "describe",
    "bar_session",
    "diff",
    "news_session",
    "json_type",
    "majority",
    "schemas_from_metadata",
]
