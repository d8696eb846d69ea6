"""Resources: where data lives, which market it comes from, and the research parameters."""

import os

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from spy_assets.contracts import ExpiryConvention
from spy_assets.sources.base import MarketSource
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets.storage import Storage

KEY_VARIABLES = ("MASSIVE_API_KEY", "POLYGON_API_KEY")


class StorageResource(ConfigurableResource):
    """Parquet partitions and the DuckDB catalog under ``root``."""

    root: str = Field(default="data", description="Folder for Parquet files and the catalog.")

    def get(self) -> Storage:
        return Storage(self.root)


class MarketDataResource(ConfigurableResource):
    """Which market the raw assets read: ``synthetic`` (offline, the default) or ``massive``."""

    source: str = Field(
        default="auto",
        description="synthetic, massive, or auto (massive when an API key is set, else synthetic)",
    )
    seed: int = Field(default=7, description="Seed of the synthetic market.")
    api_key: str | None = Field(default=None, description="Vendor key; set it with EnvVar.")
    base_url: str = Field(default="https://api.massive.com", description="Vendor REST base URL.")
    requests_per_minute: float = Field(default=5.0, description="The plan's request rate.")
    read_timeout_s: float = Field(default=30.0, description="Seconds to wait for a response.")
    max_attempts: int = Field(default=6, description="Tries per request (429, 5xx, timeouts).")
    backoff_base_s: float = Field(default=1.0, description="First retry wait; doubles, jittered.")
    backoff_max_s: float = Field(default=60.0, description="Cap on one retry wait.")

    @property
    def source_name(self) -> str:
        name = self.source.lower()
        if name == "auto":
            return "massive" if self.api_key else "synthetic"
        if name not in ("synthetic", "massive"):
            raise ValueError(f"unknown source {self.source!r}: use synthetic, massive or auto")
        return name

    def build(self) -> MarketSource:
        """A fresh source (its request counters start at zero)."""
        if self.source_name == "synthetic":
            return SyntheticMarket(seed=self.seed)
        if not self.api_key:
            raise ValueError(
                "source 'massive' needs an API key: set MASSIVE_API_KEY or POLYGON_API_KEY"
            )
        from spy_assets.sources.vendor import MassiveSource

        return MassiveSource(
            api_key=self.api_key,
            base_url=self.base_url,
            requests_per_minute=self.requests_per_minute,
            read_timeout=self.read_timeout_s,
            max_attempts=self.max_attempts,
            backoff_base=self.backoff_base_s,
            backoff_max=self.backoff_max_s,
        )


class ResearchSettings(ConfigurableResource):
    """Contract selection (SPEC §3), pricing (§4) and scan (§5) parameters."""

    strike_increment: float = 1.0
    strikes_per_side: int = 2
    expiry_convention: str = ExpiryConvention.ZERO_DTE.value
    selection_mode: str = Field(
        default="rule",
        description="rule, or discovery through the reference API within ±1% of the open",
    )
    rate: float = 0.045
    dividend_yield: float = 0.013
    scan_threshold: float = 0.20


def env_key() -> EnvVar | None:
    """The vendor key as an EnvVar (so its value never lands in run config), if one is set."""
    for name in KEY_VARIABLES:
        if os.environ.get(name):
            return EnvVar(name)
    return None


def default_resources() -> dict[str, object]:
    """Resources from the environment: ``SPY_ASSETS_DATA_DIR``, ``SPY_ASSETS_SOURCE``,
    ``SPY_ASSETS_SEED``, ``MASSIVE_BASE_URL`` and the vendor key."""
    market_kwargs: dict[str, object] = {}
    if key := env_key():
        market_kwargs["api_key"] = key
    for field, var in (("source", "SPY_ASSETS_SOURCE"), ("base_url", "MASSIVE_BASE_URL")):
        if os.environ.get(var):
            market_kwargs[field] = EnvVar(var)
    if os.environ.get("SPY_ASSETS_SEED"):
        market_kwargs["seed"] = EnvVar.int("SPY_ASSETS_SEED")
    if os.environ.get("SPY_ASSETS_REQUESTS_PER_MINUTE"):
        market_kwargs["requests_per_minute"] = float(os.environ["SPY_ASSETS_REQUESTS_PER_MINUTE"])
    storage_kwargs = (
        {"root": EnvVar("SPY_ASSETS_DATA_DIR")} if os.environ.get("SPY_ASSETS_DATA_DIR") else {}
    )
    return {
        "storage": StorageResource(**storage_kwargs),
        "market": MarketDataResource(**market_kwargs),
        "settings": ResearchSettings(),
    }
