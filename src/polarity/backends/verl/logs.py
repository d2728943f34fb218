"""verl's file logger -> the run's ``metrics.jsonl`` (the local backend's schema).

verl's ``FileLogger`` writes ``{"step": <global step>, "data": {name: value}}`` lines to
``$VERL_FILE_LOGGER_PATH`` and opens that file with mode "wb": a resumed run would erase the
steps before it. So every launch attempt logs to its own file (``attempt-0001.jsonl``, ...) and
the attempts are merged here: a later attempt's record of a step replaces an earlier one's,
because after a resume verl re-runs the steps after its last checkpoint.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from ...files import iter_jsonl, write_jsonl

# verl's metric name -> ours (as in polarity/backends/local/trainer.py). Names from
# verl/trainer/ppo/metric_utils.py, ray_trainer.py and workers/utils/losses.py.
VERL_TO_OURS = {
    # our reward function's score is the 0/1 verdict, so its mean is the accuracy; the reward
    # (score less any in-reward KL) is before our overlong shaping, done in the advantages
    "critic/score/mean": "accuracy",
    "critic/rewards/mean": "reward_mean",
    "actor/entropy": "entropy",
    "actor/pg_loss": "pg_loss",
    "actor/pg_clipfrac": "clip_frac",
    "actor/pg_clipfrac_lower": "dual_clip_frac",
    "actor/grad_norm": "grad_norm",
    "actor/lr": "lr",
    "response_length/mean": "response_length_mean",
    "response_length/max": "response_length_max",
    "response_length/clip_ratio": "response_clip_frac",
    "timing_s/step": "step_seconds",
}
OUR_PREFIX = "polarity/"  # our verl plugin's metrics: "polarity/<name>" is our "<name>"
VERL_PREFIX = "verl/"  # every verl metric is also kept as "verl/<its name>"
TRAINING_KEY = "training/global_step"  # verl logs it with every training step's metrics
ATTEMPT_GLOB = "attempt-*.jsonl"
_ATTEMPT = re.compile(r"attempt-(\d+)\.jsonl$")


def next_attempt_log(folder: Path) -> Path:
    """The file for the next launch attempt: numbering continues after the existing ones."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _ATTEMPT.match(p.name))]
    return folder / f"attempt-{max(numbers, default=0) + 1:04d}.jsonl"


def attempt_logs(folder: Path) -> list[Path]:
    """The attempt files in ``folder``, oldest first (by number, not by name)."""
    found = [(int(m.group(1)), p) for p in Path(folder).glob(ATTEMPT_GLOB)
             if (m := _ATTEMPT.match(p.name))]
    return [p for _, p in sorted(found)]


def read_file_log(path: Path) -> list[dict]:
    """The ``{"step", "data"}`` records of one verl log file (see ``scan_file_log``)."""
    return scan_file_log(path)[0]


def scan_file_log(path: Path) -> tuple[list[dict], int]:
    """(records, lines skipped) of one verl log file.

    Blank lines are ignored; a line that is not a record is skipped and counted: the last line
    cut short when the job was killed, or garbage.
    """
    records, skipped = [], 0
    for record in iter_jsonl(path):
        if (isinstance(record, dict) and isinstance(record.get("step"), int)
                and isinstance(record.get("data"), dict)):
            records.append(record)
        else:
            skipped += 1
    return records, skipped


def merge_attempts(paths: list[Path]) -> dict[int, dict]:
    """Step -> metrics over the attempt files, oldest first.

    Records of one step within a file are merged (later values win). A later attempt's training
    record of a step replaces the earlier attempts' record of it; a record without training
    metrics is only merged in: on resume verl validates the checkpoint and logs that at the
    checkpoint's step, which must not erase the step's training metrics.
    """
    merged: dict[int, dict] = {}
    for path in paths:
        this_attempt: dict[int, dict] = {}
        for record in read_file_log(path):
            this_attempt.setdefault(record["step"], {}).update(record["data"])
        for step, data in this_attempt.items():
            merged[step] = data if TRAINING_KEY in data else {**merged.get(step, {}), **data}
    return dict(sorted(merged.items()))


