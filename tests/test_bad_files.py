"""The run folder and its readers under attack (issue 28): every file luna-tui writes is read
back by a reader that checks its shape. A bad index falls back to the event file (it hides no
run); a bad event line, examples zip, checkpoint, .mhd or path is one line naming the file
(the command exits 2), never a traceback; the index is written a few times a second at most
and never stops training; the control socket answers any request; printed commands quote
paths; a copied run folder reads its own files.

Machine-independent by construction: runs, zips and checkpoints are written by the test, the
clock and the timer of the index are injected, failures are injected (no sleeping)."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import shlex
import shutil
import threading
import zipfile

import numpy as np
import pytest
import torch

from luna_core.errors import LunaInputError
from luna_core.run import events as ev
from luna_core.run import index as ix
from luna_core.run import runs as rr
from luna_core.run.eventfile import decode_line, read_events
from luna_core.run.example_file import examples_path, read_examples, write_examples
from luna_core.run.sinks import JsonlSink
from luna_core.run.summary import compare_line, summarise
from luna_core.train import checkpoint as ck
from luna_tui.cli import main as cli_main

T0 = 1_741_089_600.0
WIDTH = (2, 3, 4)                   # a tiny chunk: 24 voxels


# -- writing runs ----------------------------------------------------------------------------

def started(run_dir: str, **fields) -> ev.RunStarted:
    base = dict(run_dir=run_dir, options={"lr": 0.001}, epochs=2, start_epoch=1,
                trn_samples=100, val_samples=10, trn_pos=5, val_pos=1, device="cpu",
                pid=999_999, host="elsewhere", t=T0)
    return ev.RunStarted(**{**base, **fields})


def val_metrics(epoch: int, t: float) -> ev.EpochMetrics:
    return ev.EpochMetrics(phase="val", epoch=epoch, total_samples=100 * epoch,
                           metrics={"loss/all": 0.5 / epoch, "correct/pos": 0.0,
                                    "pr/recall": 0.1, "pr/precision": 0.1,
                                    "pr/f1_score": 0.1 * epoch},
                           neg_correct=9, neg_count=9, pos_correct=0, pos_count=1, t=t)


def write_run(run_dir, *, index=True, examples=False, t0=T0) -> str:
    """A finished run of two epochs (event file, index, checkpoints, optionally examples), as
    a headless run leaves it."""
    run_dir = str(run_dir)
    ckpts = os.path.join(run_dir, "checkpoints")
    os.makedirs(ckpts)
    sinks = [JsonlSink(os.path.join(run_dir, "events.jsonl"))]
    if index:
        sinks.append(ix.IndexSink(run_dir))
    emit = lambda e: [s(e) for s in sinks]           # noqa: E731
    emit(started(run_dir, t=t0))
    for epoch in (1, 2):
        emit(ev.PhaseStarted(phase="trn", epoch=epoch, batch_count=10, sample_count=100,
                             t=t0 + epoch))
        emit(val_metrics(epoch, t0 + epoch + 0.5))
        path = os.path.join(ckpts, f"e{epoch:03d}-end.pt")
        open(path, "wb").close()
        emit(ev.CheckpointSaved(path=path, reason="epoch", epoch=epoch, batch_ndx=10,
                                total_samples=100 * epoch, t=t0 + epoch + 0.6))
        if examples:
            zp = write_zip(examples_path(run_dir, epoch), epoch)
            emit(ev.ExamplesSaved(epoch=epoch, path=zp, misses=1, false_alarms=1, best=1,
                                  t=t0 + epoch + 0.7))
    open(os.path.join(ckpts, "best.pt"), "wb").close()
    emit(ev.RunFinished(state=ev.FINISHED, exit_code=0,
                        last_checkpoint=os.path.join(ckpts, "e002-end.pt"), t=t0 + 10))
    for s in sinks:
        getattr(s, "close", lambda: None)()
    return run_dir


def example_entry(kind="misses", rank=1, chunk=0, probability=0.25, **fields) -> dict:
    return {"kind": kind, "rank": rank, "sample": 7, "series_uid": "1.2.3.4",
            "center_xyz": [1.0, 2.0, 3.0], "center_irc": [4, 5, 6], "irc_in_chunk": [1, 1, 2],
            "vx_size_xyz": [0.7, 0.7, 2.5], "diameter_mm": 5.0, "is_nodule": True,
            "probability": probability, "loss": 1.386, "chunk": chunk, **fields}


def write_zip(path: str, epoch: int = 1, probability: float = 0.25) -> str:
    n = WIDTH[0] * WIDTH[1] * WIDTH[2]
    entries = [example_entry(k, 1, i, probability) for i, k in
               enumerate(("misses", "false_alarms", "best"))]
    for e in entries[1:]:
        e["is_nodule"] = e["kind"] == "best"
    chunks = [np.full(n, -850 + 100 * i, "<i2").tobytes() for i in range(3)]
    write_examples(path, epoch, WIDTH, entries, chunks)
    return path


def zip_with(path: str, meta: dict | list, raw: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("examples.json", json.dumps(meta))
        z.writestr("chunks.i16", raw)
    return path


def good_meta() -> dict:
    return {"format": 1, "epoch": 1, "width_irc": list(WIDTH),
            "examples": [example_entry()]}


GOOD_RAW = b"\x00\x01" * (WIDTH[0] * WIDTH[1] * WIDTH[2])


def one_line_error(capsys, code: int, *needles: str) -> str:
    out = capsys.readouterr()
    assert code == 2, out
    err = out.err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# -- 1. the index: any shape it does not expect falls back to the event file ------------------

BAD_INDEXES = [
    {"format": "1", "events": []},
    {"format": 1, "events": [1, 2]},
    [],
    {"format": 1, "events": [{"kind": "run_started", "run_dir": "x"}]},   # fields missing
    {"format": 1, "events": {"kind": "run_started"}},                    # not a list
    {"format": 1},
    {"format": True, "events": []},
    {"format": 1, "events": [{"kind": ["run_started"]}]},
    {"format": 1, "events": [{"kind": "run_started", "run_dir": "x", "options": {},
                              "epochs": "2", "start_epoch": 1, "trn_samples": 1,
                              "val_samples": 1, "trn_pos": 0, "val_pos": 0, "device": "cpu",
                              "pid": 1}]},                                # a field's type
    "not an object",
]


@pytest.mark.parametrize("bad", BAD_INDEXES, ids=[json.dumps(b)[:40] for b in BAD_INDEXES])
def test_an_index_of_the_wrong_shape_is_not_used_and_hides_no_run(tmp_path, capsys, bad):
    runs = tmp_path / "runs"
    a = write_run(runs / "luna" / "2026-01-01_00.00.00-a")
    b = write_run(runs / "luna" / "2026-01-02_00.00.00-b", t0=T0 + 100)
    (runs / "luna" / "2026-01-01_00.00.00-a" / "index.json").write_text(json.dumps(bad))
    assert ix.read_index(a) is None
    assert ix.read_index(b) is not None
    assert [info.run_dir for info, _e in rr.list_runs_with_events(str(runs))] == [a, b]
    assert cli_main(["runs", "--runs-dir", str(runs), "--wide"]) == 0
    out = capsys.readouterr()
    assert a in out.out and b in out.out and out.err == ""


def test_a_newer_index_is_left_for_the_event_file(tmp_path):
    run = write_run(tmp_path / "run")
    (tmp_path / "run" / "index.json").write_text(json.dumps({"format": 2, "events": []}))
    assert ix.read_index(run) is None
    assert len(ix.read_run_events(run)) == len(read_events(os.path.join(run, "events.jsonl")))


# -- 2. the index is written a few times a second, and never stops training -------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTimer:
    """threading.Timer's part the index uses; the test fires it."""

    made: list[FakeTimer] = []

    def __init__(self, delay, fn) -> None:
        self.delay, self.fn, self.cancelled = delay, fn, False
        FakeTimer.made.append(self)

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        if not self.cancelled:
            self.fn()


