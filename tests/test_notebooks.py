"""The notebooks run top to bottom in the quick profile, and the runner behind ``make run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from pianoacc_utils import cli
from pianoacc_utils.common import PianoaccError, project_root
from pianoacc_utils.course.notebooks import list_notebooks, run_notebooks, select_notebooks

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


# --------------------------------------------------------------------------- project notebooks


LINKED = ("pretrained", "results", "benchmarks")
"""Checkout folders the notebooks read through ``../``: linked beside the quick copy."""

CHECK_TAG = "nbval-check-output"
"""Cell tag: nbval compares this cell's output with the committed one (``--nbval-lax``)."""


def quick_copy(notebook: Path, root: Path) -> Path:
    """A copy of a committed notebook, its injected parameters set to the quick profile and to
    folders under ``root``, placed in ``root/notebooks`` beside links to :data:`LINKED`."""
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
    saves its figures to FIGURES_DIR, and the checkout's notebooks and figures stay as they are."""
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
