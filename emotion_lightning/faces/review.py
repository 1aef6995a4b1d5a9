"""Self-contained HTML contact sheets for reviewing face crops, one page per label.

The reviewer ticks the crops to exclude and downloads (or copies) the list, one path
per line, which ``emotion-faces review exclude_from=[...]`` adds to
``<out_dir>/exclude.txt``. Crops are embedded as data URIs, so a page can be mailed
or opened anywhere. File names and URLs come from the web and are untrusted: every
one is HTML-escaped, links are only made for http(s) URLs, and a Content Security
Policy lets no script run but the page's own.

Given a classifier (``emotion-faces review ckpt_path=...``) the review is model-assisted:
each page puts the faces whose label the model doubts most first (:mod:`.suspicion`) and
``review/ranking.csv`` ranks every crop. Any ``<label>/`` folders of crops can be reviewed,
with or without the ``report.csv`` of ``emotion-faces build``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import cv2
import numpy as np
from tqdm import tqdm

from emotion_lightning.faces.class_folders import REVIEW_DIR, list_class_folders
from emotion_lightning.faces.exclusions import EXCLUDE_NAME, read_exclusions
from emotion_lightning.faces.report import REPORT_NAME, read_report
from emotion_lightning.faces.suspicion import RANKING_NAME, Scored, score_crops, write_ranking
from emotion_lightning.images import UnreadableImage, load_gray, resize_square

THUMBNAIL = 96  # side of the faces on the page
log = logging.getLogger(__name__)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1em; background: #fafafa; }
header { position: sticky; top: 0; background: #fafafa; padding: .5em 0; border-bottom: 1px solid #ccc; }
.grid { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 1em; }
.tile { width: 104px; font-size: 10px; border: 2px solid transparent; padding: 2px; cursor: pointer; overflow: hidden; }
.tile img { width: 96px; height: 96px; image-rendering: pixelated; display: block; }
.tile.excluded { border-color: #c00; opacity: .45; }
.tile .name { display: block; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.flag { color: #a60; }
.guess { display: block; color: #555; }
.guess.doubt { color: #c00; }
textarea { width: 100%; height: 5em; }
"""

_SCRIPT = """
(function () {
  var label = document.body.dataset.label;
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input.exclude"));
  var list = document.getElementById("list");
  function update() {
    var paths = [];
    boxes.forEach(function (box) {
      box.closest(".tile").classList.toggle("excluded", box.checked);
      if (box.checked) { paths.push(box.dataset.path); }
    });
    list.value = paths.join("\\n") + (paths.length ? "\\n" : "");
    document.getElementById("count").textContent = paths.length;
  }
  boxes.forEach(function (box) { box.addEventListener("change", update); });
  document.getElementById("download").addEventListener("click", function () {
    var blob = new Blob([list.value], {type: "text/plain"});
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "exclude_" + label + ".txt";
    document.body.appendChild(link);
    link.click();
    link.remove();
  });
  document.getElementById("copy").addEventListener("click", function () {
    list.select();
    if (navigator.clipboard) { navigator.clipboard.writeText(list.value); }
    else { document.execCommand("copy"); }
  });
  update();
})();
"""


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


_CSP = (
    "default-src 'none'; img-src data:; "
    f"style-src {_csp_hash(_STYLE)}; script-src {_csp_hash(_SCRIPT)}; form-action 'none'"
)


def _link(url: str) -> str:
    """An escaped link for http(s) URLs; anything else (``javascript:``...) as inert text."""
    if not url:
        return ""
    if urlsplit(url).scheme.lower() in ("http", "https"):
        return (
            f'<a href="{html.escape(url, quote=True)}" rel="noopener noreferrer nofollow" '
            'target="_blank">source</a>'
        )
    return f'<span title="{html.escape(url, quote=True)}">(no link)</span>'


