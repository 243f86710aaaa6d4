"""Toolkit benchmark (issue 3): tinydgm.optim.Adam and tinydgm.nn layers side by side with PyTorch.

    python benchmarks/bench_toolkit.py [--quick] [--threads N] [--out SECTION.md]

All in one process, every side pinned to the same number of threads (NumPy's BLAS and
OpenMP through threadpoolctl, Numba, PyTorch through torch.set_num_threads), float32:

1. one Adam step, ``tinydgm.optim.Adam.step()`` vs ``torch.optim.Adam.step()`` (default,
   ``foreach=True`` and ``fused=True``), with every gradient preset to the same random
   values, on (a) the parameters of a 784-500-784 MLP (785k entries in 4 tensors) and
   (b) 100 tensors of 1000 entries (the per-parameter overhead). Also timed: a bare Python
   loop over tinydgm's fused kernel ``adam_update`` (the optimizer without its class).
2. forward + backward of one layer, with the input requiring a gradient (as for a hidden
   layer) and a fixed random upstream gradient:
   ``tinydgm.nn.Linear`` vs ``torch.nn.Linear`` (batch 100, 784 -> 500);
   ``tinydgm.nn.masked_linear.MaskedLinear`` with a MADE mask vs ``x @ (W * M) + b`` written by hand
   in PyTorch (there is no masked layer in torch.nn); both also against raw NumPy with a
   hand-written backward (the floor);
   ``tinydgm.nn.Conv2d`` vs ``torch.nn.Conv2d`` (batch 32, 64 -> 64 channels, 3x3, 28x28,
   padding 1).

Before timing, each comparison checks that the sides compute the same numbers: the same
parameters after 5 Adam steps, the same layer outputs and gradients (input, weight, bias).
"""
import argparse
import gc
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm import nn, optim  # noqa: E402
from tinydgm.kernels.adam import adam_update  # noqa: E402
from tinydgm.nn.masked_linear import MaskedLinear, made_degrees, made_masks  # noqa: E402

DTYPE = np.float32
LR, BETAS, EPS = 1e-3, (0.9, 0.999), 1e-8


# ----------------------------------------------------------------------------- 1. Adam

MLP_SHAPES = [(784, 500), (500,), (500, 784), (784,)]
SMALL_SHAPES = [(1000,)] * 100


class KernelLoop:
    """tinydgm's fused Adam kernel called in a bare loop over (p, g, m, v) arrays: the
    optimizer's arithmetic without the class (gradient checks, state dict, lazy moments)."""

    def __init__(self, params):
        self.arrays = [(p.data, p.grad.data, np.zeros_like(p.data), np.zeros_like(p.data)) for p in params]
        self.t = 0

    def step(self):
        self.t += 1
        for p, g, m, v in self.arrays:
            adam_update(p, g, m, v, LR, BETAS[0], BETAS[1], EPS, self.t)


def _torch_variants():
    """The torch.optim.Adam implementations a CPU user can pick: {label: kwargs}."""
    variants = {"PyTorch Adam (default)": {}, "PyTorch Adam foreach=True": {"foreach": True}}
    try:
        torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], fused=True)
        variants["PyTorch Adam fused=True"] = {"fused": True}
    except (RuntimeError, TypeError, ValueError) as error:      # fused Adam on the CPU: torch >= 2.4
        print(f"  torch.optim.Adam(fused=True) is not available on the CPU here: {error}", flush=True)
    return variants


def adam_sides(shapes, seed=0):
    """{name: object with .step() and .params (NumPy-readable)} on the same parameters and
    gradients; each side owns its copies."""
    rng = np.random.default_rng(seed)
    values = [(0.1 * rng.standard_normal(s)).astype(DTYPE) for s in shapes]
    grads = [rng.standard_normal(s).astype(DTYPE) for s in shapes]

    def td_params():
        params = [nn.Parameter(td.tensor(v.copy())) for v in values]
        for p, g in zip(params, grads):
            p.grad = td.tensor(g.copy())
        return params

    def torch_params():
        params = [torch.nn.Parameter(torch.tensor(v.copy())) for v in values]
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g.copy())
        return params

    sides = {"tinydgm Adam": optim.Adam(td_params(), lr=LR, betas=BETAS, eps=EPS),
             "tinydgm kernel loop": KernelLoop(td_params())}
    for label, kwargs in _torch_variants().items():
        sides[label] = torch.optim.Adam(torch_params(), lr=LR, betas=BETAS, eps=EPS, **kwargs)
    return sides, values


