"""A synthetic multi-budget ``summary.csv`` (made-up numbers, no model was trained), shaped like the
summary of a grid with ``train.snapshots: [100, 300]`` and ``train.steps: 1200``: every run has
primary rows at steps 100, 300 and 1200, plus one non-primary sampler setting (ddim, 50 steps)
at its final step only, as the snapshot evaluation does.

The cell means are set per budget (:data:`FID`, :data:`NLL`) so that the answers are known:

* the FID ranking changes with the budget: min_snr/linear is best at 100 and 300 steps, and
  sigmoid/cosine at 1200; eps/cosine beats sigmoid/cosine at 100 steps only;
* ``min-snr-fid`` (a convergence claim) holds at 100 and 300 steps and not at 1200 (equal
  means there): a verdict that flips with the budget;
* ``kingma-gao-sigmoid-fid``: contradicted at 100 steps (eps/cosine is better), reproduced at
  300 and 1200; ``ddpm-eps-fid`` is reproduced at every budget (stable).

Per-seed values add a common per-seed offset (common random numbers, cancelled by the paired
tests) and a small independent noise, from a fixed generator: deterministic.
``python tests/budget_summary.py out.csv`` writes it.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

BUDGETS = (100, 300, 1200)
SEEDS = (0, 1, 2)
#: (objective, schedule) -> mean FID at each of BUDGETS
FID = {
    ("eps", "linear"): (12.0, 7.0, 4.0), ("elbo", "linear"): (15.0, 10.0, 7.5),
    ("min_snr", "linear"): (9.0, 5.5, 4.0), ("eps", "cosine"): (11.0, 6.5, 3.8),
    ("sigmoid", "cosine"): (11.5, 6.0, 3.5), ("elbo", "cosine"): (14.0, 9.0, 7.0),
}
#: (objective, schedule) -> mean NLL (bits/dim) at each of BUDGETS
NLL = {
    ("eps", "linear"): (2.60, 2.20, 1.95), ("elbo", "linear"): (2.40, 2.05, 1.85),
    ("min_snr", "linear"): (2.50, 2.15, 1.96), ("eps", "cosine"): (2.70, 2.30, 2.00),
    ("sigmoid", "cosine"): (2.60, 2.20, 1.93), ("elbo", "cosine"): (2.45, 2.10, 1.84),
}
FID_SEED_SD, FID_NOISE_SD = 0.3, 0.05
NLL_SEED_SD, NLL_NOISE_SD = 0.02, 0.004


def make_budget_summary(seed: int = 20) -> pd.DataFrame:
    """The synthetic summary (see the module docstring); the same frame for the same ``seed``."""
    rng = np.random.default_rng(seed)
    fid_offset = rng.normal(0, FID_SEED_SD, len(SEEDS))
    nll_offset = rng.normal(0, NLL_SEED_SD, len(SEEDS))
    rows = []
    for (objective, schedule), fids in FID.items():
        for s in SEEDS:
            for step, fid, nll in zip(BUDGETS, fids, NLL[(objective, schedule)], strict=True):
                base = {
                    "dataset": "digits", "conditioning": "uncond", "parameterization": "eps",
                    "objective": objective, "schedule": schedule, "seed": s,
                    "sampler": "ancestral", "sample_steps": 25, "nfe": 25, "guidance_kind": "none",
                    "guidance_weight": 0.0, "primary": True, "steps": BUDGETS[-1],
                    "train_step": step,
                    "nll_bpd": round(nll + nll_offset[s] + rng.normal(0, NLL_NOISE_SD), 4),
                    "fid": round(fid + fid_offset[s] + rng.normal(0, FID_NOISE_SD), 3),
                    "feature_extractor": "classifier-digits", "num_fid_samples": 1000,
                    "git_commit": "0000000",
                }
                rows.append(base)
                if step == BUDGETS[-1]:  # the further sampler setting: final step only
                    rows.append({**base, "sampler": "ddim", "sample_steps": 50, "nfe": 50,
                                 "primary": False, "fid": round(base["fid"] + 1.0, 3)})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    make_budget_summary().to_csv(sys.argv[1], index=False, lineterminator="\n")
