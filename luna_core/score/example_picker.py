"""Which validation candidates to keep for a person to look at, and keeping them: after each
validation, up to ``k`` of each kind as the threshold decides it (a candidate is called a
nodule when it scores above 0.5, as recall and precision count): the misses (nodules at or
below it, lowest first), the false alarms (non-nodules above it, highest first) and the best
hits (nodules above it, highest first). A nodule is a miss or a hit, never both; a kind may
have none. Ties are broken by the sample's place in the set (so a resumed run keeps the same
ones). Their chunks come from the chunk store by
index (no pass over the data); the file format is luna_core.run.example_file'."""

from __future__ import annotations

import numpy as np

from luna_core.run.example_file import (
    EXAMPLE_THRESHOLD,
    KINDS,
    KINDS_OF_TASK,
    examples_path,
    prune_examples,
    write_examples,
)

DEFAULT_K = 8


def pick(is_nodule, probabilities, k: int = DEFAULT_K) -> dict[str, list[int]]:
    """Positions (into the arrays) of each kind's examples, the most telling first."""
    labels = np.asarray(is_nodule, dtype=bool)
    p = np.asarray(probabilities, dtype=np.float64)
    order = np.arange(len(p))
    called = p > EXAMPLE_THRESHOLD
    missed, hit, alarms = order[labels & ~called], order[labels & called], order[~labels & called]
    low = missed[np.lexsort((missed, p[missed]))]               # lowest first, then by place
    high = hit[np.lexsort((hit, -p[hit]))]
    alarms = alarms[np.lexsort((alarms, -p[alarms]))]
    return {"misses": low[:k].tolist(), "false_alarms": alarms[:k].tolist(),
            "best": high[:k].tolist()}


def save(run_dir: str, epoch: int, ds, rows, probabilities, losses, k: int = DEFAULT_K,
         keep: int = 5, task: str = "nodule") -> tuple[str, dict[str, int]]:
    """Write epoch ``epoch``'s examples of the validation set ``ds`` (``rows``: the sample of
    each probability / loss); keep the newest ``keep`` epochs. Returns (path, count per kind).
    The positives are ``ds.is_nodule``'s, or for --task malignancy ``ds.malignant``'s (its
    kinds: malignant graded benign, benign graded malignant, malignant graded best)."""
    rows = np.asarray(rows, dtype=np.int64)
    positive = np.asarray(ds.malignant if task == "malignancy" else ds.is_nodule)[rows]
    picked = pick(positive, probabilities, k)
    kinds = KINDS_OF_TASK[task]
    chosen = {kind: picked[what] for kind, what in zip(kinds, KINDS, strict=True)}
    candidates = ds.candidate_list
    found: dict[int, dict] = {}          # sample -> its chunk and where it lies
    chunks: list[bytes] = []
    entries = []
    for kind in kinds:
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
                "is_nodule": bool(positive[j]), "probability": float(probabilities[j]),
                "loss": float(losses[j]), "chunk": where["index"]})
    path = examples_path(run_dir, epoch)
    write_examples(path, epoch, ds.width_irc, entries, chunks, task)
    prune_examples(run_dir, keep)
    return path, {kind: len(chosen[kind]) for kind in kinds}
