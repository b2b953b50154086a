"""The installer's size as ``scripts/archive.py`` reports it counts what is on disk (#32 point 7)."""

from __future__ import annotations

import importlib.util
import os

from tests.conftest import REPO


def test_the_folder_size_counts_a_linked_library_once_as_du_does(tmp_path):
    spec = importlib.util.spec_from_file_location("archive", REPO / "scripts" / "archive.py")
    archive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(archive)
    folder = tmp_path / "cellcounter"
    (folder / "_internal" / "nvidia").mkdir(parents=True)
    lib = folder / "_internal" / "nvidia" / "libcublas.so.12"
    lib.write_bytes(b"x" * 100_000)
    os.symlink(lib, folder / "_internal" / "libcublas.so.12")  # as PyInstaller lays out a wheel's libraries
    os.link(lib, folder / "_internal" / "libcublas-hard.so")
    (folder / "cellcounter-app").write_bytes(b"y" * 1_000)
    assert archive.folder_size(folder) == 101_000
