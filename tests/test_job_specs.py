"""The typed job specs (vdm.core.job_specs): JSON in and out, one-line errors, and which jobs'
specs a change of each workflow-config key changes (= which jobs Snakemake reruns)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vdm.core.config import apply_overrides, load_config_file, validate_workflow_config
from vdm.core.job_settings import OdeSettings
from vdm.core.job_specs import (
    JOB_SPECS,
    EvaluateSpec,
    NllSpec,
    SweepSpec,
    evaluate_spec,
    job_spec,
    nll_spec,
    spec_templates,
    sweep_setting_names,
)
from vdm.core.spec_base import with_overrides
from vdm.model.setting_names import evaluation_settings

DEFAULT = validate_workflow_config({})
AXES = validate_workflow_config({**load_config_file("config/test.yaml"),
                                 **load_config_file("config/test_axes.yaml")})


def changed(config: dict[str, Any], *overrides: str) -> dict[str, Any]:
    """``config`` with ``key=value`` overrides, validated (so every change is a valid grid)."""
    return validate_workflow_config(apply_overrides(config, list(overrides)))


@pytest.mark.parametrize("config", [DEFAULT, AXES], ids=["default", "axes"])
@pytest.mark.parametrize("command", sorted(JOB_SPECS))
def test_json_round_trip(command: str, config: dict[str, Any]) -> None:
    spec_type, _ = JOB_SPECS[command]
    spec = job_spec(command, config, seed=3)
    text = spec.to_json()
    assert spec_type.from_json(text) == spec and spec_type.from_json(text).to_json() == text
    assert json.loads(text) == spec.to_dict()


def test_split_and_fused_evaluation_share_their_settings() -> None:
    """evaluate's spec is made of the very settings the sample, nll, fid and sweep jobs get."""
    fused = evaluate_spec(AXES, 1)
    assert fused.sampling == job_spec("sample", AXES, 1).sampling
    assert fused.nll == nll_spec(AXES, 1).nll and fused.nll.ode is not None
    assert fused.fid == job_spec("fid", AXES).fid == job_spec("fid-floor", AXES).fid
    assert fused.fid.features == job_spec("fid-reference", AXES).features
    sweep = job_spec("sweep", AXES, 1)
    assert fused.sweep == sweep.settings
    assert (sweep.num_samples, sweep.batch_size) == (fused.sampling.num_samples,
                                                      fused.sampling.batch_size)
    assert fused.denoiser_floor == nll_spec(AXES, 1).denoiser_floor


@pytest.mark.parametrize("sample, guidance", [
    ({"methods": ["ancestral"], "steps": [25]}, {"kinds": [], "weights": [0.0]}),
    ({"methods": ["heun", "ddim"], "steps": [8, 16]}, {"kinds": [], "weights": [0.0]}),
    ({"methods": ["ancestral", "heun"], "steps": [8]},
     {"kinds": ["cfg", "classifier"], "weights": [0, 2, 0.5]}),
    ({"methods": ["dpmpp2m"], "steps": [10, 20]}, {"kinds": ["cfg"], "weights": [1.5, 3]}),
    ({"methods": ["heun", "ddim"], "steps": [8], "spacings": ["karras", "time", "logsnr"]},
     {"kinds": ["cfg", "classifier"], "weights": [0, 2]}),
])
def test_sweep_names_are_the_models_evaluation_settings(sample, guidance) -> None:
    """The names the specs list are exactly vdm.model.guidance's settings after the primary."""
    config = {"sample": sample, "guidance": guidance}
    expected = evaluation_settings(sample["methods"], sample["steps"], guidance["kinds"],
                                   guidance["weights"], sample.get("spacings", ["time"]))
    assert sweep_setting_names(config) == tuple(s.name for s in expected[1:])


