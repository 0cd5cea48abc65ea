"""The package's schema (config/schema.yaml, shipped as vdm/core/schema.yaml): package data, the
one place of every run-config type and default, one-line errors naming the key."""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import tomllib
import typing
from importlib import resources
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from vdm.core import schema as schema_module
from vdm.core.config import (
    RunConfig,
    load_config_file,
    run_config_default,
    run_config_from_dict,
    validate_workflow_config,
    workflow_cell,
)
from vdm.core.schema import inline_local_refs, run_schema, validate_with_defaults, workflow_schema

REPO = Path(__file__).resolve().parents[1]
#: run-config keys that are the grid's own definitions (the axes are one item of the grid's list)
SHARED = ("dataset", "data_root", "download", "device", "logsnr_min", "logsnr_max", "model",
          "conditioning")
AXES = {"objective": "objectives", "schedule": "schedules", "parameterization": "parameterizations",
        "seed": "seeds"}


def test_schema_is_package_data_and_the_file_in_config() -> None:
    packaged = resources.files("vdm.core").joinpath("schema.yaml")
    assert packaged.read_text() == (REPO / "config/schema.yaml").read_text()
    link = REPO / "vdm/core/schema.yaml"
    assert link.is_symlink() and link.resolve() == (REPO / "config/schema.yaml").resolve()
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]
    assert "schema.yaml" in package_data["vdm.core"]
    assert schema_module.SCHEMA_FILE.read_text() == packaged.read_text()
    for schema in (workflow_schema(), run_schema()):
        Draft202012Validator.check_schema(schema)


def test_inline_local_refs_writes_annotations_over_the_target_and_refuses_constraints() -> None:
    root = {"$defs": {"n": {"type": "integer", "minimum": 1, "default": 3},
                      "a/b": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
            "properties": {"a": {"$ref": "#/$defs/n"}, "b": {"$ref": "#/$defs/n", "default": 5},
                           "c": {"$ref": "#/$defs/a~1b", "description": "nested, escaped"}}}
    assert inline_local_refs(root["properties"], root) == {
        "a": {"type": "integer", "minimum": 1, "default": 3},
        "b": {"type": "integer", "minimum": 1, "default": 5},
        "c": {"type": "array", "items": {"type": "integer", "minimum": 1, "default": 3},
              "description": "nested, escaped"}}
    with pytest.raises(ValueError, match=r"keywords other than .*: \['minimum'\]"):
        inline_local_refs({"$ref": "#/$defs/n", "minimum": 2}, root)
    with pytest.raises(ValueError, match="only local references"):
        inline_local_refs({"$ref": "other.yaml#/n"}, root)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config").glob("*.yaml")
                                         if p.name != "schema.yaml"))
def test_defaults_are_filled_as_snakemake_fills_them(name: str) -> None:
    """validate_with_defaults (no Snakemake needed) gives every shipped config exactly what
    snakemake.utils.validate gives it, the Snakefile's validation."""
    from snakemake.utils import validate

    data = load_config_file(REPO / "config" / name)
    expected = copy.deepcopy(data)
    validate(expected, str(REPO / "config/schema.yaml"))
    assert validate_with_defaults(copy.deepcopy(data), workflow_schema()) == expected
    assert validate_workflow_config(data) == expected


def test_run_schema_takes_the_grid_definitions() -> None:
    grid = workflow_schema()
    grid_properties, run = grid["properties"], run_schema()["properties"]
    assert set(run) == {*SHARED, *AXES, "objective_kwargs", "train"}
    for key in SHARED:
        assert run[key] == inline_local_refs(grid_properties[key], grid), key
    for key, axis in AXES.items():
        assert {k: v for k, v in run[key].items() if k != "default"} == grid_properties[axis]["items"]
        assert run[key]["default"] in grid_properties[axis]["items"].get("enum", [run[key]["default"]])
    grid_train, run_train = grid_properties["train"]["properties"], run["train"]["properties"]
    assert set(run_train) == set(grid_train)  # a key added to the grid's train must be added here
    for key in set(grid_train) - {"threads"}:
        assert run_train[key] == grid_train[key], key
    # threads: torch's default unless given; a grid job always gets an integer (Snakemake's)
    assert run_train["threads"]["default"] is None and grid_train["threads"]["type"] == "integer"


def _fields(cls: type) -> dict[str, typing.Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: (_fields(hints[f.name]) if dataclasses.is_dataclass(hints[f.name]) else None)
            for f in dataclasses.fields(cls)}


def _properties(schema: dict) -> dict[str, typing.Any]:
    return {key: (_properties(spec) if spec.get("type") == "object" and "properties" in spec
                  else None) for key, spec in schema["properties"].items()}


def test_run_config_is_the_typed_view_of_the_run_schema() -> None:
    """Same keys at every level; RunConfig() is the schema's defaults, nothing else."""
    assert _fields(RunConfig) == _properties(run_schema())
    defaults = RunConfig()
    assert defaults == run_config_from_dict({})
    schema = run_schema()
    for section in ("model", "train", "conditioning"):
        for key, spec in schema["properties"][section]["properties"].items():
            assert getattr(getattr(defaults, section), key) == spec["default"], f"{section}.{key}"
            assert run_config_default(f"{section}.{key}") == spec["default"]
    for key in (*AXES, "dataset", "device", "logsnr_min", "objective_kwargs"):
        assert getattr(defaults, key) == schema["properties"][key]["default"], key
    typed = run_config_from_dict({"logsnr_max": 13, "train": {"lr": 1, "steps": 5}})
    assert type(typed.logsnr_max) is float and type(typed.train.lr) is float
    assert type(typed.train.steps) is int


