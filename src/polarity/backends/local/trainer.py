"""The local backend: a single-process on-policy RLVR trainer (CPU or one CUDA GPU).

One loop a reader can hold in their head, per step:
sample G responses per prompt -> score the final answers with math-verify -> rewards and token advantages from
``polarity.algorithms`` (the registry's recipe) -> mini-batch updates with the old policy's
log-probs fixed -> log one metrics row -> checkpoint every ``save_every`` steps.

Restart safety: checkpoints and the live metrics log live in ``state_dir`` (not a Snakemake
output, so a failed or re-run job never deletes them). On start the newest checkpoint is
loaded; metrics rows past it are dropped and recomputed. Every random choice is seeded by
(seed, step), so a resumed run repeats exactly what the lost steps did.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ... import algorithms as alg
from ...files import atomic_write, read_jsonl, write_jsonl
from ...generation.sampling import Rollouts, sample
from ...model import load_policy, save_pretrained_atomic
from ...reward import score_batch_detailed
from ...seeds import hash_seed
from ...settings import TrainSettings

CHECKPOINT_PREFIX = "step_"


# ----------------------------------------------------------------------------- data stream


def prompt_at(position: int, n_prompts: int, seed: int) -> int:
    """The prompt index at stream ``position``: epochs of seeded permutations of the data."""
    epoch, offset = divmod(position, n_prompts)
    gen = torch.Generator().manual_seed(hash_seed(seed, "epoch", epoch))
    return int(torch.randperm(n_prompts, generator=gen)[offset])


# ----------------------------------------------------------------------------- rollouts


@dataclass
class Batch:
    """A scored rollout batch: G responses for each of its prompts, prompt-major."""

    rollouts: Rollouts
    group_ids: torch.Tensor  # [B] prompt position in the stream
    correct: torch.Tensor  # [B] bool

    def __len__(self) -> int:
        return len(self.correct)

    def select(self, keep: torch.Tensor) -> "Batch":
        r = self.rollouts
        idx = keep.nonzero().squeeze(-1)
        texts = [r.texts[i] for i in idx.tolist()]
        sub = Rollouts(r.prompt_ids[idx], r.prompt_mask[idx], r.response_ids[idx],
                       r.response_mask[idx], texts, r.truncated[idx])
        return Batch(sub, self.group_ids[idx], self.correct[idx])


def _pad_to(t: torch.Tensor, width: int, value: int, left: bool) -> torch.Tensor:
    pad = (width - t.shape[1], 0) if left else (0, width - t.shape[1])
    return torch.nn.functional.pad(t, pad, value=value)


def concat_batches(batches: list[Batch], pad_id: int) -> Batch:
    """Concatenate batches whose prompts/responses were padded to different widths."""
    if len(batches) == 1:
        return batches[0]
    pw = max(b.rollouts.prompt_ids.shape[1] for b in batches)
    rw = max(b.rollouts.response_ids.shape[1] for b in batches)
    r = [b.rollouts for b in batches]
    rollouts = Rollouts(
        torch.cat([_pad_to(x.prompt_ids, pw, pad_id, True) for x in r]),
        torch.cat([_pad_to(x.prompt_mask, pw, 0, True) for x in r]),
        torch.cat([_pad_to(x.response_ids, rw, pad_id, False) for x in r]),
        torch.cat([_pad_to(x.response_mask, rw, 0, False) for x in r]),
        [t for x in r for t in x.texts],
        torch.cat([x.truncated for x in r]),
    )
    return Batch(rollouts, torch.cat([b.group_ids for b in batches]),
                 torch.cat([b.correct for b in batches]))


def collect(model, tokenizer, data, recipe, settings: TrainSettings, seed: int, step: int, cursor: int,
            rollout_dir: Path | None = None):
    """Sample and score one step's batch; DAPO's dynamic sampling keeps only mixed groups,
    sampling more rounds until the batch is full or ``max_gen_rounds`` is reached.

    With ``rollout_dir`` every response sampled in the step is written to
    ``rollout_dir/<step>.jsonl`` (:func:`rollout_records`).

    Returns (batch, new cursor, stats over every response sampled this step, and the
    (old log-prob, entropy) of the batch when it is round 1's, to save a forward pass).
    """
    P, G = settings.prompts_per_step, settings.rollouts_per_prompt
    kept: list[Batch] = []
    n_kept, rounds = 0, 0
    all_correct, all_lengths, all_truncated, all_rewards, all_hacks = [], [], [], [], []
    dumped: list[dict] = []
    first_forward, entropy_mean = None, float("nan")
    groups_seen = groups_all_correct = groups_all_wrong = 0
    while True:
        rounds += 1
        positions = list(range(cursor, cursor + P))
        cursor += P
        rows = [prompt_at(p, len(data["prompt"]), seed) for p in positions]
        model.eval()
        rollouts = sample(
            model, tokenizer, [data["prompt"][i] for i in rows], G,
            temperature=settings.temperature, top_p=settings.top_p,
            max_new_tokens=settings.max_response_tokens, seed=hash_seed(seed, "rollout", step, rounds),
        )
        model.train()
        answers = [data["answer"][i] for i in rows for _ in range(G)]
        verdicts = score_batch_detailed(rollouts.texts, answers, extraction=settings.extraction,
                                        monitor=True)
        correct = torch.tensor([v.correct for v in verdicts], dtype=torch.bool)
        all_hacks.extend(bool(v.lenient_only) for v in verdicts)
        if rollout_dir is not None:
            dumped += rollout_records(data, rows, positions, G, rollouts.texts, answers,
                                      verdicts, step, rounds)
        group_ids = torch.tensor(positions).repeat_interleave(G)
        batch = Batch(rollouts, group_ids, correct)
        all_rewards.append(alg.sequence_rewards(recipe, correct, rollouts.lengths,
                                                settings.max_response_tokens))
        if rounds == 1:  # the policy's entropy on an unfiltered sample of its own responses
            with torch.no_grad():
                first_forward = policy_forward(model, rollouts, settings.temperature)[:2]
            m = rollouts.response_mask.float().to(first_forward[1].device)
            entropy_mean = float((first_forward[1] * m).sum() / m.sum().clamp(min=1))
        per_group = correct.view(P, G).float().mean(dim=1)
        groups_seen += P
        groups_all_correct += int((per_group == 1).sum())
        groups_all_wrong += int((per_group == 0).sum())
        all_correct.append(correct)
        all_lengths.append(rollouts.lengths)
        all_truncated.append(rollouts.truncated)
        if not recipe.dynamic_sampling:
            kept.append(batch)
            n_kept = P
            break
        mixed = alg.informative_groups(correct, group_ids)
        if mixed.any():
            kept.append(batch.select(mixed))
            n_kept += int(mixed.sum()) // G
        if n_kept >= P or rounds >= recipe.max_gen_rounds:
            break
    batch = concat_batches(kept, tokenizer.pad_token_id) if kept else None
    if batch is not None and n_kept > P:
        batch = batch.select(torch.arange(len(batch)) < P * G)
    stats = {
        "gen_rounds": rounds,
        "groups_sampled": groups_seen,
        "frac_groups_all_correct": groups_all_correct / groups_seen,
        "frac_groups_all_wrong": groups_all_wrong / groups_seen,
        "frac_groups_dropped": (
            1.0 - min(n_kept, P) / groups_seen if recipe.dynamic_sampling else 0.0
        ),
        "accuracy": float(torch.cat(all_correct).float().mean()),
        # the reward-hacking monitor: credited by math-verify's lenient extraction, not by ours
        "lenient_only_frac": sum(all_hacks) / len(all_hacks),
        "reward_mean": float(torch.cat(all_rewards).mean()),
        "entropy": entropy_mean,
        "response_length_mean": float(torch.cat(all_lengths).float().mean()),
        "response_length_max": int(torch.cat(all_lengths).max()),
        "response_clip_frac": float(torch.cat(all_truncated).float().mean()),
    }
    if rollout_dir is not None:  # atomically: a re-run step replaces its file
        Path(rollout_dir).mkdir(parents=True, exist_ok=True)
        write_metrics(Path(rollout_dir) / f"{step}.jsonl", dumped)
    # without dynamic sampling the trained batch is round 1: its old log-probs are computed
    reuse = first_forward if not recipe.dynamic_sampling else None
    return batch, cursor, stats, reuse


def rollout_records(data, rows, positions, G, texts, answers, verdicts, step, round_) -> list[dict]:
    """One record per response, in verl's rollout-dump names (``input``, ``output``, ``gts``,
    ``score``, ``step``) plus our reward's ``reason``, ``lenient_only`` and the prompt's place."""
    return [{"input": data["prompt"][rows[i // G]][-1]["content"], "output": text, "gts": truth,
             "score": v.score, "step": step, "reason": v.reason,
             "lenient_only": float(bool(v.lenient_only)), "prompt_position": positions[i // G],
             "round": round_}
            for i, (text, truth, v) in enumerate(zip(texts, answers, verdicts))]


# ----------------------------------------------------------------------------- forward


def policy_forward(model, r: Rollouts, temperature: float, need_hidden: bool = False):
    """Log-prob [B, T] and entropy [B, T] of the response tokens at the sampling temperature
    (as verl's actor computes them), and the last hidden states [B, T, H] if asked."""
    device = next(model.parameters()).device
    input_ids = torch.cat([r.prompt_ids, r.response_ids], dim=1).to(device)
    attention = torch.cat([r.prompt_mask, r.response_mask], dim=1).to(device)
    positions = (attention.cumsum(dim=-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                output_hidden_states=need_hidden)
    P = r.prompt_ids.shape[1]
    logits = out.logits[:, P - 1:-1].float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    targets = r.response_ids.to(device).unsqueeze(-1)
    log_prob = logp_all.gather(-1, targets).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(dim=-1)
    hidden = out.hidden_states[-1][:, P:] if need_hidden else None
    return log_prob, entropy, hidden


# ----------------------------------------------------------------------------- checkpoints


def latest_checkpoint(state_dir: Path) -> Path | None:
    ckpts = sorted((state_dir / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*.pt"))
    return ckpts[-1] if ckpts else None


def save_checkpoint(state_dir: Path, state: dict, keep: int) -> Path:
    """Atomic: write a temporary file, rename; keep only the newest ``keep`` checkpoints."""
    folder = state_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{CHECKPOINT_PREFIX}{state['completed_steps']:06d}.pt"

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: the archive's inner name is fixed, not tmp's
            torch.save(state, f)

    atomic_write(path, write)
    for old in sorted(folder.glob(f"{CHECKPOINT_PREFIX}*.pt"))[:-keep]:
        old.unlink()
    return path


def read_metrics(path: Path) -> list[dict]:
    """The metrics rows written so far (a line cut short by a kill ends them)."""
    return read_jsonl(path, missing_ok=True)


def write_metrics(path: Path, rows: list[dict]) -> None:
    """JSON lines, atomically (a temporary file, then rename)."""
    write_jsonl(rows, path)


def append_metrics(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------- the loop


def load_prompts(data_path) -> dict[str, list]:
    frame = pd.read_parquet(data_path)
    return {
        "prompt": [[dict(m) for m in p] for p in frame["prompt"]],
        "answer": [str(rm["ground_truth"]) for rm in frame["reward_model"]],
    }


def train(
    *, model_path, data_path, algorithm: str, params: dict | None, settings: TrainSettings,
    seed: int, final_dir, metrics_path, state_dir, log=print,
) -> list[dict]:
    """Run (or resume) one RL training run; writes ``final_dir`` (HF) and ``metrics_path``."""
    state_dir, final_dir, metrics_path = Path(state_dir), Path(final_dir), Path(metrics_path)
    state_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, settings.threads))
    recipe = alg.resolve(algorithm, params)
    if recipe.objective not in ("ppo_clip", "popo"):
        raise ValueError(f"{algorithm}: objective {recipe.objective} needs the verl backend")
    alg.check_overlong_buffer(algorithm, recipe, settings.max_response_tokens)
    data = load_prompts(data_path)
    device = settings.device
    model, tokenizer = load_policy(model_path, device)
    model.train()
    popo = PopoParts(model, recipe, seed) if recipe.objective == "popo" else None
    params_to_train = list(model.parameters()) + (list(popo.predictor.parameters()) if popo else [])
    optim = torch.optim.AdamW(params_to_train, lr=settings.lr, weight_decay=settings.weight_decay)
    reference = copy.deepcopy(model).eval() if settings.kl_coef > 0 else None

    completed, cursor = 0, 0
    live_metrics = state_dir / "metrics.jsonl"
    ckpt = latest_checkpoint(state_dir)
    if ckpt is not None:
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optimizer"])
        if popo:
            popo.load_state_dict(state["popo"])
        if reference is not None:
            reference.load_state_dict(state["reference"])
        completed, cursor = state["completed_steps"], state["cursor"]
        log(f"resuming {algorithm} seed {seed} from {ckpt.name}: {completed} steps done")
    rows = [r for r in read_metrics(live_metrics) if r["step"] < completed]
    write_metrics(live_metrics, rows)

    for step in range(completed, settings.steps):
        t0 = time.time()
        batch, cursor, gen_stats, old = collect(
            model, tokenizer, data, recipe, settings, seed, step, cursor,
            rollout_dir=state_dir / "rollouts" if settings.dump_rollouts else None)
        update_stats = update(model, optim, batch, recipe, settings, step, seed, popo, reference,
                              old)
        row = {"step": step, "algorithm": algorithm, "seed": seed, **gen_stats, **update_stats,
               "lr": optim.param_groups[0]["lr"]}
        append_metrics(live_metrics, row)
        # wall time is kept apart: metrics.jsonl depends on the config and seed only
        seconds = round(time.time() - t0, 3)
        append_metrics(state_dir / "timing.jsonl", {"step": step, "step_seconds": seconds})
        log(f"step {step}: accuracy {row['accuracy']:.3f} entropy {row['entropy']:.3f} "
            f"pg_loss {row['pg_loss']:.4f} ({seconds:.1f}s)")
        done = step + 1
        if done % settings.save_every == 0 or done == settings.steps:
            state = {"completed_steps": done, "cursor": cursor, "model": model.state_dict(),
                     "optimizer": optim.state_dict(), "algorithm": algorithm, "seed": seed}
            if popo:
                state["popo"] = popo.state_dict()
            if reference is not None:
                state["reference"] = reference.state_dict()
            save_checkpoint(state_dir, state, settings.keep_checkpoints)

    save_pretrained_atomic(model, tokenizer, final_dir)
    rows = read_metrics(live_metrics)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    write_metrics(metrics_path, rows)
    return rows


def update(model, optim, batch, recipe, settings: TrainSettings, step: int, seed: int, popo,
           reference, old=None) -> dict:
    """Advantages once for the rollout batch, then one optimizer step per mini-batch."""
    empty = {"n_positive": 0, "n_negative": 0, "frac_positive": float("nan"),
             "frac_negative": float("nan"), "pg_loss": float("nan"), "clip_frac": float("nan"),
             "dual_clip_frac": float("nan"), "grad_norm": float("nan"),
             "optimizer_steps": 0}
    if recipe.token_shaping == "a3po":  # the scales follow the global step even with no batch
        main = alg.a3po_selections(recipe)[:2]
        empty.update({"a3po/s_pos": alg.decayed_scale(main[0].rho, main[0].alpha, step),
                      "a3po/s_neg": alg.decayed_scale(main[1].rho, main[1].alpha, step)})
    if batch is None or len(batch) == 0:
        return empty
    r, G = batch.rollouts, settings.rollouts_per_prompt
    with torch.no_grad():
        old_log_prob, entropy = old if old is not None else policy_forward(
            model, r, settings.temperature)[:2]
        ref_log_prob = (policy_forward(reference, r, settings.temperature)[0]
                        if reference is not None else None)
    mask = r.response_mask.float().to(old_log_prob.device)
    correct = batch.correct.to(old_log_prob.device)
    rewards = alg.sequence_rewards(recipe, correct, r.lengths.to(mask.device), settings.max_response_tokens)
    stats: dict = {}
    if recipe.objective == "popo":
        token_adv, loss_mask = None, mask * correct.unsqueeze(-1)
        weights = alg.popo_weights(alg.sequence_logprob_mean(old_log_prob, mask), batch.group_ids,
                                   correct, uniform=recipe.popo_uniform)
        stats["popo/weight_entropy"] = alg.popo.weight_entropy(weights, batch.group_ids)
        stats["popo/ema_tau"] = recipe.popo_tau
    else:
        token_adv, loss_mask, shaping = alg.token_advantages(
            recipe, rewards, correct, batch.group_ids, old_log_prob, mask, step, entropy=entropy)
        stats.update(shaping)
    trained = loss_mask.sum(-1) > 0
    n_pos, n_neg = int((trained & correct).sum()), int((trained & ~correct).sum())
    stats.update({
        "n_positive": n_pos, "n_negative": n_neg,
        "frac_positive": n_pos / max(n_pos + n_neg, 1), "frac_negative": n_neg / max(n_pos + n_neg, 1),
        "trained_reward_mean": float(rewards.mean()),
        "batch_responses": len(batch),
    })

    n_prompts = len(batch) // G
    order = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(hash_seed(seed, "mb", step)))
    losses, clip_fracs, dual_fracs, grad_norms, sims, optimizer_steps = [], [], [], [], [], 0
    for start in range(0, n_prompts, settings.mini_batch_prompts):
        prompts = order[start:start + settings.mini_batch_prompts]
        idx = (prompts.unsqueeze(-1) * G + torch.arange(G)).flatten()
        mb_mask = loss_mask[idx]
        if mb_mask.sum() == 0:
            continue  # nothing to learn here; an Adam step on zero grads would still move
        sel = torch.isin(torch.arange(len(batch)), idx)
        sub = batch.select(sel).rollouts
        log_prob, ent, hidden = policy_forward(model, sub, settings.temperature,
                                               need_hidden=popo is not None)
        if popo is None:
            loss, m = alg.ppo_clip_loss(
                log_prob, old_log_prob[sel], token_adv[sel], loss_mask[sel],
                eps_low=recipe.eps_low, eps_high=recipe.eps_high, clip_ratio_c=recipe.clip_ratio_c,
                log_ratio_clamp=recipe.log_ratio_clamp, agg_mode=recipe.loss_agg_mode,
                norm_len=settings.max_response_tokens)
            clip_fracs.append(m["clip_frac"])
            dual_fracs.append(m["dual_clip_frac"])
        else:
            loss, sim = popo.loss(log_prob, ent, hidden, sub, loss_mask[sel], mask[sel], weights[sel],
                                  settings)
            sims.append(sim)
        if settings.entropy_coef > 0:
            loss = loss - settings.entropy_coef * alg.aggregate(ent, loss_mask[sel], "token-mean")
        if reference is not None:
            diff = ref_log_prob[sel] - log_prob
            kl = torch.exp(diff) - diff - 1  # k3 estimator (verl's low_var_kl)
            loss = loss + settings.kl_coef * alg.aggregate(kl, loss_mask[sel], "token-mean")
        optim.zero_grad(set_to_none=True)
        loss.backward()
        grad_norms.append(float(torch.nn.utils.clip_grad_norm_(
            [p for g in optim.param_groups for p in g["params"]], settings.grad_clip)))
        optim.step()
        optimizer_steps += 1
        losses.append(loss.item())
        if popo is not None:
            popo.after_step(model)
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    stats.update({"pg_loss": mean(losses), "clip_frac": mean(clip_fracs),
                  "dual_clip_frac": mean(dual_fracs),
                  "grad_norm": mean(grad_norms), "optimizer_steps": optimizer_steps})
    if popo is not None:
        stats["popo/sim_loss"] = mean(sims)
    return stats


class PopoParts:
    """POPO's extra state: predictor h_phi and the EMA target copy of the policy."""

    def __init__(self, model, recipe, seed: int):
        self.recipe = recipe
        hidden = model.config.hidden_size
        torch.manual_seed(hash_seed(seed, "popo-predictor"))
        self.predictor = alg.Predictor(hidden, recipe.popo_predictor_width).to(
            next(model.parameters()).device)
        self.target = copy.deepcopy(model).eval()
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.noise = torch.Generator().manual_seed(hash_seed(seed, "popo-noise"))

    def loss(self, log_prob, entropy, hidden, rollouts, loss_mask, response_mask, weights, settings):
        """L = L_NLL + alpha * L_sim + beta * L_ent: NLL and similarity over the mini-batch's
        positives (``loss_mask``), the entropy over all its completion tokens (``response_mask``)."""
        nll = alg.popo_nll_loss(log_prob, loss_mask, weights)
        online = self.predictor(alg.mean_pool(hidden, loss_mask))
        with torch.no_grad():
            _, _, target_hidden = policy_forward(self.target, rollouts, settings.temperature, True)
            target = alg.mean_pool(target_hidden, loss_mask)
            target = target + self.recipe.popo_noise * torch.randn(
                target.shape, generator=self.noise).to(target.device)
        sim = alg.popo_similarity_loss(online, target, weights)
        ent = alg.popo_entropy(entropy, response_mask)
        total = alg.popo_objective(nll, sim, ent, self.recipe.popo_alpha, self.recipe.popo_beta)
        return total, float(sim.detach())

    def after_step(self, model) -> None:
        alg.ema_update(self.target, model, self.recipe.popo_tau)

    def state_dict(self) -> dict:
        return {"predictor": self.predictor.state_dict(), "target": self.target.state_dict(),
                "noise": self.noise.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.predictor.load_state_dict(state["predictor"])
        self.target.load_state_dict(state["target"])
        self.noise.set_state(state["noise"])
