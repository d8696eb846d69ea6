"""Stream consumer throughput, lag and memory, with the feed simulator as the sender.

The simulator runs in a child process (its own core when there are two) and replays one
synthetic session with many contracts (``--strikes`` per side, 50 by default: about 100
contracts); the consumer runs here, pinned to one core, through the real
``massive.WebSocketClient``, its queue, parser, dedup and the landing zone's atomic writes.

1. **Throughput**: the session unpaced (speed 10⁶). Messages (AM events) per second of the
   consumer process's CPU time, on its one core: sockets, client, queue, parse, dedup and the
   Parquet writes. Target: at least 20,000 per second. The wall-clock rate, from the first
   frame received to the last bar landed, is printed too; it also counts the connections'
   set-up, the last idle flush and, on a shared machine, the neighbours.
2. **Lag and memory**: the session paced at ``--lag-speed`` (600×: a minute every 0.1 s, so the
   idle flush never fires and every batch waits for the default flush interval, the worst
   case). Lag is from a bar's end (on the replay clock, in wall seconds) to its landing, p50 and
   p99 (target: p99 ≤ 2 s). The consumer's resident memory is sampled over the whole session:
   it must stay flat (growth from the first quarter of the session to its end under
   ``--max-growth-mb``).

Exits 1 when a target is missed.

    uv run python benchmarks/stream_throughput.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spy_assets import calendar  # noqa: E402
from spy_assets.live.clock import ReplayClock  # noqa: E402
from spy_assets.live.consumer import StreamConsumer, StreamSettings  # noqa: E402
from spy_assets.params import SelectionParams  # noqa: E402

TARGET_RATE = 20_000
TARGET_P99_S = 2.0


def _serve(session: dt.date, speed: float, strikes: int) -> None:
    """The child: a simulator that prints its port and clock, and runs until stdin closes."""
    from spy_assets.live.simulator import FeedSimulator, SessionTape

    tape = SessionTape.synthetic(session, selection=SelectionParams(strikes_per_side=strikes))
    with FeedSimulator(tape, speed=speed, max_delay_s=3600, lead_s=90) as sim:
        print(sim.port, sim.clock.origin, sim.clock.started, tape.bar_count, flush=True)
        sys.stdin.read()


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pin(cpu: int) -> bool:
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return False
    os.sched_setaffinity(0, {cpu})
    return True


def _replay(session: dt.date, speed: float, strikes: int, samples: list | None = None) -> dict:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(session), str(speed), str(strikes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(child.pid, {1})
        port, origin, started, bars = child.stdout.readline().split()
        clock = ReplayClock(float(origin), float(speed), float(started))
        with tempfile.TemporaryDirectory() as tmp:
            settings = StreamSettings(
                Path(tmp),
                feed=f"127.0.0.1:{port}",
                secure=False,
                delayed=False,
                heartbeat_s=3600,
                close_grace_s=60,
                quiet_s=0.5,
                selection=SelectionParams(strikes_per_side=strikes),
            )
            consumer = StreamConsumer(
                settings, "simulator-key", clock=clock, session=session, handle_signals=False
            )
            marks: dict[str, float] = {}
            done = threading.Event()
            open_s = calendar.session_open(session).timestamp()
            close_s = calendar.session_close(session).timestamp()

            def watch() -> None:
                while not done.wait(0.002 if samples is None else 0.25):
                    c = consumer.counts
                    if c.frames and "first" not in marks:
                        marks["first"] = time.perf_counter()
                    if c.landed >= int(bars) and "landed" not in marks:
                        marks["landed"] = time.perf_counter()
                    if samples is not None:
                        share = (clock.now() - open_s) / (close_s - open_s)
                        samples.append((share, _rss_mb()))

            watcher = threading.Thread(target=watch, daemon=True)
            cpu = time.process_time()
            watcher.start()
            result = consumer.run()
            cpu = time.process_time() - cpu
            done.set()
            watcher.join()
        return {
            "bars": int(bars),
            "result": result,
            "lags": consumer.lags,
            "wall": marks.get("landed", float("nan")) - marks.get("first", float("nan")),
            "cpu": cpu,
        }
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", default="2025-11-26")
    parser.add_argument("--strikes", type=int, default=50, help="strikes per side (≤ 50)")
    parser.add_argument("--lag-speed", type=float, default=600.0)
    parser.add_argument("--max-growth-mb", type=float, default=10.0)
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(dt.date.fromisoformat(args.serve[0]), float(args.serve[1]), int(args.serve[2]))
        return 0
    session = calendar.parse_session(args.session)
    pinned = _pin(0)
    print(
        f"stream benchmark, {session}, {args.strikes} strikes a side; consumer "
        f"{'pinned to CPU 0, simulator on CPU 1' if pinned else 'not pinned (one CPU)'}; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    failures = []

    fast = _replay(session, 1e6, args.strikes)
    events = fast["result"].counts.events
    rate, cpu_rate = events / fast["wall"], events / fast["cpu"]
    landed = fast["result"].counts.landed
    print(
        f"throughput: {events:,} messages ({landed:,} bars landed of {fast['bars']:,}) in "
        f"{fast['cpu']:.2f} CPU s of the consumer: {cpu_rate:,.0f} msg/s on one core "
        f"(target {TARGET_RATE:,}); wall {fast['wall']:.2f} s from the first frame to the last "
        f"landing: {rate:,.0f} msg/s"
    )
    if not cpu_rate >= TARGET_RATE:
        failures.append(f"throughput {cpu_rate:,.0f} msg/s per CPU second < {TARGET_RATE:,}")
    if landed != fast["bars"]:
        failures.append(f"{fast['bars'] - landed} bars not landed")

    samples: list[tuple[float, float]] = []
    paced = _replay(session, args.lag_speed, args.strikes, samples)
    p50, p99 = paced["lags"].percentile(50), paced["lags"].percentile(99)
    print(
        f"lag at {args.lag_speed:g}x with the default flush interval "
        f"({StreamSettings(Path('.')).flush_interval_s:g} s): p50 {p50:.2f} s, p99 {p99:.2f} s "
        f"over {paced['lags'].count:,} bars (target p99 ≤ {TARGET_P99_S:g} s)"
    )
    if not p99 <= TARGET_P99_S:
        failures.append(f"lag p99 {p99:.2f} s > {TARGET_P99_S:g} s")
    inside = [(share, rss) for share, rss in samples if 0 <= share <= 1]
    if inside:
        marks = {
            q: next(rss for share, rss in inside if share >= q) for q in (0.1, 0.25, 0.5, 0.75)
        }
        end = inside[-1][1]
        peak = max(rss for _, rss in inside)
        growth = end - marks[0.25]
        print(
            "memory (RSS) over the session: "
            + ", ".join(f"{int(q * 100)}% {v:.1f} MB" for q, v in marks.items())
            + f", end {end:.1f} MB, peak {peak:.1f} MB; growth from 25% to the end "
            f"{growth:+.1f} MB (limit {args.max_growth_mb:g} MB)"
        )
        if growth > args.max_growth_mb:
            failures.append(f"memory grew {growth:.1f} MB over the session")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
