"""Typed, frozen settings records with strict JSON in and out: the base of the job specs
(:mod:`vdm.core.job_specs`).

A :class:`Spec` subclass is a frozen dataclass whose fields are declared with :func:`setting`
(a one-line doc, a unit, allowed choices, a minimum; no default). :meth:`Spec.from_dict` checks
every key against the declared types (``int``, ``float``, ``str``, ``bool``, ``X | None``,
``tuple[X, ...]`` and nested specs): an unknown or missing key, a wrong type, a value outside its
choices or below its minimum is a one-line ``ValueError`` naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from vdm.core.config import parse_override_value

S = TypeVar("S", bound="Spec")


#: marks a :func:`setting` without an ``absent`` value (its key is required)
_REQUIRED = object()


def setting(doc: str, *, unit: str | None = None, choices: Sequence[str] | None = None,
            minimum: float | None = None, absent: Any = _REQUIRED) -> Any:
    """A spec field: its one-line ``doc``, ``unit`` (shown in ``--help``), allowed ``choices``
    and inclusive ``minimum`` (both checked by :meth:`Spec.from_dict`). No default: every key of
    a spec JSON is required, except a field given an ``absent`` value (an immutable scalar):
    the value a missing key means, and :meth:`Spec.to_dict` leaves the key out at that value,
    so a new optional setting keeps the JSON of every spec that does not use it byte for byte
    (declare such fields last)."""
    metadata = {"doc": doc, "unit": unit, "choices": choices, "minimum": minimum,
                "optional_key": absent is not _REQUIRED}
    if absent is _REQUIRED:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=absent, metadata=metadata)


class Spec:
    """Base of the frozen spec dataclasses: JSON in and out with strict keys and types."""

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-able mapping (sub-specs as mappings, tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if not (f.metadata.get("optional_key") and getattr(self, f.name) == f.default)}

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): equal specs give equal strings (Snakemake params)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[S], data: Any, prefix: str = "") -> S:
        """The spec of a mapping; one-line ``ValueError`` naming an unknown or missing key, a
        wrong type, a value outside the field's choices or below its minimum."""
        if not isinstance(data, Mapping):
            raise ValueError(f"spec key {prefix.rstrip('.') or '<top level>'!r}: expected a "
                             f"mapping, got {data!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown spec key {prefix + unknown[0]!r}; the keys of "
                             f"{prefix.rstrip('.') or cls.__name__} are {', '.join(names)}")
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in data and not f.metadata.get("optional_key")]
        if missing:
            raise ValueError(f"missing spec key {prefix + missing[0]!r} ({cls.__name__} needs "
                             f"every key: {', '.join(names)})")
        hints = _hints(cls)
        return cls(**{f.name: _checked(prefix + f.name, data[f.name], hints[f.name], f.metadata)
                      for f in dataclasses.fields(cls) if f.name in data})

    @classmethod
    def from_json(cls: type[S], text: str, source: str = "spec") -> S:
        """The spec of a JSON text; ``source`` names it in the error of invalid JSON."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source} is not valid JSON ({error})") from None
        return cls.from_dict(data)

    @classmethod
    def describe(cls, default: Spec | None = None, prefix: str = "",
                 templates: Mapping[str, Mapping[str, Any]] | None = None
                 ) -> list[tuple[str, str, str]]:
        """``(dotted key, type, doc with unit, choices and default)`` of every field, sub-specs'
        fields included (for ``--help``); defaults from ``default`` when given, those of a null
        sub-spec from ``templates[key]`` (what :func:`with_overrides` starts it from)."""
        rows = []
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            key, annotation = prefix + f.name, hints[f.name]
            value = getattr(default, f.name) if default is not None else None
            meta = f.metadata
            doc = meta["doc"] + (f" [{meta['unit']}]" if meta["unit"] else "")
            if meta["choices"]:
                doc += f"; one of {', '.join(meta['choices'])}"
            sub = _spec_type(annotation)
            if sub is not None:
                template = (templates or {}).get(key)
                if default is not None and value is None:
                    doc += " (default: null; once set, its keys start from the defaults below)" \
                        if template else " (default: null)"
                    value = sub.from_dict(template, key + ".") if template else None
                rows.append((key, _type_name(annotation), doc))
                rows += sub.describe(value, key + ".", templates)
                continue
            if default is not None:
                doc += f" (default: {json.dumps(_plain(value))})"
            rows.append((key, _type_name(annotation), doc))
        return rows


def _plain(value: Any) -> Any:
    if isinstance(value, Spec):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(annotation: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(annotation, False)``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _spec_type(annotation: Any) -> type[Spec] | None:
    inner, _ = _optional(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, Spec) else None


def _type_name(annotation: Any) -> str:
    inner, optional = _optional(annotation)
    if typing.get_origin(inner) is tuple:
        name = f"list[{typing.get_args(inner)[0].__name__}]"
    elif _spec_type(inner) is not None:
        name = "mapping"
    else:
        name = inner.__name__
    return name + ("|null" if optional else "")


def _checked(key: str, value: Any, annotation: Any, meta: Mapping[str, Any]) -> Any:
    """``value`` of spec ``key`` checked against its type and the field's choices/minimum."""
    inner, optional = _optional(annotation)
    if value is None:
        if optional:
            return None
        raise ValueError(f"spec key {key!r}: expected {_type_name(annotation)}, got null")
    sub = _spec_type(inner)
    if sub is not None:
        return sub.from_dict(value, key + ".")
    if typing.get_origin(inner) is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"spec key {key!r}: expected a list, got {value!r}")
        item = typing.get_args(inner)[0]
        return tuple(_checked(f"{key}[{i}]", v, item, meta) for i, v in enumerate(value))
    if inner is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, inner) or (inner is not bool and isinstance(value, bool)):
        raise ValueError(f"spec key {key!r}: expected {_type_name(annotation)}, got {value!r}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ValueError(f"spec key {key!r}: {value!r} is not one of "
                         f"{', '.join(meta['choices'])}")
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise ValueError(f"spec key {key!r}: {value!r} is less than the minimum of "
                         f"{meta['minimum']:g}")
    return value


def with_overrides(data: dict[str, Any], overrides: Sequence[str],
                   templates: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """``data`` (a spec's mapping) with ``KEY=VALUE`` items applied: dotted keys, values read
    as YAML (``8``, ``1e-4``, ``true``, ``[a, b]``, ``null``). A null sub-spec (e.g. ``nll.ode``
    of a job without the ODE bound) that an item reaches into starts from ``templates[key]``.
    Unknown keys are left for :meth:`Spec.from_dict` to name."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"spec override {item!r} must look like key=value, e.g. "
                             "nll.num_time_samples=8")
        node, path = data, ""
        *parents, leaf = key.split(".")
        for part in parents:
            path += part
            if isinstance(node, dict) and node.get(part) is None and path in (templates or {}):
                node[part] = json.loads(json.dumps(templates[path]))
            if not isinstance(node, dict) or not isinstance(node.get(part), dict):
                raise ValueError(f"spec override {item!r}: {path!r} is not a mapping of this "
                                 "spec")
            node, path = node[part], path + "."
        node[leaf] = parse_override_value(raw)
    return data


def read_spec_text(value: str) -> tuple[str, str]:
    """``(JSON text, source name)`` of a ``--spec`` value: inline JSON (starting with ``{``)
    or the path of a JSON file (one-line ``FileNotFoundError`` naming it when missing)."""
    if value.lstrip().startswith("{"):
        return value, "--spec"
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"spec file not found: {path} (--spec takes a JSON mapping or "
                                "the path of a .json file)")
    return path.read_text(), f"spec file {path}"
