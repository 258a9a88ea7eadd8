"""The SVG loss chart: a pure function, checked by parsing what it returns."""
from __future__ import annotations

import math
import random
import statistics
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sda_web.web.chart import DEFAULT_MAX_POINTS, WAITING_TEXT, chart_fragment, render_loss_chart

SVG = "{http://www.w3.org/2000/svg}"


def curves(n: int, seed: int = 0):
    """Synthetic loss curves: both fall, validation turns up late (overfitting)."""
    rng = random.Random(seed)
    epochs = list(range(1, n + 1))
    train = [2.0 * math.exp(-e / (n / 5 + 1)) + 0.3 + 0.02 * rng.random() for e in epochs]
    val = [2.1 * math.exp(-e / (n / 5 + 1)) + 0.35 + 0.3 * (e / n) ** 2 + 0.04 * rng.random() for e in epochs]
    return epochs, train, val


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def classes(el: ET.Element) -> set[str]:
    return set(el.get("class", "").split())


def fmt(value: float) -> str:
    """A loss as the tooltips show it: 4 significant digits."""
    return f"{value:#.4g}"


def hits(root: ET.Element) -> list[ET.Element]:
    """The hover columns, in order: children of the one .hit group."""
    (group,) = [g for g in root.iter(f"{SVG}g") if "hit" in classes(g)]
    return list(group)


def titles(root: ET.Element) -> list[str]:
    """Each hover column's tooltip (every column has exactly one)."""
    out = []
    for column in hits(root):
        (title,) = column.findall(f"{SVG}title")
        out.append(title.text)
    return out


def spans(root: ET.Element) -> list[tuple[float, float]]:
    """(left, right) of each hover column: its path is "M<left> 0h<width>"."""
    out = []
    for column in hits(root):
        move, _, width = column.get("d").partition("h")
        left = float(move[1:].split()[0])
        out.append((left, left + float(width)))
    return out


def polyline(root: ET.Element, cls: str) -> list[tuple[float, float]]:
    (line,) = [p for p in root.iter(f"{SVG}polyline") if cls in classes(p)]
    return [tuple(map(float, pair.split(","))) for pair in line.get("points").split()]


def polylines(root: ET.Element) -> list[ET.Element]:
    return list(root.iter(f"{SVG}polyline"))


def tick_labels(root: ET.Element, axis: str) -> list[str]:
    (group,) = [g for g in root.iter(f"{SVG}g") if {"ticks", axis} <= classes(g)]
    return [t.text for t in group.iter(f"{SVG}text")]


def test_well_formed_and_responsive():
    root = parse(render_loss_chart(*curves(40)))
    assert root.get("viewBox") == "0 0 720 300"
    assert root.get("width") == "100%" and root.get("height") is None
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"Epoch", "Loss", "Train", "Validation"} <= set(texts)
    assert any("grid" in classes(el) for el in root.iter())


def test_one_vertex_per_epoch_per_curve_and_one_hover_column_per_epoch():
    epochs, train, val = curves(40)
    root = parse(render_loss_chart(epochs, train, val))
    assert len(polyline(root, "train")) == len(polyline(root, "val")) == 40
    assert len(hits(root)) == 40
    # No circle per point: vertex dots, if any, are one <marker> per curve.
    in_markers = [c for m in root.iter(f"{SVG}marker") for c in m.iter(f"{SVG}circle")]
    assert len(list(root.iter(f"{SVG}circle"))) == len(in_markers) <= 2
    assert len(list(root.iter(f"{SVG}title"))) == 40  # one tooltip per epoch, not one per curve
    assert titles(root)[11] == f"Epoch 12 · train {fmt(train[11])} · val {fmt(val[11])}"


def test_title_format_matches_spec_example():
    root = parse(render_loss_chart([11, 12], [0.5, 0.4321], [0.6, 0.5012]))
    assert titles(root)[1] == "Epoch 12 · train 0.4321 · val 0.5012 · lowest val"


def test_tooltip_values_have_four_significant_digits():
    root = parse(render_loss_chart([1, 2, 3, 4], [1.23456, 12.3456, 0.00123456, 2.0], [0.000012345, None, 1e-9, 0.5]))
    assert titles(root) == [
        "Epoch 1 · train 1.235 · val 1.234e-5",
        "Epoch 2 · train 12.35",
        "Epoch 3 · train 0.001235 · val 1.000e-9 · lowest val",
        "Epoch 4 · train 2.000 · val 0.5000",
    ]


