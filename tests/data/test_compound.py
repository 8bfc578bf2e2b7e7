"""Compound meters through the swing time map: which bars are compound, the map worked
out by hand, the melody, chords and bar lines the model is given, and the way back.

Expected values follow from the definition in ``pianoacc_utils.data.compound``: in a
compound beat of three units the first two units take the first half of a simple beat,
the third unit the second half (a 6/8 eighth is 4 steps, its beat 12 steps -> 8).
"""

from __future__ import annotations

import types

import numpy as np
import pytest
from melodies import RESOLUTION, Track, tune, write_midi
from tiny import TINY

from pianoacc_utils import cli, data
from pianoacc_utils.data import Note, Span
from pianoacc_utils.data.compound import TimeMap, bar_units, compound_unit, melody_time_map
from pianoacc_utils.generation import WindowConfig, accompany, accompany_melodies
from pianoacc_utils.models import NO_BAR, ModelConfig
from pianoacc_utils.tokenizer import EventTokenizer

TOKENIZER = EventTokenizer()
TINY_LONG = {**TINY, "melody_length": 256, "accompaniment_length": 256}
"""A tiny model whose windows hold a 4-bar tune's tokens."""
EIGHTH = RESOLUTION // 2  # ticks


@pytest.mark.parametrize(
    "numerator, denominator, unit",
    [(6, 8, 4), (9, 8, 4), (12, 8, 4), (6, 4, 8), (12, 16, 2), (6, 32, 0),
     (3, 8, 0), (3, 4, 0), (4, 4, 0), (2, 2, 0), (7, 8, 0), (5, 4, 0)],
)
def test_compound_unit(numerator, denominator, unit):
    assert compound_unit(numerator, denominator) == unit


