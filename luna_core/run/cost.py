"""What a run will cost before it starts (`queue add`, `check`): its samples from the data set's
size and its options, its speed from this machine's own past runs.

- Samples: an epoch trains ``--epoch-samples`` samples, else the book's 200,000 with
  ``--balanced``, else the whole training set; validation scores every ``--val-stride``-th
  candidate (series, with ``--split series``: about the same share). ``--max-batches`` caps
  both. The data set's size is the candidate list's row count.
- Validations: every ``--val-every``-th epoch and the last.
- ``--task seg``: an epoch trains ``--epoch-samples`` (the book's 300,000 by default);
  validation is the slices of the validation series' nodules, counted as the nodules of
  the annotations (the book's malignancy file when it is there) over ``--val-stride`` times
  ``SEG_SLICES_PER_NODULE``.
- Speed: samples per second of training and of validation in the newest run under the runs
  folder that ran on this host with the same task, device kind and batch size (its complete
  phases: samples over active seconds); else a guess for the task and device kind, said as
  one.
Standard library only.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from luna_core.run import events as ev
from luna_core.run.estimate import format_duration

#: The book's balanced epoch (luna_core.data.sampler.BALANCED_EPOCH_SAMPLES; no numpy here).
BALANCED_EPOCH_SAMPLES = 200_000
#: Guessed speeds (training, validation samples/s) when no run on this host says: 2 CPU
#: cores at batch 16 (benchmarks/RESULTS.md), one GPU of the book's era at batch 32.
GUESSED_SPEED = {"cpu": (35.0, 120.0), "cuda": (1500.0, 4000.0)}
#: --task seg's: 2 CPU cores at batch 16, 64x64 crops and the demo's 160x160 slices
#: (benchmarks/RESULTS.md; 512x512 slices validate ~10x slower); a GPU: not measured yet.
SEG_GUESSED_SPEED = {"cpu": (150.0, 60.0), "cuda": (3000.0, 300.0)}
#: Validation slices a nodule gives (slices holding its mask: ~its diameter over the slice
#: spacing, less where nodules share slices): 3.3 on the demo set (297 slices, 91 nodules).
SEG_SLICES_PER_NODULE = 4
#: `queue add` warns when what it queued adds up to more than this.
WARN_HOURS = 12.0


@dataclass(frozen=True)
class Speed:
    trn: float               # samples/s
    val: float
    source: str              # "measured by RUN_DIR" or "guessed for a CPU"


@dataclass(frozen=True)
class Cost:
    epochs: int
    trn_samples: int         # an epoch's
    val_samples: int
    seconds: float
    speed: Speed
    validations: int | None = None      # None: every epoch

    def line(self) -> str:
        checks = self.epochs if self.validations is None else self.validations
        val = (f"{self.val_samples:,} validation samples" if checks == self.epochs else
               f"{checks} validation(s) of {self.val_samples:,} samples")
        return (f"about {format_duration(self.seconds)}: {self.epochs} epoch(s) of "
                f"{self.trn_samples:,} training + {val} at "
                f"{self.speed.trn:,.0f} / {self.speed.val:,.0f} samples/s "
                f"({self.speed.source})")


def count_rows(csv_path: str) -> int:
    """Data rows of a CSV (its header left out); 0 when it cannot be read."""
    try:
        with open(csv_path, "rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
            f.seek(0, os.SEEK_END)
            if f.tell() and not _ends_with_newline(f):
                lines += 1
    except OSError:
        return 0
    return max(0, lines - 1)


def _ends_with_newline(f) -> bool:
    f.seek(-1, os.SEEK_END)
    return f.read(1) == b"\n"


def epoch_samples(training_rows: int, balanced: bool, given: int | None) -> int:
    if given is not None:
        return int(given)
    return BALANCED_EPOCH_SAMPLES if balanced else training_rows


def scaled_epoch_samples(training_rows: int) -> int | None:
    """The ch. 12 preset's balanced epoch: the book's 200,000 where the data is real-sized
    (at least that many training candidates), else the training set's size; None when the
    size is unknown (the run's default stays)."""
    if training_rows <= 0:
        return None
    return min(BALANCED_EPOCH_SAMPLES, training_rows)


def split_rows(rows: int, val_stride: int) -> tuple[int, int]:
    """(training, validation) candidates of ``rows``: every val_stride-th validates."""
    val = -(-rows // val_stride) if val_stride > 0 else 0
    return rows - val, val


def device_kind(device: str) -> str:
    """'cpu' or 'cuda' for an option value or a run's device; 'auto' looks for a GPU."""
    if device.startswith("cuda"):
        return "cuda"
    if device == "auto":
        return "cuda" if shutil.which("nvidia-smi") else "cpu"
    return "cpu"


def run_speed(events: list[ev.Event]) -> tuple[float, float] | None:
    """(training, validation) samples/s of a run's complete phases, None without both."""
    seconds = {"trn": 0.0, "val": 0.0}
    samples = {"trn": 0, "val": 0}
    started: dict[tuple[str, int], ev.PhaseStarted] = {}
    for e in events:
        if isinstance(e, ev.PhaseStarted):
            started[(e.phase, e.epoch)] = e
        elif isinstance(e, ev.BatchDone) and e.batch_ndx + 1 == e.batch_count:
            begun = started.get((e.phase, e.epoch))
            if begun is not None and begun.start_batch == 0 and e.active_s > 0:
                seconds[e.phase] = seconds.get(e.phase, 0.0) + e.active_s
                samples[e.phase] = samples.get(e.phase, 0) + begun.sample_count
    if not (seconds["trn"] and seconds["val"]):
        return None
    return samples["trn"] / seconds["trn"], samples["val"] / seconds["val"]


def measured_speed(runs_dir: str, kind: str, batch_size: int, host: str,
                   task: str = "nodule") -> Speed | None:
    """The newest run under ``runs_dir`` on ``host`` with this task, device kind and batch
    size that completed a training and a validation phase."""
    from luna_core.errors import LunaInputError
    from luna_core.run.eventfile import read_events, run_event_file
    from luna_core.run.runs import list_runs_with_events

    if not os.path.isdir(runs_dir):
        return None
    for info, head in reversed(list_runs_with_events(runs_dir)):
        started = next((e for e in head if isinstance(e, ev.RunStarted)), None)
        if (started is None or info.host != host or device_kind(started.device) != kind
                or started.options.get("batch_size") != batch_size
                or (started.options.get("task") or "nodule") != task):
            continue
        try:
            speed = run_speed(read_events(run_event_file(info.run_dir)))
        except LunaInputError:
            continue
        if speed is not None:
            return Speed(*speed, source=f"measured by {info.run_dir}")
    return None


def validations(epochs: int, val_every: int) -> int:
    """How many epochs of ``epochs`` validate: every ``val_every``-th and the last."""
    every = max(1, int(val_every or 1))
    return sum(1 for e in range(1, epochs + 1) if e % every == 0 or e == epochs)


def estimate(options, runs_dir: str, host: str, candidates_csv: str) -> Cost:
    """The cost of a run with these parsed options (luna_core.train.options)."""
    task = getattr(options, "task", "nodule") or "nodule"
    rows = count_rows(candidates_csv)
    trn_rows, val_rows = split_rows(rows, options.val_stride)
    trn = epoch_samples(trn_rows, bool(options.balanced), options.epoch_samples)
    val = val_rows
    if task == "seg":
        folder = os.path.dirname(candidates_csv)
        book = os.path.join(folder, "annotations_with_malignancy.csv")
        nodules = count_rows(book if os.path.isfile(book)
                             else os.path.join(folder, "annotations.csv"))
        val = split_rows(nodules, options.val_stride)[1] * SEG_SLICES_PER_NODULE
    if options.max_batches:
        trn = min(trn, options.max_batches * options.batch_size)
        val = min(val, options.max_batches * options.batch_size)
    kind = device_kind(options.device)
    speed = measured_speed(runs_dir, kind, options.batch_size, host, task)
    if speed is None:
        guess = (SEG_GUESSED_SPEED if task == "seg" else GUESSED_SPEED)[kind]
        what = f"--task {task} " if task != "nodule" else ""
        speed = Speed(*guess, source=f"guessed for a {'GPU' if kind == 'cuda' else 'CPU'}: "
                                     f"no {what}run of batch {options.batch_size} here yet")
    checks = validations(options.epochs, getattr(options, "val_every", 1))
    seconds = options.epochs * trn / speed.trn + checks * val / speed.val
    return Cost(options.epochs, trn, val, seconds, speed, checks)
