"""Leaf instance masks: CVPPP indexed label PNGs and colour-coded masks (one colour per leaf).

CVPPP layout: ``plantNNN_rgb.png`` (image), ``plantNNN_label.png`` (palette PNG
whose index is the leaf id), ``plantNNN_fg.png`` (foreground, unused here).
Colour masks: ``<stem>_mask.png`` (or ``_colour``/``_color``), black background,
every other colour one instance, beside ``<stem>.png`` or ``<stem>_rgb.png`` or in
a sibling ``images/`` folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from cellcounter.annotations import ImageAnnotation, InstanceMasks
from cellcounter.errors import FormatError
from cellcounter.fileutil import atomic_write_with
from cellcounter.formats._common import find_image, unique_stems
from cellcounter.imageio import check_decodable, image_size, read_image
from cellcounter.tasks import TASKS

COLOUR_SUFFIXES = ("_mask", "_colour", "_color")


def _files(path: Path, suffixes: tuple[str, ...], what: str) -> list[Path]:
    if path.is_file():
        return [path]
    folder = path / "masks" if (path / "masks").is_dir() else path
    files = sorted(f for f in folder.glob("*.png") if any(f.stem.endswith(s) for s in suffixes))
    if not files and folder.name == "masks":
        files = sorted(folder.glob("*.png"))
    if not files:
        raise FormatError(path, f"no {what} found")
    return files


def _strip(stem: str, suffixes: tuple[str, ...]) -> str:
    for s in suffixes:
        if stem.endswith(s):
            return stem[: -len(s)]
    return stem


def _image_for(mask_path: Path, stem: str) -> Path | None:
    for folder in (mask_path.parent, mask_path.parent / "images", mask_path.parent.parent / "images"):
        found = find_image(folder, f"{stem}_rgb") or find_image(folder, stem)
        if found is not None and found != mask_path:
            return found
    return None


def _annotation(mask_path: Path, lab: np.ndarray, stem: str, names) -> ImageAnnotation:
    h, w = lab.shape
    image_path = _image_for(mask_path, stem)
    if image_path is not None:
        iw, ih = image_size(image_path)
        if (iw, ih) != (w, h):
            raise FormatError(mask_path, f"mask is {w}x{h} but its image {image_path.name} is {iw}x{ih}")
    else:
        image_path = mask_path.parent / f"{stem}_rgb.png"
    return ImageAnnotation(image_path=str(image_path), width=w, height=h, class_names=names, task="leaves",
                           masks=InstanceMasks(lab.astype(np.int32)))


def read_cvppp(path: str | Path, class_names=None) -> list[ImageAnnotation]:
    names = tuple(class_names) if class_names else TASKS["leaves"].class_names
    out = []
    for f in _files(Path(path), ("_label",), "CVPPP label PNGs (*_label.png)"):
        try:
            with Image.open(f) as im:
                _check_lossless(f, im)
                check_decodable(f, *im.size)
                if im.mode == "P" or im.mode in ("L", "I", "I;16"):
                    lab = np.asarray(im).astype(np.int64)
                else:  # some CVPPP releases ship RGB-coded labels
                    lab = colour_mask_to_labels(np.asarray(im.convert("RGB")))
        except (OSError, ValueError) as exc:
            raise FormatError(f, f"not a readable PNG ({exc})") from None
        out.append(_annotation(f, lab, _strip(f.stem, ("_label",)), names))
    return out


LOSSLESS = ("PNG", "TIFF", "BMP", "GIF")


def _check_lossless(path: Path, im: Image.Image) -> None:
    """Labels coded as colours or grey levels survive only lossless files: a JPEG's compression noise would
    turn every instance into thousands."""
    if im.format not in LOSSLESS:
        raise FormatError(path, f"is a {im.format or 'non-image'} file whatever its name: its lossy compression "
                                "changes label values, so labels must be saved as PNG or TIFF")


def colour_mask_to_labels(rgb: np.ndarray, background: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Number each distinct colour 1..N (in order of first appearance, row-major); background is 0."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] < 3:
        raise ValueError(f"a colour mask must be H x W x 3, got shape {a.shape}")
    a = a[:, :, :3].astype(np.uint32)
    packed = (a[:, :, 0] << 16) | (a[:, :, 1] << 8) | a[:, :, 2]
    bg = (background[0] << 16) | (background[1] << 8) | background[2]
    colours, first, inverse = np.unique(packed.ravel(), return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty(len(colours), dtype=np.int64)
    fg = colours[order] != bg
    rank[order[fg]] = np.arange(1, int(fg.sum()) + 1)
    rank[order[~fg]] = 0
    return rank[inverse].reshape(packed.shape)


def read_colour_mask(path: str | Path, class_names=None) -> list[ImageAnnotation]:
    names = tuple(class_names) if class_names else TASKS["leaves"].class_names
    out = []
    for f in _files(Path(path), COLOUR_SUFFIXES, "colour masks (*_mask.png)"):
        try:
            with Image.open(f) as im:
                _check_lossless(f, im)
        except (OSError, ValueError) as exc:
            raise FormatError(f, f"not a readable PNG ({exc})") from None
        rgb = read_image(f)
        if rgb.ndim != 3:
            raise FormatError(f, "a colour mask must be an RGB image")
        out.append(_annotation(f, colour_mask_to_labels(rgb), _strip(f.stem, COLOUR_SUFFIXES), names))
    return out


def instance_palette(n: int, seed: int = 7) -> np.ndarray:
    """``n`` distinct, non-black RGB colours (index 0 is black for the background)."""
    rng = np.random.default_rng(seed)
    pal = np.zeros((n + 1, 3), dtype=np.uint8)
    used = {(0, 0, 0)}
    for i in range(1, n + 1):
        while True:
            c = tuple(int(v) for v in rng.integers(32, 256, size=3))
            if c not in used:
                used.add(c)
                pal[i] = c
                break
    return pal


def _targets(anns: Sequence[ImageAnnotation], dst: Path, suffix: str) -> list[Path]:
    if dst.suffix.lower() == ".png":
        if len(anns) != 1:
            raise FormatError(dst, f"a single PNG holds one image, not {len(anns)}; give a folder")
        return [dst]
    return [dst / f"{s}{suffix}.png" for s in unique_stems(anns, dst)]


def write_colour_mask(anns: Sequence[ImageAnnotation], dst: str | Path) -> list[Path]:
    targets = _targets(anns, Path(dst), "_mask")
    payloads = []
    for a in anns:
        m = (a.masks if a.masks is not None else InstanceMasks.empty(a.height, a.width)).relabelled()
        payloads.append(instance_palette(len(m))[m.label_image])
    for t, rgb in zip(targets, payloads):
        atomic_write_with(t, lambda tmp, d=rgb: Image.fromarray(d).save(tmp, format="PNG"))
    return targets


def write_cvppp(anns: Sequence[ImageAnnotation], dst: str | Path) -> list[Path]:
    targets = _targets(anns, Path(dst), "_label")
    payloads = []
    for a, t in zip(anns, targets):
        m = (a.masks if a.masks is not None else InstanceMasks.empty(a.height, a.width)).relabelled()
        if len(m) > 255:
            raise FormatError(t, f"a CVPPP palette PNG holds at most 255 instances, the image has {len(m)}")
        im = Image.fromarray(m.label_image.astype(np.uint8), mode="P")
        im.putpalette(instance_palette(255).ravel().tolist())
        payloads.append(im)
    for t, im in zip(targets, payloads):
        atomic_write_with(t, lambda tmp, i=im: i.save(tmp, format="PNG"))
    return targets
