"""Small deterministic judges the tasks score responses with.

* :mod:`biasloop.judges.answers` — parse the final number of a math response and
  check it against the answer (exact-match pass@1).
* :mod:`biasloop.judges.style` — length (concise/detailed) and formality
  (formal/casual) scorers in [0, 1].
* :mod:`biasloop.judges.leaning` — a TF-IDF + logistic-regression leaning classifier
  and a TF-IDF relevance score, trained in memory on real labelled text.

Every judge is deterministic: the same inputs give the same scores on every run.
"""

from biasloop.judges.answers import answers_match, exact_match, parse_final_number, parse_number
from biasloop.judges.style import (
    STYLE_GROUPS,
    casual_score,
    concise_score,
    detailed_score,
    formal_score,
    formality_counts,
    word_count,
)

__all__ = [
    "STYLE_GROUPS",
    "answers_match",
    "casual_score",
    "concise_score",
    "detailed_score",
    "exact_match",
    "formal_score",
    "formality_counts",
    "parse_final_number",
    "parse_number",
    "word_count",
]
