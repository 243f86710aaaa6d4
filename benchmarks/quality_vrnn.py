"""Quality of the variational RNN against its RNN baselines at one budget (issue 17; Chung et al.
2015 Table 1 compares VRNN with RNN-Gauss and RNN-GMM the same way, on speech and handwriting).

    python benchmarks/quality_vrnn.py [--quick] [--minutes 3 | --steps N] [--threads 1] [--out SECTION.md] [--parts walk,mnist]
    (mnist needs TINYDGM_DATA=<folder with binarized_mnist.npz>)

walk: the switching walk of ``tinydgm.data.switching_walk`` (3 regimes, stay 0.9, Laplace steps;
T = 20 steps in R^2), given to the models as (x_1, x_2 - x_1, ..., x_T - x_{T-1}), a map with unit
Jacobian, so the log-densities of the increments and of the positions are the same number and
the exact log-density by the forward algorithm is the floor every model's NLL approaches. 5,000
training and 1,000 test sequences. Models, all with an LSTM of 64 units and feature/hidden layers
of 64: the RNN with a Gaussian output (RNN-Gauss), the RNN with a 5-component Gaussian-mixture
output (RNN-GMM), and the VRNN with z_t in R^2 and a Gaussian output (VRNN-Gauss). Each trains
with Adam (lr 1e-3, batch 64) for the same wall-clock budget (--minutes each; or the same number
of optimizer steps with --steps, rounded up to whole epochs). Reported: the
test NLL in nats per sequence (RNNs: exact; VRNN: the k = 500 importance-sampled estimate, which
is a stochastic lower bound on log p, so its NLL is an upper bound, and the ELBO).

mnist: binarized MNIST read as 28 rows of 28 pixels (``tinydgm.data.load_mnist_rows``): the RNN
with a Bernoulli output against the VRNN with z_t in R^8 and a Bernoulli decoder, the same budget,
test NLL on the first 1,000 test images (VRNN by the k = 500 estimate).
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm.data import load_mnist_rows, switching_walk, switching_walk_log_density  # noqa: E402
from tinydgm.models import VRNN, AutoregressiveRNN  # noqa: E402

SECTIONS, section = common.part_registry()
WALK = dict(n_regimes=3, stay=0.9, speed=0.5, noise=0.1, init_scale=1.0)


def increments(x):
    """(x_1, x_2 - x_1, ..., x_T - x_{T-1}): unit Jacobian, so log p is unchanged."""
    return np.concatenate([x[:, :1], np.diff(x, axis=1)], axis=1)


def train(model, data, cfg, seed=0):
    """Adam (lr 1e-3, batch 64) on model.loss until the budget is spent (whole epochs): cfg.minutes
    of wall-clock time, or cfg.steps optimizer steps when given; returns (seconds, steps, epochs)."""
    optimizer = td.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()

    def on_epoch_end(epoch, history, model):
        if cfg.steps:
            return len(history["loss"]) < cfg.steps
        return time.perf_counter() - start < 60 * cfg.minutes
    history = td.train.fit(model, data, optimizer, epochs=10_000, batch_size=64, seed=seed, progress=False,
                           on_epoch_end=on_epoch_end)
    return time.perf_counter() - start, len(history["loss"]), len(history["epoch_loss"])


def test_nll(model, x, k=500):
    """(NLL in nats per sequence, ELBO NLL or None): exact for the RNN, k-sample estimate for the VRNN."""
    with td.no_grad():
        if isinstance(model, AutoregressiveRNN):
            return -float(np.concatenate([model.log_prob(x[i:i + 500]).numpy() for i in range(0, len(x), 500)]).mean()), None
        estimate = td.evaluate.importance_log_likelihood(model, x, k=k, batch_size=50, chunk_size=100,
                                                         rng=np.random.default_rng(1))
        elbo = np.concatenate([model.elbo(x[i:i + 500], rng=np.random.default_rng(2)).numpy()
                               for i in range(0, len(x), 500)])
        return -estimate.mean, -float(elbo.mean())


def budget(cfg):
    return f"{cfg.steps} steps (whole epochs)" if cfg.steps else f"{cfg.minutes:g} min"


def results_table(rows):
    return common.markdown_table(["model", "parameters", "steps (epochs) in the budget", "test NLL, nats / sequence",
                                  "test -ELBO"], rows)


@section("walk", "Switching walk: VRNN vs RNN-Gauss and RNN-GMM")
def part_walk(cfg):
    n_train, n_test = (1000, 200) if cfg.quick else (5000, 1000)
    x_train = switching_walk(n_train, 20, rng=0, dtype="float64", **WALK)
    x_test = switching_walk(n_test, 20, rng=1, dtype="float64", **WALK)
    floor = -float(switching_walk_log_density(x_test, **WALK).mean())
    data_train, data_test = increments(x_train).astype(np.float32), increments(x_test).astype(np.float32)
    models = {
        "RNN-Gauss": AutoregressiveRNN(2, 64, 64, length=20, rng=np.random.default_rng(0)),
        "RNN-GMM (5 components)": AutoregressiveRNN(2, 64, 64, n_components=5, length=20, rng=np.random.default_rng(0)),
        "VRNN-Gauss (z in R^2)": VRNN(2, 2, 64, 64, length=20, rng=np.random.default_rng(0)),
    }
    rows = []
    for name, model in models.items():
        seconds, steps, epochs = train(model, data_train, cfg)
        nll, neg_elbo = test_nll(model, data_test, k=100 if cfg.quick else 500)
        print(f"  {name}: {steps} steps ({epochs} epochs) in {seconds:.0f} s, test NLL {nll:.2f}"
              + (f", -ELBO {neg_elbo:.2f}" if neg_elbo is not None else ""), flush=True)
        rows.append([name, f"{model.num_parameters():,}", f"{steps} ({epochs})", f"{nll:.2f}",
                     "" if neg_elbo is None else f"{neg_elbo:.2f}"])
    rows.append(["the generator itself (forward algorithm, exact)", "", "", f"{floor:.2f}", ""])
    return (f"{n_train} training / {n_test} test sequences, T = 20; {budget(cfg)} of training per model, "
            f"{cfg.threads} thread(s).\n\n" + results_table(rows))


@section("mnist", "MNIST rows: VRNN vs RNN with Bernoulli outputs")
def part_mnist(cfg):
    n_train, n_test = (2000, 200) if cfg.quick else (50000, 1000)
    train_rows = load_mnist_rows("train")[:n_train].astype(np.float32)
    test_rows = load_mnist_rows("test")[::10][:n_test].astype(np.float32)      # every 10th: all classes
    models = {
        "RNN-Bernoulli": AutoregressiveRNN(28, 128, 128, output="bernoulli", length=28, rng=np.random.default_rng(0)),
        "VRNN-Bernoulli (z in R^8)": VRNN(28, 8, 128, 128, output="bernoulli", length=28,
                                          rng=np.random.default_rng(0)),
    }
    rows = []
    for name, model in models.items():
        seconds, steps, epochs = train(model, train_rows, cfg)
        nll, neg_elbo = test_nll(model, test_rows, k=100 if cfg.quick else 500)
        print(f"  {name}: {steps} steps in {seconds:.0f} s, test NLL {nll:.2f}", flush=True)
        rows.append([name, f"{model.num_parameters():,}", f"{steps} ({epochs})", f"{nll:.2f}",
                     "" if neg_elbo is None else f"{neg_elbo:.2f}"])
    return (f"{n_train} training images, {n_test} test images (every 10th of the binarized test split), "
            f"{budget(cfg)} of training per model, {cfg.threads} thread(s).\n\n" + results_table(rows))


def main():
    parser = common.parts_parser(__doc__, SECTIONS, quick_help="small data and k = 100 (a smoke run)")
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per model (default 3)")
    parser.add_argument("--steps", type=int, default=None, help="a budget of optimizer steps instead of minutes")
    cfg = parser.parse_args()
    parts = common.chosen_parts(parser, cfg, SECTIONS)
    pinned = common.pin_threads(cfg.threads)
    info, bodies, elapsed, load0, load = common.run_sections(cfg, SECTIONS, parts, pinned)
    head = ["## Variational RNN against the RNN baselines", "", common.machine_markdown(info, cfg.threads),
            f"- load average {load0[0]:.2f} at the start, {load[0]:.2f} at the end; {elapsed:.0f} s in all", ""]
    common.finish_section(cfg.out, head, bodies)


if __name__ == "__main__":
    main()
