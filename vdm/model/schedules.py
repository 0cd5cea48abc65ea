"""Noise schedules: modules mapping time ``t in [0, 1]`` to ``lambda(t) = log SNR(t)``.

Notation (VDM, Kingma et al. 2021): ``z_t = alpha_t x + sigma_t eps`` with
``alpha_t^2 = sigmoid(lambda_t)`` and ``sigma_t^2 = sigmoid(-lambda_t)``; ``gamma_t = -lambda_t``.
For every published schedule, ``lambda = log(alpha_bar / (1 - alpha_bar))`` where ``alpha_bar``
is the schedule's cumulative signal fraction (``alpha_bar = alpha_t^2``).

End truncation. The published ``alpha_bar`` curves of the cosine and sigmoid schedules reach 1
and 0 at the ends (``lambda = +inf / -inf``) and the DDPM curve reaches 1 at ``t = 0``. Every fixed
schedule here is therefore the published curve ``lambda_pub(u)`` restricted to the interval
``[u_lo, u_hi]`` on which ``logsnr_min <= lambda_pub <= logsnr_max``, and re-parametrised
affinely onto ``t in [0, 1]``:

    lambda(t) = lambda_pub(u_lo + (u_hi - u_lo) t)

``u_lo`` / ``u_hi`` are found by bisection once at construction (``u_lo = 0`` when the published
curve already starts below ``logsnr_max``, likewise ``u_hi = 1``). This keeps the published shape,
is finite and strictly decreasing on the closed interval, and its end points
``lambda(0) <= logsnr_max`` and ``lambda(1) >= logsnr_min`` are the values that decide the ELBO
(the continuous-time diffusion loss depends on the schedule only through its end points).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_LOGSNR_MIN = -10.0
DEFAULT_LOGSNR_MAX = 7.0


def log_snr_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """``lambda = log(alpha_bar / (1 - alpha_bar))`` (nats of SNR)."""
    return torch.log(alpha_bar) - torch.log1p(-alpha_bar)


def alpha_sigma(log_snr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha, sigma)`` with ``alpha^2 = sigmoid(lambda)``, ``sigma^2 = sigmoid(-lambda)``."""
    return torch.sigmoid(log_snr).sqrt(), torch.sigmoid(-log_snr).sqrt()


def _bisect(fn: Callable[[float], float], target: float, decreasing: bool = True) -> float:
    """Solve ``fn(u) = target`` on ``[0, 1]`` for a monotone ``fn`` (float64 bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        above = fn(mid) > target
        if above == decreasing:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


class FixedSchedule(nn.Module):
    """A published ``lambda_pub(u)``, truncated to ``[logsnr_min, logsnr_max]`` (see module doc)."""

    name = "fixed"

    def __init__(self, logsnr_min: float = DEFAULT_LOGSNR_MIN,
                 logsnr_max: float = DEFAULT_LOGSNR_MAX) -> None:
        super().__init__()
        if not logsnr_min < logsnr_max:
            raise ValueError(f"schedule: logsnr_min ({logsnr_min}) must be < logsnr_max ({logsnr_max})")
        self.logsnr_min, self.logsnr_max = float(logsnr_min), float(logsnr_max)

        def pub(u: float) -> float:
            return float(self.published_log_snr(torch.tensor(u, dtype=torch.float64)))

        u_lo = 0.0 if pub(0.0) <= logsnr_max else _bisect(pub, logsnr_max)
        u_hi = 1.0 if pub(1.0) >= logsnr_min else _bisect(pub, logsnr_min)
        if not u_lo < u_hi:
            raise ValueError(f"schedule {self.name}: range [{logsnr_min}, {logsnr_max}] "
                             "does not intersect the published curve")
        self.u_lo, self.u_hi = u_lo, u_hi

    def published_log_snr(self, u: torch.Tensor) -> torch.Tensor:
        """The untruncated published curve ``lambda_pub(u)``, ``u in [0, 1]``."""
        raise NotImplementedError

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``lambda(t)``, same shape and dtype as ``t``."""
        u = self.u_lo + (self.u_hi - self.u_lo) * t.double()
        return self.published_log_snr(u).to(t.dtype)

    def extra_repr(self) -> str:
        return f"u in [{self.u_lo:.6f}, {self.u_hi:.6f}]"


