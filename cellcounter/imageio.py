"""Reading images: PNG, JPEG and TIFF (multi-page, BigTIFF, 16-bit, OME), small or huge.

Small images are read into memory. TIFFs above :data:`LAZY_PIXELS` are opened
lazily: the returned :class:`ImageSource` reads only the regions asked for
(memory-mapped when the file is uncompressed and contiguous, through a zarr
view of the TIFF's tiles or strips otherwise).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from cellcounter.errors import CellCounterWarning, ImageReadError
from cellcounter.fileutil import not_regular_reason
from cellcounter.imagesource import ImageSource, drop_alpha
from cellcounter.slides import SLIDE_SUFFIXES, open_slide

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp") + SLIDE_SUFFIXES
#: TIFFs with more pixels than this are opened lazily instead of read whole.
LAZY_PIXELS = 64 * 1024 * 1024
# Pixel sizes derived from inch-based resolution tags above this are almost
# always the 72/96/300 dpi placeholders of office software, not a calibration.
_MAX_PLAUSIBLE_UM_PER_PX = 50.0

Image.MAX_IMAGE_PIXELS = None  # pathology images are legitimately huge: the limit below is ours, with its own message
#: Most pixels an image may have to be decoded whole into memory (a tiled TIFF larger than this is read lazily,
#: region by region). Decoding peaks at about 10 bytes per pixel (an 8192 x 8192 PNG: 0.64 GB), so about 1.3 GB
#: at this limit. Raise it with the CELLCOUNTER_MAX_PIXELS environment variable.
DEFAULT_MAX_PIXELS = 2**27
#: Longest side any image or label file may claim (the largest whole slides are about 200,000 pixels wide).
MAX_SIDE = 2**20


def max_pixels() -> int:
    try:
        return max(1, int(os.environ.get("CELLCOUNTER_MAX_PIXELS", DEFAULT_MAX_PIXELS)))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def check_decodable(path: Path, width: int, height: int) -> None:
    """Refuse to decode an image whole when it claims more pixels than :func:`max_pixels` (a decompression
    bomb: a few kilobytes of PNG can claim 50,000 x 50,000)."""
    if width <= 0 or height <= 0:
        raise ImageReadError(path, f"claims a size of {width} x {height} pixels")
    if width * height > max_pixels():
        raise ImageReadError(path, f"is {width} x {height} pixels ({width * height / 1e6:.0f} megapixels), more than "
                                   f"the {max_pixels() / 1e6:.0f} megapixels read whole into memory; save it as a "
                                   "tiled (pyramidal) TIFF to open it region by region, or raise "
                                   "CELLCOUNTER_MAX_PIXELS")


def _unreadable(exc: BaseException) -> str:
    """Why PIL could not read a file, without the in-memory buffer it names instead of the file."""
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable image (not a PNG, JPEG, TIFF, BMP or GIF file, or damaged beyond repair)"
    return f"not a readable image ({re.sub(r'<_io.BytesIO object at 0x[0-9a-f]+>', 'the file', str(exc))})"


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path, page: int = 0) -> np.ndarray:
    """Read an image into memory as ``(H, W)`` grey or ``(H, W, 3)`` colour, keeping its dtype."""
    src = open_image(path, page=page, lazy=False)
    return src.read()


def open_image(path: str | Path, page: int = 0, lazy: bool | None = None) -> ImageSource:
    """Open an image; ``lazy=None`` decides by size (only TIFFs can be lazy).

    Raises
    ------
    ImageReadError
        The file is missing, is not an image, or is damaged beyond repair.
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "file not found")
    if p.is_dir():
        raise ImageReadError(p, "is a folder, not an image")
    why = not_regular_reason(p)
    if why:
        raise ImageReadError(p, why)
    if p.suffix.lower() in SLIDE_SUFFIXES:  # vendor slide formats: OpenSlide, at their own pyramid levels
        return open_slide(p)
    with open(p, "rb") as fh:
        head = fh.read(4)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _open_tiff(p, page, lazy)
    return _open_pil(p)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image without reading its pixels."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            is_tiff = fh.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    except OSError as exc:
        raise ImageReadError(p, f"cannot read file ({exc.strerror or exc})") from None
    if not is_tiff and p.suffix.lower() not in SLIDE_SUFFIXES:
        try:
            with Image.open(p) as im:
                return im.size
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageReadError(p, _unreadable(exc)) from None
    src = open_image(p, lazy=True)
    try:
        return src.width, src.height
    finally:
        src.close()


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, as ``sha256:<hex>``."""
    why = not_regular_reason(path)
    if why:  # /dev/zero would be hashed for ever
        raise ImageReadError(Path(path), why)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return "sha256:" + h.hexdigest()


# --- PIL formats -------------------------------------------------------------


def _open_pil(p: Path) -> ImageSource:
    data = p.read_bytes()
    repaired = False
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        # A JPEG cut short (interrupted copy or upload): add the end-of-image
        # marker so the decoder fills the missing rows instead of failing.
        data = data.rstrip(b"\x00") + b"\xff\xd9"
        repaired = True
    try:
        with Image.open(io.BytesIO(data)) as im:
            check_decodable(p, *im.size)  # before the pixels are decoded
            im.load()
            pixel_size = _pil_pixel_size(im)
            arr = _pil_to_array(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(p, _unreadable(exc)) from None
    if repaired:
        warnings.warn(
            f"{p}: JPEG is truncated (no end-of-image marker); loaded with the missing part filled in grey",
            CellCounterWarning,
            stacklevel=3,
        )
    arr = drop_alpha(arr)
    return ImageSource(p, arr.shape, arr.dtype, pixel_size, 1, arr, lazy=False)


def _pil_to_array(im: Image.Image) -> np.ndarray:
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode == "LA":
        im = im.convert("L")
    return np.asarray(im)


def _pil_pixel_size(im: Image.Image) -> float | None:
    # PNG pHYs in pixels per metre is a real calibration; JPEG/PNG "dpi" is not.
    if im.format == "PNG":
        aspect = im.info.get("aspect")
        if aspect is None and "dpi" in im.info:
            dpi = im.info["dpi"][0]
            if dpi and 25400.0 / dpi <= _MAX_PLAUSIBLE_UM_PER_PX:
                return 25400.0 / float(dpi)
    return None


# --- TIFF ----------------------------------------------------------------------


def _open_tiff(p: Path, page: int, lazy: bool | None) -> ImageSource:
    try:
        tif = tifffile.TiffFile(p)
    except Exception as exc:  # noqa: BLE001 - tifffile raises a variety of errors on damaged files
        raise ImageReadError(p, f"not a readable TIFF ({exc})") from None
    try:
        series = tif.series[0]
        shape = tuple(int(s) for s in series.shape)
        axes = series.axes
        n_pages = _n_planes(shape, axes)
        if page < 0 or page >= n_pages:
            raise ImageReadError(p, f"page {page} asked for but the file has {n_pages} page(s)")
        pixel_size = _tiff_pixel_size(tif)
        yx_shape = _plane_shape(shape, axes)
        n_pixels = yx_shape[0] * yx_shape[1]
        if lazy is None:
            lazy = n_pixels > LAZY_PIXELS
        if not lazy:
            check_decodable(p, yx_shape[1], yx_shape[0])
            plane = _one_page(series, page, yx_shape)  # a stack's other pages stay on disk
            if plane is None:
                plane = _select_plane(series.asarray(), axes, page)
            tif.close()
            plane = drop_alpha(np.asarray(plane))
            return ImageSource(p, plane.shape, plane.dtype, pixel_size, n_pages, plane, lazy=False)
        _check_data_within_file(series, p)
        levels, level_store = _pyramid(series, page)
        arr, store = _lazy_plane(tif, series, p, page)
        return ImageSource(p, tuple(arr.shape[:2]) + _channels(arr.shape), np.dtype(arr.dtype), pixel_size,
                           n_pages, arr, lazy=True, levels=levels or [],
                           closers=[c for c in (level_store, store, tif) if c is not None], settle=_settle_lazy_reads)
    except ImageReadError:
        tif.close()
        raise
    except Exception as exc:  # noqa: BLE001 - reported with what failed
        tif.close()
        raise ImageReadError(p, f"damaged or unsupported TIFF ({type(exc).__name__}: {exc})") from None


def _settle_lazy_reads(timeout: float = 30.0) -> None:
    """After a failed lazy read, let zarr's other chunk reads of it finish: its reader stops at the first
    error and leaves the rest running in its own event loop, which at exit reports each as a "Task was
    destroyed but it is pending" / "Event loop is closed" traceback. Nothing is cancelled (another image's
    read may share the loop); a zarr without that loop is left alone."""
    import asyncio

    try:
        from zarr.core.sync import _get_loop

        loop = _get_loop()
    except Exception:  # noqa: BLE001 - another zarr version: nothing to settle
        return

    async def settle() -> None:
        me = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not me]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        for t in pending:
            if t.done() and not t.cancelled():
                t.exception()  # retrieved: no "exception was never retrieved" either

    try:
        asyncio.run_coroutine_threadsafe(settle(), loop).result(timeout + 5)
    except Exception:  # noqa: BLE001 - settling is a courtesy; the error that matters is raised by the caller
        pass


def _check_data_within_file(series, p: Path) -> None:
    """Refuse a TIFF whose strips or tiles point past its end (a truncated copy, or a header claiming a
    30000 x 30000 image in a 1 MB file): read lazily, it would fail tile by tile mid-prediction, inside the
    zarr reader's threads, and say so only in noise after the error."""
    size = p.stat().st_size
    for tiff_page in series.pages:
        if tiff_page is None:
            continue
        offsets = np.asarray(getattr(tiff_page, "dataoffsets", ()), np.int64)
        counts = np.asarray(getattr(tiff_page, "databytecounts", ()), np.int64)
        if offsets.size and counts.size == offsets.size:
            ends = np.where(counts > 0, offsets + counts, 0)  # empty (sparse) tiles hold no data
            if ends.max() > size:
                raise ImageReadError(p, f"truncated or damaged: its image data reaches byte {int(ends.max()):,} "
                                        f"but the file has {size:,} bytes")


