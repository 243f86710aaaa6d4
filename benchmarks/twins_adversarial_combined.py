"""CycleGAN, FlowGAN and the adversarial autoencoder against PyTorch twins trained at the same budget (issue 16).

    TINYDGM_DATA=<folder with mnist.npz> python benchmarks/twins_adversarial_combined.py
        [--parts cyclegan,flowgan,aae] [--objectives mle,adv,hybrid] [--cyclegan-steps N] [--flowgan-steps N]
        [--aae-steps N] [--seed S] [--threads T] [--quick] [--json FILE] [--out SECTION.md]

Each part builds the tinydgm model of ``quality_adversarial_combined.py`` and its PyTorch twin from
``bench_adversarial_combined.py`` (the same networks in ``torch.nn``, the tinydgm weights copied), and
trains both in one process, step after step on the same minibatch, the twin given the noise the tinydgm
model drew (z, alpha, prior draws: replayed). Both then face the same metric code: the twin's outputs are
converted to NumPy and scored by ``tinydgm.evaluate``'s classifier features; likelihoods are each side's own
exact log-density. The two sides start equal and differ only by float32 rounding, which training can
amplify: the spread between them is the run-to-run noise a second implementation adds.

cyclegan: X the first 30,000 training digits, Y the other 30,000 inverted; ``ConvTranslator(1, 8, 2)``,
MLP critics 784 -> 256 -> 1, lambda = 10, Adam(1e-3, (0.5, 0.999)), batches 64 + 64. Scored on 2,000
test digits: cycle errors, distance to the hidden truth 1 - x, the shipped classifier's accuracy on
1 - G(x) and F(y).

flowgan: ``toy_realnvp(784, 4, hidden=(256,))`` and critic 784 -> 256 -> 1, WGAN-GP (5 critic steps,
lambda_GP = 10, Adam(1e-4, (0, 0.9))), 320 dequantized digits per generator step, objective MLE, ADV or
Hybrid (lambda = 1). Scored: test NLL in bits/dim of 2,000 test digits (one dequantization draw) and FID /
IS analogues of 2,000 samples (the same latents on both sides) clipped to [0, 1].

aae: encoder 784 -> 512 -> 512 -> 2, Bernoulli decoder 2 -> 512 -> 512 -> 784, discriminator on z
2 -> 64 -> 64 -> 1, prior the 10-Gaussian mixture, Adam(1e-3, (0.5, 0.999)), batch 100 of dynamically
binarized digits. Scored on 2,000 test digits (binarized once): -log p(x | z = mu(x)) in nats, and the
codes' spread against the prior: the gap of their mean and covariance to the prior's, and the share of
codes nearest each of the 10 mixture directions (entropy; ln 10 = 2.303 is an even spread).

--quick: a few steps per part, to check that the script runs.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from bench_adversarial_combined import (TorchCycleGAN, TorchConvTranslator, TorchFlatCritic, TorchFlowGAN,  # noqa: E402
                                        _flowgan_noise, aae_sides, copy_weights)
from quality_adversarial_combined import (N_EVAL, FlatCritic, build_flowgan, dequantize,  # noqa: E402
                                          load_data, run_parts)

import tinydgm as td  # noqa: E402
from tinydgm.evaluate import load_mnist_classifier, mnist_frechet_distance, mnist_inception_score  # noqa: E402
from tinydgm.models.adversarial import ConvTranslator, CycleGAN  # noqa: E402


def accuracy(classifier, images, labels):
    return float((td.backend.to_numpy(classifier.predict(np.clip(images, 0, 1).reshape(-1, 784))) == labels).mean())


def timed_pair(seconds, td_step, pt_step):
    """(td_step(), pt_step()), each side's CPU time added to seconds["tinydgm"] / seconds["pytorch"]."""
    results = []
    for side, step in (("tinydgm", td_step), ("pytorch", pt_step)):
        start = time.process_time()
        results.append(step())
        seconds[side] += time.process_time() - start
    return tuple(results)


