"""vdm.reporting.claims / vdm.reporting.claim_registry: the claims report on hand-made summaries
and a stored one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from vdm.reporting.claim_registry import CLAIMS, Citation, Claim, cell
from vdm.reporting.claims import (
    CLAIM_COLUMNS,
    claims_csv,
    claims_markdown,
    evaluate_claims,
)
from vdm.reporting.stats import holm_adjust
from vdm.reporting.summary_columns import SUMMARY_COLUMNS

DATA = Path(__file__).parent / "data"
CITE = Citation("A & B", 2000, "0000.00000", "t")


def _runs(cells: dict[tuple[str, str], list[float]], metric: str = "fid", **extra) -> pd.DataFrame:
    """Primary rows: one per (objective, schedule) cell and seed 0, 1, ... of ``values``."""
    rows = [{"dataset": "digits", "objective": o, "schedule": s, "seed": seed, "primary": True,
             metric: v, **extra}
            for (o, s), values in cells.items() for seed, v in enumerate(values)]
    return pd.DataFrame(rows)


def _better(metric: str = "fid", direction: str = "lower", **kw) -> Claim:
    return Claim(kw.pop("id", "c"), CITE, "s", metric, direction, "better",
                 a=cell(objective="eps", schedule="cosine"),
                 b=cell(objective="eps", schedule="linear"), requires="eps on cosine and linear",
                 **kw)


def test_registry_is_well_formed() -> None:
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids)) >= 10
    for needed in ("ddpm-eps-fid", "iddpm-cosine-fid", "iddpm-cosine-nll", "vdm-learned-elbo-nll",
                   "kingma-gao-sigmoid-fid", "min-snr-fid", "ode-below-elbo",
                   "cfg-class-accuracy", "cfg-recall"):
        assert needed in ids
    known = set(SUMMARY_COLUMNS) | {"class_accuracy"}
    for claim in CLAIMS:
        assert claim.metric in known, claim.id
        assert claim.citation.arxiv and claim.requires and claim.statement.endswith(".")
    assert "equal training steps" in next(c for c in CLAIMS if c.id == "min-snr-fid").note
    with pytest.raises(ValueError, match="direction"):
        _better(direction="smaller")
    with pytest.raises(ValueError, match="unknown cell axes"):
        cell(objektive="eps")
    with pytest.raises(ValueError, match="cell b"):
        Claim("x", CITE, "s", "fid", "lower", "better", a=cell(objective="eps", schedule="linear"))


def test_paired_comparison_matches_scipy_and_reproduces() -> None:
    a, b = [3.0, 3.6, 3.1, 3.4], [4.0, 4.5, 4.2, 4.6]  # paired offsets per seed
    df = _runs({("eps", "cosine"): a, ("eps", "linear"): b})
    row = evaluate_claims(df, [_better()]).iloc[0]
    assert row["test"] == "paired t" and row["n_a"] == row["n_b"] == 4
    ref = sps.ttest_rel(a, b, alternative="less")
    assert row["p"] == pytest.approx(ref.pvalue) and row["p_holm"] == pytest.approx(ref.pvalue)
    assert row["effect"] == pytest.approx(np.mean(a) - np.mean(b))
    assert row["ci_low"] < row["effect"] < row["ci_high"] < 0
    assert row["verdict"] == "reproduced" and row["missing"] == ""
    assert row["cells"] == "eps/cosine vs eps/linear"
    assert list(evaluate_claims(df, [_better()]).columns) == CLAIM_COLUMNS


def test_opposite_effect_is_contradicted_and_noise_is_inconclusive() -> None:
    better = {("eps", "cosine"): [5.0, 5.6, 5.1], ("eps", "linear"): [4.0, 4.5, 4.2]}
    assert evaluate_claims(_runs(better), [_better()]).iloc[0]["verdict"] == "contradicted"
    noise = {("eps", "cosine"): [4.0, 4.6, 4.1], ("eps", "linear"): [4.1, 4.4, 4.3]}
    assert evaluate_claims(_runs(noise), [_better()]).iloc[0]["verdict"] == "inconclusive"
    higher = _better(metric="acc", direction="higher")  # 'higher': A's larger values support it
    assert evaluate_claims(_runs(better, "acc"), [higher]).iloc[0]["verdict"] == "reproduced"


def test_welch_when_seed_sets_differ() -> None:
    df = _runs({("eps", "cosine"): [3.0, 3.5], ("eps", "linear"): [4.0, 4.4, 4.9]})
    row = evaluate_claims(df, [_better()]).iloc[0]
    ref = sps.ttest_ind([3.0, 3.5], [4.0, 4.4, 4.9], equal_var=False, alternative="less")
    assert row["test"] == "Welch t" and (row["n_a"], row["n_b"]) == (2, 3)
    assert row["p"] == pytest.approx(ref.pvalue)


def test_missing_cells_and_metrics_are_named_never_skipped() -> None:
    df = _runs({("eps", "linear"): [4.0, 4.4, 4.9]})
    rows = evaluate_claims(df, [_better(), _better(id="d", metric="nll_bpd")])
    assert list(rows["verdict"]) == ["not in this grid"] * 2
    assert rows.iloc[0]["missing"] == "no runs of eps/cosine (needs eps on cosine and linear)"
    both = _runs({("eps", "linear"): [4.0, 4.4], ("eps", "cosine"): [3.0, 3.1]})
    assert evaluate_claims(both, [_better(metric="nll_bpd")]).iloc[0]["missing"].startswith(
        "no nll_bpd values")
    assert rows["p_holm"].isna().all()


def test_defaults_select_eps_output_unconditional_cells() -> None:
    eps = _runs({("eps", "cosine"): [3.0, 3.1, 3.2], ("eps", "linear"): [4.0, 4.2, 4.1]})
    v_out = eps.assign(parameterization="v", fid=eps["fid"] + 10)  # must not be mixed in
    cond = eps.assign(conditioning="class", fid=eps["fid"] + 20)
    df = pd.concat([eps.assign(parameterization="eps", conditioning="uncond"), v_out, cond])
    row = evaluate_claims(df, [_better()]).iloc[0]
    assert row["mean_a"] == pytest.approx(3.1) and row["n_a"] == 3
    # a summary without these columns (older grids) is all eps-output, unconditional
    assert evaluate_claims(eps, [_better()]).iloc[0]["mean_a"] == pytest.approx(3.1)


def test_only_primary_rows_count_for_cell_claims() -> None:
    df = _runs({("eps", "cosine"): [3.0, 3.1, 3.2], ("eps", "linear"): [4.0, 4.2, 4.1]})
    other = df.assign(primary=False, fid=100.0)
    row = evaluate_claims(pd.concat([df, other]), [_better()]).iloc[0]
    assert row["mean_a"] == pytest.approx(3.1) and row["n_a"] == 3


def test_best_among_is_an_intersection_union_test() -> None:
    cells = {("elbo", "learned"): [1.0, 1.1, 1.05], ("elbo", "cosine"): [1.2, 1.32, 1.24],
             ("eps", "cosine"): [1.9, 2.05, 1.93]}
    best = Claim("b", CITE, "s", "nll_bpd", "lower", "best",
                 a=cell(objective="elbo", schedule="learned"), requires="r")
    row = evaluate_claims(_runs(cells, "nll_bpd"), [best]).iloc[0]
    p_close = sps.ttest_rel(cells[("elbo", "learned")], cells[("elbo", "cosine")],
                            alternative="less").pvalue
    p_far = sps.ttest_rel(cells[("elbo", "learned")], cells[("eps", "cosine")],
                          alternative="less").pvalue
    assert row["p"] == pytest.approx(max(p_close, p_far))
    assert "closest: elbo/cosine" in row["cells"] and "2 cells" in row["cells"]
    assert row["effect"] == pytest.approx(np.mean([-0.2, -0.22, -0.19]))
    # some competitor clearly better: contradicted (Bonferroni over the two competitors)
    cells[("eps", "cosine")] = [0.5, 0.62, 0.53]
    row = evaluate_claims(_runs(cells, "nll_bpd"), [best]).iloc[0]
    p_opp = sps.ttest_rel(cells[("elbo", "learned")], cells[("eps", "cosine")],
                          alternative="greater").pvalue
    assert row["p_opposite"] == pytest.approx(min(1.0, 2 * p_opp))
    assert row["verdict"] == "contradicted"
    alone = evaluate_claims(_runs({("elbo", "learned"): [1.0, 1.1]}, "nll_bpd"), [best]).iloc[0]
    assert alone["verdict"] == "not in this grid" and "no other cells" in alone["missing"]


def test_sign_claim_tests_each_cell_over_its_seeds_and_needs_every_cell() -> None:
    """Per cell, a one-sample t over its seeds; the claim's p is the largest (the weakest cell,
    whose effect is shown), the opposite side is Holm across the cells; a cell without values
    is outside the claim."""
    claim = next(c for c in CLAIMS if c.id == "ode-below-elbo")
    metric = "nll_ode_vdeq_minus_elbo_bpd"
    values = {("eps", "cosine"): [-0.05, -0.02, -0.04], ("elbo", "linear"): [np.nan, -0.03, -0.02],
              ("x0", "linear"): [-0.06, -0.05, -0.07], ("eps", "linear"): [np.nan, np.nan]}
    row = evaluate_claims(_runs(values, metric), [claim]).iloc[0]
    finite = {k: [v for v in vs if np.isfinite(v)] for k, vs in values.items()}
    p = {k: sps.ttest_1samp(vs, 0.0, alternative="less").pvalue for k, vs in finite.items() if vs}
    assert row["p"] == pytest.approx(max(p.values())) == pytest.approx(p[("elbo", "linear")])
    assert row["test"] == "one-sample t" and row["n_a"] == 2  # its seed 0 has no value
    assert row["effect"] == pytest.approx(-0.025)
    opposite = [sps.ttest_1samp(vs, 0.0, alternative="greater").pvalue
                for vs in finite.values() if vs]
    assert row["p_opposite"] == pytest.approx(holm_adjust(opposite).min())
    assert row["cells"] == f"{metric} per cell over its seeds vs 0: 3 cells; weakest: elbo/linear"
    absent = evaluate_claims(_runs({("eps", "cosine"): [1.0]}), [claim]).iloc[0]
    assert absent["verdict"] == "not in this grid" and "nll.ode" in absent["missing"]


def test_sign_claim_is_not_fooled_by_noise_that_runs_share_by_seed() -> None:
    """Eight cells whose runs carry the same per-seed offset (the evaluation noise that runs
    with one seed share) and no effect of their own: pooled over the 24 runs, or over the 8
    cell means, the mean looks far below zero; over each cell's 3 seeds it is not."""
    claim = next(c for c in CLAIMS if c.id == "ode-below-elbo")
    offsets = [-0.10, -0.08, 0.01]
    rng = np.random.default_rng(0)
    cells = {(o, s): [d + rng.normal(0, 0.002) for d in offsets]
             for o in ("eps", "elbo", "x0", "v") for s in ("linear", "cosine")}
    runs = _runs(cells, "nll_ode_vdeq_minus_elbo_bpd")
    pooled = sps.ttest_1samp(runs["nll_ode_vdeq_minus_elbo_bpd"], 0.0, alternative="less")
    cell_means = runs.groupby(["objective", "schedule"])["nll_ode_vdeq_minus_elbo_bpd"].mean()
    assert pooled.pvalue < 1e-3
    assert sps.ttest_1samp(cell_means, 0.0, alternative="less").pvalue < 1e-6
    row = evaluate_claims(runs, [claim]).iloc[0]
    assert row["p"] > 0.05 and row["verdict"] == "inconclusive"


