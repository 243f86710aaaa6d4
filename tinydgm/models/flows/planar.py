"""Planar and radial flows (Rezende & Mohamed 2015, "Variational inference with normalizing
flows", sec. 4.1, eq. 10-14 and appendix A.1; intro lecture part II, "Normalizing flows":
"linear-time determinant for planar and radial flows").

Both are applied here in the x -> z direction of this package's ``Transform`` contract, so
``forward`` (density evaluation) has the analytic log-determinant of the paper, and
``inverse`` (sampling) solves the map backwards:

    planar:  z = x + u_hat h(w^T x + b),        h = tanh
             log|det dz/dx| = log|1 + u_hat^T psi(x)|,   psi(x) = h'(w^T x + b) w      (eq. 10-12)
    radial:  z = x + beta h(alpha, r) (x - x0),  r = |x - x0|,  h(alpha, r) = 1 / (alpha + r)
             log|det dz/dx| = (d - 1) log(1 + beta h) + log(1 + beta h + beta h'(r) r)     (eq. 14)

Invertibility constraints (appendix A.1), enforced by the parametrisation so that any raw
parameter values are valid:

    planar:  u_hat = u + (m(w^T u) - w^T u) w / |w|^2,  m(a) = -1 + softplus(a)   =>  w^T u_hat >= -1
             (kept at least -1 + sqrt(eps) and computed so that it holds in floating point)
    radial:  alpha = softplus(alpha_raw) > 0,  beta = -alpha + softplus(beta_raw)   =>  beta >= -alpha

What is exact:
- Radial inverse: closed form. Taking norms of z - x0 = (x - x0)(1 + beta / (alpha + r)) gives
  r_z = r (alpha + beta + r) / (alpha + r), i.e. r^2 + (alpha + beta - r_z) r - alpha r_z = 0, whose
  non-negative root is r (computed in the cancellation-free form); then
  x = x0 + (z - x0) / (1 + beta / (alpha + r)). Engine ops throughout (differentiable).
- Planar inverse: along w the map is scalar. With a = w^T x + b and c = w^T u_hat >= -1,
      w^T z + b = a + c tanh(a)    (strictly increasing in a when c > -1),
  which is solved for a by bisection on [y - |c|, y + |c|] (y = w^T z + b; |a - y| <= |c|)
  followed by Newton steps, on the data (no graph: the result is a constant Tensor); then
  x = z - u_hat tanh(a). Exact to floating-point rounding (the root is bracketed and
  refined to machine precision), but not differentiable: sampling only.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import abs, log, log1p, maximum, softplus, sqrt, tanh, where
from tinydgm.models.flows.base import Compose, Flow, Transform
from tinydgm.nn import init
from tinydgm.nn.module import Parameter

__all__ = ["PlanarFlow", "RadialFlow", "planar_flow", "radial_flow"]

BISECTION_STEPS = 64        # halves the bracket 2|c| below float64 resolution
NEWTON_STEPS = 3


def _check_event(x, dim, who):
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{who}: input must have shape (N, {dim}), got {tuple(x.shape)}")


class PlanarFlow(Transform):
    """One planar layer z = x + u_hat tanh(w^T x + b) on vectors of size ``dim`` (see the
    module docstring for the constraint and the numerical inverse).

    u, w ~ N(0, init_std^2), b = 0 at initialisation (``rng`` seeds the draw)."""

    def __init__(self, dim, init_std=0.5, rng=None, dtype=None, device=None):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"PlanarFlow: dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.u = Parameter(init.normal((dim,), init_std, rng, dtype, device))
        self.w = Parameter(init.normal((dim,), init_std, rng, dtype, device))
        self.b = Parameter(init.zeros((), dtype, device))

    def u_hat(self):
        """u_hat = u + (m(w^T u) - w^T u) w / |w|^2: w^T u_hat = m(w^T u) > -1 (see ``_constrained``)."""
        return self._constrained()[0]

    def _constrained(self):
        """(u_hat, c) with c = w^T u_hat = max(m(w^T u), -1 + delta), m(a) = -1 + softplus(a).

        The same u_hat as the paper's formula, computed so that the constraint holds in
        floating point: u_hat = u_perp + c w / |w|^2 with u_perp, the part of u orthogonal
        to w, projected out twice (one pass leaves a rounding error of size eps |w^T u|
        along w, which for w^T u = -1e6 in float32 pushes w^T u_hat well below -1; the
        second pass leaves eps |u_perp| |w|). delta = sqrt(eps) of the dtype is the margin
        that keeps c above -1 where softplus underflows (w^T u below about -17 in float32)
        and covers that remaining rounding for |u_perp| |w| up to about 1 / sqrt(eps)."""
        w_w = (self.w * self.w).sum()
        w_u = (self.w * self.u).sum()
        u_perp = self.u - (w_u / w_w) * self.w
        u_perp = u_perp - ((self.w * u_perp).sum() / w_w) * self.w
        delta = float(backend.xp_of(self.w.data).finfo(self.w.dtype).eps) ** 0.5
        c = maximum(softplus(w_u) - 1, delta - 1)
        return u_perp + (c / w_w) * self.w, c

    def forward(self, x):
        _check_event(x, self.dim, "PlanarFlow")
        u_hat, c = self._constrained()
        a = x @ self.w + self.b                              # w^T x + b, shape (N,)
        h = tanh(a)
        z = x + h.reshape(-1, 1) * u_hat                      # eq. 10
        # u_hat^T psi = h'(a) w^T u_hat = h'(a) c with h' = 1 - tanh^2 (eq. 11-12); 1 + h' c >= delta > 0
        log_det = log(abs(1 + (1 - h * h) * c))
        return z, log_det

    def inverse(self, z):
        _check_event(z, self.dim, "PlanarFlow.inverse")
        with no_grad():
            u_hat, c = (t.data for t in self._constrained())  # c = w^T u_hat >= -1 + delta
            w, b = self.w.data, self.b.data
            xp = backend.xp_of(z.data)
            y = z.data @ w + b                                # = a + c tanh(a)
            a = _solve_planar(xp, y, c)
            h = xp.tanh(a)
            x = z.data - h[:, None] * u_hat
            log_det = -xp.log(xp.abs(1 + (1 - h * h) * c))
        return Tensor(x), Tensor(log_det)

    def extra_repr(self):
        return f"dim={self.dim}"


def _solve_planar(xp, y, c):
    """The root a of g(a) = a + c tanh(a) - y (c >= -1: g is non-decreasing), elementwise.

    |a - y| = |c tanh(a)| <= |c| brackets the root; bisection then Newton polishing
    (a Newton step is kept only where it stays inside the bracket)."""
    width = xp.abs(c) + 1e-12
    lo, hi = y - width, y + width
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        above = mid + c * xp.tanh(mid) - y > 0
        hi = xp.where(above, mid, hi)
        lo = xp.where(above, lo, mid)
    a = 0.5 * (lo + hi)
    for _ in range(NEWTON_STEPS):
        t = xp.tanh(a)
        slope = 1 + c * (1 - t * t)
        step = (a + c * t - y) / xp.where(slope > 0, slope, 1)
        new = a - step
        a = xp.where((slope > 0) & (new >= lo) & (new <= hi), new, a)
    return a


class RadialFlow(Transform):
    """One radial layer z = x + beta / (alpha + r) (x - x0), r = |x - x0|, on vectors of size
    ``dim`` (Rezende & Mohamed 2015, eq. 14; closed-form inverse in the module docstring).

    x0 ~ N(0, init_std^2); alpha_raw, beta_raw ~ N(0, init_std^2) at initialisation."""

    def __init__(self, dim, init_std=0.5, rng=None, dtype=None, device=None):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"RadialFlow: dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.x0 = Parameter(init.normal((dim,), init_std, rng, dtype, device))
        self.alpha_raw = Parameter(init.normal((), init_std, rng, dtype, device))
        self.beta_raw = Parameter(init.normal((), init_std, rng, dtype, device))

    def alpha(self):
        """alpha = softplus(alpha_raw) > 0."""
        return softplus(self.alpha_raw)

    def beta(self):
        """beta = -alpha + softplus(beta_raw) >= -alpha (appendix A.1)."""
        return softplus(self.beta_raw) - self.alpha()

    def forward(self, x):
        _check_event(x, self.dim, "RadialFlow")
        alpha, beta = self.alpha(), self.beta()
        diff = x - self.x0
        r = sqrt((diff * diff).sum(axis=1))
        h = 1 / (alpha + r)                                   # h(alpha, r)
        beta_h = beta * h
        z = x + beta_h.reshape(-1, 1) * diff
        # 1 + beta h + beta h'(r) r with h' = -h^2:  1 + beta h (1 - h r) = 1 + beta h^2 alpha
        log_det = (self.dim - 1) * log1p(beta_h) + log1p(beta_h * h * alpha)
        return z, log_det

    def inverse(self, z):
        _check_event(z, self.dim, "RadialFlow.inverse")
        alpha, beta = self.alpha(), self.beta()
        diff_z = z - self.x0
        r_z = sqrt((diff_z * diff_z).sum(axis=1))
        # r^2 + B r - alpha r_z = 0, B = alpha + beta - r_z; the non-negative root without cancellation
        big_b = alpha + beta - r_z
        root = sqrt(big_b * big_b + 4 * alpha * r_z)
        positive = (big_b.data >= 0)
        r = where(positive, 2 * alpha * r_z / where(positive, big_b + root, 1), 0.5 * (root - big_b))
        h = 1 / (alpha + r)
        beta_h = beta * h
        x = self.x0 + diff_z / (1 + beta_h).reshape(-1, 1)
        log_det = -((self.dim - 1) * log1p(beta_h) + log1p(beta_h * h * alpha))
        return x, log_det

    def extra_repr(self):
        return f"dim={self.dim}"


def planar_flow(dim=2, n_layers=16, init_std=0.5, rng=None, dtype=None, device=None):
    """``Flow`` of ``n_layers`` planar layers on vectors of size ``dim`` (base N(0, I))."""
    return Flow(Compose([PlanarFlow(dim, init_std, rng, dtype, device) for _ in range(n_layers)]), (dim,))


def radial_flow(dim=2, n_layers=16, init_std=0.5, rng=None, dtype=None, device=None):
    """``Flow`` of ``n_layers`` radial layers on vectors of size ``dim`` (base N(0, I))."""
    return Flow(Compose([RadialFlow(dim, init_std, rng, dtype, device) for _ in range(n_layers)]), (dim,))
