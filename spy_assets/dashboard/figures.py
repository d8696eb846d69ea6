"""Plotly figures of the dashboard's pages, built from the frames of ``queries``.

Times are shown as New York wall time. Scan events are rectangles in the layout's ``shapes``
named :data:`EVENT_SHAPE`, so a reader (or a test) can count them apart from other shapes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from spy_assets.analytics.scanner import ScanReport
from spy_assets.dashboard.queries import ContractView, SessionView, to_et

EVENT_SHAPE = "scan event"
CALL_COLOR, PUT_COLOR, SPOT_COLOR = "#2e7d32", "#c62828", "#1f77b4"
_LAYOUT = {
    "margin": {"l": 60, "r": 20, "t": 40, "b": 30},
    "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    "hovermode": "x unified",
}


def _stacked(heights: list[float], titles: list[str], spacing: float) -> dict[str, object]:
    """Layout axes for rows stacked top to bottom that share one time axis: row ``i`` (from
    1) plots on ``y``, ``y2``, … and every row on ``x``, drawn under the bottom row."""
    free = 1.0 - spacing * (len(heights) - 1)
    total = sum(heights)
    axes: dict[str, object] = {}
    top = 1.0
    for i, (height, title) in enumerate(zip(heights, titles, strict=True), start=1):
        bottom = max(0.0, top - free * height / total)
        axes["yaxis" if i == 1 else f"yaxis{i}"] = {
            "domain": [bottom, top],
            "anchor": "x",
            "title": {"text": title},
        }
        top = bottom - spacing
    axes["xaxis"] = {"anchor": f"y{len(heights)}" if len(heights) > 1 else "y", "domain": [0, 1]}
    return axes


def _line(x: object, y: object, name: str, axis: str = "y", **style: object) -> dict:
    trace = {"type": "scatter", "mode": "lines", "x": x, "y": y, "name": name, "yaxis": axis}
    trace.update(style)
    return trace


def _array(values: pd.Series) -> np.ndarray:
    return values.to_numpy()


def session_figure(view: SessionView) -> go.Figure:
    """The underlying's closes with the open marked and each picked strike as a line (calls
    above, puts below the open); VIX below. Traces: close, open, one per strike, VIX."""
    has_vix = view.vix is not None and not view.vix.empty
    x = to_et(view.spot["timestamp"])
    traces = [
        _line(
            _array(x),
            _array(view.spot["close"]),
            f"{view.underlying} close",
            line={"color": SPOT_COLOR, "width": 1.6},
        ),
        {
            "type": "scatter",
            "mode": "markers+text",
            "x": [to_et(pd.Series([view.open_time])).iloc[0]],
            "y": [view.open_price],
            "name": f"open {view.open_price:.2f}",
            "text": ["open"],
            "textposition": "top center",
            "marker": {"symbol": "diamond", "size": 11, "color": "black"},
        },
    ]
    span = [x.iloc[0], x.iloc[-1]]
    for strike in view.strikes.itertuples(index=False):
        call = strike.contract_type == "call"
        traces.append(
            _line(
                span,
                [strike.strike, strike.strike],
                f"{'C' if call else 'P'} {strike.strike:g}",
                line={"color": CALL_COLOR if call else PUT_COLOR, "dash": "dash", "width": 1},
                hovertext=strike.contract,
            )
        )
    heights, titles = [1.0], [view.underlying]
    if has_vix:
        traces.append(
            _line(
                _array(to_et(view.vix["timestamp"])),
                _array(view.vix["close"]),
                "VIX",
                axis="y2",
                line={"color": "#6a1b9a", "width": 1.2},
            )
        )
        heights, titles = [0.72, 0.28], [view.underlying, "VIX"]
    layout = {**_LAYOUT, **_stacked(heights, titles, 0.06), "height": 560 if has_vix else 420}
    return go.Figure({"data": traces, "layout": layout})


def contract_figure(view: ContractView) -> go.Figure:
    """Closes with each scan event shaded from trigger to end and its peak marked, the running
    session low (the scan's reference) and the trigger level above it; then IV (with the
    minutes whose IV is NaN marked by ``iv_status``), delta, gamma and theta."""
    bars, events = view.bars, view.events
    x = _array(to_et(bars["timestamp"]))
    low = _array(bars["running_low"])
    traces = [
        _line(x, _array(bars["close"]), "close", line={"color": SPOT_COLOR}),
        _line(
            x,
            low,
            "running session low (reference)",
            line={"color": "#555555", "dash": "dot", "width": 1.2, "shape": "hv"},
        ),
        _line(
            x,
            low * (1 + view.threshold),
            f"trigger level (+{view.threshold * 100:g}%)",
            line={"color": "#ef6c00", "dash": "dash", "width": 1, "shape": "hv"},
        ),
    ]
    if len(events):
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": _array(to_et(events["peak_time"])),
                "y": _array(events["peak_price"]),
                "name": "event peak",
                "marker": {"symbol": "triangle-up", "size": 10, "color": "#d81b60"},
            }
        )
    shapes = [
        {
            "type": "rect",
            "name": EVENT_SHAPE,
            "xref": "x",
            "yref": "y domain",
            "x0": start,
            "x1": end,
            "y0": 0,
            "y1": 1,
            "fillcolor": "#ffb300",
            "opacity": 0.22,
            "line": {"width": 0},
            "layer": "below",
        }
        for start, end in zip(to_et(events["trigger_time"]), to_et(events["end_time"]), strict=True)
    ]
    traces.append(_line(x, _array(bars["iv"]), "IV", axis="y2", line={"color": "#00897b"}))
    missing = bars["iv"].isna().to_numpy()
    if missing.any():
        floor = float(np.nanmin(bars["iv"])) if (~missing).any() else 0.0
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": x[missing],
                "y": np.full(int(missing.sum()), floor),
                "yaxis": "y2",
                "name": "IV NaN (iv_status)",
                "text": _array(bars["iv_status"])[missing],
                "hovertemplate": "%{text}<extra>IV NaN</extra>",
                "marker": {"symbol": "x", "size": 6, "color": "#b71c1c"},
            }
        )
    for axis, column, color in (
        ("y3", "delta", "#3949ab"),
        ("y4", "gamma", "#8e24aa"),
        ("y5", "theta", "#6d4c41"),
    ):
        traces.append(_line(x, _array(bars[column]), column, axis=axis, line={"color": color}))
    layout = {
        **_LAYOUT,
        **_stacked(
            [0.36, 0.16, 0.16, 0.16, 0.16],
            ["close", "IV", "delta", "gamma", "theta (per day)"],
            0.025,
        ),
        "shapes": shapes,
        "height": 860,
    }
    return go.Figure({"data": traces, "layout": layout})


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
