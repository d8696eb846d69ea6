"""A local stand-in for the vendor's REST API, backed by a :class:`SyntheticMarket`.

A real threaded HTTP server on 127.0.0.1 (ephemeral port) that answers the paths and JSON shapes
the ``massive`` client uses — minute aggs (stocks, ``O:`` options, ``I:VIX``), option contracts,
news — with ``next_url`` pagination, checks the API key (``Authorization: Bearer`` or
``apiKey``), records every request, and injects faults on a schedule::

    with VendorServer(SyntheticMarket(), api_key="k", page_size=1000) as server:
        server.add_fault("429", every=5, retry_after=2)
        server.add_fault("slow", nth=[3], delay=1.0)
        server.add_fault("500", match="O:SPY250303C00505000")
        server.add_fault("malformed", match="/SPY/", bad_field="t", bad_at=10)
        ...  # MassiveSource("k", server.base_url)
        server.requests  # [RecordedRequest(index, path, params, status, fault, ...), ...]
        server.request_count  # every request that reached the server
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import numpy as np
import pandas as pd

from spy_assets import calendar
from spy_assets.contracts import parse_ticker
from spy_assets.sources.synthetic import SyntheticMarket

FAULT_KINDS = (
    "429",
    "500",
    "502",
    "503",
    "401",
    "403",
    "404",
    "slow",
    "truncated",
    "reset",
    "malformed",
)
#: The fields ``malformed`` removes by default: the first one a result has.
_REQUIRED_FIELDS = ("c", "ticker", "id")
_DROP = object()
_AGGS_RE = re.compile(
    r"^/v2/aggs/ticker/(?P<ticker>[^/]+)/range/(?P<mult>\d+)/(?P<span>[a-z]+)"
    r"/(?P<start>[^/]+)/(?P<end>[^/]+)$"
)
_SENTIMENT_WORDS = {1: "positive", 0: "neutral", -1: "negative"}
_ERROR_TEXT = {
    401: "Unknown API Key",
    403: "You are not entitled to this data. Please upgrade your plan.",
    404: "The requested resource was not found.",
    429: "You've exceeded the maximum requests per minute, please wait or upgrade your "
    "subscription to continue.",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class RecordedRequest:
    """One request the server saw (``params`` without ``apiKey``)."""

    index: int
    path: str
    params: dict[str, str]
    status: int
    fault: str | None
    key_in_header: bool
    key_in_query: bool


@dataclass
class FaultRule:
    """What goes wrong, and when: every condition given must hold (none given: every request).

    ``every``/``offset``: requests n with n % every == offset (1-based n, over all requests);
    ``nth``: those request numbers; ``match``: the decoded path + query contains this text;
    ``times``: fire at most this often. ``malformed`` breaks result ``bad_at`` of the page
    (negative: from the end): ``bad_field`` is removed, or set to ``bad_value`` when given.
    """

    kind: str
    every: int | None = None
    offset: int = 0
    nth: tuple[int, ...] = ()
    match: str | None = None
    times: int | None = None
    retry_after: float | str | None = 1
    delay: float = 2.0
    bad_field: str | None = None
    bad_at: int = 0
    bad_value: Any = _DROP
    fired: int = 0

    def applies(self, n: int, target: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.every is not None and n % self.every != self.offset % self.every:
            return False
        if self.nth and n not in self.nth:
            return False
        return self.match is None or self.match in target


@dataclass
class _Reply:
    status: int
    payload: dict[str, Any] | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


class VendorServer:
    """The vendor's REST API on 127.0.0.1; a context manager that starts and stops it.

    ``page_size`` caps every page (``limit`` is honoured below it) so tests can force many pages;
    ``today`` is the server's date, which decides which contracts count as expired;
    ``echo_key_in_next_url`` appends ``apiKey=<key>`` to ``next_url`` like some proxies do, to
    test that the key never reaches a log.
    """

    def __init__(
        self,
        market: SyntheticMarket | None = None,
        api_key: str = "test-key",
        *,
        page_size: int | None = None,
        today: dt.date | None = None,
        echo_key_in_next_url: bool = False,
    ) -> None:
        self.market = market or SyntheticMarket()
        self.api_key = api_key
        self.page_size = page_size
        self.today = today or dt.date.today()
        self.echo_key_in_next_url = echo_key_in_next_url
        self._lock = threading.Lock()
        self._count = 0
        self._records: list[RecordedRequest] = []
        self._faults: list[FaultRule] = []
        self._transforms: list[tuple[str | None, Any]] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._session_rows = lru_cache(maxsize=4096)(self._make_session_rows)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> VendorServer:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        httpd.vendor = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            name="vendor-server",
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> VendorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the vendor server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -------------------------------------------------------- faults, records
    def add_fault(
        self,
        kind: str,
        *,
        every: int | None = None,
        offset: int = 0,
        nth: int | list[int] | tuple[int, ...] = (),
        match: str | None = None,
        times: int | None = None,
        retry_after: float | str | None = 1,
        delay: float = 2.0,
        bad_field: str | None = None,
        bad_at: int = 0,
        bad_value: Any = _DROP,
    ) -> FaultRule:
        """Schedule a fault (see :class:`FaultRule`); the first rule that applies wins.

        Kinds: ``429`` (with ``Retry-After``), ``500``/``502``/``503``, ``401``/``403``/``404``,
        ``slow`` (answers after ``delay`` seconds), ``truncated`` (a complete HTTP response
        whose JSON is cut in half), ``reset`` (the connection drops mid-body), ``malformed``
        (valid JSON, one result of an otherwise good page broken: by default the first one
        loses its ``c``, ``ticker`` or ``id``; ``bad_field``, ``bad_at`` and ``bad_value``
        choose the field, the result and a bad value to put in instead of removing it).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {FAULT_KINDS}")
        nth = (nth,) if isinstance(nth, int) else tuple(nth)
        rule = FaultRule(
            kind,
            every,
            offset,
            nth,
            match,
            times,
            retry_after,
            delay,
            bad_field,
            bad_at,
            bad_value,
        )
        with self._lock:
            self._faults.append(rule)
        return rule

    def add_result_transform(self, transform: Any, match: str | None = None) -> None:
        """Pass every result object of the 200 answers whose path + query contains ``match``
        (all, when ``None``) through ``transform(result) -> result``: a vendor that gains, loses
        or retypes a field. :meth:`clear_faults` removes them too."""
        with self._lock:
            self._transforms.append((match, transform))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._transforms.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    def requests_for(self, text: str) -> list[RecordedRequest]:
        """Requests whose path contains ``text``."""
        return [r for r in self.requests if text in r.path]

    @property
    def request_count(self) -> int:
        """How many requests reached the server since it started (or :meth:`reset`)."""
        with self._lock:
            return self._count

    @property
    def faults_fired(self) -> int:
        with self._lock:
            return sum(r.fault is not None for r in self._records)

    def reset(self) -> None:
        """Forget recorded requests and restart the request count (faults stay)."""
        with self._lock:
            self._records.clear()
            self._count = 0
            for rule in self._faults:
                rule.fired = 0

    def _admit(self, target: str) -> tuple[int, FaultRule | None]:
        with self._lock:
            self._count += 1
            n = self._count
            for rule in self._faults:
                if rule.applies(n, target):
                    rule.fired += 1
                    return n, rule
            return n, None

    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self._records.append(record)
            self._records.sort(key=lambda r: r.index)

    # ---------------------------------------------------------------- routes
    def route(self, path: str, params: dict[str, str]) -> _Reply:
        try:
            match = _AGGS_RE.match(path)
            if match:
                return self._aggs(
                    match["ticker"],
                    match["mult"],
                    match["span"],
                    match["start"],
                    match["end"],
                    params,
                )
            if path == "/v3/reference/options/contracts":
                return self._contracts(params)
            if path == "/v2/reference/news":
                return self._news(params)
        except (ValueError, KeyError) as exc:
            return _Reply(400, {"status": "ERROR", "request_id": _rid(), "error": str(exc)})
        except Exception as exc:  # a bug here must show up as a 500, not a dropped connection
            return _Reply(
                500,
                {"status": "ERROR", "request_id": _rid(), "error": f"{type(exc).__name__}: {exc}"},
            )
        return _Reply(
            404, {"status": "NOT_FOUND", "request_id": _rid(), "message": _ERROR_TEXT[404]}
        )

    def _next_url(self, path: str, query: dict[str, str]) -> str:
        if self.echo_key_in_next_url:
            query = {**query, "apiKey": self.api_key}
        return f"{self.base_url}{quote(path, safe='/:')}?{urlencode(query)}"

    def _page(self, limit: int) -> int:
        return max(1, min(limit, self.page_size or limit))

    # aggs ------------------------------------------------------------------
    def _aggs(
        self, ticker: str, mult: str, span: str, start: str, end: str, params: dict[str, str]
    ) -> _Reply:
        if (mult, span) != ("1", "minute"):
            raise ValueError("the test server serves 1/minute aggregates only")
        if "cursor" in params:
            params = {**_decode_cursor(params["cursor"]), **params}
        limit = min(int(params.get("limit", 5000)), 50_000)
        order = params.get("sort", "asc")
        lo, hi = _ms_bound(start, end=False), _ms_bound(end, end=True)
        first = pd.Timestamp(lo, unit="ms", tz="UTC").tz_convert(calendar.MARKET_TZ).date()
        last = pd.Timestamp(hi, unit="ms", tz="UTC").tz_convert(calendar.MARKET_TZ).date()
        stamps: list[int] = []
        rows: list[str] = []
        for session in calendar.sessions_between(first, last):
            t, r = self._session_rows(ticker.upper(), session)
            stamps.extend(t)
            rows.extend(r)
        keep = [i for i, t in enumerate(stamps) if lo <= t <= hi]
        if order == "desc":
            keep.reverse()
        page = keep[: self._page(limit)]
        payload: dict[str, Any] = {
            "ticker": ticker.upper(),
            "queryCount": len(page),
            "resultsCount": len(page),
            "adjusted": params.get("adjusted", "true") != "false",
            "status": "OK",
            "request_id": _rid(),
            "count": len(page),
        }
        if len(keep) > len(page):
            nxt = stamps[keep[len(page)]]
            cursor = _encode_cursor({"limit": limit, "sort": order})
            new_start, new_end = (nxt, end) if order != "desc" else (start, nxt)
            payload["next_url"] = self._next_url(
                f"/v2/aggs/ticker/{ticker}/range/1/minute/{new_start}/{new_end}",
                {"cursor": cursor},
            )
        # Bars are stored as JSON text, so a page is a join, not a re-encode.
        results = "[" + ",".join(rows[i] for i in page) + "]" if page else None
        return _Reply(200, payload, body=_with_raw_results(payload, results))

    def _make_session_rows(self, ticker: str, session: dt.date) -> tuple[list[int], list[str]]:
        if ticker.startswith("I:"):
            if ticker != "I:VIX":
                return [], []
            frame = self.market.index_bars(ticker, session, session)
            cols = ("o", "open"), ("c", "close"), ("h", "high"), ("l", "low")
            stamps = frame["timestamp"].astype("int64").tolist()
            values = [frame[c].tolist() for _, c in cols]
            rows = [
                json.dumps({k: v[i] for (k, _), v in zip(cols, values, strict=True)} | {"t": t})
                for i, t in enumerate(stamps)
            ]
            return stamps, rows
        if ticker.startswith("O:"):
            parse_ticker(ticker)
            frame = self.market.option_bars(ticker, session, session)
        else:
            frame = self.market.stock_bars(ticker, session, session)
        stamps = frame["timestamp"].astype("int64").tolist()
        v, vw, o, c, h, lo, n = (
            frame[k].tolist()
            for k in ("volume", "vwap", "open", "close", "high", "low", "transactions")
        )
        rows = [
            json.dumps(
                {
                    "v": _num(v[i]),
                    "vw": vw[i],
                    "o": o[i],
                    "c": c[i],
                    "h": h[i],
                    "l": lo[i],
                    "t": t,
                    "n": int(n[i]),
                }
            )
            for i, t in enumerate(stamps)
        ]
        return stamps, rows

    # contracts -------------------------------------------------------------
    def _contracts(self, params: dict[str, str]) -> _Reply:
        offset = 0
        if "cursor" in params:
            saved = _decode_cursor(params["cursor"])
            offset = int(saved.pop("offset"))
            params = saved
        underlying = params.get("underlying_ticker", "SPY").upper()
        as_of = dt.date.fromisoformat(params.get("as_of", self.today.isoformat()))
        expired = params.get("expired", "false").lower() == "true"
        limit = min(int(params.get("limit", 10)), 1000)
        if "expiration_date" in params:
            expirations = [dt.date.fromisoformat(params["expiration_date"])]
        else:
            lo = _first_date(params, "expiration_date", as_of)
            hi = _last_date(params, "expiration_date", lo + dt.timedelta(days=14))
            expirations = calendar.sessions_between(lo, hi)
        smin = float(params.get("strike_price.gte", params.get("strike_price", 0.0)))
        smax = float(params.get("strike_price.lte", params.get("strike_price", 1e9)))
        listing_day = calendar.session_on_or_before(as_of)
        found = []
        for expiration in expirations:
            # Listed as of as_of; "expired" is judged against the server's today.
            if (expiration < self.today) != expired:
                continue
            frame = self.market.option_contracts(underlying, listing_day, expiration, smin, smax)
            found.extend(frame.to_dict("records"))
        if "strike_price.gt" in params:
            found = [r for r in found if r["strike"] > float(params["strike_price.gt"])]
        if "strike_price.lt" in params:
            found = [r for r in found if r["strike"] < float(params["strike_price.lt"])]
        if "contract_type" in params:
            found = [r for r in found if r["contract_type"] == params["contract_type"].lower()]
        sort = params.get("sort", "ticker")
        key = {"ticker": "contract", "strike_price": "strike", "expiration_date": "expiration"}
        found.sort(
            key=lambda r: (r[key.get(sort, "contract")], r["contract"]),
            reverse=params.get("order", "asc") == "desc",
        )
        page = found[offset : offset + self._page(limit)]
        payload: dict[str, Any] = {
            "results": [
                {
                    "cfi": "OCASPS" if r["contract_type"] == "call" else "OPASPS",
                    "contract_type": r["contract_type"],
                    "exercise_style": "american",
                    "expiration_date": r["expiration"].isoformat(),
                    "primary_exchange": "BATO",
                    "shares_per_contract": 100,
                    "strike_price": _num(r["strike"]),
                    "ticker": r["contract"],
                    "underlying_ticker": r["underlying"],
                }
                for r in page
            ],
            "status": "OK",
            "request_id": _rid(),
        }
        if offset + len(page) < len(found):
            cursor = _encode_cursor({**params, "offset": offset + len(page)})
            payload["next_url"] = self._next_url(
                "/v3/reference/options/contracts", {"cursor": cursor}
            )
        return _Reply(200, payload)

    # news ------------------------------------------------------------------
    def _news(self, params: dict[str, str]) -> _Reply:
        offset = 0
        if "cursor" in params:
            saved = _decode_cursor(params["cursor"])
            offset = int(saved.pop("offset"))
            params = saved
        ticker = params.get("ticker", "SPY").upper()
        limit = min(int(params.get("limit", 10)), 1000)
        bounds = {
            op: _ts(params[f"published_utc.{op}"])
            for op in ("gte", "gt", "lte", "lt")
            if f"published_utc.{op}" in params
        }
        if "published_utc" in params:
            day = _ts(params["published_utc"]).normalize()
            bounds = {"gte": day, "lt": day + pd.Timedelta(days=1)}
        lo = bounds.get("gte", bounds.get("gt"))
        hi = bounds.get("lt", bounds.get("lte"))
        if lo is None and hi is None:
            hi = pd.Timestamp(self.today, tz="UTC") + pd.Timedelta(days=1)
        lo = lo if lo is not None else hi - pd.Timedelta(days=7)
        hi = hi if hi is not None else lo + pd.Timedelta(days=7)
        frame = self.market.news(ticker, lo, hi + pd.Timedelta(seconds=1))
        published = frame["published_utc"]
        mask = np.ones(len(frame), dtype=bool)
        for op, bound in bounds.items():
            mask &= {
                "gte": published >= bound,
                "gt": published > bound,
                "lte": published <= bound,
                "lt": published < bound,
            }[op].to_numpy()
        frame = frame[mask].sort_values(["published_utc", "article_id"])
        if params.get("order", "desc") == "desc":  # the vendor's default: newest first
            frame = frame.iloc[::-1]
        rows = frame.to_dict("records")
        page = rows[offset : offset + self._page(limit)]
        payload: dict[str, Any] = {
            "results": [_article(r) for r in page],
            "status": "OK",
            "request_id": _rid(),
            "count": len(page),
        }
        if offset + len(page) < len(rows):
            cursor = _encode_cursor({**params, "offset": offset + len(page)})
            payload["next_url"] = self._next_url("/v2/reference/news", {"cursor": cursor})
        return _Reply(200, payload)

    # faults ----------------------------------------------------------------
    def fault_reply(self, rule: FaultRule) -> _Reply | None:
        """The reply for a status fault; ``None`` for faults that alter a normal reply."""
        if not rule.kind.isdigit():
            return None
        status = int(rule.kind)
        error = {"status": "ERROR", "request_id": _rid(), "error": _ERROR_TEXT[status]}
        if status == 403:
            error = {
                "status": "NOT_AUTHORIZED",
                "request_id": error["request_id"],
                "message": _ERROR_TEXT[403],
            }
        headers = {}
        if status in (429, 503) and rule.retry_after is not None:
            headers["Retry-After"] = str(rule.retry_after)
        return _Reply(status, error, headers=headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeVendor/1.0"
    # Headers and body go out in two writes; without TCP_NODELAY each keep-alive request
    # would wait out a delayed ACK (~40 ms).
    disable_nagle_algorithm = True

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet: requests are recorded
        pass

    def do_GET(self) -> None:
        vendor: VendorServer = self.server.vendor  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        query_key = params.pop("apiKey", None)
        header = self.headers.get("Authorization", "")
        header_key = header[7:].strip() if header.startswith("Bearer ") else None
        n, rule = vendor._admit(f"{path}?{unquote(parts.query)}")
        reply = vendor.fault_reply(rule) if rule is not None else None
        if reply is None and vendor.api_key not in (query_key, header_key):
            reply = _Reply(
                401, {"status": "ERROR", "request_id": _rid(), "error": _ERROR_TEXT[401]}
            )
        if reply is None:
            reply = vendor.route(path, params)
            if rule is not None and rule.kind == "malformed" and reply.status == 200:
                reply = _malformed(reply, rule)
            target = f"{path}?{unquote(parts.query)}"
            transforms = [f for m, f in vendor._transforms if m is None or m in target]
            if transforms and reply.status == 200:
                reply = _transformed(reply, transforms)
        vendor._record(
            RecordedRequest(
                n,
                path,
                params,
                reply.status,
                rule.kind if rule else None,
                header_key == vendor.api_key,
                query_key == vendor.api_key,
            )
        )
        body = reply.body if reply.body is not None else json.dumps(reply.payload).encode()
        kind = rule.kind if rule else None
        try:
            if kind == "slow":
                time.sleep(rule.delay)
            if kind == "truncated":
                body = body[: max(1, len(body) // 2)]
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Request-Id", _rid())
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if kind == "reset":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a slow-response fault)


# --------------------------------------------------------------------- helpers
def _rid() -> str:
    return uuid.uuid4().hex


def _num(value: float) -> float | int:
    """Whole numbers as JSON integers, like the vendor sends volumes and strikes."""
    return int(value) if float(value).is_integer() else float(value)


def _encode_cursor(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, default=str).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, Any]:
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded))
    except ValueError as exc:
        raise ValueError(f"bad cursor: {exc}") from None


