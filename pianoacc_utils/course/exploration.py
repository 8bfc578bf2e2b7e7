"""Dataset statistics behind the data-exploration and tokenization notebooks.

Each function answers one question a modelling choice depends on: how steady is
the tempo, what meter do the bars have, do the bar lines sit where the music's
bars are, which grid the notes were played on, how long the token sequences of
a segment get, and whether tokenization loses anything. Per-song work runs in
worker processes (:func:`collect_song_statistics`, :func:`check_tokenization`).

Units are named in every field: ``*_steps`` grid steps, ``*_seconds`` seconds,
``*_bpm`` quarter-note beats per minute, ``*_percent`` percent, ``*_share`` a fraction 0..1.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from pianoacc_utils import data
from pianoacc_utils.common import worker_processes
from pianoacc_utils.data.notes import BeatGrid, Note, Span
from pianoacc_utils.defaults import PITCH_NAMES, STEPS_PER_BEAT
from pianoacc_utils.prepare import SPLITS, load_split
from pianoacc_utils.tokenizer import EventTokenizer

GRID_TOLERANCE_SECONDS = 0.02
"""An onset counts as "on the grid" within 20 ms of a grid point (a quarter of a 32nd at 90 bpm)."""


SIXTEENTHS_PER_BEAT = 4


# --------------------------------------------------------------------------- tempo and meter


def local_tempo(grid: BeatGrid) -> np.ndarray:
    """Tempo of every annotated beat interval in bpm (``60 / seconds between beats``)."""
    return 60.0 / np.diff(grid.beat_times)


def tempo_drift(grid: BeatGrid) -> float:
    """How far the tempo wanders within a song, in percent of its median tempo.

    The spread between the 5th and 95th percentile of :func:`local_tempo`, so that
    a single mis-annotated beat does not count as drift.
    """
    bpm = local_tempo(grid)
    low, median, high = np.percentile(bpm, [5, 50, 95])
    return float(100.0 * (high - low) / median)


def beats_per_bar(grid: BeatGrid) -> np.ndarray:
    """Beats in each complete bar (between two consecutive downbeats).

    The bar after the last downbeat is left out: the annotation stops with the
    song, so its length says nothing about the meter.
    """
    return np.diff(grid.downbeats)


def midi_grid_seconds(midi: Any, divisions: int = SIXTEENTHS_PER_BEAT) -> np.ndarray:
    """Times (seconds) of a grid laid by a MIDI file's tempo events, from tick 0.

    ``divisions`` grid points per quarter note (4: 16th notes), through one beat
    past the last note; ``midi`` is a ``pretty_midi.PrettyMIDI``. This is the grid a
    sequencer shows for the file: it starts at time 0 and follows every tempo change.
    """
    change_times, bpm = midi.get_tempo_changes()
    resolution = midi.resolution
    change_ticks = np.array([midi.time_to_tick(t) for t in change_times], dtype=np.float64)
    end_tick = midi.time_to_tick(midi.get_end_time()) + resolution
    ticks = np.arange(0, end_tick + 1, resolution / divisions)
    segment = np.searchsorted(change_ticks, ticks, side="right") - 1
    seconds_per_tick = 60.0 / (bpm[segment] * resolution)
    return change_times[segment] + (ticks - change_ticks[segment]) * seconds_per_tick


def annotated_grid_seconds(grid: BeatGrid, divisions: int = SIXTEENTHS_PER_BEAT) -> np.ndarray:
    """Times (seconds) of ``divisions`` grid points per annotated beat, one bar beyond each end."""
    step = grid.steps_per_beat // divisions
    margin = 4 * grid.steps_per_beat
    return grid.to_seconds(np.arange(-margin, grid.num_steps + margin + 1, step))


def distance_to_grid(times: np.ndarray, grid_times: np.ndarray) -> np.ndarray:
    """Seconds from each time to the nearest point of a sorted grid."""
    times = np.asarray(times, dtype=np.float64)
    grid_times = np.asarray(grid_times, dtype=np.float64)
    if len(grid_times) == 0:
        return np.full(times.shape, np.inf)
    right = np.clip(np.searchsorted(grid_times, times), 0, len(grid_times) - 1)
    left = np.clip(right - 1, 0, len(grid_times) - 1)
    return np.minimum(np.abs(times - grid_times[left]), np.abs(times - grid_times[right]))


# --------------------------------------------------------------------------- where the bars are


def positions_in_bars(
    times: Iterable[int],
    bar_starts: Sequence[int],
    beats: int = 4,
    steps_per_beat: int = STEPS_PER_BEAT,
) -> np.ndarray:
    """Position (steps from the bar start) of each time that falls in a bar of ``beats`` beats.

    Times in grid steps; only complete bars of exactly ``beats`` beats count (bar
    lengths from consecutive ``bar_starts``), so every position lies in
    ``0 .. beats * steps_per_beat - 1``.
    """
    starts = np.asarray(bar_starts, dtype=np.int64)
    times = np.asarray(list(times), dtype=np.int64)
    if len(starts) < 2 or len(times) == 0:
        return np.zeros(0, dtype=np.int64)
    bar = np.searchsorted(starts, times, side="right") - 1
    inside = (bar >= 0) & (bar < len(starts) - 1)
    bar, times = bar[inside], times[inside]
    regular = (starts[bar + 1] - starts[bar]) == beats * steps_per_beat
    return times[regular] - starts[bar[regular]]


def onset_alignment(
    notes: Sequence[Note],
    bar_starts: Sequence[int],
    steps_per_beat: int = STEPS_PER_BEAT,
    near_steps: int = 1,
) -> dict[str, float]:
    """How onsets sit against beats and bar lines (grid steps).

    ``on_beat_share``: onsets exactly on a beat; ``near_bar_line_share``: onsets
    within ``near_steps`` of a bar start; ``bars_struck_share``: bars (all but the
    last) with an onset within ``near_steps`` of their bar line, and
    ``bars_struck_shifted_share`` the same one beat later, for comparison: bar lines
    that sit where the music's bars are get struck more often than the beat after.
    """
    onsets = np.array(sorted({n.start for n in notes}), dtype=np.int64)
    starts = np.asarray(bar_starts, dtype=np.int64)
    if len(onsets) == 0 or len(starts) < 2:
        return dict(on_beat_share=0.0, near_bar_line_share=0.0, bars_struck_share=0.0,
                    bars_struck_shifted_share=0.0)
    all_onsets = np.array([n.start for n in notes], dtype=np.int64)

    def struck(points: np.ndarray) -> float:
        return float(np.mean(distance_to_grid(points, onsets) <= near_steps))

    return dict(
        on_beat_share=float(np.mean(all_onsets % steps_per_beat == 0)),
        near_bar_line_share=float(np.mean(distance_to_grid(all_onsets, starts) <= near_steps)),
        bars_struck_share=struck(starts[:-1]),
        bars_struck_shifted_share=struck(starts[:-1] + steps_per_beat),
    )


# --------------------------------------------------------------------------- chords and keys


def chord_quality(label: str) -> str:
    """The quality of a chord label: ``"A:min7" -> "min7"``, ``"C:maj/3" -> "maj"``, ``"N" -> "N"``.

    Inversions (``/3``) and added or omitted degrees (``(b7)``) are dropped.
    """
    if ":" not in label:
        return label
    return label.split(":", 1)[1].split("/", 1)[0].split("(", 1)[0] or "maj"


"""Key tonics in chromatic order, spelled as POP909's ``key_audio.txt`` spells them."""


