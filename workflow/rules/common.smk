# Paths, the per-cell run configuration and resources. Wiring only: no science here.
import json
import os
import shlex

from vdm.config import run_config_from_dict, workflow_cell
from vdm.data import dataset_info

ENV = "../envs/vdm.yaml"
# Jobs (local, cluster, conda envs) import vdm from this checkout.
shell.prefix(f"export PYTHONPATH={shlex.quote(workflow.basedir)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")

DATASET = config["dataset"]
RESULTS = "results"
DATA_JSON = f"{RESULTS}/{DATASET}/data.json"
RUN_DIR = f"{RESULTS}/{DATASET}/runs/{{objective}}/{{schedule}}/seed{{seed}}"
FID_DIR = f"{RESULTS}/{DATASET}/fid"
EXTRACTOR = config["fid"]["feature_extractor"]
LOGS = f"{RESULTS}/logs/{DATASET}"

wildcard_constraints:
    objective="|".join(config["objectives"]),
    schedule="|".join(config["schedules"]),
    seed=r"\d+",

dataset_info(DATASET)  # fails fast on an unknown dataset


def run_config(wildcards):
    """The complete configuration of one cell, as JSON (validated before any job starts).

    Only settings of this cell enter it, so adding objectives, schedules or seeds to the grid
    never changes the params of finished cells (Snakemake would rerun them otherwise)."""
    cell = workflow_cell(config, wildcards.objective, wildcards.schedule, wildcards.seed)
    run_config_from_dict(cell)
    return json.dumps(cell, sort_keys=True)


def cells(pattern):
    return expand(pattern, objective=config["objectives"], schedule=config["schedules"],
                  seed=config["seeds"])


def rule_resources(name, runtime, mem_mb, **defaults):
    """Resources of a rule: config's resources.<name> over these defaults; gpu only if > 0."""
    chosen = {"runtime": runtime, "mem_mb": mem_mb, **defaults, **config["resources"].get(name, {})}
    if not chosen.get("gpu"):
        chosen.pop("gpu", None)
    return chosen


def classifier_weights():
    return f"{FID_DIR}/classifier.pt" if EXTRACTOR == "classifier" else []


def extractor_weights_arg():
    if EXTRACTOR == "classifier":
        return f"--weights {FID_DIR}/classifier.pt"
    path = config["fid"].get("feature_extractor_weights_path")
    return f"--weights {shlex.quote(path)}" if path else ""


METRICS = cells(f"{RUN_DIR}/metrics.json")
TABLES = expand(f"{RESULTS}/tables/{{name}}",
                name=["summary.csv", "summary.md", "summary.tex", "significance.csv"])
PLOT_NAMES = ["fid_heatmap", "nll_heatmap", "fid_bars", "nll_bars", "fid_vs_nll",
              "loss_curves", "samples_montage"]
PLOTS = expand(f"{RESULTS}/plots/{{name}}.png", name=PLOT_NAMES)
