"""Sample-quality metrics and two-sample statistics: how far a model's samples are from the
data, when the model has no log-likelihood to report (a neural EBM's samples, a GAN's).

Any samples: the kernel MMD^2 (Gretton et al. 2012), ``mmd``.

Images, through a classifier's view (the field's convention; the classifier here is the
small MNIST network of ``mnist_classifier.py``, trained and shipped by tinydgm):

    Frechet distance (FID analogue; Heusel et al. 2017, eq. 6), between Gaussians fitted
    to the classifier's penultimate features of two sample sets:
        d^2 = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1^1/2 S_2 S_1^1/2)^1/2)
    Inception Score analogue (Salimans et al. 2016, sec. 4), on the classifier's softmax:
        IS = exp( E_x KL(p(y|x) || p(y)) ),   p(y) = E_x p(y|x)
    It lies in [1, K]: K for confident predictions spread evenly over the K classes, 1 for
    predictions that do not depend on x.

    These are NOT comparable with published FID or Inception Scores (those use ImageNet's
    Inception-v3, its 2048 pool features and natural images); they are comparable across
    the models evaluated here with the same shipped classifier and the same sample sizes
    (FID is biased upwards for small samples; use the same number of samples everywhere).

2-D toys with known modes (8 Gaussians, the 5x5 grid of ``tinydgm.data.toy``), the
mode-collapse protocol of Metz et al. 2017 (unrolled GANs) and Srivastava et al. 2017
(VEEGAN, sec. 5.1): a sample is of high quality when it lies within 3 standard deviations
of its nearest mode; a mode is covered when it is the nearest mode of at least one (or
``min_count``) high-quality sample. Note that even exact samples of a 2-D isotropic Gaussian
fall within 3 std of its mean only with probability 1 - exp(-9/2) = 0.9889.

Known densities (a flow as generator, the toys' exact log-densities): KL and the
Jensen-Shannon divergence (intro lecture eq. 16-17) by the midpoint rule on a grid:
        KL(p || q) = int p (log p - log q) dx
        JSD(p || q) = 1/2 KL(p || m) + 1/2 KL(q || m),   m = (p + q) / 2,   0 <= JSD <= log 2
(so the GAN value at the optimal discriminator, -log 4 + 2 JSD, intro lecture part I, can
be computed exactly for a generator with a density).
"""
import math
from typing import NamedTuple

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad

__all__ = ["mmd", "gaussian_statistics", "frechet_distance_gaussians", "frechet_distance", "inception_score",
           "classifier_features", "classifier_probs", "mnist_frechet_distance", "mnist_inception_score",
           "ModeCoverage", "mode_coverage", "toy_modes", "toy_mode_coverage", "Divergences",
           "divergences_by_quadrature"]


def _array(x):
    """A backend array from a Tensor, a backend array or a nested list (float64 for lists)."""
    if isinstance(x, Tensor):
        return x.data
    return x if backend.is_array(x) else backend.as_array(x, dtype="float64")


# ----------------------------------------------------------------------------- kernel MMD

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


# ----------------------------------------------------------------------------- Frechet distance

def _features(features, who, name):
    """(N, d) features as float64, with N >= 2 (a covariance needs two samples) and finite."""
    f = _array(features)
    if f.ndim != 2:
        raise ValueError(f"{who}: {name} must be a 2-D array (N samples, d features), got shape {tuple(f.shape)}")
    if f.shape[0] < 2:
        raise ValueError(f"{who}: {name} has {f.shape[0]} sample(s); a covariance needs at least 2")
    xp = backend.xp_of(f)
    f = f.astype(xp.float64)
    if not bool(xp.isfinite(f).all()):
        raise ValueError(f"{who}: {name} contains NaN or infinite values")
    return f


