"""`luna-tui check`: before a long run, is the data all there, and what will the first epoch
cost? Read only, a few seconds: CSVs, subsets and series found against listed, every header
and `.raw` size (each bad one named), the candidates and nodules a run will use, the chunk
store's state and size, free disk, whether the store fits in memory, the device and the loader
workers to use. Exit 0 when a run can start, 2 when it cannot (the reason first)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from luna_core.errors import LunaInputError

from .candidates import csv_paths, get_candidate_info_list, series_on_disk, split_indices
from .chunkstore import ChunkStore, series_centres, store_bytes, store_dir
from .csvread import read_annotations
from .ct import CHUNK_WIDTH_IRC, check_voxel_file, find_mhd, read_mhd_header
from .default_dirs import default_num_workers

EXIT_OK, EXIT_CANNOT = 0, 2


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)     # each stops a run

    def say(self, line: str) -> None:
        self.lines.append(line)

    def text(self) -> str:
        head = ([f"cannot start a run: {self.problems[0]}"] if self.problems
                else ["a run can start"])
        extra = [f"  also: {p}" for p in self.problems[1:6]]
        more = len(self.problems) - 6
        if more > 0:
            extra.append(f"  and {more} more problem(s)")
        return "\n".join(head + extra + [""] + self.lines) + "\n"


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def _free_bytes(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU)"
    except Exception:  # noqa: BLE001 - no torch or no driver: the CPU trains
        pass
    return "cpu (no CUDA device visible)"


def check(data_dir, cache_dir, candidates_file=None, val_stride: int = 10,
          runs_dir: str | None = None, batch_size: int = 32, task: str = "nodule") -> Report:
    report = Report()
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    try:
        _ann, cand = csv_paths(data_dir, candidates_file)
        listed = get_candidate_info_list(data_dir, candidates_file, require_on_disk=False)
    except LunaInputError as exc:
        report.problems.append(str(exc))
        return report
    subsets = sorted(p.name for p in data_dir.glob("subset*") if p.is_dir())
    listed_uids = {c.series_uid for c in listed}
    on_disk = series_on_disk(data_dir)
    found = listed_uids & on_disk
    report.say(f"CSVs      {cand} ({len(listed):,} candidates)")
    report.say(f"subsets   {len(subsets)} found: {' '.join(subsets) or 'none'}")
    report.say(f"series    {len(found):,} of the {len(listed_uids):,} listed are on disk"
               + (f"; {len(on_disk - listed_uids)} on disk are not listed"
                  if on_disk - listed_uids else ""))
    if not found:
        report.problems.append(f"none of the series listed in {cand.name} is under "
                               f"{data_dir}/subset*/")
        return report
    _check_headers(report, data_dir, found)
    used = [c for c in listed if c.series_uid in found]
    if task == "seg":
        _check_seg(report, data_dir, cache_dir, found, val_stride, runs_dir, batch_size,
                   str(cand))
        _check_masks(report, data_dir, found)
    else:
        _check_split(report, used, val_stride)
        if runs_dir is not None:
            _check_cost(report, str(cand), val_stride, runs_dir, batch_size)
        _check_store(report, data_dir, cache_dir, cand, used)
    report.say(f"device    {_device()}")
    cores = os.cpu_count() or 1
    report.say(f"workers   --num-workers {default_num_workers()} (the default: one a core, at "
               f"most 8; {cores} cores here; a worker reads ~3,000 chunks/s from storage, "
               "~30,000 from memory)")
    return report


def _check_headers(report: Report, data_dir: Path, found: set[str]) -> None:
    """Every series' header read and its .raw's size matched (a bad one named)."""
    bad = []
    for uid in sorted(found):
        try:
            check_source(data_dir, uid)
        except LunaInputError as exc:
            bad.append(str(exc))
    for problem in bad:
        report.problems.append(problem)
    report.say(f"headers   {len(found) - len(bad):,} read, .raw sizes match"
               + (f"; {len(bad)} bad (named above)" if bad else ""))


def _check_split(report: Report, used: list, val_stride: int) -> None:
    """The training and validation samples (and nodules) the split gives."""
    n = len(used)
    val = split_indices(n, val_stride, True)
    trn = split_indices(n, val_stride, False)
    nod = [c.is_nodule for c in used]
    trn_nod = sum(nod[i] for i in trn.tolist())
    val_nod = sum(nod[i] for i in val.tolist())
    report.say(f"samples   {len(trn):,} training ({trn_nod:,} nodules), {len(val):,} "
               f"validation ({val_nod:,} nodules), val_stride {val_stride}")
    if not len(trn) or not len(val):
        report.problems.append(f"no {'training' if not len(trn) else 'validation'} "
                               f"candidates with val_stride {val_stride}")
    if not val_nod:
        report.say("          no nodule in validation: recall will mean nothing")


def _check_cost(report: Report, cand: str, val_stride: int, runs_dir: str,
                batch_size: int, device: str = "auto") -> None:
    """What an epoch costs here, plain and balanced (luna_core.run.cost)."""
    from argparse import Namespace

    from luna_core.run.cost import estimate
    from luna_core.run.estimate import format_duration
    from luna_core.run.runs import this_host

    def cost(balanced: int):
        options = Namespace(epochs=1, val_stride=val_stride, balanced=balanced,
                            epoch_samples=None, max_batches=0, batch_size=batch_size,
                            device=device)
        return estimate(options, runs_dir, this_host(), cand)

    plain, balanced = cost(0), cost(1)
    report.say(f"cost      an epoch {plain.line()}")
    report.say(f"          with --balanced (the book's {balanced.trn_samples:,} samples an "
               f"epoch): about {format_duration(balanced.seconds)}")


def _check_seg(report: Report, data_dir: Path, cache_dir: Path, found: set[str],
               val_stride: int, runs_dir: str | None, batch_size: int, cand: str) -> None:
    """--task seg: its split (by series), an epoch's cost, and its cache (the training
    windows, the validation volumes): what is cut, what it will take."""
    from argparse import Namespace

    from .segdsets import SegTrainingDataset, nodules_file
    from .segstore import WINDOW_STORE_IRC, SegVolumeStore

    nodules = read_annotations(nodules_file(data_dir))
    uids = sorted(found)
    val = uids[::val_stride] if val_stride > 0 else uids
    trn = [u for u in uids if u not in set(val)] if val_stride > 0 else uids
    count = {name: sum(len(nodules.get(u, ())) for u in part)
             for name, part in (("trn", trn), ("val", val))}
    report.say(f"samples   {count['trn']:,} training nodules in {len(trn):,} series, "
               f"{count['val']:,} validation nodules in {len(val):,} series (split by "
               f"series, val_stride {val_stride})")
    if not count["trn"] or not count["val"]:
        report.problems.append(f"no {'training' if not count['trn'] else 'validation'} "
                               f"nodule with val_stride {val_stride}")
    if runs_dir is not None:
        from luna_core.run.cost import estimate
        from luna_core.run.runs import this_host

        options = Namespace(task="seg", epochs=1, val_stride=val_stride, balanced=0,
                            epoch_samples=300_000, max_batches=0, batch_size=batch_size,
                            device="auto", val_every=1)
        report.say(f"cost      an epoch {estimate(options, runs_dir, this_host(), cand).line()}")
    windows = SegTrainingDataset(data_dir, cache_dir, trn, nodules)
    ready = sum(windows.store.state(u, windows._centres(s)) == "ready"
                for s, u in enumerate(windows.series_uids))
    volumes = SegVolumeStore(data_dir, cache_dir)
    vol_ready = sum(volumes.state(u, [n[:3] for n in nodules.get(u, ())]) == "ready"
                    for u in val)
    voxels = 0
    for u in val:
        dims = read_mhd_header(find_mhd(data_dir, u)).get("DimSize", "0 0 0").split()
        voxels += int(np.prod([int(d) for d in dims])) if len(dims) == 3 else 0
    need = len(windows) * 2 * int(np.prod(WINDOW_STORE_IRC)) + 3 * voxels
    report.say(f"store     {windows.store.dir}: {ready:,} of {len(windows.series_uids):,} "
               f"series cut; {volumes.dir}: {vol_ready:,} of {len(val):,} cut")
    report.say(f"          {_gb(need)} when cut (windows of {len(windows):,} nodules, "
               f"{len(val):,} validation volumes); {_gb(_free_bytes(cache_dir))} free")


def _check_store(report: Report, data_dir: Path, cache_dir: Path, cand, used: list) -> None:
    """The chunk store: what is built, what it will take, whether it fits (disk, memory)."""
    store = ChunkStore(data_dir, cache_dir, CHUNK_WIDTH_IRC, cand)
    states: dict[str, int] = {}
    centres = series_centres(used)
    for uid in sorted(centres):
        try:
            state = store.state(uid, centres[uid])
        except LunaInputError:
            state = "unreadable"         # its bad header is named among the problems
        states[state] = states.get(state, 0) + 1
    chunks = sum(len(c) for c in centres.values())
    full = chunks * store.chunk_nbytes
    have = store_bytes(cache_dir)
    free = _free_bytes(cache_dir)
    report.say(f"store     {store_dir(cache_dir)}: {states.get('ready', 0):,} series ready, "
               f"{states.get('missing', 0):,} to build, "
               f"{states.get('stale', 0) + states.get('truncated', 0):,} stale"
               + (f", {states['unreadable']:,} with a bad header" if 'unreadable' in states
                  else ""))
    report.say(f"          {chunks:,} chunks = {_gb(full)} when built; {_gb(have)} on disk "
               f"now, {_gb(free)} free")
    if full - have > free:
        report.problems.append(f"the chunk store needs {_gb(full - have)} more but "
                               f"{cache_dir} has {_gb(free)} free")
    try:
        import psutil

        ram = psutil.virtual_memory().total
        fits = ("fits in memory: after the first epoch, reads come from the page cache"
                if full < 0.7 * ram else
                "is larger than memory: every epoch reads from storage (one chunk a sample)")
        report.say(f"          the store ({_gb(full)}) {fits} (RAM {_gb(ram)})")
    except ImportError:
        pass


#: A nodule's mask this many times its annotated sphere's volume is called grown.
GROWN_MASK = 8


def _check_masks(report: Report, data_dir: Path, found: set[str], shown: int = 5) -> None:
    """--task seg: the nodules whose mask (the book's rule, luna_core.data.masks) is empty, as
    segmentation would learn nothing from them: reads every CT that has a nodule."""
    from .ct import Ct
    from .geometry import xyz2irc_array
    from .masks import mask_voxels
    from .segdsets import nodules_file

    path = nodules_file(data_dir)
    nodules = read_annotations(path)
    series = sorted(u for u in nodules if u in found)
    empty: list[str] = []
    grown: list[tuple[float, str]] = []            # (mask / sphere, where), the worst first
    total = big = 0
    for uid in series:
        ct = Ct.read(find_mhd(data_dir, uid), uid)
        rows = np.asarray(nodules[uid], dtype=np.float64)
        irc = xyz2irc_array(rows[:, :3], ct.origin_xyz, ct.vx_size_xyz, ct.direction_a)
        voxel_mm3 = float(np.prod(ct.vx_size_xyz))
        for k, voxels in enumerate(mask_voxels(ct.hu_a, irc)):
            where = f"{uid} ({', '.join(f'{v:.1f}' for v in rows[k, :3])})"
            total += voxels
            sphere = np.pi / 6 * rows[k, 3] ** 3 / voxel_mm3
            if voxels == 0:
                empty.append(where)
            elif sphere > 0 and voxels > GROWN_MASK * sphere:
                big += voxels
                grown.append((voxels / sphere, where))
    count = sum(len(nodules[u]) for u in series)
    report.say(f"masks     {count:,} nodules of {path.name} in {len(series):,} series on disk: "
               + (f"{len(empty):,} give an empty mask (nothing above -700 HU round the "
                  "centre; segmentation learns nothing from them)" if empty
                  else "every one gives a mask"))
    for line in empty[:shown]:
        report.say(f"          empty: {line}")
    if len(empty) > shown:
        report.say(f"          ... and {len(empty) - shown:,} more")
    if grown:
        report.say(f"          {len(grown):,} masks are over {GROWN_MASK}x their nodule's "
                   f"sphere (the box grew into touching tissue): {big / max(total, 1):.0%} "
                   "of all mask voxels, so they weigh most in the pixel recall")
        for ratio, where in sorted(grown, reverse=True)[:shown]:
            report.say(f"          {ratio:.0f}x: {where}")


def check_sources(datasets) -> int:
    """Before a run makes its folder: every series whose chunk store is not built yet has a
    readable header and a ``.raw`` of the size it says (a truncated one would otherwise fail
    at the first batch that reads it, with a run folder already made). LunaInputError names
    the first bad file; returns how many series were checked (a ready store needs no
    source)."""
    checked: set[str] = set()
    for ds in datasets:
        for uid in ds.series_uids:
            if uid in checked:
                continue
            checked.add(uid)
            if ds.store.state(uid, ds.series_centres(uid)) != "ready":
                check_source(ds.data_dir, uid)
    return len(checked)


def check_source(data_dir, series_uid: str) -> None:
    """A series' header reads and its ``.raw`` has the size it says; LunaInputError names
    the file that does not."""
    mhd = find_mhd(data_dir, series_uid)
    check_voxel_file(mhd, read_mhd_header(mhd))


def run_check(data_dir: str, cache_dir: str, candidates_file: str | None = None,
              val_stride: int = 10, stream=None, runs_dir: str | None = None,
              batch_size: int = 32, task: str = "nodule") -> int:
    import sys

    try:
        report = check(data_dir, cache_dir, candidates_file, val_stride, runs_dir, batch_size,
                       task)
    except LunaInputError as exc:       # whatever the data holds: one line, never a traceback
        report = Report(problems=[str(exc)])
    (stream or sys.stdout).write(report.text())
    return EXIT_CANNOT if report.problems else EXIT_OK
