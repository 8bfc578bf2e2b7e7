"""How the reranker chooses among a window's candidates, measured with the critic on
validation songs.

    KERAS_BACKEND=jax .venv/bin/python results/critic_choice.py [--songs N]
    .venv/bin/python results/critic_choice.py --report

The reranker scores each candidate of a window by the log-odds that its 2-bar windows are
the pianist's and keeps the highest (``generation.rerank.choose``). Keeping the best is
mode-seeking: it could make every window the most typical one, where the pianist varies
from window to window and from song to song. This script measures other ways of choosing
on the same candidates (:data:`RULES`):

- *drawn in proportion to exp(beta x score)*: importance resampling. Where the score is
  the log of the ratio of the pianist's density to the model's, beta = 1 draws, as the
  candidates grow in number, from the pianist's distribution (discriminator-driven
  rejection sampling); larger beta moves towards keeping the best; beta = 0 draws at
  random, as one candidate per window would but for the windows before it.
- *steered to a style*: the score less :data:`STEER` times the squared distance of the
  candidate's :data:`STYLE` features from a style chosen once per song, each feature in
  units of the training pianists' spread within a song. The style is the mean of those
  features over one training song's pianist (drawn at random, seed 0), or over the
  :data:`NEAREST` training songs whose melodies are nearest (mean pitch, pitch spread and
  mean velocity, each in units of its spread over the training songs): a pianist keeps a
  texture through a song, which one window at a time cannot.

FNet accompanies the first :data:`SONGS` whole validation songs at today's defaults (8
candidates, windows primed by 6 bars, sampling seed 0), from the melody alone and with the
annotated chords, and every candidate of every window is kept with its score. Each rule
then rebuilds every song from those windows' candidates. The candidates of a later window
were primed by today's choice before it, so the rules are compared on the same candidates:
this measures the rule alone, not what its own choices would prime next. Rebuilding with
today's rule must give back exactly what was generated (checked). Then the critic, all
three classifiers, tells each rebuild from the pianist.

The rule, fixed before the run: another rule replaces keeping the best only if it lowers
the critic's accuracy by more than :data:`MARGIN` both from the melody alone and with a
lead sheet; among those, the one with the lowest mean. A first look at 20 songs from the
melody alone (the boosted trees only) came before this script and found none that did.
Writes ``results/critic_choice.json`` and ``.md``; test outputs play no part. The
candidates are cached as JSON under ``cache_dir()/critic_choice`` (git-ignored), named as
``results/critic_validation.py`` names its songs.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from critic_validation import (
    LEGACY_OVERLAP, accuracy_drops, critic_in_tensorflow, critic_on_songs, generation_key, log, songs_or_report,
    split_settings, whole_songs, write_report,
)

from pianoacc_utils import generation, harmony
from pianoacc_utils.common import cache_dir, write_atomic
from pianoacc_utils.data.notes import Note, normalize_notes
from pianoacc_utils.data.pop909 import Segment
from pianoacc_utils.evaluation import critic
from pianoacc_utils.generation import rerank
from pianoacc_utils.generation.critic_features import CRITIC_BARS, feature_matrix, feature_names

DECIDES_ON = "validation"
"""The split this script chooses on (how the reranker chooses among candidates);
``tests/test_project.py`` checks that no script chooses on the test split."""

OUT = Path("results/critic_choice")
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/critic_choice.py"
SONGS = 40
"""Validation songs: 40, as ``results/critic_velocity.py`` (the first 20 flatter FNet)."""
BATCH_SONGS = 8
CHORDS = {"melody only": "estimated", "lead sheet": "annotated"}
TODAY = "keep the best"
RULES: dict[str, tuple[str, float]] = {
    TODAY: ("best", 0.0),
    "draw, beta 4": ("draw", 4.0),
    "draw, beta 2": ("draw", 2.0),
    "draw, beta 1": ("draw", 1.0),
    "draw at random": ("draw", 0.0),
    "steer to a random training style": ("steer_random", 0.3),
    "steer to the nearest melodies' style": ("steer_nearest", 0.3),
}
"""Rule name -> (kind, beta for a draw or the weight of the distance for a steer)."""
STYLE = ("top_pitch", "bass_pitch", "notes_per_onset", "velocity_mean", "velocity_std",
         "notes_per_beat")
"""Features a style fixes: register, the breaking of chords, loudness and its spread, and
density, the song means the pianist varies more from song to song than FNet does."""
STEER = 0.3
NEAREST = 8
TRAINING_SONGS = 200
"""Training songs whose pianists' styles are drawn from."""
MARGIN = 0.01
SEED = 0


