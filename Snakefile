"""vdm-bench: every objective x schedule x seed trained, sampled, scored (FID, NLL), tabulated.

Run: snakemake --cores all            (default grid: config/config.yaml)
     snakemake --report results/report.html
Rules live in workflow/rules/; the science lives in the vdm package (python -m vdm ...).
"""

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/fid.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    default_target: True
    input:
        TABLES,
        PLOTS,
