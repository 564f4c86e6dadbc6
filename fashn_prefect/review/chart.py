"""The audit chart: cumulative credits charged over time, one line per model (matplotlib)."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

UNEXPLAINED_COLOR = "#d4007a"
"""The colour of the unexplained balance movement (no model line uses it)."""


def spend_chart(
    points: Iterable[Mapping[str, Any]],
    title: str,
    unexplained: Iterable[Mapping[str, Any]] = (),
) -> bytes:
    """Render charges ``[{"time": datetime, "model_name": str, "credits": int}, ...]`` as a
    PNG of cumulative credits over time by model, plus the total; return the PNG bytes.
    ``unexplained`` (``[{"time": datetime, "credits": int}, ...]``, signed: a run's balance
    movement that its rows do not explain) is drawn as its own cumulative line.

    Cumulative step lines read the same for a ten-minute run and for a year of nightly
    runs: the slope is the spend rate, a jump is a big run. An empty input still yields a
    valid chart saying there was no spend. Uses the Agg backend (no display needed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    by_model: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for point in points:
        if point.get("time") is None or not point.get("credits"):
            continue
        by_model[str(point["model_name"])].append((point["time"], float(point["credits"])))
    figure = Figure(figsize=(9, 4.5), dpi=100)
    axes = figure.subplots()
    everything: list[tuple[datetime, float]] = []
    for model in sorted(by_model, key=lambda m: -sum(c for _, c in by_model[m])):
        series = sorted(by_model[model])
        everything += series
        times, totals = _cumulative(series)
        axes.step(cast(Any, times), totals, where="post", label=f"{model} ({totals[-1]:g})")
    lost = sorted(
        (p["time"], float(p["credits"])) for p in unexplained if p.get("time") and p["credits"]
    )
    lowest = 0.0
    if lost:
        times, totals = _cumulative(lost)
        lowest = min(totals)
        axes.step(
            cast(Any, times),
            totals,
            where="post",
            color=UNEXPLAINED_COLOR,
            linewidth=2.5,
            marker="o",
            label=f"unexplained balance movement ({totals[-1]:+g})",
        )
    if everything:
        times, totals = _cumulative(sorted(everything))
        axes.step(
            cast(Any, times),
            totals,
            where="post",
            color="black",
            linestyle="--",
            linewidth=1.2,
            label=f"all models ({totals[-1]:g})",
        )
    if everything or lost:
        locator = mdates.AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        axes.legend(
            title="model (credits)", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0)
        )
    else:
        axes.text(0.5, 0.5, "no credits charged", ha="center", va="center")
    axes.set_title(title)
    axes.set_xlabel("time (UTC)")
    axes.set_ylabel("credits charged (cumulative)")
    axes.grid(alpha=0.3)
    axes.set_ylim(bottom=min(0.0, lowest * 1.1))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _cumulative(series: list[tuple[datetime, float]]) -> tuple[list[datetime], list[float]]:
    times, totals, running = [], [], 0.0
    for time, credits in series:
        running += credits
        times.append(time)
        totals.append(running)
    return times, totals
