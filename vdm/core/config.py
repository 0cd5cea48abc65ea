"""Configuration of one run (one objective x schedule x seed), with strict key checking.

A run configuration is a nested mapping (YAML/JSON) turned into :class:`RunConfig`; unknown keys
and wrongly typed values fail immediately with a one-line error naming the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ModelConfig:
    """UNet size (see :class:`vdm.model.network.UNet`). Defaults: the digits default grid's."""

    channels: int = 16
    channel_mults: list[int] = field(default_factory=lambda: [1, 2])
    num_res_blocks: int = 1
    attention_resolutions: list[int] = field(default_factory=list)
    dropout: float = 0.0


@dataclass
class TrainConfig:
    """Optimisation settings (AdamW, linear warm-up then constant LR, EMA of the weights).

    Defaults: the digits default grid's (config/config.yaml)."""

    steps: int = 300
    batch_size: int = 128
    lr: float = 3e-3
    schedule_lr: float | None = None  # learned schedule's LR; None = same as lr
    warmup_steps: int = 50
    weight_decay: float = 0.0
    adam_beta2: float = 0.999
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    log_every: int = 10
    checkpoint_every: int = 250
    bf16: bool = False
    compile: bool = False
    threads: int | None = None  # torch intra-op threads on CPU; None = torch default


@dataclass
class ConditioningConfig:
    """Class-conditional training (Ho & Salimans 2022, classifier-free guidance).

    ``enabled``: the network gets a class embedding (:class:`vdm.model.network.UNet` ``num_classes``)
    and is trained on the minibatch's labels; disabled (default) leaves the model, its
    initialisation and its training bitwise as without conditioning. ``label_dropout``: the
    probability ``p_uncond`` with which a training label is replaced by the learned null ("no
    class") token, so one network learns both ``eps_hat(z, c)`` and ``eps_hat(z, null)``
    (0.1 as in Ho & Salimans 2022); must lie in ``[0, 1)``.
    """

    enabled: bool = False
    label_dropout: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"config key 'conditioning.label_dropout': must be in [0, 1), got "
                             f"{self.label_dropout!r}")


