"""Prompt adherence: per-class accuracies and their ratio on a hand-computed example."""

from __future__ import annotations

import pytest
import torch

from terrasynth.evaluate.prompt_adherence import adherence_ratio, class_accuracies


def test_class_accuracies_and_ratio_by_hand():
    # real: class 0 3/4 right, class 1 2/2, class 2 absent
    real = class_accuracies(torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([0, 0, 0, 0, 1, 1]), 3)
    assert real["accuracy"] == pytest.approx(5 / 6) and real["per_class"] == [0.75, 1.0, None]
    # generated: class 0 1/2, class 1 0/2, class 2 1/1
    generated = class_accuracies(torch.tensor([0, 2, 0, 0, 2]), torch.tensor([0, 0, 1, 1, 2]), 3)
    assert generated["per_class"] == [0.5, 0.0, 1.0] and generated["n"] == 5
    # over the classes both hold (0 and 1): (0.5 + 0) / 2 ÷ (0.75 + 1) / 2
    assert adherence_ratio(generated, real) == pytest.approx(0.25 / 0.875)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        class_accuracies(torch.tensor([0, 1]), torch.tensor([0]), 2)
    none_right = class_accuracies(torch.tensor([1]), torch.tensor([0]), 2)
    with pytest.raises(ValueError, match="undefined"):
        adherence_ratio(none_right, none_right)
