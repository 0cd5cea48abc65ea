"""Registry of published claims that the benchmark can check: data only, evaluated by
:mod:`vdm.reporting.claims`.

A claim names a metric column of ``summary.csv``, the direction in which the paper says it
moves, and the cells it compares. A cell is a partial key over the grid's axes
:data:`CELL_AXES` (``conditioning``, ``parameterization``, ``objective``, ``schedule``).
For the cell comparisons (``better``, ``best``) an axis the claim does not name takes its
default from :data:`CELL_DEFAULTS` (``eps`` parameterization, unconditional models), so each
key names exactly one cell of any grid. The kinds of comparison (:data:`KINDS`):

* ``better``: cell ``a`` beats cell ``b`` on the primary evaluation setting, over seeds.
* ``best``: cell ``a`` beats every other cell matching ``among`` (same defaults).
* ``sign``: the per-run values of ``metric`` (a paired per-run difference such as
  ``nll_ode_vdeq_minus_elbo_bpd``) have a mean below (``lower``) or above (``higher``) zero in
  every cell of the runs matching ``a`` that has the metric (no defaults: ``{}`` is every run),
  each cell tested over its own seeds.
* ``guidance``: the same runs' samples with the largest ``guidance_kind`` weight in the grid
  against their samples at guidance weight 0 (same model, sampler and steps), over the runs
  matching ``a`` (no defaults).

``direction`` is ``lower`` or ``higher``: the paper's claim is that ``a`` has the lower (higher)
``metric``. To add a claim, append a :class:`Claim` to :data:`CLAIMS`; ids must be unique.
"""

from __future__ import annotations

from dataclasses import dataclass

CELL_AXES: tuple[str, ...] = ("conditioning", "parameterization", "objective", "schedule")
"""Axes of the grid that identify a cell (seeds are its replicates)."""

CELL_DEFAULTS: dict[str, str] = {"conditioning": "uncond", "parameterization": "eps"}
"""Values of the axes a cell-comparison claim does not name."""

KINDS: tuple[str, ...] = ("better", "best", "sign", "guidance")
DIRECTIONS: tuple[str, ...] = ("lower", "higher")

CellKey = tuple[tuple[str, str], ...]
"""A partial cell key as sorted ``(axis, value)`` pairs (hashable; build it with :func:`cell`)."""


def cell(**axes: str) -> CellKey:
    """A :data:`CellKey` from axis values, e.g. ``cell(objective="eps", schedule="linear")``."""
    unknown = sorted(set(axes) - set(CELL_AXES))
    if unknown:
        raise ValueError(f"unknown cell axes {unknown}; expected some of {CELL_AXES}")
    return tuple((axis, str(axes[axis])) for axis in CELL_AXES if axis in axes)


@dataclass(frozen=True)
class Citation:
    """Where a claim was published: ``authors`` as printed in the table, ``year``, arXiv id."""

    authors: str
    year: int
    arxiv: str
    title: str

    @property
    def text(self) -> str:
        """``"Ho, Jain & Abbeel 2020, arXiv:2006.11239"``."""
        return f"{self.authors} {self.year}, arXiv:{self.arxiv}"


@dataclass(frozen=True)
class Claim:
    """One published finding, stated so that a grid can test it (see the module docstring).

    ``metric``: a ``summary.csv`` column; ``direction``: ``lower`` or ``higher`` is the claimed
    side of ``a``; ``kind`` in :data:`KINDS`; ``a``, ``b``, ``among``: cell keys;
    ``guidance_kind``: ``cfg`` or ``classifier`` (``guidance`` claims only); ``requires``: what
    a grid needs for the claim, in words (shown when it is not in the grid); ``note``: how the
    claim is judged here, when that needs saying; ``convergence``: the claim is about the speed
    of training (the metric after the same number of steps), so with training snapshots it is
    judged at every budget (:mod:`vdm.reporting.claims_by_budget`), not only at the final one.
    """

    id: str
    citation: Citation
    statement: str
    metric: str
    direction: str
    kind: str
    a: CellKey = ()
    b: CellKey = ()
    among: CellKey = ()
    guidance_kind: str = ""
    requires: str = ""
    note: str = ""
    convergence: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id}: kind {self.kind!r} not in {KINDS}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"claim {self.id}: direction {self.direction!r} not in {DIRECTIONS}")
        if self.kind in ("better", "best") and not dict(self.a).keys() >= {"objective", "schedule"}:
            raise ValueError(f"claim {self.id}: cell a must name an objective and a schedule")
        if self.kind == "better" and not dict(self.b).keys() >= {"objective", "schedule"}:
            raise ValueError(f"claim {self.id}: cell b must name an objective and a schedule")
        if self.kind == "guidance" and self.guidance_kind not in ("cfg", "classifier"):
            raise ValueError(f"claim {self.id}: guidance claims need guidance_kind cfg/classifier")


DDPM = Citation("Ho, Jain & Abbeel", 2020, "2006.11239", "Denoising Diffusion Probabilistic Models")
IDDPM = Citation("Nichol & Dhariwal", 2021, "2102.09672",
                 "Improved Denoising Diffusion Probabilistic Models")
VDM = Citation("Kingma, Salimans, Poole & Ho", 2021, "2107.00630", "Variational Diffusion Models")
KINGMA_GAO = Citation("Kingma & Gao", 2023, "2303.00848",
                      "Understanding Diffusion Objectives as the ELBO with Simple Data Augmentation")
