"""Can a trained critic tell the models' accompaniments from the pianist's, on whole songs?

    KERAS_BACKEND=jax .venv/bin/python results/critic_validation.py [--songs N]

Accompanies whole songs of POP909's *validation* split (decisions are made on
validation; the test split is only reported, by ``pianoacc evaluate``) as ``pianoacc
accompany`` does a melody file: the whole melody, window by window, at the default
sampling settings (seed 0), with the chords the harmoniser learned from POP909 finds for
the melody alone (``harmony.learned_chords``: *melody only*) or with the annotated
chords (*lead sheet*), by the shipped FNet and Transformer. Then runs the critic of
``pianoacc_utils.evaluation.critic`` (a classifier two-sample test, folds grouped by
song) on the pianist against each system and against its controls (the pianist against
the pianist, block chords, the pianist jittered by a sixteenth, another song's pianist),
and writes results/critic_validation.json and .md.

Generated accompaniments are cached per song under ``cache_dir()/critic_songs`` (git-ignored),
in a folder named by the model's weights and every generation setting, so an interrupted run resumes where it
stopped. Generation runs on JAX (faster here); the critic then runs in a TensorFlow
process (its network trains about four times faster there). The number of songs is chosen so that a run takes at most about 25 minutes on
two CPU cores (generation about 15 s per song and system, in batches of 8 songs).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from pianoacc_utils import data, generation
from pianoacc_utils.backends.exported import package_fingerprint
from pianoacc_utils.common import (
    cache_dir, config_dict, processor_flags, processor_name, write_atomic, write_json,
)
from pianoacc_utils.data.notes import Note
from pianoacc_utils.data.pop909 import Segment
from pianoacc_utils.defaults import DEFAULT_CANDIDATES, DEFAULT_RELEASE, HANGING_BEATS
from pianoacc_utils.evaluation import block_chord_baseline, critic
from pianoacc_utils.generation import SamplingConfig

DECIDES_ON = "validation"
"""The split this script chooses on (the critic's settings and what to change next), ``None``
where it chooses nothing; ``tests/test_project.py`` checks that no script chooses on the test
split."""

OUT = Path("results/critic_validation")
SONGS = 20
"""Validation songs judged (the first of the split's order): about 20 minutes of
generation for the four systems on two cores."""
BATCH_SONGS = 8
"""Songs accompanied together (one batched decoding per window)."""
SYSTEMS = {
    "fnet_melody_only": ("fnet", "estimated"),
    "fnet_lead_sheet": ("fnet", "annotated"),
    "transformer_melody_only": ("transformer", "estimated"),
    "transformer_lead_sheet": ("transformer", "annotated"),
}
"""System name -> (shipped model, chords it is given: ``generation.CHORD_SOURCES``)."""
SEED = 0
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/critic_validation.py"
started = time.time()


def processor() -> dict:
    """The processor that sampled (seeded samples differ between processors): its name and
    whether it has AVX-512 and AMX units."""
    flags = processor_flags()
    return {"name": processor_name(), "avx512f": "avx512f" in flags, "amx_bf16": "amx_bf16" in flags}


def log(message: str) -> None:
    print(f"[{time.time() - started:6.0f} s] {message}", flush=True)


def whole_songs(count: int, split: str = "validation") -> list[Segment]:
    """The first ``count`` songs of ``split`` (in the split's order), each as one segment of
    all its bars."""
    ids = data.split_songs(data.song_ids())[split][:count]
    songs = []
    for song_id in ids:
        song = data.load_song(song_id)
        (whole,) = data.segment(song, bars=len(song.grid.bar_starts))
        songs.append(whole)
    return songs


LEGACY_OVERLAP = 2
"""Bars of overlap of the shipped models' windows in every run before
``results/critic_overlap.py`` chose 6: an overlap enters a cache key only when it is
another (keys made before the package's source entered them kept this form)."""


def split_settings(changes: dict, checkpoint: str) -> tuple[SamplingConfig, dict]:
    """``changes`` to ``checkpoint``'s default generation as (sampling settings at seed
    :data:`SEED`, the rules of ``generation.accompany_segment``: ``release``,
    ``hanging_beats`` and ``candidates``, and the window's ``overlap_bars``, the model's own
    unless changed, unless it is :data:`LEGACY_OVERLAP`)."""
    fields = {f.name for f in dataclasses.fields(SamplingConfig)}
    sampling = SamplingConfig(seed=SEED, **{k: v for k, v in changes.items() if k in fields})
    rules = {"release": DEFAULT_RELEASE, "hanging_beats": float(HANGING_BEATS)}
    if DEFAULT_CANDIDATES != 1:  # a key unchanged for the runs made before reranking
        rules["candidates"] = DEFAULT_CANDIDATES
    rules["overlap_bars"] = generation.checkpoint_window(checkpoint).overlap_bars
    rules.update({k: v for k, v in changes.items() if k not in fields})
    if rules["overlap_bars"] == LEGACY_OVERLAP:
        del rules["overlap_bars"]
    return sampling, rules


def generation_key(
    checkpoint: str, chords: str, changes: dict, reranker: Path | None = None
) -> str:
    """The cache folder of one way of accompanying: the model (its weights' digest), the
    chords it is given, every generation setting, the package's source and the processor
    that samples, and, where it reranks, the reranker's file (``reranker``, default the
    shipped one), so that a changed default, a retrained model, changed code, another
    machine's samples or another reranker is never read from an older run's cache."""
    sampling, rules = split_settings(changes, checkpoint)
    weights = generation.resolve_checkpoint(checkpoint)
    description = {
        "weights": hashlib.sha1(weights.read_bytes()).hexdigest(),
        "chords": chords, "sampling": sampling_key(sampling), "rules": rules,
        "package": package_fingerprint(), "processor": processor(),
    }
    if rules.get("candidates", DEFAULT_CANDIDATES) > 1:  # and the reranker that chose
        description["reranker"] = reranker_digest(reranker)
    digest = hashlib.sha1(json.dumps(description, sort_keys=True).encode()).hexdigest()
    return f"{checkpoint}-{chords}-{digest[:12]}"


LATER_SETTINGS = ("shift_temperature", "pitch_temperature")
"""Sampling settings added after the cache's first runs: they enter a cache key only when
set (keys made before the package's source entered them kept this form)."""


def sampling_key(sampling: SamplingConfig) -> dict:
    """The sampling settings as a cache key holds them (:data:`LATER_SETTINGS` only when set)."""
    return {k: v for k, v in config_dict(sampling).items()
            if not (k in LATER_SETTINGS and v is None)}


def reranker_digest(path: Path | None = None) -> str:
    """The SHA-1 of a reranker's file (``None``: the shipped one): part of every cache key
    of a run that reranks, so that a retrained reranker is never read from an older run's
    cache."""
    path = path or generation.pretrained_dir() / generation.RERANKER_FILE
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def critic_in_tensorflow(script: str, count: int, *arguments: str) -> None:
    """Under JAX, run ``script --songs count`` (and ``arguments``) again in a TensorFlow
    process and exit with its status: generation (faster on JAX) is cached by then, and
    the critic's network trains batch by batch about four times faster on TensorFlow
    here. Under another backend, return and let the caller run the critic."""
    if os.environ.get("KERAS_BACKEND") != "jax":
        return
    log("the critic runs in a TensorFlow process")
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    command = [sys.executable, script, "--songs", str(count), *arguments]
    raise SystemExit(subprocess.run(command, env=environment).returncode)


def cached_path(key: str, split: str, song_id: str) -> Path:
    return cache_dir() / "critic_songs" / split / key / f"{song_id}.json"


def accompany_songs(
    songs: list[Segment], split: str, name: str, checkpoint: str, chords: str,
    changes: dict | None = None, chord_spans: Callable[[Segment], list] | None = None,
    reranker: Path | None = None,
) -> list[list[Note]]:
    """``checkpoint``'s accompaniment of every song as ``pianoacc accompany`` makes it
    (window by window, ``chords`` from ``generation.CHORD_SOURCES``), with ``changes`` to
    the default settings; from the cache, or generated and cached song by song.
    ``chord_spans`` (a song's chord spans) replaces the chord source; ``chords`` then
    names it (in the cache's folder name: one name per way of finding chords).
    ``reranker``: the file of the reranker that chooses among candidates (``None``: the
    model's own where it has one, else the shipped one: ``generation.reranker_file``); a
    ``"reranker"`` among ``changes`` names it too (so a system of :func:`generate` can
    carry its own)."""
    changes = dict(changes or {})
    reranker = changes.pop("reranker", reranker)
    reranker = generation.reranker_file(checkpoint) if reranker is None else Path(reranker)
    key = generation_key(checkpoint, chords, changes, reranker)
    missing = [s for s in songs if not cached_path(key, split, s.song_id).is_file()]
    if missing:
        model, window = generation.load_checkpoint(checkpoint)
        sampling, rules = split_settings(changes, checkpoint)
        # How many bars of each window prime it (absent from the key: the legacy overlap).
        window = window.with_overlap(rules.pop("overlap_bars", LEGACY_OVERLAP))
        if reranker is not None:
            rules["reranker"] = generation.Reranker.load(reranker)
        decoder = generation.CachedDecoder(model, sampling)
        for first in range(0, len(missing), BATCH_SONGS):
            batch = missing[first : first + BATCH_SONGS]
            began = time.time()
            if chord_spans is None:
                notes = generation.accompany_segment(
                    model, batch, sampling, window, decoder=decoder, chords=chords, **rules
                )
            else:
                melodies = [(seg.melody, seg.bar_starts, seg.num_steps) for seg in batch]
                notes = generation.accompany(
                    model, melodies, sampling, window, decoder=decoder,
                    chords=[chord_spans(seg) for seg in batch], **rules,
                )
            for seg, played in zip(batch, notes):
                payload = json.dumps([list(n) for n in played]).encode()
                write_atomic(cached_path(key, split, seg.song_id), payload)
            log(f"{name}: {len(batch)} songs in {time.time() - began:.0f} s")
    return [
        [Note(*n) for n in json.loads(cached_path(key, split, s.song_id).read_text())]
        for s in songs
    ]


def generate_timed(
    songs: list[Segment], systems: dict[str, tuple[str, str, dict]], split: str = "validation"
) -> tuple[dict[str, list[list[Note]]], dict[str, float]]:
    """Each system's accompaniment of every song (name -> checkpoint, chords, changes to
    the defaults: :func:`accompany_songs`), and the seconds each took to generate here
    (0 where it came from the cache)."""
    notes, seconds = {}, {}
    for name, (checkpoint, chords, changes) in systems.items():
        began = time.time()
        notes[name] = accompany_songs(songs, split, name, checkpoint, chords, changes)
        seconds[name] = round(time.time() - began, 1)
    return notes, seconds


def generate(
    songs: list[Segment], split: str = "validation", extra: dict | None = None,
    base: dict | None = None,
) -> dict[str, list[list[Note]]]:
    """Every system of ``base`` (default :data:`SYSTEMS`)' accompaniment of every song, at
    the defaults, and of each ``extra`` system (name -> checkpoint, chords, changes to the
    defaults)."""
    base = SYSTEMS if base is None else base
    systems = {name: (checkpoint, chords, {}) for name, (checkpoint, chords) in base.items()}
    systems.update(extra or {})
    return generate_timed(songs, systems, split)[0]


def critic_on_songs(
    songs: list[Segment], systems: dict[str, list[list[Note]]], learned: bool = True,
    split: str = "validation", **settings: object,
) -> dict:
    """The critic's report (``evaluation.critic.critic_report``, seed :data:`SEED`; without
    the piece-roll network when not ``learned``) of ``systems`` against the pianist on
    whole ``songs``, its settings naming the split, the songs, their bars and ``settings``."""
    pieces = [critic.segment_piece(s) for s in songs]
    report = critic.critic_report(pieces, systems, None, critic.CriticConfig(seed=SEED, learned=learned))
    report["settings"].update(
        split=split, songs=[s.song_id for s in songs], bars=sum(s.num_bars for s in songs),
        **settings,
    )
    return report


def write_report(out: Path, report: dict, text: str) -> None:
    """``report`` as ``out``.json and ``text`` as ``out``.md."""
    write_json(out.with_suffix(".json"), report)
    write_atomic(out.with_suffix(".md"), text.encode())
    log(f"wrote {out}.json and .md")


def accuracy_drops(
    rows: dict, name: Callable[[object, str], str], today: object, others: Iterable,
    chords: Iterable[str],
) -> dict:
    """How much lower than ``today``'s each of ``others``' critic accuracy is, per chord
    setting: ``{other: {chords: drop}}`` (rows of a critic report, each named by
    ``name(setting, chords)``); above 0 the critic tells ``other`` apart less often."""
    chords = list(chords)
    return {other: {c: rows[name(today, c)]["accuracy"] - rows[name(other, c)]["accuracy"]
                    for c in chords} for other in others}


def songs_or_report(
    doc: str, out: Path, markdown: Callable[[dict], str], songs: int
) -> int | None:
    """The command line of a script that judges ``--songs N`` songs (default ``songs``)
    or, with ``--report``, only writes ``out``.md again from ``out``.json (then ``None``)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=songs, help=f"default {songs}")
    parser.add_argument("--report", action="store_true", help="only rewrite the .md")
    args = parser.parse_args()
    if args.report:
        report = json.loads(out.with_suffix(".json").read_text())
        write_report(out, report, markdown(report))
        return None
    return args.songs


def markdown(report: dict) -> str:
    """The report's tables under a few lines on what was compared."""
    settings = report["settings"]
    return (
        f"# The critic on whole {settings['split']} songs\n\n"
        f"Written by `{settings['command']}` ({report['seconds']:.0f} s for the critic).\n\n"
        f"{len(settings['songs'])} whole songs of the {settings['split']} split "
        f"({settings['bars']} bars: {', '.join(settings['songs'])}), accompanied as "
        "`pianoacc accompany` does (default settings, sampling seed 0: "
        f"{settings['sampling']}): *melody_only* with the chords the learned harmoniser "
        "finds for the melody, *lead_sheet* with the annotated chords. Each system and each "
        f"control is told from the pianist in {settings['config']['bars']}-bar windows where "
        f"the melody sounds, {settings['config']['folds']} folds grouped by song; accuracy on "
        "held-out songs, 0.5 = indistinguishable, 95% interval from resampling songs. "
        "The critic that counts is the most accurate of the three."
        + "".join(
            f" *{name}*: {system['checkpoint']} with "
            f"{'the annotated' if system['chords'] == 'annotated' else 'estimated'} chords at "
            + ", ".join(f"{k} {v}" for k, v in system["changes"].items()) + "."
            for name, system in settings["systems"].items() if "changes" in system
        )
        + "\n\n" + critic.critic_markdown(report)
    )


def run(
    split: str, count: int, out: Path, command: str, script: str, extra: dict | None = None,
    arguments: tuple[str, ...] = (), base: dict | None = None,
) -> None:
    """Accompany the first ``count`` whole songs of ``split`` with every system of ``base``
    (default :data:`SYSTEMS`) and ``extra`` (:func:`generate`; cached), then, in a
    TensorFlow process (``script --songs count`` with ``arguments``), run the critic and
    write ``out`` .json and .md."""
    base = SYSTEMS if base is None else base
    songs = whole_songs(count, split)
    log(f"{len(songs)} {split} songs, {sum(s.num_bars for s in songs)} bars")
    systems = generate(songs, split, extra, base)
    critic_in_tensorflow(script, count, *arguments)
    began = time.time()
    pieces = [critic.segment_piece(s) for s in songs]
    blocks = [block_chord_baseline(s) for s in songs]
    report = critic.critic_report(
        pieces, systems, {"block_chords": blocks}, critic.CriticConfig(seed=SEED)
    )
    log(f"critic: {time.time() - began:.0f} s")
    sampling, rules = split_settings({}, "fnet")
    rules.pop("overlap_bars", None)  # each model's own: below
    overlaps = {c: generation.checkpoint_window(c).overlap_bars for c in ("fnet", "transformer")}
    report["settings"].update(
        split=split,
        songs=[s.song_id for s in songs],
        bars=sum(s.num_bars for s in songs),
        systems={
            **{name: {"checkpoint": c, "chords": h} for name, (c, h) in base.items()},
            **{name: {"checkpoint": c, "chords": h, "changes": changes}
               for name, (c, h, changes) in (extra or {}).items()},
        },
        sampling_seed=SEED,
        processor=processor(),
        sampling=", ".join(f"{k} {v}" for k, v in {**sampling_key(sampling), **rules}.items()
                           if k != "seed") + ", overlap_bars " + ", ".join(
                               f"{v} for {k}" for k, v in overlaps.items()),
        command=command,
    )
    write_json(out.with_suffix(".json"), report)
    write_atomic(out.with_suffix(".md"), markdown(report).encode())
    log(f"wrote {out}.json and .md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=SONGS, help=f"default {SONGS}")
    args = parser.parse_args()
    run("validation", args.songs, OUT, COMMAND, __file__)


if __name__ == "__main__":
    main()
