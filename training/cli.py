"""``cellcounter-train``: the training command line.

The training module (recipes, ``iter_training``) is not part of this release
yet; the command exists so installs and scripts can rely on its name, and says
so clearly instead of pretending to train.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cellcounter-train",
        description="Fine-tune cellcounter models from corrected labels (not available in this release yet).",
    )
    parser.parse_args(argv)
    print("cellcounter-train: training is not available in this release yet; "
          "labels can already be prepared with `cellcounter convert`.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
