"""What scoring a validation costs at LUNA16 scale (issue 22): FROC, CPM with its bootstrap
interval (1,000 resamples), AUC, AP, the PR curve and the histograms, as the loop does after
every validation.

Simulated: a validation set the size of the book's split of LUNA16 (55,107 candidates over
888 scans, 1,186 annotated nodules of which 95 % are hit by one to three candidates: more
nodules than a 1-in-10 candidate split holds, the worst case), the other candidates scattered
through each scan, 400 excluded findings (diameter -1) each with a candidate inside;
probabilities from a model that ranks nodules above most of the rest (CPM about 0.78).
Times the one-off matching (once per run) and ``score`` (once per validation).

    python benchmarks/froc_score.py [--resamples 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import machine_info, print_machine

from luna_core.score.froc import Findings
from luna_core.score.validation import ValidationScorer


def luna_sized(rng, scans=888, candidates=55_107, nodules=1_186, excluded=400):
    uids = [f"1.3.6.1.4.1.14519.5.2.1.6279.6001.{k:030d}" for k in range(scans)]
    nod_scan = rng.integers(0, scans, nodules)
    nod_xyz = rng.uniform(-150, 150, (nodules, 3))
    nod_d = rng.uniform(3, 30, nodules)
    ann: dict[str, list] = {}
    for s, c, d in zip(nod_scan.tolist(), nod_xyz, nod_d.tolist()):
        ann.setdefault(uids[s], []).append((*c, d))
    exc: dict[str, list] = {}
    for s in rng.integers(0, scans, excluded).tolist():
        exc.setdefault(uids[s], []).append((*rng.uniform(-150, 150, 3), -1.0))
    # ~95 % of the nodules have candidates (some two or three), within a third of the radius
    hit_nodules = rng.permutation(nodules)[:int(0.95 * nodules)]
    pick = np.concatenate([hit_nodules, rng.choice(hit_nodules, 200)])
    hits = len(pick)
    offset = rng.normal(0, 1, (hits, 3))
    offset *= (nod_d[pick] / 6 * rng.random(hits) / np.linalg.norm(offset, axis=1))[:, None]
    exc_points = [(s, c) for s, u in enumerate(uids) for *c, _d in exc.get(u, ())]
    near_exc = np.array([c for _s, c in exc_points]) + rng.normal(0, 1, (len(exc_points), 3))
    rest = candidates - hits - len(exc_points)
    cand_scan = np.concatenate([nod_scan[pick], [s for s, _c in exc_points],
                                rng.integers(0, scans, rest)])
    cand_xyz = np.concatenate([nod_xyz[pick] + offset, near_exc,
                               rng.uniform(-160, 160, (rest, 3))])
    labels = np.zeros(candidates, bool)
    labels[:hits] = True
    p = np.clip(rng.beta(1, 30, candidates) + labels * rng.beta(2, 8, candidates), 0, 1)
    return [uids[s] for s in cand_scan.tolist()], cand_xyz, labels, Findings(ann, exc), p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print_machine(machine_info())
    rng = np.random.default_rng(0)
    uids, xyz, labels, findings, p = luna_sized(rng)
    scorer = ValidationScorer(uids, xyz, labels, findings, bootstrap=args.resamples)
    rows = np.arange(len(uids))
    t0 = time.perf_counter()
    scorer._scorer(rows)                              # the matching, once per run
    match_s = time.perf_counter() - t0
    times = []
    for epoch in range(1, args.repeat + 1):
        t0 = time.perf_counter()
        score = scorer.score(rows, p, epoch)
        times.append(time.perf_counter() - t0)
    f = score.froc
    print(f"validation set: {len(uids):,} candidates, {f.scans} scans, {f.nodules} nodules "
          f"counted (+{f.nodules_without_candidate} without a candidate), "
          f"{f.excluded_candidates} excluded candidates")
    print(f"matching (once per run): {match_s:.3f} s")
    print(f"score with {args.resamples} bootstrap resamples: best {min(times):.3f} s, "
          f"median {sorted(times)[len(times) // 2]:.3f} s over {len(times)}")
    print(f"CPM {f.cpm:.3f} [{f.cpm_low:.3f}-{f.cpm_high:.3f}], AUC {score.auc:.3f}")


if __name__ == "__main__":
    main()
