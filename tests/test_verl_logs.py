"""verl's file-logger attempts -> metrics.jsonl: resume merging, killed jobs, name mapping."""

from __future__ import annotations

import json

import pytest

from polarity.backends.verl.logs import (
    VERL_TO_OURS,
    attempt_logs,
    collect_metrics,
    merge_attempts,
    next_attempt_log,
    read_file_log,
    scan_file_log,
    to_metrics_rows,
)


def training(step: int, attempt: int) -> dict:
    """A verl training record's data; values say which attempt and step wrote them."""
    tag = attempt * 1000 + step
    return {"training/global_step": step, "training/epoch": 0,
            "critic/score/mean": tag + 0.5, "critic/rewards/mean": tag + 0.25,
            "actor/entropy": tag + 0.1, "actor/pg_loss": -tag,
            "actor/pg_clipfrac": 0.01, "actor/pg_clipfrac_lower": 0.002, "actor/grad_norm": 2.0,
            "actor/lr": 1e-6,
            "response_length/mean": 100.0, "response_length/max": 512.0,
            "response_length/clip_ratio": 0.25, "timing_s/step": 12.5, "actor/ppo_kl": 0.001,
            "polarity/frac_groups_dropped": 0.125}


def line(step: int, data: dict) -> str:
    return json.dumps({"step": step, "data": data}) + "\n"


@pytest.fixture
def resumed_run(tmp_path):
    """Attempt 1: validation, steps 1..5, killed mid-line while logging step 6.
    Attempt 2: resumed from the step-4 checkpoint: its validation at step 4, then steps 5..8."""
    folder = tmp_path / "verl_logs"
    first = next_attempt_log(folder)
    text = line(0, {"val-core/acc": 0.1}) + "".join(line(s, training(s, 1)) for s in range(1, 6))
    first.write_text(text + line(6, training(6, 1))[:40])
    second = next_attempt_log(folder)
    second.write_text(line(4, {"val-core/acc": 0.4})
                      + "".join(line(s, training(s, 2)) for s in range(5, 9)))
    return folder, first, second


def test_attempt_files_are_numbered_on(tmp_path):
    folder = tmp_path / "state" / "verl_logs"
    assert next_attempt_log(folder) == folder / "attempt-0001.jsonl" and folder.is_dir()
    for n in (1, 2, 10):
        (folder / f"attempt-{n:04d}.jsonl").write_text("")
    (folder / "notes.txt").write_text("")
    assert next_attempt_log(folder).name == "attempt-0011.jsonl"
    assert [p.name for p in attempt_logs(folder)] == [
        "attempt-0001.jsonl", "attempt-0002.jsonl", "attempt-0010.jsonl"]


def test_resumed_run_has_each_step_once_from_the_latest_attempt(resumed_run, tmp_path):
    folder, first, second = resumed_run
    assert [p.name for p in attempt_logs(folder)] == [first.name, second.name]
    assert [r["step"] for r in read_file_log(first)] == [0, 1, 2, 3, 4, 5]  # cut line skipped
    assert scan_file_log(first)[1] == 1

    out = tmp_path / "results" / "metrics.jsonl"
    rows = collect_metrics(folder, out, algorithm="grpo", seed=3)
    assert [r["step"] for r in rows] == list(range(8))  # verl steps 1..8, once each
    assert [json.loads(x) for x in out.read_text().splitlines()] == rows
    assert not list(out.parent.glob("*.tmp"))
    by_step = {r["step"]: r for r in rows}
    assert by_step[4]["pg_loss"] == -2005  # verl step 5: re-run by the second attempt
    assert by_step[3]["pg_loss"] == -1004  # verl step 4: the first attempt's training ...
    assert by_step[3]["verl/val-core/acc"] == 0.4  # ... plus the resume's validation of it
    assert by_step[7]["pg_loss"] == -2008
    assert all(r["algorithm"] == "grpo" and r["seed"] == 3 for r in rows)


def test_names_are_mapped_and_verl_names_kept():
    row = to_metrics_rows({1: training(1, 1)}, algorithm="dapo", seed=0)[0]
    assert row["step"] == 0
    assert row["accuracy"] == 1001.5 and row["reward_mean"] == 1001.25
    assert row["entropy"] == pytest.approx(1001.1)
    assert (row["pg_loss"], row["clip_frac"], row["dual_clip_frac"]) == (-1001, 0.01, 0.002)
    assert (row["grad_norm"], row["lr"]) == (2.0, 1e-6)
    assert (row["response_length_mean"], row["response_length_max"]) == (100.0, 512.0)
    assert row["response_clip_frac"] == 0.25 and row["step_seconds"] == 12.5
    assert row["frac_groups_dropped"] == 0.125  # polarity/<name> is our <name>
    for verl_name in training(1, 1):
        if not verl_name.startswith("polarity/"):
            assert row[f"verl/{verl_name}"] == training(1, 1)[verl_name]
    assert "verl/polarity/frac_groups_dropped" not in row
    assert set(VERL_TO_OURS.values()) <= set(row)
    # our plugin's value wins over a mapped verl one
    both = to_metrics_rows({1: {"actor/entropy": 1.0, "polarity/entropy": 2.0}}, algorithm="x",
                           seed=0)[0]
    assert both["entropy"] == 2.0 and both["verl/actor/entropy"] == 1.0


def test_same_step_twice_in_one_file_merges_keys(tmp_path):
    path = tmp_path / "attempt-0001.jsonl"
    path.write_text(line(1, {"a": 1, "b": 1}) + line(1, {"b": 2, "val-core/acc": 0.3}))
    assert merge_attempts([path]) == {1: {"a": 1, "b": 2, "val-core/acc": 0.3}}


