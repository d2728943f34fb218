"""Sharded, resumable evaluation (polarity.evaluation.evaluate) and the vllm engine adapter."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from polarity.data.rows import SAMPLE_COLUMNS, make_row, rows_to_frame, write_parquet
from polarity.evaluation import evaluate as ev
from polarity.evaluation.evaluate import evaluate, gather_shards, shard_bounds
from polarity.settings import EvalSettings

from .helpers import make_data, make_untrained_model

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n, shards", [(10, 3), (500, 8), (30, 8), (3, 8), (0, 2), (7, 1)])
def test_shards_partition_the_problems(n, shards):
    blocks = [shard_bounds(n, i, shards) for i in range(shards)]
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))  # contiguous, no overlap
    sizes = [hi - lo for lo, hi in blocks]
    assert max(sizes) - min(sizes) <= 1


def test_shard_index_is_checked():
    with pytest.raises(ValueError, match="shard 3"):
        shard_bounds(10, 3, 3)


def benchmark_file(folder: Path, answers: list[str]) -> Path:
    rows = [make_row(data_source="toy", question=f"q{i}", answer=a, split="test", index=i,
                     template="qwen-boxed") for i, a in enumerate(answers)]
    path = folder / "toy.parquet"
    write_parquet(rows_to_frame(rows), path)
    return path


class FakeEngine:
    """Deterministic per problem (response j of problem q depends on q and j only)."""

    def __init__(self):
        self.calls = []

    def __call__(self, policy_path, prompts, settings, problem_ids=None):
        self.calls.append(list(problem_ids))
        texts, lengths, truncated = [], [], []
        for pid in problem_ids:
            for j in range(settings.samples):
                texts.append(f"thinking... \\boxed{{{pid + j % 2}}}" if j < 3 else "no idea")
                lengths.append(5 + j)
                truncated.append(j >= 3)
        return texts, lengths, truncated


def test_shards_gather_to_the_single_job_table(tmp_path, monkeypatch):
    engine = FakeEngine()
    monkeypatch.setattr(ev, "generate_responses", engine)
    data = benchmark_file(tmp_path, [str(i) for i in range(7)])
    settings = EvalSettings(samples=4)
    whole = evaluate("policy", data, settings, tmp_path / "whole.parquet", log=lambda *_: None)
    parts = [tmp_path / f"s{i}.parquet" for i in range(3)]
    for i, part in enumerate(parts):
        evaluate("policy", data, settings, part, shard=i, shards=3, log=lambda *_: None)
    gathered = gather_shards(parts, tmp_path / "gathered.parquet")
    assert engine.calls[1:] == [[0, 1], [2, 3], [4, 5, 6]]
    pd.testing.assert_frame_equal(gathered, whole)
    assert list(whole.columns) == SAMPLE_COLUMNS
    assert whole["problem_id"].tolist() == [p for p in range(7) for _ in range(4)]
    # j = 0, 2 answer pid (correct), j = 1 answers pid + 1 (wrong), j = 3 has no answer
    assert whole["reason"].tolist()[:4] == ["correct", "wrong", "correct", "no_answer"]
    assert whole["truncated"].tolist()[:4] == [False, False, False, True]


def test_gather_rejects_overlapping_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "generate_responses", FakeEngine())
    data = benchmark_file(tmp_path, ["1", "2"])
    part = tmp_path / "s0.parquet"
    evaluate("policy", data, EvalSettings(samples=2), part, log=lambda *_: None)
    with pytest.raises(ValueError, match="overlap"):
        gather_shards([part, part], tmp_path / "out.parquet")


def test_a_job_killed_while_scoring_resumes_without_sampling(tmp_path, monkeypatch):
    engine = FakeEngine()
    monkeypatch.setattr(ev, "generate_responses", engine)
    data = benchmark_file(tmp_path, ["1", "2", "3"])
    state = tmp_path / "state" / "toy-shard0.parquet"
    settings = EvalSettings(samples=4)

    def killed_while_scoring(*args, **kwargs):
        raise KeyboardInterrupt  # the job dies after sampling, before any verdict

    monkeypatch.setattr(ev, "score_batch_detailed", killed_while_scoring)
    with pytest.raises(KeyboardInterrupt):
        evaluate("policy", data, settings, tmp_path / "out.parquet", state_path=state,
                 log=lambda *_: None)
    assert state.exists() and not (tmp_path / "out.parquet").exists()
    assert len(engine.calls) == 1

    monkeypatch.undo()
    monkeypatch.setattr(ev, "generate_responses", engine)
    lines = []
    out = evaluate("policy", data, settings, tmp_path / "out.parquet", state_path=state,
                   log=lines.append)
    assert len(engine.calls) == 1  # not sampled again
    assert any("resuming" in line for line in lines)
    assert len(out) == 12 and not state.exists()  # scored: the state is no longer needed


def test_saved_responses_with_other_settings_are_not_reused(tmp_path, monkeypatch):
    engine = FakeEngine()
    monkeypatch.setattr(ev, "generate_responses", engine)
    data = benchmark_file(tmp_path, ["1", "2"])
    state = tmp_path / "state.parquet"
    monkeypatch.setattr(ev, "score_batch_detailed", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        evaluate("policy", data, EvalSettings(samples=4), tmp_path / "o.parquet", state_path=state)
    monkeypatch.undo()
    monkeypatch.setattr(ev, "generate_responses", engine)
    out = evaluate("policy", data, EvalSettings(samples=4, temperature=1.0), tmp_path / "o.parquet",
                   state_path=state, log=lambda *_: None)
    assert len(engine.calls) == 2 and len(out) == 8


def test_hf_engine_on_a_real_tiny_model(tmp_path):
    data = make_data(tmp_path, n_warmup=40, n_train=4, n_test=5)
    policy = make_untrained_model(tmp_path, data)
    settings = EvalSettings(samples=3, max_response_tokens=6)
    parts = []
    for i in range(2):
        parts.append(tmp_path / f"s{i}.parquet")
        evaluate(policy, data["test"], settings, parts[-1], shard=i, shards=2, log=lambda *_: None)
    out = gather_shards(parts, tmp_path / "all.parquet")
    assert out["problem_id"].tolist() == [p for p in range(5) for _ in range(3)]
    assert out["sample"].tolist() == [0, 1, 2] * 5
    assert set(out["reason"]) <= {"correct", "wrong", "no_answer", "parse_failure", "timeout"}
    assert (out["response_length"] <= 6).all()


def test_the_cpu_path_never_imports_vllm(tmp_path):
    script = (
        "import sys, polarity.evaluation.evaluate, polarity.cli, polarity.config\n"
        "assert 'vllm' not in sys.modules, 'vllm was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO)


# ---------------------------------------------------------------- the vllm engine adapter


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in ``vllm`` module recording how the adapter calls vLLM's offline API."""
    record = {}

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class Completion:
        def __init__(self, text, n_tokens, finish_reason):
            self.text, self.token_ids, self.finish_reason = text, list(range(n_tokens)), finish_reason

    class Request:
        def __init__(self, outputs):
            self.outputs = outputs

    class Tokenizer:
        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            assert tokenize is False and add_generation_prompt is True
            return "|".join(f"{m['role']}:{m['content']}" for m in messages) + "|assistant:"

    class LLM:
        def __init__(self, **kwargs):
            record["llm"] = kwargs

        def get_tokenizer(self):
            return Tokenizer()

        def generate(self, prompts, params):
            record["prompts"], record["params"] = prompts, [p.kwargs for p in params]
            return [Request([Completion(f"{i}-{j}", 3 + j, "length" if j == 1 else "stop")
                             for j in range(p.kwargs["n"])]) for i, p in enumerate(params)]

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return record


