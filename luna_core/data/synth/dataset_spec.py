"""What the synthetic data set writes and where: the LUNA16 names, headers and UIDs, the
ranges its CTs are drawn from, and the summary of a written set."""

from __future__ import annotations

from dataclasses import dataclass, field

UID_PREFIX = "1.3.6.1.4.1.14519.5.2.1.6279.6001."
IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
FLIPPED_XY_DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
CANDIDATES_CSV = "candidates.csv"
ANNOTATIONS_CSV = "annotations.csv"
MANIFEST_JSON = "synth.json"
CANDIDATES_HEADER = "seriesuid,coordX,coordY,coordZ,class"
ANNOTATIONS_HEADER = "seriesuid,coordX,coordY,coordZ,diameter_mm"
MANIFEST_FORMAT = 1

PARTIAL_DIR = ".synth-partial"
SLICE_SPACINGS_MM = (1.25, 1.5, 1.8, 2.0, 2.5)
NODULE_DIAMETER_MM = (4.0, 20.0)
POSITIVE_JITTER_MM = 0.6
HU_MIN, HU_MAX = -1024, 3071


@dataclass
class SynthSummary:
    """What ``write_synthetic_dataset`` wrote."""

    out_dir: str
    series: int                 # series written to disk
    candidates: int             # rows of candidates.csv (missing series included)
    positives: int              # class-1 rows of candidates.csv
    annotations: int            # rows of annotations.csv
    seconds: float
    missing_series: int = 0     # series listed in the CSVs but not on disk
    flipped_series: int = 0     # series written with direction (-1,0,0, 0,-1,0, 0,0,1)
    bytes_on_disk: int = 0
    seed: int = 0
    series_uids: list[str] = field(default_factory=list)    # on disk, in generation order
    missing_uids: list[str] = field(default_factory=list)

    def describe(self) -> str:
        ratio = self.candidates / self.positives if self.positives else float("inf")
        return (f"{self.series} series ({self.flipped_series} flipped, {self.missing_series} "
                f"listed but not written), {self.candidates} candidates, {self.positives} "
                f"positive (1 in {ratio:.0f}), {self.annotations} annotations, "
                f"{self.bytes_on_disk / 1e6:.1f} MB in {self.seconds:.1f} s -> {self.out_dir}")
