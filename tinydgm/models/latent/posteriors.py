"""Flow posteriors for the VAE: a diagonal Gaussian q_0(z_0|x) from the encoder, pushed through
K invertible steps whose parameters depend on x (isachenko-l07 "Flows in VAE posterior",
"Flows-based VAE posterior" and "Inverse autoregressive flow (IAF)"; ermon-song-cs236-l16 and
kuleshov-l12, "VAE + Flow Model"; Rezende & Mohamed 2015, "Variational inference with
normalizing flows", sec. 4.1 and 4.2; Kingma et al. 2016, "Improving Variational Inference with
Inverse Autoregressive Flow", sec. 3-4).

    z_0 = mu(x) + sigma(x) * eps,  eps ~ N(0, I)                   (the VAE's reparameterisation)
    z_k = g_k(z_{k-1}; x),  k = 1..K,   z = z_K
    log q_K(z_K|x) = log q_0(z_0|x) - sum_k log |det dz_k / dz_{k-1}|                 (R&M eq. 6)

and the ELBO of the slide, an expectation over the base sample, with the Monte Carlo KL (the
closed form of the Gaussian KL does not apply to q_K):

    L(x) = E_{q_0(z_0|x)} [ log p(x, z_K) - log q_0(z_0|x) + sum_k log |det dz_k / dz_{k-1}| ]

(the slide prints - log |det J_g| there, a sign slip: a change of variables gives +, with the
Jacobians of the steps as they are applied). The VAE computes it with
``VAE(..., posterior=...)``; every posterior here has

    transform(z_0, x) -> (z_K, log_det)     z_0 (S, N, L), x (N, *event_shape), log_det (S, N)

Two families:

    PlanarPosterior  (Rezende & Mohamed eq. 10-12, amortised: u_k, w_k, b_k = a network of x)
        z_k = z_{k-1} + u_hat_k tanh(w_k^T z_{k-1} + b_k)
        log |det| = log |1 + (1 - tanh^2(w_k^T z_{k-1} + b_k)) w_k^T u_hat_k|
        u_hat_k = u_k + (m(w_k^T u_k) - w_k^T u_k) w_k / |w_k|^2,  m(a) = -1 + softplus(a)
        so w_k^T u_hat_k >= -1 FOR EVERY EXAMPLE (appendix A.1): each per-example map is invertible.

    IAFPosterior  (Kingma et al. sec. 4, fig. 2; the lecture's z_k = sigma_k(z_{k-1}) z_{k-1} + mu_k(z_{k-1}))
        h = a network of x (the context), then for each step a Gaussian MADE reading (z_{k-1}, h):
        mu_k, alpha_k = MADE_k(z_{k-1}, h)      (entry i sees z_{k-1, <i} and, through the hidden
                                                 layers, h; the first variable's entries are biases)
        z_k = z_{k-1} * exp(alpha_k) + mu_k,   log |det| = sum_i alpha_{k,i}     (one pass: fast)
        with the ordering reversed from one step to the next (odd steps condition z_i on z_>i),
        so z_K keeps the coordinates' order (tinydgm.models.flows.maf_iaf.IAFLayer).

At initialisation the IAF steps are the identity (``identity_init``); the planar steps are
not (for small u and w the constraint gives w^T u_hat ~ m(0) = log 2 - 1, a contraction along
w), as in the paper.

Both have their own amortisation network on the flattened x (an MLP, ``hidden``), separate
from the encoder's trunk: the encoder keeps its (mu, log_var) interface. ``n_layers=0`` gives
the plain diagonal Gaussian posterior, through the flow code path (a test pins that its ELBO
equals the plain VAE's).
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor
from tinydgm.autodiff.elementwise import log, maximum, softplus, tanh
from tinydgm.autodiff.shape import broadcast_to, split
from tinydgm.models.flows.maf_iaf import IAFLayer
from tinydgm.models.latent.encoders import as_event_shape, event_size, mlp, positive_int
from tinydgm.nn.module import Module, ModuleList

__all__ = ["FlowPosterior", "PlanarPosterior", "IAFPosterior", "planar_step", "planar_u_hat"]


def _non_negative_int(value, name, who):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{who}: {name} must be an int >= 0, got {value!r}")
    return value


def planar_u_hat(u, w):
    """(u_hat, c) per row, c = w^T u_hat = max(m(w^T u), -1 + delta), m(a) = -1 + softplus(a)
    (Rezende & Mohamed appendix A.1), u, w of shape (M, L).

    As tinydgm.models.flows.planar.PlanarFlow, row by row: u_hat = u_perp + c w / |w|^2 with
    u_perp the part of u orthogonal to w, projected out twice so that w^T u_hat = c holds in
    floating point, and delta = sqrt(eps) of the dtype keeping c above -1 where softplus
    underflows."""
    w_w = (w * w).sum(axis=-1, keepdims=True)
    w_u = (w * u).sum(axis=-1, keepdims=True)
    u_perp = u - (w_u / w_w) * w
    u_perp = u_perp - ((w * u_perp).sum(axis=-1, keepdims=True) / w_w) * w
    delta = float(backend.xp_of(w.data).finfo(w.dtype).eps) ** 0.5
    c = maximum(softplus(w_u) - 1, delta - 1)
    return u_perp + (c / w_w) * w, c.reshape(-1)


def planar_step(z, u, w, b):
    """One amortised planar step on rows: z (M, L), u and w (M, L), b (M,) (one parameter set
    per row). Returns z' = z + u_hat tanh(w^T z + b) and log |1 + (1 - tanh^2) w^T u_hat|, (M,)
    (Rezende & Mohamed eq. 10-12)."""
    u_hat, c = planar_u_hat(u, w)
    a = (w * z).sum(axis=-1) + b                          # w^T z + b, (M,)
    h = tanh(a)
    z_next = z + h.reshape(-1, 1) * u_hat                 # eq. 10
    # u_hat^T psi = h'(a) c with h' = 1 - tanh^2 (eq. 11-12); 1 + h' c >= h' delta > 0 (c >= -1 + delta)
    return z_next, log(1 + (1 - h * h) * c)


class FlowPosterior(Module):
    """Base of the flow posteriors: subclasses set ``latent_dim``, ``event_shape``, ``n_layers``
    and implement ``flow(z_0, context) -> (z_K, log_det)`` on rows (M, L), with ``context`` the
    per-row output of ``amortize(x)``; this class does the bookkeeping of the S samples."""

    def amortize(self, x):
        """The per-example quantities the steps read, (N, P), from the flattened x."""
        return self.net(x.reshape(x.shape[0], -1))

    def transform(self, z0, x):
        """z_K and sum_k log |det dz_k / dz_{k-1}| for z_0 of shape (S, N, L) (or (N, L)) and
        x of shape (N, *event_shape); log_det has shape z_0.shape[:-1]."""
        who = type(self).__name__
        if z0.ndim not in (2, 3) or z0.shape[-1] != self.latent_dim or z0.shape[-2] != x.shape[0]:
            raise ValueError(f"{who}.transform: z_0 must have shape (S, N, L) or (N, L) with N = {x.shape[0]} "
                             f"and L = {self.latent_dim}, got {tuple(z0.shape)}")
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"{who}.transform: x must have shape (N, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(x.shape)}")
        lead = tuple(z0.shape[:-1])
        rows = z0.reshape(-1, self.latent_dim)
        if self.n_layers == 0:
            xp = backend.xp_of(z0.data)
            return z0, Tensor(xp.zeros(lead, dtype=z0.dtype))
        context = self.amortize(x)                                    # (N, P), or None
        if context is not None and len(lead) == 2:                                            # the same context for each of the S samples
            n, p = context.shape
            context = broadcast_to(context.reshape(1, n, p), lead[0], n, p).reshape(-1, p)
        z, log_det = self.flow(rows, context)
        return z.reshape(lead + (self.latent_dim,)), log_det.reshape(lead)

    def flow(self, z, context):
        raise NotImplementedError(f"{type(self).__name__}.flow")


class PlanarPosterior(FlowPosterior):
    """PlanarPosterior(event_shape, latent_dim, n_layers=4, hidden=(64,), activation="tanh",
    rng=None, dtype=None, device=None).

    K = n_layers amortised planar steps (Rezende & Mohamed 2015): a network of x (``hidden``
    layers, then a linear layer) gives every example its own (u_k, w_k, b_k), K (2L + 1)
    numbers; u_hat_k is constrained per example (see ``planar_u_hat``).
    """

    def __init__(self, event_shape, latent_dim, n_layers=4, hidden=(64,), activation="tanh", rng=None, dtype=None,
                 device=None):
        super().__init__()
        who = "PlanarPosterior"
        self.event_shape = as_event_shape(event_shape, who)
        self.latent_dim = positive_int(latent_dim, "latent_dim", who)
        self.n_layers = _non_negative_int(n_layers, "n_layers", who)
        self.hidden = tuple(positive_int(h, "hidden sizes", who) for h in hidden)
        self.activation = activation
        sizes = (event_size(self.event_shape),) + self.hidden + (max(self.n_layers, 1) * (2 * self.latent_dim + 1),)
        self.net = mlp(sizes, activation, who, rng, dtype, device)

    def step_parameters(self, context):
        """[(u_k, w_k, b_k)] for k = 1..K, each row one example's: (M, L), (M, L), (M,)."""
        length = self.latent_dim
        params = []
        for block in split(context, self.n_layers, axis=-1):
            u, w, b = split(block, [length, 2 * length], axis=-1)
            params.append((u, w, b.reshape(-1)))
        return params

    def planar_parameters(self, x):
        """[(u_hat_k, w_k, b_k)] for one batch x (N, *event_shape): the constrained per-example
        parameters of every step (w_k^T u_hat_k >= -1 row by row)."""
        return [(planar_u_hat(u, w)[0], w, b) for u, w, b in self.step_parameters(self.amortize(x))]

    def flow(self, z, context):
        total = 0
        for u, w, b in self.step_parameters(context):
            z, log_det = planar_step(z, u, w, b)
            total = total + log_det
        return z, total

    def extra_repr(self):
        return (f"latent_dim={self.latent_dim}, n_layers={self.n_layers}, hidden={self.hidden}, "
                f"activation={self.activation!r}")


