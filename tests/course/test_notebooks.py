"""The notebooks run top to bottom in the quick profile, and the runner behind ``make run``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from pianoacc_utils import cli
from pianoacc_utils.common import PianoaccError, project_root
from pianoacc_utils.course.notebooks import (
    COMMITTED_NOTE,
    list_notebooks,
    refresh_notebooks,
    run_notebooks,
    select_notebooks,
)
from pianoacc_utils.training import PROFILES

REPO = project_root()
NOTEBOOKS = list_notebooks()
FIGURE_SUFFIXES = {".png", ".svg", ".pdf", ".jpg"}


def snapshot(folder: Path, pattern: str = "*") -> dict[str, bytes]:
    """The files of ``folder`` matching ``pattern``, by name, with their bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.glob(pattern)) if p.is_file()}


def error_outputs(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return [
        f"{output.get('ename')}: {output.get('evalue')}"
        for cell in cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


def figures_without_image(cells: list) -> list[str]:
    """Figure outputs drawn only as text (``<Figure size 1800x350 with 4 Axes>``), no PNG."""
    missing = []
    for number, cell in enumerate(cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            text = "".join(data.get("text/plain", ""))
            if text.startswith("<Figure") and "image/png" not in data:
                missing.append(f"cell {number}: {text}")
    return missing


# --------------------------------------------------------------------------- project notebooks


LINKED = ("pretrained", "results", "benchmarks")
"""Checkout folders the notebooks read through ``../``: linked beside the quick copy."""

CHECK_TAG = "nbval-check-output"
"""Cell tag: nbval compares this cell's output with the committed one (``--nbval-lax``)."""


FIGURES_AS_PICTURES = """\
from matplotlib.figure import Figure
shown = [value for value in Out.values() if isinstance(value, Figure)]
drawn = [get_ipython().display_formatter.format(figure)[0] for figure in shown]
assert all("image/png" in data for data in drawn), "a figure shows as text, not as a picture"
"""
"""Last cell of a quick copy: every figure that ended a cell was drawn as a PNG (nbval keeps no
executed copy to read the outputs from, so the kernel checks its own)."""


def quick_copy(notebook: Path, root: Path) -> Path:
    """A copy of a committed notebook, its injected parameters set to the quick profile and to
    folders under ``root``, placed in ``root/notebooks`` beside links to :data:`LINKED`, with
    :data:`FIGURES_AS_PICTURES` as its last cell."""
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        if not (root / name).exists():
            (root / name).symlink_to(REPO / name)
    values = {
        "PROFILE": "quick",
        "FIGURES_DIR": str(root / "figures"),
        "OUTPUT_DIR": str(root / "output"),
    }
    source = "# Parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in values.items())
    nb = nbformat.read(notebook, as_version=4)
    tags = [cell.metadata.get("tags", []) for cell in nb.cells]
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    for i, cell_tags in enumerate(tags):
        if "injected-parameters" in cell_tags:
            nb.cells[i] = injected
            break
    else:
        first = next(i for i, cell_tags in enumerate(tags) if "parameters" in cell_tags)
        nb.cells.insert(first + 1, injected)
    nb.cells.append(nbformat.v4.new_code_cell(FIGURES_AS_PICTURES))
    copy = root / "notebooks" / notebook.name
    nbformat.write(nb, copy)
    return copy


@pytest.fixture(scope="module")
def course_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for all the notebooks, as ``make run`` uses one: later notebooks reuse the
    quick models that notebooks 04 and 05 train in ``output/runs``, as a student's run does."""
    return tmp_path_factory.mktemp("course")


TRAINING_FROM = "04"
"""The first notebook that trains a model; it and the notebooks after it run in order on one
test worker (they share the quick models), those before it on another."""


def notebook_param(notebook: Path) -> object:
    """``notebook`` as a test parameter in its xdist group (see :data:`TRAINING_FROM`)."""
    group = "notebooks-training" if notebook.name[:2] >= TRAINING_FROM else "notebooks-data"
    return pytest.param(notebook, id=notebook.stem, marks=pytest.mark.xdist_group(group))


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", [notebook_param(nb) for nb in NOTEBOOKS])
def test_notebook_runs_quick_and_keeps_its_checked_outputs(notebook: Path, course_folder: Path):
    """The committed notebook runs top to bottom in the quick profile without an error, its
    cells tagged ``nbval-check-output`` print what the committed notebook shows (nbval), it
    saves its figures to FIGURES_DIR, draws them as pictures under ``MPLBACKEND=Agg``, and the
    checkout's notebooks and figures stay as they are."""
    committed = snapshot(REPO / "notebooks", "*.ipynb")
    committed_figures = snapshot(REPO / "figures")
    cells = nbformat.read(notebook, as_version=4).cells
    checked = [cell for cell in cells if CHECK_TAG in cell.metadata.get("tags", [])]
    assert checked, f"{notebook.name}: no cell tagged {CHECK_TAG}"
    assert all(cell.get("outputs") for cell in checked), "a checked cell has no committed output"
    copy = quick_copy(notebook, course_folder)
    run = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
            "--nbval-current-env", "--nbval-cell-timeout", "1200", str(copy),
        ],
        cwd=course_folder, capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    number = notebook.name[:2]  # every figure's name starts with its notebook's number
    saved = [p for p in (course_folder / "figures").glob(f"{number}_*")
             if p.suffix.lower() in FIGURE_SUFFIXES]
    assert saved, f"{notebook.name} saved no figure to FIGURES_DIR"
    assert all(p.stat().st_size > 1000 for p in saved)
    assert snapshot(REPO / "notebooks", "*.ipynb") == committed
    assert snapshot(REPO / "figures") == committed_figures


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_committed_figures_are_pictures(notebook: Path):
    """Every figure a committed notebook shows is a PNG, not the text ``<Figure ...>``."""
    cells = nbformat.read(notebook, as_version=4).cells
    assert sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))
    assert not figures_without_image(cells), notebook.name


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_committed_parameters_are_one_cell_and_the_injected_one_says_why(notebook: Path):
    """One ``parameters`` cell whose PROFILE comment lists every profile of
    ``training.PROFILES``; the cell papermill injected after it (the committed run's
    parameters) opens with :data:`COMMITTED_NOTE`, naming the profile it set."""
    cells = nbformat.read(notebook, as_version=4).cells
    tagged = {tag: [c for c in cells if tag in c.metadata.get("tags", [])]
              for tag in ("parameters", "injected-parameters")}
    assert len(tagged["parameters"]) == 1 and len(tagged["injected-parameters"]) <= 1
    profile_line = next(line for line in tagged["parameters"][0].source.splitlines()
                        if line.startswith("PROFILE ="))
    assert " | ".join(PROFILES) in profile_line, profile_line
    for cell in tagged["injected-parameters"]:
        profile = re.search(r'^PROFILE = "(\w+)"$', cell.source, flags=re.M).group(1)
        assert cell.source.startswith(COMMITTED_NOTE.format(profile=profile)), notebook.name


