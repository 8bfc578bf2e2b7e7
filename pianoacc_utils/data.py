"""POP909 on a musical grid: find the data, load songs, quantize, cut into segments.

Everything downstream works in *grid steps*: a 32nd note, ``STEPS_PER_BEAT = 8``
steps per quarter-note beat. The grid is laid on the song's own beats (for POP909
the annotated beats of ``beat_midi.txt``, for any other MIDI file its tempo map),
so tempo drift and tempo changes never bend the grid away from the music. Bars
come from downbeats, not from MIDI time signatures (unreliable in POP909).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from pianoacc_utils.common import REBAR_METERS, STEPS_PER_BEAT, PianoaccError, project_root

POP909_URL = "https://github.com/music-x-lab/POP909-Dataset/archive/refs/heads/master.zip"
"""Upstream archive of the POP909-Dataset repository (MIT licence)."""

POP909_SHA256: str | None = None
"""Expected SHA-256 of :data:`POP909_URL`; ``None`` records the digest on first download
instead of checking it (a branch archive can change upstream)."""

NUM_SONGS = 909
SPLIT_SEED = 909
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
PINNED_TEST_SONGS = ("186",)
"""Songs forced into the test split: 186 is the original project's showcase song."""

PIANO_RANGE = (21, 108)
"""Lowest and highest key of an 88-key piano (MIDI pitches); transposition stays inside."""


class Note(NamedTuple):
    """A note on the grid: ``start``/``end`` in grid steps (end exclusive), MIDI pitch and velocity."""

    start: int
    end: int
    pitch: int
    velocity: int


