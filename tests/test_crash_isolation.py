"""`make test` runs pytest in worker processes: a test that dies natively (a GL driver's segfault) is reported as
that test's failure and the run goes on, instead of ending with no report at all (#32)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_native_crash_fails_its_test_and_the_run_goes_on(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_dies.py").write_text(
        "import ctypes\n\n"
        "def test_segfaults():\n    ctypes.string_at(0)\n\n"
        "def test_after_the_crash():\n    assert True\n")
    args = re.search(r"-n \$\(TEST_WORKERS\) (--max-worker-restart \d+)", (ROOT / "Makefile").read_text())
    assert args, "make test no longer runs pytest in worker processes"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "1", *args.group(1).split(), "-p", "no:cacheprovider",
                           "-q", "--rootdir", str(tmp_path), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert re.search(r"1 failed, 1 passed", out), out
    assert "test_segfaults" in out, out
