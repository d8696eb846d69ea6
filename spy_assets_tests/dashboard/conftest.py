"""One data folder for every dashboard test, built once by the project's own backfill.

Three sessions (an ordinary pair and the 2025-11-28 early close) on the synthetic market, with
the Dagster instance in ``<data>/dagster``; then VIX of 2025-11-26 gets one incoherent bar and
that session is materialized again, so its blocking schema check fails (and the health page
has a failure to show). Under pytest-xdist the workers share the folder: the first one builds
it under a lock. Tests that change data work on a copy (:func:`data_copy`).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import shutil
from pathlib import Path

import pytest

SESSIONS = [dt.date(2025, 11, 25), dt.date(2025, 11, 26), dt.date(2025, 11, 28)]
#: Its VIX fails the schema check in the second run.
FAILED_SESSION = dt.date(2025, 11, 26)
FAILED_DATASET = "vix/minute_bars"
FAILED_RULE = "high < max(open, close)"


def _build(root: Path) -> None:
    from dagster import DagsterInstance

    from spy_assets.definitions import build_definitions
    from spy_assets.defs.resources import MarketDataResource, StorageResource
    from spy_assets.defs.runs import failure_summary, materialize_sessions
    from spy_assets.storage import VIX_MINUTE_BARS, Storage

    home = root / "dagster"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    resources = {
        "storage": StorageResource(root=str(root)),
        "market": MarketDataResource(source="synthetic"),
    }
    defs = build_definitions(["SPY"])
    with DagsterInstance.from_config(str(home)) as instance:
        [result] = materialize_sessions(
            defs, SESSIONS, instance, resources=resources, log_level="CRITICAL"
        )
        assert result.success, failure_summary(result)
        storage = Storage(root)
        vix = storage.read(VIX_MINUTE_BARS, FAILED_SESSION)
        vix.loc[5, "high"] = vix.loc[5, "close"] - 1.0
        storage.write(VIX_MINUTE_BARS, FAILED_SESSION, vix)
        [again] = materialize_sessions(
            defs, [FAILED_SESSION], instance, resources=resources, log_level="CRITICAL"
        )
        assert not again.success


@pytest.fixture(scope="session")
def dash_data_root(tmp_path_factory, request) -> Path:
    """Where the shared data folder is (built or not yet): beside the xdist workers' own
    temporary folders when there are workers."""
    base = tmp_path_factory.getbasetemp()
    shared = hasattr(request.config, "workerinput")
    return (base.parent if shared else base) / "dashboard-data"


@pytest.fixture(scope="session")
def dash_data(dash_data_root) -> Path:
    """The shared, read-only data folder (built once across xdist workers)."""
    root, base = dash_data_root, dash_data_root.parent
    with open(base / "dashboard-data.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (base / "dashboard-data.ok").exists():
                shutil.rmtree(root, ignore_errors=True)
                _build(root)
                (base / "dashboard-data.ok").touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return root


@pytest.fixture
def data_copy(dash_data, tmp_path) -> Path:
    """A private copy of the data folder, to damage or change."""
    target = tmp_path / "data"
    shutil.copytree(dash_data, target)
    return target


@pytest.fixture
def use_data(monkeypatch):
    """Point the dashboard at a data folder (DAGSTER_HOME unset: the folder's instance)."""

    def use(root: Path) -> Path:
        monkeypatch.setenv("SPY_ASSETS_DATA_DIR", str(root))
        monkeypatch.delenv("DAGSTER_HOME", raising=False)
        return root

    return use
