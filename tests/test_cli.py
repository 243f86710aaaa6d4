"""``python -m tinydgm``: the subcommands, run in-process through ``main(argv)``."""
import json
import math
import subprocess
import sys

import pytest

import tinydgm as td
from tinydgm import demo
from tinydgm.cli import main


def test_help_lists_every_subcommand_with_a_description(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command, words in (("demo", "figures"), ("gradcheck", "finite differences"),
                           ("info", "devices")):
        line = next(line for line in out.splitlines() if line.strip().startswith(command + " "))
        assert words in line


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "gradcheck" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "tinydgm", "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    assert td.__version__ in done.stdout


# ----------------------------------------------------------------------------- demo

@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    code = main(["demo", "--quick", "--out", str(out), "--seed", "3"])
    return code, out


AR_FIGURES = ("ar_samples_nade.png", "ar_samples_made.png", "ar_samples_pixelcnn.png", "made_toy_density.png")
EBM_FIGURES = ("mh_chains.png", "ebm_density.png", "rbm_filters.png", "rbm_samples.png")
FLOW_FIGURES = ("flow_planar_eight_gaussians.png", "flow_realnvp_eight_gaussians.png",
                "flow_maf_eight_gaussians.png", "flow_image_samples.png")
DEMO_FIGURES = ("gradcheck_errors.png", "gmm_density.png", "gmm_training.png", "toy_densities.png",
                "embedded_images.png") + AR_FIGURES + EBM_FIGURES + FLOW_FIGURES


def test_demo_writes_every_file(quick_demo):
    code, out = quick_demo
    assert code == 0
    for name in ("gradcheck_report.md", "summary.json") + DEMO_FIGURES:
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["sections"]) == [s.name for s in demo.SECTIONS]
    assert list(summary["sections"]) == ["gradcheck", "gmm", "toys", "images", "autoregressive", "ebm", "rbm",
                                         "flows"]
    written = [f for section in summary["sections"].values() for f in section["files"]]
    assert sorted(written + ["summary.json"]) == sorted(p.name for p in out.iterdir())
    assert set(DEMO_FIGURES) <= set(written)
    assert summary["sections"]["toys"]["files"] == ["toy_densities.png"]
    assert summary["sections"]["images"]["files"] == ["embedded_images.png"]
    assert summary["sections"]["autoregressive"]["files"] == list(AR_FIGURES)
    assert summary["sections"]["flows"]["files"] == list(FLOW_FIGURES)


@pytest.mark.parametrize("name", DEMO_FIGURES)
def test_demo_figures_are_valid_pngs(quick_demo, name):
    from matplotlib.image import imread
    _, out = quick_demo
    assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(out / name)                        # decodes the whole file: not truncated
    assert pixels.ndim == 3 and min(pixels.shape[:2]) >= 200, pixels.shape
    assert pixels[..., :3].std() > 0.05                # not a blank canvas


def test_demo_toys_cover_every_toy_and_check_the_exact_densities(quick_demo):
    _, out = quick_demo
    toys = json.loads((out / "summary.json").read_text())["sections"]["toys"]["toys"]
    assert list(toys) == list(td.data.TOYS)
    exact = [name for name, entry in toys.items() if entry["exact_density"]]
    assert exact == ["eight_gaussians", "checkerboard", "rings"]
    for name in exact:       # the density's Riemann sum over the drawn square holds all the mass
        assert toys[name]["mass_on_grid"] == pytest.approx(1.0, abs=0.03), name
    # every checkerboard sample lies on a dark square, where p = 1/8
    assert toys["checkerboard"]["mean_log_density"] == pytest.approx(-math.log(8), abs=1e-6)
    for name in ("eight_gaussians", "rings"):
        assert math.isfinite(toys[name]["mean_log_density"]), name


