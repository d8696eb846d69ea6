"""The landing zone: micro-batches of live bars, exactly as the stream consumer received them.

Layout under the landing root (``<data dir>/landing`` by default)::

    <dataset>/session=YYYY-MM-DD/<received ns:020d>-<writer pid>-<seq:06d>.parquet

A batch holds rows of one dataset and one session, with the columns of that raw dataset
(``spy/minute_bars``: ticker, timestamp, open, …; ``vix/minute_bars``: timestamp, open, …) and
optionally ``received_at`` (UTC), which consumers of the landing zone may use for lag and drop
before storing. Batch names sort in the order they were written, so a name is a cursor: every
batch written after a cursor sorts after it (one writer per host; the nanosecond clock leads).

Writes are atomic (temporary file, fsync, rename into place): a reader never sees half a batch,
and a crash leaves either no batch or the whole one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from spy_assets.storage import Dataset

_SESSION_DIR = re.compile(r"^session=(\d{4}-\d{2}-\d{2})$")
_BATCH_NAME = re.compile(r"^\d{20}-\d{1,10}-\d{6}\.parquet$")
_sequence = itertools.count()


@dataclass(frozen=True, order=True)
class LandedBatch:
    """One landed file. Ordered by ``name`` first: the order batches were written in."""

    name: str
    dataset: str
    session: dt.date
    path: Path


class LandingZone:
    """Micro-batches per dataset and session under one local folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()

    @classmethod
    def under(cls, data_dir: str | os.PathLike[str]) -> LandingZone:
        """The landing zone of a data folder: ``<data dir>/landing``."""
        return cls(Path(data_dir) / "landing")

    def session_dir(self, ds: Dataset | str, session: dt.date) -> Path:
        name = ds.name if isinstance(ds, Dataset) else ds
        return self.root / name / f"session={session.isoformat()}"

    def write_batch(self, ds: Dataset | str, session: dt.date, frame: pd.DataFrame) -> Path:
        """Land one batch atomically; returns its path. An empty frame lands nothing."""
        if frame.empty:
            raise ValueError("an empty batch is not landed")
        folder = self.session_dir(ds, session)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_sequence) % 1_000_000:06d}.parquet"
        table = pa.Table.from_pandas(frame, preserve_index=False)
        fd, tmp = tempfile.mkstemp(prefix=".batch.", suffix=".tmp", dir=folder)
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as handle:
                pq.write_table(table, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, folder / name)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return folder / name

    def batches(
        self,
        datasets: Iterable[Dataset | str] | None = None,
        after: str | None = None,
        session: dt.date | None = None,
    ) -> list[LandedBatch]:
        """Landed batches in the order they were written, optionally only those of some
        datasets, one session, or written after the batch named ``after`` (a cursor)."""
        if not self.root.is_dir():
            return []
        wanted = None if datasets is None else {_name(d) for d in datasets}
        found = []
        for path in self.root.rglob("session=*/*.parquet"):
            match = _SESSION_DIR.match(path.parent.name)
            if not match or not _BATCH_NAME.match(path.name):
                continue
            dataset = path.parent.parent.relative_to(self.root).as_posix()
            day = dt.date.fromisoformat(match[1])
            if wanted is not None and dataset not in wanted:
                continue
            if session is not None and day != session:
                continue
            if after is not None and path.name <= after:
                continue
            found.append(LandedBatch(path.name, dataset, day, path))
        return sorted(found)

    def read(self, batches: Iterable[LandedBatch]) -> pd.DataFrame:
        """The rows of some batches, concatenated in the order they were written."""
        frames = [pq.read_table(b.path).to_pandas() for b in sorted(batches)]
        frames = [f for f in frames if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def sessions(self, ds: Dataset | str) -> list[dt.date]:
        """Sessions with at least one landed batch of a dataset, oldest first."""
        base = self.root / _name(ds)
        if not base.is_dir():
            return []
        days = (_SESSION_DIR.match(p.name) for p in base.iterdir() if p.is_dir())
        return sorted(dt.date.fromisoformat(m[1]) for m in days if m)


def _name(ds: Dataset | str) -> str:
    return ds.name if isinstance(ds, Dataset) else ds
