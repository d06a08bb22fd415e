"""`--task seg` (the book's ch. 13) on the tiny set: what it reads (windows, whole slices and
their context, masks), its crops, a real run with its numbers and best.pt, --val-every, and
an exact resume from a checkpoint taken mid-epoch (the state a kill leaves).

Machine-independent: nothing here rests on where SGD goes; the resumed run is compared bit
for bit with the uninterrupted one computed on this machine."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from luna_core.data.ct import Ct, find_mhd, window_starts
from luna_core.data.masks import build_mask
from luna_core.data.segdsets import (
    MALIGNANCY_CSV,
    SegTrainingDataset,
    make_seg_datasets,
    nodules_file,
    split_series,
)
from luna_core.data.segstore import CONTEXT_SLICES, WINDOW_IRC, read_slice
from luna_core.run import events as ev
from luna_core.run.command_table import CommandChannel
from luna_core.run.metric_catalog import DICE, PIXEL_FP, PIXEL_TP, RECALL
from luna_core.tasks.seg import CROP, crop_corners
from luna_core.train.checkpoint import list_checkpoints, load_checkpoint
from tests.trainhelpers import run_dirs, run_loop

SEG = ["--task", "seg", "--val-stride", "2", "--epoch-samples", "8", "--batch-size", "4",
       "--val-every", "1"]


def _argv(tiny_data, runs_dir, *extra: str) -> list[str]:
    return ["--data-dir", tiny_data["data_dir"], "--cache-dir", tiny_data["cache_dir"],
            "--runs-dir", str(runs_dir), "--num-workers", "0", "--device", "cpu",
            "--threads", "1", *SEG, *extra]


@pytest.fixture(scope="module")
def seg_sets(tiny_data):
    return make_seg_datasets(tiny_data["data_dir"], tiny_data["cache_dir"], 2)


def test_the_split_is_the_classifiers_series_split_and_nodules_come_from_the_books_file(
        tiny_data, tmp_path):
    trn, val = split_series(tiny_data["data_dir"], 2)
    uids = sorted(trn + val)
    assert val == uids[::2] and not set(trn) & set(val)
    assert nodules_file(tiny_data["data_dir"]).name == MALIGNANCY_CSV   # synth writes it
    copy = tmp_path / "luna"
    shutil.copytree(tiny_data["data_dir"], copy)
    os.remove(copy / MALIGNANCY_CSV)
    assert nodules_file(copy) == copy / "annotations.csv"           # without it


def test_training_windows_hold_the_ct_and_the_mask_of_their_middle_slice(tiny_data, seg_sets):
    trn, _val = seg_sets
    assert len(trn) == trn.pos_count > 0
    for ndx in range(len(trn)):
        window, uid, _ = trn[ndx]
        assert window.shape == (WINDOW_IRC[0] + 1, *WINDOW_IRC[1:])
        ct = Ct.read(find_mhd(tiny_data["data_dir"], uid), uid)
        chunks = trn._series(trn.series_uids.index(uid))
        k = int(trn.chunk_no[ndx])
        centre = chunks.center_irc[k]
        hu, _ = ct.get_raw_candidate(ct.irc2xyz(centre), WINDOW_IRC)
        assert np.array_equal(window[:WINDOW_IRC[0]].numpy(), hu)
        mask = build_mask(ct.hu_a, chunks.center_irc)
        i0, r0, c0 = window_starts(centre, ct.hu_a.shape, WINDOW_IRC)   # shifted near an end
        middle = mask[i0 + CONTEXT_SLICES]
        label = window[WINDOW_IRC[0]].numpy()
        assert set(np.unique(label)) <= {0, 1}
        assert label.sum() == middle.sum()         # the 64x64 slice lies inside the window
        assert label[-r0:-r0 + 64, -c0:-c0 + 64].sum() == middle.sum()


def test_whole_slices_carry_three_context_slices_each_side_clamped_at_the_ends(
        tiny_data, seg_sets):
    _trn, val = seg_sets
    vol = val.volumes[0]
    ct = Ct.read(find_mhd(tiny_data["data_dir"], vol.series_uid), vol.series_uid)
    n = ct.hu_a.shape[0]
    for k, want in ((0, [0, 0, 0, 0, 1, 2, 3]), (1, [0, 0, 0, 1, 2, 3, 4]),
                    (n - 1, [n - 4, n - 3, n - 2, n - 1, n - 1, n - 1, n - 1]),
                    (n // 2, list(range(n // 2 - 3, n // 2 + 4)))):
        hu, mask = read_slice(vol, k)
        assert hu.shape == (7, *ct.hu_a.shape[1:]) and mask.shape == (1, *ct.hu_a.shape[1:])
        assert np.array_equal(hu, ct.hu_a[want])
    full = build_mask(ct.hu_a, [ct.xyz2irc(x[:3]) for x in _nodules(tiny_data, vol.series_uid)])
    assert list(vol.mask_slices) == np.flatnonzero(full.any(axis=(1, 2))).tolist()
    for k in vol.mask_slices:
        assert np.array_equal(read_slice(vol, k)[1][0], full[k])
    with pytest.raises(IndexError):
        read_slice(vol, n)
    # validation samples: exactly the mask slices of each validation series
    assert val.samples == [(v, k) for v, vv in enumerate(val.volumes) for k in vv.mask_slices]
    hu, mask, uid, k = val[0]
    assert uid == val.volumes[0].series_uid and mask.dtype == torch.uint8


def _nodules(tiny_data, uid):
    from luna_core.data.csvread import read_annotations

    return read_annotations(nodules_file(tiny_data["data_dir"])).get(uid, [])


def test_crops_stay_inside_the_window_and_reach_every_edge():
    def draw(j):
        return np.random.default_rng([5, j])

    corners = crop_corners(draw, 400, 96)
    rows, cols = zip(*corners, strict=True)
    assert min(rows) == min(cols) == 0 and max(rows) == max(cols) == 96 - CROP
    assert crop_corners(draw, 3, 96) == corners[:3]           # the same sample, the same crop
    assert crop_corners(draw, 5, CROP) == [(0, 0)] * 5        # no room: the window itself


@pytest.fixture(scope="module")
def interrupted(tiny_data, tmp_path_factory):
    """A seg run of 2 epochs (augmented, seed 3) with a checkpoint asked for after training
    batch 0 of epoch 1; then that checkpoint resumed to the end (as after a kill)."""
    runs_dir = tmp_path_factory.mktemp("seg")
    commands = CommandChannel()

    def checkpoint_after_batch_0(event):
        if isinstance(event, ev.BatchDone) and (event.phase, event.epoch, event.batch_ndx) \
                == ("trn", 1, 0):
            commands.checkpoint()

    argv = _argv(tiny_data, runs_dir, "--epochs", "2", "--seed", "3", "--augmented")
    code, rec, console = run_loop(argv, hooks=[checkpoint_after_batch_0], commands=commands)
    assert code == 0, console
    (run_dir,) = run_dirs(runs_dir)
    ckpts = list_checkpoints(os.path.join(run_dir, "checkpoints"))
    straight = load_checkpoint(ckpts[-1])
    mid = next(c for c in ckpts if "b000001" in c)
    code, rec_resumed, console = run_loop(_argv(tiny_data, runs_dir, "--resume", mid,
                                                "--epochs", "2"))
    assert code == 0, console
    resumed = load_checkpoint(list_checkpoints(os.path.join(run_dir, "checkpoints"))[-1])
    return {"rec": rec, "console": console, "straight": straight, "resumed": resumed,
            "rec_resumed": rec_resumed, "run_dir": run_dir}


def test_a_seg_run_reports_pixel_numbers_and_keeps_best_by_recall(interrupted):
    rec = interrupted["rec"]
    vals = [m for m in rec.of(ev.EpochMetrics) if m.phase == "val"]
    assert [m.epoch for m in vals] == [1, 2]
    for m in vals:
        tp, fp = m.metrics[PIXEL_TP.key], m.metrics[PIXEL_FP.key]
        assert 0 <= tp <= 100 and fp >= 0 and 0 <= m.metrics[DICE.key] <= 1
        assert m.metrics[RECALL.key] == pytest.approx(m.pos_correct / m.pos_count)
        assert m.per_sample is None and m.score is None
    start = rec.of(ev.RunStarted)[0]
    assert start.options["optimizer"] == "adam" and start.options["task"] == "seg"
    recalls = [m.metrics[RECALL.key] for m in vals]
    best = load_checkpoint(os.path.join(interrupted["run_dir"], "checkpoints", "best.pt"))
    assert best["best_metric"] == RECALL.key                 # kept by recall, not by loss
    assert best["best_score"] == pytest.approx(max(recalls))
    assert best["epoch"] == 1 + recalls.index(max(recalls))


def test_resuming_the_mid_epoch_checkpoint_gives_the_uninterrupted_weights(interrupted):
    a, b = interrupted["straight"], interrupted["resumed"]
    assert a["epoch"] == b["epoch"] == 2
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    trn = [m for m in interrupted["rec"].of(ev.EpochMetrics) if m.phase == "trn"]
    again = [m for m in interrupted["rec_resumed"].of(ev.EpochMetrics) if m.phase == "trn"]
    assert again[-1].metrics == trn[-1].metrics


def test_val_every_validates_every_nth_epoch_and_after_the_last(tiny_data, tmp_path):
    code, rec, console = run_loop(_argv(tiny_data, tmp_path, "--epochs", "3", "--val-every",
                                        "2", "--max-batches", "1"))
    assert code == 0, console
    assert [m.epoch for m in rec.of(ev.EpochMetrics) if m.phase == "val"] == [2, 3]
    assert [m.epoch for m in rec.of(ev.EpochMetrics) if m.phase == "trn"] == [1, 2, 3]
    assert "E1 val" not in console and "E2 val" in console


def test_seg_training_samples_are_each_nodule_once(tiny_data):
    from luna_core.data.csvread import read_annotations

    trn_series, _ = split_series(tiny_data["data_dir"], 2)
    nodules = read_annotations(nodules_file(tiny_data["data_dir"]))
    ds = SegTrainingDataset(tiny_data["data_dir"], tiny_data["cache_dir"], trn_series, nodules)
    assert len(ds) == sum(len(nodules.get(u, ())) for u in trn_series)


def test_summary_runs_and_compare_show_a_seg_runs_own_numbers(interrupted, capsys):
    from luna_core.run.compare import read_history
    from luna_tui.cli import main as cli_main

    run_dir = interrupted["run_dir"]
    h = read_history(run_dir)
    e, recall = h.best(RECALL.key)
    runs_dir = os.path.dirname(os.path.dirname(run_dir))
    assert cli_main(["runs", run_dir, "--runs-dir", runs_dir]) == 0
    out = capsys.readouterr().out
    assert f"best epoch: recall {recall:.3f} at E{e} (picks best.pt); validation loss" in out
    last = [line for line in out.splitlines() if "last validation (E2)" in line][0]
    assert "recall" in last and "Dice" in last and "CPM" not in last
    assert cli_main(["runs", "--runs-dir", runs_dir, "--wide"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert "BEST DICE" in listing[0] and "TASK" in listing[0] and " seg " in listing[1]
    assert "BEST CPM" not in listing[0]             # no seg run has one: no column
    de, dice = h.best(DICE.key)
    assert f"{dice:.3f} E{de}" in listing[1]
    assert cli_main(["compare", run_dir, "--runs-dir", runs_dir]) == 0
    header = [line for line in capsys.readouterr().out.splitlines()
              if line.startswith("run")][0].split()
    assert header[3:] == ["val", "loss", "recall", "Dice", "precision", "F1"]


def _check_text(tiny_data, tmp_path, capsys) -> str:
    from luna_tui.cli import main as cli_main

    assert cli_main(["check", "--data-dir", tiny_data["data_dir"], "--cache-dir",
                     str(tmp_path / "cache0"), "--val-stride", "2", "--task", "seg"]) == 0
    return capsys.readouterr().out


def test_check_names_a_nodule_whose_mask_is_empty(tiny_data, tmp_path, capsys):
    """A nodule annotated in the air outside the body: `check --task seg` names it."""
    from luna_tui.cli import main as cli_main

    copy = tmp_path / "luna"
    shutil.copytree(tiny_data["data_dir"], copy)
    uid = sorted(split_series(tiny_data["data_dir"], 2)[0])[0]
    ct = Ct.read(find_mhd(copy, uid), uid)
    x, y, z = ct.irc2xyz((ct.hu_a.shape[0] // 2, 1, 1))          # a corner: air
    nodule = _nodules(tiny_data, uid)[0]
    for name, more in (("annotations.csv", ""), (MALIGNANCY_CSV, ",False")):
        with open(copy / name, "a") as f:
            f.write(f"{uid},{x:.4f},{y:.4f},{z:.4f},5.0{more}\n")
            # a real nodule annotated 0.5 mm wide: its mask is far more than that sphere
            f.write(f"{uid},{nodule[0]:.4f},{nodule[1]:.4f},{nodule[2]:.4f},0.5{more}\n")
    args = ["check", "--data-dir", str(copy), "--cache-dir", str(tmp_path / "cache"),
            "--val-stride", "2"]
    assert cli_main([*args, "--task", "seg"]) == 0
    out = capsys.readouterr().out
    assert "chunks-32x48x48" not in out and "--balanced" not in out   # the classifier's
    store = [line for line in out.splitlines() if line.startswith("store")][0]
    assert "seg-windows-7x96x96: 0 of" in store and "seg-volumes: 0 of 2 cut" in store
    assert "training nodules in" in out and "(split by series, val_stride 2)" in out
    masks = [line for line in out.splitlines() if line.startswith("masks")][0]
    assert "1 give an empty mask" in masks
    assert f"empty: {uid} ({x:.1f}, {y:.1f}, {z:.1f})" in out
    grown = [line for line in out.splitlines() if "masks are over 8x" in line][0]
    worst = out.splitlines()[out.splitlines().index(grown) + 1]    # the 0.5 mm one leads
    assert worst.endswith(f"x: {uid} ({nodule[0]:.1f}, {nodule[1]:.1f}, {nodule[2]:.1f})")
    before = [line for line in _check_text(tiny_data, tmp_path, capsys).splitlines()
              if "masks are over 8x" in line]
    was = int(before[0].split()[0]) if before else 0
    assert grown.split()[0] == str(was + 1)
    assert cli_main(args) == 0 and "masks" not in capsys.readouterr().out


def test_the_books_defaults_for_seg_and_the_options_it_refuses(capsys):
    from luna_core.train.options import parse_options

    options, given = parse_options(["--task", "seg"], disk=False)
    assert (options.optimizer, options.batch_size, options.epoch_samples, options.val_every,
            options.split) == ("adam", 16, 300_000, 5, "series")
    assert "optimizer" not in given
    options, _ = parse_options(["--task", "seg", "--optimizer", "sgd", "--val-every", "1"],
                               disk=False)
    assert (options.optimizer, options.val_every) == ("sgd", 1)        # given: kept
    plain, _ = parse_options([], disk=False)
    assert (plain.optimizer, plain.val_every, plain.split) == ("sgd", 1, "candidates")
    for bad, flag in ((["--balanced"], "--balanced"), (["--split", "candidates"], "--split"),
                      (["--froc-bootstrap", "50"], "--froc-bootstrap")):
        with pytest.raises(SystemExit) as exc:
            parse_options(["--task", "seg", *bad], disk=False)
        assert exc.value.code == 2
        assert f"{flag} does not apply to --task seg" in capsys.readouterr().err


async def test_attach_shows_a_finished_seg_run(interrupted):
    from luna_tui.attach import build_attach_app
    from tests.cockpit_helpers import FROZEN_READING, frozen_clock, on_screen

    app = build_attach_app(interrupted["run_dir"], poll_interval=0.1, clock=frozen_clock(),
                           system_probe=lambda: FROZEN_READING)
    async with app.run_test(size=(160, 48)) as pilot:
        await on_screen(pilot, app, "FINISHED", "Pixels · latest epoch", "val E2", "Dice",
                        "nodule pixels found; best.pt by recall", "(picks best.pt)")
        await pilot.press("6")
        await on_screen(pilot, app, "val E2 most nodule pixels missed")


def test_val_full_validates_every_slice_of_the_validation_series(tiny_data, seg_sets):
    from luna_core.data.segdsets import SegValidationDataset

    _trn, val = seg_sets
    _, val_series = split_series(tiny_data["data_dir"], 2)
    nodules = _all_nodules(tiny_data)
    full = SegValidationDataset(tiny_data["data_dir"], tiny_data["cache_dir"], val_series,
                                nodules, full=True)
    depth = {v.series_uid: v.shape_irc[0] for v in full.volumes}
    assert len(full) == sum(depth.values()) > len(val)
    assert full.pos_count == len(val)                 # the slices with nodule pixels
    assert {full.volumes[v].series_uid for v, _k in full.samples} == set(val_series)


def _all_nodules(tiny_data):
    from luna_core.data.csvread import read_annotations

    return read_annotations(nodules_file(tiny_data["data_dir"]))


def test_a_killed_seg_run_resumes_to_the_weights_of_an_uninterrupted_one(train_argv, tmp_path):
    """kill -9 after a checkpoint asked for mid-epoch (SIGUSR1), then --resume: the same
    weights at the end of epoch 2 as a run never interrupted."""
    import signal

    from tests.trainhelpers import start_headless, trn_batches, wait_for_events

    seg = ["--task", "seg", "--val-stride", "2", "--epoch-samples", "16", "--batch-size", "4",
           "--val-every", "1", "--seed", "5", "--augmented"]
    proc = start_headless(train_argv, tmp_path, *seg)
    try:
        wait_for_events(tmp_path, lambda r: len(trn_batches(r)) >= 1, proc)
        os.killpg(proc.pid, signal.SIGUSR1)
        records = wait_for_events(
            tmp_path, lambda r: any(x["kind"] == "checkpoint" for x in r), proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    saved = next(x for x in records if x["kind"] == "checkpoint")
    assert saved["epoch"] == 1 and 0 < saved["batch_ndx"] < 4
    code, _rec, console = run_loop(train_argv(*seg, "--resume", saved["path"], "--epochs", "2",
                                              "--num-workers", "0"))
    assert code == 0, console
    (run_dir,) = run_dirs(tmp_path / "runs")
    resumed = load_checkpoint(os.path.join(run_dir, "checkpoints", "e002-end.pt"))
    code, _rec, console = run_loop(train_argv(*seg, "--epochs", "2", "--num-workers", "0",
                                              runs_dir=tmp_path / "straight"))
    assert code == 0, console
    (straight_dir,) = run_dirs(tmp_path / "straight")
    straight = load_checkpoint(os.path.join(straight_dir, "checkpoints", "e002-end.pt"))
    for name in straight["model"]:
        assert torch.equal(straight["model"][name], resumed["model"][name]), name


def test_runs_of_two_tasks_are_not_compared_without_a_warning(tmp_path):
    """compare warns when the runs train different tasks; a run's summary suggests comparing
    it with the run of its own task started before it."""
    import json

    from luna_core.run.compare import compare_text, read_history
    from luna_core.run.summary import previous_run

    def write(name, t, task):
        run_dir = tmp_path / "luna" / name
        run_dir.mkdir(parents=True)
        start = ev.RunStarted(run_dir=str(run_dir), options={"task": task}, epochs=1,
                              start_epoch=1, trn_samples=1, val_samples=1, trn_pos=0,
                              val_pos=0, device="cpu", pid=1, t=t)
        (run_dir / "events.jsonl").write_text(json.dumps(ev.event_to_dict(start)) + "\n")
        return str(run_dir)

    first = write("2026-12-07_10.00.00-a", 1.0, "nodule")
    seg = write("2026-12-07_11.00.00-b", 2.0, "seg")
    last = write("2026-12-07_12.00.00-c", 3.0, "nodule")
    assert previous_run(last, str(tmp_path)) == first          # not the seg run between
    assert previous_run(seg, str(tmp_path)) is None
    said = compare_text([read_history(first), read_history(seg)])
    assert "warning: the runs train different tasks (nodule / seg)" in said
    assert "different tasks" not in compare_text([read_history(first), read_history(last)])
