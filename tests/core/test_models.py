"""Building, saving and loading models; loading never runs code from the file."""

from __future__ import annotations

import json
import pickle
import urllib.error

import pytest
import torch

from cellcounter.errors import CellCounterError, FormatError
from cellcounter.models import DetectorConfig, GraderConfig, ModelCard, SegmenterConfig, build_model, load_model
from cellcounter.models.build import FocalClassificationHead
from cellcounter.models.card import load_weights, resolve_model, save_model
from cellcounter.models.config import BLOOD_ANCHOR_SCALES, config_from_dict, config_to_dict, prior_bias
from cellcounter.models.pretrained import imagenet_state_dict, init_backbone_imagenet


def test_detector_settings_reach_the_torchvision_model():
    cfg = DetectorConfig(backbone="resnet18", focal_alpha=0.3, focal_gamma=1.5, prior_probability=0.02,
                         nms_thresh=0.4, topk_candidates=500, detections_per_img=77, score_thresh=0.1)
    m = build_model(cfg)
    head = m.head.classification_head
    assert isinstance(head, FocalClassificationHead) and (head.alpha, head.gamma) == (0.3, 1.5)
    assert torch.allclose(head.cls_logits.bias, torch.full_like(head.cls_logits.bias, prior_bias(0.02)))
    assert (m.nms_thresh, m.topk_candidates, m.detections_per_img, m.score_thresh) == (0.4, 500, 77, 0.1)
    # four scales (with the extra small one) times three ratios per location
    assert m.anchor_generator.num_anchors_per_location() == [12] * 5
    assert BLOOD_ANCHOR_SCALES[0] == pytest.approx(2 ** (-1 / 3))


def test_segmenter_small_anchors_and_many_detections():
    m = build_model(SegmenterConfig(backbone="resnet18", detections_per_img=1000))
    assert m.roi_heads.detections_per_img == 1000
    assert [s[0] for s in m.rpn.anchor_generator.sizes] == [8, 16, 32, 64, 128]
    assert m.roi_heads.box_predictor.cls_score.out_features == 2  # background + nucleus


def test_segmenter_fpn_width_narrows_the_whole_model():
    """--fpn-channels reaches the FPN, the RPN and both heads (a narrower bundled model, not a silent no-op)."""
    wide = build_model(SegmenterConfig(backbone="resnet18", representation_size=256))
    narrow = build_model(SegmenterConfig(backbone="resnet18", representation_size=256, fpn_channels=128))
    assert narrow.backbone.out_channels == 128
    assert narrow.rpn.head.conv[0][0].in_channels == 128
    assert narrow.roi_heads.mask_head[0][0].out_channels == 128
    n_params = [sum(p.numel() for p in m.parameters()) for m in (wide, narrow)]
    assert n_params[1] < 0.8 * n_params[0]
    narrow.eval()
    with torch.no_grad():
        out = narrow([torch.rand(3, 96, 96)])
    assert set(out[0]) >= {"boxes", "masks", "scores"}


def test_focal_loss_follows_alpha_and_gamma():
    torch.manual_seed(0)
    losses = []
    for gamma in (0.0, 2.0):
        m = build_model(DetectorConfig(min_size=128, max_size=128, fpn_channels=32, focal_gamma=gamma)).train()
        torch.manual_seed(0)
        out = m([torch.rand(3, 128, 128)], [{"boxes": torch.tensor([[10.0, 10, 60, 60]]), "labels": torch.tensor([1])}])
        losses.append(float(out["classification"]))
    assert losses[1] < losses[0]  # gamma down-weights the many easy negatives


def test_save_load_round_trip_and_half_precision(tmp_path):
    cfg = GraderConfig(input_size=64)
    model = build_model(cfg)
    card = ModelCard("g", "retinopathy", [str(i) for i in range(5)], config_to_dict(cfg), training={"epochs": 3})
    save_model(model, card, tmp_path / "m", half=True)
    assert json.loads((tmp_path / "m" / "card.json").read_text())["weights_dtype"] == "float16"
    loaded, card2 = load_model(tmp_path / "m")
    assert card2.training == {"epochs": 3} and card2.config == cfg
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-2), k
    assert resolve_model(tmp_path / "m" / "model.pt") == tmp_path / "m"


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/cellcounter-pwned",))


def test_a_pickle_carrying_code_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    with open(path, "wb") as fh:
        pickle.dump({"weight": Evil()}, fh)
    with pytest.raises(FormatError, match="refused: the file holds code"):
        load_weights(path)
    import os

    assert not os.path.exists("/tmp/cellcounter-pwned")


def test_weights_that_do_not_fit_the_card(tmp_path):
    save_model(build_model(GraderConfig(backbone="resnet18")), ModelCard("g", "retinopathy", list("01234"),
               config_to_dict(GraderConfig(backbone="resnet18"))), tmp_path / "m")
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    card["architecture"]["num_classes"] = 3
    card["class_names"] = ["0", "1", "2"]
    (tmp_path / "m" / "card.json").write_text(json.dumps(card))
    with pytest.raises(FormatError, match="do not fit.*size mismatch for classifier"):
        load_model(tmp_path / "m")


def test_bad_cards_and_unknown_models():
    with pytest.raises(CellCounterError, match="unknown detector setting"):
        config_from_dict({"kind": "detector", "wings": 2})
    with pytest.raises(CellCounterError, match="not found"):
        resolve_model("no-such-model")


def test_offline_imagenet_init_says_what_to_do(monkeypatch, tmp_path):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(CellCounterError, match="offline.*--init-weights FILE"):
        imagenet_state_dict("resnet18")
    # a local file works without any network
    src = build_model(GraderConfig(backbone="resnet18"))
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    missing = init_backbone_imagenet(src, "resnet18", tmp_path / "r18.pth")
    assert missing == []
    assert torch.equal(src.features[0].weight, net.conv1.weight)
    det = build_model(DetectorConfig(backbone="resnet18"))
    init_backbone_imagenet(det, "resnet18", tmp_path / "r18.pth")
    assert torch.equal(det.backbone.body.conv1.weight, net.conv1.weight)
