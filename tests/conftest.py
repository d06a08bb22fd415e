"""Shared fixtures: one tiny synthetic LUNA16 set (4 series on disk, 1 listed but missing)
and its warm cache, made once per test session."""

from __future__ import annotations

import pytest

from tests.trainhelpers import TINY_SYNTH, kill_leftover_runs


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from luna_core.data.synth import write_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny")
    data_dir = root / "luna"
    write_synthetic_dataset(data_dir, **TINY_SYNTH)
    return {"data_dir": str(data_dir), "cache_dir": str(root / "cache")}


@pytest.fixture
def train_argv(tiny_data, tmp_path):
    """argv for a fast CPU run on the tiny set, writing runs under tmp_path/runs."""
    def make(*extra: str, runs_dir=None) -> list[str]:
        return ["--data-dir", tiny_data["data_dir"], "--cache-dir", tiny_data["cache_dir"],
                "--runs-dir", str(runs_dir or tmp_path / "runs"), "--num-workers", "0",
                "--batch-size", "8", "--device", "cpu", "--threads", "1", *extra]
    return make


@pytest.fixture(autouse=True)
def _no_leftover_runs():
    yield
    kill_leftover_runs()
