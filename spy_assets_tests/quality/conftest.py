"""A webhook on 127.0.0.1 that records what it receives (http.server in a thread)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Webhook:
    """Records every POST body (JSON) sent to it; ``url`` is the apprise ``json://`` URL."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.received.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"json://{host}:{port}/alerts"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture(scope="session")
def instance(tmp_path_factory):
    """One SQLite Dagster instance for the quality tests (creating one costs seconds); each test
    works on its own assets or sessions, so they do not see each other's events."""
    from dagster import DagsterInstance

    home = tmp_path_factory.mktemp("quality_dagster_home")
    with DagsterInstance.local_temp(tempdir=str(home)) as inst:
        yield inst
