"""`luna-tui prepcache`: build the chunk store of every series that has candidates, in parallel
over series, with a progress line and an ETA (one line per update on a non-TTY, an updating line
on a TTY). Resumable: a killed prepcache keeps the series it finished."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from luna_core.errors import LunaInputError
from luna_core.run.estimate import format_clock, format_remaining


class _Progress:
    def __init__(self, stream) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.t0 = time.monotonic()
        self.first_done: int | None = None
        self.last_print = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.first_done is None:
            self.first_done, self.t0 = done, now  # already-cached series don't count
            eta = ""
        else:
            converted = done - self.first_done
            rate = (now - self.t0) / converted if converted else 0.0
            remaining = rate * (total - done)
            eta = (f", done at {format_clock(time.time() + remaining)}, "
                   f"{format_remaining(remaining)}") if converted else ""
        final = done == total
        if not final and now - self.last_print < (0.2 if self.tty else 5.0):
            return
        self.last_print = now
        line = f"prepcache {done:>5}/{total} series{eta}"
        if self.tty:
            self.stream.write("\r" + line.ljust(78) + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def run_prepcache(data_dir: str, cache_dir: str, num_workers: int,
                  candidates_file: str | None = None, stream=None) -> int:
    from luna_core.data.candidates import (
        csv_paths,
        get_candidate_info_list,
        report_missing_series,
    )
    from luna_core.data.chunkstore import prepare_store, series_centres, store_bytes, store_dir

    stream = stream or sys.stderr
    try:
        candidates = get_candidate_info_list(data_dir, candidates_file)
        report_missing_series(data_dir, candidates_file)
        centres = dict(sorted(series_centres(candidates).items()))
        t0 = time.monotonic()
        built = prepare_store(data_dir, cache_dir, centres, num_workers=num_workers,
                              candidates_file=csv_paths(data_dir, candidates_file)[1],
                              progress=_Progress(stream))
    except LunaInputError as exc:
        print(f"luna-tui prepcache: {exc}", file=sys.stderr)
        return 2
    stream.write(f"prepcache: {built} series built, {len(centres) - built} already in the "
                 f"store, {time.monotonic() - t0:.1f} s; {store_dir(cache_dir)} holds "
                 f"{sum(len(c) for c in centres.values())} chunks, "
                 f"{store_bytes(cache_dir) / 1e9:.2f} GB\n")
    old_cache = Path(cache_dir) / "ct"
    if old_cache.is_dir():
        size = sum(p.stat().st_size for p in old_cache.iterdir() if p.is_file())
        stream.write(f"prepcache: {old_cache} ({size / 1e9:.2f} GB) is the per-CT cache of "
                     "earlier luna-tui versions, no longer read: delete it to free the space\n")
    return 0