def gaussian_statistics(features):
    """mu (d,) and the unbiased covariance S (d, d) of features (N, d), N >= 2, in float64."""
    f = _features(features, "gaussian_statistics", "features")
    mu = f.mean(axis=0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def _psd_sqrt(xp, sigma):
    """S^1/2 of a symmetric positive semi-definite matrix: V diag(sqrt(lambda)) V^T from the
    symmetric eigendecomposition (rounding makes tiny negative eigenvalues: clipped to 0)."""
    lam, v = xp.linalg.eigh((sigma + sigma.T) / 2)
    return (v * xp.sqrt(xp.clip(lam, 0, None))) @ v.T


def frechet_distance_gaussians(mu1, sigma1, mu2, sigma2):
    """The squared Frechet (Wasserstein-2) distance between N(mu1, S1) and N(mu2, S2)
    (Dowson & Landau 1982; the FID of Heusel et al. 2017, eq. 6):

        d^2 = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1^1/2 S2 S1^1/2)^1/2

    The last trace is the sum of the square roots of the eigenvalues of the symmetric PSD
    matrix S1^1/2 S2 S1^1/2 (the same as those of S1 S2), so two symmetric
    eigendecompositions replace scipy.linalg.sqrtm and nothing complex appears. Rounding
    can make d^2 a hair below 0; it is returned as 0 then. With singular covariances (fewer
    samples than features) eigenvalues that are 0 up to rounding (~1e-15 |S|) contribute
    their square roots (~3e-8 |S|^1/2 each): fit them on more samples than features.
    Returns a float.
    """
    who = "frechet_distance_gaussians"
    mu1, mu2 = _array(mu1), _array(mu2)
    sigma1, sigma2 = _array(sigma1), _array(sigma2)
    xp = backend.get_array_module(mu1, sigma1, mu2, sigma2)
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    for name, value, shape in (("mu1", mu1, (d,)), ("mu2", mu2, (d,)), ("sigma1", sigma1, (d, d)),
                               ("sigma2", sigma2, (d, d))):
        if d < 1 or tuple(value.shape) != shape:
            raise ValueError(f"{who}: mu1, mu2 must have shape (d,) and sigma1, sigma2 (d, d) with the same "
                             f"d; got {name} of shape {tuple(value.shape)} (mu1: {tuple(mu1.shape)})")
    mu1, mu2, sigma1, sigma2 = (a.astype(xp.float64) for a in (mu1, mu2, sigma1, sigma2))
    root1 = _psd_sqrt(xp, sigma1)
    cross = root1 @ sigma2 @ root1                                   # S1^1/2 S2 S1^1/2
    lam = xp.linalg.eigvalsh((cross + cross.T) / 2)
    tr_sqrt_cross = xp.sqrt(xp.clip(lam, 0, None)).sum()
    d2 = ((mu1 - mu2) ** 2).sum() + xp.trace(sigma1) + xp.trace(sigma2) - 2 * tr_sqrt_cross
    return max(float(d2), 0.0)


def frechet_distance(features1, features2):
    """The Frechet distance d^2 between Gaussians fitted to two feature sets (N1, d) and
    (N2, d) (mean and unbiased covariance of each): the FID recipe on any features.
    Symmetric; 0 for identical sets. See ``frechet_distance_gaussians``."""
    f1 = _features(features1, "frechet_distance", "features1")
    f2 = _features(features2, "frechet_distance", "features2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"frechet_distance: features1 and features2 must have the same number of features, "
                         f"got shapes {tuple(f1.shape)} and {tuple(f2.shape)}")
    return frechet_distance_gaussians(*gaussian_statistics(f1), *gaussian_statistics(f2))


# ----------------------------------------------------------------------------- Inception Score

def inception_score(probs):
    """IS = exp( 1/N sum_n KL(p(y|x_n) || p(y)) ),  p(y) = 1/N sum_n p(y|x_n)  (Salimans et
    al. 2016), from class probabilities (N, K) whose rows sum to 1. Terms with p(y|x) = 0
    count 0 (0 log 0 = 0). Computed on all N samples at once (no splits). Returns a float
    in [1, K]."""
    who = "inception_score"
    p = _array(probs)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"{who}: probs must be a 2-D array (N samples, K classes) with N, K >= 1, "
                         f"got shape {tuple(p.shape)}")
    xp = backend.xp_of(p)
    p = p.astype(xp.float64)
    row_sums = p.sum(axis=1)
    if not (bool((p >= 0).all()) and bool((xp.abs(row_sums - 1) < 1e-4).all())):   # also catches NaN
        raise ValueError(f"{who}: probs must be non-negative with rows summing to 1 (pass softmax "
                         f"probabilities, not logits); got values in [{float(p.min())}, {float(p.max())}] "
                         f"and row sums in [{float(row_sums.min())}, {float(row_sums.max())}]")
    p_y = p.mean(axis=0)
    positive = p > 0
    log_ratio = xp.log(xp.where(positive, p, 1.0)) - xp.log(xp.where(positive, p_y, 1.0))
    kl = xp.where(positive, p * log_ratio, 0.0).sum(axis=1)          # KL(p(y|x_n) || p(y)) per sample
    return float(math.exp(float(kl.mean())))


