"""Loss chart: our SVG fragment vs the seed's matplotlib PNG, side by side.

The seed (a Gradio app) rebuilt an 8x4 inch matplotlib figure with train and
validation lines, labels, title, legend and tight_layout, rendered it to PNG
and shipped it to the browser every 2 s. We render an SVG fragment once per
epoch and push it over a WebSocket. For 50, 500 and 5000 epochs of synthetic
loss curves this prints, for each: median render time and bytes, and the
ratios. Bytes are shown raw and as permessage-deflate would send them (ours;
uvicorn and browsers negotiate it by default), and as PNG and as the base64
data URL Gradio puts in its JSON (seed). The wire ratio is conservative: it
sets our deflated fragment against the bare PNG.

    python bench/chart_render.py [--runs 30] [--mpl-runs 7]

Not a test: it prints numbers and whether the targets (at 500 epochs: >= 20x
faster, >= 3x smaller) are met.
"""
from __future__ import annotations

import argparse
import base64
import io
import math
import random
import statistics
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sda_web.web.chart import DEFAULT_MAX_POINTS, chart_fragment  # noqa: E402

SIZES = (50, 500, 5000)
TARGET_EPOCHS, TARGET_SPEEDUP, TARGET_SIZE_RATIO = 500, 20.0, 3.0


def curves(n: int, seed: int = 0):
    """Train and validation loss that fall, with noise; validation turns up late."""
    rng = random.Random(seed)
    epochs = list(range(1, n + 1))
    train = [2.0 * math.exp(-e / (n / 5)) + 0.3 + 0.02 * rng.random() for e in epochs]
    val = [2.1 * math.exp(-e / (n / 5)) + 0.35 + 0.3 * (e / n) ** 2 + 0.04 * rng.random() for e in epochs]
    return epochs, train, val


def deflated_size(data: bytes) -> int:
    """Bytes after raw deflate, as WebSocket permessage-deflate sends a message."""
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return len(packer.compress(data) + packer.flush(zlib.Z_SYNC_FLUSH)) - 4  # the spec drops the 00 00 ff ff tail


def median_time(fn, runs: int) -> tuple[float, object]:
    result = fn()  # warm up (imports, font cache)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def ours(epochs, train, val) -> bytes:
    return chart_fragment(epochs, train, val).encode()


def seed_png(plt, epochs, train, val) -> bytes:
    """What the seed's build_loss_chart + Gradio's gr.Plot did for one frame."""
    fig = plt.figure(figsize=(8, 4))
    ax = fig.add_subplot(111)
    ax.plot(epochs, train, label="Train Loss")
    ax.plot(epochs, val, label="Validation Loss")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss")
    ax.set_title("Training Progress")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def load_matplotlib():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs of our renderer per size")
    parser.add_argument("--mpl-runs", type=int, default=7, help="timed runs of matplotlib per size")
    args = parser.parse_args()

    plt = load_matplotlib()
    if plt is None:
        print("matplotlib is NOT installed: only our side is measured, no comparison.")
        print("Install it to compare (the app itself never needs it): pip install matplotlib\n")

    header = (
        f"{'epochs':>7} | {'SVG ms':>7} {'SVG KB':>7} {'wire KB':>7} | "
        f"{'PNG ms':>7} {'PNG KB':>7} {'b64 KB':>7} | {'speedup':>8} {'size':>6} {'wire':>6}"
    )
    print(header)
    print("-" * len(header))
    results = {}
    for n in SIZES:
        data = curves(n)
        t_svg, svg = median_time(lambda: ours(*data), args.runs)
        svg_kb, wire_kb = len(svg) / 1024, deflated_size(svg) / 1024
        row = f"{n:>7} | {t_svg * 1e3:7.2f} {svg_kb:7.1f} {wire_kb:7.1f} | "
        if plt is None:
            print(row + f"{'-':>7} {'-':>7} {'-':>7} | {'-':>8} {'-':>6} {'-':>6}")
            continue
        t_png, png = median_time(lambda: seed_png(plt, *data), args.mpl_runs)
        png_kb, b64_kb = len(png) / 1024, len(base64.b64encode(png)) / 1024
        speedup, size_ratio, wire_ratio = t_png / t_svg, png_kb / svg_kb, png_kb / wire_kb
        results[n] = (speedup, size_ratio, wire_ratio)
        print(
            row + f"{t_png * 1e3:7.1f} {png_kb:7.1f} {b64_kb:7.1f} | "
            f"{speedup:7.1f}x {size_ratio:5.2f}x {wire_ratio:5.2f}x"
        )
    print(
        f"\nSVG = chart_fragment (default max_points={DEFAULT_MAX_POINTS}); wire = SVG after permessage-deflate; PNG = seed's figure;\n"
        "b64 = PNG as the base64 data URL Gradio ships. speedup = PNG ms / SVG ms; size = PNG KB / SVG KB;\n"
        "wire = PNG KB / wire KB (deflate on our side only; the seed's PNG counted without its base64 overhead)."
    )

    # How the fragment's size depends on max_points (a vertex per curve plus one
    # hover column with its tooltip per point).
    data = curves(TARGET_EPOCHS)
    sizes = ", ".join(
        f"{m}: {len(chart_fragment(*data, max_points=m).encode()) / 1024:.1f} KB"
        for m in sorted({50, DEFAULT_MAX_POINTS, 100, 120, 150, 300})
    )
    print(f"\nSVG size at {TARGET_EPOCHS} epochs by max_points -> {sizes}")

    if plt is None:
        print("\nTargets not checked: matplotlib is missing.")
        return 1
    speedup, size_ratio, wire_ratio = results[TARGET_EPOCHS]
    print(f"\nTargets at {TARGET_EPOCHS} epochs:")
    print(f"  >= {TARGET_SPEEDUP:.0f}x faster:          {speedup:6.1f}x  {'MET' if speedup >= TARGET_SPEEDUP else 'NOT MET'}")
    print(f"  >= {TARGET_SIZE_RATIO:.0f}x smaller (raw):    {size_ratio:6.2f}x  {'MET' if size_ratio >= TARGET_SIZE_RATIO else 'NOT MET'}")
    print(f"  >= {TARGET_SIZE_RATIO:.0f}x smaller (wire):   {wire_ratio:6.2f}x  {'MET' if wire_ratio >= TARGET_SIZE_RATIO else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
