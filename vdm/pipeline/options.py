"""Command-line options shared by several ``python -m vdm`` commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def common_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="trained model.pt")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation's randomness")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-ema", action="store_true", help="use raw instead of EMA weights")


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def guidance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--guidance", default="none", choices=["none", "cfg", "classifier"],
                        help="cfg: eps~ = (1 + w) eps(z, c) - w eps(z, null) (Ho & Salimans); "
                             "classifier: eps~ = eps(z, c) - w sigma grad log p(y | z) "
                             "(Dhariwal & Nichol)")
    parser.add_argument("--guidance-weight", type=float, default=0.0, help="w >= 0")
    parser.add_argument("--noisy-classifier", type=Path,
                        help="noise-conditional classifier (vdm noisy-classifier) for classifier "
                             "guidance")


def ode_arguments(group) -> None:
    group.add_argument("--ode", action="store_true",
                       help="also the probability-flow ODE bound (nll_ode_bpd; vdm.model.ode)")
    group.add_argument("--ode-max-examples", type=int, help="ODE likelihood of the first N images")
    group.add_argument("--ode-num-probes", type=int, default=1, help="Hutchinson probes")
    group.add_argument("--ode-rtol", type=float, default=1e-5)
    group.add_argument("--ode-atol", type=float, default=1e-5)
    group.add_argument("--ode-batch-size", type=int, default=500)


def ode_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``--ode-*`` values as :func:`vdm.model.ode.ode_nll` keywords, or None without ``--ode``."""
    if not args.ode:
        return None
    if args.ode_num_probes < 1 or (args.ode_max_examples is not None and args.ode_max_examples < 1):
        raise ValueError("--ode-num-probes and --ode-max-examples must be >= 1")
    return {"max_examples": args.ode_max_examples, "num_probes": args.ode_num_probes,
            "rtol": args.ode_rtol, "atol": args.ode_atol, "batch_size": args.ode_batch_size}


def fid_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", default="data")
    parser.add_argument("--split", default="train", help="reference split")
    parser.add_argument("--extractor", default="classifier",
                        choices=["classifier", "inception-v3-compat"])
    parser.add_argument("--weights", type=Path,
                        help="extractor weights (classifier.pt, or converted Inception .pth)")
    parser.add_argument("--cache-root", type=Path, required=True, help="torch-fidelity cache")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)


def model_fid_arguments(parser: argparse.ArgumentParser) -> None:
    """FID options of the commands that evaluate a model's samples (evaluate, sweep)."""
    group = parser.add_argument_group("FID (as `vdm fid`; dataset and root from the model)")
    group.add_argument("--reference-split", default="train", choices=["train", "test"])
    group.add_argument("--extractor", default="classifier",
                       choices=["classifier", "inception-v3-compat"])
    group.add_argument("--weights", type=Path, help="extractor weights")
    group.add_argument("--cache-root", type=Path, required=True, help="torch-fidelity cache")
    group.add_argument("--kid-subset-size", type=int, default=1000)
    group.add_argument("--no-prc", action="store_true", help="skip precision/recall")
    group.add_argument("--fid-batch-size", type=int, default=256)
    group.add_argument("--dataset-classifier", type=Path,
                       help="dataset classifier (vdm classifier) for the class accuracy of "
                            "conditional samples")
