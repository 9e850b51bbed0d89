"""The bias inheritance study (SPEC section 3): bias generation, mixing, downstream evaluation.

Modules, in the order data flows through them:

* (packaged names and word lists are shared resources: :mod:`biasloop.resources`);
* :mod:`~biasloop.inherit.templates`: the bias generation framework (framing × scope × visibility);
* :mod:`~biasloop.inherit.original`: the original data ``D_o``;
* :mod:`~biasloop.inherit.augment`: the augmented data ``D_a`` written by the model;
* :mod:`~biasloop.inherit.mixing`: mixing at bias ratio γ;
* :mod:`~biasloop.inherit.evaluations`: the downstream evaluations (a registry);
* :mod:`~biasloop.inherit.scoring`, :mod:`~biasloop.inherit.significance`,
  :mod:`~biasloop.inherit.measure`: metric formulas, tests and metric rows;
* :mod:`~biasloop.inherit.study`: the registered ``inheritance`` study;
* :mod:`~biasloop.inherit.plots`, :mod:`~biasloop.inherit.tables`: figures and tables.
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
