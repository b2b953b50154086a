"""``cellcounter predict``, ``export-onnx``, ``evaluate`` and ``calibrate``."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from cellcounter.annotations import DEFAULT_SCORE_THRESHOLD
from cellcounter.errors import CellCounterError, FormatError, missing_reason, os_error_reason
from cellcounter.formats import image_files, read_labels, write_labels
from cellcounter.formats.qupath import read_regions
from cellcounter.imageio import open_image
from cellcounter.inference.choice import BACKENDS
from cellcounter.regions import Region
from cellcounter.tasks import TASKS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict boxes, masks or grades for images or folders",
                       description="Run a model on images and write labels, overlays and a counts CSV.")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    p.add_argument("--task", required=True, choices=list(TASKS))
    p.add_argument("--model", required=True, help="model folder, or the name of a bundled or installed model")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="auto: the fastest measured for the model's kind on this machine (docs/performance.md)")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--format", choices=["coco", "voc", "label-tiff", "grade-csv"],
                   help="label format per image (default: coco); grades also go to grades.csv for the run")
    p.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD,
                   help=f"for counts and overlays (default {DEFAULT_SCORE_THRESHOLD})")
    p.add_argument("--tile", type=int, default=0,
                   help="tile size for images larger than this (default: the model's, from its card)")
    p.add_argument("--overlap", type=int, default=-1,
                   help="pixels tiles share (default: 128, or a quarter of the tile when tiles are small)")
    p.add_argument("--region", metavar="X0,Y0,X1,Y1|GEOJSON",
                   help="predict and count only inside this rectangle (image pixels) or these polygons (the "
                        "annotations of a QuPath GeoJSON file); counts.csv gets a row per region with its "
                        "area and density per mm2")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the images on a Dask distributed cluster: local:N starts N worker processes here, "
                        "tcp://host:8786 uses a running scheduler (see docs/cluster.md); results are written as "
                        "a local run writes them")
    p.set_defaults(func=cmd_predict)

    e = sub.add_parser("export-onnx", help="export a model to ONNX")
    e.add_argument("model")
    e.add_argument("out", type=Path)
    e.set_defaults(func=cmd_export)

    q = sub.add_parser("quantize", help="make and judge an int8 version of a model's network",
                       description="Calibrate static int8 quantisation (QDQ, per-channel weights) on images fed "
                                   "exactly as the predictor feeds them, write model.int8.onnx beside the model, "
                                   "score the float and int8 graphs on labelled validation images and record "
                                   "both in the model's card. The auto backend runs int8 only when it is within "
                                   "tolerance of float (mAP@0.5 0.01, AJI 0.01, QWK 0.02).")
    q.add_argument("--task", required=True, choices=list(TASKS))
    q.add_argument("--model", required=True, help="model folder (written into: its int8 graph and card)")
    q.add_argument("--calibration", required=True, help="labelled folder(s) to calibrate on, comma-separated "
                                                        "(training images, not the validation ones)")
    q.add_argument("--calibration-split", help="only the ids of this split of the calibration data (e.g. train)")
    q.add_argument("--images", type=int, default=32, help="calibration images to use (default 32)")
    q.add_argument("--data", required=True, help="labelled folder(s) to judge on, comma-separated")
    q.add_argument("--split", help="only the ids of this split (e.g. val)")
    q.add_argument("--runtime", default="onnx", choices=["onnx", "openvino"], help="runtime that judges the graphs")
    q.set_defaults(func=cmd_quantize)

    v = sub.add_parser("evaluate", help="evaluate a model on labelled images",
                       description="Boxes: VOC AP@0.5 per class, mAP, count MAE. Masks: mask AP@0.5 and "
                                   "@0.5:0.95 (pycocotools), aggregated Jaccard index, count MAE. Grades: "
                                   "accuracy, quadratic weighted kappa, normalised confusion matrix.")
    v.add_argument("--task", required=True, choices=list(TASKS))
    v.add_argument("--model", required=True)
    v.add_argument("--data", required=True, help="labelled folder(s) or file(s) in any readable layout, "
                                                 "comma-separated (as cellcounter-train's --data)")
    v.add_argument("--split", help="only the ids listed in SPLIT.txt of the data folder (e.g. val), or in a "
                                   "given .txt file (ids are stems, or split/stem for IDRiD)")
    v.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="the runtime to judge (default auto: what the app and predict run on this machine; the "
                        "documented model figures name theirs, mostly torch)")
    v.add_argument("--device", default="auto")
    v.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD,
                   help=f"for counting (default {DEFAULT_SCORE_THRESHOLD})")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("calibrate", help="per-class score calibration of a detector or segmenter",
                       description="Predict labelled validation images and find, per class, the score threshold "
                                   "that counts best (smallest mean count error), checked by cross-validation: "
                                   "each fold is counted with thresholds fitted on the others, beside the raw "
                                   "scores. A class whose held-back count error the threshold does not lower "
                                   "keeps its raw scores. With --write the checked calibration (and its held-back "
                                   "figures) is stored in the model's card, and every prediction with the model "
                                   "maps it to 0.5.")
    c.add_argument("--task", required=True, choices=list(TASKS))
    c.add_argument("--model", required=True)
    c.add_argument("--data", required=True, help="labelled folder(s) or file(s), comma-separated")
    c.add_argument("--split", help="only the ids of this split (e.g. val)")
    c.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    c.add_argument("--write", action="store_true", help="store the checked calibration in the model's card "
                   "(a class it does not improve is stored without one: raw scores)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_calibrate)


def _images(inputs: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            out += image_files(p)  # the layout's images, not its label PNGs (a DSB folder's masks/)
        elif p.exists():
            out.append(p)
        else:
            raise FormatError(p, missing_reason(p))
    if not out:
        raise CellCounterError("no images found in the inputs")
    return out


def parse_region(text: str) -> list[Region]:
    """Regions from the command line: ``x0,y0,x1,y1`` (a rectangle) or a QuPath GeoJSON file's annotations."""
    parts = text.split(",")
    if len(parts) == 4:
        try:
            x0, y0, x1, y1 = (float(p) for p in parts)
        except ValueError:
            pass
        else:
            if not (x1 > x0 and y1 > y0):
                raise CellCounterError(f"--region {text}: a rectangle is x0,y0,x1,y1 with x1 > x0 and y1 > y0")
            return [Region.rectangle("region 1", x0, y0, x1, y1)]
    path = Path(text)
    if not path.is_file():
        raise CellCounterError(f"--region {text}: neither x0,y0,x1,y1 nor a GeoJSON file")
    regions = read_regions(path)
    if not regions:
        raise CellCounterError(f"{path}: no region (a Polygon annotation) in it")
    return regions