# --------------------------------------------------------------------------- candidates


class CandidateLog:
    """Inside ``with``, keeps every window's candidates and scores as the reranker sees
    them (``generation.rerank.candidate_score`` and ``choose`` wrapped, their results
    unchanged): :attr:`windows` gets one list per choice, one entry per candidate."""

    def __init__(self) -> None:
        self.windows: list[list[dict[str, Any]]] = []
        self._pending: list[dict[str, Any]] = []

    def __enter__(self) -> "CandidateLog":
        self._score, self._choose = rerank.candidate_score, rerank.choose

        def score(reranker, melody, notes, bar_starts, start, end, tonic):
            value = self._score(reranker, melody, notes, bar_starts, start, end, tonic)
            self._pending.append({"melody": melody, "start": int(start), "end": int(end),
                                  "notes": [list(n) for n in notes], "score": value})
            return value

        def choose(scores):
            self.windows.append(self._pending)
            self._pending = []
            return self._choose(scores)

        rerank.candidate_score, rerank.choose = score, choose
        return self

    def __exit__(self, *exc: object) -> None:
        rerank.candidate_score, rerank.choose = self._score, self._choose


def melody_key(melody: Sequence[Note]) -> str:
    return json.dumps([len(melody), list(melody[0]) if melody else None])


def candidates(songs: list[Segment], chords: str,
               changes: dict | None = None) -> dict[str, dict]:
    """Per song id: ``windows`` (each a list of candidates: ``notes``, ``score``, ``start``,
    ``end``) and ``generated`` (the accompaniment made), FNet at today's defaults with
    ``changes``; from the cache, or generated and cached."""
    changes = dict(changes or {})
    key = generation_key("fnet", chords, changes)
    folder = cache_dir() / "critic_choice" / key
    missing = [s for s in songs if not (folder / f"{s.song_id}.json").is_file()]
    if missing:
        model, window = generation.load_checkpoint("fnet")
        sampling, rules = split_settings(changes, "fnet")
        window = window.with_overlap(rules.pop("overlap_bars", LEGACY_OVERLAP))
        rules["reranker"] = generation.Reranker.load(generation.reranker_file("fnet"))
        decoder = generation.CachedDecoder(model, sampling)
        for first in range(0, len(missing), BATCH_SONGS):
            batch = missing[first : first + BATCH_SONGS]
            with CandidateLog() as found:
                made = generation.accompany_segment(model, batch, sampling, window,
                                                    decoder=decoder, chords=chords, **rules)
            by_melody: dict[str, list] = {}
            for options in found.windows:
                by_melody.setdefault(melody_key(options[0]["melody"]), []).append(
                    [{k: v for k, v in o.items() if k != "melody"} for o in options])
            for seg, notes in zip(batch, made):
                record = {"windows": by_melody.pop(melody_key(seg.melody)),
                          "generated": [list(n) for n in notes]}
                write_atomic(folder / f"{seg.song_id}.json", json.dumps(record).encode())
            log(f"{chords}: {len(batch)} songs")
    return {s.song_id: json.loads((folder / f"{s.song_id}.json").read_text()) for s in songs}


# --------------------------------------------------------------------------- styles


def melody_description(melody: Sequence[Note]) -> np.ndarray:
    """Mean pitch, pitch spread and mean velocity of a melody."""
    pitches = np.array([n.pitch for n in melody], float)
    return np.array([pitches.mean(), pitches.std(), np.mean([n.velocity for n in melody])])


