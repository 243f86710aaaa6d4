"""NADE: the Neural Autoregressive Distribution Estimator (Larochelle & Murray 2011, AISTATS;
intro lecture part III, "Neural Autoregressive Distribution Estimator (NADE)", eq. 42).

For binary x in {0, 1}^D in a fixed (natural) ordering,

    p(x) = prod_d p(x_d | x_<d)                                                (eq. 42)
    p(x_d = 1 | x_<d) = sigmoid(b_d + V_d . h_d),   h_d = sigmoid(c + sum_{j<d} x_j w_j)

The input-to-hidden weights w_j are SHARED by all the conditionals (the lecture's slide:
"input-to-hidden parameters w_j shared, hidden-to-output parameters a_i not shared"; the
lecture writes a_i for our V_d), so the hidden pre-activations obey the recursion of the
history vector

    a_1 = c,   a_{d+1} = a_d + x_d w_d,   h_d = sigmoid(a_d)

and log p(x) costs O(DH) per example instead of O(D^2 H).

Layout: W (D, H), row d is w_d: the toolkit's (in, out) layout of ``Linear`` (input
dimension d feeds H hidden units). V (D, H), row d is V_d, the output weights of
conditional d. c (H,), b (D,). Initialisation: W ~ U(-1/sqrt(D), 1/sqrt(D)) (a_d sums up to
D terms), V ~ U(-1/sqrt(H), 1/sqrt(H)) (logit d sums H terms), b = c = 0.

Two ways to the same logits. ``logits_reference`` writes the equation with engine ops:
the pre-activations of all d at once, as the cumulative sum of the recursion over d,

    a[:, d] = sum_{j <= d} xt_j wt_j,   xt = (1, x_1, ..., x_{D-1}),  wt = (c, w_1, ..., w_{D-1})

an (N, D, H) tensor: O(NDH) memory, e.g. 100 x 784 x 500 float32 = 157 MB per array, and a
training step keeps a handful of them (a, h, and their gradients). ``logits`` (what
``log_prob``, ``loss`` and the naive sampler use) calls the fused op
``tinydgm.autodiff.nade_ops.nade_logits`` for V_d . h_d instead: Numba kernels that run the
recursion itself, keep a hidden vector only where x_d = 1 (a zero adds nothing to the
history), and write the backward by hand; no (N, D, H) array. The tests hold the two equal
and gradient-check both. ``log_prob(x, chunk_size=...)`` still evaluates large batches in
chunks. The incremental loop without the (N, D, H) tensor, sampling as it goes, is the
sampler in ``tinydgm.kernels.nade_sampler``.

Speed (2 CPU cores, float32, batch 100, D = 784, H = 500, binarized MNIST): a training step
(forward, backward, Adam) takes tens of milliseconds with the fused op, against about
0.85 s with the reference composition (see BENCHMARKS.md, "NADE training step").

Limitations: binary (Bernoulli) outputs only; one fixed ordering (the natural one; permute
the columns of the data for another); no order-agnostic training (see MADE for that).
"""
import math
import time

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, as_tensor, no_grad, tensor
from tinydgm.autodiff.elementwise import binary_cross_entropy_with_logits, sigmoid
from tinydgm.autodiff.linalg import einsum
from tinydgm.autodiff.nade_ops import nade_logits
from tinydgm.autodiff.reduce import cumsum
from tinydgm.autodiff.shape import concatenate
from tinydgm.evaluate import bits_per_dim
from tinydgm.kernels.nade_sampler import nade_sample, nade_sample_naive, nade_sample_xp
from tinydgm.models.protocol import as_samples
from tinydgm.nn import init
from tinydgm.nn.module import Module, Parameter

__all__ = ["NADE", "PAPER_CONFIG", "reproduce"]

SAMPLE_METHODS = ("fast", "vectorized", "naive")


