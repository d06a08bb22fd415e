"""``luna-tui analyze``: the book's ch. 14 end to end over a set of series, scored as the
LUNA16 challenge scores detection.

For each series: segment every slice, group, classify and (with a malignancy model) grade
(luna_core.score.pipeline); its detections are kept in ``OUT/series/<uid>.json`` (atomically),
so a killed analysis goes on with the series it had not finished. At the end:

- ``OUT/detections.csv``: every detection in the challenge's submission format;
- ``OUT/summary.json`` and the printed report: the detection FROC/CPM over every annotated
  nodule of the analysed series (misses counted) with its interval, beside the same score for
  the candidate list (``candidates.csv``'s candidates of those series, scored by the
  classifier), and the book's table when the nodules' malignancy is known.

The series: ``val`` (the validation series of the classifier run's own split; a run that
split by candidates is refused, its validation scans were seen in training), ``all``, or a
list of uids.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import torch

from luna_core.data.candidates import candidate_tuple, find_csv_dir
from luna_core.data.csvread import MALIGNANCY_CSV, read_malignancy
from luna_core.data.ct import Ct
from luna_core.data.segdsets import split_series
from luna_core.errors import LunaInputError
from luna_core.fsutil import atomic_write
from luna_core.score.detection import (
    Detection,
    book_table,
    detection_froc,
    table_text,
    write_submission,
)
from luna_core.score.pipeline import analyze_ct
from luna_core.score.validation import read_findings
from luna_core.train.checkpoint import CheckpointError, load_checkpoint
from luna_core.train.finetune import checkpoint_path
from luna_core.train.model import LunaModel
from luna_core.train.unet import SegModel

log = logging.getLogger(__name__)

ROLES = {"seg": ("seg", SegModel), "cls": ("nodule", LunaModel), "mal": ("malignancy",
                                                                        LunaModel)}


def load_model(role: str, source: str, device: torch.device):
    """(model in eval mode, the checkpoint's options) for ``--seg``/``--cls``/``--mal``: a run
    folder (its best.pt) or a checkpoint of the right task, else a one-line error."""
    task, cls = ROLES[role]
    path = checkpoint_path(source, f"--{role}")
    try:
        state = load_checkpoint(path)
    except CheckpointError as exc:
        raise LunaInputError(str(exc).removeprefix(f"{path}: ").splitlines()[0][:200],
                             path) from None
    options = state.get("options") or {}
    if (options.get("task") or "nodule") != task:
        raise LunaInputError(f"--{role} needs a --task {task} run, this one trained --task "
                             f"{options.get('task') or 'nodule'}", path)
    model = cls()
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as exc:
        raise LunaInputError(f"not a {task} model's weights ({str(exc).splitlines()[0]})",
                             path) from None
    return model.to(device).eval(), options


def predictor(model, device: torch.device, output: Callable) -> Callable:
    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return output(model(torch.as_tensor(batch, device=device))).float().cpu().numpy()
    return predict


def choose_series(which: str, data_dir: str, cls_options: dict) -> list[str]:
    if which == "all":
        trn, val = split_series(data_dir, 0)
        return trn
    if which == "val":
        if cls_options.get("split") != "series":
            raise LunaInputError("--series val takes the classifier run's validation series, "
                                 "but it split by candidates (its validation scans were also "
                                 "in training): name --series all or a list of uids")
        return split_series(data_dir, int(cls_options.get("val_stride") or 10))[1]
    return list(dict.fromkeys(u.strip() for u in which.split(",") if u.strip()))


def run_analysis(data_dir: str, out_dir: str, seg: str, cls: str, mal: str | None = None,
                 series: str = "val", device: str = "cpu",
                 say: Callable[[str], None] = print) -> dict:
    """Analyse the series and write the outputs (see the module); returns the summary."""
    dev = torch.device(device)
    seg_model, _ = load_model("seg", seg, dev)
    cls_model, cls_options = load_model("cls", cls, dev)
    mal_model = load_model("mal", mal, dev)[0] if mal else None
    uids = choose_series(series, data_dir, cls_options)
    models = {"seg": checkpoint_path(seg, "--seg"), "cls": checkpoint_path(cls, "--cls"),
              "mal": checkpoint_path(mal, "--mal") if mal else None}
    if not uids:
        raise LunaInputError("no series to analyse", data_dir)
    segment = predictor(seg_model, dev, lambda out: out)
    classify = predictor(cls_model, dev, lambda out: out[1][:, 1])
    grade = predictor(mal_model, dev, lambda out: out[1][:, 1]) if mal_model else None
    try:
        os.makedirs(os.path.join(out_dir, "series"), exist_ok=True)
    except OSError as exc:
        raise LunaInputError(f"cannot write the analysis here ({exc.strerror or exc})",
                             out_dir) from None
    detections: list[Detection] = []
    started = time.perf_counter()
    for k, uid in enumerate(uids, 1):
        path = os.path.join(out_dir, "series", f"{uid}.json")
        kept = _kept_series(path, models)
        if kept is not None:                                  # done before a kill: kept
            detections += kept
            say(f"series {k}/{len(uids)} {uid}: done before")
            continue
        t0 = time.perf_counter()
        result = analyze_ct(Ct.load(uid, data_dir), segment, classify, grade)
        with atomic_write(path, text=True) as f:
            json.dump({"series_uid": uid, "models": models, "components": result.components,
                       "seconds": result.seconds,
                       "detections": [asdict(d) for d in result.detections]}, f)
        detections += result.detections
        left = (time.perf_counter() - started) / k * (len(uids) - k)
        say(f"series {k}/{len(uids)} {uid}: {len(result.detections)} detections in "
            f"{time.perf_counter() - t0:.1f} s, about {left:.0f} s left")
    return _report(data_dir, out_dir, uids, detections, classify, say)


def _kept_series(path: str, models: dict) -> list[Detection] | None:
    """A series' detections from an earlier analysis by the same models; None when there is
    none, the file is not whole, or other models made it (it is analysed again and the file
    replaced)."""
    try:
        with open(path, encoding="utf-8") as f:
            kept = json.load(f)
        if kept.get("models") != models:
            log.warning("%s: made by other models: analysing the series again", path)
            return None
        return [Detection(d["series_uid"], tuple(d["center_xyz"]), d["probability"],
                          d["malignancy"]) for d in kept["detections"]]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.warning("%s: not a whole series result: analysing the series again", path)
        return None


def _report(data_dir, out_dir, uids, detections, classify, say) -> dict:
    write_submission(os.path.join(out_dir, "detections.csv"), detections)
    csv_dir = find_csv_dir(data_dir)
    findings = read_findings(csv_dir / "annotations.csv")
    summary: dict = {"series": len(uids), "detections": len(detections)}
    if findings is not None:
        froc = detection_froc(detections, findings, uids)
        summary["detection"] = _froc_dict(froc)
        listed = [c for c in candidate_tuple(data_dir) if c.series_uid in set(uids)]
        chunks = _candidate_chunks(data_dir, listed)
        p = np.concatenate([classify(chunks[k:k + 32]) for k in range(0, len(chunks), 32)]) \
            if len(chunks) else np.zeros(0)
        candidates = [Detection(c.series_uid, tuple(c.center_xyz), float(v))
                      for c, v in zip(listed, p, strict=True)]
        summary["candidate_list"] = _froc_dict(detection_froc(candidates, findings, uids))
        say(f"detection CPM {_cpm(summary['detection'])} (segmentation + classifier) · "
            f"candidate list CPM {_cpm(summary['candidate_list'])} (candidates.csv + "
            f"classifier), over {froc.nodules} nodules in {len(uids)} series")
    mal_path = csv_dir / MALIGNANCY_CSV
    if mal_path.is_file():
        graded = read_malignancy(mal_path)
        nodules = {u: [r[:4] for r in graded.get(u, [])] for u in uids}
        malignant = {u: [r[4] for r in graded.get(u, [])] for u in uids}
        table = book_table(detections, nodules, malignant)
        summary["table"] = table.tolist()
        for line in table_text(table):
            say(line)
    with atomic_write(os.path.join(out_dir, "summary.json"), text=True) as f:
        json.dump(summary, f, indent=1)
    return summary


def _candidate_chunks(data_dir, listed) -> np.ndarray:
    from luna_core.data.ct import CHUNK_WIDTH_IRC

    out = []
    by_series: dict[str, list] = {}
    for c in listed:
        by_series.setdefault(c.series_uid, []).append(c)
    for uid, rows in by_series.items():
        ct = Ct.load(uid, data_dir)
        for c in rows:
            chunk, _irc = ct.get_raw_candidate(c.center_xyz, CHUNK_WIDTH_IRC)
            out.append(chunk)
    return (np.stack(out)[:, None].astype(np.float32) if out
            else np.zeros((0, 1, *CHUNK_WIDTH_IRC), np.float32))


def _froc_dict(froc) -> dict:
    return {"cpm": froc.cpm, "cpm_low": froc.cpm_low, "cpm_high": froc.cpm_high,
            "nodules": froc.nodules, "missed_entirely": froc.nodules_without_candidate,
            "sensitivity": list(froc.sensitivity)}


def _cpm(d: dict) -> str:
    if d.get("cpm") is None:
        return "-"
    text = f"{d['cpm']:.3f}"
    if d.get("cpm_low") is not None:
        text += f" [{d['cpm_low']:.2f}–{d['cpm_high']:.2f}]"
    return text
