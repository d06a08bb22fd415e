"""Samples/s of the project's training step against a plain NCDHW fp32 loop.

    .venv/bin/python benchmarks/train_step.py [--extras] [--json FILE]

Both arms train the same ``LunaModel`` initialisation (seed 0) on the same batches, made in
memory before timing (random HU values in [-1000, 1000], one-hot labels, batch 32), so only the
step is timed:

- project: a ``LunaTrainingApp(["--device", "cpu", "--num-workers", "0", ...])`` set up as its
  ``_main`` does (``_pick_device``, ``_init_model``) whose own ``train_epoch`` runs over an
  in-memory loader of those batches: channels_last_3d model and input, per-sample
  cross-entropy, per-sample metrics written into the metrics tensor, SGD(lr=1e-3,
  momentum=0.99), ``_guarded_step``, the per-batch events. No data set is needed: the loop
  only asks its loader for ``dataset``, ``sampler`` and batches. If ``train_epoch`` cannot run
  on that loader, the script says so and calls ``compute_batch_loss`` / ``backward`` /
  ``_guarded_step`` per batch instead, as ``train_epoch`` does.
- plain: ``model(x)``, ``F.cross_entropy``, ``loss.backward()``, ``optimizer.step()``; default
  memory format, no guard, no metrics.

Each timed segment runs ``--batches`` batches; both arms restart every segment from the same
initial weights (and empty momentum), so neither drifts into nan. Segments alternate A B, B A,
A B, ... (the order rotates every round) after ``--warmup`` untimed rounds, until ``--rounds``
or ``--budget-s``; the script reports the median, best and worst segment and the median of the
per-round ratios (robust to load that changes during the run).

``--extras`` (report only; a separate run, without the plain arm) interleaves the project
step with variants of it: with ``torch.set_num_threads(1)``, with bf16 autocast on the CPU,
without the guard (plain ``optimizer.step()``), and with ``torch.compile`` (the project's
``--compile``); it also times ``_guarded_step`` against ``optimizer.step()`` alone on fixed
gradients.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from _common import (
    machine_info,
    print_footer,
    print_machine,
    print_table,
    summary,
    write_json,
)

from luna_core.train.model import LunaModel
from luna_core.training import EpochSampler, LunaTrainingApp

TARGET_RATIO = 1.5
CHUNK = (1, 32, 48, 48)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=2, help="batches per timed segment")
    p.add_argument("--rounds", type=int, default=6,
                   help="timed rounds (one segment per arm), at most")
    p.add_argument("--min-rounds", type=int, default=3,
                   help="timed rounds run even past --budget-s")
    p.add_argument("--budget-s", type=float, default=120.0,
                   help="start no timed round after this many seconds (once --min-rounds ran)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads for every arm (default: torch's choice)")
    p.add_argument("--extras", action="store_true",
                   help="also: 1 thread, bf16 autocast, no guard, torch.compile, guard cost")
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out of extras")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- batches

def make_batches(count: int, batch_size: int, seed: int) -> list[tuple]:
    """What the DataLoader would give: (chunks, one-hot labels, uids, centres irc)."""
    g = torch.Generator().manual_seed(seed + 12345)
    batches = []
    for b in range(count):
        x = torch.randint(-1000, 1001, (batch_size, *CHUNK), generator=g).float()
        pos = torch.zeros(batch_size, dtype=torch.long)
        pos[torch.randperm(batch_size, generator=g)[:2]] = 1      # 2 nodules a batch
        label = torch.stack([1 - pos, pos], dim=1)
        uids = [f"1.3.6.1.4.1.14519.5.2.1.6279.6001.{b}{i:04d}" for i in range(batch_size)]
        centre = torch.randint(0, 100, (batch_size, 3), generator=g)
        batches.append((x, label, uids, centre))
    return batches


class InMemoryLoader:
    """The parts of a DataLoader that ``LunaTrainingApp.train_epoch`` uses."""

    def __init__(self, batches: list[tuple], batch_size: int, seed: int) -> None:
        self.batches = batches
        self.dataset = range(len(batches) * batch_size)
        self.sampler = EpochSampler(len(self.dataset), seed)
        self.batch_size = batch_size

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


# --------------------------------------------------------------------------- arms

class Bf16App(LunaTrainingApp):
    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16)


class NoGuardApp(LunaTrainingApp):
    def _guarded_step(self, finite_g: torch.Tensor) -> None:
        self.optimizer.step()


class ProjectArm:
    """A LunaTrainingApp, set up as ``_main`` sets it up, minus data sets and run folder."""

    def __init__(self, name: str, args, batches, app_cls=LunaTrainingApp, threads=None,
                 compile_model=False) -> None:
        self.name = name
        self.threads = threads
        argv = ["--device", "cpu", "--num-workers", "0", "--batch-size", str(args.batch_size),
                "--seed", str(args.seed), "--lr", "0.001", "--momentum", "0.99",
                "--on-nonfinite", "skip",
                # the same thread count as the plain arm (the app would otherwise pick its own)
                "--threads", str(threads or torch.get_num_threads())]
        self.app = app = app_cls(sys_argv=argv)
        app.device = app._pick_device("cpu")
        app.model, app.optimizer = app._init_model()
        if compile_model:
            if hasattr(app, "ddp_model"):
                app.ddp_model = torch.compile(app.ddp_model)
            else:
                app.model = torch.compile(app.model)
        app.trn_dl = InMemoryLoader(batches, args.batch_size, args.seed)
        self.batches = batches
        self.losses: list[float] = []
        app.bus.add(self._on_event)
        self.initial = (copy.deepcopy(app.model.state_dict()),
                        copy.deepcopy(app.optimizer.state_dict()))
        self.epoch = 0
        self.mode = "LunaTrainingApp.train_epoch"

    def _on_event(self, event) -> None:
        if type(event).__name__ == "BatchDone" and getattr(event, "phase", "") == "trn":
            self.losses.append(float(event.loss))

    def reset(self) -> None:
        self.app.model.load_state_dict(self.initial[0])
        self.app.optimizer.load_state_dict(self.initial[1])

    def _methods(self) -> None:
        app = self.app
        metrics_g = torch.zeros(3, len(self.batches) * app.cli_args.batch_size)
        app.model.train()
        for batch_ndx, batch_tup in enumerate(self.batches):
            app.optimizer.zero_grad(set_to_none=True)
            loss_var = app.compute_batch_loss(batch_ndx, batch_tup, metrics_g)
            loss_var.backward()
            finite = torch.isfinite(loss_var.detach())
            app._guarded_step(finite)
            self.losses.append(float(loss_var.detach()))

    def segment(self) -> int:
        self.epoch += 1
        if self.mode == "LunaTrainingApp.train_epoch":
            before = len(self.losses)
            try:
                self.app.train_epoch(self.epoch)
                if len(self.losses) - before != len(self.batches):
                    raise RuntimeError(f"train_epoch ran {len(self.losses) - before} of "
                                       f"{len(self.batches)} batches")
            except Exception as exc:  # noqa: BLE001 - say so and use the methods instead
                print(f"  [{self.name}] train_epoch on an in-memory loader failed "
                      f"({type(exc).__name__}: {exc}); calling compute_batch_loss / backward /"
                      f" _guarded_step per batch instead")
                self.mode = "compute_batch_loss + backward + _guarded_step"
                self.reset()
                self._methods()
        else:
            self._methods()
        return len(self.batches) * self.app.cli_args.batch_size


class PlainArm:
    def __init__(self, name: str, args, batches) -> None:
        self.name = name
        self.threads = None
        torch.manual_seed(args.seed)        # as LunaTrainingApp._init_model
        self.model = LunaModel()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.99)
        self.batches = batches
        self.losses: list[float] = []
        self.initial = (copy.deepcopy(self.model.state_dict()),
                        copy.deepcopy(self.optimizer.state_dict()))
        self.mode = "model(x), F.cross_entropy, backward, optimizer.step"

    def reset(self) -> None:
        self.model.load_state_dict(self.initial[0])
        self.optimizer.load_state_dict(self.initial[1])

    def segment(self) -> int:
        self.model.train()
        for x, label, _uids, _centre in self.batches:
            self.optimizer.zero_grad(set_to_none=True)
            logits, _prob = self.model(x)
            loss = F.cross_entropy(logits, label[:, 1])
            loss.backward()
            self.optimizer.step()
            self.losses.append(float(loss.detach()))
        return sum(len(b[0]) for b in self.batches)


@contextlib.contextmanager
def num_threads(n: int | None):
    if n is None:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def timed_segment(arm) -> float:
    arm.reset()
    with num_threads(arm.threads):
        t0 = time.perf_counter()
        samples = arm.segment()
        return samples / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- guard cost

def guard_cost(args, batches, reps: int = 40) -> dict:
    """ms per call of ``_guarded_step`` and of ``optimizer.step()`` on the same gradients."""
    arm = ProjectArm("guard", args, batches)
    app = arm.app
    metrics_g = torch.zeros(3, len(batches) * args.batch_size)
    app.model.train()
    app.optimizer.zero_grad(set_to_none=True)
    app.compute_batch_loss(0, batches[0], metrics_g).backward()
    grads = [p.grad.clone() for p in app.model.parameters()]
    finite = torch.tensor(True)
    app.optimizer.step()                       # momentum buffers exist from here on
    times = {"_guarded_step": [], "optimizer.step": []}
    for _ in range(reps):
        for key in times:
            for p, g in zip(app.model.parameters(), grads):
                p.grad.copy_(g)
            t0 = time.perf_counter()
            if key == "_guarded_step":
                app._guarded_step(finite)
            else:
                app.optimizer.step()
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info()
    print_machine(info)

    batches = make_batches(args.batches, args.batch_size, args.seed)
    project, plain = ProjectArm("project", args, batches), PlainArm("plain NCDHW fp32", args,
                                                                    batches)
    same = all(torch.equal(a, b) for a, b in zip(project.initial[0].values(),
                                                  plain.initial[0].values()))
    arms = [project] if args.extras else [project, plain]
    print(f"\nsame initial weights in both arms: {'yes' if same else 'NO'}; "
          f"{args.batches} batches of {args.batch_size} per segment, {args.warmup} warm-up + "
          f"up to {args.rounds} timed rounds")
    compile_s = None
    if args.extras:
        arms += [ProjectArm("project, 1 thread", args, batches, threads=1),
                 ProjectArm("project, bf16 autocast", args, batches, app_cls=Bf16App),
                 ProjectArm("project, no guard", args, batches, app_cls=NoGuardApp)]
        if not args.no_compile:
            arms.append(ProjectArm("project, torch.compile", args, batches,
                                   compile_model=True))

    for arm in arms:                            # first touch; torch.compile compiles here
        t0 = time.perf_counter()
        try:
            timed_segment(arm)
        except Exception as exc:  # noqa: BLE001 - report a failed extra, keep the rest
            if arm is project or arm is plain:
                raise
            print(f"  {arm.name}: failed ({type(exc).__name__}: {str(exc)[:200]}); left out")
            arm.failed = True
            continue
        if "compile" in arm.name:
            compile_s = time.perf_counter() - t0
            print(f"  {arm.name}: first segment (compilation) {compile_s:.1f} s")
    arms = [a for a in arms if not getattr(a, "failed", False)]
    for _ in range(max(args.warmup - 1, 0)):
        for arm in arms:
            timed_segment(arm)

    rates: dict[str, list[float]] = {a.name: [] for a in arms}
    ref, base = project.name, (None if args.extras else plain.name)
    for r in range(args.rounds):
        if r >= args.min_rounds and time.perf_counter() - t_start > args.budget_s:
            print(f"  (time budget of {args.budget_s:.0f} s reached: {r} rounds)")
            break
        shift = r % len(arms)                   # rotate the order: no arm always goes first
        for arm in arms[shift:] + arms[:shift]:
            rates[arm.name].append(timed_segment(arm))
        print(f"  round {r + 1}: " + ", ".join(f"{a.name} {rates[a.name][-1]:.1f}"
                                               for a in arms))

    results = {}
    rows = []
    for arm in arms:
        s = summary(rates[arm.name])
        paired = [p / b for p, b in zip(rates[arm.name], rates[base])] if base else []
        vs_ref = [p / q for p, q in zip(rates[arm.name], rates[ref])]
        s.update(vs_plain=statistics.median(paired) if paired else None,
                 vs_project=statistics.median(vs_ref),
                 mode=arm.mode, threads=arm.threads or torch.get_num_threads(),
                 finite_losses=sum(1 for v in arm.losses if v == v and abs(v) != float("inf")),
                 losses=len(arm.losses))
        results[arm.name] = s
        rows.append([arm.name, f"{s['median']:.1f}", f"{s['best']:.1f}", f"{s['worst']:.1f}",
                     f"{s['vs_plain']:.2f}x" if base else "-", f"{s['vs_project']:.2f}x",
                     f"{s['finite_losses']}/{s['losses']}"])
    done_rounds = len(rates[ref])
    print(f"\nsamples/s per segment ({done_rounds} interleaved rounds, batch "
          f"{args.batch_size}, {torch.get_num_threads()} intra-op threads unless noted):")
    print_table(["arm", "median", "best", "worst", "vs plain", "vs project", "finite loss"],
                rows)
    ratio = ratio_of_medians = None
    if base:
        ratio = results[ref]["vs_plain"]
        ratio_of_medians = results[ref]["median"] / results[base]["median"]
        print(f"\nproject / plain: {ratio:.2f}x (median of per-round ratios), "
              f"{ratio_of_medians:.2f}x (ratio of medians); target >= {TARGET_RATIO}x: "
              f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}")
    print(f"project step timed through: {arms[0].mode}")

    guard = None
    if args.extras:
        guard = guard_cost(args, batches)
        step_ms = 1e3 * args.batch_size / results[ref]["median"]
        extra = guard["_guarded_step"] - guard["optimizer.step"]
        print(f"guard alone: _guarded_step {guard['_guarded_step']:.2f} ms vs optimizer.step "
              f"{guard['optimizer.step']:.2f} ms per call: +{extra:.2f} ms, "
              f"{100 * extra / step_ms:.2f}% of a {step_ms:.0f} ms training step")
    if compile_s is not None:
        print(f"torch.compile: {compile_s:.0f} s to compile (first segment)")
    la, total_s = print_footer(t_start)
    write_json(args.json, {
        "benchmark": "train_step", "machine": info, "loadavg_end": la, "argv": sys.argv[1:],
        "batch_size": args.batch_size, "batches_per_segment": args.batches,
        "rounds": done_rounds, "warmup": args.warmup, "same_initial_weights": same,
        "results": results, "ratio_paired_median": ratio, "ratio_of_medians": ratio_of_medians,
        "target_ratio": TARGET_RATIO,
        "target_met": None if ratio is None else ratio >= TARGET_RATIO,
        "guard_ms": guard, "compile_s": compile_s, "total_s": total_s,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
