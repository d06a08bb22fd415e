"""Is one run better than another, or is the difference noise? A paired bootstrap of the CPM
over the validation scans both runs scored.

Two runs' CPM intervals overlap on the demo set even when one run is better every time: the
intervals are wide because the scans are few, and most of that width is shared (a scan with
a hard nodule is hard for both runs). Pairing takes it out: each resample draws the shared
scans with replacement (luna_core.score.intervals.scan_weights) and scores *both* runs on the
same draw; the 95 % interval of the difference says whether one is ahead ("#1 ahead") or not
("no clear winner").

The candidates compared are those both runs validated (same series, same centre); the
nodules and excluded regions are the first run's (read from its validation file, so no data
set is needed). Used by `luna-tui compare`, `luna-tui runs` and the demo's story.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from luna_core.errors import LunaInputError
from luna_core.run.compare import RunHistory, best_cpm_files
from luna_core.run.metric_catalog import CPM
from luna_core.score import validation_file
from luna_core.score.froc import BOOTSTRAP_RESAMPLES, FrocScorer
from luna_core.score.intervals import scan_weights
from luna_core.score.validation_file import ValidationScores


@dataclass(frozen=True)
class PairedCpm:
    cpm_a: float
    cpm_b: float
    low: float                  # 95 % interval of cpm_a - cpm_b over paired resamples
    high: float
    scans: int                  # validation scans both runs scored
    candidates: int
    resamples: int

    @property
    def difference(self) -> float:
        return self.cpm_a - self.cpm_b

    @property
    def clear(self) -> bool:
        """The interval of the difference leaves out 0: one run is ahead."""
        return self.low > 0 or self.high < 0


def paired_cpm(a: ValidationScores, b: ValidationScores,
               resamples: int = BOOTSTRAP_RESAMPLES,
               seed: int | Sequence[int] = 0) -> PairedCpm | None:
    """``a`` against ``b`` on the candidates both scored; None when they share no candidate
    of a scan with a nodule (or the resamples draw none)."""
    where_b = {(u, *c): k for k, (u, c) in enumerate(zip(b.uids, b.xyz.tolist(), strict=True))}
    rows_a, rows_b = [], []
    for k, (u, c) in enumerate(zip(a.uids, a.xyz.tolist(), strict=True)):
        j = where_b.get((u, *c))
        if j is not None and a.is_nodule[k] == b.is_nodule[j]:
            rows_a.append(k)
            rows_b.append(j)
    if not rows_a:
        return None
    ia, ib = np.asarray(rows_a), np.asarray(rows_b)
    scorer = FrocScorer([a.uids[k] for k in rows_a], a.xyz[ia], a.is_nodule[ia], a.findings)
    if not scorer.nodules:
        return None
    pa, pb = a.p[ia], b.p[ib]
    weights = scan_weights(scorer.scans, resamples, seed)
    diff = scorer.cpm_draws(pa, weights) - scorer.cpm_draws(pb, weights)
    diff = diff[~np.isnan(diff)]
    if not len(diff):
        return None
    low, high = np.percentile(diff, [2.5, 97.5])
    cpm_a = scorer.score(pa, bootstrap=0).cpm
    cpm_b = scorer.score(pb, bootstrap=0).cpm
    return PairedCpm(float(cpm_a), float(cpm_b), float(low), float(high), scorer.scans,
                     len(rows_a), resamples)


def paired_text(p: PairedCpm, name_a: str, name_b: str) -> str:
    """'#1 vs #2: CPM 0.870 vs 0.861, difference +0.009 [-0.041 to +0.062] over 12 shared
    scans: no clear winner'."""
    winner = name_a if p.difference > 0 else name_b
    verdict = f"{winner} ahead" if p.clear else "no clear winner"
    return (f"{name_a} vs {name_b}: CPM {p.cpm_a:.3f} vs {p.cpm_b:.3f}, difference "
            f"{p.difference:+.3f} [{p.low:+.3f} to {p.high:+.3f}] over {p.scans} shared "
            f"scan{'s' * (p.scans != 1)}: {verdict}")


def paired_lines(histories: list[RunHistory], names: list[str], most: int = 8) -> list[str]:
    """The run with the best CPM against each other run with one (the next ``most`` by
    CPM), each at its best CPM's epoch; a line saying why where a pair cannot be scored.
    Empty when fewer than two runs have a CPM."""
    ranked = sorted((k for k, h in enumerate(histories) if h.best(CPM.key)),
                    key=lambda k: CPM.order(histories[k].best(CPM.key)[1]))
    if len(ranked) < 2:
        return []
    files = best_cpm_files(histories)
    lead, others = ranked[0], ranked[1:1 + most]
    lines = [f"paired bootstrap, each run at its best CPM ({BOOTSTRAP_RESAMPLES:,} resamples "
             "of the validation scans both scored; 'no clear winner': the difference's 95 % "
             "interval holds 0):"]
    cache: dict[str, ValidationScores] = {}

    def scores(k: int) -> ValidationScores | str:
        path = files[k]
        if path is None:
            epoch = histories[k].best(CPM.key)[0]
            return f"{names[k]} kept no per-candidate scores for E{epoch} (an older run)"
        if path not in cache:
            try:
                cache[path] = validation_file.read(path)
            except LunaInputError as exc:
                return str(exc)
        return cache[path]

    for k in others:
        a, b = scores(lead), scores(k)
        if isinstance(a, str) or isinstance(b, str):
            lines.append(f"  {names[lead]} vs {names[k]}: " + (a if isinstance(a, str) else b))
            continue
        p = paired_cpm(a, b)
        lines.append("  " + (paired_text(p, names[lead], names[k]) if p is not None else
                             f"{names[lead]} vs {names[k]}: no validation scan with a nodule "
                             "in common"))
    if len(ranked) - 1 > most:
        lines.append(f"  ({len(ranked) - 1 - most} more runs not paired)")
    return lines
