"""Folk-tune melodies to try the models on: MIDI files written from the music21 corpus.

POP909 is Chinese pop, nearly all in 4/4; these tunes (Irish, German and Han
Chinese folk songs, jigs, reels, hornpipes) bring what it lacks: 3/4, 6/8, 9/8,
2/2, pickups, tempo changes and a melody of more than 100 bars. :data:`FOLK_TUNES`
lists them; :func:`folk_melodies` writes a reproducible set (one MELODY track per
file, read back with :func:`~pianoacc_utils.data.melody_midi.load_melody`) and
:func:`example_melody` the single tune of :data:`EXAMPLE_TUNE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
import math
import numpy as np
import re
import unicodedata
import warnings
from pianoacc_utils.common import PianoaccError, write_atomic
from pianoacc_utils.data.melody_midi import MELODY_TRACK_NAME


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
