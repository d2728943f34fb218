"""Advantages and policy losses for every algorithm, and the one registry that names them.

Public API (stable): ``group_advantages``, ``a3po_shape``, ``ALGORITHMS``, ``get_algorithm``,
``resolve``; the building blocks below are what both backends call.

The registry (names, recipes, the params schema) imports without torch, so building the
workflow's DAG never loads it; the tensor functions load their module on first use.
"""

from importlib import import_module

from .registry import (
    AGG_MODES,
    ALGORITHMS,
    Algorithm,
    Recipe,
    check_overlong_buffer,
    check_popo_on_verl,
    get_algorithm,
    params_schema,
    resolve,
)

# name -> the module (torch) that defines it
_TENSOR_API = {
    **dict.fromkeys(["a3po_select", "a3po_shape", "decayed_scale", "default_selections",
                     "shape_with_selections"], "a3po"),
    **dict.fromkeys(["group_advantages", "informative_groups", "overlong_penalty",
                     "polarity_keep", "polarity_weights", "reinforce_advantages"], "advantages"),
    **dict.fromkeys(["aggregate", "ppo_clip_loss", "ppo_clip_token_loss", "token_entropy"],
                    "losses"),
    **dict.fromkeys(["Predictor", "ema_update", "mean_pool", "popo_entropy", "popo_nll_loss",
                     "popo_objective", "popo_similarity_loss", "popo_weights",
                     "sequence_logprob_mean"], "popo"),
    **dict.fromkeys(["a3po_selections", "sequence_advantages", "sequence_rewards",
                     "token_advantages"], "pipeline"),
}

__all__ = ["AGG_MODES", "ALGORITHMS", "Algorithm", "Recipe", "check_overlong_buffer",
           "check_popo_on_verl", "get_algorithm", "params_schema", "resolve", *_TENSOR_API]


def __getattr__(name: str):
    if name in _TENSOR_API:
        value = getattr(import_module(f".{_TENSOR_API[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
