"""The dashboard's pages: thin Streamlit code over ``queries``, ``figures`` and ``health``.

Each page function draws one page; :func:`guarded` turns any error into one line on the page (a
project error's own message, which says what to do), never a traceback. The session and
contract views re-draw themselves every :data:`LIVE_REFRESH_S` seconds while the session they
show is trading.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from spy_assets import config
from spy_assets.dashboard import figures, health, queries
from spy_assets.errors import NotASessionError, SpyAssetsError
from spy_assets.storage import Dataset, Storage, dataset

log = logging.getLogger(__name__)

#: How often a live session's views re-read the stored minutes.
LIVE_REFRESH_S = 30
#: Session lists and other directory listings are cached this long.
LIST_TTL_S = 15
#: The health page's per-session table covers at most this many sessions.
HEALTH_MAX_SESSIONS = 30
_CHART_CONFIG = {"displaylogo": False}


# ------------------------------------------------------------------------------ plumbing
def guarded(page: Callable[..., None]) -> Callable[..., None]:
    """Run a page; a project error is shown as its message, anything else as one line."""

    @functools.wraps(page)
    def run(*args: object, **kwargs: object) -> None:
        try:
            page(*args, **kwargs)
        except SpyAssetsError as exc:
            st.error(str(exc), icon=":material/error:")
        except Exception as exc:  # noqa: BLE001 - the page must never show a traceback
            log.exception("dashboard page %s failed", page.__name__)
            first = str(exc).strip().splitlines()
            st.error(
                f"{type(exc).__name__}: {first[0] if first else ''} (details are in the "
                "server's log)",
                icon=":material/error:",
            )

    return run


def settings() -> config.Settings:
    return config.load()


def current_storage() -> Storage:
    s = settings()
    return Storage(s.data_dir, s.state_dir)


def current_underlying() -> str:
    """The underlying the pages show: the first configured one, or the sidebar's pick."""
    underlyings = settings().underlyings
    if len(underlyings) == 1:
        return underlyings[0]
    return st.sidebar.selectbox("Underlying", underlyings, key="underlying")


@st.cache_data(ttl=LIST_TTL_S, show_spinner=False)
def stored_sessions(root: str, name: str) -> list[dt.date]:
    """Sessions with a file for a dataset (a directory listing, cached briefly)."""
    return Storage(root).sessions(Dataset(name, ()))


@st.cache_data(ttl=LIST_TTL_S, show_spinner=False)
def no_data(root: str) -> str | None:
    return queries.no_data_message(Storage(root))


def _warm(state_dir: Path) -> None:
    from spy_assets import calendar

    calendar.nyse()  # the exchange calendar takes a moment to build
    import spy_assets.datasets  # noqa: F401 - the health page's list of datasets (with pandera)

    location = health.locate_instance(state_dir)
    if location.home is not None:  # the health page's client: importing Dagster takes seconds
        try:
            health.instance_health(location.home)
        except Exception:  # noqa: BLE001 - the health page reports it when it is visited
            log.warning("could not open the Dagster instance at %s", location.home)


@st.cache_resource(show_spinner=False)
def warm_up() -> bool:
    """Once per server, in the background: load the exchange calendar, import the datasets
    table and open the Dagster instance, so that no page visit pays for them."""
    threading.Thread(
        target=_warm, args=(settings().state_dir,), name="dashboard-warm-up", daemon=True
    ).start()
    return True


def sidebar() -> None:
    s = settings()
    st.sidebar.caption(f"Data: `{s.data_dir}`")
    live = queries.live_session()
    if live is not None:
        st.sidebar.success(f"Live: the {live} session is trading", icon=":material/sensors:")


def _empty_state(storage: Storage) -> bool:
    message = no_data(str(storage.root))
    if message:
        st.info(message, icon=":material/database:")
        return True
    return False


