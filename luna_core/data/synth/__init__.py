"""A deterministic, LUNA16-format demo data set that a 3D CNN can learn from.

``write_synthetic_dataset`` writes the real release layout, so the reader that loads real
LUNA16 loads this unchanged::

    out_dir/subset0/<seriesuid>.mhd + .raw   (MetaImage, int16 HU, little-endian)
    ...
    out_dir/candidates.csv                   seriesuid,coordX,coordY,coordZ,class
    out_dir/annotations.csv                  seriesuid,coordX,coordY,coordZ,diameter_mm
    out_dir/synth.json                       what was generated (geometry, nodules, files)

Each Ct is a small chest: air outside an elliptical body (soft tissue, a fat layer), ribs and
a vertebra (bone), two lungs (about -850 HU) with branching vessels (tubes of +40 HU, radius
1-3 voxels) and a few spherical nodules (+20..+100 HU, 4-20 mm across, so anisotropic in
voxels). Geometry is anisotropic (in-plane 0.6-0.9 mm, slices 1.25-2.5 mm), origins are
non-zero and every ``flip_every``-th series has x and y flipped in its direction matrix, as
about 14 real scans do. Coordinates in the CSVs are world millimetres:
``xyz = D @ (cri * spacing) + origin`` with cri = (col, row, index).

Candidates: class 1 at each nodule centre (jittered by at most 0.6 mm) with an annotation row
of its diameter; class 0 in lung parenchyma and on vessels, about half each, so the task is
"blob versus tube" -- learnable but not trivial. With the defaults about 1 in 275 candidates
is positive (real LUNA16: 1 in 408). One extra series (``missing_series``) is listed in both
CSVs but not written, as when a user downloads only some subsets.

Everything derives from ``seed`` through numpy Generators: the same seed gives byte-identical
files. Volumes go to disk first (each through a temporary folder and ``os.replace``) and the
CSVs last, through temporary names, so an interrupted run never leaves a complete-looking
candidates.csv. This package uses numpy and SimpleITK only (no torch, no textual), and those
only once something is written.
"""

from luna_core.data.synth.command_line import build_parser, main
from luna_core.data.synth.dataset_spec import (
    ANNOTATIONS_CSV,
    ANNOTATIONS_HEADER,
    CANDIDATES_CSV,
    CANDIDATES_HEADER,
    FLIPPED_XY_DIRECTION,
    IDENTITY_DIRECTION,
    MANIFEST_FORMAT,
    MANIFEST_JSON,
    UID_PREFIX,
    SynthSummary,
)

__all__ = ["ANNOTATIONS_CSV", "ANNOTATIONS_HEADER", "CANDIDATES_CSV", "CANDIDATES_HEADER",
           "FLIPPED_XY_DIRECTION", "IDENTITY_DIRECTION", "MANIFEST_FORMAT", "MANIFEST_JSON",
           "UID_PREFIX", "SynthSummary", "build_parser", "main", "write_synthetic_dataset"]


def __getattr__(name: str):
    """``write_synthetic_dataset`` on first use: the writer imports numpy and SimpleITK, which
    the command line's parser (`luna-tui synth --help`) does without."""
    if name == "write_synthetic_dataset":
        from luna_core.data.synth.writer import write_synthetic_dataset

        return write_synthetic_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
