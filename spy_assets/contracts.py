"""Option contract selection around the open (SPEC §3) and ``O:`` ticker codes.

Pure arithmetic: no I/O, no configuration objects.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum

from spy_assets import calendar

STRIKE_TOLERANCE = 0.01
_TICKER_RE = re.compile(r"^O:(?P<root>[A-Z0-9.]{1,6})(?P<date>\d{6})(?P<cp>[CP])(?P<strike>\d{8})$")


class ExpiryConvention(StrEnum):
    ZERO_DTE = "0dte"
    NEXT_TRADING_DAY = "next_trading_day"
    NEXT_FRIDAY = "next_friday"


@dataclass(frozen=True)
class OptionContract:
    underlying: str
    expiration: dt.date
    contract_type: str  # "call" or "put"
    strike: float

    @property
    def ticker(self) -> str:
        return build_ticker(self.underlying, self.expiration, self.contract_type, self.strike)


def build_ticker(underlying: str, expiration: dt.date, contract_type: str, strike: float) -> str:
    """``O:`` + root + YYMMDD + C|P + strike×1000 zero-padded to 8 digits."""
    kind = contract_type.lower()
    if kind not in ("call", "put", "c", "p"):
        raise ValueError(f"contract type must be 'call' or 'put', not {contract_type!r}")
    if not (strike > 0 and math.isfinite(strike)):
        raise ValueError(f"strike must be a positive number, not {strike!r}")
    millis = int(Decimal(str(strike)) * 1000)
    if millis >= 10**8:
        raise ValueError(f"strike {strike} does not fit the 8-digit ticker field")
    cp = "C" if kind in ("call", "c") else "P"
    return f"O:{underlying.upper()}{expiration:%y%m%d}{cp}{millis:08d}"


def parse_ticker(ticker: str) -> OptionContract:
    """The inverse of :func:`build_ticker`; raises ValueError on anything else."""
    match = _TICKER_RE.match(ticker)
    if not match:
        raise ValueError(f"{ticker!r} is not an option ticker like O:SPY250321C00594000")
    expiration = dt.datetime.strptime(match["date"], "%y%m%d").date()
    return OptionContract(
        underlying=match["root"],
        expiration=expiration,
        contract_type="call" if match["cp"] == "C" else "put",
        strike=int(match["strike"]) / 1000.0,
    )


def first_strikes(open_price: float, increment: float) -> tuple[float, float]:
    """(first call strike, first put strike): calls strictly above the open, puts strictly below.

    Decimal arithmetic keeps 593.5/0.5 from landing a hair off the boundary.
    """
    if not (open_price > 0 and math.isfinite(open_price)):
        raise ValueError(f"opening price must be a positive number, not {open_price!r}")
    if increment <= 0:
        raise ValueError(f"strike increment must be positive, not {increment!r}")
    s0, k = Decimal(str(open_price)), Decimal(str(increment))
    call = (s0 / k).to_integral_value(rounding=ROUND_CEILING) * k
    put = (s0 / k).to_integral_value(rounding=ROUND_FLOOR) * k
    if call == s0:
        call += k
    if put == s0:
        put -= k
    return float(call), float(put)


def select_strikes(
    open_price: float, increment: float = 1.0, n: int = 2
) -> tuple[list[float], list[float]]:
    """``n`` call strikes up from the first call, ``n`` put strikes down from the first put."""
    if n < 1:
        raise ValueError(f"strikes per side must be at least 1, not {n}")
    call, put = first_strikes(open_price, increment)
    k = Decimal(str(increment))
    calls = [float(Decimal(str(call)) + i * k) for i in range(n)]
    puts = [float(Decimal(str(put)) - i * k) for i in range(n)]
    return calls, puts


def expiry_for(session: dt.date, convention: ExpiryConvention | str) -> dt.date:
    """The expiry a session trades under a convention.

    ``next_friday`` is the Friday on or after the next session; a holiday Friday rolls back to
    the last session before it (the Thursday).
    """
    convention = ExpiryConvention(convention)
    if convention is ExpiryConvention.ZERO_DTE:
        return calendar.parse_session(session)
    nxt = calendar.next_session(session)
    if convention is ExpiryConvention.NEXT_TRADING_DAY:
        return nxt
    friday = nxt + dt.timedelta(days=(4 - nxt.weekday()) % 7)
    if calendar.is_session(friday):
        return friday
    return max(calendar.session_on_or_before(friday), nxt)


def select_contracts(
    underlying: str,
    session: dt.date,
    open_price: float,
    increment: float,
    n: int,
    convention: ExpiryConvention | str,
) -> list[OptionContract]:
    """The SPEC §3 rule: calls above and puts below the open, ``n`` each, one expiry."""
    expiration = expiry_for(session, convention)
    calls, puts = select_strikes(open_price, increment, n)
    return [OptionContract(underlying.upper(), expiration, "call", k) for k in calls] + [
        OptionContract(underlying.upper(), expiration, "put", k) for k in puts
    ]
