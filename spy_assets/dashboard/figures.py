"""Plotly figures of the dashboard's pages, built from the frames of ``queries``.

Times are shown as New York wall time. Scan events are rectangles in the layout's ``shapes``
named :data:`EVENT_SHAPE`, so a reader (or a test) can count them apart from other shapes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from spy_assets.analytics.scanner import ScanReport
from spy_assets.dashboard.queries import ContractView, SessionView, to_et

EVENT_SHAPE = "scan event"
CALL_COLOR, PUT_COLOR, SPOT_COLOR = "#2e7d32", "#c62828", "#1f77b4"
_LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 40, "b": 30},
    "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    "hovermode": "x unified",
}


def session_figure(view: SessionView) -> go.Figure:
    """The underlying's closes with the open marked and each picked strike as a line (calls
    above, puts below the open); VIX below. Traces: close, open, one per strike, VIX."""
    has_vix = view.vix is not None and not view.vix.empty
    rows = 2 if has_vix else 1
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        row_heights=[0.72, 0.28] if has_vix else [1.0],
    )
    x = to_et(view.spot["timestamp"])
    fig.add_trace(
        go.Scatter(
            x=x,
            y=view.spot["close"],
            mode="lines",
            name=f"{view.underlying} close",
            line={"color": SPOT_COLOR, "width": 1.6},
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=[to_et(pd.Series([view.open_time])).iloc[0]],
            y=[view.open_price],
            mode="markers+text",
            name=f"open {view.open_price:.2f}",
            text=["open"],
            textposition="top center",
            marker={"symbol": "diamond", "size": 11, "color": "black"},
        ),
        row=1,
        col=1,
    )
    span = [x.iloc[0], x.iloc[-1]]
    for strike in view.strikes.itertuples(index=False):
        call = strike.contract_type == "call"
        fig.add_trace(
            go.Scatter(
                x=span,
                y=[strike.strike, strike.strike],
                mode="lines",
                name=f"{'C' if call else 'P'} {strike.strike:g}",
                line={"color": CALL_COLOR if call else PUT_COLOR, "dash": "dash", "width": 1},
                hovertext=strike.contract,
            ),
            row=1,
            col=1,
        )
    if has_vix:
        fig.add_trace(
            go.Scatter(
                x=to_et(view.vix["timestamp"]),
                y=view.vix["close"],
                mode="lines",
                name="VIX",
                line={"color": "#6a1b9a", "width": 1.2},
            ),
            row=2,
            col=1,
        )
        fig.update_yaxes(title_text="VIX", row=2, col=1)
    fig.update_yaxes(title_text=view.underlying, row=1, col=1)
    fig.update_layout(height=560 if has_vix else 420, **_LAYOUT)
    return fig


def contract_figure(view: ContractView) -> go.Figure:
    """Closes with each scan event shaded from trigger to end and its peak marked, the running
    session low (the scan's reference) and the trigger level above it; then IV (with the
    minutes whose IV is NaN marked by ``iv_status``), delta, gamma and theta."""
    bars, events = view.bars, view.events
    x = to_et(bars["timestamp"])
    titles = ("close", "IV", "delta", "gamma", "theta (per day)")
    fig = make_subplots(
        rows=5,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.025,
        row_heights=[0.36, 0.16, 0.16, 0.16, 0.16],
    )
    fig.add_trace(
        go.Scatter(x=x, y=bars["close"], mode="lines", name="close", line={"color": SPOT_COLOR}),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=bars["running_low"],
            mode="lines",
            name="running session low (reference)",
            line={"color": "#555555", "dash": "dot", "width": 1.2},
            line_shape="hv",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=bars["running_low"] * (1 + view.threshold),
            mode="lines",
            name=f"trigger level (+{view.threshold * 100:g}%)",
            line={"color": "#ef6c00", "dash": "dash", "width": 1},
            line_shape="hv",
        ),
        row=1,
        col=1,
    )
    if len(events):
        fig.add_trace(
            go.Scatter(
                x=to_et(events["peak_time"]),
                y=events["peak_price"],
                mode="markers",
                name="event peak",
                marker={"symbol": "triangle-up", "size": 10, "color": "#d81b60"},
            ),
            row=1,
            col=1,
        )
    for start, end in zip(to_et(events["trigger_time"]), to_et(events["end_time"]), strict=True):
        fig.add_vrect(
            x0=start,
            x1=end,
            fillcolor="#ffb300",
            opacity=0.22,
            line_width=0,
            layer="below",
            name=EVENT_SHAPE,
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(x=x, y=bars["iv"], mode="lines", name="IV", line={"color": "#00897b"}),
        row=2,
        col=1,
    )
    missing = bars["iv"].isna().to_numpy()
    if missing.any():
        floor = float(np.nanmin(bars["iv"])) if (~missing).any() else 0.0
        fig.add_trace(
            go.Scatter(
                x=x[missing],
                y=np.full(int(missing.sum()), floor),
                mode="markers",
                name="IV NaN (iv_status)",
                text=bars["iv_status"][missing],
                hovertemplate="%{text}<extra>IV NaN</extra>",
                marker={"symbol": "x", "size": 6, "color": "#b71c1c"},
            ),
            row=2,
            col=1,
        )
    greeks = ((3, "delta", "#3949ab"), (4, "gamma", "#8e24aa"), (5, "theta", "#6d4c41"))
    for row, column, color in greeks:
        fig.add_trace(
            go.Scatter(x=x, y=bars[column], mode="lines", name=column, line={"color": color}),
            row=row,
            col=1,
        )
    for row, title in enumerate(titles, start=1):
        fig.update_yaxes(title_text=title, row=row, col=1)
    fig.update_layout(height=860, **_LAYOUT)
    return fig


def trigger_hours_figure(report: ScanReport) -> go.Figure:
    """Events per trigger hour of day (New York time), from the report itself."""
    hours = sorted(report.trigger_hours_et)
    fig = go.Figure(
        go.Bar(
            x=[f"{h:02d}:00" for h in hours],
            y=[report.trigger_hours_et[h] for h in hours],
            name="events",
            marker_color="#1f77b4",
        )
    )
    fig.update_layout(
        title="Trigger hour of day (ET)",
        xaxis_title="hour (ET)",
        yaxis_title="events",
        height=320,
        **{k: v for k, v in _LAYOUT.items() if k != "hovermode"},
    )
    return fig


def durations_figure(events: pd.DataFrame) -> go.Figure:
    """The distribution of event durations in wall minutes."""
    fig = go.Figure(
        go.Histogram(x=events["run_minutes"], nbinsx=40, name="events", marker_color="#ef6c00")
    )
    fig.update_layout(
        title="Event duration (wall minutes)",
        xaxis_title="minutes",
        yaxis_title="events",
        height=320,
        **{k: v for k, v in _LAYOUT.items() if k != "hovermode"},
    )
    return fig
