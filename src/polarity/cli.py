"""The ``polarity`` command line: one thin subcommand per workflow rule.

Each subcommand parses its arguments and calls one library function; Snakemake rules call
these (``python -m polarity <stage> ...``), and so can a user by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _log(msg: str) -> None:
    print(msg, flush=True)


def cmd_data_synthetic(args) -> None:
    from .data.rows import write_parquet
    from .data.synthetic import ArithSpec, Teacher, make_splits, to_frame
    from .settings import fill_defaults

    settings = fill_defaults("synthetic", args.settings)
    spec = ArithSpec(**settings["spec"])
    teacher = Teacher(**settings["teacher"]) if settings["teacher"] else None
    sizes = settings["sizes"]
    n_warm, n_train, n_test = sizes["warmup"], sizes["train"], sizes["test"]
    warm_train, test = make_splits(n_warm + n_train, n_test, seed=args.seed, spec=spec)
    template = settings["prompt_template"]
    write_parquet(to_frame(warm_train[:n_warm], "warmup", template, teacher=teacher,
                           seed=args.seed, allow_negative=spec.allow_negative), args.warmup)
    write_parquet(to_frame(warm_train[n_warm:], "train", template), args.train)
    write_parquet(to_frame(test, "test", template), args.test)
    _log(f"synthetic-arith: {n_warm} warm-up, {n_train} train, {n_test} test problems ({spec}; "
         f"warm-up teacher: {teacher or 'the reference solutions'})")


def cmd_data_hub(args) -> None:
    from .data.hub import load_train_dataset
    from .data.rows import write_parquet

    seed = {} if args.seed is None else {"seed": args.seed}
    frame = load_train_dataset(args.name, source=args.source, template=args.template,
                               limit=args.limit, **seed)
    write_parquet(frame, args.out)
    _log(f"{args.name}: {len(frame)} rows -> {args.out}")


def cmd_data_benchmark(args) -> None:
    from .data.hub import prepare_benchmark

    frame = prepare_benchmark(args.name, args.out, source=args.source, template=args.template,
                              limit=args.limit)
    _log(f"{args.name}: {len(frame)} problems -> {args.out}")


def cmd_model_tiny(args) -> None:
    import pandas as pd
    import torch

    from .backends.local.warmup import make_tiny_model
    from .settings import TinyModelSpec

    torch.set_num_threads(max(1, args.threads))
    spec = TinyModelSpec(**args.settings, **args.speed)
    record = make_tiny_model(pd.read_parquet(args.warmup), args.out, spec=spec, seed=args.seed,
                             max_new_tokens=args.max_new_tokens, log=_log)
    _log(json.dumps({k: record[k] for k in ("parameters", "warmup_steps", "validation_accuracy")}))


def cmd_model_link(args) -> None:
    """A config that names a hub id or a local path: record it, load nothing."""
    from .files import write_text

    write_text(args.out, json.dumps({"path": args.path}) + "\n")


def cmd_train(args) -> None:
    from .backends.local.trainer import train
    from .settings import TrainSettings

    settings = TrainSettings.from_dict({**args.settings, **args.speed})
    if settings.backend != "local":
        raise SystemExit(f"train: backend {settings.backend!r} is not handled by 'polarity train'")
    train(model_path=resolve_model(args.model), data_path=args.data, algorithm=args.algorithm,
          params=args.params, settings=settings, seed=args.seed, final_dir=args.out,
          metrics_path=args.metrics, state_dir=args.state, log=_log)


def _study_sections(args) -> dict:
    study = args.study
    missing = [k for k in ("study", "train", "verl") if k not in study]
    if missing:
        raise SystemExit(f"--study: missing section(s) {', '.join(missing)}")
    return study


def cmd_train_verl(args) -> None:
    from .backends.verl import run

    kwargs = dict(model=args.model_name, algorithm=args.algorithm, seed=args.seed,
                  model_path=resolve_model(args.model), train_file=args.data,
                  val_file=args.val or args.data, run_dir=args.run_dir, log=_log)
    if args.check:  # compose + validate with verl's config and write the script; no launch
        run.prepare(_study_sections(args), check_data=not args.no_data_check, **kwargs)
        return
    run.train(_study_sections(args), metrics_out=args.metrics, done_out=args.done, **kwargs)


def cmd_verl_merge(args) -> None:
    from .backends.verl.run import merge

    merge(args.done, args.out, log=_log)


def cmd_evaluate(args) -> None:
    from .settings import EvalSettings
    from .evaluation.evaluate import evaluate

    evaluate(resolve_model(args.policy), args.data, EvalSettings.from_dict({**args.settings, **args.speed}),
             args.out, shard=args.shard, shards=args.shards, state_path=args.state, log=_log)


def cmd_eval_gather(args) -> None:
    from .evaluation.evaluate import gather_shards

    out = gather_shards(args.shards, args.out)
    _log(f"{len(args.shards)} shards, {len(out)} rows -> {args.out}")


def cmd_contamination(args) -> None:
    import pandas as pd

    from .data.contamination import COLUMNS, contamination
    from .files import atomic_write, write_jsonl

    def questions(path) -> list[str]:
        return [info["question"] for info in pd.read_parquet(path, columns=["extra_info"])["extra_info"]]

    def named(pairs: list[str]) -> dict[str, list[str]]:
        out = {}
        for pair in pairs:
            name, sep, path = pair.partition("=")
            if not sep:
                raise SystemExit(f"contamination: expected NAME=PATH, got {pair!r}")
            out[name] = questions(path)
        return out

    summary, matches = contamination(named(args.train), named(args.benchmark))
    frame = pd.DataFrame(summary, columns=COLUMNS)
    atomic_write(args.out, lambda tmp: frame.to_csv(tmp, sep="\t", index=False))
    write_jsonl(matches, args.matches)
    for row in summary:
        _log(f"{row['benchmark']} in {row['train_set']}: {row['exact']} exact, "
             f"{row['normalized']} normalized, {row['near']} near of {row['problems']}")


def cmd_report(args) -> None:
    from .report.render import render_notebook

    parameters = {"results_dir": str(Path(args.results).resolve()), "study": args.study}
    if args.figures:
        parameters["figures_dir"] = str(Path(args.figures).resolve())
    render_notebook(Path(args.notebook), Path(args.out_ipynb), Path(args.out_html), parameters)


def resolve_model(path: str) -> str:
    """A model directory, or the ``model.json`` link file naming a hub id / local path."""
    p = Path(path)
    if p.is_file() and p.suffix == ".json":
        return json.loads(p.read_text())["path"]
    if (p / "model.json").is_file() and not (p / "config.json").exists():
        return json.loads((p / "model.json").read_text())["path"]
    return path


def _json(text: str):
    from .settings import parse_json_arg

    return parse_json_arg(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polarity", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data-synthetic", help="write the synthetic task's warm-up/train/test parquet")
    p.add_argument("--settings", type=_json, default={})
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--warmup", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.set_defaults(func=cmd_data_synthetic)

    p = sub.add_parser("data-hub", help="normalize a hub training set to verl's parquet format")
    p.add_argument("--name", required=True)
    p.add_argument("--source", default=None, help="local copy in the source schema (default: the hub)")
    p.add_argument("--template", default=None)
    p.add_argument("--seed", type=int, default=None,
                   help="another stratified subset than the library's (math-stratified-25)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_data_hub)

    p = sub.add_parser("data-benchmark", help="normalize a hub benchmark to verl's parquet format")
    p.add_argument("--name", required=True)
    p.add_argument("--source", default=None, help="local copy in the source schema (default: the hub)")
    p.add_argument("--template", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_data_benchmark)

    p = sub.add_parser("model-tiny", help="make the tiny base model locally (tokenizer, Qwen2, warm-up)")
    p.add_argument("--warmup", required=True)
    p.add_argument("--settings", type=_json, default={})
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--max-new-tokens", type=int, required=True,
                   help="the longest sampled answer in the warm-up's accuracy checks")
    p.add_argument("--speed", type=_json, default={},
                   help="settings that change how fast, not what (polarity.settings.SPEED_SETTINGS)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_model_tiny)

    p = sub.add_parser("model-link", help="record a hub id or local model path")
    p.add_argument("--path", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_model_link)

    p = sub.add_parser("train", help="train one (model, algorithm, seed) run with the local backend")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--algorithm", required=True)
    p.add_argument("--params", type=_json, default={})
    p.add_argument("--settings", type=_json, default={})
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="final HF policy directory")
    p.add_argument("--metrics", required=True)
    p.add_argument("--state", required=True, help="checkpoints + live metrics (kept across restarts)")
    p.add_argument("--speed", type=_json, default={},
                   help="settings that change how fast, not what (polarity.settings.SPEED_SETTINGS)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("train-verl", help="train one (model, algorithm, seed) run with verl")
    p.add_argument("--study", type=_json, required=True,
                   help="JSON with the study's study/train/verl/algorithm_params sections")
    p.add_argument("--model-name", required=True)
    p.add_argument("--model", required=True, help="model directory or model.json link")
    p.add_argument("--data", required=True, help="prepared training parquet")
    p.add_argument("--val", default=None, help="validation parquet (default: the training data)")
    p.add_argument("--algorithm", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--run-dir", required=True, help="the run's folder (state/ holds checkpoints)")
    p.add_argument("--metrics", help="metrics.jsonl to write")
    p.add_argument("--done", help="manifest of the final checkpoint to write")
    p.add_argument("--check", action="store_true",
                   help="compose and validate the verl config and write the launch script only")
    p.add_argument("--no-data-check", action="store_true", help="with --check: skip prompt lengths")
    p.set_defaults(func=cmd_train_verl)

    p = sub.add_parser("verl-merge", help="verl FSDP checkpoint -> Hugging Face model (model merger)")
    p.add_argument("--done", required=True, help="manifest written by train-verl")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_verl_merge)

    p = sub.add_parser("evaluate", help="sample and score one policy on one shard of a benchmark")
    p.add_argument("--policy", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--settings", type=_json, default={})
    p.add_argument("--shard", type=int, default=0, help="0-based shard index")
    p.add_argument("--speed", type=_json, default={},
                   help="settings that change how fast, not what (polarity.settings.SPEED_SETTINGS)")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--state", default=None,
                   help="where sampled responses wait to be scored (resume after a kill)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("eval-gather", help="concatenate a benchmark's evaluation shards")
    p.add_argument("--out", required=True)
    p.add_argument("shards", nargs="+")
    p.set_defaults(func=cmd_eval_gather)

    p = sub.add_parser("contamination", help="count benchmark problems found in the training data")
    p.add_argument("--train", action="append", default=[], help="NAME=PATH of a training parquet")
    p.add_argument("--benchmark", action="append", default=[], help="NAME=PATH of a benchmark parquet")
    p.add_argument("--out", required=True, help="summary TSV, one row per (training set, benchmark)")
    p.add_argument("--matches", required=True, help="JSONL of every matched pair")
    p.set_defaults(func=cmd_contamination)

    p = sub.add_parser("report", help="execute a report notebook with papermill and render HTML")
    p.add_argument("--notebook", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--study", required=True)
    p.add_argument("--out-ipynb", required=True)
    p.add_argument("--out-html", required=True)
    p.add_argument("--figures", default=None, help="folder for each figure as <name>.png")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