@pytest.fixture
def counted(monkeypatch):
    """Counts the index's writes (and lets a test make them fail)."""
    real = ix.atomic_write
    state = {"writes": 0, "fail": None}

    @contextlib.contextmanager
    def counting(path, **kw):
        state["writes"] += 1
        if state["fail"] is not None:
            raise state["fail"]
        with real(path, **kw) as f:
            yield f

    monkeypatch.setattr(ix, "atomic_write", counting)
    FakeTimer.made = []
    return state


def index_kinds(run_dir) -> list[str]:
    with open(os.path.join(run_dir, "index.json")) as f:
        return [e["kind"] for e in json.load(f)["events"]]


def test_a_thousand_pauses_cost_two_writes_and_the_last_status_still_arrives(tmp_path,
                                                                            counted):
    clock = Clock()
    sink = ix.IndexSink(str(tmp_path), clock=clock, timer=FakeTimer)
    sink(started(str(tmp_path)))
    assert counted["writes"] == 1                     # the first event: at once
    for _ in range(1000):
        sink(ev.StatusChanged(state=ev.PAUSED))
        sink(ev.StatusChanged(state=ev.TRAINING, detail="resumed"))
    sink(ev.StatusChanged(state=ev.PAUSED))
    assert counted["writes"] == 1                     # 2,001 events within 0.5 s: none yet
    assert len(FakeTimer.made) == 1 and FakeTimer.made[0].delay == pytest.approx(0.5)
    FakeTimer.made[0].fire()                          # the timer, 0.5 s on
    assert counted["writes"] == 2
    assert index_kinds(tmp_path)[-1] == "status"
    assert ix.read_index(str(tmp_path))[-1].state == ev.PAUSED      # the paused run's status
    sink.close()
    assert counted["writes"] == 2                     # nothing new to write