class Span(NamedTuple):
    """A labelled time span in grid steps: a chord (``"C:maj"``) or a key (``"Gb:maj"``)."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class BeatGrid:
    """Quarter-note beat times (seconds) and the beats that start bars.

    Maps seconds to grid steps and back by linear interpolation between beats,
    extrapolating with the first/last beat length outside the annotated range.
    """

    beat_times: np.ndarray
    downbeats: np.ndarray
    steps_per_beat: int = STEPS_PER_BEAT

    def __post_init__(self) -> None:
        beats = np.asarray(self.beat_times, dtype=np.float64)
        if beats.ndim != 1 or len(beats) < 2 or np.any(np.diff(beats) <= 0):
            raise PianoaccError("a beat grid needs at least two strictly increasing beat times")
        downbeats = np.asarray(self.downbeats, dtype=np.int64)
        if len(downbeats) == 0:
            downbeats = np.array([0], dtype=np.int64)
        object.__setattr__(self, "beat_times", beats)
        object.__setattr__(self, "downbeats", np.unique(downbeats))

    def beats_at(self, seconds: np.ndarray | float) -> np.ndarray:
        """Fractional beat index of each time (0.0 = first beat)."""
        beats = self.beat_times
        t = np.asarray(seconds, dtype=np.float64)
        position = np.interp(t, beats, np.arange(len(beats), dtype=np.float64))
        first, last = beats[1] - beats[0], beats[-1] - beats[-2]
        position = np.where(t < beats[0], (t - beats[0]) / first, position)
        return np.where(t > beats[-1], len(beats) - 1 + (t - beats[-1]) / last, position)

    def to_steps(self, seconds: np.ndarray | float) -> np.ndarray:
        """Nearest grid step of each time (may be negative before the first beat)."""
        return np.rint(self.beats_at(seconds) * self.steps_per_beat).astype(np.int64)

    def to_seconds(self, steps: np.ndarray | float) -> np.ndarray:
        """Time in seconds of grid steps (fractional steps allowed)."""
        beats = self.beat_times
        b = np.asarray(steps, dtype=np.float64) / self.steps_per_beat
        seconds = np.interp(b, np.arange(len(beats), dtype=np.float64), beats)
        first, last = beats[1] - beats[0], beats[-1] - beats[-2]
        seconds = np.where(b < 0, beats[0] + b * first, seconds)
        return np.where(b > len(beats) - 1, beats[-1] + (b - len(beats) + 1) * last, seconds)

    @property
    def bar_starts(self) -> np.ndarray:
        """Grid step at which each bar starts (from the downbeats)."""
        return self.downbeats * self.steps_per_beat

    @property
    def num_steps(self) -> int:
        """Steps covered by the grid: through the end of the last beat."""
        return len(self.beat_times) * self.steps_per_beat


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


def normalize_notes(notes: Sequence[Note]) -> list[Note]:
    """Make a note list playable as MIDI and exactly tokenizable.

    Sorted by (start, pitch); every note lasts at least one step; of two notes
    with the same pitch and start the longer is kept; a note still sounding when
    the same pitch strikes again is cut there (MIDI cannot hold one key twice).
    Pitches and velocities are clipped to 0..127 (velocity at least 1).
    """
    by_onset: dict[tuple[int, int], Note] = {}
    for note in notes:
        pitch = min(max(int(note.pitch), 0), 127)
        velocity = min(max(int(note.velocity), 1), 127)
        fixed = Note(int(note.start), max(int(note.end), int(note.start) + 1), pitch, velocity)
        kept = by_onset.get((fixed.start, pitch))
        if kept is None or fixed.end > kept.end:
            by_onset[(fixed.start, pitch)] = fixed
    ordered = sorted(by_onset.values(), key=lambda n: (n.pitch, n.start))
    result = []
    for i, note in enumerate(ordered):
        following = ordered[i + 1] if i + 1 < len(ordered) else None
        if following is not None and following.pitch == note.pitch and following.start < note.end:
            note = note._replace(end=following.start)
        result.append(note)
    result.sort(key=lambda n: (n.start, n.pitch))
    return result


def _instrument(midi, name: str, path: Path):
    for instrument in midi.instruments:
        if instrument.name.strip().upper() == name:
            return instrument
    raise PianoaccError(f"{path}: no track named {name}")


def load_song(song: str | int | Path, *, include_bridge: bool = False, root: Path | None = None) -> Song:
    """Load one POP909 song (id like ``"001"``/``1`` or its folder) onto its beat grid."""
    import pretty_midi

    if isinstance(song, Path) or (isinstance(song, str) and os.sep in song):
        folder = Path(song)
    else:
        folder = (root or find_pop909_dir()) / f"{int(song):03d}"
    song_id = folder.name
    midi_path = folder / f"{song_id}.mid"
    if not midi_path.is_file():
        raise PianoaccError(f"{midi_path}: file missing")
    try:
        midi = pretty_midi.PrettyMIDI(str(midi_path))
    except Exception as error:  # pretty_midi/mido raise many kinds on broken files
        raise PianoaccError(f"{midi_path}: not a readable MIDI file ({error})") from error
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


# --------------------------------------------------------------------------- segments


def _window(notes: Sequence[Note], start: int, end: int) -> list[Note]:
    """Notes starting in [start, end), shifted to start at 0 and cut at the window end."""
    return [
        Note(n.start - start, min(n.end, end) - start, n.pitch, n.velocity)
        for n in notes
        if start <= n.start < end
    ]


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
        melody = _window(song.melody, start, end)
        if not melody:
            continue
        segments.append(
            Segment(
                song_id=song.song_id,
                first_bar=first,
                num_steps=end - start,
                melody=melody,
                accompaniment=_window(song.accompaniment, start, end),
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


def rebar(seg: Segment, meter: str) -> Segment:
    """The segment with its four-beat bars turned into ``meter`` (one of
    :data:`~pianoacc_utils.common.REBAR_METERS`).

    POP909 is nearly all 4/4, so the models met few bars of other lengths; these
    re-barred copies teach them other meters without new data. ``"2/4"`` splits each
    four-beat bar in two (the music is unchanged, only the bar lines move).
    ``"3/4"`` cuts each four-beat bar's last beat out of melody, accompaniment and
    chords: notes starting in it are dropped, notes sounding into it end at the cut,
    notes held across it keep sounding after it, and later times move back one beat
    per cut. Bars of other lengths are left as they are; ``"4/4"`` returns ``seg``.
    """
    if meter not in REBAR_METERS:
        raise PianoaccError(f"meter {meter!r}: expected one of {', '.join(REBAR_METERS)}")
    if meter == "4/4":
        return seg
    bounds = list(seg.bar_starts) + [seg.num_steps]
    four = 4 * STEPS_PER_BEAT
    ends = [b for a, b in itertools.pairwise(bounds) if b - a == four]
    if not ends:
        return seg
    if meter == "2/4":
        halves = [end - four // 2 for end in ends]
        return replace(seg, bar_starts=sorted(set(seg.bar_starts) | set(halves)))
    cut_starts = np.array(ends, dtype=np.int64) - STEPS_PER_BEAT

    def warp(steps: Sequence[int]) -> list[int]:
        """Each step moved back by the cut time before it."""
        at = np.asarray(steps, dtype=np.int64).reshape(-1, 1)
        return (at[:, 0] - np.clip(at - cut_starts, 0, STEPS_PER_BEAT).sum(axis=1)).tolist()

    def notes(items: Sequence[Note]) -> list[Note]:
        starts = np.array([n.start for n in items], dtype=np.int64).reshape(-1, 1)
        in_cut = ((starts >= cut_starts) & (starts < cut_starts + STEPS_PER_BEAT)).any(axis=1)
        kept = [n for n, dropped in zip(items, in_cut) if not dropped]
        moved = zip(kept, warp([n.start for n in kept]), warp([n.end for n in kept]))
        return [n._replace(start=a, end=b) for n, a, b in moved if b > a]

    spans = zip(seg.chords, warp([s.start for s in seg.chords]), warp([s.end for s in seg.chords]))
    return replace(
        seg,
        num_steps=warp([seg.num_steps])[0],
        melody=notes(seg.melody),
        accompaniment=notes(seg.accompaniment),
        chords=[Span(a, b, s.label) for s, a, b in spans if b > a],
        bar_starts=warp(seg.bar_starts),
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


# --------------------------------------------------------------------------- any melody MIDI
#
# ``pianoacc accompany`` takes a melody MIDI file a person has (any meter, tempo
# map, track layout) and writes back the melody plus a PIANO accompaniment. The
# grid then comes from the file itself: quarter-note beats from its tempo map,
# bars from its time signatures (both counted in MIDI ticks, so they are exact).

import copy  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402
from fractions import Fraction  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from pianoacc_utils.common import write_atomic  # noqa: E402

if TYPE_CHECKING:
    import pretty_midi

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
        return (
            f'track {self.track_index} "{name}" '
            f"({len(self.instrument.notes)} notes, {self.num_bars} bars{why})"
        )


def read_midi(path: str | Path):
    """Parse a MIDI file with pretty_midi; every failure becomes a :class:`PianoaccError`.

    Missing paths, folders, empty files, files that are not MIDI and truncated
    files are reported with the file name instead of a library traceback.
    """
    import pretty_midi

    path = Path(path)
    if not path.exists():
        raise PianoaccError(f"{path}: file missing")
    if not path.is_file():
        raise PianoaccError(f"{path}: not a file (a MIDI file was expected)")
    if path.stat().st_size == 0:
        raise PianoaccError(f"{path}: empty file (0 bytes), not a MIDI file")
    try:
        return pretty_midi.PrettyMIDI(str(path))
    except EOFError as error:
        raise PianoaccError(f"{path}: truncated MIDI file (data ends early)") from error
    except Exception as error:  # mido/pretty_midi raise many kinds on broken files
        detail = str(error) or type(error).__name__
        raise PianoaccError(f"{path}: not a readable MIDI file ({detail})") from error


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
    are set back to the rounded values of ``midi``'s own tempo map.
    """
    import mido

    parsed = mido.MidiFile(file=io.BytesIO(data))
    tempo_events = [event for event in parsed.tracks[0] if event.type == "set_tempo"]
    scales = midi._tick_scales  # (tick, seconds per tick) of each tempo
    if len(tempo_events) != len(scales):
        return data
    for event, (_, seconds_per_tick) in zip(tempo_events, scales):
        event.tempo = int(round(seconds_per_tick * midi.resolution * 1e6))
    buffer = io.BytesIO()
    parsed.save(file=buffer)
    return buffer.getvalue()


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