# ----------------------------------------------------------------------------- the MNIST classifier's view

def _classifier(classifier):
    if classifier is None:
        from tinydgm.evaluate.mnist_classifier import load_mnist_classifier
        return load_mnist_classifier()
    return classifier


def _batched(fn, images, batch_size, who):
    """fn over images in batches, without a graph; the results concatenated along axis 0."""
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"{who}: batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(images, Tensor) or backend.is_array(images)):
        images = backend.as_array(images)
    if images.ndim < 2 or images.shape[0] == 0:
        raise ValueError(f"{who}: images must be a non-empty batch (N, 28, 28), (N, 1, 28, 28) or (N, 784), "
                         f"got shape {tuple(images.shape)}")
    with no_grad():
        parts = [fn(images[start:start + batch_size]).data for start in range(0, images.shape[0], int(batch_size))]
    return backend.xp_of(parts[0]).concatenate(parts, axis=0)


def classifier_features(images, classifier=None, batch_size=1000):
    """The classifier's penultimate features (N, hidden) of images (N, 28, 28), (N, 1, 28, 28)
    or (N, 784) (integers 0..255 or floats in [0, 1]); default classifier: the shipped one."""
    return _batched(_classifier(classifier).features, images, batch_size, "classifier_features")


def classifier_probs(images, classifier=None, batch_size=1000):
    """The classifier's p(y | x) (N, 10) of images (as in ``classifier_features``)."""
    return _batched(_classifier(classifier).probs, images, batch_size, "classifier_probs")


def mnist_frechet_distance(images1, images2, classifier=None, batch_size=1000):
    """The FID analogue: ``frechet_distance`` of the shipped MNIST classifier's features of two
    image sets. Comparable across models here (same classifier, same sample sizes), not
    with published FIDs."""
    clf = _classifier(classifier)
    return frechet_distance(classifier_features(images1, clf, batch_size),
                            classifier_features(images2, clf, batch_size))


def mnist_inception_score(images, classifier=None, batch_size=1000):
    """The Inception Score analogue: ``inception_score`` of the shipped MNIST classifier's
    p(y | x) on images; at most 10. Comparable across models here, not with published IS."""
    return inception_score(classifier_probs(images, classifier, batch_size))


# ----------------------------------------------------------------------------- modes of 2-D toys

class ModeCoverage(NamedTuple):
    """What ``mode_coverage`` measured: modes covered out of n_modes, the fraction of
    high-quality samples, and the number of high-quality samples nearest to each mode."""
    modes_covered: int
    n_modes: int
    high_quality: float
    counts: object


