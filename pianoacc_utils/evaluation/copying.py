"""Does an accompaniment copy the training songs? Windows of bars looked up in the train split.

Every window of 2 and of 4 consecutive bars of every training accompaniment is reduced
to a transposition-invariant *fingerprint* (:func:`window_fingerprint`), and the
fingerprints go into a :class:`CopyIndex`, built once from the songs of the split and
cached under :func:`pianoacc_utils.common.cache_dir`. :func:`copy_metrics` then gives,
for one accompaniment of a segment, the share of its windows found verbatim in the
index and the longest passage (in bars) that it shares with one training song. The
same figures for the pianist's own test accompaniments are the level that plain pop
idioms reach without copying.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from pianoacc_utils import data
from pianoacc_utils.common import PianoaccError, cache_dir, config_hash, worker_processes
from pianoacc_utils.data.notes import Note, note_arrays
from pianoacc_utils.data.pop909 import Segment

COPY_WINDOW_BARS = (2, 4)
"""Window lengths (bars) looked up in the training accompaniments."""

COPY_METRICS: dict[str, str] = {
    "copied_2_bar_share": "share of 2-bar windows",
    "copied_4_bar_share": "share of 4-bar windows",
    "longest_copied_bars": "bars",
}
"""The per-segment figures of :func:`copy_metrics`, with their units."""

_SHIFT_OFFSET = 128
"""Added to a transposition (semitones, -127..127) to store it as a non-negative number."""


@dataclass(frozen=True)
class CopyIndexConfig:
    """Which windows :func:`build_copy_index` indexes: those of ``window_bars`` bars of
    every song of ``split``. ``version`` numbers the fingerprint format (a changed
    format gets a new cache)."""

    split: str = "train"
    window_bars: tuple[int, ...] = COPY_WINDOW_BARS
    version: int = 1


@dataclass
class CopyIndex:
    """Fingerprints of training windows, sorted, with where each comes from.

    Per window length ``k`` (bars), ``fingerprints[k]`` is sorted and ``sources[k]`` has
    one row per fingerprint: (song index into ``songs``, first bar, lowest pitch).
    """

    songs: list[str]
    fingerprints: dict[int, np.ndarray]
    sources: dict[int, np.ndarray]

    def lookup(self, bars: int, fingerprint: int) -> np.ndarray:
        """Rows of ``sources[bars]`` (song, first bar, lowest pitch) with this fingerprint."""
        keys = self.fingerprints[bars]
        first = np.searchsorted(keys, fingerprint, side="left")
        last = np.searchsorted(keys, fingerprint, side="right")
        return self.sources[bars][first:last]


# --------------------------------------------------------------------------- fingerprints


def _fingerprint(
    starts: np.ndarray, ends: np.ndarray, pitches: np.ndarray, start: int, end: int
) -> tuple[int, int] | None:
    """:func:`window_fingerprint` of note columns (steps, steps, MIDI) sorted by start."""
    first, last = np.searchsorted(starts, [start, end], side="left")
    if first == last:
        return None
    onsets, offsets, window_pitches = starts[first:last], ends[first:last], pitches[first:last]
    low = int(window_pitches.min())
    table = np.stack(
        [onsets - start, np.minimum(offsets, end) - onsets, window_pitches - low], axis=1
    )
    table = table[np.lexsort(table.T[::-1])].astype(np.int32)
    digest = hashlib.blake2b(table.tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True), low


def _sorted_columns(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts, ends, pitches, _ = note_arrays(notes)
    order = np.argsort(starts, kind="stable")
    return starts[order], ends[order], pitches[order]


def window_fingerprint(notes: Sequence[Note], start: int, end: int) -> tuple[int, int] | None:
    """(fingerprint, lowest pitch) of the notes that start in ``[start, end)`` (steps).

    The notes become (onset - start, min(end of note, end) - onset, pitch - lowest
    pitch of the window) in steps and semitones, sorted: the same passage anywhere in
    time and in any key gives the same fingerprint (velocities are left out). The
    fingerprint is the first 8 bytes of the BLAKE2b digest of these numbers, as a
    signed 64-bit integer. ``None`` for a window without onsets.
    """
    return _fingerprint(*_sorted_columns(notes), start, end)


def bar_windows(
    notes: Sequence[Note], bounds: Sequence[int], bars: int
) -> list[tuple[int, int, int] | None]:
    """For each window of ``bars`` bars (first bar 0, 1, ...), (first bar, fingerprint,
    lowest pitch) or ``None`` when the window has no onsets. ``bounds`` are the bar
    starts followed by the end of the last bar (steps)."""
    columns = _sorted_columns(notes)
    windows: list[tuple[int, int, int] | None] = []
    for first in range(len(bounds) - bars):
        found = _fingerprint(*columns, int(bounds[first]), int(bounds[first + bars]))
        windows.append(None if found is None else (first, *found))
    return windows


def accompaniment_windows(
    notes: Sequence[Note], bounds: Sequence[int], window_bars: Sequence[int] = COPY_WINDOW_BARS
) -> dict[int, list[tuple[int, int, int]]]:
    """Per window length, the (first bar, fingerprint, lowest pitch) of every window with
    onsets of one accompaniment (:func:`bar_windows`)."""
    return {k: [w for w in bar_windows(notes, bounds, k) if w is not None] for k in window_bars}


def index_windows(
    songs: Sequence[tuple[str, Mapping[int, Sequence[tuple[int, int, int]]]]],
    window_bars: Sequence[int] = COPY_WINDOW_BARS,
) -> CopyIndex:
    """A :class:`CopyIndex` of (song id, :func:`accompaniment_windows`) pairs."""
    fingerprints, sources = {}, {}
    for k in window_bars:
        rows = [
            (fingerprint, index, first, low)
            for index, (_, windows) in enumerate(songs)
            for first, fingerprint, low in windows[k]
        ]
        table = np.array(rows, dtype=np.int64).reshape(-1, 4)
        order = np.argsort(table[:, 0], kind="stable")
        fingerprints[k] = table[order, 0]
        sources[k] = table[order, 1:]
    return CopyIndex([song_id for song_id, _ in songs], fingerprints, sources)


def _song_windows(job: tuple[str, str, tuple[int, ...]]) -> tuple[str, dict | None]:
    """Worker: one song's :func:`accompaniment_windows`, or ``None`` when it cannot be read."""
    song_id, root, lengths = job
    try:
        song = data.load_song(song_id, root=Path(root))
    except PianoaccError:
        return song_id, None
    bounds = [int(b) for b in song.grid.bar_starts] + [int(song.grid.num_steps)]
    return song_id, accompaniment_windows(song.accompaniment, bounds, lengths)


