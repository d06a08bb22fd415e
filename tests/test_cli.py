"""The command line: fast --help, the luna_core import contract, exit statuses."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_luna_core_never_imports_textual():
    code = (
        "import importlib, pkgutil, sys, luna_core\n"
        "for m in pkgutil.walk_packages(luna_core.__path__, 'luna_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
        "('textual', 'textual_plotext', 'luna_tui'))\n"
        "print(len([n for n in sys.modules if n.startswith('luna_core.')]), bad)\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    count, bad = result.stdout.split(" ", 1)
    assert int(count) >= 10 and bad.strip() == "[]"


def test_help_lists_options_with_defaults_without_importing_torch():
    result = _python(
        "import sys\nfrom luna_tui.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    code = e.code\n"
        "print('EXIT', code, 'torch' in sys.modules, 'textual' in sys.modules)\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.strip().endswith("EXIT 0 False False")
    from luna_tui.cli import SUBCOMMANDS

    described = " ".join(out[:out.index("options:")].split())
    for name, spec in SUBCOMMANDS.items():       # every sub-command, from the one list
        assert f"'luna-tui {name}': {spec.help}" in described, name
    for option, default in (("--epochs", "1"), ("--batch-size", "32"), ("--tb-prefix", "luna"),
                            ("--data-dir", "data-unversioned/part2/luna"),
                            ("--cache-dir", "data-unversioned/cache"), ("--runs-dir", "runs"),
                            ("--seed", "0"), ("--lr", "0.001"), ("--momentum", "0.99"),
                            ("--val-stride", "10"), ("--device", "auto"),
                            ("comment", "dlwpt")):
        section = out[out.index("options:"):] if option.startswith("--") else out
        segment = section[section.index(f"  {option}") + 2:]
        segment = " ".join(segment.split("\n  -")[0].split())  # this option's help only
        assert f"(default: {default})" in segment, option


def test_every_subcommand_is_a_module_of_one_shape():
    """Each entry of the table is a module of luna_tui.subcommands with ``build_parser()``
    (prog `luna-tui NAME`) and ``run(argv)``, and nothing else is one."""
    import os

    import luna_tui.subcommands as package
    from luna_tui.subcommands import SUBCOMMANDS, subcommand_module

    for name in SUBCOMMANDS:
        module = subcommand_module(name)
        assert callable(module.run), name
        assert module.build_parser().prog == f"luna-tui {name}", name
    modules = {f[:-3] for f in os.listdir(os.path.dirname(package.__file__))
               if f.endswith("_cmd.py")}
    assert modules == {spec.module for spec in SUBCOMMANDS.values()}


def test_subcommand_help_imports_nothing_heavy():
    """A sub-command parses before it imports its work: --help loads no torch, numpy or
    Textual."""
    result = _python(
        "import contextlib, io, sys\nfrom luna_tui.cli import SUBCOMMANDS, main\n"
        "for name in SUBCOMMANDS:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n            main([name, '--help'])\n"
        "        except SystemExit:\n            pass\n"
        "print(sorted(m for m in ('torch', 'numpy', 'textual', 'SimpleITK') "
        "if m in sys.modules))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_usage_error_exits_2():
    result = subprocess.run([sys.executable, "-m", "luna_tui", "--headless", "--epochs", "x"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--epochs" in result.stderr


def test_bad_data_exits_2_with_one_line_naming_the_file(tiny_data, tmp_path):
    data = tmp_path / "luna"
    data.mkdir()
    (data / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    (data / "candidates.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,class\n1.2.3,1.0,abc,3.0,0\n")
    (data / "subset0").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "luna_tui", "--headless", "--data-dir", str(data),
         "--cache-dir", str(tmp_path / "cache"), "--runs-dir", str(tmp_path / "runs"),
         "--num-workers", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    # one line: the reason (no options dump, no "status: failed" repeating it)
    (line,) = result.stderr.splitlines()
    assert " ERROR " in line and f"{data / 'candidates.csv'}:2" in line
    assert not (tmp_path / "runs").exists()


def test_a_missing_data_folder_is_said_to_be_missing(tmp_path):
    missing = tmp_path / "not-here"
    result = subprocess.run(
        [sys.executable, "-m", "luna_tui", "--headless", "--data-dir", str(missing),
         "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert f"ERROR {missing}: the data folder does not exist" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv", [["synth", "--help"], ["prepcache", "--help"]])
def test_subcommand_help(argv):
    result = subprocess.run([sys.executable, "-m", "luna_tui", *argv], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "usage: luna-tui" in result.stdout


def test_synth_then_prepcache(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "luna_tui", "synth", "--out", str(out),
                             "--series", "3", "--negatives-per-series", "10", "--size-xy", "64"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (out / "candidates.csv").exists() and (out / "annotations.csv").exists()
    again = subprocess.run([sys.executable, "-m", "luna_tui", "synth", "--out", str(out)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and str(out) in again.stderr
    cache = tmp_path / "cache"
    result = subprocess.run([sys.executable, "-m", "luna_tui", "prepcache", "--data-dir",
                             str(out), "--cache-dir", str(cache), "--num-workers", "2"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "prepcache     3/3 series" in result.stderr
    assert "3 series built, 0 already in the store" in result.stderr
    assert len(list((cache / "chunks-32x48x48").glob("*.chunks"))) == 3


def test_help_says_what_each_command_is(capsys):
    # issue 31, item 8: queue add's help spoke of the cockpit and hid --sweep / --preset;
    # check suggested other workers than the default; --cache-dir spoke of "converted CTs"
    from luna_core.data.default_dirs import default_num_workers
    from luna_tui.cli import main as cli_main

    assert cli_main(["queue", "add", "--help"]) == 0
    head = "\n".join(capsys.readouterr().out.splitlines()[:6])
    assert "usage: luna-tui queue add [--sweep] [--preset ch12]" in head
    assert "cockpit" not in head and "headless" in head
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "the chunk store" in out and "converted CTs" not in out
    assert f"--num-workers NUM_WORKERS DataLoader worker processes (0 loads in the training " \
           f"process) (default: {default_num_workers()})" in out
