"""napari plugin entry points (see ``app/napari.yaml``): readers for the label formats and the dock widgets.

A user of a stock napari finds "cellcounter" under Plugins: opening a VOC, COCO,
label TIFF, DSB, Aperio or colour-mask file adds boxes, masks and points layers.
"""

from __future__ import annotations

from pathlib import Path

from cellcounter.errors import CellCounterError
from cellcounter.formats import detect_format, read_labels


def get_reader(path):
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        fmt = detect_format(path)
    except CellCounterError:
        return None
    return lambda p: read_as_layers(p, fmt)


def read_as_layers(path, fmt: str | None = None) -> list[tuple]:
    from app.layers import annotation_layers
    from cellcounter.imageio import read_image

    p = path[0] if isinstance(path, list) else path
    layers = []
    for ann in read_labels(p, fmt)[:1]:  # one image per reader call: napari shows one canvas
        if Path(ann.image_path).is_file():
            img = read_image(ann.image_path)
            layers.append((img, {"name": Path(ann.image_path).name, "rgb": img.ndim == 3}, "image"))
        for data, kwargs, kind in annotation_layers(ann):
            if kind == "labels" and ann.masks is None:
                continue
            layers.append((data, kwargs, kind))
    return layers


def counts_widget(napari_viewer):
    """The counts, review and predict panels over a project of the image shown in a stock napari."""
    from app.session import Session
    from app.window import CellCounterWindow

    image_layers = [la for la in napari_viewer.layers if la._type_string == "image"]
    source = getattr(image_layers[0].source, "path", None) if image_layers else None
    if not source:
        from qtpy.QtWidgets import QLabel

        return QLabel("Open an image file first, then add this widget again.")
    session, first = Session.open_path(source, None)
    window = CellCounterWindow(napari_viewer, session, session.project.image(first).task or "blood")
    window.show_image(first)
    return window.counts
