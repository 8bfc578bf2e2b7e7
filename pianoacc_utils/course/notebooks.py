"""Run the numbered notebooks top to bottom with papermill (``make run`` and the notebook tests).

Each notebook ``notebooks/NN_name.ipynb`` has a first code cell tagged ``parameters``;
papermill injects, after it, ``PROFILE`` (a key of :data:`~pianoacc_utils.training.PROFILES`:
how much data and training the notebook uses), ``FIGURES_DIR`` (where it saves its PNG
figures) and ``OUTPUT_DIR`` (a scratch folder for the files it generates), both as
absolute paths. The injected cell opens with a comment that says where it came from.
The committed notebooks are only read: executed copies go to ``out/NN_name.ipynb``.
:func:`refresh_notebooks` is the one exception: it re-executes the committed notebooks
and writes them back, with the figures in the checkout's ``figures/``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from pianoacc_utils.common import PianoaccError, project_root
from pianoacc_utils.training.profiles import PROFILES

KERNEL_NAME = "python3"


NOTEBOOK_NAME = re.compile(r"^\d{2}_.+\.ipynb$")
"""Notebooks the runner executes: two-digit order number, underscore, name."""


PATH_VARIABLES = ("POP909_DIR", "PIANOACC_CACHE")
"""Environment variables holding paths: made absolute before the kernel starts in notebooks/."""


INJECTED_NOTE = (
    "# Parameters injected by `pianoacc notebooks --profile {profile}`: they replace the\n"
    "# defaults of the cell above.\n"
)
"""First lines of the injected cell of an executed copy."""

COMMITTED_NOTE = (
    "# The parameters the committed outputs were run with (`pianoacc notebooks --refresh\n"
    "# --profile {profile}` injects them): they replace the defaults of the cell above.\n"
    "# Delete this cell to run the notebook at those defaults.\n"
)
"""First lines of the injected cell of a committed notebook (:func:`refresh_notebooks`)."""

COMMITTED_PARAMETERS = {"FIGURES_DIR": "../figures", "OUTPUT_DIR": "../build/output"}
"""Folders of a committed run, relative to ``notebooks/`` (the figures are committed too)."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def notebooks_dir() -> Path:
    """The checkout's ``notebooks/`` folder (notebooks are not part of the installed package)."""
    root = project_root()
    if root is None or not (root / "notebooks").is_dir():
        raise PianoaccError(
            "notebooks/ not found: run the notebooks from a checkout of the pianoacc repository"
        )
    return root / "notebooks"


def list_notebooks(folder: str | Path | None = None) -> list[Path]:
    """The ``NN_*.ipynb`` notebooks of ``folder`` (default: the checkout's) in running order."""
    folder = Path(folder) if folder is not None else notebooks_dir()
    return sorted(p for p in folder.glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))


def select_notebooks(notebooks: Sequence[Path], only: Sequence[str] | None) -> list[Path]:
    """The notebooks named in ``only`` (``"01"``, ``"01_data_exploration"`` or the file name).

    ``None`` selects all. Raises :class:`PianoaccError` for a name that matches none.
    """
    if only is None:
        return list(notebooks)
    selected = []
    for name in only:
        name = name.strip()
        matches = [nb for nb in notebooks if name in (nb.name, nb.stem, nb.name[:2])]
        if not matches:
            known = ", ".join(nb.stem for nb in notebooks) or "none"
            raise PianoaccError(f"no notebook named {name!r} (notebooks: {known})")
        selected += [nb for nb in matches if nb not in selected]
    return sorted(selected)


