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

import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import torch

from luna_core.data.candidates import candidate_tuple, find_csv_dir
from luna_core.data.csvread import MALIGNANCY_CSV, read_malignancy
from luna_core.data.ct import Ct, find_mhd
from luna_core.data.segdsets import split_series
from luna_core.errors import LunaInputError
from luna_core.fsutil import atomic_write
from luna_core.run import events as ev
from luna_core.run.eventfile import EVENT_FILE_NAME
from luna_core.run.events import EventBus
from luna_core.run.index import IndexSink
from luna_core.run.metric_catalog import DETECTION_CPM, FP_PER_SCAN, LIST_CPM, NODULES_FOUND
from luna_core.run.runlock import RunLock
from luna_core.run.sinks import JsonlSink
from luna_core.score.detection import (
    THRESHOLD,
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

#: Bumped when the pipeline computes a series differently: results of another are redone.
PIPELINE_VERSION = 2
#: The report names this many series with the most nodules missed.
WORST_SERIES = 3

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


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX; Linux's flags)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_precision(choice: str, device: torch.device) -> str:
    """``auto``: bf16 where the device computes it fast (a GPU that has it, a CPU with
    AVX-512 BF16 or AMX), else fp32."""
    if choice != "auto":
        return choice
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def predictor(model, device: torch.device, output: Callable, precision: str = "fp32"
              ) -> Callable:
    """numpy batch in, probabilities out (float32), the model channels-last and, in bf16,
    under autocast (the probabilities are rounded to bf16's 8 bits: a pixel at 0.5 ± 0.004
    may fall either side of the threshold)."""
    layout = torch.channels_last if isinstance(model, SegModel) else torch.channels_last_3d
    model = model.to(memory_format=layout)

    def predict(batch: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(batch, device=device).contiguous(memory_format=layout)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                             enabled=precision == "bf16"):
            return output(model(x)).float().cpu().numpy()
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


def default_out(runs_dir: str, series: str, models: dict) -> str:
    """``RUNS_DIR/analysis/<series>-<8 hex of the models and settings>``: the same command
    names the same folder (a killed analysis goes on where it stopped), other models another
    (``runs`` lists analyses beside the runs)."""
    digest = hashlib.sha256(json.dumps([series, models], sort_keys=True).encode()).hexdigest()
    word = series if series in ("val", "all") else "series"
    return os.path.join(runs_dir, "analysis", f"{word}-{digest[:8]}")


def trained_on(options: dict, data_dir: str, uids: list[str]) -> list[str]:
    """The series of ``uids`` a run with ``options`` trained on (a run split by candidates
    trained on some candidates of every series)."""
    if (options.get("split") or "candidates") != "series":
        return list(uids)
    training, _validation = split_series(data_dir, int(options.get("val_stride") or 10))
    return sorted(set(uids) & set(training))


def run_analysis(data_dir: str, out_dir: str | None, seg: str, cls: str,
                 mal: str | None = None, series: str = "val", device: str = "cpu",
                 precision: str = "auto", lungs: bool = True, runs_dir: str = "runs",
                 say: Callable[[str], None] = print) -> dict:
    """Analyse the series and write the outputs (see the module); returns the summary.
    ``out_dir`` None: ``default_out``. ``precision``: auto, fp32 or bf16 (the models'
    arithmetic); ``lungs``: segment the box around the lungs only (False: every pixel of every
    slice, as the book)."""
    dev = torch.device(device)
    precision = choose_precision(precision, dev)
    seg_model, seg_options = load_model("seg", seg, dev)
    cls_model, cls_options = load_model("cls", cls, dev)
    mal_model, mal_options = load_model("mal", mal, dev) if mal else (None, None)
    uids = choose_series(series, data_dir, cls_options)
    if not uids:
        raise LunaInputError("no series to analyse", data_dir)
    for uid in uids:                     # a bad uid is said before anything is written
        find_mhd(data_dir, uid)
    models = {"seg": checkpoint_path(seg, "--seg"), "cls": checkpoint_path(cls, "--cls"),
              "mal": checkpoint_path(mal, "--mal") if mal else None,
              "precision": precision, "lungs": lungs, "pipeline": PIPELINE_VERSION}
    out_dir = out_dir or default_out(runs_dir, series, models)
    # bf16 for the U-Net (its pixels are called at 0.5); the classifiers in fp32 always: the
    # FROC ranks their probabilities, and bf16's 8-bit mantissa ties those near 1
    segment = predictor(seg_model, dev, lambda out: out, precision)
    classify = predictor(cls_model, dev, lambda out: out[1][:, 1])
    grade = predictor(mal_model, dev, lambda out: out[1][:, 1]) if mal_model else None
    record = AnalysisRecord.open(out_dir, {
        "task": "analysis", **models, "series": series, "data_dir": data_dir,
        "device": device}, uids, dev)
    try:
        speak = record.speaker(say)
        speak(f"analysing {len(uids)} series into {out_dir} ({precision}, "
              f"{'the box around the lungs' if lungs else 'every pixel of every slice'})")
        for role, options in (("seg", seg_options), ("cls", cls_options),
                              ("mal", mal_options)):
            seen = trained_on(options, data_dir, uids) if options is not None else []
            if seen:
                speak(f"warning: the --{role} model trained on {len(seen)} of the "
                      f"{len(uids)} analysed series (its --val-stride "
                      f"{options.get('val_stride')}, split by {options.get('split')}): "
                      "the scores flatter it there")
        detections: list[Detection] = []
        seconds: dict[str, float] = {}
        started = time.perf_counter()
        fresh = 0
        for k, uid in enumerate(uids, 1):
            path = os.path.join(out_dir, "series", f"{uid}.json")
            kept = _kept_series(path, models)
            if kept is not None:                              # done before a kill: kept
                detections += kept[0]
                seconds[uid] = kept[1]
                record.series_done(k, 0.0)
                speak(f"series {k}/{len(uids)} {uid}: done before")
                continue
            t0 = time.perf_counter()
            ct = Ct.load(uid, data_dir)
            read_s = time.perf_counter() - t0
            result = analyze_ct(ct, segment, classify, grade, lungs=lungs)
            stages = {"read": read_s, **result.seconds}
            with atomic_write(path, text=True) as f:
                json.dump({"series_uid": uid, "models": models,
                           "components": result.components,
                           "seconds": stages,
                           "segmented": result.segmented,
                           "detections": [asdict(d) for d in result.detections]}, f)
            detections += result.detections
            fresh += 1
            took = time.perf_counter() - t0
            seconds[uid] = sum(stages.values())     # as a kept series' file says it
            record.series_done(k, took, read_s)
            left = (time.perf_counter() - started) / fresh * (len(uids) - k)
            speak(f"series {k}/{len(uids)} {uid}: {result.components} candidates, "
                  f"{sum(d.probability >= THRESHOLD for d in result.detections)} classified "
                  f"nodules in {took:.1f} s, about {_duration(left)} left")
        summary = _report(data_dir, out_dir, uids, detections, classify, speak, seconds)
        record.finished(summary)
        return summary
    except BaseException as exc:
        record.failed(exc)
        raise


class AnalysisRecord:
    """An analysis folder as a run folder: its lock (one analysis writes it at a time), its
    event file and index (what ``runs``, ``attach`` and the cockpit read). An analysis is one
    validation-like phase whose "batches" are the series, ending in one epoch_metrics event
    with the detection scores and the book's table (its ``score``)."""

    def __init__(self, out_dir: str, lock: RunLock, bus: EventBus, count: int) -> None:
        self.out_dir, self.lock, self.bus, self.count = out_dir, lock, bus, count
        self.started = time.monotonic()

    @classmethod
    def open(cls, out_dir: str, options: dict, uids: list[str], device: torch.device
             ) -> AnalysisRecord:
        try:
            os.makedirs(os.path.join(out_dir, "series"), exist_ok=True)
        except OSError as exc:
            raise LunaInputError(f"cannot write the analysis here ({exc.strerror or exc})",
                                 out_dir) from None
        run_id = uuid.uuid4().hex[:16]
        lock = RunLock.acquire(out_dir, run_id)
        events_path = os.path.join(out_dir, EVENT_FILE_NAME)
        resumed = os.path.isfile(events_path) and os.path.getsize(events_path) > 0
        bus = EventBus([JsonlSink(events_path, batch_hz=0), IndexSink(out_dir)])   # every series
        record = cls(out_dir, lock, bus, len(uids))
        bus.emit(ev.RunStarted(
            run_dir=out_dir, options=options, epochs=1, start_epoch=1, trn_samples=0,
            val_samples=len(uids), trn_pos=0, val_pos=0, device=str(device), pid=os.getpid(),
            host=socket.gethostname(), resumed_from=out_dir if resumed else None,
            run_id=run_id))
        bus.emit(ev.PhaseStarted(phase="val", epoch=1, batch_count=len(uids),
                                 sample_count=len(uids)))
        return record

    def speaker(self, say: Callable[[str], None]) -> Callable[[str], None]:
        """``say`` that also puts the line in the event file (the log view)."""
        def speak(line: str) -> None:
            say(line)
            self.bus.emit(ev.LogRecord(level="INFO", message=line))
        return speak

    def series_done(self, k: int, seconds: float, read_s: float = 0.0) -> None:
        self.bus.emit(ev.BatchDone(
            phase="val", epoch=1, batch_ndx=k - 1, batch_count=self.count, samples=1,
            total_samples=0, loss=float("nan"), data_s=read_s, compute_s=seconds - read_s,
            active_s=time.monotonic() - self.started))

    def finished(self, summary: dict) -> None:
        metrics, counts = _summary_metrics(summary)
        self.bus.emit(ev.EpochMetrics(phase="val", epoch=1, total_samples=0, metrics=metrics,
                                      score={"analysis": summary}, **counts))
        self._end(ev.RunFinished(state=ev.FINISHED, exit_code=0))

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, KeyboardInterrupt):
            self._end(ev.RunFinished(state=ev.STOPPED, exit_code=130,
                                     error="interrupted: run it again to go on"))
        else:
            self._end(ev.RunFinished(state=ev.FAILED, exit_code=1,
                                     error=str(exc).splitlines()[0][:300] if str(exc)
                                     else type(exc).__name__))

    def _end(self, event: ev.RunFinished) -> None:
        self.bus.emit(event)
        for sink in self.bus.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()
        self.lock.release()