def _params_numpy(side):
    if isinstance(side, KernelLoop):
        return [p for p, _, _, _ in side.arrays]
    if isinstance(side, optim.Optimizer):
        return [p.numpy() for p in side.params]
    return [p.detach().numpy() for p in side.param_groups[0]["params"]]


def check_adam_agree(shapes):
    """The same parameters on every side after 5 steps (compared as the change p - p0,
    each step moves an entry by about lr)."""
    sides, values = adam_sides(shapes)
    for _ in range(5):
        for side in sides.values():
            side.step()
    reference = [p - v for p, v in zip(_params_numpy(sides["PyTorch Adam (default)"]), values)]
    for name, side in sides.items():
        for i, (p, v, ref) in enumerate(zip(_params_numpy(side), values, reference)):
            assert p.dtype == np.float32, f"{name}: parameter {i} is {p.dtype}, expected float32"
            np.testing.assert_allclose(p - v, ref, rtol=1e-4, atol=1e-4 * LR,
                                       err_msg=f"Adam, parameter {i} after 5 steps: {name} vs PyTorch")


def bench_adam(cfg, shapes, label, settle_s):
    check_adam_agree(shapes)
    n = sum(int(np.prod(s)) for s in shapes)
    print(f"  {label}: {len(shapes)} tensors, {n} entries; same parameters after 5 steps on every side "
          "(checked)", flush=True)
    sides, _ = adam_sides(shapes)
    stats, _ = common.compare({name: side.step for name, side in sides.items()}, repeats=cfg.repeats,
                              warmup=5, min_sample_s=cfg.sample_s, settle_s=settle_s)
    reference = stats["PyTorch Adam (default)"]
    rows = []
    for name, s in stats.items():
        per_param = s.median / len(shapes) * 1e6
        rows.append([name, common.fmt_ms(s), f"{per_param:.2f}", common.fmt_ratio(s, reference),
                     f"{s.min / reference.min:.2f}x"])
        print(f"  {name:28s} {common.fmt_ms(s):>24s} ms  / PyTorch default {common.fmt_ratio(s, reference)}  "
              f"(contended samples {s.contended})", flush=True)
    table = common.markdown_table([f"Adam step, {label}", "median ms [IQR]", "µs per tensor",
                                   "/ PyTorch default (paired: median, min–max)", "ratio of minima"], rows)
    return table, stats


# ----------------------------------------------------------------------------- 2. layers

LINEAR = dict(batch=100, d_in=784, d_out=500)
CONV = dict(batch=32, channels=64, size=28)


def _set(param, array):
    param.data[...] = array


def _check_grads(name, pairs):
    """pairs: [(what, tinydgm array, reference array)] compared at the reference's scale."""
    for what, got, ref in pairs:
        assert got.dtype == np.float32, f"{name} {what}: {got.dtype}, expected float32"
        scale = max(float(np.abs(ref).max()), 1e-30)
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4 * scale, err_msg=f"{name}: {what}")


def made_mask(seed=0):
    """The first-layer mask (784, 500) of a one-hidden-layer MADE: natural ordering, random
    connectivity (with 500 < 783 hidden units the natural spread cannot cover every degree)."""
    degrees = made_degrees(LINEAR["d_in"], [LINEAR["d_out"]], connectivity="random",
                           rng=np.random.default_rng(seed))
    return made_masks(degrees)[0][0].astype(DTYPE)


