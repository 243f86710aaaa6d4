"""The linear autoencoder and PCA (intro lecture part II, "Relation autoencoders and PCA",
eq. 19; Baldi & Hornik 1989):

    min_{V, W}  1/(2N) sum_n || x_n - V W x_n ||^2                              (eq. 19)

with encoder z = W x (W: K x D) and decoder x~ = V z (V: D x K), on centred data. Baldi &
Hornik show that every local minimum is global and that at it V W is the orthogonal
projection onto the span of the top-K principal directions of the data: gradient
descent on eq. 19 recovers the principal SUBSPACE (not the principal directions
themselves: V may be any basis of it, W = V^+). ``principal_angles`` measures how close
two subspaces are (0 when equal).

The model has no density (no log_prob, no sample): it is the deterministic ancestor of
PPCA (tinydgm.models.latent.linear_gaussian), whose maximum-likelihood W spans the same
subspace (Tipping & Bishop 1999), and of the VAE.
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, tensor
from tinydgm.nn import init
from tinydgm.nn.module import Module, Parameter

__all__ = ["LinearAutoencoder", "principal_angles"]


class LinearAutoencoder(Module):
    """LinearAutoencoder(n_features, n_latent, rng=None, dtype=None, device=None): x~ = V W x.

    Parameters: encoder W (K, D) and decoder V (D, K), small random values (a zero start
    is a saddle point of eq. 19). Rows of a batch are examples, so the code computes
    z = x W^T and x~ = z V^T. Centre the data first (eq. 19 has no bias).
    """

    def __init__(self, n_features, n_latent, rng=None, dtype=None, device=None):
        super().__init__()
        for arg, value in (("n_features", n_features), ("n_latent", n_latent)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LinearAutoencoder: {arg} must be a positive int, got {value!r}")
        rng = backend.default_generator() if rng is None else rng
        self.n_features, self.n_latent = n_features, n_latent
        self.W = Parameter(init.normal((n_latent, n_features), 1.0 / math.sqrt(n_features), rng, dtype, device))
        self.V = Parameter(init.normal((n_features, n_latent), 1.0 / math.sqrt(n_latent), rng, dtype, device))

    def encode(self, x):
        """z = W x, (N, K)."""
        return self._as_batch(x, "encode") @ self.W.T

    def decode(self, z):
        """x~ = V z, (N, D)."""
        return z @ self.V.T

    def forward(self, x):
        """The reconstruction V W x, (N, D)."""
        return self.decode(self.encode(x))

    def loss(self, x):
        """Eq. 19: 1/(2N) sum_n || x_n - V W x_n ||^2, a 0-d Tensor."""
        x = self._as_batch(x, "loss")
        residual = x - self.decode(self.encode(x))
        return 0.5 * (residual * residual).sum(axis=-1).mean()

    def subspace(self):
        """An orthonormal basis (D, K) of the decoder's column space span(V), as an array."""
        q, _ = backend.xp_of(self.V.data).linalg.qr(self.V.data)
        return q

    def _as_batch(self, x, who):
        if not isinstance(x, Tensor):
            x = tensor(x, dtype=self.W.dtype, device=self.W.device)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"LinearAutoencoder.{who}: x must have shape (N, D) = (N, {self.n_features}), "
                             f"got {tuple(x.shape)}")
        if not bool(backend.xp_of(x.data).isfinite(x.data).all()):
            raise ValueError(f"LinearAutoencoder.{who}: x contains NaN or inf")
        return x

    def extra_repr(self):
        return f"n_features={self.n_features}, n_latent={self.n_latent}"


def principal_angles(A, B):
    """The principal angles (radians, ascending) between span(A) and span(B), A (D, K_a),
    B (D, K_b) arrays (Bjorck & Golub 1973): with orthonormal bases Q_A, Q_B, the singular
    values of Q_A^T Q_B are the cosines of the min(K_a, K_b) angles. All zero when the
    spans are equal (or one contains the other)."""
    xp = backend.xp_of(A)
    q_a, _ = xp.linalg.qr(A)
    q_b, _ = xp.linalg.qr(B)
    cosines = xp.linalg.svd(q_a.T @ q_b, compute_uv=False)
    return xp.sort(xp.arccos(xp.clip(cosines, -1.0, 1.0)))
