"""Engine benchmark (issue 2): tinydgm's autodiff side by side with raw NumPy and PyTorch.

    python benchmarks/bench_engine.py [--quick] [--threads N] [--out SECTION.md] [--profile]

All in one process, every side pinned to the same number of threads (NumPy's BLAS through
threadpoolctl, PyTorch through torch.set_num_threads), float32 everywhere:

1. per-op overhead: forward + backward of add, mul, matmul and sum on 10x10 tensors —
   tinydgm vs raw NumPy (forward and a hand-written backward on arrays) vs PyTorch;
2. one training step of a 784-500-784 MLP (sigmoid hidden layer, Bernoulli output:
   BCE-with-logits summed over pixels, averaged over the batch) at batch 100 on binarized
   MNIST: forward, backward and an Adam update (tinydgm's fused Adam kernel,
   tinydgm.kernels.adam, for tinydgm; torch.optim.Adam for PyTorch); plus the same step in raw NumPy and its GEMMs alone
   (the floor);
3. conv2d forward + backward, batch 32, 28x28, 64 -> 64 channels, 3x3, padding 1.

Before timing, each comparison checks that both sides compute the same numbers (loss,
gradients, conv output) on the same weights and data. ``--profile`` prints cProfile
tables of the tinydgm side of (1) and (2) instead of the timing tables.
"""
import argparse
import cProfile
import os
import pstats
import sys
import time

import numpy as np
import torch
import torch.nn.functional as torch_F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm.kernels.adam import adam_update  # noqa: E402

DTYPE = np.float32
MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                     "binarized_mnist.npz")


# ----------------------------------------------------------------------------- tinydgm ops
# Ops that other issues add (sigmoid, softplus, BCE-with-logits, mean) are used when
# they exist; until then the benchmark composes them from exp/log/add/mul and says so.

MISSING = []


def _td_op(name):
    fn = getattr(td, name, None)
    if fn is None and name not in MISSING:
        MISSING.append(name)
    return fn


def td_sigmoid(a):
    fn = _td_op("sigmoid")
    return fn(a) if fn else 1.0 / (1.0 + td.exp(-a))


def td_bce_with_logits_sum(logits, x):
    """sum over all entries of softplus(z) - x z  (= -log Bernoulli(x | sigmoid(z)))."""
    fn = _td_op("binary_cross_entropy_with_logits")
    if fn is not None:
        return fn(logits, x).sum()
    softplus = _td_op("softplus")
    if softplus is not None:
        return (softplus(logits) - x * logits).sum()
    # log(1 + e^z) overflows for z > 88 in float32; the logits here stay within a few units
    return (td.log(1.0 + td.exp(logits)) - x * logits).sum()


# ----------------------------------------------------------------------------- 1. tiny ops

def tiny_op_cases(op, n=10, seed=0):
    """{side: fn} running forward + backward of one op on n x n float32 tensors."""
    rng = np.random.default_rng(seed)
    a_np, b_np = rng.standard_normal((2, n, n)).astype(DTYPE)
    g_np = rng.standard_normal((n, n)).astype(DTYPE)

    # raw NumPy: forward, then the hand-written backward of that op
    def numpy_case():
        if op == "add":
            y = a_np + b_np
            ga, gb = g_np, g_np
        elif op == "mul":
            y = a_np * b_np
            ga, gb = g_np * b_np, g_np * a_np
        elif op == "matmul":
            y = a_np @ b_np
            ga, gb = g_np @ b_np.T, a_np.T @ g_np
        else:
            y = a_np.sum()
            ga, gb = np.ones_like(a_np), None                      # d sum / da = 1
        return y, ga, gb

    a, b = td.tensor(a_np, requires_grad=True), td.tensor(b_np, requires_grad=True)
    g = td.tensor(g_np)

    def tinydgm_case():
        a.grad = b.grad = None
        if op == "sum":
            a.sum().backward()
        else:
            y = a + b if op == "add" else a * b if op == "mul" else a @ b
            y.backward(g)

    ta = torch.tensor(a_np, requires_grad=True)
    tb = torch.tensor(b_np, requires_grad=True)
    tg = torch.tensor(g_np)

    def torch_case():
        ta.grad = tb.grad = None
        if op == "sum":
            ta.sum().backward()
        else:
            y = ta + tb if op == "add" else ta * tb if op == "mul" else ta @ tb
            y.backward(tg)

    # same gradients on every side
    _, ga, gb = numpy_case()
    tinydgm_case()
    torch_case()
    np.testing.assert_allclose(a.grad.numpy(), ga, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ta.grad.numpy(), ga, rtol=1e-5, atol=1e-5)
    if gb is not None:
        np.testing.assert_allclose(b.grad.numpy(), gb, rtol=1e-5, atol=1e-5)
    assert a.grad.dtype == np.float32, f"tinydgm {op}: gradient promoted to {a.grad.dtype}"
    return {"numpy": numpy_case, "tinydgm": tinydgm_case, "torch": torch_case}