def test_vllm_adapter_maps_settings_and_outputs(fake_vllm):
    from polarity.generation.vllm_engine import sample_vllm

    settings = EvalSettings(samples=2, temperature=0.6, top_p=0.95, max_response_tokens=4096,
                            seed=7, engine="vllm", tensor_parallel_size=2,
                            gpu_memory_utilization=0.8)
    prompts = [[{"role": "user", "content": "1+1?"}], [{"role": "system", "content": "s"},
                                                       {"role": "user", "content": "2+2?"}]]
    texts, lengths, truncated = sample_vllm("/models/p", prompts, 2, settings, problem_ids=[10, 11])
    assert fake_vllm["llm"] == {"model": "/models/p", "tensor_parallel_size": 2,
                                "gpu_memory_utilization": 0.8, "seed": 7,
                                "trust_remote_code": False}
    assert fake_vllm["prompts"] == ["user:1+1?|assistant:", "system:s|user:2+2?|assistant:"]
    assert fake_vllm["params"] == [
        {"n": 2, "temperature": 0.6, "top_p": 0.95, "max_tokens": 4096, "seed": 17},
        {"n": 2, "temperature": 0.6, "top_p": 0.95, "max_tokens": 4096, "seed": 18},
    ]
    assert texts == ["0-0", "0-1", "1-0", "1-1"]
    assert lengths == [3, 4, 3, 4]
    assert truncated == [False, True, False, True]


def test_evaluate_with_the_vllm_engine_end_to_end(fake_vllm, tmp_path):
    data = benchmark_file(tmp_path, ["0-0", "5"])
    out = evaluate("/models/p", data, EvalSettings(samples=2, engine="vllm"), tmp_path / "o.parquet",
                   shard=1, shards=2, log=lambda *_: None)
    assert out["problem_id"].tolist() == [1, 1]
    assert fake_vllm["params"][0]["seed"] == 1  # seed + problem id: independent of sharding
