# Evaluate stage: n samples per problem for every policy (and each base model) on every
# benchmark, scored by math-verify; one row per (problem, sample).


rule evaluate:
    input:
        policy=policy_input,
        data=DATA / "{benchmark}.parquet",
    output:
        EVAL / RUN / "{benchmark}.parquet",
    params:
        settings=as_json(
            {k: v for k, v in config["evaluate"].items() if k not in ("benchmarks", "include_base")}
        ),
    log:
        LOGS / "evaluate" / RUN / "{benchmark}.log",
    conda:
        "../../envs/cpu.yaml"
    threads: config["evaluate"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "python -m polarity evaluate --policy {input.policy} --data {input.data}"
        " --settings {params.settings:q} --out {output} > {log} 2>&1"
