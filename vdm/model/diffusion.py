"""The diffusion model: a network, its parameterization, a schedule and an objective, and its
training loss.

``z_t = alpha_t x + sigma_t eps`` with ``alpha_t^2 = sigmoid(lambda_t)``; the network outputs
``f(z_t, lambda_t)``, read as eps, x0, v or the score by the model's parameterization and turned
into ``eps_hat`` exactly (:mod:`vdm.model.parameterizations`). The training loss of objective ``w``
is, per example and averaged over the ``D`` data dimensions,
``c(lambda_t, -dlambda/dt) ||eps_hat - eps||^2 / D`` with ``t`` drawn by the antithetic sampler
(see :mod:`vdm.model.objectives`).

Learned schedule (VDM Sec. 3.5). Three gradients are taken from one forward pass:
* network parameters: gradient of the objective's loss;
* schedule end points ``gamma_0, gamma_1``: gradient of the ELBO (reconstruction + prior +
  continuous-time diffusion term, nats per dimension), whatever the objective; the network is
  not trained by it unless the objective is ``elbo``;
* schedule shape: gradient of ``E[L_diff^2]``, the mean square of the per-example Monte-Carlo
  estimate ``L_diff = 1/2 (-dlambda/dt) ||eps_hat - eps||^2 / D`` of the ELBO's diffusion term,
  whatever the objective. ``E[L_diff] = 1/2 int E||eps_hat - eps||^2 dlambda / D`` does not
  depend on the schedule's shape between fixed end points, so this gradient equals that of the
  estimator's variance ``E[L_diff^2] - E[L_diff]^2``: VDM's variance-minimising schedule. (The
  objective's own loss would not do: for ``eps``, ``x0``, ``v``, ``min_snr`` it carries no
  ``-dlambda/dt`` factor, its expectation depends on the shape, and lowering its square drifts
  the schedule toward noise levels where the loss is small instead.)

So the learned schedule means the same thing (VDM's) for every objective; the objective's loss
trains the network only. All three gradients come from one forward pass: the epsilon-error is
shared.

Class-conditional models (``num_classes`` set, Ho & Salimans 2022): ``eps_hat(z, lambda, y)``
with ``y`` a class or the null token ``num_classes``; training with label dropout replaces each
label by the null token with probability ``p_uncond`` (:func:`drop_labels`), so the same network
also learns the unconditional ``eps_hat(z, lambda, null)`` that classifier-free guidance needs.
The loss is the same weighting of the eps-error, now an upper bound on ``-log p(x | y)`` for the
ELBO weighting. Unconditional models draw exactly the random numbers they drew before.
"""

from __future__ import annotations

import torch
from torch import nn

from vdm.model.likelihood import prior_kl_nats, reconstruction_nats
from vdm.model.network import UNet
from vdm.model.objectives import Objective, get_objective, sample_times
from vdm.model.parameterizations import check_parameterization, eps_from_output
from vdm.model.schedules import LearnedSchedule, alpha_sigma, get_schedule, log_snr_and_slope