def test_events_half_a_second_apart_are_written_at_once(tmp_path, counted):
    clock = Clock()
    sink = ix.IndexSink(str(tmp_path), clock=clock, timer=FakeTimer)
    sink(started(str(tmp_path)))
    for k in range(5):
        clock.now += 0.5
        sink(ev.StatusChanged(state=ev.PAUSED if k % 2 else ev.TRAINING))
    assert counted["writes"] == 6 and FakeTimer.made == []


def test_checkpoint_and_end_are_written_at_once_and_close_writes_the_rest(tmp_path, counted):
    clock = Clock()
    sink = ix.IndexSink(str(tmp_path), clock=clock, timer=FakeTimer)
    sink(started(str(tmp_path)))
    sink(ev.StatusChanged(state=ev.TRAINING))
    assert counted["writes"] == 1
    sink(ev.CheckpointSaved(path="c.pt", reason="request", epoch=1, batch_ndx=3,
                            total_samples=30))
    assert counted["writes"] == 2 and index_kinds(tmp_path)[-2:] == ["status", "checkpoint"]
    assert FakeTimer.made[0].cancelled
    sink(ev.StatusChanged(state=ev.PAUSED))
    assert counted["writes"] == 2
    sink.close()                                      # the loop's end: the rest, at once
    assert counted["writes"] == 3 and index_kinds(tmp_path)[-1] == "status"
    sink = ix.IndexSink(str(tmp_path), clock=clock, timer=FakeTimer)   # resumed
    sink(ev.StatusChanged(state=ev.TRAINING))
    sink(ev.RunFinished(state=ev.FINISHED, exit_code=0))
    assert index_kinds(tmp_path)[-2:] == ["status", "run_finished"]


def test_the_timer_is_a_real_thread_that_writes_the_index(tmp_path):
    made = []

    def timer(delay, fn):
        t = threading.Timer(delay, fn)
        t.daemon = True
        t.start()
        made.append(t)
        return t

    sink = ix.IndexSink(str(tmp_path), min_interval=0.05, clock=lambda: 5.0, timer=timer)
    sink(started(str(tmp_path)))
    sink(ev.StatusChanged(state=ev.PAUSED))
    assert index_kinds(tmp_path) == ["run_started"]
    made[0].join(10)
    assert index_kinds(tmp_path) == ["run_started", "status"]


def test_a_failing_index_write_is_logged_once_and_training_goes_on(tmp_path, counted,
                                                                    caplog):
    clock = Clock()
    sink = ix.IndexSink(str(tmp_path), clock=clock, timer=FakeTimer)
    counted["fail"] = OSError(errno.ENOSPC, "No space left on device")
    with caplog.at_level(logging.INFO, logger="luna_core.run.index"):
        sink(started(str(tmp_path)))                  # no exception into the loop
        for k in range(5):
            clock.now += 1
            sink(ev.CheckpointSaved(path=f"{k}.pt", reason="epoch", epoch=k, batch_ndx=0,
                                    total_samples=k))
        assert counted["writes"] == 6
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert str(tmp_path / "index.json") in errors[0].getMessage()
        assert "No space left on device" in errors[0].getMessage()
        counted["fail"] = None                        # space again: it catches up
        clock.now += 1
        sink(ev.RunFinished(state=ev.FINISHED, exit_code=0))
    assert index_kinds(tmp_path) == ["run_started"] + ["checkpoint"] * 5 + ["run_finished"]