def _tile(row: dict[str, str], png: bytes, excluded: bool, score: Scored | None = None) -> str:
    crop, source = row["crop"], row["source"]
    title = f"{source}\nprob {row.get('prob', '')}, faces {row.get('faces', '')}"
    if score is not None:
        title += f"\nsuspicion {score.suspicion:.2f}"
    flags = row.get("flags", "")
    return (
        f'<label class="tile" title="{html.escape(title, quote=True)}">'
        f'<img alt="{html.escape(crop, quote=True)}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        f'<input type="checkbox" class="exclude" data-path="{html.escape(crop, quote=True)}"'
        f"{' checked' if excluded else ''}> exclude"
        f'<span class="name">{html.escape(Path(source).name)}</span>'
        + (f'<span class="flag">{html.escape(flags)}</span>' if flags else "")
        + (f'<span class="guess{" doubt" if score.predicted != row["label"] else ""}">'
           f"model: {html.escape(score.predicted)} {score.confidence:.2f}</span>"
           if score is not None else "")
        + f"{_link(row.get('url', ''))}</label>"
    )


def render_page(label: str, tiles: list[str], excluded: int, ranked: bool = False) -> str:
    """The HTML page of one label's tiles (``ranked``: sorted by a model, most suspicious
    first)."""
    name = html.escape(label)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>Review: {name}</title><style>{_STYLE}</style></head>"
        f'<body data-label="{html.escape(label, quote=True)}"><header>'
        f'<h1>{name}: {len(tiles)} crops, <span id="count">{excluded}</span> excluded</h1>'
        "<p>Tick the crops that are not a clear face showing this emotion. Then download the "
        "list and run <code>emotion-faces review out_dir=... exclude_from=[the file]</code>, "
        f"or paste it into <code>{EXCLUDE_NAME}</code> in the dataset folder. Already excluded "
        f"crops start ticked; un-ticking does not remove them from {EXCLUDE_NAME} "
        "(delete the line there).</p>"
        + ("<p>Sorted by a model, the faces whose label it doubts most first; under each face, "
           "its guess and confidence (red: not this label).</p>" if ranked else "")
        +
        '<button id="download" type="button">Download exclusion list</button> '
        '<button id="copy" type="button">Copy</button>'
        '<textarea id="list" readonly></textarea></header>'
        f'<div class="grid">{"".join(tiles)}</div>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


class CropClassifier(Protocol):
    """What the assisted review needs of a model (an ``EmotionClassifier`` has both)."""

    class_names: list[str]

    def predict_faces(self, crops: Sequence[np.ndarray]) -> np.ndarray: ...


def review_rows(out_dir: str | Path) -> list[dict[str, str]]:
    """The kept crops that exist: ``report.csv``'s rows, or for a set without one (any
    ``<label>/`` folders of crops) one row per image."""
    out_dir = Path(out_dir)
    rows = read_report(out_dir / REPORT_NAME)
    if not rows:
        if not any(not p.name.startswith(".") for p in _subdirs(out_dir)):
            raise FileNotFoundError(
                f"no {REPORT_NAME} and no <label>/ folders of crops in {out_dir}; run "
                f"`emotion-faces build out_dir={out_dir}` first"
            )
        return [{"crop": rel, "source": rel, "label": label, "_file": str(out_dir / rel)}
                for rel, label in list_class_folders(out_dir)]
    root = out_dir.resolve()
    found, outside = [], []
    for row in rows:
        if row["status"] != "kept" or not row["crop"]:
            continue
        crop = (out_dir / row["crop"]).resolve()
        if not crop.is_relative_to(root):  # a tampered report: /etc/..., ../..., a symlink out
            outside.append(row["crop"])
        elif crop.is_file():
            found.append({**row, "_file": str(crop)})
    if outside:
        log.warning("%s: skipped %d crop path(s) outside %s (tampered report?), e.g. %r",
                    out_dir / REPORT_NAME, len(outside), out_dir, outside[0])
    return found


def _subdirs(path: Path) -> list[Path]:
    return [p for p in path.iterdir() if p.is_dir()] if path.is_dir() else []


