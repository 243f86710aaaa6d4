"""A linear-Gaussian VAE and its exact answers, computed densely with NumPy/SciPy (shared by the
VAE, IWAE and importance-sampling tests).

    p(z) = N(0, I_L),   p(x|z) = N(x; z W + b, sigma^2 I_D)      (W: (L, D), rows of x and z)
    log p(x) = log N(x; b, W^T W + sigma^2 I)
    p(z|x) = N(z; (x - b) W^T S / sigma^2, S),   S = (I + W W^T / sigma^2)^-1

The encoder is affine (MLPEncoder with hidden=()): its single Linear maps x to [mu | log_var].
"""
import numpy as np
from scipy import stats

import tinydgm as td
from tinydgm.models.latent import MLPDecoder, MLPEncoder, VAE


def linear_vae(n_dims, latent_dim, sigma=0.5, seed=0, model=VAE, **kw):
    gen = np.random.default_rng(seed)
    encoder = MLPEncoder(n_dims, latent_dim, hidden=(), rng=gen, dtype="float64")
    decoder = MLPDecoder(latent_dim, n_dims, hidden=(), likelihood="gaussian", sigma=sigma, rng=gen, dtype="float64")
    return model(encoder, decoder, rng=np.random.default_rng(seed + 1), **kw)


def decoder_weights(vae):
    layer = vae.decoder.net[0]
    return layer.weight.numpy(), layer.bias.numpy()


def set_decoder(vae, W, b):
    layer = vae.decoder.net[0]
    layer.weight.data = np.array(W, dtype=np.float64)
    layer.bias.data = np.array(b, dtype=np.float64)


def set_encoder(vae, C, c, log_var):
    """mu = x C + c, log_var constant (the affine encoder's log_var weights set to 0)."""
    layer = vae.encoder.net[0]
    n_dims, latent_dim = C.shape
    layer.weight.data = np.concatenate([C, np.zeros((n_dims, latent_dim))], axis=1)
    layer.bias.data = np.concatenate([c, np.broadcast_to(log_var, (latent_dim,))]).astype(np.float64)


def exact_log_px(W, b, sigma, x):
    cov = W.T @ W + sigma ** 2 * np.eye(W.shape[1])
    return stats.multivariate_normal(mean=b, cov=cov).logpdf(x)


def exact_posterior(W, b, sigma, x):
    """(means (N, L), covariance S (L, L)) of p(z|x)."""
    S = np.linalg.inv(np.eye(W.shape[0]) + W @ W.T / sigma ** 2)
    return (x - b) @ W.T @ S / sigma ** 2, S


def set_encoder_to_posterior(vae, sigma, mean_shift=0.0, log_var_shift=0.0):
    """The affine encoder of the exact posterior's mean (shifted by ``mean_shift``) and of the
    log of its covariance's diagonal (+ ``log_var_shift``): q = p(z|x) when W W^T is diagonal."""
    W, b = decoder_weights(vae)
    S = np.linalg.inv(np.eye(W.shape[0]) + W @ W.T / sigma ** 2)
    C = W.T @ S / sigma ** 2
    set_encoder(vae, C, -b @ C + mean_shift, np.log(np.diag(S)) + log_var_shift)


def kl_diagonal_to_full(mu_q, var_q, mu_p, cov_p):
    """KL(N(mu_q, diag var_q) || N(mu_p, cov_p)) per row, (N,)."""
    inv = np.linalg.inv(cov_p)
    d = mu_p - mu_q
    L = cov_p.shape[0]
    return 0.5 * (var_q @ np.diag(inv) + np.einsum("ni,ij,nj->n", d, inv, d) - L
                  + np.linalg.slogdet(cov_p)[1] - np.log(var_q).sum(-1))


def encoder_outputs(vae, x):
    mu, log_var = vae.encode(td.tensor(x, dtype="float64"))
    return mu.numpy(), np.exp(log_var.numpy())


def orthogonal_rows(latent_dim, n_dims, scales, seed=0):
    """W (L, D) with orthogonal rows of the given lengths (W W^T diagonal)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n_dims, latent_dim)))
    return (q * np.asarray(scales)).T
