"""Quality, not speed: the semi-supervised M2 (Kingma, Rezende, Mohamed & Welling 2014) on
MNIST with 100 labels (10 per class), the paper's Table 1 protocol at a budget that fits a
laptop CPU. The paper reports 11.97% test error (M2 alone, 100 labels); its budget (hundreds
of epochs over all 50,000 unlabelled images) is out of reach here, so the command records
how many epochs and unlabelled images this run used.

    TINYDGM_DATA=<folder with mnist.npz> python benchmarks/quality_m2.py --epochs 20 --unlabelled 10000

Data: the first 50,000 training images, binarized dynamically once per run with the seed
(each pixel on with probability gray / 255); 10 labelled images per class drawn at random;
the labelled pairs are repeated so that most minibatches hold some (``semi_supervised_data``).
Model: 784-500-50 with softplus hidden units (the paper's M2 on MNIST), Adam lr 3e-4,
batch 100, alpha = ``--alpha-scale`` times the paper's 0.1 N / N_l per labelled example (``paper_alpha``),
divided by the repetition.

The default alpha-scale is 100, not the paper's 1: at this budget the paper's weight lets the
unlabelled term pull the classifier away from the labels (short runs, 4 epochs over 10,000 unlabelled
images: 40.6% test error at scale 1, 27.8% at 10, 25.5% at 100; the classifier on the labelled term
alone plateaus at 25.2-25.5%). ``--alpha-scale 1`` gives the paper's weighting.

The PyTorch twin (``--side PyTorch``) trains the same M2 by hand in torch: the same three MLPs
(torch.nn.Linear, softplus) with the tinydgm model's initial weights copied, the same objective (the
exact sum over the 10 classes, alpha log q(y|x) on each labelled example, -J / B per batch), the same
stream (each epoch's order and every eps drawn from a NumPy generator seeded as ``train.fit`` seeds
it, in the order ``M2.loss`` draws them), the same Adam (lr 3e-4, betas 0.9 / 0.999, eps 1e-8). Its
weights are copied back into the tinydgm model after each epoch and scored by the same ``predict``
on the same test images. Before training, that side checks that the two objectives and all their
gradients agree on one mixed batch in float64 with the same noise (to 1e-8), and it records its first
step losses in float32 beside those of ``fit`` (the same batches and noise on both sides).

    python benchmarks/quality_m2.py --side PyTorch --out torch.json     (beside the tinydgm run)
    python benchmarks/quality_m2.py --report tinydgm.json torch.json    (the curves side by side)
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tinydgm as td  # noqa: E402
from tinydgm.data.mnist import load_mnist  # noqa: E402
from tinydgm.models.latent import M2, UNLABELLED, paper_alpha, semi_supervised_data  # noqa: E402

PAPER_ERROR = 0.1197      # Kingma et al. 2014, Table 1, M2, 100 labels
FIGURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures", "m2_curves.png")
N_FIRST = 5               # first step losses recorded on each side (float32 agreement of the streams)


def binarize(images, rng):
    """Dynamic binarization, once: pixel on with probability gray level / 255."""
    flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return (rng.random(flat.shape) < flat).astype(np.float32)


# ----------------------------------------------------------------------------- the PyTorch twin

def linear_pairs(model, twin):
    """(tinydgm Linear, torch.nn.Linear) for the classifier, the encoder and the decoder, in order."""
    import torch
    ours = [m for net in (model.classifier, model.encoder.net, model.decoder.net) for m in net
            if type(m).__name__ == "Linear"]
    theirs = [m for net in (twin.classifier, twin.encoder, twin.decoder) for m in net
              if isinstance(m, torch.nn.Linear)]
    return list(zip(ours, theirs))


class TorchM2:
    """The twin of ``tinydgm.models.latent.M2`` (Bernoulli decoder, MLPs with softplus units):

        L(x, y) = 1/S sum_s log p(x|y, z_s) - log K - KL(q(z|x, y) || N(0, I)),  z_s = mu + exp(log_var / 2) eps_s
        U(x)    = sum_y q(y|x) L(x, y) + H(q(y|x))
        J       = sum_labelled [L(x, y) + alpha log q(y|x)] + sum_unlabelled U(x),   loss = -J / B
    """

    def __init__(self, model, dtype):
        import torch
        self.torch, self.dtype = torch, dtype
        self.k, self.latent_dim, self.alpha = model.n_classes, model.latent_dim, model.alpha
        self.classifier = self._mlp(model.classifier, dtype)
        self.encoder = self._mlp(model.encoder.net, dtype)
        self.decoder = self._mlp(model.decoder.net, dtype)

    def _mlp(self, net, dtype):
        from common import torch_linear
        torch = self.torch
        layers = []
        for m in net:
            layers.append(torch_linear(m, dtype) if type(m).__name__ == "Linear" else torch.nn.Softplus())
        return torch.nn.Sequential(*layers)

    def parameters(self):
        return [p for net in (self.classifier, self.encoder, self.decoder) for p in net.parameters()]

    def _one_hot(self, y):
        return self.torch.nn.functional.one_hot(y, self.k).to(self.dtype)

    def _bound(self, x, onehot, eps):
        torch, f = self.torch, self.torch.nn.functional
        mu, log_var = self.encoder(torch.cat([x, onehot], dim=1)).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * log_var) * eps                                        # (S, M, L)
        logits = self.decoder(torch.cat([z, onehot.expand(z.shape[0], -1, -1)], dim=-1))
        log_px = -f.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        kl = -0.5 * (1 + log_var - mu * mu - torch.exp(log_var)).sum(-1)
        return log_px.mean(0) - math.log(self.k) - kl

    def objective(self, x_l, y_l, x_u, eps_l, eps_u):
        torch = self.torch
        total = 0.0
        if len(x_l):
            log_q = torch.log_softmax(self.classifier(x_l), dim=-1)
            total = total + (self._bound(x_l, self._one_hot(y_l), eps_l)
                             + self.alpha * log_q.gather(1, y_l[:, None])[:, 0]).sum()
        if len(x_u):
            n = len(x_u)
            log_q = torch.log_softmax(self.classifier(x_u), dim=-1)
            classes = torch.arange(self.k).repeat_interleave(n)                         # class k for block k
            bounds = self._bound(x_u.repeat(self.k, 1), self._one_hot(classes),
                                 eps_u.reshape(eps_u.shape[0], self.k * n, -1)).reshape(self.k, n).T
            q = torch.exp(log_q)
            total = total + ((q * bounds).sum(-1) - (q * log_q).sum(-1)).sum()
        return total

    def loss(self, x, y, eps_l, eps_u):
        """-J / B for a batch (x, y), y = -1 unlabelled; eps as M2.loss draws them."""
        labelled, unlabelled = np.flatnonzero(y != UNLABELLED), np.flatnonzero(y == UNLABELLED)
        t = self._tensor
        return -self.objective(t(x[labelled]), self.torch.from_numpy(y[labelled]), t(x[unlabelled]),
                               t(eps_l), t(eps_u)) / len(x)

    def _tensor(self, a):
        return None if a is None else self.torch.as_tensor(np.asarray(a), dtype=self.dtype)


def stream_noise(y, latent_dim, n_classes, gen):
    """The eps M2.loss draws for a batch with labels y, in its order: (1, N_l, L), then (1, K, N_u, L)."""
    n_l, n_u = int((y != UNLABELLED).sum()), int((y == UNLABELLED).sum())
    eps_l = gen.standard_normal(size=(1, n_l, latent_dim)) if n_l else None
    eps_u = gen.standard_normal(size=(1, n_classes, n_u, latent_dim)) if n_u else None
    return eps_l, eps_u


def copy_back(model, twin):
    """The twin's weights into the tinydgm model (for the shared evaluation)."""
    for lin, layer in linear_pairs(model, twin):
        lin.weight.data[...] = layer.weight.detach().numpy().T
        lin.bias.data[...] = layer.bias.detach().numpy()


