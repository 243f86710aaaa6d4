"""Linear-Gaussian latent-variable models: factor analysis and probabilistic PCA
(tomczak-dgm, "Latent variable model ... Factor Analysis"; intro lecture eqs. 6-8, "My
second generative model"; Tipping & Bishop 1999; Ghahramani & Hinton 1996):

    p(z) = N(0, I_K),    p(x | z) = N(W z + b, Psi),    W: (D, K)

    factor analysis:  Psi = diag(psi_1..psi_D)         fitted by EM
    PPCA:             Psi = sigma^2 I_D                 fitted in closed form or by EM

Both integrals are Gaussian, so everything is exact:

    p(x)     = N(x | b, C),           C = W W^T + Psi                         (marginal)
    p(z | x) = N(z | M^{-1} W^T Psi^{-1} (x - b), M^{-1}),  M = I_K + W^T Psi^{-1} W

``log_prob`` never forms the D x D matrix C. With M as above, the Woodbury identity and
the matrix determinant lemma give

    C^{-1}  = Psi^{-1} - Psi^{-1} W M^{-1} W^T Psi^{-1}
    log |C| = log |M| + sum_d log psi_d

so log p(x) costs O(D K^2 + K^3) for the model and O(N D K) for the batch, instead of
O(D^3). log |M| and v^T M^{-1} v come from a Cholesky factor M = L L^T written with
engine ops (``_cholesky_whiten``), so log p(x) is differentiable to any order in W, b
and Psi (the engine has no Cholesky or slogdet op; the factorisation is a loop of K
vectorised column steps, fine for the small K of these models). The fits (EM, the
closed form) and the posterior need no gradient: they use the array module's linear
algebra (``xp.linalg``) in float64.

The PPCA parameterisation in the intro lecture writes the noise as sigma I_D (eq. 7); here
sigma^2 is the variance, as in Tipping & Bishop.
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad, tensor
from tinydgm.autodiff.functional import broadcast_to, exp, expand_dims, log, sqrt, stack
from tinydgm.evaluate import bits_per_dim as _bits_per_dim
from tinydgm.models.protocol import as_batch
from tinydgm.nn import init
from tinydgm.nn.module import Module, Parameter

__all__ = ["linear_gaussian_log_prob", "FactorAnalysis", "PPCA", "fit_toy_3d"]

_LOG_2PI = math.log(2.0 * math.pi)
_PSI_FLOOR = 1e-6          # relative floor on EM's noise variances (a factor can explain a variable exactly)


# ----------------------------------------------------------------------------- the density

def linear_gaussian_log_prob(x, W, b, psi):
    """log N(x | b, W W^T + diag(psi)) per row of x, (N,), by Woodbury and the
    determinant lemma (module docstring): O(N D K + D K^2 + K^3), differentiable to any
    order in x, W, b and psi (Tensors: x (N, D), W (D, K), b (D,), psi (D,) variances).

        log p(x) = -1/2 [ D log 2 pi + log |M| + sum_d log psi_d
                          + (x - b)^T Psi^{-1} (x - b) - v^T M^{-1} v ],
        v = W^T Psi^{-1} (x - b),   M = I + W^T Psi^{-1} W
    """
    D, K = W.shape
    r = x - b                                              # x - b
    r_psi = r / psi                                        # Psi^{-1} (x - b)
    W_psi = W / expand_dims(psi, 1)                        # Psi^{-1} W
    eye = tensor(backend.xp_of(W.data).eye(K), dtype=W.dtype, device=W.device)
    M = eye + W.T @ W_psi                                  # I + W^T Psi^{-1} W
    v = r_psi @ W                                          # W^T Psi^{-1} (x - b), (N, K)
    l_diag, y = _cholesky_whiten(M, v)                     # M = L L^T, y = L^{-1} v
    log_det_C = 2.0 * log(l_diag).sum() + log(psi).sum()   # determinant lemma
    quad = (r * r_psi).sum(axis=-1) - (y * y).sum(axis=-1)  # Woodbury
    return -0.5 * (D * _LOG_2PI + log_det_C + quad)


def _cholesky_whiten(M, v):
    """(diag(L), y) with M = L L^T (lower triangular) and the rows of y = L^{-1} v^T, for an
    SPD M (K, K) and v (N, K), with engine ops only (differentiable to any order).

    Column j of L (Cholesky-Crout) and column j of y (forward substitution) need only the
    columns before them:
        l_jj = sqrt(M_jj - sum_{i<j} L_ji^2)
        L_ij = (M_ij - sum_{k<j} L_ik L_jk) / l_jj                 i > j
        y_j  = (v_j  - sum_{k<j} y_k  L_jk) / l_jj
    """
    K = M.shape[0]
    xp = backend.xp_of(M.data)
    rows = xp.arange(K)
    columns, diag, y_columns = [], [], []
    for j in range(K):
        m_col, v_j = M[:, j], v[:, j]
        if j == 0:
            pivot = M[0, 0]
        else:
            L_prev, y_prev = stack(columns, axis=1), stack(y_columns, axis=1)  # (K, j), (N, j)
            l_row = L_prev[j]                                                   # L_j,<j
            pivot = M[j, j] - (l_row * l_row).sum()
            m_col = m_col - L_prev @ l_row
            v_j = v_j - y_prev @ l_row
        l_jj = sqrt(pivot)
        below = Tensor((rows >= j).astype(M.dtype))     # column j of a lower-triangular L
        columns.append(m_col / l_jj * below)            # its entry j is pivot / l_jj = l_jj
        diag.append(l_jj)
        y_columns.append(v_j / l_jj)
    return stack(diag), stack(y_columns, axis=1)


# ----------------------------------------------------------------------------- shared model code

class _LinearGaussian(Module):
    """What FA and PPCA share: p(z) = N(0, I), p(x|z) = N(W z + b, diag(psi)). Subclasses
    say how psi is parameterised (``psi``) and how they are fitted (``fit``)."""

    def __init__(self, n_features, n_latent, rng=None, dtype=None, device=None):
        super().__init__()
        name = type(self).__name__
        for arg, value in (("n_features", n_features), ("n_latent", n_latent)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
        self.rng = backend.default_generator() if rng is None else rng
        self.n_features, self.n_latent = n_features, n_latent
        self.W = Parameter(init.normal((n_features, n_latent), 1.0 / math.sqrt(n_latent), self.rng, dtype, device))
        self.b = Parameter(init.zeros((n_features,), dtype, device))
        self.log_likelihood_history = []      # mean log p(x) per EM iteration of the last fit

    @property
    def psi(self):
        """The D noise variances diag(Psi), a Tensor (D,)."""
        raise NotImplementedError

    # --- the exact densities
    def log_prob(self, x):
        """Exact log p(x) = log N(x | b, W W^T + Psi) in nats, (N,), in O(N D K + D K^2)
        (Woodbury and the determinant lemma); differentiable in W, b and Psi."""
        x = self._as_batch(x, "log_prob")
        return linear_gaussian_log_prob(x, self.W, self.b, self.psi)

    def loss(self, x):
        """Mean negative log-likelihood of the batch (gradient training; ``fit`` is EM)."""
        return -self.log_prob(x).mean()

    def bits_per_dim(self, x):
        """-log p(x) / (D ln 2), (N,)."""
        return _bits_per_dim(-self.log_prob(x), self.n_features)

    def posterior(self, x):
        """The exact posterior p(z | x) = N(mean_n, cov) (Tipping & Bishop 1999 eq. 6;
        Bishop PRML eq. 12.42 and 12.66):

            cov = M^{-1},   mean_n = M^{-1} W^T Psi^{-1} (x_n - b),   M = I + W^T Psi^{-1} W

        (for PPCA M^{-1} = sigma^2 (W^T W + sigma^2 I)^{-1}). Returns (mean (N, K), cov
        (K, K)) as Tensors without a graph; the covariance is the same for every x.
        """
        x = self._as_batch(x, "posterior")
        W, b, psi = (a.astype("float64") for a in (self.W.data, self.b.data, self.psi.data))
        xp = backend.xp_of(W)
        cov = xp.linalg.inv(xp.eye(self.n_latent) + W.T @ (W / psi[:, None]))
        mean = ((x.data.astype("float64") - b) / psi) @ W @ cov       # rows: (M^{-1} W^T Psi^{-1} (x - b))^T
        return Tensor(mean.astype(self.W.dtype)), Tensor(cov.astype(self.W.dtype))

    def marginal_covariance(self):
        """C = W W^T + Psi as a dense (D, D) array (for checks and plots; O(D^2) memory)."""
        W, psi = self.W.data, self.psi.data
        return W @ W.T + backend.xp_of(W).diag(psi)

    def sample(self, n, rng=None):
        """n draws by ancestral sampling: z ~ N(0, I), x = W z + b + Psi^{1/2} eps, a Tensor
        (n, D) without a graph. rng: a Generator (default ``self.rng``)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{type(self).__name__}.sample: n must be a non-negative int, got {n!r}")
        rng = self.rng if rng is None else rng
        with no_grad():
            z = self._normal(rng, (n, self.n_latent))
            eps = self._normal(rng, (n, self.n_features))
            return z @ self.W.T + self.b + sqrt(self.psi) * eps

    def _normal(self, rng, shape):
        draws = backend.to_device(rng.standard_normal(shape), self.W.device)
        return Tensor(draws.astype(self.W.dtype))

    # --- fitting helpers (float64 arrays, no graph)
    def _data_statistics(self, x):
        """(x as float64 array, mean b, biased covariance S = 1/N sum (x - b)(x - b)^T)."""
        x = self._as_batch(x, "fit").data.astype("float64")
        if x.shape[0] < 2:
            raise ValueError(f"{type(self).__name__}.fit: needs at least 2 examples, got {x.shape[0]}")
        mean = x.mean(axis=0)
        r = x - mean
        return x, mean, r.T @ r / x.shape[0]

    def _mean_log_likelihood(self, x, W, b, psi):
        """Mean log p(x) under float64 parameter arrays: the EM progress measure."""
        with no_grad():
            return float(linear_gaussian_log_prob(Tensor(x), Tensor(W), Tensor(b), Tensor(psi)).mean().item())

    def _initial_W(self, S, rng):
        """A random start for EM at the data's scale."""
        xp = backend.xp_of(S)
        scale = math.sqrt(float(xp.trace(S)) / (self.n_features * self.n_latent))
        return backend.to_device(rng.standard_normal((self.n_features, self.n_latent)),
                                 backend.device_of(S)) * scale

    def _set(self, W, b):
        self.W.data = W.astype(self.W.dtype)
        self.b.data = b.astype(self.b.dtype)

    def _as_batch(self, x, who):
        return as_batch(x, self.W, self.n_features, f"{type(self).__name__}.{who}")

    def extra_repr(self):
        return f"n_features={self.n_features}, n_latent={self.n_latent}"


