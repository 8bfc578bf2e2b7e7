"""Harmony: chord labels and per-beat chord tables, key estimation, chords from a melody.

``chords`` turns POP909 chord labels into the 24-number rows the models read (one
per quarter-note beat); ``key`` estimates keys (Krumhansl-Schmuckler); ``rule``
estimates one triad per half bar from a melody alone, for melodies that come
without chords; ``learned`` chooses chords for a melody alone with parameters learned
from POP909's chord annotations, which ``fitting`` fits.
"""

from __future__ import annotations

from pianoacc_utils.harmony.chords import (
    HARMONY_DIM,
    beat_table,
    chord_coverage,
    chord_tones,
    chord_vector,
    num_beats,
    pad_tables,
    read_chords,
    transpose_spans,
    transpose_table,
)
from pianoacc_utils.harmony.key import (
    estimate_key,
    parse_key,
    pitch_class_durations,
)
from pianoacc_utils.harmony.rule import (
    BAR_CHANGE_COST,
    DIATONIC_BONUS,
    MAJOR_SCALE_TRIADS,
    MID_BAR_CHANGE_COST,
    NON_CHORD_TONE_WEIGHT,
    ON_BEAT_WEIGHT,
    TRIADS,
    beat_agreement,
    estimate_chords,
)
from pianoacc_utils.harmony.learned import (
    PARAMETERS_FILE,
    POSITIONS,
    Frames,
    PreparedMelody,
    decode,
    decode_path,
    emission_scores,
    frame_features,
    harmonise,
    key_tonic,
    learned_chords,
    load_parameters,
    melody_frames,
    melody_tonic,
    prepare_melody,
    read_parameters,
    state_label,
    state_posteriors,
    transition_matrices,
    viterbi,
)
from pianoacc_utils.harmony.fitting import (
    VOCABULARY_COVERAGE,
    HarmonyExample,
    TrainingData,
    choose_vocabulary,
    fit_classifier,
    fit_harmoniser,
    fit_hmm_emissions,
    fit_transitions,
    frame_states,
    label_state,
    nearest_quality,
    quality_beats,
    quality_shape,
    save_parameters,
    split_label,
    training_data,
)
