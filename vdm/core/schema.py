"""The package's JSON schema: every key, type, range and default of a grid config and of a run.

One file, ``config/schema.yaml`` in the repository (where Snakemake and users read it), shipped
inside the package as ``vdm/core/schema.yaml`` (a link to it in the checkout, a copy in a built
wheel) and read with :mod:`importlib.resources`, so an installed package needs no checkout.
Its top level describes a grid (workflow) config; ``$defs/run`` describes one run, sharing the
grid's definitions by ``$ref``. Validation fills in the schema's defaults as
:func:`snakemake.utils.validate` does. PyYAML and jsonschema are imported only when a schema is
read or used (the GPU-check machines have neither, see :mod:`vdm.bench.gpu_check`).
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path
from typing import Any

#: the schema as a file, for APIs that take a path (``snakemake.utils.validate``)
SCHEMA_FILE = Path(str(resources.files("vdm.core").joinpath("schema.yaml")))
#: keywords that may stand next to a ``$ref`` in the run definition: annotations only, so that
#: inlining the reference (:func:`inline_local_refs`) keeps JSON Schema's meaning
REF_SIBLINGS = frozenset({"default", "description"})


@functools.cache
def _workflow_schema() -> dict[str, Any]:
    import yaml  # imported here: the GPU check runs without PyYAML

    text = resources.files("vdm.core").joinpath("schema.yaml").read_text(encoding="utf-8")
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # C: 6x faster


def workflow_schema() -> dict[str, Any]:
    """The schema of a grid config (a fresh copy; needs PyYAML)."""
    return copy.deepcopy(_workflow_schema())


def _pointer(root: dict[str, Any], ref: str) -> Any:
    """The part of ``root`` a local JSON pointer ``#/a/b`` names (RFC 6901 escapes)."""
    if not ref.startswith("#/"):
        raise ValueError(f"schema: only local references are supported, got $ref {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def inline_local_refs(node: Any, root: dict[str, Any]) -> Any:
    """``node`` with every local ``{"$ref": "#/...", **annotations}`` replaced by the schema it
    points to (itself inlined), the annotations (``default``, ``description``) written over it.

    Next to a ``$ref`` only annotations are allowed (``ValueError`` otherwise), so the result
    validates exactly as the original; it is self-contained, so its defaults and types can be
    read without a resolver."""
    if isinstance(node, list):
        return [inline_local_refs(item, root) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if set(siblings) - REF_SIBLINGS:
            raise ValueError(f"schema: $ref {node['$ref']!r} has keywords other than "
                             f"{sorted(REF_SIBLINGS)} next to it: {sorted(set(siblings) - REF_SIBLINGS)}")
        target = inline_local_refs(_pointer(root, node["$ref"]), root)
        return {**target, **siblings}
    return {key: inline_local_refs(value, root) for key, value in node.items()}


@functools.cache
def run_schema_view() -> dict[str, Any]:
    """The schema of a run config: ``$defs/run`` with its references to the grid's definitions
    inlined, self-contained (read once per process and shared: do not modify; needs PyYAML)."""
    root = _workflow_schema()
    return {"$schema": root["$schema"], **inline_local_refs(root["$defs"]["run"], root)}


def run_schema() -> dict[str, Any]:
    """A fresh copy of :func:`run_schema_view`."""
    return copy.deepcopy(run_schema_view())


def validate_with_defaults(data: Any, schema: dict[str, Any]) -> Any:
    """Validate ``data`` against ``schema`` and fill in, in place, every missing key that has a
    ``default`` (nested ones too), as :func:`snakemake.utils.validate` does: jsonschema's
    validator for the schema's draft, whose ``properties`` keyword first sets the defaults of the
    absent keys (deep copies) and then validates. Raises the first
    ``jsonschema.ValidationError``; returns ``data``."""
    _validator(schema.get("$schema", ""))(schema).validate(data)
    return data


@functools.cache
def _validator(draft: str) -> Any:
    """jsonschema's validator class of the draft named ``draft``, setting defaults."""
    from jsonschema import validators  # lazy: jsonschema (absent on the GPU machines)

    base = validators.validator_for({"$schema": draft} if draft else {})
    check_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator: Any, properties: dict[str, Any], instance: Any,
                                 schema: dict[str, Any]) -> Any:
        if isinstance(instance, dict):
            for key, spec in properties.items():
                if isinstance(spec, dict) and "default" in spec and key not in instance:
                    instance[key] = copy.deepcopy(spec["default"])
        yield from check_properties(validator, properties, instance, schema)

    return validators.extend(base, {"properties": properties_with_defaults})
