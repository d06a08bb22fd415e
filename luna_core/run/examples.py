"""A validation's candidates worth looking at, kept in the run folder: the nodules the model
scores lowest (misses first), the non-nodules it scores highest (false alarms) and the nodules
it scores best, each with its chunk as the model saw it.

File: ``RUN_DIR/examples/E003.zip`` (epoch 3), written atomically, the last ``--keep-examples``
epochs kept. A zip (stored, not deflated: deflating 24 chunks took 200 ms, 6 % of a demo
validation, storing them 8 ms) of ``examples.json`` (format, epoch, the chunk's
width, one object per example: kind, rank, sample index, series uid, centre xyz and irc, the
centre inside the chunk, voxel size, diameter, label, probability, loss, which chunk) and
``chunks.i16`` (the chunks, little-endian int16 HU, (index, row, col) each, one after the
other). Read here with the standard library only, so the cockpit and `attach` read it
without numpy; slices and the lung window are plain lists.
"""

from __future__ import annotations

import json
import os
import re
import sys
import zipfile
from array import array
from dataclasses import dataclass

from luna_core.errors import LunaInputError
from luna_core.fsutil import atomic_write

EXAMPLES_DIR = "examples"
FORMAT = 1
KINDS = ("misses", "false_alarms", "best")
KIND_TITLE = {"misses": "worst misses (nodules scored lowest)",
              "false_alarms": "false alarms (non-nodules scored highest)",
              "best": "best hits (nodules scored highest)"}
LUNG_WINDOW = (-1000.0, 400.0)          # HU shown black ... white
_NAME = re.compile(r"^E(\d+)\.zip$")


@dataclass(frozen=True)
class Example:
    kind: str
    rank: int                  # 1 = the worst miss, the highest false alarm, the best hit
    sample: int                # its place in the validation set
    series_uid: str
    center_xyz: tuple[float, float, float]
    center_irc: tuple[int, int, int]
    irc_in_chunk: tuple[int, int, int]
    vx_size_xyz: tuple[float, float, float]
    diameter_mm: float         # 0: no annotation matched the candidate
    is_nodule: bool
    probability: float
    loss: float
    chunk: int                 # which of the file's chunks

    @property
    def short_uid(self) -> str:
        return "…" + self.series_uid[-8:]


@dataclass
class ExampleSet:
    epoch: int
    width_irc: tuple[int, int, int]
    examples: list[Example]
    data: array                # every chunk's voxels, int16

    def of_kind(self, kind: str) -> list[Example]:
        return sorted((e for e in self.examples if e.kind == kind), key=lambda e: e.rank)

    def voxels(self, ex: Example) -> memoryview:
        n = self.width_irc[0] * self.width_irc[1] * self.width_irc[2]
        return memoryview(self.data)[ex.chunk * n:(ex.chunk + 1) * n]

    def axial(self, ex: Example, index: int | None = None) -> list[list[int]]:
        """The slice ``index`` (default: through the centre): rows x cols of HU."""
        d, h, w = self.width_irc
        i = ex.irc_in_chunk[0] if index is None else max(0, min(d - 1, index))
        v = self.voxels(ex)
        return [list(v[(i * h + r) * w:(i * h + r + 1) * w]) for r in range(h)]

    def coronal(self, ex: Example, row: int | None = None) -> list[list[int]]:
        """Through row ``row`` (default: the centre): index x cols, top = first slice."""
        d, h, w = self.width_irc
        r = ex.irc_in_chunk[1] if row is None else max(0, min(h - 1, row))
        v = self.voxels(ex)
        return [list(v[(i * h + r) * w:(i * h + r + 1) * w]) for i in range(d)]

    def sagittal(self, ex: Example, col: int | None = None) -> list[list[int]]:
        """Through column ``col`` (default: the centre): index x rows."""
        d, h, w = self.width_irc
        c = ex.irc_in_chunk[2] if col is None else max(0, min(w - 1, col))
        v = self.voxels(ex)
        return [[v[(i * h + r) * w + c] for r in range(h)] for i in range(d)]


def lung_window(hu: float) -> int:
    """0 (air, -1000 HU and below) ... 255 (400 HU and above)."""
    lo, hi = LUNG_WINDOW
    return int(round(255 * (min(hi, max(lo, hu)) - lo) / (hi - lo)))


def examples_dir(run_dir: str) -> str:
    return os.path.join(run_dir, EXAMPLES_DIR)


def examples_path(run_dir: str, epoch: int) -> str:
    return os.path.join(examples_dir(run_dir), f"E{epoch:03d}.zip")


def saved_epochs(run_dir: str) -> list[int]:
    """The epochs whose examples are in the run folder, oldest first."""
    try:
        names = os.listdir(examples_dir(run_dir))
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for m in map(_NAME.match, names) if m)


def write_examples(path: str, epoch: int, width_irc, examples: list[dict],
                   chunks: list[bytes]) -> None:
    """``examples``: Example's fields as a dict each; ``chunks``: each chunk's int16 bytes."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    meta = {"format": FORMAT, "epoch": epoch, "width_irc": list(width_irc),
            "examples": examples}
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        z.writestr("examples.json", json.dumps(meta))
        z.writestr("chunks.i16", b"".join(chunks))


def prune_examples(run_dir: str, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` epochs' files; returns what was removed."""
    removed = []
    for epoch in saved_epochs(run_dir)[:-keep] if keep > 0 else []:
        path = examples_path(run_dir, epoch)
        try:
            os.remove(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def read_examples(path: str) -> ExampleSet:
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("examples.json"))
            raw = z.read("chunks.i16")
    except FileNotFoundError:
        raise LunaInputError("no such examples file", path) from None
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise LunaInputError(f"not a luna-tui examples file ({exc})", path) from None
    if meta.get("format", 0) > FORMAT:
        raise LunaInputError(f"examples format {meta['format']} is newer than this luna-tui "
                             f"reads ({FORMAT})", path)
    data = array("h")
    data.frombytes(raw)
    if sys.byteorder != "little":
        data.byteswap()
    width = tuple(int(v) for v in meta["width_irc"])
    examples = [Example(**{**e, "center_xyz": tuple(e["center_xyz"]),
                           "center_irc": tuple(e["center_irc"]),
                           "irc_in_chunk": tuple(e["irc_in_chunk"]),
                           "vx_size_xyz": tuple(e["vx_size_xyz"])})
                for e in meta["examples"]]
    n = width[0] * width[1] * width[2]
    if any(e.chunk < 0 or (e.chunk + 1) * n > len(data) for e in examples):
        raise LunaInputError("examples file is cut short (a chunk is missing)", path)
    return ExampleSet(int(meta["epoch"]), width, examples, data)
