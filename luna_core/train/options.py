"""Training options: one argparse parser shared by `luna-tui`, `--headless` and
`LunaTrainingApp(sys_argv=...)`. Importing this module must stay cheap (no torch), so that
`luna-tui --help` returns at once."""

from __future__ import annotations

import argparse
import math
import os

from luna_core.data.default_dirs import DEFAULT_CACHE_DIR, DEFAULT_DATA_DIR, default_num_workers
from luna_core.run.task_table import TASK_VIEWS
from luna_core.train.task import DEFAULT_TASK, TASK_DEFAULTS, TASKS

__all__ = ["DEFAULT_CACHE_DIR", "DEFAULT_DATA_DIR", "DEFAULT_RUNS_DIR", "RESUME_MUST_MATCH",
           "add_data_dirs", "add_runs_dir", "build_parser", "default_num_workers",
           "given_resume", "parse_options", "split_comment", "validate_options"]

DEFAULT_RUNS_DIR = "runs"
#: --optimizer's choices (luna_core.train.step.make_optimizer builds them)
OPTIMIZERS = ("sgd", "adam")

# Options a resumed run must share with its checkpoint: they decide the model, the data or
# the order of samples. Anything else (workers, epochs, device, sinks) may change on resume.
RESUME_MUST_MATCH = ("task", "optimizer", "batch_size", "val_stride", "split", "seed",
                     "candidates_file", "balanced", "epoch_samples", "augmented",
                     "augment_flip", "augment_offset", "augment_scale", "augment_rotate",
                     "augment_noise")


def add_data_dirs(parser: argparse.ArgumentParser, *, workers: bool = False) -> None:
    """--data-dir, --cache-dir, --candidates-file (and --num-workers): where the data is, for
    training and for the sub-commands that read it (prepcache, check)."""
    if workers:
        parser.add_argument("--num-workers", type=int, default=default_num_workers(),
                            help="DataLoader worker processes (0 loads in the training "
                                 "process)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help="LUNA16 folder: subset*/ with .mhd/.raw, and the CSVs")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR,
                        help="the chunk store: every candidate's chunk, cut once from its CT, "
                             "for fast training reads (built on first use)")
    parser.add_argument("--candidates-file", default=None,
                        help="candidates CSV name in the CSV folder "
                             "(default: candidates.csv, else candidates_V2.csv)")


def add_runs_dir(parser: argparse.ArgumentParser,
                 help: str = "root of run directories and TensorBoard logs") -> None:
    """--runs-dir, for training and every sub-command that finds runs."""
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help=help)


