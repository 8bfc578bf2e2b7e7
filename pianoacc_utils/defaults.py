"""Every tuned constant that more than one stage shares, each with its unit and its reason.

What: the grid resolution, the sampling defaults, the defaults and limits of the
generation rules, the ways of accompanying compound meters, the meters POP909 segments
can be re-barred into, and the pitch-class names.

Why one module: the command line, the generation loop, the evaluation and the notebooks
must agree on these values, so each is defined once here and imported everywhere else.
A default chosen on the validation split names the file in ``results/`` that holds the
runs it was chosen from; changing it means rerunning that comparison. The module imports
nothing from the package, so every pipeline stage may import it.

Units: times inside the package are grid steps (a 32nd note; :data:`STEPS_PER_BEAT` per
quarter-note beat) or beats; temperatures and top-p are unitless.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- the grid

STEPS_PER_BEAT = 8
"""Grid steps per quarter-note beat: a step is a 32nd note. POP909's onsets lie on a
16th-note grid (notebook 01), so a 32nd keeps them exactly with room to spare, and a 4/4
bar is 32 steps, the longest single time-shift token (``tokenizer.MAX_SHIFT``)."""


# --------------------------------------------------------------------------- sampling

DEFAULT_TEMPERATURE = 1.0
"""Sampling temperature (unitless; divides the logits, 0 = greedy). Chosen with
:data:`DEFAULT_TOP_P` and :data:`DEFAULT_VELOCITY_TEMPERATURE` on the validation split:
the setting a critic found hardest to tell from the pianist on whole songs
(``results/critic_levers.md``) among those that keep the quality bar's checks
(``results/critic_defaults.md``). The earlier 0.7 (``results/sampling_validation.md``)
made the texture more uniform than a pianist's."""


DEFAULT_TOP_P = 0.95
"""Nucleus sampling mass (probability, 0..1; 1 = off): sample within the smallest set
of tokens whose probability reaches it. Chosen with :data:`DEFAULT_TEMPERATURE` on the
validation split: ``results/critic_levers.md``, ``results/critic_defaults.md``."""


DEFAULT_VELOCITY_TEMPERATURE = 1.2
"""Temperature (unitless) of the choice *among* velocity tokens, their total probability
kept as at the main temperature (``generation.velocity_logits``), so that the dynamics
vary as much as a pianist's. Chosen on the validation split at today's defaults (eight
reranked candidates per window, ``results/critic_velocity.md``): 1.2 lowered the critic's
accuracy on 40 songs by 0.02 both from the melody alone and with a lead sheet against
the 1.4 chosen with one candidate per window (``results/critic_levers.md``), and 1.0
raised it; the earlier 2.0 went with temperature 0.7 (``results/velocity_validation.md``)."""


DEFAULT_NOTE_OFF_BIAS = 0.0
"""Added to every note-off logit before sampling (nats; below 0 notes are held longer:
``generation.note_off_logits``). Kept at 0 on the validation split: at -1 and -2 the model
strikes more onsets with fewer notes each, and the critic tells it from the pianist more
easily (``results/critic_levers.md``)."""


# --------------------------------------------------------------------------- generation rules

DEFAULT_CHORD_MASK = True
"""Whether sampling allows only note-ons of the current chord's pitch classes where a
chord is known (``generation.SamplingConfig.chord_mask``). Chosen on the validation
split: ``results/chord_mask_validation.md``."""


DEFAULT_RELEASE = True
"""Whether generation releases notes the model leaves sounding
(``generation.release_notes``): at the first chord change that leaves their pitch class
out, and after :data:`MAX_HELD_BEATS`. Chosen on the validation split:
``results/chord_mask_validation.md``."""


DEFAULT_CANDIDATES = 8
"""Candidates sampled per window, of which the reranker keeps the one most like the
pianist (``generation.rerank``; 1: no reranking). Chosen on the validation split with the
critic among 1, 2, 4, 8 and 16, keeping the quality bar's checks
(``results/critic_rerank.md``): the critic told FNet from the pianist on 0.59 of the windows
of 20 whole validation songs from the melody alone at 8 and at 16, 0.75 at 1. Asked again
at today's defaults on 40 validation songs, from the melody alone and with a lead sheet,
the best of 12 or of 16 was told apart as often or more often (0.63 and 0.63 at 8, 0.64
and 0.63 at 16: ``results/critic_candidates.md``). Generating takes several times as long:
a 120-bar melody took 13.2 s against 4.1 s with one candidate, its caches filled, on 2 Intel
Xeon cores (``benchmarks/results/accompany_wait.json``, labels ``shortlist-8`` and ``current``)."""


WINDOW_NEW_BARS = 0.25
"""Share of a model's window (the bars of its training segments) that each window after
the first adds, at least one bar; the bars before them, the accompaniment already made,
prime the decoder (``generation.WindowConfig``, ``generation.default_window``: 2 new
bars and 6 primed of 8). With reranking, each window's candidates are chosen among once
per window, so fewer new bars mean finer choices, here once per 2-bar window, the unit
the critic hears. Chosen on the validation split with the critic among 6, 4 and 2 new
bars of 8 (``results/critic_overlap.md``): the critic told FNet from the pianist on 0.56
of the windows of 20 whole validation songs from the melody alone with 2 new bars, 0.59
with 6 (the share before, 0.75), and 0.59 against 0.64 with a lead sheet. Three times the
windows cost time: a 120-bar melody took 10.9 s against 8.0 s with 6 new bars, its caches
filled, on 2 Intel Xeon cores (``benchmarks/results/accompany_wait.json``, labels
``grouped-overlap-6`` and ``grouped-overlap-2``). A model's ``config.json`` may name its
own overlap (``generation.checkpoint_window``): the shipped ones do, chosen per model on 30
validation songs (``results/critic_overlap_models.md``), FNet this share and the
Transformer 6 new bars."""


MAX_CANDIDATES = 16
"""Most candidates per window (each one is a row of the batched decoding)."""


MAX_HELD_BEATS = 4
"""Longest any generated note may sound when notes are released, in beats (a whole 4/4
bar): the limit used in ``results/chord_mask_validation.md``."""


HANGING_BEATS = 4
"""Longest a *hanging* note (one the decoder never ended with a note-off token) may
sound when notes are released, in beats. Shorter limits (1 and 2 beats) made no
difference beyond the spread of sampling on the validation split:
``results/hanging_validation.md``."""


# --------------------------------------------------------------------------- meters

COMPOUND_MODES = ("swing", "plain")
"""How a melody's compound bars (6/8, 9/8, 12/8, ...) are accompanied: through the
swing time map of ``data.compound`` (``"swing"``) or given to the model as they are
(``"plain"``)."""


DEFAULT_COMPOUND = "swing"
"""The default of :data:`COMPOUND_MODES`; chosen on the folk tunes over five sampling
seeds: ``results/compound_validation.md``."""


REBAR_METERS = ("4/4", "3/4", "2/4")
"""Meters a POP909 segment's four-beat bars can be re-barred into (``data.rebar``):
for training data in meters POP909 hardly has, and for ``pianoacc evaluate --meter``
(``results/meter_validation.md``)."""


# --------------------------------------------------------------------------- names

PITCH_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
"""Pitch-class names 0..11, spelled with flats as POP909's chord and key labels are."""
