"""Writing a synthetic set: volumes first (each through a temporary folder and
``os.replace``), the CSVs and the manifest last, so an interrupted run never leaves a
complete-looking candidates.csv."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from luna_core.data.csvread import MALIGNANCY_CSV
from luna_core.data.synth.dataset_spec import (
    ANNOTATIONS_CSV,
    ANNOTATIONS_HEADER,
    CANDIDATES_CSV,
    CANDIDATES_HEADER,
    DECOY_KIND_SHARES,
    MALIGNANT_MM,
    MANIFEST_FORMAT,
    MANIFEST_JSON,
    PARTIAL_DIR,
    SOLID_LOGIT,
    SynthSummary,
)
from luna_core.data.synth.series import Series, make_missing_series, make_series, nodule_counts
from luna_core.data.synth.series_geometry import make_geometry, make_uid
from luna_core.fsutil import atomic_write


def fmt(v: float) -> str:
    s = f"{v:.4f}"
    return "0.0000" if s == "-0.0000" else s


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_write(path, text=True) as fh:
        fh.write(text)


def write_volume(series: Series, out_dir: Path, partial: Path) -> list[str]:
    geom = series.geometry
    img = sitk.GetImageFromArray(series.volume)      # array (z, y, x) -> image x y z
    img.SetSpacing(geom.spacing)
    img.SetOrigin(geom.origin)
    img.SetDirection(geom.direction)
    tmp_mhd = partial / f"{geom.uid}.mhd"
    sitk.WriteImage(img, str(tmp_mhd), False)        # useCompression=False: .mhd + .raw
    subset_dir = out_dir / f"subset{geom.subset}"
    subset_dir.mkdir(parents=True, exist_ok=True)
    raw, mhd = f"{geom.uid}.raw", f"{geom.uid}.mhd"
    os.replace(partial / raw, subset_dir / raw)      # data first, header last
    os.replace(tmp_mhd, subset_dir / mhd)
    return [f"subset{geom.subset}/{raw}", f"subset{geom.subset}/{mhd}"]


def remove_previous(out_dir: Path) -> None:
    """Before an overwrite: drop the CSVs, and the volumes a previous synth run listed."""
    for name in (CANDIDATES_CSV, ANNOTATIONS_CSV, MALIGNANCY_CSV):
        (out_dir / name).unlink(missing_ok=True)
    manifest = out_dir / MANIFEST_JSON
    if not manifest.exists():
        return
    try:
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError):
        files = []
    root = out_dir.resolve()
    for rel in files:
        path = (out_dir / rel).resolve()
        if path.parent.parent == root and path.suffix in (".mhd", ".raw"):
            path.unlink(missing_ok=True)
    manifest.unlink(missing_ok=True)


def validate(series, size_xy, slices, negatives_per_series, nodules_per_series, subsets,
             flip_every, missing_series, seed) -> None:
    if series < 1:
        raise ValueError(f"series must be at least 1, not {series}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, not {seed}")
    if size_xy < 32:
        raise ValueError(f"size_xy must be at least 32 voxels, not {size_xy}")
    if len(slices) != 2 or not 8 <= slices[0] <= slices[1]:
        raise ValueError(f"slices must be (min, max) with 8 <= min <= max, not {slices}")
    if negatives_per_series < 0:
        raise ValueError("negatives_per_series must be non-negative")
    if len(nodules_per_series) != 2 or not 0 <= nodules_per_series[0] <= nodules_per_series[1]:
        raise ValueError(f"nodules_per_series must be (min, max), not {nodules_per_series}")
    if subsets < 1:
        raise ValueError(f"subsets must be at least 1, not {subsets}")
    if flip_every < 0 or missing_series < 0:
        raise ValueError("flip_every and missing_series must be non-negative")


def _clear_for_writing(out: Path, overwrite: bool) -> None:
    """``out`` ready for a new set: a finished set there is refused (unless ``overwrite``),
    an interrupted one's volumes removed."""
    if (out / CANDIDATES_CSV).exists():
        if not overwrite:
            raise FileExistsError(
                f"{out / CANDIDATES_CSV} already exists: refusing to write a synthetic data set "
                f"over it (choose another folder, or overwrite=True / --overwrite)")
        remove_previous(out)
    elif (out / MANIFEST_JSON).exists():      # an interrupted synth run: replace its volumes
        remove_previous(out)
    out.mkdir(parents=True, exist_ok=True)


