"""The training loop: LunaTrainingApp(sys_argv=[...]).main(), as in the book.

One loop, read top to bottom in ``main`` -> ``train_epoch`` / ``validate_epoch``. It sends
typed events (luna_core.run.events) to sinks and takes commands (luna_core.run.commands) at batch
boundaries. The cockpit, the headless runner and `attach` all drive this same loop.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from luna_core.errors import LunaInputError
from luna_core.run import events as ev
from luna_core.run.commands import Command, CommandChannel
from luna_core.run.control import ControlServer, socket_path_for
from luna_core.run.estimate import EtaLogger
from luna_core.run.eventfile import EVENT_FILE_NAME
from luna_core.run.sinks import JsonlSink, TensorBoardSink
from luna_core.train.checkpoint import (
    BEST_NAME,
    CHECKPOINT_DIRNAME,
    CHECKPOINT_FORMAT_VERSION,
    CheckpointError,
    atomic_torch_save,
    capture_rng_state,
    checkpoint_name,
    load_checkpoint,
    prune_checkpoints,
    resolve_resume_path,
    restore_rng_state,
)
from luna_core.train.distributed import (
    DistContext,
    all_ranks_finite,
    broadcast_object,
    combine_flags,
    gather_rows,
    init_distributed,
    shutdown,
)
from luna_core.train.metrics import (
    METRICS_LABEL_NDX,
    METRICS_LOSS_NDX,
    METRICS_PRED_NDX,
    METRICS_SIZE,
    compute_metrics,
    format_metric_lines,
)
from luna_core.train.model import LunaModel
from luna_core.train.options import RESUME_MUST_MATCH, parse_options

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NONFINITE = 3


class EpochSampler(Sampler[int]):
    """A permutation drawn from (seed, epoch), so every run with the same seed sees the same
    order (the book never shuffles), starting ``start`` samples in when resuming.

    Under DDP each rank takes every ``world_size``-th index of the permutation, which is padded
    by repeating its head (like DistributedSampler) so that all ranks run the same number of
    batches; ``valid_mask`` tells the padding apart so metrics count each sample once."""

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.shard_size = math.ceil(size / world_size)
        self.epoch = 1
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        padded = self.shard_size * self.world_size
        order += order[: padded - self.size]
        return order[self.rank::self.world_size]

    def valid_mask(self, count: int, rank: int | None = None) -> torch.Tensor:
        """For the first ``count`` positions of a rank's shard (this one's by default): not
        padding."""
        rank = self.rank if rank is None else rank
        positions = torch.arange(count) * self.world_size + rank
        return positions < self.size

    def __iter__(self):
        return iter(self.order()[self.start:])

    def __len__(self) -> int:
        return self.shard_size - self.start


class _MainRankOnly:
    """Wraps a caller's sink on ranks other than 0: warnings and errors only."""

    def __init__(self, sink, rank: int) -> None:
        self.sink, self.rank = sink, rank

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.LogRecord) and event.level in ("WARNING", "ERROR", "CRITICAL"):
            self.sink(ev.LogRecord(level=event.level, message=f"[rank {self.rank}] "
                                   f"{event.message}", t=event.t))


def _worker_ignores_signals(_worker_id: int) -> None:
    # Ctrl+C and `kill -TERM -PGID` reach the whole process group: loader workers must
    # outlive the signal so that the main process can finish its batch and checkpoint.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


class _BusLogHandler(logging.Handler):
    """Turns luna_core's log records into LogRecord events (console, cockpit, event file)."""

    def __init__(self, bus: ev.EventBus) -> None:
        super().__init__()
        self.bus = bus

    def emit(self, record: logging.LogRecord) -> None:
        self.bus.emit(ev.LogRecord(level=record.levelname, message=record.getMessage(),
                                   t=record.created))


