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
#: A synthetic nodule's malignancy: even odds at this diameter, a solid one likelier.
MALIGNANT_MM = 9.0
SOLID_LOGIT = 1.5
MANIFEST_FORMAT = 2        # 2: the kinds of findings and decoys (issue 30)

PARTIAL_DIR = ".synth-partial"
#: `luna-tui synth`'s and `luna-tui demo`'s set: 128 scans of 56-80 slices, 4-8 nodules and 80
#: other candidates each (1 nodule in 15): about 670 distinct training nodules (with 290 the
#: balanced run memorised them, AUC 0.85), and a validation of every 8th scan holds about 90
#: (LUNA16: 1 candidate in 400 a nodule, 1.3 nodules a scan).
DEMO_SET = {"series": 128, "slices": (56, 80), "negatives_per_series": 80,
            "nodules_per_series": (4, 8)}
SLICE_SPACINGS_MM = (1.25, 1.5, 1.8, 2.0, 2.5)
NODULE_DIAMETER_MM = (4.0, 20.0)
SMALL_NODULE_MM = 6.0              # 4-6 mm: the small nodules, about a third of them
SMALL_NODULE_SHARE = 0.25
SOLID_HU = (-60.0, 100.0)          # solid nodules: soft tissue, as bright as the vessels
GROUND_GLASS_HU = (-650.0, -350.0)  # ground-glass nodules: faint
GROUND_GLASS_SHARE = 0.0
NODULE_KIND_SHARES = {"isolated": 0.8, "juxtavascular": 0.1, "juxtapleural": 0.1}
#: What the class-0 candidates are (luna_core.data.synth.decoys), as shares of them.
DECOY_KIND_SHARES = {"parenchyma": 0.2, "vessel": 0.22, "end_on_vessel": 0.2,
                     "branching": 0.15, "pleural_bump": 0.15, "pleura": 0.08}
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
