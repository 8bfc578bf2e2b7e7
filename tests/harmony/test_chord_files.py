"""Chord files: read as written (sharps and flats, comments, tabs), chords past the melody's
end dropped or cut with a notice, every other line a chord or an error naming the file and
the line; POP909's own chord files read as POP909 reads them and played by ``accompany``."""

from __future__ import annotations

from pathlib import Path

import mir_eval
import numpy as np
import pytest

from pianoacc_utils import cli
from melodies import RESOLUTION, Track, write_midi

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data import BeatGrid, Span, load_melody, song_ids, split_songs
from pianoacc_utils.data.midi_file import read_midi
from pianoacc_utils.data.pop909 import quantize_notes, read_beats
from pianoacc_utils.defaults import STEPS_PER_BEAT
from pianoacc_utils.evaluation import chord_tone_ratio
from pianoacc_utils.harmony import chord_coverage, chord_tones, read_chords
from pianoacc_utils.harmony.chords import read_chord_file

GRID = BeatGrid(beat_times=np.arange(0.0, 20.0, 0.5), downbeats=np.arange(0, 40, 4))
"""120 bpm, 4/4: a beat every 0.5 s, so one second is 2 beats = 16 grid steps."""

MELODY_END = 16 * 2 * STEPS_PER_BEAT  # 16 s

ROOTS = {
    0: ("C", "B#"), 1: ("C#", "Db"), 2: ("D", "D"), 3: ("D#", "Eb"), 4: ("E", "Fb"),
    5: ("E#", "F"), 6: ("F#", "Gb"), 7: ("G", "G"), 8: ("G#", "Ab"), 9: ("A", "A"),
    10: ("A#", "Bb"), 11: ("B", "Cb"),
}
"""Each pitch class with its name spelled with sharps and spelled with flats."""


def chords_from(tmp_path: Path, text: str, end_step: int | None = MELODY_END) -> list[Span]:
    path = tmp_path / "chords.txt"
    path.write_text(text)
    return read_chords(path, GRID, end_step)


def tones_of(label: str) -> tuple[set[int], int]:
    tones = chord_tones(label)
    assert tones is not None, label
    return set(tones[0]), tones[1]


# --------------------------------------------------------------------------- reading as written


def test_good_lines_comments_and_blanks(tmp_path):
    spans = chords_from(tmp_path, "# intro\n0 2 C:maj\n\n2 4 A:min7  # two bars\n4 16 G:7/3\n")
    assert spans == [Span(0, 32, "C:maj"), Span(32, 64, "A:min7"), Span(64, 256, "G:7/3")]


@pytest.mark.parametrize("pitch_class", sorted(ROOTS))
def test_every_root_in_both_spellings_is_its_pitch_class(tmp_path, pitch_class):
    sharp, flat = ROOTS[pitch_class]
    spans = chords_from(tmp_path, f"0 1 {sharp}:maj\n1 2 {flat}:min\n")
    assert [span.label for span in spans] == [f"{sharp}:maj", f"{flat}:min"]
    major = {pitch_class, (pitch_class + 4) % 12, (pitch_class + 7) % 12}
    minor = {pitch_class, (pitch_class + 3) % 12, (pitch_class + 7) % 12}
    assert tones_of(spans[0].label) == (major, pitch_class)
    assert tones_of(spans[1].label) == (minor, pitch_class)


def test_sharps_and_flats_in_the_bass_and_the_extensions(tmp_path):
    text = "0 1 C:maj/#4\n1 2 C:7(#9)\n2 3 F#:min7/b3\n3 4 Bb:7(b9)\n4 5 Eb:maj/b7\n"
    labels = [span.label for span in chords_from(tmp_path, text)]
    assert labels == ["C:maj/#4", "C:7(#9)", "F#:min7/b3", "Bb:7(b9)", "Eb:maj/b7"]
    assert tones_of("C:maj/#4") == ({0, 4, 7, 6}, 6)
    assert tones_of("C:7(#9)") == ({0, 4, 7, 10, 3}, 0)
    assert tones_of("F#:min7/b3") == ({6, 9, 1, 4}, 9)
    assert tones_of("Bb:7(b9)") == ({10, 2, 5, 8, 11}, 10)
    assert tones_of("Eb:maj/b7") == ({3, 7, 10, 1}, 1)


