"""The live loss chart: train and validation loss per epoch as an inline SVG.

A pure function of plain numbers (no torch, no starlette, no JavaScript).
The LiveHub renders it once per epoch event and pushes the same string to
every browser. Hover tooltips come from SVG `<title>` elements: one invisible
column per plotted epoch carries both losses, so the markup grows by one
tooltip per point, not one per point per curve.
"""
from __future__ import annotations

import math
from html import escape
from typing import Sequence

__all__ = ["render_loss_chart", "chart_fragment"]

# Inline colours are presentation attributes, so any stylesheet rule wins over
# them. Classes: .loss-chart (the svg), .grid, .axis, .ticks, .axis-label,
# .legend, .empty; .train / .val on each curve's polyline and legend swatch;
# .hit on the group of invisible hover columns (one per point, each holding
# that point's <title>; app.css tints the hovered column: the chart carries no
# <style> of its own, which the Content-Security-Policy would refuse).
TRAIN_COLOUR = "#2563eb"
VAL_COLOUR = "#ea580c"
WAITING_TEXT = "Waiting for the first epoch…"
# Points per curve before downsampling. Each point costs ~125 bytes (a vertex
# per curve, a hover column and its tooltip text), so 75 keeps the fragment
# under 11 KB however long the run; at 720 units wide that is a vertex every
# ~9 units, plenty for a loss trend. See bench/chart_render.py.
DEFAULT_MAX_POINTS = 75
MARKER_MAX_POINTS = 60  # vertex dots only up to this many points

# Plot margins inside the viewBox: room for tick labels, axis labels, legend.
_LEFT, _RIGHT, _TOP, _BOTTOM = 58.0, 14.0, 26.0, 42.0
# Text baseline offset that centres a label on a y (0.32em at font-size 11), instead of dy on each.
_HALF_CAP = 3.5


def chart_fragment(*args, **kwargs) -> str:
    """The chart (same arguments as render_loss_chart) wrapped in the div that
    htmx swaps by id: it cannot swap elements inside an svg."""
    return f'<div id="loss-chart" class="chart">{render_loss_chart(*args, **kwargs)}</div>'


def render_loss_chart(
    epochs: Sequence[int],
    train: Sequence[float | None],
    val: Sequence[float | None],
    *,
    log_scale: bool = False,
    max_points: int = DEFAULT_MAX_POINTS,
    width: int = 720,
    height: int = 300,
    memorising_from: int | None = None,
) -> str:
    """Return an `<svg>` element plotting train and validation loss against epoch.

    `epochs`, `train` and `val` are parallel sequences. Missing or non-finite
    losses are skipped. More than `max_points` epochs are downsampled (see
    `_downsample`). With `log_scale`, non-positive losses are clamped to the
    smallest positive loss on the chart; if there is none, the chart is linear.
    `memorising_from` marks the epoch where the model began to memorise its files
    (`training.memorisation`) with a labelled vertical line.
    """
    if not (len(epochs) == len(train) == len(val)):
        raise ValueError(
            f"epochs, train and val must have the same length (got {len(epochs)}, {len(train)}, {len(val)})."
        )
    if max_points < 4:
        raise ValueError(f"max_points must be at least 4 (got {max_points}).")
    min_w, min_h = int(2 * (_LEFT + _RIGHT)), int(2 * (_TOP + _BOTTOM))
    if width < min_w or height < min_h:
        raise ValueError(f"The chart needs at least {min_w}x{min_h} units (got {width}x{height}).")

    points = _downsample(*_clean_columns(epochs, train, val), max_points)
    return _Svg(points, log_scale, width, height, memorising_from).render()


# --- data -----------------------------------------------------------------

