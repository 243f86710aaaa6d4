"""Sequence data sets for the recurrent models (the variational RNN and its RNN baseline;
kuleshov-l12, "Variational RNN"): a procedurally generated 2-D walk with switching,
multimodal, heavy-tailed dynamics whose exact log-density is known, and MNIST read as
sequences of 28 rows.

The switching walk (a switching linear dynamical system with Laplace noise): a hidden
regime k_t in {0, ..., K - 1} picks one of K headings, and the point steps that way,

    x_1 ~ N(0, s_0^2 I_2)
    k_2 ~ Uniform{0, ..., K - 1},   k_t = k_{t-1} with probability `stay`, else one of the
                                    other K - 1 regimes uniformly             (t = 3..T)
    x_t = x_{t-1} + speed * u_{k_t} + noise * e_t,   u_k = (cos 2 pi k / K, sin 2 pi k / K),
                                    e_t two independent standard Laplace draws

so the next step given the past is a mixture of K Laplace bumps (mostly the current
heading, sometimes a turn): multimodal and non-Gaussian, the situation where a Gaussian
output on an RNN state is a poor fit and the variational RNN's per-step latent helps
(Chung et al. 2015, sec. 1). Because the regimes form a hidden Markov chain, the exact
log-density of a sequence follows from the forward algorithm (``switching_walk_log_density``):

    alpha_2(k) = 1/K p(x_2 - x_1 | k)
    alpha_t(k) = p(x_t - x_{t-1} | k) sum_j alpha_{t-1}(j) A_jk,   A_jj = stay, A_jk = (1 - stay)/(K - 1)
    log p(x) = log N(x_1; 0, s_0^2 I) + log sum_k alpha_T(k)

(in log space), the floor that a model's test NLL approaches.

Samplers return NumPy arrays of shape (n, T, 2) in the default floating dtype; ``rng`` is a
NumPy Generator or an int seed (None: the process-wide generator that ``td.seed`` resets), and
the same seed gives the same sequences.

MNIST rows: ``mnist_rows(images)`` reads images (N, 784) or (N, 28, 28) as sequences of 28
steps x_t = row t of the image (28 pixels), top to bottom, the set-up of the sequential
MNIST benchmarks; ``load_mnist_rows(split)`` does it for a split of statically binarized
MNIST (``load_binarized_mnist``; ``mnist_rows(load_embedded_binarized()["x"])`` for the
embedded subset).
"""
import math

import numpy as np

from tinydgm import backend
from tinydgm.data.transforms import as_generator

__all__ = ["switching_walk", "switching_walk_log_density", "switching_walk_headings", "mnist_rows",
           "load_mnist_rows"]

LOG_2PI = math.log(2 * math.pi)


def _check(n_regimes, stay, speed, noise, init_scale, who):
    if isinstance(n_regimes, bool) or not isinstance(n_regimes, (int, np.integer)) or n_regimes < 2:
        raise ValueError(f"{who}: n_regimes must be an int >= 2, got {n_regimes!r}")
    if not 0.0 <= stay <= 1.0:
        raise ValueError(f"{who}: stay must be a probability in [0, 1], got {stay!r}")
    for name, value in (("speed", speed), ("noise", noise), ("init_scale", init_scale)):
        if not value > 0:
            raise ValueError(f"{who}: {name} must be positive, got {value!r}")


def switching_walk_headings(n_regimes=3):
    """The K unit headings u_k = (cos 2 pi k / K, sin 2 pi k / K), shape (K, 2)."""
    angle = 2 * np.pi * np.arange(n_regimes) / n_regimes
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


