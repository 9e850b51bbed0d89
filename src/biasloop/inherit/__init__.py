"""The bias inheritance study (SPEC section 3): bias generation, mixing, downstream evaluation.

Modules, in the order data flows through them:

* (packaged names and word lists are shared resources: :mod:`biasloop.resources`);
* :mod:`~biasloop.inherit.templates`: the bias generation framework (framing × scope × visibility);
* :mod:`~biasloop.inherit.original`: the original data ``D_o``;
* :mod:`~biasloop.inherit.augment`, :mod:`~biasloop.inherit.pools`: the augmented data
  ``D_a`` written by the model, stored as pools; :mod:`~biasloop.inherit.overlap`
  keeps evaluation items out of the training text;
* :mod:`~biasloop.inherit.mixing`: mixing at bias ratio γ;
* :mod:`~biasloop.inherit.evaluations`: the downstream evaluations (a registry), with
  :mod:`~biasloop.inherit.items` choosing each one's fixed items;
* :mod:`~biasloop.inherit.scoring`, :mod:`~biasloop.inherit.measure`,
  :mod:`~biasloop.inherit.unit_metrics`: metric formulas and metric rows (the tests
  themselves are in :mod:`biasloop.metrics.stats`);
* :mod:`~biasloop.inherit.components`, :mod:`~biasloop.inherit.keys`,
  :mod:`~biasloop.inherit.checks`, :mod:`~biasloop.inherit.recipe`,
  :mod:`~biasloop.inherit.study`: what the config builds, what shared work depends
  on, the checks before a run, the run's steps, and the registered ``inheritance`` study;
* :mod:`~biasloop.inherit.units`, :mod:`~biasloop.inherit.plots`,
  :mod:`~biasloop.inherit.tables`: unit labels, figures and tables.
"""

from biasloop.inherit.mixing import augmented_count, mix, realized_ratio
from biasloop.inherit.templates import (
    CANONICAL_TYPES,
    BiasType,
    PromptComposer,
    builtin_type_names,
    combination_names,
    resolve_bias_type,
)

__all__ = [
    "CANONICAL_TYPES",
    "BiasType",
    "PromptComposer",
    "augmented_count",
    "builtin_type_names",
    "combination_names",
    "mix",
    "realized_ratio",
    "resolve_bias_type",
]