def build_parser(prog: str = "luna-tui", commands: str = "") -> argparse.ArgumentParser:
    """The training options; ``commands``: the sub-commands, for --help (luna_tui.cli)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Train the LUNA16 models of Deep Learning with PyTorch: the nodule candidate "
            "classifier (ch. 11-12) or, with --task seg, the segmentation U-Net (ch. 13). "
            "Without --headless it opens the cockpit (a terminal UI). "
            + (f"Other commands: {commands} Use 'luna-tui COMMAND --help' for theirs."
               if commands else "")
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_run_options(parser)
    _add_validation_options(parser)
    _add_watching_options(parser)
    _add_control_options(parser)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """The run: what is trained, for how long, on what data split and where it is written."""
    parser.add_argument("--headless", action="store_true",
                        help="train without the cockpit; one log line per event on stderr")
    parser.add_argument("--task", choices=list(TASKS), default=DEFAULT_TASK,
                        help="what to train: " + "; ".join(
                            f"{name}: {what}" + (f", best.pt by {TASK_VIEWS[name].why_best}"
                                                 if name in TASK_VIEWS else "")
                            for name, (_where, what) in TASKS.items()))
    parser.add_argument("--epochs", type=int, default=1, help="number of epochs to train for")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="samples per batch (per process under torchrun; --task seg: 16 "
                             "if not given, the book's)")
    parser.add_argument("--tb-prefix", default="luna",
                        help="runs are written under RUNS_DIR/TB_PREFIX/")
    add_data_dirs(parser, workers=True)
    add_runs_dir(parser)
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds weights and the per-epoch shuffle; fixed seed = same run")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                        help="sgd: the book's (momentum --momentum); adam: Adam with beta1 "
                             "= --momentum (0.9 is Adam's usual), what the demo uses: it "
                             "learns in the few thousand samples a CPU can train in minutes "
                             "(--task seg: adam if not given, the book's)")
    parser.add_argument("--lr", type=float, default=0.001, help="learning rate")
    parser.add_argument("--lr-warmup", type=int, default=0, metavar="SAMPLES",
                        help="the learning rate rises in a straight line to --lr over the "
                             "first SAMPLES training samples (counted over all ranks; 0: "
                             "none). The demo's 2,000: with the book's weight init the "
                             "untrained model's two logits lie 5 to 25 apart, and Adam's "
                             "full-size first steps leave the plateau late or never")
    parser.add_argument("--momentum", type=float, default=0.99,
                        help="SGD momentum (with --optimizer adam: beta1)")
    parser.add_argument("--val-stride", type=int, default=10,
                        help="every N-th candidate (or series, with --split series) goes "
                             "to validation")
    parser.add_argument("--split", choices=("candidates", "series"), default="candidates",
                        help="candidates: the book's split, every N-th candidate (a scan, "
                             "often a nodule, on both sides); series: every N-th series "
                             "(sorted by uid) wholly in validation, no scan on both sides")


def _add_validation_options(parser: argparse.ArgumentParser) -> None:
    """What each validation keeps and scores, and the book's ch. 12 remedies (balanced
    order, augmentation)."""
    parser.add_argument("--examples", type=int, default=8, metavar="K",
                        help="after each validation keep the K worst misses, K false alarms "
                             "and K best hits with their chunks in RUN_DIR/examples/ (0: none)")
    parser.add_argument("--keep-examples", type=int, default=5, metavar="N",
                        help="keep the examples of the newest N validations")
    parser.add_argument("--finetune", default=None, metavar="RUN|CHECKPOINT",
                        help="--task malignancy: start from a nodule classifier (a run folder: "
                             "its best.pt; or a .pt); its head starts new")
    parser.add_argument("--finetune-depth", type=int, default=1, metavar="N",
                        help="with --finetune: train the last N blocks (1: the head alone; 2: "
                             "the last block too), the rest frozen")
    parser.add_argument("--val-every", type=int, default=1, metavar="N",
                        help="validate every N-th epoch and after the last (--task seg: 5 if "
                             "not given, the book's: its validation is whole slices)")
    parser.add_argument("--val-full", action="store_true",
                        help="--task seg: validate on every slice of the validation series, "
                             "not only those that hold nodule pixels")
    parser.add_argument("--froc-bootstrap", type=int, default=1000, metavar="N",
                        help="resamples of the validation scans for the CPM's 95 %% interval "
                             "(0: no interval)")
    parser.add_argument("--balanced", type=int, nargs="?", const=1, default=0, metavar="RATIO",
                        help="the book's balanced training order: one nodule after every "
                             "RATIO non-nodules (1 if not given), each list reshuffled every "
                             "epoch from the seed; validation is never balanced")
    parser.add_argument("--epoch-samples", type=int, default=None, metavar="N",
                        help="training samples per epoch (default: 200,000 with --balanced, "
                             "as the book; --task seg: 300,000, the book's; the training "
                             "set's size otherwise)")
    parser.add_argument("--augmented", action="store_true",
                        help="the book's augmentation, every part at its value: flip, offset "
                             "0.1, scale 0.2, rotate, noise 25 HU (training only, per batch "
                             "on the training device)")
    parser.add_argument("--augment-flip", action="store_true", help="flip each axis at random")
    parser.add_argument("--augment-offset", type=float, nargs="?", const=0.1, default=0.0,
                        metavar="F", help="shift by up to F of the chunk (0.1 if not given)")
    parser.add_argument("--augment-scale", type=float, nargs="?", const=0.2, default=0.0,
                        metavar="F", help="scale by up to +-F (0.2 if not given)")
    parser.add_argument("--augment-rotate", action="store_true",
                        help="rotate about the slice axis by a random angle")
    parser.add_argument("--augment-noise", type=float, nargs="?", const=25.0, default=0.0,
                        metavar="HU", help="add Gaussian noise of HU (25 if not given)")


def _add_watching_options(parser: argparse.ArgumentParser) -> None:
    """How the run is watched: the cockpit's baseline, notifications, images."""
    parser.add_argument("--baseline", default=None, metavar="RUN",
                        help="cockpit: a run (directory, or 'latest' under --runs-dir) whose "
                             "validation curves show beside this run's (b picks one)")
    parser.add_argument("--notify-cmd", default=None, metavar="CMD",
                        help="run CMD through the shell when the run finishes, stops, fails, "
                             "hits a non-finite loss or misses the nodules for 3 epochs; "
                             "LUNA_EVENT, LUNA_RUN_DIR and LUNA_MESSAGE are in its environment")
    parser.add_argument("--notify-timeout", type=float, default=30.0, metavar="S",
                        help="a --notify-cmd still running after S seconds is killed")
    parser.add_argument("--images", choices=("auto", "halfblock", "sixel", "kitty", "off"),
                        default="auto",
                        help="cockpit: how CT examples are drawn; auto = half-blocks in tmux "
                             "or screen or when unsure, else what the terminal supports")
    parser.add_argument("--quiet", action="store_true",
                        help="cockpit: no terminal bell or desktop notification on alarms and "
                             "at the end of the run")


