"""Harmony signal: chord rows, beat tables, the melody harmoniser, the model's chord input,
batches with harmony tables and chords in generation.

Every expected value is worked out by hand from the definitions (a chord row is 12
pitch classes + 12 bass classes; row ``b`` of a table covers steps ``8b..8b+7``), not
copied from a run. Models are tiny and random: their chord projection is random too,
so a table moves the logits, and the tests check *where* it may and may not.
"""

from __future__ import annotations

import functools
import math
import types

import keras  # noqa: E402  (after models: the backend default is set there)
import numpy as np
import pytest
from keras import ops  # noqa: E402
from tiny import TINY, off, on, shift

from pianoacc_utils import data
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data import Note, Segment, Span
from pianoacc_utils.defaults import PITCH_NAMES, STEPS_PER_BEAT
from pianoacc_utils.generation import (
    CHORD_SOURCES,
    GREEDY,
    TABLE_BEATS,
    CachedDecoder,
    WindowConfig,
    accompany,
    accompany_segment,
    mask_logits,
    pad_melodies,
    segment_chords,
)
from pianoacc_utils.harmony import (
    HARMONY_DIM,
    beat_agreement,
    beat_table,
    chord_tones,
    chord_vector,
    estimate_chords,
    estimate_key,
    num_beats,
    pad_tables,
    pitch_class_durations,
    transpose_spans,
    transpose_table,
)
from pianoacc_utils.models import (
    KINDS,
    AccompanimentModel,
    ModelConfig,
    build_model,
    count_parameters,
)
from pianoacc_utils.prepare import PreparedSplit
from pianoacc_utils.tokenizer import EventTokenizer
from pianoacc_utils.training import SegmentBatches

TOKENIZER = EventTokenizer()
BAR = 32
"""Steps in a 4/4 bar."""


def row(tones: set[int], bass: int) -> np.ndarray:
    """A chord row written by hand: ``tones`` multi-hot, ``bass`` one-hot."""
    out = np.zeros(HARMONY_DIM, np.float32)
    out[sorted(tones)] = 1.0
    out[12 + bass] = 1.0
    return out


C_ROW = row({0, 4, 7}, 0)
F_ROW = row({5, 9, 0}, 5)
G_ROW = row({7, 11, 2}, 7)
A_MIN_ROW = row({9, 0, 4}, 9)
ZERO = np.zeros(HARMONY_DIM, np.float32)


# --------------------------------------------------------------------------- chord labels


@pytest.mark.parametrize(
    "label, tones, bass",
    [
        ("C:maj", {0, 4, 7}, 0),
        ("A:min7", {9, 0, 4, 7}, 9),
        ("Bb:maj/3", {10, 2, 5}, 2),  # first inversion: D in the bass
        ("C:maj/b7", {0, 4, 7, 10}, 10),  # a bass outside the triad joins the tones
        ("G:7", {7, 11, 2, 5}, 7),
        ("D:min", {2, 5, 9}, 2),
    ],
)
def test_chord_tones_of_labels(label, tones, bass):
    assert chord_tones(label) == (frozenset(tones), bass)
    np.testing.assert_array_equal(chord_vector(label), row(tones, bass))
    assert chord_vector(label).dtype == np.float32


def test_no_chord_and_bad_labels():
    assert chord_tones("N") is None
    assert chord_tones("X") is None
    np.testing.assert_array_equal(chord_vector("N"), ZERO)
    for bad in ("H:maj", "C:nonsense", ""):
        with pytest.raises(PianoaccError, match="chord label"):
            chord_tones(bad)
    with pytest.raises(PianoaccError):
        chord_vector("H:maj")


def test_transpose_spans_moves_roots_and_keeps_times_and_no_chord():
    spans = [
        Span(0, 8, "A:min7/b3"),
        Span(8, 16, "Bb:maj/3"),
        Span(16, 24, "N"),
        Span(24, 40, "B:maj"),
    ]
    up = transpose_spans(spans, 2)
    assert [s.label for s in up] == ["B:min7/b3", "C:maj/3", "N", "Db:maj"]
    assert [(s.start, s.end) for s in up] == [(s.start, s.end) for s in spans]
    down = transpose_spans(spans, -3)
    assert [s.label for s in down] == ["Gb:min7/b3", "G:maj/3", "N", "Ab:maj"]
    assert transpose_spans(spans, 12) == spans
    assert transpose_spans(spans, 0) == spans


# --------------------------------------------------------------------------- beat tables


def test_num_beats():
    assert [num_beats(n) for n in (0, 1, 8, 9, 16, 17, 64)] == [1, 1, 1, 2, 2, 3, 8]


def test_beat_table_picks_the_longest_chord_in_each_beat():
    chords = [
        Span(0, 5, "C:maj"),  # beat 0: C 5 steps, G 3 steps -> C
        Span(5, 11, "G:maj"),  # beat 1: G 3 steps, F 5 steps -> F
        Span(11, 19, "F:maj"),  # beat 2: F 3 steps, silence 5 steps -> no chord
    ]
    table = beat_table(chords, 24)
    assert table.shape == (3, HARMONY_DIM) and table.dtype == np.float32
    np.testing.assert_array_equal(table, np.stack([C_ROW, F_ROW, ZERO]))


def test_beat_table_a_chord_wins_a_tie_with_silence():
    table = beat_table([Span(4, 12, "G:maj")], 16)  # 4 of 8 steps in both beats
    np.testing.assert_array_equal(table, np.stack([G_ROW, G_ROW]))
    table = beat_table([Span(3, 13, "G:maj")], 24)  # 5 then 5 steps; 0 in beat 2
    np.testing.assert_array_equal(table, np.stack([G_ROW, G_ROW, ZERO]))


