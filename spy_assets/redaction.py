"""Keeping the vendor API key out of logs and messages (SPEC §8).

:func:`redact` scrubs a string: known secrets (also URL-encoded), any ``apiKey=...`` query
parameter and any ``Bearer ...`` credential. :class:`RedactingFilter` applies it to log records
(message, arguments, exception and stack text). Logger filters only see records logged on that
very logger, not ones propagated from children, so :func:`install` attaches the filter to each
logger that may print a URL or header: urllib3's modules, the ``massive`` client's loggers and
this project's.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"

_QUERY_KEY = re.compile(r"(?i)\b(api_?key|access_?token|token)=[^&\s'\"#]+")
_BEARER = re.compile(r"(?i)\b(Bearer)(\s+|%20|\+)[^\s'\",;}&]+")

#: Loggers that may carry a request URL or header, or this project's own messages.
DEFAULT_LOGGERS = (
    "",
    "spy_assets",
    "spy_assets.sources.vendor",
    "spy_assets.sources.ratelimit",
    "massive",
    "RESTClient",
    "WebSocketClient",
    "urllib3",
    "urllib3.connection",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret, ``apiKey=`` value and ``Bearer`` credential masked."""
    if not text:
        return text
    for secret in secrets:
        if not secret:
            continue
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, MASK)
    text = _QUERY_KEY.sub(lambda m: f"{m.group(1)}={MASK}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


class RedactingFilter(logging.Filter):
    """Rewrites records in place; never drops one."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = tuple(s for s in secrets if s)

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def add_secret(self, secret: str) -> None:
        if not secret:
            return
        with self._lock:
            if secret not in self._secrets:
                self._secrets = (*self._secrets, secret)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: scrub what there is
            message = f"{record.msg} {record.args}"
        cleaned = redact(message, secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            cleaned = redact(text, secrets)
            if cleaned != text:
                # The exception object itself still holds the secret: hand on only the text.
                record.exc_text, record.exc_info = cleaned, None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
        return True


_FILTER = RedactingFilter()


def process_filter() -> RedactingFilter:
    """The process-wide filter that :func:`install` attaches."""
    return _FILTER


def install(
    secrets: Iterable[str] = (),
    loggers: Iterable[str] = DEFAULT_LOGGERS,
    *,
    root_handlers: bool = False,
) -> RedactingFilter:
    """Register ``secrets`` with the process-wide filter and attach it to ``loggers``.

    Idempotent. ``root_handlers=True`` also attaches it to the root logger's current handlers,
    which then scrub records propagated from any logger.
    """
    for secret in secrets:
        _FILTER.add_secret(secret)
    for name in loggers:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    if root_handlers:
        for handler in logging.getLogger().handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    return _FILTER