def bench_tiny_ops(cfg):
    rows, results = [], {}
    for op in ("add", "mul", "matmul", "sum"):
        stats, _ = common.compare(tiny_op_cases(op), repeats=cfg.repeats, warmup=50,
                                  min_sample_s=cfg.tiny_sample_s)
        results[op] = stats
        r_np, (np_lo, np_hi) = common.paired_ratio(stats["tinydgm"], stats["numpy"])
        r_t, (t_lo, t_hi) = common.paired_ratio(stats["tinydgm"], stats["torch"])
        rows.append([op] + [_us(stats[k]) for k in ("numpy", "tinydgm", "torch")]
                    + [f"{r_np:.1f}x ({np_lo:.1f}–{np_hi:.1f})", f"{r_t:.2f}x ({t_lo:.2f}–{t_hi:.2f})"])
        print(f"  {op:7s} numpy {_us(stats['numpy']):>22s}  tinydgm {_us(stats['tinydgm']):>22s}  "
              f"torch {_us(stats['torch']):>22s}  tinydgm/torch {r_t:.2f}x", flush=True)
    table = common.markdown_table(
        ["op (10x10, fwd+bwd)", "NumPy µs", "tinydgm µs", "PyTorch µs", "tinydgm / NumPy", "tinydgm / PyTorch"],
        rows)
    return table, results


def _us(stats):
    q1, q3 = stats.iqr
    return f"{stats.median * 1e6:.1f} [{q1 * 1e6:.1f}–{q3 * 1e6:.1f}]"


def _ms(stats):
    q1, q3 = stats.iqr
    return f"{stats.median * 1e3:.2f} [{q1 * 1e3:.2f}–{q3 * 1e3:.2f}]"


# ----------------------------------------------------------------------------- 2. MLP step

BATCH, D_IN, D_HID = 100, 784, 500
LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-8


def mnist_batches(n_batches, seed=0):
    """(n_batches, 100, 784) float32 in {0, 1}: binarized MNIST if present, else random."""
    rng = np.random.default_rng(seed)
    if os.path.exists(MNIST):
        train = np.load(MNIST)["train"]
        idx = rng.choice(len(train), size=n_batches * BATCH, replace=False)
        return train[idx].reshape(n_batches, BATCH, D_IN).astype(DTYPE), "binarized MNIST (train split)"
    data = (rng.random((n_batches, BATCH, D_IN)) < 0.13).astype(DTYPE)
    return data, "random binary data, p = 0.13 (binarized_mnist.npz not found)"


def mlp_init(seed=0):
    """W1 (784, 500), b1, W2 (500, 784), b2: uniform(+-1/sqrt(fan_in)) like nn.Linear."""
    rng = np.random.default_rng(seed)
    s1, s2 = 1 / np.sqrt(D_IN), 1 / np.sqrt(D_HID)
    return [rng.uniform(-s1, s1, (D_IN, D_HID)).astype(DTYPE), rng.uniform(-s1, s1, D_HID).astype(DTYPE),
            rng.uniform(-s2, s2, (D_HID, D_IN)).astype(DTYPE), rng.uniform(-s2, s2, D_IN).astype(DTYPE)]


