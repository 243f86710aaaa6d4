"""Each demo script's quick run on the "cuda" device: a real GPU where there is one, else
the CuPy stand-in (tinydgm.standin), so every demo's ``--device cuda`` path runs in CI. A
script must finish, write every file it promises (tests/test_demos.py's PROMISED) and its
summary, say it ran on cuda, and report only finite numbers. Its numbers are not compared
with the CPU gallery's (tests/models/test_protocol_on_device.py compares every model's).
New scripts in demos/ are picked up."""
import json
import math

import pytest
from test_demos import DEMOS, PROMISED

from tinydgm import cli

SCRIPTS = [path.stem for path in cli.discover(DEMOS)]


def _not_finite(value, where="summary"):
    """Where a number in the summary is NaN or infinite."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [where]
    if isinstance(value, dict):
        return [w for k, v in value.items() for w in _not_finite(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [w for i, v in enumerate(value) for w in _not_finite(v, f"{where}[{i}]")]
    return []


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_quick_demo_runs_on_the_device(name, cuda_device, tmp_path, capsys):
    code = cli.load_demo(DEMOS / f"{name}.py").main(["--quick", "--device", cuda_device, "--out", str(tmp_path),
                                                     "--seed", "3"])
    assert code == 0, capsys.readouterr().err[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["device"] == cuda_device and summary["quick"] is True
    written = {p.name for p in tmp_path.iterdir()}
    assert set(PROMISED.get(name, [])) <= written and set(summary["files"]) <= written
    assert _not_finite(summary) == []
    assert f"on {cuda_device}" in capsys.readouterr().out


def test_the_finite_check_sees_a_nan():
    assert _not_finite({"a": [1.0, {"b": float("nan")}], "c": "x", "d": 2}) == ["summary.a[1].b"]