def mode_coverage(samples, centres, std, n_std=3.0, min_count=1):
    """Mode coverage and sample quality for a mixture of isotropic Gaussians N(c_k, std^2 I)
    (Metz et al. 2017; Srivastava et al. 2017, sec. 5.1):

        k(x) = argmin_k |x - c_k|                        the nearest mode
        high quality:  |x - c_k(x)| <= n_std * std
        covered:       mode k is k(x) for at least min_count high-quality samples x

    samples (N, D) (array or Tensor), centres (K, D). Returns a ModeCoverage.
    """
    who = "mode_coverage"
    x, c = _array(samples), _array(centres)
    if c.ndim != 2 or c.shape[0] < 1:
        raise ValueError(f"{who}: centres must have shape (K, D) with K >= 1, got {tuple(c.shape)}")
    if x.ndim != 2 or x.shape[1] != c.shape[1] or x.shape[0] < 1:
        raise ValueError(f"{who}: samples must have shape (N, {c.shape[1]}) with N >= 1 (the centres are "
                         f"{tuple(c.shape)}), got {tuple(x.shape)}")
    if not std > 0 or not n_std > 0:
        raise ValueError(f"{who}: std and n_std must be positive, got std={std!r}, n_std={n_std!r}")
    if isinstance(min_count, bool) or int(min_count) != min_count or min_count < 1:
        raise ValueError(f"{who}: min_count must be a positive integer, got {min_count!r}")
    xp = backend.get_array_module(x, c)
    x, c = x.astype(xp.float64), backend.to_device(c, backend.device_of(x)).astype(xp.float64)
    sq = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=-1)           # (N, K)
    nearest = sq.argmin(axis=1)
    good = xp.sqrt(sq.min(axis=1)) <= n_std * std
    if not bool(xp.isfinite(x).all()):
        good = good & xp.isfinite(x).all(axis=1)
    counts = xp.bincount(nearest[good], minlength=c.shape[0])
    return ModeCoverage(modes_covered=int((counts >= min_count).sum()), n_modes=int(c.shape[0]),
                        high_quality=float(good.mean()), counts=counts)


def toy_modes(name, **params):
    """(centres (K, 2), std) of the toy mixtures: "eight_gaussians" (radius, std) and
    "grid_gaussians" (size, spacing, std), with tinydgm.data.toy's defaults."""
    from tinydgm.data import toy
    if name == "eight_gaussians":
        radius, std = params.pop("radius", 2.0), params.pop("std", 0.2)
        centres = toy.eight_gaussians_centres(radius)
    elif name == "grid_gaussians":
        size, spacing, std = params.pop("size", 5), params.pop("spacing", 2.0), params.pop("std", 0.05)
        centres = toy.grid_gaussians_centres(size, spacing)
    else:
        raise ValueError(f"toy_modes: {name!r} is not a mixture with known modes; use 'eight_gaussians' or "
                         "'grid_gaussians', or call mode_coverage with the centres and std")
    if params:
        raise TypeError(f"toy_modes: unexpected parameters {sorted(params)} for {name!r}")
    return backend.as_array(centres, dtype="float64"), float(std)


def toy_mode_coverage(name, samples, n_std=3.0, min_count=1, **params):
    """``mode_coverage`` of samples against the modes of toy ``name`` (see ``toy_modes``), e.g.
    ``toy_mode_coverage("grid_gaussians", generator.sample(2500))``."""
    centres, std = toy_modes(name, **params)
    return mode_coverage(samples, centres, std, n_std, min_count)


# ----------------------------------------------------------------------------- divergences by quadrature

class Divergences(NamedTuple):
    """KL both ways and JSD (nats) between p and q on the grid, and each density's mass there
    (near 1 when the box holds the densities: a check on the grid, not a correction)."""
    kl_pq: float
    kl_qp: float
    jsd: float
    mass_p: float
    mass_q: float


