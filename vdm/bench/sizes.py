"""How much work each bench measurement does: :class:`Sizes`, and its presets :data:`FULL`
(``python -m vdm.bench``) and :data:`QUICK` (``--quick``). Sizes set step, repeat and sample
counts, never the batch size or the network."""

from __future__ import annotations

import dataclasses

from vdm.bench.configs import VARIANTS


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each measurement does (never the batch size or the network).

    ``train_steps``: steps ``S`` of every timed ``fit()`` (None: the config's ``train.steps``);
    ``warmup_steps``: ``W`` steps excluded from timing on both sides; ``repeats``: interleaved
    repeats of each training measurement at the config's precision; ``nll_repeats``:
    evaluations (seeds) for the NLL; ``num_samples`` / ``sample_repeats``: sampling;
    ``classifier_steps``: FID classifier training steps (None: the config's); ``run_grid``: run
    the Snakemake grid; ``variants``: precision variants measured besides the config's own
    (:data:`VARIANTS`), ``variant_repeats`` repeats each; ``sample_steps``: sampling steps (None:
    the config's); ``nll_examples``: NLL images (None: the whole split); ``learned``: also time
    the trainer with the learned schedule; ``peak_size``: matmul side ``n`` for the peak (None:
    8192 on CUDA, 1024 on CPU).
    """

    train_steps: int | None
    warmup_steps: int
    repeats: int
    nll_repeats: int
    num_samples: int
    sample_repeats: int
    classifier_steps: int | None
    run_grid: bool
    variants: tuple[str, ...] = VARIANTS
    variant_repeats: int = 1
    sample_steps: int | None = None
    nll_examples: int | None = None
    learned: bool = True
    peak_size: int | None = None


FULL = Sizes(train_steps=None, warmup_steps=20, repeats=3, nll_repeats=20, num_samples=1000,
             sample_repeats=2, classifier_steps=None, run_grid=True, variant_repeats=2)
QUICK = Sizes(train_steps=80, warmup_steps=10, repeats=5, nll_repeats=8, num_samples=1000,
              sample_repeats=1, classifier_steps=150, run_grid=False)
