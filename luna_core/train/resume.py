"""--resume: the checkpoint to continue from, its options merged into the command line's,
the refusals (options that decide the model, the data or the sample order; another data set;
a mid-epoch checkpoint under another number of processes), and its state applied."""

from __future__ import annotations

import logging
import os
from argparse import Namespace

import torch

from luna_core.train.checkpoint import (
    CHECKPOINT_DIRNAME,
    CheckpointError,
    check_checkpoint,
    load_checkpoint,
    resolve_resume_path,
    restore_rng_state,
    run_dir_of,
)
from luna_core.train.options import RESUME_MUST_MATCH
from luna_core.train.step import FUSED
from luna_core.train.task import DEFAULT_TASK

log = logging.getLogger(__name__)


class Resume:
    def __init__(self, path: str, state: dict) -> None:
        self.path, self.state = path, state

    @classmethod
    def load(cls, checkpoint_or_run_dir: str) -> Resume:
        path = resolve_resume_path(checkpoint_or_run_dir)
        state = load_checkpoint(path)
        check_checkpoint(state, path)         # every key a resume reads, of its type
        log.info("Resuming from %s (epoch %d, batch %d%s)", path, state["epoch"],
                 state["batch_ndx"], ", epoch done" if state["epoch_done"] else "")
        return cls(path, state)

    def merge_options(self, cli_args: Namespace, given_options: set[str]) -> None:
        """Options not given on this command line come from the checkpoint; given ones that
        must match it are refused if they differ."""
        # a checkpoint from before tasks is the candidate classifier's
        # ... and from before --optimizer, trained with SGD
        for name, value in {"task": DEFAULT_TASK, "optimizer": "sgd",
                            **self.state["options"]}.items():
            if name in ("resume", "headless"):
                continue
            if name not in given_options:
                setattr(cli_args, name, value)
            elif name in RESUME_MUST_MATCH and getattr(cli_args, name) != value:
                raise CheckpointError(
                    f"{self.path}: cannot resume with --{name.replace('_', '-')} "
                    f"{getattr(cli_args, name)}: the checkpoint was made with {value}")
            elif getattr(cli_args, name) != value and name in ("lr", "momentum"):
                log.warning("resuming with --%s %s (the run started with %s)", name,
                            getattr(cli_args, name), value)

    def check_data(self, trn_ds, val_ds, data_dir: str) -> None:
        run = self.state["run"]
        if (run["data_fingerprint"] != trn_ds.fingerprint
                or run["trn_samples"] != len(trn_ds)
                or run["val_samples"] != len(val_ds)):
            raise CheckpointError(
                f"{self.path}: cannot resume on another data set (the checkpoint has "
                f"{run['trn_samples']}/{run['val_samples']} training/validation samples, "
                f"{data_dir} gives {len(trn_ds)}/{len(val_ds)} or other candidates)")

    def apply(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              world_size: int) -> tuple[int, int, torch.Tensor | None]:
        """Load the weights, the optimizer and the RNG states; returns where the loop goes
        on: (epoch, training batches of it done, its training metrics so far)."""
        state = self.state
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            for group in optimizer.param_groups:
                group["fused"] = FUSED  # the guarded step relies on the fused kernel
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{self.path}: does not match this model: "
                                  f"{str(exc).splitlines()[0]}") from exc
        restore_rng_state(state["rng"])
        if state["epoch_done"]:
            return state["epoch"] + 1, 0, None
        saved_world = state["run"].get("world_size", 1)
        if saved_world != world_size:
            raise CheckpointError(
                f"{self.path}: this checkpoint was taken inside an epoch by "
                f"{saved_world} process(es); resume it with the same number of processes "
                f"(now {world_size}), or resume from an epoch-end checkpoint "
                f"(e*-end.pt), which works with any number")
        return state["epoch"], state["batch_ndx"], state["trn_metrics"]

    @property
    def total_samples(self) -> int:
        return self.state["total_samples"]

    @property
    def best_score(self) -> float | None:
        """The best score so far (the task's best_metric; older checkpoints: the loss)."""
        return self.state.get("best_score", self.state.get("best_val_loss"))

    @property
    def time_str(self) -> str:
        return self.state["run"]["time_str"]

    @property
    def run_dir(self) -> str:
        """The run goes on in its own directory: the one holding the checkpoint's
        checkpoints/ folder (the run may have been moved), else the one it was saved in."""
        return run_dir_of(self.path) or self.state["run"]["run_dir"]

    @property
    def purge_step(self) -> int:
        """TensorBoard drops what was logged after the checkpoint (a crashed run's tail)."""
        step = self.total_samples
        if self.state["epoch_done"] or self.state["batch_ndx"] == 0:
            step += 1  # keep the metrics logged at the checkpoint's own step
        return step


class FreshStart:
    """No --resume: the same questions as ``Resume``, answered for a run that starts at
    epoch 1 (so the loop asks "resuming?" once, where the run directory is chosen)."""

    path = None
    best_score = None
    purge_step = None

    def merge_options(self, cli_args: Namespace, given_options: set[str]) -> None:
        pass

    def check_data(self, trn_ds, val_ds, data_dir: str) -> None:
        pass

    def apply(self, model, optimizer, world_size: int) -> tuple[int, int, None]:
        return 1, 0, None


def resumed_run_dir(option: str) -> str | None:
    """The run folder ``--resume`` names, told from the path alone (before any checkpoint
    is read): a run folder, its checkpoints/ folder, or a file in that; None otherwise."""
    path = os.path.abspath(option)
    if not os.path.exists(path):
        return None                      # resume_from says what is missing
    if os.path.isdir(path):
        if os.path.basename(path) == CHECKPOINT_DIRNAME:
            return os.path.dirname(path)
        return path if os.path.isdir(os.path.join(path, CHECKPOINT_DIRNAME)) else None
    return run_dir_of(path)


def resume_from(option: str | None) -> Resume | FreshStart:
    """``--resume``'s checkpoint (or run directory), or a fresh start."""
    return Resume.load(option) if option else FreshStart()