def test_a_6_8_bar_becomes_a_2_4_bar():
    time_map = TimeMap.for_bars([0, 24], 48, [4, 4])
    # eighths of two 6/8 bars: the first two of each beat share half a beat, the third
    # takes the other half
    eighths = np.arange(0, 48, 4)
    np.testing.assert_array_equal(
        time_map.to_model(eighths), [0, 2, 4, 8, 10, 12, 16, 18, 20, 24, 26, 28]
    )
    np.testing.assert_array_equal(time_map.to_model([24, 48]), [16, 32])  # bar lines
    # the way back: straight eighths of the model come back long-short ("swung")
    np.testing.assert_array_equal(time_map.to_melody([0, 4, 8, 12, 16]), [0, 8, 12, 20, 24])
    np.testing.assert_array_equal(time_map.to_melody(eighths[::3] * 2 // 3), eighths[::3])
    np.testing.assert_array_equal(time_map.to_melody(time_map.to_model(eighths)), eighths)


def test_simple_bars_are_left_alone_and_later_bars_move_with_the_earlier_ones():
    time_map = TimeMap.for_bars([0, 32, 56], 88, [0, 4, 0])  # 4/4, 6/8, 4/4
    np.testing.assert_array_equal(time_map.to_model([0, 5, 31, 32]), [0, 5, 31, 32])
    np.testing.assert_array_equal(time_map.to_model([40, 44, 56, 60, 88]), [36, 40, 48, 52, 80])
    assert TimeMap.for_bars([0, 24, 48], 72, [0, 0, 0]).is_identity
    assert not time_map.is_identity


def test_a_pickup_counts_its_beats_back_from_the_bar_line():
    # A one-eighth pickup in 6/8 is the *last* eighth of a beat: it takes half a beat.
    time_map = TimeMap.for_bars([0, 4, 28], 52, [4, 4, 4])
    np.testing.assert_array_equal(time_map.to_model([0, 4, 12, 16, 28]), [0, 4, 8, 12, 20])
    # A two-eighth pickup is the last two thirds: 1/4 + 1/2 beat.
    time_map = TimeMap.for_bars([0, 8, 32], 56, [4, 4, 4])
    np.testing.assert_array_equal(time_map.to_model([0, 4, 8, 20]), [0, 2, 6, 14])


def test_notes_and_chords_move_and_keep_a_step():
    time_map = TimeMap.for_bars([0, 24], 48, [4, 4])
    notes = [Note(0, 12, 60, 90), Note(8, 9, 64, 70)]
    assert time_map.notes_to_model(notes) == [Note(0, 8, 60, 90), Note(4, 5, 64, 70)]
    assert time_map.notes_to_melody([Note(4, 5, 64, 70)]) == [Note(8, 9, 64, 70)]
    chords = [Span(0, 25, "C:maj"), Span(25, 26, "G:maj"), Span(26, 48, "F:maj")]
    # steps 25 and 26 map to 16.5 and 17, both rounded to 17: the G span is dropped
    assert time_map.spans_to_model(chords) == [Span(0, 17, "C:maj"), Span(17, 32, "F:maj")]
    with pytest.raises(ValueError, match="one value per bar"):
        TimeMap.for_bars([0, 24], 48, [4])


def melody_file(path, meters, bars=4, numerator=6, denominator=8, pickup=0):
    """Eighth notes on every eighth of ``bars`` bars (plus a pickup of ``pickup`` eighths)."""
    bar = numerator * RESOLUTION * 4 // denominator
    count = (bars * bar) // EIGHTH + pickup
    notes = tune(count, EIGHTH)
    return write_midi(path, [Track(notes, "MELODY")], meters=meters)


def test_bar_units_follow_the_time_signatures(tmp_path):
    bar68, bar44 = 3 * RESOLUTION, 4 * RESOLUTION
    path = melody_file(
        tmp_path / "m.mid", [(0, 6, 8), (2 * bar68, 4, 4), (2 * bar68 + bar44, 9, 8)], bars=5
    )
    melody = data.load_melody(path)
    assert list(melody.grid.bar_starts[:4]) == [0, 24, 48, 80]
    assert melody.grid.meters[:4] == ((6, 8), (6, 8), (4, 4), (9, 8))
    assert bar_units(melody)[:4] == [4, 4, 0, 4]
    assert melody_time_map(melody, "plain").is_identity
    with pytest.raises(ValueError, match="expected one of swing, plain"):
        melody_time_map(melody, "straight")


class Recorder:
    """Stands in for a ``CachedDecoder``: records what each window is given and answers
    one bass note per simple beat (model steps), then time shifts to the window's end."""

    def __init__(self):
        self.calls = []

    def decode(self, melody, primers, limits, max_length=None, harmony_tables=None, bar_tables=None,
               repeat=1):
        self.calls.append({"melody": np.array(melody), "limits": list(limits), "bars": np.array(bar_tables)})
        answers = []
        for primer, limit in zip(primers, limits):
            tokens, at = [], TOKENIZER.duration_steps(primer)
            while at + 8 <= limit:
                tokens += [TOKENIZER.note_on_offset + 40, *TOKENIZER.shift_tokens(8),
                           TOKENIZER.note_off_offset + 40]
                at += 8
            answers.append(tokens + TOKENIZER.shift_tokens(limit - at))
        return answers


def test_accompany_melodies_swings_a_6_8_melody_through_the_model(tmp_path):
    melody = data.load_melody(melody_file(tmp_path / "jig.mid", [(0, 6, 8)], bars=4))
    assert list(melody.grid.bar_starts) == [0, 24, 48, 72]
    stand_in = types.SimpleNamespace(config=ModelConfig(kind="fnet", **TINY_LONG))
    recorder = Recorder()
    (notes,) = accompany_melodies(
        stand_in, [melody], window=WindowConfig(8, 2), decoder=recorder, release=False,
        chords=[[Span(0, 96, "C:maj")]],
        candidates=1,
    )
    (call,) = recorder.calls
    assert call["limits"] == [64]  # four 2/4 bars
    np.testing.assert_array_equal(call["bars"][0, :5], [0, 16, 32, 48, NO_BAR])
    # the melody the model reads: eighths at 0, 2, 4 of each simple beat
    onsets = TOKENIZER.decode([int(t) for t in call["melody"][0] if t])
    assert [n.start for n in onsets[:6]] == [0, 2, 4, 8, 10, 12]
    # one bass note per model beat comes back on each dotted-quarter beat, held a beat
    assert [(n.start, n.end) for n in notes] == [(k * 12, k * 12 + 12) for k in range(8)]


def test_a_simple_meter_melody_is_accompanied_exactly_as_before(tmp_path):
    melody = data.load_melody(melody_file(tmp_path / "waltz.mid", [(0, 3, 4)], numerator=3, denominator=4))
    stand_in = types.SimpleNamespace(config=ModelConfig(kind="fnet", **TINY_LONG))
    first, second = Recorder(), Recorder()
    (swung,) = accompany_melodies(
        stand_in, [melody], window=WindowConfig(8, 2), decoder=first, candidates=1
    )
    (plain,) = accompany(
        stand_in, [(melody.notes, melody.grid.bar_starts, melody.end_step)],
        window=WindowConfig(8, 2), decoder=second,
        candidates=1,
    )
    assert swung == plain
    np.testing.assert_array_equal(first.calls[0]["melody"], second.calls[0]["melody"])
    np.testing.assert_array_equal(first.calls[0]["bars"], second.calls[0]["bars"])


def test_the_cli_rejects_an_unknown_compound_mode(tmp_path, capsys):
    path = melody_file(tmp_path / "jig.mid", [(0, 6, 8)])
    with pytest.raises(SystemExit):
        cli.main(["accompany", str(path), "--out", str(tmp_path / "out.mid"), "--compound", "straight"])
    assert "invalid choice: 'straight'" in capsys.readouterr().err


def test_random_bar_layouts_map_monotonically_and_keep_their_bar_lines():
    rng = np.random.default_rng(0)
    for _ in range(200):
        units = [int(u) for u in rng.choice([0, 0, 2, 4, 8], size=int(rng.integers(1, 7)))]
        lengths = [int(rng.integers(1, 5)) * 3 * u if u else int(rng.integers(1, 6)) * 8 for u in units]
        lengths[0] = int(rng.integers(2, lengths[0] + 1))  # any pickup
        cut = int(rng.integers(len(lengths)))  # a bar cut short by a meter change
        lengths[cut] = int(rng.integers(2, lengths[cut] + 1))
        bars = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        end = int(bars[-1] + lengths[-1])
        time_map = TimeMap.for_bars(bars, end, units)
        steps = np.arange(end + 1)
        model = time_map.to_model(steps)
        assert np.all(np.diff(model) >= 0) and model[0] == 0
        lines = time_map.to_model(bars)
        assert np.all(np.diff(lines) > 0)
        assert np.all(np.diff(time_map.to_melody(np.arange(model[-1] + 1))) >= 0)
        # bar lines after the first bar land on whole model steps and come back exactly
        np.testing.assert_array_equal(time_map.to_melody(lines[1:]), bars[1:])