def test_hover_columns_tile_the_plot_and_contain_their_points():
    root = parse(render_loss_chart(*curves(333)))
    columns = spans(root)
    xs = [x for x, _ in polyline(root, "train")]
    assert len(columns) == len(xs)
    assert columns[0][0] == 58 and columns[-1][1] == pytest.approx(706)  # the plot's left and right edges
    assert all(b[0] == pytest.approx(a[1]) for a, b in zip(columns, columns[1:]))  # no gaps, no overlaps
    assert all(lo <= x <= hi for x, (lo, hi) in zip(xs, columns))
    group = [g for g in root.iter(f"{SVG}g") if "hit" in classes(g)][0]
    assert group.get("stroke-opacity") == "0" and group.get("pointer-events") == "stroke"
    assert float(group.get("stroke-width")) == 300 - 26 - 42  # as tall as the plot
    # the hover tint lives in the stylesheet: an inline <style> would break the Content-Security-Policy
    assert list(root.iter(f"{SVG}style")) == []
    stylesheet = (Path(__file__).resolve().parents[2] / "static" / "css" / "app.css").read_text()
    assert ".loss-chart .hit > :hover { stroke-opacity: .1; }" in stylesheet


def test_coordinates_rounded_to_one_decimal():
    root = parse(render_loss_chart(*curves(333)))
    numbers = [n for line in polylines(root) for pair in line.get("points").split() for n in pair.split(",")]
    numbers += [n for column in hits(root) for n in column.get("d")[1:].replace("h", " ").split()]
    assert numbers
    for number in numbers:
        whole, _, frac = number.partition(".")
        assert len(frac) <= 1 and frac != "0"


def test_default_max_points_keeps_the_fragment_small():
    assert DEFAULT_MAX_POINTS <= 150
    for n in (500, 5000):
        html = chart_fragment(*curves(n))
        assert len(parse(html[html.index("<svg"):-len("</div>")]).findall(f".//{SVG}polyline")) == 2
        assert len(html.encode()) <= 11 * 1024, n


@pytest.mark.parametrize("n", [301, 500, 5000])
def test_downsampling_caps_points_and_keeps_first_last_and_best(n):
    epochs, train, val = curves(n)
    best_epoch = epochs[min(range(n), key=val.__getitem__)]
    root = parse(render_loss_chart(epochs, train, val, max_points=300))
    points = len(hits(root))
    assert 200 <= points <= 300
    for cls in ("train", "val"):
        line = polyline(root, cls)
        assert len(line) == points
        xs = [x for x, _ in line]
        assert xs == sorted(xs)
    tips = titles(root)
    assert tips[0].startswith("Epoch 1 · ")
    assert tips[-1] == f"Epoch {n} · train {fmt(train[-1])} · val {fmt(val[-1])}"
    assert f"Epoch {best_epoch} · train {fmt(train[best_epoch - 1])} · val {fmt(val[best_epoch - 1])} · lowest val" in tips
    # Buckets say which epochs they average, and cover every epoch once, in order.
    assert any(t.startswith("Epochs ") and "(mean)" in t for t in tips)
    covered = []
    for t in tips:
        span = t.split(" · ")[0].split(" ")[1]  # "12" or "101–117"
        lo, _, hi = span.partition("–")
        covered.append((int(lo), int(hi or lo)))
    assert covered[0][0] == 1 and covered[-1][1] == n
    assert all(b[0] == a[1] + 1 for a, b in zip(covered, covered[1:]))


def test_default_downsampling():
    root = parse(render_loss_chart(*curves(500)))
    assert DEFAULT_MAX_POINTS // 2 <= len(hits(root)) <= DEFAULT_MAX_POINTS
    assert len(polyline(root, "train")) == len(polyline(root, "val")) == len(hits(root))


def test_small_max_points():
    epochs, train, val = curves(100)
    root = parse(render_loss_chart(epochs, train, val, max_points=10))
    assert len(hits(root)) <= 10
    assert len(polyline(root, "train")) == len(hits(root))
    with pytest.raises(ValueError):
        render_loss_chart(epochs, train, val, max_points=3)


def test_vertex_dots_only_for_few_points():
    few = parse(render_loss_chart(*curves(60)))
    assert all(line.get("marker-mid") for line in polylines(few))
    many = parse(render_loss_chart(*curves(61)))
    assert not any(line.get("marker-mid") for line in polylines(many))
    assert not list(many.iter(f"{SVG}marker")) and not list(many.iter(f"{SVG}circle"))


def test_bucket_values_are_means():
    epochs = list(range(1, 101))
    train = [float(e) for e in epochs]
    val = [1000.0 - e for e in epochs]  # lowest val is the last epoch
    root = parse(render_loss_chart(epochs, train, val, max_points=10))
    for tip in titles(root):
        head, train_part, val_part = tip.split(" · ")[:3]
        if head.startswith("Epochs "):
            lo, hi = map(int, head.split(" ")[1].split("–"))
            assert float(train_part.split()[1]) == pytest.approx((lo + hi) / 2, rel=5e-4)
            assert float(val_part.split()[1]) == pytest.approx(1000 - (lo + hi) / 2, rel=5e-4)


