"""A leaning classifier and a relevance score, trained in memory on real labelled text.

:class:`LeaningJudge` fits, on reference texts labelled by group:

* a TF-IDF vectoriser (scikit-learn ``TfidfVectorizer``: lower-cased word unigrams
  and bigrams, English stop words removed, ``sublinear_tf``, L2-normalised rows);
* a logistic regression on those features (``lbfgs``, ``C`` configurable,
  ``class_weight="balanced"`` so the larger group gets no prior advantage).

Both are deterministic, so the same texts give the same judge. Nothing is written to
disk. Two scores come out:

* ``probabilities(texts)``: ``P(g | y)`` for every group; a text with no word in the
  vocabulary gets 0 for every group (it expresses no leaning);
* ``relevance(texts, g)``: ``min(1, cos(v(y), c_g) / s_g)``, where ``v`` is the TF-IDF
  vector, ``c_g`` the mean TF-IDF vector of group ``g``'s training texts and ``s_g`` the
  median cosine of those training texts to ``c_g``. A typical real text of ``g`` scores
  about 1; an off-topic or empty text 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class LeaningJudge:
    """TF-IDF + logistic regression over ``groups``, fit on ``texts`` with ``labels``."""

    def __init__(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        groups: Sequence[str],
        *,
        c: float = 1.0,
    ) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        self.groups = tuple(groups)
        missing = [g for g in self.groups if g not in set(labels)]
        if missing:
            raise ValueError(f"no training text for group {missing[0]!r}")
        keep = [i for i, label in enumerate(labels) if label in self.groups]
        texts = [texts[i] for i in keep]
        labels = [labels[i] for i in keep]
        self.vectorizer = TfidfVectorizer(
            lowercase=True, ngram_range=(1, 2), stop_words="english", sublinear_tf=True,
            min_df=1, dtype=np.float64,
        )
        features = self.vectorizer.fit_transform(texts)
        codes = np.array([self.groups.index(label) for label in labels])
        self.classifier = LogisticRegression(
            C=c, class_weight="balanced", max_iter=2000, solver="lbfgs", random_state=0
        )
        self.classifier.fit(features, codes)
        self._columns = [list(self.classifier.classes_).index(i) if i in self.classifier.classes_
                         else None for i in range(len(self.groups))]
        self.centroids: dict[str, np.ndarray] = {}
        self.scales: dict[str, float] = {}
        for index, group in enumerate(self.groups):
            rows = features[codes == index]
            centroid = np.asarray(rows.mean(axis=0)).ravel()
            self.centroids[group] = centroid
            cosines = self._cosines(rows, centroid)
            median = float(np.median(cosines)) if len(cosines) else 0.0
            self.scales[group] = median if median > 0 else 1.0

    @staticmethod
    def _cosines(rows: object, centroid: np.ndarray) -> np.ndarray:
        """Cosine of each (L2-normalised or zero) TF-IDF row to ``centroid``."""
        norm = float(np.linalg.norm(centroid))
        if norm == 0:
            return np.zeros(rows.shape[0])  # type: ignore[attr-defined]
        return np.asarray(rows @ centroid).ravel() / norm  # type: ignore[operator]

    def vectors(self, texts: Sequence[str]) -> object:
        return self.vectorizer.transform(list(texts))

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), len(groups))`` array of ``P(g | y)``; all-zero rows for texts
        without an in-vocabulary word."""
        if not texts:
            return np.zeros((0, len(self.groups)))
        features = self.vectors(texts)
        raw = self.classifier.predict_proba(features)
        out = np.zeros((len(texts), len(self.groups)))
        for index, column in enumerate(self._columns):
            if column is not None:
                out[:, index] = raw[:, column]
        empty = np.asarray(features.getnnz(axis=1) == 0).ravel()  # type: ignore[attr-defined]
        out[empty] = 0.0
        return out

    def predict(self, texts: Sequence[str]) -> list[str | None]:
        """The most probable group of each text; None without an in-vocabulary word or
        on an exact tie."""
        result: list[str | None] = []
        for row in self.probabilities(texts):
            best = float(row.max()) if len(row) else 0.0
            winners = [g for g, p in zip(self.groups, row) if p == best]
            result.append(winners[0] if best > 0 and len(winners) == 1 else None)
        return result

    def relevance(self, texts: Sequence[str], group: str) -> np.ndarray:
        """``min(1, cos(v(y), c_g) / s_g)`` for each text (see the module docstring)."""
        if not texts:
            return np.zeros(0)
        cosines = self._cosines(self.vectors(texts), self.centroids[group])
        return np.clip(cosines / self.scales[group], 0.0, 1.0)
