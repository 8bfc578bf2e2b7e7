"""Can a trained critic tell the models' accompaniments from the pianist's, on whole songs?

    KERAS_BACKEND=jax .venv/bin/python results/critic_validation.py [--songs N] [--generate-only]

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

Generated accompaniments are cached per system and song under
``cache_dir()/critic_validation`` (git-ignored), so an interrupted run resumes where it
stopped. Generation runs on JAX (faster here); the critic then runs in a TensorFlow
process (its network trains about four times faster there). The number of songs is chosen so that a run takes at most about 25 minutes on
two CPU cores (generation about 15 s per song and system, in batches of 8 songs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pianoacc_utils import data, generation
from pianoacc_utils.common import cache_dir, write_atomic, write_json
from pianoacc_utils.data.notes import Note
from pianoacc_utils.data.pop909 import Segment
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


def log(message: str) -> None:
    print(f"[{time.time() - started:6.0f} s] {message}", flush=True)


def whole_songs(count: int) -> list[Segment]:
    """The first ``count`` validation songs, each as one segment of all its bars."""
    ids = data.split_songs(data.song_ids())["validation"][:count]
    songs = []
    for song_id in ids:
        song = data.load_song(song_id)
        (whole,) = data.segment(song, bars=len(song.grid.bar_starts))
        songs.append(whole)
    return songs


def cached_path(system: str, song_id: str) -> Path:
    return cache_dir() / "critic_validation" / f"seed{SEED}" / system / f"{song_id}.json"


def generate(songs: list[Segment]) -> dict[str, list[list[Note]]]:
    """Every system's accompaniment of every song, from the cache or generated."""
    results: dict[str, list[list[Note]]] = {}
    for system, (checkpoint, chords) in SYSTEMS.items():
        missing = [s for s in songs if not cached_path(system, s.song_id).is_file()]
        if missing:
            model, window = generation.load_checkpoint(checkpoint)
            sampling = SamplingConfig(seed=SEED)
            decoder = generation.CachedDecoder(model, sampling)
            for first in range(0, len(missing), BATCH_SONGS):
                batch = missing[first : first + BATCH_SONGS]
                began = time.time()
                notes = generation.accompany_segment(
                    model, batch, sampling, window, decoder=decoder, chords=chords
                )
                for seg, played in zip(batch, notes):
                    payload = [list(n) for n in played]
                    write_atomic(cached_path(system, seg.song_id), json.dumps(payload).encode())
                log(f"{system}: {len(batch)} songs in {time.time() - began:.0f} s")
        results[system] = [
            [Note(*n) for n in json.loads(cached_path(system, s.song_id).read_text())]
            for s in songs
        ]
    return results


def markdown(report: dict) -> str:
    """The report's tables under a few lines on what was compared."""
    settings = report["settings"]
    return (
        "# The critic on whole validation songs\n\n"
        f"Written by `{settings['command']}` ({report['seconds']:.0f} s for the critic).\n\n"
        f"{len(settings['songs'])} whole songs of the validation split ({settings['bars']} "
        f"bars: {', '.join(settings['songs'])}), accompanied as `pianoacc accompany` does "
        "(sampling seed 0): *melody_only* with the chords the learned harmoniser finds for "
        "the melody, *lead_sheet* with the annotated chords. Each system and each control "
        f"is told from the pianist in {settings['config']['bars']}-bar windows where the "
        f"melody sounds, {settings['config']['folds']} folds grouped by song; accuracy on "
        "held-out songs, 0.5 = indistinguishable, 95% interval from resampling songs. "
        "The critic that counts is the most accurate of the three.\n\n"
        + critic.critic_markdown(report)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=SONGS, help=f"default {SONGS}")
    parser.add_argument("--generate-only", action="store_true", help="fill the cache, stop")
    args = parser.parse_args()
    songs = whole_songs(args.songs)
    log(f"{len(songs)} validation songs, {sum(s.num_bars for s in songs)} bars")
    systems = generate(songs)
    if args.generate_only:
        return
    if os.environ.get("KERAS_BACKEND") == "jax":
        # The critic's network trains batch by batch, about four times faster on TensorFlow
        # than on JAX here; the accompaniments are cached, so a TensorFlow process goes on.
        log("the critic runs in a TensorFlow process")
        environment = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        command = [sys.executable, __file__, "--songs", str(args.songs)]
        raise SystemExit(subprocess.run(command, env=environment).returncode)
    began = time.time()
    pieces = [critic.segment_piece(s) for s in songs]
    blocks = [block_chord_baseline(s) for s in songs]
    report = critic.critic_report(
        pieces, systems, {"block_chords": blocks}, critic.CriticConfig(seed=SEED)
    )
    log(f"critic: {time.time() - began:.0f} s")
    report["settings"].update(
        split="validation",
        songs=[s.song_id for s in songs],
        bars=sum(s.num_bars for s in songs),
        systems={name: {"checkpoint": c, "chords": h} for name, (c, h) in SYSTEMS.items()},
        sampling_seed=SEED,
        command=COMMAND,
    )
    write_json(OUT.with_suffix(".json"), report)
    write_atomic(OUT.with_suffix(".md"), markdown(report).encode())
    log(f"wrote {OUT}.json and .md")


if __name__ == "__main__":
    main()
