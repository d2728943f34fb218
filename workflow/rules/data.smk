# Data stage: every dataset is written once, in verl's parquet row format.


rule prepare_synthetic:
    output:
        warmup=DATA / f"{SYNTHETIC}-warmup.parquet",
        train=DATA / f"{SYNTHETIC}-train.parquet",
        test=DATA / f"{SYNTHETIC}-test.parquet",
    params:
        settings=as_json(config["synthetic"]),
        seed=config["synthetic"]["seed"],
    log:
        LOGS / "data" / "synthetic.log",
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        **cpu_job(mem_mb=2000, runtime=10),
    shell:
        "python -m polarity data-synthetic --settings {params.settings:q} --seed {params.seed}"
        " --warmup {output.warmup} --train {output.train} --test {output.test} > {log} 2>&1"


rule prepare_hub_train:
    output:
        DATA / "{dataset}-train.parquet",
    params:
        options=cli_options(
            source=config["train_data"]["source"],
            template=config["train_data"]["template"],
            limit=config["train_data"]["limit"],
        ),
    wildcard_constraints:
        dataset="|".join(TRAIN_SETS),
    log:
        LOGS / "data" / "{dataset}-train.log",
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        **cpu_job(mem_mb=16000, runtime=60),
    shell:
        "python -m polarity data-hub --name {wildcards.dataset} --out {output} {params.options}"
        " > {log} 2>&1"


rule prepare_benchmark:
    output:
        DATA / "{benchmark}.parquet",
    params:
        options=lambda w: cli_options(
            source=config["evaluate"]["sources"].get(w.benchmark),
            template=config["evaluate"]["template"],
            limit=config["evaluate"]["limit"],
        ),
    wildcard_constraints:
        benchmark="|".join(HUB_BENCHMARKS),
    log:
        LOGS / "data" / "{benchmark}.log",
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        **cpu_job(mem_mb=8000, runtime=30),
    shell:
        "python -m polarity data-benchmark --name {wildcards.benchmark} --out {output}"
        " {params.options} > {log} 2>&1"


rule check_contamination:
    input:
        train=list(contamination_train_sets().values()),
        benchmarks=[DATA / f"{b}.parquet" for b in BENCHMARKS],
    output:
        summary=report(R / "contamination" / "summary.tsv", caption="../report/contamination.rst",
                       category="Data"),
        matches=R / "contamination" / "matches.jsonl",
    params:
        pairs=" ".join(
            [f"--train {name}={path}" for name, path in contamination_train_sets().items()]
            + [f"--benchmark {b}={DATA / (b + '.parquet')}" for b in BENCHMARKS]
        ),
    log:
        LOGS / "data" / "contamination.log",
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        **cpu_job(mem_mb=4000, runtime=30),
    shell:
        "python -m polarity contamination {params.pairs} --out {output.summary}"
        " --matches {output.matches} > {log} 2>&1"
