"""vdm-bench: variational diffusion models, their objectives and schedules, benchmarked.

Conventions (VDM notation, Kingma et al. 2021) used throughout the package:

* data ``x`` lives in ``[-1, 1]``; a dataset with ``K`` grey levels maps level ``k`` to
  ``2k/(K-1) - 1``;
* variance-preserving diffusion ``z_t = alpha_t x + sigma_t eps`` with
  ``alpha_t^2 = sigmoid(lambda_t)`` and ``sigma_t^2 = sigmoid(-lambda_t)``;
* ``lambda_t = log SNR(t)`` is strictly decreasing on ``t in [0, 1]``; ``gamma_t = -lambda_t``;
* likelihoods are reported in bits per dimension unless a name says ``nats``.
"""

__version__ = "0.1.0"
