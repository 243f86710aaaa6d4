"""Quality of CycleGAN and FlowGAN on MNIST (issue 16), at a CPU budget.

    TINYDGM_DATA=<folder with mnist.npz> python benchmarks/quality_adversarial_combined.py
        [--parts cyclegan,flowgan] [--cyclegan-steps N] [--flowgan-steps N] [--threads T] [--out SECTION.md]

cyclegan: an unpaired MNIST pair. X: the first 30,000 training digits (gray levels / 255); Y: the other
30,000, colour-inverted (1 - x). No image of X has its inverted self in Y, and batches of X and Y are
drawn independently, so the pairing is hidden. Translators ``ConvTranslator(1, 8, 2)``, discriminators
MLPs 784 -> 256 -> 1 on the flattened image, lambda = 10, Adam(1e-3, (0.5, 0.999)) (the paper: 2e-4;
a larger step for the CPU budget),
batch 64 + 64. On 2,000 test digits: the cycle errors mean |F(G(x)) - x| and |G(F(y)) - y|, the
distance of G(x) to the hidden truth 1 - x, and digit preservation: the shipped MNIST classifier's
accuracy on 1 - G(x) (G's translation mapped back by the known inversion) and on F(y), beside its
accuracy on the real test digits.

flowgan: one flow trained three ways (Grover et al. 2018; kuleshov-l12, "Flows + GANs: FlowGAN"):
MLE, ADV (WGAN-GP: 5 critic steps per generator step, lambda_GP = 10, Adam(1e-4, (0, 0.9))) and Hybrid
(lambda = 1), the same initial weights, the same number of generator steps (batch 64 per critic step,
320 images per generator step). Data: the 60,000 training digits uniformly dequantized, x = (k + u)/256
in [0, 1], flattened. Flow ``toy_realnvp(784, 4, hidden=(256,))`` (4 affine couplings, alternating
halves, bounded log-scales); critic MLP 784 -> 256 -> 1. Evaluation on 2,000 test digits:
test NLL in bits/dim of the 8-bit data (-log p(x)/(784 ln 2) + 8, one dequantization draw: the
dequantization bound), and on 2,000 samples (clipped to [0, 1]) the FID and Inception Score analogues
of the shipped classifier (the MNIST test images score about 4 and 9.3). The lecture's table (its
Inception 2.92 / 5.76 / 3.90 and NLL 3.54 / 8.53 / 4.21 bits/dim for MLE / ADV / Hybrid) is the shape
to look for: ADV better samples, far worse NLL.

PyTorch twins trained at these budgets, scored by the same code: twins_adversarial_combined.py.
Not run here or there: the papers' full budgets.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm.evaluate import load_mnist_classifier, mnist_frechet_distance, mnist_inception_score  # noqa: E402
from tinydgm.models.adversarial import ConvTranslator, CycleGAN, MLPDiscriminator  # noqa: E402
from tinydgm.models.flows import toy_realnvp  # noqa: E402
from tinydgm.models.hybrid import FlowGAN  # noqa: E402
from tinydgm.nn.module import Module  # noqa: E402

N_EVAL = 2000
FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")


def load_data():
    from tinydgm.data import load_mnist
    data = load_mnist(download=False, progress=False)
    return (data["x_train"].reshape(-1, 784).astype(np.float32) / 255.0, data["x_test"].reshape(-1, 784),
            data["y_test"])


class FlatCritic(Module):
    def __init__(self, rng):
        super().__init__()
        self.mlp = MLPDiscriminator(784, (256,), rng=rng, dtype="float32")

    def forward(self, x):
        return self.mlp(x.reshape(x.shape[0], -1))


def accuracy(classifier, images, labels):
    return float((td.backend.to_numpy(classifier.predict(np.clip(images, 0, 1).reshape(-1, 784))) == labels).mean())


def run_cyclegan(steps, seed, log):
    x_train, x_test, y_test = load_data()
    x_test = x_test[:N_EVAL].astype(np.float32) / 255.0
    labels = y_test[:N_EVAL]
    domain_x, domain_y = x_train[:30000].reshape(-1, 1, 28, 28), 1.0 - x_train[30000:].reshape(-1, 1, 28, 28)
    rng = np.random.default_rng(seed)
    translators = [ConvTranslator(1, 8, 2, rng=rng, dtype="float32") for _ in range(2)]
    model = CycleGAN(*translators, FlatCritic(rng), FlatCritic(rng), (1, 28, 28), lambda_cycle=10.0, lr=1e-3)
    start, history = time.perf_counter(), []
    for step in range(steps):
        report = model.train_step((domain_x[rng.integers(0, 30000, 64)], domain_y[rng.integers(0, 30000, 64)]))
        history.append(report)
        if log and (step + 1) % 100 == 0:
            log(f"  cyclegan step {step + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in report.items()))
    seconds = time.perf_counter() - start
    x = x_test.reshape(-1, 1, 28, 28)
    y = 1.0 - x                                        # the hidden pairing, used only to score
    g_x, f_y = model.translate_xy(x).numpy(), model.translate_yx(y).numpy()
    cycle_x, cycle_y = model.cycle_x(x).numpy(), model.cycle_y(y).numpy()
    classifier = load_mnist_classifier()
    result = {"steps": steps, "train_seconds": round(seconds, 1),
              "cycle_error_x": float(np.abs(cycle_x - x).mean()), "cycle_error_y": float(np.abs(cycle_y - y).mean()),
              "distance_to_truth_g": float(np.abs(g_x - y).mean()),
              "distance_to_truth_f": float(np.abs(f_y - x).mean()),
              "identity_distance": float(np.abs(x - y).mean()),
              "accuracy_real": accuracy(classifier, x, labels), "accuracy_g": accuracy(classifier, 1.0 - g_x, labels),
              "accuracy_f": accuracy(classifier, f_y, labels)}
    os.makedirs(FIGURES, exist_ok=True)
    rows = np.concatenate([x[:12], g_x[:12], cycle_x[:12], y[12:24], f_y[12:24]])
    td.plot.image_grid(np.clip(rows, 0, 1).reshape(-1, 28, 28), os.path.join(FIGURES, "cyclegan_mnist.png"), nrow=12,
                       scale=3, title=f"CycleGAN, {steps} steps: rows x, G(x), F(G(x)), y (inverted), F(y)")
    return result


def dequantize(x_uint8_scaled, rng):
    """x = (k + u) / 256 for pixels k = 255 x, u ~ U[0, 1)."""
    return ((np.rint(x_uint8_scaled * 255.0) + rng.random(x_uint8_scaled.shape)) / 256.0).astype(np.float32)


def build_flowgan(objective, seed):
    rng = np.random.default_rng(seed)
    flow = toy_realnvp(784, 4, hidden=(256,), rng=rng, dtype="float32")
    critic = MLPDiscriminator(784, (256,), rng=rng, dtype="float32")
    return FlowGAN(flow, critic, objective=objective, mle_weight=1.0, n_critic=5, gp_weight=10.0, lr=1e-4,
                   betas=(0.0, 0.9), rng=seed + 1)


def run_flowgan(objective, steps, seed, log):
    x_train, x_test, _ = load_data()
    model = build_flowgan(objective, seed)
    rng = np.random.default_rng(seed + 2)
    start = time.perf_counter()
    for step in range(steps):
        x = dequantize(x_train[rng.integers(0, len(x_train), 320)], rng)
        report = model.train_step(x, rng=rng)
        if log and (step + 1) % 100 == 0:
            log(f"  flowgan {objective} step {step + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in report.items()))
    seconds = time.perf_counter() - start
    test = dequantize(x_test[:N_EVAL].astype(np.float32) / 255.0, np.random.default_rng(7))
    with td.no_grad():
        log_p = np.concatenate([model.log_prob(test[i:i + 500]).numpy().astype(np.float64)
                                for i in range(0, N_EVAL, 500)])
    finite = np.isfinite(log_p)
    bits = float(-log_p[finite].mean() / (784 * math.log(2)) + 8.0) if finite.all() else float("inf")
    samples = model.sample(N_EVAL, rng=np.random.default_rng(seed + 3)).numpy()
    outside = float(((samples < 0) | (samples > 1)).mean())
    clipped = np.clip(np.nan_to_num(samples, nan=0.0), 0, 1)
    result = {"objective": objective, "steps": steps, "train_seconds": round(seconds, 1), "test_bits_per_dim": bits,
              "fid": float(mnist_frechet_distance(clipped, x_test[:N_EVAL].astype(np.float32) / 255.0)),
              "inception_score": float(mnist_inception_score(clipped)), "samples_outside_unit": outside}
    os.makedirs(FIGURES, exist_ok=True)
    td.plot.image_grid(clipped[:64].reshape(-1, 28, 28), os.path.join(FIGURES, f"flowgan_{objective}_samples.png"),
                       scale=3, title=f"FlowGAN {objective.upper()}, {steps} generator steps: 64 samples (clipped)")
    return result


def markdown(results, command):
    lines = [f"Command: `TINYDGM_DATA=<folder with mnist.npz> {command}` (load average "
             f"{os.getloadavg()[0]:.1f} at the end, on a 2-core machine shared with other processes).", ""]
    if "cyclegan" in results:
        c = results["cyclegan"]
        lines += [f"CycleGAN, digits X and inverted digits Y (pairing hidden), {c['steps']} steps "
                  f"({c['train_seconds']} s):", "",
                  common.markdown_table(["", "G: X -> Y", "F: Y -> X"], [
                      ["cycle error mean abs(F(G(x)) - x), abs(G(F(y)) - y)", f"{c['cycle_error_x']:.4f}",
                       f"{c['cycle_error_y']:.4f}"],
                      ["distance to the hidden truth, mean abs (identity map: "
                       f"{c['identity_distance']:.3f})", f"{c['distance_to_truth_g']:.4f}",
                       f"{c['distance_to_truth_f']:.4f}"],
                      [f"digit kept (classifier accuracy; real digits {c['accuracy_real']:.2%})",
                       f"{c['accuracy_g']:.2%}", f"{c['accuracy_f']:.2%}"]]), ""]
    flows = [results[k] for k in ("flowgan_mle", "flowgan_adv", "flowgan_hybrid") if k in results]
    if flows:
        lines += ["FlowGAN on dequantized MNIST, the same flow and budget per objective:", "",
                  common.markdown_table(["objective", "generator steps", "seconds", "test NLL (bits/dim)",
                                         "FID analogue", "IS analogue", "sample pixels outside [0, 1]"],
                                        [[r["objective"].upper(), r["steps"], r["train_seconds"],
                                          f"{r['test_bits_per_dim']:.3f}", f"{r['fid']:.2f}",
                                          f"{r['inception_score']:.2f}", f"{r['samples_outside_unit']:.1%}"]
                                         for r in flows]), ""]
    return "\n".join(lines)


def run_parts(cfg, run_cyclegan, run_flowgan, run_aae=None):
    """{part name: result} for the parts of ``cfg.parts`` (cyclegan; flowgan once per objective of
    ``cfg.objectives``; aae when a runner is given), each printed as JSON as soon as it is done."""
    parts, results = cfg.parts.split(","), {}
    jobs = []
    if "cyclegan" in parts:
        jobs.append(("cyclegan", lambda: run_cyclegan(cfg.cyclegan_steps, cfg.seed, print)))
    if "flowgan" in parts:
        jobs += [(f"flowgan_{objective}", lambda o=objective: run_flowgan(o, cfg.flowgan_steps, cfg.seed, print))
                 for objective in cfg.objectives.split(",")]
    if "aae" in parts and run_aae is not None:
        jobs.append(("aae", lambda: run_aae(cfg.aae_steps, cfg.seed, print)))
    for name, run in jobs:
        results[name] = run()
        print(json.dumps(results[name]), flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="cyclegan,flowgan")
    parser.add_argument("--cyclegan-steps", type=int, default=300)
    parser.add_argument("--flowgan-steps", type=int, default=200)
    parser.add_argument("--objectives", default="mle,adv,hybrid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the results to this JSON file too")
    parser.add_argument("--out", help="write the markdown section to this file")
    cfg = parser.parse_args(argv)
    common.pin_threads(cfg.threads)
    results = run_parts(cfg, run_cyclegan, run_flowgan)
    args = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/quality_adversarial_combined.py " + " ".join(args)
    section = markdown(results, command.strip())
    print("\n" + section)
    if cfg.json:
        with open(cfg.json, "w") as f:
            json.dump(results, f, indent=2)
    common.write_section(cfg.out, section)


if __name__ == "__main__":
    main()