def rank_rows(
    rows: list[dict[str, str]], classifier: CropClassifier, progress: bool = True
) -> list[Scored]:
    """Score every readable crop of ``rows`` with ``classifier``, most suspicious first."""
    readable, crops = [], []
    for row in tqdm(rows, desc="scoring crops", unit=" img", disable=not progress):
        try:
            crops.append(load_gray(row["_file"]))
            readable.append(row)
        except UnreadableImage as error:
            log.warning("not scored: %s (%s)", row["_file"], error.reason)
    unknown = sorted({r["label"] for r in readable} - set(classifier.class_names))
    if unknown:
        log.warning("labels %s are not among the model's classes %s: their crops are not "
                    "ranked", unknown, classifier.class_names)
    probs = classifier.predict_faces(crops) if crops else np.zeros((0, 1))
    return score_crops([r["crop"] for r in readable], [r["label"] for r in readable], probs,
                       list(classifier.class_names))


def write_review_pages(
    out_dir: str | Path, classifier: CropClassifier | None = None, progress: bool = True
) -> list[Path]:
    """Write ``out_dir/review/<label>.html`` for every label with kept crops; return the pages.

    With a ``classifier``, each page is sorted most suspicious first (:mod:`.suspicion`), each
    face shows the model's guess and confidence, and ``out_dir/review/ranking.csv`` ranks every
    crop of every label.
    """
    out_dir = Path(out_dir)
    rows = review_rows(out_dir)
    excluded = read_exclusions(out_dir / EXCLUDE_NAME)
    review_dir = out_dir / REVIEW_DIR
    review_dir.mkdir(exist_ok=True)
    scores: dict[str, Scored] = {}
    if classifier is not None:
        ranked = rank_rows(rows, classifier, progress)
        write_ranking(review_dir / RANKING_NAME, ranked)
        scores = {s.file: s for s in ranked}
        order = {s.file: i for i, s in enumerate(ranked)}
        rows = sorted(rows, key=lambda r: order.get(r["crop"], len(order)))
    by_label: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row)
    pages = []
    names = page_names(by_label)
    for label, label_rows in sorted(by_label.items()):
        tiles = [
            _tile(row, _thumbnail(Path(row["_file"])), row["crop"] in excluded,
                  scores.get(row["crop"]))
            for row in label_rows
        ]
        ticked = sum(row["crop"] in excluded for row in label_rows)
        page = review_dir / f"{names[label]}.html"
        page.write_text(render_page(label, tiles, ticked, ranked=bool(scores)), encoding="utf-8")
        pages.append(page)
    return pages


def _thumbnail(path: Path) -> bytes:
    """PNG bytes of the crop: the file itself when it is a small PNG, else a <= 96 px copy."""
    data = path.read_bytes()
    if path.suffix.lower() == ".png" and len(data) < 32_768:
        return data
    try:
        gray = load_gray(path)
    except UnreadableImage:
        gray = np.zeros((THUMBNAIL, THUMBNAIL), np.uint8)
    if max(gray.shape) > THUMBNAIL:
        gray = resize_square(gray, THUMBNAIL)
    return cv2.imencode(".png", gray)[1].tobytes()


def page_names(labels) -> dict[str, str]:
    """A distinct file stem for each label: the label itself when it is a plain lower-case
    name (letters, digits, ``-``, ``_``), otherwise its plain form plus a hash of the label,
    so ``so sad`` and ``so_sad`` (or ``Happy`` and ``happy`` on a case-blind disk) never
    share a page."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for label in sorted(labels):
        plain = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in label)
        digest = hashlib.sha256(label.encode()).hexdigest()
        name, length = plain, 0
        if not plain or plain != label or label != label.lower():  # lossy: ambiguous alone
            name, length = f"{plain or 'label'}-{digest[:8]}", 8
        while name.lower() in taken:  # a label spelt like another's hashed name
            length += 8
            name = f"{plain or 'label'}-{digest[:length]}"
        names[label] = name
        taken.add(name.lower())
    return names
