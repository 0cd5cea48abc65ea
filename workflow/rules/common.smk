# Paths, the per-cell run configuration and resources. Wiring only: no science here.
import json
import os
import shlex

from vdm.core.config import grid_name, load_config_file, run_config_from_dict, workflow_cell
from vdm.core.dataset_facts import dataset_info
from vdm.core.job_specs import (bayes_samplers, grid_snapshot_steps, job_spec,
                                snapshot_evaluate_spec, sweep_setting_names)
from vdm.core.known_density_settings import has_known_density
from vdm.model.setting_names import evaluation_settings
from vdm.training.snapshots import snapshot_file

ENV = "../envs/vdm.yaml"
# Jobs (local, cluster, conda envs) import vdm from this checkout.
shell.prefix(f"export PYTHONPATH={shlex.quote(workflow.basedir)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")

DATASET = config["dataset"]
RESULTS = "results"
# This grid's tables, plots and report: results/<name>/ (runs are shared between grids).
_DEFAULT = load_config_file(workflow.source_path("../../config/config.yaml"))
validate(_DEFAULT, workflow.source_path("../../config/schema.yaml"))
GRID = f"{RESULTS}/{grid_name(config, _DEFAULT)}"
DATA_JSON = f"{RESULTS}/{DATASET}/data.json"
CONDITIONAL = config["conditioning"]["enabled"]
CONDITIONING = "class" if CONDITIONAL else "uncond"
RUN_DIR = (f"{RESULTS}/{DATASET}/runs/{{conditioning}}/{{parameterization}}/{{objective}}/"
           f"{{schedule}}/seed{{seed}}")
RUN_NAME = "{conditioning}-{parameterization}-{objective}-{schedule}-seed{seed}"  # log files
FID_DIR = f"{RESULTS}/{DATASET}/fid"
EXTRACTOR = config["fid"]["feature_extractor"]
LOGS = f"{RESULTS}/logs/{DATASET}"
# Snakemake's benchmark files (wall and CPU seconds, peak memory of each job, written when the
# job succeeds): <BENCH>/<rule>/<run name or job name>.tsv, as the logs
BENCH = f"{RESULTS}/benchmarks/{DATASET}"

wildcard_constraints:
    conditioning=CONDITIONING,
    parameterization="|".join(config["parameterizations"]),
    objective="|".join(config["objectives"]),
    schedule="|".join(config["schedules"]),
    seed=r"\d+",

dataset_info(DATASET)  # fails fast on an unknown dataset


def run_config(wildcards):
    """The complete configuration of one cell, as JSON (validated before any job starts).

    Only settings of this cell enter it, so adding objectives, schedules or seeds to the grid
    never changes the params of finished cells (Snakemake would rerun them otherwise)."""
    cell = workflow_cell(config, wildcards.objective, wildcards.schedule, wildcards.seed,
                         wildcards.parameterization)
    run_config_from_dict(cell)
    return json.dumps(cell, sort_keys=True)


def cells(pattern):
    return expand(pattern, conditioning=CONDITIONING, parameterization=config["parameterizations"],
                  objective=config["objectives"], schedule=config["schedules"],
                  seed=config["seeds"])


def spec(command):
    """Params function: the JSON spec of a job (vdm.core.job_specs), its settings only, so a
    changed setting reruns exactly the jobs whose spec changed; per-model jobs take the seed."""
    return lambda wildcards: job_spec(command, config, wildcards.get("seed", 0)).to_json()


# Evaluation settings: every sampler method x steps x step spacing x guidance setting; the first
# is the primary setting (the evaluate job), the others are evaluated by one sweep job per model,
# without retraining.
SETTINGS = evaluation_settings(config["sample"]["methods"], config["sample"]["steps"],
                               config["guidance"]["kinds"], config["guidance"]["weights"],
                               config["sample"]["spacings"])
PRIMARY_SAMPLER = (SETTINGS[0].method, SETTINGS[0].steps, SETTINGS[0].spacing)
SWEEP_SETTINGS = list(sweep_setting_names(config))  # as the evaluate and sweep specs list them
GUIDED_SETTINGS = [s.name for s in SETTINGS if s.guidance.kind != "none" or (
    s.method, s.steps, s.spacing) == PRIMARY_SAMPLER] if config["guidance"]["kinds"] else []
NOISY_CLASSIFIER = (f"{RESULTS}/{DATASET}/guidance/noisy-classifier-lambda{config['logsnr_min']:g}"
                    f"_{config['logsnr_max']:g}.pt")


