"""Re-barring POP909 into 3/4 and 2/4: ``data.rebar``, the training mix, ``evaluate --meter``."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pianoacc_utils import cli, data, evaluation
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data import Note, Segment, Span
from pianoacc_utils.defaults import REBAR_METERS, STEPS_PER_BEAT
from pianoacc_utils.prepare import PrepareConfig, segment_meter

BEAT = STEPS_PER_BEAT
BAR = 4 * BEAT


def two_bars() -> Segment:
    """Two 4/4 bars; the last beat of each is steps 24-32 and 56-64."""
    melody = [
        Note(0, 8, 60, 80),  # beat 1: kept
        Note(20, 28, 62, 81),  # sounds into the cut beat: ends at the cut
        Note(24, 40, 64, 82),  # starts in the cut beat: dropped
        Note(16, 40, 65, 83),  # held across the cut: keeps sounding after it
        Note(40, 64, 67, 84),  # second bar, beat 2 to the end
    ]
    accompaniment = [Note(0, 32, 48, 70), Note(58, 60, 50, 71)]
    chords = [Span(0, 24, "C:maj"), Span(24, 32, "G:maj"), Span(32, 64, "F:maj")]
    return Segment("001", 0, 64, melody, accompaniment, chords, [0, 32], key="C:maj")


def test_three_four_cuts_the_last_beat_of_each_bar():
    seg = data.rebar(two_bars(), "3/4")
    assert seg.bar_starts == [0, 24] and seg.num_steps == 48
    assert seg.melody == [
        Note(0, 8, 60, 80),
        Note(20, 24, 62, 81),
        Note(16, 32, 65, 83),
        Note(32, 48, 67, 84),
    ]
    assert seg.accompaniment == [Note(0, 24, 48, 70)]
    assert seg.chords == [Span(0, 24, "C:maj"), Span(24, 48, "F:maj")]
    assert (seg.song_id, seg.key, seg.first_bar) == ("001", "C:maj", 0)


def test_two_four_only_adds_bar_lines():
    original = two_bars()
    seg = data.rebar(original, "2/4")
    assert seg.bar_starts == [0, 16, 32, 48]
    assert (seg.melody, seg.accompaniment, seg.chords, seg.num_steps) == (
        original.melody, original.accompaniment, original.chords, original.num_steps,
    )
    assert data.rebar(original, "4/4") is original


def test_bars_of_other_lengths_are_left_alone():
    # a two-beat bar, a 4/4 bar, a six-beat bar
    notes = [Note(0, 8, 60, 80), Note(16, 24, 62, 80), Note(42, 56, 64, 80), Note(72, 80, 65, 80)]
    seg = Segment("x", 0, 96, notes, list(notes), [], [0, 16, 48])
    three = data.rebar(seg, "3/4")
    assert three.bar_starts == [0, 16, 40] and three.num_steps == 88
    assert [n.start for n in three.melody] == [0, 16, 64]  # 42 lay in the cut beat
    assert data.rebar(seg, "2/4").bar_starts == [0, 16, 32, 48]


def test_unknown_meter():
    with pytest.raises(PianoaccError, match=r"meter '5/4': expected one of 4/4, 3/4, 2/4"):
        data.rebar(two_bars(), "5/4")


@st.composite
def segments(draw) -> Segment:
    """Bars of 2-6 beats (mostly four), notes anywhere inside the segment."""
    beats = draw(st.lists(st.sampled_from([4, 4, 4, 2, 3, 6]), min_size=1, max_size=8))
    starts = np.concatenate([[0], np.cumsum(beats)[:-1]]) * BEAT
    total = int(sum(beats) * BEAT)
    spans = st.tuples(st.integers(0, total - 1), st.integers(1, 3 * BAR))
    notes = [
        Note(a, min(a + d, total), 60 + i % 12, 80)
        for i, (a, d) in enumerate(draw(st.lists(spans, max_size=30)))
    ]
    chords = [Span(a, min(a + d, total), "C:maj") for a, d in draw(st.lists(spans, max_size=5))]
    return Segment("x", 0, total, notes, notes, chords, starts.tolist())


@given(segments())
def test_three_four_properties(seg):
    bounds = np.diff(seg.bar_starts + [seg.num_steps])
    three = data.rebar(seg, "3/4")
    assert np.array_equal(
        np.diff(three.bar_starts + [three.num_steps]), np.where(bounds == BAR, 3 * BEAT, bounds)
    )
    for notes in (three.melody, three.accompaniment):
        assert all(0 <= n.start < n.end <= three.num_steps for n in notes)
    # every note not starting in a cut beat survives, no other appears
    cut = [b - BEAT for b, length in zip(seg.bar_starts[1:] + [seg.num_steps], bounds)
           if length == BAR]
    survivors = [n for n in seg.melody if not any(c <= n.start < c + BEAT for c in cut)]
    assert len(three.melody) == len(survivors)
    # onsets keep their place in the beat
    assert [n.start % BEAT for n in three.melody] == [n.start % BEAT for n in survivors]
    assert all(s.end > s.start for s in three.chords)


def test_segment_meter_is_fixed_and_follows_the_shares():
    config = PrepareConfig(rebar_3_4=0.25, rebar_2_4=0.15)
    drawn = [segment_meter(config, f"{song:03d}", bar) for song in range(1, 301) for bar in (0, 8)]
    assert drawn == [segment_meter(config, f"{s:03d}", b) for s in range(1, 301) for b in (0, 8)]
    shares = {m: drawn.count(m) / len(drawn) for m in REBAR_METERS}
    assert abs(shares["3/4"] - 0.25) < 0.05 and abs(shares["2/4"] - 0.15) < 0.05
    assert {segment_meter(PrepareConfig(), "001", b) for b in range(50)} == {"4/4"}
    assert {segment_meter(PrepareConfig(rebar_3_4=1.0), "001", b) for b in range(50)} == {"3/4"}


@pytest.mark.parametrize("shares", [(-0.1, 0.0), (0.6, 0.5)])
def test_rebar_shares_must_make_sense(shares):
    with pytest.raises(PianoaccError, match="rebar shares"):
        PrepareConfig(rebar_3_4=shares[0], rebar_2_4=shares[1])


def test_real_segment_rebarred(songs):
    seg = data.segment(songs["001"], bars=8)[1]
    three = data.rebar(seg, "3/4")
    assert set(np.diff(three.bar_starts + [three.num_steps]).tolist()) == {3 * BEAT}
    onsets = {n.start % BEAT for n in seg.accompaniment}
    assert {n.start % BEAT for n in three.accompaniment} <= onsets
    kept = [n for n in seg.accompaniment if n.start % BAR < 3 * BEAT]  # all its bars are 4/4
    assert len(three.accompaniment) == len(kept) < len(seg.accompaniment)


def test_evaluate_meter_option(evaluate_config, capsys):
    assert evaluate_config(["--meter", "3/4"]).meter == "3/4"
    assert evaluate_config([]).meter == "4/4"
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--meter", "7/8"])
    assert "invalid choice: '7/8'" in capsys.readouterr().err


def test_split_segments_are_rebarred(test_environment, monkeypatch):
    # Both calls read the same 91 songs: parse each once.
    monkeypatch.setattr(data, "load_song", functools.lru_cache(maxsize=None)(data.load_song))
    config = evaluation.EvaluationConfig(split="validation", bars_per_segment=8, segments=6)
    plain, tempos = evaluation.split_segments(config)
    three, same_tempos = evaluation.split_segments(
        evaluation.EvaluationConfig(**{**config.__dict__, "meter": "3/4"})
    )
    assert tempos == same_tempos and len(plain) == len(three) == 6
    for before, after in zip(plain, three):
        assert after == data.rebar(before, "3/4")