def _guided_runs() -> pd.DataFrame:
    rows = []
    for seed, (plain, guided) in enumerate([(0.6, 0.9), (0.65, 0.93), (0.55, 0.9)]):
        key = {"dataset": "digits", "conditioning": "class", "objective": "eps",
               "schedule": "cosine", "seed": seed, "sampler": "ddim", "sample_steps": 25}
        rows += [{**key, "guidance_kind": "none", "guidance_weight": 0.0, "primary": True,
                  "class_accuracy": plain},
                 {**key, "guidance_kind": "cfg", "guidance_weight": 1.0, "primary": False,
                  "class_accuracy": (plain + guided) / 2},
                 {**key, "guidance_kind": "cfg", "guidance_weight": 4.0, "primary": False,
                  "class_accuracy": guided},
                 # another sampler without a w = 0 partner: not paired, not used
                 {**key, "sampler": "heun", "guidance_kind": "cfg", "guidance_weight": 4.0,
                  "primary": False, "class_accuracy": 0.0}]
    return pd.DataFrame(rows)


def test_guidance_claim_pairs_the_largest_weight_with_weight_zero_by_run() -> None:
    claim = next(c for c in CLAIMS if c.id == "cfg-class-accuracy")
    row = evaluate_claims(_guided_runs(), [claim]).iloc[0]
    ref = sps.ttest_rel([0.9, 0.93, 0.9], [0.6, 0.65, 0.55], alternative="greater")
    assert row["test"] == "paired t" and row["n_a"] == 3
    assert row["p"] == pytest.approx(ref.pvalue)
    assert row["effect"] == pytest.approx(np.mean([0.3, 0.28, 0.35]))
    assert "cfg w = 4 vs w = 0" in row["cells"]
    unconditional = _guided_runs().assign(conditioning="uncond")
    assert evaluate_claims(unconditional, [claim]).iloc[0]["verdict"] == "not in this grid"
    unguided = _guided_runs().query("guidance_weight == 0")
    assert "weight > 0" in evaluate_claims(unguided, [claim]).iloc[0]["missing"]


