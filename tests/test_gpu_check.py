"""`python -m vdm gpu-check` on the CPU: with only torch and numpy importable, stage isolation
and time limits, the checks, and the eager-vs-compiled comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from vdm.bench import gpu_check, gpu_stages
from vdm.bench.configs import cell_run_config
from vdm.core.data import synthetic_dataset

REPO = Path(__file__).resolve().parents[1]
#: what the GPU machines lack (and what the package must not need for the check)
ABSENT = ("snakemake", "torch_fidelity", "sklearn", "pandas", "yaml", "jsonschema", "tqdm",
          "scipy", "matplotlib", "seaborn", "PIL", "torchvision")
SITECUSTOMIZE = f'''
import importlib.machinery
import sys

ABSENT = {set(ABSENT)!r}


class Hiding:
    """Wraps the path finder so that the absent packages are not found (find_spec -> None),
    exactly as when they are not installed."""

    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT:
            return None
        return self.inner.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


sys.meta_path[:] = [Hiding(f) if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
'''


def _env_without_packages(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python (and its subprocesses) cannot import :data:`ABSENT`."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_with_only_torch_and_numpy(tmp_path: Path) -> None:
    env = _env_without_packages(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u; import sys; "
                            f"sys.exit(any(u.find_spec(n) for n in {ABSENT!r}))"], env=env)
    assert probe.returncode == 0, "the packages are still importable"
    out = tmp_path / "out"
    started = time.monotonic()
    process = subprocess.run([sys.executable, "-m", "vdm", "gpu-check", "--device", "cpu", "--tiny",
                              "--no-compile", "--budget-s", "240", "--out", str(out)],
                             env=env, cwd=tmp_path, capture_output=True, text=True)
    assert process.returncode == 0, process.stdout + process.stderr
    assert time.monotonic() - started < 240
    result = json.loads((out / "gpu_check.json").read_text())
    assert [s["status"] for s in result["stages"].values()] == ["ok", "ok", "ok"]
    assert result["checks"] == {"stages_completed": True, "train_losses_finite": True,
                                "eager_compiled_agree": None, "no_host_sync_between_logs": None,
                                "sample_nll_finite": True}
    bench = result["stages"]["bench"]["result"]
    assert bench["synthetic"] and bench["train"]["variant"] == "bf16"  # cifar10.yaml, compile off
    assert bench["metrics"]["mfu"] > 0 and bench["metrics"]["train_loop_efficiency"] > 0
    assert any("resolved copy" in note for note in bench["notes"])
    assert any("FID skipped: torch-fidelity is not installed" in note for note in bench["notes"])
    cells = result["stages"]["train"]["result"]["cells"]
    assert {(c["objective"], c["schedule"]) for c in cells} == {
        (o, s) for o in gpu_check.OBJECTIVES for s in gpu_check.SCHEDULES}
    assert result["stages"]["sample_nll"]["result"]["model"].startswith("eps/cosine trained")
    summary = (out / "summary.txt").read_text()
    assert summary.splitlines()[-1].startswith("checks: all passed") and "MFU" in summary
    assert sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) < 1_000_000


def test_a_stage_over_its_limit_is_killed_and_the_next_still_runs(tmp_path: Path) -> None:
    options = gpu_check.CheckOptions(out=str(tmp_path / "out"), device="cpu", tiny=True,
                                     compile=False)
    work = tmp_path / "work"
    (work / "train").mkdir(parents=True)
    started = time.monotonic()
    entry = gpu_check.run_stage("train", options, 1.5, work)
    assert time.monotonic() - started < 10
    assert entry["status"] == "timed out after 2 s" and entry["limit_s"] == 1.5
    after = gpu_check.run_stage("sample_nll", options, 120, work)
    assert after["status"] == "ok", after
    assert after["result"]["model"].startswith("untrained")  # train left no model
    assert after["result"]["finite"] is True
    checks = gpu_check.evaluate_checks({"train": entry, "sample_nll": after},
                                       ("train", "sample_nll"), "cpu")
    assert checks["stages_completed"] is False and checks["train_losses_finite"] is False
    assert checks["sample_nll_finite"] is True


def test_checks_from_stage_results() -> None:
    cell = {"finite": True, "agreement": {"ok": True, "max_rel_diff": 0.01}}
    stages = {"train": {"status": "ok", "result": {"cells": [cell, cell], "skipped": [],
                                                   "compile": True,
                                                   "no_sync": {"cosine": {"ok": True}}}}}
    checks = gpu_check.evaluate_checks(stages, ("train",), "cuda")
    assert checks == {"stages_completed": True, "train_losses_finite": True,
                      "eager_compiled_agree": True, "no_host_sync_between_logs": True}
    stages["train"]["result"]["skipped"] = ["v-learned"]  # a cell left out is no pass
    stages["train"]["result"]["no_sync"] = {"cosine": {"ok": False, "error": "sync"}}
    checks = gpu_check.evaluate_checks(stages, ("train",), "cuda")
    assert checks["train_losses_finite"] is False and checks["no_host_sync_between_logs"] is False
    assert gpu_check.evaluate_checks(stages, ("train",), "cpu")["no_host_sync_between_logs"] is None


def test_eager_vs_compiled_compares_losses_of_the_same_weights(monkeypatch, request) -> None:
    """With dynamo's `aot_eager` backend (tracing and AOT autograd, no code generation: seconds
    instead of minutes on a CPU) the comparison runs the compiled model and finds agreement."""
    compile_module = nn.Module.compile
    monkeypatch.setattr(nn.Module, "compile",
                        lambda self, *a, **k: compile_module(self, *a, **{**k, "backend": "aot_eager"}))
    torch._dynamo.reset()  # and again at the end: later tests compile other shapes afresh
    request.addfinalizer(torch._dynamo.reset)
    config = gpu_stages._config("mnist", gpu_stages.CheckOptions(out="unused", device="cpu",
                                                                 tiny=True), ["model.dropout=0.0"])
    run = cell_run_config(config, "elbo", "learned", threads=1)
    data = synthetic_dataset("mnist", "train", 32)
    from vdm.training.trainer import Trainer

    weights = Trainer(run, "/nonexistent-unused", train_data=data).model.state_dict()
    generator = torch.Generator().manual_seed(0)
    weights = {k: v + 0.05 * torch.randn(v.shape, generator=generator) if v.is_floating_point()
               else v for k, v in weights.items()}  # away from the zero-initialised output
    out = gpu_stages.eager_vs_compiled(run, data, weights, rtol=0.05)
    assert out["ok"] and out["batch"] == 8 and out["max_rel_diff"] < 1e-3
    assert out["eager_mean_loss"] != pytest.approx(1.0, abs=1e-3)  # a nontrivial network
    assert not gpu_stages.eager_vs_compiled(run, data, weights, rtol=-1.0)["ok"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_without_a_gpu_the_full_size_check_is_refused(tmp_path: Path, capsys) -> None:
    from vdm.pipeline.cli import main

    assert main(["gpu-check", "--out", str(tmp_path / "out")]) == 2
    assert "no CUDA GPU found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