def _one_page(series, page: int, yx_shape: tuple[int, int]) -> np.ndarray | None:
    """Plane ``page`` of a stack stored one plane per TIFF page, decoding that page alone (a 256-page stack
    would otherwise be decoded whole to show its first page); ``None`` where planes and pages differ."""
    pages = series.pages
    if len(pages) < 2 or page >= len(pages) or pages[page] is None:
        return None
    one = pages[page]
    if tuple(int(s) for s in one.shape[:2]) != tuple(yx_shape):
        return None
    return np.asarray(one.asarray())


def _channels(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) == 3:
        c = int(shape[2])
        if c == 4:
            return (3,)
        if c == 2:
            return ()
        return (c,)
    return ()


def _n_planes(shape: tuple[int, ...], axes: str) -> int:
    n = 1
    for size, ax in zip(shape, axes):
        if ax not in "YXS":
            n *= size
    return n


def _plane_shape(shape: tuple[int, ...], axes: str) -> tuple[int, int]:
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"its first series has no Y and X axes (axes {axes!r}, shape {shape})")
    return shape[axes.index("Y")], shape[axes.index("X")]


def _select_plane(data: np.ndarray, axes: str, page: int) -> np.ndarray:
    """Pick plane ``page`` (in C order over the non-YXS axes) and return it as Y, X[, S]."""
    other = [i for i, ax in enumerate(axes) if ax not in "YXS"]
    keep = [i for i, ax in enumerate(axes) if ax in "YXS"]
    moved = np.moveaxis(data, other + keep, list(range(len(axes))))
    flat = moved.reshape((-1,) + tuple(data.shape[i] for i in keep))
    plane = flat[page]
    kept_axes = "".join(axes[i] for i in keep)
    if kept_axes == "SYX":  # planar RGB
        plane = np.moveaxis(plane, 0, -1)
    return plane