def _ms_bound(value: str, end: bool) -> int:
    """A from/to path segment as epoch ms: a date is its whole day in New York."""
    if value.isdigit():
        return int(value)
    day = pd.Timestamp(dt.date.fromisoformat(value)).tz_localize(calendar.MARKET_TZ)
    if end:
        day += pd.Timedelta(days=1)
    ms = int(day.tz_convert("UTC").value // 1_000_000)
    return ms - 1 if end else ms


def _ts(value: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _first_date(params: dict[str, str], name: str, default: dt.date) -> dt.date:
    if f"{name}.gte" in params:
        return dt.date.fromisoformat(params[f"{name}.gte"])
    if f"{name}.gt" in params:
        return dt.date.fromisoformat(params[f"{name}.gt"]) + dt.timedelta(days=1)
    return default


def _last_date(params: dict[str, str], name: str, default: dt.date) -> dt.date:
    if f"{name}.lte" in params:
        return dt.date.fromisoformat(params[f"{name}.lte"])
    if f"{name}.lt" in params:
        return dt.date.fromisoformat(params[f"{name}.lt"]) - dt.timedelta(days=1)
    return default


def _article(row: dict[str, Any]) -> dict[str, Any]:
    tickers = row["tickers"].split(",")
    sentiment = json.loads(row["sentiment_json"])
    publisher = row["publisher"]
    slug = re.sub(r"[^a-z]+", "", publisher.lower())
    return {
        "id": row["article_id"],
        "publisher": {
            "name": publisher,
            "homepage_url": f"https://{slug}.example.invalid/",
            "logo_url": f"https://{slug}.example.invalid/logo.png",
            "favicon_url": f"https://{slug}.example.invalid/favicon.ico",
        },
        "title": row["title"],
        "author": publisher,
        "published_utc": pd.Timestamp(row["published_utc"]).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "article_url": row["article_url"],
        "tickers": tickers,
        "image_url": f"{row['article_url']}/image.jpg",
        "description": row["title"],
        "keywords": ["markets"],
        "insights": [
            {
                "ticker": t,
                "sentiment": _SENTIMENT_WORDS[int(s)],
                "sentiment_reasoning": f"synthetic sentiment for {t}",
            }
            for t, s in sentiment.items()
        ],
    }


def _with_raw_results(payload: dict[str, Any], results: str | None) -> bytes:
    """The JSON body with ``results`` spliced in as pre-encoded text (omitted when empty, as the
    vendor does)."""
    head = json.dumps(payload)
    if results is None:
        return head.encode()
    return (head[:-1] + ', "results": ' + results + "}").encode()


def _malformed(reply: _Reply, rule: FaultRule) -> _Reply:
    """Break one result of the page (see :meth:`VendorServer.add_fault`): valid JSON, bad data;
    the other results are left as they were."""
    body = reply.body if reply.body is not None else json.dumps(reply.payload).encode()
    obj = json.loads(body)
    results = obj.get("results") or []
    if -len(results) <= rule.bad_at < len(results):
        result = results[rule.bad_at]
        names = (rule.bad_field,) if rule.bad_field else _REQUIRED_FIELDS
        name = next((n for n in names if n in result or rule.bad_value is not _DROP), None)
        if name is not None:
            if rule.bad_value is _DROP:
                result.pop(name, None)
            else:
                result[name] = rule.bad_value
    return _Reply(reply.status, obj, headers=reply.headers)


def _transformed(reply: _Reply, transforms: list[Any]) -> _Reply:
    """Every result of the page through each transform (see ``add_result_transform``)."""
    body = reply.body if reply.body is not None else json.dumps(reply.payload).encode()
    obj = json.loads(body)
    results = obj.get("results") or []
    for transform in transforms:
        results = [transform(dict(r)) for r in results]
    if results:
        obj["results"] = results
    return _Reply(reply.status, obj, headers=reply.headers)
