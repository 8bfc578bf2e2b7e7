"""TODO docstring for defaults."""

from __future__ import annotations

STEPS_PER_BEAT = 8
"""Grid resolution: a 32nd note, i.e. 8 steps per quarter-note beat."""


DEFAULT_TEMPERATURE = 0.7


DEFAULT_TOP_P = 0.8
"""Default sampling (generation, evaluation, command line): chosen on the validation
split, see ``results/sampling_validation.md``."""


DEFAULT_VELOCITY_TEMPERATURE = 2.0
"""Default temperature of the choice among velocity tokens (``generation.velocity_logits``):
chosen on the validation split, see ``results/velocity_validation.md``."""


DEFAULT_CHORD_MASK = True
"""Whether sampling keeps note-ons to the tones of the current chord when chords are
known (see ``generation.SamplingConfig``); chosen on the validation split, see
``results/chord_mask_validation.md``."""


DEFAULT_RELEASE = True


MAX_HELD_BEATS = 4
"""Generation releases notes the model leaves hanging (see ``generation.release_notes``):
on by default, chosen on the validation split (``results/chord_mask_validation.md``)."""


HANGING_BEATS = 4
"""Longest a note the decoder never ended (no note-off token) may sound, in beats."""


COMPOUND_MODES = ("swing", "plain")
"""How melodies' compound bars (6/8, 9/8, 12/8, ...) are accompanied: through the swing
time map of ``compound`` (``"swing"``) or given to the model as they are (``"plain"``)."""


DEFAULT_COMPOUND = "swing"


REBAR_METERS = ("4/4", "3/4", "2/4")
"""Meters a POP909 segment's four-beat bars can be re-barred into (``data.rebar``):
for training data in meters POP909 hardly has, and for ``pianoacc evaluate --meter``."""

PITCH_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
"""Pitch-class names 0..11, spelled with flats as POP909's chord and key labels are."""
