"""The metric catalog (luna_core.run.metric_catalog): every key the loop emits has an entry,
which way is better is said there and nowhere else, and no product file but the catalog (and
the code that computes a metric) spells a metric key."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from luna_core.run import metric_catalog as mc
from luna_core.run.compare import EpochRow, RunHistory, best_text, direction
from luna_core.score.froc import FP_LEVELS
from luna_core.score.validation import ValidationScorer
from luna_core.train.metrics import METRICS_SIZE, compute_metrics

ROOT = Path(__file__).resolve().parent.parent
#: Where a key may be spelled: the catalog, and the code that computes the metrics.
KEY_HOMES = {"luna_core/run/metric_catalog.py", "luna_core/train/metrics.py",
             "luna_core/score/validation.py"}
#: Files other work had in hand when the catalog came (issue 29): they still spell a key or
#: pick a direction. Move them to the catalog, then take them out of here.
PENDING: set[str] = set()     # files still to move to the catalog (none)


def _loop_keys() -> set[str]:
    a = np.zeros((METRICS_SIZE, 6), dtype=np.float32)
    a[0] = [0, 0, 0, 1, 1, 0]
    a[1] = [0.1, 0.7, 0.2, 0.9, 0.3, 0.4]
    a[2] = [0.1, 1.2, 0.2, 0.1, 1.2, 0.5]
    return set(compute_metrics(a)["metrics"])


def _score_keys() -> set[str]:
    rng = np.random.default_rng(0)
    n = 40
    is_nodule = np.zeros(n, dtype=bool)
    is_nodule[::7] = True
    scorer = ValidationScorer([f"scan{i % 4}" for i in range(n)], rng.uniform(0, 100, (n, 3)),
                              is_nodule, None, bootstrap=20)
    return set(scorer.score(np.arange(n), rng.uniform(0, 1, n), epoch=1).scalars())


def test_every_key_the_loop_and_the_scorer_emit_has_an_entry():
    loop, score = _loop_keys(), _score_keys()
    assert loop == {"loss/all", "loss/neg", "loss/pos", "correct/all", "correct/neg",
                    "correct/pos", "pr/precision", "pr/recall", "pr/f1_score"}
    assert {"froc/cpm", "froc/cpm_low", "froc/cpm_high", "froc/sens_at_1fp", "roc/auc",
            "pr/average_precision", "confusion/tp"} <= score
    missing = (loop | score) - set(mc.METRICS)
    assert not missing, f"keys without a catalog entry: {sorted(missing)}"


def test_the_catalog_reads_the_froc_at_the_scorers_levels():
    assert mc.FP_LEVELS == FP_LEVELS
    assert [m.key for m in mc.SENS_AT.values()] == \
        [f"froc/sens_at_{f:g}fp" for f in FP_LEVELS]
    assert mc.SENS_AT_1FP.key == "froc/sens_at_1fp"


def test_entries_are_whole_and_tags_are_the_keys():
    for key, m in mc.METRICS.items():
        assert m.key == key and m.tag == key           # the book's TensorBoard tags
        assert m.label and m.name and m.short
        assert m.better in (mc.HIGH, mc.LOW, None)
        format(1.5, m.spec)
    low, high = mc.CPM.interval
    assert (low, high) == (mc.CPM_LOW.key, mc.CPM_HIGH.key)
    assert mc.AUC.interval == (mc.AUC_LOW.key, mc.AUC_HIGH.key)
    assert mc.AUC_DIAMETER.interval == (mc.AUC_DIAMETER_LOW.key, mc.AUC_DIAMETER_HIGH.key)
    assert mc.DETECTION_CPM.interval == (mc.DETECTION_CPM_LOW.key, mc.DETECTION_CPM_HIGH.key)
    assert mc.LIST_CPM.interval == (mc.LIST_CPM_LOW.key, mc.LIST_CPM_HIGH.key)
    with_interval = (mc.CPM, mc.AUC, mc.AUC_DIAMETER, mc.DETECTION_CPM, mc.LIST_CPM)
    assert all(mc.METRICS[k].interval is None for k in mc.METRICS
               if k not in {m.key for m in with_interval})
    for m in with_interval:             # an interval's ends are in the catalog themselves
        assert all(end in mc.METRICS for end in m.interval)


@pytest.mark.parametrize("key, better", [
    ("loss/all", "low"), ("loss/neg", "low"), ("loss/pos", "low"),
    ("correct/all", "high"), ("correct/neg", "high"), ("correct/pos", "high"),
    ("pr/precision", "high"), ("pr/recall", "high"), ("pr/f1_score", "high"),
    ("froc/cpm", "high"), ("froc/sens_at_0.125fp", "high"), ("froc/sens_at_8fp", "high"),
    ("roc/auc", "high"), ("pr/average_precision", "high"),
    ("froc/cpm_low", None), ("froc/cpm_high", None), ("confusion/tp", None),
    ("optim/lr", None),
])
def test_which_way_is_better(key, better):
    m = mc.metric(key)
    assert m.better == better
    if better is None:
        with pytest.raises(ValueError):
            _ = m.higher
        return
    assert m.higher == (better == "high") and m.lower == (better == "low")
    good, bad = (2.0, 1.0) if better == "high" else (1.0, 2.0)
    assert mc.is_better(key, good, bad) and not mc.is_better(key, bad, good)
    assert not mc.is_better(key, good, good)
    assert sorted([bad, good], key=m.order) == [good, bad]


def test_best_of_takes_the_first_on_a_tie_and_skips_missing_values():
    points = [(1, 0.5), (2, math.nan), (3, 0.2), (4, None), (5, 0.2), (6, 0.4)]
    assert mc.best_of("loss/all", points) == (3, 0.2)
    assert mc.best_of("pr/recall", points) == (1, 0.5)
    assert mc.best_of("froc/cpm", [(1, None), (2, math.nan)]) is None


def test_values_print_as_the_catalog_says():
    assert mc.fmt("loss/all", 0.123456) == "0.1235"
    assert mc.fmt("pr/recall", 0.5) == "0.500"
    assert mc.fmt("correct/pos", 12.345) == "12.3 %"
    assert mc.fmt("froc/cpm", None) == "-" and mc.fmt("roc/auc", math.nan, missing="—") == "—"
    assert mc.AUC.number(0.93456, 2) == "0.93"
    assert mc.LOSS.digits == 4 and mc.LR.digits is None
    assert mc.tag_of("loss/all") == "loss/all" and mc.tag_of("not/known") == "not/known"


def test_histories_pick_the_catalogs_direction():
    h = RunHistory("r", {}, [EpochRow(1, 10, {"loss/all": 0.3, "pr/recall": 0.2}),
                             EpochRow(2, 20, {"loss/all": 0.1, "pr/recall": 0.6}),
                             EpochRow(3, 30, {"loss/all": 0.2, "pr/recall": 0.6})])
    assert h.best("loss/all") == (2, 0.1) and h.best("pr/recall") == (2, 0.6)
    assert best_text(h, "loss/all") == "0.1000 E2" and best_text(h, "pr/recall") == "0.600 E2"
    assert h.best("loss/all", False) == (2, 0.1)      # callers from before the catalog
    assert direction("pr/recall") is True and direction("loss/all") is False
    with pytest.raises(ValueError):
        h.best("loss/all", True)                       # a direction the catalog does not say


def _product_files():
    for package in ("luna_core", "luna_tui"):
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def test_no_product_file_but_the_catalogs_spells_a_metric_key():
    prefixes = sorted({k.split("/")[0] for k in mc.METRICS})
    literal = re.compile(r"""[fFrRbB]?["'](?:""" + "|".join(map(re.escape, prefixes)) + ")/")
    spelled = {name for name, text in _product_files() if literal.search(text)}
    assert spelled - KEY_HOMES - PENDING == set(), \
        "use luna_core.run.metric_catalog's entries instead of key literals"


def test_no_product_file_but_the_catalog_says_which_way_is_better():
    said = re.compile(r"(?:\.best|best_text)\([^()]*,\s*(?:True|False)\b")
    deciding = {name for name, text in _product_files() if said.search(text)}
    assert deciding - PENDING == set()