class LinearSchedule(FixedSchedule):
    """DDPM linear-beta schedule (Ho et al. 2020) in its continuous VP-SDE form (Song et al. 2021).

    ``beta(u) = beta_min + u (beta_max - beta_min)`` with ``beta_min = 0.1``, ``beta_max = 20``
    (the ``T = 1000`` schedule ``beta_i: 1e-4 -> 0.02`` scaled by ``T``), so
    ``alpha_bar(u) = exp(-(beta_min u + (beta_max - beta_min) u^2 / 2))`` and
    ``lambda_pub(u) = -log(expm1(beta_min u + (beta_max - beta_min) u^2 / 2))``.
    """

    name = "linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, **kw: float) -> None:
        self.beta_min, self.beta_max = beta_min, beta_max
        super().__init__(**kw)

    def published_log_snr(self, u: torch.Tensor) -> torch.Tensor:
        integral = self.beta_min * u + 0.5 * (self.beta_max - self.beta_min) * u**2
        return -torch.log(torch.expm1(integral))


class CosineSchedule(FixedSchedule):
    """Cosine schedule (Nichol & Dhariwal 2021), ``s = 0.008``.

    ``alpha_bar(u) = cos^2(pi/2 (u+s)/(1+s)) / cos^2(pi/2 s/(1+s))``.
    """

    name = "cosine"

    def __init__(self, s: float = 0.008, **kw: float) -> None:
        self.s = s
        super().__init__(**kw)

    def published_log_snr(self, u: torch.Tensor) -> torch.Tensor:
        f = torch.cos(0.5 * math.pi * (u + self.s) / (1 + self.s)) ** 2
        f0 = math.cos(0.5 * math.pi * self.s / (1 + self.s)) ** 2
        return log_snr_from_alpha_bar((f / f0).clamp(0.0, 1.0))


class SigmoidSchedule(FixedSchedule):
    """Sigmoid schedule (Jabri et al. 2022; Chen 2023), ``start=-3``, ``end=3``, ``tau=1``.

    ``alpha_bar(u) = (sig(end/tau) - sig((u (end-start) + start)/tau))
    / (sig(end/tau) - sig(start/tau))``.
    """

    name = "sigmoid"

    def __init__(self, start: float = -3.0, end: float = 3.0, tau: float = 1.0, **kw: float) -> None:
        self.start, self.end, self.tau = start, end, tau
        super().__init__(**kw)

    def published_log_snr(self, u: torch.Tensor) -> torch.Tensor:
        v_start = torch.sigmoid(torch.tensor(self.start / self.tau, dtype=u.dtype))
        v_end = torch.sigmoid(torch.tensor(self.end / self.tau, dtype=u.dtype))
        v = torch.sigmoid((u * (self.end - self.start) + self.start) / self.tau)
        return log_snr_from_alpha_bar(((v_end - v) / (v_end - v_start)).clamp(0.0, 1.0))


class FlowSchedule(FixedSchedule):
    """The optimal-transport path of flow matching, ``z = (1 - u) x + u eps`` (Lipman et al. 2023),
    as a variance-preserving schedule: its signal-to-noise ratio is ``((1 - u) / u)^2``, so
    ``lambda_pub(u) = 2 log((1 - u) / u)`` (Kingma & Gao 2023). The VP ``z`` is the flow's ``z``
    divided by ``sqrt((1 - u)^2 + u^2)``; a network that sees ``lambda`` can undo that scale."""

    name = "flow"

    def published_log_snr(self, u: torch.Tensor) -> torch.Tensor:
        return 2.0 * (torch.log1p(-u) - torch.log(u))


