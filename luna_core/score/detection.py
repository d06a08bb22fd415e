"""The end-to-end score (the book's ch. 14, LUNA16's detection track): detections (a centre
in xyz and a probability each, from segmentation + grouping + classification, or the candidate
list scored by the classifier) against every annotated nodule of the analysed series.

- **Detection FROC / CPM**: as luna_core.score.froc (a detection hits a nodule within its
  radius; excluded regions; FP per scan; the CPM's seven levels), except that *every*
  annotated nodule of the analysed series counts: a nodule no detection reaches is a miss and
  caps the sensitivity. This is the number the challenge and the papers report.
- **The book's table** (ch. 14): rows non-nodule / benign / malignant, columns complete miss /
  filtered out (nodule probability below 0.5) / predicted benign / predicted malignant
  (malignancy probability 0.5 or more). A detection matches a nodule when their distance is
  below 0.7 × the nodule's diameter; a nodule matched by several detections takes the
  "highest" column among them (filtered out < benign < malignant); a detection matching
  several nodules counts for each; detections matching none fill the non-nodule row (which
  has no complete misses). Each nodule row sums to that class's nodules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from luna_core.score.froc import BOOTSTRAP_RESAMPLES, Findings, FrocResult, FrocScorer

ROWS = ("non-nodule", "benign", "malignant")
COLUMNS = ("complete miss", "filtered out", "predicted benign", "predicted malignant")
MATCH_DIAMETERS = 0.7            # the book's rule: within 0.7 x the nodule's diameter
THRESHOLD = 0.5


@dataclass(frozen=True)
class Detection:
    series_uid: str
    center_xyz: tuple[float, float, float]
    probability: float                     # nodule (the classifier's)
    malignancy: float | None = None        # the malignancy model's, when graded


def detection_froc(detections: Sequence[Detection], findings: Findings,
                   series: Sequence[str], bootstrap: int = BOOTSTRAP_RESAMPLES,
                   seed: int | Sequence[int] = 0) -> FrocResult:
    """The detection FROC over every annotated nodule of ``series`` (the analysed scans, with
    or without detections); misses count."""
    uids = [d.series_uid for d in detections]
    unknown = sorted(set(uids) - set(series))
    if unknown:
        raise ValueError(f"detections in series not analysed: {unknown[0]}")
    xyz = np.asarray([d.center_xyz for d in detections], dtype=np.float64).reshape(-1, 3)
    scorer = FrocScorer(uids, xyz, np.zeros(len(uids), bool), findings,
                        scans=list(series), count_misses=True)
    return scorer.score([d.probability for d in detections], bootstrap, seed)


def book_table(detections: Sequence[Detection], nodules: dict[str, list[tuple]],
               malignant: dict[str, list[bool]]) -> np.ndarray:
    """(3, 4) counts: the book's table (see the module). ``nodules``: per analysed series its
    nodules ``(x, y, z, diameter_mm)``; ``malignant``: per series, each nodule's class."""
    table = np.zeros((len(ROWS), len(COLUMNS)), dtype=np.int64)
    by_series: dict[str, list[Detection]] = {}
    for d in detections:
        by_series.setdefault(d.series_uid, []).append(d)
    for uid in set(nodules) | set(by_series):
        found = by_series.get(uid, [])
        matched_any = [False] * len(found)
        for k, (x, y, z, diameter) in enumerate(nodules.get(uid, ())):
            best = 0                                       # complete miss
            for j, d in enumerate(found):
                dist = float(np.linalg.norm(np.subtract(d.center_xyz, (x, y, z))))
                if dist < MATCH_DIAMETERS * diameter:
                    matched_any[j] = True
                    best = max(best, _column(d))
            table[2 if malignant[uid][k] else 1, best] += 1
        for j, d in enumerate(found):
            if not matched_any[j]:
                table[0, _column(d)] += 1
    return table


def _column(d: Detection) -> int:
    if d.probability < THRESHOLD:
        return 1                                           # filtered out
    if d.malignancy is not None and d.malignancy >= THRESHOLD:
        return 3
    return 2


def table_text(table: np.ndarray) -> list[str]:
    """The table as lines (the book's layout)."""
    width = max(len(r) for r in ROWS)
    head = " " * width + " | " + " | ".join(COLUMNS)
    lines = [head]
    for r, name in enumerate(ROWS):
        cells = [("" if (r == 0 and c == 0) else str(int(table[r, c]))).rjust(len(col))
                 for c, col in enumerate(COLUMNS)]
        lines.append(name.ljust(width) + " | " + " | ".join(cells))
    return lines


#: The challenge's submission format, as its evaluation script reads it.
SUBMISSION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "probability")


def write_submission(path: str, detections: Sequence[Detection]) -> None:
    """``detections`` as the challenge's submission CSV (atomically; floats written exactly:
    a re-read gives the same numbers)."""
    import csv
    import os

    from luna_core.fsutil import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, text=True) as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(SUBMISSION_COLUMNS)
        for d in detections:
            w.writerow([d.series_uid, *(repr(float(v)) for v in d.center_xyz),
                        repr(float(d.probability))])


def read_submission(path: str) -> list[Detection]:
    """A submission CSV (``SUBMISSION_COLUMNS``); a LunaInputError naming the file and line
    for anything else."""
    import csv
    import math

    from luna_core.errors import LunaInputError

    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise LunaInputError(f"cannot read the submission ({exc.strerror or exc})", path) from None
    out = []
    with f:
        rows = csv.reader(f)
        try:
            header = next(rows, None)
            if header is None or [h.strip() for h in header[:5]] != list(SUBMISSION_COLUMNS):
                raise LunaInputError("not a submission CSV: its header is not "
                                     + ",".join(SUBMISSION_COLUMNS), path, 1)
            for row in rows:
                if not row:
                    continue
                try:
                    x, y, z, p = (float(v) for v in row[1:5])
                    if len(row) < 5 or not all(map(math.isfinite, (x, y, z, p))) \
                            or not 0 <= p <= 1:
                        raise ValueError
                except ValueError:
                    raise LunaInputError("a row needs a series uid, three finite coordinates "
                                         "and a probability in [0, 1]", path,
                                         rows.line_num) from None
                out.append(Detection(row[0], (x, y, z), p))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise LunaInputError(f"unreadable CSV ({exc})", path, rows.line_num) from None
    return out
