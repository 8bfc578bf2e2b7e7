"""Any melody MIDI in (meters, pickups, tempo maps, track layouts), arrangement MIDI out."""

from __future__ import annotations

import io
import os
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest
from melodies import (
    RESOLUTION,
    TICKS_PER_STEP,
    Track,
    bar_ticks,
    broken_melody_files,
    multitrack_song,
    pickup_melody,
    simple_melody,
    tempo_change_melody,
    tune,
    write_midi,
)

from pianoacc_utils import common
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data import (
    ARRANGEMENT_TRACK_NAME,
    BeatGrid,
    Note,
    load_melody,
    melody_song,
    segment,
    write_arrangement,
)
from pianoacc_utils.data.melody_midi import _exact_tempos


def tick_steps(ticks: list[int]) -> list[int]:
    """Grid steps of tick positions that lie exactly on the grid."""
    assert all(t % TICKS_PER_STEP == 0 for t in ticks)
    return [t // TICKS_PER_STEP for t in ticks]


def midi_notes(path: Path, index: int = 0) -> np.ndarray:
    """``(start, end, pitch, velocity)`` rows in seconds of one instrument of a file."""
    instrument = pretty_midi.PrettyMIDI(str(path)).instruments[index]
    return np.array([[n.start, n.end, n.pitch, n.velocity] for n in instrument.notes])


# --------------------------------------------------------------------------- meters and grid


@pytest.mark.parametrize(
    ("numerator", "denominator", "bar_steps"),
    [
        (2, 4, 16),
        (3, 4, 24),
        (4, 4, 32),
        (6, 8, 24),
        (9, 8, 36),
        (2, 2, 32),
        (7, 8, 28),
        (7, 16, 14),
    ],
)
def test_bar_length_in_steps_follows_the_meter(tmp_path, numerator, denominator, bar_steps):
    bars = 5
    path = simple_melody(tmp_path / "tune.mid", bars, numerator=numerator, denominator=denominator)
    melody = load_melody(path)
    starts = melody.grid.bar_starts
    assert len(starts) == bars == melody.num_bars
    assert starts[0] == 0
    assert set(np.diff(starts)) == {bar_steps}
    unit = RESOLUTION * 4 // denominator
    onsets = [i * unit for i in range(bars * numerator)]
    assert [n.start for n in melody.notes] == tick_steps(onsets)
    assert melody.end_step == melody.notes[-1].end
    assert bar_ticks(numerator, denominator) == bar_steps * TICKS_PER_STEP


def test_bars_shorter_than_a_beat_fall_in_distinct_beats(tmp_path):
    melody = load_melody(simple_melody(tmp_path / "short.mid", 4, numerator=3, denominator=16))
    starts = melody.grid.bar_starts
    assert len(set(starts // 8)) == len(starts) == len(melody.grid.downbeats)
    assert np.array_equal(starts // 8, melody.grid.downbeats)


def test_notes_land_on_exact_steps_across_tempo_changes(tmp_path):
    path = tempo_change_melody(tmp_path / "tempi.mid")
    melody = load_melody(path)
    ticks = [start for start, _, _, _ in tune(64, RESOLUTION // 2)]
    assert [n.start for n in melody.notes] == tick_steps(ticks)
    seconds = midi_notes(path)[:, 0]
    assert np.allclose(melody.grid.to_seconds([n.start for n in melody.notes]), seconds, atol=1e-9)
    beat_lengths = np.diff(melody.grid.beat_times[:32])
    tempos = sorted({60 / 90, 60 / 140, 60 / 61.5, 60 / 200})
    assert np.allclose(sorted(set(np.round(beat_lengths, 9))), tempos)


def test_pickup_bar_from_a_short_first_time_signature(tmp_path):
    melody = load_melody(pickup_melody(tmp_path / "pickup.mid", numerator=4))
    assert list(melody.grid.bar_starts) == [0, 8, 40, 72, 104]
    assert melody.notes[0].start == 0 and melody.notes[1].start == 8
    waltz = load_melody(pickup_melody(tmp_path / "waltz.mid", numerator=3))
    assert list(waltz.grid.bar_starts) == [0, 8, 32, 56, 80]


def test_conductor_track_carries_tempo_and_meter(tmp_path):
    tracks = [
        Track(tune(24, RESOLUTION), "MELODY"),
        Track(tune(8, 3 * RESOLUTION, pitches=(40,)), "Bass", channel=1),
    ]
    meters = [(0, 3, 4)]
    with_conductor = write_midi(tmp_path / "c.mid", tracks, tempos=[(0, 80.0)], meters=meters)
    inline = write_midi(
        tmp_path / "i.mid", tracks, tempos=[(0, 80.0)], meters=meters, conductor=False
    )
    assert len(mido.MidiFile(with_conductor).tracks) == 3
    assert all(m.is_meta for m in mido.MidiFile(with_conductor).tracks[0])
    for path in (with_conductor, inline):
        melody = load_melody(path)
        assert melody.track_name == "MELODY"
        assert set(np.diff(melody.grid.bar_starts)) == {24}
        assert np.isclose(melody.grid.beat_times[1], 60 / 80)


def test_type_0_file_splits_by_channel(tmp_path):
    bass = Track(tune(8, 2 * RESOLUTION, pitches=(36, 43)), None, channel=1, program=33)
    lead = Track(tune(16, RESOLUTION, pitches=(72, 76, 79)), None, channel=0)
    path = write_midi(tmp_path / "zero.mid", [bass, lead], meters=[(0, 2, 4)], single_track=True)
    assert mido.MidiFile(path).type == 0
    melody = load_melody(path)
    assert [n.pitch for n in melody.notes[:3]] == [72, 76, 79]
    assert set(np.diff(melody.grid.bar_starts)) == {16}


def test_overlapping_notes_of_one_pitch_are_cut(tmp_path):
    notes = [(0, 960, 60, 80), (480, 1440, 60, 90), (1920, 2400, 64, 70), (1920, 2160, 64, 100)]
    melody = load_melody(write_midi(tmp_path / "overlap.mid", [Track(notes, "MELODY")]))
    # pretty_midi ends all open notes of a pitch at its next note-off (the C4s at tick 960 =
    # step 16, the E4s at 2160 = step 36); the first C4 is then cut where the second strikes
    # and the two E4s struck together become one note.
    assert melody.notes == [Note(0, 8, 60, 80), Note(8, 16, 60, 90), Note(32, 36, 64, 70)]
    for pitch in (60, 64):
        same = [n for n in melody.notes if n.pitch == pitch]
        assert all(a.end <= b.start for a, b in zip(same, same[1:]))


# --------------------------------------------------------------------------- choosing the track


def test_track_named_melody_wins_in_a_multitrack_file(tmp_path):
    melody = load_melody(multitrack_song(tmp_path / "band.mid", melody_name="melody"))
    assert melody.track_index == 1 and melody.track_name == "melody"
    assert "named MELODY" in melody.description


def test_unnamed_tracks_pick_the_highest_mean_pitch(tmp_path):
    melody = load_melody(multitrack_song(tmp_path / "band.mid", melody_name=None))
    assert melody.track_index == 1 and melody.track_name == ""
    assert all(n.pitch >= 60 for n in melody.notes)
    assert "highest mean pitch" in melody.description


def test_drums_are_never_the_melody(tmp_path):
    drums = Track(tune(16, RESOLUTION, pitches=(81,)), "Hi", channel=9)
    lead = Track(tune(8, RESOLUTION, pitches=(55, 57)), None)
    melody = load_melody(write_midi(tmp_path / "drums.mid", [drums, lead]))
    assert melody.track_index == 1 and "only melodic track" in melody.description


def test_track_can_be_requested_by_name_or_index(tmp_path):
    path = multitrack_song(tmp_path / "band.mid")
    assert load_melody(path, track="BASS").track_name == "Bass"
    assert load_melody(path, track=0).track_name == "Bass"
    assert load_melody(path, track="0").track_index == 0


# --------------------------------------------------------------------------- melody -> segments


@pytest.mark.parametrize("maker", ["pickup", "long", "rests"])
def test_segments_keep_every_melody_note(tmp_path, maker):
    if maker == "pickup":
        path = pickup_melody(tmp_path / "p.mid", numerator=3)
    elif maker == "long":
        path = simple_melody(tmp_path / "long.mid", bars=123)
    else:  # three beats of rest, a pickup note on beat 4, then the tune
        notes = tune(13, RESOLUTION, start=3 * RESOLUTION)
        path = write_midi(tmp_path / "r.mid", [Track(notes, "MELODY")])
    melody = load_melody(path)
    song = melody_song(melody)
    assert song.accompaniment == [] and song.chords == [] and song.key is None
    bar_starts = [int(b) for b in melody.grid.bar_starts]
    for bars in (8, 32):
        pieces = segment(song, bars=bars, min_bars=1)
        kept = [
            (n.start + bar_starts[piece.first_bar], n.pitch)
            for piece in pieces
            for n in piece.melody
        ]
        assert kept == [(n.start, n.pitch) for n in melody.notes]
        assert all(piece.bar_starts[0] == 0 for piece in pieces)
        assert sum(piece.num_bars for piece in pieces) == melody.num_bars
    if maker == "long":
        assert melody.num_bars == 123 and len(segment(song, bars=32, min_bars=1)) == 4


# --------------------------------------------------------------------------- arrangement out


@pytest.fixture
def tempo_map_melody(tmp_path) -> Path:
    """40 bars in 3/4, 4/4 and 6/8 with three tempo changes at tempi that are not whole
    microseconds per beat in bpm (the values pretty_midi used to truncate)."""
    notes = tune(150, 480, length=400, pitches=(72, 74, 76, 79, 77))
    return write_midi(
        tmp_path / "in" / "lead.mid",
        [Track(notes, "Lead", program=73)],
        tempos=[(0, 97.0), (5760, 133.0), (19200, 71.3), (40000, 113.7)],
        meters=[(0, 3, 4), (5760, 4, 4), (5760 + 5 * 1920, 6, 8)],
    )


def test_write_arrangement_round_trip(tmp_path, tempo_map_melody):
    melody = load_melody(tempo_map_melody)
    accompaniment = [Note(s, s + 40, 48 + s % 12, 64) for s in range(0, melody.end_step + 64, 16)]
    before_start = [Note(-16, -8, 40, 64), Note(-8, 8, 41, 64)]  # dropped; cut to start at 0
    crossing = sum(1 for n in accompaniment if n.start < melody.end_step < n.end)
    assert crossing >= 1
    out = write_arrangement(
        melody, before_start + accompaniment, tmp_path / "new" / "deep" / "arrangement.mid"
    )
    assert out.is_file()

    before, after = pretty_midi.PrettyMIDI(str(tempo_map_melody)), pretty_midi.PrettyMIDI(str(out))
    assert [i.name for i in after.instruments] == ["Lead", ARRANGEMENT_TRACK_NAME]
    assert after.instruments[0].program == 73 and after.instruments[1].program == 0
    assert np.abs(midi_notes(out, 0) - midi_notes(tempo_map_melody, 0)).max() < 1e-6
    for original, written in zip(before.get_tempo_changes(), after.get_tempo_changes()):
        assert len(original) == len(written) == 4 and np.allclose(original, written, atol=1e-6)
    def meters(midi):
        return [(t.numerator, t.denominator, round(t.time, 6)) for t in midi.time_signature_changes]

    assert meters(after) == meters(before) and len(meters(before)) == 3
    melody_end = before.instruments[0].get_end_time()
    piano = midi_notes(out, 1)
    assert piano[0].tolist() == [0.0, pytest.approx(melody.grid.to_seconds(8)), 41, 64]
    piano = piano[1:]
    assert piano[:, 1].max() <= melody_end + 1e-9
    assert len(piano) == sum(1 for n in accompaniment if n.start < melody.end_step)
    kept_starts = [n.start for n in accompaniment[: len(piano)]]
    assert np.allclose(piano[:, 0], melody.grid.to_seconds(kept_starts), atol=1e-3)

    again = load_melody(out)
    assert again.notes == melody.notes
    assert np.array_equal(again.grid.bar_starts, melody.grid.bar_starts)
    assert np.allclose(again.grid.beat_times, melody.grid.beat_times[: len(again.grid.beat_times)])


def test_exact_tempos_rewrite_only_the_tempo_track(tempo_map_melody):
    """The tempos are set back in the first track alone; the bytes are those of reading
    the whole file and writing it back with the same tempos (as it was done before)."""
    midi = pretty_midi.PrettyMIDI(str(tempo_map_melody))
    buffer = io.BytesIO()
    midi.write(buffer)
    written = buffer.getvalue()
    whole = mido.MidiFile(file=io.BytesIO(written))
    tempos = [event for event in whole.tracks[0] if event.type == "set_tempo"]
    assert len(tempos) == len(midi._tick_scales) == 4
    for event, (_, seconds_per_tick) in zip(tempos, midi._tick_scales):
        event.tempo = int(round(seconds_per_tick * midi.resolution * 1e6))
    expected = io.BytesIO()
    whole.save(file=expected)
    assert _exact_tempos(written, midi) == expected.getvalue() != written
    assert _exact_tempos(b"not a MIDI file", midi) == b"not a MIDI file"


def test_write_arrangement_is_atomic(tmp_path, tempo_map_melody, monkeypatch):
    melody = load_melody(tempo_map_melody)
    out = tmp_path / "out" / "arrangement.mid"

    def broken_replace(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(common.os, "replace", broken_replace)
    with pytest.raises(PianoaccError, match="arrangement.mid"):
        write_arrangement(melody, [Note(0, 8, 48, 60)], out)
    assert list(out.parent.iterdir()) == []

    out.write_bytes(b"previous")
    with pytest.raises(PianoaccError):
        write_arrangement(melody, [Note(0, 8, 48, 60)], out)
    assert out.read_bytes() == b"previous" and len(os.listdir(out.parent)) == 1


def test_write_arrangement_reports_an_unwritable_folder(tmp_path, tempo_map_melody):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(PianoaccError, match="song.mid"):
        write_arrangement(load_melody(tempo_map_melody), [], blocker / "song.mid")


# --------------------------------------------------------------------------- bad input


def bad_inputs(folder: Path) -> dict[str, tuple[Path, dict]]:
    """Each broken input, as (path, keyword arguments for load_melody)."""
    files = broken_melody_files(folder)
    band = multitrack_song(folder / "band.mid")
    return {
        "missing": (files["missing"], {}),
        "text": (files["not_midi"], {}),
        "short_text": (files["short_text"], {}),
        "riff": (files["riff"], {}),
        "empty": (files["empty"], {}),
        "truncated": (files["truncated"], {}),
        "no_notes": (files["no_notes"], {}),
        "drums_only": (files["drums_only"], {}),
        "unknown_name": (band, {"track": "Vocals"}),
        "index_out_of_range": (band, {"track": 7}),
        "drum_track_requested": (band, {"track": "drums"}),
        "folder": (folder, {}),
    }


def test_every_bad_input_names_the_file(tmp_path):
    expected = {
        "missing": "missing",
        "text": "not a MIDI file",
        "short_text": "not a MIDI file",
        "riff": "save it as a standard MIDI file",
        "empty": "empty",
        "truncated": "truncated",
        "no_notes": "no notes",
        "drums_only": "drum",
        "unknown_name": "no track named",
        "index_out_of_range": "out of range",
        "drum_track_requested": "drum track",
        "folder": "not a file",
    }
    cases = bad_inputs(tmp_path)
    assert set(cases) == set(expected)
    for name, (path, kwargs) in cases.items():
        with pytest.raises(PianoaccError) as caught:
            load_melody(path, **kwargs)
        message = str(caught.value)
        assert path.name in message, name
        assert expected[name] in message, (name, message)
        if name in ("unknown_name", "index_out_of_range"):
            assert '"MELODY"' in message and '"Bass"' in message and '"Drums"' in message


def test_meter_grid_is_a_beat_grid(tmp_path):
    melody = load_melody(simple_melody(tmp_path / "odd.mid", 3, numerator=7, denominator=8))
    assert isinstance(melody.grid, BeatGrid)
    assert list(melody.grid.bar_starts) == [0, 28, 56]
    assert list(melody.grid.downbeats) == [0, 3, 7]
    assert melody.grid.num_steps >= melody.end_step
