"""What the readers of a run (the summary, `runs`, `compare`, the cockpit) show for each task,
and which metric picks its best.pt: one row a task, read from the run's own ``task`` option
(runs from before tasks: the classifier). The loop's tasks (luna_core.train.task) take their
``best_metric`` from here, so the checkpoint and every reader agree. No torch here."""

from __future__ import annotations

from dataclasses import dataclass

from luna_core.run.metric_catalog import (
    AUC,
    AUC_DIAMETER,
    CPM,
    DETECTION_CPM,
    DICE,
    F1,
    FP_PER_SCAN,
    LIST_CPM,
    LOSS,
    NODULES_FOUND,
    PRECISION,
    RECALL,
    Metric,
)


@dataclass(frozen=True)
class TaskView:
    name: str
    best: Metric                       # picks best.pt (the catalog says which way is better)
    why_best: str                      # said in --help and the README
    last_validation: tuple[Metric, ...]   # the summary's "last validation" line
    columns: tuple[Metric, ...]        # `compare`'s columns (loss first)


TASK_VIEWS: dict[str, TaskView] = {
    "nodule": TaskView("nodule", LOSS, "the lowest validation loss (the book's)",
                       (CPM, RECALL, PRECISION, F1), (LOSS, CPM, AUC, RECALL, PRECISION, F1)),
    "seg": TaskView("seg", RECALL,
                    "the highest pixel recall (the book's: a missed nodule costs more than "
                    "false positive pixels, which the classifier filters)",
                    (RECALL, DICE, PRECISION, F1), (LOSS, RECALL, DICE, PRECISION, F1)),
    "malignancy": TaskView("malignancy", AUC,
                           "the highest ROC AUC of benign against malignant (the book's)",
                           (AUC, AUC_DIAMETER, RECALL, PRECISION),
                           (LOSS, AUC, AUC_DIAMETER, RECALL, PRECISION, F1)),
    # `luna-tui analyze` (the book's ch. 14): trains nothing; its one "validation" is the
    # detection score of the three models together
    "analysis": TaskView("analysis", DETECTION_CPM,
                         "an analysis keeps no checkpoint: its score is the detection CPM",
                         (DETECTION_CPM, LIST_CPM, NODULES_FOUND, FP_PER_SCAN),
                         (DETECTION_CPM, LIST_CPM, NODULES_FOUND, FP_PER_SCAN)),
}
DEFAULT = "nodule"


def task_view(options: dict | None) -> TaskView:
    """The row of the task a run's options name (unknown or none: the classifier's)."""
    name = (options or {}).get("task") or DEFAULT
    return TASK_VIEWS.get(name, TASK_VIEWS[DEFAULT])
