"""csg.hub.resolve_folder: the one checkpoint-folder resolver (local folder or cached hub id)."""
from __future__ import annotations

import pytest

from csg.errors import WeightsNotFoundError
from csg.hub import resolve_folder


def test_local_folder_and_marker(tmp_path):
    (tmp_path / "ck").mkdir()
    assert resolve_folder(tmp_path / "ck") == tmp_path / "ck"
    with pytest.raises(WeightsNotFoundError, match="not an audio2pose checkpoint .no a.json.; hint"):
        resolve_folder(tmp_path / "ck", what="audio2pose checkpoint", marker="a.json", hint="hint")
    (tmp_path / "ck" / "a.json").write_text("{}")
    assert resolve_folder(tmp_path / "ck", marker="a.json") == tmp_path / "ck"


def test_missing_paths_and_uncached_ids_never_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsNotFoundError, match="folder not found"):
        resolve_folder(tmp_path / "nope" / "deeper")
    with pytest.raises(WeightsNotFoundError, match="Hugging Face cache.*huggingface-cli download"):
        resolve_folder("nobody/not-cached")
