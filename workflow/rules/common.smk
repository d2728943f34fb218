# Helpers every stage shares: the checked config, result paths, target lists.
import json
import os
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, f"{workflow.basedir}/src")
from polarity.algorithms.registry import ALGORITHMS
from polarity.config import check_config, check_study
from polarity.data.registry import HUB_BENCHMARKS, TRAIN_SETS
from polarity.report.figures import FIGURES
from polarity.settings import EvalSettings, split_speed

# Fail before any job with a message naming the key, fill in the schema's defaults, then
# check what a schema cannot (mini-batch vs batch, algorithm parameters vs the registry).
check_config(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml")
validate(config, "../schemas/config.schema.yaml")
check_study(config)

# Every rule runs the package's CLI, `python -m polarity <stage>` (the `polarity` console
# script); PYTHONPATH makes it importable in the conda envs too.
shell.prefix("export PYTHONPATH=%s${{PYTHONPATH:+:$PYTHONPATH}}; " % (Path(workflow.basedir) / "src"))

R = Path(config["results_dir"]) / config["study"]
DATA = R / "data"
MODELS = R / "models"
RUNS = R / "runs"
EVAL = R / "eval"
REPORT = R / "report"
LOGS = R / "logs"
NOTEBOOKS = Path(workflow.basedir) / "notebooks"
RUN = "{model}/{algorithm}/seed{seed}"

SYNTHETIC = "synthetic-arith"
MODEL_NAMES = list(config["models"])
SEEDS = [str(s) for s in config["seeds"]]
BENCHMARKS = config["evaluate"]["benchmarks"]
SHARDS = config["evaluate"]["shards"]
VLLM = config["evaluate"]["engine"] == "vllm"


wildcard_constraints:
    model="|".join(MODEL_NAMES),
    algorithm="|".join(["base", *ALGORITHMS]),
    seed=r"\d+",


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def cli_options(**options):
    """``--name value`` for every option with a value (None/"" left out), shell-quoted."""
    return " ".join(
        f"--{name} {shlex.quote(str(value))}"
        for name, value in options.items()
        if value not in (None, "")
    )


def model_input(wildcards):
    """The base model: a directory made here, or a link file naming a hub id / path."""
    if "make" in config["models"][wildcards.model]:
        return MODELS / wildcards.model
    return MODELS / f"{wildcards.model}.json"


def train_data():
    name = config["train_data"]["name"]
    return DATA / (f"{SYNTHETIC}-train.parquet" if name == SYNTHETIC else f"{name}-train.parquet")


def val_data():
    """verl needs a validation file: the synthetic test split, else the training data."""
    if config["train_data"]["name"] == SYNTHETIC:
        return DATA / f"{SYNTHETIC}-test.parquet"
    return train_data()


def policy_input(wildcards):
    if wildcards.algorithm == "base":
        return model_input(wildcards)
    return RUNS / RUN.format(**wildcards) / "final"


def train_runs():
    return [
        dict(model=m, algorithm=a, seed=s)
        for m in MODEL_NAMES
        for a in config["algorithms"]
        for s in SEEDS
    ]


def eval_targets():
    runs = train_runs()
    if config["evaluate"]["include_base"]:
        runs += [dict(model=m, algorithm="base", seed="0") for m in MODEL_NAMES]
    return [EVAL / RUN.format(**r) / f"{b}.parquet" for r in runs for b in BENCHMARKS]


def metrics_targets():
    return [RUNS / RUN.format(**r) / "metrics.jsonl" for r in train_runs()]


def policy_targets():
    """Every run's trained policy (Hugging Face format), evaluated or not."""
    return [RUNS / RUN.format(**r) / "final" for r in train_runs()]


def report_targets():
    names = ["training", "evaluation"] if BENCHMARKS else ["training"]
    return [REPORT / f"{name}.html" for name in names]


def result_settings(section, values=None):
    """A section's settings that change results, as JSON: the rule's params (a change reruns
    the job). ``speed_settings`` holds the rest."""
    return as_json(split_speed(section, config[section] if values is None else values)[0])


def speed_settings(section, values=None):
    """A section's speed settings (``polarity.config.SPEED_SETTINGS``) as JSON: a resource
    (`speed`) of the rule, so changing threads, devices or batch sizes reruns nothing."""
    return as_json(split_speed(section, config[section] if values is None else values)[1])


def eval_values():
    """The evaluate section's keys that ``EvalSettings`` has (sampling, scoring, engine)."""
    names = {f.name for f in fields(EvalSettings)}
    return {k: v for k, v in config["evaluate"].items() if k in names}


def shard_files(wildcards):
    """The shards of one (policy, benchmark), in order."""
    return [
        EVAL / RUN.format(**wildcards) / wildcards.benchmark / f"shard{i}-of-{SHARDS}.parquet"
        for i in range(SHARDS)
    ]


def contamination_train_sets():
    """The training data of the study by name: the RL training set and, for the synthetic
    task, the warm-up split that made the base model."""
    sets = {config["train_data"]["name"]: train_data()}
    if config["train_data"]["name"] == SYNTHETIC:
        sets[f"{SYNTHETIC}-warmup"] = DATA / f"{SYNTHETIC}-warmup.parquet"
    return sets



def report_figures(notebook, category):
    """The notebook's figures as report items, one caption each."""
    items = [report(REPORT / "figures" / notebook / f"{name}.png",
                    caption=f"../report/figures/{notebook}/{name}.rst", category=category,
                    labels={"figure": name.replace("_", " ")})
             for name in FIGURES[notebook]]
    return items

# ---------------------------------------------------------------- where jobs run (SLURM)
# Local runs ignore these resources; under `--profile profiles/slurm` the executor plugin turns
# them into sbatch options. Partition and account: the study's `slurm` section, else the
# environment (POLARITY_SLURM_ACCOUNT, POLARITY_SLURM_CPU_PARTITION, ...), else the cluster's
# defaults.


def slurm_setting(key):
    value = config["slurm"][key]
    return value if value is not None else os.environ.get(f"POLARITY_SLURM_{key.upper()}") or None


def _placement(partition_key):
    where = {"slurm_partition": slurm_setting(partition_key), "slurm_account": slurm_setting("account")}
    return {k: v for k, v in where.items() if v}


def cpu_job(**resources):
    """Resources of a CPU job (data, model links, scoring, gathering, reports)."""
    return {**resources, **_placement("cpu_partition")}


def gpu_job(gpus_per_node, nodes=1, **resources):
    """Resources of a GPU job: `nodes` nodes with `gpus_per_node` GPUs of the study's model
    each (`--nodes`, and `--gres=gpu:<model>:<n>`, which SLURM counts per node)."""
    model = config["verl"]["gpu_model"]
    gres = f"gpu:{model}:{gpus_per_node}" if model else f"gpu:{gpus_per_node}"
    return {"nodes": nodes, "gres": gres, **resources, **_placement("gpu_partition")}
