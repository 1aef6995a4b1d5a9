"""benchmarks/detect.py: bare MTCNN against emotion-detect on a panning video, one JSON."""

from __future__ import annotations

import importlib.util
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "detect.py"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator knobs are glibc's")
def test_the_video_is_annotated_every_way_and_the_allocator_setting_saved(tmp_path):
    out = tmp_path / "detect.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--frames", "4", "--width", "320",
                           "--height", "180", "--every-n-frames", "1", "2", "--threads", "1",
                           "--keep-freed-memory", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["keep_freed_memory"] is True and result["frame_size"] == [320, 180]
    assert result["bare_mtcnn_frames_per_second"] > 0
    assert result["face_detector_frames_per_second"] > 0
    assert [r["every_n_frames"] for r in result["runs"]] == [1, 2]
    assert [r["searched_frames"] for r in result["runs"]] == [4, 2]
    for run in result["runs"]:
        assert run["frames_per_second"] > 0 and 0 <= run["reference_boxes_matched"] <= 1


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator knobs are glibc's")
def test_alternate_runs_each_setting_in_its_own_process_and_summarises_both(tmp_path):
    out = tmp_path / "alternated.json"
    # --keep-freed-memory given to the parent must not reach the default-setting child
    done = subprocess.run([sys.executable, str(SCRIPT), "--frames", "2", "--width", "160",
                           "--height", "90", "--every-n-frames", "2", "--threads", "1",
                           "--keep-freed-memory", "--alternate", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["rounds"] == 1 and result["cpu_cores"] >= 1
    assert "--alternate" not in result["command"] and "--out" not in result["command"]
    assert [r["keep_freed_memory"] for r in result["runs"]["default"]] == [False]
    assert [r["keep_freed_memory"] for r in result["runs"]["kept"]] == [True]
    for setting in ("default", "kept"):
        summary, run = result["settings"][setting], result["runs"][setting][0]
        assert run["frame_size"] == [160, 90] and run["max_rss_mb"] > 0
        assert summary["kernel_seconds"]["median"] == run["kernel_seconds"] >= 0
        speed = summary["every_n_frames_2_frames_per_second"]
        assert speed["min"] == speed["median"] == speed["max"] == run["runs"][0]["frames_per_second"]


@pytest.mark.parametrize("height", [40, 90, 360])
def test_without_group_photos_the_drawn_faces_fit_any_frame_height(tmp_path, height):
    spec = importlib.util.spec_from_file_location("detect_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.GROUP = tmp_path  # no photos here
    wide, content = module.panorama(height)
    assert content.startswith("drawn faces") and wide.shape == (height, 4 * height, 3)
    assert (wide != 190).any(axis=2).mean() > 0.1  # faces drawn, not a blank canvas


def test_keep_freed_memory_without_glibc_stops_before_measuring(tmp_path):
    # the child's C library is made to look foreign: the flag cannot be honoured
    out = tmp_path / "detect.json"
    probe = ("import platform, runpy, sys; platform.libc_ver = lambda *a, **k: ('musl', '1');"
             f"sys.argv = [{str(SCRIPT)!r}, '--keep-freed-memory', '--out', {str(out)!r}];"
             f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0
    assert "--keep-freed-memory needs glibc" in done.stderr
    assert not out.exists()
