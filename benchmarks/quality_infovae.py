"""InfoVAE and the information preference on binarized MNIST (issue 14): with a PixelCNN decoder, does
the plain ELBO's code carry little information and InfoVAE's more?

    TINYDGM_DATA=<folder with mnist.npz> python benchmarks/quality_infovae.py [--quick] [--threads N] \
        [--n-train N] [--epochs E] [--n-test N] [--n-nll N] [--k K] [--layers L] [--lambda-mmd LAMBDA] \
        [--kernel rbf|imq] [--kernel-parameter P] [--mmd-samples K] [--seeds 0,1] \
        [--variants elbo,info0,info1,factorised] \
        [--out SECTION.md]

The information preference (Chen et al. 2017; kuleshov-l12 "Information Preference"): the ELBO's
average KL contains +I_q[x, z] (ELBO surgery, isachenko-l07 "ELBO surgery"), so a decoder that can
model p(x) alone is best served by an unused code. InfoVAE (Zhao et al. 2019) maximises

    E_q[log p(x|z)] - (1 - alpha) KL(q(z|x) || p(z)) - (alpha + lambda - 1) MMD^2(q(z), p(z))

(``tinydgm.models.latent.infovae``); alpha = 0, lambda = 1 is the ELBO (checked below on a batch with
the noise held fixed), alpha = 1 drops the KL (the MMD-VAE).

Every model has the same encoder (ConvEncoder 32-64-256 to a 16-d code) and the same decoder (f(z) to
16 maps of 28x28, then ``--layers`` masked PixelCNN layers of 32 maps, 5x5), built from the same seed
(same initial weights) and trained on the same batches (``fit`` with the same seed: same data order),
Adam lr 1e-3, batch 50:

    elbo           InfoVAE alpha = 0, lambda = 1 (the ELBO), PixelCNN decoder
    infovae a=0    alpha = 0, lambda = ``--lambda-mmd`` (the ELBO plus a strong MMD pull of q(z) to p(z))
    infovae a=1    alpha = 1, lambda = ``--lambda-mmd`` (no KL: the MMD-VAE)
    factorised     the ELBO with a 0-layer (factorised Bernoulli) decoder: the reference whose code is used

The MMD's kernel (``--kernel``, ``--kernel-parameter``): the RBF kernel exp(-|a - b|^2 / (2 h^2)) with
bandwidth h, default sqrt(L) = 4 (N(0, I) draws in 16 dimensions lie about sqrt(2L) apart, so k ~ e^-1
between typical prior draws); a smaller h compares q(z) and p(z) on shorter distances (h = 1 in 16
dimensions makes k ~ e^-16 between typical draws: the estimate sees only near neighbours), a larger h
on coarser features (means, spread). ``imq`` is the inverse multiquadratic C / (C + |a - b|^2), default
C = 2L, whose heavy tails keep a gradient for codes far from the prior's draws. ``--mmd-samples K``:
the MMD uses K fresh draws z ~ q(z|x) per image (K x 50 codes per estimate, against as many prior
draws) instead of the decoder's one draw per image; the decoder's cost is unchanged.

Data: MNIST (mnist.npz, for the labels) binarized once by sampling each pixel with its grey level as
probability (a fixed draw, seed 0); the first ``--n-train`` training images; ``--n-test`` random test
images (fixed seed). Reported per model: the importance-sampled test NLL (k = ``--k``) on the first
``--n-nll`` of them, and on all of them the ELBO surgery (10 draws per image: average KL, I_q[x, z]
with its cap ln n, KL(q_agg || p)) and whether the code carries the digit: a 1-nearest-neighbour and a
logistic-regression classifier (scikit-learn, benchmarks only) fitted on the posterior means mu(x) of
the training images and scored on the test images' mu(x), and the logistic regression again on one
draw z ~ q(z|x) per image (what the decoder actually receives).
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
from tinydgm.models.hybrid import PixelCNNDecoder  # noqa: E402
from tinydgm.models.latent import ConvEncoder  # noqa: E402
from tinydgm.models.latent.elbo_surgery import elbo_surgery  # noqa: E402
from tinydgm.models.latent.infovae import InfoVAE, mmd_squared  # noqa: E402
from tinydgm.train import fit  # noqa: E402

SECTIONS, section = common.part_registry()
BATCH, LR, LATENT = 50, 1e-3, 16


def binarized_mnist(cfg):
    """(x_train, x_test, y_train, y_test): a fixed stochastic binarization of MNIST, (N, 1, 28, 28)."""
    mnist = td_data.load_mnist(download=False, progress=False)
    rng = np.random.default_rng(0)
    pick = np.sort(np.random.default_rng(12345).choice(len(mnist["x_test"]), cfg.n_test, replace=False))

    def binarize(images):
        return (rng.random(images.shape) < images / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    return (binarize(mnist["x_train"][:cfg.n_train]), binarize(mnist["x_test"][pick]),
            mnist["y_train"][:cfg.n_train], mnist["y_test"][pick])


def build(n_layers, alpha, lambda_, seed, kernel="rbf", kernel_parameter=None, mmd_samples=None):
    """The shared architecture; the same seed gives the same initial weights whatever alpha, lambda and
    the kernel (kernel_parameter None: the model's default, h = sqrt(L) or C = 2L)."""
    rng = td.rng(seed)
    encoder = ConvEncoder((1, 28, 28), LATENT, channels=(32, 64), hidden=(256,), rng=rng)
    decoder = PixelCNNDecoder(LATENT, (1, 28, 28), n_layers=n_layers, channels=32, cond_channels=16, hidden=256,
                              n_upsample=2, kernel_size=5, rng=rng)
    return InfoVAE(encoder, decoder, alpha=alpha, lambda_=lambda_, kernel=kernel, kernel_parameter=kernel_parameter,
                   mmd_samples=mmd_samples, rng=td.rng(seed + 1000))


def check_elbo_case(x, seed):
    """InfoVAE(alpha = 0, lambda = 1) is the ELBO: its objective equals VAE.elbo with the same noise."""
    model = build(1, 0.0, 1.0, seed)
    eps = td.tensor(np.random.default_rng(5).standard_normal((1, len(x), LATENT)).astype(np.float32))
    z_prior = np.random.default_rng(6).standard_normal((len(x), LATENT)).astype(np.float32)
    with td.no_grad():
        objective = model.objective(x, eps=eps, z_prior=z_prior).numpy()
        elbo = model.elbo(x, eps=eps).numpy()
    gap = float(np.abs(objective - elbo).max())
    assert gap < 1e-3, f"InfoVAE(alpha=0, lambda=1) differs from the ELBO by {gap}"
    return gap


def code_accuracy(model, x_train, y_train, x_test, y_test):
    """How much of the digit the code carries: (1-NN on mu(x), logistic regression on mu(x), logistic
    regression on one draw z ~ q(z|x)). The draw matters: a collapsed posterior can keep mu(x) varying
    by a little next to sigma ~ 1, which a classifier on standardised means still reads, while the
    decoder, which sees z, gets almost nothing."""
    draws = np.random.default_rng(4)

    def codes(x):
        mus, zs = [], []
        with td.no_grad():
            for i in range(0, len(x), 500):
                mu, log_var = (t.numpy() for t in model.encoder(td.tensor(x[i:i + 500])))
                mus.append(mu)
                zs.append(mu + np.exp(0.5 * log_var) * draws.standard_normal(mu.shape).astype(mu.dtype))
        return np.concatenate(mus), np.concatenate(zs)
    (mu_train, z_train), (mu_test, z_test) = codes(x_train), codes(x_test)
    d2 = (mu_test ** 2).sum(1)[:, None] + (mu_train ** 2).sum(1)[None, :] - 2 * mu_test @ mu_train.T
    nn_accuracy = float((y_train[d2.argmin(axis=1)] == y_test).mean())
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        return nn_accuracy, float("nan"), float("nan")

    def linear(train, test):
        scaler = StandardScaler().fit(train)
        clf = LogisticRegression(max_iter=1000).fit(scaler.transform(train), y_train)
        return float(clf.score(scaler.transform(test), y_test))
    return nn_accuracy, linear(mu_train, mu_test), linear(z_train, z_test)


def aggregate_against_prior(model, x, seed=7):
    """How far q(z) = mean_x q(z|x) is from p(z) = N(0, I) on the images x, two ways that do not lean on
    the ELBO surgery's mixture over n points (whose KL(q_agg || p) absorbs the information above ln n):
    the unbiased MMD^2 between one draw z ~ q(z|x) per image and as many prior draws (RBF, h = sqrt(L),
    the training kernel's default, whatever kernel the model trained with), and the variance of q(z)
    along each code dimension, Var[mu_d(x)] + E[sigma_d(x)^2] (1 under the prior; a dimension near 0 is
    one the prior covers and q(z) does not, costly in KL, nearly invisible to a broad kernel).
    Returns (MMD^2, smallest per-dimension variance, largest)."""
    draws = np.random.default_rng(seed)
    mus, log_vars = [], []
    with td.no_grad():
        for i in range(0, len(x), 500):
            mu, log_var = model.encoder(td.tensor(x[i:i + 500]))
            mus.append(mu.numpy().astype(np.float64))
            log_vars.append(log_var.numpy().astype(np.float64))
    mu, log_var = np.concatenate(mus), np.concatenate(log_vars)
    z_q = mu + np.exp(0.5 * log_var) * draws.standard_normal(mu.shape)
    z_p = draws.standard_normal(mu.shape)
    mmd = float(mmd_squared(td.tensor(z_q, dtype="float64"), td.tensor(z_p, dtype="float64"), "rbf").numpy())
    variance = mu.var(axis=0) + np.exp(log_var).mean(axis=0)
    return mmd, float(variance.min()), float(variance.max())


def prior_mmd_noise(n, latent_dim, repeats=5, seed=9):
    """The spread of the same MMD^2 estimate between two independent prior samples of n (the noise floor)."""
    draws = np.random.default_rng(seed)
    values = [float(mmd_squared(td.tensor(draws.standard_normal((n, latent_dim)), dtype="float64"),
                                td.tensor(draws.standard_normal((n, latent_dim)), dtype="float64"), "rbf").numpy())
              for _ in range(repeats)]
    return float(np.std(values))


VARIANTS = ("elbo", "info0", "info1", "factorised")


def kernel_label(cfg):
    """The MMD's settings in a row name when not the defaults (RBF, h = sqrt(L), the decoder's draws):
    ", imq", ", h=1", ", imq C=8", ", h=2, K=8"."""
    label = "" if cfg.kernel == "rbf" else f", {cfg.kernel}"
    if cfg.kernel_parameter is not None:
        label += f"{',' if cfg.kernel == 'rbf' else ''} {'h' if cfg.kernel == 'rbf' else 'C'}={cfg.kernel_parameter:g}"
    if cfg.mmd_samples is not None:
        label += f", K={cfg.mmd_samples}"
    return label


def variants(cfg):
    """(row name, PixelCNN layers, alpha, lambda) of the ``--variants`` chosen (each run is independent
    of the others: the same seed gives the same weights and batches, so they may run in separate processes)."""
    lam = cfg.lambda_mmd
    kernel = kernel_label(cfg)
    table = {"elbo": ("elbo", cfg.layers, 0.0, 1.0),
             "info0": (f"infovae alpha=0, lambda={lam:g}{kernel}", cfg.layers, 0.0, lam),
             "info1": (f"infovae alpha=1, lambda={lam:g}{kernel}", cfg.layers, 1.0, lam),
             "factorised": ("elbo, factorised decoder", 0, 0.0, 1.0)}
    return [table[name] for name in cfg.variants.split(",")]


@section("information", "The plain ELBO against InfoVAE with a PixelCNN decoder: NLL, KL, I_q and the code's digit")
def information_part(cfg):
    x_train, x_test, y_train, y_test = binarized_mnist(cfg)
    gap = check_elbo_case(x_test[:20], 0)
    rows = []
    for seed in [int(s) for s in cfg.seeds.split(",")]:
        for name, n_layers, alpha, lambda_ in variants(cfg):
            model = build(n_layers, alpha, lambda_, seed, cfg.kernel, cfg.kernel_parameter,
                          cfg.mmd_samples if alpha + lambda_ != 1.0 else None)
            start = time.perf_counter()
            fit(model, x_train, optim.Adam(model.parameters(), lr=LR), epochs=cfg.epochs, batch_size=BATCH,
                seed=seed, progress=False)
            seconds = time.perf_counter() - start
            model.eval()
            with td.no_grad():
                nll = -float(model.log_prob_estimate(x_test[:cfg.n_nll], k=cfg.k, batch_size=50, chunk_size=25,
                                                     rng=np.random.default_rng(1)).numpy().mean())
                s = elbo_surgery(model, x_test, n_samples=10, rng=np.random.default_rng(2))
            nn_acc, lin_acc, z_acc = code_accuracy(model, x_train, y_train, x_test, y_test)
            mmd, var_min, var_max = aggregate_against_prior(model, x_test)
            rows.append([seed, name, n_layers, f"{nll:.2f}", f"{-s.elbo:.2f}", f"{s.average_kl:.2f}",
                         f"{s.mutual_info:.2f}", f"{s.marginal_kl:.2f}", f"{1e3 * mmd:.2f}",
                         f"{var_min:.2f}–{var_max:.2f}",
                         f"{nn_acc:.1%}", f"{lin_acc:.1%}", f"{z_acc:.1%}", f"{seconds:.0f}"])
            print(rows[-1], flush=True)
    table = common.markdown_table(
        ["seed", "objective", "PixelCNN layers", f"test NLL (k = {cfg.k})", "-ELBO", "KL(q \\|\\| p)",
         f"I_q[x, z] (ln n = {np.log(cfg.n_test):.2f})", "KL(q_agg \\|\\| p)", "MMD^2(q_agg, p) x 1e3",
         "Var q_agg per dim, min–max", "digit acc. 1-NN mu",
         "digit acc. linear mu", "digit acc. linear z", "train s"], rows)
    return (f"{table}\n\nNats per image. NLL on {cfg.n_nll} test images, the rest on {cfg.n_test}; {cfg.epochs} "
            f"epochs on {cfg.n_train} images (batch {BATCH}, Adam {LR:g}); digit accuracy: classifiers fitted on the codes "
            f"(mu(x), or one draw z ~ q(z|x)) of the {cfg.n_train} training images, scored on the test images' codes "
            f"(chance 10%). MMD^2(q_agg, p): the unbiased estimate (RBF, h = sqrt(L)) between one draw z ~ q(z|x) "
            f"per test image and as many prior draws; its spread between two independent prior samples of that size: "
            f"{1e3 * prior_mmd_noise(cfg.n_test, LATENT):.2f} x 1e-3. Var q_agg per dim: Var[mu_d(x)] + "
            f"E[sigma_d(x)^2] over the test images, smallest and largest over the {LATENT} dimensions (1 under the "
            f"prior). InfoVAE(alpha = 0, "
            f"lambda = 1) against VAE.elbo with the same noise: largest difference {gap:.1e} nats.")


def main(argv=None):
    parser = common.parts_parser(__doc__, SECTIONS, quick_help="a smoke run (few images, one epoch)")
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--n-nll", type=int, default=200, help="test images of the importance-sampled NLL")
    parser.add_argument("--k", type=int, default=100, help="importance samples per test image")
    parser.add_argument("--layers", type=int, default=3, help="masked PixelCNN layers of the flexible decoder")
    parser.add_argument("--lambda-mmd", type=float, default=1000.0, help="InfoVAE's lambda")
    parser.add_argument("--kernel", choices=("rbf", "imq"), default="rbf", help="the MMD's kernel (default rbf)")
    parser.add_argument("--kernel-parameter", type=float, default=None,
                        help="the RBF bandwidth h or the IMQ scale C (default h = sqrt(L) = 4, C = 2L = 32)")
    parser.add_argument("--mmd-samples", type=int, default=None,
                        help="fresh draws z ~ q(z|x) per image for the MMD (default: the decoder's one draw)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"which of {','.join(VARIANTS)} to train")
    cfg = parser.parse_args(argv)
    unknown = sorted(set(cfg.variants.split(",")) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; the variants are {list(VARIANTS)}")
    if cfg.kernel_parameter is not None and not cfg.kernel_parameter > 0:
        parser.error(f"--kernel-parameter must be > 0, got {cfg.kernel_parameter}")
    if cfg.mmd_samples is not None and cfg.mmd_samples < 1:
        parser.error(f"--mmd-samples must be >= 1, got {cfg.mmd_samples}")
    if cfg.quick:
        cfg.n_train, cfg.epochs, cfg.n_test, cfg.n_nll, cfg.k = 200, 1, 50, 20, 10
    parts = common.chosen_parts(parser, cfg, SECTIONS)
    pinned = common.pin_threads(cfg.threads)
    info, bodies, elapsed, load0, load1 = common.run_sections(cfg, SECTIONS, parts, pinned)
    command = (f"python benchmarks/quality_infovae.py --threads {cfg.threads} --n-train {cfg.n_train} --epochs "
               f"{cfg.epochs} --n-test {cfg.n_test} --n-nll {cfg.n_nll} --k {cfg.k} --layers {cfg.layers} "
               f"--lambda-mmd {cfg.lambda_mmd:g} --kernel {cfg.kernel}"
               + ("" if cfg.kernel_parameter is None else f" --kernel-parameter {cfg.kernel_parameter:g}")
               + ("" if cfg.mmd_samples is None else f" --mmd-samples {cfg.mmd_samples}")
               + f" --seeds {cfg.seeds} --variants {cfg.variants}")
    head = ["## InfoVAE and the information preference (`benchmarks/quality_infovae.py`)", "",
            common.machine_markdown(info, cfg.threads), "",
            f"Command: `{command}`; {elapsed:.0f} s; load average {load0[0]:.2f} -> {load1[0]:.2f}.", ""]
    common.finish_section(cfg.out, head, bodies)


if __name__ == "__main__":
    main()