def dense_sides(masked, seed=0):
    """{side: (forward() -> y, backward(y))} for Linear (masked=False) or MaskedLinear with
    the first-layer mask of a one-hidden-layer MADE (natural ordering, random connectivity)."""
    n, d_in, d_out = LINEAR["batch"], LINEAR["d_in"], LINEAR["d_out"]
    rng = np.random.default_rng(seed)
    bound = 1 / np.sqrt(d_in)
    W = rng.uniform(-bound, bound, (d_in, d_out)).astype(DTYPE)
    b = rng.uniform(-bound, bound, d_out).astype(DTYPE)
    x_np = rng.standard_normal((n, d_in)).astype(DTYPE)
    g_np = rng.standard_normal((n, d_out)).astype(DTYPE)
    M = made_mask(seed) if masked else None

    # tinydgm: the layer as a user builds it
    layer = MaskedLinear(d_in, d_out, mask=M) if masked else nn.Linear(d_in, d_out)
    _set(layer.weight, W)
    _set(layer.bias, b)
    x, g = td.tensor(x_np, requires_grad=True), td.tensor(g_np)

    def td_forward():
        layer.zero_grad()
        x.grad = None
        return layer(x)

    def td_backward(y):
        y.backward(g)

    # PyTorch: nn.Linear (weight stored (out, in)), or x @ (W * M) + b by hand
    tx, tg = torch.tensor(x_np, requires_grad=True), torch.tensor(g_np)
    if masked:
        tW, tb, tM = torch.nn.Parameter(torch.tensor(W)), torch.nn.Parameter(torch.tensor(b)), torch.tensor(M)
        torch_params = (tW, tb)

        def torch_layer(v):
            return v @ (tW * tM) + tb
    else:
        torch_layer = torch.nn.Linear(d_in, d_out)
        with torch.no_grad():
            torch_layer.weight.copy_(torch.tensor(W.T))
            torch_layer.bias.copy_(torch.tensor(b))
        torch_params = (torch_layer.weight, torch_layer.bias)

    def torch_forward():
        for p in torch_params:
            p.grad = None
        tx.grad = None
        return torch_layer(tx)

    def torch_backward(y):
        y.backward(tg)

    # raw NumPy with the hand-written backward: the floor (three GEMMs, plus the mask)
    def numpy_forward():
        Wm = W * M if masked else W
        return x_np @ Wm + b, Wm

    def numpy_backward(out):
        _, Wm = out
        gx = g_np @ Wm.T
        gW = x_np.T @ g_np
        if masked:
            gW *= M
        return gx, gW, g_np.sum(0)

    name = "MaskedLinear" if masked else "Linear"
    y_td, y_pt = td_forward(), torch_forward()
    td_backward(y_td)
    torch_backward(y_pt)
    out_np = numpy_forward()
    gx, gW, gb = numpy_backward(out_np)
    tW_grad = torch_params[0].grad.numpy()
    _check_grads(name, [("output vs PyTorch", y_td.numpy(), y_pt.detach().numpy()),
                        ("output vs NumPy", y_td.numpy(), out_np[0]),
                        ("d/dx vs PyTorch", x.grad.numpy(), tx.grad.numpy()),
                        ("d/dW vs PyTorch", layer.weight.grad.numpy(), tW_grad if masked else tW_grad.T),
                        ("d/db vs PyTorch", layer.bias.grad.numpy(), torch_params[1].grad.numpy()),
                        ("d/dx vs NumPy", x.grad.numpy(), gx), ("d/dW vs NumPy", layer.weight.grad.numpy(), gW),
                        ("d/db vs NumPy", layer.bias.grad.numpy(), gb)])
    if masked:
        assert not layer.weight.grad.numpy()[M == 0].any(), "MaskedLinear: masked weights got a gradient"
    torch_label = "PyTorch x @ (W * M) + b" if masked else "PyTorch nn.Linear"
    return {f"NumPy floor ({name})": (numpy_forward, numpy_backward),
            f"tinydgm {name}": (td_forward, td_backward),
            torch_label: (torch_forward, torch_backward)}


