"""README.md: its Python examples run as written, and its Quickstart is the two commands."""
import pathlib
import re

import pytest
from paths import REPO_ROOT

ROOT = REPO_ROOT
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _blocks(language, text=README):
    return [body for lang, body in BLOCK.findall(text) if lang == language]


def _section(title):
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match.group(1)


PYTHON_BLOCKS = _blocks("python")
IMPORTS_TORCH = re.compile(r"^\s*(import torch\b|from torch\b)", re.M)


def _needs_torch(block):
    """Blocks that import torch (the optional cross-check) run only where torch is installed."""
    return bool(IMPORTS_TORCH.search(block))


def test_readme_has_python_examples():
    assert len(PYTHON_BLOCKS) >= 4
    assert any("td.gradcheck" in b and "td.gradgradcheck" in b and "td.jacobian" in b for b in PYTHON_BLOCKS)


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_block_runs(index, capsys):
    if _needs_torch(PYTHON_BLOCKS[index]):
        pytest.importorskip("torch", reason=f"README python block {index} imports torch (an optional "
                                            "cross-check), which is not installed")
    namespace = {"__name__": f"readme_block_{index}"}
    exec(compile(PYTHON_BLOCKS[index], f"README.md python block {index}", "exec"), namespace)


ORACLE_SECTION = "Check your own implementation"


def test_only_the_torch_oracle_examples_may_skip():
    """Every other block runs everywhere; the ones that need torch are the worked oracle
    examples: with the tools (tinydgm.interop, tinydgm.testing: a MADE and a coupling),
    then by hand (values, gradients and a Hessian-vector product)."""
    torch_blocks = [b for b in PYTHON_BLOCKS if _needs_torch(b)]
    assert torch_blocks == _blocks("python", _section(ORACLE_SECTION))
    assert len(torch_blocks) == 3
    block = torch_blocks[2]
    assert "load_state_dict" in block and ".backward()" in block
    assert "torch.autograd.functional.hvp" in block and "create_graph=True" in block


def _glue(block):
    """The code lines between the user's model and the planted bug (comments and blanks out)."""
    body = block.split("# The glue", 1)[1].split("# A planted bug", 1)[0]
    return [line for line in body.splitlines()[1:] if line.strip() and not line.strip().startswith("#")]


def test_the_made_glue_is_well_under_30_lines_and_uses_the_public_tools():
    made_block, coupling_block = _blocks("python", _section(ORACLE_SECTION))[:2]
    glue = _glue(made_block)
    assert len(glue) <= 15, glue
    joined = "\n".join(glue)
    for call in ("MADE.from_degrees", "load_weights", "compare(", "assert_close", "assert_autoregressive(",
                 "td.gradgradcheck(from_torch"):
        assert call in joined, call
    assert "tests" not in made_block and "._" not in joined          # nothing private, nothing from tests/
    assert "assert_flow_transform(torch_transform" in coupling_block and "compare(ours" in coupling_block


def test_the_made_example_catches_its_planted_bug(capsys):
    pytest.importorskip("torch", reason="the oracle example needs torch")
    made_block = _blocks("python", _section(ORACLE_SECTION))[0]
    exec(compile(made_block, "README.md MADE oracle", "exec"), {"__name__": "readme_made"})
    printed = capsys.readouterr().out
    assert "forbidden dependencies" in printed and "rel" in printed.splitlines()[0]
    assert "differs" not in printed.split("forbidden")[0]            # the table before the bug agrees


def test_readme_gradcheck_example_prints_the_documented_error(capsys):
    block = next(b for b in PYTHON_BLOCKS if "class Cube" in b)
    exec(compile(block, "README.md Cube", "exec"), {})
    printed = capsys.readouterr().out.strip()
    documented = " ".join(line.lstrip("# ").strip() for line in block.splitlines()
                          if line.startswith("# gradcheck:") or line.startswith("# numeric"))
    assert printed == documented


def test_quickstart_is_exactly_the_two_commands_in_order():
    quickstart = _section("Quickstart")
    commands = [body.strip() for _, body in BLOCK.findall(quickstart)]
    assert commands == ['pip install -e . && python -m tinydgm demo',
                        'pip install -e ".[test]" && python -m pytest']


def test_readme_opens_with_the_purpose():
    first_paragraph = README.split("\n\n")[1]
    assert "autodiff" in first_paragraph and "generative" in first_paragraph


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]" && python -m pytest' in ci


def test_readme_names_only_files_that_exist():
    layout = _blocks("", _section("Layout"))[0]
    for name in re.findall(r"(\w+\.py)", layout):
        assert list(ROOT.rglob(name)), f"README's layout names {name}, which does not exist"
