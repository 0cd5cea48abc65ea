"""Guided sampling: classifier-free, classifier and oracle guidance, as a guided ``eps_fn``.

Every sampler of :mod:`vdm.model.sampler` only calls ``eps_fn(z, lambda) -> eps_hat``; guidance replaces
that function, so it works unchanged in ancestral, DDIM, Heun and DPM-Solver++(2M) sampling.
``w >= 0`` is the guidance weight; ``y`` the requested class, ``null`` the learned no-class token.

* ``cfg``, classifier-free guidance (Ho & Salimans 2022, eq. 6, *their* ``w``):
  ``eps~ = (1 + w) eps_hat(z, y) - w eps_hat(z, null)``. ``w = 0`` is the plain conditional
  model (one network evaluation, the same numbers bit for bit); ``w > 0`` costs two network
  evaluations per call (run as one batch of ``2B``). In the ``1 + w`` convention of
  Dhariwal & Nichol / most code bases (``eps_u + s (eps_c - eps_u)``) this is ``s = 1 + w``.
  Needs a class-conditional model.
* ``classifier``, classifier guidance (Dhariwal & Nichol 2021, Algorithm 2 / eq. 14 for eps):
  ``eps~ = eps_hat(z, c) - w sigma grad_z log p_phi(y | z, lambda)`` with a noise-conditional
  classifier ``p_phi`` (:mod:`vdm.training.noisy_classifier`). Sign convention: the guided score is
  ``grad log p(z) + w grad log p(y | z)`` and ``eps = -sigma * score``, hence the minus. ``c`` is
  ``y`` for a conditional model (D&N's "conditional + guidance", so that ``w = 0`` is the same
  conditional sampler as ``cfg`` at ``w = 0``) and nothing for an unconditional model. The
  classifier runs one forward and one backward pass per call; ``w = 0`` skips it.
* ``oracle``, classifier guidance with the *exact* noisy-class posterior of a dataset whose
  distribution is known (``digits-gmm``): the same formula, ``eps~ = eps_hat(z, c) - w sigma
  grad_z log p(y | z_lambda)``, with ``p(y | z_lambda) = sum_{k in y} pi_k p(z | k) / sum_k pi_k
  p(z | k)`` of the mixture, its gradient in closed form, ``alpha (E[x | z, y] - E[x | z]) /
  sigma^2`` (:meth:`vdm.model.bayes_denoiser.BayesEpsNetwork.class_log_prob_grad`, float64).
  ``classifier-w`` against ``oracle-w`` at the same ``w`` separates the trained classifier's
  error from what classifier guidance itself does. The oracle is not a network (it adds no
  NFE) and is exact at every ``lambda``, so it needs no range check
  (:func:`oracle_range_check` records that).

Samples are drawn class-balanced (:func:`sample_labels`): image ``i`` gets class ``i mod K``.

The noise-conditional classifier is trained on one log-SNR range ``[logsnr_min, logsnr_max]``
(its ``meta``), but a learned schedule moves its end points during training, so a guided
model may sample at ``lambda`` the classifier never saw: :func:`classifier_range_check` compares
the two ranges and :func:`classifier_range_warning` says so when the model's leaves the
classifier's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vdm.core.progress import ProgressCallback
from vdm.model.diffusion import DiffusionModel
from vdm.model.likelihood import EpsFn
from vdm.model.network import check_labels
from vdm.model.sampler import batch_progress, sample_batch
from vdm.model.schedules import alpha_sigma, schedule_endpoints
from vdm.model.setting_names import Guidance, check_spacing, network_evaluations


def _is_exact_classifier(classifier: nn.Module | None) -> bool:
    """Whether ``classifier`` is the exact :class:`~vdm.model.bayes_denoiser.BayesNoisyClassifier`
    (imported here only when asked: it needs scipy, which the GPU machines lack, through
    :mod:`vdm.core.digits_gmm`; no other guidance kind needs it)."""
    if classifier is None:
        return False
    from vdm.model.bayes_denoiser import BayesNoisyClassifier  # lazy: scipy (see above)

    return isinstance(classifier, BayesNoisyClassifier)


def check_guidance(guidance: Guidance, model: DiffusionModel,
                   classifier: nn.Module | None = None) -> None:
    """One-line ``ValueError`` when ``guidance`` cannot be applied to ``model``: ``cfg`` on an
    unconditional model, ``classifier`` guidance without a classifier, ``oracle`` guidance
    without the exact :class:`~vdm.model.bayes_denoiser.BayesNoisyClassifier` (made by
    :func:`vdm.evaluation.known_density.oracle_classifier` for a dataset with a known density),
    or either with a classifier of another number of classes than a conditional model."""
    if guidance.kind == "cfg" and model.num_classes is None:
        raise ValueError(f"guidance {guidance.name!r}: classifier-free guidance needs a "
                         "class-conditional model (conditioning.enabled: true); this one is "
                         "unconditional")
    if guidance.kind == "classifier" and classifier is None:
        raise ValueError(f"guidance {guidance.name!r}: classifier guidance needs a "
                         "noise-conditional classifier (vdm noisy-classifier)")
    if guidance.kind == "oracle" and not _is_exact_classifier(classifier):
        raise ValueError(f"guidance {guidance.name!r}: oracle guidance needs the exact noisy-class "
                         "posterior of the dataset's known distribution (BayesNoisyClassifier, "
                         f"from known_density.oracle_classifier), got {type(classifier).__name__}")
    if guidance.kind in ("classifier", "oracle"):
        classes = getattr(classifier, "num_classes", None)
        if model.num_classes is not None and classes is not None and classes != model.num_classes:
            raise ValueError(f"guidance {guidance.name!r}: the classifier has {classes} classes, "
                             f"the model {model.num_classes}")


#: what :func:`classifier_range_check` records (in the samples' meta and their ``fid.json``)
CLASSIFIER_RANGE_KEYS = ("classifier_lambda_range", "model_lambda_range",
                         "model_range_outside_classifier")
#: log-SNR slack (nats) before a model's end point counts as outside the classifier's range:
#: far below anything that matters, above float32 round-off of a schedule's end points
LAMBDA_RANGE_SLACK = 1e-3


def classifier_range_check(model: DiffusionModel, classifier: nn.Module) -> dict[str, Any]:
    """Whether the log-SNR range a model is sampled over lies inside its classifier's.

    Every sampler of :mod:`vdm.model.sampler` evaluates the guided ``eps_fn`` on a log-SNR grid
    from ``lambda(1)`` to ``lambda(0)`` (every step spacing, :mod:`vdm.model.step_grids`), i.e.
    on ``[lambda(1), lambda(0)]``: the model's range,
    from its schedule's end points (:func:`vdm.model.schedules.schedule_endpoints`; a learned
    schedule's move in training). The classifier's range is the ``[logsnr_min, logsnr_max]``
    of its ``meta`` (attached by :func:`vdm.training.noisy_classifier.load_noisy_classifier`).
    Returns ``classifier_lambda_range`` and ``model_lambda_range`` (``[min, max]``, nats of
    log-SNR) and ``model_range_outside_classifier`` (True when either model end point is more
    than :data:`LAMBDA_RANGE_SLACK` beyond the classifier's). One-line ``ValueError`` when the
    classifier records no range.
    """
    meta = getattr(classifier, "meta", None) or {}
    missing = [key for key in ("logsnr_min", "logsnr_max") if key not in meta]
    if missing:
        raise ValueError(f"the noisy classifier's meta lacks {', '.join(missing)}: its training "
                         "log-SNR range is unknown (retrain it with `python -m vdm "
                         "noisy-classifier`)")
    low, high = float(meta["logsnr_min"]), float(meta["logsnr_max"])
    model_high, model_low = (float(v.detach()) for v in schedule_endpoints(model.schedule))
    outside = model_low < low - LAMBDA_RANGE_SLACK or model_high > high + LAMBDA_RANGE_SLACK
    return {"classifier_lambda_range": [low, high], "model_lambda_range": [model_low, model_high],
            "model_range_outside_classifier": bool(outside)}


def oracle_range_check(model: DiffusionModel) -> dict[str, Any]:
    """:func:`classifier_range_check`'s record for ``oracle`` guidance: the exact posterior
    ``p(c | z_lambda)`` is right at every ``lambda``, so no model range lies outside it.
    ``classifier_lambda_range`` None (no training range: every ``lambda``),
    ``model_lambda_range`` the model's ``[lambda(1), lambda(0)]`` (nats of log-SNR) and
    ``model_range_outside_classifier`` False."""
    model_high, model_low = (float(v.detach()) for v in schedule_endpoints(model.schedule))
    return {"classifier_lambda_range": None, "model_lambda_range": [model_low, model_high],
            "model_range_outside_classifier": False}


def classifier_range_warning(check: dict[str, Any]) -> str | None:
    """One line for the job log when a :func:`classifier_range_check` found the model's range
    outside the classifier's; None otherwise (also for an empty ``check``: no classifier)."""
    if not check.get("model_range_outside_classifier"):
        return None
    (low, high), (model_low, model_high) = (check["classifier_lambda_range"],
                                            check["model_lambda_range"])
    return (f"the model samples log-SNR [{model_low:.4g}, {model_high:.4g}] (its schedule's end "
            f"points), outside the noisy classifier's training range [{low:g}, {high:g}]: "
            "classifier guidance there extrapolates the classifier")


def classifier_log_prob_grad(classifier: nn.Module, z: torch.Tensor, log_snr: torch.Tensor,
                             labels: torch.Tensor) -> torch.Tensor:
    """``grad_z log p(y | z, lambda)`` per example, shaped like ``z``.

    ``classifier(z, log_snr) -> logits (B, K)``; ``log p`` is their log-softmax at ``labels``.
    Examples are independent (no batch statistics), so the gradient of the batch sum is each
    example's own gradient. Runs with gradients enabled even inside ``torch.no_grad``; the
    classifier's parameters get no gradient.
    """
    with torch.enable_grad():
        z_in = z.detach().requires_grad_(True)
        logits = classifier(z_in, log_snr.detach())
        log_probs = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), 1)
        selected = log_probs.gather(1, labels.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(selected, z_in)
    return grad


def guided_eps_fn(model: DiffusionModel, labels: torch.Tensor | None, guidance: Guidance,
                  classifier: nn.Module | None = None) -> EpsFn:
    """``eps_fn(z, lambda) -> eps~`` for one batch of ``labels`` (int64 ``(B,)`` classes
    ``0..K-1`` on the model's device; None only for an unconditional model without guidance).

    See the module docstring for the formulas. ``none``: ``eps_hat(z, y)`` (``eps_hat(z)`` for an
    unconditional model); ``cfg``/``classifier``/``oracle`` with ``w = 0`` are that same
    function (bit for bit). ``classifier``: the noisy classifier (``classifier`` guidance) or the
    exact :class:`~vdm.model.bayes_denoiser.BayesNoisyClassifier` (``oracle`` guidance, whose
    gradient is taken in closed form, float64, cast to ``eps``'s dtype after scaling).
    """
    check_guidance(guidance, model, classifier)
    if labels is None:
        if guidance.kind != "none" or model.num_classes is not None:
            raise ValueError(f"guidance {guidance.name!r}: labels are required (class-balanced "
                             "ones from sample_labels)")
        return model.eps
    num_classes = model.num_classes or getattr(classifier, "num_classes", None)
    if num_classes is None:
        raise ValueError("labels given to an unconditional model without classifier guidance")
    check_labels(labels, num_classes)
    model_labels = labels if model.num_classes is not None else None
    w = float(guidance.weight)

    def conditional(z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        return model.eps(z, log_snr, model_labels)

    if guidance.kind == "none" or w == 0:
        return conditional
    if guidance.kind == "cfg":
        def cfg(z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
            both = model.eps(torch.cat([z, z]), torch.cat([log_snr, log_snr]),
                             torch.cat([labels, model.null_labels(len(labels), labels.device)]))
            eps_c, eps_u = both.chunk(2)
            return (1 + w) * eps_c - w * eps_u

        return cfg

    if guidance.kind == "oracle":
        def oracle_guided(z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
            eps = conditional(z, log_snr)
            grad = classifier.log_prob_grad(z, log_snr, labels)  # float64, shaped like z
            sigma = torch.sigmoid(-log_snr.to(torch.float64)).sqrt().view(-1, *[1] * (z.dim() - 1))
            return eps - (w * sigma * grad).to(eps.dtype)

        return oracle_guided

    def classifier_guided(z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        eps = conditional(z, log_snr)
        grad = classifier_log_prob_grad(classifier, z, log_snr, labels)
        sigma = alpha_sigma(log_snr)[1].view(-1, *[1] * (z.dim() - 1))
        return eps - (w * sigma * grad).to(eps.dtype)

    return classifier_guided


def sample_labels(num_samples: int, num_classes: int) -> torch.Tensor:
    """Class-balanced labels ``i mod K``, int64 ``(N,)``: every class gets ``N // K`` or
    ``N // K + 1`` images, exactly ``N / K`` when ``K`` divides ``N``."""
    if num_classes < 1 or num_samples < 0:
        raise ValueError(f"need num_classes >= 1 and num_samples >= 0, got {num_classes}, "
                         f"{num_samples}")
    return torch.arange(num_samples, dtype=torch.int64) % num_classes


def sample_guided(model: DiffusionModel, guidance: Guidance, *, num_samples: int,
                  num_classes: int | None, image_shape: tuple[int, int, int], num_levels: int,
                  steps: int = 100, method: str = "ancestral", batch_size: int = 500,
                  seed: int = 0, device: torch.device | str = "cpu", clip: bool = True,
                  classifier: nn.Module | None = None, unconditional: bool = False,
                  progress: ProgressCallback | None = None, spacing: str = "time"
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``num_samples`` guided images, uint8 ``(N, C, H, W)`` pixels, and their labels (CPU int64
    ``(N,)``, class-balanced by :func:`sample_labels`; None for unconditional sampling).

    Same random numbers as :func:`vdm.model.sampler.sample` (one ``torch.Generator(device)`` seeded
    with ``seed``, batches of ``batch_size`` drawn in order), so an unconditional model with
    guidance ``none`` gives exactly ``sample(model.eps, ...)``. ``num_classes``: the dataset's
    (must equal the model's for a conditional model; may be None for an unconditional model
    without guidance). ``unconditional``: sample a conditional model's unconditional mode (null
    token; guidance must be ``none``). ``classifier``: the noise-conditional classifier for
    ``classifier`` guidance, or the exact :class:`~vdm.model.bayes_denoiser.BayesNoisyClassifier`
    for ``oracle`` guidance, on ``device``. ``progress`` (optional): told the calls of the
    guided ``eps_fn`` done of all batches' (:func:`vdm.model.sampler.batch_progress`).
    ``spacing``: the step spacing (:mod:`vdm.model.step_grids`).
    """
    check_guidance(guidance, model, classifier)
    network_evaluations(method, steps)  # checks the sampler's name before any work
    check_spacing(spacing)
    use_labels = not unconditional and (model.num_classes is not None or guidance.kind != "none")
    if unconditional and (guidance.kind != "none" or model.num_classes is None):
        raise ValueError("unconditional=True samples a conditional model with its null token "
                         f"and no guidance; got guidance {guidance.name!r} on a "
                         f"{'conditional' if model.num_classes else 'unconditional'} model")
    if use_labels:
        if num_classes is None:
            raise ValueError(f"guidance {guidance.name!r}: num_classes is required")
        if model.num_classes is not None and num_classes != model.num_classes:
            raise ValueError(f"num_classes: {num_classes} given, the model has "
                             f"{model.num_classes} classes")
    all_labels = sample_labels(num_samples, num_classes) if use_labels else None
    generator = torch.Generator(device).manual_seed(seed)
    batches = []
    for index, start in enumerate(range(0, num_samples, batch_size)):
        n = min(batch_size, num_samples - start)
        labels = None if all_labels is None else all_labels[start:start + n].to(device)
        eps_fn = model.eps if unconditional else guided_eps_fn(model, labels, guidance, classifier)
        eps_fn = batch_progress(eps_fn, progress, index, num_samples, batch_size, method, steps)
        batches.append(sample_batch(eps_fn, model.schedule, (n, *image_shape), num_levels, steps,
                                    method, clip, generator, device, spacing).cpu())
    images = torch.cat(batches) if batches else torch.empty(0, *image_shape, dtype=torch.uint8)
    return images, all_labels