def test_log_scale_ticks_are_decades():
    epochs = list(range(1, 61))
    train = [10 ** (1 - e / 10) for e in epochs]  # 10 down to 1e-5
    val = [t * 1.5 for t in train]
    root = parse(render_loss_chart(epochs, train, val, log_scale=True))
    labels = tick_labels(root, "y")
    assert len(labels) >= 2
    exponents = [math.log10(float(label)) for label in labels]
    assert all(abs(x - round(x)) < 1e-9 for x in exponents)
    assert exponents == sorted(exponents)
    assert len(set(round(b - a) for a, b in zip(exponents, exponents[1:]))) == 1  # even stride


def test_log_scale_with_zeros_and_negatives_clamps_to_smallest_positive():
    epochs = [1, 2, 3, 4]
    root = parse(render_loss_chart(epochs, [1.0, 0.0, -2.0, 0.01], [2.0, 0.5, 0.0, None], log_scale=True))
    for label in tick_labels(root, "y"):
        assert float(label) > 0
    train_y = [y for _, y in polyline(root, "train")]
    assert len(train_y) == 4
    assert train_y[1] == train_y[2] == train_y[3]  # 0 and -2 drawn at the 0.01 floor
    assert "train -2.000" in titles(root)[2]  # the tooltip keeps the real value


def test_log_scale_without_any_positive_value_falls_back_to_linear():
    root = parse(render_loss_chart([1, 2, 3], [0.0, -1.0, -0.5], [None, None, None], log_scale=True))
    labels = [float(x) for x in tick_labels(root, "y")]
    assert min(labels) <= -1.0 and max(labels) >= 0.0
    assert len(polyline(root, "train")) == 3


def test_empty_input_shows_axes_and_waiting_text():
    for args in (([], [], []), ([1, 2], [None, float("nan")], [None, float("inf")])):
        svg = render_loss_chart(*args)
        root = parse(svg)
        assert WAITING_TEXT in [t.text for t in root.iter(f"{SVG}text")]
        assert any("axis" in classes(el) for el in root.iter())
        assert not polylines(root)
        assert not [g for g in root.iter(f"{SVG}g") if "hit" in classes(g)]
        assert not list(root.iter(f"{SVG}title"))


def test_none_and_non_finite_values_are_skipped():
    epochs = list(range(1, 11))
    train = [1.0, float("nan"), 0.8, 0.7, float("inf"), 0.5, 0.4, None, 0.3, 0.2]
    val = [None] * 10  # a one-file dataset has no validation
    root = parse(render_loss_chart(epochs, train, val))
    assert len(polyline(root, "train")) == 7
    assert len(hits(root)) == 7
    assert not [p for p in polylines(root) if "val" in classes(p)]
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "Train" in texts and "Validation" not in texts
    tips = titles(root)
    assert tips[0] == "Epoch 1 · train 1.000"
    assert "Epoch 2 " not in " ".join(tips) and "nan" not in " ".join(tips).lower()
    assert tips[-1].endswith("lowest train")


def test_val_only_some_epochs():
    root = parse(render_loss_chart([1, 2, 3], [0.9, 0.8, 0.7], [None, 0.85, float("nan")]))
    assert len(polyline(root, "train")) == 3
    assert len(polyline(root, "val")) == 1
    assert titles(root) == [
        "Epoch 1 · train 0.9000",
        "Epoch 2 · train 0.8000 · val 0.8500 · lowest val",
        "Epoch 3 · train 0.7000",
    ]


def test_single_epoch_and_flat_curve():
    root = parse(render_loss_chart([1], [0.5], [0.5]))
    assert len(polyline(root, "train")) == 1
    assert spans(root) == [(58, 706)]  # one column covers the whole plot
    assert len(set(tick_labels(root, "y"))) >= 2 and len(set(tick_labels(root, "x"))) >= 2


def test_unsorted_epochs_are_sorted():
    root = parse(render_loss_chart([3, 1, 2], [0.3, 0.1, 0.2], [None, None, None]))
    assert titles(root)[0].startswith("Epoch 1 ")


def test_linear_ticks_are_nice():
    root = parse(render_loss_chart(*curves(137)))
    for axis in ("x", "y"):
        values = [float(x) for x in tick_labels(root, axis)]
        steps = {round(b - a, 9) for a, b in zip(values, values[1:])}
        assert len(steps) == 1
        (step,) = steps
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert round(mantissa, 6) in (1.0, 2.0, 5.0)
    assert all(label.isdigit() for label in tick_labels(root, "x"))  # epochs are whole numbers


def test_mismatched_lengths_are_a_clear_error():
    with pytest.raises(ValueError, match="same length"):
        render_loss_chart([1, 2], [0.1], [0.2, 0.3])


def test_fragment_is_the_swappable_div():
    html = chart_fragment(*curves(5))
    root = ET.fromstring(html)
    assert root.tag == "div" and root.get("id") == "loss-chart" and root.get("class") == "chart"
    assert root.get("hx-swap-oob") is None
    assert root[0].tag == f"{SVG}svg"


def test_renders_5000_epochs_fast():
    data = curves(5000)
    chart_fragment(*data)  # warm up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        chart_fragment(*data)
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.050
