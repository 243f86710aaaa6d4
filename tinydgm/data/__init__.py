"""Datasets and data transforms. Datasets are NumPy arrays on the host (wrap a batch with
``td.tensor`` to compute with it); nothing here needs a network connection by default.

    toy.py         seeded 2-D toy densities (two moons, 8 Gaussians, a 5x5 grid of Gaussians,
                   checkerboard, rings, spirals, swiss roll) and their exact log-densities where they exist
    sequences.py   a seeded switching 2-D walk with multimodal, heavy-tailed steps and its exact
                   log-density; MNIST read as 28-step row sequences
    images.py      a small MNIST subset shipped inside the package (``load_embedded``)
    mnist.py       MNIST and statically binarized MNIST: local files, cache, checked downloads
    transforms.py  binarization, dequantization, the logit transform, scaling, ``batches``

Sources, checksums and licences of the data: tinydgm/data/README.md.
"""
from tinydgm.data.transforms import (as_generator, dynamic_binarize, uniform_dequantize,  # noqa: F401
                                     scale_to_unit, scale_to_symmetric, symmetric_to_unit,
                                     logit_transform, inverse_logit_transform, batches, n_batches)
from tinydgm.data.toy import (two_moons, eight_gaussians, grid_gaussians, checkerboard, rings,  # noqa: F401
                              spirals, swiss_roll, eight_gaussians_log_density, grid_gaussians_log_density,
                              checkerboard_log_density, rings_log_density, eight_gaussians_centres,
                              grid_gaussians_centres, Toy, TOYS, sample_toy, log_density)
from tinydgm.data.sequences import (switching_walk, switching_walk_log_density, mnist_rows,  # noqa: F401
                                    load_mnist_rows)
from tinydgm.data.images import load_embedded, load_embedded_binarized  # noqa: F401
from tinydgm.data.mnist import (load_mnist, load_binarized_mnist, binarized_mnist_test_labels,  # noqa: F401
                                download_file, default_cache_dir, DataError, DownloadError,
                                ChecksumError, ENV_VAR)
