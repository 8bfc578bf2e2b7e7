"""POP909 songs on their beat grid, cut into segments and split by song.

POP909 (909 pop songs arranged for piano, MIT licence) is found or downloaded
(:func:`find_pop909_dir`), and each song is read from its MIDI file and its
annotations (:func:`load_song`): MELODY and PIANO tracks quantized to the grid of
``beat_midi.txt`` (8 steps per beat), bars from its downbeats, chords and keys as
spans in steps. :func:`segment` cuts a song into windows of whole bars,
:func:`transpose` shifts one, and :func:`split_songs` fixes which songs are for
training, validation and test. Tokenizing segments is :mod:`pianoacc_utils.prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from pathlib import Path
from typing import Sequence
import hashlib
import numpy as np
import os
import random
import shutil
import tempfile
import urllib.request
import zipfile
from pianoacc_utils.common import PianoaccError, project_root
from pianoacc_utils.data.midi_file import read_midi
from pianoacc_utils.data.notes import BeatGrid, Note, PIANO_RANGE, Span, normalize_notes, notes_in


POP909_URL = "https://github.com/music-x-lab/POP909-Dataset/archive/refs/heads/master.zip"
"""Upstream archive of the POP909-Dataset repository (MIT licence)."""


POP909_SHA256: str | None = None
"""Expected SHA-256 of :data:`POP909_URL`; ``None`` records the digest on first download
instead of checking it (a branch archive can change upstream)."""


NUM_SONGS = 909
"""Songs in POP909 (folders ``001`` to ``909``)."""

SPLIT_SEED = 909
"""Seed of the shuffle in :func:`split_songs`: fixed, so every run sees the same split."""

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
"""Shares of the songs in ``train``, ``validation`` and ``test``."""

PINNED_TEST_SONGS = ("186",)
"""Songs forced into the test split, so that the showcase song (186) is never trained on."""


@dataclass
class Song:
    """One song on its grid: melody and accompaniment notes, chords and keys in steps."""

    song_id: str
    grid: BeatGrid
    melody: list[Note]
    accompaniment: list[Note]
    chords: list[Span] = field(default_factory=list)
    keys: list[Span] = field(default_factory=list)
    bridge: list[Note] | None = None

    @property
    def key(self) -> str | None:
        """The key that lasts longest (``"Gb:maj"``), or ``None`` when unannotated."""
        if not self.keys:
            return None
        return max(self.keys, key=lambda span: span.end - span.start).label

    @property
    def num_bars(self) -> int:
        return len(self.grid.downbeats)


@dataclass
class Segment:
    """A window of whole bars cut from a song; every time is in steps from its start.

    ``bar_starts`` are the steps (relative) where the segment's bars begin, so bars
    of irregular length and meters other than 4/4 are represented exactly.
    """

    song_id: str
    first_bar: int
    num_steps: int
    melody: list[Note]
    accompaniment: list[Note]
    chords: list[Span]
    bar_starts: list[int]
    key: str | None = None
    transpose: int = 0

    @property
    def num_bars(self) -> int:
        return len(self.bar_starts)


# --------------------------------------------------------------------------- finding POP909


def find_pop909_dir(download: bool = True) -> Path:
    """Folder holding the POP909 song folders ``001/`` ... ``909/``.

    Looks at ``POP909_DIR``, then ``data/POP909`` in the checkout, then downloads
    the upstream archive there (or to ``~/.cache/pianoacc/POP909`` outside a checkout).
    """
    env = os.environ.get("POP909_DIR")
    if env:
        path = Path(env).expanduser()
        if not (path / "001").is_dir():
            raise PianoaccError(f"POP909_DIR={env}: no song folder 001/ there")
        return path
    root = project_root()
    local = (root / "data" / "POP909") if root else Path.home() / ".cache" / "pianoacc" / "POP909"
    if (local / "001").is_dir():
        return local
    if not download:
        raise PianoaccError(f"POP909 not found: set POP909_DIR or put the dataset in {local}")
    return download_pop909(local)


def download_pop909(dest: Path, url: str = POP909_URL, sha256: str | None = POP909_SHA256) -> Path:
    """Download the upstream POP909 archive and extract its ``POP909/`` folder to ``dest``.

    The per-song ``versions/`` folders (other arrangements of the same song) are
    left out: the project uses each song's main arrangement only.

    Shows a progress bar, checks the SHA-256 when one is given (and writes the digest
    it saw to ``dest/ARCHIVE_SHA256``), and extracts through a temporary folder so that
    an interrupted download never leaves a half-extracted dataset.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        archive = Path(tmp) / "pop909.zip"
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc="POP909") as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except OSError as error:
            raise PianoaccError(
                f"could not download POP909 from {url} ({error}); are you offline? "
                "Set POP909_DIR to a local copy instead."
            ) from error
        seen = digest.hexdigest()
        if sha256 and seen != sha256:
            raise PianoaccError(f"{url}: checksum mismatch (expected {sha256}, got {seen})")
        try:
            with zipfile.ZipFile(archive) as bundle:
                members = [
                    m
                    for m in bundle.namelist()
                    if "/POP909/" in f"/{m}" and "versions" not in Path(m).parts
                ]
                if not members:
                    raise PianoaccError(f"{url}: the archive holds no POP909/ folder")
                bundle.extractall(tmp, members=members)
        except zipfile.BadZipFile as error:
            raise PianoaccError(f"{url}: not a valid zip archive ({error})") from error
        extracted = next(Path(tmp).rglob("POP909"))
        (extracted / "ARCHIVE_SHA256").write_text(seen + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(extracted), dest)
    return dest