def cmd_predict(args) -> int:
    from cellcounter.inference import Predictor
    from cellcounter.inference.overlay import save_overlay
    from cellcounter.inference.run import predict_file
    from cellcounter.inference.tiling import tile_geometry

    _check_numbers(args)  # before the model loads: a wrong number is answered at once
    regions = parse_region(args.region) if args.region else []
    predictor = Predictor.load(args.model, args.backend, args.device)
    if predictor.card.task != args.task:
        raise CellCounterError(f"model {predictor.model_version} is for task {predictor.card.task!r}, "
                               f"not {args.task!r}")
    kind = predictor.config.kind
    fmt = args.format or "coco"
    if regions and kind == "grader":
        raise CellCounterError("--region: a grader grades the whole photo; regions are for counting objects")
    if kind != "grader":
        tile_geometry(predictor, args.tile, args.overlap)  # an overlap the model's tiles cannot take: said once
    files = _images(args.inputs)
    stems = output_stems(files)
    if args.scheduler:
        from cellcounter.inference.cluster import PredictSpec, local_threads, predict_files

        spec = PredictSpec(str(predictor.directory or args.model), args.backend, args.device, args.tile,
                           args.overlap, tuple(regions), local_threads(args.scheduler))
        print(f"model: {predictor.description}, on the cluster at {args.scheduler}", file=sys.stderr)
        outcomes = ((f, ann, None) for f, ann in predict_files(args.scheduler, spec, files))
    else:
        print(f"model: {predictor.description}", file=sys.stderr)
        outcomes = ((f, *predict_file(predictor, f, regions, tile=args.tile, overlap=args.overlap, keep_pixels=True))
                    for f in files)
    results, failed = [], []
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (f, ann, image) in enumerate(outcomes, start=1):
        print(f"[{i}/{len(files)}] {f.name}", file=sys.stderr, flush=True)
        if isinstance(ann, str):  # one bad file never stops the batch
            print(f"error: {f}: {ann}; skipped", file=sys.stderr)
            failed.append(f)
            continue
        stem = stems[i - 1]
        try:
            if fmt != "grade-csv":  # grades go into one CSV for the run, written below
                suffix = {"coco": ".json", "voc": ".xml", "label-tiff": "_labels.tif"}[fmt]
                write_labels([ann], args.out / f"{stem}{suffix}", fmt)
            if image is None and args.scheduler:  # the pixels stayed on the worker; a slide read lazily gets none
                with open_image(f) as src:
                    image = src.read() if not src.lazy else None
            if image is not None:
                save_overlay(args.out / f"{stem}_overlay.png", image, ann, args.score_threshold)
        except (CellCounterError, OSError) as exc:  # its results could not be written: the others still are
            why = f"{exc.filename or ''}: {os_error_reason(exc)}" if isinstance(exc, OSError) else str(exc)
            print(f"error: {f}: its results were not written ({why}); skipped", file=sys.stderr)
            failed.append(f)
            continue
        results.append(ann)
    if results:
        from cellcounter.formats.grade_csv import write_counts_csv

        write_counts_csv(results, args.out / "counts.csv", score_threshold=args.score_threshold)
        if kind == "grader" or fmt == "grade-csv":
            write_labels(results, args.out / "grades.csv", "grade-csv")
    print(f"predicted {len(results)} image(s), {len(failed)} failed; results in {args.out}", file=sys.stderr)
    return 0 if results and not failed else (1 if results else 2)