def test_beat_table_origin_and_beats_beyond_the_chords():
    chords = [Span(0, 16, "C:maj"), Span(16, 32, "F:maj")]
    np.testing.assert_array_equal(beat_table(chords, 16, origin=16), np.stack([F_ROW, F_ROW]))
    # From step 10: beat 0 = steps 10..17 (C 6, F 2), beat 1 = 18..25 (F), beat 2 = 26..33
    # (F 6 steps, silence 2).
    np.testing.assert_array_equal(
        beat_table(chords, 24, origin=10), np.stack([C_ROW, F_ROW, F_ROW])
    )
    # Explicit beats: rows past the last chord are no chord.
    table = beat_table(chords, 32, beats=6)
    assert table.shape == (6, HARMONY_DIM)
    np.testing.assert_array_equal(table[:4], np.stack([C_ROW, C_ROW, F_ROW, F_ROW]))
    np.testing.assert_array_equal(table[4:], 0)
    # An origin past every chord, and no chords at all: zeros of the right size.
    np.testing.assert_array_equal(beat_table(chords, 20, origin=40), np.zeros((3, HARMONY_DIM)))
    np.testing.assert_array_equal(beat_table([], 20), np.zeros((3, HARMONY_DIM)))
    # Default beats cover num_steps: 20 steps -> 3 beats.
    assert beat_table(chords, 20).shape == (3, HARMONY_DIM)


def test_beat_table_no_chord_label_is_zeros():
    table = beat_table([Span(0, 8, "N"), Span(8, 16, "A:min"), Span(16, 22, "X")], 24)
    np.testing.assert_array_equal(table, np.stack([ZERO, A_MIN_ROW, ZERO]))


def test_transpose_table_rotates_tones_and_bass():
    table = np.stack([C_ROW, row({10, 2, 5}, 2), ZERO])  # C, Bb/D, none
    up = transpose_table(table, 2)
    np.testing.assert_array_equal(up, np.stack([row({2, 6, 9}, 2), row({0, 4, 7}, 4), ZERO]))
    down = transpose_table(table, -1)
    np.testing.assert_array_equal(down, np.stack([row({11, 3, 6}, 11), row({9, 1, 4}, 1), ZERO]))
    np.testing.assert_array_equal(transpose_table(table, 12), table)
    np.testing.assert_array_equal(transpose_table(transpose_table(table, 5), -5), table)
    # Batched tables (B, beats, 24) rotate along the last axis too.
    np.testing.assert_array_equal(transpose_table(table[None], 2)[0], up)


@pytest.mark.parametrize("semitones", [-13, -5, -1, 1, 2, 6, 11, 12, 14])
def test_transposing_a_table_equals_the_table_of_transposed_spans(semitones):
    # No beat has two chords of equal length (which one wins such a tie is not specified).
    spans = [
        Span(0, 13, "C:maj"),
        Span(13, 21, "A:min7"),
        Span(21, 30, "Bb:maj/3"),
        Span(30, 40, "N"),
        Span(40, 50, "Gb:min7/b3"),
        Span(50, 64, "E:7/5"),
    ]
    expected = transpose_table(beat_table(spans, 64), semitones)
    np.testing.assert_array_equal(beat_table(transpose_spans(spans, semitones), 64), expected)


def test_pad_tables_pads_with_no_chord_and_cuts():
    a = np.stack([C_ROW, F_ROW])
    b = np.stack([G_ROW, G_ROW, G_ROW, A_MIN_ROW])
    out = pad_tables([a, b])
    assert out.shape == (2, 4, HARMONY_DIM) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], np.stack([C_ROW, F_ROW, ZERO, ZERO]))
    np.testing.assert_array_equal(out[1], b)
    cut = pad_tables([a, b], beats=3, rows=4)
    assert cut.shape == (4, 3, HARMONY_DIM)
    np.testing.assert_array_equal(cut[1], b[:3])
    np.testing.assert_array_equal(cut[2:], 0)


# --------------------------------------------------------------------------- estimated chords


def arpeggio(bar: int, pitches: list[int], bar_steps: int = BAR) -> list[Note]:
    """Eighth notes (4 steps) cycling through ``pitches`` over one bar of ``bar_steps``."""
    start = bar * bar_steps
    return [
        Note(start + t, start + t + 4, pitches[i % len(pitches)], 80)
        for i, t in enumerate(range(0, bar_steps, 4))
    ]


C_ARPEGGIO = [60, 64, 67, 64]  # C E G E
F_ARPEGGIO = [65, 69, 72, 69]  # F A C A
G_ARPEGGIO = [67, 71, 74, 71]  # G B D B
A_MIN_ARPEGGIO = [57, 60, 64, 60]  # A C E C


def test_estimate_chords_of_plain_arpeggios():
    melody = arpeggio(0, C_ARPEGGIO) + arpeggio(1, C_ARPEGGIO)
    assert estimate_chords(melody, [0, BAR], 2 * BAR) == [Span(0, 2 * BAR, "C:maj")]
    melody = arpeggio(0, A_MIN_ARPEGGIO) + arpeggio(1, A_MIN_ARPEGGIO)
    assert estimate_chords(melody, [0, BAR], 2 * BAR) == [Span(0, 2 * BAR, "A:min")]


def test_estimate_chords_follows_a_chord_change_per_bar():
    melody = arpeggio(0, C_ARPEGGIO) + arpeggio(1, F_ARPEGGIO) + arpeggio(2, G_ARPEGGIO)
    spans = estimate_chords(melody, [0, BAR, 2 * BAR], 3 * BAR)
    assert spans == [
        Span(0, BAR, "C:maj"),
        Span(BAR, 2 * BAR, "F:maj"),
        Span(2 * BAR, 3 * BAR, "G:maj"),
    ]


