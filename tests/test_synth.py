"""The synthetic LUNA16 generator writes the real layout, real geometry and learnable content."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from luna_core.data.synth import (
    FLIPPED_XY_DIRECTION,
    IDENTITY_DIRECTION,
    UID_PREFIX,
    main,
    write_synthetic_dataset,
)

TINY = dict(size_xy=64, slices=(20, 28), negatives_per_series=12, nodules_per_series=(1, 1),
            subsets=2, flip_every=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    summary = write_synthetic_dataset(out, series=4, seed=0, **TINY)
    return out, summary


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    out = tmp_path_factory.mktemp("default")
    lines: list[str] = []
    summary = write_synthetic_dataset(out, log=lines.append)
    return out, summary, lines


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def xyz_of(row: dict) -> np.ndarray:
    return np.array([float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])])


class Ct:
    """A written series read back the way a LUNA16 reader would."""

    def __init__(self, mhd: Path):
        img = sitk.ReadImage(str(mhd))
        self.image = img
        self.a = sitk.GetArrayFromImage(img)                     # (index, row, col)
        self.spacing = np.array(img.GetSpacing())
        self.origin = np.array(img.GetOrigin())
        self.direction = np.array(img.GetDirection()).reshape(3, 3)

    def xyz2cri(self, xyz: np.ndarray) -> np.ndarray:
        return np.linalg.inv(self.direction) @ (xyz - self.origin) / self.spacing

    def hu(self, cri: np.ndarray) -> int:
        c, r, i = np.rint(cri).astype(int)
        return int(self.a[i, r, c])

    def inside(self, cri: np.ndarray) -> bool:
        c, r, i = np.rint(cri).astype(int)
        nz, ny, nx = self.a.shape
        return 0 <= c < nx and 0 <= r < ny and 0 <= i < nz


def load_cts(out: Path) -> dict[str, Ct]:
    return {p.stem: Ct(p) for p in sorted(out.glob("subset*/*.mhd"))}


def test_layout_and_csv_headers(tiny):
    out, summary = tiny
    assert sorted(p.name for p in out.glob("subset*")) == ["subset0", "subset1"]
    mhds = sorted(out.glob("subset*/*.mhd"))
    assert len(mhds) == summary.series == 4
    for mhd in mhds:
        assert mhd.with_suffix(".raw").is_file()
        uid = mhd.stem
        assert uid.startswith(UID_PREFIX) and all(part.isdigit() for part in uid.split("."))
    cand_header, cands = read_csv(out / "candidates.csv")
    ann_header, anns = read_csv(out / "annotations.csv")
    assert cand_header == ["seriesuid", "coordX", "coordY", "coordZ", "class"]
    assert ann_header == ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]
    assert len(cands) == summary.candidates
    assert len(anns) == summary.annotations
    assert sum(r["class"] == "1" for r in cands) == summary.positives
    assert {r["class"] for r in cands} == {"0", "1"}
    # no temporary leftovers
    assert not list(out.glob(".*"))


def test_mhd_header_is_metaimage_int16_little_endian(tiny):
    out, _ = tiny
    for mhd in out.glob("subset*/*.mhd"):
        header = dict(line.split(" = ", 1) for line in mhd.read_text().splitlines())
        assert header["ElementDataFile"] == f"{mhd.stem}.raw"
        assert header["ElementType"] == "MET_SHORT"
        assert header["BinaryDataByteOrderMSB"] == "False"
        assert header["CompressedData"] == "False"
        nx, ny, nz = (int(v) for v in header["DimSize"].split())
        raw = mhd.with_suffix(".raw")
        assert raw.stat().st_size == nx * ny * nz * 2
        voxels = np.fromfile(raw, dtype="<i2").reshape(nz, ny, nx)
        assert np.array_equal(voxels, Ct(mhd).a)


def test_read_back_geometry_and_hu(tiny):
    out, summary = tiny
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["complete"] is True
    flipped = 0
    for i, info in enumerate(manifest["series"]):
        ct = Ct(out / f"subset{info['subset']}" / f"{info['uid']}.mhd")
        assert info["subset"] == i % 2
        assert ct.image.GetPixelID() == sitk.sitkInt16
        assert ct.a.dtype == np.int16
        assert ct.a.shape[1:] == (64, 64) and 20 <= ct.a.shape[0] <= 28
        sx, sy, sz = ct.spacing
        assert sx == sy and 0.6 <= sx <= 0.9 and 1.25 <= sz <= 2.5
        assert np.allclose(ct.spacing, info["spacing_xyz"])
        assert np.allclose(ct.origin, info["origin_xyz"]) and np.all(ct.origin != 0)
        # flip_every=2: the 2nd and 4th series are flipped
        want = FLIPPED_XY_DIRECTION if (i + 1) % 2 == 0 else IDENTITY_DIRECTION
        assert ct.image.GetDirection() == pytest.approx(want)
        flipped += want == FLIPPED_XY_DIRECTION
        if want == FLIPPED_XY_DIRECTION:       # origin = world of voxel 0, the far corner
            assert ct.origin[0] > 0 and ct.origin[1] > 0
        # realistic HU: air, lung, soft tissue and bone all present
        a = ct.a
        assert a.min() >= -1024
        assert np.median(a[:, :3, :3]) < -950                    # corner: air
        assert (a > 400).sum() > 100                             # ribs, spine
        assert ((a > -950) & (a < -750)).mean() > 0.03           # lung parenchyma
        assert ((a > 0) & (a < 100)).mean() > 0.1                # soft tissue
    assert flipped == summary.flipped_series == 2


def _nodule_records(out: Path) -> dict[tuple[str, float], dict]:
    """synth.json's nodules by (series uid, diameter)."""
    manifest = json.loads((out / "synth.json").read_text())
    return {(s["uid"], n["diameter_mm"]): n for s in manifest["series"] for n in s["nodules"]}


