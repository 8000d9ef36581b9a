"""The segmenter's class-balanced loss and crops around rare classes."""

from __future__ import annotations

import pytest
import torch

from terrasynth.models.recognition import Segmenter, SegmenterConfig
from terrasynth.train.supervised import (
    SupervisedTrainConfig,
    class_frequencies,
    median_frequency_weights,
    rare_crop_corners,
    train_segmenter,
)


def test_median_frequency_weights_by_hand():
    layouts = torch.tensor([[[0, 0, 0, 0, 0, 2, 2, 1]]])  # shares 5/8, 1/8, 2/8, class 3 absent
    frequencies = class_frequencies(layouts, 4)
    assert frequencies.tolist() == pytest.approx([5 / 8, 1 / 8, 2 / 8, 0])
    # median of the present shares is 2/8: weights 0.4, 2, 1, and 0 for the absent class
    assert median_frequency_weights(frequencies).tolist() == pytest.approx([0.4, 2.0, 1.0, 0.0])
    assert median_frequency_weights(frequencies, cap=1.5).tolist() == pytest.approx([0.4, 1.5, 1.0, 0.0])


def test_rare_crops_are_centred_on_the_rare_pixel():
    layouts = torch.zeros(3, 64, 64, dtype=torch.long)
    layouts[0, 50, 10] = 1
    layouts[1, 5, 60] = 1
    rare = torch.tensor([False, True])
    corners = rare_crop_corners(layouts, rare, 16, 1.0, torch.Generator().manual_seed(0))
    # centred where the image allows, clamped at the border
    assert corners[0] == (42, 2) and corners[1] == (0, 48)
    for (top, left), layout in zip(corners[:2], layouts):
        assert layout[top : top + 16, left : left + 16].sum() == 1
    # no rare pixel in image 2: a uniform crop inside the image
    assert 0 <= corners[2][0] <= 48 and 0 <= corners[2][1] <= 48


def test_balanced_training_runs_and_config_checks():
    images, layouts = torch.rand(4, 3, 64, 64), torch.zeros(4, 64, 64, dtype=torch.long)
    layouts[:, 20:24, 30:34] = 1
    model = Segmenter(SegmenterConfig(num_classes=2, decoder_channels=8, pretrained=False))
    config = SupervisedTrainConfig(steps=2, batch_size=2, crop=32, class_weighting="balanced", rare_crop_share=1.0)
    losses = train_segmenter(model, images, layouts, config)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    with pytest.raises(ValueError, match="class_weighting"):
        SupervisedTrainConfig(class_weighting="inverse")
    with pytest.raises(ValueError, match="rare_crop_share"):
        SupervisedTrainConfig(rare_crop_share=1.5)


def test_train_segmenter_refuses_a_rare_crop_share_over_one(tmp_path, capsys):
    from terrasynth.cli import main

    code = main(["train-segmenter", "--paired", str(tmp_path), "--out", str(tmp_path / "out"), "--rare-crops", "1.5"])
    assert code != 0 and "--rare-crops" in capsys.readouterr().err
