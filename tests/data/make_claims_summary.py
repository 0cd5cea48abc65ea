"""Writes tests/data/claims_summary.csv: a synthetic summary.csv (made-up numbers, no model was
trained) shaped like a real one, for the claims-report golden test. Run from the repository root:
``python tests/data/make_claims_summary.py``; then regenerate the golden files with
``VDM_UPDATE_GOLDEN=1 pytest tests/test_claims.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

rng = np.random.default_rng(12)
#: cell -> (FID, NLL) means; seeds share a per-seed offset (common random numbers)
CELLS = {
    ("eps", "linear"): (4.0, 1.90), ("eps", "cosine"): (3.8, 2.05), ("eps", "learned"): (4.4, 1.85),
    ("elbo", "linear"): (7.5, 1.80), ("elbo", "cosine"): (7.0, 1.79), ("elbo", "learned"): (7.2, 1.74),
    ("x0", "linear"): (9.0, 2.30), ("x0", "cosine"): (8.0, 2.25), ("x0", "learned"): (8.5, 2.20),
}
SEED_FID = rng.normal(0, 0.3, 3)
SEED_NLL = rng.normal(0, 0.02, 3)
rows = []
for (objective, schedule), (fid, nll) in CELLS.items():
    for seed in range(3):
        nll_value = nll + SEED_NLL[seed] + rng.normal(0, 0.01)
        rows.append({
            "dataset": "digits", "conditioning": "uncond", "parameterization": "eps",
            "objective": objective, "schedule": schedule, "seed": seed, "sampler": "ancestral",
            "sample_steps": 25, "nfe": 25, "guidance_kind": "none", "guidance_weight": 0.0,
            "primary": True, "steps": 300, "final_loss": 0.1, "logsnr_min": -10.0, "logsnr_max": 7.0,
            "nll_bpd": round(nll_value, 4),
            "nll_ode_vdeq_minus_elbo_bpd": round(-0.05 + rng.normal(0, 0.03), 4),
            "fid": round(fid + SEED_FID[seed] + rng.normal(0, 0.2), 3), "recall": np.nan,
            "class_accuracy": np.nan, "feature_extractor": "classifier-digits",
            "num_fid_samples": 1000,
        })
# min-SNR: only seeds 0 and 1 finished (Welch against eps/linear's three seeds)
for seed in range(2):
    rows.append({**rows[0], "objective": "min_snr", "seed": seed,
                 "fid": round(3.7 + SEED_FID[seed] + rng.normal(0, 0.2), 3),
                 "nll_bpd": round(1.95 + rng.normal(0, 0.02), 4), "nll_ode_vdeq_minus_elbo_bpd": np.nan})
# class-conditional eps/cosine runs: guidance weights 0, 1, 3 on the same model and sampler
for seed in range(3):
    base = {**rows[0], "conditioning": "class", "schedule": "cosine", "seed": seed,
            "nll_bpd": round(1.93 + SEED_NLL[seed], 4), "nll_ode_vdeq_minus_elbo_bpd": np.nan}
    accuracy = 0.80 + rng.normal(0, 0.02)
    recall = 0.70 + rng.normal(0, 0.03)
    for weight in (0.0, 1.0, 3.0):
        rows.append({**base, "guidance_kind": "none" if weight == 0 else "cfg",
                     "guidance_weight": weight, "primary": weight == 0,
                     "nfe": 25 if weight == 0 else 50,
                     "fid": round(3.9 + 0.8 * weight + rng.normal(0, 0.2), 3),
                     "class_accuracy": round(min(1.0, accuracy + 0.05 * weight
                                                 + rng.normal(0, 0.01)), 4),
                     "recall": round(recall - 0.02 * weight + rng.normal(0, 0.04), 4)})
out = Path(__file__).with_name("claims_summary.csv")
pd.DataFrame(rows).to_csv(out, index=False, lineterminator="\n")
print(f"wrote {out} ({len(rows)} rows)")
