"""Per-session quality gates: each session's frame is validated as it will be stored, then written
with the outcome in its provenance, so one bad session never stops the others.

- :func:`store_sessions` writes every session a build produced (a failing one too, so the stored
  file and its check agree) and says, per session, whether it passed its schema.
- The outcome is stamped into the file (``gate`` in :meth:`Storage.provenance`): builds refuse to
  read a gated upstream session (:class:`GatedUpstreamError`), so nothing is derived from bad data.
- :func:`ranges_after_gates` splits a run's sessions into the consecutive ranges left to build
  once the gated ones are taken out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd
import pandera.pandas as pa

from spy_assets import schemas
from spy_assets.errors import SpyAssetsError
from spy_assets.storage import Dataset, Storage, WriteResult, stored_form

#: The check every dataset has, and the key of its outcome in a file's provenance.
SCHEMA_CHECK = "schema"
GATE_KEY = "gate"


class GatedUpstreamError(SpyAssetsError):
    """An upstream session failed its schema gate: nothing is built from it."""


class SessionItem(Protocol):
    """One session a build produced (see ``spy_assets.builds.SessionFrame``)."""

    session: dt.date
    frame: pd.DataFrame | None
    facts: dict[str, object]
    refused: str | None


@dataclass
class SessionOutcome:
    """What happened to one session of a step: written (or refused, or reused) and its gate."""

    session: dt.date
    passed: bool
    #: Rows validated; for a refused session 0.
    rows: int = 0
    written: WriteResult | None = None
    duplicates_dropped: int = 0
    #: The build's facts about this session (contracts without bars, IV status counts, …).
    facts: dict[str, object] = field(default_factory=dict)
    #: Why the session failed: the failing rows and the rules (markdown), or the refusal.
    failure: str | None = None
    #: The broken rules, or ``upstream_gated`` for a refused session.
    rules: list[str] = field(default_factory=list)
    failing_rows: int = 0
    #: Kept as stored by an earlier run (its gate comes from its provenance).
    reused: bool = False
    #: The first rows as stored, for the step's sample.
    head: pd.DataFrame | None = None


def gate_record(validation: schemas.Validation) -> dict[str, object]:
    """The gate outcome stamped into a file's provenance."""
    return {
        "check": SCHEMA_CHECK,
        "passed": validation.passed,
        "rules": validation.rules(),
        "failing_rows": validation.failing_rows,
    }


def gate_of(provenance: dict[str, object]) -> dict[str, object] | None:
    """The gate outcome of a stored partition, or None when it was written without one."""
    gate = provenance.get(GATE_KEY)
    return gate if isinstance(gate, dict) else None


def gated(storage: Storage, ds: Dataset, session: dt.date) -> bool:
    """True when the stored session of ``ds`` failed its schema gate (reads the footer only)."""
    gate = gate_of(storage.provenance(ds, session))
    return gate is not None and not gate.get("passed", True)


def read_ungated(storage: Storage, ds: Dataset, session: dt.date) -> pd.DataFrame:
    """An upstream session to build from; :class:`GatedUpstreamError` when it failed its gate."""
    frame = storage.read(ds, session)
    if gated(storage, ds, session):
        raise GatedUpstreamError(
            f"upstream {ds.name} failed its schema check on {session}: not built from it "
            "(re-materialize that session once its source is fixed)"
        )
    return frame


def store_sessions(
    storage: Storage,
    ds: Dataset,
    schema: Callable[[dt.date], pa.DataFrameSchema],
    items: Iterable[SessionItem],
    provenance: dict[str, object],
) -> Iterator[SessionOutcome]:
    """Validate and write each session as it comes, one at a time (memory stays one session).

    The frame validated is the frame stored (:func:`spy_assets.storage.stored_form`), so no file
    is read back to check it. A failing session is written too, with the failure in its
    provenance; a refused session (gated upstream) is not written.
    """
    for item in items:
        if item.frame is None:
            yield SessionOutcome(
                item.session,
                passed=False,
                facts=item.facts,
                failure=item.refused,
                rules=["upstream_gated"],
            )
            continue
        stored, dropped = stored_form(ds, item.frame)
        validation = schemas.validate(schema(item.session), stored)
        written = storage.write(
            ds, item.session, stored, {**provenance, GATE_KEY: gate_record(validation)}
        )
        yield SessionOutcome(
            item.session,
            passed=validation.passed,
            rows=len(stored),
            written=written,
            duplicates_dropped=dropped,
            facts=item.facts,
            failure=None if validation.passed else _failure_text(validation),
            rules=validation.rules(),
            failing_rows=validation.failing_rows,
            head=stored.head(5) if len(stored) else None,
        )


def write_checked(
    storage: Storage,
    ds: Dataset,
    session: dt.date,
    frame: pd.DataFrame,
    schema: Callable[[dt.date], pa.DataFrameSchema],
    provenance: dict[str, object],
) -> WriteResult:
    """Write one session with its gate result in its provenance, as :func:`store_sessions`
    does, so a file written outside the asset step (the live stitch) has the same bytes."""
    stored, _ = stored_form(ds, frame)
    validation = schemas.validate(schema(session), stored)
    return storage.write(ds, session, stored, {**provenance, GATE_KEY: gate_record(validation)})


def reused_outcome(
    storage: Storage,
    ds: Dataset,
    schema: Callable[[dt.date], pa.DataFrameSchema],
    session: dt.date,
) -> SessionOutcome:
    """The gate of a session kept as stored: from its provenance, or, for a file written without
    one (an older version, or by hand), by validating what is stored."""
    gate = gate_of(storage.provenance(ds, session))
    if gate is not None and gate.get("passed"):
        return SessionOutcome(session, passed=True, reused=True)
    stored = storage.read(ds, session)
    validation = schemas.validate(schema(session), stored)
    return SessionOutcome(
        session,
        passed=validation.passed,
        rows=len(stored),
        failure=None if validation.passed else _failure_text(validation),
        rules=validation.rules(),
        failing_rows=validation.failing_rows,
        reused=True,
    )


def _failure_text(validation: schemas.Validation) -> str:
    return (
        f"{validation.failing_rows} failing rows; rules: {', '.join(validation.rules())}\n\n"
        + validation.to_markdown()
    )


def ranges_after_gates(
    sessions: Sequence[dt.date], gated_sessions: Iterable[dt.date]
) -> list[list[dt.date]]:
    """The runs of consecutive sessions of ``sessions`` (in its order) left once the gated ones
    are taken out: ``[a, b, X, c, d]`` with X gated gives ``[[a, b], [c, d]]``."""
    blocked = set(gated_sessions)
    ranges: list[list[dt.date]] = []
    current: list[dt.date] = []
    for session in sessions:
        if session in blocked:
            if current:
                ranges.append(current)
            current = []
        else:
            current.append(session)
    if current:
        ranges.append(current)
    return ranges