# What each workflow-config key's change changes: the commands whose spec differs. Every leaf
# key of the schema is listed (test_every_config_key_is_decided), so a new key needs a decision.
MODEL_JOBS = {"sample", "nll", "sweep", "evaluate"}
FID_JOBS = {"fid-reference", "fid-floor", "fid", "sweep", "evaluate"}
DATA_JOBS = {"prepare-data", "classifier", "noisy-classifier", "fid-reference", "fid-floor", "fid"}
NONE: set[str] = set()  # keys of training (its spec is the run config), tables or resources
CHANGES: dict[str, tuple[str, set[str]]] = {
    "name": ("name=other", NONE),
    "dataset": ("dataset=mnist", DATA_JOBS),
    "data_root": ("data_root=/elsewhere", DATA_JOBS),
    "download": ("download=true", {"prepare-data"}),
    "device": ("device=cpu", set(JOB_SPECS) - {"prepare-data"}),
    "parameterizations": ("parameterizations=[v]", NONE),
    "objectives": ("objectives=[v]", NONE),
    "schedules": ("schedules=[flow]", NONE),
    "seeds": ("seeds=[0,1,2,3]", NONE),
    "conditioning.enabled": ("conditioning.enabled=true", NONE),
    "conditioning.label_dropout": ("conditioning.label_dropout=0.2", NONE),
    # a kind with weight 0 alone adds no setting (with a weight > 0: IN_CONTEXT); weights on a
    # conditional grid with kinds [cfg]
    "guidance.kinds": ("guidance.kinds=[cfg]", NONE),
    "guidance.weights": ("guidance.weights=[0,3]", {"sweep", "evaluate"}),
    "guidance.classifier.steps": ("guidance.classifier.steps=10", {"noisy-classifier"}),
    "guidance.classifier.batch_size": ("guidance.classifier.batch_size=10", {"noisy-classifier"}),
    "guidance.classifier.lr": ("guidance.classifier.lr=0.01", {"noisy-classifier"}),
    "guidance.classifier.channels": ("guidance.classifier.channels=8", {"noisy-classifier"}),
    "guidance.classifier.seed": ("guidance.classifier.seed=5", {"noisy-classifier"}),
    "baseline": ("baseline={objective: eps, schedule: cosine}", NONE),
    "logsnr_min": ("logsnr_min=-12", {"noisy-classifier"}),
    "logsnr_max": ("logsnr_max=8", {"noisy-classifier"}),
    "objective_kwargs": ("objective_kwargs={sigmoid: {bias: 1.0}}", NONE),
    **{f"model.{key}": (f"model.{key}={value}", NONE) for key, value in (
        ("channels", 8), ("channel_mults", "[1]"), ("num_res_blocks", 2),
        ("attention_resolutions", "[4]"), ("dropout", 0.1))},
    **{f"train.{key}": (f"train.{key}={value}", NONE) for key, value in (
        ("steps", 5), ("batch_size", 8), ("lr", 0.01), ("schedule_lr", 0.01),
        ("warmup_steps", 1), ("weight_decay", 0.1), ("adam_beta2", 0.99), ("grad_clip", 2.0),
        ("ema_decay", 0.9), ("log_every", 2), ("checkpoint_every", 2), ("bf16", "true"),
        ("compile", "true"), ("threads", 2))},
    # the fused evaluate job evaluates the snapshots too (a step at train.steps: IN_CONTEXT)
    "train.snapshots": ("train.snapshots=[100]", {"evaluate"}),
    "evaluation.denoiser_floor": ("evaluation.denoiser_floor=false", {"nll", "evaluate"}),
    "evaluation.fused": ("evaluation.fused=false", NONE),
    # off on digits either way (null: on exactly with a known density; on digits-gmm: IN_CONTEXT)
    "evaluation.bayes_samplers": ("evaluation.bayes_samplers=false", NONE),
    "sample.num_samples": ("sample.num_samples=64", {"sample", "sweep", "evaluate"}),
    "sample.batch_size": ("sample.batch_size=64", {"sample", "sweep", "evaluate"}),
    "sample.methods": ("sample.methods=[ancestral,heun]", {"sweep", "evaluate"}),
    "sample.steps": ("sample.steps=[10]", {"sample", "evaluate"}),
    # a further spacing adds sweep settings; the primary's stays time (a first spacing other
    # than time: IN_CONTEXT)
    "sample.spacings": ("sample.spacings=[time,karras]", {"sweep", "evaluate"}),
    **{f"nll.{key}": (f"nll.{key}={value}", {"nll", "evaluate"}) for key, value in (
        ("split", "train"), ("num_time_samples", 8), ("batch_size", 64), ("max_examples", 50),
        ("ode.enabled", "true"))},
    # the ODE's own settings change nothing while it is off (they do when on: below)
    **{f"nll.ode.{key}": (f"nll.ode.{key}={value}", NONE) for key, value in (
        ("max_examples", 10), ("num_probes", 2), ("rtol", 0.001), ("atol", 0.001),
        ("batch_size", 50))},
    "fid.feature_extractor": ("fid.feature_extractor=inception-v3-compat", FID_JOBS),
    # unused by the classifier extractor (Inception's weights: below)
    "fid.feature_extractor_weights_path": ("fid.feature_extractor_weights_path=w.pth", NONE),
    "fid.reference_split": ("fid.reference_split=test", FID_JOBS),
    # the fresh reference's size changes nothing without a fresh reference (with one: below)
    "fid.fresh_reference_size": ("fid.fresh_reference_size=500", NONE),
    "fid.batch_size": ("fid.batch_size=64", FID_JOBS),
    "fid.kid_subset_size": ("fid.kid_subset_size=50", FID_JOBS - {"fid-reference"}),
    "fid.prc": ("fid.prc=false", FID_JOBS - {"fid-reference"}),
    **{f"fid.classifier.{key}": (f"fid.classifier.{key}={value}", {"classifier"})
       for key, value in (("steps", 10), ("batch_size", 8), ("lr", 0.01), ("seed", 3),
                          ("min_accuracy", 0.5))},
    "resources": ("resources={evaluate: {gpu: 1}}", NONE),
}
IN_CONTEXT = [  # changes that matter only with another setting on: (base overrides, change, jobs)
    (["nll.ode.enabled=true"], "nll.ode.rtol=0.001", {"nll", "evaluate"}),
    (["nll.ode.enabled=true"], "nll.ode.max_examples=10", {"nll", "evaluate"}),
    (["fid.feature_extractor=inception-v3-compat"], "fid.feature_extractor_weights_path=w.pth",
     FID_JOBS),
    (["dataset=digits-gmm", "fid.reference_split=fresh"], "fid.fresh_reference_size=500",
     FID_JOBS),
    # with a fresh reference the floor scores as many fresh true samples as the runs' samples
    (["dataset=digits-gmm", "fid.reference_split=fresh"], "sample.num_samples=64",
     {"sample", "sweep", "evaluate", "fid-floor"}),
    (["conditioning.enabled=true", "guidance.kinds=[cfg]", "guidance.weights=[0,2]"],
     "guidance.weights=[0,2,4]", {"sweep", "evaluate"}),
    (["conditioning.enabled=true", "guidance.kinds=[cfg]", "guidance.weights=[0,2]"],
     "guidance.kinds=[cfg,classifier]", {"sweep", "evaluate"}),
    ([], "sample.spacings=[karras]", {"sample", "evaluate"}),
    ([], "train.snapshots=[300]", NONE),  # the snapshot at train.steps is model.pt itself
    (["dataset=digits-gmm"], "evaluation.bayes_samplers=false",
     {"sample", "fid", "sweep", "evaluate"}),
]


