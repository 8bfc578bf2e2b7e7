"""The listening page: the melody, the pianist and both models side by side, to hear.

``pianoacc report`` writes one static page, as the original project published its
results: for a few POP909 test songs (an 8-bar excerpt each) the melody alone, the
pianist's accompaniment, and FNet and the Transformer, each given the melody alone
(chords chosen by :func:`~pianoacc_utils.harmony.learned_chords`, as ``pianoacc
accompany`` does) and given a lead sheet (the song's annotated chords); for a few
held-out folk tunes, which have neither a pianist nor a lead sheet, the melody and both
models from the melody alone. Every clip is an MP3 player beside its piano roll and a
MIDI file; the page also carries the results table and the shipped models' learning
curves. It opens from ``file://`` with no server: ``index.html`` links ``audio/``,
``rolls/`` and ``midi/`` beside it, and ``report.json`` records the configuration.
The committed copy is ``docs/listen`` (``pianoacc report --out docs/listen``); its
screenshot ``docs/listening_page.png`` is Chromium's (``chromium --headless
--window-size=1300,1150 --screenshot=docs/listening_page.png docs/listen/index.html``).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from pianoacc_utils import data, generation, harmony, training
from pianoacc_utils.audio import SAMPLE_RATE, audio_clip, mp3_bytes
from pianoacc_utils.common import (
    PianoaccError,
    processor_name,
    project_root,
    write_atomic,
    write_json,
)
from pianoacc_utils.course import plotting
from pianoacc_utils.course.setup import quiet_retracing
from pianoacc_utils.data.notes import Note
from pianoacc_utils.defaults import STEPS_PER_BEAT
from pianoacc_utils.evaluation.tables import table_rows
from pianoacc_utils.models import KIND_NAMES

REPORT_SONGS = ("186", "002", "004", "010")
"""Test-split songs on the page: the original's showcase song 186, then the first three
test songs by number (none of them chosen for how the models play them)."""

LEAD_SHEET, MELODY_ALONE = "annotated", "estimated"
"""Chord sources of :func:`~pianoacc_utils.generation.accompany_segment` the page plays."""

TABLE_COLUMNS = (
    ("pianist", "evaluation", "ground_truth"),
    ("FNet, lead sheet", "evaluation", "fnet"),
    ("Transformer, lead sheet", "evaluation", "transformer"),
    ("FNet, melody alone", "evaluation_estimated_chords", "fnet"),
    ("Transformer, melody alone", "evaluation_estimated_chords", "transformer"),
)
"""The results table's columns (:mod:`pianoacc_utils.evaluation.tables`)."""

TABLE_ROWS = (
    ("bars off the beat by ⅛ beat or more", "bars_off_share"),
    ("chord-tone ratio (annotated chords)", "chord_tone_ratio"),
    ("consonance with the melody", "melody_consonance"),
    ("key agreement (mean)", "key_agreement"),
    ("rhythm distance to the pianist's (0..1)", "rhythm_distance"),
    ("notes per bar", "notes_per_bar"),
    ("velocity standard deviation", "velocity_std"),
    ("2-bar windows found in train (copy check)", "copied_2_bar_share"),
)

ROLL_SIZE = (6.0, 1.9)
"""Size of a clip's piano roll (inches); saved at :data:`ROLL_DPI`."""

ROLL_DPI = 80


@dataclass(frozen=True)
class ReportConfig:
    """What the page holds: ``songs`` (POP909 test songs), the ``bars`` of each excerpt
    (the middle ``bars``-bar segment of the song; the first ``bars`` bars of a folk
    tune), ``folk_tunes`` (how many of :func:`~pianoacc_utils.data.folk_melodies`),
    the sampling ``seed`` (default sampling otherwise), the ``checkpoints`` and the
    audio's ``sample_rate`` (Hz)."""

    songs: tuple[str, ...] = REPORT_SONGS
    bars: int = 8
    folk_tunes: int = 2
    seed: int = 0
    checkpoints: tuple[str, ...] = ("fnet", "transformer")
    sample_rate: int = SAMPLE_RATE


@dataclass
class Clip:
    """One player: a ``label`` (``"FNet, lead sheet"``), the MIDI file it plays, the notes
    its roll draws (grid steps), the bar lines and the ``seconds`` it lasts."""

    label: str
    midi: Path
    melody: list[Note]
    accompaniment: list[Note]
    bar_starts: list[int]
    seconds: float
    first_bar: int = 0


@dataclass
class Piece:
    """A song excerpt or a folk tune: its ``key`` (``"song186"``: its files' names begin
    with it), ``title``, one line about it and its clips."""

    key: str
    title: str
    about: str
    clips: list[Clip] = field(default_factory=list)


