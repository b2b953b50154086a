"""Entry point of the packaged app: one binary for the GUI, the command line and training.

    cellcounter-app [PATH] [--selftest ...]      the window
    cellcounter-app cli COMMAND ...              the `cellcounter` command line (convert, info, predict, ...)
    cellcounter-app train ...                    `cellcounter-train`
"""

from __future__ import annotations

import multiprocessing
import sys


def main() -> int:
    multiprocessing.freeze_support()
    args = sys.argv[1:]
    if args[:1] == ["cli"]:
        from cellcounter.cli import main as cli

        return cli(args[1:])
    if args[:1] == ["train"]:
        from cellcounter.errors import CellCounterError
        from cellcounter.flavour import needs_torch

        try:
            needs_torch("training needs torch")
        except CellCounterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        from training.cli import main as train

        return train(args[1:])
    from app.main import main as app

    return app(args)


if __name__ == "__main__":
    raise SystemExit(main())