def _check_iterations(name, n_iter, tol):
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"{name}: n_iter must be a positive int, got {n_iter!r}")
    if not tol >= 0:
        raise ValueError(f"{name}: tol must be >= 0, got {tol!r}")


# ----------------------------------------------------------------------------- factor analysis

class FactorAnalysis(_LinearGaussian):
    """Factor analysis: p(z) = N(0, I_K), p(x|z) = N(W z + b, diag(psi)) (tomczak-dgm,
    "Factor Analysis"; Rubin & Thayer 1982; Ghahramani & Hinton 1996).

    FactorAnalysis(n_features, n_latent, rng=None, dtype=None, device=None). Parameters:
    W (D, K), b (D,), log_psi (D,) (psi = exp(log_psi) > 0 for gradient training).
    ``fit(x)`` runs EM; ``log_prob``, ``posterior``, ``sample``, ``loss``,
    ``bits_per_dim`` as in the module docstring.
    """

    def __init__(self, n_features, n_latent, rng=None, dtype=None, device=None):
        super().__init__(n_features, n_latent, rng, dtype, device)
        self.log_psi = Parameter(init.zeros((n_features,), dtype, device))

    @property
    def psi(self):
        return exp(self.log_psi)

    def fit(self, x, n_iter=500, tol=1e-8, rng=None):
        """Maximum likelihood by EM (Ghahramani & Hinton 1996; Bishop PRML eq. 12.69-12.70),
        written with the data covariance S (b = the data mean, its exact ML value):

            E-step:  G = (I + W^T Psi^{-1} W)^{-1},  beta = G W^T Psi^{-1}
                     (E[z_n] = beta (x_n - b),  E[z_n z_n^T] = G + E[z_n] E[z_n]^T)
            M-step:  W   <- S beta^T (G + beta S beta^T)^{-1}
                     Psi <- diag(S - W beta S)      (floored at 1e-6 x the mean variance: a
                                                     factor may explain a variable exactly)

        Starts from a random W at the data's scale (rng, default ``self.rng``) and
        Psi = diag(S); stops after n_iter iterations or when the mean log-likelihood
        rises by less than tol. ``log_likelihood_history`` holds the mean log p(x) before
        each iteration and after the last (non-decreasing: EM's guarantee). Returns self.
        """
        _check_iterations("FactorAnalysis.fit", n_iter, tol)
        x, b, S = self._data_statistics(x)
        xp = backend.xp_of(S)
        W = self._initial_W(S, self.rng if rng is None else rng)
        psi = xp.diag(S).copy()
        floor = _PSI_FLOOR * float(xp.trace(S)) / self.n_features
        history = [self._mean_log_likelihood(x, W, b, psi)]
        for _ in range(n_iter):
            G = xp.linalg.inv(xp.eye(self.n_latent) + W.T @ (W / psi[:, None]))      # posterior covariance
            beta = G @ (W / psi[:, None]).T                                           # E[z|x] = beta (x - b)
            S_beta = S @ beta.T
            W = S_beta @ xp.linalg.inv(G + beta @ S_beta)           # 1/N sum E[z z^T] = G + beta S beta^T
            psi = xp.maximum(xp.diag(S) - (W * S_beta).sum(axis=1), floor)            # diag(S - W beta S)
            history.append(self._mean_log_likelihood(x, W, b, psi))
            if history[-1] - history[-2] < tol:
                break
        self._set(W, b)
        self.log_psi.data = xp.log(psi).astype(self.log_psi.dtype)
        self.log_likelihood_history = history
        return self