def test_estimate_chords_changes_in_mid_bar_when_the_melody_does():
    # One bar of 8 beats (split into two units of 4 beats): C E G E x2, then G B D B x2.
    # (In a 4/4 bar the half bars are only 2 beats long, and the key prior and the
    # mid-bar change cost can outweigh such short arpeggios.)
    melody = arpeggio(0, C_ARPEGGIO) + [
        n._replace(start=n.start + BAR, end=n.end + BAR) for n in arpeggio(0, G_ARPEGGIO)
    ]
    assert estimate_chords(melody, [0], 2 * BAR) == [
        Span(0, BAR, "C:maj"), Span(BAR, 2 * BAR, "G:maj")
    ]


@pytest.mark.parametrize("semitones", [2, 5, 9])
def test_estimate_chords_moves_with_a_transposed_melody(semitones):
    melody = arpeggio(0, C_ARPEGGIO) + arpeggio(1, F_ARPEGGIO) + arpeggio(2, G_ARPEGGIO)
    moved = [n._replace(pitch=n.pitch + semitones) for n in melody]
    root = PITCH_NAMES
    assert [s.label for s in estimate_chords(moved, [0, BAR, 2 * BAR], 3 * BAR)] == [
        f"{root[semitones % 12]}:maj", f"{root[(5 + semitones) % 12]}:maj",
        f"{root[(7 + semitones) % 12]}:maj",
    ]


def test_estimate_chords_of_nothing():
    assert estimate_chords([], [0, BAR], 2 * BAR) == []
    assert estimate_chords(arpeggio(0, C_ARPEGGIO), [0], 0) == []


def test_estimate_chords_keeps_the_chord_over_a_bar_without_melody():
    melody = arpeggio(0, C_ARPEGGIO) + arpeggio(1, G_ARPEGGIO)  # bar 2 is empty
    spans = estimate_chords(melody, [0, BAR, 2 * BAR], 3 * BAR)
    assert spans == [Span(0, BAR, "C:maj"), Span(BAR, 3 * BAR, "G:maj")]


def test_beat_agreement():
    annotated = [Span(0, 32, "C:maj"), Span(32, 64, "A:min7")]
    assert beat_agreement(annotated, annotated, 64) == 1.0
    # Root and third only: a seventh or an inversion still agrees.
    assert beat_agreement([Span(0, 32, "C:maj/3"), Span(32, 64, "A:min")], annotated, 64) == 1.0
    # Clearly different chords (tritone away, or other third) agree nowhere.
    assert beat_agreement([Span(0, 64, "Gb:maj")], annotated, 64) == 0.0
    assert beat_agreement([Span(0, 32, "C:min"), Span(32, 64, "A:maj")], annotated, 64) == 0.0
    # Half right: the first 4 of 8 beats.
    assert beat_agreement([Span(0, 32, "C:maj"), Span(32, 64, "F:maj")], annotated, 64) == 0.5
    # Missing estimates count as wrong; beats without annotation do not count.
    assert beat_agreement([Span(0, 32, "C:maj")], annotated, 64) == 0.5
    assert beat_agreement(annotated, [Span(0, 16, "C:maj")], 64) == 1.0
    assert math.isnan(beat_agreement(annotated, [], 64))
    assert math.isnan(beat_agreement(annotated, [Span(0, 64, "N")], 64))


# --------------------------------------------------------------------------- the model


def tiny_model(kind: str, seed: int = 1, **changes) -> AccompanimentModel:
    keras.utils.set_random_seed(seed)
    return build_model(ModelConfig(kind=kind, **{**TINY, **changes}))


@pytest.fixture(scope="module", params=KINDS)
def model(request) -> AccompanimentModel:
    return tiny_model(request.param)


BEAT = shift(STEPS_PER_BEAT)

MELODY = np.array(
    [[on(72), on(76), off(72), on(79), off(76), off(79), on(74), off(74)] * 2,
     [on(60), off(60), on(62), off(62), on(64), off(64)] + [0] * 10],
    np.int32,
)
"""Two melodies without time shifts: every melody token is in beat 0."""

DECODER = np.array(
    [[TOKENIZER.start_id, on(48), BEAT, on(52), off(48), BEAT, on(55), BEAT, off(52),
      on(60), BEAT, off(55), BEAT, on(64)],
     [TOKENIZER.start_id, on(50), shift(4), shift(4), on(53), BEAT, on(57), BEAT, off(50),
      BEAT, on(62), BEAT, 0, 0]],
    np.int32,
)
"""Decoder rows whose tokens' beats are known by construction (see :data:`DECODER_BEATS`)."""

DECODER_BEATS = np.array(
    [[0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5],
     [0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]]
)
"""Beat of each decoder token: the time after its own shift, // 8 (counted by hand)."""


def random_tables(seed: int, batch: int = 2, beats: int = 6) -> np.ndarray:
    tables = np.random.default_rng(seed).integers(0, 2, (batch, beats, HARMONY_DIM))
    return tables.astype(np.float32)


def logits(model, table=None, melody=MELODY, decoder=DECODER) -> np.ndarray:
    inputs = {"melody": melody, "decoder_input": decoder}
    if table is not None:
        inputs["harmony"] = table
    return ops.convert_to_numpy(model(inputs, training=False))


def test_token_beats_are_as_constructed():
    from pianoacc_utils.models import token_times

    beats = ops.convert_to_numpy(token_times(DECODER)) // STEPS_PER_BEAT
    np.testing.assert_array_equal(beats, DECODER_BEATS)
    assert (ops.convert_to_numpy(token_times(MELODY)) == 0).all()


