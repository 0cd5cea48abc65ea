"""The SLURM profile (workflow/profiles/slurm) on a real single-node SLURM brought up on this machine.

test_tiny_grid_through_slurm is opt-in: it runs only with ``VDM_TEST_SLURM=1`` in the environment
(``.ci/run`` sets it), because it changes the system: it needs root, installs Debian's slurm-wlm
and munge if missing, writes /etc/slurm/slurm.conf (restored afterwards) and starts munged,
slurmctld, slurmd (see tests/slurm_cluster.py). A plain ``pytest`` skips it. It runs the tiny grid
(one seed) with `--profile workflow/profiles/slurm`, changing only what a site changes on the command line:
the partition, node-sized memory, no GPUs (this node has none: gpu=0 removes the profile's
`--gpus=1`), `squeue` as status command (no accounting database here, so no sacct) and a short
first status check, and checks that every non-local job went through sbatch, training jobs with
`--cpus-per-task` = train.threads.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import slurm_cluster
import yaml
from workflow_copy import copy_workflow, venv_environment

PROFILE = "workflow/profiles/slurm"
SEEDS = [0]  # the real SLURM run takes one seed of the tiny grid: the same jobs, half as many
TINY_CELLS = 2 * 2 * len(SEEDS)  # config/test.yaml: objectives x schedules x seeds
# the jobs SLURM must run for the tiny grid (aggregate and plots are local rules; so is collect
# when evaluation.fused is false, otherwise the evaluate job writes metrics.json itself)
SUBMITTED = {"prepare_data": 1, "fid_classifier": 1, "fid_reference": 1, "fid_floor": 1,
             "train": TINY_CELLS, "evaluate": TINY_CELLS}
LOCAL = ("collect", "aggregate", "plots")
GPU_RULES = ("train", "evaluate", "sample", "nll", "fid", "fid_reference", "fid_classifier",
             "fid_floor", "sweep", "noisy_classifier")


def snakemake(workdir: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess:
    """Run snakemake in workdir; its output (stdout and stderr) goes to log, or to .stdout."""
    # the jobs inherit this environment (sbatch --export=ALL): `python` must be this venv's
    env = venv_environment()
    command = [sys.executable, "-m", "snakemake", *args]
    if log is None:
        return subprocess.run(command, cwd=workdir, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=600)
    with open(log, "w") as out:
        return subprocess.run(command, cwd=workdir, env=env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=1500)


@pytest.mark.parametrize("fused", [True, False])
def test_profile_requests_a_gpu_for_every_model_rule(tmp_path: Path, fused: bool) -> None:
    """Dry run with the profile as shipped: model rules get gpu=1, the rest none (with one
    evaluate job per model, or separate sample, nll and fid jobs)."""
    result = snakemake(copy_workflow(tmp_path), "--profile", PROFILE, "--configfile",
                       "config/test.yaml", "--config", f"evaluation={{'fused':{fused}}}", "-n")
    assert result.returncode == 0, result.stdout[-3000:]
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=^\S|\Z)", result.stdout, re.M | re.S)
    expected = set(SUBMITTED) if fused else set(SUBMITTED) - {"evaluate"} | {"sample", "nll", "fid"}
    resources = {name: re.search(r"resources: (.*)", body).group(1) for name, body in jobs
                 if name in expected}
    assert set(resources) == expected
    for name, line in resources.items():
        assert ("gpu=1" in line) == (name in GPU_RULES), (name, line)
        assert "runtime=" in line and "mem_mb=" in line and "cpus_per_task=1" in line, line


def test_training_jobs_ask_for_train_threads_cpus(tmp_path: Path) -> None:
    """config/cifar10.yaml sets train.threads: 8; without --cores a SLURM job must still get 8."""
    result = snakemake(copy_workflow(tmp_path), "--profile", PROFILE, "--configfile",
                       "config/cifar10.yaml", "-n")
    assert result.returncode == 0, result.stdout[-3000:]
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=^\S|\Z)", result.stdout, re.M | re.S)
    train = [re.search(r"resources: (.*)", body).group(1) for name, body in jobs if name == "train"]
    assert train and all("cpus_per_task=8," in line for line in train), train[:1]


@pytest.fixture(scope="module")
def cluster():
    if os.environ.get("VDM_TEST_SLURM") != "1":
        pytest.skip("opt-in: set VDM_TEST_SLURM=1 to bring up a real SLURM (root, apt, system "
                    "daemons, /etc/slurm/slurm.conf)")
    reason = slurm_cluster.unavailable_reason()
    if reason:
        pytest.skip(reason)
    started = slurm_cluster.start()
    try:
        yield started
    finally:
        slurm_cluster.stop(started)


@pytest.mark.slurm
@pytest.mark.slow
def test_tiny_grid_through_slurm(cluster: slurm_cluster.Cluster, tmp_path: Path) -> None:
    work = copy_workflow(tmp_path)
    mem_mb = min(2000, cluster.memory_mb)  # sbatch refuses more than the node's RealMemory
    site = [f"{rule}:{key}={value}" for rule in SUBMITTED for key, value in
            (("gpu", 0), ("mem_mb", mem_mb), ("slurm_partition", cluster.partition))]
    # the one-CPU jobs may share a CPU (see slurm_cluster.slurm_conf); training jobs may not
    site += [f"{rule}:slurm_extra='--oversubscribe'" for rule in SUBMITTED if rule != "train"]
    log = tmp_path / "snakemake.log"
    threads = min(2, cluster.cpus)  # training asks for train.threads CPUs
    train = {**yaml.safe_load((work / "config/test.yaml").read_text())["train"], "threads": threads}
    result = snakemake(
        work, "--profile", PROFILE, "--configfile", "config/test.yaml",
        "--config", f"train={train!r}".replace(" ", ""), f"seeds={SEEDS!r}".replace(" ", ""),
        "--set-resources", *site,
        "--slurm-status-command", "squeue", "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs",
        "--verbose", log=log)
    text = log.read_text(errors="replace")
    slurm_logs = sorted((work / ".snakemake/slurm_logs").rglob("*.log"))
    assert result.returncode == 0, (text[-6000:] + "\n".join(
        f"--- {p}\n{p.read_text(errors='replace')[-1500:]}" for p in slurm_logs[-3:])
        + cluster.logs())

    # every non-local job was submitted with sbatch, none of the local ones
    submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", text)
    assert len(submitted) == sum(SUBMITTED.values()), text[-3000:]
    slurm_ids = {slurm_id for _, slurm_id in submitted}
    assert len(slurm_ids) == len(submitted)
    calls = [line.split(" --wrap=")[0] for line in re.findall(r"sbatch call: (.*)", text)]
    rules = Counter(re.search(r"--comment '?rule_(\w+?)(?:_wildcards_\S*)?'? ", call).group(1)
                    for call in calls)
    assert rules == Counter(SUBMITTED), rules
    assert not set(rules) & set(LOCAL)
    for call in calls:  # the site overrides reached sbatch; no GPU request is left
        assert f"-p {cluster.partition}" in call and f"--mem {mem_mb}" in call, call
        assert "--gpus" not in call and "--gres" not in call, call
        rule = re.search(r"--comment '?rule_(\w+?)(?:_wildcards_\S*)?'? ", call).group(1)
        assert f"--cpus-per-task={threads if rule == 'train' else 1}" in call, call
        assert ("--oversubscribe" in call) == (rule != "train"), call
    # one SLURM log per job (.snakemake/slurm_logs/rule_<rule>/<wildcards>/<jobid>.log)
    assert {p.stem for p in slurm_logs} == slurm_ids
    assert Counter(p.relative_to(work / ".snakemake/slurm_logs").parts[0] for p in slurm_logs) \
        == Counter({f"rule_{name}": n for name, n in SUBMITTED.items()})

    summary = pd.read_csv(work / "results/test/tables/summary.csv")
    assert len(summary) == TINY_CELLS
    assert summary["fid"].notna().all() and (summary["nll_bpd"] < math.log2(17)).all()
