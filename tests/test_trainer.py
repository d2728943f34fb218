"""The local backend: metrics rows, HF output, deterministic resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from polarity.backends.local.trainer import policy_forward, prompt_at, read_metrics, train
from polarity.settings import TrainSettings
from polarity.generation.sampling import sample
from polarity.model import load_policy

from .helpers import lenient_reference, make_data, make_partly_trained_model, strict_reference

METRIC_COLUMNS = {
    "step", "algorithm", "seed", "gen_rounds", "frac_groups_all_correct", "frac_groups_all_wrong",
    "frac_groups_dropped", "accuracy", "response_length_mean", "response_length_max",
    "response_clip_frac", "n_positive", "n_negative", "frac_positive", "frac_negative",
    "reward_mean", "entropy", "pg_loss", "clip_frac", "dual_clip_frac", "grad_norm", "lr",
    "lenient_only_frac", "optimizer_steps",
}
# responses of up to 20 tokens: the task's solutions ("18+8=26. \boxed{26}") take ~14
SETTINGS = dict(steps=3, prompts_per_step=4, rollouts_per_prompt=4, mini_batch_prompts=2,
                max_response_tokens=20, save_every=1, lr=1e-3)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Data and a policy that solves ~40% of the training prompts (so groups are mixed)."""
    folder = tmp_path_factory.mktemp("trainer")
    data = make_data(folder)
    model, record = make_partly_trained_model(folder, data)
    assert 0.3 <= record["validation_accuracy"] < 1.0
    return data, model


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


# DAPO's overlong buffer must be smaller than the response cap (20% of it, as in the paper)
PARAMS = {"dapo": {"overlong_cache": 4}, "a3po": {"overlong_cache": 4}}


def run(artifacts, out: Path, algorithm="grpo", **overrides):
    data, model = artifacts
    settings = TrainSettings.from_dict({**SETTINGS, **overrides})
    return train(model_path=model, data_path=data["train"], algorithm=algorithm,
                 params=PARAMS.get(algorithm, {}),
                 settings=settings, seed=0, final_dir=out / "final",
                 metrics_path=out / "metrics.jsonl", state_dir=out / "state", log=lambda m: None)


def test_prompt_stream_is_a_permutation_per_epoch():
    firsts = [prompt_at(p, 10, seed=3) for p in range(10)]
    assert sorted(firsts) == list(range(10))
    assert [prompt_at(p, 10, seed=3) for p in range(10)] == firsts  # deterministic


def test_a_step_samples_distinct_prompts_from_the_whole_split(artifacts):
    from polarity.algorithms import resolve
    from polarity.backends.local.trainer import collect, load_prompts

    data_paths, model_dir = artifacts
    model, tok = load_policy(model_dir)
    data = load_prompts(data_paths["train"])
    settings = TrainSettings.from_dict({**SETTINGS, "prompts_per_step": 16})
    seen = set()
    for step in range(4):  # 4 x 16 = the 64 training prompts: one epoch, each once
        batch, cursor, _, _ = collect(model, tok, data, resolve("grpo"), settings, 0, step, step * 16)
        assert cursor == (step + 1) * 16
        firsts = batch.rollouts.prompt_ids[:: settings.rollouts_per_prompt]
        texts = tok.batch_decode(firsts, skip_special_tokens=True)
        assert len(set(texts)) == 16
        seen.update(texts)
    assert len(seen) == len(data["prompt"]) == 64


