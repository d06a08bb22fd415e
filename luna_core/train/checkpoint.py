"""Checkpoints: atomic writes, weights_only loads, retention, and the run's RNG states.

A checkpoint is a dict of tensors and plain Python values only, so that
``torch.load(path, weights_only=True)`` reads it. It is written with
``luna_core.fsutil.atomic_write`` (a temporary file in the same directory, fsynced, renamed
over the final name): a process killed mid-write, or a full disk, leaves every earlier
checkpoint intact.

Names sort in the order they were written: ``e001-b000120.pt`` (epoch 1, 120 training
batches done), ``e001-end.pt`` (epoch 1 finished, validation included), and ``best.pt`` is a
copy of the epoch-end checkpoint with the lowest validation loss.
"""

from __future__ import annotations

import os
import random
import re

import numpy as np
import torch

from luna_core.fsutil import atomic_write, remove_orphaned_temps

CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINT_DIRNAME = "checkpoints"
BEST_NAME = "best.pt"
_NAME_RE = re.compile(r"^e\d{3,}-(b\d{6,}|end)\.pt$")


class CheckpointError(Exception):
    """A checkpoint could not be written or read; the message names the file."""


def checkpoint_name(epoch: int, batch_ndx: int, epoch_done: bool) -> str:
    return f"e{epoch:03d}-end.pt" if epoch_done else f"e{epoch:03d}-b{batch_ndx:06d}.pt"


class _RecordingWriter:
    """The file torch.save writes to, keeping the first OSError of a write: torch turns a
    failed write into a RuntimeError ("enforce fail at inline_container.cc ... unexpected
    pos") that no longer says why (a full disk)."""

    def __init__(self, f) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise


def atomic_torch_save(obj: dict, path: str) -> None:
    """torch.save through ``atomic_write``; CheckpointError naming ``path`` and why (the
    OS's words: "No space left on device") when it cannot be written."""
    try:
        with atomic_write(path) as f:
            writer = _RecordingWriter(f)
            try:
                torch.save(obj, writer)
            except RuntimeError as exc:
                if writer.error is not None:
                    raise writer.error from exc
                raise
    except OSError as exc:
        raise CheckpointError(f"{path}: could not write checkpoint: {exc.strerror or exc}") \
            from exc
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or ["unknown error"])[0]
        raise CheckpointError(f"{path}: could not write checkpoint: {first}") from exc


#: What a checkpoint of format 1 holds, and of what type (``trn_metrics``, ``val_loss`` and
#: ``best_val_loss`` may be None, so only their presence is not required).
REQUIRED_KEYS: dict[str, type | tuple[type, ...]] = {
    "model": dict, "optimizer": dict, "epoch": int, "batch_ndx": int, "epoch_done": bool,
    "total_samples": int, "rng": dict, "options": dict, "run": dict,
}


class CheckpointState(dict):
    """A loaded checkpoint: a key it lacks raises CheckpointError naming the file (not a
    KeyError from deep inside resuming)."""

    path: str = ""

    def __missing__(self, key):
        raise CheckpointError(f"{self.path}: not a complete luna-tui checkpoint (no {key!r})")


def check_checkpoint(state: dict, path: str) -> None:
    """CheckpointError naming ``path`` unless ``state`` holds every key of REQUIRED_KEYS, each
    of its type (what resuming reads)."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a complete luna-tui checkpoint (no "
                              f"{', '.join(missing)})")
    _check_types(state, path)


def _check_types(state: dict, path: str) -> None:
    for key, kind in REQUIRED_KEYS.items():
        value = state.get(key)
        if value is None:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CheckpointError(f"{path}: not a luna-tui checkpoint ({key} is "
                                  f"{type(value).__name__})")


def _why_unreadable(path: str, exc: Exception) -> str:
    """Why torch.load failed, in words (torch's own are a number for a file that is not a
    checkpoint at all, or a paragraph on weights_only)."""
    import zipfile

    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as err:
        return err.strerror or str(err)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":
        return "neither a zip nor a pickle: not a PyTorch file, or cut short"
    text = str(exc)
    if text.startswith("Weights only load failed"):
        return "it holds objects other than tensors and plain values, which it is not safe to load"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first if len(first) <= 160 else first[:159] + "…"


def load_checkpoint(path: str) -> CheckpointState:
    """Load with weights_only=True (never unpickles arbitrary objects). A key of
    REQUIRED_KEYS that is there but of another type is refused here; one that is missing
    raises CheckpointError naming the file when it is read (``check_checkpoint`` asks for
    them all at once)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: no such checkpoint") from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise CheckpointError(f"{path}: not a readable luna-tui checkpoint "
                              f"({_why_unreadable(path, exc)})") from exc
    if not isinstance(state, dict) or state.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a luna-tui checkpoint of format version "
                              f"{CHECKPOINT_FORMAT_VERSION}")
    _check_types(state, path)
    loaded = CheckpointState(state)
    loaded.path = path
    for key in ("run", "rng"):               # what resuming reads a key of, in turn
        if isinstance(loaded.get(key), dict):
            inner = CheckpointState(loaded[key])
            inner.path = path
            loaded[key] = inner
    return loaded


def checkpoint_dir(run_dir: str) -> str:
    """Where a run keeps its checkpoints: RUN_DIR/checkpoints."""
    return os.path.join(run_dir, CHECKPOINT_DIRNAME)


def run_dir_of(checkpoint_path: str) -> str | None:
    """The run directory a checkpoint file sits in (None: not in a checkpoints/ folder)."""
    folder = os.path.dirname(os.path.abspath(checkpoint_path))
    return os.path.dirname(folder) if os.path.basename(folder) == CHECKPOINT_DIRNAME else None


def list_checkpoints(checkpoint_dir: str) -> list[str]:
    """Checkpoints of a run, oldest first (best.pt excluded)."""
    names = [n for n in os.listdir(checkpoint_dir) if _NAME_RE.match(n)] \
        if os.path.isdir(checkpoint_dir) else []
    return [os.path.join(checkpoint_dir, n) for n in sorted(names)]


def resolve_resume_path(path: str) -> str:
    """A checkpoint file, or a run directory meaning its newest checkpoint."""
    if os.path.isdir(path):
        candidates = list_checkpoints(checkpoint_dir(path))
        if not candidates and os.path.basename(os.path.normpath(path)) == CHECKPOINT_DIRNAME:
            candidates = list_checkpoints(path)
        if not candidates:
            raise CheckpointError(f"{path}: no checkpoints in this run directory")
        return candidates[-1]
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    return path


def prune_checkpoints(checkpoint_dir: str, keep: int) -> None:
    for stale in list_checkpoints(checkpoint_dir)[:-keep]:
        try:
            os.unlink(stale)
        except OSError:
            pass
    remove_orphaned_temps(checkpoint_dir)  # left behind by a killed writer


def capture_rng_state() -> dict:
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss),
                  "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["gauss"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
