"""A validation's candidates worth looking at, kept in the run folder: the nodules the model
misses (scored 0.5 or less, lowest first), the non-nodules it calls nodules (false alarms,
highest first) and the nodules it finds best, each with its chunk as the model saw it.

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

import dataclasses
import json
import os
import re
import sys
import zipfile
import zlib
from array import array
from dataclasses import dataclass

from luna_core.errors import LunaInputError
from luna_core.fsutil import atomic_write

EXAMPLES_DIR = "examples"
FORMAT = 2                   # 2: the task and each example's pixels; 1 (the classifier's) read
KINDS = ("misses", "false_alarms", "best")
#: --task seg's: the validation slices with the most missed and most falsely marked pixels.
SEG_KINDS = ("missed_pixels", "false_pixels")
#: --task malignancy's: malignant nodules graded benign (0.5 or less, lowest first), benign
#: ones graded malignant (highest first), the malignant ones graded best; ``is_nodule`` is
#: then the label these are about: malignant.
MAL_KINDS = ("missed_malignant", "false_malignant", "best_malignant")
KINDS_OF_TASK = {"nodule": KINDS, "seg": SEG_KINDS, "malignancy": MAL_KINDS}
#: A seg example's chunk: (3, H, W) planes: the slice's HU, its label, the model's call (0/1).
SEG_PLANES = 3
#: Its pixels' colours over the grey slice (distinct for the common colour blindnesses, and in
#: half-blocks): nodule pixels found, missed, and pixels falsely marked.
FOUND_RGB, MISSED_RGB, FALSE_RGB = (40, 200, 120), (230, 40, 170), (255, 176, 0)
#: A candidate is called a nodule above it (as recall and precision count, train.metrics).
EXAMPLE_THRESHOLD = 0.5
KIND_TITLE = {"misses": "worst misses (nodules scored 0.5 or less)",
              "false_alarms": "false alarms (non-nodules scored above 0.5)",
              "best": "best hits (nodules scored above 0.5)",
              "missed_pixels": "most nodule pixels missed",
              "false_pixels": "most pixels falsely marked",
              "missed_malignant": "malignant nodules graded benign (0.5 or less)",
              "false_malignant": "benign nodules graded malignant (above 0.5)",
              "best_malignant": "malignant nodules graded best"}
#: What an empty kind means (the examples view and `luna-tui examples` say it).
KIND_NONE = {"misses": "none: every nodule scored above 0.5",
             "false_alarms": "none: no non-nodule scored above 0.5",
             "best": "none: no nodule scored above 0.5",
             "missed_pixels": "none: no validation slice missed a nodule pixel",
             "false_pixels": "none: no validation slice has a falsely marked pixel",
             "missed_malignant": "none: every malignant nodule graded above 0.5",
             "false_malignant": "none: no benign nodule graded above 0.5",
             "best_malignant": "none: no malignant nodule graded above 0.5"}
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
    is_nodule: bool            # the label (malignancy: malignant)
    probability: float         # seg: the slice's pixel recall (0 when it has no label)
    loss: float
    chunk: int                 # which of the file's chunks
    pixels: tuple[int, int, int] | None = None   # seg: (TP, FN, FP) pixels of the slice

    @property
    def short_uid(self) -> str:
        return "…" + self.series_uid[-8:]


@dataclass
class ExampleSet:
    epoch: int
    width_irc: tuple[int, int, int]
    examples: list[Example]
    data: array                # every chunk's voxels, int16
    task: str = "nodule"       # the run's --task: which kinds, how a chunk is drawn

    @property
    def kinds(self) -> tuple[str, ...]:
        return KINDS_OF_TASK.get(self.task, KINDS)

    def plane(self, ex: Example, k: int) -> list[list[int]]:
        """Plane ``k`` of the example's chunk (a seg example's 0: HU, 1: label, 2: call)."""
        return self.axial(ex, k)

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
    except OSError as exc:
        raise LunaInputError(f"cannot read the examples folder ({exc.strerror or exc})",
                             examples_dir(run_dir)) from None
    return sorted(int(m.group(1)) for m in map(_NAME.match, names) if m)


def write_examples(path: str, epoch: int, width_irc, examples: list[dict],
                   chunks: list[bytes], task: str = "nodule") -> None:
    """``examples``: Example's fields as a dict each (``pixels`` optional); ``chunks``: each
    chunk's int16 bytes."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    meta = {"format": FORMAT, "epoch": epoch, "width_irc": list(width_irc), "task": task,
            "examples": [{"pixels": None, **e} for e in examples]}
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


#: examples.json's keys, and each example's (format 2; format 1 without task and pixels): no
#: more, no fewer
META_KEYS = frozenset({"format", "epoch", "width_irc", "examples", "task"})
EXAMPLE_KEYS = frozenset(f.name for f in dataclasses.fields(Example))
V1_META_KEYS, V1_EXAMPLE_KEYS = META_KEYS - {"task"}, EXAMPLE_KEYS - {"pixels"}
MAX_WIDTH = 1024                       # voxels along a chunk's axis: more is not a chunk


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _triple(v, test) -> bool:
    return isinstance(v, list) and len(v) == 3 and all(test(x) for x in v)


