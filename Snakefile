# The polarity workflow: sample polarity in RLVR, from data to a rendered report.
#   snakemake --cores 2                                   the embedded default study (CPU)
#   snakemake --profile profiles/slurm --configfile presets/a3po.yaml   a paper study on SLURM
from snakemake.utils import min_version

min_version("9.0")


# The embedded default study, unless a study is given with --configfile (a preset is a whole
# study: merging it into the default would add the default's tiny model to every preset).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# common.smk validates the study before any job runs.
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        report_targets(),
        policy_targets(),
    default_target: True
