"""Quality of the models that combine families (issue 17) on binarized MNIST at a budget of minutes,
next to the papers' numbers.

    TINYDGM_DATA=<folder with binarized_mnist.npz, mnist.npz> python benchmarks/quality_hybrid.py \
        [--quick] [--threads N] [--parts pixelvae,multiscale,hierarchical,multimodal] [--n-train N] \
        [--epochs E] [--n-test N] [--k K] [--depths 0,2,5] [--out SECTION.md]

Every model trains on the first ``--n-train`` images of the statically binarized MNIST training split
for ``--epochs`` epochs (batch 50, Adam lr 1e-3, seed 0) and is evaluated on a fixed random subset of
``--n-test`` test images. The budget is far below the papers' (hundreds of epochs on 50,000 images on
GPUs): the numbers show the models working and the effects the lectures describe, not the papers' NLLs.

1. PixelVAE (Gulrajani et al. 2017): one model per number of masked PixelCNN layers in the decoder
   (``--depths``; 0 is a plain VAE with the same encoder and f(z)); test NLL by importance sampling
   (k samples), the ELBO, and the ELBO surgery on the test subset: KL(q(z|x) || p(z)) averaged over x,
   and its split into I_q[x, z] (at most ln n) and KL(q_agg || p). The information preference: the
   deeper the decoder, the less the code is used.
2. Parallel multiscale PixelCNN (Reed et al. 2017) against a full PixelCNN with the same base network
   (32 maps, 4 residual blocks, 5x5 first layer) at the same number of steps: exact test NLL, and the
   multiscale NLL term by term (base 7x7, then each scale's groups 2-4), where the cost of the
   within-group independence shows.
3. Hierarchical PixelCNN (Kolesnikov & Lampert 2017), x_hat = 2x2 max-pooled image: the bound
   ln p(x) >= ln p(x_hat) + ln p(x | x_hat) term by term.
4. Multimodal VAE (Wu & Goodman 2018), image (MNIST from mnist.npz, thresholded at 0.5) + label, on
   4 x ``--n-train`` images for ``--mm-epochs`` epochs, the label's term weighted ``--mm-weight``: the
   label accuracy from the image alone, and how often the shipped MNIST classifier reads images
   generated from the label alone as that label.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm import data as td_data  # noqa: E402
from tinydgm import optim  # noqa: E402
from tinydgm.evaluate import load_mnist_classifier  # noqa: E402
from tinydgm.models.autoregressive import HierarchicalPixelCNN, MultiscalePixelCNN, PixelCNN  # noqa: E402
from tinydgm.models.autoregressive.pixelcnn import evaluate_nll  # noqa: E402
from tinydgm.models.hybrid import CategoricalDecoder, MultimodalVAE, PixelCNNDecoder, PixelVAE  # noqa: E402
from tinydgm.models.hybrid.pixelvae import PAPER_CONFIG as PIXELVAE_PAPER  # noqa: E402
from tinydgm.models.latent import ConvEncoder, MLPDecoder, MLPEncoder  # noqa: E402
from tinydgm.models.latent.elbo_surgery import elbo_surgery  # noqa: E402
from tinydgm.train import fit  # noqa: E402

SECTIONS, section = common.part_registry()
BATCH, LR = 50, 1e-3
BASE = dict(channels=32, n_residual=4, kernel_size=5)
PIXELCNN_PUBLISHED = 81.30        # van den Oord et al. 2016b, Table 6 (pixelcnn.PAPER_CONFIG)


def binarized(cfg):
    arrays = td_data.load_binarized_mnist(download=False, progress=False)
    train = arrays["train"][:cfg.n_train].reshape(-1, 1, 28, 28).astype(np.float32)
    pick = np.random.default_rng(12345).choice(len(arrays["test"]), cfg.n_test, replace=False)
    return train, arrays["test"][np.sort(pick)].reshape(-1, 1, 28, 28).astype(np.float32)


def train(model, x, cfg):
    start = time.perf_counter()
    history = fit(model, x, optim.Adam(model.parameters(), lr=LR), epochs=cfg.epochs, batch_size=BATCH, seed=0,
                  progress=False)
    return time.perf_counter() - start, float(history["epoch_loss"][-1])


# ----------------------------------------------------------------------------- 1. PixelVAE

def pixelvae(n_layers, seed=0):
    rng = td.rng(seed)
    return PixelVAE(ConvEncoder((1, 28, 28), 16, channels=(32, 64), hidden=(256,), rng=rng),
                    PixelCNNDecoder(16, (1, 28, 28), n_layers=n_layers, channels=32, cond_channels=16, hidden=256,
                                    n_upsample=2, kernel_size=5, rng=rng), rng=rng)


@section("pixelvae", "PixelVAE: test NLL, KL and I_q[x, z] against the number of PixelCNN layers")
def pixelvae_part(cfg):
    x_train, x_test = binarized(cfg)
    rows = []
    for n_layers in [int(d) for d in cfg.depths.split(",")]:
        model = pixelvae(n_layers)
        seconds, last = train(model, x_train, cfg)
        model.eval()
        with td.no_grad():
            nll = -float(model.log_prob_estimate(x_test, k=cfg.k, batch_size=50, chunk_size=25,
                                                 rng=np.random.default_rng(1)).numpy().mean())
            surgery = elbo_surgery(model, x_test, n_samples=10, rng=np.random.default_rng(2))
        rows.append([n_layers, f"{nll:.2f}", f"{-surgery.elbo:.2f}", f"{surgery.average_kl:.2f}",
                     f"{surgery.mutual_info:.2f} (ln n = {surgery.log_n:.2f})", f"{surgery.marginal_kl:.2f}",
                     f"{seconds:.0f}"])
        print(rows[-1], flush=True)
    table = common.markdown_table(["PixelCNN layers", f"test NLL (k = {cfg.k})", "-ELBO", "KL(q \\|\\| p)", "I_q[x, z]",
                                   "KL(q_agg \\|\\| p)", "train s"], rows)
    return (f"{table}\n\nNats per image on {cfg.n_test} test images, after {cfg.epochs} epochs on {cfg.n_train} "
            f"images. Published: PixelVAE {PIXELVAE_PAPER['published_nll']} nats "
            f"({PIXELVAE_PAPER['published_source']}).")


# ----------------------------------------------------------------------------- 2. multiscale

@section("multiscale", "Parallel multiscale PixelCNN against a full PixelCNN: exact test NLL, term by term")
def multiscale_part(cfg):
    x_train, x_test = binarized(cfg)
    multiscale = MultiscalePixelCNN((28, 28), (7, 7), group_channels=32, group_layers=2, rng=td.rng(0), **BASE)
    full = PixelCNN(1, image_size=(28, 28), rng=td.rng(0), **BASE)
    ms_seconds, _ = train(multiscale, x_train, cfg)
    full_seconds, _ = train(full, x_train, cfg)
    with td.no_grad():
        ms_nll, full_nll = evaluate_nll(multiscale, x_test.reshape(-1, 784)), evaluate_nll(full, x_test.reshape(-1, 784))
        terms = multiscale.log_prob_terms(x_test)
    rows = [["PixelCNN (full resolution)", f"{full_nll:.2f}", f"{full_seconds:.0f}"],
            ["multiscale (base 7x7 + 2 scales of 3 groups)", f"{ms_nll:.2f}", f"{ms_seconds:.0f}"]]
    term_rows = [[name, f"{-float(t.numpy().mean()):.2f}"] for name, t in terms]
    return (common.markdown_table(["model", "test NLL (exact)", "train s"], rows) + "\n\n" +
            common.markdown_table(["multiscale term", "nats"], term_rows) +
            f"\n\nNats per image on {cfg.n_test} test images, {cfg.epochs} epochs on {cfg.n_train} images, same "
            f"steps for both. The likelihood cost of the independence inside a group: {ms_nll - full_nll:+.2f} nats "
            f"at this budget. Published: PixelCNN {PIXELCNN_PUBLISHED} nats on binarized MNIST; Reed et al. 2017 "
            "report no binarized-MNIST number (ImageNet 32x32: 3.95 bits/dim, 64x64: 3.70).")


# ----------------------------------------------------------------------------- 3. hierarchical

@section("hierarchical", "Hierarchical PixelCNN: the bound ln p(x_hat) + ln p(x | x_hat), term by term")
def hierarchical_part(cfg):
    x_train, x_test = binarized(cfg)
    model = HierarchicalPixelCNN((28, 28), 2, cond_channels=32, cond_layers=4, cond_kernel_size=5, rng=td.rng(0),
                                 **BASE)
    seconds, _ = train(model, x_train, cfg)
    with td.no_grad():
        log_p_xhat, log_p_x_xhat = (-float(t.numpy().mean()) for t in model.log_prob_terms(x_test))
    rows = [["-ln p(x_hat), 14x14 max-pooled", f"{log_p_xhat:.2f}"], ["-ln p(x \\| x_hat)", f"{log_p_x_xhat:.2f}"],
            ["bound on -ln p(x)", f"{log_p_xhat + log_p_x_xhat:.2f}"]]
    return (common.markdown_table(["term", "nats"], rows) +
            f"\n\n{cfg.n_test} test images, {cfg.epochs} epochs on {cfg.n_train} images ({seconds:.0f} s).")


# ----------------------------------------------------------------------------- 4. multimodal

@section("multimodal", "Multimodal VAE (image + label): label accuracy from the image alone")
def multimodal_part(cfg):
    mnist = td_data.load_mnist(download=False, progress=False)
    n_train = min(60000, 4 * cfg.n_train)
    x_train = (mnist["x_train"][:n_train].reshape(-1, 784) > 127).astype(np.float32)
    y_train = np.eye(10, dtype=np.float32)[mnist["y_train"][:n_train]]
    x_test = (mnist["x_test"].reshape(-1, 784) > 127).astype(np.float32)
    rng = td.rng(0)
    model = MultimodalVAE([MLPEncoder(784, 20, hidden=(400,), rng=rng), MLPEncoder(10, 20, hidden=(64,), rng=rng)],
                          [MLPDecoder(20, 784, hidden=(400,), rng=rng), CategoricalDecoder(20, 10, hidden=(64,), rng=rng)],
                          rng=rng, weights=(1.0, cfg.mm_weight))
    start = time.perf_counter()
    fit(model, np.concatenate([x_train, y_train], axis=1), optim.Adam(model.parameters(), lr=LR),
        epochs=cfg.mm_epochs, batch_size=100, seed=0, progress=False)
    seconds = time.perf_counter() - start
    labels = np.tile(np.eye(10, dtype=np.float32), (100, 1))
    with td.no_grad():
        predicted = model.predict((x_test, None), 1).numpy()
        mu, log_var = model.posterior((None, labels))                 # q(z | y), then E[x | z] for z ~ q(z | y)
        eps = td.tensor(np.random.default_rng(3).standard_normal(mu.shape).astype(np.float32))
        generated = model.decoders[0].mean(mu + (0.5 * log_var).exp() * eps).numpy()
    accuracy = float((predicted == mnist["y_test"]).mean())
    recognised = float((load_mnist_classifier().predict(generated) == np.tile(np.arange(10), 100)).mean())
    return (f"Label accuracy from the image alone (q(z | x) by the product of the prior and the image expert, "
            f"then argmax p(y | z = mean)): **{accuracy:.1%}** on the 10,000 test images; images generated from the "
            f"label alone (100 per label, z ~ q(z | y), E[x | z]) read as their label by the shipped MNIST "
            f"classifier: **{recognised:.1%}**. Label weight lambda = {cfg.mm_weight:g}, {cfg.mm_epochs} epochs on "
            f"{n_train} images ({seconds:.0f} s). Wu & Goodman 2018 report MNIST accuracies with their MVAE in a "
            "figure against the amount of paired data, not a table we could quote.")


def main(argv=None):
    parser = common.parts_parser(__doc__, SECTIONS, quick_help="a smoke run (few images, one epoch)")
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--k", type=int, default=100, help="importance samples per test image (PixelVAE)")
    parser.add_argument("--depths", default="0,2,5", help="PixelCNN layers of the PixelVAE decoders")
    parser.add_argument("--mm-epochs", type=int, default=10, help="epochs of the multimodal VAE (MLPs: cheap)")
    parser.add_argument("--mm-weight", type=float, default=10.0, help="lambda of the label's reconstruction term")
    cfg = parser.parse_args(argv)
    if cfg.quick:
        cfg.n_train, cfg.epochs, cfg.n_test, cfg.k, cfg.depths, cfg.mm_epochs = 200, 1, 50, 10, "0,2", 1
    parts = common.chosen_parts(parser, cfg, SECTIONS)
    pinned = common.pin_threads(cfg.threads)
    info, bodies, elapsed, load0, load1 = common.run_sections(cfg, SECTIONS, parts, pinned)
    command = (f"python benchmarks/quality_hybrid.py --threads {cfg.threads} --parts {','.join(parts)} --n-train "
               f"{cfg.n_train} --epochs {cfg.epochs} --n-test {cfg.n_test} --k {cfg.k} --depths {cfg.depths} "
               f"--mm-epochs {cfg.mm_epochs} --mm-weight {cfg.mm_weight:g}")
    head = ["## Hybrid models: quality on binarized MNIST (`benchmarks/quality_hybrid.py`)", "",
            common.machine_markdown(info, cfg.threads), "",
            f"Command: `{command}`; {elapsed:.0f} s; load average {load0[0]:.2f} -> {load1[0]:.2f}.", ""]
    common.finish_section(cfg.out, head, bodies)


if __name__ == "__main__":
    main()
