"""POPO through verl's actor worker and FSDP engine on a CPU (``tests/verl_popo_engine.py``, one
process, one rank), against the local backend's POPO on the same recorded batch and weights.

The recorded batch: three training steps of 4 prompts x 2 rollouts of a tiny Qwen2 model, with
made-up old log-probs and verdicts (steps 0 and 1 mixed, step 2 all wrong: nothing to learn).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import torch

from polarity.algorithms import popo_weights, resolve, sequence_logprob_mean

from .conftest import REPO

PROMPTS, G = 4, 2
STEPS = 3
PARAMS = {"popo_alpha": 0.5, "popo_beta": 0.1, "popo_tau": 0.9, "popo_noise": 0.02,
          "popo_predictor_width": 16}
CORRECT = [[1, 0, 1, 1, 0, 0, 0, 1], [0, 1, 1, 0, 0, 0, 1, 1], [0] * 8]


def _tiny_model(path):
    from polarity.model import build_model, train_tokenizer
    from polarity.settings import TinyModelSpec

    texts = [f"Compute {a} + {b}. Answer: {a + b}" for a in range(10) for b in range(10)]
    tokenizer = train_tokenizer(texts, vocab_size=300)
    spec = TinyModelSpec(hidden_size=32, intermediate_size=64, layers=2, heads=2, kv_heads=1)
    model = build_model(tokenizer, spec, seed=0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return len(tokenizer)


def _recorded_batch(vocab: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    steps = []
    for step in range(STEPS):
        rows = PROMPTS * G
        prompt_len = torch.randint(2, 6, (PROMPTS,), generator=g).repeat_interleave(G)
        prompts = [torch.randint(10, vocab, (int(n),), generator=g).tolist() for n in prompt_len]
        for i in range(1, rows, G):  # the rollouts of a prompt share it
            prompts[i] = prompts[i - 1]
        responses = [torch.randint(10, vocab, (int(torch.randint(1, 7, (1,), generator=g)),),
                                   generator=g).tolist() for _ in range(rows)]
        steps.append({
            "prompts": prompts, "responses": responses, "correct": CORRECT[step],
            "old_log_probs": [(-3 * torch.rand(len(r), generator=g)).tolist() for r in responses],
            "uids": [f"s{step}p{i // G}" for i in range(rows)], "mini_batch": rows})
    return steps


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """On verl: the uninterrupted run; a run SIGKILLed after step 0's checkpoint and resumed in a
    fresh process; the uninterrupted run on two ranks (each prompt's rollouts split between
    them)."""
    out = tmp_path_factory.mktemp("verl-popo")
    vocab = _tiny_model(out / "model")
    torch.save(_recorded_batch(vocab), out / "batch.pt")
    (out / "params.json").write_text(json.dumps(PARAMS))
    for extra in ([], ["--kill-after-checkpoint"], ["--resume"], ["--world=2"]):
        proc = subprocess.run([sys.executable, "-m", "tests.verl_popo_engine", str(out), *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
        want = -signal.SIGKILL if extra == ["--kill-after-checkpoint"] else 0
        assert proc.returncode == want, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out


def _local_reference(out):
    """The local backend's POPO loss and gradients on step 0's rows (one mini-batch), from the
    same initial policy and predictor, without the target's noise."""
    from polarity.backends.local.trainer import PopoParts, TrainSettings, policy_forward
    from polarity.generation.sampling import Rollouts
    from polarity.model import load_policy

    batch = torch.load(out / "batch.pt", weights_only=False)[0]
    model, tokenizer = load_policy(out / "model")
    model.train()
    recipe = resolve("popo", {**PARAMS, "popo_noise": 0.0})
    parts = PopoParts(model, recipe, seed=0)
    P = max(len(p) for p in batch["prompts"])
    T = max(len(r) for r in batch["responses"])
    pad = tokenizer.pad_token_id
    r = Rollouts(
        prompt_ids=torch.tensor([[pad] * (P - len(p)) + p for p in batch["prompts"]]),
        prompt_mask=torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in batch["prompts"]]),
        response_ids=torch.tensor([x + [pad] * (T - len(x)) for x in batch["responses"]]),
        response_mask=torch.tensor([[1] * len(x) + [0] * (T - len(x)) for x in batch["responses"]]),
        texts=[""] * len(batch["responses"]), truncated=torch.zeros(len(batch["responses"]), dtype=torch.bool))
    mask = r.response_mask.float()
    old = torch.tensor([lp + [0.0] * (T - len(lp)) for lp in batch["old_log_probs"]])
    correct = torch.tensor(batch["correct"], dtype=torch.bool)
    weights = popo_weights(sequence_logprob_mean(old, mask), batch["uids"], correct)
    log_prob, entropy, hidden = policy_forward(model, r, 1.0, need_hidden=True)
    settings = TrainSettings(temperature=1.0)
    loss, _ = parts.loss(log_prob, entropy, hidden, r, mask * correct.unsqueeze(-1), mask, weights,
                         settings)
    loss.backward()
    return {"loss": loss.detach(), "weights": weights, "model": model, "predictor": parts.predictor}


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 2])
def test_popo_loss_and_gradient_equal_the_local_backend(runs, world):
    """verl's micro-batches (and, on two ranks, FSDP's average of the ranks' gradients) add up
    to the local backend's mini-batch loss and gradient."""
    first = torch.load(runs / ("first.pt" if world == 1 else f"first-{world}ranks.pt"),
                       weights_only=False)
    local = _local_reference(runs)
    assert first["micro_batches"] == 4 // world  # 8 rows, 2 a micro-batch, 8 / world a rank
    torch.testing.assert_close(first["weights"].float(), local["weights"][::world])  # rank 0's rows
    # the same initial predictor (same seed) on both backends
    for name, p in local["predictor"].named_parameters():
        torch.testing.assert_close(first["initial"]["predictor"][name], p.detach(), rtol=0, atol=0)
    torch.testing.assert_close(first["loss"], local["loss"], rtol=1e-5, atol=1e-6)
    grads = dict(local["model"].named_parameters())
    assert set(first["grads"]["actor"]) == set(grads)
    for name, g in first["grads"]["actor"].items():
        torch.testing.assert_close(g, grads[name].grad, rtol=1e-4, atol=1e-6, msg=name)
    for name, p in local["predictor"].named_parameters():
        torch.testing.assert_close(first["grads"]["predictor"][name], p.grad, rtol=1e-4, atol=1e-6)
    assert any(g.abs().max() > 0 for g in first["grads"]["predictor"].values())


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 2])
def test_popo_trains_through_verls_worker(runs, world):
    suffix = "" if world == 1 else f"-{world}ranks"
    first = torch.load(runs / f"first{suffix}.pt", weights_only=False)
    steps = torch.load(runs / f"steps{suffix}.pt", weights_only=False)
    tau = PARAMS["popo_tau"]
    before = first["initial"]
    for step, s in enumerate(steps):
        m = {k: v if isinstance(v, list) else [v] for k, v in s["metrics"].items()}  # a value a rank
        if step < 2:  # positives: one optimizer step, the target moved (1 - tau) of the gap
            assert m["polarity/popo/stepped"] == [1.0] * world and m["grad_norm"][0] > 0
            assert m["polarity/popo/ema_gap_ratio"] == pytest.approx([tau] * world, rel=1e-6)
            assert m["polarity/popo/weight_entropy"][0] > 0  # mixed prompts with 2 positives
            for name, theta in s["params"]["actor"].items():
                want = tau * before["target"][name] + (1 - tau) * theta
                torch.testing.assert_close(s["params"]["target"][name], want, rtol=1e-6, atol=1e-7)
            for what in ("actor", "predictor"):
                assert any(not torch.equal(s["params"][what][n], before[what][n])
                           for n in before[what]), (step, what)
        else:  # no positive in the step: no optimizer step, nothing moves
            assert m["polarity/popo/stepped"] == [0.0] * world
            for what in ("actor", "target", "predictor"):
                for n, p in s["params"][what].items():
                    assert torch.equal(p, before[what][n]), (step, what, n)
        before = s["params"]


@pytest.mark.slow
def test_popo_resumes_exactly_from_a_verl_checkpoint(runs):
    """Killed after step 0's checkpoint; a fresh process's worker loads it and trains steps 1
    and 2: actor, EMA target and predictor equal the uninterrupted run's at every step."""
    steps = torch.load(runs / "steps.pt", weights_only=False)
    resumed = torch.load(runs / "resumed.pt", weights_only=False)
    for step in range(1, STEPS):
        for what in ("actor", "target", "predictor"):
            for name, p in steps[step]["params"][what].items():
                assert torch.equal(resumed[step]["params"][what][name], p), (step, what, name)
    assert (runs / "ckpt" / "popo_rank0.pt").exists()