def sweep_fids(wildcards):
    """The fid.json of each further sampler setting of one model (none without a sweep)."""
    return expand(f"{RUN_DIR}/sweep/{{setting}}/fid.json", setting=SWEEP_SETTINGS, **wildcards)


def baseline_arg():
    """`--baseline objective=... schedule=...` of the configured baseline (empty: the default)."""
    base = config.get("baseline")
    return "--baseline " + " ".join(f"{k}={v}" for k, v in base.items()) if base else ""


def denoiser_floor_output():
    return {"denoiser_floor": f"{RUN_DIR}/denoiser_floor.json"} if DENOISER_FLOOR else {}


# The exact denoiser's samples of every unguided setting (evaluation.bayes_samplers; null: on
# exactly for a dataset with a known density), next to the model's samples of the same setting.
BAYES_SAMPLERS = bayes_samplers(config)
BAYES_SWEEP_SETTINGS = [s.name for s in SETTINGS[1:] if s.guidance.kind == "none"]


def bayes_samples_output(directory):
    """{bayes_samples: <directory>/bayes_samples.npz} when the exact denoiser samples, else {}."""
    return {"bayes_samples": f"{directory}/bayes_samples.npz"} if BAYES_SAMPLERS else {}


def bayes_sweep_output():
    """The exact denoiser's samples of the unguided sweep settings (none when off)."""
    if not (BAYES_SAMPLERS and BAYES_SWEEP_SETTINGS):
        return {}
    return {"bayes_sweep_samples": expand(f"{RUN_DIR}/sweep/{{setting}}/bayes_samples.npz",
                                          setting=BAYES_SWEEP_SETTINGS, allow_missing=True)}


def rule_resources(name, runtime, mem_mb, **defaults):
    """Resources of a rule: config's resources.<name> over these defaults; gpu only if > 0."""
    chosen = {"runtime": runtime, "mem_mb": mem_mb, **defaults, **config["resources"].get(name, {})}
    if not chosen.get("gpu"):
        chosen.pop("gpu", None)
    return chosen


def classifier_weights():
    """The dataset classifier: the FID extractor, and the judge of conditional samples' class."""
    return f"{FID_DIR}/classifier.pt" if EXTRACTOR == "classifier" or CONDITIONAL else []


def noisy_classifier_input():
    """The trained noisy classifier, for `classifier` guidance only: `oracle` guidance uses the
    exact p(c | z) of the dataset's known distribution and needs no file (and no job)."""
    return NOISY_CLASSIFIER if "classifier" in config["guidance"]["kinds"] else []


def path_options(**paths):
    """`--name path ...` of the given files (Snakemake's input/output entries), shell-quoted;
    absent ones (None or an empty list) are left out."""
    options = []
    for name, path in paths.items():
        if isinstance(path, list | tuple):
            path = path[0] if path else None
        if path:
            options.append(f"--{name.replace('_', '-')} {shlex.quote(str(path))}")
    return " ".join(options)


def guided_samples():
    """samples.npz of the lowest seed of every cell at every guided setting (guidance figure)."""
    lowest = min(config["seeds"])
    files = []
    for name in GUIDED_SETTINGS:
        primary = name == SETTINGS[0].name
        pattern = f"{RUN_DIR}/samples.npz" if primary else f"{RUN_DIR}/sweep/{name}/samples.npz"
        files += [f for f in cells(pattern) if f.endswith(f"seed{lowest}/samples.npz")
                  or f"seed{lowest}/sweep/" in f]
    return files


# Training budgets (train.snapshots): each step k below train.steps whose saved state
# (snapshots/step<k>.pt, written by the train job, not one of its declared outputs) is evaluated
# into SNAPSHOT_DIR by the run's evaluate job (evaluation.fused, one process per run) or by an
# evaluate_snapshot job of its own (split evaluation); none without snapshots.
SNAPSHOT_STEPS = grid_snapshot_steps(config["train"])
SNAPSHOT_JOBS = bool(SNAPSHOT_STEPS) and not config["evaluation"]["fused"]
SNAPSHOT_DIR = f"{RUN_DIR}/snapshots/step{{step}}"
SNAPSHOT_NAME = f"{RUN_NAME}-step{{step}}"  # its log and benchmark files