def test_holm_runs_across_claims_and_datasets_excluding_missing_ones() -> None:
    digits = _runs({("eps", "cosine"): [3.0, 3.6, 3.1], ("eps", "linear"): [4.0, 4.5, 4.2]})
    mnist = _runs({("eps", "cosine"): [3.0, 3.3, 3.1], ("eps", "linear"): [3.1, 3.5, 3.1]})
    df = pd.concat([digits, mnist.assign(dataset="mnist")])
    claims = [_better(), _better(id="d", metric="nll_bpd")]  # the second is not in the grid
    out = evaluate_claims(df, claims)
    assert list(out["dataset"]) == ["digits", "digits", "mnist", "mnist"]
    assert list(out["claim"]) == ["c", "d", "c", "d"]
    np.testing.assert_allclose(out["p_holm"].to_numpy(), holm_adjust(out["p"].to_numpy()))
    assert out["p_holm"].iloc[0] == pytest.approx(min(1.0, 2 * out["p"].iloc[0]))
    with pytest.raises(ValueError, match="duplicate"):
        evaluate_claims(df, [_better(), _better()])


def test_stored_summary_regenerates_the_stored_report_byte_for_byte() -> None:
    """The claims report is generated, never hand-written: the stored markdown and CSV are what
    the code makes of the stored (synthetic) summary. Regenerate both with
    ``VDM_UPDATE_GOLDEN=1 pytest tests/test_claims.py`` after an intended change."""
    summary = pd.read_csv(DATA / "claims_summary.csv")
    claims = evaluate_claims(summary)
    command = ("python -m vdm claims --summary tests/data/claims_summary.csv "
               "--run-name synthetic-fixture")
    markdown = claims_markdown(claims, run_name="synthetic-fixture", commit="0000000",
                               command=command)
    csv = claims_csv(claims)
    if os.environ.get("VDM_UPDATE_GOLDEN"):
        (DATA / "claims.md").write_text(markdown, encoding="utf-8")
        (DATA / "claims.csv").write_text(csv, encoding="utf-8")
    assert markdown == (DATA / "claims.md").read_text(encoding="utf-8")
    assert csv == (DATA / "claims.csv").read_text(encoding="utf-8")
    # and again from the same input: deterministic
    assert claims_markdown(evaluate_claims(summary), run_name="synthetic-fixture",
                           commit="0000000", command=command) == markdown
    verdicts = dict(zip(claims["claim"], claims["verdict"], strict=True))
    assert verdicts["ddpm-eps-fid"] == "reproduced"
    assert verdicts["iddpm-cosine-nll"] == "contradicted"
    assert verdicts["kingma-gao-sigmoid-fid"] == "not in this grid"
    assert verdicts["min-snr-fid"] == "inconclusive"
    assert "from run `synthetic-fixture` at commit `0000000`" in markdown
    assert "Holm-adjusted across the 9 claims" in markdown


