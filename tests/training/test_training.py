"""Each recipe trains for a few steps on small real images; checkpoints load, resume reproduces, DDP runs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from cellcounter.inference import Predictor
from cellcounter.models import load_model
from tests.conftest import REPO, data_dir
from tests.helpers import disc_folder, make_tiny_model, tiny
from training import TrainConfig, apply_recipe, iter_training, run_training
from training.cli import build_parser, config_from_args, main
from training.config import TrainConfig as TC
from training.seeds import run_seeds


@pytest.mark.parametrize("task", ["blood", "nuclei", "leaves", "retinopathy"])
def test_each_recipe_trains_and_writes_a_model_the_core_loads(task, tmp_path):
    cfg = tiny(task, tmp_path, max_steps=2)
    events = list(iter_training(cfg))
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds.count("step") == 2 and kinds[-1] == "done"
    assert all(np.isfinite(list(e.losses.values())).all() for e in events if e.kind == "step")
    model_dir = tmp_path / task / "model"
    model, card = load_model(model_dir)
    assert card.task == task and card.training["recipe"] == cfg.recipe and card.training["command"].startswith(
        "cellcounter-train")
    assert card.pretrained.startswith("none")
    assert json.loads((tmp_path / task / "config.json").read_text())["recipe"] == cfg.recipe
    assert (tmp_path / task / "loss_lr.png").is_file()
    if task == "blood":  # its own score calibration, checked on validation images it was not fitted on
        cal = card.metrics["score_calibration"]
        assert cal["images"] == card.metrics["validation_images"] >= 10
        assert set(cal["per_class"]) == {"RBC", "WBC", "Platelets"}
        assert set(card.score_calibration) == {n for n, r in cal["per_class"].items() if r["kept"]}
    else:  # a grader has no scores to calibrate; the others validated on too few images to check one
        assert card.score_calibration == {}
    rng = np.random.default_rng(0)
    ann = Predictor.load(model_dir).predict((rng.random((96, 128, 3)) * 255).astype(np.uint8))
    assert ann.task == task


def _one_image_losses(cfg, steps):
    cfg = dataclasses.replace(cfg, max_steps=steps, epochs=steps, limit_images=1, batch_size=1, hflip=0, vflip=0,
                              brightness=0, contrast=0, saturation=0, hue=0, mosaic_p=0, gridmask_p=0,
                              dropblock_level="", val_split=0.0, val_ids="", scheduler="constant", warmup_iters=0,
                              random_crop=0, multiscale=(), rotate=0.0)
    return [e.losses for e in iter_training(cfg) if e.kind == "step"]


@pytest.mark.parametrize("task,lr", [("blood", 0.05), ("retinopathy", 1e-3)])
def test_loss_decreases_on_a_repeated_batch(task, lr, tmp_path):
    losses = _one_image_losses(tiny(task, tmp_path, lr=lr), 12)
    total = [sum(x.values()) for x in losses]
    assert np.mean(total[-3:]) < 0.9 * np.mean(total[:3]), total


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    # stopped inside the warmup, where a wrongly replayed schedule would compound the learning rate
    full = tiny("blood", tmp_path / "a", max_steps=5, mosaic_p=0.5, gridmask_p=0.5, dropblock_level="P3",
                epochs=3, limit_images=4, val_ids="", val_split=0.0, warmup_iters=4)
    run_training(full)
    a_state = torch.load(tmp_path / "a" / "blood" / "checkpoints" / "last.pt", weights_only=True)
    a = a_state["model"]

    part = dataclasses.replace(full, out=str(tmp_path / "b" / "blood"))
    seen = []
    last = run_training(part, should_stop=lambda: len(seen) >= 3 or seen.append(1) is not None and False)
    assert last.kind == "stopped"
    ckpt = torch.load(tmp_path / "b" / "blood" / "checkpoints" / "last.pt", weights_only=True)
    assert 0 < ckpt["step"] < 4
    done = run_training(dataclasses.replace(part, resume=True))
    assert done.kind == "done"
    b_state = torch.load(tmp_path / "b" / "blood" / "checkpoints" / "last.pt", weights_only=True)
    b = b_state["model"]
    lrs = lambda st: [round(h["lr"], 12) for h in json.loads(st["history"])]  # noqa: E731
    assert lrs(a_state) == lrs(b_state)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_heads_only_stage_freezes_the_backbone_then_trains_all(tmp_path):
    cfg = tiny("retinopathy", tmp_path, epochs=2, heads_only_epochs=1, val_split=0.0)
    events = [e for e in iter_training(cfg) if e.kind == "step"]
    assert events[0].message == "heads only" and events[-1].message == ""


def test_recipes_fill_only_what_the_user_did_not_set():
    cfg = apply_recipe(TC(task="blood", lr=0.5))
    assert cfg.recipe == "blood-detector" and cfg.lr == 0.5 and cfg.mosaic_p == 0.5 and cfg.scheduler == "sgdr"
    args = build_parser().parse_args(["--task", "blood", "--mosaic-p", "0.0", "--anchor-scales", "1,2"])
    cfg = config_from_args(args)
    assert cfg.mosaic_p == 0.0 and cfg.anchor_scales == (1.0, 2.0) and cfg.gridmask_p == 0.5


def test_every_config_field_is_a_cli_flag():
    flags = {a.dest for a in build_parser()._actions}
    fields = {f.name for f in dataclasses.fields(TC)} - {"recipe_applied", "plan"}
    assert fields <= flags


def test_cli_trains_and_prints_the_model(tmp_path, capsys):
    rc = main(["--task", "retinopathy", "--data", str(data_dir("idrid")), "--out", str(tmp_path / "r"),
               "--input-size", "64", "--limit-images", "4", "--epochs", "1", "--batch-size", "2",
               "--val-split", "0.05", "--warmup-iters", "1", "--export-onnx", "--quiet"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["model"].endswith("model") and "accuracy" in out["metrics"]
    assert (tmp_path / "r" / "model" / "model.onnx").is_file() and (tmp_path / "r" / "confusion.png").is_file()
    assert main(["--task", "retinopathy", "--data", "/nonexistent", "--out", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("flags, says", [(["--epochs", "-1"], "epochs must be at least 1"),
                                         (["--batch-size", "-4"], "batch_size must be at least 1"),
                                         (["--lr", "nan"], "lr must be above 0"),
                                         (["--hflip", "1.5"], "hflip must be at least 0.0 and at most 1.0"),
                                         (["--optimizer", "adam"], "optimizer must be one of sgd")])
def test_the_cli_refuses_settings_that_make_no_sense_and_writes_nothing(tmp_path, capsys, flags, says):
    rc = main(["--task", "leaves", "--data", "synthetic", "--out", str(tmp_path / "r"), "--quiet", *flags])
    assert rc == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err, err
    assert not (tmp_path / "r" / "model").exists()


def test_seeds_report_mean_and_std(tmp_path):
    cfg = tiny("retinopathy", tmp_path, max_steps=1)
    summary = run_seeds(cfg, [0, 1])
    assert set(summary["per_seed"]) == {0, 1} and "accuracy" in summary["mean"] and "accuracy" in summary["std"]
    assert (tmp_path / "retinopathy" / "seeds_summary.json").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_with_gloo(tmp_path):
    cfg = tiny("retinopathy", tmp_path, max_steps=2, val_split=0.0, limit_images=4, batch_size=1, lr=1e-2)
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    code = (
        "import sys, json, torch\n"
        "from training import TrainConfig, run_training\n"
        "cfg = TrainConfig.load(sys.argv[1])\n"
        "last = run_training(cfg)\n"
        "print('RESULT', last.kind, last.step)\n"
    )
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "GLOO_SOCKET_IFNAME": "lo"}
        procs.append(subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "cfg.json")], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "RESULT done 2" in outs[0][0]
    # with 4 images over 2 ranks and batch 1, each epoch is 2 steps: both ranks agree on the step count
    assert "RESULT" in outs[1][0]
    model, card = load_model(tmp_path / "retinopathy" / "model")
    assert card.training["steps"] == 2


def test_several_sources_split_by_id_and_large_images_weigh_by_area(tmp_path):
    """Nuclei from two folders in one run: ids pick the held-out images of each; a big tile is cropped often."""
    from PIL import Image

    from cellcounter.annotations import ImageAnnotation, InstanceMasks
    from cellcounter.formats import write_labels
    from training.data import load_split

    def folder(name, stems, size):
        d = tmp_path / name
        d.mkdir()
        for stem in stems:
            Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(d / f"{stem}.png")
            lab = np.zeros((size, size), np.int32)
            lab[4:12, 4:12] = 1
            ann = ImageAnnotation(image_path=str(d / f"{stem}.png"), width=size, height=size, task="nuclei",
                                  class_names=["nucleus"], masks=InstanceMasks(lab))
            write_labels([ann], d, "label-tiff")
        return d

    small = folder("small", ["s1", "s2", "s3"], 64)
    big = folder("big", ["b1", "b2"], 256)
    (tmp_path / "train.txt").write_text("s1\ns2\nb1\n")
    (tmp_path / "val.txt").write_text("s3\nb2\n")
    cfg = TrainConfig(task="nuclei", data=f"{small},{big}", train_ids=str(tmp_path / "train.txt"),
                      val_ids=str(tmp_path / "val.txt"), random_crop=64)
    split = load_split(cfg)
    names = [os.path.basename(n) for n in split.train_names]
    assert sorted(set(names)) == ["b1.png", "s1.png", "s2.png"]
    assert names.count("b1.png") == 16 and names.count("s1.png") == 1  # 256^2 / 64^2 crops
    assert sorted(os.path.basename(n) for n in split.val_names) == ["b2.png", "s3.png"]
    assert len(split.train) == len(names)


def test_fine_tune_keeps_the_parents_input_size_unless_given(tmp_path):
    """Training, validation and prediction see the size the card states (a fine-tune inherits it)."""

    parent = make_tiny_model("detector", tmp_path / "parent")  # card: 192 / 256
    inherited = apply_recipe(TrainConfig(task="blood", init=str(parent)), explicit={"task", "init"})
    assert (inherited.min_size, inherited.max_size) == (192, 256)
    given = apply_recipe(TrainConfig(task="blood", init=str(parent), min_size=96, max_size=128),
                         explicit={"task", "init", "min_size", "max_size"})
    assert (given.min_size, given.max_size) == (96, 128)
    from training.setup import build_for_training

    _, card, _, _ = build_for_training(given)
    assert (card.config.min_size, card.config.max_size) == (96, 128)
    scratch = apply_recipe(TrainConfig(task="blood"), explicit={"task"})
    assert scratch.min_size == 480


def test_the_unet_recipe_learns_to_split_touching_nuclei_and_predicts_through_the_core(tmp_path):
    """Training targets, loss, the exported card and the watershed agree: a small U-Net trained for a minute on
    discs finds them one by one, touching ones included."""
    from cellcounter.evaluate import evaluate_annotations
    from cellcounter.formats import read_labels
    from cellcounter.inference import predict_image

    data = disc_folder(tmp_path / "discs", 6)
    cfg = apply_recipe(TrainConfig(task="nuclei", recipe="nuclei-unet", data=str(data), out=str(tmp_path / "u"),
                                   unet_width=8, random_crop=64, batch_size=4, max_steps=150, epochs=200, lr=3e-3,
                                   val_split=0.0, stain_jitter=0.0, warmup_iters=10, checkpoint_every=0),
                       explicit={"task", "recipe", "data", "out", "unet_width", "random_crop", "batch_size",
                                 "max_steps", "epochs", "lr", "val_split", "stain_jitter", "warmup_iters",
                                 "checkpoint_every"})
    last = run_training(cfg)
    assert last.kind == "done"
    model, card = load_model(tmp_path / "u" / "model")
    assert card.config.kind == "unet" and card.config.width == 8
    predictor = Predictor.load(tmp_path / "u" / "model")
    test = read_labels(disc_folder(tmp_path / "test", 2, seed=7), None, ["nucleus"])
    preds = [predict_image(predictor, np.asarray(__import__("PIL.Image").Image.open(a.image_path)), a.image_path)
             for a in test]
    res = evaluate_annotations("nuclei", test, preds, 0.5)
    assert res["aji"] > 0.6 and res["mask_ap50"] > 0.8, res


def test_a_unet_is_fine_tuned_with_the_unet_recipe(tmp_path):
    """Fine-tuning the bundled U-Net (from the app or the CLI, no recipe named) trains it as a U-Net."""

    parent = make_tiny_model("unet", tmp_path / "parent")
    assert apply_recipe(TC(task="nuclei", init=str(parent)), explicit={"task", "init"}).recipe == "nuclei-unet"
    assert apply_recipe(TC(task="nuclei", architecture="unet"), explicit={"task", "architecture"}).recipe == \
        "nuclei-unet"
    assert apply_recipe(TC(task="nuclei"), explicit={"task"}).recipe == "nuclei-maskrcnn"
    data = disc_folder(tmp_path / "discs", 2)
    cfg = apply_recipe(TC(task="nuclei", init=str(parent), data=str(data), out=str(tmp_path / "ft"), max_steps=2,
                          random_crop=48, batch_size=2, val_split=0.5, checkpoint_every=0),
                       explicit={"task", "init", "data", "out", "max_steps", "random_crop", "batch_size", "val_split",
                                 "checkpoint_every"})
    events = list(iter_training(cfg))
    assert events[0].kind == "prepare" and "scoring the start model" in events[0].message  # said, then done:
    assert events[1].kind == "eval" and "aji" in events[1].metrics  # the parent scored first
    assert events[-1].kind == "done"
    _, card = load_model(tmp_path / "ft" / "model")
    assert card.config.kind == "unet" and card.parent == "tiny-nuclei@1" and card.version == "2"


def test_a_fine_tune_rehearses_its_start_models_data_and_scores_what_it_kept(tmp_path, monkeypatch):
    """The start model's card says what it learnt from: a fine-tune mixes a share of those training images in
    and scores the start model and itself on the start model's own validation images (never on its own)."""
    from training.base import base_sets

    base = disc_folder(tmp_path / "base", 6)
    explicit = {"task", "recipe", "data", "out", "unet_width", "random_crop", "batch_size", "max_steps", "val_split",
                "checkpoint_every", "init", "rehearsal", "base_check"}
    first = apply_recipe(TC(task="nuclei", recipe="nuclei-unet", data=str(base), out=str(tmp_path / "b"),
                            unet_width=8, random_crop=48, batch_size=2, max_steps=2, val_split=0.5,
                            checkpoint_every=0), explicit=explicit)
    assert run_training(first).kind == "done"
    sets = base_sets(str(tmp_path / "b" / "model"), "nuclei")
    assert len(sets.train) == 3 and len(sets.val) == 3  # the split the card records, rebuilt
    new = disc_folder(tmp_path / "new", 2, seed=5, prefix="n")
    cfg = apply_recipe(TC(task="nuclei", recipe="nuclei-unet", init=str(tmp_path / "b" / "model"), data=str(new),
                          out=str(tmp_path / "ft"), unet_width=8, random_crop=48, batch_size=2, max_steps=2,
                          val_split=0.5, checkpoint_every=0, rehearsal=0.5, base_check=2), explicit=explicit)
    events = list(iter_training(cfg))
    (base_eval,) = [e for e in events if e.kind == "base_eval"]
    assert "aji" in base_eval.metrics and "own validation images" in base_eval.message
    start = next(e for e in events if e.kind == "start")
    assert "1 image(s) rehearsed (nuclei-custom@1's training images)" in start.message
    _, card = load_model(tmp_path / "ft" / "model")
    kept = card.metrics["base_validation"]
    assert kept["images"] == 2 and kept["rehearsal"] == 1 and kept["before"]["aji"] == base_eval.metrics["aji"]
    assert "aji" in kept["after"]
    base_train = {os.path.basename(a.image_path) for a in sets.train}
    base_val = {os.path.basename(a.image_path) for a in sets.val}
    trained = set(card.training["train_images"])
    assert len(trained & base_train) == 1 and not trained & base_val  # rehearsed, and never its check images

    # without the start model's data on this machine: rehearsal is refused by name, the check is skipped
    (tmp_path / "moved").mkdir()
    (tmp_path / "base").rename(tmp_path / "moved" / "base")
    monkeypatch.delenv("CELLCOUNTER_DATA", raising=False)
    assert "is not on this machine" in base_sets(str(tmp_path / "b" / "model"), "nuclei")
    with pytest.raises(Exception, match="rehearsal is not possible"):
        list(iter_training(dataclasses.replace(cfg, out=str(tmp_path / "ft2"))))
    events = list(iter_training(dataclasses.replace(cfg, out=str(tmp_path / "ft3"), rehearsal=0.0)))
    assert not [e for e in events if e.kind == "base_eval"] and events[-1].kind == "done"
    assert "no check of what the start model knew" in next(e for e in events if e.kind == "start").message
    monkeypatch.setenv("CELLCOUNTER_DATA", str(tmp_path / "moved"))  # found again by its folder name
    assert not isinstance(base_sets(str(tmp_path / "b" / "model"), "nuclei"), str)


