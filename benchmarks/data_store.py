"""The chunk store against the old per-CT memory map and a bare positioned read: disk-bound, warm,
through a DataLoader, and the startup to the first batch on a LUNA-sized candidate list.

    .venv/bin/python benchmarks/data_store.py [--work DIR] [--json FILE] [--smoke]
                                              [--skip disk warm loader startup]

Data: a synthetic LUNA16-format set (default 36 series of 512 x 512 x 150, ~20,000 candidates)
written by ``write_synthetic_dataset`` in two processes, its chunk store (``prepare_store``),
and the removed per-CT cache re-created here: each CT once as an int16 ``.npy``, read the old
way (``np.load(mmap_mode="r")``, a slice, ``np.ascontiguousarray(...).astype(float32)``); all
reused from ``--work DIR`` when the options match. Arms, in LunaDataset's candidate order:
``store`` / ``store_int16`` (``LunaDataset.__getitem__``, float32 / int16 samples),
``store_batch`` (``LunaDataset.__getitems__`` of 32, int16, where luna_core has it), ``per_ct``
(the old path), ``bare`` (one ``os.pread`` of exactly the chunk from the store file,
``POSIX_FADV_RANDOM``, no conversion: the limit) and ``bare_reuse`` (``os.preadv`` into one
reused buffer: the floor, for information).

1. disk: each arm in a fresh child process: it sets up (reads one chunk of every series),
   the page cache is dropped (``sync``, ``drop_caches``), it is moved into a v1 memory cgroup
   whose limit is what the cgroup holds then (v1 leaves the child's own pages charged where
   they were) plus ``--cache-room`` (0.4) x the store's bytes and 64 MB for the arm's own
   allocations, and it reads a seeded random order over all candidates, up to ``--chunks`` or
   ``--arm-s`` s, with the work folder's disk at ``read_ahead_kb`` 128 (put back after).
   ``--rounds`` rounds, every other one reversed; chunks/s (median), MB read from storage per
   chunk (``read_bytes`` of /proc/self/io), CPU, RSS, the cgroup's peak. Targets: store >= 0.8x
   bare and <= 0.2 MB/chunk. Skipped with a message where not root, or no v1 memory
   controller, drop_caches or read_ahead_kb. Note: synthetic candidates cluster in the lungs,
   so the per-CT windows touch only ~1.1 GB of the 2.8 GB .npy cache, less than the default
   room, and ``per_ct`` mostly hits the page cache (on full LUNA16 that working set is far
   larger than RAM); ``--cache-room 0.15`` leaves about half of it.
2. warm: the same arms in this process, every file read once first; median of ``--trials``
   interleaved trials of >= ``--trial-s`` s. Target: store >= 0.8x bare.
3. loader: one warm epoch over all candidates with batch 32 and 2 workers, sampler a random
   order: ``DataLoader`` with its default collation (float32, int16; the old per-CT path for
   contrast) and the trainer's ``luna_core.data.loader.make_loader`` (+ pin_memory with CUDA).
   Samples/s after the first batch; each worker's VmRSS after 10% of the epoch and at its end.
   Target: the store's workers stay flat (growth <= max(32 MB, 1% of the store)).
4. startup: 888 tiny CTs (32 x 64 x 64) and 551,065 candidate rows (1 in 408 class 1), stores
   of width (4, 8, 8): full-width ones would be 81 GB, and nothing timed depends on the width
   (the CSV parse, grouping the centres, the headers of the series a batch touches). A fresh
   process, timed from before it starts to the first batch of ``make_loader(LunaDataset(int16),
   EpochSampler, 32, 2)``, training and validation sets built (val_stride 10). Target < 10 s.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import mmap
import multiprocessing
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from _common import machine_info, print_footer, print_machine, print_table, summary, write_json
from torch.utils.data import DataLoader, Dataset

from luna_core.data.candidates import clear_cache, get_candidate_info_list
from luna_core.data.chunkstore import prepare_store, series_centres, store_bytes, store_dir
from luna_core.data.ct import CHUNK_WIDTH_IRC, Ct, cut_chunk, find_mhd, window_starts_array
from luna_core.data.dsets import LunaDataset
from luna_core.data.geometry import xyz2irc_array

TARGET_RATIO, TARGET_MB, TARGET_STARTUP_S = 0.8, 0.2, 10.0
LUNA_SERIES, LUNA_ROWS, LUNA_POS_EVERY = 888, 551_065, 408
STARTUP_WIDTH, STARTUP_SHAPE = (4, 8, 8), (32, 64, 64)
ANON_ROOM = 64 << 20                 # and room for the arm's own allocations (batch buffers)
ARMS = {"store": "LunaDataset[i], store, float32", "store_int16": "LunaDataset[i], store, int16",
        "store_batch": "LunaDataset.__getitems__(32), int16", "per_ct": "old per-CT .npy memmap"
        ", float32", "bare": "bare os.pread of the chunk (limit)", "bare_reuse": "bare preadv "
        "into one buffer (floor)"}
if not hasattr(LunaDataset, "__getitems__"):
    del ARMS["store_batch"]
CG_ROOT = Path("/sys/fs/cgroup/memory")
_NOT_NODULE, _NODULE = torch.tensor([1, 0]), torch.tensor([0, 1])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", help="folder for the data, kept and reused (default: a temporary "
                   "folder under /var/tmp, deleted at the end)")
    p.add_argument("--series", type=int, default=36)
    p.add_argument("--size-xy", type=int, default=512)
    p.add_argument("--slices", type=int, nargs=2, default=(150, 150), metavar=("MIN", "MAX"))
    p.add_argument("--negatives", type=int, default=550, help="class-0 candidates per series")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunks", type=int, default=10_000, help="most chunks per disk-bound arm")
    p.add_argument("--arm-s", type=float, default=20.0, help="most seconds per disk-bound arm")
    p.add_argument("--rounds", type=int, default=2, help="runs of each disk-bound arm")
    p.add_argument("--cache-room", type=float, default=0.4, help="page cache the cgroup leaves, "
                   "as a fraction of the store's bytes")
    p.add_argument("--trials", type=int, default=3, help="warm trials per arm")
    p.add_argument("--trial-s", type=float, default=3.0, help="seconds per warm trial")
    p.add_argument("--startup-series", type=int, default=LUNA_SERIES)
    p.add_argument("--startup-rows", type=int, default=LUNA_ROWS)
    p.add_argument("--skip", nargs="*", default=[], choices=["disk", "warm", "loader", "startup"])
    p.add_argument("--smoke", action="store_true", help="tiny everything (well under a minute)")
    p.add_argument("--json", help="also write the results as JSON here")
    p.add_argument("--arm", help=argparse.SUPPRESS)             # child: one disk-bound arm
    p.add_argument("--startup-child", help=argparse.SUPPRESS)   # child: the startup timing
    args = p.parse_args(argv)
    if args.smoke:
        args.series, args.size_xy, args.slices, args.negatives = 3, 64, (40, 40), 100
        args.arm_s, args.trial_s, args.startup_series, args.startup_rows = 2.0, 0.3, 30, 20_000
        args.rounds, args.trials = 1, 2
    return args


# --------------------------------------------------------------------------- procfs, sysfs

def rss_mb(pid="self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    return 0


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def readahead_file(folder: Path) -> Path:
    dev = os.stat(folder).st_dev
    node = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not node.exists():
        raise OSError(f"{folder} is not on a block device ({os.major(dev)}:{os.minor(dev)})")
    node = node.resolve()
    return (node.parent if (node / "partition").exists() else node) / "queue/read_ahead_kb"


class MemCgroup:
    """A v1 memory cgroup of our own."""

    def __init__(self, name: str):
        if os.geteuid() != 0:
            raise OSError("not root")
        if not (CG_ROOT / "memory.limit_in_bytes").is_file():
            raise OSError(f"no cgroup v1 memory controller at {CG_ROOT}")
        self.dir = CG_ROOT / name
        self.dir.mkdir()

    def write(self, key: str, value) -> None:
        (self.dir / key).write_text(f"{value}\n")

    def read(self, key: str) -> int:
        return int((self.dir / key).read_text())

    def remove(self) -> None:      # only our arm children can be in it
        for pid in (self.dir / "cgroup.procs").read_text().split():
            psutil.Process(int(pid)).kill()
        time.sleep(0.1)
        self.dir.rmdir()


# --------------------------------------------------------------------------- data

def _synth_part(out: str, series: int, seed: int, size_xy: int, slices, negatives: int):
    from luna_core.data.synth import write_synthetic_dataset  # SimpleITK: not at startup

    write_synthetic_dataset(out, series, seed, size_xy=size_xy, slices=tuple(slices),
                            negatives_per_series=negatives, nodules_per_series=(0, 2),
                            missing_series=0, overwrite=True)


def _write_npy(mhd: str, npy: str) -> None:
    ct = Ct.read(mhd)
    np.save(npy, ct.hu_a)
    Path(npy).with_suffix(".json").write_text(json.dumps({
        "shape_irc": list(ct.hu_a.shape), "origin_xyz": list(ct.origin_xyz),
        "vx_size_xyz": list(ct.vx_size_xyz), "direction": ct.direction_a.ravel().tolist()}))


def ensure_data(work: Path, args) -> dict:
    """The synthetic set, its chunk store and the per-CT .npy cache (reused when they match)."""
    data, cache, ct_dir = work / "data", work / "cache", work / "ct"
    key = {"series": args.series, "size_xy": args.size_xy, "slices": list(args.slices),
           "negatives": args.negatives, "seed": args.seed}
    try:
        reused = json.loads((work / "bench-data.json").read_text()) == key
    except (OSError, ValueError):
        reused = False
    t0 = time.perf_counter()
    pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(
        "spawn"))
    with pool:
        if not reused:                   # two halves in parallel, then merged
            for d in (data, cache, ct_dir):
                shutil.rmtree(d, ignore_errors=True)
            parts = [data / ".parts" / f"p{k}" for k in range(2)]
            sizes = [args.series - args.series // 2, args.series // 2]
            for f in [pool.submit(_synth_part, str(p), n, args.seed * 1000 + k, args.size_xy,
                                  args.slices, args.negatives)
                      for k, (p, n) in enumerate(zip(parts, sizes)) if n]:
                f.result()
            for name in ("candidates.csv", "annotations.csv"):   # one header, uid order
                rows, header = [], ""
                for p in parts:
                    if (p / name).is_file():
                        header, *body = (p / name).read_text().splitlines()
                        rows += body
                (data / name).write_text("\n".join([header, *sorted(rows)]) + "\n")
            for f in [f for p in parts for f in p.glob("subset*/*")]:
                (data / f.parent.name).mkdir(exist_ok=True)
                os.replace(f, data / f.parent.name / f.name)
            shutil.rmtree(data / ".parts")
        synth_s, t0 = time.perf_counter() - t0, time.perf_counter()
        candidates = get_candidate_info_list(data)
        built = prepare_store(data, cache, series_centres(candidates), num_workers=2)
        store_s, t0 = time.perf_counter() - t0, time.perf_counter()
        ct_dir.mkdir(exist_ok=True)
        todo = [(str(find_mhd(data, u)), str(ct_dir / f"{u}.npy"))
                for u in sorted({c.series_uid for c in candidates})
                if not (ct_dir / f"{u}.json").is_file()]
        if todo:
            list(pool.map(_write_npy, *zip(*todo)))
    (work / "bench-data.json").write_text(json.dumps(key))
    return {"reused": reused, "synth_s": synth_s, "store_s": store_s, "stores_built": built,
            "npy_s": time.perf_counter() - t0, "candidates": len(candidates),
            "store_bytes": store_bytes(cache), "npy_bytes": sum(
                p.stat().st_size for p in ct_dir.glob("*.npy"))}


# --------------------------------------------------------------------------- the arms

class PerCtDataset(Dataset):
    """The removed per-CT cache's reading path (LunaDataset's old ``__getitem__``)."""

    def __init__(self, candidates, ct_dir: Path, width=CHUNK_WIDTH_IRC):
        self.ct_dir, self.width = ct_dir, tuple(width)
        self.uids = sorted({c.series_uid for c in candidates})
        index = {u: k for k, u in enumerate(self.uids)}
        self.series = [index[c.series_uid] for c in candidates]
        self.nodule = [bool(c.is_nodule) for c in candidates]
        xyz = np.array([c.center_xyz for c in candidates], dtype=np.float64).reshape(-1, 3)
        series_a, n = np.array(self.series), len(xyz)
        starts, irc, padded = np.zeros((n, 3), np.int64), np.zeros((n, 3), np.int64), \
            np.zeros(n, bool)
        for u, k in index.items():
            g = json.loads((ct_dir / f"{u}.json").read_text())
            rows = np.flatnonzero(series_a == k)
            irc[rows] = xyz2irc_array(xyz[rows], g["origin_xyz"], g["vx_size_xyz"],
                                      g["direction"])
            starts[rows], padded[rows] = window_starts_array(irc[rows], g["shape_irc"], width)
        self.starts, self.padded = [tuple(s) for s in starts.tolist()], padded.tolist()
        self.center = [torch.tensor(r) for r in irc.tolist()]
        self.vols: list = [None] * len(self.uids)

    def __len__(self):
        return len(self.series)

    def __getitem__(self, i):
        s = self.series[i]
        vol = self.vols[s]
        if vol is None:
            vol = self.vols[s] = np.load(self.ct_dir / f"{self.uids[s]}.npy", mmap_mode="r")
        (i0, r0, c0), (wi, wr, wc) = self.starts[i], self.width
        chunk = (cut_chunk(vol, self.starts[i], self.width) if self.padded[i]
                 else vol[i0:i0 + wi, r0:r0 + wr, c0:c0 + wc])
        chunk_t = torch.from_numpy(np.ascontiguousarray(chunk).astype(np.float32)
                                   .reshape(1, *self.width))
        label = (_NODULE if self.nodule[i] else _NOT_NODULE).clone()
        return chunk_t, label, self.uids[s], self.center[i].clone()

    def release(self):
        """Unmap the pages touched so far (so that drop_caches can drop them)."""
        for v in self.vols:
            if v is not None:
                v._mmap.madvise(mmap.MADV_DONTNEED)


def bare_reader(ds: LunaDataset, reuse: bool):
    """One positioned read of exactly candidate i's chunk from its series' store file."""
    fd_of, offset = {}, {}
    for uid in ds.series_uids:
        sc = ds.store.ensure(uid, ds.series_centres(uid))
        fd = fd_of[uid] = os.open(sc.path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        for k, c in enumerate(ds.series_centres(uid).tolist()):
            offset[uid, tuple(c)] = sc.data_offset + k * sc.chunk_nbytes
        nbytes = sc.chunk_nbytes
    where = [(fd_of[c.series_uid], offset[c.series_uid, tuple(c.center_xyz)])
             for c in ds.candidate_list]
    buf, pread, preadv = bytearray(nbytes), os.pread, os.preadv

    def read(i):
        fd, off = where[i]
        if (preadv(fd, [buf], off) if reuse else len(pread(fd, nbytes, off))) != nbytes:
            raise OSError("short read")
    return read


def batch_reader(ds: LunaDataset, size: int = 32):
    pending: list[int] = []

    def read(i):
        pending.append(i)
        if len(pending) == size:
            ds.__getitems__(pending)
            pending.clear()
    return read


def make_arm(name: str, work: Path):
    """(read(i), sized object, release() or None, one candidate of each series)."""
    ds = LunaDataset(val_stride=0, data_dir=work / "data", cache_dir=work / "cache",
                     chunk_dtype=torch.float32 if name == "store" else torch.int16)
    firsts = list({c.series_uid: i for i, c in enumerate(ds.candidate_list)}.values())
    if name == "per_ct":
        pc = PerCtDataset(ds.candidate_list, work / "ct")
        return pc.__getitem__, pc, pc.release, firsts
    read = {"store": ds.__getitem__, "store_int16": ds.__getitem__}.get(name)
    if name == "store_batch":
        read = batch_reader(ds)
        firsts = firsts + (firsts * 32)[:-len(firsts) % 32]     # whole batches
    return read or bare_reader(ds, name == "bare_reuse"), ds, None, firsts


def shuffled(n: int, seed: int) -> list[int]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def arm_child(args) -> int:
    """--arm: set up, report, wait for 'go' (meanwhile: drop_caches, cgroup), read, report."""
    read, obj, release, firsts = make_arm(args.arm, Path(args.work))
    for i in firsts:                 # open every series (headers, maps, fds), warm the code
        read(i)
    if release:
        release()
    order = shuffled(len(obj), args.seed)[:args.chunks]
    print(json.dumps({"rss_mb": rss_mb()}), flush=True)
    sys.stdin.readline()
    flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    io0, rss0, c0, t0 = read_bytes(), rss_mb(), time.process_time(), time.perf_counter()
    done = 0
    for i in order:
        read(i)
        done += 1
        if not done % 32 and time.perf_counter() - t0 > args.arm_s:
            break
    wall = time.perf_counter() - t0
    print(json.dumps({"chunks": done, "wall_s": wall, "chunks_s": done / wall,
                      "cpu_us_per_chunk": (time.process_time() - c0) / done * 1e6,
                      "minflt_per_chunk": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                                           - flt0) / done,
                      "mb_per_chunk": (read_bytes() - io0) / done / 1e6,
                      "rss_start_mb": rss0, "rss_end_mb": rss_mb()}), flush=True)
    return 0


# --------------------------------------------------------------------------- regimes

def disk_arm(cg: MemCgroup, arm: str, args, work: Path, room: int) -> dict:
    child = subprocess.Popen(
        [sys.executable, __file__, "--arm", arm, "--work", str(work), "--seed", str(args.seed),
         "--chunks", str(args.chunks), "--arm-s", str(args.arm_s)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = json.loads(child.stdout.readline())
        drop_caches()
        cg.write("memory.limit_in_bytes", -1)
        cg.write("cgroup.procs", child.pid)
        charged = cg.read("memory.usage_in_bytes")
        cg.write("memory.limit_in_bytes", charged + room)
        cg.write("memory.max_usage_in_bytes", 0)
        child.stdin.write("go\n")
        child.stdin.flush()
        res = json.loads(child.stdout.readline())
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    res.update(setup_rss_mb=ready["rss_mb"], cgroup_limit=charged + room,
               cgroup_peak=cg.read("memory.max_usage_in_bytes"))
    print(f"  {arm}: limit {(charged + room) / 1e6:.0f} MB ({charged / 1e6:.1f} MB charged at "
          f"entry), {res['chunks']} chunks in {res['wall_s']:.1f} s: {res['chunks_s']:,.0f}/s, "
          f"{res['mb_per_chunk']:.3f} MB/chunk, {res['cpu_us_per_chunk']:.0f} us CPU/chunk",
          flush=True)
    return res


def disk_regime(args, work: Path, sizes: dict, verdicts: list) -> dict | None:
    try:
        ra = readahead_file(work)
        ra_old = int(ra.read_text())
        drop_caches()
        cg = MemCgroup(f"luna-bench-{os.getpid()}")
    except OSError as e:
        print(f"\ndisk-bound regime skipped: {e} (it needs root, a cgroup v1 memory controller "
              f"at {CG_ROOT}, /proc/sys/vm/drop_caches and the disk's read_ahead_kb)")
        return None
    room = int(args.cache_room * sizes["store_bytes"]) + ANON_ROOM
    print(f"\ndisk-bound: cgroup {cg.dir}, room {room / 1e6:.0f} MB = {args.cache_room} x the "
          f"store's {sizes['store_bytes'] / 1e6:,.0f} MB + {ANON_ROOM >> 20} MB for the arm's own "
          f"allocations: {room / sizes['store_bytes']:.2f}x the store, "
          f"{room / sizes['npy_bytes']:.2f}x the per-CT .npy cache; {ra} {ra_old} -> 128")
    if room > sizes["store_bytes"] / 2:
        print("  (a set this small is not disk-bound: figures exercise the code only)")
    runs: dict[str, list[dict]] = {a: [] for a in ARMS}
    try:
        ra.write_text("128\n")
        for r in range(args.rounds):
            for arm in (list(ARMS) if r % 2 == 0 else list(ARMS)[::-1]):
                runs[arm].append(disk_arm(cg, arm, args, work, room))
    finally:
        ra.write_text(f"{ra_old}\n")
        cg.remove()
        print(f"  restored {ra} = {ra.read_text().strip()}; removed {cg.dir}")
    med = {a: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for a, rs in runs.items()}
    bare = med["bare"]["chunks_s"]
    print(f"\ndisk-bound, random order, one process per arm, page cache dropped, read_ahead_kb "
          f"128, medians of {args.rounds} (targets: >= {TARGET_RATIO}x bare, <= {TARGET_MB} "
          "MB/chunk):")
    rows = []
    for a, m in med.items():
        ok = m["chunks_s"] >= TARGET_RATIO * bare and m["mb_per_chunk"] <= TARGET_MB
        if a.startswith("store"):
            verdicts.append((f"disk-bound {a}", ok))
        rows.append([ARMS[a], f"{m['chunks_s']:,.0f}", " ".join(
            f"{x['chunks_s']:,.0f}" for x in runs[a]), f"{m['chunks_s'] / bare:.2f}x",
            f"{m['mb_per_chunk']:.3f}", f"{m['cpu_us_per_chunk']:.0f}",
            f"{m['rss_start_mb']:.0f} -> {m['rss_end_mb']:.0f}",
            f"{max(x['cgroup_peak'] for x in runs[a]) / 1e6:.0f}",
            ("met" if ok else "NOT met") if a.startswith("store") else ""])
    print_table(["arm", "chunks/s", "runs", "x bare", "MB read/chunk", "CPU us/chunk",
                 "RSS MB", "cgroup peak MB", "target"], rows)
    return {"read_ahead_kb_was": ra_old, "cache_room_bytes": room, "runs": runs, "median": med}


def warm_files(work: Path) -> None:
    for p in [*store_dir(work / "cache").glob("*.chunks"), *(work / "ct").glob("*.npy")]:
        with open(p, "rb", buffering=0) as f:
            while f.read(1 << 23):
                pass


def timed(read, n: int, rng: random.Random, min_s: float, min_items: int = 0):
    """Reads over fresh random orders for >= min_s s and >= min_items: (per s, per CPU-s)."""
    items, wall, cpu = 0, 0.0, 0.0
    while wall < min_s or items < min_items:
        w0, c0 = time.perf_counter(), time.process_time()
        for j, i in enumerate(shuffled(n, rng.randrange(1 << 30)), 1):
            read(i)
            if not j % 64 and items + j >= min_items and time.perf_counter() - w0 + wall > min_s:
                break
        items, wall = items + j, wall + time.perf_counter() - w0
        cpu += time.process_time() - c0
    return items / wall, items / max(cpu, 1e-9)


def warm_regime(args, work: Path, verdicts: list) -> dict:
    warm_files(work)
    arms = {a: make_arm(a, work) for a in ARMS}
    rng = random.Random(args.seed + 1)
    for read, obj, _rel, _f in arms.values():          # one whole pass first (maps fault in)
        timed(read, len(obj), rng, args.trial_s, len(obj))
    wall: dict[str, list] = {a: [] for a in arms}
    cpu: dict[str, list] = {a: [] for a in arms}
    keys = list(arms)
    for t in range(args.trials):
        for a in keys[t % len(keys):] + keys[:t % len(keys)]:
            w, c = timed(arms[a][0], len(arms[a][1]), rng, args.trial_s)
            wall[a].append(w)
            cpu[a].append(c)
    res = {a: {"wall": summary(wall[a]), "cpu": summary(cpu[a])} for a in arms}
    bare = res["bare"]["wall"]["median"]
    print(f"\nwarm page cache, chunks/s, one process, {args.trials} interleaved trials of >= "
          f"{args.trial_s} s (target: store >= {TARGET_RATIO}x bare):")
    rows = []
    for a, r in res.items():
        ok = r["wall"]["median"] >= TARGET_RATIO * bare
        if a.startswith("store"):
            verdicts.append((f"warm {a}", ok))
        rows.append([ARMS[a], *(f"{r['wall'][k]:,.0f}" for k in ("median", "best", "worst")),
                     f"{r['cpu']['median']:,.0f}", f"{r['wall']['median'] / bare:.2f}x",
                     ("met" if ok else "NOT met") if a.startswith("store") else ""])
    print_table(["arm", "median", "best", "worst", "per CPU-s", "x bare", "target"], rows)
    return res


def loader_epoch(dl) -> dict:
    """One epoch; samples/s after the first batch, worker VmRSS after 10% and at the end."""
    others = {p.pid for p in psutil.Process().children()}     # e.g. a resource_tracker
    nb, n, early, late = len(dl), 0, {}, {}
    t0 = time.perf_counter()
    for b, batch in enumerate(dl, 1):
        if b == 1:
            t1, n1 = time.perf_counter(), len(batch[0])
        if b in (max(1, nb // 10), nb):
            (early if not early else late).update(
                {p.pid: rss_mb(p.pid) for p in psutil.Process().children() if p.pid not in others})
        n += len(batch[0])
    t2 = time.perf_counter()
    late = late or early
    return {"samples": n, "samples_s": (n - n1) / max(t2 - t1, 1e-9), "first_batch_s": t1 - t0,
            "rss_early_mb": list(early.values()), "rss_end_mb": list(late.values()),
            "growth_mb": max((late[p] - early.get(p, late[p]) for p in late), default=0.0)}


def loader_regime(args, work: Path, sizes: dict, verdicts: list) -> dict:
    from luna_core.data.loader import make_loader, shutdown_workers

    warm_files(work)
    base = dict(val_stride=0, data_dir=work / "data", cache_dir=work / "cache")
    f32, i16 = LunaDataset(**base), LunaDataset(**base, chunk_dtype=torch.int16)
    order = shuffled(len(f32), args.seed + 2)
    out = {}
    for pin in [False, True] if torch.cuda.is_available() else [False]:
        tag = ", pinned" if pin else ""
        for name, ds in (("store float32", f32), ("store int16", i16), ("old per-CT float32",
                         PerCtDataset(f32.candidate_list, work / "ct"))):
            out[f"DataLoader, {name}{tag}"] = loader_epoch(DataLoader(
                ds, batch_size=32, num_workers=2, sampler=order, pin_memory=pin))
        for name, ds in (("store float32", f32), ("store int16", i16)):
            dl = make_loader(ds, order, 32, 2, pin_memory=pin)
            out[f"make_loader, {name}{tag}"] = loader_epoch(dl)
            shutdown_workers(dl)
    flat = max(32.0, 0.01 * sizes["store_bytes"] / 1e6)
    print(f"\none warm epoch over all candidates, batch 32, 2 workers (target: store workers' "
          f"RSS growth <= {flat:.0f} MB):")
    rows = []
    for k, r in out.items():
        ok = r["growth_mb"] <= flat
        if "store" in k:
            verdicts.append((f"flat worker RSS, {k}", ok))
        rows.append([k, f"{r['samples_s']:,.0f}", f"{r['first_batch_s']:.2f}", ", ".join(
            f"{e:.0f} -> {x:.0f}" for e, x in zip(r["rss_early_mb"], r["rss_end_mb"])),
            f"{r['growth_mb']:+.1f}", ("met" if ok else "NOT met") if "store" in k else ""])
    print_table(["loader, dataset", "samples/s", "1st batch s", "worker RSS MB 10% -> end",
                 "growth MB", "target"], rows)
    return out


def ensure_startup_set(root: Path, n_series: int, n_rows: int, seed: int) -> tuple[str, float]:
    """n_series tiny CTs (all the same voxels), n_rows candidates inside them, their stores."""
    from luna_core.data.synth import CANDIDATES_HEADER, UID_PREFIX

    key = {"series": n_series, "rows": n_rows, "seed": seed, "shape": list(STARTUP_SHAPE),
           "width": list(STARTUP_WIDTH)}
    try:
        if json.loads((root / "startup.json").read_text()) == key:
            return "reused", 0.0
    except (OSError, ValueError):
        pass
    t0 = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)
    data, rng = root / "data", np.random.default_rng(seed)
    uids = sorted(UID_PREFIX + "".join(map(str, rng.integers(0, 10, 30))) + f".{k}"
                  for k in range(n_series))
    ni, nr, nc = STARTUP_SHAPE
    vox = rng.integers(-1000, 1000, size=STARTUP_SHAPE, dtype=np.int16).tobytes()
    spacing, origin = np.array([0.7, 0.7, 2.5]), rng.uniform(-200, 0, (n_series, 3))
    for k, uid in enumerate(uids):
        sub = data / f"subset{k % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{uid}.raw").write_bytes(vox)
        (sub / f"{uid}.mhd").write_text(
            "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
            "CompressedData = False\nTransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = "
            + " ".join(f"{v:.3f}" for v in origin[k]) + "\nCenterOfRotation = 0 0 0\n"
            "AnatomicalOrientation = RAI\nElementSpacing = 0.7 0.7 2.5\n"
            f"DimSize = {nc} {nr} {ni}\nElementType = MET_SHORT\nElementDataFile = {uid}.raw\n")
    weights = rng.lognormal(0, 0.6, n_series)
    series = np.repeat(np.arange(n_series),
                       rng.multinomial(n_rows - n_series, weights / weights.sum()) + 1)
    cri = 0.6 + rng.uniform(0, 1, (n_rows, 3)) * (np.array([nc, nr, ni]) - 2.2)  # inside
    xyz = origin[series] + cri * spacing
    cls = np.zeros(n_rows, int)
    cls[rng.choice(n_rows, max(1, round(n_rows / LUNA_POS_EVERY)), replace=False)] = 1
    (data / "candidates.csv").write_text(CANDIDATES_HEADER + "\n" + "".join(
        f"{uids[s]},{x:.6f},{y:.6f},{z:.6f},{c}\n"
        for s, (x, y, z), c in zip(series.tolist(), xyz.tolist(), cls.tolist())))
    (data / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n" + "".join(
        f"{uids[series[i]]},{xyz[i, 0]:.6f},{xyz[i, 1]:.6f},{xyz[i, 2]:.6f},"
        f"{rng.uniform(4, 20):.3f}\n" for i in np.flatnonzero(cls).tolist()))
    prepare_store(data, root / "cache", series_centres(get_candidate_info_list(data)),
                  width_irc=STARTUP_WIDTH, num_workers=2)
    clear_cache()
    (root / "startup.json").write_text(json.dumps(key))
    return "written", time.perf_counter() - t0


def startup_child(root: Path) -> int:
    t_imported = time.time()         # this module imports torch and luna_core at the top
    from luna_core.data.candidates import report_missing_series
    from luna_core.data.loader import make_loader, shutdown_workers
    from luna_core.data.sampler import EpochSampler

    data = root / "data"
    get_candidate_info_list(data)
    t_parsed = time.time()
    common = dict(val_stride=10, data_dir=data, cache_dir=root / "cache",
                  width_irc=STARTUP_WIDTH, chunk_dtype=torch.int16)
    trn, val = LunaDataset(is_val=False, **common), LunaDataset(is_val=True, **common)
    report_missing_series(data)
    t_datasets = time.time()
    dl = make_loader(trn, EpochSampler(len(trn), seed=0), 32, 2, pin_memory=False)
    next(iter(dl))
    t_first = time.time()
    shutdown_workers(dl)
    print(json.dumps({"t_imported": t_imported, "t_parsed": t_parsed, "t_datasets": t_datasets,
                      "t_first_batch": t_first, "trn": len(trn), "val": len(val)}), flush=True)
    return 0


def startup_regime(args, work: Path, verdicts: list, runs: int = 2) -> dict:
    root = work / "startup"
    how, made_s = ensure_startup_set(root, args.startup_series, args.startup_rows, args.seed)
    print(f"\nstartup set: {root} ({how}{f', {made_s:.0f} s' if made_s else ''}): "
          f"{args.startup_series} CTs of {'x'.join(map(str, STARTUP_SHAPE))}, "
          f"{args.startup_rows:,} candidate rows; stores of width "
          f"{'x'.join(map(str, STARTUP_WIDTH))} (the startup cost does not depend on it)")
    out = []
    for _ in range(runs):
        t_spawn = time.time()
        res = subprocess.run([sys.executable, __file__, "--startup-child", str(root)],
                             check=True, capture_output=True, text=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        out.append({"python_and_imports_s": r["t_imported"] - t_spawn,
                    "csv_parse_s": r["t_parsed"] - r["t_imported"],
                    "two_datasets_s": r["t_datasets"] - r["t_parsed"],
                    "first_batch_s": r["t_first_batch"] - r["t_datasets"],
                    "total_s": r["t_first_batch"] - t_spawn, "trn": r["trn"], "val": r["val"]})
    ok = max(r["total_s"] for r in out) < TARGET_STARTUP_S
    verdicts.append(("startup to the first batch", ok))
    print(f"\nstartup to the first batch, fresh process ({out[0]['trn']:,} training + "
          f"{out[0]['val']:,} validation samples), s:")
    keys = list(out[0])[:5]
    print_table(["run", *[k[:-2] for k in keys], "target"],
                [[str(i + 1), *[f"{r[k]:.2f}" for k in keys], f"< {TARGET_STARTUP_S:.0f}: "
                  + ("met" if r["total_s"] < TARGET_STARTUP_S else "NOT met")]
                 for i, r in enumerate(out)])
    return {"runs": out, "made_s": made_s}


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)                 # as in a DataLoader worker
    if args.arm:
        return arm_child(args)
    if args.startup_child:
        return startup_child(Path(args.startup_child))
    t_start = time.perf_counter()
    info = machine_info()
    print_machine(info)
    own_tmp = args.work is None
    work = Path(args.work or tempfile.mkdtemp(prefix="luna-bench-store-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    payload: dict = {"benchmark": "data_store", "machine": info, "argv": sys.argv[1:]}
    verdicts: list = []
    try:
        if {"disk", "warm", "loader"} - set(args.skip):
            sizes = payload["data"] = ensure_data(work, args)
            print(f"\ndata: {work} ({'reused' if sizes['reused'] else 'written'}, "
                  f"{sizes['synth_s']:.0f} s): {args.series} series of {args.size_xy}x"
                  f"{args.size_xy}x{args.slices[0]}-{args.slices[1]}, {sizes['candidates']:,} "
                  f"candidates; store {sizes['store_bytes'] / 1e6:,.0f} MB ("
                  f"{sizes['stores_built']} built, {sizes['store_s']:.0f} s), per-CT .npy "
                  f"{sizes['npy_bytes'] / 1e6:,.0f} MB ({sizes['npy_s']:.0f} s)")
        if "disk" not in args.skip:
            payload["disk"] = disk_regime(args, work, sizes, verdicts)
        if "warm" not in args.skip:
            payload["warm"] = warm_regime(args, work, verdicts)
        if "loader" not in args.skip:
            payload["loader"] = loader_regime(args, work, sizes, verdicts)
        if "startup" not in args.skip:
            payload["startup"] = startup_regime(args, work, verdicts)
        if verdicts:
            print("\ntargets:")
            print_table(["target", "result"], [[k, "met" if v else "NOT met"]
                                               for k, v in verdicts])
        la, total_s = print_footer(t_start)
        payload.update(loadavg_end=la, total_s=total_s, targets=dict(verdicts))
        write_json(args.json, payload)
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
