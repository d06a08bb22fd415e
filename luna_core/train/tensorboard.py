"""The TensorBoard sink: exactly the book's layout (``runs/<tb-prefix>/<time>-trn_cls-<comment>``
and ``-val_cls-``; the segmentation task's ``-trn_seg-`` and ``-val_seg-``, as the book's
ch. 13), the metrics as scalars, the PR curve and the two histograms). Needs torch,
hence its place in luna_core.train rather than with the other sinks in luna_core.run."""

from __future__ import annotations

import os
from typing import Any

from luna_core.run.events import (
    EpochMetrics,
    Event,
    ExamplesSaved,
    OptimizerChanged,
    RankTimings,
    RunFinished,
)
from luna_core.run.fold import event_method
from luna_core.run.metric_catalog import LR, MOMENTUM, tag_of

#: A rank's parts of a training batch (luna_core.run.straggler.RankWindow's ``<part>_s``).
RANK_PARTS = ("data", "copy", "sync", "forward", "backward", "step")


class TensorBoardSink:
    """Writers are created lazily at the first write, so a run that dies early leaves no
    empty TensorBoard runs. Layout and tags as in the book; global_step = training samples."""

    def __init__(self, runs_dir: str, tb_prefix: str, time_str: str, comment: str,
                 purge_step: int | None = None, kind: str = "cls") -> None:
        base = os.path.join(runs_dir, tb_prefix, time_str)
        self.log_dirs = {
            "trn": f"{base}-trn_{kind}-{comment}",
            "val": f"{base}-val_{kind}-{comment}",
        }
        self.purge_step = purge_step
        self._writers: dict[str, Any] = {}
        self._val_step = 0            # the latest validation's step (its examples' step)

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
    def _ranks(self, event: RankTimings) -> None:
        """torchrun: each rank's parts of a batch (ms), samples/s and score, under ranks/."""
        writer = self.writer("trn")
        for r in event.ranks:
            for part in RANK_PARTS:
                writer.add_scalar(f"ranks/rank{r['rank']}/{part}_ms",
                                  1000.0 * float(r.get(f"{part}_s") or 0.0),
                                  event.total_samples)
            writer.add_scalar(f"ranks/rank{r['rank']}/samples_per_s",
                              float(r.get("samples_per_s") or 0.0), event.total_samples)
            writer.add_scalar(f"ranks/rank{r['rank']}/score", float(r.get("score") or 0.0),
                              event.total_samples)
        writer.add_scalar("ranks/straggler", -1 if event.straggler is None
                          else event.straggler["rank"], event.total_samples)

    @__call__.register
    def _finished(self, event: RunFinished) -> None:
        self.close()

    @__call__.register
    def _write_epoch(self, event: EpochMetrics) -> None:
        import numpy as np

        writer = self.writer(event.phase)
        step = event.total_samples
        if event.phase == "val":
            self._val_step = step
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

    @__call__.register
    def _examples(self, event: ExamplesSaved) -> None:
        """--task seg: the first slices of each kind of examples as images (the slice in the
        lung window, nodule pixels found green, missed magenta, falsely marked amber), as the
        book shows its validation slices."""
        from luna_core.errors import LunaInputError
        from luna_core.run.example_file import read_examples

        try:
            examples = read_examples(event.path)
        except LunaInputError:
            return                     # the examples' own writer said why
        if examples.task != "seg":
            return
        writer = self.writer("val")
        for kind in examples.kinds:
            for ex in examples.of_kind(kind)[:TB_SEG_IMAGES]:
                writer.add_image(f"{kind}/{ex.rank}", seg_overlay(examples, ex),
                                 self._val_step, dataformats="HWC")
        writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


TB_SEG_IMAGES = 3           # slices of each kind a validation shows in TensorBoard


def seg_overlay(examples, ex):
    """(H, W, 3) uint8: a seg example's slice in the lung window with its pixels coloured."""
    import numpy as np

    from luna_core.run.example_file import (
        FALSE_RGB,
        FOUND_RGB,
        LUNG_WINDOW,
        MISSED_RGB,
    )

    hu, label, called = (np.asarray(examples.plane(ex, k)) for k in range(3))
    lo, hi = LUNG_WINDOW
    grey = np.rint(255 * (np.clip(hu, lo, hi) - lo) / (hi - lo)).astype(np.uint8)
    img = np.repeat(grey[..., None], 3, axis=2)
    label, called = label > 0, called > 0
    for where, colour in ((label & called, FOUND_RGB), (label & ~called, MISSED_RGB),
                          (~label & called, FALSE_RGB)):
        img[where] = colour
    return img
