"""Autoregressive models benchmark (issue 5): MADE and PixelCNN training steps and NADE/MADE/PixelCNN
sampling, side by side with PyTorch on the CPU.

    python benchmarks/bench_autoregressive.py [--quick] [--threads N] [--out SECTION.md]
                                              [--parts train,sample]

All in one process, every side pinned to the same number of threads (NumPy's BLAS and OpenMP
through threadpoolctl, Numba, PyTorch through torch.set_num_threads), float32:

1. MADE 784-500-784 training step at batch 100 (one hidden layer, ReLU, Bernoulli outputs, one
   fixed mask): ``tinydgm.models.autoregressive.made.MADE`` (``loss`` -> ``backward`` -> ``tinydgm.optim.Adam``)
   vs the same masked MLP written in PyTorch (``x @ (W * M) + b``, ``torch.optim.Adam``) with the
   model's own masks and weights copied over. Target: at most 1.0x PyTorch.
1b. NADE 784-500 training step at batch 100 (Adam): ``tinydgm.models.autoregressive.nade.NADE``
   (``NADE.logits`` = the fused op ``nade_logits``, and ``NADE.logits_reference``, the same
   equation through the (N, D, H) cumsum) vs PyTorch NADEs written as a loop over d (the running
   pre-activation a_{d+1} = a_d + x_d w_d) and as the vectorised (N, D, H) cumsum, weights copied.
   Target: at most 1.0x the faster PyTorch form. The section also states the memory-bandwidth
   bound of the (N, D, H) computation (one write and one read of a 100 x 784 x 500 float32 array
   at the bandwidth of a large NumPy copy).
2. PixelCNN training step at batch 32 on 28x28 binary images (the model's default architecture:
   a 7x7 type-A masked convolution, residual blocks of type-B masked convolutions, Bernoulli
   output): ``tinydgm.models.autoregressive.pixelcnn.PixelCNN`` vs the same network in PyTorch (masked
   convolutions as ``conv2d(x, W * M)``), weights copied. Target: at most 2x.
3. Sampling 100 MNIST-sized images: the NADE and MADE Numba samplers (``method="fast"``) vs their
   naive engine loops (``method="naive"``: D forward passes) vs a naive PyTorch loop (784
   forward passes of the PyTorch model under ``torch.no_grad``); target at least 10x faster
   than naive PyTorch. NADE also against a batched PyTorch incremental loop (one pass over d
   on (100, 500) arrays): target at least as fast. PixelCNN's fast sampler vs its naive loop (target at least 5x); the
   naive PixelCNN loop is timed on fewer images and reported per image (see the report).

Before timing, each comparison checks that the sides compute the same losses on the same
weights and data (and the same losses along 5 Adam steps for the training steps).
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as torch_F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402

DTYPE = np.float32
D, SIDE = 784, 28
LR = 1e-3
MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                     "binarized_mnist.npz")
MISSING = {}        # part -> why it was skipped


def _model_module(name):
    """tinydgm.models.autoregressive.<name>, or None (recorded in MISSING) while it does not exist yet."""
    import importlib
    try:
        return importlib.import_module(f"tinydgm.models.autoregressive.{name}")
    except ImportError as error:
        MISSING[name] = f"tinydgm.models.autoregressive.{name} could not be imported ({error})"
        return None


def binary_batches(n_batches, batch, seed=0):
    """(n_batches, batch, 784) float32 in {0, 1}: statically binarized MNIST (train split) if the
    shared file is there, else the embedded binarized subset."""
    rng = np.random.default_rng(seed)
    if os.path.exists(MNIST):
        train = np.load(MNIST)["train"]
        source = "statically binarized MNIST (train split)"
    else:
        train = td.data.load_embedded_binarized("train")["x"].reshape(-1, D)
        source = "the embedded binarized MNIST subset (binarized_mnist.npz not found)"
    idx = rng.choice(len(train), size=n_batches * batch, replace=n_batches * batch > len(train))
    return train[idx].reshape(n_batches, batch, D).astype(DTYPE), source


def _np(t):
    return t.numpy() if hasattr(t, "numpy") and not isinstance(t, np.ndarray) else np.asarray(t)


def torch_bernoulli_nll(logits, x):
    """Mean over the batch of -sum_d log Bernoulli(x_d | sigmoid(logit_d))."""
    return torch_F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()


# ----------------------------------------------------------------------------- 1. MADE step

def made_model(seed=0, hidden=500):
    """MADE 784-500-784 as the issue asks: one hidden layer of ReLU units, Bernoulli outputs, one
    fixed mask (natural ordering; random connectivity, since 500 < 783 hidden units cannot hold
    every degree evenly), no direct connections, float32."""
    mod = _model_module("made")
    if mod is None:
        return None
    return mod.MADE(D, [hidden], connectivity="random", n_masks=1, rng=np.random.default_rng(seed),
                    dtype="float32")


class TorchMADE:
    """The masked MLP in PyTorch: logits = relu(x (W1*M1) + b1) (W2*M2) + b2 [+ x (A*MA)],
    with the tinydgm model's weights, biases and masks copied over."""

    def __init__(self, layers):
        # layers: [(W (in, out), b (out,), M (in, out))], the last one the output layer; an
        # optional direct input->output layer is ("direct", W, b, M)
        self.hidden = [tuple(torch.nn.Parameter(torch.tensor(a.copy())) for a in (W, b)) + (torch.tensor(M),)
                       for W, b, M in layers["hidden"]]
        W, b, M = layers["out"]
        self.out = (torch.nn.Parameter(torch.tensor(W.copy())), torch.nn.Parameter(torch.tensor(b.copy())),
                    torch.tensor(M))
        self.direct = None
        if layers.get("direct") is not None:
            W, b, M = layers["direct"]
            self.direct = (torch.nn.Parameter(torch.tensor(W.copy())),
                           None if b is None else torch.nn.Parameter(torch.tensor(b.copy())), torch.tensor(M))
        params = [p for W, b, _ in self.hidden for p in (W, b)] + list(self.out[:2])
        if self.direct is not None:
            params += [p for p in self.direct[:2] if p is not None]
        self.params = params
        self.opt = torch.optim.Adam(params, lr=LR)

    def logits(self, x):
        h = x
        for W, b, M in self.hidden:
            h = torch.relu(h @ (W * M) + b)
        W, b, M = self.out
        out = h @ (W * M) + b
        if self.direct is not None:
            W, b, M = self.direct
            out = out + x @ (W * M) + (0 if b is None else b)
        return out

    def loss(self, x):
        return torch_bernoulli_nll(self.logits(x), x)

    def step(self, x):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(x)
        loss.backward()
        self.opt.step()
        return loss


