"""MADE: Masked Autoencoder for Distribution Estimation (Germain, Gregor, Murray &
Larochelle, ICML 2015; intro lecture part III, "Masked Autoencoder for Distribution
Estimation", and eq. 42: p(x) = p(x_1) prod_{d>1} p(x_d | x_<d)).

An MLP whose weights are masked (tinydgm.nn.masked_linear: degrees m^l(k), masks M^l, MaskedLinear)
so that output d sees only the inputs before d in the ordering m^0. One forward pass gives
every conditional at once:

    h^0 = x,   h^l = relu(h^{l-1} (W^l * M^l) + b^l)            l = 1..L   (ReLU, as the paper)
    y   = h^L (W^V * M^V) + b^V  [+ x (A * M^A) with direct input-output connections]

    Bernoulli:  p(x_d = 1 | x_<d) = sigmoid(y_d)                 y: (N, D) logits
                log p(x) = sum_d x_d y_d - softplus(y_d)
    Gaussian:   p(x_d | x_<d) = N(mu_d, exp(log_scale_d)^2)      y = [mu | log_scale]: (N, 2D)
                (outputs_per_input = 2: both blocks obey the ordering)

Order- and connectivity-agnostic training (sec. 4): ``n_masks = K > 1`` draws K mask sets
(orderings and/or hidden degrees, per ``ordering``/``connectivity`` = "random") once and
``loss`` moves to the next one at every training minibatch, cycling as the authors' code
does; ``resample_every_step=True`` draws a fresh set from ``self.rng`` at every minibatch
instead (``train.fit`` lends its seeded generator to ``self.rng``, so runs are repeatable).
The parameters are shared: the K masks are an ensemble of K autoregressive models.

Test-time ensemble (sec. 4): ``log_prob(x, n_masks=K)`` AVERAGES THE PROBABILITIES of the
K models,

    p_ens(x) = 1/K sum_k p_k(x),   log p_ens(x) = logsumexp_k log p_k(x) - log K,

a mixture of normalised distributions, hence normalised. Averaging the logits instead
(one network whose conditional d mixes orderings in which x_d comes before or after the
others) is not a product of conditionals in any single order and does not sum to 1 in
general (tests/models/autoregressive/test_made.py shows both). The default is a single mask (the current one).

Sampling (``sample``): ancestral, D sequential conditionals, randomness drawn up front by a
seeded generator (uniforms u (n, D) in ordering order for Bernoulli, normals eps for
Gaussian). ``method="fast"`` runs the Numba kernel of tinydgm.kernels.made_sampler (the
batched twin on CuPy): incremental first-layer pre-activations and every hidden unit
computed once, about one forward pass per sample; ``method="naive"`` makes D forward passes
through the engine. Same seed, same samples. Gaussian MADEs have only the naive loop
(x_d = mu_d + exp(log_scale_d) eps_d): ``method="fast"`` falls back to it.

Conditioning (Kingma et al. 2016, "Improving Variational Inference with Inverse
Autoregressive Flow", sec. 4 and fig. 2): with ``context_dim = C`` a context vector h (N, C),
e.g. a VAE encoder's, feeds every hidden layer through an unmasked weight V^l,

    h^l = relu(h^{l-1} (W^l * M^l) + h V^l + b^l)

so the outputs may depend on h while the autoregressive structure in x is untouched;
``forward(x, context=h)``. The first variable's outputs see no hidden unit (they are the
output biases, as p(x_1) is unconditional in any MADE) and so do not see h either; an IAF
posterior reverses the ordering between steps, so every variable is conditioned on h in
some step. Without a context (the default) nothing changes.

Limitations: log_scale is not clamped (a very confident Gaussian MADE can overflow exp in
float32); the fast sampler needs at least one hidden layer (the constructor requires it).
"""
import math
import time

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad, tensor
from tinydgm.autodiff.functional import (binary_cross_entropy_with_logits, logsumexp, relu, split,
                                         stack)