MIN_SNR = Citation("Hang et al.", 2023, "2303.09556",
                   "Efficient Diffusion Training via Min-SNR Weighting Strategy")
SCORE_SDE = Citation("Song et al.", 2021, "2011.13456",
                     "Score-Based Generative Modeling through Stochastic Differential Equations")
CFG = Citation("Ho & Salimans", 2022, "2207.12598", "Classifier-Free Diffusion Guidance")

CLAIMS: tuple[Claim, ...] = (
    Claim("ddpm-eps-fid", DDPM,
          "Training on the unweighted ε-MSE (L_simple) gives better samples (FID) than the "
          "variational bound.",
          "fid", "lower", "better",
          a=cell(objective="eps", schedule="linear"), b=cell(objective="elbo", schedule="linear"),
          requires="objectives eps and elbo on the linear schedule"),
    Claim("ddpm-elbo-nll", DDPM,
          "The variational bound gives a better NLL than L_simple (the price of its better FID).",
          "nll_bpd", "lower", "better",
          a=cell(objective="elbo", schedule="linear"), b=cell(objective="eps", schedule="linear"),
          requires="objectives eps and elbo on the linear schedule"),
    Claim("iddpm-cosine-fid", IDDPM,
          "The cosine schedule beats the linear one for ε-MSE training on FID.",
          "fid", "lower", "better",
          a=cell(objective="eps", schedule="cosine"), b=cell(objective="eps", schedule="linear"),
          requires="objective eps on the cosine and linear schedules"),
    Claim("iddpm-cosine-nll", IDDPM,
          "The cosine schedule beats the linear one for ε-MSE training on NLL.",
          "nll_bpd", "lower", "better",
          a=cell(objective="eps", schedule="cosine"), b=cell(objective="eps", schedule="linear"),
          requires="objective eps on the cosine and linear schedules"),
    Claim("vdm-learned-elbo-nll", VDM,
          "The ELBO weighting with the learned noise schedule gives the best NLL.",
          "nll_bpd", "lower", "best",
          a=cell(objective="elbo", schedule="learned"), among=cell(),
          requires="objective elbo with the learned schedule, and other cells",
          note="best among every other unconditional ε-parameterized cell of the grid"),
    Claim("kingma-gao-sigmoid-fid", KINGMA_GAO,
          "The monotonic sigmoid weighting gives the best FID among the weightings.",
          "fid", "lower", "best",
          a=cell(objective="sigmoid", schedule="cosine"), among=cell(schedule="cosine"),
          requires="objective sigmoid and other objectives on the cosine schedule",
          note="best among the other objectives on the same (cosine) schedule"),
    Claim("min-snr-fid", MIN_SNR,
          "Min-SNR-γ weighting converges faster than ε-MSE: better FID after the same number "
          "of training steps.",
          "fid", "lower", "better",
          a=cell(objective="min_snr", schedule="linear"),
          b=cell(objective="eps", schedule="linear"),
          requires="objectives min_snr and eps on the linear schedule",
          note="judged on FID at equal training steps (every cell of a grid trains the same "
               "number of steps); the logged training losses are on different scales (each "
               "objective weights the ε-error differently), so they are not compared",
          convergence=True),
    Claim("ode-below-elbo", SCORE_SDE,
          "The probability-flow ODE likelihood of a diffusion model is better (lower bits/dim) "
          "than its ELBO.",
          "nll_ode_vdeq_minus_elbo_bpd", "lower", "sign",
          requires="the ODE likelihood (nll.ode: true), which gives "
                   "nll_ode_vdeq_minus_elbo_bpd",
          note="per run, the decoder-consistent ODE bound − ELBO on the same test images (a "
               "paired difference; same decoder and q(z₀|x) at λ_max, so the two differ only "
               "in the diffusion part); a one-sample t-test over the seeds of each cell (runs "
               "with the same seed share evaluation noise, so the runs of different cells are "
               "not pooled), and the claim must hold in every cell with ODE likelihoods "
               "(p = the largest; contradicted if some cell is significantly above after Holm "
               "across the cells); the uniform-dequantization ODE value is not used: what it "
               "costs depends on λ_max"),
    Claim("cfg-class-accuracy", CFG,
          "Classifier-free guidance raises sample fidelity: guided samples are classified as "
          "their requested class more often.",
          "class_accuracy", "higher", "guidance",
          a=cell(conditioning="class"), guidance_kind="cfg",
          requires="class-conditional runs sampled with cfg weight > 0 and weight 0, with "
                   "class_accuracy",
          note="largest cfg weight of the grid vs weight 0, same model, sampler and steps: "
               "paired by run; the dataset classifier's accuracy stands in for the paper's "
               "Inception Score"),
    Claim("cfg-recall", CFG,
          "Classifier-free guidance lowers sample diversity: recall drops as the guidance "
          "weight grows.",
          "recall", "lower", "guidance",
          a=cell(conditioning="class"), guidance_kind="cfg",
          requires="class-conditional runs sampled with cfg weight > 0 and weight 0, with "
                   "precision/recall (fid.prc: true)",
          note="largest cfg weight of the grid vs weight 0, same model, sampler and steps: "
               "paired by run; recall = Kynkäänniemi et al. (2019) as computed by "
               "torch-fidelity"),
)
"""The published claims evaluated in every run, in table order."""