# ----------------------------------------------------------------------------- probabilistic PCA

class PPCA(_LinearGaussian):
    """Probabilistic PCA: p(z) = N(0, I_K), p(x|z) = N(W z + b, sigma^2 I_D) (Tipping &
    Bishop 1999; Roweis 1997; intro lecture eqs. 6-8).

    PPCA(n_features, n_latent, rng=None, dtype=None, device=None). Parameters: W (D, K),
    b (D,), log_sigma2 (1,). ``fit(x, method="closed_form"|"em")``; ``log_prob``,
    ``posterior``, ``sample``, ``loss``, ``bits_per_dim`` as in the module docstring.
    """

    def __init__(self, n_features, n_latent, rng=None, dtype=None, device=None):
        super().__init__(n_features, n_latent, rng, dtype, device)
        self.log_sigma2 = Parameter(init.zeros((1,), dtype, device))

    @property
    def sigma2(self):
        """The noise variance sigma^2, a Tensor (1,)."""
        return exp(self.log_sigma2)

    @property
    def psi(self):
        return broadcast_to(self.sigma2, (self.n_features,))

    def fit(self, x, method="closed_form", n_iter=2000, tol=1e-10, rng=None):
        """Maximum likelihood, in closed form (``method="closed_form"``) or by EM
        (``"em"``). Returns self.

        Closed form (Tipping & Bishop 1999 eqs. 7-8): with the eigenvalues
        lambda_1 >= ... >= lambda_D of the data covariance S and eigenvectors U,

            b = mean(x),  sigma^2 = 1/(D - K) sum_{j > K} lambda_j,
            W = U_K (Lambda_K - sigma^2 I)^{1/2}           (up to a rotation R, here I)

        (needs K < D). EM (Tipping & Bishop 1999 eqs. 29-30), M = W^T W + sigma^2 I:

            W       <- S W (sigma^2 I + M^{-1} W^T S W)^{-1}
            sigma^2 <- 1/D tr(S - S W M^{-1} W_new^T)

        from a random W at the data's scale (rng, default ``self.rng``), until n_iter
        iterations or a rise of the mean log-likelihood below tol. EM is slow when
        sigma^2 is small next to the kept eigenvalues: near the optimum the scale of W
        moves by a factor of about 1 + O(sigma^2 / lambda_k) per iteration (the closed form
        has no such problem). ``log_likelihood_history``: the mean log p(x) per iteration (EM), or the single
        closed-form value.
        """
        if method not in ("closed_form", "em"):
            raise ValueError(f'PPCA.fit: method must be "closed_form" or "em", got {method!r}')
        _check_iterations("PPCA.fit", n_iter, tol)
        x, b, S = self._data_statistics(x)
        if method == "closed_form":
            W, sigma2 = self._closed_form(S)
            history = [self._mean_log_likelihood(x, W, b, self._psi_array(S, sigma2))]
        else:
            W, sigma2, history = self._em(x, b, S, n_iter, tol, self.rng if rng is None else rng)
        self._set(W, b)
        self.log_sigma2.data = backend.xp_of(S).log(backend.xp_of(S).asarray([sigma2])).astype(self.log_sigma2.dtype)
        self.log_likelihood_history = history
        return self

    def _closed_form(self, S):
        D, K = self.n_features, self.n_latent
        if K >= D:
            raise ValueError(f"PPCA.fit: the closed form needs n_latent < n_features, got n_latent={K}, "
                             f"n_features={D} (sigma^2 averages the D - K discarded eigenvalues)")
        xp = backend.xp_of(S)
        lam, U = xp.linalg.eigh(S)
        lam, U = lam[::-1], U[:, ::-1]                        # descending eigenvalues
        sigma2 = max(float(lam[K:].mean()), _PSI_FLOOR * float(lam.mean()))
        W = U[:, :K] * xp.sqrt(xp.maximum(lam[:K] - sigma2, 0.0))
        return W, sigma2

    def _em(self, x, b, S, n_iter, tol, rng):
        xp = backend.xp_of(S)
        D, K = self.n_features, self.n_latent
        W = self._initial_W(S, rng)
        sigma2 = float(xp.trace(S)) / D
        floor = _PSI_FLOOR * sigma2
        history = [self._mean_log_likelihood(x, W, b, self._psi_array(S, sigma2))]
        for _ in range(n_iter):
            M_inv = xp.linalg.inv(W.T @ W + sigma2 * xp.eye(K))
            S_W = S @ W
            W_new = S_W @ xp.linalg.inv(sigma2 * xp.eye(K) + M_inv @ W.T @ S_W)       # eq. 29
            sigma2 = max(float(xp.trace(S) - xp.sum(S_W * (W_new @ M_inv))) / D, floor)  # eq. 30
            W = W_new
            history.append(self._mean_log_likelihood(x, W, b, self._psi_array(S, sigma2)))
            if history[-1] - history[-2] < tol:
                break
        return W, sigma2, history

    def _psi_array(self, S, sigma2):
        return backend.xp_of(S).full((self.n_features,), sigma2)


