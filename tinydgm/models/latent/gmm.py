"""The Gaussian mixture model fitted by EM (intro lecture eqs. 3-5, "My first
generative model"; Dempster, Laird & Rubin 1977; Bishop PRML sec. 9.2):

    p(z = k) = pi_k,    p(x | z = k) = N(x | mu_k, Sigma_k),    p(x) = sum_k pi_k N(x | mu_k, Sigma_k)

a latent-variable model whose latent z is a one-hot vector (intro lecture eq. 9). The
posterior over the component is the responsibility

    r_nk = p(z = k | x_n) = pi_k N(x_n | mu_k, Sigma_k) / p(x_n)              (Bayes' rule)

Covariances are "full" (Sigma_k any SPD matrix) or "diag" (Sigma_k = diag(sigma_k^2)).
A full Sigma_k is held through the Cholesky factor of its precision, Sigma_k^{-1} = U_k U_k^T
with U_k upper triangular (as scikit-learn does), so the log-density needs no solve and is
differentiable with engine ops:

    log N(x | mu, Sigma) = -D/2 log 2 pi + sum_d log |U_dd| - 1/2 || U^T (x - mu) ||^2

A diagonal mixture is ``tinydgm.distributions.MixtureOfGaussians`` (log_prob and sample
come from it). EM (``fit``) runs on float64 arrays without a graph; ``log_prob`` is
differentiable in every parameter, so a mixture can also be trained by gradient descent
on ``loss``.
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.functional import abs as _abs
from tinydgm.autodiff.functional import einsum, log, log_softmax, logsumexp, softmax
from tinydgm.distributions import MixtureOfGaussians, Normal
from tinydgm.evaluate import bits_per_dim as _bits_per_dim
from tinydgm.models.protocol import as_batch
from tinydgm.nn import init
from tinydgm.nn.module import Module, Parameter

__all__ = ["GaussianMixture", "full_component_log_prob"]

_LOG_2PI = math.log(2.0 * math.pi)
_COVARIANCES = ("full", "diag")


def full_component_log_prob(x, means, precision_cholesky):
    """log N(x_n | mu_k, (U_k U_k^T)^{-1}) for every point and component, (N, K).

    x (N, D), means (K, D), precision_cholesky (K, D, D): U_k, upper triangular (only the
    upper triangle is read). Differentiable to any order in all three.
    """
    K, D = means.shape
    xp = backend.xp_of(means.data)
    U = precision_cholesky * Tensor(xp.triu(xp.ones((D, D), dtype=means.dtype)))
    y = einsum("nd,kde->nke", x, U) - einsum("kd,kde->ke", means, U)      # U_k^T (x_n - mu_k)
    diag_U = (U * Tensor(xp.eye(D, dtype=means.dtype))).sum(axis=-1)        # (K, D)
    log_det = log(_abs(diag_U)).sum(axis=-1)                                  # 1/2 log |Sigma_k^{-1}|
    return -0.5 * D * _LOG_2PI + log_det - 0.5 * (y * y).sum(axis=-1)


class GaussianMixture(Module):
    """GaussianMixture(n_components, n_features, covariance="full"|"diag", rng=None,
    dtype=None, device=None): p(x) = sum_k pi_k N(x | mu_k, Sigma_k).

    Parameters: weights_logits (K,) (pi = softmax), means (K, D), and
    precision_cholesky (K, D, D) for "full" or log_scales (K, D) (log sigma) for "diag".
    ``fit(x)`` runs EM and records the mean log-likelihood per iteration in
    ``log_likelihood_history``; ``log_prob``, ``responsibilities``, ``sample``, ``loss``,
    ``bits_per_dim``; ``covariances()`` gives the (K, D, D) covariance matrices.
    """

    def __init__(self, n_components, n_features, covariance="full", rng=None, dtype=None, device=None):
        super().__init__()
        for arg, value in (("n_components", n_components), ("n_features", n_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GaussianMixture: {arg} must be a positive int, got {value!r}")
        if covariance not in _COVARIANCES:
            raise ValueError(f'GaussianMixture: covariance must be "full" or "diag", got {covariance!r}')
        self.rng = backend.default_generator() if rng is None else rng
        self.n_components, self.n_features, self.covariance = n_components, n_features, covariance
        K, D = n_components, n_features
        self.weights_logits = Parameter(init.zeros((K,), dtype, device))
        self.means = Parameter(init.normal((K, D), 1.0, self.rng, dtype, device))
        if covariance == "full":
            eye = backend.module_for_device(device).eye(D, dtype=self.means.dtype)
            self.precision_cholesky = Parameter(backend.module_for_device(device).stack([eye] * K))
        else:
            self.log_scales = Parameter(init.zeros((K, D), dtype, device))
        self.log_likelihood_history = []

    # ----------------------------------------------------------------------------- the density

    def component_log_prob(self, x):
        """log N(x_n | mu_k, Sigma_k), (N, K)."""
        x = self._as_batch(x, "component_log_prob")
        return self._component_log_prob(x, self.means, self._covariance_parameter())

    def log_prob(self, x):
        """Exact log p(x) = logsumexp_k [log pi_k + log N(x | mu_k, Sigma_k)] in nats, (N,)."""
        x = self._as_batch(x, "log_prob")
        if self.covariance == "diag":
            return MixtureOfGaussians(self.weights_logits, self.means, self.log_scales).log_prob(x)
        return logsumexp(self._log_joint(x), axis=-1)

    def responsibilities(self, x):
        """The posterior p(z = k | x_n) = softmax_k(log pi_k + log N(x_n | mu_k, Sigma_k)), (N, K)."""
        return softmax(self._log_joint(self._as_batch(x, "responsibilities")), axis=-1)

    def loss(self, x):
        """Mean negative log-likelihood of the batch (gradient training; ``fit`` is EM)."""
        return -self.log_prob(x).mean()

    def bits_per_dim(self, x):
        """-log p(x) / (D ln 2), (N,)."""
        return _bits_per_dim(-self.log_prob(x), self.n_features)

    def _log_joint(self, x):
        """log pi_k + log N(x_n | mu_k, Sigma_k) = log p(x_n, z = k), (N, K)."""
        log_pi = log_softmax(self.weights_logits, axis=-1)
        return log_pi + self._component_log_prob(x, self.means, self._covariance_parameter())

    def _component_log_prob(self, x, means, covariance_parameter):
        if self.covariance == "full":
            return full_component_log_prob(x, means, covariance_parameter)
        components = Normal(means, log_scale=covariance_parameter)                 # (K, D)
        return components.log_prob(x.reshape(x.shape[0], 1, self.n_features)).sum(axis=-1)

    def _covariance_parameter(self):
        return self.precision_cholesky if self.covariance == "full" else self.log_scales

    def covariances(self):
        """Sigma_k as a (K, D, D) array (no graph)."""
        xp = backend.xp_of(self.means.data)
        if self.covariance == "diag":
            variances = xp.exp(2 * self.log_scales.data)
            return variances[:, :, None] * xp.eye(self.n_features, dtype=variances.dtype)
        U = xp.triu(self.precision_cholesky.data)
        return xp.linalg.inv(U @ xp.swapaxes(U, -1, -2))

    @property
    def weights(self):
        """pi = softmax(weights_logits), a Tensor (K,)."""
        return softmax(self.weights_logits, axis=-1)

    # ----------------------------------------------------------------------------- sampling

    def sample(self, n, rng=None):
        """n draws by ancestral sampling: k ~ Categorical(pi), x = mu_k + Sigma_k^{1/2} eps
        (intro lecture: "pick component from prior, then draw from p(x|z)"). A Tensor (n, D)
        without a graph; rng: a Generator (default ``self.rng``)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"GaussianMixture.sample: n must be a non-negative int, got {n!r}")
        rng = self.rng if rng is None else rng
        with no_grad():
            if self.covariance == "diag":
                return MixtureOfGaussians(self.weights_logits, self.means, self.log_scales).sample((n,), rng=rng)
            xp = backend.xp_of(self.means.data)
            pi = self.weights.data.astype("float64")
            k = backend.to_device(rng.choice(self.n_components, size=n, p=backend.to_numpy(pi / pi.sum())),
                                  self.means.device)
            L = xp.linalg.cholesky(self.covariances())                       # Sigma_k = L_k L_k^T
            eps = backend.to_device(rng.standard_normal((n, self.n_features)), self.means.device)
            x = self.means.data[k] + xp.einsum("nde,ne->nd", L[k], eps.astype(L.dtype))
            return Tensor(x.astype(self.means.dtype))

    # ----------------------------------------------------------------------------- EM

    def fit(self, x, n_iter=100, tol=1e-8, reg_covar=1e-6, rng=None):
        """Maximum likelihood by EM (Dempster et al. 1977; Bishop PRML eq. 9.23-9.27):

            E-step:  r_nk = pi_k N(x_n | mu_k, Sigma_k) / sum_j pi_j N(x_n | mu_j, Sigma_j)
            M-step:  N_k = sum_n r_nk,  pi_k = N_k / N,  mu_k = 1/N_k sum_n r_nk x_n,
                     Sigma_k = 1/N_k sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T + reg_covar I
                     (diag: only the diagonal)

        Starts from K distinct data points as means (drawn with rng, default ``self.rng``),
        the data covariance for every component and equal weights. Stops after n_iter
        iterations or when the mean log-likelihood rises by less than tol.
        ``log_likelihood_history`` holds the mean log p(x) at each E-step and after the
        last M-step; with reg_covar = 0 EM guarantees it never decreases (reg_covar > 0
        keeps a component from collapsing onto one point, at the price of that guarantee).
        Returns self.
        """
        if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
            raise ValueError(f"GaussianMixture.fit: n_iter must be a positive int, got {n_iter!r}")
        if not tol >= 0 or not reg_covar >= 0:
            raise ValueError(f"GaussianMixture.fit: tol and reg_covar must be >= 0, got tol={tol!r}, "
                             f"reg_covar={reg_covar!r}")
        x = self._as_batch(x, "fit").data.astype("float64")
        N, D, K = x.shape[0], self.n_features, self.n_components
        if N < K:
            raise ValueError(f"GaussianMixture.fit: needs at least n_components = {K} examples, got {N}")
        xp = backend.xp_of(x)
        rng = self.rng if rng is None else rng
        means = x[backend.to_device(rng.choice(N, size=K, replace=False), backend.device_of(x))]
        r = x - x.mean(axis=0)
        covariances = xp.stack([r.T @ r / N + reg_covar * xp.eye(D)] * K)
        log_pi = xp.full((K,), -math.log(K))
        history = []
        for _ in range(n_iter + 1):
            log_joint = self._em_log_joint(x, log_pi, means, covariances)              # log p(x_n, z = k)
            log_px = _logsumexp_rows(xp, log_joint)
            history.append(float(log_px.mean()))
            if len(history) > n_iter or (len(history) > 1 and history[-1] - history[-2] < tol):
                break
            resp = xp.exp(log_joint - log_px[:, None])                                # E-step: r_nk
            log_pi, means, covariances = _m_step(xp, x, resp, reg_covar, self.covariance)
        self._set(log_pi, means, covariances)
        self.log_likelihood_history = history
        return self

    def _em_log_joint(self, x, log_pi, means, covariances):
        """log pi_k + log N(x_n | mu_k, Sigma_k) from float64 arrays, by the model's own formula."""
        with no_grad():
            parameter = self._covariance_parameter_from(covariances)
            return (Tensor(log_pi) + self._component_log_prob(Tensor(x), Tensor(means), Tensor(parameter))).data

    def _covariance_parameter_from(self, covariances):
        """U_k (upper, U_k U_k^T = Sigma_k^{-1}) or log sigma_k from covariance matrices."""
        xp = backend.xp_of(covariances)
        if self.covariance == "diag":
            return 0.5 * xp.log(xp.diagonal(covariances, axis1=-2, axis2=-1))
        L = xp.linalg.cholesky(covariances)                                        # Sigma = L L^T
        return xp.swapaxes(xp.linalg.inv(L), -1, -2)                               # U = L^{-T}

    def _set(self, log_pi, means, covariances):
        self.weights_logits.data = log_pi.astype(self.weights_logits.dtype)
        self.means.data = means.astype(self.means.dtype)
        parameter = self._covariance_parameter()
        parameter.data = self._covariance_parameter_from(covariances).astype(parameter.dtype)

    # ----------------------------------------------------------------------------- inputs

    def _as_batch(self, x, who):
        return as_batch(x, self.means, self.n_features, f"GaussianMixture.{who}")

    def extra_repr(self):
        return f"n_components={self.n_components}, n_features={self.n_features}, covariance={self.covariance!r}"


def _logsumexp_rows(xp, a):
    top = a.max(axis=1, keepdims=True)
    return (top + xp.log(xp.exp(a - top).sum(axis=1, keepdims=True)))[:, 0]


def _m_step(xp, x, resp, reg_covar, covariance):
    """(log pi, means, covariances) maximising the expected complete-data log-likelihood."""
    N, D = x.shape
    N_k = resp.sum(axis=0) + 10 * xp.finfo(x.dtype).eps           # an empty component keeps finite means
    means = (resp.T @ x) / N_k[:, None]                            # mu_k = 1/N_k sum_n r_nk x_n
    r = x[None, :, :] - means[:, None, :]                          # x_n - mu_k, (K, N, D)
    if covariance == "full":
        covariances = xp.einsum("nk,knd,kne->kde", resp, r, r) / N_k[:, None, None]
    else:
        covariances = (xp.einsum("nk,knd->kd", resp, r * r) / N_k[:, None])[:, :, None] * xp.eye(D)
    covariances = covariances + reg_covar * xp.eye(D)
    return xp.log(N_k / N_k.sum()), means, covariances