# --------------------------------------------------------------------------- example melodies
#
# Melodies from outside POP909 to try and to evaluate the models on: folk tunes from
# the corpus that ships inside the music21 package (ABC files, so no download),
# written as melody-only MIDI files with music21's MIDI export. music21 writes a
# pickup (anacrusis) at time 0 under the full bar's time signature, which would
# put every bar line a pickup early; the tunes are therefore written with the
# pickup after a rest that completes its bar, so that :func:`load_melody` finds
# every bar line where the meter puts it.

import re  # noqa: E402
import unicodedata  # noqa: E402
import warnings  # noqa: E402


@dataclass(frozen=True)
class FolkTune:
    """One entry of :data:`FOLK_TUNES`: alternative tunes for one role in the set.

    ``sources`` are music21 corpus files (``"ryansMammoth/AcrobatsHornpipe.abc"``),
    with ``#N`` for tune number N of a collection (``"essenFolksong/irl.abc#5"``);
    :func:`folk_melodies` draws ``pieces`` of them (several pieces are played one
    after the other, as a set of reels in a session). ``tempi`` lists
    ``(position, bpm)``: quarter-note beats per minute from ``position`` (a fraction
    of the melody's bars, moved to the nearest bar line) on; the first is at 0.
    Every source has the meter ``meter``; repeats are played as written.
    """

    role: str
    meter: str
    sources: tuple[str, ...]
    tempi: tuple[tuple[float, float], ...]
    pieces: int = 1


