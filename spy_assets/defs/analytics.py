"""Derived assets: features (IV, Greeks, indicators), scan events with the report, training data."""

from collections.abc import Sequence

from dagster import DailyPartitionsDefinition, Definitions

from spy_assets.datasets import ANALYTICS, DatasetSpec
from spy_assets.defs.factory import dataset_asset


def definitions(specs: Sequence[DatasetSpec], partitions: DailyPartitionsDefinition) -> Definitions:
    """The derived datasets' assets, each with its blocking schema check."""
    derived = [s for s in specs if s.group == ANALYTICS]
    return Definitions(
        assets=[dataset_asset(s, partitions) for s in derived],
    )
