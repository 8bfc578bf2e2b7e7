"""Choosing and preparing the Keras backend, before Keras loads.

Keras reads its backend once, at its first import, so :mod:`pianoacc_utils` calls
:func:`choose_backend` and :func:`prepare_backend` before it imports a module that
loads Keras; :func:`choose_backend` also turns TensorFlow's oneDNN kernels on
(:data:`ONEDNN`), which TensorFlow reads when it loads. TensorFlow is the default (``KERAS_BACKEND`` overrides it), except for the
``pianoacc`` subcommands of :data:`FAST_COMMANDS`, which start and generate faster on
JAX (``benchmarks/accompany_wait.py``). On JAX :func:`prepare_backend`

* loads keras-hub without TensorFlow: keras-hub imports TensorFlow whenever it is
  installed, for text preprocessing that this package does not use, and that import
  would be most of a short command's start-up (keras-hub's tools that need TensorFlow
  are then unavailable in the process, as in an install without it);
* for those subcommands, also loads Keras and keras-hub without the packages they
  import only to offer plots, data frames, notebook display, scikit-learn wrappers,
  downloads from Kaggle and Hugging Face and a monitoring callback
  (:data:`KERAS_EXTRAS`), which a command that writes MIDI files never uses, and
  defers the modules of :data:`DEFERRED_MODULES` to their first use (none in such a
  command);
* keeps JAX's compiled programs in ``<cache>/jax`` (:func:`common.cache_dir`, unless
  ``JAX_COMPILATION_CACHE_DIR`` names another folder), so that a later process loads
  a model and its decoding loop without compiling them again.

This module imports neither Keras nor a backend at its top, so that importing it
changes nothing yet.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import warnings

from pianoacc_utils.common import cache_dir

FAST_COMMANDS = {"accompany": "jax", "prebuild": "jax"}
"""``pianoacc`` subcommands and the Keras backend each runs on when ``KERAS_BACKEND`` is
unset and that backend is installed (measured: ``benchmarks/results/accompany_wait.json``);
``prebuild`` makes ``accompany``'s programs, so it runs where ``accompany`` does."""

KERAS_EXTRAS = (
    "matplotlib", "pandas", "IPython", "sklearn", "kagglehub", "huggingface_hub", "requests",
)
"""Packages that Keras and keras-hub import when they are installed, for features that
the :data:`FAST_COMMANDS` do not use: plotting, data frames, notebook display (Keras's
utilities), ``keras.wrappers`` (scikit-learn, with SciPy's statistics: 0.9 s of such a
command's start-up on 2 Intel Xeon cores), ``from_preset`` downloads (kagglehub: 0.3 s;
huggingface_hub) and ``keras.callbacks.RemoteMonitor`` (requests: 0.07 s). Each import
is optional in Keras and keras-hub (``benchmarks/accompany_imports.py``,
``benchmarks/results/accompany_imports.json``)."""

DEFERRED_MODULES = ("jax.experimental.sparse.linalg",)
"""Modules that Keras's JAX backend imports and the :data:`FAST_COMMANDS` never use,
loaded only where something first uses them (``importlib.util.LazyLoader``):
``jax.experimental.sparse`` imports its sparse solvers, which import SciPy's sparse
matrices (0.1 s) and linear algebra."""

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


ONEDNN = "1"
"""``TF_ENABLE_ONEDNN_OPTS`` unless it is set: TensorFlow's oneDNN kernels on every x86
processor. TensorFlow turns them on by itself only on processors with AVX-512's
neural-network instructions or AMX; on a 2-core AMD EPYC without AVX-512 it left them off
(``benchmarks/results/onednn.json`` records it), and a training step of
the quick and small profiles' FNet and Transformer took 1.5-2.0 times as long there as
with them on (``benchmarks/onednn.py``, ``benchmarks/results/onednn.json``). On, every
machine runs TensorFlow's float kernels from the same library."""


def choose_backend(argv: list[str]) -> str:
    """Set ``KERAS_BACKEND`` (unless it is set: :func:`default_backend` for ``argv``),
    TensorFlow's oneDNN kernels on (:data:`ONEDNN`, unless set) and quieten TensorFlow's
    logs; returns the backend Keras will load."""
    os.environ.setdefault("KERAS_BACKEND", default_backend(argv))
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", ONEDNN)  # read when TensorFlow loads
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's info and warning logs off
    # keras-hub loads tqdm.auto, which in a Jupyter kernel without ipywidgets warns that it
    # cannot draw progress bars; the package draws none.
    warnings.filterwarnings("ignore", message="IProgress not found")
    return os.environ["KERAS_BACKEND"]


def prepare_backend(argv: list[str]) -> None:
    """What the chosen backend needs before Keras loads: on JAX, :func:`prepare_jax`
    (a short command when ``argv`` runs one of :data:`FAST_COMMANDS`); else nothing."""
    if os.environ["KERAS_BACKEND"] == "jax":
        prepare_jax(pianoacc_command(argv) in FAST_COMMANDS)


def find_devices(backend: str) -> None:
    """Under TensorFlow (``backend``, the one Keras loaded), find the devices now: called
    where TensorFlow's start-up lines are silenced, rather than at the first model call."""
    if backend == "tensorflow":
        import tensorflow

        tensorflow.config.list_physical_devices()


class Deferred(importlib.abc.MetaPathFinder):
    """An import finder under which the modules ``names`` (full dotted names) load
    lazily: ``import NAME`` gives a module whose code runs at its first attribute
    access (``importlib.util.LazyLoader``)."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is None or not hasattr(spec.loader, "exec_module"):
                    return None  # not a module LazyLoader can defer: load it as usual
                spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


class Hidden(importlib.abc.MetaPathFinder):
    """An import finder under which ``import NAME`` fails, as if NAME (a top-level
    package) were not installed."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden)", name=name)


def prepare_jax(short_command: bool) -> None:
    """Before Keras loads on JAX: keras-hub without TensorFlow (and, for a
    ``short_command``, Keras without :data:`KERAS_EXTRAS` and with
    :data:`DEFERRED_MODULES` deferred), and the persistent compilation cache (see the
    module docstring)."""
    import jax

    if "keras_hub" not in sys.modules and "tensorflow" not in sys.modules:
        extras = KERAS_EXTRAS if short_command else ()
        finders = [Hidden("tensorflow", "tensorflow_text", *extras)]
        if short_command:
            finders.append(Deferred(*DEFERRED_MODULES))
        sys.meta_path[:0] = finders
        try:
            import keras_hub  # noqa: F401  (its modules keep "no TensorFlow")
        finally:
            for finder in finders:
                sys.meta_path.remove(finder)
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
    # Cache every program, however fast it compiled: the small ones (a model's first
    # eager operations, say) add up to seconds when compiled anew in every process.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_compilation_cache_max_size", JAX_CACHE_BYTES)
