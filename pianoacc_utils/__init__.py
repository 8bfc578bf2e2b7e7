"""pianoacc: melody-conditioned piano accompaniment (FNet and Transformer seq2seq on POP909).

The package follows the pipeline, data flowing forward (a module imports only from
the stages above it; ``tests/test_layout.py`` checks this):

==================  ======================================================================
``common``          errors, paths and atomic writes; ``defaults``: every tuned constant
``data``            notes on a grid: POP909 songs, melodies from MIDI files, example tunes
``tokenizer``       notes <-> event tokens (note-on/off, time shift, velocity)
``harmony``         chords: labels and per-beat tables, key estimation, chords for a melody
``prepare``         POP909 -> token arrays for training (segments, transpositions, meters)
``models``          the seq2seq model (``seq2seq``) and its cached decoding (``cached``)
``training``        profiles, batches, the masked loss, the training loop, exporting a run
``generation``      sampling, the decoding loop, accompanying whole melodies window by window
``evaluation``      metrics (pure functions), evaluation runs, summaries and reports
``audio``           MIDI -> sound, for listening
``course``          what the notebooks use to teach: setup, exploration, plots, FNet demos
``cli``             the ``pianoacc`` command
==================  ======================================================================

Importing the package registers the model's Keras classes, so that
``keras.saving.load_model("pretrained/fnet/model.keras")`` works after
``import pianoacc_utils``. Keras reads its backend once, at its first import: the
package sets TensorFlow as the default (``KERAS_BACKEND`` overrides it), except for
the ``pianoacc`` subcommands of :data:`FAST_COMMANDS`, which start and generate faster
on JAX (``benchmarks/accompany_wait.py``). On JAX the package

* loads keras-hub without TensorFlow: keras-hub imports TensorFlow whenever it is
  installed, for text preprocessing that this package does not use, and that import
  would be most of a short command's start-up (keras-hub's tools that need TensorFlow
  are then unavailable in the process, as in an install without it);
* for those subcommands, also loads Keras without the packages it imports only to
  offer plots, data frames and notebook display (:data:`KERAS_EXTRAS`), which
  a command that writes MIDI files never uses;
* keeps JAX's compiled programs in ``<cache>/jax`` (:func:`common.cache_dir`, unless
  ``JAX_COMPILATION_CACHE_DIR`` names another folder), so that a later process loads
  a model and its decoding loop without compiling them again.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import time
import warnings

STARTED = time.perf_counter()
"""``time.perf_counter()`` when the package began loading: the start of the imports
that ``pianoacc accompany --timings`` reports."""

FAST_COMMANDS = {"accompany": "jax"}
"""``pianoacc`` subcommands and the Keras backend each runs on when ``KERAS_BACKEND`` is
unset and that backend is installed (measured: ``benchmarks/results/accompany_wait.json``)."""

KERAS_EXTRAS = ("matplotlib", "pandas", "IPython")
"""Packages that Keras imports when they are installed, for features (plotting, data
frames, notebook display) that the :data:`FAST_COMMANDS` do not use; their imports
are most of a second of such a command's start-up."""

JAX_CACHE_BYTES = 1 << 30
"""Most bytes JAX's persistent compilation cache keeps (least recently used go first)."""


def pianoacc_command(argv: list[str]) -> str:
    """The ``pianoacc`` subcommand that ``argv`` runs (``"accompany"``), else ``""``."""
    return argv[1] if len(argv) > 1 and os.path.basename(argv[0]) == "pianoacc" else ""


def default_backend(argv: list[str]) -> str:
    """The Keras backend to use when ``KERAS_BACKEND`` is unset: TensorFlow, or the
    backend of :data:`FAST_COMMANDS` when ``argv`` runs the ``pianoacc`` command with
    one of those subcommands and that backend is installed."""
    backend = FAST_COMMANDS.get(pianoacc_command(argv))
    if backend is not None and importlib.util.find_spec(backend) is not None:
        return backend
    return "tensorflow"


class _Hidden(importlib.abc.MetaPathFinder):
    """An import finder under which ``import NAME`` fails, as if NAME (a top-level
    package) were not installed."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden)", name=name)


def _prepare_jax(short_command: bool) -> None:
    """Before Keras loads on JAX: keras-hub without TensorFlow (and, for a
    ``short_command``, Keras without :data:`KERAS_EXTRAS`), and the persistent
    compilation cache (see the module docstring)."""
    import jax

    if "keras_hub" not in sys.modules and "tensorflow" not in sys.modules:
        extras = KERAS_EXTRAS if short_command else ()
        hidden = _Hidden("tensorflow", "tensorflow_text", *extras)
        sys.meta_path.insert(0, hidden)
        try:
            import keras_hub  # (its modules keep "no TensorFlow")
        finally:
            sys.meta_path.remove(hidden)
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
    # Cache every program, however fast it compiled: loading a model compiles about a
    # hundred small ones, which together take longer than the decoding loop.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_compilation_cache_max_size", JAX_CACHE_BYTES)


os.environ.setdefault("KERAS_BACKEND", default_backend(getattr(sys, "argv", [])))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's info and warning logs off
# keras-hub loads tqdm.auto, which in a Jupyter kernel without ipywidgets warns that it
# cannot draw progress bars; the package draws none.
warnings.filterwarnings("ignore", message="IProgress not found")

from pianoacc_utils.common import PianoaccError, cache_dir, native_stderr_silenced  # noqa: E402

with native_stderr_silenced():  # TensorFlow's start-up lines, whatever the log level
    if os.environ["KERAS_BACKEND"] == "jax":
        _prepare_jax(pianoacc_command(getattr(sys, "argv", [])) in FAST_COMMANDS)
    from pianoacc_utils.models import seq2seq as _registers_keras_classes  # noqa: E402, F401

    if _registers_keras_classes.keras.backend.backend() == "tensorflow":
        import tensorflow as _tf

        _tf.config.list_physical_devices()  # finds the devices now, with stderr silenced

__all__ = ["PianoaccError"]
__version__ = "0.1.0"
