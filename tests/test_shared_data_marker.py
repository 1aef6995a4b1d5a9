"""The requires_shared marker (conftest.py): only the tests it marks wait for ../shared/data."""

from __future__ import annotations

import pytest

from tests.conftest import missing_for


def test_an_unmarked_test_needs_no_data():
    assert missing_for([]) == []


def test_a_marked_test_needs_what_it_names(monkeypatch, tmp_path):
    monkeypatch.setattr("tests.conftest.SHARED_DATA", tmp_path)
    (tmp_path / "fer2013").mkdir()
    assert missing_for([pytest.mark.requires_shared("fer2013").mark]) == []
    assert missing_for([pytest.mark.requires_shared("fer2013", "wild").mark]) == [tmp_path / "wild"]
    assert missing_for([pytest.mark.requires_shared.mark]) == []  # bare: the folder itself
    monkeypatch.setattr("tests.conftest.SHARED_DATA", tmp_path / "absent")
    assert missing_for([pytest.mark.requires_shared.mark]) == [tmp_path / "absent"]
