"""Alerts: one message per incident, to a webhook (any apprise URL) or to a JSON-lines log.

An incident has a key (``run:<run id>``, ``stale:<dataset>:<session>``); the ledger
``<data dir>/quality/alerts_sent.jsonl`` remembers the keys already sent, so a sensor that
evaluates the same run twice, or two sensors that see one incident, send it once. Messages are
redacted: the vendor key (and any ``apiKey=`` or ``Bearer`` token) never leaves in an alert.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spy_assets import config, redaction
from spy_assets.errors import SpyAssetsError

logger = logging.getLogger(__name__)

#: Alert kinds, one per incident type the project watches.
FAILED_CHECK, DRIFT_ERROR, STALE, FAILED_RUN = "failed_check", "drift_error", "stale", "failed_run"
LOG_NAME = "alerts.log"
LEDGER = Path("quality") / "alerts_sent.jsonl"


class AlertError(SpyAssetsError):
    """The destination did not take the alert (it is sent again on the next evaluation)."""


@dataclass(frozen=True)
class Alert:
    """One incident, said once."""

    incident: str
    kind: str
    title: str
    lines: Sequence[str] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        return "\n".join(self.lines) or self.title

    def payload(self) -> dict[str, Any]:
        return {
            "incident": self.incident,
            "kind": self.kind,
            "title": self.title,
            "message": self.message,
            "details": dict(self.details),
        }


class AlertSender:
    """Sends each incident once: to ``url`` (apprise: ``json://``, ``slack://``, …) or, when
    ``url`` is ``None``, as a JSON line appended to ``<data dir>/alerts.log``."""

    def __init__(
        self, data_dir: str | Path, url: str | None = None, secrets: Sequence[str] = ()
    ) -> None:
        self.data_dir = Path(data_dir)
        self.url = url
        self._secrets = [s for s in [*secrets, config.vendor_key()] if s]

    @property
    def destination(self) -> str:
        """Where alerts go, safe to print (a webhook's path and query may hold a token)."""
        if self.url is None:
            return str(self.data_dir / LOG_NAME)
        return self.url.split("://", 1)[0] + "://…"

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / LEDGER

    def already_sent(self, incident: str) -> bool:
        return incident in self._sent()

    def send(self, alert: Alert) -> bool:
        """Send unless this incident was sent before; ``True`` when sent now."""
        alert = self._redacted(alert)
        with self._locked():
            if alert.incident in self._sent():
                return False
            if self.url is None:
                self._append(self.data_dir / LOG_NAME, {"at": _now(), **alert.payload()})
            else:
                self._notify(alert)
            self._append(
                self.ledger_path,
                {"incident": alert.incident, "kind": alert.kind, "at": _now()},
            )
        logger.warning("alert sent to %s: %s", self.destination, alert.title)
        return True

    def _notify(self, alert: Alert) -> None:
        import apprise

        notifier = apprise.Apprise()
        if not notifier.add(self.url):
            raise AlertError(
                f"{config.ALERT_URL} is not a notification URL apprise understands "
                f"({self.destination})"
            )
        kind = apprise.NotifyType.WARNING if alert.kind == STALE else apprise.NotifyType.FAILURE
        # The webhook's body is text: the facts follow the message as one JSON line.
        facts = json.dumps(
            {"incident": alert.incident, "kind": alert.kind, "details": dict(alert.details)},
            sort_keys=True,
            default=str,
        )
        body = f"{alert.message}\n\n{facts}"
        if not notifier.notify(title=alert.title, body=body, notify_type=kind):
            raise AlertError(f"the alert destination {self.destination} did not take the alert")

    def _redacted(self, alert: Alert) -> Alert:
        def clean(value: Any) -> Any:
            if isinstance(value, str):
                return redaction.redact(value, self._secrets)
            if isinstance(value, Mapping):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [clean(v) for v in value]
            return value

        return Alert(
            alert.incident,
            alert.kind,
            clean(alert.title),
            clean(list(alert.lines)),
            clean(dict(alert.details)),
        )

    def _sent(self) -> set[str]:
        try:
            text = self.ledger_path.read_text()
        except FileNotFoundError:
            return set()
        sent = set()
        for line in text.splitlines():
            try:
                sent.add(json.loads(line)["incident"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a crash: the rest of the ledger still counts
        return sent

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One sender at a time per data folder (sensors may tick in parallel threads)."""
        self.ledger_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.ledger_path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _append(path: Path, obj: Mapping[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(obj, sort_keys=True, default=str) + "\n")
            out.flush()
            os.fsync(out.fileno())


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
