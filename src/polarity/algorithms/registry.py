"""The one registry of algorithms: names, hyperparameters, defaults, and the shared pipeline.

Every algorithm except POPO and PPO is a point in one family: a sequence-level advantage
(``grpo``, ``drgrpo`` or ``reinforce``), a polarity filter and polarity weights, optional
token-level shaping (A3PO), and the PPO-clip loss with an aggregation mode. An algorithm is
a named set of defaults for that family (a ``Recipe``) plus the names a user may override.
Both backends, the config schema and the report read this registry. It imports no torch
(Snakemake reads it to build the DAG); the tensor pipeline is ``pipeline.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

# How a loss averages token terms into a scalar (``losses.aggregate``).
AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def _p(default, help, *, minimum=None, maximum=None, choices=None, exclusive_min=False,
       off_or_above=None):
    """A Recipe field and its validation. ``off_or_above=(x, strict)``: 0 turns the feature
    off, any other value must be > x (strict) or >= x."""
    meta = {"help": help, "minimum": minimum, "maximum": maximum, "choices": choices,
            "exclusive_min": exclusive_min, "off_or_above": off_or_above}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Recipe:
    """Every knob of the shared RLVR pipeline. Algorithms are named defaults of it."""

    objective: str = _p("ppo_clip", "loss family", choices=("ppo_clip", "popo", "ppo_gae"))
    advantage: str = _p("grpo", "sequence advantage", choices=("grpo", "drgrpo", "reinforce"))
    polarity: str = _p("both", "which samples train", choices=("both", "positive", "negative"))
    w_pos: float = _p(1.0, "multiplier of positive samples' advantages", minimum=0.0)
    w_neg: float = _p(1.0, "multiplier of negative samples' advantages", minimum=0.0)
    eps_low: float = _p(0.2, "lower clip range", minimum=0.0, maximum=1.0)
    eps_high: float = _p(0.2, "upper clip range", minimum=0.0)
    clip_ratio_c: float = _p(3.0, "dual-clip bound c where A < 0 (verl's clip_ratio_c; 0 = off, else > 1)",
                             minimum=0.0, off_or_above=(1.0, True))
    log_ratio_clamp: float = _p(20.0, "clamp of log(pi/pi_old) to [-x, x] (verl: 20; 0 = off, else >= 1)",
                                minimum=0.0, off_or_above=(1.0, False))
    incorrect_reward: float = _p(0.0, "reward of an incorrect response (a correct one scores 1; DAPO: -1; "
                                 "unused by advantage: reinforce)", minimum=-1.0, maximum=0.0)
    loss_agg_mode: str = _p("token-mean", "loss aggregation", choices=AGG_MODES)
    dynamic_sampling: bool = _p(False, "drop all-correct/all-wrong groups and sample more")
    max_gen_rounds: int = _p(3, "generation rounds allowed to fill a dynamic-sampling batch", minimum=1)
    overlong_cache: int = _p(0, "DAPO overlong buffer L_cache in tokens (0 = off)", minimum=0)
    # A3PO token-level shaping (active when ``token_shaping == "a3po"``)
    token_shaping: str = _p("none", "token-level advantage shaping", choices=("none", "a3po"))
    rank_by: str = _p("prob", "A3PO token ranking", choices=("prob", "entropy"))
    p_pos: float = _p(0.2, "A3PO fraction of lowest-prob tokens of positives", minimum=0.0, maximum=1.0)
    p_neg: float = _p(0.2, "A3PO fraction of highest-prob tokens of negatives", minimum=0.0, maximum=1.0)
    rho_pos: float = _p(2.0, "A3PO initial scale, positives (< 1 damps)", minimum=0.0,
                        exclusive_min=True)
    rho_neg: float = _p(2.0, "A3PO initial scale, negatives (< 1 damps)", minimum=0.0,
                        exclusive_min=True)
    alpha_pos: float = _p(0.005, "A3PO scale decay per step, positives", minimum=0.0)
    alpha_neg: float = _p(0.005, "A3PO scale decay per step, negatives", minimum=0.0)
    p_pos_high: float = _p(0.0, "A3PO fraction of highest-prob tokens of positives", minimum=0.0, maximum=1.0)
    rho_pos_high: float = _p(1.0, "A3PO scale of positives' high-prob tokens", minimum=0.0,
                             exclusive_min=True)
    alpha_pos_high: float = _p(0.0, "decay of rho_pos_high", minimum=0.0)
    p_neg_low: float = _p(0.0, "A3PO fraction of lowest-prob tokens of negatives", minimum=0.0, maximum=1.0)
    rho_neg_low: float = _p(1.0, "A3PO scale of negatives' low-prob tokens", minimum=0.0,
                            exclusive_min=True)
    alpha_neg_low: float = _p(0.0, "decay of rho_neg_low", minimum=0.0)
    # POPO (objective == "popo")
    popo_alpha: float = _p(0.1, "POPO weight of the similarity loss", minimum=0.0)
    popo_beta: float = _p(0.01, "POPO weight of the entropy bonus", minimum=0.0)
    popo_tau: float = _p(0.995, "POPO EMA momentum of the target policy", minimum=0.0, maximum=1.0)
    popo_noise: float = _p(0.02, "POPO std of the Gaussian noise on target features", minimum=0.0)
    popo_uniform: bool = _p(False, "POPO ablation: uniform weights 1/|S+|")
    popo_predictor_width: int = _p(1024, "POPO predictor MLP hidden width (authors' code: 1024)",
                                   minimum=1)


RECIPE_FIELDS = {f.name: f for f in fields(Recipe)}
_A3PO_KNOBS = tuple(n for n in RECIPE_FIELDS if n.startswith(("p_", "rho_", "alpha_"))) + ("rank_by",)
_POPO_KNOBS = tuple(n for n in RECIPE_FIELDS if n.startswith("popo_"))
_PG_KNOBS = ("advantage", "polarity", "w_pos", "w_neg", "eps_low", "eps_high", "clip_ratio_c",
             "log_ratio_clamp", "incorrect_reward", "loss_agg_mode", "dynamic_sampling",
             "max_gen_rounds", "overlong_cache")


@dataclass(frozen=True)
class Algorithm:
    """A registered algorithm: its defaults, which knobs a study may set, and aliases."""

    name: str
    summary: str
    reference: str
    defaults: Recipe
    tunable: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict)  # study key -> Recipe field
    backends: tuple[str, ...] = ("local", "verl")

    def param_names(self) -> list[str]:
        hidden = set(self.aliases.values())
        return sorted([*self.aliases, *(n for n in self.tunable if n not in hidden)])

    def resolve(self, params: dict[str, Any] | None = None) -> Recipe:
        """Defaults updated by a study's ``algorithm_params[name]``; bad keys or values raise."""
        updates = {}
        for key, value in (params or {}).items():
            target = self.aliases.get(key, key)
            if key not in self.aliases and (key not in self.tunable or key in self.aliases.values()):
                raise ValueError(
                    f"algorithm_params.{self.name}.{key}: unknown parameter for {self.name}; "
                    f"known: {', '.join(self.param_names())}"
                )
            updates[target] = _check_value(f"algorithm_params.{self.name}.{key}", target, value)
        return replace(self.defaults, **updates)


