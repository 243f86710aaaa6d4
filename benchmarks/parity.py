"""Equal-budget parity with PyTorch twins (issue 12): does tinydgm train to the same test NLL as
the same model written in PyTorch (or scikit-learn), at the same budget?

    python benchmarks/parity.py [--models made,nade,pixelcnn,realnvp,rbm] [--out SECTION.md]
                                [--threads 1] [--seeds 0,1]
    python benchmarks/parity.py --rbm-noise 1,2,3     # the RBM's spread from the Gibbs noise alone

For each model and each seed s, both sides start from the SAME initial weights (drawn by
tinydgm with seed s and copied into the twin) and see the SAME minibatches in the SAME order
(a permutation drawn from seed 100 + s), with the same optimizer and hyperparameters; then
each side computes its own test NLL (nats per example, its own forward pass). Two seeds per
side give the run-to-run spread |NLL(seed 0) - NLL(seed 1)|; the paired difference
NLL_tinydgm(s) - NLL_twin(s) must lie within that spread ("agree"), else it is a gap (a defect
to find). float32 on both sides except the RBM (float64: scikit-learn's ``partial_fit`` works
in float64).

- made: MADE 784-500-784 (one hidden layer, ReLU, one fixed random-connectivity mask), Adam
  lr 1e-3, batch 100; twin ``bench_autoregressive.TorchMADE`` (masks and weights copied).
- nade: NADE 784-500, Adam lr 1e-3, batch 100; twin ``bench_autoregressive.TorchNADETrain``
  (the (N, D, H) cumsum form).
- pixelcnn: a small PixelCNN (32 channels, 2 residual blocks), Adam lr 1e-3, batch 32; twin
  ``bench_autoregressive.TorchPixelCNN``.
- realnvp: ``toy_realnvp(2, 8, hidden=(64, 64))`` on 8 Gaussians, Adam lr 1e-3, batch 512;
  twin ``bench_flows.TorchRealNVP``.
- rbm: BernoulliRBM 784-500 with PCD-1, SGD lr 0.05, batch 100 (no momentum, no weight decay):
  tinydgm ``BernoulliRBM.step`` vs scikit-learn ``BernoulliRBM.partial_fit`` on the same batches,
  scikit-learn's parameters (``components_``, intercepts) set to tinydgm's initial ones before
  its first ``partial_fit`` (its persistent chains start at h = 0, as ours). Both are evaluated
  with tinydgm's AIS (same schedule, same number of runs, same AIS random numbers): test NLL =
  -(mean -F(v)) + log Z_hat. ``--rbm-noise`` reruns seed 0 (same initial weights, same batches) with
  only the Gibbs random numbers changed, on both sides: the spread that noise alone makes.

Binarized MNIST comes from ``TINYDGM_DATA`` (``tinydgm.data.load_binarized_mnist``).
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
import bench_autoregressive as bar  # noqa: E402
import bench_flows as bfl  # noqa: E402

import tinydgm as td  # noqa: E402

D, SIDE = 784, 28
BUDGETS = {     # model -> (train images, test images, epochs, batch)
    "made": (10000, 2000, 2, 100),
    "nade": (5000, 1000, 1, 100),
    "pixelcnn": (4000, 1000, 1, 32),
    "realnvp": (10240, 5000, 10, 512),
    "rbm": (10000, 2000, 2, 100),
}
RBM_LR, RBM_HIDDEN, AIS_RUNS, AIS_BETAS = 0.05, 500, 100, 5000


def binarized(n_train, n_test):
    """The first n_train binarized MNIST training images and the first n_test of a fixed random
    draw of the test set (the test split is sorted by class), float32 (N, 784)."""
    data = td.data.load_binarized_mnist(download=False, progress=False)
    test = data["test"][np.random.default_rng(12).permutation(len(data["test"]))[:n_test]]
    return data["train"][:n_train].astype(np.float32), test.astype(np.float32)


def batches(x, batch, epochs, seed):
    """The minibatches of ``epochs`` passes over x, a new permutation per epoch (seed 100 + seed)."""
    rng = np.random.default_rng(100 + seed)
    out = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        out += [x[order[i:i + batch]] for i in range(0, len(x) - batch + 1, batch)]
    return out


def train_pair(td_step, pt_step, xs, shape=None):
    """Run the same batches (each reshaped to (n, *shape) when shape is given) through both steps;
    returns (tinydgm seconds, twin seconds, (tinydgm, twin) loss of the first batch)."""
    t_td = t_pt = 0.0
    first = None
    for k, x in enumerate(xs):
        x = x if shape is None else x.reshape((len(x),) + tuple(shape))
        start = time.perf_counter()
        a = float(td_step(td.tensor(x)).item())
        t_td += time.perf_counter() - start
        start = time.perf_counter()
        b = float(pt_step(torch.tensor(x)).item())
        t_pt += time.perf_counter() - start
        if k == 0:
            first = (a, b)
    return t_td, t_pt, first


def td_nll(log_prob, x, chunk=250):
    """Mean -log p(x) from a tinydgm ``log_prob``, in chunks, without a graph."""
    total = 0.0
    with td.no_grad():
        for i in range(0, len(x), chunk):
            total += float(-log_prob(td.tensor(x[i:i + chunk])).numpy().astype(np.float64).sum())
    return total / len(x)


def pt_bernoulli_nll(logits_fn, x, chunk=250):
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            xb = torch.tensor(x[i:i + chunk])
            total += float(torch_F.binary_cross_entropy_with_logits(logits_fn(xb), xb, reduction="sum")
                           .double())
    return total / len(x)


# ----------------------------------------------------------------------------- one run per model and seed

def run_made(seed):
    n_train, n_test, epochs, batch = BUDGETS["made"]
    x, x_test = binarized(n_train, n_test)
    model = bar.made_model(seed)
    twin = bar.TorchMADE(bar.made_layers(model))
    t_td, t_pt, first = train_pair(common.TinydgmStep(model, bar.LR).step, twin.step, batches(x, batch, epochs, seed))
    return (td_nll(model.log_prob, x_test), pt_bernoulli_nll(twin.logits, x_test), t_td, t_pt, first)


def run_nade(seed):
    from tinydgm.models.autoregressive.nade import NADE
    n_train, n_test, epochs, batch = BUDGETS["nade"]
    x, x_test = binarized(n_train, n_test)
    model = NADE(D, 500, rng=np.random.default_rng(seed), dtype="float32")
    twin = bar.TorchNADETrain(model, "cumsum")
    t_td, t_pt, first = train_pair(common.TinydgmStep(model, bar.LR).step, twin.step, batches(x, batch, epochs, seed))
    return (td_nll(model.log_prob, x_test), pt_bernoulli_nll(twin.logits, x_test, chunk=100), t_td, t_pt, first)


def run_pixelcnn(seed):
    n_train, n_test, epochs, batch = BUDGETS["pixelcnn"]
    x, x_test = binarized(n_train, n_test)
    model = bar.pixelcnn_model(seed, channels=32, n_residual=2)
    twin = bar.TorchPixelCNN(model)
    img = (1, SIDE, SIDE)
    t_td, t_pt, first = train_pair(common.TinydgmStep(model, bar.LR).step, twin.step,
                                   batches(x, batch, epochs, seed), shape=img)
    x_test = x_test.reshape(-1, *img)
    return (td_nll(model.log_prob, x_test, chunk=100), pt_bernoulli_nll(twin.logits, x_test, chunk=100),
            t_td, t_pt, first)


def run_realnvp(seed):
    from tinydgm.data.toy import sample_toy
    from tinydgm.models.flows import toy_realnvp
    n_train, n_test, epochs, batch = BUDGETS["realnvp"]
    x = sample_toy("eight_gaussians", n_train, np.random.default_rng(7)).astype(np.float32)
    x_test = sample_toy("eight_gaussians", n_test, np.random.default_rng(8)).astype(np.float32)
    flow = toy_realnvp(2, 8, hidden=(64, 64), rng=np.random.default_rng(seed), dtype="float32")
    twin = bfl.TorchRealNVP(flow)
    t_td, t_pt, first = train_pair(common.TinydgmStep(flow, bfl.LR).step, bfl.TorchStep(twin).step,
                                   batches(x, batch, epochs, seed))
    with torch.no_grad():
        nll_pt = float(-twin.log_prob(torch.tensor(x_test)).double().mean())
    return td_nll(flow.log_prob, x_test, chunk=n_test), nll_pt, t_td, t_pt, first


def rbm_nll(W, b, c, x_test, base_bias, seed):
    from tinydgm.evaluate.ais import ais_betas, rbm_ais, rbm_test_log_likelihood
    ais = rbm_ais(W, b, c, n_runs=AIS_RUNS, betas=ais_betas("linear", AIS_BETAS), base_visible_bias=base_bias,
                  rng=np.random.default_rng(1000 + seed))
    return -rbm_test_log_likelihood(W, b, c, x_test, ais["log_z"]), ais["log_z_se"]


def run_rbm(seed, noise=None):
    """One PCD run per side from tinydgm's initial weights for ``seed``; ``noise`` (else ``seed``)
    picks the Gibbs random numbers alone (scikit-learn's random_state, our generator)."""
    from sklearn.neural_network import BernoulliRBM as SklearnRBM
    from tinydgm.evaluate.ais import base_rate_visible_bias
    from tinydgm.models.energy.rbm import BernoulliRBM
    n_train, n_test, epochs, batch = BUDGETS["rbm"]
    x, x_test = binarized(n_train, n_test)
    x, x_test = x.astype(np.float64), x_test.astype(np.float64)
    ours = BernoulliRBM(D, RBM_HIDDEN, rng=td.rng(seed), dtype="float64")
    theirs = SklearnRBM(n_components=RBM_HIDDEN, batch_size=batch, learning_rate=RBM_LR, n_iter=1,
                        random_state=seed if noise is None else noise)
    # scikit-learn's partial_fit initialises only what is missing: give it our initial parameters
    theirs.components_ = np.asfortranarray(ours.W.data.T.copy())
    theirs.intercept_visible_ = ours.b.data.copy()
    theirs.intercept_hidden_ = ours.c.data.copy()
    theirs.n_features_in_ = D
    rng = np.random.default_rng(200 + seed if noise is None else 300 + noise)
    t_td = t_pt = 0.0
    for xb in batches(x, batch, epochs, seed):
        start = time.perf_counter()
        ours.step(xb, RBM_LR, 1, True, 0.0, 0.0, rng)
        t_td += time.perf_counter() - start
        start = time.perf_counter()
        theirs.partial_fit(xb)
        t_pt += time.perf_counter() - start
    base = base_rate_visible_bias(x)
    nll_td, se_td = rbm_nll(ours.W.data, ours.b.data, ours.c.data, x_test, base, seed)
    nll_sk, se_sk = rbm_nll(np.ascontiguousarray(theirs.components_.T), theirs.intercept_visible_,
                            theirs.intercept_hidden_, x_test, base, seed)
    return nll_td, nll_sk, t_td, t_pt, (se_td, se_sk)


RUNS = {"made": run_made, "nade": run_nade, "pixelcnn": run_pixelcnn, "realnvp": run_realnvp, "rbm": run_rbm}
DESCRIBE = {
    "made": "MADE 784-500-784, 1 mask, Adam 1e-3",
    "nade": "NADE 784-500, Adam 1e-3",
    "pixelcnn": "PixelCNN 32 ch, 2 res. blocks, Adam 1e-3",
    "realnvp": "RealNVP 8 couplings 64-64, 8 Gaussians, Adam 1e-3",
    "rbm": f"RBM 784-{RBM_HIDDEN} PCD-1, SGD {RBM_LR} (vs scikit-learn)",
}


def verdict(td_nlls, pt_nlls):
    """(spread tinydgm, spread twin, paired differences, verdict)."""
    spread_td = abs(td_nlls[0] - td_nlls[-1])
    spread_pt = abs(pt_nlls[0] - pt_nlls[-1])
    diffs = [a - b for a, b in zip(td_nlls, pt_nlls)]
    limit = max(spread_td, spread_pt)
    word = "agree within spread" if max(abs(d) for d in diffs) <= limit else "GAP"
    return spread_td, spread_pt, diffs, word


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(RUNS), help="comma-separated subset of " + ",".join(RUNS))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="write the markdown section to this file")
    parser.add_argument("--rbm-noise", default=None,
                        help="e.g. 1,2,3: instead, rerun the RBM of seed 0 with only the Gibbs random numbers changed")
    cfg = parser.parse_args(argv)
    if cfg.rbm_noise:
        common.pin_threads(cfg.threads)
        for noise in [int(s) for s in cfg.rbm_noise.split(",")]:
            r = run_rbm(0, noise)
            print(f"rbm seed 0, noise {noise}: tinydgm {r[0]:.3f}, scikit-learn {r[1]:.3f} nats", flush=True)
        return
    models = cfg.models.split(",")
    unknown = sorted(set(models) - set(RUNS))
    if unknown:
        parser.error(f"unknown models {unknown}; the models are {list(RUNS)}")
    seeds = [int(s) for s in cfg.seeds.split(",")]
    pinned = common.pin_threads(cfg.threads)
    info = common.machine_info()
    print(common.machine_markdown(info, cfg.threads), f"\n- pinned: {pinned}", flush=True)
    load0, start = os.getloadavg(), time.perf_counter()
    rows = []
    for name in models:
        results = []
        for seed in seeds:
            r = RUNS[name](seed)
            print(f"{name} seed {seed}: tinydgm {r[0]:.3f}, twin {r[1]:.3f} nats; train s {r[2]:.1f} / {r[3]:.1f}; "
                  f"first losses / RBM AIS standard errors {r[4]}", flush=True)
            results.append(r)
        td_nlls, pt_nlls = [r[0] for r in results], [r[1] for r in results]
        s_td, s_pt, diffs, word = verdict(td_nlls, pt_nlls)
        n_train, n_test, epochs, batch = BUDGETS[name]
        budget = f"{epochs} ep. x {n_train:,} train, batch {batch}, {n_test:,} test"
        rows.append([name, DESCRIBE[name], budget, " / ".join(f"{v:.3f}" for v in td_nlls),
                     " / ".join(f"{v:.3f}" for v in pt_nlls), f"{s_td:.3f}", f"{s_pt:.3f}",
                     " / ".join(f"{d:+.3f}" for d in diffs),
                     f"{sum(r[2] for r in results):.0f} / {sum(r[3] for r in results):.0f}", word])
    elapsed, load = time.perf_counter() - start, os.getloadavg()
    header = ["model", "set-up", "budget", "tinydgm NLL (seeds)", "twin NLL (seeds)", "spread tinydgm",
              "spread twin", "paired diff. (tinydgm - twin)", "train s tinydgm / twin", "verdict"]
    table = common.markdown_table(header, rows)
    section = "\n".join([
        f"Command: `python benchmarks/parity.py --models {cfg.models}` (seeds {cfg.seeds}, {cfg.threads} thread "
        f"per side); {elapsed:.0f} s; load average {load0[0]:.2f} at the start, {load[0]:.2f} at the end.", "",
        common.machine_markdown(info, cfg.threads), "", table, ""])
    print("\n" + section)
    common.write_section(cfg.out, section)


if __name__ == "__main__":
    main()