class NADE(Module):
    """NADE with H sigmoid hidden units over D binary variables (natural ordering).

        model = NADE(784, 500)
        model.log_prob(x)         # (N,) exact log p(x) in nats
        model.loss(x)             # mean NLL, what train.fit minimises
        model.sample(16, td.rng(0))
    """

    def __init__(self, n_inputs, n_hidden, rng=None, dtype=None, device=None):
        super().__init__()
        for name, value in (("n_inputs", n_inputs), ("n_hidden", n_hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"NADE: {name} must be a positive int, got {value!r}")
        self.n_inputs, self.n_hidden = n_inputs, n_hidden
        D, H = n_inputs, n_hidden
        self.W = Parameter(init.uniform((D, H), -1 / math.sqrt(D), 1 / math.sqrt(D), rng, dtype, device))
        self.c = Parameter(init.zeros((H,), dtype, device))
        self.V = Parameter(init.uniform((D, H), -1 / math.sqrt(H), 1 / math.sqrt(H), rng, dtype, device))
        self.b = Parameter(init.zeros((D,), dtype, device))

    def extra_repr(self):
        return f"n_inputs={self.n_inputs}, n_hidden={self.n_hidden}"

    # --- the density
    def _as_input(self, x, who):
        """x as a Tensor (N, D) in the parameters' dtype and device, with a clear shape error."""
        if not isinstance(x, Tensor):
            x = tensor(x, dtype=self.W.dtype, device=self.W.device)
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"NADE.{who}: x must have shape (N, D) = (N, {self.n_inputs}), got {tuple(x.shape)}"
                             + ("; flatten images first, x.reshape(len(x), -1)" if x.ndim > 2 else ""))
        if x.dtype != self.W.dtype:
            x = x.astype(self.W.dtype)
        return x

    def hidden_preactivations(self, x):
        """a (N, D, H): a[:, d] = c + sum_{j<d} x_j w_j, the history vector of every d at once,
        as the (inclusive) cumulative sum over d of xt_d wt_d with xt = (1, x_<D), wt = (c, w_<D):
        a_1 = c, a_{d+1} = a_d + x_d w_d."""
        x = self._as_input(x, "hidden_preactivations")
        n = x.shape[0]
        ones = as_tensor(backend.module_for_device(x.device).ones((n, 1), dtype=x.dtype))
        x_shift = concatenate([ones, x[:, :-1]], axis=1)                   # (1, x_1, ..., x_{D-1})
        w_shift = concatenate([self.c.reshape(1, -1), self.W[:-1]], axis=0)  # (c, w_1, ..., w_{D-1})
        return cumsum(einsum("nd,dh->ndh", x_shift, w_shift), axis=1)      # xt_d wt_d, summed over d

    def logits_reference(self, x):
        """logits (N, D): logit_d = b_d + V_d . h_d, h_d = sigmoid(a_d); p(x_d = 1 | x_<d) =
        sigmoid(logit_d). Logit d depends on x_<d only (the autoregressive property).
        The equation in engine ops, through the (N, D, H) history tensor."""
        h = sigmoid(self.hidden_preactivations(x))
        return einsum("ndh,dh->nd", h, self.V) + self.b

    def logits(self, x):
        """The same logits, logit_d = b_d + V_d . sigmoid(c + sum_{j<d} x_j w_j), by the fused op
        ``nade_logits`` (no (N, D, H) tensor; equal to ``logits_reference``)."""
        x = self._as_input(x, "logits")
        return nade_logits(x, self.W, self.c, self.V) + self.b

    def log_prob(self, x, chunk_size=None):
        """log p(x) (N,) in nats: sum_d log Bernoulli(x_d; sigmoid(logit_d)) = -sum_d BCE(logit_d, x_d).

        chunk_size: evaluate the batch in chunks of this many examples (bounds the (N, D, H)
        memory; meant for evaluation under ``no_grad``)."""
        x = self._as_input(x, "log_prob")
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                       or chunk_size < 1):
            raise ValueError(f"NADE.log_prob: chunk_size must be a positive int, got {chunk_size!r}")
        if chunk_size is not None and chunk_size < x.shape[0]:
            return concatenate([self.log_prob(x[i:i + chunk_size]) for i in range(0, x.shape[0], chunk_size)])
        return -binary_cross_entropy_with_logits(self.logits(x), x).sum(axis=1)

    def bits_per_dim(self, x, chunk_size=None):
        """-log p(x) / (D ln 2), per example (N,)."""
        return bits_per_dim(-self.log_prob(x, chunk_size), self.n_inputs)

    def loss(self, x):
        """Mean negative log-likelihood of the batch, in nats per example."""
        return -self.log_prob(x).mean()

    # --- sampling
    def sample(self, n, rng=None, method="fast"):
        """n exact samples (n, D): a Tensor of 0.0/1.0 in the parameters' dtype and device (no graph).

        Uniforms u (n, D) are drawn with ``rng`` (default: ``td.seed``'s generator) and
        x_d = 1[u_d < p(x_d = 1 | x_<d)], so every method gives the same samples for the
        same seed. method: "fast" (the Numba kernel, O(DH) per sample; the batched twin on
        CUDA), "vectorized" (the batched xp twin), "naive" (D forward passes through the
        engine, O(D^2 H) per sample: the reference).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"NADE.sample: n must be a non-negative int, got {n!r}")
        if method not in SAMPLE_METHODS:
            raise ValueError(f"NADE.sample: method must be one of {SAMPLE_METHODS}, got {method!r}")
        rng = backend.default_generator() if rng is None else rng
        u = rng.random((n, self.n_inputs))                 # float64, drawn on the CPU
        params = (self.W.data, self.c.data, self.V.data, self.b.data)
        if method == "naive":
            x = nade_sample_naive(self.logits, u, dtype=self.W.dtype, device=self.W.device)
        elif method == "vectorized":
            x = nade_sample_xp(*params, backend.to_device(u, self.W.device))
        else:
            x = nade_sample(*params, u)
        return as_samples(x)


# ----------------------------------------------------------------------------- the paper's set-up

PAPER_CONFIG = {
    "paper": "Larochelle & Murray 2011, The Neural Autoregressive Distribution Estimator, AISTATS",
    "data": "statically binarized MNIST (Salakhutdinov & Murray 2008 binarization, as distributed by "
            "Larochelle): 50,000 train / 10,000 valid / 10,000 test, the fixed test set, never re-binarized",
    "ordering": "natural (row-major pixels)",
    "n_hidden": 500,                 # as the paper's MNIST model (to compare with 500-unit RBMs)
    "hidden_activation": "sigmoid",
    "output": "Bernoulli (sigmoid)",
    # Training as we understand the paper (UNCERTAIN details marked): plain stochastic
    # gradient descent on the training NLL, the learning rate chosen on the validation set
    # from {0.0005, 0.005, 0.05} (uncertain: the grid, the decrease schedule lr / (1 + delta t)
    # with delta in {0, 0.001}, and whether updates were per example or on small minibatches),
    # early stopping on the validation NLL (a look-ahead of some epochs; the patience is uncertain).
    "optimizer": "sgd",
    "lr": 0.005,                     # uncertain (the middle of the grid above)
    "batch_size": 1,                 # uncertain: per-example SGD as we understand it
    "max_epochs": 100,               # uncertain: early stopping decides; this is only a cap
    "early_stopping_patience": 10,   # uncertain
    "evaluation": "exact test NLL in nats, mean over the 10,000 test images",
    # Published figure quoted by the issue (and by Germain et al. 2015, Table 6, for "NADE,
    # fixed order"). UNCERTAIN: the AISTATS paper's own table may report a slightly different
    # number (88.86 by our recollection, not verified here).
    "published_test_nll": 88.33,
}


def reproduce(epochs=None, data_path=None, batch_size=None, lr=None, optimizer=None, n_hidden=None,
              seed=0, patience=None, n_train=None, eval_batch_size=200, progress=True, dtype="float32"):
    """Train NADE on statically binarized MNIST with ``PAPER_CONFIG`` (arguments override it)
    and return the exact test NLL with the learning curve.

    epochs: the number of epochs (default ``PAPER_CONFIG["max_epochs"]``); early stopping on
    the validation NLL with ``patience`` epochs; the parameters of the best validation epoch
    are evaluated on the test set. optimizer: "sgd" (the paper) or "adam" (our practical
    choice for short runs: minibatches of 100, lr 1e-3). n_train: train on the first n_train
    training images only (quick checks). data_path: passed to ``load_binarized_mnist``
    (a folder or file, e.g. the one TINYDGM_DATA names), else its search order (TINYDGM_DATA, cache,
    download).

    Returns a dict: test_nll, test_bits_per_dim, best_valid_nll, best_epoch, epochs_run,
    epoch_loss and valid_nll (per epoch: the learning curve), epoch_time_s, train_time_s,
    eval_time_s, config (what was run), published_test_nll.
    """
    from tinydgm import optim
    from tinydgm.data import load_binarized_mnist
    from tinydgm.train import fit

    cfg = dict(PAPER_CONFIG)
    for key, value in (("max_epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("optimizer", optimizer),
                       ("n_hidden", n_hidden), ("early_stopping_patience", patience)):
        if value is not None:
            cfg[key] = value
    if cfg["optimizer"] not in ("sgd", "adam"):
        raise ValueError(f'reproduce: optimizer must be "sgd" or "adam", got {cfg["optimizer"]!r}')
    cfg.update(seed=seed, n_train=n_train, dtype=str(dtype))

    data = load_binarized_mnist(path=data_path)
    x_train = data["train"] if n_train is None else data["train"][:n_train]
    x_train, x_valid, x_test = (a.astype(dtype) for a in (x_train, data["valid"], data["test"]))

    model = NADE(x_train.shape[1], cfg["n_hidden"], rng=backend.rng(seed), dtype=dtype)
    make = optim.SGD if cfg["optimizer"] == "sgd" else optim.Adam
    opt = make(model.parameters(), lr=cfg["lr"])

    best = {"valid": math.inf, "epoch": 0, "state": None}

    def early_stopping(epoch, history, model):
        valid = float(history["valid_loss"][-1])
        if valid < best["valid"]:
            best.update(valid=valid, epoch=epoch, state=model.state_dict())
        return epoch - best["epoch"] < cfg["early_stopping_patience"]

    started = time.perf_counter()
    history = fit(model, x_train, opt, epochs=cfg["max_epochs"], batch_size=cfg["batch_size"], seed=seed,
                  valid_data=x_valid, valid_batch_size=eval_batch_size, on_epoch_end=early_stopping,
                  progress=progress)
    train_time = time.perf_counter() - started
    if best["state"] is not None:
        model.load_state_dict(best["state"])

    started = time.perf_counter()
    with no_grad():
        log_p = model.log_prob(x_test, chunk_size=eval_batch_size).numpy().tolist()
    test_nll = -math.fsum(log_p) / len(log_p)
    eval_time = time.perf_counter() - started
    return {
        "test_nll": test_nll,
        "test_bits_per_dim": test_nll / (x_test.shape[1] * math.log(2.0)),
        "best_valid_nll": best["valid"],
        "best_epoch": best["epoch"],
        "epochs_run": len(history["epoch_loss"]),
        "epoch_loss": history["epoch_loss"].tolist(),
        "valid_nll": history["valid_loss"].tolist(),
        "epoch_time_s": history["time"].tolist(),
        "train_time_s": train_time,
        "eval_time_s": eval_time,
        "config": cfg,
        "published_test_nll": PAPER_CONFIG["published_test_nll"],
    }
