"""Advantages and policy losses for every algorithm, and the one registry that names them.

Public API (stable): ``group_advantages``, ``a3po_shape``, ``ALGORITHMS``, ``get_algorithm``,
``resolve``; the building blocks below are what both backends call.
"""

from .a3po import a3po_select, a3po_shape, decayed_scale, default_selections, shape_with_selections
from .advantages import (
    group_advantages,
    informative_groups,
    overlong_penalty,
    polarity_keep,
    polarity_weights,
    reinforce_advantages,
)
from .losses import AGG_MODES, aggregate, ppo_clip_loss, ppo_clip_token_loss, token_entropy
from .popo import (
    Predictor,
    ema_update,
    mean_pool,
    popo_entropy,
    popo_nll_loss,
    popo_objective,
    popo_similarity_loss,
    popo_weights,
    sequence_logprob_mean,
)
from .registry import (
    ALGORITHMS,
    Algorithm,
    Recipe,
    check_overlong_buffer,
    check_popo_on_verl,
    get_algorithm,
    params_schema,
    resolve,
    sequence_advantages,
    sequence_rewards,
    token_advantages,
)

__all__ = [name for name in dir() if not name.startswith("_")]
