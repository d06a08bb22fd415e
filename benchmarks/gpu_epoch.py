"""GPU epoch benchmark: how long would one full LUNA16 training epoch (495,958 samples) take?

Times the project's training step (a) on synthetic batches already on the device — the
model's ceiling — in fp32 and in bf16 autocast (so the installed PyTorch/cuDNN's behaviour with
reduced-precision 3D convolutions is measured, not assumed), and (b) through the real path:
LunaTrainingApp itself on a synthetic LUNA16-format set from the warm CT cache, with DataLoader
workers and pinned memory, reading its BatchDone events (samples/s with warm-up excluded, and
the share of batch time spent waiting for data). Prints one table.

    .venv/bin/python benchmarks/gpu_epoch.py                       # on a GPU box
    .venv/bin/python benchmarks/gpu_epoch.py --task seg            # the U-Net (ch. 13)
    .venv/bin/python benchmarks/gpu_epoch.py --device cpu --smoke  # a quick check anywhere

``--task seg``: the same for the segmentation U-Net on 7x64x64 training crops (batch 16 by
default, as the book), an epoch being the book's 300,000 samples.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from luna_core.run import events as ev  # noqa: E402
from luna_core.train.model import LunaModel  # noqa: E402

FULL_EPOCH = 495_958
SEG_EPOCH = 300_000         # the book's seg epoch


def seg_ceiling(device: torch.device, batch_size: int, batches: int, bf16: bool,
                compile_model: bool) -> float:
    """samples/s of the U-Net's forward+backward+Adam step on crops already on the device."""
    from luna_core.train.seg_metrics import seg_loss
    from luna_core.train.unet import SegModel

    torch.manual_seed(0)
    model = SegModel().to(device)
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch_size, 7, 64, 64, device=device) * 300
    y = (torch.rand(batch_size, 1, 64, 64, device=device) > 0.97).float()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            out = step_model(x)
        seg_loss(out.float(), y).mean().backward()
        optimizer.step()

    return timed_steps(step, device, batch_size, batches)


def synthetic_ceiling(device: torch.device, batch_size: int, batches: int, bf16: bool,
                      compile_model: bool) -> float:
    """samples/s of forward+backward+SGD step on batches already on the device."""
    torch.manual_seed(0)
    model = LunaModel().to(device, memory_format=torch.channels_last_3d)
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)
    x = torch.randn(batch_size, 1, 32, 48, 48, device=device)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(0, 2, (batch_size,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits, _ = step_model(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        optimizer.step()

    return timed_steps(step, device, batch_size, batches)


def timed_steps(step, device: torch.device, batch_size: int, batches: int) -> float:
    """samples/s of ``step`` after a warm-up (cudnn autotuning, compile), device synced."""
    for _ in range(max(3, batches // 5)):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(batches):
        step()
    sync(device)
    return batches * batch_size / (time.perf_counter() - t0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def real_data_path(work: str, device: torch.device, batch_size: int, batches: int,
                   workers: int, series: int, size_xy: int, negatives: int,
                   compile_model: bool, task: str = "nodule") -> dict:
    """Run the real training loop for ``batches`` batches; return its measured rates."""
    from luna_core.data.candidates import get_candidate_info_list
    from luna_core.data.chunkstore import prepare_store, series_centres
    from luna_core.data.synth import write_synthetic_dataset
    from luna_core.training import LunaTrainingApp

    data_dir = os.path.join(work, "luna")
    cache_dir = os.path.join(work, "cache")
    if not os.path.exists(os.path.join(data_dir, "candidates.csv")):
        write_synthetic_dataset(data_dir, series=series, seed=0, size_xy=size_xy,
                                slices=(96, 128), negatives_per_series=negatives,
                                nodules_per_series=(1, 3))
    if task == "nodule":
        prepare_store(data_dir, cache_dir, series_centres(get_candidate_info_list(data_dir)),
                      num_workers=workers)

    recorded: list[ev.BatchDone] = []

    def sink(event):
        if isinstance(event, ev.BatchDone) and event.phase == "trn":
            recorded.append(event)

    argv = ["--headless", "--data-dir", data_dir, "--cache-dir", cache_dir,
            "--runs-dir", os.path.join(work, "runs"), "--num-workers", str(workers),
            "--batch-size", str(batch_size), "--device", device.type, "--epochs", "1",
            "--max-batches", str(batches)]
    if task == "seg":           # the windows are cut before the loop starts (not timed)
        argv += ["--task", "seg", "--epoch-samples", str(batch_size * batches * 2),
                 "--val-stride", "4"]
    if compile_model:
        argv.append("--compile")
    code = LunaTrainingApp(sys_argv=argv, sinks=[sink]).main()
    if code != 0:
        raise SystemExit(f"training run failed with exit status {code}")
    warm = recorded[len(recorded) // 5:]  # the first fifth is warm-up
    seconds = warm[-1].active_s - recorded[len(recorded) // 5 - 1].active_s
    samples = sum(b.samples for b in warm)
    data_s = sum(b.data_s for b in warm)
    busy = sum(b.data_s + b.compute_s for b in warm)
    return {"samples_per_s": samples / seconds, "data_share": data_s / busy,
            "batches": len(recorded)}


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--task", choices=("nodule", "seg"), default="nodule")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: 256 (nodule), 16 (seg, the book's)")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 16))
    parser.add_argument("--series", type=int, default=24)
    parser.add_argument("--size-xy", type=int, default=320)
    parser.add_argument("--negatives", type=int, default=700)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--work", default=None, help="reuse this folder for data and cache")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes: checks the script runs, the figures mean nothing")
    args = parser.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = 16 if args.task == "seg" else 256
    if args.smoke:
        args.batch_size, args.batches, args.series = 8, 5, 2
        args.size_xy, args.negatives, args.workers = 64, 30, min(args.workers, 2)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    rows = []
    variants = [("fp32", False, False), ("bf16 autocast", True, False)]
    if args.compile:
        variants.append(("bf16 autocast + compile", True, True))
    for name, bf16, compiled in variants:
        if bf16 and device.type == "cpu" and not args.smoke:
            continue  # bf16 is a GPU path in the trainer
        ceiling = seg_ceiling if args.task == "seg" else synthetic_ceiling
        rate = ceiling(device, args.batch_size, args.batches, bf16, compiled)
        rows.append((f"(a) synthetic on device, {name}", rate, None))

    work = args.work or tempfile.mkdtemp(prefix="luna-gpu-epoch-")
    real = real_data_path(work, device, args.batch_size, args.batches, args.workers,
                          args.series, args.size_xy, args.negatives, compile_model=False,
                          task=args.task)
    rows.append((f"(b) real data path, {args.workers} workers", real["samples_per_s"],
                 real["data_share"]))

    print(f"device: {describe_device(device)}; torch {torch.__version__}; "
          f"cudnn {torch.backends.cudnn.version() if device.type == 'cuda' else '-'}; "
          f"batch {args.batch_size}; {args.batches} timed batches; task {args.task}")
    epoch = SEG_EPOCH if args.task == "seg" else FULL_EPOCH
    print(f"{'what':<44} {'samples/s':>10} {'data wait':>10} {f'epoch ({epoch:,})':>16}")
    for name, rate, share in rows:
        wait = "-" if share is None else f"{100 * share:.0f}%"
        print(f"{name:<44} {rate:>10,.0f} {wait:>10} {epoch / rate:>15,.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
