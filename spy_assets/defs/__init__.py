"""The Dagster layer: assets, checks, schedules and resources wiring the domain core."""

import warnings

from dagster import BetaWarning, PreviewWarning

# Both features are deliberate choices (ranged backfills, per-session checks); the warnings
# would otherwise print on every import of the code location.
warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")
warnings.filterwarnings(
    "ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*"
)
