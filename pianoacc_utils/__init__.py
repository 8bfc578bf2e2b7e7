"""pianoacc: melody-conditioned piano accompaniment (FNet and Transformer seq2seq on POP909).

Pipeline stages, one module each, data flowing forward:
``data`` -> ``tokenizer`` -> ``models`` -> ``training`` -> ``generation`` -> ``evaluation``,
with ``harmony`` (chords per beat as a model input, chords estimated from a melody)
beside them and ``plotting``, ``audio`` and ``cli`` around them.
"""

from __future__ import annotations

from pianoacc_utils.common import PianoaccError

__all__ = ["PianoaccError"]
__version__ = "0.1.0"
