"""Distribution metrics as pure functions of feature arrays (N×D numpy or torch).

Each function checks that it has enough samples and raises :class:`~terrasynth.errors.InputError` naming the
minimum. Distances are computed in float64.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError


def _as_tensor(features, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features)
    tensor = tensor.detach().to(torch.float64).cpu()
    if tensor.dim() != 2:
        raise InputError(None, f"{name} features must be an N×D array, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise InputError(None, f"{name} features contain NaN or infinite values")
    return tensor


def require_count(count: int, minimum: int, metric: str, which: str = "images") -> None:
    """Raise an InputError naming the minimum if ``count`` is below it."""
    if count < minimum:
        raise InputError(
            None, f"{metric} needs at least {minimum} {which}, got {count}", f"give at least {minimum} {which}"
        )


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of N×D features."""
    x = _as_tensor(features, "input")
    require_count(len(x), 2, "a covariance estimate")
    mu = x.mean(0)
    centred = x - mu
    sigma = centred.T @ centred / (len(x) - 1)
    return mu.numpy(), sigma.numpy()


def _eigh(matrix: torch.Tensor, values_only: bool = False):
    """``torch.linalg.eigh`` (or ``eigvalsh``) of a symmetric PSD matrix. LAPACK's solver can fail to converge on
    a covariance of far fewer samples than features (many repeated zero eigenvalues, seen on some CPUs); then
    it is retried with a diagonal of 1e-12 × the mean variance added, which moves no eigenvalue by more than
    that."""
    solve = torch.linalg.eigvalsh if values_only else torch.linalg.eigh
    try:
        return solve(matrix)
    except torch.linalg.LinAlgError:
        jitter = 1e-12 * (float(matrix.diagonal().mean()) or 1.0)
        return solve(matrix + jitter * torch.eye(len(matrix), dtype=matrix.dtype))


def _trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> float:
    """tr √(Σ₁Σ₂) as Σ √λ of the symmetric PSD matrix √Σ₁ Σ₂ √Σ₁ (same eigenvalues as Σ₁Σ₂)."""
    values, vectors = _eigh(sigma1)
    root1 = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    middle = root1 @ sigma2 @ root1
    middle = (middle + middle.T) / 2
    return float(_eigh(middle, values_only=True).clamp(min=0).sqrt().sum())


def frechet_distance(real, fake) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017):
    ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 √(Σ₁Σ₂)).

    ``real`` and ``fake`` are N×D feature arrays or ``(mu, sigma)`` pairs. Called "FID" only when the features
    are the standard Inception-v3 pool3 features.
    """
    stats = []
    for value in (real, fake):
        if isinstance(value, tuple) and len(value) == 2:
            mu, sigma = (torch.as_tensor(np.asarray(v), dtype=torch.float64) for v in value)
        else:
            mu, sigma = (torch.as_tensor(v) for v in feature_statistics(value))
        stats.append((mu, sigma))
    (mu1, sigma1), (mu2, sigma2) = stats
    if mu1.shape != mu2.shape:
        raise InputError(None, f"feature dimensions differ: {tuple(mu1.shape)} vs {tuple(mu2.shape)}")
    distance = float((mu1 - mu2).pow(2).sum()) + float(sigma1.trace() + sigma2.trace())
    distance -= 2 * _trace_sqrt_product(sigma1, sigma2)
    return max(distance, 0.0)


def _polynomial_mmd(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(a, b) = (a·b / D + 1)³ (Bińkowski et al. 2018)."""
    dim = x.shape[1]
    kxx = (x @ x.T / dim + 1) ** 3
    kyy = (y @ y.T / dim + 1) ** 3
    kxy = (x @ y.T / dim + 1) ** 3
    m, n = len(x), len(y)
    term_x = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    term_y = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(term_x + term_y - 2 * kxy.mean())