def _stem(text: str) -> str:
    """``"FNet, lead sheet"`` -> ``"fnet_lead_sheet"``."""
    kept = "".join(c if c.isalnum() else " " for c in text.lower())
    return "_".join(kept.split())


def middle_segment(song: data.Song, bars: int) -> data.Segment:
    """The ``bars``-bar segment in the middle of a song: away from its intro and ending,
    and chosen by position alone, not by how the models play it."""
    segments = data.segment(song, bars)
    if not segments:
        raise PianoaccError(f"POP909 song {song.song_id}: shorter than {bars} bars")
    return segments[len(segments) // 2]


def check_songs(songs: Sequence[str]) -> Path:
    """POP909's folder, after checking that every song is in the test split (the page
    plays nothing the models were trained or tuned on)."""
    root = data.find_pop909_dir()
    test = set(data.split_songs(data.song_ids(root))["test"])
    outside = [song_id for song_id in songs if song_id not in test]
    if outside:
        raise PianoaccError(f"POP909 song {', '.join(outside)}: not in the test split")
    return root


def song_pieces(config: ReportConfig, models: dict, folder: Path) -> list[Piece]:
    """The test songs' excerpts: melody, pianist and each model with a lead sheet and from
    the melody alone; MIDI files go to ``folder``."""
    root = check_songs(config.songs)
    songs = [data.load_song(song_id, root=root) for song_id in config.songs]
    segments = [middle_segment(song, config.bars) for song in songs]
    sampling = generation.SamplingConfig(seed=config.seed)
    played: dict[str, list[list[Note]]] = {}
    for model, window in models.values():
        decoder = generation.CachedDecoder(model, sampling)
        for chords, name in ((LEAD_SHEET, "lead sheet"), (MELODY_ALONE, "melody alone")):
            played[f"{KIND_NAMES[model.config.kind]}, {name}"] = generation.accompany_segment(
                model, segments, sampling, window, 0, decoder, chords=chords
            )
    pieces = []
    for index, (song, seg) in enumerate(zip(songs, segments)):
        origin = int(song.grid.bar_starts[seg.first_bar])
        start, end = song.grid.to_seconds(np.array([origin, origin + seg.num_steps], float))
        tempo = 60 * seg.num_steps / STEPS_PER_BEAT / float(end - start)
        first, last = seg.first_bar + 1, seg.first_bar + seg.num_bars
        piece = Piece(
            f"song{song.song_id}", f"POP909 song {song.song_id}, bars {first}–{last}",
            f"test split; key {song.key}; about {tempo:.0f} beats a minute",
        )
        versions = {"melody": [], "pianist": seg.accompaniment}
        versions |= {label: notes[index] for label, notes in played.items()}
        for label, notes in versions.items():
            path = folder / f"song{song.song_id}_{_stem(label)}.mid"
            data.write_segment_arrangement(song, seg, notes, path)
            clip = Clip(label, path, seg.melody, list(notes), list(seg.bar_starts),
                        float(end - start), seg.first_bar)
            piece.clips.append(clip)
        pieces.append(piece)
    return pieces


def folk_pieces(config: ReportConfig, models: dict, folder: Path) -> list[Piece]:
    """The held-out folk tunes: the melody and each model from the melody alone (their
    first ``config.bars`` bars); MIDI files go to ``folder``."""
    if config.folk_tunes <= 0:
        return []
    paths = data.folk_melodies(folder / "tunes", config.folk_tunes)
    melodies = [data.load_melody(path) for path in paths]
    chords = [harmony.learned_chords(m.notes, m.grid.bar_starts, m.end_step) for m in melodies]
    sampling = generation.SamplingConfig(seed=config.seed)
    played = {
        f"{KIND_NAMES[model.config.kind]}, melody alone": generation.accompany_melodies(
            model, melodies, sampling, window, chords=chords
        )
        for model, window in models.values()
    }
    pieces = []
    for index, (path, melody) in enumerate(zip(paths, melodies)):
        bars = [int(b) for b in melody.grid.bar_starts]
        end = bars[config.bars] if len(bars) > config.bars else int(melody.end_step)
        seconds = float(melody.grid.to_seconds(np.array([end]))[0])
        name = path.stem.split("_", 1)[-1].replace("_", " ")
        signatures = melody.midi.time_signature_changes
        meters = sorted({f"{s.numerator}/{s.denominator}" for s in signatures})
        piece = Piece(
            f"folk{index + 1}", f"Folk tune: {name}, bars 1–{min(config.bars, len(bars))}",
            f"music21's corpus, outside POP909; meter {', '.join(meters) or '4/4'}; "
            "no pianist, no lead sheet",
        )
        versions = {"melody": [], **{label: notes[index] for label, notes in played.items()}}
        for label, notes in versions.items():
            kept = [n for n in notes if n.start < end]
            midi = data.write_arrangement(melody, kept, folder / f"{path.stem}_{_stem(label)}.mid")
            melody_notes = [n for n in melody.notes if n.start < end]
            piece.clips.append(Clip(label, midi, melody_notes, kept, bars, seconds))
        pieces.append(piece)
    return pieces


# --------------------------------------------------------------------------- the page


def write_clip(clip: Clip, out: Path, stem: str, sample_rate: int = SAMPLE_RATE) -> dict:
    """The clip's MP3 (``out/audio``), piano roll (``out/rolls``) and MIDI (``out/midi``);
    returns their paths relative to ``out`` and the clip's seconds."""
    files = {"audio": f"audio/{stem}.mp3", "roll": f"rolls/{stem}.png", "midi": f"midi/{stem}.mid"}
    for name in files.values():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
    audio = audio_clip(clip.midi, seconds=clip.seconds + 0.5, sample_rate=sample_rate)
    write_atomic(out / files["audio"], mp3_bytes(audio, sample_rate))
    tracks = {"melody": clip.melody}
    if clip.label != "melody":
        tracks["accompaniment"] = clip.accompaniment
    fig = plotting.piano_roll(
        tracks, clip.bar_starts, start=0, end=_roll_end(clip), figsize=ROLL_SIZE,
        first_bar=clip.first_bar,
    )
    fig.savefig(out / files["roll"], dpi=ROLL_DPI, format="png")
    shutil.copyfile(clip.midi, out / files["midi"])
    return {**files, "seconds": round(len(audio) / sample_rate, 2)}


def _roll_end(clip: Clip) -> int:
    """Last step a clip's roll shows: its last bar line past the notes, or their end."""
    ends = [n.end for n in [*clip.melody, *clip.accompaniment]]
    last = max(ends, default=0)
    later = [b for b in clip.bar_starts if b >= last]
    return int(later[0]) if later else int(last)


PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.about { color: #555; margin-top: -0.6em; }
.clips { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr));
         gap: 1em; }
