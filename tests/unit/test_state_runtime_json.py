"""state.write_runtime_json: the /run state files are written atomically (temp file, rename) but
not fsynced (issue 13), while write_json_atomic still fsyncs what must survive a power loss."""

from __future__ import annotations

import json
import os
import stat

import pytest

from netns_vault import paths, state


@pytest.fixture
def no_fsync(monkeypatch):
    def fsync(fd: int) -> None:
        pytest.fail(f"fsync({fd}) called")

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.fixture
def fsyncs(monkeypatch):
    """The paths fsync was called on (and the real fsync still runs)."""
    calls: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


DATA = {"name": "v", "tunnel": {"pid": 12, "driver": "userspace"}, "b": [1, 2]}


def test_write_runtime_json_never_fsyncs(tmp_path, no_fsync):
    path = tmp_path / "v.json"
    state.write_runtime_json(str(path), DATA)
    assert json.loads(path.read_text()) == DATA
    assert path.read_text() == json.dumps(DATA, indent=2, sort_keys=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["v.json"]  # no temp file left


def test_write_runtime_json_replaces_by_rename(tmp_path, no_fsync):
    """A reader that opened the old file keeps reading it whole: the new one is another inode,
    never the old one rewritten in place."""
    path = tmp_path / "v.json"
    state.write_runtime_json(str(path), {"old": True})
    with open(path) as reader:
        old_inode = os.fstat(reader.fileno()).st_ino
        state.write_runtime_json(str(path), {"new": True})
        assert json.load(reader) == {"old": True}
    assert path.stat().st_ino != old_inode
    assert json.loads(path.read_text()) == {"new": True}
    assert os.listdir(tmp_path) == ["v.json"]


def test_write_runtime_json_removes_its_temp_file_on_failure(tmp_path, no_fsync):
    path = tmp_path / "v.json"
    path.mkdir()  # the rename fails
    with pytest.raises(OSError):
        state.write_runtime_json(str(path), DATA)
    assert os.listdir(tmp_path) == ["v.json"] and path.is_dir()


def test_write_json_atomic_still_fsyncs_the_temp_file_before_the_rename(tmp_path, fsyncs):
    path = tmp_path / "lockdown.json"
    state.write_json_atomic(str(path), DATA)
    assert fsyncs == [f"{path}.tmp{os.getpid()}"]  # the temp file, not yet renamed
    assert json.loads(path.read_text()) == DATA
    assert os.listdir(tmp_path) == ["lockdown.json"]


def test_write_state_is_a_runtime_write(tmp_path, monkeypatch, no_fsync):
    """`up` writes its state through write_runtime_json: no fsync on its path."""
    monkeypatch.setattr(paths, "STATE_DIR", str(tmp_path / "state"))
    state.write_state("nvt13x", DATA)
    assert state.read_state("nvt13x") == DATA