def lenient_only_set(folder: Path | None) -> set[tuple[str, str]] | None:
    """The (output, ground truth) pairs our reward function flagged lenient-only (its
    ``<host>-<pid>.jsonl`` records); None when the folder is absent (a run from before)."""
    if folder is None or not Path(folder).is_dir():
        return None
    return {(r["output"], str(r["gts"])) for path in Path(folder).glob("*.jsonl")
            for r in iter_jsonl(path) if isinstance(r, dict) and "output" in r}


def rollout_monitor(folder: Path | None, flagged_dir: Path | None = None) -> dict[int, float]:
    """verl step -> share of its dumped rollouts flagged ``lenient_only`` (the reward-hacking
    monitor), from verl's rollout dumps (``trainer.rollout_data_dir``: ``<step>.jsonl``, one
    response a line with our reward function's extra keys).

    verl dumps the batch it trains on (after DAPO's group filter), so with dynamic sampling the
    share is over the kept groups, not every response sampled (the local backend's). A resumed
    run rewrites the steps it re-runs; a cut-off line is skipped; a file without the key (a run
    from before the monitor) gives no value. verl's v1 trainer dumps no extra keys: then a
    rollout is flagged when our reward function recorded its (output, ground truth) in
    ``flagged_dir`` (:func:`lenient_only_set`), and an empty record set means none was.
    """
    monitor: dict[int, float] = {}
    if folder is None or not Path(folder).is_dir():
        return monitor
    flagged = lenient_only_set(flagged_dir)
    for path in Path(folder).glob("*.jsonl"):
        if not path.stem.isdigit():
            continue
        flags = []
        for record in iter_jsonl(path):
            if not isinstance(record, dict):
                continue
            flag = record.get("lenient_only")
            if flag is None and flagged is not None and "output" in record:
                flag = (record["output"], str(record.get("gts"))) in flagged
            if isinstance(flag, (int, float)):  # bool included; null and text are skipped
                flags.append(float(flag))
        if flags:
            monitor[int(path.stem)] = sum(flags) / len(flags)
    return monitor


def read_batch_stats(folder: Path | None) -> dict[int, dict]:
    """Our step -> the estimator's statistics of the trained batch (``<step>.json`` files the
    plugin's estimator writes; a resumed run rewrites the steps it re-runs)."""
    stats: dict[int, dict] = {}
    if folder is None or not Path(folder).is_dir():
        return stats
    for path in Path(folder).glob("*.json"):
        if path.stem.isdigit():
            try:
                stats[int(path.stem)] = json.loads(path.read_text())
            except ValueError:
                continue
    return stats


def dump_batch_stats(folder: Path | None) -> dict[int, dict]:
    """verl step -> the trained batch's statistics from its rollout dump, for runs whose
    estimator is verl's own (PPO's GAE): every response trains, correct = verdict 1, groups
    from the uid (``<prompt uid>_<sample>_<output>``); the reward is the 0/1 verdict."""
    stats: dict[int, dict] = {}
    if folder is None or not Path(folder).is_dir():
        return stats
    for path in Path(folder).glob("*.jsonl"):
        records = [r for r in iter_jsonl(path) if isinstance(r, dict) and "score" in r]
        if not path.stem.isdigit() or not records:
            continue
        correct = [float(r["score"]) > 0.5 for r in records]
        groups: dict[str, list[bool]] = {}
        for r, ok in zip(records, correct):
            groups.setdefault(str(r.get("uid", "")).rsplit("_", 2)[0], []).append(ok)
        n, n_pos = len(correct), sum(correct)
        stats[int(path.stem)] = {
            "batch_responses": n, "n_positive": n_pos, "n_negative": n - n_pos,
            "frac_positive": n_pos / n, "frac_negative": (n - n_pos) / n,
            "trained_reward_mean": sum(float(r["score"]) for r in records) / n,
            "frac_groups_all_correct": sum(all(g) for g in groups.values()) / len(groups),
            "frac_groups_all_wrong": sum(not any(g) for g in groups.values()) / len(groups),
        }
    return stats


