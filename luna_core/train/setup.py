"""Where the training loop (luna_core.training) runs and what it is handed: the device and
the process group, the task's data sets, model and loaders, the model as the loop calls it
(DDP, compiled), autocast, batch counts and the gathering of per-sample metrics. The loop
class derives from ``LoopSetup``, so that it reads as the loop alone; tests and benchmarks
call these methods to set up parts of a loop by hand."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from luna_core.data.loader import make_loader, phase_batches, phase_samples
from luna_core.data.sampler import EpochSampler
from luna_core.train import runtime
from luna_core.train.distributed import gather_samples, init_distributed
from luna_core.train.step import make_optimizer


class LoopSetup:
    """The plumbing of LunaTrainingApp; the attributes it reads (cli_args, task, bus, dist,
    device, model, loop) are set by the loop's __init__ and _main."""

    def _start_runtime(self, choice: str) -> torch.device:
        """The device; under torchrun the process group, after which ranks other than 0 send
        their sinks warnings and errors only; cudnn autotuning, or the CPU thread count."""
        use_cuda = runtime.wants_cuda(choice)
        self.dist = init_distributed(use_cuda)
        self.bus.sinks = runtime.sinks_for_rank(self.bus.sinks, self.dist)
        runtime.log_rank(self.dist, use_cuda)
        if use_cuda:
            return runtime.cuda_device(self.dist)
        runtime.set_cpu_threads(self.cli_args, self.dist.world_size)
        return torch.device("cpu")

    _pick_device = _start_runtime  # the name tests and benchmarks call

    def _init_datasets(self):
        return self.task.datasets()

    def _build_model(self) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = self.task.build_model(self.device)
        return model, make_optimizer(model, self.cli_args.lr, self.cli_args.momentum,
                                     getattr(self.cli_args, "optimizer", "sgd"))

    def _init_model(self) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        """Seed the RNGs, then _build_model, as _main does (tests and benchmarks call it)."""
        runtime.seed_rngs(self.cli_args.seed)
        return self._build_model()

    @property
    def ddp_model(self) -> torch.nn.Module:
        """What the loop calls: ``model``, DDP-wrapped and/or compiled once _main set it."""
        return self.model if self._wrapped_model is None else self._wrapped_model

    @ddp_model.setter
    def ddp_model(self, module: torch.nn.Module) -> None:
        self._wrapped_model = module

    def _autocast(self):
        return runtime.autocast(self.device)

    def _init_dataloader(self, ds, shuffle: bool) -> DataLoader:
        sampler = self.task.sampler(ds, shuffle, self.dist.rank, self.dist.world_size)
        return make_loader(ds, sampler, self.cli_args.batch_size, self.cli_args.num_workers,
                           pin_memory=self.device.type == "cuda")

    def _batch_count(self, dl: DataLoader) -> int:
        return phase_batches(dl, self.cli_args.batch_size, self.cli_args.max_batches)

    def _sample_count(self, dl: DataLoader) -> int:
        return phase_samples(dl, self.cli_args.batch_size, self.cli_args.max_batches)

    def _gather_metrics(self, metrics_g: torch.Tensor, sampler: EpochSampler) -> torch.Tensor:
        """(3, N) per-sample metrics of every rank, each sample once, on the CPU."""
        return gather_samples(self.dist, metrics_g, sampler)

    @property
    def epoch(self) -> int:
        """The epoch under way (read by subclasses that override compute_batch_loss)."""
        return self.loop.epoch
