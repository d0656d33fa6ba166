"""``report.html``: one self-contained page per training run, pre-training and experiment.

Everything a reader needs is in the one file: pictures are inlined as base64 PNGs, the style is
inline, and a few lines of plain JavaScript sort a table by the column clicked; nothing is
fetched from the network. Links to the files the page was made from are relative, so the page
still leads to them after the results folder is moved or copied.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from selfconfig.utils import atomic_write_text, read_json

REPORT_NAME = "report.html"
#: per-case overlay PNGs shown in a scored folder's section (the montage is always shown)
MAX_CASE_PICTURES = 24

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:90%;display:block;overflow-x:auto}th,td{border:1px solid #ccc;padding:2px 8px;text-align:right}
th{background:#eee}table.sortable th{cursor:pointer}th:first-child,td:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:4px 0}code{background:#f4f4f4}
blockquote{border-left:4px solid #d62728;margin:.5em 0;padding:.2em 1em;background:#fff4f4}
.sources a{margin-right:1em}"""

#: click a column heading to sort by it (numbers as numbers), again to reverse
SORT_SCRIPT = """document.querySelectorAll("table.sortable th").forEach(function(th){th.addEventListener("click",
function(){var body=th.closest("table").tBodies[0],i=Array.prototype.indexOf.call(th.parentNode.children,th),
up=th.dataset.order!=="up";th.dataset.order=up?"up":"down";Array.from(body.rows).sort(function(a,b){
var x=a.cells[i].textContent,y=b.cells[i].textContent,nx=parseFloat(x),ny=parseFloat(y),
c=(isNaN(nx)||isNaN(ny))?x.localeCompare(y):nx-ny;return up?c:-c;}).forEach(function(r){body.appendChild(r);});});});"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def cell_text(value: Any) -> str:
    """A table cell: floats to 4 digits (also inside lists, e.g. a plan's spacing), missing and
    NaN values empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (list, tuple)):
        return str(_rounded(value))
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _rounded(value: Any) -> Any:
    """``value`` with every finite float rounded to 4 significant digits (lists and tuples too)."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.4g}")
    if isinstance(value, (list, tuple)):
        items = [_rounded(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def image(path: Path, alt: str = "") -> str:
    """The PNG inlined as base64 ('' when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt or path.name)}">'


def link(path: Path, base: Path, text: str | None = None) -> str:
    rel = Path(os.path.relpath(Path(path), Path(base))).as_posix()
    return f'<a href="{esc(rel)}">{esc(text or rel)}</a>'


