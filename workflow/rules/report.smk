# Report stage: papermill executes the notebook templates on the results; nbconvert renders
# them to HTML (also shown by `snakemake --report`).


rule report_training:
    input:
        notebook=NOTEBOOKS / "training.ipynb",
        metrics=metrics_targets(),
    output:
        ipynb=REPORT / "training.ipynb",
        html=report(REPORT / "training.html", caption="../report/training.rst", category="Report"),
    params:
        results=R,
        study=config["study"],
    log:
        LOGS / "report" / "training.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **cpu_job(mem_mb=4000, runtime=20),
    shell:
        "python -m polarity report --notebook {input.notebook} --results {params.results} --study {params.study}"
        " --out-ipynb {output.ipynb} --out-html {output.html} > {log} 2>&1"


rule report_evaluation:
    input:
        notebook=NOTEBOOKS / "evaluation.ipynb",
        samples=eval_targets(),
    output:
        ipynb=REPORT / "evaluation.ipynb",
        html=report(REPORT / "evaluation.html", caption="../report/evaluation.rst", category="Report"),
    params:
        results=R,
        study=config["study"],
    log:
        LOGS / "report" / "evaluation.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **cpu_job(mem_mb=4000, runtime=20),
    shell:
        "python -m polarity report --notebook {input.notebook} --results {params.results} --study {params.study}"
        " --out-ipynb {output.ipynb} --out-html {output.html} > {log} 2>&1"