def side_by_side(td_result, pt_result):
    return {"tinydgm": td_result, "pytorch": pt_result}


# ----------------------------------------------------------------------------- CycleGAN

class TwinCycleGAN(TorchCycleGAN):
    """``TorchCycleGAN`` with the quality run's translator width and learning rate."""

    def __init__(self, model, channels, lr):
        self.G = copy_weights(model.generator_xy, TorchConvTranslator(channels).float())
        self.F = copy_weights(model.generator_yx, TorchConvTranslator(channels).float())
        self.D_X = copy_weights(model.discriminator_x, TorchFlatCritic().float())
        self.D_Y = copy_weights(model.discriminator_y, TorchFlatCritic().float())
        self.lam = model.lambda_cycle
        self.opt_g = torch.optim.Adam(list(self.G.parameters()) + list(self.F.parameters()), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(list(self.D_X.parameters()) + list(self.D_Y.parameters()), lr=lr,
                                      betas=(0.5, 0.999))


def cyclegan_scores(G, F_, x, labels, classifier):
    """The quality run's figures for translators G: X -> Y and F: Y -> X given as NumPy -> NumPy maps."""
    y = 1.0 - x                                            # the hidden pairing, used only to score
    g_x, f_y = G(x), F_(y)
    cycle_x, cycle_y = F_(g_x), G(f_y)
    return {"cycle_error_x": float(np.abs(cycle_x - x).mean()), "cycle_error_y": float(np.abs(cycle_y - y).mean()),
            "distance_to_truth_g": float(np.abs(g_x - y).mean()), "distance_to_truth_f": float(np.abs(f_y - x).mean()),
            "accuracy_g": accuracy(classifier, 1.0 - g_x, labels), "accuracy_f": accuracy(classifier, f_y, labels)}


def run_cyclegan(steps, seed, log):
    x_train, x_test, y_test = load_data()
    domain_x, domain_y = x_train[:30000].reshape(-1, 1, 28, 28), 1.0 - x_train[30000:].reshape(-1, 1, 28, 28)
    rng = np.random.default_rng(seed)
    translators = [ConvTranslator(1, 8, 2, rng=rng, dtype="float32") for _ in range(2)]
    model = CycleGAN(*translators, FlatCritic(rng), FlatCritic(rng), (1, 28, 28), lambda_cycle=10.0, lr=1e-3)
    twin = TwinCycleGAN(model, 8, 1e-3)
    seconds = {"tinydgm": 0.0, "pytorch": 0.0}
    for step in range(steps):
        x, y = domain_x[rng.integers(0, 30000, 64)], domain_y[rng.integers(0, 30000, 64)]
        a, b = timed_pair(seconds, lambda: model.train_step((x, y)),
                          lambda: twin.step(torch.from_numpy(x), torch.from_numpy(y)))
        if log and (step + 1) % 50 == 0:
            log(f"  cyclegan step {step + 1}: cycle {a['cycle']:.3f} / {b['cycle']:.3f}, D_Y {a['D_Y']:.3f} / "
                f"{b['D_Y']:.3f}")
    x = (x_test[:N_EVAL].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    labels, classifier = y_test[:N_EVAL], load_mnist_classifier()

    def torch_map(net):
        def apply(a):
            with torch.no_grad():
                return net(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))).numpy()
        return apply
    result = side_by_side(
        cyclegan_scores(lambda a: model.translate_xy(a).numpy(), lambda a: model.translate_yx(a).numpy(), x, labels,
                        classifier),
        cyclegan_scores(torch_map(twin.G), torch_map(twin.F), x, labels, classifier))
    result["steps"], result["accuracy_real"] = steps, accuracy(classifier, x, labels)
    for side in ("tinydgm", "pytorch"):
        result[side]["cpu_seconds"] = round(seconds[side], 1)
    return result


