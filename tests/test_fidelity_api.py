"""The torch-fidelity internals that vdm.evaluation.fid and feature_extractors call exist, with
the call shapes used there, in the installed torch-fidelity, and that version is one
pyproject.toml allows. fid.py runs torch-fidelity's ``calculate_metrics`` step by step with its
internal functions (so sample features are extracted once); a torch-fidelity release may change
them without notice, so an untested version must fail here, loudly, before any FID is wrong.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from torch_fidelity.defaults import DEFAULTS
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from vdm.evaluation import fid
from vdm.evaluation.feature_extractors import ClassifierFeatureExtractor

REPO = Path(__file__).resolve().parents[1]
INSTALLED = version("torch-fidelity")
CALLERS = ("vdm/evaluation/fid.py", "vdm/evaluation/feature_extractors.py")
_ = object()  # a placeholder argument: only the call's shape is checked

#: ``(module, name, positional arguments, extra keywords)`` of each call into torch-fidelity,
#: as fid.py / feature_extractors.py make it; the keywords of ``_fidelity_kwargs`` (plus those
#: fid.py adds with ``kwargs.update``) are passed as ``**kwargs`` where fid.py passes them
CALLS: tuple[tuple[str, str, tuple[Any, ...], bool], ...] = (
    ("torch_fidelity.utils", "resolve_feature_layer_for_metric", ("fid",), True),
    ("torch_fidelity.utils", "create_feature_extractor", (_, [_]), True),
    ("torch_fidelity.utils", "extract_featuresdict_from_input_id_cached", (1, _), True),
    ("torch_fidelity.metric_fid", "fid_featuresdict_to_statistics_cached", (_, _, _, _), True),
    ("torch_fidelity.metric_fid", "fid_statistics_to_metric", (_, _, False), False),
    ("torch_fidelity.metric_kid", "kid_featuresdict_to_metric", (_, _, _), True),
    ("torch_fidelity.metric_prc", "prc_featuresdict_to_metric", (_, _, _), True),
    ("torch_fidelity.registry", "register_feature_extractor", (_, _), False),
)
#: names imported from torch-fidelity that are not called as functions above
OTHER_NAMES = {"FeatureExtractorBase", "FeatureExtractorInceptionV3", "FEATURE_EXTRACTORS_REGISTRY"}


def _tested_range(requirement_lines: list[str]) -> SpecifierSet:
    return next(Requirement(line).specifier for line in requirement_lines
                if Requirement(line).name == "torch-fidelity")


def _pyproject_range() -> SpecifierSet:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return _tested_range(project["dependencies"])


def _where() -> str:
    return (f"installed torch-fidelity {INSTALLED}; vdm is tested with torch-fidelity"
            f"{_pyproject_range()} (pyproject.toml)")


def _imported_names() -> set[tuple[str, str]]:
    """``(module, name)`` of every ``from torch_fidelity... import name`` in :data:`CALLERS`."""
    names = set()
    for path in CALLERS:
        for node in ast.walk(ast.parse((REPO / path).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch_fidelity"):
                names |= {(node.module, alias.name) for alias in node.names}
    return names


def _fidelity_keywords() -> dict[str, Any]:
    """The keywords fid.py passes to torch-fidelity: ``_fidelity_kwargs``' and every keyword of
    a ``kwargs.update(...)`` call in fid.py."""
    keywords = fid._fidelity_kwargs("classifier", None, None, "cpu", 8)
    tree = ast.parse((REPO / CALLERS[0]).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "update" and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "kwargs"):
            keywords.update({k.arg: _ for k in node.keywords if k.arg})
    return keywords


def test_pyproject_and_environment_bound_torch_fidelity_to_the_tested_versions() -> None:
    spec = _pyproject_range()
    assert any(s.operator in ("<", "<=", "==", "~=") for s in spec), (
        f"pyproject.toml allows any later torch-fidelity ({spec}) although fid.py calls its "
        "internals: bound it above to the versions tested")
    environment = yaml.safe_load((REPO / "environment.yml").read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert _tested_range([line for line in pip if not line.startswith("-")]) == spec, (
        "environment.yml and pyproject.toml allow different torch-fidelity versions")
    assert spec.contains(INSTALLED), (
        f"{_where()}: this version is untested. Run tests/test_fidelity_api.py and "
        "tests/test_fid.py with it, then widen the bound, or install a tested version")


def test_every_torch_fidelity_name_used_is_checked_here() -> None:
    checked = {(m, n) for m, n, *_ in CALLS} | {(m, n) for m, n in _imported_names()
                                                 if n in OTHER_NAMES}
    unchecked = sorted(f"{m}.{n}" for m, n in _imported_names() - checked)
    assert not unchecked, f"{', '.join(unchecked)} imported in {CALLERS} but not checked in CALLS"


@pytest.mark.parametrize(("module", "name", "args", "with_kwargs"), CALLS,
                         ids=[f"{m}.{n}" for m, n, *_ in CALLS])
def test_internals_take_the_calls_fid_makes(module: str, name: str, args: tuple[Any, ...],
                                            with_kwargs: bool) -> None:
    call = f"{module}.{name}({', '.join('…' for _ in args)}{', **kwargs' if with_kwargs else ''})"
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"{_where()}: {module}.{name} is gone ({error}); vdm/evaluation/fid.py "
                    f"calls {call}")
    signature = inspect.signature(function)
    try:
        signature.bind(*args, **(_fidelity_keywords() if with_kwargs else {}))
    except TypeError as error:
        pytest.fail(f"{_where()}: {module}.{name}{signature} no longer takes the call "
                    f"vdm/evaluation/fid.py makes, {call}: {error}")


def test_every_keyword_passed_is_one_torch_fidelity_reads() -> None:
    """torch-fidelity reads its options with ``get_kwarg(name, kwargs)``, falling back to its
    defaults: a renamed option would be ignored silently (e.g. the classifier's weights)."""
    unknown = sorted(set(_fidelity_keywords()) - set(DEFAULTS))
    assert not unknown, (f"{_where()}: torch-fidelity does not know the options {unknown} "
                         "that vdm/evaluation/fid.py passes (they would be ignored)")


def test_metric_keys_and_extractor_hooks_are_torch_fidelitys() -> None:
    try:
        modules = [importlib.import_module(f"torch_fidelity.metric_{m}")
                   for m in ("fid", "kid", "prc")]
    except ImportError as error:
        pytest.fail(f"{_where()}: {error}; vdm/evaluation/fid.py reads the metrics of "
                    "torch_fidelity.metric_fid, metric_kid and metric_prc")
    keys = {getattr(m, k) for m in modules for k in dir(m) if k.startswith("KEY_METRIC_")}
    assert set(fid._METRIC_KEYS.values()) <= keys, (
        f"{_where()}: the result keys {sorted(set(fid._METRIC_KEYS.values()) - keys)} read by "
        "vdm/evaluation/fid.py (_METRIC_KEYS) are not torch-fidelity's metric keys any more")
    hooks = [name for name, member in vars(FeatureExtractorBase).items()
             if isinstance(member, staticmethod | type(lambda: None))
             and "NotImplementedError" in inspect.getsource(getattr(FeatureExtractorBase, name))]
    assert hooks, "FeatureExtractorBase has no abstract hooks: check how hooks are found"
    missing = [h for h in hooks if h not in vars(ClassifierFeatureExtractor)]
    assert not missing, (f"{_where()}: FeatureExtractorBase asks for {missing}, which "
                         "ClassifierFeatureExtractor (vdm/evaluation/feature_extractors.py) "
                         "does not implement")
