"""Trainer: exact resumption, determinism, learned-schedule gradients, a real short run."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from vdm.core.config import run_config_from_dict
from vdm.core.data import load_dataset
from vdm.evaluation.evaluate import evaluate_nll
from vdm.model.likelihood import prior_kl_nats, reconstruction_nats
from vdm.model.objectives import sample_times
from vdm.model.sampler import sample
from vdm.model.schedules import alpha_sigma, log_snr_and_slope
from vdm.training.trainer import Trainer, load_trained_model

TINY = {"model": {"channels": 8, "channel_mults": [1, 2]},
        "train": {"steps": 12, "batch_size": 32, "log_every": 2, "checkpoint_every": 4,
                  "warmup_steps": 3, "threads": 1}}


def tiny_config(**overrides):
    data = {**TINY, **overrides}
    return run_config_from_dict(data)


def _weights(path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)
    return {**{f"m.{k}": v for k, v in state["model"].items()},
            **{f"e.{k}": v for k, v in state["ema"].items()}}


@pytest.mark.parametrize("schedule", ["cosine", "learned"])
def test_resume_is_bitwise_identical(tmp_path, schedule: str) -> None:
    config = tiny_config(schedule=schedule, objective="elbo",
                         model={"channels": 8, "channel_mults": [1, 2], "dropout": 0.1})
    Trainer(config, tmp_path / "straight").fit()
    assert Trainer(config, tmp_path / "resumed").fit(stop_at=6) == {}
    assert (tmp_path / "resumed" / "state.pt").exists()
    assert not (tmp_path / "resumed" / "model.pt").exists()  # nothing looks complete
    Trainer(config, tmp_path / "resumed").fit()
    a, b = _weights(tmp_path / "straight" / "model.pt"), _weights(tmp_path / "resumed" / "model.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not (tmp_path / "resumed" / "state.pt").exists()
    with open(tmp_path / "resumed" / "train_log.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert steps == [2, 4, 6, 8, 10, 12]


def test_different_seeds_differ_and_log_columns(tmp_path) -> None:
    Trainer(tiny_config(seed=0), tmp_path / "a").fit()
    Trainer(tiny_config(seed=1), tmp_path / "b").fit()
    a, b = _weights(tmp_path / "a" / "model.pt"), _weights(tmp_path / "b" / "model.pt")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with open(tmp_path / "a" / "train_log.csv") as f:
        row = next(csv.DictReader(f))
    for column in ("step", "loss", "grad_norm", "lr", "images_per_sec"):
        assert math.isfinite(float(row[column]))


def _reference_gradients(model, x, seed):
    """The learned-schedule gradients by brute force: full graph, one autograd call each."""
    gen = torch.Generator().manual_seed(seed)
    dims = x[0].numel()
    t = sample_times(x.shape[0], generator=gen).double()
    log_snr, neg_slope = log_snr_and_slope(model.schedule, t)
    eps = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    alpha, sigma = (a.view(-1, 1, 1, 1) for a in alpha_sigma(log_snr))
    error = (model.network(alpha * x + sigma * eps, log_snr) - eps).square().flatten(1).sum(1) / dims
    ends = model.schedule(torch.tensor([0.0, 1.0], dtype=x.dtype))
    elbo = ((reconstruction_nats(x, ends[0], model.num_levels, gen) + prior_kl_nats(x, ends[1]))
            / dims + 0.5 * neg_slope * error).mean()
    multiplier = model.objective.multiplier(log_snr, neg_slope)
    net = list(model.network.parameters())
    return (torch.autograd.grad((multiplier.detach() * error).mean(), net, retain_graph=True),
            torch.autograd.grad(elbo, model.schedule.endpoint_parameters(), retain_graph=True),
            torch.autograd.grad((0.5 * neg_slope * error).square().mean(),
                                model.schedule.shape_parameters()))


@pytest.mark.parametrize("objective", ["x0", "elbo"])
def test_learned_schedule_gradients_match_brute_force(objective: str) -> None:
    """Network <- objective; end points <- ELBO; shape <- E[L_diff^2] of the ELBO's diffusion
    term (its variance), for every objective (VDM Sec. 3.5)."""
    trainer = Trainer(tiny_config(schedule="learned", objective=objective), "/nonexistent-unused")
    for _ in range(3):  # leave the zero-initialised output layer, where eps_hat ignores lambda
        trainer.train_step()
    model = trainer.model.double()  # compare in float64: x0 weights reach e^10
    x = trainer.x_train[:16].double()
    model.zero_grad()
    model.backward(model.losses(x, generator=torch.Generator().manual_seed(0)))
    net_ref, ends_ref, shape_ref = _reference_gradients(model, x, seed=0)
    groups = [(list(model.network.parameters()), net_ref),
              (model.schedule.endpoint_parameters(), ends_ref),
              (model.schedule.shape_parameters(), shape_ref)]
    for params, reference in groups:
        for param, ref in zip(params, reference, strict=True):
            torch.testing.assert_close(param.grad, ref, rtol=1e-5, atol=1e-8)
    assert all(p.grad.abs().sum() > 0 for p in model.schedule.endpoint_parameters())
    assert sum(float(p.grad.abs().sum()) for p in model.schedule.shape_parameters()) > 0


def test_bad_config_keys_fail_with_the_key_name() -> None:
    with pytest.raises(ValueError, match="'train.stepz'"):
        run_config_from_dict({"train": {"stepz": 3}})
    with pytest.raises(ValueError, match="'train.steps': 'many' is not of type 'integer'"):
        run_config_from_dict({"train": {"steps": "many"}})
    with pytest.raises(ValueError, match="'model.channel_mults"):
        run_config_from_dict({"model": {"channel_mults": 2}})


def test_short_training_run_beats_uniform_bound(tmp_path) -> None:
    """A real ~20 s run on digits: test bits/dim well below log2(17) = 4.087, sane samples."""
    config = run_config_from_dict({
        "objective": "eps", "schedule": "cosine", "seed": 0,
        "model": {"channels": 16, "channel_mults": [1, 2]},
        "train": {"steps": 300, "batch_size": 64, "lr": 3e-3, "warmup_steps": 20,
                  "log_every": 50, "checkpoint_every": 1000, "threads": 2}})
    summary = Trainer(config, tmp_path).fit()
    assert summary["steps"] == 300 and summary["objective"] == "eps"
    model, loaded_config = load_trained_model(tmp_path / "model.pt")
    assert loaded_config == config
    result = evaluate_nll(model, load_dataset("digits", "test"), num_time_samples=4)
    assert result["nll_bpd"] < 3.5 < math.log2(17)
    assert result["nll_bpd_se"] < 0.1
    images = sample(model.eps, model.schedule, (1, 8, 8), 16, 17, steps=30, seed=0)
    assert images.shape == (16, 1, 8, 8) and images.dtype == torch.uint8
    assert images.float().mean() > 5  # not blank: digits have ink


def test_bf16_autocast_trains_on_cpu(tmp_path) -> None:
    train = {**TINY["train"], "bf16": True, "steps": 4}
    summary = Trainer(tiny_config(train=train), tmp_path).fit()
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])


@pytest.mark.slow
def test_torch_compile_trains_and_matches_eager(tmp_path) -> None:
    eager = Trainer(tiny_config(train={**TINY["train"], "steps": 3}), tmp_path / "eager").fit()
    compiled = Trainer(tiny_config(train={**TINY["train"], "steps": 3, "compile": True}),
                       tmp_path / "compiled").fit()
    assert compiled["final_loss"] == pytest.approx(eager["final_loss"], rel=1e-3)
