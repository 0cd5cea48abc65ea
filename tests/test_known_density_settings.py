"""Settings that need a known density: a one-line error on a dataset without one."""

from __future__ import annotations

import pytest

from vdm.core.known_density_settings import (
    KNOWN_DENSITY_DATASETS,
    KNOWN_DENSITY_SETTINGS,
    check_known_density_settings,
    has_known_density,
)
from vdm.evaluation.known_density import KNOWN_DENSITIES, known_mixture


def test_the_core_list_names_exactly_the_datasets_with_a_distribution() -> None:
    assert set(KNOWN_DENSITY_DATASETS) == set(KNOWN_DENSITIES)
    assert has_known_density("digits-gmm") and not has_known_density("digits")
    assert known_mixture("digits") is None and known_mixture("digits-gmm") is not None


@pytest.mark.parametrize(("key", "value"), [("guidance.kinds", ["cfg", "oracle"]),
                                            ("evaluation.bayes_samplers", True),
                                            ("fid.reference_split", "fresh")])
def test_a_known_density_setting_on_digits_is_a_one_line_error_naming_the_key(
        key: str, value: object) -> None:
    section, name = key.split(".")
    config = {"dataset": "digits", section: {name: value}}
    with pytest.raises(ValueError) as error:
        check_known_density_settings(config)
    message = str(error.value)
    assert f"'{key}'" in message and "digits-gmm" in message and "\n" not in message
    check_known_density_settings({**config, "dataset": "digits-gmm"})  # fine there


@pytest.mark.parametrize(("key", "value"), [("guidance.kinds", ["cfg", "classifier"]),
                                            ("evaluation.bayes_samplers", False),
                                            ("evaluation.bayes_samplers", None),
                                            ("fid.reference_split", "train")])
def test_settings_that_need_no_known_density_pass_on_digits(key: str, value: object) -> None:
    section, name = key.split(".")
    check_known_density_settings({"dataset": "digits", section: {name: value}})


def test_every_registered_setting_is_checked() -> None:
    assert {s.key for s in KNOWN_DENSITY_SETTINGS} == {
        "guidance.kinds", "evaluation.bayes_samplers", "fid.reference_split"}
