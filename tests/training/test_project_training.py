"""Fine-tuning from a project: the reviewed labels as shown, in memory, from the active or bundled model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from cellcounter.annotations import Boxes, Origin
from cellcounter.cli import main
from cellcounter.formats import write_labels
from cellcounter.project import Project
from cellcounter.project import workflows as wf
from tests.conftest import make_image
from tests.helpers import make_tiny_model
from training.project import project_run


def _reviewed_project(tmp_path):
    proj = Project.create(tmp_path / "p.ccproj", user="rev")
    for i in range(3):
        image_id = proj.add_image(make_image(tmp_path / f"im{i}.png", 96, 80, seed=i), "blood")
        ann = proj.load(image_id)
        ann.boxes = Boxes(np.array([[10, 10, 40, 40], [50, 20, 80, 60], [5, 50, 20, 70]], float), [0, 1, 2],
                          [0.9, 0.2, np.nan], [Origin.MODEL, Origin.MODEL, Origin.HUMAN])
        proj.save(image_id, ann, origin="model:m@1")
        if i < 2:
            wf.review_image(proj, image_id, "reviewed", min_score=0.5)
    return proj


def test_a_project_run_trains_on_exactly_the_reviewed_labels_from_the_default_model(tmp_path):
    with _reviewed_project(tmp_path) as proj:
        cfg, anns, ids = project_run(proj, "blood", epochs=1)
        assert cfg.init.endswith("blood-default")  # the Fine-tune panel's default: start from the bundled model
        assert cfg.rehearsal == 0.5  # which carries a sample of its training smears to rehearse
        # the epochs asked for are run, even at the dataclass default (10), not the recipe's (30)
        assert cfg.recipe_applied and cfg.recipe == "blood-detector" and cfg.epochs == 1
        assert project_run(proj, "blood", epochs=10)[0].epochs == 10
        proj.set_review(ids[0], "in_progress")  # a later change does not reach the frozen set
        assert len(ids) == 2 and [len(a.boxes) for a in anns] == [2, 2]
        assert all(0.2 not in a.boxes.scores for a in anns)  # the hidden box never reaches training


def test_project_train_cli_registers_a_version_with_its_parent_and_activates_it(tmp_path, capsys):
    parent = make_tiny_model("detector", tmp_path / "parent")
    with _reviewed_project(tmp_path) as proj:
        path = proj.path
    assert main(["project", "train", str(path), "--init", str(parent), "--epochs", "1", "--activate",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "training blood on 2 reviewed image(s)" in out and "is now the active blood model" in out
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["data"] == f"project:{path.resolve()}" and cfg["init"] == str(parent)
    with Project.open(path, readonly=True) as proj:
        (version,) = proj.registry.versions("blood")
        assert version.active and version.parent == str(parent) and len(version.training_data) == 2
        assert wf.default_model(proj, "blood") == version.file
    assert main(["project", "train", str(path), "--epochs", "0"]) == 2
    # the tiny parent's card records no training data: rehearsal is refused by name, before any training
    assert main(["project", "train", str(path), "--init", str(parent), "--rehearsal", "0.5"]) == 2
    assert "rehearsal is not possible" in capsys.readouterr().err
    assert main(["project", "train", str(path), "--rehearsal", "1.5"]) == 2
    # a folder to rehearse instead: a missing one is named before any training, and it needs a share
    missing = tmp_path / "old-labs"
    assert main(["project", "train", str(path), "--init", str(parent), "--rehearsal", "0.5",
                 "--rehearse-from", str(missing)]) == 2
    assert f"rehearsal data {missing} is not a folder" in capsys.readouterr().err
    assert main(["project", "train", str(path), "--init", str(parent), "--rehearse-from", str(tmp_path)]) == 2
    assert "no rehearsal share" in capsys.readouterr().err


def test_a_stopped_project_run_is_found_and_resumed_by_project_train_resume(tmp_path, capsys):
    from training import iter_training
    from training.project import stopped_runs

    parent = make_tiny_model("detector", tmp_path / "parent")
    with _reviewed_project(tmp_path) as proj:
        path = proj.path
        assert stopped_runs(proj) == []
        cfg, anns, _ = project_run(proj, "blood", epochs=1, init=str(parent))
        events = list(iter_training(cfg, should_stop=lambda: True, annotations=anns))
        assert events[-1].kind == "stopped"
        assert stopped_runs(proj, "blood") == [Path(cfg.out)] and stopped_runs(proj, "nuclei") == []
    assert main(["project", "train", str(path), "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"resuming blood in {cfg.out}" in out and "registered" in out
    with Project.open(path, readonly=True) as proj:
        (version,) = proj.registry.versions("blood")
        assert version.parent == str(parent) and len(version.training_data) == 2
        assert stopped_runs(proj) == []  # it wrote its model: nothing is left to resume
    assert main(["project", "train", str(path), "--resume"]) == 2
    assert "no stopped run to resume" in capsys.readouterr().err


def test_project_train_says_its_progress_in_words_and_ends_at_its_time_budget_with_a_model(tmp_path, capsys):
    """#38 point 6: silences of minutes, results printed as Python dicts, no way to stop at a time budget."""
    parent = make_tiny_model("detector", tmp_path / "parent")
    with _reviewed_project(tmp_path) as proj:
        path = proj.path
    assert main(["project", "train", str(path), "--init", str(parent), "--epochs", "50", "--time-budget", "0.0001",
                 "--trunk-lr", "0.1", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "the time budget of 0.0001 min is spent: ending at step 1" in out
    assert "step 1/50" in out and "registered blood-project@" in out and "{" not in out, out
    assert "on its validation images: map50" in out and "count error RBC" in out
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["trunk_lr"] == 0.1 and cfg["time_budget_min"] == 0.0001
    # #38 point 7: a project's run keeps its model in float16, not 295 MB of checkpoints
    assert not (tmp_path / "run" / "checkpoints").exists()
    import torch

    weights = torch.load(tmp_path / "run" / "model" / "model.pt", weights_only=True)
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float16}
    with Project.open(path, readonly=True) as proj:
        (version,) = proj.registry.versions("blood")
        assert len(version.training_data) == 2
    assert main(["project", "train", str(path), "--rehearsal", "0.95"]) == 2
    assert "between 0 and 0.9" in capsys.readouterr().err


def test_training_validation_and_the_app_predict_an_image_through_one_entry_point_and_agree(tmp_path):
    from cellcounter.annotations import ImageAnnotation
    from cellcounter.imageio import read_image
    from cellcounter.inference import Predictor
    from cellcounter.models.card import load_model
    from training.loop import evaluate_model

    model_dir = make_tiny_model("segmenter", tmp_path / "seg", task="nuclei", class_names=["nucleus"])
    image = make_image(tmp_path / "tile.png", 700, 600, seed=3)  # larger than the segmenter's tiles
    pixels = read_image(image)
    gt = ImageAnnotation(str(image), 700, 600, ("nucleus",), task="nuclei")
    model, card = load_model(model_dir)
    validation = evaluate_model(model, card, [lambda: (pixels, gt)], "cpu", 0.5)[1][1][0]
    with Project.create(tmp_path / "p.ccproj") as proj:  # the app's path: a job, predicted and stored
        image_id = proj.add_image(image, "nuclei")
        predictor = Predictor.load(model_dir, "torch", "cpu")
        (event,) = [e for e in wf.predict_jobs(predictor, wf.prediction_jobs(proj, [image_id]))
                    if isinstance(e, wf.Predicted)]
        wf.apply_prediction(proj, event.job, event.annotation, event.model_version)
        stored = proj.load(image_id)
    assert len(validation.masks) == len(stored.masks) > 0
    np.testing.assert_array_equal(validation.masks.label_image > 0, stored.masks.label_image > 0)


def test_a_second_fine_tune_starts_from_the_active_version_and_trains_on_every_reviewed_image(tmp_path, capsys):
    """#34 point 4: a correction session adds images a few at a time; each round's fine-tune starts from the
    active version and learns from all corrections so far, not only the newest (retraining on the new ones alone
    drifts)."""
    parent = make_tiny_model("detector", tmp_path / "parent")
    with _reviewed_project(tmp_path) as proj:
        path = proj.path
    assert main(["project", "train", str(path), "--init", str(parent), "--epochs", "1", "--activate", "--force",
                 "--out", str(tmp_path / "round1")]) == 0
    with Project.open(path) as proj:
        (first,) = proj.registry.versions("blood")
        wf.review_image(proj, 3, "reviewed", min_score=0.5)  # the session goes on: one more image corrected
    assert main(["project", "train", str(path), "--epochs", "1", "--out", str(tmp_path / "round2")]) == 0
    out = capsys.readouterr().out
    assert "training blood on 3 reviewed image(s)" in out and "verdict: " in out
    with Project.open(path, readonly=True) as proj:
        second = next(m for m in proj.registry.versions("blood") if m.name != first.name)
        assert second.parent == first.name and sorted(second.training_data) == [1, 2, 3]
    cfg = json.loads((tmp_path / "round2" / "config.json").read_text())
    assert cfg["init"] == first.file


def test_a_fine_tune_without_epochs_runs_steps_scaled_to_the_corrected_images(tmp_path):
    """#34 point 3: the panel's and CLI's default fine-tune is the task's plan, not the from-scratch recipe's
    epochs; the card's config records how its length was chosen."""
    from training.recipes import FINETUNE_STEPS, finetune_plan

    parent = make_tiny_model("detector", tmp_path / "parent")
    with _reviewed_project(tmp_path) as proj:
        cfg, anns, _ = project_run(proj, "blood", init=str(parent))
        per_image, low, high = FINETUNE_STEPS["blood"]
        assert len(anns) == 2 and cfg.max_steps == max(low, per_image * 2) and "steps per corrected image" in cfg.plan
        assert cfg.epochs * 1 >= cfg.max_steps  # one step an epoch (one training image): enough epochs to get there
        assert 1 <= cfg.eval_every_epochs < cfg.epochs
        old = project_run(proj, "blood", init=str(parent), finetune=False)[0]
        assert old.epochs == 10 and old.max_steps == 0 and old.plan == ""
        scratch = project_run(proj, "blood", init="none")[0]
        assert scratch.epochs == 10 and scratch.plan == ""
    many = finetune_plan("blood", 100, 4, 0.2)
    assert many["max_steps"] == high and many["epochs"] * 20 >= high  # 80 training images: 20 steps an epoch


def test_a_blood_fine_tune_rehearses_the_sample_its_start_model_carries_by_default(tmp_path):
    """#34: without rehearsal a fine-tune on a new lab forgot the labs its model knew; a user's machine has
    none of the model's training data, so the model folder carries a sample of it, and a blood fine-tune
    rehearses it unless told otherwise (a model with nothing to rehearse: none, no refusal)."""
    import shutil

    from training import iter_training

    parent = make_tiny_model("detector", tmp_path / "parent")  # its card records no training data
    with _reviewed_project(tmp_path) as proj:
        assert project_run(proj, "blood", init=str(parent), out=tmp_path / "r0")[0].rehearsal == 0.0
        carrying = tmp_path / "carrying"
        shutil.copytree(parent, carrying)
        sample = carrying / "rehearsal"
        (sample / "JPEGImages").mkdir(parents=True)
        for name in ("s0.jpg", "s1.jpg"):  # two smears of the old labs, every cell boxed
            shutil.copy(tmp_path / "im2.png", sample / "JPEGImages" / name)
        ann = proj.load(proj.images()[2].id)
        write_labels([dataclasses.replace(ann, image_path=str(sample / "JPEGImages" / n))
                      for n in ("s0.jpg", "s1.jpg")], sample, "voc")
        cfg, anns, _ = project_run(proj, "blood", epochs=1, init=str(carrying), out=tmp_path / "r1")
        assert cfg.rehearsal == 0.5  # the task's default, where there is something to rehearse
        assert project_run(proj, "blood", init=str(carrying), out=tmp_path / "r2", rehearsal=0.0)[0].rehearsal == 0
    events = list(iter_training(dataclasses.replace(cfg, max_steps=1), annotations=anns))
    assert events[-1].kind == "done"
    # one corrected image trains (the other is held back): as many rehearsed; no base check, and it says so
    start = next(e for e in events if e.kind == "start").message
    assert "1 image(s) rehearsed (carrying's rehearsal sample)" in start
    assert "no check of what the start model knew" in start
    card = json.loads((tmp_path / "r1" / "model" / "card.json").read_text())
    assert len({"s0.jpg", "s1.jpg"} & set(card["training"]["train_images"])) == 1


def test_the_bundled_blood_model_carries_a_rehearsal_sample_of_every_lab_it_learnt():
    from cellcounter.formats import read_labels
    from cellcounter.models.card import RESOURCES_MODELS
    from training.base import shipped_rehearsal

    folder = shipped_rehearsal("blood-default")
    assert folder == RESOURCES_MODELS / "blood-default" / "rehearsal"
    anns = read_labels(folder, None, ["RBC", "WBC", "Platelets"])
    labs = [Path(a.image_path).name.split("_")[0] for a in anns]
    assert len(anns) == 40 and {lab: labs.count(lab) for lab in set(labs)} == \
        {"BCCD": 10, "BCDD": 10, "PBC": 10, "Raabin-WBC": 10}
    classes = np.concatenate([a.boxes.classes for a in anns])
    assert all(Path(a.image_path).is_file() for a in anns) and set(classes.tolist()) == {0, 1, 2}
    assert (folder / "LICENSE.txt").is_file()  # TXL-PBC's MIT licence goes with its images
