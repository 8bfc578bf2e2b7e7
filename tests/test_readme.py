"""Every command in the README runs from a checkout, and its results table is the one the
committed reports give: the README cannot drift from the code or from the results.

The commands are read from the README's ``bash`` blocks. ``make`` targets are checked
with ``make -n`` (what they would run) for every profile; the commands that act on a
melody run for real in a scratch folder, the ``pianoacc`` ones through this Python.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pianoacc_utils import cli
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


COMMANDS = readme_commands((REPO / "README.md").read_text())


def test_the_results_tables_are_built_from_the_committed_reports():
    # The README's and the model cards' tables (results/result_tables.py).
    sys.path.insert(0, str(REPO / "results"))
    try:
        import result_tables
    finally:
        sys.path.remove(str(REPO / "results"))
    expected = result_tables.tables()
    assert {p.name for p in expected} == {"README.md", "MODEL_CARD.md"} and len(expected) == 3
    for path, table in expected.items():
        text = path.read_text()
        start, end = result_tables.table_span(text, table)
        assert text[start:end] == table, f"{path}: run results/result_tables.py --write"


def test_the_readme_has_the_commands_it_promises():
    assert "make run" in COMMANDS and "make test" in COMMANDS
    assert any(c.startswith(".venv/bin/pianoacc accompany") for c in COMMANDS)
    assert readme_commands("```bash\nmake a  # note\n# only a comment\nb \\\n  c\n```\n") == [
        "make a", "b c",
    ]


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
    melody_commands = [c for c in COMMANDS if not c.startswith("make ")]
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
            words[:1] = [str(script)] if script.exists() else [sys.executable, "-m", "pianoacc_utils.cli"]
        else:
            pytest.fail(f"README command not covered by this test: {command}")
        run = subprocess.run(words, cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode == 0, f"{command}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
        for flag in ("-o", "--wav"):
            if flag in words:
                written = tmp_path / words[words.index(flag) + 1]
                assert written.stat().st_size > 100, f"{command}: {written.name} not written"
