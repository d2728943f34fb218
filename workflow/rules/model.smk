# Model stage: the base policies every run starts from.


rule make_tiny_model:
    input:
        warmup=DATA / f"{SYNTHETIC}-warmup.parquet",
    output:
        directory(MODELS / "{model}"),
    params:
        settings=result_settings("tiny_model", {k: v for k, v in config["tiny_model"].items() if k != "seed"}),
        seed=config["tiny_model"]["seed"],
        max_new_tokens=config["train"]["max_response_tokens"],
    log:
        LOGS / "model" / "{model}.log",
    conda:
        "../../envs/cpu.yaml"
    threads: 2
    resources:
        speed=speed_settings("tiny_model", {k: v for k, v in config["tiny_model"].items() if k != "seed"}),
        **cpu_job(mem_mb=4000, runtime=30),
    shell:
        "python -m polarity model-tiny --warmup {input.warmup} --settings {params.settings:q}"
        " --speed {resources.speed:q}"
        " --seed {params.seed} --threads {threads} --max-new-tokens {params.max_new_tokens}"
        " --out {output} > {log} 2>&1"


rule link_model:
    output:
        MODELS / "{model}.json",
    params:
        path=lambda w: config["models"][w.model]["path"],
    log:
        LOGS / "model" / "{model}.link.log",
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        **cpu_job(mem_mb=500, runtime=5),
    shell:
        "python -m polarity model-link --path {params.path:q} --out {output} > {log} 2>&1"