def check_float64(data, alpha, seed):
    """The twin's loss and every gradient equal tinydgm's in float64 on one mixed batch (the first
    20 labelled and 80 unlabelled examples of the stream) with the same noise. Returns the two losses
    and the largest gradient difference relative to the largest gradient entry."""
    import torch
    x, y = data
    idx = np.concatenate([np.flatnonzero(y != UNLABELLED)[:20], np.flatnonzero(y == UNLABELLED)[:80]])
    x, y = x[idx].astype(np.float64), y[idx]
    model = M2(784, 10, latent_dim=50, hidden=(500,), activation="softplus", alpha=alpha,
               rng=np.random.default_rng(seed + 1), dtype="float64")
    twin = TorchM2(model, torch.float64)
    gen = np.random.default_rng(123)
    eps_l, eps_u = stream_noise(y, 50, 10, gen)
    lab, unl = np.flatnonzero(y != UNLABELLED), np.flatnonzero(y == UNLABELLED)
    ours = -model.objective(td.tensor(x[lab]), y[lab], td.tensor(x[unl]), eps_labelled=td.tensor(eps_l),
                            eps_unlabelled=td.tensor(eps_u)) / len(x)
    ours.backward()
    theirs = twin.loss(x, y, eps_l, eps_u)
    theirs.backward()
    a, b = float(ours.item()), float(theirs.item())
    assert abs(a - b) <= 1e-8 * abs(b), f"float64 losses differ: tinydgm {a!r}, PyTorch {b!r}"
    diffs, scale = [], 0.0
    for lin, layer in linear_pairs(model, twin):
        for g, h in ((lin.weight.grad.numpy(), layer.weight.grad.numpy().T),
                     (lin.bias.grad.numpy(), layer.bias.grad.numpy())):
            diffs.append(float(np.abs(g - h).max()))
            scale = max(scale, float(np.abs(h).max()))
    assert max(diffs) <= 1e-8 * scale, f"float64 gradients differ by {max(diffs):.3g} (largest entry {scale:.3g})"
    return {"loss_tinydgm": a, "loss_torch": b, "max_grad_diff_relative": max(diffs) / scale}


