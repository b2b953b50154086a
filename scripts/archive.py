"""Archive a built flavour as ``dist/cellcounter-VERSION-FLAVOUR-OS-ARCH.tar.gz`` with a SHA-256 checksum file.

    python scripts/archive.py [full|count]     (dist/cellcounter or dist/cellcounter-count; default full)

The version comes from the installed package's metadata (pyproject.toml is the one source of truth).
"""

from __future__ import annotations

import hashlib
import platform
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


FOLDERS = {"full": "cellcounter", "count": "cellcounter-count"}


def main(argv: list[str]) -> int:
    flavour = argv[0] if argv else "full"
    if flavour not in FOLDERS or len(argv) > 1:
        print(f"usage: archive.py [{'|'.join(FOLDERS)}]", file=sys.stderr)
        return 2
    folder = ROOT / "dist" / FOLDERS[flavour]
    if not (folder / "cellcounter-app").exists() and not (folder / "cellcounter-app.exe").exists():
        print(f"error: {folder} holds no built app; run pyinstaller first", file=sys.stderr)
        return 2
    name = f"cellcounter-{version('cellcounter')}-{flavour}-{platform.system().lower()}-{platform.machine()}.tar.gz"
    archive = ROOT / "dist" / name
    with tarfile.open(archive, "w:gz", compresslevel=3) as tar:
        tar.add(folder, arcname=FOLDERS[flavour])
    h = hashlib.sha256()
    with open(archive, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    (archive.parent / (archive.name + ".sha256")).write_text(f"{h.hexdigest()}  {archive.name}\n")
    size = folder_size(folder)
    print(f"{archive} ({archive.stat().st_size / 1e9:.2f} GB; folder {size / 1e9:.2f} GB)")
    return 0


def folder_size(folder: Path) -> int:
    """Bytes on disk as ``du`` counts them: a symlink is its own few bytes, not its target again (PyInstaller
    links the CUDA libraries, and counting targets twice reported 7.47 GB for a 5.1 GB folder), and a file
    hard-linked twice is counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for f in folder.rglob("*"):
        st = f.lstat()
        if f.is_symlink() or (st.st_dev, st.st_ino) in seen or not f.is_file():
            continue
        seen.add((st.st_dev, st.st_ino))
        total += st.st_size
    return total


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
