"""Stage the resources the counting installer ships: ``resources/`` without the torch weights (nor the models'
rehearsal samples: that build does not fine-tune), plus the float
ONNX graph of each bundled model that runs in float (where its card accepts no int8 graph, and the Mask R-CNN
segmenters). Run by ``make package FLAVOUR=count`` before PyInstaller; needs torch (this build machine has it).

    python scripts/stage_resources.py OUT_FOLDER
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cellcounter.inference.choice import CPU_DEFAULT, INT8_NAME, accepted  # noqa: E402
from cellcounter.inference.export import export_onnx  # noqa: E402
from cellcounter.models.card import CARD_NAME, ONNX_NAME, WEIGHTS_NAME, load_model  # noqa: E402
from training.base import REHEARSAL_FOLDER  # noqa: E402 - a model's sample for fine-tunes: not in this build


def runs_in_float(directory: Path, card) -> bool:
    """Whether ``auto`` runs this model's float graph in a build without torch (see ``default_backend``)."""
    wants_int8 = CPU_DEFAULT.get(card.config.kind, "torch").endswith("-int8")
    return not (wants_int8 and (directory / INT8_NAME).is_file() and accepted(card))


def stage(out: Path) -> list[str]:
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(ROOT / "resources", out, ignore=shutil.ignore_patterns(WEIGHTS_NAME, "*.pt", REHEARSAL_FOLDER))
    said = []
    for model_dir in sorted((ROOT / "resources" / "models").iterdir()):
        if not (model_dir / CARD_NAME).is_file():
            continue
        net, card = load_model(model_dir)
        if runs_in_float(model_dir, card):
            export_onnx(net, card, out / "models" / model_dir.name / ONNX_NAME)
            said.append(f"{model_dir.name}: float graph")
        else:
            said.append(f"{model_dir.name}: int8 graph")
    return said


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    for line in stage(Path(sys.argv[1])):
        print(line)
