"""Raw assets: underlying minute bars, option contracts and their bars, VIX, news."""

from collections.abc import Sequence

from dagster import DailyPartitionsDefinition, Definitions

from spy_assets.datasets import RAW, DatasetSpec
from spy_assets.defs.factory import dataset_asset


def definitions(specs: Sequence[DatasetSpec], partitions: DailyPartitionsDefinition) -> Definitions:
    """The raw datasets' assets, each with its blocking schema check."""
    raw = [s for s in specs if s.group == RAW]
    return Definitions(
        assets=[dataset_asset(s, partitions) for s in raw],
    )
