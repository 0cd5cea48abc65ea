"""Settings that need a dataset whose exact distribution is known (e.g. ``digits-gmm``).

The Bayes-optimal denoiser, the exact noisy-class posterior (oracle guidance), samples drawn
with the exact denoiser and a fresh FID reference of true samples exist only for a dataset with
a known density (:data:`KNOWN_DENSITY_DATASETS`; the distributions themselves are in
:mod:`vdm.evaluation.known_density`). :func:`check_known_density_settings` turns such a setting
on any other dataset into a one-line ``ValueError`` naming the key, before any job starts
(called by :func:`vdm.core.config.check_workflow_config`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Datasets whose exact probability, Bayes denoiser and class posterior are computable.
KNOWN_DENSITY_DATASETS: tuple[str, ...] = ("digits-gmm",)


def has_known_density(dataset: str) -> bool:
    """Whether ``dataset``'s exact distribution is known (:data:`KNOWN_DENSITY_DATASETS`)."""
    return dataset in KNOWN_DENSITY_DATASETS


def _get(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


@dataclass(frozen=True)
class KnownDensitySetting:
    """A config value that needs the known density: ``key`` (dotted), ``needs(value)`` true when
    the value asks for it, ``what`` says in a few words what the value computes."""

    key: str
    needs: Callable[[Any], bool]
    what: str


#: Every setting that needs the known density (each one checked by
#: :func:`check_known_density_settings`).
KNOWN_DENSITY_SETTINGS: tuple[KnownDensitySetting, ...] = (
    KnownDensitySetting("guidance.kinds", lambda kinds: "oracle" in (kinds or []),
                        "'oracle' guidance uses the exact noisy-class posterior p(c | z)"),
    KnownDensitySetting("evaluation.bayes_samplers", lambda value: value is True,
                        "true samples every sampler setting with the exact (Bayes) denoiser"),
    KnownDensitySetting("fid.reference_split", lambda split: split == "fresh",
                        "'fresh' draws the FID reference from the true distribution"),
)


def check_known_density_settings(config: dict[str, Any]) -> None:
    """One-line ``ValueError`` naming the first key of :data:`KNOWN_DENSITY_SETTINGS` that asks
    for the known density when ``config['dataset']`` has none."""
    dataset = config.get("dataset")
    if dataset is None or has_known_density(dataset):
        return
    for setting in KNOWN_DENSITY_SETTINGS:
        value = _get(config, setting.key)
        if value is not None and setting.needs(value):
            raise ValueError(
                f"invalid config key '{setting.key}': {value!r} needs a dataset with a known "
                f"density ({', '.join(KNOWN_DENSITY_DATASETS)}), not {dataset!r} ({setting.what})")


def require_known_density(dataset: str, what: str) -> None:
    """One-line ``ValueError`` when ``dataset`` has no known density; ``what`` names the setting
    that needs it (e.g. ``"setting ancestral-25-oracle-2: oracle guidance"``). The check on the
    jobs' command line (``sample``, ``sweep``, ``evaluate``), where no workflow config is
    checked."""
    if not has_known_density(dataset):
        raise ValueError(f"{what} needs a dataset with a known density "
                         f"({', '.join(KNOWN_DENSITY_DATASETS)}), not {dataset!r}")
