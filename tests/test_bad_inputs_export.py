"""Bad inputs of ``emotion-export``: ``name`` is a file name, a folder that cannot be written
and a full disk are named, and no half-written model is left behind."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from emotion_lightning.export import export_classifier
from tests.helpers import make_read_only, undo_read_only


@pytest.mark.parametrize("name", ["../escaped", "sub/model", "..", ".", "a\\b", ""])
def test_a_name_with_folders_is_refused_before_anything_is_written(checkpoint, tmp_path, name):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"must be a plain file name .*choose the folder with "
                                         r"output_dir"):
        export_classifier(checkpoint, out, formats=["torchscript"], name=name)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_read_only_output_dir_is_named(checkpoint, tmp_path):
    out = make_read_only(tmp_path / "out")
    try:
        with pytest.raises(PermissionError, match=rf"cannot write to output_dir {out} "):
            export_classifier(checkpoint, out, formats=["torchscript"])
    finally:
        undo_read_only(out)


def test_a_full_disk_names_the_file_and_leaves_no_partial_model(checkpoint, tmp_path):
    """The export process may write at most 64 KiB per file (a full disk, as the OS says it)."""
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        from emotion_lightning.export import export_classifier
        export_classifier({str(checkpoint)!r}, {str(out)!r}, formats=["torchscript"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert f"cannot write {out / 'tiny.pt'} (File too large); free space there" in proc.stderr, \
        proc.stderr[-1500:]
    assert list(out.iterdir()) == []  # neither tiny.pt nor its .partial
