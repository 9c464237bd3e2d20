"""Atomic writes: old or whole new content, fsync before the rename, no temp file left behind."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
import time

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


# --------------------------------------------------------------------------- debris of hard kills

_KILLED_WRITER = """
import sys, time
from bandguard._io import atomic_write

def write(tmp):
    tmp.write_bytes(b"half of the new content")
    print(tmp.name, flush=True)
    time.sleep(600)  # killed here, mid-write

atomic_write(sys.argv[1], write)
"""


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _age(path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_a_temp_file_left_by_kill_9_is_removed_by_the_next_write_to_its_folder(tmp_path) -> None:
    target = write_bytes_atomic(tmp_path / "r.bin", b"old")
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE,
                             text=True, env=env)
    try:
        temp = tmp_path / child.stdout.readline().strip()  # the writer is now mid-write
        assert temp.name and temp.is_file()
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert temp.is_file() and target.read_bytes() == b"old"  # the debris the issue reports
    write_bytes_atomic(tmp_path / "other.bin", b"x")  # fresh debris: inside the grace period, kept
    assert temp.is_file()
    _age(temp, _io.DEAD_WRITER_GRACE_S + 5)
    write_bytes_atomic(tmp_path / "other.bin", b"y")  # any write into the folder cleans it
    assert not temp.exists() and _leftovers(tmp_path) == []
    assert target.read_bytes() == b"old" and (tmp_path / "other.bin").read_bytes() == b"y"


def test_only_our_own_stale_temp_files_are_removed(tmp_path) -> None:
    host, dead, alive = _io._HOST, _dead_pid(), os.getpid()
    other_host = "0" * 8 if host != "0" * 8 else "1" * 8
    files = {
        "dead writer, aged": (f".r.json.bg{host}p{dead}.abc123_x.tmp", 120, False),
        "dead writer, fresh": (f".r.json.bg{host}p{dead}.abc123_y.tmp", 5, True),
        "live writer (this process), aged": (f".r.json.bg{host}p{alive}.abc123_z.tmp", 3600, True),
        "live writer, older than a day": (f".r.json.bg{host}p{alive}.abc123_w.tmp", _io.STALE_TEMP_S + 60, False),
        "other host, an hour": (f".r.json.bg{other_host}p{dead}.abc123_v.tmp", 3600, True),
        "other host, older than a day": (f".r.json.bg{other_host}p{dead}.abc123_u.tmp", _io.STALE_TEMP_S + 60,
                                         False),
        "old-style name": (".r.json.k2j3h4g5.tmp", _io.STALE_TEMP_S + 60, True),
        "a user's file": (f".notes.bg{host}p{dead}.tmp", _io.STALE_TEMP_S + 60, True),
        "not hidden": (f"r.json.bg{host}p{dead}.abc123_t.tmp", _io.STALE_TEMP_S + 60, True),
    }
    for name, seconds, _ in files.values():
        (tmp_path / name).write_bytes(b"x")
        _age(tmp_path / name, seconds)
    removed = {p.name for p in _io.remove_stale_temps(tmp_path)}
    for what, (name, _, kept) in files.items():
        assert (tmp_path / name).exists() == kept, what
        assert (name in removed) != kept, what
    # The names atomic_write gives its own temp files match the pattern it cleans.
    seen = []
    atomic_write(tmp_path / "r.json", lambda tmp: seen.append(tmp.name) or tmp.write_text("{}"))
    assert _io._TEMP.match(seen[0]) and f"p{alive}." in seen[0]
