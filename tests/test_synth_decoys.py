"""The demo set's guarantees (issue 30), without training anything: its counts and sizes,
the kinds of nodules and of the other candidates it holds, that each kind is the shape it
says, that every candidate's chunk is centred on it, and that brightness alone does not
find the nodules (the trivial baseline, computed on the chunks the model is fed, stays
under 0.75)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import SimpleITK as sitk

from luna_core.data.synth import write_synthetic_dataset
from luna_core.data.synth.dataset_spec import DECOY_KIND_SHARES, DEMO_SET, GROUND_GLASS_SHARE

SERIES = 24


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo set as `luna-tui synth` writes it, with fewer series."""
    out = tmp_path_factory.mktemp("demo") / "luna"
    options = {**DEMO_SET, "series": SERIES}
    summary = write_synthetic_dataset(out, seed=3, **options)
    manifest = json.loads((out / "synth.json").read_text())
    return out, summary, manifest


def _nodules(manifest) -> list[dict]:
    return [n for s in manifest["series"] for n in s["nodules"]]


def test_counts_and_ratio(demo):
    _out, summary, manifest = demo
    lo, hi = DEMO_SET["nodules_per_series"]
    negatives = DEMO_SET["negatives_per_series"]
    for s in manifest["series"]:
        assert s["nodules_wanted"] - 1 <= len(s["nodules"]) <= hi   # one may find no room
        assert sum(s["decoys"].values()) == negatives
        assert s["candidates"] == negatives + len(s["nodules"])
        assert len(s["candidate_kinds"]) == s["candidates"]
    written = sum(len(s["nodules"]) for s in manifest["series"])
    assert written >= 0.97 * SERIES * (lo + hi) / 2
    assert 1 / 25 <= summary.positives / summary.candidates <= 1 / 10


def test_nodule_sizes_kinds_and_densities(demo):
    nodules = _nodules(demo[2])
    d = np.array([n["diameter_mm"] for n in nodules])
    assert d.min() >= 4.0 and d.max() <= 20.0
    assert (d <= 6.0).mean() >= 0.15                       # small ones: 4-6 mm
    assert (d >= 10.0).mean() >= 0.03                      # and some large ones
    kinds = Counter(n["kind"] for n in nodules)
    assert set(kinds) == {"isolated", "juxtavascular", "juxtapleural"}
    assert kinds["juxtavascular"] >= 0.05 * len(nodules) and kinds["juxtapleural"] >= 0.05 * len(
        nodules)
    solid = np.array([n["solid"] for n in nodules])
    hu = np.array([n["hu"] for n in nodules])
    assert abs((~solid).mean() - GROUND_GLASS_SHARE) <= 0.08       # ground-glass ones
    assert (~solid).sum() == 0 or hu[~solid].max() < -300
    assert hu[solid].min() > -100


def test_every_kind_of_decoy_in_its_share(demo):
    total = Counter()
    for s in demo[2]["series"]:
        total.update(s["decoys"])
    n = sum(total.values())
    for kind, share in DECOY_KIND_SHARES.items():
        assert total[kind] >= 0.6 * share * n, (kind, total)
    # the ones as bright at their centre as a nodule are most of them
    assert total["parenchyma"] <= 0.35 * n


def _volumes(out, manifest):
    for s in manifest["series"]:
        img = sitk.ReadImage(str(out / f"subset{s['subset']}" / f"{s['uid']}.mhd"))
        yield s, img, sitk.GetArrayFromImage(img)


def _hu_along_z(img, a, xyz, offsets_mm) -> list[int]:
    out = []
    for dz in offsets_mm:
        c, r, i = img.TransformPhysicalPointToContinuousIndex(
            (xyz[0], xyz[1], xyz[2] + dz))
        i, r, c = (int(round(v)) for v in (i, r, c))
        out.append(int(a[min(max(i, 0), a.shape[0] - 1), r, c]))
    return out


def test_each_kind_is_the_shape_it_says(demo):
    """End-on vessels are bright far along the slice axis; isolated nodules end within their
    radius; vessel, end-on and branching decoys are bright at the centre."""
    import csv

    out, _summary, manifest = demo
    rows: dict[str, list] = {}
    with open(out / "candidates.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            rows.setdefault(row["seriesuid"], []).append(row)
    nodule_by_xyz = {}
    for s in manifest["series"]:
        for n in s["nodules"]:
            nodule_by_xyz[(s["uid"], tuple(n["xyz"]))] = n
    end_on_long = end_on = bright = bright_total = iso_short = iso = 0
    for s, img, a in _volumes(out, manifest):
        for row, kind in zip(rows[s["uid"]], s["candidate_kinds"], strict=True):
            xyz = (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))
            if kind in ("vessel", "end_on_vessel", "branching"):
                bright_total += 1
                bright += _hu_along_z(img, a, xyz, [0.0])[0] > -400
            if kind == "end_on_vessel":
                end_on += 1
                end_on_long += min(_hu_along_z(img, a, xyz, [-5.0, 5.0])) > -400
    for s, img, a in _volumes(out, manifest):
        for n in s["nodules"]:
            if n["kind"] != "isolated":
                continue
            iso += 1
            reach = n["diameter_mm"] / 2 + 3.0
            iso_short += max(_hu_along_z(img, a, n["xyz"], [-reach, reach])) < -600
    assert bright >= 0.85 * bright_total
    assert end_on and end_on_long >= 0.8 * end_on
    assert iso and iso_short >= 0.8 * iso


def test_chunks_are_centred_and_brightness_alone_does_not_find_the_nodules(demo, tmp_path):
    """What the model is fed: each candidate's chunk centred on it (none cut off-centre at
    the volume's ends), and the trivial baseline's AUC on those chunks at most 0.75 (the
    centre voxel's, and the central 3x7x7 box's: about 5 mm)."""
    from luna_core.data.dsets import LunaDataset
    from luna_core.score.brightness import brightness_auc, central_hu

    out = demo[0]
    ds = LunaDataset(val_stride=4, is_val=False, data_dir=out, cache_dir=tmp_path / "cache",
                     split="series")
    box, voxel, shifted = [], [], 0
    for i in range(len(ds)):
        example = ds.example_of(i)
        shifted += example["irc_in_chunk"] != [16, 24, 24]
        chunk = example["chunk"]
        box.append(central_hu(chunk))
        voxel.append(float(chunk[16, 24, 24]))
    assert shifted == 0
    labels = ds.is_nodule
    assert labels.sum() > 50
    assert brightness_auc(labels, np.array(box)) <= 0.75
    assert brightness_auc(labels, np.array(voxel)) <= 0.75
