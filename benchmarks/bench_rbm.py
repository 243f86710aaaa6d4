"""RBM benchmark (issues 4 and 12): one epoch of PCD-1 against scikit-learn's BernoulliRBM, and
block Gibbs sweeps against a plain NumPy loop and the machine's GEMM-only time.

    python benchmarks/bench_rbm.py [--quick] [--threads N] [--out SECTION.md] [--parts pcd,gibbs]
                                   [--data gray|binarized] [--dtypes float32,float64] [--n-train N]
                                   [--serial]

All in one process, every side pinned to the same number of threads (NumPy's BLAS through
threadpoolctl, Numba):

1. BernoulliRBM, 500 hidden units, batch 100, learning rate 0.1, one epoch of PCD-1 over the 60,000
   MNIST training images scaled to [0, 1] (gray levels, as scikit-learn's example; ``--data
   binarized``: the 50,000 statically binarized training images, 0/1, read with
   ``tinydgm.data.load_binarized_mnist`` from TINYDGM_DATA or a shared/data folder beside the
   checkout): tinydgm
   ``BernoulliRBM(784, 500).fit(x, epochs=1, batch_size=100, lr=0.1, k=1, persistent=True)`` vs
   ``sklearn.neural_network.BernoulliRBM(n_components=500, batch_size=100, learning_rate=0.1,
   n_iter=1)``. Both run the same algorithm: per batch, p(h | v_data), one Gibbs step
   v ~ p(v | h_chain), p(h | v) for the model moments, h_chain ~ p(h | v), an SGD step on data
   minus model moments (no momentum, no weight decay). Both visit the batches in the same fixed
   order (no shuffling: scikit-learn's ``fit`` slices the data in order, tinydgm's
   ``shuffle=False``), and neither scores the pseudo-likelihood during the epoch
   (scikit-learn does so only with ``verbose``). scikit-learn keeps float32 when given
   float32 (``components_`` float32); we compare at the same dtype, float32 by default
   (``--dtypes float32,float64`` for both). tinydgm computes [v_data; v_model] W and the weight
   gradient by skipping the zeros of the visible matrix when fewer than 30% of its entries are
   nonzero (MNIST batches: about 13-20%), BLAS otherwise (``rbm_gibbs.SPARSE_BELOW``), and
   h W^T by skipping the zeros of h when fewer than 40% are ones (``SPARSE_HIDDEN_BELOW``); with
   several threads and sparse data (the default, ``rbm_gibbs.SPARSE_PARALLEL``) every product
   of the step is such a sum split over the threads and the step makes no BLAS call;
   ``--serial`` measures the serial kernels instead. The cases are separated by 0.5 s pauses:
   OpenBLAS's threads spin-wait after a
   call (and libgomp's after a parallel region), and a case started while the previous
   case's threads still spin shares the cores with them. Target: tinydgm at least 2x faster. Quality check:
   the mean pseudo-likelihood of the first 1,000 images after the epoch, on both sides (the
   scikit-learn estimator: one random flipped unit per image, the same for both models).
2. Block Gibbs sweeps (v -> h -> v), 100 chains, 784 x 500, float32: tinydgm's
   ``block_gibbs_stream`` (each sweep's random numbers drawn inside the timed call just before
   the sweep, two float32 uniforms per 64-bit draw, as ``BernoulliRBM.gibbs`` and ``sample``
   do; and ``block_gibbs_kernel`` given all the numbers) vs a plain NumPy loop
   (``rng.random(...) < 1 / (1 + exp(-(v @ W + c)))``)
   vs the two matrix products alone (``np.dot(v, W, out=...)``, ``np.dot(h, W.T, out=...)``: the
   physical limit). Target: at most 1.5x the GEMM-only time.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm.kernels import rbm_gibbs  # noqa: E402
from tinydgm.models.energy.rbm import BernoulliRBM  # noqa: E402

# the data folder: TINYDGM_DATA, else a shared/data folder beside the checkout
DATA_DIR = os.environ.get("TINYDGM_DATA") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                          "shared", "data")
MNIST = os.path.join(DATA_DIR, "mnist.npz")
D, H, BATCH, LR = 784, 500, 100, 0.1


def mnist_unit(n_train=None):
    """The MNIST training images as (N, 784) float64 in [0, 1] (the shared file, else the embedded subset)."""
    if os.path.exists(MNIST):
        x, source = np.load(MNIST)["x_train"], "the 60,000 MNIST training images, gray levels / 255"
    else:
        x, source = td.data.load_embedded()["x"], "the 1,000 embedded MNIST images (mnist.npz not found)"
    x = x.reshape(len(x), -1) / 255.0
    if n_train:
        x, source = x[:n_train], f"the first {n_train} MNIST training images, gray levels / 255"
    return x, source


def binarized_train(n_train=None):
    """The 50,000 statically binarized MNIST training images (Larochelle's split) as (N, 784)
    float64 in {0, 1} (``tinydgm.data.load_binarized_mnist``, no download)."""
    x = td.data.load_binarized_mnist(path=DATA_DIR, download=False, progress=False)["train"].astype(np.float64)
    source = "the 50,000 statically binarized MNIST training images (0/1)"
    if n_train:
        x, source = x[:n_train], f"the first {n_train} statically binarized MNIST training images (0/1)"
    return x, source


def stochastic_pl(W, b, c, v, flip):
    """scikit-learn's pseudo-likelihood estimate D log sigmoid(F(v~) - F(v)), unit ``flip[n]`` flipped."""
    def free_energy(x):
        return -(x @ b) - np.logaddexp(0, x @ W + c).sum(1)
    v_flip = v.copy()
    rows = np.arange(len(v))
    v_flip[rows, flip] = 1 - v_flip[rows, flip]
    return float((-D * np.logaddexp(0, -(free_energy(v_flip) - free_energy(v)))).mean())


# ----------------------------------------------------------------------------- 1. PCD epoch

def bench_pcd(cfg, x, dtype):
    from sklearn.neural_network import BernoulliRBM as SklearnRBM
    x = x.astype(dtype)
    models = {}

    def ours():
        rbm = BernoulliRBM(D, H, rng=td.rng(0), dtype=dtype)
        rbm.fit(x, epochs=1, batch_size=BATCH, lr=LR, k=1, persistent=True, rng=np.random.default_rng(0))
        models["tinydgm"] = (rbm.W.data, rbm.b.data, rbm.c.data)

    def sklearn():
        rbm = SklearnRBM(n_components=H, batch_size=BATCH, learning_rate=LR, n_iter=1, random_state=0)
        rbm.fit(x)
        assert rbm.components_.dtype == np.dtype(dtype), rbm.components_.dtype
        models["scikit-learn"] = (rbm.components_.T, rbm.intercept_visible_, rbm.intercept_hidden_)

    cases = {"tinydgm": ours, "scikit-learn": sklearn}
    stats, _ = common.compare(cases, repeats=cfg.pcd_repeats, warmup=1, min_sample_s=0.0, settle_s=0.5)
    rng = np.random.default_rng(1)
    v = x[:1000].astype(np.float64)
    flip = rng.integers(0, D, len(v))
    pl = {name: stochastic_pl(*(np.asarray(a, np.float64) for a in params), v, flip) for name, params in models.items()}
    return {"stats": stats, "pl": pl, "dtype": dtype}


# ----------------------------------------------------------------------------- 2. Gibbs sweeps

def bench_gibbs(cfg):
    rng = np.random.default_rng(0)
    n, k = 100, cfg.sweeps
    W = (0.05 * rng.standard_normal((D, H))).astype(np.float32)
    b = (0.1 * rng.standard_normal(D)).astype(np.float32) - 1
    c = (0.1 * rng.standard_normal(H)).astype(np.float32)
    v0 = (rng.random((n, D)) < 0.2).astype(np.float32)
    a_h, a_v = np.empty((n, H), np.float32), np.empty((n, D), np.float32)
    h_const = (rng.random((n, H)) < 0.5).astype(np.float32)
    noise_rng = np.random.default_rng(1)

    def tinydgm():
        return rbm_gibbs.block_gibbs_stream(W, b, c, v0, k, noise_rng)

    u_h0, r_v0 = rbm_gibbs.draw_noise(np.random.default_rng(2), k, n, D, H, dtype="float32")

    def tinydgm_given_noise():
        return rbm_gibbs.block_gibbs_kernel(W, b, c, v0, u_h0, r_v0)

    def numpy_loop():
        v = v0
        for _ in range(k):
            h = (noise_rng.random((n, H), dtype=np.float32) < 1 / (1 + np.exp(-(v @ W + c)))).astype(np.float32)
            v = (noise_rng.random((n, D), dtype=np.float32) < 1 / (1 + np.exp(-(h @ W.T + b)))).astype(np.float32)
        return v

    def gemm_only():
        for _ in range(k):
            np.dot(v0, W, out=a_h)
            np.dot(h_const, W.T, out=a_v)

    # the kernel and its twin give the same chains on the same random numbers
    same = np.array_equal(tinydgm_given_noise()[0], rbm_gibbs.block_gibbs_xp(W, b, c, v0, u_h0, r_v0)[0])
    with np.errstate(over="ignore"):
        cases = {"tinydgm (noise drawn inside)": tinydgm, "tinydgm (noise given)": tinydgm_given_noise,
                 "plain NumPy loop": numpy_loop, "GEMM only (2 products)": gemm_only}
        stats, _ = common.compare(cases, repeats=cfg.repeats, warmup=2, min_sample_s=cfg.min_sample_s,
                                  settle_s=cfg.settle_s)
    return {"stats": stats, "k": k, "n": n, "same": same}


# ----------------------------------------------------------------------------- report

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and 6,000 images (a smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every side (default 2)")
    parser.add_argument("--out", help="write the markdown section to this file")
    parser.add_argument("--parts", default="pcd,gibbs", help="comma-separated: pcd, gibbs (default both)")
    parser.add_argument("--dtypes", default="float32", help="dtypes of part 1 (default float32)")
    parser.add_argument("--data", choices=("gray", "binarized"), default="gray",
                        help="part 1's images: gray (the 60,000 MNIST training images / 255, default) or binarized "
                             "(the 50,000 statically binarized training images)")
    parser.add_argument("--n-train", type=int, default=None, help="images for part 1 (default all of --data)")
    parser.add_argument("--serial", action="store_true",
                        help="tinydgm: serial zero-skipping products and BLAS (rbm_gibbs.SPARSE_PARALLEL = False)")
    cfg = parser.parse_args(argv)
    rbm_gibbs.SPARSE_PARALLEL = not cfg.serial
    cfg.pcd_repeats = 2 if cfg.quick else 5
    cfg.repeats = 5 if cfg.quick else 15
    cfg.sweeps = 20 if cfg.quick else 100
    cfg.min_sample_s = 0.05 if cfg.quick else 0.2
    cfg.settle_s = 0.1
    n_train_given = cfg.n_train is not None
    if cfg.quick and cfg.n_train is None:
        cfg.n_train = 6000
    parts = set(cfg.parts.split(","))

    pinned = common.pin_threads(cfg.threads)
    info = common.machine_info()
    print(common.machine_markdown(info, cfg.threads))
    print(f"- pinned: {pinned}; BLAS pools: {common.blas_info()}", flush=True)
    start, load0 = time.perf_counter(), os.getloadavg()
    loads = {"pcd": common.ForeignLoad(), "gibbs": common.ForeignLoad()}
    pcd, gibbs, source = [], None, None
    if "pcd" in parts:
        x, source = (binarized_train if cfg.data == "binarized" else mnist_unit)(cfg.n_train)
        with loads["pcd"]:
            for dtype in cfg.dtypes.split(","):
                print(f"\n1. PCD-1 epoch, {dtype}", flush=True)
                res = bench_pcd(cfg, x, dtype)
                for name, s in res["stats"].items():
                    print(f"  {name}: {common.fmt_stats(s)}; pseudo-likelihood {res['pl'][name]:.2f}")
                print("  ratio tinydgm / scikit-learn: "
                      + common.fmt_ratio(res["stats"]["tinydgm"], res["stats"]["scikit-learn"]), flush=True)
                pcd.append(res)
    if "gibbs" in parts:
        print("\n2. block Gibbs sweeps", flush=True)
        with loads["gibbs"]:
            gibbs = bench_gibbs(cfg)
        for name, s in gibbs["stats"].items():
            print(f"  {name}: {common.fmt_stats(s)} per {gibbs['k']} sweeps")
    elapsed = time.perf_counter() - start
    load = os.getloadavg()
    print(f"\ntotal {elapsed:.0f} s; load average {load0[0]:.2f} at the start, {load[0]:.2f} at the end")

    command = "python benchmarks/bench_rbm.py" + (" --quick" if cfg.quick else "") + f" --threads {cfg.threads}" + \
        (f" --parts {cfg.parts}" if parts != {"pcd", "gibbs"} else "") + \
        (f" --dtypes {cfg.dtypes}" if cfg.dtypes != "float32" else "") + \
        (f" --data {cfg.data}" if cfg.data != "gray" else "") + \
        (f" --n-train {cfg.n_train}" if n_train_given else "") + (" --serial" if cfg.serial else "") + \
        (f" --out {cfg.out}" if cfg.out else "")
    out = ["### RBMs: PCD training and block Gibbs sampling", "",
           f"Command: `{command}` (one process, {elapsed:.0f} s; load average {load0[0]:.2f} at the start, "
           f"{load[0]:.2f} at the end).", "", common.machine_markdown(info, cfg.threads), ""]
    if pcd:
        rows = []
        for res in pcd:
            s = res["stats"]
            rows.append([res["dtype"], common.fmt_stats(s["tinydgm"]), common.fmt_stats(s["scikit-learn"]),
                         common.fmt_ratio(s["tinydgm"], s["scikit-learn"]),
                         f"{res['pl']['tinydgm']:.2f} / {res['pl']['scikit-learn']:.2f}"])
        out += ["### 1. BernoulliRBM, one epoch of PCD-1 (500 hidden units, batch 100, learning rate 0.1)", "",
                f"Data: {source}. Each side trains a fresh model for one epoch (one timed call "
                f"= the whole epoch, {cfg.pcd_repeats} interleaved repeats). tinydgm: `BernoulliRBM(784, 500, "
                "dtype=...).fit(x, epochs=1, batch_size=100, lr=0.1, k=1, persistent=True)` (per batch: one "
                "product h_chain W^T for p(v | h_chain), ONE product [v_data; v_model] W for p(h | v_data) and "
                "p(h | v_model) together, and ONE product [v_data; v_model]^T [p_data / n; -p_model / n] for the "
                "weight gradient, these two as Numba sums over the nonzero entries of [v_data; v_model] (about "
                "13-20% of them on MNIST; BLAS above 30%)" + ("; h_chain W^T a zero-skipping sum below 40% ones "
                "(through a transposed copy of W), else BLAS" if cfg.serial or cfg.threads == 1 else
                "; every product's rows split over the threads, h_chain W^T also a zero-skipping sum (through a "
                "transposed copy of W): no BLAS call, five parallel regions per step") + "; sigmoid and Bernoulli "
                "sampling fused in Numba "
                "around NumPy's exp; two float32 uniforms per 64-bit draw; preallocated buffers; on sparse batches the weight update rides in the same Numba pass as the gradient rows, which are never stored). "
                "scikit-learn: `BernoulliRBM(n_components=500, batch_size=100, learning_rate=0.1, n_iter=1, "
                "random_state=0).fit(x)` (it keeps float32 input as float32). Both sides visit the batches in the same "
                "fixed order (no shuffling) and neither scores the pseudo-likelihood during the epoch.", "",
                common.markdown_table(["dtype", "tinydgm epoch", "scikit-learn epoch", "ratio (min–max)",
                                       "pseudo-likelihood after the epoch (tinydgm / sklearn)"], rows), ""]
        for res in pcd:
            s = res["stats"]
            ratio, _ = common.paired_ratio(s["tinydgm"], s["scikit-learn"])
            iqr = common.paired_ratio_iqr(s["tinydgm"], s["scikit-learn"])
            out.append(f"Target ({res['dtype']}): at most 0.5x scikit-learn's time — "
                       f"{common.verdict(ratio, iqr, 0.5)}.")
        out += ["", common.load_note(loads["pcd"], [r["stats"] for r in pcd]), ""]
    if gibbs:
        s = gibbs["stats"]
        per = lambda name: s[name].median / gibbs["k"]            # noqa: E731
        rows = [[name, common.fmt_stats(st), f"{1 / per(name):.0f}",
                 common.fmt_ratio(st, s["GEMM only (2 products)"])] for name, st in s.items()]
        ratio, _ = common.paired_ratio(s["tinydgm (noise drawn inside)"], s["GEMM only (2 products)"])
        iqr = common.paired_ratio_iqr(s["tinydgm (noise drawn inside)"], s["GEMM only (2 products)"])
        out += [f"### 2. Block Gibbs sweeps, {gibbs['n']} chains, 784 x 500, float32", "",
                f"{gibbs['k']} sweeps v -> h -> v per timed call; {cfg.repeats} interleaved repeats. Kernel and xp "
                f"twin gave identical chains on the same random numbers: {gibbs['same']}.", "",
                common.markdown_table([f"case ({gibbs['k']} sweeps)", "time", "sweeps / s", "ratio to GEMM only"],
                                      rows), "",
                f"Target: at most 1.5x the GEMM-only time — {common.verdict(ratio, iqr, 1.5)}.", "",
                common.load_note(loads["gibbs"], [s]), ""]
    common.write_section(cfg.out, "\n".join(out))


if __name__ == "__main__":
    main()
