"""Sampling speed of the parallel multiscale PixelCNN (issue 17) against the PixelCNN samplers, on the CPU.

    python benchmarks/bench_hybrid.py [--quick] [--threads N] [--n-images N] [--out SECTION.md]

One process, every case pinned to the same number of threads, float32, untrained weights (the time of
a sampler does not depend on the values of the weights). Drawing ``--n-images`` binary 28x28 images:

1. ``MultiscalePixelCNN((28, 28), base (7, 7))``: the base PixelCNN's cached loop over 7 x 7 pixels,
   then 2 scales x 3 group networks, each one pass over the batch: O(log N) network evaluations
   (Reed et al. 2017; intro lecture part III).
2. The same PixelCNN (32 maps, 4 residual blocks, 5x5 first layer) at full resolution with its
   activation-cache sampler (``method="fast"``: every activation computed once, about one forward
   pass in all, but 784 sequential steps).
3. That PixelCNN's naive loop (``method="naive"``: 784 full forward passes), timed on n / 8 images,
   each time next to the multiscale model drawing as many (the ratio is of those paired runs).

The two "fast" cases are timed interleaved (``common.compare``) and reported as a paired ratio; the
naive loop, much slower, is timed a few times on its own. Also: the PixelVAE sampler (z, then a
3-layer conditional PixelCNN by its receptive-field window loop), for scale.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm.models.autoregressive import MultiscalePixelCNN, PixelCNN  # noqa: E402
from tinydgm.models.hybrid import PixelCNNDecoder, PixelVAE  # noqa: E402
from tinydgm.models.latent import MLPEncoder  # noqa: E402

SECTIONS, section = common.part_registry()
BASE = dict(channels=32, n_residual=4, kernel_size=5)


def models():
    multiscale = MultiscalePixelCNN((28, 28), (7, 7), group_channels=32, group_layers=2, rng=td.rng(0),
                                    dtype="float32", **BASE)
    pixelcnn = PixelCNN(1, image_size=(28, 28), rng=td.rng(1), dtype="float32", **BASE)
    rng = td.rng(2)
    pixelvae = PixelVAE(MLPEncoder((1, 28, 28), 16, hidden=(256,), rng=rng, dtype="float32"),
                        PixelCNNDecoder(16, (1, 28, 28), n_layers=3, channels=32, cond_channels=16, hidden=256,
                                        n_upsample=2, kernel_size=5, rng=rng, dtype="float32"), rng=rng)
    return multiscale, pixelcnn, pixelvae


@section("sample", "Sampling 28x28 binary images: multiscale vs the cached PixelCNN sampler")
def sample_part(cfg):
    n = cfg.n_images
    multiscale, pixelcnn, pixelvae = models()
    cases = {"multiscale": lambda: multiscale.sample(n, rng=np.random.default_rng(0)),
             "pixelcnn-fast": lambda: pixelcnn.sample(n, rng=np.random.default_rng(0), method="fast")}
    n_naive = max(1, n // 8)
    naive, small = [], []
    with common.ForeignLoad() as load:
        stats, _ = common.compare(cases, repeats=3 if cfg.quick else 9, warmup=1, min_sample_s=0.0)
        for _ in range(1 if cfg.quick else 3):      # the naive loop and, for its ratio, multiscale on as many images
            start = time.perf_counter()
            pixelcnn.sample(n_naive, rng=np.random.default_rng(0), method="naive")
            naive.append(time.perf_counter() - start)
            start = time.perf_counter()
            multiscale.sample(n_naive, rng=np.random.default_rng(0))
            small.append(time.perf_counter() - start)
        start = time.perf_counter()
        pixelvae.sample(n_naive, rng=np.random.default_rng(0))
        pixelvae_per_image = (time.perf_counter() - start) / n_naive
    ms, fast = stats["multiscale"], stats["pixelcnn-fast"]
    ratio, (lo, hi) = common.paired_ratio(fast, ms)
    naive_per_image = float(np.median(naive)) / n_naive
    naive_ratio = float(np.median(np.array(naive) / np.array(small)))
    rows = [
        ["multiscale (base 7x7 cached + 2 x 3 group passes)", multiscale.n_network_evaluations(),
         common.fmt_stats(ms), common.fmt_time(ms.median / n)],
        ["PixelCNN, activation cache (`fast`)", "784 steps (~1 pass)", common.fmt_stats(fast),
         common.fmt_time(fast.median / n)],
        [f"PixelCNN, naive (784 passes; {n_naive} images)", 784, "", common.fmt_time(naive_per_image)],
        [f"PixelVAE, 3 masked layers, window loop ({n_naive} images)", "784 window passes", "",
         common.fmt_time(pixelvae_per_image)],
    ]
    table = common.markdown_table(["sampler", "network evaluations", f"time for {n} images (median [IQR])",
                                   "per image"], rows)
    text = (f"{table}\n\nMultiscale over the cached PixelCNN sampler: **{ratio:.1f}x faster** (paired ratios "
            f"{lo:.1f}–{hi:.1f}x); over the naive PixelCNN loop: **{naive_ratio:.0f}x** (both drawing "
            f"{n_naive} images, paired). Same base network (32 maps, 4 residual blocks, 5x5 first layer) in both models. "
            f"{common.load_note(load, [stats])}")
    print(text)
    return text


def main(argv=None):
    parser = common.parts_parser(__doc__, SECTIONS)
    parser.add_argument("--n-images", type=int, default=64, help="images per draw (default 64)")
    cfg = parser.parse_args(argv)
    parts = common.chosen_parts(parser, cfg, SECTIONS)
    pinned = common.pin_threads(cfg.threads)
    info, bodies, elapsed, load0, load1 = common.run_sections(cfg, SECTIONS, parts, pinned)
    head = ["## Hybrid models: multiscale PixelCNN sampling (`benchmarks/bench_hybrid.py`)", "",
            common.machine_markdown(info, cfg.threads), "",
            f"Command: `python benchmarks/bench_hybrid.py{' --quick' if cfg.quick else ''} --threads {cfg.threads} "
            f"--n-images {cfg.n_images}`; {elapsed:.0f} s; load average {load0[0]:.2f} -> {load1[0]:.2f}.", ""]
    common.finish_section(cfg.out, head, bodies)


if __name__ == "__main__":
    main()
