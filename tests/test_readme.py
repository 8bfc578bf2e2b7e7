"""Every command in the README runs from a checkout, and its results table is the one the
committed reports give: the README cannot drift from the code or from the results.

The commands are read from the README's ``bash`` blocks. ``make`` targets are checked
with ``make -n`` (what they would run) for every profile; ``jupyter lab`` must open the
first notebook and ``pianoacc report`` must parse (the committed page is checked in a
browser by ``tests/course/test_report.py``); the commands that act on a melody run for real in
a scratch folder, the ``pianoacc`` ones through this Python.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import nbformat

from pianoacc_utils import cli
from pianoacc_utils.course.notebooks import list_notebooks
from pianoacc_utils.training import PROFILES

REPO = Path(__file__).resolve().parents[1]


def readme_commands(text: str) -> list[str]:
    """The command lines of the ``bash`` blocks of a Markdown text (comments and blank
    lines dropped, continuation lines joined)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = " ".join(line.split(" #")[0].split())
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


README = (REPO / "README.md").read_text()
COMMANDS = readme_commands(README)
LOOKED_AT = (".venv/bin/jupyter lab ", ".venv/bin/pianoacc report")
"""Commands checked without running them (opening JupyterLab, a page of several minutes)."""


def test_the_results_tables_are_built_from_the_committed_reports():
    # The README's and the model cards' tables (results/result_tables.py).
    sys.path.insert(0, str(REPO / "results"))
    try:
        import result_tables
    finally:
        sys.path.remove(str(REPO / "results"))
    expected = result_tables.tables()
    assert {p.name for p in expected} == {"README.md", "results.md", "MODEL_CARD.md"}
    assert len(expected) == 4
    for path, table in expected.items():
        text = path.read_text()
        start, end = result_tables.table_span(text, table)
        assert text[start:end] == table, f"{path}: run results/result_tables.py --write"


def test_the_readme_has_the_commands_it_promises():
    assert "make run" in COMMANDS and "make test" in COMMANDS
    assert any(c.startswith(".venv/bin/pianoacc accompany") for c in COMMANDS)
    assert all(any(c.startswith(start) for c in COMMANDS) for start in LOOKED_AT)
    assert readme_commands("```bash\nmake a  # note\n# only a comment\nb \\\n  c\n```\n") == [
        "make a", "b c",
    ]


def test_the_course_opens_at_the_first_notebook_with_jupyter_lab_of_the_venv():
    (command,) = [c for c in COMMANDS if c.startswith(LOOKED_AT[0])]
    opened = REPO / shlex.split(command)[2]
    assert opened == list_notebooks()[0]
    assert Path(sys.executable).with_name("jupyter-lab").exists()  # installed with the package


def test_the_readme_says_which_profile_the_committed_notebooks_ran_at():
    """The profile each committed notebook's injected cell sets, as the README states it."""
    profiles = {}
    for notebook in list_notebooks():
        cells = nbformat.read(notebook, as_version=4).cells
        (injected,) = [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
        profiles[notebook.name[:2]] = re.search(r'^PROFILE = "(\w+)"', injected.source, re.M)[1]
    assert profiles == {"01": "full", "02": "full", **{f"0{n}": "small" for n in range(3, 8)}}
    text = " ".join(README.split())
    assert "01 and 02 were run at the `full` profile" in text
    assert "03 to 07 at `small`, the profile of the shipped models" in text


def test_the_page_command_parses_and_writes_under_build():
    (command,) = [c for c in COMMANDS if c.startswith(LOOKED_AT[1])]
    args = cli.build_parser().parse_args(shlex.split(command)[1:])
    assert args.command == "report" and str(args.out).startswith("build/")


def test_the_readme_links_to_files_that_exist():
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert "docs/listen/index.html" in links and "docs/listening_page.png" in links
    missing = [link for link in links if "://" not in link and not (REPO / link).exists()]
    assert not missing


@pytest.mark.parametrize("profile", [None, *PROFILES])
def test_make_run_for_every_profile_names_a_valid_notebooks_command(profile):
    """``make run`` (and ``make run PROFILE=...``) runs ``pianoacc notebooks`` with options
    the command line accepts, writing under build/."""
    extra = [] if profile is None else [f"PROFILE={profile}"]
    dry = subprocess.run(
        ["make", "-n", "run", *extra], cwd=REPO, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    line = next(line for line in dry.stdout.splitlines() if "pianoacc notebooks" in line)
    args = cli.build_parser().parse_args(shlex.split(line)[1:])
    assert args.profile == (profile or "quick")
    assert str(args.out).startswith("build/") and str(args.figures).startswith("build/")


def test_make_test_runs_pytest():
    dry = subprocess.run(
        ["make", "-n", "test"], cwd=REPO, capture_output=True, text=True
    )
    assert dry.returncode == 0 and "-m pytest" in dry.stdout


@pytest.mark.slow
def test_the_melody_commands_run_in_a_fresh_folder(tmp_path):
    """The README's own-melody commands, in order, in an empty folder (``my_melody.mid``
    is the example tune, as a user's file would be)."""
    melody_commands = [c for c in COMMANDS if not c.startswith(("make ", *LOOKED_AT))]
    assert melody_commands
    (tmp_path / "my_melody.mid").write_bytes(b"")
    setup = "from pianoacc_utils.data import example_melody; example_melody('my_melody.mid')"
    subprocess.run([sys.executable, "-c", setup], cwd=tmp_path, check=True)
    for command in melody_commands:
        words = shlex.split(command)
        if words[0] == ".venv/bin/python":
            words[0] = sys.executable
        elif words[0] == ".venv/bin/pianoacc":
            # the console script itself (its name picks the backend of FAST_COMMANDS)
            script = Path(sys.executable).with_name("pianoacc")
            module = [sys.executable, "-m", "pianoacc_utils.cli"]
            words[:1] = [str(script)] if script.exists() else module
        else:
            pytest.fail(f"README command not covered by this test: {command}")
        run = subprocess.run(words, cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode == 0, f"{command}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
        for flag in ("-o", "--wav"):
            if flag in words:
                written = tmp_path / words[words.index(flag) + 1]
                assert written.stat().st_size > 100, f"{command}: {written.name} not written"
