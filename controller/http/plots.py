"""Inline SVG plots, rendered on the server (the dashboard loads nothing from anywhere else).

Every text that goes into an SVG is escaped here; the results are ``Markup`` for the templates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 560, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 22, 26
COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea")


@dataclass(frozen=True)
class Line:
    label: str
    points: Sequence[tuple[float, float]]  # (x, y), x in ms since the epoch


@dataclass(frozen=True)
class Band:
    """A shaded interval around a line: (x, low, high)."""

    label: str
    points: Sequence[tuple[float, float, float]]


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _clock(ms: float) -> str:
    return time.strftime("%H:%M", time.gmtime(ms / 1000.0))


def line_chart(
    title: str,
    lines: Sequence[Line],
    x_range: tuple[float, float],
    *,
    band: Band | None = None,
    y_range: tuple[float, float] | None = None,
    unit: str = "",
    threshold: tuple[float, str] | None = None,
) -> Markup:
    """Lines over time (and an optional band and a dashed threshold line); 'no data' when
    there is nothing to draw. The y axis reaches at least to the threshold."""
    ys = [y for line in lines for _, y in line.points]
    if band is not None:
        ys += [v for _, lo, hi in band.points for v in (lo, hi)]
    x0, x1 = x_range
    if y_range is not None:
        y0, y1 = y_range
    elif ys:
        y0, y1 = min(0.0, min(ys)), max(ys) * 1.1 or 1.0
        if threshold is not None:
            y1 = max(y1, threshold[0] * 1.2)
    else:
        y0, y1 = 0.0, 1.0
    if y1 <= y0:
        y1 = y0 + 1.0
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x0) / max(1e-9, x1 - x0) * pw

    def sy(y: float) -> float:
        return TOP + ph - (min(max(y, y0), y1) - y0) / (y1 - y0) * ph

    parts = [_frame(title, unit, y0, y1, x0, x1)]
    if band is not None and band.points:
        upper = " ".join(f"{sx(x):.1f},{sy(hi):.1f}" for x, _, hi in band.points)
        lower = " ".join(f"{sx(x):.1f},{sy(lo):.1f}" for x, lo, _ in reversed(band.points))
        parts.append(
            f'<polygon class="band" points="{upper} {lower}" fill="#93c5fd" '
            f'fill-opacity="0.45"><title>{escape(band.label)}</title></polygon>'
        )
    if threshold is not None and y0 <= threshold[0] <= y1:
        ty = sy(threshold[0])
        parts.append(
            f'<line class="threshold" x1="{LEFT}" y1="{ty:.1f}" x2="{WIDTH - RIGHT}" '
            f'y2="{ty:.1f}" stroke="#f59e0b" stroke-dasharray="4 3"/>'
            f'<text x="{WIDTH - RIGHT - 4}" y="{ty - 3:.1f}" font-size="10" fill="#b45309" '
            f'text-anchor="end">{escape(threshold[1])}</text>'
        )
    for i, line in enumerate(lines):
        colour = COLOURS[i % len(COLOURS)]
        if not line.points:
            continue
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line.points)
        parts.append(
            f'<polyline class="series" points="{coords}" fill="none" stroke="{colour}" '
            f'stroke-width="1.8"><title>{escape(line.label)}</title></polyline>'
        )
        if len(line.points) == 1:
            x, y = line.points[0]
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>')
        parts.append(
            f'<text x="{LEFT + 8 + 120 * i}" y="{TOP + 12}" fill="{colour}" '
            f'font-size="11">{escape(line.label)}</text>'
        )
    if not ys:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#6b7280" '
            f'font-size="12">no data in this window</text>'
        )
    return _svg(title, parts)


def histogram_chart(
    title: str,
    observed: Sequence[tuple[float, float]],
    baseline: Sequence[tuple[float, float]] = (),
    *,
    lower: float = 0.0,
) -> Markup:
    """Shares per bucket (upper bound, share) as bars; the baseline as a stepped line."""
    bounds = sorted({b for b, _ in observed} | {b for b, _ in baseline})
    top = max([s for _, s in observed] + [s for _, s in baseline] + [0.01]) * 1.1
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [_frame(title, "share", 0.0, top, None, None)]
    if not bounds:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#6b7280" '
            f'font-size="12">no data in this window</text>'
        )
        return _svg(title, parts)
    slot = pw / len(bounds)
    seen = dict(observed)
    for i, bound in enumerate(bounds):
        share = seen.get(bound, 0.0)
        h = share / top * ph
        parts.append(
            f'<rect class="bar" x="{LEFT + i * slot + 1:.1f}" y="{TOP + ph - h:.1f}" '
            f'width="{max(1.0, slot - 2):.1f}" height="{h:.1f}" fill="#2563eb">'
            f"<title>&lt;= {_fmt(bound)}: {share:.1%}</title></rect>"
        )
    if baseline:
        base = dict(baseline)
        steps = []
        for i, bound in enumerate(bounds):
            y = TOP + ph - base.get(bound, 0.0) / top * ph
            steps += [f"{LEFT + i * slot:.1f},{y:.1f}", f"{LEFT + (i + 1) * slot:.1f},{y:.1f}"]
        parts.append(
            f'<polyline class="baseline" points="{" ".join(steps)}" fill="none" '
            f'stroke="#dc2626" stroke-width="1.8"><title>baseline</title></polyline>'
        )
        parts.append(
            f'<text x="{LEFT + 8}" y="{TOP + 12}" fill="#dc2626" font-size="11">'
            f"baseline (validation)</text>"
        )
    parts.append(
        f'<text x="{LEFT}" y="{HEIGHT - 6}" font-size="10" fill="#374151">{_fmt(lower)}</text>'
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" font-size="10" fill="#374151" '
        f'text-anchor="end">{_fmt(bounds[-1] if bounds[-1] != float("inf") else 1.0)}</text>'
    )
    return _svg(title, parts)


def _frame(title: str, unit: str, y0: float, y1: float, x0: float | None, x1: float | None) -> str:
    ph = HEIGHT - TOP - BOTTOM
    out = [
        f'<text x="{LEFT}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" stroke="#9ca3af"/>',
        f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{WIDTH - RIGHT}" y2="{TOP + ph}" '
        f'stroke="#9ca3af"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 8}" font-size="10" text-anchor="end">{_fmt(y1)}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + ph}" font-size="10" text-anchor="end">{_fmt(y0)}</text>',
        f'<text x="4" y="{TOP + ph / 2}" font-size="10">{escape(unit)}</text>',
    ]
    if x0 is not None and x1 is not None:
        out.append(
            f'<text x="{LEFT}" y="{HEIGHT - 6}" font-size="10">{_clock(x0)} UTC</text>'
            f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" font-size="10" text-anchor="end">'
            f"{_clock(x1)}</text>"
        )
    return "".join(out)


def _svg(title: str, parts: list[str]) -> Markup:
    return Markup(
        f'<svg class="plot" role="img" aria-label="{escape(title)}" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(parts)
        + "</svg>"
    )
