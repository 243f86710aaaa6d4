"""The optimal discriminator and the JSD identity, by quadrature, for a generator whose
density is known (Goodfellow et al. 2014, Proposition 1 and Theorem 1; intro lecture part I,
"optimal discriminator" eq. 14 and "link with Jensen-Shannon divergence" eq. 17).

For a fixed generator G with density p_G,

    V(D, G) = int p_data(x) ln D(x) + p_G(x) ln(1 - D(x)) dx,

and y -> a ln y + b ln(1 - y) peaks on [0, 1] at y = a / (a + b), so pointwise

    D*_G(x) = p_data(x) / (p_data(x) + p_G(x))                               (eq. 14)
    V(D*_G, G) = -ln 4 + 2 JSD(p_data || p_G),
    JSD(p || q) = 1/2 KL(p || (p + q)/2) + 1/2 KL(q || (p + q)/2)           (eq. 17)

On 1-D and 2-D toys, with p_data known and p_G a Gaussian or a flow (``flow.log_prob``),
these integrals are computed on a grid by the midpoint rule, which converges exponentially
fast for smooth densities that vanish at the edges of the box. Everything works on log
densities (xp arrays of the same shape, one value per grid point), so tails do not underflow:

    points, cell = quadrature_grid(-6.0, 6.0, 2001)
    log_p_data = ...(points)                      # (M,) log densities on the grid
    d_star = optimal_discriminator(log_p_data, log_p_g)
    optimal_value(log_p_data, log_p_g, cell)      # = -ln 4 + 2 jensen_shannon_divergence(...)
    compare_to_optimal(model.D, points, log_p_data, log_p_g, cell)   # a trained D against D*

Outside the supports of p_data and p_G the discriminator is unconstrained (the lecture: it
"only needs to be defined in the support"), so comparisons weight the error by the mixture
(p_data + p_G) / 2 the discriminator is trained on.
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad

__all__ = ["quadrature_grid", "optimal_discriminator", "optimal_value", "discriminator_value",
           "jensen_shannon_divergence", "compare_to_optimal"]


def quadrature_grid(low, high, n, dim=1, device="cpu", dtype="float64"):
    """Midpoints of a grid of n cells per axis on [low, high]^dim, as (points, cell_volume):
    points of shape (n^dim, dim) (the last axis varies fastest), cell_volume = ((high - low) / n)^dim."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"quadrature_grid: n must be a positive int, got {n!r}")
    if dim not in (1, 2, 3):
        raise ValueError(f"quadrature_grid: dim must be 1, 2 or 3 (n^dim points), got {dim!r}")
    if not float(high) > float(low):
        raise ValueError(f"quadrature_grid: need low < high, got low={low}, high={high}")
    xp = backend.module_for_device(device)
    h = (float(high) - float(low)) / n
    axis = float(low) + h * (xp.arange(n, dtype=dtype) + 0.5)
    mesh = xp.meshgrid(*([axis] * dim), indexing="ij")
    points = xp.stack([m.reshape(-1) for m in mesh], axis=1)
    return points, h ** dim


def _check_logs(who, **logs):
    shapes = {name: tuple(a.shape) for name, a in logs.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"{who}: the log densities must have the same shape (one value per grid point), got "
                         + ", ".join(f"{name} {shape}" for name, shape in shapes.items()))
    return backend.get_array_module(*logs.values())


def optimal_discriminator(log_p_data, log_p_g):
    """D*(x) = p_data / (p_data + p_G) = sigmoid(ln p_data - ln p_G), elementwise (eq. 14)."""
    xp = _check_logs("optimal_discriminator", log_p_data=log_p_data, log_p_g=log_p_g)
    return xp.exp(log_p_data - xp.logaddexp(log_p_data, log_p_g))


def _kl_to_mixture(xp, log_p, log_q, cell_volume):
    """KL(p || (p + q)/2) = int p (ln p - ln((p + q)/2)) by the midpoint rule (0 ln 0 = 0)."""
    log_m = xp.logaddexp(log_p, log_q) - math.log(2.0)
    p = xp.exp(log_p)
    integrand = xp.where(p > 0, p * (log_p - log_m), 0.0)
    return float(integrand.sum()) * cell_volume


def jensen_shannon_divergence(log_p, log_q, cell_volume):
    """JSD(p || q) = 1/2 KL(p || (p+q)/2) + 1/2 KL(q || (p+q)/2) in nats, by quadrature (eq. 17);
    between 0 (p = q) and ln 2 (disjoint supports)."""
    xp = _check_logs("jensen_shannon_divergence", log_p=log_p, log_q=log_q)
    return 0.5 * _kl_to_mixture(xp, log_p, log_q, cell_volume) + 0.5 * _kl_to_mixture(xp, log_q, log_p, cell_volume)


