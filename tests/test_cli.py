"""``python -m tinydgm``: the subcommands, run in-process through ``main(argv)`` (the demo
gallery itself is tested in test_demos.py)."""
import subprocess
import sys

import pytest

import tinydgm as td
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