def test_demo_images_binarization_is_unbiased(quick_demo):
    _, out = quick_demo
    images = json.loads((out / "summary.json").read_text())["sections"]["images"]
    assert images["embedded_images"] == 1000 and images["shown"] == 64 and images["image_shape"] == [28, 28]
    # E[b] = x / 255 over 784k pixels: the Monte Carlo error is ~4e-4
    assert images["binarized_fraction_on"] == pytest.approx(images["mean_gray_level"], abs=3e-3)
    assert 0.05 < images["mean_gray_level"] < 0.3


def test_demo_gradcheck_report_covers_the_catalogue(quick_demo):
    _, out = quick_demo
    report = (out / "gradcheck_report.md").read_text()
    section = json.loads((out / "summary.json").read_text())["sections"]["gradcheck"]
    assert section["entries"] == len(td.autodiff.catalog.ENTRIES)
    assert section["passed"] == section["entries"], section["not_passed"]
    assert "| conv2d[groups] | passed |" in report and "| matmul[batched] | passed |" in report


def test_demo_gmm_fit_lowers_the_nll(quick_demo, capsys):
    _, out = quick_demo
    gmm = json.loads((out / "summary.json").read_text())["sections"]["gmm"]
    assert gmm["final_nll"] < gmm["initial_nll"] - 0.5
    assert gmm["final_nll"] > gmm["true_density_nll"] - 0.1   # cannot beat the data's own density by much
    assert gmm["loss_gradcheck"] is True


def test_demo_autoregressive_models_learn_and_sample(quick_demo):
    _, out = quick_demo
    ar = json.loads((out / "summary.json").read_text())["sections"]["autoregressive"]
    assert list(ar["models"]) == ["NADE", "MADE", "PixelCNN"]
    uniform = 784 * math.log(2)                       # NLL of p = 1/2 for every pixel
    for name, m in ar["models"].items():
        assert m["epoch_loss"][-1] < m["epoch_loss"][0], name          # training lowered the NLL
        assert 0 < m["test_nll"] < uniform, (name, m["test_nll"])      # exact NLL, better than a coin
        assert m["samples"] == 16
        assert 0.0 < m["sample_fraction_on"] < 1.0, name               # 0/1 samples, not all one value
    assert 0.05 < ar["data_fraction_on"] < 0.3


def test_demo_made_toy_is_normalised_and_fits_the_histogram(quick_demo):
    _, out = quick_demo
    toy = json.loads((out / "summary.json").read_text())["sections"]["autoregressive"]["made_toy"]
    assert toy["bits"] == 8
    assert toy["probability_sum"] == pytest.approx(1.0, abs=1e-4)        # exact p over all 2^8 codes
    # the cross-entropy to the empirical distribution is at least its entropy (Gibbs), and
    # the fit is far better than the uniform distribution over 256 cells
    assert toy["histogram_entropy"] - 1e-6 <= toy["train_nll"] < math.log(256) - 1.0
    assert toy["total_variation_to_true"] < 0.5


def test_demo_ebm_and_rbm_report_what_they_did(quick_demo):
    _, out = quick_demo
    sections = json.loads((out / "summary.json").read_text())["sections"]
    ebm, rbm = sections["ebm"], sections["rbm"]
    assert 0.05 < ebm["mh_acceptance"] < 0.95            # a random walk that moves, and rejects some steps
    assert ebm["mmd_initial"] > 0 and ebm["mmd_trained"] > 0
    # CD-1, even for two quick epochs, beats the initial model's pseudo-likelihood (a coin per pixel
    # at the data's marginals)
    assert rbm["pseudo_log_likelihood_after"] > rbm["pseudo_log_likelihood_before"]


def test_demo_flows_fit_the_toys_below_their_true_density(quick_demo):
    _, out = quick_demo
    flows = json.loads((out / "summary.json").read_text())["sections"]["flows"]
    assert [r["model"] for r in flows["toys"]] == ["planar", "realnvp", "maf"]
    for r in flows["toys"]:
        # a held-out log-likelihood cannot beat the true density's by more than Monte Carlo noise
        assert r["test_log_likelihood"] < r["true_log_likelihood"] + 0.1, r
        assert r["test_log_likelihood"] > -10, r
    assert flows["image_flow"]["epochs"] >= 1 and len(flows["image_flow"]["bits_per_dim"]) >= 1


