"""Langevin dynamics for neural energies p(x) ∝ exp(f_theta(x)) (kuleshov-l12 samples EBMs
with MCMC; Langevin dynamics uses the gradient the engine gives with respect to x).

Unadjusted Langevin (ULA), step size tau:

    x' = x + tau grad_x f(x) + sqrt(2 tau) eps,      eps ~ N(0, I)

samples exp(f) only as tau -> 0 (a bias of order tau). MALA (Roberts & Tweedie 1996) uses the
same move as a Metropolis–Hastings proposal, q(x' | x) = N(x'; x + tau grad f(x), 2 tau I),
and accepts with the Hastings rule (kernels/mh.py)

    log A = min(0, f(x') - f(x) + log q(x | x') - log q(x' | x)),
    log q(x' | x) = -|x' - x - tau grad f(x)|^2 / (4 tau) + const,

so exp(f) is exactly stationary for any tau. ``noise_scale`` replaces sqrt(2 tau) by another
noise level (ULA only): Du & Mordatch 2019 (Implicit Generation and Generalization in
Energy-Based Models, NeurIPS) run x' = x - (lambda/2) grad E(x) + omega with a noise much
smaller than the step, which no longer samples exp(f) but trains EBMs faster.

Randomness is an INPUT: ``langevin_xp(f, x, eps, log_u, ...)`` runs the chains from given
normals eps (T, C, d) and log-uniforms log_u (T, C); ``langevin`` draws them from a seeded
generator on the CPU (eps, then log_u for MALA). One batched forward and backward pass of f
per step for all chains (with MALA the proposal's value and gradient are kept for the next
step). There is no Numba kernel: the cost is the network's forward and backward pass.

Recording: sample k (0-based) is the state after burn_in + (k + 1) * thin steps.
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, enable_grad, grad, tensor
from tinydgm.kernels.mh import MHResult, n_steps_for

__all__ = ["log_density_and_grad", "langevin_xp", "langevin"]


def log_density_and_grad(f, x):
    """(f(x), grad_x f(x)) as backend arrays for a batch x (C, d) (array): f maps a Tensor
    (C, d) to a Tensor (C,) (the unnormalised log-density of each point); the gradient of
    sum_c f(x_c) gives every chain's grad_x f at once (the chains do not interact)."""
    with enable_grad():
        x_t = tensor(x, requires_grad=True)
        out = f(x_t)
        if not isinstance(out, Tensor) or out.shape != (x.shape[0],):
            raise ValueError(f"langevin: f must return a Tensor of one value per chain, shape ({x.shape[0]},), "
                             f"got {getattr(out, 'shape', type(out).__name__)}")
        (g,) = grad(out.sum(), x_t)
    return out.data, g.data


def langevin_xp(f, x, eps, log_u=None, step_size=0.01, mala=False, burn_in=0, thin=1, noise_scale=None,
                samples=None):
    """Run Langevin chains x (C, d) (a NumPy or CuPy floating array, updated IN PLACE) through
    eps.shape[0] steps. log_u (T, C) is needed with ``mala=True``. Returns
    (samples (n_samples, C, d), n_accepted (C,)) (ULA accepts every move)."""
    xp = backend.get_array_module(x)
    if x.ndim != 2 or eps.ndim != 3 or eps.shape[1:] != x.shape:
        raise ValueError(f"langevin: x must be (C, d) and eps (T, C, d), got x {tuple(x.shape)}, eps {tuple(eps.shape)}")
    if not step_size > 0:
        raise ValueError(f"langevin: step_size must be > 0, got {step_size}")
    if mala and (log_u is None or log_u.shape != eps.shape[:2]):
        raise ValueError("langevin: MALA needs log-uniforms log_u of shape (T, C)")
    if mala and noise_scale is not None:
        raise ValueError("langevin: noise_scale applies to unadjusted Langevin only (MALA needs sqrt(2 tau))")
    n_steps, n_chains, _ = eps.shape
    tau = step_size
    sigma = math.sqrt(2 * tau) if noise_scale is None else noise_scale
    if samples is None:
        samples = xp.zeros((max(0, (n_steps - burn_in) // thin), n_chains, x.shape[1]), dtype=x.dtype)
    n_accepted = xp.zeros(n_chains, dtype=xp.int64)
    f_x, g_x = log_density_and_grad(f, x)
    for t in range(n_steps):
        mean_x = x + tau * g_x                                        # the drift x + tau grad f(x)
        y = mean_x + sigma * eps[t]
        if mala:
            f_y, g_y = log_density_and_grad(f, y)
            mean_y = y + tau * g_y
            log_q_x_given_y = -((x - mean_y) ** 2).sum(axis=1) / (4 * tau)
            log_q_y_given_x = -((y - mean_x) ** 2).sum(axis=1) / (4 * tau)
            accept = log_u[t] < xp.minimum(0.0, f_y - f_x + log_q_x_given_y - log_q_y_given_x)
            x[...] = xp.where(accept[:, None], y, x)
            f_x = xp.where(accept, f_y, f_x)
            g_x = xp.where(accept[:, None], g_y, g_x)
            n_accepted += accept
        else:
            x[...] = y
            n_accepted += 1
            if t + 1 < n_steps:
                f_x, g_x = log_density_and_grad(f, x)
        done = t + 1 - burn_in
        if done > 0 and done % thin == 0:
            samples[done // thin - 1] = x
    return samples, n_accepted


def langevin(f, x0, n_samples, rng, step_size=0.01, mala=False, burn_in=0, thin=1, noise_scale=None):
    """Langevin chains from x0 (C, d) (NumPy/CuPy array or Tensor; they run on its device in its
    floating dtype) for the log-density f (Tensor (C, d) -> Tensor (C,)). Random numbers from
    ``rng`` on the CPU: eps (T, C, d), then log_u (T, C) for MALA. Returns MHResult."""
    n_steps = n_steps_for(n_samples, burn_in, thin)
    data = x0.data if isinstance(x0, Tensor) else x0
    device = backend.device_of(data) if backend.is_array(data) else "cpu"
    xp = backend.module_for_device(device)
    dtype = data.dtype if backend.is_array(data) and data.dtype.kind == "f" else backend.get_default_dtype()
    x = xp.array(data, dtype=dtype)
    if x.ndim != 2:
        raise ValueError(f"langevin: x0 must have shape (C, d), got {tuple(x.shape)}")
    eps = backend.to_device(rng.standard_normal((n_steps,) + x.shape).astype(dtype), device)
    log_u = None
    if mala:
        u = rng.random((n_steps, x.shape[0]))
        log_u = backend.to_device(backend.get_array_module(u).log(u), device)
    samples, n_accepted = langevin_xp(f, x, eps, log_u, step_size, mala, burn_in, thin, noise_scale)
    return MHResult(samples, x, n_accepted / max(n_steps, 1))

