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
the one place where their result becomes what ``sample`` returns. ``as_batch`` is the check
that models of flat vectors (N, D) share for the data they are given.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor, tensor

__all__ = ["as_samples", "as_batch"]


def as_samples(x, dtype=None):
    """A sampler's backend array (or a Tensor) as the Tensor that ``sample`` returns: the
    same device, optionally cast to ``dtype``, with no graph (``.numpy()`` gives NumPy)."""
    data = x.data if isinstance(x, Tensor) else x
    if dtype is not None and data.dtype != dtype:
        data = data.astype(dtype)
    return Tensor(data)


def as_batch(x, like, n_features, who, finite=True):
    """x as a Tensor (N, D), D = ``n_features``, for a model whose weights are ``like``: an
    array, a list or an integer Tensor becomes a Tensor in like's dtype (on its device); a
    floating Tensor is used as given. Errors name ``who`` ("Model.method") and the shapes;
    ``finite`` also rejects NaN and inf."""
    if not isinstance(x, Tensor):
        x = tensor(x, dtype=like.dtype, device=like.device)
    elif not backend.is_floating(x.dtype):
        x = Tensor(x.data.astype(like.dtype))
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(f"{who}: x must have shape (N, D) = (N, {n_features}), got {tuple(x.shape)}")
    if finite and not bool(backend.xp_of(x.data).isfinite(x.data).all()):
        raise ValueError(f"{who}: x contains NaN or inf")
    return x
