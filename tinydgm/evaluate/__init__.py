"""Evaluation: the units papers report, exact oracles and estimators of log-likelihoods.

    units.py              nats and bits per dimension
    exact.py              exact log Z and log p of small binary models by enumeration
    ais.py                annealed importance sampling for RBMs and DBMs
    pseudo_likelihood.py  the RBM's pseudo-likelihood
    importance.py         importance-sampled log-likelihoods of latent-variable models (k up to
                          thousands, in chunks) with standard errors; ELBO / IWAE bounds side by side
    sample_metrics.py     sample quality: kernel MMD, Frechet distance and Inception Score
                          analogues (MNIST), mode coverage of 2-D toys, KL/JSD by quadrature
    mnist_classifier.py   the small MNIST classifier those image metrics look through (shipped
                          trained, mnist_classifier.npz)
"""
from tinydgm.evaluate.ais import (ais_betas, base_rate_visible_bias, dbm_ais, rbm_ais,  # noqa: F401
                                  rbm_test_log_likelihood)
from tinydgm.evaluate.exact import (binary_states, log_partition_by_enumeration, rbm_free_energy,  # noqa: F401
                                    rbm_log_likelihood, rbm_log_partition)
from tinydgm.evaluate.pseudo_likelihood import rbm_pseudo_likelihood  # noqa: F401
from tinydgm.evaluate.importance import (ImportanceEstimate, importance_log_likelihood,  # noqa: F401
                                         bounds_table, format_bounds_table)
from tinydgm.evaluate.mnist_classifier import (MNISTClassifier, load_mnist_classifier,  # noqa: F401
                                               train_mnist_classifier)
from tinydgm.evaluate.sample_metrics import (mmd, gaussian_statistics, frechet_distance,  # noqa: F401
                                             frechet_distance_gaussians, inception_score, classifier_features,
                                             classifier_probs, mnist_frechet_distance, mnist_inception_score,
                                             ModeCoverage, mode_coverage, toy_modes, toy_mode_coverage,
                                             Divergences, divergences_by_quadrature)
from tinydgm.evaluate.units import bits_per_dim, nats_from_bits_per_dim  # noqa: F401

__all__ = ["bits_per_dim", "nats_from_bits_per_dim", "binary_states", "log_partition_by_enumeration",
           "rbm_free_energy", "rbm_log_partition", "rbm_log_likelihood", "ais_betas", "base_rate_visible_bias",
           "rbm_ais", "dbm_ais", "rbm_test_log_likelihood", "rbm_pseudo_likelihood", "ImportanceEstimate",
           "importance_log_likelihood", "bounds_table", "format_bounds_table", "mmd",
           "gaussian_statistics", "frechet_distance", "frechet_distance_gaussians", "inception_score",
           "classifier_features", "classifier_probs", "mnist_frechet_distance", "mnist_inception_score",
           "ModeCoverage", "mode_coverage", "toy_modes", "toy_mode_coverage", "Divergences",
           "divergences_by_quadrature", "MNISTClassifier", "load_mnist_classifier", "train_mnist_classifier"]