def run_notebooks(
    profile: str = "quick",
    out: str | Path = "build/notebooks",
    figures: str | Path = "figures",
    only: Sequence[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    *,
    folder: str | Path | None = None,
    verbose: bool = False,
    note: str = INJECTED_NOTE,
) -> list[Path]:
    """Execute the notebooks in order; returns the executed copies ``out/NN_name.ipynb``.

    Relative ``out`` and ``figures`` are taken from the current folder. Generated
    files go to ``out/output`` (``OUTPUT_DIR``). ``parameters`` adds or overrides
    injected parameters; ``note`` (formatted with ``profile``) opens the injected cell.
    Stops at the first failing notebook with a :class:`PianoaccError` naming it, the
    cell and its error line.
    """
    if profile not in PROFILES:
        raise PianoaccError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    source = Path(folder).resolve() if folder is not None else notebooks_dir()
    notebooks = select_notebooks(list_notebooks(source), only)
    out_dir, figures_dir = Path(out).resolve(), Path(figures).resolve()
    if out_dir == source:
        raise PianoaccError(f"{out_dir}: the executed copies would overwrite the notebooks")
    output_dir = out_dir / "output"
    for path in (out_dir, figures_dir, output_dir):
        path.mkdir(parents=True, exist_ok=True)
    injected = {
        "PROFILE": profile,
        "FIGURES_DIR": str(figures_dir),
        "OUTPUT_DIR": str(output_dir),
        **(parameters or {}),
    }
    executed = []
    with _absolute_path_variables():
        for notebook in notebooks:
            began = time.perf_counter()
            executed.append(_execute(notebook, out_dir / notebook.name, injected))
            explain_injected_cell(executed[-1], note.format(profile=profile))
            if verbose:
                seconds = time.perf_counter() - began
                print(f"{notebook.name}: ok ({seconds:.1f} s) -> {executed[-1]}", flush=True)
    return executed


def refresh_notebooks(
    profile: str,
    only: Sequence[str] | None = None,
    *,
    folder: str | Path | None = None,
    verbose: bool = False,
) -> list[Path]:
    """Re-execute the committed notebooks at ``profile`` and write them back in place.

    The figures go to the checkout's ``figures/``, the generated files to
    ``build/output``; each notebook is written back only once it has run without an
    error (the executed copies are kept in ``build/notebooks/refreshed``). ``folder``
    replaces the checkout's ``notebooks/`` (its parent then holds ``figures/`` and
    ``build/``). Returns the committed notebooks written.
    """
    source = Path(folder).resolve() if folder is not None else notebooks_dir()
    out = source.parent / "build" / "notebooks" / "refreshed"
    for relative in COMMITTED_PARAMETERS.values():
        (source / relative).resolve().mkdir(parents=True, exist_ok=True)
    executed = run_notebooks(
        profile, out, source.parent / "figures", only, COMMITTED_PARAMETERS,
        folder=source, verbose=verbose, note=COMMITTED_NOTE,
    )
    written = []
    for copy in executed:
        shutil.copyfile(copy, source / copy.name)
        written.append(source / copy.name)
    return written


def explain_injected_cell(notebook: str | Path, note: str) -> None:
    """Open the cell papermill injected into ``notebook`` with ``note`` (comment lines),
    replacing papermill's own ``# Parameters`` line or an earlier note."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            lines = cell.source.splitlines(keepends=True)
            while lines and lines[0].startswith("#"):
                lines.pop(0)
            cell.source = note + "".join(lines)
    nbformat.write(nb, str(notebook))


def _execute(notebook: Path, output: Path, parameters: Mapping[str, Any]) -> Path:
    """One notebook through papermill, with cwd = its folder; errors become PianoaccError."""
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel

    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=dict(parameters),
            kernel_name=KERNEL_NAME,
            language="python",
            cwd=str(notebook.parent),
            log_output=False,
            progress_bar=sys.stderr.isatty(),
            # The kernel's own log is not the notebook's output: at start-up ipykernel warns
            # that its local TCP sockets are unencrypted, and at shutdown jupyter_client
            # interrupts the kernel, which logs an ERROR when the signal lands in a message
            # handler. A cell's error reaches the notebook; a dead kernel raises here.
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
        )
    except papermill.PapermillExecutionError as error:
        raise PianoaccError(_failure_message(notebook, output, error)) from error
    except NoSuchKernel as error:
        raise PianoaccError(
            f"{notebook.name}: no Jupyter kernel {KERNEL_NAME!r}; install ipykernel (make setup)"
        ) from error
    return output


def _failure_message(notebook: Path, output: Path, error: Any) -> str:
    """``NN_name.ipynb: cell [3] line 2 `x = 1 / 0`: ZeroDivisionError: division by zero``."""
    where = f"cell [{error.exec_count}]"
    line = _error_line(error)
    if line is not None:
        number, text = line
        where += f" line {number} `{text.strip()}`"
    evalue = str(error.evalue).strip().splitlines()
    detail = f"{error.ename}: {evalue[0]}" if evalue else str(error.ename)
    return f"{notebook.name}: {where}: {detail} (executed copy: {output})"


def _error_line(error: Any) -> tuple[int, str] | None:
    """Line number and text, in the failing cell, that raised (from the kernel's traceback)."""
    traceback = _ANSI.sub("", "\n".join(error.traceback or []))
    found = re.search(rf"In\s*\[{error.exec_count}\],?\s*line (\d+)", traceback)
    if found is None:
        return None
    number = int(found.group(1))
    lines = (error.source or "").splitlines()
    return (number, lines[number - 1]) if 1 <= number <= len(lines) else None


@contextmanager
def _absolute_path_variables() -> Iterator[None]:
    """Make path-valued environment variables absolute while kernels run in notebooks/."""
    saved = {name: os.environ.get(name) for name in PATH_VARIABLES}
    try:
        for name, value in saved.items():
            if value:
                os.environ[name] = str(Path(value).expanduser().resolve())
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
