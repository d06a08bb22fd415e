"""The candidate classifier as a task (issue 29) changes nothing a user sees: a `--task
nodule` run's log lines (numbers masked: they depend on where SGD goes on this CPU) and its
TensorBoard tags are those recorded from the loop before the task interface
(tests/data/nodule_run.txt, made by this file with LUNA_RECORD=1 on commit 88a345d).

Machine-independent by construction: the lines' words and order, the tags' names."""

from __future__ import annotations

import glob
import os
import re

from tests.trainhelpers import run_loop

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "nodule_run.txt")
_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\d+(\.\d+)?(e[-+]?\d+)?")
# the session's tiny data folder: tiny0, or tiny1 when another test made one first, under
# whatever base temp folder and user pytest has (the fixture recorded tiny0 under root's)
_TINY_DATA = re.compile(r"\S*/tiny\d+/")


def data_masked(line: str) -> str:
    return _TINY_DATA.sub("TINY/", line)


def masked(line: str, tmp_path) -> str:
    line = line.split(" ", 3)[-1]                 # drop the date, time and level
    line = line.replace(str(tmp_path), "TMP")
    line = re.sub(r"\d{4}-\d\d-\d\d_\d\d\.\d\d\.\d\d(\.\d+)?", "TIME", line)
    line = re.sub(r"Namespace\(.*\)", "Namespace(...)", line)
    line = re.sub(r"(at|done at|ETA) [^,;]*", r"\1 ...", line)
    return re.sub(r"\s+", " ", _NUMBER.sub("#", line))   # padding follows the numbers


def tags(runs_dir) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = []
    for folder in sorted(glob.glob(os.path.join(str(runs_dir), "luna", "*_cls-*"))):
        acc = EventAccumulator(folder, size_guidance={"scalars": 0, "histograms": 0,
                                                      "tensors": 0})
        acc.Reload()
        kinds = acc.Tags()
        phase = "trn" if "-trn_cls-" in folder else "val"
        for kind in ("scalars", "histograms", "tensors"):
            found += [f"{phase} {kind} {tag}" for tag in sorted(kinds.get(kind, []))]
    return found


def test_a_nodule_run_logs_and_tags_as_before(train_argv, tmp_path):
    code, _rec, console = run_loop(train_argv("--epochs", "2", "--max-batches", "2",
                                              "--froc-bootstrap", "10", "--balanced"))
    assert code == 0, console
    lines = [masked(ln, tmp_path) for ln in console.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("E# trn batch") or "of" in ln]
    got = ["# log lines", *lines, "# tensorboard", *tags(tmp_path / "runs")]
    got = [data_masked(line) for line in got]
    if os.environ.get("LUNA_RECORD"):
        with open(FIXTURE, "w", encoding="utf-8") as f:
            f.write("\n".join(got) + "\n")
    with open(FIXTURE, encoding="utf-8") as f:
        want = [data_masked(line) for line in f.read().splitlines()]
    assert got == want
