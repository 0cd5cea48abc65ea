"""vdm-bench: every objective x schedule x seed trained, sampled, scored (FID, NLL), tabulated.

Run: snakemake --cores all            (default grid: config/config.yaml)
     snakemake --report results/report.html
Rules live in workflow/rules/; the science lives in the vdm package (python -m vdm ...).
"""

import sys

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from vdm.core.config import check_workflow_config, coerce_command_line_values, describe_schema_error

min_version("9.0")


configfile: "config/config.yaml"


SCHEMA = "config/schema.yaml"
with open(workflow.source_path(SCHEMA)) as schema_file:  # --config values arrive as strings
    coerce_command_line_values(config, yaml.safe_load(schema_file))
try:  # unknown keys, names and wrong types stop here, before any job, naming the key
    validate(config, SCHEMA)
    check_workflow_config(config)
except WorkflowError as error:  # one line, no traceback
    sys.exit(f"Invalid config: {describe_schema_error(error) or error}")
except ValueError as error:
    sys.exit(f"Invalid config: {error.args[0]}")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/snapshots.smk"
include: "workflow/rules/fid.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    default_target: True
    input:
        TABLES,
        PLOTS,
        TIMING,
