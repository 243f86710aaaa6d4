"""Deep Boltzmann machine with two hidden layers (Salakhutdinov & Hinton 2009, Deep Boltzmann
machines, AISTATS; tomczak-dgm, "Deep Boltzmann Machines": all connections undirected,
"calculating gradients is intractable, thus variational methods (mean-field) and sampling
methods are utilized").

    E(v, h1, h2) = -v^T W1 h1 - h1^T W2 h2 - b^T v - c1^T h1 - c2^T h2

(the lecture's slide writes the energy without the biases and with the opposite sign
convention). Each layer is conditionally independent given its neighbours:

    p(h1 = 1 | v, h2) = sigmoid(c1 + v W1 + h2 W2^T)
    p(v = 1 | h1) = sigmoid(b + h1 W1^T),      p(h2 = 1 | h1) = sigmoid(c2 + h1 W2)

Learning (S&H 2009, Algorithm 1): the gradient of log p(v) is <.>_data - <.>_model for the
statistics v h1^T, h1 h2^T, v, h1, h2;

- positive phase: the posterior p(h1, h2 | v) is replaced by the fully factorised
  mean-field q(h1, h2) = prod mu1^h1 (1 - mu1)^(1 - h1) ... maximising the bound
  log p(v) >= -E_q[E(v, h1, h2)] + H(q) - log Z, by the fixed-point equations

      mu1 = sigmoid(c1 + v W1 + mu2 W2^T),      mu2 = sigmoid(c2 + mu1 W2)

  (updated in turn, each update can only raise the bound; we start from the bottom-up pass
  mu1 = sigmoid(c1 + 2 v W1), mu2 = sigmoid(c2 + mu1 W2), S&H's doubled-weight
  initialisation, and stop at ``mf_tol`` or ``mf_steps``);
- negative phase: persistent chains (PCD) updated by k sweeps of Gibbs over alternating
  layers: h1 | (v, h2), then (v, h2) | h1 together (the odd/even layers are independent
  given the other).

Evaluation: exact log Z and log p(v) of small DBMs enumerate h1 (v and h2 are summed
analytically given h1); larger ones estimate log Z by AIS over h1 (``ais``,
``evaluate.dbm_ais``) and report the mean-field lower bound on log p(v) (``log_prob_bound``).

``train.fit`` trains a DBM through ``loss``: mean E(v, mu1, mu2) over the data minus mean
E(v, h1, h2) over the persistent chains, with the mean-field means and the chains held
fixed; E is linear in each parameter, so minus its gradient is exactly ``gradient`` (the
value is not a likelihood). ``fit`` is the same algorithm with SGD, momentum and weight decay.

``pretrain`` is S&H 2009's greedy layer-wise pretraining with doubled inputs (sec. 3.1,
fig. 2): two RBM-like modules trained one after the other, then composed; its docstring
says exactly what is implemented. Not done here: the learning-rate and momentum schedules.
"""
from tinydgm import backend, evaluate
from tinydgm.autodiff.core import Tensor, as_tensor, tensor
from tinydgm.autodiff.elementwise import softplus
from tinydgm.autodiff.reduce import logsumexp
from tinydgm.kernels import rbm_gibbs, uniforms
from tinydgm.models.protocol import as_samples
from tinydgm.nn import init
from tinydgm.nn.module import Module, Parameter

__all__ = ["DBM"]


def _sigmoid(xp, a):
    return 1 / (1 + xp.exp(-a))


def _bernoulli_copies(pre_activation, bias, n_copies, rng):
    """The sum of n_copies independent draws of the Bernoulli layer sigmoid(pre_activation + bias)
    (tied copies of one layer, all given the same neighbours)."""
    total = 0
    for _ in range(n_copies):
        u = backend.to_device(uniforms.uniform(rng, pre_activation.shape, pre_activation.dtype),
                              backend.device_of(pre_activation))
        total = total + rbm_gibbs.bernoulli_layer(pre_activation.copy(), bias, u)[1]
    return total