def snapshot_cells(pattern):
    """``pattern`` (with a ``{step}`` wildcard) for every cell and every step of SNAPSHOT_STEPS."""
    return expand(pattern, step=SNAPSHOT_STEPS, conditioning=CONDITIONING,
                  parameterization=config["parameterizations"], objective=config["objectives"],
                  schedule=config["schedules"], seed=config["seeds"])


def snapshot_outputs():
    """The fused evaluate job's outputs of the run's snapshots (SNAPSHOT_DIR of every step of
    SNAPSHOT_STEPS, with the run's wildcards left in; none without snapshots)."""
    names = {"samples": "samples.npz", "nll": "nll.json", "fid": "fid.json",
             "metrics": "metrics.json", **({"bayes_samples": "bayes_samples.npz"}
                                           if BAYES_SAMPLERS else {})}
    return {f"snapshot_{key}": expand(f"{SNAPSHOT_DIR}/{name}", step=SNAPSHOT_STEPS,
                                      allow_missing=True)
            for key, name in names.items()} if SNAPSHOT_STEPS else {}


def snapshot_spec(wildcards):
    """Params function: the evaluate_snapshot job's spec (vdm.core.job_specs)."""
    return snapshot_evaluate_spec(config, wildcards.seed).to_json()


def snapshot_model(wildcards, input):
    """Params function: the snapshot file the evaluate_snapshot job evaluates (beside its
    train.json, which lists it)."""
    return os.path.join(os.path.dirname(input.train), snapshot_file(int(wildcards.step)))


METRICS = cells(f"{RUN_DIR}/metrics.json")
SNAPSHOT_METRICS = snapshot_cells(f"{SNAPSHOT_DIR}/metrics.json")
DENOISER_FLOOR = config["evaluation"]["denoiser_floor"]
# the per-run floor (denoiser_floor.json): on a dataset with a known density the excess eps-error
# over the exact denoiser (excess_eps_error.csv/.png), else the memorising optimum's gap
EXCESS_EPS = DENOISER_FLOOR and has_known_density(DATASET)
MEMORISING_FLOOR = DENOISER_FLOOR and not EXCESS_EPS
# The FID reference's features and the FID floor, per reference: the train split keeps the plain
# names; another split, or fresh true samples of a known density (their number, and the floor's
# number of images: the runs' samples), gets its own files, so grids that compare with different
# references never overwrite each other's (and never rerun each other's evaluations).
_FID_SETTINGS = config["fid"]
REFERENCE_TAG = {"train": "", "test": "-test"}.get(
    _FID_SETTINGS["reference_split"], f"-fresh{_FID_SETTINGS['fresh_reference_size']}")
FID_REFERENCE = f"{FID_DIR}/{EXTRACTOR}/reference{REFERENCE_TAG}.json"
FID_FLOOR = (f"{FID_DIR}/{EXTRACTOR}/floor{REFERENCE_TAG}"
             + (f"-n{config['sample']['num_samples']}" if _FID_SETTINGS["reference_split"] == "fresh"
                else "") + ".json")


def evaluation_products():
    """Every per-run file the evaluation jobs write besides metrics.json (the aggregate rule
    requests them): Snakemake reruns a finished job for a changed spec only while every output
    has its recorded params, and an output the grid gains (a sweep setting, the denoiser floor,
    the exact denoiser's samples) has none, so that job reruns because a requested file is
    missing, not because its params changed."""
    files = [f for name in SWEEP_SETTINGS for f in cells(f"{RUN_DIR}/sweep/{name}/fid.json")]
    files += cells(f"{RUN_DIR}/denoiser_floor.json") if DENOISER_FLOOR else []
    if BAYES_SAMPLERS:
        files += cells(f"{RUN_DIR}/bayes_samples.npz")
        files += [f for name in BAYES_SWEEP_SETTINGS
                  for f in cells(f"{RUN_DIR}/sweep/{name}/bayes_samples.npz")]
        files += snapshot_cells(f"{SNAPSHOT_DIR}/bayes_samples.npz")
    return files
TABLE_NAMES = ["summary.csv", "summary.md", "summary.tex", "significance.csv", "claims.md",
               "claims.csv"]
TABLE_NAMES += ["denoiser_floor.csv"] if MEMORISING_FLOOR else []
TABLE_NAMES += ["excess_eps_error.csv"] if EXCESS_EPS else []
TABLE_NAMES += ["sampler_sweep.csv"] if len(config["sample"]["methods"]) * len(
    config["sample"]["steps"]) * len(config["sample"]["spacings"]) > 1 else []
