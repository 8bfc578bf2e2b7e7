"""The copy check: windows of bars looked up in training accompaniments, transposition-invariant."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pianoacc_utils import evaluation as ev
from pianoacc_utils.data import Note, Segment
from pianoacc_utils.evaluation import copying

BAR = 32
"""Steps in a 4/4 bar (8 steps per beat)."""


def training_song(bars: int = 10) -> list[Note]:
    """A different pattern in every bar: a bass, then notes whose positions and pitches move."""
    notes = []
    for bar in range(bars):
        start = bar * BAR
        notes.append(Note(start, start + 16, 36 + bar, 80))
        for i in range(1 + bar % 4):
            position = start + 4 + 6 * i + bar % 3
            notes.append(Note(position, position + 4, 60 + (bar * 5 + i * 3) % 12, 70))
    return notes


def excerpt(notes: list[Note], first_bar: int, bars: int, semitones: int = 0) -> list[Note]:
    """Bars ``first_bar`` .. ``first_bar + bars - 1`` moved to step 0 and transposed."""
    start, end = first_bar * BAR, (first_bar + bars) * BAR
    return [
        Note(n.start - start, n.end - start, n.pitch + semitones, n.velocity + 5)
        for n in notes
        if start <= n.start < end
    ]


def segment_of(notes: list[Note], bars: int) -> Segment:
    return Segment(
        song_id="query",
        first_bar=0,
        num_steps=bars * BAR,
        melody=[],
        accompaniment=notes,
        chords=[],
        bar_starts=[b * BAR for b in range(bars)],
    )


@pytest.fixture(scope="module")
def index() -> ev.CopyIndex:
    songs = [("train", training_song()), ("other", training_song(6)[::2])]
    bounds = [b * BAR for b in range(11)]
    return copying.index_windows(
        [(song_id, copying.accompaniment_windows(notes, bounds)) for song_id, notes in songs]
    )


def test_fingerprints_ignore_time_key_and_velocity():
    notes = training_song()
    window = copying.window_fingerprint(notes, 2 * BAR, 4 * BAR)
    moved = excerpt(notes, 2, 2, semitones=3)
    assert copying.window_fingerprint(moved, 0, 2 * BAR) == (window[0], window[1] + 3)
    changed = [n._replace(pitch=n.pitch + 1) if i == 2 else n for i, n in enumerate(moved)]
    assert copying.window_fingerprint(changed, 0, 2 * BAR)[0] != window[0]
    assert copying.window_fingerprint(notes, 20 * BAR, 22 * BAR) is None


def test_a_copied_window_transposed_up_three_is_found(index):
    copied = segment_of(excerpt(training_song(), 3, 4, semitones=3), bars=4)
    values = ev.copy_metrics(index, copied, copied.accompaniment)
    assert values == {
        "copied_2_bar_share": 1.0,
        "copied_4_bar_share": 1.0,
        "longest_copied_bars": 4.0,
    }
    assert list(values) == list(ev.COPY_METRICS)


def test_a_changed_window_is_not_found(index):
    notes = excerpt(training_song(), 3, 4, semitones=3)
    in_bar_3 = next(i for i, n in enumerate(notes) if n.start >= 3 * BAR + 4)
    notes[in_bar_3] = notes[in_bar_3]._replace(start=notes[in_bar_3].start + 1)  # a 32nd later
    values = ev.copy_metrics(index, segment_of(notes, 4), notes)
    assert values["copied_4_bar_share"] == 0.0
    assert values["copied_2_bar_share"] == pytest.approx(2 / 3)  # bars 0-1 and 1-2 still match
    assert values["longest_copied_bars"] == 3.0


def test_runs_need_one_song_and_one_transposition(index):
    song = training_song()
    # bars 1-2 of the song up 2 semitones, then bars 3-4 up 5: each half is found, the
    # four bars are not one passage
    later = excerpt(song, 3, 2, semitones=5)
    notes = excerpt(song, 1, 2, semitones=2) + [
        n._replace(start=n.start + 2 * BAR, end=n.end + 2 * BAR) for n in later
    ]
    values = ev.copy_metrics(index, segment_of(notes, 4), notes)
    assert values["copied_4_bar_share"] == 0.0
    assert values["longest_copied_bars"] == 2.0


def test_empty_and_short_accompaniments(index):
    assert math.isnan(ev.copy_metrics(index, segment_of([], 4), [])["copied_2_bar_share"])
    assert ev.copy_metrics(index, segment_of([], 4), [])["longest_copied_bars"] == 0.0
    one_bar = excerpt(training_song(), 0, 1)
    values = ev.copy_metrics(index, segment_of(one_bar, 1), one_bar)
    assert math.isnan(values["copied_4_bar_share"]) and values["longest_copied_bars"] == 0.0


def test_the_index_is_built_once_then_read_from_the_cache(index, monkeypatch):
    built = []

    def build(config, workers=None):
        built.append(config)
        return index

    monkeypatch.setattr(copying, "build_copy_index", build)
    first = copying.load_copy_index()
    again = copying.load_copy_index()
    assert len(built) == 1 and copying.copy_index_path().is_file()
    assert again.songs == index.songs
    for k in ev.COPY_WINDOW_BARS:
        assert np.array_equal(again.fingerprints[k], index.fingerprints[k])
        assert np.array_equal(again.sources[k], first.sources[k])
    other = copying.CopyIndexConfig(window_bars=(2,))
    assert copying.copy_index_path(other) != copying.copy_index_path()