class LunaTrainingApp:
    def __init__(self, sys_argv: list[str] | None = None, *, sinks=None,
                 commands: CommandChannel | None = None, interactive: bool = False) -> None:
        if sys_argv is None:
            sys_argv = sys.argv[1:]
        self.cli_args, self.given_options = parse_options(sys_argv)
        self.commands = commands or CommandChannel()
        self.bus = ev.EventBus(list(sinks or []))
        self.interactive = interactive
        action = self.cli_args.on_nonfinite
        self.nonfinite_action = ("pause" if interactive else "stop") if action == "auto" \
            else action
        self.stop_exit_code = EXIT_OK      # the headless runner sets 130/143 for signals
        self.time_str = datetime.datetime.now().strftime("%Y-%m-%d_%H.%M.%S")
        self.total_samples = 0
        self.paused = False
        self.stop_requested = False
        self.state = ev.STARTING
        self.last_checkpoint: str | None = None
        self.best_val_loss = math.inf
        self.nonfinite_batches: list[tuple[int, int, str]] = []  # (epoch, batch, what)
        self.control: ControlServer | None = None
        self.dist = DistContext()
        self.checkpoint_requested = False
        self._nonfinite_stop = False

    # ------------------------------------------------------------------ the loop
    def main(self) -> int:
        handler = _BusLogHandler(self.bus)
        core_log = logging.getLogger("luna_core")
        saved = core_log.level, core_log.propagate
        core_log.addHandler(handler)
        core_log.setLevel(logging.INFO)
        core_log.propagate = False
        try:
            return self._main()
        except LunaInputError as exc:
            message = str(exc)
            if "Original Traceback" in message:  # raised in a DataLoader worker
                message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
            log.error(message)
            return self._finish(ev.FAILED, EXIT_BAD_INPUT, message)
        except CheckpointError as exc:
            log.error(str(exc))
            return self._finish(ev.FAILED, EXIT_BAD_INPUT if self.state == ev.STARTING
                                else EXIT_FAILED, str(exc))
        except Exception as exc:  # noqa: BLE001 - report any failure as an event
            where = traceback.extract_tb(exc.__traceback__)[-1]
            message = f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})"
            log.error("training failed: %s\n%s", message, traceback.format_exc().rstrip())
            return self._finish(ev.FAILED, EXIT_FAILED, message)
        finally:
            if self.control is not None:
                self.control.close()
            core_log.removeHandler(handler)
            core_log.setLevel(saved[0])
            core_log.propagate = saved[1]
            for sink in self.bus.sinks:
                if hasattr(sink, "close"):
                    sink.close()
            shutdown(self.dist)

    def _main(self) -> int:
        args = self.cli_args
        self.device = self._pick_device(args.device)
        log.info("Starting %s, %s", type(self).__name__, args)
        resume = self._load_resume() if args.resume else None
        if resume is not None:
            self._merge_resume_options(resume)

        self.trn_ds, self.val_ds = self._init_datasets()
        if resume is not None:
            self._check_resume_data(resume)
        self.model, self.optimizer = self._init_model()
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp_model = DistributedDataParallel(
                self.ddp_model, device_ids=[self.device.index] if self.device.type == "cuda"
                else None)
        if args.compile:
            self.ddp_model = torch.compile(self.ddp_model)
        self.trn_dl = self._init_dataloader(self.trn_ds, shuffle=True)
        self.val_dl = self._init_dataloader(self.val_ds, shuffle=False)

        start_epoch, start_batch, resumed_trn_metrics = 1, 0, None
        if resume is not None:
            start_epoch, start_batch, resumed_trn_metrics = self._apply_resume(resume)
        self._init_run_dir(resume)

        self.bus.emit(ev.RunStarted(
            run_dir=self.run_dir, options=vars(args).copy(), epochs=args.epochs,
            start_epoch=start_epoch, trn_samples=len(self.trn_ds), val_samples=len(self.val_ds),
            world_size=self.dist.world_size,
            trn_pos=self.trn_ds.pos_count, val_pos=self.val_ds.pos_count,
            device=str(self.device), pid=os.getpid(), host=socket.gethostname(),
            resumed_from=resume["path"] if resume is not None else None,
            control_socket=self.control.path if self.control is not None else None))

        for epoch in range(start_epoch, args.epochs + 1):
            log.info("E%d of %d, %d/%d batches of size %d*%d", epoch, args.epochs,
                     self._batch_count(self.trn_dl), self._batch_count(self.val_dl),
                     args.batch_size, self.dist.world_size)
            trn_metrics = self.train_epoch(epoch, start_batch, resumed_trn_metrics)
            start_batch, resumed_trn_metrics = 0, None
            if self.stop_requested:
                return self._stop_run(trn_metrics)
            self.log_metrics(epoch, "trn", trn_metrics)

            val_metrics = self.validate_epoch(epoch)
            if self.stop_requested:
                return self._stop_run(trn_metrics)
            val_loss = self.log_metrics(epoch, "val", val_metrics)
            self.save_checkpoint("epoch", epoch, self._batch_count(self.trn_dl), None,
                                 epoch_done=True, val_loss=val_loss)

        return self._finish(ev.FINISHED, EXIT_OK)

    def train_epoch(self, epoch: int, start_batch: int = 0,
                    resumed_metrics: torch.Tensor | None = None) -> torch.Tensor:
        self.model.train()
        batch_count = self._batch_count(self.trn_dl)
        trn_metrics_g = torch.zeros(METRICS_SIZE, self._sample_count(self.trn_dl),
                                    device=self.device)
        if resumed_metrics is not None:
            trn_metrics_g.copy_(resumed_metrics[self.dist.rank] if self.dist.enabled
                                else resumed_metrics)
        self.trn_metrics_g = trn_metrics_g
        self.position = (epoch, start_batch)
        if start_batch >= batch_count:
            return trn_metrics_g  # stopped during this epoch's validation: training is done

        self.trn_dl.sampler.set_epoch(epoch, start_batch * self.cli_args.batch_size)
        for batch_ndx, batch_tup in self._run_phase("trn", epoch, self.trn_dl, start_batch):
            self.optimizer.zero_grad(set_to_none=True)
            loss_var = self.compute_batch_loss(batch_ndx, batch_tup, trn_metrics_g)
            loss_var.backward()
            finite = all_ranks_finite(self.dist, torch.isfinite(loss_var.detach()))
            skipped = self._guarded_step(finite)
            self.total_samples += len(batch_tup[0]) * self.dist.world_size
            self.position = (epoch, batch_ndx + 1)
            self._batch_done(loss_var.detach(), skipped, len(batch_tup[0]))
        return trn_metrics_g

    def validate_epoch(self, epoch: int) -> torch.Tensor:
        self.model.eval()
        val_metrics_g = torch.zeros(METRICS_SIZE, self._sample_count(self.val_dl),
                                    device=self.device)
        self.val_dl.sampler.set_epoch(epoch, 0)
        with torch.no_grad():
            for batch_ndx, batch_tup in self._run_phase("val", epoch, self.val_dl, 0):
                loss_var = self.compute_batch_loss(batch_ndx, batch_tup, val_metrics_g)
                self._batch_done(loss_var.detach(), None, len(batch_tup[0]))
        return val_metrics_g

    def compute_batch_loss(self, batch_ndx: int, batch_tup, metrics_g: torch.Tensor):
        input_t, label_t, _series_list, _center_list = batch_tup
        input_g = input_t.to(self.device, non_blocking=True)
        input_g = input_g.contiguous(memory_format=torch.channels_last_3d)
        label_g = label_t.to(self.device, non_blocking=True)
        with self._autocast():
            logits_g, probability_g = self.ddp_model(input_g)
        loss_g = F.cross_entropy(logits_g.float(), label_g[:, 1], reduction="none")

        start_ndx = batch_ndx * self.cli_args.batch_size
        end_ndx = start_ndx + label_t.size(0)
        metrics_g[METRICS_LABEL_NDX, start_ndx:end_ndx] = label_g[:, 1].detach()
        metrics_g[METRICS_PRED_NDX, start_ndx:end_ndx] = probability_g[:, 1].detach().float()
        metrics_g[METRICS_LOSS_NDX, start_ndx:end_ndx] = loss_g.detach()
        return loss_g.mean()

    def log_metrics(self, epoch: int, phase: str, metrics_g: torch.Tensor) -> float:
        dl = self.trn_dl if phase == "trn" else self.val_dl
        metrics_a = self._gather_metrics(metrics_g, dl.sampler).numpy()
        result = compute_metrics(metrics_a)
        log.info("E%d %s", epoch, type(self).__name__)
        for line in format_metric_lines(epoch, phase, result):
            log.info(line)
        self.bus.emit(ev.EpochMetrics(
            phase=phase, epoch=epoch, total_samples=self.total_samples, **result,
            per_sample=(metrics_a[METRICS_LABEL_NDX], metrics_a[METRICS_PRED_NDX])))
        return result["metrics"]["loss/all"]

    def _gather_metrics(self, metrics_g: torch.Tensor, sampler: EpochSampler) -> torch.Tensor:
        """(3, N) per-sample metrics of every rank, each sample exactly once (DDP padding
        dropped), on the CPU."""
        if not self.dist.enabled:
            return metrics_g.cpu()
        rows = gather_rows(self.dist, metrics_g)
        valid = [sampler.valid_mask(metrics_g.shape[1], rank)
                 for rank in range(self.dist.world_size)]
        return torch.cat([r.cpu()[:, v] for r, v in zip(rows, valid, strict=True)], dim=1)

    # ------------------------------------------------------------------ one phase
    def _run_phase(self, phase: str, epoch: int, dl: DataLoader, start_batch: int):
        """Yield (batch_ndx, batch) with timing, ETA lines, events and commands around each
        batch. The caller does the work and calls ``_batch_done``."""
        batch_count = self._batch_count(dl)
        self.phase, self.epoch, self.batch_count = phase, epoch, batch_count
        self._set_state(ev.TRAINING if phase == "trn" else ev.VALIDATING)
        self.bus.emit(ev.PhaseStarted(phase=phase, epoch=epoch, batch_count=batch_count,
                                      sample_count=self._sample_count(dl),
                                      start_batch=start_batch))
        desc = f"E{epoch} {'Training' if phase == 'trn' else 'Validation'}"
        eta = EtaLogger(desc, batch_count, log.info, start_batch=start_batch)
        eta.start()
        self.phase_t0 = time.monotonic()
        self.phase_paused_s = 0.0
        self._pending: list = []
        self._last_flush = time.monotonic()
        batch_iter = iter(dl)
        for batch_ndx in range(start_batch, batch_count):
            t0 = time.monotonic()
            batch_tup = next(batch_iter)
            t1 = time.monotonic()
            self._batch_ndx, self._data_s, self._t_batch = batch_ndx, t1 - t0, t1
            yield batch_ndx, batch_tup
            eta.batch_done(batch_ndx, self._active_s())
            if self._between_batches():
                break
        self._flush_batches()
        if not self.stop_requested:
            eta.done()

    def _batch_done(self, loss_g: torch.Tensor, skipped_g: torch.Tensor | None,
                    samples: int) -> None:
        now = time.monotonic()
        self._pending.append(dict(
            phase=self.phase, epoch=self.epoch, batch_ndx=self._batch_ndx,
            batch_count=self.batch_count, samples=samples, total_samples=self.total_samples,
            loss=loss_g, skipped=skipped_g, data_s=self._data_s, compute_s=now - self._t_batch,
            active_s=self._active_s()))
        # Losses stay on the device and are read in one go: every batch on the CPU (free),
        # a few times a second on a GPU (one host sync per flush, not per batch).
        if self.device.type == "cpu" or now - self._last_flush > 0.25:
            self._flush_batches()

    def _flush_batches(self) -> None:
        pending, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        if not pending:
            return
        # one host transfer for the losses (and the skipped-update flags) of many batches
        rows = [p.pop("loss").float() for p in pending]
        skips = [p.pop("skipped") for p in pending]
        if skips[0] is not None:
            rows += skips
        values = torch.stack(rows).tolist()
        for i, record in enumerate(pending):
            self.bus.emit(ev.BatchDone(loss=values[i], **record))
            if skips[0] is not None and values[len(pending) + i] != 0.0:
                self._on_nonfinite(record["epoch"], record["batch_ndx"],
                                   gradient_only=values[len(pending) + i] == 1.0)

    def _on_nonfinite(self, epoch: int, batch_ndx: int, gradient_only: bool = False) -> None:
        """A batch whose update was skipped: a non-finite loss, or a finite loss with a
        non-finite gradient (the same event and action)."""
        action = self.nonfinite_action
        what = "non-finite gradient" if gradient_only else "non-finite training loss"
        self.nonfinite_batches.append((epoch, batch_ndx, what))
        self.bus.emit(ev.NonFiniteLoss(phase="trn", epoch=epoch, batch_ndx=batch_ndx,
                                       action=action))
        said = f"{what} (the loss was finite)" if gradient_only else what
        if action == "skip":
            log.warning("E%d batch %d: %s; its update was skipped", epoch, batch_ndx, said)
        elif action == "pause":
            log.error("E%d batch %d: %s; its update was not applied. "
                      "Paused: checkpoint, inspect, or quit.", epoch, batch_ndx, said)
            self.paused = True
            short = "gradient" if gradient_only else "loss"
            self._set_state(ev.PAUSED, f"non-finite {short} at E{epoch} batch {batch_ndx}")
        else:
            log.error("E%d batch %d: %s; its update was not applied. "
                      "Stopping with the last good weights checkpointed (lower --lr, or "
                      "--on-nonfinite skip).", epoch, batch_ndx, said)
            self._nonfinite_stop = True
            self.stop_requested = True

    def _guarded_step(self, finite_g: torch.Tensor) -> torch.Tensor:
        """optimizer.step() that leaves weights and momentum untouched when the loss (or a
        gradient) was not finite, decided on the device (no host sync): the fused SGD kernel
        skips its whole update when ``found_inf`` is 1, as it does under AMP's GradScaler.

        Returns, on the device, why the update was skipped: 0.0 it was not, 1.0 a non-finite
        gradient with a finite loss, 2.0 a non-finite loss. Under DDP both are the same on
        every rank (``finite_g`` is combined over ranks, gradients are all-reduced)."""
        loss_bad = (~finite_g).float()
        found_inf = loss_bad.clone()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, self._unit_scale)
        self.optimizer.found_inf = found_inf
        self.optimizer.step()
        return found_inf + loss_bad

    def _between_batches(self) -> bool:
        """Take commands; checkpoint; block while paused. True means: stop now.

        Under DDP the flags are combined over all ranks first, so every rank pauses,
        checkpoints and stops at the same batch boundary."""
        for command in self.commands.take():
            self._apply_command(command)
        while True:
            stop, checkpoint, paused, nonfinite = combine_flags(self.dist, [
                int(self.stop_requested), int(self.checkpoint_requested), int(self.paused),
                int(self._nonfinite_stop)])
            if checkpoint:
                self.checkpoint_requested = False
                self._flush_batches()
                epoch, batch_ndx = self.position
                self.save_checkpoint("request", epoch, batch_ndx, self.trn_metrics_g)
            if stop:
                self._nonfinite_stop = bool(nonfinite)
                if not self.stop_requested:
                    self.stop_requested = True
                    self._set_state(ev.STOPPING)
                return True
            if not paused:
                return False
            t0 = time.monotonic()
            commands = self.commands.wait(0.1)
            self.phase_paused_s += time.monotonic() - t0
            for command in commands:
                self._apply_command(command)

    def _apply_command(self, command: Command) -> None:
        if command is Command.TOGGLE_PAUSE:
            command = Command.RESUME if self.paused else Command.PAUSE
        if command is Command.PAUSE and not self.paused:
            self._flush_batches()
            self.paused = True
            self._set_state(ev.PAUSED)
            log.info("paused at E%d %s batch %d", self.epoch, self.phase, self._batch_ndx + 1)
        elif command is Command.RESUME and self.paused:
            self.paused = False
            self._set_state(ev.TRAINING if self.phase == "trn" else ev.VALIDATING)
            log.info("resumed")
        elif command is Command.CHECKPOINT:
            self.checkpoint_requested = True
        elif command is Command.STOP and not self.stop_requested:
            self.stop_requested = True
            self._set_state(ev.STOPPING)

    def _stop_run(self, trn_metrics_g: torch.Tensor) -> int:
        epoch, batch_ndx = self.position
        reason = "nonfinite" if self._nonfinite_stop else "stop"
        self.save_checkpoint(reason, epoch, batch_ndx, trn_metrics_g)
        if self._nonfinite_stop:
            bad_epoch, bad_batch, what = self.nonfinite_batches[0]
            return self._finish(ev.FAILED, EXIT_NONFINITE,
                                f"{what} at E{bad_epoch} batch {bad_batch}")
        return self._finish(ev.STOPPED, self.stop_exit_code)

    def _finish(self, state: str, exit_code: int, error: str | None = None) -> int:
        self._set_state(state, error or "")
        self.bus.emit(ev.RunFinished(state=state, exit_code=exit_code, error=error,
                                     last_checkpoint=self.last_checkpoint))
        for dl in (getattr(self, "trn_dl", None), getattr(self, "val_dl", None)):
            iterator = getattr(dl, "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()
        return exit_code

    def _set_state(self, state: str, detail: str = "") -> None:
        if state != self.state or detail:
            self.state = state
            self.bus.emit(ev.StatusChanged(state=state, detail=detail))

    def _active_s(self) -> float:
        return time.monotonic() - self.phase_t0 - self.phase_paused_s

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, reason: str, epoch: int, batch_ndx: int,
                        trn_metrics_g: torch.Tensor | None, epoch_done: bool = False,
                        val_loss: float | None = None) -> str | None:
        """Write a checkpoint; a write error is reported and training goes on.

        Under DDP every rank calls this at the same point (the partial training metrics of
        all ranks are gathered) and rank 0 alone writes."""
        trn_metrics = None
        if not epoch_done and trn_metrics_g is not None:
            rows = gather_rows(self.dist, trn_metrics_g.detach())
            trn_metrics = torch.stack(rows).cpu() if self.dist.enabled else rows[0].cpu()
        if val_loss is not None and val_loss < self.best_val_loss:
            self.best_val_loss, is_best = val_loss, True
        else:
            is_best = False
        if not self.dist.is_main:
            return None
        state = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "batch_ndx": batch_ndx,
            "epoch_done": epoch_done,
            "total_samples": self.total_samples,
            "trn_metrics": trn_metrics,
            "rng": capture_rng_state(),
            "options": vars(self.cli_args).copy(),
            "run": {"run_dir": self.run_dir, "time_str": self.time_str,
                    "data_fingerprint": self.trn_ds.fingerprint,
                    "trn_samples": len(self.trn_ds), "val_samples": len(self.val_ds),
                    "world_size": self.dist.world_size},
            "val_loss": val_loss,
            "best_val_loss": self.best_val_loss,
        }
        path = os.path.join(self.checkpoint_dir, checkpoint_name(epoch, batch_ndx, epoch_done))
        try:
            atomic_torch_save(state, path)
            if is_best:
                atomic_torch_save(state, os.path.join(self.checkpoint_dir, BEST_NAME))
        except CheckpointError as exc:
            log.error("checkpoint failed, training state kept in memory: %s", exc)
            return None
        prune_checkpoints(self.checkpoint_dir, self.cli_args.keep_checkpoints)
        self.last_checkpoint = path
        self.bus.emit(ev.CheckpointSaved(path=path, reason=reason, epoch=epoch,
                                         batch_ndx=batch_ndx, total_samples=self.total_samples))
        return path

    def _load_resume(self) -> dict:
        path = resolve_resume_path(self.cli_args.resume)
        state = load_checkpoint(path)
        state["path"] = path
        log.info("Resuming from %s (epoch %d, batch %d%s)", path, state["epoch"],
                 state["batch_ndx"], ", epoch done" if state["epoch_done"] else "")
        return state

    def _merge_resume_options(self, resume: dict) -> None:
        saved = resume["options"]
        for name, value in saved.items():
            if name in ("resume", "headless"):
                continue
            if name not in self.given_options:
                setattr(self.cli_args, name, value)
            elif name in RESUME_MUST_MATCH and getattr(self.cli_args, name) != value:
                raise CheckpointError(
                    f"{resume['path']}: cannot resume with --{name.replace('_', '-')} "
                    f"{getattr(self.cli_args, name)}: the checkpoint was made with {value}")
            elif getattr(self.cli_args, name) != value and name in ("lr", "momentum"):
                log.warning("resuming with --%s %s (the run started with %s)", name,
                            getattr(self.cli_args, name), value)

    def _check_resume_data(self, resume: dict) -> None:
        run = resume["run"]
        if (run["data_fingerprint"] != self.trn_ds.fingerprint
                or run["trn_samples"] != len(self.trn_ds)
                or run["val_samples"] != len(self.val_ds)):
            raise CheckpointError(
                f"{resume['path']}: cannot resume on another data set (the checkpoint has "
                f"{run['trn_samples']}/{run['val_samples']} training/validation samples, "
                f"{self.cli_args.data_dir} gives {len(self.trn_ds)}/{len(self.val_ds)} or "
                f"other candidates)")

    def _apply_resume(self, resume: dict):
        try:
            self.model.load_state_dict(resume["model"])
            self.optimizer.load_state_dict(resume["optimizer"])
            for group in self.optimizer.param_groups:
                group["fused"] = True  # the guarded step relies on the fused kernel
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{resume['path']}: does not match this model: "
                                  f"{str(exc).splitlines()[0]}") from exc
        restore_rng_state(resume["rng"])
        self.total_samples = resume["total_samples"]
        best = resume.get("best_val_loss")
        self.best_val_loss = math.inf if best is None else best
        self.time_str = resume["run"]["time_str"]
        self.resume_run_dir = resume["run"]["run_dir"]
        if resume["epoch_done"]:
            return resume["epoch"] + 1, 0, None
        saved_world = resume["run"].get("world_size", 1)
        if saved_world != self.dist.world_size:
            raise CheckpointError(
                f"{resume['path']}: this checkpoint was taken inside an epoch by "
                f"{saved_world} process(es); resume it with the same number of processes "
                f"(now {self.dist.world_size}), or resume from an epoch-end checkpoint "
                f"(e*-end.pt), which works with any number")
        metrics = resume["trn_metrics"]
        return resume["epoch"], resume["batch_ndx"], metrics

    # ------------------------------------------------------------------ setup
    def _pick_device(self, choice: str) -> torch.device:
        use_cuda = choice == "cuda" or (choice == "auto" and torch.cuda.is_available())
        if use_cuda and not torch.cuda.is_available():
            raise LunaInputError("--device cuda: no CUDA device is available "
                                 "(is this a CPU build of torch?)")
        self.dist = init_distributed(use_cuda)
        if not self.dist.is_main:
            self.bus.sinks = [_MainRankOnly(sink, self.dist.rank) for sink in self.bus.sinks]
        if self.dist.enabled:
            log.info("DDP: rank %d of %d (%s)", self.dist.rank, self.dist.world_size,
                     "nccl" if use_cuda else "gloo")
        if use_cuda:
            torch.backends.cudnn.benchmark = True
            log.info("Using CUDA; %d devices.", torch.cuda.device_count())
            return torch.device("cuda", self.dist.local_rank)
        # On the CPU the model and the loader workers share the cores: oversubscribing them
        # halves the speed on small machines (measured: 1 thread beside 2 workers on 2 cores
        # runs twice as fast as torch's default of 2).
        threads = self.cli_args.threads or max(
            1, ((os.cpu_count() or 1) - self.cli_args.num_workers) // self.dist.world_size)
        torch.set_num_threads(threads)
        return torch.device("cpu")

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _init_datasets(self):
        from luna_core.data.candidates import report_missing_series
        from luna_core.data.dsets import LunaDataset

        args = self.cli_args
        common = dict(val_stride=args.val_stride, data_dir=args.data_dir,
                      cache_dir=args.cache_dir, candidates_file=args.candidates_file)
        trn_ds = LunaDataset(is_val=False, **common)
        val_ds = LunaDataset(is_val=True, **common)
        report_missing_series(args.data_dir, args.candidates_file)
        log.info("%d training samples (%d nodules), %d validation samples (%d nodules)",
                 len(trn_ds), trn_ds.pos_count, len(val_ds), val_ds.pos_count)
        return trn_ds, val_ds

    def _init_model(self):
        torch.manual_seed(self.cli_args.seed)
        np.random.seed(self.cli_args.seed % 2**32)
        model = LunaModel().to(self.device, memory_format=torch.channels_last_3d)
        optimizer = torch.optim.SGD(model.parameters(), lr=self.cli_args.lr,
                                    momentum=self.cli_args.momentum, fused=True)
        if self.cli_args.momentum:
            # Zero momentum buffers up front give bit-identical updates (buf = m*0 + g) and
            # mean that a skipped first step cannot leave them uninitialised.
            for p in model.parameters():
                optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
        self._unit_scale = torch.ones((), device=self.device)
        self.ddp_model = model  # what the loop calls: DDP-wrapped / compiled in _main
        return model, optimizer

    def _init_dataloader(self, ds, shuffle: bool) -> DataLoader:
        args = self.cli_args
        workers = args.num_workers
        extra = {}
        if workers > 0:
            extra = dict(persistent_workers=True, worker_init_fn=_worker_ignores_signals)
            if threading.current_thread() is not threading.main_thread():
                # fork() from a thread of a multi-threaded process (the cockpit) can copy
                # locks held by other threads: start workers from a clean server instead.
                extra["multiprocessing_context"] = "forkserver"
        return DataLoader(ds, batch_size=args.batch_size, num_workers=workers,
                          sampler=EpochSampler(len(ds), args.seed, shuffle=shuffle,
                                               rank=self.dist.rank,
                                               world_size=self.dist.world_size),
                          pin_memory=self.device.type == "cuda", **extra)

    def _batch_count(self, dl: DataLoader) -> int:
        count = math.ceil(dl.sampler.shard_size / self.cli_args.batch_size)
        if self.cli_args.max_batches is not None:
            count = min(count, self.cli_args.max_batches)
        return count

    def _sample_count(self, dl: DataLoader) -> int:
        return min(dl.sampler.shard_size, self._batch_count(dl) * self.cli_args.batch_size)

    def _init_run_dir(self, resume: dict | None) -> None:
        args = self.cli_args
        if resume is not None:
            self.run_dir = self.resume_run_dir
            checkpoint_dir = os.path.dirname(os.path.abspath(resume["path"]))
            if os.path.basename(checkpoint_dir) == CHECKPOINT_DIRNAME:
                self.run_dir = os.path.dirname(checkpoint_dir)
            purge_step = resume["total_samples"]
            if resume["epoch_done"] or resume["batch_ndx"] == 0:
                purge_step += 1  # keep the metrics logged at the checkpoint's own step
        else:
            self.time_str = broadcast_object(self.dist, self.time_str)  # one name, all ranks
            self.run_dir = os.path.join(args.runs_dir, args.tb_prefix,
                                        f"{self.time_str}-{args.comment}")
            purge_step = None
        self.checkpoint_dir = os.path.join(self.run_dir, CHECKPOINT_DIRNAME)
        if not self.dist.is_main:
            return  # rank 0 alone writes the run directory and serves the control socket
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        self.bus.add(TensorBoardSink(args.runs_dir, args.tb_prefix, self.time_str,
                                     args.comment, purge_step=purge_step))
        self.bus.add(JsonlSink(os.path.join(self.run_dir, EVENT_FILE_NAME)))
        self.control = ControlServer(socket_path_for(self.run_dir), self.commands,
                                     on_command=self._log_remote_command)
        self.control.start()

    def _log_remote_command(self, command: Command) -> None:
        log.info("command '%s' received on the control socket", command.value)