def _add_control_options(parser: argparse.ArgumentParser) -> None:
    """The device, resuming, checkpoints, the non-finite policy, threads and smoke tests;
    the run's name (comment)."""
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto picks CUDA when available")
    parser.add_argument("--resume", default=None, metavar="PATH",
                        help="continue a run from a checkpoint file or a run directory "
                             "(its newest checkpoint)")
    parser.add_argument("--keep-checkpoints", type=int, default=3,
                        help="how many of the newest checkpoints to keep (plus best.pt)")
    parser.add_argument("--on-nonfinite", choices=("auto", "stop", "skip", "pause"),
                        default="auto",
                        help="what a nan/inf training loss does: stop (checkpoint + exit 3), "
                             "skip the batch, or pause; auto = stop headless, pause in the "
                             "cockpit")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for the model on --device cpu; 0 = the cores left "
                             "over by the loader workers (at least 1)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (slow start; can speed up GPU steps)")
    parser.add_argument("--max-batches", type=int, default=None,
                        help="cut every training phase after N batches (smoke tests)")
    parser.add_argument("--rank-timings", type=int, default=10, metavar="N",
                        help="under torchrun: gather every rank's timings every N training "
                             "batches to name a straggler (0: off)")
    parser.add_argument("comment", nargs="?", default="dlwpt",
                        help="suffix of the run and TensorBoard directory names")


_NOT_GIVEN = object()

#: Options a task refuses unless at these values (they would be silently ignored).
_NOT_FOR_TASK = {"seg": {"balanced": 0, "split": "series", "froc_bootstrap": 1000,
                         "finetune": None},
                 "malignancy": {"balanced": 0, "split": "series"},
                 "nodule": {"finetune": None}}
_WHY_NOT = {"seg": "segmentation trains on every nodule and splits by series; it has no "
                   "candidate ranking to balance or bootstrap",
            "malignancy": "it balances malignant, benign and non-nodule samples in the book's "
                          "order and splits by series",
            "nodule": "fine-tuning is for --task malignancy"}
_WHY_NOT["seg"] += "; fine-tuning is for --task malignancy"

# ---------------------------------------------------------------- validation after parsing
# Each rule: (option, lowest, highest, highest included). A value that is None (an option
# whose default is "not given") is not checked. Floats must also be finite: argparse's
# ``float`` takes "nan" and "inf", and ``nan < 0`` is False, so a plain minimum lets nan by.

#: Integer options: (name, minimum) — the run's minimums since the first release.
_INT_MINIMUMS = (("epochs", 1), ("batch_size", 1), ("num_workers", 0), ("threads", 0),
                 ("val_stride", 2), ("keep_checkpoints", 1), ("balanced", 0),
                 ("froc_bootstrap", 0), ("examples", 0), ("keep_examples", 1),
                 ("epoch_samples", 1), ("max_batches", 1), ("lr_warmup", 0),
                 ("val_every", 1), ("finetune_depth", 1), ("rank_timings", 0))

#: --seed seeds numpy's default_rng (refuses a negative seed) and torch generators with
#: seed * 1_000_003 + epoch (64 bits at most): 0 .. 2**32 - 1 is safe everywhere.
_SEED_RANGE = (0, 2**32 - 1)