def _summary_metrics(summary: dict) -> tuple[dict[str, float], dict[str, int]]:
    """The catalog's detection metrics and the nodule counts of an analysis' summary."""
    metrics: dict[str, float] = {}
    for metric, part in ((DETECTION_CPM, "detection"), (LIST_CPM, "candidate_list")):
        score = summary.get(part) or {}
        if score.get("cpm") is not None:
            metrics[metric.key] = score["cpm"]
            for key, end in zip(metric.interval, ("cpm_low", "cpm_high"), strict=True):
                if score.get(end) is not None:
                    metrics[key] = score[end]
    counts = {"neg_correct": 0, "neg_count": 0, "pos_correct": 0, "pos_count": 0}
    table = summary.get("table")
    if table is not None:
        nodules = sum(sum(row) for row in table[1:])
        found = sum(row[2] + row[3] for row in table[1:])
        false = table[0][2] + table[0][3]
        counts.update(pos_correct=found, pos_count=nodules, neg_correct=table[0][1],
                      neg_count=table[0][1] + false)
        if nodules:
            metrics[NODULES_FOUND.key] = 100.0 * found / nodules
        metrics[FP_PER_SCAN.key] = false / max(summary["series"], 1)
    return metrics, counts


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _kept_series(path: str, models: dict) -> tuple[list[Detection], float] | None:
    """A series' detections (and the seconds it took) from an earlier analysis by the same
    models; None when there is none, the file is not whole, or other models made it (it is
    analysed again and the file replaced)."""
    try:
        with open(path, encoding="utf-8") as f:
            kept = json.load(f)
        if kept.get("models") != models:
            log.warning("%s: made by other models: analysing the series again", path)
            return None
        return ([Detection(d["series_uid"], tuple(d["center_xyz"]), d["probability"],
                           d["malignancy"]) for d in kept["detections"]],
                float(sum(kept["seconds"].values())))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.warning("%s: not a whole series result: analysing the series again", path)
        return None


