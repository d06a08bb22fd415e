"""Decisions between runs carry their uncertainty: each validation's scores per candidate are
kept (luna_core.score.validation_file), and two runs' CPMs are compared by a paired bootstrap
over the scans both scored (luna_core.score.paired). Controlled inputs: the probabilities are
set by the test, never learnt."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

from luna_core.errors import LunaInputError
from luna_core.run.compare import validation_file as validation_path
from luna_core.score import validation_file
from luna_core.score.froc import Findings, FrocScorer
from luna_core.score.paired import paired_cpm, paired_lines, paired_text

SCANS = 30
FPS_PER_SCAN = 12


def _set(seed: int = 0, scans: int = SCANS):
    """Per scan one nodule (two candidates hit it) and FPS_PER_SCAN non-nodules, an
    excluded region round one of them; a difficulty per scan: the nodule's score in run A."""
    rng = np.random.default_rng(seed)
    uids, xyz, label, nodules, excluded = [], [], [], {}, {}
    for s in range(scans):
        uid = f"1.2.{s}"
        nodules[uid] = [(10.0 * s, 0.0, 0.0, 8.0)]
        excluded[uid] = [(10.0 * s, 50.0, 0.0, 6.0)]
        for dx in (0.0, 1.0):
            uids.append(uid), xyz.append((10.0 * s + dx, 0.0, 0.0)), label.append(True)
        for k in range(FPS_PER_SCAN):
            uids.append(uid), xyz.append((10.0 * s, 100.0 + k, 0.0)), label.append(False)
        uids.append(uid), xyz.append((10.0 * s, 50.0, 1.0)), label.append(False)  # excluded
    label = np.asarray(label)
    fp = rng.uniform(0.0, 1.0, size=len(label))
    difficulty = rng.uniform(0.05, 1.0, size=scans)       # a scan's nodule: easy or hard
    p_a = np.where(label, np.repeat(difficulty, 2 + FPS_PER_SCAN + 1), fp)
    return uids, np.asarray(xyz), label, Findings(nodules, excluded), p_a


def _scores(tmp_path, name, epoch, uids, xyz, label, p, findings):
    path = validation_file.save(str(tmp_path / name), epoch, uids, xyz, label, p, findings)
    return validation_file.read(path)


def test_the_file_holds_what_the_run_scored_and_gives_the_same_cpm(tmp_path):
    uids, xyz, label, findings, p = _set()
    path = validation_file.save(str(tmp_path / "run"), 3, uids, xyz, label, p, findings)
    assert path == validation_path(str(tmp_path / "run"), 3)
    assert path.endswith(os.path.join("validation", "E003.npz"))
    back = validation_file.read(path)
    assert back.epoch == 3 and back.uids == uids
    assert np.array_equal(back.xyz, xyz) and np.array_equal(back.is_nodule, label)
    assert np.allclose(back.p, p, atol=1e-7)
    assert back.findings == findings
    want = FrocScorer(uids, xyz, label, findings).score(p.astype(np.float32), bootstrap=0)
    got = FrocScorer(back.uids, back.xyz, back.is_nodule, back.findings).score(back.p,
                                                                                bootstrap=0)
    assert got.cpm == pytest.approx(want.cpm) and got.excluded_candidates == SCANS
    none = validation_file.read(validation_file.save(str(tmp_path / "r2"), 1, uids, xyz,
                                                     label, p, None))
    assert none.findings is None


def _rewrite(path, **change):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(change)
    for k in [k for k, v in change.items() if v is None]:
        del arrays[k]
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("damage, said", [
    ({"p": None}, "no p"),
    ({"xyz": np.zeros((3, 3))}, "xyz has shape"),
    ({"p": np.full(SCANS * (FPS_PER_SCAN + 3), 1.5, np.float32)}, "[0, 1]"),
    ({"scan": np.full(SCANS * (FPS_PER_SCAN + 3), 99, np.int32)}, "series number"),
    ({"nodules": np.zeros((2, 3))}, "nodules has shape"),
    ({"format": np.int64(7)}, "format"),
])
def test_a_damaged_file_is_a_one_line_error_naming_it(tmp_path, damage, said):
    uids, xyz, label, findings, p = _set()
    path = validation_file.save(str(tmp_path), 1, uids, xyz, label, p, findings)
    _rewrite(path, **damage)
    with pytest.raises(LunaInputError) as err:
        validation_file.read(path)
    assert path in str(err.value) and said in str(err.value)
    assert "\n" not in str(err.value)


def test_a_cut_short_or_foreign_file_is_an_error_naming_it(tmp_path):
    uids, xyz, label, findings, p = _set()
    path = validation_file.save(str(tmp_path), 1, uids, xyz, label, p, findings)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    for content in (None, b"not a zip", b""):
        if content is not None:
            with open(path, "wb") as f:
                f.write(content)
        with pytest.raises(LunaInputError, match="not a readable validation file") as err:
            validation_file.read(path)
        assert path in str(err.value)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("other.npy", b"x")
    with pytest.raises(LunaInputError, match="no format"):
        validation_file.read(path)
    with pytest.raises(LunaInputError, match="no such validation file"):
        validation_file.read(str(tmp_path / "nothing.npz"))


