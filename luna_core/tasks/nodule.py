"""``--task nodule``: the book's candidate classifier (ch. 11–12). A 32×48×48 chunk around a
candidate in, nodule or not out; LUNA16's FROC/CPM on every validation; the worst misses,
false alarms and best hits kept as examples; best.pt by the lowest validation loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from luna_core.data.loader import make_datasets
from luna_core.data.sampler import BalancedSampler, EpochSampler
from luna_core.run.task_table import TASK_VIEWS
from luna_core.score import example_picker
from luna_core.score.validation import ValidationScorer
from luna_core.train.metrics import (
    METRICS_LABEL_NDX,
    METRICS_LOSS_NDX,
    METRICS_PRED_NDX,
    METRICS_SIZE,
    compute_metrics,
    format_metric_lines,
)
from luna_core.train.model import LunaModel
from luna_core.train.task import Task


class NoduleTask(Task):
    name = "nodule"
    metrics_size = METRICS_SIZE          # label, positive probability, loss per sample
    best_metric = TASK_VIEWS["nodule"].best  # the book's rule: the lowest validation loss

    def __init__(self, args) -> None:
        super().__init__(args)
        self.scorer: ValidationScorer | None = None

    # ------------------------------------------------------------------ data and model
    def datasets(self):
        a = self.args
        return make_datasets(a.val_stride, a.data_dir, a.cache_dir, a.candidates_file, a.split)

    def sampler(self, ds, shuffle: bool, rank: int, world_size: int):
        a = self.args
        if shuffle and a.balanced:              # training only: validation never is
            return BalancedSampler(ds.is_nodule, a.seed, a.balanced, rank, world_size,
                                   a.epoch_samples)
        return EpochSampler(len(ds), a.seed, shuffle=shuffle, rank=rank,
                            world_size=world_size,
                            epoch_samples=a.epoch_samples if shuffle else None)

    def build_model(self, device) -> LunaModel:
        return LunaModel().to(device, memory_format=torch.channels_last_3d)

    # ------------------------------------------------------------------ one batch
    def batch_loss(self, forward, batch_tup, device, augment, metrics_g, start_ndx: int,
                   draw=None):
        input_t, label_t, _series_list, _center_list = batch_tup
        input_g = input_t.to(device, non_blocking=True)        # int16 HU from the store
        input_g = input_g.to(torch.float32, memory_format=torch.channels_last_3d)
        if augment is not None:                                # training batches only
            input_g = augment(input_g).contiguous(memory_format=torch.channels_last_3d)
        label_g = label_t.to(device, non_blocking=True)
        logits_g, probability_g = forward(input_g)
        loss_g = F.cross_entropy(logits_g.float(), label_g[:, 1], reduction="none")

        end_ndx = start_ndx + label_t.size(0)
        metrics_g[METRICS_LABEL_NDX, start_ndx:end_ndx] = label_g[:, 1].detach()
        metrics_g[METRICS_PRED_NDX, start_ndx:end_ndx] = probability_g[:, 1].detach().float()
        metrics_g[METRICS_LOSS_NDX, start_ndx:end_ndx] = loss_g.detach()
        return loss_g.mean()

    # ------------------------------------------------------------------ one phase
    def phase_result(self, metrics_a: np.ndarray) -> dict:
        return compute_metrics(metrics_a)

    def metric_lines(self, epoch: int, phase: str, result: dict) -> list[str]:
        return format_metric_lines(epoch, phase, result)

    def per_sample(self, metrics_a: np.ndarray):
        return metrics_a[METRICS_LABEL_NDX], metrics_a[METRICS_PRED_NDX]

    # ------------------------------------------------------------------ a validation
    def start_scoring(self, val_ds) -> None:
        self.scorer = ValidationScorer.for_dataset(val_ds, self.args.froc_bootstrap,
                                                   self.args.seed)

    def score(self, epoch: int, rows, metrics_a: np.ndarray):
        """LUNA16's FROC / CPM and the ranking metrics (the samples in the columns' order)."""
        if self.scorer is None:
            return None
        scored = self.scorer.score(rows, metrics_a[METRICS_PRED_NDX], epoch)
        return scored.to_dict(), scored.scalars(), scored.log_line(epoch)

    def save_validation(self, run_dir: str, epoch: int, rows, metrics_a: np.ndarray):
        """Each validation candidate's probability (luna_core.score.validation_file)."""
        if self.scorer is None:
            return None
        return self.scorer.save(run_dir, epoch, rows, metrics_a[METRICS_PRED_NDX])

    def save_examples(self, run_dir: str, epoch: int, val_ds, rows, metrics_a: np.ndarray,
                      predict=None):
        if not self.args.examples:
            return None
        return example_picker.save(run_dir, epoch, val_ds, rows, metrics_a[METRICS_PRED_NDX],
                                   metrics_a[METRICS_LOSS_NDX], self.args.examples,
                                   self.args.keep_examples)
