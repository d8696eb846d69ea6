"""``spy-assets``: the project's commands (demo, backfill, report, query, sessions, ui,
dashboard, drift, stream, provenance, purge)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from spy_assets.storage import Storage

from spy_assets import calendar, config
from spy_assets.errors import (
    MissingPartitionError,
    NotASessionError,
    SpyAssetsError,
    UnknownDatasetError,
    UnknownUnderlyingError,
)

#: The demo's fixed window: its last sessions include the 2025-11-28 early close.
DEMO_END = dt.date(2025, 11, 28)
DEMO_SESSIONS = 5


def _dagster_home() -> Path:
    """DAGSTER_HOME when it is set, else the data folder's own instance, ``<data dir>/dagster``,
    configured by a copy of the project's dagster.yaml (see its comments)."""
    if os.environ.get("DAGSTER_HOME"):
        home = Path(os.environ["DAGSTER_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        return home
    from spy_assets.defs.recovery import prepare_instance_home

    return prepare_instance_home(config.load().state_dir / "dagster")


def _data_dir() -> Path | str:
    """The data root: a local folder or an ``s3://bucket/prefix`` URL (never path math on it)."""
    return config.load().data_dir


def _session_range(args: argparse.Namespace, history: bool = True) -> list[dt.date]:
    """The sessions a command names. With ``history`` (commands that build or read data) they
    must lie between the first session of history and the current session."""
    if getattr(args, "session", None):
        sessions = [calendar.parse_session(args.session)]
        start = end = sessions[0]
    else:
        start, end = _parse_date(args.start), _parse_date(args.end)
        if start > end:
            raise NotASessionError(f"--start {start} is after --end {end}")
        sessions = calendar.sessions_between(start, end)
        if not sessions:
            raise NotASessionError(f"no NYSE session between {start} and {end}")
    if history:
        first = config.load().first_session
        if start < first:
            raise NotASessionError(
                f"{start} is before the first session of history, {first} "
                f"(set {config.FIRST_SESSION} to start earlier if your vendor plan has it)"
            )
        calendar.check_not_future(sessions[-1])
    return sessions


def _parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise NotASessionError(f"{text!r} is not a date: expected YYYY-MM-DD") from None


def _check_underlying(underlying: str) -> str:
    configured = config.load().underlyings
    if underlying.upper() not in configured:
        raise UnknownUnderlyingError(
            f"unknown underlying {underlying!r}: configured underlyings are "
            f"{', '.join(configured)} (set SPY_ASSETS_UNDERLYINGS to add one)"
        )
    return underlying.upper()


def cmd_backfill(args: argparse.Namespace, sessions: Sequence[dt.date] | None = None) -> int:
    """Materialize every asset and check for a range of sessions, a chunk per run.

    ``--via instance`` (the default when DAGSTER_HOME names a deployment's instance or
    SPY_ASSETS_EXECUTOR is not ``in_process``): backfills in that instance, shown on the UI's
    Backfills page and run by its daemon, run queue, run launcher and the configured executor.
    ``--via process`` (the default for the data folder's own embedded instance): the same runs,
    recorded in the same instance, executed in this process, with no daemon or code server to
    start."""
    sessions = list(sessions) if sessions is not None else _session_range(args)
    via = getattr(args, "via", None) or (
        "instance"
        if os.environ.get("DAGSTER_HOME") or config.load().executor != "in_process"
        else "process"
    )
    if via == "process":
        return _backfill_in_process(args, sessions)
    os.environ.setdefault("DAGSTER_HOME", str(_dagster_home()))
    home = Path(os.environ["DAGSTER_HOME"])
    logs = home / "spy_assets_logs"
    from spy_assets.defs.recovery import CodeServer, reclaim_on_start

    # First (it creates a new instance's storage, which two processes must not do at once)
    if reclaimed := reclaim_on_start(_data_dir()):
        print(reclaimed, flush=True)
    # Loading the definitions takes the longest: the code server loads them in parallel.
    server = CodeServer("spy_assets.definitions", log_path=logs / "code_server.log")
    try:
        from dagster import DagsterInstance

        from spy_assets.definitions import build_definitions
        from spy_assets.defs.runs import InstanceBackfill, RunOutcome

        chunks = -(-len(sessions) // args.chunk)
        print(
            f"Preparing {chunks} backfill(s) of {len(sessions)} session(s) in the Dagster "
            f"instance {home} (its daemon runs them; log: {logs / 'daemon.log'})",
            flush=True,
        )

        def started() -> None:
            print(
                f"Materializing {len(sessions)} session(s) {sessions[0]} … {sessions[-1]} "
                f"into {_data_dir()} (Dagster instance: {home})",
                flush=True,
            )

        asset_keys = [spec.key.path for spec in build_definitions().resolve_all_asset_specs()]

        def report(outcome: RunOutcome, progress: str) -> None:
            state = "ok" if outcome.success else "FAILED"
            if outcome.only_gated:
                held = ", ".join(str(s) for s in outcome.gated)
                state = f"held back by its schema check: {held}; the other sessions go on"
            first, last = outcome.sessions[0], outcome.sessions[-1]
            print(f"  run {outcome.run_id[:8]} {first} … {last}: {state}  [{progress}]", flush=True)

        server.wait_ready()
        with DagsterInstance.get() as instance:
            backfill = InstanceBackfill(
                instance,
                sessions,
                asset_keys,
                workspace=server.workspace(logs),
                chunk=args.chunk,
                log_level=args.log_level,
                log_path=logs / "daemon.log",
                code_server=server,
            )
            result = backfill.run(on_run=report, on_start=started)
    finally:
        server.stop()
    if result.stopped is not None:
        print(f"\nThe run of sessions {result.stopped.span} stopped:", file=sys.stderr)
        for line in result.stopped.lines:
            print(f"  - {line}", file=sys.stderr)
        return 1
    return _backfill_done(result.gated)


def _backfill_in_process(args: argparse.Namespace, sessions: Sequence[dt.date]) -> int:
    """The embedded default: every chunk's run executes in this process (the fastest path; the
    runs are still recorded in the instance, with owner tags for crash recovery). A run stopped
    only by sessions that failed their schema check goes on with the sessions around them."""
    os.environ.setdefault("DAGSTER_HOME", str(_dagster_home()))
    from spy_assets.defs.recovery import reclaim_on_start

    if reclaimed := reclaim_on_start(_data_dir()):
        print(reclaimed, flush=True)
    from dagster import DagsterInstance

    from spy_assets.definitions import build_definitions
    from spy_assets.defs.runs import Progress, describe_run, followup_ranges, materialize_sessions

    print(
        f"Materializing {len(sessions)} session(s) {sessions[0]} … {sessions[-1]} "
        f"into {_data_dir()} (Dagster instance: {os.environ['DAGSTER_HOME']})",
        flush=True,
    )
    defs = build_definitions()
    progress = Progress(total=len(sessions))
    gated: list[dt.date] = []
    with DagsterInstance.get() as instance:
        pending = [list(sessions[i : i + args.chunk]) for i in range(0, len(sessions), args.chunk)]
        while pending:
            part = pending.pop(0)
            [result] = materialize_sessions(
                defs, part, instance, chunk=len(part), log_level=args.log_level
            )
            span = f"{part[0]} … {part[-1]}"
            if result.success:
                progress.add(len(part))
                print(f"  run {result.run_id[:8]} {span}: ok  [{progress.line()}]", flush=True)
                continue
            outcome = describe_run(instance, instance.get_run_by_id(result.run_id))
            if not outcome.only_gated:
                print(f"  run {result.run_id[:8]} {span}: FAILED", flush=True)
                stopped = span if len(part) > 1 else str(part[0])
                print(f"\nThe run of sessions {stopped} stopped:", file=sys.stderr)
                for line in outcome.lines:
                    print(f"  - {line}", file=sys.stderr)
                return 1
            held = sorted(set(outcome.gated) & set(part))
            gated += held
            progress.add(len(held))
            print(
                f"  run {result.run_id[:8]} {span}: held back by its schema check: "
                f"{', '.join(map(str, held))}; the other sessions go on  [{progress.line()}]",
                flush=True,
            )
            pending[:0] = followup_ranges(part, held)
    return _backfill_done(gated)


def _backfill_done(gated: Sequence[dt.date]) -> int:
    """The end of a backfill that ran every run it could: the gated sessions (exit 1), or what
    is stored."""
    if gated:
        print(
            f"\n{len(gated)} session(s) failed their schema check and were not built "
            f"downstream: {', '.join(str(s) for s in gated)} (the other sessions were; "
            "see the check's metadata in the UI)",
            file=sys.stderr,
        )
        return 1
    print()
    print(summary_table(_data_dir()))
    return 0


def summary_table(data_dir: Path | str) -> str:
    """What is stored, per dataset, read back through the DuckDB catalog."""
    from spy_assets.storage import Storage

    storage = Storage(data_dir, config.load().state_dir)
    tables = storage.query("SELECT table_name FROM information_schema.tables ORDER BY table_name")[
        "table_name"
    ].tolist()
    lines = [f"{'dataset (DuckDB view)':<28}{'sessions':>9}{'rows':>10}  first … last session"]
    for name in tables:
        row = storage.query(
            f"SELECT count(DISTINCT session) AS s, count(*) AS n, "
            f"strftime(min(session), '%Y-%m-%d') AS lo, strftime(max(session), '%Y-%m-%d') AS hi "
            f'FROM "{name}"'
        ).iloc[0]
        lines.append(f"{name:<28}{int(row.s):>9}{int(row.n):>10}  {row.lo} … {row.hi}")
    lines.append(
        f'\nQuery it: uv run spy-assets query "SELECT * FROM spy_minute_bars LIMIT 5"'
        f"  (catalog: {storage.catalog_path})"
    )
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    sessions = calendar.last_sessions(args.sessions, DEMO_END)
    code = cmd_backfill(args, sessions)
    if code == 0 and _has_report():
        print()
        print(_report_text(sessions, "SPY"))
    return code


def _has_report() -> bool:
    try:
        import spy_assets.reports  # noqa: F401
    except ImportError:
        return False
    return True


def _report_text(sessions: Sequence[dt.date], underlying: str) -> str:
    from spy_assets.reports import scan_report_for

    return scan_report_for(_storage(), underlying, sessions).to_text()


def cmd_report(args: argparse.Namespace) -> int:
    underlying = _check_underlying(args.underlying)
    sessions = _session_range(args)
    from spy_assets.reports import stored_sessions

    stored = stored_sessions(_storage(), underlying, sessions)
    if not stored:
        raise MissingPartitionError(
            f"no scan events of {underlying} are stored for {sessions[0]} … {sessions[-1]} "
            f"under {_data_dir()}: build them with "
            f"spy-assets backfill --start {sessions[0]} --end {sessions[-1]}"
        )
    if len(stored) < len(sessions):
        print(
            f"warning: {len(sessions) - len(stored)} of {len(sessions)} session(s) are not "
            "stored and are left out of the report",
            file=sys.stderr,
        )
    print(_report_text(stored, underlying))
    return 0


def _storage() -> Storage:
    from spy_assets.storage import Storage

    settings = config.load()
    return Storage(settings.data_dir, settings.state_dir)


def cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    try:
        result = _storage().query_with_report(args.sql)
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpyAssetsError(f"query failed: {first}") from None
    for path in result.skipped:
        print(
            f"warning: {path} cannot be read and was left out; re-materialize its session",
            file=sys.stderr,
        )
    print(result.frame.to_string(index=False, max_rows=args.max_rows))
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    for session in _session_range(args, history=False):
        close = calendar.session_close(session).tz_convert(calendar.MARKET_TZ)
        early = "  early close" if calendar.is_early_close(session) else ""
        print(f"{session}  closes {close:%H:%M} ET{early}")
    return 0


def cmd_provenance(args: argparse.Namespace) -> int:
    """What made one stored partition: the file's stamp and the Dagster materialization (code
    version, data version, the upstream data versions it was built from)."""
    from spy_assets import datasets
    from spy_assets.provenance import PartitionProvenance, describe

    names = [s.name for s in datasets.all_datasets(list(config.load().underlyings))]
    if args.dataset not in names:
        raise UnknownDatasetError(
            f"unknown dataset {args.dataset!r}: the datasets are {', '.join(names)}"
        )
    session = calendar.parse_session(args.session)
    spec = next(
        s for s in datasets.all_datasets(list(config.load().underlyings)) if s.name == args.dataset
    )
    store = _storage()
    if store.status(spec.dataset, session) != "ok":
        raise MissingPartitionError(
            f"{args.dataset} was never built for session {session} under {_data_dir()}: "
            f"build it with spy-assets backfill --session {session}"
        )
    found = PartitionProvenance(
        args.dataset,
        str(session),
        str(store.partition_path(spec.dataset, session)),
        store.provenance(spec.dataset, session),
    )
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

    with DagsterInstance.from_config(str(_dagster_home())) as instance:
        records = instance.fetch_materializations(
            AssetRecordsFilter(
                asset_key=AssetKey(args.dataset.split("/")), asset_partitions=[str(session)]
            ),
            limit=1,
        ).records
    if records:
        record = records[0]
        tags = record.asset_materialization.tags or {}
        prefix = "dagster/input_data_version/"
        found = PartitionProvenance(
            found.dataset,
            found.session,
            found.path,
            found.file,
            run_id=record.run_id,
            materialized_at=dt.datetime.fromtimestamp(record.timestamp, dt.UTC).isoformat(
                timespec="seconds"
            ),
            code_version=tags.get("dagster/code_version"),
            data_version=tags.get("dagster/data_version"),
            inputs={k.removeprefix(prefix): v for k, v in tags.items() if k.startswith(prefix)},
        )
    print(describe(found))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    """Remove landing files and raw partitions past their configured age (a dry run unless
    ``--apply``); never a session whose derived data was not built from it."""
    from spy_assets import retention

    settings = config.load()
    store = _storage()
    plan = retention.plan_today(
        store, settings.underlyings, settings.retention, args.dataset, args.session
    )
    if args.apply:
        retention.apply_purge(plan, store.state_dir)
    print(plan.to_text(dry_run=not args.apply))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """``dagster dev`` on the same instance and data folder as the other commands, as a child
    process that SIGINT/SIGTERM stop (its whole process group, if it does not stop by itself)."""
    from spy_assets.defs.recovery import project_file, run_supervised

    home = _dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["SPY_ASSETS_DATA_DIR"] = str(_data_dir())
    os.environ["SPY_ASSETS_STATE_DIR"] = str(config.load().state_dir)  # absolute for the child
    workspace = project_file("workspace.yaml") or Path("workspace.yaml")
    argv = [sys.executable, "-m", "dagster", "dev", "-w", str(workspace)]
    argv += ["-h", args.host, "-p", str(args.port)]
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={home})", flush=True)
    return run_supervised(argv)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the read-only research dashboard on 127.0.0.1."""
    from spy_assets.dashboard.server import serve

    serve(port=args.port)
    return 0  # pragma: no cover - serve replaces the process


def cmd_drift(args: argparse.Namespace) -> int:
    """``drift accept <dataset>``: the last observed vendor schema becomes the baseline;
    ``drift show [<dataset>]``: baselines, last observations and their differences."""
    from spy_assets.quality import drift

    vendor = [s.name for s in _datasets() if s.calls_vendor]
    names = [args.dataset] if args.dataset else vendor
    for name in names:
        if name not in vendor:
            raise drift.DriftError(
                f"{name!r} is not a vendor dataset; schema drift is tracked for {', '.join(vendor)}"
            )
    store = drift.BaselineStore(config.load().state_dir)
    if args.action == "accept":
        if not args.dataset:
            raise drift.DriftError("drift accept needs a dataset, e.g. spy/minute_bars")
        new, old = store.accept(args.dataset)
        changes = drift.diff(old, new) if old is not None else []
        print(
            f"{args.dataset}: baseline is now the schema observed on "
            f"{store.observed(args.dataset)['session']} ({store.baseline_path(args.dataset)})"
        )
        for change in changes:
            print(f"  accepted: {change}")
        return 0
    for name in names:
        baseline, observed = store.baseline(name), store.observed(name)
        if baseline is None and observed is None:
            if args.dataset:
                raise drift.DriftError(f"{name}: no vendor schema observed yet")
            print(f"{name}: nothing observed yet")
            continue
        changes = (
            drift.diff(baseline, drift.Schema.from_json(observed)) if baseline and observed else []
        )
        state = "; ".join(str(c) for c in changes) or "matches the baseline"
        print(
            f"{name}: {len(baseline.fields) if baseline else 0} fields in the baseline; "
            f"last observed {observed['session'] if observed else 'never'}: {state}"
        )
    return 0


def _datasets() -> list:
    from spy_assets.datasets import all_datasets

    return all_datasets(config.load().underlyings)


def cmd_stream(args: argparse.Namespace) -> int:
    """The live day: the vendor's WebSocket (or the feed simulator) into the landing zone."""
    from spy_assets import redaction
    from spy_assets.live.consumer import StreamConsumer, settings_from_config

    cfg = config.load()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.addFilter(redaction.process_filter())
    live_log = logging.getLogger("spy_assets.live")
    live_log.addHandler(handler)
    live_log.setLevel(logging.INFO)
    live_log.propagate = False
    heartbeat = args.heartbeat or (5.0 if args.simulate else cfg.stream_heartbeat_s)
    if args.simulate is None:
        if cfg.key_variable is None:
            raise SpyAssetsError(
                f"spy-assets stream needs a vendor key: set {' or '.join(config.KEY_VARIABLES)}"
                " (or replay a session offline with --simulate YYYY-MM-DD)"
            )
        from spy_assets.sources.vendor import MassiveSource

        key = os.environ[cfg.key_variable].strip()
        source = MassiveSource(key, cfg.base_url, requests_per_minute=cfg.requests_per_minute)
        settings = settings_from_config(
            cfg.state_dir,
            cfg.underlyings,
            cfg.stream_feed,
            flush_interval_s=cfg.stream_flush_s,
            heartbeat_s=heartbeat,
        )
        result = StreamConsumer(settings, key, source=source).run()
    else:
        from spy_assets.live.simulator import FeedSimulator, SessionTape, scattered_faults
        from spy_assets.sources.synthetic import SyntheticMarket

        session = calendar.check_not_future(calendar.parse_session(args.simulate))
        market = SyntheticMarket(seed=cfg.seed)
        tape = SessionTape.synthetic(session, market, cfg.underlyings[0])
        faults = scattered_faults(len(tape.events["stocks"])) if args.faults else []
        with FeedSimulator(tape, speed=args.speed, faults=faults) as sim:
            print(
                f"Replaying {session} at {args.speed:g}x on ws://{sim.feed} into "
                f"{cfg.state_dir / 'landing'} (Ctrl-C stops, landing what was received)",
                flush=True,
            )
            settings = settings_from_config(
                cfg.state_dir,
                cfg.underlyings[:1],
                f"ws://{sim.feed}",
                flush_interval_s=cfg.stream_flush_s,
                heartbeat_s=heartbeat,
                backoff_initial_s=0.2,
                quiet_s=1.0,
            )
            consumer = StreamConsumer(
                settings, sim.api_key, clock=sim.clock, source=market, session=session
            )
            result = consumer.run()
    c = result.counts
    print(
        f"{result.session}: {c.landed} bars landed in {c.batches} batches under "
        f"{cfg.state_dir / 'landing'} ({result.reason}); {c.duplicates} duplicates dropped, "
        f"{c.skipped} messages skipped",
        flush=True,
    )
    return 0


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0 and at most 1000000")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spy-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add_range(p: argparse.ArgumentParser, required: bool = True) -> None:
        group = p.add_mutually_exclusive_group(required=required)
        group.add_argument("--session", help="one session, YYYY-MM-DD")
        group.add_argument("--start", help="first date of a range, YYYY-MM-DD")
        p.add_argument("--end", help="last date of the range (default: --start)")

    def add_run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--chunk", type=_positive_int, default=21, help="sessions per run (default 21)"
        )
        p.add_argument(
            "--log-level",
            default="CRITICAL",
            type=str.upper,
            choices=LOG_LEVELS,
            help="Dagster console log level (INFO shows each step)",
        )

    demo = sub.add_parser("demo", help="build the last sessions of the demo window and report")
    demo.add_argument("--sessions", type=_positive_int, default=DEMO_SESSIONS)
    add_run_options(demo)
    demo.set_defaults(func=cmd_demo)

    backfill = sub.add_parser("backfill", help="materialize every asset for sessions")
    add_range(backfill)
    add_run_options(backfill)
    backfill.add_argument(
        "--via",
        choices=("process", "instance"),
        help="process: run in this process (default for the data folder's own instance); "
        "instance: backfills run by the daemon, queue, launcher and executor of DAGSTER_HOME "
        "(default when DAGSTER_HOME or SPY_ASSETS_EXECUTOR is set)",
    )
    backfill.set_defaults(func=cmd_backfill)

    report = sub.add_parser("report", help="the scan report over stored sessions")
    add_range(report)
    report.add_argument("--underlying", default="SPY")
    report.set_defaults(func=cmd_report)

    query = sub.add_parser("query", help="SQL over the DuckDB catalog")
    query.add_argument("sql")
    query.add_argument("--max-rows", type=_positive_int, default=50)
    query.set_defaults(func=cmd_query)

    sessions = sub.add_parser("sessions", help="list NYSE sessions in a range")
    add_range(sessions)
    sessions.set_defaults(func=cmd_sessions)

    provenance = sub.add_parser(
        "provenance", help="what made a stored partition (code, source, params, upstream)"
    )
    provenance.add_argument("dataset", help="e.g. spy/features")
    provenance.add_argument("session", help="YYYY-MM-DD")
    provenance.set_defaults(func=cmd_provenance)

    purge = sub.add_parser(
        "purge", help="remove landing files and raw partitions past SPY_ASSETS_RETENTION"
    )
    purge.add_argument("--apply", action="store_true", help="delete (default: a dry run)")
    purge.add_argument("--dataset", action="append", help="only this raw dataset (repeatable)")
    purge.add_argument("--session", help="only this session, YYYY-MM-DD")
    purge.set_defaults(func=cmd_purge)

    ui = sub.add_parser("ui", help="start the Dagster UI with these definitions")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    dashboard = sub.add_parser("dashboard", help="serve the read-only research dashboard")
    dashboard.add_argument("--port", type=_positive_int, default=8501, help="on 127.0.0.1")
    dashboard.set_defaults(func=cmd_dashboard)

    drift = sub.add_parser("drift", help="vendor schema baselines: show them, accept a change")
    drift.add_argument("action", choices=("accept", "show"))
    drift.add_argument("dataset", nargs="?", help="a vendor dataset, e.g. spy/minute_bars")
    drift.set_defaults(func=cmd_drift)
    stream = sub.add_parser("stream", help="land the live day's bars from the vendor's WebSocket")
    stream.add_argument(
        "--simulate", metavar="SESSION", help="replay a session offline through the simulator"
    )
    stream.add_argument(
        "--speed", type=_positive_number, default=60.0, help="replay speed factor (default 60)"
    )
    stream.add_argument(
        "--faults",
        action="store_true",
        help="with --simulate: inject disconnects, duplicates and out-of-order bars",
    )
    stream.add_argument(
        "--heartbeat", type=_positive_number, help="seconds between heartbeat lines"
    )
    stream.set_defaults(func=cmd_stream)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "start", None) and not getattr(args, "end", None):
        args.end = args.start
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from contextlib import nullcontext

    guard = nullcontext()
    if args.func in (cmd_backfill, cmd_demo):  # SIGINT/SIGTERM end their runs cleanly
        from spy_assets.defs.recovery import interrupt_guard

        guard = interrupt_guard()
    try:
        with guard:
            return int(args.func(args) or 0)
    except SpyAssetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # recovery.Interrupted names the signal and the run
        print(f"interrupted: {exc or 'SIGINT received'}", file=sys.stderr, flush=True)
        return getattr(exc, "exit_code", 130)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
