"""Speed and accuracy of `implied_vol_and_greeks` against a per-row vollib loop.

    uv run python benchmarks/greeks_vs_vollib.py [--rows N] [--sample M] [--seed S]

Builds a seeded SPY-like option set (spot ~590, $1 strikes within +-3%, 40% 0DTE with 1 minute
to 6.5 hours left, the rest 1-60 days, IVs 8%-80%, ~1% bad rows), times the vectorized call
(best of 3, pinned to one core) and a vollib loop (IV + delta, gamma, theta, vega, rho) on a
random sample, and checks the numbers against vollib. Exits 1 if an accuracy target fails.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import numba
import numpy as np
import pandas as pd
from vollib.black_scholes_merton.greeks import analytical as vollib_greeks
from vollib.black_scholes_merton.implied_volatility import implied_volatility as vollib_iv

from spy_assets.analytics.greeks import IV_OK, IV_STATUSES, bs_price, implied_vol_and_greeks

SPOT = 590.0
RATE = 0.043
DIV_YIELD = 0.013
MINUTE = 1.0 / (365.0 * 24.0 * 60.0)
GREEKS = ("delta", "gamma", "theta", "vega", "rho")

TARGET_ROWS_PER_S = 3e6
IV_ABS_TOL = 1e-9
# vega per vol point (vollib's unit) above which the IV is well determined by the price
VEGA_NOT_NEGLIGIBLE = 1e-4
GREEK_REL_TOL = 1e-10
# Greeks that are ~0 from cancellation (theta of a deep ITM put) only compare in absolute terms
GREEK_ABS_FLOOR = 1e-14


def pin_to_one_core() -> int | None:
    numba.set_num_threads(1)
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def spy_like_chain(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    spot = SPOT * np.exp(rng.normal(0.0, 0.004, n))
    strike = np.round(spot * rng.uniform(0.97, 1.03, n))
    zero_dte = rng.random(n) < 0.4
    t = np.where(zero_dte, rng.uniform(1, 390, n) * MINUTE, rng.uniform(1, 60, n) / 365.0)
    sigma = rng.uniform(0.08, 0.8, n)
    is_call = rng.random(n) < 0.5
    price = bs_price(spot, strike, t, RATE, DIV_YIELD, sigma, is_call)

    fwd = spot * np.exp(-DIV_YIELD * t)
    kdisc = strike * np.exp(-RATE * t)
    lower = np.maximum(np.where(is_call, fwd - kdisc, kdisc - fwd), 0.0)
    upper = np.where(is_call, fwd, kdisc)
    u = rng.random(n)
    price = np.where(u < 0.002, np.nan, price)
    price = np.where((u >= 0.002) & (u < 0.004), -price, price)
    t = np.where((u >= 0.004) & (u < 0.006), 0.0, t)
    price = np.where((u >= 0.006) & (u < 0.008), lower - 0.05, price)
    price = np.where((u >= 0.008) & (u < 0.010), upper + 0.01, price)
    return pd.DataFrame(
        {
            "price": price,
            "spot": spot,
            "strike": strike,
            "t": t,
            "sigma": sigma,
            "is_call": is_call,
            "zero_dte": zero_dte,
        }
    )


def run_ours(chain: pd.DataFrame) -> pd.DataFrame:
    return implied_vol_and_greeks(
        chain["price"],
        chain["spot"],
        chain["strike"],
        chain["t"],
        RATE,
        DIV_YIELD,
        chain["is_call"],
    )


def run_vollib(chain: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-row vollib: IV, then the five Greeks at that IV (NaN where vollib raises)."""
    n = len(chain)
    ivs = np.full(n, np.nan)
    greeks = np.full((n, len(GREEKS)), np.nan)
    funcs = [getattr(vollib_greeks, g) for g in GREEKS]
    rows = zip(
        chain["price"], chain["spot"], chain["strike"], chain["t"], chain["is_call"], strict=True
    )
    with np.errstate(all="ignore"):  # vollib's numpy warnings on the bad rows
        for i, (p, s, k, t, c) in enumerate(rows):
            flag = "c" if c else "p"
            try:
                iv = vollib_iv(p, s, k, t, RATE, DIV_YIELD, flag)
                greeks[i] = [f(flag, s, k, t, RATE, iv, DIV_YIELD) for f in funcs]
            except Exception:  # vollib raises on prices outside the no-arbitrage bounds
                continue
            ivs[i] = iv
    return ivs, greeks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=2_000, help="rows in the vollib loop")
    parser.add_argument("--seed", type=int, default=20250101)
    args = parser.parse_args()

    cpu = pin_to_one_core()
    chain = spy_like_chain(args.rows, args.seed)
    run_ours(chain.iloc[:1000])  # compile, or load the numba cache

    timings = []
    for _ in range(3):
        gc.collect()
        start = time.perf_counter()
        ours = run_ours(chain)
        timings.append(time.perf_counter() - start)
    best = min(timings)
    ours_rate = len(chain) / best

    rng = np.random.default_rng(args.seed + 1)
    pick = np.sort(rng.choice(len(chain), size=min(args.sample, len(chain)), replace=False))
    sample = chain.iloc[pick].reset_index(drop=True)
    start = time.perf_counter()
    ref_iv, _ = run_vollib(sample)
    vollib_s = time.perf_counter() - start
    vollib_rate = len(sample) / vollib_s

    mine = ours.iloc[pick].reset_index(drop=True)
    ok = (mine["iv_status"] == IV_OK).to_numpy()
    # Greeks compared at our IV, so that they measure the Greek formulas alone
    greek_ref = np.full((len(sample), len(GREEKS)), np.nan)
    for i in np.flatnonzero(ok):
        row = sample.iloc[i]
        flag = "c" if row["is_call"] else "p"
        greek_ref[i] = [
            getattr(vollib_greeks, g)(
                flag, row["spot"], row["strike"], row["t"], RATE, mine["iv"].iloc[i], DIV_YIELD
            )
            for g in GREEKS
        ]

    well_determined = ok & (mine["vega"].to_numpy() > VEGA_NOT_NEGLIGIBLE)
    iv_diff = np.abs(mine["iv"].to_numpy() - ref_iv)[well_determined]
    failures = []
    if np.isnan(iv_diff).any():
        failures.append(f"vollib found no IV for {int(np.isnan(iv_diff).sum())} solved rows")
    max_iv_diff = float(np.nanmax(iv_diff)) if iv_diff.size else float("nan")
    if not max_iv_diff <= IV_ABS_TOL:
        failures.append(f"IV diff {max_iv_diff:.3g} > {IV_ABS_TOL:g}")

    statuses = ours["iv_status"].value_counts()
    print(f"rows: {len(chain):,} ({chain['zero_dte'].mean():.0%} 0DTE), one core (cpu {cpu})")
    print("statuses: " + ", ".join(f"{s}={statuses.get(s, 0):,}" for s in IV_STATUSES))
    print(
        f"implied_vol_and_greeks: best of 3 = {best * 1e3:.1f} ms "
        f"(runs: {', '.join(f'{t * 1e3:.0f}' for t in timings)} ms) "
        f"-> {ours_rate / 1e6:.2f} M rows/s (target {TARGET_ROWS_PER_S / 1e6:.0f} M)"
    )
    print(
        f"vollib loop (IV + 5 Greeks), {len(sample):,} sampled rows: {vollib_s:.2f} s "
        f"-> {vollib_rate:,.0f} rows/s"
    )
    print(f"speed ratio: {ours_rate / vollib_rate:,.0f}x")
    print(f"accuracy vs vollib on the sample ({int(ok.sum()):,} rows with status ok):")
    print(
        f"  iv: max |ours - vollib| = {max_iv_diff:.3g} over {int(well_determined.sum()):,} rows "
        f"with vega > {VEGA_NOT_NEGLIGIBLE:g} per vol point (target {IV_ABS_TOL:g})"
    )
    ours_ok = mine.loc[ok, list(GREEKS)].to_numpy()
    ref_ok = greek_ref[ok]
    for j, name in enumerate(GREEKS):
        diff = np.abs(ours_ok[:, j] - ref_ok[:, j])
        rel = diff / np.maximum(np.abs(ref_ok[:, j]), np.finfo(float).tiny)
        bad = ~(diff <= GREEK_REL_TOL * np.abs(ref_ok[:, j]) + GREEK_ABS_FLOOR)
        print(
            f"  {name}: max rel diff = {np.max(rel, initial=0.0):.3g} "
            f"(target {GREEK_REL_TOL:g}, abs floor {GREEK_ABS_FLOOR:g}; {int(bad.sum())} over)"
        )
        if bad.any():
            failures.append(f"{name}: {int(bad.sum())} rows off by more than the tolerance")
    vollib_only = np.isfinite(ref_iv) & (ref_iv > 0) & ~ok
    off = np.abs(ref_iv - sample["sigma"].to_numpy())[vollib_only]
    spread = f"{off.min():.2g} to {off.max():.2g}" if off.size else "-"
    print(
        f"  vollib returned an IV where ours is not ok: {int(vollib_only.sum())} rows "
        f"({mine.loc[vollib_only, 'iv_status'].value_counts().to_dict()}); there its IV is off "
        f"the sigma used to price by {spread}"
    )
    solved = (ours["iv_status"] == IV_OK).to_numpy() & (
        ours["vega"].to_numpy() > VEGA_NOT_NEGLIGIBLE
    )
    round_trip = np.abs(ours["iv"].to_numpy() - chain["sigma"].to_numpy())[solved]
    print(
        f"round trip on all {int(solved.sum()):,} well-determined rows: "
        f"max |iv - sigma used to price| = {round_trip.max(initial=0.0):.3g}"
    )
    if ours_rate < TARGET_ROWS_PER_S:
        print(f"note: below the {TARGET_ROWS_PER_S / 1e6:.0f} M rows/s target on this machine")
    if failures:
        print("ACCURACY FAIL: " + "; ".join(failures))
        return 1
    print("accuracy targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
