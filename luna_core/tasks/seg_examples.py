"""--task seg's examples: after each validation, the ``k`` slices with the most missed nodule
pixels and the ``k`` with the most falsely marked pixels (ties by the slice's place in the
set, so a resumed run keeps the same ones; a slice within 4 of one already chosen in the
same series is passed over), chosen from every rank's per-slice counts. Each is
read again from the validation volumes and run through the model once more (a few slices, on
the process that writes the run), so the file holds what the model called: per slice three
planes, its HU, its label and the call (luna_core.run.example_file, task "seg")."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from luna_core.run.example_file import (
    SEG_KINDS,
    SEG_PLANES,
    examples_path,
    prune_examples,
    write_examples,
)
from luna_core.train.seg_metrics import (
    METRICS_FN_NDX,
    METRICS_FP_NDX,
    METRICS_LOSS_NDX,
    PIXEL_THRESHOLD,
)

#: A slice this near (in slices) to one already chosen in the same series is taken for the
#: same nodule and passed over: the examples show k places, not one nodule's k slices.
SAME_PLACE_SLICES = 4


def pick(metrics_a: np.ndarray, k: int, place=None) -> dict[str, list[int]]:
    """Columns of ``metrics_a`` for each kind, the worst first; slices with none left out;
    ``place(column)``: (series, slice), to pass over slices near one already chosen."""
    out = {}
    for kind, row in zip(SEG_KINDS, (METRICS_FN_NDX, METRICS_FP_NDX), strict=True):
        values = np.asarray(metrics_a[row], dtype=np.float64)
        cols = np.flatnonzero(values > 0)
        chosen: list[int] = []
        taken: list[tuple] = []
        for j in cols[np.lexsort((cols, -values[cols]))].tolist():
            if len(chosen) == k:
                break
            if place is not None:
                series, index = place(j)
                if any(s == series and abs(i - index) <= SAME_PLACE_SLICES for s, i in taken):
                    continue
                taken.append((series, index))
            chosen.append(j)
        out[kind] = chosen
    return out


def _centre(mask: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return mask.shape[0] // 2, mask.shape[1] // 2
    return int(round(rows.mean())), int(round(cols.mean()))


def save(run_dir: str, epoch: int, ds, rows, metrics_a: np.ndarray,
         predict: Callable[[np.ndarray], np.ndarray], k: int, keep: int
         ) -> tuple[str, dict[str, int]]:
    """Write the examples of validation ``epoch`` (``rows``: each column's sample; ``predict``:
    (N, 7, H, W) HU -> (N, 1, H, W) probabilities); returns (path, count per kind)."""
    rows = np.asarray(rows, dtype=np.int64)
    chosen = pick(metrics_a, k, lambda j: ds.samples[int(rows[j])])
    chunks: list[bytes] = []
    entries = []
    found: dict[int, tuple[int, np.ndarray, np.ndarray, int]] = {}
    width = None
    for kind in SEG_KINDS:
        for rank, j in enumerate(chosen[kind], 1):
            sample = int(rows[j])
            if sample not in found:
                hu, label, uid, index = ds[sample]
                hu, label = np.asarray(hu), np.asarray(label)[0] > 0
                called = predict(hu[None])[0, 0] > PIXEL_THRESHOLD
                planes = np.stack([hu[hu.shape[0] // 2], label, called]).astype("<i2")
                width = planes.shape
                found[sample] = (len(chunks), label, called, index)
                chunks.append(planes.tobytes())
            chunk, label, called, index = found[sample]
            tp = int((label & called).sum())
            fn, fp = int((label & ~called).sum()), int((~label & called).sum())
            r, c = _centre(label & ~called if kind == "missed_pixels" else ~label & called)
            vol = ds.volumes[ds.samples[sample][0]]
            entries.append({
                "kind": kind, "rank": rank, "sample": sample, "series_uid": vol.series_uid,
                "center_xyz": [0.0, 0.0, 0.0], "center_irc": [int(index), r, c],
                "irc_in_chunk": [0, r, c], "vx_size_xyz": list(vol.vx_size_xyz),
                "diameter_mm": 0.0, "is_nodule": bool(label.any()),
                "probability": tp / (tp + fn) if tp + fn else 0.0,
                "loss": float(metrics_a[METRICS_LOSS_NDX, j]), "chunk": chunk,
                "pixels": [tp, fn, fp]})
    path = examples_path(run_dir, epoch)
    write_examples(path, epoch, width or (SEG_PLANES, 1, 1), entries, chunks, task="seg")
    prune_examples(run_dir, keep)
    return path, {kind: len(chosen[kind]) for kind in SEG_KINDS}