def test_a_folder_that_is_gone_does_not_stop_the_sink_either(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    sink = ix.IndexSink(str(run_dir))
    shutil.rmtree(run_dir)
    sink(started(str(run_dir)))                       # logged, not raised
    sink.close()


# -- 3. event lines of the wrong shape: one line naming the file and the line ------------------

GOOD_LINE = json.dumps(ev.event_to_dict(started("r")))
BAD_LINES = [
    json.dumps({**json.loads(GOOD_LINE), "epochs": "2"}),
    json.dumps({**json.loads(GOOD_LINE), "options": [1]}),
    json.dumps({**json.loads(GOOD_LINE), "pid": None}),
    json.dumps({k: v for k, v in json.loads(GOOD_LINE).items() if k != "device"}),
    json.dumps({**json.loads(GOOD_LINE), "v": "one"}),
    json.dumps({"v": 1, "kind": ["run_started"]}),
    json.dumps({"v": 1, "kind": "epoch_metrics", "phase": "val", "epoch": 1,
                "total_samples": 1, "metrics": {"loss/all": "low"}, "neg_correct": 1,
                "neg_count": 1, "pos_correct": 0, "pos_count": 1}),
    "[1, 2]",
]


@pytest.mark.parametrize("bad", BAD_LINES, ids=range(len(BAD_LINES)))
def test_an_event_line_of_the_wrong_shape_names_its_file_and_line(tmp_path, bad):
    path = tmp_path / "events.jsonl"
    path.write_text(GOOD_LINE + "\n" + bad + "\n")
    with pytest.raises(LunaInputError) as info:
        read_events(str(path))
    assert info.value.path == str(path) and info.value.line == 2
    assert str(info.value).startswith(f"{path}:2: ") and "\n" not in str(info.value)
    with pytest.raises(LunaInputError):
        decode_line(bad, str(path), 2)


@pytest.mark.parametrize("raw", [b'{"v": 1, \xff}', b"\x00\xff{{{"], ids=["latin", "utf16ish"])
def test_an_event_line_that_is_not_text_names_its_file_and_line(tmp_path, raw):
    path = tmp_path / "events.jsonl"
    path.write_bytes(GOOD_LINE.encode() + b"\n" + raw + b"\n")
    with pytest.raises(LunaInputError) as info:
        read_events(str(path))
    assert str(info.value).startswith(f"{path}:2: ") and "\n" not in str(info.value)


def test_a_partial_last_line_is_still_held_back(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(GOOD_LINE + "\n" + GOOD_LINE[:30])
    assert len(read_events(str(path))) == 1


def test_runs_names_a_run_whose_event_file_is_bad_and_lists_the_others(tmp_path, capsys):
    runs = tmp_path / "runs"
    a = write_run(runs / "luna" / "2026-01-01_00.00.00-a", index=False)
    b = write_run(runs / "luna" / "2026-01-02_00.00.00-b", t0=T0 + 100)
    with open(os.path.join(a, "events.jsonl"), "a") as f:
        f.write(BAD_LINES[0] + "\n")
    assert cli_main(["runs", "--runs-dir", str(runs), "--wide"]) == 0
    out = capsys.readouterr()
    assert b in out.out and a not in out.out
    (warning,) = out.err.strip().splitlines()
    assert f"{a}/events.jsonl:9: " in warning and "not listed" in warning
    assert "Traceback" not in out.err


# -- 4. examples zips --------------------------------------------------------------------------

def bad_zips(d) -> dict[str, str]:
    d = str(d)
    meta = good_meta()
    truncated = os.path.join(d, "cut.zip")
    write_zip(truncated)
    with open(truncated, "rb") as f:
        whole = f.read()
    with open(truncated, "wb") as f:
        f.write(whole[: len(whole) // 2])
    not_zip = os.path.join(d, "text.zip")
    with open(not_zip, "w") as f:
        f.write("hello\n")
    return {
        "extra field": zip_with(os.path.join(d, "extra.zip"), {**meta, "examples": [
            {**example_entry(), "surprise": 1}]}, GOOD_RAW),
        "missing field": zip_with(os.path.join(d, "missing.zip"), {**meta, "examples": [
            {k: v for k, v in example_entry().items() if k != "loss"}]}, GOOD_RAW),
        "odd chunk bytes": zip_with(os.path.join(d, "odd.zip"), meta, GOOD_RAW + b"\x01"),
        "a chunk short": zip_with(os.path.join(d, "short.zip"), meta, GOOD_RAW[:-2]),
        "chunk not there": zip_with(os.path.join(d, "chunk.zip"), {**meta, "examples": [
            example_entry(chunk=3)]}, GOOD_RAW),
        "a list": zip_with(os.path.join(d, "list.zip"), [meta], GOOD_RAW),
        "width of two": zip_with(os.path.join(d, "width.zip"), {**meta, "width_irc": [2, 3]},
                                 GOOD_RAW),
        "examples not a list": zip_with(os.path.join(d, "notlist.zip"),
                                        {**meta, "examples": {"kind": "misses"}}, GOOD_RAW),
        "centre off the chunk": zip_with(os.path.join(d, "centre.zip"), {**meta, "examples": [
            example_entry(irc_in_chunk=[5, 1, 1])]}, GOOD_RAW),
        "string rank": zip_with(os.path.join(d, "rank.zip"), {**meta, "examples": [
            example_entry(rank="1")]}, GOOD_RAW),
        "no format": zip_with(os.path.join(d, "format.zip"),
                              {k: v for k, v in meta.items() if k != "format"}, GOOD_RAW),
        "truncated": truncated,
        "not a zip": not_zip,
    }


def test_a_good_examples_file_reads(tmp_path):
    loaded = read_examples(zip_with(str(tmp_path / "good.zip"), good_meta(), GOOD_RAW))
    assert loaded.width_irc == WIDTH and len(loaded.examples) == 1
    assert loaded.axial(loaded.examples[0])[0] == [256] * 4


BAD_ZIPS = ["extra field", "missing field", "odd chunk bytes", "a chunk short",
            "chunk not there", "a list", "width of two", "examples not a list",
            "centre off the chunk", "string rank", "no format", "truncated", "not a zip"]


@pytest.mark.parametrize("which", BAD_ZIPS)
def test_a_bad_examples_file_is_one_line_naming_it(tmp_path, capsys, which):
    path = bad_zips(tmp_path / "made")[which]
    with pytest.raises(LunaInputError) as info:
        read_examples(path)
    assert info.value.path == path and "\n" not in str(info.value)
    run_dir = tmp_path / "run"
    os.makedirs(run_dir / "examples")
    shutil.copy(path, examples_path(str(run_dir), 3))
    code = cli_main(["examples", str(run_dir)])
    one_line_error(capsys, code, "luna-tui examples: ", examples_path(str(run_dir), 3))


def test_examples_png_into_a_file_is_one_line(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    write_zip(examples_path(run_dir, 1))
    target = tmp_path / "a-file"
    target.write_text("keep me")
    code = cli_main(["examples", run_dir, "--png", str(target)])
    one_line_error(capsys, code, str(target))
    assert target.read_text() == "keep me"
    code = cli_main(["examples", run_dir, "--png", str(target / "below")])
    one_line_error(capsys, code, str(target))
    assert cli_main(["examples", run_dir, "--png", str(tmp_path / "pngs")]) == 0
    assert len(os.listdir(tmp_path / "pngs")) == 9


async def test_the_examples_view_says_what_is_wrong_with_a_bad_file(tmp_path):
    from luna_core.run.command_table import CommandChannel
    from luna_tui.app import CockpitApp
    from luna_tui.images import image_widget
    from luna_tui.link.local import LocalLink
    from tests.cockpit_helpers import FROZEN_READING, frozen_clock, on_screen, scripted_run

    made = bad_zips(tmp_path)
    collector = scripted_run(lambda e: isinstance(e, ev.BatchDone) and e.epoch == 2,
                             epochs=2, trn_batches=20, val_batches=4)
    for epoch, which in enumerate(("extra field", "odd chunk bytes", "not a zip"), 1):
        collector(ev.ExamplesSaved(epoch=epoch, path=made[which], misses=1, false_alarms=0,
                                   best=0, t=1.0))
    app = CockpitApp(LocalLink(collector, CommandChannel()), clock=frozen_clock(),
                     system_probe=lambda: FROZEN_READING, image_class=image_widget("halfblock"))
    def head() -> str:
        return str(app.query_one("#examples-head").render())

    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("6")
        await on_screen(pilot, app, "E3: ")
        assert head() == f"E3: {made['not a zip']}: not a luna-tui examples file (File is " \
                         "not a zip file)"
        await pilot.press("comma")
        await on_screen(pilot, app, "E2: ")
        assert head().startswith(f"E2: {made['odd chunk bytes']}: ")
        assert "not whole int16 voxels" in head() and "\n" not in head()
        await pilot.press("comma")
        await on_screen(pilot, app, "E1: ")
        assert head().startswith(f"E1: {made['extra field']}: ") and "surprise" in head()
        assert app.is_running


# -- 5. checkpoints ----------------------------------------------------------------------------

def full_state() -> dict:
    return {"format_version": ck.CHECKPOINT_FORMAT_VERSION, "model": {"w": torch.zeros(2)},
            "optimizer": {}, "epoch": 1, "batch_ndx": 3, "epoch_done": False,
            "total_samples": 30, "trn_metrics": None, "rng": {}, "options": {},
            "run": {"time_str": "t"}, "val_loss": None, "best_val_loss": None}


@pytest.mark.parametrize("key", ["batch_ndx", "epoch", "epoch_done", "model", "optimizer",
                                 "options", "rng", "run", "total_samples"])
def test_a_checkpoint_missing_a_key_is_a_checkpoint_error_naming_the_file(tmp_path, key):
    from luna_core.train.resume import Resume

    path = str(tmp_path / "e001-b000003.pt")
    state = full_state()
    del state[key]
    torch.save(state, path)
    loaded = ck.load_checkpoint(path)
    with pytest.raises(ck.CheckpointError, match=f"{path}: .*{key}"):
        loaded[key]
    with pytest.raises(ck.CheckpointError, match=f"{path}: .*{key}"):
        ck.check_checkpoint(loaded, path)
    if key in ("epoch", "batch_ndx", "epoch_done"):       # what resuming reads first
        with pytest.raises(ck.CheckpointError, match=path):
            Resume.load(path)


def test_a_checkpoint_key_of_the_wrong_type_is_refused_at_load(tmp_path):
    path = str(tmp_path / "e001-end.pt")
    torch.save({**full_state(), "epoch": "1"}, path)
    with pytest.raises(ck.CheckpointError, match=f"{path}: .*epoch is str"):
        ck.load_checkpoint(path)
    torch.save({**full_state(), "run": {}}, path)
    with pytest.raises(ck.CheckpointError, match=f"{path}: .*time_str"):
        ck.load_checkpoint(path)["run"]["time_str"]
    torch.save(full_state(), path)
    ck.check_checkpoint(ck.load_checkpoint(path), path)


class FullDisk(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def test_a_full_disk_mid_checkpoint_says_no_space_not_enforce_fail(tmp_path, monkeypatch):
    path = tmp_path / "e001-end.pt"
    ck.atomic_torch_save(full_state(), str(path))
    real = ck.atomic_write

    @contextlib.contextmanager
    def filling(p, **kw):
        with real(p, **kw) as f:
            yield FullDisk(f, room=1000)

    monkeypatch.setattr(ck, "atomic_write", filling)
    state = {**full_state(), "model": {"w": torch.zeros(100_000)}}
    with pytest.raises(ck.CheckpointError) as info:
        ck.atomic_torch_save(state, str(path))
    assert str(info.value) == f"{path}: could not write checkpoint: No space left on device"
    assert os.listdir(tmp_path) == ["e001-end.pt"]        # the temp file is gone
    assert ck.load_checkpoint(str(path))["model"]["w"].shape == (2,)   # the one before


# -- 6. the control socket -------------------------------------------------------------------

def test_a_huge_number_gets_a_reply_and_the_socket_goes_on(tmp_path, monkeypatch, capfd):
    from luna_core.run.command_table import Command, Setting
    from tests.test_control_socket import Harness, Raw

    harness = Harness(tmp_path, monkeypatch, capfd)
    channel = harness.start()
    client = Raw(harness.path)
    huge = "1" + "0" * 400
    for line in (f'{{"command": "set", "lr": {huge}}}',
                 f'{{"command": "set", "lr": "{huge}"}}',
                 f'{{"command": "set", "momentum": -{huge}}}',
                 '{"command": "set", "lr": 1e999}'):
        client.send(line.encode() + b"\n")
        reply = client.reply()
        assert reply is not None and reply["ok"] is False, line
        assert reply["error"].startswith("bad request: "), reply
    assert channel.take() == []
    client.send(b'{"command": "set", "lr": 0.01}\n{"command": "pause"}\n')
    assert client.reply() == {"ok": True, "command": "set"}
    assert client.reply() == {"ok": True, "command": "pause"}
    taken = channel.take()
    assert isinstance(taken[0], Setting) and taken[0].lr == 0.01 and taken[1] is Command.PAUSE
    client.close()
    harness.finish()                          # no thread died, no traceback


# -- 7. `luna-tui check` on a garbage .mhd ----------------------------------------------------

@pytest.mark.parametrize("garbage", ["random bytes", "text", "no data file", "2-D"])
def test_check_names_a_garbage_mhd_in_one_line(tmp_path, capsys, garbage):
    from luna_core.data.candidates import clear_cache
    from tests.lunadata import make_dataset_dir

    data, uids, _ = make_dataset_dir(tmp_path / "data", n_series=2, per_series=15)
    mhd = data / "subset0" / f"{uids[0]}.mhd"
    if garbage == "random bytes":
        mhd.write_bytes(np.random.default_rng(1).bytes(5000))
    elif garbage == "text":
        mhd.write_text("Dear reader,\nthis is not a MetaImage header.\n")
    elif garbage == "no data file":
        mhd.write_text("NDims = 3\nDimSize = 30 30 20\nElementType = MET_SHORT\n")
    else:
        mhd.write_text(f"NDims = 2\nDimSize = 30 600\nElementType = MET_SHORT\n"
                       f"ElementDataFile = {uids[0]}.raw\n")
    clear_cache()
    code = cli_main(["check", "--data-dir", str(data), "--cache-dir", str(tmp_path / "c")])
    out = capsys.readouterr()
    assert code == 2 and "Traceback" not in out.err
    first = out.out.splitlines()[0]
    assert first.startswith("cannot start a run: ") and str(mhd) in first
    assert "1 bad (named above)" in out.out


# -- 8. compare --csv into a folder that is not there -----------------------------------------

def test_compare_csv_into_a_missing_folder_is_one_line(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    target = str(tmp_path / "nowhere" / "x.csv")
    code = cli_main(["compare", run, "--csv", target])
    one_line_error(capsys, code, "luna-tui compare: ", target, "No such file or directory")
    assert not os.path.exists(tmp_path / "nowhere")
    assert cli_main(["compare", run, "--csv", str(tmp_path / "x.csv")]) == 0
    assert os.path.isfile(tmp_path / "x.csv")


# -- 9. `luna-tui runs` on a folder it cannot read; --tui on a bad run -------------------------

def test_runs_says_it_cannot_read_the_runs_folder(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    write_run(runs / "luna" / "2026-01-01_00.00.00-a")
    real = os.scandir

    def denied(path="."):
        if os.fspath(path) == str(runs):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", denied)
    code = cli_main(["runs", "--runs-dir", str(runs)])
    err = one_line_error(capsys, code, str(runs), "Permission denied")
    assert "no runs" not in err
    assert cli_main(["runs", "--runs-dir", str(tmp_path / "none")]) == 0
    assert capsys.readouterr().out == f"no runs under {tmp_path / 'none'}\n"
    file_runs = tmp_path / "file"
    file_runs.write_text("")
    one_line_error(capsys, cli_main(["runs", "--runs-dir", str(file_runs)]), str(file_runs))


def test_runs_names_a_tb_prefix_folder_it_cannot_read(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    b = write_run(runs / "other" / "2026-01-02_00.00.00-b")
    write_run(runs / "luna" / "2026-01-01_00.00.00-a")
    real = os.scandir

    def denied(path="."):
        if os.fspath(path) == str(runs / "luna"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", denied)
    problems: list[str] = []
    assert rr.find_run_dirs(str(runs), problems) == [b]
    assert problems == [f"{runs / 'luna'}: cannot read this folder (Permission denied); its "
                        "runs are not listed"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder whatever its mode")
def test_runs_on_a_folder_of_mode_000(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs / "luna" / "2026-01-01_00.00.00-a")
    os.chmod(runs, 0)
    try:
        code = cli_main(["runs", "--runs-dir", str(runs)])
    finally:
        os.chmod(runs, 0o755)
    one_line_error(capsys, code, str(runs), "cannot read")


async def test_the_runs_screen_shows_the_other_runs_beside_a_bad_one(tmp_path):
    from luna_tui.runs_app import RunsApp
    from tests.cockpit_helpers import wait_for

    runs = tmp_path / "runs"
    good = write_run(runs / "luna" / "2026-01-01_00.00.00-good")
    odd_index = write_run(runs / "luna" / "2026-01-02_00.00.00-oddindex", t0=T0 + 100)
    bad_file = write_run(runs / "luna" / "2026-01-03_00.00.00-badfile", t0=T0 + 200,
                         index=False)
    with open(os.path.join(odd_index, "index.json"), "w") as f:
        json.dump({"format": "1", "events": [1, 2]}, f)
    with open(os.path.join(bad_file, "events.jsonl"), "a") as f:
        f.write(BAD_LINES[0] + "\n")
    app = RunsApp(str(runs))
    async with app.run_test(size=(160, 30)) as pilot:
        await wait_for(pilot, lambda: len(app.runs.all_rows) == 2)
        assert {r.key for r in app.runs.all_rows} == {good, odd_index}
        assert len(app.runs.unlisted) == 1 and bad_file in app.runs.unlisted[0]
        status = str(app.runs.query_one("#runs-status").render())
        assert "not listed: " in status and "events.jsonl:9" in status
        assert app.is_running


# -- 10. printed commands quote paths ---------------------------------------------------------

def test_the_go_on_and_compare_lines_quote_paths_with_spaces(tmp_path):
    run = write_run(tmp_path / "my runs" / "2026-01-01_00.00.00-a b")
    summary = summarise(run, read_events(os.path.join(run, "events.jsonl")))
    before = str(tmp_path / "my runs" / "earlier run")
    lines = summary.lines(before)
    (go_on,) = [ln for ln in lines if "go on with" in ln]
    assert go_on.endswith(f"luna-tui --headless --resume {shlex.quote(run)} --epochs N")
    assert shlex.split(go_on.split(": ", 1)[1])[3] == run
    assert lines[-1] == compare_line(before, run)
    assert shlex.split(lines[-1].split(": ", 1)[1])[2:] == [before, run]


# -- 11. a copied run folder reads its own files ----------------------------------------------

def test_rebase_moves_only_paths_under_the_recorded_run_dir():
    assert rr.rebase("/a/run/checkpoints/e.pt", "/a/run", "/b/copy") == "/b/copy/checkpoints/e.pt"
    assert rr.rebase("/a/run/", "/a/run", "/b/copy") == "/b/copy"
    assert rr.rebase("/a/runner/x.pt", "/a/run", "/b/copy") == "/a/runner/x.pt"
    assert rr.rebase("/elsewhere/x.pt", "/a/run", "/b/copy") == "/elsewhere/x.pt"
    assert rr.rebase("runs/r/checkpoints/e.pt", "runs/r", "/r") == "/r/checkpoints/e.pt"
    assert rr.rebase(None, "/a/run", "/b") is None
    assert rr.rebase("/a/run/x", None, "/b") == "/a/run/x"


def test_a_copied_run_folder_points_at_its_own_files(tmp_path, capsys):
    original = write_run(tmp_path / "orig" / "run", examples=True)
    copy = str(tmp_path / "copy" / "run")
    shutil.copytree(original, copy)
    shutil.rmtree(tmp_path / "orig")
    events = read_events(os.path.join(copy, "events.jsonl"))
    lines = summarise(copy, events).lines()
    assert f"  best weights: {copy}/checkpoints/best.pt" in lines
    assert rr.read_run(copy).last_checkpoint == f"{copy}/checkpoints/e002-end.pt"
    (info, _e), = rr.list_runs_with_events(str(tmp_path / "copy"))
    assert info.last_checkpoint.startswith(copy)
    assert cli_main(["examples", copy]) == 0
    assert "E2 worst misses" in capsys.readouterr().out


async def test_the_examples_view_of_a_copied_run_shows_the_copys_files(tmp_path):
    from luna_tui.attach import build_attach_app
    from tests.cockpit_helpers import FROZEN_READING, frozen_clock, on_screen

    original = write_run(tmp_path / "orig" / "run", examples=True)
    copy = str(tmp_path / "copy" / "run")
    shutil.copytree(original, copy)
    for epoch in (1, 2):                      # the original's examples now say otherwise
        write_zip(examples_path(original, epoch), epoch, probability=0.75)
    app = build_attach_app(copy, clock=frozen_clock(), system_probe=lambda: FROZEN_READING,
                           image_class=None, poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("6")
        text = await on_screen(pilot, app, "#1 p 0.250")
        assert "p 0.750" not in text
    shutil.rmtree(tmp_path / "orig")          # gone altogether: the copy's, all the same
    app = build_attach_app(copy, clock=frozen_clock(), system_probe=lambda: FROZEN_READING,
                           image_class=None, poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("6")
        await on_screen(pilot, app, "#1 p 0.250")
