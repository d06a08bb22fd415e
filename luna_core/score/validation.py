"""Everything a validation says beyond the book's three lines: LUNA16's FROC / CPM (with its
bootstrap interval), ROC AUC and average precision (scikit-learn), the confusion counts at
the threshold, the PR curve and the two prediction histograms, thinned for the event file.

``ValidationScorer`` is built once per run from the validation set and the annotations; the
loop calls ``score`` after each validation with the probabilities it collected.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from luna_core.run import metric_catalog as mc
from luna_core.score import validation_file
from luna_core.score.brightness import BrightnessBaseline
from luna_core.score.detection import Detection, write_submission
from luna_core.score.froc import BOOTSTRAP_RESAMPLES, FP_LEVELS, Findings, FrocResult, FrocScorer
from luna_core.score.intervals import auc_interval, scan_weights

log = logging.getLogger(__name__)

EXCLUDED_CSV = "annotations_excluded.csv"
HISTOGRAM_BINS = 20
PR_POINTS = 64
THRESHOLD = 0.5


@dataclass(frozen=True)
class ValidationScore:
    froc: FrocResult
    auc: float | None                 # None when the set has one class only
    average_precision: float | None
    confusion: dict[str, int]         # tp, fp, tn, fn at THRESHOLD
    pr_recall: tuple[float, ...]
    pr_precision: tuple[float, ...]
    hist_pos: tuple[int, ...]         # nodules per probability bin (HISTOGRAM_BINS over 0-1)
    hist_neg: tuple[int, ...]
    #: the trivial baseline's AUC (luna_core.score.brightness); None until computed
    brightness_auc: float | None = None
    #: the AUC's 95 % interval over the same scan resamples as the CPM's
    auc_low: float | None = None
    auc_high: float | None = None

    def scalars(self) -> dict[str, float]:
        """TensorBoard tags and values (undefined ones left out)."""
        out: dict[str, float] = {}
        f = self.froc
        if f.cpm is not None:
            out[mc.CPM.key] = f.cpm
            for fps, sens in zip(FP_LEVELS, f.sensitivity):
                out[mc.SENS_AT[fps].key] = sens
        if f.cpm_low is not None:
            low, high = mc.CPM.interval
            out[low], out[high] = f.cpm_low, f.cpm_high
        if f.chance_cpm is not None:
            out[mc.CPM_CHANCE.key] = f.chance_cpm
        if self.auc is not None:
            out[mc.AUC.key] = self.auc
        if self.auc_low is not None:
            low, high = mc.AUC.interval
            out[low], out[high] = self.auc_low, self.auc_high
        if self.average_precision is not None:
            out[mc.AVERAGE_PRECISION.key] = self.average_precision
        if self.brightness_auc is not None:
            out[mc.AUC_BRIGHTNESS.key] = self.brightness_auc
        for key, count in self.confusion.items():     # at THRESHOLD: tp, fp, tn, fn
            out[mc.CONFUSION[key].key] = float(count)
        return out

    def to_dict(self) -> dict:
        """The event file's ``score`` of a validation (plain JSON)."""
        f = self.froc
        return {
            "cpm": f.cpm, "cpm_low": f.cpm_low, "cpm_high": f.cpm_high,
            "fp_levels": list(FP_LEVELS), "sensitivity": list(f.sensitivity),
            "curve_fps": _rounded(f.curve_fps), "curve_sens": _rounded(f.curve_sens),
            "scans": f.scans, "nodules": f.nodules,
            "nodules_without_candidate": f.nodules_without_candidate,
            "excluded_candidates": f.excluded_candidates,
            "nodule_source": f.nodule_source,
            "nodules_found_at_threshold": sum(1 for s in f.nodule_scores if s >= THRESHOLD),
            "chance_cpm": f.chance_cpm,
            "auc": self.auc, "auc_low": self.auc_low, "auc_high": self.auc_high,
            "average_precision": self.average_precision,
            "brightness_auc": self.brightness_auc,
            "confusion": dict(self.confusion), "threshold": THRESHOLD,
            "pr_recall": _rounded(self.pr_recall), "pr_precision": _rounded(self.pr_precision),
            "hist_bins": HISTOGRAM_BINS, "hist_pos": list(self.hist_pos),
            "hist_neg": list(self.hist_neg),
        }

    def log_line(self, epoch: int) -> str:
        """'E3 val_froc CPM 0.612 [0.55–0.67], sens@1FP 0.70, AUC 0.93' (after the book's
        three lines of a validation)."""
        f = self.froc
        if f.cpm is None:
            head = "CPM - (no nodule in the validation set)"
        else:
            ci = ("" if f.cpm_low is None
                  else f" [{f.cpm_low:.2f}–{f.cpm_high:.2f}]")
            head = f"CPM {f.cpm:.3f}{ci}, sens@1FP {f.sens_at(1.0):.2f}"
        auc = "-" if self.auc is None else f"{self.auc:.2f}"
        if self.brightness_auc is not None:
            auc += f" (central HU alone {self.brightness_auc:.2f})"
        tail = f", AUC {auc}, {f.nodules} nodules in {f.scans} scans"
        if f.nodules_without_candidate:
            tail += f" (+{f.nodules_without_candidate} with no validation candidate)"
        return f"E{epoch} {'val_froc':8} {head}{tail}"


