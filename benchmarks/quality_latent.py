"""Quality of the VAE and the IWAE on MNIST (issue 13, "Quality"), next to Burda et al. 2016 Table 1
and to PyTorch twins trained on the same budget.

Protocol (Burda, Grosse & Salakhutdinov 2016, sec. 5, one stochastic layer): MNIST's 60,000 training
images, dynamically binarized (a fresh Bernoulli draw of every image each time it is used); encoder
784 -> 200 -> 200 -> (50 mu, 50 log_var) and decoder 50 -> 200 -> 200 -> 784 Bernoulli logits, tanh
hidden units, Glorot-uniform initial weights and zero biases; Adam (beta1 0.9, beta2 0.999, eps 1e-4),
batch 20, learning rate 1e-3 * 10^(-i/7) for 3^i epochs (i = 0, 1, ...: 1 epoch at 1e-3, 3 at 7.2e-4,
9 at 5.2e-4, ...). VAE: k = 1 sample per image, closed-form KL; IWAE: the bound F_5 (kind "iwae") or
F_50 (kind "iwae50"). Evaluation:
log p(x) by importance sampling with k = 5000 (``tinydgm.evaluate.importance_log_likelihood``).
Published test NLLs (Table 1, MNIST, one stochastic layer): VAE k=1 86.76, IWAE k=5 85.54, k=50 84.78.

The paper trains for 3,280 epochs; here every run gets the same short budget (``--epochs``). The
PyTorch twin of each model starts from the same initial weights and sees the same data order, the same
binarization draws and the same noise eps (all drawn from one NumPy generator per run, in the same
sequence on both sides), with the same hyperparameters; its final weights are copied into a tinydgm
model and evaluated by the same estimator with the same evaluation noise, so the test NLLs differ only
through training. The test images are a fixed random subset (``--n-test``) of the 10,000, binarized
once with a fixed seed (the same draw for every model).

    TINYDGM_DATA=<folder with mnist.npz> python benchmarks/quality_latent.py --all --epochs 5 \
        --n-test 1000 --results runs/ --out section.md

runs, two at a time (one thread each): the tinydgm VAE and its twin, the tinydgm IWAE k=5 and its twin,
the tinydgm VAE again with another seed, the tinydgm IWAE k=50 and its twin (``--epochs-iwae50``: fewer
epochs for the k=50 pair when its steps, ten times the decoder work of k=5, do not fit); then writes
benchmarks/figures/latent_quality_curves.png and the markdown. ``--run vae tinydgm 0`` runs a single one (JSON on stdout).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tinydgm as td  # noqa: E402
from tinydgm import optim  # noqa: E402
from tinydgm.data import transforms  # noqa: E402
from tinydgm.evaluate import importance_log_likelihood  # noqa: E402
from tinydgm.models.latent import IWAE, MLPDecoder, MLPEncoder, VAE  # noqa: E402

D, HIDDEN, LATENT, BATCH = 784, (200, 200), 50, 20
K_TRAIN = {"vae": 1, "iwae": 5, "iwae50": 50}      # samples per image in the training bound
ADAM = dict(betas=(0.9, 0.999), eps=1e-4)
PUBLISHED = {"vae": 86.76, "iwae": 85.54, "iwae50": 84.78}          # Burda et al. 2016 Table 1, test NLL, nats
FIGURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures", "latent_quality_curves.png")


def learning_rate(epoch):
    """Burda et al.'s schedule: 1e-3 * 10^(-i/7) during the 3^i epochs of stage i (epoch from 0)."""
    i, end = 0, 1
    while epoch >= end:
        i += 1
        end += 3 ** i
    return 1e-3 * 10 ** (-i / 7)


def build_model(kind, seed):
    """The tinydgm model with Glorot-uniform weights (Glorot & Bengio 2010) and zero biases."""
    gen = np.random.default_rng(seed)
    enc = MLPEncoder(D, LATENT, hidden=HIDDEN, activation="tanh", rng=gen, dtype="float32")
    dec = MLPDecoder(LATENT, D, hidden=HIDDEN, activation="tanh", likelihood="bernoulli", rng=gen, dtype="float32")
    for lin in linears(enc) + linears(dec):
        n_in, n_out = lin.weight.shape
        limit = math.sqrt(6.0 / (n_in + n_out))
        lin.weight.data[...] = gen.uniform(-limit, limit, (n_in, n_out)).astype(np.float32)
        lin.bias.data[...] = 0
    if kind != "vae":
        return IWAE(enc, dec, k=K_TRAIN[kind])
    return VAE(enc, dec)