class _PositiveLinear(nn.Linear):
    """Dense layer with ``|W|`` as its kernel (VDM's monotone network building block)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.abs(), self.bias)


class LearnedSchedule(nn.Module):
    """VDM learned schedule (Kingma et al. 2021, App. H): a monotone network for ``gamma = -lambda``.

    ``gamma_tilde(t) = l1(t) + l3(sigmoid(l2(l1(t))))`` with positive kernels (monotone
    increasing), normalised so that ``gamma(t) = gamma_0 + (gamma_1 - gamma_0)
    (gamma_tilde(t) - gamma_tilde(0)) / (gamma_tilde(1) - gamma_tilde(0))``. The end points
    ``gamma_0 = -logsnr_max`` and ``gamma_1 = -logsnr_min`` are learnable scalars (trained
    through the ELBO); the shape parameters are trained to minimise the variance of the
    diffusion-loss estimate (VDM Sec. 3.5, see :mod:`vdm.model.diffusion`). At initialisation the
    schedule is linear in ``t`` between ``gamma_min = -13.3`` and ``gamma_max = 5.0`` up to
    ~1e-4: the sigmoid branch starts with output weights of 1e-8 (not 0, where ``|W|`` has no
    gradient). Monotonicity is strict because the skip
    branch ``l1`` has a positive weight.
    """

    name = "learned"

    def __init__(self, logsnr_min: float = -5.0, logsnr_max: float = 13.3,
                 hidden: int = 1024) -> None:
        super().__init__()
        if not logsnr_min < logsnr_max:
            raise ValueError(f"schedule: logsnr_min ({logsnr_min}) must be < logsnr_max ({logsnr_max})")
        self.gamma_0 = nn.Parameter(torch.tensor(-float(logsnr_max)))
        self.gamma_1 = nn.Parameter(torch.tensor(-float(logsnr_min)))
        self.l1 = _PositiveLinear(1, 1)
        self.l2 = _PositiveLinear(1, hidden)
        self.l3 = _PositiveLinear(hidden, 1)
        with torch.no_grad():
            self.l1.weight.fill_(1.0)
            self.l1.bias.zero_()
            self.l3.weight.fill_(1e-8)  # |W| has zero gradient at exactly 0
            self.l3.bias.zero_()

    def endpoint_parameters(self) -> list[nn.Parameter]:
        return [self.gamma_0, self.gamma_1]

    def shape_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("gamma_")]

    def _gamma_tilde(self, t: torch.Tensor) -> torch.Tensor:
        h = self.l1(t.unsqueeze(-1))
        return (h + self.l3(torch.sigmoid(self.l2(h)))).squeeze(-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``lambda(t) = -gamma(t)``, same shape and dtype as ``t``."""
        # t = 0, 1 made on the device (torch.tensor([0., 1.], device=...) would copy from the
        # host and wait for the device: a sync in every training step)
        ends = self._gamma_tilde(torch.arange(2, dtype=t.dtype, device=t.device))
        shape = (self._gamma_tilde(t) - ends[0]) / (ends[1] - ends[0])
        gamma = self.gamma_0 + (self.gamma_1 - self.gamma_0) * shape
        return -gamma


SCHEDULES: dict[str, type[nn.Module]] = {
    "linear": LinearSchedule,
    "cosine": CosineSchedule,
    "sigmoid": SigmoidSchedule,
    "flow": FlowSchedule,
    "learned": LearnedSchedule,
}


def get_schedule(name: str, **kw: float) -> nn.Module:
    """Build a schedule by name (``linear``, ``cosine``, ``sigmoid``, ``flow``, ``learned``).

    Keyword arguments go to the schedule, e.g. ``logsnr_min``/``logsnr_max`` (truncation of a
    fixed schedule; initial end points of the learned one) or the published shape parameters.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](**kw)


def log_snr_and_slope(schedule: nn.Module, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lambda(t), -dlambda/dt)`` for a batch ``t`` of shape ``(B,)``.

    The slope comes from autograd with ``create_graph=True`` so that losses using it stay
    differentiable w.r.t. learned schedule parameters; works under ``torch.no_grad()``.
    """
    differentiable = torch.is_grad_enabled()
    with torch.enable_grad():
        t_ = t.detach().requires_grad_(True)
        log_snr = schedule(t_)
        (slope,) = torch.autograd.grad(log_snr.sum(), t_, create_graph=differentiable)
    if not differentiable:
        log_snr, slope = log_snr.detach(), slope.detach()
    return log_snr, -slope


def schedule_endpoints(schedule: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lambda(0), lambda(1))``: the maximum and minimum log-SNR of the schedule."""
    param = next(iter(schedule.parameters()), None)
    device, dtype = (param.device, param.dtype) if param is not None else ("cpu", torch.float32)
    ends = schedule(torch.tensor([0.0, 1.0], device=device, dtype=dtype))
    return ends[0], ends[1]