def _module_gradient(x, W, b, c, n_visible_copies, n_hidden_copies, k, rng):
    """The CD-k gradient of one pretraining module of S&H 2009: an RBM (W, visible bias b,
    hidden bias c) whose visible layer has n_visible_copies tied copies and whose hidden layer
    n_hidden_copies (1 or 2). With s_v, s_h the sums over the copies, its energy is
    E = -s_v^T W s_h - b^T s_v - c^T s_h, so the hidden copies are independent given s_v,
    p(h = 1 | s_v) = sigmoid(c + s_v W), and the visible ones given s_h. The data clamp every
    visible copy to x, and

        d log p(x, ..., x) / dW = <s_v s_h^T>_data - <s_v s_h^T>_model      (b: s_v, c: s_h)

    with <.>_data = n_v x (n_h sigmoid(c + n_v x W))^T and the model term from k Gibbs sweeps
    started at the data (contrastive divergence). Returns a dict of arrays {"W", "b", "c"}."""
    xp = backend.get_array_module(W)
    s_v_data = n_visible_copies * x
    s_h_data = n_hidden_copies * _sigmoid(xp, c + s_v_data @ W)
    s_v = s_v_data
    for _ in range(k):
        s_h = _bernoulli_copies(s_v @ W, c, n_hidden_copies, rng)
        s_v = _bernoulli_copies(s_h @ W.T, b, n_visible_copies, rng)
    s_h = n_hidden_copies * _sigmoid(xp, c + s_v @ W)
    n = x.shape[0]
    return {"W": (s_v_data.T @ s_h_data - s_v.T @ s_h) / n, "b": (s_v_data - s_v).mean(axis=0),
            "c": (s_h_data - s_h).mean(axis=0)}