def _rounded(values) -> list[float]:
    return [round(float(v), 5) for v in values]


def read_findings(annotations_path) -> Findings | None:
    """The nodules of annotations.csv and, when it lies beside it, the excluded regions of
    annotations_excluded.csv. None (each positive candidate its own nodule) when there is no
    annotations.csv or it lists no nodule at all."""
    from luna_core.data.csvread import read_annotations

    path = Path(annotations_path) if annotations_path is not None else None
    if path is None or not path.is_file():
        return None
    nodules = read_annotations(path)
    if not nodules:
        return None
    excluded_path = path.with_name(EXCLUDED_CSV)
    excluded = read_annotations(excluded_path, excluded=True) if excluded_path.is_file() else {}
    return Findings(nodules, excluded)


class ValidationScorer:
    """Scores validations of one candidate set: ``uids``, ``xyz`` (n, 3) and ``is_nodule``
    per sample; ``findings`` from the annotations (None: each positive its own nodule)."""

    def __init__(self, uids, xyz, is_nodule, findings: Findings | None,
                 bootstrap: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                 baseline: BrightnessBaseline | None = None) -> None:
        self.baseline = baseline
        self.uids, self.xyz = list(uids), np.asarray(xyz, dtype=np.float64)
        self.is_nodule = np.asarray(is_nodule, dtype=bool)
        self.findings = findings
        self.bootstrap, self.seed = bootstrap, seed
        self._scorers: dict[bytes, FrocScorer] = {}

    @classmethod
    def for_dataset(cls, ds, bootstrap: int = BOOTSTRAP_RESAMPLES,
                    seed: int = 0) -> ValidationScorer:
        findings = read_findings(getattr(ds, "annotations_path", None))
        if findings is None:
            log.info("FROC: no nodules in annotations.csv: each positive candidate counts as "
                     "its own nodule")
        uids, xyz, is_nodule = ds.candidate_columns()
        # scikit-learn takes ~0.9 s to import: done beside the first epoch, not after it
        threading.Thread(target=_import_sklearn, name="import-sklearn", daemon=True).start()
        baseline = BrightnessBaseline(ds, seed) if hasattr(ds, "chunk_hu") else None
        return cls(uids, xyz, is_nodule, findings, bootstrap=bootstrap, seed=seed,
                   baseline=baseline)

    def _scorer(self, rows: np.ndarray) -> FrocScorer:
        key = rows.tobytes()
        scorer = self._scorers.get(key)
        if scorer is None:
            scorer = FrocScorer([self.uids[i] for i in rows.tolist()], self.xyz[rows],
                                self.is_nodule[rows], self.findings)
            self._scorers = {key: scorer}         # one set at a time (the run's)
        return scorer

    def score(self, rows, probabilities, epoch: int) -> ValidationScore:
        """The score of the samples ``rows`` (their places in the set) with these positive
        probabilities; the bootstrap is seeded by (seed, epoch), so a resumed run gives the
        same numbers."""
        rows = np.asarray(rows, dtype=np.int64)
        p = np.asarray(probabilities, dtype=np.float64)
        labels = self.is_nodule[rows]
        scorer = self._scorer(rows)
        seed = [self.seed, epoch]
        froc = scorer.score(p, self.bootstrap, seed=seed)
        auc_low, auc_high = (auc_interval(p, labels, scorer.scan_of_candidate,
                                          scan_weights(scorer.scans, self.bootstrap, seed))
                             if self.bootstrap > 0 else (None, None))
        brightness = None if self.baseline is None else self.baseline.result(wait_s=60.0)
        return ValidationScore(froc=froc, **_ranking(labels, p), brightness_auc=brightness,
                               auc_low=auc_low, auc_high=auc_high)


    def save(self, run_dir: str, epoch: int, rows, probabilities) -> str:
        """Write the scores of the samples ``rows`` (a sample twice, as a padded last batch
        of several ranks gives: its first) to the run's validation file of ``epoch``."""
        rows = np.asarray(rows, dtype=np.int64)
        rows, first = np.unique(rows, return_index=True)
        p = np.asarray(probabilities, dtype=np.float64)[first]
        uids = [self.uids[i] for i in rows.tolist()]
        write_submission(predictions_file(run_dir, epoch),
                         [Detection(u, tuple(c), float(v)) for u, c, v in
                          zip(uids, self.xyz[rows].tolist(), p.tolist(), strict=True)])
        return validation_file.save(run_dir, epoch, uids, self.xyz[rows], self.is_nodule[rows],
                                    p, self.findings)


