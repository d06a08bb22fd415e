"""The demo's story (`luna-tui demo`): the book's ch. 11 lesson and ch. 12 remedies on the
demo set, as queue entries, sized for a laptop CPU (about 10 minutes of training on 2 cores).

- **plain**: the candidate list as it comes (1 nodule in 15): the loss falls while the model
  calls everything a non-nodule (recall 0 at 0.5, NODULES MISSED): ch. 11's lesson;
- **balanced**: one nodule after every non-nodule (ch. 12): it finds them;
- **balanced-augmented**: and the book's augmentation (ch. 12): the gap between training and
  validation narrows.

What differs from the book's defaults, for a CPU and minutes instead of a GPU and hours
(``DEMO_OPTIONS``): Adam (beta1 0.9) instead of SGD with momentum 0.99, which does not leave
its plateau in a few thousand samples; its learning rate warmed up over the first 2,000
samples (``--lr-warmup``: with the book's weight init the untrained model's two logits lie 5
to 25 apart, and Adam's full-size first steps left the balanced run on its plateau past its
6th epoch on some seeds and CPUs); batches of 8 (four times the book's updates per sample);
epochs of 2,000 samples (the balanced run 6 of them: 12,000 samples); every 8th scan of the
128 in validation (16 scans, about 90 nodules, so that the CPM's interval is narrow enough
to tell the runs apart); the loader in the training process (both cores train). The real
data keeps the book's defaults (benchmarks/RESULTS.md has the trials). Standard library
only."""

from __future__ import annotations

#: Options every run of the story shares (the data folders are added by the command).
DEMO_OPTIONS = ["--optimizer", "adam", "--momentum", "0.9", "--lr", "0.001",
                "--lr-warmup", "2000", "--batch-size", "8", "--split", "series",
                "--val-stride", "8", "--num-workers", "0", "--threads", "0"]

#: Training samples an epoch (the plain run's are half: its lesson needs no more).
EPOCH_SAMPLES = "2000"

#: The story: (comment, its own options), in the order the queue runs them.
DEMO_RUNS = [
    ("demo-plain", ["--epochs", "2", "--epoch-samples", "1000"]),
    ("demo-balanced", ["--epochs", "6", "--balanced"]),
    ("demo-balanced-augmented", ["--epochs", "3", "--balanced", "--augmented"]),
]


def demo_entries(data_dir: str, cache_dir: str) -> list[list[str]]:
    """Each run's argv (for `luna-tui --headless ... --runs-dir R`), in the story's order."""
    folders = ["--data-dir", data_dir, "--cache-dir", cache_dir]
    every = ["--epoch-samples", EPOCH_SAMPLES]
    return [[comment, *own, *DEMO_OPTIONS, *(every if "--epoch-samples" not in own else []),
             *folders] for comment, own in DEMO_RUNS]