class DiffusionModel(nn.Module):
    """Holds the network and the schedule (both trainable); objective and parameterization are
    static."""

    def __init__(self, network: nn.Module, schedule: nn.Module, objective: Objective,
                 num_levels: int, parameterization: str = "eps") -> None:
        super().__init__()
        self.network = network
        self.schedule = schedule
        self.objective = objective
        self.num_levels = num_levels  # K, for the learned schedule's reconstruction term
        self.parameterization = check_parameterization(parameterization)

    @property
    def learned_schedule(self) -> bool:
        return isinstance(self.schedule, LearnedSchedule)

    @property
    def num_classes(self) -> int | None:
        """Number of classes ``K`` of a class-conditional network (label ``K`` = the null
        token); None for an unconditional one."""
        return getattr(self.network, "num_classes", None)

    def null_labels(self, batch: int, device: torch.device | str) -> torch.Tensor:
        """``(batch,)`` int64 labels all equal to the null token (conditional models only)."""
        if self.num_classes is None:
            raise ValueError("an unconditional model has no null label")
        return torch.full((batch,), self.num_classes, dtype=torch.int64, device=device)

    def eps_hat(self, output: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor,
                sigma: torch.Tensor) -> torch.Tensor:
        """``eps_hat`` from the network ``output`` (bf16 outputs are cast up to float32 first)."""
        if self.parameterization == "eps":
            return output
        output = output.to(torch.promote_types(output.dtype, torch.float32))
        return eps_from_output(output, z, alpha, sigma, self.parameterization)

    def _network(self, z: torch.Tensor, log_snr: torch.Tensor,
                 labels: torch.Tensor | None) -> torch.Tensor:
        """The network output; ``labels`` are passed only when given, so networks without a
        ``labels`` argument (analytic denoisers in tests) keep working unconditionally."""
        if labels is None:
            return self.network(z, log_snr)
        if self.num_classes is None:
            raise ValueError("labels given to an unconditional model (train it with "
                             "conditioning.enabled: true to condition on classes)")
        return self.network(z, log_snr, labels)

    def eps(self, z: torch.Tensor, log_snr: torch.Tensor,
            labels: torch.Tensor | None = None) -> torch.Tensor:
        """``eps_hat(z, lambda[, y])`` whatever the parameterization; ``log_snr`` has shape
        ``(B,)``; ``labels`` int64 ``(B,)`` in ``0..num_classes`` (``num_classes`` = null) for a
        conditional model, None = the null token (unconditional ``eps_hat``)."""
        alpha, sigma = (a.view(-1, *[1] * (z.dim() - 1)) for a in alpha_sigma(log_snr))
        return self.eps_hat(self._network(z, log_snr, labels), z, alpha, sigma)

    def losses(self, x: torch.Tensor, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None, label_dropout: float = 0.0
               ) -> dict[str, torch.Tensor]:
        """Per-example quantities for a batch ``x`` in ``[-1, 1]``, all per data dimension.

        ``labels`` (conditional models): the classes of ``x``, int64 ``(B,)``; each is replaced by
        the null token with probability ``label_dropout`` (:func:`drop_labels`, drawn from
        ``generator`` after the time steps and the noise). Nothing extra is drawn when ``labels``
        is None or ``label_dropout`` is 0, so unconditional training is unchanged.

        ``loss``: the objective's loss ``c * ||eps_hat - eps||^2 / D``, shape ``(B,)``, with
        gradients to the network only. For a learned schedule also ``sq_error`` (``(B,)``, graph to
        the network and to the leaf ``log_snr_leaf`` fed to it), ``log_snr`` and ``neg_slope``
        (graph to the schedule) and ``elbo_ends`` (reconstruction + prior, nats/dim, ``(B,)``).
        """
        batch, dims = x.shape[0], x[0].numel()
        t = sample_times(batch, generator=generator, device=x.device).to(x.dtype)
        log_snr, neg_slope = log_snr_and_slope(self.schedule, t)
        log_snr_leaf = log_snr.detach().requires_grad_(self.learned_schedule)
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        alpha, sigma = (a.view(-1, 1, 1, 1) for a in alpha_sigma(log_snr_leaf))
        z = alpha * x + sigma * eps
        if labels is not None and label_dropout > 0:
            if self.num_classes is None:
                raise ValueError("labels given to an unconditional model")
            labels = drop_labels(labels, label_dropout, self.num_classes, generator)
        eps_hat = self.eps_hat(self._network(z, log_snr_leaf, labels), z, alpha, sigma)
        eps_hat = eps_hat.to(torch.promote_types(eps_hat.dtype, torch.float32))  # bf16 -> fp32
        sq_error = (eps_hat - eps).square().flatten(1).sum(1) / dims
        multiplier = self.objective.multiplier(log_snr.detach(), neg_slope.detach())
        out = {"loss": multiplier * sq_error, "multiplier": multiplier}
        if self.learned_schedule:
            log_snr_ends = self.schedule(torch.arange(2, device=x.device, dtype=x.dtype))  # t = 0, 1
            out.update(sq_error=sq_error, log_snr=log_snr, neg_slope=neg_slope,
                       log_snr_leaf=log_snr_leaf,
                       elbo_ends=(reconstruction_nats(x, log_snr_ends[0], self.num_levels, generator)
                                  + prior_kl_nats(x, log_snr_ends[1])) / dims)
        return out

    def backward(self, losses: dict[str, torch.Tensor]) -> None:
        """Accumulate the gradients described in the module docstring.

        Fixed schedule: ``mean(loss)`` w.r.t. the network. Learned schedule: one backward pass
        through the network gives both the network gradient and, per example, ``g_i =
        d sq_error_i / d lambda_i``; the schedule's losses then use the exact first-order
        stand-in ``e_i + g_i (lambda_i - stop_grad(lambda_i))`` for ``sq_error_i``, which has the
        same value and the same gradient w.r.t. the schedule, so they only backpropagate through
        the small schedule network.
        """
        net_params = [p for p in self.network.parameters() if p.requires_grad]
        if not self.learned_schedule:
            losses["loss"].mean().backward(inputs=net_params)
            return
        sq_error, weights = losses["sq_error"], losses["multiplier"] / losses["loss"].shape[0]
        *net_grads, weighted_slope = torch.autograd.grad(
            sq_error, [*net_params, losses["log_snr_leaf"]], grad_outputs=weights)
        for param, grad in zip(net_params, net_grads, strict=True):
            param.grad = grad if param.grad is None else param.grad + grad
        d_error = torch.where(weights > 0, weighted_slope / weights, torch.zeros_like(weights))
        log_snr, neg_slope = losses["log_snr"], losses["neg_slope"]
        error = sq_error.detach() + d_error.detach() * (log_snr - log_snr.detach())
        elbo_diffusion = 0.5 * neg_slope * error  # per example, nats/dim; (B,)
        elbo = (losses["elbo_ends"] + elbo_diffusion).mean()
        elbo.backward(inputs=self.schedule.endpoint_parameters(), retain_graph=True)
        elbo_diffusion.square().mean().backward(inputs=self.schedule.shape_parameters())


def drop_labels(labels: torch.Tensor, probability: float, null_label: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Label dropout: each label independently becomes ``null_label`` with ``probability``.

    Draws ``B`` uniforms ``u`` from ``generator`` (on ``labels.device``) and replaces where
    ``u < probability``; returns a new tensor. ``probability`` must be in ``[0, 1]``.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"label dropout probability must be in [0, 1], got {probability!r}")
    u = torch.rand(labels.shape, generator=generator, device=labels.device)
    return torch.where(u < probability, torch.full_like(labels, null_label), labels)


def build_model(image_shape: tuple[int, int, int], num_levels: int, objective: str,
                schedule: str, model_kwargs: dict, logsnr_min: float, logsnr_max: float,
                objective_kwargs: dict | None = None, parameterization: str = "eps",
                num_classes: int | None = None) -> DiffusionModel:
    """A :class:`DiffusionModel` from config values; ``num_classes`` makes it class-conditional
    (None: unconditional, exactly as without the argument)."""
    network = UNet(image_shape, **model_kwargs, num_classes=num_classes)
    sched = get_schedule(schedule, logsnr_min=logsnr_min, logsnr_max=logsnr_max)
    return DiffusionModel(network, sched, get_objective(objective, **(objective_kwargs or {})),
                          num_levels, parameterization)
