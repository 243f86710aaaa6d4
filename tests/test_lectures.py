"""LECTURES.md cannot rot: every code reference in it imports, every test it names exists, every
deck it names is one of the five, and the code cites the decks by the same short names.

The index's syntax (documented at the top of LECTURES.md):

    code   `tinydgm/path/module.py:Name` or `tinydgm/path/module.py:Class.method`
    test   `tests/path/test_file.py::test_name` (also ::test_name[param] and ::TestClass::test_name)
    row    | deck | where in the deck | formula | code | test |
"""
import ast
import importlib
import re

import pytest

from paths import REPO_ROOT as REPO

INDEX = REPO / "LECTURES.md"
DECKS = ("intro", "tomczak-dgm", "isachenko-l07", "kuleshov-l12", "ermon-song-cs236-l16")
SCANNED = ("tinydgm", "demos", "benchmarks")            # where lecture citations must use the short names

CODE_REF = re.compile(r"`([\w./-]+\.py):([\w.]+)`")
TEST_REF = re.compile(r"`(tests/[\w./-]+\.py)::([\w:\[\]., -]+)`")
CELL_SPLIT = re.compile(r"(?<!\\)\|")                   # a table cell boundary: an unescaped pipe


def index_text():
    """LECTURES.md from its first deck section on (the how-to part above holds examples)."""
    text = INDEX.read_text(encoding="utf-8")
    start = text.index("\n## " + DECKS[0] + "\n")
    return "\n" * text[:start].count("\n") + text[start:]          # keep the line numbers


def table_rows(text):
    """(line number, [cells]) of every table row whose first cell names a deck (the header
    rows, whose first cell is "deck" or "short name", and the separators are skipped)."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in CELL_SPLIT.split(line.strip())[1:-1]]
        if not cells or set(cells[0]) <= set("-: ") or cells[0] in ("deck", "short name"):
            continue
        if cells[0].startswith("`"):                     # the table of short names
            continue
        rows.append((number, cells))
    return rows


def deck_sections(text):
    """(line number, name) of every '## name' section."""
    return [(n, line[3:].strip()) for n, line in enumerate(text.splitlines(), 1) if line.startswith("## ")]


def resolve(path, attribute):
    """Import the module at ``path`` (a repository file) and getattr through ``attribute``."""
    file = REPO / path
    assert file.is_file(), f"LECTURES.md: {path} is not a file of the repository"
    module_name = ".".join(file.relative_to(REPO).with_suffix("").parts)
    obj = importlib.import_module(module_name)
    for part in attribute.split("."):
        assert hasattr(obj, part), f"LECTURES.md: {module_name} has no attribute {attribute!r} (missing {part!r})"
        obj = getattr(obj, part)
    return obj


def defined_tests(path):
    """{'name', 'Class::name'} of the test functions a test file defines."""
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(f"{node.name}::{item.name}" for item in node.body
                         if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return names


# ----------------------------------------------------------------------------- the index

def test_index_has_one_section_per_deck_in_order():
    names = [name for _, name in deck_sections(index_text())]
    assert names == list(DECKS), f"LECTURES.md: deck sections must be {list(DECKS)} in this order, got {names}"


def test_every_row_names_a_known_deck_its_section_code_and_a_test():
    text = index_text()
    sections = deck_sections(text)
    rows = table_rows(text)
    assert len(rows) > 50, f"LECTURES.md: expected the index's rows, found only {len(rows)}"
    for number, cells in rows:
        assert len(cells) == 5, f"LECTURES.md line {number}: a row has 5 cells (deck, where, formula, code, test), " \
                                f"got {len(cells)}: {cells}"
        deck, _, _, code, test = cells
        assert deck in DECKS, f"LECTURES.md line {number}: unknown deck {deck!r}; the short names are {DECKS}"
        section = [name for start, name in sections if start < number][-1]
        assert deck == section, f"LECTURES.md line {number}: a {deck!r} row in the {section!r} section"
        assert CODE_REF.search(code), f"LECTURES.md line {number}: no `path.py:Name` code reference in {code!r}"
        assert TEST_REF.search(test), f"LECTURES.md line {number}: no `tests/...py::test` reference in {test!r}"


def test_every_code_reference_imports():
    refs = sorted(set(CODE_REF.findall(index_text())))
    assert refs
    for path, attribute in refs:
        resolve(path, attribute)


def test_every_test_reference_exists():
    refs = sorted(set(TEST_REF.findall(index_text())))
    assert refs
    for path, node in refs:
        assert (REPO / path).is_file(), f"LECTURES.md: test file {path} does not exist"
        name = re.sub(r"\[.*\]$", "", node)              # a parametrised id names its function
        assert name in defined_tests(path), f"LECTURES.md: {path} defines no test {name!r}"


def test_the_checks_catch_a_wrong_reference():
    with pytest.raises(AssertionError, match="no attribute"):
        resolve("tinydgm/distributions.py", "kl_divergence.no_such_thing")
    with pytest.raises(AssertionError, match="not a file"):
        resolve("tinydgm/no_such_module.py", "x")
    assert "test_kl_gradients" in defined_tests("tests/test_distributions.py")
    assert table_rows("| kuleshov | x | y | `a.py:b` | `tests/t.py::c` |")[0][1][0] == "kuleshov"


# ----------------------------------------------------------------------------- citations in the code

DECK_LIKE = re.compile(r"\b(?:tomczak|isachenko|kuleshov|ermon|song-cs236|cs236)[\w-]*", re.IGNORECASE)
INTRO = re.compile(r"\b(intro(?:duction|ductory)?)\b(.{0,9})", re.IGNORECASE | re.DOTALL)
FORBIDDEN = (re.compile(r"\bdecks?\b", re.IGNORECASE), re.compile(r"\blectures?\s+\d", re.IGNORECASE))
OTHER_COURSES = re.compile(r"\bCoursera lectures?\b[\s\d.]*")        # e.g. RMSProp's source: not one of the decks


def citation_problems(text):
    """What is wrong with the lecture citations of one file's text (a list of messages)."""
    problems = []
    text = OTHER_COURSES.sub("", text)
    for match in DECK_LIKE.finditer(text):
        if match.group(0) not in DECKS:
            problems.append(f"{match.group(0)!r} is not a deck's short name {DECKS[1:]}")
    for match in INTRO.finditer(text):
        word, after = match.group(1).lower(), match.group(2).lower()
        cited_as_intro_lecture = word == "intro" and after.startswith(" lecture")
        if (word == "intro" or "lecture" in after) and not cited_as_intro_lecture:
            problems.append(f"{match.group(0)!r}: the intro deck is cited as 'intro lecture'")
    for pattern in FORBIDDEN:
        for match in pattern.finditer(text):
            problems.append(f"{match.group(0)!r}: name a deck by its short name ('intro lecture', 'tomczak-dgm', ...)")
    if re.search(r"\blecture\b", text, re.IGNORECASE) and not (
            re.search(r"\bintro lecture", text, re.IGNORECASE) or any(d in text for d in DECKS[1:])):
        problems.append("mentions a lecture without naming which (cite it by its short name)")
    return problems