def test_a_table_changes_the_logits_and_zeros_change_nothing(model):
    plain = logits(model)
    zeros = np.zeros((2, 6, HARMONY_DIM), np.float32)
    np.testing.assert_array_equal(logits(model, zeros), plain)  # exactly: no bias
    np.testing.assert_array_equal(logits(model, zeros[:, :1]), plain)
    with_chords = logits(model, random_tables(0))
    assert np.abs(with_chords - plain).max() > 1e-3
    assert with_chords.shape == plain.shape == (2, DECODER.shape[1], TOKENIZER.vocabulary_size)
    # Other chords, other logits.
    assert np.abs(logits(model, random_tables(1)) - with_chords).max() > 1e-3


def test_a_token_reads_the_row_of_its_own_beat(model):
    """Changing row b moves the decoder output from the first token in beat b on,
    not before it (causal attention; the melody is all in beat 0, so the encoder
    does not see row b either)."""
    table = random_tables(2)
    reference = logits(model, table)
    encoded = ops.convert_to_numpy(model.encode(MELODY, harmony=table))
    for b in range(1, 6):
        changed = table.copy()
        changed[:, b] = 1.0 - changed[:, b]
        out = logits(model, changed)
        np.testing.assert_array_equal(
            ops.convert_to_numpy(model.encode(MELODY, harmony=changed)), encoded
        )
        for r in range(2):
            first = int(np.argmax(DECODER_BEATS[r] >= b))
            np.testing.assert_allclose(out[r, :first], reference[r, :first], atol=1e-6)
            assert np.abs(out[r, first] - reference[r, first]).max() > 1e-4, (b, r)
    # Row 0 is the melody's beat: it moves the encoder output.
    changed = table.copy()
    changed[:, 0] = 1.0 - changed[:, 0]
    moved = ops.convert_to_numpy(model.encode(MELODY, harmony=changed)) - encoded
    assert np.abs(moved[0]).max() > 1e-3


def test_each_batch_row_reads_its_own_table(model):
    table = random_tables(3)
    both = logits(model, table)
    for r in range(2):
        alone = logits(model, table[r : r + 1], MELODY[r : r + 1], DECODER[r : r + 1])
        np.testing.assert_allclose(both[r], alone[0], atol=1e-5)
    swapped = logits(model, table[::-1].copy())
    assert np.abs(swapped - both).max() > 1e-3


def test_tokens_past_the_table_use_its_last_row(model):
    table = random_tables(4, beats=3)
    extended = np.concatenate([table, np.repeat(table[:, -1:], 3, axis=1)], axis=1)
    assert extended.shape[1] == 6  # covers beat 5, the last decoder beat
    np.testing.assert_allclose(logits(model, table), logits(model, extended), atol=1e-6)
    # ... and not the zeros of a no-chord beat.
    padded = np.concatenate([table, np.zeros((2, 3, HARMONY_DIM), np.float32)], axis=1)
    assert np.abs(logits(model, padded) - logits(model, table)).max() > 1e-4


def test_cached_decoding_with_a_table_equals_full_decoding(model):
    table = random_tables(5)
    melody = MELODY
    encoder_output = model.encode(melody, harmony=table)
    full = ops.convert_to_numpy(model.decode(DECODER, encoder_output, melody, harmony=table))
    np.testing.assert_allclose(full, logits(model, table), atol=1e-5)
    assert np.abs(full - logits(model)).max() > 1e-3  # the table matters here

    length = DECODER.shape[1]
    # Row 1 has padding at the end; compare its real tokens only.
    cache = init_cache(model, encoder_output, melody, length, harmony=table)
    out, cache = decode_step(model, DECODER[:, :3], cache, 0)
    steps = [ops.convert_to_numpy(out)]
    for index in range(3, length):
        elapsed = TOKENIZER_SHIFTS[DECODER[:, :index]].sum(axis=1).astype(np.int32)
        out, cache = decode_step(model, 
            DECODER[:, index : index + 1], cache, ops.convert_to_tensor(index), start_time=elapsed
        )
        steps.append(ops.convert_to_numpy(out))
    cached = np.concatenate(steps, axis=1)
    real = DECODER != 0
    np.testing.assert_allclose(cached[real], full[real], atol=1e-4)


TOKENIZER_SHIFTS = np.array(
    [TOKENIZER.time_shift_steps(i) for i in range(TOKENIZER.vocabulary_size)], np.int32
)


def test_save_load_keeps_the_chord_projection(model, tmp_path):
    table = random_tables(6)
    before = logits(model, table)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert loaded.config.harmony is True
    np.testing.assert_array_equal(
        ops.convert_to_numpy(loaded.harmony_embedding.projection.kernel),
        ops.convert_to_numpy(model.harmony_embedding.projection.kernel),
    )
    np.testing.assert_allclose(logits(loaded, table), before, atol=1e-6)


def test_configs_without_harmony():
    model = tiny_model("fnet")
    config = model.get_config()
    old = dict(config, config={k: v for k, v in config["config"].items() if k != "harmony"})
    rebuilt = AccompanimentModel.from_config(old)
    assert rebuilt.config.harmony is False  # saved before the harmony signal existed
    assert rebuilt.harmony_embedding is None
    assert ModelConfig().harmony is True
    plain = tiny_model("fnet", harmony=False)
    assert plain.harmony_embedding is None
    np.testing.assert_array_equal(logits(plain, random_tables(7)), logits(plain))
    extra = count_parameters(model)["embeddings"] - count_parameters(plain)["embeddings"]
    assert extra == HARMONY_DIM * TINY["hidden_dim"]  # one bias-free 24 x hidden kernel
    assert count_parameters(model)["total"] - count_parameters(plain)["total"] == extra


