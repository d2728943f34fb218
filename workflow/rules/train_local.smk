# The local backend: one process on CPU or one GPU (polarity.backends.local).


rule train_local:
    input:
        model=model_input,
        data=train_data(),
    output:
        final=directory(RUNS / RUN / "final"),
        metrics=RUNS / RUN / "metrics.jsonl",
    params:
        state=lambda w: RUNS / RUN.format(**w) / "state",
        settings=result_settings("train", {**config["train"], "backend": config["backend"]}),
        algorithm_params=lambda w: as_json(config["algorithm_params"].get(w.algorithm, {})),
    log:
        LOGS / "train" / RUN / "train.log",
    conda:
        "../../envs/cpu.yaml"
    threads: config["train"]["threads"]
    resources:
        speed=speed_settings("train"),
        **(
            gpu_job(1, mem_mb=64000, runtime=lambda wc, attempt: 1440 * attempt)
            if config["train"]["device"].startswith("cuda")
            else cpu_job(mem_mb=4000, runtime=lambda wc, attempt: 120 * attempt)
        ),
    shell:
        "python -m polarity train --model {input.model} --data {input.data}"
        " --algorithm {wildcards.algorithm} --params {params.algorithm_params:q}"
        " --settings {params.settings:q} --speed {resources.speed:q} --seed {wildcards.seed}"
        " --out {output.final} --metrics {output.metrics} --state {params.state}"
        " >> {log} 2>&1"
