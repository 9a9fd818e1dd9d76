"""Where a guard or action is implemented: a method of that name in a Python class that
subclasses the machine's generated class (or, failing that, the generated default)."""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path

SKIPPED_FOLDERS = frozenset({".git", ".hg", ".venv", "venv", "node_modules", "__pycache__",
                             "site-packages", "build", "dist", ".tox", ".mypy_cache"})
MAX_FILES = 5_000


@dataclass(frozen=True, slots=True)
class Method:
    """A method definition: the file, its 1-based line and column of the name, and the class."""

    path: Path
    line: int
    column: int
    class_name: str
    generated: bool


def _base_names(node: ast.ClassDef) -> set[str]:
    names = set()
    for base in node.bases:
        while isinstance(base, ast.Subscript):  # Machine["A", "B"]
            base = base.value
        if isinstance(base, ast.Name):
            names.add(base.id)
        elif isinstance(base, ast.Attribute):
            names.add(base.attr)
    return names


class MethodFinder:
    """Finds methods under some folders; each file is parsed once per modification time."""

    def __init__(self) -> None:
        self._parsed: dict[Path, tuple[float, list[tuple[str, set[str], str, int, int]]]] = {}

    def _classes(self, path: Path) -> list[tuple[str, set[str], str, int, int]]:
        """(class, base names, method, line, column) of every method in a file."""
        try:
            stamp = path.stat().st_mtime
        except OSError:
            return []
        cached = self._parsed.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        found: list[tuple[str, set[str], str, int, int]] = []
        try:
            tree = ast.parse(path.read_bytes(), str(path))
        except (SyntaxError, ValueError, OSError, RecursionError):
            tree = None
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.ClassDef):
                bases = _base_names(node)
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        found.append((node.name, bases, item.name, item.lineno,
                                      item.col_offset + len("def ") + 1 +
                                      (len("async ") if isinstance(item, ast.AsyncFunctionDef)
                                       else 0)))
        self._parsed[path] = (stamp, found)
        return found

    def find(self, roots: list[Path], machine: str, method: str) -> list[Method]:
        """Subclass implementations first (by path), then the generated default."""
        subclasses: list[Method] = []
        defaults: list[Method] = []
        for path in _python_files(roots):
            for class_name, bases, name, line, column in self._classes(path):
                if name != method:
                    continue
                if machine in bases:
                    subclasses.append(Method(path, line, column, class_name, False))
                elif class_name == machine:
                    defaults.append(Method(path, line, column, class_name, True))
        return subclasses + defaults


def _python_files(roots: list[Path]) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders
                                   if d not in SKIPPED_FOLDERS and not d.startswith("."))
            found.extend(Path(folder) / f for f in sorted(files) if f.endswith(".py"))
            if len(found) >= MAX_FILES:
                return found[:MAX_FILES]
    return found