#: Float options: name -> (lowest, highest, highest included, what the message says).
#: - lr, momentum: the rule live steering applies (luna_core.run.command_table.Setting.check).
#: - augment_offset: the shift is offset * U[-1, 1) in affine_grid's normalised coordinates,
#:   which span 2 across the chunk (luna_core.train.augment.affine_params). 1.0 moves the
#:   candidate's centre up to the chunk's edge; more pushes the nodule out of the chunk (and
#:   past 2 the chunk is all border padding): at most 1.0.
#: - augment_scale: each axis is scaled by 1 + scale * U[-1, 1); at 1.0 or more that factor
#:   reaches 0 (the chunk collapses to one voxel) or flips sign: below 1.0.
#: - augment_noise: a standard deviation in HU, any finite value from 0.
#: - notify_timeout: seconds; the sink joins its thread with timeout + 5, and Thread.join
#:   overflows past threading.TIMEOUT_MAX (~292 years): at most a day, plenty for a command.
_FLOAT_RANGES = {
    "lr": (0.0, math.inf, False, "a finite number above 0"),
    "momentum": (0.0, 1.0, False, "a finite number in [0, 1)"),
    "augment_offset": (0.0, 1.0, True, "a finite number from 0 to 1"),
    "augment_scale": (0.0, 1.0, False, "a finite number from 0 to below 1"),
    "augment_noise": (0.0, math.inf, False, "a finite number from 0"),
    "notify_timeout": (0.0, 86400.0, True, "a finite number of seconds above 0, at most 86400"),
}
#: The float options whose lowest value is excluded (a zero lr or timeout does nothing).
_ABOVE_LOWEST = {"lr", "notify_timeout"}

#: --tb-prefix and the comment name directories: RUNS_DIR/TB_PREFIX/TIME-COMMENT.
_NAME_MAX_CHARS = 100
#: ... and the TensorBoard directory is TIME-trn_cls-COMMENT (28 bytes more), within the
#: usual 255-byte limit on one file name.
_NAME_MAX_BYTES = 200
_NAME_RULE = (f"one directory name: 1 to {_NAME_MAX_CHARS} characters "
              f"({_NAME_MAX_BYTES} bytes), no '/', '\\' or NUL")
#: --tb-prefix is a folder of its own ('..', '.', hidden): the comment always follows
#: "TIME-", so a leading '.' there names no other folder.
_PREFIX_RULE = _NAME_RULE + ", not starting with '.'"


def _flag(name: str) -> str:
    return "the comment" if name == "comment" else f"--{name.replace('_', '-')}"


def _name_problem(name: str, value) -> str | None:
    """A message if ``value`` is not one safe path component (nothing else is refused:
    spaces, unicode, '-', '_', '=' ... all stay allowed)."""
    if not isinstance(value, str):
        return None
    try:
        size = len(os.fsencode(value))
    except UnicodeError:
        size = len(value.encode("utf-8", "surrogatepass"))
    dot = name == "tb_prefix" and value.startswith(".")
    if (not value or "/" in value or "\\" in value or "\0" in value or dot
            or len(value) > _NAME_MAX_CHARS or size > _NAME_MAX_BYTES):
        rule = _PREFIX_RULE if name == "tb_prefix" else _NAME_RULE
        return f"{_flag(name)} {value!r} is not allowed: it must be {rule}"
    return None


def _runs_dir_problem(runs_dir) -> str | None:
    """--runs-dir must be a directory we can write to, or be creatable: the nearest part of
    it that exists must be a writable directory."""
    if not isinstance(runs_dir, str):
        return None
    path = os.path.abspath(runs_dir)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    # the path itself, or the nearest existing directory above it
    where = runs_dir if path == os.path.abspath(runs_dir) else f"{runs_dir} (at {path})"
    if not os.path.isdir(path):
        return f"--runs-dir {where}: not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"--runs-dir {where}: not writable"
    return None


def validate_options(options: argparse.Namespace, *, disk: bool = True) -> str | None:
    """The training options after parsing: None if they are fine, else a one-line message
    naming the option and the value (e.g. "--lr must be a finite number above 0, not nan").

    For the run (parse_options turns it into the parser's usage error, exit 2) and for
    `luna-tui queue add` (before anything is queued). Options missing from ``options`` are
    skipped. ``disk``: also check --runs-dir (exists as a non-directory, or not writable);
    the only check that looks at the file system.
    """
    for name, minimum in _INT_MINIMUMS:
        value = getattr(options, name, None)
        if value is not None and value < minimum:
            return f"{_flag(name)} must be at least {minimum}, not {value}"
    seed = getattr(options, "seed", None)
    if seed is not None and not _SEED_RANGE[0] <= seed <= _SEED_RANGE[1]:
        return f"--seed must be from {_SEED_RANGE[0]} to {_SEED_RANGE[1]}, not {seed}"
    for name, (low, high, high_included, what) in _FLOAT_RANGES.items():
        value = getattr(options, name, None)
        if value is None:
            continue
        ok = (math.isfinite(value)
              and (value > low if name in _ABOVE_LOWEST else value >= low)
              and (value <= high if high_included else value < high))
        if not ok:
            return f"{_flag(name)} must be {what}, not {value}"
    task = getattr(options, "task", None) or DEFAULT_TASK
    for name, value in (_NOT_FOR_TASK.get(task) or {}).items():
        if getattr(options, name, value) != value:
            return f"{_flag(name)} does not apply to --task {task} ({_WHY_NOT[task]})"
    for name in ("tb_prefix", "comment"):
        problem = _name_problem(name, getattr(options, name, None))
        if problem:
            return problem
    if disk:
        return _runs_dir_problem(getattr(options, "runs_dir", None))
    return None