def kid(real, fake, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict:
    """Kernel Inception Distance analogue (Bińkowski et al. 2018): unbiased polynomial-kernel MMD², averaged
    over ``subsets`` random subsets of ``min(subset_size, min(N_real, N_fake) // 2)`` samples from each set
    (clean-fid's 1000 for large sets; half the smaller set otherwise, so that the subsets differ).

    Returns ``{"mean", "std", "subsets", "subset_size"}``; the std is over subsets.
    """
    x, y = _as_tensor(real, "real"), _as_tensor(fake, "fake")
    require_count(min(len(x), len(y)), 2, "KID", "images in each set")
    # at most half of the smaller set, so that subsets differ and the std measures their spread
    size = min(subset_size, max(2, min(len(x), len(y)) // 2))
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        ix = torch.randperm(len(x), generator=generator)[:size]
        iy = torch.randperm(len(y), generator=generator)[:size]
        values.append(_polynomial_mmd(x[ix], y[iy]))
    array = np.asarray(values)
    return {"mean": float(array.mean()), "std": float(array.std()), "subsets": subsets, "subset_size": size}


def _pairwise(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, y)


def _kth_neighbour_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    distances = _pairwise(x, x)
    return distances.kthvalue(k + 1, dim=1).values  # +1: the point itself at distance 0


def precision_recall(real, fake, k: int = 3) -> dict:
    """Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls
    reaching each sample's k-th nearest neighbour; precision is the share of fake samples inside the real
    manifold, recall the share of real samples inside the fake manifold."""
    x, y = _as_tensor(real, "real"), _as_tensor(fake, "fake")
    require_count(min(len(x), len(y)), k + 1, f"precision/recall with k={k}", "images in each set")
    real_radii, fake_radii = _kth_neighbour_radii(x, k), _kth_neighbour_radii(y, k)
    cross = _pairwise(y, x)  # fake × real
    precision = (cross <= real_radii[None, :]).any(1).double().mean()
    recall = (cross.T <= fake_radii[None, :]).any(1).double().mean()
    return {"precision": float(precision), "recall": float(recall), "k": k}


def density_coverage(real, fake, k: int = 5) -> dict:
    """Density and coverage (Naeem et al. 2020), from k-NN balls around the real samples only.

    density = (1 / kM) Σⱼ Σᵢ 1[fakeⱼ ∈ B(realᵢ, rᵢ)] (≈ 1 for matching distributions, unbounded above);
    coverage = (1 / N) Σᵢ 1[some fake sample lies in B(realᵢ, rᵢ)] (in [0, 1]).
    """
    x, y = _as_tensor(real, "real"), _as_tensor(fake, "fake")
    require_count(len(x), k + 1, f"density/coverage with k={k}", "real images")
    require_count(len(y), 1, "density/coverage", "generated images")
    radii = _kth_neighbour_radii(x, k)
    inside = _pairwise(y, x) <= radii[None, :]  # fake × real
    density = inside.double().sum() / (k * len(y))
    coverage = inside.any(0).double().mean()
    return {"density": float(density), "coverage": float(coverage), "k": k}


def inception_score_analogue(probabilities, splits: int = 10) -> dict:
    """exp(E_x KL(p(y|x) ‖ p(y))) (Salimans et al. 2016) over class probabilities from the domain classifier
    (an analogue: the classes are scene types, not ImageNet's). Mean ± std over ``splits`` disjoint splits."""
    p = _as_tensor(probabilities, "probability")
    require_count(len(p), 2, "the Inception Score analogue")
    if (p < 0).any() or not torch.allclose(p.sum(1), torch.ones(len(p), dtype=p.dtype), atol=1e-4):
        raise InputError(None, "inception_score_analogue needs rows of class probabilities summing to 1")
    splits = max(1, min(splits, len(p) // 2))
    scores = []
    for chunk in torch.tensor_split(p, splits):
        marginal = chunk.mean(0, keepdim=True)
        kl = (chunk * (torch.log(chunk.clamp(min=1e-12)) - torch.log(marginal.clamp(min=1e-12)))).sum(1)
        scores.append(math.exp(float(kl.mean())))
    array = np.asarray(scores)
    return {"mean": float(array.mean()), "std": float(array.std()), "splits": splits}
