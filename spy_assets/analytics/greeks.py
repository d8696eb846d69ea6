"""Black-Scholes-Merton with a continuous dividend yield, vectorized over whole columns."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr


def bs_price(
    spot: np.ndarray | float,
    strike: np.ndarray | float,
    t_years: np.ndarray | float,
    rate: float,
    div_yield: float,
    sigma: np.ndarray | float,
    is_call: np.ndarray | bool,
) -> np.ndarray:
    """Option prices; at or past expiry (t ≤ 0) the intrinsic value."""
    s, k, t, v = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (spot, strike, t_years, sigma)))
    call = np.broadcast_to(np.asarray(is_call, dtype=bool), s.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        tt = np.maximum(t, 0.0)
        sd = v * np.sqrt(tt)
        d1 = (np.log(s / k) + (rate - div_yield + 0.5 * v * v) * tt) / sd
        d2 = d1 - sd
        fs = s * np.exp(-div_yield * tt)
        dk = k * np.exp(-rate * tt)
        c = fs * ndtr(d1) - dk * ndtr(d2)
        p = dk * ndtr(-d2) - fs * ndtr(-d1)
    price = np.where(call, c, p)
    intrinsic = np.where(call, np.maximum(s - k, 0.0), np.maximum(k - s, 0.0))
    return np.where((tt > 0) & (sd > 0), price, intrinsic)
