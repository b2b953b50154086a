"""Fiji Cell Counter markers (#21, part 2): the plugin's files read, marker types map to classes, a round trip
keeps every mark, and malformed files are clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cellcounter.annotations import ImageAnnotation, Origin, Points
from cellcounter.cli import main
from cellcounter.errors import FormatError
from cellcounter.formats import detect_format, read_labels, write_labels

FIJI = """<?xml version="1.0" encoding="UTF-8"?>
<CellCounter_Marker_File>
 <Image_Properties><Image_Filename>smear.tif</Image_Filename></Image_Properties>
 <Marker_Data>
  <Current_Type>1</Current_Type>
  <Marker_Type><Type>1</Type>
   <Marker><MarkerX>10</MarkerX><MarkerY>20</MarkerY><MarkerZ>1</MarkerZ></Marker>
   <Marker><MarkerX>30</MarkerX><MarkerY>5</MarkerY><MarkerZ>1</MarkerZ></Marker>
  </Marker_Type>
  <Marker_Type><Type>2</Type></Marker_Type>
  <Marker_Type><Type>3</Type>
   <Marker><MarkerX>44</MarkerX><MarkerY>33</MarkerY><MarkerZ>1</MarkerZ></Marker>
  </Marker_Type>
 </Marker_Data>
</CellCounter_Marker_File>"""


@pytest.fixture
def smear(tmp_path):
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(tmp_path / "smear.tif")
    (tmp_path / "CellCounter_smear.xml").write_text(FIJI)
    return tmp_path


def test_the_plugins_marker_types_become_the_tasks_classes(smear):
    f = smear / "CellCounter_smear.xml"
    assert detect_format(f) == "fiji-cell-counter" and detect_format(smear) == "fiji-cell-counter"
    (ann,) = read_labels(f, class_names=("RBC", "WBC", "Platelets"))
    assert ann.counts() == {"RBC": 2, "WBC": 0, "Platelets": 1}
    assert ann.points.rc.tolist() == [[20, 10], [5, 30], [33, 44]] and ann.width == 60
    (untyped,) = read_labels(f)  # without a task: the plugin's own type names
    assert untyped.class_names == ("Type 1", "Type 3")


def test_click_counts_round_trip_through_the_plugins_format(tmp_path):
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(tmp_path / "a.png")
    names = ("RBC", "WBC", "Platelets")
    ann = ImageAnnotation(str(tmp_path / "a.png"), 60, 50, names,
                          points=Points(np.array([[3.0, 4], [10, 12], [40, 2]]), [2, 0, 2], np.full(3, Origin.HUMAN)))
    (f,) = write_labels([ann], tmp_path / "out", "fiji-cell-counter")
    assert f.name == "CellCounter_a.xml"
    (tmp_path / "out" / "a.png").write_bytes((tmp_path / "a.png").read_bytes())
    (back,) = read_labels(f)
    assert back.class_names == names  # the written types carry the class names
    assert sorted(map(tuple, back.points.rc.tolist())) == sorted(map(tuple, ann.points.rc.tolist()))
    assert back.counts() == ann.counts()


@pytest.mark.parametrize("change, says", [
    (("<MarkerX>10</MarkerX>", "<MarkerX>ten</MarkerX>"), "expected a number"),
    (("<MarkerX>10</MarkerX>", "<MarkerX>1e12</MarkerX>"), "outside any image"),
    (("<Type>3</Type>", "<Type>7</Type>"), "marker type 7 .unnamed. has no class"),
    (("<Type>1</Type>", "<Type>one</Type>"), "must be a whole number"),
    (("CellCounter_Marker_File>", "Other>"), "not a Cell Counter marker file"),
    (("</Marker_Data>", ""), "malformed XML"),
])
def test_a_damaged_marker_file_is_a_clear_error_naming_it(smear, change, says, capsys):
    f = smear / "CellCounter_smear.xml"
    f.write_text(FIJI.replace(*change))
    with pytest.raises(FormatError, match=says) as info:
        read_labels(f, "fiji-cell-counter", class_names=("RBC", "WBC", "Platelets"))
    assert "CellCounter_smear.xml" in str(info.value)
    assert main(["info", str(f), "--from", "fiji-cell-counter"]) in (0, 2)


def test_boxes_alone_cannot_be_written_as_markers(tmp_path):
    from cellcounter.annotations import Boxes

    ann = ImageAnnotation("a.png", 10, 10, ("RBC",), boxes=Boxes(np.array([[1.0, 1, 4, 4]]), [0]))
    with pytest.raises(FormatError):
        write_labels([ann], tmp_path / "x", "fiji-cell-counter")


def test_current_type_is_the_zero_based_index_fiji_expects(tmp_path):
    """#32 point 6: Fiji takes <Current_Type> as an index into the marker types; 1 made a one-class file fail to
    load and opened a blood file with WBC selected."""
    import xml.etree.ElementTree as ET

    import numpy as np

    from cellcounter.annotations import ImageAnnotation, Points
    from cellcounter.formats import write_labels

    ann = ImageAnnotation(str(tmp_path / "n.png"), 50, 40, ("nucleus",), task="nuclei",
                          points=Points(np.array([[5.0, 6.0]]), [0]))
    (path,) = write_labels([ann], tmp_path / "out", "fiji-cell-counter")
    root = ET.parse(path).getroot()
    types = root.findall("Marker_Data/Marker_Type")
    assert int(root.findtext("Marker_Data/Current_Type")) in range(len(types)) and len(types) >= 1
    assert root.findtext("Marker_Data/Current_Type") == "0"