def pick_session(storage: Storage, underlying: str, label: str = "Session") -> dt.date | None:
    """The session picker: ``?session=`` first, then the last pick on any page, then today's
    live session or the latest stored one. Returns None (with the reason on the page) for a
    date that is not a session."""
    stored = stored_sessions(str(storage.root), dataset(underlying, "minute_bars").name)
    default = queries.default_session(stored)
    wanted = st.query_params.get("session") or st.session_state.get("picked_session")
    if wanted:
        try:
            default = dt.date.fromisoformat(str(wanted))
        except ValueError:
            st.warning(f"{wanted!r} is not a date: expected YYYY-MM-DD", icon=":material/event:")
    day = st.date_input(label, value=default, key="session", format="YYYY-MM-DD")
    st.query_params["session"] = day.isoformat()
    st.session_state["picked_session"] = day.isoformat()
    if stored:
        st.caption(f"{len(stored)} sessions stored: {stored[0]} … {stored[-1]}")
    try:
        return queries.parse_session(day)
    except NotASessionError as exc:
        st.warning(str(exc), icon=":material/event_busy:")
        return None


def _refresh_every(session: dt.date) -> int | None:
    return LIVE_REFRESH_S if queries.live_session() == session else None


# --------------------------------------------------------------------------------- pages
def _pick_stored_session() -> tuple[Storage, str, dt.date] | None:
    """The storage, underlying and picked session of a page, or None when the page has said
    why there is nothing to show (no data yet, or no valid session picked)."""
    storage, underlying = current_storage(), current_underlying()
    if _empty_state(storage):
        return None
    session = pick_session(storage, underlying)
    if session is None:
        return None
    return storage, underlying, session


@guarded
def session_page() -> None:
    st.title("Session")
    picked = _pick_stored_session()
    if picked is None:
        return
    storage, underlying, session = picked
    st.fragment(_session_body, run_every=_refresh_every(session))(storage, underlying, session)


@guarded
def _session_body(storage: Storage, underlying: str, session: dt.date) -> None:
    view = queries.session_view(storage, underlying, session)
    if _refresh_every(session):
        st.caption(f"Live: re-read every {LIVE_REFRESH_S} s; {len(view.spot)} minutes so far")
    calls = view.strikes[view.strikes["contract_type"] == "call"]["strike"]
    puts = view.strikes[view.strikes["contract_type"] == "put"]["strike"]
    st.markdown(
        f"**{underlying}** open **{view.open_price:.2f}** at "
        f"{queries.to_et(pd.Series([view.open_time])).iloc[0]:%H:%M} ET · calls "
        f"{', '.join(f'{s:g}' for s in sorted(calls)) or '—'} · puts "
        f"{', '.join(f'{s:g}' for s in sorted(puts)) or '—'}"
    )
    st.plotly_chart(figures.session_figure(view), config=_CHART_CONFIG, key="session-chart")
    for note in view.notes:
        st.info(note, icon=":material/info:")
    if view.news is not None:
        st.subheader(f"News ({len(view.news)})")
        if view.news.empty:
            st.caption("No article in this session's news window.")
        else:
            st.dataframe(view.news, hide_index=True, key="news-table")


@guarded
def contract_page() -> None:
    st.title("Contract")
    picked = _pick_stored_session()
    if picked is None:
        return
    storage, underlying, session = picked
    contracts = queries.session_contracts(storage, underlying, session)
    if contracts.empty:
        st.warning(f"No contract was picked for {session}.", icon=":material/info:")
        return
    labels = {
        row.contract: f"{row.contract} · {row.contract_type} {row.strike:g} · {row.bars} bars"
        for row in contracts.itertuples(index=False)
    }
    contract_of = {label: contract for contract, label in labels.items()}
    wanted = st.query_params.get("contract")
    if wanted and wanted not in labels:
        st.warning(
            f"{wanted} is not one of the contracts picked on {session}: pick one below.",
            icon=":material/info:",
        )
    options = list(contract_of)
    index = options.index(labels[wanted]) if wanted in labels else 0
    contract = contract_of[st.selectbox("Contract", options, index=index, key="contract")]
    st.query_params["contract"] = contract
    st.fragment(_contract_body, run_every=_refresh_every(session))(
        storage, underlying, session, contract
    )


