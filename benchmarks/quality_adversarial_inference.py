"""Quality of BiGAN features and InfoGAN codes on MNIST (issue 16), each next to a PyTorch twin at the same budget.

    TINYDGM_DATA=<folder with mnist.npz> python benchmarks/quality_adversarial_inference.py [--epochs-bigan E]
        [--epochs-infogan E] [--out SECTION.md]
    ... --run bigan tinydgm      # one training run only (its results go to --work), e.g. to run in parallel
    ... --report                 # evaluation, figures and the markdown from the runs in --work

The networks and optimizer are those of ``bench_adversarial_inference.py`` (MLPs, float32, Adam(2e-4, (0.5,
0.999)), batches of 64 of the 60,000 MNIST training images scaled to [-1, 1], no labels):

    BiGAN    encoder 784 -> 512 -> 512 -> 50, generator 50 -> 512 -> 512 -> 784 (tanh), D(x, z) 834 -> 512 -> 512 -> 1;
             E and G on one Adam at lr 1e-3
    InfoGAN  62 noise + 10-way categorical + 2 U(-1, 1) codes; generator 74 -> 256 -> 512 -> 784 (tanh, Adam 1e-3);
             D/Q body 784 -> 512 -> 256, heads 1 and 12; lambda = 1

The PyTorch twin of each run starts from the same weights (copied), sees the same data order and the same
noise (replayed from the tinydgm model's seeded generator), so the two runs differ only by floating-point
rounding, which the adversarial game amplifies over thousands of steps.

BiGAN, the lecture's feature use (intro lecture part I, "BiGAN: feature transfer"): the encoder's output
E(x) (50 numbers) of the training images with their labels (which the BiGAN never saw) trains a linear
classifier (multinomial logistic regression, scikit-learn) and a 1-nearest-neighbour classifier; both are
scored on the 10,000 test images, next to the same classifiers on the raw pixels (784 numbers) and on the
output of the same encoder at its random initialisation. Donahue et al. (2017, Table 1) report 97.39% 1-NN
accuracy on the BiGAN's features (raw pixels: about 96.9%).

InfoGAN: Q's most probable category for each test image, matched to the digit classes by the best one-to-one
assignment (Hungarian algorithm, scipy.optimize.linear_sum_assignment), and the accuracy of that matching;
Chen et al. (2016) report about 5% error. Figures: benchmarks/figures/bigan_reconstructions.png (test images,
G(E(x)) of both sides) and infogan_codes.png (each code varied with the rest fixed, tinydgm side).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from bench_adversarial_inference import BATCH, BUILDERS, check_twin  # noqa: E402

import tinydgm as td  # noqa: E402

MODELS = ("bigan", "infogan")
SIDES = ("tinydgm", "PyTorch")
TITLES = {"bigan": "BiGAN", "infogan": "InfoGAN"}
FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")


# ----------------------------------------------------------------------------- data

def load_data():
    from tinydgm.data import load_mnist
    mnist = load_mnist(download=False, progress=False)
    scale = lambda x: (x.reshape(-1, 784).astype(np.float32) / 127.5 - 1).astype(np.float32)   # noqa: E731
    return scale(mnist["x_train"]), mnist["y_train"].astype(int), scale(mnist["x_test"]), mnist["y_test"].astype(int)


def in_batches(fn, x, size=2000):
    return np.concatenate([fn(x[i:i + size]) for i in range(0, len(x), size)])


# ----------------------------------------------------------------------------- what each side gives back

class Side:
    """The few calls the evaluation needs, on either side: train_step, encode (BiGAN), reconstruct (BiGAN),
    categories (InfoGAN: Q's argmax)."""

    def __init__(self, name, side, seed, lam_continuous=None):
        build, twin_class = BUILDERS[name]
        self.name, self.side = name, side
        self.model = build(seed) if lam_continuous is None else build(seed, lam_continuous=lam_continuous)
        if lam_continuous is not None and side == "PyTorch":
            raise ValueError("the PyTorch twin weighs every code alike: --lam-continuous is for the tinydgm side")
        self.twin = twin_class(self.model, seed + 1) if side == "PyTorch" else None

    def train_step(self, x):
        return self.twin.train_step(torch.tensor(x)) if self.twin else self.model.train_step(td.tensor(x))

    def encode(self, x):
        if self.twin:
            with torch.no_grad():
                return self.twin.encode(torch.tensor(x)).numpy()
        return self.model.encode(x).numpy()

    def reconstruct(self, x):
        if self.twin:
            with torch.no_grad():
                return self.twin.generate(self.twin.encode(torch.tensor(x))).numpy()
        return self.model.reconstruct(x).numpy()

    def categories(self, x):
        if self.twin:
            return self.twin.infer_categories(torch.tensor(x))
        return np.asarray(td.backend.to_numpy(self.model.infer_codes(x)[0]))


def matched_accuracy(predicted, labels, k=10):
    """Accuracy of the best one-to-one matching of codes to classes (Hungarian algorithm), and the matching."""
    from scipy.optimize import linear_sum_assignment
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (predicted, labels), 1)
    rows, cols = linear_sum_assignment(-counts)
    return counts[rows, cols].sum() / len(labels), dict(zip(rows.tolist(), cols.tolist()))