def conv_sides(seed=0):
    """{side: (forward, backward)} for Conv2d(64, 64, 3, padding=1) on 32x64x28x28."""
    n, c, s = CONV["batch"], CONV["channels"], CONV["size"]
    layer = nn.Conv2d(c, c, 3, padding=1, rng=np.random.default_rng(seed))
    torch_layer = torch.nn.Conv2d(c, c, 3, padding=1)
    with torch.no_grad():
        torch_layer.weight.copy_(torch.tensor(layer.weight.numpy()))
        torch_layer.bias.copy_(torch.tensor(layer.bias.numpy()))
    rng = np.random.default_rng(seed + 1)
    x_np = rng.standard_normal((n, c, s, s)).astype(DTYPE)
    g_np = rng.standard_normal((n, c, s, s)).astype(DTYPE)
    x, g = td.tensor(x_np, requires_grad=True), td.tensor(g_np)
    tx, tg = torch.tensor(x_np, requires_grad=True), torch.tensor(g_np)

    def td_forward():
        layer.zero_grad()
        x.grad = None
        return layer(x)

    def torch_forward():
        torch_layer.zero_grad(set_to_none=True)
        tx.grad = None
        return torch_layer(tx)

    y_td, y_pt = td_forward(), torch_forward()
    y_td.backward(g)
    y_pt.backward(tg)
    _check_grads("Conv2d", [("output", y_td.numpy(), y_pt.detach().numpy()),
                            ("d/dx", x.grad.numpy(), tx.grad.numpy()),
                            ("d/dweight", layer.weight.grad.numpy(), torch_layer.weight.grad.numpy()),
                            ("d/dbias", layer.bias.grad.numpy(), torch_layer.bias.grad.numpy())])
    return {"tinydgm Conv2d": (td_forward, lambda y: y.backward(g)),
            "PyTorch nn.Conv2d": (torch_forward, lambda y: y.backward(tg))}


def phases(sides, steps, settle_s):
    """Median forward and backward times per side, each side in its own loop after a
    pause (a profile aid); calls during which our threads waited for a CPU are dropped."""
    out = {}
    for name, (forward, backward) in sides.items():
        for _ in range(3):
            backward(forward())
        time.sleep(settle_s)
        times = []
        gc.disable()                # as in common.compare: no collection inside a timed call
        try:
            for _ in range(4 * steps):
                if len(times) == steps:
                    break
                wait0 = common.run_queue_wait()
                t0 = time.perf_counter()
                y = forward()
                t1 = time.perf_counter()
                backward(y)
                t2 = time.perf_counter()
                del y               # free the output before the next call, as the fwd+bwd timing does
                wait1 = common.run_queue_wait()
                if wait0 is None or wait1 - wait0 <= 0.05 * (t2 - t0):
                    times.append((t1 - t0, t2 - t1))
        finally:
            gc.enable()
        out[name] = np.median(np.array(times), axis=0) if times else np.full(2, np.nan)
    return out


def bench_layer(cfg, title, sides, reference, repeats, sample_s):
    """Interleaved forward + backward timing of the sides, ratios against ``reference``,
    then the forward/backward split."""
    stats, _ = common.compare({name: (lambda f=f, b=b: b(f())) for name, (f, b) in sides.items()},
                              repeats=repeats, warmup=3, min_sample_s=sample_s, settle_s=cfg.settle_s)
    ref = stats[reference]
    split = phases(sides, steps=max(repeats, 11), settle_s=cfg.settle_s)
    rows = []
    for name, s in stats.items():
        fwd, bwd = split[name]
        rows.append([name, common.fmt_ms(s), f"{fwd * 1e3:.3g}", f"{bwd * 1e3:.3g}",
                     common.fmt_ratio(s, ref), f"{s.min / ref.min:.2f}x"])
        print(f"  {name:28s} {common.fmt_ms(s):>24s} ms (forward {fwd * 1e3:.3g}, backward {bwd * 1e3:.3g})  "
              f"/ {reference} {common.fmt_ratio(s, ref)}  (contended samples {s.contended})", flush=True)
    table = common.markdown_table([title, "fwd+bwd median ms [IQR]", "forward ms", "backward ms",
                                   f"/ {reference} (paired: median, min–max)", "ratio of minima"], rows)
    return table, stats, split


