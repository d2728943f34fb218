"""POPO inside verl's actor: the policy's hidden states, an EMA target sharded like the actor,
the predictor trained with it, and POPO's loss, all through verl's extension points.

verl's policy-loss registry gives a loss log-probs and advantages only; POPO also needs the
policy's last hidden states mean-pooled over completion tokens, a momentum (EMA) copy of the
policy and a predictor MLP. So POPO replaces the actor's loss function (the worker's
``set_loss_fn``, as verl's distillation does) and its FSDP engine gets a few methods more
(:class:`PopoEngine`, mixed into the class verl built, only in POPO runs):

* ``_build_model_optimizer``: after verl's own, the EMA target: the same model built and
  wrapped by verl's ``_build_module``/``_build_fsdp_module`` (so on the same mesh with the same
  shard placements: the EMA is a local update of each rank's shards) holding the actor's weights;
  the predictor (replicated on every rank, its gradient averaged over data-parallel ranks as DDP
  would) with an optimizer built by verl's ``build_optimizer`` from the actor's optimizer config
  (same kind, betas and weight decay; its learning rate follows the actor's scheduler);
* ``prepare_model_inputs/outputs``: in training micro-batches, the last hidden states of the
  policy and (no gradient) of the target on the same packed inputs; each row's completion
  tokens pooled over its positive rows, the predictor on the policy's, noise on the target's;
* ``optimizer_step``: gradients clipped over actor and predictor together (one norm, as the
  local backend clips its one optimizer), both stepped, then the target
  ``xi <- tau xi + (1 - tau) theta`` (``polarity.algorithms.ema_update``); the distance to the
  policy before and after is logged: after / before is tau exactly;
* ``save_checkpoint/load_checkpoint``: verl's checkpoint plus ``popo_rank<r>.pt`` in the same
  folder (this rank's target shards, the predictor, its optimizer, the noise generator).

The worker (``worker.py``) gives the loss what it cannot see in a micro-batch: each response's
bounded weight (softmax over its prompt's positives of the old policy's length-normalized
log-prob, over the whole step: prompts are gathered across data-parallel ranks) and the
mini-batch's totals (positive tokens, completion tokens, weight sum, summed over ranks), so
that micro-batches and ranks add up to the local backend's mini-batch loss (verl's own scaling:
each rank's loss times the data-parallel size, which FSDP averages). Every formula is
``polarity.algorithms.popo``'s, the local backend's.

Limits (checked): no Ulysses sequence parallelism, no fused kernels, no parameter offload.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from polarity.algorithms import popo as alg
from polarity.algorithms.registry import Recipe
from polarity.files import atomic_write
from polarity.seeds import hash_seed

WEIGHTS = "popo_weights"  # the batch field: each response's bounded weight (0 for negatives)
TOTALS = ("popo_positive_tokens", "popo_tokens", "popo_weight_sum")  # a mini-batch's, all ranks
TRAINING = "popo_training"  # non-tensor flag: this micro-batch trains (hidden states needed)
CHECKPOINT = "popo_rank{rank}.pt"


def popo_seed(seed: int, what: str, rank: int = 0) -> int:
    """The local backend's seed for ``what`` on rank 0; a different one on every other rank."""
    return hash_seed(seed, what) if rank == 0 else hash_seed(seed, what, rank)


# ---------------------------------------------------------------------------------------------
# Rows of verl's packed data


def padded(x: Tensor) -> Tensor:
    """A jagged [B, j] tensor as a zero-padded [B, max j] one (dense tensors unchanged)."""
    return torch.nested.to_padded_tensor(x, 0.0) if x.is_nested else x


def row_lengths(x: Tensor) -> Tensor:
    return x.offsets().diff() if x.is_nested else torch.full((x.shape[0],), x.shape[1])