figure { margin: 0; padding: 0.6em; background: #fafafa; border: 1px solid #e4e4e4;
         border-radius: 6px; }
figcaption { font-weight: 600; margin-bottom: 0.3em; }
figure img { width: 100%; height: auto; display: block; }
audio { width: 100%; margin-top: 0.3em; }
.midi { font-size: 0.85em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.wide { max-width: 100%; height: auto; }
"""


def page_html(
    pieces: Sequence[Piece], files: Sequence[Sequence[dict]], table: Sequence[Sequence[str]],
    curves: str | None, intro: str,
) -> str:
    """The page: an introduction, one section per piece with its clips (``files[i][j]`` from
    :func:`write_clip`), the results table (rows of cells, header first) and the learning
    curves' image (a path relative to the page, or ``None``)."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>pianoacc: listen to the accompaniments</title>",
        f"<style>{PAGE_STYLE}</style>", "</head>", "<body>",
        "<h1>pianoacc: listen to the accompaniments</h1>", intro,
    ]
    for piece, clip_files in zip(pieces, files):
        parts += [f"<h2>{e(piece.title)}</h2>", f'<p class="about">{e(piece.about)}</p>',
                  '<div class="clips">']
        for clip, found in zip(piece.clips, clip_files):
            parts += [
                "<figure>", f"<figcaption>{e(clip.label)}</figcaption>",
                f'<img src="{e(found["roll"])}" alt="piano roll: {e(clip.label)}" '
                'width="480" height="152">',
                f'<audio controls preload="metadata" src="{e(found["audio"])}"></audio>',
                f'<a class="midi" href="{e(found["midi"])}">MIDI</a>', "</figure>",
            ]
        parts.append("</div>")
    if table:
        parts += ["<h2>Results on the test split</h2>", TABLE_NOTE, "<table>"]
        parts.append("<tr>" + "".join(f"<th>{e(c)}</th>" for c in table[0]) + "</tr>")
        for row in table[1:]:
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    if curves:
        parts += [
            "<h2>Learning curves of the shipped models</h2>",
            "<p>Loss and next-token accuracy per epoch on the train and validation splits "
            "(<code>pretrained/*/history.csv</code>).</p>",
            f'<img class="wide" src="{e(curves)}" alt="training and validation loss per epoch">',
        ]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


TABLE_NOTE = (
    "<p>96 32-bar segments of the 91 test songs at sampling seeds 0, 1 and 2, one candidate "
    "per window (made before reranking became the default): the median "
    "over seeds, [min, max] across them (<code>results/evaluation.json</code>, "
    "<code>results/evaluation_estimated_chords.json</code>; <code>docs/metrics.md</code> "
    "defines each metric and the quality bar).</p>"
)

