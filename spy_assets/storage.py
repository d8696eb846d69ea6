"""The one place that knows the storage layout: Parquet per dataset per session, DuckDB over it.

Layout under the root (``data/`` by default)::

    parquet/<dataset>/session=YYYY-MM-DD/data.parquet   one file per dataset and session
    catalog.duckdb                                       one view per dataset over all sessions

Writes are atomic (temporary file, fsync, rename), deduplicated on the dataset's key and sorted
by it, so re-writing a session with the same rows gives the same bytes.

:meth:`Storage.query` does not use ``catalog.duckdb`` (which is for external tools): it runs one
read-only statement on a fresh in-memory DuckDB whose views read the Parquet files, with file
access outside ``parquet/`` switched off and the configuration locked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from spy_assets.errors import (
    CatalogBusyError,
    CorruptPartitionError,
    MissingPartitionError,
    QueryError,
    QueryRefusedError,
)

log = logging.getLogger(__name__)

_PARTITION_DIR = re.compile(r"^session=(\d{4}-\d{2}-\d{2})$")
_METADATA_PREFIX = "spy_assets."
#: ``.data.<writer pid>.<random>.parquet.tmp``; older writers left ``.data.<random>.parquet.tmp``.
_TEMP_GLOB = ".data.*.parquet.tmp"
_TEMP_WITH_PID = re.compile(r"^\.data\.(\d{1,10})\.[^.]+\.parquet\.tmp$")
#: A temp file without a writer PID is removed once it is older than this.
LEGACY_TEMP_MAX_AGE_S = 3600.0


def _read_umask() -> int:
    """The process umask, read without changing it where the platform allows."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Data files are readable by everyone the umask allows (``mkstemp`` alone gives 0600).
_FILE_MODE = 0o644 & ~_read_umask()


@dataclass(frozen=True)
class Dataset:
    """A stored table: its path under ``parquet/`` and the columns that identify a row."""

    name: str
    key: tuple[str, ...]

    @property
    def view_name(self) -> str:
        return self.name.replace("/", "_")


def dataset(underlying: str, kind: str) -> Dataset:
    """The dataset of one underlying (``spy/minute_bars``) or a shared one (``vix/minute_bars``)."""
    keys = {
        "minute_bars": ("ticker", "timestamp"),
        "option_contracts": ("contract",),
        "option_minute_bars": ("contract", "timestamp"),
        "features": ("contract", "timestamp"),
        "scan_events": ("contract", "trigger_time"),
        "training_data": ("contract", "timestamp"),
    }
    if kind not in keys:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {sorted(keys)}")
    return Dataset(f"{underlying.lower()}/{kind}", keys[kind])


VIX_MINUTE_BARS = Dataset("vix/minute_bars", ("timestamp",))
NEWS_ARTICLES = Dataset("news/articles", ("article_id",))


@dataclass(frozen=True)
class WriteResult:
    path: Path
    rows: int
    bytes: int
    duplicates_dropped: int


@dataclass(frozen=True)
class QueryResult:
    """A query's answer, and the stored files it left out because they cannot be read (their
    sessions need re-materializing)."""

    frame: pd.DataFrame
    skipped: list[Path]