def test_toy_cells_and_bits_round_trip():
    xp = td.backend.module_for_device("cpu")
    points = xp.array([[-3.2, -3.2], [0.0, 0.0], [3.19, -0.01], [9.0, -9.0]])
    cells = demo.toy_cells(points)
    assert cells.tolist() == [[0, 0], [8, 8], [15, 7], [15, 0]]
    bits = demo.cells_to_bits(cells)
    assert bits.shape == (4, 8)
    assert bits[2].tolist() == [1, 1, 1, 1, 0, 1, 1, 1]               # 15 = 1111, 7 = 0111, MSB first
    back = (bits.reshape(4, 2, 4) * xp.array([8, 4, 2, 1])).sum(-1)
    assert back.tolist() == cells.tolist()


def test_demo_prints_where_it_wrote(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "SECTIONS", [demo.Section("noop", "nothing", lambda *a: {"files": []})])
    assert main(["demo", "--out", str(tmp_path / "o")]) == 0
    assert str(tmp_path / "o") in capsys.readouterr().out
    assert (tmp_path / "o" / "summary.json").exists()


def test_gmm_log_prob_is_a_normalised_density():
    # integrate p(x) over a grid that holds all the mass
    xp = td.backend.module_for_device("cpu")
    axis = xp.linspace(-6, 6, 241)
    gx, gy = xp.meshgrid(axis, axis)
    points = td.tensor(xp.stack([gx.ravel(), gy.ravel()], axis=1), dtype="float64")
    rng = td.rng(0)
    params = [td.tensor(a, dtype="float64") for a in
              (rng.standard_normal(3), rng.standard_normal((3, 2)), rng.uniform(-0.5, 0.3, (3, 2)))]
    mass = float(td.exp(demo.gmm_log_prob(points, *params)).numpy().sum()) * (axis[1] - axis[0]) ** 2
    assert mass == pytest.approx(1.0, abs=1e-3)


# ----------------------------------------------------------------------------- gradcheck

def test_gradcheck_selected_ops_pass(capsys):
    assert main(["gradcheck", "--ops", "add", "exp"]) == 0
    out = capsys.readouterr().out
    assert "| add | passed |" in out and "| exp | passed |" in out
    assert "| mul |" not in out
    assert "2 of 2 entries pass on cpu" in out


def test_gradcheck_fails_with_status_1_when_an_op_is_wrong(capsys, monkeypatch):
    from tinydgm.autodiff import functional
    # an op whose forward and backward disagree: value exp(x), gradient 2 exp(x)
    monkeypatch.setattr(functional, "exp", lambda x: td.exp(x) + (td.exp(x) - td.exp(x).detach()))
    assert main(["gradcheck", "--ops", "exp", "--first-order-only"]) == 1
    out = capsys.readouterr().out
    assert "| exp | failed |" in out and "0 of 1 entries pass" in out


def test_gradcheck_unknown_op_exits_2(capsys):
    assert main(["gradcheck", "--ops", "no_such_op"]) == 2
    assert "unknown op(s) no_such_op" in capsys.readouterr().err


def test_gradcheck_bad_device_exits_2_with_a_message(capsys):
    assert main(["gradcheck", "--device", "tpu"]) == 2
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


@pytest.mark.skipif(td.cuda_available(), reason="a CUDA device is present: --device cuda works here")
def test_gradcheck_cuda_without_a_gpu_prints_the_install_hint(capsys):
    assert main(["gradcheck", "--device", "cuda", "--ops", "add"]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if td.backend.cupy is None:
        assert 'pip install -e ".[cuda12]"' in captured.err
    else:
        assert "no CUDA device" in captured.err


# ----------------------------------------------------------------------------- info

def test_info_reports_versions_and_devices(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"tinydgm {td.__version__}" in out
    for word in ("numpy ", "numba ", "cupy ", "devices: cpu", "cuda: ", "BLAS threads"):
        assert word in out
