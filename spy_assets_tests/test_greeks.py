"""Implied volatility and Greeks: against vollib, parity, finite differences and the NaN policy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from vollib.black_scholes_merton.greeks import analytical as vollib_greeks
from vollib.black_scholes_merton.implied_volatility import implied_volatility as vollib_iv

from spy_assets.analytics import greeks as gk
from spy_assets.analytics.greeks import bs_price, implied_vol_and_greeks

S0 = 590.0
R = 0.043
Q = 0.013
MINUTE = 1.0 / (365.0 * 24.0 * 60.0)
GREEKS = ("delta", "gamma", "theta", "vega", "rho")
# vega per vol point; below this the price barely moves with sigma and IV is ill-conditioned
VEGA_NOT_NEGLIGIBLE = 1e-4


def _grid() -> pd.DataFrame:
    strikes = S0 * np.array([0.9, 0.97, 0.99, 0.998, 1.0, 1.002, 1.01, 1.03, 1.1])
    tenors = [MINUTE, 30 * MINUTE, 390 * MINUTE, 1 / 365, 7 / 365, 30 / 365, 60 / 365, 1.0]
    vols = [0.08, 0.2, 0.5, 0.8]
    rows = [(k, t, v, c) for k in strikes for t in tenors for v in vols for c in (True, False)]
    grid = pd.DataFrame(rows, columns=["strike", "t", "sigma", "is_call"])
    grid["price"] = bs_price(S0, grid.strike, grid.t, R, Q, grid.sigma, grid.is_call)
    return grid


def _solve(grid: pd.DataFrame) -> pd.DataFrame:
    return implied_vol_and_greeks(grid.price, S0, grid.strike, grid.t, R, Q, grid.is_call)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def test_output_columns_dtypes_and_statuses() -> None:
    res = _solve(_grid())
    assert tuple(res.columns) == gk.OUTPUT_COLUMNS
    assert (res.dtypes.iloc[:6] == np.float64).all()
    assert res["iv_status"].dtype == "str"
    assert set(res["iv_status"]) <= set(gk.IV_STATUSES)
    assert gk.IV_STATUSES == (
        "ok",
        "bad_input",
        "expired",
        "below_intrinsic",
        "above_upper_bound",
        "no_time_value",
        "no_convergence",
    )


def test_matches_vollib_on_grid_including_0dte() -> None:
    grid = _grid()
    res = _solve(grid)
    ok = (res["iv_status"] == gk.IV_OK).to_numpy()
    # everything is solvable except options whose time value is lost in float rounding, or
    # whose model price underflows to zero (far out of the money, minutes to expiry)
    assert ok.mean() > 0.8
    zero_price = (grid.price == 0).to_numpy()
    assert (res.loc[zero_price, "iv_status"] == gk.IV_BAD_INPUT).all()
    assert (res.loc[~ok & ~zero_price, "iv_status"] == gk.IV_NO_TIME_VALUE).all()
    assert ok[grid.t.to_numpy() == MINUTE].sum() >= 20
    checked = 0
    for i in np.flatnonzero(ok):
        row = grid.iloc[i]
        flag = "c" if row.is_call else "p"
        iv = res.iv.iloc[i]
        if res.vega.iloc[i] > VEGA_NOT_NEGLIGIBLE:
            ref_iv = vollib_iv(row.price, S0, row.strike, row.t, R, Q, flag)
            assert abs(iv - ref_iv) < 1e-9, (i, iv, ref_iv)
            assert abs(iv - row.sigma) < 1e-9
            checked += 1
        for name in GREEKS:
            ref = getattr(vollib_greeks, name)(flag, S0, row.strike, row.t, R, iv, Q)
            got = res[name].iloc[i]
            assert abs(got - ref) <= 1e-10 * abs(ref) + 1e-300, (i, name, got, ref)
    assert checked > 300


def test_round_trip_recovers_sigma() -> None:
    rng = np.random.default_rng(11)
    n = 4000
    strike = S0 * rng.uniform(0.97, 1.03, n)
    t = np.where(rng.random(n) < 0.4, rng.uniform(1, 390, n) * MINUTE, rng.uniform(1, 60, n) / 365)
    sigma = rng.uniform(0.08, 0.8, n)
    is_call = rng.random(n) < 0.5
    price = bs_price(S0, strike, t, R, Q, sigma, is_call)
    res = implied_vol_and_greeks(price, S0, strike, t, R, Q, is_call)
    ok = (res["iv_status"] == gk.IV_OK).to_numpy()
    well_conditioned = ok & (res.vega.to_numpy() > VEGA_NOT_NEGLIGIBLE)
    assert well_conditioned.mean() > 0.85
    np.testing.assert_allclose(
        res.iv[well_conditioned], sigma[well_conditioned], rtol=0, atol=1e-10
    )
    # ill-conditioned but solved rows still reprice to the input
    repriced = bs_price(S0, strike[ok], t[ok], R, Q, res.iv.to_numpy()[ok], is_call[ok])
    # (bs_price itself rounds at ~1e-13 dollars: its two terms are of the size of the spot)
    np.testing.assert_allclose(repriced, price[ok], rtol=1e-12, atol=1e-12)


def test_put_call_parity() -> None:
    strike = np.array([588.0, 585.0, 590.0, 596.0, 620.0])
    t = np.array([5 * MINUTE, 2 / 24 / 365, 1 / 365, 14 / 365, 45 / 365])
    sigma = np.array([0.6, 0.3, 0.18, 0.15, 0.12])
    call = bs_price(S0, strike, t, R, Q, sigma, True)
    put = bs_price(S0, strike, t, R, Q, sigma, False)
    forward_leg = S0 * np.exp(-Q * t) - strike * np.exp(-R * t)
    np.testing.assert_allclose(call - put, forward_leg, rtol=0, atol=1e-11)

    rc = implied_vol_and_greeks(call, S0, strike, t, R, Q, True)
    rp = implied_vol_and_greeks(put, S0, strike, t, R, Q, False)
    assert (rc["iv_status"] == "ok").all() and (rp["iv_status"] == "ok").all()
    np.testing.assert_allclose(rc.iv, rp.iv, rtol=1e-9)
    np.testing.assert_allclose(rc.delta - rp.delta, np.exp(-Q * t), rtol=1e-9)
    np.testing.assert_allclose(rc.gamma, rp.gamma, rtol=1e-9)
    np.testing.assert_allclose(rc.vega, rp.vega, rtol=1e-9)
    np.testing.assert_allclose(rc.rho - rp.rho, t * strike * np.exp(-R * t) / 100, rtol=1e-9)
    carry = (Q * S0 * np.exp(-Q * t) - R * strike * np.exp(-R * t)) / 365
    np.testing.assert_allclose(rc.theta - rp.theta, carry, rtol=1e-7, atol=1e-12)


def test_greek_units_against_finite_differences() -> None:
    k, t, sigma = 600.0, 20 / 365, 0.22
    for is_call in (True, False):
        price = bs_price(S0, k, t, R, Q, sigma, is_call)
        res = implied_vol_and_greeks(np.atleast_1d(price), S0, k, t, R, Q, is_call).iloc[0]

        def v(
            s: float = S0, tt: float = t, r: float = R, vol: float = sigma, c: bool = is_call
        ) -> float:
            return float(bs_price(s, k, tt, r, Q, vol, c))

        h = 1e-3
        assert res.delta == pytest.approx((v(s=S0 + h) - v(s=S0 - h)) / (2 * h), rel=1e-6)
        gamma_fd = (v(s=S0 + 0.1) - 2 * v() + v(s=S0 - 0.1)) / 0.01
        assert res.gamma == pytest.approx(gamma_fd, rel=1e-4)
        vega_fd = (v(vol=sigma + h) - v(vol=sigma - h)) / (2 * h) / 100
        assert res.vega == pytest.approx(vega_fd, rel=1e-5)
        assert res.rho == pytest.approx((v(r=R + h) - v(r=R - h)) / (2 * h) / 100, rel=1e-6)
        day = 1 / 365
        # value lost when one calendar day passes
        theta_fd = (v(tt=t - day / 100) - v(tt=t + day / 100)) / (2 * day / 100) / 365
        assert res.theta == pytest.approx(theta_fd, rel=1e-5)
        assert res.theta < 0


def test_each_status_from_a_hand_made_row_leaves_the_batch_alone() -> None:
    t_1d = 1 / 365
    good = dict(price=2.5, spot=S0, strike=592.0, t=t_1d, rate=R, q=Q, is_call=True)
    fwd, kdisc = S0 * math.exp(-Q * t_1d), 560.0 * math.exp(-R * t_1d)
    intrinsic = fwd - kdisc
    rows = [
        (good, "ok"),
        (dict(good, price=np.nan), "bad_input"),
        (dict(good, price=0.0), "bad_input"),
        (dict(good, price=-1.0), "bad_input"),
        (dict(good, spot=np.inf), "bad_input"),
        (dict(good, strike=0.0), "bad_input"),
        (dict(good, rate=np.nan), "bad_input"),
        (dict(good, t=np.nan), "bad_input"),
        (dict(good, t=0.0), "expired"),
        (dict(good, t=-0.01), "expired"),
        (dict(good, strike=560.0, price=intrinsic - 0.05), "below_intrinsic"),
        (dict(good, price=fwd + 0.01), "above_upper_bound"),
        (dict(good, price=fwd), "above_upper_bound"),
        (
            dict(good, strike=620.0, is_call=False, price=620.0 * math.exp(-R * t_1d)),
            "above_upper_bound",
        ),
        (dict(good, strike=560.0, price=intrinsic), "no_time_value"),
        (dict(good, strike=560.0, price=intrinsic * (1 + 1e-14)), "no_time_value"),
        # deep ITM 0DTE put: its time value (~1e-40) is far below the price's rounding
        (
            dict(
                good,
                strike=640.0,
                t=MINUTE,
                is_call=False,
                price=float(bs_price(S0, 640.0, MINUTE, R, Q, 0.2, False)),
            ),
            "no_time_value",
        ),
        (dict(good, price=3.0, is_call=True), "ok"),
    ]
    frame = pd.DataFrame([r for r, _ in rows])
    res = implied_vol_and_greeks(
        frame.price, frame.spot, frame.strike, frame.t, frame.rate, frame.q, frame.is_call
    )
    assert res["iv_status"].tolist() == [s for _, s in rows]
    bad = res["iv_status"] != "ok"
    assert res.loc[bad, list(gk.GREEK_COLUMNS)].isna().all().all()
    assert res.loc[~bad, list(gk.GREEK_COLUMNS)].notna().all().all()
    # the good rows give the same numbers as when solved on their own
    alone = implied_vol_and_greeks(
        frame.price[~bad], S0, frame.strike[~bad], t_1d, R, Q, frame.is_call[~bad]
    )
    pd.testing.assert_frame_equal(res[~bad], alone)


def test_no_convergence_when_the_solver_budget_runs_out() -> None:
    price = bs_price(S0, [600.0, 585.0], 1 / 365, R, Q, 0.2, [True, False])
    res = implied_vol_and_greeks(
        price, S0, [600.0, 585.0], 1 / 365, R, Q, [True, False], max_iterations=0
    )
    assert res["iv_status"].tolist() == ["no_convergence"] * 2
    assert res[list(gk.GREEK_COLUMNS)].isna().all().all()
    assert (
        implied_vol_and_greeks(price, S0, [600.0, 585.0], 1 / 365, R, Q, [True, False])["iv_status"]
        == "ok"
    ).all()


def test_missing_call_flag_is_bad_input() -> None:
    flags = pd.Series([True, None, False], dtype="boolean")
    price = np.array([2.5, 2.5, 2.0])
    res = implied_vol_and_greeks(price, S0, 590.0, 1 / 365, R, Q, flags)
    assert res["iv_status"].tolist() == ["ok", "bad_input", "ok"]
    with pytest.raises(TypeError):
        implied_vol_and_greeks(price, S0, 590.0, 1 / 365, R, Q, np.array(["C", "P", "C"]))


def test_zero_dte_and_sub_cent_prices() -> None:
    t = np.array([MINUTE, MINUTE, 15 * MINUTE, 2 / 24 / 365, 2 / 24 / 365, 1 / 365])
    strike = np.array([590.0, 591.0, 594.0, 600.0, 580.0, 610.0])
    is_call = np.array([True, True, True, True, False, True])
    price = np.array([0.05, 0.01, 0.001, 0.01, 0.003, 0.0005])
    res = implied_vol_and_greeks(price, S0, strike, t, R, Q, is_call)
    assert (res["iv_status"] == "ok").all()
    repriced = bs_price(S0, strike, t, R, Q, res.iv.to_numpy(), is_call)
    np.testing.assert_allclose(repriced, price, rtol=1e-11, atol=1e-12)
    for i in range(len(price)):
        flag = "c" if is_call[i] else "p"
        ref = vollib_iv(price[i], S0, strike[i], t[i], R, Q, flag)
        assert res.iv.iloc[i] == pytest.approx(ref, rel=1e-10)


def test_one_row_and_zero_rows() -> None:
    grid = _grid().iloc[::37].reset_index(drop=True)
    batch = _solve(grid)
    for i in (0, 5):
        one = _solve(grid.iloc[[i]])
        assert len(one) == 1
        pd.testing.assert_frame_equal(one, batch.iloc[[i]])
    empty = implied_vol_and_greeks(np.array([]), S0, np.array([]), np.array([]), R, Q, np.array([]))
    assert empty.shape == (0, 7)
    assert tuple(empty.columns) == gk.OUTPUT_COLUMNS
    assert (empty.dtypes.iloc[:6] == np.float64).all()


def test_series_inputs_with_a_non_default_index_are_positional() -> None:
    grid = _grid().iloc[::23]
    index = pd.Index([f"opt{i}" for i in range(len(grid))])[::-1]
    price = pd.Series(grid.price.to_numpy(), index=index)
    # a differently ordered index on another input must not trigger alignment
    strike = pd.Series(grid.strike.to_numpy(), index=index[::-1])
    t = pd.Series(grid.t.to_numpy(), index=np.arange(len(grid)) * 3 + 100)
    res = implied_vol_and_greeks(price, S0, strike, t, R, Q, grid.is_call)
    plain = implied_vol_and_greeks(
        grid.price.to_numpy(),
        S0,
        grid.strike.to_numpy(),
        grid.t.to_numpy(),
        R,
        Q,
        grid.is_call.to_numpy(),
    )
    assert res.index.equals(index)
    pd.testing.assert_frame_equal(res.reset_index(drop=True), plain)


def test_scalar_and_per_row_rates_agree() -> None:
    grid = _grid().iloc[::11]
    n = len(grid)
    a = _solve(grid)
    b = implied_vol_and_greeks(
        grid.price, np.full(n, S0), grid.strike, grid.t, np.full(n, R), np.full(n, Q), grid.is_call
    )
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ValueError, match="length"):
        implied_vol_and_greeks(grid.price, S0, grid.strike[:-1], grid.t, R, Q, grid.is_call)