def _pyramid(series, page: int):
    """The file's own resolution levels as lazily read arrays (``None`` when it has none)."""
    if len(getattr(series, "levels", ())) < 2 or series.axes not in ("YX", "YXS") or page != 0:
        return None, None
    import zarr

    store = series.aszarr()
    group = zarr.open(store, mode="r")
    return [group[str(i)] for i in range(len(series.levels))], store


def _lazy_plane(tif: tifffile.TiffFile, series, p: Path, page: int):
    """A lazily-read array ``(H, W[, S])`` for one plane of a large TIFF."""
    axes = series.axes
    if axes in ("YX", "YXS") and page == 0:
        try:
            mm = tifffile.memmap(p, series=0, mode="r")
            tif.close()
            return mm, None
        except (ValueError, OSError):
            pass  # compressed or non-contiguous: fall through to zarr
    import zarr

    store = series.aszarr()
    z = zarr.open(store, mode="r")
    if not hasattr(z, "shape"):  # a multiscale group: level "0" is full resolution
        z = z["0"]
    if axes not in ("YX", "YXS"):
        if axes == "SYX":
            raise ImageReadError(p, "large planar (SYX) TIFFs cannot be read lazily; save it interleaved")
        other = [i for i, ax in enumerate(axes) if ax not in "YXS"]
        idx = list(np.unravel_index(page, [series.shape[i] for i in other]))
        index: list[Any] = [int(idx.pop(0)) if i in other else slice(None) for i in range(len(axes))]
        z = _IndexedZarr(z, tuple(index))
    return z, store


