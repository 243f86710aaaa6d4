"""The variational RNN (Chung et al. 2015, "A recurrent latent variable model for sequential
data"; kuleshov-l12, "Variational RNN"): a VAE at every step of an RNN, with the prior,
the decoder and the encoder all conditioned on the recurrent state h_{t-1}, which
summarises x_<t and z_<t.

The factorisations of kuleshov-l12 ("Variational RNN"; the paper's sec. 3, "Generation" and
"Inference"):

    p(x_<=T, z_<=T) = prod_t p(x_t | z_<=t, x_<t) p(z_t | z_<t, x_<t)
    q(z_<=T | x_<=T) = prod_t q(z_t | z_<t, x_<=t)

with every conditional a network of h_{t-1} (phi_x, phi_z: feature extractors):

    prior      p(z_t | h_{t-1})       = N(mu_0,t, diag(sigma_0,t^2)),  [mu_0,t, log sigma_0,t^2] = phi_prior(h_{t-1})
    decoder    p(x_t | z_t, h_{t-1})  = output distribution of phi_dec([phi_z(z_t), h_{t-1}])
    recurrence h_t = f(phi_x(x_t), phi_z(z_t), h_{t-1})   (an LSTM on [phi_x(x_t), phi_z(z_t)])
    encoder    q(z_t | x_t, h_{t-1})  = N(mu_z,t, diag(sigma_z,t^2)),
                                        [mu_z,t, log sigma_z,t^2] = phi_enc([phi_x(x_t), h_{t-1}])

The ELBO is a sum of per-step terms (sec. 3, "Learning"), with z_<t drawn from q along the way:

    L(x) = E_q(z_<=T | x_<=T) [ sum_t ( log p(x_t | z_<=t, x_<t) - KL(q(z_t | x_<=t, z_<t) || p(z_t | x_<t, z_<t)) ) ]

each KL between two diagonal Gaussians in closed form (``distributions.kl_divergence``), one
reparameterised draw z_t = mu_z,t + sigma_z,t * eps_t per step. The importance-sampled
log-likelihood uses the same q as proposal for the whole latent sequence:

    log w = log p(x_<=T, z_<=T) - log q(z_<=T | x_<=T),   log p(x) ~ log 1/k sum_i w_i

(``log_prob_estimate``, a draw of the IWAE bound; ``tinydgm.evaluate.importance``).

A zero-width latent (``z_dim=0``) removes z: KL = 0, phi_z(z_t) is empty, and the model is
exactly ``AutoregressiveRNN`` (same sub-module names, so its weights load into one): the
ELBO is then the RNN's exact log-likelihood, which the tests check.

Output distributions: "gaussian" (diagonal) or "bernoulli" (binary x, e.g. MNIST rows);
the shared heads are in ``tinydgm.models.autoregressive.rnn``. Randomness: ``eps=`` holds
the noise fixed (gradcheck), else ``rng`` / ``self.rng`` (``train.fit`` lends its own).
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.elementwise import exp
from tinydgm.autodiff.shape import broadcast_to, concatenate, split, stack
from tinydgm.distributions import Normal, kl_divergence
from tinydgm.evaluate.importance import importance_log_likelihood
from tinydgm.evaluate.units import bits_per_dim as _bits_per_dim
from tinydgm.models.autoregressive.rnn import OutputHead, SequenceModel, _positive_int, mlp
from tinydgm.models.protocol import as_samples
from tinydgm.nn.recurrent import LSTM

__all__ = ["VRNN"]


class VRNN(SequenceModel):
    """VRNN(x_dim, z_dim=2, hidden_size=64, phi_size=64, output="gaussian", length=20, rng=None).

    x_dim: size of one step x_t; z_dim: size of z_t (0 gives the plain RNN); hidden_size: the
    LSTM state h_t; phi_size: width of phi_x, phi_z and of the hidden layer of the prior,
    encoder and decoder networks; output: "gaussian" or "bernoulli"; length: T for ``sample``
    and ``event_shape`` (the bounds take any T); rng: NumPy Generator for eps.
    """

    def __init__(self, x_dim, z_dim=2, hidden_size=64, phi_size=64, output="gaussian", length=20, rng=None,
                 dtype=None, device=None):
        super().__init__()
        self._setup(x_dim, length, "VRNN")
        self.z_dim = _positive_int(z_dim, "z_dim", "VRNN", minimum=0)
        self.hidden_size, self.phi_size = hidden_size, phi_size
        z_features = phi_size if z_dim > 0 else 0           # a zero-width latent has no features
        make = dict(rng=rng, dtype=dtype, device=device)
        self.phi_x = mlp([x_dim, phi_size], final_activation=True, **make)
        self.phi_z = mlp([z_dim, z_features], final_activation=True, **make)
        self.prior = mlp([hidden_size, phi_size, 2 * z_dim], **make)
        self.encoder = mlp([phi_size + hidden_size, phi_size, 2 * z_dim], **make)
        self.rnn = LSTM(phi_size + z_features, hidden_size, **make)
        self.decoder = OutputHead(z_features + hidden_size, x_dim, phi_size, output, **make)
        self.rng = backend.default_generator() if rng is None else rng

    def extra_repr(self):
        return (f"x_dim={self.x_dim}, z_dim={self.z_dim}, hidden_size={self.hidden_size}, phi_size={self.phi_size}, "
                f"output={self.decoder.output!r}, length={self.length}")

    # ----------------------------------------------------------------------------- one pass

    def _gaussian(self, net, inputs):
        """(mu, log_var) of a diagonal Gaussian over z_t from a network's output."""
        params = net(inputs)
        return params[:, :self.z_dim], params[:, self.z_dim:]

    def _run(self, x, eps=None, z=None):
        """One pass over x (N, T, x_dim), z_t either given (``z``, (N, T, z_dim)) or drawn
        from q with noise ``eps`` (N, T, z_dim). Per step t: log p(x_t | z_t, h_{t-1}),
        log p(z_t | h_{t-1}), and, when z is drawn, log q(z_t | x_t, h_{t-1}) and the KL;
        returned as (N, T) Tensors in a dict, with the step distributions ("q", "p")."""
        n, length, _ = x.shape
        # phi_x(x_t) for every t in one pass, then one split (T slices would each get a full-size gradient)
        phi_x = [part.reshape(n, -1) for part in split(self.phi_x(x), length, axis=1)]
        h = c = self._zeros(n, self.hidden_size)
        terms = {"log_px_z": [], "log_pz": [], "log_qz": [], "kl": [], "q": [], "p": []}
        for t in range(length):
            mu_0, log_var_0 = self._gaussian(self.prior, h)            # prior p(z_t | h_{t-1})
            prior = Normal(mu_0, log_var=log_var_0)
            if z is None:
                # q(z_t | x_t, h_{t-1})
                mu_z, log_var_z = self._gaussian(self.encoder, concatenate([phi_x[t], h], axis=1))
                posterior = Normal(mu_z, log_var=log_var_z)
                z_t = mu_z + exp(0.5 * log_var_z) * eps[:, t]          # reparameterised draw
                terms["log_qz"].append(posterior.log_prob(z_t).sum(axis=-1))
                terms["kl"].append(kl_divergence(posterior, prior).sum(axis=-1))
                terms["q"].append(posterior)
                terms["p"].append(prior)
            else:
                z_t = z[:, t]
            phi_z = self.phi_z(z_t)
            terms["log_pz"].append(prior.log_prob(z_t).sum(axis=-1))
            # p(x_t | z_t, h_{t-1})
            terms["log_px_z"].append(self.decoder.log_prob(x[:, t], concatenate([phi_z, h], axis=1)))
            x_proj = self.rnn.cell.project_input(concatenate([phi_x[t], phi_z], axis=1))
            h, c = self.rnn.cell.step(x_proj, h, c)                    # h_t = f(phi_x, phi_z, h_{t-1})
        return {name: stack(values, axis=1) if values and name not in ("q", "p") else values
                for name, values in terms.items()}

    def _noise(self, shape, eps, rng, who):
        if eps is None:
            rng = self.rng if rng is None else rng
            return Tensor(backend.to_device(rng.standard_normal(shape), self.device).astype(self.dtype))
        eps = eps if isinstance(eps, Tensor) else Tensor(backend.as_array(eps, dtype=self.dtype, device=self.device))
        if tuple(eps.shape) != tuple(shape):
            raise ValueError(f"VRNN.{who}: eps must have shape {tuple(shape)}, got {tuple(eps.shape)}")
        return eps

    # ----------------------------------------------------------------------------- bounds

    def elbo_terms(self, x, eps=None, rng=None):
        """Per-step terms of the ELBO, (log p(x_t | z_<=t, x_<t), KL(q(z_t | ...) || p(z_t | ...))),
        each (N, T), from one draw z_<=T ~ q (noise ``eps`` (N, T, z_dim) if given)."""
        x = self._sequences(x, "elbo_terms")
        eps = self._noise(x.shape[:2] + (self.z_dim,), eps, rng, "elbo_terms")
        terms = self._run(x, eps=eps)
        return terms["log_px_z"], terms["kl"]

    def elbo(self, x, eps=None, rng=None):
        """L(x) = sum_t [log p(x_t | z_<=t, x_<t) - KL(q(z_t | ...) || p(z_t | ...))] <= log p(x), (N,) in nats."""
        log_px_z, kl = self.elbo_terms(x, eps, rng)
        return (log_px_z - kl).sum(axis=1)

    def step_distributions(self, x, eps=None, rng=None):
        """The per-step (q(z_t | x_t, h_{t-1}), p(z_t | h_{t-1})) along one draw from q: a list
        of T pairs of Normal distributions over (N, z_dim)."""
        x = self._sequences(x, "step_distributions")
        terms = self._run(x, eps=self._noise(x.shape[:2] + (self.z_dim,), eps, rng, "step_distributions"))
        return list(zip(terms["q"], terms["p"]))

    def log_joint(self, x, z):
        """log p(x_<=T, z_<=T) = sum_t [log p(x_t | z_t, h_{t-1}) + log p(z_t | h_{t-1})], (N,),
        for given latents z (N, T, z_dim) (the recurrence runs on these z)."""
        x = self._sequences(x, "log_joint")
        if not isinstance(z, Tensor):
            z = Tensor(backend.as_array(z, dtype=self.dtype, device=self.device))
        if tuple(z.shape) != x.shape[:2] + (self.z_dim,):
            raise ValueError(f"VRNN.log_joint: z must have shape (N, T, z_dim) = {x.shape[:2] + (self.z_dim,)}, "
                             f"got {tuple(z.shape)}")
        terms = self._run(x, z=z)
        return (terms["log_px_z"] + terms["log_pz"]).sum(axis=1)

    def log_importance_weights(self, x, k, eps=None, rng=None):
        """log w_i = log p(x, z_i) - log q(z_i | x), z_i ~ q(z_<=T | x_<=T), shape (k, N): the
        interface of ``tinydgm.evaluate.importance``. eps: optional noise (k, N, T, z_dim)."""
        x = self._sequences(x, "log_importance_weights")
        k = _positive_int(k, "k", "VRNN.log_importance_weights")
        n, length, x_dim = x.shape
        eps = self._noise((k, n, length, self.z_dim), eps, rng, "log_importance_weights")
        x_k = broadcast_to(x.reshape(1, n, length, x_dim), (k, n, length, x_dim)).reshape(k * n, length, x_dim)
        terms = self._run(x_k, eps=eps.reshape(k * n, length, self.z_dim))
        log_w = (terms["log_px_z"] + terms["log_pz"] - terms["log_qz"]).sum(axis=1)
        return log_w.reshape(k, n)

    def log_prob_estimate(self, x, k=500, batch_size=100, chunk_size=100, rng=None):
        """log p(x) ~ log 1/k sum_i w_i (a draw of the IWAE bound F_k), (N,) in nats, no graph."""
        return importance_log_likelihood(self, x, k, batch_size, chunk_size, rng).log_px

    def bits_per_dim(self, x, k=500, batch_size=100, chunk_size=100, rng=None):
        """-log p(x) / (T x_dim ln 2) from the k-sample estimate, (N,)."""
        x = self._sequences(x, "bits_per_dim")
        return _bits_per_dim(-self.log_prob_estimate(x, k, batch_size, chunk_size, rng), x.shape[1] * x.shape[2])

    def loss(self, x):
        """-1/N sum_n L(x_n): the mean negative ELBO in nats per sequence."""
        return -self.elbo(x).mean()

    # ----------------------------------------------------------------------------- generation

    def sample(self, n, rng=None, length=None):
        """n sequences (n, T, x_dim) from the generative model, step by step: z_t ~ p(z_t | h_{t-1}),
        x_t ~ p(x_t | z_t, h_{t-1}), h_t = f(phi_x(x_t), phi_z(z_t), h_{t-1}). No graph."""
        n = _positive_int(n, "n", "VRNN.sample")
        rng = self.rng if rng is None else rng
        xs = []
        with no_grad():
            h = c = self._zeros(n, self.hidden_size)
            for t in range(self._length(length)):
                mu_0, log_var_0 = self._gaussian(self.prior, h)
                z_t = Normal(mu_0, log_var=log_var_0).sample(rng=rng)
                phi_z = self.phi_z(z_t)
                x_t = self.decoder.sample(concatenate([phi_z, h], axis=1), rng)
                xs.append(x_t.reshape(n, 1, self.x_dim))
                x_proj = self.rnn.cell.project_input(concatenate([self.phi_x(x_t), phi_z], axis=1))
                h, c = self.rnn.cell.step(x_proj, h, c)
            return as_samples(concatenate(xs, axis=1))
