from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cellcounter.cli import main
from cellcounter.formats import write_labels
from tests.conftest import sample_annotation


def test_help_of_each_command():
    for args in (["--help"], ["convert", "--help"], ["info", "--help"]):
        out = subprocess.run([sys.executable, "-m", "cellcounter.cli", *args], capture_output=True, text=True)
        assert out.returncode == 0 and "usage:" in out.stdout


def test_convert_recognises_the_source_and_info_reports_it(tmp_path, capsys):
    anns = [sample_annotation(tmp_path, "a", 0), sample_annotation(tmp_path, "b", 1)]
    write_labels(anns, tmp_path / "src.json", "coco")
    assert main(["convert", "--to", "label-tiff", str(tmp_path / "src.json"), str(tmp_path / "lt")]) == 0
    assert main(["info", str(tmp_path / "lt"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"images": 2, "instances": {"RBC": 4, "WBC": 2, "Platelets": 0}}


def test_convert_copy_images_makes_a_self_contained_voc_folder(tmp_path, capsys):
    write_labels([sample_annotation(tmp_path, "a", 0, with_masks=False)], tmp_path / "src.json", "coco")
    assert main(["convert", "--to", "voc", "--copy-images", str(tmp_path / "src.json"), str(tmp_path / "v")]) == 0
    assert (tmp_path / "v" / "JPEGImages" / "a.png").is_file()
    assert main(["info", str(tmp_path / "v"), "--json"]) == 0


@pytest.mark.parametrize("args,match", [
    (["info", "/nonexistent/thing"], "no such file"),
    (["convert", "--to", "voc", "/nonexistent", "/tmp/x"], "no such file"),
])
def test_errors_exit_non_zero_with_a_message(args, match, capsys):
    assert main(args) == 2
    assert match in capsys.readouterr().err


def test_unknown_format_is_an_argparse_error():
    with pytest.raises(SystemExit) as exc:
        main(["convert", "--to", "pdf", "a", "b"])
    assert exc.value.code == 2


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("cellcounter")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("cellcounter ")


def test_commands_that_need_no_model_import_neither_torch_nor_onnxruntime(tmp_path):
    """Start-up cost: torch and ONNX Runtime take seconds to import; info, convert and project need neither."""
    import subprocess
    import sys

    from cellcounter.project import Project
    from tests.conftest import REPO, make_image

    image = make_image(tmp_path / "a.png")
    with Project.create(tmp_path / "p.ccproj") as proj:
        proj.add_image(image, "blood")
    code = ("import sys\nfrom cellcounter.cli import main\nrc = main(sys.argv[1:])\n"
            "print('HEAVY', rc, [m for m in ('torch', 'onnxruntime', 'training.loop') if m in sys.modules])")
    for args in (["info", str(image)], ["project", "status", str(tmp_path / "p.ccproj")],
                 ["project", "export", str(tmp_path / "p.ccproj"), str(tmp_path / "out"), "--to", "coco"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO)
        assert out.stdout.strip().splitlines()[-1] == "HEAVY 0 []", (args, out.stderr[-500:])
    # #35: predicting on OpenVINO (what `auto` runs on a CPU) imports no torch either, though it is installed
    blood = REPO / "resources" / "samples" / "blood" / "BloodImage_00000.jpg"
    out = subprocess.run([sys.executable, "-c", code, "predict", str(blood), "--task", "blood", "--model",
                          "blood-default", "--backend", "openvino-int8", "--out", str(tmp_path / "pred")],
                         capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip().splitlines()[-1] in ("HEAVY 0 []", "HEAVY 0 ['onnxruntime']"), out.stderr[-500:]
    helped = subprocess.run([sys.executable, "-c", "import sys\nfrom cellcounter.cli import build_parser\n"
                             "build_parser()\nprint('torch' in sys.modules)"], capture_output=True, text=True, cwd=REPO)
    assert helped.stdout.strip() == "False"


def test_a_dsb_folder_is_one_image_to_predict_info_and_project_create(tmp_path, capsys):
    """#32 point 7: predict took the 70 mask PNGs of a DSB sample's masks/ for images; one rule now."""
    import numpy as np
    from PIL import Image

    from cellcounter.formats import image_files
    from cellcounter.inference.cli import _images
    from tests.conftest import make_image

    sample = tmp_path / "abc"
    (sample / "images").mkdir(parents=True)
    (sample / "masks").mkdir()
    make_image(sample / "images" / "abc.png", 32, 32)
    for k in range(3):
        m = np.zeros((32, 32), np.uint8)
        m[k * 10:k * 10 + 5, 2:8] = 255
        Image.fromarray(m).save(sample / "masks" / f"m{k}.png")
    assert image_files(sample) == [sample / "images" / "abc.png"] == _images([sample])
    proj = tmp_path / "p.ccproj"
    assert main(["project", "create", str(proj), str(sample)]) == 0
    assert "with 1 image(s)" in capsys.readouterr().out