def test_a_later_training_record_replaces_the_whole_step(tmp_path):
    first, second = tmp_path / "attempt-0001.jsonl", tmp_path / "attempt-0002.jsonl"
    first.write_text(line(3, {**training(3, 1), "only-first": 1}))
    second.write_text(line(3, training(3, 2)))
    assert merge_attempts([first, second]) == {3: training(3, 2)}


def test_garbage_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "attempt-0001.jsonl"
    path.write_bytes(b"\n".join([
        line(1, {"a": 1}).strip().encode(), b"not json", b"", b"[1, 2]",
        b'{"step": "x", "data": {}}', b'{"data": {"a": 2}}', b"\xff\xfe\x00", b"   ",
        line(2, {"a": 3}).strip().encode(), b'{"step": 3, "da',
    ]))
    records, skipped = scan_file_log(path)
    assert [r["step"] for r in records] == [1, 2] and skipped == 6
    assert merge_attempts([path]) == {1: {"a": 1}, 2: {"a": 3}}


def test_empty_folder_gives_no_rows(tmp_path):
    out = tmp_path / "metrics.jsonl"
    assert collect_metrics(tmp_path / "none", out, algorithm="a", seed=0) == []
    assert out.read_text() == ""


def test_real_verl_file_logger_attempts(tmp_path, monkeypatch):
    """verl's own FileLogger writes the attempt files (it truncates the file it opens)."""
    import numpy as np
    from verl.utils import tracking
    folder = tmp_path / "state" / "verl_logs"

    def attempt(steps, tag, checkpoint=None):
        monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(next_attempt_log(folder)))
        logger = tracking.FileLogger(project_name="polarity", experiment_name="test")
        logger.log(data={"val-core/acc": np.float32(0.25)}, step=checkpoint or 0)
        for s in steps:
            logger.log(data={**training(s, tag), "actor/pg_loss": np.float64(-tag * 1000 - s),
                             "actor/grad_norm": float("nan")}, step=s)
        return logger

    attempt(range(1, 6), 1).finish()
    killed = attempt(range(5, 7), 2, checkpoint=4)  # never finished: killed
    killed.fp.write(b'{"step":7,"data":{"actor/pg')
    killed.fp.close()
    attempt(range(7, 9), 3, checkpoint=6).finish()

    assert [p.name for p in attempt_logs(folder)] == [f"attempt-{n:04d}.jsonl" for n in (1, 2, 3)]
    rows = collect_metrics(folder, tmp_path / "metrics.jsonl", algorithm="grpo", seed=1)
    assert [r["step"] for r in rows] == list(range(8))
    assert [r["pg_loss"] for r in rows] == [-1001, -1002, -1003, -1004, -2005, -2006, -3007, -3008]
    assert rows[5]["verl/val-core/acc"] == 0.25  # the resume's validation of checkpoint 6
    assert rows[0]["grad_norm"] is None  # orjson writes NaN as null
    assert rows[0]["accuracy"] == 1001.5 and rows[0]["frac_groups_dropped"] == 0.125


def test_reward_hacks_planted_in_verl_rollout_dumps_are_counted(tmp_path):
    """verl's own dump writer (trainer.rollout_data_dir) with our reward function's extra keys:
    the planted hacks of each step become that step's lenient_only_frac; a re-run step's dump
    replaces the first attempt's, a cut-off line is skipped."""
    from pathlib import Path

    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from verl.utils.import_utils import load_extern_object

    import polarity.backends.verl.logs as logs_module
    from polarity.backends.verl.overrides import REWARD_FN

    compute_score = load_extern_object(module_path=str(REWARD_FN), object_name="compute_score")
    rollouts = tmp_path / "state" / "rollouts"

    def dump(step: int, hacks: int, honest: int) -> None:
        outputs = (["48+28. \\boxed{. \\boxed{}"] * hacks  # restates "What is 48+28?"
                   + ["48+28=76. \\boxed{76}"] * honest + ["\\boxed{75}"])
        results = [compute_score("synthetic-arith", out, "76") for out in outputs]
        extras = {k: [r[k] for r in results] for k in results[0]}
        RayPPOTrainer._write_generations(["What is 48+28?"] * len(outputs), outputs,
                                         ["76"] * len(outputs), [r["score"] for r in results],
                                         extras, str(rollouts), step)

    for step, hacks in ((1, 0), (2, 3), (3, 1)):
        dump(step, hacks, honest=4)
    dump(3, 2, honest=1)  # the resumed attempt re-ran step 3
    with open(rollouts / "2.jsonl", "a") as f:
        f.write('{"lenient_only": 1.0, "outp')  # killed while dumping
    (rollouts / "notes.jsonl").write_text('{"lenient_only": 1.0}\n')  # not a step file
    with open(rollouts / "1.jsonl", "a") as f:  # no flag to count: skipped, never a crash
        f.write('{"lenient_only": null}\n{"lenient_only": "yes"}\n')
    monitor = logs_module.rollout_monitor(rollouts)
    assert monitor == {1: 0.0, 2: pytest.approx(3 / 8), 3: pytest.approx(2 / 4)}
    assert logs_module.rollout_monitor(tmp_path / "missing") == {}

    folder = tmp_path / "state" / "verl_logs"
    next_attempt_log(folder).write_text("".join(line(s, training(s, 1)) for s in (1, 2, 3)))
    rows = collect_metrics(folder, tmp_path / "metrics.jsonl", algorithm="a3po", seed=0,
                           rollouts=Path(rollouts))
    assert [r["lenient_only_frac"] for r in rows] == [0.0, pytest.approx(3 / 8), pytest.approx(0.5)]