# ----------------------------------------------------------------------------- FlowGAN

class TwinFlowGAN(TorchFlowGAN):
    """``TorchFlowGAN`` for all three objectives: MLE takes the generator step alone (its z drawn but
    unused, as in ``FlowGAN.train_step``), ADV drops the NLL term, Hybrid is the parent's step."""

    def __init__(self, model):
        super().__init__(model, "float32")
        self.objective = model.objective
        if self.objective == "adv":
            self.mle_weight = 0.0                              # the hybrid step with lambda = 0 is ADV's step

    def step(self, x, noise):
        if self.objective != "mle":
            return super().step(x, noise)
        noise.pop(0)                                           # the z that FlowGAN.train_step draws for MLE
        nll = -self.flow.log_prob(x).mean()
        self.opt_g.zero_grad(set_to_none=True)
        nll.backward()
        self.opt_g.step()
        return {"generator_objective": nll.item(), "nll": nll.item()}


def flowgan_noise(model, replay, n):
    if model.objective == "mle":
        return [torch.from_numpy(model.sample_latent(n, rng=replay).numpy())]
    return _flowgan_noise(model, replay, n, n // model.n_critic, np.float32)


def flowgan_scores(log_p, samples, x_test):
    finite = np.isfinite(log_p)
    bits = float(-log_p.mean() / (784 * math.log(2)) + 8.0) if finite.all() else float("inf")
    clipped = np.clip(np.nan_to_num(samples, nan=0.0), 0, 1)
    return {"test_bits_per_dim": bits, "fid": float(mnist_frechet_distance(clipped, x_test)),
            "inception_score": float(mnist_inception_score(clipped)),
            "samples_outside_unit": float(((samples < 0) | (samples > 1)).mean())}


def run_flowgan(objective, steps, seed, log):
    x_train, x_test, _ = load_data()
    model = build_flowgan(objective, seed)
    twin = TwinFlowGAN(model)
    rng, noise_rng, replay = np.random.default_rng(seed + 2), np.random.default_rng(seed + 4), \
        np.random.default_rng(seed + 4)
    seconds = {"tinydgm": 0.0, "pytorch": 0.0}
    for step in range(steps):
        x = dequantize(x_train[rng.integers(0, len(x_train), 320)], rng)
        noise = flowgan_noise(model, replay, 320)
        a, b = timed_pair(seconds, lambda: model.train_step(x, rng=noise_rng),
                          lambda: twin.step(torch.from_numpy(x), noise))
        if log and (step + 1) % 25 == 0:
            log(f"  flowgan {objective} step {step + 1}: objective {a['generator_objective']:.2f} / "
                f"{b['generator_objective']:.2f}")
    x_eval = x_test[:N_EVAL].astype(np.float32) / 255.0
    test = dequantize(x_eval, np.random.default_rng(7))
    z = model.sample_latent(N_EVAL, rng=np.random.default_rng(seed + 3)).numpy()
    with td.no_grad():
        log_p = np.concatenate([model.log_prob(test[i:i + 500]).numpy().astype(np.float64)
                                for i in range(0, N_EVAL, 500)])
        samples = model.G(td.tensor(z)).numpy()
    with torch.no_grad():
        log_p_twin = np.concatenate([twin.flow.log_prob(torch.from_numpy(test[i:i + 500])).numpy().astype(np.float64)
                                     for i in range(0, N_EVAL, 500)])
        samples_twin = twin.flow.inverse(torch.from_numpy(z)).numpy()
    result = side_by_side(flowgan_scores(log_p, samples, x_eval), flowgan_scores(log_p_twin, samples_twin, x_eval))
    result["objective"], result["steps"] = objective, steps
    for side in ("tinydgm", "pytorch"):
        result[side]["cpu_seconds"] = round(seconds[side], 1)
    return result


# ----------------------------------------------------------------------------- adversarial autoencoder

def aae_scores(codes, log_px_z, prior, prior_draws):
    """-log p(x|z) and the codes' spread against the prior (moments, and shares per mixture direction)."""
    mean_gap = float(np.linalg.norm(codes.mean(0) - prior.mean()))
    cov_gap = float(np.linalg.norm(np.cov(codes.T) - prior.covariance()))
    angles = 2 * math.pi * np.arange(prior.n_components) / prior.n_components
    directions = np.stack([np.cos(angles), np.sin(angles)], 1)
    nearest = np.argmax(codes @ directions.T, axis=1)           # the mixture direction each code points to
    share = np.bincount(nearest, minlength=prior.n_components) / len(codes)
    entropy = float(-(share[share > 0] * np.log(share[share > 0])).sum()) + 0.0
    radius = np.linalg.norm(codes, axis=1)
    return {"reconstruction_nats": float(-log_px_z.mean()), "mean_gap": mean_gap, "covariance_gap": cov_gap,
            "direction_entropy": entropy, "median_radius": float(np.median(radius)),
            "prior_median_radius": float(np.median(np.linalg.norm(prior_draws, axis=1)))}


def run_aae(steps, seed, log):
    x_train, x_test, _ = load_data()
    model, twin = aae_sides("float32", seed)
    rng, noise_rng, replay = np.random.default_rng(seed + 2), np.random.default_rng(seed + 4), \
        np.random.default_rng(seed + 4)
    seconds = {"tinydgm": 0.0, "pytorch": 0.0}
    for step in range(steps):
        x = x_train[rng.integers(0, len(x_train), 100)]
        x = (rng.random(x.shape) < x).astype(np.float32)      # a fresh dynamic binarization
        z_prior = torch.from_numpy(model.sample_prior(100, rng=replay).numpy())
        a, b = timed_pair(seconds, lambda: model.train_step(x, rng=noise_rng),
                          lambda: twin.step(torch.from_numpy(x), z_prior))
        if log and (step + 1) % 250 == 0:
            log(f"  aae step {step + 1}: reconstruction {a['reconstruction']:.2f} / {b['reconstruction']:.2f}")
    test = (np.random.default_rng(7).random((N_EVAL, 784)) < x_test[:N_EVAL].reshape(N_EVAL, 784) / 255.0)
    test = test.astype(np.float32)
    prior_draws = model.sample_prior(20000, rng=np.random.default_rng(9)).numpy()
    with td.no_grad():
        codes = model.codes(test).numpy()
        log_px_z = model.decoder.log_prob(td.tensor(test), td.tensor(codes)).numpy()
    with torch.no_grad():
        x_t = torch.from_numpy(test)
        codes_twin = twin.encode(x_t)
        log_px_z_twin = -F.binary_cross_entropy_with_logits(twin.decoder.net(codes_twin), x_t,
                                                            reduction="none").sum(1)
    result = side_by_side(aae_scores(codes, log_px_z, model.prior, prior_draws),
                          aae_scores(codes_twin.numpy(), log_px_z_twin.numpy(), model.prior, prior_draws))
    result["steps"] = steps
    for side in ("tinydgm", "pytorch"):
        result[side]["cpu_seconds"] = round(seconds[side], 1)
    return result


# ----------------------------------------------------------------------------- report

def markdown(results, command):
    lines = [f"Command: `TINYDGM_DATA=<folder with mnist.npz> {command}` (1 thread per side, both sides in one "
             f"process; load average {os.getloadavg()[0]:.1f} at the end, on a shared 2-core machine).", ""]
    rows = []
    if "cyclegan" in results:
        c = results["cyclegan"]
        t, p = c["tinydgm"], c["pytorch"]
        name = f"CycleGAN, {c['steps']} steps"
        rows += [[name, "cycle error X / Y", f"{t['cycle_error_x']:.4f} / {t['cycle_error_y']:.4f}",
                  f"{p['cycle_error_x']:.4f} / {p['cycle_error_y']:.4f}"],
                 [name, "distance to the hidden truth G / F", f"{t['distance_to_truth_g']:.4f} / "
                  f"{t['distance_to_truth_f']:.4f}",
                  f"{p['distance_to_truth_g']:.4f} / {p['distance_to_truth_f']:.4f}"],
                 [name, f"digit kept G / F (real digits {c['accuracy_real']:.2%})",
                  f"{t['accuracy_g']:.2%} / {t['accuracy_f']:.2%}", f"{p['accuracy_g']:.2%} / {p['accuracy_f']:.2%}"],
                 [name, "training CPU s", t["cpu_seconds"], p["cpu_seconds"]]]
    for key in ("flowgan_mle", "flowgan_adv", "flowgan_hybrid"):
        if key in results:
            r = results[key]
            t, p = r["tinydgm"], r["pytorch"]
            name = f"FlowGAN {r['objective'].upper()}, {r['steps']} generator steps"
            rows += [[name, "test NLL (bits/dim)", f"{t['test_bits_per_dim']:.3f}", f"{p['test_bits_per_dim']:.3f}"],
                     [name, "FID / IS analogues", f"{t['fid']:.1f} / {t['inception_score']:.2f}",
                      f"{p['fid']:.1f} / {p['inception_score']:.2f}"],
                     [name, "sample pixels outside [0, 1]", f"{t['samples_outside_unit']:.1%}",
                      f"{p['samples_outside_unit']:.1%}"],
                     [name, "training CPU s", t["cpu_seconds"], p["cpu_seconds"]]]
    if "aae" in results:
        r = results["aae"]
        t, p = r["tinydgm"], r["pytorch"]
        name = f"AAE, {r['steps']} steps"
        rows += [[name, "test reconstruction NLL at z = mu(x) (nats)", f"{t['reconstruction_nats']:.2f}",
                  f"{p['reconstruction_nats']:.2f}"],
                 [name, "codes: mean gap / covariance gap to the prior", f"{t['mean_gap']:.3f} / "
                  f"{t['covariance_gap']:.3f}", f"{p['mean_gap']:.3f} / {p['covariance_gap']:.3f}"],
                 [name, f"codes: direction entropy (even: {math.log(10):.3f}) / median radius (prior "
                  f"{t['prior_median_radius']:.2f})", f"{t['direction_entropy']:.3f} / {t['median_radius']:.2f}",
                  f"{p['direction_entropy']:.3f} / {p['median_radius']:.2f}"],
                 [name, "training CPU s", t["cpu_seconds"], p["cpu_seconds"]]]
    lines += [common.markdown_table(["model, budget", "figure", "tinydgm", "PyTorch twin"], rows), ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="cyclegan,flowgan,aae")
    parser.add_argument("--objectives", default="mle,adv,hybrid")
    parser.add_argument("--cyclegan-steps", type=int, default=300)
    parser.add_argument("--flowgan-steps", type=int, default=200)
    parser.add_argument("--aae-steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="3 steps per part: checks that the script runs")
    parser.add_argument("--json", help="write the results to this JSON file too")
    parser.add_argument("--out", help="write the markdown section to this file")
    cfg = parser.parse_args(argv)
    if cfg.quick:
        cfg.cyclegan_steps = cfg.flowgan_steps = cfg.aae_steps = 3
    common.pin_threads(cfg.threads)
    torch.set_num_threads(cfg.threads)
    results = run_parts(cfg, run_cyclegan, run_flowgan, run_aae)
    args = argv if argv is not None else sys.argv[1:]
    section = markdown(results, ("python benchmarks/twins_adversarial_combined.py " + " ".join(args)).strip())
    print("\n" + section)
    if cfg.json:
        with open(cfg.json, "w") as f:
            json.dump(results, f, indent=2)
    common.write_section(cfg.out, section)


if __name__ == "__main__":
    main()
