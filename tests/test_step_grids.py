"""The step spacings ``sample.spacings`` (vdm.model.step_grids): the grids in closed form, the
default ``time`` grid bit for bit as before, the setting names, the config and spec keys, and the
sampler table and FID-vs-NFE figure with two spacings."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import gaussian_optimal_eps_fn

from vdm.core import job_settings, job_specs
from vdm.core.config import apply_overrides, validate_workflow_config
from vdm.core.spec_base import with_overrides
from vdm.model.sampler import _ancestral_or_ddim, _dpmpp_2m, _heun, _predict_x, sample_batch
from vdm.model.schedules import get_schedule, schedule_endpoints
from vdm.model.setting_names import (
    GUIDANCE_KINDS,
    SAMPLERS,
    SPACINGS,
    EvaluationSetting,
    Guidance,
    evaluation_settings,
    parse_setting,
)
from vdm.model.step_grids import KARRAS_RHO, log_snr_grid
from vdm.pipeline.results_commands import evaluation_record
from vdm.reporting import sampler_plots
from vdm.reporting.summary_load import load_metrics
from vdm.reporting.table_text import sampler_sweep_markdown

SCHEDULES = {"cosine": get_schedule("cosine"), "linear": get_schedule("linear"),
             "learned": get_schedule("learned", logsnr_min=-9.0, logsnr_max=8.0)}


# --------------------------------------------------------------------------- the grids
@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("steps", [1, 2, 10, 64])
def test_time_grid_is_the_schedule_at_uniform_times_bit_for_bit(name: str, steps: int) -> None:
    schedule = SCHEDULES[name]
    with torch.no_grad():
        expected = schedule(torch.linspace(1.0, 0.0, steps + 1)).float()
        assert torch.equal(log_snr_grid(schedule, steps, "time"), expected)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 2, 10, 64])
def test_every_grid_runs_from_lambda_min_to_lambda_max_and_increases(name: str, spacing: str,
                                                                       steps: int) -> None:
    schedule = SCHEDULES[name]
    with torch.no_grad():
        grid = log_snr_grid(schedule, steps, spacing)
        time_grid = log_snr_grid(schedule, steps, "time")
        high, low = (float(v) for v in schedule_endpoints(schedule))
    assert grid.shape == (steps + 1,) and grid.dtype == torch.float32
    assert grid[0] == time_grid[0] and grid[-1] == time_grid[-1]  # exactly: the same final step
    assert float(grid[0]) == pytest.approx(low, abs=1e-5)
    assert float(grid[-1]) == pytest.approx(high, abs=1e-5)
    assert bool((grid.diff() > 0).all())


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_logsnr_grid_is_equally_spaced_in_lambda(name: str) -> None:
    with torch.no_grad():
        grid = log_snr_grid(SCHEDULES[name], 10, "logsnr").double()
    step = (grid[-1] - grid[0]) / 10
    assert torch.allclose(grid.diff(), step.expand(10), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_karras_grid_is_edm_eq5_equally_spaced_in_sigma_to_the_one_over_rho(name: str) -> None:
    """sigma_edm = e^{-lambda/2} = sigma/alpha; sigma_i^{1/7} equally spaced from sigma_max^{1/7}
    to sigma_min^{1/7}, and sigma_i the closed form of EDM eq. 5."""
    steps = 10
    with torch.no_grad():
        grid = log_snr_grid(SCHEDULES[name], steps, "karras").double()
    sigma = torch.exp(-grid / 2)
    root = sigma ** (1 / KARRAS_RHO)
    assert torch.allclose(root.diff(), ((root[-1] - root[0]) / steps).expand(steps), rtol=1e-5,
                          atol=0)
    s_max, s_min = math.exp(-float(grid[0]) / 2), math.exp(-float(grid[-1]) / 2)
    closed = [(s_max ** (1 / 7) + i / steps * (s_min ** (1 / 7) - s_max ** (1 / 7))) ** 7
              for i in range(steps + 1)]
    assert sigma.tolist() == pytest.approx(closed, rel=1e-5)


def test_the_spacings_differ_where_they_should_on_cosine() -> None:
    """Cosine, lambda in [-10, 7], N = 10: logsnr puts the first inner point at lambda_min + 1.7;
    karras takes its smallest steps at high lambda (small sigma)."""
    cosine = SCHEDULES["cosine"]
    with torch.no_grad():
        grids = {spacing: log_snr_grid(cosine, 10, spacing).double() for spacing in SPACINGS}
    assert float(grids["logsnr"][1]) == pytest.approx(-10.0 + 1.7, abs=1e-4)
    karras_steps = grids["karras"].diff()
    assert float(karras_steps[0]) < float(karras_steps[-1])  # dense at high noise in lambda...
    sigma = torch.exp(-grids["karras"] / 2)
    assert bool((sigma.diff().abs().diff() < 0).all())  # ...but steps in sigma shrink


def test_an_unknown_spacing_is_one_line_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"^sample.spacings: unknown step spacing 'edm'"):
        log_snr_grid(SCHEDULES["cosine"], 10, "edm")
    with pytest.raises(ValueError, match="sample.spacings"):
        EvaluationSetting("heun", 10, spacing="uniform")


# --------------------------------------------------------------------------- the samplers
def old_sample_batch(eps_fn, schedule, shape, num_levels, steps, method, generator):
    """sample_batch as it was before the spacings: the uniform time grid, inline."""
    from vdm.core.data import levels_to_pixels, model_to_levels

    times = torch.linspace(1.0, 0.0, steps + 1)
    log_snrs = schedule(times).float()
    z = torch.randn(shape, generator=generator)
    if method == "heun":
        z = _heun(eps_fn, z, log_snrs, True)
    elif method == "dpmpp2m":
        z = _dpmpp_2m(eps_fn, z, log_snrs, True)
    else:
        z = _ancestral_or_ddim(eps_fn, z, log_snrs, True, stochastic=method == "ancestral",
                               generator=generator)
    x_0, _ = _predict_x(eps_fn, z, log_snrs[-1], True)
    return levels_to_pixels(model_to_levels(x_0, num_levels), num_levels)


@pytest.mark.parametrize("method", SAMPLERS)
def test_time_spacing_gives_the_samples_of_before_bit_for_bit(method: str) -> None:
    eps_fn, schedule = gaussian_optimal_eps_fn(0.5), SCHEDULES["cosine"]
    new = sample_batch(eps_fn, schedule, (6, 1, 4, 4), 17, 7, method,
                       generator=torch.Generator().manual_seed(3), spacing="time")
    with torch.no_grad():
        old = old_sample_batch(eps_fn, schedule, (6, 1, 4, 4), 17, 7, method,
                               torch.Generator().manual_seed(3))
    assert torch.equal(new, old)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("method", SAMPLERS)
def test_the_samplers_evaluate_the_network_on_the_spacings_grid(method: str, spacing: str) -> None:
    """Every network call is at a grid point: lambda_0..lambda_{N-1} (and for Heun also
    lambda_1..lambda_N), then the final denoising at lambda_N."""
    schedule, steps, seen = SCHEDULES["cosine"], 6, []
    exact = gaussian_optimal_eps_fn(0.5)

    def recording(z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        seen.append(float(log_snr[0]))
        return exact(z, log_snr)

    sample_batch(recording, schedule, (2, 1, 4, 4), 17, steps, method,
                 generator=torch.Generator().manual_seed(0), spacing=spacing)
    grid = log_snr_grid(schedule, steps, spacing).tolist()
    if method == "heun":
        expected = [v for i in range(steps) for v in (grid[i], grid[i + 1])] + [grid[-1]]
    else:
        expected = grid[:-1] + [grid[-1]]
    assert seen == expected


# --------------------------------------------------------------------------- names and settings
KINDS = [Guidance()] + [Guidance(kind, w) for kind in GUIDANCE_KINDS if kind != "none"
                        for w in (0.5, 2.0)]


@pytest.mark.parametrize("method", SAMPLERS)
def test_every_setting_name_reads_back(method: str) -> None:
    for steps in (1, 10, 250):
        for spacing in SPACINGS:
            for guidance in KINDS:
                setting = EvaluationSetting(method, steps, guidance, spacing)
                assert parse_setting(setting.name) == setting, setting.name


def test_time_keeps_the_names_of_before_and_the_others_follow_the_steps() -> None:
    assert EvaluationSetting("ancestral", 25).name == "ancestral-25"
    assert EvaluationSetting("ddim", 10, Guidance("cfg", 2.0)).name == "ddim-10-cfg-2"
    assert EvaluationSetting("heun", 10, spacing="karras").name == "heun-10-karras"
    assert (EvaluationSetting("ddim", 10, Guidance("cfg", 2.0), "logsnr").name
            == "ddim-10-logsnr-cfg-2")
    for name in ("ddim-10-time", "ddim-10-karras-logsnr", "ddim-10-cfg-2-karras"):
        with pytest.raises(ValueError):
            parse_setting(name)


def test_evaluation_settings_are_methods_x_steps_x_spacings_x_guidance() -> None:
    settings = evaluation_settings(["heun", "ddim"], [8, 16], ["cfg"], [0, 2],
                                   ["karras", "time"])
    assert len(settings) == 2 * 2 * 2 * 2 and len({s.name for s in settings}) == 16
    assert settings[0] == EvaluationSetting("heun", 8, Guidance(), "karras")  # the primary
    assert [s.name for s in settings[:4]] == ["heun-8-karras", "heun-8-karras-cfg-2", "heun-8",
                                              "heun-8-cfg-2"]


# --------------------------------------------------------------------------- config and specs
DEFAULT = validate_workflow_config({})


def grid(*overrides: str) -> dict:
    return validate_workflow_config(apply_overrides(DEFAULT, list(overrides)))


def test_the_config_key_defaults_to_time_and_refuses_bad_lists() -> None:
    assert grid()["sample"]["spacings"] == ["time"]
    for value, message in (("[time,time]", "invalid config key 'sample.spacings': ['time', "
                                           "'time'] has non-unique elements"),
                           ("[karras,edm]", "invalid config key 'sample.spacings.1': 'edm' is "
                                            "not one of ['time', 'logsnr', 'karras']"),
                           ("[]", "invalid config key 'sample.spacings': [] should be non-empty")):
        with pytest.raises(ValueError) as error:
            grid(f"sample.spacings={value}")
        assert message in str(error.value) and "\n" not in str(error.value)


def test_the_spec_names_the_spacing_only_when_it_is_not_time() -> None:
    assert job_settings.SPACINGS == SPACINGS
    default = job_specs.sample_spec(grid(), 0)
    assert default.sampling.spacing == "time" and "spacing" not in default.to_dict()["sampling"]
    assert "spacing" not in default.to_json()  # the default grid's specs are as before
    karras = job_specs.evaluate_spec(grid("sample.spacings=[karras,time]"), 0)
    assert karras.sampling.spacing == "karras" and karras.sweep == ("ancestral-25",)
    assert job_specs.EvaluateSpec.from_json(karras.to_json()) == karras
    assert json.loads(karras.to_json())["sampling"]["spacing"] == "karras"
    by_hand = with_overrides(default.to_dict(), ["sampling.spacing=logsnr"])  # vdm sample --set
    assert job_specs.SampleSpec.from_dict(by_hand).sampling.spacing == "logsnr"
    with pytest.raises(ValueError, match=r"spec key 'sampling.spacing': 'edm' is not one of "
                                         r"time, logsnr, karras"):
        job_specs.SampleSpec.from_dict(with_overrides(default.to_dict(),
                                                      ["sampling.spacing=edm"]))


@pytest.mark.parametrize("spacings", [["time", "karras"], ["logsnr"], ["karras", "logsnr", "time"]])
def test_sweep_names_follow_the_models_settings_with_spacings(spacings: list[str]) -> None:
    config = grid("sample.methods=[heun,ddim]", "sample.steps=[8,16]",
                  f"sample.spacings=[{','.join(spacings)}]")
    expected = evaluation_settings(["heun", "ddim"], [8, 16], [], [0.0], spacings)
    assert job_specs.sweep_setting_names(config) == tuple(s.name for s in expected[1:])
    assert job_specs.sampling_settings(config).spacing == spacings[0]


# --------------------------------------------------------------------------- summary rows
def fid_json(spacing: str | None) -> dict:
    sampling = {"method": "heun", "steps": 10, "nfe": 21, "guidance_kind": "none",
                "guidance_weight": 0.0} | ({} if spacing is None else {"spacing": spacing})
    return {"fid": 3.0, "kid": 0.1, "kid_std": 0.01, "num_samples": 100, "sampling": sampling}


def test_the_summary_gets_a_spacing_column_only_with_a_spacing_other_than_time(tmp_path) -> None:
    for spacing in (None, "time"):
        assert "sample_spacing" not in evaluation_record(fid_json(spacing), tmp_path, True)
    assert evaluation_record(fid_json("karras"), tmp_path, False)["sample_spacing"] == "karras"
    run = {"dataset": "digits-gmm", "objective": "eps", "schedule": "cosine", "seed": 0}
    paths = []
    for name, spacings in (("plain", ["time"]), ("both", ["time", "karras"])):
        record = run | {"evaluations": [evaluation_record(fid_json(s), tmp_path, i == 0)
                                        for i, s in enumerate(spacings)]}
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(record))
    assert "sample_spacing" not in load_metrics(paths[:1]).columns
    both = load_metrics(paths[1:])
    assert both["sample_spacing"].tolist() == ["time", "karras"]


# --------------------------------------------------------------------------- table and figure
def sweep_frame(spacings: tuple[str, ...]) -> pd.DataFrame:
    """Two seeds of one cell, ancestral and heun at 4 and 8 steps for each spacing."""
    rows = []
    for seed in range(2):
        for sampler in ("ancestral", "heun"):
            for spacing in spacings:
                for steps in (4, 8):
                    nfe = 2 * steps + 1 if sampler == "heun" else steps + 1
                    rows.append({"dataset": "digits-gmm", "conditioning": "uncond",
                                 "parameterization": "eps", "objective": "eps",
                                 "schedule": "cosine", "seed": seed, "sampler": sampler,
                                 "sample_steps": steps, "sample_spacing": spacing, "nfe": nfe,
                                 "guidance_kind": "none", "guidance_weight": 0.0,
                                 "primary": (sampler, spacing, steps) == ("ancestral", "time", 4),
                                 "fid": 5.0 + 10.0 / nfe + (spacing == "karras") + 0.1 * seed,
                                 "feature_extractor": "classifier-digits-gmm",
                                 "num_fid_samples": 100})
    return pd.DataFrame(rows)


def test_the_sampler_table_has_a_spacing_column_only_with_several_spacings() -> None:
    both = sampler_sweep_markdown(sweep_frame(("time", "karras")))
    assert "| spacing |" in both and "| heun | karras |" in both and "karras = uniform in" in both
    plain = sampler_sweep_markdown(sweep_frame(("time",)).drop(columns="sample_spacing"))
    assert "spacing" not in plain and "| heun |" in plain


def test_fid_vs_nfe_draws_one_line_per_sampler_and_spacing() -> None:
    fig = sampler_plots.fid_vs_nfe_figure(sweep_frame(("time", "karras")))
    fig.draw_without_rendering()
    (ax,) = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"ancestral, time", "ancestral, karras", "heun, time", "heun, karras"}
    assert lines["heun, karras"].get_linestyle() == ":" and lines["heun, time"].get_linestyle() == "-"
    assert lines["heun, karras"].get_color() == lines["heun, time"].get_color()
    assert np.allclose(lines["heun, karras"].get_ydata() - lines["heun, time"].get_ydata(), 1.0)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert sorted(legend) == sorted(lines)
    single = sampler_plots.fid_vs_nfe_figure(sweep_frame(("time",)).drop(columns="sample_spacing"))
    (ax,) = [ax for ax in single.axes if ax.get_xscale() == "log"]
    assert {line.get_label() for line in ax.get_lines()} == {"ancestral", "heun"}
