"""One self-contained HTML page per study: results, reported-vs-measured, plots, curves, model cards.

Pictures are embedded (base64 PNG), there is no script and no external resource: the page opens offline.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from slimbench.artifact import atomic_write
from slimbench.errors import ConfigError
from slimbench.study.compare import COLUMNS, cell, literature, load_rows, plot_comparison, select
from slimbench.study.curves import LOG_FILE, plot_curves, read_curve
from slimbench.study.runner import RESULTS_FILE

GAP = 0.05  # a reported figure further than this (relative, or 5 points of accuracy) from the measured one is flagged

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}.gap{background:#fde2e2}.ok{background:#e3f6e3}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:12px}
.note{color:#555;font-size:13px}
"""


def _table(headers: list[str], rows: list[list[str]], classes: list[list[str]] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, value in enumerate(row):
            css = classes[i][j] if classes else ""
            cells.append(f"<td class='{css}'>{html.escape(value)}</td>" if css else f"<td>{html.escape(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def reported_vs_measured(rows: list[dict[str, Any]]) -> tuple[list[list[str]], list[list[str]]]:
    """One line per experiment with a reported figure; cells flagged where the two disagree."""
    table, classes = [], []
    for row in rows:
        reported = row.get("reported")
        if not reported:
            continue
        line, css = [row["experiment"], reported.get("source", "")], ["", ""]
        for key, is_acc in (("val_acc", True), ("test_acc", True), ("params", False), ("score", False)):
            ours, theirs = row.get(key), reported.get(key)
            if theirs is None:
                line.append(cell(row, key, "pct" if is_acc else "{:,}" if key == "params" else "{:.4f}") + " / -")
                css.append("")
                continue
            fmt = (lambda v: f"{100 * v:.2f}") if is_acc else (lambda v: f"{v:,}") if key == "params" else \
                (lambda v: f"{v:.4f}")
            line.append(f"{fmt(ours) if ours is not None else '-'} / {fmt(theirs)}")
            if ours is None:
                css.append("")
            else:
                gap = abs(ours - theirs) > (GAP if is_acc else GAP * abs(theirs))
                css.append("gap" if gap else "ok")
        line.append(reported.get("note", "") or row.get("choices", "") or "")
        css.append("")
        table.append(line)
        classes.append(css)
    return table, classes


def _missing_note(spec: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """A study still under way (or run with --only) says which experiments the page does not show yet."""
    planned = [e.get("name") for e in spec.get("experiments", [])]
    shown = {r["experiment"] for r in rows}
    missing = [name for name in planned if name not in shown]
    if not missing:
        return ""
    return (f"<p class='note'><b>Partial:</b> {len(planned) - len(missing)} of {len(planned)} experiments have "
            f"results; not yet run or not finished: {html.escape(', '.join(missing))} "
            "(<code>slimbench study status</code> shows where each stands).</p>")


def _training_runs(rows: list[dict[str, Any]]) -> list[tuple[str, Path]]:
    """(label, run directory) of every training in the study: train stages, and the fine-tunes that prune and
    QAT stages run inside their own directories (one per pruning step)."""
    runs = []
    for row in rows:
        for kind, stage_dir in zip(row.get("stages", []), row.get("stage_dirs", []), strict=False):
            if kind == "train":
                runs.append((row["experiment"], Path(stage_dir)))
                continue
            logs = sorted(Path(stage_dir).glob("**/finetune/log.jsonl"))
            for log in logs:
                step = f" {log.parent.parent.name}" if len(logs) > 1 else ""
                runs.append((f"{row['experiment']} ({kind} fine-tune{step})", log.parent))
    return runs


def write_report(study_dir: str | Path, out: str | Path | None = None) -> Path:
    """``study_dir/report.html`` (or ``out``) from the study's results, with its plots beside it."""
    study_dir = Path(study_dir)
    if not (study_dir / RESULTS_FILE).is_file():
        raise ConfigError(f"{study_dir}: no {RESULTS_FILE}; run the study first (slimbench study run)")
    payload = json.loads((study_dir / RESULTS_FILE).read_text())
    spec = json.loads((study_dir / "study.json").read_text()) if (study_dir / "study.json").is_file() else {}
    rows = select(load_rows([study_dir]), "score")
    plots = plot_comparison(rows, study_dir / "plots", payload.get("study", ""))
    runs = [(name, run_dir / LOG_FILE) for name, run_dir in _training_runs(rows) if (run_dir / LOG_FILE).is_file()]
    curves = plot_curves([read_curve(log, name) for name, log in runs], study_dir / "plots" / "curves.png")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>slimbench study {html.escape(payload['study'])}"
             f"</title><style>{STYLE}</style></head><body>",
             f"<h1>Study <code>{html.escape(payload['study'])}</code></h1>",
             f"<p class='note'>{html.escape(spec.get('description', ''))}</p>",
             f"<p class='note'>Finished {html.escape(payload.get('finished', ''))}"
             + (" &mdash; <b>smoke run</b>: one epoch on a small slice, figures are not results" if payload.get("smoke")
                else "") + f". Score rule: {html.escape(str(rows[0].get('score_rule', 'brief')) if rows else '')}; "
             "models below 90% test accuracy are not eligible.</p>",
             _missing_note(spec, rows),
             "<h2>Results</h2>",
             _table([h for _, h, _ in COLUMNS], [[cell(r, k, f) for k, _, f in COLUMNS] for r in rows])]
    table, classes = reported_vs_measured(rows)
    if table:
        parts += ["<h2>Reported vs measured</h2>",
                  "<p class='note'>Each cell: measured by slimbench / reported by the source. Red: they differ by "
                  "more than 5 points of accuracy or 5% of the value (a figure that cannot follow from its own "
                  "recipe, or a different setup); green: they agree.</p>",
                  _table(["experiment", "source", "val %", "test %", "params", "score", "notes"], table, classes)]
    parts.append("<h2>Accuracy against size, work and score</h2>")
    parts += [_image(p, p.stem) for p in plots]
    parts.append("<p class='note'>Literature markers:</p><ul class='note'>"
                 + "".join(f"<li>{html.escape(r['name'])}: {html.escape(r['source'])}</li>" for r in literature())
                 + "</ul>")
    if curves:
        parts += ["<h2>Training curves</h2>", _image(curves, "validation accuracy per epoch")]
    cards = [(r["experiment"], Path(d) / "MODEL_CARD.md") for r in rows for d in r.get("stage_dirs", [])
             if (Path(d) / "MODEL_CARD.md").is_file()]
    if cards:
        parts.append("<h2>Model cards</h2>")
        parts += [f"<h3>{html.escape(name)}</h3><pre>{html.escape(card.read_text())}</pre>" for name, card in cards]
    parts.append("</body></html>")
    path = Path(out) if out else study_dir / "report.html"
    atomic_write(path, "\n".join(parts).encode())
    return path
