"""Small melody MIDI files for tests, written with mido so every event sits on a known tick.

Used by the melody-loading and audio tests and by the ``pianoacc accompany`` CLI
tests (``from melodies import simple_melody``; pytest puts ``tests/`` on the path).
Times here are MIDI ticks; with ``RESOLUTION = 480`` ticks per quarter note one
grid step (a 32nd note) is ``TICKS_PER_STEP = 60`` ticks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import mido

RESOLUTION = 480
"""Ticks per quarter note of the files written here."""

TICKS_PER_STEP = RESOLUTION // 8
"""Ticks per grid step (a 32nd note) at :data:`RESOLUTION`."""

SCALE = (60, 62, 64, 65, 67, 69, 71, 72)
"""C major, the pitches the generated tunes walk through."""

TickNote = tuple[int, int, int, int]
"""``(start_tick, end_tick, pitch, velocity)``."""


@dataclass
class Track:
    """One MIDI track: notes in ticks, an optional track name, a channel (9 = drums) and program."""

    notes: list[TickNote]
    name: str | None = None
    channel: int = 0
    program: int = 0
    extra: list[mido.Message] = field(default_factory=list)


def bar_ticks(numerator: int, denominator: int, resolution: int = RESOLUTION) -> int:
    """Length of one bar of ``numerator/denominator`` in ticks."""
    return numerator * resolution * 4 // denominator


def tune(
    count: int,
    every: int,
    *,
    start: int = 0,
    length: int | None = None,
    pitches: Sequence[int] = SCALE,
    velocity: int = 80,
) -> list[TickNote]:
    """``count`` notes, one every ``every`` ticks from ``start``, cycling through ``pitches``.

    Each note lasts ``length`` ticks (default: until the next one).
    """
    length = every if length is None else length
    return [
        (start + i * every, start + i * every + length, pitches[i % len(pitches)], velocity)
        for i in range(count)
    ]


def _events(track: Track) -> list[tuple[int, int, mido.Message]]:
    """Absolute-tick events of a track; note-offs sort before note-ons at the same tick."""
    events = [(0, 0, mido.Message("program_change", program=track.program, channel=track.channel))]
    events += [(0, 0, message) for message in track.extra]
    for start, end, pitch, velocity in track.notes:
        on = mido.Message("note_on", note=pitch, velocity=velocity, channel=track.channel)
        off = mido.Message("note_off", note=pitch, velocity=0, channel=track.channel)
        events += [(start, 2, on), (end, 1, off)]
    return events


def _meta(tempos: Sequence[tuple[int, float]], meters: Sequence[tuple[int, int, int]]) -> list:
    events = [
        (tick, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))) for tick, bpm in tempos
    ]
    events += [
        (tick, 0, mido.MetaMessage("time_signature", numerator=n, denominator=d))
        for tick, n, d in meters
    ]
    return events


def _track(events: list, name: str | None = None) -> mido.MidiTrack:
    """Absolute-tick events -> a mido track with relative times and a name."""
    track = mido.MidiTrack()
    if name is not None:
        track.append(mido.MetaMessage("track_name", name=name, time=0))
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    return track


def write_midi(
    path: str | Path,
    tracks: Sequence[Track],
    *,
    tempos: Sequence[tuple[int, float]] = ((0, 120.0),),
    meters: Sequence[tuple[int, int, int]] = ((0, 4, 4),),
    resolution: int = RESOLUTION,
    conductor: bool = True,
    single_track: bool = False,
) -> Path:
    """Write a type-1 MIDI file; ``tempos`` are ``(tick, bpm)``, ``meters`` ``(tick, num, den)``.

    ``conductor=True`` puts tempo and meter events alone in the first track (a
    conductor track, as notation programs write); ``False`` puts them in the first
    note track. ``single_track=True`` writes a type-0 file instead: everything merged
    into one track, the tracks told apart by their channels only.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi = mido.MidiFile(type=1, ticks_per_beat=resolution)
    meta = _meta(tempos, meters)
    if conductor:
        midi.tracks.append(_track(meta))
    for index, track in enumerate(tracks):
        events = _events(track) + (meta if index == 0 and not conductor else [])
        midi.tracks.append(_track(events, track.name))
    if single_track:
        merged = mido.merge_tracks(midi.tracks)
        midi = mido.MidiFile(type=0, ticks_per_beat=resolution, tracks=[merged])
    midi.save(path)
    return path


