"""The research parameters and their defaults: one home for each.

Contract selection (SPEC §3), pricing (§4), the scan (§5) and the training targets (§6). The core
functions take these objects; the Dagster ``settings`` resource only exposes them for a run's
configuration; provenance is written from the object a build actually used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from spy_assets.contracts import ExpiryConvention

EXPIRY_CONVENTIONS = tuple(c.value for c in ExpiryConvention)
SELECTION_MODES = ("rule", "discovery")
STRIKE_INCREMENTS = (1.0, 0.5)


@dataclass(frozen=True)
class SelectionParams:
    """Which contracts a session trades: SPEC §3."""

    strike_increment: float = 1.0
    strikes_per_side: int = 2
    expiry_convention: str = "0dte"
    #: ``rule`` builds tickers from the strikes; ``discovery`` matches them against the
    #: vendor's reference contracts within ±1% of the open.
    selection_mode: str = "rule"

    def __post_init__(self) -> None:
        if self.strike_increment not in STRIKE_INCREMENTS:
            raise ValueError(f"strike_increment must be 1.0 or 0.5, not {self.strike_increment}")
        if not 1 <= self.strikes_per_side <= 50:
            raise ValueError(f"strikes_per_side must be 1..50, not {self.strikes_per_side}")
        if self.expiry_convention not in EXPIRY_CONVENTIONS:
            raise ValueError(
                f"expiry_convention must be one of {', '.join(EXPIRY_CONVENTIONS)}, "
                f"not {self.expiry_convention!r}"
            )
        if self.selection_mode not in SELECTION_MODES:
            raise ValueError(
                f"selection_mode must be rule or discovery, not {self.selection_mode!r}"
            )


@dataclass(frozen=True)
class PricingParams:
    """Black-Scholes-Merton inputs: SPEC §4."""

    rate: float = 0.045
    dividend_yield: float = 0.013


@dataclass(frozen=True)
class ScanParams:
    """A bar is above when its close is at least (1 + threshold) × the session low so far."""

    threshold: float = 0.20

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 100:
            raise ValueError(f"the scan threshold must be positive, not {self.threshold}")


@dataclass(frozen=True)
class TrainingParams:
    """Target horizons in minutes and the coverage filter: SPEC §6."""

    horizons: tuple[int, ...] = (5, 15, 30)
    max_return_horizon: int = 30
    min_coverage: float = 0.8


@dataclass(frozen=True)
class ResearchParams:
    """All of them, as one run uses them."""

    selection: SelectionParams = field(default_factory=SelectionParams)
    pricing: PricingParams = field(default_factory=PricingParams)
    scan: ScanParams = field(default_factory=ScanParams)
    training: TrainingParams = field(default_factory=TrainingParams)


def as_dict(params: object) -> dict[str, object]:
    """A parameters object as plain JSON-able values (tuples become lists)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()
    }
