"""A read-only DuckDB over only the stored files a page needs.

:meth:`spy_assets.storage.Storage.query_with_report` builds a view over every dataset on each
call; a page knows which datasets and sessions it reads, so :class:`PageReader` opens one
in-memory DuckDB with the same lockdown (no file outside ``parquet/``, no extension loading,
configuration locked) and views over exactly those partitions. Filters on session and contract
therefore reach DuckDB as the list of files it opens and as a predicate it pushes into the
Parquet scan; no table is loaded whole into pandas.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from types import TracebackType

import duckdb
import pandas as pd

from spy_assets.errors import CorruptPartitionError, MissingPartitionError
from spy_assets.storage import Dataset, Storage


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class PageReader:
    """One locked-down in-memory DuckDB connection with a view per (dataset, sessions).

    Use it as a context manager; :meth:`view` registers the readable partitions of a dataset
    for some sessions and :meth:`frame` runs a parameterised SELECT over the views.
    """

    def __init__(self, storage: Storage, threads: int = 2) -> None:
        self.storage = storage
        self.parquet_root = storage.parquet_root
        self.views: dict[str, list[str]] = {}
        self._fast: dict[str, Dataset] = {}  # views made without union_by_name
        # the storage's own sandbox (local folder or object store), open for the page's life
        self._stack = contextlib.ExitStack()
        self._con = self._stack.enter_context(storage.sandbox(threads=threads, timezone="UTC"))

    def __enter__(self) -> PageReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def view(
        self, name: str, ds: Dataset, sessions: Sequence[dt.date], *, same_schema: bool = False
    ) -> str:
        """Create view ``name`` over the given sessions of ``ds`` (a ``session`` DATE column is
        added from the folder). Every session's file must exist: the caller has listed or
        checked them (a missing one fails the query).

        ``same_schema`` skips reading every file's schema up front (DuckDB's
        ``union_by_name``), which is most of the cost of a view over hundreds of files; if the
        files then turn out to differ, :meth:`frame` rebuilds the view with it and retries.
        """
        files = [self.storage.location(ds, s) for s in sessions]
        if not files:
            raise MissingPartitionError(f"{ds.name}: no session to read")
        self.views[name] = files
        self._create(name, ds, union=not same_schema)
        return name

    def _create(self, name: str, ds: Dataset, union: bool) -> None:
        listed = "[" + ", ".join(_sql_str(p) for p in self.views[name]) + "]"
        try:
            self._con.execute(
                f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM read_parquet({listed}, '
                "hive_partitioning = true, hive_types = {'session': DATE}, "
                f"union_by_name = {'true' if union else 'false'})"
            )
        except duckdb.Error as exc:
            raise CorruptPartitionError(
                f"a stored file of {ds.name} cannot be read ({_first_line(exc)}): "
                "re-materialize its session"
            ) from None
        if union:
            self._fast.pop(name, None)
        else:
            self._fast[name] = ds

    def frame(
        self, sql: str, params: Sequence[object] | None = None, *, arrow: bool = False
    ) -> pd.DataFrame:
        """Run one SELECT over the views; a damaged file becomes a CorruptPartitionError.

        ``arrow`` fetches through Arrow, quicker for hundreds of thousands of rows (DATE
        columns then arrive as ``datetime.date`` objects: cast them in the SQL if needed).
        """
        try:
            if arrow:
                return self._con.sql(sql, params=list(params or [])).to_arrow_table().to_pandas()
            return self._con.execute(sql, list(params or [])).df()
        except duckdb.Error as exc:
            mismatch = (duckdb.BinderException, duckdb.ConversionException)
            if self._fast and isinstance(exc, (*mismatch, duckdb.InvalidInputException)):
                for name, ds in list(self._fast.items()):  # maybe the schemas differ: unite
                    self._create(name, ds, union=True)
                return self.frame(sql, params, arrow=arrow)
            if isinstance(exc, (duckdb.InvalidInputException, duckdb.IOException)):
                raise CorruptPartitionError(
                    f"a stored file cannot be read ({_first_line(exc)}): re-materialize its session"
                ) from None
            raise
