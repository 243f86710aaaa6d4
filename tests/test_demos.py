"""The demo gallery (demos/*.py and ``python -m tinydgm demo``): every script is discovered and
has the common interface; the quick gallery writes every file each script promises, with
quick titles and numbers that could have come out wrong (training lowers the NLL, samples
and densities stay below the true density); --device cuda without CuPy stops at once with
the install hint; an installed copy without demos/ says where the demos are."""
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
from paths import REPO_ROOT

import tinydgm as td
from tinydgm import cli

DEMOS = REPO_ROOT / "demos"
QUICK_MARK = "quick (smoke test)"
PROMISED = {          # the files each family's script promises (demos/README.md)
    "engine": ["gradcheck_report.md", "gradcheck_errors.png", "gmm_density.png", "gmm_training.png",
               "toy_densities.png", "embedded_images.png"],
    "energy": ["mh_chains.png", "ebm_density.png", "rbm_filters.png", "rbm_samples.png"],
    "autoregressive": ["ar_samples_nade.png", "ar_samples_made.png", "ar_samples_pixelcnn.png",
                       "made_toy_density.png"],
    "flows": ["flow_toys.png", "flow_image_samples.png"],
    "latent": ["latent_ppca_fa.png", "vae_manifold.png", "vae_reconstructions.png", "iwae_bounds.png",
               "m2_class_grid.png", "vae_priors_elbo_surgery.md", "vae_priors_latent.png", "vae_priors_samples.png"],
    "adversarial": ["adversarial_toys.png", "adversarial_mnist_samples.png", "adversarial_interpolations.png",
                    "adversarial_losses.png"],
    "adversarial_combined": ["adversarial_combined_cyclegan.png", "adversarial_combined_flowgan.png",
                             "adversarial_combined_aae.png"],
    "adversarial_inference": ["bigan_toy.png", "bigan_reconstructions.png", "infogan_code_sweeps.png"],
    "recurrent": ["recurrent_sequences.png", "recurrent_pixelrnn_samples.png"],
    "hybrid": ["hybrid_kl_vs_depth.png", "hybrid_pixelvae_samples.png", "hybrid_multimodal.png",
               "hybrid_multiscale_samples.png"],
}


def _demo(name):
    return cli.load_demo(DEMOS / f"{name}.py")


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """The whole gallery, quick, through the command line: (exit status, out folder, summary)."""
    out = tmp_path_factory.mktemp("gallery")
    code = cli.main(["demo", "--quick", "--out", str(out), "--seed", "3"])
    summary = json.loads((out / "summary.json").read_text()) if code == 0 else None
    return code, out, summary


# ----------------------------------------------------------------------------- discovery and interface

def test_the_gallery_discovers_every_script_and_each_has_the_interface():
    found = [p.stem for p in cli.discover(DEMOS)]
    assert found == sorted(p.stem for p in DEMOS.glob("*.py") if not p.name.startswith("_"))
    assert set(PROMISED) <= set(found)
    assert "_common" not in found
    for name in found:
        module = _demo(name)
        assert callable(module.run) and callable(module.main), name
        assert module.__doc__ and f"python demos/{name}.py" in module.__doc__, name


def test_the_gallery_runs_every_script_and_writes_what_each_promises(gallery):
    code, out, summary = gallery
    assert code == 0
    assert list(summary["demos"]) == [p.stem for p in cli.discover(DEMOS)]
    assert summary["quick"] is True and summary["seed"] == 3 and summary["device"] == "cpu"
    for name, demo in summary["demos"].items():
        assert demo["demo"] == name and demo["quick"] is True
        written = sorted(p.name for p in (out / name).iterdir())
        assert written == sorted(demo["files"] + ["summary.json"]), name      # nothing missing, nothing extra
        assert set(PROMISED.get(name, [])) <= set(demo["files"]), name
        assert {f for f in demo["files"] if f.endswith(".png")} == set(demo["figures"]), name


