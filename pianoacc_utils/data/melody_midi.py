"""Any MIDI file in, an arrangement out: the melody side of accompanying new music.

:func:`load_melody` picks the melody track of a MIDI file (:func:`choose_melody_track`)
and puts it on a grid laid on the file's own tempo map and time signatures
(:func:`midi_grid`: 8 steps per quarter-note beat, bar lines exact even in 5/8 or
7/8), so that a melody that never was in POP909 reaches the model in the same grid
steps as the training data. :func:`write_arrangement` writes the melody as it came
in plus the generated PIANO track back at the file's tempo;
:func:`write_segment_arrangement` does the same for a POP909 segment, for listening.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence
import copy
import io
import math
import struct
import numpy as np
import pretty_midi
from pianoacc_utils.common import PianoaccError, write_atomic
from pianoacc_utils.data.notes import BeatGrid, Note, normalize_notes
from pianoacc_utils.data.midi_file import read_midi
from pianoacc_utils.data.pop909 import Segment, Song, quantize_notes
from pianoacc_utils.defaults import STEPS_PER_BEAT


MELODY_TRACK_NAME = "MELODY"
"""A non-drum track with this name (any case) is taken as the melody."""


ARRANGEMENT_TRACK_NAME = "PIANO"
"""Name of the accompaniment track written by :func:`write_arrangement` (as in POP909)."""


@dataclass(frozen=True)
class MeterGrid(BeatGrid):
    """A :class:`BeatGrid` whose bars may start between quarter-note beats.

    ``bar_steps`` holds the exact grid step of every bar start, so meters whose
    bar is not a whole number of quarter notes (5/8, 7/8, 7/16: bars of 20, 28,
    14 steps) keep their real bar lines; ``downbeats`` is the beat in which each
    bar starts (``bar_steps // steps_per_beat``), for code that counts bars.
    ``meters`` is each bar's time signature ``(numerator, denominator)``, ``None``
    when not known.
    """

    bar_steps: np.ndarray | None = None
    meters: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bar_steps is None:
            object.__setattr__(self, "bar_steps", self.downbeats * self.steps_per_beat)
        steps = np.asarray(self.bar_steps, dtype=np.int64)
        if steps.ndim != 1 or np.any(np.diff(steps) <= 0) or len(steps) != len(self.downbeats):
            raise PianoaccError("bar steps must increase and fall in distinct beats")
        if np.any(steps // self.steps_per_beat != self.downbeats):
            raise PianoaccError("bar steps do not match the downbeats")
        object.__setattr__(self, "bar_steps", steps)
        if self.meters is not None:
            meters = tuple((int(n), int(d)) for n, d in self.meters)
            if len(meters) != len(steps):
                raise PianoaccError("a meter grid needs one time signature per bar")
            object.__setattr__(self, "meters", meters)

    @property
    def bar_starts(self) -> np.ndarray:
        """Grid step at which each bar starts (exact, also between beats)."""
        return self.bar_steps


@dataclass
class Melody:
    """A melody read from any MIDI file, on a grid built from the file's own tempo map and meter.

    ``midi`` is the ``pretty_midi.PrettyMIDI`` as loaded and ``track_index`` the
    melody's index in ``midi.instruments``; ``notes`` are the melody in grid steps
    (32nd notes, 8 per quarter-note beat) and ``end_step`` the step where its last
    note ends. ``reason`` says why that track was chosen (for the command line).
    """

    path: Path
    midi: pretty_midi.PrettyMIDI
    track_index: int
    track_name: str
    grid: BeatGrid
    notes: list[Note]
    end_step: int
    reason: str = ""

    @property
    def instrument(self):
        """The melody's ``pretty_midi.Instrument`` (notes in seconds, as in the file)."""
        return self.midi.instruments[self.track_index]

    @property
    def num_bars(self) -> int:
        """Bars that start before the melody ends (a short pickup bar counts as one)."""
        return len(self.grid.bar_starts)

    @property
    def description(self) -> str:
        """One line naming the chosen track and why.

        E.g. ``track 1 "MELODY" (64 notes, 16 bars; named MELODY)``.
        """
        name = self.track_name.strip() or "(unnamed)"
        why = f"; {self.reason}" if self.reason else ""
        notes, bars = len(self.instrument.notes), self.num_bars
        return (
            f'track {self.track_index} "{name}" ({notes} note{"s" * (notes != 1)}, '
            f'{bars} bar{"s" * (bars != 1)}{why})'
        )


def _track_list(midi) -> str:
    """The file's instruments as ``0 "MELODY" (120 notes), 1 (unnamed, drums, 40 notes)``."""
    items = []
    for index, instrument in enumerate(midi.instruments):
        name = f'"{instrument.name.strip()}"' if instrument.name.strip() else "(unnamed)"
        drums = "drums, " if instrument.is_drum else ""
        items.append(f"{index} {name} ({drums}{len(instrument.notes)} notes)")
    return ", ".join(items) or "none"


def _requested_track(midi, track: str | int, path: Path) -> int:
    """Index of the instrument named ``track`` (any case) or with index ``track``."""
    if isinstance(track, str):
        names = [instrument.name.strip().upper() for instrument in midi.instruments]
        if track.strip().upper() in names:
            track = names.index(track.strip().upper())
        elif track.strip().isdigit():
            track = int(track)
        else:
            raise PianoaccError(f"{path}: no track named {track!r}; tracks: {_track_list(midi)}")
    if not 0 <= track < len(midi.instruments):
        raise PianoaccError(
            f"{path}: track index {track} out of range; tracks: {_track_list(midi)}"
        )
    instrument = midi.instruments[track]
    if instrument.is_drum:
        raise PianoaccError(f"{path}: track {track} is a drum track; tracks: {_track_list(midi)}")
    if not instrument.notes:
        raise PianoaccError(f"{path}: track {track} has no notes; tracks: {_track_list(midi)}")
    return track


def choose_melody_track(
    midi, track: str | int | None = None, path: str | Path = ""
) -> tuple[int, str]:
    """Pick the melody among a file's instruments; returns ``(index, reason)``.

    Rule, in order: the requested ``track`` (exact name in any case, or index in
    ``midi.instruments``; a string of digits matching no name is an index); else
    the non-drum track named MELODY; else the only non-drum track with notes;
    else, among the non-drum tracks with notes, the one with the highest mean
    pitch (the tune usually lies above its accompaniment; ties go to the first).
    """
    path = Path(path)
    if track is not None:
        return _requested_track(midi, track, path), "requested"
    candidates = [
        (index, instrument)
        for index, instrument in enumerate(midi.instruments)
        if instrument.notes and not instrument.is_drum
    ]
    if not candidates:
        if any(instrument.notes for instrument in midi.instruments):
            raise PianoaccError(f"{path}: only drum tracks, no melody; tracks: {_track_list(midi)}")
        raise PianoaccError(f"{path}: no notes at all")
    for index, instrument in candidates:
        if instrument.name.strip().upper() == MELODY_TRACK_NAME:
            return index, f"named {MELODY_TRACK_NAME}"
    if len(candidates) == 1:
        return candidates[0][0], "only melodic track"
    means = [np.mean([note.pitch for note in instrument.notes]) for _, instrument in candidates]
    best = int(np.argmax(means))
    return candidates[best][0], f"highest mean pitch of {len(candidates)} melodic tracks"


def _bar_start_ticks(
    midi, end_tick: int, path: Path
) -> tuple[list[tuple[Fraction, tuple[int, int]]], Fraction]:
    """Bar starts in MIDI ticks from tick 0 up to (excluding) ``end_tick``, each with
    its time signature ``(numerator, denominator)``, and the length in ticks of the bar
    in force at ``end_tick``.

    A bar lasts ``numerator * resolution * 4 / denominator`` ticks; counting
    restarts at every time-signature change (so a 1/4 bar before a 4/4 one is a
    one-beat pickup bar). Without a time signature at tick 0, 4/4 applies until
    the first one; of several at one tick the last wins.
    """
    changes = sorted(
        (int(midi.time_to_tick(signature.time)), index, signature.numerator, signature.denominator)
        for index, signature in enumerate(midi.time_signature_changes)
    )
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0, -1, 4, 4))
    bars: list[tuple[Fraction, tuple[int, int]]] = []
    length = Fraction(4 * midi.resolution)
    for i, (tick, _, numerator, denominator) in enumerate(changes):
        if tick >= end_tick and bars:
            break
        if numerator <= 0 or denominator <= 0:
            raise PianoaccError(
                f"{path}: invalid time signature {numerator}/{denominator} at tick {tick}"
            )
        stop = changes[i + 1][0] if i + 1 < len(changes) else end_tick
        length = Fraction(numerator * 4 * midi.resolution, denominator)
        position = Fraction(tick)
        while position < min(stop, end_tick):
            bars.append((position, (numerator, denominator)))
            position += length
    return bars or [(Fraction(0), (4, 4))], length