def song_ids(root: Path | None = None) -> list[str]:
    """All song ids present (``"001"`` ...), sorted."""
    root = root or find_pop909_dir()
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.isdigit())


# --------------------------------------------------------------------------- loading


def _read_table(path: Path, columns: int) -> list[list[str]]:
    """Whitespace-separated rows of a POP909 annotation file, checked for width."""
    if not path.is_file():
        raise PianoaccError(f"{path}: file missing")
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    for number, row in enumerate(rows, 1):
        if len(row) < columns:
            raise PianoaccError(f"{path}:{number}: expected {columns} columns, got {len(row)}")
    return rows


def read_beats(path: Path) -> BeatGrid:
    """``beat_midi.txt`` -> grid. Columns: time (s), a flag on every other beat, downbeat flag."""
    rows = _read_table(path, 3)
    try:
        times = np.array([float(row[0]) for row in rows])
        downbeat_flags = np.array([float(row[2]) for row in rows])
    except ValueError as error:
        raise PianoaccError(f"{path}: {error}") from error
    try:
        return BeatGrid(times, np.flatnonzero(downbeat_flags > 0.5))
    except PianoaccError as error:
        raise PianoaccError(f"{path}: {error}") from error


def read_spans(path: Path, grid: BeatGrid) -> list[Span]:
    """``chord_midi.txt`` / ``key_audio.txt`` -> spans in grid steps (empty spans dropped)."""
    spans = []
    for number, row in enumerate(_read_table(path, 3), 1):
        try:
            start, end = float(row[0]), float(row[1])
        except ValueError as error:
            raise PianoaccError(f"{path}:{number}: {error}") from error
        s, e = (int(v) for v in grid.to_steps(np.array([start, end])))
        if e > s:
            spans.append(Span(s, e, row[2]))
    return spans


def quantize_notes(notes: Sequence, grid: BeatGrid) -> list[Note]:
    """pretty_midi notes (seconds) -> grid notes, via :func:`normalize_notes`.

    Notes shorter than one step keep one step; notes ending before the grid's
    first step are dropped, notes starting before it are clipped to step 0.
    """
    if not notes:
        return []
    starts = grid.to_steps(np.array([n.start for n in notes]))
    ends = grid.to_steps(np.array([n.end for n in notes]))
    quantized = [
        Note(max(int(s), 0), int(e), int(n.pitch), int(n.velocity))
        for s, e, n in zip(starts, ends, notes)
        if e > 0
    ]
    return normalize_notes(quantized)


def _instrument(midi, name: str, path: Path):
    for instrument in midi.instruments:
        if instrument.name.strip().upper() == name:
            return instrument
    raise PianoaccError(f"{path}: no track named {name}")


