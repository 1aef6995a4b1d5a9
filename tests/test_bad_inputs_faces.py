"""Bad inputs of the face-set tools: every raw source gets a report row (links that are not
files too), a damaged report is repaired, review pages never collide nor embed files outside
the set, exclusion lists in any editor's encoding, entries matching no crop reported."""

from __future__ import annotations

import base64
import codecs
import logging
import os
import sys

import pytest
from PIL import Image

from emotion_lightning.cli import faces as faces_cli
from emotion_lightning.faces.build import _only_build
from emotion_lightning.faces.exclusions import read_exclusions
from emotion_lightning.faces.report import ReportWriter, read_report
from emotion_lightning.faces.review import write_review_pages
from tests.helpers import bad_links, builder, photo, save


# -- a damaged face-build report -------------------------------------------------------------
def test_build_repairs_a_report_cut_off_mid_row(tmp_path, caplog):
    raw, out = tmp_path / "raw", tmp_path / "out"
    for i in range(3):
        save(raw / "happy" / f"p{i}.png", photo(50 + i))
    builder().build(raw, out, progress=False)
    report = out / "report.csv"
    whole = report.read_bytes()
    last_row = whole[whole.rstrip(b"\r\n").rfind(b"\n") + 1:]
    report.write_bytes(whole[: len(whole) - len(last_row) // 2])  # power loss mid-row
    cut_source = last_row.split(b",")[0].decode()

    with caplog.at_level(logging.WARNING, "emotion_lightning.faces.report"):
        rows = builder().build(raw, out, progress=False)

    assert "the last row was cut off mid-write" in caplog.text
    assert sorted(r["source"] for r in rows) == [f"happy/p{i}.png" for i in range(3)]
    assert all(r["status"] == "kept" for r in rows)
    assert [r["source"] for r in read_report(report)].count(cut_source) == 1
    assert report.read_bytes().endswith(b"\n") and len(report.read_bytes().splitlines()) == 4


def test_report_rows_are_flushed_one_by_one(tmp_path):
    path = tmp_path / "report.csv"
    with ReportWriter(path) as writer:
        writer.write({"source": "happy/a.png", "label": "happy", "status": "dropped"})
        assert [r["source"] for r in read_report(path)] == ["happy/a.png"]  # before close


# -- the review page only embeds crops inside out_dir ---------------------------------------
def test_review_skips_crop_paths_outside_out_dir(tmp_path, caplog):
    out = tmp_path / "out"
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG SECRET BYTES")
    (out / "happy").mkdir(parents=True)
    Image.new("L", (48, 48), 120).save(out / "happy" / "ok.png")
    (out / "happy" / "link.png").symlink_to(secret)
    with ReportWriter(out / "report.csv") as report:
        for i, crop in enumerate(["happy/ok.png", "../secret.png", str(secret),
                                  "happy/link.png", "/etc/hostname"]):
            report.write({"source": f"happy/{i}.jpg", "label": "happy", "status": "kept",
                          "crop": crop})
    with caplog.at_level(logging.WARNING, "emotion_lightning.faces.review"):
        [page] = write_review_pages(out)
    text = page.read_text()
    assert text.count('class="tile"') == 1 and 'data-path="happy/ok.png"' in text
    assert base64.b64encode(secret.read_bytes()).decode() not in text
    assert "SECRET" not in text and "/etc/hostname" not in text and "../secret.png" not in text
    assert "skipped 4 crop path(s) outside" in caplog.text


def test_links_that_are_not_files_get_unreadable_rows_with_the_reason(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    save(raw / "happy" / "ok.png", photo(1))
    names = bad_links(raw / "happy")
    rows = {r["source"]: r for r in builder().build(raw, out, progress=False)}
    assert rows["happy/ok.png"]["status"] == "kept"
    reasons = {"dangling.jpg": "dangling symbolic link", "loop.jpg": "symbolic link loop",
               "here.jpg": "symbolic link to a folder"}
    for name in names:
        row = rows[f"happy/{name}"]
        assert (row["status"], row["reason"]) == ("dropped", "unreadable"), row
        assert row["detail"].startswith(reasons[name])
    assert len(read_report(out / "report.csv")) == 4, "one row per source"
    again = builder().build(raw, out, progress=False)
    assert len(again) == 4, "a resumed build does not redo them"


def test_review_pages_of_labels_spelt_alike_do_not_collide(tmp_path, caplog):
    out = tmp_path / "out"
    for label, value in (("so sad", 40), ("so_sad", 200)):
        (out / label).mkdir(parents=True)
        Image.new("L", (48, 48), value).save(out / label / "a.png")
    pages = write_review_pages(out, progress=False)
    assert len({p.name for p in pages}) == 2
    assert all(p.is_file() for p in pages)
    labels = {p.read_text().split('data-label="')[1].split('"')[0] for p in pages}
    assert labels == {"so sad", "so_sad"}


def review_set(tmp_path):
    out = tmp_path / "out"
    for name in ("HA_03.png", "b.png"):
        save(out / "happy" / name, Image.new("L", (48, 48), 90))
    return out


def run_review(out, *lists, monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", [
        "emotion-faces", "review", f"out_dir={out}", f"exclude_from=[{','.join(map(str, lists))}]",
        f"paths.log_dir={out.parent / 'logs'}", "hydra/job_logging=none", "hydra/hydra_logging=none",
        "progress=false"])
    faces_cli.main()
    return capsys.readouterr().out


def test_exclusion_entries_matching_no_crop_are_reported_not_added(tmp_path, monkeypatch, capsys):
    out = review_set(tmp_path)
    listing = tmp_path / "exclude_happy.txt"
    listing.write_text("happy/b.png\nhappy/nope.png\nHappy/HA_03.PNG\n")
    text = run_review(out, listing, monkeypatch=monkeypatch, capsys=capsys)
    assert read_exclusions(out / "exclude.txt") == {"happy/b.png"}
    assert "1 new exclusions added" in text
    assert "2 entries match no crop and were not added: 'happy/nope.png', 'Happy/HA_03.PNG' " \
           "(did you mean 'happy/HA_03.png'?)" in text


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_exclusion_lists_from_windows_editors_are_read(tmp_path, monkeypatch, capsys, encoding):
    out = review_set(tmp_path)
    listing = tmp_path / "exclude_happy.txt"
    listing.write_text("happy/b.png\r\n", encoding=encoding)
    assert listing.read_bytes()[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF8[:2])
    run_review(out, listing, monkeypatch=monkeypatch, capsys=capsys)
    assert read_exclusions(out / "exclude.txt") == {"happy/b.png"}
    (out / "exclude.txt").write_text("happy/b.png\n", encoding="utf-16")  # edited by hand
    assert read_exclusions(out / "exclude.txt") == {"happy/b.png"}


def test_an_exclusion_list_in_an_unknown_encoding_names_the_file(tmp_path):
    path = tmp_path / "exclude.txt"
    path.write_bytes("happy/\u00e9t\u00e9.png\n".encode("latin-1"))
    with pytest.raises(ValueError, match=f"^{path}: not utf-8 text"):
        read_exclusions(path)


def test_two_builds_on_one_out_dir_give_one_row_per_source(tmp_path):
    """Two ``emotion-faces build`` runs at once on one out_dir (a double-click, two
    terminals): the second stops naming the first; once it is done the report keeps every
    source once."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    for i in range(8):
        save(raw / "happy" / f"p{i}.png", photo(20 + i))
    out.mkdir()
    with _only_build(out):  # the first build, still running
        with pytest.raises(RuntimeError, match=rf"{out} is being built by process {os.getpid()}"):
            builder().build(raw, out, progress=False)
        assert not (out / "report.csv").exists()
    builder().build(raw, out, progress=False)
    builder().build(raw, out, progress=False)  # a rerun adds nothing
    rows = read_report(out / "report.csv")
    assert sorted(r["source"] for r in rows) == [f"happy/p{i}.png" for i in range(8)]
    assert all((out / r["crop"]).is_file() for r in rows if r["status"] == "kept")