def test_the_citation_rule_catches_other_forms():
    assert citation_problems("(intro lecture eq. 30; tomczak-dgm, \"RBM: Training\")") == []
    assert citation_problems("see the lecture's formula (kuleshov-l12)") == []
    assert citation_problems("the introduction of a bias") == []
    assert citation_problems("RMSProp (Tieleman & Hinton 2012, Coursera lecture 6.5)") == []
    for bad in ("intro deck, eq. 30", "tomczak, RBM slide", "(isachenko lecture 7)", "CS236 lecture 16",
                "the introductory lecture", "intro-gan-vae-autoregressive-flows", "the lecture's formula",
                "as the slides deck shows (intro lecture)"):
        assert citation_problems(bad), bad


@pytest.mark.parametrize("folder", SCANNED)
def test_modules_cite_the_decks_by_the_index_names(folder):
    root = REPO / folder
    if not root.is_dir():
        pytest.skip(f"{folder}/ is not in this checkout")
    problems = []
    for path in sorted(root.rglob("*.py")):
        for message in citation_problems(path.read_text(encoding="utf-8")):
            problems.append(f"{path.relative_to(REPO)}: {message}")
    assert not problems, "lecture citations that do not follow LECTURES.md:\n" + "\n".join(problems)


# ----------------------------------------------------------------------------- self-contained docs

# Files outside the repository that project files must not depend on or point to: guidance
# documents of the development workplace and a particular machine's absolute paths.
OUTSIDE = re.compile(r"\b(?:DESIGN|STYLE)\.md\b|(?<![\w.~])/(?:work|root|home)/\w")
PROJECT_TEXT = ("*.md", "*.cfg", "*.toml", "tinydgm/**/*.py", "tinydgm/**/*.md", "tests/**/*.py", "benchmarks/**/*.py",
                "benchmarks/**/*.md", "demos/**/*.py", "demos/**/*.md", "docs/**/*.md")


def test_project_files_do_not_point_outside_the_repository():
    problems = []
    for pattern in PROJECT_TEXT:
        for path in sorted(REPO.glob(pattern)):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if OUTSIDE.search(line) and path.name != "test_lectures.py":
                    problems.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert not problems, ("project files must not name files outside the repository (use docs/architecture.md, "
                          "relative paths or TINYDGM_DATA):\n" + "\n".join(problems))


def test_the_outside_pattern_catches_what_it_should():
    assert OUTSIDE.search("see " + "DESI" + "GN.md") and OUTSIDE.search("data_path='/" + "work/shared/data'")
    assert OUTSIDE.search("cd /" + "root/x")
    assert not OUTSIDE.search("docs/architecture.md, ../shared/data, runs/bench/work/x.md, TINYDGM_DATA")