def _series_record(geom, s, wanted: int) -> dict:
    """What synth.json says of one written series."""
    info = geom.to_json()
    info["nodules"] = [{"xyz": [round(float(v), 4) for v in xyz], "diameter_mm": d,
                        "kind": n.kind, "solid": n.solid, "hu": round(n.hu, 1)}
                       for (xyz, d), n in zip(s.annotations, s.nodules)]
    info["nodules_wanted"] = wanted
    info["candidates"] = len(s.candidates)
    info["decoys"] = {kind: s.kinds.count(kind) for kind in DECOY_KIND_SHARES}
    info["candidate_kinds"] = s.kinds            # in the order of the series' CSV rows
    return info


def _options_record(given: dict) -> dict:
    """The options a set was written with, as synth.json records them."""
    names = ("series", "size_xy", "slices", "negatives_per_series", "nodules_per_series",
             "subsets", "flip_every", "missing_series")
    return {name: list(given[name]) if isinstance(given[name], tuple) else given[name]
            for name in names}


def _series_line(which: str, geom, s, wanted: int, seconds: float) -> str:
    nx, ny, nz = geom.size
    return (f"series {which} subset{geom.subset} {geom.uid[-8:]}: "
            f"{nx}x{ny}x{nz} spacing {geom.spacing[0]:.2f}/{geom.spacing[2]:.2f} mm"
            f"{' flipped' if geom.flipped else ''}, {len(s.nodules)} nodule(s)"
            f"{'' if len(s.nodules) == wanted else f' of {wanted} (no room)'}, "
            f"{len(s.candidates)} candidates ({seconds:.2f} s)")


def _missing_series(master, uid: str, nodules: int, negatives: int, cand_rows: list,
                    ann_rows: list) -> dict:
    """A series listed in the CSVs but not written: its rows added; what synth.json says."""
    cands, anns = make_missing_series(master, uid, nodules, negatives)
    cand_rows += [(uid, xyz, cls) for xyz, cls in cands]
    ann_rows += [(uid, xyz, d, True) for xyz, d in anns]
    return {"uid": uid, "candidates": len(cands), "annotations": len(anns)}


def malignant(rng: np.random.Generator, diameter_mm: float, solid: bool) -> bool:
    """The book's malignancy label for a synthetic nodule: likelier the larger it is, and for
    a solid one than a ground-glass one (a CT shows both; the diameter alone ranks them well,
    not perfectly)."""
    logit = (diameter_mm - MALIGNANT_MM) / 2.0 + (SOLID_LOGIT if solid else -SOLID_LOGIT)
    return bool(rng.random() < 1.0 / (1.0 + np.exp(-logit)))


def _write_csvs(out: Path, cand_rows: list, ann_rows: list, seed: int = 0) -> int:
    """annotations.csv, the book's annotations_with_malignancy.csv (the same rows with
    mal_bool, drawn from a generator of its own: the CTs and the other CSVs do not change)
    and candidates.csv, grouped by series uid (as in the release), stable inside a series;
    returns their bytes."""
    cand_rows.sort(key=lambda row: row[0])
    ann_rows.sort(key=lambda row: row[0])
    ann_text = ANNOTATIONS_HEADER + "\n" + "".join(
        f"{uid},{fmt(x)},{fmt(y)},{fmt(z)},{d:.3f}\n" for uid, (x, y, z), d, _s in ann_rows)
    mal_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4D414C]))
    mal_text = ANNOTATIONS_HEADER + ",mal_bool\n" + "".join(
        f"{uid},{fmt(x)},{fmt(y)},{fmt(z)},{d:.3f},{malignant(mal_rng, d, solid)}\n"
        for uid, (x, y, z), d, solid in ann_rows)
    cand_text = CANDIDATES_HEADER + "\n" + "".join(
        f"{uid},{fmt(x)},{fmt(y)},{fmt(z)},{cls}\n" for uid, (x, y, z), cls in cand_rows)
    write_text_atomic(out / ANNOTATIONS_CSV, ann_text)
    write_text_atomic(out / MALIGNANCY_CSV, mal_text)
    write_text_atomic(out / CANDIDATES_CSV, cand_text)
    return len(ann_text) + len(mal_text) + len(cand_text)