def training_styles() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training pianists' styles (one row per song: the mean of each :data:`STYLE`
    feature over its windows), their melodies' descriptions, and the mean spread of each
    feature within a song."""
    columns = [feature_names().index(f) for f in STYLE]
    styles, within, melodies = [], [], []
    for song in whole_songs(TRAINING_SONGS, "train"):
        piece = critic.segment_piece(song)
        windows, _ = critic.piece_windows([piece], [piece.pianist], CRITIC_BARS)
        values = feature_matrix(windows)[:, columns]
        styles.append(np.nanmean(values, axis=0))
        within.append(np.nanstd(values, axis=0))
        melodies.append(melody_description(piece.melody))
    return np.array(styles), np.array(melodies), np.nanmean(np.array(within), axis=0)


def candidate_style(seg: Segment, tonic: int, option: dict) -> np.ndarray:
    """The mean of each :data:`STYLE` feature over a candidate's windows (NaN: none)."""
    notes = [Note(*n) for n in option["notes"]]
    windows = rerank.candidate_windows(seg.melody, notes, seg.bar_starts, option["start"],
                                       option["end"], tonic)
    if not windows:
        return np.full(len(STYLE), np.nan)
    values = feature_matrix(windows)[:, [feature_names().index(f) for f in STYLE]]
    with warnings.catch_warnings():  # a feature no window has (no note: no duration) is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=0)