class _IndexedZarr:
    """A zarr array with its leading non-spatial axes fixed, sliceable as ``[y, x]``."""

    def __init__(self, z, index: tuple) -> None:
        self._z = z
        self._index = index
        free = [i for i, s in enumerate(index) if isinstance(s, slice)]
        self.shape = tuple(z.shape[i] for i in free)
        self.dtype = z.dtype

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        full = []
        it = iter(key)
        for s in self._index:
            full.append(next(it, slice(None)) if isinstance(s, slice) else s)
        return self._z[tuple(full)]


_OME_NS = re.compile(r"\{.*\}")


def _tiff_pixel_size(tif: tifffile.TiffFile) -> float | None:
    """Microns per pixel from OME, ImageJ, Aperio or resolution tags, else ``None``."""
    if tif.is_ome and tif.ome_metadata:
        try:
            root = ET.fromstring(tif.ome_metadata)
            for el in root.iter():
                if _OME_NS.sub("", el.tag) == "Pixels" and el.get("PhysicalSizeX"):
                    size = float(el.get("PhysicalSizeX"))
                    unit = el.get("PhysicalSizeXUnit", "µm")
                    factor = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6}.get(unit)
                    if factor:
                        return size * factor
        except (ET.ParseError, ValueError):
            pass
    page = tif.pages.first
    desc = page.description or ""
    m = re.search(r"MPP\s*=\s*([0-9]*\.?[0-9]+)", desc)  # Aperio SVS; "MPP = ..." or "MPP = n/a" says nothing
    if m and float(m.group(1)) > 0:
        return float(m.group(1))
    xres = page.tags.get("XResolution")
    if xres is None:
        return None
    num, den = xres.value if isinstance(xres.value, tuple) else (xres.value, 1)
    if not num or not den:
        return None
    px_per_unit = num / den
    if tif.is_imagej and tif.imagej_metadata:
        unit = str(tif.imagej_metadata.get("unit", "")).lower()
        if unit in ("micron", "um", "µm", "\\u00B5m"):
            return 1.0 / px_per_unit
    unit_tag = page.tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 2
    if unit == 3:  # centimetre
        return 1e4 / px_per_unit
    if unit == 2:  # inch
        um = 25400.0 / px_per_unit
        return um if um <= _MAX_PLAUSIBLE_UM_PER_PX else None
    return None
