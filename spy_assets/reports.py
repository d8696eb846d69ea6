"""The scan report over any range of stored sessions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd

from spy_assets.analytics.scanner import ScanReport, scan_report
from spy_assets.errors import SpyAssetsError
from spy_assets.storage import Storage, dataset


def stored_sessions(
    storage: Storage, underlying: str, sessions: Sequence[dt.date]
) -> list[dt.date]:
    """The sessions whose features and scan events are both stored and readable."""
    features_ds, events_ds = dataset(underlying, "features"), dataset(underlying, "scan_events")
    return [s for s in sessions if storage.exists(features_ds, s) and storage.exists(events_ds, s)]


def scan_report_for(storage: Storage, underlying: str, sessions: Sequence[dt.date]) -> ScanReport:
    """The report over the stored features (the bars) and scan events of these sessions, at the
    threshold the events were scanned with (from their provenance).

    Sessions with nothing stored are skipped; the report counts what is there.
    """
    features_ds, events_ds = dataset(underlying, "features"), dataset(underlying, "scan_events")
    stored = stored_sessions(storage, underlying, sessions)
    bars = storage.read_sessions(features_ds, stored)
    events = storage.read_sessions(events_ds, stored)
    if bars.empty:
        bars = pd.DataFrame(columns=["contract", "session", "timestamp", "close"])
    else:
        bars = bars[["contract", "session", "timestamp", "close"]]
    thresholds = {
        float(storage.provenance(events_ds, s).get("params", {}).get("threshold", "nan"))
        for s in stored
    }
    if len(thresholds) > 1:
        raise SpyAssetsError(
            f"the stored scan events of these sessions were made with different thresholds "
            f"({', '.join(f'{t:g}' for t in sorted(thresholds))}): rebuild them with one"
        )
    threshold = thresholds.pop() if thresholds else None
    return scan_report(bars, events, threshold=threshold if threshold == threshold else None)
