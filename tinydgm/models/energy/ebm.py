"""Energy-based models trained with MCMC (kuleshov-l12, "Energy based models: learning and
inference", "Exponential families: moment matching", "(Persistent) Contrastive Divergence";
tomczak-dgm, "Boltzmann machine").

    p_theta(x) = exp(f_theta(x)) / Z(theta),      Z(theta) = sum_x exp(f_theta(x))

with f_theta = -E_theta (the lecture writes f, the Boltzmann slides write -E). The gradient of
the average log-likelihood (kuleshov-l12, "Exponential families: moment matching"):

    grad_theta (1/|D|) sum_{x in D} log p_theta(x) = E_data[grad_theta f(x)] - E_{x ~ p_theta}[grad_theta f(x)]

(data moments minus model moments). The model expectation is replaced by a Monte Carlo
average over MCMC samples (kernels/mh.py, kernels/gibbs.py, kernels/langevin.py); with the
chains restarted at the data for k steps it is contrastive divergence (CD-k), with the chains
kept across parameter updates persistent CD (PCD, Tieleman 2008).

Three models, split into what the model is (energy / f, exact log Z where small), how it is
sampled (the kernels) and how it is trained (moment matching, CD/PCD):

- ``ExponentialFamily``: p(x) ∝ exp(theta^T T(x)) on {0, 1}^D; gradient E_data[T] - E_model[T],
  model moments from MH chains; the exact MLE (moment matching by enumeration and Newton) is
  the reference (``fit_exact``).
- ``FullyVisibleBoltzmannMachine``: E(x) = -x^T W x - b^T x, W symmetric with a zero diagonal
  (P(x_i = 1 | x_-i) = sigmoid(2 (W x)_i + b_i): see kernels/gibbs.py for the convention);
  exact log Z and log-likelihood by enumeration for small D; Gibbs sampling; CD-k/PCD.
- ``NeuralEBM``: f_theta an MLP on R^d, trained by PCD with Langevin or MH chains and a
  replay buffer, with the loss of Du & Mordatch 2019 (Implicit Generation and Generalization
  in Energy-Based Models, NeurIPS: contrastive term plus an L2 penalty on the
  energies' magnitudes, alpha (E(x+)^2 + E(x-)^2)):

      L = mean f(x_model) - mean f(x_data) + alpha (mean f(x_data)^2 + mean f(x_model)^2)

  whose gradient in theta is minus the lecture's likelihood gradient plus the regulariser
  (x_model is a constant: no gradient flows through the sampler).

The models at work (MH chains on a 2-D density, a neural EBM trained on a toy, its density
normalised on a grid) are in the repository's demos/energy.py; the kernel MMD used to
compare samples with data is ``tinydgm.evaluate.mmd``.

Limitations: exact quantities enumerate 2^D states (D <= ~20); the neural EBM's
normalisation is a grid sum (2-D only); Langevin/MH chains in training are short and
persistent, so the model's samples are only approximately from exp(f).
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad, tensor
from tinydgm.autodiff.reduce import logsumexp
from tinydgm.autodiff.shape import concatenate
from tinydgm.evaluate import binary_states, bits_per_dim, log_partition_by_enumeration
from tinydgm.kernels import mh
from tinydgm.kernels.gibbs import gibbs_fvbm
from tinydgm.kernels.langevin import langevin
from tinydgm.models.protocol import as_samples
from tinydgm.nn import init
from tinydgm.nn.activations import ELU
from tinydgm.nn.linear import Linear
from tinydgm.nn.module import Module, Parameter, Sequential

__all__ = ["ExponentialFamily", "ising_chain_statistics", "FullyVisibleBoltzmannMachine", "NeuralEBM"]

MAX_ENUMERATION_DIMS = 20


def _check_int(value, name, who, low=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{who}: {name} must be an integer >= {low}, got {value!r}")
    return value


def _generator(rng):
    return backend.default_generator() if rng is None else rng


# ============================================================================= exponential family

def ising_chain_statistics(x):
    """T(x) = (x_1, ..., x_D, x_1 x_2, ..., x_{D-1} x_D): the sufficient statistics of an Ising
    chain (fields and nearest-neighbour couplings), (N, D) -> (N, 2D - 1); Tensors or arrays."""
    if isinstance(x, Tensor):
        return concatenate([x, x[:, :-1] * x[:, 1:]], axis=1)
    xp = backend.get_array_module(x)
    return xp.concatenate([x, x[:, :-1] * x[:, 1:]], axis=1)


class ExponentialFamily(Module):
    """p(x; theta) = exp(theta^T T(x)) / Z(theta) on x in {0, 1}^D (kuleshov-l12, "Exponential
    families: moment matching").

        model = ExponentialFamily(ising_chain_statistics, n_dims=4, n_stats=7)
        model.fit_moment_matching(x_data, rng=td.rng(0))     # MCMC moments (MH chains)
        model.fit_exact(x_data)                               # the exact MLE, by enumeration
        fit(model, x_data, SGD(model.parameters(), lr=0.1), epochs=10, batch_size=100)   # loss

    statistics: T, a function (N, D) -> (N, K) working on Tensors (engine ops) and arrays.
    The maximum-likelihood theta matches the moments: E_model[T] = E_data[T] (the gradient
    below is zero there), and the log-likelihood is concave in theta. n_chains, n_steps: the
    persistent MH chains of ``loss`` (``mcmc_moments`` takes its own per call).
    """

    def __init__(self, statistics, n_dims, n_stats, dtype=None, device=None, n_chains=500, n_steps=20):
        super().__init__()
        self.statistics = statistics
        self.n_dims = _check_int(n_dims, "n_dims", "ExponentialFamily")
        self.n_stats = _check_int(n_stats, "n_stats", "ExponentialFamily")
        self.n_chains = _check_int(n_chains, "n_chains", "ExponentialFamily")
        self.n_steps = _check_int(n_steps, "n_steps", "ExponentialFamily")
        self.theta = Parameter(init.zeros((n_stats,), dtype, device))
        self.chains = None                                  # persistent MCMC states (C, D)
        self.rng = None                                     # the chains' generator in ``loss`` (fit lends its own)

    def extra_repr(self):
        return f"n_dims={self.n_dims}, n_stats={self.n_stats}"

    def _stats_array(self, x):
        with no_grad():
            return self.statistics(tensor(x, dtype=self.theta.dtype, device=self.theta.device)).data

    def log_unnormalised(self, x):
        """theta^T T(x), (N,)."""
        if not isinstance(x, Tensor):
            x = tensor(x, dtype=self.theta.dtype, device=self.theta.device)
        return self.statistics(x) @ self.theta

    def log_partition(self):
        """log Z(theta) = logsumexp over all 2^D states (engine ops: differentiable)."""
        if self.n_dims > MAX_ENUMERATION_DIMS:
            raise ValueError(f"ExponentialFamily.log_partition: enumeration needs n_dims <= {MAX_ENUMERATION_DIMS}, "
                             f"got {self.n_dims}")
        states = binary_states(self.n_dims, dtype=self.theta.dtype, xp=backend.module_for_device(self.theta.device))
        return logsumexp(self.log_unnormalised(states), axis=0)

    def log_prob(self, x):
        """Exact log p(x) = theta^T T(x) - log Z(theta), (N,)."""
        return self.log_unnormalised(x) - self.log_partition()

    def bits_per_dim(self, x):
        """-log p(x) / (D ln 2), (N,) (exact, by enumeration)."""
        return bits_per_dim(-self.log_prob(x), self.n_dims)

    def data_moments(self, x):
        """E_data[T] = (1/|D|) sum_x T(x), (K,) array."""
        return self._stats_array(x).mean(axis=0)

    def exact_moments(self):
        """E_model[T] by enumeration, (K,) array."""
        states = binary_states(self.n_dims, dtype=self.theta.dtype, xp=backend.module_for_device(self.theta.device))
        with no_grad():
            p = self.log_prob(states).exp().data
        return p @ self._stats_array(states)

    def _uniform_states(self, n, rng):
        xp = backend.module_for_device(self.theta.device)
        return xp.asarray((rng.random((n, self.n_dims)) < 0.5).astype(self.theta.dtype))

    def _mh_steps(self, x, n_steps, rng):
        """n_steps single-site MH flips of every chain in x (C, D), in place (kernels/mh.py's
        batched twin: one batched evaluation of theta^T T per step)."""
        xp = backend.module_for_device(self.theta.device)
        theta = self.theta.data

        def log_p(states, _params):
            return self._stats_array(states) @ theta

        sites = xp.asarray(rng.integers(0, self.n_dims, (n_steps, x.shape[0])))
        log_u = xp.log(xp.asarray(rng.random((n_steps, x.shape[0]))))
        mh.mh_binary_xp(mh.flip_delta_from_log_p(log_p), None, x, sites, log_u)
        return x

    def negative_samples(self, n_chains=500, n_steps=20, rng=None):
        """The persistent MH chains ``self.chains`` (C, D) after n_steps more steps (started
        uniformly at random), so successive calls continue them (PCD)."""
        rng = _generator(rng)
        if self.chains is None or self.chains.shape[0] != n_chains:
            self.chains = self._uniform_states(n_chains, rng)
        return self._mh_steps(self.chains, n_steps, rng)

    def mcmc_moments(self, n_chains=500, n_steps=20, rng=None):
        """E_model[T] estimated from the persistent MH chains (``negative_samples``)."""
        return self.data_moments(self.negative_samples(n_chains, n_steps, rng))

    def loss(self, x):
        """The moment-matching surrogate, what ``train.fit`` minimises:

            L = mean_chains theta^T T(x_model) - mean_data theta^T T(x),   x_model held fixed

        dL/dtheta = E_model[T] - E_data[T], minus the lecture's gradient, with E_model from
        ``negative_samples(self.n_chains, self.n_steps, self.rng)`` (``self.rng`` is lent by
        ``train.fit``). Its value is not a likelihood."""
        x_model = self.negative_samples(self.n_chains, self.n_steps, self.rng)
        return self.log_unnormalised(x_model).mean() - self.log_unnormalised(x).mean()

    def sample(self, n, rng=None, n_steps=None):
        """n states, a Tensor (n, D) (no graph): n independent MH chains from uniform random
        states after ``n_steps`` single-site steps each (default 100 D)."""
        rng = _generator(rng)
        n_steps = 100 * self.n_dims if n_steps is None else n_steps
        return as_samples(self._mh_steps(self._uniform_states(n, rng), n_steps, rng))

    def fit_moment_matching(self, x_data, n_iters=300, lr=0.5, n_chains=500, n_steps=20, rng=None, average_from=0.5):
        """Gradient ascent on the log-likelihood with the lecture's gradient,

            theta <- theta + lr_t (E_data[T] - E_model[T]),   E_model from MCMC (``mcmc_moments``),

        lr_t = lr / sqrt(1 + t / 10) (decaying: the MCMC estimate is noisy). theta is set to
        the average of the iterates after ``average_from`` of the run (Polyak averaging).
        Returns the history of theta (n_iters, K) as an array."""
        data_T = self.data_moments(x_data)
        xp = backend.get_array_module(data_T)
        history, start = [], int(n_iters * average_from)
        for t in range(n_iters):
            gradient = data_T - self.mcmc_moments(n_chains, n_steps, rng)
            self.theta.data = self.theta.data + lr / math.sqrt(1 + t / 10) * gradient
            history.append(self.theta.data.copy())
        history = xp.stack(history)
        self.theta.data = history[start:].mean(axis=0)
        return history

    def fit_exact(self, x_data, n_iters=50, tol=1e-12):
        """The exact MLE by Newton's method on the concave log-likelihood, moments by
        enumeration: theta <- theta + Cov_model[T]^-1 (E_data[T] - E_model[T])."""
        data_T = self.data_moments(x_data)
        xp = backend.get_array_module(data_T)
        states = binary_states(self.n_dims, dtype=self.theta.dtype, xp=xp)
        T_all = self._stats_array(states)
        for _ in range(n_iters):
            with no_grad():
                p = self.log_prob(states).exp().data
            mean = p @ T_all
            cov = (T_all * p[:, None]).T @ T_all - xp.outer(mean, mean)
            step = xp.linalg.solve(cov, data_T - mean)
            self.theta.data = self.theta.data + step
            if float(xp.abs(step).max()) < tol:
                break
        return self.theta.data.copy()


# ============================================================================= Boltzmann machine

class FullyVisibleBoltzmannMachine(Module):
    """The fully visible Boltzmann machine (tomczak-dgm, "Boltzmann machine"):

        E(x) = -x^T W x - b^T x,   p(x) = exp(-E(x)) / Z,   x in {0, 1}^D

    W is used through its symmetric zero-diagonal part, W_sym = ((A + A^T) / 2) * (1 - I),
    A = ``self.W`` the free parameter, so x^T W_sym x = sum_{i != j} A_ij x_i x_j and
    d(x^T W_sym x)/dA_ij = x_i x_j (i != j). Hence the likelihood gradient (data moments minus
    model moments):

        d mean log p / dA = (E_data[x x^T] - E_model[x x^T]) * (1 - I),
        d mean log p / db = E_data[x] - E_model[x].

    Sampling: single-site Gibbs with P(x_i = 1 | x_-i) = sigmoid(2 (W_sym x)_i + b_i)
    (kernels/gibbs.py). Training: ``loss(x)`` runs CD-k (chains from the data) or PCD (chains
    kept in ``self.chains``) and returns mean E(x_data) - mean E(x_model), whose gradient is
    minus the CD estimate of the likelihood gradient (``train.fit`` minimises it; fit lends
    its generator as ``self.rng``). Exact log Z / log p by enumeration for D <= 20.
    """

    def __init__(self, n_dims, k=1, persistent=False, n_chains=100, rng=None, dtype=None, device=None):
        super().__init__()
        self.n_dims = _check_int(n_dims, "n_dims", "FullyVisibleBoltzmannMachine")
        self.k = _check_int(k, "k", "FullyVisibleBoltzmannMachine")
        self.persistent, self.n_chains = bool(persistent), n_chains
        self.W = Parameter(init.normal((n_dims, n_dims), 0.01, rng, dtype, device))
        self.b = Parameter(init.zeros((n_dims,), dtype, device))
        xp = backend.module_for_device(self.b.device)
        self.register_buffer("offdiag", (1 - xp.eye(n_dims)).astype(self.b.dtype))
        self.chains = None
        self.rng = None

    def extra_repr(self):
        return f"n_dims={self.n_dims}, k={self.k}, persistent={self.persistent}"

    def _as_input(self, x, who):
        if not isinstance(x, Tensor):
            x = tensor(x, dtype=self.b.dtype, device=self.b.device)
        if x.ndim != 2 or x.shape[1] != self.n_dims:
            raise ValueError(f"FullyVisibleBoltzmannMachine.{who}: x must have shape (N, {self.n_dims}), "
                             f"got {tuple(x.shape)}")
        return x

    def coupling(self):
        """W_sym = ((A + A^T) / 2) * (1 - I): symmetric, zero diagonal (a Tensor)."""
        return (self.W + self.W.T) * 0.5 * Tensor(self.offdiag)

    def energy(self, x):
        """E(x) = -x^T W_sym x - b^T x, (N,)."""
        x = self._as_input(x, "energy")
        return -((x @ self.coupling()) * x).sum(axis=1) - x @ self.b

    def log_partition(self):
        """log Z = logsumexp_x(-E(x)) over all 2^D states, with engine ops (differentiable)."""
        if self.n_dims > MAX_ENUMERATION_DIMS:
            raise ValueError(f"FullyVisibleBoltzmannMachine.log_partition: enumeration needs n_dims <= "
                             f"{MAX_ENUMERATION_DIMS}, got {self.n_dims}")
        states = binary_states(self.n_dims, dtype=self.b.dtype, xp=backend.module_for_device(self.b.device))
        return logsumexp(-self.energy(states), axis=0)

    def log_partition_by_enumeration(self):
        """log Z as a float via ``tinydgm.evaluate.log_partition_by_enumeration`` (chunked, no graph)."""
        with no_grad():
            return log_partition_by_enumeration(lambda s: -self.energy(s).data, self.n_dims,
                                                dtype=self.b.dtype, xp=backend.module_for_device(self.b.device))

    def log_prob(self, x):
        """Exact log p(x) = -E(x) - log Z, (N,) (differentiable in W and b)."""
        return -self.energy(x) - self.log_partition()

    def bits_per_dim(self, x):
        """-log p(x) / (D ln 2), (N,) (exact, by enumeration)."""
        return bits_per_dim(-self.log_prob(x), self.n_dims)

    def _weights(self):
        with no_grad():
            return self.coupling().data, self.b.data

    def sample(self, n, rng=None, n_sweeps=100, x0=None):
        """n states after ``n_sweeps`` Gibbs sweeps from x0 (default: uniform random), a Tensor
        (n, D) on the model's device (no graph)."""
        rng = _generator(rng)
        W, b = self._weights()
        if x0 is None:
            x0 = (rng.random((n, self.n_dims)) < 0.5).astype(W.dtype)
        samples, _ = gibbs_fvbm(W, b, x0, 1, rng, burn_in=n_sweeps - 1)
        return as_samples(backend.to_device(samples[0], self.b.device), W.dtype)

    def negative_samples(self, x_data, rng=None):
        """x_model for the negative phase: k Gibbs sweeps from the data (CD-k) or from the
        persistent chains (PCD)."""
        rng = _generator(rng)
        W, b = self._weights()
        x_data = x_data.data if isinstance(x_data, Tensor) else x_data
        if self.persistent:
            if self.chains is None:
                self.chains = (rng.random((self.n_chains, self.n_dims)) < 0.5).astype(W.dtype)
            start = self.chains
        else:
            start = x_data
        samples, x = gibbs_fvbm(W, b, start, 1, rng, burn_in=self.k - 1)
        if self.persistent:
            self.chains = x
        return backend.to_device(samples[0], self.b.device).astype(W.dtype)

    def statistics(self, x):
        """The sufficient statistics' means (E[x x^T] * (1 - I), E[x]) of a batch (arrays)."""
        x = x.data if isinstance(x, Tensor) else x
        return (x.T @ x / x.shape[0]) * self.offdiag, x.mean(axis=0)

    def cd_gradient(self, x_data, rng=None):
        """The CD-k / PCD estimate of d mean log p / d(A, b): positive minus negative phase."""
        x_model = self.negative_samples(x_data, rng)
        pos_W, pos_b = self.statistics(x_data)
        neg_W, neg_b = self.statistics(x_model)
        return pos_W - neg_W, pos_b - neg_b

    def contrastive_loss(self, x_data, x_model):
        """mean E(x_data) - mean E(x_model) (x_model constant): its gradient is minus the
        Monte Carlo likelihood gradient."""
        return self.energy(x_data).mean() - self.energy(Tensor(x_model)).mean()

    def loss(self, x):
        """The CD-k / PCD surrogate loss of a batch (what ``train.fit`` minimises)."""
        x = self._as_input(x, "loss")
        return self.contrastive_loss(x, self.negative_samples(x, self.rng))


# ============================================================================= neural EBM

class NeuralEBM(Module):
    """p(x) ∝ exp(f_theta(x)) on R^d with f_theta an MLP (kuleshov-l12, "Energy based models:
    learning and inference": "can plug in pretty much any function f_theta(x) you want").

        model = NeuralEBM(2, hidden=(64, 64), sampler="langevin")
        loss = model.loss(x_batch)           # PCD with the replay buffer, Du & Mordatch's loss
        model.sample(500, td.rng(0))

    Training (persistent contrastive divergence with a replay buffer, Du & Mordatch 2019,
    their replay buffer): each step draws the chains' starting points from a buffer of past samples, a
    fraction ``reinit`` of them restarted uniformly in ``box``, runs ``n_steps`` of the sampler
    ("langevin": unadjusted Langevin, x' = x + tau grad f + noise_scale eps, noise_scale None
    meaning sqrt(2 tau); "mala"; "mh": random-walk Metropolis–Hastings with ``mh_step``),
    writes the results back, and uses them as x_model in

        L = mean f(x_model) - mean f(x_data) + alpha (mean f(x_data)^2 + mean f(x_model)^2).
    """

    SAMPLERS = ("langevin", "mala", "mh")

    def __init__(self, n_dims=2, hidden=(64, 64), sampler="langevin", n_steps=20, step_size=0.01,
                 noise_scale=None, mh_step=0.3, alpha=0.1, buffer_size=5000, reinit=0.05, box=(-4.0, 4.0),
                 rng=None, dtype=None, device=None):
        super().__init__()
        if sampler not in self.SAMPLERS:
            raise ValueError(f"NeuralEBM: sampler must be one of {self.SAMPLERS}, got {sampler!r}")
        self.n_dims = _check_int(n_dims, "n_dims", "NeuralEBM")
        widths = (n_dims,) + tuple(hidden)
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [Linear(a, b, rng=rng, dtype=dtype, device=device), ELU()]
        layers.append(Linear(widths[-1], 1, rng=rng, dtype=dtype, device=device))
        self.net = Sequential(*layers)
        self.sampler, self.n_steps, self.step_size = sampler, n_steps, step_size
        self.noise_scale, self.mh_step, self.alpha = noise_scale, mh_step, alpha
        self.buffer_size, self.reinit, self.box = buffer_size, reinit, (float(box[0]), float(box[1]))
        self.buffer = None             # the replay buffer of chain states (NumPy, on the host)
        self.last_accept_rate = None
        self.rng = None

    def extra_repr(self):
        return f"n_dims={self.n_dims}, sampler={self.sampler!r}, n_steps={self.n_steps}"

    @property
    def dtype(self):
        return self.net[0].weight.dtype

    @property
    def device(self):
        return self.net[0].weight.device

    def f(self, x):
        """f_theta(x) = -E_theta(x), the unnormalised log-density, (N,)."""
        if not isinstance(x, Tensor):
            x = tensor(x, dtype=self.dtype, device=self.device)
        if x.ndim != 2 or x.shape[1] != self.n_dims:
            raise ValueError(f"NeuralEBM.f: x must have shape (N, {self.n_dims}), got {tuple(x.shape)}")
        return self.net(x).reshape(-1)

    def energy(self, x):
        """E_theta(x) = -f_theta(x), (N,)."""
        return -self.f(x)

    def _uniform(self, n, rng):
        low, high = self.box
        return rng.uniform(low, high, (n, self.n_dims)).astype(self.dtype)

    def run_chains(self, x0, rng, n_steps=None):
        """n_steps of the model's sampler from x0 (C, d); returns (final states, acceptance rate)."""
        n_steps = self.n_steps if n_steps is None else n_steps
        if self.sampler == "mh":
            res = mh.metropolis_hastings_batched(self.f, x0, 1, rng, step_size=self.mh_step, burn_in=n_steps - 1)
        else:
            res = langevin(self.f, x0, 1, rng, step_size=self.step_size, mala=self.sampler == "mala",
                           burn_in=n_steps - 1, noise_scale=None if self.sampler == "mala" else self.noise_scale)
        return res.x, float(res.accept_rate.mean())

    def negative_samples(self, n, rng=None):
        """x_model (n, d): chains started from the replay buffer (a fraction ``reinit`` afresh,
        uniform in ``box``), run ``n_steps``, and written back into the buffer."""
        rng = _generator(rng)
        if self.buffer is None:
            self.buffer = self._uniform(self.buffer_size, rng)
        index = rng.integers(0, len(self.buffer), n)
        x0 = self.buffer[index]
        fresh = rng.random(n) < self.reinit
        x0[fresh] = self._uniform(int(fresh.sum()), rng)
        x, self.last_accept_rate = self.run_chains(backend.to_device(x0, self.device), rng)
        self.buffer[index] = backend.to_numpy(x)
        return x

    def loss(self, x):
        """Du & Mordatch's PCD loss on a data batch x (N, d); the chains use ``self.rng`` (lent by
        ``train.fit``) or the default generator."""
        f_data = self.f(x)
        f_model = self.f(Tensor(self.negative_samples(f_data.shape[0], self.rng)))
        contrastive = f_model.mean() - f_data.mean()
        return contrastive + self.alpha * ((f_data ** 2).mean() + (f_model ** 2).mean())

    def sample(self, n, rng=None, n_steps=200, x0=None):
        """n samples, a Tensor (n, d) on the model's device (no graph): ``n_steps`` of the
        sampler from x0 (default uniform in box)."""
        rng = _generator(rng)
        x0 = self._uniform(n, rng) if x0 is None else x0
        return as_samples(self.run_chains(backend.to_device(x0, self.device), rng, n_steps)[0])