def test_run_config_of_a_grid_cell_is_the_cell() -> None:
    grid = validate_workflow_config(load_config_file(REPO / "config/perspectives.yaml"))
    cell = workflow_cell(grid, "elbo", "learned", 2, "v")
    config = run_config_from_dict(cell).to_dict()
    expected = json.loads(json.dumps(cell))  # an unconditional cell gives only enabled: false
    expected["conditioning"]["label_dropout"] = run_config_default("conditioning.label_dropout")
    # no snapshots: the cell leaves train.snapshots out (its params stay as before the key)
    assert "snapshots" not in expected["train"]
    expected["train"]["snapshots"] = run_config_default("train.snapshots")
    assert json.loads(json.dumps(config)) == expected


ALLOWED_TRAIN = ("adam_beta2, batch_size, bf16, checkpoint_every, compile, ema_decay, grad_clip, "
                 "log_every, lr, schedule_lr, snapshots, steps, threads, warmup_steps, "
                 "weight_decay")


@pytest.mark.parametrize(("data", "message"), [
    ({"train": {"stepz": 3}},
     f"invalid config key 'train.stepz': unknown key; allowed keys of 'train': {ALLOWED_TRAIN}"),
    ({"steps": 3}, "invalid config key 'steps': unknown key; allowed keys: conditioning, "
                   "data_root, dataset, device, download, logsnr_max, logsnr_min, model, "
                   "objective, objective_kwargs, parameterization, schedule, seed, train"),
    ({"train": {"steps": "many"}}, "invalid config key 'train.steps': 'many' is not of type 'integer'"),
    ({"train": {"steps": 0}}, "invalid config key 'train.steps': 0 is less than the minimum of 1"),
    ({"train": {"threads": 0}}, "invalid config key 'train.threads': 0 is less than the minimum of 1"),
    ({"train": "fast"}, "invalid config key 'train': 'fast' is not of type 'object'"),
    ({"objective": "score"}, "invalid config key 'objective': 'score' is not one of ['eps', 'x0', "
                             "'v', 'elbo', 'sigmoid', 'min_snr', 'edm', 'flow']"),
    ({"seed": -1}, "invalid config key 'seed': -1 is less than the minimum of 0"),
    ({"model": {"channel_mults": 2}}, "invalid config key 'model.channel_mults': 2 is not of type "
                                      "'array'"),
    ({"conditioning": {"label_dropout": 1.0}}, "invalid config key 'conditioning.label_dropout': "
                                               "1.0 is greater than or equal to the maximum of 1"),
    ({"objective_kwargs": {"bias": "high"}},
     "invalid config key 'objective_kwargs.bias': 'high' is not of type 'number'"),
])
def test_bad_run_config_is_one_line_naming_the_key(data: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        run_config_from_dict(data)
    assert str(error.value) == message


def test_strings_that_spell_the_schema_type_are_taken_as_it() -> None:
    """YAML 1.1 reads 1e-4 as a string; --config-json may quote numbers: the schema's type
    decides, as for the grid's --config values."""
    config = run_config_from_dict({"train": {"lr": "1e-4", "steps": "7", "bf16": "true"}})
    assert (config.train.lr, config.train.steps, config.train.bf16) == (1e-4, 7, True)


@pytest.fixture
def without_yaml_and_jsonschema(monkeypatch: pytest.MonkeyPatch) -> typing.Iterator[None]:
    """As on the GPU-check machines: PyYAML and jsonschema cannot be imported (schema unread)."""
    caches = (schema_module._workflow_schema, schema_module.run_schema_view)
    for cache in caches:
        cache.cache_clear()
    monkeypatch.setitem(sys.modules, "yaml", None)
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    yield
    for cache in caches:
        cache.cache_clear()


def test_without_yaml_and_jsonschema_a_complete_run_config_still_builds(
        request: pytest.FixtureRequest) -> None:
    """A checkpoint's run config (complete) is its typed view; a missing key fails naming it."""
    expected = run_config_from_dict({"objective": "v", "logsnr_max": 13, "train": {"steps": 9}})
    complete = json.loads(json.dumps(expected.to_dict()))
    request.getfixturevalue("without_yaml_and_jsonschema")
    with pytest.raises(ImportError):
        __import__("yaml")
    assert run_config_from_dict(complete) == expected
    del complete["train"]["steps"]
    with pytest.raises(ValueError, match=r"^config key 'train.steps' is not given and its default "
                                         r"is in the package's schema, which needs yaml to read"):
        run_config_from_dict(complete)
    with pytest.raises(ValueError, match=r"^unknown config key 'model.chanels'$"):
        run_config_from_dict({**complete, "model": {"chanels": 3}})


def test_train_help_without_the_schema_has_no_defaults(without_yaml_and_jsonschema: None) -> None:
    import argparse

    from vdm.pipeline.train_command import train_arguments

    parser = argparse.ArgumentParser()
    train_arguments(parser)
    assert "(default:" not in parser.format_help()


def test_without_yaml_and_jsonschema_the_gpu_check_cells_build(request: pytest.FixtureRequest
                                                               ) -> None:
    """The GPU check's cells, built there from the resolved configs, are the cells that the
    grid's jobs train (common.smk's run_config) where the schema can be read."""
    from vdm.bench.configs import cell_run_config, load_pipeline_config

    grid = validate_workflow_config(load_config_file(REPO / "config/mnist.yaml"))
    trained = run_config_from_dict(workflow_cell(grid, "elbo", "learned", 0))
    request.getfixturevalue("without_yaml_and_jsonschema")
    bare = cell_run_config(load_pipeline_config(REPO / "config/mnist.yaml"), "elbo", "learned", 0)
    assert bare == trained
