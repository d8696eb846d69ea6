"""The one place that knows the storage layout: Parquet per dataset per session, DuckDB over it.

The data root is a local folder or an object-store prefix (``s3://bucket/prefix``); under it::

    parquet/<dataset>/session=YYYY-MM-DD/data.parquet   one file per dataset and session

and, in the local state folder (the data folder itself when it is local)::

    catalog.duckdb                                       one view per stored dataset

Writes are atomic per session and deduplicated on the dataset's key and sorted by it, so
re-writing a session with the same rows gives the same bytes, on either backend. Locally a
write is a temporary file, fsync and rename; on an object store it is one complete upload (a
single PUT, or a multipart upload that only becomes the object when it is completed), so a
crash leaves the old object or the new one, never part of one. Object-store credentials,
endpoint and region come from the usual ``AWS_*`` environment variables, read by ``s3fs``.

:meth:`Storage.query` does not use ``catalog.duckdb`` (which is for external tools): it runs one
read-only statement on a fresh in-memory DuckDB whose views read the Parquet files found under
``parquet/`` at that moment, with file access outside ``parquet/`` switched off and the
configuration locked. On an object store DuckDB reads through the same ``s3fs`` filesystem,
registered with the connection (DuckDB's ``httpfs`` extension is not needed).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
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
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from spy_assets.errors import (
    CorruptPartitionError,
    MissingPartitionError,
    ObjectStoreError,
    QueryError,
    QueryRefusedError,
)

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

log = logging.getLogger(__name__)

_PARTITION_DIR = re.compile(r"^session=(\d{4}-\d{2}-\d{2})$")
_PARTITION_FILE = re.compile(r"(?:^|/)([^/]+/[^/]+)/session=(\d{4}-\d{2}-\d{2})/data\.parquet$")
_METADATA_PREFIX = "spy_assets."
#: ``.data.<writer pid>.<random>.parquet.tmp``; older writers left ``.data.<random>.parquet.tmp``.
_TEMP_GLOB = ".data.*.parquet.tmp"
_TEMP_WITH_PID = re.compile(r"^\.data\.(\d{1,10})\.[^.]+\.parquet\.tmp$")
#: A catalog being rebuilt: ``.catalog.<writer pid>.<random>.duckdb``.
_CATALOG_TEMP = re.compile(r"^\.catalog\.(\d{1,10})\.[^.]+\.duckdb(?:\.wal)?$")
#: A temp file without a writer PID, or an unfinished multipart upload on an object store
#: (whose writer cannot be asked), is removed once it is older than this.
LEGACY_TEMP_MAX_AGE_S = 3600.0
#: ``s3://bucket`` or ``s3://bucket/prefix``: the object-store roots understood.
OBJECT_STORE_URL = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(/[^\s]*)?$")
#: Objects up to twice this size are one PUT; larger ones a multipart upload of such parts.
UPLOAD_PART_BYTES = 8 * 2**20
#: Bytes read from the end of an object to get its Parquet footer in one request.
_TAIL_BYTES = 64 * 1024
#: The environment the object-store client reads (a new client when any of them changes).
_AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
)
#: Where the catalog goes when the data root is an object store and no state folder is given.
DEFAULT_STATE_DIR = "data"


def is_object_store_url(root: str | os.PathLike[str]) -> bool:
    """Whether a data root names an object-store prefix (``s3://bucket[/prefix]``)."""
    return isinstance(root, str) and OBJECT_STORE_URL.match(root) is not None


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
    """One session written: where (a local path or an ``s3://`` URL), rows, bytes, duplicates."""

    path: str
    rows: int
    bytes: int
    duplicates_dropped: int


@dataclass(frozen=True)
class FileInfo:
    """A stored file's size and last modification (nanoseconds since the epoch)."""

    size: int
    modified_ns: int


@dataclass(frozen=True)
class QueryResult:
    """A query's answer, and the stored files (paths or URLs) it left out because they cannot
    be read (their sessions need re-materializing)."""

    frame: pd.DataFrame
    skipped: list[str]


class _LocalFiles:
    """Partitions in a local folder: atomic writes by temporary file, fsync and rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_posix()

    def location(self, relative: str) -> str:
        return (self.root / relative).as_posix()

    def partition_files(self, name: str) -> dict[dt.date, str]:
        return {s: p.as_posix() for s, p in _partition_files(self.root / "parquet" / name)}

    def newest_file(self, name: str) -> str | None:
        for _, path in _session_dirs(self.root / "parquet" / name):
            if os.path.isfile(path):
                return path
        return None

    def dataset_names(self) -> list[str]:
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

    def open(self, location: str) -> BinaryIO:
        return open(location, "rb")

    def info(self, location: str) -> FileInfo | None:
        try:
            stat = Path(location).stat()
        except FileNotFoundError:
            return None
        return FileInfo(stat.st_size, stat.st_mtime_ns)

    def put(self, location: str, table: pa.Table) -> int:
        target = Path(location)
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
        return target.stat().st_size

    def sweep(self, now: float) -> list[str]:
        base = self.root / "parquet"
        if not base.is_dir():
            return []
        removed = []
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
                    removed.append(path.as_posix())
            except FileNotFoundError:  # the writer renamed or removed it meanwhile
                continue
        return removed

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Nothing to do: DuckDB reads local files itself."""


class _ObjectFiles:
    """Partitions under an ``s3://bucket/prefix``, through ``s3fs`` (credentials, endpoint and
    region from the ``AWS_*`` environment variables).

    A write is one upload of the whole file, which S3 makes visible only once it is complete:
    a PUT, or above :data:`UPLOAD_PART_BYTES` x 2 a multipart upload (aborted on an error; one
    a killed writer left unfinished never becomes the object, and :meth:`sweep` aborts it once
    it is older than :data:`LEGACY_TEMP_MAX_AGE_S`).
    """

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        match = OBJECT_STORE_URL.match(self.url)
        if match is None:
            raise ValueError(f"{url!r} is not an s3://bucket[/prefix] URL")
        self.bucket = match[1]
        self.prefix = (match[2] or "").strip("/")
        self._fs: AbstractFileSystem | None = None

    @property
    def fs(self) -> AbstractFileSystem:
        if self._fs is None:
            environment = (os.environ.get(name) for name in _AWS_VARIABLES)
            # the PID too: a forked child cannot use its parent's client (its IO thread)
            self._fs = _s3_filesystem(os.getpid(), *environment)
        return self._fs

    def location(self, relative: str) -> str:
        return f"{self.url}/{relative}"

    def _key(self, location: str) -> str:
        return location.removeprefix(f"s3://{self.bucket}/")

    def _objects(self, relative: str) -> list[str]:
        """Every object under ``root/relative/``, as ``s3://`` URLs."""
        try:
            with _object_errors(self.url):
                found = self.fs.find(self.location(relative) + "/")
        except FileNotFoundError:
            return []
        return [f"s3://{path}" for path in found]

    def partition_files(self, name: str) -> dict[dt.date, str]:
        out = {}
        for url in self._objects(f"parquet/{name}"):
            match = _PARTITION_FILE.search(url)
            if match and match[1] == name:
                with contextlib.suppress(ValueError):
                    out[dt.date.fromisoformat(match[2])] = url
        return out

    def newest_file(self, name: str) -> str | None:
        files = self.partition_files(name)
        return files[max(files)] if files else None

    def dataset_names(self) -> list[str]:
        parquet = self.location("parquet") + "/"
        names = set()
        for url in self._objects("parquet"):
            match = _PARTITION_FILE.search(url)
            if match and url.startswith(parquet) and url.count("/") == parquet.count("/") + 3:
                with contextlib.suppress(ValueError):
                    dt.date.fromisoformat(match[2])
                    names.add(match[1])
        return sorted(names)

    def open(self, location: str) -> BinaryIO:
        with _object_errors(location):
            return self.fs.open(location, "rb")

    def read_bytes(self, location: str) -> bytes:
        """The whole object in one GET (``open`` would ask for its size first)."""
        with _object_errors(location):
            return bytes(self.fs.cat_file(location))

    def read_tail(self, location: str) -> bytes:
        """The last :data:`_TAIL_BYTES` of an object (all of a smaller one) in one GET."""
        with _object_errors(location):
            return bytes(self.fs.cat_file(location, start=-_TAIL_BYTES))

    def info(self, location: str) -> FileInfo | None:
        try:
            with _object_errors(location):
                found = self.fs.info(location)
        except FileNotFoundError:
            return None
        if found.get("type") != "file":
            return None
        modified = found.get("LastModified")
        stamp = int(modified.timestamp() * 1e9) if modified is not None else 0
        return FileInfo(int(found["size"]), stamp)

    def put(self, location: str, table: pa.Table) -> int:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        data = sink.getvalue().to_pybytes()
        try:
            with _object_errors(location):
                self.fs.pipe_file(location, data, chunksize=UPLOAD_PART_BYTES)
        except FileNotFoundError:  # what s3fs makes of NoSuchBucket
            raise ObjectStoreError(f"{location}: the bucket {self.bucket} does not exist") from None
        return len(data)

    def sweep(self, now: float) -> list[str]:
        prefix = f"{self.prefix}/parquet/" if self.prefix else "parquet/"
        try:
            with _object_errors(self.url):
                answer = self.fs.call_s3(
                    "list_multipart_uploads", Bucket=self.bucket, Prefix=prefix
                )
        except FileNotFoundError:
            return []
        removed = []
        for upload in answer.get("Uploads", []) or []:
            initiated = upload.get("Initiated")
            if initiated is None or now - initiated.timestamp() <= LEGACY_TEMP_MAX_AGE_S:
                continue  # maybe a live writer's
            with contextlib.suppress(FileNotFoundError), _object_errors(self.url):
                self.fs.call_s3(
                    "abort_multipart_upload",
                    Bucket=self.bucket,
                    Key=upload["Key"],
                    UploadId=upload["UploadId"],
                )
                removed.append(f"s3://{self.bucket}/{upload['Key']} (unfinished upload)")
        return removed

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        con.register_filesystem(self.fs)


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
    """Parquet partitions under one root, a local folder or ``s3://bucket/prefix``, and the
    DuckDB catalog in a local state folder (``state_dir``: by default the data folder when it
    is local, else ``./data``)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        state_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        text = os.fspath(root)
        self._files: _LocalFiles | _ObjectFiles
        if is_object_store_url(text):
            self._files = _ObjectFiles(text)
            #: The root as given: a local :class:`Path`, or the ``s3://`` URL as a string.
            self.root: Path | str = self._files.url
            self.state_dir = Path(state_dir or DEFAULT_STATE_DIR).absolute()
        elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
            raise ValueError(f"{text!r}: a data root is a local folder or s3://bucket[/prefix]")
        else:
            local = Path(text).absolute()
            self._files = _LocalFiles(local)
            self.root = local
            self.state_dir = Path(state_dir).absolute() if state_dir else local

    # ------------------------------------------------------------------ paths
    @property
    def is_local(self) -> bool:
        """Whether the data lives in a local folder (else in an object store)."""
        return isinstance(self._files, _LocalFiles)

    @property
    def url(self) -> str:
        """The root as a string: an absolute local path or ``s3://bucket/prefix``."""
        return self._files.url

    @property
    def parquet_root(self) -> str:
        """Where the Parquet files are: a local path or an ``s3://`` URL, without a slash."""
        return self._files.location("parquet")

    def location(self, ds: Dataset, session: dt.date) -> str:
        """Where a session's file is or would be: a local path or an ``s3://`` URL."""
        return self._files.location(f"parquet/{ds.name}/session={session.isoformat()}/data.parquet")

    def partition_dir(self, ds: Dataset, session: dt.date) -> Path:
        """The local folder of a session (a local root only; see :meth:`location`)."""
        return self.partition_path(ds, session).parent

    def partition_path(self, ds: Dataset, session: dt.date) -> Path:
        """The local file of a session (a local root only; see :meth:`location`)."""
        if not self.is_local:
            raise ValueError(f"{self.url} is an object store: use Storage.location()")
        return Path(self.location(ds, session))

    def register_filesystem(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let a DuckDB connection read this root's ``s3://`` paths (the catalog's views, for
        one), through the same client; nothing to do for a local folder."""
        self._files.register(con)

    @property
    def catalog_path(self) -> Path:
        return self.state_dir / "catalog.duckdb"

    def exists(self, ds: Dataset, session: dt.date) -> bool:
        """True only for a readable partition: the file is there and its Parquet footer parses.

        A truncated or garbage file counts as not stored, so a backfill re-materializes it.
        """
        return self.status(ds, session) == "ok"

    def status(self, ds: Dataset, session: dt.date) -> Literal["ok", "missing", "corrupt"]:
        """``ok`` (footer parses), ``missing`` (no file) or ``corrupt`` (a file that is not
        readable Parquet). Reads the footer only, never the data."""
        try:
            self.footer(ds, session)
        except MissingPartitionError:
            return "missing"
        except CorruptPartitionError:
            return "corrupt"
        return "ok"

    def footer(self, ds: Dataset, session: dt.date) -> pq.FileMetaData:
        """A session's Parquet footer (rows, row groups, schema) without reading the data."""
        location = self.location(ds, session)
        try:
            return self._footer(location)
        except (FileNotFoundError, IsADirectoryError):
            raise MissingPartitionError(f"{ds.name} has no data for session {session}") from None
        except (pa.ArrowException, OSError) as exc:
            raise CorruptPartitionError(f"{location} cannot be read: {exc}") from None

    def file_info(self, ds: Dataset, session: dt.date) -> FileInfo | None:
        """Size and modification time of a session's file; None when there is none."""
        return self._files.info(self.location(ds, session))

    def _footer(self, location: str) -> pq.FileMetaData:
        if isinstance(self._files, _ObjectFiles):
            # one request: a Parquet footer sits at the end, its length in the last 8 bytes
            tail = self._files.read_tail(location)
            footer_end = len(tail) >= 8 and tail[-4:] == b"PAR1"
            if footer_end and int.from_bytes(tail[-8:-4], "little") + 8 <= len(tail):
                return pq.read_metadata(pa.BufferReader(tail))
        with self._files.open(location) as handle:
            return pq.read_metadata(handle)

    def _footer_ok(self, location: str) -> bool:
        """Whether a file's Parquet footer parses: cheap (the footer only), catches truncation."""
        try:
            self._footer(location)
        except (pa.ArrowException, OSError):
            return False
        return True

    def sessions(self, ds: Dataset) -> list[dt.date]:
        """Sessions with a file stored for a dataset, oldest first (readable or not; see
        :meth:`corrupt_sessions`)."""
        return sorted(self._files.partition_files(ds.name))

    def corrupt_sessions(self, ds: Dataset) -> list[dt.date]:
        """Sessions whose file exists but whose Parquet footer does not parse, oldest first."""
        files = self._files.partition_files(ds.name)
        return sorted(s for s, location in files.items() if not self._footer_ok(location))

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
        location = self.location(ds, session)
        size = self._files.put(location, table)
        return WriteResult(location, len(ordered), size, dropped)

    def sweep_temp_files(self) -> list[str]:
        """Remove what crashed writers left behind; returns what was removed.

        Locally: a temp file named with a writer PID is removed when no process has that PID;
        one of a live process is always kept, however old. A temp file without a PID (an older
        writer) is removed once it is older than :data:`LEGACY_TEMP_MAX_AGE_S`. On an object
        store: unfinished multipart uploads under ``parquet/`` older than that are aborted
        (they never became objects; aborting frees their parts).
        """
        return self._files.sweep(time.time())

    # ------------------------------------------------------------------ reads
    def read(self, ds: Dataset, session: dt.date) -> pd.DataFrame:
        """One session of a dataset; a clear error when it is missing or unreadable."""
        location = self.location(ds, session)
        try:
            if isinstance(self._files, _ObjectFiles):
                table = pq.read_table(pa.BufferReader(self._files.read_bytes(location)))
            else:
                with self._files.open(location) as handle:
                    table = pq.read_table(handle)
            return table.to_pandas()
        except (FileNotFoundError, IsADirectoryError):
            raise MissingPartitionError(
                f"{ds.name} has no data for session {session}: materialize it first "
                f"(expected {location})"
            ) from None
        except (pa.ArrowException, OSError) as exc:
            raise CorruptPartitionError(
                f"{ds.name} for session {session} cannot be read ({location}): {exc}. "
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
        location = self.location(ds, session)
        try:
            meta = self._footer(location).schema.to_arrow_schema().metadata or {}
        except (pa.ArrowException, OSError) as exc:
            raise CorruptPartitionError(f"{location} cannot be read: {exc}") from None
        return {
            k.decode()[len(_METADATA_PREFIX) :]: json.loads(v)
            for k, v in meta.items()
            if k.decode().startswith(_METADATA_PREFIX)
        }

    # ---------------------------------------------------------------- catalog
    def refresh_catalog(
        self, datasets: Sequence[Dataset] = (), *, busy_timeout: float | None = None
    ) -> list[str]:
        """Make ``catalog.duckdb`` hold one view per stored dataset; returns the view names.

        Every dataset on disk gets a view, whichever ``datasets`` a writer just wrote, so no
        stored dataset is left without one by a refresh that failed or raced. A view reads a
        glob, so new sessions show up without a refresh; when a stored file is unreadable the
        view lists the readable files instead (until the next refresh).

        The catalog is built in a new file and renamed over the old one: a reader holding the
        old file open (a DuckDB shell, a notebook) keeps reading it and never blocks the
        writer; the next reader opens the new one. A lock file in the state folder serialises
        writers. When the catalog already has a glob view over the same columns for exactly
        the datasets on disk (recorded next to it in ``.catalog.json``), nothing is rebuilt:
        that is the usual case once a dataset exists. ``datasets`` and ``busy_timeout`` are
        accepted for older callers.
        """
        del datasets, busy_timeout
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._catalog_lock():
            names = self.datasets_on_disk()
            shapes = {name: self._shape(name) for name in names}
            recorded = self._recorded_catalog()
            kept = {} if recorded is None else dict(recorded.get("views", {}))
            if kept == shapes and None not in shapes.values():
                return [name.replace("/", "_") for name in names]
            self._sweep_catalog_temps()
            # views whose dataset and columns are unchanged are kept as they are (binding a
            # view reads every file's footer); only new or changed ones are built
            kept = {n: shape for n, shape in kept.items() if shapes.get(n, "") == shape}
            stale = [n for n in names if n not in kept]
            built, sources = self._build_catalog(stale, keep=kept if recorded else None)
            for name in built:
                if sources.files[name] is None:  # a glob view: it stays valid for new sessions
                    kept[name] = shapes[name]
            self._record_catalog(kept)
        for path in sorted(sources.skipped):
            log.warning("catalog leaves out unreadable %s", path)
        return sorted({n.replace("/", "_") for n in [*kept, *built]})

    def _build_catalog(
        self, names: Sequence[str], keep: dict[str, str | None] | None
    ) -> tuple[list[str], _ViewSources]:
        """Write the catalog into a new file, then rename it over the old one: a copy of the
        old one with its views of ``keep`` (when given), plus a new view per name."""
        built = []
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".catalog.{os.getpid()}.", suffix=".duckdb", dir=self.state_dir
        )
        os.close(fd)
        if keep is not None:
            shutil.copyfile(self.catalog_path, tmp_name)
        else:
            os.unlink(tmp_name)  # DuckDB creates the file (an empty one is not a database)
        sources = _ViewSources(self, names)
        try:
            with duckdb.connect(tmp_name) as con:
                self._files.register(con)
                listed = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal")
                views = {row[0] for row in listed.fetchall()}
                wanted = {n.replace("/", "_") for n in [*(keep or {}), *names]}
                for view in sorted(views - wanted):
                    con.execute(f"DROP VIEW IF EXISTS {_sql_ident(view)}")
                for name in names:
                    if _build_view(con, sources, name):
                        built.append(name)
                    else:
                        con.execute(f"DROP VIEW IF EXISTS {_sql_ident(name.replace('/', '_'))}")
            os.chmod(tmp_name, _FILE_MODE)
            with open(tmp_name, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp_name, self.catalog_path)
        except BaseException:
            for leftover in (tmp_name, f"{tmp_name}.wal"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)
            raise
        _fsync_dir(self.state_dir)
        return built, sources

    def _shape(self, name: str) -> str | None:
        """The columns of a dataset's newest file (None when unreadable): a view bound to
        other columns must be rebuilt."""
        newest = self._files.newest_file(name)
        if newest is None:
            return None
        try:
            meta = self._footer(newest)
        except (pa.ArrowException, OSError):
            return None
        return str(meta.schema.to_arrow_schema().remove_metadata())

    @property
    def _catalog_record(self) -> Path:
        return self.state_dir / ".catalog.json"

    def _catalog_stamp(self) -> list[int] | None:
        try:
            stat = self.catalog_path.stat()
        except FileNotFoundError:
            return None
        return [stat.st_ino, stat.st_size, stat.st_mtime_ns]

    def _recorded_catalog(self) -> dict[str, Any] | None:
        """What the last refresh recorded, if it still describes ``catalog.duckdb``."""
        try:
            recorded = json.loads(self._catalog_record.read_text())
        except (OSError, ValueError):
            return None
        stamp = self._catalog_stamp()
        if not isinstance(recorded, dict) or stamp is None or recorded.get("catalog") != stamp:
            return None
        return recorded

    def _record_catalog(self, shapes: dict[str, str | None]) -> None:
        record = {"catalog": self._catalog_stamp(), "views": shapes}
        tmp = self.state_dir / f".catalog.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record, sort_keys=True))
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, self._catalog_record)

    def _sweep_catalog_temps(self) -> None:
        """Remove the half-built catalogs of refreshes whose process died."""
        for path in self.state_dir.glob(".catalog.*.duckdb*"):
            match = _CATALOG_TEMP.match(path.name)
            if match and _process_alive(int(match[1])) is False:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    @contextlib.contextmanager
    def _catalog_lock(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".catalog.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ query
    def datasets_on_disk(self) -> list[str]:
        """Datasets with at least one stored session, by folder (``spy/minute_bars``), sorted."""
        return self._files.dataset_names()

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

        The views are made from what is stored at the moment of the call, never from the
        catalog, so a stored dataset is never missing. The statement runs on a fresh in-memory
        DuckDB that can read files under ``parquet/`` only, with its configuration locked. Any
        other statement raises :class:`QueryRefusedError`; one DuckDB cannot run raises
        :class:`QueryError` with DuckDB's message. A stored file that is not readable Parquet
        is left out (the query is run again without it) and named in ``skipped``.
        """
        if not sql.strip():
            raise QueryRefusedError("empty query: give one SELECT statement")
        with self.sandbox() as con:
            _check_read_only(con, sql)
            sources = _ViewSources(self, self.datasets_on_disk())
            if not sources.names:
                raise MissingPartitionError(
                    f"nothing is stored under {self.parquet_root}: materialize some sessions first"
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
    def sandbox(
        self, *, threads: int | None = None, timezone: str | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A fresh in-memory DuckDB that can read files under ``parquet/`` only, with its
        configuration locked; views are created afterwards (they read inside ``parquet/``).

        On an object store the connection reads through the registered ``s3fs`` filesystem;
        DuckDB still refuses any path outside ``s3://bucket/prefix/parquet/``.
        """
        spill = tempfile.mkdtemp(prefix="spy-assets-query-")
        config: dict[str, Any] = {} if threads is None else {"threads": threads}
        con = duckdb.connect(":memory:", config=config)
        try:
            self._files.register(con)
            settings = [] if timezone is None else [f"SET TimeZone = {_sql_str(timezone)}"]
            settings += [
                f"SET allowed_directories = [{_sql_str(self.parquet_root + '/')}]",
                f"SET temp_directory = {_sql_str(spill)}",  # else ./.tmp would be allowed too
                "SET autoinstall_known_extensions = false",
                "SET autoload_known_extensions = false",
                "SET enable_external_access = false",
                "SET lock_configuration = true",
            ]
            for setting in settings:
                con.execute(setting)
            yield con
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)


