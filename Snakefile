# The polarity workflow: sample polarity in RLVR, from data to a rendered report.
#   snakemake --cores 2                                   the embedded default study (CPU)
#   snakemake --profile profiles/slurm --configfile presets/a3po.yaml   a paper study on SLURM
import sys

from snakemake.utils import min_version, validate

min_version("9.0")
sys.path.insert(0, f"{workflow.basedir}/src")
from polarity.config import check_config, check_study


# The embedded default study, unless a study is given with --configfile (a preset is a whole
# study: merging it into the default would add the default's tiny model to every preset).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"



# Fail before any job with a message naming the key, fill in the schema's defaults, then
# check what a schema cannot (mini-batch vs batch, algorithm parameters vs the registry).
check_config(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml")
validate(config, "workflow/schemas/config.schema.yaml")
check_study(config)


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
