"""A small MNIST classifier trained by tinydgm itself: the "Inception network" of the
sample-quality metrics in ``sample_metrics.py`` (FID and Inception Score analogues).

Published FID and Inception Scores run an ImageNet Inception-v3 network on the samples
(Salimans et al. 2016; Heusel et al. 2017). For 28x28 digits the convention is a digit
classifier instead; this one is an MLP on the engine, small enough to ship inside the
package:

    u = (x - 0.1307) / 0.3081                 x: pixels in [0, 1], flattened to 784
    h = relu(u W1 + b1)                       (N, 256): the features (penultimate layer)
    logits = h W2 + b2,  p(y | x) = softmax(logits)        y = 0..9

Its weights ship as ``mnist_classifier.npz`` beside this module: a tinydgm checkpoint
(``tinydgm.checkpoint``) whose config records the architecture, the training run and the
test accuracy (``load_mnist_classifier().metadata``). They were made by

    TINYDGM_DATA=<folder with mnist.npz> OMP_NUM_THREADS=2 python -c "from
        tinydgm.evaluate.mnist_classifier import train_mnist_classifier as t;
        t(out='tinydgm/evaluate/mnist_classifier.npz')"

i.e. ``train_mnist_classifier()`` with its defaults: the 60,000 MNIST training images,
Adam (lr 1e-3, cosine decay to 0 over the run), batch 128, 12 epochs, seed 0, each
training batch shifted by up to 2 pixels (a random translation per image, zero-filled);
no early stopping, the test set was only evaluated at the end. Test accuracy 98.51%
(``metadata["test_accuracy"]``); 250 s on 2 CPU threads (``metadata["seconds"]``).

Reference values through this network (``REFERENCE``; the best a model can hope for):
the 10,000 MNIST test images against the 60,000 training images have a Frechet distance
of 4.07, and an Inception Score of 9.32 (the ceiling for the test set's label frequencies,
exp(H(y)), is 9.98; the training set scores 9.32 as well). The Frechet distance grows
as samples shrink (two disjoint sets of 10,000 training images: 5.55; 500 embedded test
images against the 1000 embedded training images: 117): compare models at the same,
large sample size (10,000 samples for 256 features). Numbers computed with this network
are comparable across the models of this project, and NOT with published FID or Inception
Scores (a different network, features and data).
"""
import math
import os
import time

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.functional import relu, softmax
from tinydgm.distributions import Categorical
from tinydgm.nn.linear import Linear
from tinydgm.nn.module import Module

__all__ = ["MNISTClassifier", "train_mnist_classifier", "load_mnist_classifier", "save_mnist_classifier",
           "classifier_accuracy", "CLASSIFIER_FILE", "SHIPPED", "REFERENCE", "ClassifierFileError"]

CLASSIFIER_FILE = "mnist_classifier.npz"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081          # of the training pixels x / 255
N_PIXELS, N_CLASSES = 28 * 28, 10
METADATA_KEYS = ("hidden", "test_accuracy", "epochs", "seed", "batch_size", "lr", "max_shift", "data",
                 "train_examples", "seconds", "command")
# What the shipped file says about itself (checked against its metadata by the tests).
SHIPPED = {"hidden": 256, "epochs": 12, "seed": 0}
# MNIST test images vs training images through the shipped classifier (checked by the tests).
REFERENCE = {"fid_test_vs_train": 4.07, "is_test": 9.32}


class ClassifierFileError(ValueError):
    """The classifier's weight file is missing, damaged, or not a file this module wrote."""


