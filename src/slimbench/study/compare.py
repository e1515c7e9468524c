"""Compare results: rows from studies (``results.json``) or single models, as a table, Markdown, CSV and plots.

Plots put accuracy against parameters, MACs and score (log axes), draw the Pareto front of the study's
models (no other model is both smaller/cheaper and more accurate), and add reference models from the
literature (``literature.yaml``) as separate markers with their sources.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from slimbench.errors import ConfigError
from slimbench.study.runner import RESULTS_FILE

COLUMNS = [  # key, header, format
    ("experiment", "model", "{}"), ("val_acc", "val %", "pct"), ("test_acc", "test %", "pct"),
    ("params", "params", "{:,}"), ("macs", "MACs", "{:,}"), ("size_bytes", "size (B)", "{:,}"),
    ("qw", "qw", "{:.3g}"), ("qa", "qa", "{:.3g}"), ("score", "score", "{:.4f}"),
    ("flash_bytes", "flash KiB", "kib"), ("peak_ram_bytes", "RAM KiB", "kib"), ("latency_ms", "b1 ms", "{:.2f}"),
    ("train_s", "train s", "{:,.0f}"), ("eligible", ">=90%", "flag"),
]


def literature() -> list[dict[str, Any]]:
    text = resources.files("slimbench.study").joinpath("literature.yaml").read_text()
    return list(yaml.safe_load(text))


def _labelled(source: str | Path) -> tuple[str | None, Path]:
    """``LABEL=PATH`` names a model file in tables and plots; a source that exists as written is a plain path."""
    text = str(source)
    if Path(text).exists() or "=" not in text:
        return None, Path(text)
    label, _, path = text.rpartition("=")
    return (label or None), Path(path)


def load_rows(sources: list[str | Path], rule: str = "brief") -> list[dict[str, Any]]:
    """Rows from study directories (their results.json) and from model files (.pt artifacts, exported .onnx/.tflite),
    each file named by its path or by ``LABEL=PATH``."""
    from slimbench.score import compute_score, inputs_from_artifact, load_rule

    rows: list[dict[str, Any]] = []
    named = [_labelled(source) for source in sources]
    files = [path for _, path in named if path.is_file()]
    labels = dict(zip(files, distinct_labels(files), strict=True))
    labels.update({path: label for label, path in named if label and path.is_file()})
    for label, path in named:
        if label and path.is_dir():
            raise ConfigError(f"{label}={path}: a label names a model file; a study's rows keep their experiment names")
        if path.is_dir():
            results = path / RESULTS_FILE
            if not results.is_file():
                raise ConfigError(f"{path}: no {RESULTS_FILE} (run the study first: slimbench study run)")
            payload = json.loads(results.read_text())
            rows.extend({**row, "study": payload.get("study")} for row in payload["rows"])
        elif path.is_file():
            score_rule = load_rule(rule)
            inputs, test_acc = inputs_from_artifact(path, score_rule)
            from slimbench.measure import memory_of

            rows.append({"experiment": labels[path], "model_path": str(path),
                         "test_acc": test_acc, "params": int(inputs.w), "macs": int(inputs.f), "qw": inputs.qw,
                         "qa": inputs.qa, "size_bytes": int(inputs.w * inputs.qw / 8),
                         "score": compute_score(inputs, score_rule).total,
                         "eligible": test_acc is not None and test_acc >= score_rule.min_accuracy,
                         **(memory_of(path) or {})})
        else:
            raise ConfigError(f"{path}: neither a study directory nor a model file")
    return rows


def distinct_labels(paths: list[Path], min_parts: int = 2) -> list[str]:
    """Each path's shortest tail of at least ``min_parts`` parts that no other path shares.

    ``w4a4/model.pt`` from two studies would look alike in a table or plot; their labels grow leftwards until
    they differ (``frontier-airnet/w4a4/model.pt`` against ``frontier-long/w4a4/model.pt``).
    """
    parts = [path.resolve().parts[1:] for path in paths]  # without the root, which no label needs
    labels = []
    for mine in parts:
        size = min(min_parts, len(mine))
        while size < len(mine) and any(other != mine and other[-size:] == mine[-size:] for other in parts):
            size += 1
        labels.append("/".join(mine[-size:]))
    return labels


def select(rows: list[dict[str, Any]], sort: str = "score", eligible_only: bool = False) -> list[dict[str, Any]]:
    keys = {key for key, _, _ in COLUMNS}
    if sort not in keys:
        raise ConfigError(f"cannot sort by {sort!r}; columns: {', '.join(sorted(keys))}")
    rows = [r for r in rows if r.get("eligible")] if eligible_only else list(rows)
    descending = sort in ("val_acc", "test_acc")
    present = sorted((r for r in rows if r.get(sort) is not None), key=lambda r: r[sort], reverse=descending)
    return present + [r for r in rows if r.get(sort) is None]


def cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if key == "eligible":
        return "yes" if value else "no"
    if value is None:
        return "-"
    if fmt == "pct":
        return f"{100 * value:.2f}"
    if fmt == "kib":
        return f"{value / 1024:,.1f}"
    return fmt.format(value)


def to_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(h for _, h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r, k, f) for k, _, f in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([k for k, _, _ in COLUMNS])
    for r in rows:
        writer.writerow(["" if r.get(k) is None else r.get(k) for k, _, _ in COLUMNS])
    return buffer.getvalue()


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points that no other point beats on both cost (lower) and accuracy (higher), by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plotted_front(points: list[tuple[float, float]], eligible: list[bool]) -> tuple[list[int], str]:
    """The front a plot draws, and its legend. Among the eligible models when there are any, as the frontier
    table counts it: a model below the accuracy line is no candidate, however cheap. Among all models
    otherwise, so that a study whose models all sit below the line still shows its trade-off."""
    candidates = [i for i, ok in enumerate(eligible) if ok]
    if not candidates:
        return pareto_front(points), "Pareto front (no model reaches the line)"
    front = pareto_front([points[i] for i in candidates])
    return [candidates[i] for i in front], "Pareto front of the models above the line"


def point_labels(points: list[tuple[float, float]], names: list[str], front: list[int],
                 max_named: int) -> tuple[list[str], list[str]]:
    """What each point says on a plot, and the key beside it (empty when every point carries its name).

    Up to ``max_named`` points are named in full. Past that, names no longer fit among the markers: each
    point gets a number instead (numbered from the left, so the key reads in the plot's order), the Pareto
    front keeps its names after the number, and the key lists every number with its name.
    """
    if len(set(points)) <= max_named:
        return list(names), []
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    number = {i: n for n, i in enumerate(order, start=1)}
    on_front = set(front)
    labels = [f"{number[i]} {names[i]}" if i in on_front else str(number[i]) for i in range(len(points))]
    key = [f"{number[i]:>3}{'*' if i in on_front else ' '} {names[i]}" for i in order]
    return labels, key


CROWD_BAND = 0.015  # accuracy either side of the line within which a crowd of models is enlarged


def crowd_window(points: list[tuple[float, float]], line: float = 0.9, band: float = CROWD_BAND, span: float = 2.5,
                 min_points: int = 8) -> tuple[float, float, float, float] | None:
    """Where a study's points crowd at the accuracy line: (x0, x1, y0, y1) in data units, or None.

    A compression study piles its models just above and below the line at nearly one cost; on a plot that
    spans the parents too, their labels stack into a column. The window takes the points within ``band`` of
    the line whose cost is at most ``span`` times the cheapest of them, and every point inside those bounds.
    """
    near = [(x, y) for x, y in points if abs(y - line) <= band]
    if not near:
        return None
    x0 = min(x for x, _ in near)
    x1 = max(x for x, _ in near if x <= span * x0)
    inside = [(x, y) for x, y in points if x0 <= x <= x1 and line - band <= y <= line + band]
    if len(set(inside)) < min_points:
        return None
    return x0, x1, min(y for _, y in inside), max(y for _, y in inside)


def plot_comparison(rows: list[dict[str, Any]], out_dir: str | Path, title: str = "",
                    references: bool = True, max_named: int = 12) -> list[Path]:
    """accuracy_vs_{params,macs,score,flash_bytes,peak_ram_bytes}.png/.svg in ``out_dir`` (flash and RAM where
    the rows carry them); returns the PNG paths. With more than ``max_named`` models the points are numbered
    and a key beside the axes names them (see ``point_labels``); where they crowd at the accuracy line
    (``crowd_window``), a second panel below shows that window enlarged and carries their labels."""
    from slimbench.plotting import save_figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    refs = literature() if references else []
    written = []
    axes = [("params", "parameters"), ("macs", "MACs per image"), ("score", "score (lower is better)"),
            ("flash_bytes", "flash: weights at their stored bits (bytes)"),
            ("peak_ram_bytes", "peak RAM, batch 1: activations alive at once (bytes)")]
    for key, label in axes:
        if key.endswith("_bytes") and not any(r.get(key) for r in rows):
            continue  # rows written before flash and RAM were measured
        shown = [r for r in rows if r.get(key) and r.get("test_acc") is not None]
        points = [(float(r[key]), float(r["test_acc"])) for r in shown]
        names = [r["experiment"] for r in shown]
        eligible = [bool(r.get("eligible")) for r in shown]
        front, front_label = plotted_front(points, eligible) if points else ([], "")
        labels, key_lines = point_labels(points, names, front, max_named)
        window = crowd_window(points) if key_lines else None
        fig, ax, zoom_ax = _figure(key_lines, enlarged=window is not None)
        shown_refs = [r for r in refs if r.get(key)] if key != "score" else []
        ref_points = [(float(r[key]), float(r["test_acc"])) for r in shown_refs]
        for panel in (ax, zoom_ax):
            if panel is not None:
                _draw_points(panel, points, eligible, front, front_label, ref_points, label)
        ax.set_title(f"{title}: accuracy vs {label}" if title else f"accuracy vs {label}")
        inside = [False] * len(points)
        if window is not None and zoom_ax is not None:
            inside = _enlarge(ax, zoom_ax, window, points)
        ax.autoscale_view()
        fig.tight_layout()  # labels are placed in pixels: the panels must have their final size first
        # this study's names first, then the literature's in the room left; no label covers a marker
        taken = _marker_boxes(ax, [*points, *ref_points])
        if zoom_ax is not None:
            # a point inside the window is labelled in the enlarged panel only (by its number): its column crowded
            _label_points(ax, [p for p, i in zip(points, inside, strict=True) if not i],
                          [t for t, i in zip(labels, inside, strict=True) if not i], taken=taken)
            _label_points(zoom_ax, [p for p, i in zip(points, inside, strict=True) if i],
                          [t.split(" ")[0] for t, i in zip(labels, inside, strict=True) if i],
                          taken=_marker_boxes(zoom_ax, points))
        else:
            _label_points(ax, points, labels, taken=taken)
        _label_points(ax, ref_points, [r["name"].split(" (")[0] for r in shown_refs], fontsize=6, color="dimgray",
                      taken=taken)
        # below the (last) axes, where it can never hide a point
        (zoom_ax or ax).legend(*ax.get_legend_handles_labels(), fontsize=7, loc="upper center",
                               bbox_to_anchor=(0.5, -0.16 if zoom_ax else -0.13), ncol=4, frameon=False)
        save_figure(fig, out_dir / f"accuracy_vs_{key}.png", svg=True)
        written.append(out_dir / f"accuracy_vs_{key}.png")
    return written


def _figure(key_lines: list[str], enlarged: bool) -> tuple[Any, Any, Any]:
    """The figure, its main panel and (when ``enlarged``) the enlarged panel below it. The key is one column
    beside the panels, in an axes of its own so that the layout keeps room for it (monospace, 6 pt, 1.25 lines):
    the figure grows to hold it."""
    import matplotlib.pyplot as plt

    panels = 2 if enlarged else 1
    key_width = max(map(len, key_lines)) * 0.6 * 6 / 72 + 0.4 if key_lines else 0.0
    key_height = len(key_lines) * 1.25 * 6 / 72 + 1.8 if key_lines else 0.0
    fig = plt.figure(figsize=(7.5 + key_width, max(5.0 * panels, key_height)))
    grid = fig.add_gridspec(panels, 2 if key_lines else 1, width_ratios=[7.5, key_width] if key_lines else None)
    ax = fig.add_subplot(grid[0, 0])
    zoom_ax = fig.add_subplot(grid[1, 0]) if enlarged else None
    if key_lines:
        key_ax = fig.add_subplot(grid[:, 1])
        key_ax.axis("off")
        key_ax.text(0.0, 1.0, "\n".join([*key_lines, "", "  * on the Pareto front"]), transform=key_ax.transAxes,
                    va="top", ha="left", fontsize=6, family="monospace", linespacing=1.25)
    return fig, ax, zoom_ax


def _enlarge(ax: Any, zoom_ax: Any, window: tuple[float, float, float, float],
             points: list[tuple[float, float]]) -> list[bool]:
    """Frame ``zoom_ax`` on ``window`` (x0, x1, y0, y1) and mark it with a grey box on ``ax``; returns which
    points lie inside it."""
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    x0, x1, y0, y1 = window
    span_x, pad_y = (x1 / x0 if x1 > x0 else 1.5), max(0.1, 0.06 * 100 * (y1 - y0))
    zoom_ax.set_xlim(x0 / span_x ** 0.06, x1 * span_x ** 0.2)  # room on the right for the last column's labels
    zoom_ax.set_ylim(100 * y0 - pad_y, 100 * y1 + pad_y)
    # a narrow log range gets log minor labels that collide: a few plain ticks instead
    zoom_ax.xaxis.set_major_locator(MaxNLocator(6))
    zoom_ax.xaxis.set_minor_formatter(NullFormatter())
    zoom_ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))
    zoom_ax.set_title(f"enlarged: the grey box above, the models within {100 * CROWD_BAND:g} points of 90% "
                      "at the cheap end", fontsize=9)
    (zx0, zx1), (zy0, zy1) = zoom_ax.get_xlim(), zoom_ax.get_ylim()
    ax.add_patch(Rectangle((zx0, zy0), zx1 - zx0, zy1 - zy0, fill=False, edgecolor="0.4", linewidth=0.8, zorder=1))
    return [x0 <= x <= x1 and y0 <= y <= y1 for x, y in points]


def _draw_points(ax: Any, points: list[tuple[float, float]], eligible: list[bool], front: list[int], front_label: str,
                 ref_points: list[tuple[float, float]], label: str) -> None:
    """Markers, the Pareto front, the literature and the accuracy line on one panel (labels come after)."""
    if points:
        # below the accuracy line a model is not a candidate: hollow, so the eye finds the eligible ones
        for group_eligible, legend in ((True, "this study"), (False, "this study, below the accuracy line")):
            group = [p for p, ok in zip(points, eligible, strict=True) if ok == group_eligible]
            if group:
                ax.scatter([p[0] for p in group], [100 * p[1] for p in group], s=36, zorder=3, label=legend,
                           color="tab:blue" if group_eligible else "white", edgecolors="tab:blue")
        ax.step([points[i][0] for i in front], [100 * points[i][1] for i in front], where="post",
                color="tab:blue", alpha=0.5, linestyle="--", label=front_label)
    if ref_points:
        ax.scatter([p[0] for p in ref_points], [100 * p[1] for p in ref_points], marker="^", s=40,
                   color="tab:gray", zorder=2, label="literature (see sources)")
    ax.axhline(90, color="tab:red", linewidth=0.8, linestyle=":", label="90% threshold")
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


def _marker_boxes(ax: Any, points: list[tuple[float, float]], radius_pt: float = 3.5) -> list[Box]:
    """The screen area of each marker, so that no label is written over one."""
    r = radius_pt * ax.figure.dpi / 72
    return [(px - r, py - r, px + r, py + r) for px, py in (ax.transData.transform((x, 100 * y)) for x, y in points)]


def _label_points(ax: Any, points: list[tuple[float, float]], names: list[str], fontsize: float = 7,
                  color: str | None = None, taken: list[Box] | None = None) -> None:
    """Name every point without overlaps: coincident points share one label, and each label takes the first
    free slot (right of its point, then alternately above and below, then in a lane further out; see
    ``_label_slots``) in screen space, clear of the boxes in ``taken`` (markers, labels placed before), to which
    it adds its own."""
    groups: dict[tuple[float, float], list[str]] = {}
    for point, name in zip(points, names, strict=True):
        groups.setdefault(point, []).append(name)
    ax.autoscale_view()
    to_pixels = ax.transData.transform
    scale = ax.figure.dpi / 72  # points to pixels
    line, char = 1.25 * fontsize * scale, 0.55 * fontsize * scale
    (left_edge, bottom_edge), (right_edge, top_edge) = ax.transAxes.transform((0, 0)), ax.transAxes.transform((1, 1))
    taken = [] if taken is None else taken
    for (x, y), group in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        text = "\n".join(group)  # one name per line: coincident points make a short column, not a long row
        px, py = to_pixels((x, 100 * y))
        width, height = char * max(map(len, group)), line * len(group)
        left = px + 4 * scale + width > right_edge and px - 4 * scale - width >= left_edge
        x0 = px - 4 * scale - width if left else px + 4 * scale
        away = -1 if left else 1
        fallback = None  # the nearest slot inside the frame, when every such slot covers something
        for _, lane, shift in _label_slots():
            dx, dy = away * lane * (width + 6 * scale), 2 * scale + shift * line
            box = (x0 + dx, py + dy, x0 + dx + width, py + dy + height)
            inside = bottom_edge <= box[1] and box[3] <= top_edge  # not across the frame or the title
            if lane:  # a lane further out must stay inside the frame sideways too
                inside = inside and left_edge <= box[0] and box[2] <= right_edge
            if inside and fallback is None:
                fallback = (box, dx, dy, lane, shift)
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
                break
        else:
            if fallback is not None:
                box, dx, dy, lane, shift = fallback
        taken.append(box)
        ax.annotate(text, (x, 100 * y), textcoords="offset points", xytext=((away * 4 * scale + dx) / scale, dy / scale),
                    ha="right" if left else "left", va="bottom", fontsize=fontsize, linespacing=1.0, color=color,
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5} if shift or lane else None)


@functools.cache
def _label_slots(lanes: int = 3, shifts: int = 40, lane_cost: int = 4) -> tuple[tuple[int, int, int], ...]:
    """Where a label may go, nearest first, as (cost, lane, line shift): beside its point, then a line up or down
    at a time, and in a dense column (many points at one cost) a lane further out costs ``lane_cost`` lines."""
    order = [(step + 1) // 2 * (1 if step % 2 else -1) for step in range(shifts)]  # 0, +1, -1, +2, -2 ...
    return tuple(sorted(((abs(shift) + lane_cost * lane, lane, shift) for lane in range(lanes) for shift in order),
                        key=lambda slot: slot[0]))
