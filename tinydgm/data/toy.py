"""Toy 2-D densities: seeded samplers, and the exact log-density where it has a closed form.

Every sampler is ``name(n, rng=None, *, <shape parameters>, dtype=None)`` and returns a NumPy
array of shape (n, 2) in the default floating dtype (float32 unless changed). The draws
are i.i.d. from the density documented in the sampler's docstring: ``rng`` is a NumPy
Generator (or an int seed; None means the process-wide generator that ``td.seed`` resets),
and the same seed gives the same samples.

| name             | model                                                     | exact log p(x) |
| ---------------- | --------------------------------------------------------- | -------------- |
| two_moons        | two noisy half circles (scikit-learn's make_moons)         | no             |
| eight_gaussians  | equal-weight mixture of 8 isotropic Gaussians on a circle | yes            |
| grid_gaussians   | equal-weight mixture of 25 isotropic Gaussians, 5x5 grid  | yes            |
| checkerboard     | uniform on the dark squares of a board                     | yes            |
| rings            | concentric circles blurred by isotropic Gaussian noise     | yes            |
| spirals          | two interleaved noisy spiral arms                          | no             |
| swiss_roll       | the 2-D swiss roll (scikit-learn's make_swiss_roll, x-z)   | no             |

``TOYS`` maps each name to a ``Toy`` (sampler, log-density or None); ``sample_toy(name, n,
rng, **params)`` and ``log_density(name, x, **params)`` look them up. The shape parameters
passed to ``log_density`` must be the ones the samples were drawn with. ``log_density``
works on NumPy or CuPy arrays of shape (..., 2) and returns (...,) in x's floating dtype;
it is a reference to compare a trained flow or EBM against (KL, NLL gap, heatmaps), not a
differentiable op: use ``tinydgm.distributions.MixtureOfGaussians`` for a differentiable
8-Gaussians target.

The geometry of two moons, spirals, swiss roll and rings follows the toy sets of FFJORD
(Grathwohl et al. 2019) and scikit-learn, with the angles drawn at random (not on a grid)
so that samples are i.i.d.
"""
import math
from typing import Callable, NamedTuple, Optional

import numpy as np

from tinydgm import backend
from tinydgm.data.transforms import as_generator

__all__ = ["two_moons", "eight_gaussians", "grid_gaussians", "checkerboard", "rings", "spirals", "swiss_roll",
           "eight_gaussians_log_density", "grid_gaussians_log_density", "checkerboard_log_density",
           "rings_log_density", "eight_gaussians_centres", "grid_gaussians_centres",
           "Toy", "TOYS", "sample_toy", "log_density"]

LOG_2PI = math.log(2 * math.pi)


def _check_n(n, who):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{who}: n must be a non-negative integer, got {n!r}")
    return int(n)


def _finish(x, dtype):
    """(n, 2) float64 draws -> the requested (default) floating dtype."""
    dtype = backend.get_default_dtype() if dtype is None else np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"toy samplers return floating arrays; got dtype={dtype}")
    return np.ascontiguousarray(x, dtype=dtype)


def _points(x, who):
    """Validate log-density input: an array of shape (..., 2); returns (xp, x as floats)."""
    if not backend.is_array(x):
        x = np.asarray(x, dtype=backend.get_default_dtype())
    if x.ndim == 0 or x.shape[-1] != 2:
        raise ValueError(f"{who}: x must have shape (..., 2), got shape {tuple(x.shape)}")
    if x.dtype.kind != "f":
        x = x.astype(backend.get_default_dtype())
    return backend.get_array_module(x), x


# ----------------------------------------------------------------------------- two moons

def two_moons(n, rng=None, *, noise=0.1, dtype=None):
    """Two interleaved half circles (scikit-learn's ``make_moons`` with random angles).

    Each point picks a moon with probability 1/2 and an angle t ~ U[0, pi]:
        upper moon  m = (cos t, sin t),   lower moon  m = (1 - cos t, 1/2 - sin t),
    then x = 2 (m + noise * eps) + (-1, -0.2),  eps ~ N(0, I)  (FFJORD's scaling, which
    centres the pair on about [-3, 3] x [-1.2, 1.8]). No closed-form density (a Gaussian
    blur of arcs).
    """
    n = _check_n(n, "two_moons")
    rng = as_generator(rng)
    lower = rng.random(n) < 0.5
    t = math.pi * rng.random(n)
    m = np.stack([np.cos(t), np.sin(t)], axis=1)
    m[lower] = np.stack([1 - np.cos(t[lower]), 0.5 - np.sin(t[lower])], axis=1)
    x = 2 * (m + noise * rng.standard_normal((n, 2))) + np.array([-1.0, -0.2])
    return _finish(x, dtype)


