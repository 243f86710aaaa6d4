"""RealNVP builders (Dinh et al. 2017, "Density estimation using Real NVP"; intro lecture part
II, "Non-volume preserving (NVP) transformation", eq. 40-41 and "Implementation" (masks, squeeze,
factor-out); isachenko-l07, "RealNVP: Affine coupling law"):

    toy_realnvp(dim=2, n_couplings=8, hidden=(64, 64), norm=None)    vectors (2-D toys)
    image_realnvp(event_shape=(1, 28, 28), n_scales=2, ...)          multi-scale, images

each returning a ``Flow`` (base N(0, I)), plus the MNIST set-up (``PAPER_CONFIG``,
``reproduce``). The flows fitted to 2-D toys, with their density heatmaps, are in the
repository's demos/flows.py.
"""
import math
import time

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.models.flows.base import Compose, Flow
from tinydgm.models.flows.coupling import AffineCoupling, channel_mask, checkerboard_mask, half_mask
from tinydgm.models.flows.image import (ActNormTransform, BatchNormTransform, InvertibleConv1x1, MultiScale,
                                        Squeeze)
from tinydgm.nn.conditioners import CNNConditioner, MLPConditioner

__all__ = ["toy_realnvp", "image_realnvp", "PAPER_CONFIG", "reproduce"]

NORMS = (None, "batchnorm", "actnorm")


def _norm_layer(norm, num_features, dtype, device):
    if norm not in NORMS:
        raise ValueError(f"RealNVP: norm must be one of {NORMS}, got {norm!r}")
    if norm == "batchnorm":
        return BatchNormTransform(num_features, dtype=dtype, device=device)
    if norm == "actnorm":
        return ActNormTransform(num_features, dtype=dtype, device=device)
    return None


# ----------------------------------------------------------------------------- vectors

def toy_realnvp(dim=2, n_couplings=8, hidden=(64, 64), norm=None, activation="relu", tanh_scale=True, rng=None,
                dtype=None, device=None):
    """A RealNVP on vectors: ``n_couplings`` affine couplings with alternating half masks
    (b, 1 - b, b, ...), each conditioner an MLP dim -> hidden -> (t, s) of size dim
    (``MLPConditioner(dim, dim, hidden)``, zero last layer: the flow starts as the
    identity), and optionally a batch-norm or act-norm layer after every coupling but the
    last. Returns ``Flow(Compose(layers), (dim,))``."""
    kw = dict(dtype=dtype, device=device)
    layers = []
    for k in range(n_couplings):
        conditioner = MLPConditioner(dim, dim, hidden=hidden, activation=activation, tanh_scale=tanh_scale,
                                     rng=rng, **kw)
        layers.append(AffineCoupling(half_mask(dim, flip=bool(k % 2), **kw), conditioner))
        norm_layer = _norm_layer(norm, dim, dtype, device) if k < n_couplings - 1 else None
        if norm_layer is not None:
            layers.append(norm_layer)
    return Flow(Compose(layers), (dim,))


# ----------------------------------------------------------------------------- images

def _coupling_block(shape, mask_fn, n, norm, conv1x1, cnn, rng, dtype, device, first_flip=False):
    """n affine couplings on (C, H, W) with alternating masks, a norm layer after each."""
    layers = []
    for k in range(n):
        if conv1x1:
            layers.append(InvertibleConv1x1(shape[0], rng=rng, dtype=dtype, device=device))
        conditioner = CNNConditioner(shape[0], shape[0], rng=rng, dtype=dtype, device=device, **cnn)
        mask = mask_fn(shape, flip=bool(k % 2) ^ first_flip, dtype=dtype, device=device)
        layers.append(AffineCoupling(mask, conditioner))
        norm_layer = _norm_layer(norm, shape[0], dtype, device)
        if norm_layer is not None:
            layers.append(norm_layer)
    return layers


