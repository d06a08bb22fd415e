"""Names say one thing each (issue 29): no two modules of luna_core and luna_tui share a file
name (``__init__.py`` and ``__main__.py`` aside), so a name in a traceback, an import or a
conversation points at one file.

Machine-independent: it reads the source tree only."""

from __future__ import annotations

import os
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("luna_core", "luna_tui")
EXEMPT = {"__init__.py", "__main__.py"}


def modules_by_name(root: str = ROOT) -> dict[str, list[str]]:
    """Every module file of the packages under ``root``, by its file name."""
    found: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py") and name not in EXEMPT:
                    found[name].append(os.path.relpath(os.path.join(folder, name), root))
    return found


def shared_names(root: str = ROOT) -> dict[str, list[str]]:
    return {name: paths for name, paths in modules_by_name(root).items() if len(paths) > 1}


def test_no_two_modules_share_a_name():
    assert len(modules_by_name()) > 50
    assert shared_names() == {}


def test_a_shared_name_is_found(tmp_path):
    for path in ("luna_core/run/notes.py", "luna_tui/model/notes.py", "luna_tui/__init__.py",
                 "luna_core/__init__.py", "luna_core/data/__init__.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    assert shared_names(str(tmp_path)) == {
        "notes.py": ["luna_core/run/notes.py", "luna_tui/model/notes.py"]}
