"""Deep belief networks by greedy layer-wise RBM stacking (Hinton, Osindero & Teh 2006;
tomczak-dgm, "Deep Belief Network": "RBM (or its extension) can be treated as a building
block. Stacking RBMs leads to a deep belief network").

With RBMs 1..L over the layers v = h_0, h_1, ..., h_L, the DBN is a directed sigmoid belief
net below an undirected top RBM:

    P(v, h_1, ..., h_L) = P(v | h_1) P(h_1 | h_2) ... P(h_{L-2} | h_{L-1}) P(h_{L-1}, h_L)

(the lecture's P(x, h1, h2) = P(x | h1) P(h1, h2) for L = 2), where P(h_{l-1} | h_l) is the
visible conditional of RBM l and P(h_{L-1}, h_L) is the top RBM.

Greedy training: RBM 1 is trained on the data (CD-k/PCD-k, ``BernoulliRBM.fit``); the data of
RBM l+1 is p(h_l = 1 | h_{l-1}) of the layer below (its probabilities: ``propagate="probs"``,
the common practice, or one sample: ``"samples"``). Each added layer can only improve the
variational lower bound (Hinton et al. 2006) when it starts from the transposed layer below
(``tie_init=True`` where the sizes allow: W_{l+1} = W_l^T, biases swapped): the bound then
equals the log-likelihood of the model without it, and training the new RBM raises the
bound's only term that depends on it. For two RBMs the bound is

    log p(v) >= sum_{h_1} q(h_1 | v) [log P(v | h_1) + log P_top(h_1) - log q(h_1 | v)],
    q(h_1 | v) = prod_j p(h_1j | v) of RBM 1,  P_top(h_1) = the top RBM's visible marginal

(``variational_bound``, exact for small h_1 by enumeration, next to the exact ``log_prob``).

Sampling: block Gibbs in the top RBM, then one ancestral pass down through the directed
layers.

``train.fit`` trains all layers AT ONCE on ``loss``: the sum of each RBM's CD surrogate on
the layer below's p(h = 1 | .) (held fixed, no gradient between layers), so each layer's
gradient is its own CD estimate on the current features below. That is not the greedy
schedule (lower layers still move while upper ones learn); ``fit`` is the greedy procedure
of Hinton et al. 2006, one layer after the other.
"""
from tinydgm import backend, evaluate
from tinydgm.autodiff.core import Tensor, no_grad, tensor
from tinydgm.autodiff.elementwise import log_sigmoid, sigmoid
from tinydgm.autodiff.reduce import logsumexp
from tinydgm.models.energy.rbm import BernoulliRBM
from tinydgm.models.protocol import as_samples
from tinydgm.nn.module import Module, ModuleList

__all__ = ["DBN"]