_ENHARMONIC = dict(zip("C# D# F# G# A# Cb Fb E# B#".split(), "Db Eb Gb Ab Bb B E F C".split()))
"""Sharp (and rare) spellings -> the flat spellings of :data:`PITCH_NAMES`."""


def key_counts(keys: Iterable[str]) -> dict[str, dict[str, int]]:
    """Key labels (``"Gb:maj"``) -> ``{"major": {tonic: songs}, "minor": {...}}``, tonics in
    chromatic order (sharps respelled as flats); labels without a major/minor mode are left out."""
    counts = {"major": dict.fromkeys(PITCH_NAMES, 0), "minor": dict.fromkeys(PITCH_NAMES, 0)}
    for label in keys:
        tonic, _, mode = label.partition(":")
        tonic = _ENHARMONIC.get(tonic, tonic)
        name = {"maj": "major", "min": "minor"}.get(mode)
        if name and tonic in counts[name]:
            counts[name][tonic] += 1
    return counts


def span_beats(spans: Iterable[Span], steps_per_beat: int = STEPS_PER_BEAT) -> Counter:
    """Total length in beats of each label (a chord quality when mapped first)."""
    total: Counter = Counter()
    for span in spans:
        total[span.label] += (span.end - span.start) / steps_per_beat
    return total