# --------------------------------------------------------------------------- the index


def build_copy_index(
    config: CopyIndexConfig = CopyIndexConfig(), workers: int | None = None
) -> CopyIndex:
    """Fingerprint every window of every song of ``config.split`` (songs in parallel;
    a song that cannot be read is left out)."""
    root = data.find_pop909_dir()
    splits = data.split_songs(data.song_ids(root))
    if config.split not in splits:
        raise PianoaccError(f"unknown split {config.split!r}: expected one of {', '.join(splits)}")
    jobs = [(song_id, str(root), tuple(config.window_bars)) for song_id in splits[config.split]]
    workers = workers or min(len(jobs), os.cpu_count() or 1) or 1
    if workers > 1:
        with worker_processes(workers) as pool:
            results = list(pool.map(_song_windows, jobs, chunksize=8))
    else:
        results = [_song_windows(job) for job in jobs]
    return index_windows([r for r in results if r[1] is not None], config.window_bars)


def copy_index_path(config: CopyIndexConfig = CopyIndexConfig()) -> Path:
    """Cache file of the index of ``config``: ``copying/<config hash>.npz`` in the cache."""
    return cache_dir() / "copying" / f"{config_hash(config)}.npz"


def load_copy_index(
    config: CopyIndexConfig = CopyIndexConfig(), workers: int | None = None
) -> CopyIndex:
    """The index of ``config`` from the cache, built (:func:`build_copy_index`) and
    cached when missing or built from another list of songs than the split's now."""
    path = copy_index_path(config)
    root = data.find_pop909_dir()
    requested = data.split_songs(data.song_ids(root)).get(config.split, [])
    if path.is_file():
        with np.load(path) as stored:
            if [str(s) for s in stored["requested"]] == list(requested):
                songs = [str(s) for s in stored["songs"]]
                return CopyIndex(
                    songs,
                    {k: stored[f"fingerprints_{k}"] for k in config.window_bars},
                    {k: stored[f"sources_{k}"] for k in config.window_bars},
                )
    index = build_copy_index(config, workers)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
    arrays = {f"fingerprints_{k}": v for k, v in index.fingerprints.items()}
    arrays.update({f"sources_{k}": v for k, v in index.sources.items()})
    np.savez(partial, songs=np.array(index.songs), requested=np.array(requested), **arrays)
    os.replace(partial, path)
    return index


