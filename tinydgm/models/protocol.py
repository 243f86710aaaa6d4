"""The questions every model answers, the same way in every family.

    loss(batch)            0-d Tensor: the objective ``train.fit`` minimises. For likelihood
                           models the mean negative log-likelihood (or minus the mean bound);
                           for Boltzmann machines and other energy models a contrastive
                           surrogate whose gradient is minus the CD/PCD estimate of the
                           likelihood gradient (its VALUE is not a likelihood).
    log_prob(x)            Tensor (N,), exact log p(x) in nats, where it is tractable. Models
                           without it offer the bound or estimate they have, under its own
                           name: ``log_prob_lower_bound``, ``log_prob_bound``, ``elbo``,
                           ``log_prob_estimate``, ``ais`` (never called log_prob).
    sample(n, rng=None)    Tensor of shape (n, *event_shape) on the model's device, no graph.
                           Extra keyword arguments (method=, k=, mean=, labels=) stay.
    bits_per_dim(x)        Tensor (N,), -log p(x) / (D ln 2), where a log-likelihood exists.
    repr(model)            a short summary: class, key sizes, parameter count, dtype, device.

Samplers run on backend arrays (the Numba kernels and their xp twins); ``as_samples`` is
the one place where their result becomes what ``sample`` returns.
"""
from tinydgm.autodiff.core import Tensor

__all__ = ["as_samples"]


def as_samples(x, dtype=None):
    """A sampler's backend array (or a Tensor) as the Tensor that ``sample`` returns: the
    same device, optionally cast to ``dtype``, with no graph (``.numpy()`` gives NumPy)."""
    data = x.data if isinstance(x, Tensor) else x
    if dtype is not None and data.dtype != dtype:
        data = data.astype(dtype)
    return Tensor(data)