def _check_positives(out: Path) -> int:
    cts = load_cts(out)
    _, cands = read_csv(out / "candidates.csv")
    _, anns = read_csv(out / "annotations.csv")
    records = _nodule_records(out)
    checked = 0
    for row in cands:
        if row["class"] != "1" or row["seriesuid"] not in cts:
            continue
        ct = cts[row["seriesuid"]]
        xyz = xyz_of(row)
        cri = ct.xyz2cri(xyz)
        assert ct.inside(cri)
        # the book's rule: an annotation within diameter/4 on every axis
        match = [a for a in anns if a["seriesuid"] == row["seriesuid"]
                 and np.all(np.abs(xyz_of(a) - xyz) < float(a["diameter_mm"]) / 4)]
        assert len(match) == 1, row
        diameter = float(match[0]["diameter_mm"])
        assert 4.0 <= diameter <= 20.0
        record = records[(row["seriesuid"], diameter)]
        # solid: soft tissue; ground-glass: faint, well above the lung's -865
        assert ct.hu(cri) > (-200 if record["solid"] else -780), row
        checked += 1
        if record["kind"] != "isolated":      # against a vessel or the wall: no clear shell
            continue
        centre = ct.xyz2cri(xyz_of(match[0]))
        c, r, i = np.rint(centre).astype(int)
        # inside lung: a shell just outside the nodule is mostly air-filled parenchyma
        nz, ny, nx = ct.a.shape
        k, j, m = np.ogrid[:nz, :ny, :nx]
        dist = np.sqrt(((m - c) * ct.spacing[0]) ** 2 + ((j - r) * ct.spacing[1]) ** 2
                       + ((k - i) * ct.spacing[2]) ** 2)
        shell = ct.a[(dist > diameter / 2 + ct.spacing[0]) & (dist < diameter / 2 + 2)]
        assert np.median(shell) < -500, row
        # the blob's size matches diameter_mm: the median of the four in-plane half-chords
        # from the centre (a vessel touching the nodule lengthens one of them, not the median)
        edge = -400 if record["solid"] else (record["hu"] - 865) / 2    # half-way to lung
        halves = []
        for line in (ct.a[i, r, c:], ct.a[i, r, c::-1], ct.a[i, r:, c], ct.a[i, r::-1, c]):
            n = 0
            while n + 1 < len(line) and line[n + 1] > edge:
                n += 1
            halves.append((n + 0.5) * ct.spacing[0])
        measured = 2 * float(np.median(halves))
        tolerance = (2 if record["solid"] else 3) * ct.spacing[0] + 0.1 * diameter
        assert abs(measured - diameter) <= tolerance, (row, halves, diameter)
    return checked


