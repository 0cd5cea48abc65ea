"""GPU properties (``pytest -m gpu``; skipped without CUDA): no host sync inside training steps,
every objective finite under bf16 + compile with the learned schedule too, eager and compiled
losses agree, TF32 within noise, the NaN stop, the bench and the GPU check on the device.

The same code runs on the CPU in test_no_sync.py, test_bench.py and test_gpu_check.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_trainer import TINY, tiny_config

from vdm.bench import cli, gpu_stages
from vdm.bench.configs import cell_run_config
from vdm.bench.sizes import Sizes
from vdm.core.data import synthetic_dataset
from vdm.model.objectives import OBJECTIVES
from vdm.training.trainer import NonFiniteLossError, Trainer

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

REPO = Path(__file__).resolve().parents[1]


def cuda_config(**overrides):
    train = {**TINY["train"], **overrides.pop("train", {})}
    return tiny_config(device="cuda", train=train, **overrides)


@pytest.mark.parametrize("schedule", ["cosine", "learned"])
@pytest.mark.parametrize("compiled", [False, True])
def test_training_steps_never_wait_for_the_device(tmp_path: Path, schedule: str,
                                                  compiled: bool) -> None:
    config = cuda_config(schedule=schedule, objective="elbo",
                         train={"bf16": True, "compile": compiled, "steps": 100})
    trainer = Trainer(config, tmp_path)
    for _ in range(3):  # compilation and cuDNN autotuning may synchronise
        trainer.train_step()
    trainer.check_finite()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainer.check_finite()
    assert trainer.settings["fused_adamw"] and trainer.settings["tf32"]
    assert trainer.optimizer.defaults["fused"] is True


@pytest.mark.parametrize("schedule", ["cosine", "learned"])
def test_every_objective_is_finite_under_bf16_and_compile(tmp_path: Path, schedule: str) -> None:
    for objective in OBJECTIVES:
        config = cuda_config(objective=objective, schedule=schedule,
                             train={"bf16": True, "compile": True, "steps": 20, "log_every": 5})
        summary = Trainer(config, tmp_path / objective).fit()
        assert math.isfinite(summary["final_loss"]), objective
        assert summary["provenance"]["cuda_backends"] == {
            "cudnn_benchmark": True, "tf32_matmul": True, "tf32_cudnn": True}


@pytest.mark.parametrize("schedule", ["cosine", "learned"])
def test_compiled_and_eager_losses_agree(schedule: str) -> None:
    config = gpu_stages._config("mnist", gpu_stages.CheckOptions(out="unused", device="cuda",
                                                                 tiny=True), ["model.dropout=0.0"])
    run = cell_run_config(config, "eps", schedule, threads=1)
    data = synthetic_dataset("mnist", "train", 64)
    weights = Trainer(run, "/nonexistent-unused", train_data=data).model.state_dict()
    generator = torch.Generator().manual_seed(0)
    weights = {k: v + 0.05 * torch.randn(v.shape, generator=generator).to(v.device)
               if v.is_floating_point() else v for k, v in weights.items()}
    out = gpu_stages.eager_vs_compiled(run, data, weights, rtol=0.05)
    assert out["ok"], out


def test_tf32_changes_fp32_training_only_within_noise(tmp_path: Path) -> None:
    """20 fp32 steps with the trainer's TF32 against strict fp32: logged losses within 1%
    (another seed moves them by more)."""
    logs = {}
    for label in ("tf32", "strict"):
        trainer = Trainer(cuda_config(train={"steps": 20, "log_every": 5}), tmp_path / label)
        if label == "strict":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            trainer.fit()
        finally:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        logs[label] = [row[1] for row in trainer.log_rows]
    for a, b in zip(logs["tf32"], logs["strict"], strict=True):
        assert a == pytest.approx(b, rel=1e-2)


def test_nan_stop_names_the_first_bad_step_on_cuda(tmp_path: Path) -> None:
    trainer = Trainer(cuda_config(train={"steps": 12, "log_every": 4, "checkpoint_every": 4}),
                      tmp_path)
    losses = trainer.model.losses

    def patched(x, generator=None):
        out = losses(x, generator=generator)
        if trainer.step + 1 == 6:
            out["loss"] = out["loss"] * float("nan")
        return out

    trainer.model.losses = patched
    with pytest.raises(NonFiniteLossError, match="training loss is nan at step 6 "):
        trainer.fit()
    assert torch.load(tmp_path / "state.pt", weights_only=True)["step"] == 4


def test_bench_on_cuda_reports_mfu_and_efficiency(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    sizes = Sizes(train_steps=12, warmup_steps=4, repeats=1, nll_repeats=2, num_samples=16,
                  sample_repeats=1, classifier_steps=None, run_grid=False,
                  variants=("fp32", "bf16"), sample_steps=3, nll_examples=32,
                  learned=True, peak_size=2048)
    argv = ["--device", "cuda", "--synthetic", "--quick", "--no-grid", "--config",
            str(REPO / "config" / "cifar10.yaml"), "--set", "model.channels=32",
            "--set", "train.batch_size=32", "--set", "train.compile=false", "--json", str(path)]
    assert cli.main(argv, sizes=sizes) == 0
    result = json.loads(path.read_text())
    metrics = result["metrics"]
    assert result["device"].startswith("cuda") and result["mfu"]["peak_dtype"] == "bf16"
    for name in ("mfu", "train_loop_efficiency", "train_loop_efficiency_learned", "peak_flops",
                 "sample_images_per_s", "nll_seconds_per_1000"):
        assert metrics[name] > 0, name
    assert 0 < metrics["mfu"] < 1 and set(result["goals"]) == {"train_loop_efficiency", "mfu"}
    assert result["train"]["variants"]["bf16"]["settings"]["fused_adamw"] is True


def test_gpu_check_command_on_cuda(tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = subprocess.run([sys.executable, "-m", "vdm", "gpu-check", "--device", "cuda",
                              "--tiny", "--objectives", "eps,elbo", "--budget-s", "400",
                              "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert process.returncode == 0, process.stdout + process.stderr
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["checks"]["no_host_sync_between_logs"] is True
    assert result["checks"]["eager_compiled_agree"] is True
