"""Shallow gradient-boosted trees kept as plain arrays, so a detector that uses them is saved as safetensors and
loaded without unpickling anything.

Trained with scikit-learn's ``HistGradientBoostingClassifier`` (binary); :meth:`BoostedTrees.decision` gives the
same logits as its ``decision_function``.
"""

from __future__ import annotations

import numpy as np

# the fields of every node, each a trees × nodes array; integer fields are stored as float64 (exact below 2**53)
FIELDS = ("feature", "threshold", "left", "right", "leaf", "value", "missing_left")


class BoostedTrees:
    def __init__(self, arrays: dict[str, np.ndarray], baseline: float):
        shapes = {np.asarray(arrays[name]).shape for name in FIELDS}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"tree arrays must share one trees × nodes shape, got {sorted(shapes)}")
        self.feature = np.asarray(arrays["feature"]).astype(np.int64)
        self.threshold = np.asarray(arrays["threshold"], np.float64)
        self.left = np.asarray(arrays["left"]).astype(np.int64)
        self.right = np.asarray(arrays["right"]).astype(np.int64)
        self.leaf = np.asarray(arrays["leaf"]).astype(bool)
        self.value = np.asarray(arrays["value"], np.float64)
        self.missing_left = np.asarray(arrays["missing_left"]).astype(bool)
        self.baseline = float(baseline)
        nodes = self.feature.shape[1]
        inner = ~self.leaf
        children = np.concatenate([self.left[inner], self.right[inner]])
        if (self.feature < 0).any() or (children < 0).any() or (children >= nodes).any():
            raise ValueError("tree arrays point outside their trees: not a file terrasynth wrote")

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, seed: int = 0, **options) -> BoostedTrees:
        """Fit a binary classifier (``y`` 1 synthetic) with balanced class weights; ``options`` go to
        ``HistGradientBoostingClassifier``."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(**options, class_weight="balanced", random_state=seed)
        model.fit(x, y)
        return cls.from_sklearn(model)

    @classmethod
    def from_sklearn(cls, model) -> BoostedTrees:
        trees = [predictors[0].nodes for predictors in model._predictors]
        if any(len(predictors) != 1 for predictors in model._predictors):
            raise ValueError("only binary classifiers are supported")
        if any(nodes["is_categorical"].any() for nodes in trees):
            raise ValueError("categorical splits are not supported")
        width = max(len(nodes) for nodes in trees)
        arrays = {name: np.zeros((len(trees), width)) for name in FIELDS}
        arrays["leaf"][:] = 1.0  # padding nodes are never reached
        for t, nodes in enumerate(trees):
            n = len(nodes)
            arrays["feature"][t, :n] = nodes["feature_idx"]
            arrays["threshold"][t, :n] = nodes["num_threshold"]
            arrays["left"][t, :n] = nodes["left"]
            arrays["right"][t, :n] = nodes["right"]
            arrays["leaf"][t, :n] = nodes["is_leaf"]
            arrays["value"][t, :n] = nodes["value"]
            arrays["missing_left"][t, :n] = nodes["missing_go_to_left"]
        return cls(arrays, float(np.ravel(model._baseline_prediction)[0]))

    def decision(self, x: np.ndarray) -> np.ndarray:
        """The logit of ``synthetic`` for each row of ``x`` (rows × features)."""
        x = np.asarray(x, np.float64)
        n_trees = self.feature.shape[0]
        trees = np.arange(n_trees)[None, :]
        node = np.zeros((len(x), n_trees), np.int64)
        rows = np.arange(len(x))[:, None]
        for _ in range(self.feature.shape[1]):  # no path is longer than the number of nodes
            leaf = self.leaf[trees, node]
            if leaf.all():
                break
            values = x[rows, self.feature[trees, node]]
            go_left = np.where(np.isnan(values), self.missing_left[trees, node], values <= self.threshold[trees, node])
            step = np.where(go_left, self.left[trees, node], self.right[trees, node])
            node = np.where(leaf, node, step)
        return self.baseline + self.value[trees, node].sum(1)

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}.{name}": getattr(self, name).astype(np.float64) for name in FIELDS}
        out[f"{prefix}.baseline"] = np.array([self.baseline])
        return out

    @classmethod
    def from_state(cls, state: dict, prefix: str, n_features: int | None = None) -> BoostedTrees:
        """Trees from :meth:`state`'s arrays; with ``n_features``, trees that read a column beyond it are refused."""
        missing = [name for name in (*FIELDS, "baseline") if f"{prefix}.{name}" not in state]
        if missing:
            raise KeyError(f"{prefix}: {', '.join(missing)} missing")
        arrays = {name: np.asarray(state[f"{prefix}.{name}"]) for name in FIELDS}
        trees = cls(arrays, float(np.asarray(state[f"{prefix}.baseline"]).ravel()[0]))
        if n_features is not None and trees.feature.size and trees.feature.max() >= n_features:
            raise ValueError(f"{prefix} reads feature {trees.feature.max()}, but there are {n_features}")
        return trees