class MNISTClassifier(Module):
    """784 -> hidden (ReLU) -> 10 logits; ``features`` is the hidden layer, ``probs`` the
    softmax. Inputs: (N, 28, 28), (N, 1, 28, 28) or (N, 784) pixels, integers 0..255 or
    floats in [0, 1] (map tanh samples in [-1, 1] with ``tinydgm.data.symmetric_to_unit``)."""

    own_input_rule = True      # integer pixels mean 0..255: ``_pixels`` converts them, not the generic cast

    def __init__(self, hidden=256, rng=None, dtype=None, device=None):
        super().__init__()
        if isinstance(hidden, bool) or int(hidden) != hidden or hidden < 1:
            raise ValueError(f"MNISTClassifier: hidden must be a positive integer, got {hidden!r}")
        self.hidden_size = int(hidden)
        self.hidden = Linear(N_PIXELS, self.hidden_size, rng=rng, dtype=dtype, device=device)
        self.out = Linear(self.hidden_size, N_CLASSES, rng=rng, dtype=dtype, device=device)
        self.rng = rng                  # draws the training shifts; train.fit lends its generator
        self.max_shift = 0              # set by train_mnist_classifier: augmentation in loss only
        self.metadata = {}

    # --- the network
    def features(self, x):
        """h = relu(u W1 + b1), the penultimate layer, (N, hidden) Tensor."""
        u = (self._pixels(x, "features") - MNIST_MEAN) / MNIST_STD
        return relu(self.hidden(u))

    def forward(self, x):
        """logits (N, 10)."""
        return self.out(self.features(x))

    def probs(self, x):
        """p(y | x) = softmax(logits), (N, 10) Tensor."""
        return softmax(self(x), axis=-1)

    def loss(self, batch):
        """Mean cross-entropy -1/N sum_n log p(y_n | x_n) of a batch (x, y), x shifted by up
        to ``max_shift`` pixels per image when training."""
        x, y = batch
        if self.training and self.max_shift:
            x = _random_shift(self._pixels(x, "loss").reshape(-1, 28, 28), self.max_shift, self.rng)
        return -Categorical(logits=self(x)).log_prob(y).mean()

    def predict(self, x):
        """The most probable class, a backend integer array (N,)."""
        with no_grad():
            return self(x).data.argmax(axis=-1)

    # --- inputs
    def _pixels(self, x, who):
        """Images as an (N, 784) Tensor of floats in [0, 1] in the model's dtype and device."""
        data = x.data if isinstance(x, Tensor) else x
        if not backend.is_array(data):
            data = backend.as_array(data, device=self.hidden.weight.device)
        if data.ndim < 2 or data.size != data.shape[0] * N_PIXELS:
            raise ValueError(f"MNISTClassifier.{who}: images must have shape (N, 28, 28), (N, 1, 28, 28) or "
                             f"(N, 784), got {tuple(data.shape)}")
        if data.dtype.kind in "ui":
            data = data / 255.0
        elif data.dtype.kind != "f":
            raise TypeError(f"MNISTClassifier.{who}: images must be integer pixels 0..255 or floats in "
                            f"[0, 1], got dtype {data.dtype}")
        if data.size and not (float(data.min()) >= 0 and float(data.max()) <= 1):    # also catches NaN
            raise ValueError(f"MNISTClassifier.{who}: pixels must lie in [0, 1] (integers in 0..255), got "
                             f"range [{float(data.min())}, {float(data.max())}]; map [-1, 1] samples with "
                             "tinydgm.data.symmetric_to_unit, clip a flow's samples")
        weight = self.hidden.weight
        data = backend.to_device(data, weight.device).astype(weight.dtype, copy=False)
        return Tensor(data.reshape(data.shape[0], N_PIXELS))          # a constant: no gradient to x

    def extra_repr(self):
        acc = self.metadata.get("test_accuracy")
        return f"784 -> {self.hidden_size} -> 10" + ("" if acc is None else f", test accuracy {acc:.4f}")


