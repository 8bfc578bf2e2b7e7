"""The backend and speed code, apart from the pipeline's stages.

A stage's folder holds its idea (the model, the decoding loop, the window loop); how
that idea is made to run fast on a given Keras backend lives here, as Keras keeps
``keras/src/backend/jax/`` apart from its layers:

================  ==========================================================================
``startup``       the Keras backend chosen and prepared before Keras loads (the import hook
                  that loads keras-hub without TensorFlow on JAX, JAX's compilation cache)
``compiled``      a traced loop compiled for the backend in use (XLA, ``jax.jit``, eager)
``exported``      JAX's traced decoding programs kept on disk between processes
``loading``       a saved model loaded without running the initializers of the weights
                  that its file replaces (each a compiled program under JAX)
``timings``       where a generation command's time goes: wall and CPU seconds per phase
``speed``         timing repeated steps (warm-up, median, fastest) and comparing two
                  candidates; what is timed (a model, a precision) is passed in by the
                  training stage, which builds it
================  ==========================================================================

:mod:`pianoacc_utils` runs :mod:`~pianoacc_utils.backends.startup` before anything loads
Keras, so this file imports nothing that does: import the other modules by name
(``from pianoacc_utils.backends.timings import Stopwatch``).
"""

from __future__ import annotations

from pianoacc_utils.backends.startup import (
    FAST_COMMANDS,
    JAX_CACHE_BYTES,
    KERAS_EXTRAS,
    default_backend,
    pianoacc_command,
)