INTRO = """<p>Each excerpt is played by the melody alone, by the pianist of POP909 (the ground
truth) and by the two shipped models, FNet and the Transformer: given a <em>lead sheet</em>
(the song's annotated chords) and given the <em>melody alone</em> (chords chosen for it by the
harmoniser learned from POP909, as <code>pianoacc accompany</code> does). Sampling seed {seed},
default generation otherwise (8 candidates per window, the one most like a pianist kept); the test songs and the folk tunes were never trained on. Piano
rolls: melody in red, accompaniment in blue, darker notes louder. Audio: the SoundFont piano
of pretty_midi (TimGM6mb), MP3. Written by <code>pianoacc report</code>.</p>"""


def learning_curves_png(out: Path, models: dict) -> str | None:
    """The loss per epoch of the runs behind ``models`` (checkpoint name -> model, window)
    as ``out/learning_curves.png``; ``None`` when a checkpoint's folder has no history."""
    histories = {}
    for name, (model, _) in models.items():
        folder = generation.resolve_checkpoint(name).parent
        if not (folder / "history.csv").is_file():
            return None
        history = pd.DataFrame(training.read_history(folder))
        history["epoch"] = np.arange(1, len(history) + 1)
        histories[KIND_NAMES[model.config.kind]] = history
    metrics = ("loss", "val_loss", "accuracy", "val_accuracy")
    fig = plotting.learning_curves(histories, metrics, panel_size=(5.5, 3.2))
    fig.savefig(out / "learning_curves.png", dpi=ROLL_DPI, format="png")
    return "learning_curves.png"


def write_page(
    out: Path, pieces: Sequence[Piece], table: Sequence[Sequence[str]] = (),
    curves: str | None = None, seed: int = 0, sample_rate: int = SAMPLE_RATE,
) -> Path:
    """Write every clip's files and ``out/index.html``; returns the page's path."""
    files = [
        [write_clip(clip, out, f"{piece.key}_{_stem(clip.label)}", sample_rate)
         for clip in piece.clips]
        for piece in pieces
    ]
    page = out / "index.html"
    write_atomic(page, page_html(pieces, files, table, curves, INTRO.format(seed=seed)).encode())
    return page


def build_report(out: str | Path = "build/listen", config: ReportConfig = ReportConfig()) -> Path:
    """Generate every clip and write the page into ``out`` (emptied of an earlier page's
    ``audio/``, ``rolls/`` and ``midi/``); returns ``out/index.html``. ``out/report.json``
    records the configuration, the pieces, the page's bytes and how long it took (seconds,
    on the processor named there)."""
    began = time.perf_counter()
    out = Path(out)
    quiet_retracing()
    for name in ("audio", "rolls", "midi"):
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    check_songs(config.songs)
    models = {kind: generation.load_checkpoint(kind) for kind in config.checkpoints}
    with tempfile.TemporaryDirectory(prefix="pianoacc-report-") as scratch:
        folder = Path(scratch)
        pieces = song_pieces(config, models, folder) + folk_pieces(config, models, folder)
        root = project_root()
        results = (root / "results") if root is not None else None
        table = table_rows(TABLE_COLUMNS, TABLE_ROWS, results) if results else []
        curves = learning_curves_png(out, models)
        page = write_page(out, pieces, table, curves, config.seed, config.sample_rate)
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    write_json(out / "report.json", {
        "config": asdict(config),
        "pieces": [{"title": p.title, "about": p.about, "clips": [c.label for c in p.clips]}
                   for p in pieces],
        "bytes": size,
        "seconds": round(time.perf_counter() - began, 1),
        "machine": {"processor": processor_name(), "cores": os.cpu_count()},
    })
    return page



def run_report(out: str | Path = "build/listen", songs: str | None = None) -> Path:
    """``pianoacc report``: build the page (``songs``: comma-separated POP909 test songs,
    default :data:`REPORT_SONGS`), then say where it is, how large and how long it took."""
    chosen = tuple(song.strip() for song in (songs or "").split(",") if song.strip())
    page = build_report(out, ReportConfig(songs=chosen or REPORT_SONGS))
    record = json.loads((page.parent / "report.json").read_text())
    print(f"wrote {page}: {record['bytes'] / 1e6:.1f} MB in all, {record['seconds']:.0f} s; "
          f"open file://{page.resolve()} in a browser")
    return page


def main(argv: Sequence[str] | None = None) -> int:
    """``pianoacc report`` runs this in its own process (``python -m
    pianoacc_utils.course.report``), so that the other commands never load matplotlib and
    pandas; returns the exit code (1 for an error, reported in one line)."""
    parser = argparse.ArgumentParser(prog="pianoacc report", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="build/listen", help="the page's folder")
    parser.add_argument("--songs", help="POP909 test songs, comma-separated")
    args = parser.parse_args(argv)
    try:
        run_report(args.out, args.songs)
    except PianoaccError as error:
        print(f"pianoacc report: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
