"""The private torch APIs the project relies on, each behind one function: these tests fail
if a torch upgrade removes one or changes what it does.

- luna_core.train.step: ``torch._amp_foreach_non_finite_check_and_unscale_`` plus
  ``optimizer.found_inf`` on fused SGD (the guarded step, decided on the device).
- luna_core.data.loader: ``DataLoader._iterator._shutdown_workers()`` (stops persistent
  loader workers when a run ends).
- luna_tui.app: ``App._driver.write`` (the bell and desktop notification escapes, the way
  Textual's own ``App.bell`` writes).
- luna_core.data.dsets: ``torch.UntypedStorage._new_shared`` (a worker reads a batch straight
  into shared memory, as torch's default_collate does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from luna_core.data.dsets import shared_empty
from luna_core.data.loader import make_loader, shutdown_workers
from luna_core.data.sampler import EpochSampler
from luna_core.train.step import guarded_step, make_optimizer


@pytest.fixture(params=["sgd", "adam"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def _model_and_optimizer(kind):
    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        optimizer = make_optimizer(model, lr=0.1, momentum=0.9, kind=kind)
        assert all(group["fused"] for group in optimizer.param_groups)
        return model, optimizer
    return make


def _snapshot(model, optimizer):
    """The weights, and every state tensor of the optimizer (SGD's momentum; Adam's
    moments and step count)."""
    weights = [p.detach().clone() for p in model.parameters()]
    state = [v.clone() for p in model.parameters()
             for _, v in sorted(optimizer.state[p].items()) if torch.is_tensor(v)]
    return weights, state


def _backward(model, gradient_fill: float | None = None) -> torch.Tensor:
    """A backward pass; ``gradient_fill`` overwrites the weight's gradient (nan, inf)."""
    model.zero_grad(set_to_none=True)
    loss = model(torch.ones(3, 4)).square().mean()
    loss.backward()
    if gradient_fill is not None:
        model.weight.grad.fill_(gradient_fill)
    return loss.detach()


def _assert_unchanged(before, after):
    for a, b in zip(before[0] + before[1], after[0] + after[1], strict=True):
        assert torch.equal(a, b)


def test_the_private_amp_kernel_exists():
    assert callable(torch._amp_foreach_non_finite_check_and_unscale_)


@pytest.mark.parametrize("fill", [float("nan"), float("inf")])
def test_a_non_finite_gradient_leaves_weights_and_momentum_unchanged(fill, _model_and_optimizer):
    model, optimizer = _model_and_optimizer()
    for _ in range(2):  # momentum buffers that are not all zero
        guarded_step(optimizer, torch.isfinite(_backward(model)))
    before = _snapshot(model, optimizer)
    loss = _backward(model, gradient_fill=fill)
    why = guarded_step(optimizer, torch.isfinite(loss))
    assert float(why) == 1.0          # skipped: a non-finite gradient, the loss was finite
    _assert_unchanged(before, _snapshot(model, optimizer))


def test_a_non_finite_loss_leaves_weights_and_momentum_unchanged(_model_and_optimizer):
    model, optimizer = _model_and_optimizer()
    guarded_step(optimizer, torch.isfinite(_backward(model)))
    before = _snapshot(model, optimizer)
    _backward(model)                              # finite gradients, but the loss was not
    why = guarded_step(optimizer, torch.tensor(False))
    assert float(why) == 2.0
    _assert_unchanged(before, _snapshot(model, optimizer))


def test_a_finite_gradient_changes_weights_and_momentum(_model_and_optimizer):
    model, optimizer = _model_and_optimizer()
    guarded_step(optimizer, torch.isfinite(_backward(model)))
    before = _snapshot(model, optimizer)
    why = guarded_step(optimizer, torch.isfinite(_backward(model)))
    assert float(why) == 0.0
    after = _snapshot(model, optimizer)
    for a, b in zip(before[0] + before[1], after[0] + after[1], strict=True):
        assert not torch.equal(a, b)
    # and it is the plain fused SGD update: the same as an unguarded step
    model_b, optimizer_b = _model_and_optimizer()
    _backward(model_b)
    optimizer_b.step()
    _backward(model_b)
    optimizer_b.step()
    for a, b in zip(after[0], _snapshot(model_b, optimizer_b)[0], strict=True):
        assert torch.equal(a, b)


# In a process of its own: a DataLoader whose workers outlive a failed check would hang the
# test run, or break the next test (torch's SIGCHLD handler raises in whatever runs then).
_SHUTDOWN_CHECK = textwrap.dedent("""
    import json, os, signal
    import torch
    from luna_core.data.loader import make_loader, shutdown_workers
    from luna_core.data.sampler import EpochSampler
    from luna_core.run.runs import process_alive

    class WorkerPids(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, index):
            return os.getpid()

    dl = make_loader(WorkerPids(), EpochSampler(8, seed=0, shuffle=False), batch_size=2,
                     num_workers=2, pin_memory=False)
    pids = sorted({int(pid) for batch in dl for pid in batch})
    before = [process_alive(pid) for pid in pids]
    shutdown_workers(dl)
    after = [process_alive(pid) for pid in pids]
    print(json.dumps(dict(persistent=dl.persistent_workers, pids=pids, parent=os.getpid(),
                          before=before, after=after)), flush=True)
    for pid in pids:
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
    os._exit(0)
""")


def test_shutdown_workers_ends_persistent_worker_processes():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", _SHUTDOWN_CHECK], cwd=root,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["persistent"]
    assert len(seen["pids"]) == 2 and seen["parent"] not in seen["pids"]
    assert seen["before"] == [True, True]   # persistent: alive after the epoch
    assert seen["after"] == [False, False]  # and gone once shut down


def test_shutdown_workers_is_a_no_op_without_workers():
    shutdown_workers(None)
    dl = make_loader(list(range(8)), EpochSampler(8, seed=0), batch_size=2, num_workers=0,
                     pin_memory=False)
    shutdown_workers(dl)                 # never iterated
    list(dl)
    shutdown_workers(dl)                 # iterated in this process


def test_shared_empty_is_a_shared_tensor_of_the_shape_and_dtype_asked():
    t = shared_empty((3, 1, 4, 5, 6), torch.int16)
    assert t.is_shared() and t.shape == (3, 1, 4, 5, 6) and t.dtype == torch.int16
    assert t.is_contiguous() and t.untyped_storage().nbytes() == 3 * 4 * 5 * 6 * 2
    t.fill_(7)
    assert int(t.sum()) == 7 * 3 * 4 * 5 * 6


async def test_textual_apps_write_to_the_terminal_through_their_driver():
    from textual.app import App

    app = App()
    async with app.run_test():
        assert callable(app._driver.write)