from tinydgm.distributions import Normal
from tinydgm.evaluate import bits_per_dim as _bits_per_dim
from tinydgm.kernels import made_sampler
from tinydgm.models.protocol import as_batch, as_samples
from tinydgm.nn.linear import Linear
from tinydgm.nn.masked_linear import MADEMasks, MaskedLinear
from tinydgm.nn.module import Module, ModuleList

__all__ = ["MADE", "PAPER_CONFIG", "reproduce"]

_OUTPUTS = {"bernoulli": 1, "gaussian": 2}


class MADE(Module):
    """MADE(n_inputs, hidden_sizes, output="bernoulli"|"gaussian", ordering="natural",
    connectivity="random", n_masks=1, resample_every_step=False, direct=False, rng=None,
    dtype=None, context_dim=None).

        model = MADE(784, [500])        # the paper's 784-500-784 (hidden degrees drawn at random)

    n_inputs: D. hidden_sizes: widths of the L >= 1 hidden layers (ReLU).
    output: "bernoulli" (binary data; D logits) or "gaussian" (real data; D means and D
    log-scales, outputs_per_input = 2).
    ordering: "natural", "random" or an explicit permutation of 1..D (m^0);
    connectivity: "random" (hidden degrees drawn uniformly, as the paper, sec. 3-4, and the
    lecture; the default) or "natural" (evenly spread; needs at least D - 1 units per layer).
    n_masks: K fixed mask sets cycled through during training (1: a single fixed mask).
    resample_every_step: a fresh mask set at every training minibatch, drawn with
    ``self.rng`` (then n_masks must stay 1).
    direct: direct input-to-output connections (masked by M^A).
    context_dim: C, the size of a conditioning vector h fed unmasked into every hidden layer
    (None: no context; see the module docstring).
    rng: NumPy Generator for the initialisation, the mask draws and the default sampling
    generator (None: ``tinydgm.backend.default_generator()``).

    Attributes: ``masks`` (a tinydgm.nn.masked_linear.MADEMasks: ``masks.ordering`` is the current
    m^0), ``layers`` (the L + 1 MaskedLinear), ``direct_layer`` (or None), ``rng``.
    """

    def __init__(self, n_inputs, hidden_sizes, output="bernoulli", ordering="natural",
                 connectivity="random", n_masks=1, resample_every_step=False, direct=False, rng=None,
                 dtype=None, context_dim=None):
        super().__init__()
        if output not in _OUTPUTS:
            raise ValueError(f'MADE: output must be "bernoulli" or "gaussian", got {output!r}')
        if not isinstance(hidden_sizes, (list, tuple)) or len(hidden_sizes) == 0:
            raise ValueError(f"MADE: hidden_sizes must be a non-empty list of layer widths (at least one "
                             f"hidden layer), got {hidden_sizes!r}")
        if resample_every_step and n_masks != 1:
            raise ValueError(f"MADE: resample_every_step=True draws a fresh mask set at every step; it cannot "
                             f"be combined with a fixed set of n_masks={n_masks!r} (leave n_masks=1)")
        self.rng = backend.default_generator() if rng is None else rng
        self.n_inputs, self.hidden_sizes, self.output = n_inputs, list(hidden_sizes), output
        self.outputs_per_input = _OUTPUTS[output]
        self.resample_every_step = bool(resample_every_step)
        self.masks = MADEMasks(n_inputs, list(hidden_sizes), ordering, connectivity, direct,
                               self.outputs_per_input, None if resample_every_step else n_masks, self.rng)
        self.n_masks = self.masks.n_masks                 # None when every step draws afresh
        sizes = [n_inputs] + list(hidden_sizes) + [self.outputs_per_input * n_inputs]
        self.layers = ModuleList([MaskedLinear(n_in, n_out, rng=self.rng, dtype=dtype)
                                  for n_in, n_out in zip(sizes[:-1], sizes[1:])])
        self.direct_layer = MaskedLinear(n_inputs, sizes[-1], bias=False, rng=self.rng, dtype=dtype) \
            if direct else None
        self.masks.apply(self.layers, self.direct_layer)
        if context_dim is not None and (isinstance(context_dim, bool) or not isinstance(context_dim, int)
                                        or context_dim < 1):
            raise ValueError(f"MADE: context_dim must be a positive int or None, got {context_dim!r}")
        self.context_dim = context_dim
        # V^l: unmasked, no bias (b^l is already there); drawn after the masked layers so that a
        # MADE without context is initialised exactly as before
        self.context_layers = None if context_dim is None else ModuleList(
            [Linear(context_dim, h, bias=False, rng=self.rng, dtype=dtype) for h in hidden_sizes])

    # ----------------------------------------------------------------------------- the network

    @property
    def ordering(self):
        """m^0 of the current mask set: x_d is the m^0(d)-th variable sampled."""
        return self.masks.ordering

    def forward(self, x, context=None):
        """y = MADE(x): (N, D) logits, or (N, 2D) = [mu | log_scale] for Gaussian outputs.
        context: (N, C) when the MADE was built with context_dim = C (else None)."""
        x = self._as_input(x, "forward")
        context = self._as_context(context, x)
        h = x
        for l, layer in enumerate(self.layers[:-1]):
            a = layer(h)                                       # h^{l-1} (W^l * M^l) + b^l
            if context is not None:
                a = a + self.context_layers[l](context)        # + h V^l (unmasked: every output may see h)
            h = relu(a)
        y = self.layers[-1](h)                                 # y = h^L (W^V * M^V) + b^V
        if self.direct_layer is not None:
            y = y + self.direct_layer(x)                       # + x (A * M^A)
        return y

    def _log_prob_one_mask(self, x):
        """log p(x) = sum_d log p(x_d | x_<d) under the current masks, (N,)."""
        y = self.forward(x)
        if self.output == "bernoulli":
            return -binary_cross_entropy_with_logits(y, x).sum(axis=-1)
        mu, log_scale = split(y, 2, axis=-1)
        return Normal(mu, log_scale=log_scale).log_prob(x).sum(axis=-1)

    def log_prob(self, x, n_masks=None, rng=None):
        """Exact log p(x) in nats, (N,).

        n_masks=None: the current mask. n_masks=K: the ensemble of K masks,
        log (1/K sum_k p_k(x)) = logsumexp_k log p_k(x) - log K (probabilities averaged,
        not logits): the first K of the fixed sets, or, with resample_every_step, K fresh
        draws with ``rng`` (default ``self.rng``). The current masks are restored afterwards.
        """
        x = self._as_input(x, "log_prob")
        if n_masks is None:
            return self._log_prob_one_mask(x)
        if isinstance(n_masks, bool) or not isinstance(n_masks, int) or n_masks < 1:
            raise ValueError(f"MADE.log_prob: n_masks must be a positive int (or None), got {n_masks!r}")
        if self.n_masks is None:                           # fresh draws, in a separate MADEMasks
            masks = MADEMasks(self.n_inputs, self.hidden_sizes, self.masks.ordering_rule, self.masks.connectivity,
                              self.masks.direct, self.outputs_per_input, n_masks,
                              rng if rng is not None else self.rng)
        elif n_masks > self.n_masks:
            raise ValueError(f"MADE.log_prob: an ensemble of {n_masks} masks was asked for but the model has "
                             f"only n_masks={self.n_masks} fixed mask sets")
        else:
            masks = self.masks
        current = self.masks.index
        log_p = []                                         # log p_k(x), k = 1..K
        try:
            for k in range(n_masks):
                masks.select(k).apply(self.layers, self.direct_layer)
                log_p.append(self._log_prob_one_mask(x))
        finally:
            if current is not None:
                self.masks.select(current)
            self.masks.apply(self.layers, self.direct_layer)
        return logsumexp(stack(log_p, axis=0), axis=0) - math.log(n_masks)

    def bits_per_dim(self, x, n_masks=None):
        """-log p(x) / (D ln 2), (N,)."""
        return _bits_per_dim(-self.log_prob(x, n_masks), self.n_inputs)

    def loss(self, x, n_masks=None):
        """Mean negative log-likelihood of the batch (what ``train.fit`` minimises). In
        training mode it first moves to the next mask set (order/connectivity-agnostic
        training, sec. 4): the next of the K fixed sets, or a fresh draw with ``self.rng``."""
        if self.training and (self.n_masks is None or self.n_masks > 1):
            self.resample_masks()
        return -self.log_prob(x, n_masks).mean()

    def resample_masks(self):
        """Next mask set (cycling through the fixed sets, or a fresh draw with ``self.rng``)."""
        self.masks.resample(self.rng if self.n_masks is None else None)
        self.masks.apply(self.layers, self.direct_layer)
        return self

    # ----------------------------------------------------------------------------- sampling

    def sample(self, n, rng=None, method="fast"):
        """n samples (a Tensor (n, D) on the model's device, no graph; 0/1 floats for Bernoulli)
        from the current masks.

        rng: NumPy Generator (default ``self.rng``); the uniforms (Bernoulli) or standard
        normals (Gaussian) are drawn from it up front, (n, D) in ordering order, so "fast"
        and "naive" give identical samples for the same seed.
        method: "fast" (Numba kernel; batched twin on CuPy; Gaussian: the naive loop) or
        "naive" (D forward passes through the engine).
        """
        if method not in ("fast", "naive"):
            raise ValueError(f'MADE.sample: method must be "fast" or "naive", got {method!r}')
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"MADE.sample: n must be a non-negative int, got {n!r}")
        rng = self.rng if rng is None else rng
        device = self.layers[0].weight.device
        order = made_sampler.ordering_positions(self.ordering)
        if self.output == "gaussian":
            eps = backend.to_device(rng.standard_normal((n, self.n_inputs)), device)
            x = made_sampler.sample_gaussian_naive(self._gaussian_params_array, eps, order)
        else:
            u = backend.to_device(rng.random((n, self.n_inputs)), device)
            if method == "naive":
                x = made_sampler.sample_bernoulli_naive(self._logits_array, u, order)
            else:
                x = made_sampler.sample_bernoulli_made(*self._sampler_arrays(), u, direct=self._direct_array())
        return as_samples(x, self.layers[0].weight.dtype)

    def _forward_array(self, x):
        with no_grad():
            return self.forward(Tensor(x.astype(self.layers[0].weight.dtype))).data

    def _logits_array(self, x):
        return self._forward_array(x)

    def _gaussian_params_array(self, x):
        y = self._forward_array(x)
        return y[:, :self.n_inputs], y[:, self.n_inputs:]

    def _sampler_arrays(self):
        """[W^l * M^l], [b^l], [m^0..m^L]: the masked weights the kernel reads."""
        weights = [layer.weight.data * layer.mask for layer in self.layers]
        biases = [layer.bias.data for layer in self.layers]
        return weights, biases, self.masks.degrees

    def _direct_array(self):
        return None if self.direct_layer is None else self.direct_layer.weight.data * self.direct_layer.mask

    # ----------------------------------------------------------------------------- inputs

    def _as_input(self, x, who):
        return as_batch(x, self.layers[0].weight, self.n_inputs, f"MADE.{who}", finite=False)

    def _as_context(self, context, x):
        if self.context_dim is None:
            if context is not None:
                raise ValueError("MADE.forward: a context was given but the MADE was built without one "
                                 "(context_dim=None)")
            return None
        if context is None:
            raise ValueError(f"MADE.forward: this MADE is conditioned on a context (context_dim="
                             f"{self.context_dim}); pass context of shape (N, {self.context_dim})")
        if not isinstance(context, Tensor):
            context = tensor(context, dtype=x.dtype, device=x.device)
        if context.ndim != 2 or tuple(context.shape) != (x.shape[0], self.context_dim):
            raise ValueError(f"MADE.forward: context must have shape (N, C) = ({x.shape[0]}, {self.context_dim}), "
                             f"got {tuple(context.shape)}")
        return context

    def extra_repr(self):
        context = "" if self.context_dim is None else f", context_dim={self.context_dim}"
        return (f"n_inputs={self.n_inputs}, hidden_sizes={self.hidden_sizes}, output={self.output!r}, "
                f"n_masks={self.n_masks}, direct={self.direct_layer is not None}{context}")