# ----------------------------------------------------------------------------- demo data

def fit_toy_3d(n=500, seed=0):
    """The data of a demo panel: 3-D points near a line through b along W, with a small
    noise variance on two axes and a large one on the third, and a PPCA and a factor
    analysis with one latent dimension fitted to them. PPCA's isotropic noise tilts its
    line toward the noisy axis (the top principal direction); FA gives each axis its own
    variance and recovers the generating line. (One factor in 3-D is identifiable; in 2-D
    it is not, so the toy is 3-D: plot any two coordinates.)

    Returns a dict of NumPy arrays and models: "x" (n, 3), "ppca", "fa" (fitted, float64),
    "true_W" (3, 1), "true_b" (3,), "true_psi" (3,) (the generating parameters).
    """
    xp = backend.module_for_device("cpu")
    rng = backend.rng(seed)
    true_W = xp.array([[2.0], [1.0], [0.5]])
    true_b, true_psi = xp.array([1.0, -1.0, 0.0]), xp.array([0.05, 0.05, 2.0])
    z = rng.standard_normal((n, 1))
    x = z @ true_W.T + true_b + rng.standard_normal((n, 3)) * xp.sqrt(true_psi)      # x = W z + b + eps
    ppca = PPCA(3, 1, rng=rng, dtype="float64").fit(x)
    fa = FactorAnalysis(3, 1, rng=rng, dtype="float64").fit(x)
    return {"x": x, "ppca": ppca, "fa": fa, "true_W": true_W, "true_b": true_b, "true_psi": true_psi}
