"""--notify-cmd: the command runs on finish, failure, a non-finite loss and NODULES MISSED for
3 validations, with the facts in its environment; a slow one is killed, never waited for.

Machine-independent by construction: the metrics events are made by the test."""

from __future__ import annotations

import logging

from luna_core.run import events as ev
from luna_core.run.alerts import NotifySink
from tests.trainhelpers import run_loop


def _record(path) -> str:
    return f'printf "%s|%s|%s\\n" "$LUNA_EVENT" "$LUNA_RUN_DIR" "$LUNA_MESSAGE" >> {path}'


def _lines(path) -> list[list[str]]:
    return [line.split("|", 2) for line in path.read_text().splitlines()] \
        if path.exists() else []


def test_a_finished_run_and_a_failed_one_notify(train_argv, tmp_path):
    out = tmp_path / "said.txt"
    code, rec, _ = run_loop(train_argv("--epochs", "1", "--max-batches", "1",
                                       "--notify-cmd", _record(out)))
    assert code == 0
    run_dir = rec.of(ev.RunStarted)[0].run_dir
    assert _lines(out) == [["finished", run_dir, "run finished: exit status 0"]]

    out.unlink()
    bad = tmp_path / "empty"
    bad.mkdir()
    argv = train_argv("--epochs", "1", "--notify-cmd", _record(out))
    argv[argv.index("--data-dir") + 1] = str(bad)
    code, rec, _ = run_loop(argv)
    assert code == 2
    (said,) = _lines(out)
    assert said[0] == "failed" and said[1] == "" and "annotations.csv" in said[2]


def _metrics(epoch: int, pos_correct: int) -> ev.EpochMetrics:
    pos = 100.0 * pos_correct / 10
    return ev.EpochMetrics(phase="val", epoch=epoch, total_samples=100 * epoch,
                           metrics={"correct/pos": pos, "correct/all": 99.0},
                           neg_correct=990, neg_count=990, pos_correct=pos_correct, pos_count=10)


def test_nonfinite_and_three_validations_of_missed_nodules_notify_once(tmp_path):
    out = tmp_path / "said.txt"
    sink = NotifySink(_record(out))
    sink(ev.RunStarted(run_dir="/r/run", options={}, epochs=9, start_epoch=1, trn_samples=1,
                       val_samples=1, trn_pos=1, val_pos=1, device="cpu", pid=1))
    sink(ev.NonFiniteLoss(phase="trn", epoch=2, batch_ndx=7, action="stop"))
    for epoch, found in ((1, 0), (2, 0), (3, 5), (4, 0), (5, 0), (6, 0), (7, 0)):
        sink(_metrics(epoch, found))
    sink.close()
    said = _lines(out)
    assert sorted(s[0] for s in said) == ["nodules_missed", "nonfinite"]
    by = {s[0]: s for s in said}
    assert by["nonfinite"][1:] == ["/r/run", "non-finite loss at E2 trn batch 7: stop"]
    assert by["nodules_missed"][2].startswith("NODULES MISSED for 3 validations (E6: 0 of 10")
    assert "--balanced" in by["nodules_missed"][2]


def test_a_slow_command_is_killed_at_its_timeout_and_never_blocks(tmp_path, caplog):
    out = tmp_path / "late.txt"
    gate = tmp_path / "gate"
    sink = NotifySink(f"while [ ! -e {gate} ]; do sleep 0.05; done; sleep 60; echo x > {out}",
                      timeout=1.0)
    sink.notify("finished", "run finished")   # returns while the command waits on the gate
    assert sink._threads[0].is_alive()
    gate.touch()
    with caplog.at_level(logging.WARNING, logger="luna_core.run.alerts"):
        sink.close()
    assert not sink._threads[0].is_alive() and not out.exists()
    assert any("still ran after 1 s: killed" in r.getMessage() for r in caplog.records)


def test_a_failing_command_is_logged(tmp_path, caplog):
    sink = NotifySink("echo broken pipe >&2; exit 3")
    with caplog.at_level(logging.WARNING, logger="luna_core.run.alerts"):
        sink.notify("stopped", "run stopped")
        sink.close()
    (record,) = [r for r in caplog.records if "exited with status 3" in r.getMessage()]
    assert "broken pipe" in record.getMessage()


def test_nodules_missed_is_the_classifiers_alarm_only(tmp_path):
    """A malignancy (or seg) run whose positive class is never right gets no NODULES MISSED:
    its remedy, --balanced, is the classifier's option. Neither does the cockpit show it."""
    from luna_tui.model.collector import EventCollector

    out = tmp_path / "said.txt"
    sink = NotifySink(_record(out))
    collector = EventCollector()
    for task in ("malignancy", "seg"):
        start = ev.RunStarted(run_dir="/r/run", options={"task": task}, epochs=9,
                              start_epoch=1, trn_samples=1, val_samples=1, trn_pos=1,
                              val_pos=1, device="cpu", pid=1)
        for consumer in (sink, collector):
            consumer(start)
            for epoch in range(1, 6):
                consumer(_metrics(epoch, 0))
        assert not collector.snapshot().metrics["val"].pos_alarm
    sink.close()
    assert _lines(out) == []
    collector(ev.RunStarted(run_dir="/r/run", options={}, epochs=9, start_epoch=1,
                            trn_samples=1, val_samples=1, trn_pos=1, val_pos=1, device="cpu",
                            pid=1))
    collector(_metrics(1, 0))
    assert collector.snapshot().metrics["val"].pos_alarm          # the classifier's: it does
