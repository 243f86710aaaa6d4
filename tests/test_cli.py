"""``python -m tinydgm``: the subcommands, run in-process through ``main(argv)``."""
import json
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


def test_demo_writes_every_file(quick_demo):
    code, out = quick_demo
    assert code == 0
    for name in ("gradcheck_report.md", "gradcheck_errors.png", "gmm_density.png", "gmm_training.png",
                 "summary.json"):
        assert (out / name).stat().st_size > 0, name
    for name in ("gradcheck_errors.png", "gmm_density.png", "gmm_training.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["sections"]) == [s.name for s in demo.SECTIONS]
    written = [f for section in summary["sections"].values() for f in section["files"]]
    assert sorted(written + ["summary.json"]) == sorted(p.name for p in out.iterdir())


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