class ArrayAdam:
    """Adam (Kingma & Ba 2015) on raw backend arrays, in place, the arithmetic of
    torch.optim.Adam:

        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
        p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    written as p -= a m / (sqrt(v) + e) with a = lr sqrt(1 - b2^t) / (1 - b1^t) and
    e = eps sqrt(1 - b2^t) (the same value), through one scratch buffer per parameter so
    that no step allocates: 12 elementwise passes per parameter.
    """

    def __init__(self, params):
        self.params = params
        xp = td.get_array_module(params[0])
        self.m = [xp.zeros_like(p) for p in params]
        self.v = [xp.zeros_like(p) for p in params]
        self.scratch = [xp.empty_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        sqrt_bc2 = (1 - BETA2 ** self.t) ** 0.5
        a = LR * sqrt_bc2 / (1 - BETA1 ** self.t)
        e = EPS * sqrt_bc2
        for p, g, m, v, buf in zip(self.params, grads, self.m, self.v, self.scratch):
            xp = td.get_array_module(p)
            m *= BETA1
            xp.multiply(g, 1 - BETA1, out=buf)
            m += buf
            v *= BETA2
            xp.multiply(g, g, out=buf)
            buf *= 1 - BETA2
            v += buf
            xp.sqrt(v, out=buf)
            buf += e
            xp.divide(m, buf, out=buf)
            buf *= a
            p -= buf


class FusedAdam:
    """Adam through tinydgm's fused kernel (tinydgm.kernels.adam: one parallel Numba pass per
    parameter, the same arithmetic as torch.optim.Adam); there is no optimizer class yet."""

    def __init__(self, params):
        self.params = params
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            adam_update(p, g, m, v, lr=LR, beta1=BETA1, beta2=BETA2, eps=EPS, t=self.t)


class NumpyMLP:
    """The step in raw NumPy with a hand-written backward: the floor for any engine."""

    def __init__(self, weights):
        self.params = [w.copy() for w in weights]
        self.opt = ArrayAdam(self.params)

    def loss_and_grads(self, x):
        W1, b1, W2, b2 = self.params
        h = x @ W1
        h += b1
        h = 1 / (1 + np.exp(-h))                                  # sigmoid
        z = h @ W2
        z += b2
        loss = (np.logaddexp(0, z) - x * z).sum() / BATCH         # softplus(z) - x z
        gz = (1 / (1 + np.exp(-z)) - x) / BATCH                   # d/dz = sigmoid(z) - x
        gW2, gb2 = h.T @ gz, gz.sum(0)
        ga = (gz @ W2.T) * h * (1 - h)                            # sigmoid' = h (1 - h)
        gW1, gb1 = x.T @ ga, ga.sum(0)
        return loss, [gW1, gb1, gW2, gb2]

    def step(self, x):
        loss, grads = self.loss_and_grads(x)
        self.opt.step(grads)
        return loss


class TinydgmMLP:
    def __init__(self, weights):
        self.params = [td.tensor(w, requires_grad=True) for w in weights]
        self.opt = FusedAdam([p.data for p in self.params])

    def loss(self, x):
        W1, b1, W2, b2 = self.params
        h = td_sigmoid(x @ W1 + b1)
        logits = h @ W2 + b2
        return td_bce_with_logits_sum(logits, x) * (1.0 / BATCH)

    def step(self, x):
        for p in self.params:
            p.grad = None
        loss = self.loss(x)
        loss.backward()
        self.opt.step([p.grad.data for p in self.params])
        return loss


class TorchMLP:
    def __init__(self, weights):
        self.params = [torch.tensor(w, requires_grad=True) for w in weights]
        self.opt = torch.optim.Adam(self.params, lr=LR, betas=(BETA1, BETA2), eps=EPS)

    def loss(self, x):
        W1, b1, W2, b2 = self.params
        h = torch.sigmoid(x @ W1 + b1)
        logits = h @ W2 + b2
        return torch_F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / BATCH

    def step(self, x):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(x)
        loss.backward()
        self.opt.step()
        return loss


def check_mlp_agree(weights, batches):
    """Same loss and gradients at the same weights; same losses along 5 Adam steps."""
    nmlp, tmlp, pmlp = NumpyMLP(weights), TinydgmMLP(weights), TorchMLP(weights)
    x_np = batches[0]
    x_td, x_pt = td.tensor(x_np), torch.tensor(x_np)
    loss_np, grads_np = nmlp.loss_and_grads(x_np)
    loss_td = tmlp.loss(x_td)
    loss_td.backward()
    loss_pt = pmlp.loss(x_pt)
    loss_pt.backward()
    assert loss_td.dtype == np.float32, f"tinydgm MLP loss is {loss_td.dtype}, expected float32"
    for p in tmlp.params:
        assert p.grad.dtype == np.float32, f"tinydgm MLP gradient is {p.grad.dtype}, expected float32"
    np.testing.assert_allclose(loss_td.item(), loss_pt.item(), rtol=1e-5)
    np.testing.assert_allclose(loss_np, loss_pt.item(), rtol=1e-5)
    for name, p_td, p_pt, g_np in zip(("W1", "b1", "W2", "b2"), tmlp.params, pmlp.params, grads_np):
        scale = np.abs(g_np).max()
        np.testing.assert_allclose(p_td.grad.numpy(), p_pt.grad.numpy(), rtol=1e-3, atol=1e-4 * scale,
                                   err_msg=f"d loss / d {name}: tinydgm vs torch")
        np.testing.assert_allclose(g_np, p_pt.grad.numpy(), rtol=1e-3, atol=1e-4 * scale,
                                   err_msg=f"d loss / d {name}: numpy vs torch")
    nmlp, tmlp, pmlp = NumpyMLP(weights), TinydgmMLP(weights), TorchMLP(weights)
    losses = np.array([[nmlp.step(x), tmlp.step(td.tensor(x)).item(), pmlp.step(torch.tensor(x)).item()]
                       for x in batches[:5]])
    np.testing.assert_allclose(losses[:, 1], losses[:, 2], rtol=1e-4, err_msg="losses along Adam steps")
    np.testing.assert_allclose(losses[:, 0], losses[:, 2], rtol=1e-4, err_msg="losses along Adam steps")
    return losses[0, 2], losses[-1, 2]


def mlp_cases(weights, batches):
    nmlp, tmlp, pmlp = NumpyMLP(weights), TinydgmMLP(weights), TorchMLP(weights)
    xs_td = [td.tensor(x) for x in batches]
    xs_pt = [torch.tensor(x) for x in batches]
    W1, _, W2, _ = weights
    W1_pt, W2_pt = torch.tensor(W1), torch.tensor(W2)
    h = np.random.default_rng(1).random((BATCH, D_HID)).astype(DTYPE)
    gz = np.random.default_rng(2).random((BATCH, D_IN)).astype(DTYPE)
    h_pt, gz_pt = torch.tensor(h), torch.tensor(gz)
    counter = {"numpy": 0, "tinydgm": 0, "torch": 0}

    def cycle(side):
        k = counter[side] = (counter[side] + 1) % len(batches)
        return k

    def numpy_gemms():     # the five GEMMs of one step: 2 forward, 3 backward (no dx)
        x = batches[0]
        x @ W1, h @ W2, h.T @ gz, gz @ W2.T, x.T @ h

    def torch_gemms():
        x = xs_pt[0]
        x @ W1_pt, h_pt @ W2_pt, h_pt.T @ gz_pt, gz_pt @ W2_pt.T, x.T @ h_pt

    return {
        "NumPy GEMMs only": numpy_gemms,
        "PyTorch GEMMs only": torch_gemms,
        "raw NumPy step": lambda: nmlp.step(batches[cycle("numpy")]),
        "tinydgm step": lambda: tmlp.step(xs_td[cycle("tinydgm")]),
        "PyTorch step": lambda: pmlp.step(xs_pt[cycle("torch")]),
    }


def mlp_phases(weights, batches, steps, settle_s):
    """Median time of forward, backward and update for tinydgm and PyTorch (profile aid).

    Steps during which our threads waited for a CPU (another process) are dropped."""
    out = {}
    for side, model, xs in (("tinydgm", TinydgmMLP(weights), [td.tensor(x) for x in batches]),
                            ("PyTorch", TorchMLP(weights), [torch.tensor(x) for x in batches])):
        time.sleep(settle_s)
        times = []
        for k in range(4 * steps):
            if len(times) == steps:
                break
            x = xs[k % len(xs)]
            wait0 = common.run_queue_wait()
            t0 = time.perf_counter()
            if side == "tinydgm":
                for p in model.params:
                    p.grad = None
            else:
                model.opt.zero_grad(set_to_none=True)
            loss = model.loss(x)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            if side == "tinydgm":
                model.opt.step([p.grad.data for p in model.params])
            else:
                model.opt.step()
            t3 = time.perf_counter()
            wait1 = common.run_queue_wait()
            if k >= 3 and (wait0 is None or wait1 - wait0 <= 0.05 * (t3 - t0)):
                times.append((t1 - t0, t2 - t1, t3 - t2))
        out[side] = np.median(np.array(times), axis=0) if times else np.full(3, np.nan)
    return out


def bench_mlp(cfg):
    batches, source = mnist_batches(10)
    weights = mlp_init()
    first, last = check_mlp_agree(weights, batches)
    print(f"  same loss on both sides: {first:.4f} at init, {last:.4f} after 5 Adam steps (checked)", flush=True)
    stats, _ = common.compare(mlp_cases(weights, batches), repeats=cfg.mlp_repeats, warmup=5,
                              min_sample_s=cfg.mlp_sample_s, settle_s=cfg.settle_s)
    torch_step = stats["PyTorch step"]
    rows = []
    for name, s in stats.items():
        ratio, (lo, hi) = common.paired_ratio(s, torch_step)
        rows.append([name, _ms(s), f"{s.min * 1e3:.2f}–{s.max * 1e3:.2f}", f"{ratio:.2f}x ({lo:.2f}–{hi:.2f})",
                     f"{s.min / torch_step.min:.2f}x"])
        print(f"  {name:20s} {_ms(s):>24s} ms   / PyTorch step {ratio:.2f}x  (ratio of minima "
              f"{s.min / torch_step.min:.2f}x; contended samples {s.contended})", flush=True)
    table = common.markdown_table(["MLP 784-500-784, batch 100", "median ms [IQR]", "min–max ms",
                                   "/ PyTorch step (paired: median, min–max)", "ratio of minima"], rows)
    phases = mlp_phases(weights, batches, steps=cfg.mlp_repeats, settle_s=cfg.settle_s)
    prow = [[side] + [f"{t * 1e3:.2f}" for t in ph] + [f"{ph.sum() * 1e3:.2f}"] for side, ph in phases.items()]
    ptable = common.markdown_table(["phase medians (ms)", "forward", "backward", "Adam update", "sum"], prow)
    print(ptable, flush=True)
    return table, ptable, stats, source


# ----------------------------------------------------------------------------- 3. conv2d

CONV_SHAPE = dict(batch=32, channels=64, size=28)


def conv_cases():
    conv2d = getattr(td, "conv2d", None)
    if conv2d is None:
        return None
    n, c, s = CONV_SHAPE["batch"], CONV_SHAPE["channels"], CONV_SHAPE["size"]
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((n, c, s, s)).astype(DTYPE)
    w_np = (rng.standard_normal((c, c, 3, 3)) / np.sqrt(c * 9)).astype(DTYPE)
    b_np = rng.standard_normal(c).astype(DTYPE)
    g_np = rng.standard_normal((n, c, s, s)).astype(DTYPE)

    x, w, b = (td.tensor(a, requires_grad=True) for a in (x_np, w_np, b_np))
    g = td.tensor(g_np)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x_np, w_np, b_np))
    tg = torch.tensor(g_np)

    def tinydgm_case():
        x.grad = w.grad = b.grad = None
        y = conv2d(x, w, b, padding=1)
        y.backward(g)
        return y

    def torch_case():
        tx.grad = tw.grad = tb.grad = None
        y = torch_F.conv2d(tx, tw, tb, padding=1)
        y.backward(tg)
        return y

    y_td, y_pt = tinydgm_case(), torch_case()
    assert y_td.dtype == np.float32, f"tinydgm conv2d output is {y_td.dtype}, expected float32"
    np.testing.assert_allclose(y_td.numpy(), y_pt.detach().numpy(), rtol=1e-4, atol=1e-4,
                               err_msg="conv2d output: tinydgm vs torch")
    for name, p, tp in (("x", x, tx), ("weight", w, tw), ("bias", b, tb)):
        scale = np.abs(tp.grad.numpy()).max()
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-3, atol=1e-4 * scale,
                                   err_msg=f"conv2d d/d{name}: tinydgm vs torch")
    return {"tinydgm": tinydgm_case, "PyTorch": torch_case}