def test_positives_land_on_nodules_inside_lung(tiny, default):
    assert _check_positives(tiny[0]) == 4
    assert _check_positives(default[0]) == default[1].positives - 1   # one is the missing series


def test_flipped_series_need_the_direction_matrix(tiny):
    out, _ = tiny
    cts = load_cts(out)
    _, cands = read_csv(out / "candidates.csv")
    flipped = [r for r in cands if r["seriesuid"] in cts
               and cts[r["seriesuid"]].image.GetDirection()[0] == -1.0]
    assert flipped
    for row in flipped:
        ct = cts[row["seriesuid"]]
        naive = (xyz_of(row) - ct.origin) / ct.spacing          # ignores the direction
        assert not ct.inside(naive)
        assert ct.inside(ct.xyz2cri(xyz_of(row)))


def test_negatives_inside_volume_apart_from_nodules_of_their_kinds(default):
    """Class-0 candidates lie inside the volume, clear of every nodule; the parenchyma ones
    are dark at their centre, the vessels, end-on vessels and branchings bright
    (tests/test_synth_decoys.py checks the shares and shapes on a demo-sized set)."""
    out, _, _ = default
    cts = load_cts(out)
    _, cands = read_csv(out / "candidates.csv")
    _, anns = read_csv(out / "annotations.csv")
    manifest = json.loads((out / "synth.json").read_text())
    kinds = {s["uid"]: iter(s["candidate_kinds"]) for s in manifest["series"]}
    centre_hu: dict[str, list[int]] = {}
    for row in cands:
        if row["seriesuid"] not in cts:
            continue
        kind = next(kinds[row["seriesuid"]])
        if row["class"] != "0":
            continue
        ct = cts[row["seriesuid"]]
        xyz = xyz_of(row)
        assert ct.inside(ct.xyz2cri(xyz))
        for a in anns:
            if a["seriesuid"] == row["seriesuid"]:
                gap = np.linalg.norm(xyz - xyz_of(a)) - float(a["diameter_mm"]) / 2
                assert gap > 2 * ct.spacing.max()
        centre_hu.setdefault(kind, []).append(ct.hu(ct.xyz2cri(xyz)))
    assert sum(len(v) for v in centre_hu.values()) == 1500
    assert set(centre_hu) == {"parenchyma", "vessel", "end_on_vessel", "branching",
                              "pleural_bump", "pleura"}
    assert np.mean(np.array(centre_hu["parenchyma"]) < -600) > 0.95
    for kind in ("vessel", "end_on_vessel", "branching"):
        assert np.mean(np.array(centre_hu[kind]) > -400) > 0.8, kind


def test_default_numbers_and_ratio(default):
    out, summary, lines = default
    assert summary.series == 10 and summary.missing_series == 1
    assert summary.flipped_series == 2                           # series 4 and 8
    _, cands = read_csv(out / "candidates.csv")
    positives = sum(r["class"] == "1" for r in cands)
    assert positives == summary.positives
    assert 1 / 450 <= positives / len(cands) <= 1 / 250
    assert 1450 <= len(cands) - positives <= 1700
    assert len(list(out.glob("subset*/*.raw"))) == 10
    assert any("series 10/10" in line for line in lines) and summary.describe() in lines


