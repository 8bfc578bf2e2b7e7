"""The project holds together: dependency lists agree, entry points exist, notebooks are
parameterised, caches are ignored and no POP909 file is committed."""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
from pathlib import Path

import tomllib
import yaml
from packaging.requirements import Requirement

from pianoacc_utils import cli
from pianoacc_utils.course.notebooks import PROFILES

REPO = Path(__file__).resolve().parents[1]

POP909_ANNOTATIONS = {
    "beat_midi.txt", "chord_midi.txt", "key_audio.txt", "beat_audio.txt", "chord_audio.txt",
}


def requirement_set(lines: list[str]) -> set[tuple[str, str]]:
    """``{(normalized name, specifier)}`` of requirement strings such as ``keras-hub>=0.17``."""
    result = set()
    for line in lines:
        requirement = Requirement(line)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        result.add((name, str(requirement.specifier)))
    return result


def git(*args: str) -> list[str]:
    completed = subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
    )
    return [line for line in completed.stdout.splitlines() if line]


def test_environment_yml_and_pyproject_list_the_same_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared += extra
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    pip_packages = [line for line in pip if not line.startswith("-e")]
    assert "-e ." in pip  # the package itself, so the notebooks can import it
    assert requirement_set(pip_packages) == requirement_set(declared)
    # every dependency has a lower bound; an upper bound only to skip a known-broken release
    for name, specifier in requirement_set(declared):
        clauses = specifier.split(",")
        assert any(c.startswith(">=") for c in clauses), f"{name}: no lower bound"
        assert all(c.startswith((">=", "<")) for c in clauses), f"{name}: {specifier}"
    python = next(d for d in conda if d.startswith("python"))
    assert python.removeprefix("python") == project["requires-python"]


def test_ci_runs_make_test():
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^\s*make test\s*$", ci, re.MULTILINE)


def test_readme_gives_make_run_and_make_test():
    readme = REPO / "README.md"
    assert readme.is_file(), "README.md is missing"
    text = readme.read_text()
    assert "make run" in text and "make test" in text


def test_make_run_uses_a_valid_notebooks_command():
    makefile = (REPO / "Makefile").read_text()
    line = next(line for line in makefile.splitlines() if "pianoacc notebooks" in line)
    words = shlex.split(line.replace("$(PROFILE)", "quick"))
    args = cli.build_parser().parse_args(words[words.index("notebooks") :])
    assert args.command == "notebooks" and args.profile == "quick"
    assert str(args.out) == "build/notebooks" and str(args.figures) == "build/figures"
    assert re.search(r"^test:.*\n\t.*pytest", makefile, re.MULTILINE)


def test_every_notebook_starts_with_a_parameters_cell_defining_profile():
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
        assert code, f"{path.name}: no code cell"
        first = code[0]
        assert "parameters" in first.get("metadata", {}).get("tags", []), path.name
        source = first["source"] if isinstance(first["source"], str) else "".join(first["source"])
        assigned = {
            target.id: node.value
            for node in ast.parse(source).body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert "PROFILE" in assigned, f"{path.name}: the parameters cell does not set PROFILE"
        assert ast.literal_eval(assigned["PROFILE"]) in PROFILES, path.name


def test_caches_and_build_outputs_are_ignored():
    ignored = git("check-ignore", "--no-index", "cache/prepared/x.npz", "build/notebooks/01.ipynb")
    assert ignored == ["cache/prepared/x.npz", "build/notebooks/01.ipynb"]


def test_no_pop909_file_is_committed(pop909_dir):
    # tracked files and the new files a commit of everything would add
    files = git("ls-files") + git("ls-files", "--others", "--exclude-standard")
    for name in files:
        path = Path(name)
        assert path.name not in POP909_ANNOTATIONS, name
        assert not re.fullmatch(r"\d{3}\.mid", path.name), name
        assert "pop909" not in (part.lower() for part in path.parts[:-1]), name
    midi_by_size: dict[int, list[Path]] = {}
    for name in files:
        if name.lower().endswith((".mid", ".midi")) and (REPO / name).is_file():
            midi_by_size.setdefault((REPO / name).stat().st_size, []).append(REPO / name)
    for original in pop909_dir.glob("*/*.mid"):
        for twin in midi_by_size.get(original.stat().st_size, []):
            assert twin.read_bytes() != original.read_bytes(), f"{twin} is POP909's {original}"


def _test_split_uses(tree: ast.AST) -> list[int]:
    """Lines where a script reads the test split: a ``"test"`` literal that is not listed
    beside ``"validation"`` (reporting both side by side), or an ``EvaluationConfig`` /
    ``split_segments`` call without an explicit ``split`` (its default is the test split)."""
    lines = []
    beside_validation = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if "validation" in values:
                beside_validation |= {id(e) for e in node.elts}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value == "test":
            if id(node) not in beside_validation:
                lines.append(node.lineno)
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name == "EvaluationConfig" and not any(k.arg == "split" for k in node.keywords):
                lines.append(node.lineno)
    return sorted(lines)


def test_no_script_in_results_chooses_on_the_test_split():
    """Every script under results/ says which split it makes its choices on
    (``DECIDES_ON``), never the test split; one that chooses (on validation) reads the
    test split only to report it beside validation, or on a line marked
    ``# test: reported, not chosen on``."""
    scripts = sorted((REPO / "results").glob("*.py"))
    assert scripts
    for script in scripts:
        tree = ast.parse(script.read_text())
        declared = [
            node.value.value for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            and any(getattr(t, "id", "") == "DECIDES_ON" for t in node.targets)
        ]
        assert len(declared) == 1, f"{script}: declare DECIDES_ON (the split it chooses on)"
        assert declared[0] in ("validation", None), f"{script}: DECIDES_ON = {declared[0]!r}"
        if declared[0] is not None:
            source = script.read_text().splitlines()
            uses = [line for line in _test_split_uses(tree)
                    if "# test: reported, not chosen on" not in source[line - 1]]
            assert not uses, f"{script}: chooses on validation but reads test at lines {uses}"


def test_the_split_check_finds_a_script_reading_test():
    reads = ast.parse('c = EvaluationConfig(segments=8)\nsplit = "test"\n')
    assert _test_split_uses(reads) == [1, 2]
    both = ast.parse('for s in ("validation", "test"): pass\nEvaluationConfig(split=s)\n')
    assert _test_split_uses(both) == []
