"""POP909 on the grid: beat grids, loading, normalizing, segments, splits, download, bad input."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pianoacc_utils import data
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data import BeatGrid, Note, Segment, normalize_notes, segment, split_songs
from pianoacc_utils.defaults import STEPS_PER_BEAT


def melody_track(folder: Path, song_id: str) -> pretty_midi.Instrument:
    midi = pretty_midi.PrettyMIDI(str(folder / song_id / f"{song_id}.mid"))
    return next(i for i in midi.instruments if i.name.strip().upper() == "MELODY")


def same_pitch_overlaps(notes: list[Note]) -> int:
    """How many notes start while the previous note of their pitch still sounds."""
    last_end: dict[int, int] = {}
    overlaps = 0
    for note in sorted(notes, key=lambda n: (n.start, n.pitch)):
        overlaps += note.start < last_end.get(note.pitch, -1)
        last_end[note.pitch] = note.end
    return overlaps


# --------------------------------------------------------------------------- beat grid


@st.composite
def beat_grids(draw) -> BeatGrid:
    """Grids of 2..40 beats, 0.2..1.5 s long each, starting anywhere in 0..5 s."""
    lengths = draw(st.lists(st.floats(0.2, 1.5), min_size=1, max_size=39))
    first = draw(st.floats(0.0, 5.0))
    return BeatGrid(first + np.concatenate([[0.0], np.cumsum(lengths)]), np.array([0]))


@given(beat_grids(), st.lists(st.integers(-200, 600), min_size=1, max_size=50))
def test_grid_steps_to_seconds_and_back(grid, steps):
    steps = np.array(steps)
    seconds = grid.to_seconds(steps)
    assert np.all(np.diff(seconds[np.argsort(steps)]) >= 0)
    np.testing.assert_array_equal(grid.to_steps(seconds), steps)


@given(beat_grids(), st.floats(-10.0, 80.0))
def test_grid_seconds_to_nearest_step(grid, seconds):
    step = int(grid.to_steps(seconds))
    before, here, after = grid.to_seconds(np.array([step - 0.5, step, step + 0.5]))
    assert before - 1e-9 <= seconds <= after + 1e-9
    assert abs(float(grid.beats_at(here)) * STEPS_PER_BEAT - step) < 1e-6


def test_grid_interpolates_inside_and_extrapolates_outside():
    grid = BeatGrid(np.array([1.0, 1.5, 2.0, 3.0]), np.array([0, 2]))
    assert grid.to_seconds(4) == pytest.approx(1.25)  # half of the first beat
    assert grid.to_seconds(20) == pytest.approx(2.5)  # half of the last (1 s) beat
    assert grid.to_seconds(-8) == pytest.approx(0.5)  # one first-beat length before it
    assert grid.to_seconds(40) == pytest.approx(5.0)  # two last-beat lengths after the last beat
    assert grid.to_steps(0.5) == -8 and grid.to_steps(5.0) == 40 and grid.to_steps(2.5) == 20
    assert list(grid.bar_starts) == [0, 16] and grid.num_steps == 32


@pytest.mark.parametrize("beats", [[1.0], [1.0, 1.0, 2.0], [2.0, 1.0], []])
def test_grid_rejects_too_few_or_unordered_beats(beats):
    with pytest.raises(PianoaccError, match="strictly increasing"):
        BeatGrid(np.array(beats), np.array([0]))


def test_read_beats_on_a_real_file(pop909_dir):
    path = pop909_dir / "001" / "beat_midi.txt"
    first_time = float(path.read_text().split()[0])
    grid = data.read_beats(path)
    assert grid.beat_times[0] == pytest.approx(first_time) and grid.beat_times[0] > 0
    assert grid.to_steps(first_time) == 0  # the grid starts at the first annotated beat
    assert len(grid.beat_times) == len(path.read_text().split()) // 3
    beats_per_bar = np.diff(grid.downbeats)
    assert np.mean(beats_per_bar == 4) > 0.9


def test_bar_lines_fall_where_chords_change(songs):
    """Chords change on bar lines more than on any other beat of the bar: downbeats are right."""
    for song in songs.values():
        chords = [c for c in song.chords if c.label != "N"]
        changes = [
            c.start for i, c in enumerate(chords) if i == 0 or c.label != chords[i - 1].label
        ]
        bar_starts = set(song.grid.bar_starts.tolist())
        share = [
            np.mean([c - beat * STEPS_PER_BEAT in bar_starts for c in changes]) for beat in range(4)
        ]
        assert share[0] > max(share[1:]), (song.song_id, share)


# --------------------------------------------------------------------------- loading


def test_load_song_tracks_and_grid(songs, pop909_dir):
    for song_id, song in songs.items():
        assert song.song_id == song_id
        assert song.melody and song.accompaniment and song.chords
        assert song.bridge is None
        assert song.key is not None and ":" in song.key
        assert song.num_bars == len(song.grid.downbeats) > 8
        raw_melody = melody_track(pop909_dir, song_id).notes
        assert 0.95 * len(raw_melody) <= len(song.melody) <= len(raw_melody)
        for part in (song.melody, song.accompaniment):
            assert all(isinstance(value, int) for note in part for value in note)
            assert min(n.end - n.start for n in part) >= 1
            assert min(n.start for n in part) >= 0
            assert part == sorted(part, key=lambda n: (n.start, n.pitch))
            assert same_pitch_overlaps(part) == 0
            assert all(data.PIANO_RANGE[0] <= n.pitch <= data.PIANO_RANGE[1] for n in part)
            assert all(1 <= n.velocity <= 127 for n in part)


def test_load_song_by_number_folder_and_with_bridge(pop909_dir, songs):
    by_number = data.load_song(1, root=pop909_dir)
    by_folder = data.load_song(pop909_dir / "001", include_bridge=True)
    assert by_number.melody == by_folder.melody == songs["001"].melody
    assert by_folder.bridge and same_pitch_overlaps(by_folder.bridge) == 0


def test_quantized_onsets_stay_close_to_the_performance(songs, pop909_dir):
    """The grid follows the music: melody onsets move by less than 20 ms when quantized."""
    shares = {}
    errors = []
    for song_id, song in songs.items():
        onsets = np.array([n.start for n in melody_track(pop909_dir, song_id).notes])
        error = np.abs(song.grid.to_seconds(song.grid.to_steps(onsets)) - onsets)
        shares[song_id] = float(np.mean(error < 0.020))
        errors.append(error)
    pooled = float(np.mean(np.concatenate(errors) < 0.020))
    assert pooled > 0.95, shares  # measured: 0.99 over these songs
    assert min(shares.values()) > 0.9, shares


# --------------------------------------------------------------------------- normalize


@given(st.lists(
    st.builds(
        Note,
        start=st.integers(0, 200),
        end=st.integers(-5, 260),
        pitch=st.integers(-10, 140),
        velocity=st.integers(-10, 140),
    ),
    max_size=60,
))
def test_normalize_notes_properties(notes):
    result = normalize_notes(notes)
    assert result == sorted(result, key=lambda n: (n.start, n.pitch))
    assert all(n.end - n.start >= 1 for n in result)
    assert all(0 <= n.pitch <= 127 and 1 <= n.velocity <= 127 for n in result)
    assert same_pitch_overlaps(result) == 0
    onsets = {(n.start, min(max(n.pitch, 0), 127)) for n in notes}
    assert {(n.start, n.pitch) for n in result} == onsets
    assert len(result) == len(onsets)
    assert normalize_notes(result) == result


def test_normalize_keeps_the_longer_of_two_notes_struck_together_and_cuts_overlaps():
    notes = [Note(0, 4, 60, 90), Note(0, 10, 60, 70), Note(6, 12, 60, 80), Note(3, 3, 64, 50)]
    assert normalize_notes(notes) == [Note(0, 6, 60, 70), Note(3, 4, 64, 50), Note(6, 12, 60, 80)]


# --------------------------------------------------------------------------- segments


def test_segments_start_on_downbeats_and_hold_32_bars(songs):
    for song in songs.values():
        segments = segment(song, bars=32)
        bar_starts = [int(s) for s in song.grid.bar_starts]
        assert [seg.first_bar for seg in segments] == list(range(0, 32 * len(segments), 32))
        for seg in segments:
            start = bar_starts[seg.first_bar]
            own_bars = bar_starts[seg.first_bar : seg.first_bar + seg.num_bars]
            assert seg.bar_starts == [b - start for b in own_bars]
            assert seg.num_bars == 32 or seg is segments[-1]
            assert seg.num_bars >= 4
            if seg.first_bar + seg.num_bars < len(bar_starts):
                assert seg.num_steps == bar_starts[seg.first_bar + seg.num_bars] - start
            for note in seg.melody + seg.accompaniment:
                assert 0 <= note.start < note.end <= seg.num_steps
            assert seg.key == song.key and seg.transpose == 0


def test_segments_keep_every_melody_note_once(songs):
    for song in songs.values():
        first_bar = int(song.grid.bar_starts[0])
        expected = [n for n in song.melody if n.start >= first_bar]
        segments = segment(song, bars=32, min_bars=1)
        found = [
            (n.start + int(song.grid.bar_starts[seg.first_bar]), n.pitch)
            for seg in segments
            for n in seg.melody
        ]
        assert found == [(n.start, n.pitch) for n in expected]
        assert sum(len(seg.accompaniment) for seg in segments) <= len(song.accompaniment)


def test_overlapping_segments_with_hop_bars(songs):
    song = songs["002"]
    segments = segment(song, bars=8, hop_bars=4)
    assert [seg.first_bar for seg in segments][:4] == [0, 4, 8, 12]
    for a, b in zip(segments, segments[1:]):
        if b.first_bar != a.first_bar + 4:
            continue
        offset = a.bar_starts[4]  # b starts at a's fifth bar
        a_second_half = [n for n in a.melody if n.start >= offset]
        assert [(n.start - offset, n.pitch) for n in a_second_half] == [
            (n.start, n.pitch) for n in b.melody if n.start < a.num_steps - offset
        ]


def test_irregular_bars_are_kept(songs):
    song = songs["186"]  # has bars of two beats among its 4/4 bars
    song_bar_lengths = np.diff(song.grid.bar_starts)
    assert set(song_bar_lengths.tolist()) > {4 * STEPS_PER_BEAT}
    segments = segment(song, bars=32, min_bars=1)
    segment_bar_lengths = np.concatenate(
        [np.diff(seg.bar_starts + [seg.num_steps]) for seg in segments]
    )
    compared = min(len(segment_bar_lengths), len(song_bar_lengths))
    assert compared >= len(song_bar_lengths) - 1
    np.testing.assert_array_equal(segment_bar_lengths[:compared], song_bar_lengths[:compared])


def test_short_last_window_needs_min_bars(songs):
    song = songs["001"]  # 73 bars: 32 + 32 + 9
    assert song.num_bars == 73
    assert [seg.num_bars for seg in segment(song, bars=32, min_bars=9)] == [32, 32, 9]
    assert [seg.num_bars for seg in segment(song, bars=32, min_bars=10)] == [32, 32]
    with pytest.raises(PianoaccError, match="bars"):
        segment(song, bars=0)


def small_segment(pitches: list[int]) -> Segment:
    melody = [Note(i * 4, i * 4 + 4, p, 80) for i, p in enumerate(pitches)]
    return Segment("999", 0, 64, melody, [Note(0, 8, 48, 60)], [], [0, 32], key="C:maj")


def test_transpose_moves_melody_and_accompaniment_together():
    seg = small_segment([60, 64, 67])
    up = data.transpose(seg, 3)
    assert [n.pitch for n in up.melody] == [63, 67, 70] and up.accompaniment[0].pitch == 51
    assert up.transpose == 3 and up.key == "C:maj"
    assert [n.start for n in up.melody] == [n.start for n in seg.melody]
    assert data.transpose(seg, 0) is seg
    assert data.transpose(up, -3).melody == seg.melody and data.transpose(up, -3).transpose == 0


def test_transpose_refuses_to_leave_the_piano_range():
    low, high = data.PIANO_RANGE
    assert data.transpose(small_segment([high]), 1) is None
    assert data.transpose(small_segment([high - 1]), 1).melody[0].pitch == high
    # the melody would fit, the accompaniment (48) would drop to 20
    assert data.transpose(small_segment([60]), low - 49) is None
    assert data.transpose(small_segment([60]), low - 48).accompaniment[0].pitch == low


# --------------------------------------------------------------------------- splits


def test_split_songs(pop909_dir):
    ids = data.song_ids(pop909_dir)
    assert len(ids) == data.NUM_SONGS and ids[0] == "001" and ids[-1] == "909"
    splits = split_songs(ids)
    assert {name: len(members) for name, members in splits.items()} == {
        "train": 727, "validation": 91, "test": 91,
    }
    members = [set(m) for m in splits.values()]
    assert set.union(*members) == set(ids) and sum(map(len, members)) == len(ids)
    assert "186" in splits["test"]
    assert split_songs(list(reversed(ids))) == splits  # deterministic, order-independent
    other = split_songs(ids, seed=1)
    assert other != splits and "186" in other["test"]


@pytest.mark.parametrize("seed", range(8))
def test_pinned_song_always_in_test(seed):
    ids = [f"{i:03d}" for i in range(1, 910)]
    splits = split_songs(ids, seed=seed)
    assert "186" in splits["test"] and len(splits["test"]) == 91
    assert not set(splits["train"]) & set(splits["test"])


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def song_folder(tmp_path: Path, pop909_dir: Path) -> Path:
    """A private copy of song 001 to break."""
    return Path(shutil.copytree(pop909_dir / "001", tmp_path / "001"))


def test_copied_song_folder_loads(song_folder):
    assert data.load_song(song_folder).melody


def test_missing_midi_file(song_folder):
    (song_folder / "001.mid").unlink()
    with pytest.raises(PianoaccError, match=r"001\.mid: file missing"):
        data.load_song(song_folder)


def test_broken_midi_file(song_folder):
    """POP909 songs are read by the same reader as users' melodies (``data.read_midi``)."""
    (song_folder / "001.mid").write_bytes(b"MThd this is not a MIDI file")
    with pytest.raises(PianoaccError, match=r"001\.mid: truncated MIDI file"):
        data.load_song(song_folder)
    (song_folder / "001.mid").write_text("C D E F G")
    with pytest.raises(PianoaccError, match=r"001\.mid: not a MIDI file"):
        data.load_song(song_folder)