def switching_walk(n, length=20, rng=None, *, n_regimes=3, stay=0.9, speed=0.5, noise=0.1, init_scale=1.0,
                   dtype=None, return_regimes=False):
    """n sequences of the switching walk (module docstring), shape (n, length, 2); with
    ``return_regimes`` also the regimes k_2..k_T, shape (n, length - 1), int64."""
    who = "switching_walk"
    _check(n_regimes, stay, speed, noise, init_scale, who)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{who}: n must be a non-negative int, got {n!r}")
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"{who}: length must be a positive int, got {length!r}")
    rng = as_generator(rng)
    regimes = np.empty((n, max(length - 1, 0)), dtype=np.int64)
    if length > 1:
        regimes[:, 0] = rng.integers(0, n_regimes, n)                     # k_2 ~ Uniform
        for t in range(1, length - 1):
            switch = rng.random(n) >= stay
            other = (regimes[:, t - 1] + rng.integers(1, n_regimes, n)) % n_regimes   # uniform over the others
            regimes[:, t] = np.where(switch, other, regimes[:, t - 1])
    steps = speed * switching_walk_headings(n_regimes)[regimes] + noise * rng.laplace(size=regimes.shape + (2,))
    x1 = init_scale * rng.standard_normal((n, 1, 2))
    x = np.concatenate([x1, x1 + np.cumsum(steps, axis=1)], axis=1)
    dtype = backend.get_default_dtype() if dtype is None else np.dtype(dtype)
    x = np.ascontiguousarray(x, dtype=dtype)
    return (x, regimes) if return_regimes else x


def switching_walk_log_density(x, *, n_regimes=3, stay=0.9, speed=0.5, noise=0.1, init_scale=1.0):
    """Exact log p(x) of switching-walk sequences x (..., T, 2) by the forward algorithm
    (module docstring), float64 of shape (...,). The parameters must be those the
    sequences were drawn with."""
    who = "switching_walk_log_density"
    _check(n_regimes, stay, speed, noise, init_scale, who)
    x = np.asarray(backend.to_numpy(x), dtype=np.float64)
    if x.ndim < 2 or x.shape[-1] != 2:
        raise ValueError(f"{who}: x must have shape (..., T, 2), got {x.shape}")
    log_p = (-LOG_2PI - 2 * math.log(init_scale) - 0.5 * (x[..., 0, :] ** 2).sum(-1) / init_scale ** 2)
    if x.shape[-2] == 1:
        return log_p
    dx = np.diff(x, axis=-2)                                                       # (..., T - 1, 2)
    residual = dx[..., None, :] - speed * switching_walk_headings(n_regimes)       # (..., T - 1, K, 2)
    log_emit = (-2 * math.log(2 * noise) - np.abs(residual).sum(-1) / noise)       # Laplace, 2 coordinates
    log_a = np.full((n_regimes, n_regimes), math.log((1 - stay) / (n_regimes - 1)) if stay < 1 else -np.inf)
    np.fill_diagonal(log_a, math.log(stay) if stay > 0 else -np.inf)
    log_alpha = log_emit[..., 0, :] - math.log(n_regimes)                          # alpha_2
    for t in range(1, dx.shape[-2]):
        log_alpha = log_emit[..., t, :] + _logsumexp(log_alpha[..., :, None] + log_a, axis=-2)
    return log_p + _logsumexp(log_alpha, axis=-1)


def _logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis) + np.log(np.exp(a - m).sum(axis=axis))


def mnist_rows(images):
    """Images (N, 784) or (N, 28, 28) as row sequences (N, 28, 28): step t is row t, top to
    bottom. The dtype is kept (uint8 pixels stay uint8)."""
    images = np.asarray(images)
    if images.ndim == 2 and images.shape[1] == 784:
        return images.reshape(-1, 28, 28)
    if images.ndim == 3 and images.shape[1:] == (28, 28):
        return images
    raise ValueError(f"mnist_rows: images must have shape (N, 784) or (N, 28, 28), got {images.shape}")


def load_mnist_rows(split="train", path=None, download=False, progress=False):
    """A split ("train", "valid" or "test") of statically binarized MNIST as row sequences
    (N, 28, 28), uint8 in {0, 1} (``load_binarized_mnist``: ``path`` or the TINYDGM_DATA
    folder, the cache, or a download when ``download``)."""
    from tinydgm.data.mnist import load_binarized_mnist
    if split not in ("train", "valid", "test"):
        raise ValueError(f'load_mnist_rows: split must be "train", "valid" or "test", got {split!r}')
    return mnist_rows(load_binarized_mnist(path=path, download=download, progress=progress)[split])