# ----------------------------------------------------------------------------- the paper's set-up

PAPER_CONFIG = {
    "paper": "Germain, Gregor, Murray & Larochelle, MADE, ICML 2015, sec. 6.2 and its binarized-MNIST table",
    "data": "statically binarized MNIST (Larochelle & Murray 2011): 50k train, 10k valid, 10k test, "
            "the fixed binarization (never re-binarized); tinydgm.data.load_binarized_mnist",
    # The two rows the issue quotes. Hidden widths: the authors' released command for their best
    # MNIST result (github.com/mgermain/MADE README) trains [8000, 8000] with 32 masks; 500 units for
    # the one-mask row is the 784-500-784, NOT verified against the paper's text (the paper's
    # width for that row may also be larger). Our recollection of the table: 1 hidden layer / 1 mask
    # 88.40, 2 hidden layers / 1 mask 89.59, and 86.64 on a 32-mask row; whether 86.64 belongs to
    # the one- or the two-hidden-layer 32-mask row is uncertain (the issue says two; the authors'
    # "best result" command, two layers of 8000, agrees).
    "runs": {
        "1hl_1mask": {"hidden_sizes": [500], "n_masks": 1, "published_test_nll": 88.40},
        "2hl_32masks": {"hidden_sizes": [8000, 8000], "n_masks": 32, "published_test_nll": 86.64},
    },
    # common to both rows (authors' command: adagrad lr 0.01, batch 100, look-ahead 30, "Full"
    # shuffling = random ordering AND connectivity, direct input-to-output connections, ReLU
    # ("hinge"), orthogonal initialisation, first masks drawn at random even with one mask)
    "ordering": "random",
    "connectivity": "random",
    "direct": True,
    "activation": "relu",
    "optimizer": "adagrad",
    "lr": 0.01,
    "batch_size": 100,
    "max_epochs": None,               # until early stopping
    "early_stopping_patience": 30,    # epochs without a better validation NLL ("look_ahead")
    "init": "orthogonal",
    "evaluation": "exact test NLL in nats; with K masks the ensemble averages probabilities over "
                  "the masks (the authors' code averages K + 1 = 33 mask states)",
    # what tinydgm.models.autoregressive.made.reproduce actually uses where it differs (stated, not hidden)
    "tinydgm_substitutions": {
        "optimizer": "adam (tinydgm.optim has no Adagrad)",
        "lr": 1e-3,
        "init": "tinydgm's default U(+-1/sqrt(fan_in)) instead of orthogonal",
        "ensemble_masks": "K (the K fixed training sets)",
    },
}