# --------------------------------------------------------------------------- compiled generation


PRIMER = [on(48), BEAT, on(52), BEAT, off(48), BEAT]
"""A primer lasting 3 beats: generation starts in beat 3, the prefill reads rows 0-2."""


def reference_greedy(model, melody_ids, table, buffer) -> tuple[list[int], float]:
    """Greedy tokens after :data:`PRIMER` from re-running the full decoder with the table
    each step, and the smallest gap between the best and second-best allowed logit."""
    melody = pad_melodies([melody_ids], model.config.melody_length)
    encoder_output = model.encode(melody, harmony=table)
    tokens, margins = [TOKENIZER.start_id, *PRIMER], []
    elapsed = TOKENIZER.duration_steps(PRIMER)
    while len(tokens) < buffer:
        out = model.decode(np.array([tokens], np.int32), encoder_output, melody, harmony=table)
        masked = ops.convert_to_numpy(
            mask_logits(out[:, -1, :], np.array([10**6 - elapsed], np.int32))
        )[0]
        top = np.sort(masked)
        margins.append(top[-1] - top[-2])
        token = int(np.argmax(masked))
        if token == TOKENIZER.end_id:
            break
        tokens.append(token)
        elapsed += TOKENIZER.time_shift_steps(token)
    return tokens[1 + len(PRIMER) :], float(min(margins))


@functools.lru_cache(maxsize=None)
def greedy_with_tables():
    model = tiny_model("transformer", seed=3)
    kernel, bias = model.logits_layer.get_weights()
    bias[TOKENIZER.end_id] -= 100.0  # never END by itself
    shifts = slice(TOKENIZER.time_shift_offset, TOKENIZER.time_shift_offset + 32)
    bias[shifts] += 4.0  # time shifts often enough to cross beats
    model.logits_layer.set_weights([kernel * 8.0, bias])  # no near-ties
    # The chords weigh more than a random start gives them, so that they decide tokens.
    projection = model.harmony_embedding.projection
    projection.kernel.assign(ops.convert_to_numpy(projection.kernel) * 4.0)
    melody = np.random.default_rng(0).integers(3, 323, 40).tolist()
    table = random_tables(8, batch=1, beats=TABLE_BEATS)
    decoder = CachedDecoder(model, GREEDY)
    padded = pad_melodies([melody], model.config.melody_length)
    buffer = 41

    def run(tables):
        return decoder.decode(padded, [PRIMER], [10**6], buffer, harmony_tables=tables)[0]

    return {
        "chords": run(table),
        "zeros": run(np.zeros_like(table)),
        "none": run(None),
        "reference": reference_greedy(model, melody, table, buffer),
        "reference_none": reference_greedy(model, melody, None, buffer),
    }


def test_compiled_generation_reads_the_tables():
    runs = greedy_with_tables()
    reference, margin = runs["reference"]
    assert margin > 0.01, "near-tie on the reference path: choose another seed"
    assert len(reference) == 41 - 1 - len(PRIMER)
    assert sum(TOKENIZER_SHIFTS[reference]) >= 2 * STEPS_PER_BEAT  # several beats' rows
    assert len(set(reference)) > 2
    assert runs["chords"] == reference
    none_reference, none_margin = runs["reference_none"]
    assert none_margin > 0.01
    assert runs["zeros"] == runs["none"] == none_reference
    assert reference != none_reference  # the chords changed what was generated


# --------------------------------------------------------------------------- batches


def hand_split(tables: list[np.ndarray], seed: int = 0) -> PreparedSplit:
    """A split whose sequence ``i`` has melody ``[10 + i, ...]`` and harmony ``tables[i]``."""
    rng = np.random.default_rng(seed)
    melodies = [np.array([10 + i, *rng.integers(3, 300, 5 + i % 7)]) for i in range(len(tables))]
    accompaniments = [rng.integers(3, 300, 3 + (7 * i) % 20) for i in range(len(tables))]

    def ragged(parts):
        return (
            np.concatenate(parts).astype(np.int16),
            np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64),
        )

    melody_tokens, melody_offsets = ragged(melodies)
    accompaniment_tokens, accompaniment_offsets = ragged(accompaniments)
    n = len(tables)
    return PreparedSplit(
        melody_tokens=melody_tokens,
        melody_offsets=melody_offsets,
        accompaniment_tokens=accompaniment_tokens,
        accompaniment_offsets=accompaniment_offsets,
        song_id=np.array([f"{i:03d}" for i in range(n)]),
        first_bar=np.zeros(n, np.int32),
        num_steps=np.array([len(t) * STEPS_PER_BEAT for t in tables], np.int32),
        transpose=np.zeros(n, np.int8),
        harmony=np.concatenate(tables).astype(np.uint8),
        harmony_offsets=np.concatenate([[0], np.cumsum([len(t) for t in tables])]).astype(np.int64),
        bars=np.zeros(n, np.int32),
        bars_offsets=np.arange(n + 1, dtype=np.int64),
    )


def chordy_tables(count: int, seed: int) -> list[np.ndarray]:
    """Tables of 2..9 beats, every row a real chord (not zeros)."""
    rng = np.random.default_rng(seed)
    labels = ["C:maj", "F:maj", "G:maj", "A:min", "Bb:maj/3", "E:min7"]
    return [
        np.stack([chord_vector(labels[k]) for k in rng.integers(0, len(labels), 2 + i % 8)])
        for i in range(count)
    ]


def test_prepared_split_harmony_table():
    tables = chordy_tables(4, seed=1)
    split = hand_split(tables)
    for i, table in enumerate(tables):
        got = split.harmony_table(i)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, table)


