"""A snapshot of the asset graph: keys, deps, groups, partitions, pools, checks.

A change to the graph shows up here as a diff to review. Regenerate the snapshot on purpose with
``UPDATE_SNAPSHOTS=1 uv run pytest spy_assets_tests/test_definitions.py``.
"""

import json
import os
from pathlib import Path

from spy_assets import config
from spy_assets.definitions import build_definitions

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def _graph(defs) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        policy = node.backfill_policy
        assets[key.to_user_string()] = {
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "group": node.group_name,
            "partitions": type(node.partitions_def).__name__,
            "first_partition": node.partitions_def.get_first_partition_key(),
            "backfill_policy": str(policy.policy_type.value) if policy else None,
            "pools": sorted(node.pools or []),
            "checks": sorted(
                c.name + (" (blocking)" if graph.get_check_spec(c).blocking else "")
                for c in node.check_keys
            ),
        }
    partitions = {id(graph.get(k).partitions_def) for k in graph.get_all_asset_keys()}
    return {
        "assets": assets,
        "one_partitions_object": len(partitions) == 1,
        "jobs": sorted(j.name for j in defs.jobs or []),
        "schedules": sorted(s.name for s in defs.schedules or []),
        "resources": sorted(defs.resources or {}),
    }


def test_the_asset_graph_matches_its_snapshot():
    defs = build_definitions(["SPY"], settings=config.load({}))
    graph = _graph(defs)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(graph, indent=2, sort_keys=True) + "\n")
    assert graph == json.loads(SNAPSHOT.read_text())


def test_two_underlyings_share_vix_and_news():
    defs = build_definitions(["SPY", "QQQ"], settings=config.load({}))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"spy/features", "qqq/features", "vix/minute_bars", "news/articles"} <= keys
    assert len(keys) == 2 * 6 + 2
