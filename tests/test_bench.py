"""vdm.bench: every measurement with tiny sizes, the grid accounting, FLOP counting and MFU, the
bare loop's settings, the synthetic-data bench on a CIFAR-10-shaped config, and the JSON of a run."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from vdm.bench import (
    cli,
    clock,
    configs,
    eval_timing,
    flops,
    grid,
    report,
    sizes,
    train_timing,
    workflow_copy,
)
from vdm.core.config import run_config_from_dict
from vdm.core.provenance import resolve_device

TINY = sizes.Sizes(train_steps=6, warmup_steps=2, repeats=2, nll_repeats=2, num_samples=40,
                   sample_repeats=1, classifier_steps=10, run_grid=False, variants=("fp32", "bf16"),
                   peak_size=256)
#: the CIFAR-10 config shrunk for a CPU test (same structure: attention at 16x16, 3x32x32, 256
#: levels; eager, since torch.compile on a CPU takes minutes)
SMALL_CIFAR = ["--set", "model.channels=8", "--set", "model.channel_mults=[1,2]",
               "--set", "model.num_res_blocks=1", "--set", "train.batch_size=8",
               "--set", "train.compile=false", "--set", "nll.batch_size=16",
               "--set", "sample.batch_size=16"]


def _positive(value) -> bool:
    return isinstance(value, float | int) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def config() -> dict:
    return configs.load_pipeline_config()


@pytest.fixture(scope="module")
def quick_json(tmp_path_factory) -> dict:
    """One tiny end-to-end run of ``python -m vdm.bench --quick --json``."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    assert cli.main(["--quick", "--json", str(path)], sizes=TINY) == 0
    return json.loads(path.read_text())


def test_config_follows_config_file(config) -> None:
    assert config["model"]["channels"] == 16 and config["train"]["batch_size"] == 128
    run = configs.cell_run_config(config, "eps", "cosine", threads=1, steps=7)
    assert run.model.channel_mults == config["model"]["channel_mults"]
    assert (run.train.steps, run.train.threads, run.train.batch_size) == (7, 1, 128)
    assert run.train.lr == config["train"]["lr"]


def test_window_rate() -> None:
    stamps = [0.0, 5.0, 6.0, 7.0, 8.0]  # warm-up step 0 took 5 s
    assert clock.window_rate(stamps, batch_size=10, warmup=1) == pytest.approx(30 / 3)
    with pytest.raises(ValueError):
        clock.window_rate(stamps[:2], batch_size=10, warmup=1)


def test_quick_json_has_every_key(quick_json, config) -> None:
    expected = {"train_loop_efficiency", "train_loop_efficiency_learned", "train_images_per_s",
                "train_learned_images_per_s", "bare_images_per_s", "train_fit_images_per_s",
                "mfu", "bare_mfu", "flops_per_image", "peak_flops", "peak_flops_fp32",
                "peak_flops_bf16", "train_images_per_s_fp32", "train_loop_efficiency_fp32",
                "mfu_fp32", "train_images_per_s_bf16", "train_loop_efficiency_bf16", "mfu_bf16",
                "nll_seconds_per_eval", "nll_seconds_per_1000", "nll_se_bpd", "nll_se_total_bpd",
                "nll_mc_se_reported_bpd", "sample_images_per_s", "sample_bf16_images_per_s",
                "sample_fid_seed_noise", "sample_bf16_fid_shift", "fid_seconds_cold",
                "fid_seconds_cached", "bench_wall_seconds"}
    metrics = quick_json["metrics"]
    assert set(metrics) == expected  # --quick: no grid; no compiled variant in TINY
    for name, value in metrics.items():
        if name in ("sample_fid_seed_noise", "sample_bf16_fid_shift"):
            assert value >= 0, (name, value)  # may be 0.0
        else:
            assert _positive(value), (name, value)
    assert metrics["train_images_per_s_fp32"] == metrics["train_images_per_s"]  # digits: fp32
    assert quick_json["train"]["variant"] == "fp32" and quick_json["synthetic"] is False
    assert quick_json["quick"] is True and quick_json["threads"] == 1
    assert quick_json["torch_num_threads"] == 1
    assert quick_json["device"] == str(resolve_device(config["device"]))
    assert quick_json["torch_version"] and quick_json["provenance"]["git"]
    assert set(quick_json["goals"]) == {"train_loop_efficiency", "nll_se_bpd",
                                        "nll_seconds_per_eval"}
    for name, goal in quick_json["goals"].items():
        assert isinstance(goal["met"], bool), name


