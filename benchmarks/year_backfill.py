"""A year of the synthetic market through `spy-assets backfill` against a plain loop of the same
library calls, in the same run of this script.

    uv run python benchmarks/year_backfill.py                  # 250 sessions, each side twice
    uv run python benchmarks/year_backfill.py --sessions 60    # a quicker look

Each side runs in its own process on a fresh data folder, sides alternated and repeated:

- **dagster**: `spy-assets backfill` with the data folder's embedded default instance
  (`DAGSTER_HOME` unset), as a user runs it;
- **loop**: every dataset's build (`spy_assets.datasets`) for the same chunks of sessions,
  upstream first, stored through `spy_assets.gates.store_sessions` (validation, provenance,
  atomic writes) and the catalog refresh, without Dagster.

Both sides must write byte-identical Parquet files (compared by hash). Prints each side's median
wall and CPU time, the ratio, each side's peak RSS and the number of events in Dagster's event
log, and exits 1 when the median wall-time ratio is above ``--max-ratio`` (1.3). On a shared
machine wall time moves with the load: the CPU-time ratio is printed alongside.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spy_assets import calendar

FIRST, LAST = "2024-01-02", "2024-12-31"
CHUNK = 21

#: Runs a command and reports its peak RSS and CPU time (a fresh process per side, so the
#: children's maximum is that side's own).
_MEASURE = """
import json, resource, subprocess, sys
rc = subprocess.run(sys.argv[2:]).returncode
use = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as out:
    json.dump({"rc": rc, "maxrss_kb": use.ru_maxrss, "cpu_s": use.ru_utime + use.ru_stime}, out)
"""


def plain_loop(first: str, last: str, chunk: int) -> None:
    """The library calls each asset makes, per chunk of sessions and dataset (upstream first),
    with no Dagster: the build, validation and atomic writes, the catalog refresh."""
    from spy_assets import config, datasets, gates
    from spy_assets.builds import BuildRequest
    from spy_assets.provenance import code_version
    from spy_assets.sources.synthetic import SyntheticMarket
    from spy_assets.storage import Storage

    settings = config.load()
    store = Storage(settings.data_dir)
    specs = datasets.all_datasets(list(settings.underlyings))
    sessions = calendar.sessions_between(first, last)
    for start in range(0, len(sessions), chunk):
        part = sessions[start : start + chunk]
        for spec in specs:
            ds = spec.dataset
            source = SyntheticMarket(seed=settings.seed) if spec.calls_vendor else None
            built = spec.build(BuildRequest(sessions=part, storage=store, source=source))
            provenance = {
                "code_version": code_version(),
                "source": built.source,
                "params": built.params,
            }
            outcomes = list(
                gates.store_sessions(store, ds, spec.schema, built.sessions, provenance)
            )
            outcomes += [gates.reused_outcome(store, ds, spec.schema, s) for s in built.reused]
            store.refresh_catalog([ds])
            if built.error is not None:
                raise built.error
            if any(not o.passed for o in outcomes):
                sys.exit(f"{spec.name} failed its schema")


def _run_side(side: str, first: str, last: str, root: Path) -> dict[str, float]:
    data = root / side
    shutil.rmtree(data, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(SPY_ASSETS_DATA_DIR=str(data), SPY_ASSETS_SOURCE="synthetic")
    if side == "dagster":
        command = [
            *_spy_assets(),
            "backfill",
            "--start",
            first,
            "--end",
            last,
            "--chunk",
            str(CHUNK),
        ]
    else:
        command = [sys.executable, __file__, "--plain-loop", first, last]
    report = root / f"{side}.json"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", _MEASURE, str(report), *command],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    measured = json.loads(report.read_text())
    if measured["rc"] != 0:
        sys.exit(f"{side} side failed (exit {measured['rc']})")
    return {"wall_s": wall, "cpu_s": measured["cpu_s"], "rss_mb": measured["maxrss_kb"] / 1024}


def _spy_assets() -> list[str]:
    script = Path(sys.executable).with_name("spy-assets")
    return [str(script)] if script.exists() else [sys.executable, "-m", "spy_assets.cli"]


def _digests(data: Path) -> dict[str, str]:
    return {
        p.relative_to(data).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((data / "parquet").rglob("*.parquet"))
    }


def _event_count(data: Path) -> tuple[int, int]:
    """(runs, events) in the data folder's embedded instance."""
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(data / "dagster")) as instance:
        runs = instance.get_runs()
        return len(runs), sum(len(instance.all_logs(r.run_id)) for r in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=250, help="sessions from 2024-01-02")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each side")
    parser.add_argument("--max-ratio", type=float, default=1.3)
    parser.add_argument("--plain-loop", nargs=2, metavar=("FIRST", "LAST"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain_loop:
        plain_loop(*args.plain_loop, CHUNK)
        return 0
    sessions = calendar.sessions_between(FIRST, LAST)[: args.sessions]
    first, last = sessions[0].isoformat(), sessions[-1].isoformat()
    print(
        f"{len(sessions)} sessions {first} … {last}, chunks of {CHUNK}, {args.repeat} runs a side"
    )
    results: dict[str, list[dict[str, float]]] = {"dagster": [], "loop": []}
    root = Path(tempfile.mkdtemp(prefix="year-backfill-"))
    try:
        for i in range(args.repeat):
            order = ["dagster", "loop"] if i % 2 == 0 else ["loop", "dagster"]
            for side in order:
                load = os.getloadavg()[0]
                got = _run_side(side, first, last, root)
                results[side].append(got)
                print(
                    f"  run {i + 1} {side:7s} wall {got['wall_s']:7.1f} s"
                    f"  cpu {got['cpu_s']:7.1f} s  peak RSS {got['rss_mb']:6.0f} MB"
                    f"  (load {load:.1f})",
                    flush=True,
                )
            cli, loop = _digests(root / "dagster"), _digests(root / "loop")
            if cli != loop or not cli:
                differ = sorted(k for k in cli.keys() | loop.keys() if cli.get(k) != loop.get(k))
                print(f"files differ ({len(differ)}): {differ[:5]}", file=sys.stderr)
                return 1
        runs, events = _event_count(root / "dagster")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def median(side: str, field: str) -> float:
        return statistics.median(r[field] for r in results[side])

    wall_ratio = median("dagster", "wall_s") / median("loop", "wall_s")
    cpu_ratio = median("dagster", "cpu_s") / median("loop", "cpu_s")
    print(f"files: {len(cli)} Parquet files, byte-identical on both sides")
    for side in ("dagster", "loop"):
        print(
            f"{side:7s} median wall {median(side, 'wall_s'):7.1f} s"
            f"  cpu {median(side, 'cpu_s'):7.1f} s"
            f"  peak RSS {max(r['rss_mb'] for r in results[side]):6.0f} MB"
        )
    print(f"ratio   wall {wall_ratio:.2f}×  cpu {cpu_ratio:.2f}×  (limit {args.max_ratio}×)")
    print(
        f"dagster event log: {events} events in {runs} runs "
        f"({events / len(sessions):.1f} per session)"
    )
    return 0 if wall_ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