# ----------------------------------------------------------------------------- report

def _median_ratio(stats, a, b):
    return common.paired_ratio(stats[a], stats[b])[0]


def adam_call_costs(cfg):
    """Per-call time of ``adam_update`` (Python wrapper + compiled pass) and of the compiled
    Numba pass alone, on one 1000-entry float32 tensor: {"adam_update": s, "compiled pass": s}."""
    from tinydgm.kernels.adam import _adam_kernel
    rng = np.random.default_rng(0)
    p, g, m, v = (rng.random(1000).astype(DTYPE) for _ in range(4))
    # beta1, 1 - beta1, beta2, 1 - beta2, step size, eps_hat, l2, shrink, in float32 as adam_update passes them
    scalars = [np.float32(a) for a in (0.9, 0.1, 0.999, 0.001, LR, EPS, 0.0, 1.0)]
    cases = {"adam_update": lambda: adam_update(p, g, m, v, LR, BETAS[0], BETAS[1], EPS, 1),
             "compiled pass": lambda: _adam_kernel(p, g, m, v, *scalars)}
    stats, _ = common.compare(cases, repeats=cfg.repeats, warmup=100, min_sample_s=cfg.sample_s)
    return {name: s.median for name, s in stats.items()}


def adam_notes(mlp, small, calls):
    """Where the Adam time goes, from the measured medians."""
    n_small = len(SMALL_SHAPES)
    entries = sum(int(np.prod(s)) for s in MLP_SHAPES)
    big_td, big_k = mlp["tinydgm Adam"].median, mlp["tinydgm kernel loop"].median
    sm_td, sm_k, sm_pt = (small[k].median for k in ("tinydgm Adam", "tinydgm kernel loop",
                                                     "PyTorch Adam (default)"))
    per = {k: v * 1e6 for k, v in calls.items()}
    if big_td / big_k < 1.1:
        where = "i.e. nearly all the time is the fused Numba kernel"
    else:
        where = f"i.e. the optimizer class adds {(big_td - big_k) * 1e6:.0f} µs to the fused Numba kernel"
    return [
        f"- MLP parameters: tinydgm's step takes {big_td / big_k:.2f}x the bare kernel loop, {where}: one "
        f"serial pass over the {entries} entries ({big_k / entries * 1e9:.2f} ns per entry). "
        "PyTorch's default CPU Adam runs about seven "
        "elementwise kernels per tensor (lerp, mul, addcmul, sqrt, div, add, addcdiv; two of them allocate), "
        "each a pass over the tensor; `fused=True` makes one pass, like tinydgm.",
        f"- 100 x 1000 entries, per tensor: tinydgm {sm_td / n_small * 1e6:.1f} µs = the optimizer class's "
        f"Python (gradient shape/dtype checks, state lookup, step count: {(sm_td - sm_k) / n_small * 1e6:.1f} µs) "
        f"+ `adam_update` ({per['adam_update']:.1f} µs alone, of which the compiled pass over 1000 entries "
        f"is {per['compiled pass']:.1f} µs and the rest its Python wrapper: contiguity checks, bias-correction "
        f"scalars, reshapes); PyTorch's default {sm_pt / n_small * 1e6:.1f} µs (seven op dispatches and a "
        "step-count tensor per parameter); `foreach=True` and `fused=True` group all tensors into a few "
        "multi-tensor kernels.",
    ]


