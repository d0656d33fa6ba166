"""report.html without a browser: one self-contained file (every picture inlined as a PNG, no
address outside the page, a short plain script), the plan, the progress curves, a sortable
per-case table with one row per case, the overlays, and relative links to files that exist."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

from selfconfig.evaluation.evaluate import evaluate_segmentation_folder
from selfconfig.evaluation.html_report import markdown, write_pretrain_report, write_run_report
from selfconfig.testing import SCORED_LABELS, write_scored_cases


class Page(HTMLParser):
    """The parts of a page the tests look at."""

    def __init__(self, text: str):
        super().__init__()
        self.images, self.links, self.scripts, self.tables, self.headings = [], [], [], [], []
        self._in, self._row, self._cell = [], None, ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._in.append(tag)
        if tag == "img":
            self.images.append(a["src"])
        elif tag == "a":
            self.links.append(a["href"])
        elif tag == "script":
            self.scripts.append(a)
        elif tag == "table":
            self.tables.append({"class": a.get("class"), "head": [], "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell)
        if tag == "tr" and self._row is not None:
            t = self.tables[-1]
            (t["rows"] if t["head"] else t["head"]).extend([self._row] if t["head"] else self._row)
            self._row = None
        if self._in:
            self._in.pop()

    def handle_data(self, data):
        if self._row is not None and ("td" in self._in or "th" in self._in):
            self._cell += data
        if self._in and self._in[-1] in ("h1", "h2", "h3"):
            self.headings.append(data)
        if self._in and self._in[-1] == "script":
            self.script_text = data


def _run_folder(tmp_path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = tmp_path / "results" / "D" / "Scratch__selfconfigPlans__3d" / "frac_0.25" / "fold_0"
    pred_dir, ref_dir, images = write_scored_cases(tmp_path)
    evaluate_segmentation_folder(pred_dir, ref_dir, SCORED_LABELS, output_dir=run / "validation", images=images)
    (run / "hyperparameters.json").write_text(json.dumps({"epochs": 3, "lr": 0.01, "precision": "bf16"}))
    (run / "plans.json").write_text(json.dumps({"dataset_name": "D", "configurations": {
        "3d": {"patch_size": [32, 32, 32], "batch_size": 2, "spacing": [3.9471730222532124, 0.78125, 0.78125],
               "median_shape": [44.5, 101.33333333333333, 101.0], "normalization": ["ct"]}}}))
    fig, ax = plt.subplots()
    ax.plot([1, 0.5, 0.2])
    fig.savefig(run / "progress.png")
    plt.close(fig)
    (run / "training.log").write_text("epoch 1/3\n")
    return run


def test_run_report_is_one_self_contained_file(tmp_path):
    run = _run_folder(tmp_path)
    path = write_run_report(run)
    text = path.read_text()
    page = Page(text)
    assert path == run / "report.html"
    # pictures: the progress curves, the montage and one overlay per case, all inlined PNGs
    assert len(page.images) == 1 + 1 + 3
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert all(base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for src in page.images)
    # nothing from the network: no absolute address anywhere, no script or style file
    assert "http://" not in text and "https://" not in text and "<link" not in text
    assert page.scripts == [{}] and len(page.script_text) < 1000
    # relative links, each to a file that exists
    assert page.links and all(not h.startswith(("/", "file:")) and (run / h).exists() for h in page.links)
    assert {"hyperparameters.json", "plans.json", "training.log", "validation/summary.json"} <= set(page.links)


def test_run_report_holds_the_plan_and_a_sortable_per_case_table(tmp_path):
    page = Page(write_run_report(_run_folder(tmp_path)).read_text())
    assert {"Plan", "Progress", "Validation fold"} <= set(page.headings)
    plan = {r[0]: r[1] for t in page.tables if t["head"] == ["setting", "value"] for r in t["rows"]}
    assert plan["configuration"] == "3d" and plan["patch_size"] == "[32, 32, 32]" and plan["lr"] == "0.01"
    # float lists to 4 significant digits, not the plan's full float precision; other lists as they are
    assert plan["spacing"] == "[3.947, 0.7812, 0.7812]" and plan["median_shape"] == "[44.5, 101.3, 101.0]"
    assert plan["normalization"] == "['ct']"
    (per_case,) = [t for t in page.tables if t["head"][:2] == ["case", "mean_dice"]]
    assert per_case["class"] == "sortable"
    dice = {r[0]: float(r[1]) for r in per_case["rows"]}
    assert set(dice) == {"good", "fair", "bad"} and dice["good"] == 1.0 and dice["bad"] == 0.0


def test_pretrain_report_shows_the_held_out_accuracy(tmp_path):
    out = tmp_path / "pretrain" / "SurrogateFlip__selfconfigPlans__3d"
    out.mkdir(parents=True)
    (out / "pretrain_summary.json").write_text(json.dumps(
        {"strategy": "SurrogateFlip", "held_out_accuracy": 0.8125, "chance": 0.5, "per_part": {"x": 0.9}}))
    page = Page(write_pretrain_report(out).read_text())
    rows = {r[0]: r[1] for t in page.tables for r in t["rows"]}
    assert rows["held_out_accuracy"] == "0.8125" and rows["chance"] == "0.5" and rows["x"] == "0.9"
    assert page.links == ["pretrain_summary.json"]  # only the files that exist


def test_markdown_tables_headings_and_warnings():
    html = markdown("# Title\n\ntext with **bold** and `code`\n\n| a | b |\n|---|---|\n| 1 | **2** |\n\n"
                    "> **WARNING: x**\n- a *claim* holds\n")
    page = Page(html)
    assert page.headings == ["Title"]
    assert page.tables[0]["head"] == ["a", "b"] and page.tables[0]["rows"] == [["1", "2"]]
    assert "<b>2</b>" in html and "<code>code</code>" in html and "<blockquote><b>WARNING: x</b>" in html
    assert "<li>a <i>claim</i> holds</li>" in html
    assert "<script" not in markdown("<script>alert(1)</script>")  # text is escaped