@pytest.mark.parametrize("algorithm", ["grpo", "dapo", "psr", "nsr", "w_reinforce", "a3po", "popo"])
def test_training_happens_through_each_algorithms_own_path(artifacts, tmp_path, algorithm):
    """One metrics row per step with the documented columns, optimizer steps taken, the
    parameters moved, and the algorithm's own path visible in its numbers."""
    rows = run(artifacts, tmp_path, algorithm=algorithm)
    on_disk = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert on_disk == json.loads(json.dumps(rows))
    assert [r["step"] for r in on_disk] == [0, 1, 2]
    for row in on_disk:
        assert METRIC_COLUMNS <= set(row), METRIC_COLUMNS - set(row)
    assert 0 < sum(r["accuracy"] for r in rows) / 3 < 1  # the policy has something to learn
    trained = [r for r in rows if r["optimizer_steps"] > 0]
    assert trained, "no optimizer step was taken"
    assert all(r["grad_norm"] > 0 for r in trained)
    before, after = _weights(artifacts[1]), _weights(tmp_path / "final")
    assert any(not torch.equal(before[k], after[k]) for k in before), "parameters did not change"

    if algorithm == "psr":  # positives only
        assert all(r["n_negative"] == 0 for r in rows) and sum(r["n_positive"] for r in rows) > 0
    if algorithm == "nsr":  # negatives only
        assert all(r["n_positive"] == 0 for r in rows) and sum(r["n_negative"] for r in rows) > 0
    if algorithm in ("grpo", "w_reinforce"):
        assert sum(r["n_positive"] for r in rows) > 0 and sum(r["n_negative"] for r in rows) > 0
    if algorithm in ("dapo", "a3po"):  # dynamic sampling dropped the uniform groups it met
        seen_uniform = sum(r["frac_groups_all_correct"] + r["frac_groups_all_wrong"] for r in rows)
        assert seen_uniform > 0
        assert all(r["frac_groups_dropped"] > 0 for r in rows
                   if r["frac_groups_all_correct"] + r["frac_groups_all_wrong"] > 0)
        assert all(r["gen_rounds"] >= 1 for r in rows)
    if algorithm == "a3po":
        assert on_disk[0]["a3po/s_pos"] == 2.0  # step 0: rho
        shaped = [r for r in trained if r["a3po/amplified_frac_pos"] > 0]
        assert shaped and all(0 < r["a3po/amplified_frac_neg"] <= 1 for r in trained)
        # k_i = max(1, floor(0.2 L_i)) of each response's tokens: at least 20% less rounding
        assert all(r["a3po/amplified_frac_pos"] <= 0.5 for r in shaped)
    if algorithm == "popo":
        assert {"popo/weight_entropy", "popo/ema_tau", "popo/sim_loss"} <= set(on_disk[0])
        state = torch.load(sorted((tmp_path / "state" / "checkpoints").glob("*.pt"))[-1],
                           weights_only=False)
        target, predictor = state["popo"]["target"], state["popo"]["predictor"]
        key = next(k for k in target if k.endswith("q_proj.weight"))
        moved = target[key] - before[key]
        assert float(moved.abs().max()) > 0, "the EMA target did not move"
        # it lags the policy: xi <- tau xi + (1 - tau) theta stays between start and policy
        assert float(moved.norm()) < float((after[key] - before[key]).norm())
        assert float(predictor["net.0.bias"].abs().max()) > 0  # zero at init: it trained


def test_popo_entropy_bonus_gets_every_completion_token_from_the_trainer(artifacts, tmp_path,
                                                                         monkeypatch):
    """The trainer hands POPO's loss the positives' mask for NLL/similarity and the whole
    response mask (negatives included) for the entropy bonus."""
    from polarity.backends.local.trainer import PopoParts

    seen = []
    real = PopoParts.loss

    def spy(self, log_prob, entropy, hidden, rollouts, loss_mask, response_mask, *args):
        seen.append((loss_mask.clone(), response_mask.clone(), rollouts.response_mask.clone()))
        return real(self, log_prob, entropy, hidden, rollouts, loss_mask, response_mask, *args)

    monkeypatch.setattr(PopoParts, "loss", spy)
    run(artifacts, tmp_path, algorithm="popo", steps=1)
    assert seen
    for loss_mask, response_mask, rollout_mask in seen:
        assert torch.equal(response_mask, rollout_mask.float())  # every completion token
        assert bool(((loss_mask > 0) <= (response_mask > 0)).all())
    assert any(float(r.sum()) > float(m.sum()) for m, r, _ in seen)  # negatives were there


