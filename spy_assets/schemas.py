"""Pandera schemas, one per dataset, and a validator that says which rows broke which rule."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaError, SchemaErrors

from spy_assets import calendar

_PRICE = pa.Check.gt(0, error="price must be positive")


def _in_window(lo: pd.Timestamp, hi: pd.Timestamp) -> pa.Check:
    return pa.Check(
        lambda s: (s >= lo) & (s < hi),
        element_wise=False,
        error=f"timestamp outside the session [{lo:%Y-%m-%d %H:%M}, {hi:%H:%M}) UTC",
        name="inside_session",
    )


def _bar_checks() -> list[pa.Check]:
    return [
        pa.Check(
            lambda df: df["high"] >= df[["open", "close"]].max(axis=1),
            name="high_ge_open_close",
            error="high < max(open, close)",
        ),
        pa.Check(
            lambda df: df["low"] <= df[["open", "close"]].min(axis=1),
            name="low_le_open_close",
            error="low > min(open, close)",
        ),
    ]


def minute_bars_schema(
    session: dt.date,
    with_ticker: bool = True,
    trades: bool = True,
    key: tuple[str, ...] = ("ticker", "timestamp"),
) -> pa.DataFrameSchema:
    """Bars of the regular session: positive prices, coherent high/low, unique key."""
    lo, hi = calendar.session_open(session), calendar.session_close(session)
    columns: dict[str, pa.Column] = {
        "timestamp": pa.Column("datetime64[ms, UTC]", _in_window(lo, hi)),
        "open": pa.Column(float, _PRICE),
        "high": pa.Column(float, _PRICE),
        "low": pa.Column(float, _PRICE),
        "close": pa.Column(float, _PRICE),
    }
    if with_ticker:
        columns = {"ticker": pa.Column(str), **columns}
    if "contract" in key:
        columns = {"contract": pa.Column(str, pa.Check.str_startswith("O:")), **columns}
    if trades:
        columns.update(
            volume=pa.Column(float, pa.Check.ge(0)),
            vwap=pa.Column(float, _PRICE, nullable=True),
            transactions=pa.Column("int64", pa.Check.ge(0)),
        )
    return pa.DataFrameSchema(columns, checks=_bar_checks(), unique=list(key), strict=False)


def option_bars_schema(session: dt.date) -> pa.DataFrameSchema:
    return minute_bars_schema(session, with_ticker=False, key=("contract", "timestamp"))


def vix_bars_schema(session: dt.date) -> pa.DataFrameSchema:
    return minute_bars_schema(session, with_ticker=False, trades=False, key=("timestamp",))


def option_contracts_schema(session: dt.date) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "contract": pa.Column(str, pa.Check.str_matches(r"^O:[A-Z0-9.]+\d{6}[CP]\d{8}$")),
            "underlying": pa.Column(str),
            "contract_type": pa.Column(str, pa.Check.isin(["call", "put"])),
            "strike": pa.Column(float, _PRICE),
            "expiration": pa.Column(
                object,
                pa.Check(
                    lambda v: isinstance(v, dt.date) and v >= session,
                    element_wise=True,
                    error="expiration must be a date on or after the session",
                ),
            ),
            "underlying_open": pa.Column(float, _PRICE),
        },
        unique=["contract"],
        strict=False,
    )


def news_schema(session: dt.date) -> pa.DataFrameSchema:
    lo = calendar.session_close(calendar.previous_session(session))
    hi = calendar.session_close(session)
    return pa.DataFrameSchema(
        {
            "article_id": pa.Column(str),
            "published_utc": pa.Column("datetime64[ms, UTC]", _in_window(lo, hi)),
            "title": pa.Column(str),
            "tickers": pa.Column(str),
            "sentiment_json": pa.Column(str),
        },
        unique=["article_id"],
        strict=False,
    )


@dataclass(frozen=True)
class Validation:
    """The outcome of a schema run: passed, and if not, the failing rows and rules."""

    passed: bool
    rows: int
    failures: pd.DataFrame  # columns: column, check, row, failure_case

    @property
    def failing_rows(self) -> int:
        return int(self.failures["row"].nunique()) if len(self.failures) else 0

    def rules(self) -> list[str]:
        return sorted(self.failures["check"].astype(str).unique()) if len(self.failures) else []

    def to_markdown(self, limit: int = 20) -> str:
        if self.passed:
            return "all rows pass"
        shown = self.failures.head(limit)
        lines = ["| row | column | rule | value |", "|---:|---|---|---|"]
        for rec in shown.itertuples(index=False):
            lines.append(f"| {rec.row} | {rec.column} | {rec.check} | {rec.failure_case} |")
        if len(self.failures) > limit:
            lines.append(f"| … | | {len(self.failures) - limit} more failures | |")
        return "\n".join(lines)


def _fold(group: pd.DataFrame) -> pd.Series:
    if len(group) == 1:
        return pd.Series(
            {"column": group["column"].iloc[0], "failure_case": str(group["failure_case"].iloc[0])}
        )
    values = ", ".join(
        f"{c}={v}" for c, v in zip(group["column"], group["failure_case"], strict=True)
    )
    return pd.Series({"column": "(row)", "failure_case": values})


def validate(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> Validation:
    """Run a schema lazily (every rule on every row) and collect the failures."""
    try:
        schema.validate(frame.reset_index(drop=True), lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases.assign(
            column=lambda c: c["column"].astype(str), check=lambda c: c["check"].astype(str)
        )
        # A frame-wide rule reports every column of a failing row: fold them into one line.
        grouped = cases.groupby(["index", "check"], dropna=False, sort=False)
        failures = grouped.apply(_fold, include_groups=False).reset_index()
        failures = failures.rename(columns={"index": "row"})
        failures = failures[["row", "column", "check", "failure_case"]]
        return Validation(False, len(frame), failures.reset_index(drop=True))
    except SchemaError as exc:  # pragma: no cover - lazy=True reports through SchemaErrors
        failures = pd.DataFrame(
            {
                "column": [str(exc.schema.name)],
                "check": [str(exc)],
                "row": [None],
                "failure_case": [""],
            }
        )
        return Validation(False, len(frame), failures)
    return Validation(
        True, len(frame), pd.DataFrame(columns=["column", "check", "row", "failure_case"])
    )


def features_schema(session: dt.date) -> pa.DataFrameSchema:
    """Feature rows: one per option bar, IV non-negative or NaN with a reason, |delta| ≤ 1."""
    from spy_assets.analytics.greeks import IV_STATUSES

    lo, hi = calendar.session_open(session), calendar.session_close(session)
    return pa.DataFrameSchema(
        {
            "contract": pa.Column(str, pa.Check.str_startswith("O:")),
            "timestamp": pa.Column("datetime64[ms, UTC]", _in_window(lo, hi)),
            "close": pa.Column(float, _PRICE),
            "spot_close": pa.Column(float, _PRICE, nullable=True),
            "iv": pa.Column(float, pa.Check.ge(0), nullable=True),
            "delta": pa.Column(float, pa.Check.in_range(-1.0, 1.0), nullable=True),
            "iv_status": pa.Column(str, pa.Check.isin(list(IV_STATUSES))),
        },
        checks=[
            pa.Check(
                lambda df: df["iv"].notna() == (df["iv_status"] == "ok"),
                name="iv_nan_iff_flagged",
                error="IV is NaN exactly when flagged",
            )
        ],
        unique=["contract", "timestamp"],
        strict=False,
    )


def scan_events_schema(session: dt.date) -> pa.DataFrameSchema:
    lo, hi = calendar.session_open(session), calendar.session_close(session)
    return pa.DataFrameSchema(
        {
            "contract": pa.Column(str),
            "trigger_time": pa.Column("datetime64[ms, UTC]", _in_window(lo, hi)),
            "trigger_price": pa.Column(float, _PRICE),
            "reference_price": pa.Column(float, _PRICE),
            "peak_price": pa.Column(float, _PRICE),
            "run_bars": pa.Column("int64", pa.Check.ge(1)),
            "run_minutes": pa.Column(float, pa.Check.ge(1)),
        },
        checks=[
            pa.Check(
                lambda df: (
                    df["trigger_price"]
                    >= (1 + df["threshold"]) * df["reference_price"] * (1 - 1e-9)
                ),
                name="trigger_meets_threshold",
                error="trigger below (1 + θ) × reference",
            ),
            pa.Check(
                lambda df: df["peak_price"] >= df["trigger_price"],
                name="peak_ge_trigger",
                error="peak below the trigger",
            ),
        ],
        unique=["contract", "trigger_time"],
        strict=False,
    )


def training_data_schema(session: dt.date) -> pa.DataFrameSchema:
    lo, hi = calendar.session_open(session), calendar.session_close(session)
    return pa.DataFrameSchema(
        {
            "contract": pa.Column(str),
            "timestamp": pa.Column("datetime64[ms, UTC]", _in_window(lo, hi)),
            "target_close_5m": pa.Column(float, _PRICE, nullable=True),
            "target_close_15m": pa.Column(float, _PRICE, nullable=True),
            "target_close_30m": pa.Column(float, _PRICE, nullable=True),
            "target_max_return_30m": pa.Column(float, pa.Check.ge(-1.0), nullable=True),
        },
        unique=["contract", "timestamp"],
        strict=False,
    )
