"""Bad input gets a clear error naming the file, never a crash or a half-written output."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cellcounter.cli import main
from cellcounter.errors import FormatError
from cellcounter.formats import read_labels

VOC = """<annotation><filename>a.jpg</filename><size><width>{w}</width><height>{h}</height><depth>3</depth></size>
<object><name>RBC</name><bndbox><xmin>{x1}</xmin><ymin>1</ymin><xmax>{x2}</xmax><ymax>9</ymax></bndbox></object>
</annotation>"""

READERS = {"voc": "a.xml", "coco": "a.json", "grade-csv": "a.csv", "label-tiff": "a_labels.tif",
           "cvppp": "a_label.png", "colour-mask": "a_mask.png", "aperio": "a.xml", "qupath-geojson": "a.geojson",
           "fiji-cell-counter": "CellCounter_a.xml", "imagej-roi": "a_rois.zip"}

fuzz = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@fuzz
@given(data=st.binary(max_size=400), fmt=st.sampled_from(sorted(READERS)))
def test_random_bytes_give_format_errors_only(tmp_path, data, fmt):
    f = tmp_path / READERS[fmt]
    f.write_bytes(data)
    try:
        read_labels(f, fmt)
    except FormatError as exc:
        assert f.name in str(exc)


GOOD_VOC = VOC.format(w=10, h=10, x1=1, x2=5)


@fuzz
@given(cut=st.integers(min_value=1, max_value=len(GOOD_VOC.rstrip()) - 1))
def test_truncated_voc_xml(tmp_path, cut):
    f = tmp_path / "a.xml"
    f.write_text(GOOD_VOC[:cut])
    with pytest.raises(FormatError, match="a.xml"):
        read_labels(f, "voc")


@fuzz
@given(doc=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["images", "annotations", "categories", "id", "file_name", "width", "height",
                         "image_id", "category_id", "bbox", "segmentation", "name", "score", "counts", "size"]),
        children, max_size=5),
    max_leaves=20))
def test_structurally_random_coco_json(tmp_path, doc):
    f = tmp_path / "a.json"
    f.write_text(json.dumps(doc))
    try:
        read_labels(f, "coco")
    except FormatError as exc:
        assert "a.json" in str(exc)


@pytest.mark.parametrize("w,h,x1,x2,match", [
    (-5, 10, 1, 5, "positive"),
    (10, 0, 1, 5, "positive"),
    ("ten", 10, 1, 5, "not a number"),
    (10, 10, "one", 5, "xmin.*not a number"),
    (10, 10, 1, "nan", "not finite"),
])
def test_voc_wrong_types_and_sizes(tmp_path, w, h, x1, x2, match):
    f = tmp_path / "a.xml"
    f.write_text(VOC.format(w=w, h=h, x1=x1, x2=x2))
    with pytest.raises(FormatError, match=match):
        read_labels(f, "voc")


def test_voc_out_of_image_boxes_are_clipped_or_dropped_with_a_warning(tmp_path):
    f = tmp_path / "a.xml"
    f.write_text(VOC.format(w=10, h=10, x1=-3, x2=5))
    with pytest.warns(UserWarning, match=r"a\.xml: object 0 \(RBC\).*clipped"):
        ann = read_labels(f, "voc")[0]
    assert ann.boxes.xyxy.tolist() == [[0, 1, 5, 9]]
    f.write_text(VOC.format(w=10, h=10, x1=20, x2=30))
    with pytest.warns(UserWarning, match="outside"):
        assert len(read_labels(f, "voc")[0].boxes) == 0


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d["images"][0].update(width="640"), "integers"),
    (lambda d: d["images"][0].update(height=-1), "positive"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "bbox"),
    (lambda d: d["annotations"][0].update(bbox="1,2,3,4"), "bbox"),
    (lambda d: d["annotations"][0].update(image_id=99), "image_id 99"),
    (lambda d: d["annotations"][0].update(category_id=7), "category_id 7"),
    (lambda d: d["annotations"][0].update(score="high"), "score"),
    (lambda d: d["annotations"][0].update(segmentation={"size": [5, 5], "counts": "0"}),
     "mask is 5x5 but its image is 20x10"),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3]]), "polygon"),
    (lambda d: d.update(images={}), "images"),
])
def test_coco_wrong_types_and_mismatched_sizes(tmp_path, mutate, match):
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 10}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}],
           "categories": [{"id": 1, "name": "RBC"}]}
    mutate(doc)
    f = tmp_path / "a.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=match):
        read_labels(f, "coco")


def test_dsb_mask_of_the_wrong_size(tmp_path):
    s = tmp_path / "s1"
    (s / "images").mkdir(parents=True)
    (s / "masks").mkdir()
    Image.fromarray(np.zeros((10, 12, 4), np.uint8)).save(s / "images" / "s1.png")
    Image.fromarray(np.full((10, 11), 255, np.uint8)).save(s / "masks" / "m1.png")
    with pytest.raises(FormatError, match=r"m1\.png: mask is 11x10 but the image is 12x10"):
        read_labels(tmp_path, "dsb")


def test_label_tiff_with_float_or_colour_pixels(tmp_path):
    tifffile.imwrite(tmp_path / "a_labels.tif", np.full((4, 4), 0.5, np.float32))
    with pytest.raises(FormatError, match="whole numbers"):
        read_labels(tmp_path / "a_labels.tif")
    tifffile.imwrite(tmp_path / "b_labels.tif", np.zeros((4, 4, 3), np.uint8), photometric="rgb")
    with pytest.raises(FormatError, match="2-D"):
        read_labels(tmp_path / "b_labels.tif")
    huge = np.zeros((4, 4), np.float64)
    huge[1, 1] = 1e300  # whole, and far past any id: said as such, not as a negative label after a wrapping cast
    tifffile.imwrite(tmp_path / "c_labels.tif", huge)
    with pytest.raises(FormatError, match=r"label 1e\+300 is too large"):
        read_labels(tmp_path / "c_labels.tif")


def test_grade_csv_bad_grade_names_the_line(tmp_path):
    (tmp_path / "g.csv").write_text("Image name,Retinopathy grade\nx,7\n")
    with pytest.raises(FormatError, match=r"g\.csv: line 2 \(x\): grade 7 outside 0-4"):
        read_labels(tmp_path / "g.csv")
    (tmp_path / "g.csv").write_text("Image name,Retinopathy grade\nx,two\n")
    with pytest.raises(FormatError, match="not a whole number"):
        read_labels(tmp_path / "g.csv")


def test_aperio_bad_vertex(tmp_path):
    root = tmp_path
    (root / "annotations").mkdir()
    (root / "tissue_image").mkdir()
    tifffile.imwrite(root / "tissue_image" / "t.tif", np.zeros((20, 20, 3), np.uint8), photometric="rgb")
    (root / "annotations" / "t.xml").write_text(
        '<Annotations MicronsPerPixel="0.25"><Annotation><Regions><Region Id="1"><Vertices>'
        '<Vertex X="1" Y="1"/><Vertex X="10" Y="one"/><Vertex X="5" Y="9"/></Vertices></Region></Regions>'
        "</Annotation></Annotations>")
    with pytest.raises(FormatError, match=r"t\.xml: Region 1"):
        read_labels(root)


def test_convert_with_a_bad_file_in_the_folder_writes_nothing(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"a{i}.xml").write_text(VOC.format(w=10, h=10, x1=1, x2=5))
    bad = ET.tostring(ET.Element("annotation")).decode()[:-4]  # truncated
    (src / "a3.xml").write_text(bad)
    rc = main(["convert", "--from", "voc", "--to", "coco", str(src), str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "a3.xml" in err and "malformed XML" in err
    assert not (tmp_path / "out").exists()


def test_deeply_nested_json_is_a_clear_error_not_a_recursion_crash(tmp_path, capsys):
    f = tmp_path / "deep.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["info", str(f), "--from", "coco"]) == 2
    err = capsys.readouterr().err
    assert "deep.json" in err and "nested too deeply" in err


def test_a_card_with_a_text_format_version_names_the_field(tiny_models, tmp_path, capsys):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(tiny_models["grader"], model)
    card = json.loads((model / "card.json").read_text())
    card["format_version"] = "2"
    (model / "card.json").write_text(json.dumps(card))
    assert main(["predict", str(tmp_path), "--task", "retinopathy", "--model", str(model),
                 "--out", str(tmp_path / "out")]) == 2
    assert "'format_version' must be a whole number" in capsys.readouterr().err


@pytest.mark.parametrize("flags, says", [(["--tile", "1"], "--tile must be"), (["--overlap", "-3"], "--overlap"),
                                         (["--tile", "64", "--overlap", "63"], "at most half the tile size"),
                                         (["--score-threshold", "7"], "--score-threshold")])
def test_predict_refuses_nonsense_numbers_before_loading_anything(tmp_path, capsys, flags, says):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--task", "blood", "--model", "no-such-model",
                 "--out", str(tmp_path / "out"), *flags]) == 2
    assert says in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_images_sharing_a_stem_get_results_of_their_own(tiny_models, tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    Image.fromarray(np.full((40, 50), 90, np.uint8)).save(folder / "grey.png")
    Image.fromarray(np.full((40, 50), 160, np.uint8)).save(folder / "grey.jpg")
    assert main(["predict", str(folder / "grey.png"), str(folder / "grey.jpg"), "--task", "retinopathy",
                 "--model", str(tiny_models["grader"]), "--out", str(tmp_path / "out")]) == 0
    assert {"grey_png.json", "grey_jpg.json"} <= {f.name for f in (tmp_path / "out").iterdir()}


def _run_limited(args, tmp_path, limit_mb=1500):
    """The CLI in a child process under an address-space limit: a bomb must be refused, not decoded."""
    import resource
    import subprocess
    import sys

    from tests.conftest import REPO

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))

    return subprocess.run([sys.executable, "-m", "cellcounter.cli", *args], capture_output=True, text=True,
                          cwd=REPO, preexec_fn=limit, timeout=300)


def test_decompression_bombs_are_refused_within_bounded_memory(tmp_path):
    import zlib

    # a valid 50,000 x 50,000 grey PNG of a few megabytes
    w = h = 50_000
    raw = zlib.compress(b"".join(b"\x00" + bytes(w) for _ in range(h)), 9)

    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", w.to_bytes(4, "big") + h.to_bytes(4, "big") + b"\x08\x00\x00\x00\x00")
           + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    (tmp_path / "bomb.png").write_bytes(png)
    res = _run_limited(["info", str(tmp_path / "bomb.png")], tmp_path)
    assert res.returncode == 2 and "bomb.png" in res.stderr and "megapixels" in res.stderr, res.stderr[-800:]
    lab = tmp_path / "big_labels.tif"  # a tiny label TIFF whose header claims 100,000 x 100,000 uint16
    tifffile.imwrite(lab, np.zeros((16, 16), np.uint16))
    with tifffile.TiffFile(lab, mode="r+") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(100_000)
        tif.pages[0].tags["ImageLength"].overwrite(100_000)
    assert lab.stat().st_size < 2000
    res = _run_limited(["convert", str(lab), str(tmp_path / "out.json"), "--to", "coco"], tmp_path)
    assert res.returncode == 2 and "big_labels.tif" in res.stderr and "megapixels" in res.stderr, res.stderr[-800:]
    assert not (tmp_path / "out.json").exists()


def test_a_one_pixel_high_image_is_refused_before_it_costs_anything(tiny_models, tmp_path, capsys):
    Image.fromarray(np.zeros((1, 5000), np.uint8)).save(tmp_path / "line.png")
    for kind, task in (("grader", "retinopathy"), ("detector", "blood")):
        assert main(["predict", str(tmp_path / "line.png"), "--task", task, "--model", str(tiny_models[kind]),
                     "--out", str(tmp_path / kind)]) == 2
        assert "5000 x 1 pixels" in capsys.readouterr().err
    Image.fromarray(np.zeros((20, 5000), np.uint8)).save(tmp_path / "strip.png")
    assert main(["predict", str(tmp_path / "strip.png"), "--task", "retinopathy", "--model",
                 str(tiny_models["grader"]), "--out", str(tmp_path / "g2")]) == 2
    assert "at most 8 times as long" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["huge_rle", "far_polygon"])
def test_coco_files_that_crashed_the_mask_decoder_are_clear_errors(tmp_path, case):
    image = {"id": 1, "file_name": "a.png", "width": 640, "height": 480}
    seg = [[10, 10, 20, 10, 1e9, 30]]
    if case == "huge_rle":
        image.update(width=200_000, height=200_000)
        seg = {"size": [200_000, 200_000], "counts": "0"}
    doc = {"images": [image], "categories": [{"id": 1, "name": "nucleus"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": seg, "bbox": [0, 0, 1, 1]}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    res = _run_limited(["info", str(tmp_path / "a.json")], tmp_path)  # a child: a segfault would show as -11
    assert res.returncode == 2 and "a.json" in res.stderr, res.stderr[-500:]
    assert ("megapixels" if case == "huge_rle" else "far outside") in res.stderr


def test_an_image_whose_name_is_too_long_for_a_result_file_still_gets_its_results(tiny_models, tmp_path, capsys):
    """#36: one overlong name stopped the whole batch and no counts.csv was written."""
    folder = tmp_path / "dir"
    folder.mkdir()
    long_name = "smear_" + "x" * 240 + ".png"  # 250 bytes: fine as a name, too long with "_overlay.png"
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(folder / long_name)
    Image.fromarray(np.full((40, 50, 3), 160, np.uint8)).save(folder / "b.png")
    assert main(["predict", str(folder), "--task", "blood", "--model", str(tiny_models["detector"]),
                 "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    names = {f.name for f in (tmp_path / "out").iterdir()}
    assert "counts.csv" in names and "b.json" in names
    assert any(n.startswith("smear_xxx") and n.endswith("_overlay.png") and len(n.encode()) <= 255 for n in names)
    rows = (tmp_path / "out" / "counts.csv").read_text().splitlines()
    assert len(rows) == 4 and any(long_name in r for r in rows)  # header, two images, TOTAL
