"""What one set of a model's samples is, by name: the sampler ``method`` and its ``steps``, the
step ``spacing`` and the ``guidance`` (kind and weight) of an :class:`EvaluationSetting`, its
file-name tag (:attr:`EvaluationSetting.name`, read back by :func:`parse_setting`), the grid's
settings (:func:`evaluation_settings`) and their network evaluations per image (NFE).

Standard library only: the workflow names its jobs' files with these while Snakemake parses the
Snakefile, without importing torch (about a second and a half per ``snakemake`` call). The
samplers (:mod:`vdm.model.sampler`), step grids (:mod:`vdm.model.step_grids`) and guidance
(:mod:`vdm.model.guidance`) that these names select import them from here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: the samplers of :mod:`vdm.model.sampler`
SAMPLERS = ("ancestral", "ddim", "heun", "dpmpp2m")


def network_evaluations(method: str, steps: int) -> int:
    """Network evaluations (NFE) per image of ``method`` with ``steps`` steps, the final
    denoising included: ``2 N + 1`` for Heun, ``N + 1`` for the others (what the steps are:
    :mod:`vdm.model.sampler`)."""
    if method not in SAMPLERS:
        raise ValueError(f"sample method must be one of {SAMPLERS}, got {method!r}")
    if steps < 1:
        raise ValueError(f"sample steps must be >= 1, got {steps}")
    return (2 * steps if method == "heun" else steps) + 1


#: the step spacings of :mod:`vdm.model.step_grids`, the default first
SPACINGS: tuple[str, ...] = ("time", "logsnr", "karras")


def check_spacing(spacing: str) -> None:
    """One-line ``ValueError`` naming ``sample.spacings`` for an unknown spacing."""
    if spacing not in SPACINGS:
        raise ValueError(f"sample.spacings: unknown step spacing {spacing!r}; choose one of "
                         f"{list(SPACINGS)}")


#: the guidance kinds of :mod:`vdm.model.guidance`
GUIDANCE_KINDS: tuple[str, ...] = ("none", "cfg", "classifier", "oracle")


@dataclass(frozen=True)
class Guidance:
    """One guidance setting: ``kind`` in :data:`GUIDANCE_KINDS` and weight ``w >= 0``.

    ``none`` is plain sampling (conditional on the labels for a conditional model) and must
    have ``weight = 0``. Model-dependent checks are in
    :func:`vdm.model.guidance.check_guidance`.
    """

    kind: str = "none"
    weight: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in GUIDANCE_KINDS:
            raise ValueError(f"unknown guidance kind {self.kind!r}; choose one of "
                             f"{list(GUIDANCE_KINDS)}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int | float):
            raise ValueError(f"guidance.weights: expected a number, got {self.weight!r}")
        if not math.isfinite(self.weight) or self.weight < 0:
            raise ValueError(f"guidance.weights: a guidance weight must be finite and >= 0, got "
                             f"{self.weight!r}")
        if self.kind == "none" and self.weight != 0:
            raise ValueError(f"guidance kind 'none' takes no weight, got {self.weight!r}; use "
                             "'cfg', 'classifier' or 'oracle'")

    @property
    def name(self) -> str:
        """File-name tag: ``none``, ``cfg-2``, ``classifier-0.5``, ``oracle-2`` (weight in ``%g``
        format)."""
        return "none" if self.kind == "none" else f"{self.kind}-{self.weight:g}"


@dataclass(frozen=True)
class EvaluationSetting:
    """How one set of samples of a model is drawn: sampler ``method``, ``steps``, ``guidance``
    and the step ``spacing`` (:mod:`vdm.model.step_grids`; ``time`` is the uniform time grid).

    Its :attr:`name` is the folder name of its files, ``<method>-<steps>[-<spacing>][-<kind>-
    <weight>]`` with the spacing left out when it is ``time``: ``ancestral-25`` (no guidance),
    ``ddim-10-cfg-2``, ``heun-12-classifier-0.5``, ``ancestral-25-oracle-2``, ``heun-10-karras``,
    ``ddim-10-logsnr-cfg-2``;
    :func:`parse_setting` reads it back.
    """

    method: str
    steps: int
    guidance: Guidance = Guidance()
    spacing: str = "time"

    def __post_init__(self) -> None:
        network_evaluations(self.method, self.steps)  # checks the sampler and the steps
        check_spacing(self.spacing)

    @property
    def name(self) -> str:
        spacing = "" if self.spacing == "time" else f"-{self.spacing}"
        tail = "" if self.guidance.kind == "none" else f"-{self.guidance.name}"
        return f"{self.method}-{self.steps}{spacing}{tail}"

    @property
    def nfe(self) -> int:
        """Diffusion-network evaluations per image (:func:`guided_nfe`)."""
        return guided_nfe(self.guidance, self.method, self.steps)


#: a spacing in a name is one of the words of SPACINGS other than ``time`` (never written) and is
#: not followed by a weight; a guidance kind always is
_SETTING = re.compile(r"^(?P<method>[a-z0-9]+)-(?P<steps>\d+)"
                      rf"(?:-(?P<spacing>{'|'.join(s for s in SPACINGS if s != 'time')}))?"
                      r"(?:-(?P<kind>[a-z]+)-(?P<weight>[0-9.eE+-]+))?$")


def parse_setting(name: str) -> EvaluationSetting:
    """The :class:`EvaluationSetting` of a name ``<method>-<steps>[-<spacing>][-<kind>-
    <weight>]`` (:attr:`EvaluationSetting.name`); a one-line ``ValueError`` naming it
    otherwise."""
    match = _SETTING.match(name)
    if match is None:
        raise ValueError(f"evaluation setting {name!r} is not <method>-<steps>[-<spacing>]"
                         "[-<guidance kind>-<weight>], e.g. ddim-25, heun-10-karras or "
                         "ancestral-25-cfg-2")
    kind = match["kind"] or "none"
    try:
        weight = float(match["weight"]) if match["weight"] else 0.0
    except ValueError:
        raise ValueError(f"evaluation setting {name!r}: weight {match['weight']!r} is not a number"
                         ) from None
    return EvaluationSetting(match["method"], int(match["steps"]), Guidance(kind, weight),
                             match["spacing"] or "time")


def evaluation_settings(methods: list[str], steps: list[int], kinds: list[str] = (),
                        weights: list[float] = (0.0,), spacings: list[str] = ("time",)
                        ) -> list[EvaluationSetting]:
    """Every sampler setting (``methods`` x ``steps`` x ``spacings``) with every guidance
    setting: no guidance and each of ``kinds`` with each weight > 0 (weight 0 of any kind is the
    same sampler as no guidance, see the module docstring). The first is the primary setting."""
    guidances = [Guidance()] + [Guidance(kind, float(w)) for kind in kinds for w in weights if w > 0]
    return [EvaluationSetting(m, k, g, spacing) for m in methods for k in steps
            for spacing in spacings for g in guidances]


def evaluations_per_call(guidance: Guidance) -> int:
    """Diffusion-network evaluations per ``eps_fn`` call: 2 for ``cfg`` with ``w > 0``, else 1.

    The NFE of a guided sampler is ``network_evaluations(method, steps) *
    evaluations_per_call(guidance)``; it counts diffusion-network evaluations only. Classifier
    guidance adds one classifier forward and backward pass per call (a much smaller network;
    :func:`classifier_evaluations_per_call`); ``oracle`` guidance adds none: its closed-form
    ``grad_z log p(y | z)`` is not a network (a sum over the mixture's components and levels)."""
    return 2 if guidance.kind == "cfg" and guidance.weight > 0 else 1


def classifier_evaluations_per_call(guidance: Guidance) -> int:
    """Trained-classifier forward+backward passes per ``eps_fn`` call: 1 for ``classifier`` with
    ``w > 0``, else 0 (also for ``oracle``: the exact posterior is computed, not a network)."""
    return 1 if guidance.kind == "classifier" and guidance.weight > 0 else 0


def guided_nfe(guidance: Guidance, method: str, steps: int) -> int:
    """Diffusion-network evaluations per image of a guided sampler (see
    :func:`evaluations_per_call`)."""
    return network_evaluations(method, steps) * evaluations_per_call(guidance)