def shape_columns(data: dict, shape: dict) -> dict:
    """Columns the local backend counts and verl does not log, derived from the run's shape.

    ``shape``: ``prompts_per_step``, ``rollouts_per_prompt``, ``mini_batch_prompts``. verl takes
    one optimizer step per mini-batch (``ppo_epochs`` 1). DAPO's group filter logs the samples it
    evicted (uniform groups) and the surplus it discarded once the batch was full
    (``training/filter_groups/...``): with the trained ones they are every sample drawn. verl's
    v1 sampler refills a batch until it is full, so the generation rounds are the sampled groups
    over the prompts per step, rounded up.
    """
    prompts, n = shape["prompts_per_step"], shape["rollouts_per_prompt"]
    extra = sum(float(data.get(f"training/filter_groups/{k}", 0) or 0)
                for k in ("evicted_samples", "discarded_surplus_samples"))
    sampled = prompts + extra / n
    return {
        "groups_sampled": sampled,
        "gen_rounds": math.ceil(sampled / prompts - 1e-9),
        "frac_groups_dropped": 1.0 - prompts / sampled,
        "optimizer_steps": -(-prompts // shape["mini_batch_prompts"]),
    }


def _our_name(name: str) -> str | None:
    """``polarity/<x>`` -> ``<x>``; verl's v1 trainer logs the loss's metrics as
    ``actor/polarity/<x>``; None for verl's own metrics."""
    for prefix in (OUR_PREFIX, "actor/" + OUR_PREFIX):
        if name.startswith(prefix):
            return name[len(prefix):]
    return None


def to_metrics_rows(merged: dict[int, dict], *, algorithm: str, seed: int,
                    monitor: dict[int, float] | None = None,
                    stats: dict[int, dict] | None = None,
                    shape: dict | None = None,
                    dumped: dict[int, dict] | None = None) -> list[dict]:
    """Rows sorted by step in the local backend's metrics.jsonl schema.

    verl counts training steps from 1 (step 0 is the validation before training, which has no
    training row and is dropped): verl step s is our step s - 1. Our names come first, then every
    verl metric as ``verl/<name>``; a ``polarity/<name>`` metric from our plugin wins over a
    mapped verl one. ``monitor`` (verl step -> share, :func:`rollout_monitor`) gives
    ``lenient_only_frac``.
    """
    monitor, stats, dumped = monitor or {}, stats or {}, dumped or {}
    rows = []
    for step, data in sorted(merged.items()):
        if step < 1:
            continue
        row = {"step": step - 1, "algorithm": algorithm, "seed": seed}
        row.update({ours: data[theirs] for theirs, ours in VERL_TO_OURS.items() if theirs in data})
        if step in monitor:
            row["lenient_only_frac"] = monitor[step]
        row.update(stats.get(step - 1) or dumped.get(step, {}))
        if shape:
            row.update(shape_columns(data, shape))
        ours = {name: _our_name(name) for name in data}
        row.update({ours[name]: value for name, value in data.items() if ours[name]})
        if shape and row.get("popo/stepped") is not None:  # POPO skips mini-batches without positives
            row["optimizer_steps"] = round(row["popo/stepped"] * row["optimizer_steps"])
        row.update({VERL_PREFIX + name: value for name, value in data.items() if not ours[name]})
        rows.append(row)
    return rows


def collect_metrics(log_folder: Path, out: Path, *, algorithm: str, seed: int,
                    rollouts: Path | None = None, batch_stats: Path | None = None,
                    shape: dict | None = None, lenient_only: Path | None = None) -> list[dict]:
    """Merge every attempt log in ``log_folder`` (the monitor from the rollout dumps in
    ``rollouts``, the estimator's ``batch_stats``, the columns ``shape`` derives) into ``out``
    (metrics.jsonl); the rows."""
    rows = to_metrics_rows(merge_attempts(attempt_logs(log_folder)), algorithm=algorithm,
                           seed=seed, monitor=rollout_monitor(rollouts, lenient_only),
                           stats=read_batch_stats(batch_stats), shape=shape,
                           dumped=dump_batch_stats(rollouts))
    write_jsonl(rows, out)  # verl's orjson wrote NaN as null; it stays null (read alike)
    return rows
