"""The API key never reaches logs, exception messages or stats."""

from __future__ import annotations

import datetime as dt
import logging
import sys
import traceback

import pytest

from spy_assets import redaction
from spy_assets.errors import AuthError
from spy_assets.redaction import MASK, RedactingFilter, install, redact
from spy_assets.sources.ratelimit import TokenBucket
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets.sources.vendor import MassiveSource, VendorUnavailableError
from spy_assets_tests.vendor_server import VendorServer

SECRET = "sk_live_Zq93/abc+def"
DAY = dt.date(2025, 3, 3)
LOGGERS = ("", "urllib3", "urllib3.connectionpool", "RESTClient", "spy_assets.sources.vendor")


@pytest.mark.parametrize(
    "text",
    [
        f"key {SECRET} leaked",
        "GET /v2/aggs?limit=5&apiKey=whatever123&sort=asc",
        "GET /v2/aggs?APIKEY=whatever123",
        "{'Authorization': 'Bearer whatever123', 'Accept-Encoding': 'gzip'}",
        "Authorization: Bearer whatever123",
        "url=https://h/x?apiKey=sk_live_Zq93%2Fabc%2Bdef",
    ],
)
def test_redact_removes_keys_in_every_form(text):
    cleaned = redact(text, [SECRET, "whatever123"])
    assert SECRET not in cleaned and "whatever123" not in cleaned
    assert "Zq93" not in cleaned and MASK in cleaned


def test_redact_leaves_other_text_alone():
    text = "GET /v2/aggs/ticker/SPY/range/1/minute/2025-03-03/2025-03-31?cursor=abc&limit=5"
    assert redact(text, [SECRET]) == text
    assert redact("", [SECRET]) == ""


def _record(msg, *args, exc_info=None):
    return logging.LogRecord(
        "urllib3.connectionpool", logging.DEBUG, __file__, 1, msg, args, exc_info
    )


def test_filter_scrubs_message_args_and_exception_text():
    filt = RedactingFilter([SECRET])
    record = _record('"GET %s HTTP/1.1" %s', f"/x?apiKey={SECRET}", 200)
    assert filt.filter(record) is True
    assert SECRET not in record.getMessage() and "apiKey=***" in record.getMessage()

    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        record = _record("boom", exc_info=sys.exc_info())
    filt.filter(record)
    text = logging.Formatter().format(record)
    assert "failed with ***" in text and SECRET not in text
    assert record.exc_info is None  # the exception object itself still held the key

    clean = _record("nothing to hide %d", 5)
    filt.filter(clean)
    assert clean.args == (5,)  # untouched records keep their arguments


def test_install_is_idempotent_and_covers_child_loggers():
    filt = install(["another-secret"], loggers=LOGGERS)
    install(["another-secret"], loggers=LOGGERS)
    for name in LOGGERS:
        assert logging.getLogger(name).filters.count(filt) == 1
    assert filt is redaction.process_filter() and "another-secret" in filt.secrets


def _all_log_text(caplog):
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return caplog.text + "\n".join(formatter.format(r) for r in caplog.records)


def test_the_key_never_reaches_logs_exceptions_or_stats(caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "urllib3.connectionpool", "RESTClient", "spy_assets"):
        caplog.set_level(logging.DEBUG, logger=name)
    sleeps = []
    with VendorServer(
        SyntheticMarket(), api_key=SECRET, page_size=150, echo_key_in_next_url=True
    ) as server:
        source = MassiveSource(
            SECRET,
            server.base_url,
            requests_per_minute=None,
            bucket=TokenBucket(None),
            read_timeout=0.3,
            backoff_base=0.01,
            max_attempts=3,
            sleep=sleeps.append,
        )
        server.add_fault("503", nth=2)
        server.add_fault("slow", nth=3, delay=0.6)
        server.add_fault("truncated", nth=5)
        bars = source.stock_bars("SPY", DAY, DAY)  # next_url pages carry apiKey=<key>
        assert len(bars) > 450
        assert any(r.key_in_query for r in server.requests)
        assert source.stats.retries == 3

        server.add_fault("reset", match="I:VIX")
        with pytest.raises(VendorUnavailableError) as unavailable:
            source.index_bars("I:VIX", DAY, DAY)

        wrong = MassiveSource(
            SECRET + "-old",
            server.base_url,
            requests_per_minute=None,
            bucket=TokenBucket(None),
            sleep=sleeps.append,
        )
        with pytest.raises(AuthError) as refused:
            wrong.stock_bars("SPY", DAY, DAY)

    # massive's own logger, as with trace=True: the headers carry the key.
    logging.getLogger("RESTClient").info(
        "Request Headers: %s", {"Authorization": f"Bearer {SECRET}"}
    )
    logging.getLogger("spy_assets.sources.vendor").error("oops", exc_info=unavailable.value)

    logs = _all_log_text(caplog)
    assert "urllib3.connectionpool" in logs and "apiKey=***" in logs  # the URLs were logged
    assert "refused the API key" in logs
    for exc in (unavailable.value, refused.value):
        text = "".join(traceback.format_exception(exc))
        assert SECRET not in text and SECRET not in repr(exc.args)
    for leak_in in (logs, str(source.stats), str(wrong.stats), repr(source), repr(wrong)):
        assert SECRET not in leak_in
        assert "Zq93" not in leak_in