def _example(e, k: int, width: tuple[int, int, int], chunks: int, version: int = FORMAT,
             kinds=KINDS) -> Example:
    """Example ``k`` of examples.json, or ValueError saying what is wrong with it."""
    if not isinstance(e, dict):
        raise ValueError(f"example {k} is a {type(e).__name__}, not an object")
    keys = e.keys()
    want = EXAMPLE_KEYS if version >= 2 else V1_EXAMPLE_KEYS
    if keys != want:
        extra, missing = sorted(keys - want), sorted(want - keys)
        raise ValueError(f"example {k} " + "; ".join(
            ([f"lacks {', '.join(missing)}"] if missing else [])
            + ([f"has unknown {', '.join(map(str, extra))}"] if extra else [])))
    checks = {
        "kind": lambda v: v in kinds, "rank": lambda v: _is_int(v) and v >= 1,
        "sample": lambda v: _is_int(v) and v >= 0,
        "series_uid": lambda v: isinstance(v, str) and 0 < len(v) <= 128,
        "center_xyz": lambda v: _triple(v, _is_number),
        "center_irc": lambda v: _triple(v, _is_int),
        "irc_in_chunk": lambda v: _triple(v, _is_int) and all(
            0 <= x < w for x, w in zip(v, width)),
        "vx_size_xyz": lambda v: _triple(v, _is_number) and all(
            0 < x < 1e6 for x in v),
        "diameter_mm": lambda v: _is_number(v) and 0 <= v < 1e6,
        "is_nodule": lambda v: isinstance(v, bool),
        "probability": _is_number, "loss": _is_number,
        "chunk": lambda v: _is_int(v) and v >= 0,
        "pixels": lambda v: v is None or (_triple(v, _is_int) and min(v) >= 0),
    }
    if version < 2:
        del checks["pixels"]
    for name, ok in checks.items():
        if not ok(e[name]):
            text = repr(e[name])
            raise ValueError(f"example {k}: bad {name} "
                             f"{text if len(text) <= 40 else text[:39] + '…'}")
    if e["chunk"] >= chunks:
        raise ValueError(f"example {k}'s chunk {e['chunk']} is not there: chunks.i16 holds "
                         f"{chunks} (cut short?)")
    pixels = e.get("pixels")
    return Example(**{**e, "center_xyz": tuple(e["center_xyz"]),
                      "center_irc": tuple(e["center_irc"]),
                      "irc_in_chunk": tuple(e["irc_in_chunk"]),
                      "vx_size_xyz": tuple(e["vx_size_xyz"]),
                      "pixels": None if pixels is None else tuple(pixels)})


def read_examples(path: str) -> ExampleSet:
    """The examples file ``path``; LunaInputError (one line naming it) when it is missing,
    not a zip, cut short, or not of the shape ``write_examples`` gives."""
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("examples.json"))
            raw = z.read("chunks.i16")
    except FileNotFoundError:
        raise LunaInputError("no such examples file", path) from None
    except IsADirectoryError:
        raise LunaInputError("a folder, not an examples file", path) from None
    except OSError as exc:
        raise LunaInputError(f"cannot read the examples file ({exc.strerror or exc})",
                             path) from None
    # a zip is read lazily: a cut or garbled one fails as any of these
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, ValueError, EOFError,
            RuntimeError, NotImplementedError, zlib.error) as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LunaInputError(f"not a luna-tui examples file ({why})", path) from None
    try:
        return _examples(meta, raw, path)
    except ValueError as exc:
        raise LunaInputError(f"not a luna-tui examples file ({exc})", path) from None


def _examples(meta, raw: bytes, path: str) -> ExampleSet:
    if not isinstance(meta, dict):
        raise ValueError(f"examples.json is a {type(meta).__name__}, not an object")
    version = meta.get("format")
    if not _is_int(version) or version < 1:
        raise ValueError(f"no format version (format is {version!r:.20})")
    if version > FORMAT:
        raise LunaInputError(f"examples format {version} is newer than this luna-tui "
                             f"reads ({FORMAT})", path)
    want = META_KEYS if version >= 2 else V1_META_KEYS
    if meta.keys() != want:
        extra, missing = sorted(meta.keys() - want), sorted(want - meta.keys())
        raise ValueError("examples.json " + "; ".join(
            ([f"lacks {', '.join(missing)}"] if missing else [])
            + ([f"has unknown {', '.join(map(str, extra))}"] if extra else [])))
    if not _is_int(meta["epoch"]) or meta["epoch"] < 0:
        raise ValueError(f"bad epoch {meta['epoch']!r:.20}")
    width_irc = meta["width_irc"]
    if not _triple(width_irc, lambda v: _is_int(v) and 0 < v <= MAX_WIDTH):
        raise ValueError(f"bad width_irc {width_irc!r:.40}")
    width = (width_irc[0], width_irc[1], width_irc[2])
    if len(raw) % 2:
        raise ValueError(f"chunks.i16 holds {len(raw)} bytes: not whole int16 voxels")
    n = width[0] * width[1] * width[2]
    data = array("h")
    data.frombytes(raw)
    if len(data) % n:
        raise ValueError(f"chunks.i16 holds {len(data)} voxels: not whole chunks of "
                         f"{'x'.join(map(str, width))}")
    if sys.byteorder != "little":
        data.byteswap()
    if not isinstance(meta["examples"], list):
        raise ValueError(f"examples is a {type(meta['examples']).__name__}, not a list")
    task = meta.get("task", "nodule")
    if task not in KINDS_OF_TASK:
        raise ValueError(f"unknown task {task!r:.20}")
    if task == "seg" and width[0] != SEG_PLANES:
        raise ValueError(f"a seg example holds {SEG_PLANES} planes, not {width[0]}")
    examples = [_example(e, k, width, len(data) // n, version, KINDS_OF_TASK[task])
                for k, e in enumerate(meta["examples"], 1)]
    return ExampleSet(meta["epoch"], width, examples, data, task)
