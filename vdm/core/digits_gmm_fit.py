"""How the shipped ``digits-gmm`` parameters were made: the fit to the digits train split.

:func:`fit_digits_gmm` fits, per class of the digits train split (model inputs in ``[-1, 1]``),
scikit-learn's ``GaussianMixture(covariance_type="diag")`` with :data:`COMPONENTS_PER_CLASS`
components and ``reg_covar = Delta^2 / 12`` (the reasons: :mod:`vdm.core.digits_gmm`).
``python -m vdm.core.digits_gmm_fit --refit`` rewrites :data:`vdm.core.digits_gmm.PARAMETERS_FILE`;
without ``--refit`` it prints the stored fit settings and :func:`vdm.core.digits_gmm.describe`.

Apart from :mod:`vdm.core.digits_gmm` because the fit reads digits through
:func:`vdm.core.data.load_dataset`, which serves the digits-gmm splits from
:mod:`vdm.core.digits_gmm`: the mixture itself never needs the data registry, so the imports
point one way (this module -> data -> digits_gmm).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from sklearn.mixture import GaussianMixture

from vdm.core.data import load_dataset
from vdm.core.digits_gmm import PARAMETERS_FILE, GaussianMixtureData, describe, read_mixture

#: Mixture components fitted per class.
COMPONENTS_PER_CLASS = 4
#: EM settings of the fit: converged well below the differences a refit test can see.
FIT_TOL = 1e-6
FIT_MAX_ITER = 1000
FIT_RANDOM_STATE = 0


def fit_digits_gmm(components_per_class: int = COMPONENTS_PER_CLASS,
                   reg_covar: float | None = None) -> tuple[GaussianMixtureData, dict[str, Any]]:
    """Fit the mixture to the digits train split (module docstring) and return it with its fit
    settings. ``reg_covar`` defaults to ``Delta^2 / 12``, ``Delta = 2 / (L - 1)``."""
    train = load_dataset("digits", "train")
    x = train.model_inputs().reshape(len(train), -1).double().numpy()
    labels = train.labels.numpy()
    spacing = 2.0 / (train.num_levels - 1)
    reg = spacing**2 / 12.0 if reg_covar is None else float(reg_covar)
    weights, means, stds, component_class = [], [], [], []
    for c in np.unique(labels):
        fit = GaussianMixture(components_per_class, covariance_type="diag", reg_covar=reg,
                              tol=FIT_TOL, max_iter=FIT_MAX_ITER, random_state=FIT_RANDOM_STATE
                              ).fit(x[labels == c])
        if not fit.converged_:
            raise RuntimeError(f"digits-gmm: EM did not converge for class {c} in {FIT_MAX_ITER} "
                               "iterations")
        weights.append(fit.weights_ * np.mean(labels == c))
        means.append(fit.means_)
        stds.append(np.sqrt(fit.covariances_))
        component_class.append(np.full(components_per_class, c))
    weights_all = np.concatenate(weights)
    mixture = GaussianMixtureData(weights_all / weights_all.sum(), np.concatenate(means),
                                  np.concatenate(stds), np.concatenate(component_class),
                                  train.num_levels, train.shape)
    settings = {"source": f"digits train split ({len(train)} images, model inputs in [-1, 1])",
                "components_per_class": components_per_class, "reg_covar": reg, "tol": FIT_TOL,
                "max_iter": FIT_MAX_ITER, "random_state": FIT_RANDOM_STATE,
                "covariance_type": "diag"}
    return mixture, settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vdm.core.digits_gmm_fit",
                                     description="digits-gmm: refit or describe the parameters")
    parser.add_argument("--refit", action="store_true",
                        help=f"fit to the digits train split and rewrite {PARAMETERS_FILE.name}")
    parser.add_argument("--out", default=str(PARAMETERS_FILE), help="parameter file to write")
    parser.add_argument("--num-samples", type=int, default=100_000,
                        help="fresh samples for H and the Bayes accuracy")
    args = parser.parse_args(argv)
    if args.refit:
        mixture, settings = fit_digits_gmm()
        mixture.save(args.out, **settings)
        print(f"wrote {args.out}")
    else:
        mixture, settings = read_mixture(args.out)
        print(f"fit settings: {settings}")
    for key, value in describe(mixture, args.num_samples).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