def bench_conv(cfg):
    cases = conv_cases()
    if cases is None:
        print("  tinydgm.conv2d is missing: skipped", flush=True)
        return None, None
    print("  same output and gradients on both sides (checked)", flush=True)
    stats, _ = common.compare(cases, repeats=cfg.conv_repeats, warmup=2, min_sample_s=0.0,
                              settle_s=cfg.settle_s)
    ratio, (lo, hi) = common.paired_ratio(stats["tinydgm"], stats["PyTorch"])
    rows = [[side, _ms(s), f"{s.min * 1e3:.2f}–{s.max * 1e3:.2f}"] for side, s in stats.items()]
    rows[0] += [f"{ratio:.2f}x ({lo:.2f}–{hi:.2f})", f"{stats['tinydgm'].min / stats['PyTorch'].min:.2f}x"]
    rows[1] += ["1", "1"]
    print(f"  tinydgm {_ms(stats['tinydgm'])} ms  PyTorch {_ms(stats['PyTorch'])} ms  ratio {ratio:.2f}x", flush=True)
    table = common.markdown_table(["conv2d 32x64x28x28, 3x3, pad 1, fwd+bwd", "median ms [IQR]",
                                   "min–max ms", "/ PyTorch (paired: median, min–max)", "ratio of minima"], rows)
    return table, (ratio, stats)