def test_missing_series_listed_but_not_on_disk(tiny):
    out, summary = tiny
    assert len(summary.missing_uids) == 1
    uid = summary.missing_uids[0]
    _, cands = read_csv(out / "candidates.csv")
    _, anns = read_csv(out / "annotations.csv")
    assert any(r["seriesuid"] == uid for r in cands)
    assert any(r["seriesuid"] == uid for r in anns)
    assert not list(out.rglob(f"{uid}*"))
    on_disk = {p.stem for p in out.glob("subset*/*.mhd")}
    assert {r["seriesuid"] for r in cands} == on_disk | {uid}


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    out, summary = tiny
    again = write_synthetic_dataset(tmp_path / "again", series=4, seed=0, **TINY)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again")
                           for p in (tmp_path / "again").rglob("*") if p.is_file())
    for rel in files:
        assert (out / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes(), rel
    assert again.series_uids == summary.series_uids
    other = write_synthetic_dataset(tmp_path / "other", series=4, seed=1, **TINY)
    assert not set(other.series_uids) & set(summary.series_uids)
    assert ((tmp_path / "other" / "candidates.csv").read_bytes()
            != (out / "candidates.csv").read_bytes())


def test_refuses_existing_data_set_unless_overwrite(tmp_path):
    first = write_synthetic_dataset(tmp_path, series=2, seed=3, **TINY)
    with pytest.raises(FileExistsError, match="candidates.csv"):
        write_synthetic_dataset(tmp_path, series=2, seed=4, **TINY)
    second = write_synthetic_dataset(tmp_path, series=2, seed=4, overwrite=True, **TINY)
    on_disk = {p.stem for p in tmp_path.glob("subset*/*.mhd")}
    assert on_disk == set(second.series_uids)                  # the old run's volumes are gone
    assert not on_disk & set(first.series_uids)
    _, cands = read_csv(tmp_path / "candidates.csv")
    assert {r["seriesuid"] for r in cands} == on_disk | set(second.missing_uids)


def test_interrupted_run_leaves_no_csv(tmp_path):
    def log(line: str) -> None:
        if line.startswith("series 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_synthetic_dataset(tmp_path, series=3, seed=0, log=log, **TINY)
    assert not (tmp_path / "candidates.csv").exists()
    assert not (tmp_path / "annotations.csv").exists()
    assert json.loads((tmp_path / "synth.json").read_text())["complete"] is False
    assert not list(tmp_path.glob(".*"))                        # no partial files left
    # a rerun is not refused (no candidates.csv) and replaces the interrupted run's volumes
    rerun = write_synthetic_dataset(tmp_path, series=3, seed=1, **TINY)
    assert {p.stem for p in tmp_path.glob("subset*/*.mhd")} == set(rerun.series_uids)


def test_bad_options_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        write_synthetic_dataset(tmp_path, series=0)
    with pytest.raises(ValueError):
        write_synthetic_dataset(tmp_path, slices=(30, 20))
    assert not (tmp_path / "candidates.csv").exists()


def test_command_line(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--series", "2", "--seed", "5", "--size-xy", "64",
            "--slices", "20", "24", "--negatives", "6"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "series 2/2" in printed and "2 series" in printed
    assert len(list(tmp_path.glob("subset*/*.mhd"))) == 2
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--quiet"]) == 0


def test_synth_imports_neither_torch_nor_textual():
    code = ("import sys, luna_core.data.synth; "
            "bad = [m for m in ('torch', 'textual') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_synth_writes_the_books_malignancy_file_beside_the_annotations(tiny):
    """annotations_with_malignancy.csv: annotations.csv's rows with mal_bool, from a generator
    of its own; likelier malignant the larger, and for a solid nodule."""
    from luna_core.data.csvread import read_annotations, read_malignancy
    from luna_core.data.synth.writer import malignant

    root = Path(tiny[0])
    plain = read_annotations(root / "annotations.csv")
    graded = read_malignancy(root / "annotations_with_malignancy.csv")
    assert {u: [r[:4] for r in rows] for u, rows in graded.items()} == plain
    with open(root / "annotations_with_malignancy.csv") as f:
        assert next(csv.reader(f))[-1] == "mal_bool"
    rng = np.random.default_rng(0)
    small_gg = sum(malignant(rng, 4.0, False) for _ in range(300))
    big_solid = sum(malignant(rng, 18.0, True) for _ in range(300))
    mid_solid = sum(malignant(rng, 9.0, True) for _ in range(300))
    mid_gg = sum(malignant(rng, 9.0, False) for _ in range(300))
    assert small_gg < 10 and big_solid > 290 and mid_solid > mid_gg + 100