def image_realnvp(event_shape=(1, 28, 28), n_scales=2, hidden_channels=32, n_blocks=2, kernel_size=3,
                  norm="actnorm", conv1x1=False, n_final=4, rng=None, dtype=None, device=None):
    """The multi-scale RealNVP of Dinh et al. 2017, sec. 3.6 / fig. 4, on (C, H, W) images:

        each of the n_scales scales:  3 checkerboard couplings -> squeeze -> 3 channel-wise couplings,
                                      then half of the channels factored out (MultiScale)
        final block:                  n_final checkerboard couplings (the paper's 4)

    For 1 x 28 x 28 MNIST with n_scales=2: 1x28x28 -> 4x14x14 (2x14x14 factored out) ->
    8x7x7 (4x7x7 factored out) -> final couplings on 4x7x7. Conditioners are
    ``CNNConditioner(C, C, hidden_channels, n_blocks)`` (a small ResNet; no weight norm).
    norm: None, "batchnorm" or "actnorm" after every coupling (the paper uses batch norm);
    conv1x1=True puts Glow's invertible 1x1 convolution before every coupling (an option,
    not the paper's). Returns ``Flow(MultiScale(...), event_shape)``.
    """
    event_shape = tuple(event_shape)
    cnn = dict(hidden_channels=hidden_channels, n_blocks=n_blocks, kernel_size=kernel_size)
    kw = dict(norm=norm, conv1x1=conv1x1, cnn=cnn, rng=rng, dtype=dtype, device=device)
    c, h, w = event_shape
    scales = []
    for _ in range(n_scales):
        layers = _coupling_block((c, h, w), checkerboard_mask, 3, **kw)
        layers.append(Squeeze())
        c, h, w = 4 * c, h // 2, w // 2
        layers += _coupling_block((c, h, w), channel_mask, 3, **kw)
        scales.append(Compose(layers))
        c //= 2
    final = Compose(_coupling_block((c, h, w), checkerboard_mask, n_final, **kw))
    return Flow(MultiScale(scales, final, event_shape), event_shape)


# ----------------------------------------------------------------------------- MNIST reproduction

PAPER_CONFIG = {
    "paper": "Dinh, Sohl-Dickstein & Bengio, Density estimation using Real NVP, ICLR 2017",
    "published": {
        # The Real NVP paper has no MNIST row (CIFAR-10 3.49, ImageNet 32x32 4.28, 64x64 3.98,
        # CelebA 3.02, LSUN bedroom/tower/church 2.72/2.81/3.08 bits/dim, its Table 1). The MNIST
        # figure usually quoted for Real NVP, 1.06 bits/dim, is from Grathwohl et al. 2019 (FFJORD),
        # Table 2 (next to Glow 1.05 and FFJORD 0.99): our recollection, to check before citing.
        "mnist_bits_per_dim": 1.06,
        "mnist_source": "Grathwohl et al. 2019 (FFJORD), Table 2 (recollection, unverified)",
        "cifar10_bits_per_dim": 3.49,
    },
    # The paper's set-up (sec. 4.1, recollection): multi-scale architecture of sec. 3.6 (3 checkerboard
    # couplings, squeeze, 3 channel-wise couplings per scale; 4 checkerboard couplings at the end);
    # conditioners deep ResNets (8 residual blocks, 64 feature maps, on CIFAR-10), weight normalisation
    # and batch normalisation in the conditioners, batch norm on the coupling outputs; logit
    # pre-processing with alpha = 0.05; uniform dequantization; Adam, default hyperparameters, L2
    # regularisation 5e-5 on the weights; batch size 64.
    "architecture": {"n_scales": 2, "couplings_per_scale": "3 checkerboard + squeeze + 3 channel-wise",
                     "n_final": 4, "residual_blocks": 8, "feature_maps": 64},
    "preprocessing": {"dequantization": "uniform", "logit_alpha": 0.05},
    "optimizer": {"name": "adam", "lr": 1e-3, "l2": 5e-5, "batch_size": 64},
    # What reproduce() runs by default on the CPU (smaller, documented substitutions):
    "tinydgm_defaults": {"hidden_channels": 32, "n_blocks": 2, "norm": "actnorm", "lr": 1e-3, "batch_size": 64,
                         "epochs": 1, "logit_alpha": 0.05, "weight_decay": 0.0,
                         "note": "act-norm instead of batch norm (no train/eval gap), small ResNets, no "
                                 "weight norm, no L2: CPU-sized; the gap to 1.06 is expected"},
}


def _dequantizer(kind, rng, dtype):
    try:
        from tinydgm.models.flows import dequantization as dq
    except ImportError as error:
        raise ImportError("reproduce: tinydgm.models.flows.dequantization is missing (UniformDequantization, "
                          f"VariationalDequantization, LogitTransform): {error}") from error
    for name in ("UniformDequantization", "VariationalDequantization", "LogitTransform", "DequantizedFlow"):
        if not hasattr(dq, name):
            raise ImportError(f"reproduce: tinydgm.models.flows.dequantization has no {name} yet")
    if kind == "uniform":
        return dq.UniformDequantization(256, rng=rng, dtype=dtype), dq
    if kind == "variational":
        return dq.VariationalDequantization((1, 28, 28), 256, rng=rng, dtype=dtype), dq
    raise ValueError(f'reproduce: dequantization must be "uniform" or "variational", got {kind!r}')