def train_torch(model, data, args, test_error, log):
    """The twin's training: the stream of ``train.fit`` (order and eps from
    default_rng(seed * 1000 + epoch)), torch.optim.Adam; returns the curve and the first step losses."""
    import torch
    twin = TorchM2(model, torch.float32)
    opt = torch.optim.Adam(twin.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    x, y = data
    curve, first, start = [], [], time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        gen = np.random.default_rng(args.seed * 1000 + epoch)
        order = gen.permutation(len(x))
        for begin in range(0, len(x), 100):
            idx = order[begin:begin + 100]
            eps_l, eps_u = stream_noise(y[idx], model.latent_dim, model.n_classes, gen)
            opt.zero_grad(set_to_none=True)
            loss = twin.loss(x[idx], y[idx], None if eps_l is None else eps_l.astype(np.float32),
                             None if eps_u is None else eps_u.astype(np.float32))
            loss.backward()
            opt.step()
            if len(first) < N_FIRST:
                first.append(float(loss.item()))
        copy_back(model, twin)
        curve.append(log(epoch, test_error(), start))
    return curve, first


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--unlabelled", type=int, default=10000, help="unlabelled training images (max 49,900)")
    parser.add_argument("--repeat", type=int, default=10, help="times each labelled pair appears per epoch")
    parser.add_argument("--alpha-scale", type=float, default=100.0,
                        help="multiple of the paper's alpha (1: the paper's 0.1 N / N_l per labelled example)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", choices=("tinydgm", "PyTorch"), default="tinydgm",
                        help="train with tinydgm (train.fit) or the PyTorch twin")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch's intra-op threads (the twin)")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.add_argument("--report", nargs="+", metavar="JSON", default=None,
                        help="no training: the curves of these runs' JSON files side by side, and the figure")
    args = parser.parse_args(argv)
    if args.report:
        return report(args.report)

    rng = np.random.default_rng(args.seed)
    mnist = load_mnist(download=False)
    x_train = binarize(mnist["x_train"][:50000], rng)
    y_train = mnist["y_train"][:50000].astype(np.int64)
    labelled = np.concatenate([rng.choice(np.flatnonzero(y_train == c), 10, replace=False) for c in range(10)])
    unlabelled = rng.permutation(np.setdiff1d(np.arange(50000), labelled))[:args.unlabelled]
    data = semi_supervised_data(x_train[labelled], y_train[labelled], x_train[unlabelled], repeat=args.repeat)

    alpha = args.alpha_scale * paper_alpha(50000, 100) / args.repeat
    model = M2(784, 10, latent_dim=50, hidden=(500,), activation="softplus", alpha=alpha,
               rng=np.random.default_rng(args.seed + 1))
    optimizer = td.optim.Adam(model.parameters(), lr=args.lr)
    x_test = binarize(mnist["x_test"], rng)

    def test_error():
        with td.no_grad():
            predicted = np.concatenate([model.predict(x_test[i:i + 1000]).numpy() for i in range(0, 10000, 1000)])
        return float((predicted != mnist["y_test"]).mean())

    def log(epoch, error, start):
        entry = {"epoch": epoch, "test_error": error, "seconds": time.perf_counter() - start}
        print(f"{args.side}: epoch {epoch:3d}  test error {100 * error:6.2f}%  ({entry['seconds']:.0f} s)", flush=True)
        return entry

    extra = {}
    if args.side == "PyTorch":
        import torch
        torch.set_num_threads(args.threads)
        extra["float64_check"] = check_float64(data, alpha, args.seed)
        print("float64 check:", extra["float64_check"], flush=True)
        curve, extra["first_losses"] = train_torch(model, data, args, test_error, log)
    else:
        curve, first, start = [], [], time.perf_counter()
        for epoch in range(1, args.epochs + 1):
            history = td.train.fit(model, data, optimizer, epochs=1, batch_size=100, seed=args.seed * 1000 + epoch,
                                   progress=False)
            first += [float(v) for v in history["loss"][:N_FIRST - len(first)]]
            curve.append(log(epoch, test_error(), start))
        extra["first_losses"] = first

    result = {"side": args.side, "paper_test_error": PAPER_ERROR, "final_test_error": curve[-1]["test_error"],
              "best_test_error_seen": min(c["test_error"] for c in curve), "args": vars(args), "curve": curve,
              "load": os.getloadavg(), **extra}
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