def test_midi_without_melody_track(song_folder):
    midi = pretty_midi.PrettyMIDI(str(song_folder / "001.mid"))
    midi.instruments = [i for i in midi.instruments if i.name.strip().upper() != "MELODY"]
    midi.write(str(song_folder / "001.mid"))
    with pytest.raises(PianoaccError, match=r"001\.mid: no track named MELODY"):
        data.load_song(song_folder)


@pytest.mark.parametrize(
    "content, problem",
    [
        ("0.5 1 1\n1.0 0\n", r"beat_midi\.txt:2: expected 3 columns"),
        ("0.5 1 1\nlater 0 0\n", r"beat_midi\.txt: could not convert"),
        ("0.5 1 1\n0.4 0 0\n", r"beat_midi\.txt: a beat grid needs"),
        ("", r"beat_midi\.txt: a beat grid needs"),
    ],
)
def test_malformed_beat_file(song_folder, content, problem):
    (song_folder / "beat_midi.txt").write_text(content)
    with pytest.raises(PianoaccError, match=problem):
        data.load_song(song_folder)


@pytest.mark.parametrize("name", ["beat_midi.txt", "chord_midi.txt"])
def test_missing_annotation_file(song_folder, name):
    (song_folder / name).unlink()
    with pytest.raises(PianoaccError, match=rf"{name}: file missing"):
        data.load_song(song_folder)