def test_nbval_fails_when_a_checked_output_drifts(tmp_path):
    """The check above can fail: a tagged cell whose committed output differs is reported."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    path = write_notebook(folder / "01_drift.ipynb", "print(6 * 7)", "print('free')")
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].metadata["tags"] = [CHECK_TAG]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="41\n")]
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="anything\n")]
    nb.cells[2].execution_count, nb.cells[3].execution_count = 1, 2
    nbformat.write(nb, path)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
               "--nbval-current-env", str(path)]
    drifted = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert drifted.returncode == 1 and "41" in drifted.stdout and "42" in drifted.stdout
    nb.cells[2].outputs[0].text = "42\n"
    nbformat.write(nb, path)
    assert subprocess.run(command, cwd=tmp_path, capture_output=True, text=True).returncode == 0


# --------------------------------------------------------------------------- tiny notebooks


def write_notebook(path: Path, *cells: str, constants: str = "") -> Path:
    """A notebook whose first code cell is the tagged ``parameters`` cell (plus ``constants``),
    then ``cells``."""
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell(
        'PROFILE = "full"\nFIGURES_DIR = "../figures"\nOUTPUT_DIR = "../build/output"\n' + constants
    )
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), parameters]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    notebook.metadata["kernelspec"] = {
        "name": "python3", "display_name": "Python 3", "language": "python",
    }
    nbformat.write(notebook, path)
    return path


SAVE_FIGURE = """\
import os
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
figure, axes = plt.subplots()
axes.plot([0, 1, 2], [0, 1, 4])
figure.savefig(Path(FIGURES_DIR) / f"01_tiny_{PROFILE}.png")
Path(OUTPUT_DIR, "from_01.txt").write_text(os.getcwd() + "\\n" + os.environ["POP909_DIR"])
"""

READ_PREVIOUS_OUTPUT = """\
from pathlib import Path
cwd, pop909 = Path(OUTPUT_DIR, "from_01.txt").read_text().splitlines()
Path(FIGURES_DIR, "02_second.txt").write_text(f"{PROFILE} {SONG_ID} {cwd} {pop909}")
"""


def test_run_notebooks_injects_parameters_and_runs_in_order(tmp_path, monkeypatch, capfd):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "01_tiny.ipynb", SAVE_FIGURE)
    write_notebook(folder / "02_second.ipynb", READ_PREVIOUS_OUTPUT, constants='SONG_ID = "001"')
    (folder / "scratch.ipynb").write_text("not a numbered notebook, never run")
    originals = snapshot(folder)
    monkeypatch.chdir(tmp_path)
    pop909 = tmp_path / "pop909"
    monkeypatch.setenv("POP909_DIR", "pop909")  # relative to the current folder, not notebooks/

    executed = run_notebooks(
        profile="quick", out="out", figures="figs", parameters={"SONG_ID": "042"}, folder=folder
    )

    assert executed == [tmp_path / "out" / "01_tiny.ipynb", tmp_path / "out" / "02_second.ipynb"]
    kernel_log = capfd.readouterr().err  # the kernels write to this process's stderr
    assert "IPKernelApp" not in kernel_log and "WARNING" not in kernel_log, kernel_log
    assert (tmp_path / "figs" / "01_tiny_quick.png").stat().st_size > 1000
    # PROFILE and SONG_ID injected; cwd = the notebooks folder; POP909_DIR made absolute
    assert (tmp_path / "figs" / "02_second.txt").read_text() == f"quick 042 {folder} {pop909}"
    injected = nbformat.read(executed[0], as_version=4).cells[2]
    assert "injected-parameters" in injected.metadata["tags"]
    assert f'FIGURES_DIR = "{tmp_path / "figs"}"' in injected.source
    assert f'OUTPUT_DIR = "{tmp_path / "out" / "output"}"' in injected.source
    assert snapshot(folder) == originals
    assert list_notebooks(folder) == [folder / "01_tiny.ipynb", folder / "02_second.ipynb"]
    assert os.environ["POP909_DIR"] == "pop909"  # restored after the run


DRAW_FIGURE = """\
from pianoacc_utils.course import plotting
from pianoacc_utils.course.setup import lesson
L = lesson(PROFILE, FIGURES_DIR, OUTPUT_DIR)
plotting.bar_chart({"a": 1, "b": 2})
"""


def test_a_figure_ending_a_cell_is_a_picture_without_mplbackend(tmp_path, monkeypatch):
    """A plotting figure is drawn as a PNG in a kernel whose environment names no backend, as
    in one that JupyterLab starts (under ``MPLBACKEND=Agg``, as scripts and tests set it:
    the refresh test below)."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "01_figure.ipynb", DRAW_FIGURE)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    executed = run_notebooks(out=tmp_path / "out", figures=tmp_path / "figs", folder=folder)
    cells = nbformat.read(executed[0], as_version=4).cells
    assert "image/png" in cells[-1].outputs[-1].data
    assert not figures_without_image(cells)
    assert figures_without_image([{"outputs": [{"data": {"text/plain": "<Figure size 1x1>"}}]}])


