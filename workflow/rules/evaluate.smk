# Evaluate stage: n samples per problem for every policy (and each base model) on every
# benchmark, scored by math-verify; one row per (problem, sample). A benchmark is split into
# evaluate.shards jobs (contiguous blocks of problems), gathered into one file per
# (policy, benchmark): a killed job costs one shard. Within a shard, the sampled responses are
# kept in state/ until scored, so a job killed while scoring does not sample again.

rule evaluate_shard:
    input:
        policy=policy_input,
        data=DATA / "{benchmark}.parquet",
    output:
        temp(EVAL / RUN / "{benchmark}" / f"shard{{shard}}-of-{SHARDS}.parquet"),
    params:
        settings=result_settings("evaluate", eval_values()),
        shards=SHARDS,
        state=lambda w: EVAL / RUN.format(**w) / "state" / f"{w.benchmark}-shard{w.shard}-of-{SHARDS}.parquet",
    wildcard_constraints:
        benchmark=r"[^/]+",
        shard=r"\d+",
    log:
        LOGS / "evaluate" / RUN / "{benchmark}" / "shard{shard}.log",
    conda:
        "../../envs/vllm-eval.yaml" if VLLM else "../../envs/cpu.yaml"
    threads: config["evaluate"]["threads"]
    resources:
        speed=speed_settings("evaluate", eval_values()),
        **(
            gpu_job(config["evaluate"]["tensor_parallel_size"], mem_mb=64000,
                    runtime=lambda wc, attempt: 240 * attempt)
            if VLLM
            else cpu_job(mem_mb=4000, runtime=lambda wc, attempt: 60 * attempt)
        ),
    shell:
        "python -m polarity evaluate --policy {input.policy} --data {input.data}"
        " --settings {params.settings:q} --speed {resources.speed:q}"
        " --shard {wildcards.shard} --shards {params.shards}"
        " --state {params.state} --out {output} >> {log} 2>&1"


rule gather_evaluation:
    input:
        shard_files,
    output:
        EVAL / RUN / "{benchmark}.parquet",
    wildcard_constraints:
        benchmark=r"[^/]+",
    log:
        LOGS / "evaluate" / RUN / "{benchmark}" / "gather.log",
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        **cpu_job(mem_mb=8000, runtime=30),
    shell:
        "python -m polarity eval-gather --out {output} {input} > {log} 2>&1"