MIN_TILE = 64


def _check_numbers(args) -> None:
    if args.tile and args.tile < MIN_TILE:
        raise CellCounterError(f"--tile must be 0 (the model's) or at least {MIN_TILE} pixels, got {args.tile}")
    if (args.overlap < 0 and args.overlap != -1) or (args.tile and args.overlap > args.tile // 2):
        raise CellCounterError(f"--overlap must be at least 0 and at most half the tile size, got {args.overlap}")
    if not 0.0 <= args.score_threshold <= 1.0:
        raise CellCounterError(f"--score-threshold must be between 0 and 1, got {args.score_threshold}")


def output_stems(files: list[Path]) -> list[str]:
    """A distinct output name per input: the stem, then stem and suffix (``grey.png``, ``grey.jpg``), then the
    folder too, then a number: no result ever overwrites another."""
    out: list[str] = []
    taken: set[str] = set()
    for f in files:
        for cand in (f.stem, f"{f.stem}_{f.suffix.lstrip('.')}", f"{f.parent.name}_{f.stem}_{f.suffix.lstrip('.')}"):
            if sum(_stem_key(g, cand, f) for g in files) <= 1 and cand not in taken:
                break
        cand = _fits(cand)
        k = 2
        while cand in taken:
            cand, k = f"{cand}_{k}", k + 1
        taken.add(cand)
        out.append(cand)
    return out


MAX_STEM_BYTES = 200  # file names end at 255 bytes on most systems; the longest suffix written is 12


def _fits(stem: str) -> str:
    """``stem`` cut to a length every file system takes, a hash of the whole keeping cut names apart."""
    if len(stem.encode()) <= MAX_STEM_BYTES:
        return stem
    import hashlib

    cut = stem.encode()[:MAX_STEM_BYTES - 9].decode(errors="ignore")
    return f"{cut}-{hashlib.sha1(stem.encode()).hexdigest()[:8]}"


def _stem_key(g: Path, cand: str, f: Path) -> bool:
    """Whether ``g`` would get the same name ``cand`` by the rule that gave it to ``f``."""
    if cand == f.stem:
        return g.stem == f.stem
    if cand == f"{f.stem}_{f.suffix.lstrip('.')}":
        return (g.stem, g.suffix) == (f.stem, f.suffix)
    return (g.parent.name, g.stem, g.suffix) == (f.parent.name, f.stem, f.suffix)


def cmd_export(args) -> int:
    from cellcounter.inference.export import export_onnx
    from cellcounter.models.card import load_model

    model, card = load_model(args.model)
    export_onnx(model, card, args.out)
    print(f"wrote {args.out}")
    return 0


def _labelled(args, data: str | None = None, split: str | None = None) -> list:
    """The labelled images of ``--data`` (``--split``), or of the folders and split given."""
    from cellcounter.evaluate import select_ids, split_ids

    data, split = (data, split) if data is not None else (args.data, args.split)
    gts = []
    for source in [Path(d.strip()) for d in data.split(",") if d.strip()]:
        part = read_labels(source, None, TASKS[args.task].class_names)
        gts += select_ids(part, split_ids(source, split)) if split else part
    if not gts:
        raise FormatError(data, f"no labelled images{' in split ' + split if split else ''}")
    return gts


def cmd_quantize(args) -> int:
    from cellcounter.evaluate import evaluate_annotations, predict_all
    from cellcounter.fileutil import atomic_write_text
    from cellcounter.imageio import read_image
    from cellcounter.inference import Predictor, predict_image
    from cellcounter.inference.choice import INT8_NAME
    from cellcounter.inference.predictor import graph_path
    from cellcounter.inference.quantize import KEY_SCORE, calibration_inputs, judge, quantize_onnx
    from cellcounter.models.card import CARD_NAME, ModelCard, resolve_model

    if args.images < 1:
        raise CellCounterError(f"--images must be at least 1, got {args.images}")
    directory = resolve_model(args.model)
    calib = [a for a in _labelled(args, args.calibration, args.calibration_split) if Path(a.image_path).is_file()]
    if not calib:
        raise FormatError(args.calibration, "no calibration images found")
    pick = np.linspace(0, len(calib) - 1, min(args.images, len(calib))).round().astype(int)
    predictor = Predictor.load(directory, "torch", "cpu")
    if predictor.config.kind not in KEY_SCORE:
        raise CellCounterError(f"{predictor.model_version} is a {predictor.config.kind}: int8 graphs are made for "
                               "detectors, U-Nets and graders (a Mask R-CNN graph holds its post-processing)")
    inputs = calibration_inputs(predictor, [read_image(calib[i].image_path) for i in pick], limit=4 * args.images)
    print(f"calibrating on {len(inputs)} network input(s) from {len(pick)} image(s)", file=sys.stderr)
    fp32 = graph_path(directory, predictor.card, predictor.torch_model)
    quantize_onnx(fp32, directory / INT8_NAME, inputs)
    gts = _labelled(args)
    scores = {}
    for precision in ("", "-int8"):
        p = Predictor.load(directory, args.runtime + precision, "cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kept, preds = predict_all(lambda image, path, p=p: predict_image(p, image, path), gts)
        scores[precision or "fp32"] = evaluate_annotations(args.task, kept, preds)
    verdict = judge(predictor.config.kind, scores["fp32"], scores["-int8"])
    verdict.update(runtime=args.runtime, calibration=f"{len(pick)} images of {args.calibration}"
                   + (f" ({args.calibration_split})" if args.calibration_split else ""),
                   validation=f"{len(gts)} images of {args.data}" + (f" ({args.split})" if args.split else ""))
    card_path = directory / CARD_NAME
    card = ModelCard.from_file(card_path)
    card.metrics["int8"] = verdict
    atomic_write_text(card_path, card.to_json())
    print(f"{verdict['score']}: float {verdict['fp32']:.4f}, int8 {verdict['int8']:.4f} (drop {verdict['drop']:.4f}, "
          f"tolerance {verdict['tolerance']}): {'accepted' if verdict['accepted'] else 'not accepted'}; "
          f"wrote {directory / INT8_NAME} and the verdict into {card_path}")
    return 0


def cmd_calibrate(args) -> int:
    from cellcounter.calibration import checked_thresholds
    from cellcounter.evaluate import predict_all
    from cellcounter.fileutil import atomic_write_text
    from cellcounter.inference import Predictor, predict_image
    from cellcounter.models.card import CARD_NAME, ModelCard, resolve_model

    if args.folds < 2:
        raise CellCounterError(f"--folds must be at least 2, got {args.folds}")
    sources = [d.strip() for d in args.data.split(",") if d.strip()]
    gts, groups = [], []
    for source in sources:
        part = _labelled(args, source, args.split)
        gts += part
        groups += [Path(source).name] * len(part)
    # fit on the model's own scores, not on an earlier calibration's
    predictor = Predictor.load(args.model, calibrated=False)
    if predictor.config.kind == "grader":
        raise CellCounterError(f"{predictor.model_version} is a grader: there are no object scores to calibrate")
    print(f"model: {predictor.description}; {len(gts)} labelled image(s)", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        done, preds = predict_all(lambda image, path: predict_image(predictor, image, path), gts)
    by_path = dict(zip((g.image_path for g in gts), groups))
    groups = [by_path.get(g.image_path, "?") for g in done]
    thresholds, report = checked_thresholds(done, preds, args.folds, groups=groups if len(sources) > 1 else None)
    for name, r in report.items():
        verdict = "kept" if r["kept"] else "not kept: raw scores count these better"
        print(f"{name}: threshold {r['threshold']:.3f}: count error on held-back images "
              f"{r['held_back_count_mae_raw']:.3f} raw -> {r['held_back_count_mae_calibrated']:.3f} ({verdict})")
        for kind, g in (r.get("by_group") or {}).items():
            print(f"    {kind} ({g['images']}): {g['held_back_count_mae_raw']:.3f} -> "
                  f"{g['held_back_count_mae_calibrated']:.3f}")
    if args.write:
        card_path = resolve_model(args.model) / CARD_NAME
        card = ModelCard.from_file(card_path)
        card.score_calibration = thresholds
        card.metrics["score_calibration"] = {"data": args.data, "split": args.split, "images": len(done),
                                             "folds": min(args.folds, len(done)), "per_class": report}
        atomic_write_text(card_path, card.to_json())
        kept = ", ".join(f"{k} {v:.3f}" for k, v in thresholds.items()) or "none: raw scores for every class"
        print(f"wrote the calibration into {card_path}: {kept}", file=sys.stderr)
    if args.json:
        print(json.dumps({"score_calibration": thresholds, "per_class": report}))
    return 0


def cmd_evaluate(args) -> int:
    from cellcounter.evaluate import evaluate_annotations, predict_all
    from cellcounter.inference import Predictor, predict_image

    gts = _labelled(args)
    predictor = Predictor.load(args.model, args.backend, args.device)
    print(f"model: {predictor.description}; {len(gts)} labelled image(s)", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # as the app, `predict` and training's validation do: one entry point
        gts, preds = predict_all(lambda image, path: predict_image(predictor, image, path), gts)
    res = evaluate_annotations(args.task, gts, preds, args.score_threshold)
    res["model"] = predictor.model_version
    res["backend"] = predictor.backend.name  # what was judged: `auto` resolves per machine
    for k, v in res.items():
        if k not in ("confusion",):
            print(f"{k}: {_fmt(v)}")
    if "confusion" in res:
        print("confusion (rows: true grade):")
        for row in res["confusion"]:
            print("  " + " ".join(f"{x:5.2f}" for x in row))
    if args.json:
        print(json.dumps(_clean(res)))
    return 0


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return str(v)


def _clean(v):
    """JSON has no NaN: write null for a metric that is undefined (a class with no ground truth)."""
    if isinstance(v, float) and np.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v
