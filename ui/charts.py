"""Altair charts for the pages (presentation only; the numbers come from imgrec)."""

from __future__ import annotations

import altair as alt
import pandas as pd

# The app's two chart colours: the main series, and the one set against it.
PRIMARY = "#2563eb"
SECONDARY = "#f59e0b"
CONFIDENT, UNCERTAIN = PRIMARY, SECONDARY


def top_k_bars(predictions, calibrated: list[float], threshold: float) -> alt.Chart:
    """Horizontal bars, best first: each prediction's calibrated score (what the verdict judges), coloured by
    whether it clears the uncertainty threshold; the tooltip adds the model's raw score."""
    frame = pd.DataFrame({"label": [p.label for p in predictions], "score": calibrated,
                          "raw": [p.score for p in predictions]})
    frame["verdict"] = ["confident" if s >= threshold else "below threshold" for s in frame["score"]]
    title = "confidence (calibrated)"
    tooltip = [alt.Tooltip("label:N"), alt.Tooltip("score:Q", format=".2%", title=title),
               alt.Tooltip("raw:Q", format=".2%", title="model's score")]
    base = alt.Chart(frame).encode(
        y=alt.Y("label:N", sort=list(frame["label"]), title=None, axis=alt.Axis(labelLimit=220, labelOverlap=False)),
        x=alt.X("score:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title=title),
        tooltip=tooltip,
    )
    bars = base.mark_bar(cornerRadiusEnd=3).encode(
        color=alt.Color(
            "verdict:N",
            scale=alt.Scale(domain=["confident", "below threshold"], range=[CONFIDENT, UNCERTAIN]),
            legend=None,
        )
    )
    labels = base.mark_text(align="left", dx=4, color="#374151").encode(text=alt.Text("score:Q", format=".1%"))
    rule = alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(strokeDash=[4, 3], color="#9ca3af").encode(
        x="threshold:Q"
    )
    return (bars + labels + rule).properties(height=alt.Step(30))


def curves(frame: pd.DataFrame, x: str, y: str, color: str, title: str) -> alt.Chart:
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X(f"{x}:Q", axis=alt.Axis(format="%"), title="fraction of pixels"),
            y=alt.Y(f"{y}:Q", scale=alt.Scale(domain=[0, 1]), title="class score"),
            color=alt.Color(f"{color}:N", title=None),
        )
        .properties(title=title, height=220)
    )
