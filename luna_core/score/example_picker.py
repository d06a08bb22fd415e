"""Which validation candidates to keep for a person to look at, and keeping them: after each
validation, the ``k`` nodules scored lowest (misses first), the ``k`` non-nodules scored
highest (false alarms) and the ``k`` nodules scored highest, ties broken by the sample's place
in the set (so a resumed run keeps the same ones). Their chunks come from the chunk store by
index (no pass over the data); the file format is luna_core.run.example_file'."""

from __future__ import annotations

import numpy as np

from luna_core.run.example_file import KINDS, examples_path, prune_examples, write_examples

DEFAULT_K = 8


def pick(is_nodule, probabilities, k: int = DEFAULT_K) -> dict[str, list[int]]:
    """Positions (into the arrays) of each kind's examples, the most telling first."""
    labels = np.asarray(is_nodule, dtype=bool)
    p = np.asarray(probabilities, dtype=np.float64)
    order = np.arange(len(p))
    nodules, others = order[labels], order[~labels]
    low = nodules[np.lexsort((nodules, p[nodules]))]            # lowest first, then by place
    high = nodules[np.lexsort((nodules, -p[nodules]))]
    alarms = others[np.lexsort((others, -p[others]))]
    return {"misses": low[:k].tolist(), "false_alarms": alarms[:k].tolist(),
            "best": high[:k].tolist()}


def save(run_dir: str, epoch: int, ds, rows, probabilities, losses, k: int = DEFAULT_K,
         keep: int = 5) -> tuple[str, dict[str, int]]:
    """Write epoch ``epoch``'s examples of the validation set ``ds`` (``rows``: the sample of
    each probability / loss); keep the newest ``keep`` epochs. Returns (path, count per kind)."""
    rows = np.asarray(rows, dtype=np.int64)
    is_nodule = np.asarray(ds.is_nodule)[rows]
    chosen = pick(is_nodule, probabilities, k)
    candidates = ds.candidate_list
    found: dict[int, dict] = {}          # sample -> its chunk and where it lies
    chunks: list[bytes] = []
    entries = []
    for kind in KINDS:
        for rank, j in enumerate(chosen[kind], 1):
            sample = int(rows[j])
            if sample not in found:
                found[sample] = {**ds.example_of(sample), "index": len(chunks)}
                chunks.append(np.ascontiguousarray(found[sample]["chunk"], "<i2").tobytes())
            where = found[sample]
            c = candidates[sample]
            entries.append({
                "kind": kind, "rank": rank, "sample": sample, "series_uid": c.series_uid,
                "center_xyz": [float(v) for v in c.center_xyz],
                "center_irc": where["center_irc"], "irc_in_chunk": where["irc_in_chunk"],
                "vx_size_xyz": where["vx_size_xyz"], "diameter_mm": float(c.diameter_mm),
                "is_nodule": bool(c.is_nodule), "probability": float(probabilities[j]),
                "loss": float(losses[j]), "chunk": where["index"]})
    path = examples_path(run_dir, epoch)
    write_examples(path, epoch, ds.width_irc, entries, chunks)
    prune_examples(run_dir, keep)
    return path, {kind: len(chosen[kind]) for kind in KINDS}
