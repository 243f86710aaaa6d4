"""Models that combine families: PixelVAE samples and the KL against decoder depth, the multimodal
VAE's conditional generation, the parallel multiscale PixelCNN's samples with sampling times.

    python demos/hybrid.py [--device cpu|cuda] [--quick] [--out DIR] [--seed N]

Data: the embedded binarized images (1000 training, 500 test, with labels), so the demo needs no
download; the training budget is a few minutes (``--quick``: a few steps, a smoke test).

1. PixelVAE (Gulrajani et al. 2017; intro lecture part III eq. 43-44): a VAE whose decoder is a
   conditional PixelCNN, p(x | z) = prod_i p(x_i | x_<i, z), trained with 0, 2 and 5 masked layers.
   The ELBO surgery on the test images (``elbo_surgery``: KL(q(z|x) || p(z)) = I_q[x, z] +
   KL(q_agg || p)) shows the information preference: the deeper the decoder, the less the code
   carries -> hybrid_kl_vs_depth.png; samples z ~ p(z), x ~ p(x | z) -> hybrid_pixelvae_samples.png
2. Multimodal VAE (Wu & Goodman 2018; kuleshov-l12): image and label experts, q(z | x, y) their
   product with the prior, the label's reconstruction weighted 10 against the 784 pixels; images
   from the label alone (z ~ q(z | y), then E[x | z]) with the share the shipped MNIST classifier
   reads as that label, and the label accuracy from the image alone (z = the mean of q(z | x))
   -> hybrid_multimodal.png
3. Parallel multiscale PixelCNN (Reed et al. 2017): a 7x7 base PixelCNN and 2 scales of 3 pixel
   groups; samples beside those of a full PixelCNN with the same base network, with the time each
   sampler took -> hybrid_multiscale_samples.png
"""
import sys
import time

import numpy as np

import _common
from tinydgm import data, optim, plot
from tinydgm.evaluate import load_mnist_classifier
from tinydgm.autodiff.core import no_grad, tensor
from tinydgm.models.autoregressive import MultiscalePixelCNN, PixelCNN
from tinydgm.models.hybrid import CategoricalDecoder, MultimodalVAE, PixelCNNDecoder, PixelVAE
from tinydgm.models.latent import MLPDecoder, MLPEncoder
from tinydgm.models.latent.elbo_surgery import elbo_surgery
from tinydgm.train import fit

BASE = dict(channels=16, n_residual=2, kernel_size=5)


def run(out_dir, seed, quick, device, log):
    train = data.load_embedded_binarized("train", seed=seed)
    test = data.load_embedded_binarized("test", seed=seed)
    images = {"train": train["x"].reshape(-1, 1, 28, 28).astype("float32"), "y_train": train["y"],
              "test": test["x"].reshape(-1, 1, 28, 28).astype("float32"), "y_test": test["y"]}
    if quick:
        images = {key: value[:64] for key, value in images.items()}
    with _common.one_blas_thread():
        parts = {"pixelvae": pixelvae_part(images, out_dir, seed, quick, device, log),
                 "multimodal": multimodal_part(images, out_dir, seed, quick, device, log),
                 "multiscale": multiscale_part(images, out_dir, seed, quick, device, log)}
    return _common.collect(parts)


def train(model, x, epochs, batch_size, seed, lr=1e-3):
    fit(model, x, optim.Adam(model.parameters(), lr=lr), epochs=epochs, batch_size=batch_size, seed=seed,
        progress=False)
    return model


# ============================================================================ 1. PixelVAE

def pixelvae_part(images, out_dir, seed, quick, device, log):
    depths = (0, 2) if quick else (0, 2, 5)
    epochs = 1 if quick else 12
    rows = []
    samples = {}
    for n_layers in depths:
        rng = np.random.default_rng(seed)
        model = PixelVAE(MLPEncoder((1, 28, 28), 16, hidden=(256,), rng=rng, device=device),
                         PixelCNNDecoder(16, (1, 28, 28), n_layers=n_layers, channels=16, cond_channels=8, hidden=128,
                                         n_upsample=2, kernel_size=5, rng=rng, device=device), rng=rng)
        train(model, images["train"], epochs, 32, seed)
        model.eval()
        with no_grad():
            s = elbo_surgery(model, images["test"], n_samples=2 if quick else 10, rng=np.random.default_rng(seed))
            samples[n_layers] = _common.host(model.sample(8 if quick else 16, rng=np.random.default_rng(seed + 1)))
        rows.append(dict(n_layers=n_layers, elbo=_common.finite(s.elbo), kl=_common.finite(s.average_kl),
                         mutual_info=_common.finite(s.mutual_info), marginal_kl=_common.finite(s.marginal_kl),
                         log_n=s.log_n))
        log(f"PixelVAE, {n_layers} PixelCNN layers: test ELBO {s.elbo:.1f} nats, KL(q || p) {s.average_kl:.2f}, "
            f"I_q {s.mutual_info:.2f} (<= ln n = {s.log_n:.2f}), KL(q_agg || p) {s.marginal_kl:.2f}")
    title = _common.title(f"PixelVAE: KL(q(z|x) || p(z)) and I_q[x, z] on {len(images['test'])} test images against "
                          f"the decoder's masked PixelCNN layers ({epochs} epochs each)", quick)
    kl_path = plot_kl_vs_depth(rows, title, out_dir / "hybrid_kl_vs_depth.png")
    sample_title = _common.title("PixelVAE samples, z ~ p(z) then x ~ p(x | z) pixel by pixel; one row per decoder "
                                 f"depth ({', '.join(str(d) for d in depths)} masked layers)", quick)
    grid = np.concatenate([samples[d] for d in depths])
    plot.image_grid(grid, out_dir / "hybrid_pixelvae_samples.png", nrow=len(samples[depths[0]]), title=sample_title,
                    scale=3)       # a few wide rows: the default scale would leave the digits tiny
    return {"rows": rows, "figures": {kl_path: title, "hybrid_pixelvae_samples.png": sample_title}}


