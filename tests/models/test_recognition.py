"""Segmenter and classifier: shapes, learning on a trivially separable task, safetensors round trip."""

from __future__ import annotations

import pytest
import torch

from terrasynth.errors import InputError
from terrasynth.models.recognition import (
    Classifier,
    ClassifierConfig,
    Segmenter,
    SegmenterConfig,
    load_model,
    save_model,
)
from terrasynth.train.supervised import (
    SupervisedTrainConfig,
    classification_accuracy,
    segmentation_scores,
    train_classifier,
    train_segmenter,
)


def _two_class_tiles(n: int = 8, size: int = 32):
    """Left half red (class 1), right half green (class 0): colour decides the class."""
    images = torch.zeros(n, 3, size, size)
    layouts = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        cut = 8 + (i % 4) * 4
        images[i, 0, :, :cut] = 1.0
        images[i, 1, :, cut:] = 1.0
        layouts[i, :, :cut] = 1
    return images, layouts


def test_segmenter_output_matches_the_input_size():
    model = Segmenter(SegmenterConfig(num_classes=5, pretrained=False))
    assert model(torch.rand(2, 3, 64, 96)).shape == (2, 5, 64, 96)


def test_segmenter_learns_a_colour_rule():
    images, layouts = _two_class_tiles()
    model = Segmenter(SegmenterConfig(num_classes=2, decoder_channels=16))
    losses = train_segmenter(model, images, layouts, SupervisedTrainConfig(steps=40, batch_size=4, learning_rate=3e-3))
    assert losses[-1] < losses[0]
    assert segmentation_scores(model.predict(images), layouts, 2)["pixel_accuracy"] > 0.9


def test_segmentation_scores_on_known_values():
    target = torch.tensor([[0, 0, 1, 1]])
    predicted = torch.tensor([[0, 1, 1, 1]])
    scores = segmentation_scores(predicted, target, 3)
    assert scores["pixel_accuracy"] == pytest.approx(0.75)
    assert scores["iou_per_class"][:2] == pytest.approx([0.5, 2 / 3]) and scores["iou_per_class"][2] is None
    assert scores["miou"] == pytest.approx((0.5 + 2 / 3) / 2)


@pytest.mark.parametrize("backbone", ["effnet", "small_cnn"])
def test_classifier_learns_and_round_trips(tmp_path, backbone):
    images = torch.rand(12, 3, 64, 64) * 0.2
    labels = torch.arange(12) % 2
    images[labels == 1, 2] += 0.8  # class 1 is blue
    model = Classifier(ClassifierConfig(num_classes=2, backbone=backbone))
    train_classifier(
        model,
        images,
        labels,
        SupervisedTrainConfig(steps=30, batch_size=6, learning_rate=3e-3, backbone_learning_rate=1e-3),
    )
    assert classification_accuracy(model, images, labels) == 1.0
    loaded = load_model(save_model(model, tmp_path / backbone))
    assert isinstance(loaded, Classifier) and loaded.config == model.config
    assert torch.allclose(loaded(images), model.eval()(images), atol=1e-5)


def test_segmenter_round_trip_in_half_precision(tmp_path):
    model = Segmenter(SegmenterConfig(num_classes=3, pretrained=False)).eval()
    loaded = load_model(save_model(model, tmp_path / "seg", dtype=torch.float16))
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(loaded(x), model(x), atol=5e-2)


def test_a_folder_without_safetensors_is_refused(tmp_path):
    with pytest.raises(InputError, match="model.safetensors"):
        load_model(tmp_path)