TABLE_NAMES += ["guidance.csv"] if config["guidance"]["kinds"] else []
TABLE_NAMES += ["ranking_stability.md", "ranking_stability.csv"] if SNAPSHOT_STEPS else []
TABLE_NAMES += ["headline.md", "headline.rst"]  # the report's landing page
TABLES = expand(f"{GRID}/tables/{{name}}", name=TABLE_NAMES)
PLOT_NAMES = ["fid_heatmap", "nll_heatmap", "fid_bars", "nll_bars", "fid_vs_nll",
              "loss_curves", "samples_montage"]
PLOT_NAMES += ["fid_vs_nfe"] if "sampler_sweep.csv" in TABLE_NAMES else []
PLOT_NAMES += ["fid_vs_guidance", "accuracy_vs_guidance", "precision_recall_guidance",
               "guidance_samples"] if config["guidance"]["kinds"] else []
PLOT_NAMES += ["nll_ode_vs_elbo"] if config["nll"]["ode"]["enabled"] else []
PLOT_NAMES += ["denoiser_floor"] if MEMORISING_FLOOR else []
PLOT_NAMES += ["excess_eps_error"] if EXCESS_EPS else []
PLOT_NAMES += ["learning_curve_fid", "learning_curve_nll"] if SNAPSHOT_STEPS else []
PLOTS = expand(f"{GRID}/plots/{{name}}.png", name=PLOT_NAMES)

# Benchmarks: every rule that runs a job (local rules run in Snakemake's own process) writes
# Snakemake's benchmark file, <BENCH>/<rule>/<name>.tsv: the run's name for per-model rules, the
# job's for the others. BENCHMARKS: this grid's files (the jobs its targets need).
JOB_NAMES = {"prepare_data": "data", "fid_classifier": "classifier",
             "fid_reference": os.path.basename(FID_REFERENCE).replace("reference", EXTRACTOR, 1
                                                                       ).removesuffix(".json"),
             "fid_floor": os.path.basename(FID_FLOOR).replace("floor", EXTRACTOR, 1
                                                               ).removesuffix(".json"),
             "noisy_classifier": os.path.basename(NOISY_CLASSIFIER).removesuffix(".pt"),
             "evaluate_snapshot": SNAPSHOT_NAME}


def benchmark_file(rule):
    return f"{BENCH}/{rule}/{JOB_NAMES.get(rule, RUN_NAME)}.tsv"


EVALUATION_RULES = (["evaluate"] if config["evaluation"]["fused"] else
                    ["sample", "nll", "fid", *(["sweep"] if SWEEP_SETTINGS else [])])
BENCHMARKS = [benchmark_file(rule) for rule in (
    "prepare_data", "fid_reference", "fid_floor", *(["fid_classifier"] if classifier_weights()
                                                     else []),
    *(["noisy_classifier"] if noisy_classifier_input() else []))]
BENCHMARKS += [path for rule in ("train", *EVALUATION_RULES) for path in cells(benchmark_file(rule))]
BENCHMARKS += snapshot_cells(benchmark_file("evaluate_snapshot")) if SNAPSHOT_JOBS else []

# Where the grid's time went (the timing rule): each rule type's benchmark files and the result
# JSONs its processes wrote (for their start-up seconds; one file per process).
TIMING = [f"{GRID}/tables/timing.csv", f"{GRID}/tables/timing.md", f"{GRID}/plots/timing.png"]


def timing_results():
    """Rule type -> the result JSONs its jobs wrote (each records its process's start-up)."""
    per_model = ({"evaluate": f"{RUN_DIR}/nll.json"} if config["evaluation"]["fused"] else
                 {"nll": f"{RUN_DIR}/nll.json", "fid": f"{RUN_DIR}/fid.json"})
    results = {"train": cells(f"{RUN_DIR}/train.json"),
               **{rule: cells(path) for rule, path in per_model.items()},
               "prepare_data": [DATA_JSON], "fid_reference": [FID_REFERENCE],
               "fid_floor": [FID_FLOOR]}
    if classifier_weights():
        results["fid_classifier"] = [f"{FID_DIR}/classifier.json"]
    if noisy_classifier_input():
        results["noisy_classifier"] = [NOISY_CLASSIFIER.removesuffix(".pt") + ".json"]
    if SNAPSHOT_JOBS:
        results["evaluate_snapshot"] = snapshot_cells(f"{SNAPSHOT_DIR}/nll.json")
    return results