def reproduce(epochs=None, data_path=None, run="1hl_1mask", hidden_sizes=None, n_masks=None, lr=None,
              batch_size=None, patience=None, seed=0, max_train=None, eval_n_masks=None, dtype="float32",
              progress=False, log=None, max_time=None, valid_n_masks=None):
    """Train a MADE on statically binarized MNIST with PAPER_CONFIG[run] (overridable) and
    return its exact test NLL.

    epochs: the maximum number of epochs (None: PAPER_CONFIG's, i.e. until early stopping,
    capped at 1000). Early stopping on the validation NLL (the ensemble of the K training
    masks when K > 1) with the configured patience; the best epoch's parameters are
    evaluated. data_path: the .npz / folder for ``load_binarized_mnist`` (None: its default
    search). max_train: use only the first max_train training images (quick checks).
    log: optional callable(str) receiving one line per epoch. max_time: stop after the
    first epoch that ends later than max_time seconds after the start (short runs).
    valid_n_masks: masks averaged for the per-epoch validation NLL (default: eval_n_masks;
    fewer makes early stopping cheaper when the test ensemble is large).

    Returns a dict: test_nll (nats), test_bits_per_dim, best_epoch, valid_nll and
    train_loss per epoch (the learning curve), epoch_time (seconds per epoch),
    training_time, eval_time, config (what was run).
    """
    from tinydgm.data import load_binarized_mnist
    from tinydgm.optim import Adam
    from tinydgm.train import fit

    row = PAPER_CONFIG["runs"][run]
    config = {
        "run": run, "hidden_sizes": list(hidden_sizes or row["hidden_sizes"]),
        "n_masks": n_masks or row["n_masks"], "ordering": PAPER_CONFIG["ordering"],
        "connectivity": PAPER_CONFIG["connectivity"], "direct": PAPER_CONFIG["direct"],
        "optimizer": "adam", "lr": lr or PAPER_CONFIG["tinydgm_substitutions"]["lr"],
        "batch_size": batch_size or PAPER_CONFIG["batch_size"],
        "patience": patience or PAPER_CONFIG["early_stopping_patience"],
        "max_epochs": epochs or PAPER_CONFIG["max_epochs"] or 1000, "seed": seed, "dtype": dtype,
        "max_train": max_train, "published_test_nll": row["published_test_nll"],
    }
    config["eval_n_masks"] = eval_n_masks or (config["n_masks"] if config["n_masks"] > 1 else None)
    config["valid_n_masks"] = valid_n_masks or config["eval_n_masks"]
    data = load_binarized_mnist(path=data_path, download=False, progress=False)
    x_train = data["train"][:max_train] if max_train else data["train"]
    rng = backend.rng(seed)
    with backend.default_dtype(dtype):
        model = MADE(784, config["hidden_sizes"], "bernoulli", config["ordering"], config["connectivity"],
                     n_masks=config["n_masks"], direct=config["direct"], rng=rng, dtype=dtype)
    optimizer = Adam(model.parameters(), lr=config["lr"])

    started = time.perf_counter()
    best = {"nll": math.inf, "epoch": 0, "state": None}
    valid_curve = []

    def on_epoch_end(epoch, history, model):
        nll = _mean_nll(model, data["valid"], config["valid_n_masks"])
        valid_curve.append(nll)
        if nll < best["nll"]:
            best.update(nll=nll, epoch=epoch, state=model.state_dict())
        if log is not None:
            log(f"epoch {epoch}: train {history['epoch_loss'][-1]:.3f} valid {nll:.3f} "
                f"({history['time'][-1]:.1f} s)")
        out_of_time = max_time is not None and time.perf_counter() - started > max_time
        return epoch - best["epoch"] < config["patience"] and not out_of_time

    history = fit(model, x_train, optimizer, epochs=config["max_epochs"], batch_size=config["batch_size"],
                  rng=rng, on_epoch_end=on_epoch_end, progress=progress, config=config)
    training_time = time.perf_counter() - started
    model.load_state_dict(best["state"])
    started = time.perf_counter()
    test_nll = _mean_nll(model, data["test"], config["eval_n_masks"])
    return {
        "test_nll": test_nll, "test_bits_per_dim": test_nll / (784 * math.log(2.0)),
        "best_epoch": best["epoch"], "valid_nll": valid_curve,
        "train_loss": [float(v) for v in history["epoch_loss"]],
        "epoch_time": [float(v) for v in history["time"]], "training_time": training_time,
        "eval_time": time.perf_counter() - started, "config": config,
    }


def _mean_nll(model, x, n_masks, batch_size=1000):
    """-mean log p(x) over a whole split, in nats (exact; ensemble when n_masks)."""
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        with no_grad():
            for start in range(0, len(x), batch_size):
                total -= float(model.log_prob(x[start:start + batch_size], n_masks).sum().item())
    finally:
        model.train(was_training)
    return total / len(x)