def load_song(song: str | int | Path, *, include_bridge: bool = False, root: Path | None = None) -> Song:
    """Load one POP909 song (id like ``"001"``/``1`` or its folder) onto its beat grid."""
    if isinstance(song, Path) or (isinstance(song, str) and os.sep in song):
        folder = Path(song)
    else:
        folder = (root or find_pop909_dir()) / f"{int(song):03d}"
    song_id = folder.name
    midi_path = folder / f"{song_id}.mid"
    midi = read_midi(midi_path)
    grid = read_beats(folder / "beat_midi.txt")
    keys_path = folder / "key_audio.txt"
    return Song(
        song_id=song_id,
        grid=grid,
        melody=quantize_notes(_instrument(midi, "MELODY", midi_path).notes, grid),
        accompaniment=quantize_notes(_instrument(midi, "PIANO", midi_path).notes, grid),
        chords=read_spans(folder / "chord_midi.txt", grid),
        keys=read_spans(keys_path, grid) if keys_path.is_file() else [],
        bridge=(
            quantize_notes(_instrument(midi, "BRIDGE", midi_path).notes, grid)
            if include_bridge
            else None
        ),
    )


def _window_spans(spans: Sequence[Span], start: int, end: int) -> list[Span]:
    return [
        Span(max(s.start, start) - start, min(s.end, end) - start, s.label)
        for s in spans
        if s.end > start and s.start < end
    ]


def segment(song: Song, bars: int = 32, hop_bars: int | None = None, min_bars: int = 4) -> list[Segment]:
    """Cut a song into windows of ``bars`` bars starting on downbeats.

    Windows advance by ``hop_bars`` (default: ``bars``, no overlap). The song's
    last window may be shorter; it is kept when it has at least ``min_bars`` bars.
    Windows with no melody note are skipped (nothing to accompany).
    """
    if bars < 1:
        raise PianoaccError(f"bars must be positive, got {bars}")
    hop = hop_bars or bars
    bar_starts = [int(s) for s in song.grid.bar_starts]
    last_note_end = max((n.end for n in song.melody + song.accompaniment), default=0)
    bounds = bar_starts + [max(last_note_end, bar_starts[-1] + 1)]
    segments = []
    for first in range(0, len(bar_starts), hop):
        last = min(first + bars, len(bar_starts))
        if last - first < min(bars, min_bars):
            break
        start, end = bounds[first], bounds[last]
        melody = notes_in(song.melody, start, end)
        if not melody:
            continue
        segments.append(
            Segment(
                song_id=song.song_id,
                first_bar=first,
                num_steps=end - start,
                melody=melody,
                accompaniment=notes_in(song.accompaniment, start, end),
                chords=_window_spans(song.chords, start, end),
                bar_starts=[b - start for b in bar_starts[first:last]],
                key=song.key,
            )
        )
        if last == len(bar_starts):
            break
    return segments


def transpose(seg: Segment, semitones: int, pitch_range: tuple[int, int] = PIANO_RANGE) -> Segment | None:
    """Melody and accompaniment moved together by ``semitones``; ``None`` if a note leaves the range.

    Chord and key labels are left as annotated (their roots are not renamed), the
    ``transpose`` field records the shift so that harmony metrics can undo it.
    """
    if semitones == 0:
        return seg
    low, high = pitch_range
    pitches = [n.pitch + semitones for n in seg.melody + seg.accompaniment]
    if pitches and (min(pitches) < low or max(pitches) > high):
        return None

    def moved(notes: list[Note]) -> list[Note]:
        return [n._replace(pitch=n.pitch + semitones) for n in notes]

    return replace(
        seg,
        melody=moved(seg.melody),
        accompaniment=moved(seg.accompaniment),
        transpose=seg.transpose + semitones,
    )


# --------------------------------------------------------------------------- splits


def split_songs(
    ids: Sequence[str], seed: int = SPLIT_SEED, fractions: tuple[float, float, float] = SPLIT_FRACTIONS
) -> dict[str, list[str]]:
    """Fixed song-level split into ``train``/``validation``/``test`` (no song in two).

    Shuffles the sorted ids with ``random.Random(seed)``, cuts 80/10/10 (for 909
    songs: 727/91/91), then swaps each pinned song (186) into the test split.
    """
    ordered = sorted(ids)
    random.Random(seed).shuffle(ordered)
    n_train = int(round(fractions[0] * len(ordered)))
    n_val = int(round(fractions[1] * len(ordered)))
    splits = {
        "train": ordered[:n_train],
        "validation": ordered[n_train : n_train + n_val],
        "test": ordered[n_train + n_val :],
    }
    for pinned in PINNED_TEST_SONGS:
        for name in ("train", "validation"):
            if pinned in splits[name] and splits["test"]:
                index = splits[name].index(pinned)
                splits[name][index], splits["test"][0] = splits["test"][0], pinned
    return {name: sorted(members) for name, members in splits.items()}