def linears(module):
    return [m for m in module.modules() if type(m).__name__ == "Linear"]


def load_data(n_test, seed=12345):
    """60,000 training images as probabilities in [0, 1] (float32) and a fixed binarized test subset."""
    mnist = td.data.load_mnist(download=False, progress=False)
    train = (mnist["x_train"].reshape(-1, D) / 255.0).astype(np.float32)
    gen = np.random.default_rng(seed)
    idx = np.sort(gen.choice(10000, size=n_test, replace=False)) if n_test < 10000 else np.arange(10000)
    test = transforms.dynamic_binarize(mnist["x_test"].reshape(-1, D)[idx], rng=gen, dtype=np.float32)
    return train, test


def stream(train, kind, epoch, gen):
    """One epoch of (binary batch, eps) drawn in a fixed order from ``gen`` (the same on both sides)."""
    k = K_TRAIN[kind]
    order = gen.permutation(len(train))
    for start in range(0, len(train), BATCH):
        p = train[order[start:start + BATCH]]
        x = (gen.random(p.shape, dtype=np.float32) < p).astype(np.float32)          # dynamic binarization
        eps = gen.standard_normal((k, len(p), LATENT), dtype=np.float32)
        yield x, eps


# ----------------------------------------------------------------------------- the two trainers

class TinydgmTrainer:
    def __init__(self, model):
        self.model = model
        self.opt = optim.Adam(list(model.parameters()), lr=1e-3, **ADAM)

    def set_lr(self, lr):
        self.opt.lr = lr

    def step(self, x, eps):
        self.opt.zero_grad()
        objective = self.model.objective(td.tensor(x), eps=td.tensor(eps)).mean()
        (-objective).backward()
        self.opt.step()
        return float(objective.item())

    def tinydgm_model(self):
        return self.model


class TorchTrainer:
    """The PyTorch twin: the same MLPs (torch.nn.Linear, tanh), the same objective, torch.optim.Adam."""

    def __init__(self, model):
        import torch
        from bench_latent import TorchVAE
        from common import torch_mlp
        self.torch, self.model = torch, model

        def mlp(net):
            return torch_mlp(net, torch.float32, activation="tanh")

        twin = TorchVAE.__new__(TorchVAE)
        torch.nn.Module.__init__(twin)
        twin.encoder, twin.decoder = mlp(model.encoder.net), mlp(model.decoder.net)
        twin.latent_dim, twin.k, twin.dtype = LATENT, getattr(model, "k", None), torch.float32
        self.twin = twin
        self.opt = torch.optim.Adam(twin.parameters(), lr=1e-3, betas=ADAM["betas"], eps=ADAM["eps"])

    def set_lr(self, lr):
        for group in self.opt.param_groups:
            group["lr"] = lr

    def step(self, x, eps):
        self.opt.zero_grad(set_to_none=True)
        loss = self.twin.loss(self.torch.from_numpy(x), self.torch.from_numpy(eps))
        loss.backward()
        self.opt.step()
        return -float(loss.item())

    def tinydgm_model(self):
        """The tinydgm model holding the twin's current weights (for the shared evaluation)."""
        for lin, layer in zip(linears(self.model.encoder) + linears(self.model.decoder),
                              [m for m in list(self.twin.encoder) + list(self.twin.decoder)
                               if isinstance(m, self.torch.nn.Linear)]):
            lin.weight.data[...] = layer.weight.detach().numpy().T
            lin.bias.data[...] = layer.bias.detach().numpy()
        return self.model


def test_elbo(model, test, seed):
    """The test ELBO (one sample per image, closed-form KL for a VAE; the IWAE's elbo uses the same
    closed form since its prior is N(0, I)), nats per image."""
    gen = np.random.default_rng(seed)
    with td.no_grad():
        return float(np.mean(np.concatenate([model.elbo(test[i:i + 500], rng=gen).numpy()
                                             for i in range(0, len(test), 500)])))


