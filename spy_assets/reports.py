"""The scan report over any range of stored sessions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd

from spy_assets.analytics.scanner import ScanReport, scan_report
from spy_assets.storage import Storage, dataset


def scan_report_for(storage: Storage, underlying: str, sessions: Sequence[dt.date]) -> ScanReport:
    """The report over the stored features (the bars) and scan events of these sessions.

    Sessions with nothing stored are skipped; the report counts what is there.
    """
    features_ds, events_ds = dataset(underlying, "features"), dataset(underlying, "scan_events")
    stored = [
        s for s in sessions if storage.exists(features_ds, s) and storage.exists(events_ds, s)
    ]
    bars = storage.read_sessions(features_ds, stored)
    events = storage.read_sessions(events_ds, stored)
    if bars.empty:
        bars = pd.DataFrame(columns=["contract", "session", "timestamp", "close"])
    else:
        bars = bars[["contract", "session", "timestamp", "close"]]
    return scan_report(bars, events)
