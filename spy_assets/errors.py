"""The project's exceptions: each one carries a message a user can act on."""

from __future__ import annotations


class SpyAssetsError(Exception):
    """Base class for every error the project raises on purpose."""


class NotASessionError(SpyAssetsError, ValueError):
    """A date that is not an NYSE trading session (weekend, holiday, closure, bad format)."""


class FutureSessionError(NotASessionError):
    """A session that has not traded yet: its data would be made up."""


class ConfigError(SpyAssetsError, ValueError):
    """An environment variable or setting with a value the project cannot use."""


class UnknownUnderlyingError(SpyAssetsError, ValueError):
    """An underlying that is not in the configured list."""


class CorruptPartitionError(SpyAssetsError):
    """A stored Parquet partition that cannot be read back."""


class MissingPartitionError(SpyAssetsError):
    """An upstream partition that has not been materialized yet."""


class SkippableError(SpyAssetsError):
    """A data problem for one item (a contract, a page): logged, counted and skipped, never
    retried."""


class AuthError(SpyAssetsError):
    """The vendor refused the key (401/403): never retried, to avoid an account lockout."""


class QueryRefusedError(SpyAssetsError):
    """A query that is not one read-only statement, or that reaches outside the data."""


class QueryError(SpyAssetsError):
    """A query DuckDB could not run (syntax, unknown table or column, bad cast): its message."""


class CatalogBusyError(SpyAssetsError):
    """Another process holds ``catalog.duckdb`` open, so its views cannot be refreshed."""


class ObjectStoreError(SpyAssetsError):
    """The object store behind an ``s3://`` data root cannot be reached or refuses a request."""


class UnknownDatasetError(SpyAssetsError, ValueError):
    """A dataset name that is not in the table of datasets, or not one a command works on."""