FOLK_TUNES: tuple[FolkTune, ...] = (
    FolkTune(
        "Irish air with a pickup, slowing down twice",
        "3/4",
        ("essenFolksong/irl.abc#5", "essenFolksong/irl.abc#3", "essenFolksong/erk5.abc#9"),
        ((0.0, 92.0), (0.5, 80.0), (0.85, 66.0)),
    ),
    FolkTune(
        "jig with an eighth-note pickup",
        "6/8",
        (
            "ryansMammoth/BillyORourkesJig.abc",
            "ryansMammoth/BlivensFavoriteJig.abc",
            "ryansMammoth/BillyTheBarberShavedHisFatherJig.abc",
        ),
        ((0.0, 120.0),),
    ),
    FolkTune(
        "slip jig",
        "9/8",
        (
            "ryansMammoth/AndrewCareysSlipjig.abc",
            "ryansMammoth/DropOfWhiskeySlipjig.abc",
            "ryansMammoth/BarneysGoatJig.abc",
        ),
        ((0.0, 126.0),),
    ),
    FolkTune(
        "Han Chinese folk song",
        "2/4",
        ("essenFolksong/han1.abc#10", "essenFolksong/han1.abc#33", "essenFolksong/han1.abc#3"),
        ((0.0, 84.0),),
    ),
    FolkTune(
        "Irish song with a one-beat pickup",
        "4/4",
        ("essenFolksong/irl.abc#8", "essenFolksong/irl.abc#9", "essenFolksong/irl.abc#11"),
        ((0.0, 96.0),),
    ),
    FolkTune(
        "set of four reels, more than 100 bars, a little faster with every reel",
        "2/2",
        (
            "ryansMammoth/EmigrantsReel.abc",
            "ryansMammoth/AllyCroakersFavoriteReel.abc",
            "ryansMammoth/BanksOfEnvernessReel.abc",
            "ryansMammoth/GreetingToIrelandReel.abc",
            "ryansMammoth/KissTheBrideReel.abc",
            "ryansMammoth/FlowersOfEdinburgReel.abc",
        ),
        ((0.0, 160.0), (0.25, 164.0), (0.5, 168.0), (0.75, 172.0)),
        pieces=4,
    ),
    FolkTune(
        "hornpipe with a one-beat pickup",
        "2/2",
        (
            "ryansMammoth/AcrobatsHornpipe.abc",
            "ryansMammoth/AdmiralsHornpipe.abc",
            "ryansMammoth/AlmacksHornpipe.abc",
        ),
        ((0.0, 144.0),),
    ),
    FolkTune(
        "German lullaby",
        "3/4",
        (
            "essenFolksong/kinder0.abc#15",
            "essenFolksong/kinder0.abc#16",
            "essenFolksong/kinder0.abc#28",
        ),
        ((0.0, 96.0),),
    ),
    FolkTune(
        "German children's song",
        "4/4",
        (
            "essenFolksong/kinder0.abc#9",
            "essenFolksong/kinder0.abc#25",
            "essenFolksong/kinder0.abc#35",
        ),
        ((0.0, 100.0),),
    ),
    FolkTune(
        "German song",
        "6/8",
        ("essenFolksong/kinder0.abc#10", "essenFolksong/kinder0.abc#6", "essenFolksong/irl.abc#12"),
        ((0.0, 112.0),),
    ),
    FolkTune(
        "reel written in 2/4",
        "2/4",
        (
            "ryansMammoth/BlackberryBlossomReel.abc",
            "ryansMammoth/7thRegimentReel.abc",
            "ryansMammoth/AcaciaReel.abc",
        ),
        ((0.0, 104.0),),
    ),
    FolkTune(
        "German song with a pickup",
        "3/4",
        ("essenFolksong/erk5.abc#13", "essenFolksong/erk5.abc#20", "essenFolksong/erk5.abc#15"),
        ((0.0, 100.0),),
    ),
)
"""The folk-tune set of :func:`folk_melodies`, in order. The first six cover the
meters 3/4, 6/8, 9/8, 2/4, 4/4 and 2/2, pickups, tempo changes and (the sixth) a
melody of more than 100 bars; the other six add variety in the same meters."""