def test_a_fine_tune_rehearses_a_given_folder_instead_of_its_start_models_data(tmp_path):
    """#34: a start model's own labels may be incomplete (BCCD's red cells); a person can rehearse a completely
    labelled set of the old data instead, its images chosen by a split file, whether or not the start model's
    own data are on this machine."""
    from training.base import rehearsal_pool

    parent = make_tiny_model("unet", tmp_path / "parent")  # its card records no training data
    old = disc_folder(tmp_path / "old", 4, seed=3, prefix="o")
    (tmp_path / "ids.txt").write_text("o1\no2\n")
    new = disc_folder(tmp_path / "new", 2, seed=5, prefix="n")
    explicit = {"task", "recipe", "data", "out", "unet_width", "random_crop", "batch_size", "max_steps", "val_split",
                "checkpoint_every", "init", "rehearsal", "rehearsal_data", "rehearsal_ids"}
    cfg = apply_recipe(TC(task="nuclei", recipe="nuclei-unet", init=str(parent), data=str(new),
                          out=str(tmp_path / "ft"), unet_width=4, random_crop=48, batch_size=2, max_steps=2,
                          val_split=0.5, checkpoint_every=0, rehearsal=0.5, rehearsal_data=str(old),
                          rehearsal_ids=str(tmp_path / "ids.txt")), explicit=explicit)
    assert [os.path.basename(a.image_path) for a in rehearsal_pool(cfg)[1]] == ["o1.png", "o2.png"]
    events = list(iter_training(cfg))
    assert events[-1].kind == "done"
    assert "1 image(s) rehearsed (the folder old)" in next(e for e in events if e.kind == "start").message
    _, card = load_model(tmp_path / "ft" / "model")
    trained = set(card.training["train_images"])
    assert len(trained & {"o1.png", "o2.png"}) == 1 and not trained & {"o0.png", "o3.png"}
    assert card.training["config"]["rehearsal_data"] == str(old)  # the card says what was rehearsed
    with pytest.raises(Exception, match="rehearsal data .*missing is not a folder"):
        list(iter_training(dataclasses.replace(cfg, out=str(tmp_path / "ft2"),
                                               rehearsal_data=str(tmp_path / "missing"))))