def test_a_comment_starts_at_a_hash_after_a_space_or_at_the_line_start(tmp_path):
    text = (
        "#intro, no space after the hash\n"
        "   # indented comment\n"
        "\t# a comment after a tab\n"
        "0 1 F#:maj # F sharp, not F\n"
        "1 2 C#:min\t# C sharp minor\n"
        "2 3 G:7(#9)#no-space-so-still-the-label\n"
    )
    with pytest.raises(PianoaccError) as raised:
        chords_from(tmp_path, text)
    assert ":6: chord 3: chord label 'G:7(#9)#no-space-so-still-the-label'" in str(raised.value)
    spans = chords_from(tmp_path, text.rsplit("2 3", 1)[0])
    assert spans == [Span(0, 16, "F#:maj"), Span(16, 32, "C#:min")]


def test_tabs_and_spaces_both_separate_columns(tmp_path):
    spans = chords_from(tmp_path, "0\t2\tC:maj\n2 \t 4\tA:min\t\n  4  6  G:7\n")
    assert spans == [Span(0, 32, "C:maj"), Span(32, 64, "A:min"), Span(64, 96, "G:7")]


# --------------------------------------------------------------------------- the melody's end


def test_chords_past_the_melody_are_dropped_or_cut_and_counted(tmp_path):
    path = tmp_path / "chords.txt"
    path.write_text(
        "0 8 C:maj\n8 16 G:maj\n"  # ends exactly with the melody: kept whole
        "15 18 F:maj\n"  # runs past the end: cut at step 256
        "16.0002 17 A:min\n"  # starts 0.2 ms after the end
        "15.9998 17 E:min\n"  # starts 0.2 ms before it: the same step, nothing left
        "17 19 D:min\n"
    )
    annotation = read_chord_file(path, GRID, MELODY_END)
    kept = [Span(0, 128, "C:maj"), Span(128, 256, "G:maj"), Span(240, 256, "F:maj")]
    assert annotation.spans == kept
    assert (annotation.chords, annotation.after_end, annotation.clipped) == (6, 3, 1)
    assert annotation.notice() == (
        "chords: 3 of 6 in chords.txt start at or after the melody's end (16.000 s): dropped; "
        "1 more run past it: cut there"
    )
    whole = [Span(240, 288, "F:maj"), Span(256, 272, "A:min"), Span(256, 272, "E:min")]
    assert read_chords(path, GRID) == kept[:2] + whole + [Span(272, 304, "D:min")]


def test_a_file_that_fits_the_melody_gives_no_notice(tmp_path):
    path = tmp_path / "chords.txt"
    path.write_text("0 8 C:maj\n8 15 G:maj\n")
    assert read_chord_file(path, GRID, MELODY_END).notice() == ""
    path.write_text("0 8 C:maj\n8 17 G:maj\n")
    assert read_chord_file(path, GRID, MELODY_END).notice() == (
        "chords: 1 of 2 in chords.txt run past the melody's end (16.000 s): cut there"
    )


