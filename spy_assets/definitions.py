"""The code location: each domain's Definitions, merged."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import Definitions

from spy_assets import config, datasets
from spy_assets.defs import analytics, gates, raw, resources, schedules
from spy_assets.defs.partitions import sessions_partitions


def build_definitions(
    underlyings: Sequence[str] | None = None, settings: config.Settings | None = None
) -> Definitions:
    """Every asset, check, job, schedule and resource for a configuration (the environment's,
    by default)."""
    settings = settings or config.load()
    specs = datasets.all_datasets(list(underlyings or settings.underlyings))
    partitions = sessions_partitions(settings.first_session)
    return Definitions.merge(
        raw.definitions(specs, partitions),
        analytics.definitions(specs, partitions),
        schedules.definitions(),
        gates.definitions(),
        resources.definitions(settings),
    )


defs = build_definitions()