def _check_value(where: str, name: str, value):
    """``value`` checked against the field's JSON schema (``param_spec``, the one the config is
    validated with) and cast to the field's type; NaN, which JSON schema bounds let through,
    is refused."""
    import jsonschema

    spec = param_spec(name)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(spec).iter_errors(value))
    meta, kind = RECIPE_FIELDS[name].metadata, type(RECIPE_FIELDS[name].default)
    if error is not None and error.validator == "anyOf":  # the off_or_above rule
        bound, strict = meta["off_or_above"]
        raise ValueError(f"{where}: must be 0 (off) or {'>' if strict else '>='} {bound}, got {value}")
    if error is not None:
        raise ValueError(f"{where}: {error.message}")
    if kind in (int, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: must be a finite number, got {value}")
        return kind(value)
    return value


def param_spec(name: str) -> dict[str, Any]:
    """The JSON schema of one Recipe field, from its metadata (``_p``)."""
    f = RECIPE_FIELDS[name]
    meta, kind = f.metadata, type(f.default)
    spec: dict[str, Any] = {"description": meta["help"], "type": _JSON_TYPES[kind]}
    if meta["choices"]:
        spec["enum"] = list(meta["choices"])
    if meta["minimum"] is not None:
        spec["exclusiveMinimum" if meta["exclusive_min"] else "minimum"] = meta["minimum"]
    if meta["off_or_above"]:  # 0 (off) or above the bound
        bound, strict = meta["off_or_above"]
        spec["anyOf"] = [{"const": 0}, {"exclusiveMinimum" if strict else "minimum": bound}]
    if meta["maximum"] is not None:
        spec["maximum"] = meta["maximum"]
    return spec


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


# verl's math_dapo score: +1 / -1, plus the overlong penalty
_DAPO = Recipe(eps_low=0.2, eps_high=0.28, loss_agg_mode="token-mean", dynamic_sampling=True,
               overlong_cache=4096, incorrect_reward=-1.0)  # the paper's L_cache (L_max = 20480)
# RLVR-Decomposed's compute_policy_loss: no dual clip, no log-ratio clamp
_ZHU = Recipe(advantage="reinforce", loss_agg_mode="token-mean", clip_ratio_c=0.0,
              log_ratio_clamp=0.0)

ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in [
        Algorithm("grpo", "GRPO: group-normalized advantage, PPO-clip", "arXiv 2402.03300",
                  Recipe(loss_agg_mode="seq-mean-token-mean"), _PG_KNOBS),
        Algorithm("dr_grpo", "Dr.GRPO: group-centred advantage without std, constant-length norm",
                  "arXiv 2503.20783",
                  Recipe(advantage="drgrpo", loss_agg_mode="seq-mean-token-sum-norm"), _PG_KNOBS),
        Algorithm("dapo", "DAPO: clip-higher, token-mean, dynamic sampling, overlong shaping",
                  "arXiv 2503.14476", _DAPO, _PG_KNOBS),
        Algorithm("psr", "PSR: positive samples only, A = +1", "arXiv 2506.01347",
                  replace(_ZHU, polarity="positive"), _PG_KNOBS),
        Algorithm("nsr", "NSR: negative samples only, A = -1", "arXiv 2506.01347",
                  replace(_ZHU, polarity="negative"), _PG_KNOBS),
        Algorithm("w_reinforce", "W-REINFORCE: A = +lambda if correct, -1 if not", "arXiv 2506.01347",
                  replace(_ZHU, w_pos=0.1), _PG_KNOBS, aliases={"lambda": "w_pos"}),
        Algorithm("a3po", "A3PO: DAPO + asymmetric, decaying token-level advantage shaping",
                  "arXiv 2512.21625", replace(_DAPO, token_shaping="a3po"),
                  _PG_KNOBS + _A3PO_KNOBS),
        Algorithm("popo", "POPO: positive-only, bounded importance weights, siamese EMA target",
                  "arXiv 2605.06650", Recipe(objective="popo"), _POPO_KNOBS),
        Algorithm("ppo", "PPO: GAE with a learned critic (verl backend)", "arXiv 1707.06347",
                  Recipe(objective="ppo_gae", loss_agg_mode="token-mean"),
                  ("eps_low", "eps_high", "loss_agg_mode"), backends=("verl",)),
    ]
}