def predictions_file(run_dir: str, epoch: int) -> str:
    """A validation's predictions in the challenge's submission format (re-score offline)."""
    import os

    return os.path.join(run_dir, "predictions", f"E{epoch:03d}.csv")


def _import_sklearn() -> None:
    import sklearn.metrics  # noqa: F401


def _ranking(labels: np.ndarray, p: np.ndarray) -> dict:
    """AUC, AP and the PR curve (scikit-learn), confusion counts and histograms."""
    pred = p > THRESHOLD
    confusion = {"tp": int((labels & pred).sum()), "fp": int((~labels & pred).sum()),
                 "tn": int((~labels & ~pred).sum()), "fn": int((labels & ~pred).sum())}
    bins = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    hist_pos = np.histogram(p[labels], bins)[0]
    hist_neg = np.histogram(p[~labels], bins)[0]
    auc = ap = None
    recall: list[float] = []
    precision: list[float] = []
    if labels.any() and not labels.all():
        from sklearn.metrics import (
            average_precision_score,
            precision_recall_curve,
            roc_auc_score,
        )

        auc = float(roc_auc_score(labels, p))
        ap = float(average_precision_score(labels, p))
        prec, rec, _ = precision_recall_curve(labels, p)
        # thinned to PR_POINTS recalls spread evenly, each with the best precision there
        grid = np.linspace(0.0, 1.0, PR_POINTS)
        order = np.argsort(rec)
        rec, prec = rec[order], prec[order]
        best = np.maximum.accumulate(prec[::-1])[::-1]          # best precision at >= recall
        at = np.searchsorted(rec, grid, side="left")
        keep = at < len(rec)
        recall, precision = grid[keep].tolist(), best[at[keep]].tolist()
    return dict(auc=auc, average_precision=ap, confusion=confusion,
                pr_recall=tuple(recall), pr_precision=tuple(precision),
                hist_pos=tuple(int(v) for v in hist_pos), hist_neg=tuple(int(v) for v in hist_neg))