# ----------------------------------------------------------------------------- profiling

def profile(cfg):
    """cProfile tables of the tinydgm side of the tiny ops and of the MLP step."""
    def show(title, fn, calls):
        print(f"\n===== {title}: {calls} calls (cProfile; times are inflated by the profiler) =====")
        for _ in range(20):
            fn()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(calls):
            fn()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(22)

    for op in ("add", "mul", "matmul", "sum"):
        show(f"tinydgm {op} 10x10 fwd+bwd", tiny_op_cases(op)["tinydgm"], 20000)
    batches, _ = mnist_batches(10)
    model = TinydgmMLP(mlp_init())
    xs = [td.tensor(x) for x in batches]
    it = iter(range(10 ** 9))
    show("tinydgm MLP step", lambda: model.step(xs[next(it) % len(xs)]), 100)

    # which dtypes the ops of one MLP step produce (float64 promotion check)
    dtypes = {}
    original = td.Function.__call__

    def spy(self, *inputs):
        out = original(self, *inputs)
        for y in (out if isinstance(out, tuple) else (out,)):
            key = (type(self).__name__, str(y.dtype))
            dtypes[key] = dtypes.get(key, 0) + 1
        return out
    td.Function.__call__ = spy
    try:
        model.step(xs[0])
    finally:
        td.Function.__call__ = original
    print("\nFunction calls in one tinydgm MLP step (forward + backward), by output dtype:")
    for (name, dtype), count in sorted(dtypes.items()):
        print(f"  {name:24s} {dtype:8s} x{count}")