class IAFPosterior(FlowPosterior):
    """IAFPosterior(event_shape, latent_dim, n_layers=2, hidden_sizes=(64,), context_dim=16,
    hidden=(64,), activation="tanh", alpha_bound=8.0, identity_init=True, rng=None, dtype=None,
    device=None).

    K = n_layers IAF steps (Kingma et al. 2016): a network of x (``hidden`` layers, then a
    linear layer) gives the context h (N, context_dim); step k is an IAFLayer whose Gaussian
    MADE (``hidden_sizes`` ReLU units, natural ordering; each width >= L - 1) reads z_{k-1}
    masked and h unmasked; the MADE's ordering alternates between natural (even k) and
    reversed (odd k), so every variable is conditioned on every other over two steps and a
    step with mu = alpha = 0 is the identity. ``alpha_bound`` goes to every layer (see
    tinydgm.models.flows.maf_iaf).

    identity_init: the MADEs' output layers start at zero, so mu = alpha = 0 and every step is
    the identity: training starts from the encoder's Gaussian (Kingma et al. start their IAF
    steps close to the identity too); a random start can land the ELBO far below it.
    False keeps the MADEs' default (random) initialisation.

    context_dim=None: no context, the steps' parameters are global (the slide's
    z* = g(z, lambda), the same map for every x): the posterior of the prior/posterior
    equivalence theorem. Then ``layers`` are plain IAFLayers.
    """

    def __init__(self, event_shape, latent_dim, n_layers=2, hidden_sizes=(64,), context_dim=16, hidden=(64,),
                 activation="tanh", alpha_bound=8.0, identity_init=True, rng=None, dtype=None, device=None):
        super().__init__()
        who = "IAFPosterior"
        self.event_shape = as_event_shape(event_shape, who)
        self.latent_dim = positive_int(latent_dim, "latent_dim", who)
        self.n_layers = _non_negative_int(n_layers, "n_layers", who)
        self.context_dim = None if context_dim is None else positive_int(context_dim, "context_dim", who)
        self.hidden = tuple(positive_int(h, "hidden sizes", who) for h in hidden)
        self.activation = activation
        self.net = None
        if self.context_dim is not None:
            sizes = (event_size(self.event_shape),) + self.hidden + (self.context_dim,)
            self.net = mlp(sizes, activation, who, rng, dtype, device)
        reversed_order = list(range(self.latent_dim, 0, -1))
        self.layers = ModuleList([IAFLayer(self.latent_dim, hidden_sizes, ordering="natural" if k % 2 == 0
                                           else reversed_order, rng=rng, dtype=dtype, alpha_bound=alpha_bound,
                                           context_dim=self.context_dim)
                                  for k in range(self.n_layers)])
        if identity_init:
            for layer in self.layers:
                out = layer.made.layers[-1]                    # [mu | alpha] = 0: z_k = z_{k-1}
                out.weight.data, out.bias.data = out.weight.data * 0, out.bias.data * 0

    def amortize(self, x):
        """The context h (N, context_dim), or None for global steps."""
        return None if self.net is None else super().amortize(x)

    def flow(self, z, context):
        total = 0
        for layer in self.layers:
            z, log_det = layer.inverse(z, context=context)    # z_k = z_{k-1} exp(alpha) + mu, one pass
            total = total + log_det
        return z, total

    def extra_repr(self):
        return (f"latent_dim={self.latent_dim}, n_layers={self.n_layers}, context_dim={self.context_dim}, "
                f"hidden={self.hidden}")