EXAMPLE_TUNE = 0
"""Index in :data:`FOLK_TUNES` of :func:`example_melody`'s tune (an air in 3/4 with a
pickup and tempo changes)."""

FOLK_VELOCITY = 90
"""MIDI velocity of every written melody note."""


@dataclass
class _Tune:
    """A parsed tune: title, meter, bar and pickup lengths and notes (quarter notes).

    ``notes`` are ``(start, end, pitch)`` relative to the first full bar's downbeat,
    so pickup notes start before 0.
    """

    title: str
    meter: str
    bar: float
    pickup: float
    notes: list[tuple[float, float, int]]


def _clean_title(title: str) -> str:
    """Tidy an ABC title: drop line-continuation colons and quotes, ``--`` -> ``-``."""
    title = re.sub(r"[:\"]", "", title or "untitled").replace("--", "-")
    return re.sub(r"\s+", " ", title).strip()


def _slug(text: str, limit: int = 40) -> str:
    """A file-name stem in lowercase ASCII: ``"Acrobat's - Hornpipe"`` -> ``acrobats_hornpipe``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower().replace("'", "")).strip("_")
    return words[:limit].rstrip("_") or "tune"


def _parse_tune(source: str) -> _Tune:
    """Read one corpus tune (``file.abc`` or ``file.abc#N``) into quarter-note times.

    Repeats are expanded when music21 can (tunes whose repeats it cannot expand
    are played once through); ties are merged; of a chord (double stop) the top
    note is kept; grace notes are left out.
    """
    from music21 import corpus, meter, stream

    path, _, number = source.partition("#")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = corpus.parse(path, number=int(number) if number else None)
    except Exception as error:  # music21 raises many kinds for missing or broken files
        raise PianoaccError(f"music21 corpus {source}: cannot parse ({error})") from error
    if isinstance(parsed, stream.Opus):
        parsed = parsed.scores[0]
    part = parsed.parts[0] if parsed.hasPartLikeStreams() else parsed
    signature = part.recurse().getElementsByClass(meter.TimeSignature).first()
    measures = list(part.getElementsByClass(stream.Measure))
    if signature is None or not measures:
        raise PianoaccError(f"music21 corpus {source}: no meter or no bars")
    bar = float(signature.barDuration.quarterLength)
    first = float(measures[0].duration.quarterLength)
    pickup = first if 0 < first < bar and len(measures) > 1 else 0.0
    try:
        part = part.expandRepeats()
    except Exception:  # badly formed repeats: play the tune once through
        pass
    notes = []
    for element in part.stripTies().flatten().notes:
        length = float(element.duration.quarterLength)
        if length <= 0 or element.duration.isGrace:
            continue
        start = float(element.offset) - pickup
        notes.append((start, start + length, max(p.midi for p in element.pitches)))
    if not notes:
        raise PianoaccError(f"music21 corpus {source}: no notes")
    title = parsed.metadata.title if parsed.metadata is not None else path
    return _Tune(_clean_title(title), signature.ratioString, bar, pickup, notes)


def _join_tunes(tunes: Sequence[_Tune]) -> tuple[list[tuple[float, float, int]], float]:
    """Place tunes one after the other on whole bars: ``(notes, end)`` in quarter notes.

    Each tune's first downbeat is the first bar line that leaves room for its pickup
    after the previous tune's end, so the first tune's pickup ends a bar of rest.
    """
    bar = tunes[0].bar
    placed: list[tuple[float, float, int]] = []
    end = 0.0
    for tune in tunes:
        downbeat = math.ceil((end + tune.pickup) / bar - 1e-9) * bar
        placed += [(downbeat + s, downbeat + e, p) for s, e, p in tune.notes]
        end = max(e for _, e, _ in placed)
    return placed, end


def _folk_midi_bytes(
    tunes: Sequence[_Tune], tempi: Sequence[tuple[float, float]], track_name: str
) -> bytes:
    """The MIDI file (bytes, music21's export) of tunes played in a row, with tempo marks.

    One track named ``track_name``; the time signature at time 0; each tempo mark at
    the bar line nearest its position (a fraction of the bars).
    """
    from music21 import duration, instrument, meter, midi, note, stream, tempo

    notes, end = _join_tunes(tunes)
    bar = tunes[0].bar
    bars = max(math.ceil(end / bar - 1e-9), 1)
    part = stream.Part()
    lead = instrument.Instrument()
    lead.partName = track_name
    part.insert(0, lead)
    part.insert(0, meter.TimeSignature(tunes[0].meter))
    for position, bpm in tempi:
        mark = tempo.MetronomeMark(number=bpm, referent=duration.Duration(1.0))
        part.insert(round(position * bars) * bar, mark)
    for start, stop, pitch in notes:
        melody_note = note.Note(pitch, quarterLength=stop - start)
        melody_note.volume.velocity = FOLK_VELOCITY
        part.insert(start, melody_note)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return midi.translate.music21ObjectToMidiFile(part).writestr()


def _parse_sources(tune: FolkTune, sources: Sequence[str]) -> list[_Tune]:
    """Parse the drawn sources of a role, checking that each has the role's meter."""
    tunes = [_parse_tune(source) for source in sources]
    for source, parsed in zip(sources, tunes):
        if parsed.meter != tune.meter:
            raise PianoaccError(
                f"music21 corpus {source}: meter {parsed.meter}, expected {tune.meter}"
            )
    return tunes


def _write_folk_tune(tune: FolkTune, tunes: Sequence[_Tune], out_path: Path) -> Path:
    """Write parsed tunes, in a row, as one melody MIDI file at ``out_path``."""
    try:
        write_atomic(out_path, _folk_midi_bytes(tunes, tune.tempi, MELODY_TRACK_NAME))
    except OSError as error:
        reason = error.strerror or error
        raise PianoaccError(f"{out_path}: cannot write the melody ({reason})") from error
    return out_path


def _draw_sources(rng: np.random.Generator, tune: FolkTune) -> list[str]:
    """The ``tune.pieces`` sources drawn for one role (without replacement)."""
    chosen = rng.choice(len(tune.sources), size=tune.pieces, replace=False)
    return [tune.sources[int(i)] for i in chosen]


def folk_melodies(folder: str | Path, count: int = 12, seed: int = 0) -> list[Path]:
    """Write ``count`` folk-tune melodies (MIDI, one MELODY track each) into ``folder``.

    The tunes follow :data:`FOLK_TUNES` in order: for each role ``seed`` draws one of
    its alternative tunes (several for a set), so the same arguments always write
    the same files; the first six cover the meters 3/4, 6/8, 9/8, 2/4, 4/4 and 2/2,
    pickups, tempo changes and (the sixth) a melody of more than 100 bars. Files are named
    ``NN_title.mid`` (``NN`` from 01) and overwritten when present. Needs only the
    music21 package (its corpus ships with it). Returns the paths in order.
    """
    if not 1 <= count <= len(FOLK_TUNES):
        raise PianoaccError(f"folk melodies: count must be 1..{len(FOLK_TUNES)}, got {count}")
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    drawn = [(tune, _draw_sources(rng, tune)) for tune in FOLK_TUNES]
    paths = []
    for index, (tune, sources) in enumerate(drawn[:count]):
        tunes = _parse_sources(tune, sources)
        name = _slug(tunes[0].title) + ("_set" if len(tunes) > 1 else "")
        paths.append(_write_folk_tune(tune, tunes, folder / f"{index + 1:02d}_{name}.mid"))
    return paths


def example_melody(path: str | Path) -> Path:
    """Write the example melody (an Irish air in 3/4 with a pickup and two tempo
    changes, see :data:`EXAMPLE_TUNE`) as a MIDI file at ``path``; returns ``path``."""
    tune = FOLK_TUNES[EXAMPLE_TUNE]
    return _write_folk_tune(tune, _parse_sources(tune, tune.sources[:1]), Path(path))


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
