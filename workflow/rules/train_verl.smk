# The verl backend: Ray + FSDP + vLLM rollouts on GPU nodes (polarity.backends.verl).
# train_verl composes and validates verl's config, launches (multi-node through Ray on the
# SLURM allocation), resumes from the newest checkpoint in state/ (never a declared output),
# and writes metrics.jsonl; merge_verl turns the final FSDP checkpoint into final/.

# `verl.device: cpu` (CI, tiny models): a CPU job, one thread per worker process.
VERL_ON_CPU = config["verl"].get("device", "cuda") == "cpu"


def verl_train_resources():
    runtime = lambda wc, attempt: 2880 * attempt
    if VERL_ON_CPU:
        return cpu_job(nodes=config["verl"]["nnodes"], mem_mb=16000, runtime=runtime)
    return gpu_job(
        config["verl"]["gpus_per_node"],
        nodes=config["verl"]["nnodes"],
        mem_mb=512000,
        runtime=runtime,
    )


rule train_verl:
    input:
        model=model_input,
        data=train_data(),
        val=val_data(),
    output:
        done=RUNS / RUN / "verl_final.json",
        metrics=RUNS / RUN / "metrics.jsonl",
    params:
        run_dir=lambda w: RUNS / RUN.format(**w),
        study=as_json({k: config[k] for k in ("study", "train", "verl", "algorithm_params")}),
    log:
        LOGS / "train" / RUN / "train.log",
    conda:
        "../../envs/verl-gpu.yaml"
    threads: config["verl"]["gpus_per_node"] if VERL_ON_CPU else 16
    resources:
        **verl_train_resources(),
    shell:
        "python -m polarity train-verl --study {params.study:q} --model-name {wildcards.model}"
        " --model {input.model} --data {input.data} --val {input.val}"
        " --algorithm {wildcards.algorithm} --seed {wildcards.seed} --run-dir {params.run_dir}"
        " --metrics {output.metrics} --done {output.done} >> {log} 2>&1"


rule merge_verl:
    input:
        done=RUNS / RUN / "verl_final.json",
    output:
        final=directory(RUNS / RUN / "final"),
    log:
        LOGS / "train" / RUN / "merge.log",
    conda:
        "../../envs/verl-gpu.yaml"
    threads: 1 if VERL_ON_CPU else 8
    resources:
        **cpu_job(mem_mb=8000 if VERL_ON_CPU else 256000, runtime=120),
    shell:
        "python -m polarity verl-merge --done {input.done} --out {output.final} > {log} 2>&1"
