"""The core and training never import Qt or napari; only app/ does."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO

GUI_MODULES = ("PySide6", "PyQt5", "PyQt6", "PySide2", "qtpy", "napari", "vispy", "magicgui", "superqt")


def test_importing_core_and_training_loads_no_gui_module():
    code = (
        "import sys, pkgutil, importlib\n"
        "import cellcounter, training\n"
        "for pkg in (cellcounter, training):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {GUI_MODULES!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "", f"GUI modules imported by the core: {out.stdout.strip()}"


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_no_source_file_outside_app_imports_gui_or_app():
    offenders = []
    for pkg in ("cellcounter", "training"):
        for f in (REPO / pkg).rglob("*.py"):
            for mod in _imports(f):
                top = mod.split(".")[0]
                if top in GUI_MODULES or top == "app":
                    offenders.append(f"{f.relative_to(REPO)} imports {mod}")
                if pkg == "cellcounter" and top == "training":
                    offenders.append(f"{f.relative_to(REPO)} imports {mod} (core must not depend on training)")
    assert offenders == []


def test_core_never_calls_sys_exit():
    offenders = []
    for f in (REPO / "cellcounter").rglob("*.py"):
        if f.name == "cli.py":
            continue
        src = f.read_text(encoding="utf-8")
        if "sys.exit(" in src or "SystemExit" in src:
            offenders.append(str(f.relative_to(REPO)))
    assert offenders == []
