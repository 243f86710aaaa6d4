"""A small image set shipped inside the package, so every image demo runs offline.

``mnist_small.npz`` (about 245 kB) holds the first 1000 training and the first 500 test
images of MNIST, in the original IDX order, as 28x28 uint8 gray levels with their uint8
labels. Source, selection, checksums and licence (MNIST: LeCun, Cortes & Burges, CC BY-SA
3.0) are in ``tinydgm/data/README.md``.

    d = load_embedded()                    # {"x": (1000, 28, 28) uint8, "y": (1000,) uint8}
    t = load_embedded("test")              # the 500 held-out images
    b = load_embedded_binarized()          # the same images, binarized by a fixed seeded rule

For full MNIST and the standard binarized MNIST, use ``load_mnist`` and
``load_binarized_mnist`` (tinydgm/data/mnist.py).
"""
import hashlib
import importlib.resources

import numpy as np

from tinydgm.data.transforms import dynamic_binarize

__all__ = ["load_embedded", "load_embedded_binarized", "EMBEDDED_FILE", "EMBEDDED_SHA256",
           "EMBEDDED_SIZES"]

EMBEDDED_FILE = "mnist_small.npz"
EMBEDDED_SIZES = {"train": 1000, "test": 500}
# hashlib.sha256(array.tobytes()): independent of the zip timestamps inside the .npz
EMBEDDED_SHA256 = {
    "x_train": "2304e0137aea1f236247daacc2dcaf275996895e40c4bb0760c448434d361d1a",
    "y_train": "b03ead2884240483d956c7feac7a9b39d28685062da0a980bb73d2196dc506b8",
    "x_test": "6e96778c418dfcfff0dcfdbcb4af54d86e5c54326bf5e7ead99cf94b6434a405",
    "y_test": "8f1017277349b4d0cf35af1d8eb881a016da52d52204bee2d89c22930be2e9a2",
}


def _read_split(split):
    if split not in EMBEDDED_SIZES:
        raise ValueError(f"load_embedded: split must be one of {tuple(EMBEDDED_SIZES)}, got {split!r}")
    resource = importlib.resources.files("tinydgm.data").joinpath(EMBEDDED_FILE)
    if not resource.is_file():
        raise FileNotFoundError(f"load_embedded: the package file tinydgm/data/{EMBEDDED_FILE} is "
                                "missing (an install without package data?); reinstall tinydgm")
    with resource.open("rb") as f, np.load(f) as archive:
        arrays = {key: archive[f"{key}_{split}"] for key in ("x", "y")}
    for key, array in arrays.items():
        name = f"{key}_{split}"
        digest = hashlib.sha256(array.tobytes()).hexdigest()
        if digest != EMBEDDED_SHA256[name]:
            raise ValueError(f"load_embedded: array {name} of tinydgm/data/{EMBEDDED_FILE} is corrupt: "
                             f"sha256 {digest}, expected {EMBEDDED_SHA256[name]}; reinstall tinydgm")
    return arrays


def load_embedded(split="train"):
    """The embedded MNIST subset: dict(x=(N, 28, 28) uint8 in 0..255, y=(N,) uint8 in 0..9),
    N = 1000 for "train" (MNIST training images 0..999), 500 for "test" (test images 0..499).
    The arrays are checked against their sha256 on every load."""
    return _read_split(split)


def load_embedded_binarized(split="train", seed=0):
    """The embedded subset binarized by one fixed, seeded draw (a "static" binarization):

        b = (U < x / 255),   U ~ U[0, 1)^(N, 28, 28) from numpy.random.default_rng(seed),
    i.e. ``dynamic_binarize(x, seed)``. Returns dict(x=(N, 28, 28) uint8 in {0, 1}, y).
    For a fresh draw each epoch, apply ``dynamic_binarize`` to ``load_embedded()["x"]`` instead.
    """
    arrays = _read_split(split)
    return {"x": dynamic_binarize(arrays["x"], np.random.default_rng(seed)), "y": arrays["y"]}