def completion_states(flat: Tensor, prompt_lengths: Tensor, response_lengths: Tensor) -> Tensor:
    """Hidden states [B, R, H] at each row's completion tokens, zero-padded, from the packed
    [N, H] states of rows laid end to end (prompt then response). Unlike log-probs, which verl
    shifts left by one, the state of completion token j sits at its own position P + j."""
    ends = (prompt_lengths + response_lengths).cumsum(0)
    width = int(response_lengths.max()) if len(response_lengths) else 0
    out = flat.new_zeros(len(ends), width, flat.shape[-1])
    for i, (end, r) in enumerate(zip(ends.tolist(), response_lengths.tolist())):
        out[i, :r] = flat[end - r:end]
    return out


def flat_states(hidden: Tensor, sequence_lengths: Tensor, packed: bool) -> Tensor:
    """The model's last hidden states as packed [N, H]: the remove-padding layout [1, N + pad, H]
    (verl's static pad is a suffix), or right-padded rows [B, L, H]."""
    if packed:
        return hidden.squeeze(0)[: int(sequence_lengths.sum())]
    return torch.cat([hidden[i, :n] for i, n in enumerate(sequence_lengths.tolist())])


# ---------------------------------------------------------------------------------------------
# The worker's side: weights over the step, totals over the mini-batch


def step_weights(uids: list, seq_logprob: Tensor, correct: Tensor, recipe: Recipe,
                 gather=None, rank: int = 0) -> tuple[Tensor, float]:
    """Each of this rank's responses' POPO weight [B], computed over every rank's responses (a
    prompt's rollouts can sit on several ranks), and the step's mean weight entropy per prompt.
    ``gather``: this rank's triple -> every rank's, in rank order (None: one rank)."""
    mine = (list(uids), [float(x) for x in seq_logprob], [bool(c) for c in correct])
    parts = gather(mine) if gather is not None else [mine]
    scores = torch.tensor([s for p in parts for s in p[1]], dtype=torch.float32)
    positive = torch.tensor([c for p in parts for c in p[2]], dtype=torch.bool)
    all_uids = [u for p in parts for u in p[0]]
    weights = alg.popo_weights(scores, all_uids, positive, uniform=recipe.popo_uniform)
    start = sum(len(p[0]) for p in parts[:rank])
    return weights[start:start + len(mine[0])], alg.weight_entropy(weights, all_uids)


def minibatch_totals(weights: Tensor, response_mask: Tensor) -> Tensor:
    """[positive tokens, completion tokens, weight sum] of one rank's mini-batch (float64)."""
    tokens = padded(response_mask).to(torch.float64).sum(-1)
    w = weights.to(torch.float64).cpu()
    tokens = tokens.cpu()
    return torch.stack([tokens[w > 0].sum(), tokens.sum(), w.sum()])


# ---------------------------------------------------------------------------------------------
# The loss (verl's loss-function signature)


def popo_loss(model_output: dict, data, dp_group=None, *, recipe: Recipe):
    """One micro-batch's share of L = L_NLL + alpha L_sim - beta H, with the mini-batch's
    denominators (all ranks), times verl's data-parallel size (FSDP averages the ranks)."""
    from verl.utils import tensordict_utils as tu
    from verl.utils.metric import AggregationType, Metric
    from verl.workers.utils.padding import no_padding_2_padding

    log_prob = no_padding_2_padding(model_output["log_probs"], data)
    entropy = no_padding_2_padding(model_output["entropy"], data)
    mask = padded(data["response_mask"]).to(log_prob.dtype)
    weights = data[WEIGHTS].to(log_prob.device, log_prob.dtype)
    positive_tokens, tokens, weight_sum = (tu.get_non_tensor_data(data, k, None) for k in TOTALS)
    dp_size = data["dp_size"]
    positive_mask = mask * (weights > 0).unsqueeze(-1).to(mask.dtype)
    nll = alg.popo_nll_loss(log_prob, positive_mask, weights, positive_tokens=positive_tokens)
    sim = alg.popo_similarity_loss(model_output["popo_online"], model_output["popo_target"],
                                   weights, weight_sum=weight_sum)
    ent = alg.popo_entropy(entropy, mask, tokens=tokens)
    loss = alg.popo_objective(nll, sim, ent, recipe.popo_alpha, recipe.popo_beta) * dp_size

    def total(x: Tensor) -> Metric:  # micro-batches add up to the mini-batch's value
        return Metric(value=float(x.detach()) * dp_size, aggregation=AggregationType.SUM)

    nan = Metric(value=float("nan"), aggregation=AggregationType.MEAN)  # no clipping in POPO
    metrics = {"actor/pg_loss": total(loss / dp_size), "polarity/popo/sim_loss": total(sim),
               "polarity/popo/nll_loss": total(nll), "polarity/popo/entropy": total(ent),
               "polarity/clip_frac": nan, "polarity/dual_clip_frac": nan}
    return loss, metrics