def stored_form(ds: Dataset, frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The frame exactly as :meth:`Storage.write` stores it (no ``session`` column, deduplicated
    on the key keeping the last row, sorted by it, normalised types), and the rows dropped.

    Idempotent, so a frame validated in this form is written unchanged.
    """
    frame = frame.drop(columns="session", errors="ignore")
    missing = [c for c in ds.key if c not in frame.columns]
    if missing:
        raise ValueError(f"{ds.name}: key columns {missing} are missing from the frame")
    deduped = frame.drop_duplicates(subset=list(ds.key), keep="last")
    dropped = len(frame) - len(deduped)
    ordered = deduped.sort_values(list(ds.key), kind="stable").reset_index(drop=True)
    return _normalise(ordered), dropped


class Storage:
    """Parquet partitions and the DuckDB catalog under one root folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()

    # ------------------------------------------------------------------ paths
    def partition_dir(self, ds: Dataset, session: dt.date) -> Path:
        return self.root / "parquet" / ds.name / f"session={session.isoformat()}"

    def partition_path(self, ds: Dataset, session: dt.date) -> Path:
        return self.partition_dir(ds, session) / "data.parquet"

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.duckdb"

    def exists(self, ds: Dataset, session: dt.date) -> bool:
        """True only for a readable partition: the file is there and its Parquet footer parses.

        A truncated or garbage file counts as not stored, so a backfill re-materializes it.
        """
        return self.status(ds, session) == "ok"

    def status(self, ds: Dataset, session: dt.date) -> Literal["ok", "missing", "corrupt"]:
        """``ok`` (footer parses), ``missing`` (no file) or ``corrupt`` (a file that is not
        readable Parquet). Reads the footer only, never the data."""
        path = self.partition_path(ds, session)
        if not path.is_file():
            return "missing"
        return "ok" if _footer_ok(path) else "corrupt"

    def sessions(self, ds: Dataset) -> list[dt.date]:
        """Sessions with a file stored for a dataset, oldest first (readable or not; see
        :meth:`corrupt_sessions`)."""
        return sorted(self._session_files(ds))

    def corrupt_sessions(self, ds: Dataset) -> list[dt.date]:
        """Sessions whose file exists but whose Parquet footer does not parse, oldest first."""
        files = self._session_files(ds)
        return sorted(s for s, path in files.items() if not _footer_ok(path))

    def _session_files(self, ds: Dataset) -> dict[dt.date, Path]:
        return dict(_partition_files(self.root / "parquet" / ds.name))

    # ----------------------------------------------------------------- writes
    def write(
        self,
        ds: Dataset,
        session: dt.date,
        frame: pd.DataFrame,
        provenance: dict[str, object] | None = None,
    ) -> WriteResult:
        """Replace one session of a dataset, atomically. Rows repeating a key keep the last one.

        A ``session`` column is dropped: the partition folder holds it (readers get it back
        from :meth:`read_sessions` and the DuckDB views).
        """
        ordered, dropped = stored_form(ds, frame)
        table = pa.Table.from_pandas(ordered, preserve_index=False)
        extra = {
            f"{_METADATA_PREFIX}{k}": json.dumps(v, sort_keys=True, default=str)
            for k, v in (provenance or {}).items()
        }
        if extra:
            table = table.replace_schema_metadata(
                {
                    **(table.schema.metadata or {}),
                    **{k.encode(): v.encode() for k, v in extra.items()},
                }
            )
        target = self.partition_path(ds, session)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".data.{os.getpid()}.", suffix=".parquet.tmp", dir=target.parent
        )
        try:
            os.fchmod(fd, _FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                pq.write_table(table, handle, compression="zstd")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        _fsync_dir(target.parent)
        return WriteResult(target, len(ordered), target.stat().st_size, dropped)

    def sweep_temp_files(self) -> list[Path]:
        """Remove temp files that crashed writers left behind; returns the removed paths.

        A temp file named with a writer PID is removed when no process has that PID; one of a
        live process is always kept, however old. A temp file without a PID (an older writer)
        is removed once it is older than :data:`LEGACY_TEMP_MAX_AGE_S`.
        """
        base = self.root / "parquet"
        if not base.is_dir():
            return []
        removed = []
        now = time.time()
        for path in sorted(base.rglob(_TEMP_GLOB)):
            match = _TEMP_WITH_PID.match(path.name)
            alive = _process_alive(int(match[1])) if match else None
            try:
                if alive is None:  # no usable PID in the name: judge by age
                    stale = now - path.stat().st_mtime > LEGACY_TEMP_MAX_AGE_S
                else:
                    stale = not alive
                if stale and path.is_file():
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:  # the writer renamed or removed it meanwhile
                continue
        return removed

    # ------------------------------------------------------------------ reads
    def read(self, ds: Dataset, session: dt.date) -> pd.DataFrame:
        """One session of a dataset; a clear error when it is missing or unreadable."""
        path = self.partition_path(ds, session)
        if not path.is_file():
            raise MissingPartitionError(
                f"{ds.name} has no data for session {session}: materialize it first "
                f"(expected {path})"
            )
        try:
            return pq.read_table(path).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise CorruptPartitionError(
                f"{ds.name} for session {session} cannot be read ({path}): {exc}. "
                "Delete the file and re-materialize the partition."
            ) from None

    def read_sessions(self, ds: Dataset, sessions: Sequence[dt.date]) -> pd.DataFrame:
        """Several sessions concatenated, with a ``session`` column (a date)."""
        frames = []
        for session in sessions:
            frame = self.read(ds, session)
            frame.insert(0, "session", session)
            frames.append(frame)
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)

    def provenance(self, ds: Dataset, session: dt.date) -> dict[str, object]:
        """The provenance stamped into a partition's file by :meth:`write`."""
        path = self.partition_path(ds, session)
        try:
            meta = pq.read_schema(path).metadata or {}
        except (pa.ArrowException, OSError) as exc:
            raise CorruptPartitionError(f"{path} cannot be read: {exc}") from None
        return {
            k.decode()[len(_METADATA_PREFIX) :]: json.loads(v)
            for k, v in meta.items()
            if k.decode().startswith(_METADATA_PREFIX)
        }

    # ---------------------------------------------------------------- catalog
    def refresh_catalog(
        self, datasets: Sequence[Dataset], *, busy_timeout: float = 5.0
    ) -> list[str]:
        """Create or replace one DuckDB view per dataset that has data; returns the view names.

        A view reads a glob, so new sessions show up without a refresh; only a new dataset
        needs one. When a stored file is unreadable the view lists the readable files instead
        (until the next refresh). A lock file serialises writers from parallel steps; when
        another process holds ``catalog.duckdb`` open, connecting is retried for
        ``busy_timeout`` seconds, then :class:`CatalogBusyError` is raised.
        """
        created = []
        with self._catalog_lock(), self._connect_catalog(busy_timeout) as con:
            for ds in datasets:
                if not self.sessions(ds):
                    continue
                sources = _ViewSources(self.root / "parquet", [ds.name])
                if _build_view(con, sources, ds.name):
                    created.append(ds.view_name)
                else:
                    con.execute(f"DROP VIEW IF EXISTS {_sql_ident(ds.view_name)}")
                for path in sorted(sources.skipped):
                    log.warning("catalog view %s leaves out unreadable %s", ds.view_name, path)
        return created

    def _connect_catalog(self, busy_timeout: float) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + busy_timeout
        delay = 0.05
        while True:
            try:
                return duckdb.connect(str(self.catalog_path))
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() + delay > deadline:
                    holder = re.search(r"held in (.+?\(PID \d+\))", str(exc))
                    by = f" by {holder[1]}" if holder else ""
                    raise CatalogBusyError(
                        f"{self.catalog_path} is held open{by} for more than {busy_timeout:g} s: "
                        "close that program (a DuckDB shell, notebook or BI tool) and retry"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    # ------------------------------------------------------------------ query
    def datasets_on_disk(self) -> list[str]:
        """Datasets with at least one stored session, by folder (``spy/minute_bars``), sorted."""
        base = self.root / "parquet"
        if not base.is_dir():
            return []
        found = []
        for group in sorted(base.iterdir()):
            if not group.is_dir():
                continue
            for kind in sorted(group.iterdir()):
                if kind.is_dir() and next(_partition_files(kind), None) is not None:
                    found.append(f"{group.name}/{kind.name}")
        return found

    def query(self, sql: str) -> pd.DataFrame:
        """Run one read-only SQL statement over the stored datasets; see
        :meth:`query_with_report`, which also says which unreadable files were left out."""
        result = self.query_with_report(sql)
        for path in result.skipped:
            log.warning("query left out unreadable %s: re-materialize that session", path)
        return result.frame

    def query_with_report(self, sql: str) -> QueryResult:
        """Run one SELECT (or DESCRIBE/SHOW/SUMMARIZE/EXPLAIN of one) over one view per stored
        dataset (``spy/minute_bars`` is ``spy_minute_bars``, with a ``session`` DATE column).

        The statement runs on a fresh in-memory DuckDB that can read files under ``parquet/``
        only, with its configuration locked; ``catalog.duckdb`` is not opened. Any other
        statement raises :class:`QueryRefusedError`; one DuckDB cannot run raises
        :class:`QueryError` with DuckDB's message. A stored file that is not readable Parquet
        is left out (the query is run again without it) and named in ``skipped``.
        """
        if not sql.strip():
            raise QueryRefusedError("empty query: give one SELECT statement")
        with self._sandbox() as con:
            _check_read_only(con, sql)
            sources = _ViewSources(self.root / "parquet", self.datasets_on_disk())
            if not sources.names:
                raise MissingPartitionError(
                    f"nothing is stored under {sources.parquet_root}: "
                    "materialize some sessions first"
                )
            for name in sources.names:
                _build_view(con, sources, name)
            for attempt in (1, 2):
                try:
                    frame = con.execute(sql).df()
                except (duckdb.InvalidInputException, duckdb.IOException) as exc:
                    # maybe an unreadable file: leave out every one and run it once more
                    changed = sources.exclude_bad_files(str(exc)) if attempt == 1 else []
                    if not changed:
                        raise _query_failure(exc, sources) from None
                    for name in changed:
                        _build_view(con, sources, name)
                except duckdb.Error as exc:
                    raise _query_failure(exc, sources) from None
                else:
                    return QueryResult(frame, sorted(sources.skipped))
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def _sandbox(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A fresh in-memory DuckDB that can read files under ``parquet/`` only, with its
        configuration locked; views are created afterwards (they read inside ``parquet/``)."""
        spill = tempfile.mkdtemp(prefix="spy-assets-query-")
        readable = (self.root / "parquet").as_posix() + "/"
        con = duckdb.connect(":memory:")
        try:
            for setting in (
                f"SET allowed_directories = [{_sql_str(readable)}]",
                f"SET temp_directory = {_sql_str(spill)}",  # else ./.tmp would be allowed too
                "SET autoinstall_known_extensions = false",
                "SET autoload_known_extensions = false",
                "SET enable_external_access = false",
                "SET lock_configuration = true",
            ):
                con.execute(setting)
            yield con
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)

    @contextlib.contextmanager
    def _catalog_lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".catalog.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _partition_files(base: Path) -> Iterator[tuple[dt.date, Path]]:
    """``(session, data file)`` for every ``session=YYYY-MM-DD/data.parquet`` under base."""
    if not base.is_dir():
        return
    for child in base.iterdir():
        match = _PARTITION_DIR.match(child.name)
        if not match or not (child / "data.parquet").is_file():
            continue
        try:
            session = dt.date.fromisoformat(match[1])
        except ValueError:  # session=2025-13-45: not a partition this code wrote
            continue
        yield session, child / "data.parquet"


def _process_alive(pid: int) -> bool | None:
    """Whether a process with this PID exists (signal 0 checks without sending anything);
    None when the number cannot be a PID."""
    if pid <= 0:  # 0 and negatives address process groups, not one process
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except (OverflowError, OSError):
        return None
    return True


def _footer_ok(path: Path) -> bool:
    """Whether a file's Parquet footer parses: cheap (the footer only), catches truncation."""
    try:
        pq.read_metadata(path)
    except (pa.ArrowException, OSError):
        return False
    return True


_ALLOWED = (
    "give one SELECT statement (WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE and "
    "EXPLAIN [ANALYZE] SELECT are fine)"
)
_LEADING_LINE_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z))*")
_EXPLAIN = re.compile(r"\AEXPLAIN\s+(?:ANALYZE\s+)?", re.IGNORECASE)


