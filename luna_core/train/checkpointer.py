"""The run's checkpoint writer: the state in checkpoint format v1, best.pt when validation
improves, retention, and a CheckpointSaved event for each file written."""

from __future__ import annotations

import logging
import os
from argparse import Namespace

import torch

from luna_core.run import events as ev
from luna_core.run.metric_catalog import LOSS, metric
from luna_core.train.checkpoint import (
    BEST_NAME,
    CHECKPOINT_FORMAT_VERSION,
    CheckpointError,
    atomic_torch_save,
    capture_rng_state,
    checkpoint_dir,
    checkpoint_name,
    prune_checkpoints,
)
from luna_core.train.distributed import DistContext, gather_rows

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, run_dir: str, time_str: str, trn_ds, val_ds, *, bus: ev.EventBus,
                 dist: DistContext, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 cli_args: Namespace, best_score: float | None = None,
                 best_metric: str = LOSS.key) -> None:
        self.checkpoint_dir = checkpoint_dir(run_dir)
        self.bus, self.dist = bus, dist
        self.model, self.optimizer, self.cli_args = model, optimizer, cli_args
        # what a resume checks and takes over: the run's name and directory, and its data
        self.run = {"run_dir": run_dir, "time_str": time_str,
                    "data_fingerprint": trn_ds.fingerprint, "trn_samples": len(trn_ds),
                    "val_samples": len(val_ds), "world_size": dist.world_size}
        # best.pt: the epoch with the best score (the task's best_metric, better as the
        # metric catalog says)
        self.best_score, self.best_metric = best_score, metric(best_metric)
        self.last_checkpoint: str | None = None

    def save(self, reason: str, epoch: int, batch_ndx: int, total_samples: int,
             trn_metrics_g: torch.Tensor | None, epoch_done: bool = False,
             val_loss: float | None = None, score: float | None = None) -> str | None:
        """Write a checkpoint; a write error is reported and training goes on.

        Under DDP every rank calls this at the same point (the partial training metrics of
        all ranks are gathered) and rank 0 alone writes."""
        trn_metrics = None
        if not epoch_done and trn_metrics_g is not None:
            rows = gather_rows(self.dist, trn_metrics_g.detach())
            trn_metrics = torch.stack(rows).cpu() if self.dist.enabled else rows[0].cpu()
        score = val_loss if score is None else score
        if score is not None and (self.best_score is None
                                  or self.best_metric.is_better(score, self.best_score)):
            self.best_score, is_best = score, True
        else:
            is_best = False
        if not self.dist.is_main:
            return None
        state = {  # checkpoint format v1: these keys, in this order
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "batch_ndx": batch_ndx,
            "epoch_done": epoch_done,
            "total_samples": total_samples,
            "trn_metrics": trn_metrics,
            "rng": capture_rng_state(),
            "options": vars(self.cli_args).copy(),
            "run": dict(self.run),
            "val_loss": val_loss,
            "best_val_loss": self.best_score,   # the name format 1 began with: best_score
            "score": score,                     # the task's best_metric's value
            "best_score": self.best_score,
            "best_metric": self.best_metric.key,
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
                                         batch_ndx=batch_ndx, total_samples=total_samples))
        return path
