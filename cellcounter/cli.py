"""The ``cellcounter`` command line: ``convert`` and ``info`` (more subcommands register here)."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sqlite3
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from cellcounter import __version__
from cellcounter.annotations import ImageAnnotation, summarise, summary_lines
from cellcounter.errors import (
    REPORTED_ERRORS,
    FormatError,
    error_line,
    missing_reason,
)
from cellcounter.fileutil import atomic_write_with
from cellcounter.formats import FORMATS, detect_format, get_format, read_labels, write_labels
from cellcounter.imageio import IMAGE_SUFFIXES, is_image_file, open_image
from cellcounter.tasks import TASKS, get_task

_IMAGE_FOLDER = {"voc": "JPEGImages"}


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellcounter",
        description="Count cells and grade images: convert label formats, inspect data, predict and evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"cellcounter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    fmts = ", ".join(f"{n} ({f.description})" for n, f in FORMATS.items())
    conv = sub.add_parser(
        "convert", help="convert labels between formats",
        description=f"Convert labels between formats. Formats: {fmts}. A folder in a known layout "
                    "(VOC, DSB stage1_train, MoNuSeg, IDRiD) is recognised without --from.",
    )
    conv.add_argument("--from", dest="src_format", choices=[n for n, f in FORMATS.items() if f.reader],
                      help="source format (recognised from SRC when left out)")
    conv.add_argument("--to", dest="dst_format", required=True, choices=[n for n, f in FORMATS.items() if f.writer])
    conv.add_argument("--task", choices=list(TASKS), help="take class names and their order from this task")
    conv.add_argument("--copy-images", action="store_true",
                      help="copy the images into DST too, so DST is a self-contained data set")
    conv.add_argument("--image-root", type=Path, metavar="FOLDER",
                      help="COCO: write file_name relative to this folder, as the tool that reads it will be told "
                           "(default: the folder the images share)")
    conv.add_argument("src", metavar="SRC", help="label file or folder")
    conv.add_argument("dst", metavar="DST", help="output file or folder")
    conv.set_defaults(func=cmd_convert)

    info = sub.add_parser("info", help="show what a label file, folder or image holds",
                          description="Print images, instances per class and grades found at PATH.")
    info.add_argument("path", metavar="PATH")
    info.add_argument("--from", dest="src_format", choices=[n for n, f in FORMATS.items() if f.reader])
    info.add_argument("--json", action="store_true", help="end with one line of JSON")
    info.set_defaults(func=cmd_info)

    from cellcounter.project.cli import register as register_project

    register_project(sub)
    from cellcounter.inference.cli import register as register_inference

    register_inference(sub)
    return parser


def _source_root(src: Path) -> Path:
    """The folder a conversion's images must lie under: the source folder, or the label file's (its parent's
    when the file sits in an ``annotations`` folder, as in COCO's own layout)."""
    root = src if src.is_dir() else src.parent
    return root.parent if root.name.lower() == "annotations" else root


def _copy_images(anns: Sequence[ImageAnnotation], dst: Path, fmt: str, root: Path, created: list[Path]) -> None:
    folder = (dst.parent if dst.suffix else dst) / _IMAGE_FOLDER.get(fmt, "images")
    root = root.resolve()
    for a in anns:  # every image is checked before the first is copied
        src = Path(a.image_path)
        if not src.is_file():
            raise FormatError(src, "image not found, cannot copy it")
        if not src.resolve().is_relative_to(root):
            raise FormatError(src, f"lies outside the source folder {root}: not copied (a label file may only "
                                   "name images under its own folder)")
        if not is_image_file(src):
            raise FormatError(src, "is not an image file: not copied")
    for a in anns:
        src = Path(a.image_path)
        target = folder / src.name
        if not target.exists() or target.resolve() != src.resolve():
            if not target.exists():
                created.append(target)
            atomic_write_with(target, lambda tmp, s=src: shutil.copyfile(s, tmp))
        a.image_path = str(target)


def _refuse_overwriting_the_source(src: Path, dst: Path) -> None:
    s, d = src.resolve(), dst.resolve()
    if d == s or (s.is_dir() and d.is_relative_to(s)):
        raise FormatError(dst, f"is {'the source itself' if d == s else 'inside the source folder'} {src}: "
                               "converting there would overwrite or mix with the labels read; choose a "
                               "destination outside it")


def _undo_partial(created: list[Path], label_root: Path | None, existed: set[Path], made_root: bool) -> None:
    """Remove what a failed conversion wrote: nothing of it stays half built."""
    if made_root and label_root is not None:
        shutil.rmtree(label_root, ignore_errors=True)  # the run made this folder: all of it is the run's
    elif label_root is not None and label_root.is_dir():
        created = created + [p for p in label_root.rglob("*") if p.is_file() and p not in existed]
    for p in created:
        p.unlink(missing_ok=True)
    for folder in {p.parent for p in created} - {label_root}:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty


def cmd_convert(args: argparse.Namespace) -> int:
    src_format = args.src_format or detect_format(args.src)
    class_names = get_task(args.task).class_names if args.task else None
    anns = read_labels(args.src, src_format, class_names)  # everything is read and checked before writing
    if not anns:
        raise FormatError(args.src, "no labelled images found")
    get_format(args.dst_format)
    src, dst = Path(args.src), Path(args.dst)
    _refuse_overwriting_the_source(src, dst)
    label_root = dst if (dst.is_dir() or not dst.suffix) else None
    made_root = label_root is not None and not label_root.exists()
    existed = set(label_root.rglob("*")) if label_root is not None and not made_root else set()
    created: list[Path] = []
    try:
        if args.copy_images:
            _copy_images(anns, dst, args.dst_format, _source_root(src), created)
        written = write_labels(anns, dst, args.dst_format, args.image_root)
    except BaseException:
        _undo_partial(created, label_root, existed, made_root)
        raise
    print(f"read {len(anns)} image(s) as {src_format}, wrote {len(written)} file(s) as {args.dst_format} to {dst}")
    return 0


def _image_info(path: Path, as_json: bool) -> int:
    files = [path] if path.is_file() else sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FormatError(path, "holds no labels in a known layout and no images")
    for f in files:
        with open_image(f, lazy=True) as src:
            size = f"{src.width} x {src.height}"
            extra = f", {src.pixel_size_um:.4g} um/px" if src.pixel_size_um else ""
            extra += (f", {src.objective_power:g}x" if src.objective_power else "") + (
                f", {len(src.levels)} levels" if src.levels else "")
            pages = f", {src.n_pages} pages" if src.n_pages > 1 else ""
            print(f"{f.name}: {size}, {src.dtype}, {src.shape[2] if len(src.shape) == 3 else 1} channel(s)"
                  f"{pages}{extra}")
    summary = {"images": len(files), "instances": {}}
    print(json.dumps(summary) if as_json else f"{len(files)} image(s), no labels")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise FormatError(path, missing_reason(path))
    try:
        fmt = args.src_format or detect_format(path)
    except FormatError:
        if (path.is_file() and is_image_file(path)) or path.is_dir():
            return _image_info(path, args.json)
        raise
    anns = read_labels(path, fmt)
    summary = summarise(anns)
    print(f"{path}: {fmt}, {summary['images']} image(s)")
    print("\n".join(summary_lines(summary)))
    if args.json:
        print(json.dumps(summary))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _print_warning
    try:
        return int(args.func(args) or 0)
    except sqlite3.DatabaseError as exc:  # a project damaged where the store did not expect it
        from cellcounter.project.backups import restore_hint

        project = getattr(args, "project", None)
        print(f"error: {project or 'the project'}: damaged ({exc})"
              + (f"; {restore_hint(project)}" if project else ""), file=sys.stderr)
        return 2
    except REPORTED_ERRORS as exc:
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