def _check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but exactly one read-only statement, as DuckDB itself parses it."""
    if not sql.strip():
        raise QueryRefusedError("empty query: give one SELECT statement")
    statements = _parse(con, sql)
    if not statements:
        raise QueryRefusedError("empty query (comments only): give one SELECT statement")
    if len(statements) > 1:
        raise QueryRefusedError(
            f"{len(statements)} statements given, separated by ';': {_ALLOWED}, only one"
        )
    kind = statements[0].type
    if kind == duckdb.StatementType.SELECT:
        return
    head = _LEADING_LINE_COMMENTS.sub("", sql, count=1)
    if kind == duckdb.StatementType.EXPLAIN:
        # EXPLAIN ANALYZE runs its statement: allow it only when that statement is a SELECT
        explained = _EXPLAIN.match(head)
        inner = _parse(con, head[explained.end() :], strict=False) if explained else []
        if len(inner) == 1 and inner[0].type == duckdb.StatementType.SELECT:
            return
        raise QueryRefusedError(f"only EXPLAIN [ANALYZE] of one SELECT is allowed: {_ALLOWED}")
    word = re.match(r"[A-Za-z_]+", head)
    what = word[0].upper() if word else kind.name
    raise QueryRefusedError(f"{what} is not allowed: queries are read-only; {_ALLOWED}")


def _parse(
    con: duckdb.DuckDBPyConnection, sql: str, *, strict: bool = True
) -> list[duckdb.Statement]:
    try:
        return con.extract_statements(sql)
    except duckdb.Error as exc:
        if strict:
            raise QueryError(_first_line(exc)) from None
        return []


class _ViewSources:
    """What each dataset's view reads: the glob over all its sessions (the fast path) or, once
    an unreadable file is found, the explicit list of the readable ones."""

    def __init__(self, parquet_root: Path, names: Sequence[str]) -> None:
        self.parquet_root = parquet_root
        self.names = list(names)
        self.files: dict[str, list[Path] | None] = dict.fromkeys(self.names)  # None: the glob
        self.skipped: set[Path] = set()
        self.unavailable: dict[str, str] = {}  # view name -> why it could not be built

    def source_sql(self, name: str) -> str | None:
        """The first argument of ``read_parquet``; None when no file of the dataset is readable."""
        files = self.files[name]
        if files is None:
            return _sql_str((self.parquet_root / name / "session=*" / "data.parquet").as_posix())
        if not files:
            return None
        return "[" + ", ".join(_sql_str(p.as_posix()) for p in files) + "]"

    def exclude_bad_files(self, message: str, names: Sequence[str] | None = None) -> list[str]:
        """Leave out every file of these datasets (all by default) whose Parquet footer does not
        parse or that DuckDB's error message names; returns the datasets that lost a file."""
        changed = []
        for name in names if names is not None else self.names:
            listed = self.files[name]
            if listed is None:
                listed = [path for _, path in sorted(_partition_files(self.parquet_root / name))]
            bad = {p for p in listed if p.as_posix() in message or not _footer_ok(p)}
            if bad:
                self.skipped |= bad
                self.files[name] = [p for p in listed if p not in bad]
                changed.append(name)
        return changed


