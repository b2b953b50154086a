"""The Qt binding keeps its reference counts: PySide6 6.12.0 lost a reference to True or False on every
``Signal.emit`` and the app aborted after a few thousand edits ("bool_dealloc: deallocating True or False").
The app emits a signal per edit, so a long correction session depends on this."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json
    import sys
    from qtpy.QtCore import QCoreApplication, QObject, Signal

    class Emitter(QObject):
        changed = Signal()
        progress = Signal(int, int)

    app = QCoreApplication([])
    e = Emitter()
    seen = []
    e.changed.connect(lambda: seen.append(1))
    e.progress.connect(lambda a, b: seen.append(a))
    before = [sys.getrefcount(x) for x in (None, True, False)]
    for i in range(6000):
        e.changed.emit()
        e.progress.emit(i, 6000)
    after = [sys.getrefcount(x) for x in (None, True, False)]
    print(json.dumps([len(seen), [b - a for a, b in zip(before, after)]]))
""")


def test_thousands_of_signal_emits_keep_none_true_and_false_alive():
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    count, deltas = json.loads(run.stdout.strip().splitlines()[-1])
    assert count == 12000
    assert all(abs(d) < 100 for d in deltas), deltas  # a reference lost per emit would be thousands