def run_one(kind, side, seed, epochs, n_test, k, n_train=60000):
    import torch
    torch.set_num_threads(1)
    train, test = load_data(n_test)
    train = train[:n_train]
    model = build_model(kind, seed)
    trainer = TinydgmTrainer(model) if side == "tinydgm" else TorchTrainer(model)
    gen = np.random.default_rng(1000 + seed)
    curve, start = [], time.perf_counter()
    for epoch in range(epochs):
        lr = learning_rate(epoch)
        trainer.set_lr(lr)
        t0, total, n = time.perf_counter(), 0.0, 0
        for x, eps in stream(train, kind, epoch, gen):
            total += trainer.step(x, eps) * len(x)
            n += len(x)
        seconds = time.perf_counter() - t0
        elbo = test_elbo(trainer.tinydgm_model(), test, seed=7)
        curve.append({"epoch": epoch + 1, "lr": lr, "train_bound": total / n, "test_elbo": elbo, "seconds": seconds})
        print(json.dumps({"progress": [kind, side, seed], **curve[-1]}), file=sys.stderr, flush=True)
    train_seconds = time.perf_counter() - start
    t0 = time.perf_counter()
    est = importance_log_likelihood(trainer.tinydgm_model(), test, k=k, batch_size=100, chunk_size=100,
                                    rng=np.random.default_rng(99))
    log_px = est.log_px.numpy()
    return {"kind": kind, "side": side, "seed": seed, "epochs": epochs, "n_test": len(test), "k": k,
            "nll": -est.mean, "nll_mc_stderr": est.mean_stderr,
            "nll_subset_stderr": float(log_px.std(ddof=1) / math.sqrt(len(log_px))),
            "curve": curve, "train_seconds": train_seconds, "eval_seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- driver and report

RUNS = [("vae", "tinydgm", 0), ("vae", "PyTorch", 0), ("iwae", "tinydgm", 0), ("iwae", "PyTorch", 0),
        ("vae", "tinydgm", 1), ("iwae50", "tinydgm", 0), ("iwae50", "PyTorch", 0)]


def epochs_for(kind, cfg):
    """The epochs of a run: ``--epochs``, or ``--epochs-iwae50`` for the k=50 pair when given."""
    return cfg.epochs_iwae50 if kind == "iwae50" and cfg.epochs_iwae50 else cfg.epochs


def run_all(cfg):
    """The runs of RUNS as subprocesses, ``cfg.jobs`` at a time (OMP/MKL at one thread each); each
    writes its JSON into ``cfg.results`` (a folder), and a run whose file is already there is skipped."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1")
    os.makedirs(cfg.results, exist_ok=True)
    pending = [run for run in RUNS if not os.path.exists(result_path(cfg.results, *run))]
    running = []
    while pending or running:
        while pending and len(running) < cfg.jobs:
            kind, side, seed = pending.pop(0)
            cmd = [sys.executable, os.path.abspath(__file__), "--run", kind, side, str(seed), "--epochs",
                   str(epochs_for(kind, cfg)), "--n-test", str(cfg.n_test), "--k", str(cfg.k),
                   "--n-train", str(cfg.n_train),
                   "--results", cfg.results]
            running.append(subprocess.Popen(cmd, env=env))
        time.sleep(1)
        for proc in [p for p in running if p.poll() is not None]:
            running.remove(proc)
            if proc.returncode:
                raise RuntimeError(f"run {proc.args} failed with code {proc.returncode}")
    return load_results(cfg.results)


def result_path(folder, kind, side, seed):
    return os.path.join(folder, f"{kind}_{side}_{seed}.json")


def load_results(folder):
    """The JSON of every run of RUNS found in ``folder``, in RUNS order."""
    results = []
    for run in RUNS:
        path = result_path(folder, *run)
        if os.path.exists(path):
            with open(path) as f:
                results.append(json.load(f))
    return results


def figure(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    styles = {"tinydgm": "-", "PyTorch": "--"}
    colors = {("vae", 0): "C0", ("iwae", 0): "C1", ("vae", 1): "C2", ("iwae50", 0): "C4"}
    for r in results:
        label = f"{model_name(r['kind'])} {r['side']} (seed {r['seed']})"
        epochs = [c["epoch"] for c in r["curve"]]
        color = colors.get((r["kind"], r["seed"]), "C3")
        axes[0].plot(epochs, [-c["train_bound"] for c in r["curve"]], styles[r["side"]], color=color, label=label,
                     marker="o", ms=3)
        axes[1].plot(epochs, [-c["test_elbo"] for c in r["curve"]], styles[r["side"]], color=color, label=label,
                     marker="o", ms=3)
        axes[1].plot([epochs[-1] + (0.1 if r["side"] == "PyTorch" else 0)], [r["nll"]], "x", color=color, ms=7)
    axes[0].set_title("training objective (-bound, nats; VAE: -ELBO, IWAE: -F_k)")
    axes[1].set_title(f"test -ELBO per epoch; x: final test NLL, k = 5000 (nats, {results[0]['n_test']} test images)",
                      fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    for i, (name, value) in enumerate(PUBLISHED.items()):              # labels side by side: the lines are close
        axes[1].axhline(value, color="gray", lw=0.8, ls=":")
        axes[1].text(1 + 1.4 * i, value, f" published {model_name(name)}: {value}", va="bottom", fontsize=7,
                     color="gray")
    axes[1].set_ylim(bottom=min(PUBLISHED.values()) - 3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def model_name(kind):
    return f"{'VAE' if kind == 'vae' else 'IWAE'} k={K_TRAIN[kind]}"


def report(results, cfg, elapsed):
    rows = []
    for r in results:
        c = r["curve"][-1]
        rows.append(f"| {model_name(r['kind'])} | {r['side']} | {r['seed']} | "
                    f"{PUBLISHED[r['kind']]} | **{r['nll']:.2f}** ± {r['nll_mc_stderr']:.2f} (subset ± "
                    f"{r['nll_subset_stderr']:.2f}) | {-c['test_elbo']:.2f} | {r['epochs']} | "
                    f"{r['train_seconds']:.0f} s + {r['eval_seconds']:.0f} s | "
                    + ", ".join(f"{-e['train_bound']:.1f}" for e in r["curve"]) + " |")
    by = {(r["kind"], r["side"], r["seed"]): r for r in results}
    notes = []
    for kind in ("vae", "iwae", "iwae50"):
        a, b = by.get((kind, "tinydgm", 0)), by.get((kind, "PyTorch", 0))
        if a and b:
            notes.append(f"{model_name(kind)}: tinydgm - PyTorch = {a['nll'] - b['nll']:+.2f} nats on the same "
                         "test images and evaluation noise")
    if ("vae", "tinydgm", 1) in by:
        notes.append(f"tinydgm VAE seed 0 - seed 1 = {by[('vae', 'tinydgm', 0)]['nll'] - by[('vae', 'tinydgm', 1)]['nll']:+.2f} "
                     "nats (the run-to-run spread)")
    command = (f"TINYDGM_DATA=<folder with mnist.npz> python benchmarks/quality_latent.py --all --epochs {cfg.epochs} "
               f"--n-test {cfg.n_test} --k {cfg.k}"
               + (f" --epochs-iwae50 {cfg.epochs_iwae50}" if cfg.epochs_iwae50 else "")
               + (f" --out {cfg.out}" if cfg.out else ""))
    return "\n".join([
        "### Quality: VAE and IWAE on dynamically binarized MNIST (Burda et al. 2016, Table 1 protocol)", "",
        f"Command: `{command}` ({elapsed:.0f} s wall, runs two at a time at one thread each; load average "
        f"{os.getloadavg()[0]:.2f} at the end).", "",
        "| model | side | seed | published test NLL | ours: test NLL, k = 5000 (± Monte Carlo s.e.; subset s.e.) | "
        "test -ELBO | epochs | training + evaluation time | training -bound per epoch |",
        "|---|---|---|---|---|---|---|---|---|", *rows, "",
        "; ".join(notes) + ".", "",
        "![learning curves](benchmarks/figures/latent_quality_curves.png)"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", nargs=3, metavar=("KIND", "SIDE", "SEED"),
                        help="one run: vae|iwae|iwae50 tinydgm|PyTorch seed")
    parser.add_argument("--all", action="store_true", help="every run of RUNS, then the figure and the markdown")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--epochs-iwae50", type=int, default=None,
                        help="epochs of the k=50 pair (default: --epochs)")
    parser.add_argument("--n-test", type=int, default=1000, help="test images for the evaluation (a fixed random subset)")
    parser.add_argument("--k", type=int, default=5000, help="importance samples per test image")
    parser.add_argument("--n-train", type=int, default=60000, help="training images (a smoke run: fewer)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--results", default="quality_latent_runs",
                        help="folder of the runs' JSON files (written by the runs; read to redo the report)")
    parser.add_argument("--out", help="write the markdown section to this file")
    cfg = parser.parse_args(argv)
    if cfg.run:
        kind, side, seed = cfg.run
        result = run_one(kind, side, int(seed), cfg.epochs, cfg.n_test, cfg.k, cfg.n_train)
        if cfg.results:
            with open(result_path(cfg.results, kind, side, int(seed)), "w") as f:
                json.dump(result, f)
        print(json.dumps(result))
        return
    start = time.perf_counter()
    results = run_all(cfg) if cfg.all else load_results(cfg.results)
    figure(results, FIGURE)
    md = report(results, cfg, time.perf_counter() - start)
    print(md)
    if cfg.out:
        with open(cfg.out, "w") as f:
            f.write(md)


if __name__ == "__main__":
    main()
