"""Conversion between the shared annotation model and napari layers, both ways.

Coordinates go through :func:`cellcounter.annotations.flip_xy_rc` (via the
rectangle helpers); nothing here swaps axes by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellcounter.annotations import (
    Boxes,
    ImageAnnotation,
    InstanceMasks,
    Origin,
    flip_xy_rc,
    napari_rectangles_to_xyxy,
    xyxy_to_napari_rectangles,
)
from cellcounter.editing import NEW, EditModel
from cellcounter.regions import Region
from cellcounter.tasks import class_colours

BOXES, MASKS, POINTS, REGIONS = "boxes", "masks", "points", "regions"
LABEL_LAYERS = (REGIONS, BOXES, MASKS, POINTS)
REGION_COLOUR = "#ffc800"
OVERVIEW = "boxes (view only)"  # boxes outside the editing window when there are too many to edit at once


def pin_class_colours(layer, class_names: tuple[str, ...]) -> None:
    """Give every class its own colour in a boxes (Shapes) or points layer, whatever order the objects come in.

    napari hands out a colour cycle in the order classes first appear, so an image whose first object is a
    WBC would draw WBCs in RBC's red; the map is set for every class of the task instead, before any appears.
    """
    from napari.utils.colormaps.standardize_color import transform_color

    colours = class_colours(class_names)
    if hasattr(layer, "edge_color_cycle_map"):  # Shapes
        layer.edge_color_cycle_map = {n: transform_color(c)[0] for n, c in colours.items()}
    else:  # Points: its categorical colour map takes the mapping itself
        layer.face_color_cycle = colours
    layer.refresh_colors(update_color_mapping=False)


# How an object's origin shows: a model's box thin, a person's thick, imported reference labels filled faintly.
ORIGIN_WIDTH = {Origin.MODEL: 1.0, Origin.HUMAN: 3.0, Origin.CORRECTED: 3.0, Origin.REFERENCE: 2.0}
REFERENCE_FILL_ALPHA = 0.18


def box_style(class_names: tuple[str, ...], classes, origins) -> tuple[list[float], np.ndarray]:
    """Per-box edge widths and face colours (RGBA) that tell origins apart."""
    from napari.utils.colormaps.standardize_color import transform_color

    colours = class_colours(class_names)
    rgba = {n: transform_color(c)[0] for n, c in colours.items()}
    origins = [Origin[str(o).upper()] if isinstance(o, str) else Origin(int(o)) for o in origins]
    widths = [ORIGIN_WIDTH.get(o, 2.0) for o in origins]
    faces = np.zeros((len(origins), 4), dtype=np.float32)
    for i, (c, o) in enumerate(zip(classes, origins)):
        if o == Origin.REFERENCE and str(c) in rgba:
            faces[i] = (*rgba[str(c)][:3], REFERENCE_FILL_ALPHA)
    return widths, faces


# How an instance mask's origin shows: a model's in bright colours of every hue, a person's (drawn or corrected)
# in warm yellows and oranges, imported reference masks faint in cool blue-greens; an instance being painted
# now is bright yellow, visible on H&E pink and purple as on a dark fluorescence ground.
NEW_INSTANCE_COLOUR = (1.0, 0.9, 0.0, 1.0)
_GOLDEN = 0.6180339887


def _hsv(h: np.ndarray, s: float, v: float) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb

    return hsv_to_rgb(np.stack([h % 1.0, np.full_like(h, s), np.full_like(h, v)], axis=-1))


def mask_colours(masks: InstanceMasks, hidden=()) -> dict:
    """A ``DirectLabelColormap`` colour dict for ``masks``: colour by origin (see above), each instance its own
    shade so that touching ones stay apart; ``hidden`` instances (below the Review slider) transparent."""
    ids = np.asarray(masks.ids, dtype=np.int64)
    frac = (ids * _GOLDEN) % 1.0
    rgba = np.ones((len(ids), 4), dtype=np.float32)
    origins = np.asarray(masks.origins, dtype=np.int64)
    model = origins == int(Origin.MODEL)
    person = np.isin(origins, [int(Origin.HUMAN), int(Origin.CORRECTED)])
    reference = ~(model | person)
    rgba[model, :3] = _hsv(frac[model], 0.85, 1.0)
    rgba[person, :3] = _hsv(0.07 + 0.09 * frac[person], 1.0, 1.0)
    rgba[reference, :3] = _hsv(0.45 + 0.17 * frac[reference], 0.55, 0.95)
    rgba[reference, 3] = 0.5
    rgba[np.isin(ids, np.asarray(hidden, dtype=np.int64))] = 0.0
    colours = {int(i): c for i, c in zip(ids, rgba)}
    colours[0] = np.zeros(4, dtype=np.float32)
    colours[None] = np.array(NEW_INSTANCE_COLOUR, dtype=np.float32)  # an instance not saved yet: being painted
    return colours


def style_boxes(layer, class_names: tuple[str, ...]) -> None:
    """Restyle a boxes layer from its features (after a fill, an edit's save, or a correction)."""
    n = len(layer.data)
    if not n or "origin" not in layer.features:
        return
    widths, faces = box_style(class_names, layer.features["class"].astype(str).to_numpy(),
                              layer.features["origin"].to_numpy())
    if not np.allclose(layer.edge_width, widths):
        layer.edge_width = widths
    if len(layer.face_color) != n or not np.allclose(layer.face_color, faces):
        layer.face_color = faces


def describe_object(features, index: int, model_version: str | None) -> str:
    """One line on a selected object: its class, who made it and, for a model's, its score."""
    row = features.iloc[index]
    origin = str(row.get("origin", "human"))
    who = {"model": f"model{' ' + model_version if model_version else ''}", "human": "drawn by a person",
           "corrected": "a model's, corrected by a person", "reference": "reference label (imported)"}.get(origin,
                                                                                                     origin)
    score = row.get("score", np.nan)
    text = f"{row['class']}: {who}"
    return text + (f", score {float(score):.2f}" if score is not None and np.isfinite(float(score)) else "")


def _features(ann: ImageAnnotation, classes: np.ndarray, scores: np.ndarray | None, origins: np.ndarray,
              ids: np.ndarray) -> pd.DataFrame:
    cat = pd.Categorical([ann.class_names[int(c)] for c in classes], categories=list(ann.class_names))
    # id: the object's id in the edit model (NEW for what the user adds); a pasted copy carries its original's
    # id, and the edit model tells it apart.
    data = {"class": cat, "origin": pd.Series([Origin(int(o)).name.lower() for o in origins], dtype=object),
            "id": np.asarray(ids, dtype=np.int64)}
    if scores is not None:
        data["score"] = np.asarray(scores, dtype=float)
    return pd.DataFrame(data)


def boxes_layer_data(ann: ImageAnnotation) -> tuple:
    """``(data, kwargs, 'shapes')`` for a Shapes layer of the boxes, coloured per class."""
    colours = class_colours(ann.class_names)
    feats = _features(ann, ann.boxes.classes, ann.boxes.scores, ann.boxes.origins, ann.boxes.ids)
    kwargs = {
        "name": BOXES,
        "shape_type": "rectangle",
        "features": feats,
        "edge_color": "class",
        "edge_color_cycle": [colours[n] for n in ann.class_names],
        "face_color": "transparent",
        "edge_width": 2,  # restyled per origin by style_boxes once the layer exists
        "feature_defaults": {"class": ann.class_names[0] if ann.class_names else "", "origin": "human",
                             "score": np.nan, "id": NEW},
    }
    return list(xyxy_to_napari_rectangles(ann.boxes.xyxy)), kwargs, "shapes"


def overview_layer_data(boxes: Boxes, class_names: tuple[str, ...]) -> tuple:
    """``(data, kwargs, 'vectors')``: boxes drawn as four edges each, coloured per class, not editable.

    A Vectors layer draws 100,000 boxes in about a second where a Shapes layer, which builds a Python
    object per shape, takes twenty (``bench/bench_many_objects.py``).
    """
    from napari.utils.colormaps.standardize_color import transform_color

    colours = class_colours(class_names)
    palette = transform_color([colours[n] for n in class_names]) if class_names else np.ones((1, 4))
    corners = xyxy_to_napari_rectangles(boxes.xyxy)  # (N, 4, 2) row/col
    edges = np.stack([corners, np.roll(corners, -1, axis=1) - corners], axis=2).reshape(-1, 2, 2)
    # colours given per edge: a categorical colour map over 400,000 edges costs more than drawing them
    kwargs = {"name": OVERVIEW, "edge_color": palette[np.repeat(boxes.classes, 4) % len(palette)], "edge_width": 2,
              "vector_style": "line", "opacity": 0.8}
    return edges, kwargs, "vectors"


def point_numbers(classes: np.ndarray) -> np.ndarray:
    """Click-count numbers: 1..n within each class, in the order the marks were placed."""
    classes = np.asarray(classes)
    num = np.zeros(len(classes), dtype=np.int64)
    for c in np.unique(classes):
        sel = classes == c
        num[sel] = np.arange(1, int(sel.sum()) + 1)
    return num


POINT_TEXT = {"string": "{num}", "size": 8, "color": "white", "anchor": "upper_left"}


def points_layer_data(ann: ImageAnnotation) -> tuple:
    colours = class_colours(ann.class_names)
    feats = _features(ann, ann.points.classes, None, ann.points.origins, ann.points.ids)
    feats["num"] = point_numbers(feats["class"].astype(str).to_numpy())
    kwargs = {
        "name": POINTS,
        "features": feats,
        "face_color": "class",
        "face_color_cycle": colours,
        "size": 10,
        "text": POINT_TEXT,
        # a new mark is numbered on its save; 0 until then keeps the text encoding valid
        "feature_defaults": {"class": ann.class_names[0] if ann.class_names else "", "origin": "human", "id": NEW,
                             "num": 0},
    }
    return ann.points.rc.copy(), kwargs, "points"


def regions_layer_data(ann: ImageAnnotation) -> tuple:
    """``(data, kwargs, 'shapes')``: the image's regions as polygons, outlined and named; draw one to add it."""
    data = [flip_xy_rc(r.xy) for r in ann.regions]
    kwargs = {
        "name": REGIONS,
        "shape_type": "polygon",
        "features": pd.DataFrame({"name": [r.name for r in ann.regions]}, dtype=object),
        "edge_color": REGION_COLOUR,
        "face_color": "transparent",
        "edge_width": 3,
        "text": {"string": "{name}", "color": REGION_COLOUR, "anchor": "upper_left", "size": 10},
        "feature_defaults": {"name": ""},
    }
    return data, kwargs, "shapes"


def _outline(vertices: np.ndarray, shape_type: str) -> np.ndarray:
    """A shape's outline as polygon vertices (row, col): an ellipse, stored as its bounding box, becomes a
    64-gon; polygons and rectangles are their own vertices."""
    v = np.asarray(vertices, float)[:, -2:]
    if shape_type != "ellipse":
        return v
    centre, radii = v.mean(axis=0), (v.max(axis=0) - v.min(axis=0)) / 2
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    return centre + np.column_stack([np.sin(t), np.cos(t)]) * radii


def regions_from_layer(layer) -> list[Region]:
    """The regions as drawn (polygons, rectangles, ellipses; lines and paths enclose nothing and are left out),
    named from their feature, or "region N" for a new one."""
    out = []
    names = layer.features["name"].tolist() if "name" in layer.features else []
    types = list(getattr(layer, "shape_type", [])) or ["polygon"] * len(layer.data)
    taken = {str(n) for n in names if n}
    seen: set[str] = set()
    k = 0
    for i, shape in enumerate(layer.data):
        if types[i] in ("line", "path"):
            continue
        name = str(names[i]) if i < len(names) and names[i] else ""
        if name in seen:  # a copy of a region keeps its outline, not its name
            name = ""
        while not name:
            k += 1
            name = f"region {k}" if f"region {k}" not in taken else ""
        taken.add(name)
        seen.add(name)
        xy = flip_xy_rc(_outline(shape, types[i]))
        if len(xy) >= 3:
            out.append(Region(name, xy))
    return out


def masks_layer_data(ann: ImageAnnotation) -> tuple:
    masks = ann.masks if ann.masks is not None else InstanceMasks.empty(ann.height, ann.width)
    return masks.label_image.copy(), {"name": MASKS, "opacity": 0.5}, "labels"


def annotation_layers(ann: ImageAnnotation) -> list[tuple]:
    """Layer data tuples for everything the annotation holds (boxes and points always, masks when present)."""
    layers = [regions_layer_data(ann), boxes_layer_data(ann), points_layer_data(ann)]
    if ann.masks is not None:
        layers.insert(1, masks_layer_data(ann))
    return layers


def _classes_from(features: pd.DataFrame, n: int, class_names: tuple[str, ...]) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    return np.array([class_names.index(str(c)) for c in features["class"]], dtype=np.int64)


def _ids_from(features: pd.DataFrame, n: int) -> np.ndarray:
    if n == 0 or "id" not in features:
        return np.full(n, NEW, dtype=np.int64)
    return features["id"].fillna(NEW).to_numpy(np.int64)


def sync_layers(model: EditModel, shapes=None, labels=None, points=None, regions=None,
                box_scope: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Hand what the layers hold after a person's edits to the edit model; the ids of the layers' rows now.

    ``box_scope``: the ids of the boxes the shapes layer was given (default: every box the model shows).
    """
    names = model.annotation.class_names
    ids: dict[str, np.ndarray] = {}
    if shapes is not None:
        n = len(shapes.data)
        xyxy = napari_rectangles_to_xyxy(shapes.data) if n else np.zeros((0, 4))
        ids[BOXES] = model.update_boxes(xyxy, _classes_from(shapes.features, n, names),
                                        _ids_from(shapes.features, n), box_scope)
    if points is not None:
        n = len(points.data)
        rc = np.asarray(points.data)[:, -2:] if n else np.zeros((0, 2))
        ids[POINTS] = model.update_points(rc, _classes_from(points.features, n, names), _ids_from(points.features, n))
    if labels is not None:
        model.paint(np.asarray(labels.data))
    if regions is not None:
        model.set_regions(regions_from_layer(regions))
    return ids


def annotation_from_layers(template: ImageAnnotation, shapes=None, labels=None, points=None,
                           regions=None) -> ImageAnnotation:
    """The annotation as the user left it in the layers filled from ``template`` (all its boxes shown).

    Model objects changed since then are marked corrected; objects the user added are human
    (:class:`cellcounter.editing.EditModel`).
    """
    model = EditModel(template, score_threshold=None)
    sync_layers(model, shapes, labels, points, regions)
    return model.annotation
