"""The examples a validation keeps (worst misses, false alarms, best hits): the right
candidates, their chunks as the store has them, written atomically, pruned, the same after a
resume, and `luna-tui examples` with its PNGs.

Machine-independent by construction: the validation probabilities are the test's (a loop
whose model outputs are overwritten per sample), not where SGD went on this CPU.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from luna_core.data.dsets import LunaDataset
from luna_core.run import events as ev
from luna_core.run.example_file import KINDS, read_examples, saved_epochs
from luna_core.score.example_picker import pick
from luna_core.train.metrics import METRICS_PRED_NDX
from luna_core.training import LunaTrainingApp
from luna_tui.cli import main as cli_main
from tests.trainhelpers import run_dirs, run_loop


def probability_of(sample: int) -> float:
    return ((sample * 7) % 11) / 11


class ScriptedProbabilities(LunaTrainingApp):
    """Validation sample i is given probability_of(i)."""

    def compute_batch_loss(self, batch_ndx, batch_tup, metrics_g):
        loss = super().compute_batch_loss(batch_ndx, batch_tup, metrics_g)
        if not self.model.training:
            start = batch_ndx * self.cli_args.batch_size
            for j in range(len(batch_tup[0])):
                metrics_g[METRICS_PRED_NDX, start + j] = probability_of(start + j)
        return loss


def test_pick_takes_the_lowest_nodules_the_highest_others_and_breaks_ties_by_place():
    labels = [1, 0, 1, 0, 1, 0, 0, 1]
    p = [0.2, 0.9, 0.2, 0.9, 0.7, 0.1, 0.95, 0.6]
    got = pick(labels, p, k=2)
    assert got == {"misses": [0, 2], "false_alarms": [6, 1], "best": [4, 7]}


def test_pick_splits_at_the_threshold_so_no_nodule_is_both_a_miss_and_a_hit():
    # issue 31: misses listed at p 0.56-0.66, and a nodule both miss #7 and best hit #6
    labels = [1, 1, 1, 1, 0, 0, 0]
    p = [0.1, 0.5, 0.56, 0.9, 0.5, 0.49, 0.51]
    got = pick(labels, p, k=8)
    assert got == {"misses": [0, 1], "best": [3, 2], "false_alarms": [6]}
    assert not set(got["misses"]) & set(got["best"])
    # every nodule found, no false alarm: those kinds are empty, not filled from the rest
    assert pick([1, 1, 0], [0.9, 0.8, 0.1], k=8) == {"misses": [], "best": [0, 1],
                                                     "false_alarms": []}


def test_an_empty_kind_says_what_it_means(tmp_path):
    from luna_tui.subcommands.examples_cmd import table
    from tests.cockpit_helpers import write_fake_examples

    path = write_fake_examples(str(tmp_path / "E001.zip"), 1, counts={"misses": 0})
    out = table(read_examples(path), ("misses", "false_alarms"))
    assert "worst misses (nodules scored 0.5 or less): 0\n  none: every nodule scored " \
           "above 0.5" in out
    assert "false alarms (non-nodules scored above 0.5): 8" in out


def test_a_candidate_without_a_diameter_is_marked_round_its_centre_which_stays_clear():
    from luna_tui.model.ct_image import CIRCLE, slice_image

    rows = [[-850] * 48 for _ in range(48)]
    img = slice_image(rows, (0.7, 0.7), centre=(24, 24), diameter_mm=0.0, mm_per_px=0.35)
    c = (24 + 0.5) * 2                                      # the centre, in pixels
    assert img.getpixel((round(c), round(c))) != CIRCLE
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):        # 5 mm off, on each side
        assert img.getpixel((round(c + dx * 5 / 0.35), round(c + dy * 5 / 0.35))) == CIRCLE
    assert img.getpixel((round(c + 5 / 0.35), round(c + 5 / 0.35))) != CIRCLE  # no ring
    ringed = slice_image(rows, (0.7, 0.7), centre=(24, 24), diameter_mm=10.0, mm_per_px=0.35)
    assert ringed.getpixel((round(c + 5 / 0.35), round(c))) == CIRCLE          # the circle
    assert ringed.getpixel((round(c + 3.5 / 0.35), round(c))) != CIRCLE


@pytest.fixture(scope="module")
def two_epochs(tiny_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("examples")
    argv = ["--data-dir", tiny_data["data_dir"], "--cache-dir", tiny_data["cache_dir"],
            "--runs-dir", str(runs), "--num-workers", "0", "--batch-size", "8",
            "--device", "cpu", "--threads", "1", "--epochs", "3", "--max-batches", "1",
            "--examples", "2", "--keep-examples", "2", "--froc-bootstrap", "0"]
    code, rec, console = run_loop(argv, app_cls=ScriptedProbabilities)
    assert code == 0, console
    (run_dir,) = run_dirs(runs)
    return {"argv": argv, "rec": rec, "run_dir": run_dir, "runs": runs}


def test_each_validation_keeps_the_right_candidates_with_the_stores_chunks(two_epochs,
                                                                          tiny_data):
    run_dir, rec = two_epochs["run_dir"], two_epochs["rec"]
    saved = rec.of(ev.ExamplesSaved)
    assert [e.epoch for e in saved] == [1, 2, 3]
    assert saved_epochs(run_dir) == [2, 3]                  # --keep-examples 2
    val = LunaDataset(val_stride=10, is_val=True, data_dir=tiny_data["data_dir"],
                      cache_dir=tiny_data["cache_dir"])
    n = min(len(val), 8)                                    # --max-batches 1 of 8
    labels = val.is_nodule[:n]
    p = [probability_of(i) for i in range(n)]
    want = pick(labels, p, k=2)
    got = read_examples(saved[-1].path)
    assert got.epoch == 3
    for kind in KINDS:
        examples = got.of_kind(kind)
        assert [e.sample for e in examples] == want[kind]
        assert [e.rank for e in examples] == list(range(1, len(want[kind]) + 1))
        for e in examples:
            assert e.probability == pytest.approx(probability_of(e.sample))
            assert e.is_nodule == bool(labels[e.sample])
            c = val.candidate_list[e.sample]
            assert (e.series_uid, e.diameter_mm) == (c.series_uid, c.diameter_mm)
            chunk = np.frombuffer(got.voxels(e).tobytes(), dtype="<i2").reshape(got.width_irc)
            assert np.array_equal(chunk, val.chunk_hu(e.sample))     # the store's chunk
            i, r, c_ = e.irc_in_chunk
            assert got.axial(e)[r][c_] == chunk[i, r, c_]
    assert saved[-1].misses == len(want["misses"])
    assert os.path.getsize(saved[-1].path) < 2_000_000
    assert not [f for f in os.listdir(os.path.dirname(saved[-1].path)) if ".tmp" in f]
    # the event file has them too (attach and a finished run find them)
    with open(os.path.join(run_dir, "events.jsonl")) as f:
        kinds = [json.loads(line)["kind"] for line in f]
    assert kinds.count("examples") == 3


def test_a_resumed_run_writes_the_same_examples(two_epochs, tmp_path):
    run_dir = two_epochs["run_dir"]
    with zipfile.ZipFile(os.path.join(run_dir, "examples", "E003.zip")) as z:
        before = (z.read("examples.json"), z.read("chunks.i16"))
    argv = [a if a != str(two_epochs["runs"]) else str(tmp_path) for a in two_epochs["argv"]]
    ckpt = os.path.join(run_dir, "checkpoints", "e002-end.pt")
    code, rec, console = run_loop(argv + ["--resume", ckpt], app_cls=ScriptedProbabilities)
    assert code == 0, console
    with zipfile.ZipFile(os.path.join(run_dir, "examples", "E003.zip")) as z:
        after = (z.read("examples.json"), z.read("chunks.i16"))
    assert after == before


def test_examples_command_prints_the_table_and_writes_pngs(two_epochs, tmp_path, capsys):
    from PIL import Image

    run_dir = two_epochs["run_dir"]
    assert cli_main(["examples", run_dir, "--kind", "false-alarms", "--png",
                     str(tmp_path / "png")]) == 0
    out = capsys.readouterr().out
    got = read_examples(os.path.join(run_dir, "examples", "E003.zip"))
    alarms = got.of_kind("false_alarms")
    assert "false alarms" in out and "E3" in out
    for e in alarms:
        assert f"{e.probability:.3f}" in out and e.series_uid[-8:] in out
    pngs = sorted(os.listdir(tmp_path / "png"))
    assert len(pngs) == 3 * len(alarms)                   # axial, coronal, sagittal each
    with Image.open(tmp_path / "png" / pngs[0]) as img:
        assert img.size[0] >= 4 * got.width_irc[2] and img.mode == "RGB"
    assert cli_main(["examples", run_dir, "--epoch", "1"]) == 2      # pruned
    assert "E1" in capsys.readouterr().err

    # a nodule's axial slice: brighter at its centre than the lung around it
    # (a miss or a hit: which one depends on the probability the test gave it)
    best = (got.of_kind("best") + got.of_kind("misses"))[0]
    assert best.is_nodule and best.diameter_mm > 0
    kind = best.kind.replace("_", "-")
    assert cli_main(["examples", run_dir, "--kind", kind, "--png", str(tmp_path / "n")]) == 0
    with Image.open(tmp_path / "n" / f"E003-{best.kind}-01-axial.png") as img:
        grey = img.convert("L")
        step = min(best.vx_size_xyz) / 4                       # mm a pixel
        cy = (best.irc_in_chunk[1] + 0.5) * best.vx_size_xyz[1] / step
        cx = (best.irc_in_chunk[2] + 0.5) * best.vx_size_xyz[0] / step
        r = best.diameter_mm / 2 / step

        def mean(lo, hi):          # mean grey between radii lo and hi (in pixels)
            values = [grey.getpixel((x, y)) for y in range(grey.height)
                      for x in range(grey.width)
                      if lo <= ((x - cx) ** 2 + (y - cy) ** 2) ** 0.5 < hi]
            return sum(values) / len(values)
        assert mean(0, r / 2) > mean(1.5 * r, 2.5 * r) + 40


def test_examples_latest_skips_a_newer_run_that_never_validated(tmp_path, capsys):
    import time

    from luna_core.run.example_file import examples_path
    from luna_core.run.runs import this_host
    from tests.cockpit_helpers import write_fake_examples
    from tests.test_attach_app import write_fake_run

    runs = tmp_path / "runs"
    validated = runs / "luna" / "2026-12-07_10.00.00-first"
    write_fake_run(validated)
    write_fake_examples(examples_path(str(validated), 2), 2)
    stopped = runs / "luna" / "2026-12-07_11.00.00-stopped"
    stopped.mkdir(parents=True)
    now = time.time()
    events = [ev.RunStarted(run_dir=str(stopped), options={}, epochs=2, start_epoch=1,
                            trn_samples=8, val_samples=2, trn_pos=1, val_pos=1, device="cpu",
                            pid=1, host=this_host(), t=now),
              ev.RunFinished(state=ev.STOPPED, exit_code=0, last_checkpoint=None, t=now + 1)]
    (stopped / "events.jsonl").write_text(
        "".join(json.dumps(ev.event_to_dict(e)) + "\n" for e in events))
    os.utime(stopped / "events.jsonl", (now + 10, now + 10))      # the newest run
    assert cli_main(["examples", "latest", "--runs-dir", str(runs)]) == 0
    assert "E2" in capsys.readouterr().out
