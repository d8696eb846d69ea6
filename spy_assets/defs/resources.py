"""Resources: where data lives, which market it comes from, and the research parameters.

Their defaults come from ``spy_assets.config`` (the environment) and ``spy_assets.params`` (the
research defaults); nothing here holds a default of its own.
"""

from __future__ import annotations

import os

from dagster import ConfigurableResource, Definitions, EnvVar
from pydantic import Field

from spy_assets import config
from spy_assets.errors import ConfigError
from spy_assets.params import (
    PricingParams,
    ResearchParams,
    ScanParams,
    SelectionParams,
    TrainingParams,
)
from spy_assets.sources.base import MarketSource
from spy_assets.storage import Storage

_SEL, _PRICE, _SCAN = SelectionParams(), PricingParams(), ScanParams()


class StorageResource(ConfigurableResource):
    """Parquet partitions and the DuckDB catalog under ``root``."""

    root: str = Field(
        default=config.DEFAULT_DATA_DIR,
        description="Folder or s3://bucket/prefix for the Parquet files.",
    )
    state_dir: str | None = Field(
        default=None, description="Local folder for catalog.duckdb (default: root if local)."
    )

    def get(self) -> Storage:
        return Storage(self.root, self.state_dir)


class MarketDataResource(ConfigurableResource):
    """Which market the raw assets read: ``synthetic`` (offline, the default) or ``massive``."""

    source: str = Field(
        default=config.DEFAULT_SOURCE,
        description="synthetic, massive, or auto (massive when an API key is set)",
    )
    seed: int = Field(default=config.DEFAULT_SEED, description="Seed of the synthetic market.")
    api_key: str | None = Field(default=None, description="Vendor key; set it with EnvVar.")
    base_url: str = Field(default=config.DEFAULT_BASE_URL, description="Vendor REST base URL.")
    requests_per_minute: float = Field(
        default=config.DEFAULT_REQUESTS_PER_MINUTE, description="The plan's request rate."
    )
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
            raise ConfigError(f"unknown source {self.source!r}: use synthetic, massive or auto")
        return name

    def build(self) -> MarketSource:
        """A fresh source (its request counters start at zero)."""
        if self.source_name == "synthetic":
            from spy_assets.sources.synthetic import SyntheticMarket

            return SyntheticMarket(seed=self.seed)
        if not self.api_key:
            raise ConfigError(
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
    """Contract selection (SPEC §3), pricing (§4) and scan (§5) parameters for a run."""

    strike_increment: float = Field(default=_SEL.strike_increment, description="1.0 or 0.5")
    strikes_per_side: int = _SEL.strikes_per_side
    expiry_convention: str = Field(
        default=_SEL.expiry_convention, description="0dte, next_trading_day or next_friday"
    )
    selection_mode: str = Field(
        default=_SEL.selection_mode,
        description="rule, or discovery through the reference API within ±1% of the open",
    )
    rate: float = _PRICE.rate
    dividend_yield: float = _PRICE.dividend_yield
    scan_threshold: float = _SCAN.threshold

    def params(self) -> ResearchParams:
        """The parameters as the core takes them (validated)."""
        try:
            return ResearchParams(
                selection=SelectionParams(
                    strike_increment=self.strike_increment,
                    strikes_per_side=self.strikes_per_side,
                    expiry_convention=self.expiry_convention,
                    selection_mode=self.selection_mode,
                ),
                pricing=PricingParams(rate=self.rate, dividend_yield=self.dividend_yield),
                scan=ScanParams(threshold=self.scan_threshold),
                training=TrainingParams(),
            )
        except ValueError as exc:
            raise ConfigError(f"settings: {exc}") from None


def _env(name: str) -> EnvVar | None:
    """An EnvVar (resolved at run time, never written into run config) when the variable is
    set; the value was validated by :func:`spy_assets.config.load` already."""
    return EnvVar(name) if os.environ.get(name, "").strip() else None


def default_resources(settings: config.Settings) -> dict[str, object]:
    """Resources from the validated environment."""
    market: dict[str, object] = {}
    if settings.key_variable:
        market["api_key"] = EnvVar(settings.key_variable)
    for field, var in (("source", config.SOURCE), ("base_url", config.BASE_URL)):
        if value := _env(var):
            market[field] = value
    if _env(config.SEED):
        market["seed"] = EnvVar.int(config.SEED)
    if _env(config.REQUESTS_PER_MINUTE):
        market["requests_per_minute"] = settings.requests_per_minute
    return {
        "storage": StorageResource(root=str(settings.data_dir), state_dir=str(settings.state_dir)),
        "market": MarketDataResource(**market),
        "settings": ResearchSettings(),
    }


def definitions(settings: config.Settings) -> Definitions:
    return Definitions(resources=default_resources(settings))
