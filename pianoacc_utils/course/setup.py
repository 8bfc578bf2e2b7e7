"""One call that sets up a lesson: the first code cell of every notebook runs :func:`lesson`.

It checks the notebook's ``PROFILE`` against the one list of profiles
(:data:`pianoacc_utils.training.PROFILES`), makes the figure and output folders,
has figures drawn as pictures, and quiets what would otherwise clutter a notebook:
TensorFlow's notices that a compiled function was traced again (the decoding loop
meets windows of new shapes by design). Jupyter's widget warning is quieted by the
package itself, when it loads.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from IPython import get_ipython
from IPython.display import Code

from pianoacc_utils.common import PianoaccError

from pianoacc_utils.training.profiles import PROFILES, Profile


@dataclass(frozen=True)
class Lesson:
    """What a notebook needs to know about its run.

    ``profile``: the training profile the notebook runs at (its ``name`` is the
    ``PROFILE`` parameter); ``figures``: where the notebook saves its figures;
    ``output``: a scratch folder for the files it writes (MIDI, JSON, training runs).
    """

    profile: Profile
    figures: Path
    output: Path

    @property
    def quick(self) -> bool:
        """True in the ``quick`` profile (a few songs, a tiny model: what CI runs)."""
        return self.profile.name == "quick"

    def figure(self, name: str) -> Path:
        """Path of the figure file ``name`` in :attr:`figures`."""
        return self.figures / name


def _quiet_retracing(record: logging.LogRecord) -> bool:
    return "retracing" not in record.getMessage()


def quiet_retracing() -> None:
    """Drop TensorFlow's notices that a compiled function was traced again: the decoding
    loop meets windows of new shapes by design, and the notice is no error."""
    tf_logger = logging.getLogger("tensorflow")
    if _quiet_retracing not in tf_logger.filters:
        tf_logger.addFilter(_quiet_retracing)


def show_figures_inline() -> None:
    """Make a notebook draw a :class:`~matplotlib.figure.Figure` that ends a cell as a picture.

    The plotting functions build figures without pyplot, so nothing else registers
    the kernel's PNG formatter for them: without it a figure shows as the text
    ``<Figure size 1800x350 with 4 Axes>``. This is ``%matplotlib inline``, which also
    holds when ``MPLBACKEND`` (``Agg`` in scripts and tests) is set for the kernel.
    Outside IPython it does nothing.
    """
    shell = get_ipython()
    if shell is not None:
        shell.enable_matplotlib("inline")


def lesson(profile: str, figures_dir: str | Path, output_dir: str | Path) -> Lesson:
    """Check ``profile``, create the folders, set display options; returns the :class:`Lesson`.

    ``profile`` must be a key of :data:`~pianoacc_utils.training.PROFILES`;
    ``figures_dir`` and ``output_dir`` are made if missing.
    """
    if profile not in PROFILES:
        raise PianoaccError(f"PROFILE {profile!r}: expected one of {', '.join(PROFILES)}")
    figures, output = Path(figures_dir), Path(output_dir)
    figures.mkdir(parents=True, exist_ok=True)
    output.mkdir(parents=True, exist_ok=True)
    quiet_retracing()
    show_figures_inline()
    pd.set_option("display.precision", 3)
    pd.set_option("display.width", 120)
    pd.set_option("display.max_colwidth", 90)
    print(f"profile {profile}: {PROFILES[profile].description}")
    return Lesson(PROFILES[profile], figures, output)


def show_source(obj: object) -> Code:
    """The source code of a function, class or module of the package, highlighted.

    Notebooks show the code they teach with this (the real source, read from the
    package, so the notebook cannot drift from it).
    """
    return Code(inspect.getsource(obj), language="python")