@dataclass
class RunConfig:
    """Everything that determines one trained model."""

    dataset: str = "digits"
    data_root: str = "data"
    download: bool = False
    objective: str = "eps"
    schedule: str = "cosine"
    parameterization: str = "eps"  # what the network outputs (vdm.model.parameterizations)
    seed: int = 0
    device: str = "auto"
    logsnr_min: float = -10.0  # fixed schedules: truncation; learned: initial end point
    logsnr_max: float = 7.0
    objective_kwargs: dict[str, float] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(annotation):
            return None
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        origin = typing.get_origin(annotation)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ValueError(f"config key {key!r}: expected a list, got {value!r}")
        (item_type,) = typing.get_args(annotation)
        return [_check_type(f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config key {key!r}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if annotation in (int, float, str, bool) and (
            not isinstance(value, annotation) or (annotation is int and isinstance(value, bool))):
        raise ValueError(f"config key {key!r}: expected {annotation.__name__}, got {value!r}")
    return value


def _from_mapping(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config key {prefix + unknown[0]!r}")
    kwargs = {}
    for name, value in data.items():
        if dataclasses.is_dataclass(hints[name]):
            if not isinstance(value, dict):
                raise ValueError(f"config key {prefix + name!r}: expected a mapping")
            kwargs[name] = _from_mapping(hints[name], value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(prefix + name, value, hints[name])
    return cls(**kwargs)


def run_config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Validate and build a :class:`RunConfig` (missing keys take their defaults)."""
    return _from_mapping(RunConfig, data)


# --------------------------------------------------------------------------- workflow configs
#: the grid axes of a workflow config (config/config.yaml) and the run-config key each sets
GRID_AXES = {"parameterizations": "parameterization", "objectives": "objective",
             "schedules": "schedule", "seeds": "seed"}
WORKFLOW_SCHEMA = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


def is_workflow_config(data: dict[str, Any]) -> bool:
    """True for a workflow (grid) config such as config/config.yaml, false for a run config."""
    return any(axis in data for axis in GRID_AXES)


def validate_workflow_config(data: dict[str, Any], schema: str | Path = WORKFLOW_SCHEMA
                             ) -> dict[str, Any]:
    """Validate a workflow config against config/schema.yaml and fill in its defaults, as the
    Snakefile does; one-line ``ValueError`` naming the key otherwise."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    data = json.loads(json.dumps(data))
    try:
        validate(data, str(schema))
    except WorkflowError as error:
        raise ValueError(describe_schema_error(error) or str(error).splitlines()[0]) from None
    check_workflow_config(data)
    return data


def grid_name(config: dict[str, Any], default: dict[str, Any]) -> str:
    """The name under which a grid's tables, plots and report are written (``results/<name>/``):
    ``config['name']`` when set; ``default`` when the validated ``config`` equals the validated
    embedded ``default`` config; otherwise ``grid-<first 8 hex of sha256>`` of the config's
    canonical JSON (resources excluded: they do not change results). Stable across runs."""
    if config.get("name"):
        return str(config["name"])
    def relevant(c: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in c.items() if k not in ("name", "resources")}
    if relevant(config) == relevant(default):
        return "default"
    text = json.dumps(relevant(config), sort_keys=True, default=str)
    return f"grid-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def check_workflow_config(config: dict[str, Any]) -> None:
    """Checks across keys that the schema cannot express; one-line ``ValueError`` naming the
    key. Guidance needs class-conditional models, and weights > 0 need a guidance kind."""
    conditional = config.get("conditioning", {}).get("enabled", False)
    guidance = config.get("guidance", {})
    kinds, weights = guidance.get("kinds", []), guidance.get("weights", [0.0])
    if kinds and not conditional:
        raise ValueError(f"invalid config key 'guidance.kinds': {kinds} needs class-conditional "
                         "models (conditioning.enabled: true); an unconditional model has no "
                         "class to guide toward")
    if any(w > 0 for w in weights) and not kinds:
        raise ValueError(f"invalid config key 'guidance.weights': {weights} has weights > 0 but "
                         "guidance.kinds is empty (choose cfg and/or classifier)")


def workflow_cell(config: dict[str, Any], objective: str, schedule: str, seed: int,
                  parameterization: str = "eps") -> dict[str, Any]:
    """The run configuration (mapping) of one grid cell of a validated workflow ``config``.

    Only settings of this cell enter it (e.g. ``objective_kwargs`` of its own objective), so
    adding objectives, schedules or seeds to the grid never changes a finished cell's config.
    """
    return {
        "dataset": config["dataset"], "data_root": config["data_root"],
        "download": config["download"], "device": config["device"], "objective": objective,
        "schedule": schedule, "parameterization": parameterization, "seed": int(seed),
        "logsnr_min": config["logsnr_min"],
        "logsnr_max": config["logsnr_max"],
        "objective_kwargs": config["objective_kwargs"].get(objective, {}),
        "model": config["model"], "train": config["train"],
        # only a conditional grid's label dropout enters the cell: unconditional cells stay put
        "conditioning": (dict(config["conditioning"]) if config.get("conditioning", {}).get(
            "enabled") else {"enabled": False}),
    }


def pick_workflow_cell(config: dict[str, Any], source: str, **chosen: Any) -> dict[str, Any]:
    """The cell of ``config`` named by ``chosen`` (``parameterization=``, ``objective=``,
    ``schedule=``, ``seed=``; None
    = not given). An axis with one value needs no choice; for the others a missing choice is a
    one-line ``ValueError`` listing the grid's values. A value outside the grid is allowed (the
    grid's other settings apply to it)."""
    cell = {}
    for axis, key in GRID_AXES.items():
        values, value = config[axis], chosen.get(key)
        if value is None:
            if len(values) != 1:
                raise ValueError(f"{source} is a workflow config with {axis} {values}: pick one "
                                 f"with --{key}")
            value = values[0]
        cell[key] = value
    return workflow_cell(config, **cell)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON mapping, with a one-line error naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        import yaml  # imported here: the GPU check runs without PyYAML
    except ImportError:
        if path.suffix != ".json":
            raise ValueError(f"config file {path}: reading YAML needs PyYAML (pip install pyyaml); "
                             "or pass the config as JSON") from None
        try:
            data = json.loads(path.read_text()) or {}
        except json.JSONDecodeError as error:
            raise ValueError(f"config file {path} is not valid JSON ({error})") from None
    else:
        data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected a mapping at the top level")
    return data


def parse_override_value(raw: str) -> Any:
    """A ``--set`` value parsed as YAML (``3`` -> 3, ``[1, 2]`` -> list, ``true`` -> True);
    without PyYAML as JSON, else the string itself (enough for numbers, lists and words)."""
    try:
        import yaml
    except ImportError:
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return yaml.safe_load(raw)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested mapping."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = parse_override_value(raw)
    return data


def describe_schema_error(error: BaseException) -> str | None:
    """One line naming the offending key of a ``jsonschema.ValidationError`` found in ``error``
    or its exception chain (``snakemake.utils.validate`` wraps it); None if there is none."""
    import jsonschema

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, jsonschema.ValidationError):
            path = [str(part) for part in seen.absolute_path]
            if seen.validator == "additionalProperties" and isinstance(seen.instance, dict):
                allowed = sorted(seen.schema.get("properties", {}))
                unknown = sorted(k for k in seen.instance if k not in allowed)
                key = ".".join(path + unknown[:1])
                return (f"invalid config key {key!r}: unknown key; allowed keys"
                        f"{' of ' + repr('.'.join(path)) if path else ''}: {', '.join(allowed)}")
            key = ".".join(path) or "<top level>"
            return f"invalid config key {key!r}: {seen.message}"
        seen = seen.__cause__ or seen.__context__
    return None


def coerce_command_line_values(config: Any, schema: dict[str, Any]) -> Any:
    """Give ``snakemake --config`` values the types the schema asks for, in place.

    Snakemake parses ``--config train={'steps':0}`` or ``seeds=[0,1]`` leaving the scalars as
    strings; a string is converted only where the schema allows an integer, number or boolean
    and the string spells one (``"3"`` -> 3, ``"1e-3"`` -> 0.001, ``"true"`` -> True), so the
    schema then judges what the user meant. Anything else is left for the schema to reject.
    """
    if isinstance(config, dict):
        properties = schema.get("properties", {})
        for key, value in config.items():
            if key in properties:
                config[key] = coerce_command_line_values(value, properties[key])
        return config
    if isinstance(config, list):
        items = schema.get("items", {})
        return [coerce_command_line_values(value, items) for value in config]
    if not isinstance(config, str):
        return config
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    text = config.strip()
    if "integer" in types and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return config
