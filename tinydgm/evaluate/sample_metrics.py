"""Two-sample statistics: how far a model's samples are from the data, when the model has
no log-likelihood to report (a neural EBM's samples, later a GAN's)."""
from tinydgm import backend

__all__ = ["mmd"]


def mmd(x, y, bandwidth=1.0):
    """The squared maximum mean discrepancy with a Gaussian kernel (Gretton et al. 2012, the
    biased V-statistic):

        MMD^2 = mean_{i,j} k(x_i, x_j) + mean_{i,j} k(y_i, y_j) - 2 mean_{i,j} k(x_i, y_j),
        k(a, b) = exp(-|a - b|^2 / (2 bandwidth^2)).

    x (n, d), y (m, d) arrays (NumPy or CuPy); returns a float: 0 when the samples
    coincide, small when they come from the same distribution (the V-statistic is >= 0)."""
    xp = backend.get_array_module(x)
    x, y = xp.asarray(x, dtype=xp.float64), xp.asarray(y, dtype=xp.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd: x and y must be (n, d) and (m, d), got {tuple(x.shape)} and {tuple(y.shape)}")
    if not bandwidth > 0:
        raise ValueError(f"mmd: bandwidth must be positive, got {bandwidth!r}")

    def k(a, b):
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return xp.exp(-xp.maximum(sq, 0) / (2 * bandwidth ** 2))

    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