def discriminator_value(d, log_p_data, log_p_g, cell_volume):
    """V(D, G) = int p_data ln D + p_G ln(1 - D) dx by quadrature, for discriminator values
    d = D(x) in [0, 1] on the grid (terms with zero density count as 0)."""
    xp = _check_logs("discriminator_value", d=d, log_p_data=log_p_data, log_p_g=log_p_g)
    p_data, p_g = xp.exp(log_p_data), xp.exp(log_p_g)
    with_data = xp.where(p_data > 0, p_data * xp.log(xp.where(p_data > 0, d, 1.0)), 0.0)
    with_g = xp.where(p_g > 0, p_g * xp.log1p(-xp.where(p_g > 0, d, 0.0)), 0.0)
    return float((with_data + with_g).sum()) * cell_volume


def optimal_value(log_p_data, log_p_g, cell_volume):
    """V(D*, G) = int p_data ln D* + p_G ln(1 - D*) by quadrature, with ln D* and ln(1 - D*)
    taken from the log densities (no rounding of D* near 0 or 1). Equals -ln 4 + 2 JSD."""
    xp = _check_logs("optimal_value", log_p_data=log_p_data, log_p_g=log_p_g)
    log_sum = xp.logaddexp(log_p_data, log_p_g)                  # ln(p_data + p_G)
    p_data, p_g = xp.exp(log_p_data), xp.exp(log_p_g)
    with_data = xp.where(p_data > 0, p_data * (log_p_data - log_sum), 0.0)     # p_data ln D*
    with_g = xp.where(p_g > 0, p_g * (log_p_g - log_sum), 0.0)                 # p_G ln(1 - D*)
    return float((with_data + with_g).sum()) * cell_volume


def _discriminate(discriminator, points, chunk):
    """D(x) = sigmoid(logit(x)) on the grid points, in chunks, without graph."""
    xp = backend.get_array_module(points)
    out = []
    with no_grad():
        for start in range(0, points.shape[0], chunk):
            logits = discriminator(Tensor(points[start:start + chunk])).data.reshape(-1)
            out.append(xp.exp(-xp.logaddexp(0.0, -logits.astype("float64"))))     # sigmoid, no overflow
    return xp.concatenate(out)


def compare_to_optimal(discriminator, points, log_p_data, log_p_g, cell_volume, support_fraction=1e-3,
                       chunk=8192):
    """A trained discriminator against D* on a quadrature grid.

    discriminator: maps a Tensor of points (M, dim) to logits (M,) (e.g. ``GAN.D``), with
        D = sigmoid(logit); points in the discriminator's dtype.
    support_fraction: "on the support" means a mixture density above this fraction of its
        maximum (the maximum error is taken there only).

    Returns a dict of floats:
        mean_abs_error   int m(x) |D(x) - D*(x)| dx, m = (p_data + p_G) / 2
        max_abs_error    max |D - D*| where m > support_fraction * max m
        value            V(D, G) by quadrature
        optimal_value    V(D*, G) = -ln 4 + 2 JSD(p_data || p_G)
        value_gap        optimal_value - value (>= 0: D* maximises V)
    """
    xp = _check_logs("compare_to_optimal", log_p_data=log_p_data, log_p_g=log_p_g)
    if points.ndim != 2 or points.shape[0] != log_p_data.shape[0] or log_p_data.ndim != 1:
        raise ValueError(f"compare_to_optimal: points must have shape (M, dim) and the log densities shape (M,), "
                         f"got points {tuple(points.shape)} and log densities {tuple(log_p_data.shape)}")
    d = _discriminate(discriminator, points, chunk)
    d_star = optimal_discriminator(log_p_data, log_p_g)
    mixture = 0.5 * (xp.exp(log_p_data) + xp.exp(log_p_g))
    error = xp.abs(d - d_star)
    on_support = mixture > support_fraction * mixture.max()
    value, best = discriminator_value(d, log_p_data, log_p_g, cell_volume), optimal_value(log_p_data, log_p_g,
                                                                                         cell_volume)
    return {"mean_abs_error": float((mixture * error).sum()) * cell_volume,
            "max_abs_error": float(error[on_support].max()),
            "value": value, "optimal_value": best, "value_gap": best - value}
