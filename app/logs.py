"""Per-user log file, and a dialog naming it when something unexpected happens (instead of vanishing)."""

from __future__ import annotations

import logging
import sys
import traceback
from logging.handlers import RotatingFileHandler
from pathlib import Path

from platformdirs import user_log_dir

log = logging.getLogger("cellcounter")


def log_path() -> Path:
    return Path(user_log_dir("cellcounter", appauthor=False)) / "cellcounter.log"


def setup_logging() -> Path:
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    sys.excepthook = _excepthook
    return path


def _excepthook(exc_type, exc, tb) -> None:
    log.error("unexpected error\n%s", "".join(traceback.format_exception(exc_type, exc, tb)))
    try:
        from qtpy.QtWidgets import QApplication, QMessageBox

        if QApplication.instance() is not None:
            QMessageBox.critical(None, "cellcounter: unexpected error",
                                 f"{exc_type.__name__}: {exc}\n\nYour work is saved. Details are in the log:\n"
                                 f"{log_path()}")
            return
    except Exception:  # noqa: BLE001 - the dialog itself failed: the log still has it
        pass
    sys.__excepthook__(exc_type, exc, tb)
