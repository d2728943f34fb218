"""One SGD step of every algorithm on a tiny policy: do positives rise and negatives fall?

The policy is a bigram table W [V, V] (logits of the next token given the previous one). Every
sample is built from its own token ids (a sample-specific first token, then fresh ids), so the
rows of W a sample reads are read by no other sample. The effect of one step is then exact:

- a token whose loss gradient pushes its log-prob up (A > 0 at ratio 1) rises strictly, one
  pushed down falls strictly (one row, one target: the step moves along e_y - softmax);
- a sample that the objective ignores (PSR's negatives, NSR's positives, POPO's negatives,
  the all-correct / all-wrong groups of GRPO-style advantages) reads rows whose gradient is
  exactly zero, so its log-probs are bit-for-bit unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from polarity.algorithms import (
    a3po_selections,
    a3po_select,
    popo_nll_loss,
    popo_weights,
    ppo_clip_loss,
    resolve,
    sequence_rewards,
    token_advantages,
)

# group, correct, response length
SAMPLES = [
    ("mixed-1", True, 3), ("mixed-1", True, 5), ("mixed-1", False, 4), ("mixed-1", False, 2),
    ("mixed-2", True, 6), ("mixed-2", False, 2), ("mixed-2", False, 3), ("mixed-2", False, 5),
    ("all-right", True, 4), ("all-right", True, 3),
    ("all-wrong", False, 2), ("all-wrong", False, 4),
]
GROUPS = [s[0] for s in SAMPLES]
CORRECT = torch.tensor([s[1] for s in SAMPLES])
LENGTHS = torch.tensor([s[2] for s in SAMPLES])
B, T = len(SAMPLES), int(LENGTHS.max())
MASK = torch.arange(T)[None, :] < LENGTHS[:, None]  # [B, T]
MIXED = torch.tensor([g.startswith("mixed") for g in GROUPS])
MAX_LEN = 20480  # the paper's L_max: the overlong penalty (from L_max - 4096) is never reached here


def _build_ids():
    """Context and target ids [B, T]; id 0 is padding; every sample owns its ids."""
    ctx = torch.zeros(B, T, dtype=torch.long)
    tgt = torch.zeros(B, T, dtype=torch.long)
    next_id = 1
    for i, length in enumerate(LENGTHS.tolist()):
        seq = list(range(next_id, next_id + length + 1))  # own first token, then L response tokens
        next_id += length + 1
        ctx[i, :length] = torch.tensor(seq[:-1])
        tgt[i, :length] = torch.tensor(seq[1:])
    return ctx, tgt, next_id


CTX, TGT, V = _build_ids()
W0 = torch.randn(V, V, generator=torch.Generator().manual_seed(0))


def log_probs(w: torch.Tensor) -> torch.Tensor:
    """log pi(y_t | y_{t-1}) [B, T], 0 on padding."""
    logp = torch.log_softmax(w[CTX], dim=-1).gather(-1, TGT.unsqueeze(-1)).squeeze(-1)
    return torch.where(MASK, logp, torch.zeros_like(logp))


def rows_of(sample_mask: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The rows of W read by the valid tokens of the given samples (optionally a token subset)."""
    sel = MASK & sample_mask.unsqueeze(-1)
    if token_mask is not None:
        sel = sel & token_mask
    return CTX[sel]


@dataclass
class Step:
    old: torch.Tensor  # [B, T] log-probs before the step
    new: torch.Tensor  # [B, T] after
    grad: torch.Tensor  # [V, V] gradient of the loss wrt W
    adv: torch.Tensor | None
    stats: dict

    @property
    def delta(self) -> torch.Tensor:
        return self.new - self.old


