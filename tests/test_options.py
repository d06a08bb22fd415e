"""The training options: which were given on the command line (a resumed run takes the others
from its checkpoint), without argparse internals."""

from __future__ import annotations

from luna_core.train.options import DEFAULT_DATA_DIR, parse_options


def test_options_given_are_told_apart_from_defaults_even_when_zero_or_false():
    options, given = parse_options(["--num-workers", "0", "--seed", "0", "--headless",
                                    "--lr", "0.01", "mine"])
    assert given == {"num_workers", "seed", "headless", "lr", "comment"}
    assert (options.num_workers, options.seed, options.comment) == (0, 0, "mine")
    options, given = parse_options([])
    assert given == set()
    assert options.data_dir == DEFAULT_DATA_DIR and options.comment == "dlwpt"


# ------------------------------------------------------------ validation after parsing
import argparse  # noqa: E402

import pytest  # noqa: E402

from luna_core.train import options as options_module  # noqa: E402
from luna_core.train.options import build_parser, given_resume, validate_options  # noqa: E402

NAME_RULE = "must be one directory name"

BAD = [
    # the minimums the run has always had, now with the value
    (["--epochs", "0"], "--epochs must be at least 1, not 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--num-workers", "-1"], "--num-workers must be at least 0"),
    (["--val-stride", "1"], "--val-stride must be at least 2"),
    (["--keep-examples", "0"], "--keep-examples must be at least 1"),
    (["--epoch-samples", "0"], "--epoch-samples must be at least 1"),
    (["--max-batches", "0"], "--max-batches must be at least 1, not 0"),
    (["--seed", "-1"], "--seed must be from 0 to 4294967295, not -1"),
    # nan and inf (nan < 0 is False: --augment-offset nan used to pass)
    (["--augment-offset", "nan"], "--augment-offset must be a finite number from 0 to 1, "
                                  "not nan"),
    (["--augment-noise", "inf"], "--augment-noise must be a finite number from 0, not inf"),
    (["--augment-offset", "-0.1"], "--augment-offset must be a finite number"),
    (["--augment-offset", "1.5"], "--augment-offset must be a finite number from 0 to 1"),
    (["--augment-scale", "1"], "--augment-scale must be a finite number from 0 to below 1"),
    # lr and momentum: live steering's rule (Setting.check)
    (["--lr", "nan"], "--lr must be a finite number above 0, not nan"),
    (["--lr", "0"], "--lr must be a finite number above 0, not 0.0"),
    (["--lr=-1e-3"], "--lr must be a finite number above 0"),
    (["--momentum", "1"], "--momentum must be a finite number in [0, 1), not 1.0"),
    (["--momentum", "-0.5"], "--momentum must be a finite number in [0, 1)"),
    (["--momentum=-inf"], "--momentum must be a finite number in [0, 1), not -inf"),
    (["--notify-timeout", "nan"], "--notify-timeout must be a finite number of seconds above "
                                  "0, at most 86400, not nan"),
    (["--notify-timeout", "0"], "--notify-timeout must be a finite number of seconds above 0"),
    (["--notify-timeout", "1e300"], "--notify-timeout must be a finite number of seconds"),
    # the comment and --tb-prefix name directories: one safe component each
    (["/../2026-01-01_00.00.00-other"], "the comment '/../2026-01-01_00.00.00-other' is not "
                                        "allowed: it " + NAME_RULE),
    (["../x"], "the comment '../x' is not allowed"),
    (["--tb-prefix", ".."], "--tb-prefix '..' is not allowed"),
    (["--tb-prefix", "."], "--tb-prefix '.' is not allowed"),
    (["--tb-prefix", ".hidden"], "--tb-prefix '.hidden' is not allowed: it " + NAME_RULE),
    (["a\\b"], "the comment 'a\\\\b' is not allowed"),
    (["a\0b"], "the comment 'a\\x00b' is not allowed"),
    ([""], "the comment '' is not allowed"),
    (["x" * 101], "is not allowed: it must be one directory name: 1 to 100 characters"),
    (["é" * 101], "is not allowed"),
    (["🙂" * 60], "is not allowed"),                   # 60 characters, but 240 bytes
    (["--tb-prefix", "../../x"], "--tb-prefix '../../x' is not allowed: it " + NAME_RULE),
    (["--tb-prefix", "a/b"], "--tb-prefix 'a/b' is not allowed"),
    (["--tb-prefix="], "--tb-prefix '' is not allowed"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[repr(a)[:40] for a, _m in BAD])