def made_layers(model):
    """The model's masked layers as NumPy (W, b, M) in the (in, out) layout."""
    def triple(layer):
        return (layer.weight.numpy(), None if layer.bias is None else layer.bias.numpy(),
                np.asarray(layer.mask, dtype=DTYPE))
    layers = [triple(layer) for layer in model.layers]
    return {"hidden": layers[:-1], "out": layers[-1],
            "direct": None if model.direct_layer is None else triple(model.direct_layer)}


def bench_train(cfg, title, td_side, torch_side, batches, repeats, sample_s):
    """The same loss on the same weights and data along 5 Adam steps (|a - b| <= 1e-4 |b|), then the
    interleaved timing of the two steps."""
    xs_td = [td.tensor(x) for x in batches]
    xs_pt = [torch.tensor(x) for x in batches]
    losses = common.check_losses(title, lambda k: (td_side.step(xs_td[k % len(xs_td)]),
                                                   torch_side.step(xs_pt[k % len(xs_pt)])), floor=0.0)
    print(f"  {title}: same loss on both sides for 5 Adam steps (checked): "
          + ", ".join(f"{a:.4f}/{b:.4f}" for a, b in losses), flush=True)
    stats = common.time_steps(td_side.step, torch_side.step, batches, repeats, sample_s, cfg.settle_s, warmup=3)
    return stats, losses


# ----------------------------------------------------------------------------- 1b. NADE step

class TorchNADETrain:
    """NADE in PyTorch with the tinydgm model's W (D, H), c, V (D, H), b, in one of two forms:
    "loop" (the running pre-activation, a_{d+1} = a_d + x_d w_d, one (N, H) sigmoid and matrix-
    vector product per d) or "cumsum" (all (N, D, H) pre-activations at once)."""

    def __init__(self, model, form):
        self.W, self.c, self.V, self.b = (torch.nn.Parameter(torch.tensor(p.numpy().copy()))
                                          for p in (model.W, model.c, model.V, model.b))
        self.form = form
        self.opt = torch.optim.Adam([self.W, self.c, self.V, self.b], lr=LR)

    def logits(self, x):
        n = x.shape[0]
        if self.form == "loop":
            a = self.c.expand(n, -1)
            out = []
            for d in range(D):
                out.append(torch.sigmoid(a) @ self.V[d] + self.b[d])
                a = a + x[:, d:d + 1] * self.W[d]
            return torch.stack(out, 1)
        history = torch.cumsum(x[:, :-1, None] * self.W[None, :-1], 1)
        a = self.c + torch.cat([torch.zeros(n, 1, self.W.shape[1]), history], 1)
        return torch.einsum("ndh,dh->nd", torch.sigmoid(a), self.V) + self.b

    def step(self, x):
        self.opt.zero_grad(set_to_none=True)
        loss = torch_bernoulli_nll(self.logits(x), x)
        loss.backward()
        self.opt.step()
        return loss


class ReferenceNADEStep(common.TinydgmStep):
    """The tinydgm step with ``NADE.logits_reference`` (the (N, D, H) cumsum in engine ops)."""

    def step(self, x):
        self.opt.zero_grad()
        logits = self.model.logits_reference(x)
        loss = td.binary_cross_entropy_with_logits(logits, x).sum(axis=1).mean()
        loss.backward()
        self.opt.step()
        return loss


