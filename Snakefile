"""vdm-bench: every objective x schedule x seed trained, sampled, scored (FID, NLL), tabulated.

Run: snakemake --cores all            (default grid: config/config.yaml)
     snakemake --report results/report.html
Rules live in workflow/rules/; the science lives in the vdm package (python -m vdm ...).
"""

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from vdm.config import coerce_command_line_lists, describe_schema_error

min_version("9.0")


configfile: "config/config.yaml"


coerce_command_line_lists(config)  # --config seeds=[0,1] arrives as strings
try:  # unknown keys, names and wrong types stop here, before any job, naming the key
    validate(config, "config/schema.yaml")
except WorkflowError as error:
    raise WorkflowError(describe_schema_error(error) or str(error)) from None


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
