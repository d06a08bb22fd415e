"""One atomic-write rule for every file of state (CT cache, checkpoints, demo data)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from luna_core.fsutil import TEMP_MARK, atomic_write, remove_orphaned_temps


def test_a_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    with atomic_write(path, text=True) as f:
        f.write("new")
        assert path.read_text() == "old"              # not visible before the end
        (tmp,) = [n for n in os.listdir(tmp_path) if n != "state.json"]
        assert tmp.startswith(f".state.json{TEMP_MARK}") and tmp.endswith(f"-{os.getpid()}")
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["state.json"]
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, error):
    path = tmp_path / "cache.npy"
    path.write_bytes(b"old")
    with pytest.raises(type(error)):
        with atomic_write(path) as f:
            f.write(b"half")
            raise error
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["cache.npy"]


def test_orphans_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f".e001-end.pt{TEMP_MARK}abcd-{dead.pid}"
    live = tmp_path / f".e002-end.pt{TEMP_MARK}efgh-{os.getpid()}"
    orphan.write_bytes(b"x")
    live.write_bytes(b"y")
    (tmp_path / "e001-end.pt").write_bytes(b"z")
    assert remove_orphaned_temps(str(tmp_path)) == [str(orphan)]
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, "e001-end.pt"])
