"""Meter signal and hanging notes: bar lines as a model input, prepared and batched bar
lines, bar lines per generation window, notes the decoder never ended.

Expected values are worked out by hand from the definitions (a token's bar position is
its time minus the last bar line at or before it; a note is hanging when no note-off
ended it), not copied from a run.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
from keras import ops  # noqa: E402  (after models: the backend default is set there)
from tiny import TINY, off, on, shift

from pianoacc_utils import cli
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data import Note, Span
from pianoacc_utils.generation import (
    BAR_BUCKET,
    DEFAULT_BARS,
    WindowConfig,
    accompany,
    default_bar_lines,
    release_notes,
)
from pianoacc_utils.models import (
    BAR_STEPS,
    KINDS,
    NO_BAR,
    AccompanimentModel,
    ModelConfig,
    bar_positions,
    build_model,
    decode_step,
    init_cache,
    pad_bar_lines,
    token_times,
)
from pianoacc_utils.prepare import PreparedSplit
from pianoacc_utils.tokenizer import EventTokenizer
from pianoacc_utils.training import SegmentBatches

TOKENIZER = EventTokenizer()

# --------------------------------------------------------------------------- bar positions


def test_bar_positions_count_from_the_last_bar_line():
    times = np.array([[0, 5, 35, 36, 40, 71, 72, 80]], np.int32)
    lines = np.array([[0, 36, 72, NO_BAR]], np.int32)  # 9/8: bars of 36 steps
    got = ops.convert_to_numpy(bar_positions(ops.convert_to_tensor(times), lines))
    np.testing.assert_array_equal(got, [[0, 5, 35, 0, 4, 35, 0, 8]])


def test_bar_positions_before_the_first_line_and_without_lines():
    times = np.array([[0, 3, 4, 10]], np.int32)
    lines = np.array([[4, NO_BAR]], np.int32)  # a pickup: the first bar line at step 4
    got = ops.convert_to_numpy(bar_positions(ops.convert_to_tensor(times), lines))
    np.testing.assert_array_equal(got, [[0, 3, 0, 6]])
    plain = ops.convert_to_numpy(bar_positions(ops.convert_to_tensor(np.array([[0, 31, 32, 70]]))))
    np.testing.assert_array_equal(plain, [[0, 31, 0, 6]])  # 4/4 from the window start


def test_pad_bar_lines_and_default_lines():
    padded = pad_bar_lines([[0, 24], [0, 36, 72]], rows=3, multiple=4)
    assert padded.dtype == np.int32 and padded.shape == (3, 4)
    np.testing.assert_array_equal(padded[0], [0, 24, NO_BAR, NO_BAR])
    np.testing.assert_array_equal(padded[1], [0, 36, 72, NO_BAR])
    assert (padded[2] == NO_BAR).all()
    assert pad_bar_lines([[0, 24], [0]], width=5).shape == (2, 5)  # a fixed width
    with pytest.raises(PianoaccError, match="does not fit"):
        pad_bar_lines([[0, 24, 48]], width=2)
    lines = default_bar_lines(2, 70)  # 70 steps: bars at 0, 32, 64
    assert lines.shape == (2, BAR_BUCKET)
    np.testing.assert_array_equal(lines[1, :4], [0, 32, 64, NO_BAR])
    # A huge limit (decoding without a window end) lays at most DEFAULT_BARS lines.
    capped = default_bar_lines(1, 10**6)
    np.testing.assert_array_equal(capped[0], np.arange(DEFAULT_BARS) * 32)


# --------------------------------------------------------------------------- the model


@pytest.fixture(scope="module", params=KINDS)
def model(request) -> AccompanimentModel:
    built = build_model(ModelConfig(kind=request.param, **TINY))
    # The bar-position table starts at zeros; give it values so that positions show.
    table = built.time_embedding.bar_embedding.embeddings
    table.assign(np.random.default_rng(0).normal(size=table.shape).astype("float32"))
    return built


MELODY = np.array([[on(72), shift(16), off(72), on(74), shift(32), off(74), shift(8)]], np.int32)
DECODER = np.array(
    [[TOKENIZER.start_id, on(48), shift(12), off(48), on(52), shift(12), off(52), on(55),
      shift(16), off(55), on(60), shift(8), off(60)]],
    np.int32,
)
"""Decoder tokens at times 0, 0, 12, 12, 12, 24, 24, 24, 40, 40, 40, 48, 48 (by hand)."""


def decoder_logits(model, bars) -> np.ndarray:
    encoder_output = model.encode(MELODY)  # the same encoder output for every variant
    return ops.convert_to_numpy(model.decode(DECODER, encoder_output, MELODY, bars=bars))


def test_decoder_times_are_as_constructed():
    times = ops.convert_to_numpy(token_times(DECODER))[0]
    np.testing.assert_array_equal(times, [0, 0, 12, 12, 12, 24, 24, 24, 40, 40, 40, 48, 48])


def test_bar_lines_move_only_the_tokens_after_them(model):
    four_four = decoder_logits(model, np.array([[0, 32, NO_BAR]], np.int32))
    np.testing.assert_allclose(four_four, decoder_logits(model, None), atol=1e-5)
    # A 9/8 bar line at 36 instead of 32: tokens before step 32 see the same bar positions.
    nine_eight = decoder_logits(model, np.array([[0, 36, NO_BAR]], np.int32))
    times = ops.convert_to_numpy(token_times(DECODER))[0]
    early = times < 32
    np.testing.assert_allclose(nine_eight[0, early], four_four[0, early], atol=1e-5)
    assert np.abs(nine_eight[0, ~early] - four_four[0, ~early]).max() > 1e-3


def test_cached_decoding_with_bar_lines_equals_full_decoding(model):
    bars = np.array([[0, 36, NO_BAR]], np.int32)
    encoder_output = model.encode(MELODY, bars=bars)
    full = ops.convert_to_numpy(model.decode(DECODER, encoder_output, MELODY, bars=bars))
    cache = init_cache(model, encoder_output, MELODY, DECODER.shape[1], bars=bars)
    out, cache = decode_step(model, DECODER[:, :2], cache, 0)
    steps = [ops.convert_to_numpy(out)]
    times = ops.convert_to_numpy(token_times(DECODER))[0]
    for index in range(2, DECODER.shape[1]):
        elapsed = np.array([times[index - 1]], np.int32)
        out, cache = decode_step(model, 
            DECODER[:, index : index + 1], cache, ops.convert_to_tensor(index), start_time=elapsed
        )
        steps.append(ops.convert_to_numpy(out))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-4)


def test_checkpoints_saved_without_the_meter_signal_load_without_it(model):
    config = model.get_config()
    old = dict(config, config={k: v for k, v in config["config"].items() if k != "meter"})
    rebuilt = AccompanimentModel.from_config(old)
    assert rebuilt.config.meter is False
    assert rebuilt.time_embedding.bar_embedding is None
    assert model.time_embedding.bar_embedding.input_dim == BAR_STEPS


# --------------------------------------------------------------------------- data


def small_split(bar_lines: list[list[int]]) -> PreparedSplit:
    n = len(bar_lines)
    tokens = np.array([on(60), shift(8), off(60)] * n, np.int16)
    offsets = np.arange(n + 1, dtype=np.int64) * 3
    return PreparedSplit(
        melody_tokens=tokens,
        melody_offsets=offsets,
        accompaniment_tokens=tokens,
        accompaniment_offsets=offsets,
        song_id=np.array([f"{i:03d}" for i in range(n)]),
        first_bar=np.zeros(n, np.int32),
        num_steps=np.full(n, 8, np.int32),
        transpose=np.zeros(n, np.int8),
        harmony=np.zeros((n, 24), np.uint8),
        harmony_offsets=np.arange(n + 1, dtype=np.int64),
        bars=np.concatenate([np.array(b, np.int32) for b in bar_lines]),
        bars_offsets=np.concatenate([[0], np.cumsum([len(b) for b in bar_lines])]).astype(
            np.int64
        ),
    )


def test_batches_carry_each_segments_bar_lines():
    lines = [[0, 24, 48], [0, 36], [0, 32, 64, 96]]
    split = small_split(lines)
    np.testing.assert_array_equal(split.bar_lines(1), [0, 36])
    batches = SegmentBatches(split, ModelConfig(kind="fnet", **TINY), batch_size=4, shuffle=False)
    inputs, _ = batches[0]
    bars = inputs["bars"]
    assert bars.shape == (4, 4) and bars.dtype == np.int32
    # Unshuffled batches follow length order; all lengths tie, so the split's order stays.
    for row, expected in enumerate(lines):
        np.testing.assert_array_equal(bars[row, : len(expected)], expected)
        assert (bars[row, len(expected) :] == NO_BAR).all()
    assert (bars[3] == NO_BAR).all()  # the padding row


# --------------------------------------------------------------------------- generation


class BarRecorder:
    """Stands in for a ``CachedDecoder``: records each window's bar lines and answers
    time shifts that fill the window (no notes)."""

    def __init__(self):
        self.calls = []

    def decode(self, melody, primers, limits, max_length=None, harmony_tables=None, bar_tables=None,
               repeat=1):
        self.calls.append({"limits": list(limits), "bars": np.array(bar_tables)})
        return [
            TOKENIZER.shift_tokens(limit - TOKENIZER.duration_steps(primer))
            for primer, limit in zip(primers, limits)
        ]


def test_each_window_gets_its_own_bar_lines_from_its_origin():
    bar = 36  # 9/8
    bar_starts = [k * bar for k in range(4)]
    melody = [Note(t, t + 4, 72, 80) for t in range(0, 4 * bar, 12)]
    recorder = BarRecorder()
    stand_in = types.SimpleNamespace(config=ModelConfig(kind="fnet", **TINY))
    accompany(stand_in, [(melody, bar_starts, 4 * bar)], window=WindowConfig(2, 1),
              decoder=recorder, candidates=1)
    # Windows of 2 bars overlapping by 1 (bars 0-1, 1-2, 2-3): lines at 0 and 36 of each.
    assert len(recorder.calls) == 3
    for call in recorder.calls:
        assert call["limits"] == [2 * bar]
        assert call["bars"].shape == (1, BAR_BUCKET)
        np.testing.assert_array_equal(call["bars"][0, :3], [0, bar, NO_BAR])


@pytest.mark.parametrize("meter, lines", [(True, [0, 4, 28, 52]), (False, [4, 8, 32, 56])])
def test_a_pickup_window_and_its_bar_lines(meter, lines):
    # An eighth-note pickup (4 steps), then 3/4 bars. A model that reads bar lines starts
    # at the melody; one without them starts 4 steps early (``_pickup_lead``), so that the
    # bar line after the pickup falls on a beat of the window's time.
    bar_starts = [0, 4, 28, 52]
    melody = [Note(t, t + 2, 72, 80) for t in range(0, 76, 4)]
    recorder = BarRecorder()
    stand_in = types.SimpleNamespace(config=ModelConfig(kind="fnet", meter=meter, **TINY))
    accompany(stand_in, [(melody, bar_starts, 76)], window=WindowConfig(8, 2), decoder=recorder,
              candidates=1)
    assert recorder.calls[0]["limits"] == [76 + (0 if meter else 4)]
    np.testing.assert_array_equal(recorder.calls[0]["bars"][0, :5], [*lines, NO_BAR])


# --------------------------------------------------------------------------- hanging notes


def test_decode_hanging_flags_the_notes_no_note_off_ended():
    tokens = [on(60), on(64), shift(8), off(60), on(67), shift(8), on(64), shift(4)]
    notes, hanging = TOKENIZER.decode_hanging(tokens)
    # 60 ended by its note-off; 64 re-struck at 16 (ends the first 64), then never ended;
    # 67 never ended. Open notes end at the final time, 20.
    assert notes == [
        Note(0, 8, 60, notes[0].velocity),
        Note(0, 16, 64, notes[1].velocity),
        Note(8, 20, 67, notes[2].velocity),
        Note(16, 20, 64, notes[3].velocity),
    ]
    assert hanging == [False, False, True, True]
    assert TOKENIZER.decode(tokens) == notes


def test_release_shortens_hanging_notes_only():
    notes = [Note(0, 40, 48, 80), Note(0, 40, 60, 80), Note(8, 12, 64, 80)]
    released = release_notes(notes, [], max_beats=4, hanging=[False, True, True], hanging_beats=1)
    assert [n.end for n in released] == [32, 8, 12]  # 4-beat cap; 1-beat cap; already short
    with pytest.raises(ValueError, match="one flag per note"):
        release_notes(notes, [], hanging=[True])
    # A chord change that leaves the pitch class out still ends a note first.
    chords = [Span(0, 8, "C:maj"), Span(8, 40, "F:maj")]
    (kept,) = release_notes([Note(0, 40, 64, 80)], chords, hanging=[True], hanging_beats=2)
    assert kept.end == 8


@pytest.mark.parametrize("value", ["0", "-1", "x", "inf"])
def test_hanging_beats_must_be_a_positive_number(value, capsys, tmp_path):
    with pytest.raises(SystemExit) as raised:
        cli.main(["accompany", str(tmp_path / "m.mid"), "-o", str(tmp_path / "o.mid"),
                  "--hanging-beats", value])
    assert raised.value.code == 2
    assert "--hanging-beats" in capsys.readouterr().err
    assert not (tmp_path / "o.mid").exists()