def specs_of(config: dict[str, Any]) -> dict[str, str]:
    return {command: job_spec(command, config, seed=0).to_json() for command in JOB_SPECS}


def leaf_keys(mapping: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            keys |= leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def test_every_config_key_is_decided() -> None:
    """Each leaf key of the (schema-filled) workflow config has its row in CHANGES; resources'
    per-rule entries count as one key."""
    keys = {key for key in leaf_keys(DEFAULT) if not key.startswith("resources.")} | {"resources"}
    assert keys == set(CHANGES)


@pytest.mark.parametrize("key", sorted(CHANGES))
def test_a_changed_setting_changes_exactly_its_jobs_specs(key: str) -> None:
    change, jobs = CHANGES[key]
    base = changed(DEFAULT, "conditioning.enabled=true") if key.startswith("guidance.") else DEFAULT
    if key == "guidance.weights":
        base = changed(base, "guidance.kinds=[cfg]")
    before, after = specs_of(base), specs_of(changed(base, change))
    assert {command for command in JOB_SPECS if before[command] != after[command]} == jobs


@pytest.mark.parametrize(("base", "change", "jobs"), IN_CONTEXT)
def test_a_setting_that_matters_only_in_context(base: list[str], change: str,
                                                 jobs: set[str]) -> None:
    config = changed(DEFAULT, *base)
    before, after = specs_of(config), specs_of(changed(config, change))
    assert {command for command in JOB_SPECS if before[command] != after[command]} == jobs


def test_the_seed_is_part_of_per_model_specs_only() -> None:
    assert {command for command in JOB_SPECS if job_spec(command, DEFAULT, 0)
            != job_spec(command, DEFAULT, 1)} == MODEL_JOBS


BAD = [  # (mutation of a valid EvaluateSpec mapping, the one-line error)
    (lambda d: d.pop("seed"), "missing spec key 'seed'"),
    (lambda d: d["nll"].pop("split"), "missing spec key 'nll.split'"),
    (lambda d: d.update(seeds=1), "unknown spec key 'seeds'; the keys of EvaluateSpec are seed, "
                                  "device, ema, sampling, nll, fid, denoiser_floor, sweep, "
                                  "bayes_samplers"),
    (lambda d: d["fid"]["features"].update(extractor="x"),
     "unknown spec key 'fid.features.extractor'"),
    (lambda d: d.update(seed="3"), "spec key 'seed': expected int, got '3'"),
    (lambda d: d.update(seed=True), "spec key 'seed': expected int, got True"),
    (lambda d: d.update(ema=1), "spec key 'ema': expected bool, got 1"),
    (lambda d: d.update(sampling=None), "spec key 'sampling': expected mapping, got null"),
    (lambda d: d.update(nll=[1]), "spec key 'nll': expected a mapping, got [1]"),
    (lambda d: d.update(sweep="ddim-10"), "spec key 'sweep': expected a list, got 'ddim-10'"),
    (lambda d: d.update(sweep=["ddim-10", 3]), "spec key 'sweep[1]': expected str, got 3"),
    (lambda d: d["sampling"].update(steps=0),
     "spec key 'sampling.steps': 0 is less than the minimum of 1"),
    (lambda d: d["nll"].update(time_sampling="lambda"),
     "spec key 'nll.time_sampling': 'lambda' is not one of logsnr, t"),
    (lambda d: d["nll"].update(ode={"num_probes": 1}), "missing spec key 'nll.ode.max_examples'"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD)
def test_bad_spec_is_one_line_naming_the_key(mutate, message: str) -> None:
    data = evaluate_spec(AXES, 0).to_dict()
    mutate(data)
    with pytest.raises(ValueError) as error:
        EvaluateSpec.from_dict(data)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_values_are_typed_as_declared() -> None:
    """An integer where a float is declared becomes a float; null where allowed stays null."""
    data = evaluate_spec(AXES, 0).to_dict()
    data["nll"]["ode"]["rtol"] = 1
    data["nll"]["max_examples"] = None
    spec = EvaluateSpec.from_dict(data)
    assert isinstance(spec.nll.ode.rtol, float) and spec.nll.max_examples is None
    assert EvaluateSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="spec is not valid JSON"):
        EvaluateSpec.from_json("{")


def test_overrides_reach_into_a_null_sub_spec_from_its_template() -> None:
    """`--set nll.ode.max_examples=10` on a job without the ODE bound starts nll.ode from the
    config's ODE settings (as if it were enabled)."""
    spec = nll_spec(DEFAULT, 0)
    assert spec.nll.ode is None
    data = with_overrides(spec.to_dict(), ["nll.ode.max_examples=10", "seed=2"],
                          spec_templates(DEFAULT))
    ode = NllSpec.from_dict(data).nll.ode
    ode_config = DEFAULT["nll"]["ode"]
    assert ode == OdeSettings(max_examples=10, num_probes=ode_config["num_probes"],
                              rtol=ode_config["rtol"], atol=ode_config["atol"],
                              batch_size=ode_config["batch_size"])
    assert data["seed"] == 2 and spec.to_dict()["nll"]["ode"] is None  # the input is unchanged
    with pytest.raises(ValueError, match="must look like key=value"):
        with_overrides(spec.to_dict(), ["seed"])
    with pytest.raises(ValueError, match="'nll.ode' is not a mapping of this spec"):
        with_overrides(spec.to_dict(), ["nll.ode.rtol=1"])  # no template given


def test_describe_lists_every_key_with_its_default() -> None:
    spec = job_spec("sweep", AXES, 0)
    rows = {key: doc for key, _, doc in SweepSpec.describe(spec)}
    assert list(rows) == ["seed", "device", "ema", "settings", "num_samples", "batch_size", "fid",
                          "fid.features", "fid.features.feature_extractor",
                          "fid.features.weights_path", "fid.features.reference_split",
                          "fid.features.batch_size", "fid.features.fresh_reference_size",
                          "fid.kid_subset_size", "fid.prc", "bayes_samplers"]
    assert rows["bayes_samplers"].endswith("(default: true)")  # digits-gmm: on
    assert rows["num_samples"].endswith(f"[images] (default: {AXES['sample']['num_samples']})")
    assert rows["settings"].endswith(f"(default: {json.dumps(list(spec.settings))})")
    assert all(doc for doc in rows.values())


def test_describe_gives_a_null_sub_specs_defaults_from_its_template() -> None:
    rows = {key: doc for key, _, doc in NllSpec.describe(nll_spec(DEFAULT, 0),
                                                          templates=spec_templates(DEFAULT))}
    assert rows["nll.ode"].endswith("(default: null; once set, its keys start from the defaults "
                                    "below)")
    assert rows["nll.ode.rtol"].endswith(f"(default: {DEFAULT['nll']['ode']['rtol']})")
    assert "default" not in NllSpec.describe(nll_spec(DEFAULT, 0))[-2][2]  # no template: none
