"""The optimizer and its guarded step: a batch whose loss or gradient is not finite leaves
the weights and the momentum as they were, decided on the device (no host sync)."""

from __future__ import annotations

import functools

import torch

# Resume sets this on a loaded optimizer's groups too: the guard needs the fused kernel.
FUSED = True
#: A parameter group's learning rate once warmed up (--lr, or what `set lr=` asked for): kept
#: in the group, so a checkpoint's optimizer state carries it and a resume goes on exactly.
PEAK_LR = "lr_peak"


def make_optimizer(model: torch.nn.Module, lr: float, momentum: float,
                   kind: str = "sgd") -> torch.optim.Optimizer:
    """``kind`` sgd: the book's SGD with ``momentum``; adam: Adam with beta1 ``momentum``.
    Both fused: the guarded step needs the fused kernels' ``found_inf``."""
    if kind == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(momentum, 0.999),
                                     fused=FUSED)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                    fused=FUSED)
    for group in optimizer.param_groups:
        group[PEAK_LR] = lr
    if kind != "adam" and momentum:
        # Zero momentum buffers up front give bit-identical updates (buf = m*0 + g) and
        # mean that a skipped first step cannot leave them uninitialised.
        for p in model.parameters():
            optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
    return optimizer


def _momentum(group: dict) -> float:
    """SGD's momentum, or Adam's beta1: what `set momentum=` steers."""
    return group["betas"][0] if "betas" in group else group["momentum"]


def peak_lr(group: dict) -> float:
    """The group's learning rate once warmed up (an optimizer from before the warm-up: its
    lr)."""
    return group.get(PEAK_LR, group["lr"])


def warm_up(optimizer: torch.optim.Optimizer, samples: int, warmup: int) -> float:
    """--lr-warmup: each group's lr is its peak times ``samples / warmup`` (the samples
    trained once this step is taken), at most the peak; returns the lr now."""
    share = min(1.0, samples / warmup) if warmup > 0 else 1.0
    for group in optimizer.param_groups:
        group["lr"] = peak_lr(group) * share
    return optimizer.param_groups[0]["lr"]


def apply_setting(optimizer: torch.optim.Optimizer, lr: float | None,
                  momentum: float | None) -> tuple[float, float, float, float]:
    """A new learning rate (during a warm-up: the one it rises to) and/or momentum (Adam:
    beta1; None keeps it) for every parameter group; returns (old lr, old momentum, lr,
    momentum)."""
    group = optimizer.param_groups[0]
    old_lr, old_momentum = peak_lr(group), _momentum(group)
    lr = old_lr if lr is None else lr
    momentum = old_momentum if momentum is None else momentum
    for group in optimizer.param_groups:
        share = group["lr"] / peak_lr(group)        # below 1 during a warm-up
        group["lr"], group[PEAK_LR] = lr * share, lr
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        else:
            group["momentum"] = momentum
    return old_lr, old_momentum, lr, momentum


def guarded_step(optimizer: torch.optim.Optimizer, finite_g: torch.Tensor) -> torch.Tensor:
    """optimizer.step(), skipped whole when the loss (``finite_g`` False) or a gradient was
    not finite.

    Returns, on the device, why the update was skipped: 0.0 it was not, 1.0 a non-finite
    gradient with a finite loss, 2.0 a non-finite loss. Under DDP both are the same on every
    rank (``finite_g`` is combined over ranks, gradients are all-reduced)."""
    loss_bad = (~finite_g).float()
    found_inf = loss_bad.clone()
    _fused_step_unless_found_inf(optimizer, found_inf)
    return found_inf + loss_bad


def _fused_step_unless_found_inf(optimizer: torch.optim.Optimizer,
                                 found_inf: torch.Tensor) -> None:
    # Private API, the one AMP's GradScaler uses: torch has no public "step unless a flag on
    # the device is set". _amp_foreach_non_finite_check_and_unscale_ raises found_inf to 1
    # if any gradient is nan/inf (the scale is 1: gradients are unchanged), and the fused SGD
    # kernel reads optimizer.found_inf and skips its whole update when it is 1. A host-side
    # check (`if loss.isfinite()`) would sync the GPU every batch. tests/test_private_apis.py
    # fails if a torch upgrade removes either.
    grads = [p.grad for group in optimizer.param_groups for p in group["params"]
             if p.grad is not None]
    torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf,
                                                     _unit_scale(found_inf.device))
    optimizer.found_inf = found_inf
    optimizer.step()


@functools.cache
def _unit_scale(device: torch.device) -> torch.Tensor:
    return torch.ones((), device=device)