# ----------------------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, ~30 s)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every side (default 2)")
    parser.add_argument("--out", help="write the markdown section to this file")
    parser.add_argument("--profile", action="store_true", help="print cProfile tables of the tinydgm side")
    cfg = parser.parse_args(argv)
    # many short samples rather than a few long ones: on a shared machine the minimum and
    # the paired ratios then come from the quiet moments
    cfg.repeats = 9 if cfg.quick else 31
    cfg.mlp_repeats = 11 if cfg.quick else 31
    cfg.conv_repeats = 3 if cfg.quick else 11
    cfg.tiny_sample_s = 0.005 if cfg.quick else 0.01
    cfg.mlp_sample_s = 0.05     # several back-to-back steps per sample (the steady state of a loop)
    cfg.settle_s = 0.1          # let the other library's spinning BLAS/OpenMP threads sleep

    pinned = common.pin_threads(cfg.threads)
    info = common.machine_info()
    print(common.machine_markdown(info, cfg.threads))
    print(f"- pinned: {pinned}; BLAS pools: {common.blas_info()}", flush=True)
    if cfg.profile:
        profile(cfg)
        return

    start, load0 = time.perf_counter(), os.getloadavg()
    print("\n1. per-op overhead, 10x10 float32, forward + backward (µs, median [IQR])", flush=True)
    loads = [common.ForeignLoad() for _ in range(3)]
    with loads[0]:
        tiny_table, tiny_stats = bench_tiny_ops(cfg)
    print("\n2. MLP 784-500-784 training step, batch 100", flush=True)
    with loads[1]:
        mlp_table, phase_table, mlp_stats, source = bench_mlp(cfg)
    print("\n3. conv2d forward + backward", flush=True)
    with loads[2]:
        conv_table, conv = bench_conv(cfg)
    print("CPU used by other processes during parts 1, 2, 3: "
          + ", ".join(load.describe() for load in loads), flush=True)
    elapsed = time.perf_counter() - start
    load = os.getloadavg()
    print(f"\ntotal {elapsed:.0f} s; load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    mlp_ratio, _ = common.paired_ratio(mlp_stats["tinydgm step"], mlp_stats["PyTorch step"])
    mlp_iqr = common.paired_ratio_iqr(mlp_stats["tinydgm step"], mlp_stats["PyTorch step"])
    gemm_frac = mlp_stats["NumPy GEMMs only"].median / mlp_stats["tinydgm step"].median
    command = "python benchmarks/bench_engine.py" + (" --quick" if cfg.quick else "") + \
        f" --threads {cfg.threads}" + (f" --out {cfg.out}" if cfg.out else "")
    parts = [
        "## Engine", "",
        f"Command: `{command}` (one process, {elapsed:.0f} s; "
        f"{cfg.repeats} (tiny ops), {cfg.mlp_repeats} (MLP), {cfg.conv_repeats} (conv) "
        f"interleaved repeats per case, medians with [interquartile range]; "
        f"load average {load0[0]:.2f} at the start, {load[0]:.2f} at the end).", "",
        common.machine_markdown(info, cfg.threads), "",
        "### 1. Per-op overhead: 10x10 float32, forward + backward", "",
        "Raw NumPy = the forward expression plus a hand-written backward on arrays (the floor); "
        "ratios are medians of per-repeat paired ratios (min–max in parentheses).", "",
        tiny_table, "", common.load_note(loads[0], [{f"{op} {side}": st for side, st in stats.items()}
                                                for op, stats in tiny_stats.items()]), "",
        "### 2. MLP 784-500-784 training step, batch 100", "",
        f"Data: {source}. Sigmoid hidden layer, Bernoulli output (BCE with logits summed over "
        "pixels, averaged over the batch), Adam (lr 1e-3). tinydgm's Adam is its fused Numba kernel "
        "(tinydgm.kernels.adam.adam_update, one parallel pass per parameter; the optimizer class came "
        "later); the raw-NumPy step uses in-place NumPy passes; PyTorch uses torch.optim.Adam. Both sides were checked to give the same loss "
        "and gradients on the same weights and data, and the same losses along 5 Adam steps. "
        "\"GEMMs only\" times the five matrix products of one step (2 forward, 3 backward) alone.", "",
        mlp_table, "",
        phase_table, "", common.load_note(loads[1], [mlp_stats]), "",
        f"**Target: tinydgm step at most 1.0x PyTorch's: "
        f"{common.verdict(mlp_ratio, mlp_iqr, 1.0)}.** The NumPy GEMMs alone take {gemm_frac:.0%} of "
        "the tinydgm step (medians).", "",
        "### 3. conv2d, batch 32, 28x28, 64 -> 64 channels, 3x3, padding 1, forward + backward", "",
    ]
    if conv_table is None:
        parts += ["tinydgm.conv2d did not exist at the time of this run: not measured.", ""]
    else:
        parts += ["Both sides were checked to give the same output and the same gradients "
                  "(x, weight, bias).", "", conv_table, "", common.load_note(loads[2], [conv[1]]), "",
                  f"**Target: at most 2x PyTorch: "
                  f"{common.verdict(conv[0], common.paired_ratio_iqr(conv[1]['tinydgm'], conv[1]['PyTorch']), 2.0)}"
                  ".**", ""]
    if MISSING:
        parts += [f"Ops missing at the time of this run, composed from exp/log/add/mul instead: "
                  f"{', '.join(MISSING)}.", ""]
    section = "\n".join(parts)
    common.write_section(cfg.out, section)


if __name__ == "__main__":
    main()