class DBN(Module):
    """A DBN with layer sizes (D, H_1, ..., H_L), L >= 1 stacked BernoulliRBMs.

        dbn = DBN([784, 500, 500], rng=td.rng(0))
        dbn.fit(x, epochs=10, batch_size=100, lr=0.05)
        dbn.sample(16, td.rng(0), k=1000)
    """

    def __init__(self, layer_sizes, rng=None, dtype=None, device=None, init_std=0.01, k=1, persistent=False):
        super().__init__()
        sizes = list(layer_sizes)
        if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"DBN: layer_sizes must be at least two positive ints (D, H_1, ...), got {layer_sizes!r}")
        self.layer_sizes = sizes
        self.rbms = ModuleList([BernoulliRBM(a, b, rng=rng, dtype=dtype, device=device, init_std=init_std, k=k,
                                             persistent=persistent)
                                for a, b in zip(sizes[:-1], sizes[1:])])

    def extra_repr(self):
        return f"layer_sizes={self.layer_sizes}"

    @property
    def top(self):
        return self.rbms[len(self.rbms) - 1]

    def _array(self, x):
        rbm = self.rbms[0]
        return backend.to_device(x.data if isinstance(x, Tensor) else x, rbm.W.device).astype(rbm.W.dtype, copy=False)

    def _up(self, rbm, x, propagate, rng):
        """The next layer's data: p(h = 1 | x) of ``rbm``, or one sample of it."""
        with no_grad():
            p = rbm.hidden_probs(x).data
        if propagate == "samples":
            return (backend.to_device(rng.random(p.shape, dtype=p.dtype), rbm.W.device) < p).astype(p.dtype)
        return p

    def fit(self, x, epochs=10, batch_size=100, lr=0.05, k=1, persistent=True, momentum=0.5, weight_decay=0.0,
            rng=None, propagate="probs", tie_init=True, layers=None, shuffle=True, progress=False):
        """Greedy layer-wise training: each RBM in turn on the layer below's p(h = 1 | .)
        (``propagate``: "probs" or "samples"). ``epochs`` (an int, or one per RBM), the other
        settings as ``BernoulliRBM.fit``. tie_init: start RBM l+1 from RBM l transposed where
        the sizes allow (H_{l+1} = H_{l-1}). layers: train only these RBM indices (the others
        only propagate the data). Returns the list of the RBMs' histories."""
        if propagate not in ("probs", "samples"):
            raise ValueError(f'DBN.fit: propagate must be "probs" or "samples", got {propagate!r}')
        rng = backend.default_generator() if rng is None else rng
        epochs = [epochs] * len(self.rbms) if isinstance(epochs, int) else list(epochs)
        data = self._array(x)
        histories = []
        for l, rbm in enumerate(self.rbms):
            if layers is None or l in layers:
                if tie_init and l > 0:
                    self.tie_to_layer_below(l)
                histories.append(rbm.fit(data, epochs[l], batch_size, lr, k, persistent, momentum, weight_decay,
                                         rng, shuffle))
                if progress:
                    print(f"DBN layer {l + 1}/{len(self.rbms)} trained", flush=True)
            if l < len(self.rbms) - 1:
                data = self._up(rbm, data, propagate, rng)
        return histories

    def loss(self, v):
        """sum_l [mean F_l(x_l) - mean F_l(x_l^model)]: each RBM's CD surrogate
        (``BernoulliRBM.loss``, CD-k or PCD-k as constructed) on x_1 = v and x_{l+1} =
        p(h_l = 1 | x_l), propagated without gradient. What ``train.fit`` minimises: all layers
        at once, each along its own CD estimate (not the greedy schedule of ``fit``)."""
        x = self._array(v)
        total = 0
        for l, rbm in enumerate(self.rbms):
            total = total + rbm.loss(x)
            if l < len(self.rbms) - 1:
                x = self._up(rbm, x, "probs", None)
        return total

    def tie_to_layer_below(self, l):
        """RBM l <- RBM l-1 transposed (W_l = W_{l-1}^T, b_l = c_{l-1}, c_l = b_{l-1}) when
        the sizes allow; returns whether it did."""
        below, rbm = self.rbms[l - 1], self.rbms[l]
        if rbm.W.shape != below.W.shape[::-1]:
            return False
        rbm.W.data[...] = below.W.data.T
        rbm.b.data[...] = below.c.data
        rbm.c.data[...] = below.b.data
        rbm.h_chain, rbm._velocity = None, None
        return True

    def sample(self, n, rng=None, k=1000, mean=True):
        """n samples, a Tensor (n, D) (no graph): k Gibbs sweeps in the top RBM (chains from random base-rate
        states of its visible layer), then a down pass h_{l-1} ~ P(h_{l-1} | h_l) through the
        directed layers; the last step gives p(v = 1 | h_1) (``mean=True``) or a binary sample."""
        rng = backend.default_generator() if rng is None else rng
        top = self.top
        if len(self.rbms) == 1:
            return top.sample(n, rng, k=k, mean=mean)
        h_below, _ = top.gibbs(top._initial_visible(n, rng), k, rng)       # h_{L-1} after k sweeps
        for l in range(len(self.rbms) - 2, -1, -1):
            rbm = self.rbms[l]
            with no_grad():
                p = rbm.visible_probs(tensor(h_below, device=rbm.W.device)).data
            if l == 0 and mean:
                return as_samples(p)
            h_below = (backend.to_device(rng.random(p.shape, dtype=p.dtype), rbm.W.device) < p).astype(p.dtype)
        return as_samples(h_below)

    # --- exact evaluation of small two-layer DBNs (enumerating h_1)
    def _two_layer_terms(self, v):
        """(log q(h_1 | v) + ..., pieces) over all 2^H_1 states h_1: returns log P(v | h_1) (N, S),
        log P_top(h_1) (S,) and log q(h_1 | v) (N, S)."""
        if len(self.rbms) != 2:
            raise ValueError(f"DBN: exact evaluation is written for two RBMs, this DBN has {len(self.rbms)}")
        bottom, top = self.rbms[0], self.rbms[1]
        if bottom.n_hidden > 20:
            raise ValueError(f"DBN: exact evaluation enumerates 2^H_1 states; H_1 = {bottom.n_hidden} is too many")
        xp = backend.module_for_device(bottom.W.device)
        h = tensor(evaluate.binary_states(bottom.n_hidden, dtype=bottom.W.dtype, xp=xp), device=bottom.W.device)
        v = bottom._as_input(v, "log_prob")
        logits_v = h @ bottom.W.transpose() + bottom.b                                   # (S, D)
        log_pv_h = v @ log_sigmoid(logits_v).transpose() + (1 - v) @ log_sigmoid(-logits_v).transpose()  # (N, S)
        log_top = top.log_prob(h)                                                        # (S,)
        logits_h = v @ bottom.W + bottom.c                                               # (N, H_1)
        log_q = log_sigmoid(logits_h) @ h.transpose() + log_sigmoid(-logits_h) @ (1 - h).transpose()
        return log_pv_h, log_top, log_q

    def log_prob(self, v):
        """Exact log p(v) = log sum_{h_1} P(v | h_1) P_top(h_1) (N,), for two small RBMs."""
        log_pv_h, log_top, _ = self._two_layer_terms(v)
        return logsumexp(log_pv_h + log_top, axis=1)

    def bits_per_dim(self, v):
        """-log p(v) / (D ln 2), (N,), for two small RBMs (exact ``log_prob``)."""
        return evaluate.bits_per_dim(-self.log_prob(v), self.layer_sizes[0])

    def variational_bound(self, v):
        """The greedy-training bound sum_{h_1} q [log P(v | h_1) + log P_top(h_1) - log q] (N,)."""
        log_pv_h, log_top, log_q = self._two_layer_terms(v)
        q = log_q.exp()
        return (q * (log_pv_h + log_top - log_q)).sum(axis=1)

    def hidden_probs(self, v):
        """p(h_l = 1 | h_{l-1}) of each layer on the way up (the approximate posterior's means)."""
        out, x = [], self._array(v)
        for rbm in self.rbms:
            with no_grad():
                x = sigmoid(tensor(x, device=rbm.W.device) @ rbm.W + rbm.c).data
            out.append(x)
        return out
