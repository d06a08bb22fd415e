"""The TensorBoard sink: exactly the book's layout (``runs/<tb-prefix>/<time>-trn_cls-<comment>``
and ``-val_cls-``, the metrics as scalars, the PR curve and the two histograms). Needs torch,
hence its place in luna_core.train rather than with the other sinks in luna_core.run."""

from __future__ import annotations

import os
from typing import Any

from luna_core.run.events import EpochMetrics, Event, OptimizerChanged, RunFinished
from luna_core.run.fold import event_method
from luna_core.run.metric_catalog import LR, MOMENTUM, tag_of


class TensorBoardSink:
    """Writers are created lazily at the first write, so a run that dies early leaves no
    empty TensorBoard runs. Layout and tags as in the book; global_step = training samples."""

    def __init__(self, runs_dir: str, tb_prefix: str, time_str: str, comment: str,
                 purge_step: int | None = None) -> None:
        base = os.path.join(runs_dir, tb_prefix, time_str)
        self.log_dirs = {
            "trn": f"{base}-trn_cls-{comment}",
            "val": f"{base}-val_cls-{comment}",
        }
        self.purge_step = purge_step
        self._writers: dict[str, Any] = {}

    def writer(self, phase: str):
        if phase not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            self._writers[phase] = SummaryWriter(log_dir=self.log_dirs[phase],
                                                 purge_step=self.purge_step)
        return self._writers[phase]

    @event_method
    def __call__(self, event: Event) -> None:
        """Nothing for an event TensorBoard does not show."""

    @__call__.register
    def _optimizer(self, event: OptimizerChanged) -> None:     # a steered run: when and to what
        writer = self.writer("trn")
        writer.add_scalar(LR.tag, event.lr, event.total_samples)
        writer.add_scalar(MOMENTUM.tag, event.momentum, event.total_samples)
        writer.flush()

    @__call__.register
    def _finished(self, event: RunFinished) -> None:
        self.close()

    @__call__.register
    def _write_epoch(self, event: EpochMetrics) -> None:
        import numpy as np

        writer = self.writer(event.phase)
        step = event.total_samples
        for key, value in event.metrics.items():
            writer.add_scalar(tag_of(key), value, step)
        if event.per_sample is not None:
            labels, preds = event.per_sample
            labels = np.asarray(labels)
            preds = np.asarray(preds)
            is_pos = labels > 0.5
            writer.add_pr_curve("pr", is_pos, preds, step)
            bins = np.linspace(0.0, 1.0, 51)
            # The book leaves out the probabilities that are confidently right, so that the
            # interesting ones are visible.
            neg_hist = ~is_pos & (preds > 0.01)
            pos_hist = is_pos & (preds < 0.99)
            if neg_hist.any():
                writer.add_histogram("is_neg", preds[neg_hist], step, bins=bins)
            if pos_hist.any():
                writer.add_histogram("is_pos", preds[pos_hist], step, bins=bins)
        writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