def test_efficiency_is_the_ratio_of_measured_throughputs(quick_json) -> None:
    train = quick_json["train"]
    medians = {name: float(np.median([r["images_per_s"] for r in runs]))
               for name, runs in train["per_repeat"].items()}
    assert len(train["per_repeat"]["bare"]) == TINY.repeats
    assert len(train["variants"]["bf16"]["per_repeat"]["bare"]) == TINY.variant_repeats
    assert train["variants"]["bf16"]["per_repeat"]["learned"] == []  # only at the config's own
    assert train["bare_images_per_s"] == pytest.approx(medians["bare"])
    assert train["train_images_per_s"] == pytest.approx(medians["cosine"])
    assert train["train_loop_efficiency"] == pytest.approx(medians["cosine"] / medians["bare"])
    assert train["train_loop_efficiency_learned"] == pytest.approx(
        medians["learned"] / medians["bare"])
    for run in train["per_repeat"]["cosine"]:
        assert run["timed_steps"] == TINY.train_steps - 1 - TINY.warmup_steps
        # the whole fit() (warm-up, start and finish included) is never faster than its window
        assert run["fit_images_per_s"] < run["images_per_s"] * 1.05


def test_nll_section(quick_json, config) -> None:
    nll = quick_json["nll"]
    assert nll["num_examples"] == 300
    assert nll["num_time_samples"] == config["nll"]["num_time_samples"] == 128
    assert len(nll["per_seed_nll_bpd"]) == TINY.nll_repeats
    assert nll["nll_se_bpd"] == pytest.approx(np.std(nll["per_seed_nll_bpd"], ddof=1))
    assert nll["nll_seconds_per_1000"] == pytest.approx(nll["nll_seconds_per_eval"] / 300 * 1000)
    assert len(set(nll["per_seed_nll_bpd"])) == TINY.nll_repeats  # seeds differ


def test_sample_and_fid_sections(quick_json) -> None:
    assert quick_json["sample"]["num_samples"] == TINY.num_samples
    assert quick_json["sample"]["steps"] == 25 and quick_json["sample"]["batch_size"] == 1000
    fid = quick_json["fid"]
    assert fid["num_samples"] == TINY.num_samples and fid["num_reference"] == 1497
    assert fid["classifier_steps"] == TINY.classifier_steps
    assert math.isfinite(fid["fid"])
    check = quick_json["sample"]["bf16_check"]  # bf16 sampling: FID within run-to-run noise?
    assert check == fid["bf16_check"] and check["fid_fp32"] == fid["fid"]
    assert check["ok"] == (check["sample_bf16_fid_shift"] <= check["sample_fid_seed_noise"])
    assert check["recommended"] == ("bf16" if check["ok"] else "fp32")


def test_bf16_sampling_verdict() -> None:
    ok = eval_timing.bf16_sampling_verdict(fid_fp32=10.0, fid_fp32_seed1=10.5, fid_bf16=9.8)
    assert ok["sample_bf16_fid_shift"] == pytest.approx(0.2)
    assert ok["sample_fid_seed_noise"] == pytest.approx(0.5) and ok["ok"] is True
    bad = eval_timing.bf16_sampling_verdict(fid_fp32=10.0, fid_fp32_seed1=10.1, fid_bf16=11.0)
    assert bad["ok"] is False and bad["recommended"] == "fp32"


def test_bare_loop_measures_its_window(config) -> None:
    run = configs.cell_run_config(config, "eps", "cosine", threads=1, steps=5)
    out = train_timing.time_bare_loop(run, (1, 8, 8), steps=5, warmup=1)
    assert out["timed_steps"] == 3 and _positive(out["images_per_s"])