@guarded
def _contract_body(storage: Storage, underlying: str, session: dt.date, contract: str) -> None:
    view = queries.contract_view(storage, underlying, session, contract)
    if _refresh_every(session):
        st.caption(f"Live: re-read every {LIVE_REFRESH_S} s; {len(view.bars)} minutes so far")
    missing = view.iv_missing
    st.markdown(
        f"**{len(view.bars)}** bars · **{len(view.events)}** scan events at "
        f"+{view.threshold * 100:g}% over the running session low · **{len(missing)}** "
        "minutes without IV"
    )
    st.plotly_chart(figures.contract_figure(view), config=_CHART_CONFIG, key="contract-chart")
    if len(view.events):
        st.subheader("Scan events")
        table = view.events.assign(session=session, contract=contract)
        st.dataframe(queries.events_table(table), hide_index=True, key="contract-events")
    if len(missing):
        st.subheader("Minutes without IV")
        counts = missing["iv_status"].value_counts()
        st.caption(" · ".join(f"{status}: {n}" for status, n in counts.items()))
        shown = pd.DataFrame(
            {
                "time (ET)": queries.to_et(missing["timestamp"]),
                "close": missing["close"],
                "iv": missing["iv"],
                "iv_status": missing["iv_status"],
            }
        )
        st.dataframe(shown, hide_index=True, key="iv-missing")


@guarded
def report_page() -> None:
    st.title("Scan report")
    storage, underlying = current_storage(), current_underlying()
    if _empty_state(storage):
        return
    stored = stored_sessions(str(storage.root), dataset(underlying, "scan_events").name)
    if not stored:
        st.info(
            f"No scan events of {underlying} are stored yet: build them with {queries.BUILD_HINT}",
            icon=":material/database:",
        )
        return
    left, middle, right = st.columns(3)
    start = _query_date("start", stored[0])
    end = _query_date("end", stored[-1])
    start = left.date_input("From", value=start, key="report-start", format="YYYY-MM-DD")
    end = middle.date_input("To", value=end, key="report-end", format="YYYY-MM-DD")
    percent = right.number_input(
        "Threshold (%)",
        min_value=1.0,
        max_value=1000.0,
        value=_query_float("threshold", 100 * queries.stored_threshold(storage, underlying)),
        step=5.0,
        key="report-threshold",
        help="The stored events' threshold gives the same figures as `spy-assets report`; "
        "another one rescans the stored bars.",
    )
    st.query_params.update(start=start.isoformat(), end=end.isoformat(), threshold=f"{percent:g}")
    fingerprint = queries.report_fingerprint(storage, underlying, start, end)
    view = cached_report(str(storage.root), underlying, start, end, percent / 100, fingerprint)
    report = view.report
    if view.rescanned:
        st.info(
            f"Rescanned at +{percent:g}%: the stored events were scanned at "
            f"+{view.stored_threshold * 100:g}%, the threshold `spy-assets report` uses.",
            icon=":material/refresh:",
        )
    if view.not_stored:
        st.warning(
            f"{len(view.not_stored)} of {view.total_sessions} session(s) are not stored and "
            "are left out of the report: build them with "
            f"{queries.backfill_command(view.not_stored[0], view.not_stored[-1])}",
            icon=":material/warning:",
        )
    if view.damaged:
        st.error(
            f"{len(view.damaged)} session(s) have a damaged file and are left out: "
            f"{', '.join(map(str, view.damaged))}; rebuild each with "
            f"{queries.backfill_command(view.damaged[0])}",
            icon=":material/broken_image:",
        )
    command = (
        f"uv run spy-assets report --start {view.sessions[0]} --end {view.sessions[-1]}"
        f" --underlying {underlying}"
    )
    st.caption(f"The same figures on the command line: `{command}`")
    left, right = st.columns(2)
    left.markdown(report.to_markdown())
    right.plotly_chart(
        figures.trigger_hours_figure(report), config=_CHART_CONFIG, key="hours-chart"
    )
    right.plotly_chart(
        figures.durations_figure(view.events), config=_CHART_CONFIG, key="durations-chart"
    )
    st.subheader(f"Events ({len(view.events):,})")
    table = queries.events_table(view.events)
    st.dataframe(table, hide_index=True, key="events-table")
    st.download_button(
        "Download the events as CSV",
        data=lambda: table.to_csv(index=False),
        file_name=f"scan_events_{underlying.lower()}_{start}_{end}_{percent:g}pct.csv",
        mime="text/csv",
        on_click="ignore",
        key="events-csv",
    )