def _random_shift(x, max_shift, rng):
    """Translate each image (N, 28, 28) by (dy, dx) ~ U{-max_shift..max_shift}^2, zero-filled."""
    xp = backend.xp_of(x.data)
    gen = backend.default_generator() if rng is None else rng
    n = x.shape[0]
    shifts = backend.to_device(gen.integers(-max_shift, max_shift + 1, size=(n, 2)), backend.device_of(x.data))
    padded = xp.pad(x.data, ((0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    rows = (max_shift - shifts[:, 0])[:, None] + xp.arange(28)[None, :]            # (N, 28)
    cols = (max_shift - shifts[:, 1])[:, None] + xp.arange(28)[None, :]
    out = padded[xp.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return Tensor(out.reshape(n, N_PIXELS))


def classifier_accuracy(classifier, x, y, batch_size=1000):
    """Fraction of images whose most probable class is the label y (ints 0..9)."""
    y = backend.to_numpy(y.data if isinstance(y, Tensor) else backend.as_array(y))
    n = len(y)
    if n == 0 or x.shape[0] != n:
        raise ValueError(f"classifier_accuracy: need as many labels as images (at least one), got "
                         f"{x.shape[0]} images and {n} labels")
    correct = 0
    for start in range(0, n, batch_size):
        predicted = backend.to_numpy(classifier.predict(x[start:start + batch_size]))
        correct += int((predicted == y[start:start + batch_size]).sum())
    return correct / n


# ----------------------------------------------------------------------------- training

def train_mnist_classifier(path=None, epochs=12, hidden=256, batch_size=128, lr=1e-3, max_shift=2, seed=0,
                           out=None, progress=True, data=None):
    """Train the classifier on the 60,000 MNIST training images (``tinydgm.data.load_mnist``:
    ``path`` or the ``TINYDGM_DATA`` folder) and measure its accuracy on the 10,000 test
    images. Adam(lr) with cosine decay to 0 over the run, ``epochs`` passes in batches of
    ``batch_size``, random shifts of up to ``max_shift`` pixels, everything seeded by ``seed``.
    ``data``: a dict with x_train, y_train, x_test, y_test to use instead of MNIST (e.g. the
    embedded subset, for a quick run). Writes the weights and metadata to ``out`` when given.
    Returns the trained classifier (its ``metadata`` holds the test accuracy and the settings)."""
    from tinydgm.data import load_mnist
    from tinydgm.optim import Adam, CosineLR
    from tinydgm.train import fit

    started = time.perf_counter()
    if data is None:
        mnist = load_mnist(path=path, progress=progress)
        description = "MNIST (LeCun et al. 1998): the 60,000 training images; accuracy on the 10,000 test images"
    else:
        mnist = data
        description = (f"user-supplied arrays: {len(data['x_train'])} training images; accuracy on "
                       f"{len(data['x_test'])} test images")
    x_train = mnist["x_train"].reshape(-1, N_PIXELS)
    y_train = mnist["y_train"].astype("int64")
    model = MNISTClassifier(hidden, rng=backend.rng(seed))
    model.max_shift = int(max_shift)
    optimizer = Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x_train) / batch_size)
    fit(model, (x_train, y_train), optimizer, epochs, batch_size, seed=seed,
        scheduler=CosineLR(optimizer, steps), scheduler_interval="step", progress=progress)
    model.eval()
    model.metadata = {
        "hidden": int(hidden), "epochs": int(epochs), "seed": int(seed), "batch_size": int(batch_size),
        "lr": float(lr), "max_shift": int(max_shift), "train_examples": int(len(x_train)),
        "data": description,
        "test_accuracy": classifier_accuracy(model, mnist["x_test"], mnist["y_test"]),
        "seconds": round(time.perf_counter() - started, 1),
        "command": "train_mnist_classifier(" + ", ".join(
            f"{k}={v!r}" for k, v in dict(epochs=epochs, hidden=hidden, batch_size=batch_size, lr=lr,
                                          max_shift=max_shift, seed=seed).items()) + ")",
    }
    if out is not None:
        save_mnist_classifier(model, out)
    return model


# ----------------------------------------------------------------------------- the weight file

def save_mnist_classifier(model, path):
    """Write the weights and ``model.metadata`` (as the checkpoint's config) to ``path``."""
    from tinydgm import checkpoint
    missing = [k for k in METADATA_KEYS if k not in model.metadata]
    if missing:
        raise ValueError(f"save_mnist_classifier: model.metadata lacks {missing}")
    return checkpoint.save(path, model, config=dict(model.metadata, kind="tinydgm MNISTClassifier"))


_CACHE = {}


def load_mnist_classifier(path=None, device="cpu"):
    """The classifier from ``path`` (default: the file shipped in the package), in eval mode,
    with ``.metadata`` (test_accuracy, epochs, seed, data, ...). The file is checked: a
    tinydgm checkpoint of an MNISTClassifier, every metadata entry present, every weight of
    the expected shape; else ClassifierFileError says what is wrong. Loaded once per
    (path, device) and cached: do not train the returned object."""
    if path is None:
        import importlib.resources
        resource = importlib.resources.files("tinydgm.evaluate").joinpath(CLASSIFIER_FILE)
        path = str(resource)
        if not resource.is_file():
            raise ClassifierFileError(f"load_mnist_classifier: the package file tinydgm/evaluate/{CLASSIFIER_FILE} "
                                      "is missing (an install without package data?); reinstall tinydgm or "
                                      "make one with train_mnist_classifier(out=...)")
    path = os.fspath(path)
    key = (os.path.abspath(path), device)
    if key not in _CACHE:
        _CACHE[key] = _read_classifier(path).to(device)
    return _CACHE[key]


def _read_classifier(path):
    from tinydgm import checkpoint
    if not os.path.isfile(path):
        raise ClassifierFileError(f"load_mnist_classifier: no file at {path}")
    try:
        ckpt = checkpoint.load(path)
    except checkpoint.CheckpointError as err:
        raise ClassifierFileError(f"load_mnist_classifier: {path} is not a classifier file: {err}") from None
    meta = ckpt.config
    if meta.get("kind") != "tinydgm MNISTClassifier":
        raise ClassifierFileError(f"load_mnist_classifier: {path} is a tinydgm checkpoint but not of an "
                                  f"MNISTClassifier (config kind {meta.get('kind')!r})")
    missing = [k for k in METADATA_KEYS if k not in meta]
    if missing:
        raise ClassifierFileError(f"load_mnist_classifier: {path} lacks the metadata {missing}")
    model = MNISTClassifier(meta["hidden"])
    try:
        model.load_state_dict(ckpt.model_state)
    except (KeyError, ValueError) as err:
        message = err.args[0] if err.args else str(err)
        raise ClassifierFileError(f"load_mnist_classifier: the weights in {path} do not fit a 784-"
                                  f"{meta['hidden']}-10 classifier: {message}") from None
    model.metadata = {k: meta[k] for k in METADATA_KEYS}
    model.eval()
    return model

