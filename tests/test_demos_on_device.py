"""The quick demo gallery on the "cuda" device: a real GPU where there is one, else the
CuPy stand-in (tinydgm.standin), so every demo's ``--device cuda`` path runs in CI. Each
script must finish, write every file it promises (tests/test_demos.py's PROMISED), say it
ran on cuda, and report only finite numbers. Its numbers are not compared with the CPU
gallery's (tests/models/test_protocol_on_device.py compares every model's)."""
import json
import math

from test_demos import PROMISED

from tinydgm import cli


def _finite_numbers(value, where="summary"):
    """Where a number in the summary is not finite (NaN or infinite)."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [where]
    if isinstance(value, dict):
        return [w for k, v in value.items() for w in _finite_numbers(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [w for i, v in enumerate(value) for w in _finite_numbers(v, f"{where}[{i}]")]
    return []


def test_the_quick_gallery_runs_on_the_device(cuda_device, tmp_path, capsys):
    code = cli.main(["demo", "--quick", "--device", cuda_device, "--out", str(tmp_path), "--seed", "3"])
    assert code == 0, capsys.readouterr().out[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["device"] == cuda_device and set(PROMISED) <= set(summary["demos"])
    for name, demo in summary["demos"].items():
        assert demo["device"] == cuda_device, name
        written = {p.name for p in (tmp_path / name).iterdir()}
        assert set(PROMISED.get(name, [])) <= written and set(demo["files"]) <= written, name
    assert _finite_numbers(summary) == []
    assert "on cuda" in capsys.readouterr().out


def test_the_finite_check_sees_a_nan():
    assert _finite_numbers({"a": [1.0, {"b": float("nan")}], "c": "x"}) == ["summary.a[1].b"]