# ----------------------------------------------------------------------------- mixtures of isotropic Gaussians

def _mixture_log_density(xp, x, centres, std):
    """log p(x) = logsumexp_k [ -|x - c_k|^2 / (2 std^2) ] - log K - log(2 pi std^2): an
    equal-weight mixture of K isotropic 2-D Gaussians N(c_k, std^2 I)."""
    c = centres.astype(x.dtype)
    sq = ((x[..., None, :] - c) ** 2).sum(axis=-1)                         # (..., K)
    e = -sq / (2 * std ** 2)
    top = e.max(axis=-1)
    lse = top + xp.log(xp.exp(e - top[..., None]).sum(axis=-1))
    return lse - math.log(len(c)) - LOG_2PI - 2 * math.log(std)


# ----------------------------------------------------------------------------- 8 Gaussians

def eight_gaussians_centres(radius=2.0, xp=np):
    """The 8 means c_k = radius (cos(2 pi k/8), sin(2 pi k/8)), k = 0..7, as an (8, 2) array."""
    angles = 2 * math.pi * xp.arange(8) / 8
    return radius * xp.stack([xp.cos(angles), xp.sin(angles)], axis=1)


def eight_gaussians(n, rng=None, *, radius=2.0, std=0.2, dtype=None):
    """Equal-weight mixture of 8 isotropic Gaussians on a circle:

        p(x) = 1/8 sum_k N(x | c_k, std^2 I),   c_k = radius (cos(2 pi k/8), sin(2 pi k/8)).
    """
    n = _check_n(n, "eight_gaussians")
    rng = as_generator(rng)
    k = rng.integers(0, 8, n)
    x = eight_gaussians_centres(radius)[k] + std * rng.standard_normal((n, 2))
    return _finish(x, dtype)


def eight_gaussians_log_density(x, *, radius=2.0, std=0.2):
    """log p(x) = logsumexp_k [ -|x - c_k|^2 / (2 std^2) ] - log 8 - log(2 pi std^2)."""
    xp, x = _points(x, "eight_gaussians_log_density")
    return _mixture_log_density(xp, x, eight_gaussians_centres(radius, xp), std)


# ----------------------------------------------------------------------------- 5x5 grid of Gaussians

def _check_grid(size, spacing, who, std=1.0):
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise ValueError(f"{who}: size must be a positive integer, got {size!r}")
    if not spacing > 0:
        raise ValueError(f"{who}: spacing must be positive, got {spacing!r}")
    if not std > 0:
        raise ValueError(f"{who}: std must be positive, got {std!r}")
    return int(size)


def grid_gaussians_centres(size=5, spacing=2.0, xp=np):
    """The size^2 means on a square grid centred at the origin, row by row (x fastest):
    c_ij = spacing (i - (size-1)/2, j - (size-1)/2); the default is {-4, -2, 0, 2, 4}^2."""
    size = _check_grid(size, spacing, "grid_gaussians_centres")
    ticks = spacing * (xp.arange(size) - (size - 1) / 2)
    gx, gy = xp.meshgrid(ticks, ticks, indexing="xy")
    return xp.stack([gx.reshape(-1), gy.reshape(-1)], axis=1)             # (size^2, 2)


def grid_gaussians(n, rng=None, *, size=5, spacing=2.0, std=0.05, dtype=None):
    """Equal-weight mixture of size^2 (25) isotropic Gaussians on a square grid, the "2D grid"
    of the mode-collapse literature (Dumoulin et al. 2017, ALI; Srivastava et al. 2017,
    VEEGAN; Lin et al. 2018, PacGAN: means (-4 + 2i, -4 + 2j), i, j = 0..4, std 0.05):

        p(x) = 1/25 sum_ij N(x | c_ij, std^2 I),   c_ij = spacing (i - 2, j - 2).
    """
    n = _check_n(n, "grid_gaussians")
    size = _check_grid(size, spacing, "grid_gaussians", std)
    rng = as_generator(rng)
    k = rng.integers(0, size * size, n)
    x = grid_gaussians_centres(size, spacing)[k] + std * rng.standard_normal((n, 2))
    return _finish(x, dtype)


def grid_gaussians_log_density(x, *, size=5, spacing=2.0, std=0.05):
    """log p(x) = logsumexp_ij [ -|x - c_ij|^2 / (2 std^2) ] - log size^2 - log(2 pi std^2)."""
    xp, x = _points(x, "grid_gaussians_log_density")
    size = _check_grid(size, spacing, "grid_gaussians_log_density", std)
    return _mixture_log_density(xp, x, grid_gaussians_centres(size, spacing, xp), std)


# ----------------------------------------------------------------------------- checkerboard