def test_one_seed_per_cell_is_inconclusive_and_says_why() -> None:
    df = _runs({("eps", "cosine"): [3.0], ("eps", "linear"): [4.0]})
    row = evaluate_claims(df, [_better()]).iloc[0]
    assert row["verdict"] == "inconclusive" and np.isnan(row["p"]) and np.isnan(row["p_holm"])
    assert "fewer than 2 seeds" in row["note"] and row["effect"] == -1.0


def test_better_pairs_the_seeds_around_a_missing_value() -> None:
    """Issue 18's example: A has no FID on seed 4; the cells were trained on the same seeds, so
    the claim is paired on the 4 common seeds (not Welch over 4 against 5 values)."""
    a, b = [3.0, 3.5, 4.0, 4.5, np.nan], [3.2, 3.75, 4.1, 4.8, 6.0]
    row = evaluate_claims(_runs({("eps", "cosine"): a, ("eps", "linear"): b}), [_better()]).iloc[0]
    ref = sps.ttest_rel(a[:4], b[:4], alternative="less")
    assert row["test"] == "paired t" and row["n_a"] == row["n_b"] == 4
    assert row["p"] == pytest.approx(ref.pvalue) and round(row["p"], 4) == 0.0078
    assert row["effect"] == pytest.approx(-0.2125) and row["verdict"] == "reproduced"