def test_a_file_with_no_chord_inside_the_melody_is_an_error(tmp_path):
    with pytest.raises(PianoaccError) as raised:
        chords_from(tmp_path, "16 18 C:maj\n18 20 G:maj\n")
    assert str(raised.value) == (
        f"{tmp_path / 'chords.txt'}: all 2 chords start after the melody ends (16.000 s): "
        "is it the chord file of another song?"
    )


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ("0 2 C:maj\n2 4 A min\n", 2, "expected 3 columns (start end label), got 4"),
        ("0 2 C:maj\n\n0 2\n", 3, "expected 3 columns (start end label), got 2"),
        ("4 2 C:maj\n", 1, "ends (2.0 s) before it starts (4.0 s)"),
        ("2 2 C:maj\n", 1, "ends (2.0 s) before it starts"),
        ("0 nan C:maj\n", 1, "finite seconds"),
        ("0 inf C:maj\n", 1, "finite seconds"),
        ("-1 2 C:maj\n", 1, "finite seconds >= 0"),
        ("zero two C:maj\n", 1, "could not convert"),
        ("0 2 C:maj\n2 4 Q:what\n", 2, "chord 2: chord label 'Q:what'"),
        ("0 2 C:maj\n20 24 H:maj\n", 2, "chord 2: chord label 'H:maj'"),
        ("0 0.01 C:maj\n", 1, "shorter than one grid step"),
    ],
)
def test_every_bad_line_is_an_error_naming_file_and_line(tmp_path, text, line, problem):
    with pytest.raises(PianoaccError) as raised:
        chords_from(tmp_path, text)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'chords.txt'}:{line}: ") and problem in message


def test_a_file_without_chords_is_an_error(tmp_path):
    with pytest.raises(PianoaccError, match="no chord inside the file"):
        chords_from(tmp_path, "# nothing here\n\n")


def test_coverage_counts_chords_inside_the_melody():
    chords = [Span(0, 64, "C:maj"), Span(64, 128, "N"), Span(128, 1000, "G:maj")]
    assert chord_coverage(chords, 256) == pytest.approx((64 + 128) / 256)
    assert chord_coverage([], 256) == 0.0


# --------------------------------------------------------------------------- POP909's own files


def pop909_pitch_classes(label: str) -> tuple[frozenset[int], int] | None:
    """A label's pitch classes and bass as POP909 parses its labels: ``mir_eval.chord.encode``
    (extensions folded into the octave); ``None`` for no chord."""
    root, bitmap, bass = mir_eval.chord.encode(label, reduce_extended_chords=True)
    if root < 0:
        return None
    bass_class = int((root + bass) % 12)
    tones = {int((root + i) % 12) for i in np.flatnonzero(bitmap)} | {bass_class}
    return frozenset(tones), bass_class


def song_melody_midi(pop909_dir: Path, song_id: str, out: Path, bars: int | None = None) -> Path:
    """A POP909 song's melody as a lead sheet's MIDI file: the MELODY track's notes at
    their own times (seconds), on a tempo map and time signatures that put the file's
    beats and bars on the song's annotated beats and downbeats (``beat_midi.txt``).

    POP909's own MIDI files keep the performance's tempo but start their beats at 0 s,
    not at the first annotated beat, and most say 1/4. Here the time before the first
    beat is a one-beat lead-in and the beats before the first downbeat a pickup bar,
    as a notation program writes them. With ``bars``, only the first ``bars`` bars.
    """
    folder = pop909_dir / song_id
    grid = read_beats(folder / "beat_midi.txt")
    midi = read_midi(folder / f"{song_id}.mid")
    notes = next(i for i in midi.instruments if i.name.strip().upper() == "MELODY").notes
    beat_times = np.asarray(grid.beat_times, np.float64)
    if bars is not None:
        cut = float(grid.to_seconds(np.array([grid.bar_starts[bars]]))[0])
        beat_times = beat_times[beat_times <= cut + 1e-9]
        notes = [note for note in notes if note.start < cut]
    lead_in = int(beat_times[0] > 0)
    knots = np.concatenate([[0.0] * lead_in, beat_times])  # seconds of beats 0, 1, ...
    lengths = np.diff(knots)
    tempos = [(k * RESOLUTION, 60.0 / length) for k, length in enumerate(lengths)]

    def tick(seconds: float) -> int:
        """Seconds -> ticks along the beats (the last beat's tempo after them)."""
        if seconds >= knots[-1]:
            return round((len(knots) - 1 + (seconds - knots[-1]) / lengths[-1]) * RESOLUTION)
        return round(float(np.interp(seconds, knots, np.arange(len(knots)))) * RESOLUTION)

    downbeats = [int(d) + lead_in for d in grid.downbeats if d + lead_in < len(knots)]
    bar_lines = ([0] if downbeats[0] > 0 else []) + downbeats
    bar_lengths = np.diff(bar_lines + [bar_lines[-1] + (bar_lines[-1] - bar_lines[-2])])
    meters = [
        (line * RESOLUTION, int(beats), 4)
        for i, (line, beats) in enumerate(zip(bar_lines, bar_lengths))
        if i == 0 or beats != bar_lengths[i - 1]
    ]
    tick_notes = [
        (tick(note.start), max(tick(note.end), tick(note.start) + 1), note.pitch, note.velocity)
        for note in notes
    ]
    return write_midi(out, [Track(tick_notes, "MELODY")], tempos=tempos, meters=meters)