def _dark_cells(cells):
    """(i, j) column/row indices of the dark cells: i + j even, (0, 0) at the lower left."""
    return [(i, j) for j in range(cells) for i in range(cells) if (i + j) % 2 == 0]


def checkerboard(n, rng=None, *, cells=4, side=1.0, dtype=None):
    """Uniform density on the dark squares of a ``cells`` x ``cells`` board of squares of
    side ``side``, centred at the origin (the board covers [-cells*side/2, cells*side/2]^2).

    Cell (i, j) (column i, row j, counted from the lower-left corner) is dark when i + j is
    even; with m = ceil(cells^2 / 2) dark cells, p(x) = 1 / (m side^2) on them and 0
    elsewhere. The default board is FFJORD's: 8 unit squares in [-2, 2]^2.
    """
    n = _check_n(n, "checkerboard")
    if int(cells) != cells or cells < 1:
        raise ValueError(f"checkerboard: cells must be a positive integer, got {cells!r}")
    rng = as_generator(rng)
    dark = np.array(_dark_cells(int(cells)), dtype=np.float64)                # (m, 2)
    corner = dark[rng.integers(0, len(dark), n)] * side - cells * side / 2    # lower-left corners
    x = corner + side * rng.random((n, 2))
    return _finish(x, dtype)


def checkerboard_log_density(x, *, cells=4, side=1.0):
    """log p(x) = -log(m side^2) on the dark squares (half-open cells [a, a+side)), -inf off them."""
    xp, x = _points(x, "checkerboard_log_density")
    cells = int(cells)
    half = cells * side / 2
    ij = xp.floor((x + half) / side)                                         # cell indices
    inside = ((ij >= 0) & (ij < cells)).all(axis=-1)
    dark = inside & ((ij.sum(axis=-1) % 2) == 0)
    m = len(_dark_cells(cells))
    value = -math.log(m * side ** 2)
    return xp.where(dark, xp.asarray(value, dtype=x.dtype), xp.asarray(-math.inf, dtype=x.dtype))


# ----------------------------------------------------------------------------- rings

RINGS_RADII = (0.75, 1.5, 2.25, 3.0)


def _ring_params(radii, std, weights):
    radii = np.asarray(radii, dtype=np.float64).reshape(-1)
    if len(radii) == 0 or (radii < 0).any():
        raise ValueError(f"rings: radii must be a non-empty list of non-negative numbers, got {radii}")
    if not std > 0:
        raise ValueError(f"rings: std must be positive, got {std!r}")
    if weights is None:
        weights = np.full(len(radii), 1 / len(radii))
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if weights.shape != radii.shape or (weights < 0).any() or not math.isclose(weights.sum(), 1, abs_tol=1e-9):
        raise ValueError(f"rings: weights must be {len(radii)} non-negative numbers summing to 1, "
                         f"got {weights}")
    return radii, weights


