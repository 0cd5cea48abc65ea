"""``digits-gmm``: a dataset of digits' shape whose probability is known exactly.

The continuous model is a mixture of ``K`` diagonal Gaussians over ``D`` dimensions, each
component belonging to one class ``c(k)``: ``y ~ sum_k pi_k N(mu_k, diag(s_k^2))``. The data
is ``y`` quantised to the nearest of ``L`` levels ``x_l = 2l/(L-1) - 1`` in ``[-1, 1]`` (the
model inputs of :mod:`vdm.core.data`): level ``l`` is the bin ``(b^-_l, b^+_l]`` with edges
halfway between levels and the outer bins open to ``-inf`` / ``+inf``. Per component the
dimensions stay independent, so the discrete distribution is exactly

    P(x) = sum_k pi_k prod_d p_kd(x_d),
    p_kd(l) = Phi((b^+_l - mu_kd) / s_kd) - Phi((b^-_l - mu_kd) / s_kd),

computed in log space (:func:`log_normal_interval` for the differences of normal CDFs,
log-sum-exp over components). Every log-probability here is in **nats per image** unless a
name says ``bits_per_dim`` (``-log2 P(x) / D``).

The shipped parameters (``digits_gmm.npz`` beside this file) were fitted by
:mod:`vdm.core.digits_gmm_fit`: per class of the digits train split (1497 images, model inputs in
``[-1, 1]``), scikit-learn's ``GaussianMixture(covariance_type="diag")`` with
:data:`COMPONENTS_PER_CLASS` components, ``random_state=0``, ``tol`` and ``max_iter`` tight
enough that the fit has converged, and ``reg_covar = Delta^2 / 12`` with ``Delta = 2/(L-1)``
the level spacing: the variance of uniform dequantisation noise, so each component's
variances are those of a fit to uniformly dequantised images (a pixel that is constant in a
class keeps a bin's worth of spread instead of collapsing onto one level; on the 300 digits
test images this gives 2.29 bits/dim against 4.17 for ``reg_covar = 1e-6``). Weights are
``pi_k = (class frequency in the train split) x (within-class weight)``.
``python -m vdm.core.digits_gmm_fit --refit`` rewrites the file; a test checks that the refit
reproduces it. :attr:`GaussianMixtureData.sha256` is a hash of the parameters, for provenance;
:func:`describe` gives what a run records. ``python -m vdm.core.digits_gmm_fit`` prints it: 40
components, ``H = 2.1654 +- 0.0006`` bits/dim and Bayes accuracy 0.999996 (100k samples).

Sampling is exact and uses only uniform draws (``Generator.random``; no ziggurat normals, so a
split depends on the bit generator and ``ndtri`` alone): a component by inversion of the
cumulative weights, then ``y_d = mu_kd + s_kd Phi^-1(u_d)`` (a Gaussian by inversion) quantised
to its bin. The fixed splits (:func:`load_split`), the fixed sets of fresh true samples the FID
uses (:meth:`GaussianMixtureData.fresh_set`: its reference and its floor) and fresh samples
(``seed``) come from disjoint random streams (``SeedSequence`` spawn keys), so no seed of a
fresh sample reproduces a split or a set.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import log_ndtr, logsumexp, ndtri

from vdm.core.provenance import atomic_output

#: The shipped parameters (package data).
PARAMETERS_FILE = Path(__file__).with_name("digits_gmm.npz")

#: Split sizes (registered in :data:`vdm.core.dataset_facts.SPLIT_SIZES` too, which cannot import this
#: module: scipy; tests/test_digits_gmm.py checks they agree). ``train`` is the size of
#: digits' train split, so models see as many images as on digits. ``test`` is larger than
#: digits' 300: the per-image standard deviation of ``-log2 P(x) / D`` is 0.19 bits/dim, so the
#: spread over images alone gives a test-set mean a standard error of 0.011 bits/dim at 300
#: images (as large as the differences between cells) and 0.0043 at 2000, below the ELBO's own
#: Monte-Carlo error; and 200 images per class for class-conditional metrics. The NLL's cost
#: grows linearly with it, so it is not larger.
SPLIT_SIZES: dict[str, int] = {"train": 1497, "test": 2000}
#: Random streams (``SeedSequence`` spawn keys): fresh samples, then one per split, then the
#: two sets of fresh true samples the FID uses with ``fid.reference_split: fresh``
#: (:data:`FRESH_SETS`; sized by the caller, not by :data:`SPLIT_SIZES`).
FRESH_STREAM = 0
SPLIT_STREAMS: dict[str, int] = {"train": 1, "test": 2, "fresh-reference": 3, "fresh-floor": 4}
SPLIT_SEED = 0
#: Sets of fresh true samples, each from its own fixed stream (no model trains or is evaluated on
#: them): ``fresh-reference``, the FID reference; ``fresh-floor``, the true samples scored like a
#: run's samples against it (the FID floor of a perfect model).
FRESH_SETS: tuple[str, ...] = ("fresh-reference", "fresh-floor")
#: Images per chunk when evaluating probabilities (memory ``K x chunk x D`` doubles).
CHUNK = 2048


def log_normal_interval(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``log(Phi(hi) - Phi(lo))`` elementwise for standardised bounds ``lo < hi`` (``+-inf``
    allowed), finite wherever the interval has positive probability.

    Upper-tail intervals (``lo > 0``) are mirrored, ``Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi)``,
    so both CDFs are taken at or below 0 where ``scipy.special.log_ndtr`` keeps full relative
    precision; then ``log Phi(b) + log(1 - exp(log Phi(a) - log Phi(b)))`` with the two-branch
    ``log1mexp`` (``log(-expm1(t))`` for ``t > -ln 2``, ``log1p(-exp(t))`` below).
    """
    lo, hi = np.broadcast_arrays(np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
    flip = lo > 0
    a, b = np.where(flip, -hi, lo), np.where(flip, -lo, hi)
    log_a, log_b = log_ndtr(a), log_ndtr(b)
    t = log_a - log_b  # <= 0; -inf when a = -inf
    with np.errstate(divide="ignore"):  # t = 0 only for an empty interval: log 0 = -inf
        near = np.log(-np.expm1(t))
        far = np.log1p(-np.exp(t))
    return log_b + np.where(t > -math.log(2.0), near, far)


def level_values(num_levels: int) -> np.ndarray:
    """The ``L`` levels ``x_l = 2l/(L-1) - 1`` in ``[-1, 1]`` (float64)."""
    return np.linspace(-1.0, 1.0, num_levels)


@dataclass(frozen=True, eq=False)
class GaussianMixtureData:
    """A class-labelled mixture of diagonal Gaussians, quantised to ``num_levels`` levels.

    Attributes:
        weights: ``(K,)`` mixture weights ``pi_k`` (positive, summing to 1).
        means: ``(K, D)`` component means ``mu_kd`` in model-input units (levels at
            ``[-1, 1]``).
        stds: ``(K, D)`` component standard deviations ``s_kd > 0``, same units.
        component_class: ``(K,)`` int class of each component, covering ``0..C-1``.
        num_levels: ``L``, levels per dimension.
        shape: shape of one image, ``prod(shape) = D`` (``(1, 8, 8)`` for digits-gmm).
    """

    weights: np.ndarray
    means: np.ndarray
    stds: np.ndarray
    component_class: np.ndarray
    num_levels: int
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("weights", "means", "stds"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), np.float64))
        object.__setattr__(self, "component_class",
                           np.ascontiguousarray(self.component_class, np.int64))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "num_levels", int(self.num_levels))
        k, d = self.means.shape if self.means.ndim == 2 else (-1, -1)
        if self.weights.shape != (k,) or self.stds.shape != (k, d) or k < 1:
            raise ValueError(f"mixture: weights (K,), means and stds (K, D) expected, got "
                             f"{self.weights.shape}, {self.means.shape}, {self.stds.shape}")
        if self.component_class.shape != (k,) or int(np.prod(self.shape)) != d:
            raise ValueError(f"mixture: component_class must be ({k},) and prod(shape) = {d}, got "
                             f"{self.component_class.shape} and shape {self.shape}")
        if not (np.all(self.weights > 0) and abs(self.weights.sum() - 1) < 1e-9):
            raise ValueError("mixture: weights must be positive and sum to 1, got sum "
                             f"{self.weights.sum()!r}")
        if not (np.all(np.isfinite(self.means)) and np.all(self.stds > 0)
                and np.all(np.isfinite(self.stds))):
            raise ValueError("mixture: means must be finite and stds finite and positive")
        classes = np.unique(self.component_class)
        if classes.tolist() != list(range(len(classes))):
            raise ValueError(f"mixture: component classes must cover 0..C-1, got {classes.tolist()}")
        if self.num_levels < 2:
            raise ValueError(f"mixture: num_levels must be >= 2, got {self.num_levels}")

    # ---- sizes and grids -------------------------------------------------------------------
    @property
    def num_components(self) -> int:
        return int(self.weights.shape[0])

    @property
    def num_dims(self) -> int:
        """``D``, the 'per dimension' of bits/dim."""
        return int(self.means.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.component_class.max()) + 1

    @property
    def level_values(self) -> np.ndarray:
        """``(L,)`` level values ``x_l`` in ``[-1, 1]``."""
        return level_values(self.num_levels)

    @property
    def bin_edges(self) -> np.ndarray:
        """``(L + 1,)`` bin edges: ``-inf``, the ``L - 1`` midpoints between levels, ``+inf``."""
        x = self.level_values
        return np.concatenate([[-np.inf], 0.5 * (x[1:] + x[:-1]), [np.inf]])

    @cached_property
    def sha256(self) -> str:
        """Hex SHA-256 of the parameters (float64 / int64 little-endian bytes, then ``L`` and
        the shape): names the distribution in provenance."""
        digest = hashlib.sha256()
        for array in (self.weights, self.means, self.stds, self.component_class):
            digest.update(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
        digest.update(repr((self.num_levels, self.shape)).encode())
        return digest.hexdigest()

    # ---- exact probabilities ---------------------------------------------------------------
    @cached_property
    def log_level_probs(self) -> np.ndarray:
        """``(K, D, L)`` ``log p_kd(l)`` in nats: per component and dimension, the log
        probability of each level (normalised over ``l``)."""
        edges = self.bin_edges
        mu, s = self.means[..., None], self.stds[..., None]
        return log_normal_interval((edges[:-1] - mu) / s, (edges[1:] - mu) / s)

    def level_probs(self) -> np.ndarray:
        """``(K, D, L)`` level probabilities ``p_kd(l)`` (each row sums to 1)."""
        return np.exp(self.log_level_probs)

    def _flat_levels(self, levels: Any) -> np.ndarray:
        array = levels.numpy() if isinstance(levels, torch.Tensor) else np.asarray(levels)
        if array.ndim < 2 or int(np.prod(array.shape[1:])) != self.num_dims:
            raise ValueError(f"levels: expected (N, {self.shape}) level indices, got {array.shape}")
        flat = array.reshape(-1, self.num_dims)
        if flat.size and (not np.issubdtype(flat.dtype, np.integer)
                          or flat.min() < 0 or flat.max() >= self.num_levels):
            raise ValueError(f"levels: expected integers in [0, {self.num_levels - 1}], got dtype "
                             f"{flat.dtype} range [{flat.min()}, {flat.max()}]")
        return flat.astype(np.int64)

    def log_joint(self, levels: Any) -> np.ndarray:
        """``(N, K)`` ``log pi_k + log prod_d p_kd(x_d)`` in nats, for level indices ``levels``
        ``(N, *shape)`` or ``(N, D)`` (numpy or torch integers)."""
        flat = self._flat_levels(levels)
        table = self.log_level_probs.reshape(self.num_components, -1)  # (K, D*L)
        offsets = np.arange(self.num_dims) * self.num_levels
        out = np.empty((flat.shape[0], self.num_components))
        for start in range(0, flat.shape[0], CHUNK):
            index = flat[start:start + CHUNK] + offsets
            out[start:start + CHUNK] = table[:, index].sum(-1).T
        return out + np.log(self.weights)

    def log_prob(self, levels: Any) -> np.ndarray:
        """``(N,)`` ``log P(x)`` in nats per image of the discrete distribution (exact)."""
        return logsumexp(self.log_joint(levels), axis=1)

    def bits_per_dim(self, levels: Any) -> np.ndarray:
        """``(N,)`` ``-log2 P(x) / D`` in bits per dimension."""
        return -self.log_prob(levels) / (self.num_dims * math.log(2.0))

    def class_log_posterior(self, levels: Any) -> np.ndarray:
        """``(N, C)`` the Bayes classifier ``log p(c | x) = log sum_{k in c} pi_k p(x | k)
        - log P(x)`` in nats."""
        return self._class_log_posterior(self.log_joint(levels))

    def _class_log_posterior(self, joint: np.ndarray) -> np.ndarray:
        """:meth:`class_log_posterior` from the ``(N, K)`` :meth:`log_joint` of the images."""
        per_class = np.stack([logsumexp(joint[:, self.component_class == c], axis=1)
                              for c in range(self.num_classes)], axis=1)
        return per_class - logsumexp(joint, axis=1, keepdims=True)

    def class_posterior(self, levels: Any) -> np.ndarray:
        """``(N, C)`` ``p(c | x)`` (rows sum to 1)."""
        return np.exp(self.class_log_posterior(levels))

    # ---- sampling --------------------------------------------------------------------------
    def sample(self, num_samples: int, seed: int | np.random.Generator = 0
               ) -> tuple[np.ndarray, np.ndarray]:
        """``num_samples`` exact draws: ``(levels, labels)``, levels ``(N, *shape)`` (uint8 for
        ``L <= 256``, else int64) and int64 class labels ``(N,)`` (the component's class).

        ``seed``: an int selects the fresh-sample stream (disjoint from the splits'), or a
        ``numpy.random.Generator`` to draw from.
        """
        rng = seed if isinstance(seed, np.random.Generator) else _rng(int(seed), FRESH_STREAM)
        cumulative = np.cumsum(self.weights)
        component = np.minimum(np.searchsorted(cumulative, rng.random(num_samples) * cumulative[-1],
                                               side="right"), self.num_components - 1)
        y = self.means[component] + self.stds[component] * ndtri(rng.random((num_samples,
                                                                               self.num_dims)))
        levels = np.searchsorted(self.bin_edges[1:-1], y, side="left")  # bin (b-, b+]
        dtype = np.uint8 if self.num_levels <= 256 else np.int64
        return (levels.astype(dtype).reshape(num_samples, *self.shape),
                self.component_class[component].copy())

    def split(self, split: str, sizes: dict[str, int] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """The fixed split ``split`` (``train``/``test``, :data:`SPLIT_SIZES`): ``(levels,
        labels)`` as :meth:`sample`, from the split's own random stream."""
        sizes = SPLIT_SIZES if sizes is None else sizes
        if split not in SPLIT_STREAMS or split not in sizes:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(sizes)}")
        return self.sample(sizes[split], _rng(SPLIT_SEED, SPLIT_STREAMS[split]))

    def fresh_set(self, name: str, num_images: int) -> tuple[np.ndarray, np.ndarray]:
        """``num_images`` fresh true samples of the set ``name`` (:data:`FRESH_SETS`), ``(levels,
        labels)`` as :meth:`sample`, from the set's own fixed stream (independent of the splits'
        and of every ``seed`` of :meth:`sample`): the same images on every call. A set of another
        size is another draw (not a prefix of it)."""
        if name not in FRESH_SETS:
            raise ValueError(f"unknown set of fresh samples {name!r}; expected one of {FRESH_SETS}")
        if int(num_images) < 1:
            raise ValueError(f"{name}: num_images must be >= 1, got {num_images}")
        return self.split(name, {name: int(num_images)})

    # ---- exact limits (Monte Carlo over exact samples) -------------------------------------
    def entropy_bits_per_dim(self, num_samples: int = 100_000, seed: int = 0) -> tuple[float, float]:
        """The true entropy ``H = E_P[-log2 P(x)] / D`` in bits/dim and its standard error
        (standard deviation over ``num_samples`` fresh samples / sqrt(N))."""
        levels, _ = self.sample(num_samples, seed)
        return _mean_se(self.bits_per_dim(levels))

    def bayes_accuracy(self, num_samples: int = 100_000, seed: int = 0) -> tuple[float, float]:
        """The Bayes accuracy ``E_P[max_c p(c | x)]`` (the ceiling of any classifier's accuracy
        on this distribution) and its standard error, over ``num_samples`` fresh samples.
        (The mean of ``max_c p(c | x)`` has the same expectation as the Bayes classifier's hit
        rate on the samples' labels and a smaller variance.)"""
        levels, _ = self.sample(num_samples, seed)
        return _mean_se(self.class_posterior(levels).max(axis=1))

    # ---- files -----------------------------------------------------------------------------
    def save(self, path: str | Path, **settings: Any) -> Path:
        """Write the parameters, their :attr:`sha256` and the fit ``settings`` (numbers and
        strings) to ``path`` (``.npz``, atomically)."""
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, weights=self.weights, means=self.means, stds=self.stds,
                     component_class=self.component_class, num_levels=self.num_levels,
                     shape=np.asarray(self.shape, np.int64), sha256=self.sha256,
                     **{f"fit_{k}": v for k, v in settings.items()})
        return Path(path)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def read_mixture(path: str | Path) -> tuple[GaussianMixtureData, dict[str, Any]]:
    """The mixture stored at ``path`` by :meth:`GaussianMixtureData.save` and its fit settings;
    a one-line ``ValueError`` naming the file if it is not one or its hash does not match."""
    keys = ("weights", "means", "stds", "component_class", "num_levels", "shape", "sha256")
    try:
        with np.load(path, allow_pickle=False) as stored:
            values = {key: stored[key] for key in stored.files}
        mixture = GaussianMixtureData(
            values["weights"], values["means"], values["stds"], values["component_class"],
            int(values["num_levels"]), tuple(values["shape"].tolist()))
    except (OSError, ValueError, KeyError, EOFError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{path} is not a digits-gmm parameter file (npz with {', '.join(keys)}):"
                         f" {first}") from None
    if str(values["sha256"]) != mixture.sha256:
        raise ValueError(f"{path}: parameters do not match their recorded sha256 (file changed "
                         "or corrupt); rewrite it with python -m vdm.core.digits_gmm --refit")
    settings = {key[4:]: values[key].item() for key in values if key.startswith("fit_")}
    return mixture, settings