def _clean_columns(epochs, train, val) -> tuple[list[int], list, list]:
    """(epochs, train, val) as lists, in epoch order, keeping epochs with at least one finite loss.

    A loss that is None, NaN or infinite becomes None. This runs on every
    epoch of the run, so the common case (all losses finite, epochs in order)
    is checked with C-speed sums and sorts rather than a Python loop.
    """
    epochs, train, val = [int(e) for e in epochs], list(train), list(val)
    if not (_all_finite(train) and _all_finite(val)):
        inf = math.inf
        train = [t if t is not None and -inf < t < inf else None for t in train]  # NaN fails both tests
        val = [v if v is not None and -inf < v < inf else None for v in val]
        keep = [i for i in range(len(epochs)) if train[i] is not None or val[i] is not None]
        if len(keep) < len(epochs):
            epochs, train, val = [epochs[i] for i in keep], [train[i] for i in keep], [val[i] for i in keep]
    if epochs != sorted(epochs):
        order = sorted(range(len(epochs)), key=epochs.__getitem__)
        epochs, train, val = [epochs[i] for i in order], [train[i] for i in order], [val[i] for i in order]
    return epochs, train, val


def _all_finite(values: list) -> bool:
    try:
        return math.isfinite(sum(values))  # NaN and inf survive a sum; None raises
    except TypeError:
        return False


