"""A trivial baseline beside the model: rank the candidates by the mean HU of the centre of
their chunk (3 slices x 7 x 7 voxels: about the central 5 mm of a LUNA16 scan), no model at
all. A classifier that does not beat it by far has learnt brightness, not nodules; a data
set on which it scores high can be solved without looking at shape (issue 30: the demo's
first set scored 0.97 this way).

``BrightnessBaseline`` computes it once per validation set, in a thread beside the first
epoch, on at most ``MOST_NEGATIVES`` non-nodules (all the nodules): on real LUNA16 that is a
few hundred MB of chunk reads, not the whole validation set. No torch here."""

from __future__ import annotations

import logging
import pickle
import threading

import numpy as np

log = logging.getLogger(__name__)

#: The box whose mean is the score: (slices, rows, cols) round the chunk's centre voxel.
CENTRE_BOX = (3, 7, 7)
MOST_NEGATIVES = 4000


def central_hu(chunk: np.ndarray) -> float:
    """The mean HU of ``chunk``'s (index, row, col) central CENTRE_BOX."""
    lo = [(n - b) // 2 for n, b in zip(chunk.shape, CENTRE_BOX)]
    box = chunk[tuple(slice(s, s + b) for s, b in zip(lo, CENTRE_BOX))]
    return float(box.mean())


def brightness_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC of ``scores`` for ``labels`` (scikit-learn); None with one class only."""
    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def sample_rows(is_nodule: np.ndarray, seed: int, most_negatives: int = MOST_NEGATIVES):
    """Every nodule's row and at most ``most_negatives`` others (seeded), sorted."""
    is_nodule = np.asarray(is_nodule, dtype=bool)
    negatives = np.flatnonzero(~is_nodule)
    if len(negatives) > most_negatives:
        rng = np.random.default_rng([seed, 0xB1])
        negatives = rng.choice(negatives, size=most_negatives, replace=False)
    return np.sort(np.concatenate([np.flatnonzero(is_nodule), negatives]))


class BrightnessBaseline:
    """The baseline's AUC on a data set (anything with ``is_nodule`` and ``chunk_hu(ndx)``,
    such as LunaDataset), computed in a daemon thread on a copy of it. ``auc`` is None until
    it is done (or when it cannot be computed: one class, an unreadable chunk)."""

    def __init__(self, ds, seed: int = 0) -> None:
        self.auc: float | None = None
        self.samples = 0
        self._copy = pickle.loads(pickle.dumps(ds))     # its own open files and lookups
        self._seed = seed
        self._thread = threading.Thread(target=self._compute, name="brightness-baseline",
                                        daemon=True)
        self._thread.start()

    def _compute(self) -> None:
        try:
            ds = self._copy
            rows = sample_rows(ds.is_nodule, self._seed)
            scores = np.array([central_hu(ds.chunk_hu(int(i))) for i in rows])
            self.auc = brightness_auc(ds.is_nodule[rows], scores)
            self.samples = len(rows)
        except Exception as exc:                # a baseline must never stop a run
            log.warning("the brightness baseline could not be computed: %s", exc)
        finally:
            self._copy = None

    def result(self, wait_s: float = 0.0) -> float | None:
        """The AUC, waiting at most ``wait_s`` for it."""
        self._thread.join(wait_s)
        return self.auc
