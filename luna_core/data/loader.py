"""The training loop's data sets and DataLoaders, and the one way to stop loader workers.

Workers ignore the stop signals (the main process finishes its batch and checkpoints first),
start from a forkserver when the loop runs in a thread (the cockpit), stay alive between
epochs, and pin memory for a GPU.
"""

from __future__ import annotations

import logging
import math
import signal
import threading

from torch.utils.data import DataLoader, Dataset, Sampler

log = logging.getLogger(__name__)


def make_datasets(val_stride: int, data_dir: str, cache_dir: str, candidates_file: str | None,
                  split: str = "candidates"):
    """The training and validation LunaDatasets (and a log line on series listed but
    missing, and one with their sizes). Their chunks are the stored int16: the loop converts
    them on the training device (half the bytes to collate, pin and copy)."""
    import torch

    from luna_core.data.candidates import report_missing_series
    from luna_core.data.dsets import LunaDataset
    from luna_core.data.preflight import check_sources
    from luna_core.fsutil import remove_orphaned_temps

    common = dict(val_stride=val_stride, data_dir=data_dir, cache_dir=cache_dir,
                  candidates_file=candidates_file, chunk_dtype=torch.int16, split=split)
    trn_ds = LunaDataset(is_val=False, **common)
    val_ds = LunaDataset(is_val=True, **common)
    if trn_ds.store.dir.is_dir():      # what a killed run or prepcache left half written
        for path in remove_orphaned_temps(str(trn_ds.store.dir)):
            log.info("removed %s (left half written by a process that is gone)", path)
    report_missing_series(data_dir, candidates_file)
    check_sources((trn_ds, val_ds))       # a truncated .raw stops the run here, named
    log.info("%d training samples (%d nodules), %d validation samples (%d nodules)",
             len(trn_ds), trn_ds.pos_count, len(val_ds), val_ds.pos_count)
    if split == "series":
        log.info("split by series: %d scans in training, %d in validation, none in both",
                 len(trn_ds.series_uids), len(val_ds.series_uids))
    return trn_ds, val_ds


def _worker_ignores_signals(_worker_id: int) -> None:
    # Ctrl+C and `kill -TERM -PGID` reach the whole process group: loader workers must
    # outlive the signal so that the main process can finish its batch and checkpoint.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def make_loader(ds: Dataset, sampler: Sampler, batch_size: int, num_workers: int,
                pin_memory: bool) -> DataLoader:
    extra = {}
    if num_workers > 0:
        extra = dict(persistent_workers=True, worker_init_fn=_worker_ignores_signals)
        if threading.current_thread() is not threading.main_thread():
            # fork() from a thread of a multi-threaded process (the cockpit) can copy
            # locks held by other threads: start workers from a clean server instead.
            extra["multiprocessing_context"] = "forkserver"
    # LunaDataset reads a whole batch into one tensor (__getitems__): collate_samples keeps it
    from luna_core.data.dsets import collate_samples

    return DataLoader(ds, batch_size=batch_size, num_workers=num_workers, sampler=sampler,
                      pin_memory=pin_memory, collate_fn=collate_samples, **extra)


def phase_batches(dl: DataLoader, batch_size: int, max_batches: int | None) -> int:
    """Batches this rank runs in a phase over ``dl``: its shard of the data set, cut at
    --max-batches."""
    count = math.ceil(dl.sampler.shard_size / batch_size)
    return count if max_batches is None else min(count, max_batches)


def phase_samples(dl: DataLoader, batch_size: int, max_batches: int | None) -> int:
    return min(dl.sampler.shard_size, phase_batches(dl, batch_size, max_batches) * batch_size)


def shutdown_workers(dl) -> None:
    """Stop a loader's persistent worker processes now (a no-op for anything else).

    Private API: torch has no public call for this. Persistent workers otherwise live until
    the DataLoader is garbage-collected, and the process goes on after a run ends (the
    cockpit stays open on the finished run; tests run many loops in one process).
    tests/test_private_apis.py fails if a torch upgrade removes it."""
    iterator = getattr(dl, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
