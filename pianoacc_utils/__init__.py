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
package sets TensorFlow as the default (``KERAS_BACKEND`` overrides it).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's info and warning logs off

from pianoacc_utils.common import PianoaccError, native_stderr_silenced  # noqa: E402

with native_stderr_silenced():  # TensorFlow's start-up lines, whatever the log level
    from pianoacc_utils.models import seq2seq as _registers_keras_classes  # noqa: E402, F401

    if _registers_keras_classes.keras.backend.backend() == "tensorflow":
        import tensorflow as _tf

        _tf.config.list_physical_devices()  # finds the devices now, with stderr silenced

__all__ = ["PianoaccError"]
__version__ = "0.1.0"