def shares(
    counts: Mapping[Any, float], top: int | None = None, other: str = "other"
) -> dict[Any, float]:
    """Counts -> fractions of their total, largest first; past ``top`` summed as ``other``."""
    total = float(sum(counts.values())) or 1.0
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    result = {key: value / total for key, value in ordered[:top] if value}
    rest = sum(value for _, value in ordered[top:]) if top is not None else 0
    if rest:
        result[other] = rest / total
    return result


def sum_counts(rows: Iterable[Mapping[Any, float]]) -> Counter:
    """Add up per-song count mappings (e.g. a DataFrame column of dicts)."""
    total: Counter = Counter()
    for row in rows:
        total.update(row)
    return total


# --------------------------------------------------------------------------- per song


def _track_onsets(midi: Any, names: Sequence[str]) -> np.ndarray:
    """Onset times (seconds) of every note in the named tracks of a ``pretty_midi`` file."""
    tracks = [track for track in midi.instruments if track.name.strip().upper() in names]
    return np.array([note.start for track in tracks for note in track.notes])


def _tempo_and_meter(grid: BeatGrid, midi: Any) -> dict[str, Any]:
    """Annotated tempo and bar lengths beside the MIDI file's tempo events and time signatures."""
    bars = beats_per_bar(grid)
    signatures = [f"{t.numerator}/{t.denominator}" for t in midi.time_signature_changes]
    return {
        "beats": len(grid.beat_times),
        "duration_seconds": float(grid.beat_times[-1] - grid.beat_times[0]),
        "first_beat_seconds": float(grid.beat_times[0]),
        "tempo_bpm": float(np.median(local_tempo(grid))),
        "tempo_drift_percent": tempo_drift(grid),
        "midi_tempo_events": len(midi.get_tempo_changes()[0]),
        "midi_time_signature": signatures[0] if signatures else "none",
        "midi_time_signatures": len(signatures),
        "four_beat_bars": int(np.sum(bars == 4)),
        "irregular_bars": int(np.sum(bars != 4)),
        "beats_per_bar": dict(Counter(int(b) for b in bars)),
    }


def _grid_check(
    grid: BeatGrid, midi: Any, tolerance: float = GRID_TOLERANCE_SECONDS
) -> dict[str, int]:
    """Melody and accompaniment onsets within ``tolerance`` seconds of three 16th-note grids.

    The annotated beats; the MIDI tempo map from time 0; and the MIDI tempo map moved
    to the first annotated beat, which tells a wrong tempo from a wrong start.
    """
    onsets = _track_onsets(midi, ("MELODY", "PIANO"))
    midi_grid = midi_grid_seconds(midi)
    grids = {
        "annotated_grid": annotated_grid_seconds(grid),
        "midi_grid": midi_grid,
        "shifted_midi_grid": midi_grid + grid.beat_times[0],
    }
    counts = {
        f"onsets_on_{name}": int(np.sum(distance_to_grid(onsets, times) <= tolerance))
        for name, times in grids.items()
    }
    return {"onsets_checked": len(onsets), **counts}


