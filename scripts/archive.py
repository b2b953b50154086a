"""Archive ``dist/cellcounter`` as ``dist/cellcounter-VERSION-OS-ARCH.tar.gz`` with a SHA-256 checksum file.

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


def main() -> int:
    folder = ROOT / "dist" / "cellcounter"
    if not (folder / "cellcounter-app").exists() and not (folder / "cellcounter-app.exe").exists():
        print(f"error: {folder} holds no built app; run pyinstaller first", file=sys.stderr)
        return 2
    name = f"cellcounter-{version('cellcounter')}-{platform.system().lower()}-{platform.machine()}.tar.gz"
    archive = ROOT / "dist" / name
    with tarfile.open(archive, "w:gz", compresslevel=3) as tar:
        tar.add(folder, arcname="cellcounter")
    h = hashlib.sha256()
    with open(archive, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    (archive.parent / (archive.name + ".sha256")).write_text(f"{h.hexdigest()}  {archive.name}\n")
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    print(f"{archive} ({archive.stat().st_size / 1e9:.2f} GB; folder {size / 1e9:.2f} GB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