@pytest.mark.parametrize("variant", ["fp32", "bf16", "bf16-compile"])
def test_bare_loop_runs_with_exactly_the_trainers_settings(config, variant: str) -> None:
    """Same device, batch, threads, bf16 autocast, torch.compile, optimizer, initial weights."""
    from vdm.core.data import load_dataset
    from vdm.training.trainer import Trainer

    run = configs.with_variant(configs.cell_run_config(config, "eps", "cosine", threads=1), variant)
    trainer = Trainer(run, "/nonexistent-unused", train_data=load_dataset("digits", "train"))
    loop = train_timing.BareLoop(run, (1, 8, 8), 17)
    assert loop.settings == trainer.settings
    assert loop.settings["bf16_autocast"] == variant.startswith("bf16")
    assert loop.settings["torch_compile"] == variant.endswith("compile")
    compiled = loop.network._compiled_call_impl is not None  # nn.Module.compile() was called
    assert compiled == (trainer.model.network._compiled_call_impl is not None) == run.train.compile
    assert type(loop.optimizer) is type(trainer.optimizer)
    assert loop.optimizer.defaults == trainer.optimizer.defaults
    trained = dict(trainer.model.network.named_parameters())
    assert all(torch.equal(p, trained[n]) for n, p in loop.network.named_parameters())
    if not run.train.compile:  # (compiling would take minutes on a CPU)
        dtypes = []
        loop.network.head.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
        loop.step()
        assert dtypes == [torch.bfloat16 if run.train.bf16 else torch.float32]


def test_variant_names() -> None:
    base = run_config_from_dict({})
    assert configs.variant_name(False, False) == "fp32"
    assert configs.variant_name(True, True) == "bf16-compile"
    compiled = configs.with_variant(base, "bf16-compile").train
    assert compiled.bf16 and compiled.compile
    assert not configs.with_variant(base, "fp32").train.bf16
    with pytest.raises(ValueError, match="unknown precision variant"):
        configs.with_variant(base, "fp16")


def test_flop_counter_convention_is_two_per_multiply_add() -> None:
    """Linear (m x k) @ (k x n): forward 2mnk FLOPs; its backward, with an input that needs no
    gradient (as the UNet's input z), only the weight gradient: another 2mnk."""
    from torch.utils.flop_counter import FlopCounterMode

    m, k, n = 6, 5, 4
    layer = nn.Linear(k, n)
    counter = FlopCounterMode(display=False)
    with counter:
        out = layer(torch.randn(m, k))
    assert counter.get_total_flops() == 2 * m * n * k
    with counter:
        layer(torch.randn(m, k)).sum().backward()
    assert counter.get_total_flops() == 4 * m * n * k
    assert flops.mfu(images_per_s=1000.0, flops_per_image=1e9, peak_flops_per_s=1e13) == 0.1
    assert out.shape == (m, n)


