"""A validation's score per candidate, kept in the run folder, so that two runs can be
compared on the same scans afterwards (luna_core.score.paired) without their models.

File: ``RUN_DIR/validation/E003.npz`` (epoch 3; the path is luna_core.run.compare's
``validation_file``), written atomically after each validation, every epoch kept (about
1.8 MB an epoch for the real release's validation set at --val-stride 10, 0.2 MB for the
demo's). Self-contained: the candidates scored (series, centre xyz, label), the positive
probability of each, and the annotated nodules and excluded regions of those series, so the
FROC can be recomputed exactly as the run scored it. Arrays only (no pickle):

- ``format`` (1), ``epoch``;
- ``series`` (S,) the series uids; ``scan`` (n,) int32, each candidate's series as a row
  of ``series``; ``xyz`` (n, 3) float64 mm; ``is_nodule`` (n,) bool; ``p`` (n,) float32;
- ``nodules`` and ``excluded`` (k, 5) float64 rows ``scan, x, y, z, diameter_mm``;
  ``has_findings`` (): False when the run had no annotations (each positive candidate its
  own nodule).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np

from luna_core.errors import LunaInputError
from luna_core.fsutil import atomic_write
from luna_core.run.compare import validation_file
from luna_core.score.froc import Findings

FORMAT = 1
_ARRAYS = ("format", "epoch", "series", "scan", "xyz", "is_nodule", "p", "nodules",
           "excluded", "has_findings")


@dataclass(frozen=True)
class ValidationScores:
    """One run's validation, candidate by candidate (see the module's docstring)."""

    path: str
    epoch: int
    uids: list[str]              # per candidate
    xyz: np.ndarray              # (n, 3)
    is_nodule: np.ndarray        # (n,) bool
    p: np.ndarray                # (n,) positive probability
    findings: Findings | None


def save(run_dir: str, epoch: int, uids, xyz, is_nodule, p,
         findings: Findings | None) -> str:
    """Write one validation's scores (the candidates in any order); returns the path."""
    uids = list(uids)
    series = sorted(set(uids))
    code = {u: k for k, u in enumerate(series)}

    def rows(table) -> np.ndarray:
        out = [(code[u], *r) for u in series for r in table.get(u, ())]
        return np.asarray(out, dtype=np.float64).reshape(len(out), 5)

    path = validation_file(run_dir, epoch)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path) as f:
        np.savez(f, format=np.int64(FORMAT), epoch=np.int64(epoch),
                 series=np.asarray(series, dtype=str),
                 scan=np.fromiter((code[u] for u in uids), np.int32, len(uids)),
                 xyz=np.asarray(xyz, dtype=np.float64).reshape(len(uids), 3),
                 is_nodule=np.asarray(is_nodule, dtype=bool).reshape(len(uids)),
                 p=np.asarray(p, dtype=np.float32).reshape(len(uids)),
                 nodules=rows(findings.nodules if findings else {}),
                 excluded=rows(findings.excluded if findings else {}),
                 has_findings=np.bool_(findings is not None))
    return path


def read(path: str) -> ValidationScores:
    """The file at ``path``; a LunaInputError naming it when it is not one (missing, cut
    short, arrays of the wrong shape or kind)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _ARRAYS if k not in z.files]
            if missing:
                raise LunaInputError(f"not a validation file: no {', '.join(missing)}", path)
            a = {k: z[k] for k in _ARRAYS}
    except LunaInputError:
        raise
    except FileNotFoundError:
        raise LunaInputError("no such validation file", path) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise LunaInputError(f"not a readable validation file ({exc})", path) from None
    return _checked(path, a)


def _checked(path: str, a: dict) -> ValidationScores:
    def bad(why: str) -> LunaInputError:
        return LunaInputError(f"not a validation file: {why}", path)

    if a["format"].shape != () or int(a["format"]) != FORMAT:
        raise bad(f"format {a['format']!r}, this version reads {FORMAT}")
    n = a["p"].shape[0] if a["p"].ndim == 1 else -1
    series = a["series"]
    if n < 0 or series.ndim != 1 or series.dtype.kind != "U":
        raise bad("p or series is not a list")
    shapes = {"scan": (n,), "xyz": (n, 3), "is_nodule": (n,)}
    for key, shape in shapes.items():
        if a[key].shape != shape:
            raise bad(f"{key} has shape {a[key].shape}, expected {shape}")
    for key in ("nodules", "excluded"):
        if a[key].ndim != 2 or a[key].shape[1] != 5:
            raise bad(f"{key} has shape {a[key].shape}, expected (k, 5)")
    scans = [a["scan"], a["nodules"][:, 0], a["excluded"][:, 0]]
    if any(len(s) and (s.min() < 0 or s.max() >= len(series)) for s in scans):
        raise bad("a series number outside the series list")
    p = a["p"].astype(np.float64)
    if not np.isfinite(p).all() or (len(p) and (p.min() < 0 or p.max() > 1)):
        raise bad("a probability that is not a number in [0, 1]")
    uids = series[a["scan"]].tolist()

    def table(rows: np.ndarray) -> dict:
        out: dict[str, list] = {}
        for r in rows.tolist():
            out.setdefault(str(series[int(r[0])]), []).append(tuple(r[1:]))
        return out

    findings = (Findings(table(a["nodules"]), table(a["excluded"]))
                if bool(a["has_findings"]) else None)
    return ValidationScores(path, int(a["epoch"]), uids, a["xyz"].astype(np.float64),
                            a["is_nodule"].astype(bool), p, findings)
