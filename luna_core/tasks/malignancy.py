"""``--task malignancy``: benign against malignant nodules (the book's ch. 14), on the
classifier's model, fine-tuned from a nodule classifier (``--finetune RUN|CHECKPOINT``,
``--finetune-depth N``) or trained from scratch. Each validation says its ROC AUC with a 95 %
interval beside the AUC of the nodules' diameter alone (the baseline to beat); best.pt by
AUC."""

from __future__ import annotations

import logging

import numpy as np

from luna_core.data.maldsets import MalignancySampler, make_malignancy_datasets
from luna_core.data.sampler import EpochSampler
from luna_core.run.task_table import TASK_VIEWS
from luna_core.score import example_picker
from luna_core.score.malignancy_score import malignancy_line, malignancy_scalars
from luna_core.tasks.nodule import NoduleTask
from luna_core.train.finetune import finetune
from luna_core.train.metrics import METRICS_LOSS_NDX, METRICS_PRED_NDX

log = logging.getLogger(__name__)


class MalignancyTask(NoduleTask):
    name = "malignancy"
    best_metric = TASK_VIEWS["malignancy"].best       # the book's: the highest AUC

    def datasets(self):
        a = self.args
        return make_malignancy_datasets(a.data_dir, a.cache_dir, a.val_stride,
                                        a.candidates_file)

    def sampler(self, ds, shuffle: bool, rank: int, world_size: int):
        a = self.args
        if shuffle:
            return MalignancySampler(ds.classes, a.seed, rank, world_size, a.epoch_samples)
        return EpochSampler(len(ds), a.seed, shuffle=False, rank=rank, world_size=world_size)

    def build_model(self, device):
        model = super().build_model(device)
        source = getattr(self.args, "finetune", None)
        if source:
            said = finetune(model, source, self.args.finetune_depth)
            log.info("fine-tuning %s: training %s, frozen %s", said["checkpoint"],
                     ", ".join(said["trained"]), ", ".join(said["frozen"]) or "nothing")
        return model

    def start_scoring(self, val_ds) -> None:
        self.val_ds = val_ds

    def score(self, epoch: int, rows, metrics_a: np.ndarray):
        """The AUC and the diameter baseline over the validation nodules (seeded by (seed,
        epoch): a resumed run gives the same interval)."""
        rows = np.asarray(rows, dtype=np.int64)
        rows, first = np.unique(rows, return_index=True)
        p = np.asarray(metrics_a[METRICS_PRED_NDX], dtype=np.float64)[first]
        scalars = malignancy_scalars(p, self.val_ds.malignant[rows],
                                     self.val_ds.diameter[rows], self.args.froc_bootstrap,
                                     [self.args.seed, epoch])
        return None, scalars, f"E{epoch} val_mal  {malignancy_line(scalars)}"

    def save_validation(self, run_dir: str, epoch: int, rows, metrics_a: np.ndarray):
        return None

    def save_examples(self, run_dir: str, epoch: int, val_ds, rows, metrics_a: np.ndarray,
                      predict=None):
        """The malignant nodules graded lowest, the benign ones graded highest, the malignant
        ones graded best (luna_core.score.example_picker)."""
        if not self.args.examples:
            return None
        return example_picker.save(run_dir, epoch, val_ds, rows, metrics_a[METRICS_PRED_NDX],
                                   metrics_a[METRICS_LOSS_NDX], self.args.examples,
                                   self.args.keep_examples, task="malignancy")