@contextlib.contextmanager
def _object_errors(where: str) -> Iterator[None]:
    """An object-store failure (unreachable endpoint, refused credentials, no bucket) as one
    line naming what was asked; a missing object stays FileNotFoundError."""
    try:
        yield
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore's, aiohttp's and s3fs's own errors
        raise ObjectStoreError(
            f"{where}: {type(exc).__name__}: {_first_line(exc)} (check the AWS_* variables: "
            "endpoint, credentials, region, and that the bucket exists)"
        ) from None


@functools.lru_cache(maxsize=4)
def _s3_filesystem(pid: int, *environment: str | None) -> AbstractFileSystem:
    """One client per process and AWS environment (making one loads botocore's models);
    s3fs itself reads the variables. No listing cache: another process may have written a
    session since the last listing."""
    del pid, environment  # the cache key
    import s3fs

    return s3fs.S3FileSystem(use_listings_cache=False, skip_instance_cache=True)


def _partition_files(base: Path) -> Iterator[tuple[dt.date, Path]]:
    """``(session, data file)`` for every ``session=YYYY-MM-DD/data.parquet`` under base."""
    for session, path in _session_dirs(base):
        if os.path.isfile(path):
            yield session, Path(path)


def _session_dirs(base: Path) -> list[tuple[dt.date, str]]:
    """``(session, would-be data file)`` for every ``session=YYYY-MM-DD`` folder under base,
    newest first (os.scandir: a year of sessions is listed in about a millisecond)."""
    try:
        entries = list(os.scandir(base))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        match = _PARTITION_DIR.match(entry.name)
        if not match:
            continue
        try:
            session = dt.date.fromisoformat(match[1])
        except ValueError:  # session=2025-13-45: not a partition this code wrote
            continue
        found.append((session, f"{entry.path}/data.parquet"))
    return sorted(found, reverse=True)


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

    def __init__(self, storage: Storage, names: Sequence[str]) -> None:
        self.storage = storage
        self.parquet_root = storage.parquet_root
        self.names = list(names)
        self.files: dict[str, list[str] | None] = dict.fromkeys(self.names)  # None: the glob
        self.skipped: set[str] = set()
        self.unavailable: dict[str, str] = {}  # view name -> why it could not be built

    def source_sql(self, name: str) -> str | None:
        """The first argument of ``read_parquet``; None when no file of the dataset is readable."""
        files = self.files[name]
        if files is None:
            return _sql_str(f"{self.parquet_root}/{name}/session=*/data.parquet")
        if not files:
            return None
        return "[" + ", ".join(_sql_str(p) for p in files) + "]"

    def exclude_bad_files(self, message: str, names: Sequence[str] | None = None) -> list[str]:
        """Leave out every file of these datasets (all by default) whose Parquet footer does not
        parse or that DuckDB's error message names; returns the datasets that lost a file."""
        changed = []
        for name in names if names is not None else self.names:
            listed = self.files[name]
            if listed is None:
                found = self.storage._files.partition_files(name)
                listed = [found[s] for s in sorted(found)]
            bad = {p for p in listed if p in message or not self.storage._footer_ok(p)}
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
            sources.unavailable[view] = f"no readable file under {sources.parquet_root}/{name}"
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
