"""dns._remove_tree: `rm -rf` of /etc/netns/vault-NAME with os calls, shutil.rmtree only when the
directory holds a directory (`vault down` never imports shutil for the plain files a vault
writes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from netns_vault.dns import _remove_tree


@pytest.fixture
def rmtree_calls(monkeypatch):
    calls: list[str] = []
    real = shutil.rmtree

    def spy(path, *args, **kwargs):
        calls.append(os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", spy)
    return calls


@pytest.fixture
def outside(tmp_path):
    """A file and a directory outside the tree, which links inside it point to."""
    base = tmp_path / "outside"
    (base / "dir").mkdir(parents=True)
    (base / "dir" / "keep").write_text("kept")
    (base / "file").write_text("also kept")
    return base


def assert_outside_intact(outside) -> None:
    assert (outside / "file").read_text() == "also kept"
    assert (outside / "dir" / "keep").read_text() == "kept"
    assert sorted(os.listdir(outside)) == ["dir", "file"]


def test_a_directory_of_files_goes_without_shutil(tmp_path, rmtree_calls):
    tree = tmp_path / "vault-x"
    tree.mkdir()
    for name in ("resolv.conf", "nsswitch.conf", ".hidden"):
        (tree / name).write_text(name)
    _remove_tree(str(tree))
    assert not tree.exists()
    assert rmtree_calls == []
    assert os.listdir(tmp_path) == []


def test_an_empty_directory_goes(tmp_path):
    tree = tmp_path / "vault-x"
    tree.mkdir()
    _remove_tree(str(tree))
    assert not tree.exists()


def test_a_directory_with_a_subdirectory_falls_back_to_rmtree(tmp_path, rmtree_calls):
    tree = tmp_path / "vault-x"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "sub" / "deeper" / "f").write_text("x")
    (tree / "sub" / "g").write_text("x")
    (tree / "resolv.conf").write_text("x")
    _remove_tree(str(tree))
    assert not tree.exists()
    assert rmtree_calls == [str(tree)]


@pytest.mark.parametrize("with_subdir", [False, True], ids=["files-only", "with-subdir"])
def test_symlinks_inside_go_and_their_targets_outside_stay(tmp_path, outside, with_subdir):
    tree = tmp_path / "vault-x"
    tree.mkdir()
    (tree / "resolv.conf").write_text("x")
    (tree / "to-file").symlink_to(outside / "file")
    (tree / "to-dir").symlink_to(outside / "dir")
    (tree / "dangling").symlink_to(tmp_path / "nowhere")
    if with_subdir:
        (tree / "sub").mkdir()
        (tree / "sub" / "to-dir").symlink_to(outside / "dir")
    _remove_tree(str(tree))
    assert not os.path.lexists(tree)
    assert_outside_intact(outside)


def test_a_missing_path_is_fine(tmp_path, rmtree_calls):
    _remove_tree(str(tmp_path / "never-made"))
    _remove_tree(str(tmp_path / "never-made" / "below"))
    assert rmtree_calls == []


def test_a_plain_file_at_the_path_is_left_alone(tmp_path):
    """As shutil.rmtree(path, ignore_errors=True) did: not a directory, nothing removed."""
    path = tmp_path / "vault-x"
    path.write_text("x")
    _remove_tree(str(path))
    assert path.read_text() == "x"


def test_a_symlink_at_the_path_never_empties_its_target(tmp_path, outside):
    link = tmp_path / "vault-x"
    link.symlink_to(outside / "dir")
    _remove_tree(str(link))
    assert_outside_intact(outside)


def test_vault_down_s_files_do_not_import_shutil(tmp_path):
    """In a fresh interpreter: removing resolv.conf and nsswitch.conf leaves shutil unimported;
    a subdirectory imports it (the check itself can fail)."""
    code = ("import os, sys, netns_vault.dns as d\n"
            "flat, deep = sys.argv[1], sys.argv[2]\n"
            "d._remove_tree(flat)\n"
            "print('shutil' in sys.modules, os.path.exists(flat))\n"
            "d._remove_tree(deep)\n"
            "print('shutil' in sys.modules, os.path.exists(deep))\n")
    flat, deep = tmp_path / "flat", tmp_path / "deep"
    flat.mkdir()
    (flat / "resolv.conf").write_text("x")
    (flat / "nsswitch.conf").write_text("x")
    (deep / "sub").mkdir(parents=True)
    out = subprocess.run([sys.executable, "-c", code, str(flat), str(deep)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["False False", "True False"]
