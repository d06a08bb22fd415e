"""The figures issue 29 asks for, measured on the tree as it is: classes over 250 lines,
functions over 80, functions that dispatch on event classes with three or more isinstance
tests, and how many product files spell each metric key.

    .venv/bin/python scripts/code-shape.py [--root TREE] [--keys loss/all froc/cpm ...]
                                           [--classes LunaTrainingApp CockpitApp ...]

Product files: luna_core/ and luna_tui/ (tests, benchmarks and scripts are not counted).
--root measures another tree (e.g. an older commit's `git archive` extracted somewhere):
its own files and its own event classes. --classes prints the size of the named classes
whatever their size.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("luna_core", "luna_tui")
CLASS_MAX, SCREEN_MAX, FUNCTION_MAX = 300, 250, 80
DEFAULT_KEYS = ("loss/all", "froc/cpm", "pr/recall", "correct/pos", "roc/auc", "pr/f1_score")
DEFAULT_CLASSES = ("LunaTrainingApp", "CockpitApp", "CockpitScreen")


def product_files(root: str) -> list[str]:
    found = []
    for package in PACKAGES:
        for folder, _dirs, names in os.walk(os.path.join(root, package)):
            found += [os.path.join(folder, n) for n in names if n.endswith(".py")]
    return sorted(found)


def event_classes(root: str) -> set[str]:
    sys.path.insert(0, root)
    from luna_core.run import events as ev

    return {cls.__name__ for cls in ev.EVENT_TYPES.values()} | {"Event"}


def isinstance_tests(node: ast.AST, events: set[str]) -> int:
    count = 0
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and getattr(sub.func, "id", "") == "isinstance" \
                and len(sub.args) == 2:
            names = {n.attr if isinstance(n, ast.Attribute) else getattr(n, "id", "")
                     for n in ast.walk(sub.args[1])}
            count += bool(names & events)
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=ROOT, help="the tree to measure (default: this one)")
    parser.add_argument("--keys", nargs="*", default=list(DEFAULT_KEYS))
    parser.add_argument("--classes", nargs="*", default=list(DEFAULT_CLASSES))
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    events = event_classes(root)
    big_classes, big_functions, chains, named = [], [], [], []
    spread = {key: set() for key in args.keys}
    for path in product_files(root):
        rel = os.path.relpath(path, root)
        text = open(path, encoding="utf-8").read()
        for key in args.keys:
            if re.search(r"[\"']" + re.escape(key) + r"[\"']", text):
                spread[key].add(rel)
        for node in ast.walk(ast.parse(text)):
            size = (node.end_lineno or node.lineno) - node.lineno + 1 \
                if hasattr(node, "lineno") else 0
            if isinstance(node, ast.ClassDef):
                tui = rel.startswith("luna_tui") and node.name.endswith(("Screen", "App"))
                limit = SCREEN_MAX if tui else CLASS_MAX
                if node.name in args.classes:
                    named.append(f"{rel}:{node.lineno} {node.name} {size} lines")
                if size > limit:
                    big_classes.append(f"{rel}:{node.lineno} {node.name} {size} lines "
                                       f"(at most {limit})")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if size > FUNCTION_MAX:
                    big_functions.append(f"{rel}:{node.lineno} {node.name} {size} lines")
                tests = isinstance_tests(node, events)
                if tests >= 3:
                    chains.append(f"{rel}:{node.lineno} {node.name}: {tests} isinstance "
                                  f"tests on event classes")
    print(f"measured: {root}")
    print(f"named classes ({len(named)}):")
    print("".join(f"  {line}\n" for line in sorted(named)), end="")
    print(f"classes over their size ({len(big_classes)}):")
    print("".join(f"  {line}\n" for line in big_classes), end="")
    print(f"functions over {FUNCTION_MAX} lines ({len(big_functions)}):")
    print("".join(f"  {line}\n" for line in big_functions), end="")
    print(f"event-class isinstance chains, 3 or more tests ({len(chains)}):")
    print("".join(f"  {line}\n" for line in chains), end="")
    print("metric key literals, product files that spell each:")
    for key, files in spread.items():
        print(f"  {key:14} {len(files):2}  {' '.join(sorted(files))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