def _grid(bounds, resolution, device):
    """Midpoints of a regular grid over the box: (points (M, D) float64, cell volume)."""
    xp = backend.module_for_device(device)
    bounds = [tuple(float(v) for v in b) for b in bounds]
    if not 1 <= len(bounds) <= 3 or any(len(b) != 2 or not b[0] < b[1] for b in bounds):
        raise ValueError(f"divergences_by_quadrature: bounds must be 1 to 3 pairs (low, high) with low < high, "
                         f"got {bounds}")
    if isinstance(resolution, bool) or int(resolution) != resolution or resolution < 2:
        raise ValueError(f"divergences_by_quadrature: resolution must be an integer >= 2, got {resolution!r}")
    axes, volume = [], 1.0
    for low, high in bounds:
        h = (high - low) / resolution
        axes.append(low + h * (xp.arange(int(resolution)) + 0.5))
        volume *= h
    mesh = xp.meshgrid(*axes, indexing="ij")
    return xp.stack([m.reshape(-1) for m in mesh], axis=1), volume


def _log_density_on(log_density, points, chunk, name):
    """log_density over the points in chunks, as a float64 backend array (M,)."""
    xp = backend.xp_of(points)
    parts = []
    with no_grad():
        for start in range(0, points.shape[0], chunk):
            block = points[start:start + chunk]
            value = _array(log_density(block))
            if tuple(value.shape) not in ((block.shape[0],), (block.shape[0], 1)):
                raise ValueError(f"divergences_by_quadrature: {name} must map points (M, {points.shape[1]}) to "
                                 f"log-densities (M,), got shape {tuple(value.shape)} for M = {block.shape[0]}")
            parts.append(value.reshape(-1).astype(xp.float64))
    values = xp.concatenate(parts)
    if bool(xp.isnan(values).any()) or bool((values == math.inf).any()):
        raise ValueError(f"divergences_by_quadrature: {name} returned NaN or +inf on the grid")
    return values


def _kl_terms(xp, log_a, log_b):
    """a (log a - log b) where a > 0, and 0 where a = 0 (then log a = -inf)."""
    positive = log_a > -math.inf
    a = xp.exp(log_a)
    with_b = xp.where(positive, log_a, 0.0) - xp.where(positive, log_b, 0.0)
    return xp.where(positive, a * with_b, 0.0)


def divergences_by_quadrature(log_p, log_q, bounds, resolution=400, device="cpu", chunk=65536):
    """KL(p || q), KL(q || p) and JSD(p || q) by the midpoint rule on a regular grid:

        KL(p || q) ~ sum_i p(x_i) (log p(x_i) - log q(x_i)) dV
        JSD = 1/2 KL(p || m) + 1/2 KL(q || m),  log m = logaddexp(log p, log q) - log 2

    log_p, log_q: callables mapping grid points (M, D) float64 (a backend array on
    ``device``) to log-densities (M,) (arrays or Tensors; -inf where a density is 0), e.g.
    ``lambda x: tinydgm.data.log_density("eight_gaussians", x)`` or
    ``lambda x: flow.log_prob(td.tensor(x, dtype="float32"))``. bounds: (low, high) per
    dimension (D = 1..3); resolution: points per dimension. The box must hold (nearly) all
    the mass of both densities: the returned masses show how much it holds. KL is +inf
    where p > 0 and q = 0 on the grid. Returns Divergences (floats, nats).
    """
    points, volume = _grid(bounds, resolution, device)
    xp = backend.xp_of(points)
    lp = _log_density_on(log_p, points, chunk, "log_p")
    lq = _log_density_on(log_q, points, chunk, "log_q")
    lm = xp.logaddexp(lp, lq) - math.log(2)
    kl_pq = float(_kl_terms(xp, lp, lq).sum()) * volume
    kl_qp = float(_kl_terms(xp, lq, lp).sum()) * volume
    jsd = 0.5 * (float(_kl_terms(xp, lp, lm).sum()) + float(_kl_terms(xp, lq, lm).sum())) * volume
    return Divergences(kl_pq=kl_pq, kl_qp=kl_qp, jsd=jsd, mass_p=float(xp.exp(lp).sum()) * volume,
                       mass_q=float(xp.exp(lq).sum()) * volume)
