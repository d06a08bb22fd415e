"""The training loop: LunaTrainingApp(sys_argv=[...]).main(), as in the book.

One loop, read top to bottom in ``_main`` -> ``train_epoch`` / ``validate_epoch``. It sends
typed events (luna_core.run.events) to sinks and takes commands (luna_core.run.command_table) at
batch boundaries. The cockpit, the headless runner and `attach` all drive this same loop.

Its collaborators, in luna_core.train: ``task`` (what is trained: ``--task``), ``setup``
(the device, the task's data sets, model and loaders: the base class ``LoopSetup``),
``runtime`` (device, CPU threads, sinks per DDP rank, seeds, autocast, the DDP/compiled
wrapper), ``resume``, ``rundir`` (the run's name, its folder held, files and control
socket), ``checkpointer``, ``run_flags`` (pause, stop, checkpoint-now, the
non-finite policy, exit codes), ``reporter`` (batch events, ETA lines), ``step`` (the
optimizer and its guarded step), ``state`` (where the loop is) and ``logbridge`` (log records
as events); the sampler, the data sets and the loaders are in luna_core.data.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import sys
import time
import uuid

import torch
from torch.utils.data import DataLoader

from luna_core.data.loader import shutdown_workers
from luna_core.data.sampler import EpochSampler
from luna_core.run import events as ev
from luna_core.run.alerts import NotifySink
from luna_core.run.command_table import CommandChannel
from luna_core.run.control_socket import ControlServer
from luna_core.run.metric_catalog import LOSS
from luna_core.train import runtime
from luna_core.train.augment import TASK_STREAM, Augmentation, augment, sample_rng
from luna_core.train.checkpointer import Checkpointer
from luna_core.train.distributed import (
    DistContext,
    all_ranks_finite,
    on_rank0,
    shutdown,
)
from luna_core.train.logbridge import BusLogHandler
from luna_core.train.options import parse_options
from luna_core.train.rank_timing import RankReport, RankTimer
from luna_core.train.reporter import BatchReporter
from luna_core.train.resume import resume_from, resumed_run_dir
from luna_core.train.run_flags import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_NONFINITE,
    EXIT_OK,
    RunControl,
)
from luna_core.train.rundir import (
    RunFolderOwner,
    add_run_dir_sinks,
    run_dir_path,
    start_control_server,
)
from luna_core.train.setup import LoopSetup
from luna_core.train.state import LoopState
from luna_core.train.step import apply_setting, guarded_step, peak_lr, warm_up
from luna_core.train.task import Task, make_task

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_NONFINITE", "EXIT_OK", "EpochSampler",
           "LunaTrainingApp"]

log = logging.getLogger(__name__)


def _monotonic() -> float:
    # The loop's clock (batch timing, active and paused time). ``time`` is looked up in
    # this module at each call, so that tests/test_control.py can move the clock on.
    return time.monotonic()


class LunaTrainingApp(LoopSetup):
    def __init__(self, sys_argv: list[str] | None = None, *, sinks=None,
                 commands: CommandChannel | None = None, interactive: bool = False) -> None:
        self.cli_args, self.given_options = parse_options(
            sys.argv[1:] if sys_argv is None else sys_argv)
        self.commands = commands or CommandChannel()
        self.bus = ev.EventBus(list(sinks or []))
        if self.cli_args.notify_cmd and os.environ.get("RANK", "0") == "0":   # rank 0 tells
            self.bus.add(NotifySink(self.cli_args.notify_cmd, self.cli_args.notify_timeout))
        self.interactive = interactive
        self.task: Task = make_task(self.cli_args)   # what is trained: --task (the model...)
        self.time_str = datetime.datetime.now().strftime("%Y-%m-%d_%H.%M.%S")
        # this process of the run, in its run_started (a queue finds its child's folder by it)
        self.run_id = os.environ.get("LUNA_RUN_ID") or uuid.uuid4().hex[:16]
        self.run_folder = RunFolderOwner(self.run_id)   # rank 0 holds the run folder
        self.dist = DistContext()
        self.loop = LoopState(clock=_monotonic)
        self.warm_up_said = False          # the log has said this process's warm-up
        self.run_control = RunControl(self.bus, self.commands, self.loop,
                                      self.cli_args.on_nonfinite, interactive)
        self.reporter = BatchReporter(self.bus, self.loop, self.run_control.on_nonfinite)
        # set by _main, in this order
        self.device: torch.device | None = None
        self.trn_ds = self.val_ds = None                      # LunaDataset
        self.model = self.optimizer = self._wrapped_model = None
        self.trn_dl: DataLoader | None = None
        self.val_dl: DataLoader | None = None
        self.run_dir: str | None = None
        self.checkpointer: Checkpointer | None = None
        self.control_server: ControlServer | None = None     # rank 0: the control socket
        self.augmentation = Augmentation()
        self.rank_timer = RankTimer(self.dist, torch.device("cpu"))   # one process: off
        self.rank_report: RankReport | None = None

    # ------------------------------------------------------------------ the loop
    def main(self) -> int:
        logs = BusLogHandler.install(self.bus)
        try:
            return self._main()
        except Exception as exc:  # noqa: BLE001 - report any failure as an event
            return self._finish(*self.run_control.failure_outcome(exc))
        finally:
            if self.control_server is not None:
                self.control_server.close()
            logs.remove()
            for sink in self.bus.sinks:
                if hasattr(sink, "close"):
                    sink.close()
            shutdown(self.dist)
            self.run_folder.release()

    def _main(self) -> int:
        args = self.cli_args
        self.device = self._start_runtime(args.device)
        if args.resume:                        # a live run's folder is not ours to write
            on_rank0(self.dist, lambda: self.run_folder.take(resumed_run_dir(args.resume)))
        resume = resume_from(args.resume)
        if resume.path:
            on_rank0(self.dist, lambda: self.run_folder.take(resume.run_dir))
        resume.merge_options(args, self.given_options)
        self.augmentation = Augmentation.from_options(args)
        if self.augmentation.enabled:
            log.info("Augmenting training batches: %s", self.augmentation.describe())

        self.trn_ds, self.val_ds = self._init_datasets()
        resume.check_data(self.trn_ds, self.val_ds, args.data_dir)
        self.task.start_scoring(self.val_ds)
        runtime.seed_rngs(args.seed)  # the initial weights, and every draw after them
        self.model, self.optimizer = self._build_model()
        self.ddp_model = runtime.wrap_model(self.model, self.dist, self.device, args.compile)
        self.rank_timer = RankTimer(self.dist, self.device,    # torchrun: each rank's parts
                                    args.rank_timings)
        self.rank_timer.watch(self.model)     # where DDP's buffer broadcast ends
        self.trn_dl = self._init_dataloader(self.trn_ds, shuffle=True)
        self.val_dl = self._init_dataloader(self.val_ds, shuffle=False)

        # weights, optimizer and RNG states from the checkpoint; where the loop goes on
        start_epoch, start_batch, resumed_trn_metrics = resume.apply(
            self.model, self.optimizer, self.dist.world_size)
        if resume.path:       # the run goes on in its directory, under its name
            self.loop.total_samples, self.time_str = resume.total_samples, resume.time_str
            self.run_dir = resume.run_dir
        else:   # rank 0 makes the folder (a unique name) and owns it; one name, all ranks
            self.time_str = on_rank0(self.dist, lambda: self.run_folder.new(args,
                                                                             self.time_str))
            self.run_dir = run_dir_path(args, self.time_str)
        self.checkpointer = Checkpointer(
            self.run_dir, self.time_str, self.trn_ds, self.val_ds, bus=self.bus, dist=self.dist,
            model=self.model, optimizer=self.optimizer, cli_args=args,
            best_score=resume.best_score, best_metric=self.task.best_metric.key)
        if self.dist.is_main:  # rank 0 alone writes the run directory and serves commands
            add_run_dir_sinks(self.bus, args, self.run_dir, self.time_str,
                              purge_step=resume.purge_step)
            self.control_server = start_control_server(self.run_dir, self.commands)

        self.bus.emit(ev.RunStarted(
            run_dir=self.run_dir, options=vars(args).copy(), epochs=args.epochs,
            start_epoch=start_epoch, trn_samples=len(self.trn_ds), val_samples=len(self.val_ds),
            world_size=self.dist.world_size,
            trn_pos=self.trn_ds.pos_count, val_pos=self.val_ds.pos_count,
            device=str(self.device), pid=os.getpid(), host=socket.gethostname(),
            resumed_from=resume.path, run_id=self.run_id,
            control_socket=getattr(self.control_server, "path", None)))
        # the options in the run's log (and on the console) once there is a run to speak of
        log.info("Starting %s, %s", type(self).__name__, args)

        for epoch in range(start_epoch, args.epochs + 1):
            log.info("E%d of %d, %d/%d batches of size %d*%d (training/validation batches, "
                     "batch size * processes)", epoch, args.epochs,
                     self._batch_count(self.trn_dl), self._batch_count(self.val_dl),
                     args.batch_size, self.dist.world_size)
            trn_metrics = self.train_epoch(epoch, start_batch, resumed_trn_metrics)
            start_batch, resumed_trn_metrics = 0, None
            if self.run_control.stop_requested:
                return self._stop_run()
            self.log_metrics(epoch, "trn", trn_metrics)

            val_loss = score = None
            if epoch % args.val_every == 0 or epoch == args.epochs:    # --val-every
                val_metrics = self.validate_epoch(epoch)
                if self.run_control.stop_requested:
                    return self._stop_run()
                val_loss, score = self.log_metrics(epoch, "val", val_metrics)
            self.checkpointer.save("epoch", epoch, self._batch_count(self.trn_dl),
                                   self.loop.total_samples, None, epoch_done=True,
                                   val_loss=val_loss, score=score)
            if self.run_control.stops_after(epoch, args.epochs):
                return self._finish(*self.run_control.stop_outcome())

        return self._finish(ev.FINISHED, EXIT_OK)

    def train_epoch(self, epoch: int, start_batch: int = 0,
                    resumed_metrics: torch.Tensor | None = None) -> torch.Tensor:
        self.model.train()
        trn_metrics_g = torch.zeros(self.task.metrics_size, self._sample_count(self.trn_dl),
                                    device=self.device)
        if resumed_metrics is not None:
            trn_metrics_g.copy_(resumed_metrics[self.dist.rank] if self.dist.enabled
                                else resumed_metrics)
        self.loop.trn_metrics_g, self.loop.position = trn_metrics_g, (epoch, start_batch)
        if start_batch >= self._batch_count(self.trn_dl):
            return trn_metrics_g  # stopped during this epoch's validation: training is done

        self.trn_dl.sampler.set_epoch(epoch, start_batch * self.cli_args.batch_size)
        batch_iter = self._start_phase("trn", epoch, self.trn_dl, start_batch)
        timer = self.rank_timer
        for batch_ndx in range(start_batch, self.loop.batch_count):
            batch_tup = self.loop.next_batch(batch_iter, batch_ndx, timer.delay)
            timer.got_batch(self.loop.data_s)
            self.optimizer.zero_grad(set_to_none=True)
            loss_var = self.compute_batch_loss(batch_ndx, batch_tup, trn_metrics_g)
            loss_var.backward()
            timer.mark("backward")
            finite = all_ranks_finite(self.dist, torch.isfinite(loss_var.detach()))
            self._warm_up(len(batch_tup[0]) * self.dist.world_size)
            skipped = self._guarded_step(finite)
            timer.mark("step")
            self.loop.total_samples += len(batch_tup[0]) * self.dist.world_size
            self.loop.position = (epoch, batch_ndx + 1)
            self.reporter.batch_done(loss_var.detach(), skipped, len(batch_tup[0]))
            timer.batch_done(len(batch_tup[0]))
            if timer.due(batch_ndx):              # every rank's window, to rank 0 (gloo)
                self._rank_window(epoch, batch_ndx)
            if self._between_batches():
                break
        self.reporter.end_phase(stopped=self.run_control.stop_requested)
        return trn_metrics_g

    def validate_epoch(self, epoch: int) -> torch.Tensor:
        self.model.eval()
        val_metrics_g = torch.zeros(self.task.metrics_size, self._sample_count(self.val_dl),
                                    device=self.device)
        self.val_dl.sampler.set_epoch(epoch, 0)
        batch_iter = self._start_phase("val", epoch, self.val_dl, 0)
        with torch.no_grad():
            for batch_ndx in range(self.loop.batch_count):
                batch_tup = self.loop.next_batch(batch_iter, batch_ndx)
                loss_var = self.compute_batch_loss(batch_ndx, batch_tup, val_metrics_g)
                self.reporter.batch_done(loss_var.detach(), None, len(batch_tup[0]))
                if self._between_batches():
                    break
        self.reporter.end_phase(stopped=self.run_control.stop_requested)
        return val_metrics_g

    def compute_batch_loss(self, batch_ndx: int, batch_tup, metrics_g: torch.Tensor):
        """The task's loss of one batch (augmented when training), its per-sample metrics
        in their columns of ``metrics_g``."""
        augment = None
        if self.loop.phase == "trn" and self.augmentation.enabled:   # training only
            def augment(input_g, mask_g=None):
                return self._augment(input_g, batch_ndx, mask_g)

        def forward(input_g):           # the model, under autocast (bf16 on a GPU)
            self.rank_timer.mark("copy")
            with self._autocast():
                out = self.ddp_model(input_g)
            self.rank_timer.mark("forward")
            return out

        draw = None
        if self.loop.phase == "trn":      # each training sample's own draws (the task's),
            seed, epoch = self.cli_args.seed, self.loop.epoch   # made only when asked for

            def draw(j: int):
                (position,) = self._positions(batch_ndx, 1, first=j)
                return sample_rng(seed, epoch, position, TASK_STREAM)

        return self.task.batch_loss(forward, batch_tup, self.device, augment, metrics_g,
                                    batch_ndx * self.cli_args.batch_size, draw)

    def log_metrics(self, epoch: int, phase: str,
                    metrics_g: torch.Tensor) -> tuple[float, float | None]:
        """The phase's numbers, log lines and event (a validation's score with them), and a
        validation's examples; returns (the loss, a validation's score that picks
        best.pt)."""
        dl = self.trn_dl if phase == "trn" else self.val_dl
        metrics_a = self._gather_metrics(metrics_g, dl.sampler).numpy()
        result = self.task.phase_result(metrics_a)
        log.info("E%d %s", epoch, type(self).__name__)
        for line in self.task.metric_lines(epoch, phase, result):
            log.info(line)
        score = rows = None
        if phase == "val" and self.dist.is_main:
            rows = dl.sampler.gathered_indices(metrics_g.shape[1])  # the columns' samples
            scored = self.task.score(epoch, rows, metrics_a)
            if scored is not None:
                score, scalars, line = scored
                log.info(line)
                result["metrics"].update(scalars)
        self.bus.emit(ev.EpochMetrics(
            phase=phase, epoch=epoch, total_samples=self.loop.total_samples, **result,
            score=score, per_sample=self.task.per_sample(metrics_a)))
        if rows is not None:
            self._save_side_outputs(epoch, rows, metrics_a)
        best = self.task.best_score(result) if phase == "val" else None
        return result["metrics"][LOSS.key], best

    def _save_side_outputs(self, epoch: int, rows, metrics_a) -> None:
        """The validation's score per sample (for comparing runs afterwards) and what a
        person should look at (the task's examples). Side outputs: a failure to write them
        (disk full, folder unwritable) is logged and alerted, and the epoch's checkpoint is
        still written."""
        try:
            self.task.save_validation(self.run_dir, epoch, rows, metrics_a)
        except OSError as exc:
            log.error("%s: the validation scores of E%d were not written (%s); training "
                      "goes on", ev.SIDE_OUTPUT_FAILED, epoch, exc)
        try:
            saved = self.task.save_examples(self.run_dir, epoch, self.val_ds, rows, metrics_a,
                                            predict=self._predict)
        except OSError as exc:
            log.error("%s: the examples of E%d were not written (%s); training goes on",
                      ev.SIDE_OUTPUT_FAILED, epoch, exc)
            return
        if saved is not None:
            path, counts = saved
            self.bus.emit(ev.ExamplesSaved(epoch=epoch, path=path, counts=dict(counts), **{
                k: n for k, n in counts.items() if k in ("misses", "false_alarms", "best")}))

    def _predict(self, input_a):
        """The model's output for a few samples (a task's examples), in eval mode, on the
        training device; no gradients."""
        self.model.eval()
        with torch.no_grad(), self._autocast():
            out = self.model(torch.as_tensor(input_a).to(self.device, torch.float32))
        return out.float().cpu().numpy()

    # ------------------------------------------------------------------ one phase
    def _start_phase(self, phase: str, epoch: int, dl: DataLoader, start_batch: int):
        """The phase's state, status, PhaseStarted and clock; returns the batch iterator."""
        self.loop.start_phase(phase, epoch, self._batch_count(dl))
        self.run_control.set_state(ev.working_state(phase))
        self.reporter.start_phase(self._sample_count(dl), start_batch,
                                  flush_every_batch=self.device.type == "cpu")
        return iter(dl)

    def _between_batches(self) -> bool:
        """At a batch boundary, do what the commands ask (RunControl decides, the loop acts):
        a new lr / momentum, a checkpoint; while paused, wait for the next commands here.
        True: stop now."""
        commands = self.commands.take()
        while True:
            if commands:
                self.reporter.flush()   # the batches done so far come before what follows
            todo = self.run_control.between_batches(self.dist, commands)
            if todo.setting is not None:
                self._change_optimizer(todo.setting)
            if todo.checkpoint:
                self.reporter.flush()
                self._checkpoint("request")
            if todo.stop or not todo.paused:
                return todo.stop
            commands = self.run_control.wait_while_paused()

    def _rank_window(self, epoch: int, batch_ndx: int) -> None:
        """Every rank's timings of the last window, judged on rank 0 (luna_core.run.straggler)."""
        windows = self.rank_timer.window()
        if windows is not None:
            if self.rank_report is None:
                self.rank_report = RankReport(self.bus)
            self.rank_report(windows, epoch, batch_ndx, self.loop.total_samples)

    def _change_optimizer(self, setting) -> None:
        """A new learning rate / momentum from now on (every rank, same batch boundary):
        an event, a TensorBoard scalar, and in every checkpoint from here (optimizer state)."""
        old_lr, old_momentum, lr, momentum = apply_setting(self.optimizer, setting.lr,
                                                           setting.momentum)
        epoch, batch_ndx = self.loop.position
        log.info("lr %g -> %g, momentum %g -> %g at E%d batch %d (from the %s)", old_lr, lr,
                 old_momentum, momentum, epoch, batch_ndx, setting.source or "commands")
        self.bus.emit(ev.OptimizerChanged(
            lr=lr, momentum=momentum, old_lr=old_lr, old_momentum=old_momentum, epoch=epoch,
            batch_ndx=batch_ndx, total_samples=self.loop.total_samples, source=setting.source))

    def _augment(self, input_g: torch.Tensor, batch_ndx: int, mask_g=None):
        """The book's augmentation of a training batch (and its mask, for segmentation);
        each sample's parameters from (seed, epoch, its place in the epoch's order, counted
        over all ranks)."""
        return augment(input_g, self.augmentation, self.cli_args.seed, self.loop.epoch,
                       self._positions(batch_ndx, len(input_g)), mask_g)

    def _positions(self, batch_ndx: int, size: int, first: int = 0) -> list[int]:
        """The places in the epoch's whole order (all ranks counted) of the batch's samples
        ``first`` .. ``first + size - 1``."""
        bs, rank, world = self.cli_args.batch_size, self.dist.rank, self.dist.world_size
        return [(batch_ndx * bs + j) * world + rank for j in range(first, first + size)]

    def _warm_up(self, samples: int) -> None:
        """--lr-warmup: this step's lr, from the samples trained once it is taken; said in
        the log when the warm-up starts (or goes on after a resume) and when it is done."""
        warmup, done = self.cli_args.lr_warmup, self.loop.total_samples
        if warmup <= done and self.warm_up_said:
            return
        # warming up, or this process's first step past it (resumed with a shorter warm-up
        # than the checkpoint's lr was warmed for: the peak from here)
        lr = warm_up(self.optimizer, done + samples, warmup)
        epoch, batch_ndx = self.loop.position
        if warmup > done and done + samples >= warmup:
            log.info("lr warm-up done: lr %g from E%d batch %d (%d samples trained)", lr, epoch,
                     batch_ndx + 1, done + samples)
        elif warmup > done and not self.warm_up_said:
            log.info("lr warm-up: lr %g at E%d batch %d, rising to %g at sample %d", lr, epoch,
                     batch_ndx + 1, peak_lr(self.optimizer.param_groups[0]), warmup)
        self.warm_up_said = True

    def _guarded_step(self, finite_g: torch.Tensor) -> torch.Tensor:
        return guarded_step(self.optimizer, finite_g)

    def _checkpoint(self, reason: str) -> None:
        """A checkpoint at the loop's position, with the epoch's training metrics so far."""
        epoch, batch_ndx = self.loop.position
        self.checkpointer.save(reason, epoch, batch_ndx, self.loop.total_samples,
                               self.loop.trn_metrics_g)

    def _stop_run(self) -> int:
        self._checkpoint("nonfinite" if self.run_control.nonfinite_stop else "stop")
        return self._finish(*self.run_control.stop_outcome())

    def _finish(self, state: str, exit_code: int, error: str | None = None) -> int:
        self.run_control.set_state(state, error or "")
        last = self.checkpointer.last_checkpoint if self.checkpointer is not None else None
        self.bus.emit(ev.RunFinished(state=state, exit_code=exit_code, error=error,
                                     last_checkpoint=last))
        for dl in (self.trn_dl, self.val_dl):
            shutdown_workers(dl)
        return exit_code

