"""The code location: every domain's assets, checks, jobs and schedules, and the resources."""

from __future__ import annotations

import os

from dagster import Definitions

from spy_assets.defs import analytics, ops, raw
from spy_assets.defs.resources import default_resources


def configured_underlyings() -> list[str]:
    """``SPY_ASSETS_UNDERLYINGS`` (comma-separated), SPY by default."""
    raw_list = os.environ.get("SPY_ASSETS_UNDERLYINGS", "SPY")
    names = [u.strip().upper() for u in raw_list.split(",") if u.strip()]
    return names or ["SPY"]


def build_definitions(underlyings: list[str] | None = None) -> Definitions:
    underlyings = underlyings or configured_underlyings()
    nodes: list[object] = []
    for underlying in underlyings:
        nodes += raw.underlying_assets(underlying)
        nodes += analytics.analytics_assets(underlying)
    nodes += raw.shared_assets(underlyings)
    assets = [n for n in nodes if not _is_check(n)]
    checks = [n for n in nodes if _is_check(n)]
    return Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=ops.jobs(),
        schedules=ops.schedules(),
        resources=default_resources(),
    )


def _is_check(node: object) -> bool:
    from dagster import AssetChecksDefinition

    return isinstance(node, AssetChecksDefinition)


defs = build_definitions()
