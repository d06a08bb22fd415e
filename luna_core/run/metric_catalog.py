"""The metric catalog: every metric a run reports, said once. Its key (the name in
``EpochMetrics.metrics`` and the event file), its words (a long label, the usual name, a short
one for narrow tables), how a value prints, whether it is better high or low, its TensorBoard
tag and, for LUNA16's CPM, the keys of its 95 % interval.

Whatever shows, compares, ranks or writes a metric reads it here, so a new model's metrics
are one table entry each, and "which way is better" is decided nowhere else. Standard library
only: luna_core.run imports no torch or numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

HIGH, LOW = "high", "low"
#: The false positives per scan LUNA16's FROC is read at (luna_core.score.froc's FP_LEVELS).
FP_LEVELS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: The confusion counts a scored validation reports, at its probability threshold.
CONFUSION_COUNTS = ("tp", "fp", "tn", "fn")


@dataclass(frozen=True)
class Metric:
    key: str                      # the name in EpochMetrics.metrics and the event file
    label: str                    # long: what it is
    name: str                     # as text and tables say it: 'recall', 'CPM'
    short: str                    # for narrow tables
    spec: str = ".3f"             # format spec of a value ('.4f'; a percent: '.1f')
    better: str | None = None     # HIGH, LOW, or None (no better: a bound, a count, a setting)
    interval: tuple[str, str] | None = None    # keys of its 95 % interval (low, high)
    percent: bool = False         # a percentage (0-100)
    tag: str = field(default="")  # TensorBoard tag ('' at creation: the key, the book's tags)

    def __post_init__(self) -> None:
        if self.better not in (HIGH, LOW, None):
            raise ValueError(f"{self.key}: better must be {HIGH!r}, {LOW!r} or None")
        if not self.tag:
            object.__setattr__(self, "tag", self.key)

    # -- which way is better -------------------------------------------------------------
    @property
    def higher(self) -> bool:
        """Higher is better (False: lower is). A metric without a direction raises."""
        if self.better is None:
            raise ValueError(f"{self.key} has no better direction")
        return self.better == HIGH

    @property
    def lower(self) -> bool:
        """Lower is better (False: higher is). A metric without a direction raises."""
        return not self.higher

    def is_better(self, a: float, b: float) -> bool:
        """Is ``a`` strictly better than ``b``?"""
        return a > b if self.higher else a < b

    def order(self, value: float) -> float:
        """A sort key that puts better values first (ascending sort)."""
        return -value if self.higher else value

    def best(self, points: Iterable[tuple[int, float | None]]) -> tuple[int, float] | None:
        """(epoch, value) of the best of ``points`` (the first on a tie; None and nan
        skipped), None when there is none."""
        return best_point(points, self.higher)

    # -- how a value prints --------------------------------------------------------------
    @property
    def digits(self) -> int | None:
        """The decimals of its usual format ('.4f': 4); None when it has no fixed number."""
        if self.spec.startswith(".") and self.spec.endswith("f"):
            return int(self.spec[1:-1])
        return None

    def number(self, value: float, digits: int | None = None) -> str:
        """'0.1234', '99.7': the value alone (``digits``: decimals other than the usual)."""
        return format(value, self.spec if digits is None else f".{digits}f")

    def text(self, value: float | None, digits: int | None = None, missing: str = "-") -> str:
        """The value as it is shown ('12.5 %' for a percentage), ``missing`` when there is
        none (None or nan)."""
        if not _known(value):
            return missing
        return self.number(value, digits) + (" %" if self.percent else "")


def _known(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def best_point(points: Iterable[tuple[int, float | None]],
               higher: bool) -> tuple[int, float] | None:
    """(epoch, value) of the best point, higher or lower being better (the first on a tie;
    None and nan skipped)."""
    pick = None
    for epoch, v in points:
        if not _known(v):
            continue
        if pick is None or (v > pick[1] if higher else v < pick[1]):
            pick = (epoch, v)
    return pick


METRICS: dict[str, Metric] = {}


def _add(m: Metric) -> Metric:
    if m.key in METRICS:
        raise ValueError(f"metric {m.key} twice in the catalog")
    METRICS[m.key] = m
    return m


# -- the book's per-class metrics (luna_core.train.metrics.compute_metrics) ------------------
LOSS = _add(Metric("loss/all", "loss of all samples", "loss", "loss", ".4f", LOW))
LOSS_NEG = _add(Metric("loss/neg", "loss of the non-nodules", "loss neg", "neg", ".4f", LOW))
LOSS_POS = _add(Metric("loss/pos", "loss of the nodules", "loss pos", "pos", ".4f", LOW))
CORRECT = _add(Metric("correct/all", "% of all samples correct", "correct", "all %", ".1f",
                      HIGH, percent=True))
CORRECT_NEG = _add(Metric("correct/neg", "% of non-nodules correct", "non-nodules correct",
                          "neg %", ".1f", HIGH, percent=True))
CORRECT_POS = _add(Metric("correct/pos", "% of nodules correct", "nodules correct",
                          "nodules %", ".1f", HIGH, percent=True))
PRECISION = _add(Metric("pr/precision", "precision at the threshold", "precision", "prec",
                        ".3f", HIGH))
RECALL = _add(Metric("pr/recall", "recall at the threshold", "recall", "recall", ".3f", HIGH))
F1 = _add(Metric("pr/f1_score", "F1 score at the threshold", "F1", "F1", ".3f", HIGH))

# -- a scored validation's (luna_core.score.validation.ValidationScore.scalars) -------------
CPM_LOW = _add(Metric("froc/cpm_low", "LUNA16 CPM, low end of its 95 % interval", "CPM low",
                      "low", ".2f"))
CPM_HIGH = _add(Metric("froc/cpm_high", "LUNA16 CPM, high end of its 95 % interval",
                       "CPM high", "high", ".2f"))
CPM = _add(Metric("froc/cpm", "LUNA16 CPM", "CPM", "CPM", ".3f", HIGH,
                  interval=(CPM_LOW.key, CPM_HIGH.key)))


def level_name(fps: float) -> str:
    """'0.125', '1', '8': an FP level as the keys and the event file write it."""
    return f"{fps:g}"


#: The FROC's points: the sensitivity at each of FP_LEVELS false positives per scan.
SENS_AT: dict[float, Metric] = {
    fps: _add(Metric(f"froc/sens_at_{level_name(fps)}fp",
                     f"sensitivity at {level_name(fps)} false positives per scan",
                     f"sens@{level_name(fps)}FP", f"@{level_name(fps)}FP", ".2f", HIGH))
    for fps in FP_LEVELS}
SENS_AT_1FP = SENS_AT[1.0]
AUC_LOW = _add(Metric("roc/auc_low", "ROC AUC, low end of its 95 % interval", "AUC low",
                      "low", ".2f"))
AUC_HIGH = _add(Metric("roc/auc_high", "ROC AUC, high end of its 95 % interval", "AUC high",
                       "high", ".2f"))
AUC = _add(Metric("roc/auc", "ROC AUC", "AUC", "AUC", ".3f", HIGH,
                  interval=(AUC_LOW.key, AUC_HIGH.key)))
#: What a model that scores at random gets on the same candidates (no better direction).
CPM_CHANCE = _add(Metric("froc/cpm_chance", "LUNA16 CPM of a model scoring at random",
                         "CPM of chance", "chance", ".3f", None))
#: The trivial baseline beside the model (luna_core.score.brightness): the AUC of ranking
#: the validation candidates by their chunk's central HU; no better direction (not the
#: model's).
AUC_BRIGHTNESS = _add(Metric("roc/auc_central_hu", "ROC AUC of the central HU alone",
                             "central-HU AUC", "HU AUC", ".3f", None))
AVERAGE_PRECISION = _add(Metric("pr/average_precision", "average precision", "AP", "AP",
                                ".3f", HIGH))
#: The malignancy task's baseline to beat (the book's ch. 14): the AUC of ranking the
#: validation nodules by their annotated diameter, with its interval (not the model's: no
#: better direction).
AUC_DIAMETER_LOW = _add(Metric("roc/auc_diameter_low", "diameter-alone AUC, low end of its "
                               "95 % interval", "diameter AUC low", "low", ".2f"))
AUC_DIAMETER_HIGH = _add(Metric("roc/auc_diameter_high", "diameter-alone AUC, high end of "
                                "its 95 % interval", "diameter AUC high", "high", ".2f"))
AUC_DIAMETER = _add(Metric("roc/auc_diameter", "ROC AUC of the diameter alone",
                           "diameter alone", "diam AUC", ".3f", None,
                           interval=(AUC_DIAMETER_LOW.key, AUC_DIAMETER_HIGH.key)))
#: The model's AUC minus the diameter's, its 95 % interval from the same draws (paired):
#: above 0 at its low end, the model beats the baseline; below 0 at its high end, it loses.
AUC_VS_DIAMETER_LOW = _add(Metric("roc/auc_minus_diameter_low", "AUC minus the diameter-alone "
                                  "AUC, low end of its paired 95 % interval",
                                  "vs diameter low", "low", ".2f"))
AUC_VS_DIAMETER_HIGH = _add(Metric("roc/auc_minus_diameter_high", "AUC minus the diameter-alone "
                                   "AUC, high end of its paired 95 % interval",
                                   "vs diameter high", "high", ".2f"))
#: The confusion counts at the threshold (counts: no better direction).
CONFUSION: dict[str, Metric] = {
    what: _add(Metric(f"confusion/{what}", f"{what.upper()} at the threshold", what.upper(),
                      what.upper(), "g"))
    for what in CONFUSION_COUNTS}

# -- segmentation's pixel numbers (luna_core.train.seg_metrics), the book's ch. 13 tags ---------
PIXEL_TP = _add(Metric("percent_all/tp", "true positive pixels, % of the label's pixels",
                       "TP pixels", "TP %", ".1f", HIGH, percent=True))
PIXEL_FN = _add(Metric("percent_all/fn", "missed pixels, % of the label's pixels",
                       "FN pixels", "FN %", ".1f", LOW, percent=True))
PIXEL_FP = _add(Metric("percent_all/fp", "false positive pixels, % of the label's pixels",
                       "FP pixels", "FP %", ".1f", LOW, percent=True))
DICE = _add(Metric("seg/dice", "mean Dice of the slices", "Dice", "Dice", ".3f", HIGH))

# -- `luna-tui analyze` (the book's ch. 14): the challenge's detection score -----------------------
DETECTION_CPM_LOW = _add(Metric("detection/cpm_low", "detection CPM, low end of its 95 % "
                                "interval", "detection CPM low", "low", ".2f"))
DETECTION_CPM_HIGH = _add(Metric("detection/cpm_high", "detection CPM, high end of its 95 % "
                                 "interval", "detection CPM high", "high", ".2f"))
DETECTION_CPM = _add(Metric("detection/cpm", "LUNA16 detection CPM (every annotated nodule; "
                            "segmentation + classifier)", "detection CPM", "det CPM", ".3f",
                            HIGH, interval=(DETECTION_CPM_LOW.key, DETECTION_CPM_HIGH.key)))
LIST_CPM_LOW = _add(Metric("detection/list_cpm_low", "candidate-list CPM, low end of its 95 % "
                           "interval", "candidate-list CPM low", "low", ".2f"))
LIST_CPM_HIGH = _add(Metric("detection/list_cpm_high", "candidate-list CPM, high end of its "
                            "95 % interval", "candidate-list CPM high", "high", ".2f"))
#: The same score for candidates.csv's candidates scored by the classifier (the comparison:
#: no better direction of its own).
LIST_CPM = _add(Metric("detection/list_cpm", "LUNA16 detection CPM of the candidate list "
                       "(candidates.csv + classifier)", "candidate-list CPM", "list CPM",
                       ".3f", None, interval=(LIST_CPM_LOW.key, LIST_CPM_HIGH.key)))
NODULES_FOUND = _add(Metric("detection/found", "% of annotated nodules found (a detection "
                            "classified a nodule within 0.7 diameters)", "nodules found",
                            "found %", ".1f", HIGH, percent=True))
FP_PER_SCAN = _add(Metric("detection/fp_per_scan", "false positives per scan (classified a "
                          "nodule, no nodule near)", "FP per scan", "FP/scan", ".2f", LOW))

# -- the optimizer's settings, as TensorBoard scalars of a steered run ---------------------------
LR = _add(Metric("optim/lr", "learning rate", "lr", "lr", "g"))
MOMENTUM = _add(Metric("optim/momentum", "momentum", "momentum", "mom", "g"))


def metric(key: str) -> Metric:
    """The catalog's entry of ``key`` (KeyError: not a metric of the catalog)."""
    return METRICS[key]


def find(key: str) -> Metric | None:
    """The catalog's entry of ``key``, None when it has none."""
    return METRICS.get(key)


def is_better(key: str, a: float, b: float) -> bool:
    """Is ``a`` strictly a better value of ``key`` than ``b``?"""
    return METRICS[key].is_better(a, b)


def best_of(key: str, points: Iterable[tuple[int, float | None]]) -> tuple[int, float] | None:
    """(epoch, value) of the best of ``points`` for ``key`` (the first on a tie)."""
    return METRICS[key].best(points)


def fmt(key: str, value: float | None, digits: int | None = None, missing: str = "-") -> str:
    """A value of ``key`` as it is shown (``missing`` when there is none)."""
    return METRICS[key].text(value, digits, missing)


def tag_of(key: str) -> str:
    """The TensorBoard tag of ``key`` (a key the catalog does not know: the key itself)."""
    m = METRICS.get(key)
    return key if m is None else m.tag
