"""The book's remedies on the demo data (issue 30): `luna-tui demo --headless` on fresh demo
sets of several seeds, each timed, then per run and epoch LUNA16's CPM with its 95 %
interval, the AUC beside the trivial baseline's (the central HU alone), recall, precision and
the training/validation loss gap; and whether the story's targets hold:

- plain: recall 0 at 0.5 (NODULES MISSED) at its last epoch, while its training loss falls;
- balanced: validation AUC >= 0.90 and CPM >= 0.60 (its last epoch), the CPM interval's low
  end above the plain run's CPM;
- the trivial baseline <= 0.75;
- the whole story within ~10 minutes on this machine (reported; the demo's budget).

    .venv/bin/python benchmarks/remedies.py [--seeds 0 1 2] [--work DIR]

Each seed: `luna-tui synth --seed S` into WORK/seedS (fresh), `luna-tui demo --headless --out
WORK/seedS --runs-dir WORK/runs-seedS`. Results, not timings, except the story's minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from _common import machine_info, print_footer, print_machine

from luna_core.run import events as ev
from luna_core.run import metric_catalog as mc
from luna_core.run.eventfile import read_events, run_event_file
from luna_core.run.runs import list_runs


def epochs_of(run_dir: str) -> list[dict]:
    """Per epoch: its training and validation metrics (a resumed epoch's newest)."""
    rows: dict[int, dict] = {}
    for e in read_events(run_event_file(run_dir)):
        if isinstance(e, ev.EpochMetrics):
            rows.setdefault(e.epoch, {"epoch": e.epoch})[e.phase] = dict(e.metrics)
    return [rows[k] for k in sorted(rows) if "val" in rows[k]]


def run_name(run_dir: str) -> str:
    """The comment of a run folder named TIME-COMMENT (TIME: 2026-12-07_12.50.11[.2])."""
    match = re.match(r"\d{4}-\d\d-\d\d_[\d.]+-(.*)$", os.path.basename(run_dir))
    return match.group(1) if match else os.path.basename(run_dir)


def fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def story_table(runs: list[tuple[str, list[dict]]]) -> list[str]:
    lines = ["| run | epoch | CPM [95 % CI] | AUC | central HU alone | recall | precision "
             "| loss trn / val |", "|---|---|---|---|---|---|---|---|"]
    for name, rows in runs:
        for r in rows:
            v, t = r["val"], r.get("trn", {})
            cpm = (f"{fmt(v.get(mc.CPM.key))} [{fmt(v.get(mc.CPM_LOW.key), '.2f')}–"
                   f"{fmt(v.get(mc.CPM_HIGH.key), '.2f')}]")
            missed = " (NODULES MISSED)" if (v.get(mc.RECALL.key) or 0.0) <= 0.10 else ""
            lines.append(
                f"| {name} | {r['epoch']} | {cpm} | {fmt(v.get(mc.AUC.key))} | "
                f"{fmt(v.get(mc.AUC_BRIGHTNESS.key))} | {fmt(v.get(mc.RECALL.key))}{missed} | "
                f"{fmt(v.get(mc.PRECISION.key))} | {fmt(t.get(mc.LOSS.key), '.3f')} / "
                f"{fmt(v.get(mc.LOSS.key), '.3f')} |")
    return lines


def verdicts(runs: dict[str, list[dict]]) -> list[tuple[str, bool]]:
    plain, balanced = runs.get("demo-plain"), runs.get("demo-balanced")
    out = []
    if plain:
        last = plain[-1]["val"]
        trn_losses = [r["trn"][mc.LOSS.key] for r in plain if "trn" in r]
        out.append(("plain: recall 0 at 0.5 at its last epoch",
                    (last.get(mc.RECALL.key) or 0.0) == 0.0))
        out.append(("plain: training loss falls",
                    len(trn_losses) >= 2 and trn_losses[-1] < trn_losses[0]))
    if balanced:
        last = balanced[-1]["val"]
        out.append(("balanced: AUC >= 0.90", (last.get(mc.AUC.key) or 0.0) >= 0.90))
        out.append(("balanced: CPM >= 0.60", (last.get(mc.CPM.key) or 0.0) >= 0.60))
        if plain:
            plain_cpm = plain[-1]["val"].get(mc.CPM.key) or 0.0
            out.append(("balanced: CPM interval's low end above the plain run's CPM",
                        (last.get(mc.CPM_LOW.key) or 0.0) > plain_cpm))
        base = last.get(mc.AUC_BRIGHTNESS.key)
        out.append(("trivial baseline (central HU alone) <= 0.75",
                    base is not None and base <= 0.75))
    return out


def run_seed(exe: list[str], work: str, seed: int) -> tuple[float, dict[str, list[dict]]]:
    data = os.path.join(work, f"seed{seed}")
    runs = os.path.join(work, f"runs-seed{seed}")
    for path in (data, f"{data}-cache", runs):
        shutil.rmtree(path, ignore_errors=True)
    subprocess.run(exe + ["synth", "--out", data, "--seed", str(seed), "-q"], check=True)
    t0 = time.perf_counter()
    code = subprocess.run(exe + ["demo", "--headless", "--out", data, "--runs-dir", runs],
                          stdout=subprocess.DEVNULL).returncode
    seconds = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"seed {seed}: luna-tui demo exited {code}")
    found = {}
    for info in list_runs(runs):
        found[run_name(info.run_dir)] = epochs_of(info.run_dir)
    return seconds, found


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--work", default=None, help="folder for the sets and runs (default: a "
                                                "temporary one)")
    p.add_argument("--report", action="store_true",
                   help="only the tables of the runs already in --work (no new runs)")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    print_machine(machine_info())
    exe = [sys.executable, "-m", "luna_tui"]
    work = args.work or tempfile.mkdtemp(prefix="luna-remedies-")
    all_ok = True
    for seed in args.seeds:
        if args.report:
            seconds, runs = float("nan"), {
                run_name(i.run_dir): epochs_of(i.run_dir)
                for i in list_runs(os.path.join(work, f"runs-seed{seed}"))}
        else:
            seconds, runs = run_seed(exe, work, seed)
        order = ["demo-plain", "demo-balanced", "demo-balanced-augmented"]
        print(f"\n### seed {seed}: the story took {seconds / 60:.1f} min "
              f"(luna-tui demo --headless, data set written before)\n")
        print("\n".join(story_table([(n, runs[n]) for n in order if n in runs])))
        print()
        for what, ok in verdicts(runs):
            all_ok &= ok
            print(f"- {'met' if ok else 'NOT met'}: {what}")
    print_footer(t_start)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
