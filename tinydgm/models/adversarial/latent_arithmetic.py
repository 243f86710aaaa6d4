"""Walks and arithmetic in a generator's latent space (Radford et al. 2016; intro lecture
part I, "GAN generalizes beyond training data" and "vector arithmetic on latent variables").

Interpolation: decode points along a path z_0 -> z_1; smooth transitions in x suggest the
generator generalises, sharp ones that it memorised.

    linear      z_t = (1 - t) z_0 + t z_1
    spherical   z_t = sin((1 - t) omega) / sin(omega) z_0 + sin(t omega) / sin(omega) z_1,
                cos(omega) = <z_0, z_1> / (|z_0| |z_1|)        (Shoemake 1985; White 2016)

Under a Gaussian prior in many dimensions, samples concentrate near the sphere of radius
sqrt(latent_dim); the straight line between two of them passes closer to the origin (a
region the generator never saw in training), the spherical path keeps the norm.

Vector arithmetic (lecture eq. 15, word2vec's z_king - z_man + z_woman ~ z_queen): with each
concept's z averaged over a few samples that show it (three in Radford et al., for stability),

    z = mean(z_a) - mean(z_b) + mean(z_c).

Each function takes Tensors or backend arrays and returns a Tensor (no graph) to pass to
``GAN.generate``.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor

__all__ = ["lerp", "slerp", "interpolate", "vector_arithmetic"]


def _array(z):
    data = z.data if isinstance(z, Tensor) else backend.as_array(z)
    if not backend.is_floating(data.dtype):
        data = data.astype(backend.get_default_dtype())
    return data


def _endpoints(z0, z1, steps, who):
    a, b = _array(z0), _array(z1)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"{who}: z0 and z1 must be latent vectors of the same shape (latent_dim,), got shapes "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"{who}: steps must be an int >= 2 (the two ends included), got {steps!r}")
    xp = backend.get_array_module(a)
    t = xp.linspace(0.0, 1.0, steps).astype(a.dtype)[:, None]        # (steps, 1)
    return xp, a, b, t


def lerp(z0, z1, steps):
    """z_t = (1 - t) z_0 + t z_1 for t = 0, 1/(steps-1), ..., 1: a Tensor (steps, latent_dim)."""
    _, a, b, t = _endpoints(z0, z1, steps, "lerp")
    return Tensor((1 - t) * a + t * b)


def slerp(z0, z1, steps, eps=1e-7):
    """Spherical interpolation: z_t = [sin((1-t) omega) z_0 + sin(t omega) z_1] / sin(omega),
    omega the angle between z_0 and z_1; a Tensor (steps, latent_dim). Where the two are
    (anti)parallel within ``eps`` the path is undefined or degenerate: lerp is used instead."""
    xp, a, b, t = _endpoints(z0, z1, steps, "slerp")
    cos_omega = float((a * b).sum() / (xp.linalg.norm(a) * xp.linalg.norm(b)))
    omega = float(xp.arccos(min(1.0, max(-1.0, cos_omega))))
    sin_omega = float(xp.sin(omega))
    if sin_omega < eps:
        return Tensor((1 - t) * a + t * b)
    return Tensor((xp.sin((1 - t) * omega) * a + xp.sin(t * omega) * b) / sin_omega)


def interpolate(z0, z1, steps, method="linear"):
    """``lerp`` (method="linear") or ``slerp`` (method="spherical") from z0 to z1."""
    if method == "linear":
        return lerp(z0, z1, steps)
    if method == "spherical":
        return slerp(z0, z1, steps)
    raise ValueError(f'interpolate: method must be "linear" or "spherical", got {method!r}')


def vector_arithmetic(z_a, z_b, z_c):
    """z = mean(z_a) - mean(z_b) + mean(z_c) (lecture eq. 15), each group of shape
    (n_i, latent_dim) averaged over its n_i samples; a Tensor (latent_dim,)."""
    groups = [_array(z) for z in (z_a, z_b, z_c)]
    shapes = [tuple(g.shape) for g in groups]
    if any(g.ndim != 2 or g.shape[0] < 1 for g in groups) or len({s[1] for s in shapes}) != 1:
        raise ValueError(f"vector_arithmetic: z_a, z_b, z_c must have shapes (n_i, latent_dim) with n_i >= 1 and "
                         f"one latent_dim, got {shapes}")
    mean_a, mean_b, mean_c = (g.mean(axis=0) for g in groups)
    return Tensor(mean_a - mean_b + mean_c)