def rings(n, rng=None, *, radii=RINGS_RADII, std=0.08, weights=None, dtype=None):
    """Concentric circles blurred by isotropic Gaussian noise (FFJORD's "rings", random angles):

        k ~ Categorical(weights)  (equal by default),  theta ~ U[0, 2 pi),  eps ~ N(0, I),
        x = radii[k] (cos theta, sin theta) + std * eps.

    So each ring is a circle convolved with N(0, std^2 I), whose density is (with r = |x|)
        p_k(x) = 1/(2 pi std^2) exp(-(r^2 + R_k^2) / (2 std^2)) I0(r R_k / std^2),
    I0 the modified Bessel function of the first kind: see ``rings_log_density``. (The radius
    |x| of ring k follows a Rice(R_k, std) distribution.)
    """
    n = _check_n(n, "rings")
    radii, weights = _ring_params(radii, std, weights)
    rng = as_generator(rng)
    k = rng.choice(len(radii), size=n, p=weights)
    theta = 2 * math.pi * rng.random(n)
    circle = radii[k, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return _finish(circle + std * rng.standard_normal((n, 2)), dtype)


# Coefficients c_k = ((2k-1)!!)^2 / (k! 8^k) of the large-z expansion
#   I0(z) e^-z sqrt(2 pi z) = sum_k c_k z^-k,   c_k = c_{k-1} (2k-1)^2 / (8k).
_I0_ASYMPTOTIC = [1.0]
for _k in range(1, 12):
    _I0_ASYMPTOTIC.append(_I0_ASYMPTOTIC[-1] * (2 * _k - 1) ** 2 / (8 * _k))


def _log_i0e(xp, z):
    """log(I0(z) e^-z) for z >= 0 without overflow: numpy's i0 below z = 50, the asymptotic
    expansion (12 terms; the first omitted one is about 1e-17 at z = 50) above."""
    small = xp.minimum(z, 50.0)
    series = xp.log(xp.i0(small)) - small
    big = xp.maximum(z, 50.0)
    terms = sum(c * big ** -k for k, c in enumerate(_I0_ASYMPTOTIC))
    asymptotic = -0.5 * xp.log(2 * math.pi * big) + xp.log(terms)
    return xp.where(z < 50.0, series, asymptotic)


def rings_log_density(x, *, radii=RINGS_RADII, std=0.08, weights=None):
    """Exact log-density of ``rings``, stable for thin rings (large r R / std^2):

        log p(x) = logsumexp_k [ log w_k - log(2 pi std^2) - (r - R_k)^2 / (2 std^2)
                                 + log(I0(z_k) e^-z_k) ],   z_k = r R_k / std^2,  r = |x|.
    """
    xp, x = _points(x, "rings_log_density")
    radii, weights = _ring_params(radii, std, weights)
    r = xp.sqrt((x.astype(np.float64) ** 2).sum(axis=-1))[..., None]          # (..., 1)
    R = xp.asarray(radii)
    with np.errstate(divide="ignore"):                                         # a zero weight: -inf
        log_w = xp.log(xp.asarray(weights))
    terms = (log_w - LOG_2PI - 2 * math.log(std) - (r - R) ** 2 / (2 * std ** 2)
             + _log_i0e(xp, r * R / std ** 2))
    top = terms.max(axis=-1)
    lse = top + xp.log(xp.exp(terms - top[..., None]).sum(axis=-1))
    return lse.astype(x.dtype)


# ----------------------------------------------------------------------------- spirals

def spirals(n, rng=None, *, turns=1.5, noise=0.1, dtype=None):
    """Two interleaved spiral arms (FFJORD's "2spirals", without its uniform jitter):

        t = sqrt(u) * 2 pi turns,  u ~ U[0, 1)   (so points spread evenly along the arm),
        x = s (-t cos t, t sin t) / 3 + noise * eps,   s = +1 or -1 with probability 1/2.
    No closed-form density.
    """
    n = _check_n(n, "spirals")
    rng = as_generator(rng)
    t = np.sqrt(rng.random(n)) * 2 * math.pi * turns
    arm = np.where(rng.random(n) < 0.5, 1.0, -1.0)[:, None]
    x = arm * np.stack([-t * np.cos(t), t * np.sin(t)], axis=1) / 3 + noise * rng.standard_normal((n, 2))
    return _finish(x, dtype)


# ----------------------------------------------------------------------------- swiss roll

def swiss_roll(n, rng=None, *, noise=0.2, dtype=None):
    """The swiss roll seen from its side (scikit-learn's ``make_swiss_roll``, columns x and z,
    divided by 5 as in FFJORD):

        t = 1.5 pi (1 + 2 u),  u ~ U[0, 1),   x = (t cos t, t sin t) / 5 + noise * eps.
    No closed-form density.
    """
    n = _check_n(n, "swiss_roll")
    rng = as_generator(rng)
    t = 1.5 * math.pi * (1 + 2 * rng.random(n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 5 + noise * rng.standard_normal((n, 2))
    return _finish(x, dtype)


# ----------------------------------------------------------------------------- registry

class Toy(NamedTuple):
    """A named toy density: its sampler and, where it has a closed form, its log-density."""
    name: str
    sample: Callable
    log_density: Optional[Callable]


TOYS = {toy.name: toy for toy in (
    Toy("two_moons", two_moons, None),
    Toy("eight_gaussians", eight_gaussians, eight_gaussians_log_density),
    Toy("grid_gaussians", grid_gaussians, grid_gaussians_log_density),
    Toy("checkerboard", checkerboard, checkerboard_log_density),
    Toy("rings", rings, rings_log_density),
    Toy("spirals", spirals, None),
    Toy("swiss_roll", swiss_roll, None),
)}


def _toy(name, who):
    if name not in TOYS:
        raise ValueError(f"{who}: unknown toy {name!r}; the toys are {', '.join(TOYS)}")
    return TOYS[name]


def sample_toy(name, n, rng=None, **params):
    """n i.i.d. samples (n, 2) of the toy ``name`` (see ``TOYS``), e.g. ``sample_toy("rings", 1000, 0)``."""
    return _toy(name, "sample_toy").sample(n, rng, **params)


def log_density(name, x, **params):
    """The exact log-density of toy ``name`` at x (..., 2); raises for toys without a closed form."""
    toy = _toy(name, "log_density")
    if toy.log_density is None:
        exact = ", ".join(t.name for t in TOYS.values() if t.log_density is not None)
        raise ValueError(f"log_density: the toy {name!r} has no closed-form density "
                         f"(toys with one: {exact})")
    return toy.log_density(x, **params)
