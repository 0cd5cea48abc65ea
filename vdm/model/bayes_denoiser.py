"""The Bayes-optimal ε-denoiser of a quantised Gaussian mixture (:mod:`vdm.core.digits_gmm`),
exactly, as a drop-in for a trained model.

Data ``x`` takes the ``L`` level values ``x_l`` per dimension; given component ``k`` the ``D``
dimensions are independent with level probabilities ``p_kd(l)``, and ``P(x) = sum_k pi_k
prod_d p_kd(x_d)``. For ``z = alpha x + sigma eps`` (``alpha^2 = sigmoid(lambda)``,
``sigma^2 = sigmoid(-lambda)``) everything below is a finite sum, computed in float64 and in
log space (log-sum-exp over levels and over components):

    p(z | k)       = prod_d m_kd(z_d),     m_kd(z_d) = sum_l p_kd(l) N(z_d; alpha x_l, sigma^2),
    p(k | z)       = pi_k p(z | k) / sum_j pi_j p(z | j),
    E[x_d | z, k]  = sum_l x_l p_kd(l) N(z_d; alpha x_l, sigma^2) / m_kd(z_d),
    E[x | z]       = sum_k p(k | z) E[x | z, k],
    eps*(z)        = (z - alpha E[x | z]) / sigma                      (= E[eps | z]),

and per class ``c`` the same with the components of ``c`` only: ``p(z | c)``, ``E[x | z, c]``,
``eps*(z, c)``; the noisy-class posterior ``p(c | z) = sum_{k in c} p(k | z)``. By Tweedie,
``grad_z log p_lambda(z) = -eps*(z) / sigma``, hence the closed form

    grad_z log p(c | z) = grad_z log p(z | c) - grad_z log p(z) = (eps*(z) - eps*(z, c)) / sigma.

``eps*`` minimises ``E||eps_hat(z, lambda) - eps||^2`` at every ``lambda`` over all functions, so
it is the optimum of every weighting (objective) at once: the ELBO with ``eps*`` is the best
that any network can reach with a given ``lambda`` range and VDM's decoder (the *Bayes bound*;
``E_P[ELBO] - H`` is then exactly the prior's ``KL(q(z_1) || N(0, I))`` plus the decoder's
mismatch ``E KL(q(x | z_0) || p_dec(x | z_0))``, which vanishes as ``lambda_max`` grows), and the
samplers run with it have no network error.

:class:`BayesDenoiser` is a :class:`~vdm.model.diffusion.DiffusionModel` whose "network" is
:class:`BayesEpsNetwork`: same ``eps(z, log_snr[, labels])`` call, ``schedule``,
``num_classes``, ``num_levels``, ``parameterization = "eps"``, so the ELBO, the ODE bound,
the samplers, guidance and the denoiser gap run with it unchanged.
:class:`BayesNoisyClassifier` is the exact noise-conditional classifier (logits ``log p(c |
z_lambda)``) for classifier guidance.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vdm.core.digits_gmm import GaussianMixtureData
from vdm.model.diffusion import DiffusionModel
from vdm.model.objectives import get_objective

#: Elements of the ``(rows, K, D, L)`` float64 work tensor per chunk of the exact path (64 MiB).
WORK_ELEMENTS = 2**23
#: Rows per chunk of the fast path (its work tensors are ``(rows, D, L)`` and ``(rows, D, 2K)``;
#: 128 keeps them in cache: 1.5x faster per row than 1024 on digits-gmm, one CPU thread).
FAST_ROWS = 128
#: Smallest per-dimension sum the fast path trusts (well above float64's smallest normal number).
TINY = 1e-280
#: Nats by which a row's best component must clear the bound of an untrusted one (e^-50 < 2e-22).
MARGIN = 50.0


class BayesEpsNetwork(nn.Module):
    """``eps*(z, lambda[, y])`` of ``mixture`` with a network's call signature (module docstring).

    ``conditional``: expose ``num_classes = C`` so that a :class:`DiffusionModel` passes
    labels (``y = C`` is the null token: the unconditional ``eps*``); otherwise
    ``num_classes`` is None and the module is an unconditional denoiser. The per-class
    methods work either way.
    """

    def __init__(self, mixture: GaussianMixtureData, conditional: bool = False) -> None:
        super().__init__()
        self.mixture = mixture
        self.image_shape = tuple(mixture.shape)
        self.num_mixture_classes = mixture.num_classes
        self.num_classes = mixture.num_classes if conditional else None
        f64 = torch.float64
        self.register_buffer("log_level_probs", torch.tensor(mixture.log_level_probs, dtype=f64))
        self.register_buffer("log_weights", torch.tensor(mixture.weights, dtype=f64).log())
        self.register_buffer("level_values", torch.tensor(mixture.level_values, dtype=f64))
        probs = torch.tensor(mixture.level_probs(), dtype=f64).permute(1, 2, 0)  # (D, L, K)
        self.register_buffer("prob_table", torch.cat([probs, probs * self.level_values[:, None]], 2))
        classes = torch.tensor(mixture.component_class)
        self.register_buffer("class_mask", classes[None, :] == torch.arange(mixture.num_classes)[:, None])
        k, d, levels = mixture.log_level_probs.shape
        self.chunk_size = max(1, WORK_ELEMENTS // (k * d * levels))

    # ---- the exact sums --------------------------------------------------------------------
    def _prepare(self, z: torch.Tensor, log_snr: torch.Tensor | float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``z`` as float64 ``(B, D)`` and ``lambda`` as float64 ``(B,)``."""
        flat = z.reshape(z.shape[0], -1).to(torch.float64)
        if flat.shape[1] != self.log_level_probs.shape[1]:
            raise ValueError(f"z has {flat.shape[1]} dimensions per image, the mixture "
                             f"{self.log_level_probs.shape[1]}")
        lam = torch.as_tensor(log_snr, dtype=torch.float64, device=z.device).expand(flat.shape[0])
        return flat, lam

    def component_terms(self, z: torch.Tensor, log_snr: torch.Tensor | float,
                        groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log pi_k p(z | k), E[x | z, k])``: shapes ``(B, K)`` (nats, the density of
        ``z_lambda`` per component, Gaussian normalisation included) and ``(B, K, D)``.

        Fast path: per row and dimension the Gaussian factors are scaled by their largest,
        ``e_dl = N(z_d; alpha x_l, sigma^2) / max_l N``, so that ``m_kd = max_l N * sum_l p_kd(l)
        e_dl`` is one batched matrix product over ``d`` (the numerators of ``E[x_d | z, k]``
        with it). A sum below :data:`TINY` has lost precision, but then ``log pi_k p(z | k) <=
        log pi_k + log TINY + sum_d log max_l N``: if the largest ``log pi_j p(z | j)`` of the row
        is above that bound by :data:`MARGIN` nats, such components carry relative weight below
        ``e^-MARGIN`` and nothing depends on them; the other rows (z far from every component,
        at high SNR) are recomputed exactly by :meth:`exact_component_terms` (all in log space).

        ``groups`` (optional, boolean ``(B or 1, G, K)``): sets of components whose own sums
        must be right too (a class's components, for ``p(c | z)``, ``E[x | z, c]``): a row is
        also recomputed when the largest term of one of its groups is below the bound. Without
        it a class whose components all lost precision (at high SNR, z far from that class)
        would get a wrong ``log p(c | z)`` and ``E[x | z, c]``, though ``E[x | z]`` is right.
        """
        flat, lam = self._prepare(z, log_snr)
        joints, means = [], []
        for rows in range(0, flat.shape[0], FAST_ROWS):
            zc, lc = flat[rows:rows + FAST_ROWS], lam[rows:rows + FAST_ROWS]
            log_normal = self._log_normal(zc, lc)  # (b, D, L)
            shift = log_normal.amax(dim=-1, keepdim=True)
            sums = torch.einsum("bdl,dlj->bdj", torch.exp(log_normal - shift), self.prob_table)
            den, num = sums.split(self.log_weights.shape[0], dim=-1)  # (b, D, K) each
            den = den.clamp_min(TINY)
            joint = self.log_weights + (den.log() + shift).sum(1)
            mean = (num / den).transpose(1, 2)
            bound = shift.sum(dim=(1, 2)) + self.log_weights.max() + math.log(TINY) + MARGIN
            redo = joint.amax(dim=1) < bound
            if groups is not None:
                chunk = groups if groups.shape[0] == 1 else groups[rows:rows + FAST_ROWS]
                best = joint[:, None, :].masked_fill(~chunk, -math.inf).amax(dim=2)  # (b, G)
                redo = redo | (best < bound[:, None]).any(dim=1)
            if bool(redo.any()):
                exact_joint, exact_mean = self.exact_component_terms(zc[redo], lc[redo])
                joint, mean = joint.clone(), mean.clone()
                joint[redo], mean[redo] = exact_joint, exact_mean
            joints.append(joint)
            means.append(mean)
        return torch.cat(joints), torch.cat(means)

    def _log_normal(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        """``log N(z_d; alpha x_l, sigma^2)`` ``(B, D, L)`` for float64 ``z (B, D)``, ``lambda (B,)``."""
        alpha = torch.sigmoid(log_snr).sqrt()[:, None, None]
        log_var = -nn.functional.softplus(log_snr)[:, None, None]  # log sigmoid(-lambda)
        return (-0.5 * (z[:, :, None] - alpha * self.level_values).square() * torch.exp(-log_var)
                - 0.5 * (math.log(2 * math.pi) + log_var))

    def exact_component_terms(self, z: torch.Tensor, log_snr: torch.Tensor | float
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`component_terms` computed entirely in log space (log-sum-exp over levels on a
        ``(B, K, D, L)`` tensor, chunked); slower, exact for any ``z``."""
        flat, lam = self._prepare(z, log_snr)
        joints, means = [], []
        for rows in range(0, flat.shape[0], self.chunk_size):
            zc, lc = flat[rows:rows + self.chunk_size], lam[rows:rows + self.chunk_size]
            terms = self.log_level_probs + self._log_normal(zc, lc)[:, None]  # (b, K, D, L)
            log_m = torch.logsumexp(terms, dim=-1)  # (b, K, D)
            means.append(torch.exp(terms - log_m[..., None]) @ self.level_values)
            joints.append(self.log_weights + log_m.sum(-1))
        return torch.cat(joints), torch.cat(means)

    def _class_components(self, labels: torch.Tensor, batch: int) -> torch.Tensor:
        """``(B, K)`` boolean: the components of each row's class (every component for the null
        label ``C``); one-line ``ValueError`` for labels of another shape or range."""
        labels, null = torch.as_tensor(labels).to(self.class_mask.device).long(), self.num_mixture_classes
        if labels.shape != (batch,) or (batch and (labels.min() < 0 or labels.max() > null)):
            low, high = (int(labels.min()), int(labels.max())) if labels.numel() else (0, 0)
            raise ValueError(f"labels: expected ({batch},) ints in 0..{null} ({null} = no class), "
                             f"got {tuple(labels.shape)} in [{low}, {high}]")
        return torch.cat([self.class_mask, torch.ones_like(self.class_mask[:1])])[labels]

    def _restrict(self, log_joint: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """``log_joint`` with components outside each row's class set to -inf (the null label
        ``C`` and None keep every component)."""
        if labels is None:
            return log_joint
        keep = self._class_components(labels, log_joint.shape[0]).to(log_joint.device)
        return log_joint.masked_fill(~keep, -math.inf)

    def _label_groups(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """:meth:`component_terms`'s ``groups`` for per-row ``labels``: ``(B, 1, K)``."""
        return None if labels is None else self._class_components(labels, batch)[:, None, :]

    def posterior_mean(self, z: torch.Tensor, log_snr: torch.Tensor | float,
                       labels: torch.Tensor | None = None) -> torch.Tensor:
        """``E[x | z]`` (or ``E[x | z, c]`` for ``labels``), float64, shaped like ``z``."""
        log_joint, means = self.component_terms(z, log_snr, self._label_groups(labels, len(z)))
        posterior = torch.softmax(self._restrict(log_joint, labels), dim=1)
        return (posterior[:, None, :] @ means).reshape(z.shape)

    def eps_star(self, z: torch.Tensor, log_snr: torch.Tensor | float,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
        """``eps*(z[, c]) = (z - alpha E[x | z[, c]]) / sigma`` in float64, shaped like ``z``."""
        flat, lam = self._prepare(z, log_snr)
        shape = (-1, *[1] * (z.dim() - 1))
        alpha, sigma = torch.sigmoid(lam).sqrt().view(shape), torch.sigmoid(-lam).sqrt().view(shape)
        return (flat.view(z.shape) - alpha * self.posterior_mean(z, lam, labels)) / sigma

    def forward(self, z: torch.Tensor, log_snr: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        """``eps*`` in ``z``'s dtype (at least float32); differentiable in ``z``."""
        return self.eps_star(z, log_snr, labels).to(torch.promote_types(z.dtype, torch.float32))

    def log_marginal(self, z: torch.Tensor, log_snr: torch.Tensor | float) -> torch.Tensor:
        """``log p_lambda(z)`` in nats per example ``(B,)``: the density of ``z_lambda``."""
        return torch.logsumexp(self.component_terms(z, log_snr)[0], dim=1)

    def class_log_posterior(self, z: torch.Tensor, log_snr: torch.Tensor | float) -> torch.Tensor:
        """``log p(c | z_lambda)`` ``(B, C)``, float64, exact (rows log-normalised; every
        class's terms to full precision, however small its posterior)."""
        log_joint = self.component_terms(z, log_snr, self.class_mask[None])[0]
        per_class = torch.logsumexp(log_joint[:, None, :].masked_fill(~self.class_mask, -math.inf),
                                    dim=2)
        return per_class - torch.logsumexp(log_joint, dim=1, keepdim=True)

    def class_log_prob_grad(self, z: torch.Tensor, log_snr: torch.Tensor | float,
                            labels: torch.Tensor) -> torch.Tensor:
        """``grad_z log p(c | z_lambda)`` for classes ``labels`` ``(B,)`` in closed form,
        ``(eps*(z) - eps*(z, c)) / sigma``, float64 shaped like ``z``."""
        labels = torch.as_tensor(labels, device=z.device).long()
        if labels.numel() and labels.max() >= self.num_mixture_classes:
            raise ValueError(f"labels: classes 0..{self.num_mixture_classes - 1} expected, got "
                             f"{int(labels.max())}")
        flat, lam = self._prepare(z, log_snr)
        log_joint, means = self.component_terms(z, lam, self._label_groups(labels, len(z)))
        both = torch.softmax(torch.stack([log_joint, self._restrict(log_joint, labels)]), dim=2)
        mean_all, mean_class = (p[:, None, :] @ means for p in both)
        alpha, sigma = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
        # (eps* - eps*_c) / sigma = alpha (E[x | z, c] - E[x | z]) / sigma^2
        grad = (alpha / sigma.square())[:, None] * (mean_class - mean_all).squeeze(1)
        return grad.reshape(z.shape)


class BayesDenoiser(DiffusionModel):
    """A :class:`DiffusionModel` whose ``eps`` is the exact ``eps*`` of ``mixture`` on
    ``schedule`` (see the module docstring); nothing is trained.

    ``objective`` only names the loss :meth:`losses` reports (``eps*`` minimises every
    weighting). ``conditional``: a class-conditional model (labels ``0..C-1``, ``C`` = null),
    for classifier-free guidance and the conditional targets ``E[x | z, c]``.
    """

    def __init__(self, mixture: GaussianMixtureData, schedule: nn.Module, *,
                 conditional: bool = False, objective: str = "elbo") -> None:
        super().__init__(BayesEpsNetwork(mixture, conditional), schedule, get_objective(objective),
                         mixture.num_levels, "eps")

    @property
    def mixture(self) -> GaussianMixtureData:
        return self.network.mixture

    def posterior_mean(self, z: torch.Tensor, log_snr: torch.Tensor | float,
                       labels: torch.Tensor | None = None) -> torch.Tensor:
        """``E[x | z]`` or ``E[x | z, c]`` (float64), :meth:`BayesEpsNetwork.posterior_mean`."""
        return self.network.posterior_mean(z, log_snr, labels)

    def class_log_posterior(self, z: torch.Tensor, log_snr: torch.Tensor | float) -> torch.Tensor:
        """``log p(c | z_lambda)`` ``(B, C)`` (float64)."""
        return self.network.class_log_posterior(z, log_snr)

    def class_log_prob_grad(self, z: torch.Tensor, log_snr: torch.Tensor | float,
                            labels: torch.Tensor) -> torch.Tensor:
        """``grad_z log p(c | z_lambda)`` (float64), closed form."""
        return self.network.class_log_prob_grad(z, log_snr, labels)

    def noisy_classifier(self) -> BayesNoisyClassifier:
        """The exact noise-conditional classifier of the same mixture (shares the buffers)."""
        return BayesNoisyClassifier(self.network)


class BayesNoisyClassifier(nn.Module):
    """``logits = log p(c | z_lambda)`` ``(B, C)``, exact: the call of
    :class:`vdm.training.noisy_classifier.NoisyClassifier`, so classifier guidance
    (:func:`vdm.model.guidance.classifier_log_prob_grad`, autograd through float64) works with
    it unchanged; :meth:`log_prob_grad` is the same gradient in closed form (``oracle``
    guidance)."""

    def __init__(self, source: GaussianMixtureData | BayesEpsNetwork) -> None:
        super().__init__()
        self.denoiser = source if isinstance(source, BayesEpsNetwork) else BayesEpsNetwork(source)
        self.num_classes = self.denoiser.num_mixture_classes

    def forward(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        return self.denoiser.class_log_posterior(z, log_snr)

    def log_prob_grad(self, z: torch.Tensor, log_snr: torch.Tensor | float,
                      labels: torch.Tensor) -> torch.Tensor:
        """``grad_z log p(y | z_lambda)`` for classes ``labels`` ``(B,)``, in closed form
        (:meth:`BayesEpsNetwork.class_log_prob_grad`; float64, shaped like ``z``): what
        ``oracle`` guidance (:func:`vdm.model.guidance.guided_eps_fn`) uses."""
        return self.denoiser.class_log_prob_grad(z, log_snr, labels)
