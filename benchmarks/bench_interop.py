"""The PyTorch bridge's overhead (issue 19): a PyTorch function called through
``tinydgm.interop.from_torch`` against the same function called in PyTorch directly.

    python benchmarks/bench_interop.py [--threads N] [--repeats R]

Both sides in one process, pinned to the same number of threads, float64 (the oracle's
precision), each timed as value + gradient with respect to the input:

1. a PyTorch MADE 784-500-784 log p(x), batch 100 (the README's model at MNIST size):
   directly, ``torch.autograd.grad(log_p.sum(), x)``; bridged, ``td.grad(g(x).sum(), [x])``
   with g = from_torch(model.log_prob). The bridge runs the forward twice (once for the
   value, once inside the vector-Jacobian product, whose graph it builds itself), so about
   2x is the expected cost; the conversions through NumPy come on top.
2. a 10x10 ``tanh(x @ w)``: the per-call overhead of the bridge (two Functions, the copies).

Before timing, the bridged gradient is checked against PyTorch's.
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm.interop import from_torch  # noqa: E402


class TorchMADE(torch.nn.Module):
    """A Bernoulli MADE in PyTorch with natural degrees, (out, in) masks."""

    def __init__(self, d, hidden):
        super().__init__()
        sizes = [d] + hidden + [d]
        self.linears = torch.nn.ModuleList(torch.nn.Linear(a, b, dtype=torch.float64) for a, b in zip(sizes, sizes[1:]))
        m = [torch.arange(1, d + 1)] + [1 + torch.arange(h) % (d - 1) for h in hidden]
        masks = [m1[:, None] >= m0[None, :] for m0, m1 in zip(m, m[1:])] + [m[0][:, None] > m[-1][None, :]]
        self.masks = [mask.double() for mask in masks]

    def log_prob(self, x):
        h = x
        for i, (linear, mask) in enumerate(zip(self.linears, self.masks)):
            h = torch.nn.functional.linear(h, linear.weight * mask, linear.bias)
            h = torch.relu(h) if i < len(self.linears) - 1 else h
        return -torch.nn.functional.binary_cross_entropy_with_logits(h, x, reduction="none").sum(-1)


def pair(fn, x_np):
    """(direct, bridged) callables computing value + input gradient of sum(fn(x))."""
    bridged = from_torch(fn)

    def direct():
        x = torch.tensor(x_np, requires_grad=True)
        return torch.autograd.grad(fn(x).sum(), x)[0]

    def through_bridge():
        x = td.tensor(x_np, requires_grad=True)
        return td.grad(bridged(x).sum(), [x])[0]

    np.testing.assert_allclose(through_bridge().numpy(), direct().numpy(), rtol=1e-12, atol=1e-12)
    return direct, through_bridge


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    pinned = common.pin_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    made = TorchMADE(784, [500])
    w = torch.tensor(rng.standard_normal((10, 10)))
    cases = {}
    cases["MADE direct"], cases["MADE bridged"] = pair(made.log_prob, (rng.random((100, 784)) < 0.5) * 1.0)
    cases["10x10 direct"], cases["10x10 bridged"] = pair(lambda x: torch.tanh(x @ w), rng.standard_normal((10, 10)))
    load = os.getloadavg()
    stats, _ = common.compare(cases, repeats=args.repeats)
    rows = []
    for name in ("MADE", "10x10"):
        a, b = stats[f"{name} bridged"], stats[f"{name} direct"]
        rows.append([name, common.fmt_stats(b), common.fmt_stats(a), common.fmt_ratio(a, b)])
    print(f"threads: {pinned}; load average before timing: {load[0]:.2f}")
    print(common.markdown_table(["function", "PyTorch directly", "through from_torch", "bridged / direct"], rows))


if __name__ == "__main__":
    main()
