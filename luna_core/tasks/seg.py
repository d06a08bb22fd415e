"""``--task seg``: the book's segmentation U-Net (ch. 13). Nodule pixels in whole CT slices:
7 slices in (the slice and 3 context slices each side), a probability per pixel out.

Training samples are random 64×64 crops (cut here, on the device, each crop's place drawn
from (seed, epoch, the sample's place in the epoch's order), so a resume and DDP draw the
same) of the 96×96 window round each training nodule; validation is whole slices
(luna_core.data.segdsets). Loss: Dice + 8 × the Dice of the false negatives
(luna_core.train.seg_metrics). best.pt by the validation's pixel recall, the book's choice:
a missed nodule costs more than false positive pixels, which the classifier of ch. 14 filters.
"""

from __future__ import annotations

import numpy as np
import torch

from luna_core.data.sampler import EpochSampler
from luna_core.data.segdsets import make_seg_datasets
from luna_core.run.task_table import TASK_VIEWS
from luna_core.tasks import seg_examples
from luna_core.train.seg_metrics import (
    METRICS_FN_NDX,
    METRICS_FP_NDX,
    METRICS_LOSS_NDX,
    METRICS_SIZE,
    METRICS_TP_NDX,
    compute_seg_metrics,
    format_seg_lines,
    pixel_counts,
    seg_loss,
)
from luna_core.train.task import Task
from luna_core.train.unet import SEG_CHANNELS, SegModel

CROP = 64


def crop_corners(draw, count: int, window: int, crop: int = CROP) -> list[tuple[int, int]]:
    """Each sample's crop corner (row, col) inside its ``window``-wide window: uniform over
    every place the crop fits, from the sample's own generator ``draw(j)``."""
    room = window - crop + 1
    return [tuple(int(v) for v in draw(j).integers(0, room, size=2)) for j in range(count)]


class SegTask(Task):
    name = "seg"
    metrics_size = METRICS_SIZE          # loss, TP, FN, FP pixels per slice
    best_metric = TASK_VIEWS["seg"].best    # the book's rule: the highest pixel recall

    # ------------------------------------------------------------------ data and model
    def datasets(self):
        a = self.args
        return make_seg_datasets(a.data_dir, a.cache_dir, a.val_stride, a.candidates_file,
                                 full=a.val_full)

    def sampler(self, ds, shuffle: bool, rank: int, world_size: int):
        a = self.args
        return EpochSampler(len(ds), a.seed, shuffle=shuffle, rank=rank,
                            world_size=world_size,
                            epoch_samples=a.epoch_samples if shuffle else None)

    def build_model(self, device) -> SegModel:
        return SegModel().to(device)

    # ------------------------------------------------------------------ one batch
    def batch_loss(self, forward, batch_tup, device, augment, metrics_g, start_ndx: int,
                   draw=None):
        if draw is not None:                          # training: a window, cropped here
            windows = batch_tup[0].to(device, non_blocking=True)
            corners = crop_corners(draw, len(windows), windows.shape[-1])
            crops = torch.stack([windows[j, :, r:r + CROP, c:c + CROP]
                                 for j, (r, c) in enumerate(corners)])
            input_g = crops[:, :SEG_CHANNELS].to(torch.float32)
            label_g = crops[:, SEG_CHANNELS:].to(torch.float32)
        else:                                         # validation: whole slices
            input_g = batch_tup[0].to(device, non_blocking=True).to(torch.float32)
            label_g = batch_tup[1].to(device, non_blocking=True).to(torch.float32)
        if augment is not None:
            input_g, label_g = augment(input_g, label_g)
        prediction_g = forward(input_g).float()
        loss_g = seg_loss(prediction_g, label_g)
        end_ndx = start_ndx + len(input_g)
        with torch.no_grad():
            counts = pixel_counts(prediction_g, label_g)
            metrics_g[METRICS_LOSS_NDX, start_ndx:end_ndx] = loss_g.detach()
            metrics_g[METRICS_TP_NDX, start_ndx:end_ndx] = counts[0]
            metrics_g[METRICS_FN_NDX, start_ndx:end_ndx] = counts[1]
            metrics_g[METRICS_FP_NDX, start_ndx:end_ndx] = counts[2]
        return loss_g.mean()

    # ------------------------------------------------------------------ one phase
    def phase_result(self, metrics_a: np.ndarray) -> dict:
        return compute_seg_metrics(metrics_a)

    def metric_lines(self, epoch: int, phase: str, result: dict) -> list[str]:
        return format_seg_lines(epoch, phase, result)

    def per_sample(self, metrics_a: np.ndarray):
        return None                      # no per-slice probability to plot

    # ------------------------------------------------------------------ a validation
    def save_examples(self, run_dir: str, epoch: int, val_ds, rows, metrics_a: np.ndarray,
                      predict=None):
        """The slices with the most missed and most falsely marked pixels."""
        if not self.args.examples or predict is None:
            return None
        return seg_examples.save(run_dir, epoch, val_ds, rows, metrics_a, predict,
                                 self.args.examples, self.args.keep_examples)
