"""Two processes with one key stay within one request budget, counted by the vendor server.

Each process is a real ``MassiveSource`` configured from the environment (key, base URL,
``SPY_ASSETS_REQUESTS_PER_MINUTE``, ``SPY_ASSETS_DATA_DIR``, ``SPY_ASSETS_RATE_LIMIT_URL``)
calling the local vendor server for the same few seconds: through the host's SQLite bucket,
then through a Redis bucket on a real ``redis-server``. The two client processes are started
once for the module (their imports are most of the cost) and run one round per test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from spy_assets.sources.ratelimit import BUCKET_FILE, REDIS_KEY_PREFIX, key_fingerprint
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets_tests.conftest import VENDOR_KEY
from spy_assets_tests.vendor_server import VendorServer

#: 5 requests a second with a burst of 1: one process alone could make all of them.
RATE_PER_MINUTE = 300
WINDOW_MS = 60_000 // RATE_PER_MINUTE
SECONDS = 3.0
PROCESSES = 2

#: One client process. Per round it reads the environment changes (JSON), builds its source
#: from the environment, opens the bucket's store, says "ready", then calls the vendor from
#: the start to the end time it is given and reports what it did.
CLIENT = """
import datetime as dt, json, os, sys, time
from spy_assets import config
from spy_assets.sources.vendor import MassiveSource

session = dt.date(2025, 11, 25)
# A first call outside any budget, so that no round is spent on first-use imports.
MassiveSource.from_env(requests_per_minute=None).index_bars("I:VIX", session, session)
print("ready", flush=True)
for line in sys.stdin:
    os.environ.update(json.loads(line))
    settings = config.load()
    source = MassiveSource.from_env(requests_per_minute=settings.requests_per_minute)
    source.bucket.open()
    print("ready", flush=True)
    start, end = map(float, sys.stdin.readline().split())
    time.sleep(max(0.0, start - time.time()))
    calls = 0
    while time.time() < end:
        assert len(source.index_bars("I:VIX", session, session)) > 0
        calls += 1
    report = {"calls": calls, "requests": source.stats.requests, "bucket": repr(source.bucket)}
    print(json.dumps(report), flush=True)
