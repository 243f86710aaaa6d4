"""Evaluation: the units papers report, exact oracles and estimators of log-likelihoods.

    units.py              nats and bits per dimension
    exact.py              exact log Z and log p of small binary models by enumeration
    ais.py                annealed importance sampling for RBMs and DBMs
    pseudo_likelihood.py  the RBM's pseudo-likelihood
    importance.py         importance-sampled log-likelihoods of latent-variable models (k up to
                          thousands, in chunks) with standard errors; ELBO / IWAE bounds side by side
    sample_metrics.py     two-sample statistics (kernel MMD) between model samples and data
"""
from tinydgm.evaluate.ais import (ais_betas, base_rate_visible_bias, dbm_ais, rbm_ais,  # noqa: F401
                                  rbm_test_log_likelihood)
from tinydgm.evaluate.exact import (binary_states, log_partition_by_enumeration, rbm_free_energy,  # noqa: F401
                                    rbm_log_likelihood, rbm_log_partition)
from tinydgm.evaluate.pseudo_likelihood import rbm_pseudo_likelihood  # noqa: F401
from tinydgm.evaluate.importance import (ImportanceEstimate, importance_log_likelihood,  # noqa: F401
                                         bounds_table, format_bounds_table)
from tinydgm.evaluate.sample_metrics import mmd  # noqa: F401
from tinydgm.evaluate.units import bits_per_dim, nats_from_bits_per_dim  # noqa: F401

__all__ = ["bits_per_dim", "nats_from_bits_per_dim", "binary_states", "log_partition_by_enumeration",
           "rbm_free_energy", "rbm_log_partition", "rbm_log_likelihood", "ais_betas", "base_rate_visible_bias",
           "rbm_ais", "dbm_ais", "rbm_test_log_likelihood", "rbm_pseudo_likelihood", "mmd",
           "ImportanceEstimate", "importance_log_likelihood", "bounds_table", "format_bounds_table"]
