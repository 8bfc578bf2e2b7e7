"""Dataset statistics, checked on hand-made grids and a small synthetic POP909-style song."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest

from pianoacc_utils.course import exploration as ex
from pianoacc_utils.data import BeatGrid, Note, Span
from pianoacc_utils.defaults import PITCH_NAMES
from pianoacc_utils.prepare import SPLITS
from pianoacc_utils.tokenizer import EventTokenizer

FIRST_BEAT = 0.1  # seconds; a 16th at 120 bpm is 0.125 s, so a grid from 0 misses by 25 ms
BEAT = 0.5  # 120 bpm
DOWNBEATS = [0, 4, 8, 10, 14, 18]  # bars of 4, 4, 2, 4, 4 beats, then a last bar of 4
NUM_BEATS = 22


def _write_song(folder: Path) -> None:
    """A 22-beat POP909-style song: MIDI at 120 bpm from time 0, beats annotated from 0.1 s."""
    folder.mkdir(parents=True)
    beats = [FIRST_BEAT + BEAT * k for k in range(NUM_BEATS)]
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    tracks = {name: pretty_midi.Instrument(0, name=name) for name in ("MELODY", "BRIDGE", "PIANO")}
    for k, t in enumerate(beats):
        tracks["MELODY"].notes.append(pretty_midi.Note(80, 72 + k % 3, t, t + BEAT))
        if k in DOWNBEATS:
            tracks["PIANO"].notes.append(pretty_midi.Note(64, 48, t, t + 2 * BEAT))
            tracks["PIANO"].notes.append(pretty_midi.Note(64, 55, t + BEAT / 4, t + BEAT))
    tracks["BRIDGE"].notes.append(pretty_midi.Note(50, 60, beats[0], beats[1]))
    midi.instruments += tracks.values()
    midi.write(str(folder / f"{folder.name}.mid"))
    (folder / "beat_midi.txt").write_text(
        "".join(f"{t} {k % 2 == 0:d} {k in DOWNBEATS:d}\n" for k, t in enumerate(beats))
    )
    bounds = [beats[d] for d in DOWNBEATS] + [beats[-1] + BEAT]
    labels = ["N", "C:maj", "A:min7", "A:min7", "F:maj/3", "G:7"]
    (folder / "chord_midi.txt").write_text(
        "".join(f"{s}\t{e}\t{label}\n" for s, e, label in zip(bounds, bounds[1:], labels))
    )
    (folder / "key_audio.txt").write_text(f"{beats[0]}\t{bounds[-1]}\tC:maj\n")


@pytest.fixture(scope="module")
def pop909(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pop909")
    _write_song(root / "001")
    return root


def _grid() -> BeatGrid:
    beats = np.array([FIRST_BEAT + BEAT * k for k in range(NUM_BEATS)])
    return BeatGrid(beats, np.array(DOWNBEATS))


# --------------------------------------------------------------------------- tempo, meter, grids


def test_tempo_and_meter_of_a_grid():
    grid = _grid()
    assert np.allclose(ex.local_tempo(grid), 120.0)
    assert ex.tempo_drift(grid) == pytest.approx(0.0)
    assert list(ex.beats_per_bar(grid)) == [4, 4, 2, 4, 4]
    slowing = BeatGrid(np.cumsum(np.linspace(0.5, 0.6, 41)), np.arange(0, 40, 4))
    assert 10 < ex.tempo_drift(slowing) < 20  # 120 -> 100 bpm, percentiles 5..95


def test_annotated_grid_follows_the_beats():
    grid = _grid()
    points = ex.annotated_grid_seconds(grid)
    assert np.allclose(np.diff(points), BEAT / 4)
    assert np.isclose(points, FIRST_BEAT).any()
    assert points[0] < FIRST_BEAT and points[-1] > FIRST_BEAT + BEAT * NUM_BEATS


def test_midi_grid_follows_tempo_changes(tmp_path):
    # 120 bpm for two beats (1 s), then 60 bpm: 16ths every 0.125 s, then every 0.25 s.
    track = mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=500000, time=0),
        mido.MetaMessage("set_tempo", tempo=1000000, time=960),
        mido.Message("note_on", note=60, velocity=80, time=0),
        mido.Message("note_off", note=60, velocity=0, time=960),
    ])
    path = tmp_path / "tempo.mid"
    mido.MidiFile(ticks_per_beat=480, tracks=[track]).save(path)
    points = ex.midi_grid_seconds(pretty_midi.PrettyMIDI(str(path)))
    assert np.allclose(points[:9], np.arange(9) * 0.125)
    assert np.allclose(np.diff(points[8:]), 0.25)
    assert points[-1] >= 2.0


def test_distance_to_grid():
    grid = np.array([0.0, 1.0, 2.0])
    times = np.array([-0.5, 0.2, 0.9, 1.5, 3.0])
    assert np.allclose(ex.distance_to_grid(times, grid), [0.5, 0.2, 0.1, 0.5, 1.0])


# --------------------------------------------------------------------------- bars, chords, counts


def test_positions_in_bars_skip_irregular_and_last_bars():
    bar_starts = [0, 32, 48, 80]  # bars of 32 and 16 steps, the last one open
    positions = ex.positions_in_bars([0, 8, 31, 32, 40, 48, 56, 100], bar_starts)
    assert list(positions) == [0, 8, 31, 0, 8]


def test_onset_alignment_compares_bar_lines_with_the_beat_after():
    notes = [Note(s, s + 4, 60, 80) for s in (0, 12, 32, 64, 65, 72)]
    result = ex.onset_alignment(notes, [0, 32, 64, 96])
    assert result["on_beat_share"] == pytest.approx(4 / 6)
    assert result["near_bar_line_share"] == pytest.approx(4 / 6)  # 0, 32, 64 and 65 (one step off)
    assert result["bars_struck_share"] == pytest.approx(1.0)
    assert result["bars_struck_shifted_share"] == pytest.approx(1 / 3)  # only 72 = 64 + a beat


@pytest.mark.parametrize(
    "label, quality",
    [
        ("A:min7", "min7"),
        ("C:maj/3", "maj"),
        ("N", "N"),
        ("G:7", "7"),
        ("D:sus4(b7)", "sus4"),
        ("E:", "maj"),
    ],
)
def test_chord_quality(label, quality):
    assert ex.chord_quality(label) == quality


def test_span_beats_shares_and_sums():
    spans = [Span(0, 32, "maj"), Span(32, 48, "min"), Span(48, 64, "maj")]
    assert ex.span_beats(spans) == {"maj": 6.0, "min": 2.0}
    assert ex.shares({"a": 6, "b": 3, "c": 1}, top=2) == {"a": 0.6, "b": 0.3, "other": 0.1}
    assert ex.sum_counts([{4: 10, 2: 1}, {4: 5}]) == {4: 15, 2: 1}


def test_key_counts_in_chromatic_order():
    counts = ex.key_counts(["Gb:maj", "F#:maj", "A:min", "C:maj", "none", "C:dorian"])
    assert list(counts["major"]) == list(PITCH_NAMES)
    assert counts["major"]["Gb"] == 2 and counts["major"]["C"] == 1
    assert counts["minor"]["A"] == 1
    assert sum(counts["major"].values()) + sum(counts["minor"].values()) == 4


def test_fits_counts_the_extra_token():
    lengths = np.array([500, 1023, 1024, 2000])
    assert ex.fits(lengths, 1024) == pytest.approx(0.75)
    assert ex.fits(lengths, 1024, extra=1) == pytest.approx(0.5)


# --------------------------------------------------------------------------- one synthetic song


def test_song_statistics_of_a_synthetic_song(pop909):
    row = ex.song_statistics(pop909 / "001")
    assert row["bars"] == 6 and row["beats"] == NUM_BEATS
    assert row["tempo_bpm"] == pytest.approx(120.0)
    assert row["tempo_drift_percent"] == pytest.approx(0.0, abs=1e-6)
    assert row["midi_tempo_events"] == 1
    assert row["beats_per_bar"] == {4: 4, 2: 1}
    assert (row["four_beat_bars"], row["irregular_bars"]) == (4, 1)
    assert row["tracks"] == "MELODY,BRIDGE,PIANO"
    assert (row["melody_notes"], row["accompaniment_notes"]) == (NUM_BEATS, 2 * len(DOWNBEATS))
    assert (row["melody_lowest"], row["melody_highest"]) == (72, 74)
    assert (row["accompaniment_lowest"], row["accompaniment_highest"]) == (48, 55)
    assert row["melody_pitch_counts"].sum() == NUM_BEATS
    assert row["chord_beats"] == {"N": 4.0, "maj": 8.0, "min7": 6.0, "7": 4.0}
    assert row["key"] == "C:maj"
    # Every onset sits on the annotated 16th grid; the sequencer grid from time 0 misses by 25 ms
    # until it is moved to the first annotated beat.
    checked = NUM_BEATS + 2 * len(DOWNBEATS)
    assert row["onsets_checked"] == checked
    assert row["onsets_on_annotated_grid"] == checked
    assert row["onsets_on_midi_grid"] == 0
    assert row["onsets_on_shifted_midi_grid"] == checked
    assert row["accompaniment_bars_struck_share"] == pytest.approx(1.0)
    assert row["accompaniment_bars_struck_shifted_share"] == pytest.approx(0.0)
    profile = row["accompaniment_bar_profile"]
    assert len(profile) == 32 and profile[0] == 4 and profile[2] == 4 and profile.sum() == 8
    # Chord changes N -> C -> Am7 -> F -> G7 (the repeated Am7 is no change) fall on bar lines; only
    # those opening complete 4-beat bars count: C and F (Am7 opens the 2-beat bar, G7 the last bar).
    assert row["chord_change_bar_profile"][0] == 2 and row["chord_change_bar_profile"].sum() == 2


def test_collect_song_statistics_is_a_table_by_song(pop909):
    table = ex.collect_song_statistics(["001"], root=pop909, workers=1)
    assert list(table.index) == ["001"]
    assert table.loc["001", "bars"] == 6


# --------------------------------------------------------------------------- tokens


def test_round_trip_exact_bins_velocities():
    tokenizer = EventTokenizer()
    notes = [Note(0, 8, 60, 101), Note(0, 4, 64, 37), Note(8, 40, 67, 127)]
    assert ex.round_trip_exact(notes, tokenizer)
    assert [n.velocity for n in ex.binned_velocities(notes)] == [102, 38, 126]
    overlapping = [Note(0, 8, 60, 80), Note(4, 12, 60, 80)]  # not normalized: cannot come back
    assert not ex.round_trip_exact(overlapping, tokenizer)


def test_check_tokenization_on_a_synthetic_song(pop909):
    report = ex.check_tokenization(["001"], root=pop909, bars=2, workers=1)
    assert report.songs == 1
    assert report.segments == 3  # 6 bars in windows of 2
    assert report.exact_segments == 3 and report.exact_share == 1.0 and not report.failures
    assert report.notes == NUM_BEATS + 2 * len(DOWNBEATS)
    assert report.velocity_counts[80] == NUM_BEATS
    assert report.velocity_counts[64] == 2 * len(DOWNBEATS)
    assert report.onset_step_counts[0] == NUM_BEATS + len(DOWNBEATS)
    assert report.onset_step_counts[2] == len(DOWNBEATS)  # the 16th after each downbeat


def _write_prepared(folder: Path, melody: list[int], accompaniment: list[int]) -> None:
    """A folder in :mod:`pianoacc_utils.prepare`'s layout, with sequences of the given lengths."""
    folder.mkdir(parents=True)
    for split in SPLITS:
        count = len(melody)
        np.savez(
            folder / f"{split}.npz",
            melody_tokens=np.ones(sum(melody), dtype=np.int16),
            melody_offsets=np.concatenate([[0], np.cumsum(melody)]),
            accompaniment_tokens=np.ones(sum(accompaniment), dtype=np.int16),
            accompaniment_offsets=np.concatenate([[0], np.cumsum(accompaniment)]),
            song_id=np.array(["001"] * count),
            first_bar=np.zeros(count, dtype=np.int32),
            num_steps=np.zeros(count, dtype=np.int32),
            transpose=np.zeros(count, dtype=np.int8),
            harmony=np.zeros((count, 24), dtype=np.uint8),
            harmony_offsets=np.arange(count + 1),
            bars=np.zeros(count, dtype=np.int32),
            bars_offsets=np.arange(count + 1),
        )


def test_token_length_table(tmp_path):
    _write_prepared(tmp_path / "8", [100, 200], [511, 512])
    _write_prepared(tmp_path / "32", [400, 900], [1023, 1800])
    table = ex.token_length_table({32: tmp_path / "32", 8: tmp_path / "8"})
    assert list(table.index) == [8, 32]
    assert table.loc[8, "segments"] == 6
    # 511 + END fits 512 tokens, 512 + END does not.
    assert table.loc[8, "accompaniment_fits_512"] == pytest.approx(0.5)
    assert table.loc[8, "accompaniment_max"] == 512
    assert table.loc[32, "melody_fits_1024"] == pytest.approx(1.0)
    assert table.loc[32, "accompaniment_fits_1024"] == pytest.approx(0.5)
    assert table.loc[32, "melody_median"] == pytest.approx(650)