def _build_view(con: duckdb.DuckDBPyConnection, sources: _ViewSources, name: str) -> bool:
    """Create or replace the view of one dataset (hive ``session`` DATE, union by name), leaving
    out unreadable files. False, with the reason kept, when no view could be built."""
    view = name.replace("/", "_")
    sources.unavailable.pop(view, None)
    while True:
        source = sources.source_sql(name)
        if source is None:
            sources.unavailable[view] = f"no readable file under {sources.parquet_root / name}"
            return False
        try:
            con.execute(
                f"CREATE OR REPLACE VIEW {_sql_ident(view)} AS SELECT * FROM read_parquet("
                f"{source}, hive_partitioning = true, hive_types = {{'session': DATE}}, "
                "union_by_name = true)"
            )
            return True
        except (duckdb.InvalidInputException, duckdb.IOException) as exc:
            if not sources.exclude_bad_files(str(exc), [name]):
                sources.unavailable[view] = _first_line(exc)
                return False
        except duckdb.Error as exc:
            sources.unavailable[view] = _first_line(exc)
            return False


def _query_failure(exc: duckdb.Error, sources: _ViewSources) -> QueryError | QueryRefusedError:
    """DuckDB's first line as a one-line project error, with what may explain it."""
    line = _first_line(exc)
    if isinstance(exc, duckdb.PermissionException):
        views = ", ".join(n.replace("/", "_") for n in sources.names)
        return QueryRefusedError(
            f"{line}: queries may read only the stored data, through the views ({views})"
        )
    notes = [f"view {view} is missing: {why}" for view, why in sources.unavailable.items()]
    if isinstance(exc, duckdb.CatalogException):
        notes.append("views: " + ", ".join(n.replace("/", "_") for n in sources.names))
    if type(exc) in (duckdb.Error, duckdb.InvalidInputException, duckdb.IOException):
        # what DuckDB raises for a file damaged past its footer, without naming the file
        notes.append("if a stored file is damaged, re-materialize its session")
    if sources.skipped:
        notes.append(f"{len(sources.skipped)} unreadable file(s) were left out")
    return QueryError("; ".join([line, *notes]))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """One physical type per logical type: UTC millisecond timestamps, plain strings."""
    out = frame.copy()
    for col in out.columns:
        series = out[col]
        if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series):
            if getattr(series.dt, "tz", None) is None:
                series = series.dt.tz_localize("UTC")
            out[col] = series.dt.tz_convert("UTC").astype("datetime64[ms, UTC]")
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
