"""The task interface (issue 29): the loop trains whatever ``--task`` names and names no
model, class index or score itself; a resume refuses a change of task; a checkpoint from
before tasks resumes as the candidate classifier; best.pt follows the task's own metric."""

from __future__ import annotations

import os
import re

import pytest

from luna_core.run.metric_catalog import RECALL
from luna_core.tasks.nodule import NoduleTask
from luna_core.train import task as task_module
from luna_core.train.options import build_parser
from luna_core.train.task import DEFAULT_TASK, TASKS, make_task
from tests.trainhelpers import run_dirs, run_loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_default_task_is_the_candidate_classifier():
    assert DEFAULT_TASK == "nodule" and list(TASKS)[0] == "nodule"
    args = build_parser().parse_args([])
    assert args.task == "nodule" and isinstance(make_task(args), NoduleTask)
    assert "nodule: the nodule candidate classifier" in build_parser().format_help()


def test_the_loop_names_no_model_class_index_or_score():
    """What a task declares stays in the task: the loop and its collaborators never name
    the classifier's model, its metric rows or LUNA16's FROC."""
    names = re.compile(r"LunaModel|METRICS_(PRED|LABEL|LOSS)_NDX|ValidationScorer|froc|"
                       r"is_nodule|BalancedSampler|cross_entropy")
    files = [os.path.join(ROOT, "luna_core", "training.py")] + [
        os.path.join(ROOT, "luna_core", "train", n) for n in
        ("checkpointer.py", "resume.py", "run_flags.py", "reporter.py", "runtime.py",
         "state.py", "step.py", "rundir.py", "task.py", "setup.py")]
    for path in files:
        text = open(path, encoding="utf-8").read()
        assert not names.search(text), (path, names.search(text).group(0))


class OtherTask(NoduleTask):
    name = "other"


def test_a_resume_refuses_another_task(train_argv, tmp_path, monkeypatch):
    code, _rec, console = run_loop(train_argv("--epochs", "1", "--max-batches", "1",
                                              "--froc-bootstrap", "0"))
    assert code == 0, console
    (run_dir,) = run_dirs(tmp_path / "runs")
    monkeypatch.setitem(TASKS, "other", ("tests.test_task:OtherTask", "a second task"))
    code, _rec, console = run_loop(train_argv("--epochs", "2", "--task", "other",
                                              "--resume", run_dir))
    assert code == 2, console
    assert "cannot resume with --task other: the checkpoint was made with nodule" in console


def test_a_checkpoint_from_before_tasks_resumes_as_the_classifier(train_argv, tmp_path):
    """Its options have no 'task': it is the candidate classifier's."""
    import torch

    code, _rec, console = run_loop(train_argv("--epochs", "1", "--max-batches", "1",
                                              "--froc-bootstrap", "0"))
    assert code == 0, console
    (run_dir,) = run_dirs(tmp_path / "runs")
    path = os.path.join(run_dir, "checkpoints", "e001-end.pt")
    state = torch.load(path, weights_only=True)
    del state["options"]["task"]
    for key in ("score", "best_score", "best_metric"):
        del state[key]
    torch.save(state, path)
    code, _rec, console = run_loop(train_argv("--epochs", "2", "--resume", run_dir))
    assert code == 0, console


class ByRecall(NoduleTask):
    """best.pt by the highest recall, from validation losses the test sets."""

    name = "by-recall"
    best_metric = RECALL

    def __init__(self, args):
        super().__init__(args)
        self.recalls = iter([0.75, 0.25, 0.5])

    def best_score(self, result):
        return next(self.recalls)         # the catalog: the higher recall is better


def test_best_pt_follows_the_tasks_own_metric(train_argv, tmp_path, monkeypatch):
    import torch

    monkeypatch.setitem(TASKS, "by-recall", ("tests.test_task:ByRecall", "best by recall"))
    code, rec, console = run_loop(train_argv("--epochs", "3", "--max-batches", "1",
                                             "--froc-bootstrap", "0", "--task", "by-recall"))
    assert code == 0, console
    (run_dir,) = run_dirs(tmp_path / "runs")
    best = torch.load(os.path.join(run_dir, "checkpoints", "best.pt"), weights_only=True)
    assert best["epoch"] == 1 and best["best_metric"] == "pr/recall"
    assert best["best_score"] == pytest.approx(0.75)


def test_an_unknown_task_is_named():
    with pytest.raises(ValueError, match="no task 'segment'"):
        task_module.task_class("segment")