def simple_melody(
    path: str | Path,
    bars: int = 8,
    *,
    bpm: float = 100.0,
    numerator: int = 4,
    denominator: int = 4,
    name: str | None = "MELODY",
) -> Path:
    """A one-track tune of ``bars`` bars, one note per meter unit (a quarter in 4/4, an
    eighth in 6/8), each lasting three quarters of its unit."""
    unit = RESOLUTION * 4 // denominator
    notes = tune(bars * numerator, unit, length=unit * 3 // 4)
    return write_midi(
        path, [Track(notes, name)], tempos=[(0, bpm)], meters=[(0, numerator, denominator)]
    )


def tempo_change_melody(path: str | Path) -> Path:
    """Eight 4/4 bars of eighth notes with three tempo changes (90 -> 140 -> 61.5 -> 200 bpm)."""
    return write_midi(
        path,
        [Track(tune(64, RESOLUTION // 2), "MELODY")],
        tempos=[(0, 90.0), (2 * 1920, 140.0), (4 * 1920, 61.5), (6 * 1920 + 480, 200.0)],
    )


def pickup_melody(path: str | Path, numerator: int = 4) -> Path:
    """A one-beat pickup written as a 1/4 bar, then 4 bars of ``numerator``/4 in quarter notes."""
    notes = tune(1 + 4 * numerator, RESOLUTION, pitches=(67, 72, 74, 76, 72))
    return write_midi(
        path, [Track(notes, "MELODY")], meters=[(0, 1, 4), (RESOLUTION, numerator, 4)]
    )


def multitrack_song(path: str | Path, *, melody_name: str | None = "MELODY") -> Path:
    """A bass line, a (named) melody above it and drums: the melody is track index 1."""
    bass = Track(tune(8, 4 * RESOLUTION, pitches=(36, 43, 41, 38)), "Bass", channel=1, program=33)
    melody = Track(tune(32, RESOLUTION), melody_name, channel=0)
    drums = Track(tune(64, RESOLUTION // 2, pitches=(36, 42, 38, 42)), "Drums", channel=9)
    return write_midi(path, [bass, melody, drums])


def broken_melody_files(folder: Path) -> dict[str, Path]:
    """The broken inputs every melody reader must reject, plus one good file.

    Keys: ``good`` (a valid 8-bar melody), ``missing`` (no such file), ``not_midi``
    (a text file named .mid), ``short_text`` (five bytes of text), ``riff`` (a MIDI file
    wrapped in RIFF, as .rmi files are), ``empty`` (0 bytes), ``truncated`` (the good file cut
    in half), ``no_notes`` (a MELODY track without notes), ``drums_only``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    good = simple_melody(folder / "good.mid", bars=8)
    text = folder / "notes.mid"
    text.write_text("C D E F G\n")
    short = folder / "hello.mid"
    short.write_text("hello")  # shorter than a MIDI header
    riff = folder / "song.rmi"
    midi = good.read_bytes()  # RIFF header, form type RMID, one "data" chunk holding the MIDI
    size = len(midi).to_bytes(4, "little")
    riff.write_bytes(b"RIFF" + (len(midi) + 12).to_bytes(4, "little") + b"RMIDdata" + size + midi)
    empty = folder / "empty.mid"
    empty.write_bytes(b"")
    half = folder / "half.mid"
    half.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    kit = Track(tune(8, RESOLUTION, pitches=(36, 38)), "Kit", channel=9)
    return {
        "good": good,
        "missing": folder / "missing.mid",
        "not_midi": text,
        "short_text": short,
        "riff": riff,
        "empty": empty,
        "truncated": half,
        "no_notes": write_midi(folder / "silent.mid", [Track([], "MELODY")]),
        "drums_only": write_midi(folder / "drums.mid", [kit]),
    }
