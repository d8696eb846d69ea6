"""Raw assets: underlying minute bars, option contracts and their bars, VIX, news."""

from collections.abc import Sequence

from dagster import DailyPartitionsDefinition, Definitions

from spy_assets.datasets import RAW, DatasetSpec
from spy_assets.defs.factory import dataset_asset, schema_check


def definitions(specs: Sequence[DatasetSpec], partitions: DailyPartitionsDefinition) -> Definitions:
    """The raw datasets' assets and their blocking schema checks."""
    raw = [s for s in specs if s.group == RAW]
    return Definitions(
        assets=[dataset_asset(s, partitions) for s in raw],
        asset_checks=[schema_check(s, partitions) for s in raw],
    )