# ---------------------------------------------------------------------------------------------
# The engine


class PopoEngine:
    """Mixed into verl's FSDP language-model engine (see the module docstring)."""

    popo_recipe: Recipe
    popo_seed: int
    popo_target = None
    popo_predictor = None
    popo_predictor_optimizer = None
    popo_noise: torch.Generator | None = None
    popo_skip_step = False  # the worker's: this mini-batch has no positive row anywhere
    popo_stats: dict

    # -- building
    def _build_model_optimizer(self):
        super()._build_model_optimizer()
        if not self.engine_config.forward_only:
            self._popo_build()

    def _popo_build(self) -> None:
        from verl.workers.config.optimizer import build_optimizer

        if self.use_ulysses_sp or self.engine_config.use_fused_kernels:
            raise ValueError("POPO on verl: Ulysses sequence parallelism and fused kernels are not "
                             "supported (they hide the hidden states POPO pools)")
        if self._is_offload_param:
            raise ValueError("POPO on verl: actor parameter offload is not supported (the EMA "
                             "target updates from the actor's shards after every step)")
        target = self._build_fsdp_module(self._build_module())
        with torch.no_grad():
            for t, o in zip(target.parameters(), self.module.parameters(), strict=True):
                t.copy_(o)
                t.requires_grad_(False)
        self.popo_target = target.eval()
        rank = self.get_data_parallel_rank()
        device = next(p for p in self.module.parameters()).device
        with torch.random.fork_rng(devices=[]):  # the local backend's initial predictor
            torch.manual_seed(popo_seed(self.popo_seed, "popo-predictor"))
            predictor = alg.Predictor(self.model_config.hf_config.hidden_size,
                                      self.popo_recipe.popo_predictor_width)
        self.popo_predictor = predictor.to(device)
        self.popo_predictor_optimizer = build_optimizer(self.popo_predictor.parameters(),
                                                        self.optimizer_config)
        self.popo_noise = torch.Generator().manual_seed(popo_seed(self.popo_seed, "popo-noise", rank))
        self.popo_stats = {}

    # -- forward
    def prepare_model_inputs(self, micro_batch):
        from verl.utils import tensordict_utils as tu

        model_inputs, output_args = super().prepare_model_inputs(micro_batch)
        if tu.get_non_tensor_data(micro_batch, TRAINING, False):
            output_args["popo_inputs"] = dict(model_inputs)
            model_inputs["output_hidden_states"] = True
        return model_inputs, output_args

    def prepare_model_outputs(self, output, output_args, micro_batch, logits_processor_func):
        model_output = super().prepare_model_outputs(output, output_args, micro_batch,
                                                     logits_processor_func)
        if "popo_inputs" in output_args:
            model_output.update(self._popo_features(output, output_args["popo_inputs"], micro_batch))
        return model_output

    def _popo_features(self, output, inputs: dict, micro_batch) -> dict[str, Tensor]:
        """The predictor on the policy's pooled states; the target's pooled states plus noise."""
        from verl.utils import tensordict_utils as tu

        packed = tu.get_non_tensor_data(micro_batch, "use_remove_padding", True)
        prompts, responses = row_lengths(micro_batch["prompts"]), row_lengths(micro_batch["responses"])
        lengths = prompts + responses

        def pooled(hidden: Tensor, mask: Tensor) -> Tensor:
            states = completion_states(flat_states(hidden, lengths, packed), prompts, responses)
            return alg.mean_pool(states, mask)

        weights = micro_batch[WEIGHTS]
        mask = padded(micro_batch["response_mask"]).float()
        positive_mask = (mask * (weights > 0).unsqueeze(-1).float()).to(output.hidden_states[-1].device)
        online = self.popo_predictor(pooled(output.hidden_states[-1], positive_mask))
        with torch.no_grad():
            target_out = self.popo_target(**inputs, output_hidden_states=True, use_cache=False,
                                          logits_to_keep=1)
            target = pooled(target_out.hidden_states[-1], positive_mask)
            noise = torch.randn(target.shape, generator=self.popo_noise)
            target = target + self.popo_recipe.popo_noise * noise.to(target.device, target.dtype)
        return {"popo_online": online, "popo_target": target}

    # -- the update
    def optimizer_zero_grad(self):
        super().optimizer_zero_grad()
        if self.popo_predictor_optimizer is not None:
            self.popo_predictor_optimizer.zero_grad()

    def optimizer_step(self):
        """Clip actor + predictor by one norm, step both, then move the target (EMA)."""
        from torch.distributed.tensor import DTensor
        from torch.nn.utils.clip_grad import _clip_grads_with_norm_, _get_total_norm

        if self.popo_skip_step:  # nothing to learn here; an Adam step on zero grads would move
            self.optimizer_zero_grad()
            self.popo_stats = {"polarity/popo/stepped": 0.0}
            return 0.0
        predictor = self.popo_average_predictor_grads()
        actor = [p for p in self.module.parameters() if p.grad is not None]
        actor_norm = _get_total_norm([p.grad for p in actor])
        if isinstance(actor_norm, DTensor):
            actor_norm = actor_norm.full_tensor()
        predictor_norm = _get_total_norm([p.grad for p in predictor]).to(actor_norm.device)
        grad_norm = torch.sqrt(actor_norm.float() ** 2 + predictor_norm.float() ** 2)
        if not torch.isfinite(grad_norm):
            print(f"WARN: grad_norm is not finite: {grad_norm}")
            self.optimizer_zero_grad()
            self.popo_stats = {"polarity/popo/stepped": 0.0}
            return grad_norm.item()
        clip = self.optimizer_config.clip_grad
        _clip_grads_with_norm_(actor, clip, grad_norm.to(actor_norm.dtype))
        _clip_grads_with_norm_(predictor, clip, grad_norm.to(predictor_norm.dtype))
        self.optimizer.step()
        for group_ in self.popo_predictor_optimizer.param_groups:  # the actor's scheduled lr
            group_["lr"] = self.optimizer.param_groups[0]["lr"]
        self.popo_predictor_optimizer.step()
        before = self._popo_gap()
        alg.ema_update(self.popo_target, self.module, self.popo_recipe.popo_tau)
        after = self._popo_gap()
        self.popo_stats = {"polarity/popo/stepped": 1.0, "polarity/popo/ema_tau": self.popo_recipe.popo_tau,
                           "polarity/popo/ema_gap_before": before,
                           "polarity/popo/ema_gap_after": after,
                           "polarity/popo/ema_gap_ratio": after / before if before > 0 else 1.0}
        return grad_norm.item()

    @torch.no_grad()
    def popo_average_predictor_grads(self) -> list:
        """Average the replicated predictor's gradient over data-parallel ranks (as DDP does);
        returns its parameters that have one."""
        group = self.get_data_parallel_group()
        size = torch.distributed.get_world_size(group)
        predictor = [p for p in self.popo_predictor.parameters() if p.grad is not None]
        for p in predictor:
            torch.distributed.all_reduce(p.grad, group=group)
            p.grad.div_(size)
        return predictor

    @torch.no_grad()
    def _popo_gap(self) -> float:
        """||theta - xi|| over every parameter of every rank."""
        from torch.distributed.tensor import DTensor

        local = lambda p: p.to_local() if isinstance(p, DTensor) else p  # noqa: E731
        sq = torch.zeros((), dtype=torch.float64)
        for t, o in zip(self.popo_target.parameters(), self.module.parameters(), strict=True):
            sq += (local(o).double() - local(t).double()).pow(2).sum().cpu()
        if any(isinstance(p, DTensor) for p in self.module.parameters()):
            from verl.utils.device import get_device_id

            sq = sq.to(get_device_id())
            torch.distributed.all_reduce(sq, group=self.get_data_parallel_group())
        return float(sq.sqrt())

    def train_batch(self, data, loss_function):
        outputs = super().train_batch(data, loss_function)
        if self.is_mp_src_rank_with_outputs():
            # one value a mini-batch, as a list: verl gathers every metric over ranks as a list
            outputs["metrics"].update({k: [v] for k, v in self.popo_stats.items()})
        return outputs

    # -- checkpoints
    def _popo_state(self) -> dict:
        from torch.distributed.tensor import DTensor

        local = lambda p: p.to_local() if isinstance(p, DTensor) else p  # noqa: E731
        return {"target": [local(p).detach().cpu().clone() for p in self.popo_target.parameters()],
                "predictor": self.popo_predictor.state_dict(),
                "predictor_optimizer": self.popo_predictor_optimizer.state_dict(),
                "noise": self.popo_noise.get_state()}

    def save_checkpoint(self, local_path, hdfs_path=None, global_step=0, max_ckpt_to_keep=None,
                        **kwargs):
        super().save_checkpoint(local_path, hdfs_path, global_step, max_ckpt_to_keep, **kwargs)
        path = Path(local_path) / CHECKPOINT.format(rank=torch.distributed.get_rank())
        state = self._popo_state()

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: the archive's inner name is fixed, not tmp's
                torch.save(state, f)

        atomic_write(path, write)
        torch.distributed.barrier()

    def load_checkpoint(self, local_path, hdfs_path=None, del_local_after_load=True, **kwargs):
        from torch.distributed.tensor import DTensor

        path = Path(local_path) / CHECKPOINT.format(rank=torch.distributed.get_rank())
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: a POPO run resumes from a POPO checkpoint (EMA target and predictor); "
                "this checkpoint folder has none")
        super().load_checkpoint(local_path, hdfs_path, del_local_after_load, **kwargs)
        state = torch.load(path, map_location="cpu", weights_only=False)
        with torch.no_grad():
            for p, saved in zip(self.popo_target.parameters(), state["target"], strict=True):
                (p.to_local() if isinstance(p, DTensor) else p).copy_(saved)
        self.popo_predictor.load_state_dict(state["predictor"])
        self.popo_predictor_optimizer.load_state_dict(state["predictor_optimizer"])
        self.popo_noise.set_state(state["noise"])


def install_engine(engine, recipe: Recipe, seed: int) -> None:
    """Make ``engine`` (verl's FSDP language-model engine, not yet initialized) a POPO engine."""
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    base = type(engine)
    if not isinstance(engine, FSDPEngineWithLMHead):
        raise TypeError(f"POPO on verl needs the FSDP language-model engine, got {base.__name__}")
    if not isinstance(engine, PopoEngine):
        engine.__class__ = type(f"Popo{base.__name__}", (PopoEngine, base), {})
    engine.popo_recipe, engine.popo_seed = recipe, int(seed)
