"""Performance benchmark of the pipeline's hot paths, on any device.

The command line of :func:`vdm.bench.measure.run_bench`: ``python -m vdm.bench [--quick]
[--json FILE] [--threads N] [--config PATH] [--device {auto,cpu,cuda}] [--synthetic] [--set
KEY=VALUE ...] [--variants V,...] [--no-grid] [--grid-config PATH]``; prints the table of
:func:`vdm.bench.report.format_table` and writes the result as JSON. ``--write-resolved-configs``
rewrites ``vdm/bench/resolved_configs.json`` (:mod:`vdm.bench.configs`) instead. A bad
``--variants`` name or ``--threads`` fails before any work.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from vdm.bench.configs import (
    DEFAULT_CONFIG,
    RESOLVED_CONFIGS,
    VARIANTS,
    with_variant,
    write_resolved_configs,
)
from vdm.bench.measure import run_bench
from vdm.bench.report import format_table
from vdm.bench.sizes import FULL, QUICK, Sizes
from vdm.core.config import RunConfig
from vdm.core.provenance import write_json_atomic


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vdm.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer steps and repeats (same batch and network); no grid run")
    parser.add_argument("--json", type=Path, help="write the results here (atomically)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="pipeline config to benchmark (default config/config.yaml)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"],
                        help="device (default: the config's `device`, auto = CUDA if present)")
    parser.add_argument("--synthetic", action="store_true",
                        help="random images of the dataset's shape: no data files or download")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. train.batch_size=64 (repeatable)")
    parser.add_argument("--variants",
                        help="precision variants besides the config's own (comma-separated; "
                             f"default {','.join(VARIANTS)}; '' for none)")
    parser.add_argument("--grid-config", type=Path,
                        help="run the Snakemake grid with this --configfile (also with --quick)")
    parser.add_argument("--no-grid", action="store_true", help="skip the Snakemake grid run")
    parser.add_argument("--write-resolved-configs", action="store_true",
                        help=f"rewrite {RESOLVED_CONFIGS.name} from config/ (needs Snakemake) and exit")
    return parser


def main(argv: list[str] | None = None, sizes: Sizes | None = None) -> int:
    """Command line entry point; ``sizes`` (internal, for tests) overrides the --quick sizes
    (``--variants``, when given, still replaces its variants)."""
    args = build_parser().parse_args(argv)
    if args.write_resolved_configs:
        print(f"-> {write_resolved_configs()}")
        return 0
    if args.threads < 1:
        raise SystemExit("--threads must be >= 1")
    chosen = sizes or (QUICK if args.quick else FULL)
    if args.variants is not None:
        variants = tuple(v for v in args.variants.split(",") if v)
        for variant in variants:
            with_variant(RunConfig(), variant)  # a bad name fails before any work
        chosen = dataclasses.replace(chosen, variants=variants)
    if args.no_grid:
        chosen = dataclasses.replace(chosen, run_grid=False)
    result = run_bench(chosen, args.threads, args.config,
                       None if args.no_grid else args.grid_config, quick=args.quick,
                       device=args.device, synthetic=args.synthetic, overrides=args.overrides)
    print(format_table(result))
    if args.json:
        write_json_atomic(args.json, result)
        print(f"-> {args.json}")
    return 0