def test_a_run_ahead_on_every_scan_is_named_where_the_intervals_overlap(tmp_path):
    """B is A with every nodule a little lower: on every resample A's CPM is at least B's.
    Unpaired, the two 95 % intervals overlap (the scans' difficulty dominates them); paired,
    the difference's interval leaves 0 out and A is named."""
    uids, xyz, label, findings, p_a = _set()
    p_b = np.where(label, np.clip(p_a - 0.08, 0, 1), p_a)
    a = _scores(tmp_path, "a", 2, uids, xyz, label, p_a, findings)
    b = _scores(tmp_path, "b", 5, uids, xyz, label, p_b, findings)
    scorer = FrocScorer(uids, xyz, label, findings)
    ra, rb = scorer.score(a.p), scorer.score(b.p)
    assert ra.cpm > rb.cpm and ra.cpm_low < rb.cpm_high          # the intervals overlap
    p = paired_cpm(a, b)
    assert p.cpm_a == pytest.approx(ra.cpm) and p.cpm_b == pytest.approx(rb.cpm)
    assert p.scans == SCANS and p.candidates == len(uids)
    assert 0 < p.low <= p.difference <= p.high and p.clear
    assert paired_text(p, "#1", "#2").endswith(": #1 ahead")
    flipped = paired_cpm(b, a)
    assert flipped.high < 0 and paired_text(flipped, "#1", "#2").endswith(": #2 ahead")


def test_runs_that_differ_by_noise_have_no_clear_winner(tmp_path):
    uids, xyz, label, findings, p_a = _set()
    scan = np.array([int(u.rsplit(".", 1)[1]) for u in uids])
    shift = np.where(scan % 2 == 0, 0.1, -0.1)            # better on half the scans, worse on
    p_b = np.where(label, np.clip(p_a + shift, 0, 1), p_a)  # the other half
    a = _scores(tmp_path, "a", 1, uids, xyz, label, p_a, findings)
    b = _scores(tmp_path, "b", 1, uids, xyz, label, p_b, findings)
    p = paired_cpm(a, b)
    assert p.low < 0 < p.high and not p.clear
    assert paired_text(p, "#1", "#2").endswith(": no clear winner")
    same = paired_cpm(a, a)
    assert same.difference == 0 and same.low == same.high == 0 and not same.clear


def test_only_the_scans_both_runs_scored_are_paired(tmp_path):
    """B validated a third of A's scans (another split): the pair is scored on those, the
    same as scoring A on them alone; a run with no shared scan gives no pairing."""
    uids, xyz, label, findings, p_a = _set()
    keep = np.array([int(u.rsplit(".", 1)[1]) % 3 == 0 for u in uids])
    kept_uids = [u for u, k in zip(uids, keep, strict=True) if k]
    order = np.flatnonzero(keep)[::-1]                      # any order
    a = _scores(tmp_path, "a", 1, uids, xyz, label, p_a, findings)
    b = _scores(tmp_path, "b", 1, [uids[i] for i in order], xyz[order], label[order],
                p_a[order] * 0.5, findings)
    p = paired_cpm(a, b)
    assert p.scans == SCANS // 3 and p.candidates == len(kept_uids)
    alone = FrocScorer(kept_uids, xyz[keep], label[keep], findings).score(
        a.p[keep], bootstrap=0)
    assert p.cpm_a == pytest.approx(alone.cpm)
    other = np.flatnonzero(~keep)
    c = _scores(tmp_path, "c", 1, [uids[i] for i in other], xyz[other], label[other],
                p_a[other], findings)
    assert paired_cpm(b, c) is None


class _History:
    """What paired_lines reads of a run: its folder and its best CPM's epoch."""

    def __init__(self, run_dir, epoch, cpm):
        self.run_dir, self._best = run_dir, (epoch, cpm)

    def best(self, key):
        return self._best if self._best[1] is not None else None


def test_the_lines_pair_the_best_run_with_each_other_at_their_best_epochs(tmp_path):
    uids, xyz, label, findings, p_a = _set()
    p_b = np.where(label, np.clip(p_a - 0.08, 0, 1), p_a)
    _scores(tmp_path, "a", 4, uids, xyz, label, p_a, findings)
    _scores(tmp_path, "b", 2, uids, xyz, label, p_b, findings)
    runs = [_History(str(tmp_path / "b"), 2, 0.5), _History(str(tmp_path / "old"), 1, 0.4),
            _History(str(tmp_path / "a"), 4, 0.6), _History(str(tmp_path / "n"), 1, None)]
    lines = paired_lines(runs, ["#1", "#2", "#3", "#4"])
    assert lines[0].startswith("paired bootstrap, each run at its best CPM")
    assert lines[1].strip().startswith("#3 vs #1: CPM ") and lines[1].endswith("#3 ahead")
    assert lines[2].strip() == "#3 vs #2: #2 kept no per-candidate scores for E1 (an older run)"
    assert len(lines) == 3                                   # #4 has no CPM: not paired
    with open(validation_path(str(tmp_path / "b"), 2), "wb") as f:
        f.write(b"junk")
    bad = paired_lines(runs, ["#1", "#2", "#3", "#4"])[1]
    assert validation_path(str(tmp_path / "b"), 2) in bad and "not a readable" in bad
    assert paired_lines(runs[:1] + runs[3:], ["#1", "#4"]) == []