def test_malformed_chord_file(song_folder):
    (song_folder / "chord_midi.txt").write_text("0.0 1.0 C:maj\n1.0 two G:maj\n")
    with pytest.raises(PianoaccError, match=r"chord_midi\.txt:2"):
        data.load_song(song_folder)


def test_pop909_dir_without_songs(tmp_path, monkeypatch):
    monkeypatch.setenv("POP909_DIR", str(tmp_path))
    with pytest.raises(PianoaccError, match="no song folder 001/"):
        data.find_pop909_dir()


# --------------------------------------------------------------------------- download

SONG_FILES = ("{id}.mid", "beat_midi.txt", "chord_midi.txt", "key_audio.txt")


@pytest.fixture
def upstream_zip(tmp_path: Path, pop909_dir: Path) -> Path:
    """A small archive laid out like the upstream repository's: two songs, with versions/."""
    archive = tmp_path / "master.zip"
    top = "POP909-Dataset-master"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr(f"{top}/README.md", "POP909\n")
        bundle.writestr(f"{top}/data_process.ipynb", "{}")
        for song_id in ("001", "002"):
            folder = pop909_dir / song_id
            for name in SONG_FILES:
                name = name.format(id=song_id)
                bundle.write(folder / name, f"{top}/POP909/{song_id}/{name}")
            other_version = f"{top}/POP909/{song_id}/versions/{song_id}-v1.mid"
            bundle.write(folder / f"{song_id}.mid", other_version)
    return archive


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_extracts_the_song_folders(tmp_path, upstream_zip, pop909_dir):
    dest = tmp_path / "data" / "POP909"
    got = data.download_pop909(dest, url=upstream_zip.as_uri(), sha256=sha256_of(upstream_zip))
    assert got == dest
    assert data.song_ids(dest) == ["001", "002"]
    for song_id in ("001", "002"):
        assert sorted(p.name for p in (dest / song_id).iterdir()) == sorted(
            name.format(id=song_id) for name in SONG_FILES
        )
        midi = (dest / song_id / f"{song_id}.mid").read_bytes()
        assert midi == (pop909_dir / song_id / f"{song_id}.mid").read_bytes()
    assert (dest / "ARCHIVE_SHA256").read_text().strip() == sha256_of(upstream_zip)
    assert data.load_song("002", root=dest).melody == data.load_song("002", root=pop909_dir).melody
    assert sorted(p.name for p in dest.parent.iterdir()) == ["POP909"]  # no temporary left


