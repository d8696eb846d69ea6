"""Black-Scholes-Merton (continuous dividend yield) prices, implied volatility and Greeks.

`implied_vol_and_greeks` is one fused numba loop over the rows: bounds checks, a Let's-Be-Rational
style implied-volatility solve, analytic Greeks. A row that cannot be solved gets NaNs and an
`iv_status` saying why; it never raises and never affects the other rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.special import ndtr

IV_OK = "ok"
IV_BAD_INPUT = "bad_input"
IV_EXPIRED = "expired"
IV_BELOW_INTRINSIC = "below_intrinsic"
IV_ABOVE_UPPER_BOUND = "above_upper_bound"
IV_NO_TIME_VALUE = "no_time_value"
IV_NO_CONVERGENCE = "no_convergence"
# The kernel reports the position in this tuple, so the order is part of the kernel's contract.
IV_STATUSES = (
    IV_OK,
    IV_BAD_INPUT,
    IV_EXPIRED,
    IV_BELOW_INTRINSIC,
    IV_ABOVE_UPPER_BOUND,
    IV_NO_TIME_VALUE,
    IV_NO_CONVERGENCE,
)
GREEK_COLUMNS = ("iv", "delta", "gamma", "theta", "vega", "rho")
OUTPUT_COLUMNS = (*GREEK_COLUMNS, "iv_status")

_OK, _BAD_INPUT, _EXPIRED, _BELOW, _ABOVE, _NO_TV, _NO_CONV = range(len(IV_STATUSES))

# A time value below this fraction of the intrinsic value's terms is rounding noise.
TIME_VALUE_RTOL = 1e-12
# An IV whose float-precision uncertainty (price rounding / vega) exceeds this fraction of
# itself is reported as unidentifiable rather than as a number.
IV_IDENTIFIABILITY_RTOL = 1e-6
DAYS_PER_YEAR = 365.0

_STR_DTYPE = pd.StringDtype(storage="pyarrow", na_value=np.nan)
_STATUS_ARROW = pa.array(IV_STATUSES, type=pa.large_string())


# Only FMA contraction (no NaN/inf assumptions, no reassociation): the NaN checks must survive.
_JIT_OPTIONS: dict[str, Any] = {"error_model": "numpy", "fastmath": {"contract"}}


def _njit(fn: Callable[..., Any]) -> Callable[..., Any]:
    try:
        return numba.njit(cache=True, **_JIT_OPTIONS)(fn)
    except RuntimeError:  # no writable cache location: compile per process instead of failing
        return numba.njit(**_JIT_OPTIONS)(fn)


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
    s, k, t, v = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (spot, strike, t_years, sigma))
    )
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


# ---------------------------------------------------------------------------------------------
# Numba kernel. Normalized Black: x = ln(F/K) <= 0 (out of the money call), s = sigma sqrt(T),
# b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2), b_max = e^{x/2}.
# The initial guess (rational cubic interpolation on the lower/upper maps) and the transformed
# Householder objectives follow P. Jäckel, "Let's Be Rational" (2013-2014, www.jaeckel.org):
# "Permission to use, copy, modify, and distribute this software is freely granted, provided
# that this notice is preserved."

_DBL_EPS = 2.220446049250313e-16
_DBL_MIN = 2.2250738585072014e-308
_DBL_MAX = 1.7976931348623157e308
_SQRT_DBL_MAX = 1.3407807929942596e154
_INV_SQRT2 = 0.7071067811865475244008443621048490392848359376887
_INV_SQRT_2PI = 0.3989422804014326779399460599343818684758586311649
_SQRT_PI_OVER_2 = 1.253314137315500251207882642405522626503493370305
_TWO_PI = 6.283185307179586476925286766559005768394338798750
_SQRT3 = 1.732050807568877293527446341505872366942805253810
_SQRT_1_OVER_3 = 0.577350269189625764509148780501957455647601751270
_TWO_PI_OVER_SQRT27 = 1.209199576156145233729385505094770488189377498728
_PI_OVER_6 = 0.523598775598298873077107230546583814032861566563
_RC_MIN = -(1.0 - 1.4901161193847656e-08)  # -(1 - sqrt(eps))
_RC_MAX = 2.0 / (_DBL_EPS * _DBL_EPS)

# Householder(3) converges quartically: after a step below this (relative) the error left is
# of order its fourth power, i.e. at the level of double rounding.
_STEP_RTOL = 1e-4
MAX_ITERATIONS = 40
_S_UPPER = 1e3  # normalized vol beyond which b(x, s) == b_max in double precision


@_njit
def _norm_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z * _INV_SQRT2)


@_njit
def _norm_cdf_from_pdf(z: float, pdf: float) -> float:
    """N(z) given phi(z)."""
    if z <= 0.0:
        return _SQRT_PI_OVER_2 * pdf * _erfcx(-z * _INV_SQRT2)
    return 1.0 - _SQRT_PI_OVER_2 * pdf * _erfcx(z * _INV_SQRT2)


@_njit
def _inv_norm_cdf(u: float) -> float:
    # Wichura, AS241 (PPND16), Appl. Statist. 37(3), 1988.
    q = u - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        num = (
            (
                (
                    (
                        (
                            (2.5090809287301226727e3 * r + 3.3430575583588128105e4) * r
                            + 6.7265770927008700853e4
                        )
                        * r
                        + 4.5921953931549871457e4
                    )
                    * r
                    + 1.3731693765509461125e4
                )
                * r
                + 1.9715909503065514427e3
            )
            * r
            + 1.3314166789178437745e2
        ) * r + 3.3871328727963666080e0
        den = (
            (
                (
                    (
                        (
                            (5.2264952788528545610e3 * r + 2.8729085735721942674e4) * r
                            + 3.9307895800092710610e4
                        )
                        * r
                        + 2.1213794301586595867e4
                    )
                    * r
                    + 5.3941960214247511077e3
                )
                * r
                + 6.8718700749205790830e2
            )
            * r
            + 4.2313330701600911252e1
        ) * r + 1.0
        return q * num / den
    r = u if q < 0.0 else 1.0 - u
    r = math.sqrt(-math.log(r))
    if r <= 5.0:
        r -= 1.6
        num = (
            (
                (
                    (
                        (
                            (7.74545014278341407640e-4 * r + 2.27238449892691845833e-2) * r
                            + 2.41780725177450611770e-1
                        )
                        * r
                        + 1.27045825245236838258e0
                    )
                    * r
                    + 3.64784832476320460504e0
                )
                * r
                + 5.76949722146069140550e0
            )
            * r
            + 4.63033784615654529590e0
        ) * r + 1.42343711074968357734e0
        den = (
            (
                (
                    (
                        (
                            (1.05075007164441684324e-9 * r + 5.47593808499534494600e-4) * r
                            + 1.51986665636164571966e-2
                        )
                        * r
                        + 1.48103976427480074590e-1
                    )
                    * r
                    + 6.89767334985100004550e-1
                )
                * r
                + 1.67638483018380384940e0
            )
            * r
            + 2.05319162663775882187e0
        ) * r + 1.0
    else:
        r -= 5.0
        num = (
            (
                (
                    (
                        (
                            (2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r
                            + 1.24266094738807843860e-3
                        )
                        * r
                        + 2.65321895265761230930e-2
                    )
                    * r
                    + 2.96560571828504891230e-1
                )
                * r
                + 1.78482653991729133580e0
            )
            * r
            + 5.46378491116411436990e0
        ) * r + 6.65790464350110377720e0
        den = (
            (
                (
                    (
                        (
                            (2.04426310338993978564e-15 * r + 1.42151175831644588870e-7) * r
                            + 1.84631831751005468180e-5
                        )
                        * r
                        + 7.86869131145613259100e-4
                    )
                    * r
                    + 1.48753612908506148525e-2
                )
                * r
                + 1.36929880922735805310e-1
            )
            * r
            + 5.99832206555887937690e-1
        ) * r + 1.0
    val = num / den
    return -val if q < 0.0 else val


@_njit
def _erfcx(y: float) -> float:
    """exp(y^2) erfc(y) for y >= 0 (Cody 1969 / CALERF rational Chebyshev approximations)."""
    if y <= 0.46875:
        ysq = y * y
        num = (
            ((0.185777706184603153 * ysq + 3.1611237438705656) * ysq + 113.864154151050156) * ysq
            + 377.485237685302021
        ) * ysq + 3209.37758913846947
        den = (
            ((ysq + 23.6012909523441209) * ysq + 244.024637934444173) * ysq + 1282.61652607737228
        ) * ysq + 2844.23683343917062
        return (1.0 - y * num / den) * math.exp(ysq)
    if y <= 4.0:
        num = (
            (
                (
                    (
                        (
                            (
                                (2.15311535474403846e-8 * y + 0.564188496988670089) * y
                                + 8.88314979438837594
                            )
                            * y
                            + 66.1191906371416295
                        )
                        * y
                        + 298.635138197400131
                    )
                    * y
                    + 881.95222124176909
                )
                * y
                + 1712.04761263407058
            )
            * y
            + 2051.07837782607147
        ) * y + 1230.33935479799725
        den = (
            (
                (
                    (
                        (
                            ((y + 15.7449261107098347) * y + 117.693950891312499) * y
                            + 537.181101862009858
                        )
                        * y
                        + 1621.38957456669019
                    )
                    * y
                    + 3290.79923573345963
                )
                * y
                + 4362.61909014324716
            )
            * y
            + 3439.36767414372164
        ) * y + 1230.33935480374942
        return num / den
    z = 1.0 / (y * y)
    num = (
        (
            ((0.0163153871373020978 * z + 0.305326634961232344) * z + 0.360344899949804439) * z
            + 0.125781726111229246
        )
        * z
        + 0.0160837851487422766
    ) * z + 6.58749161529837803e-4
    den = (
        (((z + 2.56852019228982242) * z + 1.87295284992346047) * z + 0.527905102951428412) * z
        + 0.0605183413124413191
    ) * z + 0.00233520497626869185
    return (0.56418958354775628695 - z * num / den) / y


@_njit
def _black_vega(x: float, s: float, b_max: float, sinh_half_x: float) -> tuple[float, float]:
    """Normalized OTM call b(x, s) for x <= 0, s > 0, and its vega db/ds."""
    h = x / s
    t = 0.5 * s
    e = math.exp(-0.5 * (h * h + t * t))
    d1 = h + t
    d2 = h - t
    if d1 <= 0.0:
        # e^{x/2} N(d1) = e erfcx(-d1/sqrt2) / 2, likewise for d2: one exponential, shared with
        # the vega, instead of one per erfc.
        b = 0.5 * e * (_erfcx(-d1 * _INV_SQRT2) - _erfcx(-d2 * _INV_SQRT2))
    elif x > -0.5:
        # Past the inflection point, near the money, b can be much smaller than the N() terms
        # (both near 1/2): split off the intrinsic part and use erf, whose terms are small here.
        b = sinh_half_x + 0.5 * (
            b_max * math.erf(d1 * _INV_SQRT2) - math.erf(d2 * _INV_SQRT2) / b_max
        )
    else:
        # Far from the money b >= b(x, s_c) > b_max / 5 here, so b_max - (b_max - b) is exact
        # enough, whereas the erf form would cancel terms of size e^{-x/2}.
        b = b_max - 0.5 * e * (_erfcx(d1 * _INV_SQRT2) + _erfcx(-d2 * _INV_SQRT2))
    return b, _INV_SQRT_2PI * e


@_njit
def _complement_vega(x: float, s: float, b_max: float, sinh_half_x: float) -> tuple[float, float]:
    """b_max - b(x, s) without cancellation, and the vega db/ds."""
    h = x / s
    t = 0.5 * s
    d1 = h + t
    if d1 < 0.0:
        b, bp = _black_vega(x, s, b_max, sinh_half_x)
        return b_max - b, bp
    e = math.exp(-0.5 * (h * h + t * t))
    return 0.5 * e * (_erfcx(d1 * _INV_SQRT2) + _erfcx(-(h - t) * _INV_SQRT2)), _INV_SQRT_2PI * e


@_njit
def _householder_factor(newton: float, halley: float, hh3: float) -> float:
    return (1.0 + 0.5 * halley * newton) / (1.0 + newton * (halley + hh3 * newton / 6.0))


# Rational cubic interpolation (Delbourgo & Gregory 1985) as used by Let's Be Rational.
@_njit
def _rc_interp(
    x: float, x_l: float, x_r: float, y_l: float, y_r: float, d_l: float, d_r: float, r: float
) -> float:
    h = x_r - x_l
    if abs(h) <= 0.0:
        return 0.5 * (y_l + y_r)
    t = (x - x_l) / h
    if not (r >= _RC_MAX):
        omt = 1.0 - t
        t2 = t * t
        omt2 = omt * omt
        return (
            y_r * t2 * t
            + (r * y_r - h * d_r) * t2 * omt
            + (r * y_l + h * d_l) * t * omt2
            + y_l * omt2 * omt
        ) / (1.0 + (r - 3.0) * t * omt)
    return y_r * t + y_l * (1.0 - t)


@_njit
def _rc_min_param(d_l: float, d_r: float, s: float, prefer_shape: bool) -> float:
    monotonic = d_l * s >= 0.0 and d_r * s >= 0.0
    convex = d_l <= s and s <= d_r
    concave = d_l >= s and s >= d_r
    if not monotonic and not convex and not concave:
        return _RC_MIN
    d_r_m_d_l = d_r - d_l
    d_r_m_s = d_r - s
    s_m_d_l = s - d_l
    r1 = -_DBL_MAX
    r2 = r1
    if monotonic:
        if abs(s) >= _DBL_MIN:
            r1 = (d_r + d_l) / s
        elif prefer_shape:
            r1 = _RC_MAX
    if convex or concave:
        if abs(s_m_d_l) >= _DBL_MIN and abs(d_r_m_s) >= _DBL_MIN:
            r2 = max(abs(d_r_m_d_l / d_r_m_s), abs(d_r_m_d_l / s_m_d_l))
        elif prefer_shape:
            r2 = _RC_MAX
    elif monotonic and prefer_shape:
        r2 = _RC_MAX
    return max(_RC_MIN, max(r1, r2))


@_njit
def _rc_param_left(
    x_l: float,
    x_r: float,
    y_l: float,
    y_r: float,
    d_l: float,
    d_r: float,
    dd_l: float,
    prefer_shape: bool,
) -> float:
    h = x_r - x_l
    num = 0.5 * h * dd_l + (d_r - d_l)
    if abs(num) < _DBL_MIN:
        r = 0.0
    else:
        den = (y_r - y_l) / h - d_l
        if abs(den) < _DBL_MIN:
            r = _RC_MAX if num > 0.0 else _RC_MIN
        else:
            r = num / den
    return max(r, _rc_min_param(d_l, d_r, (y_r - y_l) / h, prefer_shape))


@_njit
def _rc_param_right(
    x_l: float,
    x_r: float,
    y_l: float,
    y_r: float,
    d_l: float,
    d_r: float,
    dd_r: float,
    prefer_shape: bool,
) -> float:
    h = x_r - x_l
    num = 0.5 * h * dd_r + (d_r - d_l)
    if abs(num) < _DBL_MIN:
        r = 0.0
    else:
        den = d_r - (y_r - y_l) / h
        if abs(den) < _DBL_MIN:
            r = _RC_MAX if num > 0.0 else _RC_MIN
        else:
            r = num / den
    return max(r, _rc_min_param(d_l, d_r, (y_r - y_l) / h, prefer_shape))


@_njit
def _f_lower_map(x: float, s: float) -> tuple[float, float, float]:
    ax = abs(x)
    z = _SQRT_1_OVER_3 * ax / s
    y = z * z
    s2 = s * s
    big_phi = _norm_cdf(-z)
    small_phi = _INV_SQRT_2PI * math.exp(-0.5 * y)
    e = math.exp(y + 0.125 * s2)
    fpp = (
        _PI_OVER_6
        * y
        / (s2 * s)
        * big_phi
        * (8.0 * _SQRT3 * s * ax + (3.0 * s2 * (s2 - 8.0) - 8.0 * x * x) * big_phi / small_phi)
        * (e * e)
    )
    phi2 = big_phi * big_phi
    fp = _TWO_PI * y * phi2 * e
    f = _TWO_PI_OVER_SQRT27 * ax * (phi2 * big_phi)
    return f, fp, fpp


@_njit
def _f_upper_map(x: float, s: float) -> tuple[float, float, float]:
    f = _norm_cdf(-0.5 * s)
    w = (x / s) * (x / s)
    fp = -0.5 * math.exp(0.5 * w)
    fpp = _SQRT_PI_OVER_2 * math.exp(w + 0.125 * s * s) * w / s
    return f, fp, fpp


@_njit
def _initial_guess(
    beta: float, c_star: float, x: float, b_max: float, sinh_half_x: float
) -> tuple[float, int, float, float]:
    """Let's Be Rational's guess for s with b(x, s) = beta (x <= 0, 0 < beta < b_max = e^{x/2},
    c_star = b_max - beta): (s, objective mode, bracket left, bracket right)."""
    s_c = math.sqrt(-2.0 * x)
    # At s_c, d1 = 0 and d2 = -s_c with s_c^2 / 2 = -x: N(-s_c) = e^x erfcx(sqrt(-x)) / 2.
    b_c = 0.5 * b_max * (1.0 - _erfcx(math.sqrt(-x)))
    v_c = _INV_SQRT_2PI * b_max
    s_left = _DBL_MIN
    s_right = _S_UPPER
    mode = 1  # 0: lower, objective 1/ln b; 1: middle, b - beta; 2: upper, ln(b_max - b)
    if beta < b_c:
        s_l = s_c - b_c / v_c
        b_l, v_l = _black_vega(x, s_l, b_max, sinh_half_x)
        if beta < b_l:
            f_l, fp_l, fpp_l = _f_lower_map(x, s_l)
            r_ll = _rc_param_right(0.0, b_l, 0.0, f_l, 1.0, fp_l, fpp_l, True)
            f = _rc_interp(beta, 0.0, b_l, 0.0, f_l, 1.0, fp_l, r_ll)
            if not (f > 0.0):
                t = beta / b_l
                f = (f_l * t + b_l * (1.0 - t)) * t
            cube_root = math.exp(math.log(f / (_TWO_PI_OVER_SQRT27 * abs(x))) / 3.0)
            s = abs(x / (_SQRT3 * _inv_norm_cdf(cube_root)))
            s_right = s_l
            mode = 0
        else:
            r_lm = _rc_param_right(b_l, b_c, s_l, s_c, 1.0 / v_l, 1.0 / v_c, 0.0, False)
            s = _rc_interp(beta, b_l, b_c, s_l, s_c, 1.0 / v_l, 1.0 / v_c, r_lm)
            s_left = s_l
            s_right = s_c
    else:
        s_h = s_c + (b_max - b_c) / v_c
        b_h, v_h = _black_vega(x, s_h, b_max, sinh_half_x)
        if beta <= b_h:
            r_hm = _rc_param_left(b_c, b_h, s_c, s_h, 1.0 / v_c, 1.0 / v_h, 0.0, False)
            s = _rc_interp(beta, b_c, b_h, s_c, s_h, 1.0 / v_c, 1.0 / v_h, r_hm)
            s_left = s_c
            s_right = s_h
        else:
            f_h, fp_h, fpp_h = _f_upper_map(x, s_h)
            f = -1.0
            if abs(fpp_h) < _SQRT_DBL_MAX:
                r_hh = _rc_param_left(b_h, b_max, f_h, 0.0, fp_h, -0.5, fpp_h, True)
                f = _rc_interp(beta, b_h, b_max, f_h, 0.0, fp_h, -0.5, r_hh)
            if not (f > 0.0):
                h = b_max - b_h
                omt = c_star / h
                f = (f_h * omt + 0.5 * h * (1.0 - omt)) * omt
            s = -2.0 * _inv_norm_cdf(f)
            s_left = s_h
            if beta > 0.5 * b_max:
                mode = 2
    if not (s > s_left and s < s_right):
        s = 0.5 * (s_left + s_right)
    return s, mode, s_left, s_right


@_njit
def _refine(
    beta: float,
    c_star: float,
    x: float,
    b_max: float,
    sinh_half_x: float,
    s: float,
    mode: int,
    s_left: float,
    s_right: float,
    max_iter: int,
) -> tuple[float, bool]:
    """Safeguarded Householder(3) iterations from the guess: (s, converged)."""
    ln_beta = math.log(beta) if mode == 0 else 0.0
    ln_c_star = math.log(c_star) if mode == 2 else 0.0
    ds = _DBL_MAX
    ds_prev = 0.0
    reversals = 0
    it = 0
    while abs(ds) > _STEP_RTOL * s:
        if it >= max_iter:
            return s, False
        if ds * ds_prev < 0.0:
            reversals += 1
        if it > 0 and (reversals == 3 or not (s > s_left and s < s_right)):
            # Looping or stepping out of the bracket: bisect this once.
            s = 0.5 * (s_left + s_right)
            if s_right - s_left <= _DBL_EPS * s:
                return s, True
            reversals = 0
            ds = 0.0
        ds_prev = ds
        inv_s = 1.0 / s
        h = x * inv_s
        h_over_s = h * inv_s
        b_halley = h * h_over_s - 0.25 * s
        b_hh3 = b_halley * b_halley - 3.0 * h_over_s * h_over_s - 0.25
        if mode == 2:
            c, bp = _complement_vega(x, s, b_max, sinh_half_x)
            if c < c_star:
                s_right = min(s_right, s)
            elif c > c_star:
                s_left = max(s_left, s)
            if c <= 0.0 or bp <= _DBL_MIN:
                ds = 0.5 * (s_left + s_right) - s
            else:
                g = ln_c_star - math.log(c)
                gp = bp / c
                newton = -g / gp
                halley = b_halley + gp
                hh3 = b_hh3 + gp * (2.0 * gp + 3.0 * b_halley)
                ds = newton * _householder_factor(newton, halley, hh3)
        else:
            b, bp = _black_vega(x, s, b_max, sinh_half_x)
            if b > beta:
                s_right = min(s_right, s)
            elif b < beta:
                s_left = max(s_left, s)
            if mode == 0:
                if b <= 0.0 or bp <= 0.0:
                    ds = 0.5 * (s_left + s_right) - s
                else:
                    ln_b = math.log(b)
                    inv_ln_b = 1.0 / ln_b
                    bpob = bp / b
                    newton = (ln_beta - ln_b) * ln_b / (ln_beta * bpob)
                    k = 1.0 + 2.0 * inv_ln_b
                    halley = b_halley - bpob * k
                    hh3 = (
                        b_hh3
                        + 2.0 * bpob * bpob * (1.0 + 3.0 * inv_ln_b * (1.0 + inv_ln_b))
                        - 3.0 * b_halley * bpob * k
                    )
                    ds = newton * _householder_factor(newton, halley, hh3)
            else:
                if bp <= 0.0:
                    ds = 0.5 * (s_left + s_right) - s
                else:
                    newton = (beta - b) / bp
                    ds = newton * _householder_factor(newton, b_halley, b_hh3)
        ds = max(-0.5 * s, ds)
        s += ds
        it += 1
    return s, True


@_njit
def _iv_greeks_kernel(
    price: np.ndarray,
    spot: np.ndarray,
    strike: np.ndarray,
    t_years: np.ndarray,
    rate: np.ndarray,
    div_yield: np.ndarray,
    is_call: np.ndarray,
    max_iter: int,
    out: np.ndarray,
    status: np.ndarray,
) -> None:
    n = price.shape[0]
    # Inputs of length 1 broadcast against the price column.
    js = 1 if spot.shape[0] > 1 else 0
    jk = 1 if strike.shape[0] > 1 else 0
    jt = 1 if t_years.shape[0] > 1 else 0
    jr = 1 if rate.shape[0] > 1 else 0
    jq = 1 if div_yield.shape[0] > 1 else 0
    jc = 1 if is_call.shape[0] > 1 else 0
    nan = np.nan
    for i in range(n):
        p = price[i]
        S = spot[i * js]
        K = strike[i * jk]
        T = t_years[i * jt]
        r = rate[i * jr]
        q = div_yield[i * jq]
        flag = is_call[i * jc]
        cp_sign = 1.0 if flag > 0 else -1.0  # +1 call, -1 put
        for j in range(6):
            out[j, i] = nan
        finite = (
            math.isfinite(p)
            and math.isfinite(S)
            and math.isfinite(K)
            and math.isfinite(T)
            and math.isfinite(r)
            and math.isfinite(q)
        )
        if not finite or p <= 0.0 or S <= 0.0 or K <= 0.0 or flag < 0:
            status[i] = _BAD_INPUT
            continue
        if T <= 0.0:
            status[i] = _EXPIRED
            continue
        df_q = math.exp(-q * T)
        df_r = math.exp(-r * T)
        s_fwd = S * df_q  # discounted forward
        k_disc = K * df_r
        x = math.log(S / K) + (r - q) * T
        upper = s_fwd if cp_sign > 0.0 else k_disc
        if cp_sign * x > 0.0:
            # The time value left after subtracting S e^{-qT} - K e^{-rT} is all the information
            # about sigma, so take whichever form of that difference cancels less: near the
            # money (S - K) e^{-qT} + K e^{-rT} (e^{(r-q)T} - 1) is nearly exact.
            spot_leg = (S - K) * df_q
            carry_leg = k_disc * math.expm1((r - q) * T)
            split_scale = abs(spot_leg) + abs(carry_leg)
            if split_scale < s_fwd + k_disc:
                lower = max(cp_sign * (spot_leg + carry_leg), 0.0)
                noise_scale = p + split_scale
            else:
                lower = max(cp_sign * (s_fwd - k_disc), 0.0)
                noise_scale = p + s_fwd + k_disc
            tv_floor = TIME_VALUE_RTOL * noise_scale
        else:
            lower = 0.0
            tv_floor = 0.0
            noise_scale = p
        time_value = p - lower
        headroom = upper - p
        if headroom <= 0.0:
            status[i] = _ABOVE
            continue
        if time_value < -tv_floor:
            status[i] = _BELOW
            continue
        if time_value <= tv_floor:
            status[i] = _NO_TV
            continue
        norm = math.sqrt(s_fwd) * math.sqrt(k_disc)
        beta = time_value / norm
        c_star = headroom / norm
        if not (beta > 0.0 and c_star > 0.0):
            status[i] = _NO_TV
            continue
        x_otm = -abs(x)
        b_max = math.exp(0.5 * x_otm)
        sinh_half_x = math.sinh(0.5 * x_otm)
        s, mode, s_left, s_right = _initial_guess(beta, c_star, x_otm, b_max, sinh_half_x)
        s, converged = _refine(
            beta, c_star, x_otm, b_max, sinh_half_x, s, mode, s_left, s_right, max_iter
        )
        if not (s > 0.0 and math.isfinite(s)):
            status[i] = _NO_CONV
            continue
        sqrt_t = math.sqrt(T)
        sigma = s / sqrt_t
        d1 = x / s + 0.5 * s
        d2 = d1 - s
        pdf1 = _INV_SQRT_2PI * math.exp(-0.5 * d1 * d1)
        vega_raw = s_fwd * pdf1 * sqrt_t
        if beta > 0.5 * b_max:
            # The upper-branch objective works off (upper - price), so that subtraction's
            # rounding also feeds into the solution.
            noise_scale = max(noise_scale, upper)
        if 4.0 * _DBL_EPS * noise_scale > IV_IDENTIFIABILITY_RTOL * sigma * vega_raw:
            status[i] = _NO_TV
            continue
        if not converged:
            status[i] = _NO_CONV
            continue
        # phi(d2) = phi(d1) e^x; both N() come from erfcx and these densities.
        if pdf1 > 1e-280:
            pdf2 = pdf1 * (s_fwd / k_disc)
        else:
            pdf2 = _INV_SQRT_2PI * math.exp(-0.5 * d2 * d2)
        nd1 = _norm_cdf_from_pdf(cp_sign * d1, pdf1)
        nd2 = _norm_cdf_from_pdf(cp_sign * d2, pdf2)
        out[0, i] = sigma
        out[1, i] = cp_sign * df_q * nd1
        out[2, i] = df_q * pdf1 / (S * s)
        out[3, i] = (
            -s_fwd * pdf1 * s / (2.0 * T) + cp_sign * (q * s_fwd * nd1 - r * k_disc * nd2)
        ) / DAYS_PER_YEAR
        out[4, i] = vega_raw * 0.01
        out[5, i] = cp_sign * T * k_disc * nd2 * 0.01
        status[i] = _OK


# ---------------------------------------------------------------------------------------------


def _column(values: Any, name: str) -> np.ndarray:
    if isinstance(values, pd.Series | pd.Index):
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        arr = np.asarray(values, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return np.ascontiguousarray(arr.reshape(-1))


def _call_flags(values: Any) -> np.ndarray:
    """int8 per row: 1 call, 0 put, -1 missing (which the kernel reports as bad input)."""
    arr = values.to_numpy() if isinstance(values, pd.Series | pd.Index) else np.asarray(values)
    if arr.ndim > 1:
        raise ValueError(f"is_call must be one-dimensional, got shape {arr.shape}")
    arr = arr.reshape(-1)
    if arr.dtype == np.bool_:
        return arr.astype(np.int8)
    missing = pd.isna(arr)
    present = arr[~missing]
    if arr.dtype.kind not in "biuf" and not all(
        isinstance(v, bool | np.bool_ | int | np.integer) for v in present
    ):
        raise TypeError(f"is_call must be boolean, got values of dtype {arr.dtype}")
    flags = np.full(arr.shape, -1, dtype=np.int8)
    flags[~missing] = present.astype(bool)
    return flags


def implied_vol_and_greeks(
    price: np.ndarray | pd.Series,
    spot: np.ndarray | pd.Series | float,
    strike: np.ndarray | pd.Series | float,
    t_years: np.ndarray | pd.Series | float,
    rate: np.ndarray | pd.Series | float,
    div_yield: np.ndarray | pd.Series | float,
    is_call: np.ndarray | pd.Series | bool,
    *,
    max_iterations: int = MAX_ITERATIONS,
) -> pd.DataFrame:
    """Black-Scholes-Merton implied volatility and Greeks, one row per input row.

    Inputs are matched by position (never aligned on a pandas index); every argument other than
    `price` may also be a scalar. The result has columns `iv, delta, gamma, theta, vega, rho`
    (float64) and `iv_status` (str, one of `IV_STATUSES`), the price's index if `price` is a
    Series, else a RangeIndex. Conventions: continuous dividend yield; theta is the change in
    value per calendar day (t / 365, negative for a typical long option); vega per 1 vol point
    (dV/dsigma / 100); rho per 1% of rate (dV/dr / 100). Greeks are evaluated at the solved IV;
    wherever `iv_status != "ok"` every float column is NaN. `is_call` is boolean; a missing
    flag (None/NA/NaN) makes that row `bad_input`. `max_iterations` is the per-row solver budget
    (two Householder steps suffice in practice; rows still unsolved are `no_convergence`).
    """
    p = _column(price, "price")
    n = p.shape[0]
    args = {
        "spot": _column(spot, "spot"),
        "strike": _column(strike, "strike"),
        "t_years": _column(t_years, "t_years"),
        "rate": _column(rate, "rate"),
        "div_yield": _column(div_yield, "div_yield"),
    }
    call = _call_flags(is_call)
    for name, arr in (*args.items(), ("is_call", call)):
        if arr.shape[0] not in (1, n):
            raise ValueError(f"{name} has length {arr.shape[0]}, expected {n} (or a scalar)")
    out = np.empty((len(GREEK_COLUMNS), n), dtype=np.float64)
    codes = np.empty(n, dtype=np.int8)
    if n:
        _iv_greeks_kernel(p, *args.values(), call, int(max_iterations), out, codes)
    index = price.index if isinstance(price, pd.Series) else None
    frame = pd.DataFrame(out.T, columns=list(GREEK_COLUMNS), index=index, copy=False)
    status = _STATUS_ARROW.take(pa.array(codes, type=pa.int8()))
    frame["iv_status"] = pd.Series(status, index=frame.index, dtype=_STR_DTYPE, copy=False)
    return frame