def report(paths):
    """The test-error curves of several runs side by side (markdown on stdout) and FIGURE."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    name = [f"{r['side']} seed {r['args']['seed']}, alpha x{r['args']['alpha_scale']:g}" for r in runs]
    print("| epoch | " + " | ".join(name) + " |")
    print("|---" * (len(runs) + 1) + "|")
    for i in range(max(len(r["curve"]) for r in runs)):
        cells = [f"{100 * r['curve'][i]['test_error']:.1f}" if i < len(r["curve"]) else "" for r in runs]
        print(f"| {i + 1} | " + " | ".join(cells) + " |")
    print("| time | " + " | ".join(f"{r['curve'][-1]['seconds']:.0f} s" for r in runs) + " |")
    for n, r in zip(name, runs):
        print(f"{n}: first step losses {', '.join(f'{v:.4f}' for v in r['first_losses'])}"
              + (f"; float64 check {r['float64_check']}" if "float64_check" in r else ""))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    fig, ax = plt.subplots(figsize=(7, 4))
    for n, r in zip(name, runs):
        style = "-" if r["side"] == "tinydgm" else "--"
        ax.plot([c["epoch"] for c in r["curve"]], [100 * c["test_error"] for c in r["curve"]], style, marker="o",
                ms=3, label=n)
    ax.axhline(100 * PAPER_ERROR, color="gray", lw=0.8, ls=":")
    ax.text(1, 100 * PAPER_ERROR, " published M2, 100 labels", va="bottom", fontsize=7, color="gray")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("test error (%)")
    ax.set_title("M2 with 100 labels: tinydgm against its PyTorch twin", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(FIGURE), exist_ok=True)
    fig.savefig(FIGURE, dpi=110)
    print(f"wrote {FIGURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
