"""Vendor slides through OpenSlide (#21, part 1): an Aperio SVS opens lazily at its own levels with its
microns per pixel and objective power, reads the pixels written, and predicts through the tiled path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellcounter.cli import main
from cellcounter.errors import ImageReadError
from cellcounter.imageio import image_size, open_image
from tests.helpers import write_svs


def test_an_aperio_slide_opens_lazily_at_its_own_levels_with_its_scale(tmp_path):
    img = write_svs(tmp_path / "s.svs")
    with open_image(tmp_path / "s.svs") as src:
        assert src.lazy and src.shape == (1500, 2000, 3) and src.pixel_size_um == 0.25
        assert src.objective_power == 40 and src.vendor == "aperio"
        assert np.array_equal(src.read_region(100, 400, 1800, 2100), img[100:400, 1800:2000])  # clipped at the edge
        levels = src.display_levels()
        assert [lv.shape for lv in levels] == [(1500, 2000, 3), (375, 500, 3)]
        assert np.array_equal(levels[1][10:20, 30:50], img[::4, ::4][10:20, 30:50])
    assert image_size(tmp_path / "s.svs") == (2000, 1500)


def test_a_slide_predicts_through_the_tiled_path_and_info_shows_its_scale(tmp_path, tiny_models, capsys):
    write_svs(tmp_path / "s.svs")
    assert main(["info", str(tmp_path / "s.svs")]) == 0
    assert "0.25 um/px, 40x, 2 levels" in capsys.readouterr().out
    assert main(["predict", str(tmp_path / "s.svs"), "--task", "blood", "--model", str(tiny_models["detector"]),
                 "--out", str(tmp_path / "out")]) == 0
    doc = json.loads((tmp_path / "out" / "s.json").read_text())
    assert doc["images"][0]["width"] == 2000 and doc["images"][0]["height"] == 1500


def test_a_damaged_slide_is_a_clear_error(tmp_path):
    (tmp_path / "bad.svs").write_bytes(b"II*\x00" + bytes(200))
    with pytest.raises(ImageReadError, match="bad.svs: not a slide OpenSlide can read"):
        open_image(tmp_path / "bad.svs")
