"""Quality of RealNVP and MAF on the 2-D toy densities (issue 6, "Quality: 2-D toys").

Protocol, the same for both models and every toy: 20,000 training points and 5,000 test
points drawn once with a fixed seed from ``tinydgm.data.toy``; Adam (lr 1e-3, batch 512)
for ``--epochs`` epochs; the test log-likelihood (nats per point) is reported next to the
true density's mean log-density on the same test points where the toy has a closed form
(8 Gaussians, checkerboard, rings): that is the best any model can do in expectation, so
the gap is the model's KL divergence from the truth (up to Monte Carlo noise). Density
heatmaps with samples go to benchmarks/figures/flow_quality_<model>_<toy>.png.

    python benchmarks/quality_flows_toys.py --epochs 50 --out section.md
"""
import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tinydgm import backend, optim, plot                      # noqa: E402
from tinydgm.autodiff.core import no_grad, tensor             # noqa: E402
from tinydgm.data import toy as toy_data                       # noqa: E402
from tinydgm.models.flows.maf_iaf import build_maf     # noqa: E402
from tinydgm.models.flows.realnvp import toy_realnvp          # noqa: E402

TOYS = ("eight_gaussians", "checkerboard", "rings", "two_moons")
EXTENT = {"eight_gaussians": 3.2, "checkerboard": 2.5, "rings": 3.6, "two_moons": 4.0}
MODELS = {
    "RealNVP": lambda rng: toy_realnvp(2, n_couplings=8, hidden=(64, 64), rng=rng, dtype="float32"),
    "MAF": lambda rng: build_maf(2, n_layers=5, hidden_sizes=(64, 64), rng=rng, dtype="float32"),
}


def train_and_test(model_name, toy, epochs, seed=0):
    gen = backend.rng(seed)
    x_train = toy_data.sample_toy(toy, 20000, rng=gen).astype("float32")
    x_test = toy_data.sample_toy(toy, 5000, rng=gen).astype("float32")
    flow = MODELS[model_name](backend.rng(seed + 1))
    opt = optim.Adam(flow.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        order = gen.permutation(len(x_train))
        for i in range(0, len(x_train), 512):
            opt.zero_grad()
            loss = flow.loss(tensor(x_train[order[i:i + 512]]))
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    flow.eval()
    with no_grad():
        test_ll = float(flow.log_prob(tensor(x_test)).mean().item())
    true_ll = None
    if toy_data.TOYS[toy].log_density is not None:
        true_ll = float(toy_data.log_density(toy, x_test.astype("float64")).mean())
    e = EXTENT[toy]
    _, _, log_p = plot.density_grid(flow.log_prob, extent=(-e, e, -e, e), dtype="float32")
    overflow = ~np.isfinite(log_p)               # a stack of exp(-alpha), |alpha| < 8, overflows far away
    log_p[overflow] = -math.inf
    path = os.path.join(os.path.dirname(__file__), "figures", f"flow_quality_{model_name.lower()}_{toy}.png")
    samples = flow.sample(1000, rng=backend.rng(seed + 2)).numpy()
    plot.density_2d(log_p, path, samples=samples, extent=(-e, e, -e, e),
                    title=f"{model_name}, {toy}: test {test_ll:.3f}" + (f" (true {true_ll:.3f})" if true_ll else ""))
    return {"model": model_name, "toy": toy, "test_ll": test_ll, "true_ll": true_ll, "seconds": seconds,
            "overflow": float(overflow.mean()), "figure": os.path.relpath(path, os.path.dirname(__file__) + "/..")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--toys", default=",".join(TOYS))
    parser.add_argument("--out", help="write the markdown section to this file")
    cfg = parser.parse_args(argv)
    try:                                   # tiny matrices: one BLAS thread is fastest and repeatable
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass
    rows = []
    for toy in cfg.toys.split(","):
        for name in MODELS:
            r = train_and_test(name, toy, cfg.epochs)
            print(r, flush=True)
            rows.append(r)
    lines = ["| toy | model | test log-likelihood (nats/point) | true density on the same points | gap (KL estimate) "
             "| training time | figure |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        true = f"{r['true_ll']:.3f}" if r["true_ll"] is not None else "no closed form"
        gap = f"{r['true_ll'] - r['test_ll']:.3f}" if r["true_ll"] is not None else "—"
        lines.append(f"| {r['toy']} | {r['model']} | {r['test_ll']:.3f} | {true} | {gap} | {r['seconds']:.0f} s "
                     f"| `{r['figure']}` |")
    text = "\n".join(lines) + "\n"
    print(text)
    if cfg.out:
        with open(cfg.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