def test_refresh_writes_the_committed_notebooks_back_with_relative_folders(tmp_path):
    """``pianoacc notebooks --refresh``: the notebooks run and are written back in place, the
    injected cell explained, the figures in the checkout's figures/ (relative paths) and,
    under ``MPLBACKEND=Agg``, in the notebook as pictures."""
    assert os.environ["MPLBACKEND"] == "Agg"  # conftest.py
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "01_tiny.ipynb", SAVE_FIGURE, DRAW_FIGURE)
    written = refresh_notebooks("small", folder=folder)
    assert written == [folder / "01_tiny.ipynb"]
    assert (tmp_path / "figures" / "01_tiny_small.png").stat().st_size > 1000
    cells = nbformat.read(written[0], as_version=4).cells
    assert cells[2].source.startswith(COMMITTED_NOTE.format(profile="small"))
    assert 'FIGURES_DIR = "../figures"' in cells[2].source
    assert cells[3].execution_count == 3  # parameters, injected parameters, then this cell
    assert "image/png" in cells[-1].outputs[-1].data and not figures_without_image(cells)


def test_a_failing_cell_names_the_notebook_and_the_line(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "01_broken.ipynb", "ratio = 1\nratio = ratio / 0\nprint(ratio)")
    write_notebook(folder / "02_after.ipynb", "print('never runs')")
    with pytest.raises(PianoaccError) as raised:
        run_notebooks(out=tmp_path / "out", figures=tmp_path / "figs", folder=folder)
    message = str(raised.value)
    assert "01_broken.ipynb" in message
    assert "line 2 `ratio = ratio / 0`" in message
    assert "ZeroDivisionError: division by zero" in message
    assert len(message.splitlines()) == 1
    assert (tmp_path / "out" / "01_broken.ipynb").is_file()  # kept for reading the traceback
    assert not (tmp_path / "out" / "02_after.ipynb").exists()