def test_download_without_checksum_records_it(tmp_path, upstream_zip):
    dest = data.download_pop909(tmp_path / "POP909", url=upstream_zip.as_uri(), sha256=None)
    assert (dest / "ARCHIVE_SHA256").read_text().strip() == sha256_of(upstream_zip)


def test_download_with_wrong_checksum(tmp_path, upstream_zip):
    dest = tmp_path / "data" / "POP909"
    with pytest.raises(PianoaccError, match="checksum mismatch"):
        data.download_pop909(dest, url=upstream_zip.as_uri(), sha256="0" * 64)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_download_of_a_broken_archive(tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 but not really a zip archive")
    dest = tmp_path / "data" / "POP909"
    with pytest.raises(PianoaccError, match="not a valid zip archive"):
        data.download_pop909(dest, url=broken.as_uri(), sha256=None)
    assert not dest.exists()


def test_download_of_an_archive_without_pop909(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("something-else/README.md", "hello")
    with pytest.raises(PianoaccError, match="no POP909/ folder"):
        data.download_pop909(tmp_path / "POP909", url=archive.as_uri(), sha256=None)


def test_download_offline(tmp_path):
    dest = tmp_path / "data" / "POP909"
    with pytest.raises(PianoaccError, match="offline"):
        data.download_pop909(dest, url="http://127.0.0.1:9/x.zip", sha256=None)
    assert not dest.exists()