def write_synthetic_dataset(out_dir, series: int = 10, seed: int = 0, *,
                            size_xy: int = 160, slices: tuple[int, int] = (48, 72),
                            negatives_per_series: int = 150,
                            nodules_per_series: tuple[int, int] = (0, 1),
                            subsets: int = 2, flip_every: int = 4,
                            missing_series: int = 1, overwrite: bool = False,
                            log: Callable[[str], None] | None = None) -> SynthSummary:
    """Write a LUNA16-format synthetic data set under ``out_dir``; see the module docstring.

    Series ``i`` (0-based) goes to ``subset{i % subsets}``; series ``flip_every - 1``,
    ``2 * flip_every - 1``, ... have x/y flipped (``flip_every=0``: none). The nodule counts
    lie in ``nodules_per_series`` (inclusive) and add up to ``series * (min + max) / 2``.
    ``missing_series`` extra series (one nodule and ``negatives_per_series`` negatives each)
    are listed in the CSVs but not written. Raises FileExistsError if ``out_dir`` already has
    a candidates.csv, unless ``overwrite`` (which also deletes the volumes a previous run
    recorded in synth.json).
    """
    started = time.perf_counter()
    validate(series, size_xy, slices, negatives_per_series, nodules_per_series, subsets,
              flip_every, missing_series, seed)
    say = log or (lambda _line: None)
    out = Path(out_dir)
    _clear_for_writing(out, overwrite)

    master = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    counts = nodule_counts(master, series, *nodules_per_series)
    taken: set[str] = set()
    series_rngs = [np.random.default_rng(np.random.SeedSequence([seed, 1, i]))
                   for i in range(series)]
    geoms = []
    for i, rng in enumerate(series_rngs):
        flipped = flip_every > 0 and (i + 1) % flip_every == 0
        geoms.append(make_geometry(rng, make_uid(rng, taken), i % subsets, size_xy,
                                    tuple(slices), flipped))
    missing_uids = [make_uid(master, taken) for _ in range(missing_series)]
    manifest = {
        "format": MANIFEST_FORMAT, "generator": "luna_core.synth", "complete": False,
        "seed": seed, "options": _options_record(locals()),
        "files": [f"subset{g.subset}/{g.uid}.{ext}" for g in geoms for ext in ("raw", "mhd")],
    }
    write_text_atomic(out / MANIFEST_JSON, json.dumps(manifest, indent=1) + "\n")

    cand_rows: list[tuple[str, np.ndarray, int]] = []
    ann_rows: list[tuple[str, np.ndarray, float, bool]] = []
    series_info = []
    nbytes = 0
    partial = out / PARTIAL_DIR
    partial.mkdir(exist_ok=True)
    try:
        for i, (geom, rng) in enumerate(zip(geoms, series_rngs)):
            t0 = time.perf_counter()
            s = make_series(rng, geom, counts[i], negatives_per_series)
            for rel in write_volume(s, out, partial):
                nbytes += (out / rel).stat().st_size
            cand_rows += [(geom.uid, xyz, cls) for xyz, cls in s.candidates]
            ann_rows += [(geom.uid, xyz, d, n.solid)
                         for (xyz, d), n in zip(s.annotations, s.nodules, strict=True)]
            series_info.append(_series_record(geom, s, counts[i]))
            say(_series_line(f"{i + 1}/{series}", geom, s, counts[i],
                             time.perf_counter() - t0))
        missing_info = [_missing_series(master, uid, min(1, nodules_per_series[1]),
                                        negatives_per_series, cand_rows, ann_rows)
                        for uid in missing_uids]
        if missing_uids:
            say(f"{len(missing_uids)} series listed in the CSVs but not written "
                f"(as when only some subsets are downloaded)")
        nbytes += _write_csvs(out, cand_rows, ann_rows, seed)   # last: they mark it complete
        manifest.update(complete=True, series=series_info, missing=missing_info)
        write_text_atomic(out / MANIFEST_JSON, json.dumps(manifest, indent=1) + "\n")
    finally:
        shutil.rmtree(partial, ignore_errors=True)

    summary = SynthSummary(
        out_dir=str(out), series=series, candidates=len(cand_rows),
        positives=sum(1 for row in cand_rows if row[2] == 1), annotations=len(ann_rows),
        seconds=time.perf_counter() - started, missing_series=len(missing_uids),
        flipped_series=sum(g.flipped for g in geoms), bytes_on_disk=nbytes, seed=seed,
        series_uids=[g.uid for g in geoms], missing_uids=missing_uids)
    say(summary.describe())
    return summary
