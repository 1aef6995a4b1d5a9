"""emotion-faces review: escaped, self-contained contact sheets and exclusion lists."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotion_lightning.cli import faces as faces_cli
from emotion_lightning.faces import add_exclusions, read_exclusions, write_review_pages
from emotion_lightning.faces.report import ReportWriter

HOSTILE_NAME = 'x"><script>alert(1)<script><img src=x onerror=alert(2)>.jpg'  # no "/": a file name
HOSTILE_URL = "javascript:alert(document.cookie)//<b>"
QUOTED_URL = 'https://example.org/a.jpg?q="><script>alert(3)</script>'


class Page(HTMLParser):
    """Collects what a browser would see: elements, attributes and script bodies."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.texts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.texts).append(data)


def make_dataset(out: Path) -> None:
    """Three kept crops (one hostile) and a dropped photo, as emotion-faces build writes them."""
    rows = [
        ("happy/" + HOSTILE_NAME, "happy/evil_1.png", HOSTILE_URL, "also_labelled:sad"),
        ("happy/b.jpg", "happy/b_2.png", QUOTED_URL, ""),
        ("sad/c.jpg", "sad/c_3.png", "http://example.org/c.jpg", ""),
    ]
    with ReportWriter(out / "report.csv") as report:
        for i, (source, crop, url, flags) in enumerate(rows):
            (out / crop).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((48, 48), 40 * (i + 1), np.uint8)).save(out / crop)
            report.write({"source": source, "label": crop.split("/")[0], "status": "kept",
                          "crop": crop, "prob": "0.9990", "faces": "1", "url": url, "flags": flags})  # fmt: skip
        report.write(
            {"source": "sad/none.jpg", "label": "sad", "status": "dropped", "reason": "no_face"}
        )


def test_pages_escape_untrusted_names_and_urls(tmp_path):
    make_dataset(tmp_path)
    pages = write_review_pages(tmp_path)

    assert [p.relative_to(tmp_path).as_posix() for p in pages] == [
        "review/happy.html",
        "review/sad.html",
    ]
    text = pages[0].read_text()
    assert "<script>alert" not in text
    page = Page()
    page.feed(text)
    assert len(page.scripts) == 1 and "alert" not in page.scripts[0]  # only the page's own script
    assert not any(attrs.get("onerror") for _, attrs in page.tags)
    links = [attrs["href"] for tag, attrs in page.tags if tag == "a"]
    assert links == [QUOTED_URL]  # http(s) only, the quote inside stays inside the attribute
    boxes = [attrs for tag, attrs in page.tags if tag == "input"]
    assert [b["data-path"] for b in boxes] == ["happy/evil_1.png", "happy/b_2.png"]
    assert HOSTILE_NAME in page.texts  # shown to the reviewer as the plain text it is
    assert "also_labelled:sad" in page.texts


def test_pages_are_self_contained_and_locked_down(tmp_path):
    make_dataset(tmp_path)
    text = write_review_pages(tmp_path)[1].read_text()
    page = Page()
    page.feed(text)
    images = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,")
    decoded = base64.b64decode(images[0].split(",", 1)[1])
    assert decoded == (tmp_path / "sad" / "c_3.png").read_bytes()
    assert not re.search(r"""(src|href)=["'](?!data:|https?:)""", text)  # nothing else to fetch
    (csp,) = [a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv")]
    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp
    assert 'download = "exclude_" + label' in page.scripts[0]


def test_existing_exclusions_start_ticked(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "exclude.txt").write_text("happy/b_2.png\n")
    page = Page()
    page.feed(write_review_pages(tmp_path)[0].read_text())
    ticked = {a["data-path"]: "checked" in a for t, a in page.tags if t == "input"}
    assert ticked == {"happy/evil_1.png": False, "happy/b_2.png": True}


def test_exclusion_lists_are_read_and_merged(tmp_path):
    path = tmp_path / "exclude.txt"
    assert read_exclusions(path) == set()
    path.write_text("# reviewed 2024-05-01\nhappy/a.png\n\n  ./sad/b.png  \nsad\\c.png")
    assert read_exclusions(path) == {"happy/a.png", "sad/b.png", "sad/c.png"}
    assert add_exclusions(path, ["happy/a.png", "happy/new.png", "", "# note"]) == 1
    assert path.read_text().endswith("sad\\c.png\nhappy/new.png\n")
    assert "happy/new.png" in read_exclusions(path)
    path.write_text("../../etc/passwd\n")
    with pytest.raises(
        ValueError, match=r"exclude.txt:1: '../../etc/passwd' must be a path relative"
    ):
        read_exclusions(path)


def test_review_without_a_build_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `emotion-faces build"):
        write_review_pages(tmp_path)


def test_cli_review_merges_downloaded_lists(tmp_path, monkeypatch, capsys):
    make_dataset(tmp_path)
    download = tmp_path / "exclude_happy.txt"
    download.write_text("happy/evil_1.png\n")
    monkeypatch.setattr(sys, "argv", [
        "emotion-faces", "review", f"out_dir={tmp_path}", f"exclude_from=[{download}]",
        f"paths.log_dir={tmp_path / 'logs'}", "hydra/job_logging=none", "hydra/hydra_logging=none",
    ])  # fmt: skip

    faces_cli.main()

    assert read_exclusions(tmp_path / "exclude.txt") == {"happy/evil_1.png"}
    assert (tmp_path / "review" / "happy.html").exists()
    assert "1 new exclusions" in capsys.readouterr().out


FAKE_DOM = """
const handlers = {}, made = [];
function element(id) {
  return {id, value: "", textContent: "", classList: {toggle() {}}, select() {}, remove() {},
          addEventListener(kind, fn) { handlers[id + ":" + kind] = fn; }, click() {}};
}
const boxes = PATHS.map((path, i) => Object.assign(element("box" + i),
  {dataset: {path}, checked: i === 0, closest() { return element("tile"); }}));
const byId = {list: element("list"), count: element("count"), download: element("download"),
              copy: element("copy")};
global.document = {
  body: {dataset: {label: "happy"}, appendChild() {}},
  querySelectorAll: () => boxes,
  getElementById: (id) => byId[id],
  createElement: () => { const a = element("a"); made.push(a); return a; },
};
global.Blob = class { constructor(parts) { this.text = parts.join(""); } };
global.URL = {createObjectURL: (blob) => blob};
eval(SCRIPT);
boxes[1].checked = true;
handlers["box1:change"]();
handlers["download:click"]();
console.log(JSON.stringify({list: byId.list.value, count: byId.count.textContent,
                            name: made[0].download, file: made[0].href.text}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_page_script_builds_and_downloads_the_exclusion_list(tmp_path):
    make_dataset(tmp_path)
    page = Page()
    page.feed(write_review_pages(tmp_path)[0].read_text())
    paths = [a["data-path"] for t, a in page.tags if t == "input"]
    program = f"const PATHS = {json.dumps(paths)};\nconst SCRIPT = {json.dumps(page.scripts[0])};\n"
    done = subprocess.run(
        ["node", "-e", program + FAKE_DOM], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    expected = "happy/evil_1.png\nhappy/b_2.png\n"  # one relative path per line
    assert result == {"list": expected, "count": 2, "name": "exclude_happy.txt", "file": expected}
