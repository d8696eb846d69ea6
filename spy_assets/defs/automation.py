"""Automation: corrections flow downstream, and vendor steps retry.

When a raw partition of any session is re-materialized (a vendor correction refetched, a late
bar from the live path), automation rebuilds the derived partitions of that session, and only
those.

``AutomationCondition.eager()`` starts with ``in_latest_time_window()``, so it would rebuild only
today's session; :func:`rebuild_on_upstream_change` is the same idea over every partition.
Automation never calls the vendor: the condition is set on derived datasets only.

A vendor step that fails on a transient error (the vendor still unavailable after the client's
own retries) is retried by Dagster with :data:`VENDOR_RETRY_POLICY`; any other failure is not
(:func:`retry_only_transient_errors`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    Backoff,
    DagsterExecutionInterruptedError,
    DefaultSensorStatus,
    Definitions,
    Failure,
    Jitter,
    RetryPolicy,
)

from spy_assets.datasets import ANALYTICS

SENSOR_NAME = "rebuild_derived_on_upstream_change"

#: 2 more tries of a vendor step, after 30 s then 90 s, each ±30 s (so that steps that failed
#: together do not come back together); the client already retried each request.
VENDOR_RETRY_POLICY = RetryPolicy(
    max_retries=2, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)


@contextlib.contextmanager
def retry_only_transient_errors() -> Iterator[None]:
    """Around a vendor step's body: only a transient failure may use the step's retry policy.

    Dagster retries any exception, and even an interrupt, under a retry policy. Only a vendor
    still unavailable after the client's own retries is transient; a refused key retried could
    lock the account, bad input or a bug fails the same way again, and SIGINT/SIGTERM must stop
    the run (``recovery``). Those become a :class:`Failure` that bypasses the policy, with the
    original error as its cause (what the command line prints).
    """
    try:
        yield
    except Failure:
        raise
    except Exception as exc:
        from spy_assets.sources.vendor import VendorUnavailableError  # only the vendor raises it

        if isinstance(exc, VendorUnavailableError):
            raise
        raise Failure(description=str(exc), allow_retries=False) from exc
    except (KeyboardInterrupt, DagsterExecutionInterruptedError) as exc:
        raise Failure(description="interrupted", allow_retries=False) from exc


def rebuild_on_upstream_change() -> AutomationCondition:
    """True for a partition whose upstream partition was updated since it was last requested or
    built, by a run that did not also build it (Dagster's ``any_deps_updated``; an upstream that
    is requested on the same tick counts too, so features → scan events is one run), for any
    session. Not while an upstream partition is missing or being built, nor while the partition
    itself is in a run or backfill, nor while an upstream partition's latest blocking ``schema``
    check failed (the build would refuse that session: a failed run and an alert for nothing); it
    is built once the upstream session is fetched again and passes. A derived partition that is
    missing is built once its upstream partitions arrive (the live path's first bars of the
    day)."""
    return (
        AutomationCondition.any_deps_updated().since_last_handled()
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
        & AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("rebuild_on_upstream_change")


def definitions() -> Definitions:
    """The sensor that evaluates the condition, running by default (``spy-assets ui``)."""
    return Definitions(
        sensors=[
            AutomationConditionSensorDefinition(
                SENSOR_NAME,
                target=AssetSelection.groups(ANALYTICS),
                default_status=DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=60,
                description="Rebuilds derived partitions of any session whose upstream "
                "partitions were re-materialized (corrections, late bars).",
            )
        ]
    )