"""


@pytest.fixture(scope="module")
def server():
    with VendorServer(SyntheticMarket(), api_key=VENDOR_KEY, page_size=5000) as srv:
        yield srv


@pytest.fixture(scope="module")
def clients(server):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SPY_ASSETS_", "MASSIVE_", "POLYGON_"))
    }
    env.update(
        MASSIVE_API_KEY=VENDOR_KEY,
        MASSIVE_BASE_URL=server.base_url,
        SPY_ASSETS_REQUESTS_PER_MINUTE=str(RATE_PER_MINUTE),
        PYTHONUNBUFFERED="1",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", "a client process did not start"
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _round(server, clients, **env: str) -> list[dict]:
    """One round: every client with ``env``, starting at one instant, for SECONDS."""
    for proc in clients:
        proc.stdin.write(json.dumps(env) + "\n")
        proc.stdin.flush()
    for proc in clients:
        assert proc.stdout.readline().strip() == "ready", "a client process failed"
    server.reset()
    start = time.time() + 0.2
    for proc in clients:
        proc.stdin.write(f"{start} {start + SECONDS}\n")
        proc.stdin.flush()
    return [json.loads(proc.stdout.readline()) for proc in clients]


def _assert_within_budget(server, reports: list[dict], admitted_ms: list[int]) -> None:
    """``admitted_ms``: when the shared store admitted each request, from the store itself."""
    total = server.request_count
    calls = [r["calls"] for r in reports]
    assert total == sum(r["requests"] for r in reports) == sum(calls) == len(admitted_ms)
    admitted_ms = sorted(admitted_ms)
    gaps = [b - a for a, b in zip(admitted_ms, admitted_ms[1:], strict=False)]
    # A burst of 1: each request at least one window after the one before, whichever process
    # made it, so the server saw no more than the plan allows over the round.
    assert min(gaps) >= WINDOW_MS, gaps
    span_s = (admitted_ms[-1] - admitted_ms[0]) / 1000
    assert total <= span_s * RATE_PER_MINUTE / 60 + 1
    # Each process may still be admitted once after the end, for the call it began before.
    assert total <= SECONDS * RATE_PER_MINUTE / 60 + 1 + PROCESSES, (total, calls)
    # No process is starved by the other.
    assert total >= 6 and min(calls) >= 0.15 * total, calls


def test_two_processes_share_the_host_bucket(tmp_path, server, clients):
    data_dir = tmp_path / "data"
    reports = _round(server, clients, SPY_ASSETS_DATA_DIR=str(data_dir))
    bucket_path = data_dir / BUCKET_FILE
    assert all(f"sqlite:{bucket_path}" in r["bucket"] for r in reports)
    with sqlite3.connect(bucket_path) as db:
        [table] = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        admitted = [ms for (ms,) in db.execute(f"SELECT item_timestamp FROM '{table}'")]
    _assert_within_budget(server, reports, admitted)
    written = b"".join(p.read_bytes() for p in data_dir.glob(BUCKET_FILE + "*") if p.is_file())
    for secret in (VENDOR_KEY, key_fingerprint(VENDOR_KEY)):
        assert secret not in table and secret.encode() not in written


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.skip(
            "redis-server is not installed (Debian package redis-server; .ci/run installs it)"
        )
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path_factory.mktemp("redis"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


def test_two_processes_share_a_redis_bucket(tmp_path, server, clients, redis_url):
    import redis

    data_dir = tmp_path / "data"
    reports = _round(
        server, clients, SPY_ASSETS_DATA_DIR=str(data_dir), SPY_ASSETS_RATE_LIMIT_URL=redis_url
    )
    assert all(redis_url in r["bucket"] for r in reports)
    assert not (data_dir / BUCKET_FILE).exists()  # the host's file is not used
    client = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in client.keys("*")]
    assert len(keys) == 1 and keys[0].startswith(REDIS_KEY_PREFIX), keys
    entries = client.zrange(keys[0], 0, -1, withscores=True)
    _assert_within_budget(server, reports, [int(score) for _, score in entries])
    members = b" ".join(member for member, _ in entries)
    for secret in (VENDOR_KEY, key_fingerprint(VENDOR_KEY)):
        assert secret not in keys[0] and secret.encode() not in members
    assert 0 < client.pttl(keys[0]) <= 60_000  # an idle key expires by itself


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on 127.0.0.1 (Debian's binaries; run as ``postgres``
    when the tests run as root, which the server refuses)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql; .ci/run installs it)")
    bin_dir = found[-1].parent
    home = Path(tempfile.mkdtemp(prefix="spy-assets-ratelimit-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(home, user="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = home / "data"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": True}
    initdb = [*as_user, bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "spy", "--no-sync"]
    subprocess.run(initdb, **quiet)
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [*as_user, bin_dir / "pg_ctl", "-D", data]
    subprocess.run([*pg_ctl, "-o", options, "-l", home / "log", "-w", "start"], **quiet)
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    try:
        yield f"postgresql://spy@127.0.0.1:{port}/postgres"
    finally:
        # Immediate shutdown, without pg_ctl's polling: the data is thrown away.
        os.kill(postmaster, signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{postmaster}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        shutil.rmtree(home, ignore_errors=True)


def test_two_connections_share_a_postgres_bucket(tmp_path, postgres_url):
    """pyrate-limiter's PostgreSQL bucket over psycopg 3: two buckets, two connections, one
    table, the budget kept (one process here; the table is what processes would share)."""
    import psycopg

    from spy_assets import config
    from spy_assets.sources.ratelimit import clear_registry, shared_bucket

    clear_registry()
    settings = config.load(
        {"SPY_ASSETS_DATA_DIR": str(tmp_path), "SPY_ASSETS_RATE_LIMIT_URL": postgres_url}
    )
    a = shared_bucket("http://vendor.test", VENDOR_KEY, 2400, settings=settings)  # 25 ms apart
    clear_registry()
    b = shared_bucket("http://vendor.test", VENDOR_KEY, 2400, settings=settings)
    workers = [threading.Thread(target=lambda x=x: [x.acquire() for _ in range(6)]) for x in (a, b)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert a.acquired == b.acquired == 6 and "postgresql://spy@127.0.0.1" in repr(a)
    with psycopg.connect(postgres_url) as db:
        [table] = [
            t
            for (t,) in db.execute(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'ratelimit%'"
            )
        ]
        rows = db.execute(
            f'SELECT name, extract(epoch FROM item_timestamp::timestamptz) * 1000 FROM "{table}"'
        ).fetchall()
    stamps = sorted(float(ms) for _, ms in rows)
    assert len(stamps) == 12
    assert min(b - a for a, b in zip(stamps, stamps[1:], strict=False)) >= 25 - 1
    for secret in (VENDOR_KEY, key_fingerprint(VENDOR_KEY)):
        assert secret not in table and all(secret not in name for name, _ in rows)
    a.close()
    b.close()
    clear_registry()