# ----------------------------------------------------------------------------- one run

def train_run(name, side, epochs, seed, work, max_rounds=None, lam_continuous=None):
    x_train, _, x_test, y_test = load_data()
    if side == "PyTorch":
        rows = check_twin(name, "float32", 2e-3, seed=seed)
        print(f"{name}: the twin's first steps agree: {rows[0][0]} / {rows[0][1]}", flush=True)
    runner = Side(name, side, seed, lam_continuous)
    rounds_per_epoch = len(x_train) // BATCH if max_rounds is None else max_rounds
    data_rng = np.random.default_rng(seed + 2)
    history, per_epoch = [], []
    train_seconds = cpu_seconds = 0.0
    for epoch in range(epochs):
        order = data_rng.permutation(len(x_train))
        for r in range(rounds_per_epoch):
            x = x_train[order[r * BATCH:(r + 1) * BATCH]]
            t0, c0 = time.perf_counter(), time.process_time()
            history.append(runner.train_step(x))
            train_seconds += time.perf_counter() - t0
            cpu_seconds += time.process_time() - c0
        if name == "infogan":
            score = matched_accuracy(in_batches(runner.categories, x_test), y_test)[0]
        else:
            score = float(((x_test[:1000] - runner.reconstruct(x_test[:1000])) ** 2).sum(1).mean())
        per_epoch.append(score)
        print(f"{name} {side}: epoch {epoch + 1}/{epochs}, {'test accuracy' if name == 'infogan' else 'test |x - G(E(x))|^2'}"
              f" {score:.4f}, {train_seconds:.0f} s, last {history[-1]}", flush=True)
    out = {"per_epoch": np.array(per_epoch)}
    if name == "bigan":
        out["features_train"] = in_batches(runner.encode, x_train)
        out["features_test"] = in_batches(runner.encode, x_test)
        out["reconstructions"] = runner.reconstruct(x_test[:16])
    else:
        out["categories_test"] = in_batches(runner.categories, x_test)
        if runner.twin is None:
            out["sweeps"] = code_sweeps(runner.model)
    base = os.path.join(work, f"{name}_{side}" + (f"_lamc{lam_continuous:g}" if lam_continuous is not None else ""))
    np.savez(base + ".npz", **out, **{key: np.array([h[key] for h in history]) for key in history[0]})
    with open(base + ".json", "w") as f:
        json.dump({"model": name, "side": side, "lam_continuous": lam_continuous, "epochs": epochs, "rounds": epochs * rounds_per_epoch, "seed": seed,
                   "train_seconds": train_seconds, "cpu_seconds": cpu_seconds, "loadavg_end": os.getloadavg()}, f)
    print(f"{name} {side}: done, {train_seconds:.0f} s wall, {cpu_seconds:.0f} s CPU", flush=True)


def code_sweeps(model, n_values=8, seed=7):
    """Images (3, 10, n_values, 784): the categorical code (row k: category k over 8 noise vectors), then each
    continuous code from -2 to 2 (beyond the training range [-1, 1], as Chen et al. show) for every category,
    the noise and the other code fixed."""
    z = np.random.default_rng(seed).standard_normal((1, model.noise_dim)).astype(np.float32)
    zs = np.random.default_rng(seed + 1).standard_normal((n_values, model.noise_dim)).astype(np.float32)
    values = np.linspace(-2, 2, n_values)
    grids = np.zeros((1 + model.n_continuous, model.n_categories, n_values, 784), np.float32)
    for k in range(model.n_categories):
        cats = np.full(n_values, k)
        grids[0, k] = model.generate_with_codes(zs, cats, np.zeros((n_values, model.n_continuous))).numpy()
        for j in range(model.n_continuous):
            cont = np.zeros((n_values, model.n_continuous))
            cont[:, j] = values
            grids[1 + j, k] = model.generate_with_codes(np.repeat(z, n_values, 0), cats, cont).numpy()
    return grids


# ----------------------------------------------------------------------------- evaluation and report