def test_every_quick_figure_is_a_picture_titled_as_a_smoke_test(gallery):
    from matplotlib.image import imread
    _, out, summary = gallery
    for name, demo in summary["demos"].items():
        for figure, title in demo["figures"].items():
            assert title.startswith(QUICK_MARK), (name, figure, title)
            assert (out / name / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            pixels = imread(out / name / figure)                        # decodes: not truncated
            assert pixels.ndim == 3 and min(pixels.shape[:2]) >= 200, (figure, pixels.shape)
            assert pixels[..., :3].std() > 0.05, figure                 # not a blank canvas


def test_summary_numbers_are_finite(gallery):
    _, _, summary = gallery

    def walk(value, where):
        if isinstance(value, float):
            assert math.isfinite(value), where
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")

    walk(summary, "summary")


# ----------------------------------------------------------------------------- what each family shows

def test_engine_demo_checks_every_op_and_fits_the_mixture(gallery):
    _, out, summary = gallery
    engine = summary["demos"]["engine"]
    check = engine["gradcheck"]
    assert check["entries"] == len(td.autodiff.catalog.ENTRIES) and check["passed"] == check["entries"]
    assert "| conv2d[groups] | passed |" in (out / "engine" / "gradcheck_report.md").read_text()
    gmm = engine["gmm"]
    assert gmm["final_nll"] < gmm["initial_nll"] - 0.5 and gmm["loss_gradcheck"] is True
    assert gmm["final_nll"] > gmm["true_density_nll"] - 0.1          # cannot beat the data's own density by much
    toys = engine["toys"]["toys"]
    assert list(toys) == list(td.data.TOYS)
    for name, entry in toys.items():
        if entry["exact_density"]:                                   # the density holds all its mass on the grid
            assert entry["mass_on_grid"] == pytest.approx(1.0, abs=0.03), name
    assert toys["checkerboard"]["mean_log_density"] == pytest.approx(-math.log(8), abs=1e-6)
    images = engine["images"]
    # E[b] = x / 255 over 784k pixels: the Monte Carlo error is ~4e-4
    assert images["binarized_fraction_on"] == pytest.approx(images["mean_gray_level"], abs=3e-3)


def test_autoregressive_demo_beats_independent_pixels_even_when_quick(gallery):
    _, _, summary = gallery
    ar = summary["demos"]["autoregressive"]
    assert list(ar["models"]) == ["NADE", "MADE", "PixelCNN"]
    for name, m in ar["models"].items():
        assert m["test_nll"] < m["test_nll_before"], name              # training lowered the exact NLL
        assert m["beats_independent_pixels"] is True and m["test_nll"] < ar["independent_pixels_nll"], name
        assert 0.0 < m["sample_fraction_on"] < 0.5, name               # binary samples, mostly off like the data
    toy = ar["made_toy"]
    assert toy["probability_sum"] == pytest.approx(1.0, abs=1e-4)      # exact p over all 2^8 codes
    # the cross-entropy to the histogram is at least its entropy (Gibbs), far below uniform's log 256
    assert toy["histogram_entropy"] - 1e-6 <= toy["train_nll"] < math.log(256) - 1.0


def test_energy_demo_learns_and_mixes(gallery):
    _, _, summary = gallery
    energy = summary["demos"]["energy"]
    assert 0.05 < energy["mh"]["acceptance"] < 0.95                    # moves, and rejects some steps
    ebm = energy["ebm"]
    assert ebm["test_log_likelihood"] > ebm["test_log_likelihood_before"] + 0.5
    assert ebm["test_log_likelihood"] < ebm["true_log_likelihood"] + 0.1
    rbm = energy["rbm"]
    assert rbm["pseudo_log_likelihood_after"] > rbm["pseudo_log_likelihood_before"]


def test_flows_demo_stays_below_the_true_density(gallery):
    _, _, summary = gallery
    flows = summary["demos"]["flows"]
    assert [r["model"] for r in flows["toys"]["results"]] == ["planar", "RealNVP", "MAF"]
    for r in flows["toys"]["results"]:
        # a held-out log-likelihood cannot beat the true density's by more than Monte Carlo noise
        assert r["gaussian_log_likelihood"] < r["test_log_likelihood"] < r["true_log_likelihood"] + 0.1, r
    image = flows["image_flow"]
    assert image["test_bits_per_dim"] < image["test_bits_per_dim_before"]


def test_latent_demo_bounds_and_models(gallery):
    _, _, summary = gallery
    latent = summary["demos"]["latent"]
    toy = latent["linear_gaussian"]
    ll = toy["log_likelihood"]
    assert ll["FA"] >= ll["PPCA"] - 1e-6                               # FA's Psi includes PPCA's sigma^2 I
    assert ll["PPCA (EM)"] == pytest.approx(ll["PPCA"], abs=1e-3)      # EM reaches the closed form
    assert toy["angle_to_true_W_degrees"]["FA"] < toy["angle_to_true_W_degrees"]["PPCA"]
    vae = latent["vae"]
    assert vae["test_elbo"] > vae["test_elbo_before"]
    bounds = latent["iwae_bounds"]["bounds"]
    assert [b["k"] for b in bounds] == sorted(b["k"] for b in bounds)
    assert bounds[-1]["nats"] > bounds[0]["nats"]                      # F_k rises with k
    m2 = latent["m2"]
    assert m2["test_accuracy"] > 0.2 and 0.0 <= m2["grid_read_as_its_class"] <= 1.0   # above chance (0.1)
    rows = {r["model"]: r for r in latent["priors"]["elbo_surgery"]}
    assert len(rows) == 5                                              # four priors and the optimal q_agg
    for name, r in rows.items():                                       # the surgery: avg KL = KL(q_agg || p) + I_q
        assert r["average_kl"] == pytest.approx(r["marginal_kl"] + r["mutual_info"], abs=1e-4), name
        assert r["mutual_info"] <= r["log_n"] + 1e-4, name
    assert rows["q_agg of the N(0, I) VAE"]["marginal_kl"] == pytest.approx(0.0, abs=1e-4)   # the optimal prior


def test_adversarial_demo_counts_modes_and_keeps_d_star_optimal(gallery):
    _, _, summary = gallery
    adversarial = summary["demos"]["adversarial"]
    for name, model in adversarial["toys"]["models"].items():
        assert 0 <= model["modes_covered"] <= 8, name
    against = adversarial["toys"]["models"]["GAN"]["against_optimal_discriminator"]
    assert against["value_gap"] >= -1e-9                               # no discriminator beats D* on V
    images = adversarial["images"]
    # real images are closer to the test set than images with only the pixels' marginals
    assert images["fid_training_images"] < images["fid_independent_pixels"]


def test_toy_cells_and_bits_round_trip():
    ar = _demo("autoregressive")
    xp = td.backend.module_for_device("cpu")
    cells = ar.toy_cells(xp.array([[-3.2, -3.2], [0.0, 0.0], [3.19, -0.01], [9.0, -9.0]]))
    assert cells.tolist() == [[0, 0], [8, 8], [15, 7], [15, 0]]
    bits = ar.cells_to_bits(cells)
    assert bits[2].tolist() == [1, 1, 1, 1, 0, 1, 1, 1]                 # 15 = 1111, 7 = 0111, MSB first
    assert (bits.reshape(4, 2, 4) * xp.array([8, 4, 2, 1])).sum(-1).tolist() == cells.tolist()


def test_gmm_log_prob_is_a_normalised_density():
    engine = _demo("engine")
    xp = td.backend.module_for_device("cpu")
    axis = xp.linspace(-6, 6, 241)
    gx, gy = xp.meshgrid(axis, axis)
    points = td.tensor(xp.stack([gx.ravel(), gy.ravel()], axis=1), dtype="float64")
    rng = td.rng(0)
    params = [td.tensor(a, dtype="float64") for a in
              (rng.standard_normal(3), rng.standard_normal((3, 2)), rng.uniform(-0.5, 0.3, (3, 2)))]
    mass = float(td.exp(engine.gmm_log_prob(points, *params)).numpy().sum()) * (axis[1] - axis[0]) ** 2
    assert mass == pytest.approx(1.0, abs=1e-3)


# ----------------------------------------------------------------------------- command lines

def test_a_script_runs_on_its_own(tmp_path):
    done = subprocess.run([sys.executable, str(DEMOS / "engine.py"), "--quick", "--out", str(tmp_path / "e")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["demo"] == "engine" and summary["quick"] is True
    assert all((tmp_path / "e" / f).stat().st_size > 0 for f in PROMISED["engine"])


def test_only_runs_the_named_demos_and_rejects_unknown_names(tmp_path, capsys):
    assert cli.main(["demo", "--only", "no_such_family", "--out", str(tmp_path)]) == 2
    assert "no demo named no_such_family" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(td.cuda_available(), reason="a CUDA device is present: --device cuda runs")
def test_cuda_without_a_gpu_stops_at_once_with_the_hint(tmp_path, capsys):
    assert cli.main(["demo", "--device", "cuda", "--out", str(tmp_path / "g")]) == 2
    assert _demo("flows").main(["--device", "cuda", "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 2
    if td.backend.cupy is None:
        assert err.count('pip install -e ".[cuda12]"') == 2
    assert not (tmp_path / "g").exists() and not (tmp_path / "f").exists()     # stopped before any work


def test_an_installed_copy_without_demos_says_where_they_are(tmp_path):
    site = tmp_path / "site-packages"
    shutil.copytree(REPO_ROOT / "tinydgm", site / "tinydgm", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-m", "tinydgm", "demo", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "demos/ folder of the tinydgm source repository" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()


def test_adversarial_combined_demo_moves_towards_each_target(gallery):
    # quick runs: the CycleGAN toy already turns G away from the identity towards the rotation,
    # FlowGAN's three flows keep a finite exact NLL, the AAE codes spread out towards the prior
    _, _, summary = gallery
    demo = summary["demos"]["adversarial_combined"]
    toy = demo["cyclegan"]["toy"]
    assert toy["g_error"] < toy["identity_error"] - 0.3 and toy["f_error"] < toy["identity_error"]
    assert 0.0 <= demo["cyclegan"]["images"]["accuracy_g"] <= 1.0 and demo["cyclegan"]["images"]["accuracy_real"] > 0.9
    flowgan = demo["flowgan"]["objectives"]
    assert list(flowgan) == ["MLE", "ADV (WGAN-GP)", "Hybrid, lambda = 1"]
    assert all(r["test_nll"] is not None and r["test_nll"] > demo["flowgan"]["true_density_nll"] - 0.1
               for r in flowgan.values())
    assert set(demo["aae"]["priors"]) == {"mixture of 10 Gaussians", "swiss roll"}


def test_recurrent_demo_trains_every_model_and_compares_with_the_walk(gallery):
    # quick runs: finite NLLs that cannot beat the walk's exact one by much (the VRNN's is an
    # estimate, hence the slack); PixelRNN's training lowers its exact test NLL
    _, _, summary = gallery
    demo = summary["demos"]["recurrent"]
    assert list(demo["sequences"]["models"]) == ["RNN-Gauss", "RNN-GMM", "VRNN"]
    for name, model in demo["sequences"]["models"].items():
        assert model["test_nll"] is not None and model["test_nll"] > demo["sequences"]["true_nll"] - 1.0, name
    pixels = demo["pixelrnn"]
    assert pixels["test_nll"] < pixels["test_nll_before"]
    assert 0.0 < pixels["sample_fraction_on"] < 1.0