def test_the_start_models_scores_are_computed_once_and_a_resumed_fine_tune_keeps_them(tmp_path, monkeypatch):
    """Scoring the start model is the same work on every fine-tune from it (#31: minutes before step 1): the
    second run takes the kept figures; a stopped and resumed run still has its "before" column, and a resume
    onto other images than the run started with is refused."""
    import training.loop as loop

    monkeypatch.setenv("CELLCOUNTER_CACHE", str(tmp_path / "cache"))
    base = disc_folder(tmp_path / "base", 4)
    explicit = {"task", "recipe", "data", "out", "unet_width", "random_crop", "batch_size", "max_steps", "val_split",
                "checkpoint_every", "init", "base_check"}
    first = apply_recipe(TC(task="nuclei", recipe="nuclei-unet", data=str(base), out=str(tmp_path / "b"),
                            unet_width=8, random_crop=48, batch_size=2, max_steps=1, val_split=0.5,
                            checkpoint_every=0), explicit=explicit)
    assert run_training(first).kind == "done"
    new = disc_folder(tmp_path / "new", 4, seed=5, prefix="n")
    cfg = apply_recipe(TC(task="nuclei", recipe="nuclei-unet", init=str(tmp_path / "b" / "model"), data=str(new),
                          out=str(tmp_path / "ft1"), unet_width=8, random_crop=48, batch_size=1, max_steps=3,
                          val_split=0.5, checkpoint_every=0, base_check=2), explicit=explicit)
    scored = []
    real = loop.evaluate_model
    monkeypatch.setattr(loop, "evaluate_model", lambda *a, **k: scored.append(1) or real(*a, **k))
    events = list(iter_training(cfg))
    phases = [e.message for e in events if e.kind == "prepare"]
    assert any("scoring the start model" in m for m in phases) and any("scoring the new model" in m for m in phases)
    first_before = next(e for e in events if e.kind == "eval" and e.step == 0).metrics
    first_base = next(e for e in events if e.kind == "base_eval").metrics
    n_first = len(scored)

    scored.clear()
    events = list(iter_training(dataclasses.replace(cfg, out=str(tmp_path / "ft2"))))
    before = next(e for e in events if e.kind == "eval" and e.step == 0)
    base_eval = next(e for e in events if e.kind == "base_eval")
    assert "kept from an earlier run" in before.message and "kept from an earlier run" in base_eval.message
    assert before.metrics == json.loads(json.dumps(first_before)) and base_eval.metrics["aji"] == first_base["aji"]
    assert len(scored) == n_first - 2  # only the new model is scored: 2 evaluations fewer

    # stopped after a step, resumed: the card still carries the parent's figures
    stop_cfg = dataclasses.replace(cfg, out=str(tmp_path / "ft3"))
    steps = []
    last = run_training(stop_cfg, should_stop=lambda: len(steps) >= 1,
                        on_event=lambda e: e.kind == "step" and steps.append(e))
    assert last.kind == "stopped"
    resumed = dataclasses.replace(stop_cfg, resume=True)
    assert run_training(resumed).kind == "done"
    _, card = load_model(tmp_path / "ft3" / "model")
    assert card.metrics["parent_validation"]["aji"] == first_before["aji"]
    assert card.metrics["base_validation"]["before"]["aji"] == first_base["aji"]

    # a resume onto other images is refused by name
    stop4 = dataclasses.replace(cfg, out=str(tmp_path / "ft4"))
    assert run_training(stop4, should_stop=lambda: True).kind == "stopped"
    disc_folder(tmp_path / "more", 1, seed=9, prefix="m")
    for f in (tmp_path / "more").iterdir():
        shutil.copy(f, new / f.name)
    with pytest.raises(Exception, match="not those this run started with"):
        run_training(dataclasses.replace(stop4, resume=True))