def memory_bandwidth(n_bytes=1 << 28, repeats=5):
    """Bytes per second of a large NumPy copy (read + write counted), best of ``repeats``."""
    src = np.ones(n_bytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    best = min(time_once(lambda: np.copyto(dst, src))[0] for _ in range(repeats))
    return 2 * src.nbytes / best


def bench_nade_step(cfg, hidden=500, batch=100):
    """NADE 784-500, batch 100: the fused tinydgm step, the reference tinydgm step and both PyTorch forms."""
    mod = _model_module("nade")
    if mod is None:
        return None
    model = mod.NADE(D, hidden, rng=np.random.default_rng(0), dtype="float32")
    batches, source = binary_batches(8, batch)
    sides = {"tinydgm (fused op)": common.TinydgmStep(model, LR),
             "PyTorch loop over d": TorchNADETrain(model, "loop"),
             "PyTorch (N, D, H) cumsum": TorchNADETrain(model, "cumsum")}
    reference = mod.NADE(D, hidden, rng=np.random.default_rng(0), dtype="float32")
    sides["tinydgm reference (N, D, H) cumsum"] = ReferenceNADEStep(reference, LR)
    xs_td = [td.tensor(x) for x in batches]
    xs_pt = [torch.tensor(x) for x in batches]
    losses = []
    for k in range(5):      # the same losses along 5 Adam steps from the same weights, every side
        row = [float(side.step(xs_td[k] if name.startswith("tinydgm") else xs_pt[k]).item())
               for name, side in sides.items()]
        assert max(row) - min(row) <= 1e-4 * abs(row[0]), f"NADE step {k}: losses differ: {row}"
        losses.append(row)
    print("  same loss on every side for 5 Adam steps (checked): "
          + ", ".join("/".join(f"{v:.3f}" for v in row) for row in losses), flush=True)
    cases = {name: common.cycling(side.step, xs_td if name.startswith("tinydgm") else xs_pt)
             for name, side in sides.items()}
    stats, _ = common.compare(cases, repeats=cfg.nade_repeats, warmup=1, min_sample_s=0.0, settle_s=cfg.settle_s,
                              retries=1)     # the slow sides take seconds per step: retake a contended sample once
    for name, st in stats.items():
        print(f"  {name:36s} {common.fmt_ms(st):>24s} ms (contended samples {st.contended})", flush=True)
    bandwidth = memory_bandwidth()
    nbytes = batch * D * hidden * 4
    return {"stats": stats, "losses": losses, "source": source, "bandwidth": bandwidth,
            "bound_s": 2 * nbytes / bandwidth, "nbytes": nbytes, "hidden": hidden, "batch": batch}


def nade_step_markdown(cfg, res):
    stats = res["stats"]
    fused = stats["tinydgm (fused op)"]
    torch_names = ["PyTorch loop over d", "PyTorch (N, D, H) cumsum"]
    faster = min(torch_names, key=lambda name: stats[name].median)
    rows = []
    for name, st in stats.items():
        rows.append([name, common.fmt_ms(st), common.fmt_ratio(st, stats[faster]),
                     f"{st.median / res['bound_s']:.2f}x", st.contended])
    table = common.markdown_table(["NADE 784-500 step, batch 100", "median ms [IQR]",
                                   f"/ {faster} (paired: median, min–max)", "/ bandwidth bound",
                                   "contended samples kept"], rows)
    ratio, _ = common.paired_ratio(fused, stats[faster])
    iqr = common.paired_ratio_iqr(fused, stats[faster])
    gb = res["nbytes"] / 1e6
    return ["### 1b. NADE 784-500 training step, batch 100", "",
            "One step = logits, Bernoulli NLL summed over pixels and averaged over the batch, backward, Adam "
            f"(lr {LR}). tinydgm: `NADE(784, 500)` with `model.loss(x)` (its `logits` are the fused op "
            "`tinydgm.autodiff.nade_ops.nade_logits`: Numba kernels that keep one hidden vector per nonzero "
            "x_d and write the backward by hand) and, as the reference, the same equation through "
            "`NADE.logits_reference` (the (N, D, H) cumsum in engine ops). PyTorch: the same weights in two "
            "forms, a loop over d with the running pre-activation (`a = a + x[:, d:d+1] * W[d]`) and the "
            "vectorised (N, D, H) cumsum, `torch.optim.Adam`. Data: " + res["source"] + ". Every side gave "
            "the same loss over 5 Adam steps from the same weights (checked: "
            + ", ".join(" / ".join(f"{v:.3f}" for v in row) for row in res["losses"]) + f"). {cfg.nade_repeats} "
            "interleaved repeats.", "", table, "",
            f"Target: at most 1.0x the faster PyTorch form ({faster}) — {common.verdict(ratio, iqr, 1.0)}.", "",
            f"Memory-bandwidth bound of the (N, D, H) computation: one (N, D, H) float32 array is {gb:.0f} MB; "
            f"writing it once and reading it once at this machine's bandwidth ({res['bandwidth'] / 1e9:.1f} GB/s, "
            f"a 256 MB NumPy copy, read + write counted) takes {res['bound_s'] * 1e3:.1f} ms, the floor of any step "
            "that materialises the history (the cumsum forms move several such arrays). The fused op never "
            "builds one: it keeps one hidden vector per nonzero pixel (about 13% of the positions on "
            "binarized MNIST), so its step can go below that floor; the column \"/ bandwidth bound\" is each "
            "side's time over it.", ""]


# ----------------------------------------------------------------------------- 3. sampling

def time_once(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def time_interleaved(cases, repeats):
    """{name: fn} each run once to warm up (Numba compilation), then ``repeats`` rounds of one
    call each in rotating order; returns {name: Stats of seconds per call}."""
    names = list(cases)
    for name in names:
        cases[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            time.sleep(0.05)
            times[name].append(time_once(cases[name])[0])
    return {name: common.Stats(t) for name, t in times.items()}


def _uniforms(n, seed):
    """The uniforms the models' samplers draw: rng.random((n, D)) from default_rng(seed)."""
    return np.random.default_rng(seed).random((n, D))


def torch_naive_sampler(logits_fn, u):
    """The textbook loop in PyTorch: D forward passes of the whole model on the partial
    samples, dimension d read off pass d; x_d = 1[u_d < sigmoid(logit_d)] in float64 as the
    tinydgm samplers compare."""
    n = u.shape[0]
    u_t = torch.tensor(u)
    x = torch.zeros((n, D))
    with torch.no_grad():
        for d in range(D):
            logit = logits_fn(x)[:, d].double()
            x[:, d] = (u_t[:, d] < torch.sigmoid(logit)).float()
    return x.numpy()


class TorchNADE:
    """NADE in PyTorch with the tinydgm model's W (D, H), c, V (D, H), b. ``logits`` is the
    forward pass a PyTorch user writes: a loop over d with the running pre-activation
    a_{d+1} = a_d + x_d w_d (94 ms at H = 500, batch 100 on our machine, 4x faster than the
    vectorised (N, D, H) cumsum form, which also needs 157 MB per pass)."""

    def __init__(self, model):
        self.W, self.c, self.V, self.b = (torch.tensor(p.numpy().copy()) for p in (model.W, model.c, model.V, model.b))

    def logits(self, x):
        n = x.shape[0]
        a = self.c.expand(n, -1).clone()
        out = torch.empty((n, D))
        for d in range(D):
            out[:, d] = torch.sigmoid(a) @ self.V[d] + self.b[d]
            a.add_(x[:, d:d + 1] * self.W[d])
        return out

    def sample_incremental(self, u):
        """One pass over d that samples x_d and updates a: the O(DH) loop in PyTorch (batched)."""
        n = u.shape[0]
        u_t = torch.tensor(u)
        x = torch.zeros((n, D))
        with torch.no_grad():
            a = self.c.expand(n, -1).clone()
            for d in range(D):
                logit = torch.sigmoid(a) @ self.V[d] + self.b[d]
                x[:, d] = (u_t[:, d] < torch.sigmoid(logit.double())).float()
                a.add_(x[:, d:d + 1] * self.W[d])
        return x.numpy()


def time_cases(fast, slow, repeats):
    """fast: {name: fn} warmed up once (compilation) then timed ``repeats`` times interleaved;
    slow: {name: (fn, n_images)} timed once each (no warm-up). Returns ({name: Stats of
    seconds per call}, {name: output of the last call})."""
    outputs = {}
    for name, fn in fast.items():
        outputs[name] = fn()
    times = {name: [] for name in fast}
    names = list(fast)
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            time.sleep(0.05)
            t, outputs[name] = time_once(fast[name])
            times[name].append(t)
    stats = {name: common.Stats(t) for name, t in times.items()}
    for name, (fn, n_images) in slow.items():
        time.sleep(0.1)
        t, outputs[name] = time_once(fn)
        stats[name] = common.Stats([t])
        print(f"    {name}: {t:.2f} s for {n_images} images (one run)", flush=True)
    return stats, outputs


def _host(x):
    """NumPy samples: the models' sample() returns a Tensor, the PyTorch side an array."""
    return x.numpy() if isinstance(x, td.Tensor) else np.asarray(x)


def _mismatch(a, b):
    """Pixels that differ between two sample sets (the first min(len) images of each)."""
    k = min(len(a), len(b))
    return int((_host(a)[:k].reshape(k, -1) != _host(b)[:k].reshape(k, -1)).sum())


def bench_sample_nade(cfg, n=100, seed=0):
    """NADE 784-500: the Numba kernel and PyTorch's incremental loop on ``n`` images; the naive
    loops (D = 784 forward passes) on cfg.naive_images (PyTorch) and cfg.naive_engine_images
    (tinydgm: 784 calls of the fused op on the partial samples)."""
    mod = _model_module("nade")
    if mod is None:
        return None
    model = mod.NADE(D, 500, rng=np.random.default_rng(seed), dtype="float32")
    torch_model = TorchNADE(model)
    u = _uniforms(n, seed)
    k_pt, k_td = cfg.naive_images, cfg.naive_engine_images
    fast = {"tinydgm fast (Numba kernel)": lambda: model.sample(n, rng=np.random.default_rng(seed), method="fast"),
            "PyTorch incremental loop (one pass over d)": lambda: torch_model.sample_incremental(u)}
    slow = {"tinydgm naive (784 engine passes)": (
                lambda: model.sample(k_td, rng=np.random.default_rng(seed), method="naive"), k_td),
            "PyTorch naive (784 passes)": (lambda: torch_naive_sampler(torch_model.logits, u[:k_pt]), k_pt)}
    return _sample_report("NADE 784-500", fast, slow, cfg.sample_repeats, n)


def _sample_report(title, fast, slow, repeats, n):
    print(f"  {title}: sampling {n} images", flush=True)
    stats, outputs = time_cases(fast, slow, repeats)
    reference = next(iter(fast))
    images = {name: n for name in fast}
    images.update({name: k for name, (_, k) in slow.items()})
    mismatch = {name: _mismatch(outputs[name], outputs[reference]) for name in outputs}
    per100 = {name: stats[name].median * n / images[name] for name in stats}
    for name, s in stats.items():
        print(f"    {name:44s} {common.fmt_time(s.median):>10s} for {images[name]} images "
              f"({common.fmt_time(per100[name])} per {n});  pixels differing from {reference}: {mismatch[name]}",
              flush=True)
    return {"title": title, "n": n, "stats": stats, "images": images, "per_n": per100, "mismatch": mismatch,
            "reference": reference}


# ----------------------------------------------------------------------------- 2. PixelCNN step

def _conv_params(conv):
    """(W, M, b) of a tinydgm MaskedConv2d as float32 NumPy arrays."""
    return conv.weight.numpy(), np.asarray(conv.mask, dtype=DTYPE), conv.bias.numpy()


class TorchPixelCNN:
    """tinydgm.models.autoregressive.pixelcnn.PixelCNN mirrored in PyTorch (same layers, same order), every
    masked convolution as conv2d(x, W * M, b, padding=k // 2), weights copied from the model:

        a = convA(x);  a = a + expand(relu(conv(relu(reduce(relu(a))))))  per block
        logits = conv_out(relu(head(relu(a))))
    """

    def __init__(self, model):
        def mirror(conv):
            W, M, b = _conv_params(conv)
            return (torch.nn.Parameter(torch.tensor(W.copy())), torch.tensor(M),
                    torch.nn.Parameter(torch.tensor(b.copy())), conv.kernel_size[0] // 2)
        self.conv_in = mirror(model.conv_in)
        self.blocks = [tuple(mirror(c) for c in (blk.reduce, blk.conv, blk.expand)) for blk in model.blocks]
        self.head, self.conv_out = mirror(model.head), mirror(model.conv_out)
        convs = [self.conv_in, self.head, self.conv_out] + [c for blk in self.blocks for c in blk]
        self.params = [p for W, _, b, _ in convs for p in (W, b)]
        self.opt = torch.optim.Adam(self.params, lr=LR)

    @staticmethod
    def _conv(layer, x):
        W, M, b, pad = layer
        return torch_F.conv2d(x, W * M, b, padding=pad)

    def logits(self, x):
        a = self._conv(self.conv_in, x)
        for reduce, conv, expand in self.blocks:
            a = a + self._conv(expand, torch.relu(self._conv(conv, torch.relu(self._conv(reduce, torch.relu(a))))))
        return self._conv(self.conv_out, torch.relu(self._conv(self.head, torch.relu(a))))

    def loss(self, x):
        return torch_bernoulli_nll(self.logits(x), x)

    def step(self, x):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(x)
        loss.backward()
        self.opt.step()
        return loss


def pixelcnn_model(seed=0, **overrides):
    mod = _model_module("pixelcnn")
    if mod is None:
        return None
    return mod.PixelCNN(rng=np.random.default_rng(seed), dtype="float32", **overrides)


def bench_pixelcnn_step(cfg):
    model = pixelcnn_model()
    if model is None:
        return None
    batches, source = binary_batches(4, 32, seed=1)
    batches = batches.reshape(4, 32, 1, SIDE, SIDE)
    torch_model = TorchPixelCNN(model)
    stats, losses = bench_train(cfg, "PixelCNN step", common.TinydgmStep(model, LR), torch_model, batches,
                                cfg.conv_repeats, 0.0)
    return {"stats": stats, "losses": losses, "source": source, "model": model}


def bench_made_step(cfg):
    model = made_model()
    if model is None:
        return None
    batches, source = binary_batches(8, 100)
    torch_model = TorchMADE(made_layers(model))
    stats, losses = bench_train(cfg, "MADE step", common.TinydgmStep(model, LR), torch_model, batches,
                                cfg.repeats, cfg.sample_s)
    return {"stats": stats, "losses": losses, "source": source,
            "kept": float(np.mean(made_layers(model)["hidden"][0][2]))}


def bench_sample_made(cfg, n=100, seed=0):
    model = made_model(seed)
    if model is None:
        return None
    torch_model = TorchMADE(made_layers(model))
    u = _uniforms(n, seed)          # natural ordering: ordering order is pixel order
    k = cfg.naive_images
    fast = {"tinydgm fast (Numba kernel)": lambda: model.sample(n, rng=np.random.default_rng(seed), method="fast")}
    slow = {"tinydgm naive (784 engine passes)": (
                lambda: model.sample(k, rng=np.random.default_rng(seed), method="naive"), k),
            "PyTorch naive (784 passes)": (lambda: torch_naive_sampler(torch_model.logits, u[:k]), k)}
    return _sample_report("MADE 784-500-784", fast, slow, cfg.sample_repeats, n)


def bench_sample_pixelcnn(cfg, n=100, seed=0):
    """PixelCNN (the model's default, 64 channels, 5 residual blocks): fast (per-layer activation
    cache), the receptive-field window sampler and naive (784 full passes) on the same
    cfg.pixelcnn_images images, per image."""
    model = pixelcnn_model(seed)
    if model is None:
        return None
    k = cfg.pixelcnn_images
    fast = {}
    slow = {"tinydgm fast (activation cache)": (
                lambda: model.sample(k, rng=np.random.default_rng(seed), method="fast"), k),
            "tinydgm naive (784 full passes)": (
                lambda: model.sample(k, rng=np.random.default_rng(seed), method="naive"), k),
            "tinydgm receptive-field window": (
                lambda: model.sample(k, rng=np.random.default_rng(seed), method="window"), k)}
    if cfg.pixelcnn_fast_images > k:
        slow[f"tinydgm fast, {cfg.pixelcnn_fast_images} images"] = (
            lambda: model.sample(cfg.pixelcnn_fast_images, rng=np.random.default_rng(seed), method="fast"),
            cfg.pixelcnn_fast_images)
    print(f"  PixelCNN: sampling {k} images with each loop", flush=True)
    stats, outputs = time_cases(fast, slow, 0)
    names = list(slow)
    mismatch = _mismatch(outputs[names[0]], outputs[names[1]])
    print(f"    pixels differing between fast and naive: {mismatch}", flush=True)
    images = {name: n_images for name, (_, n_images) in slow.items()}
    return {"title": "PixelCNN", "n": n, "stats": stats, "images": images,
            "per_n": {name: stats[name].median * n / images[name] for name in names},
            "mismatch": {names[1]: mismatch, **{name: _mismatch(outputs[name], outputs[names[0]]) for name in names[2:]}},
            "reference": names[0], "reach": model.reach()}


# ----------------------------------------------------------------------------- report

def train_table(title, result):
    stats = result["stats"]
    ref = stats["PyTorch"]
    rows = [[name, common.fmt_ms(s), common.fmt_ratio(s, ref), f"{s.min / ref.min:.2f}x", s.contended]
            for name, s in stats.items()]
    return common.markdown_table([title, "median ms [IQR]", "/ PyTorch (paired: median, min–max)",
                                  "ratio of minima", "contended samples kept"], rows)


def sample_table(result, torch_naive=None):
    n = result["n"]
    ref_name = torch_naive if torch_naive in result["per_n"] else None
    rows = []
    for name, s in result["stats"].items():
        k = result["images"][name]
        measured = f"{common.fmt_time(s.median)} for {k}" + (f" (median of {len(s.times)})" if len(s.times) > 1
                                                                 else " (one run)")
        per = result["per_n"][name]
        speed = f"{result['per_n'][ref_name] / per:.3g}x" if ref_name else "—"
        rows.append([name, measured, common.fmt_time(per) + ("" if k == n else f" (x {n}/{k})"), speed,
                     result["mismatch"].get(name, "—")])
    return common.markdown_table([result["title"], "measured", f"time for {n} images", "speed-up vs "
                                  + (ref_name or "—"), f"pixels differing from {result['reference']}"], rows)


def speedup(result, slow_name, fast_name):
    """How many times faster ``fast_name`` is than ``slow_name``, per image."""
    return result["per_n"][slow_name] / result["per_n"][fast_name]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and images (a smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every side (default 2)")
    parser.add_argument("--out", help="write the markdown section to this file")
    parser.add_argument("--parts", default="made,nade,pixelcnn,sample",
                        help="comma-separated parts to run: made, nade, pixelcnn, sample (default all), or "
                             "nade_sample (the NADE samplers alone)")
    cfg = parser.parse_args(argv)
    cfg.repeats = 5 if cfg.quick else 21
    cfg.conv_repeats = 3 if cfg.quick else 9
    cfg.nade_repeats = 3 if cfg.quick else 9
    cfg.sample_s = 0.01 if cfg.quick else 0.03
    cfg.sample_repeats = 2 if cfg.quick else 5
    cfg.naive_images = 10 if cfg.quick else 100
    cfg.naive_engine_images = 5 if cfg.quick else 10
    cfg.pixelcnn_images = 1 if cfg.quick else 4
    cfg.pixelcnn_fast_images = 1 if cfg.quick else 100
    cfg.settle_s = 0.1          # let the other library's spinning BLAS/OpenMP threads sleep
    parts = set(cfg.parts.split(","))

    pinned = common.pin_threads(cfg.threads)
    info = common.machine_info()
    print(common.machine_markdown(info, cfg.threads))
    print(f"- pinned: {pinned}; BLAS pools: {common.blas_info()}", flush=True)
    start, load0 = time.perf_counter(), os.getloadavg()
    loads = {name: common.ForeignLoad() for name in ("made", "nade", "pixelcnn", "sample")}
    made = nade = pixel = nade_s = made_s = pixel_s = None
    if "made" in parts:
        print("\n1. MADE training step", flush=True)
        with loads["made"]:
            made = bench_made_step(cfg)
    if "nade" in parts:
        print("\n1b. NADE training step", flush=True)
        with loads["nade"]:
            nade = bench_nade_step(cfg)
    if "pixelcnn" in parts:
        print("\n2. PixelCNN training step", flush=True)
        with loads["pixelcnn"]:
            pixel = bench_pixelcnn_step(cfg)
    if "sample" in parts or "nade_sample" in parts:
        print("\n3. sampling", flush=True)
        with loads["sample"]:
            nade_s = bench_sample_nade(cfg)
            if "sample" in parts:
                made_s = bench_sample_made(cfg)
                pixel_s = bench_sample_pixelcnn(cfg)
    elapsed = time.perf_counter() - start
    load = os.getloadavg()
    print(f"\ntotal {elapsed:.0f} s; load average {load0[0]:.2f} at the start, {load[0]:.2f} at the end")
    if MISSING:
        print("missing: " + "; ".join(MISSING.values()))

    command = "python benchmarks/bench_autoregressive.py" + (" --quick" if cfg.quick else "") + \
        f" --threads {cfg.threads}" + (f" --parts {cfg.parts}" if parts != {"made", "nade", "pixelcnn", "sample"} else "") + \
        (f" --out {cfg.out}" if cfg.out else "")
    out = ["## Autoregressive models", "",
           f"Command: `{command}` (one process, {elapsed:.0f} s; load average {load0[0]:.2f} at the start, "
           f"{load[0]:.2f} at the end).", "", common.machine_markdown(info, cfg.threads), ""]
    if made:
        ratio, _ = common.paired_ratio(made["stats"]["tinydgm"], made["stats"]["PyTorch"])
        iqr = common.paired_ratio_iqr(made["stats"]["tinydgm"], made["stats"]["PyTorch"])
        out += ["### 1. MADE 784-500-784 training step, batch 100", "",
                "One step = loss (Bernoulli NLL summed over pixels, mean over the batch), backward, Adam "
                f"(lr {LR}). tinydgm: `tinydgm.models.autoregressive.made.MADE(784, [500], connectivity=\"random\", n_masks=1)` "
                "(one hidden ReLU layer, one fixed mask, natural ordering, no direct connections; "
                f"{made['kept']:.0%} of the first layer's weights kept), `model.loss(x)`, `tinydgm.optim.Adam`. "
                "PyTorch: the same masked MLP by hand, `relu(x @ (W1 * M1) + b1) @ (W2 * M2) + b2`, with the "
                "model's masks and initial weights, `torch.optim.Adam`. Data: " + made["source"] + ". "
                f"Both sides gave the same loss over 5 Adam steps from the same weights (checked: "
                + ", ".join(f"{a:.3f} / {b:.3f}" for a, b in made["losses"]) + f"). {cfg.repeats} interleaved "
                "repeats, 0.1 s pause before each sample.", "",
                train_table("MADE step, batch 100", made), "",
                f"Target: at most 1.0x PyTorch — {common.verdict(ratio, iqr, 1.0)}.", "",
                common.load_note(loads["made"], [made["stats"]]), ""]
    if nade:
        out += nade_step_markdown(cfg, nade) + [common.load_note(loads["nade"], [nade["stats"]]), ""]
    if pixel:
        ratio, _ = common.paired_ratio(pixel["stats"]["tinydgm"], pixel["stats"]["PyTorch"])
        iqr = common.paired_ratio_iqr(pixel["stats"]["tinydgm"], pixel["stats"]["PyTorch"])
        m = pixel["model"]
        out += ["### 2. PixelCNN training step, batch 32, 28x28 binary images", "",
                f"The model's default architecture, `tinydgm.models.autoregressive.pixelcnn.PixelCNN()`: a 7x7 type-A masked "
                f"convolution 1 -> {m.channels} channels, {m.n_residual} residual blocks (ReLU, 1x1 "
                f"{m.channels} -> {m.channels // 2}, ReLU, 3x3 type B, ReLU, 1x1 back to {m.channels}, + input), "
                f"ReLU, 1x1 {m.channels} -> {m.channels}, ReLU, 1x1 -> 1 logit per pixel, Bernoulli NLL; "
                f"{m.num_parameters()} parameters. PyTorch: the same layers with `conv2d(x, W * M, b)` and the "
                "model's masks and initial weights, `torch.optim.Adam`. Data: " + pixel["source"] + ". Same loss "
                "over 5 Adam steps on both sides (checked: " + ", ".join(f"{a:.3f} / {b:.3f}" for a, b in
                                                                         pixel["losses"]) +
                f"). {cfg.conv_repeats} interleaved repeats.", "",
                train_table("PixelCNN step, batch 32", pixel), "",
                f"Target: at most 2x PyTorch — {common.verdict(ratio, iqr, 2.0)}.", "",
                common.load_note(loads["pixelcnn"], [pixel["stats"]]), ""]
    if nade_s or made_s or pixel_s:
        out += ["### 3. Sampling MNIST-sized images (784 binary pixels)", "",
                "Every sampler draws its uniforms u (n, 784) from `numpy.random.default_rng(0)` and sets "
                "x_d = 1[u_d < p(x_d = 1 | x_<d)]; the PyTorch loops get the same u, so all sides must return the "
                "same images (the last column counts the pixels that differ, on the images both produced). "
                "\"naive\" = D = 784 forward passes of the whole model over the partial samples, pixel d read "
                "off pass d. Fast samplers: warmed up once (Numba compilation), then the median of "
                f"{cfg.sample_repeats} interleaved runs; naive loops: one run each, on the number of images "
                f"shown, scaled linearly to {100} images where fewer were run.", ""]
    if nade_s:
        out += [sample_table(nade_s, "PyTorch naive (784 passes)"), "",
                "NADE's PyTorch model computes its 784 logits with a loop over d and the running pre-activation "
                "a_{d+1} = a_d + x_d w_d (4x faster here than the vectorised (N, D, H) cumsum form); \"PyTorch "
                "incremental loop\" is the O(DH) sampler a PyTorch user would write (one such pass, sampling "
                "as it goes). tinydgm's naive loop evaluates `NADE.logits` (the fused op) 784 times.", ""]
    if made_s:
        out += [sample_table(made_s, "PyTorch naive (784 passes)"), "",
                "The MADE kernel updates the first layer's pre-activations incrementally and computes each "
                "hidden unit once, when its degree is reached: about one forward pass per sample.", ""]
    if pixel_s:
        up, left, right = pixel_s["reach"]
        out += [sample_table(pixel_s, "tinydgm naive (784 full passes)"), "",
                f"PixelCNN (the model's default: 64 channels, 5 residual blocks): both loops were run on the same "
                f"{cfg.pixelcnn_images} image(s) and scaled per image to 100 (the naive loop at 64 channels "
                f"takes seconds per image). The fast sampler (`method=\"fast\"`, tinydgm/kernels/pixelcnn_sampler.py) "
                "keeps every layer's activation map and computes each layer at pixel p once, at p's step, from "
                "the cached maps (a masked convolution's output at p reads only inputs at or before p, so once "
                "every earlier pixel is sampled, every layer's activation at p is final): a whole sample costs "
                "about one forward pass. The older window sampler (`method=\"window\"`) reruns the network on "
                f"the receptive-field window of each pixel, rows i - {up} .. i and columns j - {left} .. j + {right} "
                f"({(up + 1) * (left + right + 1)} positions instead of 784). Speed-up fast vs naive: "
                f"{pixel_s['per_n'][list(pixel_s['stats'])[1]] / pixel_s['per_n'][list(pixel_s['stats'])[0]]:.1f}x "
                f"on the same {cfg.pixelcnn_images} image(s): target at least 5x — "
                + ("met" if speedup(pixel_s, list(pixel_s["stats"])[1], list(pixel_s["stats"])[0]) >= 5 else "NOT met")
                + (f". The last row is the fast sampler run on all {cfg.pixelcnn_fast_images} images at once (batched "
                   "over images: cheaper per image than the small run)." if cfg.pixelcnn_fast_images > cfg.pixelcnn_images
                   else "."), ""]
    targets = []
    for res in (nade_s, made_s):
        if res:
            x = speedup(res, "PyTorch naive (784 passes)", "tinydgm fast (Numba kernel)")
            targets.append(f"{res['title']}: the Numba sampler is {x:.0f}x faster than the naive PyTorch loop "
                           f"(target at least 10x: {'met' if x >= 10 else 'NOT met'})")
    if nade_s:
        inc = "PyTorch incremental loop (one pass over d)"
        ratio = nade_s["per_n"]["tinydgm fast (Numba kernel)"] / nade_s["per_n"][inc]
        targets.append(f"NADE 784-500: the Numba sampler takes {ratio:.2f}x the time of the batched PyTorch "
                       f"incremental loop (target at most 1.0x: {'met' if ratio <= 1.0 else 'NOT met'})")
    if targets:
        out += ["Sampling targets: " + "; ".join(targets) + ".", ""]
    if nade_s or made_s or pixel_s:
        out += [common.load_note(loads["sample"]) + " (single runs of the naive loops are not retaken.)", ""]
    if MISSING:
        out += ["Not measured (missing): " + "; ".join(MISSING.values()) + ".", ""]
    section = "\n".join(out)
    common.write_section(cfg.out, section)


if __name__ == "__main__":
    main()
