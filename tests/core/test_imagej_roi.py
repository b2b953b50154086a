"""ImageJ/Fiji ROI sets (#21, part 2): boxes, outlines and marks round trip through the ROI Manager's zip,
ROIs drawn in Fiji read with their classes, and damaged files are clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import roifile
from PIL import Image

from cellcounter.annotations import Boxes, ImageAnnotation, InstanceMasks, Origin, Points
from cellcounter.cli import main
from cellcounter.errors import FormatError
from cellcounter.formats import detect_format, read_labels, write_labels

NAMES = ("RBC", "WBC", "Platelets")


def _image(folder, stem="a", w=100, h=80):
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(folder / f"{stem}.png")
    return folder / f"{stem}.png"


def test_boxes_outlines_and_marks_round_trip_through_a_roi_set(tmp_path):
    image = _image(tmp_path)
    lab = np.zeros((80, 100), np.int32)
    yy, xx = np.mgrid[:80, :100]
    lab[(yy - 40) ** 2 + (xx - 60) ** 2 < 12 ** 2] = 5
    lab[5:15, 5:40] = 7
    ann = ImageAnnotation(str(image), 100, 80, NAMES,
                          boxes=Boxes(np.array([[2.0, 3, 20, 30], [50, 10, 60, 12]]), [0, 2], [0.75, np.nan],
                                      [Origin.MODEL, Origin.HUMAN]),
                          masks=InstanceMasks(lab, [5, 7], [1, 0], [0.6, np.nan], [Origin.MODEL, Origin.HUMAN]),
                          points=Points(np.array([[10.0, 20], [40, 50], [7, 7]]), [1, 0, 1], np.full(3, Origin.HUMAN)))
    (f,) = write_labels([ann], tmp_path, "imagej-roi")
    assert f.name == "a_rois.zip" and detect_format(f) == "imagej-roi"
    assert [r.name for r in roifile.roiread(f)][:2] == ["RBC-0001", "Platelets-0002"]
    (back,) = read_labels(f, class_names=NAMES)
    assert back.boxes.equals(ann.boxes)
    assert back.masks.equals(ann.masks)
    assert sorted(map(tuple, back.points.rc.tolist())) == sorted(map(tuple, ann.points.rc.tolist()))
    assert back.counts() == ann.counts()


def test_rois_drawn_in_fiji_read_with_their_classes_from_the_names(tmp_path):
    _image(tmp_path, "smear")
    rect = roifile.ImagejRoi.frompoints(np.array([[10, 10], [30, 10], [30, 20], [10, 20]]), name="WBC-1")
    rect.roitype = roifile.ROI_TYPE.RECT
    rect.left, rect.top, rect.right, rect.bottom = 10, 10, 30, 20
    poly = roifile.ImagejRoi.frompoints(np.array([[50, 50], [70, 52], [65, 70], [48, 66]]), name="RBC-2")
    poly.roitype = roifile.ROI_TYPE.FREEHAND
    line = roifile.ImagejRoi.frompoints(np.array([[1, 1], [5, 5]]), name="ruler")
    line.roitype = roifile.ROI_TYPE.POLYLINE
    roifile.roiwrite(tmp_path / "RoiSet.zip", [rect, poly, line])
    with pytest.warns(UserWarning, match="polyline ROI is not an object"):
        (ann,) = read_labels(tmp_path / "RoiSet.zip", class_names=NAMES + ("ruler",))
    assert ann.boxes.xyxy.tolist() == [[10, 10, 30, 20]] and ann.class_names[ann.boxes.classes[0]] == "WBC"
    assert len(ann.masks) == 1 and 250 < (ann.masks.label_image > 0).sum() < 400


def test_damaged_roi_sets_and_unknown_classes_are_clear_errors(tmp_path):
    _image(tmp_path)
    (tmp_path / "a_rois.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FormatError, match="a_rois.zip: not a readable ImageJ ROI file"):
        read_labels(tmp_path / "a_rois.zip")
    roi = roifile.ImagejRoi.frompoints(np.array([[1, 1], [5, 1], [5, 5]]), name="Monocyte-1")
    roifile.roiwrite(tmp_path / "a_rois.zip", [roi], mode="w")
    with pytest.raises(FormatError, match="class 'Monocyte' is not one of RBC"):
        read_labels(tmp_path / "a_rois.zip", class_names=NAMES)
    (tmp_path / "b_rois.zip").write_bytes((tmp_path / "a_rois.zip").read_bytes())
    with pytest.raises(FormatError, match="no image named b"):
        read_labels(tmp_path / "b_rois.zip")


def test_convert_counts_csv_from_a_roi_set(tmp_path, capsys):
    image = _image(tmp_path)
    ann = ImageAnnotation(str(image), 100, 80, NAMES, boxes=Boxes(np.array([[1.0, 1, 9, 9]]), [1]))
    write_labels([ann], tmp_path, "imagej-roi")
    assert main(["convert", "--task", "blood", "--to", "counts-csv", str(tmp_path / "a_rois.zip"),
                 str(tmp_path / "out" / "counts.csv")]) == 0
    assert "WBC" in (tmp_path / "out" / "counts.csv").read_text()


def test_a_class_name_cannot_make_a_zip_entry_outside_the_folder(tmp_path):
    """#36: a class '../../../escape' gave the entry '../../../escape-0001.roi' (zip-slip for whoever unpacks it);
    the class itself still comes back from the ROI's properties."""
    import zipfile

    import numpy as np

    from cellcounter.annotations import Boxes, ImageAnnotation
    from cellcounter.formats import read_labels, write_labels
    from tests.conftest import make_image

    img = make_image(tmp_path / "a.png", 64, 48)
    ann = ImageAnnotation(str(img), 64, 48, ("../../../escape", "/abs"), boxes=Boxes(np.array([[1, 1, 9, 9.0],
                                                                                           [10, 10, 20, 20]]), [0, 1]))
    (path,) = write_labels([ann], tmp_path / "out", "imagej-roi")
    import shutil

    shutil.copy(img, tmp_path / "out" / "a.png")  # the image beside its ROI set, as ImageJ keeps them
    names = zipfile.ZipFile(path).namelist()
    assert all("/" not in n and ".." not in n and not n.startswith("\\\\") for n in names), names
    (back,) = read_labels(path)
    assert set(back.class_names) == {"../../../escape", "/abs"}