def test_pop909_chord_files_read_as_pop909_reads_them(pop909_dir):
    """Every test song's ``chord_midi.txt`` onto its own beats, line by line: each chord
    is its line's label (POP909 spells with sharps), with the pitch classes mir_eval
    gives the raw label, from its line's start to its end."""
    sharps = 0
    for song_id in split_songs(song_ids(pop909_dir))["test"]:
        folder = pop909_dir / song_id
        grid = read_beats(folder / "beat_midi.txt")
        spans = read_chords(folder / "chord_midi.txt", grid)
        rows = [line.split("\t") for line in (folder / "chord_midi.txt").read_text().splitlines()]
        assert len(spans) == len(rows), song_id
        for span, (start, end, label) in zip(spans, rows):
            assert span.label == label, (song_id, span, label)
            assert chord_tones(span.label) == pop909_pitch_classes(label), (song_id, label)
            steps = grid.to_steps(np.array([float(start), float(end)]))
            assert (span.start, span.end) == tuple(int(step) for step in steps), (song_id, span)
            sharps += "#" in label
    assert sharps > 1000  # POP909 spells its chords with sharps


def test_pop909_chord_files_up_to_the_melody_are_the_annotation_training_reads(songs, pop909_dir):
    """Read up to the melody's end, a song's ``chord_midi.txt`` gives the chords the
    training data holds (``load_song``), cut at that end; the outro is dropped."""
    outros = 0
    for song_id, song in songs.items():
        end_step = max(note.end for note in song.melody)
        annotation = read_chord_file(pop909_dir / song_id / "chord_midi.txt", song.grid, end_step)
        reached = [chord for chord in song.chords if chord.start < end_step]
        expected = [chord._replace(end=min(chord.end, end_step)) for chord in reached]
        assert annotation.spans == expected, song_id
        assert annotation.after_end == annotation.chords - len(expected), song_id
        assert annotation.clipped == sum(chord.end > end_step for chord in reached), song_id
        outros += annotation.after_end
    assert outros > 0  # the songs' annotations go on past their melodies


@pytest.mark.slow
def test_accompany_plays_pop909s_own_chord_file(pop909_dir, tmp_path, capsys):
    """``pianoacc accompany`` with a real song's melody (its first bars) and the song's
    own ``chord_midi.txt``: the chords past the melody are dropped with a notice, and
    the piano plays the tones of the file's chords, as ``evaluate --chords annotated``
    finds the models do (results/evaluation.md: chord-tone ratio 1)."""
    song_id = "186"
    source = song_melody_midi(pop909_dir, song_id, tmp_path / f"{song_id}.mid", bars=8)
    chords_file = pop909_dir / song_id / "chord_midi.txt"
    out = tmp_path / "arrangement.mid"
    assert cli.main(["accompany", str(source), "-o", str(out), "--chords", str(chords_file)]) == 0
    printed = capsys.readouterr().out
    assert "in chord_midi.txt start at or after the melody's end" in printed
    melody = load_melody(out)
    piano = next(i for i in read_midi(out).instruments if i.name != melody.track_name)
    chords = read_chords(chords_file, melody.grid, melody.end_step)
    ratio = chord_tone_ratio(quantize_notes(piano.notes, melody.grid), chords)
    assert ratio >= 0.95  # the evaluation report asks at least 0.95 of a model