def reproduce(dequantization="uniform", epochs=None, data_path=None, hidden_channels=None, n_blocks=None,
              norm=None, lr=None, batch_size=None, max_train=None, max_test=None, max_time=None, seed=0,
              dtype="float32", device=None, log=print):
    """Train the multi-scale RealNVP on dequantized 8-bit MNIST and return test bits/dim.

    dequantization: "uniform" (Theis et al.) or "variational" (Flow++'s q(u|x), trained
    jointly), from ``tinydgm.models.flows.dequantization``; the flow models the logit of the
    dequantized pixels (``LogitTransform``, alpha 0.05), whose log-det is counted, so the
    reported bits/dim are those of the discrete 8-bit data (an upper bound: the
    dequantization bound, one draw of u per test image).
    Other arguments override PAPER_CONFIG["tinydgm_defaults"]; max_train / max_test take the
    first images only (quick checks); max_time stops training after the first epoch
    that ends later than max_time seconds; data_path: mnist.npz or its folder (default:
    ``tinydgm.data.load_mnist``'s search, e.g. $TINYDGM_DATA or ../shared/data).

    Cost (measured on a loaded 2-core machine, one BLAS thread): about 3.7 s per training batch
    of 64 at the defaults (convolutions dominate), i.e. roughly an hour per 60k-image epoch;
    use max_train / max_time for shorter runs.

    Returns a dict: test_bits_per_dim, train_loss per epoch (nats), epoch_time, training_time,
    config and the published figure.
    """
    from tinydgm.data import load_mnist
    from tinydgm.data import batches as data_batches
    from tinydgm.optim import Adam

    defaults = PAPER_CONFIG["tinydgm_defaults"]
    config = {"dequantization": dequantization, "epochs": epochs or defaults["epochs"],
              "hidden_channels": hidden_channels or defaults["hidden_channels"],
              "n_blocks": n_blocks or defaults["n_blocks"], "norm": norm or defaults["norm"],
              "lr": lr or defaults["lr"], "batch_size": batch_size or defaults["batch_size"],
              "max_train": max_train, "max_test": max_test, "seed": seed, "dtype": dtype,
              "logit_alpha": defaults["logit_alpha"]}
    rng = backend.rng(seed)
    dequantizer, dq = _dequantizer(dequantization, rng, dtype)
    data = load_mnist(path=data_path, download=False, progress=False)
    x_train = data["x_train"][:max_train].reshape(-1, 1, 28, 28)
    x_test = data["x_test"][:max_test].reshape(-1, 1, 28, 28)
    flow = image_realnvp((1, 28, 28), 2, config["hidden_channels"], config["n_blocks"], norm=config["norm"],
                         rng=rng, dtype=dtype, device=device)
    model = dq.DequantizedFlow(flow, dequantizer, dq.LogitTransform(config["logit_alpha"], 256))
    if device:
        model.to(device)
    optimizer = Adam(model.parameters(), lr=config["lr"])
    started, train_loss, epoch_time = time.perf_counter(), [], []
    for epoch in range(config["epochs"]):
        t0, total, count = time.perf_counter(), 0.0, 0
        model.train()
        for (batch,) in data_batches((x_train,), config["batch_size"], shuffle=True, rng=rng):
            x = Tensor(backend.to_device(batch.astype(dtype), device or "cpu"))
            model.zero_grad()
            loss = -model.log_prob_lower_bound(x, rng=rng).mean()
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.item()) * len(batch), count + len(batch)
        train_loss.append(total / count)
        epoch_time.append(time.perf_counter() - t0)
        if log:
            log(f"epoch {epoch + 1}: train {train_loss[-1] / (784 * math.log(2)):.4f} bits/dim "
                f"({epoch_time[-1]:.0f} s)")
        if max_time is not None and time.perf_counter() - started > max_time:
            break
    training_time = time.perf_counter() - started
    model.eval()
    bounds = []
    with no_grad():
        for (batch,) in data_batches((x_test,), 500, shuffle=False):
            x = Tensor(backend.to_device(batch.astype(dtype), device or "cpu"))
            bounds.append(backend.to_numpy(model.log_prob_lower_bound(x, rng=rng).data).astype("float64"))
    total = sum(float(b.sum()) for b in bounds)
    n_test = sum(len(b) for b in bounds)
    return {"test_bits_per_dim": -total / (n_test * 784 * math.log(2)), "train_loss": train_loss,
            "epoch_time": epoch_time, "training_time": training_time, "config": config,
            "published_bits_per_dim": PAPER_CONFIG["published"]["mnist_bits_per_dim"]}