@st.cache_data(ttl=60, max_entries=16, show_spinner="Scanning the stored sessions …")
def cached_report(
    root: str,
    underlying: str,
    start: dt.date,
    end: dt.date,
    threshold: float,
    fingerprint: tuple[tuple[str, int, int], ...],
) -> queries.ReportView:
    """The report, kept while every file it read is unchanged (``fingerprint``) for a minute."""
    del fingerprint  # part of the cache key only
    return queries.report_view(Storage(root), underlying, start, end, threshold=threshold)


def _query_date(name: str, default: dt.date) -> dt.date:
    raw = st.query_params.get(name)
    try:
        return dt.date.fromisoformat(raw) if raw else default
    except ValueError:
        st.warning(f"?{name}={raw!r} is not a date (YYYY-MM-DD); using {default}")
        return default


def _query_float(name: str, default: float) -> float:
    raw = st.query_params.get(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


@guarded
def health_page() -> None:
    st.title("Data health")
    storage = current_storage()
    if _empty_state(storage):
        return
    names = health.dataset_names(storage, settings().underlyings)
    location = health.locate_instance(storage.state_dir)
    instance = None
    if location.home is None:
        st.info(location.how, icon=":material/info:")
    else:
        st.caption(f"Dagster instance: `{location.home}` ({location.how})")
        with st.spinner("Opening the Dagster instance …"):
            instance = health.instance_health(location.home)
    listed = {name: stored_sessions(str(storage.root), name) for name in names}
    st.subheader("Datasets")
    summary = health.dataset_summary(listed, instance)
    st.dataframe(summary, hide_index=True, key="health-summary")
    st.caption(
        "Schema drift is checked on the vendor datasets when they are fetched; freshness is "
        "evaluated by the freshness sensor while `spy-assets ui` runs. Never evaluated: no "
        "such evaluation in this instance yet."
    )

    every = sorted({s for stored in listed.values() for s in stored})
    if not every:
        return
    left, right = st.columns(2)
    default_start = every[max(0, len(every) - 10)]
    start = left.date_input("From", value=default_start, key="health-start", format="YYYY-MM-DD")
    end = right.date_input("To", value=every[-1], key="health-end", format="YYYY-MM-DD")
    sessions = [s for s in every if start <= s <= end]
    if len(sessions) > HEALTH_MAX_SESSIONS:
        st.caption(
            f"{len(sessions)} sessions in the range: showing the last {HEALTH_MAX_SESSIONS}."
        )
        sessions = sessions[-HEALTH_MAX_SESSIONS:]
    if not sessions:
        st.info(f"No session is stored between {start} and {end}.")
        return
    files = health.file_table(storage, names, sessions)
    table = health.session_table(files, instance, names, sessions)
    st.subheader(f"Per dataset and session ({sessions[0]} … {sessions[-1]})")
    damaged = table[table["file"] == "damaged"]
    for row in damaged.itertuples(index=False):
        st.error(
            f"{row.dataset} for {row.session}: the stored file is damaged (not readable "
            f"Parquet); rebuild it with {queries.backfill_command(row.session)}",
            icon=":material/broken_image:",
        )
    failed = table[table["check"] == "failed"]
    for row in failed.itertuples(index=False):
        with st.expander(f"{row.dataset} {row.session}: schema check failed", expanded=True):
            st.markdown(row.failure)
    st.dataframe(table.drop(columns=["failure"]), hide_index=True, key="health-sessions")