def table(rows: Sequence[dict], columns: Sequence[str] | None = None, sortable: bool = True,
          escape: bool = True) -> str:
    """An HTML table; ``escape=False``: the cells are HTML already."""
    if not rows:
        return "<p>(none)</p>"
    columns = list(columns or rows[0].keys())
    text = (lambda v: esc(cell_text(v))) if escape else (lambda v: "" if v is None else str(v))
    head = "".join(f"<th>{text(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{text(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f'<table{" class=sortable" if sortable else ""}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def key_values(d: dict, keys: Iterable[str] | None = None) -> str:
    """A two-column table of the (scalar or short list) entries of ``d`` that are set."""
    shown = [(k, d[k]) for k in (keys or d) if d.get(k) is not None and not isinstance(d[k], dict)]
    return table([{"setting": k, "value": v} for k, v in shown], sortable=False)


def _inline(text: str) -> str:
    text = esc(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"\*(\w.*?)\*", r"<i>\1</i>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def markdown(text: str) -> str:
    """The markdown that selfconfig writes (headings, pipe tables, quotes, paragraphs) as HTML."""
    out, rows = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [_inline(c.strip()) for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
            continue
        if rows:
            out.append(table([dict(zip(rows[0], r)) for r in rows[1:]], rows[0], escape=False))
            rows = []
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 1, 4)
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<ul><li>{_inline(line[2:])}</li></ul>")
        elif line.startswith(">"):
            out.append(f"<blockquote>{_inline(line.lstrip('> '))}</blockquote>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    return "\n".join(out)


def write_page(folder: Path, title: str, sections: Sequence[str], sources: Sequence[Path]) -> Path:
    """Write ``folder/report.html``: the sections, then links to the ``sources`` that exist."""
    folder = Path(folder)
    found = [link(p, folder, Path(p).relative_to(folder).as_posix() if Path(p).is_relative_to(folder) else None)
             for p in sources if Path(p).exists()]
    body = "\n".join(s for s in sections if s)
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=utf-8><title>{esc(title)}</title><style>{STYLE}</style>"
            f"</head><body>\n<h1>{esc(title)}</h1>\n{body}\n<h2>Files</h2><p class=sources>{''.join(found)}</p>\n"
            f"<script>{SORT_SCRIPT}</script></body></html>\n")
    atomic_write_text(folder / REPORT_NAME, page)
    return folder / REPORT_NAME


# ----------------------------------------------------------------------------------------------
# sections


def scores_section(folder: Path, base: Path, heading: str) -> str:
    """A scored folder (``summary.json`` of :mod:`selfconfig.evaluation.evaluate`): the means,
    the per-case table, the montage and the cases' overlays (classification: its figures)."""
    folder = Path(folder)
    if not (folder / "summary.json").is_file():
        return ""
    s = read_json(folder / "summary.json")
    parts = [f"<h2>{esc(heading)}</h2>"]
    if s.get("task") == "segmentation":
        means = {"mean Dice": s["mean"]["mean_dice"], **s["mean"]["dice_per_class"]}
        parts += [table([means], sortable=False), "<h3>Per case (click a heading to sort)</h3>",
                  table(_segmentation_rows(s["per_case"])), _overlays(folder, s)]
    else:
        parts += [key_values(s.get("metrics", {})), *(image(folder / f) for f in s.get("figures", [])),
                  "<h3>Per case (click a heading to sort)</h3>", table(s.get("per_case", []))]
    parts.append(f"<p class=sources>{link(folder / 'summary.json', base)} {link(folder / 'per_case.csv', base)}</p>")
    return "\n".join(parts)


def _segmentation_rows(per_case: list[dict]) -> list[dict]:
    return [{"case": pc["case"], "mean_dice": pc["mean_dice"],
             **{f"dice_{n}": m.get("dice") for n, m in pc["metrics"].items()}} for pc in per_case]


def _overlays(folder: Path, summary: dict) -> str:
    if "overlays" not in summary:
        return ""
    pictures = folder / summary["overlays"]["folder"]
    shown = [pc["case"] for pc in summary["per_case"]][:MAX_CASE_PICTURES]
    cases = "".join(image(pictures / f"{c}.png", c) for c in shown)
    return (f"<h3>Best, median and worst case</h3>{image(pictures / 'montage.png')}"
            f"<details><summary>every case ({len(shown)} of {len(summary['per_case'])})</summary>{cases}</details>")


def plan_section(plans_file: Path, configuration: str, hyperparameters: dict) -> str:
    """The configuration the run trained (from its copy of the plans) and its main settings."""
    parts = ["<h2>Plan</h2>"]
    if Path(plans_file).is_file():
        plans = read_json(plans_file)
        config = plans.get("configurations", {}).get(configuration, {})
        parts.append(key_values({"dataset": plans.get("dataset_name"), "configuration": configuration,
                                 **{k: config.get(k) for k in ("patch_size", "batch_size", "spacing",
                                                               "normalization", "median_shape")}}))
    parts.append(key_values(hyperparameters, ("epochs", "iters_per_epoch", "optimizer", "lr", "batch_size",
                                              "precision", "max_minutes", "pretrained_weights", "seed")))
    return "\n".join(parts)


def run_configuration(run_dir: Path) -> str:
    """``3d`` of ``.../<Trainer>__<plans>__3d[__tag]/frac_<f>/fold_<k>`` (or of a pre-training's folder)."""
    for folder in (Path(run_dir), *Path(run_dir).parents):
        parts = folder.name.split("__")
        if len(parts) >= 3:
            return parts[2]
    return ""


def write_run_report(run_dir: Path) -> Path:
    """``report.html`` of a training run: its plan, progress curves, validation and test scores."""
    run_dir = Path(run_dir)
    hp_file = run_dir / "hyperparameters.json"
    hp = read_json(hp_file) if hp_file.is_file() else {}
    title = " / ".join(run_dir.parts[-3:])
    sections = [plan_section(run_dir / "plans.json", run_configuration(run_dir), hp),
                "<h2>Progress</h2>" + image(run_dir / "progress.png", "progress"),
                scores_section(run_dir / "validation", run_dir, "Validation fold"),
                scores_section(run_dir / "test", run_dir, "Held-out test set")]
    sources = [hp_file, run_dir / "plans.json", run_dir / "cases.json", run_dir / "initialization.json",
               run_dir / "training.log", run_dir / "progress.png", run_dir / "checkpoint_final.pt"]
    return write_page(run_dir, title, sections, sources)


def write_pretrain_report(out_dir: Path, summary_name: str = "pretrain_summary.json") -> Path:
    """``report.html`` of a pre-training: what it learned of its pretext task, its progress."""
    out_dir = Path(out_dir)
    summary = read_json(out_dir / summary_name) if (out_dir / summary_name).is_file() else {}
    sections = ["<h2>Pretext task (held out)</h2>" + key_values(summary),
                key_values(summary.get("per_part", {})) if summary.get("per_part") else "",
                "<h2>Progress</h2>" + image(out_dir / "progress.png", "progress")]
    sources = [out_dir / summary_name, out_dir / "settings.json", out_dir / "pool.json", out_dir / "pretraining.log",
               out_dir / "progress.png", out_dir / "checkpoint.pt"]
    return write_page(out_dir, f"pre-training {'/'.join(out_dir.parts[-3:])}", sections, sources)