class DBM(Module):
    """A two-hidden-layer DBM over D binary visible units.

        dbm = DBM(784, 500, 1000, rng=td.rng(0))
        dbm.fit(x, epochs=10, batch_size=100, lr=0.01)
        mu1, mu2 = dbm.mean_field(x)
        dbm.sample(16, td.rng(0), k=1000)
    """

    def __init__(self, n_visible, n_hidden1, n_hidden2, rng=None, dtype=None, device=None, init_std=0.01, k=1,
                 n_chains=None, mf_steps=30, mf_tol=1e-6):
        super().__init__()
        for name, value in (("n_visible", n_visible), ("n_hidden1", n_hidden1), ("n_hidden2", n_hidden2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DBM: {name} must be a positive int, got {value!r}")
        self.sizes = (n_visible, n_hidden1, n_hidden2)
        self.W1 = Parameter(init.normal((n_visible, n_hidden1), init_std, rng, dtype, device))
        self.W2 = Parameter(init.normal((n_hidden1, n_hidden2), init_std, rng, dtype, device))
        self.b = Parameter(init.zeros((n_visible,), dtype, device))
        self.c1 = Parameter(init.zeros((n_hidden1,), dtype, device))
        self.c2 = Parameter(init.zeros((n_hidden2,), dtype, device))
        self.chains = None                  # the persistent (v, h1, h2)
        self._velocity = None
        # the settings of ``loss`` (``fit`` and ``gradient`` take their own per call)
        self.k, self.n_chains, self.mf_steps, self.mf_tol = k, n_chains, mf_steps, mf_tol
        self.rng = None                     # the chains' generator in ``loss`` (train.fit lends its own)

    def extra_repr(self):
        return "n_visible={}, n_hidden1={}, n_hidden2={}".format(*self.sizes)

    @property
    def xp(self):
        return backend.get_array_module(self.W1.data)

    def _array(self, x, n_cols, who):
        x = backend.to_device(x.data if isinstance(x, Tensor) else x, self.W1.device)
        if x.ndim != 2 or x.shape[1] != n_cols:
            raise ValueError(f"DBM.{who}: input must have shape (N, {n_cols}), got {tuple(x.shape)}")
        return x.astype(self.W1.dtype, copy=False)

    # --- energy and bounds (Tensors)
    def energy(self, v, h1, h2):
        """E(v, h1, h2) = -v^T W1 h1 - h1^T W2 h2 - b^T v - c1^T h1 - c2^T h2, (N,); with mean-field
        means in place of h1, h2 this is E_q[E] (the energy is linear in each layer)."""
        v, h1, h2 = (as_tensor(a, like=self.W1) for a in (v, h1, h2))
        return -((v @ self.W1) * h1).sum(axis=1) - ((h1 @ self.W2) * h2).sum(axis=1) \
            - v @ self.b - h1 @ self.c1 - h2 @ self.c2

    def mean_field_bound(self, v, mu1, mu2):
        """-E_q[E(v, h1, h2)] + H(q) (N,): log p(v) + log Z >= this for any mu1, mu2 in (0, 1)."""
        def entropy(mu):
            mu = as_tensor(mu, like=self.W1)
            eps = 1e-12                     # 0 log 0 = 0
            return -(mu * (mu + eps).log() + (1 - mu) * (1 - mu + eps).log()).sum(axis=1)
        return -self.energy(v, mu1, mu2) + entropy(mu1) + entropy(mu2)

    def log_partition(self):
        """Exact log Z (0-d Tensor), enumerating h1 (<= ~20 units): given h1, v and h2 sum out,
        sum_{v, h2} exp(-E) = exp(c1^T h1) prod_i (1 + e^{b_i + (W1 h1)_i}) prod_k (1 + e^{c2_k + (h1 W2)_k})."""
        return logsumexp(self._log_unnormalised_h1(None))

    def _log_unnormalised_h1(self, v):
        xp = backend.module_for_device(self.W1.device)
        h1 = tensor(evaluate.binary_states(self.sizes[1], dtype=self.W1.dtype, xp=xp), device=self.W1.device)
        top = h1 @ self.c1 + softplus(h1 @ self.W2 + self.c2).sum(axis=1)                       # (S,)
        if v is None:
            return top + softplus(h1 @ self.W1.transpose() + self.b).sum(axis=1)
        v = as_tensor(v, like=self.W1)
        return (v @ self.b).reshape(-1, 1) + (v @ self.W1) @ h1.transpose() + top               # (N, S)

    def log_prob(self, v):
        """Exact log p(v) (N,) of a small DBM, enumerating h1."""
        v = as_tensor(self._array(v, self.sizes[0], "log_prob"))
        return logsumexp(self._log_unnormalised_h1(v), axis=1) - self.log_partition()

    def bits_per_dim(self, v):
        """-log p(v) / (D ln 2), (N,), for small DBMs (exact ``log_prob``)."""
        return evaluate.bits_per_dim(-self.log_prob(v), self.sizes[0])

    def ais(self, n_runs=100, betas="salakhutdinov-murray", base_visible_bias=None, rng=None):
        """log Z by annealed importance sampling over h1 (``evaluate.dbm_ais``): a dict with
        log_z, its standard error and the 3-sigma interval."""
        return evaluate.dbm_ais(self.W1.data, self.W2.data, self.b.data, self.c1.data, self.c2.data, n_runs, betas,
                                base_visible_bias, rng)

    def log_prob_bound(self, v, log_z, mf_steps=30, mf_tol=1e-6):
        """The variational lower bound on log p(v), a Tensor (N,), given log Z (exact or
        ``ais()["log_z"]``): -E_q[E(v, h1, h2)] + H(q) - log Z at the mean-field fixed point
        (S&H 2009 report this bound for their DBMs; with an AIS log Z it is an estimate).
        Differentiable in the parameters at the fixed point's means."""
        v = self._array(v, self.sizes[0], "log_prob_bound")
        mu1, mu2 = self.mean_field(v, mf_steps, mf_tol)
        return self.mean_field_bound(v, mu1, mu2) - log_z

    # --- mean-field inference (arrays)
    def mean_field(self, v, mf_steps=30, mf_tol=1e-6, return_steps=False):
        """The fixed point of mu1 = sigmoid(c1 + v W1 + mu2 W2^T), mu2 = sigmoid(c2 + mu1 W2), from
        the doubled-weight bottom-up pass; stops when no mean moves by more than mf_tol or after
        mf_steps updates of both layers. Returns (mu1, mu2) (and the number of steps)."""
        xp = self.xp
        v = self._array(v, self.sizes[0], "mean_field")
        W1, W2, c1, c2 = self.W1.data, self.W2.data, self.c1.data, self.c2.data
        vW1 = v @ W1
        mu1 = _sigmoid(xp, c1 + 2 * vW1)                  # bottom-up: h2 stands in for v's copy
        mu2 = _sigmoid(xp, c2 + mu1 @ W2)
        steps = 0
        for steps in range(1, mf_steps + 1):
            new1 = _sigmoid(xp, c1 + vW1 + mu2 @ W2.T)
            new2 = _sigmoid(xp, c2 + new1 @ W2)
            change = max(float(xp.abs(new1 - mu1).max()), float(xp.abs(new2 - mu2).max()))
            mu1, mu2 = new1, new2
            if change < mf_tol:
                break
        return (mu1, mu2, steps) if return_steps else (mu1, mu2)

    # --- Gibbs over alternating layers (arrays)
    def _noise(self, rng, n):
        dtype = self.W1.dtype
        return [backend.to_device(uniforms.uniform(rng, (n, s), dtype), self.W1.device) for s in self.sizes]

    def gibbs(self, v, h1, h2, k=1, rng=None):
        """k sweeps: h1 ~ p(h1 | v, h2), then v ~ p(v | h1) and h2 ~ p(h2 | h1). Returns (v, h1, h2)
        and p(v = 1 | h1) of the last sweep."""
        rng = backend.default_generator() if rng is None else rng
        W1, W2 = self.W1.data, self.W2.data
        p_v = None
        for _ in range(k):
            u_v, u_1, u_2 = self._noise(rng, v.shape[0])
            _, h1 = rbm_gibbs.bernoulli_layer(v @ W1 + h2 @ W2.T, self.c1.data, u_1)
            p_v, v = rbm_gibbs.bernoulli_layer(h1 @ W1.T, self.b.data, u_v)
            _, h2 = rbm_gibbs.bernoulli_layer(h1 @ W2, self.c2.data, u_2)
        return v, h1, h2, p_v

    def _initial_chains(self, n, rng):
        xp, dtype = self.xp, self.W1.dtype
        v = (backend.to_device(rng.random((n, self.sizes[0])), self.W1.device) < _sigmoid(xp, self.b.data)).astype(dtype)
        return v, xp.zeros((n, self.sizes[1]), dtype), xp.zeros((n, self.sizes[2]), dtype)

    def sample(self, n, rng=None, k=1000, mean=True):
        """n samples, a Tensor (n, D) on the model's device (no graph), after k Gibbs sweeps
        from base-rate visible states; mean: p(v = 1 | h1) of the last sweep instead of the
        binary v."""
        rng = backend.default_generator() if rng is None else rng
        v, h1, h2, p_v = self.gibbs(*self._initial_chains(n, rng), k=k, rng=rng)
        return as_samples(p_v if mean else v)

    # --- learning
    def gradient(self, v, k=1, n_chains=None, rng=None, mf_steps=30, mf_tol=1e-6):
        """Data-dependent (mean-field) minus model (PCD) moments, the ascent direction of the
        bound: a dict of arrays {"W1", "W2", "b", "c1", "c2"}; the chains persist in ``self.chains``."""
        v, (mu1, mu2), (v_m, h1_m, h2_m) = self._phases(v, k, n_chains, rng, mf_steps, mf_tol, "gradient")
        n, m = v.shape[0], v_m.shape[0]
        return {"W1": v.T @ mu1 / n - v_m.T @ h1_m / m, "W2": mu1.T @ mu2 / n - h1_m.T @ h2_m / m,
                "b": v.mean(axis=0) - v_m.mean(axis=0), "c1": mu1.mean(axis=0) - h1_m.mean(axis=0),
                "c2": mu2.mean(axis=0) - h2_m.mean(axis=0)}

    def _phases(self, v, k, n_chains, rng, mf_steps, mf_tol, who):
        """The two phases of one update: the batch v, its mean-field means (mu1, mu2) and the
        persistent chains (v, h1, h2) after k more sweeps (stored in ``self.chains``)."""
        rng = backend.default_generator() if rng is None else rng
        v = self._array(v, self.sizes[0], who)
        m = v.shape[0] if n_chains is None else n_chains
        if self.chains is None or self.chains[0].shape[0] != m:
            self.chains = self._initial_chains(m, rng)
        means = self.mean_field(v, mf_steps, mf_tol)
        v_m, h1_m, h2_m, _ = self.gibbs(*self.chains, k=k, rng=rng)
        self.chains = (v_m, h1_m, h2_m)
        return v, means, self.chains

    def loss(self, v):
        """The surrogate of S&H 2009's update, what ``train.fit`` minimises:

            L = mean_data E(v, mu1, mu2) - mean_chains E(v_m, h1_m, h2_m)

        with the mean-field means (positive phase) and the PCD chains after ``self.k`` sweeps
        (negative phase) held fixed. E is linear in every parameter, so -dL/dtheta is
        ``gradient``'s data-dependent minus model moments; the value is not a likelihood.
        The chains draw from ``self.rng`` (lent by ``train.fit``)."""
        v, (mu1, mu2), (v_m, h1_m, h2_m) = self._phases(v, self.k, self.n_chains, self.rng, self.mf_steps,
                                                        self.mf_tol, "loss")
        return self.energy(v, mu1, mu2).mean() - self.energy(v_m, h1_m, h2_m).mean()

    def fit(self, x, epochs=10, batch_size=100, lr=0.01, k=1, n_chains=None, momentum=0.5, weight_decay=0.0,
            rng=None, mf_steps=30, mf_tol=1e-6, shuffle=True):
        """Stochastic approximation (S&H 2009, Algorithm 1) on minibatches of x (N, D): mean-field
        positive phase, PCD negative phase (n_chains persistent chains, default batch_size), SGD
        ascent with momentum and weight decay (on W1, W2). Returns {"time": [...]} per epoch."""
        import time
        rng = backend.default_generator() if rng is None else rng
        x = self._array(x, self.sizes[0], "fit")
        n_batches = x.shape[0] // batch_size
        if n_batches == 0:
            raise ValueError(f"DBM.fit: need at least batch_size = {batch_size} examples, got {x.shape[0]}")
        names = ("W1", "W2", "b", "c1", "c2")
        if self._velocity is None:
            self._velocity = {name: self.xp.zeros_like(getattr(self, name).data) for name in names}
        history = {"time": []}
        for _ in range(epochs):
            started = time.perf_counter()
            order = rng.permutation(n_batches).tolist() if shuffle else range(n_batches)
            for i in order:
                grad = self.gradient(x[i * batch_size:(i + 1) * batch_size], k, n_chains, rng, mf_steps, mf_tol)
                for name in names:
                    rbm_gibbs.sgd_update(getattr(self, name).data, grad[name], self._velocity[name], lr, momentum,
                                         weight_decay if name.startswith("W") else 0.0)
            history["time"].append(time.perf_counter() - started)
        return history


    # --- greedy layer-wise pretraining
    def pretrain(self, x, epochs=10, batch_size=100, lr=0.05, k=1, momentum=0.5, weight_decay=0.0, rng=None,
                 shuffle=True):
        """Greedy layer-wise pretraining with doubled inputs (S&H 2009, sec. 3.1 and fig. 2).

        In the DBM, h1 is the only layer with two neighbours: p(h1 = 1 | v, h2) = sigmoid(c1 +
        v W1 + h2 W2^T). An RBM trained on v alone (the DBN's greedy step) would learn W1 for
        an h1 that hears v only. S&H let each module's h1 hear its one neighbour twice (tied
        copies: the neighbour stands in for the missing one), and halve when composing:

        1. bottom module on x: v in two tied copies, so p(h1 = 1 | v) = sigmoid(c1' + 2 v W1)
           (v counted twice) and p(v = 1 | h1) = sigmoid(b + h1 W1^T);
        2. top module on the bottom's doubled bottom-up means h1 = sigmoid(c1' + 2 x W1): h2
           in two tied copies, so p(h1 = 1 | h2) = sigmoid(c1'' + 2 h2 W2^T) (h2 counted
           twice) and p(h2 = 1 | h1) = sigmoid(c2 + h1 W2);
        3. compose: W1, W2, b, c2 as learnt, c1 = (c1' + c1'') / 2. The doubled inputs are
           halved: h1's total input in the DBM is (2 v W1 + c1' + 2 h2 W2^T + c1'') / 2
           = v W1 + h2 W2^T + c1, and the doubled bottom-up pass of ``mean_field`` is the
           bottom module's p(h1 | v) again. The weight matrices are not rescaled (the halving
           is of h1's input), and only h1's inputs are ever doubled: v and h2 have one
           neighbour in the DBM as in their module, so p(v | h1) and p(h2 | h1) are unchanged.

        The lecture (tomczak-dgm, "Deep Boltzmann Machines") gives the DBM's energy and
        conditionals but not its pretraining. Each module is trained by CD-k
        (``_module_gradient``: the gradient of the module's log-likelihood with every copy
        clamped to the data, the model term from k Gibbs sweeps) with SGD, momentum and
        weight decay on the weights; S&H's annealed schedules are not reproduced. Starts
        from the current parameters (the random init), sets all five and resets the PCD
        chains and ``fit``'s momentum. Returns {"bottom_time": s, "top_time": s}.
        """
        import time
        rng = backend.default_generator() if rng is None else rng
        x = self._array(x, self.sizes[0], "pretrain")
        if x.shape[0] < batch_size:
            raise ValueError(f"DBM.pretrain: need at least batch_size = {batch_size} examples, got {x.shape[0]}")
        xp = self.xp
        sgd = dict(epochs=epochs, batch_size=batch_size, lr=lr, k=k, momentum=momentum, weight_decay=weight_decay,
                   rng=rng, shuffle=shuffle)
        started = time.perf_counter()
        W1, b, c1_bottom = self._train_module(x, self.W1.data, self.b.data, self.c1.data, 2, 1, **sgd)
        bottom_time = time.perf_counter() - started
        h1 = _sigmoid(xp, c1_bottom + 2 * x @ W1)        # the bottom module's doubled bottom-up means
        started = time.perf_counter()
        W2, c1_top, c2 = self._train_module(h1, self.W2.data, self.c1.data, self.c2.data, 1, 2, **sgd)
        top_time = time.perf_counter() - started
        for name, value in (("W1", W1), ("W2", W2), ("b", b), ("c1", (c1_bottom + c1_top) / 2), ("c2", c2)):
            getattr(self, name).data[...] = value
        self.chains, self._velocity = None, None
        return {"bottom_time": bottom_time, "top_time": top_time}

    @staticmethod
    def _train_module(x, W, b, c, n_visible_copies, n_hidden_copies, epochs, batch_size, lr, k, momentum,
                      weight_decay, rng, shuffle):
        """SGD ascent on one pretraining module from copies of (W, b, c); returns the new (W, b, c)."""
        params = {"W": W.copy(), "b": b.copy(), "c": c.copy()}
        velocity = {name: backend.get_array_module(W).zeros_like(p) for name, p in params.items()}
        n_batches = x.shape[0] // batch_size
        for _ in range(epochs):
            order = rng.permutation(n_batches).tolist() if shuffle else range(n_batches)
            for i in order:
                grad = _module_gradient(x[i * batch_size:(i + 1) * batch_size], params["W"], params["b"],
                                        params["c"], n_visible_copies, n_hidden_copies, k, rng)
                for name, p in params.items():
                    rbm_gibbs.sgd_update(p, grad[name], velocity[name], lr, momentum,
                                         weight_decay if name == "W" else 0.0)
        return params["W"], params["b"], params["c"]
