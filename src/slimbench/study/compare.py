"""Compare results: rows from studies (``results.json``) or single models, as a table, Markdown, CSV and plots.

Plots put accuracy against parameters, MACs and score (log axes), draw the Pareto front of the study's
models (no other model is both smaller/cheaper and more accurate), and add reference models from the
literature (``literature.yaml``) as separate markers with their sources.
"""

from __future__ import annotations

import csv
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


def plot_comparison(rows: list[dict[str, Any]], out_dir: str | Path, title: str = "",
                    references: bool = True, max_named: int = 12) -> list[Path]:
    """accuracy_vs_{params,macs,score,flash_bytes,peak_ram_bytes}.png/.svg in ``out_dir`` (flash and RAM where
    the rows carry them); returns the PNG paths. With more than ``max_named`` models the points are numbered
    and a key beside the axes names them (see ``point_labels``)."""
    import matplotlib.pyplot as plt

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
        front, front_label = plotted_front(points, [bool(r.get("eligible")) for r in shown]) if points else ([], "")
        labels, key_lines = point_labels(points, names, front, max_named)
        if key_lines:  # one column beside the axes; the figure grows to hold it (monospace, 6 pt, 1.25 lines)
            key_width = max(map(len, key_lines)) * 0.6 * 6 / 72 + 0.4
            figsize = (7.5 + key_width, max(5.0, len(key_lines) * 1.25 * 6 / 72 + 1.8))
        else:
            figsize = (7.5, 5.0)
        fig, ax = plt.subplots(figsize=figsize)
        if points:
            # below the accuracy line a model is not a candidate: hollow, so the eye finds the eligible ones
            for eligible, legend in ((True, "this study"), (False, "this study, below the accuracy line")):
                group = [p for p, r in zip(points, shown, strict=True) if bool(r.get("eligible")) == eligible]
                if group:
                    ax.scatter([p[0] for p in group], [100 * p[1] for p in group], s=36, zorder=3, label=legend,
                               color="tab:blue" if eligible else "white", edgecolors="tab:blue")
            ax.step([points[i][0] for i in front], [100 * points[i][1] for i in front], where="post",
                    color="tab:blue", alpha=0.5, linestyle="--", label=front_label)
        shown_refs = [r for r in refs if r.get(key)] if key != "score" else []
        ref_points = [(float(r[key]), float(r["test_acc"])) for r in shown_refs]
        if shown_refs:
            ax.scatter([p[0] for p in ref_points], [100 * p[1] for p in ref_points], marker="^", s=40,
                       color="tab:gray", zorder=2, label="literature (see sources)")
        ax.axhline(90, color="tab:red", linewidth=0.8, linestyle=":", label="90% threshold")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("CIFAR-10 test accuracy (%)")
        ax.set_title(f"{title}: accuracy vs {label}" if title else f"accuracy vs {label}")
        ax.grid(True, which="both", alpha=0.3)
        # this study's names first, then the literature's in the room left; no label covers a marker
        ax.autoscale_view()
        taken = _marker_boxes(ax, [*points, *ref_points])
        _label_points(ax, points, labels, taken=taken)
        if key_lines:
            ax.text(1.02, 1.0, "\n".join([*key_lines, "", "  * on the Pareto front"]), transform=ax.transAxes,
                    va="top", ha="left", fontsize=6, family="monospace", linespacing=1.25)
        _label_points(ax, ref_points, [r["name"].split(" (")[0] for r in shown_refs], fontsize=6, color="dimgray",
                      taken=taken)
        # below the axes, where it can never hide a point
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, frameon=False)
        save_figure(fig, out_dir / f"accuracy_vs_{key}.png", svg=True)
        written.append(out_dir / f"accuracy_vs_{key}.png")
    return written


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


def _marker_boxes(ax: Any, points: list[tuple[float, float]], radius_pt: float = 3.5) -> list[Box]:
    """The screen area of each marker, so that no label is written over one."""
    r = radius_pt * ax.figure.dpi / 72
    return [(px - r, py - r, px + r, py + r) for px, py in (ax.transData.transform((x, 100 * y)) for x, y in points)]


def _label_points(ax: Any, points: list[tuple[float, float]], names: list[str], fontsize: float = 7,
                  color: str | None = None, taken: list[Box] | None = None) -> None:
    """Name every point without overlaps: coincident points share one label, and each label takes the first
    free slot (right of its point, then alternately below and above) in screen space, clear of the boxes in
    ``taken`` (markers, labels placed before), to which it adds its own."""
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
        fallback = None  # the nearest slot inside the frame, when every such slot covers something
        for step in range(40):
            shift = (step + 1) // 2 * (1 if step % 2 else -1)  # 0, +1, -1, +2, -2 ...
            dy = 2 * scale + shift * line
            box = (x0, py + dy, x0 + width, py + dy + height)
            inside = bottom_edge <= box[1] and box[3] <= top_edge  # not across the frame or the title
            if inside and fallback is None:
                fallback = (box, dy, shift)
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
                break
        else:
            if fallback is not None:
                box, dy, shift = fallback
        taken.append(box)
        ax.annotate(text, (x, 100 * y), textcoords="offset points", xytext=(-4 if left else 4, dy / scale),
                    ha="right" if left else "left", va="bottom", fontsize=fontsize, linespacing=1.0, color=color,
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5} if shift else None)


def plot_curves(run_dirs: list[tuple[str, Path]], path: str | Path) -> Path | None:
    """Validation accuracy per epoch of the chosen training runs, overlaid."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from slimbench.plotting import save_figure

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    drawn, last_epoch = 0, 1
    for name, run_dir in run_dirs:
        log = run_dir / "log.jsonl"
        if not log.is_file():
            continue
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        epochs = [r["epoch"] for r in records if r.get("val_acc") is not None]
        if epochs:
            ax.plot(epochs, [100 * r["val_acc"] for r in records if r.get("val_acc") is not None], label=name,
                    marker="o" if len(epochs) <= 30 else None, markersize=3)  # a 1-epoch run is still visible
            drawn, last_epoch = drawn + 1, max(last_epoch, *epochs)
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10], min_n_ticks=1))
    ax.set_xlim(0.5, last_epoch + 0.5)  # a 1-epoch run gets one tick, 1, not fractions
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)
    return Path(path)