def given_resume(argv: list[str]) -> bool:
    """Whether ``argv`` asks to resume, in any spelling argparse takes: ``--resume PATH``,
    ``--resume=PATH``, abbreviations (``--resu PATH``, ``--res=PATH``). Parsed with the run's
    own parser, so that a value that merely looks like --resume (``--notify-cmd=--resume``,
    a comment after ``--``) does not count.

    Argv that does not parse (or asks for --help) gives False, silently: nothing is printed
    and nothing exits here; the caller's own parse (validate_options' parser) reports it.
    """
    parser = build_parser()

    class _Unparsable(Exception):
        pass

    def fail(*_args, **_kwargs):
        raise _Unparsable

    # every way out of parse_args: errors, --help, usage; none prints or exits
    parser.error = fail
    parser.exit = fail
    parser.print_help = fail
    parser.print_usage = fail
    try:
        options = parser.parse_args(list(argv))
    except _Unparsable:
        return False
    return options.resume is not None


def option_defaults() -> dict:
    """Every run option's default value, by its name (as a run's options record them)."""
    return vars(build_parser().parse_args([]))


def parse_options(argv: list[str], prog: str = "luna-tui", *,
                  disk: bool = True) -> tuple[argparse.Namespace, set[str]]:
    """Parse argv and check it (validate_options: a bad value is the parser's error, exit 2,
    its usage headed ``prog``); also return the names of the options given explicitly (so
    that a resumed run can take the others from its checkpoint). ``disk``: as
    validate_options' (False: --runs-dir is not looked at)."""
    parser = build_parser(prog=prog)
    options = parser.parse_args(argv)
    # the same parser with a marker for every default: what is not the marker was given
    bare = build_parser()
    bare.set_defaults(**{name: _NOT_GIVEN for name in vars(options)})
    given = {name for name, value in vars(bare.parse_args(argv)).items()
             if value is not _NOT_GIVEN}
    for name, value in TASK_DEFAULTS.get(options.task, {}).items():
        if name not in given:           # the book's value for this task
            setattr(options, name, value)
    # a resume writes in its run's folder, with the checkpoint's --runs-dir unless given
    problem = validate_options(options, disk=disk and (options.resume is None
                                                       or "runs_dir" in given))
    if problem:
        parser.error(problem)
    return options, given


def split_comment(argv: list[str]) -> tuple[str | None, list[str]]:
    """(the run's comment when ``argv`` gives one, ``argv`` without it): the one token that
    is not an option nor an option's value."""
    actions = {o: a for a in build_parser()._actions for o in a.option_strings}

    def action_of(name: str):
        """The option ``name`` names, as argparse reads it: whole, or a unique prefix."""
        if name in actions:
            return actions[name]
        found = {id(a): a for o, a in actions.items() if o.startswith("--")
                 and name.startswith("--") and o.startswith(name)}
        return next(iter(found.values())) if len(found) == 1 else None

    i = 0
    while i < len(argv):
        token = argv[i]
        action = action_of(token.split("=", 1)[0]) if token.startswith("-") else None
        if action is None and not token.startswith("-"):
            return token, argv[:i] + argv[i + 1:]
        if action is not None and "=" not in token and action.nargs != 0:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            takes_next = action.nargs is None or (nxt is not None and not nxt.startswith("-")
                                                  and _optional_value(action, nxt))
            i += 1 if takes_next else 0
        i += 1
    return None, list(argv)


def _optional_value(action, token: str) -> bool:
    """Whether an option with an optional value (nargs '?', like --balanced) takes ``token``:
    when it parses as its type."""
    try:
        (action.type or str)(token)
    except (TypeError, ValueError):
        return False
    return True