@pytest.mark.parametrize("shuffle", [False, True])
def test_segment_batches_carry_the_split_tables(shuffle):
    tables = chordy_tables(11, seed=2)
    config = ModelConfig(kind="fnet", **TINY)
    batches = SegmentBatches(hand_split(tables), config, batch_size=4, shuffle=shuffle, seed=5)
    seen = []
    for index in range(len(batches)):
        inputs, _ = batches[index]
        table = inputs["harmony"]
        assert table.dtype == np.float32 and table.ndim == 3
        assert table.shape[0] == 4 and table.shape[2] == HARMONY_DIM
        members = [int(m) - 10 for m in inputs["melody"][:, 0] if m != 0]
        assert table.shape[1] == max(len(tables[i]) for i in members)
        for r, i in enumerate(members):
            np.testing.assert_array_equal(table[r, : len(tables[i])], tables[i])
            np.testing.assert_array_equal(table[r, len(tables[i]) :], 0)
        np.testing.assert_array_equal(table[len(members) :], 0)  # padding rows
        seen += members
    assert sorted(seen) == list(range(11))


def test_harmony_dropout_zeroes_whole_rows():
    tables = chordy_tables(400, seed=3)
    config = ModelConfig(kind="fnet", **TINY)

    def zeroed(dropout, epoch=0):
        batches = SegmentBatches(
            hand_split(tables), config, batch_size=8, shuffle=True, seed=1,
            harmony_dropout=dropout, epoch=epoch,
        )
        dropped, kept = set(), set()
        for index in range(len(batches)):
            inputs, _ = batches[index]
            for r, m in enumerate(inputs["melody"][:, 0]):
                if m == 0:
                    continue
                i, table = int(m) - 10, inputs["harmony"][r]
                if not table.any():
                    dropped.add(i)
                else:  # a kept row is the whole table, untouched
                    np.testing.assert_array_equal(table[: len(tables[i])], tables[i])
                    kept.add(i)
        assert len(dropped) + len(kept) == len(tables)
        return dropped

    assert zeroed(0.0) == set()
    assert len(zeroed(1.0)) == len(tables)
    half = zeroed(0.5)
    assert 0.4 * len(tables) < len(half) < 0.6 * len(tables)
    share = len(zeroed(0.1))
    assert 0.04 * len(tables) < share < 0.17 * len(tables)
    assert zeroed(0.5, epoch=1) != half  # drawn anew each epoch


# --------------------------------------------------------------------------- chords in generation


def hand_segment(transpose: int = 0) -> Segment:
    melody = arpeggio(0, C_ARPEGGIO) + arpeggio(1, F_ARPEGGIO)
    seg = Segment(
        song_id="999",
        first_bar=0,
        num_steps=2 * BAR,
        melody=melody,
        accompaniment=[Note(0, 32, 48, 70), Note(32, 64, 53, 70)],
        chords=[Span(0, BAR, "C:maj"), Span(BAR, 2 * BAR, "F:maj/3")],
        bar_starts=[0, BAR],
        key="C:maj",
    )
    return data.transpose(seg, transpose) if transpose else seg


def test_segment_chords_sources():
    assert CHORD_SOURCES == ("annotated", "estimated", "none")
    seg = hand_segment()
    with pytest.raises(PianoaccError, match="chords"):
        segment_chords(seg, "lead-sheet")
    assert segment_chords(seg, "none") == []
    assert segment_chords(seg, "annotated") == seg.chords
    assert segment_chords(seg) == seg.chords  # annotated by default
    assert [s.label for s in segment_chords(seg, "estimated")] == ["C:maj", "F:maj"]
    moved = hand_segment(transpose=3)
    assert moved.transpose == 3 and moved.chords == seg.chords  # labels as annotated
    assert segment_chords(moved, "annotated") == [
        Span(0, BAR, "Eb:maj"), Span(BAR, 2 * BAR, "Ab:maj/3")
    ]
    assert [s.label for s in segment_chords(moved, "estimated")] == ["Eb:maj", "Ab:maj"]


class TableRecorder:
    """Stands in for a :class:`CachedDecoder`: records the harmony tables of each call and
    answers time shifts that fill each window (no notes), so windows move on."""

    def __init__(self):
        self.calls = []

    def decode(
        self, melody, primers, limits, max_length=None, harmony_tables=None, bar_tables=None,
        repeat=1,
    ):
        self.calls.append(
            {"limits": list(limits), "tables": np.array(harmony_tables), "bars": bar_tables}
        )
        return [
            TOKENIZER.shift_tokens(limit - TOKENIZER.duration_steps(primer))
            for primer, limit in zip(primers, limits)
        ]


def stand_in_model(meter: bool = True):
    return types.SimpleNamespace(config=ModelConfig(kind="fnet", meter=meter, **TINY))


def test_accompany_gives_each_window_the_table_from_its_origin():
    chords = [
        Span(0, BAR, "C:maj"), Span(BAR, 2 * BAR, "F:maj"),
        Span(2 * BAR, 3 * BAR, "G:maj"), Span(3 * BAR, 4 * BAR, "A:min"),
    ]
    rows = [C_ROW, F_ROW, G_ROW, A_MIN_ROW]
    melody = [Note(t, t + 4, 72, 80) for t in range(0, 4 * BAR, 8)]
    bar_starts = [0, BAR, 2 * BAR, 3 * BAR]
    recorder = TableRecorder()
    accompany(
        stand_in_model(), [(melody, bar_starts, 4 * BAR)], window=WindowConfig(2, 1),
        decoder=recorder, chords=[chords],
        candidates=1,
    )
    # Windows of 2 bars overlapping by 1: bars 0-1, 1-2, 2-3.
    assert [c["limits"] for c in recorder.calls] == [[2 * BAR]] * 3
    for k, call in enumerate(recorder.calls):
        table = call["tables"]
        assert table.shape == (1, TABLE_BEATS, HARMONY_DIM)
        expected = np.zeros((TABLE_BEATS, HARMONY_DIM), np.float32)
        expected[:4], expected[4:8] = rows[k], rows[k + 1]
        np.testing.assert_array_equal(table[0], expected)

    # No chords: all-zero tables.
    recorder = TableRecorder()
    accompany(
        stand_in_model(), [(melody, bar_starts, 4 * BAR)], window=WindowConfig(2, 1),
        decoder=recorder,
        candidates=1,
    )
    assert len(recorder.calls) == 3
    assert all(not c["tables"].any() for c in recorder.calls)