def _bar_steps(
    bar_ticks: Sequence[tuple[Fraction, tuple[int, int]]], resolution: int
) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
    """Bar starts in grid steps, each rounded to the nearest step (halves up), and the
    time signature of each.

    Exact for every meter whose bar is a whole number of 32nd notes (all usual
    ones: 2/4 -> 16, 3/4 -> 24, 6/8 -> 24, 9/8 -> 36, 2/2 -> 32, 7/8 -> 28 steps).
    A bar starting in the same quarter-note beat as the previous one (meters
    shorter than a quarter note, e.g. 1/8 or 3/16) is merged into that bar.
    """
    steps: list[int] = []
    meters: list[tuple[int, int]] = []
    for tick, meter in bar_ticks:
        step = math.floor(tick * STEPS_PER_BEAT / resolution + Fraction(1, 2))
        if not steps or step // STEPS_PER_BEAT > steps[-1] // STEPS_PER_BEAT:
            steps.append(step)
            meters.append(meter)
    return np.array(steps, dtype=np.int64), tuple(meters)


def midi_grid(midi, end_time: float, path: str | Path = "") -> MeterGrid:
    """Grid of a MIDI file from its tempo map and time signatures, up to ``end_time`` seconds.

    Quarter-note beats are the times of ticks ``k * resolution`` (tempo changes are
    exact at tick level; a change inside a beat is interpolated linearly within
    that beat). Beats run one bar past ``end_time``; bars are only those starting
    before it. See :func:`_bar_start_ticks` for the meter rules.
    """
    path = Path(path)
    resolution = midi.resolution
    end_tick = max(int(midi.time_to_tick(end_time)), 1)
    bar_ticks, last_bar = _bar_start_ticks(midi, end_tick, path)
    num_beats = max(math.ceil((end_tick + last_bar) / resolution) + 1, 2)
    try:
        midi.tick_to_time(int(num_beats * resolution))  # extend pretty_midi's table once
        beat_times = np.array(
            [midi.tick_to_time(int(k * resolution)) for k in range(num_beats + 1)]
        )
    except IndexError as error:
        raise PianoaccError(f"{path}: the melody is too long for a MIDI tick map") from error
    steps, meters = _bar_steps(bar_ticks, resolution)
    return MeterGrid(beat_times, steps // STEPS_PER_BEAT, bar_steps=steps, meters=meters)


def load_melody(path: str | Path, track: str | int | None = None) -> Melody:
    """Load the melody of any MIDI file onto a grid laid on the file's own beats and bars.

    The track is chosen by :func:`choose_melody_track` (``Melody.description``
    says which and why). Beats and bars come from :func:`midi_grid`: 3/4 and 6/8
    bars last 24 steps, 9/8 36, 2/2 32, 2/4 16; a pickup written as a short first
    time signature (1/4 before 4/4) is a bar of its own; a file that starts with
    rests keeps its bar lines where the meter puts them. Bar 0 always starts at
    step 0 (the file's start), so no melody note lies before the first bar.
    Notes are quantized with :func:`quantize_notes` (overlaps of one pitch are cut
    by :func:`normalize_notes`). Every problem raises :class:`PianoaccError`.
    """
    path = Path(path)
    midi = read_midi(path)
    index, reason = choose_melody_track(midi, track, path)
    instrument = midi.instruments[index]
    grid = midi_grid(midi, max(note.end for note in instrument.notes), path)
    notes = quantize_notes(instrument.notes, grid)
    if not notes:
        raise PianoaccError(f"{path}: track {index} has no notes on the grid")
    return Melody(
        path=path,
        midi=midi,
        track_index=index,
        track_name=instrument.name,
        grid=grid,
        notes=notes,
        end_step=max(note.end for note in notes),
        reason=reason,
    )


def melody_song(melody: Melody) -> Song:
    """A :class:`Song` holding only the melody (no accompaniment, chords or keys) on its grid.

    ``segment(melody_song(m), bars, min_bars=1)`` cuts it into whole-bar segments
    that keep every melody onset (the grid's first bar starts at step 0, and the
    last bar ends with the melody); with the default ``min_bars=4`` a tail of
    fewer than 4 bars would be dropped. Windows without a melody note are skipped.
    """
    return Song(
        song_id=melody.path.stem,
        grid=melody.grid,
        melody=list(melody.notes),
        accompaniment=[],
    )


def _accompaniment_in_seconds(
    accompaniment: Sequence[Note], grid: BeatGrid, end_time: float
) -> list:
    """Grid notes -> ``pretty_midi.Note`` in seconds on ``grid``, cut at ``end_time`` seconds.

    Notes starting at or after ``end_time`` are dropped, notes crossing it end there;
    notes before step 0 are cut to start there.
    """
    import pretty_midi

    notes = normalize_notes(
        [n._replace(start=max(n.start, 0)) for n in accompaniment if n.end > 0]
    )
    if not notes:
        return []
    starts = grid.to_seconds(np.array([n.start for n in notes]))
    ends = np.minimum(grid.to_seconds(np.array([n.end for n in notes])), end_time)
    return [
        pretty_midi.Note(velocity=n.velocity, pitch=n.pitch, start=float(s), end=float(e))
        for n, s, e in zip(notes, starts, ends)
        if s < end_time and e > s
    ]


def _exact_tempos(data: bytes, midi) -> bytes:
    """Restore the exact tempo values in MIDI bytes written by pretty_midi.

    pretty_midi truncates each tempo to whole microseconds per beat when it writes
    (500000 may become 499999), which shifts every later note a little; the tempos
    are set back to the rounded values of ``midi``'s own tempo map. Only the first
    track, where pretty_midi writes the tempos, is read and written again; the note
    tracks are kept as they are (reading and writing them back, the same bytes, was
    most of the time of writing an arrangement).
    """
    import mido

    header, tracks = _midi_chunks(data)
    if not tracks:
        return data
    count = struct.pack(">H", 1)  # the header's track count: only the first track is read
    parsed = mido.MidiFile(file=io.BytesIO(header[:10] + count + header[12:] + tracks[0]))
    tempo_events = [event for event in parsed.tracks[0] if event.type == "set_tempo"]
    scales = midi._tick_scales  # (tick, seconds per tick) of each tempo
    if len(tempo_events) != len(scales):
        return data
    for event, (_, seconds_per_tick) in zip(tempo_events, scales):
        event.tempo = int(round(seconds_per_tick * midi.resolution * 1e6))
    buffer = io.BytesIO()
    parsed.save(file=buffer)
    _, (first,) = _midi_chunks(buffer.getvalue())
    return b"".join([header, first, *tracks[1:]])


def _midi_chunks(data: bytes) -> tuple[bytes, list[bytes]]:
    """A MIDI file's header chunk and its track chunks, each with its type and length
    (no track when the bytes are not a MIDI file's chunks)."""
    chunks, position = [], 0
    while position + 8 <= len(data):
        (length,) = struct.unpack(">L", data[position + 4 : position + 8])
        chunks.append(data[position : position + 8 + length])
        position += 8 + length
    if position != len(data) or not chunks or not chunks[0].startswith(b"MThd"):
        return data, []
    if any(not chunk.startswith(b"MTrk") for chunk in chunks[1:]):
        return data, []
    return chunks[0], chunks[1:]


def write_arrangement(
    melody: Melody, accompaniment: Sequence[Note], out_path: str | Path, program: int = 0
) -> Path:
    """Write the melody as it came in plus a PIANO accompaniment track to a new MIDI file.

    The melody track is copied from the input untouched (notes in seconds, name,
    program, controllers); ``accompaniment`` (grid steps on ``melody.grid``) goes to
    a track named PIANO with General MIDI ``program``, converted to seconds and cut
    at the melody's last note end. Tempo changes, time signatures, key signatures
    and the file's resolution are kept. Written atomically (a failure never leaves
    a half-written file); the parent folder is created. Returns ``out_path``.
    """
    import pretty_midi

    out_path = Path(out_path)
    if not 0 <= int(program) <= 127:
        raise PianoaccError(f"{out_path}: General MIDI program must be 0..127, got {program}")
    arrangement = copy.deepcopy(melody.midi)
    lead = arrangement.instruments[melody.track_index]
    end_time = max(note.end for note in lead.notes)
    piano = pretty_midi.Instrument(program=int(program), name=ARRANGEMENT_TRACK_NAME)
    piano.notes = _accompaniment_in_seconds(accompaniment, melody.grid, end_time)
    arrangement.instruments = [lead, piano]
    buffer = io.BytesIO()
    arrangement.write(buffer)
    try:
        write_atomic(out_path, _exact_tempos(buffer.getvalue(), arrangement))
    except OSError as error:
        reason = error.strerror or error
        raise PianoaccError(f"{out_path}: cannot write the arrangement ({reason})") from error
    return out_path


def write_segment_arrangement(
    song: Song, seg: Segment, accompaniment: Sequence[Note], out_path: str | Path, program: int = 0
) -> Path:
    """Write a segment's melody and an accompaniment of it as a MIDI file, for listening.

    ``seg`` is a segment of ``song`` (notes in steps from the segment start) and
    ``accompaniment`` is in the same steps (a generated one, or ``seg.accompaniment``).
    Times come from the song's own beats, so the file plays at the song's tempo,
    starting at 0 s with the segment's first bar; tracks MELODY and PIANO (General
    MIDI ``program``). Written atomically; returns ``out_path``.
    """
    import pretty_midi

    out_path = Path(out_path)
    origin = int(song.grid.bar_starts[seg.first_bar])
    start, end = song.grid.to_seconds(np.array([origin, origin + seg.num_steps], dtype=np.float64))
    midi = pretty_midi.PrettyMIDI()
    for name, notes in ((MELODY_TRACK_NAME, seg.melody), (ARRANGEMENT_TRACK_NAME, accompaniment)):
        track = pretty_midi.Instrument(program=int(program), name=name)
        shifted = [n._replace(start=n.start + origin, end=n.end + origin) for n in notes]
        for note in _accompaniment_in_seconds(shifted, song.grid, float(end)):
            note.start, note.end = note.start - float(start), note.end - float(start)
            track.notes.append(note)
        midi.instruments.append(track)
    buffer = io.BytesIO()
    midi.write(buffer)
    try:
        write_atomic(out_path, buffer.getvalue())
    except OSError as error:
        reason = error.strerror or error
        raise PianoaccError(f"{out_path}: cannot write the arrangement ({reason})") from error
    return out_path