def test_an_overlong_buffer_as_long_as_the_responses_is_refused(artifacts, tmp_path):
    data, model = artifacts
    with pytest.raises(ValueError, match=r"algorithm_params\.dapo\.overlong_cache"):
        train(model_path=model, data_path=data["train"], algorithm="dapo", params={},
              settings=TrainSettings.from_dict(SETTINGS), seed=0, final_dir=tmp_path / "f",
              metrics_path=tmp_path / "m.jsonl", state_dir=tmp_path / "s", log=lambda m: None)
    assert not (tmp_path / "f").exists()


def test_final_policy_loads_with_auto_classes(artifacts, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run(artifacts, tmp_path, steps=1)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    tok = AutoTokenizer.from_pretrained(tmp_path / "final")
    assert model.config.model_type == "qwen2"
    assert tok.eos_token == "<|im_end|>"


def test_log_probs_do_not_depend_on_left_padding(artifacts):
    data, model_dir = artifacts
    model, tok = load_policy(model_dir)
    prompts = [[{"role": "user", "content": "What is 1+2?"}],
               [{"role": "user", "content": "What is 10+20-3?"}]]
    r = sample(model, tok, prompts, 1, max_new_tokens=6, seed=0)
    lp, _, _ = policy_forward(model, r, temperature=1.0)
    # the short prompt is left-padded in the batch; alone it is not
    alone = sample(model, tok, prompts[:1], 1, max_new_tokens=6, seed=0)
    alone.response_ids = r.response_ids[:1, :]
    alone.response_mask = r.response_mask[:1, :]
    lp_alone, _, _ = policy_forward(model, alone, temperature=1.0)
    m = r.response_mask[0].bool()
    assert torch.allclose(lp[0][m], lp_alone[0][m], atol=1e-5)


def test_a3po_step_continues_across_a_resume(artifacts, tmp_path):
    """A3PO's decay is driven by the global step, which a resumed run must continue."""
    run(artifacts, tmp_path, algorithm="a3po", steps=2, save_every=2)
    rows = run(artifacts, tmp_path, algorithm="a3po", steps=4, save_every=2)
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert [r["a3po/s_pos"] for r in rows] == [2.0 - 0.005 * s for s in range(4)]
    # the resumed steps shaped real batches (not the no-batch fallback of update())
    assert all(r["optimizer_steps"] > 0 and r["a3po/amplified_frac_pos"] > 0 for r in rows[2:])


def _train_cmd(artifacts, out: Path, steps: int):
    data, model = artifacts
    settings = json.dumps({**SETTINGS, "steps": steps, "save_every": 2})
    return [sys.executable, "-m", "polarity", "train", "--model", str(model), "--data",
            str(data["train"]), "--algorithm", "nsr", "--settings", settings, "--seed", "0",
            "--out", str(out / "final"), "--metrics", str(out / "metrics.jsonl"),
            "--state", str(out / "state")]


def test_killed_run_resumes_from_checkpoint_without_losing_or_repeating_steps(artifacts, tmp_path):
    steps = 12
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(artifacts, killed, steps), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    ckpt = killed / "state" / "checkpoints" / "step_000004.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "final").exists()
    done_before = len(read_metrics(killed / "state" / "metrics.jsonl"))
    assert done_before >= 4

    resumed = subprocess.run(_train_cmd(artifacts, killed, steps), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming nsr seed 0 from step_0000" in resumed.stdout
    rows = read_metrics(killed / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(steps))

    # the resumed run is the run that was never interrupted, step for step
    straight = tmp_path / "straight"
    subprocess.run(_train_cmd(artifacts, straight, steps), check=True, capture_output=True)
    reference = read_metrics(straight / "metrics.jsonl")
    for a, b in zip(rows, reference):
        for key in ("accuracy", "n_positive", "n_negative", "response_length_mean", "entropy"):
            assert a[key] == b[key], (a["step"], key)
        assert a["pg_loss"] == pytest.approx(b["pg_loss"], rel=1e-4, abs=1e-6)
        assert a["optimizer_steps"] == b["optimizer_steps"]
    # NSR trained on negatives before and after the kill (not an empty loop that resumes)
    assert all(r["optimizer_steps"] > 0 and r["n_negative"] > 0 for r in rows)
    assert all(r["n_positive"] == 0 for r in rows)


# ----------------------------------------------------------------------------- reward hacking

HACK = "{expr}. \\boxed{{. \\boxed{{}}"  # restates the question in a malformed box


def _planting_sampler(monkeypatch, every: int = 3):
    """Wrap the trainer's sampler: every ``every``-th response becomes a planted hack that
    restates its question; returns the list of (texts, ground truths) the trainer scored."""
    import re

    import polarity.backends.local.trainer as trainer_module

    real = trainer_module.sample
    seen = []

    def planting(model, tokenizer, prompts, n, **kwargs):
        rollouts = real(model, tokenizer, prompts, n, **kwargs)
        exprs = [re.search(r"What is (.+)\?", p[-1]["content"]).group(1) for p in prompts]
        truths = [str(eval(e)) for e in exprs for _ in range(n)]  # digits and +/- only
        for i in range(0, len(rollouts.texts), every):
            rollouts.texts[i] = HACK.format(expr=exprs[i // n])
        seen.append((list(rollouts.texts), truths))
        return rollouts

    monkeypatch.setattr(trainer_module, "sample", planting)
    return seen


def _reference(text: str, truth: str, extraction: str) -> tuple[bool, bool]:
    """(credited by ``extraction``, lenient-only) computed with math-verify in this process."""
    lenient, strict = lenient_reference(text, truth), strict_reference(text, truth)
    return (lenient if extraction == "lenient" else strict), lenient and not strict


@pytest.mark.parametrize("extraction", ["boxed", "lenient"])
def test_planted_reward_hacks_are_counted_and_only_lenient_rewards_them(
        artifacts, tmp_path, monkeypatch, extraction):
    seen = _planting_sampler(monkeypatch)
    rows = run(artifacts, tmp_path, algorithm="grpo", extraction=extraction)
    assert all(r["optimizer_steps"] > 0 for r in rows)  # GRPO trained on these verdicts
    assert len(seen) == len(rows) == SETTINGS["steps"]  # one sampling round per step (GRPO)
    for row, (texts, truths) in zip(rows, seen):
        planted = texts[::3]  # the sampler's own responses may end like a hack too
        assert len(planted) == -(-len(texts) // 3)
        assert all(t.endswith("\\boxed{. \\boxed{}") for t in planted)
        ref = [_reference(t, g, extraction) for t, g in zip(texts, truths)]
        assert all(_reference(t, g, extraction)[1] for t, g in zip(texts, truths) if t in planted)
        assert row["lenient_only_frac"] == pytest.approx(sum(h for _, h in ref) / len(texts))
        assert row["accuracy"] == pytest.approx(sum(c for c, _ in ref) / len(texts))
        # the hacks are positives under the lenient policy only
        if extraction == "lenient":
            assert row["accuracy"] >= len(planted) / len(texts)
    assert all(r["lenient_only_frac"] >= 1 / 3 - 1e-9 for r in rows)
    # the samples behind each number: every response of the step, verdicts and flags
    for row, (texts, truths) in zip(rows, seen):
        dump = [json.loads(x) for x in
                (tmp_path / "state" / "rollouts" / f"{row['step']}.jsonl").read_text().splitlines()]
        assert [d["output"] for d in dump] == texts and [d["gts"] for d in dump] == truths
        assert all(d["step"] == row["step"] and d["input"].startswith("What is") for d in dump)
        flagged = [d["output"] for d in dump if d["lenient_only"] == 1.0]
        assert set(texts[::3]) <= set(flagged)  # every planted hack
        assert len(flagged) / len(dump) == pytest.approx(row["lenient_only_frac"])
        assert sum(d["score"] for d in dump) / len(dump) == pytest.approx(row["accuracy"])


def test_rollout_dumps_can_be_switched_off(artifacts, tmp_path):
    rows = run(artifacts, tmp_path, steps=1, dump_rollouts=False)
    assert rows[0]["optimizer_steps"] > 0
    assert not (tmp_path / "state" / "rollouts").exists()
