"""Chunks/s through ``LunaDataset.__getitem__`` against the book's pickled-chunk cache (warm).

    .venv/bin/python benchmarks/data_path.py [--work DIR] [--json FILE]

1. Writes (or reuses, in ``--work DIR``) a synthetic LUNA16-format set: by default 10 series of
   512 x 512 x 100-140 voxels (the real in-plane size) and about 1,500 candidates.
2. Builds the project's chunk store with ``prepare_store`` (each candidate's int16 chunk,
   contiguous, read with one ``preadv``).
3. Writes the book-style baseline: every candidate's float32 (32, 48, 48) chunk and its centre,
   pickled separately (``pickle.HIGHEST_PROTOCOL``, 295 KB) into its own file in one
   directory, plus an SQLite table from the pickled memoize key to the file. The book memoizes
   ``getCtRawCandidate`` in a diskcache ``FanoutCache(disk=GzipDisk)``: its tuple values are
   pickled (GzipDisk compresses only ``bytes`` values) and, being over 32 KB, stored as one
   file each, found through SQLite.
4. Measures, in one process, interleaved (A B C ..., B C ... A, ...: the order rotates every
   trial) after an adaptive warm-up,
   each trial at least ``--trial-s`` seconds of whole passes over a fresh random permutation of
   all candidates:
   - ``LunaDataset.__getitem__`` (the project's path; target >= 16,000 chunks/s),
     float32 samples as the book's, and int16 samples as the trainer asks for,
   - the book baseline: file read + ``pickle.loads`` + the book's ``__getitem__`` tensors,
   - the same with the SQLite lookup in front (an emulation of the book's diskcache),
   - if ``diskcache`` is importable, the book's own ``@raw_cache.memoize`` over a diskcache
     ``FanoutCache(disk=GzipDisk, shards=64)`` (not a project dependency: e.g.
     ``pip install --target DIR diskcache`` and ``PYTHONPATH=DIR``),
   - ``LunaDataset.__getitem__`` with its per-process open-file table cut to one file (an
     open + fadvise per series change: the cost if the file-descriptor limit were tiny),
   - a ``DataLoader(batch_size=32, num_workers=0)`` over ``LunaDataset`` (collation included).
   It reports the median, best and worst trial in chunks per wall-clock second, plus chunks
   per CPU second of this process (less sensitive to other processes on a shared machine).
   torch runs with ``--threads`` intra-op threads (default 1, as in a DataLoader worker).

Figures are for a warm page cache (the synthetic set fits in RAM), as is the book's 4,000/s.
The disk-bound regime (a store larger than the page cache), the whole DataLoader with workers,
worker memory and startup on a LUNA-sized list are in ``benchmarks/data_store.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import (
    machine_info,
    print_footer,
    print_machine,
    print_table,
    summary,
    write_json,
)
from torch.utils.data import DataLoader

from luna_core.data import chunkstore
from luna_core.data.candidates import get_candidate_info_list
from luna_core.data.chunkstore import prepare_store, series_centres
from luna_core.data.dsets import LunaDataset
from luna_core.data.synth import MANIFEST_JSON, write_synthetic_dataset

TARGET_CHUNKS_S = 16_000
FULL_LUNA_SERIES = 888


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=None,
                   help="folder for the data set, cache and pickles (kept and reused); "
                        "default: a temporary folder, deleted at the end")
    p.add_argument("--series", type=int, default=10)
    p.add_argument("--size-xy", type=int, default=512)
    p.add_argument("--slices", type=int, nargs=2, default=(100, 140), metavar=("MIN", "MAX"))
    p.add_argument("--negatives", type=int, default=150, help="class-0 candidates per series")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trials", type=int, default=3, help="interleaved trials per path")
    p.add_argument("--trial-s", type=float, default=3.0, help="seconds per trial (at least)")
    p.add_argument("--warmup-max-s", type=float, default=20.0,
                   help="warm-up limit per path (passes until two agree within 10%%)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1, as torch sets in every DataLoader "
                        "worker, where __getitem__ runs in training)")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- data

def ensure_dataset(data_dir: Path, args) -> tuple[str, float]:
    wanted = {"series": args.series, "size_xy": args.size_xy, "slices": list(args.slices),
              "negatives_per_series": args.negatives}
    manifest = data_dir / MANIFEST_JSON
    if manifest.is_file() and (data_dir / "candidates.csv").is_file():
        try:
            meta = json.loads(manifest.read_text())
            opts = meta.get("options", {})
            if (meta.get("complete") and meta.get("seed") == args.seed
                    and all(opts.get(k) == v for k, v in wanted.items())):
                return "reused", 0.0
        except (OSError, ValueError):
            pass
    t0 = time.perf_counter()
    write_synthetic_dataset(data_dir, args.series, args.seed, size_xy=args.size_xy,
                            slices=tuple(args.slices), negatives_per_series=args.negatives,
                            nodules_per_series=(0, 2), overwrite=True)
    return "written", time.perf_counter() - t0


def ensure_book_store(ds: LunaDataset, store: Path) -> tuple[list[str], str, float]:
    """One pickle file per candidate: ``pickle.dumps((float32 chunk, centre irc tuple))``."""
    index = store / "index.json"
    n = len(ds)
    paths = [str(store / f"{i:07d}.pkl") for i in range(n)]
    try:
        meta = json.loads(index.read_text())
        if meta.get("fingerprint") == ds.fingerprint and meta.get("count") == n:
            return paths, "reused", 0.0
    except (OSError, ValueError):
        pass
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    t0 = time.perf_counter()
    for i in range(n):
        chunk_t, _label, _uid, center_t = ds[i]
        chunk_a = chunk_t[0].numpy()                  # float32 (32, 48, 48), like the book's
        payload = pickle.dumps((chunk_a, tuple(center_t.tolist())),
                               protocol=pickle.HIGHEST_PROTOCOL)
        with open(paths[i], "wb") as f:
            f.write(payload)
    index.write_text(json.dumps({"fingerprint": ds.fingerprint, "count": n,
                                 "protocol": pickle.HIGHEST_PROTOCOL}))
    return paths, "written", time.perf_counter() - t0


def ensure_sqlite_index(ds: LunaDataset, store: Path, paths: list[str]) -> Path:
    """An SQLite table from the pickled memoize key to the value's file, as diskcache keeps
    values over 32 KB (the book's ``@raw_cache.memoize`` on ``getCtRawCandidate``)."""
    db = store / "cache.db"
    if db.is_file():
        return db
    tmp = store / "cache.db.tmp"
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    con.execute("CREATE TABLE cache (key BLOB PRIMARY KEY, filename TEXT)")
    con.executemany("INSERT INTO cache VALUES (?, ?)",
                    [(book_key(c), paths[i]) for i, c in enumerate(ds.candidate_list)])
    con.commit()
    con.close()
    os.replace(tmp, db)
    return db


def book_key(c) -> bytes:
    return pickle.dumps(("getCtRawCandidate", c.series_uid, tuple(c.center_xyz), (32, 48, 48)),
                        protocol=pickle.HIGHEST_PROTOCOL)


def dir_bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


# --------------------------------------------------------------------------- the paths

def book_sample(filename: str, uid: str, is_nodule: bool):
    """The book's ch. 11 ``LunaDataset.__getitem__`` body over one pickled chunk file."""
    with open(filename, "rb") as f:
        candidate_a, center_irc = pickle.loads(f.read())
    candidate_t = torch.from_numpy(candidate_a).to(torch.float32).unsqueeze(0)
    pos_t = torch.tensor([not is_nodule, is_nodule], dtype=torch.long)
    return candidate_t, pos_t, uid, torch.tensor(center_irc)


def make_book_getitem(ds: LunaDataset, paths: list[str]):
    """The book's ch. 11 ``LunaDataset.__getitem__`` over a pickle-per-chunk cache."""
    info = [(c.series_uid, bool(c.is_nodule)) for c in ds.candidate_list]

    def getitem(ndx: int):
        uid, is_nodule = info[ndx]
        return book_sample(paths[ndx], uid, is_nodule)

    return getitem


def make_book_sqlite_getitem(ds: LunaDataset, db: Path):
    """The same, with the SQLite lookup of diskcache in front of each file read."""
    info = [(c.series_uid, bool(c.is_nodule), book_key(c)) for c in ds.candidate_list]
    con = sqlite3.connect(db, check_same_thread=False)

    def getitem(ndx: int):
        uid, is_nodule, key = info[ndx]
        (filename,) = con.execute("SELECT filename FROM cache WHERE key = ?",
                                  (key,)).fetchone()
        return book_sample(filename, uid, is_nodule)

    return getitem


def make_diskcache_getitem(ds: LunaDataset, folder: Path):
    """The book's own path, when diskcache is importable: ``getCtRawCandidate`` memoized in a
    ``FanoutCache(disk=GzipDisk, shards=64, timeout=1, size_limit=3e11)``, filled on first use
    (written here from LunaDataset's chunks, as float32 like the book's)."""
    import gzip
    import io

    import diskcache
    from diskcache.core import MODE_BINARY

    class GzipDisk(diskcache.Disk):     # the book's util/disk.py, for diskcache 5
        def store(self, value, read, key=diskcache.core.UNKNOWN):
            if type(value) is bytes:
                if read:
                    value, read = value.read(), False
                buf = io.BytesIO()
                with gzip.GzipFile(mode="wb", compresslevel=1, fileobj=buf) as gz:
                    gz.write(value)
                value = buf.getvalue()
            return super().store(value, read, key=key)

        def fetch(self, mode, filename, value, read):
            value = super().fetch(mode, filename, value, read)
            if mode == MODE_BINARY:
                value = gzip.decompress(value)
            return value

    cache = diskcache.FanoutCache(str(folder), disk=GzipDisk, shards=64, timeout=1,
                                  size_limit=3e11)
    index = {(c.series_uid, tuple(c.center_xyz)): i for i, c in enumerate(ds.candidate_list)}

    @cache.memoize(typed=True)
    def getCtRawCandidate(series_uid, center_xyz, width_irc):  # noqa: N802 - the book's name
        chunk_t, _label, _uid, center_t = ds[index[(series_uid, tuple(center_xyz))]]
        return chunk_t[0].numpy(), tuple(center_t.tolist())

    info = [(c.series_uid, tuple(c.center_xyz), bool(c.is_nodule)) for c in ds.candidate_list]
    for uid, xyz, _nod in info:                 # fill (a no-op when the folder is reused)
        getCtRawCandidate(uid, xyz, (32, 48, 48))

    def getitem(ndx: int):
        uid, xyz, is_nodule = info[ndx]
        candidate_a, center_irc = getCtRawCandidate(uid, xyz, (32, 48, 48))
        candidate_t = torch.from_numpy(candidate_a).to(torch.float32).unsqueeze(0)
        pos_t = torch.tensor([not is_nodule, is_nodule], dtype=torch.long)
        return candidate_t, pos_t, uid, torch.tensor(center_irc)

    return getitem


def per_item(fn):
    def run(order):
        for i in order:
            fn(i)
        return len(order)
    return run


def file_misses(ds: LunaDataset):
    """``LunaDataset.__getitem__`` with one store file open per process (this script sets
    ``luna_core.data.chunkstore.MAX_OPEN_FILES`` for the pass; luna_core itself is unchanged)."""
    getitem = ds.__getitem__

    def run(order):
        saved = chunkstore.MAX_OPEN_FILES
        chunkstore.MAX_OPEN_FILES = 1
        chunkstore.close_files()
        try:
            for i in order:
                getitem(i)
        finally:
            chunkstore.MAX_OPEN_FILES = saved
            chunkstore.close_files()
        return len(order)
    return run


def data_loader(ds: LunaDataset, batch_size: int = 32):
    def run(order):
        n = 0
        for batch in DataLoader(ds, batch_size=batch_size, sampler=order, num_workers=0):
            n += len(batch[0])
        return n
    return run


def one_pass(run, n: int, rng: random.Random) -> tuple[int, float, float]:
    order = list(range(n))
    rng.shuffle(order)
    w0, c0 = time.perf_counter(), time.process_time()
    items = run(order)
    return items, time.perf_counter() - w0, time.process_time() - c0


def warm_up(run, n: int, rng: random.Random, max_s: float) -> list[float]:
    """Whole passes until two in a row agree within 10% (at least 3), or ``max_s``."""
    rates: list[float] = []
    t0 = time.perf_counter()
    while True:
        items, wall, _cpu = one_pass(run, n, rng)
        rates.append(items / wall)
        if len(rates) >= 3 and abs(rates[-1] - rates[-2]) <= 0.1 * max(rates[-2:]):
            break
        if time.perf_counter() - t0 > max_s:
            break
    return rates


def trial(run, n: int, rng: random.Random, min_s: float) -> tuple[float, float]:
    items = 0
    wall = cpu = 0.0
    while wall < min_s:
        k, w, c = one_pass(run, n, rng)
        items, wall, cpu = items + k, wall + w, cpu + c
    return items / wall, items / max(cpu, 1e-9)


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    info = machine_info()
    print_machine(info)

    own_tmp = args.work is None
    work = Path(args.work or tempfile.mkdtemp(prefix="luna-bench-data-"))
    work.mkdir(parents=True, exist_ok=True)
    data_dir, cache_dir, store = work / "data", work / "cache", work / "book_pickles"
    try:
        how, synth_s = ensure_dataset(data_dir, args)
        print(f"\ndata set: {data_dir} ({how}{f', {synth_s:.1f} s' if synth_s else ''}): "
              f"{args.series} series of {args.size_xy}x{args.size_xy}x"
              f"{args.slices[0]}-{args.slices[1]} voxels")
        ds = LunaDataset(val_stride=0, data_dir=data_dir, cache_dir=cache_dir)
        ds16 = LunaDataset(val_stride=0, data_dir=data_dir, cache_dir=cache_dir,
                           chunk_dtype=torch.int16)
        t0 = time.perf_counter()
        converted = prepare_store(data_dir, cache_dir,
                                  series_centres(get_candidate_info_list(data_dir)),
                                  num_workers=min(2, os.cpu_count() or 1))
        prep_s = time.perf_counter() - t0
        n = len(ds)
        print(f"store   : {cache_dir} ({converted} series built in {prep_s:.1f} s); "
              f"{n} candidates on disk, all of them measured")
        paths, how_b, book_s = ensure_book_store(ds, store)
        db = ensure_sqlite_index(ds, store, paths)
        store_bytes = chunkstore.store_bytes(cache_dir)
        pkl_bytes = dir_bytes(store, "*.pkl")
        print(f"baseline: {store} ({how_b}{f', {book_s:.1f} s' if book_s else ''}): one "
              f"pickle file per candidate, {pkl_bytes / n / 1e3:.0f} KB each "
              f"(project store: {store_bytes / n / 1e3:.0f} KB of int16 per chunk, "
              f"{store_bytes / 1e6:.0f} MB in all)")

        series = [c.series_uid for c in ds.candidate_list]
        order = list(range(n))
        random.Random(args.seed).shuffle(order)
        hits = sum(series[a] == series[b] for a, b in zip(order, order[1:])) / (n - 1)

        paths_under_test = {
            "luna": ("LunaDataset.__getitem__ (chunk store, float32 samples)",
                     per_item(ds.__getitem__)),
            "luna_int16": ("LunaDataset.__getitem__ (chunk store, int16 samples)",
                           per_item(ds16.__getitem__)),
            "book": ("book: pickle file per chunk + pickle.loads",
                     per_item(make_book_getitem(ds, paths))),
            "book_sqlite": ("book: same + SQLite key lookup (as diskcache)",
                            per_item(make_book_sqlite_getitem(ds, db))),
            "luna_miss": (f"LunaDataset.__getitem__, 1 store file open (~{100 * (1 - hits):.0f}% "
                          f"misses)", file_misses(ds)),
            "loader": ("DataLoader(LunaDataset, batch 32, workers 0)", data_loader(ds)),
        }
        try:
            t0 = time.perf_counter()
            dc_getitem = make_diskcache_getitem(ds, work / "book_diskcache")
            paths_under_test["book_diskcache"] = (
                "book: diskcache FanoutCache memoize (its code)", per_item(dc_getitem))
            print(f"diskcache: {work / 'book_diskcache'} ready in "
                  f"{time.perf_counter() - t0:.1f} s (the book's own cache)")
        except ImportError:
            print("diskcache is not installed: the book's own cache is left out (emulated by "
                  "the two rows above)")
        rng = random.Random(args.seed + 1)
        warm: dict[str, list[float]] = {}
        print("\nwarm-up (chunks/s per pass):")
        for key, (label, run) in paths_under_test.items():
            warm[key] = warm_up(run, n, rng, args.warmup_max_s)
            print(f"  {label}: " + ", ".join(f"{r:,.0f}" for r in warm[key]))

        wall: dict[str, list[float]] = {k: [] for k in paths_under_test}
        cpu: dict[str, list[float]] = {k: [] for k in paths_under_test}
        keys = list(paths_under_test)
        for t in range(args.trials):
            shift = t % len(keys)                   # rotate the order every trial
            for key in keys[shift:] + keys[:shift]:
                run = paths_under_test[key][1]
                w, c = trial(run, n, rng, args.trial_s)
                wall[key].append(w)
                cpu[key].append(c)

        results = {k: {"label": paths_under_test[k][0], "wall": summary(wall[k]),
                       "cpu": summary(cpu[k]), "warmup": [round(r) for r in warm[k]]}
                   for k in paths_under_test}
        luna_med = results["luna"]["wall"]["median"]

        print(f"\nchunks/s, {args.trials} interleaved trials of >= {args.trial_s:.0f} s each "
              f"(random order over all {n} candidates, one process):")
        rows = []
        for key, r in results.items():
            target = ""
            if key == "luna":
                target = (f">= {TARGET_CHUNKS_S:,}: "
                          f"{'met' if luna_med >= TARGET_CHUNKS_S else 'NOT met'}")
            rows.append([r["label"], f"{r['wall']['median']:,.0f}", f"{r['wall']['best']:,.0f}",
                         f"{r['wall']['worst']:,.0f}", f"{r['cpu']['median']:,.0f}", target])
        print_table(["path", "median", "best", "worst", "per CPU-s", "target"], rows)
        print()
        ratios = {}
        for key in ("book", "book_sqlite", "book_diskcache"):
            if key in results:
                rw = luna_med / results[key]["wall"]["median"]
                rc = results["luna"]["cpu"]["median"] / results[key]["cpu"]["median"]
                ratios[key] = {"wall": rw, "cpu": rc}
                print(f"LunaDataset / {results[key]['label']}: {rw:.2f}x (wall-clock medians), "
                      f"{rc:.2f}x (per CPU second)")
        miss = results.get("luna_miss", {}).get("wall", {}).get("median", 0.0)
        if miss:
            print(f"file misses: {miss:,.0f} chunks/s = {miss / luna_med:.2f}x of the all-files-"
                  f"open rate. Full LUNA16 has {FULL_LUNA_SERIES} series and luna_core keeps "
                  f"{chunkstore._max_open_files()} store files open per process here.")
        la, total_s = print_footer(t_start)
        write_json(args.json, {
            "benchmark": "data_path", "machine": info, "loadavg_end": la,
            "argv": sys.argv[1:], "candidates": n, "series": args.series,
            "size_xy": args.size_xy, "slices": list(args.slices),
            "synth_s": synth_s, "prepare_store_s": prep_s, "book_store_s": book_s,
            "pickle_bytes_per_candidate": pkl_bytes / n, "store_bytes_total": store_bytes,
            "results": results, "ratios": ratios,
            "target_chunks_s": TARGET_CHUNKS_S, "target_met": luna_med >= TARGET_CHUNKS_S,
            "map_hit_rate_one_map": hits, "total_s": total_s,
        })
    finally:
        chunkstore.close_files()
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
