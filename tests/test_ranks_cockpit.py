"""Every rank in the cockpit (issue 34), from a recorded event file: a run of 2 ranks where none
holds the job back, and one of 8 where rank 3 waits for its data. The System pane names the
slowest at 80x24 and has a row per rank at 160x48; the ranks view (8) shows them side by
side with each rank's trend; the summary gives the straggler's share of the time; a
straggler held for a minute is a notice. Snapshots at 80x24 and 160x48."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from luna_core.run import events as ev
from luna_core.run.straggler import RankWindow, StragglerWatch, scores
from luna_tui.attach import build_attach_app
from luna_tui.model.news import SnapshotNews
from tests.cockpit_helpers import FROZEN_READING, fake_time, frozen_clock, on_screen
from tests.fakerun import FakeTrainer


def windows(n: int, slow: int | None, k: int) -> list[RankWindow]:
    out = []
    for r in range(n):
        wobble = 0.0003 * ((r * 7 + k * 3) % 5)        # the same every time: snapshots
        out.append(RankWindow(
            rank=r, host=f"gpu-node-{r // 4}", device=f"cuda:{r % 4}", batches=10,
            data_s=(0.081 if r == slow else 0.0021 + wobble), copy_s=0.0012,
            # under DDP every step lasts as long as the slowest: the others wait for it at
            # the buffer broadcast before the forward pass
            sync_s=0.0003 if r == slow or slow is None else 0.0792,
            forward_s=0.0205 + wobble, backward_s=0.0424,
            step_s=0.0031, samples_per_s=381.0 if r != slow else 372.0, util_percent=
            (35.0 if r == slow else 96.0), mem_used=int(31.2 * 2**30),
            mem_total=int(79.6 * 2**30), power_w=(140.0 if r == slow else 610.0)))
    return out


def write_ranks_run(run_dir, n: int, slow: int | None) -> None:
    """The fake trainer's run to E2 batch 40, with every rank's window each 10 training
    batches, judged as rank 0 judges them; the slowdown from E1 batch 20 on."""
    os.makedirs(run_dir, exist_ok=True)
    trainer = FakeTrainer(epochs=2, trn_batches=60, val_batches=12, time_fn=fake_time(
        step=1.0), run_dir="runs/luna/2025-03-04_12.00.00-ddp")
    watch = StragglerWatch()
    k = 0
    with open(os.path.join(run_dir, "events.jsonl"), "w") as f:
        for event in trainer.events():
            if isinstance(event, ev.RunStarted):
                event = dataclasses.replace(event, world_size=n, host="", pid=4242)
            f.write(json.dumps(ev.event_to_dict(event)) + "\n")
            if (isinstance(event, ev.BatchDone) and event.phase == "trn"
                    and (event.batch_ndx + 1) % 10 == 0):
                late = event.epoch > 1 or event.batch_ndx >= 20
                ws = windows(n, slow if late else None, k)
                k += 1
                named = watch.update(ws, event.t)
                fastest = scores(ws)
                timing = ev.RankTimings(
                    epoch=event.epoch, batch_ndx=event.batch_ndx,
                    total_samples=event.total_samples, t=event.t,
                    ranks=[{**dataclasses.asdict(w), "score": fastest[w.rank],
                            "self_score": watch.self_score(w)} for w in ws],
                    straggler=None if named is None else {
                        "rank": named.rank, "part": named.part, "reason": named.reason,
                        "named_for_s": watch.named_for(event.t)},
                    named_s=watch.named_s)
                f.write(json.dumps(ev.event_to_dict(timing)) + "\n")
            if isinstance(event, ev.BatchDone) and event.epoch == 2 and event.batch_ndx == 40:
                stopped = ev.RunFinished(state=ev.STOPPED, exit_code=0, t=event.t + 1.0)
                f.write(json.dumps(ev.event_to_dict(stopped)) + "\n")
                break


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ranks")
    write_ranks_run(root / "two", 2, None)
    write_ranks_run(root / "eight", 8, 3)
    return {"two": str(root / "two"), "eight": str(root / "eight")}


def attach(run_dir):
    return build_attach_app(run_dir, poll_interval=0.1, system_probe=lambda: FROZEN_READING,
                            clock=frozen_clock())


async def test_the_slowest_rank_is_named_and_every_rank_has_a_row(runs):
    app = attach(runs["eight"])
    async with app.run_test(size=(80, 24)) as pilot:
        await on_screen(pilot, app, "slowest: rank 3 (data wait)")
        await pilot.press("8")
        await on_screen(pilot, app, "straggler rank 3: data wait", "bwd+AR", "trend")
    app = attach(runs["eight"])
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("4")
        text = await on_screen(pilot, app, "rank  host", "data wait", "◀ data wait")
        assert sum(1 for line in text.splitlines() if "gpu-node-" in line) == 8
    app = attach(runs["two"])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await on_screen(pilot, app, "ranks: 2, none holds the job back (score ≥ 0.9")


def test_a_straggler_held_a_minute_is_a_notice_and_the_summary_says_its_share(runs):
    from luna_core.run.eventfile import read_events
    from luna_core.run.summary import summarise
    from luna_tui.model.collector import EventCollector

    events = read_events(os.path.join(runs["eight"], "events.jsonl"))
    collector, news = EventCollector(), SnapshotNews()
    news.since_last(collector.snapshot())
    said = []
    for e in events:
        collector(e)
        said += [n for n in news.since_last(collector.snapshot())[1] if n.title == "Straggler"]
    assert len(said) == 1 and said[0].message.startswith("rank 3: data wait ")
    lines = summarise(runs["eight"], events).lines()
    share = [line for line in lines if line.startswith("  ranks: 8;")]
    assert share and "a straggler named" in share[0] and "(last: rank 3, data wait)" in share[0]
    lines = summarise(runs["two"], read_events(os.path.join(runs["two"], "events.jsonl")))
    assert "  ranks: 2; no straggler named" in lines.lines()


@pytest.mark.parametrize("run, size, press", [
    (run, size, press) for press in ([], ["4"], ["8"]) for run in ("two", "eight")
    for size in ((80, 24), (160, 48))],
    ids=[f"{n}-{view}-{size}" for view in ("overview", "system", "ranks")
         for n in ("2", "8") for size in ("80x24", "160x48")])
def test_ranks_snapshot(snap_compare, runs, run, size, press):
    app = attach(runs[run])

    async def settled(pilot) -> None:
        await on_screen(pilot, app, "epoch 2/2")
        for key in press:
            await pilot.press(key)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=settled)