def plot_kl_vs_depth(rows, title, path):
    fig = _common.figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    depth = [r["n_layers"] for r in rows]
    ax.plot(depth, [r["kl"] for r in rows], "o-", label="KL(q(z|x) || p(z)), averaged over x")
    ax.plot(depth, [r["mutual_info"] for r in rows], "s-", label="I_q[x, z]")
    ax.plot(depth, [r["marginal_kl"] for r in rows], "^-", label="KL(q_agg || p)")
    ax.axhline(rows[0]["log_n"], color="gray", linestyle=":", label="ln n (the most I_q can be)")
    ax.set_xlabel("masked PixelCNN layers in the decoder")
    ax.set_ylabel("nats")
    ax.set_xticks(depth)
    ax.legend(fontsize=8)
    _common.suptitle(fig, title, fontsize=10)
    return _common.save(fig, path)


# ============================================================================ 2. multimodal VAE

def multimodal_part(images, out_dir, seed, quick, device, log):
    rng = np.random.default_rng(seed)
    model = MultimodalVAE([MLPEncoder(784, 16, hidden=(256,), rng=rng, device=device),
                           MLPEncoder(10, 16, hidden=(64,), rng=rng, device=device)],
                          [MLPDecoder(16, 784, hidden=(256,), rng=rng, device=device),
                           CategoricalDecoder(16, 10, hidden=(64,), rng=rng, device=device)], rng=rng,
                          weights=(1.0, 10.0))                  # the one label against 784 pixels
    x = images["train"].reshape(-1, 784)
    y = np.eye(10, dtype="float32")[images["y_train"]]
    epochs = 1 if quick else 60
    train(model, np.concatenate([x, y], axis=1), epochs, 50, seed)
    with no_grad():
        predicted = _common.host(model.predict((images["test"].reshape(-1, 784), None), 1))
        labels = np.tile(np.eye(10, dtype="float32"), (6, 1))               # six rows of the labels 0-9
        mu, log_var = model.posterior((None, labels))                       # q(z | y): the prior times the label expert
        eps = np.random.default_rng(seed).standard_normal(mu.shape).astype("float32")
        z = mu + (0.5 * log_var).exp() * tensor(eps, device=mu.device)
        generated = _common.host(model.decoders[0].mean(z))                 # E[x | z], z ~ q(z | y)
    accuracy = float((predicted == images["y_test"]).mean())
    seen = _common.host(load_mnist_classifier(device=device).predict(tensor(generated, device=device)))
    recognised = float((seen == np.tile(np.arange(10), 6)).mean())         # the shipped classifier's reading
    log(f"multimodal VAE: label accuracy from the image alone {accuracy:.1%} on {len(predicted)} test images; "
        f"images generated from the label read as that label by the MNIST classifier: {recognised:.0%}")
    title = _common.title(f"Multimodal VAE: images from the label alone (columns: labels 0-9; z ~ q(z|y), E[x|z]), "
                          f"{recognised:.0%} read as their label by the MNIST classifier; label accuracy from the "
                          f"image alone {accuracy:.1%} ({epochs} epochs)", quick)
    plot.image_grid(generated.reshape(-1, 1, 28, 28), out_dir / "hybrid_multimodal.png", nrow=10, title=title)
    return {"label_accuracy": accuracy, "generated_read_as_label": recognised,
            "figures": {"hybrid_multimodal.png": title}}


# ============================================================================ 3. multiscale PixelCNN

def multiscale_part(images, out_dir, seed, quick, device, log):
    multiscale = MultiscalePixelCNN((28, 28), (7, 7), group_channels=16, group_layers=2,
                                    rng=np.random.default_rng(seed), device=device, **BASE)
    full = PixelCNN(1, image_size=(28, 28), rng=np.random.default_rng(seed), device=device, **BASE)
    epochs = 1 if quick else 10
    n = 8 if quick else 16
    rows, times = [], {}
    for name, model in (("multiscale", multiscale), ("PixelCNN", full)):
        train(model, images["train"], epochs, 32, seed)
        with no_grad():
            start = time.perf_counter()
            rows.append(_common.host(model.sample(n, rng=np.random.default_rng(seed + 2))))
            times[name] = time.perf_counter() - start
            nll = float(-model.log_prob(images["test"]).numpy().mean())
        log(f"{name}: test NLL {nll:.1f} nats, {n} samples in {times[name]:.2f} s")
    title = _common.title(f"Top: parallel multiscale PixelCNN ({multiscale.n_network_evaluations()} network "
                          f"evaluations, {times['multiscale']:.2f} s for {n} images); bottom: PixelCNN with the same "
                          f"base network (784 sequential steps of its cached sampler, {times['PixelCNN']:.2f} s); "
                          f"{epochs} epochs each", quick)
    plot.image_grid(np.concatenate(rows), out_dir / "hybrid_multiscale_samples.png", nrow=n, title=title)
    return {"seconds": times, "figures": {"hybrid_multiscale_samples.png": title}}


def main(argv=None):
    return _common.main(run, __doc__, argv, name="hybrid")


if __name__ == "__main__":
    sys.exit(main())