def _bar_profiles(song: data.Song) -> dict[str, Any]:
    """Accompaniment onsets and chord changes against the bar lines (grid steps)."""
    steps_per_beat = song.grid.steps_per_beat
    bar_starts = [int(b) for b in song.grid.bar_starts]
    chords = song.chords
    changes = [c.start for before, c in zip(chords, chords[1:]) if c.label != before.label]
    onsets = [n.start for n in song.accompaniment]
    alignment = onset_alignment(song.accompaniment, bar_starts, steps_per_beat)
    bar_steps = 4 * steps_per_beat
    return {
        **{f"accompaniment_{key}": value for key, value in alignment.items()},
        "accompaniment_bar_profile": np.bincount(
            positions_in_bars(onsets, bar_starts, 4, steps_per_beat), minlength=bar_steps
        ),
        "chord_change_bar_profile": np.bincount(
            positions_in_bars(changes, bar_starts, 4, steps_per_beat), minlength=bar_steps
        ),
    }


def _pitch_statistics(notes: Sequence[Note], part: str) -> dict[str, Any]:
    """Lowest, highest and median MIDI pitch of a part, and its 128 pitch counts."""
    pitches = np.array([n.pitch for n in notes], dtype=np.int64)
    return {
        f"{part}_lowest": int(pitches.min()) if len(pitches) else -1,
        f"{part}_highest": int(pitches.max()) if len(pitches) else -1,
        f"{part}_median_pitch": float(np.median(pitches)) if len(pitches) else float("nan"),
        f"{part}_pitch_counts": np.bincount(pitches, minlength=128),
    }


def song_statistics(folder: str | Path) -> dict[str, Any]:
    """One row of statistics for a POP909 song folder (see the module docstring for units).

    Scalars describe tempo, meter, notes, pitch ranges, chords, key and grids;
    ``beats_per_bar``, ``chord_beats`` (quality -> beats), ``*_pitch_counts``
    (128 counts) and ``*_bar_profile`` (onsets / chord changes per step of 4-beat
    bars, 32 counts) are meant to be summed over songs.
    """
    folder = Path(folder)
    song = data.load_song(folder)
    midi = data.read_midi(folder / f"{folder.name}.mid")
    qualities = (span._replace(label=chord_quality(span.label)) for span in song.chords)
    return {
        "song_id": song.song_id,
        "bars": song.num_bars,
        **_tempo_and_meter(song.grid, midi),
        "tracks": ",".join(t.name.strip() for t in midi.instruments),
        "melody_notes": len(song.melody),
        "accompaniment_notes": len(song.accompaniment),
        "chords": len(song.chords),
        "chord_beats": dict(span_beats(qualities, song.grid.steps_per_beat)),
        "key": song.key or "none",
        "key_changes": max(len(song.keys) - 1, 0),
        **_grid_check(song.grid, midi),
        **_bar_profiles(song),
        **_pitch_statistics(song.melody, "melody"),
        **_pitch_statistics(song.accompaniment, "accompaniment"),
    }


def map_songs(
    function: Callable[[Path], Any],
    ids: Sequence[str],
    root: Path | None = None,
    workers: int | None = None,
) -> list[Any]:
    """``function(song_folder)`` for every song id, in worker processes, in id order."""
    root = Path(root) if root else data.find_pop909_dir()
    folders = [root / song_id for song_id in ids]
    workers = min(workers or os.cpu_count() or 1, max(len(folders), 1))
    if workers <= 1:
        return [function(folder) for folder in folders]
    with worker_processes(workers) as pool:
        return list(pool.map(function, folders, chunksize=8))


def collect_song_statistics(
    ids: Sequence[str], root: Path | None = None, workers: int | None = None
) -> pd.DataFrame:
    """:func:`song_statistics` of every song as a pandas DataFrame indexed by song id."""
    rows = map_songs(song_statistics, ids, root, workers)
    return pd.DataFrame(rows).set_index("song_id")


# --------------------------------------------------------------------------- token lengths


def fits(lengths: np.ndarray, limit: int, extra: int = 0) -> float:
    """Share of sequences whose length plus ``extra`` tokens (START or END) is at most ``limit``."""
    lengths = np.asarray(lengths)
    return float(np.mean(lengths + extra <= limit)) if len(lengths) else 0.0


