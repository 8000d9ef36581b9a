"""Boosted trees kept as arrays: the same logits as scikit-learn's model, through a safetensors round trip."""

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from terrasynth.detect.trees import BoostedTrees


def interaction_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels set by a feature's magnitude within a band of another: no linear model separates them, trees do."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = ((np.abs(x[:, 0]) > 0.7) & (x[:, 1] > -0.5)).astype(int)
    return x, y


def test_logits_match_scikit_learn_including_missing_values():
    x, y = interaction_data(3000, seed=0)
    x[::40, 2] = np.nan
    model = HistGradientBoostingClassifier(max_iter=40, max_depth=3, random_state=0).fit(x, y)
    trees = BoostedTrees.from_sklearn(model)
    test, _ = interaction_data(400, seed=1)
    test[::7, 2] = np.nan
    assert np.allclose(trees.decision(test), model.decision_function(test), atol=1e-12)


def test_trees_learn_an_interaction_and_survive_a_state_round_trip():
    x, y = interaction_data(3000, seed=2)
    trees = BoostedTrees.fit(x, y, max_iter=60, max_depth=2, min_samples_leaf=20)
    test_x, test_y = interaction_data(500, seed=3)
    assert np.mean((trees.decision(test_x) > 0) == test_y) > 0.9
    linear = LogisticRegression().fit(x, y)
    assert np.mean(linear.predict(test_x) == test_y) < 0.75
    state = trees.state("forensic_trees")
    assert all(v.dtype == np.float64 for v in state.values())
    again = BoostedTrees.from_state(state, "forensic_trees")
    assert np.array_equal(again.decision(test_x), trees.decision(test_x))


def test_incomplete_or_ragged_state_is_refused():
    x, y = interaction_data(500, seed=4)
    state = BoostedTrees.fit(x, y, max_iter=5, max_depth=2, min_samples_leaf=20).state("t")
    with pytest.raises(KeyError, match="value"):
        BoostedTrees.from_state({k: v for k, v in state.items() if k != "t.value"}, "t")
    ragged = {**state, "t.left": state["t.left"][:, :-1]}
    with pytest.raises(ValueError, match="shape"):
        BoostedTrees.from_state(ragged, "t")


def test_trees_that_point_outside_themselves_or_their_features_are_refused():
    x, y = interaction_data(500, seed=5)
    state = BoostedTrees.fit(x, y, max_iter=5, max_depth=2, min_samples_leaf=20).state("t")
    broken = {**state, "t.left": state["t.left"] + 99}
    with pytest.raises(ValueError, match="outside"):
        BoostedTrees.from_state(broken, "t")
    with pytest.raises(ValueError, match="reads feature"):
        BoostedTrees.from_state(state, "t", n_features=1)
    assert BoostedTrees.from_state(state, "t", n_features=5).decision(x[:3]).shape == (3,)