def sgd_step(name: str, params: dict | None = None, step: int = 0, lr: float = 1.0) -> Step:
    recipe = resolve(name, params)
    w = torch.nn.Parameter(W0.clone())
    logp = log_probs(w)
    old = logp.detach()
    adv, stats = None, {}
    if recipe.objective == "popo":
        seq_mean = old.sum(dim=-1) / LENGTHS  # length-normalized sequence log-prob, no gradient
        weights = popo_weights(seq_mean, GROUPS, CORRECT, uniform=recipe.popo_uniform)
        loss = popo_nll_loss(logp, MASK.float(), weights)
    else:
        rewards = sequence_rewards(recipe, CORRECT, LENGTHS, MAX_LEN)
        adv, loss_mask, _ = token_advantages(recipe, rewards, CORRECT, GROUPS, old, MASK.float(), step)
        loss, stats = ppo_clip_loss(logp, old, adv, loss_mask, eps_low=recipe.eps_low,
                                    eps_high=recipe.eps_high, agg_mode=recipe.loss_agg_mode)
    opt = torch.optim.SGD([w], lr=lr)
    opt.zero_grad()
    loss.backward()
    grad = w.grad.detach().clone()
    opt.step()
    return Step(old, log_probs(w.detach()), grad, adv, stats)


def rises(step: Step, samples: torch.Tensor) -> bool:
    sel = MASK & samples.unsqueeze(-1)
    assert sel.any()
    return bool((step.delta[sel] > 0).all())


def falls(step: Step, samples: torch.Tensor) -> bool:
    sel = MASK & samples.unsqueeze(-1)
    assert sel.any()
    return bool((step.delta[sel] < 0).all())


def unchanged(step: Step, samples: torch.Tensor) -> bool:
    """Bit-for-bit unchanged log-probs and exactly zero gradient on the rows these samples read."""
    rows = rows_of(samples)
    return torch.equal(step.new[samples], step.old[samples]) and torch.equal(
        step.grad[rows], torch.zeros_like(step.grad[rows]))


def test_design_every_sample_reads_its_own_rows():
    rows = [set(rows_of(torch.arange(B) == i).tolist()) for i in range(B)]
    for i in range(B):
        assert len(rows[i]) == int(LENGTHS[i])
        for j in range(i + 1, B):
            assert not rows[i] & rows[j]


# ---------------------------------------------------------------------------------------------
# group-relative baselines: only mixed groups train


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "dapo", "a3po"])
def test_group_relative_algorithms_push_positives_up_and_negatives_down(name):
    s = sgd_step(name)
    assert s.stats["clip_frac"] == 0.0  # first step: ratio 1 everywhere
    assert rises(s, CORRECT & MIXED)
    assert falls(s, ~CORRECT & MIXED)
    # groups that are all correct or all wrong have zero advantage: no gradient at all
    assert unchanged(s, ~MIXED)
    assert torch.equal(s.grad[0], torch.zeros(V))  # the padding row