def test_accompany_segment_moves_annotated_chords_with_the_transposition():
    recorder = TableRecorder()
    accompany_segment(stand_in_model(), [hand_segment(), hand_segment(transpose=-2)],
                      decoder=recorder, chords="annotated", candidates=1)
    assert len(recorder.calls) == 1  # one 2-bar window each, batched
    table = recorder.calls[0]["tables"]
    assert table.shape == (2, TABLE_BEATS, HARMONY_DIM)
    f_over_a = row({5, 9, 0}, 9)
    np.testing.assert_array_equal(table[0, :8], np.stack([C_ROW] * 4 + [f_over_a] * 4))
    bb = row({10, 2, 5}, 10)  # C -> Bb
    eb_over_g = row({3, 7, 10}, 7)  # F/A -> Eb/G
    np.testing.assert_array_equal(table[1, :8], np.stack([bb] * 4 + [eb_over_g] * 4))
    np.testing.assert_array_equal(table[:, 8:], 0)

    recorder = TableRecorder()
    accompany_segment(stand_in_model(), [hand_segment()], decoder=recorder, chords="none",
                      candidates=1)
    assert not recorder.calls[0]["tables"].any()


def test_beat_table_ties_do_not_depend_on_spelling_or_transposition():
    chords = [Span(0, 4, "C:maj"), Span(4, 8, "G:maj")]
    for semitones in range(12):
        moved = transpose_table(beat_table(chords, 8), semitones)
        assert np.array_equal(moved, beat_table(transpose_spans(chords, semitones), 8))
    # The earlier of two equally long chords wins, whatever their names.
    assert np.array_equal(beat_table(chords, 8)[0], chord_vector("C:maj"))
    assert np.array_equal(
        beat_table([Span(0, 4, "G:maj"), Span(4, 8, "C:maj")], 8)[0], chord_vector("G:maj")
    )


def test_beat_table_an_n_span_is_silence():
    # "N" over 0-3 and nothing over 3-5: five steps of no chord against three of C.
    table = beat_table([Span(0, 3, "N"), Span(5, 8, "C:maj")], 8)
    assert not table.any()


# --------------------------------------------------------------------------- release and chord mask

from pianoacc_utils.generation import chord_allowed, release_notes  # noqa: E402
from pianoacc_utils.models import decode_step, init_cache


def test_release_notes_at_a_chord_change_that_leaves_them_out():
    chords = [Span(0, 16, "C:maj"), Span(16, 32, "F:maj"), Span(32, 48, "F:maj")]
    notes = [
        Note(0, 40, 60, 80),  # C: in C and in F, held on (cut by the 4-beat limit at 32)
        Note(0, 40, 64, 80),  # E: not in F, released where F starts (step 16)
        Note(2, 12, 67, 80),  # G: ends before the change, unchanged
        Note(20, 30, 71, 80),  # B over F: a non-chord tone from its onset, no change after it
    ]
    released = release_notes(notes, chords, max_beats=4)
    assert [n.end for n in released] == [32, 16, 12, 30]
    assert [n[:1] + n[2:] for n in released] == [n[:1] + n[2:] for n in notes]
    # A table of the chords that the caller keeps (the window loop: one per song, longer
    # than the notes) releases them as the one made for the notes does.
    song_table = beat_table(chords + [Span(48, 96, "G:maj")], 96)
    assert release_notes(notes, chords, max_beats=4, table=song_table) == released
    silent = beat_table([], 96)  # the table is what is read: no chord there, no release
    assert [n.end for n in release_notes(notes, chords, max_beats=4, table=silent)] == [
        32, 32, 12, 30]


def test_release_notes_without_chords_only_limits_the_length():
    notes = [Note(0, 100, 60, 80), Note(5, 9, 62, 80)]
    assert [n.end for n in release_notes(notes, [], max_beats=2)] == [16, 9]
    assert release_notes([], [Span(0, 8, "C:maj")]) == []


def test_release_notes_ignores_no_chord_beats():
    chords = [Span(0, 8, "C:maj"), Span(16, 32, "G:maj")]  # beat 1 has no chord
    (note,) = release_notes([Note(0, 24, 64, 80)], chords, max_beats=8)
    assert note.end == 16  # E is left out at the change to G (beat 2), not at the gap


def test_chord_mask_bans_note_ons_outside_the_chord_only():
    tok = EventTokenizer()
    logits = np.zeros((2, len(tok)), np.float32)
    tables = np.zeros((2, 1, HARMONY_DIM), np.float32)
    tables[0, 0] = chord_vector("C:maj")  # row 0: C major; row 1: no chord known
    allowed = chord_allowed(tables)[:, 0]
    masked = ops.convert_to_numpy(mask_logits(logits, np.array([100, 100], np.int32), allowed))
    note_on = np.arange(tok.note_on_offset, tok.note_off_offset)
    allowed = masked[0, note_on] > -1e8
    assert sorted({p % 12 for p in np.flatnonzero(allowed)}) == [0, 4, 7]
    assert allowed.sum() == len([p for p in range(128) if p % 12 in (0, 4, 7)])
    assert (masked[1, note_on] > -1e8).all()
    # Note-offs, time shifts and velocities are untouched by the chord.
    others = np.arange(tok.note_off_offset, len(tok))
    assert (masked[0, others] == masked[1, others]).all()