def layer_notes(dense, masked, dense_split, conv_split):
    split_share = dense_split["NumPy floor (Linear)"].sum() / dense_split["tinydgm Linear"].sum()
    lin = dense["tinydgm Linear"].median
    lin_floor = dense["NumPy floor (Linear)"].median
    msk = masked["tinydgm MaskedLinear"].median
    msk_floor = masked["NumPy floor (MaskedLinear)"].median
    msk_pt = masked["PyTorch x @ (W * M) + b"].median
    lin_pt = dense["PyTorch nn.Linear"].median
    conv_fwd, conv_bwd = conv_split["tinydgm Conv2d"]
    pt_fwd, pt_bwd = conv_split["PyTorch nn.Conv2d"]
    return [
        f"- Linear: the raw-NumPy floor (three GEMMs and a column sum) takes {lin_floor / lin:.0%} of tinydgm's "
        f"median time ({split_share:.0%} in the forward/backward loops), so the time is the GEMMs and the "
        "engine's two graph nodes (matmul, add) cost about as much as this machine's run-to-run spread. The "
        f"GEMM libraries decide the ratio: NumPy's OpenBLAS floor is {lin_floor / lin_pt:.2f}x PyTorch's "
        "(MKL) layer.",
        f"- MaskedLinear: the mask costs tinydgm about {(msk - lin) * 1e3:.2f} ms over Linear (W * M in the "
        f"forward, the product with M in the weight gradient: elementwise passes over the 392k weights) and "
        f"PyTorch about {(msk_pt - lin_pt) * 1e3:.2f} ms (medians of two separate parts); the NumPy floor with "
        f"the mask is {msk_floor / msk:.0%} of tinydgm's time.",
        f"- Conv2d: tinydgm's forward {conv_fwd * 1e3:.1f} ms and backward {conv_bwd * 1e3:.1f} ms (im2col "
        f"GEMMs on NumPy's BLAS, see the engine section) vs PyTorch's {pt_fwd * 1e3:.1f} ms and "
        f"{pt_bwd * 1e3:.1f} ms (oneDNN's convolution kernels); the layer adds only its input checks to the "
        "engine's conv2d.",
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every side (default 2)")
    parser.add_argument("--out", help="write the markdown section to this file")
    cfg = parser.parse_args(argv)
    cfg.repeats = 7 if cfg.quick else 31
    cfg.conv_repeats = 3 if cfg.quick else 11
    cfg.sample_s = 0.01 if cfg.quick else 0.03
    cfg.settle_s = 0.1          # let the other library's spinning BLAS/OpenMP threads sleep

    pinned = common.pin_threads(cfg.threads)
    info = common.machine_info()
    print(common.machine_markdown(info, cfg.threads))
    print(f"- pinned: {pinned}; BLAS pools: {common.blas_info()}", flush=True)

    start, load0 = time.perf_counter(), os.getloadavg()
    loads = [common.ForeignLoad() for _ in range(5)]
    print("\n1. Adam step", flush=True)
    with loads[0]:
        adam_mlp_table, adam_mlp = bench_adam(cfg, MLP_SHAPES, "784-500-784 MLP parameters", cfg.settle_s)
    with loads[1]:
        adam_small_table, adam_small = bench_adam(cfg, SMALL_SHAPES, "100 tensors x 1000 entries", 0.0)
        calls = adam_call_costs(cfg)
        print("  one 1000-entry tensor: " + ", ".join(f"{k} {v * 1e6:.2f} µs" for k, v in calls.items()),
              flush=True)
    print("\n2. layers, forward + backward", flush=True)
    with loads[2]:
        sides = dense_sides(masked=False)
        print("  Linear: same output and gradients on every side (checked)", flush=True)
        dense_table, dense, dense_split = bench_layer(cfg, "Linear 784 -> 500, batch 100", sides,
                                                      "PyTorch nn.Linear", cfg.repeats, cfg.sample_s)
    with loads[3]:
        sides = dense_sides(masked=True)
        print("  MaskedLinear: same output and gradients on every side (checked)", flush=True)
        masked_table, masked, _ = bench_layer(cfg, "MaskedLinear 784 -> 500 (MADE mask), batch 100",
                                                         sides, "PyTorch x @ (W * M) + b", cfg.repeats,
                                                         cfg.sample_s)
    with loads[4]:
        sides = conv_sides()
        print("  Conv2d: same output and gradients on both sides (checked)", flush=True)
        conv_table, conv, conv_split = bench_layer(cfg, "Conv2d 64 -> 64, 3x3, pad 1, 32x64x28x28", sides,
                                                   "PyTorch nn.Conv2d", cfg.conv_repeats, 0.0)
    elapsed = time.perf_counter() - start
    load = os.getloadavg()
    print("CPU used by other processes during the parts: " + ", ".join(x.describe() for x in loads))
    print(f"\ntotal {elapsed:.0f} s; load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    command = "python benchmarks/bench_toolkit.py" + (" --quick" if cfg.quick else "") + \
        f" --threads {cfg.threads}" + (f" --out {cfg.out}" if cfg.out else "")
    ratio = {
        "adam_mlp": _median_ratio(adam_mlp, "tinydgm Adam", "PyTorch Adam (default)"),
        "adam_small": _median_ratio(adam_small, "tinydgm Adam", "PyTorch Adam (default)"),
        "linear": _median_ratio(dense, "tinydgm Linear", "PyTorch nn.Linear"),
        "masked": _median_ratio(masked, "tinydgm MaskedLinear", "PyTorch x @ (W * M) + b"),
        "conv": _median_ratio(conv, "tinydgm Conv2d", "PyTorch nn.Conv2d"),
    }
    parts = [
        "## Toolkit: optimizer and layers", "",
        f"Command: `{command}` (one process, {elapsed:.0f} s; {cfg.repeats} interleaved repeats per case "
        f"({cfg.conv_repeats} for Conv2d), medians with [interquartile range]; load average {load0[0]:.2f} at "
        f"the start, {load[0]:.2f} at the end).", "",
        common.machine_markdown(info, cfg.threads), "",
        "No targets are set for these; the ratios are reported as measured "
        "(tinydgm / PyTorch: below 1 means tinydgm is faster). Summary (median paired ratios): "
        f"Adam step {ratio['adam_mlp']:.2f}x on the MLP's parameters and {ratio['adam_small']:.2f}x on 100 small "
        f"tensors (vs torch.optim.Adam's default); Linear {ratio['linear']:.2f}x, MaskedLinear "
        f"{ratio['masked']:.2f}x, Conv2d {ratio['conv']:.2f}x forward + backward.", "",
        "### 1. Adam step", "",
        "`optimizer.step()` alone, with every gradient preset to the same random values (float32, lr 1e-3). "
        "tinydgm.optim.Adam runs the fused Numba kernel `tinydgm.kernels.adam.adam_update` (one serial pass "
        "per tensor); \"kernel loop\" calls that kernel in a bare Python loop (no optimizer class). PyTorch's "
        "default on the CPU is the single-tensor implementation; `foreach=True` and `fused=True` are the "
        "multi-tensor and fused ones a user can ask for. Every side was checked to give the same parameters "
        "after 5 steps.", "",
        adam_mlp_table, "", common.load_note(loads[0], [adam_mlp]), "",
        adam_small_table, "", common.load_note(loads[1], [adam_small]), "",
        *adam_notes(adam_mlp, adam_small, calls), "",
        "### 2. Layers: forward + backward", "",
        "The input requires a gradient (a hidden layer), the upstream gradient is a fixed random array, and "
        "each call computes the output and the gradients of input, weight and bias. The MaskedLinear mask is "
        "the first-layer mask of a one-hidden-layer MADE (natural ordering, random connectivity: "
        f"`made_masks(made_degrees(784, [500], connectivity=\"random\"))`, {made_mask().mean():.0%} of the "
        "weights kept); PyTorch has no masked layer, so its side is `x @ (W * M) + b` written by hand. \"NumPy "
        "floor\" is the forward and a hand-written backward on arrays. Every side was checked to give the "
        "same output and gradients. Forward and backward columns: medians of a separate loop per side.", "",
        dense_table, "", common.load_note(loads[2], [dense]), "",
        masked_table, "", common.load_note(loads[3], [masked]), "",
        conv_table, "", common.load_note(loads[4], [conv]), "",
        *layer_notes(dense, masked, dense_split, conv_split), "",
    ]
    section = "\n".join(parts)
    common.write_section(cfg.out, section)


if __name__ == "__main__":
    main()
