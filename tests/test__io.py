"""Atomic writes: old or whole new content, fsync before the rename, no temp file left behind."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from bandguard import _io
from bandguard._io import atomic_write, torch_save_atomic, write_bytes_atomic, write_json_atomic


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_round_trips_create_parents_and_share_the_file(tmp_path) -> None:
    target = tmp_path / "a" / "b" / "r.json"
    write_json_atomic(target, {"acc": 0.5, "path": tmp_path})
    assert json.loads(target.read_text()) == {"acc": 0.5, "path": str(tmp_path)}
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    torch_save_atomic({"w": torch.arange(3)}, tmp_path / "w.pt")
    assert torch.equal(torch.load(tmp_path / "w.pt", weights_only=True)["w"], torch.arange(3))
    assert _leftovers(tmp_path) == [] and _leftovers(target.parent) == []


def test_a_failing_writer_leaves_the_old_content_and_no_temp_file(tmp_path) -> None:
    target = write_bytes_atomic(tmp_path / "r.bin", b"old")

    def half_then_fail(tmp) -> None:
        tmp.write_bytes(b"new but cut")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):  # an interrupt cleans up as well
        atomic_write(target, lambda tmp: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_the_file_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(_io.os, "fsync", fsync)
    monkeypatch.setattr(_io.os, "replace", replace)
    write_bytes_atomic(tmp_path / "r.bin", b"data")
    assert events == ["file", "rename", "dir"]
    assert (tmp_path / "r.bin").read_bytes() == b"data"


def test_writing_onto_a_folder_is_refused_before_anything_is_created(tmp_path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError, match="out.*is a folder"):
        write_json_atomic(tmp_path / "out", {})
    assert list((tmp_path / "out").iterdir()) == [] and _leftovers(tmp_path) == []