def test_bad_options_are_a_usage_error_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_options(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    error_line = err.strip().splitlines()[-1]
    assert error_line.startswith("luna-tui: error: ") and message in error_line, err
    # the same message without a parser (what `luna-tui queue add` calls)
    assert message in validate_options(build_parser().parse_args(argv))


def test_every_float_option_refuses_nan_and_inf():
    floats = [a.option_strings[0] for a in build_parser()._actions if a.type is float]
    assert "--lr" in floats and "--notify-timeout" in floats
    for flag in floats:
        for value in ("nan", "inf", "-inf"):
            problem = validate_options(build_parser().parse_args([f"{flag}={value}"]))
            assert problem and problem.startswith(flag) and problem.endswith(value), flag


GOOD = [
    [],
    ["my run = lr 0.01, Δ ünïcødé 🙂"],              # spaces, '=', ',', unicode
    ["lr=0.001_balanced-2"],
    ["mine"], ["my-comment"], ["balanced-offset"], ["x" * 100], ["a..b"], ["x."], [".5"], [".."],
    ["--tb-prefix", "luna ch12=x", "--momentum", "0", "--lr", "1e-5"],
    ["--augmented", "--augment-offset", "1", "--augment-scale", "0.99", "--augment-noise"],
    ["--augment-offset", "--augment-scale", "--balanced", "--epoch-samples", "10"],
    ["--max-batches", "1", "--notify-timeout", "0.5", "--seed", "4294967295"],
    ["--examples", "0", "--froc-bootstrap", "0", "--threads", "0", "--num-workers", "0"],
]


@pytest.mark.parametrize("argv", GOOD, ids=[repr(a)[:40] for a in GOOD])
def test_good_options_still_pass(argv, tmp_path):
    options, _given = parse_options([*argv, "--runs-dir", str(tmp_path / "runs")])
    assert validate_options(options) is None


def test_validate_options_takes_a_partial_namespace():
    assert validate_options(argparse.Namespace(lr=0.1)) is None
    assert validate_options(argparse.Namespace(lr=float("nan"))) == \
        "--lr must be a finite number above 0, not nan"


def test_runs_dir_that_is_a_file_is_refused(tmp_path, capsys):
    a_file = tmp_path / "runs"
    a_file.write_text("not a directory")
    with pytest.raises(SystemExit) as exit_info:
        parse_options(["--runs-dir", str(a_file)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f"luna-tui: error: --runs-dir {a_file}: not a directory"
    # below a file: it could never be created
    assert validate_options(build_parser().parse_args(["--runs-dir", str(a_file / "x")])) == \
        f"--runs-dir {a_file / 'x'} (at {a_file}): not a directory"
    # the queue may check without the disk
    options = build_parser().parse_args(["--runs-dir", str(a_file)])
    assert validate_options(options, disk=False) is None


def test_runs_dir_not_writable_is_refused(tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()
    argv = ["--runs-dir", str(tmp_path / "runs")]
    assert validate_options(build_parser().parse_args(argv)) is None
    # tests may run as root, where access() always says writable: simulate it
    monkeypatch.setattr(options_module.os, "access", lambda path, mode: False)
    assert validate_options(build_parser().parse_args(argv)) == \
        f"--runs-dir {tmp_path / 'runs'}: not writable"
    new = ["--runs-dir", str(tmp_path / "new")]      # to be created in a read-only parent
    assert validate_options(build_parser().parse_args(new)) == \
        f"--runs-dir {tmp_path / 'new'} (at {tmp_path}): not writable"


def test_headless_run_with_a_file_as_runs_dir_fails_before_loading_data(tmp_path, capsys):
    from luna_core.headless import run_headless

    a_file = tmp_path / "runs"
    a_file.write_text("")
    with pytest.raises(SystemExit) as exit_info:   # the data dir does not exist either
        run_headless(["--headless", "--runs-dir", str(a_file),
                      "--data-dir", str(tmp_path / "no-data")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == \
        f"luna-tui: error: --runs-dir {a_file}: not a directory"
    assert "no-data" not in err


@pytest.mark.parametrize(("argv", "resumes"), [
    (["--resume", "runs/luna/x"], True),
    (["--resume=runs/luna/x"], True),
    (["--resu", "x"], True),                         # argparse's abbreviations
    (["--res=x"], True),
    (["--epochs", "2", "--re", "x", "mine"], True),
    ([], False),
    (["--epochs", "2", "resume"], False),
    (["--notify-cmd=--resume"], False),              # a value, not the option
    (["--", "--resume"], False),                     # the comment
    (["--resume"], False),                           # a parse error: the caller reports it
    (["--lr", "fast", "--resume", "x"], False),
    (["--help"], False),
])
def test_given_resume_in_any_spelling(argv, resumes, capsys):
    assert given_resume(argv) is resumes
    assert capsys.readouterr() == ("", "")           # never prints, never exits


def test_parse_options_prog_and_disk_for_the_queue(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_options(["--lr", "nan"], prog="luna-tui queue add")
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "luna-tui queue add: error: --lr must be a finite number above 0, not nan"
    a_file = tmp_path / "runs"
    a_file.write_text("")
    options, given = parse_options(["--runs-dir", str(a_file)], disk=False)
    assert options.runs_dir == str(a_file) and given == {"runs_dir"}