# --------------------------------------------------------------------------- one accompaniment


def _longest_shared_run(index: CopyIndex, windows: list[tuple[int, int, int] | None]) -> int:
    """Most consecutive 2-bar windows matched by consecutive windows of one training
    song at one transposition, as bars covered (m windows cover m + 1 bars); 0 if none."""
    best, previous_keys, previous_runs = 0, np.zeros(0, np.int64), np.zeros(0, np.int64)
    for window in windows:
        if window is None:
            previous_keys, previous_runs = np.zeros(0, np.int64), np.zeros(0, np.int64)
            continue
        _, fingerprint, low = window
        rows = index.lookup(2, fingerprint)
        shift = low - rows[:, 2] + _SHIFT_OFFSET
        keys = np.unique((rows[:, 0] << 40) | (rows[:, 1] << 10) | shift)
        runs = np.ones(len(keys), dtype=np.int64)
        if len(previous_keys) and len(keys):
            wanted = keys - (1 << 10)  # the same song and shift, one bar earlier
            where = np.clip(np.searchsorted(previous_keys, wanted), 0, len(previous_keys) - 1)
            chained = previous_keys[where] == wanted
            runs[chained] = previous_runs[where[chained]] + 1
        if len(runs):
            best = max(best, int(runs.max()))
        previous_keys, previous_runs = keys, runs
    return best + 1 if best else 0


def copy_metrics(index: CopyIndex, segment: Segment, notes: Sequence[Note]) -> dict[str, float]:
    """:data:`COPY_METRICS` of one accompaniment of a segment against the index.

    ``copied_k_bar_share``: of the segment's windows of k bars with onsets, the share
    whose fingerprint (:func:`window_fingerprint`) is in the index (NaN without such a
    window). ``longest_copied_bars``: the longest run of bars that matches, window by
    window, consecutive bars of one training song at one transposition
    (:func:`_longest_shared_run`; 0 when no 2-bar window is found).
    """
    missing = [k for k in COPY_WINDOW_BARS if k not in index.fingerprints]
    if missing:
        raise PianoaccError(f"the copy index has no windows of {missing} bars; rebuild it")
    bounds = [int(b) for b in segment.bar_starts] + [int(segment.num_steps)]
    values: dict[str, float] = {}
    windows_2: list[tuple[int, int, int] | None] = []
    for k in COPY_WINDOW_BARS:
        windows = bar_windows(notes, bounds, k)
        if k == 2:
            windows_2 = windows
        found = [len(index.lookup(k, w[1])) > 0 for w in windows if w is not None]
        values[f"copied_{k}_bar_share"] = float(np.mean(found)) if found else math.nan
    values["longest_copied_bars"] = float(_longest_shared_run(index, windows_2))
    return values
