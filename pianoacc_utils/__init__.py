"""pianoacc: melody-conditioned piano accompaniment (FNet and Transformer seq2seq on POP909).

The package follows the pipeline, data flowing forward (a module imports only from
the stages above it; ``tests/test_layout.py`` checks this):

==================  ======================================================================
``common``          errors, paths and atomic writes; ``defaults``: every tuned constant
``backends``        backend and speed code: choosing and preparing the Keras backend,
                    compiling the decoding loop for it, kept JAX programs, timings of
                    commands and of training steps
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
``import pianoacc_utils``. Keras reads its backend once, at its first import, so the
package first chooses and prepares it (:mod:`pianoacc_utils.backends.startup`):
TensorFlow by default (``KERAS_BACKEND`` overrides it), JAX for the ``pianoacc``
subcommands of :data:`~pianoacc_utils.backends.startup.FAST_COMMANDS`, which start and
generate faster on it (``benchmarks/accompany_wait.py``).
"""

from __future__ import annotations

import sys
import time

STARTED = time.perf_counter()
"""``time.perf_counter()`` when the package began loading: the start of the imports
that ``pianoacc accompany --timings`` reports."""

from pianoacc_utils.backends import startup as _startup  # noqa: E402  (imports no Keras)

_startup.choose_backend(getattr(sys, "argv", []))

from pianoacc_utils.common import PianoaccError, native_stderr_silenced  # noqa: E402

with native_stderr_silenced():  # TensorFlow's start-up lines, whatever the log level
    _startup.prepare_backend(getattr(sys, "argv", []))
    from pianoacc_utils.models import seq2seq as _registers_keras_classes  # noqa: E402, F401

    _startup.find_devices(_registers_keras_classes.keras.backend.backend())

__all__ = ["PianoaccError"]
__version__ = "0.1.0"