def _best_claim() -> Claim:
    return Claim("b", CITE, "s", "nll_bpd", "lower", "best",
                 a=cell(objective="elbo", schedule="learned"), requires="r")


def test_best_with_a_competitor_without_values_names_it_and_is_never_reproduced() -> None:
    """A beats the one competitor it can be compared with (p = 2.6e-4), but elbo/cosine has no
    value at all: A is not shown to beat it, so the claim must not come out reproduced."""
    cells = {("elbo", "learned"): [1.0, 1.1, 1.05], ("elbo", "cosine"): [np.nan] * 3,
             ("eps", "cosine"): [1.9, 2.05, 1.93]}
    row = evaluate_claims(_runs(cells, "nll_bpd"), [_best_claim()]).iloc[0]
    assert row["missing"] == "no nll_bpd values in elbo/cosine"
    assert row["verdict"] == "inconclusive"
    assert np.isnan(row["p"]) and np.isnan(row["p_holm"])
    assert "closest: eps/cosine" in row["cells"] and row["test"] == "paired t"
    assert row["effect"] == pytest.approx(np.mean([-0.9, -0.95, -0.88]))
    markdown = claims_markdown(evaluate_claims(_runs(cells, "nll_bpd"), [_best_claim()]),
                               run_name="r", commit="c")
    assert "missing: no nll_bpd values in elbo/cosine" in markdown
    # without the empty cell the same data reproduce: the missing cell is what stops it
    del cells[("elbo", "cosine")]
    assert evaluate_claims(_runs(cells, "nll_bpd"), [_best_claim()]).iloc[0]["verdict"] == \
        "reproduced"


def test_best_with_a_missing_competitor_can_still_be_contradicted() -> None:
    cells = {("elbo", "learned"): [1.0, 1.1, 1.05], ("elbo", "cosine"): [np.nan] * 3,
             ("eps", "cosine"): [0.5, 0.62, 0.53]}  # eps/cosine beats A: A is not the best
    row = evaluate_claims(_runs(cells, "nll_bpd"), [_best_claim()]).iloc[0]
    p_opp = sps.ttest_rel(cells[("elbo", "learned")], cells[("eps", "cosine")],
                          alternative="greater").pvalue
    assert row["p_opposite"] == pytest.approx(p_opp) and row["verdict"] == "contradicted"
    assert row["missing"] == "no nll_bpd values in elbo/cosine"


def test_best_with_no_competitor_values_is_not_in_the_grid_and_names_them() -> None:
    cells = {("elbo", "learned"): [1.0, 1.1, 1.05], ("elbo", "cosine"): [np.nan] * 3,
             ("eps", "cosine"): [np.nan, np.inf, np.nan]}
    row = evaluate_claims(_runs(cells, "nll_bpd"), [_best_claim()]).iloc[0]
    assert row["verdict"] == "not in this grid" and row["test"] == ""
    assert row["missing"] == "no nll_bpd values in elbo/cosine, eps/cosine (needs r)"
