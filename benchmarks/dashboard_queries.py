"""Each dashboard page's queries and figures over a year of stored data, against the 1 s target.

    uv run python benchmarks/dashboard_queries.py [DATA_DIR] [--repeat N]

DATA_DIR (or SPY_ASSETS_BENCH_DIR; default /tmp/spy-assets-dashboard-year) holds a year of
the synthetic market, 2024-12-01 … 2025-11-28, with its Dagster instance in DATA_DIR/dagster;
when it holds no scan events yet the year is built first with the project's own backfill (a
few minutes). Then every page's work (the same functions the pages call: DuckDB reads, the
scan report, the figures, the Dagster instance reads) runs once cold (the process's first
visit: modules and the calendar load) and then --repeat times; the table shows the first, the
median and the slowest of the repeats per page. Exits 1 when a slowest repeat exceeds the
target.

The health page's first visit in a fresh server also imports Dagster and opens the instance;
that one-off cost is printed apart (the server starts the import in the background when it
starts, and keeps the instance open).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

TARGET_S = 1.0
FIRST, LAST = dt.date(2024, 12, 1), dt.date(2025, 11, 28)
DEFAULT_DIR = "/tmp/spy-assets-dashboard-year"


def build_year(root: Path) -> None:
    """Materialize the whole graph for the year with the project's own backfill."""
    from dagster import DagsterInstance

    from spy_assets import calendar
    from spy_assets.definitions import build_definitions
    from spy_assets.defs.resources import MarketDataResource, StorageResource
    from spy_assets.defs.runs import failure_summary, materialize_sessions

    sessions = calendar.sessions_between(FIRST, LAST)
    home = root / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    print(f"building {len(sessions)} sessions into {root} (instance {home}) …", flush=True)
    started = time.perf_counter()
    with DagsterInstance.from_config(str(home)) as instance:
        results = materialize_sessions(
            build_definitions(["SPY"]),
            sessions,
            instance,
            resources={
                "storage": StorageResource(root=str(root)),
                "market": MarketDataResource(source="synthetic"),
            },
            log_level="ERROR",
            on_chunk=lambda a, b, r: print(f"  {a} … {b}: {'ok' if r.success else 'FAILED'}"),
        )
    failed = [r for r in results if not r.success]
    if failed:
        sys.exit("the backfill failed: " + "; ".join(failure_summary(failed[0])))
    print(f"built in {time.perf_counter() - started:.0f} s\n")


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", default=os.environ.get("SPY_ASSETS_BENCH_DIR"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    root = Path(args.data_dir or DEFAULT_DIR).absolute()

    from spy_assets.dashboard import figures, health, queries
    from spy_assets.storage import Storage, dataset

    storage = Storage(root)
    events_ds = dataset("SPY", "scan_events")
    if not storage.sessions(events_ds):
        build_year(root)
    sessions = storage.sessions(events_ds)
    print(f"{root}: {len(sessions)} sessions stored, {sessions[0]} … {sessions[-1]}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores; load average before the runs (1, 5, 15 min): {load}")

    session = sessions[-2]  # an ordinary day (the last one of the window closes early)
    contracts = queries.session_contracts(storage, "SPY", session)
    contract = contracts.sort_values("bars").iloc[-1]["contract"]
    names = health.dataset_names(storage, ["SPY"])

    started = time.perf_counter()
    import dagster  # noqa: F401

    imported = time.perf_counter() - started
    started = time.perf_counter()
    location = health.locate_instance(root, {})
    instance = health.InstanceHealth.open(location.home) if location.home else None
    opened = time.perf_counter() - started

    def session_page() -> None:
        stored = storage.sessions(dataset("SPY", "minute_bars"))
        queries.default_session(stored)
        view = queries.session_view(storage, "SPY", session)
        figures.session_figure(view).to_json()

    def contract_page() -> None:
        queries.session_contracts(storage, "SPY", session)
        view = queries.contract_view(storage, "SPY", session, contract)
        figures.contract_figure(view).to_json()
        queries.events_table(view.events.assign(session=session, contract=contract))

    def report_page(threshold: float | None) -> Callable[[], None]:
        def run() -> None:
            default = queries.stored_threshold(storage, "SPY")
            queries.report_fingerprint(storage, "SPY", FIRST, LAST)  # the page's cache key
            view = queries.report_view(storage, "SPY", FIRST, LAST, threshold or default)
            view.report.to_markdown()
            figures.trigger_hours_figure(view.report).to_json()
            figures.durations_figure(view.events).to_json()
            queries.events_table(view.events)

        return run

    def health_page() -> None:
        listed = {name: storage.sessions(health.dataset_from_name(name)) for name in names}
        health.dataset_summary(listed, instance)
        every = sorted({s for stored in listed.values() for s in stored})
        shown = every[-10:]
        files = health.file_table(storage, names, shown)
        health.session_table(files, instance, names, shown)

    pages = [
        (f"session view ({session})", session_page),
        (f"contract view ({contract})", contract_page),
        (f"scan report, {FIRST} … {LAST}, stored threshold", report_page(None)),
        (f"scan report, {FIRST} … {LAST}, rescan at +30%", report_page(0.30)),
        ("data health (10 sessions, 8 datasets)", health_page),
    ]
    print(
        f"\n{'page':<58}{'first':>8}{'median':>9}{'slowest':>9}   "
        f"(first: this process's first visit; then {args.repeat} runs)"
    )
    worst = ("", 0.0)
    for label, fn in pages:
        [first] = timed(fn, 1)
        times = timed(fn, args.repeat)
        print(f"{label:<58}{first:>7.3f}s{statistics.median(times):>8.3f}s{max(times):>8.3f}s")
        if max(times) > worst[1]:
            worst = (label, max(times))
    print(
        f"\nonce per server: import dagster {imported:.2f} s, open the instance {opened:.2f} s "
        "(started in the background at server start; the instance stays open)"
    )
    print(f"load average after the runs: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    verdict = "within" if worst[1] <= TARGET_S else "ABOVE"
    print(f"slowest page: {worst[0]}: {worst[1]:.3f} s, {verdict} the {TARGET_S:g} s target")
    return 0 if worst[1] <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