@lru_cache(maxsize=1)
def load_mixture() -> GaussianMixtureData:
    """The shipped digits-gmm parameters (:data:`PARAMETERS_FILE`), loaded once per process."""
    return read_mixture(PARAMETERS_FILE)[0]


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """digits-gmm split ``split``: uint8 levels ``(N, 1, 8, 8)`` and int64 labels ``(N,)``."""
    return load_mixture().split(split)


def describe(mixture: GaussianMixtureData, num_samples: int = 100_000, seed: int = 0
             ) -> dict[str, Any]:
    """The facts a run records about the mixture: size, hash, ``H`` and the Bayes accuracy.

    The numbers of :meth:`~GaussianMixtureData.entropy_bits_per_dim` and
    :meth:`~GaussianMixtureData.bayes_accuracy` with the same ``num_samples`` and ``seed`` (the
    same fresh samples), from one draw and one :meth:`~GaussianMixtureData.log_joint` of them."""
    levels, _ = mixture.sample(num_samples, seed)
    joint = mixture.log_joint(levels)
    entropy, entropy_se = _mean_se(-logsumexp(joint, axis=1)
                                   / (mixture.num_dims * math.log(2.0)))
    accuracy, accuracy_se = _mean_se(np.exp(mixture._class_log_posterior(joint)).max(axis=1))
    return {"sha256": mixture.sha256, "num_components": mixture.num_components,
            "num_classes": mixture.num_classes, "num_levels": mixture.num_levels,
            "shape": list(mixture.shape), "true_entropy_bpd": entropy,
            "true_entropy_bpd_se": entropy_se, "bayes_accuracy": accuracy,
            "bayes_accuracy_se": accuracy_se, "num_samples": num_samples, "seed": seed}