def test_the_trunk_can_learn_slower_than_the_heads(tmp_path):
    from training.setup import make_optimizer, trunk

    model, _ = load_model(make_tiny_model("unet", tmp_path / "m"))
    opt = make_optimizer(TC(optimizer="adamw", lr=1e-3, trunk_lr=0.1), model)
    heads, body = opt.param_groups
    assert heads["lr"] == 1e-3 and body["lr"] == pytest.approx(1e-4)
    assert {id(p) for p in body["params"]} == {id(p) for p in trunk(model).parameters()}
    assert len(heads["params"]) + len(body["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("scheduler", ["sgdr", "step"])
def test_a_short_fine_tune_leaves_its_warmup_and_reaches_its_learning_rate(scheduler):
    """#38 point 1: 40 steps under the recipe's 100-step warmup peaked at 0.004 of 0.01; the warmup now takes
    at most a tenth of the run and the cosine cycle fits in it."""
    import torch

    from training.config import TrainConfig
    from training.setup import make_scheduler

    cfg = TrainConfig(lr=0.01, warmup_iters=100, scheduler=scheduler, sgdr_t0=500)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = make_scheduler(cfg, opt, total_steps=40)
    lrs = []
    for _ in range(40):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert max(lrs) == pytest.approx(0.01, rel=0.05)
    assert lrs[3] == pytest.approx(0.01, rel=0.05)  # warm after four steps
    if scheduler == "sgdr":
        assert lrs[-1] < 0.002  # annealed by the end of the run, not mid-cycle


def test_the_checkpoint_kept_is_the_one_that_counts_best_not_the_one_with_the_best_map(tmp_path, monkeypatch):
    """#34 point 2: what a person reads is the count. A fine-tune whose mAP rises while its count error doubles
    (seen: RBC 2.5 -> 6.5 at mAP 0.88 -> 0.96) must keep the earlier weights; the card says when it chose."""
    import training.loop as loop
    from training.loop import selection_score

    sharp = {"map50": 0.96, "count_mae": {"RBC": 6.5, "WBC": 0.1}}
    counts = {"map50": 0.90, "count_mae": {"RBC": 2.5, "WBC": 0.1}}
    assert selection_score(counts, "boxes") > selection_score(sharp, "boxes")
    same = {"map50": 0.91, "count_mae": {"RBC": 2.5, "WBC": 0.1}}
    assert selection_score(same, "boxes") > selection_score(counts, "boxes")  # a tie goes to the better mAP
    assert selection_score({"qwk": 0.7}, "grade") > selection_score({"qwk": 0.6}, "grade")
    assert selection_score({"map50": 0.9}, "boxes") == -np.inf  # no count: never chosen over one that counts

    results = iter([counts, sharp])  # the first validation counts best, the second has the higher mAP
    real = loop.evaluate_model
    monkeypatch.setattr(loop, "evaluate_model", lambda *a, **k: (dict(next(results, sharp)), real(*a, **k)[1]))
    cfg = tiny("blood", tmp_path, epochs=2, calibrate=False)
    events = list(iter_training(cfg))
    evals = [e.step for e in events if e.kind == "eval"]
    assert len(evals) == 2
    card = json.loads((tmp_path / "blood" / "model" / "card.json").read_text())
    assert card["metrics"]["selected_at_step"] == evals[0] and card["metrics"]["validation"]["map50"] == 0.90


def test_the_training_command_line_builds_where_its_source_is_not_at_hand(monkeypatch):
    """The packaged full build's `cellcounter-app train` died in --help: its help text came from
    inspect.getsource, and a frozen app has no source file. Every option stays; the comments go."""
    import inspect

    def no_source(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    parser = build_parser()
    args = parser.parse_args(["--task", "blood", "--data", "x", "--max-steps", "3"])
    assert args.max_steps == 3 and "--trunk-lr" in parser.format_help()
