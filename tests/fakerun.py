"""A fake training loop that speaks the real trainer's contract, for tests and demos.

``FakeTrainer(sinks=[...], commands=CommandChannel()).main()`` emits realistic events
(RunStarted, PhaseStarted, BatchDone, EpochMetrics with the book's lopsided numbers: about
99.7 % correct overall and 0 % of nodules) and obeys pause / resume / checkpoint / stop at
batch boundaries, like ``luna_core.training.LunaTrainingApp``. ``events()`` is the same run as
a generator, for scripted (deterministic) tests; ``gate`` (e.g. a semaphore's ``acquire``),
called before each batch, lets a test release the live run one batch at a time.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator

from luna_core.run.command_table import Command, CommandChannel, Setting
from luna_core.run.events import (
    FINISHED,
    PAUSED,
    STOPPED,
    STOPPING,
    BatchDone,
    CheckpointSaved,
    EpochMetrics,
    Event,
    LogRecord,
    NonFiniteLoss,
    OptimizerChanged,
    PhaseStarted,
    RunFinished,
    RunStarted,
    StatusChanged,
    working_state,
)


class FakeTrainingError(RuntimeError):
    pass


FP_LEVELS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def fake_score(epoch: int, pos: int, neg: int) -> dict:
    """A validation's score (the shape of luna_core.score's ``to_dict``) that gets better
    every epoch: the FROC rises towards 0.9, nodules move up the histogram (none above 0.5:
    the book's ch. 11 outcome, 0 nodules right at the threshold)."""
    k = 2.0 / epoch

    def sens(f: float) -> float:
        return round(0.9 * f / (f + k), 5)

    sensitivity = [sens(f) for f in FP_LEVELS]
    cpm = round(sum(sensitivity) / len(sensitivity), 5)
    grid = [round(2 ** (-4 + 8 * i / 63), 5) for i in range(64)]
    hist_pos = [0] * 20
    for i in range(pos):                       # nodules spread over the lower bins
        hist_pos[min(9, (i * (epoch + 1)) % (2 + 3 * epoch))] += 1
    hist_neg = [0] * 20
    hist_neg[0] = neg - neg // 50
    hist_neg[1] = neg // 50
    recall = [round(i / 63, 5) for i in range(64)]
    precision = [round(max(0.01, (0.2 + 0.1 * epoch) * (1 - r) ** 2), 5) for r in recall]
    return {
        "cpm": cpm, "cpm_low": round(cpm - 0.08, 5), "cpm_high": round(cpm + 0.07, 5),
        "fp_levels": list(FP_LEVELS), "sensitivity": sensitivity,
        "curve_fps": grid, "curve_sens": [sens(f) for f in grid],
        "scans": 88, "nodules": pos, "nodules_without_candidate": 2,
        "excluded_candidates": 5, "nodule_source": "annotations",
        "nodules_found_at_threshold": 0,
        "chance_cpm": 0.01,
        "auc": round(0.7 + 0.05 * epoch, 5), "auc_low": round(0.38 + 0.12 * epoch, 5),
        "auc_high": round(0.89 + 0.02 * epoch, 5), "average_precision": round(0.05 * epoch, 5),
        "confusion": {"tp": 0, "fp": 0, "tn": neg, "fn": pos}, "threshold": 0.5,
        "pr_recall": recall, "pr_precision": precision,
        "hist_bins": 20, "hist_pos": hist_pos, "hist_neg": hist_neg,
    }


class FakeTrainer:
    def __init__(self, sys_argv: list[str] | None = None,
                 sinks: list[Callable[[Event], None]] | None = None,
                 commands: CommandChannel | None = None, *,
                 epochs: int = 2, trn_batches: int = 120, val_batches: int = 30,
                 batch_size: int = 32, trn_pos_fraction: float = 0.003,
                 batch_delay: float = 0.0, data_s: float = 0.030, compute_s: float = 0.012,
                 nonfinite_at: tuple[int, int] | None = None,
                 fail_at: tuple[int, int] | None = None,
                 time_fn: Callable[[], float] | None = None,
                 gate: Callable[[], object] | None = None,
                 run_dir: str = "runs/demo", seed: int = 11, task: str = "nodule") -> None:
        self.sys_argv = list(sys_argv or [])
        self.task = task      # "seg": the segmentation task's pixel numbers
        self.lr, self.momentum = 0.001, 0.99
        self.sinks = list(sinks or [])
        self.commands = commands or CommandChannel()
        self.epochs = epochs
        self.trn_batches, self.val_batches = trn_batches, val_batches
        self.batch_size = batch_size
        self.trn_pos_fraction = trn_pos_fraction
        self.batch_delay = batch_delay
        self.data_s, self.compute_s = data_s, compute_s
        self.nonfinite_at = nonfinite_at
        self.fail_at = fail_at
        self.time_fn = time_fn or time.time
        self.gate = gate      # called before each batch: tests pace the run with a semaphore
        self.run_dir = run_dir
        self.rng = random.Random(seed)
        self.total_samples = 0
        self.checkpoints = 0
        self._phase = "trn"

    # -- the contract ----------------------------------------------------------------------

    def main(self) -> int:
        code = 0
        for event in self.events():
            for sink in self.sinks:
                sink(event)
            if isinstance(event, BatchDone) and self.batch_delay:
                time.sleep(self.batch_delay)
            if isinstance(event, RunFinished):
                code = event.exit_code
        return code

    # -- the run as a generator ------------------------------------------------------------

    def _t(self) -> float:
        return self.time_fn()

    def events(self) -> Iterator[Event]:
        trn_samples = self.trn_batches * self.batch_size
        val_samples = self.val_batches * self.batch_size
        trn_pos = max(1, round(trn_samples * self.trn_pos_fraction))
        val_pos = max(1, round(val_samples * self.trn_pos_fraction))
        yield RunStarted(run_dir=self.run_dir, options={"epochs": self.epochs, "lr": self.lr,
                                                        "momentum": self.momentum,
                                                        "batch_size": self.batch_size,
                                                        "task": self.task},
                         epochs=self.epochs, start_epoch=1, trn_samples=trn_samples,
                         val_samples=val_samples, trn_pos=trn_pos, val_pos=val_pos,
                         device="cpu", pid=4242, t=self._t())
        yield LogRecord(level="INFO", message=f"LunaTrainingApp starting, {self.sys_argv!r}",
                        t=self._t())
        yield LogRecord(level="INFO",
                        message=f"{trn_samples} training samples ({trn_pos} positive), "
                                f"{val_samples} validation samples", t=self._t())
        for epoch in range(1, self.epochs + 1):
            for phase, batches, samples, pos in (("trn", self.trn_batches, trn_samples,
                                                  trn_pos),
                                                 ("val", self.val_batches, val_samples,
                                                  val_pos)):
                self._phase = phase
                yield StatusChanged(state=working_state(phase), t=self._t())
                yield PhaseStarted(phase=phase, epoch=epoch, batch_count=batches,
                                   sample_count=samples, t=self._t())
                yield LogRecord(level="INFO",
                                message=f"E{epoch} {'Training' if phase == 'trn' else 'Validation'}"
                                        f" ----/{batches}, starting", t=self._t())
                active = 0.0
                for ndx in range(batches):
                    if self.gate is not None:
                        self.gate()
                    stop = yield from self._take_commands(epoch, ndx)
                    if stop:
                        return
                    if self.fail_at == (epoch, ndx) and phase == "trn":
                        raise FakeTrainingError(f"CUDA error: device-side assert triggered "
                                                f"(fake, epoch {epoch} batch {ndx})")
                    loss = self._loss(epoch, ndx, batches)
                    if self.nonfinite_at == (epoch, ndx) and phase == "trn":
                        loss = math.nan
                    data_s = self.data_s * (1.0 + 0.2 * self.rng.random())
                    compute_s = self.compute_s * (0.6 if phase == "val" else 1.0)
                    if ndx == 0:
                        data_s *= 8       # loader start-up: the warm-up batches
                    active += data_s + compute_s
                    if phase == "trn":
                        self.total_samples += self.batch_size
                    yield BatchDone(phase=phase, epoch=epoch, batch_ndx=ndx,
                                    batch_count=batches, samples=self.batch_size,
                                    total_samples=self.total_samples, loss=loss,
                                    data_s=data_s, compute_s=compute_s, active_s=active,
                                    t=self._t())
                    if not math.isfinite(loss):
                        yield NonFiniteLoss(phase=phase, epoch=epoch, batch_ndx=ndx,
                                            action="pause", t=self._t())
                        yield LogRecord(level="WARNING",
                                        message=f"non-finite loss at E{epoch} {phase} batch "
                                                f"{ndx}: pausing", t=self._t())
                        self.commands.pause()
                yield from self._metrics(phase, epoch, samples, pos)
            yield self._checkpoint("epoch", epoch, self.trn_batches)
        yield StatusChanged(state=FINISHED, t=self._t())
        yield RunFinished(state=FINISHED, exit_code=0,
                          last_checkpoint=self._last_ckpt, t=self._t())

    _last_ckpt: str | None = None

    def _checkpoint(self, reason: str, epoch: int, batch_ndx: int) -> CheckpointSaved:
        self.checkpoints += 1
        path = f"{self.run_dir}/checkpoint-e{epoch:03d}-b{batch_ndx:05d}.pt"
        self._last_ckpt = path
        return CheckpointSaved(path=path, reason=reason, epoch=epoch, batch_ndx=batch_ndx,
                               total_samples=self.total_samples, t=self._t())

    def _take_commands(self, epoch: int, ndx: int) -> Iterator[Event]:
        """Handle waiting commands at a batch boundary; returns True when the run stopped."""
        paused = False
        pending = self.commands.take()
        while True:
            for cmd in pending:
                if isinstance(cmd, Setting):
                    old_lr, old_m = self.lr, self.momentum
                    self.lr = old_lr if cmd.lr is None else cmd.lr
                    self.momentum = old_m if cmd.momentum is None else cmd.momentum
                    yield OptimizerChanged(lr=self.lr, momentum=self.momentum, old_lr=old_lr,
                                           old_momentum=old_m, epoch=epoch, batch_ndx=ndx,
                                           total_samples=self.total_samples,
                                           source=cmd.source, t=self._t())
                elif cmd is Command.CHECKPOINT:
                    yield self._checkpoint("request", epoch, ndx)
                elif cmd is Command.STOP:
                    yield StatusChanged(state=STOPPING, t=self._t())
                    yield self._checkpoint("stop", epoch, ndx)
                    yield StatusChanged(state=STOPPED, t=self._t())
                    yield RunFinished(state=STOPPED, exit_code=0,
                                      last_checkpoint=self._last_ckpt, t=self._t())
                    return True
                elif cmd is Command.PAUSE:
                    if not paused:
                        paused = True
                        yield StatusChanged(state=PAUSED, t=self._t())
                elif cmd is Command.RESUME:
                    if paused:
                        paused = False
                        yield StatusChanged(state=working_state(self._phase), detail="resumed",
                                            t=self._t())
            if not paused:
                return False
            pending = self.commands.wait(0.02)

    def _loss(self, epoch: int, ndx: int, batches: int) -> float:
        progress = (epoch - 1) + ndx / batches
        return 0.05 + 0.6 * math.exp(-3.0 * progress) + 0.02 * self.rng.random()

    def _seg_metrics(self, phase: str, epoch: int) -> Iterator[Event]:
        """A seg run's numbers (luna_core.train.seg_metrics' shape), better every epoch: the
        book's FP pixels in thousands of % of the label's."""
        label = 40_000 if phase == "val" else 12_000
        recall = round(1 - 0.4 / (epoch + 1), 5)
        found = int(label * recall)
        fp_pct = round(4000.0 / epoch, 3)
        precision = round(found / (found + label * fp_pct / 100), 5)
        metrics = {"loss/all": round(1.6 / (epoch + 1), 5),
                   "percent_all/tp": round(100 * recall, 3),
                   "percent_all/fn": round(100 - 100 * recall, 3),
                   "percent_all/fp": fp_pct, "pr/precision": precision, "pr/recall": recall,
                   "pr/f1_score": round(2 * precision * recall / (precision + recall), 5),
                   "seg/dice": round(0.1 * epoch, 5)}
        yield EpochMetrics(phase=phase, epoch=epoch, total_samples=self.total_samples,
                           metrics=metrics, neg_correct=0, neg_count=0, pos_correct=found,
                           pos_count=label, t=self._t())

    def _metrics(self, phase: str, epoch: int, samples: int, pos: int) -> Iterator[Event]:
        if self.task == "seg":
            yield from self._seg_metrics(phase, epoch)
            return
        neg = samples - pos
        pos_correct = 0                     # the book's ch. 11 outcome: no nodule found
        neg_correct = neg
        all_pct = 100.0 * (neg_correct + pos_correct) / samples
        loss_all = 0.0185 / epoch + (0.002 if phase == "val" else 0.0)
        metrics = {
            "loss/all": loss_all,
            "loss/neg": loss_all * 0.3,
            "loss/pos": 4.8 + 0.2 * epoch + (0.5 if phase == "val" else 0.0),
            "correct/all": all_pct,
            "correct/neg": 100.0,
            "correct/pos": 0.0,
            "pr/precision": math.nan,
            "pr/recall": 0.0,
            "pr/f1_score": math.nan,
        }
        score = fake_score(epoch, pos, neg) if phase == "val" else None
        if score is not None:
            metrics.update({"froc/cpm": score["cpm"], "froc/cpm_low": score["cpm_low"],
                            "froc/cpm_high": score["cpm_high"], "roc/auc": score["auc"],
                            "roc/auc_low": score["auc_low"], "roc/auc_high": score["auc_high"],
                            "froc/cpm_chance": score["chance_cpm"],
                            "pr/average_precision": score["average_precision"]})
            metrics.update({f"froc/sens_at_{f:g}fp": v
                            for f, v in zip(score["fp_levels"], score["sensitivity"])})
            if self.task == "malignancy":       # the baseline beside it (from epoch 2 on)
                metrics = {k: v for k, v in metrics.items() if not k.startswith("froc/")}
                if epoch >= 2:
                    metrics.update({"roc/auc_diameter": 0.74, "roc/auc_diameter_low": 0.61,
                                    "roc/auc_diameter_high": 0.85,
                                    "roc/auc_minus_diameter_low": -0.04,
                                    "roc/auc_minus_diameter_high": 0.15})
        yield EpochMetrics(phase=phase, epoch=epoch, total_samples=self.total_samples,
                           metrics=metrics, neg_correct=neg_correct, neg_count=neg,
                           pos_correct=pos_correct, pos_count=pos, score=score, t=self._t())
        yield LogRecord(level="INFO",
                        message=f"E{epoch} {phase:4} {loss_all:.4f} loss, {all_pct:-5.1f}% "
                                f"correct, 0.0000 precision, 0.0000 recall", t=self._t())

