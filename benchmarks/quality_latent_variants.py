"""Quality of the VAE priors and posteriors on MNIST at ONE equal budget (issue 14, "Benchmarks and
quality"), next to the papers.

Every variant is the same VAE, one stochastic layer: encoder 784 -> 300 (ReLU) -> (40 mu, 40 log_var),
decoder 40 -> 300 (ReLU) -> 784 Bernoulli logits (the VampPrior paper's one-layer model has 40 latents
and two gated layers of 300; ours is smaller: one plain ReLU layer). Only the prior or the posterior
changes:

    standard      N(0, I), closed-form KL
    mog           MixtureOfGaussiansPrior(40, K=100), every mean, scale and weight learned
    vampprior     VampPrior(encoder, K=100), pseudo-inputs started at 100 training images (the paper's
                  "data" initialisation; not clipped to [0, 1]). K = 100, not the paper's 500: chosen
                  when the mixture's log p(z) went through a (z, K, L) array (~1.3 ms per z at
                  K = 500); since the GEMM form of MixtureOfGaussians.log_prob it is 12-17x cheaper,
                  but K stayed at 100 so that the runs stay comparable with the earlier table
    flow-prior    FlowPrior(toy_realnvp(40, 4 couplings, hidden (100,)))
    planar        PlanarPosterior(K=16 steps, amortisation net 784 -> 64 -> 16 x 81)
    iaf           IAFPosterior(2 steps, MADE hidden (100,), context 40 from 784 -> 100 -> 40)

Training: statically binarized MNIST, the 50,000 training images, batch 100, Adam lr 1e-3, the same
number of epochs for every variant (the equal budget is in steps, not in seconds: the wall time of each
run is reported), one sample per image (Monte Carlo KL except the standard prior), no KL warm-up (the
VampPrior paper warms up over 100 epochs and trains until early stopping). Same initial encoder/decoder
weights, same data order for every variant (seeded).

Evaluation on a fixed random subset of the test images (``--n-test``; the same for every variant):
log p(x) by importance sampling with k samples (``tinydgm.evaluate.importance_log_likelihood``), the
test NLL with two standard errors (over the test images, and the Monte Carlo one of the estimator), and
each variant's paired difference to the standard prior on the same images (the ordering claim). And, for
every prior (a flow posterior has no aggregated-posterior density: ``elbo_surgery`` refuses it), the ELBO
surgery on ``--n-surgery`` test images (a fixed random subset holding the one above, or inside it).

    TINYDGM_DATA=<folder with binarized_mnist.npz> python benchmarks/quality_latent_variants.py --all \
        --epochs 8 --k 1000 --n-test 500 --n-surgery 1000 --results runs/ --out section.md

runs the variants two at a time (one thread each, a subprocess per variant); ``--run NAME`` runs one
(JSON on stdout). Each trained model's parameters are saved as a tinydgm checkpoint,
``<results>/<name>.npz`` (``tinydgm.checkpoint.save``: written atomically, with the epochs, the training
curve and wall time), and

    python benchmarks/quality_latent_variants.py --all --eval-only --weights <that folder> \
        --k 5000 --n-test 2000 --n-surgery 1000 --results <new folder> --out section.md

reloads them and evaluates again (another k, more test images) without training. The evaluation runs
in blocks of 500 images with one generator (the same draws as a single call) and prints the time per
image as it goes.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tinydgm as td  # noqa: E402
from tinydgm import checkpoint, optim  # noqa: E402
from tinydgm.evaluate import importance_log_likelihood  # noqa: E402
from tinydgm.models.flows.realnvp import toy_realnvp  # noqa: E402
from tinydgm.models.latent import (IAFPosterior, MixtureOfGaussiansPrior, MLPDecoder, MLPEncoder,  # noqa: E402
                                   PlanarPosterior, VAE, VampPrior, elbo_surgery_table,
                                   format_elbo_surgery_table)

D, HIDDEN, LATENT, BATCH, LR, K_MIX = 784, (300,), 40, 100, 1e-3, 100
VARIANTS = ["standard", "mog", "vampprior", "flow-prior", "planar", "iaf"]
PRIORS = ["standard", "mog", "vampprior", "flow-prior"]
# Test NLL (nats), statically binarized MNIST, one stochastic layer: the VampPrior paper ("VAE with a
# VampPrior", AISTATS 2018) and Rezende & Mohamed 2015 (planar flow, K = 80). "—": no published figure here.
PUBLISHED = {"standard": "88.56 (VampPrior paper, AISTATS 2018)", "mog": "— (same table; not retrieved here)",
             "vampprior": "85.57 (VampPrior paper, AISTATS 2018)", "flow-prior": "—",
             "planar": "85.10 (K = 80; Rezende & Mohamed 2015)", "iaf": "—"}


def binarized_mnist():
    return td.data.load_binarized_mnist(download=False, progress=False)


def build(name, train, seed=0):
    """The VAE of variant ``name``; the encoder and decoder weights depend on ``seed`` only."""
    gen = np.random.default_rng(seed)
    enc = MLPEncoder(D, LATENT, hidden=HIDDEN, activation="relu", rng=gen, dtype="float32")
    dec = MLPDecoder(LATENT, D, hidden=HIDDEN, activation="relu", likelihood="bernoulli", rng=gen, dtype="float32")
    extra = np.random.default_rng(seed + 100)
    kw = {}
    if name == "mog":
        kw["prior"] = MixtureOfGaussiansPrior(LATENT, K_MIX, rng=extra, dtype="float32")
    elif name == "vampprior":
        start = train[extra.choice(len(train), K_MIX, replace=False)].astype(np.float32)
        kw["prior"] = VampPrior(enc, K_MIX, init=start)
    elif name == "flow-prior":
        kw["prior"] = td.models.latent.FlowPrior(toy_realnvp(LATENT, n_couplings=4, hidden=(100,), rng=extra,
                                                             dtype="float32"))
    elif name == "planar":
        kw["posterior"] = PlanarPosterior(D, LATENT, n_layers=16, hidden=(64,), rng=extra, dtype="float32")
    elif name == "iaf":
        kw["posterior"] = IAFPosterior(D, LATENT, n_layers=2, hidden_sizes=(100,), context_dim=40, hidden=(100,),
                                       rng=extra, dtype="float32")
    elif name != "standard":
        raise ValueError(f"unknown variant {name!r}; the variants are {VARIANTS}")
    return VAE(enc, dec, rng=np.random.default_rng(seed + 1), **kw)


def test_indices(n_test, skip=0, seed=12345):
    """The fixed random subset of n_test test images (nested: n < m gives a subset), without the
    first ``skip`` of it (the subset of ``skip`` images, evaluated by an earlier run), sorted."""
    order = np.random.default_rng(seed).permutation(len(binarized_mnist()["test"]))
    return np.sort(order[skip:n_test])


def test_subset(n_test, skip=0):
    return binarized_mnist()["test"][test_indices(n_test, skip)].astype(np.float32)


def weights_path(folder, name):
    return os.path.join(folder, f"{name}.npz")


def train(name, epochs, n_train=50000):
    """Train variant ``name`` for ``epochs`` epochs; returns the model, the per-epoch mean loss
    (-ELBO, one sample per image) and the training wall time in seconds."""
    train_x = binarized_mnist()["train"][:n_train].astype(np.float32)
    model = build(name, train_x)
    opt = optim.Adam(list(model.parameters()), lr=LR)
    order_gen = np.random.default_rng(2024)
    curve, start = [], time.perf_counter()
    for epoch in range(epochs):
        order = order_gen.permutation(len(train_x))
        total = 0.0
        for b in range(0, len(train_x), BATCH):
            opt.zero_grad()
            loss = model.loss(td.tensor(train_x[order[b:b + BATCH]]))
            loss.backward()
            opt.step()
            total += float(loss.item())
        curve.append(total / (len(train_x) // BATCH))
        print(f"[{name}] epoch {epoch + 1}: -ELBO {curve[-1]:.2f} ({time.perf_counter() - start:.0f} s, "
              f"load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    return model, curve, time.perf_counter() - start


def save_weights(path, model, name, epochs, n_train, curve, train_s):
    """The trained parameters as a tinydgm checkpoint (written atomically), with what trained them."""
    checkpoint.save(path, model, epoch=epochs, history={"train_neg_elbo": curve},
                    config={"variant": name, "epochs": epochs, "n_train": n_train, "train_s": train_s,
                            "lr": LR, "batch": BATCH, "seed": 0})


def load_weights(path, name):
    """Variant ``name`` rebuilt and given the saved parameters; returns (model, config, curve)."""
    model = build(name, binarized_mnist()["train"])      # the VampPrior's starting pseudo-inputs are overwritten
    ckpt = checkpoint.load(path, model)
    if ckpt.config.get("variant") != name:
        raise ValueError(f"{path} holds variant {ckpt.config.get('variant')!r}, not {name!r}")
    return model, ckpt.config, [float(v) for v in ckpt.history["train_neg_elbo"]]


def importance_nll(model, test, k, name, block=500, seed=7):
    """importance_log_likelihood over ``test`` in blocks of ``block`` images (one generator: the
    same draws as one call), printing the time per image as it goes."""
    rng, start, parts = np.random.default_rng(seed), time.perf_counter(), []
    for b in range(0, len(test), block):
        parts.append(importance_log_likelihood(model, test[b:b + block], k=k, batch_size=100, chunk_size=100,
                                               rng=rng))
        done = min(b + block, len(test))
        print(f"[{name}] k = {k}: {done}/{len(test)} images, {(time.perf_counter() - start) / done:.3f} s per "
              f"image (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    log_px = np.concatenate([p.log_px.numpy() for p in parts])
    stderr = np.concatenate([p.stderr.numpy() for p in parts])
    return log_px, stderr, time.perf_counter() - start


def run_one(name, epochs, k, n_test, n_surgery, n_train=50000, weights=None, eval_only=False, skip=0):
    """Train variant ``name`` (saving its weights to ``weights``/<name>.npz) or, with ``eval_only``,
    reload them; then evaluate with k importance samples on ``n_test`` test images, less the first
    ``skip`` (evaluated by an earlier run: another generator then, and no ELBO surgery)."""
    path = weights_path(weights, name) if weights else None
    if eval_only:
        model, config, curve = load_weights(path, name)
        epochs, train_s = config["epochs"], config["train_s"]
    else:
        model, curve, train_s = train(name, epochs, n_train)
        if path:
            save_weights(path, model, name, epochs, n_train, curve, train_s)
    index = test_indices(n_test, skip)
    test = test_subset(n_test, skip)
    log_px, stderr, eval_s = importance_nll(model, test, k, name, seed=7 + skip)
    with td.no_grad():
        elbo = model.elbo(td.tensor(test), n_samples=10, rng=np.random.default_rng(8)).numpy()
    surgery = None
    if name in PRIORS and n_surgery and not skip:
        start = time.perf_counter()
        surgery = elbo_surgery_table([model], test_subset(n_surgery), names=[name], n_samples=20,
                                     rng=np.random.default_rng(9))[0]
        surgery["seconds"] = time.perf_counter() - start
    return {"name": name, "epochs": epochs, "k": k, "n_test": len(test), "index": index.tolist(), "train_s": train_s,
            "eval_s": eval_s,
            "curve": curve, "log_px": log_px.tolist(), "stderr": stderr.tolist(), "eval_only": eval_only,
            "test_elbo": float(elbo.mean()), "surgery": surgery, "repr": repr(model)}


# ----------------------------------------------------------------------------- driver and report

def run_all(cfg):
    os.makedirs(cfg.results, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1")
    queue = sorted(VARIANTS, key=["planar", "vampprior", "mog", "flow-prior", "iaf", "standard"].index)
    running = []
    while queue or running:
        while queue and len(running) < cfg.jobs:
            name = queue.pop(0)
            path = os.path.join(cfg.results, f"{name}.json")
            if os.path.exists(path):
                continue
            out = open(path + ".part", "w")
            trained = os.path.exists(weights_path(cfg.weights, name))       # not trained again
            cmd = [sys.executable, os.path.abspath(__file__), "--run", name, "--epochs", str(cfg.epochs), "--k",
                   str(cfg.k), "--n-test", str(cfg.n_test), "--n-surgery", str(cfg.n_surgery), "--n-train",
                   str(cfg.n_train), "--weights", cfg.weights, "--skip-n-test", str(cfg.skip_n_test)]
            cmd += ["--eval-only"] if cfg.eval_only or trained else []
            running.append((name, path, out, subprocess.Popen(cmd, stdout=out, env=env)))
        time.sleep(2)
        for item in list(running):
            name, path, out, proc = item
            if proc.poll() is not None:
                out.close()
                if proc.returncode != 0:
                    raise RuntimeError(f"run {name} failed (exit {proc.returncode})")
                os.replace(path + ".part", path)
                running.remove(item)


def load_results(folder, merge=(), keep=None):
    """{variant: result} from ``folder``; a variant's results in the ``merge`` folders (other test
    images, the same k) are appended to it, only their images in ``keep`` (a set of test indices)
    if given."""
    results = {}
    for name in VARIANTS:
        path = os.path.join(folder, f"{name}.json")
        if os.path.exists(path):
            with open(path) as f:
                results[name] = json.load(f)
            results[name].setdefault("index", test_indices(results[name]["n_test"]).tolist())
    for other in merge:
        for name, extra in load_results(other).items():
            if name in results:
                merge_result(results[name], extra, keep)
    return results


def merge_result(result, extra, keep=None):
    """Append ``extra``'s images (disjoint from ``result``'s, same k) to ``result``; with ``keep``,
    only those in it (the test ELBO, a mean over all of extra's images, then stays the base's)."""
    if extra["k"] != result["k"] or set(extra["index"]) & set(result["index"]):
        raise ValueError(f"{result['name']}: cannot merge k = {extra['k']} into k = {result['k']}, or "
                         "the two results share test images")
    if keep is not None and not set(extra["index"]) <= keep:
        chosen = [i for i, j in enumerate(extra["index"]) if j in keep]
        extra = dict(extra, **{key: [extra[key][i] for i in chosen] for key in ("log_px", "stderr", "index")},
                     eval_s=extra["eval_s"] * len(chosen) / len(extra["index"]), test_elbo=None)
    n, m = len(result["log_px"]), len(extra["log_px"])
    if extra["test_elbo"] is None or result.get("elbo_n", n) != n:
        result["elbo_n"] = result.get("elbo_n", n)                                # the base's images only
    else:
        result["test_elbo"] = (n * result["test_elbo"] + m * extra["test_elbo"]) / (n + m)   # mean over both
    for key in ("log_px", "stderr", "index"):
        result[key] = result[key] + extra[key]
    result["n_test"] = n + m
    result["eval_s"] += extra["eval_s"]


def report(results, cfg, elapsed, load0, load1):
    for r in results.values():                                   # every variant's images in one order
        order = np.argsort(r["index"])
        for key in ("log_px", "stderr", "index"):
            r[key] = [r[key][i] for i in order]
    base = np.array(results["standard"]["log_px"]) if "standard" in results else None
    rows = []
    for name, r in results.items():
        if base is not None and r["index"] != results["standard"]["index"]:
            raise ValueError(f"{name} was evaluated on other test images than the standard prior")
        lp, se = np.array(r["log_px"]), np.array(r["stderr"])
        n = len(lp)
        nll = -lp.mean()
        se_images = lp.std(ddof=1) / np.sqrt(n)
        se_mc = np.sqrt((se ** 2).sum()) / n
        if base is not None and name != "standard":
            d = base - lp                                  # NLL(variant) - NLL(standard), per image
            diff = f"{d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(n):.2f}"
        else:
            diff = "0"
        rows.append([name, f"{nll:.2f}", f"{se_images:.2f}", f"{se_mc:.3f}", diff, f"{-r['test_elbo']:.2f}",
                     f"{r['curve'][-1]:.2f}", f"{r['train_s']:.0f}", f"{r['eval_s']:.0f}", PUBLISHED[name]])
    header = ["variant", "test NLL (nats)", "s.e. over images", "s.e. Monte Carlo",
              "NLL − standard's, paired (± s.e.)", "test −ELBO", "last-epoch train −ELBO", "train s", "eval s",
              "paper test NLL"]
    table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                      + ["| " + " | ".join(row) + " |" for row in rows])
    order = sorted(results, key=lambda name: -np.mean(results[name]["log_px"]))
    surgery_rows = [r["surgery"] for r in results.values() if r.get("surgery")]
    r0 = next(iter(results.values()))
    command = (f"TINYDGM_DATA=<folder with binarized_mnist.npz> python benchmarks/quality_latent_variants.py --all "
               + ("--eval-only --weights <folder> " if cfg.eval_only else f"--epochs {cfg.epochs} ")
               + f"--k {cfg.k} --n-test {cfg.n_test} --n-surgery {cfg.n_surgery} "
               + (f"--n-train {cfg.n_train} " if cfg.n_train != 50000 else "") +
               f"--results <folder> --out <file>")
    lines = [f"Command: `{command}` ({elapsed / 60:.0f} min wall, {cfg.jobs} runs at a time with one thread each; "
             f"load average {load0:.1f} at the start, {load1:.1f} at the end).", "",
             table, "",
             f"Test NLL: -mean log p^_k(x) with k = {r0['k']} on {r0['n_test']} test images (a fixed random "
             f"subset, the same for every variant), after {r0['epochs']} epochs each. Ranking at this budget "
             f"(best first): {' < '.join(order)}.", ""]
    if surgery_rows:
        n_s = surgery_rows[0]["log_n"]
        lines += [f"ELBO surgery (`elbo_surgery_table`, 20 draws per image, on {int(round(np.exp(n_s)))} test "
                  "images (a fixed random subset holding the one above); nats, ± Monte Carlo standard error):", "",
                  escape_pipes(format_elbo_surgery_table(surgery_rows))]
    return "\n".join(lines)


def escape_pipes(table):
    """The library's table with the pipes inside cells (p(x|z), KL(q || p)) escaped for Markdown."""
    return table.replace("(x|z)", "(x\\|z)").replace("(z|x)", "(z\\|x)").replace(" || ", " \\|\\| ")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", choices=VARIANTS, help="train and evaluate one variant (JSON on stdout)")
    parser.add_argument("--all", action="store_true",
                        help="run every variant (skips those with results; only evaluates those with weights)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--k", type=int, default=1000, help="importance samples per test image")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--n-surgery", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=50000, help="training images (fewer: a smoke run)")
    parser.add_argument("--results", default="latent_variants_runs",
                        help="folder of the per-variant JSON results (and, by default, the weights)")
    parser.add_argument("--weights", help="folder of the per-variant weights <name>.npz (default: --results)")
    parser.add_argument("--eval-only", action="store_true",
                        help="reload the saved weights instead of training, then evaluate with --k, --n-test")
    parser.add_argument("--out", help="write the markdown to this file")
    parser.add_argument("--skip-n-test", type=int, default=0,
                        help="leave out the first N images of the --n-test subset (evaluated by an earlier run)")
    parser.add_argument("--merge", action="append", default=[],
                        help="a results folder of the same k on other images, merged into the report (only "
                             "the images of the --n-test subset)")
    cfg = parser.parse_args(argv)
    cfg.weights = cfg.weights or cfg.results
    if cfg.run:
        print(json.dumps(run_one(cfg.run, cfg.epochs, cfg.k, cfg.n_test, cfg.n_surgery, cfg.n_train,
                                 weights=cfg.weights, eval_only=cfg.eval_only, skip=cfg.skip_n_test)))
        return
    start, load0 = time.perf_counter(), os.getloadavg()[0]
    if cfg.all:
        run_all(cfg)
    keep = set(test_indices(cfg.n_test).tolist()) if cfg.merge else None
    md = report(load_results(cfg.results, cfg.merge, keep), cfg, time.perf_counter() - start, load0, os.getloadavg()[0])
    print(md)
    if cfg.out:
        with open(cfg.out, "w") as f:
            f.write(md + "\n")


if __name__ == "__main__":
    main()