def probe(features_train, y_train, features_test, y_test):
    """(linear classifier accuracy, 1-NN accuracy) on the test set, trained on the training features' labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler
    scaler = StandardScaler().fit(features_train)
    linear = LogisticRegression(max_iter=500).fit(scaler.transform(features_train), y_train)
    linear_acc = linear.score(scaler.transform(features_test), y_test)
    nearest = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(features_train, y_train)
    return linear_acc, nearest.score(features_test, y_test)


def grid_image(images, rows, cols):
    x = np.clip((np.asarray(images).reshape(rows, cols, 28, 28) + 1) / 2, 0, 1)
    grid = np.ones((rows * 29 + 1, cols * 29 + 1))
    for i in range(rows):
        for j in range(cols):
            grid[1 + 29 * i:29 * i + 29, 1 + 29 * j:29 * j + 29] = x[i, j]
    return grid


def figures(runs, x_test):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(FIGURES, exist_ok=True)
    if ("bigan", "tinydgm") in runs:
        rows = [x_test[:16]] + [runs[("bigan", s)]["reconstructions"] for s in SIDES if ("bigan", s) in runs]
        fig, ax = plt.subplots(figsize=(9, 0.7 * len(rows) + 0.6))
        ax.imshow(grid_image(np.concatenate(rows), len(rows), 16), cmap="gray", vmin=0, vmax=1)
        ax.set_title("BiGAN on MNIST: test images x (top), G(E(x)) of tinydgm and of the PyTorch twin", fontsize=9)
        ax.axis("off")
        fig.tight_layout()
        fig.savefig(os.path.join(FIGURES, "bigan_reconstructions.png"), dpi=100)
        plt.close(fig)
    if ("infogan", "tinydgm") in runs:
        sweeps = runs[("infogan", "tinydgm")]["sweeps"]
        titles = ["categorical code (row k: category k, 8 noise vectors)"] + \
            [f"continuous code {j + 1} from -2 to 2 (rows: categories)" for j in range(sweeps.shape[0] - 1)]
        fig, axes = plt.subplots(1, sweeps.shape[0], figsize=(5 * sweeps.shape[0], 6))
        for ax, grid, title in zip(axes, sweeps, titles):
            ax.imshow(grid_image(grid.reshape(-1, 784), grid.shape[0], grid.shape[1]), cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.suptitle("InfoGAN on MNIST (tinydgm): each code varied with the others and the noise fixed")
        fig.tight_layout()
        fig.savefig(os.path.join(FIGURES, "infogan_codes.png"), dpi=100)
        plt.close(fig)


def load_runs(work):
    return common.load_runs(work, MODELS, SIDES)


def baselines(work, seed, x_train, y_train, x_test, y_test):
    """The classifiers on raw pixels and on the untrained encoder's E(x), computed once per --work folder
    (baselines.json): ((linear, 1-NN) on pixels, (linear, 1-NN) on the random encoder)."""
    path = os.path.join(work, f"baselines_seed{seed}.json")
    if not os.path.exists(path):
        pixels = probe(x_train, y_train, x_test, y_test)
        random_side = Side("bigan", "tinydgm", seed)                     # the encoder before any training
        random_features = probe(in_batches(random_side.encode, x_train), y_train,
                                in_batches(random_side.encode, x_test), y_test)
        with open(path, "w") as f:
            json.dump({"pixels": pixels, "random_encoder": random_features}, f)
    with open(path) as f:
        saved = json.load(f)
    return saved["pixels"], saved["random_encoder"]


def make_report(work, seed):
    x_train, y_train, x_test, y_test = load_data()
    runs = load_runs(work)
    figures(runs, x_test)
    lines = []
    # BiGAN features
    rows = []
    pixels, random_features = baselines(work, seed, x_train, y_train, x_test, y_test)
    rows.append(["raw pixels (784)", "—", "—", f"{pixels[0]:.2%}", f"{pixels[1]:.2%}"])
    rows.append(["random encoder E(x) (50), untrained", "—", "—", f"{random_features[0]:.2%}",
                 f"{random_features[1]:.2%}"])
    for side in SIDES:
        run = runs.get(("bigan", side))
        if run is None:
            rows.append([f"BiGAN encoder E(x) (50), {side}", "not run", "—", "—", "—"])
            continue
        meta = run["meta"]
        acc = probe(run["features_train"], y_train, run["features_test"], y_test)
        rows.append([f"BiGAN encoder E(x) (50), {side}", f"{meta['epochs']} epochs ({meta['rounds']:,} rounds)",
                     f"{meta['train_seconds']:.0f} s", f"{acc[0]:.2%}", f"{acc[1]:.2%}"])
        print(rows[-1], flush=True)
    lines += ["BiGAN features (labels of the 60,000 training images train the classifiers; 10,000 test images):", "",
              common.markdown_table(["features", "BiGAN budget", "training time", "linear classifier accuracy",
                                     "1-NN accuracy"], rows), ""]
    for side in SIDES:
        if ("bigan", side) in runs:
            curve = runs[("bigan", side)]["per_epoch"]
            lines.append(f"- BiGAN {side}: mean ||x - G(E(x))||^2 of 1,000 test images after each epoch: "
                         + ", ".join(f"{v:.1f}" for v in curve))
    lines.append("")
    # InfoGAN codes
    rows = []
    for side in SIDES:
        run = runs.get(("infogan", side))
        if run is None:
            rows.append([side, "not run", "—", "—", "—"])
            continue
        meta = run["meta"]
        acc, matching = matched_accuracy(run["categories_test"], y_test)
        used = len(np.unique(run["categories_test"]))
        rows.append([side, f"{meta['epochs']} epochs ({meta['rounds']:,} rounds)", f"{meta['train_seconds']:.0f} s",
                     f"{acc:.2%} (error {1 - acc:.2%})", f"{used}"])
        print(rows[-1], flush=True)
    for path in sorted(glob.glob(os.path.join(work, "infogan_tinydgm_lamc*.json"))):       # --lam-continuous runs
        with open(path) as f:
            meta = json.load(f)
        run = np.load(path[:-5] + ".npz")
        acc = matched_accuracy(run["categories_test"], y_test)[0]
        rows.append([f"tinydgm, lambda_cont = {meta['lam_continuous']:g}", f"{meta['epochs']} epochs ({meta['rounds']:,} "
                     f"rounds)", f"{meta['train_seconds']:.0f} s", f"{acc:.2%} (error {1 - acc:.2%})",
                     f"{len(np.unique(run['categories_test']))}"])
        print(rows[-1], "after each epoch:", ", ".join(f"{v:.1%}" for v in run["per_epoch"]), flush=True)
    lines += ["InfoGAN: the categorical code as an unsupervised classifier of the 10,000 test images (best one-to-one "
              "matching of the 10 categories to the 10 digits):", "",
              common.markdown_table(["side", "budget", "training time", "matched accuracy", "categories in use"], rows),
              ""]
    for side in SIDES:
        if ("infogan", side) in runs:
            curve = runs[("infogan", side)]["per_epoch"]
            lines.append(f"- InfoGAN {side}: matched test accuracy after each epoch: "
                         + ", ".join(f"{v:.1%}" for v in curve))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs-bigan", type=int, default=5, help="BiGAN epochs (default 5)")
    parser.add_argument("--epochs-infogan", type=int, default=8, help="InfoGAN epochs (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "tinydgm_quality_inference"),
                        help="folder for the runs' results")
    parser.add_argument("--run", nargs=2, metavar=("MODEL", "SIDE"), help="one run: MODEL bigan or infogan, SIDE "
                        "tinydgm or PyTorch")
    parser.add_argument("--report", action="store_true", help="only the report, from the runs in --work")
    parser.add_argument("--baselines", action="store_true", help="only the raw-pixel and random-encoder classifiers "
                        "(cached in --work for the report)")
    parser.add_argument("--threads", type=int, default=1, help="threads per run (default 1)")
    parser.add_argument("--lam-continuous", type=float, help="InfoGAN, tinydgm side: the weight of the continuous "
                        "codes' part of L_I (default: lambda, one weight); its run is saved under its own name")
    parser.add_argument("--max-rounds", type=int, help="rounds per epoch (a smoke run; default: the whole set)")
    parser.add_argument("--out", help="write the markdown section to this file")
    cfg = parser.parse_args(argv)
    os.makedirs(cfg.work, exist_ok=True)
    common.pin_threads(cfg.threads)
    torch.set_num_threads(cfg.threads)
    epochs = {"bigan": cfg.epochs_bigan, "infogan": cfg.epochs_infogan}
    extra = ["--max-rounds", str(cfg.max_rounds)] if cfg.max_rounds else []
    if cfg.run:
        name, side = cfg.run
        if name not in MODELS or side not in SIDES:
            parser.error(f"--run MODEL SIDE with MODEL in {MODELS} and SIDE in {SIDES}")
        train_run(name, side, epochs[name], cfg.seed, cfg.work, cfg.max_rounds, cfg.lam_continuous)
        return
    if cfg.baselines:
        print(baselines(cfg.work, cfg.seed, *load_data()))
        return
    if not cfg.report:
        for name in MODELS:
            for side in SIDES:
                subprocess.run([sys.executable, __file__, "--run", name, side, f"--epochs-{name}", str(epochs[name]),
                                "--seed", str(cfg.seed), "--work", cfg.work, "--threads", str(cfg.threads)] + extra,
                               check=True)
    command = (f"TINYDGM_DATA=<folder with mnist.npz> python benchmarks/quality_adversarial_inference.py "
               f"--epochs-bigan {cfg.epochs_bigan} --epochs-infogan {cfg.epochs_infogan}"
               + (f" --out {cfg.out}" if cfg.out else ""))
    section = f"Command: `{command}`.\n\n" + make_report(cfg.work, cfg.seed)
    print("\n" + section)
    common.write_section(cfg.out, section)


if __name__ == "__main__":
    main()
