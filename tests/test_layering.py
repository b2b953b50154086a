"""The layers hold: the core and training never import Qt or napari (only app/ does), no import circles, no
torch on the path that opens the app and predicts; and ruff finds nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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


def _tool(name: str) -> str:
    """A console script of this environment (the venv's bin beside the interpreter)."""
    return str(Path(sys.executable).with_name(name))


def test_import_contracts_hold():
    """The layers of pyproject.toml's ``[tool.importlinter]``: app above training above the core, Qt and napari
    in app only, annotations/formats/images/metrics without torch; imports inside functions count too."""
    out = subprocess.run([_tool("lint-imports"), "--no-cache"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_ruff_finds_nothing():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "cellcounter", "training", "app",
                          "tests", "bench", "scripts"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_core_never_calls_sys_exit():
    offenders = []
    for f in (REPO / "cellcounter").rglob("*.py"):
        if f.name == "cli.py":
            continue
        src = f.read_text(encoding="utf-8")
        if "sys.exit(" in src or "SystemExit" in src:
            offenders.append(str(f.relative_to(REPO)))
    assert offenders == []


def _repo_modules() -> dict[str, object]:
    out = {}
    for pkg in ("cellcounter", "training", "app"):
        for f in (REPO / pkg).rglob("*.py"):
            parts = list(f.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _edges(path, modules, module_level_only: bool) -> set[str]:
    """What a file imports: repo modules by name (``from pkg import sub`` is ``pkg.sub``), other packages by
    their top name. Imports under ``if TYPE_CHECKING:`` are not run and do not count."""
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def walk(nodes, top):
        for node in nodes:
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
                yield from walk(node.orelse, top)
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not module_level_only:
                    yield from walk(node.body, False)
            elif hasattr(node, "body"):  # classes, try, with, if
                for field in ("body", "orelse", "finalbody", "handlers"):
                    yield from walk(getattr(node, field, []) or [], top)

    out = set()
    for node in walk(tree.body, True):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        else:
            continue
        out |= {n if n in modules else n.split(".")[0] for n in names}
    return out


def test_no_module_of_the_project_imports_itself_in_a_circle():
    """#33 point 6: annotations <-> regions <-> formats.qupath, imageio <-> slides, backends <-> choice were
    circles (held together by imports inside functions). Every import counts here, lazy ones too."""
    modules = _repo_modules()
    graph = {m: {d for d in _edges(f, modules, False) if d in modules and d != m} for m, f in modules.items()}
    cycles, index, low, stack, on = [], {}, {}, [], set()

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


def test_opening_the_app_and_predicting_import_no_torch_at_module_level():
    """#35: the counting build has no torch. What the window, the command line, the formats, the store and
    prediction on OpenVINO / ONNX Runtime import when loaded leads to no torch (only training, export,
    Grad-CAM and the torch backend's own code may)."""
    modules = _repo_modules()
    graph = {m: _edges(f, modules, True) for m, f in modules.items()}
    torch_only = {"training.loop", "training.data", "training.cli", "training.setup", "training.augment",
                  "training.unlabelled", "training.ddp", "cellcounter.inference.export",
                  "cellcounter.inference.detector_net", "cellcounter.inference.gradcam",
                  "cellcounter.inference.quantize", "cellcounter.models.build", "cellcounter.models.unet",
                  "cellcounter.models.pretrained", "cellcounter.inference.cluster"}
    starts = [m for m in modules if m.startswith(("app", "cellcounter")) and m not in torch_only
              and not any(m.startswith(t + ".") for t in torch_only)]
    offenders = []
    for start in starts:
        seen, todo = {start}, [(start, (start,))]
        while todo:
            m, path = todo.pop()
            for dep in graph.get(m, ()):
                if dep in ("torch", "torchvision"):
                    offenders.append(" -> ".join((*path, dep)))
                elif dep in modules and dep not in seen:
                    seen.add(dep)
                    todo.append((dep, (*path, dep)))
    assert offenders == [], "\n".join(sorted(set(offenders))[:10])