class _Point:
    """One plotted epoch (or bucket of epochs): x, both losses, and its tooltip."""

    __slots__ = ("x", "train", "val", "first", "last", "best")

    def __init__(self, x, train, val, first, last, best=False):
        self.x, self.train, self.val = x, train, val
        self.first, self.last, self.best = first, last, best

    def title(self) -> str:
        if self.first == self.last:
            text = f"Epoch {self.first}"
        else:
            text = f"Epochs {self.first}–{self.last} (mean)"
        if self.train is not None:
            text += f" · train {_fmt_loss(self.train)}"
        if self.val is not None:
            text += f" · val {_fmt_loss(self.val)}"
        if self.best:  # the kept extreme: lowest validation, or lowest train without validation
            text += " · lowest val" if self.val is not None else " · lowest train"
        return text


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _downsample(epochs: list[int], train: list, val: list, max_points: int) -> list[_Point]:
    """At most `max_points` points, in epoch order.

    The first and last epochs and the epoch of lowest validation loss (lowest
    train loss when there is no validation) are kept exactly, so the chart's
    ends agree with the stats panel and the best model is never averaged away.
    The other epochs are split into contiguous buckets, each plotted as ONE
    point at its mean epoch with its mean losses. We average rather than keep
    min/max pairs: min/max would double the points (and bytes) and draw
    epoch-to-epoch noise, while a musician watching a long run wants the trend;
    the exact extreme that matters (best validation) is kept as its own point.
    """
    n = len(epochs)
    if n == 0:
        return []
    key = val if any(v is not None for v in val) else train
    best = min((i for i in range(n) if key[i] is not None), key=key.__getitem__)
    if n <= max_points:
        return [_Point(e, t, v, e, e, best=(i == best)) for i, (e, t, v) in enumerate(zip(epochs, train, val))]

    # Row ranges [a, b): the interior (all but first and last) minus `best`, cut
    # into buckets; reserve points for first, last, best, and for the one bucket
    # that `best` splits in two.
    inner = [(1, best), (best + 1, n - 1)] if 0 < best < n - 1 else [(1, n - 1)]
    length = sum(b - a for a, b in inner)
    buckets = max_points - 4
    cuts = sorted({k * length // buckets for k in range(buckets + 1)})
    ranges = [(0, 1), (n - 1, n)] + ([(best, best + 1)] if 0 < best < n - 1 else [])
    offset = 0
    for a, b in inner:  # map cut positions (in interior counting) to row ranges
        local = [c - offset for c in cuts if offset < c < offset + (b - a)]
        edges = [a] + [a + c for c in local] + [b]
        ranges += [(lo, hi) for lo, hi in zip(edges, edges[1:]) if hi > lo]
        offset += b - a
    ranges.sort()

    points = []
    for a, b in ranges:
        if b - a == 1:
            points.append(_Point(epochs[a], train[a], val[a], epochs[a], epochs[a], best=(a == best)))
        else:
            points.append(_Point(
                sum(epochs[a:b]) / (b - a), _mean(train[a:b]), _mean(val[a:b]), epochs[a], epochs[b - 1]
            ))
    return points


# --- scales and ticks -----------------------------------------------------

def _nice_step(span: float, target: int) -> float:
    """The smallest 1-2-5 x 10^k step that splits `span` into at most ~`target` parts."""
    raw = span / max(target, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * magnitude >= raw * (1 - 1e-9):
            return m * magnitude
    return 10 * magnitude  # pragma: no cover (the loop always returns)


def _linear_ticks(lo: float, hi: float, target: int, integer: bool = False):
    """(domain_lo, domain_hi, [(value, label)]) with nice ticks covering [lo, hi]."""
    if hi - lo <= 0:
        pad = 1.0 if integer else (abs(lo) * 0.1 or 1.0)
        lo, hi = lo - pad, hi + pad
    step = _nice_step(hi - lo, target)
    if integer:
        step = max(1.0, step)
    k0 = math.floor(lo / step + 1e-9)
    k1 = math.ceil(hi / step - 1e-9)
    decimals = 0 if integer else max(0, -math.floor(math.log10(step) + 1e-9))
    ticks = [(k * step, f"{k * step:.{decimals}f}") for k in range(k0, k1 + 1)]
    ticks = [(value, "0" if label.lstrip("-").strip("0.") == "" else label) for value, label in ticks]
    return k0 * step, k1 * step, ticks


def _decade_label(d: int) -> str:
    if 0 <= d <= 6:
        return str(10 ** d)
    if -3 <= d < 0:
        return f"{10.0 ** d:.{-d}f}"
    return f"1e{d}"


def _log_ticks(lo: float, hi: float, target: int):
    """(domain_lo, domain_hi, [(value, label)]) in whole decades covering [lo, hi] (both > 0)."""
    d_lo = math.floor(math.log10(lo) + 1e-9)
    d_hi = max(math.ceil(math.log10(hi) - 1e-9), d_lo + 1)
    stride = max(1, math.ceil((d_hi - d_lo) / max(target, 1)))
    d_hi = d_lo + math.ceil((d_hi - d_lo) / stride) * stride
    ticks = [(10.0 ** d, _decade_label(d)) for d in range(d_lo, d_hi + 1, stride)]
    return 10.0 ** d_lo, 10.0 ** d_hi, ticks


def _fmt_loss(value: float) -> str:
    """Tooltip value with 4 significant digits: 0.4321, 1.235, 0.001234, 1.200e-5."""
    text = f"{value:#.4g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def _n(value: float) -> str:
    """A coordinate, rounded to 0.1 (and "12" rather than "12.0") to keep bytes low."""
    return ("%.1f" % value).replace(".0", "")


# --- drawing --------------------------------------------------------------

class _Svg:
    def __init__(self, points: list[_Point], log_scale: bool, width: int, height: int,
                 memorising_from: int | None = None):
        self.points = points
        self.memorising_from = memorising_from
        self.width, self.height = width, height
        self.x0, self.x1 = _LEFT, width - _RIGHT
        self.y0, self.y1 = height - _BOTTOM, _TOP  # pixel y of the domain's low and high ends
        values = [p.train for p in points if p.train is not None] + [p.val for p in points if p.val is not None]
        positive = [v for v in values if v > 0]
        # Log scale needs a positive value to anchor the axis; with none we fall back to linear.
        self.log = log_scale and bool(positive)
        self.floor = min(positive) if self.log else 0.0  # non-positive values are drawn at this level
        self.values = values

    # pixel mapping
    def px(self, x: float) -> float:
        return self.x0 + (x - self.dx0) * self.sx

    def py(self, y: float) -> float:
        """Pixel y of a loss; on a log scale a non-positive loss is drawn at the floor."""
        if self.log:
            y = math.log10(max(y, self.floor))
        return self.y0 - (y - self.dy0) * self.sy

    def py_tick(self, y: float) -> float:
        return self.y0 - ((math.log10(y) if self.log else y) - self.dy0) * self.sy

    def render(self) -> str:
        w, h = self.width, self.height
        # preserveAspectRatio is left at its default (xMidYMid meet).
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" class="loss-chart" viewBox="0 0 {w} {h}" width="100%" '
            f'role="img" aria-label="Training and validation loss per epoch" '
            f'font-family="system-ui,sans-serif" font-size="11">'
        ]
        if not self.points:
            out += self._frame()
            out += self._legend(True, True)
            out.append(
                f'<text class="empty" x="{_n((self.x0 + self.x1) / 2)}" y="{_n((self.y0 + self.y1) / 2)}" '
                f'text-anchor="middle" fill="currentColor" fill-opacity=".7">{escape(WAITING_TEXT)}</text></svg>'
            )
            return "".join(out)

        self._scales()
        out += self._grid_and_ticks()
        out += self._frame()
        has_train = any(p.train is not None for p in self.points)
        has_val = any(p.val is not None for p in self.points)
        out += self._legend(has_train, has_val)
        # Dots on the vertices only while they are few enough to read as dots:
        # <marker>s cost a few hundred bytes once, not a circle per point.
        dots = len(self.points) <= MARKER_MAX_POINTS
        curves = []
        if has_train:
            curves.append(self._curve("train", TRAIN_COLOUR, "", [p.train for p in self.points], dots))
        if has_val:
            curves.append(self._curve("val", VAL_COLOUR, ' stroke-dasharray="5 3"', [p.val for p in self.points], dots))
        if dots:
            out.append("<defs>" + "".join(
                f'<marker id="lc-{cls}" markerUnits="userSpaceOnUse" overflow="visible">'
                f'<circle r="2.5" fill="{colour}"/></marker>'
                for cls, colour in (("train", TRAIN_COLOUR), ("val", VAL_COLOUR))
                if (has_train if cls == "train" else has_val)
            ) + "</defs>")
        out.append(f'<g fill="none" stroke-width="2" stroke-linejoin="round">{"".join(curves)}</g>')
        out += self._memorising_mark()
        out.append(self._hits())  # last, so it is on top and hover always finds it
        out.append("</svg>")
        return "".join(out)

    def _scales(self) -> None:
        xs = [p.x for p in self.points]
        plot_w, plot_h = self.x1 - self.x0, self.y0 - self.y1
        self.dx0, self.dx1, self.xticks = _linear_ticks(min(xs), max(xs), max(2, int(plot_w // 80)), integer=True)
        y_target = max(2, int(plot_h // 45))
        if self.log:
            lo, hi, self.yticks = _log_ticks(self.floor, max(self.values), y_target)
            self.dy0, self.dy1 = math.log10(lo), math.log10(hi)
        else:
            self.dy0, self.dy1, self.yticks = _linear_ticks(min(self.values), max(self.values), y_target)
        self.sx = plot_w / (self.dx1 - self.dx0)
        self.sy = plot_h / (self.dy1 - self.dy0)

    def _grid_and_ticks(self) -> list[str]:
        grid, xlabels, ylabels = [], [], []
        for value, label in self.xticks:
            x = _n(self.px(value))
            grid.append(f"M{x} {_n(self.y1)}V{_n(self.y0)}")
            xlabels.append(f'<text x="{x}" y="{_n(self.y0 + 15)}">{escape(label)}</text>')
        for value, label in self.yticks:
            y = _n(self.py_tick(value))
            grid.append(f"M{_n(self.x0)} {y}H{_n(self.x1)}")
            ylabels.append(f'<text x="{_n(self.x0 - 6)}" y="{_n(self.py_tick(value) + _HALF_CAP)}">{escape(label)}</text>')
        return [
            f'<path class="grid" d="{"".join(grid)}" fill="none" stroke="currentColor" stroke-opacity=".12"/>',
            f'<g class="ticks x" text-anchor="middle" fill="currentColor">{"".join(xlabels)}</g>',
            f'<g class="ticks y" text-anchor="end" fill="currentColor">{"".join(ylabels)}</g>',
        ]

    def _frame(self) -> list[str]:
        x0, x1, y0, y1 = _n(self.x0), _n(self.x1), _n(self.y0), _n(self.y1)
        mid_x, mid_y = _n((self.x0 + self.x1) / 2), _n((self.y0 + self.y1) / 2)
        return [
            f'<path class="axis" d="M{x0} {y1}V{y0}H{x1}" fill="none" stroke="currentColor" stroke-opacity=".6"/>',
            f'<g class="axis-label" fill="currentColor" text-anchor="middle">'
            f'<text x="{mid_x}" y="{_n(self.height - 6)}">Epoch</text>'
            f'<text transform="translate(14 {mid_y}) rotate(-90)">Loss</text></g>',
        ]

    def _legend(self, has_train: bool, has_val: bool) -> list[str]:
        entries = []
        if has_train:
            entries.append(("train", TRAIN_COLOUR, "", "Train"))
        if has_val:
            entries.append(("val", VAL_COLOUR, ' stroke-dasharray="5 3"', "Validation"))
        out, x = ['<g class="legend" fill="currentColor">'], self.x1 - 88 * len(entries)
        for cls, colour, dash, label in entries:
            out.append(
                f'<path class="{cls}" d="M{_n(x)} 13h18" stroke="{colour}" stroke-width="2"{dash}/>'
                f'<text x="{_n(x + 23)}" y="{_n(13 + _HALF_CAP)}">{label}</text>'
            )
            x += 88
        out.append("</g>")
        return out

    def _memorising_mark(self) -> list[str]:
        """A dotted line at the epoch memorising began, labelled, with the region after it shaded."""
        epoch = self.memorising_from
        if epoch is None or not self.dx0 <= epoch <= self.dx1:
            return []
        x = self.px(epoch)
        label_x, anchor = (x + 5, "start") if x < (self.x0 + self.x1) / 2 else (x - 5, "end")
        return [
            f'<g class="memorising" aria-label="Memorising from epoch {epoch}">'
            f'<rect x="{_n(x)}" y="{_n(self.y1)}" width="{_n(self.x1 - x)}" height="{_n(self.y0 - self.y1)}" '
            f'fill="{VAL_COLOUR}" fill-opacity=".07"/>'
            f'<path d="M{_n(x)} {_n(self.y1)}V{_n(self.y0)}" stroke="{VAL_COLOUR}" stroke-width="1.5" '
            f'stroke-dasharray="2 3"/>'
            f'<text x="{_n(label_x)}" y="{_n(self.y1 + 12)}" text-anchor="{anchor}" fill="currentColor">'
            f'memorising from epoch {epoch}</text></g>'
        ]

    def _curve(self, cls: str, colour: str, dash: str, values: list, dots: bool) -> str:
        """One curve's polyline: a vertex per point that has this loss."""
        px, py = self.px, self.py
        line = " ".join([f"{_n(px(p.x))},{_n(py(v))}" for p, v in zip(self.points, values) if v is not None])
        markers = "".join(f' marker-{at}="url(#lc-{cls})"' for at in ("start", "mid", "end")) if dots else ""
        return f'<polyline class="{cls}" points="{line}" stroke="{colour}"{dash}{markers}/>'

    def _hits(self) -> str:
        """The hover layer: one invisible column per point, holding that point's tooltip.

        Each column is a horizontal segment from its left edge to its right
        edge, stroked as wide as the plot is tall (the group's stroke-width),
        so it needs only two numbers. Edges sit halfway between neighbouring
        points; the outer columns run to the plot's sides. The stroke is
        transparent (stroke-opacity 0) but still takes the pointer, and
        app.css (`.loss-chart .hit>:hover`) shows the hovered column faintly.
        """
        xs = [round(self.px(p.x), 1) for p in self.points]
        edges = [round(self.x0, 1)] + [round((a + b) / 2, 1) for a, b in zip(xs, xs[1:])] + [round(self.x1, 1)]
        columns = "".join([
            f'<path d="M{_n(a)} 0h{_n(b - a)}"><title>{escape(p.title(), quote=False)}</title></path>'
            for p, a, b in zip(self.points, edges, edges[1:])
        ])
        return (
            f'<g class="hit" transform="translate(0 {_n((self.y0 + self.y1) / 2)})" stroke="currentColor" '
            f'stroke-opacity="0" stroke-width="{_n(self.y0 - self.y1)}" pointer-events="stroke">{columns}</g>'
        )