def test_training_flops_of_the_unet_match_the_closed_form(config) -> None:
    """The forward FLOPs counted for the UNet equal the sum over its layers of the closed forms
    2 B H_out W_out C_out C_in k_h k_w (convolutions), 2 B in out (linear) and, per attention
    block, 2 x 2 B (HW)^2 C (q k^T and the weighted sum of v); per image, for any batch."""
    from vdm.model.network import AttentionBlock, UNet

    run = configs.cell_run_config(config, "eps", "cosine")
    kwargs = {**dataclasses.asdict(run.model), "attention_resolutions": [4]}
    run = dataclasses.replace(run, model=dataclasses.replace(run.model, attention_resolutions=[4]))
    counted = flops.count_training_flops(run, (1, 8, 8))
    assert flops.count_training_flops(run, (1, 8, 8), batch=4)["flops_per_image"] == pytest.approx(
        counted["flops_per_image"])
    network, batch, closed = UNet((1, 8, 8), **kwargs), 3, []

    def hook(module, inputs, out):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            closed.append(2 * out.numel() * module.in_channels // module.groups * kh * kw)
        elif isinstance(module, nn.Linear):
            closed.append(2 * out.numel() * module.in_features)
        elif isinstance(module, AttentionBlock):
            b, c, h, w = out.shape
            closed.append(2 * 2 * b * (h * w) ** 2 * c)

    for module in network.modules():
        module.register_forward_hook(hook)
    network(torch.randn(batch, 1, 8, 8), torch.randn(batch))
    forward = sum(counted["by_op"].get(op, 0.0) for op in ("aten.convolution", "aten.addmm"))
    forward += counted["by_op"]["aten.bmm"] / 3  # attention: 2 forward bmm, 4 backward
    assert forward == pytest.approx(sum(closed) / batch)
    # backward: input and weight gradients of every convolution but the stem's input (z)
    assert counted["flops_per_image"] > 2.9 * forward


def test_matmul_peak_and_mfu_on_cpu() -> None:
    peak = flops.measure_matmul_peak(torch.device("cpu"), torch.float32, 128, repeats=2)
    assert peak["flops_per_s"] == pytest.approx(2 * 128**3 / peak["best_seconds"])
    assert _positive(peak["flops_per_s"]) and peak["dtype"] == "float32"
    assert flops.reference_dtype(torch.device("cpu")) == torch.float32
    assert flops.reference_dtype(torch.device("cuda")) == torch.bfloat16


def test_mfu_section_is_the_arithmetic_of_its_parts(quick_json) -> None:
    section, train = quick_json["mfu"], quick_json["train"]
    assert section["peak_dtype"] == "fp32" and section["peak_flops"] == section["peak_flops_fp32"]
    assert section["mfu"] == pytest.approx(
        train["train_images_per_s"] * section["flops_per_image"] / section["peak_flops"])
    for variant in ("fp32", "bf16"):
        assert section[f"mfu_{variant}"] == pytest.approx(
            train["variants"][variant]["train_images_per_s"] * section["flops_per_image"]
            / section["peak_flops"])
    assert 0 < section["mfu"] < 1


def test_resolved_config_copies_are_current() -> None:
    """vdm/bench/resolved_configs.json (read where Snakemake and PyYAML are missing) equals what the
    schema resolves now; regenerate with `python -m vdm.bench --write-resolved-configs`."""
    for name in configs.RESOLVED_CONFIG_FILES:
        path = configs.REPO / "config" / name
        assert configs.resolved_config_copy(path) == configs.load_pipeline_config(path), name


def test_resolved_config_copy_refuses_a_changed_file(tmp_path) -> None:
    changed = tmp_path / "cifar10.yaml"
    changed.write_text((configs.REPO / "config" / "cifar10.yaml").read_text() + "\n# edited\n")
    with pytest.raises(ValueError, match="changed since its resolved copy"):
        configs.resolved_config_copy(changed)
    with pytest.raises(ValueError, match="holds no resolved copy"):
        configs.resolved_config_copy(tmp_path / "other.yaml")


SYNTHETIC = dataclasses.replace(TINY, num_samples=8, sample_steps=3, nll_examples=16,
                                variants=("bf16",), repeats=1)


def test_synthetic_cifar_bench_on_cpu(tmp_path) -> None:
    """`--device cpu --synthetic --quick --no-grid` on the CIFAR-10 config (shrunk): no data
    files, MFU and efficiency reported, FID skipped with a note (no Inception weights)."""
    path = tmp_path / "bench.json"
    argv = ["--device", "cpu", "--synthetic", "--quick", "--no-grid", "--config",
            str(configs.REPO / "config" / "cifar10.yaml"), *SMALL_CIFAR, "--json", str(path)]
    assert cli.main(argv, sizes=SYNTHETIC) == 0
    result = json.loads(path.read_text())
    assert result["synthetic"] and result["device"] == "cpu" and result["device_name"] == "cpu"
    assert result["train"]["variant"] == "bf16" and set(result["train"]["variants"]) == {"bf16"}
    assert result["train"]["batch_size"] == 8
    metrics = result["metrics"]
    for name in ("mfu", "train_loop_efficiency", "train_images_per_s_bf16", "peak_flops",
                 "flops_per_image", "nll_seconds_per_1000", "sample_images_per_s",
                 "sample_bf16_images_per_s"):
        assert _positive(metrics[name]), name
    assert result["nll"]["num_examples"] == 16 and result["sample"]["steps"] == 3
    assert "fid" not in result and any("FID skipped" in note for note in result["notes"])
    assert result["sample"]["bf16_check"]["recommended"] == "fp32"
    assert set(result["goals"]) == {"train_loop_efficiency"}  # CPU, not the default grid
    assert result["overrides"] == SMALL_CIFAR[1::2]


def test_parse_job_stats_and_cores() -> None:
    output = """Building DAG of jobs...
Using shell: /usr/bin/bash
Provided cores: 2
Rules claiming more threads will be scaled down.
Job stats:
job               count
--------------  -------
all                   1
train                36
total                37

Select jobs to execute...
Job stats:
job      count
-----  -------
train        1
"""
    assert grid.parse_job_stats(output) == {"all": 1, "train": 36, "total": 37}
    assert grid.parse_cores(output) == 2
    assert grid.parse_job_stats("Nothing to be done.") == {}
    assert grid.parse_cores("no cores line") is None


def test_compute_seconds_and_overhead(tmp_path) -> None:
    run = tmp_path / "digits" / "runs" / "uncond" / "eps" / "eps" / "cosine" / "seed0"
    run.mkdir(parents=True)
    (run / "train.json").write_text(json.dumps({"wall_seconds": 10.0, "train_seconds": 9.0}))
    (run / "nll.json").write_text(json.dumps({"wall_seconds": 2.5}))
    (run / "fid.json").write_text(json.dumps({"fid": 1.0}))  # no seconds: counted 0, listed
    np.savez(run / "samples.npz", images=np.zeros((1, 1, 8, 8), np.uint8),
             meta=json.dumps({"wall_seconds": 1.5}))
    old = tmp_path / "digits" / "runs" / "uncond" / "eps" / "eps" / "linear" / "seed0"
    old.mkdir(parents=True)
    (old / "train.json").write_text(json.dumps({"train_seconds": 4.0}))  # fallback
    out = grid.compute_seconds(tmp_path)
    assert out["seconds"] == pytest.approx(18.0)
    assert out["per_rule"]["train"] == {"files": 2, "seconds": 14.0, "fallback_train_seconds": 1,
                                        "missing": 0}
    assert out["missing"] == ["digits/runs/uncond/eps/eps/cosine/seed0/fid.json"]
    sweep = run / "sweep" / "heun-10"
    sweep.mkdir(parents=True)
    (sweep / "fid.json").write_text(json.dumps({"wall_seconds": 1.0}))
    np.savez(sweep / "samples.npz", images=np.zeros((1, 1, 8, 8), np.uint8),
             meta=json.dumps({"wall_seconds": 2.0}))
    with_sweep = grid.compute_seconds(tmp_path)
    assert with_sweep["seconds"] == pytest.approx(21.0)
    assert with_sweep["per_rule"]["sweep_sample"]["seconds"] == pytest.approx(2.0)
    assert grid.overhead_share(out["seconds"], wall=12.0, cores=2) == pytest.approx(0.25)


def test_copy_workflow(tmp_path) -> None:
    dest = workflow_copy.copy_workflow(tmp_path / "copy")
    assert (dest / "Snakefile").is_file() and (dest / "config" / "config.yaml").is_file()
    assert (dest / "workflow" / "rules" / "train.smk").is_file()
    assert (dest / "profiles" / "default" / "profile.yaml").is_file()  # the default profile
    assert not (dest / "results").exists()


def test_table_lists_metrics_with_units_and_goals(quick_json) -> None:
    table = report.format_table(quick_json)
    lines = table.splitlines()
    assert lines[1].split()[:5] == ["metric", "value", "unit", "goal", "met?"]
    row = next(line for line in lines if line.startswith("train_loop_efficiency "))
    assert ">= 0.90" in row and row.split()[-1] in ("yes", "NO")
    assert any(line.startswith("fid_seconds_cold") and " s " in line for line in lines)