def get_algorithm(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}") from None


def resolve(name: str, params: dict[str, Any] | None = None) -> Recipe:
    """The Recipe of a registered algorithm with a study's overrides applied."""
    return get_algorithm(name).resolve(params)


def params_schema() -> dict:
    """JSON schema of ``algorithm_params``, generated from the registry (written into the config
    schema by ``scripts/write_schema.py``; a test checks it is current)."""
    props = {
        algo.name: {"type": "object", "additionalProperties": False,
                    "properties": {key: param_spec(algo.aliases.get(key, key))
                                   for key in algo.param_names()}}
        for algo in ALGORITHMS.values()
    }
    return {"type": "object", "additionalProperties": False, "default": {}, "properties": props}


def check_overlong_buffer(algorithm: str, recipe: Recipe, max_len: int, explicit: bool = True) -> None:
    """DAPO's buffer L_cache must be shorter than the response cap L_max, or every response is
    penalised; raises ValueError naming ``algorithm_params.<algorithm>.overlong_cache``."""
    if recipe.overlong_cache >= max_len:
        raise ValueError(
            f"algorithm_params.{algorithm}.overlong_cache: DAPO's overlong buffer "
            f"({recipe.overlong_cache} tokens{'' if explicit else ', the default'}) must be smaller "
            f"than train.max_response_tokens ({max_len}), or every response is penalised; "
            f"set algorithm_params.{algorithm}.overlong_cache (0 = off)")


def check_popo_on_verl(algorithm: str, recipe: Recipe, train: dict) -> None:
    """POPO on verl has no reference policy and its own entropy term (``popo_beta``): a KL or
    entropy coefficient would be ignored; raises ValueError naming ``train.<key>``."""
    if recipe.objective != "popo":
        return
    for key, why in (("kl_coef", "no reference policy and no KL term"),
                     ("entropy_coef", f"its own entropy term (algorithm_params.{algorithm}.popo_beta)")):
        if train.get(key, 0) > 0:
            raise ValueError(f"train.{key}: {algorithm} (POPO) on verl has {why}; set it to 0")
