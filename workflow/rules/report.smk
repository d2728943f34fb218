# Report stage: papermill executes the notebook templates on the results; nbconvert renders
# them to HTML without code (the executed notebooks keep it). Every figure is also its own PNG
# with its own caption (workflow/report/figures/<notebook>/<name>.rst) in `snakemake --report`.


rule report_training:
    input:
        notebook=NOTEBOOKS / "training.ipynb",
        metrics=metrics_targets(),
    output:
        *report_figures("training", "Training"),
        ipynb=REPORT / "training.ipynb",
        html=report(REPORT / "training.html", caption="../report/training.rst", category="Notebooks"),
    params:
        results=R,
        study=config["study"],
        figures=REPORT / "figures" / "training",
    log:
        LOGS / "report" / "training.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **cpu_job(mem_mb=4000, runtime=20),
    shell:
        "python -m polarity report --notebook {input.notebook} --results {params.results} --study {params.study}"
        " --figures {params.figures} --out-ipynb {output.ipynb} --out-html {output.html} > {log} 2>&1"


rule report_evaluation:
    input:
        notebook=NOTEBOOKS / "evaluation.ipynb",
        samples=eval_targets(),
        metrics=metrics_targets(),
        contamination=R / "contamination" / "summary.tsv",
    output:
        *report_figures("evaluation", "Evaluation"),
        ipynb=REPORT / "evaluation.ipynb",
        html=report(REPORT / "evaluation.html", caption="../report/evaluation.rst", category="Notebooks"),
    params:
        results=R,
        study=config["study"],
        figures=REPORT / "figures" / "evaluation",
    log:
        LOGS / "report" / "evaluation.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        **cpu_job(mem_mb=4000, runtime=20),
    shell:
        "python -m polarity report --notebook {input.notebook} --results {params.results} --study {params.study}"
        " --figures {params.figures} --out-ipynb {output.ipynb} --out-html {output.html} > {log} 2>&1"