def test_sampling_with_the_chord_mask_plays_only_chord_tones(model):
    tok = EventTokenizer()
    table = np.zeros((1, TABLE_BEATS, HARMONY_DIM), np.float32)
    table[0, :, :24] = np.concatenate([chord_vector("D:min")[:12], chord_vector("D:min")[12:]])
    melody = pad_melodies([[tok.note_on_offset + 62, tok.time_shift_offset + 7, tok.note_off_offset + 62]], model.config.melody_length)
    from pianoacc_utils.generation import SamplingConfig

    played = set()
    # One decoder (one compiled loop), three draws: its seed state moves on after each.
    decoder = CachedDecoder(model, SamplingConfig(temperature=1.5, top_p=None, seed=0, chord_mask=True))
    for _ in range(3):
        tokens = decoder.decode(melody, [[]], [10**6], max_length=48, harmony_tables=table)[0]
        played |= {t - tok.note_on_offset for t in tokens if tok.note_on_offset <= t < tok.note_off_offset}
    assert played and {p % 12 for p in played} <= {2, 5, 9}


def test_a_short_pickup_puts_the_first_window_on_the_beat_without_the_meter_signal():
    # A pickup of an eighth note (4 steps): the first window starts 4 steps before the
    # melody, so that the bar line after the pickup falls on a beat of the window's time.
    bar_starts = [0, 4, 4 + BAR, 4 + 2 * BAR]
    melody = [Note(t, t + 2, 72, 80) for t in range(0, 4 + 3 * BAR, 4)]
    chords = [Span(0, 4, "G:maj"), Span(4, 4 + 3 * BAR, "C:maj")]
    recorder = TableRecorder()
    primers = []
    original = recorder.decode

    def decode(melody, primers_, limits, max_length=None, harmony_tables=None, bar_tables=None,
               repeat=1):
        primers.append([list(p) for p in primers_])
        return original(melody, primers_, limits, max_length, harmony_tables, bar_tables, repeat)

    recorder.decode = decode
    accompany(
        stand_in_model(meter=False), [(melody, bar_starts, 4 + 3 * BAR)],
        window=WindowConfig(2, 1), decoder=recorder, chords=[chords],
        candidates=1,
    )
    lead = 4  # (a model with the meter signal reads the bar lines instead: no lead)
    # The first window covers the pickup and bar 1, from 4 steps before the melody; its
    # primer is those 4 steps of silence, so generation starts at step 0.
    assert recorder.calls[0]["limits"] == [4 + BAR + lead]
    assert primers[0] == [TOKENIZER.shift_tokens(lead)]
    table = recorder.calls[0]["tables"][0]
    np.testing.assert_array_equal(table[0], chord_vector("G:maj"))  # steps -4..3: G
    np.testing.assert_array_equal(table[1], chord_vector("C:maj"))  # the bar line, on a beat
    # Later windows start on their first bar line, as without a pickup.
    assert all(call["limits"] == [2 * BAR] for call in recorder.calls[1:-1])


def test_a_pickup_of_whole_beats_needs_no_lead():
    recorder = TableRecorder()
    accompany(
        stand_in_model(meter=False), [([Note(0, 4, 72, 80)], [0, 8, 8 + BAR], 8 + 2 * BAR)],
        window=WindowConfig(2, 1), decoder=recorder,
        candidates=1,
    )
    assert recorder.calls[0]["limits"] == [8 + BAR]


# --------------------------------------------------------------------------- key estimation


def music21_key(notes: list[Note]) -> str | None:
    """The key music21's ``KrumhanslSchmuckler`` finds for the notes' profile (each pitch
    class once, lasting its total duration in beats): what ``estimate_key`` reproduces."""
    from music21 import note as m21note
    from music21 import stream
    from music21.analysis.discrete import KrumhanslSchmuckler

    chroma = pitch_class_durations(notes)
    if chroma.sum() <= 0:
        return None
    profile = stream.Stream()
    profile.append(
        [m21note.Note(60 + pc, quarterLength=float(d)) for pc, d in enumerate(chroma) if d > 0]
    )
    (tonic, mode, _), _ = KrumhanslSchmuckler().process(profile)
    return f"{PITCH_NAMES[tonic.pitchClass]}:{'maj' if mode == 'major' else 'min'}"


def test_estimate_key_is_music21s_krumhansl_schmuckler():
    """The same key as music21 for random melodies (chromatic and diatonic), a single
    pitch class, and every pitch class alike (all correlations equal: music21's order
    among them decides)."""
    rng = np.random.default_rng(0)
    cases = [[Note(0, 8, 60 + pc, 80)] for pc in range(12)]
    cases.append([Note(0, 8, 60 + pc, 80) for pc in range(12)])
    for _ in range(300):
        count = int(rng.integers(1, 40))
        starts, lengths = rng.integers(0, 500, count), rng.integers(1, 64, count)
        if rng.random() < 0.5:
            pitches = rng.integers(48, 84, count)
        else:  # a major scale on a random tonic
            pitches = 48 + rng.choice([0, 2, 4, 5, 7, 9, 11], count) + int(rng.integers(0, 12))
        cases.append([Note(int(s), int(s + n), int(p), 80)
                      for s, n, p in zip(starts, lengths, pitches)])
    assert [estimate_key(notes) for notes in cases] == [music21_key(notes) for notes in cases]