def token_length_table(
    prepared: Mapping[int, str | Path], limits: Sequence[int] = (512, 1024)
) -> pd.DataFrame:
    """One row per segment length (bars): segments, token-length percentiles, share that fits.

    ``prepared`` maps bars per segment to a folder written by
    :func:`pianoacc_utils.prepare.prepare`; all splits count. An accompaniment fits
    ``limit`` when its tokens plus one (START for the decoder input, END for the
    target) do; a melody (encoder input, no extra token) when its tokens do.
    """
    rows = []
    for bars, folder in sorted(prepared.items()):
        splits = [load_split(folder, split) for split in SPLITS]
        row: dict[str, Any] = {"bars": bars, "segments": sum(len(s) for s in splits)}
        for part, extra in (("melody", 0), ("accompaniment", 1)):
            lengths = np.concatenate([s.lengths(part) for s in splits])
            row[f"{part}_median"] = float(np.median(lengths))
            row[f"{part}_p95"] = float(np.percentile(lengths, 95))
            row[f"{part}_max"] = int(lengths.max())
            for limit in limits:
                row[f"{part}_fits_{limit}"] = fits(lengths, limit, extra)
        rows.append(row)
    return pd.DataFrame(rows).set_index("bars")


# --------------------------------------------------------------------------- tokenization check


def binned_velocities(notes: Iterable[Note]) -> list[Note]:
    """Notes with each velocity moved to the centre of its tokenizer bin (what decoding returns)."""

    def centre(velocity: int) -> int:
        return EventTokenizer.bin_velocity(EventTokenizer.velocity_bin(velocity))

    return [n._replace(velocity=centre(n.velocity)) for n in notes]


def round_trip_exact(notes: Sequence[Note], tokenizer: Any) -> bool:
    """Whether ``decode(encode(notes))`` gives the notes back (velocities to their bin centres)."""
    return tokenizer.decode(tokenizer.encode(notes)) == binned_velocities(notes)


@dataclass
class TokenizationReport:
    """Result of :func:`check_tokenization` over a set of songs.

    ``exact_segments`` counts segments whose melody and accompaniment both survive
    encode -> decode; ``velocity_counts`` (128) and ``onset_step_counts`` (onsets by
    step within the beat, ``steps_per_beat`` entries) describe the notes checked.
    """

    songs: int = 0
    segments: int = 0
    exact_segments: int = 0
    notes: int = 0
    velocity_counts: np.ndarray = field(default_factory=lambda: np.zeros(128, dtype=np.int64))
    onset_step_counts: np.ndarray = field(
        default_factory=lambda: np.zeros(STEPS_PER_BEAT, dtype=np.int64)
    )
    failures: list[tuple[str, int]] = field(default_factory=list)

    @property
    def exact_share(self) -> float:
        return self.exact_segments / self.segments if self.segments else 0.0


def _tokenization_of_song(folder: Path, bars: int) -> TokenizationReport:
    """Worker: the round-trip check on one song's segments."""

    tokenizer = EventTokenizer()
    report = TokenizationReport(songs=1)
    for seg in data.segment(data.load_song(folder), bars=bars):
        notes = seg.melody + seg.accompaniment
        report.segments += 1
        parts = (seg.melody, seg.accompaniment)
        if all(round_trip_exact(notes, tokenizer) for notes in parts):
            report.exact_segments += 1
        else:
            report.failures.append((seg.song_id, seg.first_bar))
        report.notes += len(notes)
        report.velocity_counts += np.bincount([n.velocity for n in notes], minlength=128)[:128]
        report.onset_step_counts += np.bincount(
            [n.start % STEPS_PER_BEAT for n in notes], minlength=STEPS_PER_BEAT
        )
    return report


def check_tokenization(
    ids: Sequence[str], root: Path | None = None, bars: int = 32, workers: int | None = None
) -> TokenizationReport:
    """Cut every song into ``bars``-bar segments and check the tokenizer's round trip on each.

    ``failures`` lists (song id, first bar) of every segment that did not come back.
    """
    total = TokenizationReport()
    for part in map_songs(partial(_tokenization_of_song, bars=bars), ids, root, workers):
        total.songs += part.songs
        total.segments += part.segments
        total.exact_segments += part.exact_segments
        total.notes += part.notes
        total.velocity_counts += part.velocity_counts
        total.onset_step_counts += part.onset_step_counts
        total.failures += part.failures
    return total