def test_dapo_and_grpo_differ_only_in_aggregation_and_clip():
    # same advantages; GRPO averages per sequence, DAPO per token: the gradient on a row of a
    # response of length L is scaled by 1 / (n_seq * L) vs 1 / n_tokens
    grpo, dapo = sgd_step("grpo"), sgd_step("dapo")
    # DAPO's +1/-1 rewards are an affine map of GRPO's 1/0: the normalized advantage is the same
    # up to the 1e-6 in its denominator
    assert torch.allclose(grpo.adv, dapo.adv, rtol=1e-5, atol=1e-6)
    n_tokens, n_seq = int(MASK.sum()), B
    for i in range(B):
        rows = rows_of(torch.arange(B) == i)
        ratio = (1.0 / (n_seq * int(LENGTHS[i]))) / (1.0 / n_tokens)
        assert torch.allclose(grpo.grad[rows], dapo.grad[rows] * ratio, rtol=1e-4, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# polarity-decomposed objectives


def test_psr_raises_every_correct_sample_and_ignores_incorrect_ones():
    s = sgd_step("psr")
    assert rises(s, CORRECT)  # also in the all-correct group: no baseline
    assert unchanged(s, ~CORRECT)


def test_nsr_lowers_every_incorrect_sample_and_ignores_correct_ones():
    s = sgd_step("nsr")
    assert falls(s, ~CORRECT)  # also in the all-wrong group
    assert unchanged(s, CORRECT)


def test_w_reinforce_weights_positives_by_lambda():
    s = sgd_step("w_reinforce")
    assert rises(s, CORRECT)
    assert falls(s, ~CORRECT)
    full = sgd_step("w_reinforce", {"lambda": 1.0})
    pos, neg = rows_of(CORRECT), rows_of(~CORRECT)
    # A = +0.1 vs +1 on positives (same token-mean denominator), -1 on negatives in both
    assert torch.allclose(s.grad[pos], 0.1 * full.grad[pos], rtol=1e-5, atol=1e-9)
    assert torch.equal(s.grad[neg], full.grad[neg])
    assert (s.delta[MASK & CORRECT.unsqueeze(-1)] < full.delta[MASK & CORRECT.unsqueeze(-1)]).all()


def test_grpo_positive_only_keeps_grpo_advantages_of_positives():
    s = sgd_step("grpo", {"polarity": "positive"})
    assert rises(s, CORRECT & MIXED)
    assert unchanged(s, ~CORRECT | ~MIXED)


# ---------------------------------------------------------------------------------------------
# A3PO: the amplified tokens get s(step) times DAPO's gradient, the others exactly DAPO's


@pytest.mark.parametrize("step, scale", [(0, 2.0), (100, 1.5), (250, 1.0)])
def test_a3po_amplifies_selected_tokens_gradient(step, scale):
    a3po, dapo = sgd_step("a3po", step=step), sgd_step("dapo", step=step)
    sel_pos, sel_neg = a3po_select(a3po.old, MASK, CORRECT,
                                   a3po_selections(resolve("a3po"))[:2])
    selected = sel_pos | sel_neg
    assert sel_pos[CORRECT].any() and sel_neg[~CORRECT].any()
    amp, rest = CTX[selected], CTX[MASK & ~selected]
    assert torch.allclose(a3po.grad[amp], scale * dapo.grad[amp], rtol=1e-5, atol=1e-9)
    assert torch.equal(a3po.grad[rest], dapo.grad[rest])
    live = selected & MIXED.unsqueeze(-1)  # where the GRPO advantage is nonzero
    assert (live & CORRECT.unsqueeze(-1)).any() and (live & ~CORRECT.unsqueeze(-1)).any()
    if scale > 1:
        assert (a3po.delta[live & CORRECT.unsqueeze(-1)] > dapo.delta[live & CORRECT.unsqueeze(-1)]).all()
        assert (a3po.delta[live & ~CORRECT.unsqueeze(-1)] < dapo.delta[live & ~CORRECT.unsqueeze(-1)]).all()
    else:
        assert torch.equal(a3po.new, dapo.new)


def test_a3po_selects_low_prob_positive_and_high_prob_negative_tokens():
    s = sgd_step("a3po")
    sel_pos, sel_neg = a3po_select(s.old, MASK, CORRECT, a3po_selections(resolve("a3po"))[:2])
    for i in range(B):
        valid = MASK[i]
        sel = sel_pos[i] if CORRECT[i] else sel_neg[i]
        k = max(1, int(0.2 * int(LENGTHS[i])))  # lengths <= 6: floor(0.2 L) is 0 or 1
        assert int(sel.sum()) == k
        target = s.old[i][valid].min() if CORRECT[i] else s.old[i][valid].max()
        assert torch.equal(s.old[i][sel], target.reshape(1))


# ---------------------------------------------------------------------------------------------
# POPO: positive-only weighted NLL


@pytest.mark.parametrize("uniform", [False, True])
def test_popo_raises_positives_and_ignores_negatives(uniform):
    s = sgd_step("popo", {"popo_uniform": uniform})
    assert rises(s, CORRECT)
    assert unchanged(s, ~CORRECT)


def test_popo_gradient_follows_the_bounded_weights():
    # d L_NLL / d log pi(y_it) = -w_i / (positive tokens): per sample, every row moves with w_i
    s = sgd_step("popo")
    seq_mean = s.old.sum(-1) / LENGTHS
    w = popo_weights(seq_mean, GROUPS, CORRECT)
    n_pos_tokens = int(LENGTHS[CORRECT].sum())
    probs = torch.softmax(W0[CTX], dim=-1)  # [B, T, V] at the old parameters
    for i in torch.nonzero(CORRECT).flatten().tolist():
        for t in range(int(LENGTHS[i])):
            expected = -(float(w[i]) / n_pos_tokens) * (
                torch.nn.functional.one_hot(TGT[i, t], V).float() - probs[i, t])
            assert torch.allclose(s.grad[CTX[i, t]], expected, rtol=1e-5, atol=1e-8)