def _report(data_dir, out_dir, uids, detections, classify, say,
            seconds: dict[str, float] | None = None) -> dict:
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
        summary["per_series"] = _per_series(uids, detections, findings, seconds or {})
        worst = sorted(summary["per_series"], key=lambda r: (-r["missed"], r["series_uid"]))
        for row in worst[:WORST_SERIES]:
            if row["missed"]:
                say(f"  most missed: {row['series_uid']}: {row['found']} of {row['nodules']} "
                    f"nodules found, {row['false_positives']} false positives")
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


def _per_series(uids, detections, findings, seconds: dict[str, float]) -> list[dict]:
    """Per series: its nodules, those found (a detection classified a nodule within 0.7 of
    its diameter), missed, the false positives (classified nodules near none), seconds."""
    rows = []
    for uid in uids:
        nodules = [tuple(n[:4]) for n in findings.nodules.get(uid, [])]
        table = book_table([d for d in detections if d.series_uid == uid], {uid: nodules},
                           {uid: [False] * len(nodules)})
        found = int(table[1, 2] + table[1, 3])
        rows.append({"series_uid": uid, "nodules": len(nodules), "found": found,
                     "missed": len(nodules) - found,
                     "false_positives": int(table[0, 2] + table[0, 3]),
                     "seconds": round(seconds.get(uid, 0.0), 3)})
    return rows


def _candidate_chunks(data_dir, listed) -> np.ndarray:
    """The chunks of ``listed`` candidates, in their order (each series read once)."""
    from luna_core.data.ct import CHUNK_WIDTH_IRC

    out = np.zeros((len(listed), 1, *CHUNK_WIDTH_IRC), np.float32)
    by_series: dict[str, list[int]] = {}
    for k, c in enumerate(listed):
        by_series.setdefault(c.series_uid, []).append(k)
    for uid, rows in by_series.items():
        ct = Ct.load(uid, data_dir)
        for k in rows:
            out[k, 0], _irc = ct.get_raw_candidate(listed[k].center_xyz, CHUNK_WIDTH_IRC)
    return out


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
