"""What differs between the book's models, declared once: a *task*.

The loop (luna_core.training) trains whatever task ``--task`` names and never names a model,
a class index or a score itself. A task says:

- ``datasets()``: its training and validation sets (each with ``fingerprint`` and
  ``pos_count``, which the run's start and a resume's data check read);
- ``sampler(ds, shuffle, rank, world_size)``: the order of an epoch (an EpochSampler-like
  sampler: ``set_epoch``, ``gathered_indices``, ``valid_mask``);
- ``build_model(device)``: the model, on the device in its memory format;
- ``batch_loss(forward, batch, device, augment, metrics_g, start_ndx, draw)``: one batch's
  loss (a 0-d tensor to backpropagate), filling its columns of the per-sample metrics tensor
  (``metrics_size`` rows); ``forward``: the model as the loop runs it (DDP, compiled,
  autocast); ``augment``: the loop's augmentation for training batches, or None (``augment(x)``,
  or ``augment(x, mask)`` -> (x, mask) for slices and their labels); ``draw(j)``: training
  only (None in validation), sample j's own random generator, from (seed, epoch, its place in
  the epoch's order), the same after a resume and under DDP;
- ``phase_result(metrics_a)``: a phase's numbers — ``{"metrics": {...}, and the counts the
  EpochMetrics event carries}`` — and ``metric_lines(epoch, phase, result)``: its log lines;
- ``start_scoring(val_ds)`` and ``score(epoch, rows, metrics_a)``: the score of a validation
  beyond the per-phase numbers (None when the task has none), with its log line;
- ``save_examples(...)``: what a person should look at after a validation;
- ``per_sample(metrics_a)``: (labels, probabilities) for the PR curve and histograms;
- ``best_metric``: the metric (luna_core.run.metric_catalog) that picks best.pt, better as
  the catalog says; ``best_score(result)``: its value in a validation's result.

Tasks register by name in ``TASKS`` (name -> "module:Class", imported when asked for), so that
the option parser lists them without importing torch. ``luna_core.tasks.nodule`` is the first:
the candidate classifier of ch. 11–12, the default.
"""

from __future__ import annotations

import importlib
from argparse import Namespace
from typing import Any, ClassVar

from luna_core.run.metric_catalog import LOSS, Metric

#: name -> (where its class is, what it trains). The first is the default.
TASKS: dict[str, tuple[str, str]] = {
    "nodule": ("luna_core.tasks.nodule:NoduleTask",
               "the nodule candidate classifier (ch. 11-12)"),
    "seg": ("luna_core.tasks.seg:SegTask",
            "the segmentation U-Net (ch. 13): nodule pixels in whole slices"),
    "malignancy": ("luna_core.tasks.malignancy:MalignancyTask",
                   "benign against malignant nodules (ch. 14), fine-tuned from a nodule "
                   "classifier with --finetune"),
}
#: Options whose default differs for a task (the book's values for it), taken where the
#: command line does not give them.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "seg": {"optimizer": "adam", "batch_size": 16, "epoch_samples": 300_000, "val_every": 5,
            "split": "series"},
    "malignancy": {"lr": 0.003, "split": "series", "epoch_samples": 100_000},
}
DEFAULT_TASK = next(iter(TASKS))


class Task:
    """The base every task derives from; see the module's docstring for what each does."""

    name: ClassVar[str] = ""
    metrics_size: ClassVar[int] = 0
    best_metric: ClassVar[Metric] = LOSS

    def __init__(self, args: Namespace) -> None:
        self.args = args

    # the data and the model
    def datasets(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def sampler(self, ds, shuffle: bool, rank: int, world_size: int):
        raise NotImplementedError

    def build_model(self, device):
        raise NotImplementedError

    # one batch
    def batch_loss(self, forward, batch_tup, device, augment, metrics_g, start_ndx: int,
                   draw=None):
        raise NotImplementedError

    # one phase
    def phase_result(self, metrics_a) -> dict:
        raise NotImplementedError

    def metric_lines(self, epoch: int, phase: str, result: dict) -> list[str]:
        raise NotImplementedError

    def per_sample(self, metrics_a):
        return None

    def best_score(self, result: dict) -> float:
        return result["metrics"][self.best_metric.key]

    # a validation's score and examples
    def start_scoring(self, val_ds) -> None:
        pass

    def score(self, epoch: int, rows, metrics_a):
        """(the score as the EpochMetrics event carries it, its scalars, its log line), or
        None when the task has no score beyond the phase's numbers."""
        return None

    def save_validation(self, run_dir: str, epoch: int, rows, metrics_a) -> str | None:
        """Keep the validation's score per sample in the run folder (for comparing runs
        afterwards); the path written, or None when the task keeps none."""
        return None

    def save_examples(self, run_dir: str, epoch: int, val_ds, rows, metrics_a, predict=None):
        """(path, counts) of what was written, or None when the task keeps no examples;
        ``predict``: the model on a few samples (numpy in, numpy out), in eval mode."""
        return None


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ValueError(f"no task {name!r} (there are: {', '.join(TASKS)})")
    module, _, cls = TASKS[name][0].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_task(args: Namespace) -> Task:
    """The task ``--task`` names, for these options."""
    return task_class(getattr(args, "task", DEFAULT_TASK))(args)