def rebuild(songs: list[Segment], made: dict[str, dict], rule: tuple[str, float],
            styles: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[list[Note]]:
    """Every song made again from its windows' candidates, choosing by ``rule`` (a steer
    keeps each candidate's style in ``made``, for the next steer)."""
    kind, weight = rule
    rng = np.random.default_rng(SEED)
    trained, melodies, within = styles
    spread = melodies.std(axis=0)
    rebuilt = []
    for seg in songs:
        target = None
        if kind == "steer_random":
            target = trained[rng.integers(len(trained))]
        elif kind == "steer_nearest":
            distance = (((melodies - melody_description(seg.melody)) / spread) ** 2).sum(axis=1)
            target = np.nanmean(trained[np.argsort(distance)[:NEAREST]], axis=0)
        tonic = harmony.melody_tonic(seg.melody)[0] if seg.melody else 0

        def pick(options: list[dict]) -> int:
            scores = np.array([o["score"] for o in options])
            if kind == "best":
                return rerank.choose(scores)
            if kind == "draw":
                weights = np.exp(weight * (scores - scores.max()))
                return int(rng.choice(len(scores), p=weights / weights.sum()))
            # a steer: each candidate's style found once, for every steer that reads it
            if "style" not in options[0]:
                for option in options:
                    option["style"] = candidate_style(seg, tonic, option)
            found = np.array([o["style"] for o in options])
            distance = np.nan_to_num((found - target) / within) ** 2
            return rerank.choose(scores - weight * distance.sum(axis=1))

        rebuilt.append(assemble(made[seg.song_id]["windows"], pick))
    return rebuilt


def assemble(windows: list[list[dict]], pick: Callable[[list[dict]], int]) -> list[Note]:
    """A song from its windows' candidates: in each window the one ``pick`` chooses (its
    index among the window's candidates)."""
    notes: list[Note] = []
    for options in windows:
        notes += [Note(*n) for n in options[pick(options)]["notes"]]
    return normalize_notes(notes)


def name(rule: str, chords: str) -> str:
    return f"{chords}, {rule}"


def systems(songs: list[Segment]) -> dict[str, list[list[Note]]]:
    """Each rule's rebuild of every song, both chord settings; today's rule checked
    against what was generated."""
    styles = training_styles()
    made = {}
    for chords, source in CHORDS.items():
        found = candidates(songs, source)
        for rule, how in RULES.items():
            made[name(rule, chords)] = rebuild(songs, found, how, styles)
        generated = [[Note(*n) for n in found[s.song_id]["generated"]] for s in songs]
        if made[name(TODAY, chords)] != generated:
            raise SystemExit(f"{chords}: rebuilding with today's rule did not give back "
                             "what was generated; the candidate log is wrong")
        log(f"{chords}: {len(RULES)} rules rebuilt")
    return made


# --------------------------------------------------------------------------- the choice


def choice(report: dict) -> tuple[str, dict]:
    """The rule the rule of this script keeps, and each rule's drop in accuracy against
    today's per chord setting."""
    rows = report["systems"]
    drops = accuracy_drops(rows, name, TODAY, [r for r in RULES if r != TODAY], CHORDS)
    kept = [r for r, d in drops.items() if all(v > MARGIN for v in d.values())]
    return (max(kept, key=lambda r: sum(drops[r].values())) if kept else TODAY), drops


def markdown(report: dict) -> str:
    critic_report = report["critic_report"]
    settings = critic_report["settings"]
    rows = critic_report["systems"]
    lines = [
        "# How the reranker chooses among candidates, on validation",
        "",
        f"Written by `{COMMAND}` ({critic_report['seconds']:.0f} s for the critic); "
        f"`.venv/bin/python results/critic_choice.py --report` rewrites it from `{OUT}.json`. "
        f"FNet on the first {len(settings['songs'])} whole validation songs "
        f"({settings['bars']} bars) at today's defaults (8 candidates per window, windows "
        "primed by 6 bars, sampling seed 0), from the melody alone and with the annotated "
        "chords. Every candidate of every window was kept with the reranker's score; each "
        "rule rebuilds every song from the same candidates (the rule alone is compared: a "
        "later window's candidates were primed by today's choice). Keeping the best gives "
        "back exactly what was generated. Accuracy of the best of the critic's three "
        "classifiers on held-out songs (0.5 = indistinguishable; 95% interval from "
        "resampling songs). Rule, fixed before the run: another rule replaces keeping the "
        f"best only if it lowers both accuracies by more than {MARGIN}; among those the "
        "lowest mean.",
        "",
        "| rule | critic, melody only | critic, lead sheet | change, melody only | "
        "change, lead sheet |",
        "|---|---|---|---|---|",
    ]
    for rule in RULES:
        cells = [critic.accuracy_cell(rows[name(rule, c)]) for c in CHORDS]
        drops = report["drops"].get(rule)
        changes = [f"{-drops[c]:+.3f}" for c in CHORDS] if drops else ["", ""]
        label = rule + (" (today's)" if rule == TODAY else "")
        lines.append(f"| {label} | {' | '.join(cells)} | {' | '.join(changes)} |")
    verdict = (f"**Kept: {TODAY}.** No other rule lowers both accuracies by more than "
               f"{MARGIN}." if report["choice"] == TODAY else f"**Chosen: {report['choice']}.**")
    lines += [
        "",
        f"Draws are in proportion to exp(beta x score) (beta 0: at random). A steer takes "
        f"the score less {STEER} times the squared distance of the candidate's "
        f"{', '.join(STYLE)} from a style chosen once per song, in units of the training "
        "pianists' spread within a song: one training song's pianist drawn at random, or "
        f"the mean of the {NEAREST} training songs whose melodies are nearest (mean pitch, "
        f"pitch spread, mean velocity); styles from the first {TRAINING_SONGS} training "
        "songs.",
        "", verdict, "",
        "The critic's full report (controls and what gives each rebuild away) follows.", "",
        critic.critic_markdown(critic_report),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    count = songs_or_report(__doc__, OUT, markdown, SONGS)
    if count is None:
        return
    songs = whole_songs(count)
    made = systems(songs)
    critic_in_tensorflow(__file__, count)
    critic_report = critic_on_songs(songs, made, command=COMMAND)
    kept, drops = choice(critic_report)
    report = {"critic_report": critic_report, "choice": kept, "drops": drops}
    log(f"kept: {kept}")
    write_report(OUT, report, markdown(report))


if __name__ == "__main__":
    main()