def test_select_notebooks_by_number_stem_or_file_name(tmp_path):
    paths = [tmp_path / "01_data.ipynb", tmp_path / "02_tokens.ipynb", tmp_path / "03_model.ipynb"]
    assert select_notebooks(paths, None) == paths
    assert select_notebooks(paths, ["03", "01"]) == [paths[0], paths[2]]
    assert select_notebooks(paths, ["02_tokens", "02_tokens.ipynb"]) == [paths[1]]
    with pytest.raises(PianoaccError, match="no notebook named '04'.*01_data, 02_tokens, 03_model"):
        select_notebooks(paths, ["04"])


def test_run_notebooks_checks_its_arguments(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    with pytest.raises(PianoaccError, match="unknown profile 'fast'"):
        run_notebooks(profile="fast", folder=folder)
    with pytest.raises(PianoaccError, match="overwrite the notebooks"):
        run_notebooks(out=folder, figures=tmp_path / "figs", folder=folder)


def test_notebooks_command_reports_an_unknown_notebook(capsys):
    assert cli.main(["notebooks", "--only", "99"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("pianoacc notebooks: error: no notebook named '99'")


def test_notebooks_command_rejects_an_unknown_profile(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["notebooks", "--profile", "fast"])
    assert exited.value.code == 2


@pytest.mark.parametrize("command", ["notebooks", "train"])
def test_every_list_of_profiles_is_training_profiles(command, capsys):
    """The commands offer exactly the profiles of ``training.PROFILES``, in their order."""
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert "{" + ",".join(PROFILES) + "}" in capsys.readouterr().out
